"""Making one batch, wherever it is made (a worker process, a thread, or the main process for the probe):
read through the cache, crop, pad into one buffer, and, when the transform runs there, augment and
extract features. The result is a :class:`BatchResult`; the consumer gets a :class:`Batch`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._deprecation import renamed
from ..errors import AudioflowError, InvalidAudioError, ParameterError
from .cache import DecodedCache
from .sources import AudioSource
from .transforms import BatchTransform


class Batch:
    """One batch. Unpacks as ``features, labels = batch``; also carries:

    Attributes:
        features: ``[batch, n_features, frames]`` (or ``[batch, time]`` waveforms without features).
        labels: ``[batch]`` label ids (int64; float32 for numeric labels), or None.
        lengths: valid frames per item (samples without features), ``[batch]``.
        audio_lengths: valid samples per item after augmentation, ``[batch]``.
        ids: item ids (file stems, or the manifest's ``id`` column).
        indices: item positions in the source, ``[batch]``.
    """

    __slots__ = ("audio_lengths", "features", "ids", "indices", "labels", "lengths")

    def __init__(self, features: torch.Tensor, labels: torch.Tensor | None, lengths: torch.Tensor,
                 audio_lengths: torch.Tensor, ids: list[str], indices: torch.Tensor) -> None:
        self.features, self.labels, self.lengths = features, labels, lengths
        self.audio_lengths, self.ids, self.indices = audio_lengths, ids, indices

    def __iter__(self) -> Iterator[Any]:
        yield self.features
        yield self.labels

    def __len__(self) -> int:
        return self.features.shape[0]

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.features), move(self.labels), move(self.lengths), move(self.audio_lengths),
                     self.ids, self.indices)

    def __repr__(self) -> str:
        labels = None if self.labels is None else len(self.labels)
        return f"Batch(features={tuple(self.features.shape)}, labels={labels})"


@dataclass
class BatchResult:
    """What a batch maker returns (its tensors travel between processes in shared memory).

    Attributes:
        x: the batch (features, or waveforms ``[batch, (channels,) frames]``).
        lengths: valid frames (or samples) of each item of ``x``.
        audio_lengths: valid samples of each item before the transform.
        labels: label ids of the items, or None.
        indices: the items' positions in the source (after replacements).
        failures: ``(index, message)`` of the items that failed.
        hits: items the decoded-audio cache had.
        decode_s, transform_s: seconds spent reading and transforming.
        audio_seconds: seconds of audio in the batch.
        seed: the batch's seed (the device transform reseeds from it).
        offsets: seconds cropped off the start of each item.
    """

    x: torch.Tensor
    lengths: torch.Tensor
    audio_lengths: torch.Tensor
    labels: torch.Tensor | None
    indices: torch.Tensor
    failures: list[tuple[int, str]] = field(default_factory=list)
    hits: int = 0
    decode_s: float = 0.0
    transform_s: float = 0.0
    audio_seconds: float = 0.0
    seed: int = 0
    offsets: list[float] = field(default_factory=list)


def _crop_start(length: int, size: int, mode: str, rng: np.random.Generator) -> int:
    if length <= size:
        return 0
    if mode == "random":
        return int(rng.integers(0, length - size + 1))
    return (length - size) // 2 if mode == "center" else 0


class BatchMaker:
    """Makes one batch from item indices (in a worker, a thread, or the main process for the probe):
    read through the cache, crop, pad into one buffer, and, when the transform runs here, augment and
    extract features. Failed items are replaced by others or dropped, and reported."""

    @renamed(sr="sample_rate")
    def __init__(self, source: AudioSource, sample_rate: int, mono: bool, max_duration: float | None, crop: str,
                 cache: DecodedCache | None, labels: np.ndarray | None, on_error: str,
                 transform: BatchTransform | None, frames_last: bool = False) -> None:
        self.source, self.sr, self.mono, self.max_duration, self.crop = source, sample_rate, mono, max_duration, crop
        self.cache, self.labels, self.on_error, self.transform = cache, labels, on_error, transform
        self.frames_last = frames_last  # features as [batch, frames, features] (Lhotse's layout)
        self.max_samples = None if max_duration is None else max(1, round(max_duration * sample_rate))
        self.bad: set[int] = set()  # items that failed in this process: not tried again

    def read(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, bool, int]:
        """Samples of one item, cropped; whether the cache had it; and the samples cropped off its start."""
        hit, start = False, 0
        if self.cache is not None:
            key = f"{self.source.cache_key(index)}|{self.sr}|{int(self.mono)}"
            y = self.cache.get(key)
            hit = y is not None
            if y is None:
                y = self.source.read(index, self.sr, self.mono)
                self.cache.put(key, y)
        elif self.max_samples is not None and self.crop != "none":
            # decode only the window: a random crop of a long file costs the crop, not the file
            total = round(self.source.duration(index) * self.sr)
            start = _crop_start(total, self.max_samples, self.crop, rng)
            y = self.source.read(index, self.sr, self.mono, start / self.sr, self.max_samples / self.sr)
        else:
            y = self.source.read(index, self.sr, self.mono)
        if self.max_samples is not None and y.shape[-1] > self.max_samples and self.crop != "none":
            start = _crop_start(y.shape[-1], self.max_samples, self.crop, rng)
            y = y[..., start:start + self.max_samples]
        if y.shape[-1] == 0:
            raise InvalidAudioError("no samples to train on", self.source.item_id(index))
        return y, hit, start

    def __call__(self, task: tuple[list[int], int]) -> BatchResult:
        indices, seed = task
        rng = np.random.default_rng(seed)
        started = time.perf_counter()
        samples, used, failures, hits, offsets = [], [], [], 0, []
        for index in indices:
            for _attempt in range(8):
                try:
                    if index in self.bad:
                        raise InvalidAudioError("failed before", None)
                    y, hit, start = self.read(index, rng)
                except Exception as e:  # a bad file costs its item, never the batch
                    if self.on_error == "raise":
                        raise
                    if index not in self.bad:
                        message = str(e) if isinstance(e, AudioflowError) else f"{type(e).__name__}: {e}"
                        failures.append((index, message))
                        self.bad.add(index)
                    if self.on_error == "skip":
                        break
                    index = int(rng.integers(len(self.source)))  # replace: another item, drawn from the seed
                    continue
                samples.append(y)
                offsets.append(start / self.sr)
                used.append(index)
                hits += hit
                break
        if not samples:
            first = failures[0][1] if failures else "no items"
            raise InvalidAudioError(f"every item of the batch failed ({len(failures)} failures; first: {first})", None)
        x, lengths = pad_items(samples)
        decoded = time.perf_counter()
        audio_seconds = float(lengths.sum()) / self.sr
        out, out_lengths = x, lengths
        if self.transform is not None and not self.transform.is_identity:
            self.transform.reseed(seed)
            with torch.no_grad():
                out, out_lengths = self.transform(x, lengths)
            if self.frames_last and self.transform.feature is not None:
                out = out.transpose(-1, -2).contiguous()
        labels = None if self.labels is None else torch.from_numpy(self.labels[used])
        return BatchResult(out, out_lengths, lengths, labels, torch.tensor(used, dtype=torch.long), failures, hits,
                           decoded - started, time.perf_counter() - decoded, audio_seconds, seed, offsets)


def pad_items(samples: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[batch, (channels,) max frames]`` float32, zero-padded, and the frames of each item."""
    channels = {y.shape[0] if y.ndim == 2 else None for y in samples}
    if len(channels) > 1:
        raise ParameterError(f"items have different channel counts {sorted(map(str, channels))}; use mono=True")
    lengths = torch.tensor([y.shape[-1] for y in samples], dtype=torch.long)
    shape = (len(samples), *samples[0].shape[:-1], int(lengths.max()))
    x = torch.zeros(shape, dtype=torch.float32)
    buffer = x.numpy()
    for i, y in enumerate(samples):
        buffer[i, ..., : y.shape[-1]] = y
    return x, lengths
