"""The barrier world's search, built from its yaml and called as verl's ToolAgentLoop calls it: links only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from verl.tools.tool_registry import initialize_tools_from_config

from actguide_plugin.barrier.world import UNREACHABLE_TEXT, build_world, reachable_names
from actguide_plugin.core.guidance import DEFAULT_TEMPLATE, guided_messages
from data_preprocess.barrier import build_barrier

YAML = Path(__file__).resolve().parents[2] / "recipe" / "actguide" / "config" / "tools" / "search_barrier.yaml"


@pytest.fixture(scope="module")
def world_and_tool(tmp_path_factory):
    data = tmp_path_factory.mktemp("world")
    build_barrier(data, seed=0, train=8, val=4)
    mp = pytest.MonkeyPatch()
    mp.setenv("ACTGUIDE_CORPUS", str(data / "corpus.jsonl"))
    (tool,) = initialize_tools_from_config(str(YAML))
    yield build_world(0, 8, 4), tool
    mp.undo()


async def search(tool, name: str, messages: list[dict]) -> str:
    """create -> execute -> release with the trajectory's messages, as ToolAgentLoop._call_tool does."""
    instance_id, _ = await tool.create(create_kwargs={})
    try:
        response, _, _ = await tool.execute(
            instance_id, {"query": [name]}, agent_data=SimpleNamespace(messages=messages)
        )
    finally:
        await tool.release(instance_id)
    return response.text


async def test_only_names_from_the_question_or_a_read_page_are_answered(world_and_tool):
    world, tool = world_and_tool
    task = next(t for t in world.train if len(t.chain) == 3)
    first, second, last = task.chain
    messages = guided_messages(
        [{"role": "system", "content": "sys"}, {"role": "user", "content": task.question}], list(task.actions), 3
    )  # the full plan names every hop, which does not make them reachable
    assert await search(tool, last, messages) == UNREACHABLE_TEXT  # the shortcut: the plan's last line
    assert await search(tool, second, messages) == UNREACHABLE_TEXT
    page = await search(tool, first, messages)
    assert f"points to {second}" in page
    messages.append({"role": "tool", "content": page})
    reversed_name = " ".join(reversed(second.split()))
    assert f"points to {last}" in await search(tool, reversed_name, messages)  # BM25 order: the same name
    assert await search(tool, f"{second} x", messages) == UNREACHABLE_TEXT  # not a name: no near-miss page


def test_reachable_names_skip_the_plan_and_the_assistants_own_text():
    header = DEFAULT_TEMPLATE.header.strip()
    messages = [
        {"role": "user", "content": f"What is the code of bim hep?\n\n{header}\n1. web_search: rux lom"},
        {"role": "assistant", "content": "let me search dap ris"},
        {"role": "tool", "content": "bim hep points to kev lin."},
    ]
    assert reachable_names(messages, header) == {"bim hep", "kev lin"}
