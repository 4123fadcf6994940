"""The reward a run uses is the user's (verl's scorer by data_source) unless a config names one; checked before Ray."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from actguide_plugin.verl_glue.reward_check import check_default_scorer, reward_in_use


def config(path=None, reward_model=False):
    return OmegaConf.create(
        {"reward": {"custom_reward_function": {"path": path, "name": "compute_score"},
                    "reward_model": {"enable": reward_model, "model_path": "/rm"}}}
    )  # fmt: skip


def train_file(tmp_path, data_source, ground_truth):
    path = tmp_path / f"{data_source}.parquet"
    rows = [{"data_source": data_source, "reward_model": {"style": "rule", "ground_truth": ground_truth}}] * 2
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_search_r1_rows_are_scored_by_verls_own_em_scorer(tmp_path):
    files = [train_file(tmp_path, "searchR1_nq", {"target": ["Tarnfield Rowing Club"]})]
    check_default_scorer(config(), files)  # verl's search_r1_like_qa_em reads {"target": [...]}
    assert reward_in_use(config()).startswith("verl's default_compute_score by each row's data_source")


def test_a_data_source_verl_cannot_score_is_named_with_the_opt_in(tmp_path):
    files = [train_file(tmp_path, "fanoutqa", "Tarnfield Rowing Club")]
    with pytest.raises(
        ValueError, match=r"data_source 'fanoutqa' \(.*row 0\) has no scorer .* \+actguide_reward=answer"
    ):
        check_default_scorer(config(), files)


def test_a_ground_truth_turned_into_text_is_caught_with_the_scorers_own_message(tmp_path):
    files = [train_file(tmp_path, "searchR1_nq", "Tarnfield Rowing Club")]  # what convert used to write
    with pytest.raises(ValueError, match=r"fails on the ground_truth of .* \(TypeError: string indices must be"):
        check_default_scorer(config(), files)


def test_a_named_reward_is_used_as_named_and_not_probed(tmp_path):
    files = [train_file(tmp_path, "fanoutqa", "x")]
    check_default_scorer(config("pkg://actguide_plugin.reward"), files)
    check_default_scorer(config(reward_model=True), files)
    assert reward_in_use(config("my_reward.py")) == "custom_reward_function my_reward.py:compute_score"
    assert reward_in_use(config("pkg://actguide_plugin.reward")) == (
        "the recipe's answer reward (pkg://actguide_plugin.reward), reward_mode=rule"
    )
    assert reward_in_use(config(reward_model=True)).startswith("reward model /rm")


def test_the_recipes_reward_settings_are_checked_before_ray_naming_the_key():
    judge = config("pkg://actguide_plugin.reward")
    judge.reward.custom_reward_function.reward_kwargs = {"reward_mode": "judge", "judge_base_url": "http://j:8001"}
    with pytest.raises(ValueError, match=r"reward_kwargs: reward_mode=judge needs judge_base_url and judge_model"):
        reward_in_use(judge)
    judge.reward.custom_reward_function.reward_kwargs.judge_model = "qwen-judge"
    assert reward_in_use(judge).endswith("reward_mode=judge, judge_model=qwen-judge")
    judge.reward.custom_reward_function.reward_kwargs.judge_modle = "typo"
    with pytest.raises(ValueError, match=r"unknown reward\.custom_reward_function\.reward_kwargs \['judge_modle'\]"):
        reward_in_use(judge)
