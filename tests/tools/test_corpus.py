"""corpus.jsonl loading (errors name file, line and field) and page lookup by url or title."""

from __future__ import annotations

import json
import logging

import pytest

from actguide_plugin.tools.corpus import CorpusFormatError, Document, load_corpus


@pytest.mark.parametrize(
    "name",
    [
        "https://en.wikipedia.org/wiki/Stanley_Kubrick",
        "http://en.wikipedia.org/wiki/Stanley_Kubrick/",  # other scheme, trailing slash
        "https://en.m.wikipedia.org/wiki/Stanley_Kubrick",  # other host: resolved by the title in the path
        "https://en.wikipedia.org/wiki/Stanley%20Kubrick",  # percent-escaped
        "Stanley Kubrick",
        "stanley_kubrick",
        "  STANLEY   kubrick ",
    ],
)
def test_lookup_by_url_or_title(corpus_path, name):
    doc = load_corpus(corpus_path).lookup(name)
    assert doc is not None and doc.title == "Stanley Kubrick"


def test_lookup_of_title_with_colon_and_unknown_page(corpus_path):
    corpus = load_corpus(corpus_path)
    assert corpus.lookup("https://en.wikipedia.org/wiki/2001:_A_Space_Odyssey").id == "4"
    assert corpus.lookup("2001: a space odyssey").id == "4"
    assert corpus.lookup("Berlin") is None
    assert corpus.lookup("https://en.wikipedia.org/wiki/Berlin") is None


def test_integer_ids_are_accepted(tmp_path, write_corpus):
    path = write_corpus(tmp_path / "c.jsonl", [{"id": 7, "title": "T", "url": "https://x/wiki/T", "text": "t"}])
    assert load_corpus(path).documents[0].id == "7"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        (json.dumps({"id": "2", "title": "B", "url": "u"}), "line 2: field 'text' must be a string"),
        (
            json.dumps({"id": "2", "title": 5, "url": "u", "text": "t"}),
            "line 2: field 'title' must be a string, got int",
        ),
        (json.dumps({"id": None, "text": "t"}), "line 2: field 'id' .or 'docid'. must be a string or an integer"),
        (json.dumps({"id": "2", "contents": "t"}), "line 2: field 'text' must be a string"),  # shape of line 1 holds
        (b'{"id": "2", "text": "caf\xe9"}', "line 2: not valid UTF-8"),
    ],
)
def test_bad_lines_are_named(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "1", "title": "A", "url": "https://x/wiki/A", "text": "a"}).encode()
    path.write_bytes(good + b"\n" + (line if isinstance(line, bytes) else line.encode()) + b"\n")
    with pytest.raises(CorpusFormatError, match=message) as info:
        load_corpus(path)
    assert str(path) in str(info.value)


def test_missing_and_empty_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus file not found"):
        load_corpus(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match="empty"):
        load_corpus(tmp_path / "empty.jsonl")


def test_search_r1_corpus(tmp_path, write_corpus, caplog):
    """Search-R1's wiki-18 lines: the quoted first line of ``contents`` is the title; visit by title or id."""
    lines = [
        {"id": "0", "contents": '"Aaron"\nAaron is a prophet.\nSecond line.'},
        {"id": 1, "contents": '"Aaron"\nA second passage of the same article.'},
        {"id": "2", "contents": "no title line"},
    ]
    caplog.set_level(logging.INFO, logger="actguide_plugin.tools.corpus")
    corpus = load_corpus(write_corpus(tmp_path / "wiki-18.jsonl", lines))
    assert corpus.documents == [
        Document("0", "Aaron", "", "Aaron is a prophet.\nSecond line."),
        Document("1", "Aaron", "", "A second passage of the same article."),
        Document("2", "", "", "no title line"),
    ]
    assert "search-r1 shape" in caplog.text
    assert corpus.lookup("aaron").id == "0" and corpus.lookup("1").id == "1" and corpus.lookup("2").id == "2"
    assert corpus.lookup("") is None


def test_documents_corpus_with_optional_title_and_url(tmp_path, write_corpus, caplog):
    lines = [
        {"docid": "d1", "text": "Only text."},
        {"id": 7, "title": "Seven", "text": "Has a title.", "url": None},
        {"id": "u", "title": "Linked", "url": "https://x/wiki/Linked", "text": "Has both.", "extra": [1]},
    ]
    caplog.set_level(logging.INFO, logger="actguide_plugin.tools.corpus")
    corpus = load_corpus(write_corpus(tmp_path / "c.jsonl", lines))
    assert [(d.id, d.title, d.url) for d in corpus.documents] == [
        ("d1", "", ""),
        ("7", "Seven", ""),
        ("u", "Linked", "https://x/wiki/Linked"),
    ]
    assert "documents shape" in caplog.text
    assert corpus.lookup("d1").text == "Only text." and corpus.lookup("seven").id == "7"
    assert corpus.lookup("https://x/wiki/Linked").id == "u"


def test_unrecognized_shape_names_the_line_and_keys(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n" + json.dumps({"id": "1", "body": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=r"line 2: unrecognized corpus line with keys \['body', 'id'\]"):
        load_corpus(path)


def test_a_duplicate_id_is_named_with_both_lines_and_a_bom_is_not_part_of_the_json(tmp_path):
    path = tmp_path / "corpus.jsonl"
    lines = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}, {"id": "a", "text": "three"}]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(line) + "\n" for line in lines).encode())
    with pytest.raises(CorpusFormatError, match=r"line 3: duplicate id 'a' \(first at line 1\)"):
        load_corpus(path)
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(line) + "\n" for line in lines[:2]).encode())
    assert len(load_corpus(path)) == 2
