"""One prompt's decision against the real state actor (Ray): two rows of one task in a step do not undo each other."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import ray

from actguide_plugin.core.actions import Action, dumps_actions
from actguide_plugin.core.level_cache import LevelCache
from actguide_plugin.names import AGENT_NAME
from actguide_plugin.verl_glue.config import ActGuideConfig
from actguide_plugin.verl_glue.group import decide_group, publish_group
from actguide_plugin.verl_glue.state import ActGuideState

ACTIONS = [Action("web_search", {"query": [f"step {i}"]}) for i in range(4)]


def row(uid: str) -> dict:
    info = {"task_id": "t", "reference_actions": dumps_actions(ACTIONS)}
    return {"uid": uid, "agent_name": AGENT_NAME, "data_source": "d", "extra_info": info}


def sampler(min_level: int | None, delay: float):
    """Rollouts that succeed from ``min_level`` on (None: never), each after ``delay`` seconds."""

    async def sample(level: int, session_id: int):
        await asyncio.sleep(delay)
        won = min_level is not None and level >= min_level
        return [SimpleNamespace(reward_score=1.0 if won else 0.0)]

    return sample


def cached(state) -> LevelCache:
    return LevelCache.from_dict(ray.get(state.cache_state.remote()))


async def both(state, first, second):
    config = ActGuideConfig()
    return await asyncio.gather(
        decide_group(row("a"), 8, first, config, state), decide_group(row("b"), 8, second, config, state)
    )


def test_a_later_finishing_row_of_the_same_task_keeps_the_fresh_level(ray_and_tq):
    state = ray.remote(ActGuideState).options(max_concurrency=64).remote()
    ray.get(state.cache_record.remote("t", 4, 4))  # last epoch: k* = L
    # row a is rescued at 3 quickly; row b of the same task succeeds unguided and finishes later
    rescued, solved = asyncio.run(both(state, sampler(3, 0.0), sampler(0, 0.3)))
    assert rescued.level == 3 and solved.level == 0
    assert cached(state).get("t", 4) == 3  # b wrote nothing back (it used to write its stale 4 over the 3)


def test_two_whole_failures_of_one_task_in_a_step_both_count(ray_and_tq):
    state = ray.remote(ActGuideState).options(max_concurrency=64).remote()
    asyncio.run(both(state, sampler(None, 0.0), sampler(None, 0.05)))
    assert cached(state).failure_streak("t", 4) == 2


def test_a_failed_put_is_raised_only_after_every_sibling_put_settled():
    from actguide_plugin.core.search import GroupOutcome, GroupStatus

    outcome = GroupOutcome("t", 4, GroupStatus.RESCUED, 2, trajectories=[["a"], ["b"], ["c"]])
    done = []

    async def publish(session_id, trajectory):
        if session_id == 0:
            raise RuntimeError("TransferQueue put failed")
        await asyncio.sleep(0.05 * session_id)
        done.append(session_id)

    async def go():
        try:
            await publish_group(outcome, publish)
        except RuntimeError:
            return sorted(done)  # what had landed when the failure reached the caller

    assert asyncio.run(go()) == [1, 2]


def test_action_noise_is_applied_to_a_copy_of_the_row_and_reaches_the_metrics(ray_and_tq):
    from actguide_plugin.verl_glue.group import with_action_noise
    from actguide_plugin.verl_glue.metrics import search_metrics
    from actguide_plugin.verl_glue.rows import actions_of

    config = ActGuideConfig(action_noise="drop", action_noise_frac=0.5)
    prompt = {**row("a"), "global_steps": 7}
    noisy, changed, clean = with_action_noise(prompt, config)
    assert (changed, clean) == (2, 4) and len(actions_of(noisy)) == 2
    assert actions_of(prompt) == ACTIONS  # the row itself is untouched
    assert with_action_noise(prompt, config) == (noisy, changed, clean)  # same task and step: same plan
    assert with_action_noise(prompt, ActGuideConfig()) == (prompt, 0, 4)

    state = ray.remote(ActGuideState).options(max_concurrency=64).remote()
    outcome = asyncio.run(decide_group(noisy, 8, sampler(2, 0.0), config, state, noise=(changed, clean)))
    assert outcome.num_actions == 2 and outcome.level == 2  # the search ran on the perturbed plan
    metrics = search_metrics(state)
    assert metrics["actguide/action_noise_changed_frac"] == 0.5 and metrics["actguide/rescued_groups"] == 1.0
