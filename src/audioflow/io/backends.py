"""Decoders, one per kind of stream, each picked where it measured fastest (docs/benchmarks.md).

Every reader takes an opened :class:`Source`, its parsed :class:`Header` and a window in seconds
(``offset``, ``duration``; ``duration=None`` reads to the end) and returns ``(samples, sample_rate)`` with
``samples`` a float32 array shaped ``[channels, frames]`` (often a transposed view of an
interleaved buffer: it costs nothing and the mixdown reads it as fast).

- PCM WAV/RF64/AIFF: NumPy straight from the file (no C library round trip).
- FLAC: dr_flac through miniaudio's bindings (1.3-2x libsndfile here); remote windows: libsndfile.
- MP3, Ogg Vorbis and everything else libsndfile knows: soundfile.
- Opus, M4A/AAC and other FFmpeg-only containers: PyAV, viewing each frame's planes, copied once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AudioflowError, DecodeError, MissingDependencyError, UnsupportedFormatError
from .formats import MAX_CHANNELS, MAX_SAMPLE_RATE, Header, PcmLayout, check_allocation, max_decode_bytes
from .source import Source

# A declared length this many times the file size (or more) is not believed: read in blocks
# instead of allocating it. Low-bitrate MP3 expands about 100x to float32, silence in FLAC more.
_PLAUSIBLE_EXPANSION = 256
_BLOCK_FRAMES = 1 << 20
_MP3_PREROLL = 4 * 1152  # frames


def frame_window(sr: int, offset: float, duration: float | None) -> tuple[int, int | None]:
    """``(start, count)`` in frames for a window in seconds, rounded as librosa rounds them."""
    return round(offset * sr), (None if duration is None else round(duration * sr))


def format_label(header: Header) -> str:
    """'FLAC', 'MP3'... for messages; 'audio' when we only know the container by its magic."""
    return "audio" if header.format == "other" else header.format.upper()


def empty(channels: int) -> np.ndarray:
    return np.zeros((channels, 0), np.float32)


# --- NumPy PCM ----------------------------------------------------------------------------------

_SCALE = {1: 1 / 128, 2: 1 / 32768, 3: 1 / 2**31, 4: 1 / 2**31}


def read_pcm(src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Uncompressed PCM or float frames, read with one ``readinto`` and converted in one pass."""
    start, count = frame_window(header.sample_rate, offset, duration)  # type: ignore[arg-type]
    return read_pcm_frames(src, header, start, count), header.sample_rate  # type: ignore[return-value]


def read_pcm_frames(src: Source, header: Header, start: int, count: int | None) -> np.ndarray:
    """``[channels, frames]`` float32 from frame ``start``, ``count`` frames (None: to the end)."""
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


# --- soundfile (libsndfile) ---------------------------------------------------------------------


def _validate_stream(src: Source, sr: int, channels: int) -> None:
    if not 0 < sr <= MAX_SAMPLE_RATE:
        raise DecodeError(f"invalid sample rate of {sr} Hz", src.name)
    if not 0 < channels <= MAX_CHANNELS:
        raise DecodeError(f"invalid channel count of {channels}", src.name)


