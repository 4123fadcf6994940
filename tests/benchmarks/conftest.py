"""The benchmark scripts are files, not a package: tests load them by path with ``load_benchmark(name)``.

A script may import a sibling script by name (``from demo_footprint import run_measured``), as it can when run as
``python benchmarks/<name>.py``: the folder is put on ``sys.path`` the same way.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("step_cost")``: the script ``benchmarks/step_cost.py`` as a module."""
    return _load
