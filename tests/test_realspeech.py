"""Diarization on real people (Asterisk's prompt voices, see benchmarks/realspeech.py), not only on voices
we synthesize: the conversations' truth is right, and the diarizer finds the speakers of a clean one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from realspeech import conversation, speakers

VOICES = speakers()
pytestmark = pytest.mark.skipif(len(VOICES) < 3, reason="Asterisk's prompt packages (scripts/setup.sh as root)")


def test_a_conversation_has_speech_exactly_where_its_truth_says():
    y, sr, truth = conversation(VOICES[:3], turns=8, seed=3, overlap=0.0)
    assert sr == 16000 and len({name for _, _, name in truth}) >= 2
    inside = np.zeros(len(y), bool)
    for start, end, _ in truth:
        inside[round(start * sr):round(end * sr)] = True
    assert np.sqrt(np.mean(y[~inside] ** 2)) < 1e-6  # silence outside every truth turn
    for start, end, _ in truth:  # and speech inside each
        assert np.sqrt(np.mean(y[round(start * sr):round(end * sr)] ** 2)) > 0.01


@pytest.mark.slow
@pytest.mark.parametrize(("count", "condition"), [(2, "telephone"), (3, "clean"), (4, "noise")])
def test_the_diarizer_finds_real_speakers_and_their_overlaps(count, condition):
    """Conversations the diarizer was not tuned on (seeds 500-502 tuned it): the speaker count, DER, and
    overlapped speech given to two speakers."""
    pytest.importorskip("pyannote.metrics")
    from audioflow.speech.diarize import Diarizer
    from bench_diarize import score

    y, sr, truth = conversation(VOICES[:count], turns=10, seed=count, overlap=0.3, condition=condition)
    turns = Diarizer()(y, sr)
    result = score(truth, [(t.start, t.end, t.label) for t in turns])
    assert result["count_ok"] == 1.0, result
    assert result["der"] < 0.08, result  # measured 0.002, 0.033, 0.000
    assert result["overlap_recall"] > 0.6, result  # measured 0.95, 0.81, 0.86


@pytest.mark.slow
def test_the_diarizer_on_awkward_real_inputs():
    """No speech, one speaker, 8 kHz, stereo with a silent channel, music-like tones: a sensible answer, never
    a crash; turns stay inside the recording and overlap only across speakers."""
    from audioflow.speech.diarize import DiarizeOptions, Diarizer

    diarizer = Diarizer()
    assert diarizer(np.zeros(16000 * 20, np.float32), 16000) == []
    assert diarizer(np.zeros(0, np.float32), 16000) == []
    one, sr, _ = conversation(VOICES[:1], turns=6, seed=601)
    assert {t.label for t in diarizer(one, sr)} == {"SPEAKER_00"}
    two, sr, _ = conversation(VOICES[:2], turns=8, seed=602, condition="telephone")
    assert sr == 8000 and len({t.label for t in diarizer(two, sr)}) == 2
    stereo = np.stack([two, np.zeros_like(two)])
    turns = diarizer(stereo, sr)
    assert len({t.label for t in turns}) == 2
    assert all(0 <= t.start < t.end <= len(two) / sr + 1e-6 for t in turns)
    for a in turns:  # one speaker's turns never overlap each other
        assert not any(b is not a and b.label == a.label and b.start < a.end and a.start < b.end for b in turns)
    t = np.arange(16000 * 15) / 16000
    chords = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330)).astype(np.float32) * 0.1
    assert len({t.label for t in diarizer(chords, 16000)}) <= 1
    assert len({t.label for t in diarizer(two, sr, DiarizeOptions(num_speakers=5))}) <= 5


@pytest.mark.slow
def test_the_stream_labels_real_speakers_online():
    """``/v1/stream`` with ``speakers``: every utterance's speech_end and final transcript carry a label, given
    from what was heard so far, and the labels follow the real speakers."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from audioflow.serve import ServeSettings, create_app
    from serving import WS, local

    y, sr, truth = conversation(VOICES[:2], turns=8, seed=21, overlap=0.0)
    with local(create_app(ServeSettings(workers=1))) as client, client.websocket_connect(WS) as ws:
        ws.send_json({"sample_rate": sr, "encoding": "float32", "tasks": ["vad", "speakers"]})
        assert ws.receive_json()["type"] == "ready"
        for start in range(0, len(y), sr // 10):
            ws.send_bytes(y[start:start + sr // 10].astype("<f4").tobytes())
        ws.send_json({"type": "end"})
        events = []
        while not events or events[-1]["type"] != "done":
            events.append(ws.receive_json())
    ends = [e for e in events if e["type"] == "speech_end"]
    assert ends and all("speaker" in e for e in ends)
    assert {e["speaker"] for e in ends} == {"SPEAKER_00", "SPEAKER_01"}
    agree = 0
    mapping: dict[str, str] = {}
    for e in ends:  # each utterance's true speaker: the one whose turns cover most of it
        cover = {}
        for start, end, name in truth:
            cover[name] = cover.get(name, 0.0) + max(0.0, min(end, e["end"]) - max(start, e["start"]))
        true = max(cover, key=cover.get)
        agree += mapping.setdefault(e["speaker"], true) == true
    assert agree / len(ends) >= 0.9, (agree, len(ends))


@pytest.mark.slow
def test_the_stream_ends_a_final_where_the_voice_changes():
    """Real voices taking turns with short pauses and overlaps (the VAD hears one utterance across a change):
    the stream's state splits the speech where pyannote's segmentation hears another voice, so fewer finals
    than VAD utterances hold half a second or more of two people speaking alone (at most one here); each
    split comes within ``MAX_SPLIT_AGE_S`` (and one look) of its change."""
    from audioflow.serve.stream import CHANGE_EVERY_S, MAX_SPLIT_AGE_S, StreamState

    y, sr, truth = conversation(VOICES[:2], turns=6, seed=31, overlap=0.5)
    state = StreamState({"sample_rate": sr, "encoding": "float32", "tasks": ["vad", "speakers"]})
    finals, utterances, changes = [], [], []
    for start in range(0, len(y), sr // 10):
        answer = state.feed(y[start:start + sr // 10], start + sr // 10 >= len(y), False)
        finals += [(begin, begin + len(clip) / 16000) for begin, clip, _ in answer["finals"]]
        utterances += [(e["start"], e["end"]) for e in answer["events"] if e["type"] == "speech_end"]
        changes += [(e["time"], answer["now"]) for e in answer["events"] if e["type"] == "speaker_change"]
    assert changes and all(found - at <= MAX_SPLIT_AGE_S + CHANGE_EVERY_S + 0.1 for at, found in changes), changes
    grid = np.arange(0, len(y) / sr, 0.01)
    talking = {name: np.zeros(len(grid), bool) for _, _, name in truth}
    for start, end, name in truth:
        talking[name] |= (grid >= start) & (grid < end)
    alone = sum(t.astype(int) for t in talking.values()) == 1

    def two_people(start: float, end: float) -> bool:
        inside = (grid >= start) & (grid < end) & alone
        return sorted(float(np.sum(t & inside)) * 0.01 for t in talking.values())[-2] >= 0.5

    spanning = sum(two_people(*f) for f in finals)
    assert spanning <= 1 and spanning < sum(two_people(*u) for u in utterances), (finals, utterances)


@pytest.mark.slow
def test_online_labels_and_the_overlap_count_take_any_length():
    """The new entry points into the models with 0, 1 and odd lengths (around the 0.1 s CAM++ minimum, the 10 s
    chunk and its multiples): a label or None, a count per frame, a change inside the audio or None, never an
    exception."""
    from audioflow.speech.diarize import Diarizer, OnlineSpeakers, SpeakerChanges
    from audioflow.speech.segmentation import FRAME_STEP

    diarizer = Diarizer()
    online = OnlineSpeakers(diarizer.encoder)
    speech, _, _ = conversation(VOICES[:1], turns=2, seed=7)
    for length in (0, 1, 1599, 1600, 1601, 23999, 24001, 37_777):
        label = online.label(speech[:length])
        assert (label is None) == (length < 1600) and (label is None or label.startswith("SPEAKER_"))
    changes = SpeakerChanges(diarizer.segmenter)
    for length in (0, 1, 4001, 159_999, 160_000, 160_001, 250_007):
        audio = speech[:length] if length <= len(speech) else np.resize(speech, length)
        count = diarizer.segmenter.speaker_count(audio)
        assert len(count) == int(np.ceil(length / (FRAME_STEP * 16000))) and set(np.unique(count)) <= {0, 1, 2, 3}
        for since, max_age in ((0.0, None), (length / 32000, 1.0), (length / 16000 + 5, None)):
            change = changes.first_change(audio, since, max_age)
            assert change is None or since <= change <= length / 16000


@pytest.mark.slow
@pytest.mark.parametrize("condition", ["clean", "telephone"])
def test_batched_transcription_of_a_real_voice_loses_no_words(condition):
    """A real person's prompts with their exact text (seeds 0-2 are the benchmark's; this one is not): windows
    decoded in batches are as accurate as one at a time, every word once and in order."""
    pytest.importorskip("faster_whisper")
    from jiwer import wer

    from audioflow.speech import Transcriber
    from realspeech import english_prompts, monologue, normalise

    prompts = english_prompts()
    if not prompts:
        pytest.skip("needs asterisk-core-sounds-en (scripts/setup.sh as root)")
    y, sr, said = monologue(prompts, 16, seed=11, condition=condition)
    transcriber = Transcriber()
    batched = transcriber(y, sr, language="en")
    one_by_one = transcriber(y, sr, language="en", batch_size=1)
    errors = wer(normalise(said), normalise(batched.text)), wer(normalise(said), normalise(one_by_one.text))
    assert errors[0] <= 0.03 and errors[0] <= errors[1] + 0.02, errors  # measured 0.006 and 0.006 both ways
    starts = [w.start for w in batched.words]
    assert starts == sorted(starts) and all(0 <= s <= len(y) / sr for s in starts)


@pytest.mark.slow
def test_transcription_of_awkward_real_inputs():
    """Nothing, one sample, silence, noise: empty transcripts, no error; six channels or 44.1 kHz: the words of
    the mono 16 kHz recording."""
    pytest.importorskip("faster_whisper")
    from audioflow.speech import Transcriber
    from realspeech import english_prompts, monologue

    prompts = english_prompts()
    if not prompts:
        pytest.skip("needs asterisk-core-sounds-en (scripts/setup.sh as root)")
    transcriber = Transcriber()
    for nothing in (np.zeros(0, np.float32), np.zeros(1, np.float32), np.zeros(16000 * 40, np.float32),
                    np.random.default_rng(0).normal(0, 0.1, 16000 * 35).astype(np.float32)):
        assert transcriber(nothing, 16000, language="en").words == []
    y, sr, _ = monologue(prompts, 6, seed=21)
    mono = transcriber(y, sr, language="en").text
    assert len(mono.split()) > 20
    assert transcriber(np.tile(y, (6, 1)), sr, language="en").text == mono
    at_44k = np.interp(np.arange(0, len(y), sr / 44100), np.arange(len(y)), y).astype(np.float32)
    assert abs(len(transcriber(at_44k, 44100, language="en").words) - len(mono.split())) <= 2
