"""Output rows, the seeded split and staged (atomic) writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from actguide_plugin.core.actions import Action, loads_actions
from actguide_plugin.names import AGENT_NAME
from data_preprocess.formats import ParsedTask
from data_preprocess.output import (
    StagedOutputs,
    StagingDirectory,
    TaskRecord,
    build_splits,
    load_system_prompt,
    rows_table,
    validation_ids,
)

TOOLS = ("web_search", "web_visit")
TASK = ParsedTask(
    question="Wie hoch ist die Zugspitze? 🏔",
    answer=[2962, "2962 m"],
    actions=(Action("web_search", {"query": ["Zugspitze"]}), Action("web_visit", {"url": ["u"], "goal": "Höhe"})),
    task_id="z1",
)


def _splits(tasks, val_ratio=0.0, seed=0):
    records = [TaskRecord(t, t.task_id, "src") for t in tasks]
    return build_splits(records, val_ratio=val_ratio, seed=seed, system_prompt="SYS", tools=TOOLS)


def test_row_schema_round_trips_through_parquet(tmp_path):
    rows = _splits([TASK])["train"]
    with StagedOutputs(tmp_path) as out:
        out.parquet("train.parquet", rows_table(rows, TOOLS))
        out.commit()
    table = pq.read_table(tmp_path / "train.parquet")
    assert table.column_names == ["data_source", "agent_name", "prompt", "ability", "reward_model", "extra_info"]
    (row,) = table.to_pylist()
    assert row == rows[0]
    assert row["agent_name"] == AGENT_NAME
    assert row["prompt"] == [{"role": "system", "content": "SYS"}, {"role": "user", "content": TASK.question}]
    assert row["reward_model"] == {"style": "rule", "ground_truth": '["2962", "2962 m"]'}
    info = row["extra_info"]
    assert list(info) == [
        "index", "split", "task_id", "question", "answer", "reference_actions", "num_reference_actions",
        "tools_kwargs",
    ]  # fmt: skip
    assert loads_actions(info["reference_actions"]) == list(TASK.actions)
    assert info["num_reference_actions"] == 2
    assert info["tools_kwargs"] == {t: {"create_kwargs": {"task_id": "z1"}} for t in TOOLS}


def test_val_rows_carry_no_reference_actions_and_index_counts_per_split():
    tasks = [ParsedTask(f"q{i}", "ans", TASK.actions, f"id{i}") for i in range(10)]
    splits = _splits(tasks, val_ratio=0.3)
    assert (len(splits["train"]), len(splits["val"])) == (7, 3)
    for split, rows in splits.items():
        assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows)))
        assert {r["extra_info"]["split"] for r in rows} == {split}
    assert all(r["extra_info"]["reference_actions"] == "[]" for r in splits["val"])
    assert all(r["extra_info"]["num_reference_actions"] == 0 for r in splits["val"])


def test_validation_ids_are_seeded_and_independent_of_order():
    ids = [f"task-{i}" for i in range(200)]
    val = validation_ids(ids, 0.1, seed=3)
    assert len(val) == 20
    assert validation_ids(list(reversed(ids)), 0.1, seed=3) == val
    assert validation_ids(ids, 0.1, seed=4) != val


@pytest.mark.parametrize(("n", "ratio", "expected"), [(1, 0.5, 0), (2, 0.01, 1), (3, 0.99, 2), (10, 0.0, 0)])
def test_validation_ids_keep_both_sides_non_empty(n, ratio, expected):
    assert len(validation_ids([str(i) for i in range(n)], ratio, seed=0)) == expected


def test_validation_ratio_range():
    with pytest.raises(ValueError, match=r"--val-ratio must be in \[0, 1\)"):
        validation_ids(["a"], 1.0, seed=0)


def test_same_rows_give_byte_identical_parquet(tmp_path):
    tasks = [ParsedTask(f"q{i} ü", "ans", TASK.actions, f"id{i}") for i in range(50)]
    blobs = []
    for attempt in range(2):
        with StagedOutputs(tmp_path / str(attempt)) as out:
            out.parquet("train.parquet", rows_table(_splits(tasks)["train"], TOOLS))
            out.commit()
        blobs.append((tmp_path / str(attempt) / "train.parquet").read_bytes())
    assert blobs[0] == blobs[1]


def test_staged_outputs_replace_nothing_when_a_write_fails(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"old")

    def explode():
        yield {"ok": 1}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"), StagedOutputs(tmp_path) as out:
        out.json("stats.json", {"a": 1})
        out.jsonl("rejects.jsonl", explode())
        out.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.parquet"]
    assert (tmp_path / "train.parquet").read_bytes() == b"old"


def test_staged_outputs_commit_replaces_targets_and_removes_stale_ones(tmp_path):
    (tmp_path / "stats.json").write_text("old")
    (tmp_path / "val.parquet").write_text("stale")
    with StagedOutputs(tmp_path) as out:
        out.json("stats.json", {"ü": 1})
        out.jsonl("rows.jsonl", [{"b": 1, "a": 2}])
        out.remove("val.parquet")
        out.remove("never-existed.jsonl")
        assert (tmp_path / "val.parquet").exists()
        written = out.commit()
    assert [p.name for p in written] == ["stats.json", "rows.jsonl"]
    assert (tmp_path / "stats.json").read_text(encoding="utf-8") == '{\n  "ü": 1\n}\n'
    assert (tmp_path / "rows.jsonl").read_text(encoding="utf-8") == '{"b": 1, "a": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl", "stats.json"]


def test_system_prompt_template(tmp_path):
    default = load_system_prompt(None, TOOLS)
    assert "web_search, web_visit" in default and "<answer>" in default and "{tools}" not in default
    custom = tmp_path / "sys.txt"
    custom.write_text("  Tools: {tools}.\n", encoding="utf-8")
    assert load_system_prompt(custom, ("a", "b")) == "Tools: a, b."


OWNED = ("train.parquet", "val.parquet", "stats.json")


def _staged(directory, files: dict[str, str]):
    with StagingDirectory(directory, OWNED) as staging:
        for name, text in files.items():
            (staging.path / name).write_text(text)
        assert staging.path.parent == directory.resolve().parent and staging.path.name.startswith(".out.staging-")
        return staging.commit()


def _contents(directory):
    return {p.name: p.read_text() for p in directory.iterdir()}


def test_staging_directory_creates_the_output_set_by_one_rename(tmp_path):
    written = _staged(tmp_path / "out", {"train.parquet": "new", "stats.json": "{}"})
    assert sorted(p.name for p in written) == ["stats.json", "train.parquet"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["stats.json", "train.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old directory left


def test_staging_directory_swaps_a_whole_previous_set(tmp_path):
    _staged(tmp_path / "out", {"train.parquet": "old", "val.parquet": "old", "stats.json": "old"})
    _staged(tmp_path / "out", {"train.parquet": "new", "stats.json": "new"})
    assert {p.name: p.read_text() for p in (tmp_path / "out").iterdir()} == {
        "train.parquet": "new",
        "stats.json": "new",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staging_directory_keeps_files_it_does_not_own(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "input.jsonl").write_text("mine")
    (tmp_path / "out" / "val.parquet").write_text("stale")
    _staged(tmp_path / "out", {"train.parquet": "new"})
    assert {p.name: p.read_text() for p in (tmp_path / "out").iterdir()} == {
        "input.jsonl": "mine",
        "train.parquet": "new",
    }


def test_staging_directory_is_removed_on_error_and_old_set_kept(tmp_path):
    _staged(tmp_path / "out", {"train.parquet": "old"})
    with pytest.raises(RuntimeError, match="disk full"), StagingDirectory(tmp_path / "out", OWNED) as staging:
        (staging.path / "train.parquet").write_text("half")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "train.parquet").read_text() == "old"


def test_stale_staging_of_a_dead_process_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.staging-{dead.stdout.strip()}-x1"
    stale.mkdir()
    (stale / "train.parquet").write_text("half")
    alive = tmp_path / f".out.staging-{os.getpid()}-x2"  # a concurrent run: left alone
    alive.mkdir()
    (tmp_path / "out").mkdir()
    legacy = tmp_path / "out" / ".train.parquet.abc123.tmp"  # what file-by-file staging left when killed
    legacy.write_text("half")
    with StagingDirectory(tmp_path / "out", OWNED) as staging:
        assert staging.stale_removed == [stale, legacy]
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "out"]


def test_staging_directory_never_swaps_the_working_directory(tmp_path, monkeypatch):
    _staged(tmp_path / "out", {"train.parquet": "old"})
    monkeypatch.chdir(tmp_path / "out")
    _staged(Path("."), {"train.parquet": "new"})
    assert Path.cwd().exists() and Path("train.parquet").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staging_directory_restores_the_sigterm_handler(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with StagingDirectory(tmp_path / "out", OWNED):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
