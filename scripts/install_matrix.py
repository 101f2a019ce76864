"""audioflow as users install it: build the sdist and the wheel, install the wheel into a fresh virtual
environment per extra the docs name, weigh each environment, and run scripts/smoke_extra.py in it.

    python scripts/install_matrix.py                       # every extra; results in build/install-matrix/
    python scripts/install_matrix.py --extras core,serve   # some of them
    python scripts/install_matrix.py --readme              # and README.md's table, benchmarks/results/ JSON

The repository's own `dev` environment holds every extra at once, so only this shows what `pip install
'audioflow[speech]'` alone gives. Torch: the environments whose extra needs it get ``--torch`` first (here
the CPU wheel 2.13.0 on this machine's disk, as a CPU user installs it from PyTorch's CPU index); pip's
wheel cache is shared, so a second run downloads nothing. Run with the dev environment's Python (it makes
the workspace's audio with NumPy and soundfile, and the S3 stand-in with moto).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOUNDS = Path("/usr/share/asterisk/sounds")
SONIC_PI = Path("/usr/share/sonic-pi/samples")
# extra -> what the README says it gives (the table's second column)
EXTRAS = {
    "core": "decoding, info, save, stream, resampling, remote reads through fsspec, the command line",
    "train": "features, augmentations, AudioDataLoader, packed datasets (torch, pyarrow)",
    "speech": "voice activity (Silero), and torch/onnxruntime for the speech models",
    "models": "speech + offline weights: Whisper tiny.en, CAM++ and segmentation (diarize), DeepFilterNet, "
              "RNNoise, Piper, Spleeter",
    "music": "train + analyze (tempo, beats, key), loudness, fingerprints",
    "separate": "train + Spleeter's 2-stem weights (separate, denoise:method=separate)",
    "serve": "speech + the HTTP/WebSocket server",
    "ray": "the Ray engine and audioflow.ray",
    "remote": "s3://, gs:// (s3fs, gcsfs)",
    "all": "every extra above",
}
NEEDS_TORCH = {"train", "speech", "models", "music", "separate", "serve", "all"}
MARKERS = ("<!-- install-matrix:start -->", "<!-- install-matrix:end -->")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", default=",".join(EXTRAS), help="comma-separated (core: no extra)")
    parser.add_argument("--work", default=str(ROOT / "build" / "install-matrix"), help="work folder")
    parser.add_argument("--torch", default="torch==2.13.0", help="torch requirement installed first where an extra "
                        "needs torch ('' lets the extra pull PyPI's torch)")
    parser.add_argument("--keep", action="store_true", help="keep the environments")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's table from this run")
    args = parser.parse_args()
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    unknown = set(extras) - set(EXTRAS)
    if unknown:
        parser.error(f"unknown extras {sorted(unknown)}; known: {', '.join(EXTRAS)}")
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    wheel = build(work / "dist")
    workspace = make_workspace(work / "workspace")
    moto = start_moto(workspace) if "remote" in extras else None
    results = []
    try:
        for extra in extras:
            results.append(try_extra(extra, wheel, work, workspace, args.torch, args.keep, moto))
            print(f"== {extra}: {'ok' if results[-1]['ok'] else 'FAILED'}, {results[-1]['mb']} MB, "
                  f"installed in {results[-1]['install_s']} s", flush=True)
    finally:
        if moto is not None:
            moto[0].terminate()
    report = {"wheel": wheel.name, "python": sys.version.split()[0], "torch": args.torch or "from PyPI",
              "results": results}
    (work / "install-matrix.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.readme:
        write_readme_table(report)
        (ROOT / "benchmarks" / "results" / "install-matrix.json").write_text(json.dumps(report, indent=2) + "\n")
    failed = [r["extra"] for r in results if not r["ok"]]
    print(f"install matrix: {len(results) - len(failed)} of {len(results)} extras ok"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


def build(dist: Path) -> Path:
    """The sdist, and the wheel built from it (so the sdist is proven complete); their contents checked."""
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], check=True,
                   stdout=subprocess.DEVNULL)
    wheel = next(dist.glob("audioflow-*.whl"))
    sdist = next(dist.glob("audioflow-*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    for wanted in ("audioflow/py.typed", "audioflow/serve/static/index.html", "audioflow/cli.py"):
        if wanted not in names:
            raise SystemExit(f"{wheel.name} lacks {wanted}")
    if not any(re.match(r"audioflow/dsp/_iir\..*(so|pyd)$", n) for n in names):
        print(f"note: {wheel.name} has no compiled IIR kernel (no C compiler?): filters run in the frequency "
              "domain", flush=True)
    with tarfile.open(sdist) as tar:
        members = {Path(m).relative_to(Path(m).parts[0]).as_posix() for m in tar.getnames() if "/" in m}
    for wanted in ("setup.py", "pyproject.toml", "src/audioflow/dsp/_iir.c", "README.md", "LICENSE", "CHANGELOG.md"):
        if wanted not in members:
            raise SystemExit(f"{sdist.name} lacks {wanted}")
    print(f"built {sdist.name} and {wheel.name} ({wheel.stat().st_size // 1024} KB)", flush=True)
    return wheel


def make_workspace(folder: Path) -> Path:
    """Real recordings for the checks: a prompt read by Allison (talk.wav, 8 kHz, as shipped), a conversation
    of Allison and Carlo taking turns (conversation.wav, 16 kHz), a Sonic Pi drum loop (song.flac), and class
    folders of their prompts (clips/allison, clips/carlo)."""
    import numpy as np
    import soundfile as sf

    from audioflow import load, save

    folder.mkdir(parents=True)
    allison, carlo = SOUNDS / "en_US_f_Allison", SOUNDS / "it_IT_m_Carlo"
    if not allison.is_dir() or not carlo.is_dir():
        raise SystemExit("the checks need Asterisk's prompts: scripts/setup.sh installs them (as root)")
    shutil.copy(allison / "conf-onlyperson.wav", folder / "talk.wav")
    theirs = sorted(p for p in carlo.glob("*.wav") if p.stat().st_size > 40000)[:6]
    ours = [allison / f"{name}.wav" for name in ("all-circuits-busy-now", "vm-intro", "conf-onlyperson",
                                                 "please-try-call-later", "dir-welcome", "one-moment-please")]
    pause = np.zeros(8000, np.float32)
    turns = []
    for i in range(0, 6, 2):  # three turns each, two prompts per turn
        for path in (*ours[i:i + 2], None, *theirs[i:i + 2], None):
            turns.append(pause if path is None else np.concatenate([load(path, sr=16000)[0], pause[:3200]]))
    save(folder / "conversation.wav", np.concatenate(turns), 16000)
    loop, sr = sf.read(SONIC_PI / "loop_garzul.flac", dtype="float32")
    sf.write(folder / "song.flac", np.concatenate([loop, loop]), sr)
    for name, paths in (("allison", ours[:4]), ("carlo", theirs[:4])):
        (folder / "clips" / name).mkdir(parents=True)
        for path in paths:
            shutil.copy(path, folder / "clips" / name / path.name)
    save(folder / "talk.flac", load(folder / "talk.wav", sr=16000)[0], 16000)
    return folder


def start_moto(workspace: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """A moto S3 server on loopback with s3://bucket/talk.flac, and the environment that points at it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    import boto3

    os.environ.update(env)
    for _ in range(100):
        try:
            client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
            client.create_bucket(Bucket="bucket")
            break
        except Exception:
            time.sleep(0.1)
    client.upload_file(str(workspace / "talk.flac"), "bucket", "talk.flac")
    return server, env


