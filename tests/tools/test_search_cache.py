"""The search backends' SQLite cache never serves the wrong thing and never takes searches down: a corpus swapped
behind the same URL misses, an unreadable cache (corrupt file, a folder, an entry of another shape) is a miss and
one warning. Against a real loopback retrieval server whose corpus can be switched."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from actguide_plugin.tools import backends
from actguide_plugin.tools.backends import RetrievalServerBackend
from actguide_plugin.tools.config import RetrievalServerBackendConfig

RETRY = {"max_attempts": 1, "timeout_s": 2.0}


class SwitchableRetriever:
    """A Search-R1 ``/retrieve`` server whose corpus (and ``/health`` fingerprint) a test can switch."""

    def __init__(self, with_health: bool = True) -> None:
        self.corpus = "fingerprint-a"
        self.titles = {"fingerprint-a": "Paris", "fingerprint-b": "Rome"}
        self.with_health = with_health
        self.retrieves = 0
        self.app = web.Application()
        self.app.router.add_get("/health", self.health)
        self.app.router.add_post("/retrieve", self.retrieve)

    async def health(self, request: web.Request) -> web.Response:
        if not self.with_health:
            raise web.HTTPNotFound()
        return web.json_response({"status": "ok", "documents": 1, "corpus": self.corpus})

    async def retrieve(self, request: web.Request) -> web.Response:
        self.retrieves += 1
        body = await request.json()
        document = {"title": self.titles[self.corpus], "url": "", "text": "capital"}
        return web.json_response({"result": [[{"document": document, "score": 1.0}] for _ in body["queries"]]})


@pytest.fixture
def recheck_always(monkeypatch):
    monkeypatch.setattr(backends, "CORPUS_RECHECK_S", 0.0)


async def served(retriever: SwitchableRetriever):
    server = TestServer(retriever.app, host="127.0.0.1")
    await server.start_server()
    return server


def backend_for(server: TestServer, cache_path) -> RetrievalServerBackend:
    url = str(server.make_url("")).rstrip("/")
    return RetrievalServerBackend(RetrievalServerBackendConfig(base_url=url, cache_path=str(cache_path), **RETRY))


async def titles(backend: RetrievalServerBackend) -> list[str]:
    (hits,) = await backend.search(["capital"], 1)
    return [hit.title for hit in hits]


async def test_another_corpus_behind_the_same_url_misses_the_cache(tmp_path, recheck_always):
    retriever = SwitchableRetriever()
    server = await served(retriever)
    try:
        backend = backend_for(server, tmp_path / "cache.sqlite")
        assert await titles(backend) == ["Paris"] and await titles(backend) == ["Paris"]
        assert retriever.retrieves == 1  # the second answer came from the cache
        retriever.corpus = "fingerprint-b"  # the retriever restarted on another corpus, same URL
        assert await titles(backend) == ["Rome"] and retriever.retrieves == 2
        retriever.corpus = "fingerprint-a"
        assert await titles(backend) == ["Paris"] and retriever.retrieves == 2  # its own entries still serve
    finally:
        await server.close()


async def test_a_server_without_our_health_keeps_the_cache_keyed_by_url(tmp_path, recheck_always):
    retriever = SwitchableRetriever(with_health=False)  # another Search-R1 server
    server = await served(retriever)
    try:
        backend = backend_for(server, tmp_path / "cache.sqlite")
        assert await titles(backend) == ["Paris"] and await titles(backend) == ["Paris"]
        assert retriever.retrieves == 1
    finally:
        await server.close()


@pytest.mark.parametrize("damage", ["corrupt file", "a folder"])
async def test_an_unopenable_cache_is_a_miss_and_one_warning(tmp_path, caplog, damage):
    path = tmp_path / "cache.sqlite"
    if damage == "a folder":
        path.mkdir()
    else:
        path.write_bytes(b"this is not an SQLite database" * 100)
    retriever = SwitchableRetriever()
    server = await served(retriever)
    try:
        with caplog.at_level(logging.WARNING):
            backend = backend_for(server, path)
            for _ in range(3):
                assert await titles(backend) == ["Paris"]
    finally:
        await server.close()
    assert retriever.retrieves == 3
    warnings = [r for r in caplog.records if "search cache" in r.getMessage()]
    assert len(warnings) == 1 and "cannot be opened" in warnings[0].getMessage()


async def test_an_entry_of_another_shape_is_a_miss(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    retriever = SwitchableRetriever()
    server = await served(retriever)
    try:
        backend = backend_for(server, path)
        assert await titles(backend) == ["Paris"]
        with sqlite3.connect(path) as conn:  # what an older version, or another tool, wrote under the same key
            assert conn.execute("UPDATE cache SET value = ?", ('{"hits": "not a list"}',)).rowcount == 1
        with caplog.at_level(logging.WARNING):
            assert await titles(backend) == ["Paris"] and await titles(backend) == ["Paris"]
    finally:
        await server.close()
    assert retriever.retrieves == 2  # one miss, then the rewritten entry served
    assert len([r for r in caplog.records if "search cache read failed" in r.getMessage()]) == 1
