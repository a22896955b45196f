GO ?= go

.PHONY: all run build deps test vet fmt-check bench fuzz clean

all: build

run:
	$(GO) run .

build:
	$(GO) build -o bin/chatroom .

# Installs redis-server, redis-cli and /usr/bin/chromium (Debian packages
# redis-server, redis-tools, chromium) when missing: as root directly, else
# with passwordless sudo, else prints what to install and fails.
deps:
	@bash .ci/deps.sh

fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: deps fmt-check vet
	$(GO) test -race -count=1 -timeout 12m ./...

bench:
	$(GO) run ./cmd/chatbench -scenarios all

# TODO: list the fuzz targets, one `go test -run=^$$ -fuzz=^FuzzX$$ -fuzztime=30s ./pkg` each.
fuzz:
	@echo "fuzz: TODO: no fuzz targets yet"

clean:
	rm -rf bin
