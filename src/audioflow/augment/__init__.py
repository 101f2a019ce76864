"""Augmentations on batches: per-item random parameters, ``lengths`` honoured, seedable, any device.

Parameter names follow audiomentations where it has the transform (``min_rate``, ``max_semitones``,
``min_snr_db``, ``min_gain_db``, ``p``...). Call with ``[batch, time]`` or ``[batch, channels, time]``
and optional ``lengths``; get ``x`` back, or ``(x, lengths)`` when lengths were given.

>>> import torch, audioflow.augment as A
>>> chain = A.Compose([A.TimeStretch(0.8, 1.2, p=1), A.PitchShift(-2, 2, p=1), A.AddNoise(snr_db=20, p=1)], seed=0)
>>> y, lengths = chain(torch.randn(4, 16000), torch.full((4,), 16000))
"""

from ..runtime.extras import require

require("torch", "audioflow.augment", extra="train")

from .base import Transform
from .compose import Compose, OneOf, SomeOf
from .fused import SpectralStretch, warp_frequency
from .spec import FreqMask, Mixup, TimeMask
from .time import PadOrCrop, PitchShift, RandomCrop, SpeedPerturb, StretchAndShift, TimeStretch, stretch_and_shift
from .waveform import (
    AddNoise,
    BandPassFilter,
    BandStopFilter,
    Clip,
    ClippingDistortion,
    Distortion,
    Gain,
    HighPassFilter,
    LowPassFilter,
    PolarityInversion,
    Reverb,
    Shift,
    TanhDistortion,
    colored_noise,
    synthetic_rir,
)

__all__ = [
    "AddNoise",
    "BandPassFilter",
    "BandStopFilter",
    "Clip",
    "ClippingDistortion",
    "Compose",
    "Distortion",
    "FreqMask",
    "Gain",
    "HighPassFilter",
    "LowPassFilter",
    "Mixup",
    "OneOf",
    "PadOrCrop",
    "PitchShift",
    "PolarityInversion",
    "RandomCrop",
    "Reverb",
    "Shift",
    "SomeOf",
    "SpectralStretch",
    "SpeedPerturb",
    "StretchAndShift",
    "TanhDistortion",
    "TimeMask",
    "TimeStretch",
    "Transform",
    "colored_noise",
    "stretch_and_shift",
    "synthetic_rir",
    "warp_frequency",
]
