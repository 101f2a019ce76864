"""AudioDataLoader: sources, labels, batches and lengths, order and resumption, sharding, bucketing,
cropping, the cache, bad files and dying workers, and feature values against the feature module on
audio loaded by hand. Real files throughout (tones of known frequency and length, written by libsndfile)."""

from __future__ import annotations

import csv
import json
import os
import signal

import numpy as np
import pytest
import soundfile as sf
import torch

import audioflow as af
import audioflow.augment as A
from audioflow.data import AudioDataLoader, AudioSampler

SR = 16000


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """24 FLAC tones of 0.5-2.5 s (16 kHz), labels 'low'/'high' by frequency; 4 are 44.1 kHz stereo."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(24):
        seconds = float(rng.uniform(0.5, 2.5))
        sr, channels = (44100, 2) if i % 6 == 5 else (SR, 1)
        freq = 300.0 if i % 2 == 0 else 1200.0
        t = np.arange(round(seconds * sr)) / sr
        y = np.stack([0.4 * np.sin(2 * np.pi * freq * t)] * channels, 1)
        path = folder / f"clip{i:02d}.flac"
        sf.write(path, y, sr)
        paths.append(str(path))
        labels.append("low" if freq < 1000 else "high")
    return paths, labels


def run(loader, epochs=1):
    out = []
    for _ in range(epochs):
        out.append([(b.ids, b.features.clone(), b.lengths.clone(), None if b.labels is None else b.labels.clone())
                    for b in loader])
    return out


def test_batches_features_labels_and_lengths(clips):
    paths, labels = clips
    with AudioDataLoader(paths, labels=labels, batch_size=5, features="mfcc", n_mfcc=20, n_mels=40,
                         num_workers=2) as loader:
        assert loader.classes == ["high", "low"]
        seen = []
        for features, label_ids in loader:  # the DataLoader habit: unpack two things
            assert features.shape[:2] == (len(label_ids), 20) and label_ids.dtype == torch.int64
        for batch in loader:
            assert batch.lengths.shape == (len(batch),)
            assert int(batch.lengths.max()) == batch.features.shape[-1]
            # frames past each item's end are zero
            for row, frames in zip(batch.features, batch.lengths.tolist(), strict=True):
                assert float(row[:, frames:].abs().sum()) == 0.0
            seen += batch.ids
            names = [labels[int(i)] for i in batch.indices]
            assert [loader.classes[int(i)] for i in batch.labels] == names
        assert sorted(seen) == sorted(os.path.basename(p)[:-5] for p in paths)
        assert len(loader) == 5


def test_features_equal_the_module_on_hand_loaded_audio(clips):
    """Without augmentation, a batch is the feature module applied to librosa-style loads, padded."""
    paths, _ = clips
    from audioflow.features import LogMel

    with AudioDataLoader(paths[:6], batch_size=6, features="logmel", n_mels=64, hop_length=160,
                         num_workers=1, cache=None) as loader:
        batch = next(iter(loader))
    waves = [af.load(p, sr=SR)[0] for p in paths[:6]]
    lengths = torch.tensor([len(w) for w in waves])
    x = torch.zeros(6, int(lengths.max()))
    for i, w in enumerate(waves):
        x[i, : len(w)] = torch.from_numpy(w)
    ref, frames = LogMel(SR, n_mels=64, hop_length=160)(x, lengths)
    assert batch.lengths.tolist() == frames.tolist()
    assert batch.audio_lengths.tolist() == lengths.tolist()  # 44.1 kHz stereo items resampled and mixed down
    torch.testing.assert_close(batch.features, ref, atol=1e-4, rtol=1e-5)


def test_same_seed_same_batches_whoever_makes_them(clips):
    """Order and augmentation are functions of (seed, epoch, batch): two workers, none, or the transform
    in the main process all give the same numbers."""
    paths, labels = clips
    aug = lambda: [A.TimeStretch(0.8, 1.2, p=1.0), A.PitchShift(-2, 2, p=1.0), A.AddNoise(snr_db=20, p=1.0)]  # noqa: E731
    common = dict(labels=labels, batch_size=4, features="mfcc", n_mfcc=13, shuffle=True, seed=7, cache=None)
    results = []
    for options in ({"num_workers": 2}, {"num_workers": 0}, {"num_workers": 1, "transform_on": "main"}):
        with AudioDataLoader(paths, augmentations=aug(), **common, **options) as loader:
            results.append(run(loader, epochs=2))
    for other in results[1:]:
        for epoch_a, epoch_b in zip(results[0], other, strict=True):
            for (ids_a, f_a, l_a, y_a), (ids_b, f_b, l_b, y_b) in zip(epoch_a, epoch_b, strict=True):
                assert ids_a == ids_b and l_a.tolist() == l_b.tolist() and y_a.tolist() == y_b.tolist()
                torch.testing.assert_close(f_a, f_b, atol=1e-4, rtol=1e-4)
    first, second = results[0]
    assert [b[0] for b in first] != [b[0] for b in second]  # a new shuffle each epoch


def test_augmentation_differs_between_epochs_after_the_cache(clips):
    paths, _ = clips
    with AudioDataLoader(paths[:8], batch_size=8, features="logmel", augmentations=[A.Gain(-6, 6, p=1.0)],
                         cache="memory", num_workers=1) as loader:
        a, b = run(loader, epochs=2)
        stats = loader.stats()
    assert a[0][0] == b[0][0]
    assert not torch.allclose(a[0][1], b[0][1])
    assert stats["cache_hits"] >= 8 and stats["cache_mb"] > 0


def test_fused_plan_when_stretch_and_shift_end_the_chain():
    from audioflow.data import build_feature, plan

    mfcc = build_feature("mfcc", SR, n_mfcc=40, n_mels=64)
    fused = plan([A.TimeStretch(0.8, 1.2), A.PitchShift(-2, 2), A.AddNoise(snr_db=20)], mfcc)
    assert isinstance(fused.feature, A.SpectralStretch) and fused.describe() == "AddNoise -> SpectralStretch(MFCC)"
    literal = plan([A.TimeStretch(0.8, 1.2), A.Gain()], mfcc)
    assert not isinstance(literal.feature, A.SpectralStretch)
    assert not isinstance(plan([A.TimeStretch(), A.PitchShift()], mfcc, fuse=False).feature, A.SpectralStretch)
    with pytest.raises(af.ParameterError, match="n_mfcc"):
        build_feature("logmel", SR, n_mfcc=3)


def test_resume_mid_epoch_repeats_and_skips_nothing(clips):
    paths, labels = clips
    common = dict(labels=labels, batch_size=3, features="mfcc", shuffle=True, seed=3, num_workers=2,
                  augmentations=[A.Gain(p=1.0)], cache=None)
    with AudioDataLoader(paths, **common) as loader:
        loader.set_epoch(1)
        full = run(loader)[0]
    with AudioDataLoader(paths, **common) as loader:
        loader.set_epoch(1)
        it = iter(loader)
        head = [next(it) for _ in range(3)]
        state = loader.state_dict()
    assert state["epoch"] == 1 and state["position"] == 3
    with AudioDataLoader(paths, **common) as loader:
        loader.load_state_dict(json.loads(json.dumps(state)))
        tail = run(loader)[0]
        assert loader.state_dict()["epoch"] == 2 and loader.state_dict()["position"] == 0
    assert [b.ids for b in head] + [b[0] for b in tail] == [b[0] for b in full]
    for (_, f_a, _, _), (_, f_b, _, _) in zip(full[3:], tail, strict=True):
        torch.testing.assert_close(f_a, f_b)


def test_distributed_ranks_split_the_epoch(clips):
    paths, _ = clips
    seen = []
    for rank in range(2):
        with AudioDataLoader(paths, batch_size=4, shuffle=True, seed=1, rank=rank, world_size=2,
                             num_workers=0) as loader:
            seen.append([i for b in loader for i in b.indices.tolist()])
    assert len(seen[0]) == len(seen[1]) == 12
    assert not set(seen[0]) & set(seen[1]) and set(seen[0]) | set(seen[1]) == set(range(24))


def test_sampler_drop_last_and_uneven_world():
    sampler = AudioSampler(10, batch_size=3, drop_last=True)
    assert [len(b) for b in sampler.batches()] == [3, 3, 3]
    shares = [AudioSampler(10, 2, rank=r, world_size=3).batches() for r in range(3)]
    assert all(sum(map(len, s)) == 4 for s in shares)  # padded by repetition, as DistributedSampler


def test_duration_bucketing_pads_less(clips):
    paths, _ = clips
    durations = [sf.info(p).duration for p in paths]

    def padding(batches):
        padded = sum(len(b) * max(durations[i] for i in b) for b in batches)
        return padded / sum(durations) - 1

    by_count = AudioSampler(24, 4, shuffle=True, seed=0).batches()
    by_time = AudioSampler(24, 4, shuffle=True, seed=0, batch_by="duration", batch_seconds=8.0,
                           durations=durations).batches()
    assert sorted(i for b in by_time for i in b) == list(range(24))
    assert padding(by_time) < padding(by_count) / 2
    assert all(len(b) * max(durations[i] for i in b) <= 8.0 or len(b) == 1 for b in by_time)
    with AudioDataLoader(paths, batch_by="duration", batch_seconds=8.0, num_workers=0) as loader:
        total = sum(float(b.audio_lengths.sum()) for b in loader) / SR
    assert abs(total - sum(durations)) < 0.01


def test_crops_to_max_duration(clips):
    paths, _ = clips
    long_one = max(paths[:4], key=lambda p: sf.info(p).duration)
    with AudioDataLoader([long_one], batch_size=1, max_duration=0.25, num_workers=0) as loader:
        batch = next(iter(loader))  # no shuffle: the centre quarter second
    y, _ = af.load(long_one, sr=SR)
    start = (len(y) - 4000) // 2
    np.testing.assert_allclose(batch.features[0].numpy(), y[start:start + 4000], atol=1e-6)
    with AudioDataLoader(paths, batch_size=8, max_duration=0.25, shuffle=True, num_workers=0, cache=None) as loader:
        assert all(int(b.audio_lengths.max()) <= 4000 for b in loader)


def test_manifest_folder_store_and_map_sources(clips, tmp_path):
    paths, labels = clips
    manifest = tmp_path / "train.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "offset", "duration"])
        for p, label in zip(paths[:6], labels[:6], strict=True):
            writer.writerow([os.path.relpath(p, tmp_path), label, "0.1", "0.3"])
    with AudioDataLoader(str(manifest), batch_size=6, num_workers=0) as loader:
        batch = next(iter(loader))
    assert loader.classes == sorted(set(labels[:6])) and batch.audio_lengths.tolist() == [4800] * 6
    y, _ = af.load(paths[0], sr=SR, offset=0.1, duration=0.3)
    np.testing.assert_allclose(batch.features[0].numpy(), y, atol=1e-6)

    with AudioDataLoader(os.path.dirname(paths[0]), batch_size=32, num_workers=0) as loader:
        assert len(next(iter(loader))) == 24 and loader.label_ids is None

    from audioflow import store

    packed = tmp_path / "packed"
    store.write([{"path": p, "label": i % 2} for i, p in enumerate(paths[:8])], packed,
                fields={"audio": store.WaveformField(sr=SR), "label": store.IntField()}, num_workers=1,
                progress=False)
    with AudioDataLoader(str(packed), labels="label", batch_size=8, num_workers=0) as loader:
        batch = next(iter(loader))
    assert batch.labels.tolist() == [i % 2 for i in range(8)]
    np.testing.assert_allclose(batch.features[1, : batch.audio_lengths[1]].numpy(), af.load(paths[1], sr=SR)[0],
                               atol=1e-4)  # int16 storage

    samples = [(np.sin(np.arange(800 * (i + 1)) / 5).astype(np.float32), 8000) for i in range(3)]
    with AudioDataLoader([(s, i) for i, s in enumerate(samples)], batch_size=3, num_workers=0) as loader:
        batch = next(iter(loader))
    assert batch.audio_lengths.tolist() == [1600, 3200, 4800] and batch.labels.tolist() == [0, 1, 2]


@pytest.fixture()
def with_bad_files(clips, tmp_path):
    paths, _ = clips
    truncated = tmp_path / "truncated.flac"
    with open(paths[0], "rb") as f:
        truncated.write_bytes(f.read()[:60])
    noise = tmp_path / "noise.wav"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    return [*paths[:6], str(truncated), str(noise)]


def test_bad_files_are_replaced_skipped_or_raised(with_bad_files, caplog):
    with AudioDataLoader(with_bad_files, batch_size=8, num_workers=1, cache=None) as loader, \
            caplog.at_level("WARNING", "audioflow.data"):
        batch = next(iter(loader))
        stats = loader.stats()
    assert len(batch) == 8 and not {"truncated", "noise"} & set(batch.ids)
    assert {f[0] for f in stats["failures"]} == {"truncated", "noise"}
    assert "truncated.flac" in caplog.text and "noise.wav" in caplog.text
    with AudioDataLoader(with_bad_files, batch_size=8, num_workers=0, on_error="skip", cache=None) as loader:
        assert len(next(iter(loader))) == 6
    with AudioDataLoader(with_bad_files, batch_size=8, num_workers=0, on_error="raise", cache=None) as loader, \
            pytest.raises(af.AudioflowError, match=r"truncated\.flac|noise\.wav"):
        next(iter(loader))


class DiesOnce:
    """A map-style dataset whose item 5 kills the process reading it, the first time only."""

    def __init__(self, marker):
        self.marker = marker

    def __len__(self):
        return 12

    def __getitem__(self, i):
        if i == 5 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return np.full(1600, i / 100, np.float32), SR


def test_a_dead_worker_is_replaced_and_nothing_is_lost(tmp_path):
    with AudioDataLoader(DiesOnce(str(tmp_path / "died")), batch_size=3, num_workers=2, cache=None) as loader:
        seen = sorted(i for b in loader for i in b.indices.tolist())
        assert seen == list(range(12)) and loader.stats()["workers_replaced"] == 1


def test_bad_options_are_parameter_errors(clips):
    paths, _ = clips
    for kwargs in ({"features": "mfccc"}, {"on_error": "ignore"}, {"batch_by": "duration"}, {"crop": "middle"},
                   {"max_duration": 0}, {"cache": "ssd"}):
        with pytest.raises(af.ParameterError):
            AudioDataLoader(paths, **kwargs)
    with pytest.raises(af.ParameterError, match="labels"):
        AudioDataLoader(paths, labels=[1, 2])
    with pytest.raises(af.SourceError):
        AudioDataLoader("/nonexistent/folder")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_the_gpu_the_transform_runs_there_with_the_same_numbers(clips):  # pragma: no cover - GPU machines
    paths, labels = clips
    common = dict(labels=labels, batch_size=4, features="logmel", shuffle=True, seed=5, cache=None,
                  augmentations=[A.Gain(p=1.0), A.TimeStretch(0.8, 1.2, p=1.0)])
    with AudioDataLoader(paths, device="cuda", **common) as gpu, AudioDataLoader(paths, device="cpu", **common) as cpu:
        for a, b in zip(gpu, cpu, strict=True):
            assert a.features.is_cuda and a.ids == b.ids
            torch.testing.assert_close(a.features.cpu(), b.features, atol=1e-3, rtol=1e-3)
        assert gpu.stats()["settings"]["transform_on"] == "main" and gpu.stats()["settings"]["pin_memory"]


@pytest.mark.slow
@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="needs espeak-ng")
def test_a_keyword_classifier_learns_through_the_loader(tmp_path):
    """The demo's training run: four spoken keywords, augmented, three voices held out; chance is 25 %."""
    from audioflow.demo import run_training_demo

    report = run_training_demo(tmp_path, steps=200)
    assert report.last_loss < report.first_loss / 2
    assert report.test_accuracy >= 0.75, report
    assert report.loader["batches"] >= 200 and report.loader["failed_items"] == 0


