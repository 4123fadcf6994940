"""The trainer's row preparation against real Ray + TransferQueue and verl's own batch padding.

verl's ``upsample_batch_to_divisible_size`` (called by ``_balance_batch``) appends rows cloned from row 0 — guided
flag and unguided prompt included — tagged ``is_padding``. They must never be swapped or counted as guided.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.utils.model import compute_position_id_with_mask
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD, NUM_ACTIONS_FIELD, UNGUIDED_PROMPT_IDS_FIELD
from actguide_plugin.verl_glue import trainer_v1
from actguide_plugin.verl_glue.config import ActGuideConfig
from actguide_plugin.verl_glue.trainer_v1 import ActGuideTrainer, set_poll_interval

pytestmark = pytest.mark.integration

UNGUIDED_PROMPT = [5, 6, 7]
PLAN = [40, 41]
EOS = 2


def row(level: int, response: list[int]) -> dict:
    """A trajectory as the rollout publishes it: sampled on the guided prompt when level > 0."""
    prompt = torch.tensor(UNGUIDED_PROMPT + (PLAN if level else []))
    responses = torch.tensor(response)
    input_ids = torch.cat([prompt, responses])
    return {
        "prompts": prompt,
        "responses": responses,
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "position_ids": compute_position_id_with_mask(torch.ones_like(input_ids)),
        "response_mask": torch.ones_like(responses),
        IS_GUIDED_FIELD: torch.tensor(float(level > 0)),
        LEVEL_FIELD: torch.tensor(level),
        UNGUIDED_PROMPT_IDS_FIELD: torch.tensor(UNGUIDED_PROMPT),
        "extra_fields": {NUM_ACTIONS_FIELD: 3},
    }


def padded_batch(partition: str):
    """Rows: guided (k = 2), unguided, unguided; verl pads to a multiple of 4 by cloning row 0."""
    rows = [row(2, [11, 12]), row(0, [13]), row(0, [14, 15, 16])]
    keys = [f"{partition}u{i}_0_0" for i in range(len(rows))]
    tags = [{"status": "success", "seq_len": len(r["input_ids"])} for r in rows]
    batch = tq.kv_batch_put(keys=keys, partition_id=partition, fields=list_of_dict_to_tensordict(rows), tags=tags)
    return upsample_batch_to_divisible_size(batch, 4, EOS)


def prepare(batch, ratio_context: str, host=None):
    metrics: dict = {}
    host = host or SimpleNamespace(actguide=ActGuideConfig(ratio_context=ratio_context))
    batch = ActGuideTrainer._prepare_guided_rows(host, batch, metrics)
    fields = ["prompts", "input_ids", IS_GUIDED_FIELD, NUM_ACTIONS_FIELD]
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
    return batch, metrics, {name: [data[name][i].tolist() for i in range(len(batch.keys))] for name in fields}


def test_the_guided_prompt_as_sampled_is_kept_for_the_dump_and_logged_at_info(ray_and_tq, caplog, monkeypatch):
    host = SimpleNamespace(
        actguide=ActGuideConfig(), global_steps=7, _decode=lambda ids: " ".join(f"t{i}" for i in ids)
    )
    monkeypatch.setattr(trainer_v1.logger, "level", logging.INFO)
    with caplog.at_level(logging.INFO, logger=trainer_v1.logger.name):
        batch, _metrics, data = prepare(padded_batch("plan"), "unguided", host)
    assert data["prompts"][0] == UNGUIDED_PROMPT  # swapped...
    assert host._guided_prompts == {batch.keys[0]: UNGUIDED_PROMPT + PLAN}  # ...but what was sampled is kept
    assert f"step 7: guided prompt of {batch.keys[0]}: t5 t6 t7 t40 t41" in caplog.text


def test_padding_rows_are_neither_swapped_nor_guided(ray_and_tq):
    batch, metrics, data = prepare(padded_batch("swap"), "unguided")
    assert [tag.get("is_padding", False) for tag in batch.tags] == [False, False, False, True]
    assert data["prompts"][0] == UNGUIDED_PROMPT and data["input_ids"][0] == [*UNGUIDED_PROMPT, 11, 12]
    assert data["prompts"][1] == UNGUIDED_PROMPT and data["input_ids"][1] == [*UNGUIDED_PROMPT, 13]
    assert data["prompts"][3] == [EOS] * 127  # verl's synthetic padding sequence, untouched
    assert data[IS_GUIDED_FIELD] == [1.0, 0.0, 0.0, 0.0]  # the flag the padding row cloned is cleared
    assert data[NUM_ACTIONS_FIELD][:3] == [3, 3, 3]
    assert metrics["actguide/guided_trajectory_frac"] == pytest.approx(1 / 3)  # real rows only


def test_guided_ratio_context_keeps_the_guided_prompt(ray_and_tq):
    _batch, metrics, data = prepare(padded_batch("noswap"), "guided")
    assert data["prompts"][0] == UNGUIDED_PROMPT + PLAN
    assert data["input_ids"][0] == UNGUIDED_PROMPT + PLAN + [11, 12]
    assert data[IS_GUIDED_FIELD] == [1.0, 0.0, 0.0, 0.0]
    assert metrics["actguide/guided_trajectory_frac"] == pytest.approx(1 / 3)


def sampler_config(custom_path: str | None = None, **sampler_kwargs):
    """``trainer.v1.sampler`` as verl's ppo_trainer.yaml lays it out."""
    return OmegaConf.create(
        {
            "custom_sampler": {"path": custom_path, "name": "Custom" if custom_path else None},
            "sampler_kwargs": sampler_kwargs,
        }
    )


def test_poll_interval_reaches_verls_replay_buffer_when_set():
    def replay_buffer() -> ReplayBuffer:
        return ReplayBuffer("sync", OmegaConf.create({}), None, "wait", OmegaConf.create({}))

    default = replay_buffer().poll_interval
    for config, expected in [
        (sampler_config(poll_interval=0.2), 0.2),
        (sampler_config(), default),  # not set: verl's default (2 s)
        (sampler_config("my/sampler.py", poll_interval=0.2), default),  # a custom sampler reads sampler_kwargs itself
    ]:
        buffer = replay_buffer()
        set_poll_interval(buffer, config)
        assert buffer.poll_interval == expected
    with pytest.raises(ValueError, match=r"sampler_kwargs.poll_interval must be > 0 s, got 0"):
        set_poll_interval(replay_buffer(), sampler_config(poll_interval=0))
