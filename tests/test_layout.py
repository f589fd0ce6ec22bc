"""The package's layout (STYLE.md): no import cycle, no module over 500 lines, a docstring each.

The import graph is read from the source with `ast` (every `import` and `from … import`,
including those inside functions, which run later but still tie the two modules together), so
a lazy import cannot hide a cycle. `from attn_cli.x import y` is an edge to attn_cli.x.y when
that is a module, else to attn_cli.x.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "attn_cli"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The attn_cli modules that `name` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import attn_cli.x.y` names a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def defined(path: Path) -> set[str] | None:
    """The names a module binds at its top level (defs, classes, assignments, imports, inside
    a top-level try or if too); None when a module __getattr__ makes any name possible."""
    names = set()
    todo = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Try, ast.If)):
            todo += node.body + node.orelse + getattr(node, "finalbody", [])
            todo += [s for h in getattr(node, "handlers", []) for s in h.body]
    return None if "__getattr__" in names else names


def unresolved() -> list[str]:
    """Every `import attn_cli.x` / `from attn_cli.x import y` whose module or name is not in
    this tree. (An editable install of another checkout would otherwise serve it silently.)"""
    found = modules()
    out = []
    for name, path in found.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out += [f"{name}: import {a.name}" for a in node.names
                        if a.name.split(".")[0] == "attn_cli" and a.name not in found]
            elif isinstance(node, ast.ImportFrom) and not node.level and \
                    (node.module or "").split(".")[0] == "attn_cli":
                if node.module not in found:
                    out.append(f"{name}: from {node.module} import …")
                    continue
                names = defined(found[node.module])
                out += [f"{name}: from {node.module} import {a.name}" for a in node.names
                        if f"{node.module}.{a.name}" not in found
                        and names is not None and a.name not in names]
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def describe(component: list[str], edges: dict[str, set[str]]) -> str:
    inside = set(component)
    pairs = [f"{a} -> {b}" for a in component for b in sorted(edges[a] & inside)]
    return "; ".join(pairs)


def test_the_cycle_finder_finds_a_cycle_through_a_third_module():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    edges = graph()
    assert "attn_cli.capture" in edges  # the walk found the package
    assert any(edges.values())


def test_no_module_imports_a_module_that_imports_it():
    edges = graph()
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(describe(c, edges) for c in found)


def test_every_attn_cli_import_names_something_in_this_tree():
    missing = unresolved()
    assert not missing, "imports of what this tree does not have:\n" + "\n".join(missing)


def test_no_module_is_over_500_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_module_says_its_job_in_a_docstring():
    missing = [name for name, path in modules().items()
               if path.stat().st_size and not ast.get_docstring(ast.parse(path.read_text("utf-8")))]
    assert not missing, f"modules without a docstring: {missing}"
