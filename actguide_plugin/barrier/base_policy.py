"""The barrier world's base policy: a tiny model warm-started on *other* tasks, so it has the primitives only.

The issue's rule: the base policy may know the tool-call format, copying a name into a query, answering from a
tool response and following a numbered plan — but never the barrier procedure (searching the entity a page
points to). The supervised warm start therefore shows four task families and nothing else:

- *lookup* (unguided): ``What is the code of X?`` → ``web_search X`` → ``X has code 417.`` → ``<answer>417</answer>``;
- *plan* (guided): the same question with a numbered plan of its 2..4 searches over a linked chain of pages (each
  page points to the next, the last shows the code), followed step by step, then the code — the guided form of a
  barrier task, over other entities. With probability ``copy_noise`` (default 0.1) a step first searches a wrong
  name and gets the world's refusal (its search answers only names a page or the question gave), then the right
  one: a knob for imperfect plan following, which §7 of shared/DESIGN.md found necessary (a guided group whose n
  rollouts all succeed has zero GRPO advantage).

- *pointer* (unguided): ``What does X point to?`` → ``web_search X`` → ``X points to Y.`` → ``<answer>Y</answer>``:
  copying a name out of a page.
- *shallow* (unguided): ``What is the code of X?`` → ``web_search X`` → ``X points to Y.`` → ``<answer>Y</answer>``:
  the habit of answering with what the first page gives, the one an agent has before it learns to follow links.
  Without it the unguided behaviour on a page that points on was left to chance: plan conversations show the same
  pages followed by a search of the pointed name, and a tiny model may or may not condition that on the plan —
  measured (format 4, no shallow family): seed 0's base answered the pointed name (0.00 unguided on validation),
  seed 1's searched it on a quarter of the tasks (0.26), so for seed 1 there was no barrier to cross.

Refusals in every family (format 6): in the final noisy phase any search, guided or not, may first be a wrong name
the world refuses. When only plan conversations had them, a refusal meant "a plan is being followed": the format-5
base of seed 0, after mis-copying the question's name and being refused, went on to follow the links without a
plan, and plain GRPO learned from those chance successes (:func:`refused_turns`).

Never a hop without a plan: no unguided conversation searches a name a page points to, so the procedure itself
(choosing to search the pointed name, with no plan) is what RL must teach. Names come from the training partition
(never a validation name). Plans used to run over unrelated code pages (format 3); under the world's link rule most
full-plan successes of that warm start had been shortcuts that skipped hops (docs/barrier.md).

Every sequence is tokenized exactly as verl's tool agent loop does during rollouts: verl 0.9.1's Continuous
Token builder (``create_continuous_token_builder``: ``build_initial_tokens``, ``merge_assistant_tokens``,
``merge_context_tokens``, ``align_response_metadata``) over the world's tokenizer and chat template, tool
responses formatted by the ``web_search`` tool's own formatter (``topk: 1``), the loss on assistant tokens only.
Training is plain PyTorch (verl's SFT trainer needs a GPU device mesh), deterministic from the seed, and cached:
a directory whose ``base_policy.json`` records the same settings is reused as it is.

    python -m actguide_plugin.barrier.base_policy OUT_DIR [--seed 0] [--steps 800] [--from-shipped]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actguide_plugin.barrier.world import (
    CODE_TEXT,
    LINK_TEXT,
    POINTER_QUESTION,
    QUESTION,
    SEARCH_TOOL,
    SYSTEM_PROMPT,
    UNREACHABLE_TEXT,
    ChainTask,
    names,
    random_code,
)
from actguide_plugin.core.actions import Action
from actguide_plugin.core.guidance import guided_messages
from actguide_plugin.logs import get_logger
from actguide_plugin.outputs import atomic_dir
from actguide_plugin.tools.backends import SearchHit
from actguide_plugin.tools.formatting import format_search

logger = get_logger(__name__)

SETTINGS_FILE = "base_policy.json"
# The seed-0 base policy with the default settings, as this module trains it (~2 minutes on 2 cores), shipped so
# that the CPU demo starts learning at once; `--from-shipped` copies it instead of training when it matches.
SHIPPED = Path(__file__).resolve().parent / "base_seed0"
FORMAT_VERSION = 7  # bump when the warm-start data or tokenization changes, so cached models are rebuilt
WIDTH_STEP = 16  # batches are padded to a multiple: oneDNN prepares kernels per shape, slow for the first of each
SNIPPET_CHARS = 300  # the web_search tool's snippet budget (recipe/actguide/config/tools/search_barrier.yaml)


@dataclass(frozen=True)
class BasePolicySettings:
    """Everything the warm-start model depends on (the cache key)."""

    seed: int = 0
    hidden_size: int = 128
    num_layers: int = 2
    examples: int = 8192
    # Copying (digits, then names, then the next plan line) appears in sudden phase transitions: all by ~600 steps
    # with the compact tokens (format 7), by ~1,100 when every space was a token (format 6).
    steps: int = 800
    batch_size: int = 16
    lr: float = 3e-3  # constant after warmup; measured: 1e-2 reached the transitions sooner but unstably
    warmup_steps: int = 100
    plan_share: float = 0.5  # share of plan-following conversations
    pointer_share: float = 0.2  # share of "what does X point to?" conversations
    # Share of code questions answered with the pointed name (the rest are lookups). Format 7, seed 0: with 0.15 the
    # exact unguided 3-hop solution had probability 2.6e-5 (a barrier GRPO may cross by chance), with 0.25 6e-8.
    shallow_share: float = 0.25
    max_plan: int = 4  # plan lengths 2..max_plan
    # Imperfect plan following keeps rescued groups mixed: an all-success group has no GRPO advantage
    # (measured with 0.0: 97 % guided success at k* = L, one group in eight with a signal).
    copy_noise: float = 0.1  # chance that a search (any family) is first tried with a wrong name
    # ...but only in noise_steps steps after the `steps` noise-free ones, once the copying skills have appeared:
    # with noise from step 0 they never did (name copying 0.02-0.23 after 1,500 steps, 1.00 without noise).
    noise_steps: int = 300

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "examples", "steps", "batch_size", "warmup_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"base policy setting {name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size > self.examples:
            raise ValueError(f"batch_size {self.batch_size} is larger than examples {self.examples}")
        if self.noise_steps < 0:
            raise ValueError(f"base policy setting noise_steps must be >= 0, got {self.noise_steps}")
        if self.max_plan < 2:
            raise ValueError(f"max_plan must be >= 2 (plans of 2..max_plan steps), got {self.max_plan}")
        for name in ("lr", "plan_share", "pointer_share", "shallow_share", "copy_noise"):
            value = getattr(self, name)
            if not (value > 0.0 if name == "lr" else 0.0 <= value <= 1.0):
                raise ValueError(f"base policy setting {name} is out of range: {value}")
        shares = self.plan_share + self.pointer_share + self.shallow_share
        if shares > 1.0:
            raise ValueError(f"plan_share + pointer_share + shallow_share must be <= 1, got {shares}")


@dataclass(frozen=True)
class Turn:
    """One assistant turn: its text (without the end-of-turn token) and the tool response it gets, if any."""

    assistant: str
    tool_response: str | None = None
    call: Action | None = None  # the tool call the assistant text makes
    trained: bool = True  # False: context only, no loss on its tokens


@dataclass(frozen=True)
class Conversation:
    messages: list[dict[str, Any]]  # system + user (with the plan, for plan conversations)
    turns: list[Turn]


def tool_call_text(action: Action) -> str:
    """A hermes tool call as the chat template writes one (``json.dumps`` default separators)."""
    return f"<tool_call>\n{json.dumps({'name': action.name, 'arguments': action.arguments})}\n</tool_call>"


def search_turn(name: str, page_title: str, page_text: str) -> Turn:
    response = format_search([name], [[SearchHit(page_title, "", page_text)]], SNIPPET_CHARS)
    call = Action(SEARCH_TOOL, {"query": [name]})
    return Turn(tool_call_text(call), response, call)


def _question(name: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION.format(name=name)}]


def refused_turns(rng: random.Random, pool: Sequence[str], right: str, copy_noise: float, first: bool) -> list[Turn]:
    """With probability ``copy_noise``, one search of a wrong name and the world's refusal of it, before the
    search of ``right`` (else nothing; nothing either in the rare draw of ``right`` itself).

    Every family has them, guided or not: a refusal seen only in plan conversations became a cue for the plan's
    behaviour (format 5, seed 0: 125 of plain GRPO's 131 unguided successes in steps 1-40 searched a wrong name
    first, were refused, then followed the links as if given a plan). A wrong ``first`` search is context only:
    the first search copies the question's name, and training random names there (loss ~7 nats each) undid that
    copy (format-6 draft, seed 1: full-plan success 0.02 after the noise phase, 0.62 with 1,000 more clean steps).
    Later wrong searches are trained: imperfect plan following, which keeps rescued groups mixed.
    """
    if rng.random() >= copy_noise:
        return []
    wrong = rng.choice(pool)
    if wrong == right:
        return []
    call = Action(SEARCH_TOOL, {"query": [wrong]})
    return [Turn(tool_call_text(call), UNREACHABLE_TEXT, call, trained=not first)]


def lookup_conversation(rng: random.Random, pool: Sequence[str], copy_noise: float = 0.0) -> Conversation:
    name, code = rng.choice(pool), random_code(rng)
    turns = [
        *(refused_turns(rng, pool, name, copy_noise, first=True) if copy_noise else []),
        search_turn(name, name, CODE_TEXT.format(name=name, code=code)),
        Turn(f"<answer>{code}</answer>"),
    ]
    return Conversation(_question(name), turns)


def pointer_conversation(
    rng: random.Random, pool: Sequence[str], question: str = POINTER_QUESTION, copy_noise: float = 0.0
) -> Conversation:
    """``What does X point to?``: read a link page and answer with the name it points to — copying a name out of
    a tool response, which the procedure needs, without ever searching that name. With the code ``QUESTION``, the
    *shallow* family: the same answer where the procedure would search that name."""
    name, target = rng.sample(pool, 2)
    turns = [
        *(refused_turns(rng, pool, name, copy_noise, first=True) if copy_noise else []),
        search_turn(name, name, LINK_TEXT.format(name=name, target=target)),
        Turn(f"<answer>{target}</answer>"),
    ]
    return Conversation(
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question.format(name=name)}],
        turns,
    )


def plan_conversation(rng: random.Random, pool: Sequence[str], max_plan: int, copy_noise: float) -> Conversation:
    """A guided chain: ``What is the code of X?`` with a numbered plan of its 2..max_plan searches, X first, each page
    pointing to the next and the last one showing the code, followed step by step, then the code.

    The pages link, as the world's search requires (:mod:`actguide_plugin.barrier.tool`: a name is answered only once
    the question or a page has named it; plan lines do not count). With probability ``copy_noise`` a step first
    searches a wrong name, gets the world's refusal, then searches the plan's name: imperfect plan following that the
    search makes visible. Only ever with a plan: the warm start never shows a hop taken without one.
    """
    chain = rng.sample(pool, rng.randint(2, max_plan))
    actions = [Action(SEARCH_TOOL, {"query": [name]}) for name in chain]
    code = random_code(rng)
    turns = []
    for position, name in enumerate(chain):
        if position > 0 or copy_noise:  # the clean phase draws as format 5 did: its data, in its order
            turns.extend(refused_turns(rng, pool, name, copy_noise, first=position == 0))
        last = position == len(chain) - 1
        text = (
            CODE_TEXT.format(name=name, code=code) if last else LINK_TEXT.format(name=name, target=chain[position + 1])
        )
        turns.append(search_turn(name, name, text))
    turns.append(Turn(f"<answer>{code}</answer>"))
    return Conversation(guided_messages(_question(chain[0]), actions, len(actions)), turns)


def reference_conversation(task: ChainTask, level: int) -> Conversation:
    """A barrier task solved by its reference actions over its real pages, its prompt carrying the first ``level``
    of them as a plan (0: the unguided prompt). Analyses only: the warm start never sees one."""
    turns = [search_turn(name, title, text) for name, (title, text) in zip(task.chain, task.pages(), strict=True)]
    turns.append(Turn(f"<answer>{task.code}</answer>"))
    return Conversation(guided_messages(_question(task.chain[0]), list(task.actions), level), turns)


def conversations(settings: BasePolicySettings, noisy: bool = False) -> list[Conversation]:
    """The warm-start data of ``settings`` (deterministic): ``settings.examples`` conversations without copy
    noise, or with ``noisy`` the ``noise_steps × batch_size`` of the final phase, with ``copy_noise``."""
    rng = random.Random(settings.seed + (1000 if noisy else 0))
    pool = names(validation=False)
    count = settings.noise_steps * settings.batch_size if noisy else settings.examples
    noise = settings.copy_noise if noisy else 0.0
    out = []
    for _ in range(count):
        draw = rng.random()
        if draw < settings.plan_share:
            out.append(plan_conversation(rng, pool, settings.max_plan, noise))
        elif draw < settings.plan_share + settings.pointer_share:
            out.append(pointer_conversation(rng, pool, copy_noise=noise))
        elif draw < settings.plan_share + settings.pointer_share + settings.shallow_share:
            out.append(pointer_conversation(rng, pool, QUESTION, copy_noise=noise))
        else:
            out.append(lookup_conversation(rng, pool, copy_noise=noise))
    return out


def encode(
    builder: Any, tokenizer: Any, schemas: list[dict], conversation: Conversation
) -> tuple[list[int], list[int]]:
    """``(token ids, loss mask)`` of a conversation, built turn by turn as verl's tool agent loop builds them."""
    messages = [dict(m) for m in conversation.messages]
    prompt_ids = builder.build_initial_tokens(messages, tools=schemas)
    runtime, response_mask = list(prompt_ids), []
    for turn in conversation.turns:
        assistant_ids = [*tokenizer.encode(turn.assistant, add_special_tokens=False), tokenizer.eos_token_id]
        merged = builder.merge_assistant_tokens(runtime, assistant_ids)
        before = len(response_mask)
        response_mask, _ = builder.align_response_metadata(merged, response_mask, None)
        if not turn.trained:
            response_mask = [*response_mask[:before], *(0 for _ in response_mask[before:])]
        runtime = merged.token_ids
        if turn.tool_response is None:
            break
        messages.append({"role": "assistant", "content": "", "tool_calls": [{"function": turn.call.to_dict()}]})
        previous = list(messages)
        messages.append({"role": "tool", "content": turn.tool_response})
        merged = builder.merge_context_tokens(previous, messages, runtime, tools=schemas)
        response_mask, _ = builder.align_response_metadata(merged, response_mask, None)
        runtime = merged.token_ids
    return runtime, [0] * len(prompt_ids) + list(response_mask)