def read_soundfile(src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Anything libsndfile reads; seeks for windows, reads in blocks when the length is implausible."""
    import soundfile as sf

    try:
        with sf.SoundFile(src.path if src.path else _rewound(src)) as f:
            sr, channels, frames = f.samplerate, f.channels, f.frames
            _validate_stream(src, sr, channels)
            start, count = frame_window(sr, offset, duration)
            if start >= frames:
                return empty(channels), sr
            # MP3 frames borrow bits from earlier frames (the bit reservoir): decode a few frames
            # before the window and drop them, or its first milliseconds come out wrong
            preroll = min(start, _MP3_PREROLL) if header.format == "mp3" else 0
            if start:
                f.seek(start - preroll)
            n = frames - start if count is None else min(count, frames - start)
            if n * channels * 4 <= _PLAUSIBLE_EXPANSION * src.size + (1 << 24):
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


def _read_blocks(src: Source, f: Any, n: int, channels: int) -> np.ndarray:
    blocks, total = [], 0
    while total < n:
        block = f.read(min(_BLOCK_FRAMES, n - total), dtype="float32", always_2d=True)
        if not len(block):
            break
        total += len(block)
        check_allocation(src, total, channels)
        blocks.append(block)
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)


def _rewound(src: Source) -> Any:
    src.file.seek(0)
    return src.file


# --- dr_flac (through miniaudio's bindings) -----------------------------------------------------


def read_flac(src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """FLAC with dr_flac straight into a NumPy buffer (one copy); libsndfile for remote windows
    (it reads ranges) and for headers whose declared length is not believable."""
    declared = header.frames
    remote_window = src.path is None and (offset or duration is not None)
    if remote_window or declared is None or \
            declared * (header.channels or 1) * 4 > _PLAUSIBLE_EXPANSION * src.size + (1 << 24):
        return read_soundfile(src, header, offset, duration)
    try:
        from _miniaudio import ffi, lib
    except ImportError:  # pragma: no cover - miniaudio is a core dependency
        return read_soundfile(src, header, offset, duration)
    if not hasattr(lib, "ma_dr_flac_open_file"):  # miniaudio < 1.71 named them drflac_*: seen on a GPU image
        return read_soundfile(src, header, offset, duration)
    sr, channels = header.sample_rate, header.channels
    start, count = frame_window(sr, offset, duration)  # type: ignore[arg-type]
    n = max(0, declared - start) if count is None else max(0, min(count, declared - start))
    check_allocation(src, n, channels)  # type: ignore[arg-type]
    data = None if src.path else src.read_all()  # kept alive while dr_flac reads it
    flac = lib.ma_dr_flac_open_file(src.path.encode(), ffi.NULL) if src.path else \
        lib.ma_dr_flac_open_memory(ffi.from_buffer(data), len(data), ffi.NULL)
    if flac == ffi.NULL:
        raise DecodeError("cannot decode FLAC: not a readable FLAC stream", src.name)
    try:
        if flac.channels != channels or flac.sampleRate != sr:
            raise DecodeError("corrupt FLAC: STREAMINFO disagrees with the decoder", src.name)
        out = np.empty((n, channels), np.float32)  # type: ignore[arg-type]
        if n and start and not lib.ma_dr_flac_seek_to_pcm_frame(flac, start):
            raise DecodeError(f"cannot seek to frame {start}", src.name)
        got = lib.ma_dr_flac_read_pcm_frames_f32(flac, n, ffi.cast("float *", ffi.from_buffer(out))) if n else 0
    finally:
        lib.ma_dr_flac_close(flac)
    if got < n:
        raise DecodeError(f"truncated or corrupt: decoded {start + got} of the {declared} frames the header "
                          "declares", src.name)
    return out.T, sr  # type: ignore[return-value]


# --- PyAV (FFmpeg) ------------------------------------------------------------------------------


def read_pyav(src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Ogg Vorbis, Opus, AAC and other containers through FFmpeg; windows seek by timestamp."""
    try:
        import av
    except ImportError:  # pragma: no cover - a core dependency
        raise MissingDependencyError("decoding this format needs PyAV (pip install av)", src.name) from None
    try:
        with av.open(src.path if src.path else _rewound(src), "r") as container:
            if not container.streams.audio:
                raise UnsupportedFormatError("no audio stream in the container", src.name)
            stream = container.streams.audio[0]
            return _decode_av_stream(src, container, stream, offset, duration)
    except AudioflowError:
        raise
    except Exception as e:
        raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None


def _decode_av_stream(src: Source, container: Any, stream: Any, offset: float,
                      duration: float | None) -> tuple[np.ndarray, int]:
    sr, channels = stream.codec_context.sample_rate, stream.codec_context.channels
    _validate_stream(src, sr, channels)
    start, count = frame_window(sr, offset, duration)
    declared = _av_declared_frames(stream, container, sr)
    if declared is not None:
        check_allocation(src, min(declared, count or declared), channels)
    if start:
        # land on or before the window; FFmpeg picks the packet, the timestamps say where we are
        container.seek(max(0, int((start / sr - 0.1) / stream.time_base)), stream=stream, backward=True)
    planes: list[list[np.ndarray]] = [[] for _ in range(channels)]
    first, pos = None, 0  # first: frame index of the first kept sample
    end = None if count is None else start + count
    limit_frames = max_decode_bytes() // (4 * channels)  # read once, not per frame
    for frame in container.decode(stream):
        n = frame.samples
        if first is None:
            first = round(frame.pts * stream.time_base * sr) if (start and frame.pts is not None) else 0
            pos = first
        lo, hi = max(0, start - pos), n if end is None else min(n, end - pos)
        pos += n
        if hi <= lo:
            if end is not None and pos >= end:
                break
            continue
        _append_planes(planes, frame, lo, hi, channels)
        if end is not None and pos >= end:
            break
        if pos - start > limit_frames:
            check_allocation(src, pos - start, channels)
    out = join_planes(planes) if planes[0] else empty(channels)
    if count is None and declared is not None and not start and out.shape[1] + 2048 < declared:
        raise DecodeError(f"truncated or corrupt: decoded {out.shape[1]} of the {declared} frames the "
                          "container declares", src.name)
    return out, sr


def _append_planes(planes: list[list[np.ndarray]], frame: Any, lo: int, hi: int, channels: int) -> None:
    if frame.format.name == "fltp":
        # zero-copy views that keep the frame's buffer alive; the one copy is the final concatenate
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


def _av_declared_frames(stream: Any, container: Any, sr: int) -> int | None:
    if stream.duration is not None and stream.time_base is not None:
        return int(stream.duration * stream.time_base * sr)
    if container.duration is not None:
        return int(container.duration * sr / 1_000_000)
    return None
