package = "signalr"
version = "0.1.0-1"
-- No public repository yet: the source is this repository's git. `luarocks make`
-- builds from the checkout it runs in and never fetches it.
source = {
   url = "git+file:///work/main",
   branch = "main",
}
description = {
   summary = "ASP.NET Core SignalR client: C core, module for Lua 5.1 to 5.4 and LuaJIT",
   detailed = [[
A SignalR client that never blocks the host's thread: the network runs on the
core's own threads and events are dispatched from signalr.poll/run, or from
one file descriptor any event loop can watch.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.1, < 5.5",
}
-- Libraries, not headers: luarocks 3.8 looks for headers in <dir>/include only,
-- and Debian keeps curl's under /usr/include/x86_64-linux-gnu; its library
-- look-up knows the multiarch directory. The build itself gets every flag
-- from pkg-config (Makefile).
external_dependencies = {
   LIBWEBSOCKETS = { library = "websockets" },
   CURL = { library = "curl" },
   JANSSON = { library = "jansson" },
   SIMDJSON = { library = "simdjson" },
   MSGPACK = { library = "msgpackc" },
   OPENSSL = { library = "crypto" },
}
-- The rock is the Lua module only: signalr/init.lua and signalr/core.so (the
-- core linked in statically). The C library, signalr.h and signalr.pc are
-- `make install`'s. build-rock keeps the rock's objects apart from a
-- development build.
-- The Lua is the one luarocks builds for (--lua-version, or its default):
-- its headers (LUA_INCDIR) and its module dirs (LUADIR, LIBDIR) come from
-- luarocks, so nothing here names a version. The Makefile recompiles the
-- binding in build-rock when LUA_INCDIR changes (one Lua after another).
build = {
   type = "make",
   build_target = "lua",
   build_variables = {
      BUILD = "build-rock",
      LUA_INCDIR = "$(LUA_INCDIR)",
      CFLAGS = "$(CFLAGS)",
   },
   install_target = "install-lua",
   -- the same headers and flags: install-lua depends on the build, which
   -- must be up to date for this Lua, not rebuilt for the Makefile's default
   install_variables = {
      BUILD = "build-rock",
      LUA_INCDIR = "$(LUA_INCDIR)",
      CFLAGS = "$(CFLAGS)",
      LUADIR = "$(LUADIR)",
      LUA_LIBDIR = "$(LIBDIR)",
   },
}
