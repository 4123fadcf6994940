"""Atomic multi-file outputs: every file is written to a temp file next to its target, then renamed together.

Commands that write several results (the preprocessing CLI, ``actguide-eval``, ``actguide-analyze``,
``actguide-export``) must never leave a half-written file behind, nor replace a good result with a broken one
when they fail halfway: a target is either the old file, the new file, or absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any


class StagedOutputs:
    """Write every output to a temp file next to its target, then ``commit`` renames them all.

    Nothing is replaced until every file has been written completely; on error the temp files are removed.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._staged: list[tuple[Path, Path]] = []
        self._stale: list[Path] = []

    def __enter__(self) -> StagedOutputs:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.discard()

    def stage(self, name: str, write: Callable[[Path], None]) -> Path:
        """Call ``write(tmp_path)`` to produce ``name``; the target appears on :meth:`commit`."""
        target = self.directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary shared data files
        self._staged.append((Path(tmp), target))
        write(Path(tmp))
        return target

    def _stage_text(self, name: str, fill: Callable[[IO[str]], None]) -> Path:
        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8", newline="\n") as handle:
                fill(handle)

        return self.stage(name, write)

    def text(self, name: str, content: str) -> Path:
        return self._stage_text(name, lambda h: h.write(content))

    def jsonl(self, name: str, items: Iterable[Any]) -> Path:
        def fill(handle: IO[str]) -> None:
            for item in items:
                handle.write(json.dumps(item, ensure_ascii=False) + "\n")

        return self._stage_text(name, fill)

    def json(self, name: str, obj: Any) -> Path:
        return self._stage_text(name, lambda h: h.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n"))

    def remove(self, name: str) -> None:
        """On commit, delete ``name`` if an earlier run left it (e.g. a val split this run does not make)."""
        self._stale.append(self.directory / name)

    def commit(self) -> list[Path]:
        """Rename every staged file onto its target and delete stale ones; returns the written targets."""
        targets = []
        for tmp, target in self._staged:
            os.replace(tmp, target)
            targets.append(target)
        for stale in self._stale:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        self._staged.clear()
        self._stale.clear()
        return targets

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._staged.clear()
