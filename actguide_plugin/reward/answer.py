"""The final answer of a trajectory, and rule-based matching against the gold answers.

Where the answer comes from: verl's reward loop decodes the whole response (``skip_special_tokens=True``),
so ``solution_str`` holds the assistant turns *and* the tool outputs the loop spliced in between them. For
Qwen's hermes template a tool turn renders as ``<|im_start|>user\\n<tool_response>...</tool_response><|im_end|>``;
after decoding, the ChatML markers are gone (special tokens) but ``<tool_response>`` survives (a non-special
added token). A retrieved page may well contain ``<answer>...</answer>``, so the answer must be read from
the assistant's own text only:

1. when ChatML markers are present (decoding kept special tokens), keep only assistant turns;
2. remove every ``<tool_response>...</tool_response>`` block (an unclosed one runs to the end: the response
   was cut inside a tool output), every ``<tool_call>...</tool_call>`` block (arguments, not prose) and every
   ``<think>...</think>`` block (reasoning: an answer drafted there is not the final answer);
3. take the last ``<answer>...</answer>`` of what remains (if tags nest, the innermost: :func:`last_block`).

All of it is linear in the response (``str.find`` / ``str.split``, no lazy regex): a response can be megabytes
of degenerate text, and this runs in the reward worker's event loop.

Matching (``rule`` mode): SQuAD-style normalization (lowercase, no articles, punctuation a separator) that keeps
what changes an answer's meaning (numbers compare as numbers, ``C++`` is not ``C``; :func:`normalize_answer`),
then exact match against any gold answer, or token F1 with any gold answer at or above a threshold.
"""

from __future__ import annotations

import decimal
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_IM_START, _IM_END = "<|im_start|>", "<|im_end|>"
_TOOL_RESPONSE = ("<tool_response>", "</tool_response>")
_TOOL_CALL = ("<tool_call>", "</tool_call>")
_ANSWER = ("<answer>", "</answer>")
_THINK = ("<think>", "</think>")  # reasoning, never the answer: an <answer> inside it does not count
_FEW_BLOCKS = 64
_ARTICLE_WORDS = frozenset({"a", "an", "the"})
_APOSTROPHES = str.maketrans("", "", "'’‘`")
_ABBREVIATION_DOT = re.compile(r"(?<=[^\W\d_])\.(?=[^\W\d_])")  # U.S.A. is usa, not "u s a"
# a number (not glued to a preceding word or point: v2.5 is v2 and 5) or a word with an optional +/# suffix
_TOKEN = re.compile(r"(?P<number>(?<![\w.])[-+−]?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?%?)|(?P<word>[^\W_]+[+#]*)")

# Tag scanning is linear in the text, built on str.find / str.split: a response can be megabytes of garbage,
# and a lazy regex such as <answer>(.*?)</answer> rescans to the end for every unclosed tag (quadratic).


def without_blocks(text: str, open_tag: str, close_tag: str, replacement: str = " ") -> str:
    """``text`` with each ``open…close`` block replaced by ``replacement``; an unclosed block runs to the end.

    A find loop for the first blocks (it jumps over any number of open tags nested in a block); past
    ``_FEW_BLOCKS`` blocks, the rest is split on the open tag and each chunk, which starts inside a block,
    keeps what follows its first close tag (one C call per block instead of a loop turn).
    """
    kept, position = [], 0
    for _ in range(_FEW_BLOCKS):
        start = text.find(open_tag, position)
        if start < 0:
            break
        kept.append(text[position:start])
        end = text.find(close_tag, start + len(open_tag))
        position = len(text) if end < 0 else end + len(close_tag)
    else:
        chunks = text[position:].split(open_tag)
        return replacement.join([*kept, chunks[0], *[chunk.partition(close_tag)[2] for chunk in chunks[1:]]])
    if not kept:
        return text
    kept.append(text[position:])
    return replacement.join(kept)


def last_block(text: str, open_tag: str, close_tag: str) -> str | None:
    """Content of the last open tag that a close tag follows, up to the first close tag after it.

    The same as the last match of ``open(.*?)close`` unless blocks nest (``<a>x<a>y</a>`` gives ``y``, the
    innermost, where the regex gave ``x<a>y``); two reverse searches, whatever the text's shape.
    """
    last_close = text.rfind(close_tag)
    if last_close < 0:
        return None
    start = text.rfind(open_tag, 0, last_close)
    if start < 0:
        return None
    start += len(open_tag)
    return text[start : text.find(close_tag, start)]


