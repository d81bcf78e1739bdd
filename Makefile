# Quick start: `make demo` and `make test`. Each sets up .venv itself (idempotent).
SHELL := /bin/bash
PY := python3.11
VENV := .venv
APT_PACKAGES := espeak-ng flite sox ffmpeg irstlm
CONFIG ?= default

.PHONY: demo test test-fast quick setup clean

setup: .stamp-apt .stamp-venv

# System tools, installed only if missing: TTS and sox for the embedded corpus, ffmpeg (shorten
# audio) and IRSTLM (WSJ's LM pruning, in /usr/lib/irstlm/bin on Debian) for egs/wsj.
.stamp-apt:
	@missing=""; for p in espeak-ng flite sox ffmpeg; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	[ -x /usr/lib/irstlm/bin/prune-lm ] || command -v prune-lm >/dev/null || missing="$$missing irstlm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@touch $@

.stamp-venv: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	[ -x $(VENV)/bin/python ] || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel of 2.13.0 is on local disk.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

# the whole suite (CI); test-fast leaves out the tests marked slow (recipes, the quick corpus)
test: setup
	ASRCOMP_REQUIRE_TTS=1 $(VENV)/bin/python -m pytest -q tests

test-fast: setup
	$(VENV)/bin/python -m pytest -q -m "not slow" tests

demo: setup
	cd egs/synth && ./run.sh --config $(CONFIG)

quick: setup
	cd egs/synth && ./run.sh --config quick

clean:
	rm -rf $(VENV) .stamp-apt .stamp-venv
