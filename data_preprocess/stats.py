"""Dataset statistics: the summary ``convert``/``build-offline`` write, and the ``inspect`` report.

``inspect`` answers the questions that matter before a run: how many reference actions rows have, which
tools they use, and — given a tokenizer — how long the prompts are and which rows would exceed
``--max-prompt-length`` once the *full* guidance block (all L actions, paper §3.1) is appended. Those rows
can still train unguided, but the fallback could never show them their whole plan. Prompt lengths are
what the agent loop renders: the chat template with the generation prompt and the tool schemas of the tool
config (``--tool-config``, default the recipe's), unguided and at k = L (max, p95, ...), so
``data.max_prompt_length`` / ``rollout.prompt_length`` can be sized to the guided prompt.
"""

from __future__ import annotations

import contextlib
import io
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from actguide_plugin.core.actions import row_actions
from actguide_plugin.core.guidance import guided_messages
from data_preprocess.records import InputFileError


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer that ``inspect`` uses."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def __call__(self, text: str, **kwargs: Any) -> Any: ...


class DatasetStats:
    """Row count, reference actions per row (histogram), tool calls per tool, rows per data source, counted
    one row at a time (``convert`` streams its rows)."""

    def __init__(self) -> None:
        self.per_row: Counter[int] = Counter()
        self.tools: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()

    def add(self, row: Mapping[str, Any]) -> None:
        actions = row_actions(row)
        self.per_row[len(actions)] += 1
        self.tools.update(a.name for a in actions)
        self.sources[row["data_source"]] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": sum(self.per_row.values()),
            "actions_per_row": {str(k): self.per_row[k] for k in sorted(self.per_row)},
            "tool_calls": dict(sorted(self.tools.items())),
            "data_sources": dict(sorted(self.sources.items())),
        }


