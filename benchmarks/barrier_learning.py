"""Does it learn? Plain GRPO against ActGuide-RL past a reachability barrier, through verl's real trainer on CPU.

    python benchmarks/barrier_learning.py --seeds 0,1,2 --modes off,cispo --steps 100 --out runs/barrier

For each seed: the barrier world of that seed (``actguide-preprocess build-barrier``, 3-hop tasks by default), the
base policy of that seed (:mod:`actguide_plugin.barrier.base_policy`, cached in ``OUT/seed<S>/base``), then one
``actguide-train`` run per arm (``--config-name actguide_barrier_cpu``: V1 trainer, CPU mode, ``hf`` rollout) from
that same model, data, seed and number of steps, changing only the arm's ``actguide.*`` settings. verl's validation
(always unguided, on entities never seen in training) runs every ``--val-every`` steps.

Writes ``OUT/curves.csv`` (``mode,step,val_acc_unguided,effective_signal_frac_before,...``, a ``seed`` column
first), ``OUT/curves.png`` and ``OUT/summary.md`` (one row per seed and arm), and each run's verl log and
``metrics.jsonl`` under ``OUT/seed<S>/<arm>/`` (with ``--dump-rollouts``, every step's rollouts as well: what the
policy actually wrote), and its wall time and peak memory (Σ PSS of the run's process tree, sampled every 5 s) in
``wall.json`` there. ``--report-only`` rebuilds the three files from those logs; ``--plot-only PNG`` only redraws
the figure from ``OUT/curves.csv`` into PNG (for results kept without their logs, as under ``docs/results/``).

Arms (``--modes``): every ``actguide.mode`` by name, plus the paper's Table 4 ablations
``no_mixed_policy`` (fallback_adaptive with ``ratio_context=guided``: no prompt swap), ``shaping``
(fallback_adaptive with ``guided_clip=shaping``) and ``cispo`` (fallback_adaptive with ``guided_clip=cispo``: the
clipped ratio as a stop-gradient weight, so the gradient of a guided token does not vanish with its ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from demo_footprint import Footprint, run_measured  # benchmarks/, next to this script

from actguide_plugin.analysis.learning import curve_rows, curves_csv, read_curves_csv, summarize, summary_markdown
from actguide_plugin.analysis.plots import plot_learning
from actguide_plugin.analysis.training import read_steps
from actguide_plugin.barrier.base_policy import BasePolicySettings, ensure_base_policy
from actguide_plugin.barrier.world import MAX_HOPS
from actguide_plugin.outputs import StagedOutputs
from data_preprocess.barrier import build_barrier

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT_HOPS = 3  # default --min-hops of the experiment (the world's own default is 2-3 hops, as in the demo)
MODES = ("off", "fixed_k", "fixed_ratio", "always_full", "fallback_full", "fallback_adaptive", "fallback_ladder")
ABLATIONS = {
    "no_mixed_policy": ["actguide.mode=fallback_adaptive", "actguide.ratio_context=guided"],
    "shaping": ["actguide.mode=fallback_adaptive", "actguide.guided_clip=shaping"],
    "cispo": ["actguide.mode=fallback_adaptive", "actguide.guided_clip=cispo"],
}


def arm_overrides(arm: str) -> list[str]:
    if arm in MODES:
        return [f"actguide.mode={arm}"]
    if arm in ABLATIONS:
        return list(ABLATIONS[arm])
    raise ValueError(f"unknown arm {arm!r}: use an actguide.mode ({', '.join(MODES)}) or {', '.join(ABLATIONS)}")


def _world_matches(data: Path, seed: int, args: argparse.Namespace) -> bool:
    """Whether ``data`` already holds the world these arguments ask for (its ``stats.json`` says so)."""
    stats = data / "stats.json"
    if not (data / "train.parquet").is_file() or not stats.is_file():
        return False
    built = json.loads(stats.read_text(encoding="utf-8"))
    wanted = {"seed": seed, "hops": [args.min_hops, args.max_hops], "train": args.train, "val": args.val}
    found = {"seed": built["seed"], "hops": built["hops"], "train": built["train"]["rows"], "val": built["val"]["rows"]}
    return found == wanted


def train_arm(arm: str, seed: int, data: Path, model: Path, run_dir: Path, args: argparse.Namespace) -> Footprint:
    """One ``actguide-train`` run; returns its wall time and peak memory. Its console output goes to
    ``run_dir/train.log``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = run_dir / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    env = dict(os.environ, ACTGUIDE_CORPUS=str(data / "corpus.jsonl"), VERL_FILE_LOGGER_PATH=str(metrics))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONWARNINGS", "ignore::UserWarning:verl.workers.engine")
    command = [
        sys.executable, "-m", "recipe.actguide.main_actguide", "--config-name", "actguide_barrier_cpu",
        *arm_overrides(arm),
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data / 'train.parquet'}",
        f"data.val_files={data / 'val.parquet'}",
        f"data.seed={seed}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"trainer.total_training_steps={args.steps}",
        "trainer.total_epochs=1000",
        f"trainer.test_freq={args.val_every}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"trainer.experiment_name=barrier_seed{seed}_{arm}",
        "trainer.logger=[console,file]",
        *([f"trainer.rollout_data_dir={run_dir / 'rollouts'}"] if args.dump_rollouts else []),
        *args.overrides,
    ]  # fmt: skip
    with open(run_dir / "train.log", "w", encoding="utf-8") as log:
        run = run_measured(command, interval_s=5.0, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if run.returncode != 0:
        raise RuntimeError(f"seed {seed} arm {arm}: actguide-train exited {run.returncode}; see {log.name}")
    return run


def report(out: Path, seeds: list[int], arms: list[str], skip_missing: bool = False) -> str:
    """Rebuild ``curves.csv``, ``curves.png`` and ``summary.md`` from every run's ``metrics.jsonl``; with
    ``skip_missing``, a seed and arm never run is left out (and said), else it is an error."""
    runs, summaries, csv_parts = {}, [], []
    for seed in seeds:
        for arm in arms:
            metrics = out / f"seed{seed}" / arm / "metrics.jsonl"
            if not metrics.is_file() and skip_missing:
                print(f"seed {seed} {arm}: not run, left out", flush=True)
                continue
            if not metrics.is_file():
                raise FileNotFoundError(f"{metrics}: no such run (train it first, without --report-only)")
            rows = curve_rows(arm, read_steps(metrics))
            runs[(seed, arm)] = rows
            summaries.append((seed, summarize(arm, rows)))
            lines = curves_csv(rows).splitlines()
            csv_parts.append([f"{seed},{line}" for line in lines[1:]])
            header = "seed," + lines[0]
    if not runs:
        raise FileNotFoundError(f"{out}: no run of seeds {seeds} and arms {arms} there (no seed*/*/metrics.jsonl)")
    markdown = summary_markdown(summaries)
    with StagedOutputs(out) as staged:
        staged.text("curves.csv", "\n".join([header, *(line for part in csv_parts for line in part)]) + "\n")
        staged.text("summary.md", markdown)
        staged.json("summary.json", [dict(seed=seed, **vars(s)) for seed, s in summaries])
        staged.stage("curves.png", lambda path: plot_learning(runs, path))
        staged.commit()
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", "--seed", default="0", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--modes", default="off,fallback_adaptive", help="comma-separated arms (%(default)s)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per arm (%(default)s)")
    parser.add_argument("--val-every", type=int, default=10, help="validation interval in steps (%(default)s)")
    parser.add_argument("--train", type=int, default=256, help="training tasks of the world (%(default)s)")
    parser.add_argument("--val", type=int, default=48, help="validation tasks of the world (%(default)s)")
    # 3-hop tasks only: a 2-hop task is within chance reach of plain GRPO for some base policies (format 6, seed 2:
    # three blind solves in 6,400 rollouts, then GRPO crossed from step 66); three hops square that chance
    parser.add_argument(
        "--min-hops", type=int, default=EXPERIMENT_HOPS, help="fewest searches a task needs (%(default)s)"
    )
    parser.add_argument("--max-hops", type=int, default=MAX_HOPS, help="most searches a task needs (%(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/barrier"))
    parser.add_argument(
        "--dump-rollouts",
        action="store_true",
        help="keep every step's rollouts (verl's rollout_data_dir) in OUT/seed<S>/<arm>/rollouts",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only rebuild the report from the runs there (others left out)"
    )
    parser.add_argument("--plot-only", type=Path, metavar="PNG", help="only redraw OUT/curves.csv's figure into PNG")
    parser.add_argument("overrides", nargs="*", help="hydra overrides for every arm (key=value)")
    args = parser.parse_args(argv)
    if args.plot_only:
        plot_learning(read_curves_csv((args.out / "curves.csv").read_text(encoding="utf-8")), args.plot_only)
        print(f"wrote {args.plot_only}")
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = [a.strip() for a in args.modes.split(",") if a.strip()]
    for arm in arms:
        arm_overrides(arm)  # an unknown arm fails before anything runs
    out = args.out.resolve()
    if not args.report_only:
        for seed in seeds:
            seed_dir = out / f"seed{seed}"
            data = seed_dir / "data"
            if not _world_matches(data, seed, args):
                build_barrier(data, seed=seed, train=args.train, val=args.val, min_hops=args.min_hops,
                              max_hops=args.max_hops)  # fmt: skip
            started = time.perf_counter()
            model = ensure_base_policy(seed_dir / "base", BasePolicySettings(seed=seed))
            print(f"seed {seed}: base policy ready in {time.perf_counter() - started:.0f} s ({model})", flush=True)
            for arm in arms:
                run = train_arm(arm, seed, data, model, seed_dir / arm, args)
                peak_gib = round(run.peak_pss / 2**30, 2)
                record = {"wall_s": round(run.wall_s, 1), "peak_pss_gib": peak_gib}
                (seed_dir / arm / "wall.json").write_text(json.dumps(record) + "\n")
                print(f"seed {seed} {arm}: {args.steps} steps in {run.wall_s / 60:.1f} min, peak {peak_gib} GiB",
                      flush=True)  # fmt: skip
    print(report(out, seeds, arms, skip_missing=args.report_only))
    print(f"wrote {out / 'curves.csv'}, {out / 'curves.png'}, {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
