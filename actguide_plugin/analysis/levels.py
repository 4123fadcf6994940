"""Finding 2 offline: how success grows with the guidance level, and the off-policy shift Δ per level.

For each task the policy is sampled K times at every level k = 0..L (G_k, paper §3.1). The task's *minimal
sufficient level* k* is the smallest k with at least τ successes among the K samples (the rule the level search
applies to its probes; k* = 0 means the unguided policy already solves it, none means even k = L failed). Its
distribution over tasks, as k*/L, says how much guidance this model needs on these tasks.

For a guided trajectory y sampled at level k ≥ 1, the off-policy shift is
Δ = Σ_t [log π(y_t | x, G_k, y_<t) − log π(y_t | x, y_<t)] over the model's own tokens
(:func:`actguide_plugin.core.objective.sequence_shift`); its mean and variance per level show how far the
guided samples the objective trains on are from what the unguided policy would produce.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actguide_plugin.core.metrics import RATIO_BINS, ratio_bin, ratio_histogram
from actguide_plugin.core.search import SearchConfig


@dataclass(frozen=True)
class LevelSweep:
    """K samples of one task at every level 0..L: success counts and the Δ of each guided sample."""

    task_id: str
    data_source: str
    num_actions: int
    samples: int
    successes: tuple[int, ...]  # index k = 0..L
    shifts: tuple[tuple[float, ...], ...]  # index k = 0..L; level 0 has none (Δ is 0 by definition)

    def __post_init__(self) -> None:
        if len(self.successes) != self.num_actions + 1 or len(self.shifts) != self.num_actions + 1:
            raise ValueError(f"task {self.task_id!r}: need one entry per level 0..{self.num_actions}")
        if any(not 0 <= c <= self.samples for c in self.successes):
            raise ValueError(f"task {self.task_id!r}: successes {self.successes} outside [0, {self.samples}]")


def minimal_sufficient_level(successes: Sequence[int], tau: int) -> int | None:
    """Smallest level with at least ``tau`` successes; None when no level has."""
    if tau < 1:
        raise ValueError(f"tau must be >= 1, got {tau}")
    return next((k for k, count in enumerate(successes) if count >= tau), None)


def _bin_label(index: int) -> str:
    low, high = RATIO_BINS[index]
    return f"({low:.2f}, {high:.2f}]"


def _stats(values: Sequence[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    return {"count": len(values), "mean": mean, "var": sum((v - mean) ** 2 for v in values) / len(values)}


def summarize_levels(sweeps: Sequence[LevelSweep], tau: int = SearchConfig.tau) -> dict[str, Any]:
    """Per-task success curves and k*, the k*/L distribution, and Δ statistics per level and per k/L bin."""
    tasks = []
    shifts_by_level: dict[int, list[float]] = defaultdict(list)
    shifts_by_bin: dict[int, list[float]] = defaultdict(list)
    for sweep in sweeps:
        k_star = minimal_sufficient_level(sweep.successes, tau)
        tasks.append(
            {
                "task_id": sweep.task_id,
                "data_source": sweep.data_source,
                "num_actions": sweep.num_actions,
                "success_rate": [c / sweep.samples for c in sweep.successes],
                "k_star": k_star,
                "k_star_ratio": None if k_star is None else k_star / max(sweep.num_actions, 1),
            }
        )
        for level in range(1, sweep.num_actions + 1):
            shifts_by_level[level].extend(sweep.shifts[level])
            shifts_by_bin[ratio_bin(level / sweep.num_actions)].extend(sweep.shifts[level])
    guided_ratios = [t["k_star_ratio"] for t in tasks if t["k_star"]]
    histogram = {"unguided (k*=0)": sum(t["k_star"] == 0 for t in tasks)}
    for index, count in enumerate(ratio_histogram(guided_ratios)):
        histogram[f"k*/L in {_bin_label(index)}"] = count
    histogram["unreached (k=L fails)"] = sum(t["k_star"] is None for t in tasks)
    return {
        "tau": tau,
        "tasks": tasks,
        "k_star_histogram": histogram,
        "shift_by_level": {str(k): _stats(v) for k, v in sorted(shifts_by_level.items()) if v},
        "shift_by_ratio_bin": {_bin_label(i): _stats(v) for i, v in sorted(shifts_by_bin.items()) if v},
    }


def levels_markdown(summary: dict[str, Any]) -> str:
    """k* per task, the k*/L histogram and Δ per level, as markdown."""
    lines = ["| task | data source | L | success rate k=0..L | k* |", "|---|---|---:|---|---:|"]
    for task in summary["tasks"]:
        rates = " ".join(f"{r:.2f}" for r in task["success_rate"])
        k_star = "–" if task["k_star"] is None else str(task["k_star"])
        lines.append(f"| {task['task_id']} | {task['data_source']} | {task['num_actions']} | {rates} | {k_star} |")
    lines += ["", "| minimal sufficient level | tasks |", "|---|---:|"]
    lines += [f"| {name} | {count} |" for name, count in summary["k_star_histogram"].items()]
    lines += ["", "| level k | guided samples | Δ mean | Δ variance |", "|---:|---:|---:|---:|"]
    lines += [
        f"| {k} | {s['count']} | {s['mean']:.3f} | {s['var']:.3f} |" for k, s in summary["shift_by_level"].items()
    ]
    return "\n".join(lines) + "\n"
