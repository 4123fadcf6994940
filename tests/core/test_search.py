import asyncio
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actguide_plugin.core.level_cache import LevelCache
from actguide_plugin.core.search import GroupStatus, SearchConfig, run_group


class Oracle:
    """Rollouts whose reward depends only on the level: success iff level >= threshold (monotone).

    Trajectories are (level, reward) pairs so tests can see which level each one was sampled at.
    """

    def __init__(self, threshold: int, successes_per_call: int | None = None):
        self.threshold = threshold
        self.successes_per_call = successes_per_call  # None: every rollout at a sufficient level succeeds
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, level: int, count: int):
        self.calls.append((level, count))
        ok = level >= self.threshold
        wins = count if self.successes_per_call is None else min(count, self.successes_per_call)
        return [(level, 1.0 if ok and i < wins else 0.0) for i in range(count)]


def reward(trajectory):
    return trajectory[1]


def run(coro):
    return asyncio.run(coro)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.data())
def test_cold_search_returns_minimal_sufficient_level(num_actions, data):
    threshold = data.draw(st.integers(1, num_actions + 1))  # num_actions + 1: even full guidance fails
    oracle = Oracle(threshold)
    cfg = SearchConfig(n=8, probe_m=2, tau=1, on_full_failure="unguided")
    outcome = run(run_group("t", num_actions, oracle, reward, cfg))
    rounds_bound = math.ceil(math.log2(num_actions + 1))
    assert len(outcome.probes) <= rounds_bound
    if threshold <= num_actions:
        assert outcome.status is GroupStatus.RESCUED
        assert outcome.level == threshold
        assert all(level == threshold for level, _ in outcome.trajectories)
    else:
        assert outcome.status is GroupStatus.FULL_FAILED
        assert any(p.level == num_actions and not p.sufficient for p in outcome.probes)  # top level verified
        assert all(level == 0 for level, _ in outcome.trajectories)  # policy "unguided"
    assert len(outcome.trajectories) == cfg.n


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_returned_level_is_always_verified_under_noisy_monotone_oracle(num_actions, seed):
    rng = random.Random(seed)
    success_prob = sorted(rng.random() for _ in range(num_actions + 1))  # monotone in k
    success_prob[0] = 0.0

    async def noisy(level, count):
        return [(level, float(rng.random() < success_prob[level])) for _ in range(count)]

    cfg = SearchConfig(n=6, probe_m=2, tau=1)
    outcome = run(run_group("t", num_actions, noisy, reward, cfg))
    probed = {p.level: p.sufficient for p in outcome.probes}
    if outcome.status is GroupStatus.RESCUED and probed.get(outcome.level):
        # exactness of the bracket: the level below was probed insufficient (or is the failed level 0)
        assert outcome.level == 1 or probed.get(outcome.level - 1) is False
    elif outcome.status is GroupStatus.RESCUED:  # no probe sufficed: the completed group at L has the success
        assert outcome.level == num_actions and probed[num_actions] is False
        assert any(r > 0 for _, r in outcome.trajectories)
    elif outcome.status is GroupStatus.FULL_FAILED:
        assert probed[num_actions] is False
        assert outcome.sampled == 6 + outcome.probe_trajectories + 6 - 2  # the group at L was completed


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.data())
def test_correct_warm_start_costs_one_probe_round(num_actions, data):
    threshold = data.draw(st.integers(1, num_actions + 1))
    cache = LevelCache()
    cfg = SearchConfig(n=8)
    run(run_group("t", num_actions, Oracle(threshold), reward, cfg, cache))
    oracle = Oracle(threshold)
    outcome = run(run_group("t", num_actions, oracle, reward, cfg, cache))
    # one unguided round, one (concurrent) probe round, and the guided round (completing the failed group at L
    # when nothing was rescued)
    assert outcome.serial_rounds == 3
    assert outcome.warm_started
    assert len({p.level for p in outcome.probes}) <= 2
    assert outcome.level == (threshold if threshold <= num_actions else 0)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 40), st.data())
