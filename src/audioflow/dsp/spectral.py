"""Windows, STFT/ISTFT and the phase vocoder."""

from __future__ import annotations

import torch

from ..errors import ParameterError

_WINDOWS = ("hann", "hamming", "blackman", "povey", "rectangular", "boxcar", "ones")


def get_window(name: str, length: int, periodic: bool = True, *, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A window of ``length`` samples: 'hann', 'hamming', 'blackman', 'povey' (Kaldi) or 'rectangular'.

    ``periodic=True`` gives the DFT-even window that librosa and torch.stft use; Kaldi's windows are
    symmetric (``periodic=False``).
    """
    name = name.lower()
    if name == "hann":
        return torch.hann_window(length, periodic=periodic, device=device, dtype=dtype)
    if name == "hamming":
        return torch.hamming_window(length, periodic=periodic, device=device, dtype=dtype)
    if name == "blackman":
        return torch.blackman_window(length, periodic=periodic, device=device, dtype=dtype)
    if name == "povey":  # Kaldi: a Hann window raised to 0.85, symmetric
        return torch.hann_window(length, periodic=False, device=device, dtype=torch.float64).pow(0.85).to(dtype)
    if name in ("rectangular", "boxcar", "ones"):
        return torch.ones(length, device=device, dtype=dtype)
    raise ParameterError(f"unknown window {name!r}; use one of {', '.join(_WINDOWS)}")


def stft(x: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, center: bool = True,
         pad_mode: str = "constant") -> torch.Tensor:
    """Complex STFT of ``x [..., time]`` → ``[..., n_fft // 2 + 1, frames]``.

    ``window`` may be shorter than ``n_fft`` (it is centred, as librosa does). With ``center`` the
    signal is padded by ``n_fft // 2`` on both sides so frame ``t`` is centred on sample
    ``t * hop_length``.
    """
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    if center and pad_mode == "reflect" and shape[-1] <= n_fft // 2:
        pad_mode = "constant"  # reflection needs more samples than the pad; short clips get zeros
    spec = torch.stft(flat, n_fft, hop_length, window.shape[-1], window, center=center, pad_mode=pad_mode,
                      return_complex=True)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def stft_frames(x: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, center: bool = True,
                pad_mode: str = "constant") -> torch.Tensor:
    """The STFT of :func:`stft` laid out frames-major: complex ``[..., frames, n_fft // 2 + 1]``.

    Same numbers as ``stft(...).transpose(-1, -2)``, but each frame's spectrum is contiguous, so the
    power, the mel projection and the DCT that follow read memory in order (measured ~15 % faster
    for a mel spectrogram on the CPU than ``torch.stft``, whose output is freq-major).
    """
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    if center:
        pad = n_fft // 2
        mode = pad_mode if not (pad_mode == "reflect" and shape[-1] <= pad) else "constant"
        flat = torch.nn.functional.pad(flat[:, None], (pad, pad), mode=mode)[:, 0]
    if window.shape[-1] < n_fft:
        left = (n_fft - window.shape[-1]) // 2
        window = torch.nn.functional.pad(window, (left, n_fft - window.shape[-1] - left))
    spec = torch.fft.rfft(flat.unfold(-1, n_fft, hop_length) * window, dim=-1)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def istft(spec: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, length: int | None = None,
          center: bool = True) -> torch.Tensor:
    """Inverse of :func:`stft` (weighted overlap-add): ``[..., freq, frames]`` → ``[..., time]``,
    ``length`` samples if given (zeros past what the frames cover).

    When the hop divides the frame (``n_fft % hop_length == 0``, the usual 50 or 75 % overlap) the
    overlap-add is ``n_fft / hop`` shifted block additions and the window envelope is cached:
    measured ~2x faster than ``torch.istft`` on the CPU, same numbers. Other hops use ``torch.istft``.
    """
    shape = spec.shape
    flat = spec.reshape(-1, *shape[-2:])
    if n_fft % hop_length or window.shape[-1] != n_fft:
        y = torch.istft(flat, n_fft, hop_length, window.shape[-1], window, center=center, length=length)
        return y.reshape(*shape[:-2], y.shape[-1])
    y = istft_frames(flat.transpose(-1, -2), n_fft, hop_length, window, length, center)
    return y.reshape(*shape[:-2], y.shape[-1])


def istft_frames(spec: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, length: int | None = None,
                 center: bool = True) -> torch.Tensor:
    """:func:`istft` of a frames-major STFT ``[N, frames, bins]`` (as :func:`stft_frames` lays it out; a
    frame's spectrum contiguous, so the inverse transforms read memory in order) → ``[N, time]``.
    Needs ``n_fft % hop_length == 0`` and a window of ``n_fft`` samples."""
    if n_fft % hop_length or window.shape[-1] != n_fft:
        raise ParameterError("istft_frames needs a hop that divides n_fft and a window of n_fft samples")
    overlap, frames = n_fft // hop_length, spec.shape[1]
    chunks = _irfft_frames(spec, n_fft).mul_(window)  # [N, frames, n_fft]
    blocks = chunks.reshape(spec.shape[0], frames, overlap, hop_length)
    out = chunks.new_zeros(spec.shape[0], frames + overlap - 1, hop_length)
    for k in range(overlap):
        out[:, k:k + frames] += blocks[:, :, k]
    out = out.reshape(spec.shape[0], -1)
    envelope = _envelope(window, hop_length, frames)
    start = n_fft // 2 if center else 0
    if length is None:
        stop = out.shape[-1] - (n_fft // 2 if center else 0)
    else:  # as torch.istft: the padded tail counts when a length asks for it
        stop = min(out.shape[-1], start + length)
    y = out[:, start:stop] / envelope[start:stop]
    if length is not None and y.shape[-1] < length:
        y = torch.nn.functional.pad(y, (0, length - y.shape[-1]))
    return y


def _irfft_frames(spec: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Every frame of a frames-major ``[N, frames, bins]`` back to ``n_fft`` samples: ``[N, frames, n_fft]``.

    On CUDA the transform runs over a frame count rounded up to a multiple of 64 (zero frames, cut off
    after): cuFFT plans every new input shape (~20 ms of host time; PyTorch caches plans by shape), and
    frame counts that vary by a few from batch to batch would otherwise plan anew nearly every call."""
    frames = spec.shape[1]
    if spec.device.type == "cuda" and frames % 64:
        spec = torch.nn.functional.pad(spec, (0, 0, 0, -frames % 64))
    return torch.fft.irfft(spec, n=n_fft, dim=-1)[:, :frames]


_ENVELOPES: dict[tuple, torch.Tensor] = {}


def _envelope(window: torch.Tensor, hop_length: int, frames: int) -> torch.Tensor:
    """Overlap-added squared window, zeros replaced by ones (edges no frame reaches); cached on the CPU
    (the cache key reads the window's sum, which on an accelerator would wait for the device)."""
    cached = window.device.type == "cpu"
    key = (window.dtype, window.shape[-1], float(window.sum()), hop_length, frames) if cached else None
    env = _ENVELOPES.get(key) if cached else None
    if env is None:
        overlap = window.shape[-1] // hop_length
        sq = (window * window).reshape(overlap, hop_length)
        env = window.new_zeros(frames + overlap - 1, hop_length)
        for k in range(overlap):
            env[k:k + frames] += sq[k]
        env = env.reshape(-1)
        env = torch.where(env > 1e-11, env, torch.ones_like(env))
        if cached:
            if len(_ENVELOPES) > 128:
                _ENVELOPES.clear()
            _ENVELOPES[key] = env
    return env


def phase_vocoder(spec: torch.Tensor, rate: torch.Tensor | float, hop_length: int,
                  n_frames: int | None = None) -> torch.Tensor:
    """Time-scale a complex STFT by ``rate`` (> 1 is faster/shorter), keeping each bin's frequency.

    Args:
        spec: complex ``[batch, freq, frames]``.
        rate: one rate, or ``[batch]`` rates (each sample its own).
        hop_length: STFT hop in samples. Kept for librosa's signature: librosa adds each bin's
            expected advance and the wrapped deviation from it, which modulo 2 pi is the plain phase
            difference of the two frames, so the result does not depend on it.
        n_frames: output frames (default: enough for the slowest sample in the batch).

    Returns:
        Complex ``[batch, freq, n_frames]``; sample ``b`` holds ``ceil(frames / rate[b])`` valid
        frames, the rest zeros. This is librosa's ``phase_vocoder`` run for every sample at once:
        the magnitude is interpolated between neighbouring frames and the phase accumulated.
    """
    return phase_vocoder_frames(spec.transpose(-1, -2), rate, n_frames).transpose(-1, -2)


def phase_vocoder_frames(spec: torch.Tensor, rate: torch.Tensor | float, n_frames: int | None = None) -> torch.Tensor:
    """:func:`phase_vocoder` on a frames-major STFT ``[batch, frames, freq]`` → ``[batch, n_out, freq]``.

    Frames-major, the vocoder's reads of neighbouring frames are whole-row copies (``index_select``)
    rather than element gathers, and its output feeds :func:`istft_frames` without a transpose.
    """
    batch, frames, freq = spec.shape
    # magnitude and phase once per input frame, not per read row (CPU: atan2/hypot on contiguous real
    # parts are ~4x faster than angle()/abs() on complex)
    parts = torch.view_as_real(spec)
    re, im = parts[..., 0].contiguous(), parts[..., 1].contiguous()
    # rows [batch * frames + 1, freq], the last a zero row (see _row_steps), written in place
    mag_rows, phase_rows = (re.new_empty(batch * frames + 1, freq) for _ in range(2))
    mag_rows[-1], phase_rows[-1] = 0.0, 0.0
    torch.hypot(re.reshape(-1, freq), im.reshape(-1, freq), out=mag_rows[:-1])
    torch.atan2(im.reshape(-1, freq), re.reshape(-1, freq), out=phase_rows[:-1])
    phase = phase_rows[:-1].reshape(batch, frames, freq)
    index0, index1, frac, in_range = _row_steps(batch, frames, rate, n_frames, spec.device)
    n_out = frac.shape[1]
    out_mag = torch.lerp(mag_rows.index_select(0, index0), mag_rows.index_select(0, index1),
                         frac.reshape(-1, 1).to(mag_rows.dtype)).reshape(batch, n_out, freq)
    # librosa adds the bin's expected advance plus the wrapped deviation from it; modulo 2 pi that
    # sum is just the phase difference of the two frames, and only its cosine and sine are used
    advance = (phase_rows.index_select(0, index1) - phase_rows.index_select(0, index0)).reshape(batch, n_out, freq)
    # the phase of output frame t is the first frame's phase plus the advances of frames before t
    acc = torch.cumsum(advance, dim=1).sub_(advance).add_(phase[:, :1])
    if not bool(in_range.all()):  # frames past an item's end (the batch's slowest sets n_out)
        out_mag.mul_(in_range.unsqueeze(-1).to(out_mag.dtype))
    out = torch.empty((*out_mag.shape, 2), dtype=out_mag.dtype, device=spec.device)
    torch.mul(out_mag, torch.cos(acc), out=out[..., 0])
    torch.mul(out_mag, torch.sin(acc), out=out[..., 1])
    return torch.view_as_complex(out)


def _stretch_grid(batch: int, frames: int, rate: torch.Tensor | float, n_frames: int | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The vocoder's time grid, ``[batch, n_out]`` on the CPU: the input frame each output frame starts
    from, the fraction towards the next, and which output frames exist (``t * rate < frames``)."""
    rate = torch.as_tensor(rate, dtype=torch.float64).reshape(-1).expand(batch).cpu()
    n_out = int(torch.ceil(frames / rate).max()) if n_frames is None else n_frames
    steps = torch.arange(n_out, dtype=torch.float64)[None, :] * rate[:, None]
    idx0 = steps.floor().long().clamp(max=frames - 1)
    return idx0, steps - idx0, steps < frames


def _row_steps(batch: int, frames: int, rate: torch.Tensor | float, n_frames: int | None,
               device: torch.device) -> tuple[torch.Tensor, ...]:
    """:func:`_stretch_grid` as row indices into ``[batch * frames + 1, bins]`` (frames-major rows with one
    zero row appended: reads past an item's end, librosa's zero frame, land on it): both input frames
    ``[batch * n_out]`` each, the fraction and the valid output frames ``[batch, n_out]``."""
    idx0, frac, in_range = _stretch_grid(batch, frames, rate, n_frames)
    first = torch.arange(batch)[:, None] * frames
    zero_row = batch * frames
    index0 = torch.where(in_range, first + idx0, zero_row).reshape(-1)
    index1 = torch.where(in_range & (idx0 + 1 < frames), first + idx0 + 1, zero_row).reshape(-1)
    return index0.to(device), index1.to(device), frac.to(device), in_range.to(device)


def stretch_frames(magnitude: torch.Tensor, rate: torch.Tensor | float, n_frames: int | None = None) -> torch.Tensor:
    """Time-scale a frames-major spectrogram ``[batch, frames, bins]`` (magnitudes, powers or mel
    powers, as :func:`stft_frames` lays frames out) on :func:`phase_vocoder`'s grid: output frame ``t`` of
    item ``b`` interpolates input frames ``t * rate[b]`` and the next (on magnitudes this is exactly the
    vocoder's output magnitude). Returns ``[batch, n_out, bins]``, zeros past each item's
    ``ceil(frames / rate[b])`` frames.

    A consumer of power features discards the phase, so this skips the vocoder's phase accumulation
    and its sines and cosines; frames-major rows make the interpolation two row gathers.
    """
    batch, frames, freq = magnitude.shape
    index0, index1, frac, _ = _row_steps(batch, frames, rate, n_frames, magnitude.device)
    n_out = frac.shape[1]
    rows = torch.cat([magnitude.reshape(-1, freq), magnitude.new_zeros(1, freq)])
    out = torch.lerp(rows.index_select(0, index0), rows.index_select(0, index1),
                     frac.reshape(-1, 1).to(magnitude.dtype))
    return out.reshape(batch, n_out, freq)
