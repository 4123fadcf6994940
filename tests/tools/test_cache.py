"""SQLite response cache: hit/miss, expiry, WAL mode, and many concurrent writers (threads, tasks, processes)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from actguide_plugin.tools.cache import SQLiteCache


def test_hit_miss_and_namespaces(tmp_path):
    cache = SQLiteCache(tmp_path / "c.sqlite")
    assert cache.get("search", "k") is None
    cache.set("search", "k", [{"title": "Paris", "n": 1}], ttl_s=60)
    assert cache.get("search", "k") == [{"title": "Paris", "n": 1}]
    assert cache.get("visit", "k") is None  # namespaces do not collide
    cache.set("search", "k", {"replaced": True}, ttl_s=60)
    assert cache.get("search", "k") == {"replaced": True}


def test_entries_expire_after_their_ttl(tmp_path):
    cache = SQLiteCache(tmp_path / "c.sqlite")
    cache.set("search", "short", "v", ttl_s=0.05)
    cache.set("visit", "long", "v", ttl_s=60)
    cache.set("visit", "never", "v", ttl_s=0)  # ttl 0: not stored
    time.sleep(0.1)
    assert cache.get("search", "short") is None
    assert cache.get("visit", "long") == "v"
    assert cache.get("visit", "never") is None


def test_persistent_and_in_wal_mode(tmp_path):
    path = tmp_path / "c.sqlite"
    SQLiteCache(path).set("search", "k", "v", ttl_s=60)
    assert SQLiteCache(path).get("search", "k") == "v"  # a new instance (as in a new process) sees it
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_many_threads_write_and_read_at_once(tmp_path):
    cache = SQLiteCache(tmp_path / "c.sqlite")
    errors: list[BaseException] = []

    def worker(worker_id: int) -> None:
        try:
            for i in range(100):
                cache.set("ns", f"{worker_id}-{i}", i, ttl_s=60)
                assert cache.get("ns", f"{worker_id}-{i}") == i
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(cache.get("ns", f"{w}-99") == 99 for w in range(8))


async def test_async_callers_share_one_cache(tmp_path):
    cache = SQLiteCache(tmp_path / "c.sqlite")
    await asyncio.gather(*(cache.aset("ns", str(i), {"i": i}, 60) for i in range(50)))
    values = await asyncio.gather(*(cache.aget("ns", str(i)) for i in range(50)))
    assert values == [{"i": i} for i in range(50)]


@pytest.mark.integration
def test_several_processes_write_one_file(tmp_path):
    path = tmp_path / "shared.sqlite"
    script = textwrap.dedent(
        """
        import sys
        from actguide_plugin.tools.cache import SQLiteCache
        cache = SQLiteCache(sys.argv[1])
        for i in range(300):
            cache.set("ns", f"{sys.argv[2]}-{i}", i, ttl_s=60)
            cache.get("ns", f"{sys.argv[2]}-{i // 2}")
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(n)], stderr=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    cache = SQLiteCache(path)
    assert all(cache.get("ns", f"{n}-{i}") == i for n in range(3) for i in range(300))
