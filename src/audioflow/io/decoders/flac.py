"""FLAC with dr_flac (through miniaudio's cffi module) straight into a NumPy buffer: 1.3-2x libsndfile
here. libsndfile reads windows that start inside the file (it seeks, dr_flac decodes its way there),
remote windows (it reads ranges), headers whose length is not believable, and the blocks of ``stream``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ...errors import DecodeError
from ..formats import Header, check_allocation
from ..source import Source
from .base import StreamInfo, frame_window
from .sndfile import PLAUSIBLE_EXPANSION, SndfileDecoder


class FlacDecoder:
    name = "dr_flac"

    def __init__(self) -> None:
        self.fallback = SndfileDecoder()

    def describe(self, src: Source, header: Header) -> StreamInfo:
        if header.frames is None and header.sample_rate and header.channels:
            raise DecodeError("FLAC of unknown length: its STREAMINFO says 0 samples and no complete frames "
                              "were found at its end (truncated or corrupt)", src.name)
        if header.frames is None or not header.sample_rate or not header.channels:
            return self.fallback.describe(src, header)
        return StreamInfo(header.sample_rate, header.channels, header.frames, "flac", header.codec,
                          header.bits_per_sample)

    def blocks(self, src: Source, header: Header) -> tuple[int, Iterator[np.ndarray]]:
        return self.fallback.blocks(src, header)

    def read(self, src: Source, header: Header, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
        declared = header.frames
        remote_window = src.path is None and (offset or duration is not None)
        # a window that starts inside the file: dr_flac seeks without the seek table, decoding its way
        # there (76 ms to reach 5 min into a 10 min file), libsndfile jumps (2.5 ms)
        seeks = offset > 0
        if remote_window or seeks or declared is None or \
                declared * (header.channels or 1) * 4 > PLAUSIBLE_EXPANSION * src.size + (1 << 24):
            return self.fallback.read(src, header, offset, duration)
        try:
            from _miniaudio import ffi, lib
        except ImportError:  # pragma: no cover - miniaudio is a core dependency
            return self.fallback.read(src, header, offset, duration)
        if not hasattr(lib, "ma_dr_flac_open_file"):  # miniaudio < 1.71 named them drflac_*: seen on a GPU image
            return self.fallback.read(src, header, offset, duration)
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
