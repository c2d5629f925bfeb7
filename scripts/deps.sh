#!/bin/sh
# Install Debian's build and test dependencies that are missing. Nothing is
# fetched from anywhere but Debian's archive; the .NET SDK must already be
# on the machine (it runs the test hub only).
set -e
pkgs="build-essential pkg-config lua5.4 liblua5.4-dev lua5.3 liblua5.3-dev lua5.1 liblua5.1-0-dev luajit libluajit-5.1-dev libwebsockets-dev libcurl4-openssl-dev
libmsgpack-dev libjansson-dev libsimdjson-dev libssl-dev lua-busted lua-cjson luarocks valgrind openssl curl clang-format
lua-luv lua-cqueues lua-socket lua-copas"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq $missing >/dev/null
fi
if ! command -v dotnet >/dev/null 2>&1; then
    echo "error: the .NET SDK (dotnet) is needed to run the test hub in spec/hub" >&2
    exit 1
fi
