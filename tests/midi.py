"""Music with a known truth: MIDI written with mido and rendered to audio by fluidsynth with Debian's
General MIDI soundfont (both installed by scripts/setup.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOUNDFONTS = ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/sounds/sf2/FluidR3_GM.sf2")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)


def soundfont() -> str | None:
    return next((s for s in SOUNDFONTS if Path(s).exists()), None)


def available() -> bool:
    return shutil.which("fluidsynth") is not None and soundfont() is not None


def write_midi(path: Path, bpm: float, tracks: list[list[tuple[float, float, int, int, int]]],
               programs: dict[int, int] | None = None) -> None:
    """``tracks``: lists of (start beat, length in beats, channel, note, velocity)."""
    import mido

    ticks = 480
    song = mido.MidiFile(ticks_per_beat=ticks)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)])
    song.tracks.append(meta)
    for events in tracks:
        track = mido.MidiTrack()
        for channel, program in (programs or {}).items():
            track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        timeline = []
        for start, length, channel, note, velocity in events:
            timeline.append((round(start * ticks), 1, mido.Message("note_on", channel=channel, note=note,
                                                                   velocity=velocity)))
            timeline.append((round((start + length) * ticks), 0, mido.Message("note_off", channel=channel, note=note,
                                                                              velocity=0)))
        now = 0
        for tick, _, message in sorted(timeline, key=lambda e: (e[0], e[1])):
            track.append(message.copy(time=tick - now))
            now = tick
        song.tracks.append(track)
    song.save(path)


def render(midi: Path, wav: Path, sr: int = 22050) -> Path:
    subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-r", str(sr), "-F", str(wav), soundfont(), str(midi)],
                   check=True, capture_output=True, timeout=120)
    return wav


def drum_groove(bpm: float, bars: int, folder: Path) -> Path:
    """Kick on 1 and 3, snare on 2 and 4, closed hi-hat on eighths, a bass note per beat (channel 10 drums)."""
    drums, bass = [], []
    for beat in range(bars * 4):
        drums.append((beat, 0.25, 9, 36 if beat % 2 == 0 else 38, 110))
        for half in (0.0, 0.5):
            drums.append((beat + half, 0.1, 9, 42, 70))
        bass.append((beat, 0.9, 0, 40 + (beat // 4 % 2) * 5, 90))
    midi = folder / f"groove_{bpm:g}.mid"
    write_midi(midi, bpm, [drums, bass], programs={0: 33})
    return render(midi, folder / f"groove_{bpm:g}.wav")


def cadence(tonic: int, mode: str, folder: Path, bpm: float = 100.0) -> Path:
    """I-IV-V-I (major) or i-iv-V-i (minor, harmonic: raised leading tone in V) on piano, with the scale
    played once at the start, in the key of pitch class ``tonic``."""
    root = 48 + tonic
    third = 4 if mode == "major" else 3
    chords = [(0, third, 7), (5, 5 + (4 if mode == "major" else 3), 12), (7, 11, 14), (0, third, 7)]
    scale = MAJOR_SCALE if mode == "major" else (0, 2, 3, 5, 7, 8, 11)
    events = [(i * 0.5, 0.5, 0, root + 12 + step, 80) for i, step in enumerate((*scale, 12))]
    start = 4.0
    for repeat in range(2):
        for i, chord in enumerate(chords):
            for interval in chord:
                events.append((start + (repeat * 4 + i) * 2, 2, 0, root + interval, 85))
            events.append((start + (repeat * 4 + i) * 2, 2, 0, root - 12 + chord[0], 70))
    midi = folder / f"key_{tonic}_{mode}.mid"
    write_midi(midi, bpm, [events], programs={0: 0})
    return render(midi, folder / f"key_{tonic}_{mode}.wav")


def ballad(bpm: float, bars: int, folder: Path, drums: bool = False) -> Path:
    """Piano in 4/4: a chord on every beat (the first of the bar louder), a melody in eighth notes, a bass
    note on beats 1 and 3; with ``drums``, kick on 1 and 3, snare on 2 and 4 and closed hi-hat eighths (as
    :func:`drum_groove`). A slow piece whose eighths a tracker may take for the beat."""
    progression = [(48, 52, 55), (45, 48, 52), (41, 45, 48), (43, 47, 50)]  # C Am F G
    melody_steps = (0, 2, 4, 7, 9, 7, 4, 2)
    piano, kit = [], []
    for beat in range(bars * 4):
        chord = progression[beat // 4 % 4]
        for note in chord:
            piano.append((beat, 0.95, 0, note + 12, 88 if beat % 4 == 0 else 78))
        if beat % 2 == 0:
            piano.append((beat, 1.9, 0, chord[0] - 12, 80))
        for half in (0.0, 0.5):
            step = melody_steps[int((beat % 4) * 2 + half * 2)]
            piano.append((beat + half, 0.45, 0, chord[0] + 24 + step, 58))
        if drums:
            kit.append((beat, 0.25, 9, 36 if beat % 2 == 0 else 38, 100))
            for half in (0.0, 0.5):
                kit.append((beat + half, 0.1, 9, 42, 60))
    name = f"ballad_{bpm:g}{'_drums' if drums else ''}"
    write_midi(folder / f"{name}.mid", bpm, [piano, kit] if drums else [piano], programs={0: 0})
    return render(folder / f"{name}.mid", folder / f"{name}.wav")
