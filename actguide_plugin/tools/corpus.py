"""The offline corpus: one JSON document per line, in the shapes search-agent corpora come in, and page lookup.

Accepted line shapes (detected from the first line, logged, then required of every line):

- ``documents``: ``{"id" | "docid", "text", "title"?, "url"?}`` (``actguide-preprocess`` writes all four;
  ids may be strings or integers, a missing or null title or url is empty);
- ``search-r1``: ``{"id", "contents"}`` as in Search-R1's ``wiki-18.jsonl``, where ``contents`` is
  ``"Title"\ntext``: the first line is the title (surrounding quotes stripped), the rest the text.

Reference trajectories and models name pages by url (``https://en.wikipedia.org/wiki/Some_Title``), by title
(``Some Title``, ``some_title``) or by document id, so :class:`Corpus` resolves all three: an exact url first,
then the title in a normalized form (case-insensitive, underscores as spaces, percent-escapes decoded), then the
id, then the last path segment of a url read as a title (so ``http://``, mobile or other-language hosts still
find the page).

Large corpora (Search-R1's 21M passages) are streamed line by line into one list of :class:`Document`; no other
copy of the text is kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from actguide_plugin.logs import get_logger
from actguide_plugin.text import has_lone_surrogate, valid_text

_WHITESPACE = re.compile(r"\s+")
logger = get_logger(__name__)


class CorpusFormatError(ValueError):
    """A corpus line does not fit the corpus's shape; the message names the file, the line and the field."""


@dataclass(frozen=True, slots=True)
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
        self._by_id: dict[str, int] = {}
        for index, doc in enumerate(documents):
            # First occurrence wins, so a duplicated title (one per passage of an article) resolves stably.
            if doc.url:
                self._by_url.setdefault(url_key(doc.url), index)
            if doc.title:
                self._by_title.setdefault(title_key(doc.title), index)
            self._by_id.setdefault(doc.id, index)

    def __len__(self) -> int:
        return len(self.documents)

    def lookup(self, name: str) -> Document | None:
        """The page named by a url, a title or a document id, or ``None``."""
        index = self._by_url.get(url_key(name))
        if index is None:
            index = self._by_title.get(title_key(name))
        if index is None:
            index = self._by_id.get(name.strip())
        if index is None:
            url_title = _url_title(name)
            if url_title is not None:
                index = self._by_title.get(title_key(url_title))
        return None if index is None else self.documents[index]


class _LineError(ValueError):
    """What is wrong with one record; :func:`load_corpus` adds the file and line."""


def _string_field(record: dict[str, Any], field: str, *, required: bool) -> str:
    value = record.get(field)
    if isinstance(value, str):
        return value
    if value is None and not required:
        return ""
    raise _LineError(f"field {field!r} must be a string, got {type(value).__name__}")


def _document_id(record: dict[str, Any]) -> str:
    field = "id" if "id" in record else "docid"
    value = record.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # numeric ids are common in exported corpora
    if isinstance(value, str):
        return value
    raise _LineError(f"field 'id' (or 'docid') must be a string or an integer, got {type(value).__name__}")


def _parse_documents_line(record: dict[str, Any]) -> Document:
    title = _string_field(record, "title", required=False)
    url = _string_field(record, "url", required=False)
    return Document(_document_id(record), title, url, _string_field(record, "text", required=True))


def _parse_search_r1_line(record: dict[str, Any]) -> Document:
    contents = _string_field(record, "contents", required=True)
    title, newline, text = contents.partition("\n")
    if not newline:  # no title line: the whole passage is text
        title, text = "", contents
    elif len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1]
    return Document(_document_id(record), title, "", text)


CORPUS_SHAPES: dict[str, Callable[[dict[str, Any]], Document]] = {
    "documents": _parse_documents_line,
    "search-r1": _parse_search_r1_line,
}


def detect_shape(record: dict[str, Any]) -> str:
    """The corpus shape a record is in: ``search-r1`` when it has ``contents`` and no ``text``."""
    if "text" in record:
        return "documents"
    if "contents" in record:
        return "search-r1"
    raise _LineError(
        f"unrecognized corpus line with keys {sorted(record)[:10]}: expected {{id|docid, text, title?, url?}} "
        "or Search-R1's {id, contents}"
    )


def load_corpus(path: str | os.PathLike[str]) -> Corpus:
    """Stream a corpus file; a bad line raises :class:`CorpusFormatError` naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    documents: list[Document] = []
    first_line: dict[str, int] = {}  # document id -> line: an id names one page (web_visit looks pages up by id)
    parse: Callable[[dict[str, Any]], Document] | None = None
    repaired: list[int] = []  # lines whose text held lone surrogates, replaced by U+FFFD
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line_no == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not part of the JSON
            if not line.strip():
                continue
            try:
                try:
                    record = json.loads(line)
                except UnicodeDecodeError as err:
                    raise _LineError(f"not valid UTF-8 ({err.reason} at byte {err.start})") from err
                except json.JSONDecodeError as err:
                    raise _LineError(f"not valid JSON ({err.msg})") from err
                if not isinstance(record, dict):
                    raise _LineError(f"expected a JSON object, got {type(record).__name__}")
                if parse is None:
                    shape = detect_shape(record)
                    logger.info("corpus %s: %s shape (detected from line %d)", path, shape, line_no)
                    parse = CORPUS_SHAPES[shape]
                document = parse(record)
                if b"\\u" in line and any(map(has_lone_surrogate, dataclasses.astuple(document))):
                    document = Document(*map(valid_text, dataclasses.astuple(document)))
                    repaired.append(line_no)
                if document.id in first_line:
                    raise _LineError(f"duplicate id {document.id!r} (first at line {first_line[document.id]})")
                first_line[document.id] = line_no
                documents.append(document)
            except _LineError as err:
                raise CorpusFormatError(f"{path}, line {line_no}: {err}") from None
    if not documents:
        raise CorpusFormatError(f"{path}: corpus is empty")
    if repaired:  # served as is, they would fail every response that includes them (and its whole batch)
        logger.warning("corpus %s: %d document(s) held lone UTF-16 surrogates (invalid Unicode), replaced by U+FFFD; "
                       "first at line %d", path, len(repaired), repaired[0])  # fmt: skip
    return Corpus(documents)
