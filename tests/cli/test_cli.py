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
    assert export.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "not a verl FSDP checkpoint folder" in capsys.readouterr().err
    assert export.main([str(tmp_path), str(tmp_path / "out")]) == 2  # OUT_DIR as a positional, the former spelling
    assert "not a verl FSDP checkpoint folder" in capsys.readouterr().err
    for twice_or_never in ([str(tmp_path)], [str(tmp_path), "o", "--out", "o"]):
        with pytest.raises(SystemExit) as info:
            export.main(twice_or_never)
        assert info.value.code == 2 and "give the model directory to write once, as --out" in capsys.readouterr().err
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


def _levels_args(*argv: str):
    return analyze._parser().parse_args(["levels", "--model", "m", "--data", "d.parquet", *argv])


def test_analyze_tau_and_success_threshold_are_the_configs_never_a_silent_override():
    from actguide_plugin.verl_glue.config import actguide_config
    from recipe.actguide.main_actguide import compose_config

    def section(*argv: str):
        args = _levels_args(*argv)
        return actguide_config(compose_config("actguide_trainer", [*args.overrides, *analyze.section_overrides(args)]))

    recipe = section()
    assert (recipe.tau, recipe.success_threshold) == (1, 0.0)  # no flag: the recipe's values
    assert section("actguide.tau=2").tau == 2  # an override is no longer replaced by the flag's default
    assert section("--tau", "2").tau == 2 and section("--success-threshold", "0.5").success_threshold == 0.5
    assert section("--tau", "2", "actguide.tau=2").tau == 2  # both, agreeing
    with pytest.raises(ValueError, match=r"--tau 2 contradicts the override actguide.tau=3: give one of them"):
        analyze.section_overrides(_levels_args("--tau", "2", "actguide.tau=3"))
    with pytest.raises(ValueError, match=r"--success-threshold 0.5 contradicts the override actguide.success_thresh"):
        analyze.section_overrides(_levels_args("--success-threshold", "0.5", "+actguide.success_threshold=0.2"))
    with pytest.raises(ValueError, match=r"actguide.tau must be in \[1, probe_m=2\], got 3"):
        section("--tau", "3")  # checked by the config, as for training


def test_analyze_reports_a_contradicting_flag_in_one_line_with_status_2(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    argv = ["levels", "--model", str(tmp_path), "--data", "x.parquet", "--tau", "2", "actguide.tau=3"]
    assert analyze.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "actguide-analyze levels: --tau 2 contradicts the override actguide.tau=3: give one of them"
    )


def test_a_config_error_of_analyze_is_one_line_as_for_actguide_train(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert analyze.main(["levels", "--model", str(tmp_path), "--data", "x.parquet", "actguide.modee=1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "actguide-analyze levels: Could not override 'actguide.modee'. To append to your config use "
        "+actguide.modee=1 (Key 'modee' is not in struct)"
    )
