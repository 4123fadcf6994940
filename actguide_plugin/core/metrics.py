"""Diagnostics the paper reports, computed from the search outcomes of one training batch.

All metric names are relative (the verl glue prefixes ``actguide/``). Accuracies of unguided and guided
samples are kept apart, never mixed into one "accuracy": a rising guided accuracy says nothing about the
policy we evaluate (which is always unguided).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from actguide_plugin.core.search import GroupOutcome, GroupStatus

RATIO_BINS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def _has_signal(rewards: Sequence[float]) -> bool:
    """A GRPO group yields gradient only if its rewards are not all equal."""
    return len(rewards) > 1 and max(rewards) != min(rewards)


def _unguided_group_rewards(outcome: GroupOutcome[Any], final_rewards: list[float]) -> list[float] | None:
    """Rewards of the group as it was before guidance: the unguided group if one was rolled out, the final group if
    it is unguided, else None (the prompt was only sampled with guidance)."""
    if outcome.unguided_rewards:
        return list(outcome.unguided_rewards)
    if not outcome.guided and final_rewards:
        return final_rewards
    return None


def group_metrics(outcomes: Sequence[GroupOutcome[Any]], reward: Callable[[Any], float]) -> dict[str, float]:
    """Batch-level diagnostics: hard/rescued counts, k* distribution, cost, signal before/after, accuracies."""
    total = len(outcomes)
    if total == 0:
        return {}
    hard = [o for o in outcomes if o.is_hard]
    # a task without reference actions (L = 0) cannot be guided: it is hard, but not a failed rescue
    guidable = [o for o in hard if o.num_actions > 0]
    rescued = [o for o in hard if o.status is GroupStatus.RESCUED]
    final_rewards = [[float(reward(t)) for t in o.trajectories] for o in outcomes]
    guided_rewards = [r for o, rs in zip(outcomes, final_rewards, strict=True) if o.guided for r in rs]
    # unguided accuracy: the first (unguided) group where one was rolled out, else the final unguided group
    unguided_rewards = [
        r
        for o, rs in zip(outcomes, final_rewards, strict=True)
        for r in (o.unguided_rewards or ([] if o.guided else rs))
    ]
    guided = [o for o in outcomes if o.guided and o.trajectories]
    ratios = [o.level / o.num_actions for o in guided]
    guidance_trajectories = sum(o.sampled - len(o.unguided_rewards) for o in hard)

    metrics = {
        "groups": float(total),
        "hard_groups": float(len(hard)),
        "hard_group_frac": len(hard) / total,
        "rescued_groups": float(len(rescued)),
        "hard_groups_without_actions": float(len(hard) - len(guidable)),
        "rescued_frac": len(rescued) / len(guidable) if guidable else 0.0,
        "full_failed_groups": float(sum(o.status is GroupStatus.FULL_FAILED for o in outcomes)),
        "dropped_groups": float(sum(o.dropped for o in outcomes)),
        "plan_capped_groups": float(sum(o.plan_capped for o in outcomes)),
        "guided_groups": float(len(guided)),
        "probes_per_hard": _mean([len(o.probes) for o in guidable]),
        "warm_start_frac": _mean([float(o.warm_started) for o in guidable]),
        "probe_trajectories_per_rescued": (sum(o.probe_trajectories for o in hard) / len(rescued)) if rescued else 0.0,
        "guidance_trajectories_per_rescued": guidance_trajectories / len(rescued) if rescued else 0.0,
        "reused_probe_trajectories": float(sum(o.reused for o in outcomes)),
        "trajectories_sampled": float(sum(o.sampled for o in outcomes)),
        "serial_rounds_mean": _mean([o.serial_rounds for o in outcomes]),
        "serial_rounds_max": float(max(o.serial_rounds for o in outcomes)),
        # every group is in the denominator: a dropped group (no trajectories) gives no signal
        "effective_signal_frac_after": _mean([float(_has_signal(rs)) for rs in final_rewards]),
    }
    # a mean over no samples is left out, not logged as 0: a curve would read "k* = 0" or "guided accuracy 0"
    if guided:
        metrics["level_mean"] = _mean([o.level for o in guided])
        metrics["level_ratio_mean"] = _mean(ratios)
    if guided_rewards:
        metrics["acc_guided"] = _mean(guided_rewards)
    if unguided_rewards:
        metrics["acc_unguided"] = _mean(unguided_rewards)
    before = [_unguided_group_rewards(o, rs) for o, rs in zip(outcomes, final_rewards, strict=True)]
    measured = [rs for rs in before if rs is not None]
    if measured:  # fixed-level modes roll out no unguided group for guided prompts: those are not measured
        metrics["effective_signal_frac_before"] = _mean([float(_has_signal(rs)) for rs in measured])
    for (low, high), count in zip(RATIO_BINS, ratio_histogram(ratios), strict=True):
        metrics[f"level_ratio_hist/{int(low * 100)}-{int(high * 100)}"] = float(count)
    for level, count in sorted(Counter(o.level for o in guided).items()):
        metrics[f"level_hist/{level}"] = float(count)
    return metrics


def ratio_bin(ratio: float) -> int:
    """Index of the bin of k*/L in ``RATIO_BINS``; bins are (low, high], the first also takes 0."""
    return next(i for i, (_, high) in enumerate(RATIO_BINS) if ratio <= high + 1e-12)


def ratio_histogram(ratios: Sequence[float]) -> list[int]:
    """Counts per bin of k*/L (:func:`ratio_bin`)."""
    counts = [0] * len(RATIO_BINS)
    for ratio in ratios:
        counts[ratio_bin(ratio)] += 1
    return counts
