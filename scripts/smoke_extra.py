"""What one extra of ``pip install 'audioflow[EXTRA]'`` gives, checked inside a fresh environment that holds
only the wheel and that extra (scripts/install_matrix.py makes the environment and the workspace).

    python smoke_extra.py EXTRA WORKSPACE

Each check runs what the docs show for that extra on real recordings (Asterisk's prompts, read by real
people; a Sonic Pi loop) and, for what the extra does not bring, checks that the command says in one line
which extra to install. Standard library only: the environment has nothing else we could rely on.
Exit status 0 when every check passed; each check prints one line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
AUDIOFLOW = str(BIN / "audioflow")
TIMEOUT_S = 300


class CheckFailed(Exception):
    pass


def sh(*args: str, rc: int = 0, timeout: float = TIMEOUT_S, env: dict[str, str] | None = None
       ) -> subprocess.CompletedProcess:
    """Run a command in the workspace; fail the check unless it exits with ``rc``."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if done.returncode != rc:
        raise CheckFailed(f"{' '.join(args)} exited {done.returncode} (expected {rc})\n"
                          f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}")
    return done


def python(code: str, rc: int = 0) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-c", code, rc=rc)


def names_extra(done: subprocess.CompletedProcess, extra: str) -> None:
    """The command failed with one line naming ``pip install 'audioflow[extra]'`` (no traceback)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    wanted = f"pip install 'audioflow[{extra}]'"
    if len(lines) != 1 or wanted not in lines[0] or "Traceback" in done.stderr:
        raise CheckFailed(f"expected one line naming {wanted}, got:\n{done.stderr[-3000:]}")


def missing(extra: str, *command: str) -> None:
    names_extra(sh(AUDIOFLOW, *command, rc=1), extra)


def result_of(folder: str, name: str) -> dict:
    """The result JSON ``process`` wrote for input ``name`` (its stem) in ``folder``."""
    found = sorted(Path(folder, "results").glob(f"{Path(name).stem}*.json"))
    if not found:
        raise CheckFailed(f"no result for {name} in {folder}/results")
    return json.loads(found[0].read_text())


# ---- the checks of each extra ------------------------------------------------------------------------------

def core() -> list[str]:
    """pip install audioflow: the command, decoding, info, save, stream, resampling; no torch."""
    sh(AUDIOFLOW, "--version")
    info = sh(AUDIOFLOW, "info", "talk.wav").stdout
    if "8000" not in info:
        raise CheckFailed(f"info does not show the 8 kHz rate: {info}")
    sh(AUDIOFLOW, "convert", "talk.wav", "talk16.flac", "--sr", "16000", "--mono")
    python("import sys, audioflow\n"
           "y, sr = audioflow.load('talk16.flac')\n"
           "assert sr == 16000 and y.ndim == 1 and len(y) > sr, (y.shape, sr)\n"
           "w, _ = audioflow.load('talk.wav', sr=16000, offset=0.5, duration=1.0)\n"
           "assert len(w) == 16000, len(w)\n"
           "assert len(audioflow.resample(y, 16000, 8000)) == (len(y) + 1) // 2\n"
           "audioflow.save('talk.opus', y, sr, bitrate=32)\n"
           "assert audioflow.info('talk.opus').codec == 'opus'\n"
           "blocks = list(audioflow.stream('talk16.flac', block_duration=0.5))\n"
           "assert sum(len(b) for b in blocks) == len(y)\n"
           "assert 'torch' not in sys.modules, 'torch was imported'\n")
    python("import importlib.util; assert importlib.util.find_spec('torch') is None, 'torch is installed'")
    sh(AUDIOFLOW, "process", "talk.wav", "-o", "out-split", "-s", "split:method=fixed,window=1")
    missing("speech", "process", "talk.wav", "-o", "out-vad", "-s", "vad")
    missing("music", "process", "song.flac", "-o", "out-analyze", "-s", "analyze")
    missing("serve", "serve", "--port", "1")
    missing("train", "pack", "clips/", "ds.afds", "-f", "audio=waveform:sr=16000")
    said = python("import audioflow\ntry:\n    import audioflow.features\n"
                  "except audioflow.MissingDependencyError as e:\n    print(e)\n"
                  "else:\n    raise SystemExit('audioflow.features imported without torch')").stdout
    if "pip install 'audioflow[train]'" not in said:
        raise CheckFailed(f"import audioflow.features without torch said: {said}")
    return ["command, info, convert, load/resample/save/stream without torch; split runs",
            "vad, analyze, serve, pack and audioflow.features name their extra in one line"]


def train() -> list[str]:
    """audioflow[train]: features, augmentations, AudioDataLoader, packed datasets."""
    python("import torch, audioflow\n"
           "from audioflow import augment as A, features as F\n"
           "y, sr = audioflow.load('talk.wav', sr=16000)\n"
           "x = torch.from_numpy(y)[None]\n"
           "lengths = torch.tensor([x.shape[-1]])\n"
           "x, lengths = A.Compose([A.TimeStretch(0.9, 1.1), A.AddNoise(snr_db=(10, 30)),"
           " A.LowPassFilter(16000)], seed=0)(x, lengths)\n"
           "mfcc, frames = F.MFCC(16000, n_mfcc=40)(x, lengths)\n"
           "assert mfcc.shape[1] == 40 and torch.isfinite(mfcc).all()\n")
    sh(AUDIOFLOW, "pack", "clips/", "mels.afds", "-f", "audio=mel:n_mels=64", "-f", "label=string")
    python("from audioflow import AudioDataLoader\n"
           "loader = AudioDataLoader('clips/', labels='label', batch_size=4, features='mfcc', n_mfcc=20,"
           " max_duration=2.0)\n"
           "n = sum(len(b) for b in loader)\n"
           "assert n == len(loader.dataset) and sorted(loader.classes) == ['allison', 'carlo'], loader.classes\n"
           "mels = AudioDataLoader('mels.afds', labels='label', batch_size=4)\n"
           "batch = next(iter(mels))\n"
           "assert batch.features.shape[1] == 64 and batch.labels is not None, batch\n")
    sh(AUDIOFLOW, "process", "talk.wav", "-o", "out-features", "-s", "features:name=logmel")
    return ["features, augmentations, loader over class folders, pack with labels, loader over stored mels"]


def speech() -> list[str]:
    """audioflow[speech]: voice activity (Silero); the models extra named for the rest."""
    sh(AUDIOFLOW, "process", "talk.wav", "-o", "out-vad", "-s", "vad")
    segments = result_of("out-vad", "talk.wav")["results"]["vad"]["segments"]
    if not segments:
        raise CheckFailed("vad found no speech in a real recording")
    missing("models", "process", "talk.wav", "-o", "out-asr", "-s", "transcribe")
    missing("models", "process", "talk.wav", "-o", "out-dia", "-s", "vad,diarize")
    return [f"vad: {len(segments)} speech segments", "transcribe and diarize name audioflow[models]"]


def models() -> list[str]:
    """audioflow[models]: vad,diarize,transcribe on a real two-person recording; speech synthesis."""
    sh(AUDIOFLOW, "process", "conversation.wav", "-o", "minutes", "-s", "vad,diarize,transcribe", timeout=600)
    results = result_of("minutes", "conversation.wav")["results"]
    speakers = {turn["speaker"] for turn in results["diarize"]["turns"]}
    text = " ".join(segment["text"] for segment in results["transcribe"]["segments"]).lower()
    if len(speakers) != 2:
        raise CheckFailed(f"diarize found {len(speakers)} speakers in a conversation of 2")
    if "circuits" not in text or "busy" not in text:
        raise CheckFailed(f"the transcript misses Allison's words: {text[:300]}")
    sh(AUDIOFLOW, "say", "Your order has shipped.", "-o", "notice.wav")
    return ["vad,diarize,transcribe: 2 speakers, Allison's words transcribed", "say (Piper)"]


def music() -> list[str]:
    """audioflow[music]: analyze (tempo, key, loudness) and enhance's loudness target."""
    sh(AUDIOFLOW, "process", "song.flac", "-o", "out-music", "-s", "analyze")
    analysis = result_of("out-music", "song.flac")["results"]["analyze"]
    tempo = analysis.get("music", {}).get("tempo_bpm")
    if not tempo:
        raise CheckFailed(f"analyze gave no tempo: {json.dumps(analysis)[:400]}")
    sh(AUDIOFLOW, "process", "talk.wav", "-o", "out-enhance", "-s", "enhance:lufs=-23")
    return [f"analyze: tempo {tempo:.0f} BPM", "enhance:lufs=-23"]


