"""Packed datasets: typed fields in Arrow IPC shards, a parallel atomic writer, a memory-mapped reader.

>>> from audioflow import store
>>> store.write("clips/", "clips.afds", {"audio": store.WaveformField(sr=16000)})  # doctest: +SKIP
>>> ds = store.open("clips.afds"); batch = ds.get_batch([0, 5, 9])  # doctest: +SKIP
"""

from ..runtime.extras import require

require("pyarrow", "audioflow.store (packed datasets)", extra="train")

from .fields import (
    FIELD_KINDS,
    ChunkedAudioField,
    CodecTokenField,
    CompressedField,
    Encoded,
    Field,
    FloatField,
    HybridField,
    IntField,
    JSONField,
    MelSpectrogramField,
    MultiTrackField,
    NDArrayField,
    StringField,
    WaveformField,
    field_from_spec,
    parse_field,
)
from .reader import Dataset, open_dataset, pad_stack
from .writer import FORMAT, VERSION, write

open = open_dataset

__all__ = [
    "FIELD_KINDS",
    "FORMAT",
    "VERSION",
    "ChunkedAudioField",
    "CodecTokenField",
    "CompressedField",
    "Dataset",
    "Encoded",
    "Field",
    "FloatField",
    "HybridField",
    "IntField",
    "JSONField",
    "MelSpectrogramField",
    "MultiTrackField",
    "NDArrayField",
    "StringField",
    "WaveformField",
    "field_from_spec",
    "open",
    "open_dataset",
    "pad_stack",
    "parse_field",
    "write",
]
