"""Tool renaming, argument dropping, the agent's tool set, list-shaped arguments and the answer check."""

from __future__ import annotations

import pytest

from actguide_plugin.core.actions import Action
from data_preprocess.postprocess import (
    ActionPolicy,
    answer_matches,
    parse_arg_map,
    parse_drop_args,
    parse_tool_map,
)
from data_preprocess.records import RecordError

ASEARCHER_STYLE = (
    Action("search", {"query": "Zugspitze Höhe"}),
    Action("visit", {"url": "https://de.wikipedia.org/wiki/Zugspitze", "goal": "Höhe"}),
    Action("python", {"code": "print(1)"}),
)


def test_map_drop_and_filter():
    policy = ActionPolicy(
        tool_map=parse_tool_map(["search=web_search,visit=web_visit"]),
        drop_args=parse_drop_args(["visit.goal"]),
        unknown_tool="drop",
    )
    assert policy.apply(ASEARCHER_STYLE) == (
        Action("web_search", {"query": ["Zugspitze Höhe"]}),
        Action("web_visit", {"url": ["https://de.wikipedia.org/wiki/Zugspitze"]}),
    )


def test_drop_arg_matches_mapped_name_and_wildcard():
    actions = (Action("visit", {"url": ["u"], "goal": "g", "t": 1}),)
    by_target = ActionPolicy(tool_map={"visit": "web_visit"}, drop_args=[("web_visit", "goal"), ("*", "t")])
    assert by_target.apply(actions) == (Action("web_visit", {"url": ["u"]}),)


def test_unknown_tool_rejected_by_default_with_a_hint():
    with pytest.raises(RecordError, match=r"unknown tool: 'search' in action 0 .*--tool-map"):
        ActionPolicy().apply(ASEARCHER_STYLE)


def test_no_actions_left():
    with pytest.raises(RecordError, match="no actions left"):
        ActionPolicy(unknown_tool="drop").apply((Action("python", {"code": "1"}),))


@pytest.mark.parametrize("query", [None, "", [], [""], [1], {"q": "x"}])
def test_search_query_must_be_strings(query):
    with pytest.raises(RecordError, match="unparseable tool call: web_search action 0 needs 'query'"):
        ActionPolicy().apply((Action("web_search", {"query": query}),))


def test_custom_tool_set_keeps_other_tools_untouched():
    policy = ActionPolicy(tools=("python", "web_search"))
    assert policy.apply((Action("python", {"code": "x"}), Action("web_search", {"query": "a"}))) == (
        Action("python", {"code": "x"}),
        Action("web_search", {"query": ["a"]}),
    )


def test_arg_map_renames_by_source_or_mapped_tool_name_after_drops():
    policy = ActionPolicy(
        tools=("search",), tool_map={"web_search": "search"}, drop_args=[("*", "top_k")],
        arg_map=parse_arg_map(["search.query=query_list", "web_search.top_k=k"]), list_arguments={},
    )  # fmt: skip
    assert policy.apply((Action("web_search", {"query": "a", "top_k": 3}),)) == (
        Action("search", {"query_list": "a"}),
    )  # top_k was dropped before it could be renamed; list shape left to the user's schema


@pytest.mark.parametrize("spec", ["search.query", "search.=x", "search.query=", "query=x"])
def test_bad_arg_map(spec):
    with pytest.raises(ValueError, match=r"tool\.(source=target|argument)"):
        parse_arg_map([spec])


@pytest.mark.parametrize("spec", ["search", "=web", "search="])
def test_bad_tool_map(spec):
    with pytest.raises(ValueError, match="source=target"):
        parse_tool_map([spec])


@pytest.mark.parametrize("spec", ["visit", ".goal", "visit."])
def test_bad_drop_arg(spec):
    with pytest.raises(ValueError, match=r"tool\.argument"):
        parse_drop_args([spec])


def test_policy_validates_itself():
    with pytest.raises(ValueError, match="unknown_tool must be one of"):
        ActionPolicy(unknown_tool="ignore")
    with pytest.raises(ValueError, match="at least one tool"):
        ActionPolicy(tools=())


def test_answer_matching():
    assert answer_matches("the Eiffel Tower.", "Eiffel Tower")
    assert not answer_matches("Eiffel", "Eiffel Tower")
    assert answer_matches("2962 m", ["2,962 m", "2962 m"])
    assert answer_matches("Paris", '["Lyon", "Paris"]')
    assert answer_matches("3", "3")
