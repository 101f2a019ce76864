"""Acoustic fingerprints (Chromaprint, the AcoustID algorithm, through libchromaprint) and duplicate
finding: exact copies, re-encodes, level changes and trims of the same recording match; different
recordings do not."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import MissingDependencyError

FRAME_SECONDS = 4096 / 3 / 11025  # one fingerprint value per ~0.124 s (chromaprint's default algorithm)


def _chromaprint():
    try:
        import chromaprint  # pyacoustid's ctypes binding to libchromaprint
        chromaprint.Fingerprinter  # noqa: B018  (fails when libchromaprint.so is missing)
    except (ImportError, AttributeError, OSError) as e:
        raise MissingDependencyError("fingerprints need libchromaprint (Debian: libchromaprint-tools) and "
                                     "pyacoustid: pip install 'audioflow[music]'") from e
    return chromaprint


def fingerprint(y: np.ndarray, sr: int, max_seconds: float | None = 120.0) -> list[int]:
    """The raw Chromaprint fingerprint of ``y`` (mixed to mono, the first ``max_seconds``): 32-bit values,
    one per ~0.124 s."""
    chromaprint = _chromaprint()
    mono = np.asarray(y, np.float32)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    if max_seconds is not None:
        mono = mono[: round(max_seconds * sr)]
    pcm = (np.clip(mono, -1, 1) * 32767).astype("<i2")
    printer = chromaprint.Fingerprinter()
    printer.start(int(sr), 1)
    printer.feed(pcm.tobytes())
    raw, _ = chromaprint.decode_fingerprint(printer.finish())
    return [int(v) & 0xFFFFFFFF for v in raw]


def encode(raw: Sequence[int]) -> str:
    """The compact base64 form AcoustID uses."""
    chromaprint = _chromaprint()
    signed = [v - (1 << 32) if v >= (1 << 31) else v for v in raw]
    value = chromaprint.encode_fingerprint(signed, 1)
    return value.decode() if isinstance(value, bytes) else value


def similarity(a: Sequence[int], b: Sequence[int], max_offset: int = 80, min_overlap: int = 16) -> float:
    """Share of matching bits (0.5: unrelated, 1.0: identical) at the best alignment of ``a`` and ``b``
    within ``max_offset`` frames (~10 s), over the overlap."""
    x, y = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    best = 0.0
    for offset in range(-min(max_offset, len(x) - 1), min(max_offset, len(y) - 1) + 1):
        xs, ys = (x[offset:], y) if offset >= 0 else (x, y[-offset:])
        n = min(len(xs), len(ys))
        if n < min(min_overlap, len(x), len(y)):
            continue
        differing = np.unpackbits((xs[:n] ^ ys[:n]).view(np.uint8)).sum()
        best = max(best, 1.0 - float(differing) / (32.0 * n))
    return best


def find_duplicates(prints: Mapping[str, Sequence[int]], threshold: float = 0.85, near: float = 0.65
                    ) -> list[dict[str, object]]:
    """Pairs of recordings that are the same (``similarity >= threshold``) or nearly (``>= near``: e.g. a
    re-encode at a low bit rate, or an edit). Candidates come from an inverted index of the fingerprint
    values (a re-encode keeps many of them exactly), so the work grows with the matches, not with n^2.

    Returns ``[{"a", "b", "similarity", "kind": "duplicate" | "near-duplicate"}]``, most similar first."""
    index: dict[int, set[str]] = defaultdict(set)
    for name, raw in prints.items():
        for value in set(raw):
            index[value].add(name)
    shared: dict[tuple[str, str], int] = defaultdict(int)
    for names in index.values():
        if 1 < len(names) <= 50:  # a value in very many files (silence) says nothing
            ordered = sorted(names)
            for i, first in enumerate(ordered):
                for second in ordered[i + 1:]:
                    shared[(first, second)] += 1
    pairs = []
    for (first, second), count in shared.items():
        if count < 3:
            continue
        score = similarity(prints[first], prints[second])
        if score >= near:
            pairs.append({"a": first, "b": second, "similarity": round(score, 4),
                          "kind": "duplicate" if score >= threshold else "near-duplicate"})
    return sorted(pairs, key=lambda p: -float(p["similarity"]))  # type: ignore[arg-type]
