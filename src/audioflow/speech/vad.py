"""Voice activity detection: Silero VAD (its ONNX model, run with onnxruntime; the ``silero-vad`` package
ships it) and WebRTC VAD as the light option. Both stream: feed audio as it arrives, get
``speech_start``/``speech_end`` events; ``segments()`` runs a whole recording through the same code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio import Segment
from ..errors import MissingDependencyError, ParameterError
from .resolve import resolve_model_file

VAD_SR = 16000
FRAME = 512  # samples per Silero step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous step the model sees


def mono_at(y: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """``y`` (``(n,)`` or ``(channels, n)``) mixed to mono float32 and resampled to ``target_sr`` Hz: what
    every speech model here takes (checked first: see :func:`check_input`)."""
    from .checks import check_input

    mono = check_input(y, sr, "speech input")
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    if sr != target_sr:
        from ..io import resample

        mono = resample(mono, sr, target_sr)
    return mono


@dataclass
class VADEvent:
    """``speech_start`` (``time``: where speech began) or ``speech_end`` (the finished ``segment``)."""

    type: str
    time: float
    segment: Segment | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "time": round(self.time, 3)}
        if self.segment is not None:
            d.update(start=self.segment.start, end=self.segment.end, probability=self.segment.score)
        return d


class StreamingVAD:
    """Hysteresis over per-frame speech probabilities, streaming: feed audio as it arrives and get
    ``speech_start``/``speech_end`` events (Silero's ``get_speech_timestamps`` rules). Subclasses set
    ``frame`` (samples at 16 kHz) and give ``_step(frame) -> probability``.

    Args:
        threshold: speech probability that starts speech (0-1).
        neg_threshold: probability under which speech may end (default ``threshold - 0.15``).
        min_speech: shortest speech kept, seconds.
        min_silence: silence needed to end speech, seconds.
        speech_pad: seconds added on both sides of each segment.
    """

    frame = FRAME

    def __init__(self, threshold: float = 0.5, neg_threshold: float | None = None, min_speech: float = 0.25,
                 min_silence: float = 0.1, speech_pad: float = 0.03) -> None:
        if not 0 < threshold < 1:
            raise ParameterError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.neg_threshold = max(0.01, threshold - 0.15) if neg_threshold is None else neg_threshold
        self.min_speech, self.min_silence, self.speech_pad = min_speech, min_silence, speech_pad
        self.reset()

    def reset(self) -> None:
        """Forget the stream: a new recording starts at time 0."""
        self._pending = np.zeros(0, np.float32)
        self._frames = 0  # frames decided so far
        self._speech_start: int | None = None
        self._silence_start: int | None = None
        self._probs: list[float] = []
        self._emitted_end = 0.0
        self._reset_model()

    def _reset_model(self) -> None:
        """Forget the model's own state (recurrent models)."""

    def _step(self, frame: np.ndarray) -> float:
        raise NotImplementedError

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of each frame (Silero 32 ms, WebRTC 30 ms) of 16 kHz ``samples``, continuing
        the stream."""
        data = np.concatenate([self._pending, np.asarray(samples, np.float32)])
        usable = len(data) // self.frame * self.frame
        self._pending = data[usable:]
        return np.array([self._step(data[i:i + self.frame]) for i in range(0, usable, self.frame)], np.float32)

    def accept(self, samples: np.ndarray) -> list[VADEvent]:
        """Feed 16 kHz mono samples; returns the events decided so far."""
        events: list[VADEvent] = []
        for prob in self.probabilities(samples):
            events += self._decide(float(prob))
        return events

    def flush(self) -> list[VADEvent]:
        """End of stream: pad the last partial frame and close an open segment."""
        events: list[VADEvent] = []
        if len(self._pending):
            last = np.zeros(self.frame, np.float32)
            last[: len(self._pending)] = self._pending
            self._pending = np.zeros(0, np.float32)
            events += self._decide(self._step(last))
        if self._speech_start is not None:
            events += self._close(self._frames)
        return events

    def _decide(self, prob: float) -> list[VADEvent]:
        index = self._frames
        self._frames += 1
        self._probs.append(prob)
        events: list[VADEvent] = []
        if self._speech_start is None:
            if prob >= self.threshold:
                self._speech_start, self._silence_start = index, None
                events.append(VADEvent("speech_start", max(0.0, index * self.frame / VAD_SR - self.speech_pad)))
            return events
        if prob >= self.threshold:
            self._silence_start = None
        elif prob < self.neg_threshold:
            if self._silence_start is None:
                self._silence_start = index
            if (index + 1 - self._silence_start) * self.frame / VAD_SR >= self.min_silence:
                events += self._close(self._silence_start)
        return events

    def _close(self, end_frame: int) -> list[VADEvent]:
        start_frame, self._speech_start, self._silence_start = self._speech_start, None, None
        assert start_frame is not None
        if (end_frame - start_frame) * self.frame / VAD_SR < self.min_speech:
            return [VADEvent("speech_end", end_frame * self.frame / VAD_SR, None)]  # too short: retracted
        start = max(self._emitted_end, start_frame * self.frame / VAD_SR - self.speech_pad)
        end = end_frame * self.frame / VAD_SR + self.speech_pad
        self._emitted_end = end
        probability = float(np.mean(self._probs[start_frame:end_frame])) if end_frame > start_frame else 0.0
        segment = Segment(round(start, 3), round(end, 3), "speech", round(probability, 4))
        return [VADEvent("speech_end", end, segment)]

    def segments(self, y: np.ndarray, sr: int) -> list[Segment]:
        """Speech segments of a whole recording (any rate; mixed to mono and resampled to 16 kHz)."""
        mono = mono_at(y, sr, VAD_SR)
        self.reset()
        events = self.accept(mono) + self.flush()
        duration = len(mono) / VAD_SR
        return [Segment(e.segment.start, min(e.segment.end, round(duration, 3)), e.segment.label, e.segment.score)
                for e in events if e.type == "speech_end" and e.segment is not None]


class SileroVAD(StreamingVAD):
    """Silero VAD (its ONNX model on onnxruntime; 32 ms frames, recurrent state carried across calls).

    Args:
        model: path of ``silero_vad.onnx`` (default: ``$AUDIOFLOW_SILERO_VAD``, then the one the
            ``silero-vad`` package ships).
        threshold, neg_threshold, min_speech, min_silence, speech_pad: as :class:`StreamingVAD`
            (probabilities 0-1, seconds).
    """

    def __init__(self, model: str | None = None, threshold: float = 0.5, neg_threshold: float | None = None,
                 min_speech: float = 0.25, min_silence: float = 0.1, speech_pad: float = 0.03) -> None:
        try:
            import onnxruntime
        except ImportError as e:
            raise MissingDependencyError("Silero VAD needs onnxruntime: pip install 'audioflow[speech]'") from e
        path = resolve_model_file(model, "AUDIOFLOW_SILERO_VAD", "silero_vad", "data/silero_vad.onnx",
                                  "pip install 'audioflow[models]' (silero-vad)")
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                                    providers=["CPUExecutionProvider"])
        super().__init__(threshold, neg_threshold, min_speech, min_silence, speech_pad)

    def _reset_model(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def _step(self, frame: np.ndarray) -> float:
        x = np.concatenate([self._context, frame])[None]
        prob, self._state = self.session.run(None, {"input": x, "state": self._state,
                                                    "sr": np.array(VAD_SR, np.int64)})
        self._context = frame[-CONTEXT:]
        return float(prob[0, 0])


class WebRTCVAD(StreamingVAD):
    """WebRTC's VAD (the GMM of the WebRTC project, via ``webrtcvad-wheels``): the light option, no model
    file and ~18x cheaper than Silero, but much weaker in noise. Its per-frame decisions (30 ms) stand in
    for probabilities.

    Args:
        aggressiveness: 0 (keeps most speech) to 3 (drops most non-speech).
        min_speech, min_silence, speech_pad: as :class:`StreamingVAD` (seconds).
    """

    frame = 480

    def __init__(self, aggressiveness: int = 2, min_speech: float = 0.25, min_silence: float = 0.3,
                 speech_pad: float = 0.03) -> None:
        try:
            import webrtcvad
        except ImportError as e:
            raise MissingDependencyError("WebRTC VAD needs webrtcvad-wheels: pip install webrtcvad-wheels") from e
        if aggressiveness not in (0, 1, 2, 3):
            raise ParameterError(f"aggressiveness must be 0-3, got {aggressiveness}")
        self._vad = webrtcvad.Vad(aggressiveness)
        super().__init__(0.5, 0.5, min_speech, min_silence, speech_pad)

    def _step(self, frame: np.ndarray) -> float:
        pcm = (np.clip(frame, -1, 1) * 32767).astype("<i2").tobytes()
        return 1.0 if self._vad.is_speech(pcm, VAD_SR) else 0.0
