"""dsp/ functions against references and known truths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioflow import dsp

librosa = pytest.importorskip("librosa")


def test_phase_vocoder_matches_librosa():
    rng = np.random.default_rng(0)
    y = (0.3 * np.sin(2 * np.pi * 220 * np.arange(48000) / 16000) + 0.05 * rng.standard_normal(48000)).astype(
        np.float32)
    D = librosa.stft(y, n_fft=2048, hop_length=512)
    for rate in (0.8, 1.0, 1.25):
        ref = librosa.phase_vocoder(D, rate=rate, hop_length=512)
        ours = dsp.phase_vocoder(torch.from_numpy(D)[None], rate, 512)[0].numpy()
        assert ours.shape == ref.shape
        # float32 phase accumulation (wrapped) against librosa's float64: 2e-3 of the peak
        assert np.abs(ours - ref).max() < 2e-3 * np.abs(D).max()


def test_phase_vocoder_per_item_rates():
    spec = torch.randn(3, 65, 40, dtype=torch.complex64)
    out = dsp.phase_vocoder(spec, torch.tensor([0.5, 1.0, 2.0]), 32)
    assert out.shape == (3, 65, 80)
    assert (out[2, :, 20:] == 0).all() and (out[1, :, 40:] == 0).all()


@pytest.mark.parametrize(("n", "hop"), [(2048, 512), (400, 100), (512, 256), (400, 160)])
def test_istft_inverts_stft_and_matches_torch(n, hop):
    x = torch.randn(2, 20000, dtype=torch.float64)
    w = dsp.get_window("hann", n, dtype=torch.float64)
    spec = dsp.stft(x, n, hop, w)
    torch.testing.assert_close(dsp.istft(spec, n, hop, w, length=20000), x)
    torch.testing.assert_close(dsp.istft(spec, n, hop, w, length=20000),
                               torch.istft(spec, n, hop, n, w, center=True, length=20000))


def test_stft_frames_is_stft_transposed():
    x = torch.randn(2, 5000)
    w = dsp.get_window("hann", 400)
    torch.testing.assert_close(dsp.stft_frames(x, 512, 160, w, True, "reflect"),
                               dsp.stft(x, 512, 160, w, True, "reflect").transpose(-1, -2))


@pytest.mark.parametrize(("orig", "new"), [(44100, 16000), (16000, 22050), (48000, 16000)])
def test_sinc_resample_keeps_tones_and_matches_soxr(orig, new):
    import soxr

    t = np.arange(orig) / orig
    y = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    ours = dsp.resample(torch.from_numpy(y), orig, new).numpy()
    ref = soxr.resample(y, orig, new, "HQ")
    assert abs(len(ours) - len(ref)) <= 1
    n = min(len(ours), len(ref))
    middle = slice(n // 10, n - n // 10)  # the two filters differ at the edges only
    assert np.abs(ours[:n][middle] - ref[:n][middle]).max() < 1e-2


def test_resample_batch_ratios_are_accurate():
    t = torch.arange(32000, dtype=torch.float64) / 16000
    x = torch.sin(2 * torch.pi * 500 * t).float()[None].repeat(3, 1)
    ratios = torch.tensor([0.8, 1.0, 1.3])
    y, lengths = dsp.resample_batch(x, ratios, torch.tensor([32000, 32000, 20000]))
    assert lengths.tolist() == [25600, 32000, 26000]
    for i, ratio in enumerate(ratios.tolist()):
        seg = y[i, : lengths[i]].double().numpy()
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
        k = int(np.argmax(spec))
        assert abs(k * 16000 / len(seg) - 500 / ratio) < 2.0  # the tone moves by the ratio


def test_next_fast_len_and_ratio_sizes():
    from audioflow.dsp.resample import fft_sizes_for_ratio, next_fast_len

    size = next_fast_len(160001)
    assert size >= 160001
    rest = size
    for p in (2, 3, 5):
        while rest % p == 0:
            rest //= p
    assert rest == 1
    for ratio in (0.7937, 1.0595, 1.26):
        n, m = fft_sizes_for_ratio(176543, ratio)
        assert n >= 176543 and abs(m / n - ratio) <= 1e-4 * ratio


def test_butterworth_edges():
    freqs = torch.linspace(0, 8000, 8001)
    lp = dsp.butterworth_response(freqs, torch.tensor([1000.0]), 4, "lowpass")[0]
    hp = dsp.butterworth_response(freqs, torch.tensor([1000.0]), 4, "highpass")[0]
    bp = dsp.butterworth_response(freqs, torch.tensor([[500.0, 2000.0]]), 2, "bandpass")[0]
    for response, edge in ((lp, 1000), (hp, 1000), (bp, 500), (bp, 2000)):
        assert abs(float(response[edge]) - 2**-0.5) < 1e-4


# --- recursive filters (dsp.iir): scipy's designs and sosfilt are the reference ---------------------------

from audioflow.dsp import iir  # noqa: E402

signal_ = pytest.importorskip("scipy.signal")


@pytest.mark.parametrize("kind", ["lowpass", "highpass"])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 7])
def test_butterworth_sos_response_matches_scipy(kind, order):
    sr = 16000
    ours = iir.butterworth_sos([37.0, 1000.0, 7900.0], order, kind, sr)
    freqs = np.geomspace(5, 7990, 200)
    for row, cutoff in zip(ours, (37.0, 1000.0, 7900.0), strict=True):
        ref = signal_.butter(order, cutoff, btype=kind, fs=sr, output="sos")
        _, h_ours = signal_.sosfreqz(row, worN=freqs, fs=sr)
        _, h_ref = signal_.sosfreqz(ref, worN=freqs, fs=sr)
        np.testing.assert_allclose(np.abs(h_ours), np.abs(h_ref), atol=1e-9)


def test_squared_design_is_minus_3_db_at_the_cutoff_after_both_passes():
    sr = 16000
    for kind in ("lowpass", "highpass"):
        for order in (1, 2, 3):
            sos = iir.butterworth_sos(1234.0, order, kind, sr, squared_at_minus_3db=True)[0]
            _, h = signal_.sosfreqz(sos, worN=[1234.0], fs=sr)
            assert abs(20 * np.log10(np.abs(h[0]) ** 2) + 3.0103) < 1e-6


def _reference(x: np.ndarray, sos: np.ndarray, zero_phase: bool) -> np.ndarray:
    """scipy in float64, the forward pass run on past the end by the filter's memory when zero-phase."""
    rows, n = x.shape
    tail = int(iir.memory_samples(sos).max()) if zero_phase else 0
    out = np.empty((rows, n))
    for i in range(rows if n else 0):
        y = signal_.sosfilt(sos[i], np.concatenate([x[i], np.zeros(tail)]))
        if zero_phase:
            y = signal_.sosfilt(sos[i], y[::-1])[::-1]
        out[i] = y[:n]
    return out


