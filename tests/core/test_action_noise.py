"""Reference-action perturbations for the action-noise study: deterministic, counted, per mode."""

import pytest

from actguide_plugin.core.action_noise import perturb_actions
from actguide_plugin.core.actions import Action

PLAN = [Action("web_search", {"query": [f"q{i}"]}) for i in range(8)]


@pytest.mark.parametrize("mode", ["drop", "shuffle", "replace"])
def test_the_same_key_gives_the_same_plan_and_another_key_another(mode):
    first = perturb_actions(PLAN, mode, 0.5, "task-1/3")
    assert perturb_actions(PLAN, mode, 0.5, "task-1/3") == first
    assert any(perturb_actions(PLAN, mode, 0.5, f"task-1/{step}") != first for step in range(4, 10))


def test_drop_removes_the_fraction_in_order_and_keeps_one():
    kept, changed = perturb_actions(PLAN, "drop", 0.25, "k")
    assert changed == 2 and len(kept) == 6 and kept == [a for a in PLAN if a in kept]  # order kept
    only, changed = perturb_actions(PLAN, "drop", 1.0, "k")
    assert len(only) == 1 and changed == 7


def test_shuffle_permutes_and_replace_copies_other_actions_of_the_plan():
    shuffled, changed = perturb_actions(PLAN, "shuffle", 0.5, "k")
    assert sorted(a.arguments["query"][0] for a in shuffled) == [f"q{i}" for i in range(8)]
    assert changed == sum(a != b for a, b in zip(shuffled, PLAN, strict=True)) and changed >= 2
    replaced, changed = perturb_actions(PLAN, "replace", 0.25, "k")
    assert changed == 2 and len(replaced) == 8 and all(a in PLAN for a in replaced)
    assert len(set(map(repr, replaced))) == 6  # two steps now repeat others
    same = [PLAN[0]] * 3
    assert perturb_actions(same, "replace", 1.0, "k") == (same, 0)  # nothing different to copy


def test_off_and_bad_arguments():
    assert perturb_actions(PLAN, "none", 0.9, "k") == (PLAN, 0)
    assert perturb_actions(PLAN, "drop", 0.0, "k") == (PLAN, 0)
    with pytest.raises(ValueError, match="mode must be one of"):
        perturb_actions(PLAN, "swap", 0.1, "k")
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        perturb_actions(PLAN, "drop", 1.5, "k")
