"""Batch processing, side by side in one run: one hour of mixed audio (music-like 44.1 kHz stereo, speech-like
16 kHz mono, noisy 22.05 kHz field recordings; FLAC, WAV, MP3) through `enhance:lufs=-23,analyze` with
audioflow's local engine and its Ray engine, against the plain loop a user would write (the seed's way:
librosa.load, pyloudnorm, librosa's beat tracker, chroma, HPSS, onsets and spectral features, one file
after another). Writes the "process" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_process.py [--minutes 60] [--file-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import audioflow as af
from audioflow import pipeline
from report import machine, write_section

MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def make_corpus(folder: Path, files: int, seconds: float) -> tuple[list[Path], float]:
    rng = np.random.default_rng(0)
    paths, total = [], 0.0
    for i in range(files):
        kind = ("music", "speech", "field")[i % 3]
        sr = {"music": 44100, "speech": 16000, "field": 22050}[kind]
        t = np.arange(round(seconds * sr)) / sr
        if kind == "music":
            beat = 60 / (80 + 10 * (i % 8))
            notes = sum(0.15 / k * np.sin(2 * np.pi * 110 * (1 + i % 5) * k * t) for k in range(1, 5))
            hits = (np.mod(t, beat) < 0.03) * rng.standard_normal(len(t)) * 0.3
            y = np.stack([notes + hits, 0.9 * notes + hits])
        elif kind == "speech":
            envelope = (np.sin(2 * np.pi * 3.1 * t) > 0.2) * (np.mod(t, 4.0) < 3.2)
            y = 0.3 * envelope * np.sin(2 * np.pi * (140 + 20 * np.sin(2 * np.pi * 0.5 * t)) * t * 3)
            y = y + 0.005 * rng.standard_normal(len(t))
        else:
            pink = np.cumsum(rng.standard_normal(len(t))) * 0.001
            y = pink - np.convolve(pink, np.ones(2000) / 2000, mode="same") + 0.05 * np.sin(2 * np.pi * 900 * t)
        ext = ("flac", "wav", "mp3")[(i // 3) % 3]
        path = folder / f"{kind}{i:03d}.{ext}"
        af.save(path, np.asarray(y, np.float32), sr)
        paths.append(path)
        total += seconds
    return paths, total


def plain_loop(paths: list[Path], out: Path) -> None:
    """What the seed's script does for enhance + analyze, file by file."""
    import librosa
    import pyloudnorm as pyln

    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        y, sr = librosa.load(path, sr=None, mono=False)
        frames = y.T if y.ndim == 2 else y
        meter = pyln.Meter(sr)
        loudness = meter.integrated_loudness(frames)
        normalized = pyln.normalize.loudness(frames, loudness, -23.0)
        sf.write(out / f"{path.stem}.flac", normalized, sr)
        mono = librosa.to_mono(y)
        y22 = librosa.resample(mono, orig_sr=sr, target_sr=22050)
        tempo, beats = librosa.beat.beat_track(y=y22, sr=22050)
        chroma = librosa.feature.chroma_cqt(y=y22, sr=22050).mean(axis=1)
        scores = [np.corrcoef(chroma, np.roll(p, k))[0, 1] for p in (MAJOR, MINOR) for k in range(12)]
        harmonic, percussive = librosa.effects.hpss(y22)
        onsets = librosa.onset.onset_detect(y=y22, sr=22050)
        result = {
            "loudness": loudness, "peak": float(np.abs(y).max()), "tempo": float(np.atleast_1d(tempo)[0]),
            "beats": len(beats), "key": int(np.argmax(scores)),
            "harmonic_ratio": float(np.sum(harmonic**2) / (np.sum(harmonic**2) + np.sum(percussive**2) + 1e-12)),
            "onsets": len(onsets),
            "centroid": float(librosa.feature.spectral_centroid(y=y22, sr=22050).mean()),
            "bandwidth": float(librosa.feature.spectral_bandwidth(y=y22, sr=22050).mean()),
            "rolloff": float(librosa.feature.spectral_rolloff(y=y22, sr=22050).mean()),
            "contrast": librosa.feature.spectral_contrast(y=y22, sr=22050).mean(axis=1).tolist(),
            "flatness": float(librosa.feature.spectral_flatness(y=y22).mean()),
            "zcr": float(librosa.feature.zero_crossing_rate(y22).mean()),
            "rms": float(librosa.feature.rms(y=y22).mean()),
            "mfcc": librosa.feature.mfcc(y=y22, sr=22050, n_mfcc=20).mean(axis=1).tolist(),
        }
        (out / f"{path.stem}.json").write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--file-seconds", type=float, default=60.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-process-"))
    steps = "enhance:lufs=-23,analyze"
    try:
        src = tmp / "in"
        src.mkdir()
        paths, audio_seconds = make_corpus(src, round(args.minutes * 60 / args.file_seconds), args.file_seconds)
        timings = {}
        started = time.perf_counter()
        plain_loop(paths, tmp / "plain")
        timings["plain loop (librosa + pyloudnorm, one file at a time)"] = time.perf_counter() - started
        print("plain", timings, flush=True)
        started = time.perf_counter()
        local = pipeline.run(src, steps, tmp / "local")
        timings[f"audioflow process, local engine ({local.workers} workers)"] = time.perf_counter() - started
        print("local", local.to_dict(), flush=True)
        try:
            import ray

            started = time.perf_counter()
            ray.init(include_dashboard=False, log_to_driver=False)
            ray_start = time.perf_counter() - started
            remote = pipeline.run(src, steps, tmp / "ray", engine="ray")
            timings["audioflow process, Ray engine (local Ray, start-up included)"] = time.perf_counter() - started
            print("ray", remote.to_dict(), flush=True)
            ray.shutdown()
        except ImportError:
            ray_start = None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plain_s = next(iter(timings.values()))
    local_s = timings[next(k for k in timings if "local" in k)]
    lines = ["## Batch processing: enhance + analyze", "",
             f"`benchmarks/bench_process.py` on {machine()}. {audio_seconds / 3600:.2f} h of audio in "
             f"{len(paths)} files of {args.file_seconds:g} s (music-like 44.1 kHz stereo, speech-like 16 kHz mono, "
             "noisy 22.05 kHz; FLAC, WAV, MP3), steps `enhance:lufs=-23,analyze` (loudness normalisation with a "
             "true-peak limit and the enhanced file written; general measurements, tempo and beats, key, "
             "harmonic ratio, onsets, spectral summary and MFCC means). The plain loop does the same analyses the "
             "usual way: `librosa.load`, `pyloudnorm`, `librosa.beat.beat_track`, `chroma_cqt`, "
             "`librosa.effects.hpss`, `onset_detect` and `librosa.feature.*`, one file after another.", "",
             "| run | wall (s) | x realtime | vs plain loop |", "|---|---|---|---|"]
    for name, seconds in timings.items():
        lines.append(f"| {name} | {seconds:.1f} | {audio_seconds / seconds:.0f} | {plain_s / seconds:.1f}x |")
    ray_key = next((k for k in timings if "Ray" in k), None)
    if ray_key:
        lines += ["", f"Ray engine / local engine: {timings[ray_key] / local_s:.2f}x the wall time (Ray's own "
                      f"start-up, {ray_start:.1f} s, included)."]
    lines += ["", "Targets: the local engine at least 3x the plain loop; Ray within 1.5x of local on one machine."]
    write_section("process", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
