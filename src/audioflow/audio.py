"""Shared value types: :class:`Audio` (samples with their rate) and :class:`Segment` (a span of time).

Plain dataclasses, as Lhotse's records are: small, serialisable (``to_dict``/``from_dict`` with a
``schema_version``), and every operation returns a new object.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import ParameterError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Audio:
    """Samples and their sample rate.

    Args:
        samples: ``np.ndarray [shape=(frames,)]`` for mono or ``[shape=(channels, frames)]``,
            floating point in [-1, 1].
        sample_rate: samples per second, in Hz.
        source: where the samples came from (path or URL), for messages and results.
    """

    samples: np.ndarray
    sample_rate: int
    source: str | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim not in (1, 2):
            raise ParameterError(f"Audio samples must be [frames] or [channels, frames], got shape "
                                 f"{self.samples.shape}", self.source)
        if self.sample_rate <= 0:
            raise ParameterError(f"sample_rate must be positive, got {self.sample_rate}", self.source)

    def __iter__(self) -> Iterator[Any]:
        """``y, sr = audio``: unpacks as ``load`` returns, so what makes audio (``synthesize``) and what takes
        ``(y, sr)`` compose."""
        yield self.samples
        yield self.sample_rate

    @property
    def channels(self) -> int:
        """Number of channels (1 for a ``[frames]`` array)."""
        return 1 if self.samples.ndim == 1 else self.samples.shape[0]

    @property
    def frames(self) -> int:
        """Number of samples per channel."""
        return self.samples.shape[-1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate

    def to_mono(self) -> Audio:
        """Average the channels into a ``[frames]`` array."""
        if self.samples.ndim == 1:
            return self
        return replace(self, samples=self.samples.mean(axis=0, dtype=self.samples.dtype))

    def slice(self, start: float, end: float | None = None) -> Audio:
        """The part between ``start`` and ``end`` seconds (``end=None``: to the end)."""
        a = max(0, round(start * self.sample_rate))
        b = self.frames if end is None else min(self.frames, round(end * self.sample_rate))
        return replace(self, samples=self.samples[..., a:max(a, b)])

    def to_dict(self) -> dict[str, Any]:
        """Metadata only (no samples): what a result file records about the audio."""
        return {"schema_version": SCHEMA_VERSION, "source": self.source, "sample_rate": self.sample_rate,
                "channels": self.channels, "frames": self.frames, "duration": self.duration}


@dataclass(frozen=True)
class Segment:
    """A span of a recording, in seconds, with an optional label and score.

    Args:
        start: start time in seconds.
        end: end time in seconds (``end >= start``).
        label: what the span is ("speech", a speaker id, a word).
        score: confidence or probability in [0, 1], if the producer has one.
        extra: producer-specific fields, JSON-serialisable.
    """

    start: float
    end: float
    label: str | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.end >= self.start >= 0:
            raise ParameterError(f"Segment needs 0 <= start <= end, got start={self.start}, end={self.end}")

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"start": self.start, "end": self.end}
        if self.label is not None:
            d["label"] = self.label
        if self.score is not None:
            d["score"] = self.score
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls(float(d["start"]), float(d["end"]), d.get("label"), d.get("score"), dict(d.get("extra", {})))
