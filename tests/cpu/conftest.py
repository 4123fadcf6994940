"""Fixtures for the CPU-mode tests: tiny models built once per session, and a local Ray cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from actguide_plugin.tiny_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_bytes_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random 2-layer Qwen3 model with the byte-level tokenizer (fast to build and run)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-bytes", vocab="bytes", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random 2-layer Qwen3 model with the real Qwen vocabulary (tokenizer conversion cached on disk)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen", vocab="qwen", seed=0)


@pytest.fixture(scope="module")
def cpu_ray(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray cluster configured for CPU mode, with 1 device slot; shut down after the module."""
    import ray

    from actguide_plugin.cpu.verl_cpu_patches import activate, ray_init_kwargs

    activate()
    if ray.is_initialized():
        ray.shutdown()
    ray.init(**ray_init_kwargs(num_device_slots=1, num_cpus=16))
    yield ray
    ray.shutdown()
