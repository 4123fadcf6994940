"""The classic trainer's data plane (``trainer.use_v1=false``): guided rows on verl 0.9.1's padded ``DataProto``.

Rows are built as verl's ``AgentLoopWorker._postprocess`` builds them (prompt left-padded, response right-padded,
``extra_fields`` as object columns); the swapped batch goes through verl's own ``to_tensordict`` and
``left_right_2_no_padding``, as ``RayPPOTrainer`` ships it to the actor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from verl.protocol import DataProto
from verl.utils.model import compute_position_id_with_mask
from verl.workers.utils.padding import left_right_2_no_padding

from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD, NUM_ACTIONS_FIELD, UNGUIDED_PROMPT_IDS_FIELD
from actguide_plugin.verl_glue.config import ActGuideConfig
from actguide_plugin.verl_glue.prompt_swap import swap_to_unguided_padded
from actguide_plugin.verl_glue.rollout_v0 import (
    FAILED_GROUPS_KEY,
    SESSION_FIELD,
    VAL_PADDING_FIELD,
    assemble_groups,
    group_bounds,
    mark_validation_rows,
    placeholders,
    split_groups,
)
from actguide_plugin.verl_glue.trainer_common import rebound
from actguide_plugin.verl_glue.trainer_v0 import move_row_fields

PAD, WIDTH, RESPONSE = 0, 6, 4
UNGUIDED = [5, 6]
PLAN = [40, 41, 42]


def padded_batch(levels: list[int], responses: list[list[int]]) -> DataProto:
    """One row per trajectory, sampled on the guided prompt (unguided + plan) when its level is > 0."""
    prompts, resp, masks = [], [], []
    for level, response in zip(levels, responses, strict=True):
        prompt = UNGUIDED + (PLAN if level else [])
        prompts.append([PAD] * (WIDTH - len(prompt)) + prompt)
        resp.append(response + [PAD] * (RESPONSE - len(response)))
        masks.append(
            [0] * (WIDTH - len(prompt)) + [1] * len(prompt) + [1] * len(response) + [0] * (RESPONSE - len(response))
        )
    attention_mask = torch.tensor(masks)
    prompts_t, responses_t = torch.tensor(prompts), torch.tensor(resp)
    batch = TensorDict(
        {
            "prompts": prompts_t,
            "responses": responses_t,
            "input_ids": torch.cat([prompts_t, responses_t], dim=1),
            "attention_mask": attention_mask,
            "position_ids": compute_position_id_with_mask(attention_mask),
            "response_mask": attention_mask[:, WIDTH:].clone(),
        },
        batch_size=len(levels),
    )
    columns = {
        IS_GUIDED_FIELD: [float(level > 0) for level in levels],
        LEVEL_FIELD: levels,
        NUM_ACTIONS_FIELD: [3] * len(levels),
        UNGUIDED_PROMPT_IDS_FIELD: [list(UNGUIDED) for _ in levels],
        "uid": ["a"] * len(levels),
    }
    non_tensor = {}
    for key, values in columns.items():
        column = np.empty(len(levels), dtype=object)
        column[:] = values
        non_tensor[key] = column
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


def test_the_padded_swap_splices_the_unchanged_response_after_the_left_padded_unguided_prompt():
    data = padded_batch([2, 0], [[10, 11], [12, 13, 14]])
    before = data.batch.clone()
    swap_to_unguided_padded(data.batch, [0], [UNGUIDED], PAD)
    assert data.batch["prompts"][0].tolist() == [PAD] * 4 + UNGUIDED
    assert data.batch["input_ids"][0].tolist() == [PAD] * 4 + UNGUIDED + [10, 11, PAD, PAD]
    assert data.batch["attention_mask"][0].tolist() == [0] * 4 + [1, 1] + [1, 1, 0, 0]
    assert (
        data.batch["position_ids"][0].tolist()
        == compute_position_id_with_mask(data.batch["attention_mask"][0]).tolist()
    )
    for key in ("responses", "response_mask"):  # never re-rendered
        assert torch.equal(data.batch[key], before[key])
    for key in before.sorted_keys:  # the unguided row is untouched
        assert torch.equal(data.batch[key][1], before[key][1])
    # what the actor receives: exactly the unguided prompt followed by the response
    shipped = left_right_2_no_padding(data.to_tensordict())
    assert shipped["input_ids"][0].tolist() == [*UNGUIDED, 10, 11]
    assert shipped["input_ids"][1].tolist() == [*UNGUIDED, 12, 13, 14]


def test_a_prompt_wider_than_the_batch_is_refused():
    data = padded_batch([1], [[10]])
    with pytest.raises(ValueError, match="row 0: unguided prompt of 7 tokens is wider than the batch's 6"):
        swap_to_unguided_padded(data.batch, [0], [list(range(7))], PAD)


def test_row_fields_become_tensors_that_travel_to_the_actor_row_by_row():
    data = padded_batch([2, 0, 1], [[10], [11], [12]])
    moved = move_row_fields(data, required=True)
    assert moved[IS_GUIDED_FIELD].tolist() == [1.0, 0.0, 1.0] and moved[LEVEL_FIELD].tolist() == [2, 0, 1]
    assert all(name not in data.non_tensor_batch for name in moved)  # else to_tensordict refuses the duplicate key
    data.reorder(torch.tensor([2, 0, 1]))  # verl's balancing reorders tensors and columns together
    shipped = left_right_2_no_padding(data.to_tensordict())
    assert shipped[LEVEL_FIELD].tolist() == [1, 2, 0]
    assert shipped[IS_GUIDED_FIELD].tolist() == [1.0, 1.0, 0.0]
    assert move_row_fields(data, required=True)[LEVEL_FIELD].tolist() == [1, 2, 0]  # idempotent across hooks


@pytest.mark.parametrize("lost", [IS_GUIDED_FIELD, LEVEL_FIELD, NUM_ACTIONS_FIELD])
def test_a_guided_column_lost_before_the_trainer_fails_the_step_by_name(lost):
    data = padded_batch([2, 0], [[10], [11]])
    data.non_tensor_batch.pop(lost)
    with pytest.raises(ValueError, match=rf"no '{lost}' column while guidance is on.*agent_loop_manager_class"):
        move_row_fields(data, required=True)
    short = padded_batch([2, 0], [[10], [11]])
    short.non_tensor_batch[lost] = short.non_tensor_batch[lost][:1]
    with pytest.raises(ValueError, match=rf"column '{lost}' has 1 values for 2 rows"):
        move_row_fields(short, required=True)
    plain = padded_batch([0, 0], [[10], [11]])  # mode=off: another agent loop's rows carry no flag
    plain.non_tensor_batch.pop(lost)
    assert move_row_fields(plain, required=False)[lost].tolist() == [0, 0]


def test_groups_are_runs_of_one_uid_and_workers_get_whole_groups():
    assert group_bounds(["a", "a", "b", "b", "c", "c"]) == [(0, 2), (2, 4), (4, 6)]
    assert group_bounds([]) == []
    assert split_groups(5, 2) == [(0, 3), (3, 5)]
    assert split_groups(1, 3) == [(0, 1), (1, 1), (1, 1)]


def test_validation_padding_copies_are_marked_with_their_level_and_sample_number():
    """verl pads a validation batch to the worker count with copies of its first rows (after repeating each
    prompt val_kwargs.n times): the copies are run but must not be recorded twice."""
    data = padded_batch([0, 0, 0, 0, 0], [[10]] * 5)
    data.non_tensor_batch["uid"] = np.array(["p", "p", "q", "q", "p"], dtype=object)
    mark_validation_rows(data, samples=2, actguide=ActGuideConfig())
    assert data.non_tensor_batch[SESSION_FIELD].tolist() == [0, 1, 0, 1, 0]
    assert data.non_tensor_batch[VAL_PADDING_FIELD].tolist() == [False, False, False, False, True]
    assert data.non_tensor_batch[LEVEL_FIELD].tolist() == [0] * 5


def test_a_failed_groups_placeholders_carry_no_token_reward_or_guidance():
    data = padded_batch([2], [[10, 11]])
    data.batch["rm_scores"] = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    rows = placeholders(data, 3)
    assert len(rows) == 3
    assert rows.batch["response_mask"].sum() == 0 and rows.batch["rm_scores"].sum() == 0
    assert rows.non_tensor_batch[IS_GUIDED_FIELD].tolist() == [0.0] * 3
    assert rows.non_tensor_batch[LEVEL_FIELD].tolist() == [0] * 3
    assert data.batch["response_mask"].sum() == 2 and data.non_tensor_batch[IS_GUIDED_FIELD][0] == 1.0  # a copy
    assert DataProto.concat([data, rows]).batch["prompts"].shape == (4, WIDTH)


def test_groups_come_back_in_prompt_order_with_failed_ones_filled():
    """Two workers, three groups of two rows; the middle group (the first of worker 2's chunk) raised."""
    bounds, ranges = [(0, 2), (2, 4), (4, 6)], [(0, 1), (1, 3)]
    first = padded_batch([0, 0], [[10], [11]])
    second = padded_batch([2, 2], [[20], [21]])
    first.meta_info[FAILED_GROUPS_KEY], second.meta_info[FAILED_GROUPS_KEY] = [], [0]
    out = assemble_groups([first, second], ranges, bounds)
    assert out.batch["responses"][:, 0].tolist() == [10, 11, 10, 10, 20, 21]
    assert out.batch["response_mask"].sum(dim=1).tolist() == [1, 1, 0, 0, 1, 1]
    assert out.non_tensor_batch[IS_GUIDED_FIELD].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    nothing = DataProto(meta_info={FAILED_GROUPS_KEY: [0]})  # what a worker whose every group raised returns
    assert assemble_groups([nothing], [(0, 1)], [(0, 2)]) is None


def test_a_taskrunners_trainer_substitution_is_undone_even_when_the_run_raises():
    import verl.trainer.main_ppo_v0 as v0

    original = v0.RayPPOTrainer
    with pytest.raises(RuntimeError, match="run failed"), rebound("verl.trainer.main_ppo_v0", "RayPPOTrainer", int):
        assert v0.RayPPOTrainer is int
        raise RuntimeError("run failed")
    assert v0.RayPPOTrainer is original
