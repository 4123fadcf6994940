"""Summarize the ``actguide/*`` metrics of a run from verl's file logger (``trainer.logger=[...,file]``).

verl's ``FileLogger`` writes one JSON object per step, ``{"step": N, "data": {metric: value}}``, to
``$VERL_FILE_LOGGER_PATH``. ``python -m actguide_plugin.analysis.run_summary metrics.jsonl`` prints the guidance
metrics per step as a small table, with the (always unguided) validation accuracy at the steps that validated;
the CPU demo ends with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from actguide_plugin.analysis.learning import val_accuracy
from actguide_plugin.analysis.training import read_steps

SHOWN = (
    ("hard_group_frac", "hard groups"),
    ("rescued_frac", "rescued"),
    ("full_failed_groups", "full plan failed"),
    ("probes_per_hard", "probes/hard"),
    ("trajectories_sampled", "rollouts"),
    ("level_mean", "k*"),
    ("level_ratio_mean", "k*/L"),
    ("probe_trajectories_per_rescued", "probe rollouts/rescued"),
    ("effective_signal_frac_before", "signal before"),
    ("effective_signal_frac_after", "signal after"),
    ("acc_unguided", "acc unguided"),
    ("acc_guided", "acc guided"),
    ("warm_start_frac", "warm starts"),
)


def format_table(steps: list[tuple[int, dict[str, float]]]) -> str:
    """One row per step with guidance metrics or a validation (verl logs validation as its own record)."""
    header = "| step | " + " | ".join(label for _, label in SHOWN) + " | val acc (unguided) |"
    lines = [header, "|---" * (len(SHOWN) + 2) + "|"]
    merged: dict[int, dict[str, float]] = {}
    for step, data in steps:
        merged.setdefault(step, {}).update(data)
    for step, data in sorted(merged.items()):
        validation = val_accuracy(data)
        if validation is None and not any(key.startswith("actguide/") for key in data):
            continue
        cells = [_cell(data.get(f"actguide/{key}")) for key, _ in SHOWN] + [_cell(validation)]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, help="verl file-logger output (jsonl)")
    args = parser.parse_args(argv)
    if not args.metrics.is_file():
        print(f"no metrics file at {args.metrics}", file=sys.stderr)
        return 1
    print(format_table(read_steps(args.metrics)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
