"""The ActGuide loss glue against verl 0.9.1's real ``ppo_loss`` wrapper and ``ActorConfig``."""

import pytest
import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla
from verl.utils import tensordict_utils as tu
from verl.utils.metric import Metric, reduce_metrics
from verl.utils.py_functional import append_to_dict
from verl.workers.config.actor import ActorConfig, PolicyLossConfig
from verl.workers.utils.losses import ppo_loss

from actguide_plugin.core.objective import ObjectiveConfig, actguide_token_losses, clip_masks, token_ratio
from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD, NUM_ACTIONS_FIELD
from actguide_plugin.verl_glue.loss import actguide_ppo_loss, make_actguide_loss_fn
from actguide_plugin.verl_glue.metrics import loss_metrics

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


def micro_batch(is_guided, seed=0, ref=False, levels=None, num_actions=None, padding=()):
    """A padded micro-batch as verl's engine hands it to the loss, plus the model's flat log-probs.

    ``padding``: rows that are verl's padding rows (no response token, whatever flag they cloned).
    """
    g = torch.Generator().manual_seed(seed)
    batch = len(is_guided)
    response_mask = torch.ones(batch, RESPONSE_LEN)
    response_mask[0, -1] = 0  # one padded response token
    for row in padding:
        response_mask[row] = 0
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
    if levels is not None:
        fields[LEVEL_FIELD] = torch.tensor(levels)
        fields[NUM_ACTIONS_FIELD] = torch.tensor(num_actions)
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


def step_metrics(per_micro_batch: list[dict]) -> dict[str, float]:
    """What the trainer logs from the loss's metrics: verl's reduction over micro-batches (one rank, one
    mini-batch: ``append_to_dict``, ``Metric.aggregate_dp``, ``reduce_metrics``), then :func:`loss_metrics`."""
    rank: dict = {}
    for metrics in per_micro_batch:
        append_to_dict(rank, metrics)
    reduced = reduce_metrics(
        {
            (key if key.startswith("actor/") else f"actor/{key}"): [
                Metric.aggregate_dp([value]) if isinstance(value, Metric) else value
            ]
            for key, value in rank.items()
        }
    )
    return {**reduced, **loss_metrics(reduced)}


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
    step = step_metrics([metrics])
    assert step["actguide/guided_tokens"] == pytest.approx(float(mask[[0, 2]].sum()))
    assert step["actguide/unguided_tokens"] == pytest.approx(float(mask[1].sum()))
    shift = ((old - new) * mask)[[0, 2]].sum(dim=-1)
    assert step["actguide/offpolicy_shift_mean"] == pytest.approx(shift.mean().item(), rel=1e-5)


def test_shift_is_exact_over_micro_batches_of_different_sizes_per_level_and_k_over_l():
    """Δ mean and variance from sums and counts over the step, not an average of per-micro-batch means."""
    first = micro_batch([1], seed=11, levels=[1], num_actions=[4])
    second = micro_batch([1, 1, 1], seed=12, levels=[2, 2, 1], num_actions=[4, 4, 2])
    shifts, levels = [], [1, 2, 2, 1]
    for _, _, new, old, mask in (first, second):
        shifts += ((old - new) * mask).sum(dim=-1).tolist()
    step = step_metrics([actguide_ppo_loss(actor_config(), b[1], b[0])[1] for b in (first, second)])
    shifts = torch.tensor(shifts, dtype=torch.float64)
    assert step["actguide/offpolicy_shift_mean"] == pytest.approx(shifts.mean().item(), rel=1e-5)
    assert step["actguide/offpolicy_shift_var"] == pytest.approx(shifts.var(unbiased=False).item(), rel=1e-4)
    for level in (1, 2):
        rows = shifts[[i for i, k in enumerate(levels) if k == level]]
        assert step[f"actguide/offpolicy_shift/level_{level}/mean"] == pytest.approx(rows.mean().item(), rel=1e-5)
        assert step[f"actguide/offpolicy_shift/level_{level}/var"] == pytest.approx(
            rows.var(unbiased=False).item(), rel=1e-4, abs=1e-9
        )
        assert step[f"actguide/offpolicy_shift/level_{level}/rows"] == 2
    # k/L: 1/4 → 0-25; 2/4 → 25-50 (twice); 1/2 → 25-50
    assert step["actguide/offpolicy_shift/ratio_0-25/mean"] == pytest.approx(shifts[0].item(), rel=1e-5)
    assert step["actguide/offpolicy_shift/ratio_25-50/mean"] == pytest.approx(shifts[1:].mean().item(), rel=1e-5)
    assert "actguide/offpolicy_shift/level_3/mean" not in step  # empty buckets are not logged


