"""Augmentations: known truths on tones and noise (pitch, duration, SNR, gain, -3 dB points), per-item
randomness, lengths, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import audioflow.augment as A

SR = 16000


def tones(freq: float = 440.0, seconds: float = 2.0, n: int = 4) -> torch.Tensor:
    t = torch.arange(int(SR * seconds), dtype=torch.float64) / SR
    return (0.5 * torch.sin(2 * torch.pi * freq * t)).float()[None].repeat(n, 1)


def peak_hz(y: torch.Tensor, sr: int = SR) -> float:
    """Frequency of the spectral peak, refined by parabolic interpolation (Hz)."""
    y = y.double().numpy()
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1: k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / len(y)


def full(n: int, size: int) -> torch.Tensor:
    return torch.full((n,), size, dtype=torch.long)


def test_time_stretch_keeps_pitch_and_scales_duration():
    x = tones()
    stretch = A.TimeStretch(0.7, 1.4, p=1.0, seed=3)
    y, lengths = stretch(x, full(4, x.shape[-1]))
    rates = stretch.last_rate
    assert len(set(rates.tolist())) == 4  # a rate per item
    for i in range(4):
        assert int(lengths[i]) == round(x.shape[-1] / float(rates[i]))
        assert abs(peak_hz(y[i, : lengths[i]]) - 440.0) < 0.01 * 440.0
        assert (y[i, lengths[i]:] == 0).all()


def test_pitch_shift_moves_by_the_semitones_asked():
    x = tones()
    shift = A.PitchShift(-5, 5, p=1.0, seed=4)
    y, lengths = shift(x, full(4, x.shape[-1]))
    assert (lengths == x.shape[-1]).all() and y.shape == x.shape
    for i, semitones in enumerate(shift.last_semitones.tolist()):
        expected = 440.0 * 2 ** (semitones / 12)
        assert abs(peak_hz(y[i]) - expected) < 0.01 * expected


def test_fused_stretch_and_shift_does_both():
    x = tones()
    chain = A.Compose([A.TimeStretch(0.8, 1.25, p=1.0), A.PitchShift(-3, 3, p=1.0)], seed=5)
    assert isinstance(chain.fused[0], A.StretchAndShift)
    y, lengths = chain(x, full(4, x.shape[-1]))
    assert len(chain.fused) == 1
    # the fused pass draws from the members' own generators; replay them to know the parameters
    replay = A.Compose([A.TimeStretch(0.8, 1.25, p=1.0), A.PitchShift(-3, 3, p=1.0)], seed=5)
    stretch, shift = replay.transforms
    torch.rand(4, generator=stretch.generator), torch.rand(4, generator=shift.generator)
    rates, semis = stretch.draw(4, torch.device("cpu")), shift.draw(4, torch.device("cpu"))
    for i in range(4):
        assert int(lengths[i]) == pytest.approx(x.shape[-1] / float(rates[i]), abs=2)
        expected = 440.0 * 2 ** (float(semis[i]) / 12)
        assert abs(peak_hz(y[i, : lengths[i]]) - expected) < 0.01 * expected


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_add_noise_reaches_the_snr(color):
    x = tones(n=6)
    lengths = torch.tensor([32000, 30000, 20000, 32000, 10000, 25000])
    x = x * (torch.arange(32000)[None] < lengths[:, None])
    noisy, _ = A.AddNoise(0.0, 30.0, noise_color=color, p=1.0, seed=1)(x, lengths)
    aug = A.AddNoise(0.0, 30.0, noise_color=color, p=1.0, seed=1)
    aug(x, lengths)
    for i, snr in enumerate(aug.last_snr_db.tolist()):
        n = int(lengths[i])
        noise = noisy[i, :n] - x[i, :n]
        measured = 10 * np.log10(float(x[i, :n].square().mean()) / float(noise.square().mean()))
        assert abs(measured - snr) < 0.5
        assert (noisy[i, n:] == 0).all()  # padding stays silent


def test_noise_colours_have_their_slopes():
    gen = torch.Generator().manual_seed(0)
    for color, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        noise = A.colored_noise((8, 2**16), color, torch.device("cpu"), gen)
        psd = (torch.fft.rfft(noise).abs() ** 2).mean(0)
        f = torch.arange(len(psd))
        band = (f > 100) & (f < 10000)
        fitted = np.polyfit(np.log(f[band].numpy()), np.log(psd[band].numpy()), 1)[0]
        assert abs(fitted - slope) < 0.1


def test_add_noise_from_recordings(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    path = tmp_path / "hum.wav"
    sf.write(path, (0.1 * rng.standard_normal(8000)).astype(np.float32), SR)
    x = tones(n=3)
    y = A.AddNoise(snr_db=10, noise=[str(path)], sample_rate=SR, p=1.0, seed=0)(x)
    measured = 10 * torch.log10(x.square().mean(-1) / (y - x).square().mean(-1))
    assert torch.allclose(measured, torch.full((3,), 10.0), atol=0.5)


def test_gain_is_exact():
    x = tones()
    gain = A.Gain(-12, 12, p=1.0, seed=0)
    y = gain(x)
    expected = x * (10 ** (gain.last_gain_db / 20)).float()[:, None]
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize(("transform", "kind"), [
    (A.LowPassFilter(SR, 500, 4000, p=1.0, seed=0), "lowpass"),
    (A.HighPassFilter(SR, 100, 2000, p=1.0, seed=1), "highpass"),
])
def test_filters_put_minus_3_db_where_asked(transform, kind):
    impulse = torch.zeros(4, SR)
    impulse[:, SR // 2] = 1.0
    y = transform(impulse)
    for i in range(4):
        response = torch.fft.rfft(y[i]).abs()
        freqs = torch.fft.rfftfreq(SR, 1 / SR)
        below = response < 2**-0.5
        crossing = float(freqs[below.nonzero()[0]]) if kind == "lowpass" else float(freqs[(~below).nonzero()[0]])
        cutoff = float(transform.last_cutoff[i])
        assert abs(crossing - cutoff) < 0.05 * cutoff


def test_band_filters():
    impulse = torch.zeros(3, SR)
    impulse[:, SR // 2] = 1.0
    bp = A.BandPassFilter(SR, 500, 2000, p=1.0, seed=2)
    bs = A.BandStopFilter(SR, 500, 2000, p=1.0, seed=2)
    pass_resp, stop_resp = torch.fft.rfft(bp(impulse)).abs(), torch.fft.rfft(bs(impulse)).abs()
    freqs = torch.fft.rfftfreq(SR, 1 / SR)
    for i in range(3):
        low, high = bp.last_cutoff[i].tolist()
        for edge in (low, high):
            k = int(torch.argmin((freqs - edge).abs()))
            assert abs(float(pass_resp[i, k]) - 2**-0.5) < 0.05
            assert abs(float(stop_resp[i, k]) - 2**-0.5) < 0.05
        centre = int(torch.argmin((freqs - (low * high) ** 0.5).abs()))
        assert float(stop_resp[i, centre]) < 0.2 and float(pass_resp[i, centre]) > 0.8


def test_speed_perturb_scales_length_and_pitch():
    x = tones()
    speed = A.SpeedPerturb((0.9, 1.1), p=1.0, seed=0)
    y, lengths = speed(x, full(4, x.shape[-1]))
    for i, factor in enumerate(speed.last_factor.tolist()):
        assert int(lengths[i]) == round(x.shape[-1] / factor)
        assert abs(peak_hz(y[i, : lengths[i]]) - 440 * factor) < 0.01 * 440 * factor


def test_shift_rolls_within_each_item():
    x = torch.arange(10, dtype=torch.float32)[None].repeat(2, 1)
    lengths = torch.tensor([10, 6])
    x[1, 6:] = 0
    y, out_lengths = A.Shift(2, 2, shift_unit="samples", p=1.0)(x, lengths)
    assert y[0].tolist() == [8, 9, 0, 1, 2, 3, 4, 5, 6, 7]
    assert y[1].tolist() == [4, 5, 0, 1, 2, 3, 0, 0, 0, 0] and out_lengths.tolist() == [10, 6]


def test_crop_and_pad():
    x = torch.randn(3, 1000)
    lengths = torch.tensor([1000, 500, 200])
    y, out = A.RandomCrop(400, seed=0)(x, lengths)
    assert y.shape == (3, 400) and out.tolist() == [400, 400, 200]
    y, out = A.PadOrCrop(1200)(x, lengths)
    assert y.shape == (3, 1200) and out.tolist() == [1000, 500, 200]
    centre, _ = A.PadOrCrop(100, mode="center")(x, lengths)
    torch.testing.assert_close(centre[0], x[0, 450:550])


def test_reverb_keeps_length_and_level_and_identity_rir():
    x = tones(n=3)
    y = A.Reverb(SR, p=1.0, seed=0)(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y.square().mean(-1), x.square().mean(-1), rtol=1e-3, atol=1e-6)
    delta = torch.zeros(100)
    delta[0] = 1.0
    torch.testing.assert_close(A.Reverb(SR, rirs=[delta], p=1.0)(x), x, rtol=1e-4, atol=1e-5)


def test_distortions_keep_shape_and_bound():
    x = tones()
    clipped = A.ClippingDistortion(10, 40, p=1.0, seed=0)(x)
    assert (clipped.abs().amax(-1) < x.abs().amax(-1)).all()
    soft = A.TanhDistortion(0.2, 0.8, p=1.0, seed=0)(x)
    torch.testing.assert_close(soft.square().mean(-1), x.square().mean(-1), rtol=1e-3, atol=1e-6)


def test_probability_and_polarity():
    x = torch.ones(1000, 8)
    y = A.PolarityInversion(p=0.3, seed=0)(x)
    flipped = (y[:, 0] < 0).float().mean()
    assert 0.25 < float(flipped) < 0.35


def test_seed_reproduces_and_items_differ():
    x = tones()
    a = A.Compose([A.Gain(p=1.0), A.AddNoise(snr_db=(5, 20), p=1.0)], seed=7)(x)
    b = A.Compose([A.Gain(p=1.0), A.AddNoise(snr_db=(5, 20), p=1.0)], seed=7)(x)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1])


def test_one_of_and_some_of():
    x = torch.ones(400, 10)
    y = A.OneOf([A.Gain(6, 6), A.Gain(-6, -6)], seed=0)(x)
    gains = y[:, 0]
    up, down = torch.isclose(gains, torch.tensor(10 ** 0.3)), torch.isclose(gains, torch.tensor(10 ** -0.3))
    assert bool((up | down).all()) and 150 < int(up.sum()) < 250
    y = A.SomeOf(2, [A.Gain(6, 6), A.Gain(6, 6), A.Gain(6, 6)], seed=0)(x)
    torch.testing.assert_close(y[:, 0], torch.full((400,), 10 ** 0.6))


def test_spec_masks_and_mixup():
    feats = torch.ones(8, 40, 100)
    lengths = torch.tensor([100, 50, 100, 30, 100, 100, 80, 10])
    masked, _ = A.TimeMask(max_width=20, num_masks=2, seed=0)(feats, lengths)
    assert ((masked == 0).sum(-1)[:, 0] <= 40).all()
    for i, n in enumerate(lengths.tolist()):
        assert (masked[i, :, n:] == 1).all()  # only the valid frames are masked
    fmask = A.FreqMask(max_width=8, seed=0)(feats)
    assert ((fmask == 0).all(-1).sum(-1) <= 8).all()
    mix = A.Mixup(alpha=0.4, num_classes=3, seed=0)
    x = torch.arange(8, dtype=torch.float32)[:, None].repeat(1, 5)
    mixed, targets = mix(x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    torch.testing.assert_close(targets.sum(-1), torch.ones(8))
    lam, perm = mix.last_lambda, mix.last_perm
    torch.testing.assert_close(mixed[:, 0], lam * x[:, 0] + (1 - lam) * x[perm, 0])


def test_multichannel_items_share_parameters_and_float64():
    x = tones(n=2).double()
    stereo = torch.stack([x, 0.5 * x], 1)  # [2, 2, time]
    y = A.Gain(-6, 6, p=1.0, seed=0)(stereo)
    torch.testing.assert_close(y[:, 1], 0.5 * y[:, 0])
    assert y.dtype == torch.float64
    stretch = A.TimeStretch(0.9, 1.1, p=1.0, seed=0)
    y2, lengths = stretch(stereo, full(2, x.shape[-1]))
    assert y2.shape[1] == 2
    torch.testing.assert_close(y2[:, 1], 0.5 * y2[:, 0])  # both channels stretched alike
    assert lengths.tolist() == [round(x.shape[-1] / r) for r in stretch.last_rate.tolist()]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_gpu():  # pragma: no cover - GPU machines only
    x = tones().cuda()
    chain = A.Compose([A.TimeStretch(p=1.0), A.PitchShift(p=1.0), A.AddNoise(p=1.0), A.LowPassFilter(SR, p=1.0)],
                      seed=0)
    y, lengths = chain(x, full(4, x.shape[-1]).cuda())
    assert y.device.type == "cuda" and lengths.device.type == "cuda"


def test_spectral_stretch_without_augmentation_is_the_feature():
    from audioflow import features as F

    x = tones(n=3) + 0.01 * torch.randn(3, 32000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([32000, 20000, 9000])
    logmel = F.LogMel(SR, 1024, hop_length=256, n_mels=40, pad_mode="constant")
    fused = A.SpectralStretch(logmel, p=0.0)
    ours, frames = fused(x, lengths)
    ref, ref_frames = logmel(x, lengths)
    assert frames.tolist() == ref_frames.tolist()
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=1e-4)


def test_spectral_stretch_changes_frames_and_moves_pitch():
    from audioflow import features as F

    x = tones(1000.0, n=4)
    spec = F.Spectrogram(4096, hop_length=1024, pad_mode="constant")
    fused = A.SpectralStretch(spec, 0.7, 1.4, -3, 3, p=1.0, seed=1)
    power, frames = fused(x, full(4, x.shape[-1]))
    valid = 1 + x.shape[-1] // 1024
    freqs = torch.fft.rfftfreq(4096, 1 / SR)
    for i in range(4):
        rate, semis = float(fused.last_rate[i]), float(fused.last_semitones[i])
        assert int(frames[i]) == math.ceil(valid / rate)
        profile = power[i, :, : int(frames[i])].mean(-1)
        k = int(profile.argmax())
        a, b, c = torch.log(profile[k - 1: k + 2] + 1e-20).tolist()
        peak = float(freqs[k]) + 0.5 * (a - c) / (a - 2 * b + c) * float(freqs[1])
        expected = 1000.0 * 2 ** (semis / 12)
        assert abs(peak - expected) < 0.01 * expected


def _stretch_by_hand(power: torch.Tensor, rate: float) -> torch.Tensor:
    """``[freq, frames]`` on the phase vocoder's grid, one output frame at a time (librosa's loop)."""
    frames = power.shape[-1]
    padded = torch.nn.functional.pad(power, (0, 2))  # librosa's zero frames past the end
    out = []
    for step in torch.arange(0, frames, rate, dtype=torch.float64).tolist():
        k, frac = math.floor(step), step - math.floor(step)
        out.append((1 - frac) * padded[:, k] + frac * padded[:, k + 1])
    return torch.stack(out, -1)


def test_stretch_frames_is_the_vocoder_magnitude():
    from audioflow import dsp

    x = 0.1 * torch.randn(3, 8000, generator=torch.Generator().manual_seed(1))
    spec = dsp.stft(x, 512, 128, dsp.get_window("hann", 512))
    rate = torch.tensor([0.8, 1.0, 1.3])
    ours = dsp.stretch_frames(spec.abs().transpose(1, 2).contiguous(), rate).transpose(1, 2)
    torch.testing.assert_close(ours, dsp.phase_vocoder(spec, rate, 128).abs(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_spectral_stretch_equals_stretch_then_warp_then_feature_by_hand(kind):
    """The fused path (mel computed once, frames interpolated on the mel rows, the pitch warp folded
    into each item's mel matrix) gives the numbers of the literal chain done by hand: power spectrum,
    frames interpolated one by one on the vocoder's grid, frequency warp, mel, log/DCT."""
    from audioflow import dsp
    from audioflow import features as F

    x = 0.1 * torch.randn(5, 16000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([16000, 15000, 12000, 16000, 9000])
    feature = F.LogMel(SR, n_mels=64) if kind == "logmel" else F.MFCC(SR, 40)
    fused = A.SpectralStretch(feature, 0.8, 1.25, -3, 3, p=(1.0, 0.6), seed=3)
    ours, frames = fused(x, lengths)
    rate, semitones = fused.last_rate, fused.last_semitones
    sm = fused.spec
    power = dsp.stft(x, sm.n_fft, sm.hop_length, sm.window, sm.center, sm.pad_mode).abs().square()
    valid = dsp.frame_lengths(lengths, sm.n_fft, sm.hop_length, sm.center)
    ref_frames = torch.ceil(valid.double() / rate).long()
    assert frames.tolist() == ref_frames.tolist()
    for i in range(5):
        stretched = _stretch_by_hand(power[i], float(rate[i]))
        warped = A.warp_frequency(stretched[None], torch.pow(2.0, semitones[i:i + 1] / 12).float())[0]
        mel = dsp.mask_frames((sm.fb @ warped)[None], ref_frames[i:i + 1])
        ref = feature.from_mel(mel, ref_frames[i:i + 1])[0, :, : int(ref_frames[i])]
        torch.testing.assert_close(ours[i, :, : int(frames[i])], ref, atol=2e-3, rtol=1e-4)  # float32 sums


def test_a_torch_generator_drives_the_draws():
    x = tones()
    a = A.Gain(-12, 12, p=0.5, seed=torch.Generator().manual_seed(3))(x)
    b = A.Gain(-12, 12, p=0.5, seed=torch.Generator().manual_seed(3))(x)
    torch.testing.assert_close(a, b)
    chain = A.Compose([A.Gain(p=1.0), A.AddNoise(p=1.0)], seed=torch.Generator().manual_seed(1))
    again = A.Compose([A.Gain(p=1.0), A.AddNoise(p=1.0)], seed=torch.Generator().manual_seed(1))
    torch.testing.assert_close(chain(x), again(x))


def test_stretch_and_shift_levels_match_librosa():
    librosa = pytest.importorskip("librosa")
    x = tones(n=4)
    y_np = x[0].numpy()

    def rms(a):
        return float(np.sqrt(np.mean(np.asarray(a)[2048:-2048] ** 2)))

    shift = A.PitchShift(-4, 4, p=1.0, seed=0)
    shifted, _ = shift(x, full(4, x.shape[-1]))
    stretch = A.TimeStretch(0.8, 1.25, p=1.0, seed=0)
    stretched, lengths = stretch(x, full(4, x.shape[-1]))
    for i in range(4):
        ref = librosa.effects.pitch_shift(y_np, sr=SR, n_steps=float(shift.last_semitones[i]))
        assert abs(rms(shifted[i]) / rms(ref) - 1) < 0.02  # phase-vocoder level, as librosa's
        ref = librosa.effects.time_stretch(y_np, rate=float(stretch.last_rate[i]))
        assert abs(rms(stretched[i, : lengths[i]]) / rms(ref) - 1) < 0.02
