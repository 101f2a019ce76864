"""Music analysis: tempo and beats, key and mode, harmonic/percussive ratio, onsets, spectral summary;
acoustic fingerprints and duplicate finding."""

from .analysis import (
    analyze_music,
    harmonic_percussive_ratio,
    key_and_mode,
    onset_times,
    spectral_summary,
    tempo_and_beats,
)
from .fingerprint import find_duplicates, fingerprint, similarity

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
