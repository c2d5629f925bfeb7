#!/bin/sh
# What installs works from outside the checkout.
# - The rock, for Lua 5.4, 5.3, 5.1 and LuaJIT: `luarocks make` of the rockspec
#   into a scratch tree, then that Lua, seeing only the tree, requires the module and
#   builds a connection; a binary rock packed from that tree installs into a
#   second tree and loads too. The rock holds the Lua module alone (the C
#   library, header and pkg-config file are `make install`'s).
# - `make install` into a scratch prefix: examples/c_client.c, built with
#   pkg-config alone from that prefix and finding libsignalr.so.1 as the
#   install's hint says (rpath, LD_LIBRARY_PATH), runs against the hub.
# Exit status 0 when all of it holds.
set -eu
cd "$(dirname "$0")/.."
if ! command -v luarocks >/dev/null 2>&1; then
    echo "luarocks is not installed (scripts/deps.sh installs it)" >&2
    exit 1
fi
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT

# Outside the checkout, with a tree's paths only (no ./lua, no build/).
require_from() { # require_from <tree> <lua version> <interpreter>
    suffix=$(echo "$2" | tr . _)
    (cd "$1" && env -u LUA_PATH -u LUA_CPATH -u "LUA_PATH_$suffix" -u "LUA_CPATH_$suffix" "$3" -e "
package.path = '$1/share/lua/$2/?.lua;$1/share/lua/$2/?/init.lua'
package.cpath = '$1/lib/lua/$2/?.so'
local signalr = require('signalr')
assert(_VERSION == 'Lua $2', _VERSION)
assert(signalr.VERSION == '0.1.0', signalr.VERSION)
local conn = signalr.builder():with_url('http://127.0.0.1:1/hub'):configure_logging('none'):build()
assert(conn.state == 'disconnected')
conn:close()
-- the MessagePack codec is linked in too
signalr.builder():with_url('http://127.0.0.1:1/hub'):with_hub_protocol('messagepack'):configure_logging('none'):build():close()
print('rock ok: signalr ' .. signalr.VERSION .. ' on ' .. (jit and jit.version or _VERSION) .. ' from $1')
")
}

check_rock() { # check_rock <lua version> <interpreter>: luarocks builds for that Lua (its headers)
    v=$1
    lua=$2
    t="$tree/$lua"
    mkdir -p "$t/pack" "$t/second"
    # Never rely on which Lua /usr/bin/lua is: the target Lua is named.
    luarocks --lua-version="$v" make rockspec/signalr-0.1.0-1.rockspec --tree "$t/first"

    files=$(cd "$t/first" && find . -type f ! -path './lib/luarocks/*' | sort)
    want="./lib/lua/$v/signalr/core.so
./share/lua/$v/signalr/init.lua"
    if [ "$files" != "$want" ]; then
        echo "the rock for Lua $v installed other files than the Lua module:" >&2
        echo "$files" >&2
        exit 1
    fi
    require_from "$t/first" "$v" "$lua"

    # The path luarocks itself prints works too.
    (cd "$t" && eval "$(luarocks --lua-version="$v" path --tree "$t/first")" && "$lua" -e 'require("signalr")')

    # A binary rock packed from that tree installs into another tree and loads.
    (cd "$t/pack" && luarocks --lua-version="$v" pack signalr --tree "$t/first")
    luarocks --lua-version="$v" install "$t"/pack/signalr-0.1.0-1.*.rock --tree "$t/second"
    require_from "$t/second" "$v" "$lua"
}

luarocks --lua-version=5.4 lint rockspec/signalr-0.1.0-1.rockspec
for v in 5.4 5.3 5.1; do
    check_rock "$v" "lua$v"
done
# LuaJIT is a 5.1 to luarocks: a config names its interpreter and headers.
cat >"$tree/luajit-config.lua" <<'EOF'
lua_interpreter = "luajit"
variables = { LUA_DIR = "/usr", LUA_BINDIR = "/usr/bin", LUA_INCDIR = "/usr/include/luajit-2.1" }
EOF
LUAROCKS_CONFIG="$tree/luajit-config.lua" check_rock 5.1 luajit

# make install into a scratch prefix (the 5.4 build); its hint says how a
# program finds libsignalr.so.1 there.
prefix="$tree/prefix"
make -s install PREFIX="$prefix" >"$tree/install.txt"
cat "$tree/install.txt"
grep -qF -- "link with -Wl,-rpath,$prefix/lib, or set LD_LIBRARY_PATH=$prefix/lib" "$tree/install.txt"

# The C example built from the prefix alone: a copy outside the checkout (no
# csrc/ next to it), flags from pkg-config; linked with an rpath, and without.
cp examples/c_client.c "$tree/app.c"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cflags=$(pkg-config --cflags signalr)
libs=$(pkg-config --libs signalr)
# shellcheck disable=SC2086
(cd "$tree" && cc $cflags -o app_rpath app.c $libs -Wl,-rpath,"$prefix/lib" && cc $cflags -o app app.c $libs)
ldd "$tree/app_rpath" | grep -qF "libsignalr.so.1 => $prefix/lib/libsignalr.so.1"
LD_LIBRARY_PATH="$prefix/lib" ldd "$tree/app" | grep -qF "libsignalr.so.1 => $prefix/lib/libsignalr.so.1"

# Both run against the hub and print what examples/c_client.c says it does.
want='result: 42
result: "hello from C"
server called notify with ["ping"]
result: "ok"
stream item: 1
stream item: 2
stream item: 3
stream completed
server called square with [7]
result: 49
stopped: disconnected'
# shellcheck disable=SC2016
(. scripts/env.sh && "$LUA" scripts/with_hub.lua sh -c '"$1" "$3/clientresulthub" >"$4/rpath.txt" 2>&1 &&
    LD_LIBRARY_PATH="$2" "$5" "$3/clientresulthub" >"$4/env.txt" 2>&1' \
    sh "$tree/app_rpath" "$prefix/lib" {hub} "$tree" "$tree/app") || {
    cat "$tree/rpath.txt" "$tree/env.txt" 2>/dev/null
    echo "the C example built from $prefix failed" >&2
    exit 1
}
for run in rpath env; do
    out=$(cat "$tree/$run.txt")
    case "$out" in
    "connected, id "?*) ;;
    *)
        echo "c_client ($run): no connection id in:" >&2
        printf '%s\n' "$out" >&2
        exit 1
        ;;
    esac
    if [ "$(printf '%s\n' "$out" | sed 1d)" != "$want" ]; then
        echo "c_client ($run) printed:" >&2
        printf '%s\n' "$out" >&2
        exit 1
    fi
done
echo "make install ok: c_client built with pkg-config from $prefix ran against the hub (rpath, LD_LIBRARY_PATH)"
