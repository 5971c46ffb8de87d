"""The house rules, read from the syntax tree of every module (after Polygraphy's test_no_cli_deps):

- the ground (``tamdeploy/*.py``: errors, files, console, compare, onnx_model, onnx_runtime) imports only
  the ground;
- ``models`` and ``plugins`` import neither ``exporters`` nor ``deploy``; ``exporters`` never imports
  ``deploy``; nothing below the CLI imports ``tamdeploy.cli``; a command never imports the app;
- no import circles, counting imports inside functions too (a lazy import keeps a circle alive).

Every import statement counts, wherever it stands, except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast

import pytest
from helpers import REPO_ROOT

# where each import root lives in the repository (pyproject's package-dir)
PACKAGE_DIRS = {"tamdeploy": "tamdeploy", "tamdeploy.models": "models", "tamdeploy.exporters": "exporters",
                "tamdeploy.plugins": "plugins", "tamdeploy.deploy": "deploy"}
GROUND = "ground"

# layer -> layers it must not import
FORBIDDEN = {
    GROUND: ("tamdeploy.models", "tamdeploy.exporters", "tamdeploy.plugins", "tamdeploy.deploy", "tamdeploy.cli"),
    "tamdeploy.models": ("tamdeploy.exporters", "tamdeploy.deploy", "tamdeploy.cli"),
    "tamdeploy.plugins": ("tamdeploy.exporters", "tamdeploy.deploy", "tamdeploy.cli"),
    "tamdeploy.exporters": ("tamdeploy.deploy", "tamdeploy.cli"),
    "tamdeploy.deploy": ("tamdeploy.cli",),
    "tamdeploy.cli.command": ("tamdeploy.cli.app",),
}


def repository_modules() -> dict[str, str]:
    """Module name -> source, for every module of the installed package, read from the repository."""
    modules: dict[str, str] = {}
    for package, folder in PACKAGE_DIRS.items():
        root = REPO_ROOT / folder
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "tamdeploy" and parts and parts[0] in {"models", "exporters", "plugins", "deploy"}:
                continue  # not there: those packages live in their own top-level folders
            modules[".".join([package, *parts])] = path.read_text()
    return modules


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(module: str, source: str) -> set[str]:
    """The tamdeploy modules ``module`` imports (``from a.b import c`` names a.b.c when that is a module;
    the caller resolves it), anywhere in the file but under ``if TYPE_CHECKING``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: relative imports are not used in this tree"
            base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return {name for name in found if name == "tamdeploy" or name.startswith("tamdeploy.")}


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
    """module -> the repository modules it imports (names that are attributes, not modules, dropped)."""
    return {m: {name for name in imports_of(m, src) if name in modules and name != m} for m, src in modules.items()}


def layer_of(module: str) -> str:
    if module.startswith("tamdeploy.cli."):
        return "tamdeploy.cli.command" if module.endswith("_cmd") else "tamdeploy.cli"
    for package in ("tamdeploy.models", "tamdeploy.exporters", "tamdeploy.plugins", "tamdeploy.deploy"):
        if module == package or module.startswith(package + "."):
            return package
    return GROUND if module != "tamdeploy" else "tamdeploy"


def layering_violations(modules: dict[str, str]) -> list[str]:
    problems = []
    for module, targets in import_graph(modules).items():
        for target in sorted(targets):
            for banned in FORBIDDEN.get(layer_of(module), ()):
                if target == banned or target.startswith(banned + "."):
                    problems.append(f"{module} imports {target}")
    return problems


def import_cycles(modules: dict[str, str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = import_graph(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return cycles


def test_the_tree_keeps_its_layers():
    modules = repository_modules()
    assert "tamdeploy.deploy.runners.base" in modules and "tamdeploy.cli.app" in modules
    assert layering_violations(modules) == []


def test_the_tree_has_no_import_circles():
    assert import_cycles(repository_modules()) == []


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("tamdeploy.models.registry", "def f():\n    from tamdeploy.deploy.runners import open_runner\n",
     "tamdeploy.models.registry imports tamdeploy.deploy.runners"),
    ("tamdeploy.exporters.parity", "import tamdeploy.deploy.bench\n",
     "tamdeploy.exporters.parity imports tamdeploy.deploy.bench"),
    ("tamdeploy.deploy.demo", "from tamdeploy.cli.options import user_errors\n",
     "tamdeploy.deploy.demo imports tamdeploy.cli.options"),
    ("tamdeploy.cli.bench_cmd", "from tamdeploy.cli.app import app\n",
     "tamdeploy.cli.bench_cmd imports tamdeploy.cli.app"),
    ("tamdeploy.files", "from tamdeploy.models.config import ModelConfig\n",
     "tamdeploy.files imports tamdeploy.models.config"),
])
def test_an_upward_import_is_caught(module, source, expected):
    modules = repository_modules()
    modules[module] = modules[module] + "\n" + source
    assert expected in layering_violations(modules)


def test_type_checking_imports_do_not_count():
    modules = repository_modules()
    modules["tamdeploy.models.registry"] += "\nif TYPE_CHECKING:\n    from tamdeploy.deploy.runners import Runner\n"
    assert layering_violations(modules) == []


def test_a_lazy_circle_is_caught():
    modules = repository_modules()
    assert "tamdeploy.deploy.check.bisect" in import_graph(modules)["tamdeploy.deploy.check.verify"]
    modules["tamdeploy.deploy.check.bisect"] += "\ndef f():\n    from tamdeploy.deploy.check.verify import verify\n"
    cycles = import_cycles(modules)
    assert any({"tamdeploy.deploy.check.bisect", "tamdeploy.deploy.check.verify"} <= set(c) for c in cycles)


def test_every_package_opens_with_a_map():
    """Each package's __init__ says what it holds (a docstring of a few lines, not one word)."""
    for folder in PACKAGE_DIRS.values():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            doc = ast.get_docstring(ast.parse(init.read_text())) or ""
            assert len(doc.split()) >= 12, f"{init.relative_to(REPO_ROOT)} has no real docstring"

