"""actguide-retriever over real HTTP on 127.0.0.1: Search-R1 /retrieve, /search, /visit, /health, validation."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from actguide_plugin.retriever.server import ServerLimits, _parser, create_app, head_deadline_protocol
from actguide_plugin.tools.bm25_index import LocalIndex, corpus_fingerprint, open_local_index
from actguide_plugin.tools.search_tools import WebSearchTool, WebVisitTool

DOCUMENTS = [
    {
        "id": "a",
        "title": "Paris",
        "url": "https://en.wikipedia.org/wiki/Paris",
        "text": "Paris is the capital of France.",
    },
    {
        "id": "b",
        "title": "Berlin",
        "url": "https://en.wikipedia.org/wiki/Berlin",
        "text": "Berlin is the capital of Germany.",
    },
    {
        "id": "c",
        "title": "Mount Everest",
        "url": "https://en.wikipedia.org/wiki/Mount_Everest",
        "text": "The highest mountain.",
    },
]
LIMITS = ServerLimits(max_queries=4, max_query_chars=60, default_topk=2, max_topk=5, snippet_chars=15)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("retriever") / "corpus.jsonl"
    path.write_text("".join(json.dumps(doc) + "\n" for doc in DOCUMENTS), encoding="utf-8")
    return path


@contextlib.contextmanager
def serve(app, **config) -> Iterator[str]:
    """``app`` served by uvicorn in a background thread on a free loopback port; yields its base url."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "retriever server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def base_url(corpus_file):
    with serve(create_app(open_local_index(corpus_file), LIMITS)) as url:
        yield url


@pytest.fixture(scope="module")
def tight_url(corpus_file):
    """A server whose size limits a test request can reach."""
    limits = ServerLimits(max_queries=4, max_topk=5, max_body_bytes=2**20, max_results=6, max_response_bytes=400)
    with serve(create_app(open_local_index(corpus_file), limits)) as url:
        yield url


def post(base_url: str, path: str, body) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(base_url + path, content=content, headers={"content-type": "application/json"}, timeout=10)


def test_health(base_url, corpus_file):
    """The corpus fingerprint is the hash of the file's content: what a client's cache keys carry."""
    health = httpx.get(base_url + "/health").json()
    assert health == {"status": "ok", "documents": 3, "corpus": corpus_fingerprint(corpus_file)}


def test_retrieve_speaks_search_r1(base_url):
    response = post(
        base_url, "/retrieve", {"queries": ["capital of Germany", "highest mountain"], "topk": 1, "return_scores": True}
    )
    assert response.status_code == 200
    result = response.json()["result"]
    assert len(result) == 2 and len(result[0]) == 1
    berlin = result[0][0]
    assert berlin["score"] > 0
    assert berlin["document"] == {
        "id": "b",
        "title": "Berlin",
        "url": "https://en.wikipedia.org/wiki/Berlin",
        "text": "Berlin is the capital of Germany.",
        "contents": '"Berlin"\nBerlin is the capital of Germany.',
    }
    assert result[1][0]["document"]["title"] == "Mount Everest"


def test_retrieve_without_scores_returns_bare_documents_and_default_topk(base_url):
    result = post(base_url, "/retrieve", {"queries": ["capital"]}).json()["result"]
    assert len(result[0]) == 2  # default_topk
    assert {doc["title"] for doc in result[0]} == {"Paris", "Berlin"} and "score" not in result[0][0]


