"""Lhotse interoperability: CutSet manifests (cuts.jsonl.gz) read without Lhotse, and batches in the layout
of Lhotse's K2SpeechRecognitionDataset, checked against Lhotse itself where it is installed (the same
cuts, its Fbank, its supervision frames). Real files: tones written by libsndfile, one of them stereo."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import audioflow as af
import audioflow.augment as A
from audioflow.data import AudioDataLoader
from audioflow.data.cuts import CutSource, num_frames, read_cuts

SR = 16000


def tone(seconds, freq, sr=SR, channels=1):
    t = np.arange(round(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    return np.stack([y, 0.5 * y], 1) if channels == 2 else y


def cut(cut_id, path, seconds, sr=SR, start=0.0, duration=None, channel=0, channels=(0,), supervisions=None,
        transforms=None):
    recording = {"id": cut_id + "-rec", "sources": [{"type": "file", "channels": list(channels), "source": path}],
                 "sampling_rate": sr, "num_samples": round(seconds * sr), "duration": seconds,
                 "channel_ids": list(channels)}
    if transforms:
        recording["transforms"] = transforms
    duration = seconds - start if duration is None else duration
    sups = supervisions if supervisions is not None else [
        {"id": cut_id + "-sup", "recording_id": recording["id"], "start": 0.0, "duration": duration,
         "channel": channel, "text": f"text of {cut_id}", "speaker": f"spk{len(cut_id) % 2}"}]
    return {"id": cut_id, "start": start, "duration": duration, "channel": channel, "supervisions": sups,
            "recording": recording, "type": "MonoCut"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """cuts.jsonl.gz over 6 files (one stereo at 44.1 kHz, its right channel cut), with a window cut, a cut
    with two supervisions and a relative path, written the way Lhotse writes them."""
    folder = tmp_path_factory.mktemp("cuts")
    cuts = []
    for i in range(5):
        seconds = 1.0 + 0.4 * i
        sf.write(folder / f"a{i}.flac", tone(seconds, 300 + 100 * i), SR)
        cuts.append(cut(f"a{i}", str(folder / f"a{i}.flac"), seconds))
    sf.write(folder / "st.flac", tone(2.0, 500, 44100, 2), 44100)
    cuts.append(cut("stereo-right", "st.flac", 2.0, 44100, start=0.5, duration=1.0, channel=1, channels=(0, 1)))
    two = cut("two", str(folder / "a4.flac"), 2.6, supervisions=[
        {"id": "s1", "recording_id": "two-rec", "start": 1.2, "duration": 0.8, "channel": 0, "text": "second",
         "speaker": "B"},
        {"id": "s0", "recording_id": "two-rec", "start": 0.1, "duration": 0.9, "channel": 0, "text": "first",
         "speaker": "A"}])
    cuts.append(two)
    path = folder / "cuts.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for c in cuts:
            f.write(json.dumps(c) + "\n")
    return str(path), folder


def test_a_cut_manifest_is_a_source_with_windows_channels_and_supervisions(manifest):
    path, folder = manifest
    source = CutSource.from_file(path)
    assert len(source) == 7 and source.item_id(5) == "stereo-right" and source.duration(5) == 1.0
    right = source.read(5, SR, True)
    window, _ = af.load(folder / "st.flac", sr=SR, mono=False, offset=0.5, duration=1.0)
    assert right.shape == (SR,)
    assert np.abs(right - window[1]).max() < 1e-6  # the right channel's window, not a mixdown
    assert [s["text"] for s in source.supervisions(6)] == ["first", "second"]  # in order of start
    assert source.column("text")[6] == "first second" and source.column("speaker")[6] == "A"
    with AudioDataLoader(path, labels="speaker", batch_size=4, num_workers=0) as loader:
        assert loader.classes == ["A", "spk0"]
        assert sum(len(b) for b in loader) == 7


def test_lhotse_layout_frames_and_supervisions(manifest):
    """inputs [B, T, F] contiguous, one supervision row per supervision with Lhotse's frame counts."""
    path, _ = manifest
    with AudioDataLoader(path, batch_size=7, features="fbank", num_mel_bins=40, snip_edges=False,
                         batch_format="lhotse", num_workers=0) as loader:
        batch = next(iter(loader))
    inputs, sups = batch["inputs"], batch["supervisions"]
    assert inputs.shape[0] == 7 and inputs.shape[2] == 40 and inputs.is_contiguous()
    assert sups["sequence_idx"].tolist() == [0, 1, 2, 3, 4, 5, 6, 6]
    assert sups["start_frame"].tolist()[-2:] == [num_frames(0.1, 0.01, SR), num_frames(1.2, 0.01, SR)]
    assert sups["num_frames"].tolist()[:5] == [num_frames(1.0 + 0.4 * i, 0.01, SR) for i in range(5)]
    assert sups["text"][-2:] == ["first", "second"] and sups["speaker"][-2:] == ["A", "B"]
    with AudioDataLoader(path, batch_size=7, batch_format="lhotse", num_workers=0) as loader:
        waves = next(iter(loader))
    assert waves["inputs"].shape == (7, round(2.6 * SR))
    assert waves["supervisions"]["num_samples"].tolist()[:2] == [SR, round(1.4 * SR)]


