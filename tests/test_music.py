"""Music analysis against known truth: MIDI with a set tempo and key, rendered by fluidsynth with a
General MIDI soundfont (scripts/setup.sh installs both)."""

from __future__ import annotations

import pytest

import audioflow as af
import midi
from audioflow.music import key_and_mode, tempo_and_beats
from audioflow.music.analysis import PITCH_CLASSES

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not midi.available(), reason="needs fluidsynth and a GM soundfont")]


@pytest.mark.parametrize("bpm", [75, 82, 90, 100, 110, 120, 128, 140, 150, 160])
def test_tempo_of_a_rendered_groove_without_octave_errors(bpm, tmp_path):
    y, sr = af.load(midi.drum_groove(bpm, 8, tmp_path), sr=22050)
    tempo, beats = tempo_and_beats(y, sr)
    assert abs(tempo - bpm) / bpm < 0.02  # within 2 %: no halving or doubling
    assert len(beats) >= 24


@pytest.mark.parametrize("drums", [False, True], ids=["piano", "piano and drums"])
@pytest.mark.parametrize("bpm", [60, 72, 96, 132, 180])
def test_tempo_of_slow_and_fast_pieces_at_the_beat_level(bpm, drums, tmp_path):
    """Issue 21: a slow piece with eighth-note hi-hats was read at twice its tempo (72 -> 144), a 180 BPM
    piece at half (90); the metrical-accent octave decision (rhythm.tempo_octave) puts both at the beat."""
    y, sr = af.load(midi.ballad(bpm, 8, tmp_path, drums=drums), sr=22050)
    tempo, beats = tempo_and_beats(y, sr)
    assert abs(tempo - bpm) / bpm < 0.02, tempo
    assert abs(len(beats) - 32) <= 3  # 8 bars of 4: a beat per beat, not per eighth or per half note


def test_key_and_mode_in_all_24_keys(tmp_path):
    wrong = []
    for tonic in range(12):
        for mode in ("major", "minor"):
            y, sr = af.load(midi.cadence(tonic, mode, tmp_path), sr=22050)
            found = key_and_mode(y, sr)
            if (found["tonic"], found["mode"]) != (PITCH_CLASSES[tonic], mode):
                wrong.append((PITCH_CLASSES[tonic], mode, found["key"]))
    assert not wrong


@pytest.mark.parametrize("piece", ["groove75", "groove160", "cadence", "noise"])
def test_rhythm_equals_librosa_on_rendered_music(piece, tmp_path):
    """Our NumPy rhythm code against librosa's (the reference it follows): onset envelope, tempo, DP beats,
    onset peaks and the HPSS split, on the same dB mel spectrogram."""
    import numpy as np

    librosa = pytest.importorskip("librosa")
    from audioflow.music import rhythm

    if piece == "noise":
        y, sr = (np.random.default_rng(0).standard_normal(22050 * 5) * 0.1).astype(np.float32), 22050
    elif piece == "cadence":
        y, sr = af.load(midi.cadence(3, "minor", tmp_path), sr=22050)
    else:
        y, sr = af.load(midi.drum_groove(int(piece[6:]), 8, tmp_path), sr=22050)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, hop_length=512)
    np.testing.assert_allclose(rhythm.power_to_db(mel), librosa.power_to_db(mel), atol=1e-4)
    envelope = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=sr, hop_length=512)
    np.testing.assert_allclose(rhythm.onset_envelope(rhythm.power_to_db(mel)), envelope, atol=1e-4)
    bpm = float(librosa.feature.tempo(onset_envelope=envelope, sr=sr, hop_length=512)[0])
    assert rhythm.tempo(envelope, sr / 512) == pytest.approx(bpm, rel=1e-9)
    _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=512, bpm=bpm)
    np.testing.assert_array_equal(rhythm.beat_track(envelope, bpm, sr / 512), beats)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sr, hop_length=512)
    np.testing.assert_array_equal(rhythm.peak_frames(envelope, sr / 512), onsets)
    mel256 = librosa.feature.melspectrogram(y=y, sr=sr, hop_length=512, n_mels=256)
    harmonic, percussive = librosa.decompose.hpss(mel256)
    reference = harmonic.sum() / (harmonic.sum() + percussive.sum())
    assert rhythm.harmonic_ratio(mel256) == pytest.approx(reference, abs=1e-5)


def test_analysis_compiles_nothing(tmp_path):
    """A fresh process analyses music without importing numba or librosa (their JIT cost ~15 s per process
    and tore shared caches when workers compiled together)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from audioflow.music import analyze_music\n"
            "r = analyze_music(np.random.default_rng(0).standard_normal(22050 * 4).astype(np.float32) * 0.1, 22050)\n"
            "assert r['tempo_bpm'] is None or r['tempo_bpm'] > 0\n"
            "print(sorted(m for m in ('numba', 'librosa') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_dedupe_finds_copies_reencodes_and_trims_only(tmp_path):
    """Three pieces; one copied as WAV, re-encoded to 64 kb/s MP3 at half level, and trimmed by 2 s:
    those pairs are reported, different pieces are not."""
    import itertools
    import json
    import subprocess
    import sys

    pytest.importorskip("chromaprint")
    songs = tmp_path / "songs"
    songs.mkdir()
    pieces = {name: af.load(path, sr=22050)[0] for name, path in (
        ("c_major", midi.cadence(0, "major", tmp_path)), ("d_minor", midi.cadence(2, "minor", tmp_path)),
        ("groove", midi.drum_groove(120, 8, tmp_path)))}
    for name, y in pieces.items():
        af.save(songs / f"{name}.flac", y, 22050)
    y = pieces["c_major"]
    af.save(songs / "copy.wav", y, 22050)
    af.save(songs / "reencoded.mp3", 0.5 * y, 22050, bitrate=64)
    af.save(songs / "trimmed.ogg", y[2 * 22050:], 22050)
    (songs / "broken.wav").write_bytes(b"RIFF....WAVE")
    result = subprocess.run([sys.executable, "-m", "audioflow", "dedupe", str(songs), "-o", str(tmp_path / "fp"),
                             "--json", "--workers", "2"], capture_output=True, text=True, check=True)
    pairs = {frozenset(p.rsplit("/", 1)[-1] for p in (d["a"], d["b"])): d
             for d in map(json.loads, result.stdout.splitlines())}
    family = ["c_major.flac", "copy.wav", "reencoded.mp3", "trimmed.ogg"]
    assert set(pairs) == {frozenset(p) for p in itertools.combinations(family, 2)}
    assert all(d["kind"] == "duplicate" for d in pairs.values())
