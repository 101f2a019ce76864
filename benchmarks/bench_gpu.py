"""The GPU path in one run: the training loader feeding a real model, features and augmentations on the
device against torchaudio on the same device and against our own CPU path, and the model stages that
can use an accelerator. Made for a lent GPU machine (~15 minutes in all, no network): every part has a
time cap, and the figures are written after each part, so a failure or a time-out keeps the others.

    python3 benchmarks/bench_gpu.py --device cuda --out results/     # on the GPU machine (≤ 6 min)
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --quick --out /tmp/gpu   # here (≤ 2 min)
    .venv/bin/python benchmarks/bench_gpu.py --publish results/bench_gpu.json     # → docs/benchmarks.md

Parts:
1. loader: a corpus made on the spot (2-10 s clips, 10 classes; loose FLAC and a packed dataset), a
   ResNet-style CNN on log-mel trained in bf16 for a fixed number of steps with noise, time stretch,
   pitch shift and SpecAugment. For each loader: samples/s, GPU utilisation (NVML, sampled), the share
   of step time spent waiting for data, host CPU use; the model alone on device-resident batches gives
   the ceiling. The baseline is a torch DataLoader over librosa + audiomentations in CPU workers.
2. features: a batch of 32 x 10 s at 16 kHz: ms per batch of each feature and augmentation.
3. models: the speech stages on a two-voice recording, x real time on the device and on the CPU.

``scripts/device-setup.sh`` prepares the wheels, model files and the recording the GPU machine lacks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section

SR = 16000
N_MELS = 64
MEL = {"n_fft": 400, "hop_length": 160, "n_mels": N_MELS}  # 25 ms windows, 10 ms hop
CLASSES = 10


# ---------------------------------------------------------------------------------------------- set-up
class Config:
    """Sizes of one run: the full run for an accelerator, or a quick one with the same code paths."""

    def __init__(self, quick: bool, device: torch.device) -> None:
        cores = os.cpu_count() or 1
        self.quick = quick
        self.clips = 48 if quick else 4096
        self.min_s, self.max_s = (2.0, 4.0) if quick else (2.0, 10.0)
        self.batch = 8 if quick else 64
        self.width = 8 if quick else 64
        self.warmup = 2 if quick else 10
        self.steps = 6 if quick else 300
        self.run_cap_s = 20.0 if quick else 45.0  # one training run's measured steps stop here
        self.baseline_workers = min(2, cores) if quick else cores
        self.feature_batch, self.feature_seconds = (4, 2.0) if quick else (32, 10.0)
        self.feature_reps = 3 if quick else 20
        self.speech_seconds = 20.0 if quick else 60.0
        self.device = device
        self.runs: list[str] = []  # loader runs to do (parts of their names); all when empty
        self.frames = int(self.max_s * SR) // MEL["hop_length"] + 1  # log-mel frames of the longest clip


class Results:
    """Figures gathered so far, written (JSON and Markdown) after every part."""

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out, self.data = out, {"meta": meta, "loader": None, "features": None, "models": None, "errors": {}}
        out.mkdir(parents=True, exist_ok=True)

    def save(self) -> None:
        (self.out / "bench_gpu.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out / "bench_gpu.md").write_text(render(self.data))

    def part(self, name: str, fn: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            self.data[name] = fn()
        except Exception as e:  # one part failing must not lose the others' figures
            self.data["errors"][name] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
            print(f"[bench_gpu] {name} failed: {e}", flush=True)
        print(f"[bench_gpu] {name}: {time.perf_counter() - started:.1f} s", flush=True)
        self.save()


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(card=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
        try:
            import pynvml

            pynvml.nvmlInit()
            info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception as e:  # NVML missing: utilisation is then reported as n/a
            info["driver"] = f"unknown ({e})"
    try:
        import torchaudio

        info["torchaudio"] = torchaudio.__version__
    except Exception as e:
        info["torchaudio"] = f"unavailable ({type(e).__name__})"
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------- the corpus
def _clip(args: tuple[int, str, float, float]) -> tuple[str, int]:
    """One clip: a harmonic tone whose pitch band is its class, with vibrato, a slow level contour and a
    noise floor, written as 16-bit FLAC (compresses like real recordings, not like silence)."""
    import soundfile as sf

    i, folder, min_s, max_s = args
    rng = np.random.default_rng(i)
    label = i % CLASSES
    seconds = rng.uniform(min_s, max_s)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110.0 * 2 ** (label / 4 + rng.uniform(-0.08, 0.08))
    phase = 2 * np.pi * f0 * t + rng.uniform(1, 4) * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
    tone = sum(rng.uniform(0.05, 0.3) / k * np.sin(k * phase) for k in range(1, 7))
    contour = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6))
    y = tone * contour + 0.01 * rng.standard_normal(len(t))
    path = os.path.join(folder, f"{label}", f"clip{i:05d}.flac")
    sf.write(path, y.astype(np.float32), SR, subtype="PCM_16")
    return path, label


def make_corpus(folder: Path, cfg: Config) -> tuple[list[str], list[int], str, dict[str, Any]]:
    """Loose FLAC files and the same clips packed (int16 waveforms); returns paths, labels, the packed
    dataset's path and what making them cost."""
    import multiprocessing as mp

    from audioflow import store

    for label in range(CLASSES):
        (folder / "flac" / str(label)).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(i, str(folder / "flac"), cfg.min_s, cfg.max_s) for i in range(cfg.clips)]
    with mp.get_context("spawn").Pool(os.cpu_count() or 1) as pool:  # spawn: CUDA may be initialised here
        made = pool.map(_clip, jobs, chunksize=16)
    paths, labels = [p for p, _ in made], [label for _, label in made]
    flac_s = time.perf_counter() - started
    started = time.perf_counter()
    packed = str(folder / "packed.afds")
    store.write(paths, packed, {"audio": store.WaveformField(SR, dtype="int16")}, progress=False)
    ds = store.open(packed)
    if len(ds) != len(paths):
        raise RuntimeError(f"packed {len(ds)} rows of {len(paths)} clips")
    mib = sum(os.path.getsize(p) for p in paths) / 2**20
    return paths, labels, packed, {"clips": len(paths), "flac_mib": round(mib, 1), "flac_s": round(flac_s, 1),
                                   "pack_s": round(time.perf_counter() - started, 1),
                                   "clip_seconds": [cfg.min_s, cfg.max_s]}


