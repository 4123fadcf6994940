"""The ActGuide objective (paper §3.3): PPO-clip over a batch that mixes unguided and guided trajectories.

For response token y_t of a trajectory (tool-output tokens are masked out of the loss):

    unguided:  r_t = π_θ(y_t | x, y_<t) / π_old(y_t | x, y_<t)
    guided:    r_t = π_θ(y_t | x, y_<t) / π_old(y_t | x ⊕ G_k, y_<t)

The numerator is always evaluated on the unguided prompt x (the trainer swaps guided rows back to their
unguided view before the update), so the skill shown by the plan is internalized by the unguided policy.
The denominator is the log-prob under the prompt the trajectory was sampled with, which the trainer
recomputes on the guided view. Hence the math here only sees ``logp_new`` (unguided view), ``logp_old``
(sampling view) and ``is_guided``, which selects the clipping rule for guided tokens:

* ``same`` — the PPO clip + dual clip used for unguided tokens (paper default);
* ``cap`` — no trust region, the ratio is only capped at ``guided_ratio_cap``;
* ``shaping`` — LUFFY-style policy shaping, the ratio enters as r / (r + γ);
* ``cispo`` — the clipped ratio is a stop-gradient weight on log π_θ, within PPO's trust-region mask (CISPO in the
  unified form of MiniMax-M1, arXiv 2506.13585), so a positive-advantage guided token the unguided policy finds
  unlikely still gets the gradient A·w·∇log π_θ with w ≥ 1 − ε_low.

Why ``cispo`` exists: under ``same``, ``cap`` and ``shaping`` a positive-advantage token's gradient is
A·r·∇log π_θ (times γ/(r+γ)² for shaping), which vanishes when the unguided policy is confidently wrong about the
token the plan made likely (r ≪ 1). The barrier experiment measured exactly that on its warm-started model: the
procedure's tokens sit at log r ≈ −9 to −24 (docs/barrier.md).

Pure torch, no verl: the verl glue (:mod:`actguide_plugin.verl_glue.loss`) calls these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

TokenLoss = Callable[[torch.Tensor, torch.Tensor, "ObjectiveConfig"], torch.Tensor]  # (log-ratio, A, cfg) -> loss
# (ratio, advantages, cfg) -> (clipped, clipped_lower), both bool [batch, response_len]
ClipMasks = Callable[[torch.Tensor, torch.Tensor, "ObjectiveConfig"], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class GuidedTokenRule:
    """A clipping rule for guided tokens: its per-token loss, and which tokens it clips (for ``pg_clipfrac``)."""

    loss: TokenLoss
    clipped: ClipMasks


GUIDED_TOKEN_RULES: dict[str, GuidedTokenRule] = {}


def register_guided_token_loss(name: str, clipped: ClipMasks) -> Callable[[TokenLoss], TokenLoss]:
    def decorator(fn: TokenLoss) -> TokenLoss:
        GUIDED_TOKEN_RULES[name] = GuidedTokenRule(fn, clipped)
        return fn

    return decorator


@dataclass(frozen=True)
class ObjectiveConfig:
    """clip_low/clip_high: PPO ε; dual_clip_c: dual-clip bound for negative advantages (> 1);
    guided_clip: ``same`` | ``cap`` | ``shaping`` | ``cispo``; guided_ratio_cap: cap for ``cap``;
    shaping_gamma: γ for ``shaping``."""

    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip_c: float = 3.0
    guided_clip: str = "same"
    guided_ratio_cap: float = 5.0
    shaping_gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.guided_clip not in GUIDED_TOKEN_RULES:
            raise ValueError(f"actguide.guided_clip={self.guided_clip!r} is not one of {sorted(GUIDED_TOKEN_RULES)}")
        if self.dual_clip_c <= 1.0:
            raise ValueError(f"actguide.dual_clip_c must be > 1, got {self.dual_clip_c}")
        if self.clip_low < 0 or self.clip_high < 0:
            raise ValueError(f"PPO clip ranges must be >= 0, got low={self.clip_low}, high={self.clip_high}")
        if self.guided_ratio_cap <= 0 or self.shaping_gamma <= 0:
            raise ValueError("actguide.guided_ratio_cap and actguide.shaping_gamma must be > 0")


def _exp_clamped(log_ratio: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp(log_ratio, min=-20.0, max=20.0))


def token_ratio(logp_new: torch.Tensor, logp_old: torch.Tensor) -> torch.Tensor:
    """exp(log π_θ − log π_old), with the log-ratio clamped to ±20 for numerical safety."""
    return _exp_clamped(logp_new - logp_old)


def ppo_clip_token_loss(log_ratio: torch.Tensor, advantages: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    """max(−A·r, −A·clip(r, 1−ε_low, 1+ε_high)), and for A < 0 at most −A·c (dual clip)."""
    ratio = _exp_clamped(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cfg.clip_low, 1.0 + cfg.clip_high)
    pessimistic = torch.maximum(unclipped, clipped)
    dual = torch.minimum(pessimistic, -advantages * cfg.dual_clip_c)
    return torch.where(advantages < 0, dual, pessimistic)


def ppo_clip_masks(
    ratio: torch.Tensor, advantages: torch.Tensor, cfg: ObjectiveConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's ``pg_clipfrac`` / ``pg_clipfrac_lower`` tokens: where the clipped term wins given the sign of A
    (the trust region is active), and where the dual clip bounds the loss of a negative advantage."""
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cfg.clip_low, 1.0 + cfg.clip_high)
    pessimistic = torch.maximum(unclipped, clipped)
    return clipped > unclipped, (pessimistic > -advantages * cfg.dual_clip_c) & (advantages < 0)


