# The two commands of the README; each one sets up everything it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast lint bench bench-gpu setup clean install-matrix

demo:  ## set up, then run the demo on its embedded corpus
	scripts/setup.sh dev
	$(VENV)/bin/audioflow demo --out audioflow-demo

test:  ## set up, then lint and run the whole test suite (slow tests included)
	scripts/setup.sh dev
	$(PY) -m ruff check src tests benchmarks scripts
	@# the workplace's layer checker, where it is (tests/test_architecture.py checks the same rules anywhere)
	@if [ -f ../shared/tools/check_layers.py ]; then out=$$(python3 ../shared/tools/check_layers.py .); \
	  [ -z "$$out" ] || { echo "imports pointing up the layers:"; echo "$$out"; exit 1; }; fi
	$(PY) -m pytest -q || [ $$? -eq 5 ]  # 5: no tests collected
	@# the wheel as users install it: a fresh environment per extra, each extra's checks (scripts/smoke_extra.py)
	$(PY) scripts/install_matrix.py

test-fast:  ## the inner loop: skip tests marked slow
	scripts/setup.sh dev
	$(PY) -m pytest -q -m "not slow"

lint:
	$(PY) -m ruff check src tests benchmarks scripts

install-matrix:  ## build the sdist and wheel; install it per extra in fresh environments, check each; README's sizes
	scripts/setup.sh dev
	$(PY) scripts/install_matrix.py --readme

bench:  ## benchmarks side by side with the libraries users would pick instead; writes docs/benchmarks.md
	scripts/setup.sh dev,bench
	cd benchmarks && ../$(PY) bench_io.py && ../$(PY) bench_features.py && ../$(PY) bench_augment.py && ../$(PY) bench_store.py && ../$(PY) bench_loader.py && ../$(PY) bench_lhotse.py && ../$(PY) bench_batchpath.py && ../$(PY) bench_process.py && ../$(PY) bench_scale.py && ../$(PY) bench_speech.py && ../$(PY) bench_separate.py && ../$(PY) bench_diarize.py && ../$(PY) bench_words.py && ../$(PY) bench_serve.py && ../$(PY) bench_startup.py

bench-gpu:  ## on a machine with CUDA: the loader feeding a model, features on the device, model stages
	scripts/setup.sh dev
	$(PY) benchmarks/bench_gpu.py --device cuda --out bench-gpu
	$(PY) -m pytest -q -m gpu tests/test_gpu.py

setup:
	scripts/setup.sh dev

clean:
	rm -rf $(VENV) audioflow-demo .pytest_cache .ruff_cache
