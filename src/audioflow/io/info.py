"""``info``: what a file holds, read from its header without decoding the samples."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .decoders import decode_with
from .formats import sniff
from .source import open_source


@dataclass(frozen=True)
class AudioInfo:
    """Stream properties.

    Attributes:
        sample_rate: samples per second, in Hz.
        channels: number of channels.
        frames: samples per channel, as ``load`` returns them at this rate (AAC priming and padding and
            Opus pre-skip excluded).
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
    """Describe an audio file without decoding it (where its container states its exact length; Matroska,
    WebM, AMR and WMA, which state none, are counted by decoding).

    Args:
        source: a path, ``pathlib.Path``, fsspec URL, ``bytes`` or binary file object.
        storage_options: passed to ``fsspec.open`` for URLs.

    Returns:
        An :class:`AudioInfo` whose ``frames`` is what :func:`~audioflow.load` returns at the native rate
        (the same decoder describes and decodes).

    Raises:
        AudioflowError: a subclass naming the source and the problem.
    """
    with open_source(source, storage_options) as src:
        header = sniff(src)
        stream = decode_with(src, header, lambda decoder: decoder.describe(src, header))
    return AudioInfo(stream.sample_rate, stream.channels, stream.frames, stream.frames / stream.sample_rate,
                     stream.format, stream.codec, stream.bits_per_sample)
