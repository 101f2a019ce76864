"""Remote files through fsspec against a real S3 API: moto's server on 127.0.0.1, s3fs as client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import audioflow
from conftest import make_file, moto_s3, s3_environment

s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server with a bucket 'audio' holding test files."""
    with moto_s3("audio") as endpoint:
        options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint,
                                                                       "region_name": "us-east-1"}}
        fs = s3fs.S3FileSystem(**options)
        local = tmp_path_factory.mktemp("s3src")
        files = {kind: make_file(local, kind, seconds=2.0) for kind in ("wav_pcm16", "flac", "mp3", "opus")}
        (local / "long").mkdir()
        long_wav = make_file(local / "long", "wav_pcm16", seconds=60.0, channels=1, sr=16000)
        for path in files.values():
            fs.put(str(path), f"audio/{path.name}")
        fs.put(str(long_wav), "audio/long.wav")
        yield {"options": options, "files": files, "long": long_wav, "fs": fs, "endpoint": endpoint}


@pytest.mark.parametrize("kind", ["wav_pcm16", "flac", "mp3", "opus"])
def test_load_from_s3_matches_local(s3, kind):
    local = s3["files"][kind]
    y, sr = audioflow.load(f"s3://audio/{local.name}", storage_options=s3["options"])
    ref, ref_sr = audioflow.load(local)
    assert sr == ref_sr
    np.testing.assert_array_equal(y, ref)
    i = audioflow.info(f"s3://audio/{local.name}", storage_options=s3["options"])
    assert i == audioflow.info(local)


def test_window_from_s3_uses_range_reads(s3):
    options = dict(s3["options"], default_block_size=64 * 1024)
    url = "s3://audio/long.wav"
    y, _ = audioflow.load(url, offset=30.0, duration=2.0, storage_options=options)
    ref, _ = audioflow.load(s3["long"], offset=30.0, duration=2.0)
    np.testing.assert_array_equal(y, ref)
    # what crossed the wire: fsspec's cache counts the bytes it fetched by range requests
    import fsspec

    with fsspec.open(url, "rb", **options) as f:
        audioflow.load(f, offset=30.0, duration=2.0)
        fetched = f.cache.total_requested_bytes
    assert fetched < 0.2 * s3["long"].stat().st_size, fetched


def test_missing_object_and_bucket(s3):
    with pytest.raises(audioflow.AudioFileNotFoundError) as e:
        audioflow.load("s3://audio/nope.wav", storage_options=s3["options"])
    assert "s3://audio/nope.wav" in str(e.value)
    with pytest.raises(audioflow.SourceError):
        audioflow.load("s3://no-such-bucket/x.wav", storage_options=s3["options"])


def test_save_to_s3_and_stream_back(s3, tmp_path):
    y = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32) * 0.5
    audioflow.save("s3://audio/out/tone.flac", y, 16000, storage_options=s3["options"])
    back, sr = audioflow.load("s3://audio/out/tone.flac", storage_options=s3["options"])
    assert sr == 16000 and np.abs(back - y).max() < 1e-4  # 16-bit FLAC
    blocks = list(audioflow.stream("s3://audio/out/tone.flac", 0.25, storage_options=s3["options"]))
    np.testing.assert_array_equal(np.concatenate(blocks), back)


def test_packed_dataset_read_from_s3(s3, tmp_path):
    from audioflow import store

    local = tmp_path / "ds"
    store.write([str(p) for p in s3["files"].values()], local, {"audio": store.WaveformField(16000),
                                                                "mel": store.MelSpectrogramField(40)},
                shard_size=2, num_workers=0, progress=False)
    for f in local.iterdir():
        s3["fs"].put(str(f), f"audio/packed/{f.name}")
    remote = store.open("s3://audio/packed", storage_options=s3["options"])
    ref = store.open(local)
    assert len(remote) == len(ref) == 4
    a, b = remote.get_batch([3, 0, 2]), ref.get_batch([3, 0, 2])
    np.testing.assert_array_equal(a["audio"], b["audio"])
    np.testing.assert_array_equal(a["mel"], b["mel"])
    with pytest.raises(audioflow.StoreError):
        store.open("s3://audio/nothing-here", storage_options=s3["options"])


