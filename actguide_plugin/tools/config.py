"""Typed configs for the tools and backends, read from the ``config:`` blocks of the tool yaml files.

Each config is a dataclass; :func:`parse_config` rejects unknown keys and wrong types with a message that
names the yaml section, the key and what is allowed, so a typo in a yaml fails at the first tool call
instead of silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from actguide_plugin.tools.httpclient import RetryPolicy

T = TypeVar("T")


class ConfigError(ValueError):
    """A tool or backend config has an unknown key or a bad value."""


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_variable_name(field: str, value: str) -> None:
    """Refuse an ``api_key_env`` that is not an environment variable name: most likely the key itself, pasted in.

    The message never shows the value — it would reach the logs, and through a tool error the model's context.
    """
    if not isinstance(value, str) or not _VARIABLE_NAME.fullmatch(value):
        raise ConfigError(
            f"{field} must be the *name* of an environment variable (letters, digits and _, not starting with a "
            "digit), e.g. SERPER_API_KEY; the value given is not one and is not shown, as it may be the key itself"
        )


def read_api_key(variable: str) -> str | None:
    """The API key in environment variable ``variable``, stripped; ``None`` when unset or blank.

    Secret files and ``.env`` lines often end in ``\\r`` or ``\\n``; sent as is, the key would be an illegal
    header value whose error text quotes it. What remains after stripping must be printable ASCII (what an
    HTTP header can carry), else :class:`ConfigError` names the variable, never the value.
    """
    key = os.environ.get(variable, "").strip()
    if not key:
        return None
    if not all(" " <= char <= "~" for char in key):
        raise ConfigError(
            f"environment variable {variable} holds an invalid API key: only printable ASCII characters are "
            "allowed (it has a non-ASCII or control character)"
        )
    return key


def parse_config(config_type: type[T], raw: Mapping[str, Any], where: str) -> T:
    """Build ``config_type`` from ``raw``; ``where`` names the yaml section in error messages."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    allowed = {f.name for f in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    try:
        return config_type(**raw)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _require_positive(where: str, **values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r} ({where})")


@dataclass(frozen=True)
class LocalBackendConfig:
    """``backend.name: local`` — in-process BM25 over ``corpus.jsonl``, no network.

    Fields:
        name: always ``local``.
        corpus_path: path of ``corpus.jsonl`` (absolute is safest: Ray workers may run in another directory).
        k1, b: BM25 parameters.
    """

    name: str
    corpus_path: str
    k1: float = 1.5
    b: float = 0.75

    def __post_init__(self) -> None:
        if not self.corpus_path:
            raise ValueError("corpus_path is required for the local backend")
        _require_positive("local backend", k1=self.k1)
        if not 0.0 <= self.b <= 1.0:
            raise ValueError(f"b must be in [0, 1], got {self.b}")


@dataclass(frozen=True)
class HttpBackendConfig:
    """Settings every network backend shares: retries, concurrency and the SQLite cache.

    Fields:
        timeout_s, max_attempts, backoff_base_s, backoff_max_s, max_concurrency, circuit_failures,
            circuit_open_s: see :class:`actguide_plugin.tools.httpclient.RetryPolicy`.
        cache_path: SQLite file for cached responses (``~`` expanded); empty or null disables the cache.
        search_ttl_s, visit_ttl_s: how long cached search results / page texts stay valid, seconds.
        api_key_env: name of the environment variable holding the API key (the key itself is never in a
            config); null sends no key.
        api_key_header: HTTP header that carries the key.
    """

    timeout_s: float = 30.0
    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_concurrency: int = 16
    circuit_failures: int = 5
    circuit_open_s: float = 30.0
    cache_path: str | None = None
    search_ttl_s: float = 86_400.0
    visit_ttl_s: float = 604_800.0
    api_key_env: str | None = None
    api_key_header: str = "X-API-KEY"

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            max_concurrency=self.max_concurrency,
            circuit_failures=self.circuit_failures,
            circuit_open_s=self.circuit_open_s,
        )

    @property
    def resolved_cache_path(self) -> str | None:
        return os.path.expanduser(self.cache_path) if self.cache_path else None

    def api_key_headers(self) -> dict[str, str]:
        """The header carrying the key read (and validated) from ``api_key_env`` now; empty without a key."""
        if self.api_key_env is None:
            return {}
        key = read_api_key(self.api_key_env)
        if key is None:
            raise ConfigError(f"environment variable {self.api_key_env} is not set")
        return {self.api_key_header: key}

    def __post_init__(self) -> None:
        _ = self.retry_policy  # validates the retry fields now, not at the first request
        _require_positive("cache", search_ttl_s=self.search_ttl_s, visit_ttl_s=self.visit_ttl_s)
        if self.api_key_env is not None:  # null: no key
            check_variable_name("api_key_env", self.api_key_env)


