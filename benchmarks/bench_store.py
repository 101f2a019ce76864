"""Packed-dataset sizes and random-access reads, side by side in one run: audioflow.store fields
against loose WAV/FLAC files read with soundfile and a Hugging Face `datasets` Arrow dataset (an
Audio column where it decodes here, else the float arrays themselves). Writes the "store" section of
docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_store.py [--clips 2000] [--batches 20]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audioflow import store
from report import fmt, machine, write_section

SR, SECONDS, BATCH = 16000, 5.0, 32


def make_clips(directory: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * SECONDS)) / SR
    paths = []
    for i in range(n):
        y = 0.3 * np.sin(2 * np.pi * (150 + i % 300) * t) + 0.02 * rng.standard_normal(len(t))
        path = directory / f"clip{i:05d}.flac"
        sf.write(path, y.astype(np.float32), SR, subtype="PCM_16")
        paths.append(path)
    return paths


def timed_batches(read, n_rows: int, batches: int) -> float:
    """Mean ms per sample over ``batches`` random batches of 32 (after one warm-up batch)."""
    rng = np.random.default_rng(1)
    read(rng.choice(n_rows, BATCH, replace=False))
    t0 = time.perf_counter()
    for _ in range(batches):
        read(rng.choice(n_rows, BATCH, replace=False))
    return (time.perf_counter() - t0) * 1000 / (batches * BATCH)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    rows: list[tuple[str, float | None, float | None, str]] = []
    write_split: list[str] = []
    try:
        flac_dir = tmp / "flac"
        flac_dir.mkdir()
        paths = make_clips(flac_dir, args.clips)
        minutes = args.clips * SECONDS / 60
        wav_dir = tmp / "wav"
        wav_dir.mkdir()
        for p in paths:
            y, _ = sf.read(p, dtype="int16")
            sf.write(wav_dir / (p.stem + ".wav"), y, SR, subtype="PCM_16")
        wav_paths = sorted(wav_dir.iterdir())

        def loose(files):
            return lambda idx: [sf.read(files[i], dtype="float32")[0] for i in idx]

        rows.append(("loose FLAC files (soundfile)", folder_bytes(flac_dir) / minutes / 1e6,
                     timed_batches(loose(paths), args.clips, args.batches), "-"))
        rows.append(("loose WAV files (soundfile)", folder_bytes(wav_dir) / minutes / 1e6,
                     timed_batches(loose(wav_paths), args.clips, args.batches), "-"))
        fields = {
            "WaveformField(int16)": store.WaveformField(SR, dtype="int16"),
            "WaveformField(float32)": store.WaveformField(SR, dtype="float32"),
            "CompressedField(flac)": store.CompressedField("flac", SR),
            "CompressedField(opus, 32 kbit/s)": store.CompressedField("opus", SR, bitrate=32),
            "MelSpectrogramField(80, float16)": store.MelSpectrogramField(80),
        }
        fields["WaveformField(int16) + MelSpectrogramField(80, float16)"] = {
            "audio": store.WaveformField(SR, dtype="int16"), "mel": store.MelSpectrogramField(80)}
        for label, field in fields.items():
            out = tmp / f"ds-{len(rows)}"
            t0 = time.perf_counter()
            columns = field if isinstance(field, dict) else {"audio": field}
            manifest = store.write(flac_dir, out, columns, shard_size=500, progress=False)
            wall = time.perf_counter() - t0
            write_split.append(f"{label}: {wall:.1f} s wall for {manifest['audio_seconds'] / 3600:.2f} h "
                               f"({manifest['audio_seconds'] / wall:,.0f}x realtime); encoding "
                               f"{manifest['encode_cpu_seconds']:.1f} CPU s over {manifest['workers']} workers "
                               f"(~{manifest['encode_cpu_seconds'] / manifest['workers']:.1f} s each), shard writes "
                               f"{manifest['shard_write_seconds']:.2f} s")
            ds = store.open(out)
            ms = timed_batches(lambda idx, ds=ds: ds.get_batch(idx), len(ds), args.batches)
            rows.append((f"audioflow {label}", folder_bytes(out) / minutes / 1e6, ms, ""))
        rows.extend(_hf_rows(tmp, paths, minutes, args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    flac_ms = rows[0][2]
    hf_ms = next((r[2] for r in rows if r[0].startswith("Hugging Face datasets, Audio") and r[2]), None)
    lines = [
        "## Packed datasets: size and random batch reads",
        "",
        f"`benchmarks/bench_store.py` on {machine()}. {args.clips} clips of {SECONDS:g} s at {SR} Hz; random "
        f"batches of {BATCH}, warm page cache, mean ms per sample over {args.batches} batches. **vs FLAC** and "
        "**vs HF** are the speed-ups over loose FLAC files through soundfile and over the Hugging Face dataset. "
        "The HF baseline is an Audio column (FLAC bytes embedded by `save_to_disk`): datasets >= 4 decodes it "
        "through torchcodec, which needs a torch build this machine does not have, so its bytes are decoded "
        "with soundfile as datasets 3.x did. HF's fastest form, float32 arrays in NumPy format, is listed too.",
        "",
        "| storage | MB per audio minute | ms per sample | vs FLAC | vs HF |",
        "|---|---|---|---|---|",
    ]
    for label, size, ms, _ in rows:
        vs_flac = flac_ms / ms if ms and flac_ms else None
        vs_hf = hf_ms / ms if ms and hf_ms and label.startswith("audioflow") else None
        lines.append(f"| {label} | {fmt(size)} | {fmt(ms, 3)} | {fmt(vs_flac, 1)} | {fmt(vs_hf, 1)} |")
    lines += ["", "Targets: WaveformField and MelSpectrogramField at least 10x faster per sample than loose FLAC, "
              "and 3x faster than the Hugging Face dataset; both fields of one dataset in one batch at least 10x "
              "loose FLAC (issue 17).", "", "Writer (all cores, encoding included):", "",
              *(f"- {w}" for w in write_split)]
    write_section("store", "\n".join(lines))
    print("\n".join(lines))


def _hf_rows(tmp: Path, paths: list[Path], minutes: float, args) -> list[tuple[str, float | None, float | None, str]]:
    try:
        import datasets
    except ImportError:
        return [("Hugging Face datasets", None, None, "not installed")]
    out = []
    ds = datasets.Dataset.from_dict({"audio": [str(p) for p in paths]}).cast_column(
        "audio", datasets.Audio(sampling_rate=SR))
    ds.save_to_disk(tmp / "hf-audio")  # embeds the FLAC bytes
    try:  # an Audio column, as most users store audio; decoding needs torchcodec in datasets >= 4
        ds = datasets.load_from_disk(tmp / "hf-audio")
        ms = timed_batches(lambda idx: ds[[int(i) for i in idx]]["audio"], len(ds), args.batches)
        out.append(("Hugging Face datasets, Audio column", folder_bytes(tmp / "hf-audio") / minutes / 1e6, ms, ""))
    except Exception as e:  # reported, not fatal
        print("Hugging Face Audio column unavailable:", type(e).__name__, e)
    try:  # the same Audio column read with decode=False, its bytes decoded by soundfile (datasets 3.x's path)
        import io as _io

        ds = datasets.load_from_disk(tmp / "hf-audio").cast_column("audio", datasets.Audio(decode=False))

        def read(idx):
            return [sf.read(_io.BytesIO(item["bytes"]), dtype="float32")[0]
                    for item in ds[[int(i) for i in idx]]["audio"]]

        ms = timed_batches(read, len(ds), args.batches)
        out.append(("Hugging Face datasets, Audio column (FLAC bytes, soundfile decode as datasets 3.x)",
                    folder_bytes(tmp / "hf-audio") / minutes / 1e6, ms, ""))
    except Exception as e:  # reported, not fatal
        print("Hugging Face Audio bytes unavailable:", type(e).__name__, e)
    # the decoded float32 arrays in Arrow, read as NumPy: the fastest way HF can hold audio
    arrays = [sf.read(p, dtype="float32")[0] for p in paths]
    ds = datasets.Dataset.from_dict({"audio": arrays}).with_format("numpy")
    ds.save_to_disk(tmp / "hf-array")
    ds = datasets.load_from_disk(tmp / "hf-array").with_format("numpy")
    ms = timed_batches(lambda idx: ds[[int(i) for i in idx]]["audio"], len(ds), args.batches)
    out.append(("Hugging Face datasets, float32 arrays (numpy format)", folder_bytes(tmp / "hf-array") / minutes / 1e6,
                ms, ""))
    return out


if __name__ == "__main__":
    main()
