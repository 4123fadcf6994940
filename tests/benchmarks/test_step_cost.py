"""step_cost.py's reading of verl's file-logger metrics (no trainer run: the lines are written here in the format
verl 0.9.1's ``FileLogger`` writes, ``{"step": N, "data": {...}}``)."""

import json
import math
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("step_cost")


def step_line(step: int, gen: float, update: float, **extra: float) -> dict:
    """One training step as verl logs it: phases inside timing_s/step, plus throughput and our rollouts."""
    timing = {"gen": gen, "old_log_prob": 0.5, "ref": 0.5, "adv": 0.1, "update_actor": update, "update_weights": 0.1}
    timing.update(extra)
    inside = sum(v for k, v in timing.items() if k != "testing")
    data = {f"timing_s/{k}": v for k, v in timing.items()}
    data |= {
        "timing_s/step": inside + 0.2,  # 0.2 s that no phase accounts for
        "timing_per_token_ms/gen": 1.0,
        "perf/total_num_tokens": 1000.0 * step,
        "perf/time_per_step": inside + 0.2,
        "actguide/trajectories_sampled": 64.0 + step,
        "prompt_length/mean": 100.0,
        "response_length/mean": 200.0,
        "actor/pg_loss": 0.0,
    }
    return {"step": step, "data": data}


def write_metrics(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_means_skip_the_first_step_and_merge_lines_of_one_step(bench, tmp_path):
    metrics = write_metrics(
        tmp_path / "metrics.jsonl",
        [
            {"step": 0, "data": {"val-core/acc": 0.0}},  # validation before training: no step timing
            step_line(1, gen=30.0, update=9.0),  # warm-up, not measured
            step_line(2, gen=10.0, update=1.0, save_checkpoint=2.0),
            step_line(3, gen=12.0, update=3.0),
            {"step": 3, "data": {"timing_s/testing": 4.0, "val-core/acc": 0.5}},  # logged on a line of its own
        ],
    )
    cost = bench.summarize(bench.read_metrics(metrics))
    assert cost.measured_steps == [2, 3]
    assert cost.phases["gen"] == pytest.approx(11.0)
    assert (cost.phases["update_actor"], cost.phase_min["update_actor"]) == (pytest.approx(2.0), 1.0)
    assert (cost.phases["save_checkpoint"], cost.phase_steps["save_checkpoint"]) == (pytest.approx(2.0), 1)
    assert (cost.phases["testing"], cost.phase_steps["testing"]) == (pytest.approx(4.0), 1)
    assert cost.step_s == pytest.approx((14.2 + 0.2 + 16.2 + 0.2) / 2)
    assert cost.unaccounted_s == pytest.approx(0.2)  # validation runs after the step timer: not subtracted
    assert (cost.tokens, cost.rollouts) == (pytest.approx(2500.0), pytest.approx(66.5))
    assert (cost.prompt_len, cost.response_len) == (100.0, 200.0)


def test_a_single_step_is_measured_and_missing_keys_are_nan(bench, tmp_path):
    line = step_line(1, gen=5.0, update=1.0)
    del line["data"]["actguide/trajectories_sampled"]
    cost = bench.summarize(bench.read_metrics(write_metrics(tmp_path / "m.jsonl", [line])))
    assert cost.measured_steps == [1]
    assert math.isnan(cost.rollouts)
    with pytest.raises(ValueError, match="no training step"):
        bench.summarize(bench.read_metrics(write_metrics(tmp_path / "empty.jsonl", [{"step": 0, "data": {}}])))


def test_tables_from_saved_summaries(bench, tmp_path, capsys):
    records = [step_line(1, gen=30.0, update=9.0), step_line(2, gen=10.0, update=1.0)]
    cost = bench.summarize(bench.read_metrics(write_metrics(tmp_path / "metrics.jsonl", records)))
    cost.wall_s = 90.0
    table = bench.phase_table(cost)
    assert "| timing_s/update_actor | 1.00 | 1.00 | 1 |" in table
    assert "| wall time of the command, start-up included | 90 | | |" in table
    saved = tmp_path / "baseline.json"
    saved.write_text(json.dumps(bench.asdict(cost)), encoding="utf-8")
    assert bench.main(["--compare", str(saved)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("| run | gen | old_log_prob |")
    assert rows[2].startswith("| baseline | 10.00 | 0.50 | 0.50 | 0.10 | 1.00 | 0.10 | – | – | 0.20 | **12.40** |")
