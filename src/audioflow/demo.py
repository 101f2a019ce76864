"""``audioflow demo``: make a small corpus, write it in every format, read it back, time it.

It grows with every capability; today it shows the I/O layer.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEMO_SR = 44100
FORMATS = ("wav", "flac", "mp3", "ogg", "opus", "m4a", "aiff")
SPEECH_TEXT = "Audio flow decodes every common format, fast, and tells you clearly when a file is broken."


@dataclass
class DemoRow:
    file: str
    format: str
    duration: float
    decode_ms: float

    @property
    def realtime(self) -> float:
        return self.duration / (self.decode_ms / 1000) if self.decode_ms else float("inf")


def make_corpus(sr: int = DEMO_SR, seconds: float = 4.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic clips: ``{name: [channels, frames] float32}`` (a tone, a chord, noise, a sweep)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    fade = np.minimum(1, np.minimum(t, t[::-1]) / 0.05)
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) * fade
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)) * fade
    white = rng.standard_normal(len(t))
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(1, np.arange(len(t) // 2 + 1))), len(t))
    noise = 0.3 * pink / np.abs(pink).max() * fade
    sweep_phase = 2 * np.pi * (100 * t + (8000 - 100) / (2 * seconds) * t**2)
    sweep = 0.4 * np.stack([np.sin(sweep_phase), np.sin(sweep_phase + np.pi / 2)]) * fade
    return {"tone_440hz": tone[None], "chord_c_major": chord[None], "pink_noise": noise[None],
            "stereo_sweep": sweep}


def speak(text: str, path: Path) -> bool:
    """Render ``text`` to a WAV with espeak-ng when it is installed; False when it is not."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return False
    result = subprocess.run([exe, "-w", str(path), text], capture_output=True, timeout=60, check=False)
    return result.returncode == 0 and path.exists() and path.stat().st_size > 44


def run_demo(out_dir: Path | None = None) -> tuple[Path, list[DemoRow], list[str]]:
    """Build the corpus under ``out_dir`` (default: a new temporary folder) and time reading it back.

    Returns:
        The folder, one row per file, and notes (what was skipped and why).
    """
    from . import io

    out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="audioflow-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    clips = make_corpus()
    speech_wav = out_dir / "speech_espeak.src.wav"
    if speak(SPEECH_TEXT, speech_wav):
        y, sr = io.load(speech_wav, sr=DEMO_SR, mono=True)
        clips["speech_espeak"] = y[None]
        speech_wav.unlink()
    else:
        notes.append("espeak-ng not found: no speech clip (install espeak-ng, or run `make demo` as root)")
    rows: list[DemoRow] = []
    for name, y in clips.items():
        for fmt in FORMATS:
            path = out_dir / f"{name}.{fmt}"
            io.save(path, y, DEMO_SR)
            io.load(path)  # warm the decoder's code path once, as a training loop would be
            t0 = time.perf_counter()
            decoded, sr = io.load(path, mono=False)
            elapsed = time.perf_counter() - t0
            rows.append(DemoRow(path.name, fmt, decoded.shape[-1] / sr, elapsed * 1000))
    return out_dir, rows, notes


@dataclass
class StepRow:
    step: str
    shape: str
    ms_per_clip: float
    seconds_per_clip: float

    @property
    def realtime(self) -> float:
        return self.seconds_per_clip / (self.ms_per_clip / 1000) if self.ms_per_clip else float("inf")


