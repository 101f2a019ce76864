"""Run stages over many recordings: ``run(inputs, steps, output)``.

Outputs in ``output``: ``results/<id>.json`` per input (written atomically), ``manifest.jsonl`` (one line
per finished input: status, seconds, error; appended and fsynced, read by ``resume``), ``run.log``,
files the stages write (``segments/``, ``enhanced/``, ``features/``), ``features.parquet`` and
``summary.json`` at the end."""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AudioflowError, ParameterError
from ..io.listing import AUDIO_EXTENSIONS
from ..models import ModelManager
from .files import input_rows, json_default, process_file
from .output import ManifestWriter, Output, read_manifest
from .stage import Stage, build_steps

log = logging.getLogger("audioflow.pipeline")

_WORKER_BASE_BYTES = 400 << 20  # a worker with torch and the stages imported (measured ~350 MB)
_WORK_FACTOR = 12  # working copies of a decoded file while stages run (STFTs, filters, resamples)


@dataclass
class RunSummary:
    """What a run did. ``stage_seconds``: CPU-side wall time per stage, summed over files."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    workers: int = 0
    device: str = "cpu"
    engine: str = "local"
    output: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def x_realtime(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "skipped": self.skipped,
                "audio_hours": round(self.audio_seconds / 3600, 4), "wall_seconds": round(self.wall_seconds, 3),
                "x_realtime": round(self.x_realtime, 2),
                "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
                "workers": self.workers, "device": self.device, "engine": self.engine, "output": self.output,
                "errors": [{"input": i, "error": e} for i, e in self.errors[:100]]}


def recover_results(out: Output, rows: Sequence[dict[str, Any]], done: dict[str, dict[str, Any]]
                    ) -> list[dict[str, Any]]:
    """Inputs whose result JSON is in ``out`` but whose manifest entry is not (a run killed between the two:
    the result is published last, after its files, so it marks a finished input). They are added to ``done``
    and returned as manifest entries, so that a resumed run neither loses nor repeats them."""
    present = set(out.list("results", ".json"))
    entries = []
    for row in rows:
        name = f"results/{row['id']}.json"
        if row["path"] in done or name not in present:
            continue
        try:
            document = json.loads(out.read_text(name) or "")
        except ValueError:  # not ours, or torn by a local run killed mid-write (never, renamed into place)
            continue
        if document.get("source") != row["path"]:
            continue
        entry = {"input": row["path"], "id": row["id"], "result": name, "status": "ok",
                 "audio_seconds": document.get("audio", {}).get("duration", 0.0), "recovered": True,
                 "steps": ",".join(document.get("steps", []))}
        done[row["path"]] = entry
        entries.append(entry)
    if entries:
        log.info("resume: %d inputs finished by an earlier run that was stopped before recording them", len(entries))
    return entries


def check_same_steps(done: dict[str, dict[str, Any]], stages: Sequence[Stage], out: str) -> None:
    """Refuse to resume a run whose inputs were done with other steps or options: skipping them would leave
    their results as the old steps made them under a summary of the new ones."""
    asked = steps_text(stages)
    earlier = {entry.get("steps") for entry in done.values() if entry.get("steps")}
    different = sorted(e for e in earlier if e != asked)
    if different:
        raise ParameterError(f"--resume: {out} holds inputs done with steps {different[0]!r}, not {asked!r}; "
                             "resume with the same steps, or write to another output folder (without --resume "
                             "every input is processed again)", out)


def steps_text(stages: Sequence[Stage]) -> str:
    """The steps as the step language writes them, every option given (defaults included), so two runs
    compare equal exactly when their stages were configured alike."""
    return ",".join(stage.describe() for stage in stages)


def auto_workers(rows: Sequence[dict[str, Any]], storage_options: dict[str, Any] | None = None) -> int:
    """Workers from the cores and the memory: each needs its imports plus working room for the largest
    input (its decoded size, from the headers of a sample of inputs, times the stages' working copies)."""
    from ..io import info
    from ..runtime import total_memory_bytes, usable_cores

    largest = 0
    for row in rows[:: max(1, len(rows) // 64)][:64]:
        try:
            i = info(row["path"], storage_options=storage_options)
            largest = max(largest, i.frames * i.channels * 4)
        except AudioflowError:
            continue
    available = _available_memory() or total_memory_bytes() // 2
    per_worker = _WORKER_BASE_BYTES + largest * _WORK_FACTOR
    return max(1, min(usable_cores(), len(rows), int(available * 0.8 // per_worker)))


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


_STAGES: list[Stage] = []
_MODELS: ModelManager | None = None


def _init_worker(stages: Sequence[Stage], device: str) -> None:
    global _MODELS
    _MODELS = ModelManager(device)
    _STAGES[:] = list(stages)
    for stage in _STAGES:
        stage.setup(_MODELS)


def _setup_worker(stages: Sequence[Stage], device: str) -> Callable[[], None]:
    return functools.partial(_init_worker, list(stages), device)  # a partial pickles, for spawned workers




def _work(task: tuple[dict[str, Any], Output | None, dict[str, Any] | None, float | None]) -> dict[str, Any]:
    row, output, storage_options, chunk_duration = task
    return process_file(row, _STAGES, output, storage_options, chunk_duration)


def run(inputs: Any, steps: str | Sequence[str] | Sequence[Stage], output: str | os.PathLike[str],
        engine: str = "local", workers: int | str = "auto", device: str = "auto", timeout: float | None = 7200.0,
        resume: bool = False, retry_failed: bool = False, progress: bool | Callable[[dict[str, Any]], None] = False,
        extensions: tuple[str, ...] = AUDIO_EXTENSIONS, storage_options: dict[str, Any] | None = None,
        ray_address: str | None = None, chunk_duration: float | None = 600.0) -> RunSummary:
    """Process every input with ``steps`` into ``output``.

    Args:
        inputs: files, folders (recursive, by ``extensions``), CSV/JSONL manifests, URLs, or a list of them.
        steps: ``"split:method=silence,max=30,enhance:lufs=-23"``, a list of such strings, or stages.
        output: the output folder (made if missing).
        engine: 'local' (a process pool) or 'ray' (Ray Data actors; ``ray_address`` joins a cluster, else
            a local Ray instance is started). On Ray a crashed actor is restarted by Ray and ``timeout``
            is not enforced per input.
        workers: processes, or 'auto' (from cores and memory, see :func:`auto_workers`).
        device: 'auto', 'cpu' or 'cuda' for stages that hold models.
        timeout: seconds one input may take before its worker is killed and the input marked failed.
        resume: skip inputs the output's manifest lists as done (ok, and failed unless ``retry_failed``).
        progress: show a progress bar (True), or a callable given each manifest entry.
        chunk_duration: inputs longer than this many seconds are streamed and processed in chunks of it
            (memory bounded by a chunk; each stage merges its chunks' results); None: whole inputs.
    """
    if chunk_duration is not None and chunk_duration <= 0:
        raise ParameterError(f"chunk_duration must be positive seconds, got {chunk_duration}")
    stages = build_steps(steps)  # every name and option checked before anything else
    if engine not in ("local", "ray"):
        raise ParameterError(f"engine must be 'local' or 'ray', got {engine!r}")
    out = Output(output, storage_options)
    rows = input_rows(inputs, extensions, storage_options)
    if not rows:
        raise ParameterError(f"no audio found in {inputs!r}")
    done = read_manifest(out) if resume else {}
    recovered = recover_results(out, rows, done) if resume else []
    if done:
        check_same_steps(done, stages, out.location)
    out.prepare()
    from .. import runtime

    # on Ray each actor resolves 'auto' where it runs (the driver may have no GPU while the workers do)
    device_name = "auto" if engine == "ray" and str(device) == "auto" else runtime.device_name(device)
    summary = RunSummary(device=device_name, engine=engine, output=out.location)
    todo = []
    for row in rows:
        previous = done.get(row["path"])
        if previous is not None and (previous["status"] == "ok" or not retry_failed):
            summary.skipped += 1
        else:
            todo.append(row)
    log_path = out.path("run.log") if not out.remote else tempfile.mkstemp(prefix="audioflow-run-", suffix=".log")[1]
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("audioflow")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    started = time.perf_counter()
    try:
        log.info("run: %d inputs (%d skipped as done), steps %s, engine %s, output %s", len(rows), summary.skipped,
                 " ".join(s.describe() for s in stages), engine, out.location)
        entries: Any = []
        if todo and engine == "ray":
            from .ray_engine import run_ray

            entries = run_ray(todo, stages, out, workers, device_name, storage_options, ray_address, chunk_duration)
            summary.workers = 0 if workers == "auto" else int(workers)
        elif todo:
            summary.workers = auto_workers(todo, storage_options) if workers == "auto" else int(workers)
            entries = _run_local(todo, stages, out, summary.workers, device_name, timeout, storage_options,
                                 chunk_duration)
        if todo or recovered:
            _consume(entries, out, summary, progress, len(todo), steps_text(stages), recovered)
        if any(stage.name == "features" for stage in stages):  # nothing to gather otherwise
            write_features_table(out)
    finally:
        summary.wall_seconds = time.perf_counter() - started
        out.write_text("summary.json", json.dumps(summary.to_dict(), indent=1, default=json_default))
        log.info("run: %d ok, %d failed, %d skipped, %.2f h of audio at %.1fx realtime", summary.ok,
                 summary.failed, summary.skipped, summary.audio_seconds / 3600, summary.x_realtime)
        root.removeHandler(handler)
        handler.close()
        if out.remote:  # the log joins the earlier runs' log in the bucket (objects cannot be appended to)
            with open(log_path) as f:
                out.write_text("run.log", (out.read_text("run.log") or "") + f.read())
            os.remove(log_path)
    return summary


def _consume(entries: Any, out: Output, summary: RunSummary, progress: Any, total: int, steps: str,
             recovered: Sequence[dict[str, Any]] = ()) -> None:
    bar = None
    if progress is True:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn())
        bar.start()
        task = bar.add_task("processing", total=total)
    manifest = ManifestWriter(out)
    try:
        for entry in recovered:  # done by a run killed before its manifest said so: recorded now, not redone
            manifest.write(json.dumps(entry, default=json_default))
        for entry in entries:
            collected = entry.pop("collected", None)
            if collected:  # files an actor on another node sent back: written before the entry says "ok"
                out.write_collected(collected)
            entry["steps"] = steps
            manifest.write(json.dumps(entry, default=json_default))  # a killed run keeps what was written
            if entry["status"] == "ok":
                summary.ok += 1
                summary.audio_seconds += entry.get("audio_seconds", 0.0)
            else:
                summary.failed += 1
                summary.errors.append((entry["input"], entry.get("error", "")))
                log.warning("%s failed: %s", entry["input"], entry.get("error"))
            for name, seconds in entry.get("stage_seconds", {}).items():
                summary.stage_seconds[name] = summary.stage_seconds.get(name, 0.0) + seconds
            if bar is not None:
                bar.advance(task)
            elif callable(progress):
                progress(entry)
    finally:
        manifest.close()
        if bar is not None:
            bar.stop()


def _run_local(rows: list[dict[str, Any]], stages: list[Stage], out: Output, workers: int, device: str,
               timeout: float | None, storage_options: dict[str, Any] | None, chunk_duration: float | None):
    """Manifest entries as inputs finish, from a pool of ``workers`` forked processes (one input each at a
    time); a crashed or hung worker is replaced and its input marked failed."""
    from ..runtime import ProcessPool, worker_start_method

    for stage in stages:
        stage.prepare_parent()
    pool = ProcessPool(_work, workers, threads_per_worker=1, init=_setup_worker(stages, device), max_deaths=1,
                       start_method=worker_start_method())
    try:
        pending = list(enumerate(rows))
        in_flight: dict[int, dict[str, Any]] = {}
        while pending or in_flight:
            while pending and len(in_flight) < pool.num_workers:
                number, row = pending.pop(0)
                in_flight[number] = row
                pool.submit(number, (row, out, storage_options, chunk_duration))
            number, ok, value = pool.get(task_timeout=timeout)
            row = in_flight.pop(number)
            yield value if ok else {"input": row["path"], "id": row["id"], "status": "failed", "error": value,
                                    "audio_seconds": 0.0, "seconds": None}
    finally:
        pool.close()


def write_features_table(out: Output | str) -> str | None:
    """``features.parquet``: one row per file or segment with the features stage's mean and std vectors,
    gathered from every result JSON in ``out/results`` (so a resumed run's table is whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = out if isinstance(out, Output) else Output(out)
    records = []
    names = out.list("results", ".json")
    texts = (text for start in range(0, len(names), 1000)  # a thousand GETs at a time, concurrently when remote
             for text in out.read_texts(names[start:start + 1000]).values())
    for text in texts:
        try:
            document = json.loads(text)
        except ValueError:
            continue
        features = document.get("results", {}).get("features")
        if not features:
            continue
        for row in features["rows"]:
            records.append({"id": document["id"], "source": document["source"], "feature": features["feature"],
                            "start": row["start"], "end": row["end"], "mean": row["mean"], "std": row["std"]})
    if not records:
        return None
    handle, temp = tempfile.mkstemp(prefix="audioflow-features-", suffix=".parquet",
                                    dir=None if out.remote else out.location)
    os.close(handle)
    try:
        pq.write_table(pa.Table.from_pylist(records), temp)
        out.write_file("features.parquet", temp)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return out.path("features.parquet")


def dedupe(inputs: Any, output: str | os.PathLike[str], threshold: float = 0.85, near: float = 0.65,
           workers: int | str = "auto", progress: bool = False) -> tuple[list[dict[str, Any]], RunSummary]:
    """Duplicate and near-duplicate recordings among ``inputs``: fingerprints by a ``fingerprint`` run into
    ``output`` (resumed: a second dedupe of a grown folder fingerprints only the new files), then
    :func:`audioflow.music.find_duplicates`. Pairs name the inputs' paths."""
    from ..music.fingerprint import find_duplicates

    summary = run(inputs, "fingerprint", output, workers=workers, resume=True, progress=progress)
    prints, sources = {}, {}
    for path in sorted((Path(output) / "results").glob("*.json")):
        document = json.loads(path.read_text())
        raw = document.get("results", {}).get("fingerprint", {}).get("raw")
        if raw:
            prints[document["id"]], sources[document["id"]] = raw, document["source"]
    pairs = find_duplicates(prints, threshold, near)
    return [{**p, "a": sources[p["a"]], "b": sources[p["b"]]} for p in pairs], summary
