"""One actor update through verl's fsdp2 TrainingWorker on CPU with the ActGuide loss installed by set_loss_fn.

Guided rows are trained on the unguided view (the prompt swap) with old log-probs from the guided view; the
loss and ratios verl reports are checked against a manual computation from the same worker's log-probs.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from actguide_plugin.core.objective import ObjectiveConfig, actguide_token_losses
from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD, NUM_ACTIONS_FIELD
from actguide_plugin.verl_glue.loss import make_actguide_loss_fn
from actguide_plugin.verl_glue.metrics import loss_metrics

pytestmark = pytest.mark.integration

PLAN_LEN, PROMPT_LEN, RESPONSE_LEN = 4, 5, 6
IS_GUIDED = torch.tensor([1.0, 1.0, 0.0, 0.0])
ADVANTAGES = torch.tensor([1.0, -1.0, 0.5, -0.5])


def view(prompts: torch.Tensor, responses: torch.Tensor) -> TensorDict:
    """A right-aligned padded batch (no padding needed: all rows have equal lengths)."""
    input_ids = torch.cat([prompts, responses], dim=1)
    attention_mask = torch.ones_like(input_ids)
    return TensorDict(
        {
            "prompts": prompts,
            "responses": responses,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": torch.arange(input_ids.shape[1]).expand_as(input_ids).clone(),
            "response_mask": torch.ones_like(responses),
        },
        batch_size=[prompts.shape[0]],
    )


def engine_batch(padded: TensorDict, **extra) -> TensorDict:
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    data = left_right_2_no_padding(padded.clone())
    tu.assign_non_tensor(data, temperature=1.0, calculate_entropy=False, **extra)
    return data


def response_log_probs(worker, padded: TensorDict) -> torch.Tensor:
    from verl.workers.utils.padding import no_padding_2_padding

    output = worker.infer_batch(engine_batch(padded, compute_loss=False))
    return no_padding_2_padding(output["log_probs"], engine_batch(padded))  # [batch, response_len]


def test_guided_rows_use_the_guided_denominator_in_a_real_update(
    single_rank_gloo, training_worker_config, tiny_bytes_model
):
    from verl.utils.metric import reduce_metrics
    from verl.utils.py_functional import rename_dict
    from verl.workers.config.actor import ActorConfig, PolicyLossConfig
    from verl.workers.engine_workers import TrainingWorker

    worker = TrainingWorker(training_worker_config(tiny_bytes_model, lr=1e-3))
    worker.reset()

    g = torch.Generator().manual_seed(0)
    unguided_prompts = torch.randint(0, 250, (4, PROMPT_LEN), generator=g)
    plan = torch.randint(0, 250, (4, PLAN_LEN), generator=g)
    responses = torch.randint(0, 250, (4, RESPONSE_LEN), generator=g)
    guided_view = view(torch.cat([unguided_prompts, plan], dim=1), responses)  # x ⊕ G_k, then the same y
    unguided_view = view(unguided_prompts, responses)

    logp_guided = response_log_probs(worker, guided_view)
    logp_unguided = response_log_probs(worker, unguided_view)
    assert not torch.allclose(logp_guided, logp_unguided)  # the plan changes what the model predicts
    # old log-probs as the trainer computes them: on the view each trajectory was sampled with
    logp_old = torch.where(IS_GUIDED.bool().unsqueeze(-1), logp_guided, logp_unguided)

    actor_config = ActorConfig(
        strategy="fsdp2",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=2,
        clip_ratio=0.2,
        use_kl_loss=False,
        entropy_coeff=0.0,
        loss_agg_mode="token-mean",
        policy_loss=PolicyLossConfig(loss_mode="actguide"),
    )
    worker.set_loss_fn(make_actguide_loss_fn(actor_config, ObjectiveConfig()))

    batch = engine_batch(
        unguided_view, mini_batch_size=4, global_batch_size=4, epochs=1, seed=0, dataloader_kwargs={"shuffle": False}
    )
    batch["old_log_probs"] = logp_old
    batch["advantages"] = ADVANTAGES.unsqueeze(-1).expand(4, RESPONSE_LEN).contiguous()
    batch[IS_GUIDED_FIELD] = IS_GUIDED.clone()
    batch[LEVEL_FIELD] = IS_GUIDED.long()  # the fields the trainer writes next to the flag (level, L)
    batch[NUM_ACTIONS_FIELD] = torch.full((4,), 2)
    before = [p.detach().clone() for p in worker.engine.module.parameters()]
    output = worker.train_mini_batch(batch)

    # manual: numerator on the unguided view (θ = θ_old at the first update), source-dependent denominator
    manual_losses, ratio = actguide_token_losses(
        logp_unguided, logp_old, ADVANTAGES.unsqueeze(-1).expand(4, RESPONSE_LEN), IS_GUIDED.bool(), ObjectiveConfig()
    )
    # as the trainer reduces the micro-batch metrics and turns the loss's sums into means
    metrics = reduce_metrics(rename_dict(output["metrics"], "actor/"))
    metrics.update(loss_metrics(metrics))
    assert float(metrics["actor/pg_loss"]) == pytest.approx(manual_losses.mean().item(), abs=1e-5)
    assert float(metrics["actguide/guided_ratio_mean"]) == pytest.approx(ratio[:2].mean().item(), abs=1e-5)
    assert float(metrics["actguide/unguided_ratio_mean"]) == pytest.approx(1.0, abs=1e-5)
    assert abs(ratio[:2].mean().item() - 1.0) > 1e-3  # the guided denominator really differs from the numerator
    shift = (logp_guided - logp_unguided)[:2].sum(dim=-1)  # Δ per guided trajectory
    assert float(metrics["actguide/offpolicy_shift_mean"]) == pytest.approx(shift.mean().item(), abs=1e-4)
    after = list(worker.engine.module.parameters())
    assert any(not torch.equal(b, a.detach()) for b, a in zip(before, after, strict=True))  # the actor moved


def _one_update(worker_config, model, rule: str) -> float:
    """One real update on a rescued guided row the unguided policy finds e^-12 times less likely per token than the
    guided view did (the barrier world's measured case), next to an unguided row of another group; returns how
    much the unguided log-probability of the guided response rose (nats, summed over its tokens)."""
    from verl.workers.config.actor import ActorConfig, PolicyLossConfig
    from verl.workers.engine_workers import TrainingWorker

    worker = TrainingWorker(worker_config(model, lr=1e-3))
    worker.reset()
    g = torch.Generator().manual_seed(1)
    prompts, responses = torch.randint(0, 250, (2, PROMPT_LEN), generator=g), torch.randint(0, 250, (2, 6), generator=g)
    unguided_view = view(prompts, responses)
    before = response_log_probs(worker, unguided_view)
    actor_config = ActorConfig(
        strategy="fsdp2", rollout_n=1, ppo_micro_batch_size_per_gpu=2, clip_ratio=0.2, use_kl_loss=False,
        entropy_coeff=0.0, loss_agg_mode="token-mean", policy_loss=PolicyLossConfig(loss_mode="actguide"),
    )  # fmt: skip
    worker.set_loss_fn(make_actguide_loss_fn(actor_config, ObjectiveConfig(guided_clip=rule)))
    batch = engine_batch(
        unguided_view, mini_batch_size=2, global_batch_size=2, epochs=1, seed=0, dataloader_kwargs={"shuffle": False}
    )
    batch["old_log_probs"] = before + torch.tensor([[12.0], [0.0]])  # row 0 sampled with a plan, row 1 without
    batch["advantages"] = torch.tensor([[1.0], [-1.0]]).expand(2, 6).contiguous()
    batch[IS_GUIDED_FIELD] = torch.tensor([1.0, 0.0])
    batch[LEVEL_FIELD], batch[NUM_ACTIONS_FIELD] = torch.tensor([2, 0]), torch.tensor([2, 2])
    worker.train_mini_batch(batch)
    return (response_log_probs(worker, unguided_view) - before)[0].sum().item()


def test_a_rescued_token_the_unguided_policy_finds_unlikely_is_learned_with_cispo_not_with_ppo_clip(
    single_rank_gloo, training_worker_config, tiny_bytes_model
):
    """What the barrier experiment needs: after one update on a rescued (positive-advantage) guided response, its
    log-probability under the *unguided* prompt went up. Under PPO clip its gradient is A·r ≈ 6e-6·A, so the
    update is decided by the other row; under cispo the guided row keeps the weight 1 − ε_low."""
    rose_same = _one_update(training_worker_config, tiny_bytes_model, "same")
    torch.distributed.destroy_process_group()
    rose_cispo = _one_update(training_worker_config, tiny_bytes_model, "cispo")
    assert rose_cispo > 0.5
    assert rose_cispo > 5 * abs(rose_same)
