"""What every decoder shares: the interface, the stream description, windows in frames, and checks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ...errors import DecodeError, InvalidAudioError
from ..formats import MAX_CHANNELS, MAX_SAMPLE_RATE, Header
from ..source import Source

BLOCK_FRAMES = 1 << 16  # frames per block of ``Decoder.blocks``


@dataclass(frozen=True)
class StreamInfo:
    """A decoded stream's properties as its decoder will deliver them: ``frames`` is what ``read`` to the
    end returns (priming and padding trimmed), not a container's rounded duration."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    codec: str
    bits_per_sample: int | None = None


class Decoder(Protocol):
    """One way of decoding. ``load``, ``info`` and ``stream`` ask :func:`~audioflow.io.decoders.decoders_for`
    for the decoders of a stream, in order, and use the first that can open it, so the three agree.

    Every method takes an opened :class:`Source` and its sniffed :class:`Header`; samples are float32
    ``[channels, frames]``. A decoder that cannot open the stream raises DecodeError (the next one is
    tried); other AudioflowErrors (too large, truncated) are final."""

    name: str

    def describe(self, src: Source, header: Header) -> StreamInfo:
        """The stream's rate, channels and exact length, without decoding where the container says."""

    def read(self, src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
        """``[offset, offset + duration)`` seconds (``duration`` None: to the end): ``(samples, rate)``."""

    def blocks(self, src: Source, header: Header) -> tuple[int, Iterator[np.ndarray]]:
        """The rate and consecutive blocks of about :data:`BLOCK_FRAMES` frames, in bounded memory."""


def frame_window(sr: int, offset: float, duration: float | None) -> tuple[int, int | None]:
    """``(start, count)`` in frames for a window in seconds, rounded as librosa rounds them."""
    return round(offset * sr), (None if duration is None else round(duration * sr))


def format_label(header: Header) -> str:
    """'FLAC', 'MP3'... for messages; 'audio' when we only know the container by its magic."""
    return "audio" if header.format == "other" else header.format.upper()


def empty(channels: int) -> np.ndarray:
    return np.zeros((channels, 0), np.float32)


def validate_stream(src: Source, sr: int, channels: int) -> None:
    if not 0 < sr <= MAX_SAMPLE_RATE:
        raise DecodeError(f"invalid sample rate of {sr} Hz", src.name)
    if not 0 < channels <= MAX_CHANNELS:
        raise DecodeError(f"invalid channel count of {channels}", src.name)


def check_finite(y: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite samples (they poison every feature computed downstream)."""
    with np.errstate(invalid="ignore", over="ignore"):
        total = y.sum(dtype=np.float64) if y.size else 0.0
    if not np.isfinite(total):
        bad = np.count_nonzero(~np.isfinite(y))
        if bad:
            raise InvalidAudioError(f"{bad} samples are NaN or infinite", name)


MAX_SAMPLE_ABS = 1e6  # audio is about ±1; beyond this, squares and sums in float32 maths overflow


def check_range(y: np.ndarray, name: str) -> None:
    """Refuse samples beyond ±:data:`MAX_SAMPLE_ABS` (finite, but not audio: a float file written with the
    wrong scale, or made to overflow the loudness, spectra and models computed from it)."""
    peak = float(np.abs(y).max()) if y.size else 0.0
    if not peak <= MAX_SAMPLE_ABS:
        raise InvalidAudioError(f"samples reach {peak:.3g}; audio is expected within about ±1 "
                                f"(refused beyond ±{MAX_SAMPLE_ABS:.0e})", name)


def rewound(src: Source) -> Any:
    """The source's file object at its start (for libraries that take file objects)."""
    src.file.seek(0)
    return src.file
