"""The package has no import circles: read from the source (AST), no module is imported.

Two graphs over ``src/decaylab``: module-level imports only (what importing a module runs), and every import,
those inside functions included (a circle there, such as ``sweeps/api.py`` ↔ ``sweeps/marglik.py`` through a
function-level import of the other's private helpers, is two modules that should be one or share a third).
An import of a package's submodule counts as an edge to that submodule only, not to the package's
``__init__`` (the usual package layout is not a circle).

And no module is longer than ~400 lines without saying why: a longer one has a ``Length:`` paragraph in
its docstring.
"""

import ast
from pathlib import Path

import pytest

import decaylab

ROOT = Path(decaylab.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _module_level(body):
    """The statements run on import: the module's body, into ``if``/``try`` blocks but not into functions."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from _module_level(node.body + node.orelse + node.finalbody
                                     + [s for h in node.handlers for s in h.body])


def imports(name: str, everywhere: bool) -> set[str]:
    """The decaylab modules ``name`` imports (module level only, or ``everywhere``)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in (ast.walk(tree) if everywhere else _module_level(tree.body)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in MODULES:
                    found.add(submodule)
                elif target in MODULES:
                    found.add(target)
    return found - {name}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_finder_sees_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    assert "decaylab.sweeps.marglik" in imports("decaylab.sweeps.api", everywhere=False)


@pytest.mark.parametrize("everywhere", [False, True], ids=["module-level", "every-import"])
def test_no_import_circles(everywhere):
    graph = {name: imports(name, everywhere) for name in MODULES}
    assert circles(graph) == []


LONGEST = 400


def test_a_module_over_400_lines_says_why_in_its_docstring():
    unexplained = []
    for name, path in sorted(MODULES.items()):
        source = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
        lines = source.count("\n")
        if lines > LONGEST and "\nLength: " not in "\n" + doc:
            unexplained.append(f"{name} ({lines} lines)")
    assert unexplained == [], (f"modules over {LONGEST} lines need a 'Length:' paragraph in their docstring "
                               f"saying why (or a split): {unexplained}")
