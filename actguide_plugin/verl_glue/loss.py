"""verl glue for the ActGuide objective (math in :mod:`actguide_plugin.core.objective`).

verl 0.9.1 APIs relied on:

* ``verl.trainer.ppo.core_algos.register_policy_loss`` and the ``PolicyLossFn`` signature
  ``(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights)``;
  ``agg_loss`` for the aggregation (token-mean over the global batch via ``config.global_batch_info``).
* ``verl.workers.utils.losses.ppo_loss(config, model_output, data, dp_group)``: the actor's loss wrapper,
  installed with ``actor_rollout_wg.set_loss_fn``. It selects a fixed list of fields from the micro-batch
  (``response_mask``, ``old_log_probs``, ``advantages``, ...), so a registered policy loss cannot see a
  per-sample flag.

:func:`actguide_ppo_loss` is our replacement for ``ppo_loss``: it reads the per-sample guided flag and
level from the micro-batch (fields the trainer writes), hands them to the ``actguide`` policy loss through
a context variable for the duration of the call, and delegates the rest (log-prob un-padding, entropy and
KL terms, global-batch bookkeeping) to verl's own ``ppo_loss`` so those stay exactly verl's semantics.
Called through verl's plain ``ppo_loss`` (no wrapper, so no flag), the ``actguide`` policy loss raises instead of
training guided rows as unguided; with ``require_flags`` (guidance on) a micro-batch that lacks the trainer's
per-sample fields raises too, naming the field: a data plane that ships only declared fields (verl's ``neo`` branch
does) would otherwise drop them without a trace.

Metrics: verl wraps a policy loss's metrics as per-micro-batch means, which are biased when micro-batches differ in
size. The split statistics (clipped tokens, ratio, the off-policy shift Δ) are therefore returned by
:func:`actguide_ppo_loss` as sums and counts with verl's ``AggregationType.SUM`` (``verl.utils.metric.Metric``);
:func:`actguide_plugin.verl_glue.metrics.loss_metrics` divides them once per step, which is exact. Rows without
response tokens (verl's padding rows) count nowhere.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss
from verl.utils.metric import AggregationType, Metric
from verl.workers.utils.losses import ppo_loss

from actguide_plugin.core.metrics import RATIO_BINS, ratio_bin
from actguide_plugin.core.objective import ObjectiveConfig, actguide_token_losses, clip_masks, sequence_shift
from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD, LOSS_NAME, METRIC_PREFIX, NUM_ACTIONS_FIELD

SOURCES = ("guided", "unguided")
SOURCE_SUMS = ("tokens", "clipped_tokens", "clipped_lower_tokens", "ratio_sum")  # {METRIC_PREFIX}{source}_{sum}
SHIFT_PREFIX = METRIC_PREFIX + "offpolicy_shift/"  # Δ sums: {SHIFT_PREFIX}{bucket}/{rows,sum,sqsum}
SHIFT_SUMS = ("rows", "sum", "sqsum")
SHIFT_LEVELS = 16  # Δ per level k = 1..15, and k >= 16 in one bucket
# verl's data-parallel aggregation needs the same metric keys from every micro-batch on every rank: fixed buckets
SHIFT_BUCKETS = (
    "all",
    *(f"level_{k}" for k in range(1, SHIFT_LEVELS)),
    f"level_{SHIFT_LEVELS}+",
    *(f"ratio_{int(low * 100)}-{int(high * 100)}" for low, high in RATIO_BINS),
)


def _zero_sums() -> dict[str, float]:
    """Every summed statistic of one micro-batch, all zero."""
    keys = [f"{METRIC_PREFIX}{source}_{name}" for source in SOURCES for name in SOURCE_SUMS]
    keys += [f"{SHIFT_PREFIX}{bucket}/{name}" for bucket in SHIFT_BUCKETS for name in SHIFT_SUMS]
    return dict.fromkeys(keys, 0.0)


@dataclass(frozen=True)
class _MicroBatchFlags:
    is_guided: torch.Tensor  # [batch] bool
    level: torch.Tensor  # [batch] int, guidance level k (0 = unguided)
    num_actions: torch.Tensor  # [batch] int, the task's L (0 = unknown)
    objective: ObjectiveConfig
    sums: dict[str, float] = field(default_factory=_zero_sums)  # filled by the policy loss


_flags: contextvars.ContextVar[_MicroBatchFlags | None] = contextvars.ContextVar("actguide_flags", default=None)


def objective_from_actor_config(config: Any, base: ObjectiveConfig | None = None) -> ObjectiveConfig:
    """PPO ε and dual-clip c come from verl's actor config keys; guided-token options from ``base``."""
    base = base or ObjectiveConfig()
    clip = config.clip_ratio
    low = config.clip_ratio_low if config.clip_ratio_low is not None else clip
    high = config.clip_ratio_high if config.clip_ratio_high is not None else clip
    return dataclasses.replace(base, clip_low=low, clip_high=high, dual_clip_c=config.get("clip_ratio_c", 3.0))


