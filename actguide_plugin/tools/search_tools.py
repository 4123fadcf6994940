"""``web_search`` and ``web_visit`` as verl 0.9.1 ``BaseTool`` subclasses.

verl's ``ToolAgentLoop`` builds the tools once per rollout worker from the yaml given in
``actor_rollout_ref.rollout.multi_turn.tool_config_path`` (``tools: [{class_name, config, tool_schema}]``),
then per tool call runs ``create(create_kwargs=...)``, ``execute(instance_id, arguments, agent_data=...)``
and ``release(instance_id)``. The dataset also instantiates the tools just to read their schemas, so the
constructor only validates the config: the backend (and the BM25 index) is opened at the first call.

A failed call never raises into the rollout: the model gets an ``Error: ...`` text it can react to, and the
third element of ``execute``'s result carries the metrics (``errors``, ``failed_items``, ``circuit_open``: items
or calls skipped because the service's circuit breaker is open, ``latency_s``). Every failure is logged.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse
from verl.utils.rollout_trace import rollout_trace_op

from actguide_plugin.logs import get_logger
from actguide_plugin.text import valid_text, valid_value
from actguide_plugin.tools.backends import Failed, SearchBackend, get_backend, parse_backend_config
from actguide_plugin.tools.config import SearchToolConfig, VisitToolConfig, parse_config
from actguide_plugin.tools.formatting import format_search, format_visit
from actguide_plugin.tools.httpclient import HttpCallError

logger = get_logger(__name__)
T = TypeVar("T")


class ToolArgumentError(ValueError):
    """The model's arguments do not fit the tool schema; the message is shown to the model."""


def _string_list(parameters: dict[str, Any], key: str, tool: str) -> list[str]:
    """Read ``parameters[key]`` as a non-empty list of strings (a bare string counts as a list of one)."""
    value = parameters.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ToolArgumentError(f"{tool} needs '{key}': a list of strings, got {value!r}")
    items = [item.strip() for item in value if item.strip()]
    if not items:
        raise ToolArgumentError(f"{tool} needs at least one non-empty string in '{key}'")
    return items


def _skipped_note(skipped: int, noun: str, limit: int) -> str:
    return f"\n[{skipped} more {noun} not run: at most {limit} per call]" if skipped > 0 else ""


async def _each_within(
    items: list[str], longest: int, noun: str, call: Callable[[list[str]], Awaitable[list[T | Failed]]]
) -> list[T | Failed]:
    """``call`` on the items of at most ``longest`` characters, in order; each longer one fails alone, with a
    message for the model (the retriever refuses a request holding one, which would fail every item of the call)."""
    asked = [item for item in items if len(item) <= longest]
    found = iter(await call(asked) if asked else [])
    too_long = "the {} has {} characters; at most {}"
    return [
        next(found) if len(item) <= longest else Failed(too_long.format(noun, len(item), longest)) for item in items
    ]


def _function_schema(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


class _BackendTool(BaseTool):
    """Config parsing, lazy backend and the never-raise ``execute`` shared by both tools."""

    config_type: ClassVar[type]
    default_schema: ClassVar[dict[str, Any]]

    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema | None = None) -> None:
        schema = tool_schema or OpenAIFunctionToolSchema.model_validate(self.default_schema)
        super().__init__(config, schema)
        self.settings = parse_config(self.config_type, config, f"tool {self.name} config")
        parse_backend_config(self.settings.backend)  # a typo in the yaml fails here, not at every call

    @rollout_trace_op
    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict]:
        started = time.perf_counter()
        metrics: dict[str, float] = {"errors": 0, "failed_items": 0, "circuit_open": 0}
        try:
            failures: list[Failed] = []
            # the policy's arguments and the backend's text may hold lone surrogates, which no tokenizer encodes
            text = await self.run(get_backend(self.settings.backend), valid_value(parameters), failures)
            metrics["failed_items"] = len(failures)
            metrics["circuit_open"] = sum(failure.circuit_open for failure in failures)
        except ToolArgumentError as err:
            text = f"Error: {err}"
            metrics["errors"] = 1
        except Exception as err:  # any backend failure becomes text for the model, never a crashed rollout
            logger.warning("%s failed: %s: %s", self.name, type(err).__name__, valid_text(str(err)))
            text = f"Error: {self.name} failed: {err}"
            metrics["errors"] = 1
            metrics["circuit_open"] = float(isinstance(err, HttpCallError) and err.circuit_open)
        metrics["latency_s"] = time.perf_counter() - started
        return ToolResponse(text=valid_text(text)), 0.0, metrics

    async def run(self, backend: SearchBackend, parameters: dict[str, Any], failures: list[Failed]) -> str:
        """The response text; items that failed are appended to ``failures``."""
        raise NotImplementedError


class WebSearchTool(_BackendTool):
    """``web_search(query: array[string])`` -> the top-k hits (title, url, snippet) of each query."""

    config_type = SearchToolConfig
    default_schema: ClassVar[dict[str, Any]] = _function_schema(
        "web_search",
        "Search the web. Give one or more queries; returns the top results (title, url, snippet) of each.",
        {"query": {"type": "array", "description": "A list of search queries (strings)."}},
        ["query"],
    )

    async def run(self, backend: SearchBackend, parameters: dict[str, Any], failures: list[Failed]) -> str:
        settings: SearchToolConfig = self.settings
        queries = _string_list(parameters, "query", self.name)
        limit = settings.max_queries_per_call
        run = queries[:limit]
        results = await _each_within(run, settings.max_query_chars, "query", lambda q: backend.search(q, settings.topk))
        failures.extend(result for result in results if isinstance(result, Failed))
        return format_search(run, results, settings.snippet_chars) + _skipped_note(
            len(queries) - limit, "queries", limit
        )


class WebVisitTool(_BackendTool):
    """``web_visit(url: array[string], goal: string optional)`` -> the text of each page, truncated.

    ``goal`` is accepted (reference trajectories and the schema carry it) and validated, but the page is
    returned as is: there is no summarizing model behind this tool.
    """

    config_type = VisitToolConfig
    default_schema: ClassVar[dict[str, Any]] = _function_schema(
        "web_visit",
        "Visit web pages. Give one or more urls (or page titles); returns the text of each page.",
        {
            "url": {"type": "array", "description": "A list of page urls (or page titles) to read."},
            "goal": {"type": "string", "description": "Optional: what you are looking for on these pages."},
        },
        ["url"],
    )

    async def run(self, backend: SearchBackend, parameters: dict[str, Any], failures: list[Failed]) -> str:
        settings: VisitToolConfig = self.settings
        urls = _string_list(parameters, "url", self.name)
        goal = parameters.get("goal")
        if goal is not None and not isinstance(goal, str):
            raise ToolArgumentError(f"{self.name}: 'goal' must be a string, got {goal!r}")
        limit = settings.max_urls_per_call
        results = await _each_within(urls[:limit], settings.max_url_chars, "url", backend.visit)
        failures.extend(result for result in results if isinstance(result, Failed))
        return format_visit(urls[:limit], results, settings.max_page_chars) + _skipped_note(
            len(urls) - limit, "urls", limit
        )
