"""``actguide-preprocess`` (also ``python -m data_preprocess``): convert, attach, build-offline, build-barrier, inspect.

This module only wires flags to :mod:`data_preprocess.convert`, :mod:`data_preprocess.attach`,
:mod:`data_preprocess.offline`, :mod:`data_preprocess.barrier` and :mod:`data_preprocess.stats`. Exit status: 0 on
success, 1 when records were rejected in ``fail`` mode, nothing matched or an input cannot be used (nothing is
written then), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from actguide_plugin.barrier.world import MAX_HOPS, MIN_HOPS
from data_preprocess.attach import PICKS, QUESTION_KEY, AttachOptions, AttachResult, attach
from data_preprocess.barrier import BarrierWorldError, build_barrier
from data_preprocess.convert import ON_ERROR, ConvertOptions, ConvertResult, convert
from data_preprocess.formats import FORMATS, FieldMap
from data_preprocess.offline import CORPUS_FILE, OfflineDataError, build_offline
from data_preprocess.output import GROUND_TRUTH_FORMATS
from data_preprocess.postprocess import (
    DEFAULT_TOOLS,
    UNKNOWN_TOOL_POLICIES,
    ActionPolicy,
    parse_arg_map,
    parse_drop_args,
    parse_tool_map,
)
from data_preprocess.records import InputFileError, RecordError
from data_preprocess.stats import format_report, inspect_parquet, tool_schemas

MAX_ERRORS_SHOWN = 20
DEFAULT_TOOL_CONFIG = "config/tools/search_local.yaml"  # inside package recipe.actguide, as the recipe uses


def _comma_list(value: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _ratio(value: str) -> float:
    ratio = float(value)
    if not 0.0 <= ratio < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return ratio


def _add_out(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out DIR``, the output-folder flag of every console script (``--output-dir``: its former spelling)."""
    parser.add_argument("--out", "-o", "--output-dir", type=Path, required=True, metavar="DIR", help=f"writes {what}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actguide-preprocess", description="Build ActGuide-RL parquet datasets with reference actions."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    conv = commands.add_parser("convert", help="agent trajectories / QA records → train/val parquet")
    conv.add_argument("inputs", nargs="+", type=Path, help="input files: .jsonl, .json (array) or .parquet")
    _add_out(conv, "train.parquet, val.parquet, stats.json (and rejects.jsonl)")
    _add_trace_reading(conv)
    conv.add_argument("--tools", type=_comma_list, default=DEFAULT_TOOLS, help="the agent's tools (comma-separated)")
    conv.add_argument("--unknown-tool", choices=UNKNOWN_TOOL_POLICIES, default="reject",
                      help="a call to a tool outside --tools: reject the record or drop the call")  # fmt: skip
    conv.add_argument("--require-correct", action="store_true", help="keep only trajectories whose answer matches")
    conv.add_argument("--data-source", help="data_source column (default: each input file's stem)")
    conv.add_argument("--ground-truth-format", choices=GROUND_TRUTH_FORMATS, default=GROUND_TRUTH_FORMATS[0],
                      help="reward_model.ground_truth as answer text (default) or Search-R1's {\"target\": [...]}, "
                           "what verl's searchR1_* scorer reads (with --data-source searchR1_nq, say)")  # fmt: skip
    _add_split_and_prompt(conv, val_ratio=0.1)
    conv.add_argument("--on-error", choices=ON_ERROR, default="fail",
                      help="fail: any bad record → exit 1, nothing written; skip: write rejects.jsonl")  # fmt: skip
    conv.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                      help="progress bar on stderr (default: for >1000 records on a terminal)")  # fmt: skip

    att = commands.add_parser("attach", help="add reference actions to your own verl parquet rows, nothing else")
    att.add_argument("data", nargs="+", type=Path, help="your parquet files (verl RLHFDataset rows), kept as they are")
    att.add_argument("--actions", action="append", type=Path, required=True, metavar="TRACES",
                     help="trace file (.jsonl, .json or .parquet, any convert format); repeatable")  # fmt: skip
    _add_out(att, "one output file per input, same names")
    att.add_argument("--tool-config", type=Path, required=True,
                     help="your verl tool yaml: every reference action must fit one of its schemas")  # fmt: skip
    att.add_argument("--key", default=QUESTION_KEY,
                     help="join on 'question' (extra_info.question, else the last user message) or on the "
                          "row value at a dotted path, matched with the trace's --id-field (%(default)s)")  # fmt: skip
    _add_trace_reading(att)
    att.add_argument("--pick", choices=PICKS, default=PICKS[0], help="a row with several traces (%(default)s)")
    att.add_argument("--drop-unmatched", action="store_true", help="drop rows without a trace instead of keeping them")
    att.add_argument("--on-error", choices=ON_ERROR, default="skip",
                     help="a trace that cannot be read or does not fit the tool schemas: skip it and count it "
                          "(default, listed in rejects.jsonl) or fail with nothing written")  # fmt: skip

    off = commands.add_parser("build-offline", help="embedded FanOutQA + offline Wikipedia dataset, no network")
    _add_out(off, "train.parquet, val.parquet and corpus.jsonl")
    _add_split_and_prompt(off, val_ratio=0.25)
    off.add_argument("--multi-hop-only", action="store_true",
                     help="only whole FanOutQA questions, no single-hop tasks from their sub-questions")  # fmt: skip

    bar = commands.add_parser("build-barrier", help="the barrier world: multi-hop link chains, unseen val entities")
    _add_out(bar, "train.parquet, val.parquet and corpus.jsonl")
    bar.add_argument("--seed", type=int, default=0, help="world seed: same seed, same files (default: %(default)s)")
    bar.add_argument("--train", type=_positive, default=256, help="training tasks (default: %(default)s)")
    bar.add_argument("--val", type=_positive, default=48, help="validation tasks (default: %(default)s)")
    bar.add_argument("--min-hops", type=_positive, default=MIN_HOPS, help="fewest searches a task needs (%(default)s)")
    bar.add_argument("--max-hops", type=_positive, default=MAX_HOPS, help="most searches a task needs (%(default)s)")

    ins = commands.add_parser("inspect", help="stats of a produced parquet")
    ins.add_argument("parquet", type=Path)
    ins.add_argument("--tokenizer", help="local tokenizer directory (AutoTokenizer) for prompt token lengths")
    ins.add_argument("--max-prompt-length", type=int, help="report rows over this many tokens with full guidance")
    ins.add_argument("--tool-config", type=Path, default=None,
                     help="verl tool config whose schemas the prompt renders (default: the recipe's local search "
                          "tools; needs --tokenizer)")  # fmt: skip
    ins.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _add_trace_reading(parser: argparse.ArgumentParser) -> None:
    """Flags that say how trajectory records are read and their tool calls renamed (convert and attach)."""
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="input format (default: auto)")
    defaults = FieldMap()
    parser.add_argument("--question-field", default=defaults.question, help="dotted path (default: %(default)s)")
    parser.add_argument("--answer-field", default=defaults.answer, help="dotted path (default: %(default)s)")
    parser.add_argument("--messages-field", default=defaults.messages, help="chat messages (default: %(default)s)")
    parser.add_argument("--id-field", default=defaults.id, help="task id; missing → hash of the question")
    parser.add_argument("--actions-field", default=defaults.actions, help="for --format actions")
    parser.add_argument("--tool-map", action="append", default=[], metavar="SRC=DST[,...]", help="rename tools")
    parser.add_argument("--arg-map", action="append", default=[], metavar="TOOL.SRC=DST[,...]",
                        help="rename arguments (TOOL: source or mapped name, or *)")  # fmt: skip
    parser.add_argument("--drop-arg", action="append", default=[], metavar="TOOL.ARG[,...]", help="drop arguments")


