"""A corpus of broken files: each gives an AudioflowError subclass that names the file and the
problem, allocates no more than the file can hold, and neither hangs nor crashes."""

from __future__ import annotations

import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audioflow
from audioflow import (
    AudioFileNotFoundError,
    AudioflowError,
    AudioPermissionError,
    DecodeError,
    InvalidAudioError,
    SourceError,
    UnsupportedFormatError,
)
from conftest import make_file

pytestmark = pytest.mark.timeout(60)


def wav_header(channels: int, sr: int, bits: int, data_bytes: int, fmt_tag: int = 1) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, sr, sr * block, block, bits)
    riff_size = struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF))
    return (b"RIFF" + riff_size + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_bytes))


def rf64_declaring(frames: int) -> bytes:
    """An RF64 file whose ds64 chunk declares ``frames`` 16-bit mono frames, holding 1 s."""
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    ds64 = struct.pack("<QQQI", 0, frames * 2, frames, 0)
    return (b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"ds64" + struct.pack("<I", len(ds64)) + ds64
            + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF)
            + np.zeros(16000, "<i2").tobytes())


def assert_clean_error(path, expected=AudioflowError, **kwargs) -> AudioflowError:
    """The load fails with ``expected``, the message names the file, and the peak allocation stays
    below what the file could hold as float32 (plus a small constant)."""
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    tracemalloc.start()
    try:
        with pytest.raises(expected) as info:
            audioflow.load(path, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 64 * size + (8 << 20), f"peak {peak} bytes for a {size}-byte file"
    return info.value


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("valid")
    return {k: make_file(d, k, seconds=1.0) for k in ("wav_pcm16", "flac", "mp3", "ogg", "opus", "m4a",
                                                       "aiff_pcm16")}


def test_zero_bytes(tmp_path):
    for ext in ("wav", "mp3", "flac"):
        path = tmp_path / f"empty.{ext}"
        path.write_bytes(b"")
        err = assert_clean_error(path, DecodeError)
        assert "empty" in err.message


# the size - 1 cut loses part of the last compressed frame: a clean decode of the rest is fine
@pytest.mark.parametrize("kind", ["wav_pcm16", "flac", "mp3", "ogg", "opus", "m4a", "aiff_pcm16"])
@pytest.mark.parametrize("fraction", [0.0005, 0.002, 0.01, 0.5, 0.9])
def test_truncated(valid, tmp_path, kind, fraction):
    data = valid[kind].read_bytes()
    cut = max(4, int(len(data) * fraction))
    path = tmp_path / f"truncated_{cut}{valid[kind].suffix}"
    path.write_bytes(data[:cut])
    if kind == "m4a" and fraction == 0.9:
        # MP4 keeps its index (moov) at the end as PyAV writes it; here the cut removes audio
        # the index points to, which FFmpeg reports as a read error or a short stream
        pass
    err = assert_clean_error(path, DecodeError)
    assert err.message


@pytest.mark.parametrize("kind", ["wav_pcm16", "aiff_pcm16", "flac", "ogg"])
def test_truncation_is_named_as_such(valid, tmp_path, kind):
    data = valid[kind].read_bytes()
    path = tmp_path / f"half{valid[kind].suffix}"
    path.write_bytes(data[: len(data) // 2])
    err = assert_clean_error(path, DecodeError)
    assert "truncated" in err.message


def test_header_declaring_a_trillion_frames(tmp_path):
    path = tmp_path / "huge.wav"
    path.write_bytes(rf64_declaring(10**12))
    err = assert_clean_error(path, DecodeError)
    assert "1000000000000 frames" in err.message and "truncated" in err.message
    with pytest.raises(DecodeError):
        audioflow.info(path)


def test_riff_data_size_larger_than_file(tmp_path):
    path = tmp_path / "liar.wav"
    path.write_bytes(wav_header(2, 44100, 16, 0xFFFFFFE0) + np.zeros(1000, "<i2").tobytes())
    assert "truncated" in assert_clean_error(path, DecodeError).message


@pytest.mark.parametrize("rate", [0, 10**9])
def test_absurd_sample_rate(tmp_path, rate):
    path = tmp_path / f"rate_{rate}.wav"
    path.write_bytes(wav_header(1, rate, 16, 2000) + np.zeros(1000, "<i2").tobytes())
    err = assert_clean_error(path, DecodeError)
    assert "sample rate" in err.message and str(rate) in err.message


def test_absurd_rate_in_flac_streaminfo(valid, tmp_path):
    data = bytearray(valid["flac"].read_bytes())
    # STREAMINFO starts 8 bytes in; its rate is the top 20 bits of the 8 bytes at offset 18
    v = int.from_bytes(data[18:26], "big") & ((1 << 44) - 1)
    data[18:26] = v.to_bytes(8, "big")  # rate 0
    path = tmp_path / "rate0.flac"
    path.write_bytes(bytes(data))
    assert "sample rate" in assert_clean_error(path, DecodeError).message


@pytest.mark.parametrize(("seconds", "sr", "channels", "subtype"),
                         [(3.0, 16000, 1, "PCM_16"), (61.3, 44100, 2, "PCM_24"), (0.05, 8000, 1, "PCM_16")])
def test_flac_streamed_without_its_length(tmp_path, seconds, sr, channels, subtype):
    """A FLAC whose STREAMINFO says 0 samples (an encoder that wrote to a pipe) is legal: its length is read
    from its last frames' headers, it decodes whole, and info() tells the truth (it said 5.8e14 s, and the
    server refused such an upload as '192153584101141 s of audio')."""
    import soundfile as sf

    n = int(seconds * sr)
    x = (np.random.default_rng(n).standard_normal((n, channels)) * 0.1).astype(np.float32)
    known = tmp_path / "known.flac"
    sf.write(known, x, sr, subtype=subtype)
    data = bytearray(known.read_bytes())
    v = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)  # the low 36 bits: total samples
    data[18:26] = v.to_bytes(8, "big")
    streamed = tmp_path / "streamed.flac"
    streamed.write_bytes(bytes(data))
    described = audioflow.info(streamed)
    assert described.frames == n and abs(described.duration - n / sr) < 1e-9
    y, rate = audioflow.load(streamed, sr=None, mono=False)
    expected, _ = audioflow.load(known, sr=None, mono=False)
    assert rate == sr and np.array_equal(y, expected)
    # cut inside its last frame: the frames before it are still found, and the cut is named
    truncated = tmp_path / "cut.flac"
    truncated.write_bytes(bytes(data[:-200]))
    assert "truncated" in assert_clean_error(truncated, DecodeError).message


def test_zero_channels(tmp_path):
    path = tmp_path / "nochannels.wav"
    header = bytearray(wav_header(1, 16000, 16, 2000))
    header[22:24] = b"\0\0"
    path.write_bytes(bytes(header) + bytes(2000))
    assert "channel" in assert_clean_error(path, DecodeError).message


@pytest.mark.parametrize("name", ["noise.wav", "noise.mp3", "noise.flac", "noise.ogg"])
def test_random_bytes(tmp_path, name):
    rng = np.random.default_rng(7)
    path = tmp_path / name
    data = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    path.write_bytes(b"\x00" + data[1:])  # not by chance an MPEG sync byte
    assert_clean_error(path, UnsupportedFormatError)


def test_text_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n" * 100)
    err = assert_clean_error(path, UnsupportedFormatError)
    assert "not a recognised audio format" in err.message


def test_directory(tmp_path):
    err = assert_clean_error(tmp_path, SourceError)
    assert "directory" in err.message


def test_missing_path(tmp_path):
    path = tmp_path / "nope.wav"
    err = assert_clean_error(path, AudioFileNotFoundError)
    assert isinstance(err, FileNotFoundError)
    with pytest.raises(AudioFileNotFoundError):
        audioflow.info(path)


def test_unreadable_file(valid, tmp_path):
    path = tmp_path / "locked.wav"
    path.write_bytes(valid["wav_pcm16"].read_bytes())
    audioflow.load(valid["wav_pcm16"])  # import the decoders before forking
    path.chmod(0)
    if os.geteuid() != 0:
        assert_clean_error(path, AudioPermissionError)
        return
    # root reads anything: check as nobody, in a forked child that drops its privileges
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_end)
        try:
            os.setgid(65534)
            os.setuid(65534)
            audioflow.load(path)
            message = "loaded"
        except AudioPermissionError as e:
            message = "ok " + str(e)
        except BaseException as e:
            message = f"wrong {type(e).__name__}: {e}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        message = f.read()
    os.waitpid(pid, 0)
    assert message.startswith("ok ") and str(path) in message and "permission denied" in message, message
    assert issubclass(AudioPermissionError, PermissionError)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_wav_with_nan_or_inf(tmp_path, bad, subtype):
    y = np.zeros(16000, np.float64)
    y[1234] = bad
    path = tmp_path / f"bad_{subtype}.wav"
    sf.write(path, y, 16000, subtype=subtype)
    err = assert_clean_error(path, InvalidAudioError)
    assert "NaN or infinite" in err.message
    with pytest.raises(InvalidAudioError):
        list(audioflow.stream(path, 0.25))


def test_oversized_decode_is_refused_by_the_limit(valid, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOFLOW_MAX_DECODE_BYTES", "100000")
    for kind in ("wav_pcm16", "flac", "mp3", "ogg"):
        with pytest.raises(audioflow.AudioTooLargeError):
            audioflow.load(valid[kind])


def test_errors_survive_pickling_for_worker_processes():
    import pickle

    err = DecodeError("truncated", "/data/x.wav")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is DecodeError and str(again) == str(err) and again.path == "/data/x.wav"
