"""``actguide-preprocess attach``: add reference actions to a verl user's own parquet rows, changing nothing else.

``convert`` builds rows in the recipe's format; a verl user with a working GRPO setup (verl's Search-R1 rows: their
system prompt, ``reward_model.ground_truth = {"target": [...]}``, ``extra_info.tools_kwargs`` for their tools)
needs the opposite: their rows as they are, plus actions. Per input file, ``attach`` writes a file of the same
name whose columns and nested fields are the input's own arrays, passed through untouched, with three changes:

- ``extra_info.reference_actions`` (JSON string) and ``extra_info.num_reference_actions`` are added (replaced when
  the file was attached before); rows without a trace get ``[]`` and are never guided;
- ``extra_info.task_id`` is added only when a row has neither ``task_id`` nor ``index`` (the recipe's stable id);
- ``agent_name`` is set to the recipe's agent loop.

Joining: ``--key question`` (default) matches a row's ``extra_info.question`` (else its last user message) with a
trace's question; ``--key PATH`` matches the row value at a dotted path (e.g. ``extra_info.id``) with a trace's
id (``--id-field``). Both sides are normalized the same way (Unicode NFKC, runs of whitespace → one space,
stripped). Traces are read like ``convert`` reads them (any of its formats), renamed with ``--tool-map`` /
``--arg-map`` and checked against the user's tool yaml (:mod:`data_preprocess.tool_schema`); a trace that does not
fit is a counted reject. A row with several traces takes one by ``--pick``:

- ``shortest-correct`` (default): the fewest actions among traces whose final answer matches the row's own
  ``reward_model.ground_truth`` (the reward's normalization; the trace's gold when the row's cannot be read),
  ties to the earliest trace; a row with no correct trace gets none;
- ``first``: the earliest trace, as read (files in order, records in order).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from actguide_plugin.core.actions import REFERENCE_ACTIONS_KEY, Action, dumps_actions
from actguide_plugin.logs import get_logger
from actguide_plugin.names import AGENT_NAME
from actguide_plugin.reward.answer import normalize_answer, parse_gold_answers
from data_preprocess.convert import ON_ERROR, Rejection, refuse_markup, resolve_format
from data_preprocess.formats import FORMATS, FieldMap, ParsedTask, get_field
from data_preprocess.output import StagingDirectory
from data_preprocess.postprocess import ActionPolicy
from data_preprocess.records import InputFileError, RecordError, RecordReader, bounded, reason_category
from data_preprocess.tool_schema import ToolSchema, load_tool_schemas

logger = get_logger(__name__)

QUESTION_KEY = "question"
PICKS = ("shortest-correct", "first")
STATS_FILE = "attach_stats.json"
REJECTS_FILE = "rejects.jsonl"
UNMATCHED = ("no key", "no trace", "no correct trace")  # why a row got no actions


@dataclass(frozen=True)
class AttachOptions:
    """Everything ``attach`` needs; the CLI maps its flags one-to-one onto these fields."""

    data: Sequence[Path]
    actions: Sequence[Path]
    output_dir: Path
    tool_config: Path
    key: str = QUESTION_KEY
    format: str = "auto"
    fields: FieldMap = field(default_factory=FieldMap)
    tool_map: Mapping[str, str] = field(default_factory=dict)
    arg_map: Sequence[tuple[str, str, str]] = ()
    drop_args: Sequence[tuple[str, str]] = ()
    pick: str = "shortest-correct"
    drop_unmatched: bool = False
    on_error: str = "skip"

    def __post_init__(self) -> None:
        if self.pick not in PICKS:
            raise ValueError(f"pick must be one of {PICKS}, got {self.pick!r}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if not self.data or not self.actions:
            raise ValueError("attach needs at least one data file and one actions file")
        names = [Path(path).name for path in self.data]
        if len(set(names)) != len(names):
            raise ValueError(f"two data files share a file name ({', '.join(names)}): outputs would collide")


@dataclass
class AttachResult:
    """``failure`` says why nothing was written (``fail`` mode met a rejected trace, or no row matched)."""

    failure: str | None
    stats: dict[str, Any]
    rejections: list[Rejection]
    written: list[Path]

    @property
    def ok(self) -> bool:
        return self.failure is None


def normalize_key(value: Any) -> str | None:
    """The join form of a key: Unicode NFKC, whitespace runs → one space, stripped; None for no usable key."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    return " ".join(unicodedata.normalize("NFKC", value).split()) or None


