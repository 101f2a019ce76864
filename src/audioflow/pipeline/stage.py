"""The stage contract, its options, and the step language (``split:method=silence,max=30``).

A stage has a ``name``, declared ``options`` (validated and converted before any work starts),
``setup(models)`` run once per worker, and ``__call__(audio, annotations) -> (audio, annotations)``.
The local runner, the Ray runner and the server drive the same objects."""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ..audio import Audio, Segment
from ..errors import ParameterError
from ..io.atomic import write_bytes_atomic, write_text_atomic  # noqa: F401  (their home before io.atomic)
from ..models import ModelManager
from ..runtime.extras import require
from .registry import STAGES, register_stage  # noqa: F401  (register_stage: its home before the registry)

SCHEMA_VERSION = 1
T = TypeVar("T")


@dataclass
class RunContext:
    """One input's run, shared by its chunks: its id, where its outputs go, and each stage's state from one
    chunk to the next (``state[stage.name]``, the stage's own; stages keep none on ``self``, which serves
    every input of a worker)."""

    id: str
    output_dir: str | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def output_path(self, kind: str, name: str) -> str | None:
        """``OUT/kind/name`` (folders made), or None when nothing is written."""
        if self.output_dir is None:
            return None
        folder = os.path.join(self.output_dir, kind)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, name)

    def state_of(self, stage: str) -> dict[str, Any]:
        """The state ``stage`` keeps across this input's chunks (empty at the first)."""
        return self.state.setdefault(stage, {})


@dataclass
class Annotations:
    """What the stages found for one input, JSON-ready: per-stage results, the current segments, and
    the files written. ``output_dir`` is where stages write their files (None: write nothing)."""

    source: str
    id: str
    output_dir: str | None = None
    results: dict[str, Any] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)
    # audio a stage made beside the audio it passes on (separate's stems), kept when it writes no files, for a
    # face that answers with it (the server's /v1/separate)
    audio_outputs: dict[str, Audio] = field(default_factory=dict)
    chunk: int | None = None  # which chunk of a long input this is (None: the whole input)
    offset: float = 0.0  # where the chunk starts in the input, seconds
    context: RunContext | None = None  # shared by the chunks of one input (made here for a whole input)

    def __post_init__(self) -> None:
        if self.context is None:
            self.context = RunContext(self.id, self.output_dir)

    def output_path(self, kind: str, name: str) -> str | None:
        """``OUT/kind/name`` (folders made), or None when nothing is written."""
        return self.context.output_path(kind, name)  # type: ignore[union-attr]

    def add_file(self, stage: str, path: str) -> None:
        self.files.setdefault(stage, []).append(path)

    def result(self, stage: str, kind: type[T]) -> T | None:
        """What ``stage`` found for this input as a ``kind`` (a typed result: ``VadResult``,
        ``DiarizeResult``...), whether the stage stored one or a plain dict; None when it did not run."""
        found = self.results.get(stage)
        if found is None or isinstance(found, kind):
            return found
        return kind.from_dict(found)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        results = {name: result.to_dict() if hasattr(result, "to_dict") else result
                   for name, result in self.results.items()}
        return {"schema_version": SCHEMA_VERSION, "source": self.source, "id": self.id, "results": results,
                "segments": [s.to_dict() for s in self.segments], "files": self.files}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Annotations:
        return cls(d["source"], d["id"], None, dict(d.get("results", {})),
                   [Segment.from_dict(s) for s in d.get("segments", [])], dict(d.get("files", {})))


