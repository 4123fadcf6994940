"""The ``actguide/*`` step metrics the trainer logs next to verl's own.

Two sources: the search summaries the rollout workers recorded in the state actor this step
(:func:`search_metrics`, computed by :func:`actguide_plugin.core.metrics.group_metrics`), and the loss's
per-micro-batch statistics, which verl's actor reports under ``actor/actguide/...`` (:func:`loss_metrics`).

verl 0.9.1 API relied on: the trainer's ``metrics`` dict, where the actor update's metrics appear with the prefix
``actor/``.
"""

from __future__ import annotations

from typing import Any

import ray

from actguide_plugin.core.metrics import group_metrics
from actguide_plugin.core.search import GroupOutcome
from actguide_plugin.names import METRIC_PREFIX


def search_metrics(state: Any) -> dict[str, float]:
    """Diagnostics of the groups decided since the last call (drains the state actor's summaries and failures).

    ``failed_groups`` counts groups that produced no outcome (an error in a rollout, a tool, the reward or the
    row), ``bad_rows`` those of them whose dataset row is unusable; each was logged once with the row's name.
    """
    summaries = ray.get(state.pop_summaries.remote())
    failures = ray.get(state.pop_failures.remote())
    outcomes = [GroupOutcome.from_summary({k: v for k, v in s.items() if k != "global_steps"}) for s in summaries]
    metrics = {METRIC_PREFIX + k: v for k, v in group_metrics(outcomes, float).items()}
    metrics[METRIC_PREFIX + "failed_groups"] = float(len(failures))
    metrics[METRIC_PREFIX + "bad_rows"] = float(sum(f["kind"] == "bad_row" for f in failures))
    return metrics


def loss_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Move the loss's ``actor/actguide/...`` metrics to ``actguide/...``; Δ's mean square becomes its variance."""
    out = {}
    for key in list(metrics):
        if key.startswith("actor/" + METRIC_PREFIX):
            out[key[len("actor/") :]] = metrics.pop(key)
    mean, sqmean = (
        out.pop(METRIC_PREFIX + "offpolicy_shift_mean", None),
        out.pop(METRIC_PREFIX + "offpolicy_shift_sqmean", None),
    )
    if mean is not None and sqmean is not None:
        out[METRIC_PREFIX + "offpolicy_shift_mean"] = mean
        out[METRIC_PREFIX + "offpolicy_shift_var"] = max(sqmean - mean**2, 0.0)
    return out
