"""The layout is the architecture: every package (and top-level module) of `gateway` says in its
docstring which others it may import (`Imports: a, b.`), the code keeps to it, the allowed
imports run one way (no cycles), and no module or class outgrows the size a reader can hold."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
# The package root re-exports the public surface and `__main__` only calls the CLI.
ROOTS = {"__init__", "__main__"}
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250
#: Classes allowed past MAX_CLASS_LINES, each with the size it may not outgrow and why.
LARGE_CLASSES = {
    # One message in, one out, on the hot path of every call: the relay keeps both directions'
    # in-flight tables, the held requests of a fetch and the uncommitted lines in one object, and
    # splitting it by direction would put a call between every message and its state. Its
    # fail-closed ladder (mediation.interface.ask) and the hub's routing tables already left it.
    ("session/relay.py", "Relay"): 340,
}


def unit_of(path: Path) -> str:
    """The top-level package or module of `gateway` that `path` belongs to."""
    return path.relative_to(GATEWAY).parts[0].removesuffix(".py")


@cache
def units() -> dict[str, Path]:
    """Each unit's file that carries its docstring: a package's `__init__`, a module itself."""
    found = {}
    for entry in sorted(GATEWAY.iterdir()):
        if entry.is_dir() and (entry / "__init__.py").exists():
            found[entry.name] = entry / "__init__.py"
        elif entry.suffix == ".py" and entry.stem not in ROOTS:
            found[entry.stem] = entry
    return found


@cache
def allowed() -> dict[str, frozenset[str]]:
    """The `Imports:` line of each unit's docstring, as a set of unit names (`*` for any)."""
    table = {}
    for name, path in units().items():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        found = re.search(r"^Imports: (.+?)\.$", doc, re.M)
        assert found, f"{path.relative_to(GATEWAY.parent)}: the docstring has no 'Imports: ...' line"
        names = [n.strip() for n in found.group(1).split(",")]
        table[name] = frozenset() if names == ["nothing"] else frozenset(names)
    return table


def imported_units(path: Path) -> set[tuple[str, int]]:
    """The `gateway` units `path` imports, with the line of each import."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "gateway":
                continue
            names = [alias.name for alias in node.names] if len(parts) == 1 else [parts[1]]
            found |= {(n, node.lineno) for n in names if n != "__version__"}
        elif isinstance(node, ast.Import):
            found |= {(a.name.split(".")[1], node.lineno) for a in node.names if a.name.startswith("gateway.")}
    return found


SOURCES = sorted(p for p in GATEWAY.rglob("*.py") if unit_of(p) not in ROOTS)


def test_every_name_in_an_imports_line_is_a_unit_of_the_gateway() -> None:
    for name, names in allowed().items():
        assert names <= set(units()) | {"*"}, f"{name}: Imports names {sorted(names - set(units()))}, not in gateway/"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(GATEWAY)))
def test_a_module_imports_only_what_its_package_docstring_allows(path: Path) -> None:
    unit = unit_of(path)
    permitted = allowed()[unit]
    if "*" in permitted:
        return
    for other, line in sorted(imported_units(path)):
        if other != unit:
            assert other in permitted, f"{path.relative_to(GATEWAY)}:{line} imports gateway.{other}; {unit} allows {sorted(permitted)}"


def test_the_allowed_imports_run_one_way() -> None:
    graph = {name: names - {"*"} for name, names in allowed().items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle allowed: {' -> '.join((*path, name))}"
        if name in done:
            return
        for other in sorted(graph.get(name, ())):
            visit(other, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(GATEWAY)))
def test_no_module_or_class_outgrows_what_a_reader_holds(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_MODULE_LINES, f"{path.relative_to(GATEWAY)} has {text.count(chr(10))} lines; split it"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            limit = LARGE_CLASSES.get((str(path.relative_to(GATEWAY)), node.name), MAX_CLASS_LINES)
            assert size <= limit, f"{path.relative_to(GATEWAY)}: class {node.name} has {size} lines; split it"


def test_every_package_declares_its_public_modules() -> None:
    for name, path in units().items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = [n for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)]
        assert declared, f"gateway/{name}/__init__.py declares no __all__"
