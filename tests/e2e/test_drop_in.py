"""A verl user with a Search-R1-style GRPO setup switches to ActGuide-RL keeping their rows, tools, reward and yaml.

Their rows are in verl's Search-R1 format (``searchR1_nq``, ``{"target": [...]}`` ground truths, ``tools_kwargs``
for their tool, ``agent_name = tool_agent``); their tool is their own class (:mod:`user_search_tool`,
``search(query_list)``) against ``actguide-retriever``; their reward is verl's EM scorer for ``searchR1_nq`` (no
reward in their config); their yaml is theirs, run with ``--config-path``/``--config-name``. They attach reference
actions with ``actguide-preprocess attach`` and change the entry point. Two steps of ``actguide-train`` (the
scripted policy: it executes the plan it is shown, so a guided group succeeds) show the rows unchanged, a plan
in their tool's name and arguments, and their reward.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actguide_plugin.cpu.scripted_policy import task_marker
from actguide_plugin.names import GUIDED_PROMPT_TEXT, IS_GUIDED_FIELD, ROWS_DUMP_FILE
from data_preprocess.cli import main as preprocess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_preprocess"))
from preprocess_samples import search_r1_rows, search_r1_tool_yaml

HERE = Path(__file__).resolve().parent

# A: rescued at k = 1 (the plan is executed, then the right answer; every other answer is wrong, so the group is
# mixed). B: answers "Mount Obel range" for the gold "Mount Obel": 1 under the recipe's token-F1 reward, 0 under
# verl's exact match, so its rows show whose reward scored them; it has no trace and stays unguided.
QUESTIONS = [
    f"Who founded Tarnfield Rowing Club? {task_marker(1, 'Ada Tarn', every=2, follow=True)}",
    f"Where is Mount Obel? {task_marker(0, 'Mount Obel range', calls=0)}",
]
GOLDS = [["Ada Tarn"], ["Mount Obel"]]
CORPUS = [
    {"id": "1", "title": "Tarnfield Rowing Club", "text": "Tarnfield Rowing Club was founded by Ada Tarn in 1887."},
    {"id": "2", "title": "Mount Obel", "text": "Mount Obel is a peak in the Vask range."},
]
USER_YAML = """\
hydra:
  searchpath:
    - pkg://verl.trainer.config
    - pkg://recipe.actguide.config   # only for actguide_cpu_settings: the test machine has no GPU
defaults:
  - ppo_trainer
  - actguide_cpu_settings
  - _self_
algorithm:
  adv_estimator: grpo
data:
  train_batch_size: 2
  max_prompt_length: 1024
  max_response_length: 512
  return_raw_chat: true
actor_rollout_ref:
  actor:
    ppo_mini_batch_size: 2
    use_kl_loss: true
    kl_loss_coef: 0.001
    optim: {lr: 1e-5, weight_decay: 0.0}
  rollout:
    name: scripted
    n: 4
    prompt_length: 1024
    response_length: 512
    multi_turn:
      enable: true
      format: hermes
      max_assistant_turns: 4
trainer:
  total_epochs: 1000
  total_training_steps: 2
  val_before_train: false
  test_freq: -1
  save_freq: -1
  logger: [console, file]
"""


@pytest.fixture
def retriever(tmp_path, unused_tcp_port):
    """``actguide-retriever`` over the corpus, on a free loopback port; yields its Search-R1 /retrieve url."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in CORPUS), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from actguide_plugin.retriever.server import main; main()", "--corpus", str(corpus),
         "--port", str(unused_tcp_port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                httpx.get(f"{base}/health", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "retriever did not come up"
                time.sleep(0.2)
        yield f"{base}/retrieve"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_search_r1_user_switches_keeping_rows_tools_reward_and_yaml(tmp_path, tiny_bytes_model, retriever):
    # the user's setup
    rows = tmp_path / "searchR1" / "train.parquet"
    rows.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(search_r1_rows(QUESTIONS, GOLDS)), rows)
    tools = tmp_path / "search_tool_config.yaml"
    tools.write_text(search_r1_tool_yaml("user_search_tool.UserSearchTool", retriever), encoding="utf-8")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "search_multiturn_grpo.yaml").write_text(USER_YAML, encoding="utf-8")
    traces = tmp_path / "traces.jsonl"  # in our own tool names, as convert's inputs are
    trace = {"question": QUESTIONS[0], "answer": "Ada Tarn", "final_answer": "Ada Tarn",
             "actions": [{"name": "web_search", "arguments": {"query": "Tarnfield Rowing Club founder"}}]}  # fmt: skip
    traces.write_text(json.dumps(trace) + "\n", encoding="utf-8")

    # docs/migrating.md, step 1: attach
    data = tmp_path / "data"
    assert preprocess(["attach", str(rows), "--actions", str(traces), "-o", str(data), "--tool-config", str(tools),
                       "--tool-map", "web_search=search", "--arg-map", "search.query=query_list"]) == 0  # fmt: skip
    before, after = pq.read_table(rows), pq.read_table(data / "train.parquet")
    for name in ("data_source", "prompt", "ability", "reward_model", "metadata"):
        assert after.column(name).equals(before.column(name)), name

    # step 2: their command line, another entry point
    work = tmp_path / "run"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
               VERL_FILE_LOGGER_PATH=str(work / "metrics.jsonl"), TOKENIZERS_PARALLELISM="false",
               PYTHONWARNINGS="ignore::UserWarning:verl.workers.engine")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "recipe.actguide.main_actguide", "--config-path", str(tmp_path / "conf"),
         "--config-name", "search_multiturn_grpo",
         f"actor_rollout_ref.model.path={tiny_bytes_model}",
         f"actor_rollout_ref.rollout.multi_turn.tool_config_path={tools}",
         f"data.train_files={data / 'train.parquet'}", f"data.val_files={data / 'train.parquet'}",
         f"trainer.default_local_dir={work / 'checkpoints'}", f"trainer.rollout_data_dir={work / 'rollouts'}"],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "layering the recipe's required settings over" in result.stderr
    assert "actguide-train: reward: verl's default_compute_score by each row's data_source" in result.stderr
    assert "'actguide_run': {'reward': \"verl's default_compute_score" in result.stdout  # the config verl logs

    steps = [json.loads(line)["data"] for line in (work / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert sum(step["actguide/rescued_groups"] for step in steps) >= 1

    # the plan was shown in the user's tool name and arguments
    dumped = [json.loads(line) for f in sorted((work / "rollouts").glob(ROWS_DUMP_FILE.format(step="*")))
              for line in f.read_text().splitlines()]  # fmt: skip
    guided = [row for row in dumped if row[IS_GUIDED_FIELD] > 0.5]
    assert guided
    for row in guided:
        plan = row[GUIDED_PROMPT_TEXT].split("Reference plan", 1)[1]
        assert '1. search: {"query_list":["Tarnfield Rowing Club founder"]}' in plan and "web_search" not in plan

    # the user's tool answered, and the user's reward (verl's exact match) scored every row
    generations = [
        json.loads(line) for f in (work / "rollouts").glob("[0-9]*.jsonl") for line in f.read_text().splitlines()
    ]
    founded = [g for g in generations if "Tarnfield" in g["input"]]
    assert any("founded by Ada Tarn in 1887" in g["output"] for g in founded)  # a page from the retriever
    assert {g["score"] for g in founded if "<answer>Ada Tarn</answer>" in g["output"]} == {1.0}
    obel = [g for g in generations if "Mount Obel?" in g["input"]]
    assert obel and all("<answer>Mount Obel range</answer>" in g["output"] and g["score"] == 0.0 for g in obel)
