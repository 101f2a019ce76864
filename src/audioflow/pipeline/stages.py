"""The built-in stages: split, enhance, analyze, features. Each is a thin shell over the layer that
does the work (``enhance``, ``music``, ``features``), so the loader, the server and Ray share them."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, ClassVar

import numpy as np

from ..audio import Audio, Segment
from ..errors import ParameterError
from .stage import Option, Stage


def _save(audio: Audio, path: str | None, fmt: str) -> str | None:
    if path is None:
        return None
    from ..io import save

    path = f"{path}.{fmt}"
    save(path, audio.samples, audio.sample_rate)
    return path


def shifted(item: dict[str, Any], offset: float, keys: tuple[str, ...] = ("start", "end")) -> dict[str, Any]:
    """A result row with its times moved by ``offset`` seconds (a chunk's results, in the input's time)."""
    return {**item, **{k: round(float(item[k]) + offset, 4) for k in keys if k in item}}


def whole_input_loudness(chunks) -> float | None:
    """BS.1770 loudness of a long input from its chunks: their 400 ms block energies gated together (exact
    but for the few blocks that would straddle chunk boundaries)."""
    from ..enhance.loudness import gated_loudness, loudness_blocks

    blocks = [loudness_blocks(chunk.samples, chunk.sample_rate) for chunk in chunks]
    return gated_loudness(np.concatenate(blocks, axis=1)) if blocks else None


def spans_for(per: str, audio: Audio, annotations: Any) -> list[tuple[float, float]]:
    """The spans a per-'file' or per-'segment' stage works on (the whole file when there are no segments)."""
    spans = [(s.start, s.end) for s in annotations.segments] if per == "segment" else []
    return spans or [(0.0, audio.duration)]


def _rows_merged(parts: list[tuple[float, Any]]) -> dict[str, Any]:
    """Merge results shaped ``{..., "rows": [{start, end, ...}]}``: rows in input time, the rest from the first."""
    first = dict(parts[0][1])
    first["rows"] = [shifted(row, offset) for offset, result in parts for row in result["rows"]]
    return first


def frame_db(y: np.ndarray, sr: int, frame_s: float) -> np.ndarray:
    """RMS level of consecutive ``frame_s`` frames of the mono mix, in dBFS."""
    mono = y.mean(axis=0) if y.ndim == 2 else y
    hop = max(1, round(frame_s * sr))
    n = max(1, len(mono) // hop)
    padded = np.zeros(n * hop, np.float64)
    padded[: min(len(mono), n * hop)] = mono[: n * hop]
    return 20 * np.log10(np.maximum(np.sqrt(np.mean(padded.reshape(n, hop) ** 2, axis=1)), 1e-10))


def word_cuts(words: list[dict[str, Any]], duration: float, max_len: float) -> list[tuple[float, float]]:
    """Spans cut in the middle of the pause between two words, so that the words of each span last at most
    ``max_len`` s (a longer single word gets its own span); the spans cover the recording, 0 to
    ``duration``, so no audio is lost."""
    if not words:
        return [(0.0, duration)] if duration > 0 else []
    spans, start, first_word = [], 0.0, words[0]["start"]
    for previous, word in itertools.pairwise(words):
        cut = (previous["end"] + word["start"]) / 2
        if word["end"] - first_word > max_len and cut > start:
            spans.append((start, cut))
            start, first_word = cut, word["start"]
    spans.append((start, duration))
    return [(round(a, 4), round(b, 4)) for a, b in spans]


def silence_cuts(y: np.ndarray, sr: int, threshold_db: float, min_silence: float, min_len: float, max_len: float,
                 frame_s: float = 0.02) -> list[tuple[float, float]]:
    """Spans covering the recording, cut in the middle of silences (frames ``threshold_db`` below the
    loudest frame for at least ``min_silence`` s); pieces shorter than ``min_len`` s join a neighbour,
    longer than ``max_len`` s are cut at their quietest frame."""
    levels = frame_db(y, sr, frame_s)
    duration = y.shape[-1] / sr
    quiet = levels < levels.max() - abs(threshold_db)
    cuts, run_start = [], None
    for i, q in enumerate([*quiet.tolist(), False]):
        if q and run_start is None:
            run_start = i
        elif not q and run_start is not None:
            if (i - run_start) * frame_s >= min_silence and run_start > 0 and i < len(quiet):
                cuts.append((run_start + i) / 2 * frame_s)
            run_start = None
    bounds = [0.0, *cuts, duration]
    spans = list(itertools.pairwise(bounds))
    merged: list[tuple[float, float]] = []
    for a, b in spans:  # too short: join the previous piece when that keeps it under max
        if merged and (b - a < min_len or merged[-1][1] - merged[-1][0] < min_len) and b - merged[-1][0] <= max_len:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    out: list[tuple[float, float]] = []
    for a, b in merged:
        out.extend(_cut_long(levels, a, b, max_len, frame_s))
    return out


def _cut_long(levels: np.ndarray, a: float, b: float, max_len: float, frame_s: float) -> list[tuple[float, float]]:
    if b - a <= max_len:
        return [(a, b)]
    # the quietest frame in the middle part (keeping both sides at least a quarter of max_len)
    lo, hi = round((a + max_len / 4) / frame_s), round((min(b - max_len / 4, a + max_len)) / frame_s)
    hi = max(lo + 1, min(hi, len(levels)))
    cut = (lo + int(np.argmin(levels[lo:hi]))) * frame_s if lo < len(levels) else a + max_len
    cut = min(max(cut, a + frame_s), a + max_len)
    return [(a, cut), *_cut_long(levels, cut, b, max_len, frame_s)]


class Split(Stage):
    """Cut the recording into segments: fixed windows (with overlap), at silences, or at word boundaries
    (from the word times of a transcribe step before it)."""

    name = "split"
    options: ClassVar[dict[str, Option]] = {
        "method": Option("str", "silence", "'fixed' windows, cuts at 'silence', or at 'words' (after transcribe)",
                         ("fixed", "silence", "words")),
        "window": Option("float", 30.0, "fixed: window length, seconds", gt=0),
        "overlap": Option("float", 0.0, "fixed: overlap between windows, seconds", ge=0),
        "min": Option("float", 1.0, "silence: shortest segment, seconds", ge=0),
        "max": Option("float", 30.0, "silence, words: longest segment, seconds", gt=0),
        "threshold_db": Option("float", 40.0, "silence: frames this many dB under the loudest are silent", gt=0,
                               le=200),
        "min_silence": Option("float", 0.3, "silence: shortest pause to cut at, seconds", ge=0),
        "write": Option("bool", True, "write each segment as an audio file", remote=False),
        "format": Option("str", "flac", "segment file format", ("flac", "wav", "ogg", "opus", "mp3"), remote=False),
    }

    def validate(self) -> None:
        c = self.config
        if c["window"] <= 0 or not 0 <= c["overlap"] < c["window"]:
            raise ParameterError("split: need window > 0 and 0 <= overlap < window (seconds)")
        if not 0 < c["min"] <= c["max"]:
            raise ParameterError("split: need 0 < min <= max (seconds)")

    def check_order(self, before: list[str]) -> None:
        if self.config["method"] == "words" and "transcribe" not in before:
            raise ParameterError("split:method=words cuts at word times: put a transcribe step before it")

    def spans(self, audio: Audio, annotations: Any = None) -> list[tuple[float, float]]:
        c, duration = self.config, audio.duration
        if c["method"] == "words":
            segments = annotations.results.get("transcribe", {}).get("segments", [])
            return word_cuts([w for seg in segments for w in seg["words"]], duration, c["max"])
        if c["method"] == "fixed":
            step = c["window"] - c["overlap"]
            starts = np.arange(0.0, max(duration - c["overlap"], 1e-9), step)
            return [(float(s), float(min(s + c["window"], duration))) for s in starts]
        return silence_cuts(audio.samples, audio.sample_rate, c["threshold_db"], c["min_silence"], c["min"],
                            c["max"])

    def __call__(self, audio, annotations):
        segments = []
        words = [w for seg in annotations.results.get("transcribe", {}).get("segments", []) for w in seg["words"]]
        for number, (start, end) in enumerate(self.spans(audio, annotations)):
            extra: dict[str, Any] = {}
            if self.config["method"] == "words":
                extra["text"] = "".join(w["word"] for w in words if start <= (w["start"] + w["end"]) / 2 < end).strip()
            if self.config["write"]:
                name = f"{annotations.id}_{number:04d}" if annotations.chunk is None else \
                    f"{annotations.id}_c{annotations.chunk:03d}_{number:04d}"
                path = _save(audio.slice(start, end), annotations.output_path(f"segments/{annotations.id}", name),
                             self.config["format"])
                if path:
                    extra["file"] = path
                    annotations.add_file(self.name, path)
            segments.append(Segment(round(start, 4), round(end, 4), extra=extra))
        annotations.segments = segments
        annotations.results[self.name] = {"method": self.config["method"], "count": len(segments),
                                          "segments": [s.to_dict() for s in segments]}
        return audio, annotations

    def merge(self, parts):
        segments = [shifted(seg, offset) for offset, result in parts for seg in result["segments"]]
        return {"method": self.config["method"], "count": len(segments), "segments": segments}


def _eq_bands(text: str | None) -> tuple[tuple[str, float, float, float], ...]:
    """``peaking@1000@3@1+highshelf@8000@-2@0.7`` → bands (kind, Hz, dB, Q)."""
    if not text:
        return ()
    bands = []
    for band in text.split("+"):
        parts = band.split("@")
        if len(parts) != 4:
            raise ParameterError(f"enhance:eq band {band!r} must be kind@freq@gain_db@q (e.g. peaking@1000@3@1)")
        try:
            bands.append((parts[0], float(parts[1]), float(parts[2]), float(parts[3])))
        except ValueError:
            raise ParameterError(f"enhance:eq band {band!r}: freq, gain and Q must be numbers") from None
    return tuple(bands)


class Enhance(Stage):
    """Loudness, EQ, filters, de-click, noise reduction, pre-emphasis (in ``enhance.ENHANCE_ORDER``)."""

    name = "enhance"
    memory_fixed, memory_factor = 32 << 20, 14.0
    options: ClassVar[dict[str, Option]] = {
        "lufs": Option("float", None, "loudness target, LUFS (e.g. -23); none: no normalisation", ge=-70, le=0),
        "true_peak": Option("float", -1.0, "true-peak ceiling with the loudness target, dBTP", ge=-20, le=0),
        "highpass": Option("float", None, "high-pass corner, Hz", gt=0, le=20000),
        "lowpass": Option("float", None, "low-pass corner, Hz", gt=0, le=96000),
        "eq": Option("str", None, "bands kind@freq_hz@gain_db@q joined by '+' (peaking, lowshelf, highshelf)",
                     max_length=400),
        "declick": Option("bool", False, "repair clicks and pops"),
        "denoise": Option("bool", False, "spectral-gating noise reduction"),
        "denoise_db": Option("float", 12.0, "noise reduction depth, dB", ge=0, le=60),
        "preemphasis": Option("float", None, "pre-emphasis coefficient (e.g. 0.97)", ge=0, lt=1),
        "write": Option("bool", True, "write the enhanced audio", remote=False),
        "format": Option("str", "flac", "enhanced file format", ("flac", "wav", "ogg", "opus", "mp3"), remote=False),
    }

    def validate(self) -> None:
        from ..enhance import EnhanceOptions, rbj_biquad

        c = self.config
        self.enhance_options = EnhanceOptions(
            highpass=c["highpass"], lowpass=c["lowpass"], declick=c["declick"], denoise=c["denoise"],
            denoise_db=c["denoise_db"], eq=_eq_bands(c["eq"]), preemphasis=c["preemphasis"], lufs=c["lufs"],
            true_peak=c["true_peak"])
        for kind, freq, gain, q in self.enhance_options.eq:
            rbj_biquad(kind, freq, 96000, gain, q)  # names and ranges checked before any file is read

    @property
    def needs_whole_input(self) -> bool:
        return self.enhance_options.lufs is not None

    def work_bytes(self, duration: float, rate: int, channels: int) -> float:
        # spectral denoise holds one channel's complex spectra at a time (measured 14-22x the audio in all)
        heavy = self.enhance_options.declick or self.enhance_options.denoise
        return self.memory_fixed + (20.0 if heavy else self.memory_factor) * duration * rate * channels * 4

    def measure(self, chunks) -> None:
        self.whole_loudness = whole_input_loudness(chunks)

    def __call__(self, audio, annotations):
        from ..enhance import enhance

        options = self.enhance_options
        if annotations.chunk is not None and options.lufs is not None:
            loudness = getattr(self, "whole_loudness", None)
            options = dataclasses.replace(options, lufs=None,
                                          gain_db=None if loudness is None else options.lufs - loudness)
        samples, report = enhance(audio.samples, audio.sample_rate, options)
        out = dataclasses.replace(audio, samples=samples)
        write_audio_output(self, out, annotations, "enhanced", report)
        return out, annotations

    def merge(self, parts):
        reports = [result for _, result in parts]
        merged: dict[str, Any] = {"steps": reports[0]["steps"], "chunks": len(reports)}
        if self.enhance_options.lufs is not None:
            loudness = getattr(self, "whole_loudness", None)
            merged.update(loudness_before=loudness, gain_db=reports[0].get("gain_db"))
        peaks = [r["true_peak_db"] for r in reports if r.get("true_peak_db") is not None]
        if peaks:
            merged["true_peak_db"] = max(peaks)
        return merged | joined_audio_outputs(reports, self.config["format"])


def write_audio_output(stage: Stage, out: Audio, annotations: Any, kind: str, report: dict[str, Any]) -> None:
    """Write a stage's output audio to ``OUT/kind/`` when its ``write`` option is on (a long input's chunks
    as numbered parts), and record the stage's ``report`` as its result."""
    if stage.config["write"]:
        name = annotations.id if annotations.chunk is None else f"{annotations.id}.part{annotations.chunk:04d}"
        path = _save(out, annotations.output_path(kind, name), stage.config["format"])
        if path:
            report["file"] = path
            annotations.add_file(stage.name, path)
    annotations.results[stage.name] = report


