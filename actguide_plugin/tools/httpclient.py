"""One small JSON-over-HTTP client with retries, shared by every network caller in the plugin.

The retrieval-server backend, the web-API backend and the reward judge all need the same thing: POST a JSON
body, bound the number of requests in flight, give up after a timeout, and retry with exponential backoff
on the failures that are worth retrying (HTTP 429, 5xx, timeouts, refused connections). Keeping it in one
place means one behaviour to test and one place that must never leak an API key.

Secrets: callers pass headers per call; headers are never logged, and every header value (and each long
token in it, e.g. the key of ``Bearer <key>``) is redacted from every error text this client produces, in
the raw, stripped and escaped forms a transport error may print (httpx's "illegal header value b'...'"),
and from response-body excerpts a hostile server may echo it into. ``parse`` callbacks run inside the same
redaction, so a caller's shape check can quote the body safely.

Event loops: verl runs tools and rewards on long-lived loops, tests on a fresh loop each. An
``httpx.AsyncClient`` and an ``asyncio.Semaphore`` belong to the loop that first used them, so the client
keeps one of each per running loop.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from actguide_plugin.logs import get_logger

logger = get_logger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_BODY_EXCERPT_CHARS = 200
_REDACTED = "[REDACTED]"
_MIN_TOKEN_CHARS = 8  # tokens of a header value at least this long are redacted on their own too


class HttpCallError(RuntimeError):
    """A request failed for good (non-retryable status, or retries exhausted).

    ``status`` is the last HTTP status, or ``None`` when no response arrived (timeout, connection error).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request.

    Fields:
        timeout_s: total time allowed for one attempt (connect, send and the whole body read), seconds.
        max_attempts: attempts in all, the first included (1 = no retry).
        backoff_base_s: delay before the first retry; doubles each retry, with jitter in [0.5, 1] of it.
        backoff_max_s: cap on one delay, also the cap on a server's ``Retry-After``.
        max_concurrency: requests in flight at once per event loop (the rest wait).
    """

    timeout_s: float = 30.0
    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_concurrency: int = 16

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        for name in ("max_attempts", "max_concurrency"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("backoff_base_s and backoff_max_s must be >= 0")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")

    def delay_s(self, retry_index: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``retry_index`` (0-based); honours a numeric Retry-After."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.backoff_max_s)
            except ValueError:
                pass  # an HTTP-date Retry-After: fall back to our own schedule
        delay = min(self.backoff_base_s * (2**retry_index), self.backoff_max_s)
        return delay * random.uniform(0.5, 1.0)


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
        quotes the body, redacted). Raises :class:`HttpCallError`, its message redacted of the header values.
        """
        secrets = redaction_forms(headers.values() if headers else ())
        try:
            body = await self._post_with_retries(url, payload, dict(headers) if headers else None, secrets)
            if parse is None:
                return body
            try:
                return parse(body)
            except UnexpectedResponse as err:
                raise HttpCallError(f"POST {url}: {err}; got: {_excerpt(redact(str(body), secrets))}", 200) from None
        except HttpCallError as err:
            raise HttpCallError(redact(str(err), secrets), err.status) from None

    async def _post_with_retries(
        self, url: str, payload: Any, headers: dict[str, str] | None, secrets: list[str]
    ) -> Any:
        client, semaphore = self._loop_state()
        last: _Retryable | None = None
        for attempt in range(self.policy.max_attempts):
            if last is not None:
                delay = self.policy.delay_s(attempt - 1, last.retry_after)
                logger.info("retrying POST %s in %.2fs after: %s", url, delay, redact(str(last), secrets))
                await asyncio.sleep(delay)
            try:
                async with semaphore:
                    return await self._attempt(client, url, payload, headers, secrets)
            except _Retryable as err:
                last = err
        assert last is not None
        raise HttpCallError(f"POST {url} failed after {self.policy.max_attempts} attempts: {last}", last.status)

    async def _attempt(
        self, client: httpx.AsyncClient, url: str, payload: Any, headers: dict[str, str] | None, secrets: list[str]
    ) -> Any:
        try:
            # httpx applies its timeout per phase (connect, each read): a server trickling a byte a second would
            # hold the call forever. The deadline covers the attempt as a whole, body read included.
            response = await asyncio.wait_for(
                client.post(url, json=payload, headers=headers), timeout=self.policy.timeout_s
            )
        except (httpx.TimeoutException, asyncio.TimeoutError) as err:
            raise _Retryable(f"timeout after {self.policy.timeout_s}s ({type(err).__name__})", None) from None
        except httpx.LocalProtocolError as err:  # e.g. an illegal header value: retrying cannot help
            raise HttpCallError(f"POST {url}: request rejected before sending ({type(err).__name__}: {err})") from None
        except UnicodeEncodeError as err:  # a non-ASCII header value
            raise HttpCallError(f"POST {url}: request could not be encoded ({type(err).__name__})") from None
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
            raise HttpCallError(f"POST {url}: HTTP {response.status_code}: {_excerpt(text)}", response.status_code)
        try:
            return response.json()
        except ValueError:
            raise HttpCallError(
                f"POST {url}: response is not JSON: {_excerpt(redact(response.text, secrets))}", response.status_code
            ) from None


def redaction_forms(values: Iterable[str]) -> list[str]:
    """Every spelling of the secret ``values`` an error text may contain, longest first.

    A value, its stripped form, its long whitespace-separated tokens (the key of ``Bearer <key>``), and each
    of those as ``repr`` escapes them (``\\r\\n``) for ``str`` and UTF-8 ``bytes``.
    """
    forms: set[str] = set()
    for value in values:
        pieces = {value, value.strip(), *(token for token in value.split() if len(token) >= _MIN_TOKEN_CHARS)}
        for piece in pieces:
            forms.update((piece, repr(piece)[1:-1], repr(piece.encode("utf-8", "backslashreplace"))[2:-1]))
    forms.discard("")
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each of ``secrets`` replaced by ``[REDACTED]``."""
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_EXCERPT_CHARS else text[:_BODY_EXCERPT_CHARS] + "…"
