import json

import pytest

from actguide_plugin.analysis.run_summary import format_table, main, read_steps


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_table_has_one_row_per_training_step(tmp_path, capsys):
    metrics = tmp_path / "metrics.jsonl"
    write(
        metrics,
        [
            {"step": 0, "data": {"val/acc": 0.1}},  # validation-only record: no row
            {"step": 1, "data": {"actguide/hard_group_frac": 0.5, "actguide/rescued_frac": 1.0, "actor/lr": 1e-6}},
            {"step": 2, "data": {"actguide/hard_group_frac": 0.25, "actguide/level_mean": 2.0}},
        ],
    )
    assert main([str(metrics)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| step | hard groups | rescued |")
    assert lines[2].startswith("| 1 | 0.50 | 1.00 |") and lines[3].startswith("| 2 | 0.25 | – |")
    assert len(lines) == 4


def test_bad_record_names_file_and_line(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "data": {}}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2"):
        read_steps(metrics)


def test_missing_file_is_reported(tmp_path, capsys):
    assert main([str(tmp_path / "none.jsonl")]) == 1
    assert "no metrics file" in capsys.readouterr().err
    assert format_table([]).count("\n") == 1  # header only


def test_validation_accuracy_joins_its_step_and_a_validation_only_step_gets_a_row(tmp_path):
    records = [
        {"step": 0, "data": {"val-core/barrier_chain/acc/mean@4": 0.0}},
        {"step": 1, "data": {"actguide/hard_group_frac": 1.0}},
        {"step": 2, "data": {"actguide/hard_group_frac": 0.5}},
        {"step": 2, "data": {"val-core/barrier_chain/acc/mean@4": 0.25, "val-core/other/acc/mean@4": 0.75}},
    ]
    metrics = tmp_path / "metrics.jsonl"
    write(metrics, records)
    lines = format_table(read_steps(metrics)).splitlines()
    assert lines[0].endswith("| val acc (unguided) |")
    assert lines[2].startswith("| 0 | – |") and lines[2].endswith("| 0.00 |")
    assert lines[3].startswith("| 1 | 1.00 |") and lines[3].endswith("| – |")
    assert lines[4].startswith("| 2 | 0.50 |") and lines[4].endswith("| 0.50 |")  # mean over data sources
