"""verl's agent loop, tools and reward in this process, with an in-process model: samples for offline analysis.

``actguide-analyze barrier`` and ``levels`` need many small, controlled rollouts of one task (at a chosen
guidance level, or continued from a given state) plus teacher-forced log-probs of a trajectory under two
prompts. They run the recipe's own pieces without Ray or a trainer: the ``actguide_tool_agent`` loop
(:class:`~actguide_plugin.verl_glue.agent_loop.ActGuideToolAgentLoop`), the tools of the recipe config, its
custom reward function, and as the LLM server our HF-``generate`` server (:class:`~actguide_plugin.cpu.hf_rollout.
HFRolloutServer`, also in ``scripted`` mode) in this process. Rows are read by verl's ``RLHFDataset``.

A state along a trajectory is continued token-in/token-out: the unguided prompt ids followed by the trajectory's
response ids up to the end of its j-th tool-calling turn (tool results included, as in training's splice), with
the matching messages so later tool results render the same way.

verl 0.9.1 APIs relied on: the ``ToolAgentLoop`` constructor keywords (``trainer_config``, ``server_manager``,
``tokenizer``, ``processor``, ``dataset_cls``, ``data_config``, ``hf_model_type``, ``tools``) and its
``AgentData`` (``prompt_ids``, ``response_mask``, ``messages``, ``assistant_turns``, ``user_turns``),
``verl.tools.tool_registry.load_all_tools``, ``verl.trainer.ppo.reward.get_custom_reward_fn`` (else
``verl.utils.reward_score.default_compute_score``; called as verl's
naive reward manager does: the response decoded without special tokens), ``HFModelConfig`` via
``omega_conf_to_dataclass``, ``verl.utils.dataset.rl_dataset.RLHFDataset``.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import DictConfig
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
from verl.tools.tool_registry import load_all_tools
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.reward_score import default_compute_score

from actguide_plugin.core.objective import sequence_shift
from actguide_plugin.cpu.hf_rollout import HFRolloutServer
from actguide_plugin.names import LEVEL_FIELD, UNGUIDED_PROMPT_IDS_FIELD
from actguide_plugin.verl_glue.agent_loop import ActGuideToolAgentLoop


@dataclass(frozen=True)
class Prefix:
    """A state to continue from: response ids/mask after the unguided prompt, and the matching messages."""

    response_ids: list[int]
    response_mask: list[int]
    messages: list[dict[str, Any]]
    assistant_turns: int
    user_turns: int


@dataclass
class Sample:
    """One finished rollout: the agent loop's output, its reward and the conversation it built."""

    output: Any  # AgentLoopOutput
    score: float
    reward_extra: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    unguided_prompt_messages: int = 0  # how many leading messages are the prompt

    @property
    def unguided_prompt_ids(self) -> list[int]:
        return list(self.output.extra_fields[UNGUIDED_PROMPT_IDS_FIELD])


class _ContinuationLoop(ActGuideToolAgentLoop):
    """The tool agent, started from a :class:`Prefix` after the unguided prompt instead of the prompt alone."""

    prefix: Prefix | None = None

    async def _handle_pending_state(self, agent_data, sampling_params: dict[str, Any]):
        state = await super()._handle_pending_state(agent_data, sampling_params)
        if self.prefix is not None:
            agent_data.prompt_ids = agent_data.prompt_ids + list(self.prefix.response_ids)
            agent_data.response_mask = list(self.prefix.response_mask)
            agent_data.messages = [dict(m) for m in self.prefix.messages]
            agent_data.assistant_turns = self.prefix.assistant_turns
            agent_data.user_turns = self.prefix.user_turns
        return state


def turn_starts(response_mask: Sequence[int]) -> list[int]:
    """Index where each assistant turn (a run of 1s in the mask) begins."""
    return [i for i, m in enumerate(response_mask) if m == 1 and (i == 0 or response_mask[i - 1] == 0)]


def prefix_after(sample: Sample, tool_turns: int) -> Prefix:
    """The state after the sample's first ``tool_turns`` tool-calling turns and their results."""
    output = sample.output
    starts = turn_starts(output.response_mask)
    end = starts[tool_turns] if tool_turns < len(starts) else len(output.response_ids)
    generated = sample.messages[sample.unguided_prompt_messages :]
    kept, seen = [], 0
    for message in generated:
        if message.get("role") == "assistant":
            if seen == tool_turns:
                break
            seen += 1
        kept.append(message)
    if seen < tool_turns:
        raise ValueError(f"the trajectory has {seen} tool-calling turns, asked for {tool_turns}")
    return Prefix(
        response_ids=list(output.response_ids[:end]),
        response_mask=list(output.response_mask[:end]),
        messages=kept,
        assistant_turns=tool_turns,
        user_turns=tool_turns,
    )


