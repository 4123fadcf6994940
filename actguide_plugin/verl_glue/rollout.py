"""The rollout manager the recipe config names (``actor_rollout_ref.rollout.agent.agent_loop_manager_class``), for
either of verl's trainers: ``trainer.use_v1`` picks :mod:`.rollout_v1` (TransferQueue) or :mod:`.rollout_v0`
(classic ``RayPPOTrainer``), imported only when chosen (the classic path never imports TransferQueue).

verl 0.9.1 API relied on: both trainers load the class by name and call ``create(config=..., llm_client=...,
teacher_client=..., reward_loop_worker_handles=...)`` (``main_ppo.py`` for V1, ``ray_trainer.py`` for the classic
trainer), nothing else of it.
"""

from __future__ import annotations

from typing import Any


def uses_v1(config: Any) -> bool:
    """Whether the run is on verl's V1 trainer (``trainer.use_v1``, verl's default true)."""
    return bool(config.trainer.get("use_v1", True))


class ActGuideAgentLoopManager:
    """Builds the ActGuide agent-loop manager of the run's trainer path."""

    @classmethod
    def create(cls, config: Any, **kwargs: Any) -> Any:
        if uses_v1(config):
            from actguide_plugin.verl_glue.rollout_v1 import ActGuideAgentLoopManager as manager
        else:
            from actguide_plugin.verl_glue.rollout_v0 import ActGuideAgentLoopManagerV0 as manager
        return manager.create(config=config, **kwargs)
