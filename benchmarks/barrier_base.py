"""Is the base policy at the barrier? The teacher-forced probability of each task's reference solution, by plan level.

    python benchmarks/barrier_base.py MODEL [--seed S] [--train 48] [--val 32] [--min-hops 3 --max-hops 3]

For the first tasks of each partition of the experiment's world of ``--seed`` it builds the reference solution
(every hop over the real pages, then the code), its prompt carrying the first k reference actions as a plan,
k = 0..L, tokenized as verl's tool agent loop tokenizes a rollout, and scores the response tokens with MODEL: the
probability that one sampled rollout is exactly that solution. A base policy at the barrier has k = 0 far out of
reach of the experiment's rollouts (6,400 per arm: below ~1e-6) and the full plan k = L high; the levels between
say whether guidance is graded (k* < L) or all-or-nothing.
The table gives the mean and the largest value over the tasks.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch
from barrier_ratio import load_scorer, response_logps  # benchmarks/, next to this script

from actguide_plugin.barrier.base_policy import reference_conversation
from actguide_plugin.barrier.world import build_world

# benchmarks/barrier_learning.py's default world: its tasks are drawn in order, so these sizes fix which they are
EXPERIMENT_HOPS, EXPERIMENT_TRAIN, EXPERIMENT_VAL = 3, 256, 48


def measure(model_dir: Path, seed: int, train: int, val: int, min_hops: int, max_hops: int) -> dict:
    """``{partition: {k: [P(solution | plan of k actions) per task]}}`` for the first tasks of each partition."""
    model, _, encode_conversation = load_scorer(model_dir)
    sizes = {"train": max(train, EXPERIMENT_TRAIN), "val": max(val, EXPERIMENT_VAL)}
    world = build_world(seed, **sizes, min_hops=min_hops, max_hops=max_hops)
    table: dict[str, dict[int, list[float]]] = {}
    for partition, tasks in (("train", world.train[:train]), ("val", world.val[:val])):
        by_level = table.setdefault(partition, {})
        for task in tasks:
            for level in range(len(task.chain) + 1):
                ids, mask = encode_conversation(reference_conversation(task, level))
                by_level.setdefault(level, []).append(math.exp(response_logps(model, ids, mask).sum().item()))
    return table


def markdown(table: dict) -> str:
    levels = sorted({level for by_level in table.values() for level in by_level})
    lines = [
        "| tasks | " + " | ".join(f"k = {k}: mean | max" for k in levels) + " |",
        "|---|" + "---:|---:|" * len(levels),
    ]
    for partition, by_level in table.items():
        count = len(next(iter(by_level.values()), []))
        cells = []
        for k in levels:
            values = by_level.get(k, [])
            cells += [f"{statistics.fmean(values):.2g}", f"{max(values):.2g}"] if values else ["—", "—"]
        lines.append(f"| {partition} ({count}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model of the barrier vocabulary (e.g. the base policy)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (%(default)s)")
    parser.add_argument("--train", type=int, default=48, help="training tasks scored (%(default)s)")
    parser.add_argument("--val", type=int, default=32, help="validation tasks scored (%(default)s)")
    parser.add_argument("--min-hops", type=int, default=EXPERIMENT_HOPS)
    parser.add_argument("--max-hops", type=int, default=EXPERIMENT_HOPS)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    table = measure(args.model, args.seed, args.train, args.val, args.min_hops, args.max_hops)
    print(markdown(table), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
