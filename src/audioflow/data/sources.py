"""Where training audio comes from: files (paths, URLs, a folder, a manifest), a packed dataset, or any
map-style dataset. Each source gives the loader the same small interface: how many items, an id and a
cache key per item, its duration when known, and its samples at the wanted rate."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidAudioError, ParameterError
from ..io import info, load, resample
from ..io.listing import AUDIO_EXTENSIONS, is_url, list_rows


class AudioSource:
    """Items of audio, read as float32 ``[time]`` (mono) or ``[channels, time]`` at a given rate."""

    def __len__(self) -> int:
        raise NotImplementedError

    def item_id(self, index: int) -> str:
        return str(index)

    def cache_key(self, index: int) -> str:
        """Identifies the item's decoded audio across runs (a changed file gets a new key)."""
        return f"{type(self).__name__}:{index}"

    def duration(self, index: int) -> float:
        """Seconds of audio in the item."""
        raise NotImplementedError

    def read(self, index: int, sr: int, mono: bool, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
        """``duration`` seconds from ``offset`` seconds into the item, at ``sr`` Hz."""
        raise NotImplementedError

    def column(self, name: str) -> list[Any] | None:
        """Values of a per-item column (labels by name), or None if the source has no such column."""
        return None


def file_stamp(path: str) -> str:
    """Size and modification time of a local file (a changed file gets a new cache key); '' for URLs."""
    if is_url(path):
        return ""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


class FileSource(AudioSource):
    """Audio files: rows with ``path`` and optional ``offset``/``duration`` (seconds) and ``id``."""

    def __init__(self, rows: Sequence[dict[str, Any]], storage_options: dict[str, Any] | None = None) -> None:
        self.rows = list(rows)
        self.storage_options = storage_options
        self._durations: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def item_id(self, index: int) -> str:
        row = self.rows[index]
        if "id" in row:
            return str(row["id"])
        base = os.path.splitext(os.path.basename(row["path"]))[0]
        return base if "offset" not in row else f"{base}@{row['offset']:g}"

    def cache_key(self, index: int) -> str:
        row = self.rows[index]
        return f"{row['path']}|{file_stamp(row['path'])}|{row.get('offset', 0.0)}|{row.get('duration')}"

    def duration(self, index: int) -> float:
        if index not in self._durations:
            row = self.rows[index]
            if "duration" in row:
                self._durations[index] = float(row["duration"])
            else:
                total = info(row["path"], storage_options=self.storage_options).duration
                self._durations[index] = max(0.0, total - float(row.get("offset", 0.0)))
        return self._durations[index]

    def read(self, index, sr, mono, offset=0.0, duration=None):
        row = self.rows[index]
        start = float(row.get("offset", 0.0)) + offset
        limit = row.get("duration")
        if limit is not None:
            remaining = max(0.0, float(limit) - offset)
            duration = remaining if duration is None else min(duration, remaining)
        y, _ = load(row["path"], sr=sr, mono=mono, offset=start, duration=duration,
                    storage_options=self.storage_options)
        return y

    def column(self, name):
        if self.rows and all(name in row for row in self.rows):
            return [row[name] for row in self.rows]
        return None


class StoreSource(AudioSource):
    """An audio field of a packed dataset (:mod:`audioflow.store`): a waveform, or stored features (a mel
    field: its log-mel frames are the items, ``[n_mels, frames]`` at the field's ``frame_rate``, and
    ``stored_features`` is true).
    """

    def __init__(self, dataset: Any, field: str | None = None) -> None:
        readable = [name for name, f in dataset.fields.items() if f.waveform or _frame_rate(f)]
        if field is None:
            if not readable:
                kinds = ", ".join(f"{name} ({f.kind})" for name, f in dataset.fields.items())
                raise ParameterError(f"has no field the loader can read: a waveform (waveform, compressed, chunked) "
                                     f"or stored features (mel); its fields: {kinds}", dataset.path)
            waveforms = [name for name in readable if dataset.fields[name].waveform]
            field = (waveforms or readable)[0]  # a waveform first: the loader can augment and featurize it
        elif field not in readable:
            raise ParameterError(f"{field!r} is not a field the loader can read (readable: "
                                 f"{', '.join(readable) or 'none'})", dataset.path)
        self.dataset, self.field = dataset, field
        chosen = dataset.fields[field]
        self.stored_features = not chosen.waveform
        # the rate of an item's last axis: samples per second, or frames per second for stored features
        self.native_sr = _frame_rate(chosen) if self.stored_features else int(chosen.sr)
        self._frames: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def cache_key(self, index):
        return f"{self.dataset.path}|{self.dataset.manifest.get('created', '')}|{self.field}|{index}"

    def duration(self, index):
        if self._frames is None:
            self._frames = self._all_frames()
        return float(self._frames[index]) / self.native_sr

    def _all_frames(self) -> np.ndarray:
        field = self.dataset.fields[self.field]
        if not hasattr(field, "frames"):  # chunked fields: decode lengths lazily, one row at a time
            return np.array([self.dataset.read_window(i, self.field).shape[-1] for i in range(len(self))])
        return np.concatenate(self._per_shard(field.frames))

    def _per_shard(self, read) -> list[Any]:
        """``read(views, rows)`` over every shard's rows, in order: one field's column, not whole rows."""
        starts = self.dataset._starts
        return [read(self.dataset._shard(shard), np.arange(starts[shard + 1] - starts[shard]))
                for shard in range(len(starts) - 1)]

    def read(self, index, sr, mono, offset=0.0, duration=None):
        y = self.dataset.read_window(index, self.field, offset, duration).astype(np.float32, copy=False)
        if self.stored_features:  # [n_mels, frames] as stored: nothing to mix down or resample
            if sr != self.native_sr:
                raise ParameterError(f"stored features come at {self.native_sr:g} frames/s, not {sr}",
                                     self.dataset.path)
            return y
        if mono and y.ndim == 2:
            y = y.mean(axis=0)
        return y if sr == self.native_sr else resample(y, self.native_sr, sr)

    def column(self, name):
        if name not in self.dataset.fields:
            return None
        return [value for part in self._per_shard(self.dataset.fields[name].decode) for value in part]


def _frame_rate(field: Any) -> float | None:
    """Frames per second of a field that stores features (a mel field), else None."""
    return getattr(field, "frame_rate", None)


def _as_audio(value: Any, where: str) -> tuple[np.ndarray, int]:
    """Samples and rate from what map-style datasets yield: an ``Audio``, ``(samples, sr)``, a dict in
    the Hugging Face shape (``{"array", "sampling_rate"}``, or under ``"audio"``), or a path."""
    from ..audio import Audio

    if isinstance(value, Audio):
        return value.samples, value.sample_rate
    if isinstance(value, dict):
        if "audio" in value:
            return _as_audio(value["audio"], where)
        if "array" in value and "sampling_rate" in value:
            return np.asarray(value["array"]), int(value["sampling_rate"])
        if "path" in value:
            return _as_audio(value["path"], where)
    if isinstance(value, (tuple, list)) and len(value) >= 2 and np.ndim(value[1]) == 0 and not isinstance(
            value[0], (str, os.PathLike)):
        return np.asarray(value[0]), int(value[1])
    if isinstance(value, (str, os.PathLike)):
        y, rate = load(value, sr=None, mono=False)
        return y, rate
    raise ParameterError(f"{where}: cannot read audio from a {type(value).__name__} (give Audio, (samples, sr), "
                         "a dict with array and sampling_rate, or a path)")


class MapSource(AudioSource):
    """Any map-style dataset (``len`` and ``[i]``) whose items are audio, or ``(audio, label)`` pairs."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    @staticmethod
    def _split(item: Any) -> tuple[Any, Any]:
        """``(audio, label)`` pairs apart; ``(samples, sr)`` is audio, not a pair."""
        from ..audio import Audio

        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (Audio, dict, tuple, str, os.PathLike)):
            return item
        return item, None

    def _audio(self, index: int) -> tuple[np.ndarray, int]:
        item, _ = self._split(self.dataset[index])
        samples, rate = _as_audio(item, f"{type(self.dataset).__name__}[{index}]")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim not in (1, 2) or samples.size == 0:
            raise InvalidAudioError(f"item {index} has audio of shape {samples.shape}", f"item {index}")
        return samples, rate

    def duration(self, index):
        samples, rate = self._audio(index)
        return samples.shape[-1] / rate

    def read(self, index, sr, mono, offset=0.0, duration=None):
        y, rate = self._audio(index)
        if mono and y.ndim == 2:
            y = y.mean(axis=0)
        start = round(offset * rate)
        y = y[..., start: None if duration is None else start + round(duration * rate)]
        return y if rate == sr else resample(y, rate, sr)

    def column(self, name):
        first = self.dataset[0] if len(self.dataset) else None
        if isinstance(first, dict) and name in first:
            return [self.dataset[i][name] for i in range(len(self))]
        if name == "label" and self._split(first)[1] is not None:
            return [self._split(self.dataset[i])[1] for i in range(len(self))]
        return None


def _is_store_dir(path: str) -> bool:
    manifest = os.path.join(path, "manifest.json")
    if not os.path.isfile(manifest):
        return False
    try:
        import json

        with open(manifest) as f:
            return json.load(f).get("format") == "audioflow-store"
    except (OSError, ValueError):
        return False


def open_audio_source(data: Any, extensions: tuple[str, ...] = AUDIO_EXTENSIONS, audio_field: str | None = None,
                      storage_options: dict[str, Any] | None = None) -> AudioSource:
    """An :class:`AudioSource` for a list of paths/URLs, a folder (recursive, by ``extensions``), a CSV/JSONL
    manifest (``path``, ``label``, ``offset``, ``duration``, ``id`` columns), a Lhotse CutSet (its
    ``cuts.jsonl.gz``, or the object), a packed dataset (its folder
    or an opened ``store.Dataset``; ``audio_field`` picks the field), or a map-style dataset."""
    if isinstance(data, AudioSource):
        return data
    from ..store.reader import Dataset, open_dataset
    from .cuts import CutSource, is_cut_manifest

    if type(data).__module__.startswith("lhotse") and hasattr(data, "to_dicts"):  # a lhotse CutSet in memory
        return CutSource(list(data.to_dicts()), type(data).__name__, storage_options)
    if isinstance(data, (str, os.PathLike)) and is_cut_manifest(os.fspath(data)):
        return CutSource.from_file(data, storage_options)

    if isinstance(data, Dataset):
        return StoreSource(data, audio_field)
    if isinstance(data, (str, os.PathLike)) and not is_url(os.fspath(data)) and _is_store_dir(os.fspath(data)):
        return StoreSource(open_dataset(data), audio_field)
    rows, _ = list_rows(data, extensions, storage_options, folder_labels=True)
    if rows is not data or isinstance(data, (str, os.PathLike)):  # files were listed
        if not rows:
            raise ParameterError(f"no audio found in {data!r} (extensions: {', '.join(extensions)})")
        return FileSource(rows, storage_options)
    return MapSource(rows)


def resolve_labels(labels: Any, source: AudioSource) -> tuple[np.ndarray | None, list[Any] | None]:
    """Label ids per item and, for string labels, the sorted class names (id = position).

    ``labels``: None (the source's ``label`` column if it has one), a column name, or a sequence of
    ints or strings, one per item."""
    if labels is None:
        labels = source.column("label")
        if labels is None:
            return None, None
    elif isinstance(labels, str):
        column = source.column(labels)
        if column is None:
            hint = ""
            if labels == "label" and isinstance(source, FileSource):
                flat = [row["path"] for row in source.rows if "label" not in row]
                if flat:
                    hint = (f" (a folder's files take their sub-folder's name as 'label', clips/dog/bark.wav -> "
                            f"'dog'; {len(flat)} of {len(source)} files lie outside any sub-folder, e.g. {flat[0]})")
            raise ParameterError(f"the source has no column {labels!r} to take labels from{hint}")
        labels = column
    values = list(labels)
    if len(values) != len(source):
        raise ParameterError(f"{len(values)} labels for {len(source)} items")
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, np.int64), None
    if all(isinstance(v, str) for v in values):
        as_ints = [v.strip() for v in values]
        if all(v.lstrip("-").isdigit() for v in as_ints):  # CSV columns arrive as text
            return np.asarray([int(v) for v in as_ints], np.int64), None
        classes = sorted(set(values))
        lookup = {c: i for i, c in enumerate(classes)}
        return np.asarray([lookup[v] for v in values], np.int64), classes
    if all(isinstance(v, (float, np.floating)) for v in values):
        return np.asarray(values, np.float32), None
    raise ParameterError("labels must be all ints, all strings or all floats")


__all__ = ["AudioSource", "FileSource", "MapSource", "StoreSource", "open_audio_source",
           "resolve_labels"]
