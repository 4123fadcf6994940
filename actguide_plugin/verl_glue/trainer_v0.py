"""The ActGuide trainer for verl's classic trainer (``trainer.use_v1=false``: ``RayPPOTrainer`` and ``DataProto``),
and its TaskRunner. Same algorithm as :mod:`.trainer_v1`; only the data plane differs.

verl 0.9.1 APIs relied on (``verl/trainer/ppo/ray_trainer.py``, ``verl/trainer/main_ppo_v0.py``):

* ``RayPPOTrainer.fit`` is one loop; its seams are the methods it calls on the step's ``DataProto`` (``batch``):
  ``_compute_old_log_prob(batch)`` → ``(DataProto, mfu)`` (skipped in bypass mode, where
  ``apply_bypass_mode`` copies the rollout's log-probs), then ``_compute_ref_log_prob(batch)`` (with a reference
  policy), ``_compute_values(batch)`` (with a critic) and ``_update_actor(batch)``, whose returned
  ``meta_info["metrics"]`` ``fit`` reduces and logs. ``fit`` keeps the same ``batch`` object throughout
  (``union`` is in place), so the rows prepared in the first of these hooks are what the others see.
* Per-row columns: the rollout workers' ``extra_fields`` arrive as object columns of ``non_tensor_batch``
  (:mod:`.rollout_v0`); ``to_tensordict()`` ships tensors *and* those columns to the workers and refuses a key
  present in both, so the guided flag, level and L are moved into ``batch.batch`` as ``[bsz]`` tensors, which
  verl's balancing (``reorder``) and micro-batching (index selects) carry row by row to the loss.
* ``init_workers()`` builds ``actor_rollout_wg``; ``set_loss_fn`` as on V1.
* ``main_ppo_v0.TaskRunner.run`` builds ``RayPPOTrainer`` through its module global; our TaskRunner (its own Ray
  actor process) rebinds that global to :class:`ActGuideRayTrainer` for the call.

The prompt swap (:func:`.prompt_swap.swap_to_unguided_padded`) runs once per step, right after the old log-probs
(computed on the guided view the trajectory was sampled with), or in bypass mode before the first of the reference
log-probs, values and update: the reference log-probs (KL) and the actor's numerator π_θ(y | x) see the unguided
prompt. ``actguide.ratio_context=guided`` (Table 4 ablation) keeps guided prompts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import ray
import torch
from verl.trainer.main_ppo_v0 import BaseTaskRunner, TaskRunner
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.utils.metric import reduce_metrics

from actguide_plugin.logs import get_logger
from actguide_plugin.names import (
    IS_GUIDED_FIELD,
    LEVEL_FIELD,
    LOSS_NAME,
    METRIC_PREFIX,
    NUM_ACTIONS_FIELD,
    ROWS_DUMP_FILE,
    UNGUIDED_PROMPT_IDS_FIELD,
)
from actguide_plugin.verl_glue.config import check_verl_config
from actguide_plugin.verl_glue.metrics import loss_metrics, search_metrics
from actguide_plugin.verl_glue.prompt_swap import swap_to_unguided_padded
from actguide_plugin.verl_glue.state import state_actor
from actguide_plugin.verl_glue.trainer_common import ActGuideTrainerMixin, rebound

logger = get_logger(__name__)

ROW_FIELDS = {IS_GUIDED_FIELD: torch.float32, LEVEL_FIELD: torch.int64, NUM_ACTIONS_FIELD: torch.int64}


def move_row_fields(batch, required: bool) -> dict[str, torch.Tensor]:
    """Move the guided flag, level and L from ``non_tensor_batch`` columns into ``[bsz]`` tensors of ``batch.batch``
    (idempotent). ``required`` (guidance on): a missing column, or one whose length is not the batch's, is an error
    naming it; otherwise a missing one is zeros."""
    size = len(batch)
    moved = {}
    for name, dtype in ROW_FIELDS.items():
        if batch.batch.get(name, None) is not None:  # moved by an earlier hook of this step
            moved[name] = batch.batch[name]
            continue
        column = batch.non_tensor_batch.pop(name, None)
        if column is None and required:
            raise ValueError(
                f"ActGuide: the step's rows have no {name!r} column while guidance is on, so guided rows would be "
                "trained as unguided: actor_rollout_ref.rollout.agent.agent_loop_manager_class must be ActGuide's "
                "(actguide_plugin.verl_glue.rollout.ActGuideAgentLoopManager) and every row must come from it"
            )
        if column is not None and len(column) != size:
            raise ValueError(f"ActGuide: column {name!r} has {len(column)} values for {size} rows")
        values = [0] * size if column is None else [0 if value is None else value for value in column]
        moved[name] = batch.batch[name] = torch.tensor(np.asarray(values, dtype=np.float64), dtype=dtype)
    return moved


class ActGuideRayTrainer(ActGuideTrainerMixin, RayPPOTrainer):
    """``RayPPOTrainer`` + prompt swap, ActGuide loss, ``actguide/*`` metrics and the warm-start cache."""

    def __init__(self, config, *args, **kwargs):
        self.actguide = check_verl_config(config)
        self._prepared_step: int | None = None
        self._guided_prompts: dict[str, list[int]] = {}  # this step's guided rows: row key → sampled prompt
        self._step_metrics: dict[str, float] = {}
        super().__init__(config, *args, **kwargs)
        self.state = state_actor()  # before fit(): _load_checkpoint restores the cache into it
        self._record_tool_config()

    def init_workers(self):
        super().init_workers()
        self._install_loss()

    def _compute_old_log_prob(self, batch):
        result = super()._compute_old_log_prob(batch)  # on the guided view (what was sampled)
        self._prepare_rows(batch)
        return result

    def _compute_ref_log_prob(self, batch):
        self._prepare_rows(batch)
        ref = super()._compute_ref_log_prob(batch)
        folder = self.config.trainer.get("rollout_data_dir", None)
        if folder:
            self._dump_rows(batch, ref, Path(folder) / ROWS_DUMP_FILE.format(step=self.global_steps))
        return ref

    def _compute_values(self, batch):
        self._prepare_rows(batch)
        return super()._compute_values(batch)

    def _update_actor(self, batch):
        self._prepare_rows(batch)
        batch.non_tensor_batch.pop(UNGUIDED_PROMPT_IDS_FIELD, None)  # driver-side only: not shipped to the actor
        output = super()._update_actor(batch)
        metrics = reduce_metrics(output.meta_info["metrics"])
        metrics.update(loss_metrics(metrics))
        metrics.update(self._step_metrics)
        metrics.update(search_metrics(self.state))
        output.meta_info["metrics"] = metrics
        return output

    def _prepare_rows(self, batch) -> None:
        """Once per step: the guided flag, level and L as tensors, and real guided rows swapped to their unguided
        view (unless ``ratio_context=guided``). Rows without a response token (a failed group's placeholders) are
        not counted in ``actguide/guided_trajectory_frac``."""
        if self._prepared_step == self.global_steps:
            return
        self._prepared_step = self.global_steps
        policy_loss = self.config.actor_rollout_ref.actor.policy_loss
        if policy_loss.get("loss_mode") != LOSS_NAME:  # verl's apply_bypass_mode rewrote it in the driver config
            policy_loss.loss_mode = LOSS_NAME  # keep the saved run config (actguide-export) the recipe's
        fields = move_row_fields(batch, required=self.actguide.mode != "off")
        real = batch.batch["response_mask"].sum(dim=-1) > 0
        guided = [i for i, flag in enumerate(fields[IS_GUIDED_FIELD].tolist()) if flag > 0.5 and bool(real[i])]
        keys = self._row_keys(batch)
        prompts, mask = batch.batch["prompts"], batch.batch["attention_mask"][:, : batch.batch["prompts"].shape[1]]
        self._guided_prompts = {keys[i]: prompts[i][mask[i].bool()].tolist() for i in guided}  # as sampled
        if guided and logger.isEnabledFor(logging.INFO):
            key = keys[guided[0]]
            logger.info(f"step {self.global_steps}: guided prompt of {key}: {self._decode(self._guided_prompts[key])}")
        if guided and self.actguide.ratio_context == "unguided":
            unguided = batch.non_tensor_batch[UNGUIDED_PROMPT_IDS_FIELD]
            swap_to_unguided_padded(batch.batch, guided, [unguided[i] for i in guided], self.tokenizer.pad_token_id)
        self._step_metrics = {METRIC_PREFIX + "guided_trajectory_frac": len(guided) / max(int(real.sum()), 1)}

    @staticmethod
    def _row_keys(batch) -> list[str]:
        """``{uid}_{j}``: the j-th row of its prompt in the batch's current order."""
        seen: dict[str, int] = {}
        keys = []
        for uid in batch.non_tensor_batch["uid"]:
            keys.append(f"{uid}_{seen.get(uid, 0)}")
            seen[uid] = seen.get(uid, 0) + 1
        return keys

    def _dump_rows(self, batch, ref, path: Path) -> None:
        """The per-row dump of :mod:`.trainer_v1`, from the padded batch (padding stripped: prompt ids as the reference
        and the actor see them, response ids and mask, old and reference log-probs of the response tokens)."""
        width = batch.batch["prompts"].shape[1]
        unguided = batch.non_tensor_batch.get(UNGUIDED_PROMPT_IDS_FIELD)
        rows = []
        for i, key in enumerate(self._row_keys(batch)):
            response = batch.batch["attention_mask"][i, width:].bool()
            if not bool(batch.batch["response_mask"][i].any()):
                continue  # a failed group's placeholder
            prompt = batch.batch["attention_mask"][i, :width].bool()
            rows.append(
                {
                    "key": key,
                    "prompts": batch.batch["prompts"][i][prompt].tolist(),
                    "responses": batch.batch["responses"][i][response].tolist(),
                    "response_mask": batch.batch["response_mask"][i][response].tolist(),
                    "old_log_probs": batch.batch["old_log_probs"][i][response].tolist(),
                    "ref_log_prob": ref.batch["ref_log_prob"][i][response].tolist(),
                    **{name: batch.batch[name][i].item() for name in ROW_FIELDS if name != NUM_ACTIONS_FIELD},
                    UNGUIDED_PROMPT_IDS_FIELD: None if unguided is None else list(unguided[i]),
                }
            )
        self._write_rows(path, rows, self._guided_prompts)


class ActGuideTaskRunnerV0Impl(TaskRunner.__ray_actor_class__):
    """verl's classic TaskRunner, building :class:`ActGuideRayTrainer` where it builds ``RayPPOTrainer``."""

    def __init__(self):
        # verl's TaskRunner.__init__ only calls a zero-argument super(), which fails in a subclass of the class Ray
        # wrapped (``super(type, obj): obj must be an instance or subtype of type``)
        BaseTaskRunner.__init__(self)

    def run(self, config):
        with rebound("verl.trainer.main_ppo_v0", "RayPPOTrainer", ActGuideRayTrainer):
            return super().run(config)


ActGuideTaskRunnerV0 = ray.remote(ActGuideTaskRunnerV0Impl)
