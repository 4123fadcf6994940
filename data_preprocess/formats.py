"""Input formats: small parsers behind one interface, selected by name (``--format``) or detected.

Each format turns one decoded record into a :class:`ParsedTask`: the question, the gold answer, the
reference actions (tool calls in order, no reasoning, paper §3) and, when the record is an agent
trajectory, that trajectory's own final answer (for ``--require-correct``). Parsers only read; renaming
tools, dropping arguments and filtering are format-independent and live in :mod:`data_preprocess.postprocess`.

Formats:

* ``openai``   — ``messages`` with assistant ``tool_calls`` (``function.name``, ``function.arguments`` as a JSON
  string or an object).
* ``hermes``   — assistant ``content`` with ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks.
* ``react``    — ``Action: <name>`` then ``Action Input: <json>`` lines in assistant text.
* ``actions``  — the record already has a list of ``{name, arguments}``.
* ``fanoutqa`` — a FanOutQA decomposition tree: per node, in dependency order,
  ``web_search(query=[sub-question])`` then ``web_visit(url=[evidence page])``.

For the message formats the ``messages`` field may also hold ShareGPT-style ``{"from", "value"}`` turns,
or a single string (a whole transcript, read as one assistant turn).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from actguide_plugin.core.actions import Action, ActionFormatError, loads_actions
from actguide_plugin.reward.answer import (
    encode_gold_answers,
    gold_answer_text,
    last_block,
    normalize_answer,
    parse_gold_answers,
    without_blocks,
)
from data_preprocess.records import RecordError

WIKIPEDIA_PREFIX = "https://en.wikipedia.org/wiki/"
SEARCH_TOOL = "web_search"
VISIT_TOOL = "web_visit"


def wikipedia_url(title: str) -> str:
    """Canonical page URL for a title: the form the offline corpus uses, so ``web_visit(url)`` finds the page."""
    return WIKIPEDIA_PREFIX + title.strip().replace(" ", "_")


@dataclass(frozen=True)
class FieldMap:
    """Record field names (dotted paths reach into nested objects, e.g. ``reward_model.ground_truth``)."""

    question: str = "question"
    answer: str = "answer"
    messages: str = "messages"
    id: str = "id"
    actions: str = "actions"


@dataclass(frozen=True)
class ParsedTask:
    """What every format yields. ``answer`` is the gold answer as the source has it (str, number, list, dict)
    until ``convert`` replaces it by its ``ground_truth`` text (:func:`answer_text`)."""

    question: str
    answer: Any
    actions: tuple[Action, ...]
    task_id: str | None = None
    final_answer: str | None = None


_MISSING = object()


def get_field(record: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path, or ``_MISSING`` when any step is absent or ``None``."""
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, Mapping) or value.get(key) is None:
            return _MISSING
        value = value[key]
    return value


def answer_text(answer: Any, field: str = "answer") -> str:
    """The ``ground_truth`` text for a source gold answer, or :class:`RecordError` naming ``field``.

    A string, a number or a list of them (alternatives) is accepted: each item becomes text by the reward's
    rule (:func:`~actguide_plugin.reward.answer.gold_answer_text`: ``1945`` → ``"1945"``, ``3.0`` → ``"3"``),
    so the reward reads back exactly these answers. Rejected: empty lists, booleans, objects other than
    ``{"target": ...}``, and an answer that normalizes to nothing (``"The"``, ``"?"``), which the reward could
    only "match" with an empty prediction.
    """
    try:
        answers = parse_gold_answers(answer)
    except ValueError as err:
        reason = str(err).removeprefix("ground_truth: ")
        raise RecordError(f"invalid answer (field {field!r}): {reason}") from err
    for position, text in enumerate(answers):
        if not normalize_answer(text):
            which = f"item {position} " if len(answers) > 1 else ""
            raise RecordError(
                f"invalid answer (field {field!r}): {which}{text!r} is empty once normalized "
                "(case, punctuation and articles removed), so no prediction can match it"
            )
    return encode_gold_answers(answers)


_FINAL_ANSWER = "Final Answer"
_LINE_INDENT = re.compile(r"[^\S\n]*")
_COLON = re.compile(r"\s*:")


