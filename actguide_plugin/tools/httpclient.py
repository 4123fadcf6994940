"""One small JSON-over-HTTP client with retries, shared by every network caller in the plugin.

The retrieval-server backend, the web-API backend and the reward judge all need the same thing: POST a JSON
body, bound the number of requests in flight, give up after a timeout, and retry with exponential backoff
on the failures that are worth retrying (HTTP 429, 5xx, timeouts, refused connections). Keeping it in one
place means one behaviour to test and one place that must never leak an API key.

Secrets: callers pass headers per call; headers are never logged, and every header value (and the credential
after an auth scheme, e.g. the key of ``Bearer <key>``) is redacted from every error text this client produces,
in the raw, stripped and escaped forms a transport error may print (httpx's "illegal header value b'...'"), and
from response-body excerpts a hostile server may echo it into. ``parse`` callbacks run inside the same
redaction, so a caller's shape check can quote the body safely.

Dead endpoints: a judge or search service that is down would cost every trajectory a full timeout (times the
attempts). A :class:`CircuitBreaker` per URL opens after ``circuit_failures`` consecutive calls that failed at
the endpoint (timeouts, refused connections, 408/429/5xx after all retries); while open, calls to that URL fail
at once with ``HttpCallError.circuit_open`` set, and after ``circuit_open_s`` a single call probes it (success
closes the circuit, failure keeps it open another window): one timeout per window, not per trajectory.

Event loops: verl runs tools and rewards on long-lived loops, tests on a fresh loop each. An
``httpx.AsyncClient`` and an ``asyncio.Semaphore`` belong to the loop that first used them, so the client
keeps one of each per running loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from actguide_plugin.logs import get_logger

logger = get_logger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_BODY_EXCERPT_CHARS = 200
_REDACTED = "[REDACTED]"
# httpx logs every request's full URL at INFO, credentials included; this module logs URLs redacted instead
logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
_MIN_QUERY_SECRET = 8  # shorter query values (page=2, model=x) are redacted from the URL only, not from all text


class HttpCallError(RuntimeError):
    """A request failed for good (non-retryable status, or retries exhausted).

    ``status`` is the last HTTP status, or ``None`` when no response arrived (timeout, connection error).
    ``endpoint_failure``: the endpoint looked down or overloaded (what the circuit breaker counts): no answer, or
    408/429/502/503/504 after every retry; not a 500, which fails that request (and may for good).
    ``circuit_open``: not sent at all, because the URL's circuit breaker is open.
    """

    def __init__(
        self, message: str, status: int | None = None, *, endpoint_failure: bool = False, circuit_open: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.endpoint_failure = endpoint_failure
        self.circuit_open = circuit_open


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request.

    Fields:
        timeout_s: total time allowed for one attempt (connect, send and the whole body read), seconds.
        max_attempts: attempts in all, the first included (1 = no retry).
        backoff_base_s: delay before the first retry; doubles each retry, with jitter in [0.5, 1] of it.
        backoff_max_s: cap on one delay, also the cap on a server's ``Retry-After``.
        max_concurrency: requests in flight at once per event loop (the rest wait).
        circuit_failures: consecutive failed calls to one URL that open its circuit breaker; 0 disables it.
        circuit_open_s: how long an open circuit skips the URL before one call probes it, seconds.
    """

    timeout_s: float = 30.0
    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_concurrency: int = 16
    circuit_failures: int = 5
    circuit_open_s: float = 30.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        for name in ("max_attempts", "max_concurrency", "circuit_failures"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("backoff_base_s and backoff_max_s must be >= 0")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.circuit_failures < 0:
            raise ValueError(f"circuit_failures must be >= 0 (0 disables the breaker), got {self.circuit_failures}")
        if self.circuit_open_s <= 0:
            raise ValueError(f"circuit_open_s must be > 0, got {self.circuit_open_s}")

    def delay_s(self, retry_index: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``retry_index`` (0-based); honours a numeric Retry-After."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.backoff_max_s)
            except ValueError:
                pass  # an HTTP-date Retry-After: fall back to our own schedule
        delay = min(self.backoff_base_s * (2**retry_index), self.backoff_max_s)
        return delay * random.uniform(0.5, 1.0)


RETRY_FIELDS = tuple(f.name for f in fields(RetryPolicy))  # the keys configs take it from, by name


class CircuitBreaker:
    """Consecutive endpoint failures of one URL, and whether calls to it should be skipped for now.

    Shared by every event loop and thread of the process (the client serves many loops), hence the lock.
    """

    def __init__(self, failures: int, open_s: float) -> None:
        self.failures = failures
        self.open_s = open_s
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    def allow(self) -> bool:
        """Whether a call may go out now: always when closed; when open, one probe once the window is over."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or time.monotonic() - self._opened_at < self.open_s:
                return False
            self._probing = True
            return True

    def seconds_left(self) -> float:
        """Time until an open circuit lets a probe through (0 when closed)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(self.open_s - (time.monotonic() - self._opened_at), 0.0)

    def record(self, endpoint_failed: bool | None) -> bool:
        """Count one finished call (``None``: no verdict, e.g. cancelled); ``True`` when this opened the circuit."""
        with self._lock:
            self._probing = False
            if endpoint_failed is None:
                return False
            if not endpoint_failed:
                self._consecutive, self._opened_at = 0, None
                return False
            self._consecutive += 1
            if self.failures and (self._opened_at is not None or self._consecutive >= self.failures):
                was_closed = self._opened_at is None
                self._opened_at = time.monotonic()
                return was_closed
            return False


class UnexpectedResponse(ValueError):
    """Raised by a ``post_json`` ``parse`` callback: the body lacks the expected shape.

    The message says what was expected; the client adds a redacted excerpt of the body.
    """


class _Retryable(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, message: str, status: int | None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


_LoopState = tuple[httpx.AsyncClient, asyncio.Semaphore]


class JsonHttpClient:
    """POST JSON, get JSON back, with the retry policy above. One instance may serve many loops."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]
        ]
        self._per_loop = weakref.WeakKeyDictionary()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._breakers_lock = threading.Lock()

    def _breaker(self, url: str) -> CircuitBreaker:
        with self._breakers_lock:
            breaker = self._breakers.get(url)
            if breaker is None:
                breaker = CircuitBreaker(self.policy.circuit_failures, self.policy.circuit_open_s)
                self._breakers[url] = breaker
            return breaker

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._per_loop.get(loop)
        if state is None:
            limits = httpx.Limits(max_connections=self.policy.max_concurrency)
            client = httpx.AsyncClient(timeout=self.policy.timeout_s, limits=limits)
            state = (client, asyncio.Semaphore(self.policy.max_concurrency))
            self._per_loop[loop] = state
        return state

    async def post_json(
        self,
        url: str,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """POST ``payload`` to ``url``; return the decoded JSON body, through ``parse`` when given.

        ``parse`` raises :class:`UnexpectedResponse` for a body of the wrong shape (not retried; the error
        quotes the body, redacted). Raises :class:`HttpCallError`, its message redacted of the header values,
        at once when the URL's circuit breaker is open.
        """
        shown = display_url(url)
        breaker = self._breaker(url)
        if not breaker.allow():
            raise HttpCallError(
                f"POST {shown} skipped: circuit open after {breaker.failures} consecutive failures "
                f"(next try in {breaker.seconds_left():.0f}s)",
                circuit_open=True,
            )
        secrets = _call_secrets(url, headers)
        endpoint_failed: bool | None = None
        try:
            body = await self._post_with_retries(url, shown, payload, dict(headers) if headers else None, secrets)
            endpoint_failed = False
            if parse is None:
                return body
            try:
                return parse(body)
            except UnexpectedResponse as err:
                raise HttpCallError(f"POST {shown}: {err}; got: {_excerpt(redact(str(body), secrets))}", 200) from None
        except HttpCallError as err:
            endpoint_failed = err.endpoint_failure
            raise HttpCallError(redact(str(err), secrets), err.status, endpoint_failure=err.endpoint_failure) from None
        finally:
            if breaker.record(endpoint_failed):
                logger.warning(
                    "POST %s: circuit open after %d consecutive failures; calls skipped for %.0fs",
                    shown,
                    breaker.failures,
                    breaker.open_s,
                )

    async def get_json(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
        """One GET, decoded as JSON: for a cheap probe such as ``/health`` (no retries, no circuit breaker).
        Raises :class:`HttpCallError`, redacted like :meth:`post_json`; its ``status`` is ``None`` when no answer
        came (connection refused, timeout)."""
        client, _ = self._loop_state()
        shown = display_url(url)
        secrets = _call_secrets(url, headers)
        try:
            response = await asyncio.wait_for(client.get(url, headers=headers), timeout=self.policy.timeout_s)
        except (httpx.HTTPError, asyncio.TimeoutError) as err:
            reason = _excerpt(redact(f"{type(err).__name__}: {err}", secrets))
            raise HttpCallError(f"GET {shown}: {reason}", endpoint_failure=True) from None
        if response.status_code >= 400:
            raise HttpCallError(f"GET {shown}: HTTP {response.status_code}", response.status_code)
        try:
            return response.json()
        except ValueError:
            raise HttpCallError(f"GET {shown}: response is not JSON", response.status_code) from None

    async def _post_with_retries(
        self, url: str, shown: str, payload: Any, headers: dict[str, str] | None, secrets: list[str]
    ) -> Any:
        client, semaphore = self._loop_state()
        last: _Retryable | None = None
        for attempt in range(self.policy.max_attempts):
            if last is not None:
                delay = self.policy.delay_s(attempt - 1, last.retry_after)
                logger.info("retrying POST %s in %.2fs after: %s", shown, delay, redact(str(last), secrets))
                await asyncio.sleep(delay)
            try:
                async with semaphore:
                    return await self._attempt(client, url, shown, payload, headers, secrets)
            except _Retryable as err:
                last = err
        assert last is not None
        # a 500 is this request failing (often for good: text the server cannot encode), not the endpoint being
        # down or overloaded: it is retried, but the breaker does not count it
        raise HttpCallError(
            f"POST {shown} failed after {self.policy.max_attempts} attempts: {last}",
            last.status,
            endpoint_failure=last.status != 500,
        )

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        url: str,
        shown: str,
        payload: Any,
        headers: dict[str, str] | None,
        secrets: list[str],
    ) -> Any:
        """One attempt; ``shown`` is the URL as messages show it (:func:`display_url`)."""
        try:
            # httpx applies its timeout per phase (connect, each read): a server trickling a byte a second would
            # hold the call forever. The deadline covers the attempt as a whole, body read included.
            response = await asyncio.wait_for(
                client.post(url, json=payload, headers=headers), timeout=self.policy.timeout_s
            )
        except (httpx.TimeoutException, asyncio.TimeoutError) as err:
            raise _Retryable(f"timeout after {self.policy.timeout_s}s ({type(err).__name__})", None) from None
        except httpx.LocalProtocolError as err:  # e.g. an illegal header value: retrying cannot help
            reason = f"request rejected before sending ({type(err).__name__}: {err})"
            raise HttpCallError(f"POST {shown}: {reason}") from None
        except UnicodeEncodeError as err:  # a non-ASCII header value
            raise HttpCallError(f"POST {shown}: request could not be encoded ({type(err).__name__})") from None
        except httpx.TransportError as err:
            raise _Retryable(f"connection error ({type(err).__name__}: {err})", None) from None
        text = redact(response.text, secrets) if response.status_code >= 400 else ""
        if response.status_code in RETRYABLE_STATUSES:
            raise _Retryable(
                f"HTTP {response.status_code}: {_excerpt(text)}",
                response.status_code,
                response.headers.get("retry-after"),
            )
        if response.status_code >= 400:
            raise HttpCallError(f"POST {shown}: HTTP {response.status_code}: {_excerpt(text)}", response.status_code)
        try:
            return response.json()
        except ValueError:
            raise HttpCallError(
                f"POST {shown}: response is not JSON: {_excerpt(redact(response.text, secrets))}", response.status_code
            ) from None


def redaction_forms(values: Iterable[str]) -> list[str]:
    """Every spelling of the secret ``values`` an error text may contain, longest first.

    A value, its stripped form, what follows its first word (the key of ``Bearer <key>``), and each of those
    as ``repr`` escapes them (``\\r\\n``) for ``str`` and UTF-8 ``bytes``.
    """
    forms: set[str] = set()
    for value in values:
        pieces = {value, value.strip(), *value.split()[1:]}
        for piece in pieces:
            forms.update((piece, repr(piece)[1:-1], repr(piece.encode("utf-8", "backslashreplace"))[2:-1]))
    forms.discard("")
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each of ``secrets``, in any letter case (a server may echo a key
    lower-cased), replaced by ``[REDACTED]``."""
    for secret in secrets:
        text = re.sub(re.escape(secret), _REDACTED, text, flags=re.IGNORECASE)
    return text


def _call_secrets(url: str, headers: Mapping[str, str] | None) -> list[str]:
    """What a call's error texts must not show: its header values and the credentials in its URL."""
    return redaction_forms([*(headers.values() if headers else ()), *url_secrets(url)])


def url_secrets(url: str) -> list[str]:
    """What a URL may carry as credentials: its userinfo and the query values long enough to be a key."""
    parts = urlsplit(url)
    found = [value for value in (parts.username, parts.password) if value]
    found += [value for _, value in parse_qsl(parts.query) if len(value) >= _MIN_QUERY_SECRET]
    return found


def display_url(url: str) -> str:
    """``url`` as messages and logs show it: no userinfo, every query value ``[REDACTED]``, no fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{name}={_REDACTED}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_EXCERPT_CHARS else text[:_BODY_EXCERPT_CHARS] + "…"
