"""In-process BM25 over the offline corpus (``bm25s``), built once per process and cached on disk.

The index lives next to the corpus in ``<corpus>.bm25s/<key>/``, where the key hashes the corpus file's size
and modification time, the BM25 parameters and the index format, so an edited corpus or changed parameters
never reuse a stale index. The directory is written under a temporary name and renamed into place, so a
reader never sees a half-written index, and when two processes build at once the first rename wins and the
other discards its copy. A corpus in a read-only place still works: the index then stays in memory.

The index is built here rather than by ``bm25s.BM25.index``, which needs every document's token ids as Python
lists at once (gigabytes for 1M passages): documents are tokenized in chunks into flat numpy arrays and the
score matrix is assembled from those, in bm25s's own layout and with its default (Lucene) scoring, so the
result saves and loads as a ``bm25s.BM25``. Queries skip ``bm25s.BM25.retrieve`` (batching and progress
machinery per call) and add each query token's posting list into a score vector directly.

Work per query is bounded: a query counts its first :data:`MAX_QUERY_TOKENS` tokens (a search query, not a
document: a 100 KB query once froze a rollout worker's event loop for 1.6 s), and a token repeated in it is
scored once with its count as weight (the same scores as bm25s, which adds it again for each repeat), so one
query reads at most ``MAX_QUERY_TOKENS`` posting lists.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from actguide_plugin.logs import get_logger
from actguide_plugin.outputs import atomic_dir
from actguide_plugin.tools.corpus import Corpus, Document, load_corpus

logger = get_logger(__name__)
# bm25s sets its own logger to DEBUG at import; its per-build chatter would flood rollout worker logs.
logging.getLogger("bm25s").setLevel(logging.WARNING)

INDEX_FORMAT_VERSION = 2
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s.tokenize's default token pattern
_STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN)
_BUILD_CHUNK_DOCS = 20_000
MAX_QUERY_TOKENS = 64  # tokens of a query that count; the rest are ignored


@dataclass(frozen=True)
class ScoredDocument:
    """A search hit: the document and its BM25 score."""

    document: Document
    score: float


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens without English stopwords: ``bm25s.tokenize(text, stopwords="en")``."""
    return [token for token in _TOKEN.findall(text.lower()) if token not in _STOPWORDS]


@dataclass
class _ChunkPostings:
    """The distinct (document, token) pairs of a run of documents, in document order."""

    first_doc: int
    pairs_per_doc: np.ndarray  # [docs in chunk] int32: distinct tokens of each document
    token_ids: np.ndarray  # [pairs] int32
    term_freq: np.ndarray  # [pairs] float32: occurrences of the token in the document


def _chunk_postings(
    chunk: Sequence[Document], first_doc: int, vocab: dict[str, int], doc_lengths: np.ndarray
) -> _ChunkPostings:
    """Tokenize ``chunk`` (``title + text``, titles carry most of the signal for entity queries)."""
    token_ids: list[int] = []
    for offset, doc in enumerate(chunk):
        tokens = tokenize(f"{doc.title}\n{doc.text}")
        doc_lengths[first_doc + offset] = len(tokens)
        token_ids.extend([vocab.setdefault(token, len(vocab)) for token in tokens])
    local_docs = np.repeat(np.arange(len(chunk), dtype=np.int64), doc_lengths[first_doc : first_doc + len(chunk)])
    pairs, counts = np.unique((local_docs << 32) | np.asarray(token_ids, dtype=np.int64), return_counts=True)
    pairs_per_doc = np.bincount(pairs >> 32, minlength=len(chunk)).astype(np.int32)
    return _ChunkPostings(first_doc, pairs_per_doc, (pairs & 0xFFFFFFFF).astype(np.int32), counts.astype(np.float32))


def _build_retriever(documents: list[Document], k1: float, b: float) -> bm25s.BM25:
    """A ``bm25s.BM25`` over the documents, built chunk by chunk (two passes) into bm25s's CSC arrays.

    Pass 1 tokenizes chunks into compact postings; pass 2 scores each chunk (Lucene BM25, as bm25s) and
    places its entries straight into their final slots, so no index-sized sort or temporary is ever made.
    """
    vocab: dict[str, int] = {}
    doc_lengths = np.zeros(len(documents), dtype=np.int64)  # [num_docs] tokens per document
    chunks = [
        _chunk_postings(documents[start : start + _BUILD_CHUNK_DOCS], start, vocab, doc_lengths)
        for start in range(0, len(documents), _BUILD_CHUNK_DOCS)
    ]
    doc_freq = np.zeros(len(vocab), dtype=np.int64)  # [vocab]
    for chunk in chunks:
        doc_freq += np.bincount(chunk.token_ids, minlength=len(vocab))
    num_docs, avg_length = len(documents), max(float(doc_lengths.mean()), 1.0)
    idf = np.log1p((num_docs - doc_freq + 0.5) / (doc_freq + 0.5)).astype(np.float32)  # [vocab] Lucene idf
    norm = (k1 * ((1 - b) + b * doc_lengths / avg_length)).astype(np.float32)  # [num_docs]
    indptr = np.concatenate([[0], np.cumsum(doc_freq)]).astype(np.int64)  # [vocab + 1] column starts
    data = np.empty(int(indptr[-1]), dtype=np.float32)  # [nnz] score of a token in a document
    indices = np.empty(int(indptr[-1]), dtype=np.int32)  # [nnz] that document
    next_slot = indptr[:-1].copy()  # [vocab] first free slot of each token's column
    while chunks:
        chunk = chunks.pop(0)  # freed once placed
        docs = np.repeat(np.arange(chunk.first_doc, chunk.first_doc + len(chunk.pairs_per_doc)), chunk.pairs_per_doc)
        scores = idf[chunk.token_ids] * chunk.term_freq / (norm[docs] + chunk.term_freq)  # [pairs]
        order = np.argsort(chunk.token_ids, kind="stable")  # stable: documents stay ascending within a token
        tokens = chunk.token_ids[order]
        rank = np.arange(len(tokens)) - np.searchsorted(tokens, tokens)  # position among the chunk's same token
        slots = next_slot[tokens] + rank
        data[slots], indices[slots] = scores[order], docs[order]
        next_slot += np.bincount(tokens, minlength=len(vocab))
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": num_docs}
    retriever.vocab_dict = vocab
    retriever.unique_token_ids_set = set(vocab.values())
    retriever.nonoccurrence_array = None
    return retriever


