"""The audioflow command, run as a user runs it: a subprocess of the installed entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def _folder_of_tones(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(16000 * 2) / 16000
    for i in range(count):
        audioflow.save(folder / f"tone{i}.wav", (0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)).astype(np.float32),
                       16000)
    return folder


def test_process_takes_both_documented_step_forms_and_explains_the_third(tmp_path):
    rec = _folder_of_tones(tmp_path / "recordings")
    joined = run("process", str(rec), "-o", str(tmp_path / "a"), "--no-progress",
                 "--steps", "split:method=silence,max=30,enhance:lufs=-23,analyze,features")
    assert "2 ok, 0 failed" in joined.stdout
    repeated = run("process", str(rec), "-o", str(tmp_path / "b"), "--no-progress", "-s", "split:method=silence,max=30",
                   "-s", "enhance:lufs=-23", "-s", "analyze", "-s", "features")
    assert "2 ok, 0 failed" in repeated.stdout
    documents = [json.loads((tmp_path / x / "results" / "tone0.json").read_text()) for x in "ab"]
    assert documents[0]["steps"] == documents[1]["steps"] and len(documents[0]["steps"]) == 4
    # the README's old form: the second step became an input
    spaced = run("process", str(rec), "-o", str(tmp_path / "c"), "--steps", "split:method=silence,max=30",
                 "enhance:lufs=-23", "analyze", check=False)
    assert spaced.returncode == 1 and "looks like a step" in spaced.stderr and "comma-separated" in spaced.stderr
    assert spaced.stderr.strip().count("\n") == 0


def test_process_exits_nonzero_when_every_input_failed(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"broken{i}.wav").write_bytes(b"RIFF" + os.urandom(200))
    failed = run("process", str(bad), "-o", str(tmp_path / "out"), "-s", "analyze", "--no-progress", check=False)
    assert failed.returncode == 1 and "0 ok, 3 failed" in failed.stdout and "every input failed" in failed.stderr
    _folder_of_tones(bad, 1)
    partly = run("process", str(bad), "-o", str(tmp_path / "out2"), "-s", "analyze", "--no-progress", check=False)
    assert partly.returncode == 0 and "1 ok, 3 failed" in partly.stdout


def test_say_lists_voices_without_text(tmp_path):
    voices = run("say", "--list-voices")
    assert "piper:joe" in voices.stdout and "espeak:" in voices.stdout
    missing = run("say", "Hello.", check=False)
    assert missing.returncode == 1 and "--output" in missing.stderr


def test_every_command_teaches_itself():
    """--help of every command: its examples (the documentation tests run them), flags without a <bool>
    type, and `process --help` pointing to `audioflow steps`."""
    from audioflow.cli import EXAMPLES

    top = run("--help").stdout
    assert "<bool>" not in top and "--install-completion" in top and "Examples" in top
    for command, examples in EXAMPLES.items():
        text = " ".join(run(command, "--help").stdout.split())
        assert "Examples" in text and "<bool>" not in text, command
        assert 2 <= len(examples) <= 4, command
        for example, _ in examples:
            assert " ".join(example.split()) in text, (command, example)
    process_help = run("process", "--help").stdout
    assert "audioflow steps NAME" in process_help and "transcribe" in process_help
    assert "Required" in process_help and "every input failed" in " ".join(process_help.split())


def test_steps_lists_types_defaults_units_and_bounds():
    listing = run("steps").stdout
    assert all(name in listing for name in ("split", "enhance", "vad", "diarize", "transcribe", "features"))
    enhance = " ".join(run("steps", "enhance").stdout.split())
    assert "lufs" in enhance and "float" in enhance and "LUFS" in enhance and ">= -70" in enhance
    assert "one of flac, wav, ogg, opus, mp3" in enhance and "false" in enhance
    unknown = run("steps", "nope", check=False)
    assert unknown.returncode == 1 and "unknown step 'nope'" in unknown.stderr


def test_info_keeps_long_paths_whole_when_piped(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "and-a-long-file-name-too.wav"
    deep.parent.mkdir()
    audioflow.save(deep, np.zeros(8000, np.float32), 16000)
    result = subprocess.run([sys.executable, "-m", "audioflow", "info", str(deep)], capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin"})  # no COLUMNS: a pipe's 80 columns
    header, row = result.stdout.splitlines()
    assert header.split("\t")[:3] == ["file", "format", "codec"]
    assert row.split("\t")[0] == str(deep) and row.split("\t")[5] == "0.500"
    # on a terminal of 80 columns: the table, the path folded whole over lines, not cut to "…"
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio at all")
    table = subprocess.run([sys.executable, "-m", "audioflow", "info", str(deep), str(bad)], capture_output=True,
                           text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "TTY_COMPATIBLE": "1",
                                                        "COLUMNS": "80", "NO_COLOR": "1"})
    assert table.returncode == 1 and "…" not in table.stdout
    cells = [line.split("│") for line in table.stdout.splitlines() if line.startswith("│")]
    assert "".join(c[1].strip() for c in cells) == f"{deep}{bad}"
    assert "recognised" in " ".join(c[3].strip() for c in cells)


def test_remote_errors_are_one_line_naming_the_url_and_cause():
    env = {"PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    for url, cause in (("s3://bucket/talk.flac", "no credentials"),
                       ("https://no-such-host.invalid/talk.wav", "not found (DNS)")):
        result = subprocess.run([sys.executable, "-m", "audioflow", "convert", url, "x.wav"], capture_output=True,
                                text=True, timeout=120, env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert result.stderr.strip().count("\n") == 0 and url in result.stderr and cause in result.stderr
