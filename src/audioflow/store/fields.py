"""Typed fields of a packed dataset: how a value is encoded into Arrow columns when writing, and how a
batch of rows is decoded when reading.

A field owns the columns ``{name}`` (the payload) and, for arrays, ``{name}.shape``-like integer
columns; its spec (``to_spec``) goes into the manifest and the Arrow schema metadata, so a shard
describes itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ParameterError


class Field:
    """Base class. Subclasses set ``kind`` and implement ``columns``, ``encode`` and ``decode``."""

    kind = "field"
    audio = False  # fields whose source value is audio (a path, bytes or an array)

    def __init__(self) -> None:
        self.name = ""

    def bind(self, name: str) -> Field:
        self.name = name
        return self

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def columns(self) -> list[pa.Field]:
        raise NotImplementedError

    def encode(self, value: Any) -> dict[str, Any]:
        """``{column: python value}`` for one row (runs in the writer's worker processes)."""
        raise NotImplementedError

    def decode(self, table: ColumnViews, rows: np.ndarray) -> Any:
        """The values of ``rows`` of one shard (``table`` holds zero-copy views of its columns)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        spec = ", ".join(f"{k}={v!r}" for k, v in self.to_spec().items() if k != "kind")
        return f"{type(self).__name__}({spec})"


class ColumnViews:
    """Zero-copy NumPy views of one shard's columns, built once when the shard is opened."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch
        self._cache: dict[str, Any] = {}

    def primitive(self, column: str) -> np.ndarray:
        if column not in self._cache:
            self._cache[column] = self.batch.column(column).to_numpy(zero_copy_only=False)
        return self._cache[column]

    def binary(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets [rows + 1] int64, values uint8)`` of a large_binary column, without copying."""
        if column not in self._cache:
            array = self.batch.column(column)
            if array.null_count:
                raise ValueError(f"column {column!r} holds nulls")
            buffers = array.buffers()
            offsets = np.frombuffer(buffers[1], np.int64, len(array) + 1, array.offset * 8)
            values = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
            self._cache[column] = (offsets, values)
        return self._cache[column]

    def chunk_views(self, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(row -> first chunk, chunk byte offsets, bytes)`` of a large_list<large_binary> column."""
        key = column + "#chunks"
        if key not in self._cache:
            lists = self.batch.column(column)
            data = lists.values  # the chunks of every row, one large_binary array
            list_offsets = np.frombuffer(lists.buffers()[1], np.int64, len(lists) + 1, lists.offset * 8)
            raw = data.buffers()
            offsets = np.frombuffer(raw[1], np.int64, len(data) + 1, data.offset * 8)
            self._cache[key] = (list_offsets, offsets, np.frombuffer(raw[2], np.uint8))
        return self._cache[key]

    def bytes_of(self, column: str, row: int) -> memoryview:
        offsets, values = self.binary(column)
        return memoryview(values[offsets[row]:offsets[row + 1]])


# --- scalars ------------------------------------------------------------------------------------


class _NumberField(Field):
    """One number per row in a primitive Arrow column (read back as a NumPy view)."""

    arrow_type: pa.DataType
    cast: type

    def columns(self):
        return [pa.field(self.name, self.arrow_type)]

    def encode(self, value):
        return {self.name: self.cast(value)}

    def decode(self, table, rows):
        return table.primitive(self.name)[rows]


class IntField(_NumberField):
    """An integer label (int64)."""

    kind = "int"
    arrow_type, cast = pa.int64(), int


class FloatField(_NumberField):
    """A floating-point value (float64)."""

    kind = "float"
    arrow_type, cast = pa.float64(), float


class StringField(Field):
    """Text (transcripts, speaker ids, paths)."""

    kind = "string"

    def columns(self):
        return [pa.field(self.name, pa.large_string())]

    def encode(self, value):
        return {self.name: str(value)}

    def decode(self, table, rows):
        return table.batch.column(self.name).take(pa.array(rows)).to_pylist()


class JSONField(Field):
    """Any JSON-serialisable value (metadata, segment lists)."""

    kind = "json"

    def columns(self):
        return [pa.field(self.name, pa.large_string())]

    def encode(self, value):
        return {self.name: json.dumps(value, separators=(",", ":"))}

    def decode(self, table, rows):
        return [json.loads(text) for text in table.batch.column(self.name).take(pa.array(rows)).to_pylist()]


class NDArrayField(Field):
    """An N-d array of a fixed ``dtype`` and rank; shapes may differ per row (bytes + a shape column)."""

    kind = "ndarray"

    def __init__(self, dtype: str = "float32", ndim: int = 1) -> None:
        super().__init__()
        self.dtype, self.ndim = np.dtype(dtype), ndim

    def to_spec(self):
        return {"kind": self.kind, "dtype": self.dtype.str, "ndim": self.ndim}

    def columns(self):
        return [pa.field(self.name, pa.large_binary()), pa.field(f"{self.name}.shape", pa.list_(pa.int64()))]

    def encode(self, value):
        array = np.ascontiguousarray(value, dtype=self.dtype)
        if array.ndim != self.ndim:
            raise ParameterError(f"field {self.name!r} holds {self.ndim}-d arrays, got shape {array.shape}")
        return {self.name: array.tobytes(), f"{self.name}.shape": list(array.shape)}

    def decode(self, table, rows):
        shapes = table.batch.column(f"{self.name}.shape").take(pa.array(rows)).to_pylist()
        return [np.frombuffer(table.bytes_of(self.name, int(r)), self.dtype).reshape(shape)
                for r, shape in zip(rows, shapes, strict=True)]


# --- audio --------------------------------------------------------------------------------------


def _load_audio(value: Any, sr: int, mono: bool) -> np.ndarray:
    """``[channels, frames]`` float32 at ``sr`` from a path/URL/bytes, or an ``(array, sr)`` pair."""
    from ..io import load, resample

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
    audio = True

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
        return {self.name: data.tobytes(), f"{self.name}.frames": y.shape[1], f"{self.name}.channels": y.shape[0],
                "_seconds": y.shape[1] / self.sr}

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

    def __init__(self, codec: str = "flac", sr: int = 16000, mono: bool = True, bitrate: int | None = None) -> None:
        super().__init__(sr, mono, "float32")
        self.codec, self.bitrate = codec, bitrate

    def to_spec(self):
        return {"kind": self.kind, "codec": self.codec, "sr": self.sr, "mono": self.mono, "bitrate": self.bitrate}

    def encode(self, value):
        from ..io import encode

        y = _load_audio(value, self.sr, self.mono)
        data = encode(y[0] if y.shape[0] == 1 else y, self.sr, self.codec, bitrate=self.bitrate)
        return {self.name: data, f"{self.name}.frames": y.shape[1], f"{self.name}.channels": y.shape[0],
                "_seconds": y.shape[1] / self.sr}

    def decode(self, table, rows):
        from ..io import load

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

    def __init__(self, n_mels: int = 80, n_fft: int = 400, hop: int = 160, sr: int = 16000,
                 store_dtype: str = "float16") -> None:
        super().__init__()
        self.n_mels, self.n_fft, self.hop, self.sr = n_mels, n_fft, hop, int(sr)
        self.store_dtype = np.dtype(store_dtype)
        self._module = None

    def to_spec(self):
        return {"kind": self.kind, "n_mels": self.n_mels, "n_fft": self.n_fft, "hop": self.hop, "sr": self.sr,
                "store_dtype": self.store_dtype.name}

    def columns(self):
        return [pa.field(self.name, pa.large_binary()), pa.field(f"{self.name}.frames", pa.int64())]

    def encode(self, value):
        import torch

        from ..features import LogMel

        if self._module is None:
            if torch.get_num_threads() > 1 and _in_worker():
                torch.set_num_threads(1)  # one thread per writer process: the pool is the parallelism
            self._module = LogMel(self.sr, self.n_fft, hop_length=self.hop, n_mels=self.n_mels, log="log")
        y = _load_audio(value, self.sr, True)[0]
        with torch.no_grad():
            mel = self._module(torch.from_numpy(np.ascontiguousarray(y))).numpy()
        data = np.ascontiguousarray(mel.T, self.store_dtype.newbyteorder("<"))  # frames-major on disk
        return {self.name: data.tobytes(), f"{self.name}.frames": mel.shape[1], "_seconds": len(y) / self.sr}

    def __getstate__(self):  # the torch module is rebuilt in each worker
        state = dict(self.__dict__)
        state["_module"] = None
        return state

    def decode(self, table, rows):
        offsets, values = table.binary(self.name)
        dtype = self.store_dtype.newbyteorder("<")
        return [values[offsets[r]:offsets[r + 1]].view(dtype).reshape(-1, self.n_mels).T.astype(np.float32)
                for r in rows]

    def frames(self, table: ColumnViews, rows: np.ndarray) -> np.ndarray:
        return table.primitive(f"{self.name}.frames")[rows]

    def gather(self, table: ColumnViews, rows: np.ndarray, out: np.ndarray, slots: np.ndarray) -> None:
        """Write rows into ``out[slots, :, :frames]`` (``out`` is ``[batch, n_mels, frames]`` float32)."""
        offsets, values = table.binary(self.name)
        dtype = self.store_dtype.newbyteorder("<")
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
        return {self.name: data.tobytes(), f"{self.name}.frames": tokens.shape[1],
                "_seconds": seconds if seconds is not None else tokens.shape[1] / self.frame_rate}

    def decode(self, table, rows):
        offsets, values = table.binary(self.name)
        return [values[offsets[r]:offsets[r + 1]].view("<u2").reshape(-1, self.n_codebooks).T.astype(np.int64)
                for r in rows]


class ChunkedAudioField(Field):
    """Long audio cut into ``chunk_duration``-second chunks, each stored as int16 PCM ('pcm') or FLAC
    ('flac'): reading a window decodes only the chunks it overlaps (``Dataset.read_window``).
    Decoding a whole row joins all its chunks."""

    kind = "chunked"
    audio = True

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
        from ..io import encode

        y = _load_audio(value, self.sr, True)[0]
        chunks = []
        for start in range(0, max(len(y), 1), self.chunk_frames):
            part = y[start:start + self.chunk_frames]
            if self.codec == "flac":
                chunks.append(encode(part, self.sr, "flac"))
            else:
                chunks.append(np.clip(np.round(part * 32768.0), -32768, 32767).astype("<i2").tobytes())
        return {self.name: chunks, f"{self.name}.frames": len(y), "_seconds": len(y) / self.sr}

    def chunk(self, table: ColumnViews, row: int, k: int) -> np.ndarray:
        list_offsets, offsets, values = table.chunk_views(self.name)
        first = list_offsets[row]
        piece = values[offsets[first + k]:offsets[first + k + 1]]
        if self.codec == "flac":
            from ..io import load

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


class _CompositeField(Field):
    """Several fields stored side by side under one name; ``parts`` are bound to ``{name}.{part}``."""

    audio = True

    def __init__(self, parts: dict[str, Field]) -> None:
        super().__init__()
        self.parts = parts

    def bind(self, name: str) -> Field:
        self.name = name
        for part, field in self.parts.items():
            field.bind(f"{name}.{part}")
        return self

    def columns(self):
        return [c for f in self.parts.values() for c in f.columns()]

    def part_value(self, value: Any, part: str) -> Any:
        raise NotImplementedError

    def encode(self, value):
        out: dict[str, Any] = {}
        seconds = 0.0
        for part, field in self.parts.items():
            encoded = field.encode(self.part_value(value, part))
            seconds = max(seconds, encoded.pop("_seconds", 0.0))
            out.update(encoded)
        out["_seconds"] = seconds
        return out

    def decode(self, table, rows):
        decoded = {part: field.decode(table, rows) for part, field in self.parts.items()}
        return [{part: values[i] for part, values in decoded.items()} for i in range(len(rows))]

    def leaves(self) -> dict[str, Field]:
        """``{"{name}.{part}": field}``: how a batch exposes the parts."""
        return {field.name: field for field in self.parts.values()}


class MultiTrackField(_CompositeField):
    """Aligned stems (source separation): a row gives ``{stem: audio}`` for every stem; each stem is
    stored as ``inner`` (a WaveformField or CompressedField) and all must have the same length."""

    kind = "multitrack"

    def __init__(self, stems: list[str] | tuple[str, ...] = ("vocals", "drums", "bass", "other"),
                 inner: Field | None = None) -> None:
        import copy

        inner = inner or WaveformField()
        if not isinstance(inner, WaveformField):
            raise ParameterError("MultiTrackField stores its stems as a WaveformField or CompressedField")
        super().__init__({stem: copy.deepcopy(inner) for stem in stems})
        self.stems, self.inner = list(stems), inner

    def to_spec(self):
        return {"kind": self.kind, "stems": self.stems, "inner": self.inner.to_spec()}

    def part_value(self, value, part):
        if not isinstance(value, Mapping) or part not in value:
            raise ParameterError(f"field {self.name!r} needs a dict with the stems {self.stems}")
        return value[part]

    def encode(self, value):
        out = super().encode(value)
        frames = {out[f"{self.name}.{stem}.frames"] for stem in self.stems}
        if len(frames) > 1:
            raise ParameterError(f"field {self.name!r}: stems are not aligned (lengths {sorted(frames)})")
        return out


class HybridField(_CompositeField):
    """The same audio stored twice: as ``waveform`` (a WaveformField or CompressedField) and as
    ``spectrogram`` (a MelSpectrogramField), for models or research that need both."""

    kind = "hybrid"

    def __init__(self, waveform: Field | None = None, spectrogram: Field | None = None) -> None:
        super().__init__({"waveform": waveform or WaveformField(), "spectrogram": spectrogram or MelSpectrogramField()})

    def to_spec(self):
        return {"kind": self.kind, "waveform": self.parts["waveform"].to_spec(),
                "spectrogram": self.parts["spectrogram"].to_spec()}

    def part_value(self, value, part):
        return value


def _in_worker() -> bool:
    import multiprocessing

    return multiprocessing.current_process().name != "MainProcess"


_KINDS = {cls.kind: cls for cls in (IntField, FloatField, StringField, JSONField, NDArrayField, WaveformField,
                                    CompressedField, MelSpectrogramField, ChunkedAudioField, CodecTokenField,
                                    MultiTrackField, HybridField)}


def field_from_spec(spec: dict[str, Any]) -> Field:
    """Rebuild a field from its manifest spec."""
    kind = spec.get("kind")
    if kind not in _KINDS:
        raise ParameterError(f"unknown field kind {kind!r}")
    args = {k: v for k, v in spec.items() if k != "kind"}
    if kind == "multitrack":
        args["inner"] = field_from_spec(args["inner"])
    if kind == "hybrid":
        args = {k: field_from_spec(v) for k, v in args.items()}
    if kind == "ndarray":
        args["dtype"] = np.dtype(args["dtype"]).name
    return _KINDS[kind](**args)


def parse_field(text: str) -> tuple[str, Field]:
    """``name=kind:key=value,key=value`` (the CLI's ``--field``) → ``(name, Field)``.

    >>> parse_field("audio=mel:n_mels=80")[1]
    MelSpectrogramField(n_mels=80, n_fft=400, hop=160, sr=16000, store_dtype='float16')
    """
    if "=" not in text:
        raise ParameterError(f"--field must look like name=kind[:key=value,...], got {text!r}")
    name, rest = text.split("=", 1)
    kind, _, options = rest.partition(":")
    aliases = {"waveform": "waveform", "wav": "waveform", "pcm": "waveform", "flac": "compressed",
               "compressed": "compressed", "mel": "mel", "int": "int", "float": "float", "string": "string",
               "str": "string", "json": "json", "ndarray": "ndarray", "chunked": "chunked"}
    if kind not in aliases:
        raise ParameterError(f"unknown field kind {kind!r}; use one of {', '.join(sorted(set(aliases)))}")
    args: dict[str, Any] = {}
    for item in filter(None, options.replace(",", ":").split(":")):
        key, _, value = item.partition("=")
        args[key] = _parse_value(value)
    if kind == "flac":
        args.setdefault("codec", "flac")
    try:
        return name, _KINDS[aliases[kind]](**args)
    except TypeError as e:
        raise ParameterError(f"bad options for field {name!r}: {e}") from None


def _parse_value(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(value.lower(), value)
