/* When to use: a host runs several Lua states at once, each on a thread of its own (a server with a
 * state per worker, a game with a state per subsystem), and each state has its own connections.
 *
 * How: every lua_State that requires signalr gets its own loop and I/O threads; its connections,
 * handlers and waits belong to it alone, and lua_close stops and joins its threads. Here NTHREADS
 * threads each open a state, connect to the hub, invoke Add, ask the server to call them back,
 * wait until all the states are connected at once, stop and close their state. The main thread
 * joins them, checks that each got its own answers, and that no other thread is left running.
 *
 *   multi_state LUA_DIR CPATH_DIR HUB_URL
 *   build/examples/multi_state lua build/lua http://127.0.0.1:5000/testhub
 *
 * Exits 0 when every state succeeded, 1 otherwise.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef LUA_OK /* Lua 5.1 names no status 0 (LuaJIT and 5.2+ do) */
#define LUA_OK 0
#endif

#define NTHREADS 4

/* Runs on each thread with (url, n, rendezvous); returns what it saw, or raises. */
static const char script[] =
    "local url, n, rendezvous = ...\n"
    "local signalr = require('signalr')\n"
    "local conn = signalr.builder():with_url(url):build()\n"
    "local heard\n"
    "conn:on('notify', function(text) heard = text end)\n"
    "conn:start()\n" /* blocks this thread only, dispatching this state's events */
    "local sum = conn:invoke('Add', n, 1000)\n"
    "conn:invoke('CallMeBack', 'notify', 'hello state ' .. n)\n"
    "rendezvous()\n" /* every state is connected at this point */
    "assert(conn:invoke('Echo', 'still here ' .. n) == 'still here ' .. n)\n"
    "conn:stop()\n"
    "return ('Add(%d, 1000) = %d, notify(%s), %s'):format(n, sum, heard, conn.state)\n";

typedef struct job {
    int n;
    const char **argv;
    int met; /* passed the rendezvous */
    int ok;
    char out[256];
} job;

static pthread_barrier_t all_connected;

static int rendezvous(lua_State *L)
{
    job *j = lua_touserdata(L, lua_upvalueindex(1));
    j->met = 1;
    pthread_barrier_wait(&all_connected);
    return 0;
}

static void *run(void *arg)
{
    job *j = arg;
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(j->out, sizeof j->out, "luaL_newstate failed");
    } else {
        luaL_openlibs(L);
        lua_getglobal(L, "package");
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", j->argv[1], j->argv[1]);
        lua_setfield(L, -2, "path");
        lua_pushfstring(L, "%s/?.so", j->argv[2]);
        lua_setfield(L, -2, "cpath");
        lua_pop(L, 1);
        if (luaL_loadbuffer(L, script, sizeof script - 1, "=script") == LUA_OK) {
            lua_pushstring(L, j->argv[3]);
            lua_pushinteger(L, j->n);
            lua_pushlightuserdata(L, j);
            lua_pushcclosure(L, rendezvous, 1);
            if (lua_pcall(L, 3, 1, 0) == LUA_OK) j->ok = 1;
        }
        snprintf(j->out, sizeof j->out, "%s", lua_tostring(L, -1));
    }
    /* A state that failed before the rendezvous still lets the others through. */
    if (!j->met) pthread_barrier_wait(&all_connected);
    if (L) lua_close(L); /* stops and joins this state's SignalR threads */
    return NULL;
}

/* Threads of this process, from /proc/self/task. */
static int count_threads(void)
{
    int n = 0;
    struct dirent *e;
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    pthread_t th[NTHREADS];
    job jobs[NTHREADS];
    int i, failed = 0, left;

    if (argc != 4) {
        fprintf(stderr, "usage: %s LUA_DIR CPATH_DIR HUB_URL\n", argv[0]);
        return 2;
    }
    pthread_barrier_init(&all_connected, NULL, NTHREADS);
    for (i = 0; i < NTHREADS; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].n = i + 1;
        jobs[i].argv = (const char **)argv;
        if (pthread_create(&th[i], NULL, run, &jobs[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    for (i = 0; i < NTHREADS; i++) {
        char want[64];
        pthread_join(th[i], NULL);
        snprintf(want, sizeof want, "notify(hello state %d)", jobs[i].n);
        if (!jobs[i].ok || !strstr(jobs[i].out, want)) failed = 1;
        printf("state %d: %s: %s\n", jobs[i].n, jobs[i].ok ? "ok" : "failed", jobs[i].out);
    }
    pthread_barrier_destroy(&all_connected);
    left = count_threads();
    printf("threads left after lua_close: %d\n", left - 1);
    if (left != 1) failed = 1;
    return failed;
}