@pytest.mark.parametrize("rows", [1, 3, 8, 9, 32])
@pytest.mark.parametrize("n", [0, 1, 7, 1001, 48000])
@pytest.mark.parametrize("zero_phase", [False, True])
def test_sosfilt_matches_scipy(rows, n, zero_phase):
    rng = np.random.default_rng(rows * n + zero_phase)
    x = rng.standard_normal((rows, n)).astype(np.float32)
    sos = np.concatenate([iir.butterworth_sos(rng.uniform(20, 7900, rows), order, kind, 16000)
                          for order, kind in ((2, "highpass"), (3, "lowpass"))], axis=1)
    ours = iir.sosfilt(torch.from_numpy(x), sos, zero_phase=zero_phase).numpy()
    ref = _reference(x.astype(np.float64), sos, zero_phase)
    assert ours.shape == x.shape and ours.dtype == np.float32
    # float32 recursion against float64: 1e-4 of the peak (poles near z = 1 amplify rounding)
    assert np.abs(ours - ref).max(initial=0.0) <= 1e-4 * max(1.0, np.abs(ref).max(initial=0.0))


def test_sosfilt_frequency_domain_fallback_agrees(monkeypatch):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((3, 16000)).astype(np.float32))
    sos = iir.butterworth_sos([50.0, 500.0, 5000.0], 4, "lowpass", 16000)
    native = [iir.sosfilt(x, sos, zero_phase=z) for z in (False, True)]
    monkeypatch.setattr(iir, "_iir", None)
    for z, expected in zip((False, True), native, strict=True):
        torch.testing.assert_close(iir.sosfilt(x, sos, zero_phase=z), expected, atol=2e-4, rtol=0)


