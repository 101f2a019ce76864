"""Speech: voice activity detection (Silero, streaming), with transcription, diarization, denoising and
synthesis to come. Models resolve from an explicit path, an environment variable, an installed model
package, then a hub name."""

from .vad import SileroVAD, VADEvent

__all__ = ["SileroVAD", "VADEvent"]
