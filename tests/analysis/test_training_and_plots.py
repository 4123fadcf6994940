"""Training curves from verl's metrics.jsonl, and the PNG figures (what each panel drew)."""

from __future__ import annotations

import json

import pytest
from matplotlib.image import imread

from actguide_plugin.analysis.barrier import PrefixCurve, summarize_barrier
from actguide_plugin.analysis.levels import LevelSweep, summarize_levels
from actguide_plugin.analysis.plots import plot_barrier, plot_levels, plot_training
from actguide_plugin.analysis.training import PANELS, panel_series, read_steps, training_markdown, training_summary


def metrics_file(path, steps):
    path.write_text("".join(json.dumps({"step": s, "data": d}) + "\n" for s, d in steps), encoding="utf-8")
    return path


RUN = [
    (0, {"val-core/nq/acc/mean@3": 0.1, "val-core/hotpot/acc/mean@3": 0.0}),
    (1, {"actguide/hard_group_frac": 0.8, "actguide/rescued_frac": 0.5, "num_turns/mean": 3.0, "flag": True}),
    (2, {"actguide/hard_group_frac": 0.6, "actguide/rescued_frac": 0.7, "val-core/nq/acc/mean@3": 0.3}),
]


def test_read_steps_and_panel_series(tmp_path):
    steps = read_steps(metrics_file(tmp_path / "m.jsonl", RUN))
    barrier = next(p for p in PANELS if p.title == "Reachability barrier")
    assert panel_series(steps, barrier) == {
        "hard groups": [(1, 0.8), (2, 0.6)],
        "rescued (of hard)": [(1, 0.5), (2, 0.7)],
    }
    accuracy = next(p for p in PANELS if p.title == "Accuracy")
    assert panel_series(steps, accuracy) == {"val nq": [(0, 0.1), (2, 0.3)], "val hotpot": [(0, 0.0)]}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "data": {}}\n{"data": {}}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a verl file-logger record"):
        read_steps(bad)


def test_training_figure_overlays_runs_and_marks_missing_panels(tmp_path):
    steps = read_steps(metrics_file(tmp_path / "m.jsonl", RUN))
    drawn = plot_training({"actguide": steps, "grpo": steps[:2]}, tmp_path / "training.png")
    assert drawn["Reachability barrier"] == [
        "actguide: hard groups",
        "actguide: rescued (of hard)",
        "grpo: hard groups",
        "grpo: rescued (of hard)",
    ]
    assert drawn["Off-policy shift Δ"] == []  # not logged by these runs: the panel says so
    assert imread(tmp_path / "training.png").shape[0] > 300
    summary = training_summary({"actguide": steps})
    assert summary["actguide"]["series"]["Reachability barrier: hard groups"] == {
        "points": 2,
        "first": 0.8,
        "last": 0.6,
        "min": 0.6,
        "max": 0.8,
    }
    assert "| actguide | Turns: mean turns | 1 | 3.000 |" in training_markdown(summary)


def test_a_single_runs_k_star_histogram_is_drawn_as_stacked_bars(tmp_path):
    steps = [(1, {"actguide/level_ratio_hist/0-25": 1.0, "actguide/level_ratio_hist/75-100": 2.0})]
    drawn = plot_training({"actguide": steps}, tmp_path / "training.png")
    assert drawn["k*/L histogram"] == ["k*/L in (0.00, 0.25]", "k*/L in (0.75, 1.00]"]


def test_findings_figures(tmp_path):
    levels = summarize_levels([LevelSweep("t", "b", 2, 2, (0, 1, 2), ((), (0.5, 1.5), (2.0, 2.0)))])
    assert plot_levels(levels, tmp_path / "levels.png") == {
        "success": ["t"],
        "k_star": ["k*/L in (0.25, 0.50]"],
        "shift": ["level 1", "level 2"],
    }
    barrier = summarize_barrier([PrefixCurve("t", "b", 2, 2, True, 2, (0, 1, 2), (0.1, 0.2, 0.0))])
    assert plot_barrier(barrier, tmp_path / "barrier.png") == {
        "prefix": ["hard: Pass@K", "hard: pass@1"],
        "logprob": ["hard"],
    }
    for name in ("levels.png", "barrier.png"):
        assert imread(tmp_path / name).ndim == 3