def test_search_and_visit(base_url):
    hits = post(base_url, "/search", {"queries": ["Paris France"], "topk": 1}).json()["result"][0]
    assert hits[0]["title"] == "Paris" and hits[0]["snippet"] == "Paris is the …"
    pages = post(base_url, "/visit", {"urls": ["https://en.wikipedia.org/wiki/Berlin", "mount_everest", "Rome"]}).json()
    assert [page.get("title") for page in pages["result"]] == ["Berlin", "Mount Everest", None]
    assert pages["result"][2] == {"request": "Rome", "error": "page not found: Rome"}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/retrieve", b"{not json", "request body is not valid JSON"),
        ("/retrieve", [1, 2], "request body must be a JSON object"),
        ("/retrieve", {"topk": 1}, "'queries' is required"),
        ("/retrieve", {"queries": []}, "'queries' is empty"),
        ("/retrieve", {"queries": ["q"] * 5}, "'queries' has 5 items; at most 4 per request"),
        ("/retrieve", {"queries": ["ok", 3]}, "queries[1] must be a string"),
        ("/retrieve", {"queries": ["x" * 61]}, "queries[0] has 61 characters; at most 60"),
        ("/retrieve", {"queries": ["q"], "topk": 0}, "'topk' must be an integer in [1, 5]"),
        ("/retrieve", {"queries": ["q"], "topk": True}, "'topk' must be an integer"),
        ("/retrieve", {"queries": ["q"], "return_scores": "yes"}, "'return_scores' must be true or false"),
        ("/search", {"queries": "just a string"}, "'queries' is required"),
        ("/visit", {"queries": ["Paris"]}, "'urls' is required"),
    ],
)
def test_bad_requests_get_400_with_a_message(base_url, path, body, message):
    response = post(base_url, path, body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_deeply_nested_body_is_a_400_not_a_500(base_url):
    depth = 100_000
    body = b'{"queries": ' + b"[" * depth + b"]" * depth + b"}"
    response = post(base_url, "/retrieve", body)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/retrieve", {"queries": ["a", "b"], "topk": 4}, "asks for 8 results (2 queries x topk 4); at most 6"),
        ("/search", {"queries": ["a", "b", "c", "d"], "topk": 2}, "asks for 8 results"),
        ("/retrieve", {"queries": ["capital", "capital"], "topk": 3}, "answer would be"),
        ("/visit", {"urls": ["Paris", "Berlin", "Mount Everest", "Paris"]}, "at most 400 (--max-response-bytes)"),
        ("/retrieve", {"queries": ["q" * 100] * 2, "pad": "x" * 2**20}, "request body exceeds 1048576 bytes"),
    ],
)
def test_requests_asking_too_much_get_413_with_the_limit(tight_url, path, body, message):
    response = post(tight_url, path, body)
    assert response.status_code == 413
    assert message in response.json()["error"]


def test_body_limit_holds_without_content_length(tight_url):
    """A chunked upload is cut off at the limit, not buffered whole."""
    chunks = iter([b'{"queries": ["capital"], "pad": "', *[b"x" * 2**16] * 20, b'"}'])
    response = httpx.post(tight_url + "/retrieve", content=chunks, timeout=10)
    assert response.status_code == 413 and "request body exceeds" in response.json()["error"]


def test_within_limits_still_answers(tight_url):
    response = post(tight_url, "/search", {"queries": ["Berlin"], "topk": 1})
    assert response.status_code == 200 and response.json()["result"][0][0]["title"] == "Berlin"


class GatedIndex(LocalIndex):
    """The real index, whose batch calls wait for the test to open a gate (so a request stays in flight)."""

    def __init__(self, index: LocalIndex) -> None:
        super().__init__(index.corpus, index.retriever)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.batches: list[list[tuple[str, int]]] = []
        self.threads: set[int] = set()

    def search_many(self, requests):
        self.batches.append(list(requests))
        self.threads.add(threading.get_ident())
        self.entered.set()
        assert self.gate.wait(timeout=30), "test never opened the gate"
        return super().search_many(requests)


def test_health_answers_while_a_big_request_is_scored(corpus_file):
    """A legal 512-query x topk-100 request is scored off the event loop: /health answers meanwhile."""
    index = GatedIndex(open_local_index(corpus_file))
    with serve(create_app(index)) as url, httpx.Client(timeout=20) as client:
        big = {"queries": [f"capital {i}" for i in range(512)], "topk": 100, "return_scores": True}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(post, url, "/retrieve", big)
            assert index.entered.wait(timeout=20)
            try:
                health = client.get(url + "/health", timeout=5)
                assert health.json()["documents"] == 3
                assert not in_flight.done()  # /health answered before the big request finished
            finally:
                index.gate.set()
            response = in_flight.result()
    assert response.status_code == 200
    result = response.json()["result"]
    assert len(result) == 512 and result[0][0]["document"]["title"] in {"Paris", "Berlin"}
    assert threading.main_thread().ident not in index.threads


def test_requests_arriving_while_busy_are_scored_as_one_batch(corpus_file):
    index = GatedIndex(open_local_index(corpus_file))
    app = create_app(index, workers=1)
    with serve(app) as url, concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = pool.submit(post, url, "/search", {"queries": ["Paris"], "topk": 1})
        assert index.entered.wait(timeout=20)  # the only worker is busy with the first request
        queued = [
            pool.submit(post, url, "/search", {"queries": [query], "topk": 1})
            for query in ["Berlin", "Mount Everest", "Berlin"]
        ]
        deadline = time.monotonic() + 20
        while app.scorer.pending_queries < 3:
            assert time.monotonic() < deadline, "requests did not reach the server"
            time.sleep(0.01)
        index.gate.set()
        titles = [future.result().json()["result"][0][0]["title"] for future in [first, *queued]]
    assert titles == ["Paris", "Berlin", "Mount Everest", "Berlin"]
    assert [sorted(batch) for batch in index.batches] == [
        [("Paris", 1)],
        [("Berlin", 1), ("Berlin", 1), ("Mount Everest", 1)],
    ]


