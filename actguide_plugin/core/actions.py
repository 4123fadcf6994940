"""Reference actions: the tool calls (name + arguments, no reasoning) of a successful trajectory.

This is the unit of *action data* in ActGuide-RL (paper §3). Datasets store a task's reference actions as a
JSON string of ``[{"name": ..., "arguments": {...}}, ...]`` in ``extra_info.reference_actions``; this module
is the single place that reads and writes that encoding, so the preprocessing CLI, the agent loop and the
level search agree byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REFERENCE_ACTIONS_KEY = "reference_actions"  # the key of a dataset row's ``extra_info`` that holds them
_PLAN_ESCAPES = str.maketrans({c: f"\\u{ord(c):04x}" for c in "<>\u2028\u2029"})


def plan_safe(text: str) -> str:
    """``text`` with ``<``, ``>``, U+2028 and U+2029 written as ``\\uXXXX``: it cannot spell a chat-template control
    token or break a plan line."""
    return text.translate(_PLAN_ESCAPES)


class ActionFormatError(ValueError):
    """A reference action (or list of them) does not have the ``{name, arguments}`` shape."""


@dataclass(frozen=True)
class Action:
    """One tool call: ``name`` of the tool and its JSON-object ``arguments``."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ActionFormatError(f"action name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.arguments, dict):
            raise ActionFormatError(
                f"arguments of action {self.name!r} must be a JSON object, got {type(self.arguments).__name__}"
            )

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Action:
        """Build from ``{"name", "arguments"}``; ``arguments`` may also be a JSON-encoded object."""
        if not isinstance(obj, Mapping):
            raise ActionFormatError(f"an action must be an object with 'name' and 'arguments', got {obj!r}")
        if "name" not in obj:
            raise ActionFormatError(f"action has no 'name': {obj!r}")
        arguments = obj.get("arguments", {})
        if arguments is None:
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as err:
                raise ActionFormatError(f"arguments of action {obj['name']!r} are not valid JSON: {err}") from err
        return cls(name=obj["name"], arguments=arguments)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}

    def compact_arguments(self) -> str:
        """Arguments as compact JSON, unicode kept readable."""
        return json.dumps(self.arguments, ensure_ascii=False, separators=(",", ":"), sort_keys=False)

    def plan_arguments(self) -> str:
        """Arguments as a plan line shows them: compact JSON with ``<``, ``>``, U+2028 and U+2029 written as
        ``\\uXXXX`` escapes. In compact JSON those can only occur inside strings, so the line decodes to the same
        arguments, but no argument can spell a chat-template control token (``<|im_end|>``, ``<start_of_turn>``,
        ...) or break the line: a reference action cannot forge a turn or a plan line in the guided prompt."""
        return plan_safe(self.compact_arguments())


def dumps_actions(actions: Sequence[Action]) -> str:
    """Encode actions for ``extra_info.reference_actions`` (stable: same actions → same string). NaN and infinities
    are not JSON (the plan would render them as ``NaN``): :class:`ActionFormatError`."""
    try:
        return json.dumps([a.to_dict() for a in actions], ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as err:
        raise ActionFormatError(f"action arguments hold a number JSON cannot write (NaN or infinity): {err}") from None


def _plain(value: Any) -> Any:
    """Python lists and dicts for numpy arrays at any depth (how pandas hands back parquet list columns),
    found by duck typing so this module does not import numpy."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # an array becomes a list; a numpy scalar becomes its Python value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def loads_actions(value: str | Sequence[Mapping[str, Any]] | None) -> list[Action]:
    """Decode ``extra_info.reference_actions``: a JSON string, an already-decoded list (or numpy array of
    actions, as a parquet round-trip through pandas gives), or None (→ [])."""
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ActionFormatError(f"reference_actions is not valid JSON: {err}") from err
    else:
        value = _plain(value)
    if not isinstance(value, list):
        raise ActionFormatError(f"reference_actions must be a list of actions, got {type(value).__name__}")
    return [Action.from_dict(item) for item in value]


def row_actions(row: Mapping[str, Any]) -> list[Action]:
    """The reference actions of a dataset row (``[]`` when it has none); :class:`ActionFormatError` when unparseable."""
    return loads_actions((row.get("extra_info") or {}).get(REFERENCE_ACTIONS_KEY))
