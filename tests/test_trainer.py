"""Trainer glue that runs without a cluster: the prompt swap and the config checks."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from actguide_plugin.rollout_manager import UNGUIDED_PROMPTS_FIELD
from actguide_plugin.trainer import _shift_metrics_from_actor, check_verl_config, swap_to_unguided
from actguide_plugin.verl_plugin import shipped_path


def config(*overrides):
    with initialize_config_dir(config_dir=shipped_path("recipe/actguide/config"), version_base=None):
        return compose(config_name="actguide_trainer", overrides=list(overrides))


def test_swap_splices_unchanged_responses_after_unguided_prompts():
    unguided = [torch.tensor([1, 2, 3]), torch.tensor([7])]
    responses = [torch.tensor([10, 11]), torch.tensor([12, 13, 14])]
    rows = swap_to_unguided({UNGUIDED_PROMPTS_FIELD: unguided, "responses": responses})
    assert rows[0]["prompts"].tolist() == [1, 2, 3]
    assert rows[0]["input_ids"].tolist() == [1, 2, 3, 10, 11]
    assert rows[1]["input_ids"].tolist() == [7, 12, 13, 14]
    assert rows[1]["attention_mask"].tolist() == [1, 1, 1, 1]
    assert rows[1]["position_ids"].tolist() == [0, 1, 2, 3]


def test_recipe_config_passes_the_checks():
    check_verl_config(config())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("actor_rollout_ref.actor.policy_loss.loss_mode=vanilla", "loss_mode"),
        ("actor_rollout_ref.actor.use_prefix_grouper=true", "use_prefix_grouper"),
        ("actor_rollout_ref.rollout.agent.agent_loop_manager_class=null", "agent_loop_manager_class"),
        ("actguide.ratio_source=rollout", "bypass_mode"),
    ],
)
def test_config_checks_name_the_key_to_fix(override, message):
    with pytest.raises(ValueError, match=message):
        check_verl_config(config(override))


def test_unknown_actguide_key_is_rejected():
    from actguide_plugin.verl_config import actguide_config

    with pytest.raises(ValueError, match="unknown key"):
        actguide_config(config("+actguide.probes=3"))
    with pytest.raises(ValueError, match=r"actguide\.mode"):
        actguide_config(config("actguide.mode=sometimes"))


def test_shift_variance_from_loss_moments():
    metrics = {"actor/actguide/offpolicy_shift_mean": 2.0, "actor/actguide/offpolicy_shift_sqmean": 5.0, "x": 1}
    out = _shift_metrics_from_actor(metrics)
    assert out == {"actguide/offpolicy_shift_mean": 2.0, "actguide/offpolicy_shift_var": 1.0}
    assert metrics == {"x": 1}
