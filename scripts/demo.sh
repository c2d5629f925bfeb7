#!/bin/sh
# Start the bundled test hub on a free port, run examples/demo.lua against
# it, stop the hub.
set -e
cd "$(dirname "$0")/.."
. scripts/env.sh
exec lua5.4 scripts/with_hub.lua lua5.4 examples/demo.lua '{hub}/testhub'