def _final_answer_line(text: str) -> str | None:
    r"""What follows ``Final Answer:`` at the start of a line (after indentation), to the end of the text.

    One candidate per line (only a line's first word can be it), found with ``str.find``: linear, where the
    regex ``^\s*Final Answer`` rescanned a run of blank lines from each of them.
    """
    position = line_start = 0
    while (found := text.find(_FINAL_ANSWER, position)) >= 0:
        newline = text.rfind("\n", position, found)
        if newline >= 0:
            line_start = newline + 1
        if _LINE_INDENT.match(text, line_start).end() == found:
            colon = _COLON.match(text, found + len(_FINAL_ANSWER))
            if colon:
                return text[colon.end() :]
        next_line = text.find("\n", found)
        if next_line < 0:
            return None
        position = line_start = next_line + 1
    return None


def _without_closed_blocks(text: str, open_tag: str, close_tag: str) -> str:
    """``text`` without its closed ``open…close`` blocks; an unclosed open tag and what follows it stay.

    Before the last close tag every block is closed, so that part is :func:`without_blocks`' job."""
    last_close = text.rfind(close_tag)
    if last_close < 0:
        return text
    end = last_close + len(close_tag)
    return without_blocks(text[:end], open_tag, close_tag, replacement="") + text[end:]


def extract_final_answer(text: str) -> str | None:
    """A trajectory's final answer: the last ``<answer>…</answer>``, else ``Final Answer: …``, else the text
    without its ``<think>`` and ``<tool_call>`` blocks. Linear in the text (tags found with ``str.find``)."""
    tagged = last_block(text, "<answer>", "</answer>")
    if tagged is not None:
        return tagged.strip()
    final = _final_answer_line(text)
    if final is not None:
        return final.strip() or None
    prose = _without_closed_blocks(_without_closed_blocks(text, "<think>", "</think>"), "<tool_call>", "</tool_call>")
    return prose.strip() or None


class TrajectoryFormat(ABC):
    """One input format. ``detect`` looks at a record's shape; ``parse`` raises :class:`RecordError`."""

    name: ClassVar[str]

    @abstractmethod
    def detect(self, record: Mapping[str, Any], fields: FieldMap) -> bool: ...

    @abstractmethod
    def parse(self, record: Mapping[str, Any], fields: FieldMap) -> ParsedTask: ...


FORMATS: dict[str, TrajectoryFormat] = {}


def register_format(cls: type[TrajectoryFormat]) -> type[TrajectoryFormat]:
    """Class decorator: make a format selectable by its ``name``. Registration order is detection order."""
    FORMATS[cls.name] = cls()
    return cls


def detect_format(records: Iterable[Any], fields: FieldMap) -> str | None:
    """Name of the first format whose ``detect`` accepts one of ``records`` (the caller bounds how many)."""
    for record in records:
        if not isinstance(record, Mapping):
            continue
        for name, fmt in FORMATS.items():
            if fmt.detect(record, fields):
                return name
    return None


def _require_text(record: Mapping[str, Any], path: str, what: str) -> str:
    value = get_field(record, path)
    if value is _MISSING or (isinstance(value, str) and not value.strip()):
        raise RecordError(f"missing {what} (field {path!r})")
    if not isinstance(value, str):
        raise RecordError(f"invalid {what}: field {path!r} must be a string, got {type(value).__name__}")
    return value.strip()


def _gold_answer(record: Mapping[str, Any], fields: FieldMap) -> Any:
    value = get_field(record, fields.answer)
    if value is _MISSING or (isinstance(value, (str, list, dict)) and not value):
        raise RecordError(f"missing answer (field {fields.answer!r})")
    if isinstance(value, str):
        return value.strip()
    return value


def _task_id(record: Mapping[str, Any], fields: FieldMap) -> str | None:
    value = get_field(record, fields.id)
    if value is _MISSING:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise RecordError(f"invalid id: field {fields.id!r} must be a string or integer, got {type(value).__name__}")


def _action(name: Any, arguments: Any, where: str) -> Action:
    try:
        return Action.from_dict({"name": name, "arguments": arguments})
    except ActionFormatError as err:
        raise RecordError(f"unparseable tool call ({where}): {err}") from err


# ---------------------------------------------------------------------------------------------------------
# Chat-message formats (openai, hermes, react) share message reading and the question/answer fields.

_ROLE_ALIASES = {"gpt": "assistant", "human": "user", "model": "assistant"}


@dataclass(frozen=True)
class _Turn:
    index: int
    role: str
    text: str
    message: Mapping[str, Any]


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of an OpenAI content-part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    raise RecordError(f"invalid messages: content must be a string or a list of parts, got {type(content).__name__}")


