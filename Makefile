# SignalR client for Lua: C core (csrc/), Lua binding (binding/), Lua sugar (lua/).
# Every library comes through pkg-config.

# LUA picks the Lua the module is built (and `make specs` run) for: lua5.4
# (default), lua5.3, lua5.1 or luajit. Each Lua gets its own build dir:
# build for 5.4, build-<LUA> for the others, so the builds can sit side by
# side. LuaJIT implements Lua 5.1: its modules install under the 5.1 paths.
LUA ?= lua5.4
ifeq ($(LUA),luajit)
LUA_VERSION ?= 5.1
LUA_PC ?= luajit
else
LUA_VERSION ?= $(patsubst lua%,%,$(LUA))
endif
ifeq ($(LUA),lua5.4)
BUILD ?= build
else
BUILD ?= build-$(LUA)
endif

PREFIX ?= /usr/local
LUADIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
PKG_CONFIG ?= pkg-config
CC ?= cc
CXX ?= c++

LUA_PC ?= lua$(LUA_VERSION)
# The header directory from the -I of the Lua's pkg-config file
# (/usr/include/lua5.4, /usr/include/luajit-2.1, ...).
LUA_INCDIR ?= $(patsubst -I%,%,$(firstword $(filter -I%,$(shell $(PKG_CONFIG) --cflags $(LUA_PC)))))
# libcrypto: the WebSocket certificate check of IPv6 literals and its
# reasons (ws_transport.c); libwebsockets is built on the same OpenSSL.
# simdjson: the fast path for reading JSON (json_fast.cpp, the core's only C++).
CORE_PKGS = libwebsockets libcurl jansson msgpack libcrypto simdjson

OPT ?= -O2 -g
WARN = -std=c99 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings
CFLAGS_ALL = $(OPT) $(WARN) -fPIC -fvisibility=hidden -D_GNU_SOURCE $(SAN) \
             $(shell $(PKG_CONFIG) --cflags $(CORE_PKGS)) $(CFLAGS)
CXXFLAGS_ALL = $(OPT) -std=c++17 -Wall -Wextra -Wshadow -fPIC -fvisibility=hidden -fno-exceptions \
               -fno-rtti -D_GNU_SOURCE $(SAN) $(shell $(PKG_CONFIG) --cflags $(CORE_PKGS)) $(CXXFLAGS)
LIBS_CORE = $(shell $(PKG_CONFIG) --libs $(CORE_PKGS)) -lstdc++ -lpthread
LDFLAGS_ALL = $(SAN) $(LDFLAGS)

