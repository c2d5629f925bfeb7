# Sourced by the scripts: Lua paths for the in-tree build ($BUILD, default build),
# and the interpreter under test ($LUA, default lua5.4).
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
export LUA
export LUA_PATH="./lua/?.lua;./lua/?/init.lua;./?.lua;./?/init.lua;;"
export LUA_CPATH="./$BUILD/lua/?.so;;"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
# busted starts with "#!/usr/bin/env lua", and /usr/bin/lua is whichever Lua
# the alternatives system picked (Lua 5.1 once Debian's luarocks is in): run
# its script with the interpreter under test instead. BUSTED is the script.
if [ -z "${BUSTED:-}" ]; then
    BUSTED=$(command -v busted || true)
    export BUSTED
fi
busted() { "$LUA" "$BUSTED" "$@"; }
