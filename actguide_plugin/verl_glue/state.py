"""Run state shared by the rollout workers and the trainer: one small named Ray actor.

It holds the warm-start cache (:class:`actguide_plugin.core.level_cache.LevelCache`), the search summaries of the
groups decided since the trainer last read them, the groups that failed since then (bad rows, errors), and the
trajectory records of the validation in progress (with its expected size, so a driver such as ``actguide-eval``
can show progress). Kept free of verl and torch imports
on purpose: its Ray worker process then only loads this module, not the whole training stack (hundreds of MB on a
small CPU machine).
"""

from __future__ import annotations

import threading
from typing import Any

import ray

from actguide_plugin.core.level_cache import LevelCache
from actguide_plugin.names import STATE_ACTOR_NAME


class ActGuideState:
    """Shared by rollout workers and trainer: the warm-start cache and the groups decided since last read."""

    def __init__(self) -> None:
        self.cache = LevelCache()
        self._cache_lock = threading.Lock()
        self.summaries: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.validation_records: list[dict[str, Any]] = []
        self.validation_expected = 0

    def cache_subset(self, task_ids: list[str]) -> dict:
        with self._cache_lock:
            return self.cache.subset(task_ids).to_dict()

    def cache_record(self, task_id: str, num_actions: int, level: int | None) -> None:
        """One search's result for its task: rescued at ``level``, or a whole failure at L (``None``). Under a lock:
        the actor runs calls in threads (``max_concurrency``), and a streak update reads, then writes."""
        with self._cache_lock:
            if level is None:
                self.cache.put_full_failure(task_id, num_actions)
            else:
                self.cache.put(task_id, num_actions, level)

    def cache_state(self) -> dict:
        with self._cache_lock:
            return self.cache.to_dict()

    def load_cache_state(self, data: dict) -> int:
        with self._cache_lock:
            self.cache = LevelCache.from_dict(data)
            return len(self.cache)

    def record(self, summary: dict[str, Any]) -> None:
        self.summaries.append(summary)

    def pop_summaries(self) -> list[dict[str, Any]]:
        summaries, self.summaries = self.summaries, []
        return summaries

    def record_failure(self, failure: dict[str, Any]) -> None:
        self.failures.append(failure)

    def failures_of(self, uids: list[str]) -> list[dict[str, Any]]:
        """The recorded failures of these prompt uids (the trainer names them when a whole step failed)."""
        wanted = set(uids)
        return [f for f in self.failures if f.get("uid") in wanted]

    def unread_failures(self) -> list[dict[str, Any]]:
        """The failures recorded since the trainer last popped them (this training step's, on the V1 trainer)."""
        return list(self.failures)

    def pop_failures(self) -> list[dict[str, Any]]:
        failures, self.failures = self.failures, []
        return failures

    def begin_validation(self, expected: int) -> None:
        self.validation_records, self.validation_expected = [], expected

    def record_validation(self, record: dict[str, Any]) -> None:
        self.validation_records.append(record)

    def validation_progress(self) -> dict[str, int]:
        """Trajectories recorded so far, how many are expected, and how many were correct."""
        correct = sum(bool(r.get("correct")) for r in self.validation_records)
        return {"done": len(self.validation_records), "expected": self.validation_expected, "correct": correct}

    def pop_validation_records(self) -> list[dict[str, Any]]:
        records, self.validation_records, self.validation_expected = self.validation_records, [], 0
        return records


def state_actor() -> ray.actor.ActorHandle:
    """The named state actor, created by whoever asks first (trainer or rollout worker).

    Not detached on purpose: it lives while a handle does (the trainer's and the workers'), so a new run on
    the same Ray cluster never warm-starts from a previous run's cache; resume restores it from the checkpoint.
    """
    return (
        ray.remote(ActGuideState)
        .options(name=STATE_ACTOR_NAME, get_if_exists=True, num_cpus=0, max_concurrency=64)
        .remote()
    )
