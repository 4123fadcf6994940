"""A training step in which no sampled group produced a trajectory: refill after drops, a clear error otherwise.

verl's sync replay buffer hands the trainer the terminal groups of a step; when none of them has a trajectory —
every group failed, or ``actguide.on_full_failure=drop`` dropped them all — it raises "Sync replay buffer selected
terminal groups with no materializable trajectories", which says nothing about why. This module wraps its
``sample``:

* groups that *failed* (the rollout workers recorded each one in the state actor with its row and cause): the
  step stops with an error naming how many failed and the first causes;
* groups that were only *dropped*: they are cleared and a fresh batch of prompts is generated, as verl's DAPO
  filter refills the groups it discards, at most :data:`MAX_REFILLS` times in a row (then an error suggests
  ``on_full_failure=unguided``/``keep``: the data is beyond reach even with the full plan).

verl 0.9.1 APIs relied on (``verl/trainer/ppo/v1/replay_buffer.py``, ``trainer_base.py``): ``ReplayBuffer.sample
(global_steps, partition_id, batch_size)`` and its error text, its ``finished_keys`` / ``failure_keys`` (prompt uids
per partition) and ``partitions`` (trajectory keys ``{uid}_{session}_{index}``) snapshots, ``_clear_groups
(partition_id, uids)``, and the trainer's ``_add_batch_to_generate()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray

from actguide_plugin.logs import get_logger

logger = get_logger(__name__)

EMPTY_STEP_ERROR = "no materializable trajectories"  # verl's message when no selected group has a trajectory
MAX_REFILLS = 3
MAX_CAUSES_SHOWN = 3


class EmptyStepError(RuntimeError):
    """No group of a training step produced a trajectory; the message says why."""


def empty_groups(replay_buffer: Any, partition_id: str) -> set[str]:
    """Terminal prompt uids (finished or failed) with no trajectory in the replay buffer's last snapshot."""
    terminal = replay_buffer.finished_keys[partition_id] | replay_buffer.failure_keys[partition_id]
    materializable = {key.split("_")[0] for key in replay_buffer.partitions[partition_id]}
    return terminal - materializable


def explain_failures(failures: list[dict[str, Any]], empty: int, global_steps: int) -> str:
    """The error of a step whose groups failed: counts, then the first causes with their rows."""
    bad_rows = sum(f["kind"] == "bad_row" for f in failures)
    shown = "; ".join(f"{f['row']}: {f['cause']}" for f in failures[:MAX_CAUSES_SHOWN])
    more = f" (and {len(failures) - MAX_CAUSES_SHOWN} more)" if len(failures) > MAX_CAUSES_SHOWN else ""
    return (
        f"ActGuide: no group of training step {global_steps} produced a trajectory: {len(failures)} of {empty} "
        f"groups failed ({bad_rows} bad data rows), the others were dropped. First causes: {shown}{more}"
    )


def guard_empty_steps(replay_buffer: Any, state: Any, refill: Callable[[], Any]) -> None:
    """Wrap ``replay_buffer.sample`` of the training partition (see the module docstring); ``refill`` submits one
    more batch of prompts for generation."""
    sample = replay_buffer.sample

    def guarded_sample(global_steps: int, partition_id: str, batch_size: int):
        refills = 0
        while True:
            try:
                return sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
            except RuntimeError as err:
                if partition_id == "val" or EMPTY_STEP_ERROR not in str(err):
                    raise
                empty = empty_groups(replay_buffer, partition_id)
                failures = ray.get(state.failures_of.remote(sorted(empty)))
                if failures:
                    raise EmptyStepError(explain_failures(failures, len(empty), global_steps)) from err
                if refills == MAX_REFILLS:
                    raise EmptyStepError(
                        f"ActGuide: every group of {MAX_REFILLS + 1} batches in a row at training step {global_steps} "
                        "was dropped (even the full plan failed, actguide.on_full_failure=drop): the data is out of "
                        "reach for this policy; use actguide.on_full_failure=unguided or keep"
                    ) from err
            logger.warning(
                f"every group sampled for training step {global_steps} was dropped ({len(empty)} groups, "
                "actguide.on_full_failure=drop): generating a fresh batch of prompts for this step"
            )
            replay_buffer._clear_groups(partition_id, empty)
            refill()
            refills += 1

    replay_buffer.sample = guarded_sample
