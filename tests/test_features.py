"""Feature modules against their references: librosa 0.11, openai-whisper's log_mel_spectrogram, Kaldi's
fbank (kaldi-native-fbank), on espeak-ng speech and synthetic signals. Tolerances are stated per test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import audioflow
from audioflow import features as F

librosa = pytest.importorskip("librosa")


@pytest.fixture(scope="module")
def signals(speech_wav) -> dict[str, tuple[np.ndarray, int]]:
    speech, sr = audioflow.load(speech_wav, sr=16000)
    rng = np.random.default_rng(0)
    t = np.arange(3 * 22050) / 22050
    chirp = (0.4 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    return {"speech": (speech, sr), "chirp": (chirp, 22050)}


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest error relative to the reference's peak."""
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", ["speech", "chirp"])
@pytest.mark.parametrize(("norm", "scale"), [("slaney", "slaney"), (None, "htk"), ("slaney", "htk")])
def test_melspectrogram_matches_librosa(signals, name, norm, scale):
    y, sr = signals[name]
    ours = F.MelSpectrogram.librosa(sr, n_mels=64, norm=norm, mel_scale=scale)(torch.from_numpy(y)).numpy()
    ref = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=64, norm=norm, htk=scale == "htk")
    assert ours.shape == ref.shape
    assert rel_err(ours, ref) < 1e-5  # mel power, vs librosa 0.11 (float32 FFTs on both sides)


@pytest.mark.parametrize("name", ["speech", "chirp"])
def test_log_mel_db_matches_librosa(signals, name):
    y, sr = signals[name]
    ours = F.LogMel.librosa(sr)(torch.from_numpy(y)).numpy()
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr), top_db=80.0)
    assert np.abs(ours - ref).max() < 1e-3  # dB


@pytest.mark.parametrize("n_mfcc", [13, 20, 40])
@pytest.mark.parametrize("lifter", [0, 22])
def test_mfcc_matches_librosa(signals, n_mfcc, lifter):
    y, sr = signals["speech"]
    ours = F.MFCC.librosa(sr, n_mfcc=n_mfcc, lifter=lifter)(torch.from_numpy(y)).numpy()
    ref = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc, lifter=lifter)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3 * max(1, lifter / 2)  # coefficients of dB values


@pytest.mark.parametrize(("power", "win_length", "window"), [(1.0, None, "hann"), (2.0, 1024, "hamming")])
def test_spectrogram_matches_librosa_stft(signals, power, win_length, window):
    y, _ = signals["chirp"]
    spec = F.Spectrogram(2048, win_length=win_length, hop_length=512, window_fn=window, power=power,
                         pad_mode="constant")
    ref = np.abs(librosa.stft(y, n_fft=2048, hop_length=512, win_length=win_length, window=window)) ** power
    assert rel_err(spec(torch.from_numpy(y)).numpy(), ref) < 1e-5


def test_torchaudio_defaults():
    mel = F.MelSpectrogram()
    assert (mel.n_fft, mel.hop_length, mel.n_mels, mel.pad_mode) == (400, 200, 128, "reflect")
    mfcc = F.MFCC()
    assert mfcc.dct_mat.shape == (128, 40)
    out = mel(torch.zeros(16000))
    assert out.shape == (128, 81)


@pytest.mark.parametrize(("n_mels", "padding"), [(80, 0), (128, 0), (80, 480000)])
def test_whisper_log_mel_matches_openai_whisper(signals, n_mels, padding):
    whisper_audio = pytest.importorskip("whisper.audio")
    y, _ = signals["speech"]
    ref = whisper_audio.log_mel_spectrogram(torch.from_numpy(y), n_mels=n_mels, padding=padding).numpy()
    ours = F.WhisperLogMel(n_mels, padding=padding)(torch.from_numpy(y)).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-5  # same float32 ops, in a different order


@pytest.mark.parametrize("snip_edges", [True, False])
@pytest.mark.parametrize(("bins", "length_ms", "shift_ms"), [(23, 25.0, 10.0), (80, 25.0, 10.0), (40, 20.0, 5.0)])
def test_fbank_matches_kaldi(signals, snip_edges, bins, length_ms, shift_ms):
    knf = pytest.importorskip("kaldi_native_fbank")
    y, sr = signals["speech"]
    samples = y * 32768  # Kaldi works on int16-scaled samples
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = snip_edges
    opts.frame_opts.frame_length_ms = length_ms
    opts.frame_opts.frame_shift_ms = shift_ms
    opts.mel_opts.num_bins = bins
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(sr, samples.tolist())
    fbank.input_finished()
    ref = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    ours = F.Fbank(sr, bins, length_ms, shift_ms, snip_edges=snip_edges)(torch.from_numpy(samples))[0].numpy().T
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3  # natural-log energies, float32 accumulation


