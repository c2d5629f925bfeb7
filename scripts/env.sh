# Sourced by the scripts: Lua paths for the in-tree build ($BUILD, default build).
BUILD=${BUILD:-build}
export LUA_PATH="./lua/?.lua;./lua/?/init.lua;./?.lua;./?/init.lua;;"
export LUA_CPATH="./$BUILD/lua/?.so;;"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
