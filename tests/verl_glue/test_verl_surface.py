"""The upgrade surface: every verl symbol the recipe touches is in docs/architecture.md's table, and still exists.

The table is the one list. These tests fail (1) when a listed symbol is gone from the installed verl — an upgrade
then fails here, with every moved name at once, instead of deep inside a Ray worker — and (2) when code starts to
import, override, call or patch a verl name that the table does not list, so the list cannot go stale.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import verl

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
TABLE_HEADING = "## Every verl touchpoint"
KINDS = ("import", "subclass", "override", "private", "attribute", "substitution")
SOURCES = ("actguide_plugin", "recipe", "data_preprocess")  # where the recipe's code lives
VERL_ROOT = Path(verl.__file__).resolve().parent


@dataclass(frozen=True)
class Touchpoint:
    symbol: str  # dotted path from `verl`, e.g. verl.trainer.ppo.ray_trainer.RayPPOTrainer._update_actor
    kind: str
    where: str


@cache
def touchpoints() -> tuple[Touchpoint, ...]:
    """The rows of the table under :data:`TABLE_HEADING`."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert TABLE_HEADING in text, f"{ARCHITECTURE} has no {TABLE_HEADING!r} section"
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `verl"):
            continue
        symbol, kind, where = cells[0].strip("`"), cells[1], cells[2]
        assert kind in KINDS, f"{ARCHITECTURE}: {symbol}: kind {kind!r} is not one of {KINDS}"
        rows.append(Touchpoint(symbol, kind, where))
    assert rows, f"{ARCHITECTURE}: the {TABLE_HEADING!r} table has no rows"
    return tuple(rows)


def _instance_attribute(cls: type, name: str) -> bool:
    """Whether a verl class (or a verl base of it) assigns ``self.<name>`` in its source."""
    pattern = re.compile(rf"self\.{re.escape(name)}\s*(:[^=]*)?=")
    return any(base.__module__.startswith("verl") and pattern.search(inspect.getsource(base)) for base in cls.__mro__)


def resolves(symbol: str) -> bool:
    """Import the longest module prefix of ``symbol``, then look up the rest attribute by attribute."""
    parts = symbol.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
            break
        except ModuleNotFoundError:
            continue
    rest = parts[split:]
    for position, name in enumerate(rest):
        cls = inspect.unwrap(found)
        cls = getattr(cls, "__ray_actor_class__", cls)  # a Ray actor class: look at the class it wraps
        if hasattr(cls, name):
            found = getattr(cls, name)
        elif inspect.isclass(cls) and position == len(rest) - 1:
            return _instance_attribute(cls, name)
        else:
            return False
    return True


def test_every_listed_verl_symbol_still_exists():
    missing = [f"{t.symbol} ({t.kind}; used in {t.where})" for t in touchpoints() if not resolves(t.symbol)]
    assert not missing, "verl symbols the recipe relies on are gone or moved:\n" + "\n".join(missing)


def test_each_symbol_is_listed_once():
    symbols = [t.symbol for t in touchpoints()]
    assert len(symbols) == len(set(symbols)), sorted({s for s in symbols if symbols.count(s) > 1})


def _python_files() -> list[Path]:
    return [path for source in SOURCES for path in sorted((ROOT / source).rglob("*.py"))]


def verl_imports() -> dict[str, set[str]]:
    """``{symbol: files}`` of every ``from verl... import name`` and ``import verl...`` in the recipe's code."""
    found: dict[str, set[str]] = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "verl":
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.split(".")[0] == "verl"]
            else:
                continue
            for name in names:
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def assert_listed(found: dict[str, object], listed: set[str], what: str) -> None:
    """Every key of ``found`` (a symbol or name, with where it was found) is in ``listed``, else one clear list."""
    unlisted = sorted(f"{key} ({where})" for key, where in found.items() if key not in listed)
    assert not unlisted, f"{what} missing from {ARCHITECTURE.name}'s table:\n" + "\n".join(unlisted)


def test_every_verl_import_is_listed():
    found = {symbol: "in " + ", ".join(sorted(files)) for symbol, files in verl_imports().items()}
    assert_listed(found, {t.symbol for t in touchpoints()}, "verl imports")