def joined_audio_outputs(reports: list[dict[str, Any]], fmt: str) -> dict[str, Any]:
    """The chunks' audio parts joined into one file (``file``), or listed (``files``) for codecs
    libsndfile cannot append to; nothing when no part was written."""
    files = [r.get("file") for r in reports]
    if files and all(files) and fmt in ("flac", "wav", "ogg"):
        return {"file": _join(files, files[0].replace(".part0000", ""))}
    return {"files": files} if files and all(files) else {}


def _join(parts: list[str], target: str) -> str:
    """Concatenate audio files of one format into ``target`` block by block (bounded memory), then remove
    the parts; written to a temporary name and renamed."""
    import os

    import soundfile as sf

    first = sf.info(parts[0])
    temp = f"{target}.{os.getpid()}.tmp"
    with sf.SoundFile(temp, "w", first.samplerate, first.channels, first.subtype, format=first.format) as out:
        for part in parts:
            for block in sf.blocks(part, blocksize=1 << 16, dtype="float32", always_2d=True):
                out.write(block)
    os.replace(temp, target)
    for part in parts:
        os.remove(part)
    return target


class Analyze(Stage):
    """General measurements of any audio, and music analysis (tempo, beats, key, HPSS, onsets, spectra)."""

    name = "analyze"
    memory_fixed, memory_factor = 64 << 20, 12.0
    options: ClassVar[dict[str, Option]] = {
        "music": Option("bool", True, "tempo, beats, key and mode, harmonic ratio, onsets, spectral summary"),
        "segments": Option("bool", False, "also measure each segment (from split)"),
        "n_mfcc": Option("int", 20, "MFCC means to report", ge=1, le=128),
    }

    def setup(self, models) -> None:
        if self.config["music"]:  # librosa's beat tracker compiles with numba on first use (~4 s per process):
            from ..music import analyze_music  # pay it here, not inside the first file's timeout

            noise = np.random.default_rng(0).standard_normal(22050 * 2).astype(np.float32) * 0.1
            analyze_music(noise, 22050, self.config["n_mfcc"])

    def work_bytes(self, duration: float, rate: int, channels: int) -> float:
        # measurements at the input's rate (true peak, 4x oversampled) and music analysis at 22.05 kHz mono
        from ..music.analysis import ANALYSIS_SR

        music = 20.0 * duration * ANALYSIS_SR * 4 if self.config["music"] else 0.0
        return super().work_bytes(duration, rate, channels) + music

    def prepare_parent(self) -> None:
        import sys

        # librosa already imported here: its jitted functions cache into its package folder, and forked
        # workers compiling them at once would write those files together; compiled here, they inherit it
        if self.config["music"] and "librosa" in sys.modules:
            self.setup(None)

    def __call__(self, audio, annotations):
        from ..enhance import signal_metrics

        result: dict[str, Any] = signal_metrics(audio.samples, audio.sample_rate)
        if annotations.chunk is not None:
            from ..enhance.loudness import loudness_blocks

            if annotations.chunk == 0:
                self.chunk_blocks: list[np.ndarray] = []
            self.chunk_blocks.append(loudness_blocks(audio.samples, audio.sample_rate))
        if self.config["music"]:
            from ..music import analyze_music

            result["music"] = analyze_music(audio.samples, audio.sample_rate, self.config["n_mfcc"])
        if self.config["segments"] and annotations.segments:
            result["segments"] = [signal_metrics(audio.slice(s.start, s.end).samples, audio.sample_rate)
                                  for s in annotations.segments]
        annotations.results[self.name] = result
        return audio, annotations

    def merge(self, parts):
        from ..enhance.loudness import gated_loudness

        results = [r for _, r in parts]
        seconds = [r["duration"] for r in results]
        total = sum(seconds)
        weighted = lambda key: sum(r[key] * d for r, d in zip(results, seconds, strict=True)  # noqa: E731
                                   if r[key] is not None) / total if total else None
        peaks = [r["peak_dbfs"] for r in results if r["peak_dbfs"] is not None]
        true_peaks = [r["true_peak_dbtp"] for r in results if r["true_peak_dbtp"] is not None]
        merged: dict[str, Any] = {
            "duration": total, "sample_rate": results[0]["sample_rate"], "channels": results[0]["channels"],
            # the chunks' 400 ms blocks gated together: BS.1770 of the whole input (but the blocks across
            # chunk edges)
            "loudness_lufs": gated_loudness(np.concatenate(self.chunk_blocks, axis=1)),
            "peak_dbfs": max(peaks) if peaks else None, "true_peak_dbtp": max(true_peaks) if true_peaks else None,
            "snr_estimate_db": weighted("snr_estimate_db"), "silence_ratio": weighted("silence_ratio"),
            "clipping_ratio": weighted("clipping_ratio"), "dc_offset": weighted("dc_offset"), "chunks": len(results),
        }
        if "music" in results[0]:
            merged["music"] = {"chunks": [{"offset": offset, **r["music"], "beats": [round(b + offset, 4) for b in
                                                                                    r["music"]["beats"]]}
                                          for offset, r in parts]}
        if any("segments" in r for r in results):
            merged["segments"] = [m for r in results for m in r.get("segments", [])]
        return merged


