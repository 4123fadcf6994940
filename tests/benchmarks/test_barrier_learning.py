"""benchmarks/barrier_learning.py: arms map to one setting each; the report is rebuilt from the runs' logs."""

import csv
import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("barrier_learning")


def test_each_arm_differs_in_its_actguide_settings_only(bench):
    assert bench.arm_overrides("off") == ["actguide.mode=off"]
    assert bench.arm_overrides("cispo") == ["actguide.mode=fallback_adaptive", "actguide.guided_clip=cispo"]
    assert bench.arm_overrides("no_mixed_policy") == [
        "actguide.mode=fallback_adaptive",
        "actguide.ratio_context=guided",
    ]
    with pytest.raises(ValueError, match="unknown arm 'fast'"):
        bench.arm_overrides("fast")


def _write_run(path: Path, val: float) -> None:
    path.mkdir(parents=True)
    records = [
        {"step": 0, "data": {"val-core/barrier_chain/acc/mean@4": 0.0}},
        {
            "step": 1,
            "data": {"actguide/effective_signal_frac_before": 0.0, "actguide/effective_signal_frac_after": 0.5},
        },
        {
            "step": 2,
            "data": {"actguide/effective_signal_frac_before": 0.0, "actguide/effective_signal_frac_after": 0.5},
        },
        {"step": 2, "data": {"val-core/barrier_chain/acc/mean@4": val}},
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_report_only_rebuilds_csv_table_and_plot_for_every_seed_and_arm(bench, tmp_path, capsys):
    for seed in (0, 1):
        _write_run(tmp_path / f"seed{seed}" / "off", 0.0)
        _write_run(tmp_path / f"seed{seed}" / "fallback_adaptive", 0.5 + seed / 10)
    assert bench.main(["--seeds", "0,1", "--report-only", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "curves.csv").open()))
    assert {(r["seed"], r["mode"]) for r in rows} == {(s, m) for s in "01" for m in ("off", "fallback_adaptive")}
    last = [r for r in rows if r["seed"] == "1" and r["mode"] == "fallback_adaptive" and r["step"] == "2"]
    assert last[0]["val_acc_unguided"] == "0.6000"
    summary = (tmp_path / "summary.md").read_text()
    assert "| 1 | fallback_adaptive | 2 | 0.00 | 0.60 |" in summary and summary.count("| off |") == 2
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_plot_only_redraws_the_figure_from_curves_csv_without_the_runs(bench, tmp_path, capsys):
    """Committed results keep curves.csv and summary.md, not the runs' logs: the figure is redrawn from the csv."""
    for seed in (0, 1):
        _write_run(tmp_path / f"seed{seed}" / "off", 0.0)
        _write_run(tmp_path / f"seed{seed}" / "cispo", 0.5)
    assert bench.main(["--seeds", "0,1", "--modes", "off,cispo", "--report-only", "--out", str(tmp_path)]) == 0
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "curves.csv").write_bytes((tmp_path / "curves.csv").read_bytes())
    assert bench.main(["--out", str(kept), "--plot-only", str(tmp_path / "redrawn.png")]) == 0
    assert (tmp_path / "redrawn.png").stat().st_size > 0 and sorted(p.name for p in kept.iterdir()) == ["curves.csv"]
    assert (kept / "curves.csv").read_bytes() == (tmp_path / "curves.csv").read_bytes()


def test_report_of_a_missing_run_names_its_metrics_file(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"seed3/off/metrics.jsonl"):
        bench.report(tmp_path, [3], ["off"])


def test_report_only_of_a_folder_without_runs_is_an_error_naming_it(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no run of seeds \[0\] and arms \['off'\]"):
        bench.main(["--seeds", "0", "--modes", "off", "--report-only", "--out", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_report_only_leaves_out_an_arm_a_seed_did_not_run_and_says_so(bench, tmp_path, capsys):
    for seed in (0, 1):
        _write_run(tmp_path / f"seed{seed}" / "off", 0.0)
    _write_run(tmp_path / "seed0" / "fallback_adaptive", 0.5)
    argv = ["--seeds", "0,1", "--modes", "off,fallback_adaptive", "--report-only", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    assert "seed 1 fallback_adaptive: not run, left out" in capsys.readouterr().out
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("| off |") == 2 and summary.count("| fallback_adaptive |") == 1


def test_a_world_is_reused_only_when_it_is_the_one_asked_for(bench, tmp_path):
    from data_preprocess.barrier import build_barrier

    args = bench.argparse.Namespace(min_hops=2, max_hops=3, train=6, val=2)
    assert not bench._world_matches(tmp_path, 0, args)  # nothing built yet
    build_barrier(tmp_path, seed=0, train=6, val=2, min_hops=2, max_hops=3)
    assert bench._world_matches(tmp_path, 0, args)
    assert not bench._world_matches(tmp_path, 1, args)
    assert not bench._world_matches(tmp_path, 0, bench.argparse.Namespace(min_hops=3, max_hops=4, train=6, val=2))
    assert not bench._world_matches(tmp_path, 0, bench.argparse.Namespace(min_hops=2, max_hops=3, train=8, val=2))
