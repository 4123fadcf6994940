"""Search backends behind ``web_search`` / ``web_visit``, selected by ``backend.name`` in the tool yaml.

- ``local``: in-process BM25 over ``corpus.jsonl`` (no network; the default).
- ``retrieval_server``: a Search-R1 ``/retrieve`` server, e.g. ``actguide-retriever`` shared by many nodes.
- ``web_api``: Serper-style search and page-fetch HTTP APIs (key from an environment variable).

Every backend answers a batch of queries or urls with one result per item, where a single item may fail
(:class:`Failed`) without failing the others. Network backends share one retrying HTTP client
(:mod:`actguide_plugin.tools.httpclient`) and a persistent SQLite cache (:mod:`actguide_plugin.tools.cache`);
only successful results are cached. Every message of a failed item or call is redacted of the API key by the
client, so it can go to the logs and to the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from actguide_plugin.logs import get_logger
from actguide_plugin.tools.bm25_index import LocalIndex, get_local_index
from actguide_plugin.tools.cache import SQLiteCache
from actguide_plugin.tools.config import (
    ConfigError,
    HttpBackendConfig,
    LocalBackendConfig,
    RetrievalServerBackendConfig,
    ToolConfigModel,
    WebApiBackendConfig,
    parse_config,
)
from actguide_plugin.tools.httpclient import HttpCallError, JsonHttpClient, UnexpectedResponse, display_url

logger = get_logger(__name__)

CORPUS_RECHECK_S = 60.0  # how often a retrieval_server backend re-reads the server's corpus fingerprint

T = TypeVar("T")


@dataclass(frozen=True)
class SearchHit:
    """One search result as shown to the model (``url`` may be empty for corpora without urls)."""

    title: str
    url: str
    snippet: str


@dataclass(frozen=True)
class Page:
    """The text of one visited page."""

    title: str
    url: str
    text: str


@dataclass(frozen=True)
class Failed:
    """One item of a batch that could not be served; ``message`` is shown to the model.

    ``circuit_open``: skipped without a request because the service's circuit breaker is open.
    """

    message: str
    circuit_open: bool = False


class SearchBackend(ABC):
    """Answers batches of search queries and page visits."""

    @abstractmethod
    async def search(self, queries: Sequence[str], topk: int) -> list[list[SearchHit] | Failed]:
        """Up to ``topk`` hits per query, in query order."""

    @abstractmethod
    async def visit(self, urls: Sequence[str]) -> list[Page | Failed]:
        """The page for each url (or title), in order."""


_BACKENDS: dict[str, tuple[type[SearchBackend], type[ToolConfigModel]]] = {}


def register_backend(
    name: str, config_type: type[ToolConfigModel]
) -> Callable[[type[SearchBackend]], type[SearchBackend]]:
    """Make a backend class selectable as ``backend.name: <name>``; it is built from ``block`` parsed as
    ``config_type``."""

    def decorator(cls: type[SearchBackend]) -> type[SearchBackend]:
        _BACKENDS[name] = (cls, config_type)
        return cls

    return decorator


def parse_backend_config(raw: Mapping[str, Any]) -> ToolConfigModel:
    """Validate a ``backend:`` block without opening anything (tools call this in their constructor)."""
    if not isinstance(raw, Mapping) or "name" not in raw:
        raise ConfigError(f"backend: a mapping with a 'name' is required, got {raw!r}")
    if raw["name"] not in _BACKENDS:
        raise ConfigError(f"backend: unknown name {raw['name']!r}; registered: {sorted(_BACKENDS)}")
    return parse_config(_BACKENDS[raw["name"]][1], raw, f"backend ({raw['name']})")


_process_backends: dict[str, SearchBackend] = {}
_process_lock = threading.Lock()


def get_backend(raw: Mapping[str, Any]) -> SearchBackend:
    """The process-wide backend for this config block: tools with the same block share one instance."""
    config = parse_backend_config(raw)
    key = json.dumps(dict(raw), sort_keys=True, default=str)
    with _process_lock:
        backend = _process_backends.get(key)
        if backend is None:
            backend = _BACKENDS[raw["name"]][0](config)
            _process_backends[key] = backend
        return backend


@register_backend("local", LocalBackendConfig)
class LocalBackend(SearchBackend):
    """BM25 over ``corpus.jsonl`` in this process; the index is loaded on first use, off the event loop."""

    def __init__(self, config: LocalBackendConfig) -> None:
        self.config = config
        self._index: LocalIndex | None = None

    async def index(self) -> LocalIndex:
        if self._index is None:
            self._index = await asyncio.to_thread(
                get_local_index, self.config.corpus_path, self.config.k1, self.config.b
            )
        return self._index

    async def search(self, queries: Sequence[str], topk: int) -> list[list[SearchHit] | Failed]:
        """Scored in a thread: the agent loop's event loop drives every other rollout of this worker meanwhile."""
        index = await self.index()
        found = await asyncio.to_thread(index.search_many, [(query, topk) for query in queries])
        return [[SearchHit(hit.document.title, hit.document.url, hit.document.text) for hit in hits] for hits in found]

    async def visit(self, urls: Sequence[str]) -> list[Page | Failed]:
        index = await self.index()
        results: list[Page | Failed] = []
        for url in urls:
            doc = index.corpus.lookup(url)
            results.append(Failed(f"page not found: {url}") if doc is None else Page(doc.title, doc.url, doc.text))
        return results


