"""Audio input and output: ``load``, ``info``, ``save``, ``stream``. No torch here."""

from .decode import load
from .encode import encode, save
from .info import AudioInfo, info
from .resample import resample
from .stream import stream

__all__ = ["AudioInfo", "encode", "info", "load", "resample", "save", "stream"]
