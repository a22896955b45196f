GO ?= go

.PHONY: all run build deps test vet fmt-check bench fuzz screenshot clean

all: build

run:
	$(GO) run .

build:
	$(GO) build -o bin/chatroom .

# Installs redis-server, redis-cli, /usr/bin/chromium, npm and nginx (Debian
# packages redis-server, redis-tools, chromium, npm, nginx) when missing, and
# caddy and systemd-analyze (packages caddy, systemd) where apt offers them:
# as root directly, else with passwordless sudo, else prints what to install
# and fails; then axe-core from the npm registry into .deps/ (git-ignored).
deps:
	@bash .ci/deps.sh
	@bash .ci/npm-deps.sh

fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Fuzz targets as package:Target:N (seeds in <package>/testdata/fuzz/):
# `make test` fuzzes each for N executions (about 5 s each here), `make fuzz`
# for FUZZTIME each. A failure saves the input under
# <package>/testdata/fuzz/<Target>/, where every later `go test` replays it.
# `make test` counts executions rather than time: Go 1.26's fuzzing
# coordinator can report a spurious "context deadline exceeded" failure when
# a -fuzztime duration ends while a worker is busy (golang/go#75804, fixed in
# Go 1.27); a count has no deadline to race.
FUZZ_TARGETS = ./internal/chat:FuzzCleanName:40000 ./internal/chat:FuzzCleanMessage:150000 \
	./internal/chat:FuzzParseID:100000 ./internal/chat:FuzzParsePositions:100000 \
	.:FuzzMessageEvent:1500 ./internal/sse:FuzzRoundTrip:150000 ./internal/sse:FuzzReader:150000
FUZZTIME ?= 60s

test: deps fmt-check vet
	$(GO) test -race -count=1 -timeout 14m ./...
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest#*:}; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$${n}x $$pkg || exit 1; \
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
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; \
		echo "fuzzing $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

# The README's screenshots (phone and desktop, light and dark), taken by
# TestScreenshots in headless Chromium. Tests never write tracked files; this
# target does, on purpose.
screenshot: deps
	SCREENSHOT_DIR=$(CURDIR)/docs $(GO) test -count=1 -run '^TestScreenshots$$' .

clean:
	rm -rf bin