def _our_classes_on_verl() -> list[type]:
    """Every class of the recipe with a verl class among its bases (Ray actor classes: the class they wrap)."""
    classes = []
    for package in ("actguide_plugin", "recipe.actguide"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                ours = inspect.isclass(value) and value.__module__ == module.__name__
                if ours and any(base.__module__.startswith("verl") for base in value.__mro__[1:]):
                    classes.append(value)
    return classes


def verl_overrides() -> dict[str, str]:
    """``{verl owner.method: our class}`` for every verl method or attribute our classes (or mixins) redefine."""
    found = {}
    for cls in _our_classes_on_verl():
        ours = [base for base in cls.__mro__ if base.__module__.split(".")[0] in ("actguide_plugin", "recipe")]
        verl_bases = [base for base in cls.__mro__ if base.__module__.startswith("verl")]
        for name in {name for base in ours for name in vars(base)}:
            if name.startswith("__") or name == "_abc_impl":
                continue
            owner = next((base for base in verl_bases if name in vars(base)), None)
            if owner is not None:
                found[f"{owner.__module__}.{owner.__qualname__}.{name}"] = f"{cls.__module__}.{cls.__qualname__}"
    return found


def test_every_verl_method_we_override_is_listed():
    found = {symbol: f"by {by}" for symbol, by in verl_overrides().items()}
    assert_listed(found, {t.symbol for t in touchpoints() if t.kind == "override"}, "verl methods overridden")


@cache
def _verl_source_names() -> frozenset[str]:
    names: set[str] = set()
    for path in VERL_ROOT.rglob("*.py"):
        names.update(re.findall(r"\b_[a-z][a-z0-9_]*\b", path.read_text(encoding="utf-8", errors="replace")))
    return frozenset(names)


NOT_VERL = {"ray", "torch", "os", "sys"}  # roots of attribute chains that are other libraries' internals


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def private_verl_names() -> dict[str, set[str]]:
    """``{_name: files}``: private attribute names the recipe reads, calls or assigns on an object but never defines
    itself, and that verl's source defines — verl internals the recipe depends on."""
    used: dict[str, set[str]] = {}
    defined: set[str] = set()
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if _root_name(node) in NOT_VERL:
                    continue
                if isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name) and node.value.id == "self":
                    defined.add(node.attr)
                else:
                    used.setdefault(node.attr, set()).add(str(path.relative_to(ROOT)))
    return {name: files for name, files in used.items() if name not in defined and name in _verl_source_names()}


def test_every_private_verl_name_we_use_is_listed():
    found = {name: "in " + ", ".join(sorted(files)) for name, files in private_verl_names().items()}
    assert_listed(found, {t.symbol.rsplit(".", 1)[1] for t in touchpoints()}, "private verl names used")


def verl_substitutions() -> dict[str, str]:
    """``{symbol: file}`` of every assignment to an attribute of a name imported from verl, and every
    ``rebound(module, name, ...)`` of :mod:`actguide_plugin.verl_glue.trainer_common` (run-time substitutions)."""
    found = {}
    for path in _python_files():
        for scope in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(scope, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            bound = {}  # local name -> dotted verl path, for imports directly in this scope
            for node in scope.body:
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "verl":
                    bound.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
                elif isinstance(node, ast.Import):
                    bound.update({alias.asname or alias.name: alias.name for alias in node.names
                                  if alias.name.split(".")[0] == "verl"})  # fmt: skip
            for node in ast.walk(scope):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "rebound":  # trainer_common.rebound
                    module, name = (arg.value for arg in node.args[:2])
                    found[f"{module}.{name}"] = str(path.relative_to(ROOT))
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        patched = isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        if patched and target.value.id in bound:
                            found[f"{bound[target.value.id]}.{target.attr}"] = str(path.relative_to(ROOT))
    return found


def test_every_run_time_substitution_is_listed():
    found = {symbol: f"in {file}" for symbol, file in verl_substitutions().items()}
    listed = {t.symbol for t in touchpoints() if t.kind == "substitution"}
    assert_listed(found, listed, "verl attributes patched at run time")


def test_the_checks_would_catch_a_moved_symbol():
    # the lookups themselves: a real symbol resolves, a renamed one, a missing instance attribute and a missing
    # module do not (so a verl upgrade that moves a name fails the first test above)
    assert resolves("verl.trainer.ppo.ray_trainer.RayPPOTrainer._update_actor")
    assert resolves("verl.trainer.ppo.ray_trainer.RayPPOTrainer.global_steps")  # set in fit() as self.global_steps
    assert not resolves("verl.trainer.ppo.ray_trainer.RayPPOTrainer._update_actor_renamed")
    assert not resolves("verl.trainer.ppo.ray_trainer.RayPPOTrainer.no_such_attribute")
    assert not resolves("verl.no_such_module.Thing")
