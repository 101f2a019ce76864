"""The parallel, atomic writer of packed datasets."""

from __future__ import annotations

import contextlib
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
from ..io.atomic import write_bytes_atomic
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
          resume: bool = False, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pack ``source`` into a dataset directory at ``path``.

    Args:
        source: a folder (recursive, by audio extension), a list of paths, a CSV/JSONL manifest
            (columns become row keys; ``path`` is the audio), or an indexable dataset of dicts.
        path: the dataset directory to create: a local folder or an fsspec URL (``s3://bucket/train.afds``).
        fields: ``{name: Field}``; audio fields read the row's ``name`` key, else its ``path``.
        shard_size: rows per shard file.
        num_workers: encoding processes ('auto': the machine's cores; 0: in this process).
        overwrite: replace an existing dataset (atomically: the old one stays readable until the new
            one is complete).
        progress: show a rich progress bar (files, audio hours, rate).
        resume: continue an interrupted write of the same source and fields from its last complete
            shard (kept in the hidden ``.{name}.partial`` folder beside a local ``path``, in ``path`` itself
            for a URL) instead of starting over.
        storage_options: fsspec options for a URL ``path`` and for remote sources.

    Returns:
        The manifest (also written to ``path/manifest.json``): rows, shards, audio seconds, and the
        rows skipped with their reason.

    A dataset at a URL is written shard by shard (one PUT each, straight from memory) and its manifest last,
    so readers see the old dataset or the new one, never a mix; :func:`audioflow.ray.write_dataset` writes
    the same format from a Ray cluster.
    """
    target = Target.at(path, storage_options)
    target.check_new(overwrite)
    bound = bind_fields(fields)
    rows, described = list_rows(source, storage_options=storage_options, folder_labels=True)
    total = len(rows)
    workers = (os.cpu_count() or 1) if num_workers == "auto" else int(num_workers)
    schema = dataset_schema(bound)
    identity = dataset_identity(bound, described, total, shard_size, engine="local")
    state = target.begin(identity, resume)
    state.setdefault("next_row", 0)
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
        shards.append(target.put_shard(number, shard_bytes(schema, columns)))
        if progress_state is not None:  # what a resumed write may skip: rows up to here are in shards
            target.save_progress({**state, **progress_state, "shards": shards})
        stats["shard_write_seconds"] += time.perf_counter() - t0

    shard_thread = ThreadPoolExecutor(1)
    pending = []
    try:
        with Progress(progress, total, described, done=state["next_row"]) as bar:
            for index, encoded, error in _encoded(rows, bound, workers, state["next_row"], stats):
                if encoded is None:
                    skipped.append(skipped_row(rows[index], index, error))
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
        manifest = finish(target, identity, shards, skipped, seconds, described, total,
                          time.perf_counter() - start, stats, workers)
    except AudioflowError:
        shard_thread.shutdown(wait=True)
        target.discard()
        raise
    finally:
        shard_thread.shutdown(wait=True)
    # any other interruption (Ctrl-C, a crash) keeps the complete shards for resume=True
    return manifest


def bind_fields(fields: dict[str, Field]) -> dict[str, Field]:
    if not fields:
        raise ParameterError("give at least one field")
    return {name: field.bind(name) for name, field in fields.items()}


def dataset_identity(fields: dict[str, Field], described: str, total: int, shard_size: int,
                     engine: str) -> dict[str, Any]:
    """What an interrupted write must share with this one to be resumed (the engines lay shards out
    differently: the local one fills each shard, Ray's map fixed row ranges)."""
    return {"fields": {n: f.to_spec() for n, f in fields.items()}, "source": described, "rows_total": total,
            "shard_size": shard_size, "engine": engine}


def finish(target: Target, identity: dict[str, Any], shards: list[dict[str, Any]], skipped: list[dict[str, str]],
           seconds: float, described: str, total: int, wall: float, stats: dict[str, float],
           workers: int) -> dict[str, Any]:
    """Write the manifest (last: only a complete dataset has one) and put the dataset in place."""
    if not shards and total:
        first = skipped[0]["reason"] if skipped else "no rows"
        raise StoreError(f"none of the {total} rows could be encoded (first: {first}); nothing written",
                         target.location)
    manifest = {
        "format": FORMAT, "version": VERSION, "fields": identity["fields"],
        "shards": shards, "rows": sum(s["rows"] for s in shards), "audio_seconds": round(seconds, 3),
        "skipped": skipped, "source": described, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "write_seconds": round(wall, 3),
        # the split: CPU seconds spent encoding (all workers) and wall seconds writing shards
        "encode_cpu_seconds": round(stats.get("encode_cpu_seconds", 0.0), 3),
        "shard_write_seconds": round(stats.get("shard_write_seconds", 0.0), 3), "workers": workers,
    }
    target.commit(manifest)
    return manifest


def skipped_row(row: Any, index: int, error: str) -> dict[str, str]:
    """The manifest's entry for a row that could not be encoded."""
    return {"source": _describe(row) if isinstance(row, Mapping) else str(row if isinstance(row, str) else index),
            "reason": error}


def dataset_schema(fields: dict[str, Field]) -> pa.Schema:
    columns = [c for f in fields.values() for c in f.columns()]
    meta = {b"audioflow.fields": json.dumps({n: f.to_spec() for n, f in fields.items()}).encode(),
            b"audioflow.version": str(VERSION).encode()}
    return pa.schema(columns, metadata=meta)


def encode_rows(rows: list[tuple[int, Mapping[str, Any]]], fields: dict[str, Field]) -> tuple[
        dict[str, list[Any]], list[tuple[int, str]], float, float]:
    """Encode ``(index, row)`` pairs in this process: the columns of the rows that encoded, the
    ``(index, reason)`` of those that did not, their audio seconds and the CPU seconds spent."""
    _init_worker(fields)
    result, cpu = _encode_chunk(rows)
    columns: dict[str, list[Any]] = {}
    failed, seconds = [], 0.0
    for index, encoded, error in result:
        if encoded is None:
            failed.append((index, error))
            continue
        seconds += encoded.seconds
        for name, value in encoded.columns.items():
            columns.setdefault(name, []).append(value)
    return columns, failed, seconds, cpu


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


def shard_bytes(schema: pa.Schema, columns: dict[str, list[Any]]) -> bytes:
    """One shard: an Arrow IPC file of one record batch."""
    batch = pa.RecordBatch.from_pydict(columns, schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def shard_rows(data: bytes) -> int:
    return pa.ipc.open_file(pa.BufferReader(data)).get_batch(0).num_rows


class Target:
    """Where a dataset is written. A local directory is built in a hidden folder beside it and swapped in
    whole; a URL (object storage has no rename) gets its shards under a fresh ``shards-<token>/`` prefix, one
    PUT each, and its manifest last, which replaces the old dataset in one PUT; old shards go after.

    Picklable: Ray tasks write shards to a URL target themselves."""

    location: str
    remote: bool

    @staticmethod
    def at(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> Target:
        text = os.fspath(path)
        if "://" in text and not text.startswith("file://"):
            return _RemoteTarget(text, storage_options or {})
        return _LocalTarget(Path(text.removeprefix("file://")))

    def check_new(self, overwrite: bool) -> None:
        if self.exists() and not overwrite:
            raise StoreError("already exists (pass overwrite=True to replace it)", self.location)

    def begin(self, identity: dict[str, Any], resume: bool) -> dict[str, Any]:
        """The state of an interrupted write of the same identity (``resume``), or a fresh one."""
        state = self._resumable(identity) if resume else None
        if state is None:
            state = {**identity, "shards": [], "skipped": [], "audio_seconds": 0.0, **self._fresh()}
        self._resume_from(state)
        return state

    def _resumable(self, identity: dict[str, Any]) -> dict[str, Any] | None:
        try:
            state = json.loads(self._read_progress())
        except (OSError, ValueError):
            return None
        if any(state.get(k) != v for k, v in identity.items()):
            return None
        done = state["shards"] + [r["shard"] for r in state.get("ranges", {}).values() if r["shard"]]
        return state if all(self._has(shard["file"]) for shard in done) else None

    def put_shard(self, number: int, data: bytes) -> dict[str, Any]:
        """Write shard ``number``; its manifest entry."""
        name = self.shard_name(number)
        self._put(name, data)
        return {"file": name, "rows": shard_rows(data), "bytes": len(data)}

    # per kind of target
    def exists(self) -> bool: ...
    def shard_name(self, number: int) -> str: ...
    def save_progress(self, state: dict[str, Any]) -> None: ...
    def commit(self, manifest: dict[str, Any]) -> None: ...
    def discard(self) -> None: ...
    def _fresh(self) -> dict[str, Any]: ...
    def _resume_from(self, state: dict[str, Any]) -> None: ...
    def _read_progress(self) -> str: ...
    def _has(self, name: str) -> bool: ...
    def _put(self, name: str, data: bytes) -> None: ...


class _LocalTarget(Target):
    remote = False

    def __init__(self, target: Path) -> None:
        self.target, self.location = target, str(target)
        self.tmp = target.parent / f".{target.name}.partial"

    def exists(self) -> bool:
        return self.target.exists()

    def shard_name(self, number: int) -> str:
        return f"shard-{number:05d}.arrow"

    def _fresh(self) -> dict[str, Any]:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return {}

    def _resume_from(self, state: dict[str, Any]) -> None:
        pass

    def _read_progress(self) -> str:
        return (self.tmp / "progress.json").read_text()

    def _has(self, name: str) -> bool:
        return (self.tmp / name).exists()

    def _put(self, name: str, data: bytes) -> None:
        write_bytes_atomic(self.tmp / name, data)

    def save_progress(self, state: dict[str, Any]) -> None:
        write_bytes_atomic(self.tmp / "progress.json", json.dumps(state, indent=1).encode())

    def commit(self, manifest: dict[str, Any]) -> None:
        (self.tmp / "progress.json").unlink(missing_ok=True)
        write_bytes_atomic(self.tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
        _swap_in(self.tmp, self.target)

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _RemoteTarget(Target):
    remote = True
    PROGRESS = ".progress.json"

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        self.location, self.storage_options = url.rstrip("/"), storage_options
        self.token = ""
        self._fs: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None}  # a filesystem object is made again where it is used

    @property
    def fs(self) -> Any:
        return self._connect()[0]

    def _connect(self) -> tuple[Any, str]:
        if self._fs is None:
            import fsspec

            self._fs, self._root = fsspec.core.url_to_fs(self.location, **self.storage_options)
        return self._fs, self._root

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        from ..io.source import remote_error

        try:
            return fn(*args)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise remote_error(e, f"{self.location} ({what})") from None

    def _path(self, name: str) -> str:
        root = self._connect()[1]
        return f"{root}/{name}" if name else root

    def exists(self) -> bool:
        return self._call("checking for a dataset", self.fs.exists, self._path("manifest.json"))

    def shard_name(self, number: int) -> str:
        return f"shards-{self.token}/shard-{number:05d}.arrow"

    def _fresh(self) -> dict[str, Any]:
        import uuid

        return {"token": uuid.uuid4().hex[:12]}

    def _resume_from(self, state: dict[str, Any]) -> None:
        self.token = state["token"]

    def _read_progress(self) -> str:
        return self._call("reading progress", self.fs.cat_file, self._path(self.PROGRESS)).decode()

    def _has(self, name: str) -> bool:
        return self._call("checking a shard", self.fs.exists, self._path(name))

    def _put(self, name: str, data: bytes) -> None:
        self._call(f"writing {name}", self.fs.pipe_file, self._path(name), data)

    def save_progress(self, state: dict[str, Any]) -> None:
        self._put(self.PROGRESS, json.dumps(state, indent=1).encode())

    def commit(self, manifest: dict[str, Any]) -> None:
        self._put("manifest.json", json.dumps(manifest, indent=1).encode())  # the switch: one PUT
        keep = f"shards-{self.token}"
        for entry in self._call("listing", self.fs.ls, self._path(""), False):
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            if name == self.PROGRESS or (name.startswith("shards-") and name != keep):
                self._call(f"removing {name}", self.fs.rm, self._path(name), True)

    def discard(self) -> None:
        for name in (f"shards-{self.token}", self.PROGRESS):
            with contextlib.suppress(FileNotFoundError):
                self._call(f"removing {name}", self.fs.rm, self._path(name), True)


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the finished dataset in place; an old one is replaced only once the new one is complete."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


class Progress:
    """A rich progress bar of files, audio hours and rate (nothing when disabled)."""

    def __init__(self, enabled: bool, total: int, described: str, done: int = 0) -> None:
        self.enabled, self.total, self.described, self.done = enabled, total, described, done
        self.bar = self.task = None
        self.seconds = 0.0

    def __enter__(self) -> Progress:
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

    def advance(self, seconds_so_far: float, rows: int = 1) -> None:
        if self.bar is None:
            return
        if seconds_so_far:
            self.seconds = seconds_so_far
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(self.task, advance=rows, hours=self.seconds / 3600,
                        rate=f"{self.seconds / elapsed:,.0f}x realtime")

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
