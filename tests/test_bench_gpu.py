"""benchmarks/bench_gpu.py keeps working between the rare sessions that have a GPU: its --quick run on the
CPU takes the same code paths (corpus, packed dataset, both loaders training the model, every feature,
the model stages) at tiny sizes."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench_module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import bench_gpu

        yield bench_gpu
    finally:
        sys.path.remove(str(SCRIPT.parent))


@pytest.mark.slow
def test_the_quick_cpu_run_measures_every_part(tmp_path):
    parts = "features,loader,models" if shutil.which("flite") else "features,loader"
    run = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path),
                          "--parts", parts], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert data["errors"] == {}
    runs = data["loader"]["runs"]
    assert len(runs) == 5
    for name, figures in runs.items():
        assert "error" not in figures, (name, figures)
        assert figures["samples_per_s"] > 0 and figures["steps"] > 0 and 0 <= figures["wait_pct"] <= 100
        if "no model" not in name:  # the model trains: finite losses (it cannot learn much in 6 steps)
            assert math.isfinite(figures["loss_first"]) and math.isfinite(figures["loss_last"])
    assert data["loader"]["corpus"]["clips"] == 48
    for name, ms in data["features"]["ms"].items():
        assert ms["audioflow"] > 0, name
    if "models" in parts:
        rows = data["models"]["x_real_time"]
        assert rows["diarization (VAD + embeddings + clustering)"]["speakers"] == 2
        assert rows["speaker embeddings (GE2E, 1.5 s windows every 0.25 s)"]["cpu"] > 1
    report = (tmp_path / "bench_gpu.md").read_text()
    assert "| audioflow, FLAC files |" in report and "| log-mel (80) |" in report


def test_published_figures_merge_parts_from_several_calls(bench_module):
    """docs/benchmarks.md's GPU section is made from the JSON files in benchmarks/results/."""
    files = sorted((ROOT / "benchmarks" / "results").glob("gpu-*.json"))
    assert files, "the GPU figures' raw results are kept in benchmarks/results/"
    merged = bench_module.merge([json.loads(f.read_text()) for f in files])
    assert merged["loader"] and merged["features"] and merged["models"] and merged["errors"] == {}
    section = bench_module.render(merged)
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert section.strip() in doc, "stale: run bench_gpu.py --publish benchmarks/results/gpu-*.json"
