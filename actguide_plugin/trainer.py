"""The ActGuide trainer for verl's V1 (TransferQueue) synchronous trainer, and its TaskRunner.

verl 0.9.1 APIs relied on (``verl/trainer/ppo/v1/trainer_base.py``, ``trainer_sync.py``, ``main_ppo.py``):

* ``PPOTrainerSync`` (trainer mode ``"sync"``): ``_step_once`` computes old log-probs
  (``_compute_old_log_prob``), then reference log-probs, advantages and the actor update, all reading and
  writing per-trajectory fields in TransferQueue (``tq.kv_batch_get`` / ``tq.kv_batch_put``).
* The string ``"sync"`` is hard-coded for trainer-mode semantics (replay buffer, weight sync), so we keep the
  mode and substitute the class in our own TaskRunner instead of registering a new mode name.
* ``actor_rollout_wg.set_loss_fn(fn)`` replaces the actor's loss wrapper (``ppo_loss``) on every worker.
* ``_save_checkpoint`` / ``_load_checkpoint`` write/read ``{default_local_dir}/global_step_{N}/``.

The prompt swap: old log-probs are computed on the guided view the trajectory was sampled with; right after,
guided rows are switched to the unguided view — ``prompts``, ``input_ids``, ``attention_mask`` and
``position_ids`` together, the response ids untouched — so the reference log-probs (KL) and the actor's
numerator π_θ(y | x) see the unguided prompt. No forward pass is added compared with plain GRPO.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

import ray
import torch
import transfer_queue as tq
from verl.trainer.main_ppo import TaskRunnerV1
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.model import compute_position_id_with_mask
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from actguide_plugin.core.cache import LevelCache
from actguide_plugin.core.metrics import group_metrics
from actguide_plugin.core.search import GroupOutcome
from actguide_plugin.rollout_manager import IS_GUIDED_FIELD, UNGUIDED_PROMPTS_FIELD
from actguide_plugin.state import state_actor
from actguide_plugin.verl_config import actguide_config
from actguide_plugin.verl_loss import make_actguide_loss_fn

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

METRIC_PREFIX = "actguide/"


def check_verl_config(config: Any) -> None:
    """Settings ActGuide cannot work without; each error names the key to change."""
    actor = config.actor_rollout_ref.actor
    rollout = config.actor_rollout_ref.rollout
    problems = []
    if actor.policy_loss.get("loss_mode") != "actguide":
        problems.append("actor_rollout_ref.actor.policy_loss.loss_mode must be 'actguide'")
    if actor.get("use_prefix_grouper", False):
        problems.append("actor_rollout_ref.actor.use_prefix_grouper must be false (guided rows break shared prefixes)")
    manager = rollout.get("agent", {}).get("agent_loop_manager_class") or ""
    if not manager.startswith("actguide_plugin."):
        problems.append(
            "actor_rollout_ref.rollout.agent.agent_loop_manager_class must be "
            "actguide_plugin.rollout_manager.ActGuideAgentLoopManager"
        )
    if config.trainer.v1.trainer_mode != "sync":
        problems.append("trainer.v1.trainer_mode must be 'sync' (ActGuide's trainer extends the sync trainer)")
    ratio_source = actguide_config(config).ratio_source
    bypass = bool(config.algorithm.get("rollout_correction", {}).get("bypass_mode", False))
    if (ratio_source == "rollout") != bypass:
        problems.append(
            f"actguide.ratio_source={ratio_source} needs algorithm.rollout_correction.bypass_mode={not bypass}"
        )
    if ratio_source == "rollout" and not rollout.get("calculate_log_probs", False):
        problems.append("actguide.ratio_source=rollout needs actor_rollout_ref.rollout.calculate_log_probs=true")
    if problems:
        raise ValueError("ActGuide-RL config: " + "; ".join(problems))


def swap_to_unguided(rows: dict[str, list[torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """New model-input fields for guided rows: unguided prompt ids + the unchanged response ids.

    ``rows`` holds per-row 1-D tensors under ``actguide_unguided_prompts`` and ``responses``.
    """
    swapped = []
    for prompt_ids, response_ids in zip(rows[UNGUIDED_PROMPTS_FIELD], rows["responses"], strict=True):
        input_ids = torch.cat([prompt_ids, response_ids])
        attention_mask = torch.ones_like(input_ids)
        swapped.append(
            {
                "prompts": prompt_ids,
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "position_ids": compute_position_id_with_mask(attention_mask),
            }
        )
    return swapped


class ActGuideTrainer(PPOTrainerSync):
    """``PPOTrainerSync`` + prompt swap, ActGuide loss, ``actguide/*`` metrics and the warm-start cache."""

    def __init__(self, config):
        check_verl_config(config)
        super().__init__(config)
        self.actguide = actguide_config(config)
        self.state = state_actor()  # before init(): _load_checkpoint restores the cache into it

    def init(self):
        super().init()
        actor_config = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
        self.actor_rollout_wg.set_loss_fn(make_actguide_loss_fn(actor_config, self.actguide.objective_config()))

    def _compute_old_log_prob(self, batch, metrics: dict):
        batch = super()._compute_old_log_prob(batch, metrics)  # on the guided view (what was sampled)
        metrics.update(self._swap_guided_rows(batch))
        return batch

    def _swap_guided_rows(self, batch) -> dict[str, float]:
        data = tq.kv_batch_get(
            keys=batch.keys,
            partition_id=batch.partition_id,
            select_fields=[IS_GUIDED_FIELD, UNGUIDED_PROMPTS_FIELD, "responses"],
        )
        guided = [i for i, flag in enumerate(data[IS_GUIDED_FIELD].reshape(-1).tolist()) if flag > 0.5]
        if guided:
            rows = {name: [data[name][i] for i in guided] for name in (UNGUIDED_PROMPTS_FIELD, "responses")}
            tq.kv_batch_put(
                keys=[batch.keys[i] for i in guided],
                partition_id=batch.partition_id,
                fields=list_of_dict_to_tensordict(swap_to_unguided(rows)),
            )
        return {METRIC_PREFIX + "guided_trajectory_frac": len(guided) / max(len(batch.keys), 1)}

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        metrics.update(self._search_metrics())
        metrics.update(_shift_metrics_from_actor(metrics))

    def _search_metrics(self) -> dict[str, float]:
        summaries = ray.get(self.state.pop_summaries.remote())
        outcomes = [GroupOutcome.from_summary({k: v for k, v in s.items() if k != "global_steps"}) for s in summaries]
        return {METRIC_PREFIX + k: v for k, v in group_metrics(outcomes, float).items()}

    def _cache_path(self) -> Path:
        """The warm-start cache file inside the checkpoint folder of the current global step."""
        if self.config.trainer.resume_mode == "resume_path" and self.config.trainer.resume_from_path:
            folder = Path(self.config.trainer.resume_from_path)
        else:
            folder = Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}"
        return folder / self.actguide.cache_file

    def _save_checkpoint(self):
        super()._save_checkpoint()
        folder = Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}"
        LevelCache.from_dict(ray.get(self.state.cache_state.remote())).save(folder / self.actguide.cache_file)

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if self.global_steps == 0:  # nothing was resumed
            return
        path = self._cache_path()
        if not path.exists():
            logger.warning(f"no ActGuide warm-start cache at {path}: searches start cold")
            return
        restored = ray.get(self.state.load_cache_state.remote(LevelCache.load(path).to_dict()))
        logger.info(f"restored ActGuide warm-start cache ({restored} tasks) from {path}")


def _shift_metrics_from_actor(metrics: dict[str, Any]) -> dict[str, float]:
    """The loss logs Δ's mean and mean square under ``actor/actguide/...``; report mean and variance."""
    out = {}
    for key in list(metrics):
        if key.startswith("actor/" + METRIC_PREFIX):
            out[key[len("actor/") :]] = metrics.pop(key)
    mean, sqmean = (
        out.pop(METRIC_PREFIX + "offpolicy_shift_mean", None),
        out.pop(METRIC_PREFIX + "offpolicy_shift_sqmean", None),
    )
    if mean is not None and sqmean is not None:
        out[METRIC_PREFIX + "offpolicy_shift_mean"] = mean
        out[METRIC_PREFIX + "offpolicy_shift_var"] = max(sqmean - mean**2, 0.0)
    return out


class ActGuideTaskRunnerImpl(TaskRunnerV1.__ray_actor_class__):
    """verl's V1 TaskRunner, building :class:`ActGuideTrainer` where verl builds ``PPOTrainerSync``.

    ``TaskRunnerV1.run`` looks the trainer class up with ``verl.trainer.ppo.v1.get_trainer_cls(mode)`` at
    call time; this runner (its own Ray actor process) answers that lookup for mode ``"sync"`` with ours,
    keeping every other step of verl's run (TransferQueue, agent-loop manager, tracking) unchanged.
    """

    def run(self, config):
        v1 = importlib.import_module("verl.trainer.ppo.v1")
        original = v1.get_trainer_cls

        def trainer_cls(mode: str):
            if mode != "sync":
                raise ValueError(f"trainer.v1.trainer_mode={mode!r}: ActGuide-RL runs with the 'sync' trainer")
            return ActGuideTrainer

        v1.get_trainer_cls = trainer_cls
        try:
            return super().run(config)
        finally:
            v1.get_trainer_cls = original


ActGuideTaskRunner = ray.remote(ActGuideTaskRunnerImpl)
