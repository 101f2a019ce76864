"""Rhythm from an onset strength envelope, in vectorised NumPy: the envelope itself, the tempo, beats by
dynamic programming, onset peaks, and the harmonic/percussive split.

These follow librosa's algorithms and defaults (``onset.onset_strength``, ``feature.tempo``, Ellis's beat
tracker in ``beat.beat_track``, ``util.peak_pick``, ``decompose.hpss``) and give the same results (the tests
compare), without librosa's numba kernels: those compile for ~15 s in every fresh process, which made the
``analyze`` step cost 20 s of start-up per run."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

TINY = np.finfo(np.float32).tiny


def power_to_db(power: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    """``10 log10(power)`` floored at 1e-10 and at ``top_db`` dB below the peak (librosa's ``power_to_db``
    with ``ref=1``)."""
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    return np.maximum(db, db.max() - top_db) if db.size else db


def onset_envelope(mel_db: np.ndarray, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """Spectral flux: the mean over bands of the rise of a dB mel spectrogram ``[bands, frames]`` from one
    frame to the next, half-wave rectified, delayed to line up with centred frames (librosa's
    ``onset_strength(S=...)``)."""
    rise = np.maximum(0.0, mel_db[:, 1:] - mel_db[:, :-1]).mean(axis=0)
    delay = 1 + n_fft // (2 * hop_length)
    return np.pad(rise, (delay, 0))[: mel_db.shape[1]]


def tempo(envelope: np.ndarray, frame_rate: float, start_bpm: float = 120.0, std_octaves: float = 1.0,
          window_seconds: float = 8.0, max_bpm: float = 320.0) -> float:
    """Tempo in BPM: the lag that maximises the mean autocorrelation of the envelope over ``window_seconds``
    windows (the tempogram), weighted by a log-normal prior centred on ``start_bpm`` with ``std_octaves``
    octaves of spread. ``frame_rate``: envelope frames per second."""
    width = int(np.floor(window_seconds * frame_rate))
    padded = np.pad(envelope, width // 2, mode="linear_ramp", end_values=(0, 0))
    frames = np.lib.stride_tricks.sliding_window_view(padded, width)[: len(envelope)]
    windowed = frames * signal.get_window("hann", width, fftbins=True)
    size = 2 * width - 1
    spectrum = np.fft.rfft(windowed, n=size, axis=-1)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2, n=size, axis=-1)[:, :width]
    peak = np.abs(autocorrelation).max(axis=-1, keepdims=True)
    tempogram = (autocorrelation / np.where(peak < TINY, 1.0, peak)).mean(axis=0)
    lags = np.arange(1, width)
    bpms = 60.0 * frame_rate / lags
    log_prior = -0.5 * ((np.log2(bpms) - np.log2(start_bpm)) / std_octaves) ** 2
    log_prior[bpms >= max_bpm] = -np.inf
    return float(bpms[np.argmax(np.log1p(1e6 * tempogram[1:]) + log_prior)])


# The metrical-level decision of tempo_octave, from rendered pieces at 60-180 BPM with and without drums
# (tests/midi.py's ballads): a tempo read twice too fast has beats that alternate strong and weak (the
# phases' mean onset strengths 1.97-2.12 apart, against at most 1.40 at the right level); one read twice
# too slow has onsets between its beats nearly as strong as on them (0.67-0.93 of the beats', against at
# most 0.48). Each threshold is the geometric middle of its gap, not fitted closer: on 13 real recordings
# (5 songs, 8 loops, true tempi unknown) it changes no song, and one loop (Sonic Pi's tabla, 89 -> 180)
HALVE_PHASE_RATIO = 1.66
DOUBLE_MIDPOINT_RATIO = 0.57


def tempo_octave(envelope: np.ndarray, beats: np.ndarray, bpm: float, min_bpm: float = 40.0,
                 max_bpm: float = 200.0) -> float:
    """The factor (0.5, 1 or 2) that puts ``bpm`` at the beat level, from the onset strength on the tracked
    ``beats`` (envelope frames): halve when every other beat is much weaker (the tracker took a subdivision
    for the beat: a slow piece with eighth-note hi-hats), double when the onsets halfway between beats are
    nearly as strong as the beats (a fast piece read at half speed). Metrical accent, as the octave
    decisions of tempo trackers after the tempogram (e.g. Percival and Tzanetakis 2014) weigh it, instead of
    the prior alone."""
    if len(beats) < 8:
        return 1.0
    on_beats = _strength(envelope, beats)
    phases = sorted((on_beats[0::2].mean(), on_beats[1::2].mean()))
    if phases[0] > 0 and phases[1] / phases[0] > HALVE_PHASE_RATIO and bpm / 2 >= min_bpm:
        return 0.5
    midpoints = _strength(envelope, np.round((beats[:-1] + beats[1:]) / 2).astype(int))
    if on_beats.mean() > 0 and midpoints.mean() / on_beats.mean() > DOUBLE_MIDPOINT_RATIO and bpm * 2 <= max_bpm:
        return 2.0
    return 1.0


def _strength(envelope: np.ndarray, frames: np.ndarray, reach: int = 2) -> np.ndarray:
    """The envelope's peak within ``reach`` frames of each frame (an onset a frame early or late counts)."""
    return np.array([envelope[max(0, f - reach):f + reach + 1].max() for f in frames])


