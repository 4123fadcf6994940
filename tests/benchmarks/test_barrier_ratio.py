"""benchmarks/barrier_ratio.py: token groups of a guided solution and each rule's gradient weight there."""

import pytest

from actguide_plugin.cpu.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("barrier_ratio")


def test_tokens_are_grouped_by_their_role_in_the_procedure(bench):
    call = ["<tool_call>", '{"', "query", "bim", "fen", "</tool_call>", "<|im_end|>"]
    tokens = [*call, *call, "<", "answer", ">", "4", "1", "7", "</", "answer", ">", "<|im_end|>"]
    groups = bench.token_groups(tokens)
    assert groups[:7] == ["first search"] * 7
    assert groups[7:14] == ["continue", "other", "other", "hop name", "hop name", "other", "other"]
    assert set(groups[14:]) == {"answer"}


def test_weights_follow_each_rule(bench):
    import torch

    weights = bench.gradient_weights(torch.tensor([-12.0, 0.0, 0.5]))
    assert weights["same"].tolist() == pytest.approx([6.1e-6, 1.0, 0.0], abs=1e-6)  # r, and 0 above 1 + ε
    assert weights["cispo"].tolist() == pytest.approx([0.8, 1.0, 0.0])  # clip(r), masked above 1 + ε
    assert weights["shaping"][0] < 1e-4


@pytest.mark.integration
def test_table_of_a_tiny_barrier_model(bench, tmp_path):
    model = build_tiny_model(tmp_path / "model", vocab="barrier", hidden_size=32)
    table = bench.measure(model, seed=0, tasks=3, min_hops=2, max_hops=3)
    assert {"continue", "hop name", "first search", "answer", "other"} <= set(table)
    assert table["continue"]["tokens"] >= 3  # one per hop after the first, at least one per task
    for row in table.values():
        assert 0.8 <= row["weight cispo"] <= 1.2 and row["min log r"] <= row["median log r"]
    assert "| continue |" in bench.markdown(table)
