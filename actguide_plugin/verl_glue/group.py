"""One prompt's guidance decision inside a verl agent-loop worker, independent of the trainer's data plane.

A trainer adapter (:mod:`.rollout_v1` for verl's V1 trainer) supplies ``sample(level, session_id)`` — one
scored trajectory of the prompt at guidance level k, kept private until chosen — and publishes the trajectories
of the returned :class:`~actguide_plugin.core.search.GroupOutcome` its own way. Everything between is here: the
task id and number of reference actions read from the dataset row, the warm-start cache fetched from and written
back to the shared state actor, the level search (:func:`actguide_plugin.core.search.run_group`) and the summary
the trainer turns into ``actguide/*`` metrics.

verl 0.9.1 API relied on: the dataset row as ``AgentLoopWorker`` hands it to an agent loop (``extra_info``,
``data_source``, ``agent_name``, ``uid``, ``global_steps``), and ``AgentLoopOutput.reward_score`` set by the
streaming reward workers.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from actguide_plugin.core.actions import Action, loads_actions
from actguide_plugin.core.level_cache import LevelCache
from actguide_plugin.core.search import GroupOutcome, run_group
from actguide_plugin.names import AGENT_NAME
from actguide_plugin.verl_glue.config import ActGuideConfig

Trajectory = list[Any]  # the AgentLoopOutput(s) of one rollout; the last one carries the reward
SampleFn = Callable[[int, int], Awaitable[Trajectory]]  # (level, session_id) -> one scored trajectory


class BadRowError(ValueError):
    """A dataset row the recipe cannot use (no stable task id, unparseable reference actions); names the row."""


def row_name(prompt: dict[str, Any]) -> str:
    """How a log line names a dataset row: its data source, dataset index / task id and this sampling's uid."""
    extra_info = prompt.get("extra_info") or {}
    parts = [f"data_source={prompt.get('data_source', '')!r}"]
    for key in ("task_id", "index"):
        if extra_info.get(key) is not None:
            parts.append(f"{key}={extra_info[key]!r}")
    return " ".join([*parts, f"uid={prompt.get('uid')}"])


def task_id_of(prompt: dict[str, Any]) -> str:
    """Stable across epochs (the uid is new every time a prompt is sampled): data source + dataset index."""
    extra_info = prompt.get("extra_info") or {}
    if extra_info.get("task_id") is not None:
        return str(extra_info["task_id"])
    index = extra_info.get("index", prompt.get("index"))
    if index is None:
        raise BadRowError(
            f"row {row_name(prompt)}: ActGuide needs a stable task id: set extra_info.task_id or extra_info.index"
        )
    return f"{prompt.get('data_source', '')}/{index}"


def actions_of(prompt: dict[str, Any]) -> list[Action]:
    """The row's reference actions ([] when it has none)."""
    extra_info = prompt.get("extra_info") or {}
    try:
        return loads_actions(extra_info.get("reference_actions"))
    except ValueError as err:
        raise BadRowError(f"row {row_name(prompt)}: bad extra_info.reference_actions: {err}") from err


def num_actions_of(prompt: dict[str, Any]) -> int:
    """L, the number of reference actions of the row (0 when it has none)."""
    return len(actions_of(prompt))


async def settled(coroutines: list[Awaitable[Trajectory]]) -> list[Trajectory]:
    """Await every rollout of a generation call before raising the first error, as verl does for a group:
    a failing sibling must not leave the others generating into replicas the trainer puts to sleep."""
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def reward_of(trajectory: Trajectory) -> float:
    """The trajectory's reward, computed in the rollout worker (the search decides on it there)."""
    score = trajectory[-1].reward_score
    if score is None:
        raise RuntimeError(
            "ActGuide decides on guidance inside the rollout worker and needs the reward there: use verl's "
            "streaming reward workers (the default for a custom_reward_function), not a colocated reward model"
        )
    return float(score)


async def decide_group(
    prompt: dict[str, Any],
    n: int,
    sample: SampleFn,
    actguide: ActGuideConfig,
    state: Any,
    max_level: int | None = None,
) -> GroupOutcome[Trajectory]:
    """Run the level search for one prompt and record its outcome in the shared state actor.

    ``state`` is the :mod:`.state` actor handle. Session ids count every rollout of the prompt (probes included),
    so each trajectory's agent-loop call is distinct; the adapter renumbers the chosen ones 0..n−1. ``max_level``:
    the highest level whose prompt fits the prompt budget (None: every level fits).
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
    await state.cache_update.remote(cache.to_dict())
    await state.record.remote({**outcome.summary(reward_of), "global_steps": prompt.get("global_steps")})
    return outcome
