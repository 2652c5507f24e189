"""The package's shape, as docs/architecture.md describes it: its layers, no import circles but the registry's,
and a map that names every package.

The import graph is read from the source (module-level and in-function imports, and ``importlib.import_module``
of a literal name), not from what happens to be imported at run time.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import zsrbench

ROOT = Path(zsrbench.__file__).parent
REPO = ROOT.parent

# The layers, lowest first: a unit (a package or a top-level module of zsrbench) imports only from lower layers.
LAYERS: list[set[str]] = [
    {"errors", "log", "stats"},
    {"zsrbench", "eps", "jsonio", "paths"},
    {"params", "registry"},
    {"protocols", "models"},
    {"attacks", "data"},
    {"defenses", "micro"},
    {"leaderboard"},
    {"training"},
    {"evaluation"},
    {"audit", "figures", "catalog"},
    {"site"},
    {"cli"},
    {"__main__"},
]
# The registry imports the built-ins (attacks, data, defenses, micro, protocols) by name when first asked: the one
# import that runs upward, on purpose.
REGISTRY_BUILTINS = {"attacks", "data", "defenses", "micro", "protocols"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.AST, pkg: str, mods: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            head = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
            base = ".".join(head + ([base] if base else []))
        subs = [f"{base}.{a.name}" for a in node.names]
        return [s for s in subs if s in mods] or [base]
    if (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module") and node.args
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return [node.args[0].value]
    return []


def _type_checking_only(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines.update(sub.lineno for sub in ast.walk(node) if hasattr(sub, "lineno"))
    return lines


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            for target in _imported(node, pkg, mods):
                dep = _resolve(target, mods)
                if dep and dep != name and dep.startswith("zsrbench"):
                    graph[name].add(dep)
        graph.setdefault(name, set())
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "zsrbench"


def test_every_unit_has_a_layer():
    units = {unit(m) for m in import_graph()}
    layered = set().union(*LAYERS)
    assert units - layered == set(), "a new package or top-level module needs its layer here and in the docs"
    assert layered - units == set()


def test_imports_point_down_the_layers():
    level = {u: i for i, layer in enumerate(LAYERS) for u in layer}
    upward = []
    for module, deps in import_graph().items():
        for dep in deps:
            a, b = unit(module), unit(dep)
            if a == b or (module == "zsrbench.registry" and b in REGISTRY_BUILTINS):
                continue
            if level[b] >= level[a]:
                upward.append(f"{module} -> {dep}")
    assert upward == []


def test_the_only_import_circle_is_the_registrys():
    found = circles(import_graph())
    assert len(found) <= 1
    for comp in found:
        assert "zsrbench.registry" in comp
        assert {unit(m) for m in comp} <= REGISTRY_BUILTINS | {"registry"}


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_architecture_map_names_every_package():
    text = (REPO / "docs" / "architecture.md").read_text()
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    missing = [p for p in packages if f"`{p}/`" not in text]
    assert missing == []
    assert "docs/architecture.md" in (REPO / "README.md").read_text()
