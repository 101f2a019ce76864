"""Feature extraction speed, side by side in one run: audioflow.features against librosa and nnAudio
(torchaudio does not load with this torch: reported n/a), on 10 s 16 kHz clips, one clip and a batch
of 32, torch threads at the machine's cores. Writes the "features" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_features.py [--passes 7]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from audioflow import features as F
from report import fmt, machine, race, write_section

SR, SECONDS, BATCH = 16000, 10.0, 32
N_FFT, HOP, N_MELS, N_MFCC = 512, 160, 64, 40


def clips() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * SECONDS)) / SR
    base = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t)))
    return np.stack([base + 0.05 * rng.standard_normal(len(t)) for _ in range(BATCH)]).astype(np.float32)


def cases(batch: np.ndarray) -> dict[str, dict[str, object]]:
    """{case: {library: (single_fn, batch_fn)}}: what each library's user writes."""
    import librosa

    one, many = batch[0], batch
    t_one, t_many = torch.from_numpy(one), torch.from_numpy(many)
    spec = F.Spectrogram(N_FFT, hop_length=HOP, power=2.0, pad_mode="constant")
    mel = F.MelSpectrogram(SR, N_FFT, hop_length=HOP, n_mels=N_MELS, pad_mode="constant")
    logmel = F.LogMel(SR, N_FFT, hop_length=HOP, n_mels=N_MELS, pad_mode="constant")
    mfcc = F.MFCC(SR, N_MFCC, melkwargs={"n_fft": N_FFT, "hop_length": HOP, "n_mels": N_MELS, "pad_mode": "constant"})
    lib = {
        "stft": lambda y: np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2,
        "mel": lambda y: librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS),
        "logmel": lambda y: librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT,
                                                                               hop_length=HOP, n_mels=N_MELS)),
        "mfcc": lambda y: librosa.feature.mfcc(y=y, sr=SR, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS),
    }
    ours = {"stft": spec, "mel": mel, "logmel": logmel, "mfcc": mfcc}
    nn_layers = _nnaudio_layers()
    out: dict[str, dict[str, object]] = {}
    for name in ("stft", "mel", "logmel", "mfcc"):
        module = ours[name]
        out[name] = {
            "audioflow": (lambda m=module: m(t_one), lambda m=module: m(t_many)),
            "librosa": (lambda f=lib[name]: f(one), lambda f=lib[name]: [f(y) for y in many]),
        }
        layer = nn_layers.get(name)
        out[name]["nnAudio"] = (lambda m=layer: m(t_one[None]), lambda m=layer: m(t_many)) if layer else None
        out[name]["torchaudio"] = None
    return out


def _nnaudio_layers() -> dict[str, torch.nn.Module]:
    try:
        from nnAudio import features as nf
    except Exception:  # not installed, or broken with this torch
        return {}
    layers = {}
    try:
        layers["stft"] = nf.STFT(n_fft=N_FFT, hop_length=HOP, output_format="Magnitude", verbose=False)
        layers["mel"] = nf.MelSpectrogram(sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, verbose=False)
        layers["mfcc"] = nf.MFCC(sr=SR, n_mfcc=N_MFCC, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, verbose=False)
    except Exception:
        pass
    return layers


SWEEP_N_FFT = (256, 400, 512, 1024, 2048)


