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

from collections.abc import Mapping, MutableMapping, Sequence
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


def swap_to_unguided_padded(
    tensors: MutableMapping[str, torch.Tensor],
    rows: Sequence[int],
    unguided_prompts: Sequence[Sequence[int]],
    pad_id: int,
) -> None:
    """The prompt swap on verl's padded layout (the classic trainer's ``DataProto``), in place: for each of ``rows``,
    the unguided prompt ids left-padded to the batch's prompt width into ``prompts`` and the prompt part of
    ``input_ids`` and ``attention_mask``, and ``position_ids`` recomputed. The response part is not touched, and
    no shape changes (the unguided prompt is the guided one minus its plan, so it fits)."""
    width = tensors["prompts"].shape[1]
    for row, prompt_ids in zip(rows, unguided_prompts, strict=True):
        ids = torch.as_tensor(list(prompt_ids), dtype=tensors["prompts"].dtype)
        if len(ids) > width:
            raise ValueError(f"row {row}: unguided prompt of {len(ids)} tokens is wider than the batch's {width}")
        padded = torch.full((width,), pad_id, dtype=ids.dtype)
        padded[width - len(ids) :] = ids
        mask = torch.zeros(width, dtype=tensors["attention_mask"].dtype)
        mask[width - len(ids) :] = 1
        tensors["prompts"][row] = padded
        tensors["input_ids"][row, :width] = padded
        tensors["attention_mask"][row, :width] = mask
        tensors["position_ids"][row] = compute_position_id_with_mask(tensors["attention_mask"][row])