def _turns(record: Mapping[str, Any], fields: FieldMap) -> list[_Turn]:
    value = get_field(record, fields.messages)
    if value is _MISSING:
        raise RecordError(f"missing messages (field {fields.messages!r})")
    if isinstance(value, str):
        return [_Turn(0, "assistant", value, {})]
    if not isinstance(value, list):
        raise RecordError(f"invalid messages: field {fields.messages!r} must be a list, got {type(value).__name__}")
    turns = []
    for index, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise RecordError(f"invalid messages: message {index} is not an object")
        role = message.get("role") or message.get("from") or ""
        content = message.get("content") if "content" in message else message.get("value")
        turns.append(_Turn(index, _ROLE_ALIASES.get(role, role), _content_text(content), message))
    return turns


def _looks_like_messages(record: Mapping[str, Any], fields: FieldMap) -> list[_Turn]:
    """The record's turns for detection, or [] when it has none or they are malformed (parse reports that)."""
    try:
        return _turns(record, fields)
    except RecordError:
        return []


class _MessageFormat(TrajectoryFormat):
    """Shared driver: collect actions from assistant turns in order, then the last assistant answer."""

    def parse(self, record: Mapping[str, Any], fields: FieldMap) -> ParsedTask:
        turns = _turns(record, fields)
        question = self._question(record, fields, turns)
        answer = _gold_answer(record, fields)
        actions: list[Action] = []
        last_text = None
        for turn in turns:
            if turn.role == "assistant":
                actions.extend(self.turn_actions(turn))
                last_text = turn.text
        if not actions:
            raise RecordError("no actions: the trajectory has no tool calls")
        final = extract_final_answer(last_text) if last_text else None
        return ParsedTask(question, answer, tuple(actions), _task_id(record, fields), final)

    @staticmethod
    def _question(record: Mapping[str, Any], fields: FieldMap, turns: Sequence[_Turn]) -> str:
        """The question field, or else the first user turn (documented fallback for chat-only dumps)."""
        if get_field(record, fields.question) is _MISSING:
            first_user = next((t.text.strip() for t in turns if t.role == "user" and t.text.strip()), None)
            if first_user is not None:
                return first_user
        return _require_text(record, fields.question, "question")

    @abstractmethod
    def turn_actions(self, turn: _Turn) -> list[Action]: ...


@dataclass(frozen=True)
class FanOutQAStep:
    """One evidence-backed FanOutQA decomposition node: a single-hop task of its own, and one step of its
    question's plan. ``answer`` is the node's own answer as the source has it (any JSON value, or ``None``)."""

    node_id: str | None
    question: str
    url: str
    answer: Any

    def actions(self) -> tuple[Action, Action]:
        return Action(SEARCH_TOOL, {"query": [self.question]}), Action(VISIT_TOOL, {"url": [self.url]})


