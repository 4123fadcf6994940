"""Training groups with no trajectory, through verl's real sync replay buffer, its refill and TransferQueue."""

from __future__ import annotations

import uuid

import pytest
import ray
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from tensordict import TensorDict
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

from actguide_plugin.verl_glue.empty_step import MAX_REFILLS, EmptyStepError, guard_refills
from actguide_plugin.verl_glue.state import state_actor

pytestmark = pytest.mark.integration


def replay_buffer(refill_fn, refill_failed: bool = True) -> ReplayBuffer:
    """verl's sync buffer as the trainer builds it (the recipe sets ``sync_refill_failed_groups``)."""
    return ReplayBuffer(
        trainer_mode="sync",
        trainer_config=OmegaConf.create({}),
        max_off_policy_threshold=None,
        max_off_policy_strategy="wait",
        sampler_kwargs=OmegaConf.create({}),
        poll_interval=0.01,
        refill_fn=refill_fn,
        train_batch_size=2,
        gen_batch_size=1 if refill_failed else 2,
        sync_refill_failed_groups=refill_failed,
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


def test_verl_alone_pads_a_step_whose_groups_all_failed_with_its_own_message(clean_partition):
    put_group("failure", 0)
    buffer = replay_buffer(refill_fn=None, refill_failed=False)  # verl's default
    with pytest.raises(RuntimeError, match=r"Enable trainer\.v1\.sampler\.sync_refill_failed_groups"):
        buffer.sample(global_steps=1, partition_id="train", batch_size=1)


def test_groups_with_no_trajectory_are_replaced_by_fresh_prompts(clean_partition, state):
    """A dropped and a failed group (the rollout marks both ``failure``); verl evicts them and refills two prompts."""
    empty = [put_group("failure", 0) for _ in range(2)]
    kept = put_group("finished", 2)
    refilled: list[str] = []
    buffer = replay_buffer(lambda count: refilled.extend(put_group("finished", 2) for _ in range(count)))
    guard_refills(buffer, state, current_step=lambda: 1, batch_size=3)
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=3)
    assert {key.split("_")[0] for key in batch.keys} == {kept, *refilled} and len(refilled) == 2
    assert metrics["training/rollout_failure/evicted_samples"] == 2
    assert not set(empty) & set(tq.kv_list("train").get("train", {}))  # the empty groups were cleared


def test_a_step_whose_rows_keep_failing_stops_naming_rows_and_causes(clean_partition, state):
    def refill(count: int) -> None:
        for _ in range(count):
            uid = put_group("failure", 0)
            row = f"data_source='hotpot' index=7 uid={uid}"
            ray.get(state.record_failure.remote({"uid": uid, "row": row, "kind": "bad_row", "cause": "ValueError: x"}))

    refill(2)
    buffer = replay_buffer(refill)
    guard_refills(buffer, state, current_step=lambda: 3, batch_size=2)
    with pytest.raises(EmptyStepError, match=r"training step 3 lost more than 6 groups.*bad data rows.*index=7.*x"):
        buffer.sample(global_steps=3, partition_id="train", batch_size=2)


def test_a_step_that_stays_empty_stops_with_advice(clean_partition, state):
    put_group("failure", 0)
    refills: list[str] = []
    buffer = replay_buffer(lambda count: refills.extend(put_group("failure", 0) for _ in range(count)))
    guard_refills(buffer, state, current_step=lambda: 1, batch_size=1)
    with pytest.raises(EmptyStepError, match="on_full_failure=unguided or keep"):
        buffer.sample(global_steps=1, partition_id="train", batch_size=1)
    assert len(refills) == MAX_REFILLS


def test_the_bound_is_per_training_step(clean_partition, state):
    step = {"now": 1}
    buffer = replay_buffer(lambda count: [put_group("finished", 1) for _ in range(count)])
    guard_refills(buffer, state, current_step=lambda: step["now"], batch_size=1)
    for now in range(1, 2 * MAX_REFILLS + 1):  # one refill per step, more steps than the bound
        step["now"] = now
        put_group("failure", 0)
        batch, _ = buffer.sample(global_steps=now, partition_id="train", batch_size=1)
        tq.kv_clear(keys=[*batch.keys, *{k.split("_")[0] for k in batch.keys}], partition_id="train")
