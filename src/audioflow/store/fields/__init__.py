"""Typed fields of a packed dataset: how a value is encoded into Arrow columns when writing, and how a
batch of rows is decoded when reading.

A field owns the columns ``{name}`` (the payload) and, for arrays, ``{name}.shape``-like integer
columns; its spec (``to_spec``) goes into the manifest and the Arrow schema metadata, so a shard
describes itself. New field types subclass :class:`Field` with a ``kind`` (see ``base.py``)."""

from __future__ import annotations

from typing import Any

from ...errors import ParameterError
from .audio import ChunkedAudioField, CodecTokenField, CompressedField, MelSpectrogramField, WaveformField
from .base import FIELD_ALIASES, FIELD_KINDS, ColumnViews, Encoded, Field, field_from_spec
from .composite import HybridField, MultiTrackField
from .scalars import FloatField, IntField, JSONField, NDArrayField, StringField

__all__ = ["FIELD_KINDS", "ChunkedAudioField", "CodecTokenField", "ColumnViews", "CompressedField", "Encoded", "Field",
           "FloatField", "HybridField", "IntField", "JSONField", "MelSpectrogramField", "MultiTrackField",
           "NDArrayField", "StringField", "WaveformField", "field_from_spec", "parse_field"]


def parse_field(text: str) -> tuple[str, Field]:
    """``name=kind:key=value,key=value`` (the CLI's ``--field``) → ``(name, Field)``; ``kind`` is any
    registered kind or alias (``wav``, ``flac``, ``mel``, ``int``...).

    >>> parse_field("audio=mel:n_mels=80")[1]
    MelSpectrogramField(n_mels=80, n_fft=400, hop_length=160, sr=16000, store_dtype='float16')
    """
    if "=" not in text:
        raise ParameterError(f"--field must look like name=kind[:key=value,...], got {text!r}")
    name, rest = text.split("=", 1)
    kind, _, options = rest.partition(":")
    if kind not in FIELD_ALIASES:
        raise ParameterError(f"unknown field kind {kind!r}; use one of {', '.join(sorted(FIELD_ALIASES))}")
    args: dict[str, Any] = {}
    for item in filter(None, options.replace(",", ":").split(":")):
        key, _, value = item.partition("=")
        args[key] = _parse_value(value)
    if kind == "flac":
        args.setdefault("codec", "flac")
    try:
        return name, FIELD_KINDS[FIELD_ALIASES[kind]](**args)
    except TypeError as e:
        raise ParameterError(f"bad options for field {name!r}: {e}") from None


def _parse_value(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(value.lower(), value)
