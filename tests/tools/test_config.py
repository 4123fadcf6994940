"""Reading API keys from the environment: stripped, validated, errors name the variable only."""

from __future__ import annotations

import pytest

from actguide_plugin.tools.config import ConfigError, read_api_key


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
