"""``inspect``: counts, tools, prompt token lengths and rows that overflow with full guidance."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import recipe.actguide as recipe_root
from actguide_plugin.core.actions import Action, loads_actions
from actguide_plugin.core.guidance import guided_messages
from data_preprocess.cli import main
from data_preprocess.formats import ParsedTask
from data_preprocess.output import StagedOutputs, TaskRecord, build_splits, rows_table
from data_preprocess.stats import inspect_parquet, prompt_tokens, tool_schemas

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
    assert main(["inspect", str(parquet), "--tokenizer", str(tmp_path / "tok"), "--max-prompt-length", "1200"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("file: ")
    assert "rows over max_prompt_length=1200: 1 with full guidance (k = L), 0 unguided" in text
    assert "tool schemas: web_search, web_visit" in text  # the recipe's tool config, by default
    assert "  full guidance (k = L): min=" in text and ", p95=" in text
    assert "index 1 (task t1)" in text


@pytest.mark.parametrize("flag", [["--max-prompt-length", "10"], ["--tool-config", "x.yaml"]])
def test_token_flags_need_a_tokenizer(parquet, capsys, flag):
    with pytest.raises(SystemExit) as info:
        main(["inspect", str(parquet), *flag])
    assert info.value.code == 2
    assert f"{flag[0]} needs --tokenizer" in capsys.readouterr().err


def test_guided_prompt_length_at_L_is_rendered_with_the_tool_schemas(parquet, byte_tokenizer):
    """What the agent loop renders at k = L (chat template + the recipe's tool schemas) sizes max_prompt_length."""
    schemas = tool_schemas(Path(recipe_root.__file__).parent / "config/tools/search_local.yaml")
    assert [s["function"]["name"] for s in schemas] == ["web_search", "web_visit"]
    report = inspect_parquet(parquet, byte_tokenizer, max_prompt_length=1200, tools=schemas)
    at_level_l = []
    for row in pq.read_table(parquet).to_pylist():
        actions = loads_actions(row["extra_info"]["reference_actions"])
        text = byte_tokenizer.apply_chat_template(
            guided_messages(row["prompt"], actions, len(actions)), tools=schemas, add_generation_prompt=True,
            tokenize=False,
        )  # fmt: skip
        assert json.dumps(schemas[0]) in text and actions[-1].compact_arguments() in text
        at_level_l.append(len(byte_tokenizer(text, add_special_tokens=False)["input_ids"]))
    assert report["full_guidance_prompt_tokens"]["max"] == max(at_level_l)
    assert report["full_guidance_prompt_tokens"]["p95"] == sorted(at_level_l)[-1]  # 3 rows: p95 is the max
    assert report["overflow_with_full_guidance"] == sum(n > 1200 for n in at_level_l) == 1
    bare = inspect_parquet(parquet, byte_tokenizer, max_prompt_length=1200)
    assert bare["full_guidance_prompt_tokens"]["max"] < report["full_guidance_prompt_tokens"]["max"]


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