def tool_calling_turns(sample: Sample) -> int:
    """Assistant turns of the sample that called tools and got their results back."""
    generated = sample.messages[sample.unguided_prompt_messages :]
    turns = 0
    for index, message in enumerate(generated):
        followed_by_tool = index + 1 < len(generated) and generated[index + 1].get("role") == "tool"
        turns += message.get("role") == "assistant" and bool(message.get("tool_calls")) and followed_by_tool
    return turns


class OfflineAgent:
    """The recipe's agent loop, tools and reward over one in-process model (``hf``, or ``scripted`` answers)."""

    def __init__(
        self, config: DictConfig, *, scripted: bool = False, temperature: float = 1.0, device: str = "cpu"
    ) -> None:
        self.config = config
        rollout = config.actor_rollout_ref.rollout
        self.model_config = omega_conf_to_dataclass(config.actor_rollout_ref.model)
        self.tokenizer = self.model_config.tokenizer
        model = SimpleNamespace(path=self.model_config.local_path)
        self.server = HFRolloutServer(rollout, model, replica_rank=0, scripted=scripted, device=device)
        multi_turn = rollout.multi_turn
        self.tools = load_all_tools(multi_turn.tool_config_path, multi_turn.get("function_tool_path"))
        # no custom reward: verl's scorer by data_source, as a training run would use
        self.reward_fn = get_custom_reward_fn(config) or default_compute_score
        # no rollout log-probs: a continued state has none for its prefix
        self.sampling = {"temperature": temperature, "top_p": 1.0, "top_k": -1, "logprobs": False}

    def rows(self, data_files: Sequence[str]) -> list[dict[str, Any]]:
        """The dataset rows as verl's ``RLHFDataset`` hands them to the agent loop."""
        dataset = RLHFDataset(list(data_files), self.tokenizer, self.config.data, processor=None)
        return [dataset[i] for i in range(len(dataset))]

    def _loop(self, prefix: Prefix | None) -> _ContinuationLoop:
        loop = _ContinuationLoop(
            trainer_config=DictConfigWrap(self.config),
            server_manager=self.server,
            tokenizer=self.tokenizer,
            processor=None,
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(self.config.data),
            hf_model_type=getattr(self.model_config.hf_config, "model_type", None),
            tools=ToolListWrap(self.tools),
        )
        loop.prefix = prefix
        return loop

    async def sample(self, row: dict[str, Any], level: int, prefix: Prefix | None = None) -> Sample:
        """One rollout of ``row`` at guidance ``level``, or continued unguided from ``prefix``."""
        if prefix is not None and level:
            raise ValueError("a continuation runs unguided (level 0) from its prefix state")
        loop = self._loop(prefix)
        fields = {k: v for k, v in row.items() if k not in ("dummy_tensor",)}
        output = await loop.run(dict(self.sampling), **{LEVEL_FIELD: level}, **fields)
        score, extra = await self._score(output, row)
        return Sample(output, score, extra, list(loop._agent_data.messages), len(row["raw_prompt"]))

    async def _score(self, output: Any, row: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        solution = self.tokenizer.decode(output.response_ids, skip_special_tokens=True)
        result = self.reward_fn(
            data_source=row.get("data_source"),
            solution_str=solution,
            ground_truth=(row.get("reward_model") or {}).get("ground_truth"),
            extra_info=dict(row.get("extra_info") or {}),
        )
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, dict):
            return float(result["score"]), dict(result)
        return float(result), {}

    def response_logprobs(self, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> torch.Tensor:
        """Teacher-forced log π(y_t | prompt, y_<t) of every response token, shape [response_len]."""
        return torch.tensor(self.server.engine.score(list(prompt_ids), list(response_ids)))

    def turn_shifts(self, sample: Sample) -> tuple[float, list[float]]:
        """Δ of a guided sample and the mean per-token log-prob difference (guided − unguided) of each turn."""
        output = sample.output
        guided = self.response_logprobs(output.prompt_ids, output.response_ids)  # [response_len]
        unguided = self.response_logprobs(sample.unguided_prompt_ids, output.response_ids)
        mask = torch.tensor(output.response_mask, dtype=torch.float32)
        delta = float(sequence_shift(guided[None], unguided[None], mask[None])[0])
        per_turn = []
        starts = [*turn_starts(output.response_mask), len(output.response_mask)]
        for start, stop in itertools.pairwise(starts):
            turn_mask = torch.zeros_like(mask)
            turn_mask[start:stop] = mask[start:stop]
            per_turn.append(float(sequence_shift(guided[None], unguided[None], turn_mask[None])[0] / turn_mask.sum()))
        return delta, per_turn
