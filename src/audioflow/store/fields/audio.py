"""Fields that hold audio: raw PCM, encoded bytes, log-mel frames, codec tokens, and long audio in chunks."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import pyarrow as pa

from ..._deprecation import renamed
from ...errors import ParameterError
from .base import ColumnViews, Encoded, Field


def _load_audio(value: Any, sr: int, mono: bool) -> np.ndarray:
    """``[channels, frames]`` float32 at ``sr`` from a path/URL/bytes, or an ``(array, sr)`` pair."""
    from ...io import load, resample

    if isinstance(value, tuple) and len(value) == 2 and hasattr(value[0], "shape"):
        y, rate = np.asarray(value[0], np.float32), int(value[1])
        if mono and y.ndim == 2:
            y = y.mean(axis=0)
        y = resample(y, rate, sr) if rate != sr else y
    else:
        y, _ = load(value, sr=sr, mono=mono)
    return y[None] if y.ndim == 1 else y


class WaveformField(Field):
    """Raw PCM at ``sr`` Hz (``dtype`` 'int16' halves the size; 'float32' keeps every bit): the fastest
    to read. Decodes to float32 ``[channels, frames]`` (``[frames]`` when mono)."""

    kind = "waveform"
    aliases = ("wav", "pcm")
    audio = waveform = True
    batch = "padded"

    def __init__(self, sr: int = 16000, mono: bool = True, dtype: str = "int16") -> None:
        super().__init__()
        if dtype not in ("int16", "float32"):
            raise ParameterError(f"WaveformField dtype must be 'int16' or 'float32', got {dtype!r}")
        self.sr, self.mono, self.dtype = int(sr), mono, dtype

    def to_spec(self):
        return {"kind": self.kind, "sr": self.sr, "mono": self.mono, "dtype": self.dtype}

    def columns(self):
        return [pa.field(self.name, pa.large_binary()), pa.field(f"{self.name}.frames", pa.int64()),
                pa.field(f"{self.name}.channels", pa.int16())]

    def encode(self, value):
        y = _load_audio(value, self.sr, self.mono)
        if self.dtype == "int16":
            data = np.clip(np.round(y.T * 32768.0), -32768, 32767).astype("<i2")
        else:
            data = np.ascontiguousarray(y.T, "<f4")
        return Encoded({self.name: data.tobytes(), f"{self.name}.frames": y.shape[1],
                        f"{self.name}.channels": y.shape[0]}, y.shape[1] / self.sr)

    def decode(self, table, rows):
        offsets, values = table.binary(self.name)
        channels = table.primitive(f"{self.name}.channels")
        dtype, scale = (np.dtype("<i2"), np.float32(1 / 32768)) if self.dtype == "int16" else (np.dtype("<f4"), None)
        out = []
        for r in rows:
            raw = values[offsets[r]:offsets[r + 1]].view(dtype).reshape(-1, int(channels[r])).T
            y = raw * scale if scale is not None else raw.astype(np.float32)
            out.append(y[0] if self.mono else y)
        return out

    def can_gather(self) -> bool:
        return self.mono

    def frames(self, table: ColumnViews, rows: np.ndarray) -> np.ndarray:
        return table.primitive(f"{self.name}.frames")[rows]

    def gather(self, table: ColumnViews, rows: np.ndarray, out: np.ndarray, slots: np.ndarray) -> None:
        """Write rows (mono) straight into ``out[slots, :frames]``: one conversion pass, no temporaries."""
        offsets, values = table.binary(self.name)
        dtype = np.dtype("<i2") if self.dtype == "int16" else np.dtype("<f4")
        for slot, r in zip(slots.tolist(), rows.tolist(), strict=True):
            raw = values[offsets[r]:offsets[r + 1]].view(dtype)
            if self.dtype == "int16":
                np.multiply(raw, np.float32(1 / 32768), out=out[slot, : raw.shape[0]])
            else:
                out[slot, : raw.shape[0]] = raw


class CompressedField(WaveformField):
    """Encoded audio bytes (``codec`` 'flac' lossless, or 'opus'/'mp3'/'ogg' with ``bitrate`` kbit/s):
    the smallest, decoded at read time."""

    kind = "compressed"
    aliases = ("flac",)

    def __init__(self, codec: str = "flac", sr: int = 16000, mono: bool = True, bitrate: int | None = None) -> None:
        super().__init__(sr, mono, "float32")
        self.codec, self.bitrate = codec, bitrate

    def to_spec(self):
        return {"kind": self.kind, "codec": self.codec, "sr": self.sr, "mono": self.mono, "bitrate": self.bitrate}

    def can_gather(self) -> bool:  # rows are encoded bytes: decoded one by one
        return False

    def encode(self, value):
        from ...io import encode

        y = _load_audio(value, self.sr, self.mono)
        data = encode(y[0] if y.shape[0] == 1 else y, self.sr, self.codec, bitrate=self.bitrate)
        return Encoded({self.name: data, f"{self.name}.frames": y.shape[1], f"{self.name}.channels": y.shape[0]},
                       y.shape[1] / self.sr)

    def decode(self, table, rows):
        from ...io import load

        out = []
        for r in rows:
            y, _ = load(bytes(table.bytes_of(self.name, int(r))), sr=self.sr, mono=self.mono)
            out.append(y)
        return out


class MelSpectrogramField(Field):
    """Log-mel frames computed once at write time (``audioflow.features.LogMel``, natural log of mel power
    + 1e-6), stored as ``store_dtype``: ``[n_mels, frames]`` per row, nothing to compute at read time."""

    kind = "mel"
    audio = True
    batch = "padded"

    @renamed(hop="hop_length")
    def __init__(self, n_mels: int = 80, n_fft: int = 400, hop_length: int = 160, sr: int = 16000,
                 store_dtype: str = "float16") -> None:
        super().__init__()
        self.n_mels, self.n_fft, self.hop_length, self.sr = n_mels, n_fft, hop_length, int(sr)
        self.store_dtype = np.dtype(store_dtype)
        self._module = None

    def to_spec(self):
        return {"kind": self.kind, "n_mels": self.n_mels, "n_fft": self.n_fft, "hop_length": self.hop_length,
                "sr": self.sr, "store_dtype": self.store_dtype.name}

    @classmethod
    def from_spec(cls, spec):
        spec = {("hop_length" if key == "hop" else key): value for key, value in spec.items()}  # written before 0.2
        return super().from_spec(spec)

    def columns(self):
        return [pa.field(self.name, pa.large_binary()), pa.field(f"{self.name}.frames", pa.int64())]

    def encode(self, value):
        import torch

        from ...features import LogMel

        if self._module is None:
            if torch.get_num_threads() > 1 and _in_worker():
                torch.set_num_threads(1)  # one thread per writer process: the pool is the parallelism
            self._module = LogMel(self.sr, self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels, log="log")
        y = _load_audio(value, self.sr, True)[0]
        with torch.no_grad():
            mel = self._module(torch.from_numpy(np.ascontiguousarray(y))).numpy()
        data = np.ascontiguousarray(mel.T, self.store_dtype.newbyteorder("<"))  # frames-major on disk
        return Encoded({self.name: data.tobytes(), f"{self.name}.frames": mel.shape[1]}, len(y) / self.sr)

    def __getstate__(self):  # the torch module is rebuilt in each worker
        state = dict(self.__dict__)
        state["_module"] = None
        return state

    def decode(self, table, rows):
        offsets, values = table.binary(self.name)
        dtype = self.store_dtype.newbyteorder("<")
        return [values[offsets[r]:offsets[r + 1]].view(dtype).reshape(-1, self.n_mels).T.astype(np.float32)
                for r in rows]

    def can_gather(self) -> bool:
        return True

    @property
    def frame_rate(self) -> float:
        """Frames per second: ``sr / hop_length`` (100 for 16 kHz and a 10 ms hop)."""
        return self.sr / self.hop_length

    def window(self, table: ColumnViews, row: int, offset: float, duration: float | None) -> np.ndarray:
        """``[n_mels, frames]`` of one row: ``duration`` seconds from ``offset`` seconds, at ``frame_rate``."""
        mel = self.decode(table, np.array([row]))[0]
        start = round(offset * self.frame_rate)
        return mel[:, start: None if duration is None else start + round(duration * self.frame_rate)]

    def gather_shape(self, rows: int) -> tuple[int, ...]:
        return (rows, self.n_mels)

    def frames(self, table: ColumnViews, rows: np.ndarray) -> np.ndarray:
        return table.primitive(f"{self.name}.frames")[rows]

    def gather(self, table: ColumnViews, rows: np.ndarray, out: np.ndarray, slots: np.ndarray) -> None:
        """Write rows into ``out[slots, :, :frames]`` (``out`` is ``[batch, n_mels, frames]`` float32).

        float16 rows are converted by torch (F16C instructions: ~30x NumPy's scalar float16 conversion,
        which was most of a mel batch's read time)."""
        offsets, values = table.binary(self.name)
        dtype = self.store_dtype.newbyteorder("<")
        if dtype == np.dtype("<f2") and sys.byteorder == "little":
            import torch

            with warnings.catch_warnings():  # the shard is memory-mapped read-only; torch only reads it
                warnings.simplefilter("ignore", UserWarning)
                source = torch.from_numpy(values)
            for slot, r in zip(slots.tolist(), rows.tolist(), strict=True):
                mel = source[offsets[r]:offsets[r + 1]].view(torch.float16).reshape(-1, self.n_mels)
                torch.from_numpy(out[slot, :, : mel.shape[0]]).copy_(mel.T)
            return
        for slot, r in zip(slots.tolist(), rows.tolist(), strict=True):
            mel = values[offsets[r]:offsets[r + 1]].view(dtype).reshape(-1, self.n_mels)
            out[slot, :, : mel.shape[0]] = mel.T


class CodecTokenField(Field):
    """Discrete codec tokens ``[n_codebooks, frames]`` (audio language models), stored as uint16.

    A row gives either audio (encoded by ``encoder(y, sr) -> int array [n_codebooks, frames]``: any
    callable, e.g. a wrapped EnCodec/DAC model; it must pickle, as it runs in the writer's processes)
    or the tokens themselves. Shape, integer dtype and the ``[0, vocab_size)`` range are checked.
    """

    kind = "codec_tokens"
    audio = True

    def __init__(self, n_codebooks: int, frame_rate: float, vocab_size: int, encoder: Any = None,
                 sr: int = 16000) -> None:
        super().__init__()
        if not 0 < vocab_size <= 65536:
            raise ParameterError(f"vocab_size must be in 1..65536 (stored as uint16), got {vocab_size}")
        self.n_codebooks, self.frame_rate, self.vocab_size = int(n_codebooks), float(frame_rate), int(vocab_size)
        self.encoder, self.sr = encoder, int(sr)

    def to_spec(self):  # the encoder is code, not data: readers do not need it
        return {"kind": self.kind, "n_codebooks": self.n_codebooks, "frame_rate": self.frame_rate,
                "vocab_size": self.vocab_size, "sr": self.sr}

    def columns(self):
        return [pa.field(self.name, pa.large_binary()), pa.field(f"{self.name}.frames", pa.int64())]

    def encode(self, value):
        seconds = None
        if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
            tokens = value
        else:
            if self.encoder is None:
                raise ParameterError(f"field {self.name!r} got audio but has no encoder")
            y = _load_audio(value, self.sr, True)[0]
            tokens, seconds = np.asarray(self.encoder(y, self.sr)), len(y) / self.sr
        if tokens.ndim != 2 or tokens.shape[0] != self.n_codebooks:
            raise ParameterError(f"field {self.name!r} expects tokens [{self.n_codebooks}, frames], got shape "
                                 f"{tokens.shape}")
        if tokens.dtype.kind not in "iu":
            raise ParameterError(f"field {self.name!r} expects integer tokens, got {tokens.dtype}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ParameterError(f"field {self.name!r}: tokens outside [0, {self.vocab_size}) "
                                 f"(min {tokens.min()}, max {tokens.max()})")
        data = np.ascontiguousarray(tokens.T, "<u2")  # frames-major on disk
        return Encoded({self.name: data.tobytes(), f"{self.name}.frames": tokens.shape[1]},
                       seconds if seconds is not None else tokens.shape[1] / self.frame_rate)

    def decode(self, table, rows):
        offsets, values = table.binary(self.name)
        return [values[offsets[r]:offsets[r + 1]].view("<u2").reshape(-1, self.n_codebooks).T.astype(np.int64)
                for r in rows]


class ChunkedAudioField(Field):
    """Long audio cut into ``chunk_duration``-second chunks, each stored as int16 PCM ('pcm') or FLAC
    ('flac'): reading a window decodes only the chunks it overlaps (``Dataset.read_window``).
    Decoding a whole row joins all its chunks."""

    kind = "chunked"
    audio = waveform = True
    batch = "padded"

    def __init__(self, chunk_duration: float = 10.0, sr: int = 16000, codec: str = "pcm") -> None:
        super().__init__()
        if codec not in ("pcm", "flac"):
            raise ParameterError(f"ChunkedAudioField codec must be 'pcm' or 'flac', got {codec!r}")
        self.chunk_duration, self.sr, self.codec = float(chunk_duration), int(sr), codec
        self.chunk_frames = round(self.chunk_duration * self.sr)

    def to_spec(self):
        return {"kind": self.kind, "chunk_duration": self.chunk_duration, "sr": self.sr, "codec": self.codec}

    def columns(self):
        return [pa.field(self.name, pa.large_list(pa.large_binary())), pa.field(f"{self.name}.frames", pa.int64())]

    def encode(self, value):
        from ...io import encode

        y = _load_audio(value, self.sr, True)[0]
        chunks = []
        for start in range(0, max(len(y), 1), self.chunk_frames):
            part = y[start:start + self.chunk_frames]
            if self.codec == "flac":
                chunks.append(encode(part, self.sr, "flac"))
            else:
                chunks.append(np.clip(np.round(part * 32768.0), -32768, 32767).astype("<i2").tobytes())
        return Encoded({self.name: chunks, f"{self.name}.frames": len(y)}, len(y) / self.sr)

    def chunk(self, table: ColumnViews, row: int, k: int) -> np.ndarray:
        list_offsets, offsets, values = table.chunk_views(self.name)
        first = list_offsets[row]
        piece = values[offsets[first + k]:offsets[first + k + 1]]
        if self.codec == "flac":
            from ...io import load

            return load(piece.tobytes())[0]
        return piece.view("<i2") * np.float32(1 / 32768)

    def window(self, table: ColumnViews, row: int, offset: float, duration: float | None) -> np.ndarray:
        total = int(table.primitive(f"{self.name}.frames")[row])
        start = min(total, max(0, round(offset * self.sr)))
        stop = total if duration is None else min(total, start + round(duration * self.sr))
        if stop <= start:
            return np.zeros(0, np.float32)
        first, last = start // self.chunk_frames, (stop - 1) // self.chunk_frames
        joined = np.concatenate([self.chunk(table, row, k) for k in range(first, last + 1)])
        base = first * self.chunk_frames
        return joined[start - base: stop - base]

    def decode(self, table, rows):
        return [self.window(table, int(r), 0.0, None) for r in rows]


def _in_worker() -> bool:
    import multiprocessing

    return multiprocessing.current_process().name != "MainProcess"
