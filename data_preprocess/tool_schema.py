"""A verl tool config's schemas, and fitting a reference action to them (``attach --tool-config``).

The plan a guided rollout is shown is made of reference actions; if a call's name or arguments do not match the
tools the agent really has, the policy is asked to imitate a call it cannot make. So ``attach`` checks each
action against the user's own tool yaml — the ``tools: [{class_name, config, tool_schema}]`` file verl's
``ToolAgentLoop`` reads — before it reaches a row. The yaml is read as data: the tool classes are not imported,
so a user's tool package need not be importable where the data is prepared.

Checked: the tool exists; every argument is a declared parameter; every required parameter is present; a value
has its declared JSON type. One coercion, the same as ``convert``'s: a string where the schema wants an array of
strings becomes a one-element list (``{"query": "x"}`` → ``{"query_list": ["x"]}`` after ``--arg-map``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from actguide_plugin.core.actions import Action
from data_preprocess.records import InputFileError, RecordError

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass(frozen=True)
class ToolSchema:
    """One tool's name, its parameters (name → JSON schema) and the required ones."""

    name: str
    parameters: Mapping[str, Mapping[str, Any]]
    required: tuple[str, ...]

    def fit(self, action: Action, position: int) -> Action:
        """``action`` with its arguments checked (and a string coerced to a list where an array is declared)."""
        arguments = dict(action.arguments)
        for key, value in action.arguments.items():
            spec = self.parameters.get(key)
            if spec is None:
                raise RecordError(
                    f"schema mismatch: {self.name} action {position} has argument {key!r}, not a parameter of "
                    f"the tool ({', '.join(self.parameters) or 'none'}; rename it with --arg-map)"
                )
            arguments[key] = _fit_value(value, spec, f"{self.name} action {position} argument {key!r}")
        missing = [key for key in self.required if key not in arguments]
        if missing:
            raise RecordError(f"schema mismatch: {self.name} action {position} lacks required {', '.join(missing)}")
        return Action(action.name, arguments)


def _fit_value(value: Any, spec: Mapping[str, Any], where: str) -> Any:
    declared = spec.get("type")
    if declared == "array" and isinstance(value, str):
        value = [value]
    allowed = _JSON_TYPES.get(declared) if isinstance(declared, str) else None
    if allowed is None:
        return value  # no type, or a type this check does not know: the tool decides
    if not isinstance(value, allowed) or (declared in ("integer", "number") and isinstance(value, bool)):
        raise RecordError(f"schema mismatch: {where} must be {declared}, got {type(value).__name__}")
    items = spec.get("items") or spec.get("item")  # verl's own search_tool_config.yaml spells it "item"
    if declared == "array" and isinstance(items, Mapping):
        value = [_fit_value(item, items, f"{where} item {i}") for i, item in enumerate(value)]
    return value


def load_tool_schemas(path: str | Path) -> dict[str, ToolSchema]:
    """The tools of a verl tool yaml by name, or :class:`InputFileError` naming the file and the bad entry."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputFileError(f"{path}: no such tool config") from err
    except yaml.YAMLError as err:
        raise InputFileError(f"{path}: not valid YAML: {err}") from err
    entries = document.get("tools") if isinstance(document, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise InputFileError(f"{path}: a verl tool config needs a non-empty 'tools:' list")
    schemas: dict[str, ToolSchema] = {}
    for index, entry in enumerate(entries):
        function = (entry.get("tool_schema") or {}).get("function") if isinstance(entry, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise InputFileError(f"{path}: tools[{index}] has no tool_schema.function.name")
        parameters = function.get("parameters") or {}
        properties = parameters.get("properties") or {}
        if not isinstance(properties, Mapping):
            raise InputFileError(f"{path}: tools[{index}] ({name}): parameters.properties must be a mapping")
        schemas[name] = ToolSchema(name, dict(properties), tuple(parameters.get("required") or ()))
    return schemas