class SlowIndex(LocalIndex):
    """The real index, 5 ms a query (a big corpus): records how many queries were scored, in order."""

    def __init__(self, index: LocalIndex) -> None:
        super().__init__(index.corpus, index.retriever)
        self.scored: list[str] = []
        self.entered = threading.Event()

    def search_many(self, requests):
        self.entered.set()
        answers = []
        for query, topk in requests:
            time.sleep(0.005)
            answers.append(self.search(query, topk))
            self.scored.append(query)
        return answers


@pytest.mark.parametrize("workers", [1, 2])
def test_a_one_query_request_does_not_wait_for_a_big_one(corpus_file, workers):
    """Fair turns: a 512-query request (2.5 s of scoring here) is scored in turns of SLICE_S, and a one-query
    request arriving meanwhile is answered in the next turn, while most of the big request is still unscored."""
    index = SlowIndex(open_local_index(corpus_file))
    with serve(create_app(index, workers=workers)) as url, concurrent.futures.ThreadPoolExecutor(1) as pool:
        queries = [["Paris", "Berlin", "Everest"][i % 3] + f" {i}" for i in range(512)]
        big = pool.submit(post, url, "/search", {"queries": queries, "topk": 1})
        assert index.entered.wait(timeout=20)
        small = post(url, "/search", {"queries": ["capital of Germany"], "topk": 1})
        scored_by_then = sum(query != "capital of Germany" for query in index.scored)
        answer = big.result()
    assert small.json()["result"][0][0]["title"] == "Berlin"
    assert scored_by_then < 256  # without turns it waited for all 512
    titles = [hits[0]["title"] for hits in answer.json()["result"]]
    assert titles == [["Paris", "Berlin", "Mount Everest"][i % 3] for i in range(512)]  # in order, every one


async def test_tools_through_the_retrieval_server_backend(base_url, tmp_path):
    backend = {"name": "retrieval_server", "base_url": base_url, "cache_path": str(tmp_path / "c.sqlite")}
    search = WebSearchTool({"type": "native", "backend": backend, "topk": 1}, None)
    visit = WebVisitTool({"type": "native", "backend": backend}, None)
    instance_id, _ = await search.create(create_kwargs={})
    response, _, metrics = await search.execute(instance_id, {"query": ["capital of Germany"]}, agent_data=None)
    await search.release(instance_id)
    assert metrics["errors"] == 0
    assert response.text.startswith(
        'Results for "capital of Germany":\n1. Berlin — https://en.wikipedia.org/wiki/Berlin'
    )
    instance_id, _ = await visit.create(create_kwargs={})
    response, _, metrics = await visit.execute(instance_id, {"url": ["Paris", "Rome"]}, agent_data=None)
    await visit.release(instance_id)
    assert "Page: Paris — https://en.wikipedia.org/wiki/Paris\nParis is the capital of France." in response.text
    assert "Visit Rome failed: page not found: Rome" in response.text and metrics["failed_items"] == 1


def test_binds_loopback_by_default():
    args = _parser().parse_args(["--corpus", "c.jsonl"])
    assert args.host == "127.0.0.1"


