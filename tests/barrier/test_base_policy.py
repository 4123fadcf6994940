"""The warm start's data: other tasks only, tokenized exactly as verl's tool agent loop tokenizes a rollout."""

from __future__ import annotations

import asyncio

import pytest
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
from verl.workers.rollout.replica import TokenOutput

from actguide_plugin.barrier.base_policy import (
    SHIPPED,
    BasePolicySettings,
    Conversation,
    Turn,
    cached,
    conversations,
    encode,
    ensure_base_policy,
    search_turn,
    tool_schemas,
)
from actguide_plugin.barrier.world import SYSTEM_PROMPT, UNREACHABLE_TEXT, build_world
from actguide_plugin.core.guidance import guided_messages, level_in_text, plan_in_text
from actguide_plugin.cpu.tiny_model import build_tiny_model
from data_preprocess.barrier import build_barrier


@pytest.mark.parametrize("noisy", [False, True])
def test_warm_start_follows_linked_plans_and_never_takes_a_hop_without_one(noisy):
    settings = BasePolicySettings(examples=400, copy_noise=0.2, noise_steps=25, batch_size=16)
    data = conversations(settings, noisy=noisy)
    assert len(data) == 400  # examples, or noise_steps x batch_size for the noisy final phase
    plans = [c for c in data if level_in_text(c.messages[-1]["content"])]
    assert 120 < len(plans) < 280
    pointers = [c for c in data if c.messages[-1]["content"].startswith("What does ")]
    assert 40 < len(pointers) < 130  # pointer_share 0.2
    for conversation in pointers:  # read a link page, answer the name: never search it
        (search, answer) = conversation.turns
        target = search.tool_response.split(" points to ")[1][:-1]
        assert answer.assistant == f"<answer>{target}</answer>" and target not in conversation.messages[-1]["content"]
    unguided_codes = [c for c in data if c not in plans and c not in pointers]
    shallow = [c for c in unguided_codes if "points to" in c.turns[0].tool_response]
    assert 25 < len(shallow) < 100  # shallow_share 0.15
    for conversation in shallow:  # the code question on a page that points on: the pointed name, never a search
        (search, answer) = conversation.turns
        target = search.tool_response.split(" points to ")[1][:-1]
        assert answer.assistant == f"<answer>{target}</answer>"
    for conversation in unguided_codes:
        assert conversation.messages[-1]["content"].startswith("What is the code of ")
        if conversation not in shallow:  # lookup: one search of the asked entity, its code page, its code
            (search, answer) = conversation.turns
            assert answer.assistant == f"<answer>{search.tool_response[-4:-1]}</answer>"
    refused = 0
    for conversation in plans:
        plan = [action.arguments["query"][0] for action in plan_in_text(conversation.messages[-1]["content"])]
        *searches, answer = conversation.turns
        found = [turn for turn in searches if turn.tool_response != UNREACHABLE_TEXT]
        refused += len(searches) - len(found)
        assert [turn.call.arguments["query"][0] for turn in found] == plan  # every hop, in order
        for turn, following in zip(found, plan[1:], strict=False):
            assert turn.tool_response.endswith(f"points to {following}.")  # each page links to the next line
        assert answer.assistant == f"<answer>{found[-1].tool_response[-4:-1]}</answer>"  # the last page's code
    steps = sum(len(plan_in_text(c.messages[-1]["content"])) - 1 for c in plans)  # the first search is never noisy
    if noisy:
        assert 0.1 * steps < refused < 0.3 * steps  # copy_noise 0.2: a wrong name, refused, then the right one
    else:
        assert refused == 0  # the copying skills are learned from clean data first


class _Replay:
    """The LLM server of the agent loop, replaying given assistant turns (the unit under test is the token layout)."""

    def __init__(self, turns: list[list[int]]) -> None:
        self.turns = list(turns)

    async def generate(self, request_id, *, prompt_ids, sampling_params, **_kwargs) -> TokenOutput:
        return TokenOutput(token_ids=self.turns.pop(0), log_probs=None, stop_reason="completed", extra_fields={})


@pytest.mark.integration
def test_encode_matches_the_tokens_of_a_real_agent_loop_rollout(tmp_path, monkeypatch):
    from actguide_plugin.verl_glue.offline_agent import OfflineAgent
    from recipe.actguide.main_actguide import compose_config

    data, model = tmp_path / "data", build_tiny_model(tmp_path / "model", vocab="barrier", hidden_size=32)
    build_barrier(data, seed=0, train=4, val=2)
    monkeypatch.setenv("ACTGUIDE_CORPUS", str(data / "corpus.jsonl"))
    config = compose_config("actguide_barrier_cpu", [f"actor_rollout_ref.model.path={model}"])
    agent = OfflineAgent(config)
    row = agent.rows([str(data / "train.parquet")])[0]
    task = build_world(0, 4, 2).train[0]
    # the reference plan followed page by page, then the code: as the rollout would go at level L
    turns = [search_turn(name, title, text) for name, (title, text) in zip(task.chain, task.pages(), strict=True)]
    turns.append(Turn(f"<answer>{task.code}</answer>"))
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": task.question},
    ]
    conversation = Conversation(guided_messages(messages, list(task.actions), len(task.actions)), turns)
    tokenizer = agent.tokenizer
    agent.server = _Replay(
        [[*tokenizer.encode(t.assistant, add_special_tokens=False), tokenizer.eos_token_id] for t in turns]
    )
    sample = asyncio.run(agent.sample(row, level=len(task.actions)))
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen3")
    ids, loss_mask = encode(builder, tokenizer, tool_schemas(), conversation)
    output = sample.output
    assert list(output.prompt_ids) + list(output.response_ids) == ids
    assert [0] * len(output.prompt_ids) + list(output.response_mask) == loss_mask
    assert sample.score == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"batch_size": 64, "examples": 32}, "batch_size 64 is larger than examples 32"),
        ({"max_plan": 1}, "max_plan must be >= 2"),
        ({"plan_share": 1.5}, "plan_share is out of range"),
        ({"plan_share": 0.7, "pointer_share": 0.2}, "plan_share \\+ pointer_share \\+ shallow_share must be <= 1"),
        ({"shallow_share": -0.1}, "shallow_share is out of range"),
        ({"lr": 0.0}, "lr is out of range"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(change, message):
    with pytest.raises(ValueError, match=message):
        BasePolicySettings(**change)


def test_the_shipped_seed_0_model_is_copied_only_for_its_own_settings(tmp_path):
    out = ensure_base_policy(tmp_path / "base", BasePolicySettings(seed=0), from_shipped=True)
    assert (out / "model.safetensors").read_bytes() == (SHIPPED / "model.safetensors").read_bytes()
    assert cached(out, BasePolicySettings(seed=0))
    assert not cached(SHIPPED, BasePolicySettings(seed=1))  # another seed is trained, not copied
    assert not cached(SHIPPED, BasePolicySettings(seed=0, steps=1000))
