"""Scale-out, side by side in one run: an hour of real speech (conversations of Debian's Asterisk voices,
3-minute files) through `vad,transcribe` and through `enhance:lufs=-23,analyze`, with

1. the local engine, inputs and outputs on local disk (the baseline);
2. the local engine, inputs and outputs in S3 (a moto server on loopback);
3. the Ray engine on a one-raylet cluster (`ray start --head`), S3 in and out;
4. the Ray engine on a two-raylet cluster (the second joined with `ray start --address`), S3 in and out;

each as a user runs it: `audioflow process` in a fresh process, start-up included. Reports throughput
(x real time), the overhead of object storage and of Ray against the baseline (goal <= 10 %), and what N
nodes would give from the measured per-CPU rate. `--part pack` does the same for `audioflow pack` of an hour
of 10-second clips into a packed dataset of log-mels (the four configurations, `--engine ray` on Ray).
Writes the "scale" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_scale.py [--part all|process|pack] [--minutes 60] [--file-minutes 3]
        [--render-only]

The measurements are kept in benchmarks/results/scale.json; --render-only writes the section from them again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from realspeech import SR, conversation, speakers
from report import machine, write_section

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
PIPELINES = {"vad,transcribe": "vad,transcribe", "enhance,analyze": "enhance:lufs=-23,analyze:music=false"}
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def make_corpus(folder: Path, minutes: float, file_minutes: float) -> float:
    """Conversations of 3 of the real voices, ``file_minutes`` long each, adding up to ``minutes``."""
    voices = speakers()[:3]
    total, i = 0.0, 0
    while total < minutes * 60 - 1:
        parts, length = [], 0.0
        while length < file_minutes * 60:
            y, rate, _ = conversation(voices, turns=12, seed=1000 * i + len(parts))
            parts.append(y)
            length += len(y) / rate
        y = np.concatenate(parts)[: int(min(file_minutes * 60, minutes * 60 - total) * SR)]
        sf.write(folder / f"call{i:03d}.flac", y, SR, subtype="PCM_16")
        total += len(y) / SR
        i += 1
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_server(*buckets: str):
    import boto3

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            time.sleep(0.05)
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                              region_name="us-east-1")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield endpoint, client
    finally:
        server.terminate()
        server.wait()


@contextlib.contextmanager
def ray_cluster(raylets: int, env: dict[str, str]):
    """``raylets`` nodes on this machine sharing its cores (2 CPUs on one, or 1 CPU each on two)."""
    port, short = free_port(), tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    cpus = str(max(1, (os.cpu_count() or 2) // raylets))
    nodes = [subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--num-cpus", cpus, "--temp-dir", short,
                               "--include-dashboard", "false", "--disable-usage-stats", "--block"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    address = f"127.0.0.1:{port}"
    try:
        time.sleep(3)
        for _ in range(raylets - 1):
            nodes.append(subprocess.Popen([RAY, "start", "--address", address, "--num-cpus", cpus,
                                           "--disable-usage-stats", "--block"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        for _ in range(120):
            status = subprocess.run([RAY, "status", "--address", address], env=env, capture_output=True,
                                    text=True).stdout
            if status.count(" node_") >= raylets:
                break
            time.sleep(1)
        yield address
    finally:
        for node in reversed(nodes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait()


def process(env: dict[str, str], inputs: str, output: str, steps: str, *extra: str) -> tuple[float, dict]:
    from audioflow.pipeline.output import Output

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "audioflow", "process", inputs, "-o", output, "-s", steps,
                           "--no-progress", *extra], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{inputs} -> {output} ({steps}) failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    options = {"key": env["AWS_ACCESS_KEY_ID"], "secret": env["AWS_SECRET_ACCESS_KEY"],
               "client_kwargs": {"endpoint_url": env["AWS_ENDPOINT_URL"]}} if output.startswith("s3://") else None
    return wall, json.loads(Output(output, options).read_text("summary.json") or "{}")


def corpus_in_s3(tmp: Path, minutes: float, file_minutes: float, client, bucket: str,
                 endpoint: str) -> tuple[float, list[Path], dict[str, str]]:
    """The corpus in ``tmp/in`` and in ``bucket``: its seconds, its files, and the environment of the commands
    that read it (the moto server's endpoint and credentials, Ray without token auth)."""
    (tmp / "in").mkdir()
    seconds = make_corpus(tmp / "in", minutes, file_minutes)
    files = sorted((tmp / "in").iterdir())
    for path in files:
        client.upload_file(str(path), bucket, path.name)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp)), "RAY_AUTH_MODE": "disabled",
           "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    return seconds, files, env


