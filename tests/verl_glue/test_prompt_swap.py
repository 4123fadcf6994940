"""The prompt swap: guided rows rebuilt on the unguided prompt, response ids untouched."""

import torch

from actguide_plugin.verl_glue.prompt_swap import swap_to_unguided


def test_swap_splices_unchanged_responses_after_unguided_prompts():
    unguided = [torch.tensor([1, 2, 3]), torch.tensor([7])]
    responses = [torch.tensor([10, 11]), torch.tensor([12, 13, 14])]
    rows = swap_to_unguided(unguided, responses)
    assert rows[0]["prompts"].tolist() == [1, 2, 3]
    assert rows[0]["input_ids"].tolist() == [1, 2, 3, 10, 11]
    assert rows[1]["input_ids"].tolist() == [7, 12, 13, 14]
    assert rows[1]["attention_mask"].tolist() == [1, 1, 1, 1]
    assert rows[1]["position_ids"].tolist() == [0, 1, 2, 3]