@register_format
class FanOutQAFormat(TrajectoryFormat):
    """FanOutQA decomposition tree → search(sub-question), visit(evidence page), in dependency order."""

    name = "fanoutqa"

    def detect(self, record: Mapping[str, Any], fields: FieldMap) -> bool:
        return isinstance(record.get("decomposition"), list)

    def parse(self, record: Mapping[str, Any], fields: FieldMap) -> ParsedTask:
        question = _require_text(record, fields.question, "question")
        answer = self.answer_prose(_gold_answer(record, fields))
        actions = tuple(action for step in self.steps(record) for action in step.actions())
        if not actions:
            raise RecordError("no actions: the decomposition is empty")
        # A human decomposition reaches the gold answer by construction, so it counts as a correct trajectory.
        return ParsedTask(question, answer, actions, _task_id(record, fields), answer)

    def steps(self, record: Mapping[str, Any]) -> list[FanOutQAStep]:
        """Every node with an evidence page, children before parents and siblings in dependency order."""
        nodes = record.get("decomposition")
        if not isinstance(nodes, list):
            raise RecordError("missing decomposition: field 'decomposition' must be a list of sub-questions")
        steps: list[FanOutQAStep] = []
        self._walk(nodes, "decomposition", steps)
        return steps

    @classmethod
    def answer_prose(cls, value: Any) -> str:
        """FanOutQA answers are whole structures (every list item is required, not alternatives), so they
        become one text — ``key: value; ...`` or ``a, b, c`` — rather than a JSON list that a reward would read
        as a list of alternative answers."""
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, list):
            return ", ".join(cls.answer_prose(v) for v in value)
        if isinstance(value, Mapping):
            return "; ".join(f"{k}: {cls.answer_prose(v)}" for k, v in value.items())
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return gold_answer_text(value)
        return json.dumps(value, ensure_ascii=False)

    def _walk(self, nodes: list[Any], path: str, out: list[FanOutQAStep]) -> None:
        for position, node in self._dependency_order(nodes, path):
            where = f"{path}[{position}]"
            children = node.get("decomposition") or []
            if not isinstance(children, list):
                raise RecordError(f"invalid decomposition: {where}.decomposition must be a list")
            self._walk(children, f"{where}.decomposition", out)
            evidence = node.get("evidence")
            if evidence is None:
                if not children:
                    raise RecordError(f"invalid decomposition: {where} has neither evidence nor a decomposition")
                continue
            sub_question = node.get("question")
            if not isinstance(sub_question, str) or not sub_question.strip():
                raise RecordError(f"invalid decomposition: {where} has no question")
            if not isinstance(evidence, Mapping):
                raise RecordError(f"invalid decomposition: {where}.evidence must be an object with 'title' or 'url'")
            if isinstance(evidence.get("title"), str) and evidence["title"].strip():
                url = wikipedia_url(evidence["title"])
            elif isinstance(evidence.get("url"), str) and evidence["url"].strip():
                url = evidence["url"].strip()
            else:
                raise RecordError(f"invalid decomposition: {where}.evidence has neither 'title' nor 'url'")
            node_id = node.get("id")
            out.append(
                FanOutQAStep(
                    str(node_id) if isinstance(node_id, (str, int)) and not isinstance(node_id, bool) else None,
                    sub_question.strip(),
                    url,
                    node.get("answer"),
                )
            )

    @staticmethod
    def _dependency_order(nodes: list[Any], path: str) -> list[tuple[int, Mapping[str, Any]]]:
        """Siblings sorted so each comes after those it ``depends_on``; ties keep the source order."""
        for position, node in enumerate(nodes):
            if not isinstance(node, Mapping):
                raise RecordError(f"invalid decomposition: {path}[{position}] is not an object")
        position_of = {node.get("id"): i for i, node in enumerate(nodes) if node.get("id") is not None}
        remaining = list(range(len(nodes)))
        done: set[int] = set()
        order: list[tuple[int, Mapping[str, Any]]] = []
        while remaining:
            for i in remaining:
                deps = nodes[i].get("depends_on") or []
                unknown = [d for d in deps if d not in position_of]
                if unknown:
                    raise RecordError(
                        f"invalid decomposition: {path}[{i}] depends on unknown sub-question id(s) {unknown}"
                    )
                if all(position_of[d] in done for d in deps):
                    order.append((i, nodes[i]))
                    done.add(i)
                    remaining.remove(i)
                    break
            else:
                raise RecordError(f"invalid decomposition: {path} sub-questions {remaining} have circular depends_on")
        return order


@register_format
class ActionsFormat(TrajectoryFormat):
    """The record carries its actions already (a list, or that list as a JSON string)."""

    name = "actions"
    fallback_field: ClassVar[str] = "reference_actions"

    def _value(self, record: Mapping[str, Any], fields: FieldMap) -> Any:
        value = get_field(record, fields.actions)
        return get_field(record, self.fallback_field) if value is _MISSING else value

    def detect(self, record: Mapping[str, Any], fields: FieldMap) -> bool:
        return isinstance(self._value(record, fields), (list, str))

    def parse(self, record: Mapping[str, Any], fields: FieldMap) -> ParsedTask:
        question = _require_text(record, fields.question, "question")
        answer = _gold_answer(record, fields)
        value = self._value(record, fields)
        if value is _MISSING:
            raise RecordError(f"missing actions (field {fields.actions!r} or {self.fallback_field!r})")
        try:
            actions = loads_actions(value)
        except ActionFormatError as err:
            raise RecordError(f"unparseable tool call: {err}") from err
        if not actions:
            raise RecordError("no actions: the action list is empty")
        final = record.get("final_answer")
        return ParsedTask(
            question, answer, tuple(actions), _task_id(record, fields), final if isinstance(final, str) else None
        )


@register_format
class OpenAIFormat(_MessageFormat):
    """Assistant messages with OpenAI ``tool_calls``."""

    name = "openai"

    def detect(self, record: Mapping[str, Any], fields: FieldMap) -> bool:
        return any(t.role == "assistant" and t.message.get("tool_calls") for t in _looks_like_messages(record, fields))

    def turn_actions(self, turn: _Turn) -> list[Action]:
        calls = turn.message.get("tool_calls") or []
        if not isinstance(calls, list):
            raise RecordError(f"unparseable tool call (message {turn.index}): tool_calls must be a list")
        actions = []
        for j, call in enumerate(calls):
            where = f"message {turn.index}, tool call {j}"
            if not isinstance(call, Mapping):
                raise RecordError(f"unparseable tool call ({where}): not an object")
            function = call.get("function", call)
            if not isinstance(function, Mapping):
                raise RecordError(f"unparseable tool call ({where}): 'function' is not an object")
            actions.append(_action(function.get("name"), function.get("arguments"), where))
        return actions