@register_policy_loss(LOSS_NAME)
def actguide_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The ActGuide policy loss in verl's registry (``actor.policy_loss.loss_mode=actguide``)."""
    if config is None:
        raise ValueError("the actguide policy loss needs the actor config (clip ranges, global batch info)")
    flags = _flags.get()
    if flags is None:  # verl's own ppo_loss called us: nobody read the guided flag, every row would count as unguided
        raise RuntimeError(
            f"the {LOSS_NAME!r} policy loss ran without ActGuide's loss wrapper, so it cannot see which rows were "
            "guided and would train every guided row as unguided; the trainer must install it with "
            "actor_rollout_wg.set_loss_fn(make_actguide_loss_fn(...)) (actguide-train's trainer does)"
        )
    is_guided = flags.is_guided.to(log_prob.device)
    losses, ratio = actguide_token_losses(log_prob, old_log_prob, advantages, is_guided, flags.objective)
    if rollout_is_weights is not None:
        losses = losses * rollout_is_weights
    pg_loss = agg_loss(
        loss_mat=losses, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info
    )
    with torch.no_grad():
        mask = response_mask.bool()
        clipped, clipped_lower = clip_masks(ratio, advantages, is_guided, flags.objective)
        _add_source_sums(flags.sums, ratio, clipped, clipped_lower, mask, is_guided)
        _add_shift_sums(flags.sums, sequence_shift(old_log_prob, log_prob, mask), mask, is_guided, flags)
        tokens = mask.sum().clamp(min=1)
        metrics = {  # verl's names and per-micro-batch means, over all rows
            "actor/pg_clipfrac": float((clipped & mask).sum() / tokens),
            "actor/pg_clipfrac_lower": float((clipped_lower & mask).sum() / tokens),
            "actor/ppo_kl": float(((old_log_prob - log_prob) * mask).sum() / tokens),
        }
    return pg_loss, metrics


def _add_source_sums(
    sums: dict[str, float],
    ratio: torch.Tensor,
    clipped: torch.Tensor,
    clipped_lower: torch.Tensor,
    mask: torch.Tensor,
    is_guided: torch.Tensor,
) -> None:
    """Token counts, clipped tokens and ratio sums of guided and of unguided rows."""
    for source, rows in zip(SOURCES, (is_guided, ~is_guided), strict=True):
        tokens = mask & rows.unsqueeze(-1)
        values = (tokens.sum(), (clipped & tokens).sum(), (clipped_lower & tokens).sum(), (ratio * tokens).sum())
        for name, value in zip(SOURCE_SUMS, values, strict=True):
            sums[f"{METRIC_PREFIX}{source}_{name}"] += float(value)


