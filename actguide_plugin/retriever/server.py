"""``actguide-retriever``: one BM25 retriever over ``corpus.jsonl`` served over HTTP (FastAPI + uvicorn).

Why a server: a multi-node training job should load the index once and let every rollout worker query it
(tool yaml ``search_retrieval_server.yaml``), instead of holding one copy per worker process.

Endpoints (all JSON; a bad request gets HTTP 400 with ``{"error": message}``, one that asks for too much, HTTP
413 with the limit to stay under; the limits are :class:`ServerLimits`, set by command-line flags):

- ``POST /retrieve`` — the Search-R1 protocol: ``{"queries": [...], "topk": k, "return_scores": true}`` ->
  ``{"result": [[{"document": {...}, "score": s}, ...], ...]}`` (bare documents when ``return_scores`` is
  false). Documents carry ``id``, ``title``, ``url``, ``text`` and Search-R1's ``contents``
  (``"Title"\\ntext``), so Search-R1 clients work unchanged.
- ``POST /search`` — ``{"queries": [...], "topk": k}`` -> ``{"result": [[{"title", "url", "snippet",
  "score"}]]}``, snippets shortened for display.
- ``POST /visit`` — ``{"urls": [...]}`` (urls, titles or document ids) -> ``{"result": [{"request", "title", "url",
  "text"} | {"request", "error"}]}``.
- ``GET /health`` — ``{"status": "ok", "documents": n}``.

It binds 127.0.0.1 unless ``--host`` says otherwise: the corpus is not a public service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from actguide_plugin.logs import get_logger
from actguide_plugin.tools.bm25_index import LocalIndex, ScoredDocument, get_local_index
from actguide_plugin.tools.corpus import CorpusFormatError
from actguide_plugin.tools.formatting import shorten

logger = get_logger(__name__)
_PARSE_ON_LOOP_BYTES = 64 * 2**10


@dataclass(frozen=True)
class ServerLimits:
    """Request limits; anything beyond them is refused (HTTP 400 or 413) rather than served slowly.

    The defaults admit the largest Search-R1 batch a rollout sends (512 queries x topk 100) while bounding
    what one request can cost: its body, the documents it asks for and the bytes of its answer.

    Fields:
        max_queries: items per request in ``queries`` / ``urls``.
        max_query_chars: length of one query or url.
        default_topk: ``topk`` when a request leaves it out.
        max_topk: largest ``topk`` accepted.
        snippet_chars: snippet length in ``/search`` results.
        max_body_bytes: size of a request body (413 beyond).
        max_results: ``len(queries) * topk`` in one request (413 beyond).
        max_response_bytes: size of one encoded answer (413 beyond: ask for fewer queries or a smaller topk).
    """

    max_queries: int = 512
    max_query_chars: int = 2048
    default_topk: int = 3
    max_topk: int = 100
    snippet_chars: int = 300
    max_body_bytes: int = 8 * 2**20
    max_results: int = 512 * 100
    max_response_bytes: int = 256 * 2**20


class BadRequest(ValueError):
    """The request body is malformed; the message says what to fix."""

    status_code = 400


class TooLarge(BadRequest):
    """The request, or the answer it asks for, exceeds a :class:`ServerLimits` bound."""

    status_code = 413


async def _read_body(request: Request, limits: ServerLimits) -> bytes:
    """The body, refused as soon as it is known to exceed ``max_body_bytes`` (never buffered past it)."""
    too_large = f"request body exceeds {limits.max_body_bytes} bytes (--max-body-bytes)"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise TooLarge(too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise TooLarge(too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequest(f"request body is not valid JSON: {err}") from err
    except RecursionError as err:  # the C parser recurses once per nesting level
        raise BadRequest("request body is nested too deeply to parse") from err
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _string_list(body: dict[str, Any], key: str, limits: ServerLimits) -> list[str]:
    items = body.get(key)
    if not isinstance(items, list):
        raise BadRequest(f"'{key}' is required: a non-empty list of strings")
    if not items:
        raise BadRequest(f"'{key}' is empty")
    if len(items) > limits.max_queries:
        raise BadRequest(f"'{key}' has {len(items)} items; at most {limits.max_queries} per request")
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise BadRequest(f"{key}[{position}] must be a string, got {type(item).__name__}")
        if len(item) > limits.max_query_chars:
            raise BadRequest(f"{key}[{position}] has {len(item)} characters; at most {limits.max_query_chars}")
    return items


def _topk(body: dict[str, Any], limits: ServerLimits) -> int:
    topk = body.get("topk", limits.default_topk)
    if not isinstance(topk, int) or isinstance(topk, bool) or not 1 <= topk <= limits.max_topk:
        raise BadRequest(f"'topk' must be an integer in [1, {limits.max_topk}], got {topk!r}")
    return topk


def _check_results(queries: Sequence[str], topk: int, limits: ServerLimits) -> None:
    if len(queries) * topk > limits.max_results:
        raise TooLarge(
            f"request asks for {len(queries) * topk} results ({len(queries)} queries x topk {topk}); "
            f"at most {limits.max_results} per request (--max-results)"
        )


def _encode(result: list[Any], limits: ServerLimits) -> bytes:
    """``{"result": result}`` as JSON bytes, refused when larger than ``max_response_bytes``."""
    content = json.dumps({"result": result}, ensure_ascii=False, separators=(",", ":")).encode()
    if len(content) > limits.max_response_bytes:
        raise TooLarge(
            f"answer would be {len(content)} bytes; at most {limits.max_response_bytes} (--max-response-bytes): "
            "ask for fewer queries or a smaller topk"
        )
    return content


def _search_r1_document(hit: ScoredDocument) -> dict[str, str]:
    doc = hit.document
    return {
        "id": doc.id,
        "title": doc.title,
        "url": doc.url,
        "text": doc.text,
        "contents": f'"{doc.title}"\n{doc.text}',
    }


Render = Callable[[list[list[ScoredDocument]]], bytes]


@dataclass
class _Job:
    """One request's queries, waiting to be scored; ``render`` turns its hits into the response body."""

    queries: list[str]
    topk: int
    render: Render
    future: asyncio.Future[bytes]


