"""The packed dataset: fields round-trip, pyarrow alone reads it, bad files are skipped and listed,
writes are atomic, and damaged datasets give a clear StoreError."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

import audioflow
from audioflow import store
from conftest import make_file


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clips")
    for i in range(7):
        make_file(d, "flac", seconds=0.4 + 0.1 * i, channels=1, sr=16000).rename(d / f"clip{i}.flac")
    (d / "broken.wav").write_text("not audio at all")
    return d


@pytest.fixture(scope="module")
def packed(clips, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "ds"
    store.write(clips, out, {"audio": store.WaveformField(16000), "f32": store.WaveformField(16000, dtype="float32"),
                             "flac": store.CompressedField("flac"), "mel": store.MelSpectrogramField(40)},
                shard_size=3, num_workers=0, progress=False)
    return out


def test_round_trip_against_the_sources(clips, packed):
    ds = store.open(packed)
    assert len(ds) == 7 and ds.info()["shards"] == 3
    paths = sorted(clips.glob("clip*.flac"))
    mel = audioflow.features.LogMel(16000, 400, hop_length=160, n_mels=40, log="log")
    for i, path in enumerate(paths):
        ref, _ = audioflow.load(path)
        row = ds[i]
        assert np.abs(row["audio"] - ref).max() <= 1 / 32768 + 1e-7  # int16 storage
        np.testing.assert_array_equal(row["f32"], ref)
        np.testing.assert_array_equal(row["flac"], ref)  # 16-bit source, lossless
        expected = mel(torch.from_numpy(ref)).numpy()
        assert row["mel"].shape == expected.shape
        assert np.abs(row["mel"] - expected).max() < 1e-2  # float16 storage of log values


def test_get_batch_pads_and_reports_lengths(packed):
    ds = store.open(packed)
    batch = ds.get_batch([6, 0, 4])
    lengths = batch["audio_lengths"]
    assert batch["audio"].shape == (3, lengths.max()) and batch["audio"].dtype == np.float32
    assert lengths.tolist() == [len(ds[6]["audio"]), len(ds[0]["audio"]), len(ds[4]["audio"])]
    assert (batch["audio"][1, lengths[1]:] == 0).all()
    assert batch["mel"].shape[:2] == (3, 40) and batch["mel_lengths"].tolist() == [ds[i]["mel"].shape[1]
                                                                                  for i in (6, 0, 4)]
    for slot, i in enumerate((6, 0, 4)):  # the gathered mel (float16 converted by torch) equals the row's own
        frames = batch["mel_lengths"][slot]
        np.testing.assert_array_equal(batch["mel"][slot, :, :frames], ds[i]["mel"])
        assert (batch["mel"][slot, :, frames:] == 0).all()
    assert len(ds[-1]["audio"]) == len(ds[6]["audio"])
    with pytest.raises(IndexError):
        ds.get_batch([7])


def test_bad_files_are_skipped_and_listed(packed):
    manifest = json.loads((packed / "manifest.json").read_text())
    assert manifest["rows"] == 7
    assert len(manifest["skipped"]) == 1 and manifest["skipped"][0]["source"].endswith("broken.wav")
    assert "not a recognised audio format" in manifest["skipped"][0]["reason"]


def test_pyarrow_alone_reads_labels_and_bytes(tmp_path, clips):
    rows = [{"path": str(p), "label": i, "text": f"clip {i}"} for i, p in enumerate(sorted(clips.glob("clip*")))]
    out = tmp_path / "labelled"
    store.write(rows, out, {"audio": store.WaveformField(16000), "label": store.IntField(),
                            "text": store.StringField()}, num_workers=0, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    with pa.memory_map(str(out / manifest["shards"][0]["file"])) as source:
        table = pa.ipc.open_file(source).read_all()  # no audioflow involved
    assert table.column("label").to_pylist() == list(range(7))
    assert table.column("text").to_pylist()[2] == "clip 2"
    raw = np.frombuffer(table.column("audio")[0].as_py(), "<i2")
    assert len(raw) == table.column("audio.frames")[0].as_py()
    assert json.loads(table.schema.metadata[b"audioflow.fields"])["label"] == {"kind": "int"}


def test_scalar_json_and_ndarray_fields(tmp_path):
    rows = [{"x": i, "y": i / 2, "meta": {"i": i, "tags": ["a"] * i}, "emb": np.arange(i + 1, dtype=np.float32)}
            for i in range(5)]
    out = tmp_path / "misc"
    store.write(rows, out, {"x": store.IntField(), "y": store.FloatField(), "meta": store.JSONField(),
                            "emb": store.NDArrayField("float32", 1)}, num_workers=0, progress=False)
    ds = store.open(out)
    batch = ds.get_batch([4, 1])
    assert batch["x"].tolist() == [4, 1] and batch["y"].tolist() == [2.0, 0.5]
    assert batch["meta"][0] == {"i": 4, "tags": ["a"] * 4}
    np.testing.assert_array_equal(batch["emb"][1], np.arange(2, dtype=np.float32))


def test_manifest_sources_csv_and_jsonl(tmp_path, clips):
    names = sorted(p.name for p in clips.glob("clip*"))
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{clips / n},{i}\n" for i, n in enumerate(names)))
    out = tmp_path / "from_csv"
    store.write(tmp_path / "list.csv", out, {"audio": store.WaveformField(), "label": store.IntField()},
                num_workers=0, progress=False)
    assert store.open(out).get_batch(range(7))["label"].tolist() == list(range(7))
    (clips / "list.jsonl").write_text("".join(json.dumps({"path": n, "label": i}) + "\n"
                                              for i, n in enumerate(names)))  # relative paths
    out = tmp_path / "from_jsonl"
    store.write(clips / "list.jsonl", out, {"audio": store.WaveformField(), "label": store.IntField()},
                num_workers=0, progress=False)
    assert len(store.open(out)) == 7


def test_parallel_workers_write_the_same_data(tmp_path, clips, packed):
    out = tmp_path / "parallel"
    store.write(clips, out, {"audio": store.WaveformField(16000)}, shard_size=3, num_workers=2, progress=False)
    a, b = store.open(out), store.open(packed)
    for i in range(7):
        np.testing.assert_array_equal(a[i]["audio"], b[i]["audio"])


def test_existing_dataset_needs_overwrite_and_survives_a_failed_rewrite(tmp_path, clips):
    out = tmp_path / "ds"
    store.write(clips, out, {"audio": store.WaveformField()}, num_workers=0, progress=False)
    with pytest.raises(audioflow.StoreError):
        store.write(clips, out, {"audio": store.WaveformField()}, num_workers=0, progress=False)
    with pytest.raises(audioflow.StoreError, match="none of the"):  # every row lacks "n"
        store.write(clips, out, {"audio": store.WaveformField(), "n": store.IntField()}, num_workers=0,
                    progress=False, overwrite=True)
    assert len(store.open(out)) == 7
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary left behind


def test_killed_writer_leaves_no_complete_looking_dataset(tmp_path, clips):
    out = tmp_path / "killed"
    code = ("import sys, time\nfrom audioflow import store\n"
            "class Slow(store.IntField):\n"
            "    def encode(self, value):\n        time.sleep(0.2)\n        return super().encode(value)\n"
            "rows = [{'n': i} for i in range(200)]\n"
            "print('go', flush=True)\n"
            "store.write(rows, sys.argv[1], {'n': Slow()}, shard_size=5, num_workers=0, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    progress = tmp_path / ".killed.partial" / "progress.json"
    deadline = time.monotonic() + 60
    while not progress.exists() and time.monotonic() < deadline:  # until a shard is complete
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    with pytest.raises(audioflow.StoreError):
        store.open(out)
    # resume: the complete shards are kept, only the rest is encoded again
    encoded = []

    class Counting(store.IntField):
        def encode(self, value):
            encoded.append(value)
            return super().encode(value)

    rows = [{"n": i} for i in range(200)]
    manifest = store.write(rows, out, {"n": Counting()}, shard_size=5, num_workers=0, progress=False, resume=True)
    assert manifest["rows"] == 200 and store.open(out).get_batch(range(200))["n"].tolist() == list(range(200))
    assert 0 < len(encoded) < 200 and encoded[0] % 5 == 0  # started after the last complete shard
    assert not (tmp_path / ".killed.partial").exists()


def test_damaged_datasets_raise_store_error(tmp_path, packed):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(packed, broken)
    shard = broken / "shard-00001.arrow"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    ds = store.open(broken)
    ds[0]  # shard 0 is fine
    with pytest.raises(audioflow.StoreError, match="corrupt"):
        ds[4]
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["version"] = 99
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(audioflow.StoreError, match="newer"):
        store.open(broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(audioflow.StoreError, match="no manifest"):
        store.open(broken)


def test_remote_read_through_fsspec(packed):
    import fsspec

    fs = fsspec.filesystem("memory")
    for f in os.listdir(packed):
        fs.pipe(f"/remote-ds/{f}", (packed / f).read_bytes())
    remote = store.open("memory://remote-ds")
    np.testing.assert_array_equal(remote[5]["audio"], store.open(packed)[5]["audio"])


def test_parse_field_specs():
    name, field = store.parse_field("audio=mel:n_mels=64,hop_length=256")
    assert name == "audio" and field.n_mels == 64 and field.hop_length == 256
    assert isinstance(store.parse_field("a=flac:sr=22050")[1], store.CompressedField)
    with pytest.raises(audioflow.ParameterError):
        store.parse_field("a=nonsense")


@pytest.mark.parametrize("codec", ["pcm", "flac"])
def test_chunked_field_reads_only_the_chunks_of_a_window(tmp_path, codec):
    long = make_file(tmp_path, "flac", seconds=30.0, channels=1, sr=16000)
    out = tmp_path / f"chunked-{codec}"
    store.write([str(long)], out, {"audio": store.ChunkedAudioField(2.0, 16000, codec)}, num_workers=0,
                progress=False)
    ds = store.open(out)
    ref, _ = audioflow.load(long)
    window = ds.read_window(0, "audio", offset=12.3, duration=1.5)
    start = round(12.3 * 16000)
    assert len(window) == 24000
    assert np.abs(window - ref[start:start + 24000]).max() <= 1 / 32768 + 1e-7
    field = ds.fields["audio"]
    calls = []
    original = field.chunk
    field.chunk = lambda table, row, k: calls.append(k) or original(table, row, k)  # count chunk decodes
    ds.read_window(0, "audio", offset=12.3, duration=1.5)
    assert calls == [6]  # 12.3-13.8 s lies inside chunk 6 (12-14 s): the other 14 chunks stay untouched
    field.chunk = original
    whole = ds[0]["audio"]
    assert len(whole) == len(ref)


class FrameVQ:
    """A small deterministic tokenizer: two-stage residual vector quantisation of log-mel frames,
    codebooks fitted by k-means on the clips themselves (no downloaded model)."""

    def __init__(self, clips: list[np.ndarray], codes: int = 16, seed: int = 0) -> None:
        frames = np.concatenate([self.features(y) for y in clips])
        rng = np.random.default_rng(seed)
        self.books = []
        residual = frames
        for _ in range(2):
            book = residual[rng.choice(len(residual), codes, replace=False)]
            for _ in range(10):  # Lloyd iterations
                assign = self.nearest(residual, book)
                book = np.stack([residual[assign == k].mean(0) if (assign == k).any() else book[k]
                                 for k in range(codes)])
            self.books.append(book)
            residual = residual - book[self.nearest(residual, book)]

    @staticmethod
    def features(y: np.ndarray) -> np.ndarray:
        mel = audioflow.features.LogMel(16000, 400, hop_length=320, n_mels=16, log="log")
        return mel(torch.from_numpy(np.ascontiguousarray(y, np.float32))).numpy().T  # [frames, 16], 50 Hz

    @staticmethod
    def nearest(x: np.ndarray, book: np.ndarray) -> np.ndarray:
        return ((x[:, None, :] - book[None]) ** 2).sum(-1).argmin(1)

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        residual, tokens = self.features(y), []
        for book in self.books:
            idx = self.nearest(residual, book)
            tokens.append(idx)
            residual = residual - book[idx]
        return np.stack(tokens)


def test_codec_tokens_from_a_fitted_tokenizer(tmp_path, clips):
    paths = sorted(clips.glob("clip*.flac"))
    audio = [audioflow.load(p)[0] for p in paths]
    vq = FrameVQ(audio)
    out = tmp_path / "tokens"
    rows = [{"path": str(p)} for p in paths] + [{"path": str(paths[0]), "tokens": np.full((2, 5), 99)}]
    manifest = store.write(rows, out, {"tokens": store.CodecTokenField(2, 50.0, 16, encoder=vq)}, num_workers=0,
                           progress=False)
    assert manifest["rows"] == len(paths)
    assert "outside [0, 16)" in manifest["skipped"][0]["reason"]  # the row that gave tokens of 99
    ds = store.open(out)
    for i, y in enumerate(audio):
        np.testing.assert_array_equal(ds[i]["tokens"], vq(y, 16000))
    assert json.loads((out / "manifest.json").read_text())["fields"]["tokens"] == {
        "kind": "codec_tokens", "n_codebooks": 2, "frame_rate": 50.0, "vocab_size": 16, "sr": 16000}
    with pytest.raises(audioflow.ParameterError):
        store.CodecTokenField(2, 50.0, 70000)


def test_multitrack_and_hybrid_fields(tmp_path):
    rng = np.random.default_rng(0)
    stems = ("vocals", "drums", "bass", "other")
    rows = []
    for i in range(3):
        n = 8000 + 1600 * i
        rows.append({"mix": {s: (0.2 * rng.standard_normal(n).astype(np.float32), 16000) for s in stems},
                     "both": (0.3 * np.sin(np.arange(n) / 10).astype(np.float32), 16000)})
    rows.append({"mix": {"vocals": (np.zeros(100, np.float32), 16000), "drums": (np.zeros(200, np.float32), 16000),
                         "bass": (np.zeros(100, np.float32), 16000), "other": (np.zeros(100, np.float32), 16000)},
                 "both": (np.zeros(100, np.float32), 16000)})
    out = tmp_path / "stems"
    manifest = store.write(rows, out, {"mix": store.MultiTrackField(stems, store.WaveformField(dtype="float32")),
                                       "both": store.HybridField(store.WaveformField(), store.MelSpectrogramField(20))},
                           num_workers=0, progress=False)
    assert manifest["rows"] == 3 and "not aligned" in manifest["skipped"][0]["reason"]
    ds = store.open(out)
    row = ds[1]
    for s in stems:
        np.testing.assert_array_equal(row["mix"][s], rows[1]["mix"][s][0])
    assert set(row["both"]) == {"waveform", "spectrogram"} and row["both"]["spectrogram"].shape[0] == 20
    batch = ds.get_batch([2, 0])
    assert batch["mix.drums"].shape == (2, 11200) and batch["mix.drums_lengths"].tolist() == [11200, 8000]
    assert batch["both.spectrogram"].shape[:2] == (2, 20)
    assert store.open(out).fields["mix"].stems == list(stems)  # rebuilt from the manifest


def test_file_urls_are_local_folders(tmp_path, clips):
    url = (tmp_path / "by-url").as_uri()
    store.write(clips, url, {"audio": store.WaveformField(16000)}, num_workers=0, progress=False)
    assert (tmp_path / "by-url" / "manifest.json").exists() and len(store.open(url)) == 7
