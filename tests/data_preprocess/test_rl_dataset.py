"""A produced parquet loads in verl 0.9.1's ``RLHFDataset`` the way the trainer reads it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from actguide_plugin.core.actions import loads_actions
from data_preprocess.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from preprocess_samples import ACTIONS, hermes_record

pytestmark = pytest.mark.integration


def test_rlhf_dataset_reads_prompt_extra_info_and_tools_kwargs(tmp_path, monkeypatch, byte_tokenizer):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    src = tmp_path / "in.jsonl"
    records = [{**hermes_record([list(ACTIONS)]), "id": f"t{i}", "question": f"Frage {i} ü?"} for i in range(6)]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert main(["convert", str(src), "-o", str(tmp_path / "out"), "--val-ratio", "0"]) == 0

    config = OmegaConf.create(
        {"max_prompt_length": 4096, "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1,
         "cache_dir": str(tmp_path / "verl-cache"), "return_raw_chat": True}
    )  # fmt: skip
    dataset = RLHFDataset(str(tmp_path / "out" / "train.parquet"), byte_tokenizer, config)
    assert len(dataset) == 6
    item = dataset[2]
    assert item["agent_name"] == "actguide_tool_agent"
    assert item["raw_prompt"][-1] == {"role": "user", "content": "Frage 2 ü?"}
    assert item["raw_prompt"][0]["role"] == "system"
    assert item["index"] == 2
    assert item["tools_kwargs"]["web_visit"]["create_kwargs"] == {"task_id": "t2"}
    assert item["extra_info"]["split"] == "train"
    assert loads_actions(item["extra_info"]["reference_actions"]) == list(ACTIONS)
    assert item["reward_model"]["ground_truth"] == "2962 m"

    tight = OmegaConf.merge(config, {"max_prompt_length": 10})
    assert len(RLHFDataset(str(tmp_path / "out" / "train.parquet"), byte_tokenizer, tight)) == 0
