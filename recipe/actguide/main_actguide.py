"""Hydra entry point of the ActGuide-RL recipe: ``python -m recipe.actguide.main_actguide`` (or ``actguide-train``).

Same flow as verl's ``verl.trainer.main_ppo`` (device detection, config validation, Ray, TaskRunner), with
ActGuide's TaskRunner, the checks of the settings the recipe needs (the ``actguide:`` section included) and of the
training rows (agent loop, reference actions) before Ray starts, and CPU mode for ``--config-name actguide_cpu``
(``trainer.device=cpu``).
"""

import sys

import hydra

from actguide_plugin.verl_glue.config import actguide_config, check_verl_config
from actguide_plugin.verl_glue.rows import check_train_files
from actguide_plugin.verl_glue.trainer_v1 import ActGuideTaskRunner

CONFIG_NAME = "actguide_trainer"


class PreflightError(ValueError):
    """A setting or the training data cannot work; the message names what to change."""


@hydra.main(config_path="config", config_name=CONFIG_NAME, version_base=None)
def run(config) -> None:
    try:
        launch(config)
    except PreflightError as err:  # one line naming what to change, no traceback
        sys.exit(f"error: {err}")


def launch(config) -> None:
    """Run a composed recipe config (training, or validation only with ``trainer.val_only=true``)."""
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    if config.trainer.device == "cpu":
        from actguide_plugin.cpu import activate

        activate()  # the driver; Ray workers activate through the runtime_env of actguide_cpu_settings.yaml
    auto_set_device(config)
    try:
        actguide = check_verl_config(config)
        if actguide.mode != "off" and not config.trainer.get("val_only", False):
            check_train_files(config.data.train_files)
    except ValueError as err:
        raise PreflightError(str(err)) from err
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=ActGuideTaskRunner)


def compose_config(config_name: str = CONFIG_NAME, overrides: list[str] | None = None):
    """The recipe config as ``actguide-train`` would compose it, without running anything."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="recipe.actguide.config", version_base=None):
        return compose(config_name=config_name, overrides=list(overrides or []))


def _check_printed_config(argv: list[str]) -> None:
    """``--cfg job`` prints the config without running ``run``: validate the ``actguide:`` section first."""
    config_name, overrides, skip = CONFIG_NAME, [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg in ("--config-name", "-cn"):
            config_name, skip = argv[i + 1], True
        elif arg.startswith("--config-name="):
            config_name = arg.split("=", 1)[1]
        elif arg in ("--cfg", "-c", "--package", "-p"):
            skip = True
        elif not arg.startswith(("-", "hydra.", "+hydra.")):
            overrides.append(arg)
    config = compose_config(config_name, overrides)
    try:
        actguide_config(config)
    except ValueError as err:
        sys.exit(f"error: {err}")


def main() -> None:
    if any(arg in ("--cfg", "-c") or arg.startswith("--cfg=") for arg in sys.argv[1:]):
        _check_printed_config(sys.argv[1:])
    run()


if __name__ == "__main__":
    main()