def test_stale_warm_start_still_finds_minimal_level(num_actions, data):
    old = data.draw(st.integers(1, num_actions))
    new = data.draw(st.integers(1, num_actions))
    cache = LevelCache()
    cache.put("t", num_actions, old)
    outcome = run(run_group("t", num_actions, Oracle(new), reward, SearchConfig(), cache))
    assert outcome.level == new
    assert cache.get("t", num_actions) == new
    # warm round + gallop + binary search of the last gallop step
    assert len(outcome.probes) <= 2 + 2 * math.ceil(math.log2(num_actions + 1))


def test_solved_group_is_not_guided_and_costs_nothing_extra():
    oracle = Oracle(threshold=0)
    outcome = run(run_group("t", 5, oracle, reward, SearchConfig(n=4)))
    assert outcome.status is GroupStatus.SOLVED_UNGUIDED
    assert oracle.calls == [(0, 4)]
    assert outcome.sampled == 4


@pytest.mark.parametrize(("reuse", "reused"), [("all", 2), ("successes", 1), ("none", 0)])
def test_probe_rollouts_at_the_chosen_level_join_the_guided_group(reuse, reused):
    oracle = Oracle(threshold=3, successes_per_call=1)  # a sufficient probe of m=2 has exactly one success
    outcome = run(run_group("t", 4, oracle, reward, SearchConfig(n=8, probe_m=2, reuse_probes=reuse)))
    assert outcome.level == 3
    assert outcome.reused == reused
    assert oracle.calls[-1] == (3, 8 - reused)  # only the remainder is sampled
    assert outcome.sampled == 8 + outcome.probe_trajectories + 8 - reused
    assert len(outcome.trajectories) == 8
    assert sum(r for _, r in outcome.trajectories) == (1 if reuse == "none" else 2)


@pytest.mark.parametrize(
    ("policy", "expected_level", "expected_count"),
    [("unguided", 0, 8), ("drop", 6, 0), ("keep", 6, 8)],
)
def test_full_failure_policies(policy, expected_level, expected_count):
    oracle = Oracle(threshold=99)
    outcome = run(run_group("t", 6, oracle, reward, SearchConfig(n=8, on_full_failure=policy)))
    assert outcome.status is GroupStatus.FULL_FAILED
    assert outcome.level == expected_level
    assert len(outcome.trajectories) == expected_count
    assert all(level == expected_level for level, _ in outcome.trajectories)
    if policy == "keep":  # the failed probes at L are valid members of the all-zero group
        assert oracle.calls[-1] == (6, 8 - 2)


def test_full_failure_is_remembered_so_next_epoch_probes_only_the_top():
    cache = LevelCache()
    run(run_group("t", 9, Oracle(99), reward, SearchConfig(), cache))
    oracle = Oracle(99)
    run(run_group("t", 9, oracle, reward, SearchConfig(), cache))
    assert oracle.calls == [(0, 8), (9, 2), (9, 6)]  # probe L, then complete the group at L


def test_after_two_whole_group_failures_in_a_row_the_probes_alone_check_the_top():
    cache, cfg = LevelCache(), SearchConfig(n=8, probe_m=2)
    calls = []
    for _ in range(4):  # epochs of a task out of reach
        oracle = Oracle(99)
        assert run(run_group("t", 9, oracle, reward, cfg, cache)).status is GroupStatus.FULL_FAILED
        calls.append(oracle.calls[1:])
    assert calls[0][-1] == (9, 6) and calls[1] == [(9, 2), (9, 6)]  # two whole groups at L...
    assert calls[2] == calls[3] == [(9, 2)]  # ...then the m probes only
    rescued = run(run_group("t", 9, LateSuccess(num_actions=9, first_success=0), reward, cfg, cache))
    assert rescued.status is GroupStatus.RESCUED and cache.failure_streak("t", 9) == 0  # a rescue resets
    oracle = Oracle(99)
    run(run_group("t", 9, oracle, reward, cfg, cache))
    assert oracle.calls[1:] == [(8, 2), (9, 2), (9, 6)]  # warm start at k* = 9, then a whole group again


