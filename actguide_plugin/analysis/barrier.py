"""Finding 1 offline: where along a successful path the unguided policy loses its way (the reachability barrier).

For a task with reference actions, one trajectory is sampled *with* guidance G_k. Its prefix states s_j — the
unguided prompt x followed by the guided trajectory's first j tool-calling turns and their tool results, the
response token ids spliced unchanged after x as in training — are the states the guided policy visited. From
each s_j the *unguided* policy is continued K times; prefix Pass@K(j) says whether it can finish from there
(s_0 = x is plain unguided sampling). On a hard task (unguided Pass@K = 0) the curve rises once j passes the
barrier: the early actions are what the unguided policy cannot find, not the rest of the task.

Along the same guided trajectory, the per-token log-probability difference log π(y_t | x, G_k, y_<t) −
log π(y_t | x, y_<t), averaged over each assistant turn's own tokens, shows where the guided and the unguided
policy disagree (its sum over the trajectory is the off-policy shift Δ of :mod:`.levels`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actguide_plugin.analysis.passk import pass_at_k


@dataclass(frozen=True)
class PrefixCurve:
    """Finding 1 for one task: unguided continuations from the states along one guided trajectory."""

    task_id: str
    data_source: str
    num_actions: int
    level: int  # guidance level the trajectory was sampled at
    guided_correct: bool  # whether the guided trajectory itself succeeded
    samples: int  # K unguided continuations per prefix state
    prefix_successes: tuple[int, ...]  # j = 0..J: successes among the K continuations from s_j
    shift_per_turn: tuple[float, ...]  # turn 1..T of the guided trajectory: mean per-token log-prob difference

    def __post_init__(self) -> None:
        if not self.prefix_successes:
            raise ValueError(f"task {self.task_id!r}: no prefix state (s_0 is the unguided prompt)")
        if any(not 0 <= c <= self.samples for c in self.prefix_successes):
            raise ValueError(f"task {self.task_id!r}: successes {self.prefix_successes} outside [0, {self.samples}]")

    @property
    def is_hard(self) -> bool:
        """No unguided success from the plain prompt: the task is behind a reachability barrier."""
        return self.prefix_successes[0] == 0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def summarize_barrier(curves: Sequence[PrefixCurve]) -> dict[str, Any]:
    """Mean prefix Pass@K and pass@1 per prefix length j, and mean log-prob difference per turn, easy vs hard."""
    groups: dict[str, list[PrefixCurve]] = {"easy": [], "hard": []}
    for curve in curves:
        groups["hard" if curve.is_hard else "easy"].append(curve)
    summary: dict[str, Any] = {"tasks": len(curves), "groups": {}}
    for name, members in groups.items():
        pass_k: dict[int, list[float]] = defaultdict(list)
        pass_1: dict[int, list[float]] = defaultdict(list)
        shift: dict[int, list[float]] = defaultdict(list)
        for curve in members:
            for j, successes in enumerate(curve.prefix_successes):
                pass_k[j].append(pass_at_k(curve.samples, successes, curve.samples))
                pass_1[j].append(successes / curve.samples)
            for turn, value in enumerate(curve.shift_per_turn, start=1):
                shift[turn].append(value)
        summary["groups"][name] = {
            "tasks": len(members),
            "prefix_pass_at_k": {str(j): _mean(v) for j, v in sorted(pass_k.items())},
            "prefix_pass_at_1": {str(j): _mean(v) for j, v in sorted(pass_1.items())},
            "tasks_per_prefix": {str(j): len(v) for j, v in sorted(pass_k.items())},
            "logprob_diff_per_turn": {str(t): _mean(v) for t, v in sorted(shift.items())},
        }
    summary["per_task"] = [
        {
            "task_id": c.task_id,
            "data_source": c.data_source,
            "hard": c.is_hard,
            "level": c.level,
            "guided_correct": c.guided_correct,
            "samples": c.samples,
            "prefix_successes": list(c.prefix_successes),
            "logprob_diff_per_turn": list(c.shift_per_turn),
        }
        for c in curves
    ]
    return summary


def barrier_markdown(summary: dict[str, Any]) -> str:
    """Prefix Pass@K per number of guided turns, easy vs hard tasks, as markdown."""
    lines = []
    for name, group in summary["groups"].items():
        if not group["tasks"]:
            continue
        lines += [f"**{name} tasks** ({group['tasks']})", "", "| guided turns j | tasks | Pass@K | pass@1 |"]
        lines.append("|---:|---:|---:|---:|")
        for j, value in group["prefix_pass_at_k"].items():
            tasks, p1 = group["tasks_per_prefix"][j], group["prefix_pass_at_1"][j]
            lines.append(f"| {j} | {tasks} | {value:.3f} | {p1:.3f} |")
        lines.append("")
    return "\n".join(lines) + "\n"
