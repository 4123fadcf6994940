"""Atomic outputs: a file or folder is the old one or the new one, never half; staged files appear together."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from actguide_plugin.outputs import StagedOutputs, atomic_dir, atomic_file


def test_text_and_binary_files_appear_only_on_commit(tmp_path):
    with StagedOutputs(tmp_path / "out") as out:
        out.text("eval.md", "| a |\n")
        out.stage("plot.png", lambda tmp: tmp.write_bytes(b"\x89PNG"))
        out.json("sub/eval.json", {"x": 1})
        assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["sub"]
        out.commit()
    assert (tmp_path / "out" / "eval.md").read_text() == "| a |\n"
    assert (tmp_path / "out" / "plot.png").read_bytes() == b"\x89PNG"
    assert (tmp_path / "out" / "sub" / "eval.json").read_text() == '{\n  "x": 1\n}\n'
    assert not [p for p in (tmp_path / "out").rglob(".*.tmp")]


def test_a_failing_plot_leaves_the_previous_results(tmp_path):
    (tmp_path / "eval.md").write_text("old")

    def fail(tmp):
        raise RuntimeError("plot failed")

    with pytest.raises(RuntimeError, match="plot failed"), StagedOutputs(tmp_path) as out:
        out.text("eval.md", "new")
        out.stage("plot.png", fail)
        out.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.md"]
    assert (tmp_path / "eval.md").read_text() == "old"


def test_atomic_file_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "sub" / "cache.json"
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        tmp.write_text("one")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError, match="crash"), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "one"
    assert sorted(p.name for p in target.parent.iterdir()) == ["cache.json"]


def test_atomic_dir_swaps_a_whole_folder_and_keeps_the_old_one_on_error(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["a"] and (target / "a").read_text() == "2"
    assert target.stat().st_mode & 0o777 != 0o700  # not mkdtemp's private mode
    with pytest.raises(RuntimeError, match="crash"), atomic_dir(target) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("crash")
    assert (target / "a").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_without_replace_keeps_a_folder_that_another_process_finished_first(tmp_path):
    target = tmp_path / "index"
    with pytest.raises(OSError), atomic_dir(target, replace=False) as tmp:
        (tmp / "ours").write_text("ours")
        target.mkdir()
        (target / "theirs").write_text("theirs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    assert sorted(p.name for p in target.iterdir()) == ["theirs"]


def test_a_swap_that_fails_halfway_puts_the_previous_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a").write_text("old")
    rename = os.rename

    def refuse_the_new_folder(source, destination):
        if Path(destination) == target and Path(source).name.startswith(".model.") and "old-" not in Path(source).name:
            raise OSError("disk gone")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", refuse_the_new_folder)
    with pytest.raises(OSError, match="disk gone"), atomic_dir(target) as tmp:
        (tmp / "a").write_text("new")
    assert (target / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
