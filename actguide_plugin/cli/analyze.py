"""``actguide-analyze``: the paper's two findings for your model, and a run's training curves.

    actguide-analyze training RUN/metrics.jsonl [OTHER/metrics.jsonl ...] [--label grpo --label actguide]
    actguide-analyze barrier --model MODEL --data tasks.parquet [--samples 4] [--level-ratio 1.0] [overrides]
    actguide-analyze levels  --model MODEL --data tasks.parquet [--samples 4] [--tau T] [overrides]

Each writes a PNG, a markdown and a JSON summary into ``--out`` (default ``./analysis``). ``barrier`` and
``levels`` run the recipe's agent loop, tools and reward with the model in this process (HF transformers,
``--device cuda`` on a GPU); hydra overrides of the recipe config set response length, turns, tools and reward.
``--tau`` and ``--success-threshold`` are the config's ``actguide.tau`` / ``actguide.success_threshold`` (the
recipe's values when not given): a flag that contradicts an override of the same key is an error, never a winner.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actguide_plugin.cli import usage_error
from actguide_plugin.outputs import StagedOutputs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actguide-analyze", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    training = commands.add_parser("training", help="training curves from verl's metrics.jsonl (several overlaid)")
    training.add_argument("metrics", type=Path, nargs="+", help="verl file-logger output(s)")
    training.add_argument("--label", action="append", default=None, help="legend name per file (in order)")
    training.add_argument("--out", type=Path, default=Path("analysis"))

    for name, text in (
        ("barrier", "Finding 1: prefix Pass@K along guided trajectories, easy vs hard tasks"),
        ("levels", "Finding 2: success per guidance level, minimal sufficient levels, Δ per level"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--model", type=Path, required=True, help="Hugging Face model directory")
        sub.add_argument("--data", type=Path, action="append", required=True, help="parquet in our schema (repeat)")
        sub.add_argument("--samples", "-k", type=int, default=4, help="samples K per level / prefix state")
        sub.add_argument("--max-tasks", type=int, default=None, help="analyse only the first N tasks")
        sub.add_argument("--temperature", type=float, default=1.0)
        sub.add_argument("--device", default="cpu", help="torch device of the model (cpu, cuda)")
        sub.add_argument("--scripted", action="store_true", help="the scripted test policy (CPU tests, demos)")
        sub.add_argument("--success-threshold", type=float, default=None,
                         help="a sample succeeds above this (actguide.success_threshold of the config)")  # fmt: skip
        sub.add_argument("--out", type=Path, default=Path("analysis"))
        sub.add_argument("overrides", nargs="*", help="hydra overrides of the recipe config (key=value)")
        if name == "barrier":
            sub.add_argument("--level-ratio", type=float, default=1.0, help="guidance of the guided trajectory")
            sub.add_argument("--guided-tries", type=int, default=4, help="guided samples tried for a success")
        else:
            sub.add_argument("--tau", type=int, default=None,
                             help="successes that make a level sufficient (actguide.tau of the config)")  # fmt: skip
    return parser


def _write(out: Path, name: str, summary: dict[str, Any], markdown: str, plot: Callable[[Path], Any]) -> list[Path]:
    with StagedOutputs(out) as staged:
        staged.json(f"{name}.json", summary)
        staged.text(f"{name}.md", markdown)
        staged.stage(f"{name}.png", plot)
        return staged.commit()


def _training(args: argparse.Namespace) -> list[Path]:
    from actguide_plugin.analysis.plots import plot_training
    from actguide_plugin.analysis.training import read_steps, training_markdown, training_summary

    labels = args.label or [path.parent.name or str(path) for path in args.metrics]
    if len(labels) != len(args.metrics) or len(set(labels)) != len(labels):
        raise ValueError(f"need one distinct --label per metrics file, got {labels} for {len(args.metrics)} files")
    runs = {}
    for label, path in zip(labels, args.metrics, strict=True):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such metrics file")
        runs[label] = read_steps(path)
        if not runs[label]:
            raise ValueError(f"{path}: no records")
    summary = training_summary(runs)
    return _write(args.out, "training", summary, training_markdown(summary), lambda p: plot_training(runs, p))


SECTION_FLAGS = {"tau": "--tau", "success_threshold": "--success-threshold"}  # actguide.<key> -> its flag


def section_overrides(args: argparse.Namespace) -> list[str]:
    """The ``actguide.*`` overrides the given ``--tau`` / ``--success-threshold`` stand for, so the composed config
    stays the one source of both; a flag that contradicts an override of the same key is a ``ValueError``."""
    given = dict(o.lstrip("+").split("=", 1) for o in args.overrides if "=" in o)
    overrides = []
    for key, flag in SECTION_FLAGS.items():
        value = getattr(args, key, None)
        if value is None:
            continue
        override = given.get(f"actguide.{key}")
        if override is not None and not _same_number(override, value):
            raise ValueError(f"{flag} {value} contradicts the override actguide.{key}={override}: give one of them")
        overrides.append(f"actguide.{key}={value}")
    return overrides


def _same_number(text: str, value: float) -> bool:
    try:
        return float(text) == value
    except ValueError:
        return False


def _agent(args: argparse.Namespace):
    """The in-process agent on the composed recipe config, the tasks, and the config's ``actguide:`` section."""
    from actguide_plugin.commands.offline_agent import OfflineAgent
    from actguide_plugin.verl_glue.config import actguide_config
    from recipe.actguide.main_actguide import compose_config

    if not (args.model / "config.json").is_file():
        raise ValueError(f"{args.model}: not a Hugging Face model directory (export a checkpoint first)")
    # scored with the recipe's answer reward unless an override names another
    # (reward.custom_reward_function.path=null: verl's scorer by data_source)
    overrides = ["+actguide_reward=answer", f"actor_rollout_ref.model.path='{args.model.resolve()}'", *args.overrides]
    config = compose_config("actguide_trainer", overrides + section_overrides(args))
    section = actguide_config(config)
    agent = OfflineAgent(config, scripted=args.scripted, temperature=args.temperature, device=args.device)
    for path in args.data:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such data file")
    rows = agent.rows([str(p.resolve()) for p in args.data])
    return agent, rows[: args.max_tasks] if args.max_tasks else rows, section


