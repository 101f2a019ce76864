"""Stages that measure without changing the audio: ``analyze``, ``features``, ``fingerprint``, ``classify``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...errors import ParameterError
from ..stage import Option, Stage
from .outputs import rows_merged, spans_for


class Analyze(Stage):
    """General measurements of any audio, and music analysis (tempo, beats, key, HPSS, onsets, spectra)."""

    name = "analyze"
    requires, requires_extra = ("torch", "scipy", "pyloudnorm"), "music"
    memory_fixed, memory_factor = 64 << 20, 12.0
    options: ClassVar[dict[str, Option]] = {
        "music": Option("bool", True, "tempo, beats, key and mode, harmonic ratio, onsets, spectral summary"),
        "segments": Option("bool", False, "also measure each segment (from split)"),
        "n_mfcc": Option("int", 20, "MFCC means to report", ge=1, le=128),
    }

    def setup(self, models) -> None:
        if self.config["music"]:  # the first analysis in a process imports and sizes what it uses (~0.5 s):
            from ...music import analyze_music  # pay it here, not inside the first file's timeout

            noise = np.random.default_rng(0).standard_normal(22050 * 2).astype(np.float32) * 0.1
            analyze_music(noise, 22050, self.config["n_mfcc"])

    def work_bytes(self, duration: float, rate: int, channels: int) -> float:
        # measurements at the input's rate (true peak, 4x oversampled) and music analysis at 22.05 kHz mono
        from ...music.analysis import ANALYSIS_SR

        music = 20.0 * duration * ANALYSIS_SR * 4 if self.config["music"] else 0.0
        return super().work_bytes(duration, rate, channels) + music

    def __call__(self, audio, annotations):
        from ...enhance import signal_metrics

        result: dict[str, Any] = signal_metrics(audio.samples, audio.sample_rate)
        if annotations.chunk is not None:
            from ...enhance.loudness import loudness_blocks

            if annotations.chunk == 0:
                self.chunk_blocks: list[np.ndarray] = []
            self.chunk_blocks.append(loudness_blocks(audio.samples, audio.sample_rate))
        if self.config["music"]:
            from ...music import analyze_music

            result["music"] = analyze_music(audio.samples, audio.sample_rate, self.config["n_mfcc"])
        if self.config["segments"] and annotations.segments:
            result["segments"] = [signal_metrics(audio.slice(s.start, s.end).samples, audio.sample_rate)
                                  for s in annotations.segments]
        annotations.results[self.name] = result
        return audio, annotations

    def merge(self, parts, context):
        from ...enhance.loudness import gated_loudness

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
    requires, requires_extra = ("torch", "pyarrow"), "train"  # pyarrow: the run's features.parquet
    accepts_extra = True
    options: ClassVar[dict[str, Option]] = {
        "name": Option("str", "mfcc", "feature: mfcc, logmel, mel, spectrogram, fbank, whisper", pattern="[a-z_]+"),
        "per": Option("str", "file", "one row per 'file' or per 'segment'", ("file", "segment")),
        "npy": Option("bool", False, "write the full [features, frames] matrix as .npy", remote=False),
        "sr": Option("int", 16000, "rate the feature is computed at, Hz", ge=1000, le=192000),
    }

    def validate(self) -> None:
        from ...features.registry import build_feature

        self.feature = build_feature(self.config["name"], self.config["sr"], **self.extra)

    def __call__(self, audio, annotations):
        import torch

        from ...io import resample

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

    def merge(self, parts, context):
        return rows_merged(parts)


class Fingerprint(Stage):
    """Chromaprint fingerprint of each input (raw values for comparison, and AcoustID's compact form)."""

    name = "fingerprint"
    requires, requires_extra = ("acoustid",), "music"
    options: ClassVar[dict[str, Option]] = {
        "max_seconds": Option("float", 120.0, "fingerprint the first this many seconds", gt=0),
    }

    def __call__(self, audio, annotations):
        from ...music.fingerprint import encode, fingerprint

        raw = fingerprint(audio.samples, audio.sample_rate, self.config["max_seconds"])
        annotations.results[self.name] = {"raw": raw, "encoded": encode(raw) if raw else "",
                                          "duration": audio.duration}
        return audio, annotations

    def merge(self, parts, context):
        return {**parts[0][1], "duration": sum(r["duration"] for _, r in parts)}  # the opening minutes identify


class Classify(Stage):
    """The user's classifier on each file or segment: the top labels with probabilities. The model is a
    folder with a torch.export, TorchScript or ONNX model and its spec JSON, or a Hugging Face
    audio-classification checkpoint (a folder, or a hub name when online)."""

    name = "classify"
    requires, requires_extra = ("torch",), "train"
    options: ClassVar[dict[str, Option]] = {
        "model": Option("str", None, "model folder (audioflow spec or Hugging Face checkpoint), or org/name",
                        remote=False),
        "per": Option("str", "file", "classify each 'file' or each 'segment'", ("file", "segment")),
        "top": Option("int", 3, "labels to report per input", ge=1, le=1000),
    }

    def validate(self) -> None:
        import os

        from ...music.classify import SPEC_NAME, is_huggingface

        model = self.config["model"]
        if not model or not (os.path.exists(os.path.join(model, SPEC_NAME)) or is_huggingface(model)):
            raise ParameterError(f"classify: model={model!r} must be a folder holding {SPEC_NAME} and the model, "
                                 "a Hugging Face checkpoint folder, or a hub name (org/name)")

    def setup(self, models) -> None:
        from ...music.classify import Classifier

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

    def merge(self, parts, context):
        return rows_merged(parts)
