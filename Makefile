# userrouter. `make help` lists the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Where `make install` puts things: $(DESTDIR)$(PREFIX)/bin/userrouter,
# $(DESTDIR)$(SYSCONFDIR)/userrouter/, the systemd unit and the docs. The
# unit's ExecStart= and Documentation= name these paths.
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/userrouter

# `make run`'s listener and admin ports (environment or command line:
# PORT=9090 make run). `make demo` and `make bench-peers` pick free loopback
# ports themselves.
PORT       ?= 8090
ADMIN_PORT ?= 8091

.PHONY: help build test lint fuzz run demo bench-peers install

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/userrouter, bin/bench, and the demo's bin/origin and bin/demo
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/userrouter .
	$(GO) build -o bin/bench ./bench
	$(GO) build -o bin/origin ./bench/origin
	$(GO) build -o bin/demo ./bench/demo

demo: build ## show what userrouter does on this machine: origin alone vs behind userrouter, ~30 s once built (the first build takes longer), free ports, nothing to install but Go
	./bin/demo

bench-peers: build ## userrouter vs nginx memcached module, proxy_cache, origin alone, then RSS against the configured sizes and hits against page size (bench/sizes.sh), ~12 min (docs/benchmarks.md); installs nginx, memcached when missing; free ports
	bash bench/peers.sh
	bash bench/sizes.sh

# One package at a time (-p 1): the fault, load and nginx tests measure
# latency and want both cores to themselves.
test: ## run every test, integration included, against real memcached, MariaDB, PostgreSQL and Django (as root on Debian: installed and started when missing)
	bash .ci/with-services sh -c '$(GO) test -race -count=1 -p 1 -timeout 30m ./... && "$$USERROUTER_TEST_PYTHON" contrib/django/runtests.py'


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

run: build ## run userrouter on conf/userrouter.example.toml, on 127.0.0.1:$PORT (8090), admin $ADMIN_PORT (8091)
	sed -e 's/^addr = "127.0.0.1:8090"/addr = "127.0.0.1:$(PORT)"/' \
		-e 's/^admin_addr = "127.0.0.1:8091"/admin_addr = "127.0.0.1:$(ADMIN_PORT)"/' \
		conf/userrouter.example.toml >bin/run.toml
	./bin/userrouter -config bin/run.toml

install: ## install into $DESTDIR$PREFIX (/usr/local): binary, /etc/userrouter example config (kept if present), systemd unit, docs
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/userrouter .
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSCONFDIR)/userrouter $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DOCDIR)/contrib
	install -m 0755 bin/userrouter $(DESTDIR)$(PREFIX)/bin/userrouter
	install -m 0644 conf/userrouter.example.toml $(DESTDIR)$(DOCDIR)/userrouter.example.toml
	test -e $(DESTDIR)$(SYSCONFDIR)/userrouter/userrouter.toml || \
		install -m 0644 conf/userrouter.example.toml $(DESTDIR)$(SYSCONFDIR)/userrouter/userrouter.toml
	sed -e 's|/usr/local/bin/userrouter|$(PREFIX)/bin/userrouter|g' \
		-e 's|/usr/local/share/doc/userrouter|$(DOCDIR)|g' \
		-e 's|/etc/userrouter/|$(SYSCONFDIR)/userrouter/|g' \
		contrib/systemd/userrouter.service >$(DESTDIR)$(UNITDIR)/userrouter.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/userrouter.service
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/
	install -m 0644 contrib/nginx/userrouter.conf $(DESTDIR)$(DOCDIR)/contrib/nginx-userrouter.conf
