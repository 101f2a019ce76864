"""The GPU gives the CPU's numbers: every feature and augmentation, the loader's batches, and the
out-of-memory fallback of ``models.py``. Marked ``gpu`` and skipped without CUDA; on a GPU machine:
``pytest -m gpu tests/test_gpu.py`` (the device image lacks PyAV: nothing here needs it).

Tolerances are relative L2 errors ‖gpu − cpu‖ / ‖cpu‖: cuFFT and pocketfft round float32 differently,
so spectra agree to ~1e-6 and everything computed from them to a few 1e-5; the phase vocoder sums phase
over frames, where float32 rounding grows with the running phase."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import audioflow.augment as A
import audioflow.features as F
from audioflow import AudioDataLoader
from audioflow.models import ModelManager

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SR = 16000
CUDA = torch.device("cuda")
TIGHT, PHASE = 1e-4, 2e-2  # float32 spectra; phase-vocoder resynthesis


def signal(batch: int = 4, seconds: float = 3.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Harmonic tones with vibrato and a noise floor, a different pitch and length per item."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    rows = []
    for _ in range(batch):
        phase = 2 * np.pi * rng.uniform(100, 400) * t + 2 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
        rows.append(sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) + 0.02 * rng.standard_normal(len(t)))
    x = torch.from_numpy(np.stack(rows).astype(np.float32))
    lengths = torch.tensor([len(t) - 1600 * i for i in range(batch)])
    x[torch.arange(len(t))[None, :] >= lengths[:, None]] = 0
    return x, lengths


def relative_error(gpu: torch.Tensor, cpu: torch.Tensor) -> float:
    gpu, cpu = gpu.detach().cpu().double(), cpu.detach().double()
    return float((gpu - cpu).norm() / cpu.norm().clamp_min(1e-30))


FEATURES = {
    "spectrogram": lambda: F.Spectrogram(n_fft=400, hop_length=160),
    "mel": lambda: F.MelSpectrogram(sample_rate=SR, n_fft=400, hop_length=160, n_mels=80),
    "logmel": lambda: F.LogMel(sample_rate=SR, n_fft=400, hop_length=160, n_mels=80),
    "mfcc": lambda: F.MFCC(sample_rate=SR, n_mfcc=40, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 80}),
    "fbank": lambda: F.Fbank(num_mel_bins=80),
    "whisper": lambda: F.WhisperLogMel(),
}


@pytest.mark.parametrize("name", FEATURES)
def test_features_match_the_cpu(name):
    x, lengths = signal()
    cpu, cpu_frames = FEATURES[name]()(x, lengths)
    gpu, gpu_frames = FEATURES[name]().to(CUDA)(x.to(CUDA), lengths.to(CUDA))
    assert gpu.device.type == CUDA.type and gpu.shape == cpu.shape
    assert torch.equal(gpu_frames.cpu(), cpu_frames)
    assert relative_error(gpu, cpu) < TIGHT, relative_error(gpu, cpu)


def test_feature_post_processing_matches_the_cpu():
    logmel = F.LogMel(sample_rate=SR, n_fft=400, hop_length=160, n_mels=80)
    x, lengths = signal()
    features, _ = logmel(x, lengths)
    for module in (F.Deltas(), F.CMVN(norm_vars=True), F.AmplitudeToDB()):
        cpu = module(features.clamp_min(1e-3) if isinstance(module, F.AmplitudeToDB) else features)
        gpu = module.to(CUDA)((features.clamp_min(1e-3) if isinstance(module, F.AmplitudeToDB) else features).to(CUDA))
        assert relative_error(gpu, cpu) < TIGHT, (type(module).__name__, relative_error(gpu, cpu))


# each made twice with one seed: the draws come from a CPU generator, so both devices get the same ones
AUGMENTATIONS = {
    "Gain": (lambda: A.Gain(-6, 6, p=1.0, seed=0), TIGHT),
    "PolarityInversion": (lambda: A.PolarityInversion(p=1.0, seed=0), TIGHT),
    "Shift": (lambda: A.Shift(-0.3, 0.3, p=1.0, seed=0), TIGHT),
    "ClippingDistortion": (lambda: A.ClippingDistortion(0, 30, p=1.0, seed=0), TIGHT),
    "TanhDistortion": (lambda: A.TanhDistortion(p=1.0, seed=0), TIGHT),
    "LowPassFilter": (lambda: A.LowPassFilter(SR, p=1.0, seed=0), TIGHT),
    "HighPassFilter": (lambda: A.HighPassFilter(SR, p=1.0, seed=0), TIGHT),
    "BandPassFilter": (lambda: A.BandPassFilter(SR, p=1.0, seed=0), TIGHT),
    "BandStopFilter": (lambda: A.BandStopFilter(SR, p=1.0, seed=0), TIGHT),
    "SpeedPerturb": (lambda: A.SpeedPerturb(p=1.0, seed=0), TIGHT),
    "RandomCrop": (lambda: A.RandomCrop(size=SR, seed=0), TIGHT),
    "TimeStretch": (lambda: A.TimeStretch(0.8, 1.2, p=1.0, seed=0), PHASE),
    "PitchShift": (lambda: A.PitchShift(-2, 2, p=1.0, seed=0), PHASE),
    "Compose(stretch, pitch)": (lambda: A.Compose([A.TimeStretch(0.8, 1.2, p=1.0), A.PitchShift(-2, 2, p=1.0)],
                                                  seed=0), PHASE),
}


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_augmentations_match_the_cpu(name):
    make, tolerance = AUGMENTATIONS[name]
    x, lengths = signal()
    cpu, cpu_lengths = make()(x, lengths)
    gpu, gpu_lengths = make().to(CUDA)(x.to(CUDA), lengths.to(CUDA))
    assert gpu.device.type == CUDA.type and gpu.shape == cpu.shape
    assert torch.equal(gpu_lengths.cpu(), cpu_lengths)
    assert relative_error(gpu, cpu) < tolerance, relative_error(gpu, cpu)


def test_fused_stretch_and_spec_masks_match_the_cpu():
    x, lengths = signal()

    def chain():
        logmel = F.LogMel(sample_rate=SR, n_fft=400, hop_length=160, n_mels=64)
        return A.SpectralStretch(logmel, 0.8, 1.2, -2, 2, p=1.0, seed=0), A.FreqMask(8, seed=1), A.TimeMask(40, seed=2)

    outs = []
    for device in ("cpu", CUDA):
        fused, freq, time_mask = (m.to(device) for m in chain())
        y, frames = fused(x.to(device), lengths.to(device))
        y, frames = freq(y, frames)
        outs.append(time_mask(y, frames))
    (cpu, cpu_frames), (gpu, gpu_frames) = outs
    assert torch.equal(gpu_frames.cpu(), cpu_frames)
    assert relative_error(gpu, cpu) < TIGHT, relative_error(gpu, cpu)


def test_noise_and_reverb_keep_their_promises_on_the_gpu():
    """Generated noise and rooms come from a generator on the data's device, so they differ from the CPU's
    sample for sample: check what the transforms promise instead (the SNR drawn; the input's RMS)."""
    x, lengths = signal(seconds=4.0)
    x, lengths = x.to(CUDA), lengths.to(CUDA)
    noise = A.AddNoise(10, 10, p=1.0, seed=0).to(CUDA)
    y, _ = noise(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        snr = 10 * torch.log10(x[i, :n].pow(2).mean() / (y[i, :n] - x[i, :n]).pow(2).mean())
        assert abs(float(snr) - 10.0) < 0.3, float(snr)
    reverb = A.Reverb(SR, p=1.0, seed=0).to(CUDA)
    wet, _ = reverb(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        ratio = float(wet[i, :n].pow(2).mean().sqrt() / x[i, :n].pow(2).mean().sqrt())
        assert abs(ratio - 1.0) < 0.02, ratio


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loader_makes_the_same_batches_on_both_devices(tmp_path, workers):
    """On CUDA the batches are pinned ahead on threads, copied on a side stream and transformed there."""
    x, lengths = signal(batch=12, seconds=3.0, seed=3)
    paths = []
    for i in range(len(x)):
        paths.append(tmp_path / f"clip{i:02d}.flac")
        sf.write(paths[-1], x[i, :lengths[i]].numpy(), SR, subtype="PCM_16")
    labels = [i % 3 for i in range(len(paths))]
    batches = []
    for device in ("cpu", CUDA):
        loader = AudioDataLoader([str(p) for p in paths], labels, batch_size=4, features="logmel", n_mels=64,
                                 augmentations=[A.TimeStretch(0.8, 1.2, p=1.0), A.PitchShift(-2, 2, p=1.0)],
                                 device=device, shuffle=True, seed=7, num_workers=workers)
        with loader:
            batches.append(list(loader))
    cpu_batches, gpu_batches = batches
    assert len(cpu_batches) == len(gpu_batches) == 3
    for cpu, gpu in zip(cpu_batches, gpu_batches, strict=True):
        assert gpu.features.device.type == CUDA.type
        assert cpu.ids == gpu.ids and torch.equal(cpu.labels, gpu.labels.cpu())
        assert torch.equal(cpu.lengths, gpu.lengths.cpu())
        assert relative_error(gpu.features, cpu.features) < 1e-3, relative_error(gpu.features, cpu.features)


def test_out_of_memory_falls_back_to_the_cpu(caplog):
    """A real CUDA out-of-memory error (16 TiB asked of the caching allocator; no managed memory)."""
    def load(device: str) -> torch.nn.Module:
        if device == "cuda":
            torch.empty(1 << 44, dtype=torch.uint8, device=device)
        return torch.nn.Linear(4, 2).to(device)

    models = ModelManager("cuda")
    model = models.get("big", load)
    assert models.loaded() == {"big": "cpu"} and next(model.parameters()).device.type == "cpu"
    assert "out of memory" in caplog.text

    def call(model: torch.nn.Module) -> torch.Tensor:
        device = next(model.parameters()).device
        if device.type == "cuda":
            torch.empty(1 << 44, dtype=torch.uint8, device=device)
        return model(torch.ones(1, 4, device=device))

    runner = ModelManager("cuda")
    out = runner.run("small", lambda device: torch.nn.Linear(4, 2).to(device), call)
    assert out.device.type == "cpu" and runner.loaded() == {"small": "cpu"}
    torch.cuda.empty_cache()
