"""Per-benchmark summaries: exact pass@k from known correctness, rounds, outcomes, the table and the files."""

from __future__ import annotations

import json

import pytest

from actguide_plugin.analysis.eval_summary import (
    flat_metrics,
    markdown_table,
    shown_ks,
    summarize,
    summarize_source,
    write_evaluation,
)
from actguide_plugin.analysis.trajectory import TrajectoryRecord


def rec(task: str, sample: int, correct: bool, source: str = "bench", **fields) -> TrajectoryRecord:
    base = {
        "data_source": source,
        "task_id": task,
        "sample": sample,
        "level": 0,
        "num_actions": 2,
        "score": float(correct),
        "correct": correct,
        "stop_reason": "stop",
        "answer": "A",
        "invalid_answer": False,
        "tool_calls": [{"name": "web_search", "arguments": {}}] * sample,
        "turns": sample + 1,
        "response_tokens": 10 * (sample + 1),
        "response_length": 20 * (sample + 1),
        "prompt": "P",
        "response": "R",
    }
    return TrajectoryRecord(**(base | fields))


def group(task: str, verdicts: list[bool], **fields) -> list[TrajectoryRecord]:
    return [rec(task, i, v, **fields) for i, v in enumerate(verdicts)]


def test_pass_at_k_rounds_and_means_from_known_correctness():
    records = group("c2", [True, False, True]) + group("c1", [False, True, False]) + group("c0", [False] * 3)
    s = summarize_source(records, samples_per_prompt=3)
    assert s["prompts"] == 3 and s["trajectories"] == 9 and s["incomplete_prompts"] == 0
    assert s["accuracy"] == pytest.approx(3 / 9)
    assert s["pass_at_k"] == pytest.approx({"1": 3 / 9, "2": (1 + 2 / 3 + 0) / 3, "3": 2 / 3})
    # rounds: accuracies 1/3, 1/3, 1/3
    assert s["rounds"] == pytest.approx({"avg_pass@3": 1 / 3, "best_pass@1": 1 / 3, "pass@3": 2 / 3})
    assert s["tool_calls_mean"] == pytest.approx(1.0) and s["turns_mean"] == pytest.approx(2.0)
    assert s["response_tokens_mean"] == pytest.approx(20.0) and s["response_length_mean"] == pytest.approx(40.0)


def test_outcomes_invalid_answers_and_incomplete_prompts():
    records = [
        rec("a", 0, True),
        rec("a", 1, False, answer=None, stop_reason="turn_limit"),
        rec("a", 2, False, answer=None, stop_reason="length_limit", invalid_answer=True),
        rec("b", 0, False, answer=None),  # b lost two samples (failed sessions)
    ]
    s = summarize_source(records, samples_per_prompt=3)
    assert s["outcomes"] == {"answered": 1, "turn_limit": 1, "length_limit": 1, "no_answer": 1}
    assert s["invalid_answers"] == 1 and s["incomplete_prompts"] == 1
    assert s["pass_at_k"]["3"] == 1.0  # only 'a' has 3 samples
    assert s["pass_at_k"]["1"] == pytest.approx((1 / 3 + 0) / 2)


def test_duplicate_samples_are_an_error():
    with pytest.raises(ValueError, match="sample 0 twice"):
        summarize_source([rec("a", 0, True), rec("a", 0, False)], 2)


def test_sources_are_summarized_apart_and_together():
    records = group("t", [True, True], source="nq") + group("t", [False, False], source="hotpot")
    summaries = summarize(records, 2)
    assert list(summaries) == ["hotpot", "nq", "all"]
    assert summaries["all"]["prompts"] == 2  # same task id in two sources stays two prompts
    assert summaries["all"]["pass_at_k"]["1"] == pytest.approx(0.5)
    assert list(summarize(group("t", [True]), 1)) == ["bench"]


def test_table_metrics_and_files(tmp_path):
    records = group("a", [True, False, False, True]) + group("b", [False] * 4)
    summaries = summarize(records, 4)
    assert shown_ks(4) == [1, 2, 4] and shown_ks(3) == [1, 2, 3] and shown_ks(1) == [1]
    table = markdown_table(summaries)
    assert "| data source | prompts | avg@4 | pass@1 | pass@2 | pass@4 | Avg Pass@4 | Best Pass@1 |" in table
    assert "| bench | 2 | 0.250 | 0.250 |" in table
    metrics = flat_metrics(summaries, "val-actguide/")
    assert metrics["val-actguide/bench/pass@4"] == 0.5 and metrics["val-actguide/bench/outcome/answered"] == 1.0
    written = write_evaluation(tmp_path / "out", records, summaries, {"samples_per_prompt": 4})
    assert sorted(p.name for p in written) == ["eval.json", "eval.md", "trajectories.jsonl"]
    data = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert data["samples_per_prompt"] == 4
    assert data["sources"]["bench"]["pass_at_k"]["2"] == pytest.approx((1 - 1 / 6) / 2)  # a: 2 of 4 correct, b: 0
    lines = (tmp_path / "out" / "trajectories.jsonl").read_text().splitlines()
    assert [(json.loads(x)["task_id"], json.loads(x)["sample"]) for x in lines][:2] == [("a", 0), ("a", 1)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["eval.json", "eval.md", "trajectories.jsonl"]
