"""Fields made of fields: aligned stems (source separation) and the same audio as waveform and spectrogram."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ParameterError
from .audio import MelSpectrogramField, WaveformField
from .base import Encoded, Field, field_from_spec


class _CompositeField(Field):
    """Several fields stored side by side under one name; ``parts`` are bound to ``{name}.{part}``."""

    audio = True

    def __init__(self, parts: dict[str, Field]) -> None:
        super().__init__()
        self.parts = parts

    def bind(self, name: str) -> Field:
        self.name = name
        for part, field in self.parts.items():
            field.bind(f"{name}.{part}")
        return self

    def columns(self):
        return [c for f in self.parts.values() for c in f.columns()]

    def part_value(self, value: Any, part: str) -> Any:
        raise NotImplementedError

    def encode(self, value):
        out = Encoded()
        for part, field in self.parts.items():
            encoded = field.encode(self.part_value(value, part))
            out.columns.update(encoded.columns)
            out.seconds = max(out.seconds, encoded.seconds)
        return out

    def decode(self, table, rows):
        decoded = {part: field.decode(table, rows) for part, field in self.parts.items()}
        return [{part: values[i] for part, values in decoded.items()} for i in range(len(rows))]

    def leaves(self) -> dict[str, Field]:
        """``{"{name}.{part}": field}``: how a batch exposes the parts."""
        return {field.name: field for field in self.parts.values()}


class MultiTrackField(_CompositeField):
    """Aligned stems (source separation): a row gives ``{stem: audio}`` for every stem; each stem is
    stored as ``inner`` (a WaveformField or CompressedField) and all must have the same length."""

    kind = "multitrack"

    def __init__(self, stems: list[str] | tuple[str, ...] = ("vocals", "drums", "bass", "other"),
                 inner: Field | None = None) -> None:
        import copy

        inner = inner or WaveformField()
        if not isinstance(inner, WaveformField):
            raise ParameterError("MultiTrackField stores its stems as a WaveformField or CompressedField")
        super().__init__({stem: copy.deepcopy(inner) for stem in stems})
        self.stems, self.inner = list(stems), inner

    def to_spec(self):
        return {"kind": self.kind, "stems": self.stems, "inner": self.inner.to_spec()}

    def part_value(self, value, part):
        if not isinstance(value, Mapping) or part not in value:
            raise ParameterError(f"field {self.name!r} needs a dict with the stems {self.stems}")
        return value[part]

    @classmethod
    def from_spec(cls, spec):
        return cls(spec["stems"], field_from_spec(spec["inner"]))

    def encode(self, value):
        out = super().encode(value)
        frames = {out.columns[f"{self.name}.{stem}.frames"] for stem in self.stems}
        if len(frames) > 1:
            raise ParameterError(f"field {self.name!r}: stems are not aligned (lengths {sorted(frames)})")
        return out


class HybridField(_CompositeField):
    """The same audio stored twice: as ``waveform`` (a WaveformField or CompressedField) and as
    ``spectrogram`` (a MelSpectrogramField), for models or research that need both."""

    kind = "hybrid"

    def __init__(self, waveform: Field | None = None, spectrogram: Field | None = None) -> None:
        super().__init__({"waveform": waveform or WaveformField(), "spectrogram": spectrogram or MelSpectrogramField()})

    def to_spec(self):
        return {"kind": self.kind, "waveform": self.parts["waveform"].to_spec(),
                "spectrogram": self.parts["spectrogram"].to_spec()}

    @classmethod
    def from_spec(cls, spec):
        return cls(field_from_spec(spec["waveform"]), field_from_spec(spec["spectrogram"]))

    def part_value(self, value, part):
        return value
