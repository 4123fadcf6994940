"""Fixtures for the tool tests: a small corpus.jsonl written to a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LONG_TEXT = "Lorem ipsum dolor sit amet. " * 400  # ~11k characters, to exercise page truncation

DOCUMENTS = [
    {
        "id": "1",
        "title": "Paris",
        "url": "https://en.wikipedia.org/wiki/Paris",
        "text": "Paris is the capital and largest city of France, on the river Seine.",
    },
    {
        "id": "2",
        "title": "France",
        "url": "https://en.wikipedia.org/wiki/France",
        "text": "France is a country in Western Europe. Its capital is Paris.",
    },
    {
        "id": "3",
        "title": "Stanley Kubrick",
        "url": "https://en.wikipedia.org/wiki/Stanley_Kubrick",
        "text": "Stanley Kubrick was an American filmmaker who directed 2001: A Space Odyssey.",
    },
    {
        "id": "4",
        "title": "2001: A Space Odyssey",
        "url": "https://en.wikipedia.org/wiki/2001:_A_Space_Odyssey",
        "text": "2001: A Space Odyssey is a 1968 science fiction film by Stanley Kubrick.",
    },
    {
        "id": "5",
        "title": "Mount Everest",
        "url": "https://en.wikipedia.org/wiki/Mount_Everest",
        "text": "Mount Everest is Earth's highest mountain above sea level, in the Himalayas.",
    },
    {"id": "6", "title": "Lorem Ipsum", "url": "https://en.wikipedia.org/wiki/Lorem_Ipsum", "text": LONG_TEXT},
]


def _write_corpus(path: Path, documents: list[dict] = DOCUMENTS) -> Path:
    path.write_text("".join(json.dumps(doc) + "\n" for doc in documents), encoding="utf-8")
    return path


@pytest.fixture
def write_corpus():
    """``write_corpus(path, documents=DOCUMENTS) -> path``: write a corpus.jsonl file."""
    return _write_corpus


@pytest.fixture
def corpus_path(tmp_path: Path) -> Path:
    return _write_corpus(tmp_path / "corpus.jsonl")


@pytest.fixture()
def call_tool():
    """create -> execute -> release, with the keyword arguments ToolAgentLoop._call_tool uses."""

    async def call(tool, arguments: dict):
        instance_id, _ = await tool.create(create_kwargs={})
        try:
            return await tool.execute(instance_id, arguments, agent_data=None)
        finally:
            await tool.release(instance_id)

    return call
