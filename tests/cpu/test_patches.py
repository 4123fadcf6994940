"""The chunked log-prob patch: the same values and gradients as verl's row-by-row fallback, bit for bit."""

from __future__ import annotations

import pytest
import torch
from verl.utils import torch_functional

from actguide_plugin.cpu import patches


@pytest.mark.parametrize("shape", [(37, 272), (3, 11, 272)])  # [tokens, vocab] (remove-padding), [batch, seq, vocab]
@pytest.mark.parametrize("chunk_elements", [272, 5 * 272, 1 << 24])  # one row per chunk, several rows, all rows
def test_chunked_logprobs_match_verls_fallback_exactly(monkeypatch, shape, chunk_elements):
    monkeypatch.setattr(patches, "LOGPROB_CHUNK_ELEMENTS", chunk_elements)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=generator) * 4
    labels = torch.randint(0, shape[-1], shape[:-1], generator=generator)
    ours_logits, verls_logits = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = patches.chunked_logprobs(ours_logits, labels)
    verls = torch_functional.logprobs_from_logits_v2(verls_logits, labels)
    assert ours.shape == verls.shape == shape[:-1]
    assert torch.equal(ours, verls)
    weights = torch.randn(shape[:-1], generator=generator)
    (ours * weights).sum().backward()
    (verls * weights).sum().backward()
    assert torch.equal(ours_logits.grad, verls_logits.grad)


def test_patch_routes_fp32_to_chunks_and_keeps_verls_path_otherwise(monkeypatch):
    original = torch_functional.logprobs_from_logits_v2
    if getattr(original, "_actguide_cpu", False):  # CPU mode was activated earlier in this process
        original = original.__wrapped__
    monkeypatch.setattr(torch_functional, "logprobs_from_logits_v2", original)
    calls = []
    monkeypatch.setattr(patches, "chunked_logprobs", lambda logits, labels: calls.append(logits.dtype) or "chunked")
    patches.patch_chunked_logprobs()
    patches.patch_chunked_logprobs()  # idempotent: wraps once
    patched = torch_functional.logprobs_from_logits_v2
    assert patched.__wrapped__ is original
    labels = torch.zeros(4, dtype=torch.int64)
    assert patched(torch.randn(4, 8), labels) == "chunked"
    bf16 = patched(torch.randn(4, 8, dtype=torch.bfloat16), labels)  # verl's per-row log-softmax
    assert bf16.dtype == torch.bfloat16 and bf16.shape == (4,)
    assert calls == [torch.float32]
    # logprobs_from_logits (what verl's engines import) reaches the patched function by name
    assert torch_functional.logprobs_from_logits(torch.randn(4, 8), labels) == "chunked"
