# torus: every target sets up its own toolchain. The machine's Go (1.26) fetches
# the pinned toolchain through the module proxy the first time (about 10 s), and
# GOEXPERIMENT=simd turns on GoMLX's vectorised CPU kernels (40x faster matmuls;
# the first build recompiles the standard library, about a minute).
export GOTOOLCHAIN := go1.27.3
export GOEXPERIMENT := simd
export GOFLAGS := -buildvcs=false

GO ?= go
# Packages whose own code runs goroutines, tested under the race detector too.
# GoMLX's AVX-512 matmul kernels do pointer arithmetic that -race's checkptr
# rejects (a false alarm for assembly-backed slices), so checkptr is off there.
RACE_PKGS := ./model/... ./trainer/... ./checkpoint/... ./data/... ./tokenizer/... ./parallel/... ./launch/... ./internal/cli/...
RACE_FLAGS := -race -gcflags=all=-d=checkptr=0

# What `torus --version` prints: this checkout's `git describe`, else "dev".
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/torusml/torus/internal/cli.version=$(VERSION)

.PHONY: all build demo test test-short vet fmt-check bench longctx clean check-go

all: build

check-go:
	@command -v $(GO) >/dev/null || { echo "make: no 'go' on PATH: install Go >= 1.21 (any version; the pinned $(GOTOOLCHAIN) is fetched automatically)"; exit 1; }

build: check-go
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/torus ./cmd/torus

# Train the bundled example: a byte-level model on the Go standard library's source.
demo: build
	rm -rf runs/demo
	./bin/torus train examples/recipes/byte-lm-go.yaml --out runs/demo

fmt-check: check-go
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet: check-go
	$(GO) vet ./...

test: fmt-check vet
	@command -v tcpdump >/dev/null || { [ "$$(id -u)" -eq 0 ] && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tcpdump; } || echo "make: no tcpdump: TestLoopbackStreamsEncrypted will skip"
	$(GO) test -count=1 ./...
	$(GO) test -count=1 $(RACE_FLAGS) $(RACE_PKGS)

# The quick check: gofmt, go vet, and every package's tests with -short (which
# skips the slowest), leaving out the end-to-end tests of internal/e2e (real
# worker processes) and the race detector, which `make test` runs.
test-short: fmt-check vet
	$(GO) test -short -count=1 $$($(GO) list ./... | grep -v /internal/e2e)

# Benchmarks against PyTorch on the CPU (installs Debian's python3-torch).
bench: build
	./bench/run.sh

# The long-context example pair: a base model at 1024, extended to 4096 with LoRA and
# YaRN RoPE scaling (x4); passkey and perplexity tables before and after (runs/longctx).
longctx: build
	./examples/longctx.sh

clean:
	rm -rf bin runs
