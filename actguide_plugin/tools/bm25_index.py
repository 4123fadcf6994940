"""In-process BM25 over the offline corpus (``bm25s``), built once per process and cached on disk.

The index lives next to the corpus in ``<corpus>.bm25s/<key>/``, where the key hashes the corpus file's size
and modification time, the BM25 parameters and the index format, so an edited corpus or changed parameters
never reuse a stale index. The directory is written under a temporary name and renamed into place, so a
reader never sees a half-written index, and when two processes build at once the first rename wins and the
other discards its copy. A corpus in a read-only place still works: the index then stays in memory.

Queries skip ``bm25s.BM25.retrieve`` (which sets up batching and progress machinery per call) and score
token ids directly, which keeps one query well under a millisecond on a 10k-document corpus.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from actguide_plugin.logs import get_logger
from actguide_plugin.tools.corpus import Corpus, Document, load_corpus

logger = get_logger(__name__)
# bm25s sets its own logger to DEBUG at import; its per-build chatter would flood rollout worker logs.
logging.getLogger("bm25s").setLevel(logging.WARNING)

INDEX_FORMAT_VERSION = 1
_STOPWORDS = "en"


@dataclass(frozen=True)
class ScoredDocument:
    """A search hit: the document and its BM25 score."""

    document: Document
    score: float


def _tokenize(texts: list[str], *, return_ids: bool) -> bm25s.tokenization.Tokenized | list[list[str]]:
    return bm25s.tokenize(texts, stopwords=_STOPWORDS, return_ids=return_ids, show_progress=False)


class LocalIndex:
    """A corpus plus its BM25 index; thread-safe for concurrent searches (read-only after construction)."""

    def __init__(self, corpus: Corpus, retriever: bm25s.BM25) -> None:
        self.corpus = corpus
        self.retriever = retriever

    @classmethod
    def build(cls, corpus: Corpus, k1: float = 1.5, b: float = 0.75) -> LocalIndex:
        """Index ``title + text`` of every document (titles carry most of the signal for entity queries)."""
        tokens = _tokenize([f"{doc.title}\n{doc.text}" for doc in corpus.documents], return_ids=True)
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokens, show_progress=False)
        return cls(corpus, retriever)

    def search(self, query: str, topk: int) -> list[ScoredDocument]:
        """The ``topk`` best documents with a positive score, best first (fewer if fewer match)."""
        query_tokens = _tokenize([query], return_ids=False)[0]
        token_ids = self.retriever.get_tokens_ids(query_tokens)
        if not token_ids or topk <= 0:
            return []
        scores = self.retriever.get_scores_from_ids(token_ids)  # [num_docs]
        candidates = np.argpartition(-scores, topk)[:topk] if topk < len(scores) else np.arange(len(scores))
        ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [ScoredDocument(self.corpus.documents[int(i)], float(scores[i])) for i in ranked if scores[i] > 0.0]


def index_cache_dir(corpus_path: Path, k1: float, b: float) -> Path:
    """Where the on-disk index for this corpus version and these parameters lives."""
    stat = corpus_path.stat()
    fingerprint = f"v{INDEX_FORMAT_VERSION}|{bm25s.__version__}|{stat.st_size}|{stat.st_mtime_ns}|{k1}|{b}"
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return corpus_path.parent / f"{corpus_path.name}.bm25s" / key


def _load_cached(cache_dir: Path, corpus: Corpus) -> bm25s.BM25 | None:
    if not cache_dir.is_dir():
        return None
    try:
        retriever = bm25s.BM25.load(str(cache_dir), show_progress=False)
    except (OSError, ValueError, KeyError) as err:
        logger.warning("ignoring unreadable BM25 index cache %s: %s", cache_dir, err)
        return None
    if int(retriever.scores["num_docs"]) != len(corpus):
        logger.warning("ignoring BM25 index cache %s: document count differs from the corpus", cache_dir)
        return None
    return retriever


def _save_atomically(index: LocalIndex, cache_dir: Path) -> None:
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.", dir=cache_dir.parent))
    except OSError as err:
        logger.warning("cannot cache the BM25 index next to the corpus (%s); keeping it in memory only", err)
        return
    try:
        index.retriever.save(str(tmp_dir), show_progress=False)
        os.rename(tmp_dir, cache_dir)
    except OSError:
        # Another process renamed its copy into place first (or the disk refused): theirs is as good as ours.
        shutil.rmtree(tmp_dir, ignore_errors=True)


def open_local_index(corpus_path: str | os.PathLike[str], k1: float = 1.5, b: float = 0.75) -> LocalIndex:
    """Load the corpus and its index, building and caching the index on disk when needed."""
    path = Path(corpus_path).resolve()
    corpus = load_corpus(path)
    cache_dir = index_cache_dir(path, k1, b)
    retriever = _load_cached(cache_dir, corpus)
    if retriever is not None:
        return LocalIndex(corpus, retriever)
    logger.info("building BM25 index for %s (%d documents)", path, len(corpus))
    index = LocalIndex.build(corpus, k1=k1, b=b)
    _save_atomically(index, cache_dir)
    return index


_process_indexes: dict[tuple[str, float, float], LocalIndex] = {}
_process_lock = threading.Lock()


def get_local_index(corpus_path: str | os.PathLike[str], k1: float = 1.5, b: float = 0.75) -> LocalIndex:
    """The process-wide index for a corpus: built (or loaded) once, shared by every tool and request."""
    key = (str(Path(corpus_path).resolve()), float(k1), float(b))
    with _process_lock:
        index = _process_indexes.get(key)
        if index is None:
            index = open_local_index(corpus_path, k1=k1, b=b)
            _process_indexes[key] = index
        return index
