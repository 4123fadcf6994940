"""Barrier-experiment curves from verl file-logger records: csv, summary table and the figure's series."""

import csv
import io
import json

import pytest

from actguide_plugin.analysis.learning import (
    COLUMNS,
    curve_rows,
    curves_csv,
    read_curves_csv,
    summarize,
    summary_markdown,
)
from actguide_plugin.analysis.plots import plot_learning
from actguide_plugin.analysis.training import read_steps


def _records(mode_learns: bool) -> list[dict]:
    records = [{"step": 0, "data": {"val-core/barrier_chain/acc/mean@4": 0.0}}]
    for step in range(1, 9):
        data = {
            "actguide/effective_signal_frac_before": 0.1 * step if mode_learns else 0.0,
            "actguide/effective_signal_frac_after": 0.8 if mode_learns else 0.0,
            "actguide/rescued_frac": 1.0 if mode_learns else 0.0,
            "actguide/hard_group_frac": 1.0 - 0.1 * step,
        }
        if mode_learns:
            data["actguide/level_ratio_mean"] = 1.0 - 0.1 * step
            if step == 8:  # runs before metrics left the key out logged k*/L = 0 without a rescue: not a level
                data["actguide/level_ratio_mean"], data["actguide/rescued_frac"] = 0.0, 0.0
            data["actguide/offpolicy_shift_mean"] = 60.0 - 5.0 * step
        records.append({"step": step, "data": data})
        if step % 4 == 0:  # verl logs validation at its step as a separate record
            val = {"val-core/barrier_chain/acc/mean@4": 0.1 * step if mode_learns else 0.0, "val-aux/x": 1.0}
            records.append({"step": step, "data": val})
    return records


def _steps(tmp_path, name, mode_learns):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records(mode_learns)))
    return read_steps(path)


def test_rows_merge_validation_into_its_step_and_csv_has_the_issue_columns(tmp_path):
    rows = curve_rows("fallback_adaptive", _steps(tmp_path, "a", True))
    assert [r.step for r in rows] == list(range(9))
    assert rows[4].values["val_acc_unguided"] == 0.4 and rows[3].values["val_acc_unguided"] is None
    assert rows[4].values["effective_signal_frac_before"] == 0.4
    table = list(csv.reader(io.StringIO(curves_csv(rows))))
    assert tuple(table[0]) == COLUMNS
    assert table[0][:7] == [
        "mode", "step", "val_acc_unguided", "effective_signal_frac_before", "effective_signal_frac_after",
        "hard_group_frac", "rescued_frac",
    ]  # fmt: skip
    assert table[1][2] == "0.0000" and table[2][2] == ""


def test_summary_reports_start_end_signal_and_falling_level_ratio(tmp_path):
    learned = summarize("fallback_adaptive", curve_rows("fallback_adaptive", _steps(tmp_path, "a", True)))
    flat = summarize("off", curve_rows("off", _steps(tmp_path, "b", False)))
    assert (learned.val_acc_start, learned.val_acc_end, learned.steps) == (0.0, 0.8, 8)
    assert learned.rescued_first_step == 1.0 and learned.signal_after == pytest.approx(0.8)
    assert learned.level_ratio_first > learned.level_ratio_last
    assert (learned.level_ratio_first, learned.level_ratio_last) == pytest.approx((0.9, 0.3))  # steps 1 and 7
    assert (learned.shift_first, learned.shift_last) == (52.5, 22.5)  # steps 1-2 and 7-8
    assert flat.val_acc_max == 0.0 and flat.level_ratio_first is None and flat.shift_first is None
    markdown = summary_markdown([(0, learned), (0, flat)])
    assert "| 0 | fallback_adaptive | 8 | 0.00 | 0.80 |" in markdown and "| 0 | off | 8 |" in markdown
    assert "| 52.5 | 22.5 |" in markdown
    assert markdown.count("—") == 4  # off never logs k*/L nor a shift


def test_plot_draws_each_seed_and_mode(tmp_path):
    runs = {
        (seed, mode): curve_rows(mode, _steps(tmp_path, f"{seed}{mode}", mode != "off"))
        for seed in (0, 1)
        for mode in ("off", "fallback_adaptive")
    }
    drawn = plot_learning(runs, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert len(drawn["accuracy"]) == 4 and len(drawn["signal"]) == 4  # one line per seed and mode in each panel


def test_a_reports_curves_csv_reads_back_into_the_runs_it_was_written_from(tmp_path):
    """What ``barrier_learning.py --plot-only`` redraws from: the csv with a seed column, as ``report`` writes it."""
    runs = {(seed, mode): curve_rows(mode, _steps(tmp_path, f"{seed}{mode}", mode != "off"))
            for seed in (1, 0) for mode in ("off", "cispo")}  # fmt: skip
    parts = {key: curves_csv(rows).splitlines() for key, rows in runs.items()}
    header = "seed," + next(iter(parts.values()))[0]
    text = "\n".join([header, *(f"{seed},{line}" for (seed, _), lines in parts.items() for line in lines[1:])])
    read = read_curves_csv(text + "\n")
    assert list(read) == list(runs)  # file order
    for key, rows in runs.items():
        assert [r.step for r in read[key]] == [r.step for r in rows] and read[key][0].mode == key[1]
        for got, want in zip(read[key], rows, strict=True):
            assert got.values == {c: None if v is None else pytest.approx(v, abs=5e-5) for c, v in want.values.items()}
