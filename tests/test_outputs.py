"""Staged outputs: text and binary files appear together on commit, or not at all."""

from __future__ import annotations

import pytest

from actguide_plugin.outputs import StagedOutputs


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
