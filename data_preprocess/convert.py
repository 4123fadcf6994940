"""``convert``: trajectories or QA records in any registered format → train/val parquet with reference actions.

The pipeline is read → parse (format) → clean actions (policy) → optional answer check → dedupe ids →
split → write. In ``fail`` mode every record is checked before anything is written, and any rejection
means no output at all; in ``skip`` mode rejected records go to ``rejects.jsonl`` with file, location and
reason. Everything streams: input records one at a time, accepted rows spilled to disk in row groups until
the split is known, so memory does not grow with the records' size. The output set is staged in a temporary
directory and swapped in by rename (:class:`~data_preprocess.output.StagingDirectory`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from actguide_plugin.core.actions import Action
from actguide_plugin.core.guidance import forged_markup
from actguide_plugin.logs import get_logger
from data_preprocess.formats import FORMATS, FieldMap, ParsedTask, answer_text, detect_format
from data_preprocess.output import (
    GROUND_TRUTH_FORMATS,
    TRAIN,
    VAL,
    RowWriter,
    StagingDirectory,
    build_row,
    default_task_id,
    load_system_prompt,
    place_in_split,
    read_rows,
    validation_ids,
)
from data_preprocess.postprocess import ActionPolicy, answer_matches
from data_preprocess.records import (
    InputFileError,
    RecordError,
    RecordReader,
    SourceRecord,
    bounded,
    reason_category,
)
from data_preprocess.stats import DatasetStats

logger = get_logger(__name__)

ON_ERROR = ("fail", "skip")
PROGRESS_MIN_RECORDS = 1000
DETECT_MAX_RECORDS = 100
REJECTS_FILE = "rejects.jsonl"
STATS_FILE = "stats.json"
OUTPUT_FILES = (f"{TRAIN}.parquet", f"{VAL}.parquet", STATS_FILE, REJECTS_FILE)
SPILL_FILE = ".accepted.parquet"  # inside the staging directory; never committed
KEPT_REJECTIONS = 100  # in ConvertResult; rejects.jsonl has them all


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
    ground_truth_format: str = "text"  # or "search_r1": {"target": [answers]}, what verl's Search-R1 scorer reads

    def __post_init__(self) -> None:
        if self.format != "auto" and self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; choose auto or one of {', '.join(FORMATS)}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.ground_truth_format not in GROUND_TRUTH_FORMATS:
            raise ValueError(
                f"ground_truth_format must be one of {GROUND_TRUTH_FORMATS}, got {self.ground_truth_format!r}"
            )
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
    """``ok`` is False when ``fail`` mode found rejections or nothing was accepted (then nothing is written).
    ``rejections`` holds the first :data:`KEPT_REJECTIONS`; ``stats["rejected"]`` counts them all."""

    ok: bool
    stats: dict[str, Any]
    rejections: list[Rejection]
    written: list[Path]


def _show_progress(option: bool | None, total: int) -> bool:
    if option is not None:
        return option
    return total > PROGRESS_MIN_RECORDS and sys.stderr.isatty()


def resolve_format(reader: RecordReader, requested: str, fields: FieldMap) -> str:
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
    refuse_markup(actions, parsed.question)
    return ParsedTask(parsed.question, gold, actions, parsed.task_id, parsed.final_answer)


def refuse_markup(actions: Sequence[Action], question: str | None = None) -> None:
    """A question or action spelling a chat control token, a line separator or the guidance header would forge
    a turn or a plan line in the guided prompt: the record is rejected (plan lines escape it anyway)."""
    texts = [] if question is None else [("question", question)]
    texts += [(f"action {i}", f"{a.name} {a.compact_arguments()}") for i, a in enumerate(actions, 1)]
    for where, text in texts:
        found = forged_markup(text)
        if found is not None:
            raise RecordError(f"chat markup (in the {where}): {found} could forge a chat turn or a plan line")


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


def _written_by_convert(val_file: Path) -> bool:
    """Whether the ``stats.json`` beside ``val_file`` records a validation split: a stale output of an earlier
    run (replaced or removed), not a file of the user's that happens to share the name (kept)."""
    try:
        stats = json.loads((val_file.parent / STATS_FILE).read_text(encoding="utf-8"))
        return int(stats["val"]["rows"]) > 0
    except (OSError, ValueError, KeyError, TypeError):
        return False