def n_fft_sweep(batch: np.ndarray, passes: int) -> str:
    """MFCC(40) and log-mel against librosa at every n_fft from 256 to 2048 (400: Whisper's and most speech
    models' framing), hop 160, one clip and a batch; the "features-nfft" section."""
    import librosa

    one, t_one, t_many = batch[0], torch.from_numpy(batch[0]), torch.from_numpy(batch)
    lines = ["## Features at every FFT size", "",
             f"`benchmarks/bench_features.py` on {machine()}. As above (10 s at 16 kHz, hop {HOP}, {N_MELS} mels, "
             f"{N_MFCC} MFCCs), for each n_fft; ms per clip, and librosa / audioflow.", "",
             "| n_fft | feature | clips | audioflow | librosa | ratio |", "|---|---|---|---|---|---|"]
    for n_fft in SWEEP_N_FFT:
        kwargs = {"n_fft": n_fft, "hop_length": HOP, "n_mels": N_MELS}
        ours = {"mfcc": F.MFCC(SR, N_MFCC, melkwargs={**kwargs, "pad_mode": "constant"}),
                "logmel": F.LogMel(SR, n_fft, hop_length=HOP, n_mels=N_MELS, pad_mode="constant")}
        theirs = {"mfcc": lambda y, kw=kwargs: librosa.feature.mfcc(y=y, sr=SR, n_mfcc=N_MFCC, **kw),
                  "logmel": lambda y, kw=kwargs: librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, **kw))}
        for name in ("mfcc", "logmel"):
            for label, divisor in (("1", 1), (str(BATCH), BATCH)):
                if divisor == 1:
                    fns = {"audioflow": lambda m=ours[name]: m(t_one), "librosa": lambda f=theirs[name]: f(one)}
                else:
                    fns = {"audioflow": lambda m=ours[name]: m(t_many),
                           "librosa": lambda f=theirs[name]: [f(y) for y in batch]}
                times = race(fns, passes if divisor == 1 else max(3, passes // 3))
                a, b = times["audioflow"] / divisor, times["librosa"] / divisor
                lines.append(f"| {n_fft} | {name} | {label} | {fmt(a)} | {fmt(b)} | {fmt(b / a)} |")
                print(n_fft, name, label, fmt(a), fmt(b), fmt(b / a), flush=True)
    lines += ["", "Target (issue 17): at least 3x librosa at every n_fft from 256 to 2048, one clip and batched."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--sweep-only", action="store_true", help="only the n_fft sweep")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    write_section("features-nfft", n_fft_sweep(clips(), args.passes))
    if args.sweep_only:
        return
    table = cases(clips())
    libs = ("audioflow", "librosa", "nnAudio", "torchaudio")
    lines = [
        "## Features: `audioflow.features` against librosa and nnAudio",
        "",
        f"`benchmarks/bench_features.py` on {machine()}. 10 s at 16 kHz, n_fft {N_FFT}, hop {HOP}, "
        f"{N_MELS} mels, {N_MFCC} MFCCs; milliseconds per clip, best of {args.passes} interleaved passes of 3 "
        f"calls each (a library's first call after another's pays torch's thread wake-up); batch: "
        f"{BATCH} clips in one call (librosa: a loop, as its users write), divided by {BATCH}. **ratio** = "
        "librosa / audioflow. torchaudio: n/a (its 2.11 build does not load with torch 2.13 here).",
        "",
        "| feature | clips | " + " | ".join(libs) + " | ratio vs librosa | target |",
        "|" + "---|" * (len(libs) + 4),
    ]
    for name, row in table.items():
        for label, which, divisor, passes in (("1", 0, 1, args.passes),
                                              (str(BATCH), 1, BATCH, max(3, args.passes // 3))):
            times = race({lib: (None if row.get(lib) is None else row[lib][which]) for lib in libs}, passes)
            per_clip = {k: (None if v is None else v / divisor) for k, v in times.items()}
            ours, theirs = per_clip["audioflow"], per_clip["librosa"]
            ratio = theirs / ours if theirs and ours else None
            target = ("met" if ratio and ratio >= 3 else "**missed**") if name in ("mfcc", "logmel") else "-"
            lines.append(f"| {name} | {label} | " + " | ".join(fmt(per_clip[k]) for k in libs)
                         + f" | {fmt(ratio)} | {target} |")
            print(name, label, {k: fmt(v) for k, v in per_clip.items()}, flush=True)
    lines += ["", "Target: MFCC(40) and log-mel at least 3x faster than librosa per clip."]
    write_section("features", "\n".join(lines))
    print("wrote the features section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
