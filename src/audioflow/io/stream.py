"""``stream``: fixed-size blocks of a long file, with memory bounded by the block size."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import DecodeError, ParameterError
from . import backends
from .backends import format_label
from .decode import check_finite, downmix, validate_load_args
from .formats import Header, check_ogg_complete, sniff
from .resample import soxr_quality
from .source import Source, open_source

_NATIVE_BLOCK = 1 << 16  # frames decoded per step


def stream(source: Any, block_duration: float, sr: float | None = None, mono: bool = True,
           dtype: Any = np.float32, res_quality: str = "hq",
           storage_options: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
    """Yield consecutive blocks of ``block_duration`` seconds; the last block may be shorter.

    Memory stays bounded by the block size whatever the file length; with ``sr`` set, one
    streaming soxr resampler runs across block boundaries, so the joined blocks equal a
    one-shot resample up to soxr's streaming precision.

    Args:
        source: a path, ``pathlib.Path``, fsspec URL, ``bytes`` or binary file object.
        block_duration: length of each block in seconds (> 0).
        sr: output sample rate in Hz; ``None`` keeps the file's rate.
        mono: average the channels into one.
        dtype: floating-point dtype of the blocks.
        res_quality: soxr quality ('qq', 'lq', 'mq', 'hq', 'vhq').
        storage_options: passed to ``fsspec.open`` for URLs.

    Yields:
        ``np.ndarray [shape=(frames,)]`` (mono) or ``[shape=(channels, frames)]`` blocks.
    """
    if not block_duration > 0:
        raise ParameterError(f"block_duration must be > 0 seconds, got {block_duration!r}")
    out_dtype = validate_load_args(sr, 0.0, None, dtype, res_quality)
    with open_source(source, storage_options) as src:
        header = sniff(src)
        native_sr, blocks = _native_blocks(src, header)
        out_sr = native_sr if sr is None else round(sr)
        resampler = None
        if out_sr != native_sr:
            import soxr

            resampler = _LazyResampler(soxr, native_sr, out_sr, soxr_quality(res_quality))
        block_frames = max(1, round(block_duration * out_sr))
        pending: list[np.ndarray] = []
        held = 0
        for native in _finish(blocks, resampler, mono):
            pending.append(native)
            held += native.shape[-1]
            while held >= block_frames:
                joined = np.concatenate(pending, axis=-1) if len(pending) > 1 else pending[0]
                yield _shape(joined[..., :block_frames], out_dtype)
                rest = joined[..., block_frames:]
                pending, held = ([rest], rest.shape[-1]) if rest.shape[-1] else ([], 0)
        if held:
            yield _shape(np.concatenate(pending, axis=-1), out_dtype)


class _LazyResampler:
    """soxr.ResampleStream created on the first block, when the channel count is certain."""

    def __init__(self, soxr: Any, in_sr: int, out_sr: int, quality: str) -> None:
        self.args = (in_sr, out_sr)
        self.soxr, self.quality, self.stream = soxr, quality, None

    def __call__(self, y: np.ndarray, last: bool) -> np.ndarray:
        if self.stream is None:
            self.stream = self.soxr.ResampleStream(*self.args, y.shape[0], dtype="float32",
                                                   quality=self.quality)
        return self.stream.resample_chunk(np.ascontiguousarray(y.T), last=last).T


def _finish(blocks: Iterator[np.ndarray], resampler: _LazyResampler | None,
            mono: bool) -> Iterator[np.ndarray]:
    """Mix down and resample native blocks; flush the resampler at the end."""
    previous = None
    for block in blocks:
        block = downmix(block) if mono and block.shape[0] > 1 else block
        if resampler is None:
            yield block
            continue
        if previous is not None:
            yield resampler(previous, last=False)
        previous = block
    if resampler is not None and previous is not None:
        yield resampler(previous, last=True)


def _shape(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    y = y[0] if y.shape[0] == 1 else y
    return y if y.dtype == dtype else y.astype(dtype)


def _native_blocks(src: Source, header: Header) -> tuple[int, Iterator[np.ndarray]]:
    """The native rate and an iterator of ``[channels, frames]`` float32 blocks."""
    if header.format in ("ogg", "opus"):
        check_ogg_complete(src)
    if header.pcm is not None:
        return header.sample_rate, _pcm_blocks(src, header)  # type: ignore[return-value]
    if header.format in ("opus", "m4a", "aac"):
        return _pyav_blocks(src, header)
    if header.format == "other" and header.codec == "unknown":
        # containers known only by magic (Matroska/WebM from browsers' MediaRecorder, AMR, CAF...): libsndfile,
        # then FFmpeg, as load() does
        try:
            return _soundfile_blocks(src, header)
        except DecodeError:
            return _pyav_blocks(src, header)
    return _soundfile_blocks(src, header)


def _pcm_blocks(src: Source, header: Header) -> Iterator[np.ndarray]:
    frames = header.pcm.frames  # type: ignore[union-attr]
    is_float = header.pcm.dtype[-2] == "f"  # type: ignore[union-attr]
    for start in range(0, frames, _NATIVE_BLOCK):
        block = backends.read_pcm_frames(src, header, start, _NATIVE_BLOCK)
        if is_float:
            check_finite(block, src.name)
        yield block


def _soundfile_blocks(src: Source, header: Header) -> tuple[int, Iterator[np.ndarray]]:
    import soundfile as sf

    try:
        f = sf.SoundFile(src.path if src.path else backends._rewound(src))
    except Exception as e:
        raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None

    def blocks() -> Iterator[np.ndarray]:
        with f:
            while True:
                try:
                    block = f.read(_NATIVE_BLOCK, dtype="float32", always_2d=True)
                except Exception as e:
                    raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None
                if not len(block):
                    return
                yield block.T

    return f.samplerate, blocks()


def _pyav_blocks(src: Source, header: Header) -> tuple[int, Iterator[np.ndarray]]:
    import av

    try:
        container = av.open(src.path if src.path else backends._rewound(src))
        audio = container.streams.audio[0]
    except Exception as e:
        raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None
    sr, channels = audio.codec_context.sample_rate, audio.codec_context.channels

    def blocks() -> Iterator[np.ndarray]:
        with container:
            planes: list[list[np.ndarray]] = [[] for _ in range(channels)]
            held = 0
            try:
                for frame in container.decode(audio):
                    backends._append_planes(planes, frame, 0, frame.samples, channels)
                    held += frame.samples
                    if held >= _NATIVE_BLOCK:
                        yield backends.join_planes(planes)
                        planes, held = [[] for _ in range(channels)], 0
            except Exception as e:
                raise DecodeError(f"cannot decode {format_label(header)}: {e}", src.name) from None
            if held:
                yield backends.join_planes(planes)

    return sr, blocks()
