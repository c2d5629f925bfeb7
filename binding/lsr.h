/*
 * lsr.h - private to the Lua binding ("signalr.core"): its types and what
 * its files share. Nothing here is exported (exports.map keeps only
 * luaopen_signalr_core).
 *
 * The files, one job each:
 *   lsignalr.c  the module: metatables and luaopen_signalr_core
 *   lloop.c     the loop sentinel of a lua_State: poll, fd, timers
 *   lcallback.c the one way the core calls back into Lua (lsr_callback)
 *   levents.c   the core's callbacks of a connection, each a push function
 *   lconn.c     the Connection userdata and its methods
 *   loptions.c  core.connection(opts): reading and checking the options
 *   lvalue.c    Lua values <-> sr_value, and the value metatables
 *   lerror.c    error objects
 *
 * Objects:
 *  - one sr_loop per lua_State, owned by a sentinel userdata ("signalr.Loop")
 *    kept in the registry; its __gc frees every connection first, then the
 *    loop. User value 1: the timer table (id -> function); 2: the callback
 *    thread (lcallback.c).
 *  - "signalr.Connection" userdata: user value 1 = callback table
 *    (LSR_FN_* -> invocation, result, close, state, reconnecting,
 *    reconnected, log, access_token, retry), 2 = pending table (key -> done function of
 *    start/stop/invoke/stream/wait_writable), 3 = item table (key -> item
 *    function of a stream). No registry ref is keyed by the object, so
 *    handlers that capture it do not pin it. A weak table (registry,
 *    lsr_weak_key) maps the C pointer back to the userdata for callbacks.
 *    While a connection may still call back (state not disconnected, or a
 *    call outstanding) it holds ONE registry ref to itself, dropped once it
 *    is idle again (when the outermost poll returns, and after calls that
 *    can finish synchronously).
 */
#ifndef LSR_H
#define LSR_H

#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h" /* the Lua 5.4 API on 5.3, 5.1 and LuaJIT */
#include "signalr.h"
#include "value.h"

#define CONN_MT "signalr.Connection"
#define LOOP_MT "signalr.Loop"
#define ERROR_MT "signalr.Error"
#define ARRAY_MT "signalr.array"
#define MAP_MT "signalr.map"
#define BINARY_MT "signalr.binary"
#define CHANNEL_MT "signalr.Channel"

/* Deepest table nesting converted in either direction. Encoding also keeps
 * the path of open tables to report cycles, so this bounds that array. */
#define LSR_MAX_DEPTH 1000

/* User values of a Connection. */
enum { UV_CALLBACKS = 1, UV_PENDING = 2, UV_ITEMS = 3 };
/* Keys of its callback table: integers, so a callback's look-up is a
 * lua_rawgeti, not the interning of a name (once per server call). */
enum {
    LSR_FN_INVOCATION = 1,
    LSR_FN_RESULT,
    LSR_FN_CLOSE,
    LSR_FN_STATE,
    LSR_FN_RECONNECTING,
    LSR_FN_RECONNECTED,
    LSR_FN_LOG,
    LSR_FN_ACCESS_TOKEN,
    LSR_FN_RETRY,
    LSR_FN_MAX = LSR_FN_RETRY
};
/* User values of the loop sentinel. */
enum { LOOP_UV_TIMERS = 1, LOOP_UV_THREAD = 2 };

extern const char lsr_loop_key; /* registry: the loop sentinel */
extern const char lsr_weak_key; /* registry: lightuserdata(lsr_conn*) -> userdata, weak values */
extern const char *const lsr_level_names[];

typedef struct lsr_loop lsr_loop;
typedef struct lsr_conn lsr_conn;

/* An outstanding call with a done function: the ud of its sr_done_fn.
 * Linked in its connection so a closed connection can free those the core
 * will never call. */
typedef struct lsr_pending {
    struct lsr_pending *prev, *next;
    lsr_conn *c;
    lua_Integer key; /* in the connection's pending (and item) table */
} lsr_pending;

typedef struct lsr_timer {
    struct lsr_timer *prev, *next;
    lsr_loop *lp;
    uint64_t id;
} lsr_timer;

/* Scratch of the Lua -> value converter. It never calls Lua, so one per
 * loop is enough (no nesting). */
typedef struct lsr_enc {
    lua_State *L;
    int mt;   /* absolute index of array_mt; map_mt, binary_mt, channel_mt follow */
    int json; /* refuse what JSON cannot carry */
    int depth;
    const void *path[LSR_MAX_DEPTH]; /* tables being converted, for cycles */
    char msg[256];
} lsr_enc;

struct lsr_loop {
    lsr_enc enc;     /* scratch for lsr_check_args */
    sr_loop *loop;   /* NULL after teardown */
    lua_State *T;    /* the callback thread: every callback runs on it */
    int calls;       /* sr_* calls and polls in progress: callbacks only then */
    int depth;       /* nested polls */
    int running;     /* callbacks in progress on T (nested through polls) */
    lsr_conn *conns; /* open connections */
    lsr_timer *timers;
};

struct lsr_conn {
    sr_conn *conn; /* NULL once closed */
    lsr_loop *lp;  /* NULL once released (or never opened) */
    lsr_conn *prev, *next;
    lsr_pending *pending;
    size_t npending;
    lua_Integer next_key;
    int self_ref;
    int finalizing; /* never call Lua for this connection again */
    int json;       /* the protocol is JSON: refuse NaN and infinities */
    sr_log_level log_level;
    /* During the callback of a server's plain call: the callback depth
     * (lp->running) where take_call may take the next; 0 outside one. */
    int pull_run;
};

