#!/bin/sh
# Everything CI runs. Each stage adds to the totals; the last line is
# "N passed, N failed" and the exit status is non-zero if anything failed.
# The stages run on Lua 5.4, then a stage for each other Lua (lua5.3,
# lua5.1, luajit; each its own build dir) runs the unit specs and the core
# integration specs on it (lua5.1: the recipes too), and a session against
# the hub under valgrind.
#
#   sh scripts/test.sh               everything (make test)
#   sh scripts/test.sh --lua lua5.3  the Lua 5.3 stage alone (make test LUA=lua5.3;
#                                    also lua5.1, luajit)
# Every spec on lua5.3, the hub's too: make specs LUA=lua5.3.
set -u
cd "$(dirname "$0")/.."
only_lua=""
if [ "${1:-}" = "--lua" ]; then only_lua=${2:?"--lua needs an interpreter, e.g. lua5.3"}; fi
# Each stage says which Lua it runs on: an LUA from the caller (make test
# LUA=..., or scripts/env.sh) must not switch the 5.4 stages' builds.
unset LUA
passed=0
failed=0
counts=$(mktemp)
trap 'rm -f "$counts"' EXIT

add() { # add <passed> <failed>
    passed=$((passed + $1))
    failed=$((failed + $2))
}

stage_failed() { # a stage that could not run counts as one failure
    echo "!! $1"
    add 0 1
}

run_specs() { # run_specs <build dir> <label> [env...]; SR_SPECS in env: what to run (spec)
    dir=$1
    label=$2
    shift 2
    echo "== busted specs ($label)"
    : >"$counts"
    env BUILD="$dir" SR_COUNTS_FILE="$counts" "$@" sh -c '. scripts/env.sh; [ -n "${SR_PRELOAD:-}" ] && export LD_PRELOAD="$SR_PRELOAD"; exec "$LUA" "$BUSTED" -o spec/support/ci_output.lua ${SR_SPECS:-spec}'
    rc=$?
    if [ -s "$counts" ]; then
        read -r p f <"$counts"
        add "$p" "$f"
        if [ $rc -ne 0 ] && [ "$f" = 0 ]; then stage_failed "busted ($label) exited with $rc"; fi
    else
        stage_failed "busted ($label) did not finish (exit $rc)"
    fi
}

run_lua_stage() { # run_lua_stage <lua> <specs...>: build into build-<lua>, run the specs with <lua>
    lua=$1
    shift
    echo "== $lua build (build-$lua: the Lua module, libsignalr and the C example)"
    if make -s LUA="$lua" lib lua examples; then
        run_specs "build-$lua" "$lua: unit, regress, core integration" LUA="$lua" SR_SPECS="$*"
        echo "== a $lua session against the hub under valgrind"
        if env BUILD="build-$lua" LUA="$lua" sh -c '. scripts/env.sh; "$LUA" scripts/with_hub.lua valgrind -q \
            --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
            "$LUA" scripts/valgrind_session.lua {hub}/testhub' >/tmp/sr-vg-lua.$$ 2>&1; then
            add 1 0
        else
            tail -n 30 /tmp/sr-vg-lua.$$
            stage_failed "valgrind: $lua scripts/valgrind_session.lua"
        fi
        rm -f /tmp/sr-vg-lua.$$
    else
        stage_failed "$lua build failed"
    fi
}

# What the other Luas' stage runs: the unit specs, the regressions and the
# core integration specs, the event loop's (blocking waits, poll(0), foreign
# loops) among them.
# numbers51_spec checks the number mapping of 5.1 and LuaJIT (it has no
# tests on 5.3+).
LUA_STAGE_SPECS="spec/unit spec/regress spec/integration/connection_spec.lua spec/integration/streams_spec.lua
spec/integration/transports_spec.lua spec/integration/values_spec.lua spec/integration/numbers51_spec.lua
spec/integration/eventloop_spec.lua"
# Lua 5.1 runs the recipes too: the copas one needs Debian's lua-copas, which
# is for 5.1 (the spec defines that test only on 5.1 and LuaJIT).
stage_specs() { # stage_specs <lua>: the specs of that Lua's stage
    if [ "$1" = lua5.1 ]; then
        echo "$LUA_STAGE_SPECS spec/integration/recipes_spec.lua"
    else
        echo "$LUA_STAGE_SPECS"
    fi
}

if [ -n "$only_lua" ]; then
    # shellcheck disable=SC2046
    run_lua_stage "$only_lua" $(stage_specs "$only_lua")
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

echo "== build"
if ! make -s all; then
    stage_failed "build failed"
    echo "$passed passed, $failed failed"
    exit 1
fi

echo "== format (clang-format, .clang-format)"
if make -s lint >/dev/null 2>&1; then add 1 0; else make -s lint 2>&1 | head -20; stage_failed "clang-format: run make format"; fi

run_c_tests() { # run_c_tests <label> [command prefix...]
    label=$1
    shift
    echo "== C unit tests ($label)"
    for t in build/test/test_*; do
        [ -x "$t" ] || continue
        out=$("$@" "$t" 2>&1)
        rc=$?
        echo "$out" | grep -v '^ok ' | tail -n 30
        line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
        if [ -n "$line" ]; then
            add "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
        fi
        if [ $rc -ne 0 ] && { [ -z "$line" ] || [ "$(echo "$line" | cut -d' ' -f3)" = 0 ]; }; then
            stage_failed "$t ($label) exited with $rc (a crash, memory errors or leaks)"
        fi
    done
}

run_c_tests "native, full size" env
run_c_tests "valgrind, smaller sizes" env SR_TEST_QUICK=1 valgrind -q --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99

echo "== fuzz targets (ASan+UBSan, bounded mutations)"
if sh scripts/fuzz.sh; then add 1 0; else stage_failed "fuzzing: sh scripts/fuzz.sh"; fi

echo "== end to end under valgrind (Lua session and C example against the hub)"
vg="valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99"
for cmd in "lua5.4 scripts/valgrind_session.lua {hub}/testhub" "build/examples/c_client {hub}/clientresulthub"; do
    # shellcheck disable=SC2086
    if sh -c ". scripts/env.sh; lua5.4 scripts/with_hub.lua $vg $cmd" >/tmp/sr-vg.$$ 2>&1; then
        add 1 0
    else
        tail -n 30 /tmp/sr-vg.$$
        stage_failed "valgrind: $cmd"
    fi
    rm -f /tmp/sr-vg.$$
done

run_specs build "release build"

for other_lua in lua5.3 lua5.1 luajit; do
    # shellcheck disable=SC2046
    run_lua_stage "$other_lua" $(stage_specs "$other_lua")
done

echo "== installs: the rock for 5.4, 5.3, 5.1 and LuaJIT; make install and the C example from it (scripts/rock_check.sh)"
if sh scripts/rock_check.sh >/tmp/sr-rock.$$ 2>&1; then add 1 0; else tail -n 30 /tmp/sr-rock.$$; stage_failed "luarocks make / require, make install / c_client"; fi
rm -f /tmp/sr-rock.$$

echo "== ASan+UBSan build"
if make -s asan; then
    asan_rt=$(gcc -print-file-name=libasan.so)
    ubsan_rt=$(gcc -print-file-name=libubsan.so)
    run_specs build-asan "ASan+UBSan" SR_PRELOAD="$asan_rt $ubsan_rt" \
        ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
    stage_failed "ASan build failed"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
