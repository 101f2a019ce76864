"""The Ray engine: the same stages on Ray Data. The file list becomes a dataset (``ray.data.from_items``),
and ``map_batches`` runs an actor pool whose actors set the stages up once (models loaded once per actor)
and process one input per call, writing results exactly as the local engine does."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import MissingDependencyError
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
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    return ray


class ProcessActor:
    """A Ray Data callable: sets the stages up once per actor, then processes each input of a batch."""

    def __init__(self, stages: Sequence[Stage], output_dir: str, storage_options: dict[str, Any] | None,
                 device: str, chunk_duration: float | None = None) -> None:
        from ..models import ModelManager
        self.stages, self.output_dir, self.storage_options = list(stages), output_dir, storage_options
        self.chunk_duration = chunk_duration
        models = ModelManager(device)
        for stage in self.stages:
            stage.setup(models)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from .files import json_default, process_file

        entries = []
        for row_json in batch["row"]:
            row = json.loads(row_json)
            entries.append(json.dumps(process_file(row, self.stages, self.output_dir, self.storage_options,
                                                   self.chunk_duration),
                                      default=json_default))
        return {"entry": entries}


def run_ray(rows: list[dict[str, Any]], stages: list[Stage], output_dir: str, workers: int | str, device: str,
            storage_options: dict[str, Any] | None, address: str | None, chunk_duration: float | None = None
            ) -> Iterator[dict[str, Any]]:
    """Manifest entries as Ray finishes inputs (in completion order)."""
    from ..runtime import usable_cores

    ray = ensure_ray(address, None if address else (usable_cores() if workers == "auto" else int(workers)))
    actors = int(ray.cluster_resources().get("CPU", 1)) if workers == "auto" else int(workers)
    gpu = 1 if device.startswith("cuda") and any(s.uses_gpu for s in stages) else 0
    items = [{"row": json.dumps(row)} for row in rows]
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), max(1, actors * 4)))
    processed = dataset.map_batches(
        ProcessActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=max(1, actors)), num_cpus=1,
        num_gpus=gpu,
        fn_constructor_kwargs={"stages": stages, "output_dir": output_dir, "storage_options": storage_options,
                               "device": device, "chunk_duration": chunk_duration})
    log.info("ray: %d inputs on %d actors (%s)", len(rows), actors, "GPU" if gpu else "CPU")
    for row in processed.iter_rows():
        yield json.loads(row["entry"])
