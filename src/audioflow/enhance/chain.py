"""The enhancement chain: each step an option, applied in one order chosen so that no step undoes
another (cleanup before shaping, loudness last, the limiter after it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from .cleanup import pre_emphasis, remove_clicks, spectral_gate
from .eq import apply_sos, butterworth, rbj_biquad
from .loudness import limit_true_peak, normalize_loudness, true_peak_db

ENHANCE_ORDER = ("highpass", "lowpass", "declick", "denoise", "eq", "preemphasis", "loudness", "true_peak")


@dataclass
class EnhanceOptions:
    """What to do (None / False: skip). Frequencies in Hz, gains in dB, loudness in LUFS.

    Order: high-pass, low-pass (rumble and hiss out first, so they neither trigger click detection nor
    count as noise), de-click (before the noise profile is taken), spectral-gate denoise, EQ bands,
    pre-emphasis, loudness normalisation, true-peak limit (last: gain changes peaks)."""

    highpass: float | None = None
    lowpass: float | None = None
    declick: bool = False
    denoise: bool = False
    denoise_db: float = 12.0
    eq: tuple[tuple[str, float, float, float], ...] = ()  # (kind, freq Hz, gain dB, Q) per band
    preemphasis: float | None = None
    lufs: float | None = None
    gain_db: float | None = None  # a fixed gain instead of a loudness target (chunks of one long input)
    true_peak: float = -1.0  # dBTP ceiling, applied with the loudness target or the fixed gain
    filter_order: int = 4

    def __post_init__(self) -> None:
        for band in self.eq:
            if len(band) != 4:
                raise ParameterError(f"an EQ band is (kind, freq, gain_db, q), got {band!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def enhance(y: np.ndarray, sr: int, options: EnhanceOptions) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply ``options`` to ``y`` (``[frames]`` or ``[channels, frames]``); returns the audio and what each
    step did (steps run, clicks repaired, loudness before/after, gain, true peak)."""
    out = np.asarray(y, np.float32)
    report: dict[str, Any] = {"steps": []}
    if options.highpass:
        out = apply_sos(out, butterworth("highpass", options.highpass, sr, options.filter_order))
        report["steps"].append("highpass")
    if options.lowpass:
        out = apply_sos(out, butterworth("lowpass", options.lowpass, sr, options.filter_order))
        report["steps"].append("lowpass")
    if options.declick:
        out, report["clicks_repaired"] = remove_clicks(out, sr)
        report["steps"].append("declick")
    if options.denoise:
        out = spectral_gate(out, sr, options.denoise_db)
        report["steps"].append("denoise")
    if options.eq:
        out = apply_sos(out, [rbj_biquad(kind, freq, sr, gain, q) for kind, freq, gain, q in options.eq])
        report["steps"].append("eq")
    if options.preemphasis:
        out = pre_emphasis(out, options.preemphasis)
        report["steps"].append("preemphasis")
    if options.lufs is not None:
        out, loudness = normalize_loudness(out, sr, options.lufs, options.true_peak)
        report.update(loudness)
        report["steps"] += ["loudness", "true_peak"]
    elif options.gain_db is not None:
        out = limit_true_peak((out * 10 ** (options.gain_db / 20)).astype(np.float32), sr, options.true_peak)
        report.update(gain_db=options.gain_db, true_peak_db=true_peak_db(out))
        report["steps"] += ["gain", "true_peak"]
    return out.astype(np.float32, copy=False), report