@pytest.mark.parametrize("cfg", [SearchConfig(probe_only_after=0), SearchConfig(on_full_failure="keep")])
def test_whole_groups_at_the_top_every_epoch_when_the_streak_rule_is_off_or_keep_needs_them(cfg):
    cache = LevelCache()
    for _ in range(4):
        oracle = Oracle(99)
        run(run_group("t", 9, oracle, reward, cfg, cache))
        assert oracle.calls[-1] == (9, 6)


class LateSuccess:
    """Level-L rollouts that succeed only from the ``first_success``-th one on: the m probes fail, the
    rest of the group does (a task whose success at L is low but not zero)."""

    def __init__(self, num_actions: int, first_success: int):
        self.num_actions, self.first_success = num_actions, first_success
        self.calls: list[tuple[int, int]] = []
        self.sampled_at_top = 0

    async def __call__(self, level: int, count: int):
        self.calls.append((level, count))
        out = []
        for _ in range(count):
            index = self.sampled_at_top if level == self.num_actions else -1
            self.sampled_at_top += level == self.num_actions
            out.append((level, 1.0 if index >= self.first_success else 0.0))
        return out


def test_failed_probes_at_top_level_complete_the_group_and_rescue_it():
    cache = LevelCache()
    oracle = LateSuccess(num_actions=5, first_success=2)  # both probes at L fail, the third rollout succeeds
    outcome = run(run_group("t", 5, oracle, reward, SearchConfig(n=8, probe_m=2), cache))
    assert outcome.status is GroupStatus.RESCUED and outcome.level == 5 and outcome.is_hard
    assert oracle.calls[-1] == (5, 6)  # the probes at L are reused, n - m more sampled
    assert outcome.reused == 2 and len(outcome.trajectories) == 8
    assert sum(r for _, r in outcome.trajectories) == 6
    assert cache.get("t", 5) == 5  # cached as L, not as a full failure (L + 1)


@pytest.mark.parametrize("policy", ["unguided", "keep", "drop"])
def test_probe_only_check_gives_up_after_the_probes(policy):
    oracle = LateSuccess(num_actions=5, first_success=2)
    cfg = SearchConfig(n=8, probe_m=2, full_level_check="probe", on_full_failure=policy)
    outcome = run(run_group("t", 5, oracle, reward, cfg))
    if policy == "keep":  # keep samples the rest of the group at L anyway, so it looks at it
        assert outcome.status is GroupStatus.RESCUED and outcome.level == 5
    else:
        assert outcome.status is GroupStatus.FULL_FAILED
        assert oracle.sampled_at_top == 2  # nothing sampled at L beyond the probes


def test_completed_group_needs_tau_successes():
    oracle = LateSuccess(num_actions=3, first_success=7)  # probes (m=3) fail; only the 8th rollout at L succeeds
    outcome = run(run_group("t", 3, oracle, reward, SearchConfig(n=8, probe_m=3, tau=2, on_full_failure="keep")))
    assert outcome.status is GroupStatus.FULL_FAILED and outcome.level == 3
    assert sum(r for _, r in outcome.trajectories) == 1 and len(outcome.trajectories) == 8


def test_fallback_full_rescues_with_tau_successes_in_the_group():
    oracle = LateSuccess(num_actions=4, first_success=3)  # one success out of n = 4 at L
    rescued = run(run_group("t", 4, oracle, reward, SearchConfig(mode="fallback_full", n=4)))
    assert rescued.status is GroupStatus.RESCUED
    oracle = LateSuccess(num_actions=4, first_success=3)
    cfg = SearchConfig(mode="fallback_full", n=4, probe_m=2, tau=2)
    assert run(run_group("t", 4, oracle, reward, cfg)).status is GroupStatus.FULL_FAILED


