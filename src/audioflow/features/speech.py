"""Speech front ends with a reference to match: Whisper's log-mel and Kaldi's fbank; deltas and CMVN."""

from __future__ import annotations

import math

import torch

from ..dsp import get_window, kaldi_mel_banks, mel_filterbank, stft
from ..dsp.lengths import mask_frames
from ..errors import ParameterError
from .base import FeatureModule, check_positive

_CHUNK_BYTES = 4 << 20  # bytes of frames, spectrum and power per CPU chunk: about an L2 cache


class WhisperLogMel(FeatureModule):
    """Whisper's ``log_mel_spectrogram``: ``[..., time]`` at 16 kHz → ``[..., n_mels, frames]``.

    Hann 400 / hop 160 STFT (reflect padding), the last frame dropped, power, Slaney mel (80 or 128
    bands), ``log10`` clamped at 1e-10, floored 8 below each sample's maximum, then ``(x + 4) / 4``.

    Args:
        n_mels: 80 (Whisper up to large-v2) or 128 (large-v3).
        padding: zeros appended before the transform, in samples (Whisper pads 30 s with
            ``N_SAMPLES = 480000``).
    """

    def __init__(self, n_mels: int = 80, padding: int = 0, sample_rate: int = 16000, n_fft: int = 400,
                 hop_length: int = 160) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.center, self.padding = n_fft, hop_length, True, padding
        self.register_buffer("window", get_window("hann", n_fft), persistent=False)
        self.register_buffer("fb", mel_filterbank(sample_rate, n_fft, n_mels, norm="slaney", mel_scale="slaney"),
                             persistent=False)

    def output_lengths(self, lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
        return torch.div(lengths + self.padding, self.hop_length, rounding_mode="floor").clamp(max=n_frames)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        if self.padding:
            x = torch.nn.functional.pad(x, (0, self.padding))
        spec = stft(x, self.n_fft, self.hop_length, self.window.to(x.dtype), True, "reflect")[..., :-1]
        mel = torch.matmul(self.fb.to(x.dtype), spec.real.square() + spec.imag.square())
        log_spec = mel.clamp(min=1e-10).log10()
        if lengths is not None:  # frames past a sample's end must not raise its maximum
            log_spec = mask_frames(log_spec, self.output_lengths(lengths.to(x.device), log_spec.shape[-1]),
                                   -math.inf)
        peak = log_spec.flatten(-2).amax(-1)[..., None, None]
        log_spec = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
        return self.finish(log_spec, lengths)


class Fbank(FeatureModule):
    """Kaldi's ``compute-fbank-feats`` (and ``torchaudio.compliance.kaldi.fbank``): ``[batch, time]`` →
    ``[batch, num_mel_bins, frames]`` (Kaldi's own layout is the transpose).

    Per 25 ms frame every 10 ms: remove the DC offset, pre-emphasis (0.97), Povey window, zero-pad to
    a power of two, power spectrum, Kaldi mel banks (20 Hz to Nyquist), natural log floored at
    float32 epsilon. No dither (``dither=0``) so results are deterministic. Samples are used at the
    scale given: Kaldi tools read int16 values, so multiply by 32768 for Kaldi's absolute numbers.

    Args:
        sample_rate: Hz. num_mel_bins: bands. frame_length, frame_shift: milliseconds.
        preemphasis_coefficient, remove_dc_offset, window_type ('povey', 'hann', 'hamming',
        'rectangular'), round_to_power_of_two, snip_edges, low_freq (Hz), high_freq (Hz; <= 0 counts
        from Nyquist), use_power, use_log_fbank, use_energy, energy_floor, dither: as in Kaldi.
    """

    def __init__(self, sample_rate: float = 16000.0, num_mel_bins: int = 23, frame_length: float = 25.0,
                 frame_shift: float = 10.0, preemphasis_coefficient: float = 0.97, remove_dc_offset: bool = True,
                 window_type: str = "povey", round_to_power_of_two: bool = True, snip_edges: bool = True,
                 low_freq: float = 20.0, high_freq: float = 0.0, use_power: bool = True, use_log_fbank: bool = True,
                 use_energy: bool = False, energy_floor: float = 1.0, dither: float = 0.0) -> None:
        super().__init__()
        check_positive("Fbank", sample_rate=sample_rate, num_mel_bins=num_mel_bins, frame_length=frame_length,
                       frame_shift=frame_shift)
        self.win = int(sample_rate * frame_length * 0.001)
        self.hop_length = int(sample_rate * frame_shift * 0.001)
        self.n_fft = 1 << (self.win - 1).bit_length() if round_to_power_of_two else self.win
        self.center = False
        self.preemph, self.remove_dc, self.snip_edges = preemphasis_coefficient, remove_dc_offset, snip_edges
        self.use_power, self.use_log, self.use_energy = use_power, use_log_fbank, use_energy
        self.energy_floor, self.dither = energy_floor, dither
        self.register_buffer("window", get_window(window_type, self.win, periodic=False), persistent=False)
        self.register_buffer("banks", kaldi_mel_banks(num_mel_bins, self.n_fft, sample_rate, low_freq, high_freq),
                             persistent=False)

    def output_lengths(self, lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
        if self.snip_edges:
            frames = 1 + torch.div((lengths - self.win).clamp(min=-1), self.hop_length, rounding_mode="floor")
        else:
            frames = torch.div(lengths + self.hop_length // 2, self.hop_length, rounding_mode="floor")
        return frames.clamp(min=0, max=n_frames)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, frames, win]`` strided frames, Kaldi's edge rules."""
        if not self.snip_edges:
            pad = self.win // 2 - self.hop_length // 2
            n = x.shape[-1]
            m = (n + self.hop_length // 2) // self.hop_length
            flipped = x.flip(-1)
            x = torch.cat([flipped[..., n - pad:] if pad > 0 else x[..., :0], x, flipped], dim=-1)
            if pad < 0:
                x = x[..., -pad:]
            return x.unfold(-1, self.win, self.hop_length)[..., :m, :]
        if x.shape[-1] < self.win:
            return x.new_zeros(*x.shape[:-1], 0, self.win)
        return x.unfold(-1, self.win, self.hop_length)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        if x.ndim == 1:
            x = x[None]
        if x.dtype in (torch.float16, torch.bfloat16):  # half FFTs lose the low bands: compute in float32
            out = self.forward(x.float())
            return self.finish(out.to(x.dtype), lengths)
        flat = x.reshape(-1, x.shape[-1]) if x.shape[-1] else x.new_zeros(math.prod(x.shape[:-1]), 0)
        bins = self.banks.shape[0] + int(self.use_energy)
        n_frames = self.frames(flat[:1]).shape[-2]
        out = flat.new_empty(flat.shape[0], bins, n_frames)
        if n_frames:
            # on the CPU a few rows at a time, so a chunk's frames, spectrum and power stay in cache while
            # the six passes over them run; on a GPU the whole batch at once
            per_row = n_frames * self.n_fft * 12
            rows = flat.shape[0] if flat.device.type != "cpu" else max(1, _CHUNK_BYTES // per_row)
            for i in range(0, flat.shape[0], rows):
                out[i:i + rows] = self._fbank(flat[i:i + rows])
        return self.finish(out.reshape(*x.shape[:-1], bins, n_frames), lengths)

    def _fbank(self, x: torch.Tensor) -> torch.Tensor:
        """``[rows, time]`` → ``[rows, bins, frames]``: frames copied once into a zero-padded FFT buffer,
        then DC removal, energy, pre-emphasis and the window in place on it."""
        frames = self.frames(x)
        buffer = x.new_empty(*frames.shape[:-1], self.n_fft)
        buffer[..., self.win:] = 0.0
        body = buffer[..., :self.win]
        body.copy_(frames)
        if self.dither:
            body.add_(torch.randn_like(body), alpha=self.dither)
        if self.remove_dc:
            body.sub_(body.mean(-1, keepdim=True))
        energy = None
        if self.use_energy:
            energy = body.square().sum(-1).clamp_(min=torch.finfo(x.dtype).eps).log_()
            if self.energy_floor > 0:
                energy.clamp_(min=math.log(self.energy_floor))
        if self.preemph:
            body[..., 1:].sub_(body[..., :-1] * self.preemph)  # the right side is a copy: no overlap
            body[..., 0].mul_(1.0 - self.preemph)
        body.mul_(self.window.to(x.dtype))
        spec = torch.fft.rfft(buffer, dim=-1)
        power = torch.addcmul(spec.real.square(), spec.imag, spec.imag)
        if not self.use_power:
            power.sqrt_()
        mel = torch.matmul(self.banks.to(x.dtype), power.transpose(-1, -2))  # band-major, no transpose copy
        if self.use_log:
            mel.clamp_(min=torch.finfo(x.dtype).eps).log_()
        if energy is not None:
            mel = torch.cat([energy[:, None], mel], dim=1)
        return mel


class Deltas(torch.nn.Module):
    """Regression deltas over frames (Kaldi's and torchaudio's ``compute_deltas``):
    ``d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)``, edges replicated; equal to
    ``librosa.feature.delta(width=win_length, mode='nearest')``. ``order=2`` stacks delta-deltas too."""

    def __init__(self, win_length: int = 5, order: int = 1, stack: bool = False) -> None:
        super().__init__()
        if win_length < 3 or win_length % 2 == 0:
            raise ParameterError(f"win_length must be odd and >= 3, got {win_length}")
        self.n, self.order, self.stack = (win_length - 1) // 2, order, stack
        taps = torch.arange(-self.n, self.n + 1, dtype=torch.float32)
        # conv1d correlates: tap k multiplies frame t + k - n, so the taps are n itself
        self.register_buffer("kernel", (taps / taps.square().sum())[None, None], persistent=False)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = torch.nn.functional.pad(x.reshape(-1, 1, shape[-1]), (self.n, self.n), mode="replicate")
        return torch.nn.functional.conv1d(flat, self.kernel.to(x.dtype)).reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs, current = [], x
        for _ in range(self.order):
            current = self.delta(current)
            outs.append(current)
        if self.stack:
            return torch.cat([x, *outs], dim=-2)
        return outs[-1]


class CMVN(torch.nn.Module):
    """Per-utterance cepstral mean (and variance) normalisation over frames, using only each sample's
    valid frames when ``lengths`` (frames) is given: ``[..., feature, frames]``."""

    def __init__(self, norm_means: bool = True, norm_vars: bool = False, eps: float = 1e-10) -> None:
        super().__init__()
        self.norm_means, self.norm_vars, self.eps = norm_means, norm_vars, eps

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
            out = x
        else:
            mask = (torch.arange(x.shape[-1], device=x.device)[None] < lengths.to(x.device)[:, None])
            mask = mask.reshape(mask.shape[0], *([1] * (x.ndim - 2)), -1).to(x.dtype)
            count = mask.sum(-1, keepdim=True).clamp(min=1)
            mean = (x * mask).sum(-1, keepdim=True) / count
            var = ((x - mean).square() * mask).sum(-1, keepdim=True) / count
            out = x
        if self.norm_means:
            out = out - mean
        if self.norm_vars:
            out = out / (var + self.eps).sqrt()
        return out if lengths is None else mask_frames(out, lengths)
