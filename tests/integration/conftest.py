"""Shared pieces for integration tests with real verl classes: config, Qwen tokenizer, tools, scripted LLM."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import ClassVar

import pytest
import verl  # noqa: F401  (loads our plugin: the actguide_path resolver, registrations)
from hydra import compose, initialize_config_dir
from verl.workers.rollout.replica import TokenOutput

from actguide_plugin.core.actions import REFERENCE_ACTIONS_KEY, dumps_actions
from actguide_plugin.cpu.scripted_policy import SCRIPTED_PLAN, scripted_response, task_marker
from actguide_plugin.cpu.tiny_model import load_tokenizer
from actguide_plugin.names import AGENT_NAME

RECIPE_CONFIG = Path(__file__).resolve().parents[2] / "recipe" / "actguide" / "config"
CORPUS = [
    {
        "id": "1",
        "title": "Ada Lovelace",
        "url": "https://en.wikipedia.org/wiki/Ada_Lovelace",
        "text": "Ada Lovelace wrote the first program.",
    },
    {
        "id": "2",
        "title": "Charles Babbage",
        "url": "https://en.wikipedia.org/wiki/Charles_Babbage",
        "text": "Babbage designed the Analytical Engine.",
    },
]


def _recipe_config(*overrides: str):
    with initialize_config_dir(config_dir=str(RECIPE_CONFIG), version_base=None):
        return compose(
            config_name="actguide_trainer",
            overrides=[
                "+actguide_reward=answer",  # the test rows' data source is ours, not one verl's scorer knows
                "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
                "actor_rollout_ref.rollout.prompt_length=2048",
                "actor_rollout_ref.rollout.response_length=1024",
                "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=4",
                *overrides,
            ],
        )


@pytest.fixture(scope="session")
def qwen_tokenizer():
    return load_tokenizer("qwen")


@pytest.fixture()
def corpus_env(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(doc) + "\n" for doc in CORPUS), encoding="utf-8")
    monkeypatch.setenv("ACTGUIDE_CORPUS", str(corpus))
    return corpus


class ScriptedServer:
    """Stands in for the LLM server (outside the unit): answers by the scripted policy, whose answer is correct
    only at a sufficient guidance level. Records every prompt it was asked to continue."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.prompts: list[list[int]] = []
        self.responses: list[list[int]] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        self.prompts.append(list(prompt_ids))
        text = scripted_response(self.tokenizer.decode(prompt_ids))
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        self.responses.append(ids)
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids))


@pytest.fixture(scope="session")
def recipe_config():
    """Compose the recipe config (real hydra + verl schema) with test-size overrides."""
    return _recipe_config


@pytest.fixture(scope="session")
def scripted_server():
    return ScriptedServer


class ScriptedTasks:
    """Scripted tasks for the rollout workers: ``levels`` (task name → minimal level at which the scripted answer
    is right; L = 3, 9: never) and ``prompt(name, min_level)``, a dataset row whose plan is ``SCRIPTED_PLAN``."""

    levels: ClassVar[dict[str, int]] = {"easy": 0, "barrier": 2, "impossible": 9}

    @staticmethod
    def prompt(name: str, min_level: int) -> dict:
        question = f"Who wrote the first program? {task_marker(min_level, 'Ada Lovelace')}"
        return {
            "uid": uuid.uuid4().hex,
            "index": min_level,
            "global_steps": 1,
            "agent_name": AGENT_NAME,
            "data_source": "unit",
            "raw_prompt": [
                {"role": "system", "content": "Use the tools, then answer in <answer></answer>."},
                {"role": "user", "content": question},
            ],
            "reward_model": {"style": "rule", "ground_truth": json.dumps(["Ada Lovelace"])},
            "extra_info": {"task_id": name, "index": min_level, REFERENCE_ACTIONS_KEY: dumps_actions(SCRIPTED_PLAN)},
            "tools_kwargs": {},
        }


@pytest.fixture(scope="session")
def scripted_tasks() -> ScriptedTasks:
    return ScriptedTasks()


os.environ.setdefault("RAY_AUTH_MODE", "disabled")
