#!/bin/sh
# Start the test hub, run bench/bench.lua against it, stop the hub.
set -e
cd "$(dirname "$0")/.."
. scripts/env.sh
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
exec lua5.4 scripts/with_hub.lua lua5.4 bench/bench.lua '{hub}' "$@"
