"""Enhancement and measurement against known truths and references: EQ gain at the centre (tone
measured after filtering, within 0.1 dB), loudness against pyloudnorm, the true-peak ceiling held,
clicks found and repaired, noise reduced, metrics of signals whose values are known."""

from __future__ import annotations

import numpy as np
import pytest

from audioflow import enhance as E

pyln = pytest.importorskip("pyloudnorm")
SR = 48000


def tone(freq, seconds=2.0, amplitude=0.5, sr=SR):
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def level_db(y, skip=0.2):
    y = y[round(skip * SR):]  # past the filter's start-up transient
    return 20 * np.log10(np.sqrt(np.mean(np.asarray(y, np.float64) ** 2)))


@pytest.mark.parametrize(("kind", "freq", "gain", "q"), [
    ("peaking", 1000, 6.0, 1.0), ("peaking", 3000, -9.0, 2.0), ("lowshelf", 200, 4.0, 0.7071),
    ("highshelf", 6000, -5.0, 0.7071)])
def test_eq_gain_is_exact_at_the_centre(kind, freq, gain, q):
    """A tone at the centre (peaking) or deep in the shelf comes out ``gain`` dB louder, within 0.1 dB."""
    probe = freq if kind == "peaking" else (freq / 8 if kind == "lowshelf" else min(freq * 3, SR / 2 - 1000))
    x = tone(probe)
    sos = E.rbj_biquad(kind, freq, SR, gain, q)
    measured = level_db(E.apply_sos(x, sos)) - level_db(x)
    assert abs(measured - gain) < 0.1
    assert abs(float(E.response_db(sos, [probe], SR)[0]) - gain) < 0.1
    assert abs(level_db(E.apply_sos(tone(freq * 4 if kind == "peaking" else probe), sos)) - level_db(
        tone(freq * 4 if kind == "peaking" else probe))) < (1.0 if kind == "peaking" else abs(gain) + 0.1)


def test_butterworth_minus_3db_at_the_corner():
    sos = E.butterworth("highpass", 1000, SR, order=4)
    assert abs(level_db(E.apply_sos(tone(1000), sos)) - level_db(tone(1000)) + 3.01) < 0.1
    assert level_db(E.apply_sos(tone(100), sos)) - level_db(tone(100)) < -70


def test_loudness_matches_pyloudnorm_and_hits_the_target():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((2, SR * 3))).astype(np.float32)  # stereo noise
    ref = pyln.Meter(SR).integrated_loudness(x.T.astype(np.float64))
    assert abs(E.integrated_loudness(x, SR) - ref) < 1e-6
    out, report = E.normalize_loudness(x, SR, -23.0, true_peak_ceiling_db=None)
    assert abs(pyln.Meter(SR).integrated_loudness(out.T.astype(np.float64)) + 23.0) < 0.05
    assert abs(report["gain_db"] - (-23.0 - ref)) < 1e-9


def test_true_peak_limit_holds_the_ceiling():
    x = tone(997, amplitude=0.25)
    x[SR // 2: SR // 2 + 200] *= 3.5  # a burst far over the ceiling once the gain is applied
    out, report = E.normalize_loudness(x, SR, -10.0, true_peak_ceiling_db=-1.0)
    assert report["true_peak_db"] <= -1.0 + 1e-6 and E.true_peak_db(out) <= -1.0 + 1e-6
    assert abs(report["loudness_after"] + 10.0) < 1.5  # limiting takes a little of the loudness


def test_inter_sample_peaks_count_as_true_peak():
    # a sine at fs/4 sampled 45 degrees off its crest: samples at 0.707 of the true amplitude
    n = np.arange(SR)
    fade = np.minimum(1.0, np.minimum(n, n[::-1]) / 480)  # 10 ms: an abrupt full-scale start rings for real
    x = (np.sin(2 * np.pi * n / 4 + np.pi / 4) * fade).astype(np.float32)
    assert abs(20 * np.log10(np.abs(x).max()) + 3.01) < 0.01
    assert abs(E.true_peak_db(x)) < 0.1


def test_clicks_are_found_and_repaired():
    x = tone(440, seconds=1.0, amplitude=0.3)
    clicked = x.copy()
    positions = [4000, 17000, 30001]
    for p in positions:
        clicked[p] += 0.6
        clicked[p + 1] -= 0.4
    repaired, count = E.remove_clicks(clicked, SR)
    assert count == len(positions)
    for p in positions:
        assert np.abs(repaired[p - 5: p + 6] - x[p - 5: p + 6]).max() < 0.01
    untouched, none = E.remove_clicks(x, SR)
    assert none == 0 and np.array_equal(untouched, x)


def test_spectral_gate_lowers_the_noise_and_keeps_the_tone():
    rng = np.random.default_rng(1)
    x = tone(1000, seconds=3.0, amplitude=0.3)
    x[: SR] = 0.0  # a second of noise only at the start: the profile
    noise = (0.02 * rng.standard_normal(len(x))).astype(np.float32)
    out = E.spectral_gate(x + noise, SR, reduction_db=15)
    residual_before = level_db((x + noise - x)[: SR], 0)
    residual_after = level_db((out - x)[: SR], 0)
    assert residual_after < residual_before - 10
    assert abs(level_db(out[SR + SR // 2:], 0) - level_db(x[SR + SR // 2:], 0)) < 0.5


def test_enhance_runs_the_steps_in_the_stated_order():
    x = np.stack([tone(300), tone(3000)]) + 0.01
    options = E.EnhanceOptions(highpass=40, lowpass=12000, declick=True, denoise=True,
                               eq=(("peaking", 1000, 3.0, 1.0),), preemphasis=0.5, lufs=-20.0)
    out, report = E.enhance(x, SR, options)
    assert report["steps"] == list(E.ENHANCE_ORDER)
    assert out.shape == x.shape and out.dtype == np.float32
    assert abs(report["loudness_after"] + 20.0) < 1.0 and report["true_peak_db"] <= -1.0 + 1e-6


def test_metrics_of_known_signals():
    x = tone(440, seconds=2.0, amplitude=0.5)
    x[SR:] = 0.0  # half silence
    m = E.signal_metrics(x, SR)
    assert m["duration"] == 2.0 and abs(m["peak_dbfs"] - 20 * np.log10(0.5)) < 0.01
    assert abs(m["silence_ratio"] - 0.5) < 0.02 and m["clipping_ratio"] == 0.0
    clipped = np.clip(tone(440, amplitude=2.0), -1, 1)
    assert E.signal_metrics(clipped, SR)["clipping_ratio"] > 0.3
    rng = np.random.default_rng(0)
    speechlike = tone(300, 4.0, 0.3) * (np.arange(4 * SR) % SR < SR // 2) + 0.003 * rng.standard_normal(4 * SR)
    assert 30 < E.signal_metrics(speechlike.astype(np.float32), SR)["snr_estimate_db"] < 45  # 0.3 vs 0.003 rms: ~37 dB