def test_fbank_batch_is_chunked_row_by_row_with_kaldis_numbers(signals):
    """A batch long enough to be computed a row at a time (the cache-sized chunks) gives each row what
    Kaldi gives it alone, with the energy column and both edge rules; and a 3-D batch keeps its shape."""
    knf = pytest.importorskip("kaldi_native_fbank")
    y, sr = signals["speech"]
    rows = np.stack([np.tile(y, 5)[:sr * 9], np.roll(np.tile(y, 5)[:sr * 9], 777) * 0.5]) * 32768
    for snip_edges in (True, False):
        module = F.Fbank(sr, 40, snip_edges=snip_edges, use_energy=True, energy_floor=0.0)  # Kaldi's default
        ours = module(torch.from_numpy(rows.astype(np.float32)))
        for row, samples in zip(ours, rows, strict=True):
            opts = knf.FbankOptions()
            opts.frame_opts.dither = 0.0
            opts.frame_opts.snip_edges = snip_edges
            opts.mel_opts.num_bins = 40
            opts.use_energy = True
            fbank = knf.OnlineFbank(opts)
            fbank.accept_waveform(sr, samples.tolist())
            fbank.input_finished()
            ref = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
            assert row.numpy().T.shape == ref.shape
            assert np.abs(row.numpy().T - ref).max() < 2e-3
        stereo = module(torch.from_numpy(rows.astype(np.float32))[None])
        assert torch.equal(stereo[0], ours)


@pytest.mark.parametrize(("width", "order"), [(5, 1), (9, 1), (5, 2)])
def test_deltas_match_librosa(signals, width, order):
    y, sr = signals["speech"]
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13)
    ref = mfcc
    for _ in range(order):
        ref = librosa.feature.delta(ref, width=width, mode="nearest")
    ours = F.Deltas(width, order)(torch.from_numpy(mfcc)[None])[0].numpy()
    assert np.abs(ours - ref).max() < 1e-4


def test_deltas_stacked_shape():
    x = torch.randn(2, 13, 50)
    assert F.Deltas(order=2, stack=True)(x).shape == (2, 39, 50)


