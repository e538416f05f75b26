"""The harness's layers have no hidden doors.

``harness/`` is layered (docs/design.md, "Layout"): ``core`` < ``targets`` < ``run`` < ``checks``
< ``reports`` < ``plugin`` < ``cli``. A module may import its own layer and the layers below it,
never one above; the top-level building blocks for case authors (``metrics``, ``audio``,
``strategies``) import ``core`` only; ``__main__`` (the command line) imports anything. An import
inside a function hides a dependency from whoever reads the module's head, so harness-internal
imports sit at module level except where one loads an optional runtime or keeps the pytest entry
point light (listed below, each with its reason).

Every import is read with ``ast``, module-level and inside functions, relative and absolute
(``importlib.import_module`` with a literal name too), without importing anything. An import under
``if TYPE_CHECKING:`` counts for the layers but not for cycles (it never runs).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "harness"

#: the layers from the bottom up; a module may import its own layer and those before it
LAYERS = ("core", "targets", "run", "checks", "reports", "plugin", "cli")

#: top-level modules for case authors: they may import ``core`` and nothing else of the harness
BUILDING_BLOCKS = {"harness.metrics", "harness.audio", "harness.strategies"}

#: modules that may import any layer: the command line's entry point, and the package itself
#: (whose public names resolve on first use, through ``importlib`` with a computed name)
ANYTHING = {"harness", "harness.__main__"}

_LIGHT_ENTRY = "the pytest entry point, loaded by every pytest run in the environment, imports no torch"
_FAST_HELP = "the console script's --help answers without importing torch (tests/test_cli.py: under 3 s)"

#: (module, imported module) -> why the import stays inside a function
IN_FUNCTION_ALLOWED: dict[tuple[str, str], str] = {
    ("harness.plugin", "harness.plugin.active"): (
        f"{_LIGHT_ENTRY}: the active plugin is registered only when the run asks for conformance"
    ),
    ("harness.plugin", "harness.core.registry"): f"{_LIGHT_ENTRY}: the registry only for --conformance-shard",
    ("harness.cli.overhead", "harness.cli.run_clock"): (
        "imported for its effect: the least-work process (--bare) times the runtimes' runs as the "
        "harness's process does, and only that process"
    ),
    **{
        ("harness.__main__", imported): _FAST_HELP
        for imported in (
            "harness.checks.localize",
            "harness.cli.bundle",
            "harness.cli.overhead",
            "harness.cli.project",
            "harness.core.registry",
            "harness.reports.html",
            "harness.reports.repro",
            "harness.run.cache",
            "harness.run.external",
            "harness.run.recorded",
            "harness.targets",
            "harness.targets.adopt",
        )
    },
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool
    type_only: bool  # under ``if TYPE_CHECKING:``


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(HARNESS.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(HARNESS.rglob("*.py"))}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(
    importer: str, is_package: bool, module: str | None, level: int, names: list[str], known: set[str]
) -> list[str]:
    """The harness modules a ``from ... import`` statement loads (a name that is a submodule
    counts as that module, any other name as the module it comes from)."""
    if level:
        base = importer.split(".")
        if not is_package:
            base.pop()
        if level > 1:
            base = base[: len(base) - (level - 1)]
        source = ".".join([*base, module] if module else base)
    else:
        source = module or ""
    if source != "harness" and not source.startswith("harness."):
        return []
    found = []
    for name in names:
        submodule = f"{source}.{name}"
        found.append(submodule if submodule in known else source)
    return sorted(set(found))


class _Collector(ast.NodeVisitor):
    def __init__(self, importer: str, is_package: bool, known: set[str]) -> None:
        self.importer = importer
        self.is_package = is_package
        self.known = known
        self.depth = 0  # functions (and lambdas) around the current node
        self.type_checking = 0  # ``if TYPE_CHECKING:`` blocks around it
        self.found: list[Import] = []

    def _add(self, imported: str, node: ast.AST) -> None:
        if imported != self.importer:
            self.found.append(
                Import(self.importer, imported, node.lineno, self.depth > 0, self.type_checking > 0)
            )

    def _in_function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _in_function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
        if name != "TYPE_CHECKING":
            self.generic_visit(node)
            return
        self.type_checking += 1
        for child in node.body:
            self.visit(child)
        self.type_checking -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "harness" or alias.name.startswith("harness."):
                self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        names = [alias.name for alias in node.names]
        for imported in _resolve(self.importer, self.is_package, node.module, node.level, names, self.known):
            self._add(imported, node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if first.value == "harness" or first.value.startswith("harness."):
                    self._add(first.value, node)
        self.generic_visit(node)


def _imports() -> list[Import]:
    modules = _modules()
    known = set(modules)
    found = []
    for name, path in modules.items():
        collector = _Collector(name, _is_package(path), known)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(collector.found)
    return found


def _layer(module: str) -> str:
    """``core`` ... ``cli``, ``blocks`` for the building blocks, ``anything`` for the entry points."""
    if module in ANYTHING:
        return "anything"
    if module in BUILDING_BLOCKS:
        return "blocks"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS, BUILDING_BLOCKS or ANYTHING")


def _allowed(importer: str, imported: str) -> bool:
    source, target = _layer(importer), _layer(imported)
    if source == "anything":
        return True
    if source == "blocks":
        return target == "core"
    if target in ("anything", "blocks"):
        return False  # layers build on core, not on the entry points or the authors' blocks
    return LAYERS.index(target) <= LAYERS.index(source)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def _one_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One closed path through a strongly connected component, to show in the message."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth-first, for the shortest cycle back to start
        following = []
        for node in frontier:
            for successor in sorted(edges.get(node, ()) & members):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    return component


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return _imports()


def test_the_walk_sees_every_kind_of_import(imports: list[Import]) -> None:
    """The walk is not vacuous: it finds relative, absolute and in-function imports."""
    pairs = {(item.importer, item.imported) for item in imports}
    assert ("harness.targets", "harness.targets.base") in pairs  # from .base import ...
    assert ("harness.plugin", "harness.plugin.active") in pairs  # importlib.import_module("...")
    assert any(item.in_function for item in imports)
    assert len(imports) > 100


def test_no_import_cycle(imports: list[Import]) -> None:
    edges: dict[str, set[str]] = {}
    for item in imports:
        if not item.type_only:
            edges.setdefault(item.importer, set()).add(item.imported)
    cycles = _cycles(edges)
    assert not cycles, "import cycles between harness modules:\n" + "\n".join(
        f"  {len(component)} modules: {', '.join(component)}\n    e.g. {' -> '.join(_one_cycle(component, edges))}"
        for component in cycles
    )


def test_no_import_goes_up_a_layer(imports: list[Import]) -> None:
    upward = sorted(
        f"  {item.importer}:{item.line} ({_layer(item.importer)}) imports {item.imported} ({_layer(item.imported)})"
        for item in imports
        if not _allowed(item.importer, item.imported)
    )
    assert not upward, (
        f"imports that go up the layers {' < '.join(LAYERS)} (building blocks import core only):\n"
        + "\n".join(upward)
    )


def test_harness_imports_sit_at_module_level(imports: list[Import]) -> None:
    hidden = sorted(
        f"  {item.importer}:{item.line} imports {item.imported}"
        for item in imports
        if item.in_function and (item.importer, item.imported) not in IN_FUNCTION_ALLOWED
    )
    assert not hidden, (
        "harness-internal imports inside functions (hoist them, or add the pair to "
        "IN_FUNCTION_ALLOWED with the reason):\n" + "\n".join(hidden)
    )


def test_every_exception_is_still_needed(imports: list[Import]) -> None:
    """The lists shrink with the code: an entry no import needs any more is removed."""
    in_function = {(item.importer, item.imported) for item in imports if item.in_function}
    stale = sorted(f"  IN_FUNCTION_ALLOWED {pair}" for pair in set(IN_FUNCTION_ALLOWED) - in_function)
    assert not stale, "exceptions that no import needs any more (remove them):\n" + "\n".join(stale)
