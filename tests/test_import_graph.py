"""The package's module graph: module-level imports run one way (no import circles).

Walks every module's top-level imports (TYPE_CHECKING blocks excluded: they never run) and fails
naming each circle it finds, so that the next import that closes one is caught where it is written.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "keras_mtmm"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements that run when the module is imported (in its body, or under a module-level
    if/try other than `if TYPE_CHECKING:`)."""
    found, pending = [], list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body]
    return found


def import_graph() -> dict[str, set[str]]:
    """`{module: the package modules its top-level imports name}` (a `from a import b` names `a.b`
    when that is a module, else `a`)."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in paths}
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                edges.add(target if target in paths else base)
        graph[name] = {edge for edge in edges if edge in paths and edge != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_circles():
    graph = import_graph()
    assert len(graph) > 50 and "keras_mtmm.errors" in graph  # the walk saw the package
    found = circles(graph)
    assert not found, "import circles in keras_mtmm/ (module-level imports must run one way):\n" + "\n".join(
        " <-> ".join(circle) for circle in found
    )


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph folded onto the package's folders (`keras_mtmm.data`, ...; a module at the root is
    its own node); `keras_mtmm/__init__` (the public API, which imports every folder) is left out."""

    def folder(module: str) -> str:
        return ".".join(module.split(".")[:2])

    folded: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if module == "keras_mtmm":
            continue
        folded.setdefault(folder(module), set()).update(folder(t) for t in targets if t != "keras_mtmm")
    return {node: targets - {node} for node, targets in folded.items()}


def test_the_folders_import_one_way():
    """Data flows one way: each folder imports only folders below it, never one that imports it (README, Layout)."""
    folded = folder_graph(import_graph())
    assert {"keras_mtmm.config", "keras_mtmm.training", "keras_mtmm.errors"} <= set(folded)
    found = circles(folded)
    assert not found, "folders that import each other (a lower folder reached back up):\n" + "\n".join(
        " <-> ".join(circle) for circle in found
    )


def in_function_imports() -> list[str]:
    """`module:line: name` of every import of the package's own modules inside a function or method."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(function):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] if not node.level else ["."]
                for name in names:
                    if name == "." or name.split(".")[0] == "keras_mtmm":
                        found.append(f"{_module_name(path)}:{node.lineno}: {name}")
    return found


def test_the_package_imports_its_own_modules_at_the_top():
    """An import inside a function is for an optional dependency only (matplotlib, tensorflow-serving-api)."""
    found = in_function_imports()
    assert not found, "package imports inside functions:\n" + "\n".join(found)
