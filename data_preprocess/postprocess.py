"""Format-independent clean-up of parsed actions, and the answer check behind ``--require-correct``.

Order of operations on a task's actions (each step sees the previous step's output):

1. ``--drop-arg tool.arg`` removes an argument; ``tool`` may be the source name, the mapped name or ``*``.
2. ``--arg-map tool.src=dst`` renames an argument (``tool`` as for ``--drop-arg``), e.g. ``query`` →
   ``query_list`` for verl's Search-R1 ``search`` tool.
3. ``--tool-map src=dst`` renames tools (e.g. ASearcher's ``search``/``visit`` → ``web_search``/``web_visit``).
4. Tools outside ``--tools`` (the tools the agent has) are rejected, or dropped with ``--unknown-tool drop``.
5. The product tools take lists: a bare string ``query`` / ``url`` becomes a one-element list, so the plan the
   policy is shown uses the same argument shape as the tool schema it must call (``list_arguments``; ``attach``
   leaves this to the user's tool schema instead, :mod:`data_preprocess.tool_schema`).
6. A task left with no actions is rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actguide_plugin.core.actions import Action, ActionFormatError, dumps_actions
from actguide_plugin.reward.answer import normalize_answer, parse_gold_answers
from data_preprocess.formats import SEARCH_TOOL, VISIT_TOOL
from data_preprocess.records import RecordError

DEFAULT_TOOLS = (SEARCH_TOOL, VISIT_TOOL)
LIST_ARGUMENTS = {SEARCH_TOOL: "query", VISIT_TOOL: "url"}
UNKNOWN_TOOL_POLICIES = ("reject", "drop")


def parse_tool_map(specs: Iterable[str]) -> dict[str, str]:
    """``["search=web_search,visit=web_visit"]`` → ``{"search": "web_search", "visit": "web_visit"}``."""
    mapping: dict[str, str] = {}
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            source, sep, target = item.partition("=")
            if not sep or not source.strip() or not target.strip():
                raise ValueError(f"--tool-map entry {item!r} must look like source=target")
            mapping[source.strip()] = target.strip()
    return mapping


def _tool_arguments(specs: Iterable[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            tool, sep, argument = item.partition(".")
            if not sep or not tool or not argument:
                raise ValueError(f"{flag} entry {item!r} must look like tool.argument (tool may be '*')")
            pairs.append((tool, argument))
    return pairs


def parse_drop_args(specs: Iterable[str]) -> list[tuple[str, str]]:
    """``["visit.goal,*.timeout"]`` → ``[("visit", "goal"), ("*", "timeout")]``."""
    return _tool_arguments(specs, "--drop-arg")


def parse_arg_map(specs: Iterable[str]) -> list[tuple[str, str, str]]:
    """``["web_search.query=query_list"]`` → ``[("web_search", "query", "query_list")]``."""
    renames = []
    for tool, mapping in _tool_arguments(specs, "--arg-map"):
        source, sep, target = mapping.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"--arg-map entry {tool}.{mapping!r} must look like tool.source=target")
        renames.append((tool, source.strip(), target.strip()))
    return renames


@dataclass(frozen=True)
class ActionPolicy:
    """What the agent can do with reference actions; ``apply`` raises :class:`RecordError` on rejection."""

    tools: tuple[str, ...] = DEFAULT_TOOLS
    tool_map: Mapping[str, str] = field(default_factory=dict)
    drop_args: Sequence[tuple[str, str]] = ()
    unknown_tool: str = "reject"
    arg_map: Sequence[tuple[str, str, str]] = ()
    list_arguments: Mapping[str, str] = field(default_factory=lambda: dict(LIST_ARGUMENTS))

    def __post_init__(self) -> None:
        if self.unknown_tool not in UNKNOWN_TOOL_POLICIES:
            raise ValueError(f"unknown_tool must be one of {UNKNOWN_TOOL_POLICIES}, got {self.unknown_tool!r}")
        if not self.tools:
            raise ValueError("the agent needs at least one tool (--tools)")

    def apply(self, actions: Sequence[Action]) -> tuple[Action, ...]:
        kept = []
        for position, action in enumerate(actions):
            name = self.tool_map.get(action.name, action.name)
            if name not in self.tools:
                if self.unknown_tool == "drop":
                    continue
                raise RecordError(
                    f"unknown tool: {action.name!r} in action {position} (agent tools: {', '.join(self.tools)}; "
                    "rename it with --tool-map or drop it with --unknown-tool drop)"
                )
            names = ("*", action.name, name)
            arguments = {
                key: value
                for key, value in action.arguments.items()
                if not any(tool in names and arg == key for tool, arg in self.drop_args)
            }
            for tool, source, target in self.arg_map:
                if tool in names and source in arguments:
                    arguments[target] = arguments.pop(source)
            list_arg = self.list_arguments.get(name)
            if list_arg is not None:
                arguments[list_arg] = _string_list(arguments.get(list_arg), name, list_arg, position)
            kept.append(Action(name, arguments))
        if not kept:
            raise RecordError("no actions left: none of the tool calls uses one of the agent's tools (--tools)")
        try:
            dumps_actions(kept)
        except ActionFormatError as err:
            raise RecordError(f"invalid action arguments: {err}") from None
        return tuple(kept)


def _string_list(value: Any, tool: str, argument: str, position: int) -> list[str]:
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return value
    raise RecordError(
        f"unparseable tool call: {tool} action {position} needs {argument!r} as a non-empty string list, got {value!r}"
    )


def answer_matches(prediction: str, gold: str) -> bool:
    """Exact match after the reward's normalization against any of the gold answers in ``gold`` (the
    ``ground_truth`` text :func:`~data_preprocess.formats.answer_text` wrote), so ``--require-correct`` agrees
    with the reward."""
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(candidate) for candidate in parse_gold_answers(gold))
