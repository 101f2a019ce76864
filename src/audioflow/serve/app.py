"""The FastAPI application: audioflow's own endpoints (``/v1/transcribe``, ``/v1/diarize``, ...), the
OpenAI-compatible ones (``/v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/audio/speech``),
the WebSocket stream, health, models, metrics and the web page. Every endpoint runs the pipeline's
stages (or the speech and feature functions they wrap), so the server computes what a batch run does."""

from __future__ import annotations

import contextlib
import io
import json
import time
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from .. import __version__
from ..audio import Audio
from ..errors import AudioflowError
from .inputs import Problem, decode_audio, decode_base64, fetch_url, problem_for
from .settings import ServeSettings, key_accepted
from .work import Metrics, StageRunner, step

AUDIO_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg", "ogg": "audio/ogg",
               "mp3": "audio/mpeg", "pcm": "audio/L16"}
TEXT_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt", "txt": "text/plain", "rttm": "text/plain"}
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
AUDIO_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string",
                                                                                "format": "binary"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object", "properties": {
        "audio_base64": {"type": "string", "description": "the audio file's bytes in base64"},
        "url": {"type": "string", "description": "http(s) URL of the audio (when the server allows URLs)"}}}},
}}}


class SynthesizeBody(BaseModel):
    text: str = Field(min_length=1, max_length=10000, description="what to say")
    voice: str | None = Field(None, max_length=100, description="piper:joe, espeak:VOICE or flite:VOICE")
    rate: float = Field(1.0, ge=0.25, le=4.0, description="speaking rate relative to the voice's pace")
    format: str = Field("wav", pattern="^(wav|flac|opus|mp3|pcm)$")


class SpeechBody(BaseModel):
    model: str = Field("tts-1", max_length=100)
    input: str = Field(min_length=1, max_length=4096)
    voice: str = Field("alloy", max_length=100)
    response_format: str = Field("mp3", pattern="^(mp3|opus|aac|flac|wav|pcm)$")
    speed: float = Field(1.0, ge=0.25, le=4.0)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413 as soon as it passes the
    limit (declared length or bytes received), before the app buffers it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_problem(send, Problem(413, f"request body over {self.limit} bytes"))
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _send_problem(send, Problem(413, f"request body over {self.limit} bytes"))


class _TooLarge(Exception):
    pass


