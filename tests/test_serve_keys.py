"""The server against clients without a key, keys sent where they do not belong and slow clients (issue 32):
keyless requests are refused before admission and before their bodies are read, per-key limits, keys never
in the logs, deadlines for headers and bodies. Servers bind 127.0.0.1 only; every client is bounded in count
and time."""

from __future__ import annotations

import io
import logging
import socket
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
from starlette.websockets import WebSocketDisconnect

from audioflow.serve import ServeSettings, create_app
from serving import WS, LiveServer, local

KEY = "test-key-0123456789abcdef"
OTHER = "other-key-0123456789abcdef"


def speech_wav(seconds: float = 1.0) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buffer.getvalue()


def raw_request(url: str, head: str, body: bytes = b"") -> socket.socket:
    """A socket that has sent ``head`` (request line and headers) and ``body`` to the server at ``url``."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(head.encode("latin-1") + body)
    return conn


def read_status(conn: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def closed_within(conn: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``conn`` within ``seconds`` (anything it sends first is read and dropped)."""
    conn.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if conn.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset
            return True
    return False


def test_keyless_drips_do_not_stop_keyed_requests():
    """16 keyless clients dripping 10 MB uploads used to hold every admission slot (keyed requests got 503
    for as long as they dripped): now each is answered 401 after its headers, its connection closed and its
    body never read, while keyed requests go through."""
    import httpx

    with LiveServer(ServeSettings(api_keys=[KEY], workers=1, queue_limit=4)) as server:
        head = ("POST /v1/vad HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                f"Content-Length: {10 * 1024 * 1024}\r\n\r\n")
        drips = [raw_request(server.url, head, b"RIFF") for _ in range(16)]
        try:
            started = time.monotonic()
            assert [read_status(c) for c in drips] == [401] * 16
            assert all(closed_within(c, 5.0) for c in drips)  # the rest of the body is never read
            assert time.monotonic() - started < 10
            with httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": KEY}) as c:
                answers = [c.post("/v1/vad", content=speech_wav()).status_code for _ in range(6)]
            assert answers == [200] * 6
            # a keyless 50 MB multipart to the OpenAI route: refused from its headers, not after reading it
            head = ("POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 52428800\r\n\r\n")
            conn = raw_request(server.url, head, b"--x\r\n")
            assert read_status(conn) == 401
            conn.close()
        finally:
            for c in drips:
                c.close()


def test_credentials_in_urls_are_refused_and_never_logged():
    """Every way a key was seen in the log (issue 32: ``?authorization=Bearer%20KEY``, ``?api_%6Bey=``,
    ``?secret=``, the WebSocket's ``?auth=``, a key as a bare value or in the path) is refused, and no log line
    holds the key or a query value; uvicorn's access formatter formats every record (it used to fail on the
    redacted ones, writing a traceback per request)."""
    import httpx
    from uvicorn.logging import AccessFormatter, DefaultFormatter

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    with LiveServer(ServeSettings(api_keys=[KEY]), log_level="info") as server:
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).addHandler(keep)
        try:
            urls = [f"/v1/models?api_key={KEY}", f"/v1/models?authorization=Bearer%20{KEY}",
                    f"/v1/models?api_%6Bey={KEY}", f"/v1/models?secret={KEY}", f"/v1/models?Access-Token={KEY}",
                    f"/v1/models?x={KEY}", f"/v1/{KEY}", f"/v1/health?probe={KEY}"]
            with httpx.Client(base_url=server.url, timeout=30) as c:
                for url in urls:
                    answer = c.get(url, headers={"Authorization": f"Bearer {KEY}"})
                    assert answer.status_code == 400 and "never in the URL" in answer.json()["error"]["message"], url
                assert c.get("/v1/models?threshold=0.5", headers={"X-API-Key": KEY}).status_code == 200
                assert c.get("/v1/models", headers={"X-API-Key": OTHER}).status_code == 401
            from websockets.sync.client import connect

            for query in (f"auth={KEY}", f"token={KEY}"):
                with pytest.raises(Exception, match="403"):
                    connect(f"ws://127.0.0.1:{server.settings.port}/v1/stream?{query}").close()
            time.sleep(0.3)  # the last access lines
        finally:
            for name in ("uvicorn.access", "uvicorn.error"):
                logging.getLogger(name).removeHandler(keep)
    access = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s')
    lines = [(access if r.name == "uvicorn.access" else DefaultFormatter("%(message)s")).format(r) for r in records]
    assert sum(r.name == "uvicorn.access" for r in records) >= len(urls) + 2
    assert not [line for line in lines if KEY in line or "Bearer" in line]
    assert any("/v1/models?threshold=… HTTP/1.1" in line for line in lines)


