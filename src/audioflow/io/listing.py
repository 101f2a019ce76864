"""What a collection of audio is made of: the files of a folder (local or remote), a CSV/JSONL
manifest, or a list of paths, as rows (dicts with at least ``path``). Shared by the dataset writer,
the training loader and the batch pipeline."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ParameterError, SourceError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".aifc")
MANIFEST_EXTENSIONS = (".csv", ".jsonl", ".json")
# manifest columns that hold the audio's location, in the order they are looked for (NeMo uses
# audio_filepath, Hugging Face exports use audio or file)
PATH_COLUMNS = ("path", "audio", "audio_filepath", "file", "filename")


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def list_audio_files(folder: str | os.PathLike[str], extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
                     storage_options: dict[str, Any] | None = None) -> list[str]:
    """Audio files under ``folder`` (recursive), sorted, chosen by extension (case-insensitive).
    ``folder`` may be an fsspec URL (``s3://bucket/prefix``)."""
    exts = tuple(e.lower() for e in extensions)
    folder = os.fspath(folder)
    if is_url(folder):
        import fsspec

        from .source import remote_error

        protocol = folder.split("://", 1)[0]
        try:
            fs, root = fsspec.core.url_to_fs(folder, **(storage_options or {}))
            found = fs.find(root)
        except ImportError as e:
            raise SourceError(f"no filesystem for this URL scheme ({e}); install audioflow[remote]", folder) from None
        except Exception as e:  # the backend's own error types: one line naming the URL and the cause
            raise remote_error(e, folder, "list") from None
        return sorted(f"{protocol}://{f}" for f in found if f.lower().endswith(exts))
    return sorted(str(f) for f in Path(folder).rglob("*") if f.suffix.lower() in exts and f.is_file())


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a CSV (header line) or JSONL manifest. The audio column (``path``, ``audio``,
    ``audio_filepath``, ``file`` or ``filename``) is returned as ``path``, resolved against the
    manifest's folder when relative; ``offset`` and ``duration`` (seconds) become floats."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"manifest {path} does not exist", str(path))
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        else:
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
    except (ValueError, UnicodeDecodeError) as e:
        raise ParameterError(f"manifest {path} is not valid {path.suffix[1:].upper()}: {e}", str(path)) from e
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ParameterError(f"manifest {path} row {number} is not an object", str(path))
        column = next((c for c in PATH_COLUMNS if isinstance(row.get(c), str) and row[c]), None)
        if column is None:
            raise ParameterError(f"manifest {path} row {number} has no audio column (one of {', '.join(PATH_COLUMNS)})",
                                 str(path))
        value = row[column]
        if not is_url(value) and not os.path.isabs(value):
            value = str(path.parent / value)
        row["path"] = value
        if column != "path" and column != "audio":
            del row[column]
        elif column == "audio":
            row["audio"] = value
        for key in ("offset", "duration"):
            if row.get(key) not in (None, ""):
                try:
                    row[key] = float(row[key])
                except (TypeError, ValueError) as e:
                    raise ParameterError(f"manifest {path} row {number}: {key} {row[key]!r} is not a number",
                                         str(path)) from e
            else:
                row.pop(key, None)
    return rows


def add_folder_labels(rows: list[dict[str, Any]], root: str) -> None:
    """Each file's first sub-folder under ``root`` as its ``label`` (``clips/dog/bark1.wav`` -> 'dog'), the
    layout of torchvision's ImageFolder and of audio-classification datasets. Files directly in ``root``
    get none, so the rows have a label column only when every file lies in a class folder."""
    prefix = root.rstrip("/") + "/"
    for row in rows:
        path = row["path"].replace(os.sep, "/")
        relative = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root).replace(os.sep, "/")
        parts = relative.split("/")
        if len(parts) > 1:
            row["label"] = parts[0]


def list_rows(source: Any, extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
              storage_options: dict[str, Any] | None = None, folder_labels: bool = False
              ) -> tuple[list[dict[str, Any]] | Any, str]:
    """Rows (dicts with ``path``) from a folder, a CSV/JSONL manifest or a list of paths/URLs; an
    indexable dataset is returned as is. Also a description for messages. ``folder_labels``: a folder's
    files get their class sub-folder as ``label`` (:func:`add_folder_labels`), as the loader and ``pack``
    read them."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.lower().endswith(MANIFEST_EXTENSIONS) and not is_url(text):
            return read_manifest(text), text
        if is_url(text) or Path(text).is_dir():
            rows = [{"path": f} for f in list_audio_files(text, extensions, storage_options)]
            if folder_labels:
                add_folder_labels(rows, text)
            return rows, text
        if Path(text).is_file():
            return [{"path": text}], text
        raise SourceError(f"{text} is not a folder, a manifest (.csv/.jsonl) or a file", text)
    if isinstance(source, (list, tuple)) and all(isinstance(s, (str, os.PathLike)) for s in source):
        return [{"path": os.fspath(s)} for s in source], f"{len(source)} paths"
    if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        return source, type(source).__name__
    raise ParameterError(f"cannot read audio from a {type(source).__name__}: give a folder, a manifest, "
                         "a list of paths or a dataset")
