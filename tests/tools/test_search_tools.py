"""web_search / web_visit built from the recipe's yaml and called as verl's ToolAgentLoop calls them."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from verl.tools.tool_registry import initialize_tools_from_config

from actguide_plugin.tools.backends import get_backend
from actguide_plugin.tools.config import ConfigError
from actguide_plugin.tools.search_tools import WebSearchTool, WebVisitTool

TOOL_YAML_DIR = Path(__file__).resolve().parents[2] / "recipe" / "actguide" / "config" / "tools"


@pytest.fixture
def local_tools(corpus_path, monkeypatch):
    monkeypatch.setenv("ACTGUIDE_CORPUS", str(corpus_path))
    tools = initialize_tools_from_config(str(TOOL_YAML_DIR / "search_local.yaml"))
    return {tool.name: tool for tool in tools}


def local_config(corpus_path, **overrides) -> dict:
    return {"type": "native", "backend": {"name": "local", "corpus_path": str(corpus_path)}, **overrides}


@pytest.mark.parametrize("name", ["search_local", "search_retrieval_server", "search_web_api"])
def test_every_backend_yaml_builds_both_tools(name):
    tools = initialize_tools_from_config(str(TOOL_YAML_DIR / f"{name}.yaml"))
    assert [tool.name for tool in tools] == ["web_search", "web_visit"]
    search_schema = tools[0].tool_schema.model_dump(exclude_unset=True, exclude_none=True)
    assert search_schema["function"]["parameters"]["required"] == ["query"]
    assert search_schema["function"]["parameters"]["properties"]["query"]["type"] == "array"


async def test_search_through_the_verl_interface(local_tools, call_tool):
    response, reward, metrics = await call_tool(
        local_tools["web_search"], {"query": ["highest mountain", "Kubrick film"]}
    )
    assert reward == 0.0 and metrics["errors"] == 0 and metrics["failed_items"] == 0
    text = response.text
    assert text.startswith(
        'Results for "highest mountain":\n1. Mount Everest — https://en.wikipedia.org/wiki/Mount_Everest'
    )
    assert 'Results for "Kubrick film":' in text and "Stanley Kubrick" in text


async def test_visit_by_url_and_title(local_tools, call_tool):
    response, _, metrics = await call_tool(
        local_tools["web_visit"],
        {"url": ["https://en.wikipedia.org/wiki/Paris", "mount_everest", "No Such Page"], "goal": "facts"},
    )
    assert "Page: Paris — https://en.wikipedia.org/wiki/Paris\nParis is the capital" in response.text
    assert "Page: Mount Everest — https://en.wikipedia.org/wiki/Mount_Everest" in response.text
    assert "Visit No Such Page failed: page not found: No Such Page" in response.text
    assert metrics["failed_items"] == 1 and metrics["errors"] == 0


async def test_visit_keeps_the_head_and_marks_the_cut(corpus_path, call_tool):
    tool = WebVisitTool(local_config(corpus_path, max_page_chars=100), None)
    response, _, _ = await call_tool(tool, {"url": ["Lorem Ipsum"]})
    body = response.text.split("\n", 1)[1]
    assert body.startswith("Lorem ipsum dolor sit amet. " * 3)
    assert body.endswith("[truncated: showing the first 100 of 11200 characters]")
    assert len(body) < 100 + 80


async def test_search_limits_queries_per_call_and_snippet_length(corpus_path, call_tool):
    tool = WebSearchTool(local_config(corpus_path, max_queries_per_call=1, snippet_chars=20, topk=1), None)
    response, _, _ = await call_tool(tool, {"query": ["lorem", "Paris"]})
    assert 'Results for "lorem"' in response.text and '"Paris"' not in response.text
    assert "[1 more queries not run: at most 1 per call]" in response.text
    assert "   Lorem ipsum dolor …" in response.text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "web_search needs 'query': a list of strings, got None"),
        ({"query": [1, 2]}, "a list of strings"),
        ({"query": ["  ", ""]}, "at least one non-empty string"),
        ({"query": {"q": "x"}}, "a list of strings"),
    ],
)
async def test_bad_arguments_become_error_text(local_tools, arguments, message, call_tool):
    response, reward, metrics = await call_tool(local_tools["web_search"], arguments)
    assert response.text.startswith("Error: ") and message in response.text
    assert reward == 0.0 and metrics["errors"] == 1


async def test_a_bare_string_query_is_accepted(local_tools, call_tool):
    response, _, metrics = await call_tool(local_tools["web_search"], {"query": "Everest"})
    assert metrics["errors"] == 0 and "Mount Everest" in response.text


async def test_bad_goal_is_reported(local_tools, call_tool):
    response, _, metrics = await call_tool(local_tools["web_visit"], {"url": ["Paris"], "goal": 3})
    assert "'goal' must be a string" in response.text and metrics["errors"] == 1


async def test_missing_corpus_is_error_text_not_a_crash(tmp_path, call_tool):
    tool = WebSearchTool(local_config(tmp_path / "absent.jsonl"), None)
    response, _, metrics = await call_tool(tool, {"query": ["x"]})
    assert response.text.startswith("Error: web_search failed: corpus file not found")
    assert metrics["errors"] == 1


async def test_local_backend_needs_no_network(corpus_path, monkeypatch, call_tool):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    tool = WebSearchTool(local_config(corpus_path), None)
    response, _, metrics = await call_tool(tool, {"query": ["capital of France"]})
    assert metrics["errors"] == 0 and "Paris" in response.text


def test_config_typos_fail_at_construction(corpus_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['top_k'\]"):
        WebSearchTool(local_config(corpus_path, top_k=3), None)
    with pytest.raises(ConfigError, match="tool web_search config: topk: Input should be greater than 0"):
        WebSearchTool(local_config(corpus_path, topk=0), None)


def test_backend_typos_fail_at_construction(corpus_path):
    with pytest.raises(ConfigError, match="unknown name 'bing'"):
        WebSearchTool({"type": "native", "backend": {"name": "bing"}}, None)
    with pytest.raises(ConfigError, match=r"backend \(local\): unknown key\(s\) \['corpus'\]"):
        WebVisitTool({"type": "native", "backend": {"name": "local", "corpus": str(corpus_path)}}, None)
    with pytest.raises(ConfigError, match="base_url must be an http"):
        WebSearchTool({"type": "native", "backend": {"name": "retrieval_server", "base_url": "localhost:8000"}}, None)


async def test_lone_surrogates_in_the_corpus_or_the_arguments_never_reach_the_tokenizer(tmp_path, caplog, call_tool):
    """A corpus line with a JSON \\ud800 escape loads repaired (one warning naming the line); a query the policy
    wrote with one still gets an answer; every text the tool returns encodes as UTF-8."""
    corpus = tmp_path / "corpus.jsonl"
    lines = [
        '{"id": "1", "title": "Ada", "text": "Ada wrote the first program."}',
        '{"id": "2", "title": "Bad\\ud800page", "text": "Broken \\udfff text about the first program."}',
    ]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        search = WebSearchTool(local_config(corpus, topk=2), None)
        response, _, metrics = await call_tool(search, {"query": ["program\ud800", "Ada"]})
    assert metrics["errors"] == 0
    response.text.encode("utf-8")  # raises on a lone surrogate
    assert "Bad\ufffdpage" in response.text and "Ada wrote" in response.text
    assert "lone UTF-16 surrogates" in caplog.text and "first at line 2" in caplog.text
    visit = WebVisitTool(local_config(corpus), None)
    response, _, _ = await call_tool(visit, {"url": ["Bad\ud800page"]})
    response.text.encode("utf-8")


async def test_the_local_backend_scores_off_the_event_loop(corpus_path, monkeypatch):
    """The agent loop's event loop drives every rollout of a worker: a long query must not stall them."""
    backend = get_backend({"name": "local", "corpus_path": str(corpus_path)})
    index = await backend.index()
    threads = []
    score = index.search_many

    def scoring_thread_noted(requests):
        threads.append(threading.get_ident())
        return score(requests)

    monkeypatch.setattr(index, "search_many", scoring_thread_noted)
    (hits,) = await backend.search(["highest mountain"], 1)
    assert hits[0].title == "Mount Everest"
    assert threads and threading.get_ident() not in threads
