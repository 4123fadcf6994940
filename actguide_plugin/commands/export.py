"""Export a training checkpoint as a Hugging Face model directory, with the run's context beside the weights.

verl 0.9.1 APIs relied on: ``verl.model_merger.base_model_merger.ModelMergerConfig`` and
``verl.model_merger.fsdp_model_merger.FSDPModelMerger`` (``merge_and_save``: the FSDP shards
``actor/model_world_size_{W}_rank_{r}.pt`` with ``actor/fsdp_config.json``, and ``actor/huggingface/`` (config,
tokenizer, chat template) → a ``transformers`` model directory with safetensors weights; verl's merger casts every
weight to bfloat16, as ``python -m verl.model_merger merge --backend fsdp`` does).

Beside the weights it writes what the checkpoint folder ``global_step_N/`` holds about the run: the resolved config
(``actguide_run_config.yaml``, saved by the recipe's trainer) and tool config (``actguide_tool_config.yaml``), the
warm-start level cache, the evaluation summary if one was made (``eval.json``/``eval.md`` from ``actguide-eval``) and
a manifest ``actguide_export.json``. The directory is assembled next to the target and renamed into place, so a
failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from actguide_plugin.analysis.eval_summary import EVAL_JSON, EVAL_MARKDOWN
from actguide_plugin.logs import get_logger
from actguide_plugin.names import RUN_CONFIG_FILE, TOOL_CONFIG_FILE
from actguide_plugin.outputs import atomic_dir
from actguide_plugin.verl_glue.config import ActGuideConfig

logger = get_logger(__name__)

EXPORT_MANIFEST = "actguide_export.json"
EXPORT_DTYPE = "bfloat16"  # what verl's FSDP merger writes


def is_checkpoint(path: str | os.PathLike) -> bool:
    """A ``global_step_N`` folder of a verl FSDP run (as opposed to a Hugging Face model directory)."""
    return (Path(path) / "actor" / "fsdp_config.json").is_file()


def _cache_file_name(checkpoint: Path) -> str:
    run_config = checkpoint / RUN_CONFIG_FILE
    if run_config.is_file():
        name = OmegaConf.load(run_config).get("actguide", {}).get("cache_file")
        if name:
            return str(name)
    return ActGuideConfig().cache_file


def export_checkpoint(
    checkpoint: str | os.PathLike,
    target: str | os.PathLike,
    *,
    eval_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Merge ``checkpoint/actor`` into ``target`` (a transformers model directory) and copy the run's files there.

    ``eval_dir`` holds an ``actguide-eval`` result to ship along (default: ``checkpoint/eval`` if it exists).
    """
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    checkpoint, target = Path(checkpoint).resolve(), Path(target).resolve()
    actor = checkpoint / "actor"
    if not is_checkpoint(checkpoint):
        raise ValueError(
            f"{checkpoint}: not a verl FSDP checkpoint folder (no actor/fsdp_config.json); pass a global_step_N "
            "folder of trainer.default_local_dir"
        )
    if not (actor / "huggingface" / "config.json").is_file():
        raise ValueError(f"{actor / 'huggingface'}: the checkpoint has no model config (config.json) to export with")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; choose another directory or overwrite it explicitly")
    with atomic_dir(target) as staging:
        merger = FSDPModelMerger(
            ModelMergerConfig(
                operation="merge",
                backend="fsdp",
                local_dir=str(actor),
                target_dir=str(staging),
                hf_model_config_path=str(actor / "huggingface"),
            )
        )
        merger.merge_and_save()
        merger.cleanup()
        shipped = _copy_run_files(checkpoint, staging, Path(eval_dir) if eval_dir else checkpoint / "eval")
        manifest = {
            "source_checkpoint": str(checkpoint),
            "dtype": EXPORT_DTYPE,
            "run_files": shipped,
        }
        (staging / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    logger.info(f"exported {checkpoint} to {target} (files beside the weights: {shipped})")
    return target


def _copy_run_files(checkpoint: Path, staging: Path, eval_dir: Path) -> list[str]:
    """Copy the run config, the level cache, the resolved tool config and an evaluation summary; returns the names
    copied."""
    expected = [checkpoint / RUN_CONFIG_FILE, checkpoint / _cache_file_name(checkpoint)]
    optional = [checkpoint / TOOL_CONFIG_FILE, eval_dir / EVAL_JSON, eval_dir / EVAL_MARKDOWN]
    shipped = []
    for source in expected + optional:
        if source.is_file():
            shutil.copy2(source, staging / source.name)
            shipped.append(source.name)
        elif source in expected:
            logger.warning(f"{source} not found (a checkpoint not written by the recipe's trainer?): not exported")
    return shipped
