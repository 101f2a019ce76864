"""The rules of the house that no other test sees: imports point down the layers of docs/architecture.md,
and no two modules import each other at module level (a cycle works or fails depending on which module
a user imports first, as the stage registry once did)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "audioflow"

# a module may import its own rank or lower (docs/architecture.md, "Layers")
RANKS = {
    "audio": 0, "errors": 0, "models": 0, "_version": 0, "runtime": 0,
    "io": 1,
    "dsp": 2,
    "features": 3, "augment": 3,
    "data": 4, "store": 4,
    "speech": 5, "music": 5, "enhance": 5,
    "pipeline": 6, "ray": 6,
    "serve": 7, "cli": 7, "demo": 7, "__main__": 7,
}
# what a layer must not import at module level (lazily, inside a function, is fine)
HEAVY = {"io": {"torch", "librosa", "ray", "fastapi"}, "runtime": {"torch"}, "": {"torch"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str, top_level_only: bool) -> list[tuple[str, int]]:
    """``(module imported, line)`` of ``path``: every import, or only those run when it is imported (not
    inside functions, not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.extend((alias.name, node.lineno) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found.append((target, node.lineno))
                found.extend((f"{target}.{alias.name}", node.lineno) for alias in node.names)
            if not top_level_only:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child])
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for block in (getattr(node, "body", []), getattr(node, "orelse", []), getattr(node, "finalbody", [])):
                    visit(block)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_point_down_the_layers():
    known = modules()
    upward = []
    for name, path in known.items():
        mine = layer(name)
        if mine not in RANKS:
            assert name == "audioflow", f"{name}: a new top-level part needs a rank in RANKS and docs"
            continue
        for target, line in imports(path, name, top_level_only=False):
            theirs = layer(target) if target.startswith("audioflow.") else None
            if theirs in RANKS and RANKS[theirs] > RANKS[mine]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_light_layers_import_heavy_packages_only_lazily():
    found = []
    for name, path in modules().items():
        banned = HEAVY.get(layer(name), set())
        for target, line in imports(path, name, top_level_only=True):
            if target.split(".")[0] in banned:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} at module level")
    assert not found, "\n".join(found)


def test_no_import_cycles_at_module_level():
    known = modules()
    graph = {name: sorted({t for t, _ in imports(path, name, top_level_only=True) if t in known and t != name})
             for name, path in known.items()}

    def is_ancestor(a: str, b: str) -> bool:  # importing a package's module runs the package first
        return b.startswith(a + ".")

    cycles, state = [], {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if is_ancestor(nxt, node):  # a module importing its own package: Python has it half-built, by design
                continue
            if state.get(nxt) == "open":
                loop = [*stack[stack.index(nxt):], node, nxt] if nxt in stack else [node, nxt]
                cycles.append(" -> ".join(loop))
            elif nxt not in state:
                walk(nxt, [*stack, node])
        state[node] = "done"

    for name in graph:
        if name not in state:
            walk(name, [])
    assert not cycles, "modules that import each other at module level:\n" + "\n".join(cycles)
