"""audioflow's stages as Ray Data building blocks, for those who assemble their own Ray pipelines::

    import ray
    from audioflow.ray import read_audio, Enhance, Features

    ds = read_audio("s3://bucket/calls/", sr=16000)                       # path, id, audio, sample_rate
    ds = ds.map_batches(Enhance, fn_constructor_kwargs={"lufs": -23}, concurrency=4, batch_size=8)
    ds = ds.map_batches(Features, fn_constructor_kwargs={"name": "mfcc", "n_mfcc": 40}, concurrency=4)
    ds.write_parquet("s3://bucket/features/")

Rows carry ``audio`` (float32 ``[frames]`` or ``[channels, frames]``) and ``sample_rate``; each stage class
adds its results as a JSON column named after the stage (``enhance``, ``analyze``, ``features``), and
``Enhance`` replaces ``audio``. The classes are actors: the stage is set up once per actor.

:func:`write_dataset` packs a training dataset (:mod:`audioflow.store`'s format) on the cluster, straight
into a bucket; :func:`to_webdataset` turns rows into WebDataset samples for Ray's ``write_webdataset``."""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .audio import Audio
from .errors import AudioflowError, StoreError
from .pipeline.files import input_rows, json_default
from .pipeline.ray_engine import ensure_ray
from .pipeline.registry import STAGES
from .pipeline.stage import Annotations


class Decode:
    """``{"path": [...]}`` batches → adds ``audio`` and ``sample_rate`` (and ``error`` for inputs that fail,
    whose audio is empty), decoding with :func:`audioflow.load`."""

    def __init__(self, sr: int | None = None, mono: bool = True, storage_options: dict[str, Any] | None = None):
        self.sr, self.mono, self.storage_options = sr, mono, storage_options

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from .errors import AudioflowError
        from .io import load

        audio, rates, errors = [], [], []
        for path in batch["path"]:
            try:
                y, rate = load(str(path), sr=self.sr, mono=self.mono, storage_options=self.storage_options)
                audio.append(y.astype(np.float32, copy=False))
                rates.append(rate)
                errors.append("")
            except AudioflowError as e:
                audio.append(np.zeros(0, np.float32))
                rates.append(self.sr or 0)
                errors.append(str(e))
        return {**batch, "audio": audio, "sample_rate": np.asarray(rates, np.int64), "error": errors}


def read_audio(inputs: Any, sr: int | None = None, mono: bool = True, storage_options: dict[str, Any] | None = None,
               address: str | None = None, concurrency: int | None = None, batch_size: int = 4) -> Any:
    """A Ray dataset of the audio in ``inputs`` (files, folders, manifests, URLs): columns ``path``, ``id``,
    ``audio``, ``sample_rate``, ``error``. Starts a local Ray instance unless one runs (or ``address``).

    The listing is split into blocks, a few per CPU of the cluster, and decoded by Ray tasks on every node
    (``concurrency`` caps how many run at once; default: as many as the cluster's CPUs allow), with
    :func:`audioflow.load` (range reads for remote files, ``storage_options`` for their filesystem)."""
    ray = ensure_ray(address)
    rows = [{"path": r["path"], "id": r["id"]} for r in input_rows(inputs, storage_options=storage_options)]
    cpus = int(ray.cluster_resources().get("CPU", 1))
    blocks = max(1, min(len(rows), cpus * 4))
    options: dict[str, Any] = {"concurrency": concurrency} if concurrency else {}
    return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        Decode(sr, mono, storage_options), batch_size=batch_size, **options)


