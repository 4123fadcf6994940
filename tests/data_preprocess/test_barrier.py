"""``build-barrier``: the barrier world as rows in our schema, every plan checked against the real search index."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from actguide_plugin.barrier.world import DATA_SOURCE, build_world
from actguide_plugin.core.actions import loads_actions
from actguide_plugin.tools.backends import LocalBackend
from actguide_plugin.tools.config import LocalBackendConfig
from data_preprocess.barrier import BarrierWorldError, check_reference_plans
from data_preprocess.cli import main

OUTPUTS = ("train.parquet", "val.parquet", "corpus.jsonl", "stats.json")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("barrier")
    assert main(["build-barrier", "-o", str(out), "--seed", "5", "--train", "30", "--val", "8"]) == 0
    return out


def test_writes_rows_in_our_schema_with_plans_for_train_only(world_dir):
    train = pq.read_table(world_dir / "train.parquet").to_pylist()
    val = pq.read_table(world_dir / "val.parquet").to_pylist()
    assert (len(train), len(val)) == (30, 8)
    world = build_world(5, 30, 8)
    for row, task in zip(train, world.train, strict=True):
        assert row["data_source"] == DATA_SOURCE and row["agent_name"] == "actguide_tool_agent"
        assert row["prompt"][-1]["content"] == task.question
        assert row["reward_model"]["ground_truth"] == task.code
        assert loads_actions(row["extra_info"]["reference_actions"]) == list(task.actions)
        assert 2 <= row["extra_info"]["num_reference_actions"] <= 3  # the default: 2-3 hops
    assert all(row["extra_info"]["num_reference_actions"] == 0 for row in val)


async def test_the_written_plans_solve_the_tasks_with_the_real_local_backend(world_dir):
    backend = LocalBackend(LocalBackendConfig(name="local", corpus_path=str(world_dir / "corpus.jsonl")))
    for row in pq.read_table(world_dir / "train.parquet").to_pylist():
        actions = loads_actions(row["extra_info"]["reference_actions"])
        hits = [(await backend.search(action.arguments["query"], 1))[0][0] for action in actions]
        assert [hit.title for hit in hits] == [action.arguments["query"][0] for action in actions]
        assert hits[-1].snippet.endswith(f"has code {row['reward_model']['ground_truth']}.")


def test_same_seed_gives_byte_identical_files(world_dir, tmp_path):
    assert main(["build-barrier", "-o", str(tmp_path), "--seed", "5", "--train", "30", "--val", "8"]) == 0
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == (world_dir / name).read_bytes(), name
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["seed"] == 5 and stats["corpus_documents"] == len((tmp_path / "corpus.jsonl").read_text().splitlines())


def test_a_plan_that_misses_its_page_is_refused_before_writing():
    world = build_world(0, 4, 2)
    corpus = world.corpus()
    victim = world.train[1].chain[1]
    corpus = [doc for doc in corpus if doc["title"] != victim]
    with pytest.raises(BarrierWorldError, match=rf"task train-0001: web_search '{victim}' finds"):
        check_reference_plans(world, corpus)


def test_bad_sizes_are_refused_and_nothing_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["build-barrier", "-o", str(tmp_path / "a"), "--train", "0"])
    assert main(["build-barrier", "-o", str(tmp_path / "b"), "--val", "500"]) == 1
    assert "the val partition has" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
