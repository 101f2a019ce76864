"""Where a training batch's time goes, before and after: the loader's batch path profiled stage by stage on
one batch of 32 real speech clips (4-10 s, 16 kHz FLAC; see realspeech.py) with one thread, as a worker
runs it (decode, the decoded-audio cache, padding, speed perturbation, noise from a file, gain, 80-bin
Kaldi fbank, the hop to the main process), then the whole loader sampled by py-spy across its processes
(3 epochs, augmented), with torch.profiler's top operators of the batch transform.

"Before" is the code of ``--before`` (a git revision, default the commit that opened issue 18's work),
checked out in a temporary worktree and imported in place of this tree; "after" is this tree. Writes the
"loader-profile" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_batchpath.py [--before 1eae7b1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from realspeech import write_clips
from report import best_of, machine, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH = 32
STAGES = ("decode (FLAC, 32 files)", "cache read (32 hits)", "pad into one buffer", "SpeedPerturb 0.9/1.0/1.1",
          "AddNoise from a file, p=0.5", "Gain, p=0.5", "Fbank (80 bins)", "hop to the main process")


def augmentations(noise: str) -> list:
    import audioflow.augment as A

    return [A.SpeedPerturb((0.9, 1.0, 1.1), p=1.0), A.AddNoise(10, 20, noise=[noise], sample_rate=16000, p=0.5),
            A.Gain(-18, 6, p=0.5)]


def stages_child(paths: list[str], noise: str) -> None:
    """Each stage of one batch, one thread; JSON on stdout (with the top operators of the transform)."""
    import io
    from multiprocessing.reduction import ForkingPickler

    import numpy as np
    import torch

    import audioflow
    from audioflow.data.batching import pad_items
    from audioflow.data.cache import DecodedCache
    from audioflow.data.sources import open_audio_source
    from audioflow.features import Fbank

    torch.set_num_threads(1)
    source = open_audio_source(paths[:BATCH])
    items = list(range(BATCH))
    times = {}
    times[STAGES[0]] = best_of(lambda: [source.read(i, 16000, True) for i in items], 3)
    decoded = [source.read(i, 16000, True) for i in items]
    cache = DecodedCache("memory", 1 << 32)
    for i, y in enumerate(decoded):
        cache.put(str(i), y)
    times[STAGES[1]] = best_of(lambda: pad_items([cache.get(str(i)) for i in items]), 5)
    cache.close()
    times[STAGES[2]] = best_of(lambda: pad_items(decoded), 5)
    x, lengths = pad_items(decoded)
    chain = augmentations(noise)
    for name, module in zip(STAGES[3:6], chain, strict=True):
        module.generator = torch.Generator().manual_seed(0)
        times[name] = best_of(lambda m=module: m(x, lengths), 5)
    fbank = Fbank(num_mel_bins=80)
    times[STAGES[6]] = best_of(lambda: fbank(x, lengths), 5)
    features, frames = fbank(x, lengths)

    def hop():
        buffer = io.BytesIO()
        ForkingPickler(buffer).dump((features, frames, lengths))  # tensors into shared memory, as a worker does
        return ForkingPickler.loads(buffer.getvalue())

    times[STAGES[7]] = best_of(hop, 5)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        y, n = x, lengths
        for module in chain:
            y, n = module(y, n)
        fbank(y, n)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    top = [(e.key, e.self_cpu_time_total / 1000, e.count) for e in ops]
    audio_s = float(np.sum([len(y) for y in decoded])) / 16000
    print(json.dumps({"times": times, "top": top, "audio_s": audio_s, "version": audioflow.__file__}))


def loader_child(paths: list[str], noise: str) -> None:
    """The loader as a user runs it: 3 epochs, augmented, fbank, every setting left to it."""
    from audioflow import AudioDataLoader

    loader = AudioDataLoader(paths, batch_size=BATCH, features="fbank", num_mel_bins=80,
                             augmentations=augmentations(noise), shuffle=True, device="cpu")
    for _ in range(3):
        for _batch in loader:
            pass
    loader.close()


# ---- py-spy's samples, by what the code was doing ---------------------------------------------------------

CATEGORIES = [  # the innermost matching frame decides; (name, pieces any of which the frame contains)
    ("decode", ("audioflow/io/",)),
    ("decoded-audio cache", ("DecodedCache.",)),
    ("pad into one buffer", ("pad_items",)),
    ("speed perturbation", ("SpeedPerturb.", "resample_batch", "_polyphase")),
    ("noise from a file", ("AddNoise.",)),
    ("gain", ("Gain.",)),
    ("fbank", ("Fbank.",)),
    ("hop between processes", ("Connection.send", "Connection.recv", "reductions.py", "ForkingPickler",
                               "_ResourceSharer")),
    ("start-up (probe, workers)", ("tuning.py", "ProcessPool.__init__", "add_worker", "_setup")),
    ("imports", ("<frozen importlib",)),
    ("waiting for work or results", ("_worker_loop", "ProcessPool.get", "_receive", "Queue.get", "wait (")),
]


def categorise(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, pieces in CATEGORIES:
            if any(p in frame for p in pieces):
                return name
    return "other (Python, the loop, bookkeeping)"


def spy(paths_file: str, noise: str, pythonpath: str | None, rate: int = 200) -> dict[str, dict[str, float]]:
    """CPU seconds by category, for the main process and for the workers together, from py-spy's samples
    (idle threads are not sampled)."""
    out = Path(tempfile.mkdtemp(prefix="spy-")) / "raw.txt"
    env = dict(os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "--subprocesses", "-r", str(rate),
                    "--format", "raw", "-o", str(out), "--", sys.executable, __file__, "--loader", paths_file, noise],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        role = "workers" if "_worker_loop" in stack else "main"
        seconds[role][categorise(stack)] += int(count) / rate
    shutil.rmtree(out.parent, ignore_errors=True)
    return {role: dict(cats) for role, cats in seconds.items()}


def run_side(label: str, paths: list[str], noise: str, pythonpath: str | None, tmp: Path) -> dict:
    env = dict(os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    paths_file = tmp / "paths.json"
    paths_file.write_text(json.dumps(paths))
    stages = subprocess.run([sys.executable, __file__, "--stages", str(paths_file), noise], env=env, check=True,
                            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    result = json.loads(stages)
    started = time.perf_counter()
    result["spy"] = spy(str(paths_file), noise, pythonpath)
    result["loader_s"] = time.perf_counter() - started
    print(label, result["version"], json.dumps(result["times"]), flush=True)
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--stages", "--loader"):
        sys.path.insert(0, str(HERE))
        paths = json.loads(Path(sys.argv[2]).read_text())
        (stages_child if sys.argv[1] == "--stages" else loader_child)(paths, sys.argv[3])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="1eae7b1", help="git revision measured as 'before'")
    parser.add_argument("--clips", type=int, default=300)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-batchpath-"))
    worktree = tmp / "before"
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                       check=True, capture_output=True)
        paths, noise = write_clips(tmp / "clips", args.clips)
        results = {"before": run_side("before", paths, noise, str(worktree / "src"), tmp),
                   "after": run_side("after", paths, noise, None, tmp)}
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, args)


def report(results: dict, args) -> None:
    before, after = results["before"], results["after"]
    lines = [
        "## Loader batch path: where the time goes, before and after",
        "",
        f"`benchmarks/bench_batchpath.py` on {machine()}. One batch of {BATCH} real speech clips "
        f"({after['audio_s']:.0f} s of audio, 4-10 s each, 16 kHz FLAC), one thread as in a worker, best of 5; "
        f"before = revision `{args.before}` (issue 18's starting point), after = this tree.",
        "",
        "| stage | before (ms) | after (ms) | after / before |",
        "|---|---|---|---|",
    ]
    for stage in STAGES:
        b, a = before["times"][stage], after["times"][stage]
        lines.append(f"| {stage} | {b:.1f} | {a:.1f} | {a / b:.2f}x |")
    worker_before = sum(before["times"][s] for s in STAGES[2:])
    worker_after = sum(after["times"][s] for s in STAGES[2:])
    lines.append(f"| **a cached batch, pad to hop** | **{worker_before:.1f}** | **{worker_after:.1f}** | "
                 f"**{worker_after / worker_before:.2f}x** |")
    lines += ["", "Top operators of the transform (augmentations then fbank) after, by self CPU time "
              "(torch.profiler):", "", "| operator | ms | calls |", "|---|---|---|"]
    for name, ms, calls in after["top"]:
        lines.append(f"| `{name}` | {ms:.1f} | {calls} |")
    lines += ["", "The whole loader (300 clips, 3 epochs, the chain above, every setting left to it) sampled by "
              "py-spy at 200 Hz across its processes: CPU seconds by what the innermost of our frames was doing.",
              "", "| where | before: main | before: workers | after: main | after: workers |", "|---|---|---|---|---|"]
    categories = [c for c, _ in CATEGORIES] + ["other (Python, the loop, bookkeeping)"]
    for category in categories:
        cells = [before["spy"].get(role, {}).get(category, 0.0) for role in ("main", "workers")]
        cells += [after["spy"].get(role, {}).get(category, 0.0) for role in ("main", "workers")]
        if any(c >= 0.05 for c in cells):
            lines.append(f"| {category} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    lines.append(f"| wall time of the run (s, under the sampler) | {before['loader_s']:.1f} | | "
                 f"{after['loader_s']:.1f} | |")
    write_section("loader-profile", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
