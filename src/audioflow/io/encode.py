"""``save``: write audio atomically (a temporary name, then a rename) in the common formats."""

from __future__ import annotations

import io
import os
import secrets
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import EncodeError, ParameterError
from .resample import resample
from .source import is_url

_EXTENSIONS = {".wav": "wav", ".wave": "wav", ".flac": "flac", ".ogg": "ogg", ".oga": "ogg",
               ".opus": "opus", ".mp3": "mp3", ".m4a": "m4a", ".mp4": "m4a", ".aif": "aiff",
               ".aiff": "aiff", ".aifc": "aiff"}
_SOUNDFILE_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF"}
# (muxer, encoder, sample rates the encoder takes, default kbit/s)
_PYAV_FORMATS = {
    "mp3": ("mp3", "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000), 192),
    "opus": ("ogg", "libopus", (8000, 12000, 16000, 24000, 48000), 96),
    "m4a": ("ipod", "aac", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000),
            192),
}
# FFmpeg's names of the layouts AAC can carry (by channel count, in WAVE order); 8 channels are left out:
# PyAV 18's AudioFrame.from_ndarray fails on an 8-plane frame (IndexError)
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1"}
_WRITE_BLOCK = 1 << 16  # frames per libsndfile write call
FORMATS = tuple(sorted({*_SOUNDFILE_FORMATS, *_PYAV_FORMATS}))


