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
