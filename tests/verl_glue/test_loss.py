"""The ActGuide loss glue against verl 0.9.1's real ``ppo_loss`` wrapper and ``ActorConfig``."""

import pytest
import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.workers.config.actor import ActorConfig, PolicyLossConfig
from verl.workers.utils.losses import ppo_loss

from actguide_plugin.core.objective import ObjectiveConfig, actguide_token_losses
from actguide_plugin.names import IS_GUIDED_FIELD
from actguide_plugin.verl_glue.loss import actguide_ppo_loss, make_actguide_loss_fn

PROMPT_LEN, RESPONSE_LEN = 3, 4


def actor_config(**overrides) -> ActorConfig:
    kwargs = {
        "strategy": "fsdp2",
        "rollout_n": 1,
        "ppo_micro_batch_size_per_gpu": 2,
        "clip_ratio": 0.2,
        "policy_loss": PolicyLossConfig(loss_mode="actguide"),
    }
    kwargs.update(overrides)
    return ActorConfig(**kwargs)


def micro_batch(is_guided, seed=0, ref=False):
    """A padded micro-batch as verl's engine hands it to the loss, plus the model's flat log-probs."""
    g = torch.Generator().manual_seed(seed)
    batch = len(is_guided)
    response_mask = torch.ones(batch, RESPONSE_LEN)
    response_mask[0, -1] = 0  # one padded response token
    attention_mask = torch.cat([torch.ones(batch, PROMPT_LEN), response_mask], dim=1).long()
    old = -torch.rand(batch, RESPONSE_LEN, generator=g) * 2
    new = old + torch.randn(batch, RESPONSE_LEN, generator=g) * 0.5  # ratios spread across the clip range
    fields = {
        "prompts": torch.ones(batch, PROMPT_LEN, dtype=torch.long),
        "responses": torch.ones(batch, RESPONSE_LEN, dtype=torch.long),
        "attention_mask": attention_mask,
        "response_mask": response_mask,
        "old_log_probs": old,
        "advantages": torch.tensor([[1.0], [-1.0], [0.5]][:batch]).expand(batch, RESPONSE_LEN).clone(),
        IS_GUIDED_FIELD: torch.tensor(is_guided, dtype=torch.float32),
    }
    if ref:
        fields["ref_log_prob"] = old - 0.1
    data = TensorDict(fields, batch_size=[batch])
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=int(response_mask.sum()), global_batch_size=batch)
    # the model's log-probs over whole sequences (prompt + response), left-shifted by one as verl expects
    flat = []
    for i in range(batch):
        length = int(response_mask[i].sum())
        seq = torch.zeros(PROMPT_LEN + length)
        seq[PROMPT_LEN - 1 : PROMPT_LEN - 1 + length] = new[i, :length]
        flat.append(seq)
    return data, {"log_probs": torch.cat(flat)}, new, old, response_mask


def test_without_guided_rows_equals_verls_vanilla_ppo_loss():
    cfg = actor_config(use_kl_loss=True, kl_loss_coef=0.001, kl_loss_type="low_var_kl")
    data, output, *_ = micro_batch([0, 0, 0], ref=True)
    ours, our_metrics = actguide_ppo_loss(cfg, output, data)
    data, output, *_ = micro_batch([0, 0, 0], ref=True)
    vanilla = actor_config(
        use_kl_loss=True, kl_loss_coef=0.001, kl_loss_type="low_var_kl", policy_loss=PolicyLossConfig()
    )
    theirs, their_metrics = ppo_loss(vanilla, output, data)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert our_metrics["kl_loss"].aggregate() == pytest.approx(their_metrics["kl_loss"].aggregate())


def test_guided_rows_follow_the_configured_rule_through_verls_wrapper():
    is_guided = [1, 0, 1]
    data, output, new, old, mask = micro_batch(is_guided, seed=3)
    objective = ObjectiveConfig(guided_clip="cap", guided_ratio_cap=1.3)
    loss, metrics = actguide_ppo_loss(actor_config(), output, data, objective=objective)
    expected_losses, _ = actguide_token_losses(
        new, old, data["advantages"], torch.tensor(is_guided, dtype=torch.bool), objective
    )
    expected = (expected_losses * mask).sum() / mask.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # metrics are split by source, and the off-policy shift is computed for guided rows only
    assert metrics["actguide/guided_tokens"].aggregate() == pytest.approx(float(mask[[0, 2]].sum()))
    assert metrics["actguide/unguided_tokens"].aggregate() == pytest.approx(float(mask[1].sum()))
    shift = ((old - new) * mask)[[0, 2]].sum(dim=-1)
    assert metrics["actguide/offpolicy_shift_mean"].aggregate() == pytest.approx(shift.mean().item(), rel=1e-5)


def test_guided_flag_changes_the_loss_only_when_rule_differs():
    data, output, *_ = micro_batch([1, 1, 1], seed=5)
    capped, _ = actguide_ppo_loss(actor_config(), output, data, objective=ObjectiveConfig(guided_clip="cap"))
    data, output, *_ = micro_batch([1, 1, 1], seed=5)
    same, _ = actguide_ppo_loss(actor_config(), output, data, objective=ObjectiveConfig(guided_clip="same"))
    data, output, *_ = micro_batch([0, 0, 0], seed=5)
    unguided, _ = actguide_ppo_loss(actor_config(), output, data, objective=ObjectiveConfig(guided_clip="cap"))
    assert same.item() == pytest.approx(unguided.item())
    assert capped.item() != pytest.approx(same.item())


def test_clip_ranges_come_from_verls_actor_config():
    data, output, new, old, mask = micro_batch([0, 0, 0], seed=7)
    loss, _ = actguide_ppo_loss(actor_config(clip_ratio_low=0.1, clip_ratio_high=0.28), output, data)
    objective = ObjectiveConfig(clip_low=0.1, clip_high=0.28)
    expected, _ = actguide_token_losses(new, old, data["advantages"], torch.zeros(3, dtype=torch.bool), objective)
    assert loss.item() == pytest.approx(((expected * mask).sum() / mask.sum()).item(), rel=1e-6)


def test_wrapper_is_picklable_as_set_loss_fn_requires():
    import pickle

    fn = make_actguide_loss_fn(actor_config(), ObjectiveConfig(guided_clip="shaping"))
    restored = pickle.loads(pickle.dumps(fn))
    data, output, *_ = micro_batch([1, 0, 0])
    assert torch.isfinite(restored(model_output=output, data=data)[0])


def test_bad_flag_shape_is_reported():
    data, output, *_ = micro_batch([1, 0, 0])
    data[IS_GUIDED_FIELD] = torch.ones(3, 2)
    with pytest.raises(ValueError, match=IS_GUIDED_FIELD):
        actguide_ppo_loss(actor_config(), output, data)


def test_loss_fn_refuses_an_actor_config_without_the_actguide_loss_mode():
    with pytest.raises(ValueError, match=r"policy_loss\.loss_mode"):
        make_actguide_loss_fn(actor_config(policy_loss=PolicyLossConfig(loss_mode="vanilla")))
