"""The barrier world: multi-hop link chains over synthetic entities, a procedure the base policy does not know.

A task asks for the *code* of an entity. Its page does not hold the code: it points to another entity, whose
page points to a third, and so on for L hops; only the last page has the code::

    What is the code of zor bla?
    web_search {"query": ["zor bla"]}  ->  zor bla points to kim tu.
    web_search {"query": ["kim tu"]}   ->  kim tu points to rux dap.
    web_search {"query": ["rux dap"]}  ->  rux dap has code 417.
    <answer>417</answer>

Pages are reachable only through links (:func:`reachable_names`): the world's search answers a name from the
question or from a page the trajectory has read, not one it saw only in a plan, so a guided rollout must follow
every hop too. The *procedure* (search the entity a page points to, until a page has a code) is the same for every task;
the entities are not. Names are two syllables from :data:`SYLLABLES`; a fixed eighth of all pairs
(:func:`is_validation_name`) is reserved for validation, so validation tasks use entities never seen in training
(nor in the base policy's warm start) and unguided success there can only come from the learned procedure.

Why it is a reachability barrier: the base policy (:mod:`.base_policy`) knows the primitives — the tool-call
format, searching the entity a question names, answering with the code a page shows, following a numbered plan —
from *other* tasks (single-hop lookups, plans over unrelated pages), never a hop from a page to the entity it names.
Unguided, it answers after the first search; with the full plan G_L it searches every hop and reads the code. A
3-digit code is out of reach of guessing (1/900 per rollout).

Everything here is pure Python (no verl, no torch) and deterministic from the seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from actguide_plugin.core.actions import Action

SEARCH_TOOL = "web_search"
# Three-letter non-words (none an English stopword, each a BM25 token); a name is two of them in index order,
# since BM25 cannot tell "zor bla" from "bla zor".
_SYLLABLE_TEXT = """
bak dor fen gip hul jom kev lin mup nar pol quz ris sav tek vor wib yal zun bex
cof dap fir gup hov jit kal mer nup pif rux sol tiv vam wep yor zek bim duf lom
cav dek fot gim hep kub lar mev nod pux rif sek tam vul wod zil
"""
SYLLABLES: tuple[str, ...] = tuple(_SYLLABLE_TEXT.split())
SYSTEM_PROMPT = "Answer the question with the tools. Give the final answer inside <answer></answer>."
QUESTION = "What is the code of {name}?"
POINTER_QUESTION = "What does {name} point to?"  # the base policy's warm start only: reading a link page
LINK_TEXT = "{name} points to {target}."
CODE_TEXT = "{name} has code {code}."
DATA_SOURCE = "barrier_chain"
# what the world's search answers for a name the trajectory has not seen (no name in it: that would make it seen)
UNREACHABLE_TEXT = "No page found: search a name given in the question or on a page you have read."
MIN_HOPS, MAX_HOPS = 2, 3  # default task lengths: the base policy rarely follows 4-step plans


def name_of(first: int, second: int) -> str:
    """The entity named by syllables ``first`` and ``second`` (indices into :data:`SYLLABLES`)."""
    return f"{SYLLABLES[first]} {SYLLABLES[second]}"


def is_validation_name(first: int, second: int) -> bool:
    """The fixed eighth of syllable pairs reserved for validation (every syllable occurs in both parts)."""
    return (first * 7 + second * 3) % 8 == 0


def names(validation: bool) -> list[str]:
    """Every name of one partition, in a fixed order."""
    count = len(SYLLABLES)
    return [name_of(i, j) for i in range(count) for j in range(i + 1, count) if is_validation_name(i, j) == validation]


_SYLLABLE_INDEX = {syllable: i for i, syllable in enumerate(SYLLABLES)}
_NAME = re.compile(r"\b(" + "|".join(SYLLABLES) + r") (" + "|".join(SYLLABLES) + r")\b")


def canonical_name(text: str) -> str | None:
    """The world's name a query means (its two syllables in index order, as BM25 sees them), or None."""
    words = text.lower().split()
    if len(words) != 2 or not all(word in _SYLLABLE_INDEX for word in words):
        return None
    first, second = sorted(words, key=_SYLLABLE_INDEX.__getitem__)
    return f"{first} {second}"


