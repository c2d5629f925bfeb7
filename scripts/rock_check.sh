#!/bin/sh
# The rock installs and loads: `luarocks make` of the rockspec into a scratch
# tree, then a Lua 5.4 that sees only that tree requires the module and builds
# a connection; a binary rock packed from that tree installs into a second
# tree and loads too. Also checks that the rock holds the Lua module alone (the C
# library, header and pkg-config file are `make install`'s).
# Exit status 0 when all of it holds.
set -eu
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
if ! command -v luarocks >/dev/null 2>&1; then
    echo "luarocks is not installed (scripts/deps.sh installs it)" >&2
    exit 1
fi
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
# Never rely on which Lua /usr/bin/lua is: the target Lua is named.
luarocks --lua-version=5.4 lint rockspec/signalr-0.1.0-1.rockspec
luarocks --lua-version=5.4 make rockspec/signalr-0.1.0-1.rockspec --tree "$tree"

files=$(cd "$tree" && find . -type f ! -path './lib/luarocks/*' | sort)
want="./lib/lua/5.4/signalr/core.so
./share/lua/5.4/signalr/init.lua"
if [ "$files" != "$want" ]; then
    echo "the rock installed other files than the Lua module:" >&2
    echo "$files" >&2
    exit 1
fi

# Outside the checkout, with a tree's paths only (no ./lua, no build/).
require_from() { # require_from <tree>
    (cd "$1" && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "$LUA" -e "
package.path = '$1/share/lua/5.4/?.lua;$1/share/lua/5.4/?/init.lua'
package.cpath = '$1/lib/lua/5.4/?.so'
local signalr = require('signalr')
assert(package.searchpath('signalr.core', package.cpath) == '$1/lib/lua/5.4/signalr/core.so')
assert(signalr.VERSION == '0.1.0', signalr.VERSION)
local conn <close> = signalr.builder():with_url('http://127.0.0.1:1/hub'):configure_logging('none'):build()
assert(conn.state == 'disconnected')
-- the MessagePack codec is linked in too
signalr.builder():with_url('http://127.0.0.1:1/hub'):with_hub_protocol('messagepack'):configure_logging('none'):build():close()
print('rock ok: signalr ' .. signalr.VERSION .. ' from ' .. package.searchpath('signalr', package.path))
")
}
require_from "$tree"

# The path luarocks itself prints works too.
(cd "$tree" && eval "$(luarocks --lua-version=5.4 path --tree "$tree")" && "$LUA" -e 'require("signalr")')

# A binary rock packed from that tree installs into another tree and loads.
mkdir "$tree/pack" "$tree/second"
(cd "$tree/pack" && luarocks --lua-version=5.4 pack signalr --tree "$tree")
luarocks --lua-version=5.4 install "$tree"/pack/signalr-0.1.0-1.*.rock --tree "$tree/second"
require_from "$tree/second"
