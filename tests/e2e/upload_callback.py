"""A user's checkpoint callback, as verl 0.9.1 loads one from ``trainer.checkpoint_callback_class``: it "uploads" a
checkpoint by recording, when verl calls ``on_save``, which files the ``global_step_*`` folder holds.

Imported by the TaskRunner by module name (the e2e run puts this folder on ``PYTHONPATH``).
"""

from __future__ import annotations

import json
from pathlib import Path

from verl.trainer.ppo.checkpoint_callback import CheckpointCallback

UPLOADS = "uploads.jsonl"  # in trainer.default_local_dir: one line per on_save


class RecordingUploadCallback(CheckpointCallback):
    def on_save(self, trainer, global_step: int, checkpoint_dir: str, async_save: bool = False, **kwargs) -> None:
        files = sorted(str(p.relative_to(checkpoint_dir)) for p in Path(checkpoint_dir).rglob("*") if p.is_file())
        with (Path(self.config.trainer.default_local_dir) / UPLOADS).open("a", encoding="utf-8") as f:
            f.write(json.dumps({"global_step": global_step, "files": files}) + "\n")
