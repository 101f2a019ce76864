"""Speech the tests make with Debian's TTS voices (flite slt/rms/awb/kal16, espeak-ng variants), with the
truth known: the text, and where each utterance is audible."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

import audioflow as af

SR = 16000
FLITE_VOICES = ("slt", "rms", "awb", "kal16")

# Harvard sentences (IEEE 1969): phonetically balanced, no numbers or compounds to normalise
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
]

# ordinary prose (the Rainbow Passage's opening and the Speech Accent Archive's paragraph)
PASSAGE = [
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The rainbow is a division of white light into many beautiful colors.",
    "These take the shape of a long round arch, with its path high above, and its two ends apparently beyond "
    "the horizon.",
    "There is, according to legend, a boiling pot of gold at one end.",
    "People look, but no one ever finds it.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her on Wednesday at the train station.",
]


def have_flite() -> bool:
    return shutil.which("flite") is not None


def flite(text: str, voice: str, path: Path) -> np.ndarray:
    """``text`` spoken by flite's ``voice``, as 16 kHz float32 (also written to ``path``)."""
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    y, _ = af.load(path, sr=SR)
    return y


def audible(y: np.ndarray, level: float = 0.01) -> tuple[float, float]:
    """First and last audible instant of ``y`` (seconds; 10 ms smoothing)."""
    loud = np.flatnonzero(np.convolve(np.abs(y) > level * np.abs(y).max(), np.ones(160), "same") > 0)
    return loud[0] / SR, (loud[-1] + 1) / SR


def dialogue(folder: Path, turns: list[tuple[str, str]], seed: int = 0, gaps: tuple[float, float] = (0.4, 1.2),
             noise: float = 0.002) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Utterances ``(voice, text)`` one after another with random pauses and a faint noise floor.
    Returns the 16 kHz signal and the truth ``(start, end, voice)`` of each utterance's audible extent."""
    rng = np.random.default_rng(seed)
    parts, truth, t = [np.zeros(SR // 2, np.float32)], [], 0.5
    for i, (voice, text) in enumerate(turns):
        y = flite(text, voice, folder / f"turn{i}.wav")
        a, b = audible(y)
        truth.append((t + a, t + b, voice))
        gap = round(rng.uniform(*gaps) * SR)
        parts += [y, np.zeros(gap, np.float32)]
        t += (len(y) + gap) / SR
    x = np.concatenate(parts)
    x = x + noise * rng.standard_normal(len(x)).astype(np.float32)
    return x.astype(np.float32), truth
