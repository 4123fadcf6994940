"""Typed configs for the tools and backends, read from the ``config:`` blocks of the tool yaml files.

Each config is a pydantic model that forbids unknown keys and checks types strictly; :func:`parse_config`
turns a validation failure into one :class:`ConfigError` that names the yaml section and every bad key (with
what is allowed), so a typo in a yaml fails at the first tool call instead of silently falling back to a
default. Messages never quote a value: a pasted API key must not reach the logs or the model.

The retry settings of the network backends are :class:`~actguide_plugin.tools.httpclient.RetryPolicy`'s fields,
taken from it by name (the one retry policy of the plugin), so a default is written once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from actguide_plugin.tools.httpclient import RETRY_FIELDS, RetryPolicy

M = TypeVar("M", bound=BaseModel)


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


def parse_config(config_type: type[M], raw: Any, where: str) -> M:
    """Build ``config_type`` from ``raw``; ``where`` names the yaml section in error messages."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    try:
        return config_type.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(f"{where}: {describe_errors(err, config_type)}") from None  # the cause holds the values


def describe_errors(err: ValidationError, config_type: type[BaseModel]) -> str:
    """The errors of one validation, each naming its key, without the values given (one may be a secret)."""
    unknown = sorted(".".join(map(str, e["loc"])) for e in err.errors() if e["type"] == "extra_forbidden")
    parts = [f"unknown key(s) {unknown}; allowed: {sorted(config_type.model_fields)}"] if unknown else []
    for error in err.errors():
        key = ".".join(map(str, error["loc"]))
        if error["type"] == "extra_forbidden":
            continue
        if error["type"] == "missing":
            parts.append(f"{key} is required")
        elif error["type"] == "value_error":  # our own checks: the message names the key
            parts.append(str(error["ctx"]["error"]))
        else:
            parts.append(f"{key}: {error['msg']}")
    return "; ".join(parts)


class ToolConfigModel(BaseModel):
    """Base of every tool and backend config: unknown keys and wrong types are errors, a config is immutable, and
    a :class:`~pydantic.ValidationError` of one built in code does not quote the values either."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, hide_input_in_errors=True)


def _http_url(key: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{key} must be an http(s) URL (http://... or https://...)")  # a URL may carry a key
    return value


class LocalBackendConfig(ToolConfigModel):
    """``backend.name: local`` — in-process BM25 over ``corpus.jsonl``, no network.

    Fields:
        name: always ``local``.
        corpus_path: path of ``corpus.jsonl`` (absolute is safest: Ray workers may run in another directory).
        k1, b: BM25 parameters.
    """

    name: Literal["local"]
    corpus_path: str = Field(min_length=1)
    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)


_RETRY_HINTS = typing.get_type_hints(RetryPolicy)

# The retry keys of a network backend's block: RetryPolicy's fields with its defaults, by name.
_RetryKeys: type[ToolConfigModel] = create_model(
    "_RetryKeys",
    __base__=ToolConfigModel,
    **{f.name: (_RETRY_HINTS[f.name], f.default) for f in dataclasses.fields(RetryPolicy)},
)


class HttpBackendConfig(_RetryKeys):
    """Settings every network backend shares: retries, concurrency and the SQLite cache.

    Fields:
        timeout_s, max_attempts, backoff_base_s, backoff_max_s, max_concurrency, circuit_failures,
            circuit_open_s: the fields of :class:`actguide_plugin.tools.httpclient.RetryPolicy`, with its defaults.
        cache_path: SQLite file for cached responses (``~`` expanded); empty or null disables the cache.
        search_ttl_s, visit_ttl_s: how long cached search results / page texts stay valid, seconds.
        api_key_env: name of the environment variable holding the API key (the key itself is never in a
            config); null sends no key.
        api_key_header: HTTP header that carries the key.
    """

    cache_path: str | None = None
    search_ttl_s: float = Field(86_400.0, gt=0)
    visit_ttl_s: float = Field(604_800.0, gt=0)
    api_key_env: str | None = None
    api_key_header: str = "X-API-KEY"

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None:  # null: no key
            check_variable_name("api_key_env", value)
        return value

    @model_validator(mode="after")
    def _retry_checks(self) -> HttpBackendConfig:
        _ = self.retry_policy  # validates the retry fields now, not at the first request
        return self

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(**{name: getattr(self, name) for name in RETRY_FIELDS})

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


class RetrievalServerBackendConfig(HttpBackendConfig):
    """``backend.name: retrieval_server`` — a Search-R1 ``/retrieve`` server (``actguide-retriever`` or theirs).

    Fields:
        name: always ``retrieval_server``.
        base_url: e.g. ``http://127.0.0.1:8000``; search posts to ``/retrieve``, visit to ``/visit`` (ours only).
        api_key_env, api_key_header: optional, for a server behind an authenticating proxy (see the base).
    """

    name: Literal["retrieval_server"] = "retrieval_server"
    base_url: str

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url("base_url", value)


class WebApiBackendConfig(HttpBackendConfig):
    """``backend.name: web_api`` — Serper-style search and page-fetch APIs.

    Fields:
        name: always ``web_api``.
        search_url: POST ``{"q": query, "num": k}`` -> ``{"organic": [{"title", "link", "snippet"}]}``.
        visit_url: POST ``{"url": url}`` -> ``{"text": ..., "metadata": {"title": ...}}``.
        api_key_env, api_key_header: see the base; required here (default ``SERPER_API_KEY`` in ``X-API-KEY``).
    """

    name: Literal["web_api"] = "web_api"
    search_url: str = "https://google.serper.dev/search"
    visit_url: str = "https://scrape.serper.dev"
    api_key_env: str = "SERPER_API_KEY"

    @field_validator("search_url", "visit_url")
    @classmethod
    def _urls(cls, value: str, info: Any) -> str:
        return _http_url(info.field_name, value)


class SearchToolConfig(ToolConfigModel):
    """``config:`` of the ``web_search`` tool.

    Fields:
        type: verl tool type, always ``native``.
        backend: the backend block (``name`` selects local / retrieval_server / web_api); checked by
            :func:`actguide_plugin.tools.backends.parse_backend_config` against the named backend's model.
        topk: hits per query.
        snippet_chars: longest snippet shown per hit (cut at a word boundary).
        max_queries_per_call: queries beyond this are not run (the response says so).
        max_query_chars: a longer query fails alone, with a message for the model (the others of the call run);
            the retriever server refuses longer ones (its ``--max-query-chars``, 2048), which would fail the call.
    """

    backend: dict[str, Any]
    type: Literal["native"] = "native"
    topk: int = Field(5, gt=0)
    snippet_chars: int = Field(300, gt=0)
    max_queries_per_call: int = Field(5, gt=0)
    max_query_chars: int = Field(2048, gt=0)


class VisitToolConfig(ToolConfigModel):
    """``config:`` of the ``web_visit`` tool.

    Fields:
        type: verl tool type, always ``native``.
        backend: the backend block (usually the same yaml anchor as ``web_search``'s).
        max_page_chars: page text budget per url; the head is kept and the cut is marked.
        max_urls_per_call: urls beyond this are not visited (the response says so).
        max_url_chars: a longer url fails alone, as ``web_search``'s ``max_query_chars``.
    """

    backend: dict[str, Any]
    type: Literal["native"] = "native"
    max_page_chars: int = Field(5000, gt=0)
    max_urls_per_call: int = Field(3, gt=0)
    max_url_chars: int = Field(2048, gt=0)
