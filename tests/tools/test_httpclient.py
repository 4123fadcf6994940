"""The shared retrying JSON client against real loopback servers: retries, give-ups, timeouts, concurrency."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from actguide_plugin.tools.httpclient import HttpCallError, JsonHttpClient, RetryPolicy, redact, redaction_forms

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}


def scripted_app(statuses: list[int], calls: list[dict], delay_s: float = 0.0, retry_after: str | None = None):
    """Answer the n-th POST with statuses[n] (the last one repeats); 200 bodies echo the request."""

    async def handler(request: web.Request) -> web.Response:
        calls.append(await request.json())
        status = statuses[min(len(calls) - 1, len(statuses) - 1)]
        if delay_s:
            await asyncio.sleep(delay_s)
        if status == 200:
            return web.json_response({"echo": calls[-1]})
        headers = {"Retry-After": retry_after} if retry_after else None
        return web.Response(status=status, text=f"status {status}", headers=headers)

    app = web.Application()
    app.router.add_post("/api", handler)
    return app


@pytest.mark.parametrize("failure", [429, 500, 502, 503])
async def test_retries_retryable_statuses_then_succeeds(failure):
    calls: list[dict] = []
    async with TestServer(scripted_app([failure, failure, 200], calls), host="127.0.0.1") as server:
        client = JsonHttpClient(RetryPolicy(max_attempts=4, **FAST))
        assert await client.post_json(str(server.make_url("/api")), {"q": 1}) == {"echo": {"q": 1}}
    assert len(calls) == 3


async def test_gives_up_after_max_attempts():
    calls: list[dict] = []
    async with TestServer(scripted_app([503], calls), host="127.0.0.1") as server:
        client = JsonHttpClient(RetryPolicy(max_attempts=3, **FAST))
        with pytest.raises(HttpCallError, match="after 3 attempts: HTTP 503") as info:
            await client.post_json(str(server.make_url("/api")), {})
    assert info.value.status == 503 and len(calls) == 3


async def test_client_errors_are_not_retried():
    calls: list[dict] = []
    async with TestServer(scripted_app([400, 200], calls), host="127.0.0.1") as server:
        client = JsonHttpClient(RetryPolicy(max_attempts=4, **FAST))
        with pytest.raises(HttpCallError, match="HTTP 400"):
            await client.post_json(str(server.make_url("/api")), {})
    assert len(calls) == 1


async def test_timeouts_are_retried_and_reported():
    calls: list[dict] = []
    async with TestServer(scripted_app([200], calls, delay_s=0.5), host="127.0.0.1") as server:
        client = JsonHttpClient(RetryPolicy(timeout_s=0.1, max_attempts=2, **FAST))
        with pytest.raises(HttpCallError, match="timeout") as info:
            await client.post_json(str(server.make_url("/api")), {})
    assert info.value.status is None and len(calls) == 2


async def test_connection_refused_is_an_error_not_a_hang(unused_tcp_port):
    client = JsonHttpClient(RetryPolicy(max_attempts=2, **FAST))
    with pytest.raises(HttpCallError, match="connection error"):
        await client.post_json(f"http://127.0.0.1:{unused_tcp_port}/api", {})


async def test_concurrency_is_bounded():
    in_flight, peak = 0, 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        client = JsonHttpClient(RetryPolicy(max_concurrency=2))
        await asyncio.gather(*(client.post_json(str(server.make_url("/api")), {}) for _ in range(8)))
    assert peak == 2


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=5.0)
    assert policy.delay_s(0, "2") == 2.0
    assert policy.delay_s(0, "120") == 5.0
    assert 0.5 <= policy.delay_s(0, "Wed, 21 Oct 2015 07:28:00 GMT") <= 1.0  # date form: own schedule
    assert 2.0 <= policy.delay_s(2) <= 4.0


@pytest.mark.parametrize(
    "bad",
    [
        {"timeout_s": 0},
        {"max_attempts": 0},
        {"circuit_failures": -1},
        {"circuit_open_s": 0},
        {"max_attempts": 2.5},
        {"max_concurrency": 0},
        {"backoff_base_s": -1},
    ],
)
def test_bad_policies_are_rejected(bad):
    with pytest.raises(ValueError):
        RetryPolicy(**bad)


@pytest.mark.parametrize(
    "headers",
    [{"X-API-KEY": "sk-SECRET\r\n"}, {"Authorization": "Bearer sk-SECRET\n"}, {"X-API-KEY": "sk-SECRÉT"}],
)
async def test_unsendable_header_values_are_redacted_and_not_retried(headers):
    """httpx quotes an illegal header value in its error; the client's error must not."""
    calls: list[dict] = []
    async with TestServer(scripted_app([200], calls), host="127.0.0.1") as server:
        client = JsonHttpClient(RetryPolicy(max_attempts=3, **FAST))
        with pytest.raises(HttpCallError) as caught:
            await client.post_json(str(server.make_url("/api")), {"x": 1}, headers)
    assert "SECR" not in str(caught.value) and caught.value.__cause__ is None and calls == []


