"""The warm start's data: other tasks only, tokenized exactly as verl's tool agent loop tokenizes a rollout."""

from __future__ import annotations

import asyncio

import pytest
from transformers import AutoTokenizer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
from verl.workers.rollout.replica import TokenOutput

from actguide_plugin.barrier.base_policy import (
    SHIPPED,
    BasePolicySettings,
    Conversation,
    Turn,
    batch_loss,
    cached,
    conversations,
    encode,
    ensure_base_policy,
    search_turn,
    shared_prefix_length,
    tool_call_text,
    tool_schemas,
)
from actguide_plugin.barrier.world import SEARCH_TOOL, SYSTEM_PROMPT, UNREACHABLE_TEXT, build_world
from actguide_plugin.core.actions import Action
from actguide_plugin.core.guidance import guided_messages, level_in_text, plan_in_text
from actguide_plugin.cpu.tiny_model import build_tiny_model
from data_preprocess.barrier import build_barrier


def _refusals_then(turns: list[Turn], count: int) -> tuple[int, list[Turn]]:
    """How many leading searches were refused (at most one, the copy noise), and the ``count`` turns after them."""
    refused = [turn for turn in turns if turn.tool_response == UNREACHABLE_TEXT]
    assert len(refused) <= 1 and turns[: len(refused)] == refused and len(turns) == len(refused) + count
    assert not any(turn.trained for turn in refused)  # a wrong first search is context: it must not undo the copy
    return len(refused), turns[len(refused) :]


@pytest.mark.parametrize("noisy", [False, True])
def test_warm_start_follows_linked_plans_and_never_takes_a_hop_without_one(noisy):
    settings = BasePolicySettings(examples=400, copy_noise=0.2, noise_steps=25, batch_size=16)
    data = conversations(settings, noisy=noisy)
    assert len(data) == 400  # examples, or noise_steps x batch_size for the noisy final phase
    plans = [c for c in data if level_in_text(c.messages[-1]["content"])]
    assert 120 < len(plans) < 280
    pointers = [c for c in data if c.messages[-1]["content"].startswith("What does ")]
    assert 40 < len(pointers) < 130  # pointer_share 0.2
    refused = {"guided": 0, "unguided": 0}
    for conversation in pointers:  # read a link page, answer the name: never search it
        wrong, (search, answer) = _refusals_then(conversation.turns, 2)
        refused["unguided"] += wrong
        target = search.tool_response.split(" points to ")[1][:-1]
        assert answer.assistant == f"<answer>{target}</answer>" and target not in conversation.messages[-1]["content"]
    unguided_codes = [c for c in data if c not in plans and c not in pointers]
    shallow = [c for c in unguided_codes if "points to" in c.turns[-2].tool_response]
    assert 60 < len(shallow) < 140  # shallow_share 0.25
    for conversation in unguided_codes:
        assert conversation.messages[-1]["content"].startswith("What is the code of ")
        wrong, (search, answer) = _refusals_then(conversation.turns, 2)
        refused["unguided"] += wrong
        if conversation in shallow:  # the code question on a page that points on: the pointed name, never a search
            assert answer.assistant == f"<answer>{search.tool_response.split(' points to ')[1][:-1]}</answer>"
        else:  # lookup: one search of the asked entity, its code page, its code
            assert answer.assistant == f"<answer>{search.tool_response[-4:-1]}</answer>"
    for conversation in plans:
        plan = [action.arguments["query"][0] for action in plan_in_text(conversation.messages[-1]["content"])]
        *searches, answer = conversation.turns
        found = [turn for turn in searches if turn.tool_response != UNREACHABLE_TEXT]
        refused["guided"] += len(searches) - len(found)
        assert all(turn.trained == (position > 0) for position, turn in enumerate(searches) if turn not in found)
        assert [turn.call.arguments["query"][0] for turn in found] == plan  # every hop, in order
        for turn, following in zip(found, plan[1:], strict=False):
            assert turn.tool_response.endswith(f"points to {following}.")  # each page links to the next line
        assert answer.assistant == f"<answer>{found[-1].tool_response[-4:-1]}</answer>"  # the last page's code
    steps = {"guided": sum(len(plan_in_text(c.messages[-1]["content"])) for c in plans), "unguided": 400 - len(plans)}
    for family, count in refused.items():
        if noisy:  # copy_noise 0.2 before any search, guided or not: a refusal is no cue for a plan (about 1 in
            # 1,000 draws picks the right name itself and adds no refusal)
            assert 0.1 * steps[family] < count < 0.3 * steps[family], family
        else:
            assert count == 0  # the copying skills are learned from clean data first


