"""The training loader against Lhotse, the loader of speech-ML recipes (icefall, k2, NeMo), side by side on
the same real recordings: 300 clips of 4-10 s of real people (Asterisk's voice prompts, see realspeech.py)
at 16 kHz FLAC, described by one Lhotse CutSet manifest (cuts.jsonl.gz) that both loaders read. Batches of
32 cuts (or duration-bucketed), 80-bin Kaldi fbank computed on the fly, 2 worker processes, 3 epochs.

- **Lhotse 1.33**: ``K2SpeechRecognitionDataset(OnTheFlyFeatures(Fbank(80)))`` with ``SimpleCutSampler`` or
  ``DynamicBucketingSampler``, ``DataLoader(num_workers=2, persistent_workers=True)``; augmented with its
  cut transforms ``PerturbSpeed([0.9, 1.1], p=2/3)``, ``CutMix`` (babble from a file, 10-20 dB, p=0.5),
  ``PerturbVolume(p=0.5)``.
- **audioflow**: ``AudioDataLoader("cuts.jsonl.gz", features="fbank", num_mel_bins=80, batch_format="lhotse")``
  (Lhotse's frame settings: no edge snipping, top band 400 Hz under Nyquist), every other setting left to
  it; augmented with ``SpeedPerturb((0.9, 1.0, 1.1))``, ``AddNoise(noise=[babble], 10-20 dB, p=0.5)``,
  ``Gain(-18..6 dB, p=0.5)``.
- **librosa + audiomentations**: a ``torch.utils.data.DataLoader`` (2 workers) over a Dataset doing
  ``librosa.load``, speed by ``librosa.resample``, audiomentations ``AddBackgroundNoise``/``Gain``, and a
  log-mel of the same frames with ``librosa.feature.melspectrogram``: the plain script.

Each configuration runs in its own process (so memory is its own), the sides interleaved run by run;
best of ``--runs``. Memory: the largest process's peak resident set (VmHWM) and the peak sum of the
process tree's proportional set sizes (shared pages split between processes), sampled every 0.1 s.
Also the padding waste of duration bucketing against ``DynamicBucketingSampler`` on 6,000 durations.
Writes the "loader-lhotse" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_lhotse.py [--clips 300] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from report import fmt, machine, write_section

BATCH, WORKERS, EPOCHS, BUCKET_SECONDS = 32, 2, 3, 200.0
CASES = {"features": "fbank only", "augmented": "speed 0.9/1.0/1.1 + babble 10-20 dB + volume",
         "bucketed": f"fbank, duration-bucketed batches of {BUCKET_SECONDS:g} padded s"}
SIDES = ("lhotse", "audioflow", "librosa")


def make_data(folder: Path, clips: int) -> tuple[str, str]:
    """The clips as FLAC, the babble noise file, and the CutSet manifest (written by Lhotse)."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    from realspeech import write_clips

    paths, noise = write_clips(folder, clips)
    recordings = RecordingSet.from_recordings(Recording.from_file(p) for p in paths)
    supervisions = SupervisionSet.from_segments(
        SupervisionSegment(id=r.id, recording_id=r.id, start=0.0, duration=r.duration, text="speech",
                           speaker=r.id.split("-")[0]) for r in recordings)
    manifest = folder / "cuts.jsonl.gz"
    CutSet.from_manifests(recordings=recordings, supervisions=supervisions).to_file(manifest)
    return str(manifest), noise


# ---- one configuration, in its own process ----------------------------------------------------------------

