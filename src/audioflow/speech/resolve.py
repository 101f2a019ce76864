"""Where model files come from, in one documented order: an explicit path, an environment variable, an
installed model package, then a hub name (for users who are online)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError


def package_file(package: str, relative: str) -> Path | None:
    """``relative`` inside an installed package, found without importing the package (its ``__init__``
    may import heavy things)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.exists():
            return candidate
    return None


def resolve_model_file(explicit: str | os.PathLike[str] | None, env_var: str, package: str, relative: str,
                       install_hint: str) -> Path:
    """The model file: ``explicit`` if given, else ``$env_var``, else ``relative`` inside ``package``.
    Raises MissingDependencyError naming what to install."""
    for candidate in (explicit, os.environ.get(env_var)):
        if candidate:
            path = Path(candidate)
            if not path.exists():
                raise MissingDependencyError(f"model file {path} does not exist")
            return path
    found = package_file(package, relative)
    if found is None:
        raise MissingDependencyError(f"no model: give a path, set {env_var}, or {install_hint}")
    return found


def load_weights(explicit: str | os.PathLike[str] | None, env_var: str, package: str, relative: str,
                 install_hint: str, what: str) -> Any:
    """A model's weights: the file :func:`resolve_model_file` finds, read with ``torch.load(weights_only=True)``
    (tensors and plain containers only: no code runs). MissingDependencyError naming ``what`` and the file."""
    import torch

    path = resolve_model_file(explicit, env_var, package, relative, install_hint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise MissingDependencyError(f"{what} weights {path} could not be read: {e}") from e
