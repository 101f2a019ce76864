"""Fields that hold no audio: numbers, text, JSON and N-d arrays."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from ...errors import ParameterError
from .base import Encoded, Field


class _NumberField(Field):
    """One number per row in a primitive Arrow column (read back as a NumPy view)."""

    arrow_type: pa.DataType
    cast: type
    batch = "array"

    def columns(self):
        return [pa.field(self.name, self.arrow_type)]

    def encode(self, value):
        return Encoded({self.name: self.cast(value)})

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
    aliases = ("str",)

    def columns(self):
        return [pa.field(self.name, pa.large_string())]

    def encode(self, value):
        return Encoded({self.name: str(value)})

    def decode(self, table, rows):
        return table.batch.column(self.name).take(pa.array(rows)).to_pylist()


class JSONField(Field):
    """Any JSON-serialisable value (metadata, segment lists)."""

    kind = "json"

    def columns(self):
        return [pa.field(self.name, pa.large_string())]

    def encode(self, value):
        return Encoded({self.name: json.dumps(value, separators=(",", ":"))})

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

    @classmethod
    def from_spec(cls, spec):
        return cls(np.dtype(spec["dtype"]).name, spec["ndim"])

    def columns(self):
        return [pa.field(self.name, pa.large_binary()), pa.field(f"{self.name}.shape", pa.list_(pa.int64()))]

    def encode(self, value):
        array = np.ascontiguousarray(value, dtype=self.dtype)
        if array.ndim != self.ndim:
            raise ParameterError(f"field {self.name!r} holds {self.ndim}-d arrays, got shape {array.shape}")
        return Encoded({self.name: array.tobytes(), f"{self.name}.shape": list(array.shape)})

    def decode(self, table, rows):
        shapes = table.batch.column(f"{self.name}.shape").take(pa.array(rows)).to_pylist()
        return [np.frombuffer(table.bytes_of(self.name, int(r)), self.dtype).reshape(shape)
                for r, shape in zip(rows, shapes, strict=True)]
