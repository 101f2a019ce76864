"""Speech endpoints: ``/v1/transcribe``, ``/v1/diarize``, ``/v1/vad`` and ``/v1/synthesize``."""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from ..options import query_options
from ..responses import AUDIO_BODY, AUDIO_RESPONSES, AUDIO_TYPES, SafeJSONResponse, transcript_response
from ..work import step
from .common import SPEECH, audio_request, authorize, client_voice, runner_of, settings_of, text_to_say

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)], tags=["speech"])
Options = dict[str, Any]


class SynthesizeBody(BaseModel):
    text: str = Field(min_length=1, max_length=10000, description="what to say")
    voice: str | None = Field(None, max_length=100, description="piper:joe, espeak:VOICE or flite:VOICE")
    rate: float = Field(1.0, ge=0.25, le=4.0, description="speaking rate relative to the voice's pace")
    format: str = Field("wav", pattern="^(wav|flac|opus|mp3|pcm)$")


@router.post("/transcribe", openapi_extra=AUDIO_BODY,
             responses={200: {"content": {"application/json": {}, "text/plain": {}, "text/vtt": {}}}})
async def transcribe(request: Request,
                     options: Annotated[Options, Depends(query_options("transcribe", "language", "task",
                                                                       "word_timestamps", "beam_size"))],
                     diarize: Annotated[bool, Query(description="speaker-attributed transcript")] = False,
                     output: Annotated[str, Query(pattern="^(json|srt|vtt|txt)$")] = "json") -> Response:
    """Transcript (Whisper) with segments, words, language; JSON, SRT, VTT or plain text."""
    steps = [step("vad"), *([step("diarize", write=False)] if diarize else []),
             step("transcribe", options, model=settings_of(request).whisper_model, formats="json")]
    answer = await audio_request(request, SPEECH, steps, "/v1/transcribe", results=("transcribe",))
    return transcript_response(answer["results"]["transcribe"], output)


@router.post("/diarize", openapi_extra=AUDIO_BODY)
async def diarize(request: Request,
                  options: Annotated[Options, Depends(query_options("diarize", "num_speakers", "min_speakers",
                                                                    "max_speakers"))],
                  output: Annotated[str, Query(pattern="^(json|rttm)$")] = "json") -> Response:
    """Speaker turns (who spoke when) as JSON or RTTM."""
    steps = [step("vad"), step("diarize", options, write=False)]
    answer = await audio_request(request, SPEECH, steps, "/v1/diarize", results=("diarize",))
    result = answer["results"]["diarize"]
    if output == "rttm":
        from ...audio import Segment
        from ...speech.diarize import write_rttm

        text = io.StringIO()
        write_rttm([Segment(t["start"], t["end"], t["speaker"]) for t in result["turns"]], "upload", text)
        return PlainTextResponse(text.getvalue())
    return SafeJSONResponse(result)


@router.post("/vad", openapi_extra=AUDIO_BODY)
async def vad(request: Request,
              options: Annotated[Options, Depends(query_options("vad", "threshold", "min_speech", "min_silence"))]
              ) -> Response:
    """Speech segments (start, end, probability) and the speech ratio."""
    answer = await audio_request(request, SPEECH, [step("vad", options)], "/v1/vad", results=("vad",))
    return SafeJSONResponse(answer["results"]["vad"])


@router.post("/synthesize", responses=AUDIO_RESPONSES)
async def synthesize(request: Request, body: SynthesizeBody) -> Response:
    """Speech for text (Piper by default; espeak-ng and flite voices)."""
    runner = runner_of(request)
    data = await runner.run("speak", text_to_say(body.text), client_voice(body.voice), body.rate, body.format,
                            runner.limits, what="synthesis")
    return Response(data, media_type=AUDIO_TYPES[body.format])
