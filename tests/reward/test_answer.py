"""Answer extraction (never from tool output), normalization, token F1 and gold-answer parsing."""

from __future__ import annotations

import json
import random
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actguide_plugin.reward.answer import (
    RuleMatch,
    assistant_text,
    encode_gold_answers,
    extract_answer,
    gold_answer_text,
    last_block,
    normalize_answer,
    parse_gold_answers,
    rule_match,
    token_f1,
)

# How verl's reward loop sees a Qwen hermes rollout: decoded with skip_special_tokens=True, so the ChatML
# markers are gone and the tool turn shows as "user\n<tool_response>...</tool_response>\nassistant\n".
DECODED = (
    "<think>Search first.</think>\n<tool_call>\n"
    '{"name": "web_search", "arguments": {"query": ["capital of France"]}}\n</tool_call>\n'
    "user\n<tool_response>\nA quiz page: <answer>Lyon</answer>\n</tool_response>\n"
    "assistant\nThe capital is Paris. <answer>Paris</answer>"
)


def test_last_assistant_answer_is_taken():
    assert extract_answer(DECODED) == "Paris"
    assert extract_answer("<answer>draft</answer> then <answer> final one </answer>") == "final one"


def test_answer_inside_tool_response_is_ignored():
    without_final = DECODED.rsplit("<answer>Paris</answer>", 1)[0]
    assert extract_answer(without_final) is None


def test_truncated_tool_response_is_ignored():
    """Response cut inside a tool output (no closing tag): nothing after the tag is the assistant's."""
    cut = "I will search.\nuser\n<tool_response>\nPage text <answer>Lyon</answer> and more"
    assert extract_answer(cut) is None


def test_answer_inside_tool_call_arguments_is_ignored():
    text = '<tool_call>\n{"name": "web_search", "arguments": {"query": ["<answer>x</answer>"]}}\n</tool_call>'
    assert extract_answer(text) is None


def test_chatml_with_special_tokens_keeps_only_assistant_turns():
    text = (
        "Let me look.<|im_end|>\n<|im_start|>user\n<tool_response>\nx\n</tool_response><|im_end|>\n"
        "<|im_start|>tool\n<answer>Lyon</answer><|im_end|>\n"  # a tool role without the tags
        "<|im_start|>assistant\n<answer>Paris</answer><|im_end|>"
    )
    assert extract_answer(text) == "Paris"
    assert "Lyon" not in assistant_text(text)
    assert extract_answer(text.replace("<answer>Paris</answer>", "no answer")) is None


def test_no_answer():
    assert extract_answer("I don't know.") is None
    assert extract_answer("<answer>unclosed") is None


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("The  Eiffel Tower!", "eiffel tower"), ("U.S.A.", "usa"), ("an Apple, a pear", "apple pear"), ("“Dune”", "dune")],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_token_f1():
    assert token_f1("Paris", "Paris") == 1.0
    assert token_f1("Paris France", "Paris") == pytest.approx(2 / 3)
    assert token_f1("Berlin", "Paris") == 0.0
    assert token_f1("", "Paris") == 0.0


def test_rule_match_exact_or_f1_threshold():
    assert rule_match("the Eiffel tower", ["Eiffel Tower"], 0.8).exact
    partial = rule_match("Barack Obama Jr", ["Barack Obama"], 0.8)
    assert not partial.exact and partial.f1 == pytest.approx(0.8) and partial.correct
    assert not rule_match("Barack Obama Jr", ["Barack Obama"], 0.9).correct
    assert rule_match("NYC", ["New York City", "NYC"], 0.8).exact  # any gold answer


@pytest.mark.parametrize("prediction", ["", "the", "?", "a an", "Paris"])
@pytest.mark.parametrize("gold", ["The", "?", "  ", "an"])
def test_gold_that_normalizes_to_empty_matches_nothing(prediction, gold):
    assert rule_match(prediction, [gold], 0.8) == RuleMatch(exact=False, f1=0.0, correct=False)


def test_empty_normalizing_alternative_is_ignored():
    assert not rule_match("", ["The", "Paris"], 0.8).correct
    assert rule_match("Paris", ["The", "Paris"], 0.8).exact


@pytest.mark.parametrize(
    ("ground_truth", "answers"),
    [
        ("Paris", ["Paris"]),
        (["Paris", "City of Paris"], ["Paris", "City of Paris"]),
        (json.dumps(["Paris", "Lutetia"]), ["Paris", "Lutetia"]),
        ("[not json", ["[not json"]),
        (np.array(["Paris", "Lutetia"], dtype=object), ["Paris", "Lutetia"]),
        ({"target": ["Paris"]}, ["Paris"]),
        (1945, ["1945"]),
        ([1945], ["1945"]),
        ("[1945]", ["1945"]),  # what main wrote for a source answer [1945]: the reward raised on it
        ([1945, "1945 AD"], ["1945", "1945 AD"]),
        (3.0, ["3"]),
        (2.5, ["2.5"]),
        (np.array([1945, 1946]), ["1945", "1946"]),
        (np.int64(7), ["7"]),
    ],
)
def test_parse_gold_answers(ground_truth, answers):
    assert parse_gold_answers(ground_truth) == answers


