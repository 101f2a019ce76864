"""The Ray engine: the same stages on Ray Data. The file list becomes a dataset (``ray.data.from_items``),
and ``map_batches`` runs an actor pool whose actors set the stages up once (models loaded once per actor)
and process one input per call. Outputs go through the run's :class:`Output`: a remote output is written by
each actor wherever it runs; a local one directly by actors on the driver's node, and through the driver
(the files travel back in the entry) from any other node, so nothing relies on a disk the nodes share."""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import MissingDependencyError
from .output import Output
from .stage import Stage

log = logging.getLogger("audioflow.pipeline")


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError("the Ray engine needs Ray: pip install 'audioflow[ray]'") from e
    return ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """``ray.init`` once: a local instance (``num_cpus`` of them) when no address is given, else join
    the cluster at ``address`` ('auto' finds a running one)."""
    ray = import_ray()
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-operator progress lines
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address:
            # the driver's object-store credentials travel with the job: a cluster's workers were started
            # by `ray start` elsewhere, without them
            kwargs["runtime_env"] = {"env_vars": storage_environment()}
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    return ray


STORAGE_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "AZURE_", "FSSPEC_")


def storage_environment() -> dict[str, str]:
    """The driver's environment variables for object storage (S3 and compatible endpoints, GCS, Azure, fsspec
    settings), for the cluster's workers."""
    return {k: v for k, v in os.environ.items() if k.startswith(STORAGE_ENV_PREFIXES)}


class ProcessActor:
    """A Ray Data callable: sets the stages up once per actor, then processes each input of a batch."""

    def __init__(self, stages: Sequence[Stage], output: Output, storage_options: dict[str, Any] | None,
                 device: str, chunk_duration: float | None = None, driver_node: str | None = None) -> None:
        import ray

        from ..models import ModelManager

        here = self.node = ray.get_runtime_context().get_node_id()
        if not output.remote and driver_node is not None and here != driver_node:
            output = Output(output.location, output.storage_options, collect=True)
        self.stages, self.output, self.storage_options = list(stages), output, storage_options
        self.chunk_duration = chunk_duration
        from ..runtime import device_name

        self.gpus = [str(g) for g in ray.get_gpu_ids()]  # what Ray gave this actor ([] without a GPU share)
        models = ModelManager(device_name(device))  # 'auto': this actor's GPU, if Ray gave it one
        for stage in self.stages:
            stage.setup(models)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from .files import json_default, process_file

        entries, files = [], []
        for row_json in batch["row"]:
            entry = process_file(json.loads(row_json), self.stages, self.output, self.storage_options,
                                 self.chunk_duration)
            files.append(pickle.dumps(entry.pop("collected", {})))  # bytes: not through JSON
            entry["node"] = self.node
            if self.gpus:
                entry["gpus"] = self.gpus
            entries.append(json.dumps(entry, default=json_default))
        return {"entry": entries, "files": files}


def gpus_per_actor(stages: Sequence[Stage], device: str, cluster_gpus: float = 0.0) -> float:
    """The GPU share a Ray actor running ``stages`` reserves: the largest of their ``gpu_fraction``s on a CUDA
    device (Whisper tiny with CAM++: a quarter, so four actors per GPU), none on the CPU. ``device='auto'``
    follows the cluster (``cluster_gpus``, its GPU count), not the driver: a head node without a GPU still
    sends the models to its workers' GPUs."""
    use_gpu = cluster_gpus > 0 if device == "auto" else device.startswith("cuda")
    return max((stage.gpu_fraction() for stage in stages), default=0.0) if use_gpu else 0.0


def run_ray(rows: list[dict[str, Any]], stages: list[Stage], output: Output, workers: int | str, device: str,
            storage_options: dict[str, Any] | None, address: str | None, chunk_duration: float | None = None
            ) -> Iterator[dict[str, Any]]:
    """Manifest entries as Ray finishes inputs (in completion order)."""
    from ..runtime import usable_cores

    ray = ensure_ray(address, None if address else (usable_cores() if workers == "auto" else int(workers)))
    actors = int(ray.cluster_resources().get("CPU", 1)) if workers == "auto" else int(workers)
    gpu = gpus_per_actor(stages, device, ray.cluster_resources().get("GPU", 0.0))
    # with GPUs, as many actors as fit (1 / gpu per GPU), grown from one: a fixed pool would wait for all
    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors)) if gpu else \
        ray.data.ActorPoolStrategy(size=max(1, actors))
    items = [{"row": json.dumps(row)} for row in rows]
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), max(1, actors * 4)))
    processed = dataset.map_batches(
        ProcessActor, batch_size=1, compute=pool, num_cpus=1,
        num_gpus=gpu,
        fn_constructor_kwargs={"stages": stages, "output": output, "storage_options": storage_options,
                               "device": device, "chunk_duration": chunk_duration,
                               "driver_node": ray.get_runtime_context().get_node_id()})
    log.info("ray: %d inputs on up to %d actors (%s)", len(rows), actors, f"{gpu:g} GPU each" if gpu else "CPU")
    for row in processed.iter_rows():
        entry = json.loads(row["entry"])
        collected = pickle.loads(row["files"])
        if collected:
            entry["collected"] = collected
        yield entry
