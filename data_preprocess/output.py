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
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actguide_plugin.core.actions import REFERENCE_ACTIONS_KEY, dumps_actions
from actguide_plugin.logs import get_logger
from actguide_plugin.names import AGENT_NAME
from actguide_plugin.outputs import StagedOutputs as BaseStagedOutputs
from actguide_plugin.outputs import current_umask, swap_dir
from actguide_plugin.reward.answer import parse_gold_answers
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


GROUND_TRUTH_FORMATS = ("text", "search_r1")


def row_schema(tools: Sequence[str], ground_truth_format: str = "text") -> pa.Schema:
    """Fixed column order and types; ``tools_kwargs`` has one field per agent tool. ``ground_truth`` is the
    answer text (``text``) or Search-R1's ``{"target": [answers]}`` (``search_r1``, what verl's EM scorer reads)."""
    create_kwargs = pa.struct([("create_kwargs", pa.struct([("task_id", pa.string())]))])
    ground_truth = pa.struct([("target", pa.list_(pa.string()))]) if ground_truth_format == "search_r1" else pa.string()
    return pa.schema(
        [
            ("data_source", pa.string()),
            ("agent_name", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", ground_truth)])),
            (
                "extra_info",
                pa.struct(
                    [
                        ("index", pa.int64()),
                        ("split", pa.string()),
                        ("task_id", pa.string()),
                        ("question", pa.string()),
                        ("answer", pa.string()),
                        (REFERENCE_ACTIONS_KEY, pa.string()),
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
    ground_truth_format: str = "text",
) -> dict[str, Any]:
    """One output row. Validation rows store no reference actions: evaluation is unguided."""
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompt.append({"role": "user", "content": task.question})
    gold = answer_text(task.answer)
    ground_truth = {"target": parse_gold_answers(gold)} if ground_truth_format == "search_r1" else gold
    row = {
        "data_source": data_source,
        "agent_name": AGENT_NAME,
        "prompt": prompt,
        "ability": ABILITY,
        "reward_model": {"style": REWARD_STYLE, "ground_truth": ground_truth},
        "extra_info": {
            "index": index,
            "split": split,
            "task_id": task_id,
            "question": task.question,
            "answer": gold,
            REFERENCE_ACTIONS_KEY: dumps_actions(task.actions),
            "num_reference_actions": len(task.actions),
            "tools_kwargs": {tool: {"create_kwargs": {"task_id": task_id}} for tool in tools},
        },
    }
    return place_in_split(row, split, index)


def place_in_split(row: dict[str, Any], split: str, index: int) -> dict[str, Any]:
    """Set a row's split and index (in place); a validation row loses its reference actions."""
    info = row["extra_info"]
    info["split"], info["index"] = split, index
    if split == VAL:
        info[REFERENCE_ACTIONS_KEY], info["num_reference_actions"] = dumps_actions(()), 0
    return row


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
                system_prompt=system_prompt, tools=tools,
            )
        )  # fmt: skip
    return splits


def rows_table(rows: Sequence[dict[str, Any]], tools: Sequence[str]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=row_schema(tools))


class StagedOutputs(BaseStagedOutputs):
    """:class:`actguide_plugin.outputs.StagedOutputs` that also writes parquet tables."""

    def parquet(self, name: str, table: pa.Table) -> Path:
        return self.stage(name, lambda tmp: pq.write_table(table, tmp, row_group_size=_ROW_GROUP_SIZE))


class RowWriter:
    """Rows appended to a parquet file one row group at a time, so memory holds one group, not the file."""

    def __init__(self, path: Path, tools: Sequence[str], ground_truth_format: str = "text") -> None:
        self.path = path
        self._schema = row_schema(tools, ground_truth_format)
        self._writer = pq.ParquetWriter(path, self._schema)
        self._batch: list[dict[str, Any]] = []
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        self._batch.append(row)
        self.rows += 1
        if len(self._batch) >= _ROW_GROUP_SIZE:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._writer.write_table(pa.Table.from_pylist(self._batch, schema=self._schema))
            self._batch = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a parquet file, one row group in memory at a time."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_ROW_GROUP_SIZE):
        yield from batch.to_pylist()


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through StagingDirectory.__exit__, which removes the staging dir


class StagingDirectory:
    """A command's whole output set, written into a temporary directory beside ``directory``, then swapped in.

    The staging directory is ``<parent>/.<name>.staging-<pid>-<random>`` (same filesystem, so renames are
    atomic). :meth:`commit` renames it to ``directory`` when that does not exist, or swaps it with a
    ``directory`` that holds nothing but ``owned`` files (old set renamed aside, new set renamed in, old set
    deleted). A directory that also holds other files (e.g. the inputs), that is the working directory or
    above it, or that is a mount point (staged inside it then) gets each staged file renamed in instead, and
    ``owned`` files this run did not make are deleted. On any error, Ctrl-C or SIGTERM the staging directory is
    removed; staging directories left by a killed run (their pid is gone) are removed by the next run.
    """

    def __init__(self, directory: Path, owned: Sequence[str]) -> None:
        self.directory = Path(directory).resolve()
        self.owned = set(owned)
        self.path = self.directory  # set on enter
        self.stale_removed: list[Path] = []
        self._previous_sigterm: Any = None
        self._sigterm_installed = False
        self._committed = False

    @property
    def _prefixes(self) -> tuple[str, str]:
        return f".{self.directory.name}.staging-", f".{self.directory.name}.old-"

    def _home(self) -> Path:
        """Where to stage: beside the directory, or inside it when it is a mount point (renames cannot cross)."""
        target, parent = self.directory, self.directory.parent
        if target.is_dir() and target.stat().st_dev != parent.stat().st_dev:
            return target
        return parent

    def __enter__(self) -> StagingDirectory:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        if threading.current_thread() is threading.main_thread():  # before the directory exists
            self._previous_sigterm = signal.signal(signal.SIGTERM, _terminate)
            self._sigterm_installed = True
        self.path = Path(tempfile.mkdtemp(prefix=f"{self._prefixes[0]}{os.getpid()}-", dir=self._home()))
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._sigterm_installed:  # None: a handler installed outside Python, which we cannot put back
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous_sigterm is None else self._previous_sigterm)
        if not self._committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def _remove_stale(self) -> None:
        homes = [self.directory.parent] + ([self.directory] if self.directory.is_dir() else [])
        for entry in (entry for home in homes for entry in home.iterdir()):
            prefix = next((p for p in self._prefixes if entry.name.startswith(p)), None)
            if prefix is not None and not _pid_alive(entry.name[len(prefix) :].split("-", 1)[0]):
                shutil.rmtree(entry, ignore_errors=True)
                self.stale_removed.append(entry)
            elif entry.parent == self.directory and any(
                entry.name.startswith(f".{name}.") and entry.name.endswith(".tmp") for name in self.owned
            ):  # a temp file of the file-by-file staging that earlier versions used
                entry.unlink(missing_ok=True)
                self.stale_removed.append(entry)

    def _swappable(self) -> bool:
        """Whether ``directory`` can be replaced as a whole: only our files, beside us, not where we stand."""
        target = self.directory
        return (
            self.path.parent == target.parent
            and not Path.cwd().resolve().is_relative_to(target)
            and {entry.name for entry in target.iterdir()} <= self.owned
        )

    def commit(self) -> list[Path]:
        """Swap the staged files in; returns their final paths."""
        names = sorted(entry.name for entry in self.path.iterdir())
        target = self.directory
        if target.exists() and not target.is_dir():
            raise OSError(f"{target}: exists and is not a directory")
        os.chmod(self.path, target.stat().st_mode & 0o7777 if target.exists() else 0o777 & ~current_umask())
        if not target.exists() or self._swappable():
            swap_dir(self.path, target, old_prefix=f"{self._prefixes[1]}{os.getpid()}-")
        else:
            for name in names:
                os.replace(self.path / name, target / name)
            for name in self.owned - set(names):
                (target / name).unlink(missing_ok=True)
            os.rmdir(self.path)
        self._committed = True
        return [target / name for name in names]


def _pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # another user's live process
    return True