register_guided_token_loss("same", ppo_clip_masks)(ppo_clip_token_loss)


def _ratio_cap_masks(
    ratio: torch.Tensor, advantages: torch.Tensor, cfg: ObjectiveConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cap cuts the gradient of tokens whose ratio exceeds it, whatever the advantage's sign."""
    return ratio > cfg.guided_ratio_cap, torch.zeros_like(ratio, dtype=torch.bool)


def _never_clipped(
    ratio: torch.Tensor, advantages: torch.Tensor, cfg: ObjectiveConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros_like(ratio, dtype=torch.bool), torch.zeros_like(ratio, dtype=torch.bool)


@register_guided_token_loss("cap", _ratio_cap_masks)
def capped_ratio_token_loss(log_ratio: torch.Tensor, advantages: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    return -advantages * torch.clamp(_exp_clamped(log_ratio), max=cfg.guided_ratio_cap)


@register_guided_token_loss("shaping", _never_clipped)
def shaped_ratio_token_loss(log_ratio: torch.Tensor, advantages: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    ratio = _exp_clamped(log_ratio)
    return -advantages * ratio / (ratio + cfg.shaping_gamma)


def _trust_region_masks(
    ratio: torch.Tensor, advantages: torch.Tensor, cfg: ObjectiveConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens outside PPO's trust region, which ``cispo`` masks: a positive advantage above 1 + ε_high, a negative
    one below 1 − ε_low (the policy already moved far enough that way) — PPO's own clipped tokens. No dual clip."""
    return ppo_clip_masks(ratio, advantages, cfg)[0], torch.zeros_like(ratio, dtype=torch.bool)


@register_guided_token_loss("cispo", _trust_region_masks)
def clipped_weight_token_loss(log_ratio: torch.Tensor, advantages: torch.Tensor, cfg: ObjectiveConfig) -> torch.Tensor:
    """−M·A·sg(clip(r, 1−ε_low, 1+ε_high))·exp(log r − sg(log r)): the value is −M·A·w, the gradient −M·A·w·∇log π_θ.

    M is PPO's trust-region mask (MiniMax-M1's unified CISPO form), so a guided token keeps the non-vanishing
    weight where PPO would let it move, and a token the unguided policy already finds far less likely than the
    guided one is not pushed further down by a failed trajectory. The log-ratio is not clamped on the gradient
    path: a token at log r = −30 keeps its gradient.
    """
    ratio = _exp_clamped(log_ratio)
    weight = torch.clamp(ratio, 1.0 - cfg.clip_low, 1.0 + cfg.clip_high).detach()
    inside = ~_trust_region_masks(ratio, advantages, cfg)[0]
    return -advantages * weight * inside * torch.exp(log_ratio - log_ratio.detach())


def actguide_token_losses(
    logp_new: torch.Tensor,  # [batch, response_len], log π_θ(y_t | x, y_<t) on the unguided view
    logp_old: torch.Tensor,  # [batch, response_len], log π_old on the view the trajectory was sampled with
    advantages: torch.Tensor,  # [batch, response_len]
    is_guided: torch.Tensor,  # [batch] bool
    cfg: ObjectiveConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token loss and ratio, both [batch, response_len]; aggregate with :func:`token_mean`."""
    log_ratio = logp_new - logp_old
    ratio = _exp_clamped(log_ratio)
    unguided_loss = ppo_clip_token_loss(log_ratio, advantages, cfg)
    if cfg.guided_clip == "same" or not bool(is_guided.any()):
        return unguided_loss, ratio
    guided_loss = GUIDED_TOKEN_RULES[cfg.guided_clip].loss(log_ratio, advantages, cfg)
    return torch.where(is_guided.bool().unsqueeze(-1), guided_loss, unguided_loss), ratio


def token_mean(
    loss_mat: torch.Tensor, mask: torch.Tensor, global_num_tokens: float | torch.Tensor | None = None, dp_size: int = 1
) -> torch.Tensor:
    """Σ loss·mask / (tokens in the global batch) · dp_size: every token weighs the same across
    micro-batches and data-parallel ranks (gradient averaging over ranks divides by dp_size again)."""
    if global_num_tokens is None:
        if dp_size > 1:
            raise ValueError("token_mean over several ranks needs the global number of tokens")
        global_num_tokens = mask.sum().clamp(min=1)
    return (loss_mat * mask).sum() / global_num_tokens * dp_size


def clip_masks(
    ratio: torch.Tensor,  # [batch, response_len]
    advantages: torch.Tensor,  # [batch, response_len]
    is_guided: torch.Tensor,  # [batch] bool
    cfg: ObjectiveConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens whose loss each row's rule clips, and those the dual clip bounds; both bool [batch, response_len].

    Unguided rows follow verl's ``pg_clipfrac`` / ``pg_clipfrac_lower`` definitions; guided rows their rule's.
    """
    clipped, lower = ppo_clip_masks(ratio, advantages, cfg)
    if cfg.guided_clip == "same" or not bool(is_guided.any()):
        return clipped, lower
    guided_clipped, guided_lower = GUIDED_TOKEN_RULES[cfg.guided_clip].clipped(ratio, advantages, cfg)
    rows = is_guided.bool().unsqueeze(-1)
    return torch.where(rows, guided_clipped, clipped), torch.where(rows, guided_lower, lower)


def sequence_shift(logp_guided: torch.Tensor, logp_unguided: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Off-policy shift per trajectory (paper Finding 2): Δ = Σ_t [log π(y_t|x,g,y_<t) − log π(y_t|x,y_<t)].

    Shapes [batch, response_len] → [batch]. Large Δ means the guided sample is unlikely without the plan.
    """
    return ((logp_guided - logp_unguided) * mask).sum(dim=-1)
