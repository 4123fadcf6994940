"""Atomic outputs, the one place that writes a file or a folder "temp beside the target, then rename".

Commands that write several results (the preprocessing CLI, ``actguide-eval``, ``actguide-analyze``,
``actguide-export``), the level cache, saved tiny models and the BM25 index cache must never leave a half-written
file behind, nor replace a good result with a broken one when they fail halfway: a target is either the old
file (or folder), the new one, or absent. The temp always sits in the target's own folder, so the final rename
never crosses a file system.

- :func:`atomic_file` / :func:`atomic_dir`: one file / one folder, written under a temp name and renamed on success.
- :func:`swap_dir`: put a finished folder in the place of another; a reader never sees a mix of the two.
- :class:`StagedOutputs`: several files that appear together on ``commit``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process umask (reading it means setting it: put straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_file_beside(target: Path) -> Path:
    """An empty temp file in ``target``'s folder, readable as an ordinary data file (``mkstemp`` creates 0600)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())
    return Path(tmp)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``target`` to write; it is renamed onto ``target`` when the block succeeds
    and removed when it raises (``target`` then keeps what it had)."""
    target = Path(target)
    tmp = temp_file_beside(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temp folder beside ``target`` to fill; when the block succeeds it takes ``target``'s place.

    ``replace=False``: a ``target`` that exists by then is kept and the rename raises :class:`OSError` (another
    process finished the same folder first). On any error the temp folder is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp creates 0700
        if replace:
            swap_dir(tmp, target)
        else:
            os.rename(tmp, target)  # fails on a non-empty target: rename(2) never merges folders
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_dir(staging: Path, target: Path, old_prefix: str | None = None) -> None:
    """Rename folder ``staging`` (beside ``target``) to ``target``; an existing ``target`` is moved aside first
    (to a temp folder named ``old_prefix…``) and deleted after: a reader finds the old folder, the new one or, for
    an instant, none, never a mix of the two."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=old_prefix or f".{target.name}.old-", dir=target.parent))
    os.rename(target, old)  # onto the empty folder mkdtemp made: allowed by rename(2)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)  # the previous folder goes back: nothing already written is lost
        raise
    shutil.rmtree(old, ignore_errors=True)


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
        tmp = temp_file_beside(target)
        self._staged.append((tmp, target))
        write(tmp)
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
