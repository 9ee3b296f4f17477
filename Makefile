# Learncast — the two commands a new machine needs are `make setup` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
TORCH_VERSION ?= 2.13.0
SYSTEM_FFMPEG ?= /usr/bin/ffmpeg

.PHONY: setup test test-slow test-system-ffmpeg lint run watch status bench docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so no other package drags in a multi-GB CUDA build; openai-whisper last
# and without its dependencies, so triton (CUDA-only, ~1 GB) is never installed; resemblyzer
# too, for its voice encoder weights only (no librosa, no webrtcvad C build).
setup: $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps "openai-whisper==20250625"
	$(PIP) install -q --no-deps "resemblyzer==0.1.4"
	$(PY) -c "import pipeline.media as m; print('ffmpeg:', m.find_ffmpeg())"

test: $(PY)
	$(PY) -m ruff check pipeline tests bench scripts
	scripts/ensure-chromium.sh
	$(PY) -m pytest -m "not slow" -q

test-slow: $(PY)
	scripts/ensure-chromium.sh
	scripts/ensure-servers.sh
	$(PY) -m pytest -m slow -q

# The whole-recording tests (marker whole_recording, slow ones included) again, with the
# pipeline running a distribution's ffmpeg (Debian 12: 5.1) selected as users select one.
test-system-ffmpeg: $(PY)
	scripts/ensure-chromium.sh
	SYSTEM_FFMPEG=$(SYSTEM_FFMPEG) scripts/ensure-system-ffmpeg.sh
	LEARNCAST_FFMPEG__PATH=$(SYSTEM_FFMPEG) $(PY) -m pytest -m whole_recording -q

lint: $(PY)
	$(PY) -m ruff check pipeline tests bench scripts

# The first run in a fresh clone (no state yet) processes the sample briefing from assets/samples.
run:
	@[ -x $(PY) ] || { echo "No virtual environment at $(VENV): run \`make setup\` first (or make run VENV=/path/to/a/venv with Learncast's dependencies)"; exit 1; }
	@[ -e state/learncast.db ] || { echo "First run: copying the sample briefing from assets/samples into inbox/"; cp -n assets/samples/* inbox/; }
	$(PY) -m pipeline run

watch:
	$(PY) -m pipeline watch

status:
	$(PY) -m pipeline status

# Regenerate the configuration reference in README.md from the schema.
docs: $(PY)
	$(PY) -m scripts.update_readme

clean:
	rm -rf work/.claims .pytest_cache

bench: $(PY)
	$(PY) -m bench.run $(SUITES)
