"""web_api (Serper-style) and retrieval_server backends against loopback fakes, through the verl tool interface.

Covered failure modes: 429/5xx retried, timeouts, failures become error text plus metrics, the SQLite cache
(hits skip the network, failures are not cached), the API key sent only as a header and never logged.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from actguide_plugin.reward.judge import JudgeConfig
from actguide_plugin.tools.backends import parse_backend_config
from actguide_plugin.tools.config import ConfigError, WebApiBackendConfig
from actguide_plugin.tools.httpclient import RetryPolicy
from actguide_plugin.tools.search_tools import WebSearchTool, WebVisitTool

API_KEY = "sk-test-4f9c2a7be1d0"  # must never appear in any output
RETRY = {"max_attempts": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2.0}


class FakeSerper:
    """Serper-like search (/search) and scrape (/scrape).

    ``fail_next`` statuses are served first; queries in ``broken_queries`` always get HTTP 500.
    """

    def __init__(self, trickle) -> None:
        self.trickle = trickle  # the conftest fixture
        self.requests: list[tuple[str, dict, str | None]] = []
        self.fail_next: list[int] = []
        self.broken_queries: set[str] = set()
        self.delay_s = 0.0
        self.bodies_next: list[object] = []  # 200 bodies served first by /search, whatever their shape
        self.trickle_s = 0.0  # > 0: search answers 200 and then one body byte per trickle_s
        self.hung_up = asyncio.Event()  # set when a trickled response's client hung up
        self.app = web.Application()
        self.app.router.add_post("/search", self.search)
        self.app.router.add_post("/scrape", self.scrape)

    async def _record(self, request: web.Request) -> web.Response | dict:
        body = await request.json()
        self.requests.append((request.path, body, request.headers.get("X-API-KEY")))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next:
            return web.Response(status=self.fail_next.pop(0), text="try later")
        if body.get("q") in self.broken_queries:
            return web.Response(status=500, text="internal error")
        return body

    async def search(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if isinstance(body, web.Response):
            return body
        if self.trickle_s:
            return await self.trickle(self.trickle_s, self.hung_up)(request)
        if self.bodies_next:
            return web.json_response(self.bodies_next.pop(0))
        organic = [
            {"title": f"{body['q']} result {i}", "link": f"https://example.org/{i}", "snippet": f"snippet {i}"}
            for i in range(10)
        ]
        return web.json_response({"organic": organic})

    async def scrape(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if isinstance(body, web.Response):
            return body
        return web.json_response({"text": f"Full text of {body['url']}", "metadata": {"title": "A page"}})


@pytest.fixture
async def serper(trickle):
    fake = FakeSerper(trickle)
    async with TestServer(fake.app, host="127.0.0.1") as server:
        fake.base = str(server.make_url("")).rstrip("/")
        yield fake


def web_api_config(fake: FakeSerper, tmp_path, **backend) -> dict:
    return {
        "type": "native",
        "backend": {
            "name": "web_api",
            "search_url": f"{fake.base}/search",
            "visit_url": f"{fake.base}/scrape",
            "api_key_env": "TEST_SEARCH_KEY",
            "cache_path": str(tmp_path / "cache.sqlite"),
            **RETRY,
            **backend,
        },
    }


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("TEST_SEARCH_KEY", API_KEY)


async def test_web_api_search_and_visit(serper, tmp_path, call_tool):
    config = web_api_config(serper, tmp_path)
    search = WebSearchTool({**config, "topk": 2}, None)
    response, _, metrics = await call_tool(search, {"query": ["alpha"]})
    assert metrics["errors"] == 0
    assert response.text == (
        'Results for "alpha":\n1. alpha result 0 — https://example.org/0\n   snippet 0\n'
        "2. alpha result 1 — https://example.org/1\n   snippet 1"
    )
    assert serper.requests == [("/search", {"q": "alpha", "num": 2}, API_KEY)]
    visit = WebVisitTool(config, None)
    response, _, _ = await call_tool(visit, {"url": ["https://example.org/0"]})
    assert response.text == "Page: A page — https://example.org/0\nFull text of https://example.org/0"


async def test_429_and_5xx_are_retried(serper, tmp_path, call_tool):
    serper.fail_next = [429, 503]
    response, _, metrics = await call_tool(WebSearchTool(web_api_config(serper, tmp_path), None), {"query": ["beta"]})
    assert metrics["errors"] == 0 and metrics["failed_items"] == 0
    assert "beta result 0" in response.text
    assert len(serper.requests) == 3


async def test_persistent_failure_is_error_text_and_metric(serper, tmp_path, caplog, call_tool):
    serper.broken_queries = {"gamma"}
    caplog.set_level(logging.DEBUG)
    tool = WebSearchTool({**web_api_config(serper, tmp_path), "topk": 1}, None)
    response, reward, metrics = await call_tool(tool, {"query": ["gamma", "delta"]})
    assert reward == 0.0 and metrics["failed_items"] == 1 and metrics["errors"] == 0
    assert 'Search for "gamma" failed: POST ' in response.text and "after 3 attempts: HTTP 500" in response.text
    assert 'Results for "delta"' in response.text
    assert API_KEY not in response.text and API_KEY not in caplog.text


async def test_timeout_becomes_error_text(serper, tmp_path, call_tool):
    serper.delay_s = 0.5
    tool = WebVisitTool(web_api_config(serper, tmp_path, timeout_s=0.1, max_attempts=2), None)
    response, _, metrics = await call_tool(tool, {"url": ["https://example.org/slow"]})
    assert "Visit https://example.org/slow failed" in response.text and "timeout" in response.text
    assert metrics["failed_items"] == 1 and len(serper.requests) == 2


async def test_a_trickling_service_fails_the_attempt_at_timeout_s(serper, tmp_path, call_tool):
    """Each byte arrives well within httpx's per-read timeout; the attempt's total deadline still ends it."""
    serper.trickle_s = 0.2
    tool = WebSearchTool(web_api_config(serper, tmp_path, timeout_s=1.0, max_attempts=1), None)
    response, _, metrics = await call_tool(tool, {"query": ["slow"]})
    assert 'Search for "slow" failed' in response.text and "timeout after 1.0s" in response.text
    assert metrics["failed_items"] == 1 and metrics["latency_s"] < 10.0  # without the deadline: 200 s
    await asyncio.wait_for(serper.hung_up.wait(), timeout=5.0)


async def test_cache_hits_skip_the_network_and_failures_are_not_cached(serper, tmp_path, call_tool):
    config = web_api_config(serper, tmp_path)
    search = WebSearchTool(config, None)
    serper.fail_next = [500] * 3
    first, _, _ = await call_tool(search, {"query": ["epsilon"]})
    assert "failed" in first.text and len(serper.requests) == 3
    second, _, _ = await call_tool(search, {"query": ["epsilon"]})  # the failure was not cached: asks again
    assert "epsilon result 0" in second.text and len(serper.requests) == 4
    third, _, _ = await call_tool(search, {"query": ["epsilon", "zeta"]})  # epsilon from the cache, zeta fetched
    assert third.text.startswith(second.text) and len(serper.requests) == 5
    other_topk = WebSearchTool({**config, "topk": 3}, None)
    await call_tool(other_topk, {"query": ["epsilon"]})  # another topk is another cache entry
    assert len(serper.requests) == 6


async def test_cache_is_shared_across_processes_via_its_file(serper, tmp_path, call_tool):
    """A second backend instance on the same file (as in another worker process) is served from disk."""
    await call_tool(WebVisitTool(web_api_config(serper, tmp_path), None), {"url": ["https://example.org/1"]})
    fresh = WebVisitTool(web_api_config(serper, tmp_path, max_concurrency=3), None)  # another config -> new backend
    response, _, _ = await call_tool(fresh, {"url": ["https://example.org/1"]})
    assert "Full text of https://example.org/1" in response.text and len(serper.requests) == 1


async def test_missing_key_is_reported_by_variable_name(serper, tmp_path, monkeypatch, call_tool):
    monkeypatch.delenv("TEST_SEARCH_KEY")
    response, _, metrics = await call_tool(WebSearchTool(web_api_config(serper, tmp_path), None), {"query": ["x"]})
    assert "environment variable TEST_SEARCH_KEY is not set" in response.text
    assert metrics["errors"] == 1 and serper.requests == []


async def test_unreachable_service_is_error_text(tmp_path, unused_tcp_port, call_tool):
    config = {
        "type": "native",
        "backend": {"name": "retrieval_server", "base_url": f"http://127.0.0.1:{unused_tcp_port}", **RETRY},
    }
    response, _, metrics = await call_tool(WebSearchTool(config, None), {"query": ["x"]})
    assert response.text.startswith("Error: web_search failed: POST") and "connection error" in response.text
    assert metrics["errors"] == 1


async def test_retrieval_server_backend_speaks_search_r1(call_tool):
    """A Search-R1 server (documents with only 'contents'), one 503 first: retried, parsed, batched."""
    requests: list[dict] = []

    async def retrieve(request: web.Request) -> web.Response:
        requests.append(await request.json())
        if len(requests) == 1:
            return web.Response(status=503)
        body = requests[-1]
        result = [
            [{"document": {"id": "7", "contents": f'"Title {q}"\nText about {q}.'}, "score": 3.5}]
            for q in body["queries"]
        ]
        return web.json_response({"result": result})

    app = web.Application()
    app.router.add_post("/retrieve", retrieve)
    async with TestServer(app, host="127.0.0.1") as server:
        config = {
            "type": "native",
            "backend": {"name": "retrieval_server", "base_url": str(server.make_url("")), **RETRY},
        }
        response, _, metrics = await call_tool(WebSearchTool({**config, "topk": 2}, None), {"query": ["q1", "q2"]})
    assert metrics["errors"] == 0
    assert (
        response.text
        == 'Results for "q1":\n1. Title q1\n   Text about q1.\n\nResults for "q2":\n1. Title q2\n   Text about q2.'
    )
    assert requests[-1] == {"queries": ["q1", "q2"], "topk": 2, "return_scores": True}
    assert len(requests) == 2


SECRET_KEYS = ["sk-SECRET\r\n", "sk-SECRET\n", " sk-SECRET ", "sk-SECRÉT"]
LOGGERS = ("actguide_plugin.tools.httpclient", "actguide_plugin.tools.backends", "actguide_plugin.tools.search_tools")


def echo_key_app(received: list[str | None]) -> web.Application:
    """A hostile service: every endpoint answers 401 and quotes the key it was sent (header X-API-KEY)."""

    async def handler(request: web.Request) -> web.Response:
        received.append(request.headers.get("X-API-KEY"))
        return web.Response(status=401, text=f"invalid API key {request.headers.get('X-API-KEY')!r}, try again")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    return app


def _backend_block(name: str, base: str) -> dict:
    if name == "web_api":
        return {"name": "web_api", "search_url": f"{base}/search", "visit_url": f"{base}/scrape"}
    return {"name": "retrieval_server", "base_url": base}


@pytest.mark.parametrize("backend", ["web_api", "retrieval_server"])
@pytest.mark.parametrize("secret", SECRET_KEYS)
async def test_api_key_never_in_logs_or_tool_text(backend, secret, monkeypatch, caplog, call_tool):
    """Keys are stripped and validated; whatever fails, no log record and no tool text holds any form of the key."""
    monkeypatch.setenv("TEST_SEARCH_KEY", secret)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    received: list[str | None] = []
    async with TestServer(echo_key_app(received), host="127.0.0.1") as server:
        block = {**_backend_block(backend, str(server.make_url("")).rstrip("/")), "api_key_env": "TEST_SEARCH_KEY"}
        config = {"type": "native", "backend": {**block, **RETRY, "max_attempts": 1}}
        search, _, search_metrics = await call_tool(WebSearchTool(config, None), {"query": ["alpha"]})
        visit, _, _ = await call_tool(WebVisitTool(config, None), {"url": ["https://example.org/0"]})
    texts = [search.text, visit.text, caplog.text, *(str(record.args) for record in caplog.records)]
    assert all("SECR" not in text for text in texts), texts
    assert search_metrics["errors"] + search_metrics["failed_items"] == 1
    if secret.isascii():
        assert received and set(received) == {"sk-SECRET"}  # sent stripped, refused by the server
        assert "invalid API key '[REDACTED]'" in search.text
    else:
        assert received == []  # never sent; the error names the variable only
        assert "environment variable TEST_SEARCH_KEY holds an invalid API key" in search.text


async def test_dead_search_api_is_skipped_for_a_window(serper, tmp_path, call_tool):
    """After circuit_failures failed calls the endpoint gets no requests until the window ends; metric counted."""
    serper.fail_next = [503] * 1000
    config = web_api_config(serper, tmp_path, max_attempts=1, circuit_failures=2, circuit_open_s=60)
    search = WebSearchTool(config, None)
    metrics = [(await call_tool(search, {"query": [f"q{i}"]}))[2] for i in range(2)]
    assert [m["circuit_open"] for m in metrics] == [0, 0] and len(serper.requests) == 2
    response, _, skipped = await call_tool(search, {"query": ["q2", "q3"]})
    assert skipped["failed_items"] == 2 and skipped["circuit_open"] == 2 and len(serper.requests) == 2
    assert "circuit open after 2 consecutive failures" in response.text
    visit, _, _ = await call_tool(WebVisitTool(config, None), {"url": ["https://example.org/1"]})
    assert "Full text" not in visit.text and len(serper.requests) == 3  # another URL has its own breaker


async def test_dead_retrieval_server_is_skipped_for_a_window(unused_tcp_port, call_tool):
    config = {
        "type": "native",
        "backend": {
            "name": "retrieval_server",
            "base_url": f"http://127.0.0.1:{unused_tcp_port}",
            **RETRY,
            "max_attempts": 1,
            "circuit_failures": 1,
        },
    }
    tool = WebSearchTool(config, None)
    first, _, first_metrics = await call_tool(tool, {"query": ["x"]})
    second, _, second_metrics = await call_tool(tool, {"query": ["x"]})
    assert "connection error" in first.text and first_metrics["circuit_open"] == 0
    assert "circuit open" in second.text and second_metrics["circuit_open"] == 1 and second_metrics["errors"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"message": f"Not enough credits for key {API_KEY}", "statusCode": 400},
        {"error": f"key {API_KEY} is suspended", "organic": []},
        {"organic": "none"},
        [1, 2],
    ],
)
async def test_error_shaped_200_is_an_error_and_never_cached(body, serper, tmp_path, caplog, call_tool):
    serper.bodies_next = [body]
    search = WebSearchTool(web_api_config(serper, tmp_path), None)
    first, _, metrics = await call_tool(search, {"query": ["eta"]})
    assert "search API answered without an 'organic' result list" in first.text and metrics["failed_items"] == 1
    assert "No results" not in first.text and API_KEY not in first.text and API_KEY not in caplog.text
    second, _, _ = await call_tool(search, {"query": ["eta"]})  # not served from the cache: asked again
    assert "eta result 0" in second.text and len(serper.requests) == 2
    third, _, _ = await call_tool(search, {"query": ["eta"]})  # the good answer was cached
    assert third.text == second.text and len(serper.requests) == 2


@pytest.mark.parametrize("pasted", ["sk-live-9f8e7d6c5b4a", "0abc", "MY KEY", ""])
def test_a_key_pasted_into_api_key_env_is_refused_without_being_echoed(pasted):
    with pytest.raises(ConfigError) as caught:
        parse_backend_config({"name": "web_api", "api_key_env": pasted})
    assert "backend (web_api): api_key_env must be the *name* of an environment variable" in str(caught.value)
    assert not pasted or pasted not in str(caught.value)
    with pytest.raises(ValidationError) as built_in_code:
        WebApiBackendConfig(api_key_env=pasted)
    assert not pasted or pasted not in str(built_in_code.value)
    with pytest.raises(ConfigError) as caught:
        JudgeConfig(base_url="http://127.0.0.1:1", model="m", retry=RetryPolicy(), api_key_env=pasted)
    assert not pasted or pasted not in str(caught.value)
