import pytest

from actguide_plugin.core.metrics import group_metrics, ratio_bin, ratio_histogram
from actguide_plugin.core.search import GroupOutcome, GroupStatus, Probe


def outcome(status, level, rewards, unguided=(), probes=(), sampled=0, num_actions=8, reused=0, hard=None):
    return GroupOutcome(
        task_id="t",
        num_actions=num_actions,
        status=status,
        level=level,
        trajectories=list(rewards),
        unguided_rewards=list(unguided),
        probes=list(probes),
        sampled=sampled,
        serial_rounds=1 + len(probes),
        reused=reused,
        is_hard=status in (GroupStatus.RESCUED, GroupStatus.FULL_FAILED) if hard is None else hard,
    )


def test_group_metrics_on_a_hand_built_batch():
    outcomes = [
        outcome(GroupStatus.SOLVED_UNGUIDED, 0, [1, 0, 0, 1], unguided=[1, 0, 0, 1], sampled=4),
        outcome(
            GroupStatus.RESCUED,
            2,
            [1, 1, 0, 0],
            unguided=[0, 0, 0, 0],
            probes=[Probe(4, (1.0, 0.0), True), Probe(2, (1.0, 1.0), True), Probe(1, (0.0, 0.0), False)],
            sampled=4 + 6 + 2,
            reused=2,
        ),
        outcome(
            GroupStatus.FULL_FAILED,
            0,
            [0, 0, 0, 0],
            unguided=[0, 0, 0, 0],
            probes=[Probe(8, (0.0, 0.0), False)],
            sampled=6,
        ),
    ]
    m = group_metrics(outcomes, float)
    assert m["hard_group_frac"] == pytest.approx(2 / 3)
    assert m["rescued_frac"] == pytest.approx(1 / 2)
    assert m["full_failed_groups"] == 1
    assert m["level_mean"] == 2 and m["level_ratio_mean"] == pytest.approx(0.25)
    assert m["level_hist/2"] == 1 and m["level_ratio_hist/0-25"] == 1 and m["level_ratio_hist/25-50"] == 0
    assert m["probe_trajectories_per_rescued"] == 8  # (6 + 2) probe rollouts over 1 rescued group
    assert m["guidance_trajectories_per_rescued"] == 8 + 2  # probes + the 2 fresh guided rollouts
    assert m["effective_signal_frac_before"] == pytest.approx(1 / 3)
    assert m["effective_signal_frac_after"] == pytest.approx(2 / 3)
    assert m["acc_unguided"] == pytest.approx(2 / 12)
    assert m["acc_guided"] == pytest.approx(0.5)
    assert m["reused_probe_trajectories"] == 2


def test_unguided_accuracy_uses_final_group_when_no_search_ran():
    m = group_metrics([outcome(GroupStatus.UNGUIDED, 0, [1, 0])], float)
    assert m["acc_unguided"] == 0.5 and m["hard_group_frac"] == 0.0
    # nothing was guided: no guided accuracy and no k* (a logged 0 would read as "k* = 0" on a curve)
    assert not {"acc_guided", "level_mean", "level_ratio_mean"} & m.keys()


def test_dropped_group_counts_and_is_excluded_from_signal_after():
    m = group_metrics([outcome(GroupStatus.FULL_FAILED, 8, [], unguided=[0, 0])], float)
    assert m["dropped_groups"] == 1 and m["effective_signal_frac_after"] == 0.0


def test_signal_after_counts_dropped_groups_in_its_denominator():
    m = group_metrics(
        [
            outcome(GroupStatus.RESCUED, 2, [1, 0], unguided=[0, 0]),
            outcome(GroupStatus.FULL_FAILED, 8, [], unguided=[0, 0]),  # dropped: no gradient
        ],
        float,
    )
    assert m["effective_signal_frac_after"] == 0.5
    assert m["effective_signal_frac_before"] == 0.0


def test_signal_before_is_measured_on_unguided_groups_only():
    """Fixed-level modes roll out no unguided group for a guided prompt: it is not measured before guidance."""
    guided = outcome(GroupStatus.GUIDED, 2, [1, 0])
    m = group_metrics([guided], float)
    assert m["effective_signal_frac_after"] == 1.0 and "effective_signal_frac_before" not in m
    m = group_metrics([guided, outcome(GroupStatus.GUIDED, 0, [0, 0])], float)  # level 0: sampled unguided
    assert m["effective_signal_frac_before"] == 0.0 and m["effective_signal_frac_after"] == 0.5


def test_plain_grpo_groups_still_report_the_reachability_barrier():
    m = group_metrics(
        [
            outcome(GroupStatus.UNGUIDED, 0, [0, 0], unguided=[0, 0], hard=True),
            outcome(GroupStatus.UNGUIDED, 0, [1, 0]),
        ],
        float,
    )
    assert m["hard_group_frac"] == 0.5 and m["rescued_frac"] == 0.0 and m["guidance_trajectories_per_rescued"] == 0.0


def test_ratio_bins_are_left_open_except_the_first():
    assert [ratio_bin(r) for r in (0.0, 0.25, 0.2500001, 0.5, 0.75, 1.0)] == [0, 0, 1, 1, 2, 3]
    assert ratio_histogram([0.0, 1 / 3, 2 / 3, 1.0, 1.0]) == [1, 1, 1, 2]


def test_hard_tasks_without_reference_actions_are_counted_apart_from_failed_rescues():
    m = group_metrics(
        [
            outcome(GroupStatus.RESCUED, 2, [1, 0], unguided=[0, 0], probes=[Probe(2, (1.0, 0.0), True)], sampled=6),
            outcome(GroupStatus.UNGUIDED, 0, [0, 0], unguided=[0, 0], num_actions=0, hard=True),  # L = 0
            outcome(GroupStatus.UNGUIDED, 0, [0, 0], unguided=[0, 0], num_actions=0, hard=True),
        ],
        float,
    )
    assert m["hard_groups"] == 3 and m["hard_groups_without_actions"] == 2
    assert m["rescued_frac"] == 1.0  # 1 of the 1 hard group that guidance could act on (was 1/3)
    assert m["probes_per_hard"] == 1.0
