"""After training, end to end on CPU: ``actguide-eval`` of a checkpoint through verl's validation loop,
``actguide-export`` of that checkpoint, and ``actguide-analyze training`` of the run's real ``metrics.jsonl``.

The evaluated tasks make the scripted policy's per-sample correctness known (``every=E``: exactly ⌈K/E⌉ of a
prompt's K answers are right) and force each way a trajectory can end, so pass@k and the outcome counts are exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from actguide_plugin.cli import analyze
from actguide_plugin.cpu.scripted_policy import task_marker

pytestmark = pytest.mark.e2e

K = 3
EVAL_TASKS = {
    "right-3": task_marker(0, "Ada Lovelace"),  # 3 of 3 right
    "right-2": task_marker(0, "Ada Lovelace", every=2),  # answers 0 and 2 right
    "right-1": task_marker(0, "Ada Lovelace", every=3),  # answer 0 right
    "needs-plan": task_marker(1, "Ada Lovelace"),  # wrong without guidance
    "searches": task_marker(0, "Ada Lovelace", calls=5),  # more searches than max_assistant_turns=3 allow
    "rambles": task_marker(0, "x" * 900),  # an answer longer than the response budget
}
SETTINGS = [
    "actor_rollout_ref.rollout.name=scripted",
    "data.max_prompt_length=4096",
    "actor_rollout_ref.rollout.prompt_length=4096",
    "actor_rollout_ref.rollout.response_length=1024",
    "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3",
    "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=128",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.actor.use_dynamic_bsz=false",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
]


def console_script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).parent / name
    result = subprocess.run([str(executable), *args], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    return result


@pytest.fixture(scope="module")
def eval_data(trained_run, task_writer) -> Path:
    """The tasks above as a data folder (val.parquet, corpus.jsonl)."""
    questions = {task_id: f"Who wrote the first program? {marker}" for task_id, marker in EVAL_TASKS.items()}
    return task_writer(trained_run.root / "eval_tasks", questions)


@pytest.fixture(scope="module")
def evaluated(trained_run, eval_data):
    """``actguide-eval`` of the run's ``global_step_2`` checkpoint (exported on the fly) on the tasks above."""
    data = eval_data
    env = dict(os.environ, ACTGUIDE_CORPUS=str(data / "corpus.jsonl"), TOKENIZERS_PARALLELISM="false")
    args = ["--model", str(trained_run.checkpoint), "--data", str(data / "val.parquet"), "--samples", str(K)]
    args += ["--device", "cpu"]
    result = console_script("actguide-eval", *args, *SETTINGS, env=env)
    return trained_run.checkpoint / "eval", result


def test_eval_gives_exact_unbiased_pass_at_k_and_how_each_trajectory_ended(evaluated):
    out, result = evaluated
    summary = json.loads((out / "eval.json").read_text())
    assert summary["samples_per_prompt"] == K and summary["val_level"] == 0
    (source,) = summary["sources"].values()
    assert (source["prompts"], source["trajectories"], source["incomplete_prompts"]) == (6, 18, 0)
    # right answers per prompt: 3, 2, 1, 0, 0, 0 of K = 3
    assert source["pass_at_k"] == pytest.approx({"1": 6 / 18, "2": (1 + 1 + 2 / 3) / 6, "3": 3 / 6})
    assert source["accuracy"] == pytest.approx(6 / 18) and source["rounds"]["avg_pass@3"] == pytest.approx(6 / 18)
    assert source["outcomes"] == {"answered": 12, "turn_limit": 3, "length_limit": 3, "no_answer": 0}
    assert source["invalid_answers"] == 3  # the rambling answers were cut before </answer>
    records = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert len(records) == 18 and sorted({r["sample"] for r in records}) == [0, 1, 2]
    searches = [r for r in records if r["task_id"] == "searches"]
    assert all(r["stop_reason"] == "turn_limit" and len(r["tool_calls"]) == 2 and r["turns"] == 3 for r in searches)
    assert all(r["prompt"].startswith("<|im_start|>system") and r["reward_extra"]["acc"] in (0.0, 1.0) for r in records)
    assert "| pass@1 | pass@2 | pass@3 |" in (out / "eval.md").read_text()
    assert "| 0.333 | 0.444 | 0.500 |" in result.stdout  # the table, printed
    assert "correct=" in result.stderr  # the progress bar
    assert not (out / "model").exists()  # the on-the-fly export is removed afterwards


