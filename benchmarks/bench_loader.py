"""The training loader, before and after, side by side in one run: a plain torch DataLoader (2 workers)
over a Dataset doing librosa.load + audiomentations TimeStretch/PitchShift + librosa MFCC(40) per item,
against AudioDataLoader doing the same work with its default settings. Both with and without the
augmentation, on 16 kHz mono FLAC and on 44.1 kHz stereo FLAC resampled to 16 kHz; then a training-loop
simulation whose "model step" sleeps (releasing the CPU, as a GPU step does) and reports the fraction of
time the loop waited for data. Writes the "loader" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_loader.py [--clips 200] [--step-ms 250]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import audioflow.augment as A
from audioflow import AudioDataLoader
from report import fmt, machine, write_section

SECONDS, BATCH, N_MFCC = 10.0, 32, 40
# librosa.feature.mfcc's defaults, given to both sides so they do the same work
MFCC_ARGS = {"n_fft": 2048, "hop_length": 512, "n_mels": 128}


def make_clips(directory: Path, n: int, sr: int, channels: int) -> list[str]:
    """Harmonic tones with vibrato and a noise floor: compresses like real recordings."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sr + channels)
    t = np.arange(int(sr * SECONDS)) / sr
    paths = []
    for i in range(n):
        f0 = 110 + 5 * (i % 60)
        phase = 2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * 5 * t)
        y = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) + 0.01 * rng.standard_normal(len(t))
        frames = np.stack([y, np.roll(y, 7)], 1) if channels == 2 else y
        path = directory / f"clip{i:04d}.flac"
        sf.write(path, frames.astype(np.float32), sr, subtype="PCM_16")
        paths.append(str(path))
    return paths


class LibrosaDataset(torch.utils.data.Dataset):
    """The seed's per-item script: librosa.load, audiomentations, librosa MFCC."""

    def __init__(self, paths: list[str], augment: bool) -> None:
        self.paths, self.augment = paths, augment
        self.chain = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        import librosa

        if self.augment and self.chain is None:
            import audiomentations as AM

            self.chain = AM.Compose([AM.TimeStretch(min_rate=0.8, max_rate=1.2, p=1.0),
                                     AM.PitchShift(min_semitones=-2, max_semitones=2, p=1.0)])
        y, sr = librosa.load(self.paths[i], sr=16000, mono=True)
        if self.chain is not None:
            y = self.chain(samples=y, sample_rate=sr)
        return torch.from_numpy(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=N_MFCC, **MFCC_ARGS))


def pad_collate(items: list[torch.Tensor]) -> torch.Tensor:
    frames = max(x.shape[-1] for x in items)
    return torch.stack([torch.nn.functional.pad(x, (0, frames - x.shape[-1])) for x in items])


def before_loader(paths: list[str], augment: bool):
    return torch.utils.data.DataLoader(LibrosaDataset(paths, augment), batch_size=BATCH, num_workers=2,
                                       collate_fn=pad_collate, persistent_workers=True, shuffle=True)


def after_loader(paths: list[str], augment: bool):
    augmentations = [A.TimeStretch(0.8, 1.2, p=1.0), A.PitchShift(-2, 2, p=1.0)] if augment else None
    return AudioDataLoader(paths, batch_size=BATCH, sample_rate=16000, features="mfcc", n_mfcc=N_MFCC,
                           augmentations=augmentations, device="cpu", shuffle=True, **MFCC_ARGS)


def epoch_rates(loader, epochs: int = 2) -> list[float]:
    """Clips per second of each epoch (the first includes worker start-up and, for audioflow, the probe
    and filling the decoded-audio cache)."""
    rates = []
    for _ in range(epochs):
        started, clips = time.perf_counter(), 0
        for batch in loader:
            features = batch.features if hasattr(batch, "features") else batch
            clips += features.shape[0]
        rates.append(clips / (time.perf_counter() - started))
    return rates


def simulate(loader, step_s: float, steps: int) -> tuple[float, float, float | None]:
    """Fraction of a training loop's time spent waiting for data, with a model step that sleeps
    ``step_s`` seconds: over all steps, after the first batch (start-up excluded), and after the first
    epoch (once audioflow's decoded-audio cache is filled; None if the run is shorter)."""
    waits, started = [], time.perf_counter()
    per_epoch = len(loader)
    it = iter(loader)
    for _ in range(steps):
        t0 = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        waits.append(time.perf_counter() - t0)
        time.sleep(step_s)
    total = time.perf_counter() - started
    after_first = total - waits[0] - step_s
    later = waits[per_epoch + 1:]
    steady = sum(later) / (sum(later) + step_s * len(later)) if later else None
    return sum(waits) / total, sum(waits[1:]) / after_first, steady


