"""Batch processing: stages (the built-in ones and plugins, by name in :data:`STAGES`), the step language,
and :func:`run` over many files with the local process pool or Ray."""

from .files import input_rows, process_file
from .registry import STAGES, StageRegistry, register_stage
from .runner import RunSummary, dedupe, read_manifest, run
from .stage import Annotations, Option, RunContext, Stage, build_steps, split_steps
from .stages import Analyze, Enhance, Features, Fingerprint, Split

__all__ = [
    "STAGES",
    "Analyze",
    "Annotations",
    "Enhance",
    "Features",
    "Fingerprint",
    "Option",
    "RunContext",
    "RunSummary",
    "Split",
    "Stage",
    "StageRegistry",
    "build_steps",
    "dedupe",
    "input_rows",
    "process_file",
    "read_manifest",
    "register_stage",
    "run",
    "split_steps",
]
