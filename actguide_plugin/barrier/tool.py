"""The barrier world's ``web_search``: the recipe's local search, answering only names the trajectory has reached.

A page is reachable through a link, as on the web (:func:`actguide_plugin.barrier.world.reachable_names`): a
query must name an entity from the question or from a page this trajectory's earlier searches returned; plan
lines do not count. Any other query gets :data:`~actguide_plugin.barrier.world.UNREACHABLE_TEXT` instead of the
near-miss page BM25 would find, so a guided rollout succeeds only by following every hop of the chain.

verl 0.9.1 API relied on: ``ToolAgentLoop._call_tool`` creates a tool instance per call and passes the
trajectory's ``AgentData`` to ``execute`` as ``agent_data`` (its ``messages``: system, user — the guided one when
the rollout is guided —, assistant and ``tool`` messages so far). The rule needs no per-trajectory state of its own.
"""

from __future__ import annotations

from typing import Any

from verl.tools.schemas import ToolResponse

from actguide_plugin.barrier.world import UNREACHABLE_TEXT, canonical_name, reachable_names
from actguide_plugin.core.guidance import DEFAULT_TEMPLATE
from actguide_plugin.tools.search_tools import WebSearchTool

_PLAN_HEADER = DEFAULT_TEMPLATE.header.strip()


class LinkedSearchTool(WebSearchTool):
    """``web_search`` over the world's corpus that refuses names the trajectory has not reached."""

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict]:
        agent_data = kwargs.get("agent_data")
        messages = getattr(agent_data, "messages", None)
        if messages is None:
            return ToolResponse(text="Error: this search needs the conversation (verl's agent_data)"), 0.0, {}
        queries = parameters.get("query")
        queries = [queries] if isinstance(queries, str) else queries
        if isinstance(queries, list) and queries:
            seen = reachable_names(messages, _PLAN_HEADER)
            if any(not isinstance(q, str) or canonical_name(q) not in seen for q in queries):
                return ToolResponse(text=UNREACHABLE_TEXT), 0.0, {}
        return await super().execute(instance_id, parameters, **kwargs)
