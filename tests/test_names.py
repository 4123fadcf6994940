"""The names module: every ``ACTGUIDE_*`` environment variable is declared there once, with one default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from actguide_plugin import names

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("actguide_plugin", "data_preprocess", "recipe", "scripts", "benchmarks")
VARIABLE = re.compile(r"\bACTGUIDE_[A-Z_]*[A-Z]\b")


def source_files(*suffixes: str) -> list[Path]:
    return [path for folder in SOURCES for path in (REPO / folder).rglob("*") if path.suffix in suffixes]


def test_every_variable_the_code_and_configs_mention_is_declared():
    mentioned = {name for path in source_files(".py", ".yaml", ".sh") for name in VARIABLE.findall(path.read_text())}
    undeclared = mentioned - set(names.ENV_DEFAULTS) - set(names.RETIRED_ENV)
    assert not undeclared, f"declare these in actguide_plugin/names.py: {sorted(undeclared)}"


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    return {
        id(node.body[0].value)
        for node in nodes
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }


def test_only_the_names_module_spells_a_variable_in_code():
    """Elsewhere a variable is the constant, so its name and default have one place (docstrings may mention it)."""
    spelled = []
    for path in source_files(".py"):
        if path == REPO / "actguide_plugin" / "names.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = _docstrings(tree)
        spelled += [
            f"{path.relative_to(REPO)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and VARIABLE.search(node.value)
        ]  # fmt: skip
    assert not spelled


def test_a_value_is_the_variable_else_its_one_default(monkeypatch):
    monkeypatch.delenv(names.CORPUS_ENV, raising=False)
    assert names.env_value(names.CORPUS_ENV) == names.ENV_DEFAULTS[names.CORPUS_ENV]
    monkeypatch.setenv(names.CORPUS_ENV, "/data/corpus.jsonl")
    assert names.env_value(names.CORPUS_ENV) == "/data/corpus.jsonl"
    with pytest.raises(ValueError, match="ACTGUIDE_CORPSE is not an actguide-rl environment variable"):
        names.env_value("ACTGUIDE_CORPSE")
