"""One input through the stages: decoded whole, or in bounded-memory chunks for long inputs (each stage's
chunk results merged into one), and the result written atomically as JSON."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..audio import Audio, Segment
from ..errors import AudioflowError, InvalidAudioError
from ..io.listing import AUDIO_EXTENSIONS, list_rows
from .results import as_dict
from .stage import Annotations, Stage, write_text_atomic

log = logging.getLogger("audioflow.pipeline")


def input_rows(inputs: Any, extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
               storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Files from paths, folders (recursive), manifests and URLs, with a unique ``id`` each (the file
    stem; a short hash of the path is added where stems repeat)."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    rows: list[dict[str, Any]] = []
    for item in items:
        listed, _ = list_rows(item, extensions, storage_options)
        rows.extend(listed)
    stems: dict[str, int] = {}
    for row in rows:
        stem = Path(row["path"]).stem
        stems[stem] = stems.get(stem, 0) + 1
    for row in rows:
        stem = Path(row["path"]).stem
        if "id" not in row:
            row["id"] = stem if stems[stem] == 1 else f"{stem}-{hashlib.sha1(row['path'].encode()).hexdigest()[:8]}"
    return rows


def process_file(row: dict[str, Any], stages: Sequence[Stage], output: Any,
                 storage_options: dict[str, Any] | None = None, chunk_duration: float | None = None,
                 progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    """Decode one input, run the stages, write its result JSON atomically; returns the manifest entry.

    ``output``: an :class:`~audioflow.pipeline.output.Output`, a local folder, or None (nothing written).
    The stages write into a local folder (the output itself, or a staging folder published to a remote
    output when the input is done; an entry's ``collected`` holds the files for the driver to write when
    the output asks for them to travel back).

    An input longer than ``chunk_duration`` seconds is streamed in chunks of that length (memory bounded
    by a chunk): each chunk runs through the stages, and each stage merges its chunks' results (times in
    the input's clock); stages that need the whole input first (the loudness target) see every chunk in
    a measuring pass. ``progress(seconds_done, seconds_total)`` is called after each chunk (seconds of the
    input's audio)."""
    from .output import Output

    started = time.perf_counter()
    timings: dict[str, float] = {}
    entry: dict[str, Any] = {"input": row["path"], "id": row["id"]}
    if output is not None and not isinstance(output, Output):
        output = Output(output)
    try:
        if output is None:
            annotations, audio_info = _run_stages(row, stages, None, storage_options, chunk_duration, timings,
                                                  progress)
        else:
            with output.staging() as folder:
                annotations, audio_info = _run_stages(row, stages, folder, storage_options, chunk_duration,
                                                      timings, progress)
                document = {**annotations.to_dict(), "audio": audio_info, "steps": [s.describe() for s in stages]}
                for key in ("results", "segments", "files"):
                    document[key] = relative_to(document[key], folder)
                result = os.path.join("results", f"{row['id']}.json")
                write_json_atomic(os.path.join(folder, result), document)
                collected = output.publish(folder, last=result)
            entry["result"] = result
            if collected:
                entry["collected"] = collected
        entry.update(status="ok", audio_seconds=audio_info["duration"])
    except Exception as e:  # one file's failure is recorded, never the run's
        message = str(e) if isinstance(e, AudioflowError) else f"{type(e).__name__}: {e}"
        entry.update(status="failed", error=message, audio_seconds=0.0)
    entry["seconds"] = round(time.perf_counter() - started, 4)
    entry["stage_seconds"] = {k: round(v, 4) for k, v in timings.items()}
    return entry


def _run_stages(row: dict[str, Any], stages: Sequence[Stage], output_dir: str | None,
                storage_options: dict[str, Any] | None, chunk_duration: float | None,
                timings: dict[str, float], progress: Callable[[float, float], None] | None = None,
                ) -> tuple[Annotations, dict[str, Any]]:
    from ..io import info, load
    from ..io.decoders import check_range

    started = time.perf_counter()
    whole = "offset" not in row and "duration" not in row and chunk_duration
    described = info(row["path"], storage_options=storage_options) if whole else None
    if described is not None and described.duration > chunk_duration:
        return _process_chunked(row, described, stages, output_dir, storage_options, chunk_duration, timings,
                                progress)
    samples, sr = load(row["path"], sr=None, mono=False, offset=float(row.get("offset", 0.0)),
                       duration=row.get("duration"), storage_options=storage_options)
    timings["decode"] = time.perf_counter() - started
    if samples.shape[-1] == 0:
        raise InvalidAudioError("no samples to process (zero length)", row["path"])
    check_range(samples, row["path"])
    audio = Audio(samples, sr, row["path"])
    audio_info = audio.to_dict()
    annotations = Annotations(row["path"], row["id"], output_dir)
    for stage in stages:
        t0 = time.perf_counter()
        audio, annotations = stage(audio, annotations)
        timings[stage.name] = time.perf_counter() - t0
    if progress is not None:
        progress(audio_info["duration"], audio_info["duration"])
    return annotations, audio_info


def _process_chunked(row: dict[str, Any], described: Any, stages: Sequence[Stage], output_dir: str | None,
                     storage_options: dict[str, Any] | None, chunk_duration: float,
                     timings: dict[str, float], progress: Callable[[float, float], None] | None = None,
                     ) -> tuple[Annotations, dict[str, Any]]:
    from ..io import stream

    path = row["path"]
    sr = described.sample_rate

    def chunks():
        for samples in stream(path, chunk_duration, mono=False, storage_options=storage_options):
            yield Audio(samples, sr, path)

    merged = Annotations(path, row["id"], output_dir)
    context = merged.context
    for stage in stages:
        if stage.needs_whole_input:
            t0 = time.perf_counter()
            stage.measure(chunks(), context)
            timings[f"{stage.name}:measure"] = time.perf_counter() - t0
    per_stage: dict[str, list[tuple[float, Any]]] = {s.name: [] for s in stages}
    offset, frames, channels = 0.0, 0, described.channels
    for number, audio in enumerate(chunks()):
        chunk_frames = audio.frames
        annotations = Annotations(path, row["id"], output_dir, chunk=number, offset=offset, context=context)
        for stage in stages:
            t0 = time.perf_counter()
            audio, annotations = stage(audio, annotations)
            timings[stage.name] = timings.get(stage.name, 0.0) + time.perf_counter() - t0
            if stage.name in annotations.results:
                per_stage[stage.name].append((offset, annotations.results[stage.name]))
        merged.segments += [Segment(round(s.start + offset, 4), round(s.end + offset, 4), s.label, s.score, s.extra)
                            for s in annotations.segments]
        for stage_name, files in annotations.files.items():
            merged.files.setdefault(stage_name, []).extend(files)
        frames += chunk_frames
        offset += chunk_frames / sr
        if progress is not None:
            progress(min(offset, described.duration), described.duration)
    for stage in stages:
        if per_stage[stage.name]:
            result = stage.merge(per_stage[stage.name], context)
            merged.results[stage.name] = result
            data = as_dict(result)
            if isinstance(data, dict) and (data.get("file") or data.get("files")):  # what the merge wrote
                merged.files[stage.name] = [data["file"]] if data.get("file") else list(data["files"])
    audio_info = {"schema_version": 1, "source": path, "sample_rate": sr, "channels": channels, "frames": frames,
                  "duration": frames / sr, "chunks": number + 1, "chunk_duration": chunk_duration}
    return merged, audio_info


def relative_to(value: Any, output_dir: str) -> Any:
    """``value`` (JSON-ready) with every path of a file written under ``output_dir`` made relative to it, as
    the manifest's are: the output folder can be moved or copied up whole and still read."""
    if isinstance(value, dict):
        return {k: relative_to(v, output_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_to(v, output_dir) for v in value]
    if isinstance(value, str) and value.startswith(os.path.join(output_dir, "")):
        return os.path.relpath(value, output_dir)
    return value


def write_json_atomic(path: str, document: Any) -> None:
    write_text_atomic(path, json.dumps(document, indent=1, default=json_default))


def json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_dict"):  # a typed stage result
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