def separate() -> list[str]:
    """audioflow[separate]: vocals and accompaniment stems."""
    sh(AUDIOFLOW, "process", "song.flac", "-o", "out-stems", "-s", "separate", timeout=600)
    stems = sorted(p.name for p in Path("out-stems", "stems").glob("*"))
    if len(stems) != 2:
        raise CheckFailed(f"expected two stems, got {stems}")
    return ["separate: " + ", ".join(stems)]


def ray() -> list[str]:
    """audioflow[ray]: the Ray engine on this machine."""
    sh(AUDIOFLOW, "process", "talk.wav", "-o", "out-ray", "-s", "split:method=fixed,window=1", "--engine", "ray",
       timeout=600)
    return ["process --engine ray"]


def remote() -> list[str]:
    """audioflow[remote]: s3:// URLs (a moto server on loopback stands in for the bucket)."""
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise CheckFailed("no S3 endpoint to test against (AWS_ENDPOINT_URL)")
    sh(AUDIOFLOW, "info", "s3://bucket/talk.flac")
    python("import audioflow\n"
           "y, sr = audioflow.load('s3://bucket/talk.flac', offset=0.5, duration=1.0)\n"
           "assert len(y) == sr, (len(y), sr)\n")
    return ["info and a window of s3://bucket/talk.flac"]


