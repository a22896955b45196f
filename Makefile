GO ?= go

.PHONY: all run build deps test vet fmt-check bench fuzz screenshot clean

all: build

run:
	$(GO) run .

build:
	$(GO) build -o bin/chatroom .

# Installs redis-server, redis-cli, /usr/bin/chromium, npm and nginx (Debian
# packages redis-server, redis-tools, chromium, npm, nginx) when missing: as root
# directly, else with passwordless sudo, else prints what to install and
# fails; then axe-core from the npm registry into .deps/ (git-ignored).
deps:
	@bash .ci/deps.sh
	@bash .ci/npm-deps.sh

fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Fuzz targets as package:Target (seeds in <package>/testdata/fuzz/):
# `make test` fuzzes each briefly, `make fuzz` for FUZZTIME each. A failure
# saves the input under <package>/testdata/fuzz/<Target>/, where every later
# `go test` replays it.
FUZZ_TARGETS = ./internal/chat:FuzzCleanName ./internal/chat:FuzzCleanMessage ./internal/chat:FuzzParseID ./internal/chat:FuzzParsePositions \
	.:FuzzMessageEvent ./internal/sse:FuzzRoundTrip ./internal/sse:FuzzReader
FUZZTIME ?= 60s

test: deps fmt-check vet
	$(GO) test -race -count=1 -timeout 14m ./...
	@for pf in $(FUZZ_TARGETS); do \
		$(GO) test -run='^$$' -fuzz="^$${pf#*:}$$" -fuzztime=5s $${pf%%:*} || exit 1; \
	done

# The load benchmark (issue 5): the Go benchmarks, the page's budgets in
# headless Chromium (page load, Enter → shown), then every chatbench
# scenario, 3 runs each (medians), and again with the servers and the
# generator pinned to separate cores.
bench: deps
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./...
	PAGE_BUDGETS=1 $(GO) test -count=1 -run='^TestPageBudgets$$' .
	$(GO) run ./cmd/chatbench -scenario all -runs 3 -json bench.json
	$(GO) run ./cmd/chatbench -scenario all -runs 3 -taskset -json bench-taskset.json

fuzz:
	@for pf in $(FUZZ_TARGETS); do \
		echo "fuzzing $$pf for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$${pf#*:}$$" -fuzztime=$(FUZZTIME) $${pf%%:*} || exit 1; \
	done

# The README's screenshots (phone and desktop, light and dark), taken by
# TestScreenshots in headless Chromium. Tests never write tracked files; this
# target does, on purpose.
screenshot: deps
	SCREENSHOT_DIR=$(CURDIR)/docs $(GO) test -count=1 -run '^TestScreenshots$$' .

clean:
	rm -rf bin
