"""Guidance cost: our level search vs the authors' scheme on simulated hard groups.

Each simulated task has L reference actions and a success probability per guidance level that is
monotone in the level: *easy* tasks succeed unguided, *barrier* tasks need at least k_true actions
(k_true drifts down over epochs as the policy learns), *impossible* tasks never succeed. Both schemes
see the same tasks, the same n, m and τ, and the same random draws per (task, epoch, level).

* authors, as released (AMAP-ML/ActGuide-RL at 3384dbc), each rule from the code:
  - the hard prompts of a step are padded to a multiple of ``agent.num_workers`` = 8 by repeating one
    (``verl/trainer/ppo/ray_trainer.py``, ``_pad_to_workers`` in the selective-guidance phase);
  - ``AdaptiveGuidanceSearcher.search`` (``verl/trainer/ppo/adaptive_guidance.py``): lo = 0, hi = L; up to
    ``max_probe_steps`` = 5 rounds while some prompt has lo < hi; each round makes ``probe_rollouts`` = 2
    generation calls, and each call regenerates the *whole* padded batch (one rollout per prompt: converged
    and padding prompts too; active prompts at mid = ⌊(lo + hi) / 2⌋, which may be 0, the others at their
    unguided prompt); any success in the round sets hi = mid, else lo = mid + 1; the result is k = lo
    (k = L is never probed), probes are discarded (``searchagent_scripts/config/multiturn_grpo_actguide.yaml``:
    ``max_probe_steps: 5``, ``probe_rollouts: 2``);
  - then n guided rollouts per hard prompt at k, padded to a multiple of 8 (``hard_gen.repeat``,
    ``_pad_to_workers``), kept even if all fail.
* authors, simplified (the second column): the same search charged only for prompts still searching, m probes
  each per round, no padding (how this benchmark modelled it before; kept for comparison).
* ours: :func:`actguide_plugin.core.search.run_group` per prompt, concurrently, with the warm-start cache
  across epochs, probe reuse and an exact search; when no probe suffices the group at L is completed
  (``full_level_check=group``, the default), unless the task failed whole groups at L twice in a row
  (``probe_only_after=2``, the default: then the m probes at L decide). Further columns: ``probe_only_after=0``
  (a whole group at L every time) and ``full_level_check=probe``.

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


def _padded(count: int, workers: int) -> int:
    return -(-count // workers) * workers


def authors_released_epoch(tasks: list[Task], epoch: int, args, world: World, tally: Tally, rng: random.Random) -> None:
    """The release's search and guided rollout (module docstring), charged for every trajectory generated."""
    unguided = {t.task_id: world.rewards(t, epoch, 0, args.n) for t in tasks}
    latency = world.call_latency(rng, args.n)
    hard = [t for t in tasks if max(unguided[t.task_id]) <= 0]
    tally.hard += len(hard)
    padded = _padded(len(hard), args.workers)
    lo = {t.task_id: 0 for t in hard}
    hi = {t.task_id: t.num_actions for t in hard}
    verified: dict[str, set[int]] = {t.task_id: set() for t in hard}
    calls = 0
    for _ in range(args.author_rounds):
        active = [t for t in hard if lo[t.task_id] < hi[t.task_id]]
        if not active:
            break
        mid = {t.task_id: (lo[t.task_id] + hi[t.task_id]) // 2 for t in active}
        success = dict.fromkeys(mid, False)
        for _probe in range(args.m):
            calls += 1
            latency += world.call_latency(rng, padded)
            tally.guidance_trajectories += padded  # the whole padded batch, every call
            for t in active:
                success[t.task_id] |= world.rewards(t, epoch, mid[t.task_id], 1)[0] > 0
        for t in active:
            if success[t.task_id]:
                hi[t.task_id] = mid[t.task_id]
                verified[t.task_id].add(mid[t.task_id])
            else:
                lo[t.task_id] = mid[t.task_id] + 1
    if hard:
        calls += 1
        latency += world.call_latency(rng, args.n)
        tally.guidance_trajectories += _padded(args.n * len(hard), args.workers)
    for t in hard:
        level = min(lo[t.task_id], t.num_actions)
        guided = world.rewards(t, epoch, level, args.n)
        tally.unverified += level not in verified[t.task_id]
        if max(guided) > 0:
            tally.rescued += 1
            tally.overshoot += level - t.k_true
    tally.global_rounds += calls
    tally.serial_rounds_max += 1 + calls
    tally.latency += latency


async def ours_epoch(
    tasks: list[Task],
    epoch: int,
    args,
    world: World,
    tally: Tally,
    cache: LevelCache,
    rng: random.Random,
    cfg: SearchConfig,
) -> None:
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


RELEASED, SIMPLIFIED, OURS = "authors, as released", "authors, simplified", "ours (defaults)"


def simulate(args: argparse.Namespace) -> dict[str, Tally]:
    """Every scheme's tally; the first two columns are the authors', then ours with its settings."""
    rng = random.Random(args.seed)
    tasks = make_tasks(args, rng)
    world = World(args.seed, args.base_latency, args.tail_latency)
    base = {"mode": "fallback_adaptive", "n": args.n, "probe_m": args.m, "tau": args.tau}
    ours = {
        OURS: SearchConfig(**base),
        "ours, probe_only_after=0": SearchConfig(**base, probe_only_after=0),
        "ours, full_level_check=probe": SearchConfig(**base, full_level_check="probe"),
    }
    tallies = {name: Tally() for name in (RELEASED, SIMPLIFIED, *ours)}
    caches = {name: LevelCache() for name in ours}
    for epoch in range(args.epochs):
        world.counters.clear()  # each scheme sees the same i-th draw of (task, epoch, level)
        authors_released_epoch(tasks, epoch, args, world, tallies[RELEASED], random.Random(f"lat-r-{epoch}"))
        world.counters.clear()
        authors_epoch(tasks, epoch, args, world, tallies[SIMPLIFIED], random.Random(f"lat-a-{epoch}"))
        for name, cfg in ours.items():
            world.counters.clear()
            latency_rng = random.Random(f"lat-o-{epoch}")
            asyncio.run(ours_epoch(tasks, epoch, args, world, tallies[name], caches[name], latency_rng, cfg))
        for task in tasks:  # the policy learns: barriers come down a little each epoch
            if task.kind == "barrier" and task.k_true > 1 and rng.random() < args.drift:
                task.k_true -= 1
    return tallies


def format_table(results: dict[str, Tally], epochs: int, n: int) -> str:
    """One row per metric, one column per scheme, and ours (defaults) over the authors' as released."""
    names = list(results)
    rows = {name: tally.row(epochs, n) for name, tally in results.items()}
    metrics = list(next(iter(rows.values())))
    header = "| metric | " + " | ".join(names) + " | ours / released |"
    lines = [header, "|---|" + "---|" * (len(names) + 1)]
    for metric in metrics:
        values = [rows[name][metric] for name in names]
        released, ours = rows[RELEASED][metric], rows[OURS][metric]
        ratio = f"{ours / released:.3f}×" if released else "–"
        lines.append(f"| {metric} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {ratio} |")
    return "\n".join(lines)


def seeds_table(per_seed: dict[int, dict[str, Tally]], epochs: int, n: int) -> str:
    """Per seed: ours (defaults) against both authors' columns, cost per rescued group and rescued fraction."""
    lines = [
        "| seed | ours / released: trajectories per rescued group | rescued | ours / simplified: trajectories "
        "| rescued | unverified levels: released, ours |",
        "|---|---|---|---|---|---|",
    ]
    for seed, results in per_seed.items():
        rows = {name: tally.row(epochs, n) for name, tally in results.items()}
        cost, rescued = "trajectories per rescued group", "rescued fraction of hard groups"
        ours, released, simplified = rows[OURS], rows[RELEASED], rows[SIMPLIFIED]
        lines.append(
            f"| {seed} | {ours[cost] / released[cost]:.3f}× | {ours[rescued] / released[rescued]:.3f}× "
            f"| {ours[cost] / simplified[cost]:.3f}× | {ours[rescued] / simplified[rescued]:.3f}× "
            f"| {released['unverified levels used']:.0f}, {ours['unverified levels used']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-actions", type=int, default=40, help="L is uniform in [2, max]")
    parser.add_argument("--easy", type=float, default=0.5, help="weight of tasks solved unguided")
    parser.add_argument("--barrier", type=float, default=0.35, help="weight of tasks needing k_true actions")
    parser.add_argument("--impossible", type=float, default=0.15, help="weight of tasks never solved")
    parser.add_argument("--n", type=int, default=SearchConfig.n, help="group size")
    parser.add_argument("--m", type=int, default=SearchConfig.probe_m, help="rollouts per probe")
    parser.add_argument("--tau", type=int, default=SearchConfig.tau, help="successes a probe needs")
    parser.add_argument("--author-rounds", type=int, default=5, help="the release's max_probe_steps")
    parser.add_argument("--workers", type=int, default=8, help="the release pads hard prompts to a multiple")
    parser.add_argument("--drift", type=float, default=0.3, help="chance per epoch that k_true drops by one")
    parser.add_argument("--base-latency", type=float, default=20.0, help="seconds per rollout, fixed part")
    parser.add_argument("--tail-latency", type=float, default=15.0, help="mean of the exponential part")
    parser.add_argument(
        "--p-range", type=float, nargs=2, default=(0.05, 0.9), metavar=("LOW", "HIGH"),
        help="per-task success probability at sufficient levels is uniform in [LOW, HIGH]",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", help="comma-separated seeds: one summary row each (instead of the full table)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.p_range[0] <= args.p_range[1] <= 1.0:
        parser.error(f"--p-range must satisfy 0 <= LOW <= HIGH <= 1, got {args.p_range}")
    print(
        f"Guidance cost over {args.epochs} epochs, {args.tasks} tasks (easy/barrier/impossible = "
        f"{args.easy}/{args.barrier}/{args.impossible}), L ≤ {args.max_actions}, n={args.n}, m={args.m}, τ={args.tau}, "
        f"p ∈ [{args.p_range[0]}, {args.p_range[1]}]\n"
    )
    if args.seeds:
        per_seed = {}
        for seed in (int(s) for s in args.seeds.split(",")):
            per_seed[seed] = simulate(argparse.Namespace(**{**vars(args), "seed": seed}))
        print(seeds_table(per_seed, args.epochs, args.n))
    else:
        print(format_table(simulate(args), args.epochs, args.n))


if __name__ == "__main__":
    main()
