"""``actguide_tool_agent`` with verl's real ToolAgentLoop machinery, Qwen tokenizer, local tools and reward."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap, _agent_loop_registry
from verl.tools.tool_registry import load_all_tools
from verl.utils.dataset.rl_dataset import RLHFDataset

from actguide_plugin.core.actions import dumps_actions
from actguide_plugin.core.guidance import guided_messages, level_in_text
from actguide_plugin.cpu.scripted_policy import SCRIPTED_PLAN, task_marker
from actguide_plugin.names import (
    AGENT_NAME,
    ASSISTANT_TURNS_FIELD,
    LEVEL_FIELD,
    STOP_REASON_FIELD,
    TOOL_CALLS_FIELD,
    UNGUIDED_PROMPT_IDS_FIELD,
)
from actguide_plugin.reward import compute_score
from actguide_plugin.verl_glue.agent_loop import ActGuideToolAgentLoop
from actguide_plugin.verl_glue.validation import trajectory_record

pytestmark = pytest.mark.integration

ACTIONS = list(SCRIPTED_PLAN)


def sample(min_level: int) -> dict:
    question = f"Who wrote the first program? {task_marker(min_level, 'Ada Lovelace')}"
    return {
        "raw_prompt": [
            {"role": "system", "content": "Use the tools, then answer in <answer></answer>."},
            {"role": "user", "content": question},
        ],
        "extra_info": {"index": 7, "reference_actions": dumps_actions(ACTIONS)},
        "tools_kwargs": {},
    }


@pytest.fixture()
def make_loop(qwen_tokenizer, corpus_env, recipe_config, scripted_server):
    def make():
        return _make_loop(qwen_tokenizer, recipe_config(), scripted_server)

    return make


def _make_loop(tokenizer, config, scripted_server):
    tools = load_all_tools(config.actor_rollout_ref.rollout.multi_turn.tool_config_path, None)
    server = scripted_server(tokenizer)
    loop = ActGuideToolAgentLoop(
        trainer_config=DictConfigWrap(config),
        server_manager=server,
        tokenizer=tokenizer,
        processor=None,
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        hf_model_type="qwen3",
        tools=ToolListWrap(tools),
    )
    return loop, server


def run_loop(make_loop, level, min_level=2, data=None):
    """Build the loop inside the event loop that runs it (verl's agent loop binds to the running loop)."""

    async def go():
        loop, server = make_loop()
        fields = {**(data or sample(min_level)), LEVEL_FIELD: level}
        output = await loop.run({"temperature": 1.0, "top_p": 1.0}, **fields)
        return output, server, loop

    return asyncio.run(go())


def test_registered_under_its_agent_name():
    assert _agent_loop_registry[AGENT_NAME]["_target_"].endswith("ActGuideToolAgentLoop")


def test_level_zero_prompt_is_the_chat_template_of_the_original_messages(qwen_tokenizer, make_loop):
    output, _, loop = run_loop(make_loop, level=0)
    expected = qwen_tokenizer.apply_chat_template(
        sample(2)["raw_prompt"], tools=loop.tool_schemas, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert output.prompt_ids == expected
    assert output.extra_fields[UNGUIDED_PROMPT_IDS_FIELD] == output.prompt_ids
    assert output.extra_fields[LEVEL_FIELD] == 0


def test_guided_run_keeps_unguided_prompt_ids_and_unchanged_response_ids(qwen_tokenizer, make_loop):
    unguided_output, _, _ = run_loop(make_loop, level=0)
    output, server, _ = run_loop(make_loop, level=2)
    guided_text = qwen_tokenizer.decode(output.prompt_ids)
    assert level_in_text(guided_text) == 2 and server.prompts[0] == output.prompt_ids  # sampled on G_2
    # unguided view = re-tokenized original messages (same template and tool schemas) ...
    assert output.extra_fields[UNGUIDED_PROMPT_IDS_FIELD] == unguided_output.prompt_ids
    # ... followed by exactly the response tokens produced: model tokens where mask=1, tool output where 0
    model_tokens = [t for t, m in zip(output.response_ids, output.response_mask, strict=True) if m == 1]
    assert model_tokens == [t for ids in server.responses for t in ids]
    assert 0 in output.response_mask  # a tool response is part of the trajectory, masked out of the loss
    assert "<tool_response>" in qwen_tokenizer.decode(output.response_ids)


@pytest.mark.parametrize(("level", "expected_score"), [(0, 0.0), (1, 0.0), (2, 1.0), (3, 1.0)])
def test_reward_depends_on_guidance_level_through_real_tools_and_reward(
    qwen_tokenizer, make_loop, level, expected_score
):
    output, _, _ = run_loop(make_loop, level=level, min_level=2)
    solution = qwen_tokenizer.decode(output.response_ids)
    result = asyncio.run(compute_score("actguide", solution, json.dumps(["Ada Lovelace"]), {}))
    assert result["score"] == expected_score
    assert result["answer_found"] == 1.0


def test_bad_reference_actions_name_the_sample(make_loop):
    bad = sample(1)
    bad["extra_info"]["reference_actions"] = "[{not json"
    with pytest.raises(ValueError, match="index=7"):
        run_loop(make_loop, level=1, data=bad)


def test_reports_tool_calls_turns_and_a_model_stop(make_loop):
    output, _, _ = run_loop(make_loop, level=0)
    assert output.extra_fields[STOP_REASON_FIELD] == "stop"
    assert output.extra_fields[ASSISTANT_TURNS_FIELD] == 2
    question = "Who wrote the first program?"  # the scripted search: the question without its marker
    assert output.extra_fields[TOOL_CALLS_FIELD] == [{"name": "web_search", "arguments": {"query": [question]}}]


def custom_loop(qwen_tokenizer, recipe_config, scripted_server, *overrides):
    def make():
        return _make_loop(qwen_tokenizer, recipe_config(*overrides), scripted_server)

    return make


def test_turn_and_length_limits_are_reported(qwen_tokenizer, corpus_env, recipe_config, scripted_server):
    searcher = sample(0)
    searcher["raw_prompt"][1]["content"] = f"Who? {task_marker(0, 'Ada', calls=5)}"  # never stops searching
    turns = "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=2"
    two_turns = custom_loop(qwen_tokenizer, recipe_config, scripted_server, turns)
    output, _, _ = run_loop(two_turns, level=0, data=searcher)
    assert output.extra_fields[STOP_REASON_FIELD] == "turn_limit"
    assert len(output.extra_fields[TOOL_CALLS_FIELD]) == 1  # the second turn's call was never parsed nor run

    talker = sample(0)
    talker["raw_prompt"][1]["content"] = f"Who? {task_marker(0, 'Ada ' * 200, calls=0)}"
    short = custom_loop(qwen_tokenizer, recipe_config, scripted_server, "actor_rollout_ref.rollout.response_length=64")
    output, _, _ = run_loop(short, level=0, data=talker)
    assert output.extra_fields[STOP_REASON_FIELD] == "length_limit"
    assert output.extra_fields[TOOL_CALLS_FIELD] == [] and len(output.response_ids) == 64


def test_validation_record_of_a_guided_trajectory(qwen_tokenizer, make_loop):
    output, _, _ = run_loop(make_loop, level=2)
    output.reward_score = 1.0
    output.extra_fields["reward_extra_info"] = {"acc": np.float64(1.0), "judge_used": 0.0}
    row = {**sample(2), "data_source": "unit", "uid": "u7", "session_id": 1}
    record = trajectory_record(output, row, qwen_tokenizer, success_threshold=0.0)
    assert (record.task_id, record.sample, record.level, record.num_actions) == ("unit/7", 1, 2, 3)
    assert record.correct and record.answer == "Ada Lovelace" and record.outcome == "answered"
    assert record.turns == 2 and record.tool_calls[0]["name"] == "web_search"
    assert record.response_tokens == sum(output.response_mask) < record.response_length
    assert "Reference plan" in record.prompt and "<tool_response>" in record.response
    assert record.reward_extra == {"acc": 1.0, "judge_used": 0.0} and type(record.reward_extra["acc"]) is float


def test_max_fitting_level_is_the_highest_level_whose_rendered_prompt_fits(make_loop):
    async def go():
        loop, _ = make_loop()
        messages = sample(2)["raw_prompt"]
        lengths = []
        for level in range(len(ACTIONS) + 1):  # the same builder and tool schemas as run()
            rendered = guided_messages(messages, ACTIONS, level)
            lengths.append(len(loop.continuous_token_builder.build_initial_tokens(rendered, tools=loop.tool_schemas)))
        assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)  # the plan grows with k
        found = {}
        for budget in (lengths[3], lengths[2], lengths[2] + 1, lengths[1], lengths[0], lengths[0] - 1):
            loop.prompt_length = budget
            found[budget] = await loop.max_fitting_level(messages, ACTIONS)
        return lengths, found

    lengths, found = asyncio.run(go())
    assert found[lengths[3]] == 3 and found[lengths[2]] == 2 and found[lengths[2] + 1] == 2
    assert found[lengths[1]] == 1 and found[lengths[0]] == 0 and found[lengths[0] - 1] == 0


def test_max_fitting_level_renders_with_the_rows_own_tool_selection(make_loop):
    """A row with ``extra_info.tool_selection`` is sampled with those tools' schemas only (verl's per-sample
    filter), so its full plan fits a budget that the prompt with every schema does not."""

    async def go():
        loop, _ = make_loop()
        messages = sample(2)["raw_prompt"]
        assert len(loop.tool_schemas) == 2  # web_search and web_visit
        rendered = guided_messages(messages, ACTIONS, len(ACTIONS))
        build = loop.continuous_token_builder.build_initial_tokens
        only_search = loop.selected_tool_schemas(["web_search"])
        assert [schema["function"]["name"] for schema in only_search] == ["web_search"]
        loop.prompt_length = len(build(rendered, tools=only_search))  # fits with one schema, not with two
        assert len(build(rendered, tools=loop.tool_schemas)) > loop.prompt_length
        return (
            await loop.max_fitting_level(messages, ACTIONS),
            await loop.max_fitting_level(messages, ACTIONS, ["web_search"]),
        )

    every_tool, selected = asyncio.run(go())
    assert every_tool < len(ACTIONS) and selected == len(ACTIONS)
