"""Token-in/token-out generation with a plain HF transformers causal LM (no verl imports).

:class:`HFGenerator` is the compute behind our CPU rollout server (:mod:`.hf_rollout`). verl's agent loops send
many requests at once (all n rollouts of every prompt of a step; in multi-turn runs each assistant turn is one
request whose prompt is the whole conversation so far), and one forward pass over a batch of rows costs far less
than one pass per row. So requests are served in batches:

- :meth:`HFGenerator.generate_batch` runs one batched prefill over the left-padded prompts (attention mask and
  position ids make every row see exactly its own unpadded sequence) and then one forward per decoding step for
  all rows still active, with a KV cache. Rows finish independently (EOS, one of the request's
  ``stop_token_ids``, or its ``max_tokens``) and are dropped from the batch and the cache when they do.
- :class:`BatchScheduler` groups concurrent ``async`` calls: whatever is queued when a batch starts (or arrives
  while it runs) forms the next batch, which runs to completion. Rows never join a running batch: on a multi-turn
  load the benchmark (``benchmarks/hf_generation.py``, ``docs/benchmarks.md``) bounds what joining could gain at
  about 1.1×, because re-reading each conversation (prefill) costs more than decoding it.

Every row keeps its own sampling (:class:`Sampling`: temperature, 0 = greedy; top-k; top-p; max_tokens; stop
tokens) and reports, for every generated token, the log-probability under the model *as it scored the token*
(``log_softmax(logits / temperature)``, vLLM's ``processed_logprobs``), so the numbers agree with a manual
forward pass over ``prompt + response`` (:meth:`HFGenerator.score`, which teacher-forces given tokens and which
the scripted policy uses to hand real log-probs for scripted text to the trainer).

**Randomness.** Each request samples from its own ``torch.Generator``, so what a request draws does not depend
on which other requests share its batch or when they finish. A request whose sampling params carry a ``seed``
(vLLM's per-request seed) uses that seed. Otherwise the i-th request the generator serves (counting from 0 since
construction, batch by batch, in the order of the rows of each batch) uses a seed hashed from
``(server_seed, i)``. A run is therefore reproducible given the server seed and the order in which
requests reach the engine; with concurrent clients that order is the order of arrival. Each decoding step draws
one uniform number per sampled row (none for greedy rows) and picks the token by inverse CDF over the filtered
distribution.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from actguide_plugin.logs import get_logger

logger = get_logger(__name__)

# Defaults for one batch of the scheduler. The prefill of a batch holds (rows × longest prompt) tokens of
# activations and a causal mask per row, so the token budget bounds its memory; the row cap bounds the per-step
# bookkeeping. A request larger than the budget on its own still runs, alone.
DEFAULT_MAX_BATCH_SIZE = 256
DEFAULT_MAX_BATCH_TOKENS = 65536
# An idle scheduler that gets a request waits until no new one has arrived for GATHER_S (at most MAX_GATHER_S in
# all) before starting a batch: verl's agent loops reach the server one by one (each renders and tokenizes its
# prompt first, then goes through the load balancer, over Ray), spread over tens of milliseconds, and without the
# wait the first one would run alone while the rest wait for it. In the CPU demo (8 rollouts per step) a fixed 2 ms
# wait split the first turn into batches of 2 and 6; with these values its 8 requests (arriving over 15 ms) share one.
DEFAULT_GATHER_S = 0.01
DEFAULT_MAX_GATHER_S = 0.1


@dataclass(frozen=True)
class Sampling:
    """The subset of vLLM-style sampling params the HF generator honours, for one request."""

    max_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_k: int = -1  # -1 / 0 disables
    top_p: float = 1.0
    stop_token_ids: frozenset[int] = frozenset()  # besides the model's EOS; the stop token is part of the output
    seed: int | None = None  # the request's own seed; None draws from the server seed (module doc)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @classmethod
    def from_params(cls, params: dict[str, Any], default_max_tokens: int) -> Sampling:
        """Read an agent-loop ``sampling_params`` dict; unknown keys (logprobs, repetition_penalty) are ignored.

        verl's ``ToolAgentLoop`` adds its tool parser's ``stop_token_ids`` (e.g. Gemma's ``<tool_call|>``) to the
        params: generation must halt there, or the loop never sees the tool call.
        """
        max_tokens = params.get("max_tokens", params.get("max_new_tokens", default_max_tokens))
        seed = params.get("seed")
        return cls(
            max_tokens=int(max_tokens),
            temperature=float(params.get("temperature", 1.0)),
            top_k=int(params.get("top_k", -1) or -1),
            top_p=float(params.get("top_p", 1.0)),
            stop_token_ids=frozenset(int(t) for t in params.get("stop_token_ids") or ()),
            seed=None if seed is None else int(seed),
        )


class Generation(NamedTuple):
    """One request's output: the sampled ids (stop token included), their log-probs, ``stop`` or ``length``."""

    token_ids: list[int]
    log_probs: list[float]
    finish_reason: str


@dataclass
class EngineStats:
    """Counters of the work the generator did: what tests and the benchmark observe about batching."""

    forward_calls: int = 0  # model forwards of generate_batch (prefill + decoding steps)
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)  # rows per batch → count
    decode_steps: int = 0
    decode_rows: int = 0  # Σ active rows over decoding steps (÷ decode_steps = mean rows per step)
    prefill_seconds: float = 0.0  # wall time in prefill forwards
    decode_seconds: float = 0.0  # wall time in decoding steps (forward, sampling, bookkeeping)


