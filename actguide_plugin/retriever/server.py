"""``actguide-retriever``: one BM25 retriever over a corpus file served over HTTP (plain ASGI on uvicorn).

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
- ``GET /health`` — ``{"status": "ok", "documents": n, "corpus": fingerprint}``: the hash of the corpus file's
  content, which clients put in their cache keys (a restart on another corpus at the same URL starts fresh).

It binds 127.0.0.1 unless ``--host`` says otherwise: the corpus is not a public service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from actguide_plugin.logs import get_logger
from actguide_plugin.names import CORPUS_ENV
from actguide_plugin.text import valid_text
from actguide_plugin.tools.bm25_index import LocalIndex, ScoredDocument, get_local_index
from actguide_plugin.tools.corpus import CorpusFormatError
from actguide_plugin.tools.formatting import shorten

logger = get_logger(__name__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
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
        body_timeout_s: time to receive a whole request body (408 beyond): a client trickling its body (slow loris)
            does not hold a connection, or the server's shutdown, forever.
    """

    max_queries: int = 512
    max_query_chars: int = 2048
    default_topk: int = 3
    max_topk: int = 100
    snippet_chars: int = 300
    max_body_bytes: int = 8 * 2**20
    max_results: int = 512 * 100
    max_response_bytes: int = 256 * 2**20
    body_timeout_s: float = 30.0


class BadRequest(ValueError):
    """The request body is malformed; the message says what to fix."""

    status_code = 400


class TooLarge(BadRequest):
    """The request, or the answer it asks for, exceeds a :class:`ServerLimits` bound."""

    status_code = 413


class BodyTimeout(BadRequest):
    """The request body did not arrive within ``body_timeout_s``."""

    status_code = 408


class AnswerFailed(BadRequest):
    """This request's answer could not be built (a bug, or text that cannot be encoded): it fails alone."""

    status_code = 500


class ClientGone(Exception):
    """The client disconnected before its request was read; there is no one to answer."""


