import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actguide_plugin.core.actions import (
    REFERENCE_ACTIONS_KEY,
    Action,
    ActionFormatError,
    dumps_actions,
    loads_actions,
    row_actions,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
actions = st.builds(
    Action,
    name=st.text(min_size=1, max_size=12).filter(str.strip),
    arguments=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)


@given(st.lists(actions, max_size=6))
def test_dumps_loads_round_trip(items):
    assert loads_actions(dumps_actions(items)) == items


def test_arguments_may_be_json_string_or_missing():
    assert Action.from_dict({"name": "web_search", "arguments": '{"query": ["北京"]}'}).arguments == {"query": ["北京"]}
    assert Action.from_dict({"name": "web_search"}).arguments == {}
    assert Action.from_dict({"name": "web_search", "arguments": ""}).arguments == {}


def test_unicode_kept_readable_in_encoding():
    encoded = dumps_actions([Action("web_search", {"query": ["Zürich café"]})])
    assert "Zürich café" in encoded
    assert json.loads(encoded) == [{"name": "web_search", "arguments": {"query": ["Zürich café"]}}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('[{"arguments": {}}]', "no 'name'"),
        ('[{"name": "x", "arguments": "{bad"}]', "not valid JSON"),
        ('[{"name": "x", "arguments": [1, 2]}]', "must be a JSON object"),
        ('{"name": "x"}', "must be a list"),
        ("not json", "not valid JSON"),
        ('[{"name": "  ", "arguments": {}}]', "non-empty string"),
    ],
)
def test_bad_reference_actions_are_rejected_with_reason(value, message):
    with pytest.raises(ActionFormatError, match=message):
        loads_actions(value)


def test_empty_values_decode_to_no_actions():
    assert loads_actions(None) == []
    assert loads_actions("") == []
    assert loads_actions("[]") == []


@pytest.mark.parametrize("arguments_as", ["json", "struct"])
def test_numpy_array_from_a_parquet_round_trip_is_accepted(tmp_path, arguments_as):
    """pandas reads a parquet list column back as a numpy array (nested lists too); it decodes like a list."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    plan = [Action("web_search", {"query": ["Zugspitze", "höhe"]}), Action("web_search", {"query": ["x"]})]
    stored = [
        {"name": a.name, "arguments": json.dumps(a.arguments) if arguments_as == "json" else a.arguments} for a in plan
    ]
    pq.write_table(pa.Table.from_pylist([{"extra_info": {"reference_actions": stored}}]), tmp_path / "t.parquet")
    value = pq.read_table(tmp_path / "t.parquet").to_pandas()["extra_info"][0]["reference_actions"]
    assert type(value).__name__ == "ndarray"
    assert loads_actions(value) == plan


@pytest.mark.parametrize("bad", [{"name": "x"}, 3, "{}"])
def test_reference_actions_that_are_not_a_list_are_named(bad):
    with pytest.raises(ActionFormatError, match="must be a list of actions"):
        loads_actions(bad)


def test_row_actions_reads_the_rows_extra_info_and_tolerates_rows_without_any():
    actions = [Action("search", {"query": "q"})]
    row = {"extra_info": {REFERENCE_ACTIONS_KEY: dumps_actions(actions)}}
    assert row_actions(row) == actions
    assert row_actions({"extra_info": None}) == row_actions({}) == []
    with pytest.raises(ActionFormatError):
        row_actions({"extra_info": {REFERENCE_ACTIONS_KEY: "{"}})
