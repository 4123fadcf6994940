"""Valid text at every boundary: lone surrogates are repaired (or found, to reject a record) before they travel.

A JSON ``"\\ud800"`` escape, or bytes decoded with ``surrogateescape``, gives a Python string holding a lone UTF-16
surrogate. It is a valid ``str`` until something encodes it: an HTTP response, a tokenizer, a parquet writer then
raises — far from where the text came in, and for a whole batch. So text is made valid where it enters: the corpus
(:mod:`actguide_plugin.tools.corpus`), tool arguments and tool output (:mod:`actguide_plugin.tools.search_tools`),
the retriever's requests, and preprocessing records (rejected there, with their line).
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a code point UTF-8 cannot encode (json.loads pairs valid escapes into one)."""
    return _SURROGATE.search(text) is not None


def valid_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD; valid text comes back as it is."""
    return _SURROGATE.sub(REPLACEMENT, text) if has_lone_surrogate(text) else text


def find_lone_surrogate(value: Any, path: str = "") -> str | None:
    """Where in a decoded JSON value (keys included) the first lone surrogate is, as ``a.b[2]``; ``None`` if none."""
    if isinstance(value, str):
        return (path or "<value>") if has_lone_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{valid_text(str(key))}" if path else valid_text(str(key))
            if isinstance(key, str) and has_lone_surrogate(key):
                return where
            found = find_lone_surrogate(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_lone_surrogate(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def valid_value(value: Any) -> Any:
    """A decoded JSON value with :func:`valid_text` applied to every string in it (keys included)."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_value(key): valid_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [valid_value(item) for item in value]
    return value
