"""The prompt swap: a guided trajectory's model inputs rebuilt on its *unguided* prompt (paper §3.3).

The response token ids are spliced, unchanged, after the unguided prompt ids the agent loop built with the same
chat template and tool schemas; nothing is re-rendered from text. ``prompts``, ``input_ids``, ``attention_mask``
and ``position_ids`` change together, because verl locates the response from the prompt/response lengths.

verl 0.9.1 API relied on: ``verl.utils.model.compute_position_id_with_mask`` (text models; multimodal rope
position ids are not supported).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from verl.utils.model import compute_position_id_with_mask


def swap_to_unguided(
    unguided_prompts: Sequence[torch.Tensor], responses: Sequence[torch.Tensor]
) -> list[dict[str, torch.Tensor]]:
    """New model-input fields per row: unguided prompt ids (1-D) + the unchanged response ids (1-D)."""
    swapped = []
    for prompt_ids, response_ids in zip(unguided_prompts, responses, strict=True):
        input_ids = torch.cat([prompt_ids, response_ids])
        attention_mask = torch.ones_like(input_ids)
        swapped.append(
            {
                "prompts": prompt_ids,
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "position_ids": compute_position_id_with_mask(attention_mask),
            }
        )
    return swapped
