"""BM25 search over the corpus and its on-disk index cache (keyed by corpus version, written atomically)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import bm25s
import numpy as np
import pytest

from actguide_plugin.tools import bm25_index
from actguide_plugin.tools.bm25_index import (
    LocalIndex,
    corpus_fingerprint,
    get_local_index,
    index_cache_dir,
    open_local_index,
)
from actguide_plugin.tools.corpus import load_corpus


def test_search_ranks_the_matching_page_first(corpus_path):
    index = open_local_index(corpus_path)
    hits = index.search("highest mountain Himalayas", topk=3)
    assert hits[0].document.title == "Mount Everest"
    assert all(hit.score > 0 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_search_edge_cases(corpus_path):
    index = open_local_index(corpus_path)
    assert index.search("zzzunknownword qqqq", topk=5) == []  # no known token
    assert index.search("the of and", topk=5) == []  # stopwords only
    everything = index.search("Paris France Kubrick Everest lorem", topk=100)  # topk beyond corpus size
    assert len(everything) == len({hit.document.id for hit in everything}) == 6


def test_index_is_cached_on_disk_and_reused(corpus_path, monkeypatch):
    first = open_local_index(corpus_path)
    cache_dir = index_cache_dir(corpus_path.resolve(), 1.5, 0.75)
    assert cache_dir.is_dir() and cache_dir.parent.name == "corpus.jsonl.bm25s"
    assert [p.name for p in cache_dir.parent.iterdir()] == [cache_dir.name]  # no temporary leftovers

    def no_rebuild(*args, **kwargs):
        raise AssertionError("index rebuilt although a cached one exists")

    monkeypatch.setattr(LocalIndex, "build", classmethod(no_rebuild))
    second = open_local_index(corpus_path)
    query = "Kubrick film 1968"
    assert [h.document.id for h in second.search(query, 3)] == [h.document.id for h in first.search(query, 3)]


def test_changed_corpus_gets_a_new_index(tmp_path, write_corpus):
    path = write_corpus(tmp_path / "corpus.jsonl")
    open_local_index(path)
    old_key = index_cache_dir(path, 1.5, 0.75)
    write_corpus(path, [{"id": "9", "title": "Berlin", "url": "https://x/wiki/Berlin", "text": "Capital of Germany."}])
    index = open_local_index(path)
    assert index_cache_dir(path, 1.5, 0.75) != old_key
    assert [hit.document.title for hit in index.search("capital Germany", 3)] == ["Berlin"]


def test_a_same_size_corpus_with_its_mtime_kept_does_not_reuse_the_old_index(tmp_path, write_corpus):
    """``cp -p`` / ``rsync -t`` keep the modification time; a corpus of the same size then looked unchanged."""
    path = write_corpus(tmp_path / "corpus.jsonl", [{"id": "1", "title": "Paris", "url": "", "text": "Capital A."}])
    stat = path.stat()
    assert open_local_index(path).search("Paris", 1)[0].document.title == "Paris"
    write_corpus(path, [{"id": "1", "title": "Rome1", "url": "", "text": "Capital A."}])  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    index = open_local_index(path)
    assert index.search("Rome1", 1)[0].document.title == "Rome1"
    assert index.fingerprint == corpus_fingerprint(path) and len(index.fingerprint) == 16


def test_corrupt_cache_is_ignored_and_rebuilt(corpus_path, caplog):
    open_local_index(corpus_path)
    cache_dir = index_cache_dir(corpus_path.resolve(), 1.5, 0.75)
    (cache_dir / "params.index.json").write_text("{broken", encoding="utf-8")
    index = open_local_index(corpus_path)
    assert index.search("Everest", 1)[0].document.title == "Mount Everest"
    assert "ignoring unreadable BM25 index cache" in caplog.text


def test_process_wide_index_is_shared(corpus_path):
    assert get_local_index(corpus_path) is get_local_index(str(corpus_path))


@pytest.mark.integration
def test_concurrent_builders_leave_one_complete_index(corpus_path):
    """Two processes building at once: both succeed, one index directory, no temporary directories left."""
    script = textwrap.dedent(
        f"""
        import json
        from actguide_plugin.tools.bm25_index import open_local_index
        index = open_local_index({str(corpus_path)!r})
        print(json.dumps([hit.document.title for hit in index.search("Everest mountain", 1)]))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out) == ["Mount Everest"]
    cache_root = corpus_path.parent / "corpus.jsonl.bm25s"
    assert len(os.listdir(cache_root)) == 1


@pytest.mark.parametrize("chunk_docs", [1, 4, 100])
def test_scores_equal_bm25s_own_index(corpus_path, monkeypatch, chunk_docs):
    """The chunked builder reproduces ``bm25s.BM25.index`` (Lucene scoring), also across chunk boundaries."""
    monkeypatch.setattr(bm25_index, "_BUILD_CHUNK_DOCS", chunk_docs)
    index = LocalIndex.build(load_corpus(corpus_path))
    texts = [f"{doc.title}\n{doc.text}" for doc in index.corpus.documents]
    reference = bm25s.BM25()
    reference.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    for query in ["capital of France Paris", "Kubrick film 1968 Kubrick", "lorem ipsum", "highest mountain"]:
        expected = reference.get_scores(bm25s.tokenize(query, stopwords="en", return_ids=False, show_progress=False)[0])
        np.testing.assert_allclose(index.scores(query), expected, rtol=1e-5)


def test_search_r1_corpus_is_searchable(tmp_path, write_corpus):
    lines = [
        {"id": "0", "contents": '"Aaron"\nAaron is a prophet and high priest.'},
        {"id": "1", "contents": '"Zebra"\nZebras are African equines with stripes.'},
    ]
    index = open_local_index(write_corpus(tmp_path / "wiki-18.jsonl", lines))
    hit = index.search("striped african equine zebra", 1)[0]
    assert (hit.document.id, hit.document.title) == ("1", "Zebra")


def test_a_query_counts_its_first_max_query_tokens_tokens_only(corpus_path):
    """Work per query is bounded: a 100 KB query reads as many posting lists as its first 64 tokens."""
    index = open_local_index(corpus_path)
    head = " ".join(["Kubrick"] * (bm25_index.MAX_QUERY_TOKENS - 1) + ["Paris"])
    np.testing.assert_array_equal(index.scores(head + " Everest" * 20_000), index.scores(head))
    assert index.search(head + " Everest" * 20_000, topk=1)[0].document.title != "Mount Everest"
    assert index.search("Everest", topk=1)[0].document.title == "Mount Everest"
