"""The same recipe on verl 0.9.1's classic trainer, end to end on CPU: ``scripts/run_demo_cpu.sh`` with
``trainer.use_v1=false`` appended → ``RayPPOTrainer`` (``main_ppo_v0.TaskRunner``), our rollout manager on the
``DataProto`` data plane, prompt swap on the padded batch, the same loss and metrics.

The scripted tasks are those of ``test_cpu_training.py``, so the V1 run shared by those tests (``trained_run``) is
the reference: the search is deterministic there, and both trainers must log the same ``actguide/*`` metrics.
"""

from __future__ import annotations

import glob
import json

import pytest
import torch

from actguide_plugin.names import IS_GUIDED_FIELD, RUN_CONFIG_FILE, UNGUIDED_PROMPT_IDS_FIELD

pytestmark = pytest.mark.e2e

CLASSIC = "trainer.use_v1=false"
# search counters of a deterministic scripted run: equal on both trainers, step by step
SEARCH_COUNTS = (
    "actguide/groups",
    "actguide/hard_groups",
    "actguide/rescued_groups",
    "actguide/full_failed_groups",
    "actguide/guided_groups",
    "actguide/level_hist/1",
    "actguide/level_hist/2",
    "actguide/trajectories_sampled",
    "actguide/failed_groups",
)


def actguide_keys(steps: dict[int, dict]) -> set[str]:
    return {key for step in steps.values() for key in step if key.startswith("actguide/")}


@pytest.fixture(scope="module")
def classic_run(demo_inputs, run_demo):
    root, data, model = demo_inputs
    steps, stdout = run_demo(
        root, data, model, "classic", 2, CLASSIC, f"trainer.rollout_data_dir={root / 'classic_rows'}"
    )
    return steps, stdout


def test_the_classic_trainer_rescues_the_same_levels_logs_the_same_metrics_and_resumes(
    classic_run, trained_run, run_demo
):
    steps, stdout = classic_run
    root, data, model = trained_run.root, trained_run.data, trained_run.model
    assert sorted(steps) == [1, 2]
    for step in (1, 2):
        for key in SEARCH_COUNTS:
            assert steps[step].get(key) == trained_run.steps[step].get(key), (step, key)
    assert actguide_keys(steps) == actguide_keys(trained_run.steps)
    assert max(s["actguide/guided_trajectory_frac"] for s in steps.values()) > 0
    assert max(abs(s["actor/pg_loss"]) for s in steps.values()) > 0
    checkpoint = root / "classic" / "checkpoints" / "global_step_2"
    trained = torch.load(checkpoint / "actor" / "model_world_size_1_rank_0.pt", weights_only=False, map_location="cpu")
    from safetensors.torch import load_file

    initial = load_file(glob.glob(str(model / "*.safetensors"))[0])
    assert [n for n, w in initial.items() if not torch.equal(w, trained[n].full_tensor().to(w.dtype))]
    cache = json.loads((checkpoint / "actguide_level_cache.json").read_text())["entries"]
    assert cache == json.loads((trained_run.checkpoint / "actguide_level_cache.json").read_text())["entries"]
    assert "use_v1: false" in (checkpoint / RUN_CONFIG_FILE).read_text()
    assert "ActGuide metrics per step" in stdout

    resumed, _ = run_demo(root, data, model, "classic", 3, CLASSIC, "trainer.resume_mode=auto")
    assert sorted(resumed) == [3]
    assert resumed[3]["actguide/hard_groups"] >= 1
    assert resumed[3]["actguide/warm_start_frac"] == 1.0


def test_the_classic_trainer_trains_guided_rows_on_the_unguided_prompt(classic_run, trained_run, traces):
    steps, _ = classic_run
    for step in (s for s in steps.values() if s["actguide/guided_trajectory_frac"] > 0):
        assert abs(step["actguide/guided_ratio_mean"] - 1.0) > 1e-3
        assert abs(step["actguide/offpolicy_shift_mean"]) > 1e-2
        assert abs(step["actguide/unguided_ratio_mean"] - 1.0) < 1e-3
    rows = traces.rows(trained_run.root / "classic_rows")
    guided = [row for row in rows if row[IS_GUIDED_FIELD] > 0.5]
    assert guided and all(row["prompts"] == row[UNGUIDED_PROMPT_IDS_FIELD] for row in rows)
    model = traces.model(trained_run.model)
    for row in guided[:2]:
        on_unguided = traces.log_probs(model, row[UNGUIDED_PROMPT_IDS_FIELD], row["responses"])
        torch.testing.assert_close(torch.tensor(row["ref_log_prob"]), on_unguided, atol=1e-3, rtol=1e-3)


def test_rollout_ratio_source_works_on_the_classic_trainer(demo_inputs, run_demo):
    """verl's bypass mode on ``RayPPOTrainer`` skips ``_compute_old_log_prob``: the swap then happens before the
    reference log-probs, and the rollout's log-probs on the guided prompt are the denominator."""
    root, data, model = demo_inputs
    steps, _ = run_demo(
        root,
        data,
        model,
        "classic_bypass",
        2,
        CLASSIC,
        "actguide.ratio_source=rollout",
        "algorithm.rollout_correction.bypass_mode=true",
        "actor_rollout_ref.rollout.calculate_log_probs=true",
    )
    assert sum(s.get("actguide/rescued_groups", 0) for s in steps.values()) == 2
    guided = [s for s in steps.values() if s.get("actguide/guided_tokens", 0) > 0]
    assert guided and all(abs(s["actguide/guided_ratio_mean"] - 1.0) > 1e-4 for s in guided)
    assert all(abs(s["actguide/unguided_ratio_mean"] - 1.0) < 1e-3 for s in steps.values())
