"""Batched generation of :class:`HFGenerator` and the :class:`BatchScheduler` that groups concurrent requests."""

from __future__ import annotations

import asyncio
import collections
import random

import pytest
import torch

from actguide_plugin.cpu.hf_engine import BatchScheduler, HFGenerator, Sampling, sample_tokens


@pytest.fixture()
def engine(tiny_bytes_model) -> HFGenerator:
    """A fresh generator (fresh stats and request numbering) on the tiny byte-vocabulary model."""
    return HFGenerator(str(tiny_bytes_model), seed=5)


def _prompt(length: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(256) for _ in range(length)]


def _assert_scores_match(engine: HFGenerator, prompt: list[int], generation, sampling: Sampling) -> None:
    """The reported log-probs are those of teacher-forced scoring of the unpadded prompt + response."""
    expected = engine.score(prompt, generation.token_ids, sampling.temperature)
    torch.testing.assert_close(torch.tensor(generation.log_probs), torch.tensor(expected), atol=1e-5, rtol=0)


def test_batched_log_probs_equal_teacher_forced_scores_for_mixed_rows(engine):
    requests = [
        (_prompt(3, 0), Sampling(max_tokens=20, temperature=1.0)),
        (_prompt(17, 1), Sampling(max_tokens=9, temperature=0.0)),
        (_prompt(60, 2), Sampling(max_tokens=25, temperature=0.7, top_k=20)),
        (_prompt(150, 3), Sampling(max_tokens=14, temperature=1.3, top_p=0.8)),
        (_prompt(41, 4), Sampling(max_tokens=30, temperature=0.5, top_k=50, top_p=0.9)),
    ]
    outputs = engine.generate_batch(requests)

    assert len(outputs) == len(requests)
    for (prompt, sampling), output in zip(requests, outputs, strict=True):
        assert 1 <= len(output.token_ids) <= sampling.max_tokens
        assert len(output.log_probs) == len(output.token_ids)
        _assert_scores_match(engine, prompt, output, sampling)
    assert engine.stats.batch_sizes == collections.Counter({5: 1})


def test_greedy_rows_in_a_batch_equal_greedy_alone(engine):
    greedy = Sampling(max_tokens=24, temperature=0.0)
    prompts = [_prompt(length, seed) for seed, length in enumerate((5, 90, 33))]
    alone = [engine.generate(prompt, greedy) for prompt in prompts]

    sampled = Sampling(max_tokens=24, temperature=1.0)
    batch = [(prompts[0], greedy), (_prompt(120, 9), sampled), (prompts[1], greedy), (prompts[2], greedy)]
    together = engine.generate_batch(batch)

    for single, batched in zip(alone, [together[0], together[2], together[3]], strict=True):
        assert batched.token_ids == single.token_ids
        torch.testing.assert_close(torch.tensor(batched.log_probs), torch.tensor(single.log_probs), atol=1e-5, rtol=0)


def test_stop_tokens_end_their_row_and_are_part_of_the_output(engine):
    prompt = _prompt(30, 11)
    other = Sampling(max_tokens=20, seed=1)  # a request seed makes the sample repeatable
    free = engine.generate(prompt, other).token_ids
    stop_at = next(i for i in range(2, len(free)) if free[i] not in free[:i])  # first time this token appears
    stop = Sampling(max_tokens=20, seed=1, stop_token_ids=frozenset({free[stop_at]}))

    stopped, unaffected = engine.generate_batch([(prompt, stop), (prompt, other)])

    assert stopped.token_ids == free[: stop_at + 1]
    assert stopped.finish_reason == "stop"
    assert unaffected.token_ids == free  # stop tokens are per request
    assert unaffected.finish_reason == "length"


def test_the_models_eos_stops_a_row(engine):
    prompt = _prompt(30, 12)
    sampling = Sampling(max_tokens=20, seed=2)
    free = engine.generate(prompt, sampling).token_ids
    stop_at = next(i for i in range(2, len(free)) if free[i] not in free[:i])
    engine.eos_token_ids = frozenset({free[stop_at]})  # as if the model's EOS were this token

    output = engine.generate(prompt, sampling)

    assert output.token_ids == free[: stop_at + 1]
    assert output.finish_reason == "stop"


def test_each_row_gets_its_own_max_tokens(engine):
    limits = [1, 5, 13, 2]
    requests = [(_prompt(20 + 7 * i, i), Sampling(max_tokens=m, temperature=0.0)) for i, m in enumerate(limits)]
    outputs = engine.generate_batch(requests)

    assert [len(o.token_ids) for o in outputs] == limits
    assert {o.finish_reason for o in outputs} == {"length"}
    # Finished rows leave the batch: 1 prefill + 12 decoding steps, with 3, 2, 2, 1, ... rows.
    assert engine.stats.forward_calls == 13
    assert engine.stats.decode_rows == 3 + 2 * 3 + 1 * 8


def test_sampling_is_the_same_batched_or_alone_given_the_seed_and_request_order(tiny_bytes_model):
    requests = [(_prompt(12, 0), Sampling(max_tokens=15)), (_prompt(70, 1), Sampling(max_tokens=15, top_p=0.9))]
    batched = HFGenerator(str(tiny_bytes_model), seed=7).generate_batch(requests)
    one_by_one_engine = HFGenerator(str(tiny_bytes_model), seed=7)
    one_by_one = [one_by_one_engine.generate(prompt, sampling) for prompt, sampling in requests]
    other_seed = HFGenerator(str(tiny_bytes_model), seed=8).generate_batch(requests)

    assert [o.token_ids for o in batched] == [o.token_ids for o in one_by_one]
    assert [o.token_ids for o in batched] != [o.token_ids for o in other_seed]


