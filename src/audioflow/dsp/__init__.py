"""Pure signal maths on tensors: windows, STFT, mel banks, DCT, lengths, resampling, filters,
the phase vocoder. Plain functions, batched, on whatever device the input is on."""

from ..runtime.extras import require

require("torch", "audioflow.dsp", extra="train")

from .filters import butterworth_response, fft_convolve, fft_filter, filter_length
from .lengths import frame_lengths, mask_frames, time_mask
from .mel import create_dct, hz_to_mel, kaldi_mel_banks, mel_filterbank, mel_frequencies, mel_to_hz
from .resample import resample, resample_batch
from .spectral import (
                       get_window,
                       istft,
                       istft_frames,
                       phase_vocoder,
                       phase_vocoder_frames,
                       stft,
                       stft_frames,
                       stretch_frames,
)

__all__ = [
    "butterworth_response",
    "create_dct",
    "fft_convolve",
    "fft_filter",
    "filter_length",
    "frame_lengths",
    "get_window",
    "hz_to_mel",
    "istft",
    "istft_frames",
    "kaldi_mel_banks",
    "mask_frames",
    "mel_filterbank",
    "mel_frequencies",
    "mel_to_hz",
    "phase_vocoder",
    "phase_vocoder_frames",
    "resample",
    "resample_batch",
    "stft",
    "stft_frames",
    "stretch_frames",
    "time_mask",
]