/* Around an sr_* call that may call back synchronously: callbacks run only
 * between these (and inside polls). Nothing in between may raise. */
#define LSR_ENTER(lp) ((lp)->calls++)
#define LSR_LEAVE(lp) ((lp)->calls--)

/* ------------------------------------------------------------- lerror.c */
void lsr_push_error_obj(lua_State *L, const char *kind, const char *message, long status);
void lsr_push_sr_error(lua_State *L, const sr_error *err);
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int lsr_raise_error(lua_State *L, const char *kind, const char *fmt, ...);
int lsr_raise_code(lua_State *L, int rc, const char *what);
int lsr_error_tostring(lua_State *L);
int lsr_new_error(lua_State *L);

/* ------------------------------------------------------------- lvalue.c */
/* Client-to-server streams (signalr.channel) among a call's arguments. */
#define LSR_MAX_CHANNELS 64
typedef struct lsr_channels {
    int n;
    int idx[LSR_MAX_CHANNELS]; /* stack slots, in argument order */
    uint64_t ids[LSR_MAX_CHANNELS];
} lsr_channels;

sr_value *lsr_check_args(lua_State *L, lsr_loop *lp, int first, int last, int json,
                         lsr_channels *ch);
sr_value *lsr_check_value(lua_State *L, lsr_loop *lp, int idx, int json);
void lsr_push_top_value(lua_State *L, const sr_value *v); /* null and absent are nil */
int lsr_push_converted(lua_State *L, const sr_value *v, int top, const char *what);
void lsr_value_metatables(lua_State *L);
int lsr_binary_new(lua_State *L);

/* ---------------------------------------------------------- lcallback.c */
/* Where a callback's function is found when it runs. */
typedef enum {
    LSR_CB_NAMED,   /* the connection's callback table, under fn */
    LSR_CB_DONE,    /* its pending table under key; taken out (runs once) */
    LSR_CB_ITEM,    /* its item table under key */
    LSR_CB_TIMER,   /* the loop's timer table under key; taken out */
    LSR_CB_ORPHANED /* given: the done function of a closed connection */
} lsr_cb_slot;

typedef struct lsr_cb lsr_cb;
/* One call into Lua: which function, and how its arguments are pushed and
 * its results read. push and take run on the callback thread and may
 * raise; the error is then reported as if the function had raised it. */
struct lsr_cb {
    lsr_conn *c; /* NULL for a loop's own callback (a timer) */
    lsr_cb_slot slot;
    int fn;                                /* LSR_CB_NAMED: an LSR_FN_* key */
    lua_Integer key;                       /* LSR_CB_DONE, LSR_CB_ITEM, LSR_CB_TIMER */
    int (*push)(lua_State *T, lsr_cb *cb); /* pushes the arguments; returns how many */
    int nresults;
    void (*take)(lua_State *T, lsr_cb *cb); /* reads the nresults results on top */
    const char *fail_prefix; /* the function's own error is reported with this prefix */
    int in_log;              /* the log callback: its errors are not logged again */
    void *data;              /* the arguments of this callback, for push and take */
};

void lsr_callback(lsr_loop *lp, lsr_cb *cb);
void lsr_callback_orphan(lsr_loop *lp, lua_State *L, int fn);
void lsr_log(lsr_conn *c, sr_log_level level, const char *message);
void lsr_callback_thread_new(lua_State *L, lsr_loop *lp, int loop_idx);

/* ------------------------------------------------------------ levents.c */
void lsr_on_done(void *ud, const sr_error *err, const sr_value *result);
/* A call's answer as Lua values: err, or nil and the result (err of kind
 * protocol when the result cannot be converted). Returns how many. */
int lsr_push_answer(lua_State *L, const sr_error *err, const sr_value *result);
void lsr_on_item(void *ud, const sr_value *item);
void lsr_conn_subscribe(lsr_conn *c);
int lsr_conn_take_call(lua_State *L); /* c:take_call(), see levents.c */
/* Argument 1 as a connection, for the connection's methods (lconn.c). */
lsr_conn *lsr_check_conn(lua_State *L);
void lsr_log_sink(void *ud, sr_log_level level, const char *message);
double lsr_retry_policy(void *ud, const sr_retry_context *ctx);
double lsr_never_retry(void *ud, const sr_retry_context *ctx);
char *lsr_access_token(void *ud);

/* --------------------------------------------------------------- lloop.c */
lsr_loop *lsr_live_loop(lua_State *L);
void lsr_sync_refs(lua_State *L, lsr_loop *lp);
int lsr_pump(lua_State *L, lsr_loop *lp, int ms);
void lsr_ref_drop(lua_State *L, lsr_conn *c);
void lsr_push_loop(lua_State *L);
void lsr_loop_register(lua_State *L);
extern const luaL_Reg lsr_loop_funcs[];

/* --------------------------------------------------------------- lconn.c */
void lsr_pending_free(lsr_conn *c, lsr_pending *p);
void lsr_conn_link(lua_State *L, lsr_loop *lp, lsr_conn *c, int ud);
void lsr_conn_release(lua_State *L, lsr_conn *c, int from_gc);
void lsr_conn_register(lua_State *L);

/* ------------------------------------------------------------ loptions.c */
int lsr_connection(lua_State *L);

#endif