BATCHED_ATTENTION = "actguide_sdpa_gqa"  # our name in transformers' attention registries


def _sdpa_gqa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' ``sdpa`` attention, but grouped KV heads go to torch as they are when a mask is given.

    A padded batch needs an attention mask, and with one transformers' ``sdpa`` copies every KV head
    ``num_key_value_groups`` times (``repeat_kv``: the whole cache, every layer, every decoding step) because
    CUDA's fused kernels cannot take a mask together with ``enable_gqa``. torch's CPU kernel can: measured on the
    benchmark's model at 64 rows × 340 cached tokens, one attention call took 7.2 ms with the copy and 1.0 ms
    without, the same numbers bit for bit. Without a mask (a single sequence, :meth:`HFGenerator.score`) this is
    transformers' own function.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is None or not hasattr(module, "num_key_value_groups"):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    output = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
    )  # [batch, heads, query_len, head_dim]
    return output.transpose(1, 2).contiguous(), None


def _use_batched_attention(model: torch.nn.Module) -> None:
    """Switch a CPU model to :func:`_sdpa_gqa_attention` (registered once per process, under its own name)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(BATCHED_ATTENTION, _sdpa_gqa_attention)
    AttentionMaskInterface.register(BATCHED_ATTENTION, sdpa_mask)  # the same boolean masks as ``sdpa``
    model.set_attn_implementation(BATCHED_ATTENTION)


def _scaled_log_probs(logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits / T)`` in fp32; greedy (T = 0) is scored at T = 1.

    ``temperature`` is a float, or a ``[batch]`` tensor with one temperature per row of ``logits [batch, vocab]``.
    """
    if isinstance(temperature, torch.Tensor):
        scale = torch.where(temperature > 0, temperature, torch.ones_like(temperature)).to(logits.device)
        return torch.log_softmax(logits.float() / scale.float().unsqueeze(-1), dim=-1)
    scale = temperature if temperature > 0 else 1.0
    return torch.log_softmax(logits.float() / scale, dim=-1)


