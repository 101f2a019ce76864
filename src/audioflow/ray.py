"""audioflow's stages as Ray Data building blocks, for those who assemble their own Ray pipelines::

    import ray
    from audioflow.ray import read_audio, Enhance, Features

    ds = read_audio("s3://bucket/calls/", sr=16000)                       # path, id, audio, sample_rate
    ds = ds.map_batches(Enhance, fn_constructor_kwargs={"lufs": -23}, concurrency=4, batch_size=8)
    ds = ds.map_batches(Features, fn_constructor_kwargs={"name": "mfcc", "n_mfcc": 40}, concurrency=4)
    ds.write_parquet("s3://bucket/features/")

Rows carry ``audio`` (float32 ``[frames]`` or ``[channels, frames]``) and ``sample_rate``; each stage class
adds its results as a JSON column named after the stage (``enhance``, ``analyze``, ``features``), and
``Enhance`` replaces ``audio``. The classes are actors: the stage is set up once per actor."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .audio import Audio
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


class StageActor:
    """Runs one stage (``stage`` by name, with its options as keyword arguments) on rows with audio."""

    stage_name = ""
    gpu_share = 0.0  # the num_gpus to give its actors on a GPU cluster (0: a CPU stage)

    def __init__(self, device: str = "auto", **options: Any) -> None:
        from .models import ModelManager
        from .runtime import resolve_device

        self.stage = STAGES[self.stage_name](**options)
        if "write" in self.stage.config:
            self.stage.config["write"] = False  # rows carry the audio; nothing to write beside them
        self.stage.setup(ModelManager(str(resolve_device(device))))  # 'auto': the actor's GPU when Ray gave it one

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

__all__ = ["Decode", "StageActor", "read_audio", "stage_actor", *sorted(actor.__name__ for actor in _ACTORS.values())]
