"""``WS /v1/stream``: real-time speech events as audio arrives.

The client opens with a JSON config ``{"sample_rate": 16000, "encoding": "pcm_s16le"|"float32",
"tasks": ["vad", "transcribe", "enhance"], "language": null, "beam_size": 1, "api_key": "..."}`` (the key
only when the server has keys and the client cannot send an ``Authorization`` or ``X-API-Key`` header, as
browsers cannot), then sends binary audio frames (or JSON ``{"type": "audio", "audio_base64": ...}``), and
ends with ``{"type": "end"}`` or by closing. The server answers JSON events: ``ready``; ``speech_start`` /
``speech_end`` (streaming Silero VAD, the class the ``vad`` step uses); ``partial`` transcripts while an
utterance goes on (about once a second, when a worker is free) and a ``final`` one per utterance (the
``transcribe`` step on that utterance); ``error``; ``done``. With ``enhance``, denoised audio comes back as
binary frames in the client's encoding and rate (DeepFilterNet3, streamed). With ``speakers``, each
``speech_end`` and ``final`` carries a ``speaker`` label ('SPEAKER_00', ...): online clustering of each
utterance's CAM++ embedding against the speakers heard so far (:class:`~audioflow.speech.diarize.OnlineSpeakers`;
a label once given stays); and where the voice changes inside speech (pyannote's segmentation,
:class:`~audioflow.speech.diarize.SpeakerChanges`), a ``speaker_change`` event (time, start, end, speaker of
the speech before it) ends the speech so far as a final of its own, so no final holds two people.

The models and their state live in one worker process (:class:`StreamState`); the handler here only moves
messages, so a stream never holds up the event loop. Close codes: 1000 done, 1008 a protocol violation,
1009 a message too large, 1011 the stream's worker was lost, 4401 no or wrong key, 4403 a foreign origin,
4408 idle past ``ws_idle_timeout``, 4429 too many streams."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import uuid
from typing import Any

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from .inputs import Problem
from .settings import ServeSettings, matching_key, owner_of
from .work import Metrics, StageRunner, step

STREAM_TASKS = ("vad", "transcribe", "enhance", "speakers")
ENCODINGS = {"pcm_s16le": ("<i2", 32768.0), "float32": ("<f4", 1.0)}
PARTIAL_EVERY_S = 1.0
CHANGE_EVERY_S = 0.25  # with speakers: how often open speech is searched for a change of voice, stream seconds
# a change of voice found later than this after it happened does not end a final (its caption would come late)
MAX_SPLIT_AGE_S = 1.0


def parse_config(config: Any, settings: ServeSettings) -> dict[str, Any]:
    """The client's opening message, checked: ``sample_rate``, ``encoding``, ``tasks``, ``language``,
    ``beam_size`` (400-style messages for anything else)."""
    if not isinstance(config, dict):
        raise Problem(400, "the first message must be a JSON object with the stream's config")
    rate = config.get("sample_rate", 16000)
    low, high = max(8000, settings.min_sample_rate), min(settings.max_sample_rate, 192000)
    if isinstance(rate, bool) or not isinstance(rate, int) or not low <= rate <= high:
        raise Problem(400, f"sample_rate must be an integer {low}-{high} Hz, got {rate!r}")
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
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or not 1 <= beam_size <= 10:
        raise Problem(400, f"beam_size must be an integer 1-10, got {beam_size!r}")
    return {"sample_rate": rate, "encoding": encoding, "tasks": sorted(set(tasks)), "language": language,
            "beam_size": beam_size}


def samples_of(frame: bytes, encoding: str) -> np.ndarray:
    """A binary frame's samples as float32 (400-style messages for partial samples or NaN/Inf)."""
    dtype, scale = ENCODINGS[encoding]
    if len(frame) % np.dtype(dtype).itemsize:
        raise Problem(400, f"a {encoding} frame must hold whole samples ({len(frame)} bytes)")
    x = np.frombuffer(frame, dtype).astype(np.float32) / np.float32(scale)
    if not np.isfinite(x).all():
        raise Problem(400, "audio frame holds NaN or infinite samples")
    if len(x) and float(np.abs(x).max()) > 1e6:
        raise Problem(400, "audio frame holds samples beyond ±1e6: send audio within about ±1")
    return x


