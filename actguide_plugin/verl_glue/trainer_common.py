"""What ActGuide's trainer does the same way on both of verl's trainers (:mod:`.trainer_v1`, the V1 sync trainer;
:mod:`.trainer_v0`, the classic ``RayPPOTrainer``): the loss, the warm-start cache, run config and resolved tool
config in checkpoints, the ``val-actguide/*`` metrics, and the per-row dump.

The tool yaml (``multi_turn.tool_config_path``) is resolved once when the trainer is built (corpus path, URLs and
cache paths as this run uses them, ``${actguide_env:...}`` included) and put into the config as
``actguide_run.tool_config``, so verl's loggers record it; every ``global_step_*`` folder gets it as
``actguide_tool_config.yaml`` next to ``actguide_run_config.yaml`` and the warm-start cache. Those files are written
*before* verl's own save: verl ends ``_save_checkpoint`` with the ``on_save`` of the user's
``trainer.checkpoint_callback_class`` (an upload, a model registry), which must find the checkpoint complete.

verl 0.9.1 APIs relied on (identical on both trainers): ``self.config`` (read by ``fit()`` for its loggers),
``self.tokenizer``, ``self.global_steps``, ``self.val_dataloader``, ``self.actor_rollout_wg.set_loss_fn(fn)`` (the
actor's loss wrapper on every worker), ``_save_checkpoint()`` / ``_load_checkpoint()`` writing and reading
``{default_local_dir}/global_step_{N}/`` (the latter sets ``global_steps``, 0 when nothing was resumed; the V1
former calls ``checkpoint_callback.on_save`` last), and ``_validate()`` returning the validation metrics.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import ray
from omegaconf import OmegaConf, open_dict
from verl.utils.config import omega_conf_to_dataclass

from actguide_plugin.core.level_cache import LevelCache
from actguide_plugin.logs import get_logger
from actguide_plugin.names import GUIDED_PROMPT_TEXT, RUN_CONFIG_FILE, RUN_INFO, RUN_INFO_TOOLS, TOOL_CONFIG_FILE
from actguide_plugin.outputs import StagedOutputs, atomic_file
from actguide_plugin.verl_glue.loss import make_actguide_loss_fn
from actguide_plugin.verl_glue.validation import collect_validation

logger = get_logger(__name__)


@contextlib.contextmanager
def rebound(module: str, name: str, value: Any) -> Iterator[None]:
    """``module.name = value`` for the duration: verl's TaskRunners look their trainer up there at call time, and each
    runs in its own Ray actor process, so nothing else sees the substitution."""
    target = importlib.import_module(module)
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


def resolved_tool_config(config) -> dict[str, Any] | None:
    """The tool yaml the rollout workers load, resolved in this process (None: no ``tool_config_path``)."""
    path = config.actor_rollout_ref.rollout.multi_turn.get("tool_config_path")
    if not path:
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:  # a missing file, bad YAML, an undeclared ${actguide_env:...} name
        raise ValueError(f"actor_rollout_ref.rollout.multi_turn.tool_config_path={path}: {err}") from err


class ActGuideTrainerMixin:
    """Mixed in before verl's trainer class; the subclass sets ``self.actguide`` and ``self.state`` (the state
    actor) before verl's ``_load_checkpoint`` runs."""

    def _record_tool_config(self) -> None:
        """``actguide_run.tool_config``: the resolved tool yaml, in the config verl's loggers record."""
        tools = resolved_tool_config(self.config)
        if tools is not None:
            with open_dict(self.config):
                OmegaConf.update(self.config, f"{RUN_INFO}.{RUN_INFO_TOOLS}", tools, force_add=True)

    def _install_loss(self) -> None:
        """ActGuide's loss wrapper on every actor worker (guided flags required while guidance is on)."""
        actor_config = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
        loss_fn = make_actguide_loss_fn(
            actor_config, self.actguide.objective_config(), require_flags=self.actguide.mode != "off"
        )
        self.actor_rollout_wg.set_loss_fn(loss_fn)

    def _decode(self, ids: list[int]) -> str:
        """Prompt text as verl's own rollout dump decodes it (special tokens skipped)."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _write_rows(self, path: Path, rows: Iterable[dict[str, Any]], guided_prompts: dict[str, list[int]]) -> None:
        """``trainer.rollout_data_dir``'s per-row dump: one JSON line per row, with a guided row's prompt as sampled,
        as text (``guided_prompt``: the plan the policy was shown, with the user's tool names)."""
        with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8") as f:  # a reader never sees half a step
            for row in rows:
                guided_prompt = guided_prompts.get(row["key"])
                row[GUIDED_PROMPT_TEXT] = None if guided_prompt is None else self._decode(guided_prompt)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def _cache_path(self) -> Path:
        """The warm-start cache file inside the checkpoint folder of the current global step."""
        if self.config.trainer.resume_mode == "resume_path" and self.config.trainer.resume_from_path:
            folder = Path(self.config.trainer.resume_from_path)
        else:
            folder = Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}"
        return folder / self.actguide.cache_file

    def _save_checkpoint(self):
        """The recipe's files first, then verl's save, which ends with the user's checkpoint callback."""
        folder = Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}"
        LevelCache.from_dict(ray.get(self.state.cache_state.remote())).save(folder / self.actguide.cache_file)
        tools = self.config.get(RUN_INFO, {}).get(RUN_INFO_TOOLS)
        with StagedOutputs(folder) as out:
            out.text(RUN_CONFIG_FILE, OmegaConf.to_yaml(self.config, resolve=True))
            if tools is not None:
                out.text(TOOL_CONFIG_FILE, OmegaConf.to_yaml(tools))
            out.commit()
        super()._save_checkpoint()

    def _load_checkpoint(self):
        result = super()._load_checkpoint()
        if self.global_steps == 0:  # nothing was resumed
            return result
        path = self._cache_path()
        if not path.exists():
            logger.warning(f"no ActGuide warm-start cache at {path}: searches start cold")
            return result
        restored = ray.get(self.state.load_cache_state.remote(LevelCache.load(path).to_dict()))
        logger.info(f"restored ActGuide warm-start cache ({restored} tasks) from {path}")
        return result

    def _validate(self, *args, **kwargs) -> dict[str, float]:
        samples = int(self.config.actor_rollout_ref.rollout.val_kwargs.n)
        ray.get(self.state.begin_validation.remote(len(self.val_dataloader.dataset) * samples))
        metrics = super()._validate(*args, **kwargs)
        val_only = bool(self.config.trainer.get("val_only", False))
        records = ray.get(self.state.pop_validation_records.remote())
        metrics.update(collect_validation(records, self.actguide, samples, self.global_steps, val_only))
        return metrics