def convert(options: ConvertOptions, notify: Callable[[str], None] = logger.info) -> ConvertResult:
    """Run the pipeline; ``notify`` receives one-line progress notes (which format each file was read as)."""
    with _cyclic_gc_paused():
        return _convert(options, notify)


class _Rejections:
    """Counts every rejection by category, keeps the first few for the summary, streams all to a file."""

    def __init__(self, path: Path | None) -> None:
        self.first: list[Rejection] = []
        self.categories: Counter[str] = Counter()
        self._handle = path.open("w", encoding="utf-8", newline="\n") if path is not None else None

    def add(self, rejection: Rejection) -> None:
        self.categories[reason_category(rejection.reason)] += 1
        if len(self.first) < KEPT_REJECTIONS:
            self.first.append(rejection)
        if self._handle is not None:
            self._handle.write(json.dumps(rejection.to_json(), ensure_ascii=False) + "\n")

    @property
    def count(self) -> int:
        return sum(self.categories.values())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _convert(options: ConvertOptions, notify: Callable[[str], None]) -> ConvertResult:
    tools = options.policy.tools
    system_prompt = load_system_prompt(options.system_prompt_file, tools)  # a bad path fails before any parsing
    owned = OUTPUT_FILES
    old_val = Path(options.output_dir) / f"{VAL}.parquet"
    if options.val_ratio == 0 and old_val.exists() and not _written_by_convert(old_val):
        owned = tuple(f for f in OUTPUT_FILES if f != old_val.name)
        notify(
            f"kept {old_val}: no stats.json beside it says convert wrote it, and this run writes no validation split"
        )
    with StagingDirectory(options.output_dir, owned) as staging:
        for stale in staging.stale_removed:
            notify(f"removed {stale}, left by an interrupted run")
        rejections = _Rejections(staging.path / REJECTS_FILE if options.on_error == "skip" else None)
        # Pass 1: parse every record; accepted rows are spilled to disk in row groups (the split needs every id
        # first), so memory holds ids, not records.
        accepted = RowWriter(staging.path / SPILL_FILE, tools, options.ground_truth_format)
        split_keys: list[str] = []
        first_seen: dict[str, str] = {}
        per_file = []
        for path in options.inputs:
            reader = RecordReader(path)
            format_name = resolve_format(reader, options.format, options.fields)
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
                    rejections.add(
                        Rejection(record.file, record.location, bounded(str(err)), record.raw or record.data)
                    )
                    counts["rejected"] += 1
                    continue
                first_seen[task_id] = record.where()
                split_keys.append(task_id)
                accepted.write(
                    build_row(task, task_id=task_id, split=TRAIN, index=0, data_source=data_source,
                              system_prompt=system_prompt, tools=tools,
                              ground_truth_format=options.ground_truth_format)
                )  # fmt: skip
                counts["accepted"] += 1
            per_file.append(
                {"file": str(path), "format": format_name, "records": len(reader),
                 "accepted": counts["accepted"], "rejected": counts["rejected"]}
            )  # fmt: skip
        accepted.close()
        rejections.close()
        stats: dict[str, Any] = {
            "inputs": per_file,
            "accepted": accepted.rows,
            "rejected": rejections.count,
            "reject_reasons": dict(sorted(rejections.categories.items())),
        }
        if (rejections.count and options.on_error == "fail") or not accepted.rows:
            return ConvertResult(False, stats, rejections.first, [])

        # Pass 2: the split, then the rows streamed from the spill file into train/val.
        val = validation_ids(split_keys, options.val_ratio, options.seed)
        splits = [TRAIN, VAL] if options.val_ratio > 0 else [TRAIN]
        writers = {
            split: RowWriter(staging.path / f"{split}.parquet", tools, options.ground_truth_format) for split in splits
        }
        split_stats = {split: DatasetStats() for split in (TRAIN, VAL)}
        for key, row in zip(split_keys, read_rows(accepted.path), strict=True):
            split = VAL if key in val else TRAIN
            place_in_split(row, split, writers[split].rows)
            writers[split].write(row)
            split_stats[split].add(row)
        for writer in writers.values():
            writer.close()
        accepted.path.unlink()
        stats.update({split: split_stats[split].as_dict() for split in (TRAIN, VAL)})
        (staging.path / STATS_FILE).write_text(json.dumps(stats, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        written = staging.commit()
    return ConvertResult(True, stats, rejections.first, written)