def lhotse_loader(manifest: str, noise: str, case: str):
    import torch
    from lhotse import CutSet, Fbank, FbankConfig, Recording, RecordingSet
    from lhotse.dataset import (
        CutMix,
        DynamicBucketingSampler,
        K2SpeechRecognitionDataset,
        OnTheFlyFeatures,
        PerturbSpeed,
        PerturbVolume,
        SimpleCutSampler,
    )

    # lazily read for the bucketing sampler (as icefall's recipes do: it streams), eagerly for the simple one
    cuts = CutSet.from_jsonl_lazy(manifest) if case == "bucketed" else CutSet.from_file(manifest)
    transforms = []
    if case == "augmented":
        noise_cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings([Recording.from_file(noise)]))
        transforms = [PerturbSpeed(factors=[0.9, 1.1], p=2 / 3), CutMix(cuts=noise_cuts, snr=(10, 20), p=0.5),
                      PerturbVolume(p=0.5)]
    dataset = K2SpeechRecognitionDataset(input_strategy=OnTheFlyFeatures(Fbank(FbankConfig(num_mel_bins=80))),
                                         cut_transforms=transforms)
    if case == "bucketed":
        sampler = DynamicBucketingSampler(cuts, max_duration=BUCKET_SECONDS, num_buckets=30, shuffle=True, seed=0)
    else:
        sampler = SimpleCutSampler(cuts, max_cuts=BATCH, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=WORKERS,
                                         persistent_workers=True)
    return loader, sampler


def audioflow_loader(manifest: str, noise: str, case: str):
    import audioflow.augment as A
    from audioflow import AudioDataLoader

    augmentations = None
    if case == "augmented":
        augmentations = [A.SpeedPerturb((0.9, 1.0, 1.1), p=1.0),
                         A.AddNoise(10, 20, noise=[noise], sample_rate=16000, p=0.5), A.Gain(-18, 6, p=0.5)]
    batching = {"batch_by": "duration", "batch_seconds": BUCKET_SECONDS} if case == "bucketed" else {}
    loader = AudioDataLoader(manifest, batch_size=BATCH, features="fbank", num_mel_bins=80, snip_edges=False,
                             high_freq=-400, augmentations=augmentations, shuffle=True, device="cpu",
                             batch_format="lhotse", **batching)
    return loader, loader


class LibrosaDataset:
    """The plain script: librosa.load, speed by resampling, audiomentations, librosa log-mel (25/10 ms)."""

    def __init__(self, paths: list[str], noise: str, augment: bool) -> None:
        self.paths, self.noise, self.augment, self.chain = paths, noise, augment, None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import librosa
        import torch

        y, sr = librosa.load(self.paths[i], sr=16000)
        if self.augment:
            if self.chain is None:
                import audiomentations as AM

                self.chain = AM.Compose([AM.AddBackgroundNoise(sounds_path=self.noise, min_snr_db=10, max_snr_db=20,
                                                               p=0.5),
                                         AM.Gain(min_gain_db=-18, max_gain_db=6, p=0.5)])
            factor = float(np.random.choice([0.9, 1.0, 1.1]))
            if factor != 1.0:
                y = librosa.resample(y, orig_sr=round(sr * factor), target_sr=sr)
            y = self.chain(samples=y, sample_rate=sr)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, win_length=400, hop_length=160, n_mels=80,
                                             fmin=20, fmax=7600, center=False)
        return torch.from_numpy(np.log(np.maximum(mel, 1e-10)).T.copy())


def librosa_loader(manifest: str, noise: str, case: str):
    import torch

    paths = sorted(str(p) for p in Path(manifest).parent.glob("*.flac"))

    def collate(items):
        frames = max(x.shape[0] for x in items)
        return torch.stack([torch.nn.functional.pad(x, (0, 0, 0, frames - x.shape[0])) for x in items])

    loader = torch.utils.data.DataLoader(LibrosaDataset(paths, noise, case == "augmented"), batch_size=BATCH,
                                         shuffle=True, num_workers=WORKERS, persistent_workers=True,
                                         collate_fn=collate)
    return loader, None


