"""Words with their speaker: each word goes to the turn around it (a word Whisper gives no duration too); on
request a change of speaker a coarse diarizer places 0.3-1 s off moves to the sentence end next to it
(Transcript.with_speakers(snap=...)), checked on word lists with a known answer; and the diarizer's turns,
placed at the segmentation model's frames, give the words of a real telephone call that was never used for
tuning (pyannote.audio's sample) to their speaker, scored by word diarization error rate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from audioflow.audio import Segment
from audioflow.speech.transcribe import SNAP_S, Transcript, Utterance, Word

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from realspeech import attribution_cpwer, sample_call, wder


def transcript(text: str, start: float = 0.0, step: float = 0.3) -> Transcript:
    """One word every ``step`` seconds, each 0.25 s long."""
    words = [Word(round(start + i * step, 3), round(start + i * step + 0.25, 3), " " + w, 0.9)
             for i, w in enumerate(text.split())]
    return Transcript([Utterance(words[0].start, words[-1].end, text, words)], "en", 1.0, words[-1].end + 1)


def speakers_of(t: Transcript) -> list[tuple[str, str]]:
    return [(u.speaker, u.text) for u in t.segments]


# "This is Diane in New Jersey. And I'm Sheila in Texas.": words at 0.0, 0.3, ..., 3.3 s
CALL = "This is Diane in New Jersey. And I'm Sheila in Texas."


def test_a_late_change_moves_back_to_the_sentence_end():
    # the diarizer gives the second speaker only from 2.4 s ("in Texas."): "And I'm Sheila" is hers
    turns = [Segment(0.0, 2.4, "A"), Segment(2.4, 4.0, "B")]
    assert speakers_of(transcript(CALL).with_speakers(turns, snap=1.0)) == [
        ("A", "This is Diane in New Jersey."), ("B", "And I'm Sheila in Texas.")]


def test_an_early_change_moves_on_to_the_sentence_end():
    # the diarizer hands over at 1.0 s ("in New Jersey." to B, as on the real call): the sentence is A's
    turns = [Segment(0.0, 1.0, "A"), Segment(1.0, 4.0, "B")]
    assert speakers_of(transcript(CALL).with_speakers(turns, snap=1.0)) == [
        ("A", "This is Diane in New Jersey."), ("B", "And I'm Sheila in Texas.")]
    assert speakers_of(transcript(CALL).with_speakers(turns, snap=0)) == [
        ("A", "This is Diane"), ("B", "in New Jersey. And I'm Sheila in Texas.")]


def test_a_change_far_from_any_sentence_end_stays():
    # an interruption: no sentence end within 1 s of the change, so the diarizer's word is final
    text = "so what I wanted to say about the budget for next year is that we"
    turns = [Segment(0.0, 2.0, "A"), Segment(2.0, 6.0, "B")]
    t = transcript(text).with_speakers(turns, snap=1.0)
    assert [u.speaker for u in t.segments] == ["A", "B"]
    assert t.segments[0].text == "so what I wanted to say about"


def test_snapping_is_off_by_default():
    turns = [Segment(0.0, 1.0, "A"), Segment(1.0, 4.0, "B")]
    assert SNAP_S == 0.0
    assert speakers_of(transcript(CALL).with_speakers(turns)) == [
        ("A", "This is Diane"), ("B", "in New Jersey. And I'm Sheila in Texas.")]


def test_a_word_without_duration_goes_to_the_turn_around_it():
    # Whisper times some words start == end; inside a long turn, a short turn's edge nearby must not win
    words = [Word(1.0, 1.3, " Yes.", 0.9), Word(5.0, 5.0, " to", 0.5), Word(5.0, 5.0, " the", 0.5),
             Word(5.2, 5.5, " world.", 0.9)]
    t = Transcript([Utterance(1.0, 5.5, "Yes. to the world.", words)], "en", 1.0, 10.0)
    turns = [Segment(0.5, 1.5, "A"), Segment(1.6, 9.0, "B"), Segment(4.8, 4.9, "A")]
    assert [w.speaker for w in t.with_speakers(turns).words] == ["A", "B", "B", "B"]


def test_a_change_of_speaker_moves_to_where_the_segmentation_hears_the_voices_change():
    """The embedding windows (1.5 s every 0.75 s) smear a change at 2.0 s; the segmentation's local voices
    (one until 2.0 s, another from 2.05 s) place it within a frame; a local voice whose run mixes two owners
    (no pause between them) is not trusted."""
    import numpy as np

    from audioflow.speech.diarize import FRAME_S, DiarizeOptions, resegment, speaker_activity
    from audioflow.speech.segmentation import FRAME_STEP

    duration, change = 10.0, 2.0
    spans = [(a, a + 1.5) for a in np.arange(0.0, duration - 1.5 + 1e-9, 0.75)]
    # each window's embedding: the share of each speaker in it (A before the change, B after)
    shares = np.array([[max(0.0, min(b, change) - a), max(0.0, b - max(a, change))] for a, b in spans])
    embeddings = shares / np.linalg.norm(shares, axis=1, keepdims=True)
    centroids = np.eye(2)
    speech = [Segment(0.0, duration)]
    frames = np.arange(589)
    local = np.zeros((1, 589, 3))
    local[0, :, 0] = frames * FRAME_STEP < change
    local[0, :, 1] = (frames * FRAME_STEP >= change + 0.05) & (frames * FRAME_STEP < duration)
    coarse = resegment(speech, spans, embeddings, centroids, duration, DiarizeOptions())
    exact = resegment(speech, spans, embeddings, centroids, duration, DiarizeOptions(), (np.zeros(1), local))
    coarse_change = next(t.start for t in coarse if t.label == "1")
    exact_change = next(t.start for t in exact if t.label == "1")
    assert abs(exact_change - change) <= 0.08 < 0.2 <= abs(coarse_change - change), (exact_change, coarse_change)
    assert [t.label for t in exact] == ["0", "1"]

    # one local voice running through a change at 5 s (half A, half B): not trusted, the windows' owners stand
    mixed = np.zeros((1, 589, 3))
    mixed[0, :, 0] = 1
    owner = np.zeros(round(duration / FRAME_S), int)
    owner[round(5.0 / FRAME_S):] = 1
    activity, talkers = speaker_activity(owner, np.zeros(1), mixed, 2)
    assert activity.max() == 0 and np.allclose(talkers[:round(9.9 / FRAME_S)], 1)
    # its first 6 s only: 5 s of A, 1 s of B (83 % >= the purity): all A's
    mixed[0, round(6.0 / FRAME_STEP):, 0] = 0
    activity, _ = speaker_activity(owner, np.zeros(1), mixed, 2)
    assert activity[:round(5.9 / FRAME_S), 0].min() == 1 and activity[:, 1].max() == 0


def test_two_local_voices_of_one_chunk_mapped_to_one_speaker_are_settled_by_their_own_embedding():
    """A 0.8 s reply (3.0-3.8 s) inside A's speech: the 1.5 s windows give all of it to A, the segmentation
    hears a second local voice there. Two local voices of one chunk are two people, so the reply takes the
    speaker its own embedding names; an embedding that is unsure (None) leaves the windows' answer."""
    import numpy as np

    from audioflow.speech.diarize import FRAME_S, speaker_activity
    from audioflow.speech.segmentation import FRAME_STEP

    duration = 10.0
    owner = np.zeros(round(duration / FRAME_S), int)
    at = np.arange(589) * FRAME_STEP
    local = np.zeros((1, 589, 3))
    local[0, :, 0] = (at < 2.9) | (at >= 3.9)
    local[0, :, 1] = (at >= 3.0) & (at < 3.8)
    asked = []

    def own(start: float, end: float) -> int | None:
        asked.append((start, end))
        return 1 if start >= 2.95 and end <= 3.85 else 0

    reply = round(3.4 / FRAME_S)
    windows_only, _ = speaker_activity(owner, np.zeros(1), local, 2)
    assert windows_only[reply].tolist() == [1.0, 0.0]
    settled, _ = speaker_activity(owner, np.zeros(1), local, 2, own_speaker=own)
    assert settled[reply].tolist() == [0.0, 1.0]
    assert settled[round(1.0 / FRAME_S)].tolist() == [1.0, 0.0]  # A's own speech stays A's
    assert len(asked) == 3  # the reply and the two runs of A's beside it
    unsure, _ = speaker_activity(owner, np.zeros(1), local, 2, own_speaker=lambda a, b: None)
    assert unsure[reply].tolist() == [1.0, 0.0]


@pytest.mark.slow
def test_words_of_a_real_call_go_to_their_speaker():
    """The real call (never tuned on): words given to speakers by the diarizer's turns, whose changes are placed
    at the segmentation model's frames, and the 0.8 s 'Hello.' of the second speaker (heard by the 1.5 s
    windows with the first's words around it) settled by its own embedding. Measured: no word with the wrong
    speaker of 64 (WDER 0.014 before the 'Hello.' was settled, 0.042 with the windows' turns alone)."""
    call = sample_call()
    if call is None:
        pytest.skip("pyannote.audio's sample call (scripts/setup.sh installs it)")
    from audioflow import speech

    y, sr, truth = call
    attributed = speech.Transcriber()(y, sr).with_speakers(speech.Diarizer()(y, sr))
    words = [(w.start, w.end, w.word, w.speaker) for w in attributed.words]
    rate, n = wder([(s, e, who) for s, e, _, who in words], truth)
    assert n >= 60, n  # the call's words were transcribed
    assert rate <= 0.02, rate
    added, _ = attribution_cpwer(words, truth)
    assert added <= 0.03, added  # what the labels add to the WER (issue 31: cpWER within 0.03 of WER)