def pack(env: dict[str, str], source: str, out: str, *extra: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "audioflow", "pack", source, out, "-f", "audio=mel:n_mels=80",
                           "--shard-size", "50", *extra], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"pack {source} -> {out} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return wall


def measure_pack(minutes: float) -> dict:
    """``audioflow pack`` of ``minutes`` of 10-second clips, log-mel 80, shards of 50: local engine on local
    disk and with S3, Ray on one raylet and on two (S3 in and out); every dataset checked whole."""
    from audioflow import store

    with tempfile.TemporaryDirectory() as tmp_name, moto_server("pack-in", "pack-out") as (endpoint, client):
        tmp = Path(tmp_name)
        seconds, files, env = corpus_in_s3(tmp, minutes, 10 / 60, client, "pack-in", endpoint)
        options = {"key": "bench", "secret": "bench", "client_kwargs": {"endpoint_url": endpoint}}
        print(f"pack corpus: {seconds / 3600:.2f} h in {len(files)} clips", flush=True)
        runs = {"local engine, local disk": pack(env, str(tmp / "in"), str(tmp / "out.afds")),
                "local engine, S3 in and out": pack(env, "s3://pack-in/", "s3://pack-out/local.afds")}
        for raylets in (1, 2):
            with ray_cluster(raylets, env) as address:
                name = f"Ray, {raylets} raylet{'s' if raylets > 1 else ''}, S3 in and out"
                runs[name] = pack(env, "s3://pack-in/", f"s3://pack-out/ray{raylets}.afds", "--engine", "ray",
                                  "--ray-address", address)
        reference = store.open(tmp / "out.afds")
        for name, wall in runs.items():
            where = {"local engine, S3 in and out": "local"}.get(name, f"ray{name[5]}")
            dataset = reference if name.endswith("local disk") else store.open(f"s3://pack-out/{where}.afds",
                                                                               storage_options=options)
            assert len(dataset) == len(files), (name, len(dataset))
            print(f"pack {name:36s} {wall:7.1f} s  {seconds / wall:6.1f}x realtime", flush=True)
    return {"audio_seconds": seconds, "files": len(files), "wall_seconds": {k: round(v, 2) for k, v in runs.items()}}