def dataset_stats(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """:class:`DatasetStats` of ``rows``."""
    stats = DatasetStats()
    for row in rows:
        stats.add(row)
    return stats.as_dict()


def prompt_tokens(
    tokenizer: ChatTokenizer, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None
) -> int:
    """Tokens of the prompt as the agent loop renders it: chat template, tool schemas, generation prompt."""
    text = tokenizer.apply_chat_template(
        list(messages), tools=tools or None, add_generation_prompt=True, tokenize=False
    )
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def tool_schemas(tool_config: str | Path) -> list[dict[str, Any]]:
    """The tool schemas the agent loop puts in the prompt, read as verl's ``ToolAgentLoop`` reads them
    (``initialize_tools_from_config``, then ``tool_schema.model_dump(exclude_unset=True, exclude_none=True)``)."""
    from verl.tools.tool_registry import initialize_tools_from_config

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # verl prints each schema; stdout is the report's
            tools = initialize_tools_from_config(str(tool_config))
    except Exception as err:  # verl raises whatever the tool classes and the yaml loader raise
        raise InputFileError(f"{tool_config}: cannot load the tool config: {type(err).__name__}: {err}") from err
    return [tool.tool_schema.model_dump(exclude_unset=True, exclude_none=True) for tool in tools]


def _summary(values: Sequence[int]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def pct(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "min": ordered[0],
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p95": pct(0.95),
        "max": ordered[-1],
        "mean": round(statistics.fmean(ordered), 1),
    }


_REQUIRED = {"data_source": None, "prompt": None, "extra_info": ("index", "split", "task_id", "reference_actions")}


def _our_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a parquet ``convert``/``build-offline`` wrote; :class:`InputFileError` (one line) otherwise."""
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as err:  # pyarrow's errors subclass these
        raise InputFileError(f"{path}: cannot read parquet: {err}") from err
    missing = [column for column in _REQUIRED if column not in schema.names]
    if not missing:
        info = schema.field("extra_info").type
        fields = {info.field(i).name for i in range(info.num_fields)} if isinstance(info, pa.StructType) else set()
        missing = [f"extra_info.{name}" for name in _REQUIRED["extra_info"] if name not in fields]
    if missing:
        raise InputFileError(
            f"{path}: not an actguide-preprocess dataset: no {', '.join(missing)} column "
            f"(columns: {', '.join(schema.names)}); make one with actguide-preprocess convert"
        )
    return pq.read_table(path).to_pylist()


def inspect_parquet(
    path: str | Path,
    tokenizer: ChatTokenizer | None = None,
    max_prompt_length: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Stats for one produced parquet; token lengths and overflow need ``tokenizer`` (``tools``: the schemas the
    chat template renders into every prompt, see :func:`tool_schemas`)."""
    rows = _our_rows(path)
    report: dict[str, Any] = {"file": str(path), **dataset_stats(rows)}
    report["splits"] = dict(sorted(Counter(row["extra_info"]["split"] for row in rows).items()))
    if tokenizer is None:
        return report
    plain, guided, overflow = [], [], []
    for row in rows:
        actions = row_actions(row)
        plain.append(prompt_tokens(tokenizer, row["prompt"], tools))
        guided.append(prompt_tokens(tokenizer, guided_messages(row["prompt"], actions, len(actions)), tools))
        if max_prompt_length is not None and guided[-1] > max_prompt_length:
            overflow.append({"index": row["extra_info"]["index"], "task_id": row["extra_info"]["task_id"],
                             "prompt_tokens": plain[-1], "full_guidance_tokens": guided[-1]})  # fmt: skip
    report["tool_schemas"] = [schema.get("function", schema).get("name") for schema in tools or ()]
    report["prompt_tokens"] = _summary(plain)
    report["full_guidance_prompt_tokens"] = _summary(guided)
    if max_prompt_length is not None:
        report["max_prompt_length"] = max_prompt_length
        report["overflow_with_full_guidance"] = len(overflow)
        report["overflow_unguided"] = sum(n > max_prompt_length for n in plain)
        report["overflow_rows"] = overflow
    return report


def format_report(report: Mapping[str, Any], max_listed: int = 20) -> str:
    """The ``inspect`` report as aligned text (``--json`` prints the dict instead)."""
    lines = [f"file: {report['file']}", f"rows: {report['rows']}"]
    lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in report["splits"].items()))
    lines.append("data sources: " + ", ".join(f"{k}={v}" for k, v in report["data_sources"].items()))
    lines.append("reference actions per row:")
    hist = report["actions_per_row"]
    width = max(1, *(v for v in hist.values())) if hist else 1
    for count, n in hist.items():
        lines.append(f"  {count:>4} | {n:>7} {'#' * max(1, round(40 * n / width))}")
    lines.append("tool calls:")
    lines += [f"  {tool:<20} {n:>9}" for tool, n in report["tool_calls"].items()] or ["  (none)"]
    if "tool_schemas" in report:
        lines.append("prompt tokens as the agent loop renders them (chat template, generation prompt, tool schemas: "
                     f"{', '.join(report['tool_schemas']) or 'none'})")  # fmt: skip
    for key, label in (("prompt_tokens", "  unguided"), ("full_guidance_prompt_tokens", "  full guidance (k = L)")):
        if key in report:
            lines.append(f"{label}: " + ", ".join(f"{k}={v}" for k, v in report[key].items()))
    if "max_prompt_length" in report:
        lines.append(
            f"rows over max_prompt_length={report['max_prompt_length']}: "
            f"{report['overflow_with_full_guidance']} with full guidance (k = L), "
            f"{report['overflow_unguided']} unguided"
        )
        for item in report["overflow_rows"][:max_listed]:
            lines.append(
                f"  index {item['index']} (task {item['task_id']}): "
                f"{item['prompt_tokens']} → {item['full_guidance_tokens']} tokens"
            )
        if len(report["overflow_rows"]) > max_listed:
            lines.append(f"  ... and {len(report['overflow_rows']) - max_listed} more")
    return "\n".join(lines)
