"""Shared helpers of the benchmarks: timing and the sections of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nEach section is written by its script in `benchmarks/` (`make bench` runs them all); "
          "do not edit by hand.\nShared 2-core machines drift by up to 30 % between runs: read the ratios, "
          "which come from one run side by side, not the absolute times.\n")


def machine() -> str:
    import torch

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads); "
            f"run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def best_of(fn: Callable[[], object], passes: int) -> float | None:
    """Best wall time of ``passes`` runs after one warm-up, in ms; None when ``fn`` fails."""
    try:
        fn()
    except Exception:  # a library that cannot do the case is reported as n/a
        return None
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def race(fns: dict[str, Callable[[], object] | None], passes: int, burst: int = 3) -> dict[str, float | None]:
    """Best time (ms) of each function, the functions interleaved pass by pass so that a slow
    spell of the shared machine hits all of them alike; None for absent or failing ones.

    Each pass runs a function ``burst`` times in a row: right after another library's NumPy code,
    torch's OpenMP threads have gone to sleep and the first call pays ~2 ms to wake them, which a
    training loop (torch all the way) never pays."""
    live: dict[str, Callable[[], object]] = {}
    for name, fn in fns.items():
        if fn is None:
            continue
        try:
            fn()
            live[name] = fn
        except Exception:  # a library that cannot do the case is reported as n/a
            pass
    best = {name: float("inf") for name in live}
    for _ in range(passes):
        for name, fn in live.items():
            for _ in range(burst):
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
    return {name: (best[name] * 1000 if name in best else None) for name in fns}


def write_section(name: str, markdown: str, path: Path = DOC) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md."""
    text = path.read_text() if path.exists() else HEADER
    if not text.startswith("# Benchmarks"):
        text = HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"
