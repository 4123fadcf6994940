"""The ActGuide rollout worker with real Ray, TransferQueue and verl's reward-loop worker.

The LLM server is scripted (its answer is right only at a sufficient guidance level); the agent loop, tools,
reward function, reward worker, TransferQueue and the level search are the real ones. Three prompts search
concurrently: one solved unguided, one that needs level 2 of 3, one that no level rescues.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import ray
import transfer_queue as tq
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

from actguide_plugin.core.guidance import guided_messages
from actguide_plugin.cpu.scripted_policy import SCRIPTED_PLAN
from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD, UNGUIDED_PROMPT_IDS_FIELD
from actguide_plugin.verl_glue.metrics import search_metrics
from actguide_plugin.verl_glue.rollout_v1 import ActGuideAgentLoopWorkerImpl
from actguide_plugin.verl_glue.state import state_actor

pytestmark = pytest.mark.integration

N = 4


def run_worker(model, recipe_config, server, prompts, *overrides):
    """Run our worker's training path for the prompts, all concurrently; return the worker (keep it alive:
    the shared state actor lives as long as its handles do)."""
    config = recipe_config(
        f"actor_rollout_ref.model.path={model}",
        f"actor_rollout_ref.rollout.n={N}",
        "actor_rollout_ref.rollout.name=vllm",  # only named; the scripted server stands in for it
        *overrides,
    )
    reward_worker = ray.remote(RewardLoopWorker).options(num_cpus=0).remote(config)

    async def run():
        worker = ActGuideAgentLoopWorkerImpl(config, server, None, [reward_worker])
        trajectory = {"step": 1, "sample_index": 0, "rollout_n": 0, "validate": False}
        await asyncio.gather(*(worker._run_prompt(dict(p), {"temperature": 1.0}, dict(trajectory)) for p in prompts))
        return worker

    return asyncio.run(run())


def test_worker_searches_each_group_and_publishes_exactly_n(
    ray_and_tq, tiny_qwen_model, corpus_env, recipe_config, scripted_server, qwen_tokenizer, scripted_tasks
):
    prompts = {name: scripted_tasks.prompt(name, level) for name, level in scripted_tasks.levels.items()}
    worker = run_worker(tiny_qwen_model, recipe_config, scripted_server(qwen_tokenizer), prompts.values())

    listing = tq.kv_list("train")["train"]
    for name, prompt in prompts.items():
        uid = prompt["uid"]
        assert listing[uid]["status"] == "finished", name
        keys = sorted(k for k in listing if k.startswith(uid + "_"))
        assert keys == [f"{uid}_{i}_0" for i in range(N)], name  # exactly n trajectories, session ids 0..n-1
        fields = [IS_GUIDED_FIELD, LEVEL_FIELD, UNGUIDED_PROMPT_IDS_FIELD, "prompts", "rm_scores"]
        data = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=fields)
        levels = data[LEVEL_FIELD].reshape(-1).tolist()
        # impossible: on_full_failure=unguided keeps the original group
        expected_level = 2 if name == "barrier" else 0
        assert levels == [expected_level] * N, name
        assert data[IS_GUIDED_FIELD].reshape(-1).tolist() == [float(expected_level > 0)] * N
        scores = [float(row.sum()) for row in data["rm_scores"].unbind(0)]
        assert scores == ([1.0] * N if name != "impossible" else [0.0] * N), name
        views = zip(data["prompts"].unbind(0), data[UNGUIDED_PROMPT_IDS_FIELD].unbind(0), strict=True)
        for prompt_ids, unguided_ids in views:
            if expected_level:
                assert len(prompt_ids) > len(unguided_ids)  # sampled on G_2, unguided view kept for the swap
            else:
                assert prompt_ids.tolist() == unguided_ids.tolist()

    assert ray.get(worker.state.cache_state.remote()) == ray.get(state_actor().cache_state.remote())  # one actor
    summaries = {s["task_id"]: s for s in ray.get(state_actor().pop_summaries.remote())}
    assert summaries["easy"]["status"] == "solved_unguided" and not summaries["easy"]["probes"]
    assert summaries["barrier"]["status"] == "rescued" and summaries["barrier"]["level"] == 2
    assert summaries["impossible"]["status"] == "full_failed"
    cache = ray.get(state_actor().cache_state.remote())["entries"]
    assert cache["barrier"] == {"num_actions": 3, "level": 2}
    assert cache["impossible"] == {"num_actions": 3, "level": 4, "full_failures": 1}  # L + 1, once


def test_drop_policy_publishes_no_trajectories_and_marks_the_prompt_for_verls_refill(
    ray_and_tq, tiny_qwen_model, corpus_env, recipe_config, scripted_server, qwen_tokenizer, scripted_tasks
):
    prompt = scripted_tasks.prompt("dropped", scripted_tasks.levels["impossible"])
    worker = run_worker(
        tiny_qwen_model, recipe_config, scripted_server(qwen_tokenizer), [prompt], "actguide.on_full_failure=drop"
    )
    listing = tq.kv_list("train")["train"]
    assert listing[prompt["uid"]]["status"] == "failure"  # verl's sync sampler replaces it (empty_step)
    assert not [k for k in listing if k.startswith(prompt["uid"] + "_")]
    assert ray.get(worker.state.failures_of.remote([prompt["uid"]])) == []  # dropped, not failed: no cause
    summary = next(s for s in ray.get(worker.state.pop_summaries.remote()) if s["task_id"] == "dropped")
    assert summary["status"] == "full_failed" and summary["trajectories"] == []


def run_validation(model, recipe_config, server, prompts, *overrides):
    """verl's validation path of our worker (``validate=True``), n = 2 samples per prompt."""
    config = recipe_config(
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.rollout.val_kwargs.n=2",
        "actor_rollout_ref.rollout.name=vllm",
        *overrides,
    )
    reward_worker = ray.remote(RewardLoopWorker).options(num_cpus=0).remote(config)

    async def run():
        worker = ActGuideAgentLoopWorkerImpl(config, server, None, [reward_worker])
        trajectory = {"step": 0, "sample_index": 0, "rollout_n": 0, "validate": True}
        await asyncio.gather(*(worker._run_prompt(dict(p), {"temperature": 1.0}, dict(trajectory)) for p in prompts))
        return worker, ray.get(worker.state.pop_validation_records.remote())

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("overrides", "level"), [((), 0), (("actguide.val_level=2", "actguide.val_dump_dir=/unused/by/the/worker"), 2)]
)
@pytest.mark.usefixtures("ray_and_tq", "corpus_env")
def test_validation_records_every_trajectory_at_the_requested_level(
    tiny_qwen_model, recipe_config, scripted_server, qwen_tokenizer, overrides, level, scripted_tasks
):
    prompts = [scripted_tasks.prompt(name, min_level) for name, min_level in scripted_tasks.levels.items()]
    server = scripted_server(qwen_tokenizer)
    _, records = run_validation(tiny_qwen_model, recipe_config, server, prompts, *overrides)
    by_task = {}
    for record in records:
        by_task.setdefault(record["task_id"], []).append(record)
    assert sorted(by_task) == sorted(scripted_tasks.levels) and all(len(rs) == 2 for rs in by_task.values())
    for name, rs in by_task.items():
        assert sorted(r["sample"] for r in rs) == [0, 1]
        assert {r["level"] for r in rs} == {level}
        right = scripted_tasks.levels[name] <= level  # the scripted answer is right from the task's minimal level on
        assert [r["correct"] for r in rs] == [right, right], name
        assert all(r["outcome"] == "answered" and r["stop_reason"] == "stop" for r in rs)
        assert all(r["reward_extra"]["acc"] == float(right) for r in rs)
        assert all(bool(r["prompt"]) == bool(overrides) for r in rs)  # prompt text only when the files are written
    listing = tq.kv_list("val")["val"]
    assert all(listing[p["uid"]]["status"] == "finished" for p in prompts)  # verl's validation data plane
    guided_prompts = [p for p in server.prompts if "Reference plan" in qwen_tokenizer.decode(p)]
    assert bool(guided_prompts) == (level > 0)


