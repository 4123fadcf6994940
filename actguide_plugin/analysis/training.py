"""A run's training curves from verl's file logger (``metrics.jsonl``): the series behind the paper's Figures 5–6.

verl's ``FileLogger`` (``trainer.logger=[...,file]``, path ``$VERL_FILE_LOGGER_PATH``) writes one JSON object per
logged step, ``{"step": N, "data": {metric: value}}``; validation results are logged at their step too. A panel
is a question about the run (how many groups hit the barrier, how much guidance they needed, ...) answered by a
few metric series; :func:`panel_series` extracts them and :mod:`.plots` draws them, several runs overlaid.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actguide_plugin.core.metrics import RATIO_BINS
from actguide_plugin.names import METRIC_PREFIX

Steps = list[tuple[int, dict[str, float]]]
Series = list[tuple[int, float]]


def read_steps(path: Path) -> Steps:
    """Every record of a verl file-logger file, in file order; a bad line is an error naming it."""
    steps = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            steps.append((int(record["step"]), dict(record["data"])))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{number}: not a verl file-logger record: {err}") from err
    return steps


@dataclass(frozen=True)
class Panel:
    """One subplot: a title, a y label and the metrics (or metric patterns) it draws, with their legend labels."""

    title: str
    ylabel: str
    metrics: tuple[tuple[str, str], ...]  # (regex over metric names, label formatted with the regex's groups)
    stacked: bool = False  # parts of a whole per step (drawn as stacked bars for a single run)


def _guidance(name: str) -> str:
    return re.escape(METRIC_PREFIX + name)


HISTOGRAM_METRICS = tuple(
    (_guidance(f"level_ratio_hist/{int(low * 100)}-{int(high * 100)}"), f"k*/L in ({low:.2f}, {high:.2f}]")
    for low, high in RATIO_BINS
)

PANELS: tuple[Panel, ...] = (
    Panel(
        "Reachability barrier",
        "fraction of prompts",
        ((_guidance("hard_group_frac"), "hard groups"), (_guidance("rescued_frac"), "rescued (of hard)")),
    ),
    Panel(
        "Effective signal",
        "groups with reward variance",
        (
            (_guidance("effective_signal_frac_before"), "before guidance"),
            (_guidance("effective_signal_frac_after"), "after guidance"),
        ),
    ),
    Panel(
        "Accuracy",
        "mean reward",
        (
            (_guidance("acc_unguided"), "train, unguided"),
            (_guidance("acc_guided"), "train, guided"),
            (r"val-core/(.+)/acc/mean@\d+", "val {0}"),
        ),
    ),
    Panel("Guidance needed", "k*/L", ((_guidance("level_ratio_mean"), "mean k*/L of guided groups"),)),
    Panel("k*/L histogram", "guided groups", HISTOGRAM_METRICS, stacked=True),
    Panel(
        "Off-policy shift Δ",
        "nats per trajectory",
        ((_guidance("offpolicy_shift_mean"), "Δ mean"), (_guidance("offpolicy_shift_var"), "Δ variance")),
    ),
    Panel("Turns", "turns per trajectory", ((re.escape("num_turns/mean"), "mean turns"),)),
    Panel("Response length", "tokens", ((re.escape("response_length/mean"), "mean response length"),)),
)


def panel_series(steps: Steps, panel: Panel) -> dict[str, Series]:
    """The panel's series in this run, by legend label; metrics the run never logged are absent."""
    out: dict[str, Series] = {}
    for pattern, label in panel.metrics:
        regex = re.compile(pattern)
        for step, data in steps:
            for name, value in data.items():
                match = regex.fullmatch(name)
                if match is not None and isinstance(value, int | float) and not isinstance(value, bool):
                    out.setdefault(label.format(*match.groups()), []).append((step, float(value)))
    return {label: sorted(points) for label, points in out.items()}


def training_summary(runs: dict[str, Steps]) -> dict[str, Any]:
    """Per run and panel series: steps logged, first and last value, min and max."""
    summary: dict[str, Any] = {}
    for run, steps in runs.items():
        series = {}
        for panel in PANELS:
            for label, points in panel_series(steps, panel).items():
                values = [v for _, v in points]
                series[f"{panel.title}: {label}"] = {
                    "points": len(points),
                    "first": values[0],
                    "last": values[-1],
                    "min": min(values),
                    "max": max(values),
                }
        summary[run] = {"steps": len({step for step, _ in steps}), "series": series}
    return summary


def training_markdown(summary: dict[str, Any]) -> str:
    lines = ["| run | series | points | first | last | min | max |", "|---|---|---:|---:|---:|---:|---:|"]
    for run, data in summary.items():
        for name, s in data["series"].items():
            cells = [run, name, str(s["points"])] + [f"{s[k]:.3f}" for k in ("first", "last", "min", "max")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
