"""What the server's worker processes run: every decode, model and encoder call of a request happens here,
never in the process that holds the sockets, so a crash in native code (a codec, ONNX Runtime,
CTranslate2, DeepFilterNet) costs one worker, which is replaced, and one request, which gets a 500
naming the stage.

The parent sends ``(job name, arguments)``; :func:`serve_task` answers ``("ok", value, models loaded)``
or ``("problem", status, message, kind, param)``. Uploads arrive as paths of files the parent spooled under
names of its own; their messages name the upload (``upload 'talk.wav'``), never that path."""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio import Audio
from ..errors import AudioflowError
from ..models import ModelManager
from ..pipeline.results import as_dict
from ..runtime.extras import as_missing_dependency
from .inputs import Problem, problem_for

_MODELS: ModelManager | None = None
_SESSIONS: dict[str, Any] = {}  # stream id -> StreamState, in the worker that opened it
SESSION_IDLE_S = 600.0  # a stream whose parent never closed it is dropped after this long unused


@dataclass(frozen=True)
class Limits:
    """The per-request limits a worker checks (a picklable copy of the server settings' limits)."""

    max_duration: float
    min_sample_rate: int
    max_sample_rate: int
    max_channels: int
    max_request_bytes: int
    max_response_bytes: int
    max_json_response_bytes: int


@dataclass(frozen=True)
class Decode:
    """How a request's audio is decoded: resampled to ``sr`` Hz (None: native) and mixed to mono."""

    sr: int | None = None
    mono: bool = False


@dataclass
class Job:
    """One request's work: decode the upload at ``path``, run ``steps`` (pipeline ``(name, options)``
    pairs), and give back the ``results`` of the named stages, the audio encoded as ``audio_format``, or
    the ``feature`` ``(name, kwargs)`` as 'json' or 'npy' bytes (``feature_output``)."""

    path: str
    name: str
    decode: Decode = field(default_factory=Decode)
    steps: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    results: tuple[str, ...] = ()
    audio_format: str | None = None
    feature: tuple[str, dict[str, Any]] | None = None
    feature_output: str = "json"
    stems_format: str | None = None  # a zip of the stages' audio outputs (separate's stems) in this format


def init_worker(device: str) -> None:
    """A new worker: its model manager, and the stage modules imported now (seconds of torch and friends)
    so that no request's time limit pays for them."""
    global _MODELS
    from ..pipeline import STAGES

    _MODELS = ModelManager(device)
    len(STAGES)  # imports every stage's module


def models() -> ModelManager:
    global _MODELS
    if _MODELS is None:
        _MODELS = ModelManager("cpu")
    return _MODELS


