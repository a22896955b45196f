#!/usr/bin/env bash
# Installs the npm packages the browser tests inject into pages (axe-core)
# under .deps/ in the repository (git-ignored). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .deps/node_modules/axe-core/axe.min.js ]; then
	echo "deps: axe-core present"
	exit 0
fi
echo "deps: installing axe-core from the npm registry into .deps/"
npm install --no-audit --no-fund --loglevel=error --prefix .deps axe-core@4
