"""Streams that keep up (issue 32 item 4): a client sending faster than real time is read at once (its pings
answered), fed to its worker in bigger blocks, told to slow down and refused past a bound, never cut by a ping
time-out; work stops as soon as a client leaves; streams are counted per key, not per address. Servers bind
127.0.0.1 only."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
from starlette.websockets import WebSocketDisconnect

from audioflow.serve import ServeSettings, create_app
from serving import WS, LiveServer, local

KEY = "test-key-0123456789abcdef"
OTHER = "other-key-0123456789abcdef"
SR = 16000


def tone_bursts(seconds: float) -> np.ndarray:
    """Half-second tone bursts every second (speech-like for the VAD), int16 PCM bytes come from it."""
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * ((t % 1.0) < 0.5)).astype(np.float32)


def pcm(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def test_a_stream_sent_as_fast_as_possible_is_read_and_finished(tmp_path):
    """120 s of audio pushed without pacing through a real uvicorn (its keep-alive pings on): every block is
    read, the VAD gets bigger blocks, and the stream ends with 'done' for all of it."""
    from websockets.sync.client import connect

    import voices

    if not voices.have_flite():
        pytest.skip("needs flite")
    sentence = voices.flite(voices.SENTENCES[0], "slt", tmp_path / "one.wav")
    gap = np.zeros(SR, np.float32)
    utterances = int(np.ceil(120.0 / (len(sentence) / SR + 1.0)))
    x = pcm(np.concatenate([np.concatenate([sentence, gap]) for _ in range(utterances)])[:120 * SR])
    with LiveServer(ServeSettings(workers=1)) as server:
        events = []
        with connect(f"ws://127.0.0.1:{server.settings.port}/v1/stream", max_size=2 ** 22) as ws:
            ws.send(json.dumps({"sample_rate": SR, "encoding": "pcm_s16le", "tasks": ["vad"]}))
            assert json.loads(ws.recv())["type"] == "ready"
            for start in range(0, len(x), 3200):  # 0.1 s frames, all at once
                ws.send(x[start:start + 3200])
            ws.send(json.dumps({"type": "end"}))
            for message in ws:
                events.append(json.loads(message))
                if events[-1]["type"] == "done":
                    break
    assert events[-1] == {"type": "done", "seconds": 120.0}
    assert sum(e["type"] == "speech_start" for e in events) >= utterances - 1  # every sentence was heard


def test_a_client_faster_than_its_worker_is_told_to_slow_down_then_refused():
    """Denoising runs near real time here: 60 s sent at once with a 4 s backlog bound gets a 'slow_down'
    event past 2 s waiting and a close 1008 naming the backlog past 4 s, not a time-out."""
    with local(create_app(ServeSettings(workers=1, ws_max_backlog_seconds=4.0))) as c, \
            c.websocket_connect(WS) as ws:
        ws.send_json({"sample_rate": SR, "encoding": "pcm_s16le", "tasks": ["enhance"]})
        assert ws.receive_json()["type"] == "ready"
        x = pcm(tone_bursts(60.0))
        for start in range(0, len(x), 3200):
            ws.send_bytes(x[start:start + 3200])
        kinds, reason = [], None
        while True:
            message = ws.receive()
            if message["type"] == "websocket.close":
                break
            if message.get("text"):
                event = json.loads(message["text"])
                kinds.append(event["type"])
                reason = event.get("message", reason)
        assert message["code"] == 1008
        assert "slow_down" in kinds and "faster than this stream is processed" in (reason or message["reason"])


def test_work_stops_when_the_client_leaves():
    """A client that sends 40 s of audio to denoise and leaves: its stream is gone within 2 s (it used to be
    processed to the end, 20-30 s after the client had left)."""
    with local(create_app(ServeSettings(workers=1))) as c:
        with c.websocket_connect(WS) as ws:
            ws.send_json({"sample_rate": SR, "encoding": "pcm_s16le", "tasks": ["enhance"]})
            assert ws.receive_json()["type"] == "ready"
            x = pcm(tone_bursts(40.0))
            for start in range(0, len(x), 3200):
                ws.send_bytes(x[start:start + 3200])
            ws.receive_bytes()  # the first block came back: the worker is busy with the rest
        left = time.monotonic()
        while c.get("/v1/health").json()["streams"] and time.monotonic() - left < 10:
            time.sleep(0.05)
        assert c.get("/v1/health").json()["streams"] == 0
        assert time.monotonic() - left < 2.0


def test_streams_are_counted_per_key_not_per_address():
    """Behind one proxy every client has one address: with keys, the cap is per key."""
    settings = ServeSettings(api_keys=[KEY, OTHER], max_streams_per_client=1)
    with local(create_app(settings)) as c, c.websocket_connect(WS, headers={"X-API-Key": KEY}) as first:
        first.send_json({"sample_rate": SR, "tasks": ["vad"]})
        assert first.receive_json()["type"] == "ready"
        with c.websocket_connect(WS, headers={"X-API-Key": OTHER}) as other:  # same address, other key
            other.send_json({"sample_rate": SR, "tasks": ["vad"]})
            assert other.receive_json()["type"] == "ready"
        with c.websocket_connect(WS) as second:  # the first key again, in the first message
            second.send_json({"sample_rate": SR, "tasks": ["vad"], "api_key": KEY})
            assert second.receive_json()["type"] == "error"
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
            assert closed.value.code == 4429 and "per key" in closed.value.reason
