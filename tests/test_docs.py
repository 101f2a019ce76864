"""Every example in README.md, docs/*.md and every command's --help runs as written.

Fenced ``python`` blocks of a document run in order in one namespace (as a reader runs them one after the
other), fenced ``bash`` blocks line by line in a shell, in a workspace that holds the files the documents
name (``speech.mp3``, ``recordings/``, ``clips/dog/``...: real speech from flite, tones, a dialogue, a
truncated WAV) and an S3 bucket (moto's server on 127.0.0.1, reached through ``AWS_ENDPOINT_URL``).
``localhost:8000`` becomes a server this test starts on a free loopback port; ``curl`` fails on an HTTP
error; ``audioflow serve`` lines are started, checked healthy and stopped, their ``--host 0.0.0.0`` bound to
127.0.0.1. A block is skipped only when the line before it is ``<!-- docs-test: skip REASON -->`` with
REASON one of ``SKIP_REASONS``. ``yaml`` blocks (cluster files) are parsed."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import audioflow as af
from conftest import free_port, moto_s3, s3_environment

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_REASONS = {
    "network": "needs a service on the internet",
    "ci": "the commands CI itself runs (make test would run this test inside itself)",
}
SR = 16000
KEY = "docs-example-key-0123456789abcdef"
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"<!--\s*docs-test:\s*skip\s+(\w+)\s*-->")


@dataclass
class Block:
    document: Path
    line: int
    language: str
    code: str
    skip: str | None

    def __str__(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def blocks(document: Path) -> list[Block]:
    """The fenced code blocks of ``document`` with a language, and their skip marks."""
    found, lines = [], document.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        mark = _MARK.search(lines[i - 1]) if i else None
        if match.group(1):
            found.append(Block(document, i + 1, match.group(1), "\n".join(lines[i + 1:end]) + "\n",
                               mark.group(1) if mark else None))
        i = end + 1
    return found


ALL_BLOCKS = [block for document in DOCUMENTS for block in blocks(document)]


def test_every_block_is_a_language_we_run_and_skips_have_a_known_reason():
    assert len(ALL_BLOCKS) >= 10
    for block in ALL_BLOCKS:
        assert block.language in ("python", "bash", "yaml"), f"{block}: {block.language}"
        assert block.skip is None or block.skip in SKIP_REASONS, f"{block}: skip reason {block.skip!r}"


def test_configuration_blocks_parse():
    """YAML (a `ray up` cluster file) cannot run here; it must at least be valid YAML of a mapping."""
    import yaml

    for block in ALL_BLOCKS:
        if block.language == "yaml":
            assert isinstance(yaml.safe_load(block.code), dict), str(block)


# ---------------------------------------------------------------------------------------------- workspace

def _speech(path: Path, text: str, voice: str = "slt") -> np.ndarray:
    if shutil.which("flite"):
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    else:
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    y, _ = af.load(path, sr=SR)
    return y


def _tone(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.2 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def _music(seconds: float, root: float, sr: int = 44100) -> np.ndarray:
    """A chord with a beat (decaying notes on every half second), stereo."""
    t = np.arange(round(seconds * sr)) / sr
    envelope = np.exp(-6 * (t % 0.5))
    chord = sum(np.sin(2 * np.pi * root * r * t) for r in (1, 1.26, 1.5)) / 3
    y = (0.4 * envelope * chord).astype(np.float32)
    return np.stack([y, 0.8 * y])


def _bursts(freq: float) -> np.ndarray:
    return np.concatenate([_tone(freq, 1.2), np.zeros(SR // 2, np.float32), _tone(freq * 1.5, 0.9),
                           np.zeros(SR // 2, np.float32), _tone(freq, 1.0)])


def _wait_for(url: str, seconds: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding every file the documents name, an S3 bucket 'bucket' (talk.flac, 70 s, public) on
    a moto server, and the environment their commands run in."""
    if not (shutil.which("flite") or shutil.which("espeak-ng")):
        pytest.skip("needs flite or espeak-ng for the documents' speech files")
    home = tmp_path_factory.mktemp("docs")
    one = _speech(home / "one.wav", "Please call Stella and ask her to bring these things with her from the store.")
    two = _speech(home / "two.wav", "We also need a small plastic snake and a big toy frog for the kids.", "rms")
    gap = np.zeros(SR // 2, np.float32)
    talk = np.concatenate([gap, one, gap, gap, two, gap])
    af.save(home / "talk.wav", talk, SR)
    af.save(home / "speech.mp3", talk, SR)
    af.save(home / "meeting.flac", np.concatenate([talk, gap, one, gap, two]), SR)
    af.save(home / "noisy.wav", talk + 0.05 * np.random.default_rng(0).standard_normal(len(talk)).astype(np.float32),
            SR)
    af.save(home / "hour.wav", np.tile(talk, 2), SR)
    for name in ("song.m4a", "song.mp3", "in.m4a"):
        af.save(home / name, _music(6.0, 220.0), 44100)
    whole = (home / "talk.wav").read_bytes()
    (home / "broken.wav").write_bytes(whole[:len(whole) // 2])  # the header declares twice what it holds
    for label, freqs in (("dog", (300, 350, 400, 450)), ("cat", (900, 1000, 1100, 1200))):
        (home / "clips" / label).mkdir(parents=True)
        for freq in freqs:
            af.save(home / "clips" / label / f"{label}{freq}.wav", _tone(freq, 1.5), SR)
    (home / "recordings").mkdir()
    for i, freq in enumerate((300, 440)):
        af.save(home / "recordings" / f"take{i}.flac", _bursts(freq), SR)
    (home / "meetings").mkdir()
    shutil.copy(home / "meeting.flac", home / "meetings" / "standup.flac")
    (home / "music").mkdir()
    for i, root in enumerate((196.0, 262.0)):
        af.save(home / "music" / f"song{i}.flac", _music(12.0, root), 44100)
    shutil.copy(home / "music" / "song0.flac", home / "music" / "song0-copy.flac")
    (home / "calls").mkdir()
    af.save(home / "calls" / "call0.wav", talk, SR)
    (home / "extra.csv").write_text("path\nrecordings/take0.flac\n")
    (home / "train.csv").write_text("path,label\n" + "".join(
        f"{p.relative_to(home)},{p.parent.name}\n" for p in sorted((home / "clips").rglob("*.wav"))))
    (home / "keys.txt").write_text(f"# one key per line\n{KEY}\n")
    from audioflow import store

    store.write(str(home / "train.csv"), str(home / "my.afds"),
                {"audio": store.WaveformField(SR), "label": store.StringField()}, num_workers=0, progress=False)
    cuts = home / "data" / "fbank" / "cuts_train.jsonl.gz"
    cuts.parent.mkdir(parents=True)
    with gzip.open(cuts, "wt") as f:
        for path in sorted((home / "clips").rglob("*.wav")):
            seconds = af.info(path).duration
            recording = {"id": path.stem, "sources": [{"type": "file", "channels": [0], "source": str(path)}],
                         "sampling_rate": SR, "num_samples": round(seconds * SR), "duration": seconds,
                         "channel_ids": [0]}
            supervision = {"id": path.stem + "-0", "recording_id": path.stem, "start": 0.0, "duration": seconds,
                           "channel": 0, "text": path.parent.name, "speaker": path.parent.name}
            f.write(json.dumps({"id": path.stem, "start": 0.0, "duration": seconds, "channel": 0,
                                "supervisions": [supervision], "recording": recording, "type": "MonoCut"}) + "\n")
    (home / "home").mkdir()

    with moto_s3("bucket", public=True) as endpoint:
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
        af.save(home / "long.flac", np.tile(talk, int(np.ceil(70 * SR / len(talk)))), SR)
        s3.put_object(Bucket="bucket", Key="talk.flac", Body=(home / "long.flac").read_bytes(), ACL="public-read")
        s3.put_object(Bucket="bucket", Key="calls/call0.wav", Body=(home / "calls" / "call0.wav").read_bytes())
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home / "home"),
               "SHELL": "/bin/bash", "COLUMNS": "120", "LANG": "C.UTF-8", **s3_environment(endpoint)}
        yield {"path": home, "env": env, "files": [str(p) for p in sorted((home / "clips").rglob("*.wav"))],
               "labels": [p.parent.name for p in sorted((home / "clips").rglob("*.wav"))]}


# ------------------------------------------------------------------------------------------------ python

def _python_documents() -> list:
    documents = sorted({block.document for block in ALL_BLOCKS if block.language == "python"})
    return [pytest.param(d, id=str(d.relative_to(ROOT)), marks=[pytest.mark.slow] if d.name in ("README.md", "api.md")
                         else []) for d in documents]


@pytest.mark.parametrize("document", _python_documents())
def test_python_examples_run_as_written(document, workspace, monkeypatch):
    monkeypatch.chdir(workspace["path"])
    for key, value in workspace["env"].items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    namespace = {"__name__": "__docs__", "files": workspace["files"], "labels": workspace["labels"]}
    for block in blocks(document):
        if block.language != "python" or block.skip:
            continue
        try:
            exec(compile(block.code, str(block), "exec"), namespace)  # the documentation's own code
        except Exception as e:
            raise AssertionError(f"{block} fails as written: {type(e).__name__}: {e}") from e
        finally:
            if "ray" in sys.modules and sys.modules["ray"].is_initialized():  # a local Ray the example started
                sys.modules["ray"].shutdown()


# -------------------------------------------------------------------------------------------------- shell

def _commands(code: str) -> list[str]:
    """Lines of a bash block, continuation lines joined, blank and comment-only lines left out."""
    joined = code.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


class Shell:
    """Runs documented command lines in the workspace; owns the servers they need."""

    def __init__(self, workspace: dict) -> None:
        self.cwd, self.env = workspace["path"], workspace["env"]
        self.port = free_port()
        self.server: subprocess.Popen | None = None

    def local(self, line: str) -> str:
        line = line.replace("localhost:8000", f"127.0.0.1:{self.port}")
        return re.sub(r"(^|[|;&(]\s*)curl ", r"\1curl -sS --fail-with-body ", line)

    def start_server(self, line: str) -> subprocess.Popen:
        args = line.replace("--host 0.0.0.0", "--host 127.0.0.1").split("#")[0].split()
        process = subprocess.Popen([*args, "--port", str(self.port)], cwd=self.cwd, env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _wait_for(f"http://127.0.0.1:{self.port}/v1/health", 180, process)
        except AssertionError:
            self.stop(process)
            raise
        return process

    @staticmethod
    def stop(process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def run(self, line: str, where: str) -> None:
        if line.split("#")[0].split()[:2] == ["audioflow", "serve"]:  # started, checked healthy, stopped
            self.stop(self.start_server(line))
            return
        if "127.0.0.1:" in self.local(line) and self.server is None:
            self.server = self.start_server("audioflow serve")
        # `; exit $?` keeps bash the command's parent, as a user's shell is (bash -c would exec a lone command,
        # and `--install-completion` finds the shell among its ancestors)
        done = subprocess.run(["bash", "-o", "pipefail", "-c", self.local(line) + "\nexit $?"], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{where}: `{line}` exited {done.returncode}:\n{done.stdout[-1500:]}\n" \
                                     f"{done.stderr[-3000:]}"

    def close(self) -> None:
        if self.server is not None:
            self.stop(self.server)


def _bash_blocks() -> list:
    return [pytest.param(block, id=str(block), marks=[pytest.mark.slow])
            for block in ALL_BLOCKS if block.language == "bash"]


@pytest.mark.parametrize("block", _bash_blocks())
def test_shell_examples_run_as_written(block, workspace):
    if block.skip:
        pytest.skip(f"{block}: {SKIP_REASONS[block.skip]}")
    shell = Shell(workspace)
    try:
        for line in _commands(block.code):
            shell.run(line, str(block))
    finally:
        shell.close()


@pytest.mark.slow
def test_every_help_example_runs(workspace):
    """The examples `audioflow COMMAND --help` shows are the ones run here, in order."""
    from audioflow.cli import EXAMPLES

    shell = Shell(workspace)
    try:
        for command, examples in EXAMPLES.items():
            for example, _ in examples:
                shell.run(example, f"audioflow {command} --help")
    finally:
        shell.close()
    assert (workspace["path"] / "table.tsv").read_text().count("\t") >= 12
