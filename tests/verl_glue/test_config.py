"""The ``actguide:`` section: built through verl's ``omega_conf_to_dataclass``, checked by key before Ray starts."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from actguide_plugin.core.objective import ObjectiveConfig
from actguide_plugin.core.search import SearchConfig
from actguide_plugin.verl_glue.config import (
    MANAGER,
    V0_MANAGER,
    V1_MANAGER,
    ActGuideConfig,
    actguide_config,
    check_verl_config,
)

REPO = Path(__file__).resolve().parents[2]


def config(*overrides, name="actguide_trainer"):
    import verl  # noqa: F401  (registers the actguide_path resolver the recipe yaml uses)

    with initialize_config_module(config_module="recipe.actguide.config", version_base=None):
        return compose(config_name=name, overrides=list(overrides))


def test_section_is_built_from_its_target_with_the_yaml_values():
    built = actguide_config(config("actguide.probe_m=3", "actguide.ladder=[0.5,1.0]"))
    assert type(built) is ActGuideConfig
    assert built.probe_m == 3 and built.ladder == [0.5, 1.0]


def test_yaml_mirrors_the_dataclass_defaults_one_to_one():
    section = OmegaConf.to_container(config().actguide)
    assert section.pop("_target_") == "actguide_plugin.verl_glue.config.ActGuideConfig"
    defaults = {f.name: getattr(ActGuideConfig(), f.name) for f in dataclasses.fields(ActGuideConfig)}
    defaults.pop("_target_")
    assert section == defaults


@pytest.mark.parametrize("core_type", [SearchConfig, ObjectiveConfig])
def test_section_defaults_are_the_core_defaults(core_type):
    """A knob's default is written once, in the pure core; the section (and the yaml mirror) only repeat it."""
    shared = {f.name for f in dataclasses.fields(core_type)} & {f.name for f in dataclasses.fields(ActGuideConfig)}
    core = core_type()
    section = (
        ActGuideConfig().search_config(n=core.n) if core_type is SearchConfig else ActGuideConfig().objective_config()
    )
    assert {name: getattr(section, name) for name in shared} == {name: getattr(core, name) for name in shared}


