"""The feeding thread of an accelerator: worker results turned into device batches ahead of the consumer
(pinned copy on a side CUDA stream, the batch transform there), overlapping the model's step."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import torch

from .batching import Batch, BatchResult


class Feeder:
    """A thread that turns worker results into device batches ahead of the consumer: pinned copy on a side
    CUDA stream and the batch transform there, so both overlap the model's step on the previous batch."""

    def __init__(self, results: Iterator[BatchResult], finish: Any, device: torch.device, depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._thread = threading.Thread(target=self._run, args=(results, finish), daemon=True,
                                        name="audioflow-feeder")
        self._thread.start()

    def _run(self, results: Iterator[BatchResult], finish: Any) -> None:
        try:
            for result in results:
                if self._stop.is_set():
                    return
                if self._stream is not None:
                    with torch.cuda.stream(self._stream):
                        batch = finish(result)
                        event = torch.cuda.Event()
                        event.record(self._stream)
                else:
                    batch, event = finish(result), None
                while not self._stop.is_set():
                    try:
                        self._queue.put((batch, event, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # handed to the consumer, raised there
            self._queue.put((None, None, e))
            return
        self._queue.put((None, None, StopIteration()))

    def __next__(self) -> Batch:
        batch, event, error = self._queue.get()
        if error is not None:
            if isinstance(error, StopIteration):
                raise StopIteration
            raise error
        if event is not None:
            current = torch.cuda.current_stream()
            current.wait_event(event)
            for t in (batch.features, batch.labels, batch.lengths, batch.audio_lengths):
                if t is not None and t.is_cuda:
                    t.record_stream(current)  # the side stream's allocations are now used on this one
        return batch

    def __iter__(self) -> Feeder:
        return self

    def stop(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5.0)
