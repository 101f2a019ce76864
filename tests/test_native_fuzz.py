"""Every library entry point that reaches native code (DeepFilterNet and RNNoise through ctypes, Silero on
ONNX Runtime, WebRTC VAD, CTranslate2's Whisper, the diarizer, libsndfile/FFmpeg/LAME/dr_flac decoders and
encoders, Piper/espeak-ng/flite) fed odd lengths (0, 1, 479-481 samples...), rates (1 Hz-192 kHz),
channel counts (1-64), sample values (NaN, Inf, ±1e30, denormals) and text. Each entry point runs in a
child process (tests/native_fuzz_child.py), so a heap corruption or a segfault is a failed test, not a dead
test run. Every case must end in a result or an AudioflowError; nothing else, and no crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("native_fuzz_child.py")


def run_child(entry: str, timeout: float = 600) -> list[dict]:
    done = subprocess.run([sys.executable, str(CHILD), entry], capture_output=True, text=True, timeout=timeout,
                          cwd=CHILD.parent)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    started = [line["case"] for line in lines if set(line) == {"case"}]
    assert done.returncode == 0, (f"{entry}: the child died ({done.returncode}) during case {started[-1]!r}: "
                                  f"{done.stderr[-2000:]}")
    assert lines and lines[-1].get("done"), f"{entry}: the child stopped early: {done.stderr[-2000:]}"
    results = [line for line in lines if "ok" in line]
    assert len(results) == len(started)
    uncaught = [r for r in results if not r["ok"] and r["error"].startswith("UNCAUGHT")]
    assert not uncaught, uncaught[:5]
    return results


def by_case(results: list[dict]) -> dict[str, dict]:
    return {r["case"]: r for r in results}


@pytest.mark.parametrize("method", ["deepfilternet", "rnnoise", "spectral"])
def test_denoisers_survive_every_length_rate_and_value(method):
    """The issue's crash: 481 samples at 48 kHz (under 2 s, not whole 10 ms frames) aborted the interpreter
    in the priming slice. Every length now gives audio of the same length, finite."""
    results = by_case(run_child(method))
    for n in (0, 1, 479, 480, 481, 959, 4097):
        for sr in (8000, 16000, 48000, 192000):
            r = results[f"{method} n={n} sr={sr}"]
            assert r["ok"] and r["finite"], r
    for sr in (1, 7, 3999):
        assert results[f"{method} bad rate {sr}"]["error"] == "ParameterError"
    assert results[f"{method} values=nan"]["error"] == "InvalidAudioError"
    assert results[f"{method} values=inf"]["error"] == "InvalidAudioError"
    assert results[f"{method} values=huge"]["error"] == "InvalidAudioError"  # ±1e30 poisoned RNNoise's state
    assert results[f"{method} values=denormal"]["ok"] and results[f"{method} values=silence"]["ok"]
    assert results[f"{method} channels=8"]["ok"]
    assert results[f"{method} float64 strided"]["ok"]  # copied to contiguous float32 before the native call
    assert results[f"{method} 3-d"]["error"] == "ParameterError"


def test_streamed_denoising_in_odd_blocks_keeps_length():
    """Blocks of 1, 7, 479, 481 and 4801 samples through the streamed denoisers at four rates: same length
    back as sent (the model's 30 ms delay was lost at the end before), finite."""
    for r in run_child("denoise-stream"):
        assert r["ok"] and r["finite"], r


@pytest.mark.parametrize("engine", ["silero", "webrtc"])
def test_vads_survive_every_length_rate_and_value(engine):
    results = by_case(run_child(engine))
    assert all(results[f"{engine} n={n} sr={sr}"]["ok"] for n in (0, 1, 479, 481, 4097) for sr in (4000, 192000))
    assert results[f"{engine} bad rate 1"]["error"] == "ParameterError"
    assert results[f"{engine} values=nan"]["error"] == "InvalidAudioError"
    assert results[f"{engine} values=huge"]["error"] == "InvalidAudioError"
    assert results[f"{engine} channels=6"]["ok"]


def test_encoders_survive_odd_rates_and_channel_counts():
    """Every output format x rates 1 Hz-192 kHz x 1, 2, 8 and 64 channels: bytes that decode back, or a
    clear error (Opus and MP3 take two channels at most, AAC seven here); no IndexError from a layout table,
    no heap address in a message."""
    results = by_case(run_child("encode"))
    for fmt in ("wav", "flac", "ogg", "opus", "mp3", "m4a", "aiff"):
        for sr in (8000, 22050, 44100):
            r = results[f"encode {fmt} sr={sr} channels=1"]
            assert r["ok"] and r["frames"] > 0, r
    for sr in (4000, 8000, 44100, 96000):
        assert results[f"encode m4a sr={sr} channels=2"]["ok"], results[f"encode m4a sr={sr} channels=2"]
    assert results["encode m4a sr=44100 channels=8"]["error"] == "ParameterError"
    assert results["encode opus sr=44100 channels=8"]["error"] == "ParameterError"
    assert not any("0x" in r.get("message", "") for r in results.values())


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["transcribe", "diarize"])
def test_speech_models_survive_odd_inputs(entry):
    results = by_case(run_child(entry))
    assert all(results[f"{entry} n={n} sr={sr}"]["ok"] for n in (0, 1, 479, 481, 16001) for sr in (8000, 44100))
    assert results[f"{entry} values=nan"]["error"] == "InvalidAudioError"
    assert results[f"{entry} values=huge"]["error"] == "InvalidAudioError"
    assert results[f"{entry} bad rate 1"]["error"] == "ParameterError"


def test_decoders_survive_odd_headers():
    """WAV, FLAC, AIFF and Vorbis files of 0-481 frames at 1 Hz-192 kHz with 1-8 channels: load (native and
    16 kHz mono) and stream agree on the length, or a clear error."""
    results = run_child("decode")
    decoded = [r for r in results if r["ok"]]
    assert len(decoded) > 150
    assert all(r["error"] == "DecodeError" for r in results if not r["ok"])
    for r in decoded:
        assert abs(r["streamed"] - r["mono"]) <= 1, r


@pytest.mark.slow
def test_synthesis_survives_odd_text():
    """Piper, espeak-ng and flite with empty, control-character, 3000-character, emoji, bidi-override and
    markup text at rates 0.25-4: speech, or a ParameterError for text with nothing to say."""
    results = run_child("synthesize")
    assert all(r["ok"] or r["error"] == "ParameterError" for r in results)
    assert sum(r["ok"] for r in results) >= 50


def test_iir_kernel_survives_every_shape_value_and_plan():
    results = by_case(run_child("iir"))
    assert all(r["ok"] for r in results.values()), [r for r in results.values() if not r["ok"]][:3]
    assert results["iir rows=9 n=4097 order=5"]["finite"]
    assert results["iir raw lanes"].get("refused", 13) == 13
