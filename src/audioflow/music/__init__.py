"""Music analysis: tempo and beats, key and mode, harmonic/percussive ratio, onsets, spectral summary."""

from .analysis import (
    analyze_music,
    harmonic_percussive_ratio,
    key_and_mode,
    onset_times,
    spectral_summary,
    tempo_and_beats,
)

__all__ = ["analyze_music", "harmonic_percussive_ratio", "key_and_mode", "onset_times", "spectral_summary",
           "tempo_and_beats"]
