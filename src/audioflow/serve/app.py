"""The FastAPI application: audioflow's own endpoints (``/v1/transcribe``, ``/v1/diarize``, ...), the
OpenAI-compatible ones (``/v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/audio/speech``),
the WebSocket stream, health, models, metrics and the web page. Every endpoint runs the pipeline's
stages (or the speech and feature functions they wrap), so the server computes what a batch run does."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import re
import time
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import AudioflowError
from .inputs import (
    Problem,
    Spool,
    Upload,
    decode_base64,
    fetch_url,
    problem_for,
    read_json,
    spool_bytes,
    spool_stream,
    spool_upload_file,
)
from .jobs import Decode
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


SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"), (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"content-security-policy", b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
                     b"style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; "
                     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")]
SPEECH = Decode(sr=16000, mono=True)  # what every speech model takes: decoded straight to it
NATIVE = Decode()


class Guard:
    """ASGI middleware in front of everything: the Host header must name this server and a browser's
    Origin must be its own page or allowed (DNS rebinding, cross-site form posts); a declared body over
    the limit is refused, and a streamed one as soon as it passes it; POSTs are admitted against the
    queue limit before their bodies are read (503); security headers on every answer; metrics."""

    def __init__(self, app: Any, settings: ServeSettings, runner: StageRunner, metrics: Metrics) -> None:
        self.app, self.settings, self.runner, self.metrics = app, settings, runner, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin")
        started, status = time.perf_counter(), 500

        async def guarded_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        admitted = False
        try:
            if not self.settings.host_allowed(host):
                raise Problem(421, f"host {host!r} is not this server's name (the operator can allow it)")
            if not self.settings.origin_allowed(origin.decode("latin-1") if origin else None, host):
                raise Problem(403, "requests from this origin are not allowed (the operator can allow it)")
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.settings.max_body_bytes:
                raise Problem(413, f"request body over {self.settings.max_body_bytes} bytes")
            if scope["method"] == "POST" and scope["path"].startswith("/v1/"):
                self.runner.admit()
                admitted = True
            await self.app(scope, self._limited(receive), guarded_send)
        except Problem as problem:
            await _send_problem(guarded_send, problem)
        finally:
            if admitted:
                self.runner.release()
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _limited(self, receive: Any) -> Any:
        received, limit = 0, self.settings.max_body_bytes

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body, without a Content-Length to refuse up front
                    raise StarletteHTTPException(413, f"request body over {limit} bytes")
            return message

        return limited


async def _send_problem(send: Any, problem: Problem) -> None:
    body = json.dumps(problem.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SafeJSONResponse(JSONResponse):
    """JSON that is always valid: a non-finite float (which JSON cannot hold) becomes null."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        except ValueError:
            return json.dumps(_finite(content), ensure_ascii=False, separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The application for ``settings`` (defaults: 127.0.0.1, no key, 2 worker processes)."""
    settings = settings or ServeSettings()
    settings.check()
    device = settings.device
    if device == "auto":
        from ..runtime import resolve_device

        device = str(resolve_device("auto"))
    metrics = Metrics()
    runner = StageRunner(settings, device, metrics)
    spool = Spool()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await asyncio.to_thread(runner.start)
        yield
        await asyncio.to_thread(runner.shutdown)
        spool.close()

    app = FastAPI(title="audioflow", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  default_response_class=SafeJSONResponse,
                  description="Speech and audio processing: the stages of `audioflow process` over HTTP and "
                              "WebSocket, with OpenAI-compatible audio endpoints.")
    app.state.settings, app.state.runner, app.state.metrics = settings, runner, metrics
    app.state.streams = {}
    app.state.spool = spool

    @app.exception_handler(Problem)
    async def answer_problem(request: Request, problem: Problem) -> JSONResponse:
        return JSONResponse(problem.body(), problem.status, headers=problem.headers)

    @app.exception_handler(AudioflowError)
    async def answer_library_error(request: Request, error: AudioflowError) -> JSONResponse:
        problem = problem_for(error)
        return JSONResponse(problem.body(), problem.status)

    @app.exception_handler(StarletteHTTPException)
    async def answer_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        problem = Problem(error.status_code, str(error.detail))
        return JSONResponse(problem.body(), problem.status, headers=getattr(error, "headers", None))

    app.add_middleware(Guard, settings=settings, runner=runner, metrics=metrics)

    def authorize(request: Request) -> None:
        if not key_accepted(settings, request.headers):
            raise Problem(401, "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key)",
                          kind="authentication_error", headers={"WWW-Authenticate": "Bearer"})

    api = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    async def receive_audio(request: Request) -> Upload:
        """The request's audio (any of the accepted forms), spooled to a file as it arrives."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=50)
            try:
                upload = form.get("file") or form.get("audio")
                if upload is None or isinstance(upload, str):
                    raise Problem(400, "multipart upload needs a 'file' part", param="file")
                return await spool_upload_file(upload, spool, settings.max_body_bytes)
            finally:
                await form.close()
        if content_type == "application/json":
            fields = await read_json(request, settings.max_json_bytes)
            if not isinstance(fields, dict):
                raise Problem(400, "the JSON body must be an object")
            if "audio_base64" in fields:
                data = await asyncio.to_thread(decode_base64, fields["audio_base64"])
                return spool_bytes(data, spool, "upload")
            if "url" in fields:
                return await asyncio.to_thread(fetch_url, fields["url"], settings, spool)
            raise Problem(400, "JSON bodies carry the audio as audio_base64 (or url)", param="audio_base64")
        if content_type.startswith("audio/") or content_type in ("application/octet-stream", ""):
            return await spool_stream(request.stream(), spool, settings.max_body_bytes, "upload")
        raise Problem(415, f"unsupported content type {content_type!r}: send multipart/form-data, audio/*, "
                           "application/octet-stream or JSON with audio_base64")

    async def process(upload: Upload, decode: Decode, steps: list[tuple[str, dict[str, Any]]], endpoint: str,
                      **answer: Any) -> Any:
        try:
            if upload.size == 0:
                raise Problem(400, "no audio in the request (send a file, a raw audio body, or audio_base64)",
                              param="file")
            return await runner.process(upload, decode, steps, endpoint, **answer)
        finally:
            upload.discard()

    async def audio_request(request: Request, decode: Decode, steps: list[tuple[str, dict[str, Any]]],
                            endpoint: str, **answer: Any) -> Any:
        return await process(await receive_audio(request), decode, steps, endpoint, **answer)

    @api.post("/transcribe", openapi_extra=AUDIO_BODY, tags=["speech"],
              responses={200: {"content": {"application/json": {}, "text/plain": {}, "text/vtt": {}}}})
    async def transcribe(request: Request,
                         language: Annotated[str | None, Query(max_length=8, pattern="^[A-Za-z]+$",
                                                               description="code; none: detect")] = None,
                         task: Annotated[str, Query(pattern="^(transcribe|translate)$")] = "transcribe",
                         word_timestamps: bool = True,
                         beam_size: Annotated[int, Query(ge=1, le=10)] = 5,
                         diarize: Annotated[bool, Query(description="speaker-attributed transcript")] = False,
                         output: Annotated[str, Query(pattern="^(json|srt|vtt|txt)$")] = "json") -> Response:
        """Transcript (Whisper) with segments, words, language; JSON, SRT, VTT or plain text."""
        steps = [step("vad"), *([step("diarize", write=False)] if diarize else []),
                 step("transcribe", model=settings.whisper_model, language=language, task=task,
                      word_timestamps=word_timestamps, beam_size=beam_size, formats="json")]
        answer = await audio_request(request, SPEECH, steps, "/v1/transcribe", results=("transcribe",))
        return _transcript_response(answer["results"]["transcribe"], output)

    @api.post("/diarize", openapi_extra=AUDIO_BODY, tags=["speech"])
    async def diarize(request: Request, num_speakers: Annotated[int | None, Query(ge=1, le=32)] = None,
                      min_speakers: Annotated[int, Query(ge=1, le=32)] = 1,
                      max_speakers: Annotated[int, Query(ge=1, le=32)] = 8,
                      output: Annotated[str, Query(pattern="^(json|rttm)$")] = "json") -> Response:
        """Speaker turns (who spoke when) as JSON or RTTM."""
        steps = [step("vad"), step("diarize", num_speakers=num_speakers, min_speakers=min_speakers,
                                   max_speakers=max_speakers, write=False)]
        answer = await audio_request(request, SPEECH, steps, "/v1/diarize", results=("diarize",))
        result = answer["results"]["diarize"]
        if output == "rttm":
            from ..audio import Segment
            from ..speech.diarize import write_rttm

            text = io.StringIO()
            write_rttm([Segment(t["start"], t["end"], t["speaker"]) for t in result["turns"]], "upload", text)
            return PlainTextResponse(text.getvalue())
        return SafeJSONResponse(result)

    @api.post("/vad", openapi_extra=AUDIO_BODY, tags=["speech"])
    async def vad(request: Request, threshold: Annotated[float, Query(gt=0, lt=1)] = 0.5,
                  min_speech: Annotated[float, Query(ge=0, le=10)] = 0.25,
                  min_silence: Annotated[float, Query(ge=0, le=10)] = 0.1) -> Response:
        """Speech segments (start, end, probability) and the speech ratio."""
        steps = [step("vad", threshold=threshold, min_speech=min_speech, min_silence=min_silence)]
        answer = await audio_request(request, SPEECH, steps, "/v1/vad", results=("vad",))
        return SafeJSONResponse(answer["results"]["vad"])

    @api.post("/denoise", openapi_extra=AUDIO_BODY, tags=["audio"],
              responses={200: {"content": {t: {} for t in set(AUDIO_TYPES.values())}}})
    async def denoise(request: Request,
                      method: Annotated[str, Query(pattern="^(deepfilternet|rnnoise|spectral)$")] = "deepfilternet",
                      atten_lim: Annotated[float, Query(ge=0, le=100)] = 100.0,
                      format: Annotated[str, Query(pattern="^(wav|flac|opus|mp3)$")] = "wav") -> Response:
        """Denoised audio (DeepFilterNet3, RNNoise or spectral gating) in the format asked."""
        steps = [step("denoise", method=method, atten_lim=atten_lim, write=False)]
        data = await audio_request(request, NATIVE, steps, "/v1/denoise", audio_format=format)
        return Response(data, media_type=AUDIO_TYPES[format])

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
        steps = [step("enhance", lufs=lufs, true_peak=true_peak, highpass=highpass, lowpass=lowpass, eq=eq,
                      declick=declick, denoise=denoise, denoise_db=denoise_db, preemphasis=preemphasis, write=False)]
        data = await audio_request(request, NATIVE, steps, "/v1/enhance", audio_format=format)
        return Response(data, media_type=AUDIO_TYPES[format])

    @api.post("/analyze", openapi_extra=AUDIO_BODY, tags=["audio"])
    async def analyze(request: Request,
                      music: Annotated[bool, Query(description="tempo, key, beats")] = True) -> Response:
        """Measurements (loudness, peaks, SNR, silence, clipping) and, with music, tempo, beats, key, HPSS."""
        answer = await audio_request(request, NATIVE, [step("analyze", music=music)], "/v1/analyze",
                                     results=("analyze",))
        return SafeJSONResponse(answer["results"]["analyze"])

    @api.post("/features", openapi_extra=AUDIO_BODY, tags=["audio"],
              responses={200: {"content": {"application/json": {}, "application/octet-stream": {}}}})
    async def features(request: Request,
                       name: Annotated[str, Query(pattern="^[a-z_]+$", description="mfcc, log_mel, ...")] = "log_mel",
                       sr: Annotated[int, Query(ge=1000, le=192000, description="Hz")] = 16000,
                       n_mels: Annotated[int | None, Query(ge=1, le=512)] = None,
                       n_mfcc: Annotated[int | None, Query(ge=1, le=128)] = None,
                       output: Annotated[str, Query(pattern="^(json|npy)$")] = "json") -> Response:
        """A feature of the audio (mixed to mono, resampled to ``sr``) as JSON or a .npy file."""
        kwargs = {k: v for k, v in (("n_mels", n_mels), ("n_mfcc", n_mfcc)) if v is not None}
        value = await audio_request(request, Decode(sr=sr, mono=True), [], "/v1/features", feature=(name, kwargs),
                                    feature_output=output)
        if output == "npy":
            return Response(value, media_type="application/octet-stream")
        return SafeJSONResponse(value)

    @api.post("/synthesize", tags=["speech"],
              responses={200: {"content": {t: {} for t in set(AUDIO_TYPES.values())}}})
    async def synthesize(body: SynthesizeBody) -> Response:
        """Speech for text (Piper by default; espeak-ng and flite voices)."""
        data = await runner.run("speak", _text(body.text), _voice(body.voice), body.rate, body.format, runner.limits,
                                what="synthesis")
        return Response(data, media_type=AUDIO_TYPES[body.format])

    @api.get("/health", tags=["server"])
    async def health() -> dict[str, Any]:
        """Liveness and load."""
        return {"status": "ok", "version": __version__, "queue": runner.pending, "streams": len(app.state.streams),
                "workers": len(runner.worker_pids()), "memory_reserved_bytes": runner.reserved}

    @api.get("/models", tags=["server"])
    async def models() -> dict[str, Any]:
        """Models loaded (and on which device) and the voices available."""
        from ..speech.synthesize import voices

        return {"device": device, "whisper_model": settings.whisper_model or "tiny.en (packaged)",
                "loaded": runner.loaded(), "voices": await asyncio.to_thread(voices)}  # it asks flite: a process

    openai = APIRouter(prefix="/v1/audio", dependencies=[Depends(authorize)], tags=["openai"])

    async def openai_transcription(task: str, file: UploadFile, language: str | None, prompt: str | None,
                                   response_format: str, temperature: float, granularities: list[str] | None,
                                   endpoint: str) -> Response:
        if response_format not in ("json", "text", "srt", "vtt", "verbose_json"):
            raise Problem(400, f"response_format {response_format!r} is not one of json, text, srt, vtt, "
                               "verbose_json", param="response_format")
        if not 0 <= temperature <= 1:
            raise Problem(400, "temperature must be within 0-1", param="temperature")
        if language is not None and not (language.isalpha() and len(language) <= 8):
            raise Problem(400, f"language must be a code such as 'en', got {language!r}", param="language")
        upload = await spool_upload_file(file, spool, settings.max_body_bytes)
        steps = [step("vad"), step("transcribe", model=settings.whisper_model, language=language, task=task,
                                   prompt=prompt, formats="json", temperature=temperature or None,
                                   word_timestamps=True)]
        answer = await process(upload, SPEECH, steps, endpoint, results=("transcribe",))
        result = answer["results"]["transcribe"]
        if response_format == "json":
            return SafeJSONResponse({"text": result["text"]})
        if response_format == "text":
            return PlainTextResponse(result["text"] + "\n")
        if response_format in ("srt", "vtt"):
            return _transcript_response(result, response_format)
        verbose: dict[str, Any] = {
            "task": task, "language": _language_name(result["language"]), "duration": result["duration"],
            "text": result["text"],
            "segments": [{"id": i, "seek": 0, "start": s["start"], "end": s["end"], "text": " " + s["text"],
                          "tokens": [], "temperature": temperature,
                          "avg_logprob": math.log(max(s.get("confidence") or 1e-9, 1e-9)),
                          "compression_ratio": 1.0, "no_speech_prob": s.get("no_speech_probability") or 0.0}
                         for i, s in enumerate(result["segments"])]}
        if granularities and "word" in granularities:
            verbose["words"] = [{"word": w["word"].strip(), "start": w["start"], "end": w["end"]}
                                for s in result["segments"] for w in s["words"]]
        return SafeJSONResponse(verbose)

    @openai.post("/transcriptions")
    async def transcriptions(file: Annotated[UploadFile, File()], model: Annotated[str, Form()] = "whisper-1",
                             language: Annotated[str | None, Form()] = None,
                             prompt: Annotated[str | None, Form(max_length=2000)] = None,
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
                           prompt: Annotated[str | None, Form(max_length=2000)] = None,
                           response_format: Annotated[str, Form()] = "json",
                           temperature: Annotated[float, Form()] = 0.0) -> Response:
        """OpenAI's translation endpoint: speech in any language to English text."""
        return await openai_transcription("translate", file, None, prompt, response_format, temperature, None,
                                          "/v1/audio/translations")

    @openai.post("/speech", responses={200: {"content": {t: {} for t in set(AUDIO_TYPES.values())}}})
    async def speech(body: SpeechBody) -> Response:
        """OpenAI's speech endpoint: ``input`` text to audio (OpenAI voice names map to the default voice)."""
        voice = _voice(None if body.voice in OPENAI_VOICES else body.voice)
        data = await runner.run("speak", _text(body.input), voice, body.speed, body.response_format, runner.limits,
                                what="synthesis")
        return Response(data, media_type=AUDIO_TYPES.get(body.response_format, "audio/mp4"))

    @app.get("/metrics", dependencies=[Depends(authorize)], tags=["server"],
             responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latencies, audio seconds processed, queue depth, memory reserved,
        open streams, worker restarts."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("audioflow.serve").joinpath("static/index.html").read_text())

    _add_docs(app)

    from .stream import register_stream

    register_stream(app, settings, runner, metrics)
    app.include_router(api)
    app.include_router(openai)
    return app


def _add_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle`` package's files, served here (no CDN: the page
    works offline and loads nothing from elsewhere); without that package, a page that links the spec."""
    try:
        import swagger_ui_bundle
    except ImportError:
        swagger_ui_bundle = None
    if swagger_ui_bundle is not None:
        from fastapi.openapi.docs import get_swagger_ui_html
        from fastapi.staticfiles import StaticFiles

        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="audioflow API",
                                       swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                       swagger_css_url="/docs-assets/swagger-ui.css",
                                       swagger_favicon_url="/docs-assets/favicon-32x32.png")
    else:
        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return HTMLResponse("<!doctype html><title>audioflow API</title><p>The OpenAPI spec: "
                                "<a href='/openapi.json'>/openapi.json</a> (pip install swagger-ui-bundle for "
                                "the interactive page).</p>")


# ---- helpers ----------------------------------------------------------------------------------------




def _text(text: str) -> str:
    """Text to speak: printable, with something to say (control characters would reach the TTS engines)."""
    cleaned = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text).strip()
    if not cleaned:
        raise Problem(400, "the text has nothing to say", param="text")
    return cleaned


def _voice(voice: str | None) -> str | None:
    """A client's voice choice: packaged Piper voices and the espeak/flite engines only (never a path)."""
    if voice is None or voice in ("joe", "piper:joe"):
        return voice
    engine, _, name = voice.partition(":")
    if engine in ("espeak", "flite") and name and all(c.isalnum() or c in "-+_" for c in name):
        return voice
    raise Problem(400, f"voice {voice!r}: use piper:joe, espeak:VOICE or flite:VOICE", param="voice")


def _transcript_response(result: dict[str, Any], fmt: str) -> Response:
    from ..speech.transcribe import Transcript

    if fmt == "json":
        return SafeJSONResponse(result)
    text = Transcript.from_dict(result).render(fmt)
    return PlainTextResponse(text, media_type=TEXT_TYPES[fmt])


def _language_name(code: str | None) -> str | None:
    names = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
             "pt": "portuguese", "ru": "russian", "zh": "chinese", "ja": "japanese"}
    return names.get(code or "", code)


class RedactKeys(logging.Filter):
    """Keys in URLs out of the logs: the server refuses ``?api_key=``, but uvicorn logs the request line
    of the refused attempt (and of any ``key``/``token`` query) before the app sees it."""

    pattern = re.compile(r"((?:api_key|apikey|key|token|access_token)=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.pattern.sub(r"\1REDACTED", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def serve(settings: ServeSettings) -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    app = create_app(settings)
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactKeys())
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                ws_max_size=settings.ws_max_message_bytes)


__all__ = ["RedactKeys", "create_app", "serve"]
