"""audioflow.load against reference decoders (soundfile/libsndfile, PyAV, librosa) and known truths."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audioflow
from conftest import ALL_KINDS, SOUNDFILE_KINDS, make_file, pyav_decode, tone


@pytest.mark.parametrize("kind", SOUNDFILE_KINDS)
def test_native_decode_matches_libsndfile(corpus, kind):
    y, sr = audioflow.load(corpus[kind], mono=False)
    ref, ref_sr = sf.read(corpus[kind], dtype="float32", always_2d=True)
    assert sr == ref_sr
    assert y.dtype == np.float32 and y.shape == (2, len(ref))
    # PCM and FLAC are bit-exact; lossy decoders (FFmpeg vs libvorbis/libopus) agree closely
    tol = {"ogg": 1e-5, "opus": 2e-3}.get(kind, 0.0)
    assert np.abs(y - ref.T).max() <= tol


def test_m4a_matches_pyav(corpus):
    y, sr = audioflow.load(corpus["m4a"], mono=False)
    ref, ref_sr = pyav_decode(corpus["m4a"])
    assert sr == ref_sr == 44100
    np.testing.assert_array_equal(y, ref)
    # the encoder's 1024 priming samples and the last frame's padding are gone: the original length, in
    # time with the original (best match at lag 0), and AAC at 128 kbit/s keeps it above 20 dB SNR
    original = tone(seconds=2.0, sr=44100, channels=2).T
    assert y.shape == original.shape
    middle = slice(10000, 80000)
    lags = {lag: np.abs(y[:, middle] - original[:, middle.start + lag:middle.stop + lag]).mean()
            for lag in range(-8, 9)}
    assert min(lags, key=lags.get) == 0
    assert np.sqrt(np.mean((y - original) ** 2)) < 0.1 * np.sqrt(np.mean(original ** 2))


@pytest.mark.parametrize("kind", ["wav_pcm16", "flac", "mp3", "ogg"])
def test_resampled_mono_matches_librosa(corpus, kind):
    librosa = pytest.importorskip("librosa")
    y, sr = audioflow.load(corpus[kind], sr=16000, mono=True)
    ref, ref_sr = librosa.load(corpus[kind], sr=16000, mono=True)  # soxr_hq, as our default
    assert sr == ref_sr == 16000 and y.shape == ref.shape
    assert np.abs(y - ref).max() < 1e-5  # vs librosa 0.11: same soxr recipe, mixdown order differs


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_shapes_follow_librosa(corpus, kind):
    mono, _ = audioflow.load(corpus[kind])
    stereo, _ = audioflow.load(corpus[kind], mono=False)
    assert mono.ndim == 1 and stereo.ndim == 2 and stereo.shape[0] == 2
    np.testing.assert_allclose(mono, stereo.mean(axis=0), atol=1e-6)


def test_one_channel_file_is_1d_even_without_mono(tmp_path):
    path = make_file(tmp_path, "wav_pcm16", channels=1)
    y, _ = audioflow.load(path, mono=False)
    assert y.ndim == 1


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_window_equals_slice_of_full_decode(corpus, kind):
    full, sr = audioflow.load(corpus[kind], mono=False)
    window, wsr = audioflow.load(corpus[kind], mono=False, offset=0.73, duration=0.5)
    start, n = round(0.73 * sr), round(0.5 * sr)
    assert wsr == sr and window.shape == (2, n)
    # Opus and AAC decoders restart at a packet boundary: converged within a few 1e-4; whole Vorbis streams
    # from 32,000 samples/s are decoded by FFmpeg, windows by libvorbis: the two decoders' float rounding
    tol = {"opus": 2e-3, "m4a": 2e-3, "ogg": 1e-6}.get(kind, 0.0)
    assert np.abs(window - full[:, start:start + n]).max() <= tol


@pytest.mark.parametrize("kind", ["wav_pcm16", "flac", "mp3", "ogg", "opus", "m4a"])
def test_window_past_the_end(corpus, kind):
    y, _ = audioflow.load(corpus[kind], offset=10.0)
    assert y.shape == (0,)
    full, sr = audioflow.load(corpus[kind])
    y, _ = audioflow.load(corpus[kind], offset=1.5, duration=5.0)  # runs off the end: what is there
    assert len(y) == len(full) - round(1.5 * sr)


class CountingReader(io.RawIOBase):
    """A real file, counting the bytes the decoder pulls through it."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb")  # noqa: SIM115
        self.bytes_read = 0
        self.name = str(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)

    def tell(self) -> int:
        return self.f.tell()

    def readinto(self, b) -> int:
        n = self.f.readinto(b)
        self.bytes_read += n
        return n

    def close(self) -> None:
        self.f.close()
        super().close()


def _window_bytes(path: Path) -> int:
    reader = CountingReader(path)
    y, sr = audioflow.load(reader, offset=20.0, duration=2.0)
    assert len(y) == 2 * sr
    return reader.bytes_read


