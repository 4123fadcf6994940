"""The few patches of verl 0.9.1 behaviour a CPU run needs, one small function each.

1. **Duplicate gloo backend.** ``initialize_global_process_group_ray`` builds ``"cpu:gloo,<dev>:<backend>"``,
   i.e. ``"cpu:gloo,cpu:gloo"`` on CPU, which torch rejects. :func:`patch_process_group_backend` wraps it so
   the CPU backend string is ``"cpu:gloo"``.
2. **Resource check counts GPU/NPU only.** ``ResourcePoolManager._check_resource_available`` reads the Ray
   ``GPU``/``NPU`` resources, so it fails on CPU. :func:`patch_resource_check` counts the platform's own Ray
   resource (:data:`~actguide_plugin.cpu.platform.RAY_DEVICE_RESOURCE`).
3. **Pinned memory.** The FSDP engine builds ``CPUOffloadPolicy(pin_memory=True)`` for forward-only (ref)
   models; pinning needs an accelerator. :func:`patch_fsdp_offload_pinning` rebinds it without pinning.
4. **Token-by-token log-softmax.** Without flash-attn's cross-entropy kernel, ``logprobs_from_logits`` falls back to
   ``logprobs_from_logits_v2``, which for fp32 logits calls ``logsumexp`` once per row of the ``[tokens, vocab]``
   logits (a loop meant to bound memory with a 151k vocabulary): thousands of tiny ops per micro-batch, forward and
   backward, most of a tiny model's log-prob and update time on CPU. :func:`patch_chunked_logprobs` computes the same
   values (bit for bit) in chunks of rows that keep the same memory bound.

verl 0.9.1 APIs relied on: ``verl.utils.distributed.initialize_global_process_group_ray`` (and the modules that
import it by name: ``verl.workers.engine_workers``, ``verl.checkpoint_engine.base``),
``verl.single_controller.ray.base.ResourcePoolManager._check_resource_available``,
``verl.workers.engine.fsdp.transformer_impl.CPUOffloadPolicy``,
``verl.utils.torch_functional.logprobs_from_logits_v2`` (called by name from ``logprobs_from_logits``).
"""

from __future__ import annotations

import functools
import sys

import torch

from actguide_plugin.cpu.platform import RAY_DEVICE_RESOURCE


def patch_process_group_backend() -> None:
    """Make ``initialize_global_process_group_ray`` use ``cpu:gloo`` (not ``cpu:gloo,cpu:gloo``) on CPU."""
    import verl.utils.distributed as distributed

    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_actguide_cpu", False):
        return

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    initialize_global_process_group_ray._actguide_cpu = True
    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray
    # Modules that already did `from verl.utils.distributed import initialize_global_process_group_ray`.
    for name, module in list(sys.modules.items()):
        if name.startswith("verl.") and vars(module).get("initialize_global_process_group_ray") is original:
            module.initialize_global_process_group_ray = initialize_global_process_group_ray


def patch_resource_check() -> None:
    """Let ``ResourcePoolManager`` count the CPU platform's Ray device resource instead of GPU/NPU."""
    import ray
    from verl.single_controller.ray.base import ResourcePoolManager

    if getattr(ResourcePoolManager._check_resource_available, "_actguide_cpu", False):
        return

    def _check_resource_available(self) -> None:
        available = sum(
            node.get(RAY_DEVICE_RESOURCE, 0) for node in ray._private.state.available_resources_per_node().values()
        )
        required = sum(n for process_on_nodes in self.resource_pool_spec.values() for n in process_on_nodes)
        if available < required:
            raise ValueError(
                f"Ray has {available} '{RAY_DEVICE_RESOURCE}' slots, the resource pools need {required}: "
                f"start Ray with resources={{'{RAY_DEVICE_RESOURCE}': {required}}} (see actguide_plugin.cpu)"
            )

    _check_resource_available._actguide_cpu = True
    ResourcePoolManager._check_resource_available = _check_resource_available


def patch_fsdp_offload_pinning() -> None:
    """Make the FSDP engine's ``CPUOffloadPolicy(pin_memory=True)`` (forward-only/ref models) not pin memory.

    Pinning needs an accelerator; on a CPU-only torch ``fully_shard`` fails with "Cannot access accelerator
    device". The engine module looks the class up by name, so we rebind that name to a no-pin subclass.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy
    from verl.workers.engine.fsdp import transformer_impl

    if getattr(transformer_impl.CPUOffloadPolicy, "_actguide_cpu", False):
        return

    class UnpinnedCPUOffloadPolicy(CPUOffloadPolicy):
        _actguide_cpu = True

        def __init__(self, pin_memory: bool = False) -> None:
            super().__init__(pin_memory=False)

    transformer_impl.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy


LOGPROB_CHUNK_ELEMENTS = 1 << 24
"""Logits elements per chunk of :func:`chunked_logprobs` (64 MiB in fp32): 61k rows of a 272-token vocabulary, 110
rows of Qwen's 151,936."""


def chunked_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits[labels] - logsumexp(logits)`` over the last dimension, as verl's ``logprobs_from_logits_v2``
    computes it for fp32/fp64 logits, with ``logsumexp`` over chunks of rows (first dimension) instead of per row."""
    rows = max(1, LOGPROB_CHUNK_ELEMENTS // max(1, logits[0].numel()))
    label_logits = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
    logsumexp = torch.cat([torch.logsumexp(chunk, dim=-1) for chunk in logits.split(rows)])
    return label_logits - logsumexp


def patch_chunked_logprobs() -> None:
    """Make verl's fallback log-prob function use :func:`chunked_logprobs` for fp32/fp64 logits of two or more
    dimensions; other inputs (bf16's per-row log-softmax, empty or 1-D logits) still go to verl's own."""
    from verl.utils import torch_functional

    original = torch_functional.logprobs_from_logits_v2
    if getattr(original, "_actguide_cpu", False):
        return

    @functools.wraps(original)
    def logprobs_from_logits_v2(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() < 2 or logits.shape[0] == 0 or logits.dtype not in (torch.float32, torch.float64):
            return original(logits, labels)
        return chunked_logprobs(logits, labels)

    logprobs_from_logits_v2._actguide_cpu = True
    torch_functional.logprobs_from_logits_v2 = logprobs_from_logits_v2
