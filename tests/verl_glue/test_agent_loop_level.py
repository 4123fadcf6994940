"""The agent loop reads its guidance level under the key the rollout workers write it by, ``LEVEL_FIELD``."""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace

from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop

from actguide_plugin.core.actions import REFERENCE_ACTIONS_KEY, Action, dumps_actions
from actguide_plugin.core.guidance import guided_messages
from actguide_plugin.names import LEVEL_FIELD
from actguide_plugin.verl_glue.agent_loop import ActGuideToolAgentLoop

ACTIONS = [Action("web_search", {"query": ["q1"]}), Action("web_visit", {"url": ["https://a.example/"]})]
MESSAGES = [{"role": "user", "content": "Who?"}]


def test_the_level_field_is_what_the_loop_samples_at_and_reports(monkeypatch):
    seen: dict = {}

    async def verl_run(self, sampling_params, **kwargs):  # stands in for ToolAgentLoop.run: what verl is handed
        seen.update(kwargs)
        self._agent_data = SimpleNamespace(messages=list(kwargs["raw_prompt"]), assistant_turns=0)
        self._unguided_prompt_ids = [1, 2]
        return SimpleNamespace(extra_fields={}, prompt_ids=[1, 2, 3])

    monkeypatch.setattr(ToolAgentLoop, "run", verl_run)
    loop = object.__new__(ActGuideToolAgentLoop)  # no server or tools: only run's own bookkeeping is exercised
    fields = {"raw_prompt": MESSAGES, "extra_info": {REFERENCE_ACTIONS_KEY: dumps_actions(ACTIONS)}}

    output = asyncio.run(loop.run({}, **fields, **{LEVEL_FIELD: 2}))

    assert seen["raw_prompt"] == guided_messages(MESSAGES, ACTIONS, 2)
    assert LEVEL_FIELD not in seen  # consumed here, not passed on to verl as a dataset field
    assert output.extra_fields[LEVEL_FIELD] == 2


def test_run_takes_no_level_parameter_of_its_own():
    """A named parameter would be a second spelling of the key that the rollout workers pass."""
    parameters = inspect.signature(ActGuideToolAgentLoop.run).parameters
    assert [p.kind for p in parameters.values()][-1] is inspect.Parameter.VAR_KEYWORD
    assert list(parameters)[:-1] == ["self", "sampling_params"]
