"""The ``hf`` / ``scripted`` rollout servers, driven through verl's own replica, router and client classes."""

from __future__ import annotations

import asyncio
import collections
import re
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoTokenizer

from actguide_plugin.core.actions import Action
from actguide_plugin.core.guidance import DEFAULT_TEMPLATE

pytestmark = pytest.mark.integration

GUIDANCE = DEFAULT_TEMPLATE.render([Action("web_search", {"query": ["a"]}), Action("web_visit", {"url": ["b"]})])


def _rollout_config(name: str, response_length: int | None = None):
    from verl.workers.config import RolloutConfig

    # The scripted responses are spelled out byte by byte with the byte-level tokenizer: give them room.
    response_length = response_length or (256 if name == "scripted" else 12)
    return RolloutConfig(
        name=name, tensor_model_parallel_size=1, prompt_length=512, response_length=response_length, seed=3
    )


async def _launch(name: str, model_path, replica_rank: int):
    from verl.workers.config import HFModelConfig
    from verl.workers.rollout.replica import get_rollout_replica_class

    replica = get_rollout_replica_class(name)(
        replica_rank=replica_rank,
        config=_rollout_config(name),
        model_config=HFModelConfig(path=str(model_path)),
        gpus_per_node=1,
    )
    await replica.launch_servers()
    return replica


def _client(name: str, replica):
    """verl's LLMServerClient behind verl's default load balancer, as the agent loops use it."""
    from verl.workers.rollout.llm_server import LLMServerClient
    from verl.workers.rollout.router import get_router_handle

    balancer = get_router_handle(servers={replica.server_address: replica.server_handle})
    config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"name": name, "full_determinism": False}}})
    return LLMServerClient(config=config, load_balancer_handle=balancer)


def _manual_log_probs(model, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + response_ids])).logits[0]
    rows = torch.log_softmax(logits[len(prompt_ids) - 1 : -1].float(), dim=-1)
    return rows.gather(-1, torch.tensor(response_ids).unsqueeze(-1)).squeeze(-1)


def _prompt_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
    )


async def test_generate_returns_ids_and_logprobs_of_the_model(cpu_ray, tiny_bytes_model):
    replica = await _launch("hf", tiny_bytes_model, replica_rank=0)
    client = _client("hf", replica)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bytes_model)
    prompt_ids = _prompt_ids(tokenizer, "What is the capital of France?")

    output = await client.generate(
        "req-1",
        prompt_ids=prompt_ids,
        sampling_params={"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True},
    )

    assert 1 <= len(output.token_ids) <= 12
    assert len(output.log_probs) == len(output.token_ids)
    model = AutoModelForCausalLM.from_pretrained(tiny_bytes_model, dtype=torch.float32, attn_implementation="sdpa")
    expected = _manual_log_probs(model, prompt_ids, output.token_ids)
    torch.testing.assert_close(torch.tensor(output.log_probs), expected, atol=1e-4, rtol=0)


async def test_weight_update_through_adapter_changes_logprobs(cpu_ray, tiny_bytes_model, monkeypatch):
    from verl.workers.config import HFModelConfig
    from verl.workers.rollout.base import get_rollout_class

    replica = await _launch("hf", tiny_bytes_model, replica_rank=1)
    client = _client("hf", replica)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bytes_model)
    prompt_ids = _prompt_ids(tokenizer, "Name a river.")
    greedy = {"temperature": 0, "top_p": 1.0, "top_k": -1, "logprobs": True}
    before = await client.generate("req-a", prompt_ids=prompt_ids, sampling_params=greedy)

    # The adapter verl builds in the trainer worker (get_rollout_class) pushes the actor's weights.
    model = AutoModelForCausalLM.from_pretrained(tiny_bytes_model, dtype=torch.float32, attn_implementation="sdpa")
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    monkeypatch.setenv("RANK", "1")  # trainer rank 1 owns replica 1 when the replica world size is 1
    adapter = get_rollout_class("hf", "async")(
        config=_rollout_config("hf"), model_config=HFModelConfig(path=str(tiny_bytes_model)), device_mesh=None
    )
    await adapter.update_weights(iter(model.state_dict().items()), global_steps=7)

    after = await client.generate("req-b", prompt_ids=prompt_ids, sampling_params=greedy)
    assert after.extra_fields["global_steps"] == 7
    expected = _manual_log_probs(model, prompt_ids, after.token_ids)
    torch.testing.assert_close(torch.tensor(after.log_probs), expected, atol=1e-4, rtol=0)
    assert (before.token_ids, before.log_probs) != (after.token_ids, after.log_probs)


