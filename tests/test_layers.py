"""The house by stage: no import circle anywhere in ``c3d_rt``, and every import points down the layers.

Every import counts, the ones inside functions too: a circle broken by moving an import into a
function is still a circle. The layer table is :data:`c3d_rt.LAYERS` (the README draws it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import c3d_rt
from c3d_rt import LAYERS

PACKAGE = Path(c3d_rt.__file__).parent


def module_name(path: Path) -> str:
    parts = ("c3d_rt",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(name: str, path: Path) -> set[str]:
    """The c3d_rt modules that ``name`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1] + ([node.module] if node.module else [])
                module = ".".join(base)
            else:
                module = node.module or ""
            found |= {f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def stage_of(module: str) -> str:
    """``c3d_rt.engines.ort`` -> ``engines``; a top-level module is its own stage (``demo``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def test_the_walk_sees_imports_inside_functions_and_packages():
    # guards the guard: a function-local import and a `from package import module` are both edges
    assert "c3d_rt.model.c3d" in GRAPH["c3d_rt"]  # imported inside __getattr__
    assert "c3d_rt.engines.auto" in GRAPH["c3d_rt.engines"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle():
    found = cycles(GRAPH)
    assert not found, "import circles in c3d_rt (move the shared name to the lower module it belongs to): " + \
        "; ".join(" <-> ".join(c) for c in found)


def test_every_stage_has_a_layer():
    stages = {stage_of(m) for m in MODULES} - {""}
    assert stages == set(LAYERS), f"stages without a layer: {stages - set(LAYERS)}; layers without a stage: " \
                                  f"{set(LAYERS) - stages}"


def test_imports_only_point_down():
    upward = []
    for module, targets in GRAPH.items():
        here = stage_of(module)
        if not here:
            continue  # the package's own __init__ is the public face: it may name any stage
        for target in targets:
            there = stage_of(target)
            if there == here:
                continue
            if not there or LAYERS[there] >= LAYERS[here]:
                upward.append(f"{module} (layer {LAYERS[here]}) imports {target} "
                              f"(layer {LAYERS.get(there, 'the package root')})")
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))
