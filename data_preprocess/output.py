"""The output rows (what our agent loop and verl's ``RLHFDataset`` read), the split, and atomic parquet writes.

One row per task::

    data_source   str
    agent_name    "actguide_tool_agent"   (selects our agent loop per sample)
    prompt        [{role, content}]       (system prompt from a template file, then the question)
    ability       "search"
    reward_model  {style, ground_truth}
    extra_info    {index, split, task_id, question, answer, reference_actions (JSON string),
                   num_reference_actions, tools_kwargs}

``tools_kwargs`` is ``{tool: {"create_kwargs": {"task_id": ...}}}``: verl's ``ToolAgentLoop`` passes
``tools_kwargs[tool]["create_kwargs"]`` to ``tool.create``. It is never an empty struct, which parquet cannot
store. The table is built with an explicit schema and no pandas metadata, so the same rows give
byte-identical files.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actguide_plugin.core.actions import Action, dumps_actions
from actguide_plugin.logs import get_logger
from actguide_plugin.names import AGENT_NAME
from actguide_plugin.outputs import StagedOutputs as BaseStagedOutputs
from data_preprocess.formats import ParsedTask, answer_text

logger = get_logger(__name__)

ABILITY = "search"
REWARD_STYLE = "rule"
TRAIN, VAL = "train", "val"
DEFAULT_SYSTEM_PROMPT = "config/prompts/search_agent_system.txt"  # inside package recipe.actguide
TOOLS_PLACEHOLDER = "{tools}"
_ROW_GROUP_SIZE = 8192


def load_system_prompt(path: str | Path | None, tools: Sequence[str]) -> str:
    """The system prompt: a template file (default: the recipe's) with ``{tools}`` → the agent's tool names."""
    if path is None:
        resource = importlib.resources.files("recipe.actguide").joinpath(DEFAULT_SYSTEM_PROMPT)
        text = resource.read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return text.strip().replace(TOOLS_PLACEHOLDER, ", ".join(tools))


def default_task_id(question: str) -> str:
    """Stable id for a record without one: the same question always gets the same id (and a duplicate clashes)."""
    return hashlib.sha1(question.encode("utf-8")).hexdigest()[:16]


def row_schema(tools: Sequence[str]) -> pa.Schema:
    """Fixed column order and types; ``tools_kwargs`` has one field per agent tool."""
    create_kwargs = pa.struct([("create_kwargs", pa.struct([("task_id", pa.string())]))])
    return pa.schema(
        [
            ("data_source", pa.string()),
            ("agent_name", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            (
                "extra_info",
                pa.struct(
                    [
                        ("index", pa.int64()),
                        ("split", pa.string()),
                        ("task_id", pa.string()),
                        ("question", pa.string()),
                        ("answer", pa.string()),
                        ("reference_actions", pa.string()),
                        ("num_reference_actions", pa.int64()),
                        ("tools_kwargs", pa.struct([(tool, create_kwargs) for tool in tools])),
                    ]
                ),
            ),
        ]
    )


def build_row(
    task: ParsedTask,
    *,
    task_id: str,
    split: str,
    index: int,
    data_source: str,
    system_prompt: str | None,
    tools: Sequence[str],
    with_actions: bool = True,
) -> dict[str, Any]:
    """One output row. ``with_actions=False`` (validation) stores no reference actions: evaluation is unguided."""
    actions: Sequence[Action] = task.actions if with_actions else ()
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompt.append({"role": "user", "content": task.question})
    gold = answer_text(task.answer)
    return {
        "data_source": data_source,
        "agent_name": AGENT_NAME,
        "prompt": prompt,
        "ability": ABILITY,
        "reward_model": {"style": REWARD_STYLE, "ground_truth": gold},
        "extra_info": {
            "index": index,
            "split": split,
            "task_id": task_id,
            "question": task.question,
            "answer": gold,
            "reference_actions": dumps_actions(actions),
            "num_reference_actions": len(actions),
            "tools_kwargs": {tool: {"create_kwargs": {"task_id": task_id}} for tool in tools},
        },
    }


def validation_ids(task_ids: Sequence[str], val_ratio: float, seed: int) -> set[str]:
    """Tasks for validation: the ``round(n·ratio)`` ids with the smallest seeded hash.

    Ranking by ``sha256(seed:id)`` keeps a task's split independent of input order and file boundaries.
    At least one task goes to each side whenever ``0 < ratio < 1`` and there are two or more tasks.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    n = len(task_ids)
    if val_ratio == 0.0 or n < 2:
        return set()
    n_val = min(n - 1, max(1, round(n * val_ratio)))
    ranked = sorted(task_ids, key=lambda tid: hashlib.sha256(f"{seed}:{tid}".encode()).hexdigest())
    return set(ranked[:n_val])


@dataclass(frozen=True)
class TaskRecord:
    """An accepted task with its final id and data source, ready to become a row.

    Tasks sharing a ``split_group`` land in the same split (default: the task's own id), so tasks derived
    from one source question cannot leak its answers from train into val.
    """

    task: ParsedTask
    task_id: str
    data_source: str
    split_group: str | None = None

    @property
    def split_key(self) -> str:
        return self.split_group or self.task_id


def build_splits(
    tasks: Sequence[TaskRecord], *, val_ratio: float, seed: int, system_prompt: str | None, tools: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Rows per split, input order kept inside each split; ``index`` counts within the split."""
    val = validation_ids(list(dict.fromkeys(t.split_key for t in tasks)), val_ratio, seed)
    splits: dict[str, list[dict[str, Any]]] = {TRAIN: [], VAL: []}
    for item in tasks:
        split = VAL if item.split_key in val else TRAIN
        rows = splits[split]
        rows.append(
            build_row(
                item.task, task_id=item.task_id, split=split, index=len(rows), data_source=item.data_source,
                system_prompt=system_prompt, tools=tools, with_actions=split == TRAIN,
            )
        )  # fmt: skip
    return splits


def rows_table(rows: Sequence[dict[str, Any]], tools: Sequence[str]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=row_schema(tools))


class StagedOutputs(BaseStagedOutputs):
    """:class:`actguide_plugin.outputs.StagedOutputs` that also writes parquet tables."""

    def parquet(self, name: str, table: pa.Table) -> Path:
        return self.stage(name, lambda tmp: pq.write_table(table, tmp, row_group_size=_ROW_GROUP_SIZE))
