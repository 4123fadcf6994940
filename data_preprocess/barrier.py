"""``build-barrier``: the barrier world (:mod:`actguide_plugin.barrier.world`) as train/val parquet and a corpus.

Rows are in the schema every other command writes (:mod:`data_preprocess.output`): train rows carry their reference
actions, validation rows none (evaluation is unguided). Before anything is written, every reference plan is run
against the real local search index (BM25 over the corpus, as the ``web_search`` tool serves it with ``topk: 1``):
each search must name an entity linked from the question or the pages before it (the world's search answers only
those, :mod:`actguide_plugin.barrier.tool`), return the page it is meant to, and the last page must show the
task's answer. A world that
fails this check is a bug and is never written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actguide_plugin.barrier.world import (
    DATA_SOURCE,
    MAX_HOPS,
    MIN_HOPS,
    SEARCH_TOOL,
    SYSTEM_PROMPT,
    ChainTask,
    World,
    build_world,
    canonical_name,
    reachable_names,
)
from actguide_plugin.core.guidance import DEFAULT_TEMPLATE
from actguide_plugin.tools.corpus import Corpus, Document
from data_preprocess.formats import ParsedTask
from data_preprocess.output import TRAIN, VAL, StagedOutputs, build_row, rows_table
from data_preprocess.stats import dataset_stats

CORPUS_FILE = "corpus.jsonl"
TOOLS = (SEARCH_TOOL,)


class BarrierWorldError(RuntimeError):
    """A generated task cannot be solved by its reference actions with the real search index."""


def check_reference_plans(world: World, corpus: list[dict[str, str]]) -> None:
    """Run every task's plan through BM25 (top 1), as the ``web_search`` tool would; raise on the first miss."""
    from actguide_plugin.tools.bm25_index import LocalIndex  # bm25s: only for this command, not every CLI start

    index = LocalIndex.build(Corpus([Document(**doc) for doc in corpus]))
    for task in [*world.train, *world.val]:
        seen = [{"role": "user", "content": task.question}]  # what the linked search lets a trajectory name
        for action, (title, text) in zip(task.actions, task.pages(), strict=True):
            query = action.arguments["query"][0]
            if canonical_name(query) not in reachable_names(seen, DEFAULT_TEMPLATE.header.strip()):
                raise BarrierWorldError(
                    f"task {task.task_id}: web_search {query!r} is not linked from what came before"
                )
            seen.append({"role": "tool", "content": text})
            hits = index.search(query, 1)
            if not hits or hits[0].document.title != title:
                found = hits[0].document.title if hits else "nothing"
                raise BarrierWorldError(f"task {task.task_id}: web_search {query!r} finds {found!r}, not {title!r}")
        last_page = hits[0].document.text
        if task.code not in last_page:
            raise BarrierWorldError(f"task {task.task_id}: the last page {last_page!r} does not show {task.code}")


def _rows(tasks: list[ChainTask], split: str) -> list[dict[str, Any]]:
    return [
        build_row(
            ParsedTask(task.question, task.code, task.actions, task.task_id, task.code),
            task_id=task.task_id, split=split, index=index, data_source=DATA_SOURCE,
            system_prompt=SYSTEM_PROMPT, tools=TOOLS,
        )
        for index, task in enumerate(tasks)
    ]  # fmt: skip


def build_barrier(
    output_dir: str | Path,
    *,
    seed: int = 0,
    train: int = 256,
    val: int = 48,
    min_hops: int = MIN_HOPS,
    max_hops: int = MAX_HOPS,
) -> dict[str, Any]:
    """Write ``train.parquet``, ``val.parquet``, ``corpus.jsonl`` and ``stats.json``; return the stats."""
    world = build_world(seed, train, val, min_hops, max_hops)
    corpus = world.corpus()
    check_reference_plans(world, corpus)
    splits = {TRAIN: _rows(world.train, TRAIN), VAL: _rows(world.val, VAL)}
    stats = {
        "description": (
            "Barrier world: what is the code of an entity whose page points to another entity, and so on for "
            f"{min_hops}-{max_hops} hops; reference actions are one web_search per hop. Validation entities are "
            "never seen in training."
        ),
        "seed": seed,
        "hops": [min_hops, max_hops],
        "corpus_documents": len(corpus),
        TRAIN: dataset_stats(splits[TRAIN]),
        VAL: dataset_stats(splits[VAL]),
    }
    with StagedOutputs(output_dir) as out:
        for split, rows in splits.items():
            out.parquet(f"{split}.parquet", rows_table(rows, TOOLS))
        out.jsonl(CORPUS_FILE, corpus)
        out.json("stats.json", stats)
        out.commit()
    return stats