async def _read_body(scope: Scope, receive: Receive, limits: ServerLimits) -> bytes:
    """The body, refused as soon as it is known to exceed ``max_body_bytes`` (never buffered past it)."""
    too_large = f"request body exceeds {limits.max_body_bytes} bytes (--max-body-bytes)"
    declared = dict(scope["headers"]).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise TooLarge(too_large)

    async def receive_all() -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise TooLarge(too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    try:
        return await asyncio.wait_for(receive_all(), limits.body_timeout_s)
    except asyncio.TimeoutError:
        raise BodyTimeout(f"request body not received within {limits.body_timeout_s:g} s (--body-timeout-s)") from None


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
    return [valid_text(item) for item in items]  # a JSON "\ud800" escape decodes to text no encoder takes


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


def _answer_too_large(size: str, max_bytes: int) -> TooLarge:
    return TooLarge(
        f"answer would be {size}; at most {max_bytes} (--max-response-bytes): ask for fewer items or a smaller topk"
    )


def _encode(result: list[Any], limits: ServerLimits) -> bytes:
    """``{"result": result}`` as JSON bytes, refused when larger than ``max_response_bytes``."""
    content = json.dumps({"result": result}, ensure_ascii=False, separators=(",", ":")).encode()
    if len(content) > limits.max_response_bytes:
        raise _answer_too_large(f"{len(content)} bytes", limits.max_response_bytes)
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


Render = Callable[[list[ScoredDocument]], Any]  # one query's hits -> its JSON value in the answer
SLICE_S = 0.02  # a worker's turn: after it, requests that arrived meanwhile join the requests still being scored
_RESULT_OPEN, _RESULT_CLOSE = b'{"result":[', b"]}"


@dataclass
class _Job:
    """One request: its queries, the encoded answers of those scored so far, and once done its outcome.

    Only the worker that holds the job in its slice touches it; the event loop reads it after the slice.
    """

    queries: list[str]
    topk: int
    render: Render
    max_bytes: int
    future: asyncio.Future[bytes]
    parts: list[bytes] = field(default_factory=list)
    size: int = len(_RESULT_OPEN) + len(_RESULT_CLOSE)
    outcome: bytes | BadRequest | None = None

    def add(self, hits: list[ScoredDocument]) -> None:
        """Encode the answer of the next query; the whole answer once it is the last one."""
        try:
            part = json.dumps(self.render(hits), ensure_ascii=False, separators=(",", ":")).encode()
        except Exception as err:  # a failure to build it fails this request only, never the others in the slice
            logger.exception("building an answer failed")
            self.outcome = AnswerFailed(f"the answer could not be built ({type(err).__name__})")
            return
        self.parts.append(part)
        self.size += len(part) + (len(self.parts) > 1)
        if self.size > self.max_bytes:  # stop at once: the rest would be scored for nothing
            done = f"over {self.max_bytes} bytes after {len(self.parts)} of {len(self.queries)} queries"
            self.outcome = _answer_too_large(done, self.max_bytes)
        elif len(self.parts) == len(self.queries):
            self.outcome = _RESULT_OPEN + b",".join(self.parts) + _RESULT_CLOSE
            self.parts = []


def _run_slice(index: LocalIndex, jobs: list[_Job], seconds: float) -> None:
    """Worker thread: score the jobs' queries round-robin, one query of each per pass (one
    ``LocalIndex.search_many`` call, repeated queries scored once), until all are done or ``seconds`` are spent."""
    deadline = time.perf_counter() + seconds
    while active := [job for job in jobs if job.outcome is None]:
        hits = index.search_many([(job.queries[len(job.parts)], job.topk) for job in active])
        for job, found in zip(active, hits, strict=True):
            job.add(found)
        if time.perf_counter() >= deadline:
            return


class BatchingScorer:
    """Scores and encodes requests in worker threads, batching the queries of concurrent requests, fairly.

    Scoring and JSON encoding never run on the event loop, so ``/health`` and request parsing stay responsive.
    A request that finds a worker free is dispatched at once (no added latency when idle); requests arriving
    while every worker is busy are collected and go to the next free worker together: one thread hop and one
    ``LocalIndex.search_many`` call per pass over them. A worker's turn lasts at most :data:`SLICE_S` (plus one
    query, whose work :data:`~actguide_plugin.tools.bm25_index.MAX_QUERY_TOKENS` bounds): a request not done by
    then waits behind the ones that arrived meanwhile, so a one-query request beside a 512-query one waits
    for one turn, not for the whole big request (measured in ``benchmarks/retriever_latency.py``).
    """

    def __init__(self, index: LocalIndex, workers: int, max_response_bytes: int = ServerLimits.max_response_bytes):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.index = index
        self.max_response_bytes = max_response_bytes
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="actguide-retriever")
        self._idle_workers = workers
        self._pending: list[_Job] = []

    @property
    def pending_queries(self) -> int:
        """Queries waiting for a free worker."""
        return sum(len(job.queries) - len(job.parts) for job in self._pending)

    async def answer(self, queries: list[str], topk: int, render: Render) -> bytes:
        """The response body for one request: ``{"result": [render(hits) for each query]}``, built in workers."""
        if not queries:
            return _RESULT_OPEN + _RESULT_CLOSE
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(queries, topk, render, self.max_response_bytes, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        if not self._idle_workers or not self._pending:
            return
        jobs, self._pending = self._pending, []
        self._idle_workers -= 1
        done = asyncio.get_running_loop().run_in_executor(self._executor, _run_slice, self.index, jobs, SLICE_S)
        done.add_done_callback(lambda outcome: self._finish(jobs, outcome))

    def _finish(self, jobs: list[_Job], outcome: asyncio.Future[None]) -> None:
        self._idle_workers += 1
        error = RuntimeError("the retriever is shutting down") if outcome.cancelled() else outcome.exception()
        for job in jobs:
            if job.future.done():  # the client went away
                continue
            result = error if error is not None else job.outcome
            if result is None:  # its turn ended first: after the requests that arrived meanwhile
                self._pending.append(job)
            elif isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        self._dispatch()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _error(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False).encode()


class RetrieverApp:
    """The ASGI application: four routes in plain ASGI.

    No web framework: under load the framework's per-request work (middleware, routing, request objects) was
    half of the event loop's time, and the loop is what ``/health`` and every request wait for.
    """

    def __init__(self, index: LocalIndex, limits: ServerLimits, workers: int) -> None:
        self.index = index
        self.limits = limits
        self.scorer = BatchingScorer(index, workers, limits.max_response_bytes)
        health = {"status": "ok", "documents": len(index.corpus), "corpus": index.fingerprint}
        self._health = json.dumps(health).encode()
        self._routes: dict[tuple[str, str], Callable[[Scope, Receive], Awaitable[bytes]]] = {
            ("GET", "/health"): self.health,
            ("POST", "/retrieve"): self.retrieve,
            ("POST", "/search"): self.search,
            ("POST", "/visit"): self.visit,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = self._routes.get((scope["method"], scope["path"]))
        try:
            if handler is not None:
                status, content = 200, await handler(scope, receive)
            elif any(path == scope["path"] for _, path in self._routes):
                status, content = 405, _error(f"{scope['method']} is not allowed on {scope['path']}")
            else:
                status, content = 404, _error(f"no such endpoint: {scope['path']}")
        except ClientGone:
            return
        except BadRequest as err:
            status, content = err.status_code, _error(str(err))
        except Exception:  # a bug must cost one request, not the connection; the log has the traceback
            logger.exception("%s %s failed", scope["method"], scope["path"])
            status, content = 500, _error("internal error")
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.scorer.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        raw = await _read_body(scope, receive, self.limits)
        # A body of megabytes takes milliseconds to parse: not on the loop.
        return _parse_body(raw) if len(raw) < _PARSE_ON_LOOP_BYTES else await asyncio.to_thread(_parse_body, raw)

    def _queries_and_topk(self, body: dict[str, Any]) -> tuple[list[str], int]:
        queries, topk = _string_list(body, "queries", self.limits), _topk(body, self.limits)
        _check_results(queries, topk, self.limits)
        return queries, topk

    async def health(self, scope: Scope, receive: Receive) -> bytes:
        return self._health

    async def retrieve(self, scope: Scope, receive: Receive) -> bytes:
        body = await self._body(scope, receive)
        queries, topk = self._queries_and_topk(body)
        return_scores = body.get("return_scores", False)
        if not isinstance(return_scores, bool):
            raise BadRequest(f"'return_scores' must be true or false, got {return_scores!r}")

        def render(hits: list[ScoredDocument]) -> list[dict[str, Any]]:
            if return_scores:
                return [{"document": _search_r1_document(hit), "score": hit.score} for hit in hits]
            return [_search_r1_document(hit) for hit in hits]

        return await self.scorer.answer(queries, topk, render)

    async def search(self, scope: Scope, receive: Receive) -> bytes:
        queries, topk = self._queries_and_topk(await self._body(scope, receive))
        snippet_chars = self.limits.snippet_chars

        def render(hits: list[ScoredDocument]) -> list[dict[str, Any]]:
            return [
                {
                    "title": hit.document.title,
                    "url": hit.document.url,
                    "snippet": shorten(hit.document.text, snippet_chars),
                    "score": hit.score,
                }
                for hit in hits
            ]

        return await self.scorer.answer(queries, topk, render)

    async def visit(self, scope: Scope, receive: Receive) -> bytes:
        urls = _string_list(await self._body(scope, receive), "urls", self.limits)

        def render() -> bytes:
            result = []
            for requested in urls:
                doc = self.index.corpus.lookup(requested)
                if doc is None:
                    result.append({"request": requested, "error": f"page not found: {requested}"})
                else:
                    result.append({"request": requested, "title": doc.title, "url": doc.url, "text": doc.text})
            return _encode(result, self.limits)

        return await asyncio.to_thread(render)  # pages can be long: encode off the loop


def head_deadline_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection that has not sent a whole request head within ``seconds``.

    uvicorn (0.55) times out neither a client that trickles its request line and headers a byte at a time (each
    byte cancels the keep-alive timer) nor a connection that never sends anything; both hold a connection for
    ever. The deadline runs from the connection's start and from the end of each response; a request whose head
    arrived is left to the body timeout and the app. uvicorn API relied on: ``H11Protocol`` and its
    ``connection_made``, ``on_response_complete``, ``connection_lost``, ``cycle`` and ``transport``.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, self._close_if_no_request, self.cycle)

        def _close_if_no_request(self, cycle_when_armed: Any) -> None:
            waiting = self.cycle is None or self.cycle.response_complete  # not serving a (pipelined) request
            if waiting and self.cycle is cycle_when_armed and not self.transport.is_closing():  # none began since
                self.transport.close()

    return HeadDeadlineProtocol


def create_app(index: LocalIndex, limits: ServerLimits | None = None, workers: int = 1) -> RetrieverApp:
    """The ASGI application over an opened index (tests and ``main`` both build it here).

    ``workers`` threads score and encode (see :class:`BatchingScorer`); the scorer is ``app.scorer``.
    """
    return RetrieverApp(index, limits or ServerLimits(), workers)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actguide-retriever",
        description="Serve BM25 search over corpus.jsonl with the Search-R1 /retrieve protocol (+ /search, /visit).",
    )
    parser.add_argument(
        "--corpus",
        default=os.environ.get(CORPUS_ENV),  # no default corpus for a server: it must be named
        help=f"corpus: {{id|docid, text, title?, url?}} or Search-R1 {{id, contents}} lines (default: ${CORPUS_ENV})",
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
        "--body-timeout-s",
        type=float,
        default=defaults.body_timeout_s,
        help="to receive a request body (408 beyond) or a request's head (the connection is closed)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="threads that score and encode; 1 batches best (most throughput), more let small requests pass a huge one",
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
        _parser().error(f"--corpus is required (or set {CORPUS_ENV})")
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
        body_timeout_s=args.body_timeout_s,
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
        http=head_deadline_protocol(args.body_timeout_s),
        timeout_keep_alive=5,  # an idle keep-alive connection is closed after 5 s
        timeout_graceful_shutdown=5,  # shutdown waits at most 5 s for open connections, not for a stalled client
    )


if __name__ == "__main__":
    main()