# -------------------------------------------------------------------------------------------- the model
class Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class AudioCNN(nn.Module):
    """A ResNet-18-shaped classifier over log-mel ``[batch, n_mels, frames]`` (frames of any length:
    global average pooling at the end). ``width`` 64 gives ResNet-18's channel counts."""

    def __init__(self, n_mels: int = N_MELS, classes: int = CLASSES, width: int = 64) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        self.stem = nn.Sequential(nn.Conv2d(1, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers, cin = [], width
        for i, w in enumerate(widths):
            layers += [Residual(cin, w, 1 if i == 0 else 2), Residual(w, w, 1)]
            cin = w
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.norm(features.unsqueeze(1)))
        return self.head(self.layers(x).mean(dim=(2, 3)))


def make_model(cfg: Config) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = AudioCNN(width=cfg.width).to(cfg.device)
    if cfg.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


# ------------------------------------------------------------------------------------ sampling the host
def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat (0, 0 where it does not exist)."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


class Monitor:
    """GPU utilisation (NVML: % of time a kernel ran, sampled every 0.1 s) and the share of all host
    cores busy, between ``start()`` and ``stop()``."""

    def __init__(self, device: torch.device) -> None:
        self.handle, self.samples = None, []
        if device.type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
                self._nvml = pynvml
            except Exception:  # reported as n/a
                self.handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Monitor:
        self.samples, self._stop = [], threading.Event()
        self._cpu0 = _cpu_times()
        if self.handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def stop(self) -> dict[str, float | None]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        busy0, total0 = self._cpu0
        busy1, total1 = _cpu_times()
        cpu = (busy1 - busy0) / (total1 - total0) if total1 > total0 else None
        gpu = statistics.fmean(self.samples) if self.samples else None
        return {"gpu_util_pct": None if gpu is None else round(gpu, 1),
                "host_cpu_pct": None if cpu is None else round(100 * cpu, 1)}


# ---------------------------------------------------------------------------------------- the loaders
def spec_augment_numpy(logmel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SpecAugment as a per-item script does it: one band of up to 8 mel bins, one span of up to 40
    frames, set to the mean."""
    out = logmel.copy()
    f = int(rng.integers(0, 9))
    f0 = int(rng.integers(0, max(1, out.shape[0] - f)))
    out[f0:f0 + f] = out.mean()
    t = int(rng.integers(0, min(40, out.shape[1] // 5) + 1))
    t0 = int(rng.integers(0, max(1, out.shape[1] - t)))
    out[:, t0:t0 + t] = out.mean()
    return out


class BaselineDataset(torch.utils.data.Dataset):
    """The plain recipe: librosa.load, audiomentations (noise, stretch, pitch), a random 10 s crop,
    librosa log-mel and numpy SpecAugment, one item at a time in DataLoader workers."""

    def __init__(self, paths: list[str], labels: list[int], max_s: float) -> None:
        self.paths, self.labels, self.max_samples = paths, labels, int(max_s * SR)
        self.chain = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import audiomentations as AM
        import librosa

        if self.chain is None:
            self.chain = AM.Compose([AM.AddGaussianSNR(min_snr_db=10.0, max_snr_db=30.0, p=1.0),
                                     AM.TimeStretch(min_rate=0.8, max_rate=1.2, leave_length_unchanged=False, p=1.0),
                                     AM.PitchShift(min_semitones=-2, max_semitones=2, p=1.0)])
        rng = np.random.default_rng()
        y, _ = librosa.load(self.paths[i], sr=SR, mono=True)
        y = self.chain(samples=y, sample_rate=SR)
        if len(y) > self.max_samples:
            start = int(rng.integers(0, len(y) - self.max_samples + 1))
            y = y[start:start + self.max_samples]
        mel = librosa.feature.melspectrogram(y=y, sr=SR, **MEL)
        logmel = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
        return torch.from_numpy(spec_augment_numpy(logmel, rng).astype(np.float32)), self.labels[i]


def pad_collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    frames = max(x.shape[-1] for x, _ in items)
    features = torch.stack([nn.functional.pad(x, (0, frames - x.shape[-1]), value=float(x.min())) for x, _ in items])
    return features, torch.tensor([label for _, label in items])


def baseline_loader(paths: list[str], labels: list[int], cfg: Config) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(BaselineDataset(paths, labels, cfg.max_s), batch_size=cfg.batch,
                                       shuffle=True, drop_last=True, num_workers=cfg.baseline_workers,
                                       collate_fn=pad_collate, pin_memory=cfg.device.type == "cuda",
                                       persistent_workers=True, prefetch_factor=4)


def audioflow_loader(data: Any, labels: list[int], cfg: Config) -> Any:
    """The same work with audioflow's defaults: noise, stretch and pitch run batched on the device, the
    stretch and pitch fused into the log-mel."""
    import audioflow.augment as A
    from audioflow import AudioDataLoader

    augmentations = [A.AddNoise(min_snr_db=10.0, max_snr_db=30.0, p=1.0), A.TimeStretch(0.8, 1.2, p=1.0),
                     A.PitchShift(-2, 2, p=1.0)]
    return AudioDataLoader(data, labels, batch_size=cfg.batch, sample_rate=SR, max_duration=cfg.max_s,
                           features="logmel", augmentations=augmentations, device=cfg.device, shuffle=True,
                           drop_last=True, **MEL)


class GPUSpecAugment(nn.Module):
    """SpecAugment on the device batch (audioflow's masks), as the training step applies it."""

    def __init__(self) -> None:
        super().__init__()
        import audioflow.augment as A

        self.freq, self.time = A.FreqMask(8, mask_value="mean"), A.TimeMask(40, mask_value="mean", max_fraction=0.2)

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        x, frames = self.freq(x, frames)
        return self.time(x, frames)[0]


# ---------------------------------------------------------------------------------------- training runs
def _unpack(batch: Any, cfg: Config, spec: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels on the device, the frames padded to the longest clip's: one input shape for
    every step, as a CNN trained with ``cudnn.benchmark`` wants (each new shape is benchmarked anew)."""
    if hasattr(batch, "features"):  # audioflow's Batch: already on the device, augmented and featurised
        x, y = batch.features, batch.labels.to(cfg.device, non_blocking=True)
        x = spec(x, batch.lengths) if spec is not None else x
    else:
        x, y = batch[0].to(cfg.device, non_blocking=True), batch[1].to(cfg.device, non_blocking=True)
    frames = cfg.frames
    x = nn.functional.pad(x[..., :frames], (0, frames - min(frames, x.shape[-1])))
    return x, y


def train(make_batches: Callable[[], Any], cfg: Config, spec: nn.Module | None, monitor: Monitor,
          with_model: bool = True) -> dict[str, Any]:
    """``cfg.warmup`` steps, then up to ``cfg.steps`` measured steps (or ``cfg.run_cap_s`` seconds): samples/s,
    the share of step time spent waiting for the next batch, GPU and host use, the loss before and after.
    Without the model, only the batches are made (and waited for): the loader's capacity."""
    model, opt = make_model(cfg)
    loss_fn = nn.CrossEntropyLoss()
    source = make_batches()
    it = iter(source)
    waits, samples, losses, steps = 0.0, 0, [], 0
    started = None
    try:
        for step in range(cfg.warmup + cfg.steps):
            if step == cfg.warmup:
                monitor.start()
                started, waits, samples = time.perf_counter(), 0.0, 0
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                it = iter(source)
                batch = next(it)
            x, y = _unpack(batch, cfg, spec)
            waits += time.perf_counter() - t0
            samples += len(y)
            if not with_model:
                sync(cfg.device)
                losses.append(float("nan"))
            else:
                losses.append(step_model(model, opt, loss_fn, x, y, cfg))
            if started is not None:
                steps += 1
                if time.perf_counter() - started > cfg.run_cap_s:
                    break
        elapsed = time.perf_counter() - started
        use = monitor.stop()
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
        else:
            source._iterator = None  # a persistent DataLoader's workers stop with their iterator
    return {"steps": steps, "samples_per_s": round(samples / elapsed, 1), "wait_pct": round(100 * waits / elapsed, 1),
            **use, "loss_first": round(losses[0], 3), "loss_last": round(statistics.fmean(losses[-5:]), 3)}


def step_model(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
               cfg: Config) -> float:
    """One training step in bf16 autocast (on CUDA); the loss, read back as the usual logging does (which
    also waits for the step to finish)."""
    with torch.autocast(cfg.device.type, dtype=torch.bfloat16, enabled=cfg.device.type == "cuda"):
        loss = loss_fn(model(x.float().contiguous()), y.long())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def model_alone(cfg: Config, monitor: Monitor) -> dict[str, Any]:
    """The ceiling: the same steps on four batches already on the device (random log-mel of 10 s clips,
    which the model learns by heart: its loss goes to 0)."""
    frames = cfg.frames
    g = torch.Generator(device="cpu").manual_seed(0)
    batches = [(torch.randn(cfg.batch, N_MELS, frames, generator=g).to(cfg.device),
                torch.randint(0, CLASSES, (cfg.batch,), generator=g).to(cfg.device)) for _ in range(4)]

    class Resident:
        def __iter__(self):
            while True:
                yield from batches

        def close(self) -> None:
            pass

    return train(Resident, cfg, None, monitor)


def loader_part(cfg: Config, workdir: Path) -> dict[str, Any]:
    paths, labels, packed, corpus = make_corpus(workdir, cfg)
    print(f"[bench_gpu] corpus: {corpus}", flush=True)
    monitor = Monitor(cfg.device)
    runs: dict[str, Any] = {}
    spec = GPUSpecAugment().to(cfg.device)
    plan = {
        "model alone (batches already on the device)": lambda: model_alone(cfg, monitor),
        "audioflow, packed dataset": lambda: train(lambda: audioflow_loader(packed, labels, cfg), cfg, spec, monitor),
        "audioflow, FLAC files": lambda: train(lambda: audioflow_loader(paths, labels, cfg), cfg, spec, monitor),
        "audioflow, FLAC files, no model (the loader's capacity)":
            lambda: train(lambda: audioflow_loader(paths, labels, cfg), cfg, spec, monitor, with_model=False),
        "DataLoader + librosa + audiomentations, FLAC files":
            lambda: train(lambda: baseline_loader(paths, labels, cfg), cfg, None, monitor),
    }
    for name, run in plan.items():
        if cfg.runs and not any(part.lower() in name.lower() for part in cfg.runs):
            continue
        started = time.perf_counter()
        try:
            runs[name] = run()
        except Exception as e:  # the other runs still count
            runs[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=6)}
        runs[name]["wall_s"] = round(time.perf_counter() - started, 1)
        print(f"[bench_gpu] {name}: {runs[name]}", flush=True)
    return {"corpus": corpus, "model": f"AudioCNN(width={cfg.width}), batch {cfg.batch}, bf16 autocast on CUDA",
            "runs": runs}


# -------------------------------------------------------------------------------------- features part
def _time(fn: Callable[[], Any], device: torch.device, reps: int) -> float:
    """Median ms per call after warm-up (CUDA events on a GPU, so queued work is counted). On a GPU the
    warm-up is 25 calls, the steady state of a training run: random pitch shifts use ~120 transform
    sizes, and cuFFT plans each size once per process."""
    for _ in range(25 if device.type == "cuda" else 2):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def test_signal(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """Harmonic tones with vibrato and noise, different per item (never zeros: they time faster)."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    rows = []
    for _ in range(batch):
        f0 = g.uniform(100, 400)
        phase = 2 * np.pi * f0 * t + 2 * np.sin(2 * np.pi * g.uniform(3, 6) * t)
        rows.append(sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) + 0.02 * g.standard_normal(len(t)))
    return torch.from_numpy(np.stack(rows).astype(np.float32))


def ours_ops(device: torch.device) -> dict[str, Callable[[torch.Tensor], Any]]:
    import audioflow.augment as A
    import audioflow.features as F

    spectrogram = F.Spectrogram(n_fft=400, hop_length=160).to(device)
    logmel = F.LogMel(sample_rate=SR, n_fft=400, hop_length=160, n_mels=80).to(device)
    mfcc = F.MFCC(sample_rate=SR, n_mfcc=40, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 80}).to(device)
    whisper = F.WhisperLogMel().to(device)
    fused = A.SpectralStretch(F.LogMel(sample_rate=SR, n_fft=400, hop_length=160, n_mels=80), 0.8, 1.2, -2, 2,
                              p=1.0, seed=0).to(device)
    stretch_shift = A.Compose([A.TimeStretch(0.8, 1.2, p=1.0), A.PitchShift(-2, 2, p=1.0)], seed=0)
    chain = A.Compose([A.Gain(-6, 6, p=1.0), A.AddNoise(10, 30, noise_color=["white", "pink"], p=1.0),
                       A.LowPassFilter(SR, p=0.5), A.Reverb(SR, p=0.5)], seed=0)
    masks = nn.Sequential(A.FreqMask(8), A.TimeMask(40))
    return {
        "STFT power (n_fft 400, hop 160)": spectrogram,
        "log-mel (80)": logmel,
        "MFCC (40 of 80 mels)": mfcc,
        "Whisper log-mel (80, 30 s frames)": whisper,
        "stretch 0.8-1.2 + pitch ±2 st on waveforms (torchaudio: one draw per batch)": stretch_shift,
        "stretch + pitch on waveforms (torchaudio: a draw per item, a call each)": stretch_shift,
        "stretch + pitch fused into log-mel": fused,
        "gain, noise, low-pass, reverb + log-mel + SpecAugment": lambda x: masks(logmel(chain(x))),
    }


def torchaudio_ops(device: torch.device) -> dict[str, Callable[[torch.Tensor], Any] | None]:
    """torchaudio's equivalents (None where it has none). Its TimeStretch takes one rate per call and its
    PitchShift one shift per module, so the batch gets one draw where ours draws per item."""
    try:
        import torchaudio.functional as F
        import torchaudio.transforms as T
    except Exception:
        return {}
    spectrogram = T.Spectrogram(n_fft=400, hop_length=160, power=2.0).to(device)
    mel = T.MelSpectrogram(SR, n_fft=400, hop_length=160, n_mels=80).to(device)
    to_db = T.AmplitudeToDB(stype="power", top_db=80.0).to(device)
    mfcc = T.MFCC(SR, n_mfcc=40, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 80}).to(device)
    complex_spec = T.Spectrogram(n_fft=400, hop_length=160, power=None).to(device)
    stretch = T.TimeStretch(hop_length=160, n_freq=201).to(device)
    mel_scale = T.MelScale(80, SR, n_stft=201).to(device)
    shift = T.PitchShift(SR, n_steps=2, n_fft=400, hop_length=160).to(device)
    inverse = T.InverseSpectrogram(n_fft=400, hop_length=160).to(device)

    def stretch_then_shift(x: torch.Tensor) -> torch.Tensor:
        return shift(inverse(stretch(complex_spec(x), 1.1)))

    rates = torch.linspace(0.8, 1.2, 64).tolist()
    steps = [round(v) or 1 for v in torch.linspace(-2, 2, 64).tolist()]  # torchaudio shifts whole semitones

    def per_item(x: torch.Tensor) -> list[torch.Tensor]:
        """What per-item draws cost with torchaudio: a call per item (pitch_shift builds its resampling
        kernel per call)."""
        return [F.pitch_shift(inverse(stretch(complex_spec(x[i:i + 1]), rates[i % 64])), SR, steps[i % 64],
                              n_fft=400, hop_length=160) for i in range(len(x))]

    def fused_equivalent(x: torch.Tensor) -> torch.Tensor:
        return to_db(mel_scale(stretch(complex_spec(shift(x)), 1.1).abs().pow(2)))

    return {
        "STFT power (n_fft 400, hop 160)": spectrogram,
        "log-mel (80)": lambda x: to_db(mel(x)),
        "MFCC (40 of 80 mels)": mfcc,
        "Whisper log-mel (80, 30 s frames)": None,
        "stretch 0.8-1.2 + pitch ±2 st on waveforms (torchaudio: one draw per batch)": stretch_then_shift,
        "stretch + pitch on waveforms (torchaudio: a draw per item, a call each)": per_item,
        "stretch + pitch fused into log-mel": fused_equivalent,
        "gain, noise, low-pass, reverb + log-mel + SpecAugment": None,
    }


def features_part(cfg: Config) -> dict[str, Any]:
    x_cpu = test_signal(cfg.feature_batch, cfg.feature_seconds)
    x_dev = x_cpu.to(cfg.device)
    rows: dict[str, dict[str, float | None]] = {}
    ours_dev, ours_cpu = ours_ops(cfg.device), ours_ops(torch.device("cpu"))
    theirs = torchaudio_ops(cfg.device)
    with torch.inference_mode():
        for name, op in ours_dev.items():
            row: dict[str, float | None] = {"audioflow": _time(lambda op=op: op(x_dev), cfg.device, cfg.feature_reps)}
            other = theirs.get(name)
            try:
                row["torchaudio"] = None if other is None else _time(lambda o=other: o(x_dev), cfg.device,
                                                                     cfg.feature_reps)
            except Exception as e:  # the peer failing is a figure we lack, not a failed part
                row["torchaudio"] = None
                print(f"[bench_gpu] torchaudio {name}: {type(e).__name__}: {e}", flush=True)
            if cfg.device.type != "cpu":
                cpu_op = ours_cpu[name]
                cpu_reps = max(2, cfg.feature_reps // 5)
                row["audioflow_cpu"] = _time(lambda o=cpu_op: o(x_cpu), torch.device("cpu"), cpu_reps)
            rows[name] = {k: None if v is None else round(v, 3) for k, v in row.items()}
            print(f"[bench_gpu] {name}: {rows[name]}", flush=True)
    return {"batch": f"{cfg.feature_batch} x {cfg.feature_seconds:g} s at {SR} Hz", "ms": rows}


def profile(cfg: Config, name: str, out: Path) -> None:
    """torch.profiler over a few calls of one of our feature operations; the table sorted by device time
    (self CPU time on a CPU run) goes to stdout and ``out/profile.txt``."""
    ops = ours_ops(cfg.device)
    chosen = next((k for k in ops if name.lower() in k.lower()), None)
    if chosen is None:
        raise SystemExit(f"no operation matches {name!r}; choose from: {', '.join(ops)}")
    x = test_signal(cfg.feature_batch, cfg.feature_seconds).to(cfg.device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cfg.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.inference_mode():
        for _ in range(3):
            ops[chosen](x)
        sync(cfg.device)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(5):
                ops[chosen](x)
            sync(cfg.device)
    key = "self_cuda_time_total" if cfg.device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=25)
    by_cpu = prof.key_averages().table(sort_by="cpu_time_total", row_limit=25)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.txt").write_text(f"{chosen}\n{table}\n{by_cpu}\n")
    print(chosen, table, by_cpu, sep="\n")


# ---------------------------------------------------------------------------------------- models part
def make_speech(path: Path, seconds: float = 60.0) -> None:
    """Two flite voices (slt, rms) taking turns through Harvard sentences, 16 kHz mono WAV."""
    import subprocess

    import soundfile as sf

    from audioflow import load

    sentences = ["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
                 "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
                 "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
                 "The box was thrown beside the parked truck.", "Four hours of steady work faced us.",
                 "A large size in stockings is hard to sell.", "The boy was there when the sun rose."]
    parts, total = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(200):
            voice = ("slt", "rms")[i % 2]
            wav = Path(tmp) / f"{i}.wav"
            text = " ".join(sentences[(i + k) % len(sentences)] for k in range(2))
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(wav)], check=True, capture_output=True)
            y, _ = load(wav, sr=SR)
            parts += [y, np.zeros(int(0.4 * SR), np.float32)]
            total += len(y) + int(0.4 * SR)
            if total >= seconds * SR:
                break
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.concatenate(parts)[: int(seconds * SR)], SR, subtype="PCM_16")


def models_part(cfg: Config, speech: Path | None, workdir: Path) -> dict[str, Any]:
    from audioflow import load
    from audioflow.speech.diarize import Diarizer
    from audioflow.speech.embed import SpeakerEncoder
    from audioflow.speech.vad import SileroVAD

    if speech is None:
        speech = workdir / "speech.wav"
        make_speech(speech, cfg.speech_seconds)
    y, _ = load(speech, sr=SR)
    y = y[: int(cfg.speech_seconds * SR)]
    seconds = len(y) / SR
    devices = [cfg.device] + ([torch.device("cpu")] if cfg.device.type != "cpu" else [])
    rows: dict[str, dict[str, Any]] = {}

    def rate(fn: Callable[[], Any]) -> float:
        fn()  # warm-up: model load, cuDNN plans
        t0 = time.perf_counter()
        fn()
        return round(seconds / (time.perf_counter() - t0), 1)

    vad = SileroVAD()
    rows["VAD (Silero, onnxruntime)"] = {"cpu": rate(lambda: vad.segments(y, SR)),
                                         "note": "one recurrent stream per file on the CPU: a GPU would not help"}
    spans = [(s, s + int(1.5 * SR)) for s in range(0, len(y) - int(1.5 * SR), SR // 4)]
    embed_row = rows.setdefault("speaker embeddings (GE2E, 1.5 s windows every 0.25 s)", {})
    diarize_row = rows.setdefault("diarization (VAD + embeddings + clustering)", {})
    for device in devices:
        encoder = SpeakerEncoder(device=str(device))
        embed_row[device.type] = rate(lambda e=encoder, d=device: (e.embed_windows(y, spans), sync(d)))
        diarizer = Diarizer(encoder=encoder)
        diarize_row["speakers"] = len({t.label for t in diarizer(y, SR)})
        diarize_row[device.type] = rate(lambda d=diarizer: d(y, SR))
    rows["transcription (Whisper via CTranslate2)"] = whisper_row(cfg, y, seconds)
    return {"speech_seconds": round(seconds, 1), "x_real_time": rows}


def whisper_row(cfg: Config, y: np.ndarray, seconds: float) -> dict[str, Any]:
    """Whisper tiny.en on the device when CTranslate2 and the weights are installed; else the reason."""
    try:
        import ctranslate2

        from audioflow.speech.transcribe import Transcriber
    except Exception as e:
        return {"note": f"not run: {type(e).__name__}: {e} (the CTranslate2 wheel and the Whisper weights "
                        "together exceed the 64 MiB a device call may carry)"}
    row: dict[str, Any] = {}
    for device in [cfg.device] + ([torch.device("cpu")] if cfg.device.type != "cpu" else []):
        if device.type == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            row["note"] = "CTranslate2 sees no CUDA device (its wheel is built for CUDA 12)"
            continue
        try:
            model = Transcriber(device=str(device.type))
            model(y[: 5 * SR], SR)
            t0 = time.perf_counter()
            model(y, SR)
            row[device.type] = round(seconds / (time.perf_counter() - t0), 1)
        except Exception as e:  # a missing model or CUDA library is a reason, not a crash
            row.setdefault("note", f"{device.type}: {type(e).__name__}: {e}")
    return row


# -------------------------------------------------------------------------------------------- report
def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def render(data: dict[str, Any]) -> str:
    meta = data["meta"]
    card = meta.get("card", "CPU only")
    quick = " --quick" if meta.get("quick") else ""
    lines = [f"`benchmarks/bench_gpu.py --device {meta['device']}{quick}` on **{card}** (driver "
             f"{meta.get('driver', 'n/a')}, CUDA {meta.get('cuda', 'n/a')}), torch {meta['torch']}, torchaudio "
             f"{meta['torchaudio']}, {meta['cores']} host cores, Python {meta['python']}; run {meta['date']}."]
    if meta.get("notes"):
        lines += [""] + [f"- {note}" for note in meta["notes"]]
    loader = data.get("loader")
    if loader:
        c = loader["corpus"]
        low, high = c["clip_seconds"]
        lines += ["", f"**Loader feeding a model.** {c['clips']} clips of {low:g}-{high:g} s "
                  f"(16 kHz FLAC, {c['flac_mib']} MiB; also packed as int16 waveforms); {loader['model']}; noise "
                  "10-30 dB SNR, time stretch 0.8-1.2, pitch shift ±2 semitones, log-mel (64), SpecAugment. "
                  "Measured after the warm-up steps; wait = share of wall time spent waiting for the next batch; "
                  "GPU = NVML utilisation sampled every 0.1 s; host CPU = share of all cores busy.", "",
                  "| loader | samples/s | x baseline | GPU util % | wait % | host CPU % | steps | loss first → last |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        base = next((r.get("samples_per_s") for n, r in loader["runs"].items() if n.startswith("DataLoader")), None)
        for name, r in loader["runs"].items():
            if "error" in r:
                lines.append(f"| {name} | failed: {r['error'].splitlines()[0][:160]} | | | | | | |")
                continue
            ratio = r["samples_per_s"] / base if base and name.startswith("audioflow") else None
            loss = "" if math.isnan(r["loss_first"]) else f"{r['loss_first']} → {r['loss_last']}"
            lines.append(f"| {name} | {_f(r['samples_per_s'])} | {_f(ratio)} | {_f(r['gpu_util_pct'])} | "
                         f"{_f(r['wait_pct'])} | {_f(r['host_cpu_pct'])} | {r['steps']} | {loss} |")
    features = data.get("features")
    if features:
        lines += ["", f"**Features and augmentations**, ms per batch of {features['batch']} (median; CUDA events on "
                  "the GPU). Ours draws a stretch rate and a pitch shift per item; torchaudio's transforms take one "
                  "per call: the first waveform row gives it one draw per batch, the second a call per item.",
                  "",
                  "| operation | audioflow on the device | torchaudio on the device | torchaudio / audioflow | "
                  "audioflow on the CPU |", "| --- | ---: | ---: | ---: | ---: |"]
        for name, r in features["ms"].items():
            ratio = r["torchaudio"] / r["audioflow"] if r.get("torchaudio") and r["audioflow"] else None
            lines.append(f"| {name} | {_f(r['audioflow'], 2)} | {_f(r.get('torchaudio'), 2)} | {_f(ratio, 2)} | "
                         f"{_f(r.get('audioflow_cpu', r['audioflow']), 2)} |")
    models = data.get("models")
    if models:
        lines += ["", f"**Model stages**, x real time on {models['speech_seconds']} s of two voices taking turns.", "",
                  "| stage | on the device | on the CPU | note |", "| --- | ---: | ---: | --- |"]
        for name, r in models["x_real_time"].items():
            note = r.get("note", "") + (f"{r['speakers']} speakers found" if "speakers" in r else "")
            lines.append(f"| {name} | {_f(r.get('cuda'))} | {_f(r.get('cpu'))} | {note} |")
    lines += ["", "Run it on a GPU machine without network: `scripts/device-setup.sh` here, then there, with the "
              "folder `.device` carried along: `eval \"$(bash scripts/device-setup.sh --install)\" && python3 "
              "benchmarks/bench_gpu.py --device cuda --out $OUT --speech .device/speech.wav`."]
    for name, error in data.get("errors", {}).items():
        lines += ["", f"{name} failed: `{error.splitlines()[0]}`"]
    return "\n".join(lines) + "\n"


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from several runs on one kind of device: each part from the last run that has it; the
    meta of the first run, with the dates of all."""
    merged: dict[str, Any] = {"meta": dict(runs[0]["meta"]), "errors": {}}
    merged["meta"]["notes"] = [note for run in runs for note in run["meta"].get("notes", [])]
    for run in runs:
        for part in ("loader", "features", "models"):
            if run.get(part):
                if part == "loader" and merged.get("loader"):  # runs repeated later replace earlier ones
                    earlier = merged["loader"]["runs"]
                    merged["loader"] = {**run["loader"], "runs": {**earlier, **run["loader"]["runs"]}}
                else:
                    merged[part] = run[part]
                merged["errors"].pop(part, None)
            elif part in run.get("errors", {}) and not merged.get(part):
                merged["errors"][part] = run["errors"][part]
    dates = sorted({run["meta"]["date"] for run in runs})
    merged["meta"]["date"] = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, same code paths (≤ 2 min on 2 cores)")
    parser.add_argument("--out", type=Path, default=Path("bench-gpu"), help="folder for bench_gpu.json and .md")
    parser.add_argument("--speech", type=Path, default=None, help="a speech WAV for the model stages "
                        "(default: made with flite)")
    parser.add_argument("--parts", default="features,loader,models", help="which parts, comma-separated")
    parser.add_argument("--runs", default="", help="only the loader runs whose names contain one of these "
                        "comma-separated words (e.g. 'model alone,audioflow')")
    parser.add_argument("--publish", type=Path, nargs="+", default=None, help="write these bench_gpu.json files "
                        "into docs/benchmarks.md (each part from the last file that has it: parts of one device "
                        "session run in several calls)")
    parser.add_argument("--profile", default=None, help="profile one feature operation (a name, or part of one) "
                        "on the device with torch.profiler and print its top operations")
    parser.add_argument("--make-speech", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_speech:
        make_speech(args.make_speech)
        return 0
    if args.publish:
        write_section("gpu", render(merge([json.loads(path.read_text()) for path in args.publish])))
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    cfg = Config(args.quick, device)
    cfg.runs = [word.strip() for word in args.runs.split(",") if word.strip()]
    if args.profile:
        profile(cfg, args.profile, args.out)
        return 0
    results = Results(args.out, {**environment(device), "quick": args.quick})
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        parts = {"features": lambda: features_part(cfg), "loader": lambda: loader_part(cfg, Path(tmp)),
                 "models": lambda: models_part(cfg, args.speech, Path(tmp))}
        for name in args.parts.split(","):
            results.part(name, parts[name])
    print(render(results.data), flush=True)
    return 1 if results.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