@pytest.mark.parametrize(
    ("mode", "extra", "expected_level"),
    [
        ("off", {}, 0),
        ("fixed_k", {"fixed_k": 3}, 3),
        ("fixed_k", {"fixed_k": 30}, 10),
        ("fixed_ratio", {"fixed_ratio": 0.25}, 3),
        ("always_full", {}, 10),
    ],
)
def test_unconditional_modes_sample_one_group_at_their_level(mode, extra, expected_level):
    oracle = Oracle(threshold=99)
    outcome = run(run_group("t", 10, oracle, reward, SearchConfig(mode=mode, n=5, **extra)))
    assert oracle.calls == [(expected_level, 5)]
    assert outcome.level == expected_level
    assert outcome.status is (GroupStatus.GUIDED if expected_level else GroupStatus.UNGUIDED)


def test_task_without_reference_actions_is_never_guided():
    oracle = Oracle(threshold=1)
    outcome = run(run_group("t", 0, oracle, reward, SearchConfig(mode="always_full", n=3)))
    assert oracle.calls == [(0, 3)]
    assert outcome.status is GroupStatus.UNGUIDED
    assert outcome.is_hard  # all three failed: the barrier is reported even though nothing could be done


def test_mode_off_reports_hard_groups_without_guiding():
    solved = run(run_group("a", 5, Oracle(threshold=0), reward, SearchConfig(mode="off", n=2)))
    barrier = run(run_group("b", 5, Oracle(threshold=2), reward, SearchConfig(mode="off", n=2)))
    assert not solved.is_hard and barrier.is_hard and barrier.level == 0 and barrier.unguided_rewards == [0.0, 0.0]


def test_fallback_full_uses_top_level_without_probes():
    oracle = Oracle(threshold=4)
    outcome = run(run_group("t", 7, oracle, reward, SearchConfig(mode="fallback_full", n=4)))
    assert oracle.calls == [(0, 4), (7, 4)]
    assert outcome.status is GroupStatus.RESCUED and outcome.level == 7


def test_fallback_full_that_fails_applies_the_policy():
    outcome = run(
        run_group("t", 7, Oracle(99), reward, SearchConfig(mode="fallback_full", n=4, on_full_failure="drop"))
    )
    assert outcome.status is GroupStatus.FULL_FAILED and outcome.dropped


def test_ladder_probes_quarters_in_order():
    oracle = Oracle(threshold=5)
    outcome = run(run_group("t", 8, oracle, reward, SearchConfig(mode="fallback_ladder", n=4)))
    assert [p.level for p in outcome.probes] == [2, 4, 6]
    assert outcome.level == 6


def test_prompts_search_concurrently_without_global_rounds():
    """A prompt with a long search never blocks another one: the fast prompt's whole group finishes while
    the slow prompt is still waiting on its second probe (a global-round scheme would deadlock here)."""

    async def scenario():
        fast_done = asyncio.Event()
        fast = Oracle(threshold=1)

        async def slow(level, count):
            if level >= 3:  # the slow prompt's later probes wait until the fast prompt is completely done
                await asyncio.wait_for(fast_done.wait(), timeout=5)
            return [(level, float(level >= 4)) for _ in range(count)]

        async def fast_then_signal():
            outcome = await run_group("fast", 8, fast, reward, SearchConfig(n=4))
            fast_done.set()
            return outcome

        return await asyncio.gather(run_group("slow", 8, slow, reward, SearchConfig(n=4)), fast_then_signal())

    slow_outcome, fast_outcome = asyncio.run(scenario())
    assert fast_outcome.level == 1 and slow_outcome.level == 4


