"""Tool and backend configs: errors name the section and the key, never the value; API keys from the environment."""

from __future__ import annotations

import dataclasses

import pytest

from actguide_plugin.tools.backends import parse_backend_config
from actguide_plugin.tools.config import ConfigError, SearchToolConfig, VisitToolConfig, parse_config, read_api_key
from actguide_plugin.tools.httpclient import RetryPolicy


@pytest.mark.parametrize("raw", ["sk-abc\r\n", "sk-abc\n", "  sk-abc\t", "sk-abc"])
def test_keys_are_stripped(raw, monkeypatch):
    monkeypatch.setenv("SOME_KEY", raw)
    assert read_api_key("SOME_KEY") == "sk-abc"


@pytest.mark.parametrize("raw", ["", " \r\n"])
def test_blank_or_unset_keys_are_none(raw, monkeypatch):
    monkeypatch.setenv("SOME_KEY", raw)
    assert read_api_key("SOME_KEY") is None
    monkeypatch.delenv("SOME_KEY")
    assert read_api_key("SOME_KEY") is None


@pytest.mark.parametrize("raw", ["sk-SECRÉT", "sk-SEC\x01RET", "sk-SEC\r\nRET", "sk-SEC\x7fRET"])
def test_invalid_keys_name_the_variable_not_the_value(raw, monkeypatch):
    monkeypatch.setenv("SOME_KEY", raw)
    with pytest.raises(ConfigError, match="environment variable SOME_KEY holds an invalid API key") as caught:
        read_api_key("SOME_KEY")
    assert "SEC" not in str(caught.value)


def test_a_bad_block_names_the_section_and_every_bad_key_without_its_value():
    raw = {"backend": {"name": "local"}, "topk": "5", "snippet_chars": 0, "top_k": 3}
    with pytest.raises(ConfigError) as caught:
        parse_config(SearchToolConfig, raw, "tool web_search config")
    message = str(caught.value)
    assert message.startswith("tool web_search config: unknown key(s) ['top_k']; allowed: ['backend', ")
    assert "topk: Input should be a valid integer" in message
    assert "snippet_chars: Input should be greater than 0" in message
    with pytest.raises(ConfigError, match="tool web_visit config: expected a mapping, got list"):
        parse_config(VisitToolConfig, [], "tool web_visit config")


def test_backend_blocks_are_checked_against_the_named_backends_model():
    with pytest.raises(ConfigError, match=r"^backend \(local\): corpus_path is required$"):
        parse_backend_config({"name": "local"})
    with pytest.raises(ConfigError, match=r"backend \(local\): b: Input should be less than or equal to 1"):
        parse_backend_config({"name": "local", "corpus_path": "c.jsonl", "b": 2})
    with pytest.raises(ConfigError, match=r"backend \(web_api\): visit_url must be an http\(s\) URL"):
        parse_backend_config({"name": "web_api", "visit_url": "scrape.serper.dev"})


def test_retry_keys_are_the_retry_policys_fields_with_its_defaults_and_checks():
    config = parse_backend_config({"name": "retrieval_server", "base_url": "http://127.0.0.1:1", "max_attempts": 2})
    assert config.retry_policy == dataclasses.replace(RetryPolicy(), max_attempts=2)
    with pytest.raises(ConfigError, match=r"backend \(retrieval_server\): timeout_s must be > 0, got 0"):
        parse_backend_config({"name": "retrieval_server", "base_url": "http://127.0.0.1:1", "timeout_s": 0})
    with pytest.raises(ConfigError, match="max_attempts: Input should be a valid integer"):  # no bool for an int
        parse_backend_config({"name": "retrieval_server", "base_url": "http://127.0.0.1:1", "max_attempts": True})
