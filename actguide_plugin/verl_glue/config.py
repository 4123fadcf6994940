"""The ``actguide:`` config section as one typed verl dataclass, and the verl settings the recipe needs.

verl 0.9.1 APIs relied on: ``verl.base_config.BaseConfig`` (dict-like dataclass configs with ``_target_``) and
``verl.utils.config.omega_conf_to_dataclass`` (hydra ``instantiate`` of the section's ``_target_``).

:class:`ActGuideConfig` is the single source of the section: the recipe yaml mirrors its fields one-to-one, and
the pure core's configs (:class:`~actguide_plugin.core.search.SearchConfig`,
:class:`~actguide_plugin.core.objective.ObjectiveConfig`) are derived from its fields *by name*
(:meth:`ActGuideConfig.core_config`), so a knob is never mapped by hand. Every key is type- and range-checked
when the section is built, which the entry point does before Ray starts; errors name ``actguide.<key>``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from verl.base_config import BaseConfig
from verl.utils.config import omega_conf_to_dataclass

from actguide_plugin.core.action_noise import NOISE_MODES
from actguide_plugin.core.guidance import level_from_ratio
from actguide_plugin.core.objective import ObjectiveConfig
from actguide_plugin.core.search import SearchConfig
from actguide_plugin.names import LOSS_NAME

SECTION = "actguide"
RATIO_SOURCES = ("actor", "rollout")
RATIO_CONTEXTS = ("unguided", "guided")
GROUP_ADVANTAGE_ESTIMATORS = ("grpo", "grpo_vectorized")  # advantages normalized within each prompt's group
CoreConfig = TypeVar("CoreConfig")


@dataclass
class ActGuideConfig(BaseConfig):
    """ActGuide-RL knobs (the ``actguide:`` section; ``README`` / ``docs/config.md`` explain each one).

    mode: guidance mode (``off``, ``fixed_k``, ``fixed_ratio``, ``always_full``, ``fallback_full``,
        ``fallback_adaptive``, ``fallback_ladder``).
    probe_m / tau / success_threshold: probe size, successes a probe needs, reward a success exceeds.
    fixed_k / fixed_ratio / ladder: levels of the fixed and ladder modes.
    on_full_failure: ``keep`` | ``drop`` | ``unguided`` when even full guidance fails.
    full_level_check: ``group`` (complete the group at k = L and rescue it on ``tau`` successes) | ``probe``.
    probe_only_after: whole-group failures at L in a row after which L is checked with the m probes only (0: off).
    warm_start / reuse_probes: search from the task's last k*; probe rollouts reused at k*.
    guided_clip / guided_ratio_cap / shaping_gamma: clipping of guided tokens
        (``same`` | ``cap`` | ``shaping`` | ``cispo``).
    ratio_source: ``actor`` (old log-probs recomputed by the actor on the guided view, default) or
        ``rollout`` (verl's bypass mode: the rollout engine's log-probs of the guided sample).
    ratio_context: prompt under the numerator (and the reference KL) of guided rows: ``unguided`` (the prompt
        swap, mixed-policy optimization, default) or ``guided`` (no swap: the paper's Table 4 ablation).
    cache_file: name of the warm-start cache file inside each ``global_step_*`` checkpoint folder.
    val_level / val_level_ratio: guidance for validation and ``actguide-eval`` (both 0: unguided, the default):
        level k (clamped to each task's L) or ratio a (k = ceil(a · L)); at most one of them may be set.
    action_noise / action_noise_frac: the action-noise study: ``drop``, ``shuffle`` or ``replace`` a fraction of each
        training task's reference actions, deterministically per task and step (``none``: off, the default).
    val_dump_dir: where each validation writes ``eval.json``, ``eval.md`` and ``trajectories.jsonl`` (empty: not
        written; a val-only run writes into the folder itself, a training run into ``global_step_N/`` below it).
    """

    # The knobs of the pure core take their defaults from it: each default is written once, in the core config.
    mode: str = SearchConfig.mode
    probe_m: int = SearchConfig.probe_m
    tau: int = SearchConfig.tau
    success_threshold: float = SearchConfig.success_threshold
    fixed_k: int = SearchConfig.fixed_k
    fixed_ratio: float = SearchConfig.fixed_ratio
    ladder: list[float] = field(default_factory=lambda: list(SearchConfig.ladder))
    on_full_failure: str = SearchConfig.on_full_failure
    full_level_check: str = SearchConfig.full_level_check
    probe_only_after: int = SearchConfig.probe_only_after
    warm_start: bool = SearchConfig.warm_start
    reuse_probes: str = SearchConfig.reuse_probes
    guided_clip: str = ObjectiveConfig.guided_clip
    guided_ratio_cap: float = ObjectiveConfig.guided_ratio_cap
    shaping_gamma: float = ObjectiveConfig.shaping_gamma
    ratio_source: str = "actor"
    ratio_context: str = "unguided"
    cache_file: str = "actguide_level_cache.json"
    val_level: int = 0
    val_level_ratio: float = 0.0
    val_dump_dir: str = ""
    action_noise: str = "none"
    action_noise_frac: float = 0.0

    def __post_init__(self) -> None:
        _check_types(self)
        if self.action_noise not in NOISE_MODES:
            raise ValueError(f"{SECTION}.action_noise={self.action_noise!r} is not one of {list(NOISE_MODES)}")
        if not 0.0 <= self.action_noise_frac <= 1.0:
            raise ValueError(f"{SECTION}.action_noise_frac must be in [0, 1], got {self.action_noise_frac}")
        if self.val_level < 0:
            raise ValueError(f"{SECTION}.val_level must be >= 0, got {self.val_level}")
        if not 0.0 <= self.val_level_ratio <= 1.0:
            raise ValueError(f"{SECTION}.val_level_ratio must be in [0, 1], got {self.val_level_ratio}")
        if self.val_level and self.val_level_ratio:
            raise ValueError(f"set at most one of {SECTION}.val_level and {SECTION}.val_level_ratio")
        if self.ratio_source not in RATIO_SOURCES:
            raise ValueError(f"{SECTION}.ratio_source={self.ratio_source!r} is not one of {list(RATIO_SOURCES)}")
        if self.ratio_context not in RATIO_CONTEXTS:
            raise ValueError(f"{SECTION}.ratio_context={self.ratio_context!r} is not one of {list(RATIO_CONTEXTS)}")
        if not self.cache_file or "/" in self.cache_file or self.cache_file in (".", ".."):
            raise ValueError(f"{SECTION}.cache_file must be a plain file name, got {self.cache_file!r}")
        self.search_config(n=1)  # range checks of the search keys
        self.objective_config()  # range checks of the guided-token keys

    def core_config(self, config_type: type[CoreConfig], **extra: Any) -> CoreConfig:
        """Build a core config from the fields of this section with the same names, plus ``extra``."""
        names = {f.name for f in dataclasses.fields(config_type)} & {f.name for f in dataclasses.fields(self)}
        return config_type(**{name: getattr(self, name) for name in names - extra.keys()}, **extra)

    def search_config(self, n: int) -> SearchConfig:
        """The level search's knobs; the group size n is verl's ``actor_rollout_ref.rollout.n``."""
        return self.core_config(SearchConfig, n=n)

    def validation_level(self, num_actions: int) -> int:
        """Guidance level of validation samples of a task with ``num_actions`` reference actions (0: unguided)."""
        if self.val_level_ratio:
            return level_from_ratio(self.val_level_ratio, num_actions)
        return min(self.val_level, num_actions)

    def objective_config(self, **actor_clip: float) -> ObjectiveConfig:
        """Guided-token options; PPO ε and dual clip (``clip_low``, ...) come from verl's actor config."""
        return self.core_config(ObjectiveConfig, **actor_clip)


def _check_types(config: ActGuideConfig) -> None:
    """Reject values of the wrong type by key: hydra's ``instantiate`` passes yaml values through unchecked."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        if f.name.startswith("_"):
            continue
        value, expected = getattr(config, f.name), hints[f.name]
        if typing.get_origin(expected) is list:
            (item_type,) = typing.get_args(expected)
            ok = isinstance(value, list | tuple) and all(_is_instance(item, item_type) for item in value)
        else:
            ok = _is_instance(value, expected)
        if not ok:
            raise ValueError(f"{SECTION}.{f.name}={value!r} must be of type {getattr(expected, '__name__', expected)}")


def _is_instance(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def actguide_config(config: DictConfig | Mapping[str, Any] | None) -> ActGuideConfig:
    """Build the section from the full trainer config, or from the section itself; errors name the key."""
    if config is None:
        return ActGuideConfig()
    if SECTION in config and config.get(SECTION) is None:
        raise ValueError(f"the {SECTION}: section is null; remove the override (e.g. {SECTION}=null) or set its keys")
    if SECTION not in config and "actor_rollout_ref" in config:  # a whole trainer config without the recipe
        raise ValueError(
            f"the composed config has no {SECTION}: section, so it does not include the recipe; add "
            "`- actguide_layer: required` to your yaml's defaults (with pkg://recipe.actguide.config in "
            "hydra.searchpath), or pass --config-path/--config-name to actguide-train, which layers it on"
        )
    section = config.get(SECTION, config) if SECTION in config else config
    if isinstance(section, ActGuideConfig):
        return section
    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    section = OmegaConf.create(dict(section))
    known = {f.name for f in dataclasses.fields(ActGuideConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        public = sorted(k for k in known if not k.startswith("_"))
        raise ValueError(f"unknown key(s) in the {SECTION} config: {unknown}; known keys: {public}")
    if not section.get("_target_"):
        section["_target_"] = f"{ActGuideConfig.__module__}.{ActGuideConfig.__qualname__}"
    try:
        built = omega_conf_to_dataclass(section)
    except Exception as err:  # hydra wraps the dataclass's ValueError in an InstantiationException
        cause = err.__cause__ if isinstance(err.__cause__, ValueError) else err
        raise ValueError(f"invalid {SECTION} config: {cause}") from err
    if not isinstance(built, ActGuideConfig):
        raise ValueError(f"{SECTION}._target_ must be ActGuideConfig or a subclass, got {type(built).__name__}")
    return built


MANAGER = "actguide_plugin.verl_glue.rollout.ActGuideAgentLoopManager"  # either trainer (by trainer.use_v1)
V1_MANAGER = "actguide_plugin.verl_glue.rollout_v1.ActGuideAgentLoopManager"  # V1 only (the recipe's earlier value)
V0_MANAGER = "actguide_plugin.verl_glue.rollout_v0.ActGuideAgentLoopManagerV0"  # classic trainer only


def check_verl_config(config: Any) -> ActGuideConfig:
    """Settings ActGuide cannot work without, checked before Ray starts; each problem names the key to change.

    Returns the validated ``actguide:`` section.
    """
    actguide = actguide_config(config)
    actor = config.actor_rollout_ref.actor
    rollout = config.actor_rollout_ref.rollout
    problems = []
    if actor.policy_loss.get("loss_mode") != LOSS_NAME:
        problems.append(f"actor_rollout_ref.actor.policy_loss.loss_mode must be {LOSS_NAME!r}")
    if actor.get("use_prefix_grouper", False):
        problems.append("actor_rollout_ref.actor.use_prefix_grouper must be false (guided rows break shared prefixes)")
    manager = rollout.get("agent", {}).get("agent_loop_manager_class") or ""
    v1 = bool(config.trainer.get("use_v1", True))
    if manager not in (MANAGER, V1_MANAGER if v1 else V0_MANAGER):
        problems.append(f"actor_rollout_ref.rollout.agent.agent_loop_manager_class must be {MANAGER}")
    n = rollout.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:  # a typo here would otherwise fail as a TypeError below
        problems.append(f"actor_rollout_ref.rollout.n must be a positive integer (rollouts per prompt), got {n!r}")
    elif actguide.mode.startswith("fallback_") and actguide.probe_m > n:
        problems.append(
            f"actguide.probe_m={actguide.probe_m} is larger than actor_rollout_ref.rollout.n={n}: a probe would sample "
            "more rollouts than the group it may become"
        )
    estimator = config.algorithm.get("adv_estimator")
    if estimator not in GROUP_ADVANTAGE_ESTIMATORS:
        problems.append(
            f"algorithm.adv_estimator={estimator!r}: ActGuide needs group-normalized advantages, "
            f"one of {list(GROUP_ADVANTAGE_ESTIMATORS)}"
        )
    if v1 and config.trainer.v1.trainer_mode != "sync":
        problems.append("trainer.v1.trainer_mode must be 'sync' (ActGuide's trainer extends the sync trainer)")
    refill = bool(config.trainer.get("v1", {}).get("sampler", {}).get("sync_refill_failed_groups", False))
    if v1 and actguide.on_full_failure == "drop" and not refill:
        problems.append(
            "actguide.on_full_failure=drop needs trainer.v1.sampler.sync_refill_failed_groups=true: a dropped group is "
            "replaced by a fresh prompt through verl's replay-buffer refill"
        )
    if not v1:
        problems += _classic_trainer_problems(config, actguide)
    bypass = bool(config.algorithm.get("rollout_correction", {}).get("bypass_mode", False))
    if (actguide.ratio_source == "rollout") != bypass:
        problems.append(
            f"actguide.ratio_source={actguide.ratio_source} needs algorithm.rollout_correction.bypass_mode={not bypass}"
        )
    if actguide.ratio_source == "rollout" and not rollout.get("calculate_log_probs", False):
        problems.append("actguide.ratio_source=rollout needs actor_rollout_ref.rollout.calculate_log_probs=true")
    problems += [
        f"{path}={mode!r}: router replay reuses the experts routed on the guided prompt, which the prompt swap "
        "changes; set it to 'disabled'"
        for path, mode in _router_replay_modes(config.actor_rollout_ref, "actor_rollout_ref")
        if mode != "disabled"
    ]
    if bool(config.get("distillation", {}).get("enabled", False)):
        problems.append(
            "distillation.enabled must be false: the teacher's log-probs are computed on the sampled (guided) prompt, "
            "which the prompt swap replaces"
        )
    if problems:
        raise ValueError("ActGuide-RL config: " + "; ".join(problems))
    return actguide


def _classic_trainer_problems(config: Any, actguide: ActGuideConfig) -> list[str]:
    """What the classic trainer path (``trainer.use_v1=false``, :mod:`.trainer_v0`) needs besides the common keys."""
    problems = []
    if config.trainer.get("critic_warmup", 0) != 0:
        problems.append(
            "trainer.critic_warmup must be 0 with trainer.use_v1=false (ActGuide's metrics are logged with the actor "
            "update, which verl skips during critic warm-up)"
        )
    if actguide.on_full_failure == "drop":
        problems.append(
            "actguide.on_full_failure=drop needs trainer.use_v1=true: the classic trainer joins each prompt with "
            "exactly n rollouts by position, so a group cannot be left out (use keep or unguided)"
        )
    if config.trainer.get("checkpoint_callback_class"):
        problems.append(
            "trainer.checkpoint_callback_class needs trainer.use_v1=true: verl 0.9.1's classic trainer never calls it"
        )
    return problems


def _router_replay_modes(section: Any, path: str) -> list[tuple[str, str]]:
    """Every ``router_replay.mode`` below ``section`` (megatron and veomni engines of actor, ref, ...), by key path."""
    if not isinstance(section, Mapping | DictConfig):
        return []
    found = []
    for key in section:
        value = section.get(key)
        if key == "router_replay" and isinstance(value, Mapping | DictConfig):
            found.append((f"{path}.router_replay.mode", str(value.get("mode", "disabled"))))
        elif isinstance(value, Mapping | DictConfig):
            found += _router_replay_modes(value, f"{path}.{key}")
    return found
