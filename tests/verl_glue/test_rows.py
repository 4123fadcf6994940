"""Dataset rows as the recipe reads them (task id, actions, naming a bad row), and settling a generation call."""

import asyncio

import pytest

from actguide_plugin.core.search import settled
from actguide_plugin.verl_glue.rows import BadRowError, check_train_files, num_actions_of, row_name, task_id_of


def row(**extra_info):
    return {"uid": "u1", "data_source": "hotpot", "extra_info": extra_info}


def test_row_name_names_source_index_and_uid():
    assert row_name(row(index=7)) == "data_source='hotpot' index=7 uid=u1"


def test_row_without_task_id_or_index_is_a_bad_row_named_in_the_error():
    with pytest.raises(BadRowError, match=r"data_source='hotpot' uid=u1.*task_id or extra_info.index"):
        task_id_of(row())


def test_unparseable_actions_are_a_bad_row():
    with pytest.raises(BadRowError, match=r"index=3.*reference_actions"):
        num_actions_of(row(index=3, reference_actions="[{not json"))


def test_actions_are_counted_and_a_row_without_actions_has_none():
    assert num_actions_of(row(index=1, reference_actions='[{"name": "web_search", "arguments": {}}]')) == 1
    assert num_actions_of(row(index=1)) == 0


def test_settled_waits_for_every_rollout_before_raising():
    finished = []

    async def ok(i):
        await asyncio.sleep(0.02)
        finished.append(i)
        return i

    async def broken():
        raise ValueError("reward worker died")

    with pytest.raises(ValueError, match="reward worker died"):
        asyncio.run(settled([ok(0), broken(), ok(2)]))
    assert sorted(finished) == [0, 2]
    assert asyncio.run(settled([ok(5), ok(6)])) == [5, 6]


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


ACTION = '[{"name":"search","arguments":{"query_list":["x"]}}]'


def test_train_rows_for_another_agent_loop_are_named_with_the_fix(tmp_path):
    rows = [{"agent_name": "tool_agent", "extra_info": {"index": i, "reference_actions": ACTION}} for i in range(3)]
    with pytest.raises(BadRowError) as info:
        check_train_files([_parquet(tmp_path / "train.parquet", rows)])
    message = str(info.value)
    assert "3 of 3 rows have agent_name ['tool_agent'] instead of 'actguide_tool_agent'" in message
    assert "actguide-preprocess attach" in message and "\n" not in message


def test_a_dataset_without_any_reference_actions_is_refused(tmp_path):
    rows = [{"agent_name": "actguide_tool_agent", "extra_info": {"index": 0, "reference_actions": "[]"}}]
    with pytest.raises(BadRowError, match=r"no row of data\.train_files .* has extra_info\.reference_actions"):
        check_train_files(_parquet(tmp_path / "a.parquet", rows))
    with pytest.raises(BadRowError, match=r"no row of data\.train_files"):  # no such field at all
        check_train_files(_parquet(tmp_path / "b.parquet", [{"agent_name": "actguide_tool_agent", "x": 1}]))


def test_usable_train_files_pass_and_remote_ones_are_left_to_verl(tmp_path):
    rows = [
        {"agent_name": "actguide_tool_agent", "extra_info": {"index": 0, "reference_actions": "[]"}},
        {"agent_name": None, "extra_info": {"index": 1, "reference_actions": ACTION}},  # None: the config's default
    ]
    check_train_files([_parquet(tmp_path / "train.parquet", rows), "hdfs://cluster/train.parquet"])
    check_train_files(["hdfs://cluster/train.parquet"])
