"""Module loggers for the whole package, with one log-level variable (``ACTGUIDE_LOGGING_LEVEL``).

Ray workers inherit the driver's environment, so setting the variable once configures every process.
"""

from __future__ import annotations

import logging

from actguide_plugin.names import LOG_LEVEL_ENV, env_value


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` at the level named by ``ACTGUIDE_LOGGING_LEVEL`` (default WARNING)."""
    level = (env_value(LOG_LEVEL_ENV) or "").strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"{LOG_LEVEL_ENV}={level!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    logger = logging.getLogger(name)
    logger.setLevel(level)
    return logger


MAX_CAUSE_CHARS = 500
_TRACEBACK_HEAD = "Traceback (most recent call last):"


def describe_error(err: BaseException, limit: int = MAX_CAUSE_CHARS) -> str:
    """``Type: message`` of an error on one line, the message first and cut at ``limit`` characters.

    A Ray task error's text is the remote traceback followed by the message, so cutting it from the front showed
    only the traceback: the remote exception (``RayTaskError.cause``) is reported instead, and a message that
    embeds a traceback has its last line (the exception itself) moved ahead of it.
    """
    cause = getattr(err, "cause", None)
    if type(err).__name__.startswith("RayTaskError") and isinstance(cause, BaseException):
        err = cause
    message = str(err)
    if _TRACEBACK_HEAD in message:
        lines = [line for line in message.splitlines() if line.strip()]
        message = "\n".join([lines[-1], *lines[:-1]])
    return shorten(" ".join(f"{type(err).__name__}: {message}".split()), limit)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut: a message may quote a huge value."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"