async def _send_problem(send: Any, problem: Problem) -> None:
    body = json.dumps(problem.body()).encode()
    await send({"type": "http.response.start", "status": problem.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The application for ``settings`` (defaults: 127.0.0.1, no key, 2 worker threads)."""
    settings = settings or ServeSettings()
    settings.check()
    device = settings.device
    if device == "auto":
        from ..data.loader import resolve_device

        device = str(resolve_device("auto"))
    metrics = Metrics()
    runner = StageRunner(settings.workers, settings.queue_limit, device, metrics)
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        runner.shutdown()

    app = FastAPI(title="audioflow", version=__version__, lifespan=lifespan,
                  description="Speech and audio processing: the stages of `audioflow process` over HTTP and "
                              "WebSocket, with OpenAI-compatible audio endpoints.")
    app.state.settings, app.state.runner, app.state.metrics = settings, runner, metrics
    app.state.streams = {}

    @app.exception_handler(Problem)
    async def answer_problem(request: Request, problem: Problem) -> JSONResponse:
        return JSONResponse(problem.body(), problem.status, headers=problem.headers)

    @app.exception_handler(AudioflowError)
    async def answer_library_error(request: Request, error: AudioflowError) -> JSONResponse:
        problem = problem_for(error)
        return JSONResponse(problem.body(), problem.status)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "other")
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    def authorize(request: Request) -> None:
        if not key_accepted(settings, request.headers):
            raise Problem(401, "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key)",
                          kind="authentication_error", headers={"WWW-Authenticate": "Bearer"})

    api = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    async def request_audio(request: Request, sr: int | None = None, mono: bool = False) -> tuple[Audio, dict]:
        """The request's audio (any of the accepted forms) and the JSON body's other fields."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fields: dict[str, Any] = {}
        name = "upload"
        if content_type == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=50)
            upload = form.get("file") or form.get("audio")
            if upload is None or isinstance(upload, str):
                raise Problem(400, "multipart upload needs a 'file' part", param="file")
            data = await upload.read()
            name = f"upload {upload.filename!r}" if upload.filename else name
        elif content_type == "application/json":
            try:
                fields = await request.json()
            except ValueError:
                raise Problem(400, "the JSON body does not parse") from None
            if not isinstance(fields, dict):
                raise Problem(400, "the JSON body must be an object")
            if "audio_base64" in fields:
                data = decode_base64(fields["audio_base64"])
            elif "url" in fields:
                data = await runner.call(fetch_url, fields["url"], settings)
                name = str(fields["url"])
            else:
                raise Problem(400, "JSON bodies carry the audio as audio_base64 (or url)", param="audio_base64")
        elif content_type.startswith("audio/") or content_type in ("application/octet-stream", ""):
            data = await request.body()
        else:
            raise Problem(415, f"unsupported content type {content_type!r}: send multipart/form-data, audio/*, "
                               "application/octet-stream or JSON with audio_base64")
        audio = await runner.call(decode_audio, data, name, settings, sr, mono)
        return audio, fields

    async def run(endpoint: str, audio: Audio, *steps: tuple[str, dict[str, Any]]) -> tuple[Audio, Any]:
        result = await runner.call(runner.run_steps, audio, list(steps))
        metrics.audio_seconds.labels(endpoint).inc(audio.duration)
        return result

    @api.post("/transcribe", openapi_extra=AUDIO_BODY, tags=["speech"],
              responses={200: {"content": {"application/json": {}, "text/plain": {}, "text/vtt": {}}}})
    async def transcribe(request: Request,
                         language: Annotated[str | None, Query(max_length=8, description="code; none: detect")] = None,
                         task: Annotated[str, Query(pattern="^(transcribe|translate)$")] = "transcribe",
                         word_timestamps: bool = True,
                         beam_size: Annotated[int, Query(ge=1, le=10)] = 5,
                         diarize: Annotated[bool, Query(description="speaker-attributed transcript")] = False,
                         output: Annotated[str, Query(pattern="^(json|srt|vtt|txt)$")] = "json") -> Response:
        """Transcript (Whisper) with segments, words, language; JSON, SRT, VTT or plain text."""
        audio, _ = await request_audio(request)
        steps = [step("vad"), *([step("diarize", write=False)] if diarize else []),
                 step("transcribe", model=settings.whisper_model, language=language, task=task,
                      word_timestamps=word_timestamps, beam_size=beam_size, formats="json")]
        _, annotations = await run("/v1/transcribe", audio, *steps)
        return _transcript_response(annotations.results["transcribe"], output)

    @api.post("/diarize", openapi_extra=AUDIO_BODY, tags=["speech"])
    async def diarize(request: Request, num_speakers: Annotated[int | None, Query(ge=1, le=32)] = None,
                      min_speakers: Annotated[int, Query(ge=1, le=32)] = 1,
                      max_speakers: Annotated[int, Query(ge=1, le=32)] = 8,
                      output: Annotated[str, Query(pattern="^(json|rttm)$")] = "json") -> Response:
        """Speaker turns (who spoke when) as JSON or RTTM."""
        audio, _ = await request_audio(request)
        _, annotations = await run("/v1/diarize", audio, step("vad"), step(
            "diarize", num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers, write=False))
        result = annotations.results["diarize"]
        if output == "rttm":
            from ..audio import Segment
            from ..speech.diarize import write_rttm

            text = io.StringIO()
            write_rttm([Segment(t["start"], t["end"], t["speaker"]) for t in result["turns"]], "upload", text)
            return PlainTextResponse(text.getvalue())
        return JSONResponse(result)

    @api.post("/vad", openapi_extra=AUDIO_BODY, tags=["speech"])
    async def vad(request: Request, threshold: Annotated[float, Query(gt=0, lt=1)] = 0.5,
                  min_speech: Annotated[float, Query(ge=0, le=10)] = 0.25,
                  min_silence: Annotated[float, Query(ge=0, le=10)] = 0.1) -> Response:
        """Speech segments (start, end, probability) and the speech ratio."""
        audio, _ = await request_audio(request)
        _, annotations = await run("/v1/vad", audio, step("vad", threshold=threshold, min_speech=min_speech,
                                                          min_silence=min_silence))
        return JSONResponse(annotations.results["vad"])

    @api.post("/denoise", openapi_extra=AUDIO_BODY, tags=["audio"],
              responses={200: {"content": {t: {} for t in set(AUDIO_TYPES.values())}}})
    async def denoise(request: Request,
                      method: Annotated[str, Query(pattern="^(deepfilternet|rnnoise|spectral)$")] = "deepfilternet",
                      atten_lim: Annotated[float, Query(ge=0, le=100)] = 100.0,
                      format: Annotated[str, Query(pattern="^(wav|flac|opus|mp3)$")] = "wav") -> Response:
        """Denoised audio (DeepFilterNet3, RNNoise or spectral gating) in the format asked."""
        audio, _ = await request_audio(request)
        out, _ = await run("/v1/denoise", audio, step("denoise", method=method, atten_lim=atten_lim, write=False))
        return await _audio_response(runner, out, format)

    @api.post("/enhance", openapi_extra=AUDIO_BODY, tags=["audio"],
              responses={200: {"content": {t: {} for t in set(AUDIO_TYPES.values())}}})
    async def enhance(request: Request,
                      lufs: Annotated[float | None, Query(ge=-70, le=0, description="loudness target, LUFS")] = None,
                      true_peak: Annotated[float, Query(ge=-20, le=0, description="dBTP ceiling")] = -1.0,
                      highpass: Annotated[float | None, Query(gt=0, le=20000, description="Hz")] = None,
                      lowpass: Annotated[float | None, Query(gt=0, le=96000, description="Hz")] = None,
                      eq: Annotated[str | None, Query(max_length=400)] = None,
                      declick: bool = False, denoise: bool = False,
                      denoise_db: Annotated[float, Query(ge=0, le=60)] = 12.0,
                      preemphasis: Annotated[float | None, Query(ge=0, lt=1)] = None,
                      format: Annotated[str, Query(pattern="^(wav|flac|opus|mp3)$")] = "wav") -> Response:
        """Enhanced audio: the enhance stage's filters, EQ, de-click, spectral denoise, loudness and limiter."""
        audio, _ = await request_audio(request)
        steps = step("enhance", lufs=lufs, true_peak=true_peak, highpass=highpass, lowpass=lowpass, eq=eq,
                     declick=declick, denoise=denoise, denoise_db=denoise_db, preemphasis=preemphasis, write=False)
        out, _ = await run("/v1/enhance", audio, steps)
        return await _audio_response(runner, out, format)

    @api.post("/analyze", openapi_extra=AUDIO_BODY, tags=["audio"])
    async def analyze(request: Request,
                      music: Annotated[bool, Query(description="tempo, key, beats")] = True) -> Response:
        """Measurements (loudness, peaks, SNR, silence, clipping) and, with music, tempo, beats, key, HPSS."""
        audio, _ = await request_audio(request)
        _, annotations = await run("/v1/analyze", audio, step("analyze", music=music))
        return JSONResponse(annotations.results["analyze"])

    @api.post("/features", openapi_extra=AUDIO_BODY, tags=["audio"],
              responses={200: {"content": {"application/json": {}, "application/octet-stream": {}}}})
    async def features(request: Request,
                       name: Annotated[str, Query(pattern="^[a-z_]+$", description="mfcc, log_mel, ...")] = "log_mel",
                       sr: Annotated[int, Query(ge=1000, le=192000, description="Hz")] = 16000,
                       n_mels: Annotated[int | None, Query(ge=1, le=512)] = None,
                       n_mfcc: Annotated[int | None, Query(ge=1, le=128)] = None,
                       output: Annotated[str, Query(pattern="^(json|npy)$")] = "json") -> Response:
        """A feature of the audio (mixed to mono, resampled to ``sr``) as JSON or a .npy file."""
        audio, _ = await request_audio(request, sr=sr, mono=True)
        kwargs = {k: v for k, v in (("n_mels", n_mels), ("n_mfcc", n_mfcc)) if v is not None}
        values = await runner.call(_feature, name, sr, audio.samples, kwargs)
        metrics.audio_seconds.labels("/v1/features").inc(audio.duration)
        if output == "npy":
            buffer = io.BytesIO()
            np.save(buffer, values)
            return Response(buffer.getvalue(), media_type="application/octet-stream")
        return JSONResponse({"name": name, "sample_rate": sr, "shape": list(values.shape),
                             "values": np.round(values, 5).tolist()})

    @api.post("/synthesize", tags=["speech"],
              responses={200: {"content": {t: {} for t in set(AUDIO_TYPES.values())}}})
    async def synthesize(body: SynthesizeBody) -> Response:
        """Speech for text (Piper by default; espeak-ng and flite voices)."""
        voice = _voice(body.voice)
        speech = await runner.call(_speak, body.text, voice, body.rate)
        return await _audio_response(runner, speech, body.format)

    @api.get("/health", tags=["server"])
    async def health() -> dict[str, Any]:
        """Liveness and load."""
        return {"status": "ok", "version": __version__, "queue": runner.pending, "streams": len(app.state.streams)}

    @api.get("/models", tags=["server"])
    async def models() -> dict[str, Any]:
        """Models loaded (and on which device) and the voices available."""
        from ..speech.synthesize import voices

        return {"device": device, "whisper_model": settings.whisper_model or "tiny.en (packaged)",
                "loaded": runner.loaded(), "voices": voices()}

    openai = APIRouter(prefix="/v1/audio", dependencies=[Depends(authorize)], tags=["openai"])

    async def openai_transcription(task: str, file: UploadFile, language: str | None, prompt: str | None,
                                   response_format: str, temperature: float, granularities: list[str] | None,
                                   endpoint: str) -> Response:
        if response_format not in ("json", "text", "srt", "vtt", "verbose_json"):
            raise Problem(400, f"response_format {response_format!r} is not one of json, text, srt, vtt, "
                               "verbose_json", param="response_format")
        if not 0 <= temperature <= 1:
            raise Problem(400, "temperature must be within 0-1", param="temperature")
        data = await file.read()
        audio = await runner.call(decode_audio, data, f"upload {file.filename!r}", settings, None, False)
        _, annotations = await run(endpoint, audio, step("vad"), step(
            "transcribe", model=settings.whisper_model, language=language, task=task, prompt=prompt,
            formats="json", temperature=temperature or None, word_timestamps=True))
        result = annotations.results["transcribe"]
        if response_format == "json":
            return JSONResponse({"text": result["text"]})
        if response_format == "text":
            return PlainTextResponse(result["text"] + "\n")
        if response_format in ("srt", "vtt"):
            return _transcript_response(result, response_format)
        verbose: dict[str, Any] = {
            "task": task, "language": _language_name(result["language"]), "duration": result["duration"],
            "text": result["text"],
            "segments": [{"id": i, "seek": 0, "start": s["start"], "end": s["end"], "text": " " + s["text"],
                          "tokens": [], "temperature": temperature,
                          "avg_logprob": float(np.log(max(s.get("confidence") or 1e-9, 1e-9))),
                          "compression_ratio": 1.0, "no_speech_prob": s.get("no_speech_probability") or 0.0}
                         for i, s in enumerate(result["segments"])]}
        if granularities and "word" in granularities:
            verbose["words"] = [{"word": w["word"].strip(), "start": w["start"], "end": w["end"]}
                                for s in result["segments"] for w in s["words"]]
        return JSONResponse(verbose)

    @openai.post("/transcriptions")
    async def transcriptions(file: Annotated[UploadFile, File()], model: Annotated[str, Form()] = "whisper-1",
                             language: Annotated[str | None, Form()] = None,
                             prompt: Annotated[str | None, Form()] = None,
                             response_format: Annotated[str, Form()] = "json",
                             temperature: Annotated[float, Form()] = 0.0,
                             timestamp_granularities: Annotated[list[str] | None,
                                                                Form(alias="timestamp_granularities[]")] = None
                             ) -> Response:
        """OpenAI's transcription endpoint (any model name maps to this server's Whisper model)."""
        return await openai_transcription("transcribe", file, language, prompt, response_format, temperature,
                                          timestamp_granularities, "/v1/audio/transcriptions")

    @openai.post("/translations")
    async def translations(file: Annotated[UploadFile, File()], model: Annotated[str, Form()] = "whisper-1",
                           prompt: Annotated[str | None, Form()] = None,
                           response_format: Annotated[str, Form()] = "json",
                           temperature: Annotated[float, Form()] = 0.0) -> Response:
        """OpenAI's translation endpoint: speech in any language to English text."""
        return await openai_transcription("translate", file, None, prompt, response_format, temperature, None,
                                          "/v1/audio/translations")

    @openai.post("/speech", responses={200: {"content": {t: {} for t in set(AUDIO_TYPES.values())}}})
    async def speech(body: SpeechBody) -> Response:
        """OpenAI's speech endpoint: ``input`` text to audio (OpenAI voice names map to the default voice)."""
        voice = _voice(None if body.voice in OPENAI_VOICES else body.voice)
        audio = await runner.call(_speak, body.input, voice, body.speed)
        return await _audio_response(runner, audio, body.response_format)

    @app.get("/metrics", dependencies=[Depends(authorize)], tags=["server"],
             responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latencies, audio seconds processed, queue depth, open streams."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("audioflow.serve").joinpath("static/index.html").read_text())

    from .stream import register_stream

    register_stream(app, settings, runner, metrics)
    app.include_router(api)
    app.include_router(openai)
    return app


# ---- helpers ----------------------------------------------------------------------------------------




def _voice(voice: str | None) -> str | None:
    """A client's voice choice: packaged Piper voices and the espeak/flite engines only (never a path)."""
    if voice is None or voice in ("joe", "piper:joe"):
        return voice
    engine, _, name = voice.partition(":")
    if engine in ("espeak", "flite") and name and all(c.isalnum() or c in "-+_" for c in name):
        return voice
    raise Problem(400, f"voice {voice!r}: use piper:joe, espeak:VOICE or flite:VOICE", param="voice")


def _speak(text: str, voice: str | None, rate: float) -> Audio:
    from ..speech.synthesize import synthesize

    return synthesize(text, voice, rate)


def _feature(name: str, sr: int, samples: np.ndarray, kwargs: dict[str, Any]) -> np.ndarray:
    import torch

    from ..data.transforms import build_feature

    module = build_feature(name, sr, **kwargs)
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(samples))[None])[0].numpy()


