"""Per-task warm-start cache: the last minimal sufficient level k* of every task.

The policy improves slowly, so last epoch's k* is the best first guess for this epoch's search. The cache
is part of the training state: it is saved with each checkpoint and restored on resume (a resumed run
that forgot it would pay cold-start searches again). Values are stored with the task's L so that a
dataset whose reference actions changed does not warm-start from a stale level. A task whose whole group
failed even at L also keeps how many times in a row that happened (the search checks such a task more
cheaply, :attr:`~actguide_plugin.core.search.SearchConfig.probe_only_after`); any rescue resets the count.

Format 2 adds ``full_failures`` to an entry; format 1 files (no streaks) still load, a full failure there
counting as one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from actguide_plugin.outputs import atomic_file

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class LevelCache:
    """Maps task id → (L, level, full-failure streak). A stored level of L + 1 means "even full guidance failed
    last time", and the streak counts such failures in a row (0 for a task last rescued)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, int, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries

    def get(self, task_id: str, num_actions: int) -> int | None:
        """Last level for the task, or None if unknown or recorded for a different L."""
        entry = self._entries.get(task_id)
        if entry is None or entry[0] != num_actions:
            return None
        return entry[1]

    def failure_streak(self, task_id: str, num_actions: int) -> int:
        """Whole-group failures at L in a row, the last one included (0: unknown, other L, or last rescued)."""
        entry = self._entries.get(task_id)
        return entry[2] if entry is not None and entry[0] == num_actions else 0

    def put(self, task_id: str, num_actions: int, level: int) -> None:
        if not 1 <= level <= num_actions:
            raise ValueError(f"task {task_id!r}: cached level {level} outside [1, {num_actions}]")
        self._entries[task_id] = (num_actions, level, 0)

    def put_full_failure(self, task_id: str, num_actions: int) -> None:
        streak = self.failure_streak(task_id, num_actions)
        self._entries[task_id] = (num_actions, num_actions + 1, streak + 1)

    def subset(self, task_ids: list[str]) -> LevelCache:
        """The entries of some tasks (what one rollout worker needs from the shared cache)."""
        part = LevelCache()
        part._entries = {t: self._entries[t] for t in task_ids if t in self._entries}
        return part

    def to_dict(self) -> dict:
        entries = {}
        for task, (n, k, streak) in sorted(self._entries.items()):
            entries[task] = {"num_actions": n, "level": k, **({"full_failures": streak} if streak else {})}
        return {"version": FORMAT_VERSION, "entries": entries}

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> LevelCache:
        if not isinstance(data, dict) or data.get("version") not in READABLE_VERSIONS:
            raise ValueError(
                f"{source}: not a level cache of format version {' or '.join(map(str, READABLE_VERSIONS))}"
            )
        cache = cls()
        for task, entry in data.get("entries", {}).items():
            try:
                num_actions, level = int(entry["num_actions"]), int(entry["level"])
                streak = int(entry.get("full_failures", 1 if level == num_actions + 1 else 0))
            except (AttributeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{source}: bad entry for task {task!r}: {entry!r}") from err
            if not 1 <= level <= num_actions + 1:
                raise ValueError(f"{source}: task {task!r} has level {level} outside [1, {num_actions + 1}]")
            if streak < 0 or (streak > 0) != (level == num_actions + 1):
                raise ValueError(f"{source}: task {task!r} has full_failures {streak} with level {level}")
            cache._entries[str(task)] = (num_actions, level, streak)
        return cache

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file + rename): a crash never leaves a truncated cache behind."""
        with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=0, sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LevelCache:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: level cache is not valid JSON: {err}") from err
        return cls.from_dict(data, source=str(path))
