"""benchmarks/barrier_base.py: the shipped base policy is at the barrier — no procedure unguided, the plan followed."""

import pytest

from actguide_plugin.barrier.base_policy import SHIPPED


@pytest.mark.integration
def test_the_shipped_base_policy_follows_the_full_plan_and_not_the_procedure_unguided(load_benchmark):
    bench = load_benchmark("barrier_base")
    table = bench.measure(SHIPPED, seed=0, train=6, val=6, min_hops=3, max_hops=3)
    for partition in ("train", "val"):
        by_level = table[partition]
        assert sorted(by_level) == [0, 1, 2, 3] and all(len(v) == 6 for v in by_level.values())
        assert max(by_level[0]) < 1e-5  # unguided: out of reach of an arm's 6,400 rollouts
        assert min(by_level[3]) > 0.1  # the full plan: followed hop by hop to the code
    text = bench.markdown(table)
    assert text.splitlines()[2].startswith("| train (6) |") and "| val (6) |" in text
