"""One prompt's guidance decision inside a verl agent-loop worker, independent of the trainer's data plane.

A trainer adapter (:mod:`.rollout_v1` for verl's V1 trainer, :mod:`.rollout_v0` for the classic one) supplies
``sample(level, session_id)`` — one scored trajectory of the prompt at guidance level k, kept private until
chosen — and publishes the trajectories of the returned :class:`~actguide_plugin.core.search.GroupOutcome` its own
way. Everything between is here: the task id and number of reference actions read from the dataset row
(:mod:`.rows`), the task's warm-start entry fetched from the shared state actor and the search's result recorded
there, the level search (:func:`actguide_plugin.core.search.run_group`) and the summary the trainer turns into
``actguide/*`` metrics.

verl 0.9.1 API relied on: the dataset row as ``AgentLoopWorker`` hands it to an agent loop (``extra_info``,
``data_source``, ``agent_name``, ``uid``, ``global_steps``), and ``AgentLoopOutput.reward_score`` set by the
streaming reward workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from actguide_plugin.core.action_noise import perturb_actions
from actguide_plugin.core.actions import REFERENCE_ACTIONS_KEY, dumps_actions
from actguide_plugin.core.level_cache import LevelCache
from actguide_plugin.core.search import GroupOutcome, GroupStatus, run_group, settled
from actguide_plugin.names import AGENT_NAME
from actguide_plugin.verl_glue.config import ActGuideConfig
from actguide_plugin.verl_glue.rows import actions_of, num_actions_of, task_id_of

Trajectory = list[Any]  # the AgentLoopOutput(s) of one rollout; the last one carries the reward
SampleFn = Callable[[int, int], Awaitable[Trajectory]]  # (level, session_id) -> one scored trajectory


def reward_of(trajectory: Trajectory) -> float:
    """The trajectory's reward, computed in the rollout worker (the search decides on it there)."""
    score = trajectory[-1].reward_score
    if score is None:
        raise RuntimeError(
            "ActGuide decides on guidance inside the rollout worker and needs the reward there: use verl's "
            "streaming reward workers (the default for a custom_reward_function), not a colocated reward model"
        )
    return float(score)


NOISE_FIELDS = ("noised_actions", "clean_actions")  # in a search summary next to the GroupOutcome's own fields


def with_action_noise(prompt: dict[str, Any], actguide: ActGuideConfig) -> tuple[dict[str, Any], int, int]:
    """``(prompt, changed, L)``: the prompt with its reference actions perturbed per ``actguide.action_noise`` (a
    copy; keyed by task id and training step, :mod:`actguide_plugin.core.action_noise`), how many positions changed,
    and the clean L. Every consumer reads actions from the row, so the search, the rendered plans and the prompt
    budget all see the same perturbed plan."""
    actions = actions_of(prompt)
    if actguide.action_noise == "none" or not actions:
        return prompt, 0, len(actions)
    key = f"{task_id_of(prompt)}/{prompt.get('global_steps')}"
    noisy, changed = perturb_actions(actions, actguide.action_noise, actguide.action_noise_frac, key)
    extra_info = {**(prompt.get("extra_info") or {}), REFERENCE_ACTIONS_KEY: dumps_actions(noisy)}
    return {**prompt, "extra_info": extra_info}, changed, len(actions)


async def decide_group(
    prompt: dict[str, Any],
    n: int,
    sample: SampleFn,
    actguide: ActGuideConfig,
    state: Any,
    max_level: int | None = None,
    noise: tuple[int, int] = (0, 0),
) -> GroupOutcome[Trajectory]:
    """Run the level search for one prompt and record its outcome in the shared state actor.

    ``state`` is the :mod:`.state` actor handle. Session ids count every rollout of the prompt (probes included),
    so each trajectory's agent-loop call is distinct; the adapter renumbers the chosen ones 0..n−1. ``max_level``:
    the highest level whose prompt fits the prompt budget (None: every level fits). ``noise``: ``(changed, clean L)``
    of :func:`with_action_noise`, recorded with the summary.
    """
    if prompt.get("agent_name") != AGENT_NAME and actguide.mode != "off":
        raise ValueError(
            f"sample uid={prompt.get('uid')} has agent_name={prompt.get('agent_name')!r}; guidance needs "
            f"{AGENT_NAME!r} (set it in the data or actor_rollout_ref.rollout.agent.default_agent_loop)"
        )
    num_actions = num_actions_of(prompt)
    task_id = task_id_of(prompt)
    session_ids = itertools.count()

    async def rollout(level: int, count: int) -> list[Trajectory]:
        return await settled([sample(level, next(session_ids)) for _ in range(count)])

    cache = LevelCache.from_dict(await state.cache_subset.remote([task_id]))
    outcome = await run_group(task_id, num_actions, rollout, reward_of, actguide.search_config(n), cache, max_level)
    # only what this search found, applied to the shared cache by the actor (one call at a time): another row of the
    # same task in this step keeps its own fresh result, and full-failure streaks add up
    if outcome.status is GroupStatus.RESCUED:
        await state.cache_record.remote(task_id, num_actions, outcome.level)
    elif outcome.status is GroupStatus.FULL_FAILED:
        await state.cache_record.remote(task_id, num_actions, None)
    noise_record = dict(zip(NOISE_FIELDS, noise, strict=True))
    await state.record.remote(
        {**outcome.summary(reward_of), "global_steps": prompt.get("global_steps"), **noise_record}
    )
    return outcome


async def publish_group(
    outcome: GroupOutcome[Trajectory], publish: Callable[[int, Trajectory], Awaitable[None]]
) -> None:
    """``publish(session_id, trajectory)`` for every chosen trajectory, numbered 0..n−1; a failed put is raised only
    once every other put has settled, so none lands after its prompt was marked failed (a plain gather raised at
    the first failure and left the siblings' puts running)."""
    await settled([publish(session_id, trajectory) for session_id, trajectory in enumerate(outcome.trajectories)])