def run_feature_demo(out_dir: Path, sample_rate: int = 16000) -> list[StepRow]:
    """Load the corpus at 16 kHz mono as one padded batch, augment it and extract features; time each
    step per clip, and write the augmented speech (or tone) next to the corpus for listening."""
    import torch

    from . import augment as A
    from . import features as F
    from . import io

    paths = sorted(out_dir.glob("*.flac"))
    clips = [torch.from_numpy(io.load(p, sr=sample_rate)[0]) for p in paths]
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.zeros(len(clips), int(lengths.max()))
    for i, c in enumerate(clips):
        batch[i, : len(c)] = c
    seconds = float(lengths.double().mean()) / sample_rate
    augment = A.Compose([A.TimeStretch(0.85, 1.15, p=1.0), A.PitchShift(-2, 2, p=1.0),
                         A.AddNoise(snr_db=(15, 30), noise_color=["white", "pink"], p=1.0),
                         A.LowPassFilter(sample_rate, 3000, 7500, p=0.5), A.Gain(-6, 6, p=1.0)], seed=0)
    steps = {
        "augment (stretch+shift, noise, filter, gain)": lambda: augment(batch, lengths),
        "log-mel (80 bands)": lambda: F.LogMel(sample_rate, 400, hop_length=160, n_mels=80)(batch, lengths),
        "MFCC (40)": lambda: F.MFCC(sample_rate, 40, melkwargs={"n_fft": 400, "hop_length": 160,
                                                                "n_mels": 80})(batch, lengths),
        "Whisper log-mel": lambda: F.WhisperLogMel()(batch, lengths),
        "Kaldi fbank (80)": lambda: F.Fbank(sample_rate, 80)(batch * 32768, lengths),
        "fused stretch -> log-mel": lambda: A.SpectralStretch(F.LogMel(sample_rate, 400, hop_length=160, n_mels=80),
                                                              0.85, 1.15, -2, 2, p=1.0, seed=0)(batch, lengths),
    }
    rows = []
    for name, fn in steps.items():
        fn()  # warm up
        t0 = time.perf_counter()
        out = fn()
        elapsed = (time.perf_counter() - t0) * 1000 / len(clips)
        shape = out[0].shape if isinstance(out, tuple) else out.shape
        rows.append(StepRow(name, "x".join(str(d) for d in shape), elapsed, seconds))
    augmented, aug_lengths = augment(batch, lengths)
    pick = next((i for i, p in enumerate(paths) if p.stem.startswith("speech")), 0)
    io.save(out_dir / f"{paths[pick].stem}.augmented.wav", augmented[pick, : aug_lengths[pick]].numpy(), sample_rate)
    return rows


KEYWORDS = ("yes", "no", "stop", "go")
# espeak-ng voice variants, speeds (words per minute) and pitches: each clip a different speaker-ish
_VARIANTS = [(v, s, p) for v in ("m1", "m3", "m5", "m7", "f1", "f2", "f3", "f4") for s, p in ((140, 35), (175, 60),
                                                                                             (200, 45))]


@dataclass
class TrainingReport:
    steps: int
    train_clips: int
    test_clips: int
    first_loss: float
    last_loss: float
    test_accuracy: float
    seconds: float
    loader: dict


