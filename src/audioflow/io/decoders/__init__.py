"""The decoders behind ``load``, ``info`` and ``stream``: one interface (:class:`Decoder`: describe, read a
window, blocks) and one ordered choice per stream (:func:`decoders_for`), so the three entry points agree
on every container on the rate, the channels and the exact number of frames.

Each kind of stream goes to the decoder that measured fastest for it (docs/benchmarks.md):

- PCM WAV/RF64/AIFF: NumPy straight from the file (:class:`PcmDecoder`).
- FLAC: dr_flac (:class:`FlacDecoder`); libsndfile for remote windows and for ``stream``.
- MP3, compressed WAV/AIFF and the rest libsndfile knows: :class:`SndfileDecoder`.
- Ogg Vorbis: FFmpeg for whole streams from 32,000 samples per second, libsndfile for the rest and for
  windows (:class:`VorbisDecoder`).
- Opus, M4A/AAC, Matroska/WebM, AMR, WMA: FFmpeg through PyAV (:class:`FFmpegDecoder`).
- Containers known only by their magic: libsndfile, then FFmpeg.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ...errors import DecodeError
from ..formats import Header, check_ogg_complete
from ..source import Source
from .base import BLOCK_FRAMES, MAX_SAMPLE_ABS, Decoder, StreamInfo, check_finite, check_range
from .ffmpeg import FFmpegDecoder
from .flac import FlacDecoder
from .pcm import PcmDecoder
from .sndfile import SndfileDecoder
from .vorbis import VorbisDecoder

__all__ = ["BLOCK_FRAMES", "MAX_SAMPLE_ABS", "Decoder", "FFmpegDecoder", "FlacDecoder", "PcmDecoder", "SndfileDecoder",
           "StreamInfo", "VorbisDecoder", "check_finite", "check_range", "decode_with", "decoders_for"]

PCM, FLAC, SNDFILE, FFMPEG = PcmDecoder(), FlacDecoder(), SndfileDecoder(), FFmpegDecoder()
VORBIS = VorbisDecoder(FFMPEG, SNDFILE)

# magic numbers of containers only FFmpeg opens here: Matroska/WebM, AMR, ASF (WMA)
_FFMPEG_ONLY = (b"\x1aE\xdf\xa3", b"#!AMR\n", b"0&\xb2u")

T = TypeVar("T")


def decoders_for(src: Source, header: Header) -> list[Decoder]:
    """The decoders to try for this stream, in order (Ogg streams are first checked to be complete)."""
    if header.format in ("ogg", "opus"):
        check_ogg_complete(src)
    if header.pcm is not None:
        return [PCM]
    if header.format == "flac":
        return [FLAC]
    if header.format in ("opus", "m4a", "aac"):  # libsndfile's Opus is ~2x slower; it has no AAC
        return [FFMPEG]
    if header.codec == "vorbis":
        return [VORBIS]
    if header.format == "other":
        if src.head.startswith(_FFMPEG_ONLY):
            return [FFMPEG]
        if header.codec == "unknown":
            return [SNDFILE, FFMPEG]
    return [SNDFILE]


def decode_with(src: Source, header: Header, call: Callable[[Decoder], T]) -> T:
    """``call(decoder)`` with the first decoder of :func:`decoders_for` that opens the stream: a DecodeError
    passes to the next one; the last one's error is raised."""
    decoders = decoders_for(src, header)
    for decoder in decoders[:-1]:
        try:
            return call(decoder)
        except DecodeError:
            continue
    return call(decoders[-1])