def test_redaction_covers_raw_stripped_and_escaped_forms():
    forms = redaction_forms(["Bearer sk-SECRÉT-123\r\n"])
    texts = [
        "b'Bearer sk-SECR\\xc3\\x89T-123\\r\\n'",
        "'Bearer sk-SECRÉT-123\\r\\n'",
        "token sk-SECRÉT-123 refused",
        "Bearer sk-SECRÉT-123\r\n",
    ]
    assert all("SECR" not in redact(text, forms) for text in texts)


async def test_timeout_caps_the_whole_attempt_including_a_trickled_body(trickle):
    closed = asyncio.Event()
    app = web.Application()
    app.router.add_post("/api", trickle(0.2, closed))
    async with TestServer(app, host="127.0.0.1") as server:
        client = JsonHttpClient(RetryPolicy(timeout_s=1.0, max_attempts=1, **FAST))
        started = asyncio.get_running_loop().time()
        with pytest.raises(HttpCallError, match=r"timeout after 1\.0s"):
            await client.post_json(str(server.make_url("/api")), {})
        assert asyncio.get_running_loop().time() - started < 10.0  # without the deadline: 200 s
        await asyncio.wait_for(closed.wait(), timeout=5.0)  # the connection was dropped, not left trickling


async def test_circuit_breaker_skips_a_dead_endpoint_then_probes_it_once_per_window():
    calls: list[dict] = []
    statuses = [503]
    async with TestServer(scripted_app(statuses, calls), host="127.0.0.1") as server:
        url = str(server.make_url("/api"))
        client = JsonHttpClient(RetryPolicy(max_attempts=1, circuit_failures=2, circuit_open_s=0.5, **FAST))
        for _ in range(2):
            with pytest.raises(HttpCallError) as caught:
                await client.post_json(url, {})
            assert caught.value.endpoint_failure and not caught.value.circuit_open
        for _ in range(10):  # open: no request goes out
            with pytest.raises(HttpCallError, match="circuit open after 2 consecutive failures") as caught:
                await client.post_json(url, {})
            assert caught.value.circuit_open
        assert len(calls) == 2
        await asyncio.sleep(0.6)
        with pytest.raises(HttpCallError, match="failed after 1 attempts"):  # the probe fails: open again
            await client.post_json(url, {})
        with pytest.raises(HttpCallError, match="circuit open"):
            await client.post_json(url, {})
        assert len(calls) == 3
        statuses[0] = 200
        await asyncio.sleep(0.6)
        assert await client.post_json(url, {"n": 1}) == {"echo": {"n": 1}}  # the probe succeeds: closed
        assert await client.post_json(url, {"n": 2}) == {"echo": {"n": 2}} and len(calls) == 5


