"""Opt-in CPU mode for verl 0.9.1: run its real workers, engines and trainer on a CPU-only machine.

Activated only by ``ACTGUIDE_DEVICE=cpu`` (see :func:`activate_if_requested`, called by our ``verl.plugins``
entry point in every process, Ray workers included). It refuses to activate when CUDA is available.

verl 0.9.1 behaviours compensated here, one small function each:

1. **No CPU platform.** ``verl.plugin.platform`` knows nvidia/npu/rocm only and falls back to CUDA.
   :func:`register_cpu_platform` registers :class:`PlatformCPU` (device ``cpu``, backend ``gloo``, a
   ``torch.cpu``-based device module with zero memory statistics) under the name ``cpu`` and selects it
   (``set_platform`` + ``VERL_PLATFORM=cpu``).
2. **Engines registered for cuda/npu only.** ``EngineRegistry`` has no entry for device ``cpu``.
   :func:`register_cpu_engines` registers verl's own FSDP engines (``FSDPEngineWithLMHead``,
   ``FSDPEngineWithValueHead``) for ``cpu``; use ``strategy=fsdp2`` (FSDP1 fails on CPU).
3. **Duplicate gloo backend.** ``initialize_global_process_group_ray`` builds ``"cpu:gloo,<dev>:<backend>"``,
   i.e. ``"cpu:gloo,cpu:gloo"`` on CPU, which torch rejects. :func:`patch_process_group_backend` wraps it so
   the CPU backend string is ``"cpu:gloo"``.
4. **Resource check counts GPU/NPU only.** ``ResourcePoolManager._check_resource_available`` reads the Ray
   ``GPU``/``NPU`` resources, so it fails on CPU. :func:`patch_resource_check` counts the platform's own Ray
   resource (:data:`RAY_DEVICE_RESOURCE`, a custom resource declared by :func:`ray_init_kwargs`).
5. **Pinned memory.** The FSDP engine builds ``CPUOffloadPolicy(pin_memory=True)`` for forward-only (ref)
   models; pinning needs an accelerator. :func:`patch_fsdp_offload_pinning` rebinds it without pinning.
6. **No CPU rollout.** :func:`register_rollout_backends` registers our ``hf`` and ``scripted`` servers
   (:mod:`.hf_rollout`).
7. **Ray on 2 cores.** Resource-pool bundles ask for ``max_colocate_count`` CPUs each and hang when Ray
   sees 2 cores; Ray 2.60 also needs ``RAY_AUTH_MODE=disabled`` for a local cluster. :func:`ray_init_kwargs`
   (tests, own drivers) and :func:`cpu_overrides` (``main_ppo``-style hydra runs) declare logical CPUs and the
   device resource, and pass ``ACTGUIDE_DEVICE`` to every worker's environment.
   Also ``get_device_id()`` must be ``"cpu"`` (verl passes it to ``.to()``; an int means an accelerator), and
   FSDP's mixed precision must be fp32 (:data:`FP32_MIXED_PRECISION`) for log-probs to match plain HF.
8. **TransferQueue** starts 8 storage units by default; :func:`cpu_overrides` uses one.

verl 0.9.1 APIs relied on: ``verl.plugin.platform.{PlatformBase, PlatformRegistry, set_platform}``,
``verl.plugin.platform.platform_manager._current_platform``, ``verl.workers.engine.base.EngineRegistry._engines``
(``register`` asserts on duplicates, so we check first), ``verl.workers.engine.fsdp.transformer_impl``,
``verl.utils.distributed.initialize_global_process_group_ray`` (and the modules that import it by name:
``verl.workers.engine_workers``, ``verl.checkpoint_engine.base``),
``verl.single_controller.ray.base.ResourcePoolManager._check_resource_available``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
import types
from typing import Any

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("ACTGUIDE_LOGGING_LEVEL", "WARNING"))

DEVICE_ENV = "ACTGUIDE_DEVICE"
PLATFORM_NAME = "cpu"
RAY_DEVICE_RESOURCE = "actguide_cpu_device"
"""Custom Ray resource that stands for one training "device" slot (one worker rank) on CPU."""
DEFAULT_LOGICAL_CPUS = 32
"""Logical CPUs we tell Ray about: verl's pools and actors reserve whole CPUs per bundle/actor."""

FP32_MIXED_PRECISION = "{param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}"
"""FSDP mixed precision for CPU: verl's default param dtype is bf16, which costs ~5e-2 in log-probs."""

_activated = False


def cpu_requested() -> bool:
    """Whether the user opted into CPU mode (``ACTGUIDE_DEVICE=cpu``)."""
    return os.getenv(DEVICE_ENV, "").strip().lower() == "cpu"


# ---------------------------------------------------------------------------------------------------------------
# 1. platform
# ---------------------------------------------------------------------------------------------------------------


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
            return "ACTGUIDE_CPU_VISIBLE_DEVICES"

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


# ---------------------------------------------------------------------------------------------------------------
# 2. engines
# ---------------------------------------------------------------------------------------------------------------


def register_cpu_engines() -> None:
    """Register verl's FSDP language/value-model engines for device ``cpu`` (backends fsdp and fsdp2)."""
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    for model_type, engine_cls in (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead)):
        for backend in ("fsdp", "fsdp2"):
            if "cpu" not in EngineRegistry._engines.get(model_type, {}).get(backend, {}):
                EngineRegistry.register(model_type=model_type, backend=backend, device="cpu")(engine_cls)


# ---------------------------------------------------------------------------------------------------------------
# 3. process group backend
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# 4. resource check
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# 5. FSDP2 offload without pinned memory
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# 6. rollout backends
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# activation
# ---------------------------------------------------------------------------------------------------------------