def beat_track(envelope: np.ndarray, bpm: float, frame_rate: float, tightness: float = 100.0,
               trim: bool = True) -> np.ndarray:
    """Beat frames by dynamic programming (Ellis 2007): each frame's best predecessor maximises the
    cumulative score minus ``tightness`` times the squared log-ratio of its distance to the beat period;
    beats are backtracked from the last strong cumulative peak, and weak leading and trailing beats are
    trimmed."""
    if not envelope.any() or len(envelope) < 2:
        return np.zeros(0, int)
    period = float(np.round(frame_rate * 60.0 / bpm))
    normalised = envelope / (envelope.std(ddof=1) + TINY)
    offsets = np.arange(-period, period + 1)
    window = np.exp(-0.5 * (offsets * 32.0 / period) ** 2)
    local = np.convolve(normalised, window, mode="same")
    backlink, cumulative = _dynamic_program(local, period, tightness)
    beats = np.zeros(len(local), bool)
    frame = _last_beat(cumulative)
    while frame >= 0:
        beats[frame] = True
        frame = backlink[frame]
    return np.flatnonzero(_trimmed(local, beats, trim))


def _dynamic_program(local: np.ndarray, period: float, tightness: float) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's best predecessor (-1: none) and cumulative score. Predecessors lie between half and two
    periods back; among equal scores the nearest wins. Frames are scored a block of half a period at a
    time: no frame of a block can be another's predecessor, so each block is one vectorised step."""
    nearest, farthest = int(np.round(period / 2)), int(2 * period)
    lags = np.arange(nearest, farthest + 1)  # nearest first, so argmax prefers it on ties
    penalty = tightness * (np.log(lags) - np.log(period)) ** 2
    n = len(local)
    backlink = np.full(n, -1)
    cumulative = local.astype(np.float64)
    step = max(1, nearest)
    for first in range(nearest, n, step):
        frames = np.arange(first, min(first + step, n))
        sources = frames[:, None] - lags[None, :]  # [block, lags]
        scores = np.where(sources >= 0, cumulative[np.maximum(sources, 0)] - penalty, -np.inf)
        best = np.argmax(scores, axis=1)
        found = np.isfinite(scores[np.arange(len(frames)), best])
        cumulative[frames] = local[frames] + np.where(found, scores[np.arange(len(frames)), best], 0.0)
        backlink[frames] = np.where(found, frames - lags[best], -1)
    above = np.flatnonzero(local >= 0.01 * local.max())  # no beat before the first frame this strong
    backlink[: above[0] if len(above) else n] = -1
    return backlink, cumulative


def _last_beat(cumulative: np.ndarray) -> int:
    """The last local maximum of the cumulative score at least half the median of all its local maxima."""
    padded = np.pad(cumulative, 1, mode="edge")
    peaks = (cumulative > padded[:-2]) & (cumulative >= padded[2:])
    if not peaks.any():
        return len(cumulative) - 1
    threshold = 0.5 * np.median(cumulative[peaks])
    strong = np.flatnonzero(peaks & (cumulative >= threshold))
    return int(strong[-1]) if len(strong) else len(cumulative) - 1


def _trimmed(local: np.ndarray, beats: np.ndarray, trim: bool) -> np.ndarray:
    """Beats without the leading and trailing frames whose local score is at most half the RMS of the beats'
    smoothed local score (every frame with zero score when ``trim`` is off)."""
    smooth = np.convolve(local[beats], np.hanning(5))[2:len(local) + 2]
    threshold = 0.5 * np.sqrt(np.mean(smooth ** 2)) if trim and len(smooth) else 0.0
    strong = np.flatnonzero(local > threshold)
    kept = beats.copy()
    if len(strong) == 0:
        kept[:] = False
        return kept
    kept[: strong[0]] = False
    kept[strong[-1] + 1:] = False
    return kept


def peak_frames(envelope: np.ndarray, frame_rate: float, delta: float = 0.07) -> np.ndarray:
    """Onset frames: peaks of the envelope (scaled to 0-1) that are the maximum of the 30 ms before them,
    exceed the mean of the 100 ms around them by ``delta``, and come at least 30 ms after the previous
    onset (librosa's ``onset_detect`` defaults)."""
    if len(envelope) == 0 or np.ptp(envelope) <= 0:
        return np.zeros(0, int)
    x = (envelope - envelope.min()) / np.ptp(envelope)
    pre_max, post_max = int(0.03 * frame_rate), 1
    pre_avg, post_avg = int(0.10 * frame_rate), int(0.10 * frame_rate) + 1
    wait = int(0.03 * frame_rate)
    local_max = _running(x, pre_max, post_max, np.nanmax)
    local_mean = _running(x, pre_avg, post_avg, np.nanmean)
    candidates = np.flatnonzero((x == local_max) & (x >= local_mean + delta))
    onsets, last = [], -np.inf
    for n in candidates:
        if n > last + wait:
            onsets.append(n)
            last = n
    return np.asarray(onsets, int)


def _running(x: np.ndarray, before: int, after: int, reduce) -> np.ndarray:
    """``reduce`` (a NaN-ignoring reduction) of ``x[n - before : n + after]`` for every n: the window is cut
    at the edges by padding with NaN."""
    padded = np.pad(x, (before, after), mode="constant", constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, before + after)[: len(x)]
    return reduce(windows, axis=-1)


def harmonic_ratio(power: np.ndarray, kernel: int = 31) -> float | None:
    """Harmonic share of the energy of a power spectrogram ``[bins, frames]`` after median-filtering HPSS
    (librosa's ``decompose.hpss``: ``kernel`` frames along time for the harmonic part, ``kernel`` bins
    along frequency for the percussive part, soft masks of power 2)."""
    harmonic = ndimage.median_filter(power, size=(1, kernel), mode="reflect")
    percussive = ndimage.median_filter(power, size=(kernel, 1), mode="reflect")
    total = harmonic ** 2 + percussive ** 2
    share = np.divide(harmonic ** 2, total, out=np.zeros_like(total), where=total > TINY)
    h = float((power * share).sum())
    p = float((power * np.where(total > TINY, 1.0 - share, 0.0)).sum())
    return h / (h + p) if h + p > 0 else None
