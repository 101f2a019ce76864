"""The built-in stages, one module per family; the registry (``pipeline/registry.py``) lists them by name.

- split.py: ``split``; enhance.py: ``enhance``; separate.py: ``separate``; measure.py: ``analyze``,
  ``features``, ``fingerprint``, ``classify``; speech.py: ``vad``, ``denoise``, ``diarize``, ``transcribe``;
  outputs.py: what they share.
"""

from .enhance import Enhance
from .measure import Analyze, Classify, Features, Fingerprint
from .separate import Separate
from .speech import VAD, Denoise, Diarize, Transcribe, vad_speech
from .split import Split

__all__ = ["VAD", "Analyze", "Classify", "Denoise", "Diarize", "Enhance", "Features", "Fingerprint", "Separate",
           "Split", "Transcribe", "vad_speech"]