def test_sosfilt_native_kernel_built():
    # optional where no C compiler exists (the FFT path serves); where one does, setup must have built it
    import shutil
    import sysconfig

    if not shutil.which(sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var("CC") else "cc"):
        pytest.skip("no C compiler on this machine: the frequency-domain path serves")
    assert iir.native_available()


# --- batched resampling: the polyphase path against the FFT path and scipy ---------------------------------


def test_rational_ratio():
    from audioflow.dsp.resample import rational_ratio

    assert rational_ratio(1 / 0.9) == (10, 9) and rational_ratio(1 / 1.1) == (10, 11)
    assert rational_ratio(1.0) == (1, 1) and rational_ratio(16000 / 44100) is None
    assert rational_ratio(1 / 1.0123456) is None


def test_resample_batch_polyphase_against_the_exact_signal_fft_and_scipy():
    rng = np.random.default_rng(3)
    sr, n = 16000, 40000
    freqs = (110.0, 440.0, 950.0, 1800.0)

    def tones(f, seconds):  # content below 0.8 of the lower Nyquist
        return 0.4 * np.sin(2 * np.pi * f * seconds) + 0.3 * np.sin(2 * np.pi * 2.2 * f * seconds)

    t = np.arange(n) / sr
    rows = [tones(f, t) + 1e-3 * rng.standard_normal(n) for f in freqs]
    x = torch.from_numpy(np.stack(rows).astype(np.float32))
    lengths = torch.tensor([n, 31111, 25000, 7])
    ratios = torch.tensor([1 / 0.9, 1 / 1.1, 1.0, 1 / 0.9], dtype=torch.float64)
    poly, poly_len = dsp.resample_batch(x, ratios, lengths, method="polyphase")
    fft, fft_len = dsp.resample_batch(x, ratios, lengths, method="fft")
    assert poly.shape == fft.shape and torch.equal(poly_len, fft_len)
    assert poly_len.tolist() == [round(int(n_) * float(r)) for n_, r in zip(lengths, ratios, strict=True)]
    for b, length in enumerate(poly_len.tolist()):
        assert not poly[b, length:].any()  # nothing past each row's new length
        if length > 2000:
            # output sample m is input time m / (ratio sr): the tones there, in the middle half (the edges
            # ring), within the 1e-3 noise plus the filter's passband ripple
            m = np.arange(length)
            exact = tones(freqs[b], m / (float(ratios[b]) * sr))
            inner = slice(length // 4, 3 * length // 4)
            assert np.abs(poly[b, inner].numpy() - exact[inner]).max() < 5e-3
            # the FFT path moves the ratio by up to 1e-4 for fast sizes: a drift of a few samples at most
            assert (poly[b, inner] - fft[b, inner]).abs().max() < 3e-2
    # scipy's polyphase resampler (Kaiser window) on the first row: the same signal within 5e-3
    ref = signal_.resample_poly(rows[0], 10, 9)
    assert np.abs(poly[0, 1000:-1000].numpy() - ref[1000:len(poly[0]) - 1000]).max() < 5e-3


def test_speed_perturb_uses_polyphase_for_fixed_factors():
    x = torch.randn(8, 1, 16000)
    lengths = torch.full((8,), 16000)
    speed = __import__("audioflow.augment", fromlist=["SpeedPerturb"]).SpeedPerturb(p=1.0, seed=0)
    y, new = speed(x, lengths)
    for i, factor in enumerate(speed.last_factor.tolist()):
        assert int(new[i]) == round(16000 / factor)
        expected, _ = dsp.resample_batch(x[i], torch.tensor([1 / factor], dtype=torch.float64), method="polyphase")
        torch.testing.assert_close(y[i, :, : int(new[i])], expected[:, : int(new[i])])
