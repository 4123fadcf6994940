"""The prompt swap: a guided trajectory's model inputs rebuilt on its *unguided* prompt (paper §3.3).

The response token ids are spliced, unchanged, after the unguided prompt ids the agent loop built with the same
chat template and tool schemas; nothing is re-rendered from text. ``prompts``, ``input_ids``, ``attention_mask``
and ``position_ids`` change together, because verl locates the response from the prompt/response lengths.

verl 0.9.1 APIs relied on: ``verl.utils.model.compute_position_id_with_mask`` (text models; multimodal rope
position ids are not supported), and the ``is_padding`` tag of the rows ``verl.trainer.ppo.padding_utils.
upsample_batch_to_divisible_size`` appends: clones of row 0's fields (guided flag and unguided prompt included)
with a one-token response outside the response mask. They are never guided, whatever flag they copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def guided_and_padding_rows(
    is_guided: Sequence[float], tags: Sequence[Mapping[str, Any]]
) -> tuple[list[int], list[int]]:
    """Indices of the real guided rows, and of verl's padding rows (which may carry a cloned guided flag)."""
    if len(is_guided) != len(tags):
        raise ValueError(f"{len(is_guided)} guided flags for {len(tags)} rows of the batch")
    padding = [i for i, tag in enumerate(tags) if tag.get("is_padding", False)]
    skipped = set(padding)
    return [i for i, flag in enumerate(is_guided) if flag > 0.5 and i not in skipped], padding