@pytest.mark.parametrize("core_type", [SearchConfig, ObjectiveConfig])
def test_core_configs_take_every_same_named_field(core_type):
    """No hand-written mapping: a field of the section with the core config's name reaches the core config."""
    shared = {f.name for f in dataclasses.fields(core_type)} & {f.name for f in dataclasses.fields(ActGuideConfig)}
    assert shared, core_type
    values = {"probe_m": 3, "tau": 2, "success_threshold": 0.5, "fixed_k": 2, "fixed_ratio": 0.25, "ladder": [1.0],
              "on_full_failure": "drop", "full_level_check": "probe", "probe_only_after": 5, "warm_start": False,
                  "reuse_probes": "none",
              "mode": "fallback_ladder",
              "guided_clip": "cap", "guided_ratio_cap": 2.0, "shaping_gamma": 0.5}  # fmt: skip
    section = ActGuideConfig(**{name: values[name] for name in shared})
    core = section.search_config(n=8) if core_type is SearchConfig else section.objective_config()
    for name in shared:
        expected = tuple(values[name]) if name == "ladder" else values[name]
        assert getattr(core, name) == expected, name


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("actguide.probe_m=2.5", "actguide.probe_m"),
        ("actguide.success_threshold=nan", "actguide.success_threshold"),
        ("actguide.warm_start=maybe", "actguide.warm_start"),
        ("actguide.tau=3", "actguide.tau"),  # > probe_m
        ("actguide.ladder=[0.5,2.0]", "actguide.ladder"),
        ("actguide.cache_file=a/b.json", "actguide.cache_file"),
        ("actguide.cache_file=..", "actguide.cache_file"),
        ("actguide=null", "actguide: section is null"),
        ("actguide.mode=sometimes", "actguide.mode"),
        ("+actguide.probes=3", "unknown key"),
        ("actguide.val_level=-1", "actguide.val_level"),
        ("actguide.val_level_ratio=1.5", "actguide.val_level_ratio"),
        ("actguide.ratio_context=sampled", "actguide.ratio_context"),
        ("actguide.ratio_context=1", "actguide.ratio_context"),
    ],
)
def test_bad_values_are_refused_naming_the_key(override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        actguide_config(config(override))


def test_validation_guidance_level_is_off_by_default_and_clamped_or_from_a_ratio():
    assert actguide_config(config()).validation_level(5) == 0
    assert actguide_config(config("actguide.val_level=3")).validation_level(2) == 2  # clamped to L
    assert actguide_config(config("actguide.val_level_ratio=0.5")).validation_level(5) == 3  # ceil(0.5 * 5)
    with pytest.raises(ValueError, match=r"at most one of actguide\.val_level and actguide\.val_level_ratio"):
        actguide_config(config("actguide.val_level=1", "actguide.val_level_ratio=0.5"))


def test_recipe_configs_pass_the_checks():
    check_verl_config(config())
    check_verl_config(config(name="actguide_cpu"))


def test_both_trainer_paths_are_accepted_with_the_manager_that_serves_them():
    """``trainer.use_v1`` stays the user's: the recipe's manager serves both; a path-specific one only its own."""
    for use_v1 in ("true", "false"):
        check_verl_config(config(f"trainer.use_v1={use_v1}"))
    manager = "actor_rollout_ref.rollout.agent.agent_loop_manager_class="
    check_verl_config(config(manager + V1_MANAGER))
    check_verl_config(config("trainer.use_v1=false", manager + V0_MANAGER))
    with pytest.raises(ValueError, match=rf"agent_loop_manager_class must be {MANAGER}"):
        check_verl_config(config("trainer.use_v1=false", manager + V1_MANAGER))
    with pytest.raises(ValueError, match=rf"agent_loop_manager_class must be {MANAGER}"):
        check_verl_config(config(manager + V0_MANAGER))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.critic_warmup=1", r"trainer\.critic_warmup must be 0 with trainer\.use_v1=false"),
        ("actguide.on_full_failure=drop", r"on_full_failure=drop needs trainer\.use_v1=true"),
        ("trainer.checkpoint_callback_class=my.Upload", r"checkpoint_callback_class needs trainer\.use_v1=true"),
    ],
)
def test_what_the_classic_trainer_needs_is_checked_by_key(override, message):
    check_verl_config(config(override))  # fine on V1
    with pytest.raises(ValueError, match=message):
        check_verl_config(config("trainer.use_v1=false", override))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("actor_rollout_ref.actor.policy_loss.loss_mode=vanilla", "loss_mode"),
        ("actor_rollout_ref.actor.use_prefix_grouper=true", "use_prefix_grouper"),
        ("actor_rollout_ref.rollout.agent.agent_loop_manager_class=null", "agent_loop_manager_class"),
        ("actguide.ratio_source=rollout", "bypass_mode"),
        ("algorithm.adv_estimator=gae", "adv_estimator"),
        ("trainer.v1.trainer_mode=async", r"trainer\.v1\.trainer_mode must be 'sync'"),
        ("actguide.probe_m=0", r"actguide\.probe_m"),
        ("actor_rollout_ref.rollout.n=1", r"actguide\.probe_m=2 is larger than actor_rollout_ref\.rollout\.n=1"),
        ("actor_rollout_ref.rollout.n=abc", r"actor_rollout_ref\.rollout\.n must be a positive integer.*'abc'"),
        ("actor_rollout_ref.rollout.n=0", r"actor_rollout_ref\.rollout\.n must be a positive integer"),
        ("distillation.enabled=true", r"distillation\.enabled"),
        (
            "+actor_rollout_ref.actor.megatron.router_replay.mode=R3",
            r"actor_rollout_ref\.actor\.megatron\.router_replay\.mode='R3'",
        ),
    ],
)
def test_verl_settings_the_recipe_needs_are_checked_by_key(override, message):
    with pytest.raises(ValueError, match=message):
        check_verl_config(config(override))


def test_dropping_groups_on_v1_needs_verls_refill():
    """A dropped group is replaced through verl's refill of failed groups, which the recipe's layer turns on."""
    assert config().trainer.v1.sampler.sync_refill_failed_groups is True
    check_verl_config(config("actguide.on_full_failure=drop"))
    with pytest.raises(ValueError, match=r"on_full_failure=drop needs trainer\.v1\.sampler\.sync_refill_failed_groups"):
        check_verl_config(config("actguide.on_full_failure=drop", "trainer.v1.sampler.sync_refill_failed_groups=false"))


def test_printing_the_config_reports_an_invalid_section_before_anything_runs():
    result = subprocess.run(
        [sys.executable, "-m", "recipe.actguide.main_actguide", "--cfg", "job", "actguide.probe_m=2.5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "actguide.probe_m" in result.stderr and "Traceback" not in result.stderr


def test_printing_the_cpu_config_by_name():
    result = subprocess.run(
        [sys.executable, "-m", "recipe.actguide.main_actguide", "--config-name", "actguide_cpu", "--cfg", "job"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = yaml.safe_load(result.stdout)
    assert printed["trainer"]["device"] == "cpu" and printed["actguide"]["mode"] == "fallback_adaptive"