class Features(Stage):
    """Any feature of :mod:`audioflow.features` per file or per segment: mean and std per coefficient in
    the results (and the run's ``features.parquet``), the whole matrix as ``.npy`` when asked."""

    name = "features"
    accepts_extra = True
    options: ClassVar[dict[str, Option]] = {
        "name": Option("str", "mfcc", "feature: mfcc, logmel, mel, spectrogram, fbank, whisper", pattern="[a-z_]+"),
        "per": Option("str", "file", "one row per 'file' or per 'segment'", ("file", "segment")),
        "npy": Option("bool", False, "write the full [features, frames] matrix as .npy", remote=False),
        "sr": Option("int", 16000, "rate the feature is computed at, Hz", ge=1000, le=192000),
    }

    def validate(self) -> None:
        from ..data.transforms import build_feature

        self.feature = build_feature(self.config["name"], self.config["sr"], **self.extra)

    def __call__(self, audio, annotations):
        import torch

        from ..io import resample

        mono = audio.to_mono()
        y = mono.samples if mono.sample_rate == self.config["sr"] else resample(mono.samples, mono.sample_rate,
                                                                                  self.config["sr"])
        spans = spans_for(self.config["per"], audio, annotations)
        rows = []
        for number, (start, end) in enumerate(spans):
            piece = y[round(start * self.config["sr"]): round(end * self.config["sr"])]
            if len(piece) == 0:
                continue
            with torch.no_grad():
                matrix = self.feature(torch.from_numpy(np.ascontiguousarray(piece))[None])[0].numpy()
            row: dict[str, Any] = {"start": start, "end": end, "shape": list(matrix.shape),
                                   "mean": matrix.mean(-1).round(5).tolist(), "std": matrix.std(-1).round(5).tolist()}
            if self.config["npy"]:
                stem = annotations.id if annotations.chunk is None else f"{annotations.id}_c{annotations.chunk:03d}"
                path = annotations.output_path("features", f"{stem}_{number:04d}.npy" if len(spans) > 1
                                               else f"{stem}.npy")
                if path:
                    np.save(path, matrix)
                    row["file"] = path
                    annotations.add_file(self.name, path)
            rows.append(row)
        annotations.results[self.name] = {"feature": self.config["name"], "per": self.config["per"], "rows": rows}
        return audio, annotations

    def merge(self, parts):
        return _rows_merged(parts)


