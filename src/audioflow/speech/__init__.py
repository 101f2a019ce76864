"""Speech: voice activity detection (Silero, streaming; WebRTC), denoising (DeepFilterNet3, RNNoise,
spectral gating), speaker diarization (GE2E embeddings + clustering), transcription (Whisper through
faster-whisper) and synthesis (Piper, espeak-ng, flite).

Models resolve in one order: an explicit path, an environment variable, an installed model package, then
a hub name (for users who are online). See docs/models.md."""

from typing import TYPE_CHECKING, Any

from ..runtime.extras import require
from .denoise import DENOISE_METHODS, DeepFilterNet, RNNoise, denoise, load_denoiser, mix_for_recognition
from .diarize import DiarizeOptions, Diarizer, diarize, write_rttm
from .synthesize import synthesize, voices
from .transcribe import Transcriber, Transcript, Utterance, Window, Word, plan_windows, transcribe
from .vad import SileroVAD, VADEvent, WebRTCVAD

if TYPE_CHECKING:
    from .embed import SpeakerEncoder


def __getattr__(name: str) -> Any:
    """``SpeakerEncoder`` on first use: it is a torch module (the speech extra); the rest imports without torch."""
    if name != "SpeakerEncoder":
        raise AttributeError(f"module 'audioflow.speech' has no attribute {name!r}")
    require("torch", "audioflow.speech.SpeakerEncoder", extra="speech")
    from .embed import SpeakerEncoder

    globals()["SpeakerEncoder"] = SpeakerEncoder
    return SpeakerEncoder

__all__ = [
    "DENOISE_METHODS",
    "DeepFilterNet",
    "DiarizeOptions",
    "Diarizer",
    "RNNoise",
    "SileroVAD",
    "SpeakerEncoder",
    "Transcriber",
    "Transcript",
    "Utterance",
    "VADEvent",
    "WebRTCVAD",
    "Window",
    "Word",
    "denoise",
    "diarize",
    "load_denoiser",
    "mix_for_recognition",
    "plan_windows",
    "synthesize",
    "transcribe",
    "voices",
    "write_rttm",
]
