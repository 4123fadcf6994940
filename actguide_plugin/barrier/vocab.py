"""The barrier world's compact tokenizer: one token per word (with the space before it), syllable, digit, line
break (with its indent) or punctuation run (with the spaces in and around it).

Why not the Qwen vocabulary: its 151k-entry logits dominate a tiny model's cost, and a prompt with the tool
schemas is ~1,600 byte tokens; here the vocabulary has ~260 entries and an unguided prompt ~50 tokens, so a verl
step is cheap enough for a 100-step learning run on a CPU (docs/benchmarks.md, "Step cost").

Why word level, with a name's syllables never taking a space: an entity name (``zor bla``) is then the same token
ids in the question, in a page, in a plan line and inside the JSON of a tool call (``["zor bla"]``), so copying a
name is copying tokens — a skill a 2-layer model learns in the warm start and applies to names it never saw. Every
other word takes the space before it, and JSON punctuation its spaces (``": ["`` is one token): a warm-start
conversation is 220 tokens instead of 297 with every space its own token, which is what brings the warm start
under 3 minutes (docs/barrier.md). The vocabulary is closed (every syllable, digit and word of :mod:`.world`, the
guidance block, the tool responses and the chat template) and fixed: it does not depend on a world's seed.
Anything else encodes as ``<unk>``.

The decoder concatenates tokens, so ``decode(encode(text)) == text`` for any text made of known pieces, and the
hermes tool parser sees exactly the JSON the model wrote. The chat template is ours in Qwen's layout
(:mod:`actguide_plugin.cpu.tiny_model`) with the tools listed on one line.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

from actguide_plugin.barrier.world import (
    POINTER_QUESTION,
    SEARCH_TOOL,
    SYLLABLES,
    SYSTEM_PROMPT,
    UNREACHABLE_TEXT,
    ChainTask,
)
from actguide_plugin.core.actions import Action
from actguide_plugin.core.guidance import DEFAULT_TEMPLATE
from actguide_plugin.cpu.tiny_model import BYTES_ADDED_TOKENS, COMPACT_TOOLS_BLOCK, chat_template, finish_tokenizer
from actguide_plugin.tools.backends import Failed, SearchHit
from actguide_plugin.tools.formatting import format_search

_SYLLABLE = "(?:" + "|".join(SYLLABLES) + ")(?![A-Za-z_])"
_PUNCT = r"[^\sA-Za-z_\d]+"
# A word takes the space before it, a punctuation run the spaces inside and around it, a line break the indent
# after it; a syllable never takes a space, so a name is the same tokens wherever it stands.
PIECE_PATTERN = rf" ?(?!{_SYLLABLE})[A-Za-z_]+|[A-Za-z_]+|\d| ?{_PUNCT}(?: {_PUNCT})* ?|\n +|\s"
UNK = "<unk>"
TEMPLATE = chat_template(COMPACT_TOOLS_BLOCK)
# Tool schemas as verl renders them into the system turn (names and parameter names only: COMPACT_TOOLS_BLOCK).
TOOL_SCHEMAS = (
    {"type": "function", "function": {"name": SEARCH_TOOL, "parameters": {"properties": {"query": {}}}}},
    {"type": "function", "function": {"name": "web_visit", "parameters": {"properties": {"url": {}, "goal": {}}}}},
)
# Words of the tools' own messages a model can provoke (malformed calls, unknown pages), so they are not <unk>.
_TOOL_MESSAGES = (
    "Error: web_search needs 'query': a list of strings, got None",
    "Error: web_search needs at least one non-empty string in 'query'",
    "Error: web_visit needs 'url': a list of strings, got None",
    "Visit failed: page not found:",
    "[1 more queries not run: at most 1 per call]",
    UNREACHABLE_TEXT,
)


def pieces(text: str) -> list[str]:
    """How the pre-tokenizer splits ``text``; the chat special tokens are not pieces (they are added tokens)."""
    specials = "|".join(re.escape(special) for special, _ in BYTES_ADDED_TOKENS)
    return [piece for segment in re.split(specials, text) for piece in re.findall(PIECE_PATTERN, segment)]


def _sample_texts() -> Iterable[str]:
    example = ChainTask("example", (f"{SYLLABLES[0]} {SYLLABLES[1]}", f"{SYLLABLES[2]} {SYLLABLES[3]}"), "417")
    yield SYSTEM_PROMPT
    yield example.question
    yield POINTER_QUESTION.format(name=example.chain[0])
    yield from _TOOL_MESSAGES
    yield DEFAULT_TEMPLATE.render(list(example.actions))
    for action in example.actions:
        yield f'\n{{"name": "{action.name}", "arguments": {action.compact_arguments()}}}\n'
        yield f'{{"name": "{action.name}", "arguments": {{"query": ["{action.arguments["query"][0]}"]}}}}'
    hits = [SearchHit(title, "", text) for title, text in example.pages()]
    yield format_search(["a", "b", "c"], [hits, [], Failed("failed")], 300)
    yield "<answer>417</answer>"


def _template_texts(tokenizer) -> Iterable[str]:
    """The chat template's own text: a conversation with a tool call and a tool response, and a bare tool turn."""
    call = Action(SEARCH_TOOL, {"query": ["x"]})
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": call.to_dict()}]},
        {"role": "tool", "content": "r"},
    ]
    yield tokenizer.apply_chat_template(messages, tools=list(TOOL_SCHEMAS), tokenize=False, add_generation_prompt=True)
    yield tokenizer.apply_chat_template(messages[-1:], tokenize=False, add_generation_prompt=True)


def _backend(vocabulary: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel(vocab={piece: i for i, piece in enumerate(vocabulary)}, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return backend


def build_tokenizer():
    """The world's tokenizer (a transformers fast tokenizer with our chat specials and template); deterministic."""
    found = set(SYLLABLES) | set(string.digits) | set(string.ascii_letters) | {" ", "\n"}
    for text in _sample_texts():
        found.update(pieces(text))
    draft = finish_tokenizer(_backend([UNK, *sorted(found)]), BYTES_ADDED_TOKENS, TEMPLATE)
    for text in _template_texts(draft):
        found.update(pieces(text))
    return finish_tokenizer(_backend([UNK, *sorted(found)]), BYTES_ADDED_TOKENS, TEMPLATE)