async def test_open_circuit_lets_exactly_one_probe_through_concurrent_calls():
    calls: list[dict] = []
    async with TestServer(scripted_app([503, 200], calls, delay_s=0.2), host="127.0.0.1") as server:
        url = str(server.make_url("/api"))
        client = JsonHttpClient(RetryPolicy(max_attempts=1, circuit_failures=1, circuit_open_s=0.3, **FAST))
        with pytest.raises(HttpCallError):
            await client.post_json(url, {})
        await asyncio.sleep(0.4)
        outcomes = await asyncio.gather(*(client.post_json(url, {}) for _ in range(5)), return_exceptions=True)
    assert len(calls) == 2 and sum(not isinstance(outcome, Exception) for outcome in outcomes) == 1
    assert all(outcome.circuit_open for outcome in outcomes if isinstance(outcome, HttpCallError))


async def test_client_errors_do_not_open_the_circuit():
    """A 4xx says the endpoint is up (the request was bad): calls keep going out."""
    calls: list[dict] = []
    async with TestServer(scripted_app([400], calls), host="127.0.0.1") as server:
        client = JsonHttpClient(RetryPolicy(max_attempts=1, circuit_failures=1, **FAST))
        for _ in range(3):
            with pytest.raises(HttpCallError) as caught:
                await client.post_json(str(server.make_url("/api")), {})
            assert not caught.value.endpoint_failure and not caught.value.circuit_open
    assert len(calls) == 3


def test_a_short_bearer_key_is_redacted_on_its_own():
    assert redact("server says: key k1x is unknown", redaction_forms(["Bearer k1x"])) == (
        "server says: key [REDACTED] is unknown"
    )


def echo_lowercased_app():
    """A server that quotes back what it was sent, lower-cased: the URL's query, the auth header and the body."""

    async def handler(request: web.Request) -> web.Response:
        text = f"bad request {request.query_string} {request.headers.get('Authorization', '')} {await request.text()}"
        return web.Response(status=401, text=text.lower())

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    return app


async def test_keys_in_the_url_or_echoed_in_another_case_never_reach_the_error_or_the_logs(caplog):
    async with TestServer(echo_lowercased_app(), host="127.0.0.1") as server:
        root = server.make_url("")
        url = f"http://user:PASSword-77@{root.host}:{root.port}/v1/chat/completions?key=SK-UrlSecret-42&v=2"
        client = JsonHttpClient(RetryPolicy(max_attempts=1, **FAST))
        with caplog.at_level("DEBUG"), pytest.raises(HttpCallError) as caught:
            await client.post_json(url, {"q": "x"}, {"Authorization": "Bearer SK-HeaderSecret-99"})
    message = str(caught.value)
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp"))  # not the server's
    assert "HTTP 401" in message and "[REDACTED]" in message  # the server's echo is there, redacted
    for secret in ("urlsecret", "headersecret", "password"):
        assert secret not in message.lower() and secret not in logged.lower()
    assert f"POST http://{root.host}:{root.port}/v1/chat/completions?key=[REDACTED]&v=[REDACTED]" in message


def test_redaction_ignores_letter_case():
    assert redact("KEY sk-abcdef IS BAD", redaction_forms(["SK-ABCDEF"])) == "KEY [REDACTED] IS BAD"


async def test_a_500_for_one_request_does_not_open_the_circuit_for_the_others():
    """A 500 is that request failing (deterministically, e.g. text the server cannot encode), not a dead endpoint."""
    calls: list[dict] = []
    async with TestServer(scripted_app([500], calls), host="127.0.0.1") as server:
        client = JsonHttpClient(RetryPolicy(max_attempts=2, circuit_failures=2, **FAST))
        for _ in range(5):
            with pytest.raises(HttpCallError, match="HTTP 500") as caught:
                await client.post_json(str(server.make_url("/api")), {})
            assert not caught.value.endpoint_failure and not caught.value.circuit_open
    assert len(calls) == 10  # retried each time, and never skipped