@dataclass(frozen=True)
class Option:
    """One stage option, declared once: the step language converts and checks values with it, ``process
    --help`` lists it, the server makes its HTTP query parameters (and their OpenAPI schema) from it, and
    the Ray actors take it.

    Args:
        type: 'float', 'int', 'bool' or 'str'.
        default: the value when the option is not given (None: unset).
        help: what it does, with its unit.
        choices: the values a 'str' may take.
        ge, gt, le, lt: bounds of a number (inclusive, exclusive; pydantic's names).
        max_length, pattern: the longest 'str' and the regular expression it must match in full.
        remote: whether the server's clients may set it (False for server paths and files written).
    """

    type: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    max_length: int | None = None
    pattern: str | None = None
    remote: bool = True

    def convert(self, value: Any, where: str) -> Any:
        """``value`` (text from the step language, or any Python value) as this option's type, checked."""
        if value is None:
            return None
        try:
            if self.type == "float":
                number: float = float(value)
            elif self.type == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                number = int(value)
            elif self.type == "bool":
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in ("1", "true", "yes", "on"):
                    return True
                if text in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
        except (TypeError, ValueError, OverflowError):
            raise ParameterError(f"{where}: {value!r} is not a {self.type}") from None
        if self.type in ("float", "int"):
            return self._bounded(number, where)  # a number out of range names its bounds (not a type error)
        text = str(value)
        if self.choices is not None and text not in self.choices:
            raise ParameterError(f"{where}: {text!r} is not one of {', '.join(self.choices)}")
        if self.max_length is not None and len(text) > self.max_length:
            raise ParameterError(f"{where}: longer than {self.max_length} characters")
        if self.pattern is not None and re.fullmatch(self.pattern, text) is None:
            raise ParameterError(f"{where}: {text!r} does not match {self.pattern}")
        return text

    def _bounded(self, number: float, where: str) -> Any:
        if not math.isfinite(number):
            raise ParameterError(f"{where}: {number} is not a finite number")
        for words, bound in self._limits():
            if not _COMPARE[words](number, bound):
                allowed = ", ".join(f"{w} {b:g}" for w, b in self._limits())
                raise ParameterError(f"{where}: {number:g} is out of range (allowed: {allowed})")
        return number

    def _limits(self) -> list[tuple[str, float]]:
        return [(words, bound) for words, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                if bound is not None]

    def describe(self) -> str:
        """The help with the allowed values: 'beam search width (>= 1, <= 10)'."""
        if self.choices:
            return f"{self.help} (one of {', '.join(self.choices)})"
        limits = ", ".join(f"{words} {bound:g}" for words, bound in self._limits())
        return f"{self.help} ({limits})" if limits else self.help


_COMPARE = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


class Stage:
    """Base of every stage. Subclasses set ``name``, ``options`` and implement ``__call__``.

    ``accepts_extra`` stages take options beyond the declared ones (the features stage passes them to
    the feature module, which validates them)."""

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    accepts_extra: ClassVar[bool] = False
    # the share of one GPU an actor running this stage reserves on a Ray cluster when the run is on a GPU
    # (0: a CPU stage; 0.25: models small enough for four actors per GPU); see gpu_fraction
    gpu_share: ClassVar[float] = 0.0
    # working memory, for admission control (the server): beyond the audio it is given, the stage's peak
    # allocations are about ``memory_fixed`` bytes plus ``memory_factor`` times the float32 audio at
    # ``work_rate`` Hz (None: the input's rate), mixed to mono first when ``work_mono`` (measured per stage
    # on 2-10 min inputs: benchmarks/bench_serve.py checks them)
    memory_fixed: ClassVar[int] = 0
    memory_factor: ClassVar[float] = 12.0
    work_rate: ClassVar[int | None] = None
    work_mono: ClassVar[bool] = False
    models: ModelManager | None = None  # set by setup() in stages that hold models
    # What the stage imports beyond the core (top-level module names) and the extra of `pip install
    # 'audioflow[...]'` that brings them: checked when the stage is built, before any work, so a missing one
    # is one line naming the extra (the server answers 501 with it); ``requirements`` narrows them per option
    requires: ClassVar[tuple[str, ...]] = ()
    requires_extra: ClassVar[str | None] = None

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - set(self.options)
        if unknown and not self.accepts_extra:
            raise ParameterError(f"step {self.name!r} has no option {', '.join(sorted(unknown))}; it takes "
                                 f"{', '.join(sorted(self.options)) or 'none'}")
        self.config = {key: option.default for key, option in self.options.items()}
        self.extra: dict[str, Any] = {}
        for key, value in config.items():
            if key in self.options:
                self.config[key] = self.options[key].convert(value, f"{self.name}:{key}")
            else:
                self.extra[key] = _guess(value)
        require(self.requirements(self.config), f"the {self.name} step", self.requires_extra)
        self.validate()

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> tuple[str, ...]:
        """The modules beyond the core that the stage imports with ``config`` (its options, converted;
        default: ``requires``). A class method: the server checks it before it reads a request's body."""
        return cls.requires

    def validate(self) -> None:
        """Check option combinations; raise ParameterError."""

    def check_order(self, before: list[str]) -> None:
        """Check the steps that run before this one (names, in order); raise ParameterError."""

    def setup(self, models: ModelManager) -> None:
        """Load what the stage needs, once per worker."""

    def ensure_setup(self) -> ModelManager:
        """The stage's model manager: the engine's, or a CPU one set up now when the stage is called on its
        own (outside ``pipeline.run``, the server or Ray). Stages with models store ``self.models`` in
        ``setup``."""
        if self.models is None:
            from ..models import ModelManager

            self.setup(ModelManager("cpu"))
        assert self.models is not None, f"{type(self).__name__}.setup must set self.models"
        return self.models

    def work_bytes(self, duration: float, rate: int, channels: int) -> float:
        """Peak working memory, bytes, beyond the audio held, for ``duration`` seconds of ``channels``
        channels at ``rate`` Hz (from the declarations above; stages whose cost depends on their options
        override it)."""
        work_rate = self.work_rate or rate
        work_channels = 1 if self.work_mono else channels
        return self.memory_fixed + self.memory_factor * duration * work_rate * work_channels * 4

    def prepare_parent(self) -> None:
        """Run in the parent before workers are forked from it (work they should inherit, not repeat)."""

    def __call__(self, audio: Audio, annotations: Annotations) -> tuple[Audio, Annotations]:
        raise NotImplementedError

    def measure(self, chunks: Iterable[Audio], context: RunContext) -> None:
        """Called before a long input is processed in chunks, with every chunk, when ``needs_whole_input``
        is true (e.g. the loudness of the whole input, for one gain); what it finds goes in
        ``context.state_of(self.name)``."""

    @property
    def needs_whole_input(self) -> bool:
        return False

    def merge(self, parts: list[tuple[float, Any]], context: RunContext) -> Any:
        """One result from the results of a long input's chunks ``[(offset seconds, result)]`` (``context``:
        the input's, with the state the stage kept across chunks). The default keeps them as a list;
        stages whose results have times shift them by the offset."""
        return {"chunks": [{"offset": offset, "result": result} for offset, result in parts]}

    def gpu_fraction(self) -> float:
        """The share of one GPU this stage needs when it runs on one (0 for a CPU-only stage): Ray packs
        ``1 / fraction`` actors of it on a GPU."""
        return self.gpu_share

    def describe(self) -> str:
        options = {**self.config, **self.extra}
        return f"{self.name}:" + ",".join(f"{k}={v}" for k, v in options.items()) if options else self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def check_installed(name: str, options: dict[str, Any]) -> None:
    """Raise MissingDependencyError, naming the extra, when step ``name`` with ``options`` (as given: text or
    values) needs a module that is not installed. Cheap (nothing is imported): the server runs it before it
    reads a request's audio. Options that do not convert are left to the stage's own check."""
    cls = STAGES.find(name)
    config = {key: option.default for key, option in cls.options.items()}
    for key, value in options.items():
        if key in cls.options:
            with contextlib.suppress(ParameterError):
                config[key] = cls.options[key].convert(value, key)
    require(cls.requirements(config), f"the {name} step", cls.requires_extra)