def activate() -> None:
    """Apply every CPU workaround in this process (idempotent). Raises on a machine with CUDA."""
    global _activated
    if _activated:
        return
    import torch

    if torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_ENV}=cpu was set on a machine with CUDA; refusing to run verl in CPU mode")
    # children (Ray workers started from here) inherit VERL_PLATFORM=cpu: they must opt in as well
    os.environ[DEVICE_ENV] = "cpu"
    register_cpu_platform()
    patch_process_group_backend()
    patch_resource_check()
    register_cpu_engines()
    patch_fsdp_offload_pinning()
    register_rollout_backends()
    _activated = True
    logger.info("verl CPU mode active")


def activate_if_requested() -> bool:
    """Activate CPU mode when ``ACTGUIDE_DEVICE=cpu``; otherwise do nothing. Returns whether it is active.

    Called from our ``verl.plugins`` entry point, where verl swallows exceptions: on a CUDA machine it warns
    and stays inactive instead of raising.
    """
    if not cpu_requested():
        return False
    import torch

    if torch.cuda.is_available():
        logger.warning("%s=cpu ignored: CUDA is available on this machine", DEVICE_ENV)
        return False
    activate()
    return True


# ---------------------------------------------------------------------------------------------------------------
# launch settings
# ---------------------------------------------------------------------------------------------------------------


def worker_env_vars() -> dict[str, str]:
    """Environment every Ray process of a CPU run needs (our opt-in, Ray auth, quiet tokenizers)."""
    return {
        DEVICE_ENV: "cpu",
        "RAY_AUTH_MODE": "disabled",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": os.getenv("OMP_NUM_THREADS", "1"),
        # TransferQueue defaults to 8 copy threads and warns on every put/get when the machine has fewer cores
        "TQ_NUM_THREADS": os.getenv("TQ_NUM_THREADS", str(min(8, os.cpu_count() or 1))),
    }


def prepare_ray_environment(temp_dir: str | None = None) -> str:
    """Set what ``ray.init`` itself reads from the driver's environment; return a short Ray temp dir.

    Ray 2.60 needs ``RAY_AUTH_MODE=disabled`` for a local cluster. A short temp dir avoids the unix-socket
    path-length limit under deep working directories. Our opt-in reaches workers via ``runtime_env``.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = temp_dir or os.path.join(tempfile.gettempdir(), "actguide_ray")
    os.makedirs(temp_dir, exist_ok=True)
    return temp_dir


def ray_init_kwargs(
    num_device_slots: int = 1, num_cpus: int = DEFAULT_LOGICAL_CPUS, temp_dir: str | None = None
) -> dict[str, Any]:
    """``ray.init`` keyword arguments for a local CPU cluster with ``num_device_slots`` worker ranks."""
    return {
        "num_cpus": num_cpus,
        "num_gpus": 0,
        "resources": {RAY_DEVICE_RESOURCE: num_device_slots},
        "include_dashboard": False,
        "_temp_dir": prepare_ray_environment(temp_dir),
        "runtime_env": {"env_vars": worker_env_vars()},
    }


def cpu_overrides(num_device_slots: int = 1, num_cpus: int = DEFAULT_LOGICAL_CPUS) -> list[str]:
    """Hydra overrides that run ``verl.trainer.main_ppo`` (V1 trainer) on CPU with fsdp2 and our ``hf`` rollout.

    Model path, data files, batch sizes and the algorithm stay the caller's. Run with ``ACTGUIDE_DEVICE=cpu``
    and ``RAY_AUTH_MODE=disabled`` in the driver's environment (see :func:`prepare_ray_environment`).
    """
    temp_dir = prepare_ray_environment()
    env = worker_env_vars()
    overrides = [
        "trainer.device=cpu",
        "trainer.nnodes=1",
        f"trainer.n_gpus_per_node={num_device_slots}",
        # engines: FSDP2 in fp32 with sdpa attention, no compile, no flash-attn remove-padding path
        "actor_rollout_ref.actor.strategy=fsdp2",
        "critic.strategy=fsdp2",
        f"+actor_rollout_ref.actor.fsdp_config.mixed_precision={FP32_MIXED_PRECISION}",
        f"+actor_rollout_ref.ref.fsdp_config.mixed_precision={FP32_MIXED_PRECISION}",
        "actor_rollout_ref.actor.use_torch_compile=false",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=false",
        "actor_rollout_ref.ref.fsdp_config.use_torch_compile=false",
        "actor_rollout_ref.model.use_remove_padding=false",
        "actor_rollout_ref.model.enable_gradient_checkpointing=false",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        # rollout: our HF-generate server, one replica per rank, fp32
        "actor_rollout_ref.rollout.name=hf",
        "actor_rollout_ref.rollout.mode=async",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.data_parallel_size=1",
        "actor_rollout_ref.rollout.pipeline_model_parallel_size=1",
        "actor_rollout_ref.rollout.dtype=float32",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.checkpoint_engine.backend=naive",
        # helpers that default to 8 processes
        "reward.num_workers=1",
        "data.dataloader_num_workers=0",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        # Ray: logical CPUs, the device-slot resource, our env in every worker
        f"ray_kwargs.ray_init.num_cpus={num_cpus}",
        f"+ray_kwargs.ray_init.resources.{RAY_DEVICE_RESOURCE}={num_device_slots}",
        f"+ray_kwargs.ray_init._temp_dir={temp_dir}",
        "+ray_kwargs.ray_init.include_dashboard=false",
    ]
    # Quoted: hydra would turn "false"/"1" into bool/int, and Ray requires string env values.
    overrides += [f"+ray_kwargs.ray_init.runtime_env.env_vars.{key}='{value}'" for key, value in env.items()]
    return overrides
