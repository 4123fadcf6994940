"""One evaluated trajectory as ``actguide-eval`` records it (a line of ``trajectories.jsonl``), and how it ended.

The agent loop reports why it stopped (``stop_reason``): ``stop`` (the model ended a turn without a tool call),
``turn_limit`` (``multi_turn.max_assistant_turns`` / ``max_user_turns`` reached) or ``length_limit`` (the
response budget ``rollout.response_length`` ran out); ``unknown`` for agent loops that do not report it. Combined
with the final answer, each trajectory gets one *outcome*, as the search-agent literature reports them:

- ``answered``: the assistant's text holds a final ``<answer>...</answer>`` (whatever stopped the loop);
- ``turn_limit`` / ``length_limit``: no final answer, and the loop hit that limit;
- ``no_answer``: the model stopped by itself without a final answer.

An *invalid answer* is an answer block that is empty or was opened and never closed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actguide_plugin.reward.answer import assistant_text, extract_answer

STOP_REASONS = ("stop", "turn_limit", "length_limit", "unknown")
OUTCOMES = ("answered", "turn_limit", "length_limit", "no_answer")


@dataclass(frozen=True)
class TrajectoryRecord:
    """Everything ``actguide-eval`` keeps about one sampled trajectory (JSON-able)."""

    data_source: str
    task_id: str
    sample: int  # index of the sample among the prompt's K (the "round" of round-based metrics)
    level: int  # guidance level the trajectory was sampled at (0 = unguided)
    num_actions: int  # L, the task's number of reference actions
    score: float
    correct: bool
    stop_reason: str
    answer: str | None  # the final answer (None: no answer block)
    invalid_answer: bool
    tool_calls: list[dict[str, Any]]  # [{"name", "arguments"}] in call order
    turns: int  # assistant turns
    response_tokens: int  # tokens the model generated (tool outputs excluded)
    response_length: int  # all response tokens, tool outputs included
    prompt: str
    response: str
    reward_extra: dict[str, Any] = field(default_factory=dict)  # the reward's extras (acc, judge verdict, ...)
    uid: str = ""

    def __post_init__(self) -> None:
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(f"stop_reason={self.stop_reason!r} is not one of {STOP_REASONS}")

    @property
    def outcome(self) -> str:
        if self.answer is not None:
            return "answered"
        if self.stop_reason in ("turn_limit", "length_limit"):
            return self.stop_reason
        return "no_answer"

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["outcome"] = self.outcome
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], source: str = "<record>") -> TrajectoryRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING} - {"reward_extra"}
        missing = sorted(required - set(record))
        if missing:
            raise ValueError(f"{source}: trajectory record lacks {missing}")
        try:
            return cls(**{k: v for k, v in record.items() if k in names})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: bad trajectory record: {err}") from err


def build_record(
    *,
    data_source: str,
    task_id: str,
    sample: int,
    level: int,
    num_actions: int,
    score: float,
    success_threshold: float,
    stop_reason: str | None,
    tool_calls: Sequence[Mapping[str, Any]],
    turns: int,
    response_mask: Sequence[int],
    prompt: str,
    response: str,
    reward_extra: Mapping[str, Any] | None = None,
    uid: str = "",
) -> TrajectoryRecord:
    """A record from what the rollout worker holds; the answer is read from the assistant's own text."""
    answer = extract_answer(response)
    unclosed = answer is None and "<answer>" in assistant_text(response)
    return TrajectoryRecord(
        data_source=data_source,
        task_id=task_id,
        sample=sample,
        level=level,
        num_actions=num_actions,
        score=float(score),
        correct=float(score) > success_threshold,
        stop_reason=stop_reason or "unknown",
        answer=answer,
        invalid_answer=unclosed or answer == "",
        tool_calls=[{"name": c.get("name"), "arguments": c.get("arguments")} for c in tool_calls],
        turns=turns,
        response_tokens=int(sum(response_mask)),
        response_length=len(response_mask),
        prompt=prompt,
        response=response,
        reward_extra=dict(reward_extra or {}),
        uid=uid,
    )


def read_trajectories(path: str | Path) -> Iterator[TrajectoryRecord]:
    """Stream ``trajectories.jsonl``; a bad line is an error naming the file and line."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not JSON: {err}") from err
            yield TrajectoryRecord.from_dict(data, source=f"{path}:{number}")
