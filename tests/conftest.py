"""Fixtures shared by every test tier: tiny models built once per session, verl's fsdp2 TrainingWorker in this
process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from actguide_plugin.cpu.tiny_model import build_tiny_model


def _training_worker_config(model_path: Path, lr: float = 1e-2):
    from verl.trainer.config.config import CheckpointConfig
    from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig, TrainingWorkerConfig

    return TrainingWorkerConfig(
        model_type="language_model",
        model_config=HFModelConfig(
            path=str(model_path), override_config={"attn_implementation": "sdpa"}, use_remove_padding=False
        ),
        engine_config=FSDPEngineConfig(
            strategy="fsdp2",
            use_torch_compile=False,
            use_dynamic_bsz=False,
            micro_batch_size_per_gpu=2,
            infer_micro_batch_size_per_gpu=2,
            mixed_precision={"param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"},
        ),
        optimizer_config=FSDPOptimizerConfig(lr=lr),
        checkpoint_config=CheckpointConfig(),
    )


@pytest.fixture(scope="session")
def training_worker_config():
    """Build a fp32 fsdp2 TrainingWorkerConfig for a model directory (verl's default bf16 is off by ~5e-2)."""
    return _training_worker_config


@pytest.fixture()
def single_rank_gloo(monkeypatch):
    """World size 1 on gloo in this process; the process group is destroyed afterwards."""
    from actguide_plugin.cpu import activate

    activate()
    for key, value in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(key, value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MASTER_PORT", str(probe.getsockname()[1]))
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="session")
def tiny_bytes_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random 2-layer Qwen3 model with the byte-level tokenizer (fast to build and run)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-bytes", vocab="bytes", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random 2-layer Qwen3 model with the real Qwen vocabulary (tokenizer conversion cached on disk)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen", vocab="qwen", seed=0)


@pytest.fixture()
def trickle():
    """``trickle(interval_s, hung_up)``: an aiohttp handler answering 200 with a 1,000-byte body, one byte per interval.

    For loopback fakes of slow services: every read finishes within any per-phase timeout, so only a deadline on
    the whole attempt ends the call. ``hung_up`` (an ``asyncio.Event``) is set when the client drops the
    connection (aiohttp then cancels the handler, or the next write fails).
    """
    import asyncio

    from aiohttp import web

    def handler(interval_s: float, hung_up: asyncio.Event):
        async def respond(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "1000"})
            await response.prepare(request)
            try:
                for _ in range(1000):
                    await asyncio.sleep(interval_s)
                    await response.write(b" ")
            except (ConnectionError, asyncio.CancelledError):
                hung_up.set()
                raise
            return response

        return respond

    return handler


@pytest.fixture()
def hang_guard():
    """``with hang_guard(s):`` fails the test if the block runs past ``s`` seconds. For degenerate inputs that a
    quadratic scan turns into minutes: a guard against hangs set far above the linear time, not a speed test
    (speed is measured in ``benchmarks/``)."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def guard(seconds: float):
        def expire(signum, frame):
            raise TimeoutError(f"still running after {seconds} s: not linear in the input")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return guard


@pytest.fixture(scope="module")
def ray_and_tq(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray and a TransferQueue with one storage unit, per test module (integration tests)."""
    import ray
    import transfer_queue as tq
    from omegaconf import OmegaConf

    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")))
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield
    tq.close()
    ray.shutdown()


def _scripted_data(
    directory: Path, questions: dict[str, str], answer: str = "Ada Lovelace", corpus: list[dict] | None = None
) -> Path:
    """Scripted tasks through ``actguide-preprocess convert`` into ``directory/data`` (train.parquet = val.parquet,
    plus ``corpus.jsonl`` when given)."""
    import shutil

    from actguide_plugin.cpu.scripted_policy import CORPUS_FILE, scripted_record, write_scripted_inputs
    from data_preprocess.cli import main as preprocess

    records = write_scripted_inputs(directory, [scripted_record(t, q, answer) for t, q in questions.items()], corpus)
    data = directory / "data"
    assert preprocess(["convert", str(records), "-o", str(data), "--format", "actions", "--val-ratio", "0"]) == 0
    shutil.copy(data / "train.parquet", data / "val.parquet")
    if corpus is not None:
        shutil.copy(directory / CORPUS_FILE, data / CORPUS_FILE)
    return data


@pytest.fixture(scope="session")
def scripted_data():
    """``scripted_data(directory, {task_id: question}, answer=..., corpus=[...])`` → a data folder of scripted tasks
    with :data:`~actguide_plugin.cpu.scripted_policy.SCRIPTED_PLAN` as every task's reference actions."""
    return _scripted_data
