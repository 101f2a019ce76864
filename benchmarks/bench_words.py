"""Words with their speaker, side by side: how many transcribed words go to the wrong person in audioflow's
`vad,diarize,transcribe` and in the pipeline a user would assemble from its peers (senko's turns + faster-whisper's
own words, each word given to the turn it overlaps most as WhisperX's ``assign_word_speakers`` does, the
segment's speaker where no turn overlaps it).

Measures, per system: WDER (word diarization error rate: a word's speaker against the true speakers at its
midpoint, under the best one-to-one mapping of speakers), the cpWER the speaker labels add to the WER
(``attribution_cpwer``: the system's own words as attributed against the same words given to their true
speakers, so recognition errors cancel; cpWER = WER + this), and DER (±0.25 s collar).

Tuned on conversations of real voices (Asterisk's prompts, realspeech.py: 2-3 speakers, 10 turns, 10 %
overlapping turns, clean and telephone); reported on a real telephone call of two people that was never used
for tuning (pyannote.audio's sample, 30 s, with its RTTM). Writes the "words" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_words.py [--conversations 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench_diarize import score, senko_turns
from realspeech import attribution_cpwer, conversation, merge_turns, sample_call, short_replies, speakers, wder
from report import machine, write_section

SR = 16000


def tuning_set(count: int, condition: str) -> list[tuple[np.ndarray, list[tuple[float, float, str]]]]:
    from audioflow.speech.vad import mono_at

    voices = speakers()
    items = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        pick = [voices[i] for i in rng.choice(len(voices), 2 + seed % 2, replace=False)]
        y, sr, truth = conversation(pick, turns=10, seed=1000 + seed, overlap=0.1, condition=condition)
        items.append((mono_at(y, sr, SR), merge_turns(truth)))
    return items


def whisperx_assignment(segments: list[tuple[float, float, list[tuple[float, float, str]]]],
                        turns: list[tuple[float, float, str]]) -> list[tuple[float, float, str, str]]:
    """Each word to the speaker whose turns overlap it most; a word no turn overlaps takes its segment's speaker
    (found the same way), as WhisperX's ``assign_word_speakers`` and its segment labels do."""
    def best(start: float, end: float) -> str | None:
        overlap: dict[str, float] = {}
        for a, b, label in turns:
            if min(b, end) > max(a, start):
                overlap[label] = overlap.get(label, 0.0) + min(b, end) - max(a, start)
        return max(overlap, key=overlap.get) if overlap else None

    words = []
    for start, end, pieces in segments:
        fallback = best(start, end)
        words += [(a, b, text, best(a, b) or fallback or "none") for a, b, text in pieces]
    return words


class Ours:
    """audioflow's words and turns; variants share one transcriber, and each recording is transcribed once."""

    name = "audioflow `vad,diarize,transcribe`"
    transcripts: ClassVar[dict[int, Any]] = {}

    def __init__(self, shared: Ours | None = None, snap: float = 0.0, overlap: bool = True) -> None:
        from audioflow import speech
        from audioflow.speech.diarize import DiarizeOptions

        self.transcriber = shared.transcriber if shared else speech.Transcriber()
        self.diarizer = shared.diarizer if shared else speech.Diarizer()
        self.options, self.snap = DiarizeOptions(overlap=overlap), snap

    def __call__(self, y: np.ndarray, path: str):
        turns = self.diarizer(y, SR, self.options)
        key = hash(y.tobytes())
        if key not in self.transcripts:
            self.transcripts[key] = self.transcriber(y, SR)
        attributed = self.transcripts[key].with_speakers(turns, snap=self.snap)
        return ([(w.start, w.end, w.word, w.speaker) for w in attributed.words],
                [(t.start, t.end, t.label) for t in turns])


class Peers:
    name = "senko + faster-whisper, WhisperX assignment"

    def __init__(self) -> None:
        import senko
        from faster_whisper import WhisperModel

        from audioflow.speech.transcribe import resolve_whisper_model

        self.senko = senko.Diarizer(device="cpu", warmup=False, quiet=True)
        self.whisper = WhisperModel(resolve_whisper_model(None), device="cpu", compute_type="int8")

    def __call__(self, y: np.ndarray, path: str):
        turns = senko_turns(path, self.senko)
        segments, _ = self.whisper.transcribe(y, vad_filter=True, word_timestamps=True)
        pieces = [(s.start, s.end, [(w.start, w.end, w.word) for w in s.words or []]) for s in segments]
        return whisperx_assignment(pieces, turns), turns


def measure(system, items, folder: Path) -> dict[str, float]:
    import soundfile as sf

    wrong = added = words = reference = 0.0
    ders, seconds = [], 0.0
    for i, (y, truth) in enumerate(items):
        path = folder / f"{i}.wav"
        sf.write(path, y, SR, subtype="PCM_16")  # senko reads 16 kHz 16-bit WAV files only
        t0 = time.perf_counter()
        attributed, turns = system(y, str(path))
        seconds += time.perf_counter() - t0
        rate, n = wder([(s, e, who) for s, e, _, who in attributed], truth)
        wrong, words = wrong + rate * n, words + n
        extra, m = attribution_cpwer(attributed, truth)
        added, reference = added + extra * m, reference + m
        ders.append(score(truth, turns)["der"])
    return {"wder": wrong / max(words, 1), "cpwer_added": added / max(reference, 1), "der": float(np.mean(ders)),
            "words": int(words), "seconds": seconds}