class LocalIndex:
    """A corpus plus its BM25 index; thread-safe for concurrent searches (read-only after construction)."""

    def __init__(self, corpus: Corpus, retriever: bm25s.BM25, fingerprint: str = "") -> None:
        self.corpus = corpus
        self.retriever = retriever
        self.fingerprint = fingerprint  # of the corpus file's content ("" when built from documents in memory)

    @classmethod
    def build(cls, corpus: Corpus, k1: float = 1.5, b: float = 0.75, fingerprint: str = "") -> LocalIndex:
        """Index ``title + text`` of every document."""
        return cls(corpus, _build_retriever(corpus.documents, k1, b), fingerprint)

    def _token_counts(self, query: str) -> Counter[int]:
        """Known token ids of ``query``'s first :data:`MAX_QUERY_TOKENS` tokens, with their counts."""
        vocab = self.retriever.vocab_dict
        return Counter(vocab[token] for token in tokenize(query)[:MAX_QUERY_TOKENS] if token in vocab)

    def scores(self, query: str) -> np.ndarray | None:
        """BM25 score of every document for ``query`` (``[num_docs]``), or ``None`` when no token is known."""
        counts = self._token_counts(query)
        if not counts:
            return None
        matrix = self.retriever.scores
        data, indices, indptr = matrix["data"], matrix["indices"], matrix["indptr"]
        scores = np.zeros(int(matrix["num_docs"]), dtype=np.float32)
        for token_id, count in counts.items():  # a repeated query token counts again, as in bm25s
            start, end = indptr[token_id], indptr[token_id + 1]
            postings = data[start:end] if count == 1 else data[start:end] * np.float32(count)
            scores[indices[start:end]] += postings  # one posting list names each document once
        return scores

    def search(self, query: str, topk: int) -> list[ScoredDocument]:
        """The ``topk`` best documents with a positive score, best first (fewer if fewer match)."""
        scores = self.scores(query)
        if scores is None or topk <= 0:
            return []
        candidates = np.argpartition(-scores, topk)[:topk] if topk < len(scores) else np.arange(len(scores))
        ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [ScoredDocument(self.corpus.documents[int(i)], float(scores[i])) for i in ranked if scores[i] > 0.0]

    def search_many(self, requests: Sequence[tuple[str, int]]) -> list[list[ScoredDocument]]:
        """:meth:`search` for each ``(query, topk)``, once per distinct request (rollouts repeat queries)."""
        answers: dict[tuple[str, int], list[ScoredDocument]] = {}
        for request in requests:
            if request not in answers:
                answers[request] = self.search(*request)
        return [answers[request] for request in requests]


def corpus_fingerprint(corpus_path: Path) -> str:
    """A hash of the corpus file's bytes (16 hex digits): what identifies the answers of an index built from it.

    Size and modification time are not enough: a same-size corpus copied with its mtime kept (``cp -p``,
    ``rsync -t``) would reuse another corpus's index and return its documents. Reading the file costs about a
    second per GB, next to the minutes the index takes to build.
    """
    digest = hashlib.sha256()
    with corpus_path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def index_cache_dir(corpus_path: Path, k1: float, b: float, fingerprint: str | None = None) -> Path:
    """Where the on-disk index for this corpus content and these parameters lives."""
    content = fingerprint or corpus_fingerprint(corpus_path)
    settings = f"v{INDEX_FORMAT_VERSION}|{bm25s.__version__}|{content}|{k1}|{b}"
    key = hashlib.sha256(settings.encode()).hexdigest()[:16]
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
    """Cache the index; a copy that another process renamed into place first is kept: it is as good as ours."""
    try:
        with atomic_dir(cache_dir, replace=False) as tmp_dir:
            index.retriever.save(str(tmp_dir), show_progress=False)
    except OSError as err:
        if not cache_dir.is_dir():
            logger.warning("cannot cache the BM25 index next to the corpus (%s); keeping it in memory only", err)


def open_local_index(corpus_path: str | os.PathLike[str], k1: float = 1.5, b: float = 0.75) -> LocalIndex:
    """Load the corpus and its index, building and caching the index on disk when needed."""
    path = Path(corpus_path).resolve()
    corpus = load_corpus(path)  # first: it names a missing or bad file
    fingerprint = corpus_fingerprint(path)
    cache_dir = index_cache_dir(path, k1, b, fingerprint)
    retriever = _load_cached(cache_dir, corpus)
    if retriever is not None:
        return LocalIndex(corpus, retriever, fingerprint)
    logger.info("building BM25 index for %s (%d documents)", path, len(corpus))
    index = LocalIndex.build(corpus, k1=k1, b=b, fingerprint=fingerprint)
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
