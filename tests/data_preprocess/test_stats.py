"""``inspect``: counts, tools, prompt token lengths and rows that overflow with full guidance."""

from __future__ import annotations

import json

import pytest

from actguide_plugin.core.actions import Action
from data_preprocess.cli import main
from data_preprocess.formats import ParsedTask
from data_preprocess.output import StagedOutputs, TaskRecord, build_splits, rows_table
from data_preprocess.stats import inspect_parquet, prompt_tokens

TOOLS = ("web_search", "web_visit")


@pytest.fixture
def parquet(tmp_path):
    long_plan = tuple(Action("web_search", {"query": [f"question number {i}"]}) for i in range(12))
    tasks = [
        TaskRecord(ParsedTask("short?", "alpha", (Action("web_visit", {"url": ["u"]}),), "t0"), "t0", "s"),
        TaskRecord(ParsedTask("long plan?", "b", long_plan, "t1"), "t1", "s"),
        TaskRecord(ParsedTask("two?", "c", long_plan[:2], "t2"), "t2", "s"),
    ]
    rows = build_splits(tasks, val_ratio=0.0, seed=0, system_prompt="sys", tools=TOOLS)["train"]
    with StagedOutputs(tmp_path) as out:
        out.parquet("train.parquet", rows_table(rows, TOOLS))
        out.commit()
    return tmp_path / "train.parquet"


def test_counts_without_tokenizer(parquet):
    report = inspect_parquet(parquet)
    assert report["rows"] == 3
    assert report["actions_per_row"] == {"1": 1, "2": 1, "12": 1}
    assert report["tool_calls"] == {"web_search": 14, "web_visit": 1}
    assert report["splits"] == {"train": 3}
    assert "prompt_tokens" not in report


def test_token_lengths_and_overflow(parquet, byte_tokenizer):
    report = inspect_parquet(parquet, byte_tokenizer, max_prompt_length=400)
    prompts = [[{"role": "system", "content": "sys"}, {"role": "user", "content": q}] for q in ("short?", "long plan?")]
    assert report["prompt_tokens"]["max"] == prompt_tokens(byte_tokenizer, prompts[1]) < 400
    assert report["prompt_tokens"]["min"] < report["full_guidance_prompt_tokens"]["min"]
    assert report["full_guidance_prompt_tokens"]["max"] > 400
    assert report["overflow_unguided"] == 0
    assert [r["task_id"] for r in report["overflow_rows"]] == ["t1"]
    assert report["overflow_with_full_guidance"] == 1


def test_cli_text_and_json(parquet, capsys):
    assert main(["inspect", str(parquet)]) == 0
    text = capsys.readouterr().out
    assert "rows: 3" in text and "web_search" in text and "   12 |" in text
    assert main(["inspect", str(parquet), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tool_calls"] == {"web_search": 14, "web_visit": 1}


def test_cli_with_a_saved_tokenizer(parquet, byte_tokenizer, tmp_path, capsys):
    byte_tokenizer.save_pretrained(tmp_path / "tok")
    assert main(["inspect", str(parquet), "--tokenizer", str(tmp_path / "tok"), "--max-prompt-length", "400"]) == 0
    text = capsys.readouterr().out
    assert "rows over max_prompt_length=400: 1 with full guidance, 0 unguided" in text
    assert "index 1 (task t1)" in text


def test_max_prompt_length_needs_a_tokenizer(parquet, capsys):
    with pytest.raises(SystemExit) as info:
        main(["inspect", str(parquet), "--max-prompt-length", "10"])
    assert info.value.code == 2
    assert "--max-prompt-length needs --tokenizer" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("table", "missing"),
    [
        ({"question": ["q"], "answer": ["a"]}, "no data_source, prompt, extra_info column"),
        ({"data_source": ["s"], "prompt": ["p"], "extra_info": [{"index": 0}]}, "no extra_info.split, "),
    ],
)
def test_inspect_of_a_foreign_parquet_is_one_clear_line(tmp_path, capsys, table, missing):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.table(table), path)
    assert main(["inspect", str(path)]) == 1
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith(f"error: {path}: not an actguide-preprocess dataset: {missing}")
    assert "Traceback" not in captured.err and captured.out == ""


def test_inspect_of_a_file_that_is_not_parquet(tmp_path, capsys):
    path = tmp_path / "x.parquet"
    path.write_text("not parquet")
    assert main(["inspect", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {path}: cannot read parquet: ")