def render(results: dict[str, dict[str, dict[str, float]]], sets: dict[str, str]) -> str:
    lines = ["## Words with their speaker (`bench_words.py`)", "",
             "How many transcribed words go to the wrong person (Whisper tiny.en words in both pipelines). "
             "WDER: share of words with the wrong speaker; +cpWER: what the speaker labels add to the WER under "
             "cpWER (CHiME-6; a word with the wrong speaker counts twice; a word in overlapped speech is right "
             "with either true speaker, in both measures); DER with a ±0.25 s collar. "
             f"{machine()}.", "",
             "| set | system | words | WDER | +cpWER | DER |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for key, title in sets.items():
        for system, found in results.items():
            if key in found:
                r = found[key]
                lines.append(f"| {title} | {system} | {r['words']} | {r['wder']:.3f} | {r['cpwer_added']:.3f} | "
                             f"{r['der']:.3f} |")
    lines += ["", "The tuning sets chose the defaults (changes of speaker at the segmentation's frames, "
              "`RUN_PURITY`; no move to sentence ends); replies shorter than the embedding windows settled by "
              "their own embedding (`OWN_MARGIN`) were set on `realspeech.short_replies` (seeds 100-105), where "
              "the sets above show no change; the held-out call only reports. A reference transcript "
              "of the call is not shipped, so its full cpWER is not measured: +cpWER is exact for the "
              "labels and recognition errors are the WER's. Words per system differ: each pipeline's own "
              "Whisper decoding (ours decodes a recording of one window with Whisper's sequential decoder)."]
    return "\n".join(lines)


def replies_found(truth: list[tuple[float, float, str]], turns: list[Any], shortest: float = 1.3) -> tuple[int, int]:
    """Of the true turns shorter than ``shortest`` s (replies), how many the turns of the found speaker that
    matches theirs (most shared time, one to one) cover for at least half; and how many replies there are."""
    from scipy.optimize import linear_sum_assignment

    names, labels = sorted({n for *_, n in truth}), sorted({t.label for t in turns})
    shared = np.zeros((len(names), max(1, len(labels))))
    for a, b, name in truth:
        for t in turns:
            shared[names.index(name), labels.index(t.label)] += max(0.0, min(b, t.end) - max(a, t.start))
    rows, cols = linear_sum_assignment(-shared)
    mapped = {names[i]: labels[j] for i, j in zip(rows, cols, strict=True) if j < len(labels)}
    replies = [(a, b, n) for a, b, n in truth if b - a < shortest]
    found = sum(sum(max(0.0, min(b, t.end) - max(a, t.start)) for t in turns if t.label == mapped.get(n))
                >= 0.5 * (b - a) for a, b, n in replies)
    return found, len(replies)


def tune_replies(seeds: range, margins: tuple[float, ...] = (99.0, 0.1, 0.05, 0.0)) -> None:
    """The sweep that set ``diarize.OWN_MARGIN``: real voices answering in 0.5-1.2 s
    (``realspeech.short_replies``), clean and telephone, DER and replies found per margin (99: off)."""
    import importlib

    from audioflow.speech import Diarizer
    from audioflow.speech.vad import mono_at

    diarize_module = importlib.import_module("audioflow.speech.diarize")
    voices = speakers()
    items = [(mono_at(y, sr, SR), truth) for seed in seeds for condition in ("clean", "telephone")
             for y, sr, truth in [short_replies(voices, seed=seed, condition=condition)]]
    diarizer = Diarizer()
    for margin in margins:
        diarize_module.OWN_MARGIN = margin
        found = total = 0
        ders = []
        for y, truth in items:
            turns = diarizer(y, SR)
            hits, count = replies_found(truth, turns)
            found, total = found + hits, total + count
            ders.append(score(truth, [(t.start, t.end, t.label) for t in turns])["der"])
        print(f"OWN_MARGIN {margin}: DER {np.mean(ders):.4f}, replies found {found}/{total}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=6, help="per tuning condition")
    parser.add_argument("--replies", action="store_true",
                        help="only the OWN_MARGIN sweep on short replies (seeds 100-105), printed")
    args = parser.parse_args()
    if args.replies:
        tune_replies(range(100, 106))
        return
    sets = {"clean": f"tuning: {args.conversations} conversations of real voices, clean",
            "telephone": f"tuning: {args.conversations} conversations, telephone (8 kHz mu-law)",
            "call": "held out: a real telephone call (pyannote.audio's sample)"}
    data = {"clean": tuning_set(args.conversations, "clean"), "telephone": tuning_set(args.conversations, "telephone")}
    call = sample_call()
    if call is not None:
        from audioflow.speech.vad import mono_at

        data["call"] = [(mono_at(call[0], call[1], SR), call[2])]
    ours = Ours()
    systems = {Ours.name: ours, "audioflow, turns from the embedding windows only": Ours(ours, overlap=False),
               "audioflow, changes moved to sentence ends (snap 1 s)": Ours(ours, snap=1.0)}
    try:
        systems[Peers.name] = Peers()
    except Exception as e:  # reported, not fatal
        print(f"peers could not run: {type(e).__name__}: {e}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, system in systems.items():
            for key, items in data.items():
                results.setdefault(name, {})[key] = measure(system, items, Path(tmp))
                print(name, key, {k: round(v, 4) for k, v in results[name][key].items()}, flush=True)
    write_section("words", render(results, sets))


if __name__ == "__main__":
    main()
