"""End to end on CPU: ``scripts/run_demo_cpu.sh`` → ``python -m recipe.actguide.main_actguide`` with verl's real V1
trainer, Ray, TransferQueue, our rollout manager, local tools, reward, prompt swap and fsdp2 actor update.

The rollout is the ``scripted`` backend (real model log-probs, answers that depend on the guidance level), so
the test knows which prompts must be rescued at which level. Data goes through ``actguide-preprocess``; the first
run is shared with the evaluation/export tests (``conftest.py``).
"""

from __future__ import annotations

import glob
import json

import pytest
import torch
import yaml

from actguide_plugin.names import (
    GUIDED_PROMPT_TEXT,
    IS_GUIDED_FIELD,
    RUN_CONFIG_FILE,
    RUN_INFO,
    RUN_INFO_TOOLS,
    TOOL_CONFIG_FILE,
    UNGUIDED_PROMPT_IDS_FIELD,
)

pytestmark = pytest.mark.e2e


def total(steps: dict[int, dict], key: str) -> float:
    return sum(step.get(key, 0.0) for step in steps.values())


def test_guided_training_rescues_expected_levels_then_resumes_with_the_warm_start_cache(trained_run, run_demo):
    root, data, model, steps, stdout = (
        trained_run.root,
        trained_run.data,
        trained_run.model,
        trained_run.steps,
        trained_run.stdout,
    )
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
        "impossible": {"num_actions": 3, "level": 4, "full_failures": 1},  # L + 1: even full guidance failed, once
    }
    assert "ActGuide metrics per step" in stdout and "| step |" in stdout
    run_config = (checkpoint / RUN_CONFIG_FILE).read_text()  # the resolved config, what actguide-export ships
    assert f"path: {model}" in run_config and "${" not in run_config
    tools = yaml.safe_load((checkpoint / TOOL_CONFIG_FILE).read_text())  # the tool yaml as this run resolved it
    assert tools["backend"]["corpus_path"] == str(data / "corpus.jsonl")
    assert yaml.safe_load(run_config)[RUN_INFO][RUN_INFO_TOOLS] == tools  # in the config verl's loggers record
    # the user's checkpoint callback (trainer.checkpoint_callback_class) found the recipe's files already there
    uploads = (checkpoint.parent / "uploads.jsonl").read_text().splitlines()  # upload_callback.UPLOADS
    uploads = [json.loads(line) for line in uploads]
    assert [u["global_step"] for u in uploads] == [2]
    assert {RUN_CONFIG_FILE, TOOL_CONFIG_FILE, "actguide_level_cache.json", "data.pt"} <= set(uploads[0]["files"])

    # resume from global_step_2: a fresh Ray cluster, so warm starts can only come from the checkpointed cache
    resumed, _ = run_demo(root, data, model, "run", 3, "trainer.resume_mode=auto")
    assert sorted(resumed) == [3]
    assert resumed[3]["actguide/hard_groups"] >= 1
    assert resumed[3]["actguide/warm_start_frac"] == 1.0


def test_mode_off_is_plain_grpo_through_the_same_path(demo_inputs, run_demo):
    root, data, model = demo_inputs
    steps, _ = run_demo(root, data, model, "off", steps=1, mode="off")
    assert steps[1]["actguide/guided_groups"] == 0 and steps[1]["actguide/guided_trajectory_frac"] == 0
    assert steps[1]["actguide/trajectories_sampled"] == 2 * 4  # n per prompt, no probes
    assert steps[1]["actguide/hard_group_frac"] > 0  # the barrier is still measured


def test_rollout_ratio_source_uses_the_guided_rollout_log_probs(demo_inputs, run_demo):
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


def guided_steps(steps: dict[int, dict]) -> list[dict]:
    return [s for s in steps.values() if s["actguide/guided_trajectory_frac"] > 0]


def test_guided_rows_are_trained_and_regularized_on_the_unguided_prompt(trained_run, traces):
    """The swap, from what the trainer computed: each step has one update (θ = θ_old), so a guided ratio ≠ 1 and
    Δ ≠ 0 mean the numerator saw another prompt than the old log-probs; the dump shows which one."""
    assert guided_steps(trained_run.steps)
    for step in guided_steps(trained_run.steps):
        assert abs(step["actguide/guided_ratio_mean"] - 1.0) > 1e-3
        assert abs(step["actguide/offpolicy_shift_mean"]) > 1e-2
        assert abs(step["actguide/unguided_ratio_mean"] - 1.0) < 1e-3
    rows = traces.rows(trained_run.root / "run" / "rollouts")
    guided = [row for row in rows if row[IS_GUIDED_FIELD] > 0.5]
    assert guided and all(row["prompts"] == row[UNGUIDED_PROMPT_IDS_FIELD] for row in rows)
    # the plan the policy was shown, as text, with the agent's own tool names; unguided rows have none
    assert all(row[GUIDED_PROMPT_TEXT] is None for row in rows if row[IS_GUIDED_FIELD] < 0.5)
    assert all("web_search" in row[GUIDED_PROMPT_TEXT].split("user", 1)[-1] for row in guided)
    model = traces.model(trained_run.model)  # the reference policy: the initial weights
    for row in guided[:2]:
        on_unguided = traces.log_probs(model, row[UNGUIDED_PROMPT_IDS_FIELD], row["responses"])
        torch.testing.assert_close(torch.tensor(row["ref_log_prob"]), on_unguided, atol=1e-3, rtol=1e-3)


def test_ratio_context_guided_trains_guided_rows_on_their_guided_prompt(demo_inputs, run_demo, traces):
    """The paper's Table 4 ablation: no swap, so the guided ratio is on-policy (1 at the single update, Δ ≈ 0) and the
    reference log-probs are those of the guided prompt."""
    root, data, model = demo_inputs
    dump = root / "guided_context" / "rollouts"
    steps, _ = run_demo(
        root, data, model, "guided_context", 2, "actguide.ratio_context=guided", f"trainer.rollout_data_dir={dump}"
    )
    assert total(steps, "actguide/rescued_groups") == 2  # the search is unchanged
    assert guided_steps(steps)
    for step in guided_steps(steps):
        assert abs(step["actguide/guided_ratio_mean"] - 1.0) < 1e-3
        assert abs(step["actguide/offpolicy_shift_mean"]) < 1e-2
    guided = [row for row in traces.rows(dump) if row[IS_GUIDED_FIELD] > 0.5]
    assert guided and all(row["prompts"] != row[UNGUIDED_PROMPT_IDS_FIELD] for row in guided)
    reference = traces.model(model)
    row = guided[0]
    on_guided = traces.log_probs(reference, row["prompts"], row["responses"])
    torch.testing.assert_close(torch.tensor(row["ref_log_prob"]), on_guided, atol=1e-3, rtol=1e-3)
    on_unguided = traces.log_probs(reference, row[UNGUIDED_PROMPT_IDS_FIELD], row["responses"])
    assert (torch.tensor(row["ref_log_prob"]) - on_unguided).abs().max() > 1e-2