def child(side: str, case: str, manifest: str, noise: str) -> None:
    """Run one configuration for EPOCHS epochs; print a JSON line of per-epoch seconds and clips."""
    started = time.perf_counter()
    make = {"lhotse": lhotse_loader, "audioflow": audioflow_loader, "librosa": librosa_loader}[side]
    loader, sampler = make(manifest, noise, case)
    epochs = []
    for epoch in range(EPOCHS):
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        t0, clips = time.perf_counter(), 0
        for batch in loader:
            clips += (batch["inputs"] if isinstance(batch, dict) else batch).shape[0]
        epochs.append((time.perf_counter() - t0, clips))
    total = time.perf_counter() - started
    if hasattr(loader, "close"):
        loader.close()
    print(json.dumps({"epochs": epochs, "total_s": total}), flush=True)


# ---- the parent: runs, memory, report ---------------------------------------------------------------------

def _tree(root: int) -> list[int]:
    """``root`` and its descendants (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _kb(path: str, field: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(side: str, case: str, manifest: str, noise: str) -> dict:
    """One configuration in a fresh process, its tree's memory sampled while it runs."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", side, case, manifest, noise],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    largest = tree_total = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        largest = max([largest] + [_kb(f"/proc/{p}/status", "VmHWM:") for p in pids])
        tree_total = max(tree_total, sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
        time.sleep(0.1)
    out = proc.stdout.read().strip().splitlines()
    if proc.returncode != 0 or not out:
        raise SystemExit(f"{side} {case} failed (exit {proc.returncode})")
    result = json.loads(out[-1])
    result.update(largest_mb=largest / 1024, tree_mb=tree_total / 1024)
    return result


def bucketing_waste(manifest: str, cuts_count: int = 6000) -> list[tuple[float, str, float, float, int]]:
    """Padding waste, mean batch size and batches per epoch of both bucketing samplers on ``cuts_count``
    durations (log-normal around 8 s, 1-30 s, as read-speech corpora), sampler only, 2 epochs."""
    import warnings

    from lhotse import CutSet
    from lhotse.dataset import DynamicBucketingSampler
    from lhotse.utils import fastcopy

    from audioflow.data import AudioSampler

    warnings.filterwarnings("ignore", message=".*eagerly read CutSet")  # durations only: no audio is read
    proto = list(CutSet.from_file(manifest))
    durations = np.clip(np.random.default_rng(0).lognormal(np.log(8.0), 0.6, cuts_count), 1.0, 30.0)
    cuts = CutSet.from_cuts(fastcopy(proto[i % len(proto)], id=f"c{i}", duration=float(d))
                            for i, d in enumerate(durations))
    seconds = {c.id: c.duration for c in cuts}

    def measure(batches: list[list[float]]) -> tuple[float, float, int]:
        real = sum(sum(b) for b in batches)
        padded = sum(len(b) * max(b) for b in batches)
        return 1 - real / padded, float(np.mean([len(b) for b in batches])), len(batches)

    rows = []
    for limit in (100.0, 200.0, 400.0):
        for buckets in (10, 30):
            sampler = DynamicBucketingSampler(cuts, max_duration=limit, num_buckets=buckets, shuffle=True, seed=0)
            runs = []
            for epoch in range(2):
                sampler.set_epoch(epoch)
                runs.append(measure([[seconds[c.id] for c in batch] for batch in sampler]))
            rows.append((limit, f"Lhotse DynamicBucketingSampler ({buckets} buckets)", *np.mean(runs, 0)))
        ours = AudioSampler(len(durations), shuffle=True, batch_by="duration", batch_seconds=limit,
                            durations=durations)
        runs = [measure([[durations[i] for i in b] for b in ours.batches(epoch)]) for epoch in range(2)]
        rows.append((limit, "audioflow batch_by='duration'", *np.mean(runs, 0)))
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--sides", default=",".join(SIDES))
    args = parser.parse_args()
    cases, sides = args.cases.split(","), args.sides.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-lhotse-"))
    best: dict[tuple[str, str], dict] = {}
    try:
        manifest, noise = make_data(tmp / "clips", args.clips)
        for run in range(args.runs):
            for case in cases:
                for side in (sides if run % 2 == 0 else sides[::-1]):  # alternate who goes first
                    if side == "librosa" and case == "bucketed":
                        continue
                    result = run_measured(side, case, manifest, noise)
                    key = (side, case)
                    if key not in best or result["total_s"] < best[key]["total_s"]:
                        memory = best.get(key, {})
                        best[key] = result
                        for name in ("largest_mb", "tree_mb"):  # memory: the largest seen over runs
                            result[name] = max(result[name], memory.get(name, 0.0))
                    print(run, side, case, round(result["total_s"], 2), "s",
                          [round(c / s, 1) for s, c in result["epochs"]], "clips/s",
                          round(result["largest_mb"]), "MB", flush=True)
        waste_rows = bucketing_waste(manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(best, waste_rows, args, cases, sides)


def report(best, waste_rows, args, cases, sides) -> None:
    def rate(result, which):
        epochs = result["epochs"]
        if which == "first":
            return epochs[0][1] / epochs[0][0]
        return sum(c for _, c in epochs) / sum(s for s, _ in epochs)

    names = {"lhotse": "Lhotse 1.33", "audioflow": "audioflow", "librosa": "librosa + audiomentations"}
    lines = [
        "## Training loader vs Lhotse",
        "",
        f"`benchmarks/bench_lhotse.py` on {machine()}. {args.clips} clips of real speech (4-10 s, 16 kHz FLAC; "
        "Asterisk's recorded prompts, see `benchmarks/realspeech.py`) in one Lhotse CutSet manifest that both "
        f"loaders read; batches of {BATCH} cuts, 80-bin Kaldi fbank on the fly, {WORKERS} workers, {EPOCHS} "
        f"epochs, each configuration in a fresh process, best of {args.runs} interleaved runs. Lhotse: "
        "`K2SpeechRecognitionDataset(OnTheFlyFeatures(Fbank))`, `SimpleCutSampler` / `DynamicBucketingSampler(30 "
        "buckets)`, `DataLoader(persistent_workers=True)`, cut transforms `PerturbSpeed`, `CutMix` (babble file), "
        "`PerturbVolume`. audioflow: `AudioDataLoader('cuts.jsonl.gz', features='fbank', batch_format='lhotse')`, "
        "`SpeedPerturb`, `AddNoise(noise=[babble])`, `Gain`, other settings chosen by the loader. librosa + "
        "audiomentations: the per-item script with a librosa log-mel. Memory: peak resident set of the largest "
        "process, and peak proportional set size summed over the process tree.",
        "",
        "| case | loader | all epochs (clips/s) | first epoch (clips/s) | total (s) | largest process (MB) "
        "| process tree (MB) | vs Lhotse (all / first) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        peer = best.get(("lhotse", case))
        for side in sides:
            result = best.get((side, case))
            if result is None:
                continue
            ratio = "" if peer is None or side == "lhotse" else (
                f"**{rate(result, 'all') / rate(peer, 'all'):.2f}x** / "
                f"**{rate(result, 'first') / rate(peer, 'first'):.2f}x**")
            lines.append(f"| {CASES[case]} | {names[side]} | {fmt(rate(result, 'all'), 1)} | "
                         f"{fmt(rate(result, 'first'), 1)} | {fmt(result['total_s'], 2)} | "
                         f"{result['largest_mb']:.0f} | {result['tree_mb']:.0f} | {ratio} |")
    lines += ["", "Padding waste of duration bucketing (sampler only, 6,000 durations log-normal around 8 s, "
              "1-30 s; 2 epochs; the same padded-seconds limit per batch, batch size x longest cut):", "",
              "| limit (padded s) | sampler | padding waste | cuts per batch | batches per epoch |",
              "|---|---|---|---|---|"]
    for limit, name, waste, size, count in waste_rows:
        lines.append(f"| {limit:g} | {name} | {100 * waste:.1f} % | {size:.1f} | {count:.0f} |")
    lines += ["", "Targets (issue 18): at least 1.5x Lhotse's throughput with and without augmentation, 1.2x in "
              "the first epoch, a largest process no bigger than Lhotse's, and less padding than "
              "DynamicBucketingSampler."]
    write_section("loader-lhotse", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
