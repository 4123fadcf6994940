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
Used through plain ``ppo_loss`` (no flag in the batch), ``actguide`` treats every row as unguided and is
then identical to verl's vanilla PPO loss.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss
from verl.workers.utils.losses import ppo_loss

from actguide_plugin.core.objective import ObjectiveConfig, actguide_token_losses, clip_diagnostics, sequence_shift
from actguide_plugin.names import IS_GUIDED_FIELD, LOSS_NAME, METRIC_PREFIX


@dataclass(frozen=True)
class _MicroBatchFlags:
    is_guided: torch.Tensor  # [batch] bool
    objective: ObjectiveConfig


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
    batch = old_log_prob.shape[0]
    if flags is None:
        flags = _MicroBatchFlags(
            is_guided=torch.zeros(batch, dtype=torch.bool, device=log_prob.device),
            objective=objective_from_actor_config(config),
        )
    is_guided = flags.is_guided.to(log_prob.device)
    losses, ratio = actguide_token_losses(log_prob, old_log_prob, advantages, is_guided, flags.objective)
    if rollout_is_weights is not None:
        losses = losses * rollout_is_weights
    pg_loss = agg_loss(
        loss_mat=losses, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info
    )
    return pg_loss, _loss_metrics(ratio, log_prob, old_log_prob, response_mask, is_guided, flags)


def _loss_metrics(
    ratio: torch.Tensor,
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    response_mask: torch.Tensor,
    is_guided: torch.Tensor,
    flags: _MicroBatchFlags,
) -> dict[str, float]:
    """verl's usual clip metrics over all tokens, plus the same split by guided / unguided rows.

    The off-policy shift Δ = Σ_t [log π_old(y_t|x,g) − log π_θ(y_t|x)] is logged per guided row; it equals
    the paper's Δ on the first (on-policy) update of a step, when θ is still θ_old.
    """
    with torch.no_grad():
        mask = response_mask.bool()
        metrics: dict[str, float] = {}
        overall = clip_diagnostics(ratio, log_prob, old_log_prob, mask, flags.objective)
        metrics["actor/ppo_kl"] = overall.get("ppo_kl", 0.0)
        for name, rows in (("guided", is_guided), ("unguided", ~is_guided)):
            part = clip_diagnostics(ratio, log_prob, old_log_prob, mask & rows.unsqueeze(-1), flags.objective)
            for key, value in part.items():
                metrics[f"{METRIC_PREFIX}{name}_{key}"] = value
        if bool(is_guided.any()):
            shift = sequence_shift(old_log_prob, log_prob, mask)[is_guided]  # [guided rows]
            metrics[METRIC_PREFIX + "offpolicy_shift_mean"] = float(shift.mean())
            metrics[METRIC_PREFIX + "offpolicy_shift_sqmean"] = float((shift**2).mean())
    return metrics


def actguide_ppo_loss(
    config: Any, model_output: dict, data: Any, dp_group: Any = None, *, objective: ObjectiveConfig | None = None
) -> tuple[torch.Tensor, dict]:
    """Drop-in replacement for verl's ``ppo_loss`` that makes the guided flag visible to the loss.

    Build it with :func:`make_actguide_loss_fn` and install it with ``actor_rollout_wg.set_loss_fn``.
    """
    batch = data["advantages"].shape[0]
    is_guided = _per_sample(data, IS_GUIDED_FIELD, batch).bool()
    token = _flags.set(_MicroBatchFlags(is_guided, objective_from_actor_config(config, objective)))
    try:
        return ppo_loss(config, model_output, data, dp_group=dp_group)
    finally:
        _flags.reset(token)


def make_actguide_loss_fn(actor_config: Any, objective: ObjectiveConfig | None = None) -> Callable[..., Any]:
    """The loss function for ``set_loss_fn`` (picklable: it travels to the Ray actor workers).

    verl's configs are frozen dataclasses, so the policy loss is selected by the user's config
    (``actor_rollout_ref.actor.policy_loss.loss_mode=actguide``, set by the recipe yaml), not patched here.
    """
    mode = actor_config.policy_loss.get("loss_mode", "vanilla")
    if mode != LOSS_NAME:
        raise ValueError(
            f"actor_rollout_ref.actor.policy_loss.loss_mode is {mode!r}; ActGuide-RL needs {LOSS_NAME!r} "
            "(the recipe config sets it; keep it when you override the actor config)"
        )
    return functools.partial(actguide_ppo_loss, config=actor_config, objective=objective)


def _per_sample(data: Any, key: str, batch: int) -> torch.Tensor:
    """A [batch] field of the micro-batch, zeros if the trainer did not write it (plain GRPO rows)."""
    value = data.get(key, None) if hasattr(data, "get") else None
    if value is None:
        return torch.zeros(batch)
    value = torch.as_tensor(value).reshape(-1)
    if value.numel() != batch:
        raise ValueError(f"micro-batch field {key!r} has {value.numel()} values for {batch} samples")
    return value
