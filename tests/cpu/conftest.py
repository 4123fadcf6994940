"""Fixtures for the CPU-mode tests: a local Ray cluster."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def cpu_ray(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray cluster configured for CPU mode, with 1 device slot; shut down after the module."""
    import ray

    from actguide_plugin.cpu import activate, ray_init_kwargs

    activate()
    if ray.is_initialized():
        ray.shutdown()
    ray.init(**ray_init_kwargs(num_device_slots=1, num_cpus=16))
    yield ray
    ray.shutdown()