@dataclass(frozen=True)
class RetrievalServerBackendConfig(HttpBackendConfig):
    """``backend.name: retrieval_server`` — a Search-R1 ``/retrieve`` server (``actguide-retriever`` or theirs).

    Fields:
        name: always ``retrieval_server``.
        base_url: e.g. ``http://127.0.0.1:8000``; search posts to ``/retrieve``, visit to ``/visit`` (ours only).
        api_key_env, api_key_header: optional, for a server behind an authenticating proxy (see the base).
    """

    name: str = "retrieval_server"
    base_url: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")


@dataclass(frozen=True)
class WebApiBackendConfig(HttpBackendConfig):
    """``backend.name: web_api`` — Serper-style search and page-fetch APIs.

    Fields:
        name: always ``web_api``.
        search_url: POST ``{"q": query, "num": k}`` -> ``{"organic": [{"title", "link", "snippet"}]}``.
        visit_url: POST ``{"url": url}`` -> ``{"text": ..., "metadata": {"title": ...}}``.
        api_key_env, api_key_header: see the base; required here (default ``SERPER_API_KEY`` in ``X-API-KEY``).
    """

    name: str = "web_api"
    search_url: str = "https://google.serper.dev/search"
    visit_url: str = "https://scrape.serper.dev"
    api_key_env: str = "SERPER_API_KEY"

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("search_url", "visit_url"):
            if not getattr(self, key).startswith(("http://", "https://")):
                raise ValueError(f"{key} must be an http(s) URL, got {getattr(self, key)!r}")
        if self.api_key_env is None:
            raise ValueError("api_key_env must name an environment variable (this backend needs a key)")


@dataclass(frozen=True)
class SearchToolConfig:
    """``config:`` of the ``web_search`` tool.

    Fields:
        type: verl tool type, always ``native``.
        backend: the backend block (``name`` selects local / retrieval_server / web_api).
        topk: hits per query.
        snippet_chars: longest snippet shown per hit (cut at a word boundary).
        max_queries_per_call: queries beyond this are not run (the response says so).
        max_query_chars: a longer query fails alone, with a message for the model (the others of the call run);
            the retriever server refuses longer ones (its ``--max-query-chars``, 2048), which would fail the call.
    """

    backend: dict[str, Any]
    type: str = "native"
    topk: int = 5
    snippet_chars: int = 300
    max_queries_per_call: int = 5
    max_query_chars: int = 2048

    def __post_init__(self) -> None:
        _require_positive(
            "web_search",
            topk=self.topk,
            snippet_chars=self.snippet_chars,
            max_queries=self.max_queries_per_call,
            max_query_chars=self.max_query_chars,
        )


@dataclass(frozen=True)
class VisitToolConfig:
    """``config:`` of the ``web_visit`` tool.

    Fields:
        type: verl tool type, always ``native``.
        backend: the backend block (usually the same yaml anchor as ``web_search``'s).
        max_page_chars: page text budget per url; the head is kept and the cut is marked.
        max_urls_per_call: urls beyond this are not visited (the response says so).
        max_url_chars: a longer url fails alone, as ``web_search``'s ``max_query_chars``.
    """

    backend: dict[str, Any]
    type: str = "native"
    max_page_chars: int = 5000
    max_urls_per_call: int = 3
    max_url_chars: int = 2048

    def __post_init__(self) -> None:
        _require_positive(
            "web_visit",
            max_page_chars=self.max_page_chars,
            max_urls=self.max_urls_per_call,
            max_url_chars=self.max_url_chars,
        )
