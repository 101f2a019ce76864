"""Every stage by name, complete in a fresh interpreter whatever was imported first: the built-in stages
listed here, third-party stages from the ``audioflow.stages`` entry-point group, and stages registered
at run time with :func:`register_stage`.

A package adds a stage by declaring, in its ``pyproject.toml``::

    [project.entry-points."audioflow.stages"]
    loudest = "my_package.stages:Loudest"

where ``Loudest`` subclasses :class:`~audioflow.pipeline.Stage` with ``name = "loudest"``. The class is
imported the first time the registry is read (``--steps``, ``process --help``, the server, Ray)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import TYPE_CHECKING

from ..errors import ParameterError

if TYPE_CHECKING:
    from .stage import Stage

log = logging.getLogger("audioflow.pipeline")

ENTRY_POINT_GROUP = "audioflow.stages"

# name -> "module:Class", in the order `--help` lists them
BUILTIN_STAGES: dict[str, str] = {
    "split": "audioflow.pipeline.stages.split:Split",
    "enhance": "audioflow.pipeline.stages.enhance:Enhance",
    "separate": "audioflow.pipeline.stages.separate:Separate",
    "denoise": "audioflow.pipeline.stages.speech:Denoise",
    "vad": "audioflow.pipeline.stages.speech:VAD",
    "diarize": "audioflow.pipeline.stages.speech:Diarize",
    "transcribe": "audioflow.pipeline.stages.speech:Transcribe",
    "analyze": "audioflow.pipeline.stages.measure:Analyze",
    "features": "audioflow.pipeline.stages.measure:Features",
    "fingerprint": "audioflow.pipeline.stages.measure:Fingerprint",
    "classify": "audioflow.pipeline.stages.measure:Classify",
}


def _import(target: str) -> type:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class StageRegistry(Mapping[str, "type[Stage]"]):
    """A read-only mapping ``{name: Stage subclass}`` that fills itself on first use. A plugin that fails to
    import is logged and left out; asking for it by name raises ParameterError with the reason."""

    def __init__(self) -> None:
        self._stages: dict[str, type[Stage]] | None = None
        self._added: dict[str, type[Stage]] = {}
        self.failed: dict[str, str] = {}  # plugin stage name -> why it could not be loaded

    def _load(self) -> dict[str, type[Stage]]:
        if self._stages is not None:
            return self._stages
        from .stage import Stage

        stages: dict[str, type[Stage]] = {name: _import(target) for name, target in BUILTIN_STAGES.items()}
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            where = f"{entry.value} (entry point {entry.name!r} of {_distribution(entry)})"
            try:
                cls = entry.load()
            except Exception as e:  # a broken plugin must not take the built-in stages down with it
                self.failed[entry.name] = f"{where} failed to import: {type(e).__name__}: {e}"
                log.warning("stage %s", self.failed[entry.name])
                continue
            if not (isinstance(cls, type) and issubclass(cls, Stage)) or cls.name != entry.name:
                self.failed[entry.name] = f"{where} is not a Stage subclass named {entry.name!r}"
                log.warning("stage %s", self.failed[entry.name])
                continue
            if entry.name in stages:
                log.warning("stage %s is shadowed by the stage of that name already registered", where)
                continue
            stages[entry.name] = cls
        stages.update(self._added)
        self._stages = stages
        return stages

    def register(self, cls: type[Stage]) -> type[Stage]:
        self._added[cls.name] = cls
        if self._stages is not None:
            self._stages[cls.name] = cls
        return cls

    def reload(self) -> None:
        """Read the entry points again (after installing a plugin in a running interpreter)."""
        self._stages, self.failed = None, {}

    def __getitem__(self, name: str) -> type[Stage]:
        return self._load()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def find(self, name: str) -> type[Stage]:
        """The stage called ``name``; ParameterError naming the choices, or why a plugin's stage failed."""
        stages = self._load()
        if name in stages:
            return stages[name]
        if name in self.failed:
            raise ParameterError(f"step {name!r}: {self.failed[name]}")
        raise ParameterError(f"unknown step {name!r}; choose from {', '.join(sorted(stages))}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"StageRegistry({', '.join(self._load())})"


def _distribution(entry: metadata.EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


STAGES = StageRegistry()


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Make a stage available by name to ``--steps`` in this process (a class decorator). Packages that
    others install use the ``audioflow.stages`` entry-point group instead."""
    return STAGES.register(cls)