class Fingerprint(Stage):
    """Chromaprint fingerprint of each input (raw values for comparison, and AcoustID's compact form)."""

    name = "fingerprint"
    options: ClassVar[dict[str, Option]] = {
        "max_seconds": Option("float", 120.0, "fingerprint the first this many seconds", gt=0),
    }

    def __call__(self, audio, annotations):
        from ..music.fingerprint import encode, fingerprint

        raw = fingerprint(audio.samples, audio.sample_rate, self.config["max_seconds"])
        annotations.results[self.name] = {"raw": raw, "encoded": encode(raw) if raw else "",
                                          "duration": audio.duration}
        return audio, annotations

    def merge(self, parts):
        return {**parts[0][1], "duration": sum(r["duration"] for _, r in parts)}  # the opening minutes identify


class Classify(Stage):
    """The user's classifier on each file or segment: the top labels with probabilities. The model is a
    folder with a torch.export, TorchScript or ONNX model and its spec JSON, or a Hugging Face
    audio-classification checkpoint (a folder, or a hub name when online)."""

    name = "classify"
    options: ClassVar[dict[str, Option]] = {
        "model": Option("str", None, "model folder (audioflow spec or Hugging Face checkpoint), or org/name",
                        remote=False),
        "per": Option("str", "file", "classify each 'file' or each 'segment'", ("file", "segment")),
        "top": Option("int", 3, "labels to report per input", ge=1, le=1000),
    }

    def validate(self) -> None:
        import os

        from ..music.classify import SPEC_NAME, is_huggingface

        model = self.config["model"]
        if not model or not (os.path.exists(os.path.join(model, SPEC_NAME)) or is_huggingface(model)):
            raise ParameterError(f"classify: model={model!r} must be a folder holding {SPEC_NAME} and the model, "
                                 "a Hugging Face checkpoint folder, or a hub name (org/name)")

    def setup(self, models) -> None:
        from ..music.classify import Classifier

        self.models = models
        self.classifier = models.get(f"classify:{self.config['model']}",
                                     lambda device: Classifier(self.config["model"], device))

    def __call__(self, audio, annotations):
        self.ensure_setup()
        mono = audio.to_mono()
        spans = spans_for(self.config["per"], audio, annotations)
        clips = [mono.slice(a, b).samples for a, b in spans]
        probabilities = self.classifier.predict(clips, audio.sample_rate)
        labels = self.classifier.spec.labels
        rows = []
        for (start, end), p in zip(spans, probabilities, strict=True):
            order = np.argsort(-p)[: self.config["top"]]
            rows.append({"start": start, "end": end, "label": labels[order[0]],
                         "top": [{"label": labels[i], "probability": round(float(p[i]), 5)} for i in order]})
        annotations.results[self.name] = {"model": self.config["model"], "per": self.config["per"], "rows": rows}
        return audio, annotations

    def merge(self, parts):
        return _rows_merged(parts)


