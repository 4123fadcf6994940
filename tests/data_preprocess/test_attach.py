"""``actguide-preprocess attach``: a verl user's own rows keep every field; only reference actions are added."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actguide_plugin.names import AGENT_NAME
from actguide_plugin.verl_glue.rows import actions_of, task_id_of
from data_preprocess.attach import normalize_key
from data_preprocess.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from preprocess_samples import search_r1_rows, search_r1_tool_yaml

QUESTIONS = ["Who founded Tarnfield Rowing Club?", "Where is Mount Obel?", "When did the Vask bridge open?"]


def trace(question: str, queries: list[str], answer: str = "gold 0", final: str | None = None) -> dict:
    """An ``actions``-format trace in our own tool names, as convert's users have them."""
    record = {"question": question, "answer": answer, "actions": [
        {"name": "web_search", "arguments": {"query": q}} for q in queries
    ]}  # fmt: skip
    if final is not None:
        record["final_answer"] = final
    return record


@pytest.fixture
def user_setup(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(search_r1_rows(QUESTIONS)), data)
    tools = tmp_path / "search_tool_config.yaml"
    tools.write_text(search_r1_tool_yaml(), encoding="utf-8")
    return {"data": data, "tools": tools, "traces": tmp_path / "traces.jsonl", "out": tmp_path / "out"}


