"""A training step whose groups produced no trajectory, through verl's real sync replay buffer and TransferQueue."""

from __future__ import annotations

import uuid

import pytest
import ray
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from tensordict import TensorDict
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

from actguide_plugin.verl_glue.empty_step import MAX_REFILLS, EmptyStepError, guard_empty_steps
from actguide_plugin.verl_glue.state import state_actor

pytestmark = pytest.mark.integration


def replay_buffer() -> ReplayBuffer:
    return ReplayBuffer(
        trainer_mode="sync",
        trainer_config=OmegaConf.create({}),
        max_off_policy_threshold=None,
        max_off_policy_strategy="wait",
        sampler_kwargs=OmegaConf.create({}),
        poll_interval=0.01,
    )


def put_group(status: str, trajectories: int) -> str:
    """A terminal prompt as the rollout worker leaves it: its status, and its trajectories (if any)."""
    uid = uuid.uuid4().hex
    for session in range(trajectories):
        fields = TensorDict({"rm_scores": torch.zeros(1, 1)}, batch_size=[1])
        tq.kv_batch_put(keys=[f"{uid}_{session}_0"], partition_id="train", fields=fields, tags=[{}])
    tq.kv_put(key=uid, partition_id="train", tag={"is_prompt": True, "status": status, "global_steps": 1})
    return uid


@pytest.fixture(scope="module")
def state(ray_and_tq):
    return state_actor()  # held for the module: the actor lives while a handle does


@pytest.fixture()
def clean_partition(state):
    yield
    keys = list((tq.kv_list("train") or {}).get("train", {}))
    if keys:
        tq.kv_clear(keys=keys, partition_id="train")
    ray.get(state.pop_failures.remote())


def test_verl_alone_fails_with_its_replay_buffer_message(clean_partition):
    put_group("finished", 0)
    with pytest.raises(RuntimeError, match="no materializable trajectories"):
        replay_buffer().sample(global_steps=1, partition_id="train", batch_size=1)


def test_every_group_failed_names_rows_and_causes(clean_partition, state):
    failed = [put_group("failure", 0) for _ in range(2)]
    for i, uid in enumerate(failed):
        row = f"data_source='hotpot' index={i} uid={uid}"
        ray.get(state.record_failure.remote({"uid": uid, "row": row, "kind": "bad_row", "cause": "ValueError: x"}))
    buffer = replay_buffer()
    guard_empty_steps(buffer, state, refill=lambda: pytest.fail("failed groups must not be refilled"))
    with pytest.raises(EmptyStepError, match=r"2 of 2 groups failed \(2 bad data rows\).*index=0.*ValueError: x"):
        buffer.sample(global_steps=3, partition_id="train", batch_size=2)


def test_every_group_dropped_refills_the_step_with_fresh_prompts(clean_partition, state):
    dropped = [put_group("finished", 0) for _ in range(2)]
    refilled: list[str] = []
    buffer = replay_buffer()
    guard_empty_steps(buffer, state, refill=lambda: refilled.extend(put_group("finished", 2) for _ in range(2)))
    batch, _ = buffer.sample(global_steps=1, partition_id="train", batch_size=2)
    assert {key.split("_")[0] for key in batch.keys} == set(refilled) and len(batch.keys) == 4  # 2 groups of 2
    assert not set(dropped) & set(tq.kv_list("train").get("train", {}))  # the dropped groups were cleared


def test_a_step_that_stays_empty_stops_with_advice(clean_partition, state):
    put_group("finished", 0)
    buffer = replay_buffer()
    refills = []
    guard_empty_steps(buffer, state, refill=lambda: refills.append(put_group("finished", 0)))
    with pytest.raises(EmptyStepError, match="on_full_failure=unguided or keep"):
        buffer.sample(global_steps=1, partition_id="train", batch_size=1)
    assert len(refills) == MAX_REFILLS
