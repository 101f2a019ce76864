"""Typed stage results: what one stage found, as a small dataclass that the next stages read by attribute
(``annotations.result("vad", VadResult).segments``) instead of by string keys into nested dicts.

Each has ``to_dict`` (what the result JSON holds: unchanged, so files written before read the same) and
``from_dict`` (a result JSON, or a dict handed in by the server's stream). A stage may still store a plain
dict (plugins do); ``Annotations.result`` converts either way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..audio import Segment
from ..speech.transcribe import Transcript, Word


@dataclass
class VadResult:
    """Speech segments (seconds, the probability as ``score``), seconds of speech, its share of the audio,
    and whether the stage passed on the speech only (later steps then see a shorter clock)."""

    segments: list[Segment]
    speech_seconds: float
    speech_ratio: float | None = None
    silence_dropped: bool = False
    chunks: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"segments": [{"start": s.start, "end": s.end, "probability": s.score}
                                            for s in self.segments], "speech_seconds": self.speech_seconds}
        if self.speech_ratio is not None:
            out["speech_ratio"] = self.speech_ratio
        if self.silence_dropped:
            out["silence_dropped"] = True
        if self.chunks is not None:
            out["chunks"] = self.chunks
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VadResult:
        segments = [Segment(s["start"], s["end"], "speech", s.get("probability")) for s in d.get("segments", [])]
        speech = d.get("speech_seconds", sum(s.duration for s in segments))
        return cls(segments, speech, d.get("speech_ratio"), bool(d.get("silence_dropped")), d.get("chunks"))


@dataclass
class DiarizeResult:
    """Speaker turns (``label`` = the speaker), the speakers in order, and the RTTM file written."""

    turns: list[Segment]
    speakers: list[str] = field(default_factory=list)
    file: str | None = None
    chunks: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"speakers": self.speakers,
                               "turns": [{"start": t.start, "end": t.end, "speaker": t.label} for t in self.turns]}
        if self.file is not None:
            out["file"] = self.file
        if self.chunks is not None:
            out["chunks"] = self.chunks
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiarizeResult:
        turns = [Segment(t["start"], t["end"], t["speaker"]) for t in d.get("turns", [])]
        return cls(turns, list(d.get("speakers", sorted({t.label for t in turns}))), d.get("file"), d.get("chunks"))


@dataclass
class TranscribeResult:
    """The transcript (utterances with words, language, duration), and the files written for it (None in a
    chunk's result: a long input's files are written once, from the merged transcript)."""

    transcript: Transcript
    files: list[str] | None = None
    chunks: int | None = None

    @property
    def words(self) -> list[Word]:
        return self.transcript.words

    def to_dict(self) -> dict[str, Any]:
        out = self.transcript.to_dict()
        if self.chunks is not None:
            out["chunks"] = self.chunks
        if self.files is not None:
            out["files"] = self.files
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TranscribeResult:
        return cls(Transcript.from_dict(d), d.get("files"), d.get("chunks"))


def as_dict(result: Any) -> Any:
    """A stage result as JSON-ready data (typed results through their ``to_dict``)."""
    return result.to_dict() if hasattr(result, "to_dict") else result