def serve_task(payload: tuple[str, tuple[Any, ...]]) -> tuple[Any, ...]:
    """Run one job by name; never raises (the answer says what went wrong)."""
    name, args = payload
    try:
        value = JOBS[name](*args)
        return ("ok", value, sorted(models().loaded().items()))
    except Problem as p:
        return ("problem", p.status, p.message, p.kind, p.param)
    except AudioflowError as e:
        p = problem_for(e)
        return ("problem", p.status, p.message, p.kind, p.param)
    except ModuleNotFoundError as e:  # an optional dependency this installation lacks: 501 naming its extra
        missing = as_missing_dependency(e, name)
        if missing is None:
            return ("problem", 500, f"{name} failed: {type(e).__name__}: {scrub(str(e))}", "server_error", None)
        p = problem_for(missing)
        return ("problem", p.status, p.message, p.kind, p.param)
    except MemoryError:
        return ("problem", 507, f"{name}: the server ran out of memory for this request", "server_error", None)
    except Exception as e:  # a bug of ours: say where, without reprs or paths
        return ("problem", 500, f"{name} failed: {type(e).__name__}: {scrub(str(e))}", "server_error", None)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+|/tmp/audioflow-spool[^\s'\"]*")


def scrub(message: str) -> str:
    """A message without heap addresses or our spool paths (they tell a client about the process)."""
    return _ADDRESS.sub("", message)[:2000]


# ---- uploads --------------------------------------------------------------------------------------


def inspect(path: str, name: str, limits: Limits, decode: Decode, steps: list[tuple[str, dict[str, Any]]],
            output_audio: bool, feature: bool = False) -> dict[str, Any]:
    """The upload's header checked against the limits, and the estimated peak memory (bytes) of the
    request (refused with 413 over ``max_request_bytes``)."""
    described = check_header(path, name, limits, limits.max_duration,
                             "for one request: submit it as a job (POST /v1/jobs), which processes it in chunks")
    sr, channels = described.sample_rate, described.channels
    cost = estimate_bytes(described.duration, sr, channels, decode, steps, output_audio, feature)
    if cost > limits.max_request_bytes:
        raise Problem(413, f"{name}: processing {described.duration:.0f} s of {channels}-channel {sr} Hz audio "
                           f"this way needs about {cost / 2**20:.0f} MiB, over this server's limit of "
                           f"{limits.max_request_bytes / 2**20:.0f} MiB per request: send a shorter clip, "
                           "fewer channels or a lower rate", param="file")
    return {"duration": described.duration, "sample_rate": sr, "channels": channels, "cost_bytes": cost}


def check_header(path: str, name: str, limits: Limits, max_duration: float, where: str) -> Any:
    """The upload's header (``io.info``, errors retold with its ``name``) checked against ``limits`` and
    ``max_duration`` seconds (``where`` ends the 413's message: what the limit is for): samples, length,
    rate, channels. Nothing is decoded."""
    from ..io import info

    described = _named(name, info, path)
    sr, channels = described.sample_rate, described.channels
    if described.frames <= 0 or described.duration <= 0:
        raise Problem(422, f"{name}: the audio holds no samples", param="file")
    if described.duration < MIN_DURATION:
        raise Problem(422, f"{name}: {described.duration * 1000:.2f} ms of audio ({described.frames} "
                           f"sample{'s' * (described.frames != 1)}) is too short to process (at least "
                           f"{MIN_DURATION * 1000:.0f} ms)", param="file")
    # the rate before the duration: the hours a 1 Hz header declares are not real
    if not limits.min_sample_rate <= sr <= limits.max_sample_rate:
        raise Problem(422, f"{name}: sample rate {sr} Hz is outside {limits.min_sample_rate}-"
                           f"{limits.max_sample_rate} Hz", param="file")
    if channels > limits.max_channels:
        raise Problem(422, f"{name}: {channels} channels is over {limits.max_channels}", param="file")
    if described.duration > max_duration:
        raise Problem(413, f"{name}: {described.duration:.0f} s of audio is over this server's limit of "
                           f"{max_duration:.0f} s {where}", param="file")
    return described


def estimate_bytes(duration: float, sr: int, channels: int, decode: Decode,
                   steps: list[tuple[str, dict[str, Any]]], output_audio: bool, feature: bool = False) -> int:
    """Peak memory of a request, bytes, from the header alone: the decode (the native audio, or, when it is
    resampled, the blocks streamed into what is held), the audio held through the stages,
    the largest stage's working memory (:meth:`Stage.work_bytes`), and the answer."""
    from ..pipeline.stage import build_steps

    rate = decode.sr or sr
    held_channels = 1 if decode.mono else channels
    held = duration * rate * held_channels * 4
    native = duration * sr * channels * 4
    decode_peak = 2 * held if decode.sr else native + (held if decode.mono else 0.0)
    stages = build_steps(steps) if steps else []
    work = max((stage.work_bytes(duration, rate, held_channels) for stage in stages), default=0.0)
    if feature:
        work = max(work, FEATURE_FACTOR * held)
    answer = 2 * held if output_audio else 0.0
    return int(max(decode_peak, held + work + answer))


# the shortest upload processed, seconds: one 10 ms analysis frame (a 1-sample file is a client's mistake)
MIN_DURATION = 0.01
FEATURE_FACTOR = 8.0  # a feature's STFT and mel buffers, times the audio (measured ~6x for log-mel)


def _named(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)``, its library errors retold with the upload's name instead of the spool path."""
    try:
        return fn(*args, **kwargs)
    except AudioflowError as e:
        p = problem_for(e)
        p.message = f"{name}: {scrub(e.message)}"
        raise p from None


def decode_upload(job: Job) -> Audio:
    """The upload decoded as the job asks, with its samples checked (no NaN, nothing beyond ±1e6)."""
    from ..io import load, stream
    from ..io.decoders import check_range

    if job.decode.sr:
        # streamed: the native-rate audio never exists whole, only the (smaller) resampled result
        blocks = _named(job.name, lambda: list(stream(job.path, 30.0, sr=job.decode.sr, mono=job.decode.mono)))
        samples = np.concatenate(blocks, axis=-1) if blocks else np.zeros(0, np.float32)
        rate = job.decode.sr
    else:
        samples, rate = _named(job.name, load, job.path, sr=None, mono=job.decode.mono)
    if samples.shape[-1] == 0:
        raise Problem(422, f"{job.name}: the audio holds no samples", param="file")
    if samples.shape[-1] < MIN_DURATION * rate:  # the header said more than the file holds
        raise Problem(422, f"{job.name}: {samples.shape[-1] / rate * 1000:.2f} ms of audio is too short to "
                           f"process (at least {MIN_DURATION * 1000:.0f} ms)", param="file")
    _named(job.name, check_range, samples, job.name)
    return Audio(samples, rate, job.name)


def run_job(job: Job, limits: Limits) -> Any:
    """Decode, run the stages, and shape the answer (a dict of results, or bytes)."""
    audio = decode_upload(job)
    if job.steps:
        audio, annotations = run_stages(audio, job.steps)
    if job.feature is not None:
        return _feature(audio, *job.feature, job.feature_output, limits)
    if job.stems_format is not None:
        data = _zip_of(annotations, job.stems_format)
        _check_answer(len(data), limits, job.name)
        return data
    if job.audio_format is not None:
        data = encode_audio(audio, job.audio_format)
        _check_answer(len(data), limits, job.name)
        return data
    results = {name: as_dict(annotations.results[name]) for name in job.results}
    return {"results": results, "duration": audio.duration}


def _zip_of(annotations: Any, fmt: str) -> bytes:
    """The stages' audio outputs as ``{name}.{fmt}`` members of a zip, with ``results.json`` (every stage's
    results); the audio is stored as it is (compressed formats do not shrink)."""
    import io
    import json
    import zipfile

    buffer = io.BytesIO()
    extension = {"opus": "ogg"}.get(fmt, fmt)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, audio in annotations.audio_outputs.items():
            archive.writestr(f"{name}.{extension}", encode_audio(audio, fmt))
        results = {name: as_dict(result) for name, result in annotations.results.items()}
        archive.writestr("results.json", json.dumps(results, indent=1), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def run_stages(audio: Audio, steps: list[tuple[str, dict[str, Any]]], known: dict[str, Any] | None = None
               ) -> tuple[Audio, Any]:
    """The pipeline's stages over one request's audio, their models from this worker's manager (loaded
    once); ``known`` results are given to the stages as if earlier steps had made them (the stream's VAD
    segments)."""
    from ..pipeline.stage import Annotations, build_steps

    stages = build_steps(steps)
    for stage in stages:
        stage.setup(models())
    annotations = Annotations(audio.source or "upload", "upload", None)
    annotations.results.update(known or {})
    for stage in stages:
        try:
            audio, annotations = stage(audio, annotations)
        except AudioflowError as e:
            p = problem_for(e)
            p.message = f"{stage.name}: {scrub(str(e))}"
            raise p from None
    return audio, annotations


def _check_answer(size: int, limits: Limits, name: str, limit: int | None = None) -> None:
    limit = limits.max_response_bytes if limit is None else limit
    if size > limit:
        raise Problem(413, f"{name}: the answer would be {size / 2**20:.1f} MiB, over this server's limit of "
                           f"{limit / 2**20:.0f} MiB: ask for a compressed format (flac, opus, mp3), output=npy "
                           "instead of json, or send a shorter clip", param="file")


def _feature(audio: Audio, name: str, kwargs: dict[str, Any], output: str, limits: Limits) -> Any:
    import torch

    from ..features.registry import build_feature

    module = build_feature(name, audio.sample_rate, **kwargs)
    with torch.no_grad():
        values = module(torch.from_numpy(np.ascontiguousarray(audio.samples))[None])[0].numpy()
    if output == "npy":
        _check_answer(values.nbytes + 128, limits, audio.source or "upload")
        buffer = io.BytesIO()
        np.save(buffer, values)
        return buffer.getvalue()
    _check_answer(values.size * 11, limits, audio.source or "upload",  # ~11 bytes a value as JSON text
                  min(limits.max_json_response_bytes, limits.max_response_bytes))
    rounded = np.round(values.astype(np.float64), 5)
    rounded[~np.isfinite(rounded)] = 0.0  # cannot happen for audio within ±1e6; JSON has no inf
    return {"name": name, "sample_rate": audio.sample_rate, "shape": list(values.shape), "values": rounded.tolist()}


def encode_audio(audio: Audio, fmt: str) -> bytes:
    """Encoded audio; ``pcm`` is raw 16-bit little-endian mono at 24 kHz (OpenAI's pcm); ``aac`` an M4A."""
    from ..io import encode, resample

    fmt = {"ogg": "opus", "aac": "m4a"}.get(fmt, fmt)
    samples = np.clip(audio.samples, -1.0, 1.0)
    if fmt == "pcm":
        mono = samples.mean(axis=0) if samples.ndim == 2 else samples
        return (resample(mono, audio.sample_rate, 24000) * 32767).astype("<i2").tobytes()
    if fmt == "opus" and audio.sample_rate not in (8000, 12000, 16000, 24000, 48000):
        return encode(resample(samples, audio.sample_rate, 48000), 48000, fmt)
    return encode(samples, audio.sample_rate, fmt)


def speak(text: str, voice: str | None, rate: float, fmt: str, limits: Limits) -> bytes:
    from ..speech.synthesize import synthesize

    data = encode_audio(synthesize(text, voice, rate), fmt)
    _check_answer(len(data), limits, "speech")
    return data


# The page's example clip: a short call between two voices, made here (no recording ships with the package)
EXAMPLE_TURNS = (("piper:joe", "Hello, thanks for calling. How can I help you today?"),
                 ("second", "Hi. I would like to change the delivery address of my order, please."),
                 ("piper:joe", "Of course. Could you read me the order number?"),
                 ("second", "Yes, it is four seven two, nine one."))


def example() -> bytes:
    """``EXAMPLE_TURNS`` spoken by Piper's joe and a second voice (flite's slt, else espeak-ng's en+f3) at 16 kHz
    with pauses between turns, as WAV bytes."""
    import shutil

    from ..io import encode, resample
    from ..speech.synthesize import synthesize

    second = "flite:slt" if shutil.which("flite") else "espeak:en+f3"
    pause = np.zeros(int(0.7 * 16000), np.float32)
    parts = [pause[:8000]]
    for voice, text in EXAMPLE_TURNS:
        spoken = synthesize(text, second if voice == "second" else voice)
        parts += [resample(spoken.samples, spoken.sample_rate, 16000).astype(np.float32), pause]
    return encode(np.concatenate(parts), 16000, "wav")


def clip(samples: np.ndarray, sr: int, steps: list[tuple[str, dict[str, Any]]], result: str) -> Any:
    """Stages over audio the parent already holds (a stream's utterance), as one speech segment."""
    audio = Audio(np.asarray(samples, np.float32), sr, "stream")
    _, annotations = run_stages(audio, steps, {"vad": {"segments": [{"start": 0.0, "end": audio.duration}]}})
    return as_dict(annotations.results[result])


# ---- streams ----------------------------------------------------------------------------------------


def session_open(session_id: str, config: dict[str, Any]) -> None:
    from .stream import StreamState

    _drop_idle()
    _SESSIONS[session_id] = StreamState(config)


def session_feed(session_id: str, samples: np.ndarray, last: bool, want_partial: bool) -> dict[str, Any]:
    state = _SESSIONS.get(session_id)
    if state is None:
        raise Problem(500, "the stream's worker process was restarted; its state is lost", kind="server_error")
    state.used = time.monotonic()
    return state.feed(samples, last, want_partial)


def session_close(session_id: str) -> None:
    _SESSIONS.pop(session_id, None)


def _drop_idle() -> None:
    now = time.monotonic()
    for key in [k for k, s in _SESSIONS.items() if now - s.used > SESSION_IDLE_S]:
        del _SESSIONS[key]


JOBS = {"inspect": inspect, "run": run_job, "clip": clip, "speak": speak, "example": example,
        "session_open": session_open, "session_feed": session_feed, "session_close": session_close}

__all__ = ["Decode", "Job", "Limits", "estimate_bytes", "serve_task"]
