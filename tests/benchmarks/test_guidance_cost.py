"""The guidance-cost simulator's claims, on a small instance (behaviour only, no timing)."""

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("guidance_cost")


def small_args(bench, **overrides):
    values = dict(tasks=96, epochs=3, max_actions=40, easy=0.5, barrier=0.35, impossible=0.15, n=8, m=2, tau=1,
                  author_rounds=5, workers=8, drift=0.3, base_latency=20.0, tail_latency=15.0, seed=1,
                  p_range=(0.05, 0.9))  # fmt: skip
    return bench.argparse.Namespace(**{**values, **overrides})


def test_ours_never_uses_unverified_levels_and_has_no_global_rounds(bench, capsys):
    bench.main(["--tasks", "96", "--epochs", "3", "--seed", "1"])
    table = capsys.readouterr().out
    assert "| trajectories per rescued group |" in table and "| authors, as released |" in table
    results = bench.simulate(small_args(bench))
    released, simplified = results[bench.RELEASED], results[bench.SIMPLIFIED]
    ours, every_time, probe_only = (results[name] for name in list(results)[2:])
    assert ours.unverified == 0 and ours.global_rounds == 0 and probe_only.unverified == 0
    assert released.unverified > 0 and simplified.unverified > 0  # 5 rounds cannot resolve L up to 40
    assert ours.rescued > 0
    for authors in (released, simplified):
        assert ours.guidance_trajectories / ours.rescued < authors.guidance_trajectories / authors.rescued
        # completing the group at L rescues low-success tasks the m probes alone give up on
        assert ours.rescued / ours.hard >= authors.rescued / authors.hard
    assert ours.rescued > probe_only.rescued and ours.hard == probe_only.hard
    # the streak rule saves whole groups at L for tasks out of reach, and rescues as many
    assert ours.guidance_trajectories < every_time.guidance_trajectories and ours.rescued >= every_time.rescued - 1


def test_the_release_regenerates_the_whole_padded_batch_in_every_probe_call(bench):
    """3 hard tasks with L = 2, never solved, padded to 8 prompts: lo = 0, hi = 2, mid 1 fails, lo = 2 = hi (k = L is
    never probed). One round of 2 calls × 8 prompts, then 8 guided rollouts × 3 tasks (already a multiple of 8)."""
    tasks = [bench.Task(f"t{i}", 2, "impossible", 3, 0.5) for i in range(3)]
    tally = bench.Tally()
    args = small_args(bench)
    bench.authors_released_epoch(tasks, 0, args, bench.World(0, 1.0, 1.0), tally, bench.random.Random(0))
    assert tally.hard == 3 and tally.rescued == 0
    assert tally.guidance_trajectories == 2 * 8 + 3 * 8
    assert tally.unverified == 3  # k = lo = L, never probed
    assert tally.global_rounds == 3  # two probe calls and the guided call, each waited for by the whole batch


def test_the_seeds_summary_has_one_row_per_seed(bench, capsys):
    bench.main(["--tasks", "48", "--epochs", "2", "--seeds", "0,3"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 0 ") or line.startswith("| 3 ")]
    assert len(rows) == 2 and all(row.count("×") == 4 for row in rows)


def test_success_probabilities_follow_the_range(bench):
    args = bench.argparse.Namespace(
        tasks=200, max_actions=10, easy=0.0, barrier=1.0, impossible=0.0, p_range=(0.05, 0.1)
    )
    tasks = bench.make_tasks(args, bench.random.Random(0))
    assert all(0.05 <= t.p_success <= 0.1 for t in tasks)
