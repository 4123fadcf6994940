"""CPU mode for verl 0.9.1: platform selection, the CPU config, and verl's fsdp2 TrainingWorker on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actguide_plugin.cpu.platform import RAY_DEVICE_RESOURCE

_PROBE = (
    "import verl\n"
    "from actguide_plugin.cpu import activate_if_requested\n"
    "active = activate_if_requested()\n"
    "from verl.plugin.platform import platform_manager\n"
    "from verl.utils import torch_functional\n"
    "chunked = getattr(torch_functional.logprobs_from_logits_v2, '_actguide_cpu', False)\n"
    "print(active, platform_manager._current_platform.device_name if platform_manager._current_platform else None,"
    " chunked)\n"
)


def _probe(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("ACTGUIDE_DEVICE", "VERL_PLATFORM")}
    if env_value is not None:
        env["ACTGUIDE_DEVICE"] = env_value
    result = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_cpu_platform_selected_only_when_opted_in():
    assert _probe(None) == "False None False"
    assert _probe("cpu") == "True cpu True"  # with the patches (here: chunked log-probs)


def test_cpu_config_composes_the_recipe_with_cpu_settings():
    """``--config-name actguide_cpu``: the recipe's settings plus everything a CPU run needs, in one yaml."""
    import verl  # noqa: F401  (our plugin registers the actguide_path resolver the recipe yaml uses)
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="recipe.actguide.config", version_base=None):
        config = compose(config_name="actguide_cpu", overrides=["actor_rollout_ref.model.path=/models/tiny"])
    assert config.trainer.device == "cpu"
    assert config.trainer.use_v1
    assert config.actguide.mode == "fallback_adaptive"  # the recipe underneath
    assert config.actor_rollout_ref.actor.policy_loss.loss_mode == "actguide"
    assert config.actor_rollout_ref.actor.strategy == "fsdp2"
    assert config.actor_rollout_ref.ref.strategy == "fsdp2"
    assert config.actor_rollout_ref.rollout.name == "hf"
    assert config.actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype == "fp32"
    assert config.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert config.transfer_queue.backend.SimpleStorage.num_data_storage_units == 1
    assert config.ray_kwargs.ray_init.resources[RAY_DEVICE_RESOURCE] == config.trainer.n_gpus_per_node
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.ACTGUIDE_DEVICE == "cpu"
    assert all(isinstance(v, str) for v in config.ray_kwargs.ray_init.runtime_env.env_vars.values())
    # step cost: micro-batches by tokens for the update and both log-prob passes, and a short replay-buffer poll
    actor_rollout_ref = config.actor_rollout_ref
    assert actor_rollout_ref.actor.use_dynamic_bsz
    assert actor_rollout_ref.rollout.log_prob_use_dynamic_bsz and actor_rollout_ref.ref.log_prob_use_dynamic_bsz
    budget = actor_rollout_ref.actor.ppo_max_token_len_per_gpu
    assert actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu == budget
    assert actor_rollout_ref.ref.log_prob_max_token_len_per_gpu == budget
    assert config.trainer.v1.sampler.sampler_kwargs.poll_interval == 0.1


# ---------------------------------------------------------------------------------------------------------------
# verl's TrainingWorker (fsdp2) on CPU
# ---------------------------------------------------------------------------------------------------------------

BATCH, PROMPT_LEN, RESPONSE_LEN = 4, 6, 5


def _left_right_padded_batch():
    """Random prompts/responses: row 0 has a left-padded prompt, row 1 a right-padded response."""
    from tensordict import TensorDict

    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, 250, (BATCH, PROMPT_LEN), generator=generator)
    responses = torch.randint(0, 250, (BATCH, RESPONSE_LEN), generator=generator)
    attention_mask = torch.ones(BATCH, PROMPT_LEN + RESPONSE_LEN, dtype=torch.long)
    attention_mask[0, :2] = 0
    attention_mask[1, PROMPT_LEN + 3 :] = 0
    return TensorDict(
        {
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": attention_mask,
            "position_ids": torch.clamp(attention_mask.cumsum(-1) - 1, min=0),
            "response_mask": attention_mask[:, PROMPT_LEN:].clone(),
        },
        batch_size=[BATCH],
    )


def _engine_batch(padded, **extra):
    """The no-padding (nested) layout the V1 trainer hands to TrainingWorker."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    data = left_right_2_no_padding(padded.clone())
    tu.assign_non_tensor(data, temperature=1.0, calculate_entropy=False, global_token_num=[1] * BATCH, **extra)
    return data


def _response_log_probs(output, padded) -> torch.Tensor:
    from verl.workers.utils.padding import no_padding_2_padding

    return no_padding_2_padding(output["log_probs"], _engine_batch(padded)) * padded["response_mask"]


def _hf_response_log_probs(model_path: Path, padded) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="sdpa")
    with torch.no_grad():
        logits = model(
            input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], position_ids=padded["position_ids"]
        ).logits
    rows = torch.log_softmax(logits[:, PROMPT_LEN - 1 : -1].float(), dim=-1)
    log_probs = rows.gather(-1, padded["responses"].unsqueeze(-1)).squeeze(-1)
    return log_probs * padded["response_mask"]


def nll_of_responses(model_output, data, dp_group=None):
    """Mean negative log-likelihood of response tokens: a loss whose step must raise their log-probs."""
    from verl.workers.utils.padding import no_padding_2_padding

    log_probs = no_padding_2_padding(model_output["log_probs"], data)
    mask = data["response_mask"].to(log_probs.dtype)
    return -(log_probs * mask).sum() / mask.sum(), {}


@pytest.mark.integration
def test_training_worker_in_process_matches_hf_and_steps(single_rank_gloo, tiny_bytes_model, training_worker_config):
    from verl.workers.engine_workers import TrainingWorker

    worker = TrainingWorker(training_worker_config(tiny_bytes_model))
    worker.reset()
    padded = _left_right_padded_batch()

    before = _response_log_probs(worker.infer_batch(_engine_batch(padded, compute_loss=False)), padded)
    torch.testing.assert_close(before, _hf_response_log_probs(tiny_bytes_model, padded), atol=1e-5, rtol=0)

    worker.set_loss_fn(nll_of_responses)
    worker.train_mini_batch(_engine_batch(padded, mini_batch_size=BATCH, epochs=1, seed=0))
    after = _response_log_probs(worker.infer_batch(_engine_batch(padded, compute_loss=False)), padded)
    assert after.sum() > before.sum()  # one NLL step made the responses more likely


@pytest.mark.integration
def test_training_worker_through_ray_worker_group(cpu_ray, tiny_bytes_model, training_worker_config):
    """The same worker as a verl RayWorkerGroup on the CPU platform's resource pool (needs the plugin hook)."""
    import ray
    from verl.single_controller.ray import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup
    from verl.workers.engine_workers import TrainingWorker

    pool = RayResourcePool(process_on_nodes=[1], use_gpu=True, max_colocate_count=1)
    group = RayWorkerGroup(
        resource_pool=pool,
        ray_cls_with_init=RayClassWithInitArgs(
            cls=ray.remote(TrainingWorker), config=training_worker_config(tiny_bytes_model)
        ),
        device_name="cpu",
    )
    group.reset()
    padded = _left_right_padded_batch()
    output = group.infer_batch(_engine_batch(padded, compute_loss=False)).get()  # DataProtoFuture
    log_probs = _response_log_probs(output, padded)
    torch.testing.assert_close(log_probs, _hf_response_log_probs(tiny_bytes_model, padded), atol=1e-5, rtol=0)