def row_key(row: Mapping[str, Any], key: str) -> str | None:
    """A row's join key: its question (``extra_info.question``, else the last user message) or a dotted path."""
    if key != QUESTION_KEY:
        return normalize_key(get_field(row, key))  # a missing field is no str or int: no key
    question = get_field(row, "extra_info.question")
    if isinstance(question, str) and question.strip():
        return normalize_key(question)
    messages = row.get("prompt")
    users = [m.get("content") for m in messages or [] if isinstance(m, Mapping) and m.get("role") == "user"]
    return normalize_key(users[-1]) if users else None


@dataclass(frozen=True)
class _Trace:
    order: int
    task: ParsedTask


def _fit_actions(actions: Sequence[Action], policy: ActionPolicy, schemas: Mapping[str, ToolSchema]) -> list[Action]:
    return [schemas[action.name].fit(action, position) for position, action in enumerate(policy.apply(actions))]


def read_traces(
    options: AttachOptions,
    schemas: Mapping[str, ToolSchema],
    rejections: list[Rejection],
    notify: Callable[[str], None],
) -> tuple[dict[str, list[_Trace]], Counter[str]]:
    """Every accepted trace by normalized key; rejected ones go to ``rejections``, counted by category."""
    policy = ActionPolicy(
        tools=tuple(schemas), tool_map=dict(options.tool_map), drop_args=tuple(options.drop_args),
        arg_map=tuple(options.arg_map), list_arguments={},
    )  # fmt: skip
    by_key: dict[str, list[_Trace]] = defaultdict(list)
    reasons: Counter[str] = Counter()
    order = 0
    for path in options.actions:
        reader = RecordReader(path)
        format_name = resolve_format(reader, options.format, options.fields)
        notify(f"{path}: traces in format {format_name}, {len(reader)} records")
        for record in reader:
            try:
                if record.error is not None:
                    raise RecordError(record.error)
                if not isinstance(record.data, Mapping):
                    raise RecordError(f"invalid record: expected a JSON object, got {type(record.data).__name__}")
                task = FORMATS[format_name].parse(record.data, options.fields)
                key = task.question if options.key == QUESTION_KEY else task.task_id
                normalized = normalize_key(key)
                if normalized is None:
                    raise RecordError(f"missing key: the trace has no {'question' if key is None else 'id'} to join on")
                actions = _fit_actions(task.actions, policy, schemas)
                refuse_markup(actions)  # the question is the user's own row, shown as it is at every level
            except RecordError as err:
                reason = bounded(str(err))
                reasons[reason_category(reason)] += 1
                rejections.append(Rejection(record.file, record.location, reason, record.raw or record.data))
                continue
            by_key[normalized].append(_Trace(order, ParsedTask(task.question, task.answer, tuple(actions),
                                                               task.task_id, task.final_answer)))  # fmt: skip
            order += 1
    return by_key, reasons


def _correct(trace: _Trace, row_gold: Any) -> bool:
    """Whether the trace's final answer matches the row's gold (the trace's own gold if the row's is unreadable)."""
    if trace.task.final_answer is None:
        return False
    predicted = normalize_answer(trace.task.final_answer)
    for gold in (row_gold, trace.task.answer):
        try:
            golds = parse_gold_answers(gold)
        except (ValueError, TypeError):
            continue
        return any(predicted == normalize_answer(candidate) for candidate in golds)
    return False


def pick_trace(traces: Sequence[_Trace], pick: str, row_gold: Any) -> _Trace | None:
    """The trace a row gets (see the module docstring), or None."""
    if pick == "first":
        return min(traces, key=lambda t: t.order)
    correct = [t for t in traces if _correct(t, row_gold)]
    return min(correct, key=lambda t: (len(t.task.actions), t.order)) if correct else None


