"""What the recipe reads from a dataset row, and how errors name the row: task id, reference actions.

Free of verl imports on purpose: the agent loop module imports it while verl loads its plugins, before the
device platform is chosen (importing verl's config modules there would pick the platform too early).
"""

from __future__ import annotations

from typing import Any

from actguide_plugin.core.actions import REFERENCE_ACTIONS_KEY, Action, row_actions


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
    try:
        return row_actions(prompt)
    except ValueError as err:
        raise BadRowError(f"row {row_name(prompt)}: bad extra_info.{REFERENCE_ACTIONS_KEY}: {err}") from err


def num_actions_of(prompt: dict[str, Any]) -> int:
    """L, the number of reference actions of the row (0 when it has none)."""
    return len(actions_of(prompt))


def _has_actions(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip() not in ("", "[]")
    return bool(value)


def check_train_files(files: Any) -> None:
    """Before Ray: the training rows must select the recipe's agent loop, and some must have reference actions.

    Otherwise every group runs unguided (verl's tool agent does not search levels) and a run that meant to test
    ActGuide-RL is plain GRPO; found today only 80 s into training, with a hint at the wrong setting. Local parquet
    files are read (two columns); others (``hdfs://``, missing) are left to verl's loader.
    """
    import pyarrow.parquet as pq

    from actguide_plugin.names import AGENT_NAME

    paths = [files] if isinstance(files, str) else list(files or [])
    problems, with_actions, checked = [], 0, 0
    for path in paths:
        path = str(path)
        try:
            schema = pq.ParquetFile(path).schema_arrow
        except (OSError, ValueError):
            continue
        checked += 1
        if "agent_name" in schema.names:
            names = pq.read_table(path, columns=["agent_name"]).column("agent_name").to_pylist()
            others = [name for name in names if name is not None and name != AGENT_NAME]
            if others:
                problems.append(
                    f"data.train_files {path}: {len(others)} of {len(names)} rows have agent_name "
                    f"{sorted(set(others))[:3]} instead of {AGENT_NAME!r}, so they are never guided; set the column "
                    f"to {AGENT_NAME!r} (actguide-preprocess attach does)"
                )
        extra = schema.field("extra_info").type if "extra_info" in schema.names else None
        if extra is not None and getattr(extra, "num_fields", 0) and REFERENCE_ACTIONS_KEY in [f.name for f in extra]:
            column = pq.read_table(path, columns=[f"extra_info.{REFERENCE_ACTIONS_KEY}"]).column(0).to_pylist()
            with_actions += sum(_has_actions(value) for value in column)
    if checked and not with_actions:
        problems.append(
            f"no row of data.train_files ({', '.join(map(str, paths))}) has extra_info.reference_actions, so nothing "
            "can be guided; add them with actguide-preprocess attach (or convert), or run plain GRPO with "
            "actguide.mode=off"
        )
    if problems:
        raise BadRowError("ActGuide-RL data: " + "; ".join(problems))
