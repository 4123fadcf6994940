"""CPU rollout backends for verl 0.9.1: ``rollout.name=hf`` (HF-transformers sampling) and ``scripted``.

verl registers only vllm/sglang/trtllm servers; on a CPU machine none of them runs. This module plugs a small
HF-``generate`` server into the same registries, so verl's agent-loop manager talks to it exactly as to vLLM:

- :class:`HFRolloutServer` — the Ray actor (one per replica) that the load balancer hands to
  ``LLMServerClient.generate``: ``generate(prompt_ids, sampling_params, request_id, ...) -> TokenOutput`` with
  token ids and per-token log-probs, plus the control calls replicas make (``wake_up``, ``sleep``,
  ``clear_kv_cache``, ``abort_all_requests``, ``resume_generation``, ``set_global_steps``, ...).
  Concurrent requests (the actor is async: verl's agent loops keep many in flight) are served in batches by
  :class:`~.hf_engine.BatchScheduler`, one forward per decoding step for all of them.
  In ``scripted`` mode the response text comes from :mod:`.scripted_policy` (its correctness depends on the
  guidance level in the prompt), but token ids and log-probs are still the model's real ones.
- :class:`HFServerAdapter` — the ``BaseRollout`` living in each hybrid actor worker. verl's colocated weight
  sync (``ActorRolloutRefWorker.update_weights``, checkpoint backend ``naive``) calls its ``update_weights``
  with the actor's full HF-named tensors; rank 0 forwards them to the server in buckets through Ray.
- :class:`HFReplica` — the ``RolloutReplica`` that starts the server (``launch_servers``).

Registration (``RolloutReplicaRegistry`` and ``verl.workers.rollout.base._ROLLOUT_REGISTRY``) lives in
:func:`actguide_plugin.cpu.platform.register_rollout_backends`, by name, so that importing verl (which
activates CPU mode) never has to import this module.

verl 0.9.1 APIs relied on: ``verl.workers.rollout.replica.{RolloutReplica, TokenOutput}``,
``verl.workers.rollout.base.BaseRollout``, the server-actor naming
``f"{rollout.name}_server_{replica_rank}_{node_rank}"`` that ``vllm_rollout.ServerAdapter`` also uses, and
``LLMServerClient.generate``'s call
``server.generate.remote(request_id=, prompt_ids=, sampling_params=, image_data=, video_data=, **kw)`` whose
output must carry ``extra_fields["global_steps"]``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import threading
from collections.abc import Iterable
from typing import Any

import ray
import torch
from verl.utils.import_utils import load_class_from_fqn
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput
from verl.workers.rollout.utils import ensure_async_iterator

from actguide_plugin.logs import get_logger

from .hf_engine import BatchScheduler, Generation, HFGenerator, Sampling
from .scripted_policy import LevelFn, level_from_prompt, scripted_response

logger = get_logger(__name__)

WEIGHT_BUCKET_BYTES = 64 << 20  # tensors per Ray call when pushing weights (a tiny model fits in one)


def _model_path(model_config: Any) -> str:
    local = getattr(model_config, "local_path", None)
    return local or model_config.path


def _load_level_fn(config: Any) -> LevelFn:
    """The level detector for scripted mode: ``rollout.custom.scripted_level_fn`` (fqn) or the default."""
    fqn = (getattr(config, "custom", None) or {}).get("scripted_level_fn")
    return load_class_from_fqn(fqn, "scripted level function") if fqn else level_from_prompt


class HFRolloutServer:
    """Ray actor serving token-in/token-out generation from one HF model on CPU."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int, scripted: bool, device: str = "cpu") -> None:
        self.config = config
        self.replica_rank = replica_rank
        self.scripted = scripted
        self.global_steps: int | None = None
        self.engine = HFGenerator(_model_path(model_config), seed=int(config.seed) + replica_rank, device=device)
        self.scheduler = BatchScheduler(self.engine)
        self.level_fn = _load_level_fn(config) if scripted else level_from_prompt
        self._calls_per_prompt: collections.Counter[str] = collections.Counter()
        self._calls_lock = threading.Lock()

    def get_server_address(self) -> tuple[str, int]:
        # verl keys replicas by address (load balancer, metrics); there is no HTTP endpoint.
        return f"{self.config.name}-replica-{self.replica_rank}", 0

    def _max_tokens(self, prompt_len: int) -> int:
        budget = self.config.prompt_length + self.config.response_length - prompt_len
        return max(1, min(self.config.response_length, budget))

    def _run_scripted(self, prompt_ids: list[int], sampling: Sampling) -> Generation:
        """The scripted response for this prompt, with the model's own log-probs of its tokens (teacher forced)."""
        text = self.engine.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        with self._calls_lock:  # generate() runs in worker threads
            call_index = self._calls_per_prompt[text]
            self._calls_per_prompt[text] += 1
        response = scripted_response(text, self.level_fn, call_index)
        response = self.engine.tokenizer.encode(response, add_special_tokens=False)[: sampling.max_tokens]
        stops = sampling.stop_token_ids | self.engine.eos_token_ids
        stop_at = next((i for i, token in enumerate(response) if token in stops), None)
        if stop_at is not None:  # as a sampled response would: cut after the first stop token
            response = response[: stop_at + 1]
        finish = "stop" if stop_at is not None else "length"
        return Generation(response, self.engine.score(prompt_ids, response, sampling.temperature), finish)

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Any = None,
        video_data: Any = None,
        **_kwargs: Any,
    ) -> TokenOutput:
        if image_data is not None or video_data is not None:
            raise NotImplementedError(f"{self.config.name} rollout is text-only (request {request_id})")
        prompt_ids = [int(t) for t in prompt_ids]
        budget = self._max_tokens(len(prompt_ids))
        sampling = Sampling.from_params(sampling_params, budget)
        sampling = dataclasses.replace(sampling, max_tokens=max(1, min(sampling.max_tokens, budget)))
        if self.scripted:
            generation = await asyncio.to_thread(self._run_scripted, prompt_ids, sampling)
        else:
            generation = await self.scheduler.generate(prompt_ids, sampling)
        return TokenOutput(
            token_ids=generation.token_ids,
            log_probs=generation.log_probs if sampling_params.get("logprobs", True) else None,
            stop_reason="completed",
            num_preempted=0,
            extra_fields={"global_steps": self.global_steps},
        )

    async def update_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> int:
        return await asyncio.to_thread(self.engine.load_weights, named_tensors)

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    async def abort_all_requests(self, **_kwargs: Any) -> dict[str, Any]:
        # Requests run to completion (no preemption): nothing is ever in flight across a weight sync.
        return {"aborted_count": 0, "request_ids": []}

    async def abort_request(self, request_id: str, **_kwargs: Any) -> dict[str, Any]:
        return {"aborted": False, "request_id": request_id}

    # Memory control calls: weights stay resident (host memory), there is no KV pool to free.
    async def wake_up(self, tags: list[str] | None = None) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def resume_generation(self) -> None:
        return None

    async def wait_for_requests_to_drain(self) -> None:
        return None

    async def start_profile(self, **_kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


def server_actor_name(rollout_name: str, replica_rank: int, node_rank: int = 0, suffix: str = "") -> str:
    """Ray actor name of a replica's server; the adapter in the trainer worker looks it up by this name."""
    return f"{rollout_name}_server_{replica_rank}_{node_rank}{suffix}"


class HFReplica(RolloutReplica):
    """One HF rollout server per replica (single node, the replica's world size is 1 on CPU)."""

    def rollout_worker_use_gpu(self) -> bool:
        return False

    async def launch_servers(self) -> None:
        name = server_actor_name(self.config.name, self.replica_rank, 0, self.name_suffix)
        server = (
            ray.remote(HFRolloutServer)
            .options(name=name, num_cpus=1, max_concurrency=self.max_concurrency)
            .remote(
                config=self.config,
                model_config=self.model_config,
                replica_rank=self.replica_rank,
                scripted=self.config.name == "scripted",
            )
        )
        address, _port = await server.get_server_address.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = address


class HFServerAdapter(BaseRollout):
    """Trainer-side handle of the HF server: receives the actor's weights and forwards them (rank 0)."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1) -> None:
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        world = self.config.tensor_model_parallel_size * self.config.data_parallel_size
        world *= self.config.pipeline_model_parallel_size
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.is_leader_rank = rank % world == 0
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.config.name, self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(
        self,
        weights: Iterable[tuple[str, torch.Tensor]],
        global_steps: int | None = None,
        wire_format: str = "named_tensors",
        **_kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"{self.config.name} rollout accepts full tensors only, got {wire_format!r}")
        bucket: list[tuple[str, torch.Tensor]] = []
        size = 0
        # Every rank drains the generator (FSDP gathers full tensors collectively); only the leader sends.
        async for name, tensor in ensure_async_iterator(weights):
            tensor = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            if not self.is_leader_rank:
                continue
            bucket.append((name, tensor.detach().to("cpu").contiguous()))
            size += bucket[-1][1].nbytes
            if size >= WEIGHT_BUCKET_BYTES:
                await self._server_handle().update_weights.remote(bucket)
                bucket, size = [], 0
        if self.is_leader_rank:
            if bucket:
                await self._server_handle().update_weights.remote(bucket)
            if global_steps is not None:
                await self._server_handle().set_global_steps.remote(global_steps)
