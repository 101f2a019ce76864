"""The field interface: the columns a field owns, how it encodes one row (an :class:`Encoded` value), how it
decodes rows, and how a batch lays them out. A field type registers itself by subclassing :class:`Field`
with a ``kind``: the reader rebuilds fields from their specs by kind, so a type defined outside the
package packs and loads like the built-in ones, and the reader and the loader never ask a field's class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from ...errors import ParameterError

FIELD_KINDS: dict[str, type[Field]] = {}  # kind -> class, filled by subclassing
FIELD_ALIASES: dict[str, str] = {}  # other names --field accepts -> kind


@dataclass
class Encoded:
    """One row of one field, encoded: its column values, and the seconds of audio it holds (0 for fields
    that hold none), which the writer sums into the manifest."""

    columns: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class Field:
    """Base class. Subclasses set ``kind`` and implement ``columns``, ``encode`` and ``decode``.

    Class attributes:
        kind: the name in specs and manifests (a subclass with its own ``kind`` is registered).
        aliases: other names ``--field`` accepts for it.
        audio: the row value is audio (a path, bytes or an array): without a value of its own name, the
            writer gives it the row's ``path``.
        waveform: it decodes to a waveform at ``self.sr`` Hz (the training loader can read it).
        batch: how ``Dataset.get_batch`` lays rows out: 'padded' (float32 ``[batch, ..., max frames]`` plus
            ``{name}_lengths``), 'array' (one NumPy array) or 'list'.
    """

    kind: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    audio: ClassVar[bool] = False
    waveform: ClassVar[bool] = False
    batch: ClassVar[str] = "list"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if not kind:
            return
        known = FIELD_KINDS.get(kind)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ParameterError(f"field kind {kind!r} is taken by {known.__module__}.{known.__qualname__}")
        FIELD_KINDS[kind] = cls
        FIELD_ALIASES.update({alias: kind for alias in (kind, *cls.aliases)})

    def __init__(self) -> None:
        self.name = ""

    def bind(self, name: str) -> Field:
        self.name = name
        return self

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Field:
        """The field a spec describes (``to_spec``'s output)."""
        return cls(**{k: v for k, v in spec.items() if k != "kind"})

    def columns(self) -> list[pa.Field]:
        raise NotImplementedError

    def encode(self, value: Any) -> Encoded:
        """One row's columns (runs in the writer's worker processes)."""
        raise NotImplementedError

    def decode(self, table: ColumnViews, rows: np.ndarray) -> list[Any]:
        """The values of ``rows`` of one shard (``table`` holds zero-copy views of its columns)."""
        raise NotImplementedError

    def leaves(self) -> dict[str, Field]:
        """The batch keys this field fills and the fields that fill them (composite fields: each part)."""
        return {self.name: self}

    def can_gather(self) -> bool:
        """Whether :meth:`gather` writes rows straight into a batch buffer (the fast path of get_batch)."""
        return False

    def gather_shape(self, rows: int) -> tuple[int, ...]:
        """The batch buffer's shape without its frames axis."""
        return (rows,)

    def frames(self, table: ColumnViews, rows: np.ndarray) -> np.ndarray:
        """Frames of each of ``rows`` (for fields that gather)."""
        raise NotImplementedError

    def gather(self, table: ColumnViews, rows: np.ndarray, out: np.ndarray, slots: np.ndarray) -> None:
        """Write ``rows`` into ``out[slots, ..., :frames]``."""
        raise NotImplementedError

    def window(self, table: ColumnViews, row: int, offset: float, duration: float | None) -> np.ndarray:
        """``duration`` seconds from ``offset`` of one row, for waveform fields: decode the row and slice it
        (fields that can decode less override this)."""
        if not self.waveform:
            raise ParameterError(f"field {self.name!r} ({self.kind}) is not audio")
        y = self.decode(table, np.array([row]))[0]
        start = round(offset * self.sr)  # type: ignore[attr-defined]
        return y[..., start: None if duration is None else start + round(duration * self.sr)]  # type: ignore

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


def field_from_spec(spec: dict[str, Any]) -> Field:
    """Rebuild a field from its manifest spec (any registered kind)."""
    kind = spec.get("kind")
    if kind not in FIELD_KINDS:
        raise ParameterError(f"unknown field kind {kind!r} (define or import its Field subclass first; known: "
                             f"{', '.join(sorted(FIELD_KINDS))})")
    return FIELD_KINDS[kind].from_spec(spec)
