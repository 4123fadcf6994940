"""Hydra entry point of the ActGuide-RL recipe: ``python -m recipe.actguide.main_actguide`` (or ``actguide-train``).

Same flow as verl's ``verl.trainer.main_ppo`` (device detection, config validation, Ray, TaskRunner), with
ActGuide's TaskRunner and a check of the settings the recipe needs.
"""

import hydra

from actguide_plugin.trainer import ActGuideTaskRunner, check_verl_config


@hydra.main(config_path="config", config_name="actguide_trainer", version_base=None)
def main(config) -> None:
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    check_verl_config(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=ActGuideTaskRunner)


if __name__ == "__main__":
    main()
