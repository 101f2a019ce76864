"""Training input: :class:`AudioDataLoader` (sources, sampler, decoded-audio cache, workers, batch
transform on the device, measured settings) and its parts for those who assemble their own."""

from ..runtime.extras import require

require(("torch", "pyarrow"), "audioflow.data (AudioDataLoader)", extra="train")

from ..features.registry import build_feature
from ..runtime import resolve_device
from .batching import Batch, BatchMaker, BatchResult
from .cache import DecodedCache
from .loader import AudioDataLoader
from .sampler import AudioSampler, distributed_rank_world
from .sources import AudioSource, FileSource, MapSource, StoreSource, open_audio_source, resolve_labels
from .transforms import BatchTransform, plan

__all__ = [
    "AudioDataLoader",
    "AudioSampler",
    "AudioSource",
    "Batch",
    "BatchMaker",
    "BatchResult",
    "BatchTransform",
    "DecodedCache",
    "FileSource",
    "MapSource",
    "StoreSource",
    "build_feature",
    "distributed_rank_world",
    "open_audio_source",
    "plan",
    "resolve_device",
    "resolve_labels",
]
