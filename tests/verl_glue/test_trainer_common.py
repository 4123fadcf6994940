"""What both trainers record of a run: the tool yaml as the run resolves it (corpus path, URLs, cache paths)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from actguide_plugin.names import CACHE_DIR_ENV, CORPUS_ENV, ENV_DEFAULTS
from actguide_plugin.verl_glue.plugin import shipped_path
from actguide_plugin.verl_glue.trainer_common import resolved_tool_config


def run_config(tool_config_path: str):
    return OmegaConf.create({"actor_rollout_ref": {"rollout": {"multi_turn": {"tool_config_path": tool_config_path}}}})


def test_the_shipped_tool_yamls_resolve_the_corpus_from_the_variable_else_its_one_default(monkeypatch):
    local = run_config(shipped_path("recipe/actguide/config/tools/search_local.yaml"))
    monkeypatch.delenv(CORPUS_ENV, raising=False)
    assert resolved_tool_config(local)["backend"]["corpus_path"] == ENV_DEFAULTS[CORPUS_ENV]
    monkeypatch.setenv(CORPUS_ENV, "/abs/corpus.jsonl")
    tools = resolved_tool_config(local)
    assert tools["backend"]["corpus_path"] == "/abs/corpus.jsonl"
    assert tools["tools"][0]["config"]["backend"]["corpus_path"] == "/abs/corpus.jsonl"  # the anchor, resolved
    monkeypatch.setenv(CACHE_DIR_ENV, "/cache")
    web = resolved_tool_config(run_config(shipped_path("recipe/actguide/config/tools/search_web_api.yaml")))
    assert web["backend"]["cache_path"] == "/cache/web_api.sqlite"


def test_a_tool_yaml_that_cannot_be_resolved_is_named(tmp_path):
    assert resolved_tool_config(OmegaConf.create({"actor_rollout_ref": {"rollout": {"multi_turn": {}}}})) is None
    bad = tmp_path / "tools.yaml"
    bad.write_text("backend:\n  corpus_path: ${actguide_env:ACTGUIDE_CORPSE}\n")
    with pytest.raises(ValueError, match=rf"tool_config_path={bad}: .*ACTGUIDE_CORPSE is not an actguide-rl"):
        resolved_tool_config(run_config(str(bad)))