def test_padding_rows_count_in_no_statistic():
    """verl's padding rows clone row 0 (guided flag included) with no response token: no Δ row, no token."""
    real = micro_batch([1, 0, 1], seed=13, levels=[1, 0, 1], num_actions=[3, 3, 3], padding=[2])
    data, output, new, old, mask = real
    step = step_metrics([actguide_ppo_loss(actor_config(), output, data)[1]])
    assert step["actguide/offpolicy_shift/level_1/rows"] == 1
    assert step["actguide/offpolicy_shift_mean"] == pytest.approx(((old - new) * mask)[0].sum().item(), rel=1e-5)
    assert step["actguide/offpolicy_shift_var"] == pytest.approx(0.0, abs=1e-6)
    assert step["actguide/guided_tokens"] == float(mask[0].sum())


def test_clip_fractions_follow_verl_and_are_split_by_source():
    data, output, new, old, mask = micro_batch([0, 0, 0], seed=17)
    _, ours = actguide_ppo_loss(actor_config(), output, data)
    vanilla = actor_config(policy_loss=PolicyLossConfig())
    advantages = data["advantages"]
    _, theirs = compute_policy_loss_vanilla(old, new, advantages, mask, "token-mean", vanilla)
    for key in ("actor/pg_clipfrac", "actor/pg_clipfrac_lower", "actor/ppo_kl"):
        assert ours[key].aggregate() == pytest.approx(theirs[key], abs=1e-6), key
    assert theirs["actor/pg_clipfrac"] > 0
    # split: guided rows 0 and 2, counted over their response tokens only
    data, output, new, old, mask = micro_batch([1, 0, 1], seed=17)
    step = step_metrics([actguide_ppo_loss(actor_config(), output, data)[1]])
    is_guided = torch.tensor([True, False, True])
    clipped, lower = clip_masks(token_ratio(new, old), advantages, is_guided, ObjectiveConfig())
    for source, rows in (("guided", is_guided), ("unguided", ~is_guided)):
        tokens = mask.bool() & rows.unsqueeze(-1)
        assert step[f"actguide/{source}_pg_clipfrac"] == pytest.approx((clipped & tokens).sum().item() / tokens.sum())
        assert step[f"actguide/{source}_pg_clipfrac_lower"] == pytest.approx(
            (lower & tokens).sum().item() / tokens.sum()
        )


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
    data, output, *_ = micro_batch([1, 0, 0], levels=[2, 0, 0], num_actions=[4, 4, 4])
    assert torch.isfinite(restored(model_output=output, data=data)[0])


def test_bad_flag_shape_is_reported():
    data, output, *_ = micro_batch([1, 0, 0])
    data[IS_GUIDED_FIELD] = torch.ones(3, 2)
    with pytest.raises(ValueError, match=IS_GUIDED_FIELD):
        actguide_ppo_loss(actor_config(), output, data)


def test_loss_fn_refuses_an_actor_config_without_the_actguide_loss_mode():
    with pytest.raises(ValueError, match=r"policy_loss\.loss_mode"):
        make_actguide_loss_fn(actor_config(policy_loss=PolicyLossConfig(loss_mode="vanilla")))


@pytest.mark.parametrize("lost", [IS_GUIDED_FIELD, LEVEL_FIELD, NUM_ACTIONS_FIELD])
def test_a_guided_field_lost_on_its_way_to_the_loss_fails_the_step_by_name(lost):
    """Guidance on (what the trainer installs): a micro-batch without the per-sample fields is an error, never a
    batch of unguided rows."""
    fn = make_actguide_loss_fn(actor_config())
    data, output, *_ = micro_batch([1, 0, 0], levels=[2, 0, 0], num_actions=[4, 4, 4])
    assert torch.isfinite(fn(model_output=output, data=data)[0])
    del data[lost]
    with pytest.raises(ValueError, match=rf"field '{lost}' is missing while guidance is on.*_prepare_guided_rows"):
        fn(model_output=output, data=data)
    plain = make_actguide_loss_fn(actor_config(), require_flags=False)  # mode=off: no guided rows to lose
    assert torch.isfinite(plain(model_output=output, data=data)[0])


def test_the_actguide_policy_loss_refuses_to_run_without_its_wrapper():
    """verl's own ppo_loss with loss_mode=actguide (the wrapper not installed) would see no flag at all."""
    data, output, *_ = micro_batch([1, 0, 0])
    with pytest.raises(RuntimeError, match="without ActGuide's loss wrapper"):
        ppo_loss(actor_config(), output, data)
