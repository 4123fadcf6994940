"""Each input format round-trips: actions written in that format by the test come back unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actguide_plugin.core.actions import Action
from data_preprocess.formats import (
    FORMATS,
    FanOutQAFormat,
    FieldMap,
    answer_text,
    detect_format,
    extract_final_answer,
    wikipedia_url,
)
from data_preprocess.records import RecordError

sys.path.insert(0, str(Path(__file__).parent))
from preprocess_samples import (
    ACTIONS,
    FANOUT,
    actions_record,
    hermes_record,
    openai_record,
    react_record,
)

FIELDS = FieldMap()

# --- round trips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_string", [True, False])
def test_openai_round_trip_with_multiple_calls_per_turn(as_string):
    task = FORMATS["openai"].parse(openai_record([list(ACTIONS[:2]), [ACTIONS[2]]], as_string=as_string), FIELDS)
    assert task.actions == ACTIONS
    assert (task.question, task.answer, task.task_id, task.final_answer) == (
        "How high is the Zugspitze?",
        "2962 m",
        "q1",
        "2962 m",
    )


def test_hermes_round_trip_with_multiple_calls_per_turn():
    task = FORMATS["hermes"].parse(hermes_record([list(ACTIONS[:2]), [ACTIONS[2]]]), FIELDS)
    assert task.actions == ACTIONS
    assert task.final_answer == "2962 m"


def test_hermes_accepts_sharegpt_turns_and_parameters_key():
    record = {
        "question": "q?",
        "answer": "a",
        "conversations": [
            {"from": "human", "value": "q?"},
            {"from": "gpt", "value": '<tool_call>{"name": "web_search", "parameters": {"query": ["ü"]}}</tool_call>'},
        ],
    }
    task = FORMATS["hermes"].parse(record, FieldMap(messages="conversations"))
    assert task.actions == (Action("web_search", {"query": ["ü"]}),)


def test_react_round_trip_with_multiline_json_input():
    task = FORMATS["react"].parse(react_record([list(ACTIONS[:2]), [ACTIONS[2]]]), FIELDS)
    assert task.actions == ACTIONS
    assert task.final_answer == "2962 m"


def test_react_reads_a_whole_transcript_string():
    transcript = (
        'Thought: search.\nAction: web_search\nAction Input: {"query": ["a"]}\nObservation: Action: fake\n'
        "Final Answer: b"
    )
    record = {"question": "q", "answer": "b", "messages": transcript}
    task = FORMATS["react"].parse(record, FIELDS)
    assert task.actions == (Action("web_search", {"query": ["a"]}),)
    assert task.final_answer == "b"


@pytest.mark.parametrize("as_string", [True, False])
def test_actions_round_trip(as_string):
    task = FORMATS["actions"].parse(actions_record(list(ACTIONS), as_string=as_string), FIELDS)
    assert task.actions == ACTIONS
    assert task.task_id == "7"


def test_fanoutqa_follows_dependency_order_and_nested_nodes():
    task = FanOutQAFormat().parse(FANOUT, FIELDS)
    assert task.actions == (
        Action("web_search", {"query": ["Tour Eiffel ?"]}),
        Action("web_visit", {"url": ["https://en.wikipedia.org/wiki/Eiffel_Tower"]}),
        Action("web_search", {"query": ["Who designed the Parthenon?"]}),
        Action("web_visit", {"url": ["https://en.wikipedia.org/wiki/Parthenon"]}),
        Action("web_search", {"query": ["Who is Jørn Utzon?"]}),
        Action("web_visit", {"url": ["https://en.wikipedia.org/wiki/Jørn_Utzon"]}),
    )
    assert task.answer == task.final_answer == "Parthenon: Ictinus; Eiffel Tower: Gustave Eiffel"


@pytest.mark.parametrize(
    ("answer", "prose"),
    [(["442241", 2102650], "442241, 2102650"), (3, "3"), ({"a": ["x", "y"], "b": 1.5}, "a: x, y; b: 1.5")],
)
def test_fanoutqa_answers_become_prose(answer, prose):
    assert FanOutQAFormat().parse({**FANOUT, "answer": answer}, FIELDS).answer == prose


def test_fanoutqa_rejects_cycles_and_unknown_dependencies():
    cyclic = {**FANOUT, "decomposition": [{**FANOUT["decomposition"][0], "depends_on": ["b"]}]}
    with pytest.raises(RecordError, match="circular depends_on"):
        FanOutQAFormat().parse(cyclic, FIELDS)
    dangling = {**FANOUT, "decomposition": [{**FANOUT["decomposition"][2], "depends_on": ["zz"]}]}
    with pytest.raises(RecordError, match=r"unknown sub-question id\(s\) \['zz'\]"):
        FanOutQAFormat().parse(dangling, FIELDS)


def test_wikipedia_url_is_canonical():
    assert wikipedia_url(" Jeff Austin (baseball) ") == "https://en.wikipedia.org/wiki/Jeff_Austin_(baseball)"


# --- malformed input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "record", "match"),
    [
        ("openai", openai_record([]), "no actions"),
        ("hermes", hermes_record([]), "no actions"),
        ("react", react_record([]), "no actions"),
        ("actions", actions_record([]), "no actions"),
        ("fanoutqa", {**FANOUT, "decomposition": []}, "no actions"),
        ("openai", {**openai_record([[ACTIONS[0]]]), "answer": ""}, r"missing answer \(field 'answer'\)"),
        ("actions", {"answer": "a", "actions": []}, r"missing question \(field 'question'\)"),
        ("hermes", {"question": "q", "answer": "a"}, r"missing messages"),
    ],
)
def test_empty_or_incomplete_records_are_rejected(fmt, record, match):
    with pytest.raises(RecordError, match=match):
        FORMATS[fmt].parse(record, FIELDS)


def test_openai_malformed_arguments_name_the_message_and_call():
    record = openai_record([list(ACTIONS[:2])])
    record["messages"][2]["tool_calls"][1]["function"]["arguments"] = '{"url": ["x"'
    with pytest.raises(RecordError, match=r"unparseable tool call \(message 2, tool call 1\): .*not valid JSON"):
        FORMATS["openai"].parse(record, FIELDS)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('<tool_call>{"name": "web_search", "arguments": {"query": ["a"]}</tool_call>', "invalid JSON"),
        ('<tool_call>{"name": "web_search", "arguments": {}}', "unterminated <tool_call>"),
        ('<tool_call><tool_call>{"name": "web_search"}</tool_call></tool_call>', "unterminated <tool_call>"),
        ('</tool_call><tool_call>{"name": "x", "arguments": {}}</tool_call><tool_call>', "unterminated <tool_call>"),
        ('<tool_call>{"arguments": {}}</tool_call>', "action name must be a non-empty string"),
        ('<tool_call>["web_search"]</tool_call>', "expected an object"),
        ('<tool_call>{"name": "web_search", "arguments": "[1]"}</tool_call>', "must be a JSON object"),
    ],
)
def test_hermes_malformed_tool_calls(content, match):
    record = {"question": "q", "answer": "a", "messages": [{"role": "assistant", "content": content}]}
    with pytest.raises(RecordError, match=r"unparseable tool call \(message 0.*" + match):
        FORMATS["hermes"].parse(record, FIELDS)


def test_react_action_without_input_or_with_bad_json():
    base = {"question": "q", "answer": "a"}
    with pytest.raises(RecordError, match="has no 'Action Input:' line"):
        FORMATS["react"].parse({**base, "messages": "Action: web_search\nObservation: x"}, FIELDS)
    with pytest.raises(RecordError, match="Action Input is not valid JSON"):
        FORMATS["react"].parse({**base, "messages": "Action: web_search\nAction Input: {query: 1}"}, FIELDS)


# --- detection and helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (openai_record([[ACTIONS[0]]]), "openai"),
        (hermes_record([[ACTIONS[0]]]), "hermes"),
        (react_record([[ACTIONS[0]]]), "react"),
        (actions_record([ACTIONS[0]]), "actions"),
        (FANOUT, "fanoutqa"),
    ],
)
def test_detect_format(record, expected):
    assert detect_format([{"question": "no trajectory here"}, record], FIELDS) == expected


def test_detect_format_gives_none_for_unknown_shapes():
    assert detect_format([{"question": "q", "answer": "a"}, "not an object"], FIELDS) is None


def test_question_falls_back_to_first_user_message():
    record = hermes_record([[ACTIONS[0]]])
    del record["question"]
    assert FORMATS["hermes"].parse(record, FIELDS).question == "How high is the Zugspitze?"


def test_dotted_fields_reach_nested_values():
    record = {**actions_record([ACTIONS[0]]), "reward_model": {"ground_truth": ["2962", "2962 m"]}}
    task = FORMATS["actions"].parse(record, FieldMap(answer="reward_model.ground_truth"))
    assert task.answer == ["2962", "2962 m"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>a</answer> then <answer> b </answer>", "b"),
        ("Thought: ok\nFinal Answer: Paris\n", "Paris"),
        ("<think>hmm</think> Paris ", "Paris"),
        ("<think>hmm</think>", None),
    ],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>" * 20_000, "<answer>" * 20_000),  # no closed tag, no Final Answer: the text itself
        ("<think>" * 20_000 + "<answer>x</answer>", "x"),
        ("<think>" * 20_000 + "Paris", "<think>" * 20_000 + "Paris"),
        ("\n" * 100_000 + "Paris", "Paris"),  # ^\s*Final Answer rescanned the blank run from every line
        ("\n" * 100_000 + "Final Answer: Paris", "Paris"),
    ],
    ids=["unclosed-answers", "unclosed-think-then-answer", "unclosed-thinks", "blank-lines", "blank-final"],
)
def test_extract_final_answer_on_degenerate_text(hang_guard, text, expected):
    with hang_guard(5):
        assert extract_final_answer(text) == expected


@pytest.mark.parametrize(
    ("fmt", "content", "match"),
    [
        ("hermes", "<tool_call>" * 20_000, "unterminated <tool_call>"),
        ("hermes", "<tool_call>{}</tool_call>" + "<tool_call>" * 20_000, "unterminated <tool_call>"),
        ("hermes", "<tool_call>x" + " " * 100_000 + "y</tool_call>", "invalid JSON"),  # \s*```$ from every space
        ("react", "Action: a" + " " * 100_000 + "b", "has no 'Action Input:' line"),  # (.*?)\s*$ likewise
    ],
    ids=["unclosed-calls", "closed-then-unclosed", "spaces-in-call", "react-spaces"],
)
def test_degenerate_tool_calls_are_rejected_in_linear_time(hang_guard, fmt, content, match):
    record = {"question": "q", "answer": "ans", "messages": [{"role": "assistant", "content": content}]}
    with hang_guard(5), pytest.raises(RecordError, match=match):
        FORMATS[fmt].parse(record, FIELDS)


# --- property: arbitrary unicode names and nested JSON arguments survive every message format -----------------

# Text without the hermes tags: a value holding "<tool_call>" makes our parser see a nested, unterminated block
# (hypothesis draws the module's own string constants); noted as an open question, not covered here.
_text = st.text(max_size=12).filter(lambda text: "tool_call>" not in text)
_json_leaf = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | _text
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_action = st.builds(
    Action,
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,15}", fullmatch=True),
    arguments=st.dictionaries(_text.filter(bool), _json, max_size=4),
)
_turns = st.lists(st.lists(_action, min_size=1, max_size=3), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=_turns)
def test_message_formats_round_trip_any_actions(turns):
    expected = tuple(a for turn in turns for a in turn)
    for name, encode in (("openai", openai_record), ("hermes", hermes_record), ("react", react_record)):
        assert FORMATS[name].parse(encode(turns), FIELDS).actions == expected, name


gold_values = st.recursive(
    st.text(max_size=12) | st.integers() | st.floats() | st.booleans() | st.none(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["target", "x"]), children),
    max_leaves=6,
)


@given(gold_values, st.text(max_size=12))
@settings(max_examples=300, deadline=None)
def test_any_gold_answer_is_rejected_or_scored_without_error(gold, prediction):
    """What answer_text writes, the reward reads back as the same answers and scores without raising."""
    import asyncio

    from actguide_plugin.reward import compute_score
    from actguide_plugin.reward.answer import parse_gold_answers

    try:
        written = answer_text(gold)
    except RecordError:
        return
    answers = parse_gold_answers(written)
    assert answer_text(written) == written  # idempotent: convert writes what it would write again
    assert all(isinstance(a, str) and a == a.strip() for a in answers)
    result = asyncio.run(compute_score("d", f"<answer>{prediction}</answer>", written, {}))
    assert result["score"] in (0.0, 1.0)
    if "<" not in answers[-1]:  # a gold that holds tags cannot be written between answer tags verbatim
        right = asyncio.run(compute_score("d", f"<answer>{answers[-1]}</answer>", written, {}))
        assert right["score"] == 1.0