def _slow_square(n: int) -> int:
    import time

    time.sleep(0.5)
    return n * n


def test_closing_the_pool_while_a_thread_waits_for_a_result(caplog):
    """A training loop that stops early closes the loader while its feeder thread still waits for the
    workers (seen on a GPU machine): the waiting get() must end with an error, and the workers that
    close() stops are not deaths to replace (that raced close() into 'dictionary changed size')."""
    import threading

    from audioflow.runtime import ProcessPool

    pool = ProcessPool(_slow_square, 3)
    for n in range(6):
        pool.submit(n, n)
    outcome = []

    def wait_for_results() -> None:
        try:
            while True:
                outcome.append(pool.get())
        except RuntimeError as e:
            outcome.append(e)

    waiter = threading.Thread(target=wait_for_results)
    waiter.start()
    pool.close()
    waiter.join(5.0)
    assert not waiter.is_alive()
    assert isinstance(outcome[-1], RuntimeError) and "closed" in str(outcome[-1])
    assert pool.replaced == 0 and "starting a replacement" not in caplog.text
    assert pool.num_workers == 0


def test_closing_a_loader_in_the_middle_of_an_epoch(clips):
    paths, labels = clips
    loader = AudioDataLoader(paths, labels, batch_size=2, features="logmel", num_workers=2, device="cpu")
    batches = iter(loader)
    next(batches)
    loader.close()  # the epoch's generator is still open
    assert loader._pool is None
    batches.close()


def test_labels_from_sub_folder_names_as_imagefolder(clips, tmp_path):
    """``clips/high/*.flac``, ``clips/low/*.flac``: the README's ``labels="label"`` on a folder takes each
    file's class folder (torchvision's ImageFolder layout); files outside any class folder are named."""
    import shutil

    paths, labels = clips
    root = tmp_path / "clips"
    for path, label in zip(paths[:8], labels[:8], strict=True):
        (root / label / "deeper").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / label / ("deeper" if path.endswith("3.flac") else "") / os.path.basename(path))
    with AudioDataLoader(str(root), labels="label", batch_size=4, num_workers=0) as loader:
        assert loader.classes == ["high", "low"]
        truth = dict(zip((os.path.basename(p)[:-5] for p in paths[:8]), labels[:8], strict=True))
        seen = {i: loader.classes[int(label)] for batch in loader for i, label in zip(batch.ids, batch.labels,
                                                                                     strict=True)}
        assert seen == truth
    shutil.copy(paths[9], root / "loose.flac")
    with pytest.raises(af.ParameterError, match=r"sub-folder.*loose\.flac"):
        AudioDataLoader(str(root), labels="label", batch_size=4, num_workers=0)
