"""CPU mode for verl 0.9.1 (opt-in with ``ACTGUIDE_DEVICE=cpu``) and a CPU rollout backend.

Nothing here is imported by verl unless CPU mode is requested; see :mod:`.verl_cpu_patches`.
"""

from .verl_cpu_patches import activate_if_requested, cpu_overrides, cpu_requested, ray_init_kwargs

__all__ = ["activate_if_requested", "cpu_overrides", "cpu_requested", "ray_init_kwargs"]
