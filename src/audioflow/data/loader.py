"""AudioDataLoader: files (or a packed dataset) in, padded batches of features and labels out.

The work is split the way the hardware wants it. Worker processes decode, resample, crop and collate
(through a shared decoded-audio cache). The batch transform (augmentations, then features) runs where it
is cheapest: on the accelerator, batched, in a feeder thread that pins each batch, copies it on a side
CUDA stream and transforms it while the model runs on the previous one; on a CPU-only machine, in the
workers, as the last step of making the batch, so every core makes whole batches. How many workers,
how deep the prefetch, how many threads each, and whether the cache is worth it are chosen by probing
a few items at the start (tuning.py), and the worker count grows while the consumer is seen waiting for
data. Batches are made by batching.py's BatchMaker, fed to an accelerator by feeder.py's Feeder.

(Over 400 lines on purpose: a third is the constructor's documentation of its 31 options, which users
read here; the rest is one class's iteration, scheduling and bookkeeping, which share its state.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._deprecation import renamed
from ..augment import SpectralStretch
from ..errors import AudioflowError, ParameterError
from ..features.registry import build_feature
from ..io.listing import AUDIO_EXTENSIONS
from ..runtime import ProcessPool, ThreadPool, resolve_device, usable_cores
from . import tuning
from .batching import Batch, BatchMaker, BatchResult
from .cache import DecodedCache
from .cuts import lhotse_batch
from .feeder import Feeder
from .sampler import AudioSampler, distributed_rank_world
from .sources import AudioSource, open_audio_source, resolve_labels
from .transforms import BatchTransform, _members, plan

log = logging.getLogger("audioflow.data")

_ADAPT_EVERY = 8  # batches between looks at the consumer's waiting


def _check_stored_features(source: AudioSource, features: Any, augmentations: Any) -> None:
    """A source of stored features (a packed mel field) is fed as it is: no feature to compute, and only the
    augmentations that work on features (SpecAugment's masks)."""
    from ..augment import FreqMask, TimeMask

    where = f"{source.dataset.path}: field {source.field!r} stores log-mel frames"  # type: ignore[attr-defined]
    if features is not None:
        raise ParameterError(f"{where}; they are the features: leave features=None")
    waveform = [type(m).__name__ for m in _members(augmentations) if not isinstance(m, (FreqMask, TimeMask))]
    if waveform:
        raise ParameterError(f"{where}; {', '.join(waveform)} work on waveforms: only FreqMask and TimeMask "
                             "apply (or pack a waveform field)")


class LoaderStats:
    """Counters of a loader's life: what was delivered, how long the consumer waited, what workers did."""

    def __init__(self) -> None:
        self.batches = self.clips = self.cache_hits = self.failed_batches = 0
        self.audio_seconds = self.wait_s = self.consume_s = self.decode_s = self.transform_s = 0.0
        self.failures: list[tuple[str, str]] = []
        self.window_wait = self.window_consume = 0.0
        self.started: float | None = None
        self.settings: dict[str, Any] = {}


class AudioDataLoader:
    """Batches of audio features and labels from files, a manifest, a packed dataset or a map-style
    dataset, with augmentation and feature extraction batched on the device, tuned by measurement.

    >>> loader = AudioDataLoader("clips/", labels="label", batch_size=32, sample_rate=16000,
    ...                          features="mfcc", n_mfcc=40, augmentations=[A.TimeStretch(0.8, 1.2)])  # doctest: +SKIP
    >>> for features, labels in loader:  # doctest: +SKIP
    ...     ...

    Args:
        data: a list of paths/URLs, a folder (searched recursively for ``extensions``), a CSV/JSONL manifest
            (``path``, ``label``, ``offset``, ``duration`` in seconds, ``id``), a Lhotse CutSet manifest
            (``cuts.jsonl.gz``: each cut's window of its channel, supervisions kept; Lhotse need not be
            installed) or CutSet, a packed dataset (folder or ``audioflow.store`` Dataset; ``audio_field``
            picks the field; a mel field is fed as stored: ``[batch, n_mels, frames]``, lengths in frames,
            ``features=None``, only FreqMask/TimeMask augmentations), or a map-style dataset yielding
            ``Audio``, ``(samples, sr)``, Hugging Face audio dicts, or ``(audio, label)``.
        labels: one per item (ints, floats, or strings: mapped to ids, see ``classes``), a column name,
            or None (the source's ``label`` column when it has one).
        batch_size: items per batch (``batch_by='count'``).
        sample_rate: sample rate of the batches, in Hz (items are resampled in the workers; ``target_sr``,
            its old name, works until the next release).
        mono: mix channels down; otherwise batches are ``[batch, channels, time]``.
        max_duration: crop items longer than this many seconds (see ``crop``); shorter ones are padded.
        crop: 'random' (default when shuffling), 'center' (default otherwise), 'start', or 'none'.
        batch_by: 'count', or 'duration' to group items of similar length into batches of about
            ``batch_seconds`` padded seconds (little padding, a varying batch size).
        batch_seconds: target padded seconds per batch for ``batch_by='duration'``.
        features: 'mfcc', 'logmel', 'mel', 'spectrogram', 'fbank', 'whisper', a module, or None for
            waveforms. Further keyword arguments go to the feature (``n_mfcc=40``, ``n_mels=64``...).
        augmentations: a list of :mod:`audioflow.augment` transforms (applied in order) or one transform.
        fuse: let a TimeStretch/PitchShift that ends the chain run inside a spectral feature.
        device: 'auto' (CUDA, MPS, else CPU), 'cpu', 'cuda', or a ``torch.device``.
        shuffle, seed, drop_last: as ``DataLoader``'s; the order is a function of ``seed`` and the epoch.
        num_workers: processes, or 'auto' (measured: see the module docstring); 0 makes batches on a
            thread of this process.
        prefetch_factor: batches waiting per worker, or 'auto'.
        pin_memory: pin batches for the copy to CUDA, or 'auto' (when the device is CUDA).
        threads_per_worker: torch threads per worker, or 'auto'.
        transform_on: where augmentations and features run: 'workers', 'main' (the device, from a feeder
            thread), or 'auto' (main for an accelerator, workers on CPU).
        cache: decoded audio cache: 'auto' (RAM when the dataset fits ``cache_budget``; disk for remote
            files that do not), 'memory', 'disk', or None.
        cache_budget: bytes (or '4GB') the cache may hold; default a quarter of RAM.
        cache_dir: folder of the disk cache (default ``~/.cache/audioflow/decoded``).
        on_error: a file that fails to decode is 'replace'd by another item (logged), 'skip'ped (the batch
            shrinks), or 'raise'd.
        rank, world_size: distributed share; default from ``torch.distributed`` when initialised.
        batch_format: 'batch' (a :class:`Batch`: ``features, labels = batch``) or 'lhotse' (the dict Lhotse's
            ``K2SpeechRecognitionDataset`` yields: ``inputs`` ``[batch, frames, features]`` (or ``[batch,
            time]`` waveforms) and ``supervisions`` with ``sequence_idx``, ``start_frame``, ``num_frames``
            (``start_sample``/``num_samples`` for waveforms), ``text`` and, where every supervision has one,
            ``speaker``/``language``/``gender``; times follow crops and speed changes).
        verbose: log the chosen settings and a stats line per epoch.
    """

    @renamed(target_sr="sample_rate")
    def __init__(self, data: Any, labels: Sequence[Any] | str | None = None, *, batch_size: int = 32,
                 sample_rate: int = 16000, mono: bool = True, max_duration: float | None = None,
                 crop: str | None = None, batch_by: str = "count", batch_seconds: float | None = None,
                 features: str | nn.Module | None = None, augmentations: Any = None, fuse: bool = True,
                 device: str | torch.device = "auto", shuffle: bool = False, seed: int | None = 0,
                 drop_last: bool = False, num_workers: int | str = "auto", prefetch_factor: int | str = "auto",
                 pin_memory: bool | str = "auto", threads_per_worker: int | str = "auto",
                 transform_on: str = "auto", cache: str | None = "auto", cache_budget: int | str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, on_error: str = "replace",
                 rank: int | None = None, world_size: int | None = None,
                 extensions: Sequence[str] = AUDIO_EXTENSIONS, audio_field: str | None = None,
                 storage_options: dict[str, Any] | None = None, batch_format: str = "batch", verbose: bool = False,
                 **feature_kwargs: Any) -> None:
        if on_error not in ("replace", "skip", "raise"):
            raise ParameterError(f"on_error must be 'replace', 'skip' or 'raise', got {on_error!r}")
        if crop not in (None, "random", "center", "start", "none"):
            raise ParameterError(f"crop must be 'random', 'center', 'start' or 'none', got {crop!r}")
        if cache not in (None, "auto", "memory", "disk"):
            raise ParameterError(f"cache must be 'auto', 'memory', 'disk' or None, got {cache!r}")
        if batch_format not in ("batch", "lhotse"):
            raise ParameterError(f"batch_format must be 'batch' or 'lhotse', got {batch_format!r}")
        if transform_on not in ("auto", "workers", "main"):
            raise ParameterError(f"transform_on must be 'auto', 'workers' or 'main', got {transform_on!r}")
        if max_duration is not None and max_duration <= 0:
            raise ParameterError(f"max_duration must be positive seconds, got {max_duration}")
        if sample_rate is None or sample_rate <= 0:
            raise ParameterError(f"sample_rate must be a positive rate in Hz, got {sample_rate}")
        self.source = open_audio_source(data, tuple(extensions), audio_field, storage_options)
        self.label_ids, self.classes = resolve_labels(labels, self.source)
        self.sample_rate, self.mono, self.max_duration = int(sample_rate), mono, max_duration
        if getattr(self.source, "stored_features", False):  # a packed dataset of log-mels: batches are its frames
            _check_stored_features(self.source, features, augmentations)
            self.sample_rate, features = self.source.native_sr, None  # the items' time axis: frames per second
        self.crop = crop or ("random" if shuffle else "center")
        self.device = resolve_device(device)
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        if rank is None or world_size is None:
            auto_rank, auto_world = distributed_rank_world()
            rank = auto_rank if rank is None else rank
            world_size = auto_world if world_size is None else world_size
        self.sampler = AudioSampler(len(self.source), batch_size, shuffle, self.seed, drop_last, rank, world_size,
                                    batch_by, batch_seconds, durations=self._durations)
        feature = build_feature(features, self.sample_rate, **feature_kwargs)
        self.transform = plan(augmentations, feature, fuse)
        self.transform_on = transform_on if transform_on != "auto" else (
            "workers" if self.device.type == "cpu" else "main")
        self._options = {"num_workers": num_workers, "prefetch_factor": prefetch_factor, "pin_memory": pin_memory,
                         "threads_per_worker": threads_per_worker, "cache": cache, "cache_budget": cache_budget,
                         "cache_dir": cache_dir, "on_error": on_error}
        self.verbose, self.batch_format = verbose, batch_format
        if verbose and not log.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("audioflow.data: %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        self._pool: ProcessPool | ThreadPool | None = None
        self._feeder: Feeder | None = None  # the feeder thread of the iteration under way (accelerators)
        self._cache: DecodedCache | None = None
        self._maker: BatchMaker | None = None
        self._device_transform: BatchTransform | None = None
        self._stats = LoaderStats()
        self._next_epoch, self._next_position = 0, 0
        self._epoch, self._position, self._epoch_done = 0, 0, False
        self._iteration = 0
        # batches made ahead, and in flight, keyed (generation, epoch, number); a new seed is a new generation
        self._ready: dict[tuple[int, int, int], tuple[bool, Any]] = {}
        self._inflight: set[tuple[int, int, int]] = set()
        self._generation = 0
        self._epoch_lists: dict[int, list[list[int]]] = {}  # the sampler's batches of this and the next epoch

    # ---- sizes and order ---------------------------------------------------------------------------------

    def _durations(self) -> np.ndarray:
        durations = np.array([self.source.duration(i) for i in range(len(self.source))], np.float64)
        return np.minimum(durations, self.max_duration) if self.max_duration else durations

    def _batches(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epoch_lists:
            if len(self._epoch_lists) >= 2:  # keep the latest two epochs (the running one and the next)
                del self._epoch_lists[min(self._epoch_lists)]
            self._epoch_lists[epoch] = self.sampler.batches(epoch)
        return self._epoch_lists[epoch]

    def __len__(self) -> int:
        return len(self._batches(self._next_epoch))

    @property
    def dataset(self) -> AudioSource:
        return self.source

    # ---- training-loop bookkeeping -----------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its shuffle and augmentation draws)."""
        self._next_epoch, self._next_position = int(epoch), 0

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: resuming from this yields exactly the batches not yet yielded."""
        epoch, position = (self._epoch + 1, 0) if self._epoch_done else (self._epoch, self._position)
        if self._iteration == 0:
            epoch, position = self._next_epoch, self._next_position
        return {"epoch": epoch, "position": position, "seed": self.seed, "num_items": len(self.source),
                "batch_size": self.sampler.batch_size, "rank": self.sampler.rank,
                "world_size": self.sampler.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("num_items") not in (None, len(self.source)):
            raise ParameterError(f"the state is for {state['num_items']} items, this loader has {len(self.source)}")
        seed = int(state.get("seed", self.seed))
        if seed != self.seed:
            self._generation += 1  # what was made ahead used the old seed
            self._ready.clear()
        self.seed = self.sampler.seed = seed
        self._epoch_lists.clear()
        self._next_epoch, self._next_position = int(state["epoch"]), int(state["position"])

    # ---- setup, measured ---------------------------------------------------------------------------------

    def _setup(self) -> None:
        if self._maker is not None:
            return
        opts = self._options
        cores = usable_cores()
        first = self._batches(self._next_epoch)
        found = tuning.probe(self.source, self.sample_rate, self.mono, (first[0] if first else [])[:4], self.seed)
        self._cache = tuning.make_cache(opts, found.item_bytes, self.source)
        in_workers = self.transform if self.transform_on == "workers" else None
        self._maker = BatchMaker(self.source, self.sample_rate, self.mono, self.max_duration, self.crop, self._cache,
                                 self.label_ids, opts["on_error"], in_workers, self.batch_format == "lhotse")
        # what one batch costs to make where it will be made: measured on the probe items, scaled to a batch
        batch_items = self.sampler.batch_size if self.sampler.batch_by == "count" or not first else len(first[0])
        max_samples = round(self.max_duration * self.sample_rate) if self.max_duration else None
        transform_s = tuning.transform_seconds(in_workers, found, batch_items, max_samples)
        chosen = tuning.choose(opts, found, transform_s, batch_items, len(first), cores, self.device,
                               self.transform_on)
        self._prefetch, self._pin, self._threads, self._max_workers = chosen.prefetch, chosen.pin, chosen.threads, cores
        if chosen.num_workers == 0:
            self._pool = ThreadPool(self._maker, 1)
        else:
            self._pool = ProcessPool(self._maker, chosen.num_workers, self._threads)
        if self.transform_on == "main" and not self.transform.is_identity:
            self._device_transform = self.transform.to(self.device)
        self._stats.settings = {
            "num_workers": chosen.num_workers, "prefetch_factor": self._prefetch, "pin_memory": chosen.pin,
            "threads_per_worker": self._threads, "transform_on": self.transform_on, "device": str(self.device),
            "transform": self.transform.describe(), "cache": None if self._cache is None else self._cache.mode,
            "cache_budget_mb": None if self._cache is None else round(self._cache.budget / 1e6),
            "probe_read_ms_per_item": round(found.read_s * 1000, 3), "probe_batch_ms": round(chosen.batch_s * 1000, 2),
            "cores": cores,
        }
        log.info("settings: %s", ", ".join(f"{k}={v}" for k, v in self._stats.settings.items()))

    # ---- iteration ---------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch | dict[str, Any]]:
        self._setup()
        epoch, position = self._next_epoch, self._next_position
        self._next_epoch, self._next_position = epoch + 1, 0
        self._epoch, self._position, self._epoch_done = epoch, position, False
        self._iteration += 1
        batches = self._batches(epoch)
        stats = self._stats
        if stats.started is None:
            stats.started = time.perf_counter()
        results = self._ordered(epoch, batches, position)
        feeder = Feeder(results, self._finish, self.device, self._prefetch) if self.transform_on == "main" else None
        self._feeder = feeder
        source = feeder if feeder is not None else (self._finish(r) for r in results)
        try:
            while True:
                waited = time.perf_counter()
                try:
                    batch = next(source)
                except StopIteration:
                    break
                now = time.perf_counter()
                stats.wait_s += now - waited
                stats.window_wait += now - waited
                self._position += 1
                yield batch
                back = time.perf_counter()
                stats.consume_s += back - now
                stats.window_consume += back - now
            self._epoch_done = True
            if self.verbose:
                log.info("epoch %d: %s", epoch, self.summary())
        finally:
            if feeder is not None:
                feeder.stop()

    def _ordered(self, epoch: int, batches: list[list[int]], start: int) -> Iterator[dict[str, Any]]:
        """Worker results in batch order, keeping ``workers x prefetch`` batches in flight. Past the epoch's
        last batch the next epoch's first ones are started, so a new epoch does not begin with an empty
        pipeline; a batch is a function of (seed, epoch, number), so a result made ahead is valid whenever
        it is asked for."""
        pool, stats = self._pool, self._stats
        assert pool is not None
        ready = self._ready
        for key in [k for k in ready if k[1] not in (epoch, epoch + 1)]:
            del ready[key]
        upcoming = [(epoch, n) for n in range(start, len(batches))]
        upcoming += [(epoch + 1, n) for n in range(len(self._batches(epoch + 1)))]
        for number in range(start, len(batches)):
            for key in upcoming:
                if pool.outstanding() + len(ready) >= max(1, pool.num_workers) * self._prefetch:
                    break
                if (self._generation, *key) in ready or (self._generation, *key) in self._inflight:
                    continue
                self._submit(key)
            upcoming = [k for k in upcoming if (self._generation, *k) not in ready
                        and (self._generation, *k) not in self._inflight and k >= (epoch, number)]
            want = (self._generation, epoch, number)
            while want not in ready:
                key, ok, value = pool.get()
                self._inflight.discard(key)
                if key[0] == self._generation:
                    ready[key] = (ok, value)
            ok, value = ready.pop(want)
            if not ok:
                stats.failed_batches += 1
                if self._options["on_error"] == "raise":
                    raise AudioflowError(f"batch {number} of epoch {epoch} failed: {value}")
                log.warning("batch %d of epoch %d failed and is skipped: %s", number, epoch, value)
                continue
            yield value
            if (number + 1) % _ADAPT_EVERY == 0:
                self._adapt()

    def _submit(self, key: tuple[int, int]) -> None:
        epoch, number = key
        seed = int(np.random.SeedSequence([self.seed, epoch, number]).generate_state(1)[0])
        self._pool.submit((self._generation, epoch, number), (self._batches(epoch)[number], seed))
        self._inflight.add((self._generation, epoch, number))

    def _adapt(self) -> None:
        """More workers while the consumer waits for data and cores are free."""
        stats, pool = self._stats, self._pool
        total = stats.window_wait + stats.window_consume
        waiting = stats.window_wait / total if total > 0 else 0.0
        stats.window_wait = stats.window_consume = 0.0
        if waiting <= 0.10 or not isinstance(pool, ProcessPool):
            return
        if pool.num_workers < self._max_workers:
            pool.add_worker()
            stats.settings["num_workers"] = pool.num_workers
            log.info("consumer waited %.0f%% of the time: workers -> %d", 100 * waiting, pool.num_workers)
        elif not stats.settings.get("data_bound"):
            stats.settings["data_bound"] = True
            log.info("consumer waited %.0f%% of the time with a worker on every core: the input is the "
                     "bottleneck (a cache, lighter augmentation or a packed dataset would help)", 100 * waiting)

    def _finish(self, result: BatchResult) -> Batch:
        """A worker's result as a Batch on the device (transformed there when the transform runs here)."""
        stats = self._stats
        stats.batches += 1
        stats.clips += len(result.indices)
        stats.audio_seconds += result.audio_seconds
        stats.decode_s += result.decode_s
        stats.transform_s += result.transform_s
        stats.cache_hits += result.hits
        for index, message in result.failures:
            item = self.source.item_id(index)
            stats.failures.append((item, message))
            log.warning("item %s failed and was %s: %s", item,
                        "replaced" if self._options["on_error"] == "replace" else "dropped", message)
        x, lengths, audio_lengths, labels = result.x, result.lengths, result.audio_lengths, result.labels
        if self.device.type != "cpu":
            if self._pin:
                x = x.pin_memory()
            x = x.to(self.device, non_blocking=self._pin)
            lengths, audio_lengths = lengths.to(self.device), audio_lengths.to(self.device)
            labels = None if labels is None else labels.to(self.device, non_blocking=self._pin)
        if self._device_transform is not None:
            started = time.perf_counter()
            self._device_transform.reseed(result.seed)
            with torch.no_grad():
                x, lengths = self._device_transform(x, audio_lengths)
            stats.transform_s += time.perf_counter() - started
        if self._device_transform is not None and self.batch_format == "lhotse" and self.transform.feature is not None:
            x = x.transpose(-1, -2).contiguous()
        if self.batch_format == "lhotse":
            return self._lhotse_batch(x, lengths, result)
        ids = [self.source.item_id(i) for i in result.indices.tolist()]
        return Batch(x, labels, lengths, audio_lengths, ids, result.indices)

    def _lhotse_batch(self, x: torch.Tensor, lengths: torch.Tensor, result: BatchResult) -> dict[str, Any]:
        """Lhotse's batch dict; supervision times scaled by how much each item's augmentation stretched it
        (its frames, or samples, over those of its audio before augmentation)."""
        feature = self.transform.feature
        feature = feature.feature if isinstance(feature, SpectralStretch) else feature  # stretch inside a feature
        before = result.audio_lengths.double()
        if feature is not None:  # a module of the user's without output_lengths: times taken as unscaled
            before = (feature.output_lengths(result.audio_lengths, 1 << 62).double()
                      if hasattr(feature, "output_lengths") else lengths.cpu().double())
        scales = (lengths.cpu().double() / before.clamp(min=1)).tolist()
        hop = getattr(feature, "hop_length", None)
        frame_shift = None if feature is None or hop is None else hop / self.sample_rate
        return lhotse_batch(x, lengths.cpu(), self.source, result.indices.tolist(), result.offsets, scales,
                            self.sample_rate, frame_shift)

    # ---- reporting and shutdown --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Throughput (clips/s, audio seconds per second), the consumer's waiting, the workers' time, the
        cache, failures, and the settings chosen."""
        s = self._stats
        elapsed = (time.perf_counter() - s.started) if s.started else 0.0
        busy = s.wait_s + s.consume_s
        return {
            "batches": s.batches, "clips": s.clips, "audio_seconds": round(s.audio_seconds, 3),
            "elapsed_s": round(elapsed, 3), "clips_per_s": round(s.clips / elapsed, 2) if elapsed else 0.0,
            "x_realtime": round(s.audio_seconds / elapsed, 1) if elapsed else 0.0,
            "wait_s": round(s.wait_s, 3), "wait_fraction": round(s.wait_s / busy, 4) if busy else 0.0,
            "worker_decode_s": round(s.decode_s, 3), "worker_transform_s": round(s.transform_s, 3),
            "cache_hits": s.cache_hits,
            "cache_mb": None if self._cache is None else round(self._cache.used_bytes / 1e6, 1),
            "failed_items": len(s.failures), "failed_batches": s.failed_batches, "failures": list(s.failures[:20]),
            "workers_replaced": 0 if self._pool is None else self._pool.replaced,
            "settings": dict(s.settings),
        }

    def summary(self) -> str:
        s = self.stats()
        return (f"{s['clips']} clips in {s['elapsed_s']:.1f} s = {s['clips_per_s']:.1f} clips/s, "
                f"{s['x_realtime']:.0f}x realtime, waited {100 * s['wait_fraction']:.1f}% for data, "
                f"workers {s['settings'].get('num_workers')}, cache {s['settings'].get('cache')}, "
                f"{s['failed_items']} failed items")

    def close(self) -> None:
        """Stop the workers and remove the memory cache (also done when the loader is garbage collected).
        An iteration still under way (a training loop that stopped early) ends: its feeder thread first."""
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder.stop()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._cache is not None:
            self._cache.close()
        self._maker = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __enter__(self) -> AudioDataLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


