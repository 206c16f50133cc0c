"""The package's layers, from its source: imports point only down the chain, and no module imports itself back
through others, whether the import sits at module level or inside a function."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dermcli"
# Bottom first: a module may import its own layer and the layers below it, never one above.
LAYERS = ["core", "runtime", "data", "models", "inference", "evaluation", "training", "serving", "cli"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere in its code (`from a.b import c` names a.b.c when that
    is a module, else a.b)."""
    found = set()
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules and name != here)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) for p in paths}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_top_level_holds_only_the_entry_points_and_the_layers():
    top = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert top == {"__init__.py", "__main__.py", *LAYERS}


def test_every_import_points_down_the_chain_of_layers():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets
              if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_module_imports_itself_back_through_others():
    edges = graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The test can fail: a made-up package with one cycle and one upward import is caught by both checks."""
    fake = tmp_path / "dermcli"
    for name, text in {"core/a.py": "from dermcli.core import b\n", "core/b.py": "def f():\n    from dermcli.core.a import x\n",
                       "core/__init__.py": "", "data/__init__.py": "", "data/c.py": "",
                       "core/c.py": "import dermcli.data.c\n", "__init__.py": ""}.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "PACKAGE", fake)
    edges = graph()
    assert edges["dermcli.core.a"] == {"dermcli.core.b"} and edges["dermcli.core.b"] == {"dermcli.core.a"}
    assert "dermcli.data.c" in edges["dermcli.core.c"] and layer("dermcli.data.c") > layer("dermcli.core.c")