def _add_shift_sums(
    sums: dict[str, float], shift: torch.Tensor, mask: torch.Tensor, is_guided: torch.Tensor, flags: _MicroBatchFlags
) -> None:
    """Δ of guided rows with response tokens: rows, Σ Δ and Σ Δ², overall, per level k and per k/L bucket."""
    rows = (is_guided & mask.any(dim=-1)).nonzero().flatten().tolist()
    levels, num_actions = flags.level.tolist(), flags.num_actions.tolist()
    for i in rows:
        level = int(levels[i])
        buckets = ["all"]
        if level > 0:  # known (the rollout writes it), and then its k/L bucket if L is known
            buckets.append(f"level_{level}" if level < SHIFT_LEVELS else f"level_{SHIFT_LEVELS}+")
            if num_actions[i] > 0:
                buckets.append(SHIFT_BUCKETS[SHIFT_LEVELS + 1 + ratio_bin(min(level / num_actions[i], 1.0))])
        value = float(shift[i])
        for bucket in buckets:
            for name, term in zip(SHIFT_SUMS, (1.0, value, value * value), strict=True):
                sums[f"{SHIFT_PREFIX}{bucket}/{name}"] += term


def actguide_ppo_loss(
    config: Any,
    model_output: dict,
    data: Any,
    dp_group: Any = None,
    *,
    objective: ObjectiveConfig | None = None,
    require_flags: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Drop-in replacement for verl's ``ppo_loss`` that makes the guided flag visible to the loss.

    Build it with :func:`make_actguide_loss_fn` and install it with ``actor_rollout_wg.set_loss_fn``.
    ``require_flags``: the per-sample fields must be in the micro-batch (guidance is on); else absent ones are 0.
    """
    batch = data["advantages"].shape[0]
    flags = _MicroBatchFlags(
        is_guided=_per_sample(data, IS_GUIDED_FIELD, batch, require_flags).bool(),
        level=_per_sample(data, LEVEL_FIELD, batch, require_flags).long(),
        num_actions=_per_sample(data, NUM_ACTIONS_FIELD, batch, require_flags).long(),
        objective=objective_from_actor_config(config, objective),
    )
    token = _flags.set(flags)
    try:
        loss, metrics = ppo_loss(config, model_output, data, dp_group=dp_group)
    finally:
        _flags.reset(token)
    metrics.update({key: Metric(AggregationType.SUM, value) for key, value in flags.sums.items()})
    return loss, metrics


def make_actguide_loss_fn(
    actor_config: Any, objective: ObjectiveConfig | None = None, require_flags: bool = True
) -> Callable[..., Any]:
    """The loss function for ``set_loss_fn`` (picklable: it travels to the Ray actor workers).

    verl's configs are frozen dataclasses, so the policy loss is selected by the user's config
    (``actor_rollout_ref.actor.policy_loss.loss_mode=actguide``, set by the recipe yaml), not patched here.
    ``require_flags`` (the trainer passes ``actguide.mode != "off"``): a micro-batch without the guided flag,
    level or L is an error, never a batch of unguided rows.
    """
    mode = actor_config.policy_loss.get("loss_mode", "vanilla")
    if mode != LOSS_NAME:
        raise ValueError(
            f"actor_rollout_ref.actor.policy_loss.loss_mode is {mode!r}; ActGuide-RL needs {LOSS_NAME!r} "
            "(the recipe config sets it; keep it when you override the actor config)"
        )
    return functools.partial(actguide_ppo_loss, config=actor_config, objective=objective, require_flags=require_flags)


_LIKELY_CAUSE = (
    "the trainer writes it when it prepares the step's rows (ActGuide's trainer, _prepare_guided_rows); a data plane "
    "that ships only declared fields to the workers, or a batch re-split without it, loses it"
)


def _per_sample(data: Any, key: str, batch: int, required: bool) -> torch.Tensor:
    """A [batch] field of the micro-batch; absent: an error if ``required``, else zeros (no guidance)."""
    value = data.get(key, None) if hasattr(data, "get") else None
    if value is None:
        if required:
            raise ValueError(
                f"micro-batch field {key!r} is missing while guidance is on, so guided rows would be trained as "
                f"unguided: {_LIKELY_CAUSE}"
            )
        return torch.zeros(batch)
    value = torch.as_tensor(value).reshape(-1)
    if value.numel() != batch:
        raise ValueError(
            f"micro-batch field {key!r} has {value.numel()} values for {batch} samples: it no longer lines up with the "
            f"rows; {_LIKELY_CAUSE}"
        )
    return value
