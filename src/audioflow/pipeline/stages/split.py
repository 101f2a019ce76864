"""The ``split`` stage: fixed windows, cuts at silence, or at word boundaries after ``transcribe``."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np

from ...audio import Audio, Segment
from ...errors import ParameterError
from ...speech.transcribe import Word
from ..results import TranscribeResult
from ..stage import Option, Stage
from .outputs import save_audio, shifted


def frame_db(y: np.ndarray, sr: int, frame_s: float) -> np.ndarray:
    """RMS level of consecutive ``frame_s`` frames of the mono mix, in dBFS."""
    mono = y.mean(axis=0) if y.ndim == 2 else y
    hop = max(1, round(frame_s * sr))
    n = max(1, len(mono) // hop)
    padded = np.zeros(n * hop, np.float64)
    padded[: min(len(mono), n * hop)] = mono[: n * hop]
    return 20 * np.log10(np.maximum(np.sqrt(np.mean(padded.reshape(n, hop) ** 2, axis=1)), 1e-10))


def _words(annotations: Any) -> list[Word]:
    """The words a transcribe step before found (none when there was none)."""
    found = annotations.result("transcribe", TranscribeResult) if annotations is not None else None
    return found.words if found is not None else []


def word_cuts(words: list[Word], duration: float, max_len: float) -> list[tuple[float, float]]:
    """Spans cut in the middle of the pause between two words, so that the words of each span last at most
    ``max_len`` s (a longer single word gets its own span); the spans cover the recording, 0 to
    ``duration``, so no audio is lost."""
    if not words:
        return [(0.0, duration)] if duration > 0 else []
    spans, start, first_word = [], 0.0, words[0].start
    for previous, word in itertools.pairwise(words):
        cut = (previous.end + word.start) / 2
        if word.end - first_word > max_len and cut > start:
            spans.append((start, cut))
            start, first_word = cut, word.start
    spans.append((start, duration))
    return [(round(a, 4), round(b, 4)) for a, b in spans]


def silence_cuts(y: np.ndarray, sr: int, threshold_db: float, min_silence: float, min_len: float, max_len: float,
                 frame_s: float = 0.02) -> list[tuple[float, float]]:
    """Spans covering the recording, cut in the middle of silences (frames ``threshold_db`` below the
    loudest frame for at least ``min_silence`` s); pieces shorter than ``min_len`` s join a neighbour,
    longer than ``max_len`` s are cut at their quietest frame."""
    levels = frame_db(y, sr, frame_s)
    duration = y.shape[-1] / sr
    quiet = levels < levels.max() - abs(threshold_db)
    cuts, run_start = [], None
    for i, q in enumerate([*quiet.tolist(), False]):
        if q and run_start is None:
            run_start = i
        elif not q and run_start is not None:
            if (i - run_start) * frame_s >= min_silence and run_start > 0 and i < len(quiet):
                cuts.append((run_start + i) / 2 * frame_s)
            run_start = None
    bounds = [0.0, *cuts, duration]
    spans = list(itertools.pairwise(bounds))
    merged: list[tuple[float, float]] = []
    for a, b in spans:  # too short: join the previous piece when that keeps it under max
        if merged and (b - a < min_len or merged[-1][1] - merged[-1][0] < min_len) and b - merged[-1][0] <= max_len:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    out: list[tuple[float, float]] = []
    for a, b in merged:
        out.extend(_cut_long(levels, a, b, max_len, frame_s))
    return out


def _cut_long(levels: np.ndarray, a: float, b: float, max_len: float, frame_s: float) -> list[tuple[float, float]]:
    if b - a <= max_len:
        return [(a, b)]
    # the quietest frame in the middle part (keeping both sides at least a quarter of max_len)
    lo, hi = round((a + max_len / 4) / frame_s), round((min(b - max_len / 4, a + max_len)) / frame_s)
    hi = max(lo + 1, min(hi, len(levels)))
    cut = (lo + int(np.argmin(levels[lo:hi]))) * frame_s if lo < len(levels) else a + max_len
    cut = min(max(cut, a + frame_s), a + max_len)
    return [(a, cut), *_cut_long(levels, cut, b, max_len, frame_s)]


class Split(Stage):
    """Cut the recording into segments: fixed windows (with overlap), at silences, or at word boundaries
    (from the word times of a transcribe step before it)."""

    name = "split"
    options: ClassVar[dict[str, Option]] = {
        "method": Option("str", "silence", "'fixed' windows, cuts at 'silence', or at 'words' (after transcribe)",
                         ("fixed", "silence", "words")),
        "window": Option("float", 30.0, "fixed: window length, seconds", gt=0),
        "overlap": Option("float", 0.0, "fixed: overlap between windows, seconds", ge=0),
        "min": Option("float", 1.0, "silence: shortest segment, seconds", ge=0),
        "max": Option("float", 30.0, "silence, words: longest segment, seconds", gt=0),
        "threshold_db": Option("float", 40.0, "silence: frames this many dB under the loudest are silent", gt=0,
                               le=200),
        "min_silence": Option("float", 0.3, "silence: shortest pause to cut at, seconds", ge=0),
        "write": Option("bool", True, "write each segment as an audio file", remote=False),
        "format": Option("str", "flac", "segment file format", ("flac", "wav", "ogg", "opus", "mp3"), remote=False),
    }

    def validate(self) -> None:
        c = self.config
        if c["window"] <= 0 or not 0 <= c["overlap"] < c["window"]:
            raise ParameterError("split: need window > 0 and 0 <= overlap < window (seconds)")
        if not 0 < c["min"] <= c["max"]:
            raise ParameterError("split: need 0 < min <= max (seconds)")

    def check_order(self, before: list[str]) -> None:
        if self.config["method"] == "words" and "transcribe" not in before:
            raise ParameterError("split:method=words cuts at word times: put a transcribe step before it")

    def spans(self, audio: Audio, annotations: Any = None) -> list[tuple[float, float]]:
        c, duration = self.config, audio.duration
        if c["method"] == "words":
            return word_cuts(_words(annotations), duration, c["max"])
        if c["method"] == "fixed":
            step = c["window"] - c["overlap"]
            starts = np.arange(0.0, max(duration - c["overlap"], 1e-9), step)
            return [(float(s), float(min(s + c["window"], duration))) for s in starts]
        return silence_cuts(audio.samples, audio.sample_rate, c["threshold_db"], c["min_silence"], c["min"],
                            c["max"])

    def __call__(self, audio, annotations):
        segments = []
        words = _words(annotations)
        for number, (start, end) in enumerate(self.spans(audio, annotations)):
            extra: dict[str, Any] = {}
            if self.config["method"] == "words":
                extra["text"] = "".join(w.word for w in words if start <= (w.start + w.end) / 2 < end).strip()
            if self.config["write"]:
                name = f"{annotations.id}_{number:04d}" if annotations.chunk is None else \
                    f"{annotations.id}_c{annotations.chunk:03d}_{number:04d}"
                path = save_audio(audio.slice(start, end), annotations.output_path(f"segments/{annotations.id}", name),
                             self.config["format"])
                if path:
                    extra["file"] = path
                    annotations.add_file(self.name, path)
            segments.append(Segment(round(start, 4), round(end, 4), extra=extra))
        annotations.segments = segments
        annotations.results[self.name] = {"method": self.config["method"], "count": len(segments),
                                          "segments": [s.to_dict() for s in segments]}
        return audio, annotations

    def merge(self, parts, context):
        segments = [shifted(seg, offset) for offset, result in parts for seg in result["segments"]]
        return {"method": self.config["method"], "count": len(segments), "segments": segments}
