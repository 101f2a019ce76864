"""Remote files through fsspec against a real S3 API: moto's server on 127.0.0.1, s3fs as client."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import audioflow
from conftest import make_file

s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free local port, with a bucket holding test files; stopped afterwards."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint,
                                                                       "region_name": "us-east-1"}}
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                     region_name="us-east-1").create_bucket(Bucket="audio")
        fs = s3fs.S3FileSystem(**options)
        local = tmp_path_factory.mktemp("s3src")
        files = {kind: make_file(local, kind, seconds=2.0) for kind in ("wav_pcm16", "flac", "mp3", "opus")}
        (local / "long").mkdir()
        long_wav = make_file(local / "long", "wav_pcm16", seconds=60.0, channels=1, sr=16000)
        for path in files.values():
            fs.put(str(path), f"audio/{path.name}")
        fs.put(str(long_wav), "audio/long.wav")
        yield {"options": options, "files": files, "long": long_wav, "fs": fs}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
