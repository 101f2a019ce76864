"""The loader's settings, measured instead of guessed: a probe reads a few items (what one costs, how big
it is decoded), the batch transform is timed on them where it will run, and from that come the worker
count, the prefetch depth, the threads per worker, pinning, and whether a decoded-audio cache pays."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..io.listing import is_url
from ..runtime import total_memory_bytes
from .batching import BatchMaker, BatchResult
from .cache import DecodedCache, default_memory_budget, parse_bytes
from .sources import AudioSource, FileSource
from .transforms import BatchTransform

log = logging.getLogger("audioflow.data")

CHEAP_BATCH_S = 0.004  # a batch this quick to make is not worth a process hop (pickling, shared memory)
PREFETCH_BYTES = 1 << 30  # waiting batches, all workers together


@dataclass
class Probe:
    """What reading a few items cost: seconds per item, decoded bytes per item, and the batch they made."""

    read_s: float
    item_bytes: int
    batch: BatchResult | None


@dataclass
class Settings:
    """The chosen settings (``stats()["settings"]`` reports them)."""

    num_workers: int
    prefetch: int
    threads: int
    pin: bool
    batch_s: float


def probe(source: AudioSource, sample_rate: int, mono: bool, items: list[int], seed: int) -> Probe:
    """Read ``items`` (a few) once, uncropped and untransformed, and time it."""
    maker = BatchMaker(source, sample_rate, mono, None, "none", None, None, "skip", None)
    started = time.perf_counter()
    batch = maker((items, seed)) if items else None
    read_s = (time.perf_counter() - started) / max(1, len(items))
    channels = 1 if batch is None or batch.x.ndim == 2 else batch.x.shape[1]
    item_bytes = 0 if batch is None else int(batch.audio_lengths.sum()) * 4 * channels // len(items)
    return Probe(read_s, item_bytes, batch)


def transform_seconds(transform: BatchTransform | None, found: Probe, batch_items: int, max_samples: int | None
                      ) -> float:
    """What the transform costs on one batch, estimated from the probe's items (cropped as the batches
    will be) with one thread, as a worker runs it, scaled to ``batch_items``: the transforms cost in
    proportion to the samples, and timing a whole batch here would delay every worker's start by it
    (100-300 ms for augmentation + fbank on 32 clips of 4-10 s)."""
    if found.batch is None or transform is None or transform.is_identity:
        return 0.0
    x, lengths = found.batch.x, found.batch.audio_lengths
    if max_samples:
        x, lengths = x[..., :max_samples], lengths.clamp(max=max_samples)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        with torch.no_grad():
            transform(x, lengths)
        return (time.perf_counter() - started) * batch_items / x.shape[0]
    finally:
        torch.set_num_threads(threads)


def choose(options: dict[str, Any], found: Probe, transform_s: float, batch_items: int, batches: int, cores: int,
           device: torch.device, transform_on: str) -> Settings:
    """Settings from the user's options ('auto' where not given) and what the probe measured."""
    batch_s = found.read_s * batch_items + transform_s
    out_bytes = found.item_bytes * batch_items
    num_workers = options["num_workers"]
    if num_workers == "auto":
        reserve = 1 if transform_on == "main" and device.type != "cpu" else 0  # a core for the feeder
        num_workers = 0 if batch_s < CHEAP_BATCH_S else max(1, min(cores - reserve, batches or 1))
    num_workers = int(num_workers)
    prefetch = options["prefetch_factor"]
    if prefetch == "auto":
        budget = min(PREFETCH_BYTES, total_memory_bytes() // 8)
        prefetch = int(max(1, min(2, budget // max(1, out_bytes * max(1, num_workers)))))
    threads = options["threads_per_worker"]
    if threads == "auto":
        # one math thread per worker: measured 1.4-2.9x faster than two with the workers filling the
        # cores, and the only safe choice in a forked child of a process whose OpenMP pool ran
        # (GNU OpenMP deadlocks starting threads after fork)
        threads = 1
    elif int(threads) > 1 and torch.get_num_threads() > 1:
        log.warning("threads_per_worker=%s in forked workers can deadlock GNU OpenMP; using 1", threads)
        threads = 1
    pin = options["pin_memory"]
    pin = device.type == "cuda" if pin == "auto" else bool(pin)
    return Settings(num_workers, int(prefetch), int(threads), pin, batch_s)


def make_cache(options: dict[str, Any], item_bytes: int, source: AudioSource) -> DecodedCache | None:
    """The decoded-audio cache: in memory when the decoded dataset fits the budget, on disk for remote files
    that do not ('auto'), or as the user asked."""
    mode = options["cache"]
    budget = parse_bytes(options["cache_budget"]) or default_memory_budget()
    if mode == "auto":
        estimate = item_bytes * len(source)
        remote = isinstance(source, FileSource) and any(is_url(r["path"]) for r in source.rows[:10])
        mode = "memory" if 0 < estimate <= budget else ("disk" if remote else None)
        log.info("cache: decoded audio ~%.0f MB for %d items, budget %.0f MB -> %s", estimate / 1e6,
                 len(source), budget / 1e6, mode)
    if mode is None:
        return None
    if mode == "disk" and options["cache_budget"] is None:
        budget = 64 << 30
    return DecodedCache(mode, budget, options["cache_dir"])
