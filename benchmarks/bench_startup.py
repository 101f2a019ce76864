"""The fixed cost of each step: `audioflow process one_2s.wav --steps STEP` timed as a user runs it (a new
process each time, wall clock), first with a fresh home folder (no caches of ours or of any library that
keeps them there) and then again with that home kept. Writes the "startup" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from report import machine, write_section

STEPS = ["features", "enhance:lufs=-23", "analyze", "vad", "denoise", "diarize", "transcribe", "fingerprint"]


def two_seconds_of_speech() -> np.ndarray:
    """Two seconds of a real voice (an Asterisk prompt) so that the speech steps load and run their models;
    a modulated tone where the prompts are not installed."""
    from realspeech import english_prompts, read_prompt

    prompts = english_prompts()
    if prompts:
        y = np.concatenate([read_prompt(path) for path, _ in prompts[:3]])
        return np.pad(y, (0, max(0, 32000 - len(y))))[:32000]
    t = np.arange(32000) / 16000
    return (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def run_once(audio: Path, step: str, home: Path, out: Path) -> float:
    """Seconds of wall clock for one `audioflow process` run of ``step`` (which must succeed)."""
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("AUDIOFLOW_CACHE", None)
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "audioflow", "process", str(audio), "-o", str(out), "--steps", step],
                          env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or '"failed": 0' not in (out / "summary.json").read_text():
        raise SystemExit(f"{step} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3, help="repeated runs per step (the median is reported)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        audio = tmp / "one_2s.wav"
        sf.write(audio, two_seconds_of_speech(), 16000)
        numba_before = {p.name for p in Path(tempfile.gettempdir()).glob("audioflow-numba-*")}
        rows = []
        for step in STEPS:
            home = tmp / f"home-{step.split(':')[0]}"
            home.mkdir()
            first = run_once(audio, step, home, tmp / "out")
            again = sorted(run_once(audio, step, home, tmp / "out") for _ in range(args.repeats))
            rows.append((step, first, again[len(again) // 2]))
            print(f"{step}: first {first:.2f} s, again {again[len(again) // 2]:.2f} s", flush=True)
        left = {p.name for p in Path(tempfile.gettempdir()).glob("audioflow-numba-*")} - numba_before
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = ["## Start-up: the fixed cost of each step", "",
             f"`benchmarks/bench_startup.py` on {machine()}. `audioflow process one_2s.wav --steps STEP`, a new "
             "process each run, wall clock: the first run with a fresh home folder (no caches), then the median of "
             f"{args.repeats} more with that home kept. 2 s of a real voice: what is measured is start-up "
             "(interpreter, imports, worker pool, model loading), not work.", "",
             "| step | first run (s) | repeated run (s) |", "|---|---|---|"]
    lines += [f"| `{step}` | {first:.2f} | {again:.2f} |" for step, first, again in rows]
    lines += ["", f"Folders left in the temporary directory by these runs: {len(left)}.", "",
              "Target (issue 17): `analyze` repeated <= 3 s, first run on a fresh machine <= 8 s (it was ~20 s "
              "every run: librosa's numba kernels compiled in every worker), and no folder left behind."]
    write_section("startup", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
