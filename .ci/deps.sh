#!/usr/bin/env bash
# Installs what the tests need: redis-server, redis-cli (Debian packages
# redis-server, redis-tools), /usr/bin/chromium (package chromium), npm
# (for the browser tests' npm packages, installed by .ci/npm-deps.sh) and
# /usr/sbin/nginx (package nginx: the proxy tests run it with the shipped
# deploy/nginx config); then, where the system's apt offers them,
# /usr/bin/caddy (package caddy: the Caddy tests run the shipped
# deploy/Caddyfile) and systemd-analyze (package systemd: the deploy test
# verifies the shipped unit and rates its sandbox). Those two are optional:
# where they cannot be installed the tests that need them say so and skip.
# Called by `make deps`. Idempotent: does nothing when all are present.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
optional=()
[ -x /usr/bin/caddy ] || optional+=(caddy)
command -v systemd-analyze >/dev/null 2>&1 || optional+=(systemd)

if [ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ]; then
	echo "deps: redis-server, redis-cli, /usr/bin/chromium, npm, /usr/sbin/nginx, /usr/bin/caddy and systemd-analyze present"
	exit 0
fi

# Only the missing packages: one already provided otherwise (npm from
# another Node.js, say) could conflict with its Debian package.
packages=("${missing[@]}")

if [ "$(id -u)" -eq 0 ]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	sudo=(sudo)
else
	if [ ${#missing[@]} -eq 0 ]; then
		echo "deps: optional packages missing (their tests skip): ${optional[*]}; install them with: sudo apt-get install -y ${optional[*]}" >&2
		exit 0
	fi
	echo "deps: missing: ${missing[*]}" >&2
	echo "deps: install the Debian packages: ${packages[*]} (and, optional, ${optional[*]:-nothing})" >&2
	echo "deps:   sudo apt-get update && sudo apt-get install -y ${packages[*]} ${optional[*]:-}" >&2
	exit 1
fi

echo "deps: installing ${packages[*]:-} ${optional[*]:-}"

# The tests start their own redis-server and nginx processes on free ports,
# so the system services are not wanted. Deny service starts during the install with
# a temporary policy-rc.d (honoured by invoke-rc.d and deb-systemd-invoke),
# unless one exists already: in a container without an init system a failed
# service start would otherwise make the package's postinst, and so the whole
# install, fail.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	added_policy=1
fi
cleanup() {
	if [ "$added_policy" -eq 1 ]; then
		"${sudo[@]}" rm -f "$policy"
	fi
}
trap cleanup EXIT

apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
"${apt[@]}" update
status=0
if [ ${#packages[@]} -gt 0 ]; then
	"${apt[@]}" install -y "${packages[@]}" || status=$?
fi

if [ "$status" -ne 0 ]; then
	# A postinst that failed only on starting a service leaves the binaries
	# installed; accept that, report anything else.
	if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && [ -x /usr/bin/chromium ] && command -v npm >/dev/null 2>&1 && [ -x /usr/sbin/nginx ]; then
		echo "deps: apt-get install exited with $status, but all binaries are installed; continuing" >&2
	else
		echo "deps: apt-get install failed with status $status" >&2
		exit "$status"
	fi
fi

for bin in redis-server redis-cli; do
	command -v "$bin" >/dev/null 2>&1 || { echo "deps: $bin still missing" >&2; exit 1; }
done
[ -x /usr/bin/chromium ] || { echo "deps: /usr/bin/chromium still missing" >&2; exit 1; }
[ -x /usr/sbin/nginx ] || { echo "deps: /usr/sbin/nginx still missing" >&2; exit 1; }
for pkg in "${optional[@]}"; do
	"${apt[@]}" install -y "$pkg" || echo "deps: optional package $pkg could not be installed here; its tests will skip" >&2
done
echo "deps: installed"
