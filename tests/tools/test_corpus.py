"""corpus.jsonl loading (errors name file, line and field) and page lookup by url or title."""

from __future__ import annotations

import json

import pytest

from actguide_plugin.tools.corpus import CorpusFormatError, load_corpus


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
        (json.dumps({"id": "2", "title": None, "url": "u", "text": "t"}), "line 2: field 'title' must be a string"),
    ],
)
def test_bad_lines_are_named(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "1", "title": "A", "url": "https://x/wiki/A", "text": "a"})
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=message) as info:
        load_corpus(path)
    assert str(path) in str(info.value)


def test_missing_and_empty_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus file not found"):
        load_corpus(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match="empty"):
        load_corpus(tmp_path / "empty.jsonl")