@pytest.mark.integration
def test_console_script_entry_point_serves(corpus_file, unused_tcp_port):
    """``main()`` as the console script runs it: starts, answers /health, stops on SIGTERM."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from actguide_plugin.retriever.server import main; main()",
            "--corpus",
            str(corpus_file),
            "--port",
            str(unused_tcp_port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{unused_tcp_port}/health", timeout=1).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        assert health["status"] == "ok" and health["documents"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_corpus_argument_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("ACTGUIDE_CORPUS", raising=False)
    from actguide_plugin.retriever.server import main

    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2 and "--corpus is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (json.dumps(DOCUMENTS[0]) + "\n{not json\n", "line 2: not valid JSON"),
        (
            json.dumps(DOCUMENTS[0]) + "\n" + json.dumps({"id": "x", "title": "T", "url": "u"}) + "\n",
            "line 2: field 'text' must be a string",
        ),
        (None, "corpus file not found"),
    ],
)
def test_corpus_errors_print_one_line_naming_file_and_line(tmp_path, capsys, content, message):
    from actguide_plugin.retriever.server import main

    path = tmp_path / "corpus.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["--corpus", str(path), "--log-level", "warning"])
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert err.count("\n") == 1 and err.startswith("actguide-retriever: error: ")
    assert str(path) in err and message in err and "Traceback" not in err


def test_unknown_endpoint_and_wrong_method(base_url):
    missing = httpx.get(base_url + "/nope", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"error": "no such endpoint: /nope"}
    wrong = httpx.get(base_url + "/retrieve", timeout=10)
    assert wrong.status_code == 405 and "GET is not allowed on /retrieve" in wrong.json()["error"]


def test_a_lone_surrogate_in_the_corpus_or_a_query_fails_no_request(tmp_path):
    """Served as loaded, one such document made every answer that included it a 500, and the clean requests batched
    with it too: the corpus is repaired at load and queries at parse."""
    corpus = tmp_path / "corpus.jsonl"
    lines = ['{"id": "1", "title": "Paris", "text": "capital of France"}',
             '{"id": "2", "title": "Odd\\ud800", "text": "capital \\udc80 of nothing"}']  # fmt: skip
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with serve(create_app(open_local_index(corpus), LIMITS)) as url:
        bodies = [{"queries": ["capital"] * 4, "topk": 2}, {"queries": ["capital \ud800"], "topk": 2}] * 6
        with concurrent.futures.ThreadPoolExecutor(12) as pool:  # batched together by the scorer
            answers = list(pool.map(lambda body: post(url, "/search", body), bodies))
    assert [answer.status_code for answer in answers] == [200] * 12
    titles = {hit["title"] for answer in answers for hits in answer.json()["result"] for hit in hits}
    assert titles == {"Paris", "Odd\ufffd"}


@pytest.mark.parametrize("head", [b"", b"POST /retrieve HTTP/1.1\r\nhost: x\r\n"])
def test_a_connection_without_a_whole_request_head_is_closed(corpus_file, head):
    """A client that never sends, or trickles its headers a byte at a time (each byte restarting uvicorn's keep-alive
    timer), is disconnected at the head deadline; a client that sends its request in time is served."""
    app = create_app(open_local_index(corpus_file))
    with serve(app, http=head_deadline_protocol(0.5)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(head)
            started, closed = time.monotonic(), False
            while not closed and time.monotonic() - started < 5:
                try:
                    conn.sendall(b"x")  # one more header byte
                    conn.settimeout(0.2)
                    closed = conn.recv(100) == b""
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
            waited = time.monotonic() - started
        assert closed and 0.3 < waited < 3
        assert post(url, "/retrieve", {"queries": ["Everest"], "topk": 1}).status_code == 200  # keep-alive client


def test_a_client_trickling_its_body_gets_408_and_frees_the_connection(corpus_file):
    """Slow loris: headers promise 100 bytes, 10 arrive, then nothing; the server answers within its body timeout."""
    limits = ServerLimits(body_timeout_s=0.5)
    with serve(create_app(open_local_index(corpus_file), limits)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            started = time.monotonic()
            conn.sendall(b"POST /retrieve HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: 100\r\n\r\n" + b'{"queries"')  # fmt: skip
            answer = conn.recv(4096)
            waited = time.monotonic() - started
            head, _, body = answer.partition(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
            while len(body) < length:  # the body may arrive in its own segment
                chunk = conn.recv(4096)
                assert chunk, "the server closed before sending the whole body"
                body += chunk
            answer = head + b"\r\n\r\n" + body
        assert answer.startswith(b"HTTP/1.1 408") and b"--body-timeout-s" in answer
        assert 0.4 < waited < 5
        assert post(url, "/retrieve", {"queries": ["Everest"], "topk": 1}).status_code == 200  # still serving


async def test_an_over_long_query_fails_alone_and_is_not_echoed_whole(base_url):
    """The server refuses a query over --max-query-chars for the whole request; the tool fails only that query."""
    backend = {"name": "retrieval_server", "base_url": base_url}
    search = WebSearchTool({"type": "native", "backend": backend, "topk": 1}, None)
    instance_id, _ = await search.create(create_kwargs={})
    runaway = "capital " * 1000
    response, _, metrics = await search.execute(
        instance_id, {"query": ["capital of Germany", runaway]}, agent_data=None
    )
    assert metrics["errors"] == 0 and metrics["failed_items"] == 1
    assert 'Results for "capital of Germany":\n1. Berlin' in response.text
    assert f"failed: the query has {len(runaway.strip())} characters; at most 2048" in response.text
    assert len(response.text) < 600  # the runaway query is shown cut, not whole


async def test_an_over_long_url_fails_alone(base_url):
    visit = WebVisitTool({"type": "native", "backend": {"name": "retrieval_server", "base_url": base_url}}, None)
    instance_id, _ = await visit.create(create_kwargs={})
    response, _, metrics = await visit.execute(instance_id, {"url": ["Berlin", "https://x.org/" + "a" * 3000]})
    assert metrics["errors"] == 0 and metrics["failed_items"] == 1
    assert "Page: Berlin" in response.text and "failed: the url has 3014 characters; at most 2048" in response.text
    assert len(response.text) < 600
