"""Module loggers for the whole package, with one log-level variable (``ACTGUIDE_LOGGING_LEVEL``).

Ray workers inherit the driver's environment, so setting the variable once configures every process.
"""

from __future__ import annotations

import logging
import os

from actguide_plugin.names import LOG_LEVEL_ENV

DEFAULT_LEVEL = "WARNING"


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` at the level named by ``ACTGUIDE_LOGGING_LEVEL`` (default WARNING)."""
    level = os.getenv(LOG_LEVEL_ENV, DEFAULT_LEVEL).strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"{LOG_LEVEL_ENV}={level!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    logger = logging.getLogger(name)
    logger.setLevel(level)
    return logger
