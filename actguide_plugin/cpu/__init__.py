"""CPU mode for verl 0.9.1 (:mod:`.mode`), the CPU rollout backends (:mod:`.hf_rollout`), and the offline
models, test policy and run summary the CPU demo and tests use.

Nothing here is imported by verl unless CPU mode is requested.
"""

from .mode import activate, activate_if_requested, cpu_requested, ray_init_kwargs

__all__ = ["activate", "activate_if_requested", "cpu_requested", "ray_init_kwargs"]