def test_per_key_rate_and_concurrency_limits():
    """A key over its rate gets 429 with Retry-After; another key is not slowed by it."""
    with local(create_app(ServeSettings(api_keys=[KEY, OTHER], key_rate=0.5, key_burst=2))) as c:
        codes = [c.get("/v1/models", headers={"X-API-Key": KEY}) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert int(codes[2].headers["retry-after"]) >= 1 and codes[2].json()["error"]["type"] == "rate_limit_error"
        assert c.get("/v1/models", headers={"X-API-Key": OTHER}).status_code == 200
        assert c.get("/v1/health").status_code == 200  # open routes are not counted


def test_one_key_cannot_hold_every_slot():
    """With ``key_concurrency=1``, a key uploading slowly holds its one slot: its next request gets 429 at once,
    another key's request goes through."""
    import httpx

    with LiveServer(ServeSettings(api_keys=[KEY, OTHER], workers=1, key_concurrency=1)) as server:
        head = ("POST /v1/vad HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                f"X-API-Key: {KEY}\r\nContent-Length: 100000\r\n\r\n")
        slow = raw_request(server.url, head, b"RIFF")
        try:
            time.sleep(0.3)
            with httpx.Client(base_url=server.url, timeout=60) as c:
                refused = c.post("/v1/vad", content=speech_wav(), headers={"X-API-Key": KEY})
                assert refused.status_code == 429 and refused.headers["retry-after"]
                assert c.post("/v1/vad", content=speech_wav(), headers={"X-API-Key": OTHER}).status_code == 200
        finally:
            slow.close()


def test_slow_headers_and_paused_bodies_meet_deadlines():
    """Connections that never finish their headers (20 of them, and one kept alive after a first request)
    are closed at ``header_timeout``; a body that pauses past ``body_timeout`` is answered 408."""
    with LiveServer(ServeSettings(header_timeout=1.0, body_timeout=1.0)) as server:
        stalled = [raw_request(server.url, "POST /v1/vad HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(20)]
        kept = raw_request(server.url, "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_status(kept) == 200
        kept.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127")  # and no more
        try:
            started = time.monotonic()
            assert all(closed_within(c, 4.0) for c in [*stalled, kept])
            assert time.monotonic() - started < 5.0
            head = ("POST /v1/vad HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                    "Content-Length: 100000\r\n\r\n")
            paused = raw_request(server.url, head, speech_wav()[:1000])
            started = time.monotonic()
            assert read_status(paused) == 408
            assert time.monotonic() - started < 4.0
            paused.close()
            # a request that keeps its pace is not cut by either deadline
            ok = raw_request(server.url, "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_status(ok) == 200
            ok.close()
        finally:
            for c in stalled:
                c.close()
            kept.close()


def test_websocket_key_in_headers_or_first_message_still_works():
    app = create_app(ServeSettings(api_keys=[KEY]))
    with local(app) as c:
        with c.websocket_connect(WS, headers={"X-API-Key": KEY}) as ws:
            ws.send_json({"sample_rate": 16000, "tasks": ["vad"]})
            assert ws.receive_json()["type"] == "ready"
        with pytest.raises(WebSocketDisconnect) as closed, c.websocket_connect(f"{WS}?api_key={KEY}"):
            pass
        assert closed.value.code == 4401
