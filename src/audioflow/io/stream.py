"""``stream``: fixed-size blocks of a long file, with memory bounded by the block size."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ParameterError
from .decode import downmix, validate_load_args
from .decoders import decode_with
from .formats import sniff
from .resample import soxr_quality
from .source import open_source


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
        native_sr, blocks = decode_with(src, header, lambda decoder: decoder.blocks(src, header))
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
