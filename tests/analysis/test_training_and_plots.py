"""Training curves from verl's metrics.jsonl, and the PNG figures (what each panel drew)."""

from __future__ import annotations

import json

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread
from matplotlib.ticker import MaxNLocator

from actguide_plugin.analysis import plots
from actguide_plugin.analysis.barrier import PrefixCurve, summarize_barrier
from actguide_plugin.analysis.learning import CurveRow
from actguide_plugin.analysis.levels import LevelSweep, summarize_levels
from actguide_plugin.analysis.plots import learning_figure, plot_barrier, plot_levels, plot_training
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


def _barrier_runs() -> dict[tuple[int, str], list[CurveRow]]:
    """Three seeds of plain GRPO and of cispo, and seed 0's paper-default arm lying exactly on GRPO (all 0.00)."""

    def rows(mode: str, learns: bool) -> list[CurveRow]:
        return [CurveRow(mode, step, {"val_acc_unguided": 0.1 * step if learns else 0.0,
                                      "effective_signal_frac_after": 0.5 if mode != "off" else 0.0})
                for step in range(0, 11)]  # fmt: skip

    runs = {}
    for seed in (0, 1, 2):
        runs[(seed, "off")] = rows("off", False)
        runs[(seed, "cispo")] = rows("cispo", True)
    runs[(0, "fallback_adaptive")] = rows("fallback_adaptive", False)
    return runs


def test_learning_figure_gives_each_arm_a_colour_and_each_seed_a_style():
    fig, drawn = learning_figure(_barrier_runs())
    assert len(drawn["accuracy"]) == len(drawn["signal"]) == 7
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert len({(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines.values()}) == 7
        colour = {arm: {lines[f"{arm} (seed {s})"].get_color() for s in (0, 1, 2) if f"{arm} (seed {s})" in lines}
                  for arm in ("off", "cispo", "fallback_adaptive")}  # fmt: skip
        assert all(len(c) == 1 for c in colour.values()) and len(set.union(*colour.values())) == 3
        cispo = [lines[f"cispo (seed {s})"] for s in (0, 1, 2)]
        assert len({(line.get_linestyle(), line.get_marker()) for line in cispo}) == 3


def test_an_arm_on_top_of_another_stays_visible_inside_it():
    """The paper-default arm at 0.00 on plain GRPO: thinner, drawn above, opaque over a pale band (no offsets)."""
    fig, _ = learning_figure(_barrier_runs())
    accuracy = {line.get_label(): line for line in fig.axes[0].get_lines()}
    under, over = accuracy["off (seed 0)"], accuracy["fallback_adaptive (seed 0)"]
    assert list(under.get_ydata()) == list(over.get_ydata())  # the data coincide, and are drawn as they are
    assert over.get_zorder() > under.get_zorder() and over.get_linewidth() < under.get_linewidth()
    assert under.get_alpha() < 1.0 and over.get_alpha() == 1.0 and over.get_marker() not in ("", "None")


def test_learning_figure_counts_steps_in_integers_and_its_legend_covers_no_panel():
    fig, _ = learning_figure(_barrier_runs())
    canvas = FigureCanvasAgg(fig)  # lays the figure out as savefig does
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        locator = ax.xaxis.get_major_locator()
        assert isinstance(locator, MaxNLocator) and locator._integer
        assert all(float(tick).is_integer() for tick in ax.get_xticks())
        assert ax.get_legend() is None
    (legend,) = fig.legends  # one legend for the figure, above the panels
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["off", "cispo", "fallback_adaptive", "seed 0", "seed 1", "seed 2"]


def _drawn_figure(monkeypatch, plot, *args):
    """The figure a ``plot_*`` function saves, laid out as savefig lays it out."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    plot(*args, "unused.png")
    (fig,) = figures
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return fig, canvas.get_renderer()


def test_every_panel_legend_sits_beside_its_panel_and_counts_tick_in_integers(monkeypatch, tmp_path):
    steps = read_steps(metrics_file(tmp_path / "m.jsonl", RUN))
    histogram = [(1, {"actguide/level_ratio_hist/0-25": 1.0, "actguide/level_ratio_hist/75-100": 2.0})]
    levels = summarize_levels([LevelSweep("t", "b", 2, 2, (0, 1, 2), ((), (0.5, 1.5), (2.0, 2.0)))])
    barrier = summarize_barrier([PrefixCurve("t", "b", 2, 2, True, 2, (0, 1, 2), (0.1, 0.2, 0.0))])
    figures = [
        _drawn_figure(monkeypatch, plots.plot_training, {"actguide": steps, "grpo": steps[:2]}),
        _drawn_figure(monkeypatch, plots.plot_training, {"actguide": histogram}),
        _drawn_figure(monkeypatch, plots.plot_levels, levels),
        _drawn_figure(monkeypatch, plots.plot_barrier, barrier),
    ]
    legends = 0
    for fig, renderer in figures:
        panels = [ax.get_window_extent(renderer) for ax in fig.axes if ax.axison]
        for ax in fig.axes:
            if ax.get_legend() is not None:
                legends += 1
                box = ax.get_legend().get_window_extent(renderer)
                assert not any(box.overlaps(panel) for panel in panels), ax.get_title()
    assert legends == 3 + 1 + 2 + 2  # every legend drawn was checked
    by_title = {ax.get_title(): ax for fig, _ in figures for ax in fig.axes}
    for title in ("k*/L histogram", "Minimal sufficient level k*"):  # bars that count groups / tasks
        locator = by_title[title].yaxis.get_major_locator()
        assert isinstance(locator, MaxNLocator) and locator._integer
        assert all(float(tick).is_integer() for tick in by_title[title].get_yticks())
