"""What the stages share: writing their audio outputs atomically, joining a long input's chunks, shifting
chunk times to the input's clock, and the spans a per-segment stage works on."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...audio import Audio
from ..stage import Stage


def save_audio(audio: Audio, path: str | None, fmt: str) -> str | None:
    if path is None:
        return None
    from ...io import save

    path = f"{path}.{fmt}"
    save(path, audio.samples, audio.sample_rate)
    return path


def shifted(item: dict[str, Any], offset: float, keys: tuple[str, ...] = ("start", "end")) -> dict[str, Any]:
    """A result row with its times moved by ``offset`` seconds (a chunk's results, in the input's time)."""
    return {**item, **{k: round(float(item[k]) + offset, 4) for k in keys if k in item}}


def whole_input_loudness(chunks) -> float | None:
    """BS.1770 loudness of a long input from its chunks: their 400 ms block energies gated together (exact
    but for the few blocks that would straddle chunk boundaries)."""
    from ...enhance.loudness import gated_loudness, loudness_blocks

    blocks = [loudness_blocks(chunk.samples, chunk.sample_rate) for chunk in chunks]
    return gated_loudness(np.concatenate(blocks, axis=1)) if blocks else None


def spans_for(per: str, audio: Audio, annotations: Any) -> list[tuple[float, float]]:
    """The spans a per-'file' or per-'segment' stage works on (the whole file when there are no segments)."""
    spans = [(s.start, s.end) for s in annotations.segments] if per == "segment" else []
    return spans or [(0.0, audio.duration)]


def rows_merged(parts: list[tuple[float, Any]]) -> dict[str, Any]:
    """Merge results shaped ``{..., "rows": [{start, end, ...}]}``: rows in input time, the rest from the first."""
    first = dict(parts[0][1])
    first["rows"] = [shifted(row, offset) for offset, result in parts for row in result["rows"]]
    return first


def output_name(annotations: Any, suffix: str = "") -> str:
    """The file name (without extension) of an input's audio output: a long input's chunks as numbered parts,
    which :func:`joined_audio_outputs` joins into the name without ``.partNNNN``."""
    name = annotations.id if annotations.chunk is None else f"{annotations.id}.part{annotations.chunk:04d}"
    return name + suffix


def write_audio_output(stage: Stage, out: Audio, annotations: Any, kind: str, report: dict[str, Any]) -> None:
    """Write a stage's output audio to ``OUT/kind/`` when its ``write`` option is on (a long input's chunks
    as numbered parts), and record the stage's ``report`` as its result."""
    if stage.config["write"]:
        path = save_audio(out, annotations.output_path(kind, output_name(annotations)), stage.config["format"])
        if path:
            report["file"] = path
            annotations.add_file(stage.name, path)
    annotations.results[stage.name] = report


def joined_audio_outputs(reports: list[dict[str, Any]], fmt: str) -> dict[str, Any]:
    """The chunks' audio parts joined into one file (``file``), or listed (``files``) for codecs
    libsndfile cannot append to; nothing when no part was written."""
    files = [r.get("file") for r in reports]
    if files and all(files) and fmt in ("flac", "wav", "ogg"):
        return {"file": _join(files, files[0].replace(".part0000", ""))}
    return {"files": files} if files and all(files) else {}


def _join(parts: list[str], target: str) -> str:
    """Concatenate audio files of one format into ``target`` block by block (bounded memory), then remove
    the parts; written to a temporary name and renamed."""
    import os

    import soundfile as sf

    first = sf.info(parts[0])
    temp = f"{target}.{os.getpid()}.tmp"
    with sf.SoundFile(temp, "w", first.samplerate, first.channels, first.subtype, format=first.format) as out:
        for part in parts:
            for block in sf.blocks(part, blocksize=1 << 16, dtype="float32", always_2d=True):
                out.write(block)
    os.replace(temp, target)
    for part in parts:
        os.remove(part)
    return target
