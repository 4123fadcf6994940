"""Learning curves of the barrier experiment: several runs that differ only in ``actguide.mode``, one table.

Each run is verl's file-logger output (``metrics.jsonl``, read by :func:`.training.read_steps`). Per step and mode
it takes the unguided validation accuracy (verl's ``val-core/<source>/acc/mean@N``, logged at validation steps; the
validation is always unguided) and the guidance diagnostics (``actguide/*``), and writes what
``benchmarks/barrier_learning.py`` reports: ``curves.csv`` rows, a markdown summary and the figure's series.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from actguide_plugin.analysis.training import Steps
from actguide_plugin.names import METRIC_PREFIX

VAL_ACC = re.compile(r"^val-core/[^/]+/acc/mean@\d+$")
TRAIN_COLUMNS = (  # curves.csv column -> actguide/* metric
    ("effective_signal_frac_before", "effective_signal_frac_before"),
    ("effective_signal_frac_after", "effective_signal_frac_after"),
    ("hard_group_frac", "hard_group_frac"),
    ("rescued_frac", "rescued_frac"),
    ("level_ratio_mean", "level_ratio_mean"),
    ("acc_unguided", "acc_unguided"),
    ("acc_guided", "acc_guided"),
    ("offpolicy_shift_mean", "offpolicy_shift_mean"),
)
COLUMNS = ("mode", "step", "val_acc_unguided", *(column for column, _ in TRAIN_COLUMNS))


def val_accuracy(metrics: Mapping[str, float]) -> float | None:
    """Mean of the ``val-core/<source>/acc/mean@N`` metrics of a record (one per data source), or ``None``."""
    values = [value for name, value in metrics.items() if VAL_ACC.match(name)]
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class CurveRow:
    mode: str
    step: int
    values: dict[str, float | None]  # column -> value (None: not logged at this step)


def curve_rows(mode: str, steps: Steps) -> list[CurveRow]:
    """One row per logged step (validation and training records of a step merged), in step order."""
    merged: dict[int, dict[str, float]] = {}
    for step, metrics in steps:
        merged.setdefault(step, {}).update(metrics)
    rows = []
    for step in sorted(merged):
        metrics = merged[step]
        values: dict[str, float | None] = {"val_acc_unguided": val_accuracy(metrics)}
        for column, metric in TRAIN_COLUMNS:
            values[column] = metrics.get(METRIC_PREFIX + metric)
        rows.append(CurveRow(mode, step, values))
    return rows


def curves_csv(rows: Sequence[CurveRow]) -> str:
    """``curves.csv``: :data:`COLUMNS`, empty cells where a value was not logged."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        cells = [row.values.get(column) for column in COLUMNS[2:]]
        writer.writerow([row.mode, row.step, *("" if value is None else f"{value:.4f}" for value in cells)])
    return out.getvalue()


def read_curves_csv(text: str) -> dict[tuple[int, str], list[CurveRow]]:
    """The runs of a report's ``curves.csv`` (a ``seed`` column before :data:`COLUMNS`), by (seed, mode) in file
    order: what the figure needs, for results kept without their ``metrics.jsonl``."""
    runs: dict[tuple[int, str], list[CurveRow]] = {}
    for record in csv.DictReader(io.StringIO(text)):
        values = {column: float(record[column]) if record[column] else None for column in COLUMNS[2:]}
        key = (int(record["seed"]), record["mode"])
        runs.setdefault(key, []).append(CurveRow(record["mode"], int(record["step"]), values))
    return runs


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


@dataclass(frozen=True)
class ModeSummary:
    """What the README table reports for one run."""

    mode: str
    steps: int
    val_acc_start: float | None
    val_acc_end: float | None
    val_acc_max: float | None
    signal_before: float | None  # mean over the run's steps
    signal_after: float | None
    rescued_first_step: float | None
    level_ratio_first: float | None  # mean k*/L over the first and the last quarter of the steps with rescues
    level_ratio_last: float | None
    shift_first: float | None  # mean off-policy shift Δ of guided samples, first and last quarter (nats)
    shift_last: float | None


def summarize(mode: str, rows: Sequence[CurveRow]) -> ModeSummary:
    val = [(row.step, row.values["val_acc_unguided"]) for row in rows if row.values["val_acc_unguided"] is not None]
    training = [row for row in rows if row.values["effective_signal_frac_after"] is not None]
    rescuing = [row for row in training if (row.values["rescued_frac"] or 0.0) > 0.0]  # k*/L is 0 without rescues
    ratios = [row.values["level_ratio_mean"] for row in rescuing if row.values["level_ratio_mean"] is not None]
    quarter = max(1, len(ratios) // 4)
    shifts = [row.values["offpolicy_shift_mean"] for row in training if row.values["offpolicy_shift_mean"] is not None]
    shift_quarter = max(1, len(shifts) // 4)
    return ModeSummary(
        mode=mode,
        steps=max((row.step for row in training), default=0),
        val_acc_start=val[0][1] if val else None,
        val_acc_end=val[-1][1] if val else None,
        val_acc_max=max(v for _, v in val) if val else None,
        signal_before=_mean([row.values["effective_signal_frac_before"] for row in training]),
        signal_after=_mean([row.values["effective_signal_frac_after"] for row in training]),
        rescued_first_step=training[0].values["rescued_frac"] if training else None,
        level_ratio_first=_mean(ratios[:quarter]) if ratios else None,
        level_ratio_last=_mean(ratios[-quarter:]) if ratios else None,
        shift_first=_mean(shifts[:shift_quarter]) if shifts else None,
        shift_last=_mean(shifts[-shift_quarter:]) if shifts else None,
    )


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def summary_markdown(summaries: Sequence[tuple[int, ModeSummary]]) -> str:
    """One row per (seed, mode)."""
    lines = [
        "| seed | mode | steps | val acc (unguided) start | end | max | signal before | signal after | "
        "rescued (step 1) | k*/L first quarter | last quarter | Δ first quarter | last quarter |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seed, s in summaries:
        cells = (
            s.val_acc_start, s.val_acc_end, s.val_acc_max, s.signal_before, s.signal_after, s.rescued_first_step,
            s.level_ratio_first, s.level_ratio_last, s.shift_first, s.shift_last,
        )  # fmt: skip
        lines.append(f"| {seed} | {s.mode} | {s.steps} | " + " | ".join(_cell(v) for v in cells) + " |")
    return "\n".join(lines) + "\n"
