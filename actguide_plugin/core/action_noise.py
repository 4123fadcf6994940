"""Deterministic perturbations of a task's reference actions: how sensitive is guidance to imperfect action data?

Action data in the wild is noisy (steps missing, out of order, wrong). The paper's action-noise study (§3.3)
perturbs the reference actions and measures the effect; this module does it reproducibly: the perturbation of a
task is a function of a key (the recipe uses ``task id / training step``, so every probe and rollout of one group
sees the same plan, and the same run perturbs the same way). A fraction f of the L actions, ⌈f · L⌉ positions, is

- ``drop``: removed (at least one action is always kept), so L shrinks;
- ``shuffle``: permuted among those positions;
- ``replace``: each replaced by a copy of another, different action of the same plan (a plausible but wrong step;
  the recipe sees one task at a time, so no foreign actions are at hand).

The count of positions that actually changed is returned for the ``actguide/action_noise_*`` metrics.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from actguide_plugin.core.actions import Action

NOISE_MODES = ("none", "drop", "shuffle", "replace")


def perturb_actions(actions: Sequence[Action], mode: str, fraction: float, key: str) -> tuple[list[Action], int]:
    """``(perturbed actions, number of changed positions)``; the same arguments always give the same result."""
    if mode not in NOISE_MODES:
        raise ValueError(f"action noise mode must be one of {NOISE_MODES}, got {mode!r}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"action noise fraction must be in [0, 1], got {fraction}")
    actions = list(actions)
    if mode == "none" or fraction == 0.0 or not actions:
        return actions, 0
    rng = random.Random(key)  # a str seed is hashed with SHA-512: the same in every process
    count = min(len(actions), math.ceil(fraction * len(actions) - 1e-9))
    if mode == "drop":
        dropped = set(rng.sample(range(len(actions)), min(count, len(actions) - 1)))
        return [a for i, a in enumerate(actions) if i not in dropped], len(dropped)
    positions = sorted(rng.sample(range(len(actions)), count))
    out = list(actions)
    if mode == "shuffle":
        values = [actions[i] for i in positions]
        rng.shuffle(values)
        for position, value in zip(positions, values, strict=True):
            out[position] = value
    else:  # replace
        for position in positions:
            others = [a for a in actions if a != actions[position]]
            if others:
                out[position] = rng.choice(others)
    return out, sum(out[i] != actions[i] for i in positions)