def _without_code_fence(text: str) -> str:
    """``text`` stripped, without a surrounding Markdown code fence (```` ```json ```` … ```` ``` ````)."""
    text = text.strip()
    if text.startswith("```"):
        text = text[3:].removeprefix("json")
    return text.removesuffix("```").strip()


def tool_call_blocks(text: str) -> list[str] | None:
    """The contents of the ``<tool_call>…</tool_call>`` blocks of ``text``, or ``None`` when one is not closed.

    One split, then one partition per block (linear): each chunk after an open tag must hold a close tag, its
    block ending at the first one, exactly as ``re.findall(<tool_call>(.*?)</tool_call>)`` read them when every
    block is closed.
    """
    first = text.find("<tool_call>")
    if first < 0:
        return []
    if text.count("<tool_call>", first) > text.count("</tool_call>", first):
        return None  # fewer close tags than blocks: one is unclosed (found by two C scans, whatever the count)
    parts = [chunk.partition("</tool_call>") for chunk in text[first:].split("<tool_call>")[1:]]
    if not all(closed for _, closed, _ in parts):
        return None
    return [content for content, _, _ in parts]


@register_format
class HermesFormat(_MessageFormat):
    """Assistant text with ``<tool_call>{json}</tool_call>`` blocks (Qwen / Hermes / Tongyi DeepResearch)."""

    name = "hermes"

    def detect(self, record: Mapping[str, Any], fields: FieldMap) -> bool:
        return any(t.role == "assistant" and "<tool_call>" in t.text for t in _looks_like_messages(record, fields))

    def turn_actions(self, turn: _Turn) -> list[Action]:
        blocks = tool_call_blocks(turn.text)
        if blocks is None:
            raise RecordError(f"unparseable tool call (message {turn.index}): unterminated <tool_call> block")
        actions = []
        for j, block in enumerate(blocks):
            where = f"message {turn.index}, tool call {j}"
            try:
                call = json.loads(_without_code_fence(block))
            except json.JSONDecodeError as err:
                raise RecordError(f"unparseable tool call ({where}): invalid JSON: {err}") from err
            if not isinstance(call, Mapping):
                raise RecordError(f"unparseable tool call ({where}): expected an object with 'name' and 'arguments'")
            arguments = call.get("arguments", call.get("parameters"))
            actions.append(_action(call.get("name"), arguments, where))
        return actions


_REACT_ACTION = re.compile(r"^\s*Action\s*:(.*)$")  # the name is stripped after: (.*?)\s*$ is quadratic
_REACT_INPUT = re.compile(r"^\s*Action Input\s*:\s?(.*)$")
_REACT_STOP = re.compile(r"^\s*(Observation|Thought|Action|Final Answer)\s*:")


@register_format
class ReActFormat(_MessageFormat):
    """ReAct text: ``Action: <name>`` followed by ``Action Input: <json>`` (which may span lines)."""

    name = "react"

    def detect(self, record: Mapping[str, Any], fields: FieldMap) -> bool:
        return any(
            t.role == "assistant" and any(_REACT_INPUT.match(line) for line in t.text.split("\n"))
            for t in _looks_like_messages(record, fields)
        )

    def turn_actions(self, turn: _Turn) -> list[Action]:
        lines = turn.text.split("\n")  # not splitlines(): JSON strings may hold \x85, \u2028
        actions = []
        i = 0
        while i < len(lines):
            match = _REACT_ACTION.match(lines[i])
            i += 1
            if match is None:
                continue
            name = match.group(1).strip().strip("`[] ")
            where = f"message {turn.index}, action {len(actions)}"
            while i < len(lines) and not lines[i].strip():
                i += 1
            input_match = _REACT_INPUT.match(lines[i]) if i < len(lines) else None
            if input_match is None:
                raise RecordError(f"unparseable tool call ({where}): 'Action: {name}' has no 'Action Input:' line")
            body = [input_match.group(1)]
            i += 1
            while i < len(lines) and not _REACT_STOP.match(lines[i]):
                body.append(lines[i])
                i += 1
            text = _without_code_fence("\n".join(body))
            try:
                arguments = json.loads(text) if text else {}
            except json.JSONDecodeError as err:
                raise RecordError(f"unparseable tool call ({where}): Action Input is not valid JSON: {err}") from err
            actions.append(_action(name, arguments, where))
        return actions