def measure(minutes: float, file_minutes: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name, moto_server("bench-in", "bench-out") as (endpoint, client):
        tmp = Path(tmp_name)
        seconds, files, env = corpus_in_s3(tmp, minutes, file_minutes, client, "bench-in", endpoint)
        print(f"corpus: {seconds / 3600:.2f} h in {len(files)} files", flush=True)
        rows: dict[str, dict[str, float]] = {}
        for label, steps in PIPELINES.items():
            tag = label.replace(",", "-")
            runs = {"local engine, local disk": process(env, str(tmp / "in"), str(tmp / f"out-{tag}"), steps),
                    "local engine, S3 in and out": process(env, "s3://bench-in/", f"s3://bench-out/{tag}/local",
                                                           steps)}
            for raylets in (1, 2):
                with ray_cluster(raylets, env) as address:
                    name = f"Ray, {raylets} raylet{'s' if raylets > 1 else ''}, S3 in and out"
                    runs[name] = process(env, "s3://bench-in/", f"s3://bench-out/{tag}/ray{raylets}", steps,
                                         "--engine", "ray", "--ray-address", address)
            for name, (wall, summary) in runs.items():
                assert summary["ok"] == len(files), (name, summary)
                print(f"{label:16s} {name:36s} {wall:7.1f} s  {seconds / wall:6.1f}x realtime", flush=True)
            rows[label] = {name: round(wall, 2) for name, (wall, _) in runs.items()}
    return {"machine": machine(), "audio_seconds": seconds, "files": len(files), "file_minutes": file_minutes,
            "cpus": os.cpu_count() or 2, "wall_seconds": rows}


def render(results: dict) -> str:
    seconds, cpus, rows = results["audio_seconds"], results["cpus"], results["wall_seconds"]
    lines = ["## Scale-out: the local engine, Ray and object storage", "",
             f"`bench_scale.py` on {results['machine']}.", "",
             f"{seconds / 3600:.2f} h of real speech (conversations of Debian's Asterisk voices, "
             f"{results['file_minutes']:g}-minute FLAC files), each configuration as a user runs it: `audioflow "
             "process` in a fresh process, start-up included; S3 is a moto server on loopback (its CPU time "
             "shares the same 2 cores); the Ray clusters are `ray start` processes on this machine sharing its "
             "cores.", "", "| steps | configuration | wall s | x real time | vs local disk |",
             "| --- | --- | --- | --- | --- |"]
    for label, runs in rows.items():
        base = runs["local engine, local disk"]
        for name, wall in runs.items():
            lines.append(f"| {label} | {name} | {wall:.1f} | {seconds / wall:.1f} | "
                         f"{'-' if name.endswith('local disk') else f'{100 * (wall / base - 1):+.0f} %'} |")
    fast = rows["enhance,analyze"]
    fixed = min(wall for name, wall in fast.items() if name.startswith("Ray")) - fast["local engine, S3 in and out"]
    per_cpu = seconds / rows["vad,transcribe"]["Ray, 2 raylets, S3 in and out"] / cpus
    lines += ["", "Goal: Ray and object storage within 10 % of the local engine on local disk. Met where the work "
              f"is the models (`vad,transcribe`: {min(rows['vad,transcribe'].values()):.0f}-"
              f"{max(rows['vad,transcribe'].values()):.0f} s whatever the engine or the store). Missed for "
              f"`enhance,analyze`, which runs an hour in ~{fast['local engine, local disk']:.0f} s: Ray's cost is "
              f"fixed, ~{fixed:.0f} s to join the cluster and start the actors, and a run that short does not "
              "amortise it (on a real cluster the same seconds are spread over hours of audio); object storage "
              "adds what moto's Python server costs on the same 2 cores.", "",
              f"Per CPU on the two-raylet cluster, `vad,transcribe` runs at {per_cpu:.1f}x real time. A cluster "
              f"of N nodes of C CPUs each then transcribes about N x C x {per_cpu:.1f} hours of audio per hour "
              "(the work is per file, with no exchange between actors), as long as the object store serves "
              "N x C x the files' bit rate; 10,000 hours on 10 nodes of 32 CPUs: about "
              f"{10000 / (10 * 32 * per_cpu):.1f} h (docs/scaling.md)."]
    if "pack" in results:
        lines += ["", render_pack(results["pack"])]
    return "\n".join(lines)


def render_pack(pack_results: dict) -> str:
    seconds, runs = pack_results["audio_seconds"], pack_results["wall_seconds"]
    base = runs["local engine, local disk"]
    lines = [f"`audioflow pack` of {seconds / 3600:.2f} h of the same speech as {pack_results['files']} "
             "10-second clips into a packed dataset of 80-band log-mels (shards of 50 rows), a fresh process each "
             "(`--engine ray` on the clusters; there every task writes its shard to the bucket itself):", "",
             "| configuration | wall s | x real time | vs local disk |", "| --- | --- | --- | --- |"]
    for name, wall in runs.items():
        lines.append(f"| {name} | {wall:.1f} | {seconds / wall:.0f} | "
                     f"{'-' if name.endswith('local disk') else f'{100 * (wall / base - 1):+.0f} %'} |")
    s3 = runs["local engine, S3 in and out"]
    ray_start = min(v for k, v in runs.items() if k.startswith("Ray")) - s3
    lines += ["", f"Packing log-mels is cheap ({base:.1f} s for the hour, start-up included), so this run measures "
              f"overheads, not the encoding: object storage costs a request per clip ({pack_results['files']} GETs "
              f"from moto's Python server on the same 2 cores: +{s3 - base:.1f} s), Ray a fixed ~{ray_start:.0f} s "
              "to join the cluster and start its workers. Missed against the 10 % goal on one machine; what Ray "
              "buys is the encoding and the PUTs on every node at once, no shard passing through the driver."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--file-minutes", type=float, default=3.0)
    parser.add_argument("--part", choices=["all", "process", "pack"], default="all")
    parser.add_argument("--render-only", action="store_true", help="write the section from results/scale.json")
    args = parser.parse_args()
    if not args.render_only:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        if args.part in ("all", "process"):
            results.update(measure(args.minutes, args.file_minutes))
        if args.part in ("all", "pack"):
            results["pack"] = measure_pack(args.minutes)
        RESULTS.write_text(json.dumps(results, indent=1))
    write_section("scale", render(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
