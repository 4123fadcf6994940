"""The barrier world: deterministic, consistent pages, validation entities disjoint from everything trained on."""

import random

import pytest

from actguide_plugin.barrier.base_policy import BasePolicySettings, conversations
from actguide_plugin.barrier.world import (
    CODE_TEXT,
    LINK_TEXT,
    SEARCH_TOOL,
    SYLLABLES,
    build_world,
    make_chains,
    names,
)


def test_same_seed_same_world_other_seed_other_world():
    assert build_world(3, 20, 5) == build_world(3, 20, 5)
    assert build_world(3, 20, 5).train != build_world(4, 20, 5).train


def test_chains_link_page_to_page_and_end_in_the_code():
    world = build_world(0, 40, 10, min_hops=2, max_hops=5)
    for task in [*world.train, *world.val]:
        assert 2 <= len(task.chain) <= 5
        pages = list(task.pages())
        assert [title for title, _ in pages] == list(task.chain)
        for (title, text), target in zip(pages, task.chain[1:], strict=False):
            assert text == LINK_TEXT.format(name=title, target=target)
        assert pages[-1][1] == CODE_TEXT.format(name=task.chain[-1], code=task.code)
        assert [a.to_dict() for a in task.actions] == [
            {"name": SEARCH_TOOL, "arguments": {"query": [name]}} for name in task.chain
        ]
        assert task.question.endswith(f"{task.chain[0]}?")


def test_every_entity_has_one_page_and_validation_entities_are_unseen():
    world = build_world(1, 256, 48)
    titles = [doc["title"] for doc in world.corpus()]
    assert len(titles) == len(set(titles))
    train_names = {name for task in world.train for name in task.chain}
    val_names = {name for task in world.val for name in task.chain}
    assert not train_names & val_names
    assert val_names <= set(names(validation=True))
    warm_start_text = " ".join(
        str(m["content"]) + turn.assistant + (turn.tool_response or "")
        for c in conversations(BasePolicySettings(examples=2000))
        for m in c.messages
        for turn in c.turns
    )
    assert not [name for name in val_names if name in warm_start_text]


def test_names_are_unordered_pairs_so_bm25_cannot_confuse_them():
    every = names(validation=False) + names(validation=True)
    assert len(every) == len(set(every)) == len(SYLLABLES) * (len(SYLLABLES) - 1) // 2
    assert not {" ".join(reversed(name.split())) for name in every} & set(every)


def test_a_partition_too_small_for_the_tasks_is_an_error_naming_the_sizes():
    with pytest.raises(ValueError, match=r"need \d+ entities; the val partition has 3"):
        make_chains(random.Random(0), ["a b", "c d", "e f"], 2, 3, 3, "val")
    with pytest.raises(ValueError, match="min_hops <= max_hops"):
        make_chains(random.Random(0), ["a b"], 1, 3, 2, "train")