class StreamState:
    """One client's stream, in a worker process: its VAD state, its audio so far (16 kHz, for the
    utterances), its denoiser. :meth:`feed` takes client-rate samples and returns what to tell the client
    and which utterances to transcribe."""

    def __init__(self, config: dict[str, Any]) -> None:
        import time

        from ..speech.vad import VAD_SR, SileroVAD

        self.rate, self.encoding, self.tasks = config["sample_rate"], config["encoding"], set(config["tasks"])
        self.vad = SileroVAD(min_silence=0.2, speech_pad=0.1)
        self.vad_rate = VAD_SR
        self.heard = np.zeros(0, np.float32)  # 16 kHz audio since the start (trimmed before open speech)
        self.heard_offset = 0.0  # stream time of heard[0], seconds
        self.open_since: float | None = None
        self.used = time.monotonic()
        self.denoise = None
        self.speakers = None
        self.changes = None
        self.checked_at = 0.0  # stream time of the last look for a change of voice, seconds
        self.split_at: float | None = None  # the last change of voice inside the open speech, seconds
        if "speakers" in self.tasks:
            from ..speech.diarize import Diarizer, OnlineSpeakers, SpeakerChanges
            from .jobs import models

            # the diarize stage's models, under its key: one CAM++ and segmentation per worker process
            diarizer = models().get("diarizer", lambda device: Diarizer(device=device))
            self.speakers = OnlineSpeakers(diarizer.encoder)
            self.changes = SpeakerChanges(diarizer.segmenter)
        if "enhance" in self.tasks:
            from ..speech.denoise import DeepFilterNet, DenoiseStream

            self.denoise = DenoiseStream(DeepFilterNet(), self.rate)
        if self.rate != VAD_SR:
            import soxr

            self.to_16k = soxr.ResampleStream(self.rate, VAD_SR, 1, dtype="float32")
        else:
            self.to_16k = None

    @property
    def now(self) -> float:
        return self.heard_offset + len(self.heard) / self.vad_rate

    def feed(self, x: np.ndarray, last: bool, want_partial: bool) -> dict[str, Any]:
        """Events decided so far, denoised audio (bytes in the client's encoding), the finished utterances
        ``[(start s, 16 kHz samples, speaker or None)]`` and, when asked and speech is open, the open one so
        far."""
        answer: dict[str, Any] = {"events": [], "audio": b"", "finals": [], "partial": None}
        if self.denoise is not None:
            cleaned = self.denoise.flush() if last and not len(x) else self.denoise.accept(x, last=last)
            answer["audio"] = self._encode(cleaned) if len(cleaned) else b""
        y = self.to_16k.resample_chunk(x, last=last) if self.to_16k is not None else x
        self.heard = np.concatenate([self.heard, y])
        events = self.vad.accept(y) if len(y) else []
        if last:
            events += self.vad.flush()
        for event in events:
            if event.type == "speech_start":
                self.open_since = event.time
            described = event.to_dict()
            answer["events"].append(described)
            if event.type == "speech_end":
                if event.segment is not None:
                    # from the last change of voice inside this speech (the final before it ended there)
                    start = self.split_at if self.split_at is not None else event.segment.start
                    utterance = self._clip(start, event.segment.end)
                    speaker = self.speakers.label(utterance) if self.speakers is not None else None
                    if speaker is not None:
                        described["speaker"] = speaker
                    answer["finals"].append((start, utterance, speaker))
                self.open_since = self.split_at = None
        if self.open_since is not None and self.changes is not None and self.now - self.checked_at >= CHANGE_EVERY_S:
            answer["events"] += self._split_at_a_change(answer["finals"])
        if self.open_since is None:
            keep = 2 * self.vad_rate  # nothing open: only the last 2 s can still belong to an utterance
            if len(self.heard) > keep:
                self.heard_offset += (len(self.heard) - keep) / self.vad_rate
                self.heard = self.heard[-keep:]
        elif want_partial:
            answer["partial"] = (self.open_since, self._clip(self.open_since, self.now))
        answer["now"], answer["open_since"] = self.now, self.open_since
        return answer

    def _split_at_a_change(self, finals: list) -> list[dict[str, Any]]:
        """While speech goes on: where the voice changes inside it, the speech so far ends as a final of its
        own speaker (a ``speaker_change`` event) and the open speech starts again at the change."""
        self.checked_at = self.now
        since = self.split_at if self.split_at is not None else self.open_since
        heard_from = max(self.heard_offset, self.now - self.changes.context)
        change = self.changes.first_change(self._clip(heard_from, self.now), since - heard_from, MAX_SPLIT_AGE_S)
        if change is None:
            return []
        at = round(heard_from + change, 3)
        utterance = self._clip(since, at)
        speaker = self.speakers.label(utterance)
        finals.append((since, utterance, speaker))
        self.open_since = self.split_at = at
        return [{"type": "speaker_change", "time": at, "start": round(since, 3), "end": at,
                 **({"speaker": speaker} if speaker is not None else {})}]

    def _clip(self, start: float, end: float) -> np.ndarray:
        a = max(0, round((start - self.heard_offset) * self.vad_rate))
        b = max(a, round((end - self.heard_offset) * self.vad_rate))
        return self.heard[a:b].copy()

    def _encode(self, x: np.ndarray) -> bytes:
        dtype = ENCODINGS[self.encoding][0]
        if self.encoding == "pcm_s16le":
            return (np.clip(x, -1, 1) * 32767).astype(dtype).tobytes()
        return x.astype(dtype).tobytes()


