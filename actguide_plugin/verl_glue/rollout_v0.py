"""Guided-fallback rollout for verl's classic trainer (``trainer.use_v1=false``, ``RayPPOTrainer``): each prompt's
group search runs inside the rollout worker, and a step's batch comes back as one ``DataProto``.

verl 0.9.1 APIs relied on (``verl/experimental/agent_loop/agent_loop.py``, ``verl/trainer/ppo/ray_trainer.py``):

* ``RayPPOTrainer.fit`` repeats each prompt n times (``repeat(interleave=True)``: the n rows of a prompt are
  adjacent and share its ``uid``), calls ``AgentLoopManager.generate_sequences(batch)`` once, and joins the result
  with the repeated prompt rows **by position**. So the manager returns exactly n rows per prompt, in input order.
  verl's manager splits the batch with ``DataProto.chunk`` (equal chunks, which can cut a group in two); ours
  splits at group boundaries.
* ``AgentLoopWorker._run_agent_loop(sampling_params, trajectory, *, agent_name, trace, **row)`` runs one agent
  loop and ``_agent_loop_postprocess`` pads it and scores it with the streaming reward workers (a score that is
  already set is kept), returning an ``_InternalAgentLoopOutput``; ``_postprocess(outputs, input_non_tensor_batch,
  validate)`` stacks them into a ``DataProto``, each ``extra_fields`` key becoming a per-row object column: that is
  how the guided flag, level, L and unguided prompt ids reach the trainer (:mod:`.trainer_v0`).
* Validation pads its batch to a multiple of the worker count with copies of its first rows
  (``pad_dataproto_to_divisor``) and drops them after: the copies are run but not recorded.
* ``sleep_replicas()`` follows ``generate_sequences`` at once, so nothing can be sampled later: a group whose
  search raised is filled with rows that carry no response token and no reward (placeholders cloned from a real
  row: zero loss tokens, zero GRPO advantage), and counted in ``actguide/failed_groups``.

The search itself is :func:`actguide_plugin.verl_glue.group.decide_group`, shared with :mod:`.rollout_v1`.
Prompts search independently and concurrently (one coroutine each).
"""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import ray
import torch
from verl.experimental.agent_loop.agent_loop import AgentLoopManager, AgentLoopWorker, get_trajectory_info
from verl.protocol import DataProto
from verl.utils.ray_utils import auto_await
from verl.utils.skip import SkipManager

from actguide_plugin.names import IS_GUIDED_FIELD, LEVEL_FIELD
from actguide_plugin.verl_glue.config import ActGuideConfig, actguide_config
from actguide_plugin.verl_glue.empty_step import EmptyStepError, explain_failures
from actguide_plugin.verl_glue.group import decide_group, with_action_noise
from actguide_plugin.verl_glue.rollout_common import ActGuideWorkerMixin
from actguide_plugin.verl_glue.state import state_actor
from actguide_plugin.verl_glue.validation import validation_level

VAL_PADDING_FIELD = "actguide_val_padding"  # validation rows that are verl's padding copies (run, not recorded)
SESSION_FIELD = "session_id"  # a validation row's sample number within its prompt, as verl's V1 worker passes it
FAILED_GROUPS_KEY = "actguide_failed_groups"  # meta_info: positions (in the worker's chunk) of groups that raised


