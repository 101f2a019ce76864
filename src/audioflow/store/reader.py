"""Reading packed datasets: memory-mapped shards, zero-copy column views, batched gathers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ParameterError, StoreError
from .fields import ColumnViews, Field, field_from_spec
from .writer import FORMAT, VERSION


def open_dataset(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> Dataset:
    """Open a packed dataset (a local directory or an fsspec URL)."""
    return Dataset(os.fspath(path), storage_options)


class Dataset(Sequence):
    """A packed dataset: ``len(ds)``, ``ds[i] -> dict``, ``ds.get_batch(indices)``, iteration.

    Local shards are memory-mapped (the page cache is the cache); remote shards are read once.
    """

    def __init__(self, path: str, storage_options: dict[str, Any] | None = None) -> None:
        self.path = path.removeprefix("file://").rstrip("/") or "/"  # file:// is a local folder
        self.storage_options = storage_options or {}
        self.manifest = self._read_manifest()
        self.fields: dict[str, Field] = {name: field_from_spec(spec).bind(name)
                                         for name, spec in self.manifest["fields"].items()}
        self._shards: list[ColumnViews | None] = [None] * len(self.manifest["shards"])
        counts = np.array([s["rows"] for s in self.manifest["shards"]], np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])

    # --- opening ----------------------------------------------------------------------------------

    def _is_remote(self) -> bool:
        return "://" in self.path and not self.path.startswith("file://")

    def _read_manifest(self) -> dict[str, Any]:
        where = f"{self.path}/manifest.json"
        try:
            if self._is_remote():
                import fsspec

                with fsspec.open(where, "rb", **self.storage_options) as f:
                    manifest = json.loads(f.read())
            else:
                with open(where) as f:
                    manifest = json.load(f)
        except FileNotFoundError:
            raise StoreError("not a packed dataset, or an incomplete one: no manifest.json", self.path) from None
        except (OSError, ValueError) as e:
            raise StoreError(f"unreadable manifest.json: {e}", self.path) from None
        if manifest.get("format") != FORMAT:
            raise StoreError(f"manifest.json is not an {FORMAT} manifest", self.path)
        if int(manifest.get("version", 0)) > VERSION:
            raise StoreError(f"format version {manifest['version']} is newer than this audioflow reads "
                             f"({VERSION}); upgrade audioflow", self.path)
        return manifest

    def _shard(self, number: int) -> ColumnViews:
        views = self._shards[number]
        if views is None:
            info = self.manifest["shards"][number]
            where = f"{self.path}/{info['file']}"
            try:
                if self._is_remote():
                    import fsspec

                    with fsspec.open(where, "rb", **self.storage_options) as f:
                        source: Any = pa.BufferReader(f.read())
                else:
                    source = pa.memory_map(where, "r")
                reader = pa.ipc.open_file(source)
                if reader.num_record_batches != 1:
                    raise StoreError(f"shard {info['file']} holds {reader.num_record_batches} record batches, "
                                     "expected 1", self.path)
                batch = reader.get_batch(0)
            except FileNotFoundError:
                raise StoreError(f"shard {info['file']} is missing", self.path) from None
            except (OSError, pa.ArrowInvalid, IndexError) as e:
                raise StoreError(f"shard {info['file']} is corrupt: {e}", self.path) from None
            if batch.num_rows != info["rows"]:
                raise StoreError(f"shard {info['file']} holds {batch.num_rows} rows, the manifest says "
                                 f"{info['rows']}", self.path)
            views = self._shards[number] = ColumnViews(batch)
        return views

    # --- access -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} rows")
        indices = np.where(indices < 0, indices + len(self), indices)
        shard = np.searchsorted(self._starts, indices, side="right") - 1
        return shard, indices - self._starts[shard]

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if isinstance(index, slice):
            return self.get_batch(range(*index.indices(len(self))))  # type: ignore[return-value]
        shard, row = self._locate(np.array([int(index)]))
        views = self._shard(int(shard[0]))
        return {name: field.decode(views, row)[0] for name, field in self.fields.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, Any]:
        """Rows ``indices`` as a batch: audio and mel fields padded into one float32 array with a
        ``{name}_lengths`` array (frames), numbers as arrays, text and JSON as lists.

        Mono waveform and mel fields are gathered straight from the memory-mapped shard into one
        preallocated buffer (one conversion pass per row); the rest go through ``Field.decode``."""
        idx = np.asarray(indices, np.int64)
        shards, rows = self._locate(idx)
        groups = [(int(shard), np.nonzero(shards == shard)[0]) for shard in np.unique(shards)]
        views = {shard: self._shard(shard) for shard, _ in groups}
        out: dict[str, Any] = {}
        for name, field in self._leaves().items():
            if field.can_gather():
                lengths = np.zeros(len(idx), np.int64)
                for shard, slots in groups:
                    lengths[slots] = field.frames(views[shard], rows[slots])
                buffer = np.zeros((*field.gather_shape(len(idx)), int(lengths.max()) if len(idx) else 0), np.float32)
                for shard, slots in groups:
                    field.gather(views[shard], rows[slots], buffer, slots)
                out[name], out[f"{name}_lengths"] = buffer, lengths
                continue
            values: list[Any] = [None] * len(idx)
            for shard, slots in groups:
                for position, value in zip(slots.tolist(), field.decode(views[shard], rows[slots]), strict=True):
                    values[position] = value
            if field.batch == "padded":
                out[name], out[f"{name}_lengths"] = pad_stack(values)
            elif field.batch == "array":
                out[name] = np.asarray(values)
            else:
                out[name] = values
        return out

    def _leaves(self) -> dict[str, Field]:
        """Batch keys and their fields: composite fields (multi-track, hybrid) expose each part."""
        leaves: dict[str, Field] = {}
        for field in self.fields.values():
            leaves.update(field.leaves())
        return leaves

    def read_window(self, index: int, field: str, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
        """``duration`` seconds from ``offset`` (seconds) of row ``index``'s ``field``: a chunked field
        decodes only the chunks the window overlaps; other audio fields decode the row and slice it."""
        shard, row = self._locate(np.array([int(index)]))
        views = self._shard(int(shard[0]))
        try:
            return self.fields[field].window(views, int(row[0]), offset, duration)
        except ParameterError as e:
            raise StoreError(str(e), self.path) from None

    def info(self) -> dict[str, Any]:
        """Rows, shards, bytes, audio hours, fields and skipped sources, from the manifest."""
        m = self.manifest
        return {"path": self.path, "rows": m["rows"], "shards": len(m["shards"]),
                "bytes": sum(s["bytes"] for s in m["shards"]), "audio_hours": m["audio_seconds"] / 3600,
                "fields": m["fields"], "skipped": len(m["skipped"])}

    def __repr__(self) -> str:
        return f"Dataset({self.path!r}, rows={len(self)}, fields={list(self.fields)})"


def pad_stack(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``[..., time]`` arrays into one zero-padded float32 ``[batch, ..., max_time]`` buffer."""
    lengths = np.array([a.shape[-1] for a in arrays], np.int64)
    out = np.zeros((len(arrays), *arrays[0].shape[:-1], int(lengths.max()) if len(arrays) else 0), np.float32)
    for i, a in enumerate(arrays):
        out[i, ..., : a.shape[-1]] = a
    return out, lengths
