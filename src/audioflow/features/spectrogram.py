"""Spectrogram, MelSpectrogram, AmplitudeToDB, LogMel, MFCC: torchaudio's constructor arguments,
librosa's numbers (``.librosa(...)`` presets)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..dsp import create_dct, get_window, mel_filterbank, stft_frames
from ..dsp.lengths import mask_frames
from ..errors import ParameterError
from .base import FeatureModule, check_positive, decibels_, floor_db_, power_to_db

_CHUNK_BYTES = 4 << 20  # complex STFT bytes per CPU chunk: about an L2 cache


def _window(window_fn: Callable[..., torch.Tensor] | str, win_length: int, wkwargs: dict | None) -> torch.Tensor:
    if isinstance(window_fn, str):
        return get_window(window_fn, win_length)
    return window_fn(win_length, **(wkwargs or {})).float()


class Spectrogram(FeatureModule):
    """``|STFT|^power``: ``[..., time]`` → ``[..., n_fft // 2 + 1, frames]``.

    Args:
        n_fft: FFT size in samples. win_length: window in samples (default ``n_fft``).
        hop_length: samples between frames (default ``win_length // 2``).
        pad: extra zeros on both sides before the STFT (samples).
        window_fn: a torch window function (``torch.hann_window``) or a name ('hann', 'hamming', ...).
        power: 2 for power, 1 for magnitude, None for the complex STFT.
        normalized: divide by the window's L2 norm.
        center: pad ``n_fft // 2`` on both sides so frames are centred on ``t * hop_length``.
        pad_mode: 'reflect' (torchaudio) or 'constant' (librosa >= 0.10; exact per sample in
            padded batches).
    """

    def __init__(self, n_fft: int = 400, win_length: int | None = None, hop_length: int | None = None,
                 pad: int = 0, window_fn: Callable[..., torch.Tensor] | str = torch.hann_window,
                 power: float | None = 2.0, normalized: bool = False, wkwargs: dict | None = None,
                 center: bool = True, pad_mode: str = "reflect") -> None:
        super().__init__()
        check_positive(type(self).__name__, n_fft=n_fft, win_length=win_length, hop_length=hop_length)
        self.n_fft = n_fft
        self.win_length = win_length or n_fft
        self.hop_length = hop_length or self.win_length // 2
        if self.win_length > n_fft:
            raise ParameterError(f"win_length ({self.win_length}) must be <= n_fft ({n_fft})")
        self.pad, self.power, self.normalized, self.center, self.pad_mode = pad, power, normalized, center, pad_mode
        self.register_buffer("window", _window(window_fn, self.win_length, wkwargs), persistent=False)

    def spectrum(self, x: torch.Tensor, then: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``|STFT|^power`` of ``x [..., time]`` as ``[..., freq, frames]``; with ``then``, the frames-major
        power ``[..., frames, freq]`` goes through ``then`` (e.g. the mel projection), which returns
        ``[..., features, frames]``.

        On the CPU a large batch is done a few rows at a time, so a chunk's complex STFT stays in
        cache instead of streaming tens of MB through memory three times; each chunk's result is
        written into its place of the output (no concatenation); on a GPU it is one pass.
        """
        if self.pad:
            x = torch.nn.functional.pad(x, (self.pad, self.pad))
        if x.device.type != "cpu" or x.ndim == 1:
            return self._spectrum(x, then)
        flat = x.reshape(-1, x.shape[-1])
        frames = x.shape[-1] // self.hop_length + 1
        rows = max(1, _CHUNK_BYTES // max(1, (self.n_fft // 2 + 1) * frames * 8))
        if rows >= flat.shape[0]:
            return self._spectrum(x, then)
        first = self._spectrum(flat[:rows], then)
        out = first.new_empty(flat.shape[0], *first.shape[1:])
        out[:rows] = first
        for i in range(rows, flat.shape[0], rows):
            out[i:i + rows] = self._spectrum(flat[i:i + rows], then)
        return out.reshape(*x.shape[:-1], *out.shape[-2:])

    def _spectrum(self, x: torch.Tensor, then: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            # half-precision FFTs are limited (powers of two on CUDA) and lose the low bins' dynamic
            # range: transform in float32, hand the result back in the input's dtype
            return self._spectrum(x.float(), then).to(x.dtype)
        spec = stft_frames(x, self.n_fft, self.hop_length, self.window.to(x.dtype), self.center, self.pad_mode)
        if self.normalized:
            spec = spec / self.window.pow(2).sum().sqrt()
        if self.power is not None:
            spec = spec.abs().pow(self.power) if self.power != 2.0 else torch.addcmul(spec.real.square(), spec.imag,
                                                                                      spec.imag)
        return spec.transpose(-1, -2) if then is None else then(spec)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        return self.finish(self.spectrum(x), lengths)


class MelSpectrogram(Spectrogram):
    """Mel-scaled spectrogram ``[..., n_mels, frames]`` (torchaudio's arguments and defaults).

    Args (beyond :class:`Spectrogram`'s):
        sample_rate: Hz. f_min, f_max: band edges in Hz (``f_max=None``: Nyquist).
        n_mels: number of mel bands. norm: None or 'slaney'. mel_scale: 'htk' or 'slaney'.

    ``MelSpectrogram.librosa(sample_rate, ...)`` takes librosa.feature.melspectrogram's defaults
    (n_fft 2048, hop 512, Slaney scale and norm, constant padding) and gives its numbers.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_length: int | None = None,
                 hop_length: int | None = None, f_min: float = 0.0, f_max: float | None = None, pad: int = 0,
                 n_mels: int = 128, window_fn: Callable[..., torch.Tensor] | str = torch.hann_window,
                 power: float = 2.0, normalized: bool = False, wkwargs: dict | None = None, center: bool = True,
                 pad_mode: str = "reflect", norm: str | None = None, mel_scale: str = "htk") -> None:
        check_positive(type(self).__name__, sample_rate=sample_rate, n_mels=n_mels)
        super().__init__(n_fft, win_length, hop_length, pad, window_fn, power, normalized, wkwargs, center, pad_mode)
        self.sample_rate, self.n_mels = sample_rate, n_mels
        self.register_buffer("fb", mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, norm, mel_scale),
                             persistent=False)

    @classmethod
    def librosa(cls, sample_rate: int | None = None, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128,
                **kwargs: Any) -> MelSpectrogram:
        """librosa.feature.melspectrogram's defaults, and its keyword names as well as ours: ``sr`` (Hz, default
        22050), ``fmin``/``fmax`` (Hz), ``htk`` (True: the HTK mel scale), ``norm`` (``'slaney'`` or None)."""
        sample_rate, kwargs = _librosa_arguments("MelSpectrogram.librosa", sample_rate, kwargs)
        kwargs = {"norm": "slaney", "mel_scale": "slaney", "pad_mode": "constant", **kwargs}
        return cls(sample_rate, n_fft, hop_length=hop_length, n_mels=n_mels, **kwargs)

    def mel(self, x: torch.Tensor, then: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Mel power ``[..., n_mels, frames]``; ``then`` (an elementwise function, e.g. the log) is applied to
        each chunk of frames while it is still in cache."""
        def project(power: torch.Tensor) -> torch.Tensor:  # [..., frames, freq] -> [..., n_mels, frames]
            mel = torch.matmul(self.fb.to(power.dtype), power.transpose(-1, -2))  # written band-major: no copy
            return mel if then is None else then(mel)

        return self.spectrum(x, project)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        return self.finish(self.mel(x), lengths)


class AmplitudeToDB(torch.nn.Module):
    """Power (``stype='power'``) or amplitude (``'magnitude'``) to decibels, floored ``top_db`` below each
    sample's peak (librosa's ``power_to_db``/``amplitude_to_db`` with ``ref=1``; torchaudio's arguments)."""

    def __init__(self, stype: str = "power", top_db: float | None = None, amin: float = 1e-10) -> None:
        super().__init__()
        if stype not in ("power", "magnitude"):
            raise ParameterError(f"stype must be 'power' or 'magnitude', got {stype!r}")
        self.multiplier = 10.0 if stype == "power" else 20.0
        self.top_db, self.amin = top_db, amin if stype == "power" else amin**0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return power_to_db(x, self.top_db, self.amin, 1.0, self.multiplier, batch_dims=1 if x.ndim > 2 else 0)


class LogMel(MelSpectrogram):
    """Log-mel spectrogram: decibels (``log='db'``, ``top_db`` below each sample's peak) or the natural log
    of ``mel + offset`` (``log='log'``). Takes :class:`MelSpectrogram`'s arguments too."""

    def __init__(self, *args: Any, log: str = "db", top_db: float | None = 80.0, offset: float = 1e-6,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if log not in ("db", "log"):
            raise ParameterError(f"log must be 'db' or 'log', got {log!r}")
        self.log, self.top_db, self.offset = log, top_db, offset

    def from_mel(self, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Log of a mel power spectrogram ``[..., n_mels, frames]``; ``frames``: valid frames per item."""
        if frames is not None:  # padding must not set the floor of a sample's dB range
            mel = mask_frames(mel, frames)
        if self.log == "db":
            return power_to_db(mel, self.top_db, batch_dims=1 if mel.ndim > 2 else 0)
        return torch.log(mel + self.offset)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        if self.log == "db":  # the log taken chunk by chunk while in cache, the top_db floor after
            return self.finish(_floored(_masked_db(self, self.mel(x, decibels_), lengths), self.top_db), lengths)
        mel = self.mel(x)
        frames = None if lengths is None else self.output_lengths(lengths.to(mel.device), mel.shape[-1])
        return self.finish(self.from_mel(mel, frames), lengths)


def _masked_db(module: FeatureModule, db: torch.Tensor, lengths: torch.Tensor | None,
               amin: float = 1e-10) -> torch.Tensor:
    """Frames past each item's length at the dB of silence (``amin``; as :meth:`LogMel.from_mel` masks the
    power first), so that padding never sets the peak the ``top_db`` floor hangs from."""
    if lengths is None:
        return db
    return mask_frames(db, module.output_lengths(lengths.to(db.device), db.shape[-1]), 10.0 * math.log10(amin))


def _librosa_arguments(owner: str, sample_rate: int | None, kwargs: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """librosa's keyword names as ours: ``sr`` -> sample_rate (default 22050, librosa's), ``fmin``/``fmax`` ->
    f_min/f_max, ``htk`` -> mel_scale, ``win_length``/``center``/``pad_mode``/``power`` as they are."""
    kwargs = dict(kwargs)
    sr = kwargs.pop("sr", None)
    if sr is not None and sample_rate is not None and sr != sample_rate:
        raise ParameterError(f"{owner}: give sample_rate or sr (librosa's name), not both ({sample_rate} and {sr})")
    for theirs, ours in (("fmin", "f_min"), ("fmax", "f_max")):
        if theirs in kwargs:
            kwargs[ours] = kwargs.pop(theirs)
    if "htk" in kwargs:
        kwargs["mel_scale"] = "htk" if kwargs.pop("htk") else "slaney"
    rate = sample_rate if sample_rate is not None else sr if sr is not None else 22050
    return rate, kwargs


def _floored(db: torch.Tensor, top_db: float | None) -> torch.Tensor:
    return floor_db_(db, top_db, batch_dims=1 if db.ndim > 2 else 0)


class MFCC(FeatureModule):
    """Mel-frequency cepstral coefficients ``[..., n_mfcc, frames]`` (torchaudio's arguments).

    dB mel power (``top_db`` 80, as torchaudio and librosa), then an orthonormal DCT-II over the bands,
    optionally liftered (librosa's ``lifter``). ``log_mels=True`` uses ``log(mel + 1e-6)`` instead of dB.
    ``MFCC.librosa(sample_rate, n_mfcc=20, ...)`` gives librosa.feature.mfcc's numbers.
    """

    def __init__(self, sample_rate: int = 16000, n_mfcc: int = 40, dct_type: int = 2, norm: str | None = "ortho",
                 log_mels: bool = False, melkwargs: dict | None = None, lifter: float = 0.0,
                 top_db: float | None = 80.0) -> None:
        super().__init__()
        if dct_type != 2:
            raise ParameterError("only DCT type 2 is supported")
        check_positive("MFCC", sample_rate=sample_rate, n_mfcc=n_mfcc)
        self.melspec = MelSpectrogram(sample_rate, **(melkwargs or {}))
        if n_mfcc > self.melspec.n_mels:
            raise ParameterError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({self.melspec.n_mels})")
        self.n_fft, self.hop_length, self.center = self.melspec.n_fft, self.melspec.hop_length, self.melspec.center
        self.log_mels, self.top_db, self.lifter = log_mels, top_db, lifter
        self.register_buffer("dct_mat", create_dct(n_mfcc, self.melspec.n_mels, norm), persistent=False)
        if lifter > 0:
            n = torch.arange(n_mfcc, dtype=torch.float64)
            self.register_buffer("lift", (1 + (lifter / 2) * torch.sin(torch.pi * (n + 1) / lifter)).float()[:, None],
                                 persistent=False)

    @classmethod
    def librosa(cls, sample_rate: int | None = None, n_mfcc: int = 20, lifter: float = 0.0, **melkwargs: Any) -> MFCC:
        """librosa.feature.mfcc's defaults, melkwargs as :meth:`MelSpectrogram.librosa`'s (librosa's names too:
        ``MFCC.librosa(sr=16000, n_mfcc=13, n_fft=512, fmax=8000, htk=True)``); ``dct_type`` 2 and ``norm``
        as librosa's."""
        sample_rate, melkwargs = _librosa_arguments("MFCC.librosa", sample_rate, melkwargs)
        # librosa.feature.mfcc's dct_type and norm are the DCT's (its mel bands keep the Slaney norm)
        mfcc_args = {key: melkwargs.pop(key) for key in ("dct_type", "norm", "top_db") if key in melkwargs}
        melkwargs = {"n_fft": 2048, "hop_length": 512, "n_mels": 128, "norm": "slaney", "mel_scale": "slaney",
                     "pad_mode": "constant", **melkwargs}
        return cls(sample_rate, n_mfcc, melkwargs=melkwargs, lifter=lifter, **mfcc_args)

    def from_mel(self, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Cepstra of a mel power spectrogram ``[..., n_mels, frames]``; ``frames``: valid frames per item."""
        if frames is not None:
            mel = mask_frames(mel, frames)
        if self.log_mels:
            mel = torch.log(mel + 1e-6)
        else:
            mel = power_to_db(mel, self.top_db, batch_dims=1 if mel.ndim > 2 else 0)
        return self._cepstra(mel)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        if not self.log_mels:  # the log taken chunk by chunk while in cache, the top_db floor after
            db = _masked_db(self, self.melspec.mel(x, decibels_), lengths)
            return self.finish(self._cepstra(_floored(db, self.top_db)), lengths)
        mel = self.melspec.mel(x)
        frames = None if lengths is None else self.output_lengths(lengths.to(mel.device), mel.shape[-1])
        return self.finish(self.from_mel(mel, frames), lengths)

    def _cepstra(self, log_mel: torch.Tensor) -> torch.Tensor:
        mfcc = torch.matmul(log_mel.transpose(-1, -2), self.dct_mat.to(log_mel.dtype)).transpose(-1, -2)
        return mfcc * self.lift.to(mfcc.dtype) if self.lifter > 0 else mfcc
