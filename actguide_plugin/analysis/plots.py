"""PNG figures of the analyses (matplotlib's object API: no pyplot, no global backend, no display needed).

Each function draws into a new figure, saves it to ``path`` and returns what it drew, per subplot, as legend
labels, so callers (and tests) can tell an empty panel from a drawn one without parsing pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from actguide_plugin.analysis.learning import CurveRow
from actguide_plugin.analysis.training import PANELS, Panel, Steps, panel_series
from actguide_plugin.core.metrics import ratio_bin

LINESTYLES = ("-", "--", ":", "-.")
Drawn = dict[str, list[str]]


def _save(fig: Figure, path: str | Path) -> None:
    if fig.get_layout_engine() is None:  # a figure with its own (constrained) layout keeps it
        fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")


def _legend_beside(ax: Any, **options: Any) -> None:
    """The panel's legend to the right of its axes, where it covers no data (the figure's constrained layout makes
    the room)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False, **options)


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")


def plot_training(runs: Mapping[str, Steps], path: str | Path) -> Drawn:
    """One figure of a run (or several overlaid, one color each): every panel of :data:`.training.PANELS`."""
    columns = 3
    rows = math.ceil(len(PANELS) / columns)
    fig = Figure(figsize=(6.0 * columns, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    drawn: Drawn = {}
    for ax, panel in zip(axes.flat, PANELS, strict=False):
        if panel.stacked and len(runs) == 1:
            drawn[panel.title] = _stacked_bars(ax, panel_series(next(iter(runs.values())), panel))
        else:
            drawn[panel.title] = _lines(ax, panel, runs)
        ax.set_title(panel.title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(panel.ylabel)
        if panel.stacked:  # bars count groups
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if drawn[panel.title]:
            _legend_beside(ax)
        else:
            _no_data(ax)
    for ax in list(axes.flat)[len(PANELS) :]:
        ax.axis("off")
    _save(fig, path)
    return drawn


def _lines(ax: Any, panel: Panel, runs: Mapping[str, Steps]) -> list[str]:
    """The panel's series of every run: a color per run, a line style per series."""
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = []
    for run_index, (run, steps) in enumerate(runs.items()):
        for series_index, (label, points) in enumerate(panel_series(steps, panel).items()):
            xs, ys = zip(*points, strict=True)
            name = f"{run}: {label}" if len(runs) > 1 else label
            style = LINESTYLES[series_index % len(LINESTYLES)]
            marker = "o" if len(points) < 4 or label.startswith("val") else None
            ax.plot(xs, ys, style, color=colors[run_index % len(colors)], marker=marker, ms=3, label=name)
            drawn.append(name)
    return drawn


def _stacked_bars(ax: Any, series: dict[str, list[tuple[int, float]]]) -> list[str]:
    """One bar per step, one segment per series (e.g. how many guided groups fell in each k*/L bin)."""
    steps = sorted({step for points in series.values() for step, _ in points})
    bottom = [0.0] * len(steps)
    for label, points in series.items():
        values = dict(points)
        heights = [values.get(step, 0.0) for step in steps]
        ax.bar(steps, heights, bottom=bottom, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    return list(series)


def plot_barrier(summary: Mapping[str, Any], path: str | Path) -> Drawn:
    """Prefix Pass@K along guided trajectories and the guided-vs-unguided log-prob difference, easy vs hard."""
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    drawn: Drawn = {"prefix": [], "logprob": []}
    colors = {"easy": "tab:blue", "hard": "tab:red"}
    for name, group in summary["groups"].items():
        if not group["tasks"]:
            continue
        js = [int(j) for j in group["prefix_pass_at_k"]]
        left.plot(js, list(group["prefix_pass_at_k"].values()), "-o", color=colors[name], label=f"{name}: Pass@K")
        left.plot(js, list(group["prefix_pass_at_1"].values()), "--", color=colors[name], label=f"{name}: pass@1")
        drawn["prefix"] += [f"{name}: Pass@K", f"{name}: pass@1"]
        turns = [int(t) for t in group["logprob_diff_per_turn"]]
        if turns:
            right.plot(turns, list(group["logprob_diff_per_turn"].values()), "-o", color=colors[name], label=name)
            drawn["logprob"].append(name)
    left.set(title="Unguided success from guided prefix states", xlabel="guided tool-calling turns in the prefix j")
    left.set_ylabel("success of K unguided continuations")
    left.set_ylim(-0.05, 1.05)
    right.set(title="Guided vs unguided policy along the trajectory", xlabel="assistant turn")
    right.set_ylabel("mean log π(y|x,G) − log π(y|x) per token")
    for ax, key in ((left, "prefix"), (right, "logprob")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if drawn[key]:
            _legend_beside(ax)
        else:
            _no_data(ax)
    _save(fig, path)
    return drawn


def _k_star_category(task: Mapping[str, Any], categories: list[str]) -> str:
    """The histogram category of a task's k* (the order of ``k_star_histogram``: 0, the k*/L bins, unreached)."""
    if task["k_star"] is None:
        return categories[-1]
    if task["k_star"] == 0:
        return categories[0]
    return categories[1 + ratio_bin(task["k_star_ratio"])]


def plot_levels(summary: Mapping[str, Any], path: str | Path) -> Drawn:
    """Success against k/L per task, the minimal-sufficient-level histogram, and Δ per level."""
    fig = Figure(figsize=(15, 3.8), layout="constrained")
    curves, hist, shift = fig.subplots(1, 3)
    drawn: Drawn = {"success": [], "k_star": [], "shift": []}
    categories = list(summary["k_star_histogram"])
    colors = matplotlib.colormaps["viridis"]
    labelled = set()
    for task in summary["tasks"]:
        length = max(task["num_actions"], 1)
        xs = [k / length for k in range(len(task["success_rate"]))]
        category = _k_star_category(task, categories)
        color = "gray" if category == categories[-1] else colors(categories.index(category) / len(categories))
        label = None if category in labelled else category
        labelled.add(category)
        curves.plot(xs, task["success_rate"], "-o", ms=3, alpha=0.6, color=color, label=label)
        drawn["success"].append(task["task_id"])
    curves.set(title="Success against guidance level", xlabel="guidance level k/L", ylabel="success rate")
    curves.set_ylim(-0.05, 1.05)
    if drawn["success"]:
        _legend_beside(curves, title="task's k*", title_fontsize=7)
    names, counts = list(summary["k_star_histogram"]), list(summary["k_star_histogram"].values())
    hist.bar(range(len(names)), counts, color="tab:purple")
    hist.set_xticks(range(len(names)), [n.replace(" in ", "\n") for n in names], fontsize=6, rotation=30, ha="right")
    hist.set(title="Minimal sufficient level k*", ylabel="tasks")
    hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    drawn["k_star"] = [n for n, c in zip(names, counts, strict=True) if c]
    levels = summary["shift_by_level"]
    if levels:
        ks = [int(k) for k in levels]
        means = [s["mean"] for s in levels.values()]
        stds = [math.sqrt(s["var"]) for s in levels.values()]
        shift.errorbar(ks, means, yerr=stds, fmt="-o", capsize=3, color="tab:green", label="Δ mean ± std")
        _legend_beside(shift)
        drawn["shift"] = [f"level {k}" for k in ks]
    else:
        _no_data(shift)
    shift.set(title="Off-policy shift Δ per level", xlabel="guidance level k", ylabel="Δ (nats per trajectory)")
    shift.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, path)
    return drawn


BASELINE_ARM = "off"  # plain GRPO: the first colour (the pale band) in every figure, the ActGuide arms after it
SEED_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))  # (line style, marker) of the i-th seed
ARM_WIDTH = 6.0  # line width of the first arm, drawn pale and beneath: the later arms lie visibly inside it
SIGNAL_WINDOW = 10  # steps averaged per point of the signal panel (each step's fraction moves in 1/batch jumps)


def plot_learning(runs: Mapping[tuple[int, str], Sequence[CurveRow]], path: str | Path) -> Drawn:
    """The barrier experiment's figure (:func:`learning_figure`), saved to ``path``."""
    fig, drawn = learning_figure(runs)
    _save(fig, path)
    return drawn


def learning_figure(runs: Mapping[tuple[int, str], Sequence[CurveRow]]) -> tuple[Figure, Drawn]:
    """Unguided validation accuracy (top) and the groups with a GRPO signal after guidance (bottom) against step.

    Read at README width (one column, ~800 px): a categorical colour per arm, a line style and marker per seed,
    and every arm drawn thinner and above the arms before it (the first as a pale band), so arms that coincide
    (plain GRPO and the paper-default objective both at 0.00) stay visible one inside the other; one legend above
    the panels.
    """
    arms = sorted(dict.fromkeys(arm for _, arm in runs), key=lambda arm: arm != BASELINE_ARM)  # same colours always
    seed_styles = {seed: SEED_STYLES[i % len(SEED_STYLES)] for i, seed in enumerate(dict.fromkeys(s for s, _ in runs))}
    fig = Figure(figsize=(8, 6.4), layout="constrained")  # makes room for the legend outside the panels
    acc_ax, signal_ax = fig.subplots(2, 1, sharex=True)
    drawn: Drawn = {"accuracy": [], "signal": []}
    for (seed, arm), rows in runs.items():
        index = arms.index(arm)
        linestyle, marker = seed_styles[seed]
        style = dict(_arm_style(index), linestyle=linestyle, marker=marker, mfc="none", label=f"{arm} (seed {seed})")
        val = [(r.step, r.values["val_acc_unguided"]) for r in rows if r.values["val_acc_unguided"] is not None]
        if val:
            acc_ax.plot(*zip(*val, strict=True), ms=5, **style)
            drawn["accuracy"].append(style["label"])
        signal = [(r.step, r.values["effective_signal_frac_after"]) for r in rows]
        signal = [(step, value) for step, value in signal if value is not None]
        if signal:
            steps = [step for step, _ in signal]
            signal_ax.plot(steps, _trailing_mean([v for _, v in signal], SIGNAL_WINDOW), ms=4,
                           markevery=SIGNAL_WINDOW, **style)  # fmt: skip
            drawn["signal"].append(style["label"])
    acc_ax.set_title("Unguided validation accuracy (held-out entities)", fontsize=10)
    acc_ax.set_ylabel("accuracy")
    signal_ax.set_title(f"Groups with a GRPO signal after guidance (mean of the last {SIGNAL_WINDOW} steps)",
                        fontsize=10)  # fmt: skip
    signal_ax.set_ylabel("fraction of prompts")
    signal_ax.set_xlabel("training step")
    for ax, key in ((acc_ax, "accuracy"), (signal_ax, "signal")):
        ax.set_ylim(-0.04, 1.04)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
        ax.grid(alpha=0.3)
        if not drawn[key]:
            _no_data(ax)
    if runs:
        handles = [Line2D([], [], **dict(_arm_style(i), lw=3), label=arm) for i, arm in enumerate(arms)]
        handles += [Line2D([], [], color="black", linestyle=linestyle, marker=marker, mfc="none", label=f"seed {seed}")
                    for seed, (linestyle, marker) in seed_styles.items()]  # fmt: skip
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    return fig, drawn


def _arm_style(index: int) -> dict[str, Any]:
    """Colour, width and drawing order of the ``index``-th arm: widths 6, 3, 2, ... so a later arm fits inside an
    earlier one, drawn above it; the first arm is a pale band."""
    colors = matplotlib.colormaps["tab10"].colors
    return dict(color=colors[index % len(colors)], lw=ARM_WIDTH / (1 + index), alpha=0.45 if index == 0 else 1.0,
                zorder=2 + index)  # fmt: skip


def _trailing_mean(values: Sequence[float], window: int) -> list[float]:
    """Mean of each value and the ``window - 1`` before it (fewer at the start)."""
    return [sum(values[max(0, i + 1 - window) : i + 1]) / (i + 1 - max(0, i + 1 - window)) for i in range(len(values))]
