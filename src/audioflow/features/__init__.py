"""Feature extraction as torch modules: torchaudio's constructor arguments, librosa's numbers, any device.

Inputs are ``[time]``, ``[batch, time]`` or ``[batch, channels, time]``; pass ``lengths`` (valid
samples per item) to get ``(features, frame_lengths)`` with frames past each item's end zeroed.
"""

from ..runtime.extras import require

require("torch", "audioflow.features", extra="train")

from .descriptors import (
    chroma_filterbank,
    chroma_stft,
    fft_frequencies,
    rms,
    spectral_bandwidth,
    spectral_centroid,
    spectral_contrast,
    spectral_flatness,
    spectral_rolloff,
    zero_crossing_rate,
)
from .spectrogram import MFCC, AmplitudeToDB, LogMel, MelSpectrogram, Spectrogram
from .speech import CMVN, Deltas, Fbank, WhisperLogMel

__all__ = [
    "CMVN",
    "MFCC",
    "AmplitudeToDB",
    "Deltas",
    "Fbank",
    "LogMel",
    "MelSpectrogram",
    "Spectrogram",
    "WhisperLogMel",
    "chroma_filterbank",
    "chroma_stft",
    "fft_frequencies",
    "rms",
    "spectral_bandwidth",
    "spectral_centroid",
    "spectral_contrast",
    "spectral_flatness",
    "spectral_rolloff",
    "zero_crossing_rate",
]
