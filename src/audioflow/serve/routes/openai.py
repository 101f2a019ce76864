"""OpenAI's audio endpoints: ``/v1/audio/transcriptions``, ``/v1/audio/translations`` and ``/v1/audio/speech``,
answered by this server's Whisper and voices, so OpenAI's clients work against it unchanged."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from ...pipeline import STAGES
from ...pipeline.stage import check_installed
from ..inputs import Problem, spool_upload_file
from ..responses import AUDIO_RESPONSES, AUDIO_TYPES, SafeJSONResponse, transcript_response
from ..work import step
from .common import SPEECH, authorize, client_voice, process, runner_of, settings_of, spool_of, text_to_say

router = APIRouter(prefix="/v1/audio", dependencies=[Depends(authorize)], tags=["openai"])
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
_LANGUAGES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
              "pt": "portuguese", "ru": "russian", "zh": "chinese", "ja": "japanese"}


class SpeechBody(BaseModel):
    model: str = Field("tts-1", max_length=100)
    input: str = Field(min_length=1, max_length=4096)
    voice: str = Field("alloy", max_length=100)
    response_format: str = Field("mp3", pattern="^(mp3|opus|aac|flac|wav|pcm)$")
    speed: float = Field(1.0, ge=0.25, le=4.0)


async def openai_transcription(request: Request, task: str, file: UploadFile, language: str | None,
                               prompt: str | None, response_format: str, temperature: float,
                               granularities: list[str] | None, endpoint: str) -> Response:
    if response_format not in ("json", "text", "srt", "vtt", "verbose_json"):
        raise Problem(400, f"response_format {response_format!r} is not one of json, text, srt, vtt, "
                           "verbose_json", param="response_format")
    # OpenAI's form fields, checked by the transcribe stage's own declarations (answered as OpenAI does: 400)
    options = STAGES.find("transcribe").options
    for name, value in (("temperature", temperature), ("language", language), ("prompt", prompt)):
        try:
            options[name].convert(value, name)
        except Exception as e:
            raise Problem(400, str(e), param=name) from None
    steps = [step("vad"), step("transcribe", model=settings_of(request).whisper_model, language=language, task=task,
                               prompt=prompt, formats="json", temperature=temperature or None, word_timestamps=True)]
    for name, stage_options in steps:  # a missing extra: 501 naming it, before the upload is spooled
        check_installed(name, stage_options)
    upload = await spool_upload_file(file, spool_of(request), settings_of(request).max_body_bytes)
    answer = await process(runner_of(request), upload, SPEECH, steps, endpoint, results=("transcribe",))
    result = answer["results"]["transcribe"]
    if response_format == "json":
        return SafeJSONResponse({"text": result["text"]})
    if response_format == "text":
        return PlainTextResponse(result["text"] + "\n")
    if response_format in ("srt", "vtt"):
        return transcript_response(result, response_format)
    verbose: dict[str, Any] = {
        "task": task, "language": _LANGUAGES.get(result["language"] or "", result["language"]),
        "duration": result["duration"], "text": result["text"],
        "segments": [{"id": i, "seek": 0, "start": s["start"], "end": s["end"], "text": " " + s["text"],
                      "tokens": [], "temperature": temperature,
                      "avg_logprob": math.log(max(s.get("confidence") or 1e-9, 1e-9)),
                      "compression_ratio": 1.0, "no_speech_prob": s.get("no_speech_probability") or 0.0}
                     for i, s in enumerate(result["segments"])]}
    if granularities and "word" in granularities:
        verbose["words"] = [{"word": w["word"].strip(), "start": w["start"], "end": w["end"]}
                            for s in result["segments"] for w in s["words"]]
    return SafeJSONResponse(verbose)


@router.post("/transcriptions")
async def transcriptions(request: Request, file: Annotated[UploadFile, File()],
                         model: Annotated[str, Form()] = "whisper-1",
                         language: Annotated[str | None, Form()] = None,
                         prompt: Annotated[str | None, Form(max_length=2000)] = None,
                         response_format: Annotated[str, Form()] = "json",
                         temperature: Annotated[float, Form()] = 0.0,
                         timestamp_granularities: Annotated[list[str] | None,
                                                            Form(alias="timestamp_granularities[]")] = None
                         ) -> Response:
    """OpenAI's transcription endpoint (any model name maps to this server's Whisper model)."""
    return await openai_transcription(request, "transcribe", file, language, prompt, response_format, temperature,
                                      timestamp_granularities, "/v1/audio/transcriptions")


@router.post("/translations")
async def translations(request: Request, file: Annotated[UploadFile, File()],
                       model: Annotated[str, Form()] = "whisper-1",
                       prompt: Annotated[str | None, Form(max_length=2000)] = None,
                       response_format: Annotated[str, Form()] = "json",
                       temperature: Annotated[float, Form()] = 0.0) -> Response:
    """OpenAI's translation endpoint: speech in any language to English text."""
    return await openai_transcription(request, "translate", file, None, prompt, response_format, temperature, None,
                                      "/v1/audio/translations")


@router.post("/speech", responses=AUDIO_RESPONSES)
async def speech(request: Request, body: SpeechBody) -> Response:
    """OpenAI's speech endpoint: ``input`` text to audio (OpenAI voice names map to the default voice)."""
    runner = runner_of(request)
    voice = client_voice(None if body.voice in OPENAI_VOICES else body.voice)
    data = await runner.run("speak", text_to_say(body.input), voice, body.speed, body.response_format, runner.limits,
                            what="synthesis")
    return Response(data, media_type=AUDIO_TYPES.get(body.response_format, "audio/mp4"))
