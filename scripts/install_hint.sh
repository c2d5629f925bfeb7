#!/bin/sh
# Printed by `make install`: how a Lua interpreter and a C build reach what was
# just installed under PREFIX. Only says what to do when the defaults do not
# already find it (the interpreter's built-in package.path/cpath; the
# dynamic linker's and pkg-config's search paths).
# Environment (from the Makefile): PREFIX LUADIR LUA_LIBDIR LUA_VERSION.
set -u
lua="lua$LUA_VERSION"
suffix=$(echo "$LUA_VERSION" | tr . _)

# -E: the interpreter's built-in paths, not LUA_PATH/LUA_CPATH of this shell.
in_default() { # in_default <path|cpath> <template>
    command -v "$lua" >/dev/null 2>&1 || return 1
    "$lua" -E -e "os.exit(package.$1:find('$2', 1, true) and 0 or 1)" 2>/dev/null
}

echo
echo "Installed the Lua module signalr under $LUADIR and $LUA_LIBDIR."
if in_default path "$LUADIR/?/init.lua" && in_default cpath "$LUA_LIBDIR/?.so"; then
    echo "  $lua finds it as is: $lua -e 'require \"signalr\"'"
else
    echo "  $lua does not look there by default; before running it:"
    echo "    export LUA_PATH_$suffix=\"$LUADIR/?.lua;$LUADIR/?/init.lua;;\""
    echo "    export LUA_CPATH_$suffix=\"$LUA_LIBDIR/?.so;;\""
    echo "  (LUA_PATH/LUA_CPATH work too; ';;' keeps the default paths)"
fi

libdir="$PREFIX/lib"
echo "Installed the C library: $libdir/libsignalr.{a,so}, $PREFIX/include/signalr.h, $libdir/pkgconfig/signalr.pc."
if pkg-config --variable=pc_path pkg-config 2>/dev/null | tr ':' '\n' | grep -qx "$libdir/pkgconfig"; then
    echo "  cc app.c \$(pkg-config --cflags --libs signalr)"
else
    echo "  PKG_CONFIG_PATH=$libdir/pkgconfig cc app.c \$(pkg-config --cflags --libs signalr)"
fi
case "$libdir" in
/usr/lib | /lib) ;;
*)
    if ldconfig -p 2>/dev/null | grep -q " => $libdir/libsignalr.so"; then
        :
    elif grep -rqsx "$libdir" /etc/ld.so.conf /etc/ld.so.conf.d; then
        echo "  $libdir is a linker path: run ldconfig (as root) once so programs find libsignalr.so.1"
    else
        echo "  $libdir is not a linker path: link with -Wl,-rpath,$libdir, or set LD_LIBRARY_PATH=$libdir,"
        echo "  or link libsignalr.a statically (pkg-config --static --libs signalr)"
    fi
    ;;
esac
