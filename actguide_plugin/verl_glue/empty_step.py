"""Groups that produced no trajectory: replaced by fresh prompts through verl's refill, within a bound.

A training group can end with no trajectory: every rollout failed (an error, a bad data row; the rollout workers
record each in the state actor with its row and cause), or ``actguide.on_full_failure=drop`` dropped it. The V1
rollout workers publish both with prompt status ``failure``. With ``trainer.v1.sampler.sync_refill_failed_groups``
(the recipe's required layer sets it) verl's sync replay buffer evicts such groups and asks the trainer, through its
``refill_fn``, for as many fresh prompts, as its DAPO filter refills the groups it discards.

verl bounds nothing there: a dataset whose rows all fail, or a policy that even the full plan cannot rescue, would
refill forever. :func:`guard_refills` wraps ``refill_fn`` and stops a step that has replaced more than
:data:`MAX_REFILLS` batches' worth of groups, with an error that names the first failures' rows and causes, or
suggests ``on_full_failure=unguided``/``keep`` when the groups were only dropped.

verl 0.9.1 APIs relied on (``verl/trainer/ppo/v1/replay_buffer.py``, ``trainer_base.py``): the replay buffer's
``refill_fn(num_prompts)`` attribute (the trainer's ``_add_prompts_to_generate``, passed to its constructor) and
``sync_refill_failed_groups`` (from ``trainer.v1.sampler``): ``sample`` evicts the ``failure`` groups with no
trajectory and calls ``refill_fn(count)`` while the step lacks groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray

from actguide_plugin.logs import get_logger

logger = get_logger(__name__)

MAX_REFILLS = 3  # batches' worth of replaced groups one training step may ask for
MAX_CAUSES_SHOWN = 3


class EmptyStepError(RuntimeError):
    """A training step cannot be filled with groups that have trajectories; the message says why."""


def explain_failures(failures: list[dict[str, Any]], empty: int, what: str) -> str:
    """The error of a step whose ``empty`` groups had no trajectory: ``what`` happened, how many failed, the first
    causes with their rows."""
    bad_rows = sum(f["kind"] == "bad_row" for f in failures)
    shown = "; ".join(f"{f['row']}: {f['cause']}" for f in failures[:MAX_CAUSES_SHOWN])
    more = f" (and {len(failures) - MAX_CAUSES_SHOWN} more)" if len(failures) > MAX_CAUSES_SHOWN else ""
    return (
        f"ActGuide: {what}: {len(failures)} of {empty} groups failed ({bad_rows} bad data rows), the others were "
        f"dropped. First causes: {shown}{more}"
    )


def guard_refills(replay_buffer: Any, state: Any, current_step: Callable[[], int], batch_size: int) -> None:
    """Wrap ``replay_buffer.refill_fn`` (see the module docstring); ``current_step()`` is the trainer's global step,
    ``batch_size`` its prompts per step."""
    refill = replay_buffer.refill_fn
    limit = MAX_REFILLS * batch_size
    refilled = {"step": None, "prompts": 0}

    def guarded_refill(num_prompts: int):
        step = current_step()
        if refilled["step"] != step:
            refilled.update(step=step, prompts=0)
        if refilled["prompts"] + num_prompts > limit:
            failures = ray.get(state.unread_failures.remote())
            if failures:
                what = f"training step {step} lost more than {limit} groups ({MAX_REFILLS} batches' worth)"
                raise EmptyStepError(explain_failures(failures, refilled["prompts"] + num_prompts, what))
            raise EmptyStepError(
                f"ActGuide: training step {step} dropped more than {limit} groups ({MAX_REFILLS} batches' worth; "
                "even the full plan failed, actguide.on_full_failure=drop): the data is out of reach for this policy; "
                "use actguide.on_full_failure=unguided or keep"
            )
        refilled["prompts"] += num_prompts
        logger.warning(
            f"training step {step}: {num_prompts} groups produced no trajectory (dropped or failed): "
            "generating as many fresh prompts"
        )
        return refill(num_prompts)

    replay_buffer.refill_fn = guarded_refill