async def test_scripted_answer_depends_on_guidance_level(cpu_ray, tiny_bytes_model):
    from actguide_plugin.cpu.scripted_policy import task_marker

    replica = await _launch("scripted", tiny_bytes_model, replica_rank=2)
    client = _client("scripted", replica)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bytes_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_bytes_model, dtype=torch.float32, attn_implementation="sdpa")
    question = f"Who wrote Hamlet? {task_marker(2, 'Shakespeare')}"
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True}

    async def answer_at(guidance: str) -> str:
        messages = [{"role": "user", "content": question + guidance}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        first = await client.generate("r", prompt_ids=prompt, sampling_params=params)
        assert "<tool_call>" in tokenizer.decode(first.token_ids)
        messages += [
            {"role": "assistant", "content": tokenizer.decode(first.token_ids).removesuffix("<|im_end|>")},
            {"role": "tool", "content": "search results"},
        ]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        second = await client.generate("r", prompt_ids=prompt, sampling_params=params)
        expected = _manual_log_probs(model, prompt, second.token_ids)
        torch.testing.assert_close(torch.tensor(second.log_probs), expected, atol=1e-4, rtol=0)
        return re.search(r"<answer>(.*)</answer>", tokenizer.decode(second.token_ids)).group(1)

    assert await answer_at("") != "Shakespeare"
    assert await answer_at(GUIDANCE.rsplit("\n", 1)[0]) != "Shakespeare"  # level 1 < 2
    assert await answer_at(GUIDANCE) == "Shakespeare"  # level 2


def _local_server(model_path, response_length: int = 12):
    """The ``hf`` server object in this process (no Ray), as the offline agent uses it."""
    from actguide_plugin.cpu.hf_rollout import HFRolloutServer

    config = _rollout_config("hf", response_length)
    return HFRolloutServer(config, SimpleNamespace(path=str(model_path)), replica_rank=0, scripted=False)


def _scores(model, prompt_ids: list[int], response_ids: list[int], temperature: float) -> torch.Tensor:
    """Teacher-forced ``log_softmax(logits / T)`` of the response on the unpadded sequence (T = 0 scores at 1)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + response_ids])).logits[0]
    rows = torch.log_softmax(logits[len(prompt_ids) - 1 : -1].float() / (temperature or 1.0), dim=-1)
    return rows.gather(-1, torch.tensor(response_ids).unsqueeze(-1)).squeeze(-1)


async def test_concurrent_requests_are_served_in_one_batch_each_with_its_own_sampling(tiny_bytes_model):
    server = _local_server(tiny_bytes_model)
    tokenizer = server.engine.tokenizer
    model = AutoModelForCausalLM.from_pretrained(tiny_bytes_model, dtype=torch.float32, attn_implementation="sdpa")
    questions = ["Hi?", "What is the capital of France, and why is it there?", "Name a river.", "2+2?" * 20]
    params = [
        {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True},
        {"temperature": 0, "top_p": 1.0, "top_k": -1, "logprobs": True},
        {"temperature": 0.7, "top_p": 0.9, "top_k": 30, "logprobs": True, "max_tokens": 5},
        # as ToolAgentLoop sends them for a parser with stop tokens: every byte but one stops this request
        {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True, "stop_token_ids": list(range(255))},
    ]
    prompts = [_prompt_ids(tokenizer, question) for question in questions]

    outputs = await asyncio.gather(
        *(
            server.generate(prompt_ids=prompt, sampling_params=dict(param), request_id=f"r{i}")
            for i, (prompt, param) in enumerate(zip(prompts, params, strict=True))
        )
    )

    assert server.engine.stats.batch_sizes == collections.Counter({4: 1})
    assert len(outputs[2].token_ids) <= 5
    stopped = outputs[3].token_ids
    assert stopped[-1] < 255 or len(stopped) == 12
    assert all(token >= 255 for token in stopped[:-1])
    for prompt, param, output in zip(prompts, params, outputs, strict=True):
        expected = _scores(model, prompt, output.token_ids, param["temperature"])
        torch.testing.assert_close(torch.tensor(output.log_probs), expected, atol=1e-5, rtol=0)


async def test_weight_update_during_traffic_never_splits_a_batch(tiny_bytes_model):
    server = _local_server(tiny_bytes_model, response_length=120)
    tokenizer = server.engine.tokenizer
    old_model = AutoModelForCausalLM.from_pretrained(tiny_bytes_model, dtype=torch.float32, attn_implementation="sdpa")
    new_model = AutoModelForCausalLM.from_pretrained(tiny_bytes_model, dtype=torch.float32, attn_implementation="sdpa")
    torch.manual_seed(1)
    with torch.no_grad():
        for param in new_model.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    greedy = {"temperature": 0, "top_p": 1.0, "top_k": -1, "logprobs": True}

    def ask(question: str, max_tokens: int):
        prompt = _prompt_ids(tokenizer, question)
        call = server.generate(prompt_ids=prompt, sampling_params={**greedy, "max_tokens": max_tokens}, request_id="r")
        return prompt, asyncio.ensure_future(call)

    running = [ask(f"question {i}", 120) for i in range(4)]
    while server.engine.stats.forward_calls == 0:  # the first batch is decoding in its thread
        await asyncio.sleep(0.001)
    update = asyncio.ensure_future(server.update_weights(list(new_model.state_dict().items())))
    waiting = [ask(f"later {i}", 20) for i in range(3)]  # queued while the update waits for the batch
    await update
    assert server.engine.stats.forward_calls >= 120  # the update waited for the whole first batch
    after = [ask(f"after {i}", 20) for i in range(2)]

    def matches(model, prompt, output) -> bool:
        expected = _scores(model, prompt, output.token_ids, 0)
        # the perturbed weights make logits large: fp32 noise of padded vs unpadded reaches ~1e-5; versions differ by ~1
        return torch.allclose(torch.tensor(output.log_probs), expected, atol=1e-4, rtol=0)

    for prompt, task in running:  # 120 tokens on the weights the batch started with, none on the new ones
        output = await task
        assert len(output.token_ids) == 120 and matches(old_model, prompt, output)
    for prompt, task in waiting:  # one version or the other, never a mix
        output = await task
        assert matches(old_model, prompt, output) != matches(new_model, prompt, output)
    for prompt, task in after:
        assert matches(new_model, prompt, await task)


async def test_scripted_responses_end_at_the_first_stop_token(tiny_bytes_model):
    from actguide_plugin.cpu.hf_rollout import HFRolloutServer
    from actguide_plugin.cpu.scripted_policy import task_marker

    server = HFRolloutServer(
        _rollout_config("scripted"), SimpleNamespace(path=str(tiny_bytes_model)), replica_rank=0, scripted=True
    )
    tokenizer = server.engine.tokenizer
    prompt = _prompt_ids(tokenizer, f"Who wrote Hamlet? {task_marker(1, 'Shakespeare')}")
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True}
    close_call = tokenizer.convert_tokens_to_ids("</tool_call>")

    free = await server.generate(prompt_ids=prompt, sampling_params=dict(params), request_id="a")
    stopped = await server.generate(
        prompt_ids=prompt, sampling_params={**params, "stop_token_ids": [close_call]}, request_id="b"
    )

    assert tokenizer.decode(free.token_ids).endswith("</tool_call><|im_end|>")
    assert stopped.token_ids == free.token_ids[: free.token_ids.index(close_call) + 1]
    assert stopped.log_probs == free.log_probs[: len(stopped.token_ids)]
