"""Enhancement and measurement of whole recordings: loudness (BS.1770) and true peak, EQ biquads and
filters, click removal, spectral-gating noise reduction, pre-emphasis, general signal metrics and SI-SDR; and
:func:`enhance`, which applies the chosen ones in one stated order."""

from .chain import ENHANCE_ORDER, EnhanceOptions, enhance
from .cleanup import pre_emphasis, remove_clicks, spectral_gate
from .eq import apply_sos, butterworth, rbj_biquad, response_db
from .loudness import integrated_loudness, limit_true_peak, normalize_loudness, true_peak_db
from .metrics import si_sdr, signal_metrics

__all__ = [
    "ENHANCE_ORDER",
    "EnhanceOptions",
    "apply_sos",
    "butterworth",
    "enhance",
    "integrated_loudness",
    "limit_true_peak",
    "normalize_loudness",
    "pre_emphasis",
    "rbj_biquad",
    "remove_clicks",
    "response_db",
    "si_sdr",
    "signal_metrics",
    "spectral_gate",
    "true_peak_db",
]
