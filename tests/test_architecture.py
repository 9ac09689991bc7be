"""Architecture checks read from the source with `ast`: import graph and function length.

The import graph counts every import of a project module, at module level and inside functions:
both run the imported file, so both can close a circle once called.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("interir", "app", "viz")
MAX_FUNCTION_LINES = 100
LONG_MARK = "# long:"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files() -> dict[str, Path]:
    """Every module under the project packages, by dotted name."""
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute dotted name a `from ... import` refers to (its base, not the names)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported_names(module: str, path: Path) -> set[str]:
    """Dotted names this module imports anywhere in its body (candidates, not yet filtered)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            names.add(base)
            # `from pkg import sub` imports the submodule pkg.sub when it exists.
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _project_target(name: str, modules: dict[str, Path]) -> str | None:
    """The project module a dotted name lands on: itself, else its nearest known parent."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Edges module -> project modules it imports.

    Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`; those parent edges are
    left out on purpose, because every submodule of a package would otherwise sit in a circle
    with a package `__init__` that re-exports it. Imports of a package itself (its `__init__`)
    do count.
    """
    modules = _source_files()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {_project_target(n, modules) for n in _imported_names(module, path)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _all_imports(pkg: str) -> dict[str, set[str]]:
    modules = _source_files()
    return {m: _imported_names(m, p) for m, p in modules.items() if m.split(".")[0] == pkg}


def _hits(pkg: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} imports {n}"
        for m, names in _all_imports(pkg).items()
        for n in names
        if n.split(".")[0] in forbidden
    )


def test_find_cycle_detects_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_relative_import_resolution() -> None:
    node = ast.parse("from ..viz import figures").body[0]
    assert _resolve("interir.commands.report", False, node) == "interir.viz"
    node = ast.parse("from . import trace").body[0]
    assert _resolve("interir", True, node) == "interir"
    assert _resolve("interir.commands.report", False, node) == "interir.commands"


def test_graph_sees_function_level_imports() -> None:
    # report.py imports viz inside run(); the graph must still hold that edge.
    edges = import_graph()["interir.commands.report"]
    assert any(e == "viz" or e.startswith("viz.") for e in edges), edges


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_interir_never_imports_gradio_or_app() -> None:
    assert _hits("interir", ("gradio", "app")) == []


def test_viz_never_imports_app_or_gradio() -> None:
    assert _hits("viz", ("gradio", "app")) == []


def test_only_the_cli_imports_the_commands() -> None:
    # The commands are the CLI's front ends: a library module (or the app) that needs their
    # logic would pull a command module in; the logic belongs in the library instead.
    def is_command(m: str) -> bool:
        return m == "interir.commands" or m.startswith("interir.commands.")

    users = sorted(f"{m} imports {t}" for m, ts in import_graph().items() if not is_command(m)
                   and m != "interir.cli" for t in ts if is_command(t))
    assert users == []


def _long_functions() -> list[str]:
    """Functions over the limit without a `# long:` reason on the def line or the line above."""
    found = []
    for module, path in _source_files().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            marked = LONG_MARK in lines[node.lineno - 1] or (
                first >= 2 and lines[first - 2].strip().startswith(LONG_MARK)
            )
            if length > MAX_FUNCTION_LINES and not marked:
                found.append(f"{module}.{node.name} ({path.name}:{node.lineno}): {length} lines")
    return sorted(found)


def test_no_function_over_limit_without_reason() -> None:
    assert _long_functions() == []
