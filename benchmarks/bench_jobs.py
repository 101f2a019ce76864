"""A two-hour recording of real voices through ``POST /v1/jobs`` (``vad,diarize,transcribe``) on a running
``audioflow serve``, against ``audioflow process`` on the same file: wall time, the job process's peak RSS,
progress seen while it runs, and whether the results are equal. Writes the "jobs" section of
docs/benchmarks.md.

The recording: real English speech (Allison's Asterisk prompts as monologues, each followed by the real
telephone call pyannote.audio ships), to the length asked, saved as 16 kHz FLAC."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from realspeech import english_prompts, monologue, sample_call
from report import machine, write_section

SR = 16000
STEPS = "vad,diarize,transcribe"


def recording(seconds: float, seed: int = 0) -> np.ndarray:
    """Real English speech until ``seconds`` (16 kHz mono): runs of 40 of Allison's prompts (a monologue,
    drawn afresh each time) each followed by the real two-person telephone call pyannote.audio ships, so
    three real voices, all in the language of the packaged tiny.en."""
    from audioflow.speech.vad import mono_at

    prompts = english_prompts(3)
    call = sample_call()
    parts, total, k = [], 0, 0
    while total < seconds * SR:
        y, sr, _ = monologue(prompts, count=40, seed=seed + k)
        parts += [mono_at(y, sr, SR)]
        if call is not None:
            parts += [np.zeros(SR, np.float32), mono_at(call[0], call[1], SR)]
        parts += [np.zeros(SR, np.float32)]
        total = sum(len(p) for p in parts)
        k += 1
    return np.concatenate(parts)[: int(seconds * SR)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def through_the_server(path: Path, jobs_dir: Path) -> dict:
    """Submit ``path`` as a job to a fresh ``audioflow serve``; poll it to the end."""
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "audioflow", "serve", "--port", str(port), "--jobs-dir",
                               str(jobs_dir), "--workers", "1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.5)
            started = time.perf_counter()
            with open(path, "rb") as f:
                answer = client.post(f"/v1/jobs?steps={STEPS}", content=f, headers={"content-type": "audio/flac"})
            answered = time.perf_counter() - started
            answer.raise_for_status()
            job_id = answer.json()["id"]
            seen = []
            while True:
                job = client.get(f"/v1/jobs/{job_id}").json()
                seen.append((time.perf_counter() - started, job["progress"]))
                if job["status"] not in ("queued", "running"):
                    break
                time.sleep(2.0)
            wall = time.perf_counter() - started
            result = client.get(f"/v1/jobs/{job_id}/result").json() if job["status"] == "done" else None
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    return {"job": job, "answered_s": answered, "wall_s": wall, "progress": seen, "result": result}


def through_process(path: Path, out: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "audioflow", "process", str(path), "-s", STEPS, "-o", str(out),
                           "--workers", "1"], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return {"wall_s": wall, "result": json.loads((out / "results" / f"{path.stem}.json").read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=120.0)
    args = parser.parse_args()
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "input.flac"
        sf.write(path, recording(args.minutes * 60), SR, subtype="PCM_16")
        size_mb = path.stat().st_size / 2**20
        served = through_the_server(path, folder / "jobs")
        print("job", {k: v for k, v in served.items() if k not in ("result", "progress")}, flush=True)
        processed = through_process(path, folder / "process")
        print("process", processed["wall_s"], flush=True)
    job, result = served["job"], served["result"]
    equal = result is not None and all(result["results"][s] == processed["result"]["results"][s]
                                       for s in ("vad", "diarize", "transcribe"))
    middle = [p for _, p in served["progress"] if 0 < p < 1]
    speakers_found = len(result["results"]["diarize"]["speakers"]) if result else 0
    words = len(result["results"]["transcribe"]["text"].split()) if result else 0
    lines = ["## Long inputs through `/v1/jobs` (`bench_jobs.py`)", "",
             f"{machine()}. A {args.minutes:.0f}-minute recording of real English speech (Allison's Asterisk "
             f"prompts as monologues of 40, each followed by pyannote.audio's real two-person call; "
             f"{size_mb:.0f} MB of 16 kHz FLAC) submitted to `audioflow serve` as "
             f"a `{STEPS}` job, then the same file through `audioflow process` (both chunked by 600 s).", "",
             "| | value |", "| --- | ---: |",
             f"| job state | {job['status']} |",
             f"| answer to the POST (upload included), s | {served['answered_s']:.1f} |",
             f"| job wall time (submitted to done), s | {served['wall_s']:.0f} |",
             f"| `audioflow process` wall time, s | {processed['wall_s']:.0f} |",
             f"| x real time (job) | {args.minutes * 60 / served['wall_s']:.1f} |",
             f"| peak RSS of the job's process, MB | {job.get('peak_rss_mb') or 0:.0f} |",
             f"| progress readings between 0 and 1 | {len(middle)} (of {len(served['progress'])}) |",
             f"| speakers found, words transcribed | {speakers_found}, {words} |",
             f"| vad, diarize and transcribe results equal to `audioflow process`'s | {'yes' if equal else 'no'} |",
             "", "Target (issue 32): peak RSS <= 1.5 GB, progress visible, the result equal to `audioflow "
             "process` on the same file."]
    write_section("jobs", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
