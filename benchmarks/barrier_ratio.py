"""Where the guided-context ratio vanishes: per-token log r of a barrier task's guided solution, by kind of token.

    python benchmarks/barrier_ratio.py MODEL [--seed S] [--tasks 16] [--min-hops 2 --max-hops 3]

For each of the first ``--tasks`` training tasks of the world of ``--seed`` it builds the reference solution at the
full plan (the guided trajectory a rescue samples when the plan is followed), tokenized as verl's tool agent loop
tokenizes a rollout, and scores its response tokens twice with MODEL: under the guided prompt (π_old, the sampling
view) and under the unguided prompt (π_θ before the update). log r = log π_θ(y_t | x) − log π_old(y_t | x ⊕ G_L).

Tokens are grouped by what they do in the procedure:

* ``continue``: the ``<tool_call>`` opening right after a page that points to another entity (search again
  instead of answering: the decision the base policy has never seen);
* ``hop name``: the entity names of the second and later searches (copied from the page);
* ``first search``: the tokens of the first tool call (the lookup the base policy knows);
* ``answer``: the final ``<answer>...</answer>`` turn;
* ``other``: the rest of the tool-call syntax.

For each group it prints the count, the median and minimum of log r, and the mean gradient weight each
``actguide.guided_clip`` rule gives a positive-advantage token there (d loss / d log π_θ per unit advantage,
one update on fresh samples): ``same`` and ``cap`` r (for r < 1 + ε), ``shaping`` γr/(r+γ)², ``cispo``
clip(r, 1 − ε_low, 1 + ε_high).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from actguide_plugin.barrier.base_policy import Conversation, encode, reference_conversation, tool_schemas
from actguide_plugin.barrier.world import MAX_HOPS, MIN_HOPS, SYLLABLES, build_world
from actguide_plugin.core.objective import ObjectiveConfig, actguide_token_losses

GROUPS = ("continue", "hop name", "first search", "answer", "other")
RULES = ("same", "shaping", "cispo")


def response_logps(model, ids: list[int], mask: list[int]) -> torch.Tensor:
    """log π(y_t | y_<t) of the tokens where ``mask`` is 1."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, x[0, 1:, None])[:, 0]
    return token_logp[[i - 1 for i, keep in enumerate(mask) if keep]]


def token_groups(tokens: list[str]) -> list[str]:
    """The group of each response token (``tokens``: the response's tokens in order, tool outputs removed)."""
    opens = [i - 1 for i in range(1, len(tokens)) if tokens[i - 1 : i + 1] == ["<", "answer"]]  # "<answer>"
    answer_start = opens[-1] if opens else len(tokens)
    groups, call = [], 0
    for index, token in enumerate(tokens):
        call += token == "<tool_call>"
        if index >= answer_start:
            groups.append("answer")
        elif token == "<tool_call>":
            groups.append("continue" if call > 1 else "first search")
        elif call == 1:
            groups.append("first search")
        else:
            groups.append("hop name" if token in SYLLABLES else "other")
    return groups


def gradient_weights(log_ratio: torch.Tensor) -> dict[str, torch.Tensor]:
    """d loss / d log π_θ per unit of positive advantage, for each rule (one guided row of these tokens)."""
    weights = {}
    for rule in RULES:
        new = log_ratio.clone().double().unsqueeze(0).requires_grad_()
        losses, _ = actguide_token_losses(
            new, torch.zeros_like(new), torch.ones_like(new), torch.tensor([True]),
            ObjectiveConfig(guided_clip=rule, shaping_gamma=0.1),
        )  # fmt: skip
        losses.sum().backward()
        weights[rule] = -new.grad[0].float()
    return weights


def load_scorer(model_dir: Path) -> tuple[Any, Any, Callable[[Conversation], tuple[list[int], list[int]]]]:
    """MODEL in eval mode, its tokenizer, and ``encode(conversation) -> (ids, loss mask)`` as verl's tool agent
    loop builds a rollout's tokens."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    builder = create_continuous_token_builder(tokenizer, hf_model_type=model.config.model_type)
    schemas = tool_schemas()
    return model, tokenizer, lambda conversation: encode(builder, tokenizer, schemas, conversation)


def measure(model_dir: Path, seed: int, tasks: int, min_hops: int, max_hops: int) -> dict[str, dict[str, float]]:
    model, tokenizer, encode_conversation = load_scorer(model_dir)
    world = build_world(seed, train=max(tasks, 1), val=1, min_hops=min_hops, max_hops=max_hops)
    log_ratios: dict[str, list[float]] = defaultdict(list)
    weights: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for task in world.train[:tasks]:
        guided_ids, guided_mask = encode_conversation(reference_conversation(task, len(task.chain)))
        unguided_ids, unguided_mask = encode_conversation(reference_conversation(task, 0))
        response = [t for t, keep in zip(unguided_ids, unguided_mask, strict=True) if keep]
        log_ratio = response_logps(model, unguided_ids, unguided_mask) - response_logps(model, guided_ids, guided_mask)
        rule_weights = gradient_weights(log_ratio)
        for index, group in enumerate(token_groups(tokenizer.convert_ids_to_tokens(response))):
            log_ratios[group].append(log_ratio[index].item())
            for rule in RULES:
                weights[group][rule].append(rule_weights[rule][index].item())
    table = {}
    for group in GROUPS:
        if log_ratios[group]:
            values = log_ratios[group]
            table[group] = {
                "tokens": len(values),
                "median log r": statistics.median(values),
                "min log r": min(values),
                **{f"weight {rule}": statistics.fmean(weights[group][rule]) for rule in RULES},
            }
    return table


def markdown(table: dict[str, dict[str, float]]) -> str:
    columns = ["tokens", "median log r", "min log r", *(f"weight {rule}" for rule in RULES)]
    lines = ["| token group | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for group, row in table.items():
        cells = [f"{row['tokens']:d}"] + [
            f"{row[c]:.1f}" if "log r" in c else f"{row[c]:.2g}" for c in columns[1:]
        ]  # fmt: skip
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model of the barrier vocabulary (e.g. the base policy)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (%(default)s)")
    parser.add_argument("--tasks", type=int, default=16, help="training tasks scored (%(default)s)")
    parser.add_argument("--min-hops", type=int, default=MIN_HOPS)
    parser.add_argument("--max-hops", type=int, default=MAX_HOPS)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print(markdown(measure(args.model, args.seed, args.tasks, args.min_hops, args.max_hops)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