def test_bad_row_fails_its_group_with_one_named_log_line_and_a_metric(
    ray_and_tq, tiny_qwen_model, corpus_env, recipe_config, scripted_server, qwen_tokenizer, caplog, scripted_tasks
):
    bad = scripted_tasks.prompt("bad", scripted_tasks.levels["barrier"])
    bad["extra_info"] = {"index": 41, "reference_actions": "[{not json"}
    good = scripted_tasks.prompt("good", scripted_tasks.levels["easy"])
    with caplog.at_level(logging.ERROR, logger="actguide_plugin"):
        worker = run_worker(tiny_qwen_model, recipe_config, scripted_server(qwen_tokenizer), [bad, good])
    listing = tq.kv_list("train")["train"]
    assert listing[bad["uid"]]["status"] == "failure" and listing[good["uid"]]["status"] == "finished"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and "bad_row" in lines[0] and "index=41" in lines[0] and bad["uid"] in lines[0]
    metrics = search_metrics(worker.state)
    assert metrics["actguide/bad_rows"] == 1.0 and metrics["actguide/failed_groups"] == 1.0
    assert metrics["actguide/groups"] == 1.0  # the good group was decided as usual


def test_levels_whose_prompt_does_not_fit_are_never_sampled(
    ray_and_tq, tiny_qwen_model, corpus_env, recipe_config, scripted_server, qwen_tokenizer, caplog, scripted_tasks
):
    prompt = scripted_tasks.prompt("long-plan", scripted_tasks.levels["barrier"])  # needs level 2 of 3
    probe = run_worker(tiny_qwen_model, recipe_config, scripted_server(qwen_tokenizer), [])

    async def guided_lengths():
        loop = probe._guided_agent_loop()  # the worker's own renderer (same builder and tool schemas as sampling)
        build = loop.continuous_token_builder.build_initial_tokens
        return [
            len(build(guided_messages(prompt["raw_prompt"], SCRIPTED_PLAN, k), tools=loop.tool_schemas)) for k in (1, 2)
        ]

    fits_level_1, _ = asyncio.run(guided_lengths())
    budget = f"actor_rollout_ref.rollout.prompt_length={fits_level_1}"  # G_1 fits exactly, G_2 does not
    with caplog.at_level(logging.WARNING, logger="actguide_plugin"):
        worker = run_worker(tiny_qwen_model, recipe_config, scripted_server(qwen_tokenizer), [prompt], budget)
    summary = next(s for s in ray.get(worker.state.pop_summaries.remote()) if s["task_id"] == "long-plan")
    assert summary["plan_capped"] and summary["status"] == "full_failed"  # level 2 would have rescued it
    assert {p["level"] for p in summary["probes"]} == {1}
    assert any("above level 1 of L=3 do not fit" in r.getMessage() for r in caplog.records)
