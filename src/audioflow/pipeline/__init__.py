"""Batch processing: stages (``split``, ``enhance``, ``analyze``, ``features``; more register themselves),
the step language, and :func:`run` over many files with the local process pool or Ray."""

from .runner import RunSummary, dedupe, input_rows, process_file, read_manifest, run
from .stage import STAGES, Annotations, Option, Stage, build_steps, register_stage, split_steps
from .stages import Analyze, Enhance, Features, Fingerprint, Split

__all__ = [
    "STAGES",
    "Analyze",
    "Annotations",
    "Enhance",
    "Features",
    "Fingerprint",
    "Option",
    "RunSummary",
    "Split",
    "Stage",
    "build_steps",
    "dedupe",
    "input_rows",
    "process_file",
    "read_manifest",
    "register_stage",
    "run",
    "split_steps",
]
