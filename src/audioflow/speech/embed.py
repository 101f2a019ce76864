"""Speaker embeddings: the GE2E voice encoder (Wan et al. 2018) whose weights ``resemblyzer`` ships.

The network (3-layer LSTM over 40 mel bands, a linear layer, ReLU, L2 norm) is rebuilt here and fed by
our own mel spectrogram, so the package is needed only for its weights file: importing it would pull in
``webrtcvad`` and librosa for nothing. Windows of equal length are embedded in one batch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .checks import EMBED_SR
from .resolve import load_weights

HOP = 160  # 10 ms mel frames
TARGET_DBFS = -30.0  # the encoder was trained on audio raised to this RMS level


def embed_by_length(signal: torch.Tensor, spans: list[tuple[int, int]], dim: int, batch: int,
                    embed: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """``embed([windows, samples]) -> [windows, dim]`` over the windows ``signal[start:end]``, those of one
    length stacked into batches of at most ``batch``: ``(len(spans), dim)`` float32, in the order of ``spans``."""
    out = np.zeros((len(spans), dim), np.float32)
    by_length: dict[int, list[int]] = {}
    for i, (start, end) in enumerate(spans):
        by_length.setdefault(end - start, []).append(i)
    for length, indices in by_length.items():
        for first in range(0, len(indices), batch):
            chosen = indices[first:first + batch]
            out[chosen] = embed(torch.stack([signal[spans[i][0]:spans[i][0] + length] for i in chosen])).cpu().numpy()
    return out


class _GE2E(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


class SpeakerEncoder:
    """256-d speaker embeddings of 16 kHz speech windows.

    Args:
        model: the weights file (default ``$AUDIOFLOW_SPEAKER_ENCODER``, then ``resemblyzer``'s
            ``pretrained.pt``).
        device: 'cpu' or 'cuda'.
    """

    # GE2E puts different real speakers close together (centroids 0.7-0.85): one merge threshold cannot part
    # them all (speaker count right on 17 of 27 tuning conversations at 0.85); CAM++ is the default for that
    merge_similarity = 0.85

    def __init__(self, model: str | None = None, device: str = "cpu") -> None:
        from ..features import MelSpectrogram

        state = load_weights(model, "AUDIOFLOW_SPEAKER_ENCODER", "resemblyzer", "pretrained.pt",
                             "pip install --no-deps resemblyzer==0.1.4 (it ships the GE2E weights)",
                             "speaker encoder")["model_state"]
        self.device = device
        self.net = _GE2E()
        self.net.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity")})
        self.net.eval().to(device)
        # resemblyzer's mel: librosa.feature.melspectrogram(sr=16000, n_fft=400, hop=160, n_mels=40)
        self.mel = MelSpectrogram.librosa(EMBED_SR, n_fft=400, hop_length=HOP, n_mels=40).to(device)

    @staticmethod
    def level(y: np.ndarray) -> np.ndarray:
        """Raise quiet audio to the encoder's training level (-30 dBFS RMS); louder audio stays as is."""
        rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0
        if rms <= 1e-9:
            return y
        gain_db = TARGET_DBFS - 20 * np.log10(rms)
        return y * np.float32(10 ** (gain_db / 20)) if gain_db > 0 else y

    @torch.no_grad()
    def embed_windows(self, y: np.ndarray, spans: list[tuple[int, int]], batch: int = 256) -> np.ndarray:
        """Embeddings ``(len(spans), 256)`` of the windows ``y[start:end]`` (16 kHz samples; windows of
        one length batch together)."""
        signal = torch.from_numpy(np.ascontiguousarray(self.level(np.asarray(y, np.float32)))).to(self.device)
        return embed_by_length(signal, spans, 256, batch,
                               lambda windows: self.net(self.mel.mel(windows).transpose(1, 2)))

    def embed(self, y: np.ndarray) -> np.ndarray:
        """One L2-normalised embedding of a whole utterance (mean of 1.6 s windows, half overlapping)."""
        window, step = 25600, 12800
        spans = [(s, s + window) for s in range(0, max(1, len(y) - window + 1), step)]
        padded = np.pad(np.asarray(y, np.float32), (0, max(0, spans[-1][1] - len(y))))
        mean = self.embed_windows(padded, spans).mean(axis=0)
        return mean / max(np.linalg.norm(mean), 1e-12)
