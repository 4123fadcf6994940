"""Findings 1 and 2 from sampled counts: minimal sufficient levels, Δ per level, prefix Pass@K easy vs hard."""

from __future__ import annotations

import pytest

from actguide_plugin.analysis.barrier import PrefixCurve, barrier_markdown, summarize_barrier
from actguide_plugin.analysis.levels import LevelSweep, levels_markdown, minimal_sufficient_level, summarize_levels


def sweep(task: str, successes: tuple[int, ...], shifts=None, samples: int = 4) -> LevelSweep:
    shifts = shifts or tuple(() if k == 0 else (float(k),) * samples for k in range(len(successes)))
    return LevelSweep(task, "bench", len(successes) - 1, samples, successes, shifts)


def test_minimal_sufficient_level_uses_tau():
    assert minimal_sufficient_level([0, 1, 3, 4], tau=1) == 1
    assert minimal_sufficient_level([0, 1, 3, 4], tau=2) == 2
    assert minimal_sufficient_level([0, 0], tau=1) is None
    with pytest.raises(ValueError, match="tau"):
        minimal_sufficient_level([1], tau=0)


def test_level_summary_histogram_and_shift_statistics():
    sweeps = [
        sweep("easy", (2, 4, 4, 4)),
        sweep("k1", (0, 1, 4, 4)),
        sweep("k3", (0, 0, 0, 2)),
        sweep("never", (0, 0)),
        LevelSweep("spread", "bench", 2, 2, (0, 0, 1), ((), (1.0, 3.0), (2.0, 2.0))),
    ]
    summary = summarize_levels(sweeps, tau=1)
    k_stars = {t["task_id"]: (t["k_star"], t["k_star_ratio"]) for t in summary["tasks"]}
    assert k_stars == {"easy": (0, 0.0), "k1": (1, 1 / 3), "k3": (3, 1.0), "never": (None, None), "spread": (2, 1.0)}
    assert summary["k_star_histogram"] == {
        "unguided (k*=0)": 1,
        "k*/L in (0.00, 0.25]": 0,
        "k*/L in (0.25, 0.50]": 1,
        "k*/L in (0.50, 0.75]": 0,
        "k*/L in (0.75, 1.00]": 2,
        "unreached (k=L fails)": 1,
    }
    level_1 = summary["shift_by_level"]["1"]  # 4 sweeps × 4 samples of 1.0, plus 1.0 and 3.0
    assert level_1["count"] == 18 and level_1["mean"] == pytest.approx(20 / 18)
    assert level_1["var"] == pytest.approx(sum((v - 20 / 18) ** 2 for v in [1.0] * 17 + [3.0]) / 18)
    assert "| k1 | bench | 3 | 0.00 0.25 1.00 1.00 | 1 |" in levels_markdown(summary)
    with pytest.raises(ValueError, match="one entry per level"):
        LevelSweep("bad", "bench", 2, 4, (0, 1), ((), ()))


def curve(task: str, successes: tuple[int, ...], samples: int = 2) -> PrefixCurve:
    return PrefixCurve(task, "bench", 3, 3, True, samples, successes, tuple(0.1 * j for j in range(len(successes))))


def test_barrier_splits_easy_and_hard_and_averages_per_prefix():
    summary = summarize_barrier([curve("e", (1, 2, 2, 2)), curve("h1", (0, 0, 1, 2)), curve("h2", (0, 2))])
    hard, easy = summary["groups"]["hard"], summary["groups"]["easy"]
    assert (hard["tasks"], easy["tasks"]) == (2, 1)
    assert hard["prefix_pass_at_k"] == {"0": 0.0, "1": 0.5, "2": 1.0, "3": 1.0}
    assert hard["prefix_pass_at_1"] == pytest.approx({"0": 0.0, "1": 0.5, "2": 0.5, "3": 1.0})
    assert hard["tasks_per_prefix"] == {"0": 2, "1": 2, "2": 1, "3": 1}
    assert easy["logprob_diff_per_turn"] == pytest.approx({"1": 0.0, "2": 0.1, "3": 0.2, "4": 0.3})
    table = barrier_markdown(summary)
    assert "**hard tasks** (2)" in table and "| 1 | 2 | 0.500 | 0.500 |" in table
    with pytest.raises(ValueError, match="outside"):
        curve("bad", (3,))
