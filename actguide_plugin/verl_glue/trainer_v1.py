"""The ActGuide trainer for verl's V1 (TransferQueue) synchronous trainer, and its TaskRunner.

verl 0.9.1 APIs relied on (``verl/trainer/ppo/v1/trainer_base.py``, ``trainer_sync.py``, ``main_ppo.py``):

* ``PPOTrainerSync`` (trainer mode ``"sync"``): ``_step_once`` computes old log-probs
  (``_compute_old_log_prob``), then reference log-probs, advantages and the actor update, all reading and
  writing per-trajectory fields in TransferQueue (``tq.kv_batch_get`` / ``tq.kv_batch_put``).
* The string ``"sync"`` is hard-coded for trainer-mode semantics (replay buffer, weight sync), so we keep the
  mode and substitute the class in our own TaskRunner instead of registering a new mode name.
* The loss wrapper, the warm-start cache and run config in checkpoints and the ``val-actguide/*`` metrics are the
  classic trainer's too (:mod:`.trainer_common`).
* ``replay_buffer.refill_fn``: groups with no trajectory are replaced by fresh prompts, within a bound
  (:mod:`.empty_step`).
* ``ReplayBuffer.poll_interval``: the sync replay buffer checks TransferQueue for finished rollouts every 2 s, a
  constructor default that no config key reaches (``_build_replay_buffer`` passes only
  ``trainer.v1.sampler.sampler_kwargs`` on, unread); :func:`set_poll_interval` applies
  ``trainer.v1.sampler.sampler_kwargs.poll_interval`` to the built-in buffer.
* ``_update_actor`` puts the actor's reduced metrics (``actor/...``) into the step's ``metrics``; the loss's summed
  statistics are turned into ``actguide/*`` means right there, once per update (:func:`.metrics.loss_metrics`).
* Padding rows appended by ``_balance_batch`` carry the tag ``is_padding`` (:mod:`.prompt_swap`).
* ``_compute_ref_log_prob`` writes ``ref_log_prob`` into TransferQueue. With ``trainer.rollout_data_dir`` set we
  dump, next to verl's generations, what the trainer computed per row (:meth:`ActGuideTrainer._dump_rows`): the
  prompt ids the reference and the actor saw, the response ids, old and reference log-probs, and each guided row's
  sampled prompt as text. That file is how a user (and the e2e test) can check the prompt swap and read the plan.
  With ``ACTGUIDE_LOGGING_LEVEL=INFO`` one guided prompt per step is logged as well.

The prompt swap (:mod:`.prompt_swap`) runs right after the old log-probs are computed on the guided view the
trajectory was sampled with, so the reference log-probs (KL) and the actor's numerator π_θ(y | x) see the
unguided prompt. No forward pass is added compared with plain GRPO. With ``actguide.ratio_context=guided`` (the
paper's Table 4 ablation) guided rows keep their guided prompt. Either way, padding rows lose the guided flag they
cloned, and each row gets its task's L (``NUM_ACTIONS_FIELD``) for the loss's per-k/L statistics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import ray
import torch
import transfer_queue as tq
from verl.trainer.main_ppo import TaskRunnerV1
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from actguide_plugin.logs import get_logger
from actguide_plugin.names import (
    IS_GUIDED_FIELD,
    LEVEL_FIELD,
    METRIC_PREFIX,
    NUM_ACTIONS_FIELD,
    ROWS_DUMP_FILE,
    UNGUIDED_PROMPT_IDS_FIELD,
)
from actguide_plugin.verl_glue.config import check_verl_config
from actguide_plugin.verl_glue.empty_step import guard_refills
from actguide_plugin.verl_glue.metrics import loss_metrics, search_metrics
from actguide_plugin.verl_glue.prompt_swap import guided_and_padding_rows, swap_to_unguided
from actguide_plugin.verl_glue.state import state_actor
from actguide_plugin.verl_glue.trainer_common import ActGuideTrainerMixin, rebound

logger = get_logger(__name__)

POLL_INTERVAL_KEY = "poll_interval"  # in trainer.v1.sampler.sampler_kwargs


def set_poll_interval(replay_buffer, sampler_config) -> None:
    """Apply ``sampler_kwargs.poll_interval`` (seconds) to verl's built-in replay buffer, if set.

    The trainer notices a finished rollout only at its next poll, so each step (and each validation) waits half the
    interval on average: nothing next to a GPU step of minutes, but 1 s of a CPU step of a few seconds. A custom
    sampler (``custom_sampler.path``) gets ``sampler_kwargs`` itself and is left alone.
    """
    poll_interval = sampler_config.get("sampler_kwargs", {}).get(POLL_INTERVAL_KEY)
    custom = sampler_config.get("custom_sampler") or {}
    if poll_interval is None or (custom.get("path") and custom.get("name")):
        return
    if not float(poll_interval) > 0:
        raise ValueError(f"trainer.v1.sampler.sampler_kwargs.{POLL_INTERVAL_KEY} must be > 0 s, got {poll_interval}")
    replay_buffer.poll_interval = float(poll_interval)


class ActGuideTrainer(ActGuideTrainerMixin, PPOTrainerSync):
    """``PPOTrainerSync`` + prompt swap, ActGuide loss, ``actguide/*`` metrics and the warm-start cache."""

    def __init__(self, config):
        self.actguide = check_verl_config(config)
        self._guided_prompts: dict[str, list[int]] = {}  # this step's guided rows: trajectory key → sampled prompt
        super().__init__(config)
        set_poll_interval(self.replay_buffer, config.trainer.v1.sampler)
        self.state = state_actor()  # before init(): _load_checkpoint restores the cache into it
        self._record_tool_config()
        guard_refills(self.replay_buffer, self.state, lambda: self.global_steps, config.data.train_batch_size)

    def init(self):
        super().init()
        self._install_loss()

    def _compute_old_log_prob(self, batch, metrics: dict):
        batch = super()._compute_old_log_prob(batch, metrics)  # on the guided view (what was sampled)
        return self._prepare_guided_rows(batch, metrics)

    def _prepare_guided_rows(self, batch, metrics: dict):
        """Swap real guided rows to their unguided view (unless ``ratio_context=guided``), unflag padding rows,
        and write each row's L (a new field: the returned batch lists it, as verl's own puts do)."""
        data = tq.kv_batch_get(
            keys=batch.keys,
            partition_id=batch.partition_id,
            select_fields=[IS_GUIDED_FIELD, UNGUIDED_PROMPT_IDS_FIELD, "prompts", "responses", "extra_fields"],
        )
        guided, padding = guided_and_padding_rows(data[IS_GUIDED_FIELD].reshape(-1).tolist(), batch.tags)
        self._guided_prompts = {batch.keys[i]: data["prompts"][i].tolist() for i in guided}  # as sampled
        if guided and logger.isEnabledFor(logging.INFO):
            key = batch.keys[guided[0]]
            logger.info(f"step {self.global_steps}: guided prompt of {key}: {self._decode(self._guided_prompts[key])}")
        if guided and self.actguide.ratio_context == "unguided":
            swapped = swap_to_unguided(
                [data[UNGUIDED_PROMPT_IDS_FIELD][i] for i in guided], [data["responses"][i] for i in guided]
            )
            tq.kv_batch_put(
                keys=[batch.keys[i] for i in guided],
                partition_id=batch.partition_id,
                fields=list_of_dict_to_tensordict(swapped),
            )
        extra_fields = data["extra_fields"]  # a NonTensorStack, or tensordict's LinkedList (a list) of dicts
        extra_fields = extra_fields.tolist() if hasattr(extra_fields, "tolist") else list(extra_fields)
        rows = [
            {
                IS_GUIDED_FIELD: torch.tensor(0.0 if i in padding else flag),
                NUM_ACTIONS_FIELD: torch.tensor(int(extra.get(NUM_ACTIONS_FIELD, 0)), dtype=torch.int64),
            }
            for i, (flag, extra) in enumerate(
                zip(data[IS_GUIDED_FIELD].reshape(-1).tolist(), extra_fields, strict=True)
            )
        ]
        real = len(batch.keys) - len(padding)
        metrics[METRIC_PREFIX + "guided_trajectory_frac"] = len(guided) / max(real, 1)
        return tq.kv_batch_put(
            keys=batch.keys, partition_id=batch.partition_id, fields=list_of_dict_to_tensordict(rows)
        )

    def _compute_ref_log_prob(self, batch, metrics: dict):
        batch = super()._compute_ref_log_prob(batch, metrics)
        folder = self.config.trainer.get("rollout_data_dir", None)
        if folder:
            self._dump_rows(batch, Path(folder) / ROWS_DUMP_FILE.format(step=self.global_steps))
        return batch

    def _dump_rows(self, batch, path: Path) -> None:
        """One JSON line per real row: key, guided flag, level, the prompt ids under the reference and the actor's
        numerator (the unguided prompt for a swapped row), the unguided prompt ids, the response ids and mask (1 on
        the policy's tokens, 0 on tool responses), the old (sampling view) and reference log-probs of the response
        tokens, and a guided row's prompt as sampled, as text (``guided_prompt``: the plan the policy was shown,
        with the user's tool names)."""
        fields = [
            *("prompts", "responses", "response_mask", "old_log_probs", "ref_log_prob"),
            *(IS_GUIDED_FIELD, LEVEL_FIELD, UNGUIDED_PROMPT_IDS_FIELD),
        ]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        rows = (
            {"key": key, **{name: data[name][i].tolist() for name in fields}}
            for i, (key, tag) in enumerate(zip(batch.keys, batch.tags, strict=True))
            if not tag.get("is_padding", False)
        )
        self._write_rows(path, rows, self._guided_prompts)

    def _update_actor(self, batch, metrics: dict):
        batch = super()._update_actor(batch, metrics)
        metrics.update(loss_metrics(metrics))
        return batch

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        metrics.update(search_metrics(self.state))


class ActGuideTaskRunnerImpl(TaskRunnerV1.__ray_actor_class__):
    """verl's V1 TaskRunner, building :class:`ActGuideTrainer` where verl builds ``PPOTrainerSync``.

    ``TaskRunnerV1.run`` looks the trainer class up with ``verl.trainer.ppo.v1.get_trainer_cls(mode)`` at
    call time; this runner (its own Ray actor process) answers that lookup for mode ``"sync"`` with ours,
    keeping every other step of verl's run (TransferQueue, agent-loop manager, tracking) unchanged.
    """

    def run(self, config):
        def trainer_cls(mode: str):
            if mode != "sync":
                raise ValueError(f"trainer.v1.trainer_mode={mode!r}: ActGuide-RL runs with the 'sync' trainer")
            return ActGuideTrainer

        with rebound("verl.trainer.ppo.v1", "get_trainer_cls", trainer_cls):
            return super().run(config)


ActGuideTaskRunner = ray.remote(ActGuideTaskRunnerImpl)
