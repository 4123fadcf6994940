"""The classic trainer's ActGuide rollout worker (``trainer.use_v1=false``) with real Ray and verl's reward-loop
worker: a ``DataProto`` of prompts repeated n times in, exactly n scored rows per prompt out, in input order.

Same scripted tasks as ``test_rollout_worker.py`` (the V1 worker): one solved unguided, one that needs level 2 of 3,
one that no level rescues, plus a row whose reference actions are unreadable.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import ray
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.protocol import DataProto

from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD, UNGUIDED_PROMPT_IDS_FIELD
from actguide_plugin.verl_glue.metrics import search_metrics
from actguide_plugin.verl_glue.rollout_v0 import FAILED_GROUPS_KEY, ActGuideAgentLoopWorkerV0Impl

pytestmark = pytest.mark.integration

N = 4


def repeated(prompts: list[dict]) -> DataProto:
    """What ``RayPPOTrainer.fit`` hands the manager: each prompt's columns repeated n times, adjacent."""
    columns = {}
    for key in prompts[0]:
        if key == "global_steps":
            continue
        column = np.empty(len(prompts) * N, dtype=object)
        column[:] = [prompt[key] for prompt in prompts for _ in range(N)]
        columns[key] = column
    return DataProto(non_tensor_batch=columns, meta_info={"global_steps": 1})


def test_the_classic_worker_returns_n_scored_rows_per_prompt_in_input_order(
    ray_and_tq, tiny_qwen_model, corpus_env, recipe_config, scripted_server, qwen_tokenizer, scripted_tasks
):
    config = recipe_config(
        f"actor_rollout_ref.model.path={tiny_qwen_model}",
        f"actor_rollout_ref.rollout.n={N}",
        "actor_rollout_ref.rollout.name=vllm",  # only named; the scripted server stands in for it
        "trainer.use_v1=false",
    )
    prompts = [scripted_tasks.prompt(name, level) for name, level in scripted_tasks.levels.items()]
    bad = scripted_tasks.prompt("bad", scripted_tasks.levels["barrier"])
    bad["extra_info"] = {"index": 41, "reference_actions": "[{not json"}
    reward_worker = ray.remote(RewardLoopWorker).options(num_cpus=0).remote(config)

    async def run():
        worker = ActGuideAgentLoopWorkerV0Impl(config, scripted_server(qwen_tokenizer), None, [reward_worker])
        return worker, await worker.generate_sequences(repeated([*prompts[:2], bad, prompts[2]]))

    worker, output = asyncio.run(run())
    assert output.meta_info[FAILED_GROUPS_KEY] == [2]  # the bad row's group, by its position
    assert len(output) == 3 * N  # the other groups' rows, in input order (the manager fills the failed one)
    expected = {"easy": 0, "barrier": 2, "impossible": 0}  # impossible: on_full_failure=unguided
    for group, name in enumerate(scripted_tasks.levels):
        rows = range(group * N, (group + 1) * N)
        assert [output.non_tensor_batch[LEVEL_FIELD][i] for i in rows] == [expected[name]] * N, name
        assert [output.non_tensor_batch[IS_GUIDED_FIELD][i] for i in rows] == [float(expected[name] > 0)] * N
        assert {output.non_tensor_batch["raw_prompt"][i][-1]["content"] for i in rows} == {
            prompts[group]["raw_prompt"][-1]["content"]
        }
        scores = output.batch["rm_scores"][group * N : (group + 1) * N].sum(dim=1).tolist()
        assert scores == ([0.0] * N if name == "impossible" else [1.0] * N), name
        for i in rows:
            width = int(output.batch["attention_mask"][i, : output.batch["prompts"].shape[1]].sum())
            unguided = list(output.non_tensor_batch[UNGUIDED_PROMPT_IDS_FIELD][i])
            assert (width > len(unguided)) == (expected[name] > 0)  # sampled on G_2, unguided view kept for the swap
    metrics = search_metrics(worker.state)
    assert metrics["actguide/failed_groups"] == 1.0 and metrics["actguide/bad_rows"] == 1.0
    assert metrics["actguide/rescued_groups"] == 1.0 and metrics["actguide/groups"] == 3.0
    assert "uid" not in output.non_tensor_batch  # input columns stay the trainer's (fit joins the rows by position)