def _field_map(args: argparse.Namespace) -> FieldMap:
    return FieldMap(args.question_field, args.answer_field, args.messages_field, args.id_field, args.actions_field)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _add_split_and_prompt(parser: argparse.ArgumentParser, val_ratio: float) -> None:
    parser.add_argument("--val-ratio", type=_ratio, default=val_ratio, help="share of tasks for val (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    parser.add_argument("--system-prompt-file", type=Path,
                        help="system prompt template; {tools} → tool names (default: the recipe's)")  # fmt: skip


def _run_convert(args: argparse.Namespace) -> int:
    options = ConvertOptions(
        inputs=args.inputs,
        output_dir=args.out,
        format=args.format,
        fields=_field_map(args),
        policy=ActionPolicy(
            tools=args.tools,
            tool_map=parse_tool_map(args.tool_map),
            drop_args=parse_drop_args(args.drop_arg),
            unknown_tool=args.unknown_tool,
            arg_map=parse_arg_map(args.arg_map),
        ),
        require_correct=args.require_correct,
        val_ratio=args.val_ratio,
        seed=args.seed,
        data_source=args.data_source,
        system_prompt_file=args.system_prompt_file,
        on_error=args.on_error,
        progress=args.progress,
        ground_truth_format=args.ground_truth_format,
    )
    result = convert(options, notify=lambda line: print(line, file=sys.stderr))
    _print_convert_summary(result, options)
    return 0 if result.ok else 1


def _print_convert_summary(result: ConvertResult, options: ConvertOptions) -> None:
    stats = result.stats
    if not result.ok:
        for rejection in result.rejections[:MAX_ERRORS_SHOWN]:
            print(f"error: {rejection.where()}: {rejection.reason}", file=sys.stderr)
        if stats["rejected"] > MAX_ERRORS_SHOWN:
            print(f"error: ... and {stats['rejected'] - MAX_ERRORS_SHOWN} more", file=sys.stderr)
        why = "no record was accepted" if not stats["accepted"] else f"{stats['rejected']} record(s) rejected"
        print(f"error: {why}; nothing written (use --on-error skip to keep the good records)", file=sys.stderr)
        return
    reasons = ", ".join(f"{k}: {v}" for k, v in stats["reject_reasons"].items())
    print(f"accepted {stats['accepted']}, rejected {stats['rejected']}" + (f" ({reasons})" if reasons else ""))
    print(f"train {stats['train']['rows']} rows, val {stats['val']['rows']} rows")
    for path in result.written:
        print(f"wrote {path}")


