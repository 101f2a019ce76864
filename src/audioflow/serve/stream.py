"""``WS /v1/stream``: real-time speech events as audio arrives.

The client opens with a JSON config ``{"sample_rate": 16000, "encoding": "pcm_s16le"|"float32",
"tasks": ["vad", "transcribe", "enhance"], "language": null, "beam_size": 1}``, then sends binary audio frames (or JSON
``{"type": "audio", "audio_base64": ...}``), and ends with ``{"type": "end"}`` or by closing. The server
answers JSON events: ``ready``; ``speech_start`` / ``speech_end`` (streaming Silero VAD, the class the
``vad`` step uses); ``partial`` transcripts while an utterance goes on (about once a second, when a
worker is free) and a ``final`` one per utterance (the ``transcribe`` step on that utterance);
``error``; ``done``. With ``enhance``, denoised audio comes back as binary frames in the client's
encoding and rate (DeepFilterNet3, streamed)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from typing import Any

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from ..audio import Audio
from .inputs import Problem
from .settings import ServeSettings, key_accepted
from .work import Metrics, StageRunner, step

STREAM_TASKS = ("vad", "transcribe", "enhance")
ENCODINGS = {"pcm_s16le": ("<i2", 32768.0), "float32": ("<f4", 1.0)}
PARTIAL_EVERY_S = 1.0


class StreamSession:
    """One client's stream: its VAD state, its audio so far (16 kHz, for the utterances), its denoiser."""

    def __init__(self, config: dict[str, Any], settings: ServeSettings) -> None:
        from ..speech.vad import VAD_SR, SileroVAD

        rate = config.get("sample_rate", 16000)
        if not isinstance(rate, int) or not 8000 <= rate <= min(settings.max_sample_rate, 192000):
            raise Problem(400, f"sample_rate must be an integer 8000-{settings.max_sample_rate} Hz, got {rate!r}")
        encoding = config.get("encoding", "pcm_s16le")
        if encoding not in ENCODINGS:
            raise Problem(400, f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        tasks = config.get("tasks", ["vad", "transcribe"])
        if not isinstance(tasks, list) or not tasks or any(t not in STREAM_TASKS for t in tasks):
            raise Problem(400, f"tasks must be a list drawn from {', '.join(STREAM_TASKS)}, got {tasks!r}")
        language = config.get("language")
        if language is not None and (not isinstance(language, str) or not language.isalpha() or len(language) > 8):
            raise Problem(400, f"language must be a code such as 'en', got {language!r}")
        beam_size = config.get("beam_size", 1)  # greedy: finals in ~half the time of beam 5 (latency first)
        if not isinstance(beam_size, int) or not 1 <= beam_size <= 10:
            raise Problem(400, f"beam_size must be an integer 1-10, got {beam_size!r}")
        self.rate, self.encoding, self.tasks, self.language = rate, encoding, set(tasks), language
        self.beam_size = beam_size
        self.model = settings.whisper_model
        self.vad = SileroVAD(min_silence=0.2, speech_pad=0.1)
        self.vad_rate = VAD_SR
        self.heard = np.zeros(0, np.float32)  # 16 kHz audio since the start (trimmed before open speech)
        self.heard_offset = 0.0  # stream time of heard[0], seconds
        self.received_seconds = 0.0
        self.open_since: float | None = None
        self.last_partial = 0.0
        self.partial_running = False
        self.denoise = None
        if "enhance" in self.tasks:
            from ..speech.denoise import DeepFilterNet, DenoiseStream

            self.denoise = DenoiseStream(DeepFilterNet(), rate)
        if rate != VAD_SR:
            import soxr

            self.to_16k = soxr.ResampleStream(rate, VAD_SR, 1, dtype="float32")
        else:
            self.to_16k = None

    def samples(self, frame: bytes) -> np.ndarray:
        dtype, scale = ENCODINGS[self.encoding]
        if len(frame) % np.dtype(dtype).itemsize:
            raise Problem(400, f"a {self.encoding} frame must hold whole samples ({len(frame)} bytes)")
        x = np.frombuffer(frame, dtype).astype(np.float32) / np.float32(scale)
        if not np.isfinite(x).all():
            raise Problem(400, "audio frame holds NaN or infinite samples")
        return x

    def encode(self, x: np.ndarray) -> bytes:
        dtype = ENCODINGS[self.encoding][0]
        if self.encoding == "pcm_s16le":
            return (np.clip(x, -1, 1) * 32767).astype(dtype).tobytes()
        return x.astype(dtype).tobytes()

    def hear(self, x: np.ndarray, last: bool = False) -> list[Any]:
        """Feed client-rate samples; VAD events decided so far."""
        y = self.to_16k.resample_chunk(x, last=last) if self.to_16k is not None else x
        self.heard = np.concatenate([self.heard, y])
        events = self.vad.accept(y) if len(y) else []
        if last:
            events += self.vad.flush()
        if self.open_since is None and not any(e.type == "speech_start" for e in events):
            keep = 2 * self.vad_rate  # nothing open: only the last 2 s can still belong to an utterance
            if len(self.heard) > keep:
                self.heard_offset += (len(self.heard) - keep) / self.vad_rate
                self.heard = self.heard[-keep:]
        return events

    def clip(self, start: float, end: float) -> Audio:
        a = max(0, round((start - self.heard_offset) * self.vad_rate))
        b = max(a, round((end - self.heard_offset) * self.vad_rate))
        return Audio(self.heard[a:b].copy(), self.vad_rate, "stream")

    @property
    def now(self) -> float:
        return self.heard_offset + len(self.heard) / self.vad_rate


def register_stream(app: FastAPI, settings: ServeSettings, runner: StageRunner, metrics: Metrics) -> None:
    streams: dict[int, str] = app.state.streams

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        client = websocket.client.host if websocket.client else "?"
        if not key_accepted(settings, websocket.headers, websocket.query_params.get("api_key")):
            await websocket.close(code=4401, reason="missing or wrong API key")
            return
        if sum(1 for c in streams.values() if c == client) >= settings.max_streams_per_client:
            await websocket.close(code=4429, reason=f"at most {settings.max_streams_per_client} streams per client")
            return
        await websocket.accept()
        streams[id(websocket)] = client
        metrics.streams.set(len(streams))
        session: StreamSession | None = None
        finals: list[asyncio.Task] = []
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data, text = message.get("bytes"), message.get("text")
                size = len(data) if data is not None else len((text or "").encode())
                if size > settings.ws_max_message_bytes:
                    await _error(websocket, f"message of {size} bytes is over {settings.ws_max_message_bytes}")
                    break
                if session is None:
                    try:
                        session = StreamSession(json.loads(text or "{}"), settings)
                    except (Problem, ValueError) as e:
                        await _error(websocket, getattr(e, "message", None) or f"config does not parse: {e}")
                        break
                    await websocket.send_json({"type": "ready", "sample_rate": session.rate,
                                               "encoding": session.encoding, "tasks": sorted(session.tasks)})
                    continue
                last = False
                if text is not None:
                    try:
                        payload = json.loads(text)
                    except ValueError:
                        await _error(websocket, "a text message must be JSON")
                        continue
                    if payload.get("type") == "end":
                        last, data = True, b""
                    elif payload.get("type") == "audio":
                        try:
                            data = base64.b64decode(payload.get("audio_base64", ""), validate=True)
                        except (binascii.Error, ValueError):
                            await _error(websocket, "audio_base64 is not valid base64")
                            continue
                    else:
                        await _error(websocket, "text messages are {'type': 'audio'|'end'}")
                        continue
                try:
                    x = session.samples(data or b"")
                except Problem as e:
                    await _error(websocket, e.message)
                    continue
                session.received_seconds += len(x) / session.rate
                if session.received_seconds > settings.ws_max_stream_seconds:
                    await _error(websocket, f"stream over {settings.ws_max_stream_seconds:.0f} s of audio")
                    break
                await _handle(websocket, session, x, last, runner, metrics, finals)
                if last:
                    break
            if session is not None and finals:
                await asyncio.gather(*finals, return_exceptions=True)
            if session is not None:
                await websocket.send_json({"type": "done", "seconds": round(session.received_seconds, 3)})
                await websocket.close()
        except WebSocketDisconnect:
            pass
        except RuntimeError:  # the client went away while we were answering
            pass
        finally:
            for task in finals:
                task.cancel()
            streams.pop(id(websocket), None)
            metrics.streams.set(len(streams))
            if session is not None:
                metrics.audio_seconds.labels("/v1/stream").inc(session.received_seconds)


async def _error(websocket: WebSocket, message: str) -> None:
    with contextlib.suppress(RuntimeError):  # the client is gone
        await websocket.send_json({"type": "error", "message": message})


async def _handle(websocket: WebSocket, session: StreamSession, x: np.ndarray, last: bool, runner: StageRunner,
                  metrics: Metrics, finals: list[asyncio.Task]) -> None:
    if session.denoise is not None:
        cleaned = session.denoise.flush() if last and not len(x) else session.denoise.accept(x, last=last)
        if len(cleaned):
            await websocket.send_bytes(session.encode(cleaned))
    transcribing = "transcribe" in session.tasks
    for event in session.hear(x, last):
        if event.type == "speech_start":
            session.open_since, session.last_partial = event.time, event.time
        if "vad" in session.tasks or event.type == "speech_start" or event.segment is not None:
            await websocket.send_json(event.to_dict())
        if event.type == "speech_end":
            session.open_since = None
            if transcribing and event.segment is not None:
                clip = session.clip(event.segment.start, event.segment.end)
                finals.append(asyncio.create_task(_final(websocket, session, clip, event.segment.start, runner)))
    if (transcribing and session.open_since is not None and not session.partial_running
            and session.now - session.last_partial >= PARTIAL_EVERY_S and runner.pending < runner.queue_limit // 2):
        session.partial_running, session.last_partial = True, session.now
        finals.append(asyncio.create_task(_partial(websocket, session, session.clip(session.open_since, session.now),
                                     session.open_since, runner)))


def _transcribe_steps(session: StreamSession, beam_size: int) -> list[tuple[str, dict[str, Any]]]:
    return [step("transcribe", formats="json", beam_size=beam_size, language=session.language, model=session.model)]


async def _final(websocket: WebSocket, session: StreamSession, clip: Audio, start: float, runner: StageRunner) -> None:
    known = {"vad": {"segments": [{"start": 0.0, "end": clip.duration}]}}
    try:
        _, annotations = await runner.call(runner.run_steps, clip, _transcribe_steps(session, session.beam_size), known)
    except Problem as e:
        await _error(websocket, f"transcription failed: {e.message}")
        return
    result = annotations.results["transcribe"]
    words = [{**w, "start": round(w["start"] + start, 3), "end": round(w["end"] + start, 3)}
             for s in result["segments"] for w in s["words"]]
    with contextlib.suppress(RuntimeError):
        await websocket.send_json({"type": "final", "start": round(start, 3), "end": round(start + clip.duration, 3),
                                   "text": result["text"], "words": words})


async def _partial(websocket: WebSocket, session: StreamSession, clip: Audio, start: float,
                   runner: StageRunner) -> None:
    known = {"vad": {"segments": [{"start": 0.0, "end": clip.duration}]}}
    try:
        _, annotations = await runner.call(runner.run_steps, clip, _transcribe_steps(session, 1), known)
        if session.open_since == start:  # still the same utterance: a final may already have been sent
            await websocket.send_json({"type": "partial", "start": round(start, 3),
                                       "end": round(start + clip.duration, 3),
                                       "text": annotations.results["transcribe"]["text"]})
    except (Problem, RuntimeError):
        pass
    finally:
        session.partial_running = False