def test_cmvn_uses_only_valid_frames():
    x = torch.randn(3, 13, 40) * 5 + 2
    lengths = torch.tensor([40, 25, 10])
    out = F.CMVN(norm_vars=True)(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        valid = out[b, :, :n]
        assert valid.mean(-1).abs().max() < 1e-5
        assert (valid.std(-1, unbiased=False) - 1).abs().max() < 1e-4
        assert (out[b, :, n:] == 0).all()


def test_descriptors_match_librosa(signals):
    y, sr = signals["chirp"]
    S = np.abs(librosa.stft(y))
    St, freqs = torch.from_numpy(S), F.fft_frequencies(sr, 2048)
    x = torch.from_numpy(y)
    pairs = {
        "centroid": (F.spectral_centroid(St, freqs), librosa.feature.spectral_centroid(S=S, sr=sr), 1e-5),
        "bandwidth": (F.spectral_bandwidth(St, freqs), librosa.feature.spectral_bandwidth(S=S, sr=sr), 1e-5),
        "rolloff": (F.spectral_rolloff(St, freqs), librosa.feature.spectral_rolloff(S=S, sr=sr), 1e-6),
        "flatness": (F.spectral_flatness(St), librosa.feature.spectral_flatness(S=S), 1e-4),
        "contrast": (F.spectral_contrast(St, sr, 2048), librosa.feature.spectral_contrast(S=S, sr=sr), 1e-5),
        "zcr": (F.zero_crossing_rate(x), librosa.feature.zero_crossing_rate(y), 1e-6),
        "rms": (F.rms(x), librosa.feature.rms(y=y), 1e-5),
        "chroma": (F.chroma_stft(St**2, sr, 2048), librosa.feature.chroma_stft(S=S**2, sr=sr, tuning=0.0), 1e-5),
    }
    for name, (ours, ref, tol) in pairs.items():
        assert ours.shape == ref.shape, name
        assert rel_err(ours.numpy(), ref) < tol, name  # relative to the reference's peak


def test_chroma_of_a_tone_peaks_at_its_pitch_class():
    sr = 22050
    t = np.arange(sr) / sr
    S = np.abs(librosa.stft(np.sin(2 * np.pi * 440 * t).astype(np.float32))) ** 2
    chroma = F.chroma_stft(torch.from_numpy(S), sr, 2048).mean(-1)
    assert int(chroma.argmax()) == 9  # C=0 ... A=9


@pytest.mark.parametrize("module", [
    F.MelSpectrogram(16000, 400, hop_length=160, n_mels=40, pad_mode="constant"),
    F.LogMel(16000, 400, hop_length=160, n_mels=40, pad_mode="constant"),
    F.MFCC(16000, 13, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40, "pad_mode": "constant"}),
    F.WhisperLogMel(),
    F.Fbank(),
])
def test_padded_batch_equals_each_item_alone(signals, module):
    y, _ = signals["speech"]
    clips = [y[: len(y) // 3], y[: len(y) // 2], y]
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.zeros(3, len(y))
    for i, c in enumerate(clips):
        batch[i, : len(c)] = torch.from_numpy(c)
    out, frames = module(batch, lengths)
    for i, c in enumerate(clips):
        alone = module(torch.from_numpy(c)[None])[0]
        n = int(frames[i])
        assert n == alone.shape[-1] or (isinstance(module, F.WhisperLogMel) and n == alone.shape[-1])
        # reflect padding (Whisper) sees the batch's zeros in the last frames: compare the rest
        edge = 3 if isinstance(module, F.WhisperLogMel) else 0
        torch.testing.assert_close(out[i, :, : n - edge], alone[:, : n - edge], atol=1e-3, rtol=1e-4)
        assert (out[i, :, n:] == 0).all()


def test_float64_and_channels(signals):
    y, sr = signals["speech"]
    stereo = torch.from_numpy(np.stack([y, y * 0.5]))[None].double()  # [1, 2, time]
    mel = F.MelSpectrogram(sr, 400, hop_length=160, n_mels=40).double()
    out = mel(stereo)
    assert out.dtype == torch.float64 and out.shape[:3] == (1, 2, 40)
    torch.testing.assert_close(out[0, 1], out[0, 0] * 0.25)


def test_modules_move_with_to():
    mel = F.MelSpectrogram()
    assert {b.device.type for b in mel.buffers()} == {"cpu"}
    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        mel = mel.to("cuda")
        assert mel(torch.zeros(2, 16000, device="cuda")).device.type == "cuda"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_keep_their_dtype(signals, dtype):
    y, sr = signals["speech"]
    x = torch.from_numpy(y)
    mel = F.LogMel(sr, 400, hop_length=160, n_mels=40)
    ref = mel(x)
    out = mel(x.to(dtype))
    assert out.dtype == dtype
    # the input's rounding (11 / 8 bits of mantissa) sets a noise floor some 50-60 dB under the peak:
    # within 40 dB of the peak the features agree within 1 dB
    loud = ref > ref.max() - 40
    assert (out.float() - ref)[loud].abs().max() < 1.0


@pytest.mark.parametrize("length", [0, 1, 399])
def test_fbank_of_audio_shorter_than_one_frame_has_no_frames(length):
    """Kaldi (snip_edges) makes no frame of under 25 ms: no frames, with the bins' axis kept, not an FFT error."""
    for module, bins in ((F.Fbank(num_mel_bins=80), 80), (F.Fbank(num_mel_bins=23, use_energy=True), 24)):
        assert tuple(module(torch.zeros(2, length)).shape) == (2, bins, 0)
    assert tuple(F.Fbank(num_mel_bins=80)(torch.zeros(2, 400)).shape) == (2, 80, 1)


@pytest.mark.parametrize("n_fft", [256, 400, 2048])
def test_fused_log_equals_the_log_of_the_mel(n_fft):
    """LogMel and MFCC take the log chunk by chunk inside the STFT loop: the same numbers as the mel power
    then ``from_mel``, with and without lengths (padding masked before the top_db floor), batch large
    enough to be chunked."""
    rng = np.random.default_rng(3)
    x = torch.from_numpy((rng.standard_normal((40, 64000)) * 0.1).astype(np.float32))  # chunked: 4 s each
    x[:, 48000:] *= 1e-4  # a quiet tail, so the floor matters
    lengths = torch.tensor([64000 - 997 * i for i in range(40)])
    logmel = F.LogMel(16000, n_fft, hop_length=160, n_mels=64)
    mfcc = F.MFCC(16000, 40, melkwargs={"n_fft": n_fft, "hop_length": 160, "n_mels": 64})
    for module, mel_of in ((logmel, logmel.mel), (mfcc, mfcc.melspec.mel)):
        for given in (None, lengths):
            mel = mel_of(x)
            frames = None if given is None else module.output_lengths(given, mel.shape[-1])
            expected = module.finish(module.from_mel(mel, frames), given)
            got = module(x, given)
            got, expected = (got[0], expected[0]) if isinstance(got, tuple) else (got, expected)
            torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-5)