def assistant_text(solution_str: str) -> str:
    """The parts of a decoded response the assistant wrote (tool outputs and tool-call blocks removed)."""
    text = solution_str
    if _IM_START in text:
        # The response starts inside the assistant turn opened by the generation prompt. A turn is
        # "<|im_start|>role\nbody", the body ending at <|im_end|>, at the next turn or at the end.
        head, *turns = text.split(_IM_START)
        kept = [head.partition(_IM_END)[0]]
        for turn in turns:
            role, newline, body = turn.partition("\n")
            if newline and "<" not in role and role.strip() == "assistant":
                kept.append(body.partition(_IM_END)[0])
        text = "\n".join(kept)
    return without_blocks(without_blocks(without_blocks(text, *_TOOL_RESPONSE), *_TOOL_CALL), *_THINK)


def _outside_blocks_from(text: str) -> int | None:
    """A position of ``text`` (no ChatML markers) at which no ``<tool_response>`` or ``<tool_call>`` block is open,
    as near the end as a few reverse searches find; ``None`` when they cannot tell.

    Right after a close tag its kind of block is closed (the tag ends the open block, or is plain text outside
    one). Whether a position lies in a ``<tool_response>`` block is local: it does when the last
    ``<tool_response>`` before it is not followed by a ``</tool_response>`` before it. So the end of the last
    ``</tool_call>`` outside a tool response is such a position, and so is the end of the last
    ``</tool_response>`` when there is no ``<tool_call>`` at all.
    """
    if _TOOL_CALL[0] not in text:
        last = text.rfind(_TOOL_RESPONSE[1])
        return 0 if last < 0 else last + len(_TOOL_RESPONSE[1])
    end = len(text)
    for _ in range(_FEW_BLOCKS):
        close = text.rfind(_TOOL_CALL[1], 0, end)
        if close < 0:
            return None
        response = text.rfind(_TOOL_RESPONSE[0], 0, close)
        if response < 0 or text.find(_TOOL_RESPONSE[1], response, close) >= 0:
            return close + len(_TOOL_CALL[1])
        end = response  # this close tag is inside a tool response: look before that response
    return None


def extract_answer(solution_str: str) -> str | None:
    """The content of the assistant's last ``<answer>...</answer>`` (see :func:`last_block`), stripped;
    ``None`` when there is none.

    Usually read from the tail after the last tool block (:func:`_outside_blocks_from`), so the time is
    proportional to the tail; otherwise, or when the answer does not lie wholly in the tail, from the whole
    :func:`assistant_text`.
    """
    last_close = solution_str.rfind(_ANSWER[1])
    if last_close < 0:
        return None
    # What follows the last close tag cannot hold an answer, and removing blocks is decided left to right.
    text = solution_str[: last_close + len(_ANSWER[1])]
    # the tail shortcut knows tool blocks only: with a <think> block anywhere, read the whole assistant text
    start = None if _IM_START in text or _THINK[0] in text else _outside_blocks_from(text)
    answer = None if start is None else last_block(assistant_text(text[start:]), *_ANSWER)
    if answer is None:
        answer = last_block(assistant_text(text), *_ANSWER)
    return None if answer is None else answer.strip()


def normalize_answer(text: str) -> str:
    """The answer as space-separated tokens: Unicode NFKC (full-width digits, ligatures, composed accents),
    lowercase, apostrophes and dots between letters removed (``O'Neil`` = ``ONeil``, ``U.S.A.`` = ``USA``), English
    articles dropped, other punctuation a
    separator — except where it changes the meaning: numbers keep their sign, decimal point, fraction bar and
    ``%`` and compare as numbers (``2.50`` = ``2.5``, ``1,000`` = ``1000``; ``25`` ≠ ``2.5``, ``-40`` ≠ ``40``,
    ``12`` ≠ ``1/2``), and a word keeps a trailing ``+``/``#`` (``C++`` ≠ ``C``, ``C#``). One regex pass: linear."""
    text = _ABBREVIATION_DOT.sub("", unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES))
    tokens = []
    for match in _TOKEN.finditer(text):
        number, word = match.group("number"), match.group("word")
        if number is not None:
            tokens.append(_canonical_number(number))
        elif word not in _ARTICLE_WORDS:
            tokens.append(word)
    return " ".join(tokens)


