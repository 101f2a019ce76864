"""Audio endpoints: ``/v1/denoise``, ``/v1/separate``, ``/v1/enhance``, ``/v1/analyze`` and ``/v1/features``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ..jobs import Decode
from ..options import query_options
from ..responses import AUDIO_BODY, AUDIO_RESPONSES, AUDIO_TYPES, SafeJSONResponse
from ..work import step
from .common import NATIVE, audio_request, authorize

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)], tags=["audio"])
Options = dict[str, Any]
AudioFormat = Annotated[str, Query(pattern="^(wav|flac|opus|mp3)$", description="format of the audio returned")]


@router.post("/denoise", openapi_extra=AUDIO_BODY, responses=AUDIO_RESPONSES)
async def denoise(request: Request,
                  options: Annotated[Options, Depends(query_options("denoise", "method", "atten_lim"))],
                  format: AudioFormat = "wav") -> Response:
    """Denoised audio (DeepFilterNet3, RNNoise or spectral gating) in the format asked."""
    # mix=0: the answer is the denoised audio itself (the share of the original is for a recogniser after it)
    data = await audio_request(request, NATIVE, [step("denoise", options, write=False, mix="0")], "/v1/denoise",
                               audio_format=format)
    return Response(data, media_type=AUDIO_TYPES[format])


@router.post("/separate", openapi_extra=AUDIO_BODY,
             responses={200: {"content": {**AUDIO_RESPONSES[200]["content"], "application/zip": {}}}})
async def separate(request: Request,
                   options: Annotated[Options, Depends(query_options("separate", "model", "wiener"))],
                   stem: Annotated[str, Query(pattern="^(all|vocals|accompaniment)$",
                                              description="one stem as audio, or all: a zip of every stem "
                                                          "(vocals.FORMAT, accompaniment.FORMAT) and results.json "
                                                          "(each stem's loudness)")] = "all",
                   format: AudioFormat = "wav") -> Response:
    """Vocals and accompaniment (Spleeter 2-stem source separation)."""
    if stem == "all":
        data = await audio_request(request, NATIVE, [step("separate", {**options, "keep": "mix"}, write=False)],
                                   "/v1/separate", stems_format=format)
        return Response(data, media_type="application/zip",
                        headers={"content-disposition": 'attachment; filename="stems.zip"'})
    data = await audio_request(request, NATIVE, [step("separate", {**options, "keep": stem}, write=False)],
                               "/v1/separate", audio_format=format)
    return Response(data, media_type=AUDIO_TYPES[format])


@router.post("/enhance", openapi_extra=AUDIO_BODY, responses=AUDIO_RESPONSES)
async def enhance(request: Request,
                  options: Annotated[Options, Depends(query_options(
                      "enhance", "lufs", "true_peak", "highpass", "lowpass", "eq", "declick", "denoise", "denoise_db",
                      "preemphasis"))],
                  format: AudioFormat = "wav") -> Response:
    """Enhanced audio: the enhance stage's filters, EQ, de-click, spectral denoise, loudness and limiter."""
    data = await audio_request(request, NATIVE, [step("enhance", options, write=False)], "/v1/enhance",
                               audio_format=format)
    return Response(data, media_type=AUDIO_TYPES[format])


@router.post("/analyze", openapi_extra=AUDIO_BODY)
async def analyze(request: Request,
                  options: Annotated[Options, Depends(query_options("analyze", "music"))]) -> Response:
    """Measurements (loudness, peaks, SNR, silence, clipping) and, with music, tempo, beats, key, HPSS."""
    answer = await audio_request(request, NATIVE, [step("analyze", options)], "/v1/analyze", results=("analyze",))
    return SafeJSONResponse(answer["results"]["analyze"])


@router.post("/features", openapi_extra=AUDIO_BODY,
             responses={200: {"content": {"application/json": {}, "application/octet-stream": {}}}})
async def features(request: Request,
                   options: Annotated[Options, Depends(query_options("features", "name", "sr",
                                                                     defaults={"name": "log_mel"}))],
                   n_mels: Annotated[int | None, Query(ge=1, le=512, description="mel bands")] = None,
                   n_mfcc: Annotated[int | None, Query(ge=1, le=128, description="MFCC coefficients")] = None,
                   output: Annotated[str, Query(pattern="^(json|npy)$")] = "json") -> Response:
    """A feature of the audio (mixed to mono, resampled to ``sr``) as JSON or a .npy file."""
    kwargs = {k: v for k, v in (("n_mels", n_mels), ("n_mfcc", n_mfcc)) if v is not None}
    value = await audio_request(request, Decode(sr=options["sr"], mono=True), [], "/v1/features",
                                feature=(options["name"], kwargs), feature_output=output)
    if output == "npy":
        return Response(value, media_type="application/octet-stream")
    return SafeJSONResponse(value)
