"""Reference actions checked against a verl tool yaml read as data (``attach --tool-config``)."""

from __future__ import annotations

import pytest

from actguide_plugin.core.actions import Action
from data_preprocess.records import InputFileError, RecordError
from data_preprocess.tool_schema import load_tool_schemas

TOOLS = """\
tools:
  - class_name: not.importable.Tool
    config: {}
    tool_schema:
      type: function
      function:
        name: search
        parameters:
          type: object
          properties:
            query_list: {type: array, item: {type: string}}
            topk: {type: integer}
            mode: {}
          required: [query_list]
"""


@pytest.fixture
def search(tmp_path):
    path = tmp_path / "tools.yaml"
    path.write_text(TOOLS, encoding="utf-8")
    return load_tool_schemas(path)["search"]


def test_a_fitting_call_passes_and_a_string_becomes_the_declared_list(search):
    fitted = search.fit(Action("search", {"query_list": "x", "topk": 3, "mode": {"any": 1}}), 0)
    assert fitted.arguments == {"query_list": ["x"], "topk": 3, "mode": {"any": 1}}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"query": ["x"]}, "has argument 'query', not a parameter of the tool (query_list, topk, mode"),
        ({"topk": 1}, "lacks required query_list"),
        ({"query_list": ["x"], "topk": "3"}, "argument 'topk' must be integer, got str"),
        ({"query_list": ["x"], "topk": True}, "argument 'topk' must be integer, got bool"),
        ({"query_list": ["x", 2]}, "argument 'query_list' item 1 must be string, got int"),
    ],
)
def test_a_call_that_does_not_fit_names_the_action_and_argument(search, arguments, message):
    with pytest.raises(RecordError, match=r"^schema mismatch: search action 4 ") as info:
        search.fit(Action("search", arguments), 4)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tools: [", "not valid YAML"),
        ("other: 1", "needs a non-empty 'tools:' list"),
        ("tools:\n  - class_name: x\n    tool_schema: {function: {}}", r"tools\[0\] has no tool_schema.function.name"),
    ],
)
def test_a_bad_tool_config_is_named(tmp_path, text, message):
    path = tmp_path / "tools.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputFileError, match=message):
        load_tool_schemas(path)
    with pytest.raises(InputFileError, match="no such tool config"):
        load_tool_schemas(tmp_path / "absent.yaml")