def serve(transcribe: bool = False, analyze: bool = False) -> list[str]:
    """audioflow[serve]: the server starts and answers; endpoints whose extra is missing answer 501 naming it."""
    port = _free_port()
    server = subprocess.Popen([AUDIOFLOW, "serve", "--port", str(port), "--workers", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, server)
        status, body = _post(f"{base}/v1/vad", Path("talk.wav").read_bytes())
        if status != 200 or not body.get("segments"):
            raise CheckFailed(f"/v1/vad answered {status}: {body}")
        notes = [f"/v1/vad: {len(body['segments'])} segments"]
        for path, extra, works in (("/v1/transcribe", "models", transcribe), ("/v1/analyze", "music", analyze)):
            status, body = _post(base + path, Path("talk.wav").read_bytes())
            if works:
                if status != 200:
                    raise CheckFailed(f"{path} answered {status}: {body}")
                notes.append(f"{path}: 200")
            else:
                message = body.get("error", {}).get("message", "")
                if status != 501 or f"audioflow[{extra}]" not in message:
                    raise CheckFailed(f"{path} without its extra answered {status}: {body}")
                notes.append(f"{path}: 501 naming audioflow[{extra}]")
        status, body = _post(f"{base}/v1/audio/transcriptions", b"", "multipart/form-data; boundary=x")
        if status != 400 or "error" not in body:
            raise CheckFailed(f"an invalid OpenAI-style request answered {status}: {body}")
        return notes
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(base: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CheckFailed(f"the server exited {server.returncode}: {server.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/v1/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise CheckFailed("the server did not become healthy")


def _post(url: str, data: bytes, content_type: str = "audio/wav") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def all_extras() -> list[str]:
    """audioflow[all]: everything at once: the server transcribes and analyses (the models and music extras'
    own checks ran in their environments; the heavy ones are not repeated here)."""
    return [*serve(transcribe=True, analyze=True), *separate()]


CHECKS = {"core": core, "train": train, "speech": speech, "models": models, "music": music, "separate": separate,
          "ray": ray, "remote": remote, "serve": serve, "all": all_extras}


def main() -> int:
    extra, workspace = sys.argv[1], sys.argv[2]
    os.chdir(workspace)
    try:
        notes = CHECKS[extra]()
    except (CheckFailed, subprocess.TimeoutExpired) as e:
        print(f"FAILED [{extra}]: {e}", flush=True)
        return 1
    for note in notes:
        print(f"ok [{extra}]: {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
