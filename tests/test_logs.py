"""One log-level variable for the whole package."""

import logging

import pytest

from actguide_plugin.logs import describe_error, get_logger
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


def _remote_type_error() -> BaseException:
    """The error ``ray.get`` raises for a remote TypeError: ``RayTaskError(TypeError)``, traceback first."""
    from ray.exceptions import RayTaskError

    cause = TypeError("string indices must be integers")
    traceback = "Traceback (most recent call last):\n" + '  File "reward.py", line 9, in score\n' * 40
    return RayTaskError(
        "compute_score", traceback + "TypeError: string indices must be integers", cause
    ).as_instanceof_cause()


def test_a_remote_error_is_described_by_its_own_message_not_the_traceback():
    err = _remote_type_error()
    assert "string indices" not in str(err)[:500]  # what the log showed before: the cut kept traceback lines only
    assert describe_error(err) == "TypeError: string indices must be integers"


def test_a_message_that_embeds_a_traceback_leads_with_its_last_line_and_is_cut():
    err = RuntimeError("worker died:\nTraceback (most recent call last):\n" + "  frame\n" * 200 + "KeyError: 'target'")
    text = describe_error(err, limit=80)
    assert text.startswith("RuntimeError: KeyError: 'target' worker died: Traceback")
    assert text.endswith("more characters]") and len(text) < 120
