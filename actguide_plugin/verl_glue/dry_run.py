"""What a run will do per step, read from its composed config: ``actguide-train --dry-run`` (``DRY_RUN=1`` in the
run scripts), before anyone rents GPUs. Nothing is started: no Ray, no model, no data loading beyond a row count.

verl 0.9.1 config keys relied on: ``trainer.{n_gpus_per_node,nnodes,total_epochs,total_training_steps}``,
``data.{train_batch_size,max_prompt_length,max_response_length,train_files}``,
``actor_rollout_ref.actor.{ppo_mini_batch_size,ppo_epochs,use_dynamic_bsz,ppo_max_token_len_per_gpu,
ppo_micro_batch_size_per_gpu,optim.lr}`` and ``actor_rollout_ref.rollout.{name,n,tensor_model_parallel_size,
prompt_length,response_length}``.
"""

from __future__ import annotations

import math
from typing import Any


def _train_rows(files: Any) -> int | None:
    """Rows of the local training parquet files (None when any is missing or remote)."""
    import pyarrow.parquet as pq

    total = 0
    for path in [files] if isinstance(files, str) else list(files or []):
        try:
            total += pq.ParquetFile(str(path)).metadata.num_rows
        except (OSError, ValueError):
            return None
    return total


def batch_plan(config: Any, actguide: Any, reward: str) -> list[str]:
    """The run's per-step arithmetic as lines of text."""
    trainer, data = config.trainer, config.data
    actor, rollout = config.actor_rollout_ref.actor, config.actor_rollout_ref.rollout
    gpus = int(trainer.n_gpus_per_node) * int(trainer.nnodes)
    tp = int(rollout.get("tensor_model_parallel_size", 1) or 1)
    prompts, n = int(data.train_batch_size), int(rollout.n)
    mini = int(actor.ppo_mini_batch_size)
    epochs = int(actor.get("ppo_epochs", 1) or 1)
    prompt_len, response_len = int(data.max_prompt_length), int(data.max_response_length)
    if actor.get("use_dynamic_bsz", False):
        micro = f"dynamic, {int(actor.ppo_max_token_len_per_gpu):,} tokens per GPU per micro-batch"
    else:
        micro = f"{actor.get('ppo_micro_batch_size_per_gpu')} rows per GPU per micro-batch"
    rows = _train_rows(data.train_files)
    if trainer.get("total_training_steps"):
        steps = f"{int(trainer.total_training_steps)} (trainer.total_training_steps)"
    elif rows is not None:
        total = int(trainer.total_epochs) * math.ceil(rows / prompts)
        steps = f"{total} ({rows} rows / {prompts} per step x {trainer.total_epochs} epochs)"
    else:
        steps = f"{trainer.total_epochs} epochs over data.train_files (not readable here: rows unknown)"
    guidance = (
        "none (plain GRPO)"
        if actguide.mode == "off"
        else f"{actguide.mode}: a hard prompt adds probes of m={actguide.probe_m} and a guided group of n={n}"
    )
    return [
        f"GPUs: {gpus} ({trainer.n_gpus_per_node} per node x {trainer.nnodes} nodes); rollout {rollout.name}, "
        f"TP {tp} -> {gpus // tp if gpus % tp == 0 else f'{gpus}/{tp} (not divisible!)'} replicas",
        f"per step: {prompts} prompts x n={n} = {prompts * n} trajectories; guidance {guidance}",
        f"actor update: mini-batches of {mini} prompts ({mini * n} trajectories) x {epochs} epoch(s) = "
        f"{prompts // mini * epochs} optimizer steps per step; micro-batches: {micro}",
        f"lengths: prompt {prompt_len:,} + response {response_len:,} = {prompt_len + response_len:,} tokens "
        f"(rollout prompt_length {rollout.get('prompt_length')}, response_length {rollout.get('response_length')}, "
        f"max_model_len {rollout.get('max_model_len')}; loss aggregation {actor.get('loss_agg_mode')})",
        f"training steps: {steps}; lr {actor.optim.lr}",
        f"reward: {reward}",
    ]
