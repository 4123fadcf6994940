"""One log-level variable for the whole package."""

import logging

import pytest

from actguide_plugin.logs import get_logger
from actguide_plugin.names import LOG_LEVEL_ENV


def test_level_comes_from_the_package_variable(monkeypatch):
    monkeypatch.setenv(LOG_LEVEL_ENV, "debug")
    assert get_logger("actguide_plugin.test_a").level == logging.DEBUG
    monkeypatch.delenv(LOG_LEVEL_ENV)
    assert get_logger("actguide_plugin.test_b").level == logging.WARNING


def test_bad_level_names_the_variable(monkeypatch):
    monkeypatch.setenv(LOG_LEVEL_ENV, "loud")
    with pytest.raises(ValueError, match=LOG_LEVEL_ENV):
        get_logger("actguide_plugin.test_c")