def _run_batch(index: LocalIndex, jobs: list[_Job]) -> list[bytes | BadRequest]:
    """Worker thread: score every job's queries in one call, then encode each job's answer."""
    hits = index.search_many([(query, job.topk) for job in jobs for query in job.queries])
    outcomes: list[bytes | BadRequest] = []
    start = 0
    for job in jobs:
        try:
            outcomes.append(job.render(hits[start : start + len(job.queries)]))
        except BadRequest as err:  # an answer over max_response_bytes fails its request only
            outcomes.append(err)
        start += len(job.queries)
    return outcomes


class BatchingScorer:
    """Scores and encodes requests in worker threads, batching the queries of concurrent requests.

    Scoring and JSON encoding never run on the event loop, so ``/health`` and request parsing stay responsive
    while a 512-query x topk-100 request is served. A request that finds a worker free is dispatched at once
    (no added latency when idle); requests arriving while every worker is busy (the few ms one batch takes
    under load) are collected and go to the next free worker as one batch: one thread hop and one
    ``LocalIndex.search_many`` call for all of them, with repeated queries scored once.
    """

    def __init__(self, index: LocalIndex, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.index = index
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="actguide-retriever")
        self._idle_workers = workers
        self._pending: list[_Job] = []

    @property
    def pending_queries(self) -> int:
        """Queries waiting for a free worker."""
        return sum(len(job.queries) for job in self._pending)

    async def answer(self, queries: list[str], topk: int, render: Render) -> bytes:
        """The response body for one request: its hits, rendered by ``render`` in a worker thread."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(queries, topk, render, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        if not self._idle_workers or not self._pending:
            return
        jobs, self._pending = self._pending, []
        self._idle_workers -= 1
        done = asyncio.get_running_loop().run_in_executor(self._executor, _run_batch, self.index, jobs)
        done.add_done_callback(lambda outcome: self._finish(jobs, outcome))

    def _finish(self, jobs: list[_Job], outcome: asyncio.Future[list[bytes | BadRequest]]) -> None:
        self._idle_workers += 1
        error = RuntimeError("the retriever is shutting down") if outcome.cancelled() else outcome.exception()
        for position, job in enumerate(jobs):
            if job.future.done():  # the client went away
                continue
            result = error if error is not None else outcome.result()[position]
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        self._dispatch()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def create_app(index: LocalIndex, limits: ServerLimits | None = None, workers: int = 2) -> FastAPI:
    """The FastAPI application over an opened index (tests and ``main`` both build it here).

    ``workers`` threads score and encode (see :class:`BatchingScorer`); the scorer is ``app.state.scorer``.
    """
    limits = limits or ServerLimits()
    scorer = BatchingScorer(index, workers)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        scorer.close()

    app = FastAPI(title="actguide-retriever", lifespan=lifespan)
    app.state.scorer = scorer

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, err: BadRequest) -> JSONResponse:
        return JSONResponse(status_code=err.status_code, content={"error": str(err)})

    async def parsed_body(request: Request) -> dict[str, Any]:
        raw = await _read_body(request, limits)
        # A body of megabytes takes milliseconds to parse: not on the loop.
        return _parse_body(raw) if len(raw) < _PARSE_ON_LOOP_BYTES else await asyncio.to_thread(_parse_body, raw)

    async def queries_and_topk(request: Request) -> tuple[dict[str, Any], list[str], int]:
        body = await parsed_body(request)
        queries, topk = _string_list(body, "queries", limits), _topk(body, limits)
        _check_results(queries, topk, limits)
        return body, queries, topk

    def json_response(content: bytes) -> Response:
        return Response(content, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "documents": len(index.corpus)}

    @app.post("/retrieve")
    async def retrieve(request: Request) -> Response:
        body, queries, topk = await queries_and_topk(request)
        return_scores = body.get("return_scores", False)
        if not isinstance(return_scores, bool):
            raise BadRequest(f"'return_scores' must be true or false, got {return_scores!r}")

        def render(hits_per_query: list[list[ScoredDocument]]) -> bytes:
            return _encode(
                [
                    [
                        {"document": _search_r1_document(hit), "score": hit.score}
                        if return_scores
                        else _search_r1_document(hit)
                        for hit in hits
                    ]
                    for hits in hits_per_query
                ],
                limits,
            )

        return json_response(await scorer.answer(queries, topk, render))

    @app.post("/search")
    async def search(request: Request) -> Response:
        _, queries, topk = await queries_and_topk(request)

        def render(hits_per_query: list[list[ScoredDocument]]) -> bytes:
            return _encode(
                [
                    [
                        {
                            "title": hit.document.title,
                            "url": hit.document.url,
                            "snippet": shorten(hit.document.text, limits.snippet_chars),
                            "score": hit.score,
                        }
                        for hit in hits
                    ]
                    for hits in hits_per_query
                ],
                limits,
            )

        return json_response(await scorer.answer(queries, topk, render))

    @app.post("/visit")
    async def visit(request: Request) -> Response:
        urls = _string_list(await parsed_body(request), "urls", limits)

        def render() -> bytes:
            result = []
            for requested in urls:
                doc = index.corpus.lookup(requested)
                if doc is None:
                    result.append({"request": requested, "error": f"page not found: {requested}"})
                else:
                    result.append({"request": requested, "title": doc.title, "url": doc.url, "text": doc.text})
            return _encode(result, limits)

        return json_response(await asyncio.to_thread(render))  # pages can be long: encode off the loop

    return app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actguide-retriever",
        description="Serve BM25 search over corpus.jsonl with the Search-R1 /retrieve protocol (+ /search, /visit).",
    )
    parser.add_argument(
        "--corpus",
        default=os.environ.get("ACTGUIDE_CORPUS"),
        help="corpus: {id|docid, text, title?, url?} or Search-R1 {id, contents} lines (default: $ACTGUIDE_CORPUS)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--k1", type=float, default=1.5, help="BM25 k1")
    parser.add_argument("--b", type=float, default=0.75, help="BM25 b")
    defaults = ServerLimits()
    parser.add_argument("--max-queries", type=int, default=defaults.max_queries, help="items per request")
    parser.add_argument("--max-query-chars", type=int, default=defaults.max_query_chars)
    parser.add_argument("--default-topk", type=int, default=defaults.default_topk)
    parser.add_argument("--max-topk", type=int, default=defaults.max_topk)
    parser.add_argument("--snippet-chars", type=int, default=defaults.snippet_chars)
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes, help="413 beyond")
    parser.add_argument("--max-results", type=int, default=defaults.max_results, help="queries x topk; 413 beyond")
    parser.add_argument(
        "--max-response-bytes", type=int, default=defaults.max_response_bytes, help="encoded answer; 413 beyond"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="threads that score and encode (batches of concurrent requests)"
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``actguide-retriever``."""
    import uvicorn

    args = _parser().parse_args(argv)
    # A scoring thread holds the GIL for up to the switch interval (5 ms by default) each time the event loop
    # wants it back; 0.5 ms keeps /health and request parsing from queueing behind it (2x c=64 throughput).
    sys.setswitchinterval(0.0005)
    if not args.corpus:
        _parser().error("--corpus is required (or set ACTGUIDE_CORPUS)")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = ServerLimits(
        max_queries=args.max_queries,
        max_query_chars=args.max_query_chars,
        default_topk=args.default_topk,
        max_topk=args.max_topk,
        snippet_chars=args.snippet_chars,
        max_body_bytes=args.max_body_bytes,
        max_results=args.max_results,
        max_response_bytes=args.max_response_bytes,
    )
    logger.setLevel(args.log_level.upper())
    started = time.perf_counter()
    try:
        index = get_local_index(args.corpus, k1=args.k1, b=args.b)
    except (CorpusFormatError, OSError) as err:
        # A bad corpus is the operator's to fix: one line naming file and line, not a traceback.
        sys.stderr.write(f"actguide-retriever: error: {err}\n")
        raise SystemExit(1) from None
    logger.info("index ready in %.2fs", time.perf_counter() - started)
    logger.info("serving %d documents from %s on %s:%d", len(index.corpus), args.corpus, args.host, args.port)
    uvicorn.run(
        create_app(index, limits, args.workers),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
