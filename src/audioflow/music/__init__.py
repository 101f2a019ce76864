"""Music analysis: tempo and beats, key and mode, harmonic/percussive ratio, onsets, spectral summary;
acoustic fingerprints and duplicate finding."""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..runtime.extras import as_missing_dependency

# eager: the function must stay bound over its submodule of the same name (importing audioflow.music.fingerprint
# later would otherwise rebind the package's attribute to the module)
from .fingerprint import find_duplicates, fingerprint, similarity

if TYPE_CHECKING:
    from .analysis import (
        analyze_music,
        harmonic_percussive_ratio,
        key_and_mode,
        onset_times,
        spectral_summary,
        tempo_and_beats,
    )

# the analysis on first use: it needs SciPy and torch (the music extra), fingerprints need neither
_ANALYSIS = ("analyze_music", "harmonic_percussive_ratio", "key_and_mode", "onset_times", "spectral_summary",
             "tempo_and_beats")


def __getattr__(name: str) -> Any:
    if name not in _ANALYSIS:
        raise AttributeError(f"module 'audioflow.music' has no attribute {name!r}")
    try:
        value = getattr(import_module(".analysis", __name__), name)
    except ModuleNotFoundError as e:
        raise (as_missing_dependency(e, f"audioflow.music.{name}", extra="music") or e) from e
    globals()[name] = value
    return value


__all__ = [
    "analyze_music",
    "find_duplicates",
    "fingerprint",
    "harmonic_percussive_ratio",
    "key_and_mode",
    "onset_times",
    "similarity",
    "spectral_summary",
    "tempo_and_beats",
]