def close(loader) -> None:
    if hasattr(loader, "close"):
        loader.close()
    else:
        loader._iterator = None  # persistent DataLoader workers stop when the iterator goes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--step-ms", type=float, default=250.0)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    rows, sims, settings = [], [], {}
    try:
        sets = {"16 kHz mono FLAC": make_clips(tmp / "mono16k", args.clips, 16000, 1),
                "44.1 kHz stereo FLAC -> 16 kHz": make_clips(tmp / "stereo44k", args.clips, 44100, 2)}
        for name, paths in sets.items():
            for augment in (False, True):
                result = {}
                for side, make in (("before", before_loader), ("after", after_loader)):
                    loader = make(paths, augment)
                    result[side] = epoch_rates(loader)
                    if side == "after":
                        settings[(name, augment)] = loader.stats()["settings"]
                    close(loader)
                    print(name, "aug" if augment else "no aug", side, [round(r, 1) for r in result[side]], flush=True)
                rows.append((name, augment, result["before"], result["after"]))
            for side, make in (("before", before_loader), ("after", after_loader)):
                loader = make(paths, True)
                sims.append((name, side, *simulate(loader, args.step_ms / 1000, args.steps)))
                close(loader)
                print("simulation", name, side, sims[-1][2:], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        "## Training loader: before and after",
        "",
        f"`benchmarks/bench_loader.py` on {machine()}. {args.clips} clips of {SECONDS:g} s per set, batches of "
        f"{BATCH}, MFCC({N_MFCC}) with librosa's frame settings ({MFCC_ARGS}). **before**: "
        "`torch.utils.data.DataLoader(num_workers=2, persistent_workers=True)` over a Dataset doing `librosa.load(sr="
        "16000)`, audiomentations `TimeStretch(0.8-1.2)` + `PitchShift(-2..2)` at p=1, and `librosa.feature.mfcc` per "
        "item. **after**: `AudioDataLoader(paths, features='mfcc', augmentations=[TimeStretch, PitchShift], "
        "device='cpu')` with every other setting left to it. Clips per second of epoch 1 (start-up, and for "
        "audioflow the probe and filling its decoded-audio cache) and epoch 2 (steady state).",
        "",
        "| data | augmentation | before epoch 1 / 2 (clips/s) | after epoch 1 / 2 (clips/s) "
        "| after / before (epoch 2) |",
        "|---|---|---|---|---|",
    ]
    for name, augment, before, after in rows:
        lines.append(f"| {name} | {'stretch + shift' if augment else 'none'} | {fmt(before[0], 1)} / "
                     f"{fmt(before[1], 1)} | {fmt(after[0], 1)} / {fmt(after[1], 1)} | "
                     f"**{fmt(after[1] / before[1], 1)}x** |")
    lines += ["", "What the augmentation costs (epoch 2 throughput lost by adding it):", ""]
    for name in dict.fromkeys(r[0] for r in rows):
        plain = next(r for r in rows if r[0] == name and not r[1])
        aug = next(r for r in rows if r[0] == name and r[1])
        lines.append(f"- {name}: before loses {100 * (1 - aug[2][1] / plain[2][1]):.0f} %, after loses "
                     f"{100 * (1 - aug[3][1] / plain[3][1]):.0f} %")
    lines += ["", f"Training-loop simulation: a model step of {args.step_ms:g} ms that sleeps (the CPU is free, as "
              f"during a GPU step), {args.steps} steps, with augmentation; fraction of the loop's time spent "
              "waiting for the next batch:", "",
              "| data | loader | waiting (all steps) | after the first batch | after the first epoch |",
              "|---|---|---|---|---|"]
    for name, side, total, warm, steady in sims:
        later = "n/a" if steady is None else f"{100 * steady:.1f} %"
        lines.append(f"| {name} | {side} | {100 * total:.1f} % | {100 * warm:.1f} % | {later} |")
    chosen = settings.get((next(iter(dict.fromkeys(r[0] for r in rows))), True), {})
    lines += ["", "Settings AudioDataLoader chose (16 kHz set, with augmentation): " +
              ", ".join(f"{k}={v}" for k, v in chosen.items()) + ".", "",
              "Targets: with augmentation at least 5x the clips/s of before; augmentation costing under 30 % of the "
              "no-augmentation throughput; under 5 % waiting in the simulation where before waits over half. "
              "GPU utilisation with a real model is to be measured on an accelerator machine (none was lent here)."]
    write_section("loader", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
