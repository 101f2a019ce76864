"""The Ray engine and the Ray Data building blocks, on a local Ray instance with 2 CPUs: the same results
as the local engine, faults recorded per input, and a user-built pipeline."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import soundfile as sf

ray = pytest.importorskip("ray")
from audioflow import pipeline  # noqa: E402

pytestmark = pytest.mark.slow
SR = 16000
RAY_CLI = os.path.join(os.path.dirname(sys.executable), "ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture()
def folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    t = np.arange(SR * 2) / SR
    for i in range(5):
        sf.write(src / f"tone{i}.flac", (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32), SR)
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return src


def results(out):
    docs = {}
    for path in sorted((out / "results").glob("*.json")):
        doc = json.loads(path.read_text())
        docs[doc["id"]] = doc["results"]
    return docs


def test_ray_engine_gives_the_local_results(local_ray, folder, tmp_path):
    steps = "enhance:lufs=-23,write=false,analyze:music=false,features:name=logmel,n_mels=32"
    local = pipeline.run(folder, steps, tmp_path / "local", workers=2)
    remote = pipeline.run(folder, steps, tmp_path / "ray", engine="ray", workers=2)
    assert (remote.ok, remote.failed) == (local.ok, local.failed) == (5, 1)
    assert results(tmp_path / "ray") == results(tmp_path / "local")
    entries = [json.loads(line) for line in (tmp_path / "ray" / "manifest.jsonl").read_text().splitlines()]
    assert {e["id"]: e["status"] for e in entries}["broken"] == "failed"
    again = pipeline.run(folder, steps, tmp_path / "ray", engine="ray", workers=2, resume=True)
    assert again.skipped == 6 and again.ok == 0


def test_ray_building_blocks(local_ray, folder):
    from audioflow.ray import Analyze, Features, read_audio

    ds = read_audio(str(folder), sr=SR)
    ds = ds.map_batches(Features, fn_constructor_kwargs={"name": "mfcc", "n_mfcc": 13}, concurrency=1, batch_size=4)
    ds = ds.map_batches(Analyze, fn_constructor_kwargs={"music": False}, concurrency=1, batch_size=4)
    rows = {row["id"]: row for row in ds.take_all()}
    assert set(rows) == {"tone0", "tone1", "tone2", "tone3", "tone4", "broken"}
    assert rows["broken"]["error"] and json.loads(rows["broken"]["features"]) is None
    features = json.loads(rows["tone2"]["features"])
    assert features["rows"][0]["shape"][0] == 13
    assert abs(json.loads(rows["tone2"]["analyze"])["duration"] - 2.0) < 1e-9


def test_write_dataset_on_ray_is_store_write_and_resumes_after_an_interruption(local_ray, folder, tmp_path,
                                                                               monkeypatch):
    """audioflow.ray.write_dataset: the rows, order and values of store.write, the broken file skipped and
    listed; interrupted in the driver (Ctrl-C after two shards) and resumed: the shards already written are
    kept as they were, the others encoded, one complete dataset."""
    from audioflow import store
    from audioflow.ray import write_dataset
    from audioflow.store.writer import _LocalTarget

    fields = {"audio": store.WaveformField(SR), "mel": store.MelSpectrogramField(32)}
    reference = store.write(folder, tmp_path / "ref", fields, shard_size=2, num_workers=0, progress=False)
    manifest = write_dataset(folder, str(tmp_path / "ray"), fields, shard_size=2, progress=False)
    assert manifest["rows"] == reference["rows"] == 5 and manifest["skipped"] == reference["skipped"]
    a, b = store.open(tmp_path / "ray"), store.open(tmp_path / "ref")
    for i in range(5):
        np.testing.assert_array_equal(a[i]["audio"], b[i]["audio"])
        np.testing.assert_array_equal(a[i]["mel"], b[i]["mel"])

    saves = []
    original = _LocalTarget.save_progress

    def interrupted(self, state):
        original(self, state)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_LocalTarget, "save_progress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(folder, str(tmp_path / "again"), fields, shard_size=1, progress=False)
    monkeypatch.setattr(_LocalTarget, "save_progress", original)
    partial = tmp_path / ".again.partial"
    kept = {p.name: p.stat().st_mtime_ns for p in partial.glob("shard-*.arrow")}
    ranges = json.loads((partial / "progress.json").read_text())["ranges"]
    assert len(ranges) == 2 and len(kept) == sum(1 for r in ranges.values() if r["shard"]) >= 1  # broken.wav: none
    assert not (tmp_path / "again").exists()
    manifest = write_dataset(folder, str(tmp_path / "again"), fields, shard_size=1, progress=False, resume=True)
    assert manifest["rows"] == 5 and len(manifest["skipped"]) == 1 and not partial.exists()
    assert {n: (tmp_path / "again" / n).stat().st_mtime_ns for n in kept} == kept  # not written again
    c = store.open(tmp_path / "again")
    for i in range(5):
        np.testing.assert_array_equal(c[i]["mel"], b[i]["mel"])


@contextlib.contextmanager
def two_node_cluster(tmp_path, env, raylets: int = 2, head: tuple[str, ...] = ()):
    """A real Ray cluster on this machine: a head (`ray start --head`, with ``head``'s extra arguments) and a
    second raylet joined with `ray start --address`, one CPU each, in their own process groups (stopped by
    killing them, never `ray stop`, which would stop every Ray here); ``raylets=1``: the head alone."""
    from conftest import free_port

    port = free_port()
    common = ["--num-cpus", "1", "--disable-usage-stats", "--block"]
    short = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 107 characters
    nodes = [subprocess.Popen([RAY_CLI, "start", "--head", "--port", str(port),
                               "--include-dashboard", "false", "--temp-dir", short, *common, *head],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    address = f"127.0.0.1:{port}"
    try:
        time.sleep(3)
        if raylets > 1:
            nodes.append(subprocess.Popen([RAY_CLI, "start", "--address", address,
                                           "--resources", '{"second_node": 1}', *common], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = subprocess.run([RAY_CLI, "status", "--address", address],
                                    env=env, capture_output=True, text=True, timeout=60).stdout
            if status.count(" node_") >= raylets:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"the cluster did not come up:\n{status}")
        yield address
    finally:
        for node in reversed(nodes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait()
        shutil.rmtree(short, ignore_errors=True)


def test_two_raylets_with_inputs_and_outputs_in_s3_killed_and_resumed(tmp_path):
    """`audioflow process s3://inputs/ -o s3://outputs/run --engine ray --ray-address HEAD` on a cluster of two
    raylets (the second started by `ray start --address`, without the driver's credentials: they travel with
    the job), SIGKILLed mid-run and resumed: both nodes did work, every input's result exactly once; then a
    local output folder from the same cluster (files from the other node travel back through the driver)."""
    import s3fs

    from conftest import moto_s3, s3_environment

    with moto_s3("inputs", "outputs") as endpoint:
        storage = s3_environment(endpoint)
        fs = s3fs.S3FileSystem(key="test", secret="test", client_kwargs={"endpoint_url": endpoint})
        rng = np.random.default_rng(1)
        for i in range(16):
            path = tmp_path / f"take{i:02d}.flac"
            sf.write(path, (0.1 * rng.standard_normal(SR * 30)).astype(np.float32), SR)
            fs.put_file(str(path), f"inputs/take{i:02d}.flac")
        cluster_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled"}
        with two_node_cluster(tmp_path, cluster_env) as address:
            env = {**cluster_env, **storage}
            command = [sys.executable, "-m", "audioflow", "process", "s3://inputs/", "-o", "s3://outputs/run",
                       "--engine", "ray", "--ray-address", address, "--no-progress",
                       "-s", "enhance:declick=true,lufs=-23,analyze:music=false"]
            run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and run.poll() is None and len(fs.find("outputs/run/results")) < 3:
                time.sleep(0.2)
                fs.invalidate_cache()
            assert run.poll() is None, run.communicate()[1][-3000:]
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=600)
            assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
            fs.invalidate_cache()
            entries = [json.loads(line) for line in fs.cat_file("outputs/run/manifest.jsonl").decode().splitlines()]
            assert sorted(e["input"] for e in entries) == [f"s3://inputs/take{i:02d}.flac" for i in range(16)]
            assert all(e["status"] == "ok" for e in entries)
            assert len({e["node"] for e in entries if "node" in e}) == 2  # both raylets processed inputs
            assert len(fs.find("outputs/run/results")) == len(fs.find("outputs/run/enhanced")) == 16

            # a packed dataset from the same cluster, shards written by both raylets straight into the bucket
            packed = subprocess.run([sys.executable, "-m", "audioflow", "pack", "s3://inputs/", "s3://outputs/train.afds",
                                     "-f", "audio=mel:n_mels=40", "--shard-size", "2", "--engine", "ray",
                                     "--ray-address", address], env=env, capture_output=True, text=True, timeout=600)
            assert packed.returncode == 0, packed.stderr[-3000:]
            from audioflow import store

            options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint}}
            remote = store.open("s3://outputs/train.afds", storage_options=options)
            ref = store.write(sorted(str(p) for p in tmp_path.glob("take*.flac")), tmp_path / "ref.afds",
                              {"audio": store.MelSpectrogramField(40)}, shard_size=2, num_workers=0, progress=False)
            assert len(remote) == ref["rows"] == 16 and remote.info()["shards"] == 8
            for i in (0, 7, 15):
                np.testing.assert_array_equal(remote[i]["audio"], store.open(tmp_path / "ref.afds")[i]["audio"])

            local = tmp_path / "local-out"
            done = subprocess.run([*command[:6], str(local), *command[7:]], env=env, capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            entries = [json.loads(line) for line in (local / "manifest.jsonl").read_text().splitlines()]
            assert len({e["node"] for e in entries}) == 2
            assert len(list((local / "enhanced").glob("*.flac"))) == len(list((local / "results").glob("*.json"))) == 16


def test_model_stages_share_the_clusters_gpu_while_the_driver_has_none(tmp_path, folder):
    """A head node declaring one GPU (`ray start --num-gpus 1`; Ray schedules it as any other resource) and
    a driver without CUDA: `--device auto` reserves the stages' fraction of it per actor (diarize: a
    quarter, so two actors on the node's two CPUs both fit on the one GPU), each entry names the GPU its
    actor held, and the models fall back to the CPU inside the actor, where torch finds no CUDA."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled"}
    speech = tmp_path / "speech"
    speech.mkdir()
    for path in sorted(folder.glob("tone*.flac"))[:2]:
        shutil.copy(path, speech / path.name)
    with two_node_cluster(tmp_path, env, raylets=1, head=("--num-gpus", "1", "--num-cpus", "2")) as address:
        out = tmp_path / "out"
        done = subprocess.run([sys.executable, "-m", "audioflow", "process", str(speech), "-o", str(out),
                               "-s", "vad,diarize", "--engine", "ray", "--ray-address", address, "--no-progress"],
                              env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(entries) == 2 and all(e["status"] == "ok" and e["gpus"] == ["0"] for e in entries), entries
    assert "0.25 GPU each" in (out / "run.log").read_text()
