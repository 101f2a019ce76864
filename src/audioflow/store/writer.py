"""The parallel, atomic writer of packed datasets."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import AudioflowError, ParameterError, StoreError
from ..io.listing import list_rows
from .fields import Encoded, Field

FORMAT = "audioflow-store"
VERSION = 1
_CHUNK_ROWS = 16  # rows per task sent to a worker process


_FIELDS: dict[str, Field] = {}


def _init_worker(fields: dict[str, Field]) -> None:
    # torch is imported only by the fields that need it (mel): one thread each, so that a forked worker never
    # enters the OpenMP pool its parent may have started
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _FIELDS.clear()
    _FIELDS.update(fields)


def _encode_chunk(rows: list[tuple[int, Mapping[str, Any]]]) -> tuple[list[tuple[int, Encoded | None, str]],
                                                                    float]:
    started = time.process_time()
    out = []
    for index, row in rows:
        try:
            row_out = Encoded()
            for name, field in _FIELDS.items():
                value = row.get(name, row.get("path") if field.audio else None)
                if value is None:
                    raise ParameterError(f"row has no value for field {name!r}")
                encoded = field.encode(value)
                row_out.columns.update(encoded.columns)
                row_out.seconds = max(row_out.seconds, encoded.seconds)
            out.append((index, row_out, ""))
        except AudioflowError as e:
            out.append((index, None, str(e)))
        except Exception as e:
            out.append((index, None, f"{_describe(row)}: {type(e).__name__}: {e}"))
    return out, time.process_time() - started


def _describe(row: Mapping[str, Any]) -> str:
    return str(row.get("path") or row.get("audio") or row.get("id") or "<row>")


def write(source: Any, path: str | os.PathLike[str], fields: dict[str, Field], shard_size: int = 1000,
          num_workers: int | str = "auto", overwrite: bool = False, progress: bool = True,
          resume: bool = False) -> dict[str, Any]:
    """Pack ``source`` into a dataset directory at ``path``.

    Args:
        source: a folder (recursive, by audio extension), a list of paths, a CSV/JSONL manifest
            (columns become row keys; ``path`` is the audio), or an indexable dataset of dicts.
        path: the dataset directory to create.
        fields: ``{name: Field}``; audio fields read the row's ``name`` key, else its ``path``.
        shard_size: rows per shard file.
        num_workers: encoding processes ('auto': the machine's cores; 0: in this process).
        overwrite: replace an existing dataset (atomically: the old one stays readable until the new
            one is complete).
        progress: show a rich progress bar (files, audio hours, rate).
        resume: continue an interrupted write of the same source and fields from its last complete
            shard (kept in the hidden ``.{name}.partial`` folder beside ``path``) instead of starting over.

    Returns:
        The manifest (also written to ``path/manifest.json``): rows, shards, audio seconds, and the
        rows skipped with their reason.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise StoreError("already exists (pass overwrite=True to replace it)", str(target))
    if not fields:
        raise ParameterError("give at least one field")
    bound = {name: field.bind(name) for name, field in fields.items()}
    rows, described = list_rows(source)
    total = len(rows)
    workers = (os.cpu_count() or 1) if num_workers == "auto" else int(num_workers)
    tmp = target.parent / f".{target.name}.partial"
    schema = _schema(bound)
    identity = {"fields": {n: f.to_spec() for n, f in bound.items()}, "source": described, "rows_total": total,
                "shard_size": shard_size}
    state = _resume_state(tmp, identity) if resume else None
    if state is None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        state = {**identity, "shards": [], "skipped": [], "audio_seconds": 0.0, "next_row": 0}
    shards: list[dict[str, Any]] = state["shards"]
    skipped: list[dict[str, str]] = list(state["skipped"])
    buffer: dict[str, list[Any]] = {f.name: [] for f in schema}
    seconds = float(state["audio_seconds"])
    start = time.perf_counter()
    stats: dict[str, float] = {"shard_write_seconds": 0.0}
    submitted = len(shards)

    def flush(columns: dict[str, list[Any]], number: int, progress_state: dict[str, Any] | None) -> None:
        # on the shard thread, in submission order: Arrow conversion and file I/O overlap the encoding
        t0 = time.perf_counter()
        shards.append(_write_shard(tmp, number, schema, columns))
        if progress_state is not None:  # what a resumed write may skip: rows up to here are in shards
            _write_json(tmp / "progress.json", {**identity, **progress_state, "shards": shards})
        stats["shard_write_seconds"] += time.perf_counter() - t0

    shard_thread = ThreadPoolExecutor(1)
    pending = []
    try:
        with _Progress(progress, total, described, done=state["next_row"]) as bar:
            for index, encoded, error in _encoded(rows, bound, workers, state["next_row"], stats):
                if encoded is None:
                    skipped.append({"source": _describe(rows[index]) if isinstance(rows[index], Mapping)
                                    else str(index), "reason": error})
                    bar.advance(0.0)
                    continue
                seconds += encoded.seconds
                for name in buffer:
                    buffer[name].append(encoded.columns[name])
                bar.advance(seconds)
                if len(buffer[schema[0].name]) >= shard_size:
                    snapshot = {"skipped": list(skipped), "audio_seconds": seconds, "next_row": index + 1}
                    pending.append(shard_thread.submit(flush, buffer, submitted, snapshot))
                    submitted += 1
                    buffer = {f.name: [] for f in schema}
                    while len(pending) > 2:  # at most two shards in memory waiting for the disk
                        pending.pop(0).result()
                    for future in [f for f in pending if f.done()]:
                        pending.remove(future)
                        future.result()  # a failed shard write stops the pack now
            if buffer[schema[0].name]:
                pending.append(shard_thread.submit(flush, buffer, submitted, None))
            for future in pending:
                future.result()
        if not shards and total:
            first = skipped[0]["reason"] if skipped else "no rows"
            raise StoreError(f"none of the {total} rows could be encoded (first: {first}); nothing written",
                             str(target))
        manifest = {
            "format": FORMAT, "version": VERSION, "fields": identity["fields"],
            "shards": shards, "rows": sum(s["rows"] for s in shards), "audio_seconds": round(seconds, 3),
            "skipped": skipped, "source": described, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "write_seconds": round(time.perf_counter() - start, 3),
            # the split: CPU seconds spent encoding (all workers) and wall seconds writing shards
            "encode_cpu_seconds": round(stats["encode_cpu_seconds"], 3),
            "shard_write_seconds": round(stats["shard_write_seconds"], 3), "workers": workers,
        }
        (tmp / "progress.json").unlink(missing_ok=True)
        _write_json(tmp / "manifest.json", manifest)  # the manifest last: only a complete dataset has one
        _swap_in(tmp, target)
    except AudioflowError:
        shard_thread.shutdown(wait=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shard_thread.shutdown(wait=True)
    # any other interruption (Ctrl-C, a crash) keeps the complete shards for resume=True
    return manifest


def _resume_state(tmp: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The progress of an interrupted write of the same source and fields, or None."""
    try:
        state = json.loads((tmp / "progress.json").read_text())
    except (OSError, ValueError):
        return None
    if any(state.get(k) != v for k, v in identity.items()):
        return None
    if not all((tmp / shard["file"]).exists() for shard in state["shards"]):
        return None
    return state


def _schema(fields: dict[str, Field]) -> pa.Schema:
    columns = [c for f in fields.values() for c in f.columns()]
    meta = {b"audioflow.fields": json.dumps({n: f.to_spec() for n, f in fields.items()}).encode(),
            b"audioflow.version": str(VERSION).encode()}
    return pa.schema(columns, metadata=meta)


def _encoded(rows: Any, fields: dict[str, Field], workers: int, first: int = 0,
             stats: dict[str, float] | None = None) -> Iterator[tuple[int, dict | None, str]]:
    """Encoded rows in order; ``stats["encode_cpu_seconds"]`` sums the CPU time spent encoding."""
    stats = {} if stats is None else stats
    stats.setdefault("encode_cpu_seconds", 0.0)
    chunks = _chunks(rows, first)
    if workers <= 1:
        _init_worker(fields)
        for chunk in chunks:
            result, cpu = _encode_chunk(chunk)
            stats["encode_cpu_seconds"] += cpu
            yield from result
        return
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    from ..runtime import spawn_guard_hint, worker_start_method

    method = worker_start_method()  # fork (one torch thread per worker), as the loader and the pipeline
    context = multiprocessing.get_context(method)
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(fields,)) as pool:
            for result, cpu in pool.map(_encode_chunk, chunks):
                stats["encode_cpu_seconds"] += cpu
                yield from result
    except BrokenProcessPool as e:
        hint = spawn_guard_hint() if method == "spawn" else ""
        raise StoreError(f"an encoding worker process died ({e}); nothing was written{hint}") from None


def _chunks(rows: Any, first: int = 0) -> Iterable[list[tuple[int, Mapping[str, Any]]]]:
    chunk = []
    for i in range(first, len(rows)):
        row = rows[i]
        chunk.append((i, row if isinstance(row, Mapping) else {"path": row}))
        if len(chunk) == _CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_shard(directory: Path, number: int, schema: pa.Schema, buffer: dict[str, list[Any]]) -> dict[str, Any]:
    name = f"shard-{number:05d}.arrow"
    batch = pa.RecordBatch.from_pydict(buffer, schema=schema)
    part = directory / f".{name}.part"
    with pa.OSFile(str(part), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_batch(batch)
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, directory / name)
    rows = batch.num_rows
    return {"file": name, "rows": rows, "bytes": (directory / name).stat().st_size}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    part = path.with_name(f".{path.name}.part")
    with open(part, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the finished dataset in place; an old one is replaced only once the new one is complete."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


class _Progress:
    """A rich progress bar of files, audio hours and rate (nothing when disabled)."""

    def __init__(self, enabled: bool, total: int, described: str, done: int = 0) -> None:
        self.enabled, self.total, self.described, self.done = enabled, total, described, done
        self.bar = self.task = None
        self.seconds = 0.0

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("packing {task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[hours]:.2f} h audio"), TextColumn("{task.fields[rate]}"),
                                TimeRemainingColumn(), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.described, total=self.total, completed=self.done, hours=0.0,
                                          rate="")
            self.start = time.perf_counter()
        return self

    def advance(self, seconds_so_far: float) -> None:
        if self.bar is None:
            return
        if seconds_so_far:
            self.seconds = seconds_so_far
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(self.task, advance=1, hours=self.seconds / 3600,
                        rate=f"{self.seconds / elapsed:,.0f}x realtime")

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
