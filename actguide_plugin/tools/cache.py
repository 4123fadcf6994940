"""Persistent response cache for the network search backends (stdlib ``sqlite3``).

Why SQLite: GRPO samples n rollouts per prompt and many prompts repeat across epochs, so the same queries and
pages are requested again and again; a paid search API bills each one. One file serves every rollout worker
process on a node: WAL mode lets readers run while one writer writes, and ``busy_timeout`` makes a writer
wait for the lock instead of failing.

Concurrency: a ``sqlite3`` connection must not be shared between threads without care, so each thread opens
its own (thread-local). Async callers use :meth:`SQLiteCache.aget` / :meth:`SQLiteCache.aset`, which run the
blocking call in the default thread executor so the event loop never waits on the disk lock.

Entries expire ``ttl_s`` seconds after they were written; the TTL is chosen per call, so each tool sets its
own (search results go stale faster than page text).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from actguide_plugin.logs import get_logger

logger = get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID
"""


class SQLiteCache:
    """A ``(namespace, key) -> JSON value`` store with expiry, safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as conn:
            conn.execute(_SCHEMA)
            conn.execute("DELETE FROM cache WHERE expires_at <= ?", (time.time(),))

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: autocommit, so each statement holds the write lock only for itself.
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get(self, namespace: str, key: str) -> Any | None:
        """The stored value, or ``None`` when absent or expired."""
        row = (
            self._connection()
            .execute(
                "SELECT value FROM cache WHERE namespace = ? AND key = ? AND expires_at > ?",
                (namespace, key, time.time()),
            )
            .fetchone()
        )
        return None if row is None else json.loads(row[0])

    def set(self, namespace: str, key: str, value: Any, ttl_s: float) -> None:
        """Store ``value`` (JSON-serializable) for ``ttl_s`` seconds, replacing any previous entry."""
        if ttl_s <= 0:
            return
        self._connection().execute(
            "INSERT OR REPLACE INTO cache (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)",
            (namespace, key, json.dumps(value, ensure_ascii=False), time.time() + ttl_s),
        )

    async def aget(self, namespace: str, key: str) -> Any | None:
        return await asyncio.to_thread(self.get, namespace, key)

    async def aset(self, namespace: str, key: str, value: Any, ttl_s: float) -> None:
        await asyncio.to_thread(self.set, namespace, key, value, ttl_s)