# MP3 is absent on purpose: libsndfile (mpg123) scans frame headers from the start to seek
# sample-accurately; it decodes nothing it skips, but it reads the bytes (docs/benchmarks.md).
# FFmpeg's Ogg and MP4 demuxers read a constant ~200 KB to open and bisect: their files must be
# well past that for the comparison to mean anything, hence longer and slow.
@pytest.mark.parametrize(("kind", "seconds"), [
    ("wav_pcm16", 30), ("aiff_pcm16", 30), ("flac", 30),
    pytest.param("ogg", 200, marks=pytest.mark.slow), pytest.param("m4a", 200, marks=pytest.mark.slow),
    pytest.param("opus", 200, marks=pytest.mark.slow)])
def test_window_read_cost_does_not_grow_with_file_length(tmp_path, kind, seconds):
    (tmp_path / "short").mkdir()
    (tmp_path / "long").mkdir()
    short = make_file(tmp_path / "short", kind, seconds=seconds, channels=1, sr=8000)
    long = make_file(tmp_path / "long", kind, seconds=10 * seconds, channels=1, sr=8000)
    short_bytes, long_bytes = _window_bytes(short), _window_bytes(long)
    # ten times the file, the same two seconds: bisection may add a few reads, never a scan
    assert long_bytes < 1.5 * short_bytes + 65536, (short_bytes, long_bytes)
    assert long_bytes < 0.2 * long.stat().st_size


def test_sources_path_str_bytes_fileobj_memory_url(corpus):
    path = corpus["flac"]
    ref, sr = audioflow.load(path)
    import fsspec

    with fsspec.open("memory://audioflow-test/clip.flac", "wb") as f:
        f.write(path.read_bytes())
    with open(path, "rb") as f:
        variants = [str(path), path.read_bytes(), f, "memory://audioflow-test/clip.flac", f"file://{path}"]
        for source in variants:
            y, ysr = audioflow.load(source)
            assert ysr == sr
            np.testing.assert_array_equal(y, ref)
            if hasattr(source, "seek"):
                source.seek(0)


def test_tone_keeps_its_pitch_through_resampling(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(440.0, seconds=2.0, sr=48000), 48000, subtype="PCM_24")
    for target in (8000, 16000, 22050, 44100):
        y, sr = audioflow.load(path, sr=target)
        spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        peak_hz = np.argmax(spectrum) * sr / len(y)
        assert sr == target and abs(peak_hz - 440.0) < 1.0  # 0.5 Hz bins over 2 s
        assert abs(len(y) - 2 * target) <= 1


@pytest.mark.parametrize("quality", ["qq", "hq", "vhq", "soxr_hq"])
def test_res_quality_names(corpus, quality):
    y, sr = audioflow.load(corpus["wav_pcm16"], sr=16000, res_quality=quality)
    assert sr == 16000 and abs(len(y) - 32000) <= 1


def test_dtype_float64(corpus):
    y, _ = audioflow.load(corpus["wav_pcm24"], dtype=np.float64)
    ref, _ = sf.read(corpus["wav_pcm24"], dtype="float64")
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref.mean(axis=1), atol=1e-7)


def test_speech_matches_soundfile(speech_wav):
    y, sr = audioflow.load(speech_wav)
    ref, ref_sr = sf.read(speech_wav, dtype="float32")
    assert sr == ref_sr and len(y) > sr  # at least a second of speech
    np.testing.assert_array_equal(y, ref)


def test_audio_value_type(corpus):
    y, sr = audioflow.load(corpus["wav_pcm16"], mono=False)
    a = audioflow.Audio(y, sr, str(corpus["wav_pcm16"]))
    assert a.channels == 2 and a.frames == y.shape[1] and a.duration == pytest.approx(2.0)
    assert a.to_mono().channels == 1
    assert a.slice(0.5, 1.0).frames == round(0.5 * sr)
    assert a.to_dict()["duration"] == pytest.approx(2.0)
    with pytest.raises(audioflow.ParameterError):
        audioflow.Audio(np.zeros((2, 2, 2)), sr)
    seg = audioflow.Segment(1.0, 2.5, "speech", 0.9)
    assert audioflow.Segment.from_dict(seg.to_dict()) == seg


@pytest.mark.parametrize("bad", [{"sr": 0}, {"sr": -1}, {"offset": -1.0}, {"duration": -2.0},
                                 {"dtype": np.int16}, {"res_quality": "best"}])
def test_bad_arguments(corpus, bad):
    with pytest.raises(audioflow.ParameterError):
        audioflow.load(corpus["wav_pcm16"], **bad)


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize(("sr", "channels"), [(8000, 1), (16000, 1), (22050, 2), (48000, 2), (96000, 6)])
def test_native_rate_and_channels_are_kept(tmp_path, kind, sr, channels):
    if kind in ("opus", "mp3", "m4a", "ogg") and (channels > 2 or sr == 96000):
        pytest.skip("codec limits")
    path = make_file(tmp_path, kind, seconds=0.5, channels=channels, sr=sr)
    y, got_sr = audioflow.load(path, mono=False)
    expected_sr = 48000 if kind == "opus" else sr  # Opus decodes at its native 48 kHz, as FFmpeg does
    assert got_sr == expected_sr
    assert (y.shape[0] if y.ndim == 2 else 1) == channels
    described = audioflow.info(path)
    assert (described.sample_rate, described.channels) == (expected_sr, channels)