def _inverse_cdf(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Index drawn from each row of non-negative ``weights [rows, n]`` by ``uniforms [rows]`` in (0, 1].

    The target ``u · Σw`` is > 0, so the first index whose cumulative weight reaches it has a positive weight.
    """
    cdf = weights.cumsum(dim=-1)  # [rows, n]
    target = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)  # [rows, 1]
    return torch.searchsorted(cdf, target).squeeze(-1).clamp(max=weights.shape[-1] - 1)


def sample_tokens(
    log_probs: torch.Tensor,
    greedy: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    uniforms: torch.Tensor,
) -> torch.Tensor:
    """One token per row of ``log_probs [rows, vocab]`` (already temperature-scaled), as vLLM samples.

    Greedy rows take the argmax. The others sample from the distribution restricted to the ``top_k`` most likely
    tokens (``top_k <= 0`` disables), renormalized, then to the smallest set of most likely tokens whose mass
    reaches ``top_p``, using their entry of ``uniforms [rows]`` (in (0, 1]; ignored for greedy rows).
    """
    vocab = log_probs.shape[-1]
    tokens = torch.argmax(log_probs, dim=-1)  # [rows]
    top_k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    filtered = ~greedy & ((top_k < vocab) | (top_p < 1.0))
    plain = ~greedy & ~filtered
    if plain.any():
        tokens[plain] = _inverse_cdf(log_probs[plain].exp(), uniforms[plain])
    if filtered.any():
        sorted_lp, order = torch.sort(log_probs[filtered], dim=-1, descending=True)  # [f, vocab]
        ranks = torch.arange(vocab, device=log_probs.device)
        probs = sorted_lp.exp() * (ranks < top_k[filtered].unsqueeze(-1))
        probs = probs / probs.sum(dim=-1, keepdim=True)
        mass_before = probs.cumsum(dim=-1) - probs
        probs = probs * (mass_before < top_p[filtered].to(probs.dtype).unsqueeze(-1))  # the first always stays
        picked = _inverse_cdf(probs, uniforms[filtered])
        tokens[filtered] = order.gather(-1, picked.unsqueeze(-1)).squeeze(-1)
    return tokens


def _request_seed(server_seed: int, index: int) -> int:
    """A seed for the ``index``-th request of a server, well mixed: torch's CPU generator keeps 32 bits of it."""
    digest = hashlib.blake2b(f"{server_seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class HFGenerator:
    """One HF causal LM, used by one rollout server; batches, scoring and weight loads are serialized by a lock."""

    def __init__(
        self, model_path: str, *, seed: int = 0, dtype: torch.dtype = torch.float32, device: str = "cpu"
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation="sdpa")
        self.model.to(self.device).eval()
        if self.device.type == "cpu":
            _use_batched_attention(self.model)
        self.eos_token_ids = self._eos_ids()
        self.pad_token_id = self._pad_id()
        self.seed = seed
        self.stats = EngineStats()
        self._requests_served = 0  # numbers the per-request generators (module doc)
        self._lock = threading.Lock()

    def _eos_ids(self) -> frozenset[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = self.model.generation_config.eos_token_id
        ids.update(configured if isinstance(configured, list) else [configured])
        return frozenset(i for i in ids if i is not None)

    def _pad_id(self) -> int:
        # Any id works (padded positions are masked out); prefer the tokenizer's own pad token.
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def _request_generator(self, sampling: Sampling) -> torch.Generator:
        """The request's own random stream: its ``seed``, else the server seed and the request's number."""
        index = self._requests_served
        self._requests_served += 1
        seed = sampling.seed if sampling.seed is not None else _request_seed(self.seed, index)
        return torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)

    def generate(self, prompt_ids: list[int], sampling: Sampling) -> Generation:
        """One request alone: a batch of one (see :meth:`generate_batch`)."""
        return self.generate_batch([(prompt_ids, sampling)])[0]

    @torch.no_grad()
    def generate_batch(self, requests: Sequence[tuple[list[int], Sampling]]) -> list[Generation]:
        """Sample every ``(prompt_ids, sampling)`` request in one batch; outputs in request order.

        Each row stops at the model's EOS or one of its ``stop_token_ids`` (included in the output, as vLLM does;
        ``finish_reason`` ``stop``) or after ``max_tokens`` tokens (``length``).
        """
        if not requests:
            return []
        for prompt_ids, _ in requests:
            if not prompt_ids:
                raise ValueError("prompt_ids is empty")
        with self._lock:
            generators = [self._request_generator(sampling) for _, sampling in requests]
            return self._generate_locked(requests, generators)

    def _generate_locked(
        self, requests: Sequence[tuple[list[int], Sampling]], generators: list[torch.Generator]
    ) -> list[Generation]:
        device = self.device
        batch = len(requests)
        samplings = [sampling for _, sampling in requests]
        lengths = [len(prompt_ids) for prompt_ids, _ in requests]
        width = max(lengths)
        input_ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)  # [batch, width], left-padded
        attention_mask = torch.zeros((batch, width), dtype=torch.long)  # [batch, width]
        for row, (prompt_ids, _) in enumerate(requests):
            input_ids[row, width - lengths[row] :] = torch.tensor(prompt_ids, dtype=torch.long)
            attention_mask[row, width - lengths[row] :] = 1
        # Each row's positions count only its own tokens, so RoPE sees the unpadded sequence.
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [batch, width]
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        position_ids = position_ids.to(device)

        temperature = torch.tensor([s.temperature for s in samplings])  # [batch]
        greedy = temperature <= 0  # [batch]
        top_k = torch.tensor([s.top_k for s in samplings], dtype=torch.long)  # [batch]
        top_p = torch.tensor([s.top_p for s in samplings])  # [batch]
        stops = [s.stop_token_ids | self.eos_token_ids for s in samplings]
        next_position = torch.tensor(lengths, dtype=torch.long, device=device)  # [batch]
        active = list(range(batch))  # request index of each row still in the batch
        outputs: list[tuple[list[int], list[float]]] = [([], []) for _ in range(batch)]
        finish = ["length"] * batch

        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        started = time.perf_counter()
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats.forward_calls += 1
        self.stats.batch_sizes[batch] += 1
        decode_started = time.perf_counter()
        self.stats.prefill_seconds += decode_started - started
        while True:
            index = torch.tensor(active, dtype=torch.long)  # rows of the per-request tensors still active
            log_probs = _scaled_log_probs(out.logits[:, -1], temperature[index]).cpu()  # [active, vocab]
            row_greedy = greedy[index]
            uniforms = torch.ones(len(active))  # [active]
            for row, request in enumerate(active):
                if not row_greedy[row]:
                    uniforms[row] = 1.0 - torch.rand((), generator=generators[request])  # in (0, 1]
            tokens = sample_tokens(log_probs, row_greedy, top_k[index], top_p[index], uniforms)  # [active]
            token_log_probs = log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # [active]
            keep: list[int] = []
            picked = zip(active, tokens.tolist(), token_log_probs.tolist(), strict=True)
            for row, (request, token, log_prob) in enumerate(picked):
                token_ids, row_log_probs = outputs[request]
                token_ids.append(token)
                row_log_probs.append(log_prob)
                if token in stops[request]:
                    finish[request] = "stop"
                elif len(token_ids) < samplings[request].max_tokens:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):  # drop finished rows from the batch and the KV cache
                kept = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(kept)
                attention_mask = attention_mask[kept]
                next_position = next_position[kept]
                tokens = tokens[keep]
                active = [active[row] for row in keep]
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=-1)
            out = self.model(
                input_ids=tokens.to(device).unsqueeze(-1),  # [active, 1]
                attention_mask=attention_mask,
                position_ids=next_position.unsqueeze(-1),
                past_key_values=cache,
                use_cache=True,
            )
            next_position = next_position + 1
            self.stats.forward_calls += 1
            self.stats.decode_steps += 1
            self.stats.decode_rows += len(active)
        self.stats.decode_seconds += time.perf_counter() - decode_started
        return [Generation(ids, lps, reason) for (ids, lps), reason in zip(outputs, finish, strict=True)]

    @torch.no_grad()
    def score(self, prompt_ids: list[int], response_ids: list[int], temperature: float = 1.0) -> list[float]:
        """Log-probs of ``response_ids`` given ``prompt_ids`` (teacher forcing, one forward pass)."""
        if not prompt_ids or not response_ids:
            raise ValueError("score needs non-empty prompt_ids and response_ids")
        with self._lock:
            ids = torch.tensor([prompt_ids + response_ids], device=self.device)
            logits = self.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]  # [response_len, vocab]
            rows = _scaled_log_probs(logits, temperature)
            targets = torch.tensor(response_ids, device=self.device).unsqueeze(-1)
            return rows.gather(-1, targets).squeeze(-1).tolist()

    @torch.no_grad()
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Copy HF-named tensors into the model in place; unknown names are an error. Returns the count.

        Holds the lock for the whole update, so a batch runs entirely on the old or entirely on the new weights.
        """
        params = self.model.state_dict()
        count = 0
        with self._lock:
            for name, tensor in named_tensors:
                if name not in params:
                    raise KeyError(f"weight update names unknown parameter {name!r}")
                target = params[name]
                if target.shape != tensor.shape:
                    raise ValueError(f"weight {name!r}: shape {tuple(tensor.shape)} != model {tuple(target.shape)}")
                target.copy_(tensor.to(dtype=target.dtype))
                count += 1
        return count


@dataclass
class _Queued:
    prompt_ids: list[int]
    sampling: Sampling
    future: asyncio.Future[Generation]
    arrived: float  # event-loop time


class BatchScheduler:
    """Serves concurrent ``await generate(...)`` calls of one event loop in batches of :class:`HFGenerator`.

    Scheme: requests queue; a drain task takes the queue's head (up to ``max_batch_size`` rows and
    ``max_batch_tokens`` padded prompt tokens, in arrival order), runs it to completion in a worker thread (the
    event loop stays free to accept more requests), answers its callers, and repeats until the queue is empty.
    An idle scheduler waits after the first request until none has arrived for ``gather_s`` (at most
    ``max_gather_s``), so that a burst shares one batch; a queue left by a running batch starts at once. A caller that
    is cancelled before its batch starts is skipped; once started, a row runs to completion (no preemption).
    """

    def __init__(
        self,
        engine: HFGenerator,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        gather_s: float = DEFAULT_GATHER_S,
        max_gather_s: float = DEFAULT_MAX_GATHER_S,
    ) -> None:
        if max_batch_size < 1 or max_batch_tokens < 1 or not 0 <= gather_s <= max_gather_s:
            raise ValueError(
                f"bad batch limits: max_batch_size={max_batch_size}, max_batch_tokens={max_batch_tokens},"
                f" gather_s={gather_s}, max_gather_s={max_gather_s}"
            )
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.gather_s = gather_s
        self.max_gather_s = max_gather_s
        self._queue: collections.deque[_Queued] = collections.deque()
        self._drainer: asyncio.Task[None] | None = None

    async def generate(self, prompt_ids: list[int], sampling: Sampling) -> Generation:
        """Queue one request and wait for its batch to finish."""
        if not prompt_ids:
            raise ValueError("prompt_ids is empty")
        loop = asyncio.get_running_loop()
        queued = _Queued(list(prompt_ids), sampling, loop.create_future(), loop.time())
        self._queue.append(queued)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await queued.future

    def _take_batch(self) -> list[_Queued]:
        """The queue's head that fits the limits (at least one request), skipping cancelled callers."""
        batch: list[_Queued] = []
        width = 0
        while self._queue and len(batch) < self.max_batch_size:
            head = self._queue[0]
            if head.future.done():
                self._queue.popleft()
                continue
            new_width = max(width, len(head.prompt_ids))
            if batch and new_width * (len(batch) + 1) > self.max_batch_tokens:
                break
            batch.append(self._queue.popleft())
            width = new_width
        return batch

    async def _gather(self) -> None:
        """Wait while requests keep arriving: until a quiet ``gather_s`` or ``max_gather_s`` since the first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_gather_s
        seen = -1
        while self.gather_s and len(self._queue) != seen and loop.time() < deadline:
            seen = len(self._queue)
            await asyncio.sleep(min(self.gather_s, deadline - loop.time()))

    async def _drain(self) -> None:
        batch: list[_Queued] = []
        try:
            await self._gather()
            while self._queue:
                batch = self._take_batch()
                requests = [(queued.prompt_ids, queued.sampling) for queued in batch]
                now = asyncio.get_running_loop().time()
                logger.debug(
                    "generating a batch of %d requests (arrived over %.0f ms, first waited %.0f ms), %d more queued",
                    len(batch),
                    (batch[-1].arrived - batch[0].arrived) * 1e3,
                    (now - batch[0].arrived) * 1e3,
                    len(self._queue),
                )
                try:
                    results = await asyncio.to_thread(self.engine.generate_batch, requests)
                except Exception as error:  # every caller of the batch gets the error; the queue goes on
                    logger.exception("generation batch of %d requests failed", len(batch))
                    _answer(batch, error=error)
                    continue
                _answer(batch, results=results)
        except asyncio.CancelledError:  # the loop is shutting down: nobody may wait forever
            _answer([*batch, *self._queue], error=RuntimeError("the generation scheduler was cancelled"))
            self._queue.clear()
            raise


def _answer(batch: list[_Queued], results: list[Generation] | None = None, error: Exception | None = None) -> None:
    """Resolve the callers of ``batch`` that still wait, with their result or with ``error``."""
    for position, queued in enumerate(batch):
        if queued.future.done():  # cancelled by its caller, or answered already
            continue
        if results is not None:
            queued.future.set_result(results[position])
        else:
            queued.future.set_exception(error)
