"""Past the reachability barrier with a real model: one step of verl's trainer (V1, ``hf`` rollout, fsdp2 update)
from the warm-started policy the barrier experiment and the CPU demo start from, through
``scripts/run_demo_cpu.sh`` (``WORLD=barrier``).

The model is the shipped ``actguide_plugin/barrier/base_seed0``: the base policy of seed 0 of the README's "Does it
learn?" table, built by ``python -m actguide_plugin.barrier.base_policy actguide_plugin/barrier/base_seed0 --seed 0``
(~2 minutes on 2 cores); the first test fails, naming that command, as soon as the code would build a different one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from actguide_plugin.barrier.base_policy import SHIPPED, BasePolicySettings, cached
from actguide_plugin.barrier.vocab import TEMPLATE, build_tokenizer
from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD, UNGUIDED_PROMPT_IDS_FIELD
from data_preprocess.barrier import build_barrier

pytestmark = pytest.mark.e2e

BASE = SHIPPED
REBUILD = f"stale shipped base policy: rebuild it with python -m actguide_plugin.barrier.base_policy {BASE} --seed 0"
SETTINGS = dict(WORLD="barrier", ROLLOUT="hf", N="8", BATCH="8", RESPONSE_LEN="320")
ONE_STEP = ("trainer.val_before_train=false", "trainer.test_freq=-1")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("barrier")
    build_barrier(root / "data", seed=0, train=8, val=4, max_hops=2)  # the base follows 6 of 7 two-hop plans
    return root, root / "data"


def test_the_shipped_base_policy_is_the_one_the_code_builds():
    assert cached(BASE, BasePolicySettings(seed=0)), REBUILD
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    assert tokenizer.get_vocab() == build_tokenizer().get_vocab(), REBUILD
    assert tokenizer.chat_template == TEMPLATE, REBUILD


def test_guidance_rescues_hard_groups_and_one_update_raises_the_unguided_log_prob_of_the_rescued_responses(
    world, run_demo, traces
):
    """The paper's mechanism on a real model: the unguided groups fail, plans of k* > 0 actions rescue some, and
    the update (cispo: the clip rule the README's table found to learn) makes those rescued responses more likely
    *without* the plan — the numerator's context — which is what internalizing the skill means."""
    root, data = world
    dump = root / "cispo" / "rollouts"
    steps, _ = run_demo(
        root, data, BASE, "cispo", 1, *ONE_STEP, "actguide.guided_clip=cispo", f"trainer.rollout_data_dir={dump}",
        **SETTINGS,
    )  # fmt: skip
    step = steps[1]
    # the barrier: most groups all-fail unguided (the base solves ~1.7 % of the training rollouts unguided)
    assert step["actguide/hard_group_frac"] >= 0.75
    assert step["actguide/rescued_groups"] >= 2
    assert step["actguide/effective_signal_frac_after"] >= step["actguide/effective_signal_frac_before"] + 0.25
    scores = traces.scores(dump, 1)
    guided = [row for row in traces.rows(dump, 1) if row[IS_GUIDED_FIELD] > 0.5]
    assert all(row[LEVEL_FIELD] > 0 for row in guided)
    assert all(row["prompts"] == row[UNGUIDED_PROMPT_IDS_FIELD] for row in guided)  # trained without the plan
    before, after = traces.model(BASE), traces.model(BASE, root / "cispo" / "checkpoints" / "global_step_1")

    def rise(row: dict) -> float:
        """How much the update raised log π(response | unguided prompt), on the policy's tokens (not tool output)."""
        policy_tokens = torch.tensor(row["response_mask"], dtype=torch.bool)
        old = traces.log_probs(before, row["prompts"], row["responses"])[policy_tokens].sum()
        return (traces.log_probs(after, row["prompts"], row["responses"])[policy_tokens].sum() - old).item()

    rescued = [rise(row) for row in guided if scores[row["key"]] > 0]
    failed = [rise(row) for row in guided if scores[row["key"]] == 0]
    assert rescued and failed  # imperfect plan following: the rescued groups have an advantage
    assert all(r > 0 for r in rescued), rescued  # measured: 50 of 50 rose, by 0.95 nats on average
    # the successful responses gained more than the failed ones of the same groups (0.75): the advantage's sign
    assert sum(rescued) / len(rescued) > sum(failed) / len(failed), (rescued, failed)


def test_plain_grpo_gets_almost_no_signal_from_the_barrier_tasks(world, run_demo):
    """Without guidance a group has an advantage only if one of its own 8 samples solved the task: for most groups
    none did, and nothing adds a signal (measured over a 100-step run: README, "Does it learn?")."""
    root, data = world
    steps, _ = run_demo(root, data, BASE, "off", 1, *ONE_STEP, mode="off", **SETTINGS)
    step = steps[1]
    assert step["actguide/hard_group_frac"] >= 0.75
    assert step["actguide/guided_groups"] == 0.0
    assert step["actguide/effective_signal_frac_after"] == step["actguide/effective_signal_frac_before"] <= 0.25