def try_extra(extra: str, wheel: Path, work: Path, workspace: Path, torch: str, keep: bool,
              moto: tuple[subprocess.Popen, dict[str, str]] | None) -> dict:
    """One fresh environment: install, weigh, check."""
    env_dir = work / f"env-{extra}"
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    log = work / f"install-{extra}.log"
    with log.open("w") as out:
        if extra in NEEDS_TORCH and torch:
            subprocess.run([*pip, torch], check=True, stdout=out, stderr=subprocess.STDOUT)
        target = str(wheel) if extra == "core" else f"audioflow[{extra}] @ {wheel.as_uri()}"
        installed = subprocess.run([*pip, target], stdout=out, stderr=subprocess.STDOUT)
    install_s = round(time.monotonic() - started)
    mb = round(sum(f.stat().st_size for f in env_dir.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20)
    if installed.returncode != 0:
        return {"extra": extra, "ok": False, "mb": mb, "install_s": install_s, "notes": [log.read_text()[-3000:]]}
    case = workspace.parent / f"case-{extra}"
    shutil.copytree(workspace, case)
    env = {**os.environ, **(moto[1] if moto else {})}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    checked = subprocess.run([str(env_dir / "bin" / "python"), str(ROOT / "scripts" / "smoke_extra.py"), extra,
                              str(case)], capture_output=True, text=True, env=env, timeout=1800)
    print(checked.stdout, end="", flush=True)
    if checked.returncode != 0:
        print(checked.stderr[-3000:], flush=True)
    if not keep:
        shutil.rmtree(env_dir, ignore_errors=True)
        shutil.rmtree(case, ignore_errors=True)
    notes = [line.split(": ", 1)[-1] for line in checked.stdout.splitlines() if line.startswith(("ok", "FAILED"))]
    return {"extra": extra, "ok": checked.returncode == 0, "mb": mb, "install_s": install_s, "notes": notes}


def write_readme_table(report: dict) -> None:
    """README.md's table of extras and sizes, between its markers, from this run."""
    rows = ["| `pip install` | what it gives | environment (MB) |", "| --- | --- | --- |"]
    for result in report["results"]:
        name = "audioflow" if result["extra"] == "core" else f"'audioflow[{result['extra']}]'"
        status = "" if result["ok"] else " (check failed)"
        rows.append(f"| `{name}` | {EXTRAS[result['extra']]}{status} | {result['mb']:,} |")
    rows.append("")
    rows.append(f"Sizes of a fresh virtual environment (Python {report['python']}, pip and setuptools included) with "
                f"the wheel and the extra, torch being {report['torch']} (the CPU build) where the extra needs it; "
                "measured by `scripts/install_matrix.py`, which also runs each extra's checks there.")
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    readme.write_text(text[:start] + "\n" + "\n".join(rows) + "\n" + text[end:])


if __name__ == "__main__":
    sys.exit(main())
