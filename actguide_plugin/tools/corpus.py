"""The offline corpus: ``corpus.jsonl`` lines ``{"id", "title", "url", "text"}``, and page lookup by url or title.

Reference trajectories and models name pages either by url (``https://en.wikipedia.org/wiki/Some_Title``) or
by title (``Some Title``, ``some_title``), so :class:`Corpus` resolves both: an exact url first, then the
title in a normalized form (case-insensitive, underscores as spaces, percent-escapes decoded), then the last
path segment of a url read as a title (so ``http://``, mobile or other-language hosts still find the page).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

_WHITESPACE = re.compile(r"\s+")
REQUIRED_FIELDS = ("id", "title", "url", "text")


class CorpusFormatError(ValueError):
    """A corpus line is not a JSON object with string fields title, url, text and a string or integer id."""


@dataclass(frozen=True)
class Document:
    """One page of the corpus."""

    id: str
    title: str
    url: str
    text: str


def title_key(name: str) -> str:
    """Normalize a page title for lookup: decode %-escapes, underscores = spaces, casefold, one space."""
    return _WHITESPACE.sub(" ", unquote(name).replace("_", " ")).strip().casefold()


def url_key(url: str) -> str:
    """Normalize a url for exact lookup: no scheme, no fragment, no trailing slash, lowercase host."""
    parts = urlsplit(url.strip())
    path = unquote(parts.path).rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.netloc.lower()}{path}{query}"


def _url_title(url: str) -> str | None:
    """The last path segment of a url, read as a page title (``/wiki/Some_Title`` -> ``Some_Title``)."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return None
    segment = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return segment or None


class Corpus:
    """All documents in memory, with lookup tables for visit."""

    def __init__(self, documents: list[Document]) -> None:
        self.documents = documents
        self._by_url: dict[str, int] = {}
        self._by_title: dict[str, int] = {}
        for index, doc in enumerate(documents):
            # First occurrence wins, so a duplicated title resolves to a stable page.
            self._by_url.setdefault(url_key(doc.url), index)
            self._by_title.setdefault(title_key(doc.title), index)

    def __len__(self) -> int:
        return len(self.documents)

    def lookup(self, url_or_title: str) -> Document | None:
        """The page named by a url or a title, or ``None``."""
        index = self._by_url.get(url_key(url_or_title))
        if index is None:
            index = self._by_title.get(title_key(url_or_title))
        if index is None:
            url_title = _url_title(url_or_title)
            if url_title is not None:
                index = self._by_title.get(title_key(url_title))
        return None if index is None else self.documents[index]


def load_corpus(path: str | os.PathLike[str]) -> Corpus:
    """Read ``corpus.jsonl``; a bad line raises :class:`CorpusFormatError` naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    documents: list[Document] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusFormatError(f"{path}, line {line_no}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise CorpusFormatError(f"{path}, line {line_no}: expected a JSON object, got {type(record).__name__}")
            if isinstance(record.get("id"), int) and not isinstance(record["id"], bool):
                record["id"] = str(record["id"])  # numeric ids are common in exported corpora
            for field in REQUIRED_FIELDS:
                value = record.get(field)
                if not isinstance(value, str):
                    raise CorpusFormatError(
                        f"{path}, line {line_no}: field {field!r} must be a string, got {type(value).__name__}"
                    )
            documents.append(Document(record["id"], record["title"], record["url"], record["text"]))
    if not documents:
        raise CorpusFormatError(f"{path}: corpus is empty")
    return Corpus(documents)
