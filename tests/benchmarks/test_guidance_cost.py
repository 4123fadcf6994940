"""The guidance-cost simulator's claims, on a small instance (behaviour only, no timing)."""

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("guidance_cost")


def test_ours_never_uses_unverified_levels_and_has_no_global_rounds(bench, capsys):
    bench.main(["--tasks", "96", "--epochs", "3", "--seed", "1"])
    table = capsys.readouterr().out
    assert "| trajectories per rescued group |" in table
    args = bench.argparse.Namespace(
        tasks=96,
        epochs=3,
        max_actions=40,
        easy=0.5,
        barrier=0.35,
        impossible=0.15,
        n=8,
        m=2,
        tau=1,
        author_rounds=5,
        drift=0.3,
        base_latency=20.0,
        tail_latency=15.0,
        seed=1,
        p_range=(0.05, 0.9),
    )
    authors, ours, probe_only = bench.simulate(args).values()
    assert ours.unverified == 0 and ours.global_rounds == 0 and probe_only.unverified == 0
    assert authors.unverified > 0  # 5 rounds cannot resolve L up to 40
    assert ours.rescued > 0
    assert ours.guidance_trajectories / ours.rescued < authors.guidance_trajectories / authors.rescued
    # completing the group at L rescues low-success tasks the m probes alone give up on
    assert ours.rescued / ours.hard >= authors.rescued / authors.hard
    assert ours.rescued > probe_only.rescued and ours.hard == probe_only.hard


def test_success_probabilities_follow_the_range(bench):
    args = bench.argparse.Namespace(
        tasks=200, max_actions=10, easy=0.0, barrier=1.0, impossible=0.0, p_range=(0.05, 0.1)
    )
    tasks = bench.make_tasks(args, bench.random.Random(0))
    assert all(0.05 <= t.p_success <= 0.1 for t in tasks)
