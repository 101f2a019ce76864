"""Ogg Vorbis: FFmpeg's decoder or libsndfile's (libvorbis), whichever measured faster for the read.

FFmpeg's Vorbis decoder is 1.4-1.8x libvorbis per sample (32 kHz mono to 44.1 kHz stereo, whole 10 s
files), but PyAV costs ~5 us of Python per packet, which loses at low rates (8-16 kHz mono: 0.7-0.9x).
libsndfile also seeks faster deep into long files. Both trim the stream to its last granule position,
so they return the same frames."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ...errors import DecodeError
from ..formats import Header
from ..source import Source
from .base import StreamInfo
from .ffmpeg import FFmpegDecoder
from .sndfile import SndfileDecoder

# samples per second (rate x channels) from which FFmpeg decodes a whole stream faster (measured crossover)
FFMPEG_FROM = 32_000


class VorbisDecoder:
    name = "vorbis"

    def __init__(self, ffmpeg: FFmpegDecoder, sndfile: SndfileDecoder) -> None:
        self.ffmpeg, self.sndfile = ffmpeg, sndfile

    def describe(self, src: Source, header: Header) -> StreamInfo:
        return self.sndfile.describe(src, header)

    def read(self, src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
        rate = (header.sample_rate or 0) * (header.channels or 0)
        if offset == 0 and rate >= FFMPEG_FROM:
            try:
                return self.ffmpeg.read(src, header, offset, duration)
            except DecodeError:
                pass  # a stream FFmpeg refuses: libsndfile's answer (or its error) stands
        return self.sndfile.read(src, header, offset, duration)

    def blocks(self, src: Source, header: Header) -> tuple[int, Iterator[np.ndarray]]:
        return self.sndfile.blocks(src, header)
