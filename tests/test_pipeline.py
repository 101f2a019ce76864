"""Batch processing: the step language, stages with known truths, outputs, and faults (corrupt files, a
stage that raises, a worker SIGKILLed, a hung worker, the whole run killed and resumed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audioflow as af
from audioflow import pipeline
from audioflow.pipeline import Stage, register_stage

SR = 16000


def bursts(seconds_on=(1.0, 1.5, 0.8), gap=0.5, freq=440.0, sr=SR):
    """Tone bursts separated by silent gaps; returns the audio and the gap centres (seconds)."""
    parts, centres, t = [], [], 0.0
    for i, on in enumerate(seconds_on):
        n = round(on * sr)
        parts.append(0.4 * np.sin(2 * np.pi * freq * np.arange(n) / sr))
        t += on
        if i < len(seconds_on) - 1:
            parts.append(np.zeros(round(gap * sr)))
            centres.append(t + gap / 2)
            t += gap
    return np.concatenate(parts).astype(np.float32), centres


@pytest.fixture()
def folder(tmp_path):
    """Six good recordings and four bad ones (truncated FLAC, random bytes, empty WAV, text as MP3)."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        y, _ = bursts(freq=300 + 100 * i)
        sf.write(src / f"good{i}.flac", y, SR)
    good = (src / "good0.flac").read_bytes()
    (src / "truncated.flac").write_bytes(good[:100])
    (src / "noise.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    (src / "empty.wav").write_bytes(b"")
    (src / "text.mp3").write_text("not audio at all")
    return src


def manifest(out):
    with open(Path(out) / "manifest.jsonl") as f:
        return [json.loads(line) for line in f]


def test_step_language_and_validation_before_work(tmp_path):
    assert pipeline.split_steps("split:method=silence,max=30,enhance:lufs=-23,analyze") == [
        ("split", {"method": "silence", "max": "30"}), ("enhance", {"lufs": "-23"}), ("analyze", {})]
    assert pipeline.split_steps(["split:method=fixed,window=10", "features:name=logmel,n_mels=40"]) == [
        ("split", {"method": "fixed", "window": "10"}), ("features", {"name": "logmel", "n_mels": "40"})]
    stages = pipeline.build_steps("split:method=fixed,window=2.5,overlap=0.5,enhance:lufs=-23")
    assert stages[0].config["window"] == 2.5 and stages[1].config["lufs"] == -23.0
    out = tmp_path / "never"
    for bad, message in [("transcrib", "unknown step"), ("split:methd=fixed", "no option methd"),
                         ("split:method=letters", "not one of"), ("enhance:lufs=loud", "not a float"),
                         ("split:window=5,overlap=5", "overlap"), ("features:name=mfcc,n_mfccs=3", "n_mfccs"),
                         ("enhance:eq=peaking@1000@3", "kind@freq")]:
        with pytest.raises(af.ParameterError, match=message):
            pipeline.run([str(tmp_path)], bad, out)
    assert not out.exists()  # nothing started


def test_split_at_silences_and_fixed_windows():
    y, centres = bursts()
    audio = af.Audio(y, SR)
    spans = pipeline.Split(method="silence", min=0.5, max=10, write=False).spans(audio)
    cuts = [b for _, b in spans[:-1]]
    assert len(spans) == 3 and all(abs(c - t) < 0.05 for c, t in zip(cuts, centres, strict=True))
    assert spans[0][0] == 0.0 and abs(spans[-1][1] - len(y) / SR) < 1e-9
    long_spans = pipeline.Split(method="silence", min=0.2, max=1.0, write=False).spans(audio)
    assert all(b - a <= 1.0 + 1e-9 for a, b in long_spans)
    fixed = pipeline.Split(method="fixed", window=1.0, overlap=0.25, write=False).spans(af.Audio(y[:SR * 2], SR))
    assert fixed[:3] == [(0.0, 1.0), (0.75, 1.75), (1.5, 2.0)]


def test_run_writes_results_files_and_tables(folder, tmp_path):
    pyln = pytest.importorskip("pyloudnorm")
    out = tmp_path / "out"
    summary = pipeline.run(folder, "split:min=0.5,enhance:lufs=-20,analyze:music=false,features:name=mfcc,n_mfcc=13",
                           out, workers=2)
    assert (summary.ok, summary.failed, summary.skipped) == (6, 4, 0)
    entries = {Path(e["input"]).name: e for e in manifest(out)}
    for name in ("truncated.flac", "noise.wav", "empty.wav", "text.mp3"):
        assert entries[name]["status"] == "failed" and name in entries[name]["error"]
    result = json.loads((out / "results" / "good0.json").read_text())
    assert result["results"]["split"]["count"] == 3 and len(result["segments"]) == 3
    # paths in a result are relative to the output folder, as the manifest's are
    assert all(not os.path.isabs(s["extra"]["file"]) and (out / s["extra"]["file"]).exists()
               for s in result["segments"])
    assert result["files"]["enhance"] == [result["results"]["enhance"]["file"]] == ["enhanced/good0.flac"]
    enhanced, sr = af.load(out / result["results"]["enhance"]["file"], sr=None)
    assert abs(pyln.Meter(sr).integrated_loudness(enhanced.astype(np.float64)) + 20) < 0.5
    assert abs(result["results"]["analyze"]["duration"] - 4.3) < 1e-6
    import pyarrow.parquet as pq

    table = pq.read_table(out / "features.parquet")
    assert table.num_rows == 6 and len(table.column("mean")[0].as_py()) == 13
    assert json.loads((out / "summary.json").read_text())["ok"] == 6
    assert "failed" in (out / "run.log").read_text()


@register_stage
class Trouble(Stage):
    """A test stage: raises for one input, kills its worker for another (once: a marker file), hangs
    for a third."""

    name = "trouble"

    def __call__(self, audio, annotations):
        marker = Path(annotations.output_dir) / f"killed-{annotations.id}"
        if annotations.id == "good1":
            raise RuntimeError("this stage fails on good1")
        if annotations.id == "good2" and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if annotations.id == "good3" and not marker.exists():
            marker.touch()
            time.sleep(60)
        annotations.results[self.name] = {"ok": True}
        return audio, annotations


def test_faults_are_isolated_and_resume_finishes_the_rest(folder, tmp_path):
    out = tmp_path / "out"
    summary = pipeline.run(folder, "trouble", out, workers=2, timeout=3)
    entries = {e["id"]: e for e in manifest(out)}
    assert summary.ok == 3 and summary.failed == 7
    assert "fails on good1" in entries["good1"]["error"]
    assert "worker died" in entries["good2"]["error"] and "timed out" in entries["good3"]["error"]
    assert {e for e in entries if entries[e]["status"] == "ok"} == {"good0", "good4", "good5"}
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    again = pipeline.run(folder, "trouble", out, workers=2, timeout=3, resume=True, retry_failed=True)
    assert again.skipped == 3 and again.ok == 2  # good2 and good3 now pass; good1 and the bad files fail again
    after = {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    assert all(after[name] == stamp for name, stamp in before.items())  # nothing done twice
    assert set(after) == {f"good{i}.json" for i in (0, 2, 3, 4, 5)}


def test_a_killed_run_resumes_without_losing_or_redoing(folder, tmp_path):
    out = tmp_path / "out"
    script = ("import sys; from audioflow import pipeline; "
              "pipeline.run(sys.argv[1], 'analyze:music=false,features', sys.argv[2], workers=1)")
    slow = tmp_path / "many"
    slow.mkdir()
    y, _ = bursts()
    for i in range(40):
        sf.write(slow / f"clip{i:02d}.flac", np.roll(y, i * 100), SR)
    proc = subprocess.Popen([sys.executable, "-c", script, str(slow), str(out)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (out / "manifest.jsonl").exists() and len(manifest(out)) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = manifest(out)
    assert 5 <= len(first) < 40
    assert not list((out / "results").glob("*.tmp"))  # no half-written result left as a result
    summary = pipeline.run(slow, "analyze:music=false,features", out, workers=2, resume=True)
    # a result written in the instant before the kill, its manifest line not yet, is recovered, not redone
    recovered = [e for e in manifest(out) if e.get("recovered")]
    assert summary.skipped == len(first) + len(recovered) and summary.ok == 40 - summary.skipped
    entries = manifest(out)
    assert sorted(e["id"] for e in entries) == sorted(f"clip{i:02d}" for i in range(40))  # each once
    assert len(list((out / "results").glob("*.json"))) == 40


@pytest.mark.slow
def test_music_analysis_finds_tempo_and_key_of_a_rendered_progression():
    """Chords of A minor (Am F C E) at 100 BPM with a click on every beat: tempo within 2 %, key A minor."""
    from audioflow.music import analyze_music

    sr, bpm = 22050, 100.0
    beat = 60 / bpm
    midi = lambda m: 440 * 2 ** ((m - 69) / 12)  # noqa: E731
    y = np.zeros(round(sr * 24 * beat))
    for i in range(24):
        start = round(i * beat * sr)
        t = np.arange(round(beat * sr)) / sr
        chord = [[57, 60, 64], [53, 57, 60], [48, 52, 55], [52, 56, 59]][(i // 4) % 4]
        tone = sum(0.2 / k * np.sin(2 * np.pi * midi(m) * k * t) for m in chord for k in (1, 2, 3)) * np.exp(-3 * t)
        y[start:start + len(t)] += tone[: len(y) - start]
        y[start:start + 200] += 0.5 * np.random.default_rng(i).standard_normal(200) * np.exp(-np.arange(200) / 30)
    result = analyze_music(y.astype(np.float32), sr)
    assert abs(result["tempo_bpm"] - bpm) / bpm < 0.02
    assert result["key"] == "A minor"
    assert result["harmonic_ratio"] > 0.5 and result["onset_count"] >= 20


class MeanOverTime(__import__("torch").nn.Module):
    def forward(self, x):
        return x.mean(-1)


def test_classify_runs_a_model_trained_through_the_loader(tmp_path):
    """Three classes of tones (low, mid, high); a log-mel + linear model trained through AudioDataLoader,
    exported as TorchScript with its spec, then run by the classify step per file and per segment."""
    import torch

    from audioflow import AudioDataLoader
    from audioflow.music.classify import ClassifierSpec, export_classifier

    bands = {"low": (200, 320), "mid": (600, 900), "high": (1800, 2600)}
    rng = np.random.default_rng(0)

    def clip(band):
        f = rng.uniform(*bands[band])
        t = np.arange(SR) / SR
        return (0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(SR)).astype(np.float32)

    names = list(bands)
    train = [((clip(b), SR), names.index(b)) for b in names for _ in range(20)]
    features = {"name": "logmel", "n_mels": 32, "hop_length": 160}
    model = torch.nn.Sequential(MeanOverTime(), torch.nn.Linear(32, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    with AudioDataLoader(train, batch_size=20, shuffle=True, num_workers=0, features="logmel", n_mels=32,
                         hop_length=160) as loader:
        for _ in range(30):
            for x, y in loader:
                x = (x - x.mean((1, 2), keepdim=True)) / (x.std((1, 2), keepdim=True) + 1e-5)
                loss = torch.nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    spec = ClassifierSpec(labels=names, sample_rate=SR, features=features, max_duration=1.0, normalize="utterance")
    folder = export_classifier(model, str(tmp_path / "model"), spec, torch.zeros(2, 32, 101))

    src = tmp_path / "in"
    src.mkdir()
    for band in names:
        for i in range(2):
            sf.write(src / f"{band}{i}.wav", clip(band), SR)
    both = np.concatenate([clip("low"), np.zeros(SR // 2, np.float32), clip("high")])
    sf.write(tmp_path / "both.wav", both, SR)
    out = tmp_path / "out"
    summary = pipeline.run(src, f"classify:model={folder},top=2", out, workers=1)
    assert summary.ok == 6
    for band in names:
        for i in range(2):
            result = json.loads((out / "results" / f"{band}{i}.json").read_text())["results"]["classify"]
            assert result["rows"][0]["label"] == band and len(result["rows"][0]["top"]) == 2
    pipeline.run([str(tmp_path / "both.wav")], f"split:min=0.5,write=false,classify:model={folder},per=segment",
                 tmp_path / "out2", workers=1)
    rows = json.loads((tmp_path / "out2" / "results" / "both.json").read_text())["results"]["classify"]["rows"]
    assert [r["label"] for r in rows] == ["low", "high"]
    with pytest.raises(af.ParameterError, match="classify"):
        pipeline.build_steps(f"classify:model={tmp_path}")
    import dataclasses
    import warnings

    from audioflow.music.classify import SPEC_NAME, Classifier

    clips = [clip(band) for band in names]
    scripted = tmp_path / "torchscript"  # a TorchScript model (what older projects ship) with the same spec
    scripted.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.trace(model, torch.zeros(2, 32, 101)).save(str(scripted / "model.pt"))
    (scripted / SPEC_NAME).write_text(json.dumps(dataclasses.asdict(dataclasses.replace(spec, model_file="model.pt"))))
    np.testing.assert_allclose(Classifier(str(scripted)).predict(clips, SR), Classifier(folder).predict(clips, SR),
                               atol=1e-5)
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")

    onnx_folder = export_classifier(model, str(tmp_path / "onnx"), spec, torch.zeros(2, 32, 101), format="onnx")
    np.testing.assert_allclose(Classifier(onnx_folder).predict(clips, SR), Classifier(folder).predict(clips, SR),
                               atol=1e-4)  # the same model through onnxruntime


def test_interactive_process_through_a_pseudo_terminal(folder, tmp_path):
    """``audioflow process --interactive`` asks for inputs, output, steps, workers and resume, with defaults."""
    import pty

    out = tmp_path / "asked"
    answers = [str(folder), str(out), "analyze:music=false", "1", "n"]
    prompts = (b"input files", b"output folder", b"steps (", b"worker processes", b"resume an earlier")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the terminal
        os.execv(sys.executable, [sys.executable, "-m", "audioflow", "process", "--interactive", "--no-progress"])
    transcript = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        transcript += chunk
        asked = sum(transcript.count(p) for p in prompts)
        while answers and asked > len(prompts) - len(answers):
            os.write(fd, (answers.pop(0) + "\n").encode())
    _, status = os.waitpid(pid, 0)
    text = transcript.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "split" in text and "audioflow steps NAME" in text  # the steps table, pointing to their options
    assert "6 ok, 4 failed" in text
    assert len(list((out / "results").glob("*.json"))) == 6


def test_long_inputs_are_processed_in_chunks_and_merged(tmp_path):
    """A 25 s input in 10 s chunks: segments and feature rows in the input's clock, one enhanced file with
    one gain for the whole input (the loud first part stays louder than the rest), merged measurements."""
    pyln = pytest.importorskip("pyloudnorm")
    t = np.arange(25 * SR) / SR
    y = 0.05 * np.sin(2 * np.pi * 440 * t)
    y[: 5 * SR] *= 6  # the first 5 s ~15.6 dB louder
    src = tmp_path / "long.flac"
    sf.write(src, y.astype(np.float32), SR)
    out = tmp_path / "out"
    steps = "split:method=fixed,window=4,enhance:lufs=-23,analyze:music=false,features:name=mfcc,n_mfcc=13"
    summary = pipeline.run([str(src)], steps, out, workers=1, chunk_duration=10)
    assert summary.ok == 1
    doc = json.loads((out / "results" / "long.json").read_text())
    assert doc["audio"]["chunks"] == 3 and abs(doc["audio"]["duration"] - 25.0) < 1e-9
    spans = [(s["start"], s["end"]) for s in doc["segments"]]
    assert spans == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0), (10.0, 14.0), (14.0, 18.0), (18.0, 20.0), (20.0, 24.0),
                     (24.0, 25.0)]
    assert doc["results"]["split"]["count"] == 8
    rows = doc["results"]["features"]["rows"]
    assert [(r["start"], r["end"]) for r in rows] == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    enhanced, sr = af.load(out / doc["results"]["enhance"]["file"], sr=None)
    assert len(enhanced) == 25 * SR and not list((out / "enhanced").glob("*.part*"))
    assert abs(pyln.Meter(sr).integrated_loudness(enhanced.astype(np.float64)) + 23) < 1.5
    level = lambda a, b: 20 * np.log10(np.sqrt(np.mean(enhanced[a * SR:b * SR] ** 2)))  # noqa: E731
    assert abs(level(0, 5) - level(12, 20) - 20 * np.log10(6)) < 0.5  # one gain: the contrast survives
    analyze = doc["results"]["analyze"]  # of the enhanced audio: analyze runs after enhance
    assert abs(analyze["duration"] - 25.0) < 1e-9 and analyze["chunks"] == 3
    assert abs(analyze["peak_dbfs"] - 20 * np.log10(np.abs(enhanced).max())) < 0.01
    # the loudness gated over all chunks' blocks: BS.1770 of the whole, but for blocks across chunk edges
    assert abs(analyze["loudness_lufs"] - pyln.Meter(sr).integrated_loudness(enhanced.astype(np.float64))) < 0.1


def test_chunked_processing_keeps_memory_bounded(tmp_path):
    """20 minutes at 16 kHz (77 MB as float32) in 30 s chunks: the peak of Python-visible allocations stays
    a small fraction of the decoded file."""
    import tracemalloc

    from audioflow.pipeline.files import process_file

    path = tmp_path / "hour.flac"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", SR, 1, "PCM_16") as f:
        for _ in range(20):
            f.write((0.1 * rng.standard_normal(60 * SR)).astype(np.float32))
    stages = pipeline.build_steps("enhance:lufs=-23,write=false,analyze:music=false")
    tracemalloc.start()
    entry = process_file({"path": str(path), "id": "hour"}, stages, str(tmp_path / "out"), chunk_duration=30)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert entry["status"] == "ok" and abs(entry["audio_seconds"] - 1200) < 1e-6
    assert peak < 77e6 / 2.5, peak  # measured ~26 MB: 30 s chunks and the stages' working copies


def test_classify_runs_a_hugging_face_checkpoint_as_transformers_does(tmp_path):
    """A small Wav2Vec2 audio classifier saved as a local checkpoint: the classify step's probabilities are
    transformers' own (feature extractor, model, softmax) for each file."""
    transformers = pytest.importorskip("transformers")
    import torch

    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
        conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        classifier_proj_size=16, num_labels=3, id2label={0: "low", 1: "mid", 2: "high"},
        label2id={"low": 0, "mid": 1, "high": 2})
    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForSequenceClassification(config).eval()
    extractor = transformers.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    extractor.save_pretrained(checkpoint)
    src = tmp_path / "in"
    src.mkdir()
    clips = {}
    for i, freq in enumerate((250, 700, 2000)):
        clips[f"tone{i}"] = (0.3 * np.sin(2 * np.pi * freq * np.arange(SR) / SR)).astype(np.float32)
        sf.write(src / f"tone{i}.wav", clips[f"tone{i}"], SR, subtype="FLOAT")
    out = tmp_path / "out"
    assert pipeline.run(src, f"classify:model={checkpoint},top=3", out, workers=1).ok == 3
    for name, y in clips.items():
        rows = json.loads((out / "results" / f"{name}.json").read_text())["results"]["classify"]["rows"]
        ours = {t["label"]: t["probability"] for t in rows[0]["top"]}
        with torch.no_grad():
            logits = model(**extractor([y], sampling_rate=SR, return_tensors="pt")).logits
        reference = dict(zip(("low", "mid", "high"), torch.softmax(logits, -1)[0].tolist(), strict=True))
        assert all(abs(ours[k] - reference[k]) < 1e-4 for k in reference)


def test_resume_refuses_other_steps_and_keeps_the_summary(folder, tmp_path):
    """--resume with different steps skipped the inputs done with the old ones and wrote a summary of
    "ok": 0 over the real one. Now it refuses, naming both, and leaves the folder as it was."""
    out = tmp_path / "out"
    pipeline.run([folder / "good0.flac", folder / "good1.flac"], "analyze:music=false", out, workers=1)
    before = (out / "summary.json").read_text()
    with pytest.raises(af.ParameterError, match=r"analyze:music=False.*features"):
        pipeline.run(folder, "analyze:music=false,features", out, workers=1, resume=True)
    with pytest.raises(af.ParameterError, match="another output folder"):
        pipeline.run(folder, "analyze:music=true", out, workers=1, resume=True)  # an option differs: refused too
    assert (out / "summary.json").read_text() == before
    summary = pipeline.run([folder / "good0.flac", folder / "good1.flac", folder / "good2.flac"], "analyze:music=false",
                           out, workers=1, resume=True)
    assert (summary.ok, summary.skipped) == (1, 2)


def test_enhance_with_nothing_to_do_is_refused(tmp_path):
    with pytest.raises(af.ParameterError, match="enhance has nothing to do"):
        pipeline.run(tmp_path, "enhance", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert pipeline.build_steps("enhance:highpass=80")[0].config["highpass"] == 80


def test_analysis_of_very_short_audio_warns_nothing(tmp_path):
    """analyze printed librosa's "n_fft=1024 is too large for input signal of length=690" on every run."""
    import warnings

    from audioflow.pipeline.files import process_file

    for n in (1, 690, 2000):
        af.save(tmp_path / f"short{n}.wav", 0.1 * np.random.default_rng(n).standard_normal(n).astype(np.float32), 22050)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            entry = process_file({"path": str(tmp_path / f"short{n}.wav"), "id": f"s{n}"},
                                 pipeline.build_steps("analyze"), None)
        assert entry["status"] == "ok", entry
        assert not [w for w in caught if "too large" in str(w.message) or "n_fft" in str(w.message)], \
            [str(w.message) for w in caught]


def test_gpu_share_of_an_actor_follows_its_stages_models():
    """On a GPU cluster an actor asks for the largest share its stages need: Whisper tiny and CAM++ fit four
    to a GPU, Whisper large takes one, CPU stages none (and nothing on a CPU device)."""
    from audioflow.pipeline.ray_engine import gpus_per_actor

    speech = pipeline.build_steps("vad,diarize,transcribe")
    assert gpus_per_actor(speech, "cuda") == 0.25 and gpus_per_actor(speech, "cpu") == 0.0
    assert gpus_per_actor(pipeline.build_steps("vad,transcribe:model=large-v3"), "cuda:0") == 1.0
    assert gpus_per_actor(pipeline.build_steps("transcribe:model=medium.en"), "cuda") == 0.5
    assert gpus_per_actor(pipeline.build_steps("enhance:lufs=-23,analyze"), "cuda") == 0.0
    # 'auto' follows the cluster's GPUs, not the driver's (a head node without a GPU)
    assert gpus_per_actor(speech, "auto", cluster_gpus=0) == 0.0 and gpus_per_actor(speech, "auto", 2.0) == 0.25
