"""``actguide-analyze levels`` and ``barrier`` on the scripted plan-following policy, whose thresholds are known.

A ``follow`` task with threshold K executes its plan action by action and answers right only if at least K
reference actions were executed: at level k it succeeds iff k >= K (Finding 2's minimal sufficient level is K),
and continued unguided from the state after j guided actions it succeeds iff j >= K (Finding 1's barrier is at
j = K). The agent loop, tools, reward and a tiny model's log-probs are the real ones, in this process.
"""

from __future__ import annotations

import json

import pytest
from matplotlib.image import imread

from actguide_plugin.cli import analyze
from actguide_plugin.cpu.scripted_policy import task_marker

pytestmark = pytest.mark.integration

THRESHOLDS = {"easy": 0, "needs-1": 1, "needs-2": 2, "impossible": 9}
SETTINGS = [
    "actor_rollout_ref.rollout.prompt_length=2048",
    "actor_rollout_ref.rollout.response_length=1024",
    "data.max_prompt_length=2048",
    "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=5",
    "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=256",
]


@pytest.fixture(scope="module")
def follow_tasks(tmp_path_factory, scripted_data):
    questions = {
        task_id: f"Who wrote the first program? {task_marker(level, 'Ada Lovelace', calls=0, follow=True)}"
        for task_id, level in THRESHOLDS.items()
    }
    return scripted_data(tmp_path_factory.mktemp("findings"), questions) / "train.parquet"


def run(command: str, model, data, out, *extra: str) -> dict:
    argv = [command, "--model", str(model), "--data", str(data), "--samples", "2", "--scripted", "--out", str(out)]
    assert analyze.main([*argv, *extra, *SETTINGS]) == 0
    assert imread(out / f"{command}.png").ndim == 3
    return json.loads((out / f"{command}.json").read_text())


def test_levels_recovers_each_tasks_minimal_sufficient_level(follow_tasks, tiny_bytes_model, corpus_env, tmp_path):
    summary = run("levels", tiny_bytes_model, follow_tasks, tmp_path)
    k_star = {task["task_id"]: task["k_star"] for task in summary["tasks"]}
    assert k_star == {"easy": 0, "needs-1": 1, "needs-2": 2, "impossible": None}
    rates = {task["task_id"]: task["success_rate"] for task in summary["tasks"]}
    assert rates["needs-2"] == [0.0, 0.0, 1.0, 1.0]
    assert summary["k_star_histogram"]["unreached (k=L fails)"] == 1
    assert sorted(summary["shift_by_level"]) == ["1", "2", "3"]
    assert all(s["count"] == 4 * 2 for s in summary["shift_by_level"].values())  # 4 tasks x K samples per level


def test_barrier_finds_where_unguided_continuations_start_to_succeed(
    follow_tasks, tiny_bytes_model, corpus_env, tmp_path
):
    summary = run("barrier", tiny_bytes_model, follow_tasks, tmp_path, "--level-ratio", "1.0")
    per_task = {task["task_id"]: task for task in summary["per_task"]}
    # the full plan (3 actions) was executed; K = 2 continuations from each of the 4 states j = 0..3
    assert per_task["needs-1"]["prefix_successes"] == [0, 2, 2, 2]
    assert per_task["needs-2"]["prefix_successes"] == [0, 0, 2, 2]
    assert per_task["easy"]["prefix_successes"] == [2, 2, 2, 2] and not per_task["easy"]["hard"]
    assert per_task["impossible"]["prefix_successes"] == [0, 0, 0, 0] and not per_task["impossible"]["guided_correct"]
    assert summary["groups"]["hard"]["prefix_pass_at_k"] == pytest.approx({"0": 0, "1": 1 / 3, "2": 2 / 3, "3": 2 / 3})
    assert all(len(task["logprob_diff_per_turn"]) == 4 for task in per_task.values())  # 3 tool turns + answer
