"""Guidance cost: our level search vs the authors' scheme on simulated hard groups.

Each simulated task has L reference actions and a success probability per guidance level that is
monotone in the level: *easy* tasks succeed unguided, *barrier* tasks need at least k_true actions
(k_true drifts down over epochs as the policy learns), *impossible* tasks never succeed. Both schemes
see the same tasks, the same n, m and τ, and the same random draws per (task, epoch, level).

* authors: every hard prompt runs binary search over [0, L] for at most 5 serial rounds of m probes,
  probes are discarded, then n guided rollouts at the best level found (L if none was verified); all
  prompts wait for each round (a global barrier).
* ours: :func:`actguide_plugin.core.search.run_group` per prompt, concurrently, with the warm-start cache
  across epochs, probe reuse and an exact search; when no probe suffices the group at L is completed
  (``full_level_check=group``, the default). A third column shows ``full_level_check=probe``.

Per-task success probabilities at sufficient levels are drawn from ``--p-range`` (default [0.05, 0.9]): the
low values are the barrier tasks where whole-group sampling at L matters.

Latency model: one rollout takes ``base + Exp(mean=tail)`` seconds; a generation call of c rollouts
runs them in parallel and takes the slowest. A global-round scheme pays the slowest prompt every round.

Run: ``python benchmarks/guidance_cost.py`` (prints one markdown table; ``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from dataclasses import dataclass

from actguide_plugin.core.level_cache import LevelCache
from actguide_plugin.core.search import GroupStatus, SearchConfig, run_group


@dataclass
class Task:
    task_id: str
    num_actions: int
    kind: str  # easy | barrier | impossible
    k_true: int  # minimal level with non-zero success (num_actions + 1 when impossible)
    p_success: float

    def success_prob(self, level: int) -> float:
        return self.p_success if level >= self.k_true else 0.0


def make_tasks(args: argparse.Namespace, rng: random.Random) -> list[Task]:
    tasks = []
    for i in range(args.tasks):
        num_actions = rng.randint(2, args.max_actions)
        kind = rng.choices(["easy", "barrier", "impossible"], weights=[args.easy, args.barrier, args.impossible])[0]
        k_true = {"easy": 0, "barrier": rng.randint(1, num_actions), "impossible": num_actions + 1}[kind]
        tasks.append(Task(f"task-{i}", num_actions, kind, k_true, rng.uniform(*args.p_range)))
    return tasks


class World:
    """Shared randomness: the i-th rollout of (task, epoch, level) has the same outcome for both schemes."""

    def __init__(self, seed: int, base: float, tail: float):
        self.seed, self.base, self.tail = seed, base, tail
        self.counters: dict[tuple[str, int, int], int] = {}

    def rewards(self, task: Task, epoch: int, level: int, count: int) -> list[float]:
        key = (task.task_id, epoch, level)
        start = self.counters.get(key, 0)
        self.counters[key] = start + count
        out = []
        for i in range(start, start + count):
            rng = random.Random(f"{self.seed}/{task.task_id}/{epoch}/{level}/{i}")
            out.append(1.0 if rng.random() < task.success_prob(level) else 0.0)
        return out

    def call_latency(self, rng: random.Random, count: int) -> float:
        return max(self.base + rng.expovariate(1.0 / self.tail) for _ in range(count)) if count else 0.0


@dataclass
class Tally:
    hard: int = 0
    rescued: int = 0
    guidance_trajectories: int = 0
    unverified: int = 0
    overshoot: int = 0  # Σ (chosen level − true minimal level) over rescued barrier groups
    global_rounds: int = 0
    serial_rounds_max: int = 0
    latency: float = 0.0

    def row(self, epochs: int, n: int) -> dict[str, float]:
        per_rescued = self.guidance_trajectories / max(self.rescued, 1)
        return {
            "trajectories per rescued group": per_rescued,
            "… against the floor n (= 1.00)": per_rescued / n,
            "global barrier rounds / step": self.global_rounds / epochs,
            "longest serial chain / step": self.serial_rounds_max / epochs,
            "rescued fraction of hard groups": self.rescued / max(self.hard, 1),
            "unverified levels used": float(self.unverified),
            "mean level overshoot (k − k_true)": self.overshoot / max(self.rescued, 1),
            "simulated latency / step (s)": self.latency / epochs,
        }


def authors_epoch(tasks: list[Task], epoch: int, args, world: World, tally: Tally, rng: random.Random) -> None:
    unguided = {t.task_id: world.rewards(t, epoch, 0, args.n) for t in tasks}
    latency = world.call_latency(rng, args.n)  # the whole batch waits for its slowest unguided rollout
    hard = [t for t in tasks if max(unguided[t.task_id]) <= 0]
    tally.hard += len(hard)
    state = {t.task_id: {"lo": 0, "hi": t.num_actions, "best": t.num_actions, "verified": False} for t in hard}
    rounds = 0
    for _ in range(args.author_rounds):
        active = [t for t in hard if state[t.task_id]["lo"] <= state[t.task_id]["hi"]]
        if not active:
            break
        rounds += 1
        latency += max(world.call_latency(rng, args.m) for _ in active)  # global round: slowest prompt
        for t in active:
            s = state[t.task_id]
            mid = (s["lo"] + s["hi"]) // 2
            rewards = world.rewards(t, epoch, mid, args.m)
            tally.guidance_trajectories += args.m  # probes are discarded
            if sum(r > 0 for r in rewards) >= args.tau:
                s["best"], s["hi"], s["verified"] = mid, mid - 1, True
            else:
                s["lo"] = mid + 1
    if hard:
        latency += world.call_latency(rng, args.n)
        rounds += 1
    for t in hard:
        s = state[t.task_id]
        guided = world.rewards(t, epoch, s["best"], args.n)
        tally.guidance_trajectories += args.n
        tally.unverified += not s["verified"]
        if max(guided) > 0:
            tally.rescued += 1
            tally.overshoot += s["best"] - t.k_true
    tally.global_rounds += rounds
    tally.serial_rounds_max += 1 + rounds
    tally.latency += latency


async def ours_epoch(
    tasks: list[Task],
    epoch: int,
    args,
    world: World,
    tally: Tally,
    cache: LevelCache,
    rng: random.Random,
    full_level_check: str,
) -> None:
    cfg = SearchConfig(
        mode="fallback_adaptive", n=args.n, probe_m=args.m, tau=args.tau, full_level_check=full_level_check
    )
    clocks: dict[str, float] = {}

    def rollout_for(task: Task):
        async def rollout(level: int, count: int) -> list[float]:
            start = clocks.get(task.task_id, 0.0)
            # yield once so that probes of one concurrent round all start at the same virtual time
            await asyncio.sleep(0)
            clocks[task.task_id] = max(clocks.get(task.task_id, 0.0), start + world.call_latency(rng, count))
            return world.rewards(task, epoch, level, count)

        return rollout

    outcomes = await asyncio.gather(
        *(run_group(t.task_id, t.num_actions, rollout_for(t), float, cfg, cache) for t in tasks)
    )
    for task, outcome in zip(tasks, outcomes, strict=True):
        if not outcome.is_hard:
            continue
        tally.hard += 1
        tally.guidance_trajectories += outcome.sampled - len(outcome.unguided_rewards)
        if outcome.status is GroupStatus.RESCUED:
            tally.rescued += 1
            tally.overshoot += outcome.level - task.k_true
            probed = any(p.level == outcome.level and p.sufficient for p in outcome.probes)
            tally.unverified += not (probed or sum(r > 0 for r in outcome.trajectories) >= args.tau)
    tally.serial_rounds_max += max(o.serial_rounds for o in outcomes)
    tally.latency += max(clocks.values())


def simulate(args: argparse.Namespace) -> dict[str, Tally]:
    rng = random.Random(args.seed)
    tasks = make_tasks(args, rng)
    world = World(args.seed, args.base_latency, args.tail_latency)
    checks = ("group", "probe")
    authors, ours, caches = Tally(), {c: Tally() for c in checks}, {c: LevelCache() for c in checks}
    for epoch in range(args.epochs):
        world.counters.clear()  # each scheme sees the same i-th draw of (task, epoch, level)
        authors_epoch(tasks, epoch, args, world, authors, random.Random(f"lat-a-{epoch}"))
        for check in checks:
            world.counters.clear()
            latency_rng = random.Random(f"lat-o-{epoch}")
            asyncio.run(ours_epoch(tasks, epoch, args, world, ours[check], caches[check], latency_rng, check))
        for task in tasks:  # the policy learns: barriers come down a little each epoch
            if task.kind == "barrier" and task.k_true > 1 and rng.random() < args.drift:
                task.k_true -= 1
    return {
        "authors (5 global rounds)": authors,
        "ours (per-prompt, warm start)": ours["group"],
        "ours, full_level_check=probe": ours["probe"],
    }


def format_table(results: dict[str, Tally], epochs: int, n: int) -> str:
    """One row per metric, one column per scheme, and ours (the second column) over the authors' (the first)."""
    names = list(results)
    rows = {name: tally.row(epochs, n) for name, tally in results.items()}
    metrics = list(next(iter(rows.values())))
    lines = ["| metric | " + " | ".join(names) + " | ours / authors |", "|---|" + "---|" * (len(names) + 1)]
    for metric in metrics:
        values = [rows[name][metric] for name in names]
        ratio = f"{values[1] / values[0]:.2f}×" if values[0] else "–"
        lines.append(f"| {metric} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-actions", type=int, default=40, help="L is uniform in [2, max]")
    parser.add_argument("--easy", type=float, default=0.5, help="weight of tasks solved unguided")
    parser.add_argument("--barrier", type=float, default=0.35, help="weight of tasks needing k_true actions")
    parser.add_argument("--impossible", type=float, default=0.15, help="weight of tasks never solved")
    parser.add_argument("--n", type=int, default=8, help="group size")
    parser.add_argument("--m", type=int, default=2, help="rollouts per probe")
    parser.add_argument("--tau", type=int, default=1, help="successes a probe needs")
    parser.add_argument("--author-rounds", type=int, default=5)
    parser.add_argument("--drift", type=float, default=0.3, help="chance per epoch that k_true drops by one")
    parser.add_argument("--base-latency", type=float, default=20.0, help="seconds per rollout, fixed part")
    parser.add_argument("--tail-latency", type=float, default=15.0, help="mean of the exponential part")
    parser.add_argument(
        "--p-range", type=float, nargs=2, default=(0.05, 0.9), metavar=("LOW", "HIGH"),
        help="per-task success probability at sufficient levels is uniform in [LOW, HIGH]",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0.0 <= args.p_range[0] <= args.p_range[1] <= 1.0:
        parser.error(f"--p-range must satisfy 0 <= LOW <= HIGH <= 1, got {args.p_range}")
    results = simulate(args)
    print(
        f"Guidance cost over {args.epochs} epochs, {args.tasks} tasks (easy/barrier/impossible = "
        f"{args.easy}/{args.barrier}/{args.impossible}), L ≤ {args.max_actions}, n={args.n}, m={args.m}, τ={args.tau}, "
        f"p ∈ [{args.p_range[0]}, {args.p_range[1]}]\n"
    )
    print(format_table(results, args.epochs, args.n))


if __name__ == "__main__":
    main()
