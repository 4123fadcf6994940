"""The console scripts: installed, argument errors with a clear message and exit code 2, analyze training."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest
from matplotlib.image import imread

from actguide_plugin.cli import analyze, evaluate, export


def test_console_scripts_are_installed():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["actguide-eval"] == "actguide_plugin.cli.evaluate:main"
    assert scripts["actguide-analyze"] == "actguide_plugin.cli.analyze:main"
    assert scripts["actguide-export"] == "actguide_plugin.cli.export:main"


def test_errors_name_the_problem(tmp_path, capsys):
    assert evaluate.main(["--model", str(tmp_path / "nope"), "--data", "x.parquet"]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    assert export.main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "not a verl FSDP checkpoint folder" in capsys.readouterr().err
    assert analyze.main(["training", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such metrics file" in capsys.readouterr().err
    assert analyze.main(["levels", "--model", str(tmp_path), "--data", "x.parquet"]) == 2
    assert "not a Hugging Face model directory" in capsys.readouterr().err


def test_analyze_training_overlays_runs_and_writes_plot_and_summaries(tmp_path, capsys):
    runs = {}
    for name, hard in (("grpo", [1.0, 1.0]), ("actguide", [1.0, 0.5])):
        path = tmp_path / name / "metrics.jsonl"
        path.parent.mkdir()
        records = [{"step": s + 1, "data": {"actguide/hard_group_frac": h}} for s, h in enumerate(hard)]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        runs[name] = path
    out = tmp_path / "analysis"
    assert analyze.main(["training", str(runs["grpo"]), str(runs["actguide"]), "--out", str(out)]) == 0
    summary = json.loads((out / "training.json").read_text())
    assert summary["actguide"]["series"]["Reachability barrier: hard groups"]["last"] == 0.5
    assert summary["grpo"]["series"]["Reachability barrier: hard groups"]["last"] == 1.0
    assert imread(out / "training.png").shape[1] > 1000
    assert "| actguide | Reachability barrier: hard groups | 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        analyze.main(["training"])
    assert analyze.main(["training", str(runs["grpo"]), "--label", "a", "--label", "b"]) == 2


def test_eval_device_picks_the_recipe_config_and_the_old_cpu_flag_still_works(capsys):
    base = ["--model", "m", "--data", "d.parquet"]
    assert evaluate._parser().parse_args(base).device == "cuda"
    assert evaluate._parser().parse_args([*base, "--device", "cpu"]).device == "cpu"
    assert evaluate._parser().parse_args([*base, "--cpu"]).device == "cpu"  # the former spelling
    assert evaluate.DEVICE_CONFIGS == {"cuda": "actguide_trainer", "cpu": "actguide_cpu"}
    assert "--cpu" not in evaluate._parser().format_help()  # documented once, as --device
    with pytest.raises(SystemExit) as info:
        evaluate._parser().parse_args([*base, "--device", "tpu"])
    assert info.value.code == 2 and "invalid choice: 'tpu'" in capsys.readouterr().err
