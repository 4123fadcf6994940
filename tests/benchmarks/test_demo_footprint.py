"""The process-tree memory sampler that the demo footprint and the barrier experiment report."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="module")
def footprint(load_benchmark):
    return load_benchmark("demo_footprint")


def test_peak_memory_counts_a_grandchild_and_the_exit_code_comes_back(footprint):
    # the parent only waits; a grandchild holds ~300 MiB of touched pages for 2 s, then the parent exits 3
    grandchild = "import time; block = bytearray(300 * 2**20); time.sleep(2)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}]); sys.exit(3)"
    run = footprint.run_measured([sys.executable, "-c", parent], interval_s=0.2)
    assert run.returncode == 3
    assert run.peak_pss > 250 * 2**20  # the grandchild's block, found through the tree
    assert run.peak_rss >= run.peak_pss
    assert "-c import time" in max(run.at_peak)[1]  # the largest process at the peak is the grandchild
    assert run.wall_s >= 2.0
