"""verl's registries, taught about the host CPU: a platform, the FSDP engines and two rollout backends.

Registrations only (no behaviour of verl is changed here); :mod:`.patches` holds the few real patches.

1. **No CPU platform.** ``verl.plugin.platform`` knows nvidia/npu/rocm only and falls back to CUDA.
   :func:`register_cpu_platform` registers :class:`PlatformCPU` (device ``cpu``, backend ``gloo``, a
   ``torch.cpu``-based device module with zero memory statistics) under the name ``cpu`` and selects it
   (``set_platform`` + ``VERL_PLATFORM=cpu``). ``current_device()`` is ``"cpu"`` (verl passes it to ``.to()``;
   an int would mean an accelerator).
2. **Engines registered for cuda/npu only.** ``EngineRegistry`` has no entry for device ``cpu``.
   :func:`register_cpu_engines` registers verl's own FSDP engines (``FSDPEngineWithLMHead``,
   ``FSDPEngineWithValueHead``) for ``cpu``; use ``strategy=fsdp2`` (FSDP1 fails on CPU).
3. **No CPU rollout.** :func:`register_rollout_backends` registers our ``hf`` and ``scripted`` servers
   (:mod:`.hf_rollout`).

verl 0.9.1 APIs relied on: ``verl.plugin.platform.{PlatformBase, PlatformRegistry, set_platform}``,
``verl.plugin.platform.platform_manager._current_platform``, ``verl.workers.engine.base.EngineRegistry._engines``
(``register`` asserts on duplicates, so we check first), ``verl.workers.engine.fsdp.transformer_impl``,
``verl.workers.rollout.replica.RolloutReplicaRegistry``, ``verl.workers.rollout.base._ROLLOUT_REGISTRY``.
"""

from __future__ import annotations

import contextlib
import os
import types
from typing import Any

from actguide_plugin.names import CPU_VISIBLE_DEVICES_ENV

PLATFORM_NAME = "cpu"
RAY_DEVICE_RESOURCE = "actguide_cpu_device"
"""Custom Ray resource that stands for one training "device" slot (one worker rank) on CPU."""


def _zero(*_args: Any, **_kwargs: Any) -> int:
    return 0


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def _mem_get_info(*_args: Any, **_kwargs: Any) -> tuple[int, int]:
    import psutil

    memory = psutil.virtual_memory()
    return memory.available, memory.total


def _make_device_module() -> types.ModuleType:
    """``torch.cpu`` plus the ``torch.cuda``-style calls verl makes on its device module.

    verl calls ``empty_cache``, ``max_memory_allocated``, ``mem_get_info``, ``get_rng_state`` ... on
    ``get_torch_device()``; ``torch.cpu`` lacks most of them. Memory statistics report zero (no device
    allocator), ``mem_get_info`` reports host memory, RNG state is the CPU generator's.
    """
    import torch

    module = types.ModuleType("actguide_cpu_device")
    for name in dir(torch.cpu):
        if not name.startswith("_"):
            setattr(module, name, getattr(torch.cpu, name))
    for name in (
        "memory_allocated",
        "memory_reserved",
        "max_memory_allocated",
        "max_memory_reserved",
    ):
        setattr(module, name, _zero)
    for name in (
        "empty_cache",
        "ipc_collect",
        "reset_peak_memory_stats",
        "reset_accumulated_memory_stats",
        "set_per_process_memory_fraction",
        "set_device",
        "synchronize",
    ):
        setattr(module, name, _noop)
    module.mem_get_info = _mem_get_info
    module.current_device = lambda: "cpu"
    module.device_count = lambda: 1
    module.is_available = lambda: True
    module.get_device_name = lambda *_a, **_k: "cpu"
    module.get_rng_state = lambda *_a, **_k: torch.get_rng_state()
    module.set_rng_state = lambda state, *_a, **_k: torch.set_rng_state(state)
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    return module


def _platform_class() -> type:
    """Build :class:`PlatformCPU` lazily: importing verl's platform module is only paid in CPU mode."""
    from verl.plugin.platform import PlatformBase

    class PlatformCPU(PlatformBase):
        """verl platform for host CPUs: gloo collectives, no device memory, a custom Ray slot resource."""

        _device_module: types.ModuleType | None = None

        @property
        def device_name(self) -> str:
            return "cpu"

        @property
        def vendor_name(self) -> str:
            return "cpu"

        @property
        def device_module(self) -> types.ModuleType:
            if PlatformCPU._device_module is None:
                PlatformCPU._device_module = _make_device_module()
            return PlatformCPU._device_module

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check: bool = False) -> bool:
            # Never auto-detected: CPU mode is selected explicitly (VERL_PLATFORM / set_platform).
            return False

        def current_device(self) -> str:
            # verl passes this straight to `.to(...)`/`torch.device(...)`; an int would mean an accelerator.
            return "cpu"

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            return None

        def synchronize(self, device_index: int | None = None) -> None:
            return None

        def manual_seed(self, seed: int) -> None:
            import torch

            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            self.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            return None

        def empty_cache(self) -> None:
            return None

        def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return CPU_VISIBLE_DEVICES_ENV

        @contextlib.contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            return None

        def profiler_stop(self) -> None:
            return None

        def ray_resource_name(self) -> str:
            return RAY_DEVICE_RESOURCE

        def ray_noset_envvars(self) -> list[str]:
            return []

        def is_ipc_supported(self) -> bool:
            return False

        def cudart(self) -> Any:
            return None

    return PlatformCPU


def register_cpu_platform() -> None:
    """Register the CPU platform as ``cpu`` and make it the process's verl platform."""
    from verl.plugin.platform import PlatformRegistry, platform_manager, set_platform

    platform_cls = PlatformRegistry.get(PLATFORM_NAME) or PlatformRegistry.register(platform=PLATFORM_NAME)(
        _platform_class()
    )
    os.environ["VERL_PLATFORM"] = PLATFORM_NAME
    current = platform_manager._current_platform
    if not isinstance(current, platform_cls):
        set_platform(platform_cls())


def register_cpu_engines() -> None:
    """Register verl's FSDP language/value-model engines for device ``cpu`` (backends fsdp and fsdp2)."""
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    for model_type, engine_cls in (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead)):
        for backend in ("fsdp", "fsdp2"):
            if "cpu" not in EngineRegistry._engines.get(model_type, {}).get(backend, {}):
                EngineRegistry.register(model_type=model_type, backend=backend, device="cpu")(engine_cls)


ROLLOUT_BACKENDS = ("hf", "scripted")
_HF_ROLLOUT_MODULE = "actguide_plugin.cpu.hf_rollout"


def _load_hf_replica() -> type:
    from .hf_rollout import HFReplica

    return HFReplica


def register_rollout_backends() -> None:
    """Register the ``hf`` and ``scripted`` CPU rollout servers (verl has vllm/sglang/trtllm only).

    Both registries resolve lazily (a loader, a dotted path), so registering never imports
    :mod:`.hf_rollout`, which itself imports verl (a cycle while ``import verl`` loads our plugin).
    """
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    for name in ROLLOUT_BACKENDS:
        RolloutReplicaRegistry.register(name, _load_hf_replica)
        base._ROLLOUT_REGISTRY[(name, "async")] = f"{_HF_ROLLOUT_MODULE}.HFServerAdapter"
