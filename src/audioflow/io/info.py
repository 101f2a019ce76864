"""``info``: what a file holds, read from its header without decoding the samples."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import AudioflowError, DecodeError, UnsupportedFormatError
from .backends import format_label
from .formats import Header, check_ogg_complete, sniff
from .source import Source, open_source


@dataclass(frozen=True)
class AudioInfo:
    """Stream properties.

    Attributes:
        sample_rate: samples per second, in Hz.
        channels: number of channels.
        frames: samples per channel (for lossy formats without an exact count, an estimate
            from the container's duration).
        duration: length in seconds.
        format: container ('wav', 'rf64', 'aiff', 'flac', 'mp3', 'ogg', 'opus', 'm4a', 'aac', ...).
        codec: codec of the stream ('pcm_s16le', 'pcm_f32le', 'flac', 'mp3', 'vorbis', 'opus', 'aac', ...).
        bits_per_sample: bits of a stored sample for PCM and FLAC, None for lossy codecs.
    """

    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    codec: str
    bits_per_sample: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def info(source: Any, storage_options: dict[str, Any] | None = None) -> AudioInfo:
    """Describe an audio file without decoding it.

    Args:
        source: a path, ``pathlib.Path``, fsspec URL, ``bytes`` or binary file object.
        storage_options: passed to ``fsspec.open`` for URLs.

    Returns:
        An :class:`AudioInfo`.

    Raises:
        AudioflowError: a subclass naming the source and the problem.
    """
    with open_source(source, storage_options) as src:
        header = sniff(src)
        if header.format in ("ogg", "opus"):
            check_ogg_complete(src)
        if header.frames is not None and header.sample_rate and header.channels and \
                header.format in ("wav", "rf64", "aiff", "flac"):
            return _from_header(header, header.frames)
        if header.format in ("m4a", "aac") or (header.format == "other" and _is_av_only(src)):
            return _info_pyav(src, header)
        return _info_soundfile(src, header)


def _from_header(header: Header, frames: int) -> AudioInfo:
    sr = header.sample_rate or 1
    return AudioInfo(sr, header.channels or 1, frames, frames / sr, header.format, header.codec,
                     header.bits_per_sample)


def _is_av_only(src: Source) -> bool:
    return src.head[:4] == b"\x1aE\xdf\xa3" or src.head[:6] == b"#!AMR\n" or src.head[:4] == b"0&\xb2u"


_SF_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}


def _info_soundfile(src: Source, header: Header) -> AudioInfo:
    import soundfile as sf

    try:
        if not src.path:
            src.file.seek(0)
        i = sf.info(src.path or src.file)
    except Exception as e:
        raise DecodeError(f"cannot read {format_label(header)} header: {e}", src.name) from None
    if i.samplerate <= 0 or i.channels <= 0:
        raise DecodeError(f"invalid stream: {i.samplerate} Hz, {i.channels} channels", src.name)
    rate, frames = i.samplerate, i.frames
    if header.format == "opus":  # libsndfile reports the encoder's input rate; load decodes at 48 kHz
        rate, frames = 48000, round(i.frames * 48000 / i.samplerate)
    codec = header.codec if header.codec != "unknown" else i.subtype.lower()
    fmt = header.format if header.format != "other" else i.format.lower()
    return AudioInfo(rate, i.channels, frames, frames / rate, fmt, codec,
                     _SF_BITS.get(i.subtype) if header.format in ("wav", "rf64", "aiff", "other") else None)


def _info_pyav(src: Source, header: Header) -> AudioInfo:
    import av

    try:
        if not src.path:
            src.file.seek(0)
        with av.open(src.path or src.file) as container:
            if not container.streams.audio:
                raise UnsupportedFormatError("no audio stream in the container", src.name)
            stream = container.streams.audio[0]
            sr, channels = stream.codec_context.sample_rate, stream.codec_context.channels
            if stream.duration is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            else:
                raise DecodeError("the container does not state its duration", src.name)
            codec = stream.codec_context.name
    except AudioflowError:
        raise
    except Exception as e:
        raise DecodeError(f"cannot read {format_label(header)} header: {e}", src.name) from None
    if not sr or not channels:
        raise DecodeError(f"invalid stream: {sr} Hz, {channels} channels", src.name)
    fmt = header.format if header.format != "other" else "unknown"
    return AudioInfo(sr, channels, round(seconds * sr), seconds, fmt, codec, None)
