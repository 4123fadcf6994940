"""``actguide-eval``'s glue: a validation-only run of the recipe on given parquet files, and its progress.

The evaluation is verl's own validation loop (``trainer.val_only=true``) run by the recipe's trainer, so it uses
the rollout backend of the config (vLLM/SGLang on GPUs, ``hf`` on CPU), the ``actguide_tool_agent`` loop, the
tools and the reward exactly as training does; :mod:`.validation` records every trajectory and writes the summary.
A checkpoint folder ``global_step_N`` is first exported to a Hugging Face directory (:mod:`.export`).

verl 0.9.1 APIs relied on: the config keys ``trainer.val_only``, ``trainer.val_before_train``,
``actor_rollout_ref.rollout.val_kwargs.{n,do_sample,temperature,top_p}``, ``data.val_files``/``train_files``
(verl builds the training dataloader even for a val-only run), and Ray's named actors (the state actor of
:mod:`.state`, polled by the driver for progress while ``run_ppo`` blocks).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import ray
from tqdm import tqdm

from actguide_plugin.logs import get_logger
from actguide_plugin.names import STATE_ACTOR_NAME

logger = get_logger(__name__)

POLL_SECONDS = 2.0


def _list_override(key: str, paths: Sequence[Path]) -> str:
    for path in paths:
        if "'" in str(path):
            raise ValueError(f"{path}: a path with a single quote cannot be passed to hydra")
    return f"{key}=[" + ",".join(f"'{path}'" for path in paths) + "]"


def eval_overrides(
    *,
    model_path: Path,
    data_files: Sequence[Path],
    out_dir: Path,
    samples: int,
    level: int = 0,
    level_ratio: float = 0.0,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[str]:
    """Hydra overrides that make the recipe config a validation-only run of ``model_path`` on ``data_files``."""
    if samples < 1:
        raise ValueError(f"samples per prompt must be >= 1, got {samples}")
    if not data_files:
        raise ValueError("no data files to evaluate")
    for path in data_files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such data file")
    files = [Path(p).resolve() for p in data_files]
    return [
        f"actor_rollout_ref.model.path='{Path(model_path).resolve()}'",
        _list_override("data.val_files", files),
        _list_override("data.train_files", files[:1]),  # verl builds a train dataloader even for val-only runs
        "data.train_batch_size=1",
        "actor_rollout_ref.actor.ppo_mini_batch_size=1",
        "actor_rollout_ref.actor.use_kl_loss=false",  # no reference model to build
        "trainer.val_only=true",
        "trainer.val_before_train=true",
        "trainer.resume_mode=disable",
        "trainer.logger=[console]",
        "trainer.experiment_name=actguide_eval",
        f"actor_rollout_ref.rollout.val_kwargs.n={samples}",
        f"actor_rollout_ref.rollout.val_kwargs.do_sample={'true' if samples > 1 or temperature > 0 else 'false'}",
        f"actor_rollout_ref.rollout.val_kwargs.temperature={temperature}",
        f"actor_rollout_ref.rollout.val_kwargs.top_p={top_p}",
        f"actguide.val_level={level}",
        f"actguide.val_level_ratio={level_ratio}",
        f"actguide.val_dump_dir='{Path(out_dir).resolve()}'",
    ]


class ProgressMonitor:
    """A progress bar in the driver while the evaluation runs in Ray workers (polls the state actor)."""

    def __init__(self, description: str = "evaluating") -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(description,), daemon=True)

    def __enter__(self) -> ProgressMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self, description: str) -> None:
        bar = None
        try:
            while not self._stop.wait(POLL_SECONDS):
                progress = self._poll()
                if progress is None or not progress["expected"]:
                    continue
                if bar is None:
                    bar = tqdm(total=progress["expected"], desc=description, unit="traj", dynamic_ncols=True)
                bar.n = progress["done"]
                bar.set_postfix(correct=f"{progress['correct']}/{progress['done']}", refresh=True)
        finally:
            if bar is not None:
                bar.close()

    @staticmethod
    def _poll() -> dict[str, int] | None:
        if not ray.is_initialized():
            return None
        try:
            state = ray.get_actor(STATE_ACTOR_NAME)
            return ray.get(state.validation_progress.remote(), timeout=POLL_SECONDS)
        except (ValueError, ray.exceptions.RayError):  # not created yet, or gone at the end of the run
            return None
