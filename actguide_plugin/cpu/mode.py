"""CPU mode for verl 0.9.1: run its real workers, engines and trainer on a CPU-only machine.

A CPU run is ``actguide-train --config-name actguide_cpu ...``: ``recipe/actguide/config/actguide_cpu.yaml`` holds
every setting (fsdp2 in fp32, the ``hf`` rollout, one worker each, Ray's logical CPUs and device slot) and puts
``ACTGUIDE_DEVICE=cpu`` into every Ray worker's environment. Each process then activates CPU mode
(:func:`activate`: the registrations of :mod:`.platform` and the patches of :mod:`.patches`) when verl loads our
plugin — the entry point activates the driver itself. It refuses to activate where CUDA is available.

Ray on 2 cores: verl's resource-pool bundles ask for ``max_colocate_count`` CPUs each and hang when Ray sees 2
cores, so the config declares more logical CPUs; Ray 2.60 also needs ``RAY_AUTH_MODE=disabled`` for a local
cluster. Tests and drivers that start Ray themselves use :func:`ray_init_kwargs`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from actguide_plugin.cpu.patches import (
    patch_chunked_logprobs,
    patch_fsdp_offload_pinning,
    patch_process_group_backend,
    patch_resource_check,
)
from actguide_plugin.cpu.platform import (
    RAY_DEVICE_RESOURCE,
    register_cpu_engines,
    register_cpu_platform,
    register_rollout_backends,
)
from actguide_plugin.logs import get_logger
from actguide_plugin.names import DEVICE_ENV, env_value

logger = get_logger(__name__)

DEFAULT_LOGICAL_CPUS = 32
"""Logical CPUs we tell Ray about: verl's pools and actors reserve whole CPUs per bundle/actor."""

_activated = False


def cpu_requested() -> bool:
    """Whether this process was started for a CPU run (``ACTGUIDE_DEVICE=cpu``)."""
    return (env_value(DEVICE_ENV) or "").strip().lower() == "cpu"


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
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # Ray 2.60 needs it to start a local cluster
    # inherited by the Ray workers a CPU driver starts: one BLAS thread per process, and TransferQueue's
    # default of 8 copy threads warns on every put/get on a machine with fewer cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TQ_NUM_THREADS", str(min(8, os.cpu_count() or 1)))
    register_cpu_platform()
    patch_process_group_backend()
    patch_resource_check()
    register_cpu_engines()
    patch_fsdp_offload_pinning()
    patch_chunked_logprobs()
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


CPU_CONFIG = Path(__file__).resolve().parents[2] / "recipe" / "actguide" / "config" / "actguide_cpu_settings.yaml"


def worker_env_vars() -> dict[str, str]:
    """The environment every Ray process of a CPU run gets (``runtime_env.env_vars`` of actguide_cpu_settings.yaml)."""
    env_vars = OmegaConf.load(CPU_CONFIG).ray_kwargs.ray_init.runtime_env.env_vars
    return {key: str(value) for key, value in env_vars.items()}


def ray_init_kwargs(
    num_device_slots: int = 1, num_cpus: int = DEFAULT_LOGICAL_CPUS, temp_dir: str | None = None
) -> dict[str, Any]:
    """``ray.init`` keyword arguments for a local CPU cluster with ``num_device_slots`` worker ranks (tests and
    drivers that start Ray themselves; ``actguide-train`` takes the same settings from ``actguide_cpu.yaml``)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    return {
        "num_cpus": num_cpus,
        "num_gpus": 0,
        "resources": {RAY_DEVICE_RESOURCE: num_device_slots},
        "include_dashboard": False,
        "_temp_dir": temp_dir or os.path.join(tempfile.gettempdir(), "actguide_ray"),
        "runtime_env": {"env_vars": worker_env_vars()},
    }
