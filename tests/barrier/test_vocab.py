"""The barrier tokenizer: closed over the world's text, lossless, names tokenized the same everywhere."""

import pytest

from actguide_plugin.barrier.base_policy import BasePolicySettings, conversations
from actguide_plugin.barrier.vocab import TEMPLATE, TOOL_SCHEMAS, build_tokenizer
from actguide_plugin.barrier.world import SYSTEM_PROMPT, build_world
from actguide_plugin.core.guidance import guided_messages


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def _texts():
    world = build_world(0, 64, 16)
    for task in [*world.train, *world.val]:
        yield task.question
        for title, text in task.pages():
            yield title
            yield text
    for conversation in conversations(BasePolicySettings(examples=200)):
        yield from (str(m["content"]) for m in conversation.messages)
        for turn in conversation.turns:
            yield turn.assistant
            if turn.tool_response:
                yield turn.tool_response


def test_every_world_text_round_trips_without_unknown_tokens(tokenizer):
    for text in _texts():
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.decode(ids) == text


def test_a_name_is_the_same_tokens_in_question_plan_and_tool_call(tokenizer):
    name = "zek nod"
    name_ids = tokenizer.encode(name, add_special_tokens=False)
    texts = (
        f"What is the code of {name}?",
        f'1. web_search: {{"query":["{name}"]}}',
        f'{{"query": ["{name}"]}}',
        f"{name} points to bak dor.",
        f"dor cav points to {name}.",
        f'Results for "{name}":\n1. {name}\n   {name} has code 417.',
    )
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert sum(ids[i : i + len(name_ids)] == name_ids for i in range(len(ids))) == text.count(name), text


def test_words_take_their_space_and_syllables_never_do(tokenizer):
    def tokens(text):
        return tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))

    question = ["What", " is", " the", " code", " of", " ", "zek", " ", "nod", "?"]
    assert tokens("What is the code of zek nod?") == question
    assert tokens('{"query": ["zek nod"]}}') == ['{"', "query", '": ["', "zek", " ", "nod", '"]}}']
    assert tokens("\n   zek nod points to") == ["\n   ", "zek", " ", "nod", " points", " to"]


def test_prompts_are_short_and_the_template_lists_tools_on_one_line(tokenizer):
    task = build_world(0, 8, 2, min_hops=4, max_hops=4).train[0]
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": task.question}]
    lengths = {}
    for level in (0, 4):
        rendered = guided_messages(messages, list(task.actions), level)
        ids = tokenizer.apply_chat_template(rendered, tools=list(TOOL_SCHEMAS), add_generation_prompt=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert tokenizer.unk_token_id not in ids
        lengths[level] = len(ids)
    assert lengths[0] <= 120 and lengths[4] <= 240, lengths
    assert tokenizer.chat_template == TEMPLATE
    text = tokenizer.apply_chat_template(messages, tools=list(TOOL_SCHEMAS), tokenize=False)
    assert "Tools: web_search(query) web_visit(url, goal)." in text
    assert len(tokenizer) < 300