def test_pack_into_s3_is_whole_or_absent_and_replaced_in_one_put(s3, tmp_path):
    """store.write to s3://: the same rows as a local pack, readable back from the bucket; an existing dataset
    is refused without overwrite; a rewrite that fails leaves the old dataset readable and no new objects;
    an overwrite replaces it (the old shards are gone, nothing else left behind)."""
    from audioflow import store

    _bucket(s3, "packs")
    fs, options = s3["fs"], s3["options"]
    sources = [str(p) for p in s3["files"].values()]
    fields = {"audio": store.WaveformField(16000), "mel": store.MelSpectrogramField(40)}
    store.write(sources, tmp_path / "ref", fields, shard_size=3, num_workers=0, progress=False)
    manifest = store.write(sources, "s3://packs/ds", fields, shard_size=3, num_workers=2, progress=False,
                           storage_options=options)
    assert manifest["rows"] == 4 and len(manifest["shards"]) == 2
    remote, ref = store.open("s3://packs/ds", storage_options=options), store.open(tmp_path / "ref")
    for i in range(4):
        np.testing.assert_array_equal(remote[i]["audio"], ref[i]["audio"])
        np.testing.assert_array_equal(remote[i]["mel"], ref[i]["mel"])
    with pytest.raises(audioflow.StoreError, match="already exists"):
        store.write(sources, "s3://packs/ds", fields, progress=False, storage_options=options)
    before = sorted(fs.find("packs/ds"))
    with pytest.raises(audioflow.StoreError, match="none of the"):  # no row has "n": nothing to write
        store.write(sources, "s3://packs/ds", {"audio": store.WaveformField(), "n": store.IntField()},
                    overwrite=True, num_workers=0, progress=False, storage_options=options)
    fs.invalidate_cache()
    assert sorted(fs.find("packs/ds")) == before and len(store.open("s3://packs/ds", storage_options=options)) == 4
    store.write(sources, "s3://packs/ds", {"audio": store.WaveformField(8000)}, shard_size=1, overwrite=True,
                num_workers=0, progress=False, storage_options=options)
    fs.invalidate_cache()
    after = store.open("s3://packs/ds", storage_options=options)
    assert len(after) == 4 and after.info()["shards"] == 4 and len(after[0]["audio"]) == len(ref[0]["audio"]) // 2
    objects = [p.removeprefix("packs/ds/") for p in fs.find("packs/ds")]
    assert sorted(objects) == sorted(["manifest.json", *(s["file"] for s in after.manifest["shards"])])


def test_a_killed_pack_into_s3_resumes_from_its_last_shard(s3, tmp_path):
    """A pack into the bucket SIGKILLed after some shards: no manifest (store.open refuses it), and
    resume=True encodes only the rows after the last complete shard, then cleans up its progress."""
    import signal

    from audioflow import store

    _bucket(s3, "killedpack")
    fs, options = s3["fs"], s3["options"]
    code = ("import sys, time\nfrom audioflow import store\n"
            "class Slow(store.IntField):\n"
            "    def encode(self, value):\n        time.sleep(0.1)\n        return super().encode(value)\n"
            "rows = [{'n': i} for i in range(200)]\n"
            "store.write(rows, 's3://killedpack/ds', {'n': Slow()}, shard_size=5, num_workers=0, progress=False)\n")
    env = {"PATH": "/usr/bin:/bin", **s3_environment(s3["endpoint"])}
    run = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None and not fs.exists("killedpack/ds/.progress.json"):
        time.sleep(0.1)
        fs.invalidate_cache()
    time.sleep(0.6)
    assert run.poll() is None, "the pack finished before it could be killed"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    with pytest.raises(audioflow.StoreError, match="no manifest"):
        store.open("s3://killedpack/ds", storage_options=options)
    encoded = []

    class Counting(store.IntField):
        def encode(self, value):
            encoded.append(value)
            return super().encode(value)

    rows = [{"n": i} for i in range(200)]
    manifest = store.write(rows, "s3://killedpack/ds", {"n": Counting()}, shard_size=5, num_workers=0,
                           progress=False, resume=True, storage_options=options)
    assert manifest["rows"] == 200
    assert store.open("s3://killedpack/ds", storage_options=options).get_batch(range(200))["n"].tolist() == \
        list(range(200))
    assert 0 < len(encoded) < 200 and encoded[0] % 5 == 0  # started after the last complete shard
    fs.invalidate_cache()
    assert not fs.exists("killedpack/ds/.progress.json")


def test_loader_reads_an_s3_folder_in_forked_workers(s3, tmp_path):
    """A bucket prefix as the loader's source: listed through fsspec, decoded in forked workers (s3fs
    after fork), cached on disk (kept between runs: a remote fetch is worth keeping)."""
    from audioflow import AudioDataLoader

    for path in [s3["files"]["wav_pcm16"], s3["files"]["flac"], s3["long"]]:
        s3["fs"].put(str(path), f"audio/loader/{path.name}")
    with AudioDataLoader("s3://audio/loader/", batch_size=8, num_workers=2, storage_options=s3["options"],
                         cache="disk", cache_dir=tmp_path / "cache", extensions=(".wav", ".flac")) as loader:
        first = [b for b in loader]
        [b for b in loader]  # the next epoch's batches start early, before the first is cached
        third = [b for b in loader]
        stats = loader.stats()
    assert stats["settings"]["cache"] == "disk" and stats["cache_hits"] >= 3
    assert sorted(first[0].ids) == ["flac_2ch_44100", "wav_pcm16_1ch_16000", "wav_pcm16_2ch_44100"]
    ref, _ = audioflow.load(s3["long"], sr=16000)
    index = first[0].ids.index("wav_pcm16_1ch_16000")
    np.testing.assert_allclose(first[0].features[index, : len(ref)].numpy(), ref, atol=1e-6)
    torch = pytest.importorskip("torch")
    assert torch.equal(first[0].features, third[0].features)