def test_a_context_only_turn_is_in_the_tokens_but_not_in_the_loss():
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED)
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen3")
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What is the code of bak dor?"},
    ]
    call = Action(SEARCH_TOOL, {"query": ["fen gip"]})
    right = search_turn("bak dor", "bak dor", "bak dor has code 417.")
    seen_ids, seen_mask = encode(
        builder,
        tokenizer,
        tool_schemas(),
        Conversation(messages, [Turn(tool_call_text(call), UNREACHABLE_TEXT, call), right]),
    )
    wrong = Turn(tool_call_text(call), UNREACHABLE_TEXT, call, trained=False)
    ids, mask = encode(builder, tokenizer, tool_schemas(), Conversation(messages, [wrong, right]))
    assert ids == seen_ids  # the same tokens either way
    first, count = seen_mask.index(1), len(tokenizer.encode(wrong.assistant, add_special_tokens=False)) + 1
    assert seen_mask[first : first + count] == [1] * count and mask[first : first + count] == [0] * count
    assert mask[first + count :] == seen_mask[first + count :] and sum(mask) > 0  # the rest is trained as before


class _Replay:
    """The LLM server of the agent loop, replaying given assistant turns (the unit under test is the token layout)."""

    def __init__(self, turns: list[list[int]]) -> None:
        self.turns = list(turns)

    async def generate(self, request_id, *, prompt_ids, sampling_params, **_kwargs) -> TokenOutput:
        return TokenOutput(token_ids=self.turns.pop(0), log_probs=None, stop_reason="completed", extra_fields={})


@pytest.mark.integration
def test_encode_matches_the_tokens_of_a_real_agent_loop_rollout(tmp_path, monkeypatch):
    from actguide_plugin.commands.offline_agent import OfflineAgent
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


def test_the_shared_prefix_run_once_gives_the_loss_and_gradient_of_a_plain_forward(tmp_path):
    """``batch_loss`` runs the system turn every sequence shares once per batch and the LM head on scored tokens only:
    the same cross-entropy, and the same gradient, as one forward of every full row."""
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = build_tiny_model(tmp_path / "model", vocab="barrier", hidden_size=32, num_layers=2, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="sdpa")
    builder = create_continuous_token_builder(tokenizer, hf_model_type=model.config.model_type)
    data = conversations(BasePolicySettings(examples=8, batch_size=8))
    sequences = [encode(builder, tokenizer, tool_schemas(), conversation) for conversation in data]
    prefix = shared_prefix_length(sequences)
    assert 0 < prefix < min(mask.index(1) for _, mask in sequences)
    shared = tokenizer.decode(sequences[0][0][:prefix])  # the system turn with the tools, up to the question
    assert shared.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}") and "<|im_start|>user" in shared
    width = max(len(ids) for ids, _ in sequences)
    ids = torch.tensor([seq + [tokenizer.pad_token_id] * (width - len(seq)) for seq, _ in sequences])
    mask = torch.tensor([m + [0] * (width - len(m)) for _, m in sequences], dtype=torch.float64)

    def loss_and_grad(loss_fn):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])

    def plain():
        logits = model(input_ids=ids).logits[:, :-1]
        token_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        return (token_loss * mask[:, 1:]).sum() / mask[:, 1:].sum()

    shared_loss, shared_grad = loss_and_grad(lambda: batch_loss(model, ids, mask, prefix))
    plain_loss, plain_grad = loss_and_grad(plain)
    assert shared_loss == pytest.approx(plain_loss, rel=1e-9)
    assert torch.allclose(shared_grad, plain_grad, rtol=1e-6, atol=1e-9)