def _barrier(args: argparse.Namespace) -> list[Path]:
    from actguide_plugin.analysis.barrier import barrier_markdown, summarize_barrier
    from actguide_plugin.analysis.plots import plot_barrier
    from actguide_plugin.commands.findings import prefix_curves

    agent, rows, section = _agent(args)
    curves = asyncio.run(
        prefix_curves(agent, rows, args.samples, args.level_ratio, args.guided_tries, section.success_threshold)
    )
    summary = summarize_barrier(curves)
    return _write(args.out, "barrier", summary, barrier_markdown(summary), lambda p: plot_barrier(summary, p))


def _levels(args: argparse.Namespace) -> list[Path]:
    from actguide_plugin.analysis.levels import levels_markdown, summarize_levels
    from actguide_plugin.analysis.plots import plot_levels
    from actguide_plugin.commands.findings import level_sweeps

    agent, rows, section = _agent(args)
    sweeps = asyncio.run(level_sweeps(agent, rows, args.samples, section.success_threshold))
    summary = summarize_levels(sweeps, section.tau)
    return _write(args.out, "levels", summary, levels_markdown(summary), lambda p: plot_levels(summary, p))


COMMANDS = {"training": _training, "barrier": _barrier, "levels": _levels}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        written = COMMANDS[args.command](args)
    except Exception as err:
        if (line := usage_error(err)) is None:
            raise
        print(f"actguide-analyze {args.command}: {line}", file=sys.stderr)
        return 2
    markdown = next(p for p in written if p.suffix == ".md")
    print(markdown.read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