def _bucket(s3, name: str) -> None:
    s3["fs"].call_s3("create_bucket", Bucket=name)


STEPS = "split:method=fixed,window=1,enhance:lufs=-23,analyze:music=false,features:name=mfcc,n_mfcc=13"


def test_process_writes_every_output_to_s3_and_resumes_from_the_bucket(s3, tmp_path, monkeypatch):
    """-o s3://...: results, segments, enhanced audio, manifest, summary, log and features.parquet in the
    bucket (nothing local; the paths in a result resolve there), then --resume read back from the bucket:
    the same steps skip everything, other steps are refused, and results the manifest lost are recovered."""
    from audioflow import pipeline

    monkeypatch.chdir(tmp_path)
    fs, options = s3["fs"], s3["options"]
    _bucket(s3, "runs")
    inputs = [str(s3["files"]["flac"]), str(s3["files"]["wav_pcm16"])]
    summary = pipeline.run(inputs, STEPS, "s3://runs/first", workers=1, storage_options=options)
    assert (summary.ok, summary.failed) == (2, 0)
    listed = {f.split("/", 2)[2] for f in fs.find("runs/first")}
    assert {"manifest.jsonl", "summary.json", "run.log", "features.parquet"} <= listed
    assert not any(name.startswith("manifest.parts") for name in listed) and list(tmp_path.iterdir()) == []
    document = json.loads(fs.cat_file("runs/first/results/flac_2ch_44100.json"))
    written = [f for files in document["files"].values() for f in files]
    assert len(written) == 3 and all(fs.exists(f"runs/first/{f}") for f in written)  # 2 segments, the enhanced audio
    enhanced, sr = audioflow.load(f"s3://runs/first/{document['results']['enhance']['file']}", storage_options=options)
    assert sr == 44100 and abs(len(enhanced) / sr - 2.0) < 1e-3
    import pyarrow.parquet as pq

    with fs.open("runs/first/features.parquet", "rb") as f:
        assert pq.read_table(f).num_rows == 2
    again = pipeline.run(inputs, STEPS, "s3://runs/first", workers=1, storage_options=options, resume=True)
    assert (again.ok, again.skipped) == (0, 2)
    with pytest.raises(audioflow.ParameterError, match="another output folder"):
        pipeline.run(inputs, "analyze", "s3://runs/first", workers=1, storage_options=options, resume=True)
    fs.rm_file("runs/first/manifest.jsonl")  # as if the run had been killed before recording its inputs
    recovered = pipeline.run(inputs, STEPS, "s3://runs/first", workers=1, storage_options=options, resume=True)
    assert (recovered.ok, recovered.skipped) == (0, 2)
    lines = fs.cat_file("runs/first/manifest.jsonl").decode().splitlines()
    assert sorted(json.loads(line)["input"] for line in lines) == sorted(inputs)
    assert all(json.loads(line)["recovered"] for line in lines)


def test_a_killed_run_into_s3_resumes_without_losing_or_repeating(s3, tmp_path):
    """The command line writing to the bucket, SIGKILLed once a manifest part is there, then --resume:
    every input's result exactly once in the merged manifest, none processed twice."""
    import signal

    fs = s3["fs"]
    _bucket(s3, "killed")
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):  # ~0.7 s each to enhance: the run lasts long enough to be killed mid-way
        audioflow.save(src / f"take{i:02d}.flac", (0.1 * rng.standard_normal(16000 * 30)).astype(np.float32), 16000)
    env = {"PATH": "/usr/bin:/bin", **s3_environment(s3["endpoint"])}
    command = [sys.executable, "-m", "audioflow", "process", str(src), "-o", "s3://killed/out", "--workers", "1",
               "--no-progress", "-s", "enhance:declick=true,denoise=true,lufs=-23"]
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None and not fs.find("killed/out/manifest.parts"):
        time.sleep(0.1)
        fs.invalidate_cache()
    assert run.poll() is None, "the run finished before it could be killed"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    fs.invalidate_cache()
    done_before = len(fs.find("killed/out/results"))
    assert 0 < done_before < 20
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    fs.invalidate_cache()
    entries = [json.loads(line) for line in fs.cat_file("killed/out/manifest.jsonl").decode().splitlines()]
    inputs = [e["input"] for e in entries]
    assert sorted(inputs) == sorted(str(p) for p in src.iterdir())  # each exactly once
    assert all(e["status"] == "ok" for e in entries) and not fs.find("killed/out/manifest.parts")
    assert len(fs.find("killed/out/results")) == len(fs.find("killed/out/enhanced")) == 20
    assert f"{20 - done_before} ok, 0 failed, {done_before} skipped" in " ".join(resumed.stdout.split())