def make_keyword_corpus(folder: Path) -> tuple[list[str], list[str]]:
    """Spoken keywords (espeak-ng, 24 voice/speed/pitch variants each) as 16 kHz WAVs; paths and labels."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise RuntimeError("espeak-ng is needed for the keyword corpus (apt install espeak-ng)")
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for word in KEYWORDS:
        for number, (voice, speed, pitch) in enumerate(_VARIANTS):
            path = folder / f"{word}_{number:02d}.wav"
            if not path.exists():
                subprocess.run([exe, "-v", f"en+{voice}", "-s", str(speed), "-p", str(pitch), "-w", str(path), word],
                               capture_output=True, timeout=60, check=True)
            paths.append(str(path))
            labels.append(word)
    return paths, labels


def run_training_demo(out_dir: Path, steps: int = 300, batch_size: int = 16, seed: int = 0,
                      lr: float = 3e-3) -> TrainingReport:
    """Train a small CNN keyword classifier on log-mel features through :class:`AudioDataLoader` (augmented:
    gain, noise, stretch and pitch shift), then score it on voices it did not hear."""
    import torch

    from . import augment as A
    from .data import AudioDataLoader

    paths, labels = make_keyword_corpus(Path(out_dir) / "keywords")
    held_out = {f"_{n:02d}." for n in (2, 10, 18)}  # three voices never trained on
    train = [(p, w) for p, w in zip(paths, labels, strict=True) if not any(h in p for h in held_out)]
    test = [(p, w) for p, w in zip(paths, labels, strict=True) if any(h in p for h in held_out)]
    feature = {"features": "logmel", "n_mels": 40, "hop_length": 160, "n_fft": 400}
    augmentations = [A.Gain(-6, 6, p=0.5), A.AddNoise(min_snr_db=10, max_snr_db=30, p=0.5),
                     A.TimeStretch(0.85, 1.15, p=0.5), A.PitchShift(-1.5, 1.5, p=0.5)]
    torch.manual_seed(seed)
    block = lambda i, o: [torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]  # noqa: E731
    model = torch.nn.Sequential(
        *block(1, 16), torch.nn.MaxPool2d(2), *block(16, 32), torch.nn.MaxPool2d(2), *block(32, 64),
        # pool over time only: where in frequency the energy sits is what tells the words apart
        torch.nn.AdaptiveMaxPool2d((4, 1)), torch.nn.Flatten(), torch.nn.Linear(256, len(KEYWORDS)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    started = time.perf_counter()
    losses: list[float] = []
    with AudioDataLoader([p for p, _ in train], labels=[w for _, w in train], batch_size=batch_size, shuffle=True,
                         seed=seed, max_duration=1.0, augmentations=augmentations, device="cpu", **feature) as loader:
        while len(losses) < steps:
            for features, target in loader:
                # per-utterance normalisation: the loudness is the augmentation's, not the word's
                x = (features - features.mean((1, 2), keepdim=True)) / (features.std((1, 2), keepdim=True) + 1e-5)
                loss = torch.nn.functional.cross_entropy(model(x[:, None]), target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                if len(losses) == steps:
                    break
        stats = loader.stats()
        classes = loader.classes
    model.eval()
    correct = 0
    with AudioDataLoader([p for p, _ in test], labels=[w for _, w in test], batch_size=len(test), max_duration=1.0,
                         device="cpu", num_workers=0, **feature) as evaluation, torch.no_grad():
        assert evaluation.classes == classes
        for features, target in evaluation:
            x = (features - features.mean((1, 2), keepdim=True)) / (features.std((1, 2), keepdim=True) + 1e-5)
            correct += int((model(x[:, None]).argmax(1) == target).sum())
    return TrainingReport(steps, len(train), len(test), float(np.mean(losses[:10])), float(np.mean(losses[-10:])),
                          correct / len(test), time.perf_counter() - started, stats)


def run_processing_demo(corpus: Path, out_dir: Path):
    """``audioflow process`` on the demo corpus's FLAC and MP3 files: split at silences, loudness-normalise,
    analyse, extract MFCCs. Returns the run's summary."""
    from .pipeline import run

    inputs = sorted(str(p) for p in Path(corpus).glob("*.flac")) + sorted(str(p) for p in Path(corpus).glob("*.mp3"))
    return run(inputs, "split:method=silence,max=5,enhance:lufs=-23,analyze,features:name=mfcc,n_mfcc=20",
               out_dir)


DEMO_DIALOGUE = [
    (0, "Good morning. Did you get the recordings from the field trip?"),
    (1, "Yes, I copied all forty files to the shared drive last night."),
    (2, "Great. Can we have the transcripts ready before Friday?"),
    (0, "I think so, if the machine does the first pass for us."),
    (1, "Then let us start right away."),
]


def run_speech_demo(out_dir: Path) -> tuple[Any, str, list[str]]:
    """A three-voice dialogue synthesized here (Piper, then flite or espeak-ng voices), through
    ``audioflow process -s vad,diarize,transcribe``. Returns the run's summary, the speaker-attributed
    transcript and the voices used."""
    from .io import resample, save
    from .pipeline import run
    from .speech import synthesize

    voices = (["piper:joe", "flite:slt", "flite:awb"] if shutil.which("flite")
              else ["piper:joe", "espeak:en+f3", "espeak:en-us+m7"])
    sr = 16000
    rng = np.random.default_rng(0)
    parts = [np.zeros(sr // 2, np.float32)]
    for speaker, text in DEMO_DIALOGUE:
        speech = synthesize(text, voices[speaker])
        parts += [resample(speech.samples, speech.sample_rate, sr), np.zeros(int(rng.uniform(0.4, 0.9) * sr),
                                                                             np.float32)]
    dialogue = np.concatenate(parts)
    dialogue = 0.8 * dialogue / np.abs(dialogue).max() + 0.002 * rng.standard_normal(len(dialogue)).astype(np.float32)
    folder = Path(out_dir) / "speech"
    folder.mkdir(parents=True, exist_ok=True)
    save(folder / "dialogue.wav", dialogue.astype(np.float32), sr)
    summary = run([str(folder / "dialogue.wav")], "vad,diarize,transcribe", Path(out_dir) / "speech-processed")
    transcript = (Path(out_dir) / "speech-processed" / "transcripts" / "dialogue.txt").read_text()
    return summary, transcript, voices
