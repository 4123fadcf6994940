"""Dataset rows as the recipe reads them (task id, actions, naming a bad row), and settling a generation call."""

import asyncio

import pytest

from actguide_plugin.core.search import settled
from actguide_plugin.verl_glue.rows import BadRowError, num_actions_of, row_name, task_id_of


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
