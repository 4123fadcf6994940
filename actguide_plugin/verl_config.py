"""The ``actguide:`` section of the recipe config as a typed verl dataclass.

verl 0.9.1 API relied on: ``verl.base_config.BaseConfig`` (frozen, dict-like dataclass configs) and
``verl.utils.config.omega_conf_to_dataclass``. Field names are the yaml keys one-to-one
(``recipe/actguide/config/actguide_trainer.yaml``); validation is delegated to the pure core configs, so
an error always names the bad ``actguide.<key>`` and its allowed values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from verl.base_config import BaseConfig

from actguide_plugin.core.objective import ObjectiveConfig
from actguide_plugin.core.search import SearchConfig

RATIO_SOURCES = ("actor", "rollout")


@dataclass
class ActGuideConfig(BaseConfig):
    """ActGuide-RL knobs.

    mode: guidance mode (``off``, ``fixed_k``, ``fixed_ratio``, ``always_full``, ``fallback_full``,
        ``fallback_adaptive``, ``fallback_ladder``).
    probe_m / tau / success_threshold: probe size, successes a probe needs, reward a success exceeds.
    fixed_k / fixed_ratio / ladder: levels of the fixed and ladder modes.
    on_full_failure: ``keep`` | ``drop`` | ``unguided`` when even full guidance fails.
    warm_start / reuse_probes: search from the task's last k*; probe rollouts reused at k*.
    guided_clip / guided_ratio_cap / shaping_gamma: clipping of guided tokens (``same`` | ``cap`` | ``shaping``).
    ratio_source: ``actor`` (old log-probs recomputed by the actor on the guided view, default) or
        ``rollout`` (verl's bypass mode: the rollout engine's log-probs of the guided sample).
    cache_file: name of the warm-start cache file inside each ``global_step_*`` checkpoint folder.
    """

    mode: str = "fallback_adaptive"
    probe_m: int = 2
    tau: int = 1
    success_threshold: float = 0.0
    fixed_k: int = 1
    fixed_ratio: float = 0.5
    ladder: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    on_full_failure: str = "unguided"
    warm_start: bool = True
    reuse_probes: str = "all"
    guided_clip: str = "same"
    guided_ratio_cap: float = 5.0
    shaping_gamma: float = 0.1
    ratio_source: str = "actor"
    cache_file: str = "actguide_level_cache.json"

    def __post_init__(self) -> None:
        if self.ratio_source not in RATIO_SOURCES:
            raise ValueError(f"actguide.ratio_source={self.ratio_source!r} is not one of {list(RATIO_SOURCES)}")
        self.search_config(n=1)  # validates the search keys
        self.objective_config()

    def search_config(self, n: int) -> SearchConfig:
        return SearchConfig(
            mode=self.mode,
            n=n,
            probe_m=self.probe_m,
            tau=self.tau,
            success_threshold=self.success_threshold,
            fixed_k=self.fixed_k,
            fixed_ratio=self.fixed_ratio,
            ladder=tuple(self.ladder),
            on_full_failure=self.on_full_failure,
            warm_start=self.warm_start,
            reuse_probes=self.reuse_probes,
        )

    def objective_config(self) -> ObjectiveConfig:
        """Guided-token options; PPO ε and dual clip are filled in from verl's actor config at loss time."""
        return ObjectiveConfig(
            guided_clip=self.guided_clip, guided_ratio_cap=self.guided_ratio_cap, shaping_gamma=self.shaping_gamma
        )


def actguide_config(config: DictConfig | dict[str, Any] | None) -> ActGuideConfig:
    """Build from the full trainer config (its ``actguide`` section) or from the section itself."""
    if config is None:
        return ActGuideConfig()
    section = config.get("actguide", config) if "actguide" in config else config
    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    known = {f.name for f in fields(ActGuideConfig)} - {"_target_"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in the actguide config: {unknown}; known keys: {sorted(known)}")
    return ActGuideConfig(**{k: v for k, v in section.items() if k != "_target_"})