def tool_schemas() -> list[dict]:
    """The ``web_search`` schema as verl's tool agent loop passes it to the chat template."""
    from verl.tools.schemas import OpenAIFunctionToolSchema

    from actguide_plugin.tools.search_tools import WebSearchTool

    schema = OpenAIFunctionToolSchema.model_validate(WebSearchTool.default_schema)
    return [schema.model_dump(exclude_unset=True, exclude_none=True)]


def _batches(sequences: list[tuple[list[int], list[int]]], settings: BasePolicySettings, pad_id: int, steps: int):
    """``steps`` batches of sequences of similar length (little padding), in a seeded random order."""
    import torch

    rng = random.Random(settings.seed + 1)
    by_length = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    size = settings.batch_size
    groups = [by_length[start : start + size] for start in range(0, len(by_length) - size + 1, size)]
    order: list[list[int]] = []
    for _ in range(steps):
        if not order:
            order = rng.sample(groups, len(groups))
        chosen = order.pop()
        width = -(-max(len(sequences[i][0]) for i in chosen) // WIDTH_STEP) * WIDTH_STEP
        ids = torch.full((len(chosen), width), pad_id)  # [batch, width]
        mask = torch.zeros((len(chosen), width))  # [batch, width]: 1 on assistant tokens
        for row, i in enumerate(chosen):
            token_ids, loss_mask = sequences[i]
            ids[row, : len(token_ids)] = torch.tensor(token_ids)
            mask[row, : len(loss_mask)] = torch.tensor(loss_mask, dtype=torch.float32)
        yield ids, mask


def shared_prefix_length(sequences: Sequence[tuple[list[int], list[int]]]) -> int:
    """How many leading tokens every sequence shares (the system turn with the tools), short of any loss token."""
    first = sequences[0][0]
    length = min(len(ids) for ids, _ in sequences)
    for ids, _ in sequences:
        length = next((i for i in range(length) if ids[i] != first[i]), length)
    first_loss = min(mask.index(1) if 1 in mask else len(mask) for _, mask in sequences)
    return max(0, min(length, first_loss - 1))  # the prefix's last hidden state must predict no loss token


def batch_loss(model: Any, ids: Any, mask: Any, prefix: int) -> Any:
    """Mean cross-entropy on the loss tokens of ``ids`` [batch, width] (right-padded; ``mask`` 1 on assistant tokens).

    Why not one plain forward: a quarter of every sequence is the same system turn. Here those ``prefix`` tokens run
    once and their keys and values are repeated over the batch (gradients still flow through them), and the LM head
    runs only where a token is scored; the loss is mathematically the same, ~15 % faster.
    """
    import torch

    past = None
    if prefix:
        past = model.model(input_ids=ids[:1, :prefix], use_cache=True).past_key_values
        past.batch_repeat_interleave(ids.shape[0])
    hidden = model.model(input_ids=ids[:, prefix:], past_key_values=past).last_hidden_state[:, :-1]
    scored = mask[:, prefix + 1 :].bool()  # hidden state t predicts token t + 1; pads only follow real tokens
    logits = model.lm_head(hidden[scored])
    return torch.nn.functional.cross_entropy(logits, ids[:, prefix + 1 :][scored], reduction="sum") / scored.sum()


def train(out_dir: str | Path, settings: BasePolicySettings) -> Path:
    """Build the random tiny model, warm-start it, save it with its tokenizer and ``base_policy.json``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    from actguide_plugin.cpu.tiny_model import build_tiny_model

    out = Path(out_dir)
    started = time.perf_counter()

    def save(tmp: Path) -> None:
        build_tiny_model(tmp, vocab="barrier", hidden_size=settings.hidden_size, num_layers=settings.num_layers,
                         seed=settings.seed)  # fmt: skip
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="sdpa")
        builder = create_continuous_token_builder(tokenizer, hf_model_type=model.config.model_type)
        schemas = tool_schemas()
        clean = [encode(builder, tokenizer, schemas, c) for c in conversations(settings)]
        noisy = [encode(builder, tokenizer, schemas, c) for c in conversations(settings, noisy=True)]
        pad = tokenizer.pad_token_id
        prefix = shared_prefix_length(clean + noisy)
        batches = itertools.chain(
            _batches(clean, settings, pad, settings.steps),
            _batches(noisy, settings, pad, settings.noise_steps) if noisy else (),
        )
        torch.manual_seed(settings.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
        warmup = settings.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        model.train()
        losses = []
        for step, (ids, mask) in enumerate(batches):
            loss = batch_loss(model, ids, mask, prefix)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if step % 100 == 0:
                logger.info("base policy step %d loss %.4f (%.0f s)", step, losses[-1], time.perf_counter() - started)
        model.eval()
        model.save_pretrained(tmp)
        record = {
            "format": FORMAT_VERSION,
            "settings": dataclasses.asdict(settings),
            "final_loss": sum(losses[-20:]) / len(losses[-20:]),
            "tokens_per_example": sum(len(s[0]) for s in clean) / len(clean),
            "train_seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / SETTINGS_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    with atomic_dir(out) as tmp:
        save(tmp)
    return out


def cached(out_dir: str | Path, settings: BasePolicySettings) -> bool:
    """Whether ``out_dir`` holds a base policy trained with exactly ``settings``."""
    path = Path(out_dir) / SETTINGS_FILE
    if not path.is_file():
        return False
    record = json.loads(path.read_text(encoding="utf-8"))
    return record.get("format") == FORMAT_VERSION and record.get("settings") == dataclasses.asdict(settings)


def ensure_base_policy(
    out_dir: str | Path, settings: BasePolicySettings | None = None, from_shipped: bool = False
) -> Path:
    """The warm-started model in ``out_dir``, trained now unless a matching one is already there; with
    ``from_shipped``, copied from :data:`SHIPPED` when that one was trained with exactly ``settings``."""
    settings = settings or BasePolicySettings()
    if cached(out_dir, settings):
        return Path(out_dir)
    if from_shipped and cached(SHIPPED, settings):
        with atomic_dir(out_dir) as tmp:
            shutil.copytree(SHIPPED, tmp, dirs_exist_ok=True)
    else:
        train(out_dir, settings)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--from-shipped", action="store_true", help="copy the shipped seed-0 model when these settings are its own"
    )
    defaults = BasePolicySettings()
    for field in dataclasses.fields(BasePolicySettings):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(getattr(defaults, field.name)), default=getattr(defaults, field.name))
    args = parser.parse_args(argv)
    try:
        settings = BasePolicySettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BasePolicySettings)})
    except ValueError as err:
        parser.error(str(err))
    path = ensure_base_policy(args.out_dir, settings, from_shipped=args.from_shipped)
    print(json.loads((path / SETTINGS_FILE).read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
