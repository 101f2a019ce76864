"""Lhotse's manifests and batches without Lhotse: a CutSet manifest (``cuts.jsonl.gz``, as icefall, k2 and
NeMo recipes write them) read as a loader source, supervisions and all, and batches laid out as Lhotse's
``K2SpeechRecognitionDataset`` yields them (``inputs [B, T, F]``, ``supervisions`` with ``sequence_idx``,
``start_frame``, ``num_frames``, ``text``), so a recipe's training loop takes our batches unchanged.

A cut is a window (``start``, ``duration`` in seconds) of one channel of a recording (its ``sources``:
files or URLs, one per channel group). Recordings Lhotse marked as speed-perturbed, resampled or
volume-changed (their ``transforms``) are read the same way Lhotse reads them; cut types other than
``MonoCut`` (mixes, padding) and in-memory or command sources are refused with the cut named."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError, SourceError
from ..io import load, resample
from ..io.listing import is_url
from .sources import AudioSource, file_stamp

CUT_MANIFEST_SUFFIXES = (".jsonl.gz", ".jsonl", ".json.gz")
_SUPERVISION_FIELDS = ("text", "speaker", "language", "gender")


def _open_text(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def is_cut_manifest(path: str) -> bool:
    """Whether ``path`` is a Lhotse CutSet manifest: JSON lines whose first record has a recording and a
    start and duration (a plain manifest of paths is not)."""
    if not path.lower().endswith(CUT_MANIFEST_SUFFIXES) or is_url(path) or not os.path.isfile(path):
        return False
    try:
        with _open_text(path) as f:
            first = json.loads(f.readline() or "{}")
    except (OSError, ValueError, EOFError):
        return False
    return isinstance(first, dict) and "recording" in first and "start" in first and "duration" in first


def read_cuts(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The cuts of a CutSet manifest (``.jsonl.gz`` or ``.jsonl``), checked: MonoCuts with a recording."""
    path = os.fspath(path)
    cuts = []
    try:
        with _open_text(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    cut = json.loads(line)
                except ValueError as e:
                    raise ParameterError(f"{path}: line {number} is not JSON ({e})", path) from e
                kind = cut.get("type", "MonoCut")
                if kind != "MonoCut" or "recording" not in cut:
                    raise ParameterError(f"{path}: cut {cut.get('id', number)!r} is a {kind} without a single "
                                         "recording; only MonoCuts are read (lhotse: cuts.to_eager() after "
                                         "cuts.mix()/pad() gives MixedCuts: save the source cuts instead)", path)
                cuts.append(cut)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise SourceError(f"{path}: cannot read the cut manifest ({e})", path) from e
    if not cuts:
        raise ParameterError(f"{path}: the cut manifest has no cuts", path)
    return cuts


class CutSource(AudioSource):
    """Lhotse cuts (dicts as in ``cuts.jsonl.gz``) as loader items: each cut's window of its channel."""

    def __init__(self, cuts: Sequence[dict[str, Any]], where: str = "cuts",
                 storage_options: dict[str, Any] | None = None) -> None:
        self.cuts, self.where, self.storage_options = list(cuts), where, storage_options
        self.base = os.path.dirname(os.path.abspath(where)) if os.path.isfile(where) else os.getcwd()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> CutSource:
        return cls(read_cuts(path), os.fspath(path), storage_options)

    def __len__(self) -> int:
        return len(self.cuts)

    def item_id(self, index: int) -> str:
        return str(self.cuts[index].get("id", index))

    def duration(self, index: int) -> float:
        return float(self.cuts[index]["duration"])

    def _source(self, index: int) -> tuple[str, int | None]:
        """The file or URL holding the cut's channel, and the channel's position in it (None: the only one)."""
        cut = self.cuts[index]
        recording = cut["recording"]
        channel = cut.get("channel", 0)
        channel = channel[0] if isinstance(channel, list) and len(channel) == 1 else channel
        if isinstance(channel, list):
            raise ParameterError(f"{self.where}: cut {self.item_id(index)!r} spans channels {channel}; "
                                 "only single-channel cuts are read", self.where)
        for source in recording.get("sources", []):
            channels = source.get("channels", [0])
            if channel in channels:
                if source.get("type") not in ("file", "url"):
                    raise ParameterError(f"{self.where}: cut {self.item_id(index)!r} reads its audio from a "
                                         f"{source.get('type')!r} source; only files and URLs are read", self.where)
                location = source["source"]
                if source["type"] == "file" and not os.path.isabs(location) and not os.path.exists(location):
                    location = os.path.join(self.base, location)  # relative to the manifest's folder
                return location, (None if len(channels) == 1 else channels.index(channel))
        raise ParameterError(f"{self.where}: cut {self.item_id(index)!r}: recording {recording.get('id')!r} has "
                             f"no source for channel {channel}", self.where)

    def _effects(self, index: int) -> tuple[float, float]:
        """The recording's speed factor and volume factor (Lhotse's Speed/Volume/Resample transforms)."""
        speed = volume = 1.0
        for transform in self.cuts[index]["recording"].get("transforms") or []:
            name, kwargs = transform.get("name"), transform.get("kwargs", {})
            if name == "Speed":
                speed *= float(kwargs["factor"])
            elif name == "Volume":
                volume *= float(kwargs["factor"])
            elif name != "Resample":  # every item is resampled to the loader's rate anyway
                raise ParameterError(f"{self.where}: cut {self.item_id(index)!r}: the recording's {name!r} "
                                     "transform is not supported (Speed, Volume and Resample are)", self.where)
        return speed, volume

    def cache_key(self, index: int) -> str:
        location, position = self._source(index)
        cut = self.cuts[index]
        return f"{location}|{file_stamp(location)}|{position}|{cut['start']}|{cut['duration']}|{self._effects(index)}"

    def read(self, index, sr, mono, offset=0.0, duration=None):
        cut = self.cuts[index]
        location, position = self._source(index)
        speed, volume = self._effects(index)
        remaining = max(0.0, float(cut["duration"]) - offset)
        duration = remaining if duration is None else min(duration, remaining)
        y, _ = load(location, sr=sr, mono=position is None, offset=(float(cut["start"]) + offset) * speed,
                    duration=duration * speed, storage_options=self.storage_options)
        if speed != 1.0:  # played faster: the original span, resampled as if recorded at speed x the rate
            y = resample(y, round(sr * speed), sr)
        if position is not None:
            y = y[position] if y.ndim == 2 else y
        if volume != 1.0:
            y = y * np.float32(volume)
        return y if mono or y.ndim == 2 else y[None]

    def supervisions(self, index: int) -> list[dict[str, Any]]:
        """The cut's supervisions, times (seconds) relative to the cut's start, in order of start."""
        return sorted(self.cuts[index].get("supervisions") or [], key=lambda s: float(s.get("start", 0.0)))

    def column(self, name):
        if name in _SUPERVISION_FIELDS:
            values = []
            for index in range(len(self)):
                found = [s[name] for s in self.supervisions(index) if s.get(name) is not None]
                if not found:
                    return None
                values.append(" ".join(found) if name == "text" else found[0])
            return values
        custom = [(cut.get("custom") or {}).get(name) for cut in self.cuts]
        return None if any(v is None for v in custom) else custom


def num_frames(seconds: float, frame_shift: float, sample_rate: int) -> int:
    """Frames in ``seconds`` the way Lhotse counts them (``lhotse.utils.compute_num_frames``): rounded
    samples, plus half a hop, over the hop."""
    samples = round(seconds * sample_rate)
    hop = round(frame_shift * sample_rate)
    return int((samples + hop // 2) // hop)


def lhotse_batch(inputs: torch.Tensor, lengths: torch.Tensor, source: AudioSource, indices: Sequence[int],
                 offsets: Sequence[float], scales: Sequence[float], sample_rate: int,
                 frame_shift: float | None) -> dict[str, Any]:
    """A batch as ``K2SpeechRecognitionDataset`` gives it: ``{"inputs": [B, T, F] (or [B, T] waveforms),
    "supervisions": {"sequence_idx", "start_frame"/"start_sample", "num_frames"/"num_samples", "text", ...}}``.

    ``offsets``: seconds cropped off each item's start; ``scales``: each item's time scale after
    augmentation (1 / speed factor); ``frame_shift``: seconds per frame, or None for waveforms.
    Supervisions are moved and scaled with their item and clipped to what it holds."""
    supervised = isinstance(source, CutSource)
    rows: list[tuple[int, float, float, dict[str, Any]]] = []
    for position, (index, offset, scale) in enumerate(zip(indices, offsets, scales, strict=True)):
        found = source.supervisions(index) if supervised else []
        if not found:  # a cut without supervisions (or a plain file) is supervised whole
            found = [{"start": offset, "duration": source.duration(index) - offset, "text": ""}]
        for sup in found:
            start = (float(sup.get("start", 0.0)) - offset) * scale
            end = start + float(sup.get("duration", 0.0)) * scale
            rows.append((position, start, end, sup))
    limit = lengths.tolist()
    starts, counts, kept = [], [], []
    for position, start, end, sup in rows:
        if frame_shift is None:
            first, count = round(start * sample_rate), round((end - start) * sample_rate)
        else:
            first, count = num_frames(start, frame_shift, sample_rate), num_frames(end - start, frame_shift,
                                                                                   sample_rate)
        first = max(0, first)
        count = min(count, limit[position] - first)
        if count <= 0:  # cropped away
            continue
        starts.append(first)
        counts.append(count)
        kept.append((position, sup))
    unit = "sample" if frame_shift is None else "frame"
    supervisions: dict[str, Any] = {
        "sequence_idx": torch.tensor([p for p, _ in kept], dtype=torch.int32),
        f"start_{unit}": torch.tensor(starts, dtype=torch.int32),
        f"num_{unit}s": torch.tensor(counts, dtype=torch.int32),
        "text": [str(sup.get("text") or "") for _, sup in kept],
    }
    for name in _SUPERVISION_FIELDS[1:]:
        if kept and all(sup.get(name) is not None for _, sup in kept):
            supervisions[name] = [sup[name] for _, sup in kept]
    return {"inputs": inputs, "supervisions": supervisions}


__all__ = ["CutSource", "is_cut_manifest", "lhotse_batch", "num_frames", "read_cuts"]
