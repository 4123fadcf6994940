"""Tiny Qwen-architecture models and their offline tokenizers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from actguide_plugin.cpu.tiny_model import build_tiny_model, load_tokenizer

# Qwen2.5 / Qwen3 ids of the tokens our chat template and agent loops use.
QWEN_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<tool_call>": 151657,
    "</tool_call>": 151658,
    "<tool_response>": 151665,
    "</tool_response>": 151666,
    "<think>": 151667,
    "</think>": 151668,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "web_search",
            "description": "Search the web.",
            "parameters": {"type": "object", "properties": {"query": {"type": "array"}}, "required": ["query"]},
        },
    }
]
CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Who wrote Hamlet?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "web_search", "arguments": {"query": ["Hamlet"]}}}],
    },
    {"role": "tool", "content": "Hamlet is a play by Shakespeare."},
    {"role": "tool", "content": "second result"},
]
EXPECTED_LAYOUT = (
    "<|im_start|>system\nAnswer briefly.\n\n# Tools\n\nYou may call one or more functions to assist with the user "
    "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "web_search", "description": "Search the web.", "parameters": '
    '{"type": "object", "properties": {"query": {"type": "array"}}, "required": ["query"]}}}\n</tools>\n\n'
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
    "<|im_start|>user\nWho wrote Hamlet?<|im_end|>\n"
    '<|im_start|>assistant\n<tool_call>\n{"name": "web_search", "arguments": {"query": ["Hamlet"]}}\n'
    "</tool_call><|im_end|>\n"
    "<|im_start|>user\n<tool_response>\nHamlet is a play by Shakespeare.\n</tool_response>\n<tool_response>\n"
    "second result\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.mark.parametrize("vocab", ["qwen", "bytes"])
def test_special_tokens_round_trip_and_hermes_template(vocab):
    tokenizer = load_tokenizer(vocab)
    # The byte-level tokenizer appends the same tokens, in the same order, after its 256 byte tokens.
    expected_ids = QWEN_IDS if vocab == "qwen" else {token: 256 + i for i, token in enumerate(QWEN_IDS)}
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_IDS} == expected_ids
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"

    text = 'Grüße 42 <tool_call>\n{"name": "x"}\n</tool_call><|im_end|>'
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert expected_ids["<tool_call>"] in ids and expected_ids["<|im_end|>"] == ids[-1]

    rendered = tokenizer.apply_chat_template(CONVERSATION, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert rendered == EXPECTED_LAYOUT


def test_qwen_vocabulary_matches_qwen_ids():
    tokenizer = load_tokenizer("qwen")
    assert len(tokenizer) == 151669
    assert tokenizer.encode("Hello", add_special_tokens=False) == [9707]  # Qwen2.5/Qwen3 id of "Hello"


def test_tiny_model_loads_and_runs(tiny_bytes_model):
    config = AutoConfig.from_pretrained(tiny_bytes_model)
    assert config.model_type == "qwen3" and config.num_hidden_layers == 2 and config.hidden_size == 64
    tokenizer = AutoTokenizer.from_pretrained(tiny_bytes_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_bytes_model, attn_implementation="sdpa")
    ids = torch.tensor([tokenizer.encode("hi there")])
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], config.vocab_size)
    assert config.vocab_size >= len(tokenizer)


def test_same_seed_same_weights_and_bad_sizes_rejected(tmp_path):
    a = build_tiny_model(tmp_path / "a", vocab="bytes", hidden_size=32, num_layers=1, seed=5)
    b = build_tiny_model(tmp_path / "b", vocab="bytes", hidden_size=32, num_layers=1, seed=5)
    wa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(ValueError, match="hidden_size"):
        build_tiny_model(tmp_path / "c", vocab="bytes", hidden_size=30)
    with pytest.raises(ValueError, match="vocab"):
        load_tokenizer("gpt2")
