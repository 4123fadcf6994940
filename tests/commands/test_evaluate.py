"""actguide-eval's config for verl's validation-only run, the guidance of validation prompts, export checks."""

from __future__ import annotations

import json

import pytest

from actguide_plugin.analysis.trajectory import build_record
from actguide_plugin.commands.evaluate import eval_overrides
from actguide_plugin.commands.export import export_checkpoint, is_checkpoint
from actguide_plugin.core.actions import Action, dumps_actions
from actguide_plugin.names import AGENT_NAME
from actguide_plugin.verl_glue.config import actguide_config, check_verl_config
from actguide_plugin.verl_glue.validation import collect_validation, validation_level
from recipe.actguide.main_actguide import compose_config


@pytest.fixture()
def data_files(tmp_path):
    files = [tmp_path / "a.parquet", tmp_path / "b c.parquet"]
    for path in files:
        path.write_bytes(b"")
    return files


def test_overrides_make_a_valid_val_only_run_of_the_recipe(tmp_path, data_files):
    import verl  # noqa: F401  (registers the actguide_path resolver the recipe yaml uses)

    overrides = eval_overrides(
        model_path=tmp_path / "model", data_files=data_files, out_dir=tmp_path / "out", samples=3, level_ratio=0.5
    )
    config = compose_config("actguide_cpu", overrides)
    assert config.trainer.val_only and config.trainer.val_before_train
    assert list(config.data.val_files) == [str(p) for p in data_files]  # the space survives hydra's parser
    assert list(config.data.train_files) == [str(data_files[0])]
    rollout = config.actor_rollout_ref.rollout
    assert (rollout.val_kwargs.n, rollout.val_kwargs.do_sample, rollout.val_kwargs.temperature) == (3, True, 1.0)
    assert not config.actor_rollout_ref.actor.use_kl_loss  # no reference model is built
    section = check_verl_config(config)  # what the entry point checks before Ray starts
    assert section.val_level_ratio == 0.5 and section.val_dump_dir == str(tmp_path / "out")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"samples": 0}, ValueError, "samples per prompt"),
        ({"data_files": []}, ValueError, "no data files"),
        ({"data_files": ["missing.parquet"]}, FileNotFoundError, "missing.parquet: no such data file"),
    ],
)
def test_bad_requests_are_refused(tmp_path, data_files, kwargs, error, message):
    request = {"model_path": tmp_path, "data_files": data_files, "out_dir": tmp_path, "samples": 2} | kwargs
    with pytest.raises(error, match=message):
        eval_overrides(**request)


def test_a_quote_in_a_data_path_is_refused(tmp_path):
    odd = tmp_path / "it's.parquet"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match="single quote"):
        eval_overrides(model_path=tmp_path, data_files=[odd], out_dir=tmp_path, samples=1)


def prompt(agent_name: str = AGENT_NAME, actions: int = 4) -> dict:
    reference = dumps_actions([Action("web_search", {"query": [str(i)]}) for i in range(actions)])
    return {"uid": "u1", "agent_name": agent_name, "extra_info": {"reference_actions": reference}}


def test_validation_prompts_are_unguided_unless_asked():
    assert validation_level(prompt(), actguide_config({})) == 0
    assert validation_level(prompt("tool_agent"), actguide_config({})) == 0  # any agent loop, unguided
    assert validation_level(prompt(), actguide_config({"val_level_ratio": 0.5})) == 2
    assert validation_level(prompt(actions=0), actguide_config({"val_level": 2})) == 0  # no plan to show
    with pytest.raises(ValueError, match="uid=u1 has agent_name='tool_agent'"):
        validation_level(prompt("tool_agent"), actguide_config({"val_level": 1}))


def test_export_refuses_what_is_not_a_checkpoint(tmp_path):
    (tmp_path / "model").mkdir()
    assert not is_checkpoint(tmp_path / "model")
    with pytest.raises(ValueError, match="not a verl FSDP checkpoint folder"):
        export_checkpoint(tmp_path / "model", tmp_path / "out")
    step = tmp_path / "global_step_3"
    (step / "actor").mkdir(parents=True)
    (step / "actor" / "fsdp_config.json").write_text("{}")
    assert is_checkpoint(step)
    with pytest.raises(ValueError, match="no model config"):
        export_checkpoint(step, tmp_path / "out")
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["global_step_3", "model"]


def records(task: str, verdicts: list[bool]) -> list[dict]:
    return [
        build_record(
            data_source="bench",
            task_id=task,
            sample=i,
            level=0,
            num_actions=1,
            score=float(right),
            success_threshold=0.0,
            stop_reason="stop",
            tool_calls=[],
            turns=1,
            response_mask=[1],
            prompt="P",
            response="<answer>x</answer>",
        ).to_dict()
        for i, right in enumerate(verdicts)
    ]


def test_a_validation_gives_metrics_and_writes_files_where_asked(tmp_path):
    raw = records("a", [True, False]) + records("b", [False, False])
    metrics = collect_validation(raw, actguide_config({}), samples_per_prompt=2, global_steps=5, val_only=False)
    assert metrics["val-actguide/bench/pass@2"] == 0.5 and metrics["val-actguide/bench/pass@1"] == 0.25
    assert not list(tmp_path.iterdir())  # no val_dump_dir: metrics only
    dump = actguide_config({"val_dump_dir": str(tmp_path)})
    collect_validation(raw, dump, samples_per_prompt=2, global_steps=5, val_only=False)  # training: one folder a step
    assert json.loads((tmp_path / "global_step_5" / "eval.json").read_text())["global_steps"] == 5
    collect_validation(raw, dump, samples_per_prompt=2, global_steps=0, val_only=True)  # actguide-eval: the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "eval.md", "global_step_5", "trajectories.jsonl"]
    assert collect_validation([], dump, samples_per_prompt=2, global_steps=6, val_only=False) == {}
