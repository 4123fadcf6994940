"""Token-in/token-out generation with a plain HF transformers causal LM (no verl imports).

:class:`HFGenerator` is the compute behind our CPU rollout server (:mod:`.hf_rollout`): it samples with a KV
cache and reports, for every generated token, the log-probability under the model *as it scored the token*
(``log_softmax(logits / temperature)``, vLLM's ``processed_logprobs``), so the numbers agree with a manual
forward pass over ``prompt + response``. :meth:`HFGenerator.score` teacher-forces given tokens and returns
their log-probs, which the scripted policy uses to hand real log-probs for scripted text to the trainer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from actguide_plugin.logs import get_logger

logger = get_logger(__name__)


@dataclass(frozen=True)
class Sampling:
    """The subset of vLLM-style sampling params the HF generator honours."""

    max_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_k: int = -1  # -1 / 0 disables
    top_p: float = 1.0

    @classmethod
    def from_params(cls, params: dict, default_max_tokens: int) -> Sampling:
        """Read an agent-loop ``sampling_params`` dict; unknown keys (logprobs, repetition_penalty) are ignored."""
        max_tokens = params.get("max_tokens", params.get("max_new_tokens", default_max_tokens))
        return cls(
            max_tokens=int(max_tokens),
            temperature=float(params.get("temperature", 1.0)),
            top_k=int(params.get("top_k", -1) or -1),
            top_p=float(params.get("top_p", 1.0)),
        )


def _scaled_log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log_softmax(logits / T)`` in fp32; greedy (T = 0) is scored at T = 1."""
    scale = temperature if temperature > 0 else 1.0
    return torch.log_softmax(logits.float() / scale, dim=-1)


def _pick(log_probs: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    """Choose one token from a ``[vocab]`` log-prob row under greedy / top-k / top-p sampling."""
    if sampling.temperature <= 0:
        return int(torch.argmax(log_probs))
    filtered = log_probs.clone()
    if sampling.top_k > 0:
        kth = torch.topk(filtered, min(sampling.top_k, filtered.numel())).values[-1]
        filtered[filtered < kth] = -float("inf")
    if sampling.top_p < 1.0:
        sorted_lp, order = torch.sort(filtered, descending=True)
        cumulative = torch.cumsum(sorted_lp.exp(), dim=-1)
        drop = cumulative - sorted_lp.exp() > sampling.top_p  # keep the smallest prefix reaching top_p
        filtered[order[drop]] = -float("inf")
    return int(torch.multinomial(filtered.exp(), 1, generator=generator))


class HFGenerator:
    """One HF causal LM on CPU, used by one rollout server; calls are serialized by a lock."""

    def __init__(
        self, model_path: str, *, seed: int = 0, dtype: torch.dtype = torch.float32, device: str = "cpu"
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation="sdpa")
        self.model.to(self.device).eval()
        self.eos_token_ids = self._eos_ids()
        self._generator = torch.Generator().manual_seed(seed)
        self._lock = threading.Lock()

    def _eos_ids(self) -> frozenset[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = self.model.generation_config.eos_token_id
        ids.update(configured if isinstance(configured, list) else [configured])
        return frozenset(i for i in ids if i is not None)

    @torch.no_grad()
    def generate(self, prompt_ids: list[int], sampling: Sampling) -> tuple[list[int], list[float], str]:
        """Sample up to ``sampling.max_tokens`` tokens; return ``(token_ids, log_probs, finish_reason)``.

        The stop token (EOS) is included in the output, as vLLM does; ``finish_reason`` is ``stop`` or ``length``.
        """
        if not prompt_ids:
            raise ValueError("prompt_ids is empty")
        with self._lock:
            token_ids: list[int] = []
            log_probs: list[float] = []
            inputs = torch.tensor([prompt_ids], device=self.device)
            past = None
            for _ in range(sampling.max_tokens):
                out = self.model(input_ids=inputs, past_key_values=past, use_cache=True)
                past = out.past_key_values
                row = _scaled_log_probs(out.logits[0, -1], sampling.temperature).cpu()  # [vocab]
                token = _pick(row, sampling, self._generator)
                token_ids.append(token)
                log_probs.append(float(row[token]))
                if token in self.eos_token_ids:
                    return token_ids, log_probs, "stop"
                inputs = torch.tensor([[token]], device=self.device)
            return token_ids, log_probs, "length"

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
        """Copy HF-named tensors into the model in place; unknown names are an error. Returns the count."""
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
