"""Guided-fallback rollout for verl's V1 trainer: each prompt's group search runs inside the rollout worker.

Enable with ``actor_rollout_ref.rollout.agent.agent_loop_manager_class=``
``actguide_plugin.verl_glue.rollout_v1.ActGuideAgentLoopManager`` (the recipe config sets it).

verl 0.9.1 APIs relied on (``verl/trainer/ppo/v1/agent_loop_tq.py``, ``verl/experimental/agent_loop``):

* ``AgentLoopWorkerTQ._run_prompt(prompt, sampling_params, trajectory, trace)`` runs the n sessions of one
  prompt in one coroutine and publishes the prompt status (``running`` → ``finished``/``failure``) under the
  key ``{uid}`` in TransferQueue; we replace it for training prompts, publishing ``failure`` for a group left with no
  trajectory (failed or dropped), which the sync replay buffer then refills (:mod:`.empty_step`). Validation stays
  verl's, with the prompt's fields passed to every session's agent loop: we add the validation guidance level
  there (0 unless ``actguide.val_level``/``val_level_ratio`` ask, :mod:`.validation`), and record each scored
  validation trajectory in the state actor.
* ``AgentLoopWorker._run_agent_loop(...)`` instantiates the agent loop from the registry, runs it and calls
  ``_agent_loop_postprocess(output, validate, **kwargs)``, which computes the reward with the streaming
  reward workers (``_compute_score``) and puts the trajectory into TransferQueue under
  ``{uid}_{session_id}_{index}``. We split that: while searching, postprocessing only scores (nothing
  reaches TransferQueue); the chosen n trajectories are then put with session ids 0..n−1. A score that is
  already set is not recomputed by verl, so each trajectory is scored once.
* Before a prompt's search, the highest guidance level whose prompt fits ``rollout.prompt_length``
  (:mod:`.rollout_common`, shared with the classic trainer's workers in :mod:`.rollout_v0`).
* ``AgentLoopManagerTQ.__init__`` sets ``agent_loop_workers_class`` itself, so ours is reassigned after
  ``super().__init__()``; Ray refuses to subclass an actor class, hence ``__ray_actor_class__``.

The search itself is :func:`actguide_plugin.verl_glue.group.decide_group`; this module is the TransferQueue
data plane around it. Prompts search independently and concurrently (one coroutine each).
"""

from __future__ import annotations

import contextvars
from typing import Any

import ray
import torch
import transfer_queue as tq
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ

from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD, UNGUIDED_PROMPT_IDS_FIELD
from actguide_plugin.verl_glue.group import Trajectory, decide_group, publish_group, with_action_noise
from actguide_plugin.verl_glue.rollout_common import ActGuideWorkerMixin
from actguide_plugin.verl_glue.validation import validation_level

_search_in_progress: contextvars.ContextVar[bool] = contextvars.ContextVar("actguide_search", default=False)


class ActGuideAgentLoopWorkerImpl(ActGuideWorkerMixin, AgentLoopWorkerTQ.__ray_actor_class__):
    """``AgentLoopWorkerTQ`` whose training prompts go through the ActGuide level search."""

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        if trajectory["validate"]:  # unguided unless actguide.val_level / val_level_ratio ask
            prompt = {**prompt, LEVEL_FIELD: validation_level(prompt, self.actguide)}
            return await super()._run_prompt(prompt, sampling_params, trajectory, trace)
        uid = prompt["uid"]
        await tq.async_kv_put(key=uid, partition_id="train", tag={"status": "running"})
        status = "failure"  # also a group with no trajectory (dropped): verl's refill replaces it (empty_step)
        try:
            if await self._run_guided_group(prompt, sampling_params, trajectory, trace):
                status = "finished"
        except Exception as err:  # every rollout of the group has settled (group.settled)
            await self._record_failure(prompt, err)
        await tq.async_kv_put(key=uid, partition_id="train", tag={"status": status})

    async def _run_guided_group(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool) -> int:
        """Search, then publish the chosen trajectories; returns how many (0: the group was dropped)."""
        n = prompt.pop("__rollout_n__", self.config.actor_rollout_ref.rollout.n)
        prompt.pop("__do_sample__", None)
        prompt, changed, clean = with_action_noise(prompt, self.actguide)  # training groups only

        async def sample(level: int, session_id: int) -> Trajectory:
            """One scored trajectory at ``level``, kept out of TransferQueue until the search picks it."""
            _search_in_progress.set(True)  # this coroutine runs in its own task: the flag stays local to it
            return await self._run_agent_loop(
                dict(sampling_params),
                trajectory=trajectory,
                trace=trace,
                session_id=session_id,
                **{LEVEL_FIELD: level},
                **prompt,
            )

        max_level = await self._max_fitting_level(prompt)
        outcome = await decide_group(prompt, n, sample, self.actguide, self.state, max_level, (changed, clean))
        await publish_group(
            outcome, lambda session_id, outputs: self._publish(outputs, session_id, outcome.level, prompt)
        )
        return len(outcome.trajectories)

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        if not _search_in_progress.get():
            result = await super()._agent_loop_postprocess(output, validate, **kwargs)
            if validate:
                await self._record_validation(output, kwargs)
            return result
        outputs = output if isinstance(output, list) else [output]
        await self._compute_score(outputs, kwargs=kwargs)
        return outputs

    async def _publish(self, outputs: Trajectory, session_id: int, level: int, prompt: dict[str, Any]) -> None:
        """Put one chosen trajectory into TransferQueue with the fields the trainer's prompt swap reads."""
        final = outputs[-1]
        # another agent loop (allowed with mode=off) samples unguided only: its prompt is the unguided view
        unguided_prompt = final.extra_fields.get(UNGUIDED_PROMPT_IDS_FIELD, final.prompt_ids)
        fields = {
            IS_GUIDED_FIELD: torch.tensor(float(level > 0)),
            LEVEL_FIELD: torch.tensor(level, dtype=torch.int64),
            UNGUIDED_PROMPT_IDS_FIELD: torch.tensor(unguided_prompt, dtype=torch.int64),
        }
        await super()._agent_loop_postprocess(outputs, False, **prompt, session_id=session_id, **fields)


ActGuideAgentLoopWorker = ray.remote(ActGuideAgentLoopWorkerImpl)


class ActGuideAgentLoopManager(AgentLoopManagerTQ):
    """verl's TransferQueue agent-loop manager with ActGuide workers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.agent_loop_workers_class = ActGuideAgentLoopWorker
