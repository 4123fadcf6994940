"""End to end on CPU: ``scripts/run_demo_cpu.sh`` → ``python -m recipe.actguide.main_actguide`` with verl's real V1
trainer, Ray, TransferQueue, our rollout manager, local tools, reward, prompt swap and fsdp2 actor update.

The rollout is the ``scripted`` backend (real model log-probs, answers that depend on the guidance level), so
the test knows which prompts must be rescued at which level. Data goes through ``actguide-preprocess``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actguide_plugin.core.actions import Action
from actguide_plugin.cpu.scripted_policy import task_marker
from data_preprocess.cli import main as preprocess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ACTIONS = [
    Action("web_search", {"query": ["first computer program"]}),
    Action("web_visit", {"url": ["https://en.wikipedia.org/wiki/Ada_Lovelace"]}),
    Action("web_search", {"query": ["Analytical Engine"]}),
]
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


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory, tiny_bytes_model):
    root = tmp_path_factory.mktemp("e2e")
    records = root / "records.jsonl"
    with records.open("w", encoding="utf-8") as f:
        for task_id, level in TASKS.items():
            question = f"Who wrote the first program? {task_marker(level, 'Ada Lovelace', every=2)}"
            record = {
                "id": task_id,
                "question": question,
                "answer": "Ada Lovelace",
                "actions": [a.to_dict() for a in ACTIONS],
            }
            f.write(json.dumps(record) + "\n")
    data = root / "data"
    assert preprocess(["convert", str(records), "-o", str(data), "--format", "actions", "--val-ratio", "0"]) == 0
    shutil.copy(data / "train.parquet", data / "val.parquet")  # validation is not run (test_freq=-1)
    (data / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in CORPUS), encoding="utf-8")
    return root, data, tiny_bytes_model


def run_demo(root: Path, data: Path, model: Path, work: str, steps: int, *overrides: str, mode="fallback_adaptive"):
    env = dict(os.environ)
    env.update(
        PYTHON=sys.executable,
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
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


def total(steps: dict[int, dict], key: str) -> float:
    return sum(step.get(key, 0.0) for step in steps.values())


def test_guided_training_rescues_expected_levels_then_resumes_with_the_warm_start_cache(demo_inputs):
    root, data, model = demo_inputs
    steps, stdout = run_demo(root, data, model, "run", steps=2)
    assert sorted(steps) == [1, 2]
    # every task was seen once: 3 hard groups, the two reachable ones rescued at exactly their level
    assert total(steps, "actguide/hard_groups") == 3
    assert total(steps, "actguide/rescued_groups") == 2
    assert total(steps, "actguide/full_failed_groups") == 1
    assert total(steps, "actguide/level_hist/1") == 1 and total(steps, "actguide/level_hist/2") == 1
    assert max(s["actguide/guided_trajectory_frac"] for s in steps.values()) > 0  # guided rows were swapped
    assert max(s["actguide/effective_signal_frac_after"] for s in steps.values()) > 0
    # the actor learned from the guided groups: a real gradient, and (weight decay 0) the weights moved
    assert max(abs(s["actor/pg_loss"]) for s in steps.values()) > 0
    assert max(s["actor/grad_norm"] for s in steps.values()) > 0
    checkpoint = root / "run" / "checkpoints" / "global_step_2"
    trained = torch.load(checkpoint / "actor" / "model_world_size_1_rank_0.pt", weights_only=False, map_location="cpu")
    from safetensors.torch import load_file

    initial = load_file(glob.glob(str(model / "*.safetensors"))[0])
    changed = [n for n, w in initial.items() if not torch.equal(w, trained[n].full_tensor().to(w.dtype))]
    assert changed, "no actor parameter changed"
    cache = json.loads((checkpoint / "actguide_level_cache.json").read_text())["entries"]
    assert cache == {
        "needs-1": {"num_actions": 3, "level": 1},
        "needs-2": {"num_actions": 3, "level": 2},
        "impossible": {"num_actions": 3, "level": 4},  # L + 1: even full guidance failed
    }
    assert "ActGuide metrics per step" in stdout and "| step |" in stdout

    # resume from global_step_2: a fresh Ray cluster, so warm starts can only come from the checkpointed cache
    resumed, _ = run_demo(root, data, model, "run", 3, "trainer.resume_mode=auto")
    assert sorted(resumed) == [3]
    assert resumed[3]["actguide/hard_groups"] >= 1
    assert resumed[3]["actguide/warm_start_frac"] == 1.0


def test_mode_off_is_plain_grpo_through_the_same_path(demo_inputs):
    root, data, model = demo_inputs
    steps, _ = run_demo(root, data, model, "off", steps=1, mode="off")
    assert steps[1]["actguide/guided_groups"] == 0 and steps[1]["actguide/guided_trajectory_frac"] == 0
    assert steps[1]["actguide/trajectories_sampled"] == 2 * 4  # n per prompt, no probes
    assert steps[1]["actguide/hard_group_frac"] > 0  # the barrier is still measured


def test_rollout_ratio_source_uses_the_guided_rollout_log_probs(demo_inputs):
    """``actguide.ratio_source=rollout``: verl's bypass mode takes the rollout engine's log-probs (sampled on the
    guided prompt) as the denominator; the prompt swap still puts the unguided prompt under the numerator."""
    root, data, model = demo_inputs
    steps, _ = run_demo(
        root,
        data,
        model,
        "bypass",
        2,
        "actguide.ratio_source=rollout",
        "algorithm.rollout_correction.bypass_mode=true",
        "actor_rollout_ref.rollout.calculate_log_probs=true",
    )
    assert total(steps, "actguide/rescued_groups") == 2
    guided = [s for s in steps.values() if s.get("actguide/guided_tokens", 0) > 0]
    assert guided and all(abs(s["actguide/guided_ratio_mean"] - 1.0) > 1e-4 for s in guided)
    assert all(abs(s["actguide/unguided_ratio_mean"] - 1.0) < 1e-3 for s in steps.values())
