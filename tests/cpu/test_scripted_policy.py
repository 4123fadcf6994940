"""The scripted stand-in policy: level detection and level-dependent answers."""

from __future__ import annotations

import json

import pytest

from actguide_plugin.core.actions import Action, row_actions
from actguide_plugin.core.guidance import DEFAULT_TEMPLATE
from actguide_plugin.cpu.scripted_policy import (
    CORPUS_FILE,
    SCRIPTED_PLAN,
    WRONG_ANSWER,
    ScriptedTask,
    level_from_prompt,
    parse_task,
    scripted_record,
    scripted_response,
    task_marker,
    write_scripted_inputs,
)

ACTIONS = [Action("web_search", {"query": ["a"]}), Action("web_visit", {"url": ["b"]}), Action("web_search", {})]
PLAN = DEFAULT_TEMPLATE.render(ACTIONS)  # the plan exactly as guidance G_3 appends it


def _prompt(user: str, tool_result: bool) -> str:
    text = f"<|im_start|>system\ntools<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
    if tool_result:
        text += "<|im_start|>assistant\n<tool_call>\n{}\n</tool_call><|im_end|>\n"
        text += '<|im_start|>user\n<tool_response>\n1. web_search: {"x": 1}\n</tool_response><|im_end|>\n'
    return text + "<|im_start|>assistant\n"


@pytest.mark.parametrize(("plan_lines", "level"), [(0, 0), (1, 1), (2, 2), (3, 3)])
def test_level_counts_consecutive_plan_lines_of_the_question_turn(plan_lines, level):
    plan = DEFAULT_TEMPLATE.render(ACTIONS[:plan_lines]) if plan_lines else ""
    # A numbered line inside a tool response must not count as guidance.
    assert level_from_prompt(_prompt("Q?" + plan, tool_result=True)) == level


def test_first_turn_is_a_tool_call_then_answer_depends_on_level():
    question = f"Who? {task_marker(2, 'Ada')}"
    first = scripted_response(_prompt(question, tool_result=False))
    call = json.loads(first.split("<tool_call>\n")[1].split("\n</tool_call>")[0])
    assert call == {"name": "web_search", "arguments": {"query": ["Who?"]}}
    assert scripted_response(_prompt(question + PLAN, tool_result=True)) == "<answer>Ada</answer><|im_end|>"
    low = DEFAULT_TEMPLATE.render(ACTIONS[:1])  # level 1
    assert scripted_response(_prompt(question + low, tool_result=True)) == f"<answer>{WRONG_ANSWER}</answer><|im_end|>"
    assert scripted_response(_prompt(question, tool_result=True), level_fn=lambda _: 5).startswith("<answer>Ada")


def test_marker_is_required_and_validated():
    assert parse_task(_prompt(task_marker(0, "x y"), False)).answer == "x y"
    with pytest.raises(ValueError, match="marker"):
        scripted_response(_prompt("no marker", False))
    with pytest.raises(ValueError):
        task_marker(1, "bad]answer")


def test_every_makes_only_every_eth_answer_to_a_prompt_correct():
    prompt = _prompt(f"Who? {task_marker(1, 'Ada', every=2)}" + PLAN, tool_result=True)
    answers = [scripted_response(prompt, call_index=i) for i in range(4)]
    assert answers == ["<answer>Ada</answer><|im_end|>", f"<answer>{WRONG_ANSWER}</answer><|im_end|>"] * 2
    low = _prompt(f"Who? {task_marker(2, 'Ada', every=2)}" + DEFAULT_TEMPLATE.render(ACTIONS[:1]), tool_result=True)
    assert scripted_response(low, call_index=0) == f"<answer>{WRONG_ANSWER}</answer><|im_end|>"
    assert parse_task(prompt).every == 2 and parse_task(_prompt(task_marker(0, "x"), False)).every == 1


def _with_calls(user: str, calls: list[dict]) -> str:
    """A prompt after the given tool calls, each followed by its tool response."""
    text = f"<|im_start|>system\ntools<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
    for call in calls:
        text += f"<|im_start|>assistant\n<tool_call>\n{json.dumps(call)}\n</tool_call><|im_end|>\n"
        text += "<|im_start|>user\n<tool_response>\npage\n</tool_response><|im_end|>\n"
    return text + "<|im_start|>assistant\n"


def _call_of(response: str) -> dict:
    return json.loads(response.split("<tool_call>\n")[1].split("\n</tool_call>")[0])


def test_calls_sets_how_many_searches_come_before_the_answer():
    question = f"Who? {task_marker(0, 'Ada', calls=2)}"
    search = {"name": "web_search", "arguments": {"query": ["Who?"]}}
    assert _call_of(scripted_response(_with_calls(question, []))) == search
    assert _call_of(scripted_response(_with_calls(question, [search]))) == search
    assert scripted_response(_with_calls(question, [search, search])) == "<answer>Ada</answer><|im_end|>"
    assert scripted_response(_with_calls(f"Who? {task_marker(0, 'Ada', calls=0)}", [])).startswith("<answer>Ada")
    assert parse_task(task_marker(1, "x", calls=0)).calls == 0 and parse_task(task_marker(1, "x")).calls == 1


def test_a_follow_task_executes_its_plan_and_needs_k_reference_actions_in_the_trajectory():
    marker = task_marker(2, "Ada", calls=0, follow=True)
    guided = f"Who? {marker}" + DEFAULT_TEMPLATE.render(ACTIONS)  # level 3
    executed = []
    for action in ACTIONS:  # the plan, action by action, with the exact reference arguments
        call = _call_of(scripted_response(_with_calls(guided, executed)))
        assert call == action.to_dict()
        executed.append(call)
    assert scripted_response(_with_calls(guided, executed)) == "<answer>Ada</answer><|im_end|>"
    # continued without the plan from a state holding j executed reference actions: right iff j >= 2
    unguided = f"Who? {marker}"
    answers = [scripted_response(_with_calls(unguided, executed[:j])) for j in range(4)]
    assert answers == [f"<answer>{WRONG_ANSWER}</answer><|im_end|>"] * 2 + ["<answer>Ada</answer><|im_end|>"] * 2
    assert parse_task(marker).follow and not parse_task(task_marker(2, "Ada")).follow


def test_scripted_inputs_convert_into_rows_with_the_plan_and_the_marker(tmp_path):
    import pyarrow.parquet as pq

    from data_preprocess.cli import main as preprocess

    question = f"Who? {task_marker(2, 'Ada', follow=True)}"
    corpus = [{"id": "1", "title": "Ada", "url": "https://a.example/Ada", "text": "Ada wrote it."}]
    records = write_scripted_inputs(tmp_path, [scripted_record("t-1", question, "Ada")], corpus)
    assert [json.loads(line)["id"] for line in (tmp_path / CORPUS_FILE).read_text().splitlines()] == ["1"]
    argv = ["convert", str(records), "-o", str(tmp_path / "data"), "--format", "actions", "--val-ratio", "0"]
    assert preprocess(argv) == 0
    (row,) = pq.read_table(tmp_path / "data" / "train.parquet").to_pylist()
    assert row_actions(row) == list(SCRIPTED_PLAN)
    assert parse_task(row["prompt"][-1]["content"]) == ScriptedTask(2, "Ada", follow=True)
