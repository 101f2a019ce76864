"""What the endpoints answer with: JSON that is always valid, audio and text media types, transcripts."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response

AUDIO_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg", "ogg": "audio/ogg",
               "mp3": "audio/mpeg", "pcm": "audio/L16"}
TEXT_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt", "txt": "text/plain", "rttm": "text/plain"}
# the request body every audio endpoint accepts, for the OpenAPI schema (the route reads it itself)
AUDIO_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string",
                                                                                "format": "binary"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object", "properties": {
        "audio_base64": {"type": "string", "description": "the audio file's bytes in base64"},
        "url": {"type": "string", "description": "http(s) URL of the audio (when the server allows URLs)"}}}},
}}}
AUDIO_RESPONSES = {200: {"content": {t: {} for t in set(AUDIO_TYPES.values())}}}


class SafeJSONResponse(JSONResponse):
    """JSON that is always valid: a non-finite float (which JSON cannot hold) becomes null."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        except ValueError:
            return json.dumps(finite(content), ensure_ascii=False, separators=(",", ":")).encode()


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def transcript_response(result: dict[str, Any], fmt: str) -> Response:
    """A transcribe result as JSON, or rendered as SRT, VTT or plain text."""
    from ..speech.transcribe import Transcript

    if fmt == "json":
        return SafeJSONResponse(result)
    return PlainTextResponse(Transcript.from_dict(result).render(fmt), media_type=TEXT_TYPES[fmt])
