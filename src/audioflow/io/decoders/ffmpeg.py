"""FFmpeg through PyAV: Opus, M4A/AAC, Matroska/WebM, AMR, WMA and whatever else FFmpeg demuxes.

FFmpeg trims an AAC stream's priming samples (the MP4 edit list) and an Opus stream's pre-skip, but hands
back the padding that fills the last AAC frame: the length the container states is the stream's length,
so reads stop there. Containers that state no exact length (Matroska's is in milliseconds) are counted
by decoding when described, so ``info`` gives what ``load`` returns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ...errors import AudioflowError, DecodeError, MissingDependencyError, UnsupportedFormatError
from ..formats import Header, check_allocation, max_decode_bytes
from ..source import Source
from .base import BLOCK_FRAMES, StreamInfo, empty, format_label, frame_window, rewound, validate_stream


class FFmpegDecoder:
    name = "ffmpeg"

    def describe(self, src: Source, header: Header) -> StreamInfo:
        try:
            return self._describe(src, header)
        except AudioflowError:
            raise
        except Exception as e:
            raise DecodeError(f"cannot read {format_label(header)} header: {e}", src.name) from None

    def _describe(self, src: Source, header: Header) -> StreamInfo:
        with _opened(src, header) as (container, stream):
            sr, channels = stream.codec_context.sample_rate, stream.codec_context.channels
            if not sr or not channels:
                raise DecodeError(f"invalid stream: {sr} Hz, {channels} channels", src.name)
            frames = stream_frames(stream, header, sr)
            if frames is None:  # no exact length stated: count what the decoder gives
                frames = sum(frame.samples for frame in _decoded(src, header, container, stream))
            codec = stream.codec_context.name
        fmt = header.format if header.format != "other" else _container_name(container)
        return StreamInfo(sr, channels, frames, fmt, codec, None)

    def read(self, src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
        """Windows seek by timestamp, then keep the frames from the first timestamp in the window."""
        try:
            return self._read(src, header, offset, duration)
        except AudioflowError:
            raise
        except Exception as e:  # FFmpeg's own errors, seeks included
            raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None

    def _read(self, src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
        with _opened(src, header) as (container, stream):
            sr, channels = stream.codec_context.sample_rate, stream.codec_context.channels
            validate_stream(src, sr, channels)
            start, count = frame_window(sr, offset, duration)
            exact = stream_frames(stream, header, sr)
            declared = exact if exact is not None else _declared_frames(stream, container, sr)
            if declared is not None:
                check_allocation(src, min(declared, count or declared), channels)
            end = None if count is None else start + count
            if exact is not None:
                end = exact if end is None else min(end, exact)
            if start:
                # land on or before the window; FFmpeg picks the packet, the timestamps say where we are
                container.seek(max(0, int((start / sr - 0.1) / stream.time_base)), stream=stream, backward=True)
            planes: list[list[np.ndarray]] = [[] for _ in range(channels)]
            first, pos = None, 0  # first: frame index of the first kept sample
            limit_frames = max_decode_bytes() // (4 * channels)  # read once, not per frame
            for frame in _decoded(src, header, container, stream):
                n = frame.samples
                if first is None:
                    first = round(frame.pts * stream.time_base * sr) if (start and frame.pts is not None) else 0
                    pos = first
                lo, hi = max(0, start - pos), n if end is None else min(n, end - pos)
                pos += n
                if hi > lo:
                    append_planes(planes, frame, lo, hi, channels)
                if end is not None and pos >= end:
                    break
                if pos - start > limit_frames:
                    check_allocation(src, pos - start, channels)
        out = join_planes(planes) if planes[0] else empty(channels)
        if count is None and declared is not None and not start and out.shape[1] + 2048 < declared:
            raise DecodeError(f"truncated or corrupt: decoded {out.shape[1]} of the {declared} frames the "
                              "container declares", src.name)
        return out, sr

    def blocks(self, src: Source, header: Header) -> tuple[int, Iterator[np.ndarray]]:
        opened = _opened(src, header)
        container, stream = opened.__enter__()
        sr, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        try:
            validate_stream(src, sr, channels)
        except AudioflowError:
            opened.__exit__(None, None, None)
            raise
        exact = stream_frames(stream, header, sr)

        def blocks() -> Iterator[np.ndarray]:
            with opened:
                planes: list[list[np.ndarray]] = [[] for _ in range(channels)]
                held = done = 0
                for frame in _decoded(src, header, container, stream):
                    keep = frame.samples if exact is None else max(0, min(frame.samples, exact - done))
                    if keep:
                        append_planes(planes, frame, 0, keep, channels)
                    held, done = held + keep, done + keep
                    if held >= BLOCK_FRAMES:
                        yield join_planes(planes)
                        planes, held = [[] for _ in range(channels)], 0
                    if exact is not None and done >= exact:
                        break
                if held:
                    yield join_planes(planes)

        return sr, blocks()


def stream_frames(stream: Any, header: Header, sr: int) -> int | None:
    """The stream's exact length in frames where its container states one: MP4's (the edit list and the
    media header, priming excluded), Ogg Vorbis's (the last granule position, for a stream that starts
    at granule 0) and Ogg Opus's (the last granule position less the pre-skip)."""
    if stream.duration is None or stream.time_base is None:
        return None
    if header.format == "m4a" or (header.codec == "vorbis" and not stream.start_time):
        return round(stream.duration * stream.time_base * sr)
    if header.format == "opus":
        head = bytes(stream.codec_context.extradata or b"")
        if head[:8] == b"OpusHead" and len(head) >= 12:
            return max(0, round(stream.duration * stream.time_base * sr) - int.from_bytes(head[10:12], "little"))
    return None


