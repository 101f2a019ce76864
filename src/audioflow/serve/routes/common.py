"""What every endpoint needs: the API key check, the request's audio spooled to a file, and the run of
the pipeline's stages on it in a worker process (through the app's :class:`StageRunner`)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request

from ...pipeline.stage import check_installed
from ..inputs import (
    Problem,
    Spool,
    Upload,
    decode_base64,
    fetch_url,
    read_json,
    spool_bytes,
    spool_stream,
    spool_upload_file,
)
from ..jobs import Decode
from ..settings import ServeSettings, key_accepted
from ..work import StageRunner

SPEECH = Decode(sr=16000, mono=True)  # what every speech model takes: decoded straight to it
NATIVE = Decode()
Steps = list[tuple[str, dict[str, Any]]]


def settings_of(request: Request) -> ServeSettings:
    return request.app.state.settings


def runner_of(request: Request) -> StageRunner:
    return request.app.state.runner


def spool_of(request: Request) -> Spool:
    return request.app.state.spool


def authorize(request: Request) -> None:
    """A dependency: the request carries an accepted API key (when the server has keys)."""
    if not key_accepted(settings_of(request), request.headers):
        raise Problem(401, "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key)",
                      kind="authentication_error", headers={"WWW-Authenticate": "Bearer"})


async def receive_audio(request: Request) -> Upload:
    """The request's audio (any of the accepted forms), spooled to a file as it arrives (up to the body limit
    of its path)."""
    settings, spool = settings_of(request), spool_of(request)
    limit = settings.body_limit(request.url.path)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=50)
        try:
            upload = form.get("file") or form.get("audio")
            if upload is None or isinstance(upload, str):
                raise Problem(400, "multipart upload needs a 'file' part", param="file")
            return await spool_upload_file(upload, spool, limit)
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
    # Any other body is the audio itself, whatever its type says: `curl --data-binary @talk.wav` labels it
    # application/x-www-form-urlencoded. The decoder answers 415 when the bytes are not audio.
    return await spool_stream(request.stream(), spool, limit, "upload")


async def process(runner: StageRunner, upload: Upload, decode: Decode, steps: Steps, endpoint: str,
                  **answer: Any) -> Any:
    """``steps`` on the spooled ``upload`` in a worker; the upload's file is removed afterwards."""
    try:
        if upload.size == 0:
            raise Problem(400, "no audio in the request (send a file, a raw audio body, or audio_base64)",
                          param="file")
        return await runner.process(upload, decode, steps, endpoint, **answer)
    finally:
        upload.discard()


async def audio_request(request: Request, decode: Decode, steps: Steps, endpoint: str, **answer: Any) -> Any:
    """The request's audio through ``steps`` (each step's extra checked before the body is read: 501)."""
    for name, options in steps:
        check_installed(name, options)
    return await process(runner_of(request), await receive_audio(request), decode, steps, endpoint, **answer)


def text_to_say(text: str) -> str:
    """Text to speak: printable, with something to say (control characters would reach the TTS engines)."""
    cleaned = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text).strip()
    if not cleaned:
        raise Problem(400, "the text has nothing to say", param="text")
    return cleaned


def client_voice(voice: str | None) -> str | None:
    """A client's voice choice: packaged Piper voices and the espeak/flite engines only (never a path)."""
    if voice is None or voice in ("joe", "piper:joe"):
        return voice
    engine, _, name = voice.partition(":")
    if engine in ("espeak", "flite") and name and all(c.isalnum() or c in "-+_" for c in name):
        return voice
    raise Problem(400, f"voice {voice!r}: use piper:joe, espeak:VOICE or flite:VOICE", param="voice")
