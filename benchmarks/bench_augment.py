"""Augmentation speed, side by side in one run: audioflow.augment against audiomentations, librosa,
pedalboard (benchmark only: GPL), julius, and torch-audiomentations where it imports, on 10 s 16 kHz
clips, one clip and a batch of 32. Writes the "augment" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_augment.py [--passes 7]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from audioflow import augment as A
from report import fmt, machine, race, write_section

SR, SECONDS, BATCH = 16000, 10.0, 32
LIBS = ("audioflow", "audiomentations", "librosa", "pedalboard", "julius", "torch-audiomentations")


def clips() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * SECONDS)) / SR
    return np.stack([0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))
                     for _ in range(BATCH)]).astype(np.float32)


def _optional(name: str):
    try:
        return __import__(name)
    except Exception:  # absent, or broken with this torch (torch-audiomentations needs torchaudio)
        return None


def peers(rng: np.random.Generator) -> dict[str, dict[str, object]]:
    """{case: {library: per-clip callable on a float32 numpy clip}} for the libraries without batches."""
    import librosa

    am = _optional("audiomentations")
    pb = _optional("pedalboard")
    julius = _optional("julius")
    out: dict[str, dict[str, object]] = {}

    def u(lo, hi):
        return float(rng.uniform(lo, hi))

    def wrap(transform):
        """A per-clip call of an audiomentations transform (None when audiomentations is absent)."""
        return None if transform is None else (lambda y: transform(samples=y, sample_rate=SR))

    def amt(name, **kwargs):
        return None if am is None else getattr(am, name)(p=1.0, **kwargs)

    out["stretch+shift"] = {
        "audiomentations": wrap(am and am.Compose([amt("TimeStretch", min_rate=0.8, max_rate=1.25),
                                              amt("PitchShift", min_semitones=-4, max_semitones=4)])),
        "librosa": lambda y: librosa.effects.pitch_shift(librosa.effects.time_stretch(y, rate=u(0.8, 1.25)), sr=SR,
                                                         n_steps=u(-4, 4)),
        "pedalboard": pb and (lambda y: pb.time_stretch(y, SR, stretch_factor=u(0.8, 1.25),
                                                        pitch_shift_in_semitones=u(-4, 4))),
    }
    def logmel(y):
        return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, n_fft=512, hop_length=160, n_mels=64))

    am_pair = out["stretch+shift"]["audiomentations"]
    both = {"audiomentations": am_pair and (lambda y: logmel(am_pair(y))),
            "librosa": lambda y: logmel(out["stretch+shift"]["librosa"](y))}
    out["stretch+shift -> log-mel"] = both
    out["fused stretch+shift -> log-mel"] = dict(both)
    out["time_stretch"] = {
        "audiomentations": wrap(amt("TimeStretch", min_rate=0.8, max_rate=1.25)),
        "librosa": lambda y: librosa.effects.time_stretch(y, rate=u(0.8, 1.25)),
        "pedalboard": pb and (lambda y: pb.time_stretch(y, SR, stretch_factor=u(0.8, 1.25))),
    }
    out["pitch_shift"] = {
        "audiomentations": wrap(amt("PitchShift", min_semitones=-4, max_semitones=4)),
        "librosa": lambda y: librosa.effects.pitch_shift(y, sr=SR, n_steps=u(-4, 4)),
        "pedalboard": pb and (lambda y: pb.PitchShift(semitones=u(-4, 4))(y, SR)),
    }
    out["add_noise (white)"] = {
        "audiomentations": wrap(amt("AddGaussianSNR", min_snr_db=5, max_snr_db=40)),
    }
    out["add_noise (pink)"] = {
        "audiomentations": wrap(amt("AddColorNoise", min_snr_db=5, max_snr_db=40, min_f_decay=-3.01,
                                    max_f_decay=-3.01)),
    }
    out["gain"] = {
        "audiomentations": wrap(amt("Gain", min_gain_db=-12, max_gain_db=12)),
        "pedalboard": pb and (lambda y: pb.Gain(gain_db=u(-12, 12))(y, SR)),
    }
    out["low-pass"] = {
        "audiomentations": wrap(amt("LowPassFilter", min_cutoff_freq=150, max_cutoff_freq=7500)),
        "pedalboard": pb and (lambda y: pb.LowpassFilter(cutoff_frequency_hz=u(150, 7500))(y, SR)),
        "julius": julius and (lambda y: julius.lowpass_filter(torch.from_numpy(y), u(150, 7500) / SR)),
    }
    out["high-pass"] = {
        "audiomentations": wrap(amt("HighPassFilter", min_cutoff_freq=20, max_cutoff_freq=2400)),
        "pedalboard": pb and (lambda y: pb.HighpassFilter(cutoff_frequency_hz=u(20, 2400))(y, SR)),
        "julius": julius and (lambda y: julius.highpass_filter(torch.from_numpy(y), u(20, 2400) / SR)),
    }
    out["reverb"] = {
        "pedalboard": pb and (lambda y: pb.Reverb(room_size=u(0.2, 0.9))(y, SR)),
    }
    tam = _optional("torch_audiomentations")
    if tam is not None:  # pragma: no cover - needs a working torchaudio
        tam_gain = tam.Gain(p=1.0)
        out["gain"]["torch-audiomentations"] = lambda y: tam_gain(torch.from_numpy(y)[None, None], SR)
    return out


class _Then(torch.nn.Module):
    def __init__(self, first: torch.nn.Module, second: torch.nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x, lengths):
        return self.second(*self.first(x, lengths))


def ours() -> dict[str, torch.nn.Module]:
    from audioflow import features as F

    logmel = F.LogMel(SR, 512, hop_length=160, n_mels=64, pad_mode="constant")
    pair = A.Compose([A.TimeStretch(0.8, 1.25, p=1.0), A.PitchShift(-4, 4, p=1.0)], seed=0)
    return {
        "stretch+shift": pair,
        "stretch+shift -> log-mel": _Then(pair, logmel),
        "fused stretch+shift -> log-mel": A.SpectralStretch(logmel, 0.8, 1.25, -4, 4, p=1.0, seed=0),
        "time_stretch": A.TimeStretch(0.8, 1.25, p=1.0, seed=0),
        "pitch_shift": A.PitchShift(-4, 4, p=1.0, seed=0),
        "add_noise (white)": A.AddNoise(5, 40, p=1.0, seed=0),
        "add_noise (pink)": A.AddNoise(5, 40, noise_color="pink", p=1.0, seed=0),
        "gain": A.Gain(-12, 12, p=1.0, seed=0),
        "low-pass": A.LowPassFilter(SR, 150, 7500, p=1.0, seed=0),
        "high-pass": A.HighPassFilter(SR, 20, 2400, p=1.0, seed=0),
        "reverb": A.Reverb(SR, p=1.0, seed=0),
    }


TARGETS = {"stretch+shift": ("audiomentations", 8.0),
           "fused stretch+shift -> log-mel": ("audiomentations", 8.0), "add_noise (white)": ("all", 1.0),
           "add_noise (pink)": ("all", 1.0), "gain": ("all", 1.0), "low-pass": ("all", 1.0),
           "high-pass": ("all", 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    batch = clips()
    one, t_one, t_many = batch[0], torch.from_numpy(batch[:1]), torch.from_numpy(batch)
    full = torch.full((BATCH,), batch.shape[-1])
    mine, others = ours(), peers(np.random.default_rng(0))
    lines = [
        "## Augmentations: `audioflow.augment` against audiomentations, librosa, pedalboard, julius",
        "",
        f"`benchmarks/bench_augment.py` on {machine()}. 10 s at 16 kHz, p = 1, parameters drawn per clip; "
        f"milliseconds per clip, best of {args.passes} interleaved passes of 3 calls each; batch: {BATCH} clips in "
        f"one call for audioflow, a loop for the others (they take one clip), divided by {BATCH}. **ratio** = "
        "the target's peer (or the fastest peer) / audioflow. torch-audiomentations: n/a when it does not import "
        "(it needs torchaudio, which does not load with torch 2.13 here).",
        "",
        "| augmentation | clips | " + " | ".join(LIBS) + " | ratio | target |",
        "|" + "---|" * (len(LIBS) + 4),
    ]
    misses = []
    for name, module in mine.items():
        peer = others.get(name, {})
        for label, divisor, passes in (("1", 1, args.passes), (str(BATCH), BATCH, 1)):
            if divisor == 1:
                fns = {"audioflow": lambda m=module: m(t_one, full[:1])}
                fns.update({lib: (lambda f=f: f(one)) if f else None for lib, f in peer.items()})
            else:
                fns = {"audioflow": lambda m=module: m(t_many, full)}
                fns.update({lib: (lambda f=f: [f(y) for y in batch]) if f else None for lib, f in peer.items()})
            times = race(fns, passes)
            per_clip = {lib: (None if times.get(lib) is None else times[lib] / divisor) for lib in LIBS}
            target_lib, factor = TARGETS.get(name, (None, None))
            rivals = [v for k, v in per_clip.items() if k != "audioflow" and v is not None]
            if target_lib == "audiomentations":
                rival = per_clip["audiomentations"]
            else:
                rival = min(rivals) if rivals else None
            ratio = rival / per_clip["audioflow"] if rival and per_clip["audioflow"] else None
            verdict = "-" if factor is None else ("met" if ratio and ratio >= factor else "**missed**")
            if verdict == "**missed**":
                misses.append(f"{name} ({label} clip{'s' if divisor > 1 else ''}): {fmt(ratio)} (target {factor}x)")
            lines.append(f"| {name} | {label} | " + " | ".join(fmt(per_clip[k]) for k in LIBS)
                         + f" | {fmt(ratio)} | {verdict} |")
            print(name, label, {k: fmt(v) for k, v in per_clip.items()}, flush=True)
    lines += ["", "Targets: stretch+shift at least 8x audiomentations' Compose of the two; noise, gain and filters "
              "faster than every peer measured. The `-> log-mel` rows add librosa's log-mel after the peers' "
              "augmentation; the fused row is audioflow's SpectralStretch (phase vocoder and pitch warp inside the "
              "feature's STFT, no inverse STFT), held to the same 8x.", "", "Missed in this run:", "",
              *(f"- {m}" for m in misses), *(["- none"] if not misses else [])]
    write_section("augment", "\n".join(lines))
    print("wrote the augment section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