def _canonical_number(text: str) -> str:
    """``-1,000.50`` → ``-1000.5``; a fraction keeps its two integers, ``%`` stays a suffix."""
    percent = "%" if text.endswith("%") else ""
    body = text.removesuffix("%").replace("−", "-").replace(",", "")
    if "/" in body:
        numerator, denominator = body.split("/")
        return f"{int(numerator)}/{int(denominator)}{percent}"
    value = format(decimal.Decimal(body).normalize(), "f")
    return ("0" if value in ("-0", "+0") else value.lstrip("+")) + percent


def token_f1(prediction: str, gold: str) -> float:
    """Token-level F1 of the normalized strings."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answer_text(value: Any) -> str:
    """One gold answer as text, by the rule the preprocessor writes and the reward reads.

    Strings are stripped; integers are written in decimal; a float is written without a fraction when it is
    integral and at most 2**53 (``3.0`` → ``"3"``, so the answer "3" matches) and as its shortest round-trip text
    otherwise (``2.5`` → ``"2.5"``, ``1.5e300`` → ``"1.5e+300"``, not 301 digits). Booleans, NaN/infinity,
    ``None`` and nested lists or objects are not answers.
    """
    if isinstance(value, str):
        return value.strip()
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):  # numpy scalar from a parquet column
        value = value.item()
    if isinstance(value, bool):
        raise ValueError(f"a boolean is not an answer, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a number answer must be finite, got {value!r}")
        # integral floats up to 2**53 are exact integers ("3"); beyond, repr keeps the text short (1.5e+300)
        return str(int(value)) if value.is_integer() and abs(value) <= 2**53 else repr(value)
    raise ValueError(f"an answer must be a string or a number, got {type(value).__name__}")


def parse_gold_answers(ground_truth: Any) -> list[str]:
    """Gold answers (alternatives) from a string, a number, a list/array of those, a JSON string of such a
    list, or ``{"target": ...}``; every item becomes text by :func:`gold_answer_text`."""
    value = ground_truth
    if isinstance(value, dict) and "target" in value:  # Search-R1 style ground_truth
        value = value["target"]
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                decoded = json.loads(stripped)
            except json.JSONDecodeError:
                decoded = None
            if isinstance(decoded, list):
                value = decoded
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy array (parquet) or numpy scalar
        value = value.tolist()
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ValueError("ground_truth must hold at least one answer, got an empty list")
    try:
        return [gold_answer_text(item) for item in items]
    except ValueError as err:
        raise ValueError(f"ground_truth: {err}") from err


def encode_gold_answers(answers: Sequence[str]) -> str:
    """The ``ground_truth`` column text for ``answers``: the answer itself when there is one (unless it would
    read back as a JSON list), else a JSON list of alternatives; :func:`parse_gold_answers` reads it back."""
    if len(answers) == 1 and not answers[0].startswith("["):
        return answers[0]
    return json.dumps(list(answers), ensure_ascii=False)


@dataclass(frozen=True)
class RuleMatch:
    """Exact match and best token F1 over the gold answers, and the verdict at the F1 threshold."""

    exact: bool
    f1: float
    correct: bool


def rule_match(prediction: str, gold_answers: Sequence[str], f1_threshold: float) -> RuleMatch:
    """Correct when the normalized prediction equals a gold answer or reaches ``f1_threshold`` token F1.

    A gold answer that normalizes to nothing (``"The"``, ``"?"``) matches nothing: otherwise every prediction
    that also normalizes to nothing (an empty ``<answer></answer>``, ``"a"``) would be scored correct.
    """
    golds = [normalized for normalized in map(normalize_answer, gold_answers) if normalized]
    if not golds:
        return RuleMatch(exact=False, f1=0.0, correct=False)
    normalized = normalize_answer(prediction)
    exact = normalized in golds
    f1 = max(token_f1(prediction, gold) for gold in golds)
    return RuleMatch(exact=exact, f1=f1, correct=exact or f1 >= f1_threshold)
