"""Features by name: what ``AudioDataLoader(features="mfcc", n_mfcc=40)``, the pipeline's ``features`` stage,
the server's ``/v1/features`` and music classifiers' specs ask for, built from the name and its arguments."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from .. import features as F
from ..errors import ParameterError

FEATURES: dict[str, type[nn.Module]] = {
    "spectrogram": F.Spectrogram, "mel": F.MelSpectrogram, "melspectrogram": F.MelSpectrogram,
    "logmel": F.LogMel, "log_mel": F.LogMel, "mfcc": F.MFCC, "fbank": F.Fbank, "whisper": F.WhisperLogMel,
    "whisper_logmel": F.WhisperLogMel,
}


def _parameters(cls: type) -> set[str]:
    names = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    if cls is F.LogMel:  # LogMel passes *args/**kwargs on to MelSpectrogram
        names |= _parameters(F.MelSpectrogram)
    return names


def build_feature(features: str | nn.Module | None, sample_rate: int, **kwargs: Any) -> nn.Module | None:
    """A feature module from a name ('mfcc', 'logmel', 'mel', 'spectrogram', 'fbank', 'whisper') and
    its constructor arguments (``n_mfcc=40``, ``n_mels=64``, ``hop_length=160``...; mel arguments given
    to 'mfcc' go to its ``melkwargs``), or a module as is, or None (waveforms)."""
    if features is None or isinstance(features, nn.Module):
        if kwargs:
            raise ParameterError(f"feature arguments {sorted(kwargs)} need features given by name")
        return features
    key = features.lower().replace("-", "_")
    if key not in FEATURES:
        raise ParameterError(f"unknown features {features!r}; choose from {', '.join(sorted(FEATURES))}")
    cls = FEATURES[key]
    accepted = _parameters(cls)
    own = {k: v for k, v in kwargs.items() if k in accepted}
    rest = {k: v for k, v in kwargs.items() if k not in accepted}
    if cls is F.MFCC:
        mel_names = _parameters(F.MelSpectrogram)
        melkwargs = {**own.pop("melkwargs", {}), **{k: v for k, v in rest.items() if k in mel_names}}
        rest = {k: v for k, v in rest.items() if k not in mel_names}
        if melkwargs:
            own["melkwargs"] = melkwargs
    if rest:
        raise ParameterError(f"{features!r} does not take {', '.join(sorted(rest))}")
    if "sample_rate" in accepted:
        own.setdefault("sample_rate", sample_rate)
    return cls(**own)
