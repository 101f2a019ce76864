"""The audioflow command, run as a user runs it: a subprocess of the installed entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import audioflow


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audioflow", *args], capture_output=True, text=True,
                          timeout=300, check=check, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_version():
    assert run("--version").stdout.strip() == f"audioflow {audioflow.__version__}"


def test_info_table(corpus):
    out = run("info", str(corpus["flac"]), str(corpus["m4a"])).stdout
    assert "flac" in out and "aac" in out and "44100" in out and "2.000" in out


def test_info_reports_bad_files_and_exits_nonzero(corpus, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    result = run("info", str(corpus["flac"]), str(bad), check=False)
    assert result.returncode == 1 and "not a recognised audio format" in result.stdout


def test_convert(corpus, tmp_path):
    out = tmp_path / "out.flac"
    result = run("convert", str(corpus["mp3"]), str(out), "--sr", "16000", "--mono")
    assert "16000 Hz" in result.stdout
    y, sr = audioflow.load(out)
    assert sr == 16000 and y.ndim == 1 and abs(len(y) - 32000) < 200


def test_user_error_is_one_line_and_debug_shows_traceback(tmp_path):
    missing = str(tmp_path / "missing.wav")
    result = run("convert", missing, str(tmp_path / "x.wav"), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "missing.wav: no such file" in result.stderr
    result = run("--debug", "convert", missing, str(tmp_path / "x.wav"), check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.slow
def test_demo(tmp_path):
    out = tmp_path / "demo"
    result = run("demo", "--out", str(out), "--train-steps", "150")
    assert "left in" in result.stdout and "log-mel" in result.stdout
    assert "accuracy on unheard voices" in result.stdout and "clips/s" in result.stdout
    assert "audioflow process" in result.stdout and "10 ok, 0 failed" in result.stdout
    assert any(f.name.endswith(".augmented.wav") for f in Path(out).iterdir())
    files = list(Path(out).iterdir())
    for fmt in ("wav", "flac", "mp3", "ogg", "opus", "m4a", "aiff"):
        assert any(f.suffix == f".{fmt}" for f in files), fmt
    assert "tone_440hz.flac" in result.stdout


def test_pack(corpus, tmp_path):
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(corpus["flac"], src / "a.flac")
    shutil.copy(corpus["wav_pcm16"], src / "b.wav")
    (src / "c.wav").write_text("broken")
    out = tmp_path / "ds"
    result = run("pack", str(src), str(out), "--field", "audio=waveform:sr=16000", "--field", "mel=mel:n_mels=40",
                 "--workers", "0")
    assert "2 rows" in result.stdout and "skipped" in result.stdout and "c.wav" in result.stdout
    from audioflow import store

    ds = store.open(out)
    assert len(ds) == 2 and ds[0]["mel"].shape[0] == 40
    bad = run("pack", str(src), str(out), "--field", "audio=waveform", check=False)
    assert bad.returncode == 1 and "already exists" in bad.stderr
