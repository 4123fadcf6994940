"""The ``actguide/*`` step metrics the trainer logs next to verl's own.

Two sources: the search summaries the rollout workers recorded in the state actor this step
(:func:`search_metrics`, computed by :func:`actguide_plugin.core.metrics.group_metrics`), and the loss's summed
statistics, which verl's actor reports under ``actor/actguide/...`` (:func:`loss_metrics`).

verl 0.9.1 API relied on: the actor update's metrics in the trainer's ``metrics`` dict, prefixed ``actor/``; a
``Metric`` with ``AggregationType.SUM`` arrives as Σ over micro-batches, averaged over data-parallel ranks and
over mini-batches. Numerator and denominator of each ratio are scaled alike, so their quotient is exact.
"""

from __future__ import annotations

from typing import Any

import ray

from actguide_plugin.core.metrics import group_metrics
from actguide_plugin.core.search import GroupOutcome
from actguide_plugin.names import METRIC_PREFIX
from actguide_plugin.verl_glue.group import NOISE_FIELDS
from actguide_plugin.verl_glue.loss import SHIFT_BUCKETS, SHIFT_PREFIX, SOURCES


def search_metrics(state: Any) -> dict[str, float]:
    """Diagnostics of the groups decided since the last call (drains the state actor's summaries and failures).

    ``failed_groups`` counts groups that produced no outcome (an error in a rollout, a tool, the reward or the
    row), ``bad_rows`` those of them whose dataset row is unusable; each was logged once with the row's name.
    """
    summaries = ray.get(state.pop_summaries.remote())
    failures = ray.get(state.pop_failures.remote())
    extra = ("global_steps", *NOISE_FIELDS)
    outcomes = [GroupOutcome.from_summary({k: v for k, v in s.items() if k not in extra}) for s in summaries]
    metrics = {METRIC_PREFIX + k: v for k, v in group_metrics(outcomes, float).items()}
    changed, clean = (sum(s.get(field, 0) for s in summaries) for field in NOISE_FIELDS)
    if changed:  # only when actguide.action_noise is on
        metrics[METRIC_PREFIX + "action_noise_changed_frac"] = changed / max(clean, 1)
    metrics[METRIC_PREFIX + "failed_groups"] = float(len(failures))
    metrics[METRIC_PREFIX + "bad_rows"] = float(sum(f["kind"] == "bad_row" for f in failures))
    return metrics


def loss_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Turn the loss's ``actor/actguide/...`` sums into ``actguide/...`` means (popping the sums).

    Per source (guided / unguided): ``{source}_pg_clipfrac``, ``{source}_pg_clipfrac_lower``, ``{source}_ratio_mean``
    and ``{source}_tokens``. Δ of guided rows with response tokens: ``offpolicy_shift_mean``, ``offpolicy_shift_var``,
    and per level k / k-over-L bucket ``offpolicy_shift/{bucket}/{mean,var,rows}``. The counts (tokens, rows) are
    per mini-batch and data-parallel rank, as verl's SUM metrics arrive; buckets without rows are not logged.
    Δ compares the guided row's old log-probs with the numerator's: with ``ratio_context=guided`` (no prompt swap)
    both are on the guided prompt, so Δ is ≈ 0 by construction there and measures only the drift of θ within a step.
    """
    sums = {key[len("actor/" + METRIC_PREFIX) :]: float(metrics.pop(key)) for key in _loss_keys(metrics)}
    out: dict[str, float] = {}
    for source in SOURCES:
        tokens = sums.get(f"{source}_tokens", 0.0)
        if tokens > 0:
            out[f"{source}_pg_clipfrac"] = sums[f"{source}_clipped_tokens"] / tokens
            out[f"{source}_pg_clipfrac_lower"] = sums[f"{source}_clipped_lower_tokens"] / tokens
            out[f"{source}_ratio_mean"] = sums[f"{source}_ratio_sum"] / tokens
            out[f"{source}_tokens"] = tokens
    shift = SHIFT_PREFIX[len(METRIC_PREFIX) :]
    for bucket in SHIFT_BUCKETS:
        rows = sums.get(f"{shift}{bucket}/rows", 0.0)
        if rows <= 0:
            continue
        mean = sums[f"{shift}{bucket}/sum"] / rows
        var = max(sums[f"{shift}{bucket}/sqsum"] / rows - mean**2, 0.0)
        if bucket == "all":
            out["offpolicy_shift_mean"], out["offpolicy_shift_var"] = mean, var
        else:
            out.update({f"{shift}{bucket}/mean": mean, f"{shift}{bucket}/var": var, f"{shift}{bucket}/rows": rows})
    return {METRIC_PREFIX + key: value for key, value in out.items()}


def _loss_keys(metrics: dict[str, Any]) -> list[str]:
    return [key for key in metrics if key.startswith("actor/" + METRIC_PREFIX)]
