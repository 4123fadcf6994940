"""Throughput of the ``hf`` CPU rollout backend: one request at a time (old) against batched decoding (new).

Model: a random tiny Qwen3 (``build_tiny_model``: hidden 128, 2 layers, the byte-level vocabulary of 272
tokens), fp32. Prompts: random byte ids, 150–300 tokens; every request asks for 40 new tokens at temperature 1
(a row may stop earlier at EOS: tokens/s counts the tokens actually generated).

- **old (sequential)**: the generation loop of the server before batching (a copy of it is below, as it was at
  commit 9a0e1b9): every request runs alone under the engine lock, one forward per token, so ``c`` concurrent
  requests are served one after another. It runs on the same model object (an unpadded single sequence has no
  attention mask, so our CPU attention is exactly transformers' ``sdpa`` there).
- **new (batched)**: ``c`` concurrent ``await BatchScheduler.generate(...)`` calls, as verl's agent loops send them
  to the server: one batched prefill, one forward per decoding step for all rows still active.

A second table measures the multi-turn shape that the simple scheduler (a batch runs to completion, new requests
wait for the next one) handles worst: closed-loop clients whose turns end at different lengths (``max_tokens``
uniform in 5–40, like turns ending at a tool call), each sending its next turn (prompt + response + 20 tool
tokens) as soon as its previous one returns. "rows per step" is the mean number of rows per decoding forward:
joining rows into a running batch (continuous batching) could raise it towards the number of clients. "µs per
row-step" is the measured cost of one row in one decoding forward at that batch size and at a full batch;
"joining bound" is the speed-up if every decoded token had cost the full-batch price (prefill unchanged): an upper
bound on what joining could gain.

Each cell is the fastest of ``--repeats`` rounds, old and new alternating (the machine is shared). "CPU-time
speed-up" compares the CPU seconds of this process instead of wall time: other jobs on the machine hardly move it,
but it misses time spent waiting (the scheduler's gather window). Usage:
``python benchmarks/hf_generation.py [--threads 1] [--concurrency 1,8,32,64] [--repeats 3]``. Runs in < 1 minute.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from actguide_plugin.cpu.hf_engine import BatchScheduler, HFGenerator, Sampling, _scaled_log_probs
from actguide_plugin.cpu.tiny_model import build_tiny_model

NEW_TOKENS = 40


def _old_pick(log_probs: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    """The old per-token sampler (commit 9a0e1b9), for the baseline."""
    if sampling.temperature <= 0:
        return int(torch.argmax(log_probs))
    filtered = log_probs.clone()
    if sampling.top_k > 0:
        kth = torch.topk(filtered, min(sampling.top_k, filtered.numel())).values[-1]
        filtered[filtered < kth] = -float("inf")
    if sampling.top_p < 1.0:
        sorted_lp, order = torch.sort(filtered, descending=True)
        cumulative = torch.cumsum(sorted_lp.exp(), dim=-1)
        drop = cumulative - sorted_lp.exp() > sampling.top_p
        filtered[order[drop]] = -float("inf")
    return int(torch.multinomial(filtered.exp(), 1, generator=generator))


@torch.no_grad()
def old_generate(
    engine: HFGenerator, lock: threading.Lock, generator: torch.Generator, prompt_ids: list[int], sampling: Sampling
) -> list[int]:
    """The old ``HFGenerator.generate`` (commit 9a0e1b9): one request alone, one forward per token."""
    with lock:
        token_ids: list[int] = []
        inputs = torch.tensor([prompt_ids])
        past = None
        for _ in range(sampling.max_tokens):
            out = engine.model(input_ids=inputs, past_key_values=past, use_cache=True)
            past = out.past_key_values
            row = _scaled_log_probs(out.logits[0, -1], sampling.temperature)
            token = _old_pick(row, sampling, generator)
            token_ids.append(token)
            if token in engine.eos_token_ids:
                break
            inputs = torch.tensor([[token]])
        return token_ids


def _prompts(count: int, rng: random.Random) -> list[list[int]]:
    return [[rng.randrange(256) for _ in range(rng.randint(150, 300))] for _ in range(count)]


async def _old_round(engine: HFGenerator, prompts: list[list[int]]) -> int:
    lock, generator = threading.Lock(), torch.Generator().manual_seed(0)
    sampling = Sampling(max_tokens=NEW_TOKENS)
    outputs = await asyncio.gather(
        *(asyncio.to_thread(old_generate, engine, lock, generator, prompt, sampling) for prompt in prompts)
    )
    return sum(len(tokens) for tokens in outputs)


async def _new_round(engine: HFGenerator, prompts: list[list[int]]) -> int:
    scheduler = BatchScheduler(engine)
    sampling = Sampling(max_tokens=NEW_TOKENS)
    outputs = await asyncio.gather(*(scheduler.generate(prompt, sampling) for prompt in prompts))
    return sum(len(output.token_ids) for output in outputs)


def _timed(round_fn, engine: HFGenerator, prompts: list[list[int]]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, tokens generated) of one round."""
    start, cpu_start = time.perf_counter(), time.process_time()
    tokens = asyncio.run(round_fn(engine, prompts))
    return time.perf_counter() - start, time.process_time() - cpu_start, tokens


