"""Evaluation through verl's validation loop: guided validation on request, and every trajectory recorded.

verl's validation runs each validation prompt ``val_kwargs.n`` times through the agent-loop workers and logs
aggregate metrics (``val-core/<source>/acc/mean@N``, and ``best@N``, a bootstrap estimate that is not pass@N).
The recipe adds, on the same samples:

* in the rollout worker, the guidance level of a validation prompt (``actguide.val_level`` /
  ``val_level_ratio``; 0 by default, so validation stays unguided unless asked) and, after verl scored a
  trajectory, its :class:`~actguide_plugin.analysis.trajectory.TrajectoryRecord`, sent to the state actor;
* in the trainer, after verl's validation: the records, summarized per data source
  (:mod:`actguide_plugin.analysis.eval_summary`) into ``val-actguide/<source>/...`` metrics (unbiased pass@k,
  rounds, tool calls, outcomes) and, with ``actguide.val_dump_dir``, written as ``eval.json``, ``eval.md`` and
  ``trajectories.jsonl``.

verl 0.9.1 APIs relied on: the dataset row as ``AgentLoopWorker`` passes it to ``_agent_loop_postprocess``
(``uid``, ``session_id``, ``data_source``, ``extra_info``), ``AgentLoopOutput`` (``prompt_ids``, ``response_ids``,
``response_mask``, ``reward_score``, ``extra_fields["reward_extra_info"]``) after verl's ``_compute_score``, the
worker's ``tokenizer``, and ``actor_rollout_ref.rollout.val_kwargs.n``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actguide_plugin.analysis.eval_summary import flat_metrics, summarize, write_evaluation
from actguide_plugin.analysis.trajectory import TrajectoryRecord, build_record
from actguide_plugin.logs import get_logger
from actguide_plugin.names import (
    AGENT_NAME,
    ASSISTANT_TURNS_FIELD,
    LEVEL_FIELD,
    NUM_ACTIONS_FIELD,
    STOP_REASON_FIELD,
    TOOL_CALLS_FIELD,
    VAL_METRIC_PREFIX,
)
from actguide_plugin.verl_glue.config import ActGuideConfig
from actguide_plugin.verl_glue.rows import num_actions_of, task_id_of

logger = get_logger(__name__)


def validation_level(prompt: dict[str, Any], actguide: ActGuideConfig) -> int:
    """Guidance level for a validation prompt: 0 unless ``actguide.val_level`` / ``val_level_ratio`` ask."""
    if not (actguide.val_level or actguide.val_level_ratio):
        return 0
    if prompt.get("agent_name") != AGENT_NAME:
        raise ValueError(
            f"validation sample uid={prompt.get('uid')} has agent_name={prompt.get('agent_name')!r}; guided "
            f"validation needs {AGENT_NAME!r}"
        )
    return actguide.validation_level(num_actions_of(prompt))


def trajectory_record(
    output: Any, row: dict[str, Any], tokenizer: Any, success_threshold: float, keep_prompt: bool = True
) -> TrajectoryRecord:
    """The record of one scored validation trajectory (``output`` is its final ``AgentLoopOutput``).

    ``keep_prompt=False`` leaves the prompt text out (the metrics do not need it, and the prompt with its tool
    schemas is most of a record's size).
    """
    extra = output.extra_fields
    try:
        task_id = task_id_of(row)
    except ValueError:  # data without a stable id: the prompt's uid still groups its samples
        task_id = str(row["uid"])
    return build_record(
        data_source=str(row.get("data_source", "unknown")),
        task_id=task_id,
        sample=int(row["session_id"]),
        level=int(extra.get(LEVEL_FIELD, 0)),
        num_actions=int(extra.get(NUM_ACTIONS_FIELD, 0)),
        score=float(output.reward_score or 0.0),
        success_threshold=success_threshold,
        stop_reason=extra.get(STOP_REASON_FIELD),
        tool_calls=extra.get(TOOL_CALLS_FIELD, []),
        turns=int(extra.get(ASSISTANT_TURNS_FIELD, 0)),
        response_mask=list(output.response_mask),
        prompt=tokenizer.decode(output.prompt_ids, skip_special_tokens=False) if keep_prompt else "",
        response=tokenizer.decode(output.response_ids, skip_special_tokens=False),
        reward_extra=_plain(extra.get("reward_extra_info") or {}),
        uid=str(row["uid"]),
    )


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Numpy scalars (what reward functions often return) as Python numbers, so the record is JSON."""
    return {key: value.item() if hasattr(value, "item") else value for key, value in values.items()}


def collect_validation(
    raw_records: list[dict[str, Any]],
    actguide: ActGuideConfig,
    samples_per_prompt: int,
    global_steps: int,
    val_only: bool,
) -> dict[str, float]:
    """Summarize the validation that just ran (the state actor's records); write it when ``val_dump_dir`` is set.

    Returns its ``val-actguide/*`` metrics.
    """
    records = [TrajectoryRecord.from_dict(r) for r in raw_records]
    if not records:
        logger.warning("validation recorded no trajectories (agent loop failures?)")
        return {}
    summaries = summarize(records, samples_per_prompt)
    if actguide.val_dump_dir:
        folder = Path(actguide.val_dump_dir)
        if not val_only:  # one folder per validation of a training run
            folder = folder / f"global_step_{global_steps}"
        header = {
            "global_steps": global_steps,
            "samples_per_prompt": samples_per_prompt,
            "val_level": actguide.val_level,
            "val_level_ratio": actguide.val_level_ratio,
            "success_threshold": actguide.success_threshold,
        }
        write_evaluation(folder, records, summaries, header)
        logger.info(f"wrote the evaluation of {len(records)} trajectories to {folder}")
    return flat_metrics(summaries, VAL_METRIC_PREFIX)
