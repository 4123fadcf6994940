"""Guided-fallback rollout for verl's V1 trainer: each prompt's group search runs inside the rollout worker.

Enable with ``actor_rollout_ref.rollout.agent.agent_loop_manager_class=``
``actguide_plugin.rollout_manager.ActGuideAgentLoopManager``.

verl 0.9.1 APIs relied on (``verl/trainer/ppo/v1/agent_loop_tq.py``, ``verl/experimental/agent_loop``):

* ``AgentLoopWorkerTQ._run_prompt(prompt, sampling_params, trajectory, trace)`` runs the n sessions of one
  prompt in one coroutine and publishes the prompt status (``running`` → ``finished``/``failure``) under the
  key ``{uid}`` in TransferQueue; we replace it for training prompts (validation stays verl's, unguided).
* ``AgentLoopWorker._run_agent_loop(...)`` instantiates the agent loop from the registry, runs it and calls
  ``_agent_loop_postprocess(output, validate, **kwargs)``, which computes the reward with the streaming
  reward workers (``_compute_score``) and puts the trajectory into TransferQueue under
  ``{uid}_{session_id}_{index}``. We split that: while searching, postprocessing only scores (nothing
  reaches TransferQueue); the chosen n trajectories are then put with session ids 0..n−1. A score that is
  already set is not recomputed by verl, so each trajectory is scored once.
* ``AgentLoopManagerTQ.__init__`` sets ``agent_loop_workers_class`` itself, so ours is reassigned after
  ``super().__init__()``; Ray refuses to subclass an actor class, hence ``__ray_actor_class__``.

Prompts search independently and concurrently (one coroutine each); nothing waits for a global round.
The warm-start cache and the per-group summaries live in one named Ray actor (:mod:`actguide_plugin.state`)
shared by all rollout workers and the trainer, which saves the cache with checkpoints.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
from typing import Any

import ray
import torch
import transfer_queue as tq
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ

from actguide_plugin.agent_loop import AGENT_NAME, UNGUIDED_PROMPT_FIELD
from actguide_plugin.core.actions import loads_actions
from actguide_plugin.core.cache import LevelCache
from actguide_plugin.core.search import GroupOutcome, run_group
from actguide_plugin.state import state_actor
from actguide_plugin.verl_config import actguide_config

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

IS_GUIDED_FIELD = "actguide_is_guided"  # TransferQueue field, [1] per trajectory (read by the loss)
LEVEL_FIELD = "actguide_level"
UNGUIDED_PROMPTS_FIELD = "actguide_unguided_prompts"  # TransferQueue field, unguided prompt ids (trainer swap)

_search_in_progress: contextvars.ContextVar[bool] = contextvars.ContextVar("actguide_search", default=False)


def task_id_of(prompt: dict[str, Any]) -> str:
    """Stable across epochs (the uid is new every time a prompt is sampled): data source + dataset index."""
    extra_info = prompt.get("extra_info") or {}
    if extra_info.get("task_id") is not None:
        return str(extra_info["task_id"])
    index = extra_info.get("index", prompt.get("index"))
    if index is None:
        raise ValueError("ActGuide needs a stable task id: set extra_info.task_id or extra_info.index in the data")
    return f"{prompt.get('data_source', '')}/{index}"


def reward_of(outputs: list[Any]) -> float:
    score = outputs[-1].reward_score
    if score is None:
        raise RuntimeError(
            "ActGuide decides on guidance inside the rollout worker and needs the reward there: use verl's "
            "streaming reward workers (the default for a custom_reward_function), not a colocated reward model"
        )
    return float(score)


class ActGuideAgentLoopWorkerImpl(AgentLoopWorkerTQ.__ray_actor_class__):
    """``AgentLoopWorkerTQ`` whose training prompts go through the ActGuide level search."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.actguide = actguide_config(self.config)
        self.state = state_actor()

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        if trajectory["validate"]:  # evaluation is always unguided
            return await super()._run_prompt(prompt, sampling_params, trajectory, trace)
        uid = prompt["uid"]
        await tq.async_kv_put(key=uid, partition_id="train", tag={"status": "running"})
        status = "finished"
        try:
            await self._run_guided_group(prompt, sampling_params, trajectory, trace)
        except Exception:
            logger.exception(f"ActGuide group of uid={uid} failed")
            status = "failure"
        await tq.async_kv_put(key=uid, partition_id="train", tag={"status": status})

    async def _run_guided_group(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool) -> None:
        n = prompt.pop("__rollout_n__", self.config.actor_rollout_ref.rollout.n)
        prompt.pop("__do_sample__", None)
        if prompt.get("agent_name") != AGENT_NAME and self.actguide.mode != "off":
            raise ValueError(
                f"sample uid={prompt['uid']} has agent_name={prompt.get('agent_name')!r}; guidance needs "
                f"{AGENT_NAME!r} (set it in the data or actor_rollout_ref.rollout.agent.default_agent_loop)"
            )
        extra_info = prompt.get("extra_info") or {}
        num_actions = len(loads_actions(extra_info.get("reference_actions")))
        task_id = task_id_of(prompt)
        session_ids = itertools.count()

        async def rollout(level: int, count: int) -> list[list[Any]]:
            return await asyncio.gather(
                *(
                    self._sample(level, next(session_ids), prompt, sampling_params, trajectory, trace)
                    for _ in range(count)
                )
            )

        cache = LevelCache.from_dict(await self.state.cache_subset.remote([task_id]))
        outcome: GroupOutcome = await run_group(
            task_id, num_actions, rollout, reward_of, self.actguide.search_config(n), cache
        )
        await self.state.cache_update.remote(cache.to_dict())
        await self.state.record.remote({**outcome.summary(reward_of), "global_steps": prompt.get("global_steps")})
        await asyncio.gather(
            *(
                self._publish(outputs, session_id, outcome.level, prompt)
                for session_id, outputs in enumerate(outcome.trajectories)
            )
        )

    async def _sample(
        self, level: int, session_id: int, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool
    ) -> list[Any]:
        """One scored trajectory at ``level``, kept out of TransferQueue until the search picks it."""
        _search_in_progress.set(True)  # this coroutine runs in its own task: the flag stays local to it
        return await self._run_agent_loop(
            dict(sampling_params),
            trajectory=trajectory,
            trace=trace,
            session_id=session_id,
            actguide_level=level,
            **prompt,
        )

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        if not _search_in_progress.get():
            return await super()._agent_loop_postprocess(output, validate, **kwargs)
        outputs = output if isinstance(output, list) else [output]
        await self._compute_score(outputs, kwargs=kwargs)
        return outputs

    async def _publish(self, outputs: list[Any], session_id: int, level: int, prompt: dict) -> None:
        """Put one chosen trajectory into TransferQueue with the fields the trainer's prompt swap reads."""
        final = outputs[-1]
        # another agent loop (allowed with mode=off) samples unguided only: its prompt is the unguided view
        unguided_prompt = final.extra_fields.get(UNGUIDED_PROMPT_FIELD, final.prompt_ids)
        fields = {
            IS_GUIDED_FIELD: torch.tensor(float(level > 0)),
            LEVEL_FIELD: torch.tensor(level, dtype=torch.int64),
            UNGUIDED_PROMPTS_FIELD: torch.tensor(unguided_prompt, dtype=torch.int64),
        }
        await super()._agent_loop_postprocess(outputs, False, **prompt, session_id=session_id, **fields)


ActGuideAgentLoopWorker = ray.remote(ActGuideAgentLoopWorkerImpl)


class ActGuideAgentLoopManager(AgentLoopManagerTQ):
    """verl's TransferQueue agent-loop manager with ActGuide workers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.agent_loop_workers_class = ActGuideAgentLoopWorker
