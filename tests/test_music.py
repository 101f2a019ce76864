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


def test_key_and_mode_in_all_24_keys(tmp_path):
    wrong = []
    for tonic in range(12):
        for mode in ("major", "minor"):
            y, sr = af.load(midi.cadence(tonic, mode, tmp_path), sr=22050)
            found = key_and_mode(y, sr)
            if (found["tonic"], found["mode"]) != (PITCH_CLASSES[tonic], mode):
                wrong.append((PITCH_CLASSES[tonic], mode, found["key"]))
    assert not wrong


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
