"""Measurements any recording gets: duration, loudness, peaks, an SNR estimate, silence and clipping; and
SI-SDR against a known clean reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .loudness import integrated_loudness, true_peak_db


def _db(value: float) -> float | None:
    return 20 * math.log10(value) if value > 0 else None


def signal_metrics(y: np.ndarray, sr: int, silence_db: float = -50.0, frame_s: float = 0.02) -> dict[str, Any]:
    """Duration (s), integrated loudness (LUFS), sample and true peak (dBFS, dBTP), an SNR estimate (dB),
    the silence ratio, the clipping ratio, and the DC offset.

    The SNR estimate compares the loud and quiet ends of the 20 ms frame energies (95th against 10th
    percentile, in dB): speech or music over a noise floor reads as their level difference. Silence: frames
    under ``silence_db`` dBFS RMS. Clipping: samples within 0.1 % of full scale (|x| >= 0.999)."""
    x = np.atleast_2d(np.asarray(y, np.float32))
    frames = x.shape[-1]
    mono = x.mean(axis=0)
    hop = max(1, round(frame_s * sr))
    usable = frames // hop * hop
    rms = np.sqrt(np.mean(mono[:usable].reshape(-1, hop) ** 2, axis=1)) if usable else np.zeros(1)
    energy_db = 20 * np.log10(np.maximum(rms, 1e-10))
    loud, quiet = np.percentile(energy_db, 95), np.percentile(energy_db, 10)
    peak = float(np.abs(x).max()) if x.size else 0.0
    return {
        "duration": frames / sr,
        "sample_rate": sr,
        "channels": x.shape[0],
        "loudness_lufs": integrated_loudness(x, sr),
        "peak_dbfs": _db(peak),
        "true_peak_dbtp": true_peak_db(x) if peak > 0 else None,
        "rms_dbfs": _db(float(np.sqrt(np.mean(mono**2)))) if frames else None,
        "snr_estimate_db": float(loud - quiet) if usable else None,
        "silence_ratio": float(np.mean(energy_db < silence_db)),
        "clipping_ratio": float(np.mean(np.abs(x) >= 0.999)) if x.size else 0.0,
        "dc_offset": float(mono.mean()) if frames else 0.0,
    }


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio of ``estimate`` against ``reference`` (same length), dB
    (Le Roux et al. 2019): the share of the estimate that is the reference, scaled at best, against the rest."""
    r = np.asarray(reference, np.float64).ravel()
    e = np.asarray(estimate, np.float64).ravel()
    if r.shape != e.shape:
        raise ValueError(f"si_sdr: reference {r.shape} and estimate {e.shape} differ in length")
    target = (e @ r) / max(r @ r, 1e-20) * r
    return float(10 * math.log10(max(np.sum(target ** 2), 1e-20) / max(np.sum((e - target) ** 2), 1e-20)))
