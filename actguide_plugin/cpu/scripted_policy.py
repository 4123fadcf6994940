"""A deterministic stand-in policy whose success depends on the guidance level in the prompt.

End-to-end tests of the guidance fallback need a rollout whose reward responds to guidance the way the paper
assumes (success is monotone in the level k), without a real model learning anything. The scripted rollout
server (``rollout.name=scripted``) decodes each prompt and asks this module what to "say":

- turn 1 (no tool result yet): a hermes tool call, ``web_search`` with the question as query (``calls=C``:
  C such calls, one per turn, before answering; ``calls=0`` answers at once);
- then: ``<answer>X</answer>``, correct only if the guidance level in the prompt is at least the task's threshold.

The task tells the script its threshold and answer through a marker in the question text,
``[[scripted level>=K answer=X]]`` (see :func:`task_marker`). The level is read by a pluggable function;
the default, :func:`level_from_prompt`, reads the plan block of the last (non-tool) user turn with
:func:`actguide_plugin.core.guidance.level_in_text`, the inverse of how G_k is rendered.

A ``follow`` task models the reachability barrier along a trajectory (Finding 1): the policy executes the plan
of its prompt action by action (the exact reference tool calls), then answers; the answer is correct only if
at least K reference actions were executed in the trajectory. At level k that is success iff k ≥ K, as above;
continued *unguided* from a state where a guided trajectory already executed j actions, it answers at once and
succeeds iff j ≥ K: the first K actions are the barrier.

Scripted *tasks* (the demo's, the example's and the tests') are written by one function, :func:`write_scripted_inputs`:
``records.jsonl`` lines made by :func:`scripted_record` (the input of ``actguide-preprocess convert --format
actions``) and optionally a ``corpus.jsonl``; :data:`SCRIPTED_PLAN` is the reference plan they share by default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actguide_plugin.core.actions import Action
from actguide_plugin.core.guidance import level_in_text, plan_in_text
from actguide_plugin.outputs import StagedOutputs

LevelFn = Callable[[str], int]

_MARKER = re.compile(
    r"\[\[scripted level>=(?P<level>\d+)(?: every=(?P<every>\d+))?(?: calls=(?P<calls>\d+))?(?P<follow> follow)?"
    r" answer=(?P<answer>[^\]]*)\]\]"
)
_USER_TURN = "<|im_start|>user\n"
_TOOL_RESPONSE = "<tool_response>"
WRONG_ANSWER = "I do not know"
RECORDS_FILE, CORPUS_FILE = "records.jsonl", "corpus.jsonl"
SCRIPTED_PLAN = (  # L = 3: search, visit the answer's page, search again
    Action("web_search", {"query": ["first computer program"]}),
    Action("web_visit", {"url": ["https://en.wikipedia.org/wiki/Ada_Lovelace"]}),
    Action("web_search", {"query": ["Analytical Engine"]}),
)


def task_marker(min_level: int, answer: str, every: int = 1, calls: int = 1, follow: bool = False) -> str:
    """The text to put in a question so the scripted policy knows its threshold and correct answer.

    ``every=E`` makes only every E-th answer to the same prompt correct (at a sufficient level), so a group
    gets mixed rewards and GRPO a non-zero advantage, deterministically whatever order requests arrive in.
    ``calls`` is the number of searches before answering; ``follow`` makes a plan-following task (module doc).
    """
    if min_level < 0 or every < 1 or calls < 0 or "]" in answer:
        raise ValueError(f"bad scripted task: min_level={min_level}, every={every}, calls={calls}, answer={answer!r}")
    every_part = f" every={every}" if every != 1 else ""
    calls_part = f" calls={calls}" if calls != 1 else ""
    follow_part = " follow" if follow else ""
    return f"[[scripted level>={min_level}{every_part}{calls_part}{follow_part} answer={answer}]]"


def _last_user_turn_with_text(prompt_text: str) -> str:
    """The last user turn that is not a tool-result turn (the one guidance is appended to)."""
    turns = prompt_text.split(_USER_TURN)
    for turn in reversed(turns[1:]):
        if not turn.lstrip().startswith(_TOOL_RESPONSE):
            return turn
    return prompt_text


def level_from_prompt(prompt_text: str) -> int:
    """Guidance level k of the question turn, read with the same template that rendered it."""
    return level_in_text(_last_user_turn_with_text(prompt_text))


@dataclass(frozen=True)
class ScriptedTask:
    """What the marker in a question says: the minimal sufficient level and the correct answer."""

    min_level: int
    answer: str
    every: int = 1
    calls: int = 1
    follow: bool = False


def parse_task(prompt_text: str) -> ScriptedTask:
    """Read the task marker from the prompt; a prompt without one is an error (the script cannot answer)."""
    match = _MARKER.search(prompt_text)
    if match is None:
        raise ValueError(f"prompt has no scripted task marker like {task_marker(1, 'X')!r}: {prompt_text[-300:]!r}")
    return ScriptedTask(
        min_level=int(match["level"]),
        answer=match["answer"],
        every=int(match["every"] or 1),
        calls=1 if match["calls"] is None else int(match["calls"]),
        follow=match["follow"] is not None,
    )


def scripted_response(prompt_text: str, level_fn: LevelFn = level_from_prompt, call_index: int = 0) -> str:
    """The response text (ending with ``<|im_end|>``) the scripted policy gives for this prompt.

    ``call_index`` counts earlier requests with this exact prompt text (see ``every`` in :func:`task_marker`).
    """
    task = parse_task(prompt_text)
    question_turn = _last_user_turn_with_text(prompt_text).split("<|im_end|>")[0]
    calls_made = prompt_text.count(_TOOL_RESPONSE)
    if task.follow:
        plan = plan_in_text(question_turn)
        if calls_made < len(plan):
            return _tool_call(plan[calls_made].name, plan[calls_made].arguments)
        progress = calls_made  # every call this policy makes is a reference action
    else:
        if calls_made < task.calls:
            question = _MARKER.sub("", question_turn).strip()
            return _tool_call("web_search", {"query": [question[:200]]})
        progress = level_fn(prompt_text)
    correct = progress >= task.min_level and call_index % task.every == 0
    answer = task.answer if correct else WRONG_ANSWER
    return f"<answer>{answer}</answer><|im_end|>"


def _tool_call(name: str, arguments: dict) -> str:
    call = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>\n{call}\n</tool_call><|im_end|>"


def scripted_record(
    task_id: str, question: str, answer: str, actions: Sequence[Action] = SCRIPTED_PLAN
) -> dict[str, Any]:
    """One task as a line of ``actguide-preprocess convert --format actions``'s input; ``question`` carries a
    :func:`task_marker`."""
    return {"id": task_id, "question": question, "answer": answer, "actions": [a.to_dict() for a in actions]}


def write_scripted_inputs(
    directory: str | Path, records: Iterable[Mapping[str, Any]], corpus: Iterable[Mapping[str, str]] | None = None
) -> Path:
    """Write ``records.jsonl`` (and ``corpus.jsonl`` when given) into ``directory``, together; returns the records."""
    with StagedOutputs(directory) as out:
        written = out.jsonl(RECORDS_FILE, records)
        if corpus is not None:
            out.jsonl(CORPUS_FILE, corpus)
        out.commit()
    return written