def test_rollout_returning_wrong_count_is_an_error():
    async def broken(level, count):
        return [(level, 0.0)] * (count - 1)

    with pytest.raises(RuntimeError, match="returned"):
        run(run_group("t", 3, broken, reward, SearchConfig(n=4)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sometimes"}, "actguide.mode"),
        ({"tau": 3, "probe_m": 2}, "actguide.tau"),
        ({"on_full_failure": "retry"}, "actguide.on_full_failure"),
        ({"full_level_check": "never"}, "actguide.full_level_check"),
        ({"fixed_ratio": 1.5}, "actguide.fixed_ratio"),
        ({"ladder": (0.5, 0.0)}, "actguide.ladder"),
        ({"n": 0}, "actguide.n"),
        ({"reuse_probes": True}, "actguide.reuse_probes"),
    ],
)
def test_config_validation_names_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**kwargs)


def test_outcome_summary_round_trips_through_json():
    import json

    outcome = run(run_group("t", 6, Oracle(threshold=4), reward, SearchConfig(n=3)))
    restored = type(outcome).from_summary(json.loads(json.dumps(outcome.summary(reward))))
    assert restored.trajectories == [r for _, r in outcome.trajectories]
    assert restored.probes == outcome.probes and restored.status is outcome.status
    assert (restored.level, restored.sampled, restored.reused) == (outcome.level, outcome.sampled, outcome.reused)


def test_a_failing_probe_level_waits_for_the_other_levels_before_raising():
    """Concurrent probes settle first: no rollout keeps generating after the search has failed."""
    finished: list[int] = []

    async def rollout(level: int, count: int):
        if level == 2:
            raise RuntimeError("tool server down")
        await asyncio.sleep(0.05)
        finished.append(level)
        return [(level, 0.0)] * count

    cache = LevelCache()
    cache.put("t", 3, 3)  # warm start: levels 2 and 3 are probed in one concurrent round
    with pytest.raises(RuntimeError, match="tool server down"):
        run(run_group("t", 3, rollout, reward, SearchConfig(n=4), cache))
    assert finished == [0, 3]  # the unguided group, then level 3 finished before the error surfaced


def test_max_level_caps_every_sampled_level_and_marks_the_group():
    oracle = Oracle(threshold=5)
    outcome = run(run_group("t", 8, oracle, reward, SearchConfig(n=4), max_level=6))
    assert outcome.status is GroupStatus.RESCUED and outcome.level == 5 and outcome.plan_capped
    assert max(level for level, _ in oracle.calls) <= 6


def test_a_task_out_of_reach_within_the_levels_that_fit_fails_at_the_cap():
    cache = LevelCache()
    oracle = Oracle(threshold=7)
    outcome = run(run_group("t", 8, oracle, reward, SearchConfig(n=4, on_full_failure="keep"), cache, max_level=6))
    assert outcome.status is GroupStatus.FULL_FAILED and outcome.level == 6
    assert oracle.calls[-1] == (6, 2) and max(level for level, _ in oracle.calls) == 6  # group completed at the cap
    again = Oracle(threshold=7)
    run(run_group("t", 8, again, reward, SearchConfig(n=4), cache, max_level=6))
    assert again.calls[:2] == [(0, 4), (6, 2)]  # warm start re-checks the cap, never L


@pytest.mark.parametrize(("mode", "expected"), [("fixed_k", 3), ("always_full", 3), ("fallback_full", 3)])
def test_unconditional_and_full_modes_respect_the_cap(mode, expected):
    oracle = Oracle(threshold=99)
    run(run_group("t", 10, oracle, reward, SearchConfig(mode=mode, n=2, fixed_k=9), max_level=3))
    assert max(level for level, _ in oracle.calls) == expected


def test_no_level_fits_means_no_guidance():
    oracle = Oracle(threshold=1)
    outcome = run(run_group("t", 4, oracle, reward, SearchConfig(n=2), max_level=0))
    assert oracle.calls == [(0, 2)] and outcome.status is GroupStatus.UNGUIDED and outcome.plan_capped