class _opened:
    """``with _opened(src, header) as (container, audio_stream)``: errors as DecodeError naming the file."""

    def __init__(self, src: Source, header: Header) -> None:
        self.src, self.header, self.container = src, header, None

    def __enter__(self) -> tuple[Any, Any]:
        try:
            import av
        except ImportError:  # pragma: no cover - a core dependency
            raise MissingDependencyError("decoding this format needs PyAV (pip install av)", self.src.name) from None
        try:
            self.container = av.open(self.src.path if self.src.path else rewound(self.src), "r")
        except Exception as e:
            raise DecodeError(f"cannot decode {format_label(self.header)}: {e}", self.src.name) from None
        if not self.container.streams.audio:
            self.container.close()
            raise UnsupportedFormatError("no audio stream in the container", self.src.name)
        return self.container, self.container.streams.audio[0]

    def __exit__(self, *exc: Any) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None


def _decoded(src: Source, header: Header, container: Any, stream: Any) -> Iterator[Any]:
    """The stream's decoded frames; FFmpeg's errors as DecodeError naming the file. Packets are demuxed
    and decoded here rather than through ``container.decode`` (one generator layer less per packet: a
    10 s Vorbis file at 16 kHz has ~300 of them)."""
    codec = stream.codec_context
    try:
        for packet in container.demux(stream):
            yield from codec.decode(packet)  # the last, empty packet flushes the decoder
    except AudioflowError:
        raise
    except Exception as e:
        raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None


def _container_name(container: Any) -> str:
    names = (container.format.name or "unknown").split(",")
    return "webm" if "webm" in names else names[0]


def append_planes(planes: list[list[np.ndarray]], frame: Any, lo: int, hi: int, channels: int) -> None:
    """Samples ``lo:hi`` of a decoded frame appended to per-channel lists (views where FFmpeg's format is
    planar float: the one copy is :func:`join_planes`)."""
    if frame.format.name == "fltp":
        for i, plane in enumerate(frame.planes[:channels]):
            planes[i].append(np.frombuffer(plane, np.float32, hi)[lo:])
        return
    arr = frame.to_ndarray()  # packed or integer formats: convert the frame to float32 planes
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float32) / np.float32(2 ** (8 * arr.dtype.itemsize - 1))
    for i in range(channels):
        planes[i].append(np.ascontiguousarray(arr[i, lo:hi], np.float32))


def join_planes(planes: list[list[np.ndarray]]) -> np.ndarray:
    """``[channels, frames]`` from per-channel lists of frame views, copied once."""
    out = np.empty((len(planes), sum(len(p) for p in planes[0])), np.float32)
    for row, chunks in zip(out, planes, strict=True):
        np.concatenate(chunks, out=row)
    return out


def _declared_frames(stream: Any, container: Any, sr: int) -> int | None:
    if stream.duration is not None and stream.time_base is not None:
        return int(stream.duration * stream.time_base * sr)
    if container.duration is not None:
        return int(container.duration * sr / 1_000_000)
    return None