class VAD(Stage):
    """Speech segments (start, end, probability) from Silero VAD; optionally pass on only the speech."""

    name = "vad"
    memory_fixed, memory_factor, work_rate, work_mono = 16 << 20, 3.0, 16000, True
    options: ClassVar[dict[str, Option]] = {
        "threshold": Option("float", 0.5, "speech probability that starts speech", gt=0, lt=1),
        "min_speech": Option("float", 0.25, "shortest speech kept, seconds", ge=0, le=10),
        "min_silence": Option("float", 0.1, "silence that ends speech, seconds", ge=0, le=10),
        "pad": Option("float", 0.03, "seconds added on both sides of each segment", ge=0, le=5),
        "drop_silence": Option("bool", False, "pass on the speech only (segments joined) to the next steps"),
        "model": Option("str", None, "silero_vad.onnx path (default: $AUDIOFLOW_SILERO_VAD, then silero-vad's)",
                        remote=False),
    }

    def setup(self, models) -> None:
        from ..speech import SileroVAD

        c = self.config
        self.models = models
        self.vad = models.get(f"vad:{c['model']}:{c['threshold']}:{c['min_speech']}:{c['min_silence']}:{c['pad']}",
                              lambda device: SileroVAD(c["model"], c["threshold"], None, c["min_speech"],
                                                       c["min_silence"], c["pad"]))

    def __call__(self, audio, annotations):
        self.ensure_setup()
        segments = self.vad.segments(audio.samples, audio.sample_rate)
        speech = sum(s.duration for s in segments)
        annotations.results[self.name] = {
            "segments": [{"start": s.start, "end": s.end, "probability": s.score} for s in segments],
            "speech_seconds": round(speech, 3), "speech_ratio": round(speech / audio.duration, 4) if audio.duration
            else 0.0}
        annotations.segments = segments
        if self.config["drop_silence"] and segments:
            annotations.results[self.name]["silence_dropped"] = True  # later steps see a shorter clock
            pieces = [audio.slice(s.start, s.end).samples for s in segments]
            audio = dataclasses.replace(audio, samples=np.concatenate(pieces, axis=-1))
        return audio, annotations

    def merge(self, parts):
        segments = [shifted(seg, offset) for offset, result in parts for seg in result["segments"]]
        speech = sum(r["speech_seconds"] for _, r in parts)
        return {"segments": segments, "speech_seconds": round(speech, 3), "chunks": len(parts)}
