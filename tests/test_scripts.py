"""Every pool audioflow starts works from a plain script without ``if __name__ == "__main__":``, from
``python -c`` and from standard input (as a notebook runs code), after the parent has used torch's threads."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys, tempfile
import numpy as np, torch
import audioflow as af
from audioflow import AudioDataLoader, pipeline, store

torch.ones(500, 500) @ torch.ones(500, 500)  # the parent has run torch's thread pool before any fork
folder = tempfile.mkdtemp()
for i in range(6):
    af.save(f"{folder}/clip{i}.wav", (np.random.default_rng(i).standard_normal(16000) * 0.1).astype(np.float32), 16000)
info = store.write(folder, f"{folder}/packed", {"audio": store.WaveformField(sr=16000),
                   "mel": store.MelSpectrogramField(sr=16000)}, num_workers=2, progress=False)
rows = sum(len(batch.features) for batch in AudioDataLoader(folder, batch_size=2, sample_rate=16000, num_workers=2))
summary = pipeline.run(folder, "features", f"{folder}/out", workers=2)
print("done", info["rows"], rows, summary.ok)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["file", "-c", "stdin"])
def test_pools_start_from_a_script_without_a_main_guard(how, tmp_path):
    path = tmp_path / "no_guard.py"
    path.write_text(SCRIPT)
    command = {"file": [sys.executable, str(path)], "-c": [sys.executable, "-c", SCRIPT],
               "stdin": [sys.executable, "-"]}[how]
    done = subprocess.run(command, input=SCRIPT if how == "stdin" else None, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-4:] == ["done", "6", "6", "6"], done.stdout
