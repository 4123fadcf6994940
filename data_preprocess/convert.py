"""``convert``: trajectories or QA records in any registered format → train/val parquet with reference actions.

The pipeline is read → parse (format) → clean actions (policy) → optional answer check → dedupe ids →
split → write. In ``fail`` mode every record is checked before anything is written, and any rejection
means no output at all; in ``skip`` mode rejected records go to ``rejects.jsonl`` with file, location and
reason. Outputs are staged and renamed together (:class:`~data_preprocess.output.StagedOutputs`).
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from actguide_plugin.logs import get_logger
from data_preprocess.formats import FORMATS, FieldMap, ParsedTask, answer_text, detect_format
from data_preprocess.output import (
    TRAIN,
    VAL,
    StagedOutputs,
    TaskRecord,
    build_splits,
    default_task_id,
    load_system_prompt,
    rows_table,
)
from data_preprocess.postprocess import ActionPolicy, answer_matches
from data_preprocess.records import InputFileError, RecordError, RecordReader, SourceRecord, reason_category
from data_preprocess.stats import dataset_stats

logger = get_logger(__name__)

ON_ERROR = ("fail", "skip")
PROGRESS_MIN_RECORDS = 1000
DETECT_MAX_RECORDS = 100
REJECTS_FILE = "rejects.jsonl"
STATS_FILE = "stats.json"


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``convert`` needs; the CLI maps its flags one-to-one onto these fields."""

    inputs: Sequence[Path]
    output_dir: Path
    format: str = "auto"
    fields: FieldMap = field(default_factory=FieldMap)
    policy: ActionPolicy = field(default_factory=ActionPolicy)
    require_correct: bool = False
    val_ratio: float = 0.1
    seed: int = 0
    data_source: str | None = None  # None: each input file's stem
    system_prompt_file: Path | None = None  # None: the recipe's default template
    on_error: str = "fail"
    progress: bool | None = None  # None: only for large inputs on a terminal

    def __post_init__(self) -> None:
        if self.format != "auto" and self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; choose auto or one of {', '.join(FORMATS)}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if not self.inputs:
            raise ValueError("no input files")


@dataclass(frozen=True)
class Rejection:
    file: str
    location: str
    reason: str
    record: Any = None

    def where(self) -> str:
        return f"{self.file}:{self.location}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "location": self.location, "reason": self.reason, "record": self.record}


@dataclass
class ConvertResult:
    """``ok`` is False when ``fail`` mode found rejections or nothing was accepted (then nothing is written)."""

    ok: bool
    stats: dict[str, Any]
    rejections: list[Rejection]
    written: list[Path]


def _show_progress(option: bool | None, total: int) -> bool:
    if option is not None:
        return option
    return total > PROGRESS_MIN_RECORDS and sys.stderr.isatty()


def _resolve_format(reader: RecordReader, requested: str, fields: FieldMap) -> str:
    if requested != "auto":
        return requested
    sample = (r.data for r in islice(reader, DETECT_MAX_RECORDS) if r.error is None)
    name = detect_format(sample, fields)
    if name is None:
        raise InputFileError(
            f"{reader.path}: cannot detect the input format from its first {DETECT_MAX_RECORDS} records; "
            f"pass --format ({', '.join(FORMATS)})"
        )
    return name


def _accept(record: SourceRecord, options: ConvertOptions, format_name: str) -> ParsedTask:
    if record.error is not None:
        raise RecordError(record.error)
    if not isinstance(record.data, Mapping):
        raise RecordError(f"invalid record: expected a JSON object, got {type(record.data).__name__}")
    parsed = FORMATS[format_name].parse(record.data, options.fields)
    gold = answer_text(parsed.answer, options.fields.answer)
    actions = options.policy.apply(parsed.actions)
    if options.require_correct:
        if parsed.final_answer is None:
            raise RecordError("no final answer: the trajectory gives no answer to check (--require-correct)")
        if not answer_matches(parsed.final_answer, gold):
            raise RecordError(
                f"wrong answer: the trajectory answered {parsed.final_answer!r}, gold is {gold!r} (--require-correct)"
            )
    return ParsedTask(parsed.question, gold, actions, parsed.task_id, parsed.final_answer)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Bulk parsing allocates millions of acyclic containers; cyclic GC passes over them reclaim nothing and
    took about half the run time on 50k trajectories (benchmarks/preprocess_throughput.py). Reference
    counting still frees everything as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def convert(options: ConvertOptions, notify: Callable[[str], None] = logger.info) -> ConvertResult:
    """Run the pipeline; ``notify`` receives one-line progress notes (which format each file was read as)."""
    with _cyclic_gc_paused():
        return _convert(options, notify)


def _convert(options: ConvertOptions, notify: Callable[[str], None]) -> ConvertResult:
    tools = options.policy.tools
    system_prompt = load_system_prompt(options.system_prompt_file, tools)  # a bad path fails before any parsing
    accepted: list[TaskRecord] = []
    rejections: list[Rejection] = []
    first_seen: dict[str, str] = {}
    per_file = []
    for path in options.inputs:
        reader = RecordReader(path)
        format_name = _resolve_format(reader, options.format, options.fields)
        how = "auto-detected" if options.format == "auto" else "given"
        notify(f"{path}: format {format_name} ({how}), {len(reader)} records")
        data_source = options.data_source or Path(path).stem
        counts: Counter[str] = Counter()
        bar = tqdm(
            reader, total=len(reader), desc=Path(path).name, unit="rec", file=sys.stderr,
            disable=not _show_progress(options.progress, len(reader)),
        )  # fmt: skip
        for record in bar:
            try:
                task = _accept(record, options, format_name)
                task_id = task.task_id or default_task_id(task.question)
                if task_id in first_seen:
                    raise RecordError(f"duplicate id: {task_id!r} (first seen at {first_seen[task_id]})")
            except RecordError as err:
                rejections.append(Rejection(record.file, record.location, str(err), record.raw or record.data))
                counts["rejected"] += 1
                continue
            first_seen[task_id] = record.where()
            accepted.append(TaskRecord(task, task_id, data_source))
            counts["accepted"] += 1
        per_file.append(
            {"file": str(path), "format": format_name, "records": len(reader),
             "accepted": counts["accepted"], "rejected": counts["rejected"]}
        )  # fmt: skip

    stats: dict[str, Any] = {
        "inputs": per_file,
        "accepted": len(accepted),
        "rejected": len(rejections),
        "reject_reasons": dict(sorted(Counter(reason_category(r.reason) for r in rejections).items())),
    }
    if (rejections and options.on_error == "fail") or not accepted:
        return ConvertResult(False, stats, rejections, [])

    splits = build_splits(
        accepted, val_ratio=options.val_ratio, seed=options.seed, system_prompt=system_prompt, tools=tools
    )
    stats.update({split: dataset_stats(rows) for split, rows in splits.items()})
    with StagedOutputs(options.output_dir) as out:
        out.parquet(f"{TRAIN}.parquet", rows_table(splits[TRAIN], tools))
        if options.val_ratio > 0:
            out.parquet(f"{VAL}.parquet", rows_table(splits[VAL], tools))
        else:
            out.remove(f"{VAL}.parquet")
        if options.on_error == "skip":
            out.jsonl(REJECTS_FILE, (r.to_json() for r in rejections))
        else:
            out.remove(REJECTS_FILE)
        out.json(STATS_FILE, stats)
        written = out.commit()
    return ConvertResult(True, stats, rejections, written)
