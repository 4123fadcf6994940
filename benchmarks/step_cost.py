"""Cost of one step of verl's real V1 trainer on this CPU machine, phase by phase.

A learning run needs ~100 steps per arm, so a step has to be cheap (target: ≤ 5 s at 8 prompts × n = 8 on a
tiny model). This runs ``python -m recipe.actguide.main_actguide --config-name actguide_cpu`` for one setting,
then reads verl's file-logger ``metrics.jsonl`` (``VERL_FILE_LOGGER_PATH``) and prints the mean of every
``timing_s/*`` key over the steps after the first (the first step pays for warm-up), the rest of ``timing_s/step``
that no phase accounts for, tokens per step (``perf/total_num_tokens``), rollouts sampled per step
(``actguide/trajectories_sampled``), the mean prompt and response lengths, and the wall time of the whole
command including start-up.

verl 0.9.1's V1 sync trainer times these phases (``trainer/ppo/v1/trainer_base.py``, ``trainer_sync.py``):
``gen`` (sampling from the replay buffer: the whole rollout with our level search, and the wait for the buffer's
next poll of TransferQueue), ``reward`` (only with a colocated reward model), ``old_log_prob``, ``ref``, ``values``
/ ``update_critic`` (critic only), ``adv``, ``update_actor``, ``save_checkpoint``, ``update_weights`` (weight sync
to the rollout server) — all inside ``step`` — and ``testing`` (validation) and ``dump_rollout_generations`` after
it.

Run, e.g.::

    python benchmarks/step_cost.py --data-dir DATA --model-path MODEL --batch 8 --n 8 --steps 4 \\
        --out run.json -- actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384
    python benchmarks/step_cost.py --compare base.json run.json   # one row per saved run

Arguments after ``--`` are hydra overrides passed on unchanged (they win over the ones built here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIMING_PREFIX = "timing_s/"
# verl times these after the ``step`` timer closes (validation, rollout dumps): not part of timing_s/step.
OUTSIDE_STEP = ("step", "testing", "dump_rollout_generations")
TOKENS_KEY = "perf/total_num_tokens"
ROLLOUTS_KEY = "actguide/trajectories_sampled"
PROMPT_LEN_KEY = "prompt_length/mean"
RESPONSE_LEN_KEY = "response_length/mean"


@dataclass
class StepCost:
    """Means over the measured steps (those after the first); ``phase_steps`` counts the steps a phase ran in."""

    measured_steps: list[int]
    phases: dict[str, float]
    phase_min: dict[str, float]  # the fastest step: on a shared machine, the closest to the phase's own cost
    phase_steps: dict[str, int]
    step_s: float
    unaccounted_s: float  # timing_s/step minus the phases timed inside it (batch balancing, TransferQueue, ...)
    tokens: float
    rollouts: float
    prompt_len: float
    response_len: float
    wall_s: float | None = None
    setting: dict[str, object] = field(default_factory=dict)


def read_metrics(path: Path) -> dict[int, dict[str, float]]:
    """verl's file-logger lines (``{"step": N, "data": {...}}``) merged per step: verl may log a step in more
    than one line (validation before training logs step 0 on its own)."""
    steps: dict[int, dict[str, float]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                steps.setdefault(int(record["step"]), {}).update(record["data"])
    return steps


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def summarize(steps: dict[int, dict[str, float]], skip_first: int = 1) -> StepCost:
    """Per-phase means over the training steps after the first ``skip_first`` (all of them if there are no more).

    A phase's mean is over the steps it ran in (a checkpoint every k steps shows its own cost, with its count).
    """
    trained = sorted(step for step, data in steps.items() if TIMING_PREFIX + "step" in data)
    if not trained:
        raise ValueError("no training step in the metrics (no timing_s/step key)")
    measured = trained[skip_first:] or trained
    rows = [steps[step] for step in measured]
    names = sorted({key[len(TIMING_PREFIX) :] for row in rows for key in row if key.startswith(TIMING_PREFIX)})
    phases, phase_min, phase_steps = {}, {}, {}
    for name in names:
        values = [row[TIMING_PREFIX + name] for row in rows if TIMING_PREFIX + name in row]
        phases[name], phase_min[name], phase_steps[name] = _mean(values), min(values), len(values)
    inside = [
        row[TIMING_PREFIX + "step"]
        - sum(v for k, v in row.items() if k.startswith(TIMING_PREFIX) and k[len(TIMING_PREFIX) :] not in OUTSIDE_STEP)
        for row in rows
    ]
    return StepCost(
        measured_steps=measured,
        phases=phases,
        phase_min=phase_min,
        phase_steps=phase_steps,
        step_s=phases["step"],
        unaccounted_s=_mean(inside),
        tokens=_mean([row[TOKENS_KEY] for row in rows if TOKENS_KEY in row]),
        rollouts=_mean([row[ROLLOUTS_KEY] for row in rows if ROLLOUTS_KEY in row]),
        prompt_len=_mean([row[PROMPT_LEN_KEY] for row in rows if PROMPT_LEN_KEY in row]),
        response_len=_mean([row[RESPONSE_LEN_KEY] for row in rows if RESPONSE_LEN_KEY in row]),
    )


def phase_table(cost: StepCost) -> str:
    """One run: a row per phase (mean seconds over the measured steps), then the totals."""
    lines = [
        f"steps measured: {cost.measured_steps} (the first step is warm-up)",
        "",
        "| phase | mean s | min s | steps |",
        "|---|---:|---:|---:|",
    ]
    for name, value in cost.phases.items():
        if name != "step":
            row = f"{value:.2f} | {cost.phase_min[name]:.2f} | {cost.phase_steps[name]}"
            lines.append(f"| {TIMING_PREFIX}{name} | {row} |")
    step = f"**{cost.step_s:.2f}** | {cost.phase_min['step']:.2f} | {cost.phase_steps['step']}"
    lines += [
        f"| (rest of step: balancing, TransferQueue, metrics) | {cost.unaccounted_s:.2f} | | |",
        f"| **{TIMING_PREFIX}step** | {step} |",
        f"| tokens per step ({TOKENS_KEY}) | {cost.tokens:.0f} | | |",
        f"| rollouts sampled per step ({ROLLOUTS_KEY}) | {cost.rollouts:.1f} | | |",
        f"| mean prompt / response tokens | {cost.prompt_len:.0f} / {cost.response_len:.0f} | | |",
    ]
    if cost.wall_s is not None:
        lines.append(f"| wall time of the command, start-up included | {cost.wall_s:.0f} | | |")
    return "\n".join(lines)


# Columns of the comparison table: (header, phase name or None for a computed column).
COMPARE_PHASES = ("gen", "old_log_prob", "ref", "adv", "update_actor", "update_weights", "save_checkpoint", "testing")


def compare_table(costs: dict[str, StepCost]) -> str:
    """Saved runs side by side: a row per run (labelled by its file stem), a column per phase."""
    header = ["run", *COMPARE_PHASES, "rest", "step", "tokens", "rollouts", "wall"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for label, cost in costs.items():
        cells = [f"{cost.phases[name]:.2f}" if name in cost.phases else "–" for name in COMPARE_PHASES]
        wall = f"{cost.wall_s:.0f}" if cost.wall_s is not None else "–"
        cells += [f"{cost.unaccounted_s:.2f}", f"**{cost.step_s:.2f}**", f"{cost.tokens:.0f}", f"{cost.rollouts:.0f}"]
        lines.append("| " + " | ".join([label, *cells, wall]) + " |")
    return "\n".join(lines)


def build_command(args: argparse.Namespace, metrics_path: Path) -> tuple[list[str], dict[str, str]]:
    """The trainer command line and environment for one setting (the same keys ``scripts/run_demo_cpu.sh`` sets,
    but leaving micro-batching, checkpointing and validation frequency to the config unless overridden)."""
    data, work = Path(args.data_dir).resolve(), Path(args.work_dir).resolve()
    overrides = [
        f"actguide.mode={args.mode}",
        f"actor_rollout_ref.rollout.name={args.rollout}",
        f"data.train_files={data / 'train.parquet'}",
        f"data.val_files={data / 'val.parquet'}",
        f"data.train_batch_size={args.batch}",
        f"data.max_prompt_length={args.prompt_len}",
        f"data.max_response_length={args.response_len}",
        f"actor_rollout_ref.model.path={Path(args.model_path).resolve()}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.batch}",
        f"actor_rollout_ref.rollout.n={args.n}",
        f"actor_rollout_ref.rollout.prompt_length={args.prompt_len}",
        f"actor_rollout_ref.rollout.response_length={args.response_len}",
        f"trainer.total_training_steps={args.steps}",
        "trainer.total_epochs=1000",
        "trainer.val_before_train=false",
        f"trainer.default_local_dir={work / 'checkpoints'}",
        "trainer.experiment_name=step_cost",
        'trainer.logger=["console","file"]',
        f"hydra.run.dir={work / 'hydra'}",  # not ./outputs/ of the checkout
        *args.overrides,
    ]
    env = dict(os.environ)
    env.update(
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore::UserWarning:verl.workers.engine",
        ACTGUIDE_CORPUS=str(data / "corpus.jsonl"),
        VERL_FILE_LOGGER_PATH=str(metrics_path),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    command = [sys.executable, "-m", "recipe.actguide.main_actguide", "--config-name", "actguide_cpu", *overrides]
    return command, env


def run(args: argparse.Namespace) -> StepCost:
    """Run the trainer for one setting (its output goes to ``<work-dir>/train.log``) and summarize its metrics."""
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    metrics_path = work / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    command, env = build_command(args, metrics_path)
    started = time.monotonic()
    with (work / "train.log").open("w", encoding="utf-8") as log:
        returncode = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - started
    if returncode != 0:
        raise SystemExit(f"step_cost: the trainer exited with {returncode}; see {work / 'train.log'}")
    cost = summarize(read_metrics(metrics_path))
    cost.wall_s = wall
    cost.setting = {k: v for k, v in vars(args).items() if k not in ("compare", "out")}
    return cost


def load_cost(path: Path) -> StepCost:
    return StepCost(**json.loads(path.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with train.parquet, val.parquet and corpus.jsonl")
    parser.add_argument("--model-path", help="a model directory (config.json, weights, tokenizer)")
    parser.add_argument("--batch", type=int, default=8, help="prompts per step (also the PPO mini-batch)")
    parser.add_argument("--n", type=int, default=8, help="rollouts per prompt")
    parser.add_argument("--response-len", type=int, default=256, help="response tokens, all turns")
    parser.add_argument("--prompt-len", type=int, default=512, help="prompt token budget")
    parser.add_argument("--steps", type=int, default=4, help="training steps (the first is not measured)")
    parser.add_argument("--mode", default="fallback_adaptive", help="actguide.mode")
    parser.add_argument("--rollout", default="hf", help="rollout backend: hf | scripted")
    parser.add_argument("--work-dir", default="runs/step_cost", help="metrics.jsonl, train.log, checkpoints")
    parser.add_argument("--out", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--compare", type=Path, nargs="+", help="print saved --out files side by side; no run")
    parser.add_argument("overrides", nargs="*", help="hydra overrides, after --")
    args = parser.parse_args(argv)
    if args.compare:
        print(compare_table({path.stem: load_cost(path) for path in args.compare}))
        return 0
    if not (args.data_dir and args.model_path):
        parser.error("--data-dir and --model-path are required to run")
    cost = run(args)
    print(phase_table(cost))
    if args.out:
        args.out.write_text(json.dumps(asdict(cost), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