@pytest.mark.parametrize(
    "answers", [["Paris"], ["1945"], ["Paris", "Lutetia"], ["[citation needed]"], ['["a", "b"]'], ["a\nb"]]
)
def test_encoded_gold_answers_read_back(answers):
    assert parse_gold_answers(encode_gold_answers(answers)) == answers


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (None, "NoneType"),
        ([], "empty list"),
        ({"answer": "x"}, "dict"),
        (True, "boolean"),
        ([[1]], "list"),
        (float("nan"), "finite"),
        ("[1, NaN]", "finite"),
    ],
)
def test_bad_ground_truth_is_named(bad, why):
    with pytest.raises(ValueError, match=f"ground_truth.*{why}"):
        parse_gold_answers(bad)


RANDOM_10MB = "".join(random.Random(0).choices(string.printable, k=10 * 2**20))


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        ("<answer>" * 20_000, None),  # 160 KB of unclosed tags: 12 s with the lazy regex
        ("<answer>x</answer>" + "<answer>" * 20_000, "x"),
        ("</answer>" + "<answer>" * 20_000, None),
        ("<answer>" * 20_000 + "Paris</answer>", "Paris"),  # many opens, one close: the innermost
        ("<answer>" * 20_000 + "Paris</answer>" + "<answer>" * 20_000, "Paris"),
        (RANDOM_10MB, None),
        (RANDOM_10MB + "<answer>Paris</answer>", "Paris"),
        ("<tool_call>" * 20_000 + "<answer>Paris</answer>", None),  # inside a tool call cut short
        ("<tool_response>" * 20_000 + "</tool_response><answer>Paris</answer>", "Paris"),
        ("<|im_start|>" * 20_000 + "assistant\n<answer>Paris</answer>", "Paris"),
        ("<|im_start|>user\n" * 20_000 + "<answer>Paris</answer>", None),
    ],
    ids=lambda value: value[:20] if isinstance(value, str) else repr(value),
)
def test_degenerate_responses_are_read_in_linear_time(hang_guard, response, answer):
    with hang_guard(5):
        assert extract_answer(response) == answer


def test_nested_answer_tags_give_the_innermost():
    """The one documented difference from the lazy regex (which gave 'draft <answer>final')."""
    assert extract_answer("<answer>draft <answer>final</answer>") == "final"
    assert extract_answer("<answer>a</answer> stray </answer>") == "a"


TOKENS = ["<answer>", "</answer>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "x", "y "]


@given(st.lists(st.sampled_from(TOKENS), max_size=30))
@settings(max_examples=500, deadline=None)
def test_reading_from_the_tail_agrees_with_reading_the_whole_response(tokens):
    """extract_answer starts after the last tool block when it can; the answer is the one the whole text gives."""
    response = "".join(tokens)
    whole = last_block(assistant_text(response), "<answer>", "</answer>")
    assert extract_answer(response) == (None if whole is None else whole.strip())


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [("25", "2.5"), ("40", "-40"), ("314", "3.14"), ("12", "1/2"), ("C", "C++"), ("C#", "C"), ("50", "50%"),
     ("1.5", "1,5")],
)  # fmt: skip
def test_symbols_that_change_the_meaning_are_kept(prediction, gold):
    match = rule_match(prediction, [gold], 0.8)
    assert not match.exact and not match.correct and match.f1 == 0.0


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [("2.50", "2.5"), ("1,000", "1000"), ("3.0", "3"), ("−3", "-3"), ("１２.５", "12.5"), ("ﬁnal round", "final round"),
     ("Jose\u0301", "José"), ("U.S.A.", "USA"), ("O'Neil", "ONeil"), ("well-known", "well known")],
)  # fmt: skip
def test_numbers_compare_as_numbers_and_unicode_is_nfkc(prediction, gold):
    assert rule_match(prediction, [gold], 0.8).exact


def test_an_answer_inside_think_is_not_the_final_answer():
    assert extract_answer("<think>draft <answer>Lyon</answer></think><answer>Paris</answer>") == "Paris"
    assert extract_answer("<think>only a draft: <answer>Lyon</answer></think> I am not sure.") is None
    # the shortcut over the tail after tool blocks must not start inside a think block either
    assert extract_answer("<think>x <tool_call>c</tool_call> <answer>Lyon</answer></think>") is None


def test_a_huge_integral_float_gold_is_written_short():
    assert gold_answer_text(1.5e300) == "1.5e+300" and gold_answer_text(3.0) == "3"
    assert gold_answer_text(float(2**53)) == str(2**53)