class CachedHttpBackend(SearchBackend):
    """Shared plumbing of the network backends: the retrying client and the per-item SQLite cache."""

    kind: ClassVar[str]

    def __init__(self, config: HttpBackendConfig) -> None:
        self.http_config = config
        self.client = JsonHttpClient(config.retry_policy)
        self.ttl_s = {"search": config.search_ttl_s, "visit": config.visit_ttl_s}
        self._cache_failed = False
        self.cache = self._open_cache(config.resolved_cache_path)

    def _open_cache(self, path: str | None) -> SQLiteCache | None:
        """The cache at ``path``; ``None`` (and one warning) when it cannot be opened — a corrupt file, a folder,
        no permission: the cache is an optimization, and must never take the searches down with it."""
        if not path:
            return None
        try:
            return SQLiteCache(path)
        except Exception as err:
            self._cache_trouble(f"cannot be opened at {path}", err)
            return None

    def _cache_trouble(self, what: str, err: Exception) -> None:
        """Log the first cache failure of this backend; every failure costs only a miss."""
        if not self._cache_failed:
            self._cache_failed = True
            logger.warning("search cache %s (%s: %s); treated as misses (later cache errors not logged)",
                           what, type(err).__name__, err)  # fmt: skip

    async def answers_id(self) -> str | None:
        """What identifies the answers behind this backend, for the cache keys: ``""`` when nothing beyond the URL
        can (the live web), ``None`` when it cannot be told right now (the cache is then skipped)."""
        return ""

    async def cached_batch(
        self,
        operation: str,
        items: Sequence[str],
        params: Mapping[str, Any],
        fetch: Callable[[list[str]], Awaitable[list[T | Failed]]],
        to_json: Callable[[T], Any],
        from_json: Callable[[Any], T],
    ) -> list[T | Failed]:
        """Serve ``items`` from the cache where possible and ``fetch`` the rest in one call; cache successes.

        A cache that cannot be read or written (disk full, locked past the busy timeout, an entry of another
        shape) only costs a miss. Keys carry :meth:`answers_id`, so another corpus behind the same URL misses.
        """
        identity = await self.answers_id() if self.cache is not None else None
        cache = self.cache if identity is not None else None
        namespace = f"{self.kind}:{operation}" + (f":{identity}" if identity else "")
        keys = [_cache_key(item, params) for item in items]
        results: list[T | Failed | None] = [None] * len(items)
        if cache is not None:
            for position, key in enumerate(keys):
                try:
                    cached = await cache.aget(namespace, key)
                    results[position] = None if cached is None else from_json(cached)
                except Exception as err:  # sqlite3, json and shape errors alike: the cache is an optimization
                    self._cache_trouble("read failed", err)
        missing = [position for position, value in enumerate(results) if value is None]
        if missing:
            fetched = await fetch([items[position] for position in missing])
            for position, value in zip(missing, fetched, strict=True):
                results[position] = value
                if cache is not None and not isinstance(value, Failed):
                    try:
                        await cache.aset(namespace, keys[position], to_json(value), self.ttl_s[operation])
                    except Exception as err:
                        self._cache_trouble("write failed", err)
        return results  # type: ignore[return-value]


