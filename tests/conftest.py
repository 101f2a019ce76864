"""Fixtures that make real audio: synthetic signals written by independent encoders
(libsndfile through soundfile, FFmpeg through PyAV) and espeak-ng speech when installed."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 44100


def tone(freq: float = 440.0, seconds: float = 1.0, sr: int = SR, channels: int = 1,
         amplitude: float = 0.5) -> np.ndarray:
    """``[frames, channels]`` float64 sine, a different frequency per channel (freq * (1 + c/2))."""
    t = np.arange(round(seconds * sr)) / sr
    return np.stack([amplitude * np.sin(2 * np.pi * freq * (1 + c / 2) * t) for c in range(channels)], 1)


def write_pyav(path: Path, frames: np.ndarray, sr: int, fmt: str, codec: str, bitrate: int = 128_000) -> None:
    """Encode ``[frames, channels]`` with FFmpeg (an encoder independent of audioflow.save)."""
    channels = frames.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    import av  # imported here: the GPU machine's image runs the gpu tests without PyAV

    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=sr, layout=layout)
        s.bit_rate = bitrate
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(frames.T, np.float32), format="fltp", layout=layout)
        f.sample_rate = sr
        # timestamps, as ffmpeg gives its encoders: the muxer then records the encoder's priming
        # (AAC: 1024 samples) in the MP4 edit list, and decoders skip it
        f.pts, f.time_base = 0, Fraction(1, sr)
        for p in s.encode(f):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def write_soundfile(path: Path, frames: np.ndarray, sr: int, fmt: str, subtype: str | None) -> None:
    """libsndfile writer, in blocks (one huge Vorbis write crashes libsndfile 1.2.2)."""
    with sf.SoundFile(path, "w", sr, frames.shape[1], subtype, format=fmt) as f:
        for start in range(0, len(frames), 1 << 16):
            f.write(frames[start:start + (1 << 16)])


def make_file(directory: Path, kind: str, seconds: float = 1.0, channels: int = 2, sr: int = SR) -> Path:
    """One file of ``kind`` ('wav_pcm16', 'flac', 'mp3', 'ogg', 'opus', 'm4a', 'aiff', ...)."""
    y = tone(seconds=seconds, sr=sr, channels=channels)
    sf_kinds = {
        "wav_u8": ("wav", "WAV", "PCM_U8"), "wav_pcm16": ("wav", "WAV", "PCM_16"),
        "wav_pcm24": ("wav", "WAV", "PCM_24"), "wav_pcm32": ("wav", "WAV", "PCM_32"),
        "wav_float": ("wav", "WAV", "FLOAT"), "wav_double": ("wav", "WAV", "DOUBLE"),
        "wavex_pcm16": ("wav", "WAVEX", "PCM_16"), "wavex_float": ("wav", "WAVEX", "FLOAT"),
        "wav_ulaw": ("wav", "WAV", "ULAW"), "rf64_pcm16": ("wav", "RF64", "PCM_16"),
        "aiff_pcm16": ("aiff", "AIFF", "PCM_16"), "aiff_pcm24": ("aiff", "AIFF", "PCM_24"),
        "aiff_s8": ("aiff", "AIFF", "PCM_S8"), "aiff_float": ("aiff", "AIFF", "FLOAT"),
        "flac": ("flac", "FLAC", "PCM_16"), "flac24": ("flac", "FLAC", "PCM_24"),
        "mp3": ("mp3", "MP3", None), "ogg": ("ogg", "OGG", "VORBIS"),
    }
    if kind in sf_kinds:
        ext, fmt, subtype = sf_kinds[kind]
        path = directory / f"{kind}_{channels}ch_{sr}.{ext}"
        write_soundfile(path, y, sr, fmt, subtype)
    elif kind == "opus":
        path = directory / f"{kind}_{channels}ch.opus"
        write_soundfile(path, y, 48000 if sr not in (8000, 12000, 16000, 24000) else sr, "OGG", "OPUS")
    elif kind == "m4a":
        path = directory / f"{kind}_{channels}ch_{sr}.m4a"
        write_pyav(path, y, sr, "ipod", "aac")
    else:
        raise ValueError(kind)
    return path


ALL_KINDS = ["wav_u8", "wav_pcm16", "wav_pcm24", "wav_pcm32", "wav_float", "wav_double", "wavex_pcm16",
             "wavex_float", "wav_ulaw", "rf64_pcm16", "aiff_pcm16", "aiff_pcm24", "aiff_s8", "aiff_float",
             "flac", "flac24", "mp3", "ogg", "opus", "m4a"]
# the formats libsndfile also decodes: soundfile is the reference there
SOUNDFILE_KINDS = [k for k in ALL_KINDS if k not in ("m4a",)]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Two-second stereo files of every kind, made once per session."""
    d = tmp_path_factory.mktemp("corpus")
    return {kind: make_file(d, kind, seconds=2.0) for kind in ALL_KINDS}


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """Real speech from espeak-ng (22.05 kHz mono), or a skip when it is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng not installed (make test installs it when run as root)")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([exe, "-w", str(path), "The quick brown fox jumps over the lazy dog."], check=True,
                   timeout=60)
    return path


def pyav_decode(path: Path) -> tuple[np.ndarray, int]:
    """Reference decode with plain PyAV: ``([channels, frames] float32, sr)``, cut at the length an MP4
    states (FFmpeg skips AAC's priming but returns the padding of the last frame)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        frames = np.concatenate([f.to_ndarray() for f in c.decode(s)], axis=1).astype(np.float32)
        sr = s.codec_context.sample_rate
        if c.format.name.startswith("mov") and s.duration is not None:
            frames = frames[:, :round(s.duration * s.time_base * sr)]
        return frames, sr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(*buckets: str, public: bool = False) -> Iterator[str]:
    """A moto S3 server on a free loopback port with ``buckets`` made (readable without credentials when
    ``public``); yields its endpoint URL, stops it afterwards. Clients use key 'test', secret 'test'."""
    pytest.importorskip("moto")
    import boto3

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                              region_name="us-east-1")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket, **({"ACL": "public-read"} if public else {}))
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def s3_environment(endpoint: str) -> dict[str, str]:
    """What a process needs to reach :func:`moto_s3`'s server through s3fs, boto3 or pyarrow."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