def save(path: str | os.PathLike[str], y: np.ndarray, sr: int, format: str | None = None,
         subtype: str | None = None, bitrate: int | None = None,
         storage_options: dict[str, Any] | None = None) -> None:
    """Write ``y`` to ``path``; a crash never leaves a half-written file under the final name.

    Args:
        path: destination path or fsspec URL.
        y: ``np.ndarray [shape=(frames,)]`` or ``[shape=(channels, frames)]``, float in [-1, 1]
            (integer arrays are written as they are).
        sr: sample rate in Hz.
        format: 'wav', 'flac', 'ogg' (Vorbis), 'opus', 'mp3', 'm4a' (AAC) or 'aiff'; default from
            the extension.
        subtype: libsndfile subtype for WAV/FLAC/AIFF ('PCM_16' default, 'PCM_24', 'FLOAT', ...).
        bitrate: target bit rate of lossy formats in kbit/s (MP3, Opus, M4A exact; Ogg Vorbis
            approximate, through the VBR quality).
        storage_options: passed to ``fsspec.open`` for URLs.

    Raises:
        ParameterError: bad array, rate, or format; EncodeError: the encoder failed.
    """
    path = os.fspath(path)
    fmt = _format_for(path, format)
    y = _validate(y, sr)
    if subtype is not None and fmt not in _SOUNDFILE_FORMATS:
        raise ParameterError(f"subtype applies to WAV, FLAC, OGG and AIFF, not {fmt}", path)
    if is_url(path):
        buf = io.BytesIO()
        _encode(buf, y, sr, fmt, subtype, bitrate, path)
        _upload(path, buf.getvalue(), storage_options or {})
        return
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "wb") as f:
            _encode(f, y, sr, fmt, subtype, bitrate, path)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise EncodeError(f"cannot write: {e.strerror or e}", path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def encode(y: np.ndarray, sr: int, format: str, subtype: str | None = None, bitrate: int | None = None) -> bytes:
    """The bytes of a file of ``format`` holding ``y`` (what :func:`save` writes), for containers
    that store encoded audio (packed datasets, HTTP responses).

    Args:
        y: ``[frames]`` or ``[channels, frames]``. sr: sample rate in Hz. format, subtype, bitrate: as
        :func:`save` (bitrate in kbit/s).
    """
    fmt = _format_for("", format)
    buf = io.BytesIO()
    _encode(buf, _validate(y, sr), sr, fmt, subtype, bitrate, f"<{fmt} bytes>")
    return buf.getvalue()


def _format_for(path: str, format: str | None) -> str:
    if format is None:
        ext = os.path.splitext(path.split("?")[0])[1].lower()
        if ext not in _EXTENSIONS:
            raise ParameterError(f"cannot tell the format from the extension {ext!r}; pass format= one of "
                                 f"{', '.join(FORMATS)}", path)
        return _EXTENSIONS[ext]
    fmt = format.lower().lstrip(".")
    fmt = _EXTENSIONS.get("." + fmt, fmt)
    if fmt not in FORMATS:
        raise ParameterError(f"unsupported output format {format!r}; use one of {', '.join(FORMATS)}", path)
    return fmt


def _validate(y: Any, sr: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim not in (1, 2) or (y.size == 0 and y.ndim == 2 and y.shape[0] == 0):
        raise ParameterError(f"audio must be [frames] or [channels, frames], got shape {y.shape}")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer number of Hz, got {sr!r}")
    if y.dtype.kind == "f" and y.size and not np.isfinite(y).all():
        raise ParameterError("audio holds NaN or infinite samples")
    return y


def _encode(f: Any, y: np.ndarray, sr: int, fmt: str, subtype: str | None, bitrate: int | None,
            name: str) -> None:
    if fmt in _SOUNDFILE_FORMATS:
        _encode_soundfile(f, y, sr, fmt, subtype, bitrate, name)
    else:
        _encode_pyav(f, y, sr, fmt, bitrate, name)


def _encode_soundfile(f: Any, y: np.ndarray, sr: int, fmt: str, subtype: str | None, bitrate: int | None,
                      name: str) -> None:
    import soundfile as sf

    kwargs: dict[str, Any] = {}
    if bitrate is not None and fmt == "ogg":
        # libvorbis VBR quality: 0 -> ~500 kbit/s, 1 -> ~48 kbit/s (stereo); close, not exact
        kwargs["compression_level"] = float(np.clip(1 - (bitrate - 48) / (500 - 48), 0, 1))
    frames = y.T if y.ndim == 2 else y
    channels = 1 if y.ndim == 1 else y.shape[0]
    try:
        with sf.SoundFile(f, "w", sr, channels, subtype, format=_SOUNDFILE_FORMATS[fmt], **kwargs) as out:
            # in blocks: libsndfile's Vorbis encoder crashes on a single write of about an hour
            for start in range(0, len(frames), _WRITE_BLOCK):
                out.write(frames[start:start + _WRITE_BLOCK])
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        raise EncodeError(f"cannot encode {fmt.upper()}: {e}", name) from None


def _encode_pyav(f: Any, y: np.ndarray, sr: int, fmt: str, bitrate: int | None, name: str) -> None:
    import av

    muxer, codec, rates, default_kbps = _PYAV_FORMATS[fmt]
    planar = np.atleast_2d(y)
    if planar.dtype.kind != "f":
        planar = planar.astype(np.float32) / np.float32(2 ** (8 * planar.dtype.itemsize - 1))
    if rates is not None and sr not in rates:
        target = min((r for r in rates if r >= sr), default=rates[-1])
        planar, sr = resample(planar.astype(np.float32), sr, target), target
    channels = planar.shape[0]
    most = len(_AAC_LAYOUTS) if fmt == "m4a" else 2
    if channels > most:
        raise ParameterError(f"{fmt.upper()} output supports 1 to {most} channels here, got {channels}", name)
    layout = _AAC_LAYOUTS[channels]
    try:
        with av.open(f, "w", format=muxer) as container:
            stream = container.add_stream(codec, rate=sr, layout=layout)
            stream.bit_rate = int((bitrate or default_kbps) * 1000)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar, np.float32), format="fltp",
                                               layout=layout)
            frame.sample_rate = sr
            # with timestamps the muxer records the encoder's priming (AAC: 1024 samples) in the MP4 edit
            # list and decoders skip it; without them a saved M4A loaded back 1024 samples late and long
            frame.pts, frame.time_base = 0, Fraction(1, sr)
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except (av.FFmpegError, ValueError, IndexError) as e:
        raise EncodeError(f"cannot encode {fmt.upper()}: {e}", name) from None


def _upload(url: str, data: bytes, storage_options: dict[str, Any]) -> None:
    import fsspec

    try:
        with fsspec.open(url, "wb", **storage_options) as f:
            f.write(data)  # object stores publish an object only when the upload completes
    except Exception as e:  # the backend's own error types (botocore, aiohttp...): one line with the cause
        from .source import remote_error

        raise EncodeError(remote_error(e, url, "write").message, url) from None