def write_dataset(source: Any, path: str, fields: dict[str, Any], shard_size: int = 1000, address: str | None = None,
                  overwrite: bool = False, resume: bool = False, storage_options: dict[str, Any] | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Pack ``source`` into a packed dataset (:mod:`audioflow.store`'s format, read by ``store.open`` and the
    loader) with the encoding spread over a Ray cluster: one task per shard of ``shard_size`` consecutive
    rows, a CPU each, on every node. Shards go from the task straight to a URL ``path``
    (``s3://bucket/train.afds``: nothing needs a shared disk), or back to the driver for a local ``path``.

    The arguments are :func:`audioflow.store.write`'s (``address`` joins a running cluster: 'auto' finds
    it). ``resume=True`` continues an interrupted write: shards already written are kept, the rest encoded.
    Rows that fail are skipped and listed in the manifest, as with ``store.write``; shards keep the rows'
    order (a shard holds fewer than ``shard_size`` rows when some of its rows were skipped)."""
    from .io.listing import list_rows
    from .store.writer import Progress, Target, bind_fields, dataset_identity, dataset_schema, finish

    ray = ensure_ray(address)
    started = time.perf_counter()
    target = Target.at(path, storage_options)
    target.check_new(overwrite)
    bound = bind_fields(fields)
    rows, described = list_rows(source, storage_options=storage_options, folder_labels=True)
    total = len(rows)
    identity = dataset_identity(bound, described, total, shard_size, engine="ray")
    state = target.begin(identity, resume)
    ranges: dict[str, dict[str, Any]] = state.setdefault("ranges", {})
    schema = dataset_schema(bound)
    todo = collections.deque(k for k in range(-(-total // shard_size)) if str(k) not in ranges)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    pack_range = ray.remote(num_cpus=1)(_pack_range)
    fields_ref, schema_ref, target_ref = ray.put(bound), ray.put(schema), ray.put(target)
    pending: dict[Any, int] = {}
    done_rows = sum(min(shard_size, total - int(k) * shard_size) for k in ranges)
    try:
        with Progress(progress, total, described, done=done_rows) as bar:
            while todo or pending:
                while todo and len(pending) < 2 * cpus:  # a few shards in flight per CPU, not the whole listing
                    k = todo.popleft()
                    chunk = [rows[i] for i in range(k * shard_size, min(total, (k + 1) * shard_size))]
                    pending[pack_range.remote(target_ref, fields_ref, schema_ref, k, k * shard_size, chunk)] = k
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                k = pending.pop(ready)
                result = ray.get(ready)
                if result["error"]:
                    raise StoreError(f"shard {k}: {result['error']}", target.location)
                if result["data"] is not None:  # a local dataset: the driver writes what the task encoded
                    result["shard"] = target.put_shard(k, result["data"])
                ranges[str(k)] = {key: result[key] for key in ("shard", "skipped", "audio_seconds", "cpu_seconds")}
                target.save_progress(state)
                seconds = sum(r["audio_seconds"] for r in ranges.values())
                bar.advance(seconds, rows=result["rows"])
        order = sorted(ranges, key=int)
        manifest = finish(target, identity, [ranges[k]["shard"] for k in order if ranges[k]["shard"]],
                          [item for k in order for item in ranges[k]["skipped"]],
                          sum(r["audio_seconds"] for r in ranges.values()), described, total,
                          time.perf_counter() - started,
                          {"encode_cpu_seconds": sum(r["cpu_seconds"] for r in ranges.values())}, cpus)
    except AudioflowError:
        for ref in pending:
            ray.cancel(ref)
        target.discard()
        raise
    return manifest


def _pack_range(target: Any, fields: dict[str, Any], schema: Any, number: int, first: int,
                rows: list[Any]) -> dict[str, Any]:
    """A Ray task: encode rows ``first...`` into shard ``number``, written to a remote target here."""
    from .store.writer import encode_rows, shard_bytes, skipped_row

    pairs = [(first + i, row if isinstance(row, Mapping) else {"path": row}) for i, row in enumerate(rows)]
    columns, failed, seconds, cpu = encode_rows(pairs, fields)
    result = {"shard": None, "data": None, "error": "", "rows": len(rows), "audio_seconds": seconds,
              "cpu_seconds": cpu, "skipped": [skipped_row(rows[i - first], i, error) for i, error in failed]}
    if columns:
        data = shard_bytes(schema, columns)
        if target.remote:
            try:
                result["shard"] = target.put_shard(number, data)
            except AudioflowError as e:
                result["error"] = str(e)
        else:
            result["data"] = data
    return result


def to_webdataset(row: dict[str, Any], format: str = "flac") -> dict[str, Any]:
    """A row of :func:`read_audio` and the stage actors as a WebDataset sample, for ``ds.map(to_webdataset)
    .write_webdataset(url)``: ``__key__`` the row's id, the audio encoded as ``format`` ('flac', 'wav', 'opus',
    'mp3'; the member's extension), and ``json`` with its path, sample rate (Hz) and every stage's results."""
    from .errors import ParameterError
    from .io import encode

    if row.get("error"):
        raise ParameterError(f"no audio to write: {row['error']} (filter rows with an error out first)",
                             str(row["path"]))
    known = {"path", "id", "audio", "sample_rate", "error"}
    meta = {"path": str(row["path"]), "sample_rate": int(row["sample_rate"])}
    meta.update({key: json.loads(value) for key, value in row.items() if key not in known and isinstance(value, str)})
    return {"__key__": str(row["id"]), format: encode(np.asarray(row["audio"], np.float32), int(row["sample_rate"]),
                                                       format), "json": meta}


class StageActor:
    """Runs one stage (``stage`` by name, with its options as keyword arguments) on rows with audio."""

    stage_name = ""
    gpu_share = 0.0  # the num_gpus to give its actors on a GPU cluster (0: a CPU stage)

    def __init__(self, device: str = "auto", **options: Any) -> None:
        from .models import ModelManager
        from .runtime import device_name

        self.stage = STAGES[self.stage_name](**options)
        if "write" in self.stage.config:
            self.stage.config["write"] = False  # rows carry the audio; nothing to write beside them
        self.stage.setup(ModelManager(device_name(device)))  # 'auto': the actor's GPU when Ray gave it one

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        audio_out, results = [], []
        for i, samples in enumerate(batch["audio"]):
            samples = np.asarray(samples, np.float32)
            if samples.size == 0:
                audio_out.append(samples)
                results.append(json.dumps(None))
                continue
            rate = int(batch["sample_rate"][i])
            ident = str(batch["id"][i]) if "id" in batch else str(i)
            audio, annotations = self.stage(Audio(samples, rate), Annotations(ident, ident))
            audio_out.append(audio.samples)
            results.append(json.dumps(annotations.results.get(self.stage.name), default=json_default))
        return {**batch, "audio": audio_out, self.stage.name: results}


def stage_actor(name: str) -> type[StageActor]:
    """A Ray Data actor class for the stage called ``name`` (built-in or plugin), named as the stage's class:
    its options are the actor's ``fn_constructor_kwargs``, its results a JSON column named after the stage;
    ``enhance`` and ``denoise`` replace ``audio``."""
    stage = STAGES.find(name)
    summary = (stage.__doc__ or "").strip().splitlines()[0]
    options = ", ".join(f"``{key}={option.default!r}``" for key, option in stage.options.items()) or "none"
    doc = (f"The ``{name}`` stage as a Ray Data actor: {summary} Options: {options}, and ``device`` ('auto': "
           f"the GPU Ray gave the actor, if any; ``gpu_share``: what to ask for as ``num_gpus``).")
    return type(stage.__name__, (StageActor,), {"stage_name": name, "__doc__": doc, "__module__": __name__,
                                                "gpu_share": stage.gpu_share})


# one actor class per stage of the registry (Enhance, Analyze, Features, Split, Denoise, VAD, Diarize,
# Transcribe, Fingerprint, Classify, and installed plugins' stages), made from the stage declarations
_ACTORS = {name: stage_actor(name) for name in STAGES}
globals().update({actor.__name__: actor for actor in _ACTORS.values()})

__all__ = ["Decode", "StageActor", "read_audio", "stage_actor", "to_webdataset", "write_dataset",
           *sorted(actor.__name__ for actor in _ACTORS.values())]