CORE_SRC = $(sort $(wildcard csrc/*.c))
CORE_CXX_SRC = $(sort $(wildcard csrc/*.cpp))
CORE_OBJ = $(CORE_SRC:csrc/%.c=$(BUILD)/core/%.o) $(CORE_CXX_SRC:csrc/%.cpp=$(BUILD)/core/%.o)
BIND_SRC = $(sort $(wildcard binding/*.c))
BIND_OBJ = $(BIND_SRC:binding/%.c=$(BUILD)/binding/%.o)
TEST_SRC = $(sort $(wildcard csrc/test/test_*.c))
TEST_BIN = $(TEST_SRC:csrc/test/%.c=$(BUILD)/test/%)
FUZZ_SRC = $(sort $(wildcard csrc/test/fuzz_*.c))
FUZZ_BIN = $(FUZZ_SRC:csrc/test/%.c=$(BUILD)/fuzz/%)
EXAMPLE_SRC = $(sort $(wildcard examples/*.c))
EXAMPLE_BIN = $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)

.PHONY: FORCE all lib lua tests examples fuzz fuzz-asan test specs check-c asan deps demo bench install install-lua clean format lint bench-churn bench-reconnect bench-values bench-large bench-wire

all: lib lua tests examples

lib: $(BUILD)/libsignalr.a $(BUILD)/libsignalr.so
lua: $(BUILD)/lua/signalr/core.so
tests: $(TEST_BIN)
examples: $(EXAMPLE_BIN)

$(BUILD)/core/%.o: csrc/%.c $(wildcard csrc/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Icsrc -c $< -o $@

$(BUILD)/core/%.o: csrc/%.cpp $(wildcard csrc/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_ALL) -Icsrc -c $< -o $@

$(BUILD)/binding/%.o: binding/%.c $(wildcard csrc/*.h binding/*.h) $(BUILD)/binding/lua-incdir
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Icsrc -I$(LUA_INCDIR) -c $< -o $@

# The Lua headers the binding was compiled with, rewritten only when they change: a build dir
# that serves several Luas (the rock's build-rock: luarocks passes each Lua's LUA_INCDIR)
# recompiles the binding for the Lua at hand, and keeps the core's objects.
$(BUILD)/binding/lua-incdir: FORCE
	@mkdir -p $(dir $@)
	@echo '$(LUA_INCDIR)' | cmp -s - $@ || echo '$(LUA_INCDIR)' >$@

FORCE:

$(BUILD)/libsignalr.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The shared C library exports the public sr_* API only.
$(BUILD)/libsignalr.so: $(CORE_OBJ)
	$(CC) -shared $(LDFLAGS_ALL) -Wl,-soname,libsignalr.so.1 -o $@ $^ $(LIBS_CORE)

# The Lua module links the core statically; only luaopen_* is exported.
$(BUILD)/lua/signalr/core.so: $(BIND_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS_ALL) -Wl,--version-script=binding/exports.map -o $@ $^ $(LIBS_CORE)

$(BUILD)/test/%: csrc/test/%.c $(BUILD)/libsignalr.a csrc/test/harness.h csrc/test/value_equal.h csrc/test/mem_transport.h \
	  csrc/test/http_server.h csrc/test/http_tp_client.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Icsrc -o $@ $< $(BUILD)/libsignalr.a $(LIBS_CORE) $(LDFLAGS_ALL)

# Fuzz targets with their replay/mutation main (no clang needed); scripts/fuzz.sh runs them.
$(BUILD)/fuzz/%: csrc/test/%.c $(BUILD)/libsignalr.a csrc/test/value_equal.h csrc/test/fuzz_main.h \
	  csrc/test/fuzz_props.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DSR_FUZZ_MAIN -Icsrc -o $@ $< $(BUILD)/libsignalr.a $(LIBS_CORE) $(LDFLAGS_ALL)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libsignalr.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Icsrc -o $@ $< $(BUILD)/libsignalr.a $(LIBS_CORE) $(LDFLAGS_ALL)

# Hosts that embed Lua: they link liblua and load the Lua module (core.so) at run time.
LUA_HOST_BIN = $(BUILD)/examples/c_host $(BUILD)/examples/multi_state
$(LUA_HOST_BIN): $(BUILD)/examples/%: examples/%.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(WARN) -D_GNU_SOURCE $(SAN) $(shell $(PKG_CONFIG) --cflags $(LUA_PC)) $(CFLAGS) \
	  -o $@ $< $(shell $(PKG_CONFIG) --libs $(LUA_PC)) -lpthread $(LDFLAGS_ALL)

# Install Debian's build and test dependencies when something is missing.
deps:
	@sh scripts/deps.sh

# Everything CI runs: C unit tests (also under valgrind), the C example,
# the busted specs against the real hub, and the specs again under ASan+UBSan.
# LUA=lua5.3 (or lua5.1, luajit): that Lua's stage alone (its build, the unit
# and core specs on it); `make specs LUA=lua5.3` runs every spec on it.
test: deps
	@sh scripts/test.sh $(if $(filter-out lua5.4,$(LUA)),--lua $(LUA))

# The busted specs alone, on the Lua under test, against the real hub:
# `make specs LUA=lua5.3` builds build-lua5.3 and runs busted with lua5.3
# (LUA=lua5.1, LUA=luajit likewise).
# SPECS picks files or dirs (default spec, everything; spec/unit needs no hub).
# Some specs use libsignalr.so and the C example from the same build dir.
SPECS ?= spec
specs: lib lua examples
	@BUILD=$(BUILD) LUA=$(LUA) sh -c '. scripts/env.sh; exec "$$LUA" "$$BUSTED" -o utfTerminal "$$@"' sh $(SPECS)

check-c: tests
	@for t in $(TEST_BIN); do echo "== $$t"; $$t || exit 1; done

ASAN_MAKE = $(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"

asan:
	$(ASAN_MAKE) lua lib tests examples

fuzz: $(FUZZ_BIN)

# The fuzz targets under ASan+UBSan, sharing build-asan's core objects.
fuzz-asan:
	$(ASAN_MAKE) fuzz

demo: deps all
	@sh scripts/demo.sh

# TRANSPORT=websockets|server_sent_events|long_polling (default websockets);
# PROTOCOL=json|messagepack (default json), or BENCH_ARGS="--protocol messagepack".
bench: deps all
	@BENCH_TRANSPORT=$(TRANSPORT) BENCH_PROTOCOL=$(PROTOCOL) sh scripts/bench.sh $(BENCH_ARGS)

# Everything: the Lua module, and the C library with its header and pkg-config file.
install: lib install-lua
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 csrc/signalr.h $(DESTDIR)$(PREFIX)/include/signalr.h
	install -m 644 $(BUILD)/libsignalr.a $(DESTDIR)$(PREFIX)/lib/libsignalr.a
	install -m 755 $(BUILD)/libsignalr.so $(DESTDIR)$(PREFIX)/lib/libsignalr.so.1
	ln -sf libsignalr.so.1 $(DESTDIR)$(PREFIX)/lib/libsignalr.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|0.1.0|g' signalr.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/signalr.pc
	@PREFIX='$(PREFIX)' LUADIR='$(LUADIR)' LUA_LIBDIR='$(LUA_LIBDIR)' LUA_VERSION='$(LUA_VERSION)' sh scripts/install_hint.sh

# The Lua module alone (what the rockspec installs): signalr/init.lua and
# signalr/core.so, which links the core statically.
install-lua: lua
	install -d $(DESTDIR)$(LUA_LIBDIR)/signalr $(DESTDIR)$(LUADIR)/signalr
	install -m 755 $(BUILD)/lua/signalr/core.so $(DESTDIR)$(LUA_LIBDIR)/signalr/core.so
	install -m 644 lua/signalr/*.lua $(DESTDIR)$(LUADIR)/signalr/

format:
	clang-format -i csrc/*.c csrc/*.cpp csrc/*.h csrc/test/*.c csrc/test/*.h binding/*.c binding/*.h examples/*.c bench/peers/*.c

lint:
	clang-format --dry-run --Werror csrc/*.c csrc/*.cpp csrc/*.h csrc/test/*.c csrc/test/*.h binding/*.c binding/*.h examples/*.c bench/peers/*.c

clean:
	rm -rf build build-asan build-rock build-lua5.* build-luajit

# BENCH_ARGS go to the script: churn [start_stop reconnects new_conns warmup close|cut],
# reconnect [cycles delay pump|block warmup].
bench-churn: deps all
	@sh scripts/bench.sh churn $(BENCH_ARGS)

bench-reconnect: deps all
	@sh scripts/bench.sh reconnect $(BENCH_ARGS)

bench-values: deps all
	@sh scripts/bench.sh values $(BENCH_ARGS)

bench-large: deps all
	@sh scripts/bench.sh large $(BENCH_ARGS)

bench-wire: deps all
	@sh scripts/bench.sh wire $(BENCH_ARGS)
# The JSON reader alone (no hub): ns per record for a few typical records.
.PHONY: bench-parse
bench-parse: $(BUILD)/bench/bench_parse
	@$(BUILD)/bench/bench_parse $(BENCH_ARGS)
$(BUILD)/bench/bench_parse: bench/bench_parse.c $(BUILD)/libsignalr.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Icsrc -o $@ $< $(BUILD)/libsignalr.a $(LIBS_CORE) $(LDFLAGS_ALL)

# The official .NET client, the official TypeScript client on node and ours: the same workloads
# against one hub, interleaved over rounds (bench/peers.lua, docs/PERFORMANCE.md). The driver
# builds bench/peers/dotnet and runs npm ci in bench/peers/node when they are missing or stale.
# Options: ROUNDS=n (3), QUICK=1, IDLE10K=1 (also 10,000 idle connections), OUT=file.tsv.
.PHONY: bench-peers
bench-peers: deps all $(BUILD)/bench/peer_floor
	@BUILD=$(BUILD) sh -c '. scripts/env.sh; ulimit -n "$$(ulimit -Hn)" 2>/dev/null; exec lua5.4 bench/peers.lua "$$@"' sh $(BENCH_ARGS)
# The "floor" of that table: a raw-socket measuring instrument, no library (bench/peers/floor.c).
$(BUILD)/bench/peer_floor: bench/peers/floor.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS_ALL)
