"""A verl user's own search tool, as in a Search-R1 setup: ``search(query_list)`` against a retrieval server.

Deliberately not ours: a plain ``BaseTool`` speaking the Search-R1 ``/retrieve`` protocol (what verl's own
``verl.tools.search_tool.SearchTool`` speaks), used by the drop-in test to show that the recipe runs a user's
tools unchanged. Imported by the Ray workers by module name (the test puts this folder on ``PYTHONPATH``).
"""

from __future__ import annotations

from typing import Any

import httpx
from verl.tools.base_tool import BaseTool
from verl.tools.schemas import ToolResponse


class UserSearchTool(BaseTool):
    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict]:
        queries = parameters.get("query_list") or []
        async with httpx.AsyncClient(timeout=30) as client:
            reply = await client.post(
                self.config["retrieval_service_url"], json={"queries": queries, "topk": 1, "return_scores": False}
            )
        reply.raise_for_status()
        pages = [doc["contents"] for hits in reply.json()["result"] for doc in hits]
        return ToolResponse(text="\n".join(pages) or "no results"), 0.0, {}
