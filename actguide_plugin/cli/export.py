"""``actguide-export``: a training checkpoint as a Hugging Face model directory, with the run's files beside it.

    actguide-export CHECKPOINTS/global_step_N --out OUT_DIR [--eval-dir DIR] [--overwrite]

Wraps verl's FSDP model merger (weights in bfloat16, as verl writes them) and copies the run's resolved config,
the warm-start level cache and, if present, the ``actguide-eval`` summary (default ``global_step_N/eval``). The
directory loads with ``transformers`` and evaluates with ``actguide-eval --model OUT_DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actguide-export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a global_step_N folder of trainer.default_local_dir")
    parser.add_argument("--out", type=Path, metavar="OUT_DIR", help="the model directory to write (required)")
    parser.add_argument("former_out", type=Path, nargs="?", help=argparse.SUPPRESS)  # OUT_DIR as a 2nd positional
    parser.add_argument("--eval-dir", type=Path, default=None, help="actguide-eval output to include")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.out is None) == (args.former_out is None):
        parser.error("give the model directory to write once, as --out OUT_DIR")
    args.out = args.out or args.former_out
    from actguide_plugin.commands.export import export_checkpoint

    try:
        target = export_checkpoint(args.checkpoint, args.out, eval_dir=args.eval_dir, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as err:
        print(f"actguide-export: {err}", file=sys.stderr)
        return 2
    print(f"exported {args.checkpoint} to {target}: " + ", ".join(sorted(p.name for p in target.iterdir())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
