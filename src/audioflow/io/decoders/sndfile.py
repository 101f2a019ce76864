"""libsndfile through soundfile: MP3, Ogg Vorbis and everything else it knows (CAF, AU, W64, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ...errors import AudioflowError, DecodeError
from ..formats import Header, check_allocation
from ..source import Source
from .base import BLOCK_FRAMES, StreamInfo, empty, format_label, frame_window, rewound, validate_stream

# A declared length this many times the file size (or more) is not believed: read in blocks
# instead of allocating it. Low-bitrate MP3 expands about 100x to float32, silence in FLAC more.
PLAUSIBLE_EXPANSION = 256
_MP3_PREROLL = 4 * 1152  # frames
_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}


class SndfileDecoder:
    name = "libsndfile"

    def describe(self, src: Source, header: Header) -> StreamInfo:
        import soundfile as sf

        try:
            i = sf.info(src.path or rewound(src))
        except Exception as e:
            raise DecodeError(f"cannot read {format_label(header)} header: {e}", src.name) from None
        if i.samplerate <= 0 or i.channels <= 0:
            raise DecodeError(f"invalid stream: {i.samplerate} Hz, {i.channels} channels", src.name)
        codec = header.codec if header.codec != "unknown" else i.subtype.lower()
        fmt = header.format if header.format != "other" else i.format.lower()
        bits = _BITS.get(i.subtype) if header.format in ("wav", "rf64", "aiff", "other") else None
        return StreamInfo(i.samplerate, i.channels, i.frames, fmt, codec, bits)

    def read(self, src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
        """Seeks for windows; reads in blocks when the declared length is implausible."""
        import soundfile as sf

        try:
            with sf.SoundFile(src.path if src.path else rewound(src)) as f:
                sr, channels, frames = f.samplerate, f.channels, f.frames
                validate_stream(src, sr, channels)
                start, count = frame_window(sr, offset, duration)
                if start >= frames:
                    return empty(channels), sr
                # MP3 frames borrow bits from earlier frames (the bit reservoir): decode a few frames
                # before the window and drop them, or its first milliseconds come out wrong
                preroll = min(start, _MP3_PREROLL) if header.format == "mp3" else 0
                if start:
                    f.seek(start - preroll)
                n = frames - start if count is None else min(count, frames - start)
                if n * channels * 4 <= PLAUSIBLE_EXPANSION * src.size + (1 << 24):
                    check_allocation(src, n + preroll, channels)
                    # one read: libsndfile's MP3 reader returns wrong samples if the pre-roll is read apart
                    out = f.read(n + preroll, dtype="float32", always_2d=True,
                                 out=np.empty((n + preroll, channels), np.float32))[preroll:]
                else:
                    out = _read_blocks(src, f, n + preroll, channels)[preroll:]
        except AudioflowError:
            raise
        except Exception as e:
            raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None
        if count is None and header.format in ("flac", "mp3") and len(out) + 1152 < n:
            raise DecodeError(f"truncated or corrupt: decoded {len(out)} of the {frames} frames the header "
                              "declares", src.name)
        return out.T, sr

    def blocks(self, src: Source, header: Header) -> tuple[int, Iterator[np.ndarray]]:
        import soundfile as sf

        try:
            f = sf.SoundFile(src.path if src.path else rewound(src))
            validate_stream(src, f.samplerate, f.channels)
        except AudioflowError:
            raise
        except Exception as e:
            raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None

        def blocks() -> Iterator[np.ndarray]:
            with f:
                while True:
                    try:
                        block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                    except Exception as e:
                        raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None
                    if not len(block):
                        return
                    yield block.T

        return f.samplerate, blocks()


def _read_blocks(src: Source, f: Any, n: int, channels: int) -> np.ndarray:
    blocks, total = [], 0
    while total < n:
        block = f.read(min(1 << 20, n - total), dtype="float32", always_2d=True)
        if not len(block):
            break
        total += len(block)
        check_allocation(src, total, channels)
        blocks.append(block)
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
