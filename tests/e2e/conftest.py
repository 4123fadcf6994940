"""The CPU training run that the end-to-end tests share: the demo script on scripted tasks, run once per session.

``scripts/run_demo_cpu.sh`` → ``python -m recipe.actguide.main_actguide`` with verl's real V1 trainer, Ray,
TransferQueue, our rollout manager, local tools, reward, prompt swap and fsdp2 actor update. The rollout is the
``scripted`` backend (real model log-probs, answers that depend on the guidance level). Later tests evaluate,
export and analyse what this run wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from actguide_plugin.cpu.scripted_policy import task_marker
from actguide_plugin.names import ROWS_DUMP_FILE

REPO = Path(__file__).resolve().parents[2]
# task id → minimal sufficient level (L = 3; 9 = never); every other answer is right at a sufficient level
TASKS = {"easy": 0, "needs-1": 1, "needs-2": 2, "impossible": 9}
CORPUS = [
    {"id": "1", "title": "Ada Lovelace", "url": "https://en.wikipedia.org/wiki/Ada_Lovelace", "text": "Ada wrote it."},
    {
        "id": "2",
        "title": "Analytical Engine",
        "url": "https://en.wikipedia.org/wiki/Analytical_Engine",
        "text": "A machine.",
    },
]


@pytest.fixture(scope="session")
def task_writer(scripted_data):
    """``task_writer(directory, {task_id: question})`` → a data folder (train/val parquet, corpus)."""
    return lambda directory, questions: scripted_data(directory, questions, corpus=CORPUS)


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory, tiny_bytes_model, task_writer):
    root = tmp_path_factory.mktemp("e2e")
    questions = {
        task_id: f"Who wrote the first program? {task_marker(level, 'Ada Lovelace', every=2)}"
        for task_id, level in TASKS.items()
    }
    return root, task_writer(root, questions), tiny_bytes_model


def _run_demo(
    root: Path,
    data: Path,
    model: Path,
    work: str,
    steps: int,
    *overrides: str,
    mode="fallback_adaptive",
    **settings: str,
):
    """Run the CPU demo script; returns the metrics per step (verl's file logger) and the script's stdout.

    By default the offline world with the scripted rollout, 2 prompts x 4; ``settings`` replace the script's
    environment settings (``WORLD="barrier", ROLLOUT="hf", N="8"``, ...)."""
    env = dict(os.environ)
    env.update(
        PYTHON=sys.executable,
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        WORLD="offline",
        ROLLOUT="scripted",
        MODE=mode,
        STEPS=str(steps),
        N="4",
        BATCH="2",
        RESPONSE_LEN="1024",
        MODEL_PATH=str(model),
        DATA_DIR=str(data),
        WORK_DIR=str(root / work),
    )
    env.update(settings)
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "run_demo_cpu.sh"), "actor_rollout_ref.actor.optim.weight_decay=0", *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    metrics = [json.loads(line) for line in (root / work / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {record["step"]: record["data"] for record in metrics}, result.stdout


@pytest.fixture(scope="session")
def run_demo():
    """``run_demo(root, data, model, work, steps, *overrides, mode=...)``: the CPU demo on scripted tasks."""
    return _run_demo


@dataclass(frozen=True)
class TrainedRun:
    """The shared 2-step ActGuide run: its metrics per step, stdout, files, and the data/model it used."""

    steps: dict[int, dict]
    stdout: str
    root: Path
    data: Path
    model: Path
    metrics_file: Path  # a copy of the run's metrics.jsonl (a resumed run rewrites the original)

    @property
    def checkpoint(self) -> Path:
        return self.root / "run" / "checkpoints" / "global_step_2"


@pytest.fixture(scope="session")
def trained_run(demo_inputs) -> TrainedRun:
    root, data, model = demo_inputs
    steps, stdout = _run_demo(
        root,
        data,
        model,
        "run",
        2,
        f"trainer.rollout_data_dir={root / 'run' / 'rollouts'}",
        "trainer.checkpoint_callback_class=upload_callback.RecordingUploadCallback",  # a user's upload callback
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    )
    metrics_copy = root / "run_metrics_steps_1_2.jsonl"
    shutil.copy(root / "run" / "metrics.jsonl", metrics_copy)
    return TrainedRun(steps, stdout, root, data, model, metrics_copy)


class Traces:
    """What a run dumped per row (``trainer.rollout_data_dir``), and log-probs recomputed with transformers."""

    @staticmethod
    def rows(folder: Path, step: int | str = "*") -> list[dict]:
        """What the trainer computed per row, in one step or every step."""
        files = sorted(folder.glob(ROWS_DUMP_FILE.format(step=step)))
        return [json.loads(line) for f in files for line in f.read_text().splitlines()]

    @staticmethod
    def scores(folder: Path, step: int) -> dict[str, float]:
        """Each row's reward in a step, from verl's own rollout dump (``<step>.jsonl``, keyed by ``uid``)."""
        lines = (folder / f"{step}.jsonl").read_text().splitlines()
        return {record["uid"]: record["score"] for record in map(json.loads, lines)}

    @staticmethod
    def model(path: Path, checkpoint: Path | None = None):
        """The model in ``path``; with ``checkpoint`` (a ``global_step_N`` folder), the actor weights saved there."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        if checkpoint is not None:
            saved = torch.load(checkpoint / "actor" / "model_world_size_1_rank_0.pt", weights_only=False)
            model.load_state_dict({name: weight.full_tensor() for name, weight in saved.items()})
        return model.eval()

    @staticmethod
    def log_probs(model, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
        """log π(y_t | prompt, y_<t) computed directly with transformers (temperature 1, as the recipe samples)."""
        ids = torch.tensor([prompt_ids + response_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
        return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(response_ids)[:, None])[:, 0]


@pytest.fixture(scope="session")
def traces() -> type[Traces]:
    return Traces