async def _closed_loop(engine: HFGenerator, clients: int, turns: int, rng: random.Random) -> int:
    scheduler = BatchScheduler(engine)

    async def client(prompt: list[int], lengths: list[int]) -> int:
        made = 0
        for max_tokens in lengths:
            output = await scheduler.generate(prompt, Sampling(max_tokens=max_tokens))
            made += len(output.token_ids)
            prompt = prompt + output.token_ids + [rng.randrange(256) for _ in range(20)]
        return made

    plans = [[rng.randint(5, NEW_TOKENS) for _ in range(turns)] for _ in range(clients)]
    prompts = _prompts(clients, rng)
    made = await asyncio.gather(*(client(prompt, plan) for prompt, plan in zip(prompts, plans, strict=True)))
    return sum(made)


@torch.no_grad()
def _decode_step_ms(engine: HFGenerator, batch: int, context: int, repeats: int = 5) -> float:
    """Median wall time of one decoding forward over ``batch`` rows with ``context`` cached tokens."""
    from transformers import DynamicCache

    ids = torch.randint(0, 256, (batch, context))
    cache = DynamicCache(config=engine.model.config)
    engine.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    step = torch.randint(0, 256, (batch, 1))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.model(input_ids=step, past_key_values=cache, use_cache=True)
        times.append(time.perf_counter() - start)
        cache.crop(context)
    return sorted(times)[len(times) // 2] * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the server gets 1 CPU)")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--clients", type=int, default=32, help="closed-loop multi-turn clients")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="rounds per cell; the fastest is reported")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "tiny", hidden_size=128, num_layers=2, vocab="bytes", seed=0)
        engine = HFGenerator(str(path), seed=0)
    rng = random.Random(0)
    _timed(_new_round, engine, _prompts(2, rng))  # warm-up

    print(f"torch threads: {args.threads}, {NEW_TOKENS} new tokens, prompts 150-300 tokens", file=sys.stderr)
    print("| concurrency | old req/s | new req/s | old tokens/s | new tokens/s | speed-up | CPU-time speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for concurrency in levels:
        prompts = _prompts(concurrency, rng)
        # Old and new alternate, so that both see the same background load; each keeps its fastest round.
        rounds = [(_timed(_old_round, engine, p), _timed(_new_round, engine, p)) for p in [prompts] * args.repeats]
        (old_s, old_cpu, old_tokens), (new_s, new_cpu, new_tokens) = (min(c) for c in zip(*rounds, strict=True))
        old_cpu, new_cpu = (min(round_[side][1] for round_ in rounds) for side in (0, 1))
        print(
            f"| {concurrency} | {concurrency / old_s:.1f} | {concurrency / new_s:.1f} | {old_tokens / old_s:.0f}"
            f" | {new_tokens / new_s:.0f} | {old_s / new_s:.1f}× | {old_cpu / new_cpu:.1f}× |"
        )

    print()
    print("| clients × turns | tokens/s | prefill / decode s | rows per step | µs per row-step | joining bound |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    before = dataclasses.replace(engine.stats)
    start = time.perf_counter()
    tokens = asyncio.run(_closed_loop(engine, args.clients, args.turns, rng))
    wall = time.perf_counter() - start
    stats = engine.stats
    steps = stats.decode_steps - before.decode_steps
    rows = (stats.decode_rows - before.decode_rows) / max(steps, 1)
    prefill_s = stats.prefill_seconds - before.prefill_seconds
    decode_s = stats.decode_seconds - before.decode_seconds
    # Cost of one row in one decoding forward at the batch size we had and at a full batch (all clients).
    per_row_now = _decode_step_ms(engine, max(1, round(rows)), 300) / max(1, round(rows))
    per_row_full = _decode_step_ms(engine, args.clients, 300) / args.clients
    # Best case of joining: the same tokens decoded at the full-batch cost per row; prefill unchanged.
    bound = wall / (wall - decode_s + decode_s * per_row_full / per_row_now)
    print(
        f"| {args.clients} × {args.turns} | {tokens / wall:.0f} | {prefill_s:.2f} / {decode_s:.2f}"
        f" | {rows:.1f} of {args.clients} | {per_row_now * 1e3:.0f} → {per_row_full * 1e3:.0f} at {args.clients}"
        f" | ≤ {bound:.2f}× |"
    )


if __name__ == "__main__":
    main()