def group_bounds(uids: list[str]) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of equal uids, in order (a prompt's n rows are adjacent)."""
    bounds, start = [], 0
    for i in range(1, len(uids) + 1):
        if i == len(uids) or uids[i] != uids[start]:
            bounds.append((start, i))
            start = i
    return bounds


def split_groups(groups: int, parts: int) -> list[tuple[int, int]]:
    """``[first, last)`` group indices for each of ``parts`` workers, contiguous and as even as possible (a range is
    empty when there are fewer groups than workers)."""
    per, extra = divmod(groups, parts)
    ranges, first = [], 0
    for part in range(parts):
        last = first + per + (part < extra)
        ranges.append((first, last))
        first = last
    return ranges


class ActGuideAgentLoopWorkerV0Impl(ActGuideWorkerMixin, AgentLoopWorker):
    """``AgentLoopWorker`` whose training prompts go through the ActGuide level search."""

    async def generate_sequences(self, batch: DataProto) -> DataProto:
        if batch.meta_info.get("validate", False):  # rows marked by the manager (mark_validation_rows)
            return await super().generate_sequences(batch)
        config = self.rollout_config
        sampling_params = dict(
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            repetition_penalty=1.0,
            logprobs=config.calculate_log_probs,
        )
        rows = batch.non_tensor_batch
        if "agent_name" not in rows:
            rows["agent_name"] = np.array([config.agent.default_agent_loop] * len(batch), dtype=object)
        index = rows["index"] if "index" in rows else np.arange(len(batch))
        steps = batch.meta_info.get("global_steps", -1)
        trajectories = await get_trajectory_info(steps, index.tolist(), False)
        bounds = group_bounds(list(rows["uid"]))
        groups = []
        for start, end in bounds:
            prompt = {key: values[start] for key, values in rows.items() if key != "__do_sample__"}
            prompt["global_steps"] = steps
            groups.append(self._run_group(prompt, end - start, sampling_params, trajectories[start]))
        results = await asyncio.gather(*groups)
        outputs = [output for group in results if group is not None for output in group]
        failed = [position for position, group in enumerate(results) if group is None]
        if not outputs:  # every group of this chunk failed: the manager decides whether the step can go on
            return DataProto(meta_info={FAILED_GROUPS_KEY: failed, "metrics": []})
        output = self._postprocess(outputs, input_non_tensor_batch=None, validate=False)
        output.meta_info[FAILED_GROUPS_KEY] = failed
        return output

    async def _run_group(self, prompt: dict, n: int, sampling_params: dict, trajectory: dict) -> list | None:
        """The n chosen trajectories of one prompt, each flagged with the group's level; None if the group raised."""
        try:
            noisy, changed, clean = with_action_noise(prompt, self.actguide)  # training groups only

            async def sample(level: int, session_id: int) -> list:
                info = {**trajectory, "rollout_n": session_id}
                return [
                    await self._run_agent_loop(
                        dict(sampling_params), info, trace=False, session_id=session_id, **{LEVEL_FIELD: level}, **noisy
                    )
                ]

            max_level = await self._max_fitting_level(noisy)
            outcome = await decide_group(noisy, n, sample, self.actguide, self.state, max_level, (changed, clean))
        except Exception as err:  # every rollout of the group has settled (group.settled)
            await self._record_failure(prompt, err)
            return None
        if len(outcome.trajectories) != n:
            raise RuntimeError(
                f"ActGuide: group {prompt['uid']} ended with {len(outcome.trajectories)} trajectories, not n={n}; the "
                "classic trainer joins rollouts with prompts by position (actguide.on_full_failure=drop is refused)"
            )
        chosen = []
        for (final,) in outcome.trajectories:
            final.extra_fields[IS_GUIDED_FIELD] = float(outcome.level > 0)
            final.extra_fields[LEVEL_FIELD] = outcome.level
            chosen.append(final)
        return chosen

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        result = await super()._agent_loop_postprocess(output, validate, **kwargs)
        if validate and not kwargs.get(VAL_PADDING_FIELD, False):
            await self._record_validation(output, kwargs)
        return result


class ActGuideAgentLoopManagerV0(AgentLoopManager):
    """verl's agent-loop manager for the classic trainer, with ActGuide workers and group-aligned chunks."""

    def __init__(self, *args, **kwargs):
        self.agent_loop_workers_class = ray.remote(ActGuideAgentLoopWorkerV0Impl)
        super().__init__(*args, **kwargs)

    @auto_await  # as verl's: the classic trainer calls it synchronously
    @SkipManager.annotate(role="rollout")
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        if prompts.meta_info.get("validate", False):
            samples = int(self.rollout_config.val_kwargs.n)
            return await super().generate_sequences(
                mark_validation_rows(prompts, samples, actguide_config(self.config))
            )
        if "priority" not in prompts.non_tensor_batch:
            prompts.non_tensor_batch["priority"] = np.arange(len(prompts), dtype=np.int64)
        bounds = group_bounds(list(prompts.non_tensor_batch["uid"]))
        ranges = [
            (first, last) for first, last in split_groups(len(bounds), len(self.agent_loop_workers)) if last > first
        ]
        chunks = await asyncio.gather(
            *[
                worker.generate_sequences.remote(prompts.slice(bounds[first][0], bounds[last - 1][1]))
                for worker, (first, last) in zip(self.agent_loop_workers, ranges, strict=False)
            ]
        )
        metrics = [chunk.meta_info.pop("metrics") for chunk in chunks]
        output = assemble_groups(chunks, ranges, bounds)
        if output is None:
            failures = await state_actor().failures_of.remote(list(prompts.non_tensor_batch["uid"]))
            step = prompts.meta_info.get("global_steps", -1)
            what = f"no group of training step {step} produced a trajectory"
            raise EmptyStepError(explain_failures(failures, len(bounds), what))
        output.meta_info = {"timing": self._performance_metrics(metrics, output), **output.meta_info}
        return output


def assemble_groups(
    chunks: list[DataProto], ranges: list[tuple[int, int]], bounds: list[tuple[int, int]]
) -> DataProto | None:
    """The workers' rows in the prompts' order, each failed group (``meta_info[FAILED_GROUPS_KEY]``: positions in
    its chunk) filled with :func:`placeholders`; None when every group failed. ``ranges``: each chunk's
    ``[first, last)`` groups; ``bounds``: each group's ``[start, end)`` rows in the input."""
    parts: list[DataProto | int] = []  # per group in order: its rows, or the size of a failed group
    for chunk, (first, last) in zip(chunks, ranges, strict=True):
        failed = set(chunk.meta_info.pop(FAILED_GROUPS_KEY))
        row = 0
        for local, (start, end) in enumerate(bounds[first:last]):
            if local in failed:
                parts.append(end - start)
            else:
                parts.append(chunk.slice(row, row + end - start))
                row += end - start
    real = [part for part in parts if isinstance(part, DataProto)]
    if not real:
        return None
    output = DataProto.concat([part if isinstance(part, DataProto) else placeholders(real[0], part) for part in parts])
    output.meta_info = dict(real[0].meta_info)
    return output


def mark_validation_rows(batch: DataProto, samples: int, actguide: ActGuideConfig) -> DataProto:
    """Each validation row's guidance level (0 unless ``actguide.val_level``/``val_level_ratio`` ask), its sample
    number within its prompt, and whether it is one of verl's padding copies (a prompt's rows past the
    ``samples``-th): marked on the whole batch, before verl chunks it over the workers."""
    rows = batch.non_tensor_batch
    seen: dict[str, int] = {}
    sessions, padding, levels = [], [], []
    for i in range(len(batch)):
        row = {key: values[i] for key, values in rows.items()}
        count = seen.get(row["uid"], 0)
        seen[row["uid"]] = count + 1
        sessions.append(count % samples)
        padding.append(count >= samples)
        levels.append(validation_level(row, actguide))
    rows[SESSION_FIELD] = np.array(sessions, dtype=object)
    rows[VAL_PADDING_FIELD] = np.array(padding, dtype=object)
    rows[LEVEL_FIELD] = np.array(levels, dtype=object)
    return batch


def placeholders(template: DataProto, count: int) -> DataProto:
    """``count`` rows of a group whose search raised: clones of ``template``'s first row with no response token,
    no reward and no guidance, so they add no loss token and no advantage (all of a GRPO group's rewards equal)."""
    rows = template.slice(0, 1).repeat(count)
    rows.batch = rows.batch.clone()
    rows.non_tensor_batch = copy.deepcopy(rows.non_tensor_batch)
    rows.batch["response_mask"] = torch.zeros_like(rows.batch["response_mask"])
    if "rm_scores" in rows.batch:
        rows.batch["rm_scores"] = torch.zeros_like(rows.batch["rm_scores"])
    rows.non_tensor_batch[IS_GUIDED_FIELD] = np.array([0.0] * count, dtype=object)
    rows.non_tensor_batch[LEVEL_FIELD] = np.array([0] * count, dtype=object)
    return rows
