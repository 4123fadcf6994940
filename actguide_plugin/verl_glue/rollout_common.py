"""What ActGuide's agent-loop workers do the same way on both of verl's trainers (:mod:`.rollout_v1`, V1 and
TransferQueue; :mod:`.rollout_v0`, the classic ``RayPPOTrainer`` and ``DataProto``): failure records, the prompt
budget of a guided plan, and the record of each scored validation trajectory.

verl 0.9.1 APIs relied on (``verl/experimental/agent_loop/agent_loop.py``, the base of both workers):
``AgentLoopWorker.config`` / ``llm_client`` / ``tokenizer`` / ``processor`` / ``hf_model_type`` / ``dataset_cls`` /
``tools``, and the registry and wrappers ``_run_agent_loop`` builds an agent loop with (``_agent_loop_registry``,
``hydra.utils.instantiate`` with ``DictConfigWrap`` / ``ToolListWrap``).
"""

from __future__ import annotations

from typing import Any

import hydra
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap, _agent_loop_registry

from actguide_plugin.logs import describe_error, get_logger
from actguide_plugin.names import AGENT_NAME
from actguide_plugin.verl_glue.config import actguide_config
from actguide_plugin.verl_glue.rows import BadRowError, actions_of, row_name, task_id_of
from actguide_plugin.verl_glue.state import state_actor
from actguide_plugin.verl_glue.validation import trajectory_record

logger = get_logger(__name__)


class ActGuideWorkerMixin:
    """Mixed in before verl's agent-loop worker class (``class W(ActGuideWorkerMixin, AgentLoopWorker...)``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.actguide = actguide_config(self.config)
        self.state = state_actor()
        self._capped_tasks: set[str] = set()  # tasks whose plan cap was logged (once each)

    async def _record_failure(self, prompt: dict, err: Exception) -> None:
        """One log line naming the row and the cause, and a record for ``actguide/failed_groups``/``bad_rows``."""
        kind = "bad_row" if isinstance(err, BadRowError) else "error"
        cause = describe_error(err)
        logger.error(f"ActGuide group failed ({kind}), row {row_name(prompt)}: {cause}")
        logger.debug("traceback of the failed group", exc_info=err)
        failure = {"uid": prompt["uid"], "row": row_name(prompt), "kind": kind, "cause": cause}
        await self.state.record_failure.remote({**failure, "global_steps": prompt.get("global_steps")})

    async def _max_fitting_level(self, prompt: dict) -> int | None:
        """The highest guidance level whose prompt fits ``rollout.prompt_length`` (None: not a guided agent loop).

        Rendered by an agent loop built as verl's ``_run_agent_loop`` builds it, so the count is exact. A cap below
        L is logged once per task and counted in ``actguide/plan_capped_groups``.
        """
        if self.actguide.mode == "off" or prompt.get("agent_name") != AGENT_NAME:
            return None
        actions = actions_of(prompt)
        if not actions:
            return None
        agent_loop = self._guided_agent_loop()
        tool_selection = (prompt.get("extra_info") or {}).get("tool_selection")
        level = await agent_loop.max_fitting_level(list(prompt["raw_prompt"]), actions, tool_selection)
        task = task_id_of(prompt)
        if level < len(actions) and task not in self._capped_tasks:
            self._capped_tasks.add(task)
            logger.warning(
                f"row {row_name(prompt)}: plans above level {level} of L={len(actions)} do not fit "
                f"actor_rollout_ref.rollout.prompt_length={agent_loop.prompt_length}; searching levels <= {level}"
            )
        return level

    def _guided_agent_loop(self):
        """An ``actguide_tool_agent`` instance built as verl's ``_run_agent_loop`` builds one (to render prompts)."""
        return hydra.utils.instantiate(
            config=_agent_loop_registry[AGENT_NAME],
            trainer_config=DictConfigWrap(config=self.config),
            server_manager=self.llm_client,
            tokenizer=self.tokenizer,
            processor=self.processor,
            hf_model_type=self.hf_model_type,
            dataset_cls=self.dataset_cls,
            data_config=DictConfigWrap(self.config.data),
            tools=ToolListWrap(self.tools),
        )

    async def _record_validation(self, output: Any, row: dict[str, Any]) -> None:
        """Send a scored validation trajectory's record to the state actor (``val-actguide/*``, ``val_dump_dir``)."""
        final = output[-1] if isinstance(output, list) else output
        threshold, dumped = self.actguide.success_threshold, bool(self.actguide.val_dump_dir)
        record = trajectory_record(final, row, self.tokenizer, threshold, keep_prompt=dumped)
        await self.state.record_validation.remote(record.to_dict())
