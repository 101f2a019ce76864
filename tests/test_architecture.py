"""The rules of the house that no other test sees: imports point down the layers of docs/architecture.md,
and no two modules import each other at module level (a cycle works or fails depending on which module
a user imports first, as the stage registry once did)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "audioflow"

# a module may import its own rank or lower (docs/architecture.md, "Layers")
RANKS = {
    "audio": 0, "errors": 0, "models": 0, "_version": 0, "_deprecation": 0, "runtime": 0,
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


# the naming rule of docs/architecture.md: NumPy-facing APIs follow librosa (``sr``, ``(y, sr)``), torch-facing
# ones follow torchaudio (``sample_rate``, ``hop_length``); value types carry ``sample_rate`` attributes
STYLE = {"audioflow.io": "librosa", "audioflow.store": "librosa", "audioflow.speech": "librosa",
         "audioflow.music": "librosa", "audioflow.enhance": "librosa", "audioflow.features": "torchaudio",
         "audioflow.augment": "torchaudio", "audioflow.data": "torchaudio", "audioflow.dsp": "torchaudio",
         "audioflow": None, "audioflow.pipeline": None, "audioflow.runtime": None}
NEVER = {"hop", "target_sr", "samplerate", "fs", "rate_hz"}
MIRRORS = {("audioflow.io", "resample"), ("audioflow", "resample")}  # librosa.resample(y, orig_sr, target_sr)


def public_signatures():
    import dataclasses
    import importlib
    import inspect

    for package, style in STYLE.items():
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
                continue  # value types: attributes, not parameters (Audio.sample_rate, AudioInfo.sample_rate)
            target = obj.__init__ if inspect.isclass(obj) else obj
            if not callable(target):
                continue
            try:
                parameters = list(inspect.signature(target).parameters)
            except (TypeError, ValueError):
                continue
            yield package, name, style, parameters


def test_public_parameter_names_follow_the_naming_rule():
    wrong = []
    for package, name, style, parameters in public_signatures():
        if (package, name) in MIRRORS:
            continue
        banned = set(NEVER)
        banned |= {"sr"} if style == "torchaudio" else {"sample_rate"} if style == "librosa" else set()
        wrong += [f"{package}.{name}({p})" for p in parameters if p in banned]
    assert not wrong, "public parameters against the naming rule: " + ", ".join(wrong)


def test_renamed_parameters_work_for_one_release_with_a_warning(tmp_path):
    import warnings

    import numpy as np
    import pytest
    import soundfile as sf

    from audioflow import AudioDataLoader, store

    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    with pytest.warns(DeprecationWarning, match="'target_sr' is now 'sample_rate'"):
        loader = AudioDataLoader([str(tmp_path / "a.wav")], target_sr=8000, num_workers=0)
    assert loader.sample_rate == 8000
    with pytest.warns(DeprecationWarning, match="'hop' is now 'hop_length'"):
        assert store.MelSpectrogramField(hop=256).hop_length == 256
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a dataset written before the rename reads without a warning
        old = store.field_from_spec({"kind": "mel", "n_mels": 64, "n_fft": 400, "hop": 320, "sr": 16000,
                                     "store_dtype": "float16"})
    assert old.hop_length == 320


def test_audio_unpacks_as_load_returns():
    import numpy as np

    from audioflow import Audio

    samples = np.zeros((2, 160), np.float32)
    y, sr = Audio(samples, 16000)
    assert y is samples and sr == 16000
