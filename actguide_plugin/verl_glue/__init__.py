"""verl 0.9.1 glue: the recipe's code that runs inside verl's trainer and workers.

Only three packages import verl: this one, :mod:`actguide_plugin.cpu` (CPU mode, the ``hf`` rollout backend) and
:mod:`actguide_plugin.commands` (the back ends of ``actguide-eval`` / ``-analyze`` / ``-export``).

Each module's docstring names the verl APIs it relies on (the upgrade checklist):

* :mod:`.plugin` — the ``verl.plugins`` entry point (registrations at import time);
* :mod:`.config` — the ``actguide:`` config section and the checks of verl settings the recipe needs;
* :mod:`.loss` — the ``actguide`` policy loss and the ``ppo_loss`` replacement that sees the guided flag;
* :mod:`.agent_loop` — the ``actguide_tool_agent`` agent loop (renders G_k, keeps the unguided prompt ids);
* :mod:`.group` — one prompt's level search inside an agent-loop worker (shared by the trainer paths);
* :mod:`.rollout` — the rollout manager the config names, for either trainer (``trainer.use_v1``);
* :mod:`.rollout_v1` / :mod:`.trainer_v1` — the adapters to verl's V1 (TransferQueue) trainer, :mod:`.rollout_v0` /
  :mod:`.trainer_v0` to the classic ``RayPPOTrainer`` (``DataProto``), :mod:`.rollout_common` /
  :mod:`.trainer_common` what both do alike;
* :mod:`.prompt_swap` — guided rows back to the unguided view; :mod:`.metrics` — ``actguide/*`` step metrics;
* :mod:`.state` — the Ray actor shared by rollout workers and trainer (warm-start cache, group summaries);
* :mod:`.validation` — validation at a guidance level, trajectory records, ``val-actguide/*`` metrics;
* :mod:`.rows` — what the recipe reads from a dataset row; :mod:`.reward_check` — the reward said and tried before
  a run; :mod:`.empty_step` — groups with no trajectory (verl's refill, bounded); :mod:`.dry_run` —
  ``actguide-train --dry-run``.
"""