def test_supervisions_follow_crops_and_speed_changes(manifest):
    """A supervision moves with a crop (clipped to what the item holds) and stretches with speed perturbation."""
    path, _ = manifest
    with AudioDataLoader(path, batch_size=7, batch_format="lhotse", max_duration=1.0, crop="start",
                         num_workers=0) as loader:
        sups = next(iter(loader))["supervisions"]
    assert sups["num_samples"].tolist()[:5] == [SR] * 5
    assert sups["text"][-1] == "first" and len(sups["text"]) == 7  # 'second' starts after the crop: dropped
    speed = A.SpeedPerturb(factors=[0.5], p=1.0)
    with AudioDataLoader(path, batch_size=7, batch_format="lhotse", augmentations=[speed], features="fbank",
                         snip_edges=False, num_workers=0) as loader:
        sups = next(iter(loader))["supervisions"]
    assert abs(sups["start_frame"].tolist()[-1] - 2 * num_frames(1.2, 0.01, SR)) <= 1
    assert abs(sups["num_frames"].tolist()[0] - 2 * num_frames(1.0, 0.01, SR)) <= 1


def test_recording_transforms_and_bad_manifests(manifest, tmp_path):
    path, folder = manifest
    base = read_cuts(path)[0]
    fast = json.loads(json.dumps(base))
    fast["recording"]["transforms"] = [{"name": "Speed", "kwargs": {"factor": 1.25}},
                                       {"name": "Volume", "kwargs": {"factor": 0.5}}]
    fast["duration"] = 0.8
    y = CutSource([fast]).read(0, SR, True)
    plain = CutSource([base]).read(0, SR, True)
    assert y.shape == (round(0.8 * SR),)
    assert abs(np.abs(y).max() - 0.5 * np.abs(plain).max()) < 0.01
    # the tone's 300 Hz plays at 375 Hz
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.argmax(spectrum) * SR / len(y) - 375) < 5
    reverb = json.loads(json.dumps(base))
    reverb["recording"]["transforms"] = [{"name": "ReverbWithImpulseResponse", "kwargs": {}}]
    with pytest.raises(af.AudioflowError, match=r"a0.*ReverbWithImpulseResponse"):
        CutSource([reverb]).read(0, SR, True)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"id": "m", "type": "MixedCut", "tracks": [], "start": 0, "duration": 1,
                                 "recording": None}) + "\n")
    with pytest.raises(af.AudioflowError, match=r"mixed\.jsonl.*MixedCut"):
        read_cuts(mixed)
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(json.dumps(base).encode())[:-20])
    with pytest.raises(af.AudioflowError, match=r"broken\.jsonl\.gz"):
        read_cuts(broken)
    missing = json.loads(json.dumps(base))
    missing["recording"]["sources"][0]["source"] = str(folder / "nowhere.flac")
    with pytest.raises(af.AudioflowError, match=r"nowhere\.flac"):
        CutSource([missing]).read(0, SR, True)


def test_same_numbers_as_lhotse(manifest):
    """Lhotse's own dataset on the same cuts: its Fbank (80 bins, its defaults) and its supervision rows."""
    lhotse = pytest.importorskip("lhotse")
    from lhotse.dataset import K2SpeechRecognitionDataset, OnTheFlyFeatures

    path, _ = manifest
    cuts = lhotse.CutSet.from_file(path).filter(lambda c: c.id != "stereo-right").to_eager()  # relative path: cwd
    fbank = lhotse.Fbank(lhotse.FbankConfig(num_mel_bins=80))
    dataset = K2SpeechRecognitionDataset(input_strategy=OnTheFlyFeatures(fbank), return_cuts=True)
    ref = dataset[cuts]
    with AudioDataLoader(cuts, batch_size=len(cuts), features="fbank", num_mel_bins=80, snip_edges=False,
                         high_freq=-400, batch_format="lhotse", num_workers=0) as loader:
        ours = next(iter(loader))
    assert ours["inputs"].shape == ref["inputs"].shape
    order = [c.id for c in cuts]
    for c, row in zip(ref["supervisions"]["cut"], ref["supervisions"]["sequence_idx"].tolist(), strict=True):
        frames = num_frames(c.duration, 0.01, SR)
        theirs, mine = ref["inputs"][row, :frames], ours["inputs"][order.index(c.id), :frames]
        # bands a tone leaves empty sit at each floor (Kaldi's float epsilon for us, 1e-10 for Lhotse)
        audible = theirs > -15.0
        assert audible.float().mean() > 0.3
        assert torch.allclose(mine[audible], theirs[audible], atol=5e-3)
    key = lambda rows: sorted(rows)  # noqa: E731
    for name in ("start_frame", "num_frames"):
        ids = {c.id: i for i, c in enumerate(cuts)}
        theirs = [(ids[c.id], int(v)) for c, v in zip(ref["supervisions"]["cut"], ref["supervisions"][name],
                                                       strict=True)]
        mine = list(zip(ours["supervisions"]["sequence_idx"].tolist(), ours["supervisions"][name].tolist(),
                        strict=True))
        assert key(mine) == key(theirs)
