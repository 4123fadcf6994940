"""What the recipe reads from a dataset row, and how errors name the row: task id, reference actions.

Free of verl imports on purpose: the agent loop module imports it while verl loads its plugins, before the
device platform is chosen (importing verl's config modules there would pick the platform too early).
"""

from __future__ import annotations

from typing import Any

from actguide_plugin.core.actions import Action, loads_actions


class BadRowError(ValueError):
    """A dataset row the recipe cannot use (no stable task id, unparseable reference actions); names the row."""


def row_name(prompt: dict[str, Any]) -> str:
    """How a log line names a dataset row: its data source, dataset index / task id and this sampling's uid."""
    extra_info = prompt.get("extra_info") or {}
    parts = [f"data_source={prompt.get('data_source', '')!r}"]
    for key in ("task_id", "index"):
        if extra_info.get(key) is not None:
            parts.append(f"{key}={extra_info[key]!r}")
    return " ".join([*parts, f"uid={prompt.get('uid')}"])


def task_id_of(prompt: dict[str, Any]) -> str:
    """Stable across epochs (the uid is new every time a prompt is sampled): data source + dataset index."""
    extra_info = prompt.get("extra_info") or {}
    if extra_info.get("task_id") is not None:
        return str(extra_info["task_id"])
    index = extra_info.get("index", prompt.get("index"))
    if index is None:
        raise BadRowError(
            f"row {row_name(prompt)}: ActGuide needs a stable task id: set extra_info.task_id or extra_info.index"
        )
    return f"{prompt.get('data_source', '')}/{index}"


def actions_of(prompt: dict[str, Any]) -> list[Action]:
    """The row's reference actions ([] when it has none)."""
    extra_info = prompt.get("extra_info") or {}
    try:
        return loads_actions(extra_info.get("reference_actions"))
    except ValueError as err:
        raise BadRowError(f"row {row_name(prompt)}: bad extra_info.reference_actions: {err}") from err


def num_actions_of(prompt: dict[str, Any]) -> int:
    """L, the number of reference actions of the row (0 when it has none)."""
    return len(actions_of(prompt))
