"""``actguide-eval``: evaluate a model or a checkpoint on parquet files through verl's validation loop.

    actguide-eval --model MODEL_OR_global_step_N --data test.parquet [--data other.parquet] [--samples 3]
                  [--out DIR] [--level K | --level-ratio A] [--temperature T] [--top-p P] [--device cpu]
                  [hydra overrides of the recipe config ...]

Per data source it reports avg@K, unbiased pass@k (k = 1..K), Avg Pass@K / Best Pass@1, tool calls, turns,
response tokens, how each trajectory ended and invalid answers; it writes ``eval.json``, ``eval.md`` and every
trajectory (``trajectories.jsonl``) to ``--out`` (default: ``<checkpoint>/eval`` for a checkpoint, else
``./eval``). Settings the recipe config takes (rollout backend, response length, turns, tools, reward) are hydra
overrides, exactly as for ``actguide-train``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from actguide_plugin.analysis.eval_summary import EVAL_JSON, EVAL_MARKDOWN
from actguide_plugin.cli import usage_error

DEVICE_CONFIGS = {"cuda": "actguide_trainer", "cpu": "actguide_cpu"}  # --device → the recipe config it starts from


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actguide-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="Hugging Face model directory or global_step_N")
    parser.add_argument("--data", type=Path, action="append", required=True, help="parquet in our schema (repeat)")
    parser.add_argument("--samples", "-k", type=int, default=3, help="samples per prompt K (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    guidance = parser.add_mutually_exclusive_group()
    guidance.add_argument("--level", type=int, default=0, help="evaluate with guidance G_k (default 0: unguided)")
    guidance.add_argument("--level-ratio", type=float, default=0.0, help="guidance level k = ceil(a * L)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--device", choices=DEVICE_CONFIGS, default="cuda",
                        help="cuda: the actguide_trainer config; cpu: actguide_cpu (%(default)s)")  # fmt: skip
    parser.add_argument("--cpu", dest="device", action="store_const", const="cpu", help=argparse.SUPPRESS)  # old name
    parser.add_argument("--config-name", default=None, help="recipe config to start from (default actguide_trainer)")
    parser.add_argument("--keep-model", action="store_true", help="keep the model exported from a checkpoint")
    parser.add_argument("overrides", nargs="*", help="hydra overrides of the recipe config (key=value)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from actguide_plugin.commands.evaluate import ProgressMonitor, eval_overrides
    from actguide_plugin.commands.export import export_checkpoint, is_checkpoint
    from recipe.actguide.main_actguide import compose_config, launch

    if not args.model.exists():
        print(f"actguide-eval: --model {args.model} does not exist", file=sys.stderr)
        return 2
    checkpoint = is_checkpoint(args.model)
    out = args.out or (args.model / "eval" if checkpoint else Path("eval"))
    model, exported = args.model, None
    try:
        if checkpoint:
            exported = model = export_checkpoint(args.model, out / "model", overwrite=True)
        overrides = eval_overrides(
            model_path=model,
            data_files=args.data,
            out_dir=out,
            samples=args.samples,
            level=args.level,
            level_ratio=args.level_ratio,
            temperature=args.temperature,
            top_p=args.top_p,
        )
        config_name = args.config_name or DEVICE_CONFIGS[args.device]
        config = compose_config(config_name, overrides + list(args.overrides))
        (out / EVAL_JSON).unlink(missing_ok=True)  # never report a previous run's result
        with ProgressMonitor(f"evaluating {model.name}"):
            launch(config)
    except Exception as err:
        if (line := usage_error(err)) is None:
            raise
        print(f"actguide-eval: {line}", file=sys.stderr)
        return 2
    finally:
        if exported is not None and not args.keep_model:
            shutil.rmtree(exported, ignore_errors=True)
    if not (out / EVAL_JSON).is_file():
        print(f"actguide-eval: the run wrote no {out / EVAL_JSON} (see the log above)", file=sys.stderr)
        return 1
    summary = json.loads((out / EVAL_JSON).read_text(encoding="utf-8"))
    print((out / EVAL_MARKDOWN).read_text(encoding="utf-8"))
    print(f"{sum(s['trajectories'] for s in summary['sources'].values())} trajectories; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
