# userrouter. `make help` lists the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: help build test lint fuzz run demo bench-peers

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/userrouter, bin/bench, and the demo's bin/origin and bin/demo
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/userrouter .
	$(GO) build -o bin/bench ./bench
	$(GO) build -o bin/origin ./bench/origin
	$(GO) build -o bin/demo ./bench/demo

demo: build ## show what userrouter does on this machine: origin alone vs behind userrouter, ~30 s, nothing to install
	./bin/demo

bench-peers: build ## userrouter vs nginx memcached module, proxy_cache, origin alone, then RSS against the configured sizes and hits against page size (bench/sizes.sh), ~12 min (docs/benchmarks.md); installs nginx, memcached when missing
	bash bench/peers.sh
	bash bench/sizes.sh

# One package at a time (-p 1): the fault, load and nginx tests measure
# latency and want both cores to themselves.
test: ## run every test, integration included, against real memcached, MariaDB, PostgreSQL and Django (installed and started when missing)
	bash .ci/with-services sh -c '$(GO) test -race -count=1 -p 1 ./... && "$$USERROUTER_TEST_PYTHON" contrib/django/runtests.py'


FUZZTIME ?= 5s
fuzz: ## run every Go fuzzer for FUZZTIME (default 5s) each, seeded from testdata/fuzz; new crashers land there
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$f ($(FUZZTIME))"; \
			if ! $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) >.fuzz.out 2>&1; then \
				cat .fuzz.out; \
				grep -q 'context deadline exceeded' .fuzz.out && ! grep -q 'Failing input written' .fuzz.out || { rm -f .fuzz.out; exit 1; }; \
				echo "fuzz: $$f stopped on Go's fuzz-time race (no failing input): once more"; \
				$(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || { rm -f .fuzz.out; exit 1; }; \
			else cat .fuzz.out; fi; \
			rm -f .fuzz.out; \
		done; \
	done

lint: ## check gofmt and run go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

run: build ## run userrouter on conf/userrouter.example.toml
	./bin/userrouter -config conf/userrouter.example.toml
