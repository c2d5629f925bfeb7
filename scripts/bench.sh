#!/bin/sh
# Benchmarks against the test hub.
#   sh scripts/bench.sh [args]            bench/bench.lua: throughput, latency, idle memory
#   sh scripts/bench.sh churn [args]      bench/churn.lua: start/stop, reconnect and
#                                         build/drop cycles; RSS, fds, threads, registry
#   sh scripts/bench.sh values            bench/values.lua: Lua table <-> wire per key
#   sh scripts/bench.sh large [transport] bench/large.lua: peak memory per large message received
#   sh scripts/bench.sh wire              bench/wire.lua: bytes on the wire per message, JSON and MessagePack
#   sh scripts/bench.sh reconnect [args]  bench/reconnect_latency.lua: hub restart ->
#                                         on_reconnected (starts and restarts its own hub)
# The first two start the hub and pass its URL; args go to the Lua script.
# BUILD picks the build directory (default build), as in scripts/env.sh.
set -e
cd "$(dirname "$0")/.."
. scripts/env.sh
# As many descriptors as the hard limit allows (never fewer than we had).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
case "$1" in
  churn)
    shift
    exec lua5.4 scripts/with_hub.lua lua5.4 bench/churn.lua '{hub}' "$@" ;;
  values)
    shift
    HUB_ENV="HUB_MAX_RECEIVE_BYTES=0" exec lua5.4 scripts/with_hub.lua lua5.4 bench/values.lua '{hub}' "$@" ;;
  wire)
    shift
    exec lua5.4 scripts/with_hub.lua lua5.4 bench/wire.lua '{hub}' "$@" ;;
  large)
    shift
    exec lua5.4 scripts/with_hub.lua lua5.4 bench/large.lua '{hub}' "$@" ;;
  reconnect)
    shift
    exec lua5.4 bench/reconnect_latency.lua "$@" ;;
  *)
    exec lua5.4 scripts/with_hub.lua lua5.4 bench/bench.lua '{hub}' "$@" ;;
esac