def _run_attach(args: argparse.Namespace) -> int:
    options = AttachOptions(
        data=args.data,
        actions=args.actions,
        output_dir=args.out,
        tool_config=args.tool_config,
        key=args.key,
        format=args.format,
        fields=_field_map(args),
        tool_map=parse_tool_map(args.tool_map),
        arg_map=parse_arg_map(args.arg_map),
        drop_args=parse_drop_args(args.drop_arg),
        pick=args.pick,
        drop_unmatched=args.drop_unmatched,
        on_error=args.on_error,
    )
    result = attach(options, notify=lambda line: print(line, file=sys.stderr))
    _print_attach_summary(result)
    return 0 if result.ok else 1


def _print_attach_summary(result: AttachResult) -> None:
    stats, traces = result.stats, result.stats["traces"]
    unmatched = ", ".join(f"{why}: {n}" for why, n in stats["unmatched"].items() if n)
    reasons = ", ".join(f"{why}: {n}" for why, n in traces["reject_reasons"].items())
    print(f"rows {stats['rows']}: matched {stats['matched']}, unmatched {sum(stats['unmatched'].values())}"
          + (f" ({unmatched}{', dropped' if stats['dropped_unmatched'] else ', kept without actions'})" if unmatched
             else "") + f", ambiguous {stats['ambiguous']} (picked by {stats['pick']})")  # fmt: skip
    print(f"traces: accepted {traces['accepted']}, rejected {traces['rejected']}"
          + (f" ({reasons})" if reasons else "") + f", never matched a row {traces['unused_keys']}")  # fmt: skip
    for rejection in result.rejections[:MAX_ERRORS_SHOWN]:
        print(f"{'error' if not result.ok else 'rejected'}: {rejection.where()}: {rejection.reason}", file=sys.stderr)
    if len(result.rejections) > MAX_ERRORS_SHOWN:
        print(f"... and {len(result.rejections) - MAX_ERRORS_SHOWN} more", file=sys.stderr)
    if not result.ok:
        print(f"error: {result.failure}; nothing written", file=sys.stderr)
    for path in result.written:
        print(f"wrote {path}")


def _run_build_offline(args: argparse.Namespace) -> int:
    stats = build_offline(
        args.out,
        val_ratio=args.val_ratio,
        seed=args.seed,
        system_prompt_file=args.system_prompt_file,
        multi_hop_only=args.multi_hop_only,
    )
    print(
        f"{stats['covered_questions']} of {stats['questions']} FanOutQA dev questions fully covered by "
        f"{stats['corpus_documents']} offline pages; rows: train {stats['train']['rows']}, val {stats['val']['rows']}"
    )
    for source in stats["tasks"]:
        print(f"  {source}: train {stats['train']['data_sources'].get(source, 0)}, "
              f"val {stats['val']['data_sources'].get(source, 0)}")  # fmt: skip
    if stats["single_hop"] is not None:
        skipped = ", ".join(f"{why} {n}" for why, n in stats["single_hop"]["skipped"].items() if n)
        print(f"  single-hop: {stats['single_hop']['kept']} of {stats['single_hop']['evidence_nodes']} "
              f"evidence nodes kept; skipped: {skipped or 'none'}")  # fmt: skip
    for name in ("train.parquet", "val.parquet", CORPUS_FILE, "stats.json"):
        print(f"wrote {args.out / name}")
    return 0


def _run_build_barrier(args: argparse.Namespace) -> int:
    stats = build_barrier(
        args.out, seed=args.seed, train=args.train, val=args.val, min_hops=args.min_hops, max_hops=args.max_hops
    )
    print(
        f"barrier world (seed {args.seed}): train {stats['train']['rows']} tasks, val {stats['val']['rows']} tasks, "
        f"{stats['corpus_documents']} pages; every reference plan checked against the search index"
    )
    for name in ("train.parquet", "val.parquet", CORPUS_FILE, "stats.json"):
        print(f"wrote {args.out / name}")
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    tokenizer, tools = None, None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        tool_config = args.tool_config or importlib.resources.files("recipe.actguide").joinpath(DEFAULT_TOOL_CONFIG)
        tools = tool_schemas(tool_config)
    report = inspect_parquet(args.parquet, tokenizer, args.max_prompt_length, tools)
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_report(report))
    return 0


_COMMANDS = {
    "convert": _run_convert,
    "attach": _run_attach,
    "build-offline": _run_build_offline,
    "build-barrier": _run_build_barrier,
    "inspect": _run_inspect,
}


def main(argv: Sequence[str] | None = None) -> int:
    # module loggers carry their level (ACTGUIDE_LOGGING_LEVEL, see actguide_plugin.logs); this only adds a handler
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "inspect" and not args.tokenizer:
        for flag, value in (("--max-prompt-length", args.max_prompt_length), ("--tool-config", args.tool_config)):
            if value is not None:
                parser.error(f"{flag} needs --tokenizer")
    try:
        return _COMMANDS[args.command](args)
    except (InputFileError, RecordError, OfflineDataError, BarrierWorldError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
