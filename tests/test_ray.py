"""The Ray engine and the Ray Data building blocks, on a local Ray instance with 2 CPUs: the same results
as the local engine, faults recorded per input, and a user-built pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

ray = pytest.importorskip("ray")
from audioflow import pipeline  # noqa: E402

pytestmark = pytest.mark.slow
SR = 16000


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
