#!/usr/bin/env bash
# Prepare, on this machine, what the GPU benchmark needs on a lent accelerator machine that cannot
# reach any package registry: wheels for what its image lacks (CPython 3.12, manylinux x86-64), the
# model files of the speech stages, and a two-voice speech recording. All of it goes into .device/
# (ignored by git), which is carried to that machine in one call (64 MiB at most: this stays near 30).
#
#   scripts/device-setup.sh                 # here, once
#   # there, in the call that carries .device:
#   eval "$(bash scripts/device-setup.sh --install)" && \
#     python3 benchmarks/bench_gpu.py --device cuda --out $OUT --speech .device/speech.wav
#   python3 -m pytest -q -m gpu tests/test_gpu.py     # the GPU correctness tests, same call
#
# The image has torch 2.11+cu130, torchaudio, numpy, scipy, numba, scikit-learn, pyarrow, rich, typer,
# fsspec, onnxruntime and nvidia-ml-py. It lacks the decoders and resampler audioflow uses, and the
# baseline's librosa and audiomentations. PyAV (a 100 MB wheel) is not carried: the benchmark's own
# files are FLAC, which libsndfile (soundfile) reads.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.device

if [ "${1:-}" = "--install" ]; then  # on the device machine
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$DEST"/wheels/*.whl
  echo "export PYTHONPATH=/tmp/site:$PWD/src"
  echo "export AUDIOFLOW_SILERO_VAD=$PWD/$DEST/models/silero_vad.onnx"
  echo "export AUDIOFLOW_SPEAKER_ENCODER=$PWD/$DEST/models/pretrained.pt"
  exit 0
fi

PY="${PY:-.venv/bin/python}"
mkdir -p "$DEST/wheels" "$DEST/models"
grep -qxF '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
# one version of each: two stop the whole install there
WHEELS=(
  soundfile==0.13.1 cffi==2.0.0 pycparser==2.23 soxr==1.0.0 miniaudio==1.71
  librosa==0.11.0 audioread==3.0.1 pooch==1.8.2 platformdirs==4.3.8 decorator==5.2.1
  audiomentations==0.43.1 numpy-minmax==0.5.0 numpy-rms==0.6.0 python-stretch==0.3.1
)
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_5_x86_64 -d "$DEST/wheels" "${WHEELS[@]}"

# model files, found where the installed packages keep them (scripts/setup.sh dev installs them)
"$PY" - "$DEST/models" <<'EOF'
import shutil, sys
from audioflow.speech.resolve import package_file
for package, relative in (("silero_vad", "data/silero_vad.onnx"), ("resemblyzer", "pretrained.pt")):
    found = package_file(package, relative)
    if found is None:
        sys.exit(f"device-setup: {package} is not installed here (run scripts/setup.sh dev first)")
    shutil.copy(found, sys.argv[1])
EOF

# ~60 s of two voices taking turns (flite's slt and rms), 16 kHz mono
if [ ! -f "$DEST/speech.wav" ]; then
  "$PY" benchmarks/bench_gpu.py --make-speech "$DEST/speech.wav"
fi
du -sh "$DEST"
