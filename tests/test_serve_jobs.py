"""Jobs for long inputs (issue 32 item 7): ``POST /v1/jobs`` answers an id at once, the job runs through the
pipeline's chunked path in a child process, its progress and result are read back, its files fetched, it can
be cancelled, it survives a server restart, and it belongs to the key that made it. The result equals what
``audioflow process`` writes for the same file with the same chunking."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("faster_whisper")

from audioflow.serve import ServeSettings, create_app
from serving import local

KEY = "test-key-0123456789abcdef"
OTHER = "other-key-0123456789abcdef"
CHUNK_S = 12.0


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> bytes:
    """~45 s of two flite voices taking turns, as a FLAC upload (four chunks of 12 s)."""
    import voices

    if not voices.have_flite():
        pytest.skip("needs flite")
    folder = tmp_path_factory.mktemp("talk")
    turns = [(voice, text) for voice, text in zip(["slt", "rms"] * 4, voices.PASSAGE[:8], strict=False)]
    x, _ = voices.dialogue(folder, turns, seed=3)
    buffer = io.BytesIO()
    sf.write(buffer, x, voices.SR, format="FLAC")
    return buffer.getvalue()


def wait_for(client, job_id: str, headers: dict, seconds: float = 240.0) -> tuple[dict, list[float]]:
    """Poll a job until it ends; also the progress figures seen on the way."""
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        seen.append(job["progress"])
        if job["status"] not in ("queued", "running"):
            return job, seen
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in {seconds} s")


def test_a_job_runs_like_audioflow_process_and_belongs_to_its_key(talk, tmp_path):
    from audioflow.pipeline import run

    settings = ServeSettings(api_keys=[KEY, OTHER], workers=1, jobs_dir=str(tmp_path / "jobs"),
                             job_chunk_duration=CHUNK_S)
    mine, theirs = {"X-API-Key": KEY}, {"X-API-Key": OTHER}
    with local(create_app(settings)) as c:
        started = time.monotonic()
        answer = c.post("/v1/jobs?steps=vad,diarize,transcribe", content=talk, headers=mine)
        assert answer.status_code == 202 and time.monotonic() - started < 5  # at once, not after the work
        job_id = answer.json()["id"]
        assert answer.json()["status"] == "queued" and answer.json()["url"] == f"/v1/jobs/{job_id}"
        assert c.get(f"/v1/jobs/{job_id}", headers=theirs).status_code == 404  # another key: no such job
        assert c.delete(f"/v1/jobs/{job_id}", headers=theirs).status_code == 404
        assert [j["id"] for j in c.get("/v1/jobs", headers=theirs).json()["jobs"]] == []
        job, seen = wait_for(c, job_id, mine)
        assert job["status"] == "done", job
        assert job["progress"] == 1.0 and abs(job["seconds_total"] - sf.info(io.BytesIO(talk)).duration) < 0.01
        assert seen == sorted(seen) and any(0 < p < 1 for p in seen)  # chunk by chunk, never back
        result = c.get(f"/v1/jobs/{job_id}/result", headers=mine).json()
        assert c.get(f"/v1/jobs/{job_id}/result", headers=theirs).status_code == 404
        srt = next(f for f in result["files"]["transcribe"] if f.endswith(".srt"))
        served = c.get(f"/v1/jobs/{job_id}/files/{srt}", headers=mine)
        assert served.status_code == 200
        assert c.get(f"/v1/jobs/{job_id}/files/../job.json", headers=mine).status_code == 404
        assert [j["id"] for j in c.get("/v1/jobs", headers=mine).json()["jobs"]] == [job_id]
    # the same file through `audioflow process`, chunked the same way
    source = tmp_path / "input.flac"
    source.write_bytes(talk)
    summary = run([str(source)], "vad,diarize,transcribe", tmp_path / "process", workers=1,
                  chunk_duration=CHUNK_S)
    assert summary.ok == 1
    expected = json.loads((tmp_path / "process" / "results" / "input.json").read_text())
    assert result["audio"]["chunks"] == expected["audio"]["chunks"] == 4
    for stage in ("vad", "diarize", "transcribe"):
        assert result["results"][stage] == expected["results"][stage], stage
    assert served.text == (tmp_path / "process" / srt).read_text()


def test_jobs_are_cancelled_survive_a_restart_and_refuse_bad_steps(talk, tmp_path):
    settings = ServeSettings(workers=1, jobs_dir=str(tmp_path / "jobs"), job_chunk_duration=CHUNK_S)
    with local(create_app(settings)) as c:
        # steps are checked before the body is read; what only the server may set is refused
        assert c.post("/v1/jobs?steps=nonsense", content=talk).status_code == 400
        model = c.post("/v1/jobs?steps=vad,transcribe:model=/etc", content=talk)
        assert model.status_code == 400 and "set by the server" in model.json()["error"]["message"]
        corrupt = c.post("/v1/jobs?steps=vad", content=talk[: len(talk) // 3])  # cut mid-stream
        cancelled = c.post("/v1/jobs?steps=vad,diarize,transcribe", content=talk).json()["id"]
        assert c.delete(f"/v1/jobs/{cancelled}").json()["status"] == "cancelled"
        left = c.post("/v1/jobs?steps=vad,transcribe", content=talk).json()["id"]
        if corrupt.status_code == 202:  # a cut FLAC may pass the header check: then the job fails, saying why
            failed, _ = wait_for(c, corrupt.json()["id"], {})
            assert failed["status"] == "failed" and "upload" in failed["error"] and str(tmp_path) not in failed["error"]
        else:
            assert corrupt.status_code in (400, 413, 415, 422)
    # the server stopped with a job queued or running: the next one on the same folder finishes it
    with local(create_app(settings)) as c:
        job, _ = wait_for(c, left, {})
        assert job["status"] == "done"
        assert c.get(f"/v1/jobs/{cancelled}").json()["status"] == "cancelled"
        assert c.get(f"/v1/jobs/{cancelled}/result").status_code == 409
        assert c.delete(f"/v1/jobs/{left}").json()["deleted"] is True  # a finished job goes with its files
        assert c.get(f"/v1/jobs/{left}").status_code == 404
        assert not (Path(settings.jobs_dir) / left).exists()