def _cache_key(item: str, params: Mapping[str, Any]) -> str:
    payload = json.dumps([item, dict(params)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _hits_to_json(hits: list[SearchHit]) -> list[dict[str, str]]:
    return [dataclasses.asdict(hit) for hit in hits]


def _hits_from_json(data: list[dict[str, str]]) -> list[SearchHit]:
    return [SearchHit(**hit) for hit in data]


def _page_from_json(data: dict[str, str]) -> Page:
    return Page(**data)


@register_backend("retrieval_server", RetrievalServerBackendConfig)
class RetrievalServerBackend(CachedHttpBackend):
    """Client of the Search-R1 protocol: ``POST /retrieve {"queries", "topk", "return_scores"}``.

    Documents may carry ``title``/``url``/``text`` (``actguide-retriever``) or only Search-R1's
    ``contents`` (``"Title"\\ntext``). Visit uses ``POST /visit``, which only ``actguide-retriever`` has.
    """

    kind = "retrieval_server"

    def __init__(self, config: RetrievalServerBackendConfig) -> None:
        super().__init__(config)
        self.base_url = config.base_url.rstrip("/")
        self._corpus: str | None = None
        self._corpus_checked = -float("inf")  # time.monotonic() of the last /health answer

    async def answers_id(self) -> str | None:
        """The corpus fingerprint ``actguide-retriever`` reports at ``/health`` (re-read every
        ``CORPUS_RECHECK_S``): a retriever restarted on another corpus at the same URL gets fresh cache entries.
        ``""`` for a server without one (other Search-R1 servers: keys by URL, logged once); ``None`` while
        ``/health`` cannot be read and no fingerprint is known."""
        if time.monotonic() - self._corpus_checked < CORPUS_RECHECK_S:
            return self._corpus
        try:
            health = await self.client.get_json(f"{self.base_url}/health", self.http_config.api_key_headers())
        except ConfigError:
            return self._corpus
        except HttpCallError as err:
            if err.status is None:  # no answer: the search will most likely fail too
                logger.info("retriever /health unreachable (%s); cache skipped until it answers", err)
                return self._corpus
            health = None  # it answered, without a /health of ours
        corpus = health.get("corpus") if isinstance(health, dict) else None
        if not isinstance(corpus, str):
            if self._corpus != "":
                logger.info("%s/health reports no corpus fingerprint: cache entries are keyed by its URL only",
                            display_url(self.base_url))  # fmt: skip
            corpus = ""
        self._corpus, self._corpus_checked = corpus, time.monotonic()
        return corpus

    async def search(self, queries: Sequence[str], topk: int) -> list[list[SearchHit] | Failed]:
        url = f"{self.base_url}/retrieve"
        headers = self.http_config.api_key_headers()

        async def fetch(batch: list[str]) -> list[list[SearchHit] | Failed]:
            def parse(body: Any) -> list[list[SearchHit] | Failed]:
                result = _result_list(body, len(batch))
                return [[_hit_from_search_r1(item) for item in per_query] for per_query in result]

            payload = {"queries": batch, "topk": topk, "return_scores": True}
            return await self.client.post_json(url, payload, headers, parse)

        return await self.cached_batch(
            "search", queries, {"url": url, "topk": topk}, fetch, _hits_to_json, _hits_from_json
        )

    async def visit(self, urls: Sequence[str]) -> list[Page | Failed]:
        url = f"{self.base_url}/visit"
        headers = self.http_config.api_key_headers()

        async def fetch(batch: list[str]) -> list[Page | Failed]:
            def parse(body: Any) -> list[Page | Failed]:
                return [_page_from_server(page) for page in _result_list(body, len(batch))]

            return await self.client.post_json(url, {"urls": batch}, headers, parse)

        return await self.cached_batch("visit", urls, {"url": url}, fetch, dataclasses.asdict, _page_from_json)


def _result_list(body: Any, expected: int) -> list:
    """The ``result`` list of a retrieval-server reply, one entry per item asked for."""
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, list) or len(result) != expected:
        raise UnexpectedResponse(f"expected 'result' with {expected} entries")
    return result


def _page_from_server(page: Any) -> Page | Failed:
    """One ``/visit`` result: ``{"url", "title", "text"}`` or ``{"url", "error"}``."""
    if isinstance(page, dict) and page.get("error"):
        return Failed(str(page["error"]))
    if not isinstance(page, dict) or not all(isinstance(page.get(key), str) for key in ("title", "url", "text")):
        raise UnexpectedResponse("retrieval server returned a malformed page")
    return Page(page["title"], page["url"], page["text"])


def _hit_from_search_r1(item: Any) -> SearchHit:
    """One ``{"document": {...}, "score": s}`` entry (or a bare document) as a hit."""
    document = item.get("document", item) if isinstance(item, dict) else None
    if not isinstance(document, dict):
        raise UnexpectedResponse("retrieval server returned a malformed document")
    title, text = document.get("title"), document.get("text")
    if title is None or text is None:
        # Search-R1 corpora store '"Title"\ntext' in one 'contents' field.
        first, _, rest = str(document.get("contents", "")).partition("\n")
        title = title if title is not None else first.strip().strip('"')
        text = text if text is not None else rest.strip()
    return SearchHit(str(title), str(document.get("url", "")), str(text))


@register_backend("web_api", WebApiBackendConfig)
class WebApiBackend(CachedHttpBackend):
    """Serper-style APIs: one POST per query (``search_url``) and per page (``visit_url``)."""

    kind = "web_api"

    def __init__(self, config: WebApiBackendConfig) -> None:
        super().__init__(config)
        self.config = config

    async def _each(self, batch: list[str], call: Callable[[str], Awaitable[T]]) -> list[T | Failed]:
        """Run ``call`` per item concurrently (the client bounds concurrency); a failed item stays local."""
        outcomes = await asyncio.gather(*(call(item) for item in batch), return_exceptions=True)
        results: list[T | Failed] = []
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, HttpCallError):
                logger.warning("web_api request for %r failed: %s", item, outcome)
                results.append(Failed(str(outcome), outcome.circuit_open))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results.append(outcome)
        return results

    async def search(self, queries: Sequence[str], topk: int) -> list[list[SearchHit] | Failed]:
        headers = self.config.api_key_headers()

        def parse(body: Any) -> list[SearchHit]:
            # An error-shaped 200 (quota exhausted, bad key: {"message": ..., "statusCode": 403}) must not be
            # read as "no results": that would be cached for search_ttl_s.
            organic = body.get("organic") if isinstance(body, dict) else None
            if not isinstance(organic, list) or body.get("error"):
                raise UnexpectedResponse("search API answered without an 'organic' result list")
            return [
                SearchHit(str(hit.get("title", "")), str(hit.get("link", "")), str(hit.get("snippet", "")))
                for hit in organic[:topk]
                if isinstance(hit, dict)
            ]

        async def one(query: str) -> list[SearchHit]:
            return await self.client.post_json(self.config.search_url, {"q": query, "num": topk}, headers, parse)

        async def fetch(batch: list[str]) -> list[list[SearchHit] | Failed]:
            return await self._each(batch, one)

        params = {"url": self.config.search_url, "topk": topk}
        return await self.cached_batch("search", queries, params, fetch, _hits_to_json, _hits_from_json)

    async def visit(self, urls: Sequence[str]) -> list[Page | Failed]:
        headers = self.config.api_key_headers()

        async def one(url: str) -> Page:
            def parse(body: Any) -> Page:
                text = body.get("text") if isinstance(body, dict) else None
                if not isinstance(text, str):
                    raise UnexpectedResponse(f"page API returned no 'text' for {url}")
                metadata = body.get("metadata")
                title = metadata.get("title", "") if isinstance(metadata, dict) else ""
                return Page(str(title), url, text)

            return await self.client.post_json(self.config.visit_url, {"url": url}, headers, parse)

        async def fetch(batch: list[str]) -> list[Page | Failed]:
            return await self._each(batch, one)

        params = {"url": self.config.visit_url}
        return await self.cached_batch("visit", urls, params, fetch, dataclasses.asdict, _page_from_json)
