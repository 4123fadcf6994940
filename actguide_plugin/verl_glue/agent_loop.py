"""The ``actguide_tool_agent`` agent loop: verl's tool agent that can run at a guidance level.

verl 0.9.1 APIs relied on: ``verl.experimental.agent_loop.tool_agent_loop.ToolAgentLoop`` (hermes tool
calls, ``run(sampling_params, **dataset_fields)``, ``_handle_pending_state`` building the initial prompt
ids with ``ct_build_initial_tokens(messages, tools=schemas)``, ``_handle_generating_state`` and
``_handle_processing_tools_state`` returning ``AgentState.TERMINATED`` when the loop ends, ``AgentData``'s
``messages`` (assistant messages with ``tool_calls`` appended only for a turn that was parsed),
``response_mask`` and ``assistant_turns``) and the agent-loop registry ``@register``.

At level k the user message carries the plan G_k (:func:`actguide_plugin.core.guidance.guided_messages`),
rendered from ``extra_info.reference_actions``. Besides the guided prompt ids it samples with, the loop
keeps the *unguided* prompt ids, built by the same builder from the original messages with the same tool
schemas, so the trainer can splice the unchanged response ids after them: the response is never
re-rendered from text.

For evaluation it also reports why it stopped (``stop``: a turn without tool calls; ``turn_limit``;
``length_limit``: the response budget ran out, after a generation or a tool result), the tool calls it
executed and its number of assistant turns.
"""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, register
from verl.experimental.agent_loop.tool_agent_loop import AgentState, ToolAgentLoop

from actguide_plugin.core.actions import Action
from actguide_plugin.core.guidance import guided_messages
from actguide_plugin.names import (
    AGENT_NAME,
    ASSISTANT_TURNS_FIELD,
    LEVEL_FIELD,
    NUM_ACTIONS_FIELD,
    STOP_REASON_FIELD,
    TOOL_CALLS_FIELD,
    UNGUIDED_PROMPT_IDS_FIELD,
)
from actguide_plugin.verl_glue.rows import actions_of


@register(AGENT_NAME)
class ActGuideToolAgentLoop(ToolAgentLoop):
    """``ToolAgentLoop`` whose prompt is G_k.

    The level k arrives among the dataset fields, under the key :data:`~actguide_plugin.names.LEVEL_FIELD` (default
    0): the rollout workers set it by that name and this loop reads it by that name, never by a parameter name of
    its own that could drift from the key.
    """

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        level = int(kwargs.pop(LEVEL_FIELD, 0))
        actions = actions_of(kwargs)  # a BadRowError names the row
        self._unguided_messages = list(kwargs["raw_prompt"])
        self._guided = level > 0
        self._stop_reason = "stop"
        kwargs["raw_prompt"] = guided_messages(self._unguided_messages, actions, level)
        output = await super().run(sampling_params, **kwargs)
        output.extra_fields.update(
            {
                LEVEL_FIELD: level,
                NUM_ACTIONS_FIELD: len(actions),
                UNGUIDED_PROMPT_IDS_FIELD: self._unguided_prompt_ids if self._guided else list(output.prompt_ids),
                STOP_REASON_FIELD: self._stop_reason,
                TOOL_CALLS_FIELD: executed_tool_calls(self._agent_data.messages[len(self._unguided_messages) :]),
                ASSISTANT_TURNS_FIELD: self._agent_data.assistant_turns,
            }
        )
        return output

    def selected_tool_schemas(self, tool_selection: list[str] | None) -> list[dict[str, Any]]:
        """The schemas ``run`` renders for a row: verl's per-sample ``extra_info.tool_selection`` filter of the tools
        (``ToolAgentLoop.run``: the selected tools that exist, or all of them without a selection)."""
        if not tool_selection or not self.tools:
            return self.tool_schemas
        selected = [self.tools[name] for name in tool_selection if name in self.tools]
        return [tool.tool_schema.model_dump(exclude_unset=True, exclude_none=True) for tool in selected]

    async def max_fitting_level(
        self, messages: list[dict[str, Any]], actions: list[Action], tool_selection: list[str] | None = None
    ) -> int:
        """The highest level k ≤ L whose guided prompt fits ``rollout.prompt_length``, rendered as ``run`` renders it
        (with the row's own tools, ``tool_selection``).

        verl left-truncates a prompt that does not fit (dropping the system prompt and tool schemas), so levels
        above this one must never be sampled. The plan only grows with k, so a binary search over renders.
        """
        schemas = self.selected_tool_schemas(tool_selection)

        async def fits(level: int) -> bool:
            rendered = guided_messages(messages, actions, level)
            build = self.continuous_token_builder.build_initial_tokens
            ids = await self.loop.run_in_executor(None, lambda: build(rendered, tools=schemas))
            return len(ids) <= self.prompt_length

        if await fits(len(actions)):
            return len(actions)
        lo, hi = 0, len(actions)  # level 0 is the dataset's prompt (verl's filter_overlong_prompts checks it)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if await fits(mid) else (lo, mid)
        return lo

    async def _handle_pending_state(self, agent_data, sampling_params: dict[str, Any]):
        self._agent_data = agent_data
        state = await super()._handle_pending_state(agent_data, sampling_params)
        if self._guided:
            # same builder and the same (per-sample selected) tool schemas as the guided prompt above
            schemas = getattr(agent_data, "_active_tool_schemas", self.tool_schemas)
            self._unguided_prompt_ids = await self.ct_build_initial_tokens(self._unguided_messages, tools=schemas)
        return state

    async def _handle_generating_state(self, agent_data, sampling_params: dict[str, Any], **kwargs):
        messages_before = len(agent_data.messages)
        state = await super()._handle_generating_state(agent_data, sampling_params, **kwargs)
        if state == AgentState.TERMINATED and len(agent_data.messages) == messages_before:
            # ended before the turn was parsed: a limit, not the model's choice
            over_budget = len(agent_data.response_mask) >= self.response_length
            self._stop_reason = "length_limit" if over_budget else "turn_limit"
        return state

    async def _handle_processing_tools_state(self, agent_data):
        state = await super()._handle_processing_tools_state(agent_data)
        if state == AgentState.TERMINATED:  # the tool results did not fit in the response budget
            self._stop_reason = "length_limit"
        return state


def executed_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"name", "arguments"}]`` of every tool call in the (generated) assistant messages, in order."""
    calls = []
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or []:
            function = call.get("function", call)
            calls.append({"name": function.get("name"), "arguments": function.get("arguments")})
    return calls
