"""Uncompressed WAV, RF64 and AIFF: NumPy straight from the file, no C library round trip (1.7-5.5x the
fastest other library here). The layout comes from our own header parser (formats.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ...errors import DecodeError
from ..formats import Header, PcmLayout, check_allocation
from ..source import Source
from .base import BLOCK_FRAMES, StreamInfo, check_finite, empty, frame_window

_SCALE = {1: 1 / 128, 2: 1 / 32768, 3: 1 / 2**31, 4: 1 / 2**31}


class PcmDecoder:
    name = "pcm"

    def describe(self, src: Source, header: Header) -> StreamInfo:
        return StreamInfo(header.sample_rate or 1, header.channels or 1, header.pcm.frames,  # type: ignore[union-attr]
                          header.format, header.codec, header.bits_per_sample)

    def read(self, src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
        start, count = frame_window(header.sample_rate, offset, duration)  # type: ignore[arg-type]
        return _checked(src, header, read_pcm_frames(src, header, start, count)), header.sample_rate  # type: ignore

    def blocks(self, src: Source, header: Header) -> tuple[int, Iterator[np.ndarray]]:
        frames = header.pcm.frames  # type: ignore[union-attr]
        return header.sample_rate, (_checked(src, header, read_pcm_frames(src, header, start, BLOCK_FRAMES))  # type: ignore
                                    for start in range(0, frames, BLOCK_FRAMES))


def _checked(src: Source, header: Header, y: np.ndarray) -> np.ndarray:
    """Float PCM may hold NaN or infinities (integer PCM cannot): refused here, where they enter."""
    if header.pcm.dtype[-2] == "f":  # type: ignore[union-attr]
        check_finite(y, src.name)
    return y


def read_pcm_frames(src: Source, header: Header, start: int, count: int | None) -> np.ndarray:
    """``[channels, frames]`` float32 from frame ``start``, ``count`` frames (None: to the end), with one
    ``readinto`` and one conversion pass."""
    pcm: PcmLayout = header.pcm  # type: ignore[assignment]
    channels, width = header.channels or 1, pcm.sample_bytes
    n = max(0, pcm.frames - start) if count is None else max(0, min(count, pcm.frames - start))
    if n == 0:
        return empty(channels)
    check_allocation(src, n, channels)
    kind = pcm.dtype.lstrip("<>")
    if kind in ("f4", "i2", "i4", "u1", "i1", "f8"):
        raw = np.empty((n, channels), np.dtype(pcm.dtype))
    else:  # 24-bit: no NumPy dtype; read bytes and widen below
        raw = np.empty((n, channels * 3), np.uint8)
    src.file.seek(pcm.offset + start * width * channels)
    got = src.file.readinto(memoryview(raw).cast("B"))
    if got != raw.nbytes:
        raise DecodeError(f"truncated: expected {raw.nbytes} bytes of audio, read {got}", src.name)
    return _pcm_to_float(raw, pcm.dtype, channels).T


def _pcm_to_float(raw: np.ndarray, dtype: str, channels: int) -> np.ndarray:
    """``[frames, channels]`` float32 from raw samples, with libsndfile's scaling (x / 2^(bits-1))."""
    kind, big = dtype.lstrip("<>"), dtype.startswith(">")
    if kind == "f4":
        return raw.astype(np.float32, copy=False) if not big else raw.astype(np.float32)
    if kind == "f8":
        return raw.astype(np.float32)
    out = np.empty(raw.shape if kind != "i3" else (raw.shape[0], channels), np.float32)
    if kind == "u1":
        np.subtract(raw, np.float32(128), out=out)
        out *= np.float32(1 / 128)
        return out
    if kind == "i3":  # place the 3 bytes in the top of an int32, then scale as 32-bit
        wide = np.zeros((raw.shape[0] * channels, 4), np.uint8)
        triples = raw.reshape(-1, 3)
        wide[:, 1:] = triples[:, ::-1] if big else triples
        np.multiply(wide.view("<i4").reshape(-1, channels), np.float32(1 / 2**31), out=out)
        return out
    scale = np.float32(_SCALE[int(kind[-1])] if kind != "i1" else 1 / 128)
    np.multiply(raw, scale, out=out)
    return out
