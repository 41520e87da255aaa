"""The package's imports point down the layers (README: Architecture), with no circle between modules."""

from __future__ import annotations

import ast
from pathlib import Path

import netad

ROOT = Path(netad.__file__).parent

#: bottom first; a module may import from its own layer or any layer below it
LAYERS = [
    {"errors", "threads", "io", "lightning_setup", "ray_cluster"},
    {"config"},
    {"metrics"},
    {"data"},
    {"models"},
    {"inference"},
    {"detectors"},
    {"tracking"},
    {"training"},
    {"evaluation"},
    {"export"},
    {"serving"},
    {"cli", "__main__", "hub"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The netad modules ``path`` imports (``from netad.x import y``: netad.x.y where that is a module)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "netad":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "netad")
    return {m for m in found if m != mod}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def layer(mod: str) -> int:
    parts = mod.split(".")
    if len(parts) == 1:  # the package itself: its __init__ (the version) sits at the bottom
        return -1
    return RANK[parts[1]]


def test_every_module_has_a_layer():
    unplaced = sorted({m.split(".")[1] for m in MODULES if "." in m} - set(RANK))
    assert not unplaced, f"modules in no layer (add them to LAYERS and README's Architecture): {unplaced}"


def test_imports_point_down():
    upward = [f"{mod} -> {dep}" for mod, path in sorted(MODULES.items()) for dep in sorted(imports_of(path))
              if layer(dep) > layer(mod)]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_import_circle():
    graph = {mod: {d for d in imports_of(path) if d in MODULES} for mod, path in MODULES.items()}
    # a package's __init__ re-exports its modules: an edge into a package is an edge into its __init__ only
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[str] = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                circles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The checker itself: an import from a higher layer is found (relative imports included)."""
    fake = ROOT / "data" / "loading.py"
    tree_imports = imports_of(fake)
    assert all(layer(d) <= layer("netad.data.loading") for d in tree_imports)
    probe = ROOT / "metrics" / "_probe_for_test.py"
    probe.write_text("from ..serving import api\nfrom netad.training.cv import run_cv\n")
    try:
        MODULES[module_name(probe)] = probe
        deps = imports_of(probe)
    finally:
        probe.unlink()
        MODULES.pop(module_name(probe), None)
    assert {"netad.serving.api", "netad.training.cv"} <= deps
    assert all(layer(d) > layer("netad.metrics._probe_for_test") for d in deps)
