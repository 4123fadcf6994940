"""Reading input records from JSONL, JSON (array) and parquet files, each tagged with where it came from.

Every record carries its file and a human location (``line 12`` for JSONL, 1-based like an editor;
``index 3`` for a JSON array and ``row 3`` for parquet, 0-based like Python and pandas) so that a rejected
record can always be found again. A JSONL line that is not valid JSON is not an exception here: it comes
back as a record with ``error`` set, so the caller decides between ``--on-error fail`` and ``skip``; so is a
line that is not valid UTF-8. JSONL is streamed line by line; a JSON array is loaded whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actguide_plugin.logs import get_logger, shorten
from actguide_plugin.text import find_lone_surrogate

logger = get_logger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson")
JSON_SUFFIXES = (".json",)
PARQUET_SUFFIXES = (".parquet", ".pq")
_PARQUET_BATCH_ROWS = 4096
UTF8_BOM = b"\xef\xbb\xbf"


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how a lone surrogate gets into a JSON line
_TOO_DEEP = "nested too deeply to decode"


def _lone_surrogate_error(where: str) -> str:
    return f"invalid text: a lone UTF-16 surrogate (not valid Unicode) in {where}"


class InputFileError(ValueError):
    """A whole input file cannot be read (missing, unknown suffix, not a JSON array, corrupt parquet)."""


class RecordError(ValueError):
    """One record is rejected. The message starts with its category, ended by ``:`` or `` (``.

    E.g. ``missing answer (field 'answer')`` or ``unparseable tool call (message 3, tool call 0): ...``;
    summaries count rejections per category (:func:`reason_category`).
    """


MAX_REASON_CHARS = 300


def bounded(reason: str, limit: int = MAX_REASON_CHARS) -> str:
    """``reason`` cut to ``limit`` characters (:func:`~actguide_plugin.logs.shorten`)."""
    return shorten(reason, limit)


def reason_category(reason: str) -> str:
    """``"unknown tool: 'python' in action 2"`` → ``"unknown tool"``."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip()


@dataclass(frozen=True)
class SourceRecord:
    """One input record: decoded ``data`` or, when it could not be decoded, ``error`` and the ``raw`` text."""

    file: str
    location: str
    data: Any = None
    error: str | None = None
    raw: str | None = None

    def where(self) -> str:
        return f"{self.file}:{self.location}"


class RecordReader(Sized):
    """Iterates the records of one file; ``len()`` is known up front (for the progress bar)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputFileError(f"{self.path}: no such file")
        suffix = self.path.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            # Streamed line by line (memory does not grow with the file); counted up front in one cheap pass.
            with self.path.open("rb") as handle:
                self._length = sum(1 for line in handle if line.removeprefix(UTF8_BOM).strip())
        elif suffix in JSON_SUFFIXES:
            self._items = self._load_json_array()
            self._length = len(self._items)
        elif suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            try:
                self._parquet = pq.ParquetFile(self.path)
            except Exception as err:  # pyarrow raises several types for a corrupt file
                raise InputFileError(f"{self.path}: cannot read parquet: {err}") from err
            self._length = self._parquet.metadata.num_rows
        else:
            raise InputFileError(
                f"{self.path}: unknown input suffix {suffix!r} "
                f"(expected one of {', '.join(JSONL_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES)})"
            )
        self._suffix = suffix

    def _load_json_array(self) -> list[Any]:
        try:
            text = self.path.read_text(encoding="utf-8-sig")  # a leading BOM is not part of the JSON
        except UnicodeDecodeError as err:
            raise InputFileError(f"{self.path}: invalid UTF-8 at byte {err.start + 1}: {err.reason}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputFileError(
                f"{self.path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
            ) from err
        except RecursionError:
            raise InputFileError(f"{self.path}: invalid JSON: {_TOO_DEEP}") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            return data["data"]
        if not isinstance(data, list):
            raise InputFileError(
                f"{self.path}: a .json input must hold an array of records (or {{'data': [...]}}), "
                f"got {type(data).__name__}"
            )
        return data

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[SourceRecord]:
        name = str(self.path)
        if self._suffix in JSONL_SUFFIXES:
            yield from self._jsonl_records(name)
        elif self._suffix in JSON_SUFFIXES:
            for index, item in enumerate(self._items):
                surrogate = find_lone_surrogate(item)
                if surrogate is None:
                    yield SourceRecord(name, f"index {index}", data=item)
                else:  # raw as escaped JSON: the text itself cannot be written as UTF-8
                    yield SourceRecord(name, f"index {index}", error=_lone_surrogate_error(surrogate),
                                       raw=json.dumps(item)[:2000])  # fmt: skip
        else:
            row = 0
            for batch in self._parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
                for item in batch.to_pylist():
                    yield SourceRecord(name, f"row {row}", data=item)
                    row += 1

    def _jsonl_records(self, name: str) -> Iterator[SourceRecord]:
        # Binary lines split on b"\n" only: text-mode or splitlines() would also break at "\r", U+2028 or
        # U+0085 inside JSON strings. Each line is decoded on its own, so bad bytes reject only their line.
        with self.path.open("rb") as handle:
            for lineno, line in enumerate(handle, start=1):
                if lineno == 1:
                    line = line.removeprefix(UTF8_BOM)  # editors on Windows start files with one
                if not line.strip():
                    continue
                location = f"line {lineno}"
                line = line.rstrip(b"\r\n")
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield SourceRecord(
                        name, location, error=f"invalid UTF-8: at byte {err.start + 1} of the line: {err.reason}",
                        raw=line.decode("utf-8", errors="backslashreplace"),
                    )  # fmt: skip
                    continue
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as err:
                    yield SourceRecord(name, location, error=f"invalid JSON: column {err.colno}: {err.msg}", raw=text)
                    continue
                except RecursionError:
                    yield SourceRecord(name, location, error=f"invalid JSON: {_TOO_DEEP}", raw=text[:200])
                    continue
                surrogate = find_lone_surrogate(data) if _SURROGATE_ESCAPE.search(text) else None
                if surrogate is not None:
                    yield SourceRecord(name, location, error=_lone_surrogate_error(surrogate), raw=text)
                else:
                    yield SourceRecord(name, location, data=data)
