"""Trajectory records: the final answer from the assistant's own text, outcomes, invalid answers, file errors."""

from __future__ import annotations

import json

import pytest

from actguide_plugin.analysis.trajectory import TrajectoryRecord, build_record, read_trajectories

TOOL_TURN = "<tool_call>\n{{}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{page}\n</tool_response>"


def record(response: str, stop_reason: str = "stop", score: float = 0.0, **extra) -> TrajectoryRecord:
    fields = {
        "data_source": "bench",
        "task_id": "t1",
        "sample": 0,
        "level": 0,
        "num_actions": 2,
        "score": score,
        "success_threshold": 0.0,
        "stop_reason": stop_reason,
        "tool_calls": [{"name": "web_search", "arguments": {"query": ["q"]}, "id": "x"}],
        "turns": 2,
        "response_mask": [1, 1, 0, 0, 0, 1],
        "prompt": "P",
        "response": response,
    }
    return build_record(**(fields | extra))


@pytest.mark.parametrize(
    ("response", "stop_reason", "outcome", "invalid"),
    [
        ("<answer>Ada</answer><|im_end|>", "stop", "answered", False),
        ("<answer>Ada</answer><|im_end|>", "turn_limit", "answered", False),
        ("thinking...<|im_end|>", "stop", "no_answer", False),
        ("thinking...", "unknown", "no_answer", False),
        (TOOL_TURN.format(page="<answer>from a page</answer>"), "turn_limit", "turn_limit", False),
        ("<answer>Ada Love", "length_limit", "length_limit", True),
        ("<answer> </answer><|im_end|>", "stop", "answered", True),
    ],
)
def test_outcome_and_invalid_answer(response, stop_reason, outcome, invalid):
    built = record(response, stop_reason)
    assert built.outcome == outcome
    assert built.invalid_answer is invalid


def test_answer_is_never_read_from_tool_output_and_counts_come_from_the_mask():
    built = record(TOOL_TURN.format(page="<answer>wrong</answer>") + "<|im_start|>assistant\n<answer>Ada</answer>")
    assert built.answer == "Ada"
    assert (built.response_tokens, built.response_length) == (3, 6)
    assert built.tool_calls == [{"name": "web_search", "arguments": {"query": ["q"]}}]
    assert built.correct is False and record("<answer>Ada</answer>", score=1.0).correct is True


def test_round_trip_and_errors_name_the_line(tmp_path):
    built = record("<answer>Ada</answer>", reward_extra={"acc": 1.0, "judge_used": 0.0})
    assert TrajectoryRecord.from_dict(json.loads(json.dumps(built.to_dict()))) == built
    path = tmp_path / "trajectories.jsonl"
    path.write_text(json.dumps(built.to_dict()) + "\n\n" + "{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"trajectories.jsonl:3: not JSON"):
        list(read_trajectories(path))
    partial = {k: v for k, v in built.to_dict().items() if k != "score"}
    path.write_text(json.dumps(partial) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"trajectories.jsonl:1: trajectory record lacks \['score'\]"):
        list(read_trajectories(path))
    with pytest.raises(ValueError, match="stop_reason"):
        record("x", stop_reason="crashed")