def test_a_request_seed_fixes_its_sample(engine):
    prompt = _prompt(25, 2)
    seeded = Sampling(max_tokens=20, seed=123)
    first, second, unseeded = engine.generate_batch([(prompt, seeded), (prompt, seeded), (prompt, Sampling(20))])

    assert first.token_ids == second.token_ids
    assert first.token_ids != unseeded.token_ids


def test_sample_tokens_follows_top_k_then_top_p_on_the_renormalized_distribution():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])
    rows = 1000
    log_probs = probs.log().expand(rows, 4)
    uniforms = (torch.arange(rows) + 0.5) / rows  # evenly spread: the frequencies are the probabilities
    greedy = torch.zeros(rows, dtype=torch.bool)

    def frequencies(top_k: int, top_p: float) -> list[float]:
        tokens = sample_tokens(log_probs, greedy, torch.full((rows,), top_k), torch.full((rows,), top_p), uniforms)
        return (torch.bincount(tokens, minlength=4).float() / rows).tolist()

    assert frequencies(-1, 1.0) == pytest.approx([0.4, 0.3, 0.2, 0.1], abs=2e-3)
    assert frequencies(2, 1.0) == pytest.approx([4 / 7, 3 / 7, 0, 0], abs=2e-3)
    assert frequencies(-1, 0.5) == pytest.approx([4 / 7, 3 / 7, 0, 0], abs=2e-3)  # 0.4 < 0.5: needs the 2nd
    assert frequencies(-1, 0.4) == pytest.approx([1, 0, 0, 0], abs=2e-3)  # 0.4 reaches 0.4
    # top-p applies to the top-k renormalized mass: {0.4, 0.3, 0.2} → {4/9, 3/9, 2/9}; 4/9 + 3/9 ≥ 0.75.
    assert frequencies(3, 0.75) == pytest.approx([4 / 7, 3 / 7, 0, 0], abs=2e-3)
    greedy_tokens = sample_tokens(log_probs, ~greedy, torch.full((rows,), -1), torch.ones(rows), uniforms)
    assert set(greedy_tokens.tolist()) == {0}


def test_sampling_rejects_bad_params():
    with pytest.raises(ValueError, match="top_p"):
        Sampling(max_tokens=4, top_p=0.0)
    with pytest.raises(ValueError, match="max_tokens"):
        Sampling(max_tokens=0)
    params = {"temperature": 0, "top_k": 0, "stop_token_ids": [5, 7], "max_tokens": 9, "logprobs": True}
    assert Sampling.from_params(params, 100) == Sampling(9, 0.0, -1, 1.0, frozenset({5, 7}))


async def test_scheduler_serves_concurrent_requests_in_one_batch(engine):
    scheduler = BatchScheduler(engine)
    requests = [(_prompt(10 + 13 * i, i), Sampling(max_tokens=6 + i, temperature=0.5 * (i % 3))) for i in range(8)]

    outputs = await asyncio.gather(*(scheduler.generate(prompt, sampling) for prompt, sampling in requests))

    assert engine.stats.batch_sizes == collections.Counter({8: 1})
    assert engine.stats.forward_calls == 1 + max(len(o.token_ids) for o in outputs) - 1
    for (prompt, sampling), output in zip(requests, outputs, strict=True):
        assert len(output.token_ids) <= sampling.max_tokens
        _assert_scores_match(engine, prompt, output, sampling)


async def test_scheduler_waits_for_a_burst_that_trickles_in(engine):
    scheduler = BatchScheduler(engine, gather_s=0.05, max_gather_s=1.0)
    calls = []
    for i in range(4):  # arriving 5 ms apart, as agent loops reach the server one by one
        calls.append(asyncio.ensure_future(scheduler.generate(_prompt(10, i), Sampling(max_tokens=2))))
        await asyncio.sleep(0.005)

    await asyncio.gather(*calls)

    assert engine.stats.batch_sizes == collections.Counter({4: 1})


async def test_scheduler_queues_requests_arriving_during_a_batch_for_the_next_one(engine):
    scheduler = BatchScheduler(engine)
    first = asyncio.create_task(scheduler.generate(_prompt(40, 0), Sampling(max_tokens=60, temperature=0.0)))
    while engine.stats.forward_calls == 0:  # the first batch is running in its thread
        await asyncio.sleep(0.001)
    later = [scheduler.generate(_prompt(20, i), Sampling(max_tokens=4)) for i in range(5)]

    await asyncio.gather(first, *later)

    assert engine.stats.batch_sizes == collections.Counter({1: 1, 5: 1})


async def test_scheduler_splits_the_queue_by_the_token_budget_in_arrival_order(engine):
    scheduler = BatchScheduler(engine, max_batch_tokens=100)
    prompts = [_prompt(30, i) for i in range(7)]

    outputs = await asyncio.gather(*(scheduler.generate(p, Sampling(max_tokens=3, temperature=0)) for p in prompts))

    assert engine.stats.batch_sizes == collections.Counter({3: 2, 1: 1})  # 3 × 30 padded tokens fit in 100
    alone = [engine.generate(p, Sampling(max_tokens=3, temperature=0)).token_ids for p in prompts]
    assert [o.token_ids for o in outputs] == alone


async def test_scheduler_gives_every_caller_of_a_failed_batch_the_error(engine, monkeypatch):
    scheduler = BatchScheduler(engine)

    def broken(requests):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(engine, "generate_batch", broken)
    results = await asyncio.gather(
        *(scheduler.generate(_prompt(5, i), Sampling(max_tokens=2)) for i in range(3)), return_exceptions=True
    )
    assert [str(r) for r in results] == ["model exploded"] * 3
    monkeypatch.undo()
    assert len((await scheduler.generate(_prompt(5, 0), Sampling(max_tokens=2))).token_ids) == 2
