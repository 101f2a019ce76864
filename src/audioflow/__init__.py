"""audioflow: audio from files to what a model or a person needs.

Everything is imported on first use (PEP 562), so ``import audioflow`` costs almost nothing and
a first ``audioflow.load`` pulls in only NumPy and the decoder it needs.

>>> import audioflow
>>> y, sr = audioflow.load("speech.flac", sr=16000)  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    AudioFileNotFoundError,
    AudioflowError,
    AudioPermissionError,
    AudioTooLargeError,
    DecodeError,
    EncodeError,
    InvalidAudioError,
    MissingDependencyError,
    ParameterError,
    SourceError,
    StoreError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:
    from .audio import Audio, Segment
    from .data import AudioDataLoader
    from .io import AudioInfo, info, load, resample, save, stream
    from .music.separate import separate

_LAZY = {
    "load": "io", "info": "io", "save": "io", "stream": "io", "resample": "io", "AudioInfo": "io",
    "Audio": "audio", "Segment": "audio", "AudioDataLoader": "data", "separate": "music.separate",
}

__all__ = [
    "Audio",
    "AudioDataLoader",
    "AudioFileNotFoundError",
    "AudioInfo",
    "AudioPermissionError",
    "AudioTooLargeError",
    "AudioflowError",
    "DecodeError",
    "EncodeError",
    "InvalidAudioError",
    "MissingDependencyError",
    "ParameterError",
    "Segment",
    "SourceError",
    "StoreError",
    "UnsupportedFormatError",
    "__version__",
    "info",
    "load",
    "resample",
    "save",
    "separate",
    "stream",
]


_SUBMODULES = ("io", "dsp", "features", "augment", "store", "data", "audio", "errors")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # `audioflow.features.MFCC` works after a bare `import audioflow`
        module = import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'audioflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
