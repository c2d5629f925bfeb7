package = "signalr"
version = "0.1.0-1"
source = {
   url = "git+https://example.invalid/signalr-lua.git",
   tag = "v0.1.0",
}
description = {
   summary = "ASP.NET Core SignalR client: C core, Lua 5.4 module",
   detailed = [[
A SignalR client that never blocks the host's thread: the network runs on the
core's own threads and events are dispatched from signalr.poll/run, or from
one file descriptor any event loop can watch.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.4",
}
external_dependencies = {
   LIBWEBSOCKETS = { header = "libwebsockets.h" },
   CURL = { header = "curl/curl.h" },
   JANSSON = { header = "jansson.h" },
}
build = {
   type = "make",
   build_variables = {
      LUA_INCDIR = "$(LUA_INCDIR)",
      CFLAGS = "$(CFLAGS)",
   },
   install_variables = {
      PREFIX = "$(PREFIX)",
      LUADIR = "$(LUADIR)",
      LUA_LIBDIR = "$(LIBDIR)",
      LUA_VERSION = "5.4",
   },
   build_target = "lib lua",
   install_target = "install",
}