class _Closed(Exception):
    """The stream ends with this close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def register_stream(app: FastAPI, settings: ServeSettings, runner: StageRunner, metrics: Metrics) -> None:
    streams: dict[int, str | None] = app.state.streams

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        client = websocket.client.host if websocket.client else "?"
        # accepted first, so that a refusal reaches the client as a close code it can read (a close before
        # the handshake is only an HTTP 403)
        await websocket.accept()
        try:
            _check_origin(websocket, settings)
            if len(streams) >= settings.max_streams:
                raise _Closed(4429, f"the server has {settings.max_streams} streams open; retry shortly")
        except _Closed as closed:
            await _close(websocket, closed.code, closed.reason)
            return
        streams[id(websocket)] = None  # whose it is: known when its config (and key) arrives
        metrics.streams.set(len(streams))
        session = _Session(websocket, settings, runner, streams, client)
        try:
            await session.run()
            await _close(websocket, 1000, "done")
        except _Closed as closed:
            with contextlib.suppress(RuntimeError):
                await websocket.send_json({"type": "error", "message": closed.reason})
            await _close(websocket, closed.code, closed.reason)
        except (WebSocketDisconnect, RuntimeError):  # the client went away while we were answering
            pass
        finally:
            streams.pop(id(websocket), None)  # the slot is free from here, before the worker hears of it
            metrics.streams.set(len(streams))
            metrics.audio_seconds.labels("/v1/stream").inc(session.received_seconds)
            await session.close()


def _check_origin(websocket: WebSocket, settings: ServeSettings) -> None:
    host = websocket.headers.get("host", "")
    if not settings.host_allowed(host):
        raise _Closed(4403, f"host {host!r} is not this server's")
    if not settings.origin_allowed(websocket.headers.get("origin"), host):
        raise _Closed(4403, "this origin may not open streams (the operator can allow it)")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code=code, reason=reason[:120])


class _Session:
    """The handler's side of one stream: reads messages, sends them to the stream's worker, answers."""

    def __init__(self, websocket: WebSocket, settings: ServeSettings, runner: StageRunner,
                 streams: dict[int, str | None], address: str) -> None:
        self.websocket, self.settings, self.runner = websocket, settings, runner
        self.streams, self.address = streams, address
        self.config: dict[str, Any] | None = None
        self.id = uuid.uuid4().hex
        self.worker: int | None = None
        self.received_seconds = self.fed_seconds = 0.0
        self.open_since: float | None = None
        self.last_partial = 0.0
        self.partial_running = False
        self.transcripts: list[asyncio.Task] = []

    async def receive(self) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self.websocket.receive(), self.settings.ws_idle_timeout)
        except asyncio.TimeoutError:
            raise _Closed(4408, f"no message for {self.settings.ws_idle_timeout:g} s") from None

    async def run(self) -> None:
        """The config, then audio until 'end': one task reads messages as they come (so the WebSocket's pings
        are always answered and a client that leaves is noticed at once), another feeds the worker with all
        the audio waiting at each turn (a client faster than the worker gets bigger blocks, a 'slow_down'
        event past half of ``ws_max_backlog_seconds`` and a close 1008 past all of it)."""
        while self.config is None:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            self._check_size(message)
            await self.open(message.get("text"))
        self.waiting: list[np.ndarray] = []
        self.waiting_seconds, self.ended, self.warned = 0.0, False, False
        self.arrived = asyncio.Event()
        reader, feeder = asyncio.create_task(self._read()), asyncio.create_task(self._feed_waiting())
        done, _ = await asyncio.wait({reader, feeder}, return_when=asyncio.FIRST_COMPLETED)
        if feeder not in done and reader.exception() is None:  # 'end' came: the audio still waiting is fed
            await asyncio.wait({feeder})
        for task in (reader, feeder):
            task.cancel()
        await asyncio.gather(reader, feeder, return_exceptions=True)
        for task in (reader, feeder):  # the reader's error first: a client that left explains the rest
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self.transcripts:
            await asyncio.gather(*self.transcripts, return_exceptions=True)
        await self.websocket.send_json({"type": "done", "seconds": round(self.received_seconds, 3)})

    def _check_size(self, message: dict[str, Any]) -> None:
        data, text = message.get("bytes"), message.get("text")
        size = len(data) if data is not None else len((text or "").encode())
        if size > self.settings.ws_max_message_bytes:
            raise _Closed(1009, f"message of {size} bytes is over {self.settings.ws_max_message_bytes}")

    async def _read(self) -> None:
        """Messages into the waiting audio until 'end' (or an error, or the client leaving)."""
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            self._check_size(message)
            data, text = message.get("bytes"), message.get("text")
            last = False
            if text is not None:
                payload = _json_object(text)
                if payload is None:
                    await self.error("text messages are JSON objects: {'type': 'audio'|'end'}")
                    continue
                if payload.get("type") == "end":
                    last, data = True, b""
                elif payload.get("type") == "audio":
                    try:
                        data = base64.b64decode(payload.get("audio_base64") or "", validate=True)
                    except (binascii.Error, ValueError, TypeError):
                        await self.error("audio_base64 is not valid base64")
                        continue
                else:
                    await self.error("text messages are {'type': 'audio'|'end'}")
                    continue
            try:
                x = samples_of(data or b"", self.config["encoding"])
            except Problem as e:
                await self.error(e.message)
                continue
            seconds = len(x) / self.config["sample_rate"]
            self.received_seconds += seconds
            if self.received_seconds > self.settings.ws_max_stream_seconds:
                raise _Closed(1008, f"stream over {self.settings.ws_max_stream_seconds:.0f} s of audio")
            self.waiting.append(x)
            self.waiting_seconds += seconds
            await self._check_backlog()
            if last:
                self.ended = True
            self.arrived.set()
            if last:
                return

    async def _check_backlog(self) -> None:
        limit = self.settings.ws_max_backlog_seconds
        if self.waiting_seconds > limit:
            raise _Closed(1008, f"audio arrives faster than this stream is processed: {self.waiting_seconds:.0f} s "
                                f"waiting, at most {limit:g} s (send it at real time, or use POST /v1/jobs)")
        if self.waiting_seconds > limit / 2 and not self.warned:
            self.warned = True
            with contextlib.suppress(RuntimeError):
                await self.websocket.send_json({"type": "slow_down", "waiting_seconds": round(self.waiting_seconds, 3),
                                                "max_waiting_seconds": limit})
        elif self.waiting_seconds < limit / 4:
            self.warned = False

    async def _feed_waiting(self) -> None:
        """All the audio waiting, to the worker, turn after turn, until the last of it."""
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            blocks, last = self.waiting, self.ended
            self.waiting, self.waiting_seconds = [], 0.0
            x = np.concatenate(blocks) if len(blocks) > 1 else blocks[0] if blocks else np.zeros(0, np.float32)
            await self.feed(x, last)
            if last:
                return
            if self.waiting or self.ended:
                self.arrived.set()

    async def open(self, text: str | None) -> None:
        config = _json_object(text or "")
        if config is None:
            raise _Closed(1008, "the first message must be a JSON object with the stream's config")
        key = matching_key(self.settings, self.websocket.headers, config.get("api_key"))
        if self.settings.api_keys and key is None:
            raise _Closed(4401, "missing or wrong API key (a header, or api_key in the first message)")
        # streams are counted per key (clients behind one proxy share an address), per address without keys
        owner = f"key:{owner_of(key)}" if key else f"address:{self.address}"
        if sum(1 for o in self.streams.values() if o == owner) >= self.settings.max_streams_per_client:
            raise _Closed(4429, f"at most {self.settings.max_streams_per_client} streams per "
                                f"{'key' if key else 'client address'}")
        self.streams[id(self.websocket)] = owner
        try:
            self.config = parse_config({k: v for k, v in config.items() if k != "api_key"}, self.settings)
        except Problem as e:
            raise _Closed(1008, e.message) from None
        self.worker = await self.runner.pick_worker()
        await self.call("session_open", self.id, self.config)
        await self.websocket.send_json({"type": "ready", "sample_rate": self.config["sample_rate"],
                                        "encoding": self.config["encoding"], "tasks": self.config["tasks"]})

    async def call(self, name: str, *args: Any) -> Any:
        try:
            return await self.runner.run(name, *args, worker=self.worker, what="the stream")
        except Problem as e:  # 4501: a task whose extra is not installed (the message names it), as HTTP's 501
            raise _Closed(4501 if e.status == 501 else 1011 if e.status >= 500 else 1008, e.message) from None

    async def feed(self, x: np.ndarray, last: bool) -> None:
        transcribing = "transcribe" in self.config["tasks"]
        self.fed_seconds += len(x) / self.config["sample_rate"]
        now = self.fed_seconds  # the stream's clock as the worker hears it (the reader may be ahead)
        want_partial = (transcribing and self.open_since is not None and not self.partial_running
                        and now - self.last_partial >= PARTIAL_EVERY_S
                        and self.runner.pending < self.settings.queue_limit // 2)
        answer = await self.call("session_feed", self.id, x, last, want_partial)
        if answer["audio"]:
            await self.websocket.send_bytes(answer["audio"])
        for event in answer["events"]:
            if event["type"] == "speech_start":
                self.last_partial = event["time"]
            if "vad" in self.config["tasks"] or event["type"] == "speech_start" or "start" in event:
                await self.websocket.send_json(event)
        self.open_since = answer["open_since"]
        if transcribing:
            for start, clip, speaker in answer["finals"]:
                self.transcripts.append(asyncio.create_task(self.transcribe(clip, start, "final", speaker)))
            if answer["partial"] is not None:
                start, clip = answer["partial"]
                self.partial_running, self.last_partial = True, answer["now"]
                self.transcripts.append(asyncio.create_task(self.transcribe(clip, start, "partial")))
        self.transcripts = [t for t in self.transcripts if not t.done()]

    async def transcribe(self, clip: np.ndarray, start: float, kind: str, speaker: str | None = None) -> None:
        steps = [step("transcribe", formats="json", beam_size=self.config["beam_size"] if kind == "final" else 1,
                      language=self.config["language"], model=self.settings.whisper_model)]
        duration = len(clip) / 16000
        try:
            result = await self.runner.run("clip", clip, 16000, steps, "transcribe", what="transcription")
        except Problem as e:
            if kind == "final":
                await self.error(f"transcription failed: {e.message}")
            return
        finally:
            if kind == "partial":
                self.partial_running = False
        if kind == "partial" and self.open_since != start:
            return  # the utterance has ended meanwhile: its final says it better
        event: dict[str, Any] = {"type": kind, "start": round(start, 3), "end": round(start + duration, 3),
                                 "text": result["text"]}
        if speaker is not None:
            event["speaker"] = speaker
        if kind == "final":
            event["words"] = [{**w, "start": round(w["start"] + start, 3), "end": round(w["end"] + start, 3)}
                              for s in result["segments"] for w in s["words"]]
        with contextlib.suppress(RuntimeError):
            await self.websocket.send_json(event)

    async def error(self, message: str) -> None:
        with contextlib.suppress(RuntimeError):
            await self.websocket.send_json({"type": "error", "message": message})

    async def close(self) -> None:
        for task in self.transcripts:
            task.cancel()
        if self.config is not None and self.worker is not None:
            with contextlib.suppress(Problem):
                await self.runner.run("session_close", self.id, worker=self.worker)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
