"""Extension points used from outside the package, as a third party would: a stage installed as a
distribution with an ``audioflow.stages`` entry point (a dist-info folder on the path is what pip leaves
behind), found by a fresh interpreter's registry, listed by ``process --help`` and run by ``process``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

import audioflow as af
from audioflow.pipeline import STAGES, build_steps, run
from audioflow.store import Encoded, Field

PLUGIN = textwrap.dedent('''
    """A third-party stage: the loudest sample of each input, in dBFS."""
    import numpy as np

    from audioflow.pipeline import Option, Stage


    class Loudest(Stage):
        """The peak level of each input, in dBFS."""

        name = "loudest"
        options = {"floor": Option("float", -120.0, "lowest level reported, dBFS")}

        def __call__(self, audio, annotations):
            peak = float(np.max(np.abs(audio.samples))) if audio.samples.size else 0.0
            level = 20 * np.log10(peak) if peak > 0 else self.config["floor"]
            annotations.results[self.name] = {"peak_dbfs": round(max(level, self.config["floor"]), 2)}
            return audio, annotations


    class NotAStage:
        name = "broken"
''')


def install_plugin(site: Path, entry_points: str) -> None:
    """What ``pip install`` of a one-module distribution leaves in site-packages."""
    (site / "loudest_plugin.py").write_text(PLUGIN)
    dist = site / "loudest_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: loudest-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "[audioflow.stages]\nloudest = loudest_plugin:Loudest\nbroken = loudest_plugin:NotAStage\n"
                         "missing = no_such_module:Stage\n")
    monkeypatch.syspath_prepend(str(site))
    STAGES.reload()
    yield site
    STAGES.reload()


def tone_file(path: Path, amplitude: float) -> Path:
    t = np.arange(16000) / 16000
    sf.write(path, (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, subtype="FLOAT")
    return path


def test_the_registry_is_complete_in_a_fresh_interpreter():
    code = "from audioflow.pipeline import STAGES; print(','.join(STAGES))"
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert set(names.split(",")) >= {"split", "enhance", "denoise", "vad", "diarize", "transcribe", "analyze",
                                     "features", "fingerprint", "classify"}


def test_a_third_party_stage_runs_in_the_pipeline(plugin_site, tmp_path):
    assert "loudest" in STAGES and STAGES["loudest"].__module__ == "loudest_plugin"
    (stage,) = build_steps("loudest:floor=-90")
    assert stage.config["floor"] == -90.0
    files = tmp_path / "in"
    files.mkdir()
    tone_file(files / "half.wav", 0.5)
    summary = run([str(files)], "loudest", tmp_path / "out", workers=1)
    assert summary.ok == 1
    result = json.loads(next((tmp_path / "out").rglob("half.json")).read_text())
    assert abs(result["results"]["loudest"]["peak_dbfs"] - 20 * np.log10(0.5)) < 0.01


def test_broken_plugins_are_named_and_do_not_hide_the_others(plugin_site):
    from audioflow.errors import ParameterError

    assert "broken" not in STAGES and "missing" not in STAGES and "split" in STAGES
    with pytest.raises(ParameterError, match=r"broken.*not a Stage subclass"):
        build_steps("broken")
    with pytest.raises(ParameterError, match=r"missing.*no_such_module"):
        build_steps("missing")
    with pytest.raises(ParameterError, match=r"unknown step 'nothing'.*loudest"):
        build_steps("nothing")


def test_the_command_line_lists_and_runs_a_plugin_stage(plugin_site, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200"}
    cli = [sys.executable, "-m", "audioflow"]
    shown = subprocess.run([*cli, "process", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "loudest" in shown.stdout and "transcribe" in shown.stdout
    options = subprocess.run([*cli, "steps", "loudest"], capture_output=True, text=True, env=env, timeout=120)
    assert "floor" in options.stdout and "-120.0" in options.stdout, options.stdout + options.stderr
    tone_file(tmp_path / "quiet.wav", 0.1)
    done = subprocess.run([*cli, "process", str(tmp_path / "quiet.wav"), "-o", str(tmp_path / "out"), "-s",
                                 "loudest", "--workers", "1", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(next((tmp_path / "out").rglob("quiet.json")).read_text())
    assert result["results"]["loudest"]["peak_dbfs"] == -20.0


def test_every_stage_is_a_ray_actor_made_from_its_declaration(plugin_site, tmp_path):
    """audioflow.ray offers every stage of the registry, plugins included; the actors are plain callables
    on Ray Data batches, so they run here without a Ray cluster."""
    import importlib

    import audioflow.ray as ray_blocks
    from voices import SR, flite, have_flite

    ray_blocks = importlib.reload(ray_blocks)  # the plugin was installed after the first import
    for name in STAGES:
        actor = getattr(ray_blocks, STAGES[name].__name__)
        assert actor.stage_name == name and actor.__name__ in ray_blocks.__all__
    if not have_flite():
        pytest.skip("flite not installed")
    speech = flite("The birch canoe slid on the smooth planks.", "slt", tmp_path / "s.wav")
    batch = {"id": ["s"], "audio": [np.pad(speech, (SR, SR))], "sample_rate": np.array([SR])}
    out = ray_blocks.VAD(threshold=0.5)(batch)
    segments = json.loads(out["vad"][0])["segments"]
    assert len(segments) == 1 and abs(segments[0]["start"] - 1.0) < 0.2
    loudest = ray_blocks.Loudest(floor=-60)(batch)
    assert json.loads(loudest["loudest"][0])["peak_dbfs"] < 0


class PeakEnvelope(Field):
    """A third-party field type (its class statement registers the kind): the audio's peak level per block
    of ``block`` samples at ``sr`` Hz, float32 ``[blocks]``. Defined at module level: the writer's worker
    processes receive it by pickling."""

    kind = "test_peak_envelope"
    audio = True
    batch = "padded"

    def __init__(self, sr: int = 16000, block: int = 160) -> None:
        super().__init__()
        self.sr, self.block = sr, block

    def to_spec(self):
        return {"kind": self.kind, "sr": self.sr, "block": self.block}

    def columns(self):
        return [pa.field(self.name, pa.large_binary())]

    def encode(self, value):
        y, _ = af.load(value, sr=self.sr)
        blocks = np.abs(y[: len(y) // self.block * self.block]).reshape(-1, self.block).max(axis=1)
        return Encoded({self.name: blocks.astype("<f4").tobytes()}, len(y) / self.sr)

    def decode(self, table, rows):
        return [np.frombuffer(table.bytes_of(self.name, int(r)), "<f4") for r in rows]


def test_a_field_type_defined_outside_the_package_packs_and_loads(tmp_path):
    from audioflow import AudioDataLoader, store

    envelope = PeakEnvelope
    folder = tmp_path / "clips"
    folder.mkdir()
    for i, amplitude in enumerate((0.1, 0.3, 0.6)):
        tone_file(folder / f"clip{i}.wav", amplitude)
    out = tmp_path / "packed"
    manifest = store.write(folder, out, {"audio": store.WaveformField(16000), "env": envelope()}, num_workers=2,
                           progress=False)
    assert manifest["rows"] == 3 and abs(manifest["audio_seconds"] - 3.0) < 1e-9
    ds = store.open(out)
    assert type(ds.fields["env"]) is envelope
    batch = ds.get_batch([2, 0])
    assert batch["env"].shape == (2, 100) and list(batch["env_lengths"]) == [100, 100]
    assert abs(batch["env"][0].max() - 0.6) < 1e-3 and abs(batch["env"][1].max() - 0.1) < 1e-3
    with AudioDataLoader(str(out), batch_size=3, num_workers=0) as loader:  # the loader finds the audio field
        (features, _), = list(loader)
        assert features.shape == (3, 16000)
    # a process that has not defined the kind is told what is missing
    code = f"from audioflow import store; store.open({str(out)!r})"
    failed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert failed.returncode != 0 and "unknown field kind 'test_peak_envelope'" in failed.stderr
