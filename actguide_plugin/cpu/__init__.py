"""CPU mode for verl 0.9.1 (:mod:`.mode`, :mod:`.patches`, :mod:`.platform`), the CPU rollout backends
(:mod:`.hf_rollout`, :mod:`.hf_engine`), and the offline tiny models (:mod:`.tiny_model`) and scripted test policy
(:mod:`.scripted_policy`) the CPU demo and tests use.

Nothing here is imported by verl unless CPU mode is requested.
"""

from .mode import activate, activate_if_requested, cpu_requested, ray_init_kwargs

__all__ = ["activate", "activate_if_requested", "cpu_requested", "ray_init_kwargs"]
