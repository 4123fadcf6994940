"""The prompt swap: guided rows rebuilt on the unguided prompt, response ids untouched."""

import pytest
import torch

from actguide_plugin.verl_glue.prompt_swap import guided_and_padding_rows, swap_to_unguided


def test_swap_splices_unchanged_responses_after_unguided_prompts():
    unguided = [torch.tensor([1, 2, 3]), torch.tensor([7])]
    responses = [torch.tensor([10, 11]), torch.tensor([12, 13, 14])]
    rows = swap_to_unguided(unguided, responses)
    assert rows[0]["prompts"].tolist() == [1, 2, 3]
    assert rows[0]["input_ids"].tolist() == [1, 2, 3, 10, 11]
    assert rows[1]["input_ids"].tolist() == [7, 12, 13, 14]
    assert rows[1]["attention_mask"].tolist() == [1, 1, 1, 1]
    assert rows[1]["position_ids"].tolist() == [0, 1, 2, 3]


def test_padding_rows_are_never_swapped_whatever_flag_they_cloned():
    """verl's ``upsample_batch_to_divisible_size`` clones row 0 (here guided) and tags the copies ``is_padding``."""
    tags = [{"status": "success"}, {"status": "success"}, {"status": "success", "is_padding": True}]
    assert guided_and_padding_rows([1.0, 0.0, 1.0], tags) == ([0], [2])
    assert guided_and_padding_rows([0.0, 1.0], [{}, {}]) == ([1], [])
    with pytest.raises(ValueError, match="3 guided flags for 2 rows"):
        guided_and_padding_rows([1.0, 0.0, 1.0], tags[:2])