def reachable_names(messages: list[dict], plan_header: str) -> set[str]:
    """Names a trajectory has seen, so may search: those in the question and on the pages its searches returned.

    Pages are reachable only through links, as on the web: a plan line (everything of the user message from
    ``plan_header`` on) is not a page, so naming an entity there does not make it reachable. Without this rule a
    guided rollout could skip hops (search only the plan's last line: a near-miss query still finds *a* page), and
    the reward would credit a shortcut the unguided policy cannot take (docs/barrier.md).
    """
    seen: set[str] = set()
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str) or message.get("role") not in ("user", "tool"):
            continue
        if message["role"] == "user" and plan_header in content:
            content = content[: content.index(plan_header)]
        seen.update(canonical_name(match.group(0)) for match in _NAME.finditer(content.lower()))
    seen.discard(None)
    return seen


@dataclass(frozen=True)
class ChainTask:
    """One task: ``chain[0]`` is asked about, each page points to the next, ``chain[-1]`` has ``code``."""

    task_id: str
    chain: tuple[str, ...]
    code: str

    @property
    def question(self) -> str:
        return QUESTION.format(name=self.chain[0])

    @property
    def actions(self) -> tuple[Action, ...]:
        """The reference actions: one search per hop (the real ``web_search`` tool's arguments)."""
        return tuple(Action(name=SEARCH_TOOL, arguments={"query": [name]}) for name in self.chain)

    def pages(self) -> Iterator[tuple[str, str]]:
        """``(title, text)`` of every page of the chain."""
        for name, target in zip(self.chain, self.chain[1:], strict=False):
            yield name, LINK_TEXT.format(name=name, target=target)
        yield self.chain[-1], CODE_TEXT.format(name=self.chain[-1], code=self.code)


def random_code(rng: random.Random) -> str:
    return str(rng.randint(100, 999))


def make_chains(
    rng: random.Random, pool: list[str], count: int, min_hops: int, max_hops: int, prefix: str
) -> list[ChainTask]:
    """``count`` chains of ``min_hops``..``max_hops`` entities drawn without replacement from ``pool``.

    Each entity belongs to one chain only, so every page in the corpus is a single, consistent fact.
    """
    if not 1 <= min_hops <= max_hops:
        raise ValueError(f"hops must satisfy 1 <= min_hops <= max_hops, got {min_hops}..{max_hops}")
    lengths = [rng.randint(min_hops, max_hops) for _ in range(count)]
    if sum(lengths) > len(pool):
        raise ValueError(
            f"{count} {prefix} tasks of {min_hops}-{max_hops} hops need {sum(lengths)} entities; "
            f"the {prefix} partition has {len(pool)}"
        )
    shuffled = rng.sample(pool, len(pool))
    tasks, start = [], 0
    for index, length in enumerate(lengths):
        chain = tuple(shuffled[start : start + length])
        start += length
        tasks.append(ChainTask(f"{prefix}-{index:04d}", chain, random_code(rng)))
    return tasks


@dataclass(frozen=True)
class World:
    """Train and validation tasks of one seed, and the corpus that serves all their pages."""

    seed: int
    train: list[ChainTask]
    val: list[ChainTask]

    def corpus(self) -> list[dict[str, str]]:
        """``corpus.jsonl`` documents ``{id, title, url, text}`` (no url: pages are found by search)."""
        documents = []
        for task in [*self.train, *self.val]:
            for title, text in task.pages():
                documents.append({"id": title.replace(" ", "-"), "title": title, "url": "", "text": text})
        return documents


def build_world(seed: int, train: int, val: int, min_hops: int = MIN_HOPS, max_hops: int = MAX_HOPS) -> World:
    """The world of ``seed``: ``train`` tasks over training names, ``val`` tasks over validation names."""
    rng = random.Random(seed)
    return World(
        seed=seed,
        train=make_chains(rng, names(validation=False), train, min_hops, max_hops, "train"),
        val=make_chains(rng, names(validation=True), val, min_hops, max_hops, "val"),
    )