def _attach_file(
    path: Path, options: AttachOptions, traces: Mapping[str, list[_Trace]], counts: Counter[str], used: set[str]
) -> pa.Table:
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a missing or corrupt file
        raise InputFileError(f"{path}: cannot read parquet: {err}") from err
    extra_type = table.schema.field("extra_info").type if "extra_info" in table.column_names else None
    if extra_type is not None and not pa.types.is_struct(extra_type):
        raise InputFileError(f"{path}: column extra_info must be a struct (verl's RLHFDataset row), got {extra_type}")
    actions, numbers, task_ids, keep = [], [], [], []
    for index, row in enumerate(table.to_pylist()):
        key = row_key(row, options.key)
        candidates = traces.get(key, []) if key is not None else []
        chosen = (
            pick_trace(candidates, options.pick, get_field(row, "reward_model.ground_truth")) if candidates else None
        )
        counts["rows"] += 1
        if key is None:
            counts[UNMATCHED[0]] += 1
        elif not candidates:
            counts[UNMATCHED[1]] += 1
        elif chosen is None:
            counts[UNMATCHED[2]] += 1
        else:
            counts["matched"] += 1
            used.add(key)
        if len(candidates) > 1:
            counts["ambiguous"] += 1
        info = row.get("extra_info") or {}
        actions.append(dumps_actions(chosen.task.actions if chosen else ()))
        numbers.append(len(chosen.task.actions) if chosen else 0)
        has_id = info.get("task_id") is not None or info.get("index") is not None
        task_ids.append(None if has_id else hashlib.sha1(f"{path.name}/{index}/{key}".encode()).hexdigest()[:16])
        keep.append(chosen is not None or not options.drop_unmatched)
    table = _with_extra_info(table, {
        REFERENCE_ACTIONS_KEY: pa.array(actions, pa.string()),
        "num_reference_actions": pa.array(numbers, pa.int64()),
        **({"task_id": pa.array(task_ids, pa.string())} if any(t is not None for t in task_ids) else {}),
    })  # fmt: skip
    agent = pa.array([AGENT_NAME] * table.num_rows, pa.string())
    if "agent_name" in table.column_names:
        table = table.set_column(table.column_names.index("agent_name"), "agent_name", agent)
    else:
        table = table.append_column("agent_name", agent)
    return table.filter(pa.array(keep)) if not all(keep) else table


def _with_extra_info(table: pa.Table, added: Mapping[str, pa.Array]) -> pa.Table:
    """``extra_info`` with ``added`` fields set; every other child array is the input's own."""
    if "extra_info" not in table.column_names:
        return table.append_column("extra_info", pa.StructArray.from_arrays(list(added.values()), list(added)))
    column = table.column("extra_info").combine_chunks()
    names = [f.name for f in column.type]
    children = {name: column.field(name) for name in names}
    if "task_id" in added and "task_id" in children:  # some rows have an id: keep theirs, fill the others
        added = {**added, "task_id": pc.coalesce(children["task_id"].cast(pa.string()), added["task_id"])}
    children.update(added)
    struct = pa.StructArray.from_arrays(list(children.values()), list(children), mask=column.is_null())
    return table.set_column(table.column_names.index("extra_info"), "extra_info", struct)


def attach(options: AttachOptions, notify: Callable[[str], None] = logger.info) -> AttachResult:
    """Join, check and write; the output set appears all at once or not at all."""
    schemas = load_tool_schemas(options.tool_config)
    unknown = sorted(set(options.tool_map.values()) - set(schemas))
    if unknown:
        raise ValueError(f"--tool-map targets {', '.join(unknown)} are not tools of {options.tool_config} "
                         f"({', '.join(schemas)})")  # fmt: skip
    rejections: list[Rejection] = []
    traces, reasons = read_traces(options, schemas, rejections, notify)
    counts: Counter[str] = Counter()
    used: set[str] = set()
    tables = {Path(path).name: _attach_file(Path(path), options, traces, counts, used) for path in options.data}
    stats = {
        "data": [str(path) for path in options.data],
        "actions": [str(path) for path in options.actions],
        "key": options.key,
        "pick": options.pick,
        "rows": counts["rows"],
        "matched": counts["matched"],
        "unmatched": {why: counts[why] for why in UNMATCHED},
        "ambiguous": counts["ambiguous"],
        "dropped_unmatched": options.drop_unmatched,
        "traces": {
            "accepted": sum(len(v) for v in traces.values()),
            "rejected": len(rejections),
            "reject_reasons": dict(sorted(reasons.items())),
            "unused_keys": len(set(traces) - used),
        },
    }
    if rejections and options.on_error == "fail":
        return AttachResult(f"{len(rejections)} trace(s) rejected (--on-error fail)", stats, rejections, [])
    if not counts["matched"]:
        return AttachResult("no row matched a trace", stats, rejections, [])
    owned = [*tables, STATS_FILE, REJECTS_FILE]
    with StagingDirectory(options.output_dir, owned) as staging:
        for stale in staging.stale_removed:
            notify(f"removed {stale}, left by an interrupted run")
        for name, table in tables.items():
            pq.write_table(table, staging.path / name)
        if rejections:
            with (staging.path / REJECTS_FILE).open("w", encoding="utf-8", newline="\n") as handle:
                for rejection in rejections:
                    handle.write(json.dumps(rejection.to_json(), ensure_ascii=False, default=str) + "\n")
        (staging.path / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        written = staging.commit()
    return AttachResult(None, stats, rejections, written)