async def _audio_response(runner: StageRunner, audio: Audio, fmt: str) -> Response:
    """Encoded audio; ``pcm`` is raw 16-bit little-endian mono at 24 kHz (OpenAI's pcm)."""
    fmt = "opus" if fmt == "ogg" else fmt
    if fmt == "aac":
        fmt = "m4a"
    data = await runner.call(_encode, audio, fmt)
    return Response(data, media_type=AUDIO_TYPES.get(fmt, "audio/mp4"))


def _encode(audio: Audio, fmt: str) -> bytes:
    from ..io import encode, resample

    samples = np.clip(audio.samples, -1.0, 1.0)
    if fmt == "pcm":
        mono = samples.mean(axis=0) if samples.ndim == 2 else samples
        return (resample(mono, audio.sample_rate, 24000) * 32767).astype("<i2").tobytes()
    if fmt == "opus" and audio.sample_rate not in (8000, 12000, 16000, 24000, 48000):
        samples, rate = resample(samples, audio.sample_rate, 48000), 48000
        return encode(samples, rate, fmt)
    return encode(samples, audio.sample_rate, fmt)


def _transcript_response(result: dict[str, Any], fmt: str) -> Response:
    from ..speech.transcribe import Transcript

    if fmt == "json":
        return JSONResponse(result)
    text = Transcript.from_dict(result).render(fmt)
    return PlainTextResponse(text, media_type=TEXT_TYPES[fmt])


def _language_name(code: str | None) -> str | None:
    names = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
             "pt": "portuguese", "ru": "russian", "zh": "chinese", "ja": "japanese"}
    return names.get(code or "", code)


def serve(settings: ServeSettings) -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                ws_max_size=settings.ws_max_message_bytes)


__all__ = ["create_app", "serve"]