def write_traces(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def run_attach(setup: dict[str, Path], *extra: str) -> int:
    return main([
        "attach", str(setup["data"]), "--actions", str(setup["traces"]), "-o", str(setup["out"]),
        "--tool-config", str(setup["tools"]), "--tool-map", "web_search=search",
        "--arg-map", "search.query=query_list", *extra,
    ])  # fmt: skip


def test_rows_keep_every_field_and_get_actions_in_the_users_tool_schema(user_setup, capsys):
    write_traces(user_setup["traces"], [
        trace("Who founded  Tarnfield Rowing\u00a0Club?", ["Tarnfield Rowing Club", "founder of Tarnfield"]),
        trace(QUESTIONS[2], ["Vask bridge"], answer="gold 2", final="gold 2"),
    ])  # fmt: skip
    assert run_attach(user_setup, "--pick", "first") == 0
    before = pq.read_table(user_setup["data"])
    after = pq.read_table(user_setup["out"] / "train.parquet")
    assert after.column_names == before.column_names  # agent_name replaced in place, no column added or lost
    for name in before.column_names:
        if name not in ("agent_name", "extra_info"):
            assert after.column(name).equals(before.column(name)), name
    old_info, new_info = before.column("extra_info").combine_chunks(), after.column("extra_info").combine_chunks()
    for child in old_info.type:
        assert new_info.field(child.name).equals(old_info.field(child.name)), child.name
    assert {f.name for f in new_info.type} - {f.name for f in old_info.type} == {
        "reference_actions", "num_reference_actions"
    }  # the rows have an index, so no task_id is added  # fmt: skip
    rows = after.to_pylist()
    assert [row["agent_name"] for row in rows] == [AGENT_NAME] * 3
    first = actions_of(rows[0])
    assert [(a.name, a.arguments) for a in first] == [
        ("search", {"query_list": ["Tarnfield Rowing Club"]}), ("search", {"query_list": ["founder of Tarnfield"]})
    ]  # fmt: skip
    assert actions_of(rows[1]) == []  # no trace: kept, never guided
    assert rows[0]["reward_model"]["ground_truth"] == {"target": ["gold 0", "alt 0"]}  # structure kept
    assert task_id_of(rows[1]) == "searchR1_nq/1"
    out = capsys.readouterr().out
    assert "rows 3: matched 2, unmatched 1 (no trace: 1, kept without actions)" in out
    stats = json.loads((user_setup["out"] / "attach_stats.json").read_text())
    assert stats["matched"] == 2 and stats["unmatched"]["no trace"] == 1


def test_a_call_that_does_not_fit_the_users_schema_is_a_counted_reject(user_setup, capsys):
    write_traces(user_setup["traces"], [
        trace(QUESTIONS[0], ["a"]),
        {**trace(QUESTIONS[1], ["b"]), "actions": [{"name": "web_search", "arguments": {"query": "b", "top_k": 3}}]},
        {**trace(QUESTIONS[2], ["c"]), "actions": [{"name": "web_visit", "arguments": {"url": "http://x"}}]},
    ])  # fmt: skip
    assert run_attach(user_setup, "--pick", "first") == 0
    captured = capsys.readouterr()
    assert "traces: accepted 1, rejected 2 (schema mismatch: 1, unknown tool: 1)" in captured.out
    assert "has argument 'top_k', not a parameter of the tool (query_list" in captured.err
    rejects = [json.loads(line) for line in (user_setup["out"] / "rejects.jsonl").read_text().splitlines()]
    assert [r["location"] for r in rejects] == ["line 2", "line 3"]
    rows = pq.read_table(user_setup["out"] / "train.parquet").to_pylist()
    assert [len(actions_of(row)) for row in rows] == [1, 0, 0]


def test_on_error_fail_writes_nothing_when_a_trace_is_rejected(user_setup, capsys):
    write_traces(user_setup["traces"], [trace(QUESTIONS[0], ["a"]), {"question": QUESTIONS[1], "answer": "x"}])
    assert run_attach(user_setup, "--on-error", "fail", "--format", "actions", "--pick", "first") == 1
    assert "1 trace(s) rejected (--on-error fail); nothing written" in capsys.readouterr().err
    assert not user_setup["out"].exists()


def test_pick_shortest_correct_checks_the_answer_against_the_rows_own_ground_truth(user_setup):
    write_traces(user_setup["traces"], [
        trace(QUESTIONS[0], ["a"], final="wrong"),  # shortest, but wrong
        trace(QUESTIONS[0], ["b", "c", "d"], final="Alt 0"),  # correct under the row's gold {"target": [.., "alt 0"]}
        trace(QUESTIONS[0], ["e", "f"], answer="nope", final="gold 0."),  # correct for the row; its own gold is ignored
        trace(QUESTIONS[1], ["g"]),  # no final answer: never "correct"
    ])  # fmt: skip
    assert run_attach(user_setup) == 0
    rows = pq.read_table(user_setup["out"] / "train.parquet").to_pylist()
    assert [a.arguments["query_list"][0] for a in actions_of(rows[0])] == ["e", "f"]
    assert actions_of(rows[1]) == []
    stats = json.loads((user_setup["out"] / "attach_stats.json").read_text())
    assert stats["unmatched"] == {"no key": 0, "no trace": 1, "no correct trace": 1}
    assert stats["ambiguous"] == 1


def test_drop_unmatched_and_join_on_an_id_path(user_setup):
    rows = search_r1_rows(QUESTIONS)
    for i, row in enumerate(rows):
        row["extra_info"]["id"] = f"q-{i}"
    pq.write_table(pa.Table.from_pylist(rows), user_setup["data"])
    write_traces(user_setup["traces"], [{**trace("anything", ["x"]), "id": "q-2"}])
    assert run_attach(user_setup, "--key", "extra_info.id", "--drop-unmatched", "--pick", "first") == 0
    kept = pq.read_table(user_setup["out"] / "train.parquet").to_pylist()
    assert [row["extra_info"]["id"] for row in kept] == ["q-2"]


def test_rows_without_an_id_get_a_stable_task_id(user_setup):
    rows = search_r1_rows(QUESTIONS)
    for row in rows:
        del row["extra_info"]["index"]
    pq.write_table(pa.Table.from_pylist(rows), user_setup["data"])
    write_traces(user_setup["traces"], [trace(QUESTIONS[0], ["x"])])
    assert run_attach(user_setup, "--pick", "first") == 0
    first = pq.read_table(user_setup["out"] / "train.parquet").to_pylist()
    ids = [task_id_of(row) for row in first]
    assert len(set(ids)) == 3
    assert run_attach(user_setup, "--pick", "first") == 0  # again, over its own output: same ids
    assert [task_id_of(row) for row in pq.read_table(user_setup["out"] / "train.parquet").to_pylist()] == ids


def test_nothing_matched_is_exit_1_and_the_previous_output_survives(user_setup, capsys):
    write_traces(user_setup["traces"], [trace(QUESTIONS[0], ["x"])])
    assert run_attach(user_setup, "--pick", "first") == 0
    previous = (user_setup["out"] / "train.parquet").read_bytes()
    write_traces(user_setup["traces"], [trace("a question no row has", ["x"])])
    assert run_attach(user_setup, "--pick", "first") == 1
    assert "no row matched a trace; nothing written" in capsys.readouterr().err
    assert (user_setup["out"] / "train.parquet").read_bytes() == previous


def test_a_tool_map_target_outside_the_tool_config_is_named(user_setup, capsys):
    write_traces(user_setup["traces"], [trace(QUESTIONS[0], ["x"])])
    setup = {**user_setup}
    code = main(["attach", str(setup["data"]), "--actions", str(setup["traces"]), "-o", str(setup["out"]),
                 "--tool-config", str(setup["tools"]), "--tool-map", "web_search=find"])  # fmt: skip
    assert code == 1
    assert "--tool-map targets find are not tools of" in capsys.readouterr().err


def test_extra_info_that_is_not_a_struct_is_named(user_setup, capsys):
    pq.write_table(pa.table({"prompt": ["x"], "extra_info": ['{"index": 0}']}), user_setup["data"])
    write_traces(user_setup["traces"], [trace(QUESTIONS[0], ["x"])])
    assert run_attach(user_setup) == 1
    assert "column extra_info must be a struct" in capsys.readouterr().err


def test_join_keys_are_normalized_for_unicode_and_whitespace():
    assert normalize_key("  Who\u00a0founded\n Ｔarnfield? ") == "Who founded Tarnfield?"
    assert normalize_key(12) == "12"
    assert normalize_key("   ") is None and normalize_key(True) is None
