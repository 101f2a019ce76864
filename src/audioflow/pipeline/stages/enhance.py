"""The ``enhance`` stage: loudness, EQ, filters, de-click, spectral denoise, pre-emphasis (``audioflow.enhance``)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ...errors import ParameterError
from ..stage import Option, Stage
from .outputs import joined_audio_outputs, whole_input_loudness, write_audio_output


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
    requires, requires_extra = ("scipy",), "music"
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

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> tuple[str, ...]:
        c = config  # filters and de-click in SciPy; BS.1770 loudness in pyloudnorm; spectral gating in torch
        return ("scipy", *(("pyloudnorm",) if c["lufs"] is not None else ()), *(("torch",) if c["denoise"] else ()))

    def validate(self) -> None:
        from ...enhance import EnhanceOptions, rbj_biquad

        c = self.config
        self.enhance_options = EnhanceOptions(
            highpass=c["highpass"], lowpass=c["lowpass"], declick=c["declick"], denoise=c["denoise"],
            denoise_db=c["denoise_db"], eq=_eq_bands(c["eq"]), preemphasis=c["preemphasis"], lufs=c["lufs"],
            true_peak=c["true_peak"])
        for kind, freq, gain, q in self.enhance_options.eq:
            rbj_biquad(kind, freq, 96000, gain, q)  # names and ranges checked before any file is read
        if not any((c["lufs"] is not None, c["highpass"], c["lowpass"], c["eq"], c["declick"], c["denoise"],
                    c["preemphasis"])):  # else every input would be copied unchanged
            raise ParameterError("enhance has nothing to do: set lufs, highpass, lowpass, eq, declick, denoise or "
                                 "preemphasis (e.g. enhance:lufs=-23)")

    @property
    def needs_whole_input(self) -> bool:
        return self.enhance_options.lufs is not None

    def work_bytes(self, duration: float, rate: int, channels: int) -> float:
        # spectral denoise holds one channel's complex spectra at a time (measured 14-22x the audio in all)
        heavy = self.enhance_options.declick or self.enhance_options.denoise
        return self.memory_fixed + (20.0 if heavy else self.memory_factor) * duration * rate * channels * 4

    def measure(self, chunks, context) -> None:
        context.state_of(self.name)["loudness"] = whole_input_loudness(chunks)

    def __call__(self, audio, annotations):
        from ...enhance import enhance

        options = self.enhance_options
        if annotations.chunk is not None and options.lufs is not None:
            loudness = annotations.context.state_of(self.name).get("loudness")
            options = dataclasses.replace(options, lufs=None,
                                          gain_db=None if loudness is None else options.lufs - loudness)
        samples, report = enhance(audio.samples, audio.sample_rate, options)
        out = dataclasses.replace(audio, samples=samples)
        write_audio_output(self, out, annotations, "enhanced", report)
        return out, annotations

    def merge(self, parts, context):
        reports = [result for _, result in parts]
        merged: dict[str, Any] = {"steps": reports[0]["steps"], "chunks": len(reports)}
        if self.enhance_options.lufs is not None:
            loudness = context.state_of(self.name).get("loudness")
            merged.update(loudness_before=loudness, gain_db=reports[0].get("gain_db"))
        peaks = [r["true_peak_db"] for r in reports if r.get("true_peak_db") is not None]
        if peaks:
            merged["true_peak_db"] = max(peaks)
        return merged | joined_audio_outputs(reports, self.config["format"])