class AlwaysRightJudge(BaseHTTPRequestHandler):
    """A loopback OpenAI-compatible judge that grades every answer it is asked about as right (``A``)."""

    requests = 0

    def do_POST(self) -> None:  # http.server calls it by this name
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests += 1
        body = json.dumps({"choices": [{"message": {"content": "A"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


def test_two_evaluations_that_differ_only_in_a_reward_override_score_differently(
    trained_run, eval_data, evaluated, tmp_path
):
    """The logged config defines the reward: the same checkpoint and tasks as above, ``reward_mode=judge`` on the
    command line with a loopback judge that calls every answer right, and no reward variable in the environment."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlwaysRightJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACTGUIDE_REWARD", "ACTGUIDE_JUDGE"))}
    env.update(ACTGUIDE_CORPUS=str(eval_data / "corpus.jsonl"), TOKENIZERS_PARALLELISM="false")
    kwargs = "reward.custom_reward_function.reward_kwargs"
    judge = [f"{kwargs}.reward_mode=judge", f"{kwargs}.judge_base_url=http://127.0.0.1:{server.server_port}",
             f"{kwargs}.judge_model=loopback"]  # fmt: skip
    args = ["--model", str(trained_run.checkpoint), "--data", str(eval_data / "val.parquet")]
    try:
        console_script("actguide-eval", *args, "--samples", str(K), "--device", "cpu", "--out", str(tmp_path),
                       *SETTINGS, *judge, env=env)  # fmt: skip
    finally:
        server.shutdown()
    (rule,) = json.loads((evaluated[0] / "eval.json").read_text())["sources"].values()
    (judged,) = json.loads((tmp_path / "eval.json").read_text())["sources"].values()
    assert rule["accuracy"] == pytest.approx(6 / 18)  # the rule: only the scripted right answers
    # the judge: every trajectory that gave an answer (12 of 18: not the turn-limited nor the cut-off ones)
    assert judged["accuracy"] == pytest.approx(12 / 18) and AlwaysRightJudge.requests >= 1


def test_export_loads_with_transformers_and_matches_the_checkpointed_actor(trained_run, evaluated, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint, target = trained_run.checkpoint, tmp_path / "exported"
    console_script("actguide-export", str(checkpoint), "--out", str(target))
    names = {p.name for p in target.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    run_files = {"actguide_run_config.yaml", "actguide_tool_config.yaml", "actguide_level_cache.json"}
    assert run_files | {"eval.json", "eval.md"} <= names
    assert json.loads((target / "actguide_export.json").read_text())["source_checkpoint"] == str(checkpoint)

    exported = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
    shard = torch.load(checkpoint / "actor" / "model_world_size_1_rank_0.pt", weights_only=False, map_location="cpu")
    trained = {name: w.full_tensor() if hasattr(w, "full_tensor") else w for name, w in shard.items()}
    actor = AutoModelForCausalLM.from_config(exported.config, dtype=torch.float32).eval()
    actor.load_state_dict(trained)
    for name, weight in exported.state_dict().items():  # verl's merger writes bfloat16: exact up to that cast
        assert torch.equal(weight, trained[name].to(torch.bfloat16).float()), name

    tokenizer = AutoTokenizer.from_pretrained(target)
    record = json.loads((checkpoint / "eval" / "trajectories.jsonl").read_text().splitlines()[0])
    ids = torch.tensor([tokenizer.encode(record["prompt"] + record["response"], add_special_tokens=False)])
    with torch.no_grad():
        logp_exported, logp_actor = (
            torch.log_softmax(model(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]) for model in (exported, actor)
        )
    assert ids.shape[1] > 300
    assert (logp_exported - logp_actor).abs().max() < 2e-2  # bfloat16 weights against the fp32 checkpoint


def test_analyze_training_on_the_runs_real_metrics(trained_run, tmp_path):
    out = tmp_path / "analysis"
    assert analyze.main(["training", str(trained_run.metrics_file), "--label", "actguide", "--out", str(out)]) == 0
    series = json.loads((out / "training.json").read_text())["actguide"]["series"]
    assert series["Reachability barrier: hard groups"]["points"] == 2
    assert series["Guidance needed: mean k*/L of guided groups"]["max"] > 0
    assert series["Response length: mean response length"]["min"] > 0
    assert imread(out / "training.png").shape[0] > 300