def _guess(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def split_steps(specs: str | list[str] | tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    """``"split:method=silence,max=30,enhance:lufs=-23"`` (or a list of such strings) → ``[(name,
    {option: text})]``. A comma starts a new step unless what follows is ``key=value`` without a colon
    (then it is one more option of the step before)."""
    items = [specs] if isinstance(specs, str) else list(specs)
    steps: list[tuple[str, dict[str, str]]] = []
    for item in items:
        for token in (t.strip() for t in item.split(",")):
            if not token:
                continue
            if "=" in token and ":" not in token.split("=", 1)[0]:
                if not steps:
                    raise ParameterError(f"option {token!r} comes before any step")
                key, value = token.split("=", 1)
                steps[-1][1][key.strip()] = value.strip()
                continue
            name, _, rest = token.partition(":")
            options: dict[str, str] = {}
            if rest:
                if "=" not in rest:
                    raise ParameterError(f"step option {rest!r} of {name!r} needs key=value")
                key, value = rest.split("=", 1)
                options[key.strip()] = value.strip()
            steps.append((name.strip(), options))
    return steps


def build_steps(specs: str | list[str] | tuple[str, ...] | list[Stage] | list[tuple[str, dict[str, Any]]]
                ) -> list[Stage]:
    """Stages from step specs, from ``(name, {option: value})`` pairs (values of any type, e.g. a prompt
    with commas that the step language could not carry), or stages as they are; every name and option
    checked now, before any work starts."""
    if isinstance(specs, (list, tuple)) and specs and all(isinstance(s, Stage) for s in specs):
        return list(specs)  # type: ignore[arg-type]
    pairs = specs if isinstance(specs, list) and specs and all(isinstance(s, tuple) for s in specs) \
        else split_steps(specs)  # type: ignore[arg-type]
    built = []
    for name, options in pairs:
        built.append(STAGES.find(name)(**options))
    if not built:
        raise ParameterError("give at least one step")
    for i, stage in enumerate(built):
        stage.check_order([s.name for s in built[:i]])
    return built
