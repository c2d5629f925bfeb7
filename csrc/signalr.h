/*
 * signalr.h - public C API of the SignalR client core.
 *
 * The core owns: the value model (sr_value), the event loop (sr_loop: the
 * I/O threads and the event queue), and connections (sr_conn). It never
 * includes Lua; the Lua module is a thin binding over this header.
 *
 * Threading rule: every sr_* function here must be called from one thread,
 * the thread that owns the loop ("the host thread"). Network I/O runs on the
 * loop's own threads. Callbacks run only on the host thread: inside
 * sr_loop_dispatch(), or synchronously inside the sr_conn_* call whose
 * effect they report (the state changes made by sr_conn_start/sr_conn_stop, a
 * stop of a connection that is still connecting, sr_conn_cancel). Never on an
 * I/O thread. A callback may call any sr_* function (invoke, stop, free)
 * except sr_loop_free. A call that returns an error code does not run its
 * done callback.
 *
 * Memory: arguments are copied or encoded before a call returns. Data passed
 * to a callback is borrowed until the callback returns.
 *
 * Errors: functions return SR_OK (0) or a negative SR_E* code; where a
 * message helps, it is written to an sr_error the caller supplies.
 */
#ifndef SIGNALR_H
#define SIGNALR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SR_VERSION "0.1.0"

/* The core builds with -fvisibility=hidden; only the public API is exported. */
#if defined(__GNUC__)
#define SR_API __attribute__((visibility("default")))
#else
#define SR_API
#endif

/* ---------------------------------------------------------------- errors */

enum sr_code {
    SR_OK = 0,
    SR_EHUB = -1,    /* the hub method failed; message is the server's */
    SR_ECLOSED = -2, /* connection not connected, or closed first */
    SR_ETIMEOUT = -3,
    SR_ECANCELED = -4,
    SR_ENEGOTIATE = -5, /* negotiate failed; status holds the HTTP status */
    SR_EHANDSHAKE = -6,
    SR_ETRANSPORT = -7,
    SR_EPROTOCOL = -8, /* malformed data from the server */
    SR_EUSAGE = -9,    /* bad arguments or wrong state for this call */
    SR_ENOMEM = -10,
    SR_EFULL = -11 /* a bounded buffer is full */
};

/* The error kind name used by the Lua API ("hub", "closed", ...). */
SR_API const char *sr_strerror(int code);

typedef struct sr_error {
    int code;    /* SR_E* */
    long status; /* HTTP status for SR_ENEGOTIATE, else 0 */
    char message[512];
} sr_error;

/* ---------------------------------------------------------------- values */

/* A JSON/MessagePack value. Arrays and maps own their children. Strings are
 * byte strings with explicit length (may hold NUL). Map keys are strings and
 * keep their insertion order. */
typedef struct sr_value sr_value;

typedef enum sr_type {
    SR_NULL,
    SR_BOOL,
    SR_INT,    /* int64_t */
    SR_FLOAT,  /* double */
    SR_STRING, /* UTF-8 text */
    SR_BINARY, /* raw bytes (MessagePack bin; base64 text in JSON) */
    SR_ARRAY,
    SR_MAP
} sr_type;

SR_API sr_value *sr_value_null(void);
SR_API sr_value *sr_value_bool(int b);
SR_API sr_value *sr_value_int(int64_t i);
SR_API sr_value *sr_value_float(double d);
SR_API sr_value *sr_value_string(const char *s, size_t len); /* copies */
SR_API sr_value *sr_value_binary(const void *p, size_t len); /* copies */
SR_API sr_value *sr_value_array(void);
SR_API sr_value *sr_value_map(void);
/* Take ownership of item (freed on failure too). */
SR_API int sr_value_array_push(sr_value *arr, sr_value *item);
/* Copies key, takes ownership of item (freed on failure too). */
SR_API int sr_value_map_set(sr_value *map, const char *key, size_t keylen, sr_value *item);
SR_API sr_value *sr_value_copy(const sr_value *v);
SR_API void sr_value_free(sr_value *v);

SR_API sr_type sr_value_type(const sr_value *v);
SR_API int sr_value_get_bool(const sr_value *v);
SR_API int64_t sr_value_get_int(const sr_value *v);
SR_API double sr_value_get_float(const sr_value *v);
/* String or binary bytes; *len receives the length. */
SR_API const char *sr_value_get_string(const sr_value *v, size_t *len);
/* Number of items of an array or entries of a map. */
SR_API size_t sr_value_len(const sr_value *v);
SR_API const sr_value *sr_value_at(const sr_value *arr_or_map, size_t i);
SR_API const char *sr_value_key_at(const sr_value *map, size_t i, size_t *keylen);
/* Map lookup by key (linear; maps are small); NULL when absent. */
SR_API const sr_value *sr_value_get(const sr_value *map, const char *key);

/* ----------------------------------------------------------------- logging */

typedef enum sr_log_level {
    SR_LOG_TRACE,
    SR_LOG_DEBUG,
    SR_LOG_INFORMATION,
    SR_LOG_WARNING,
    SR_LOG_ERROR,
    SR_LOG_CRITICAL,
    SR_LOG_NONE
} sr_log_level;

/* Log sink; runs on the host thread, inside dispatch or an sr_* call. */
typedef void (*sr_log_fn)(void *ud, sr_log_level level, const char *message);

/* ------------------------------------------------------------------ loop */

typedef struct sr_loop sr_loop;

/* Create a loop and start its I/O threads. */
SR_API sr_loop *sr_loop_new(sr_error *err);
/* Stops the I/O threads; all connections of the loop must be freed first. */
SR_API void sr_loop_free(sr_loop *loop);
/* A descriptor that is readable whenever sr_loop_dispatch has work (events
 * or a due timer). Owned by the loop. */
SR_API int sr_loop_fd(const sr_loop *loop);
/* Run the callbacks of what is ready, waiting at most timeout_ms for the
 * first event (0: never block, -1: no limit). Returns the number of events
 * dispatched. */
SR_API int sr_loop_dispatch(sr_loop *loop, int timeout_ms);
/* From a callback: the sr_loop_dispatch running it returns once that
 * callback is done, leaving what else is ready for the next call (the
 * descriptor stays readable): for a host that waits for one thing amid a
 * flood. Called outside a dispatch, the next one returns at once. */
SR_API void sr_loop_break(sr_loop *loop);
/* Milliseconds until the next timer is due, -1 if none. */
SR_API int sr_loop_next_timeout(const sr_loop *loop);

/* One-shot timer on the host thread: fn(ud) runs inside dispatch after
 * delay_ms. Returns an id for sr_loop_cancel_timer, or 0 on failure. */
typedef void (*sr_timer_fn)(void *ud);
SR_API uint64_t sr_loop_add_timer(sr_loop *loop, double delay_ms, sr_timer_fn fn, void *ud);
SR_API void sr_loop_cancel_timer(sr_loop *loop, uint64_t id);

/* ------------------------------------------------------------ connection */

typedef struct sr_conn sr_conn;

typedef enum sr_state {
    SR_STATE_DISCONNECTED,
    SR_STATE_CONNECTING,
    SR_STATE_CONNECTED,
    SR_STATE_RECONNECTING,
    SR_STATE_DISCONNECTING
} sr_state;

SR_API const char *sr_state_name(sr_state s); /* "disconnected", ... */

enum sr_transport_kind {
    SR_TRANSPORT_WEBSOCKETS = 1,
    SR_TRANSPORT_SSE = 2,
    SR_TRANSPORT_LONG_POLLING = 4
};

typedef struct sr_header {
    const char *name;
    const char *value;
} sr_header;

/* ------------------------------------------------------------- options */

/* Connection options, opaque so that new options never change the ABI (the
 * librdkafka conf model). Setters copy their arguments and return SR_OK,
 * SR_EUSAGE for an invalid value (negative timeout, unknown transport bit)
 * or SR_ENOMEM. sr_conn_new copies the whole set, so one sr_options may
 * build several connections and may be freed right after. */
typedef struct sr_options sr_options;

SR_API sr_options *sr_options_new(void);
SR_API void sr_options_free(sr_options *o);

SR_API int sr_options_set_url(sr_options *o, const char *url); /* http(s)://host[:port]/path[?q] */
SR_API int sr_options_set_transports(sr_options *o, int mask); /* SR_TRANSPORT_*; 0 = all */
SR_API int sr_options_set_skip_negotiation(sr_options *o, int on);
SR_API int sr_options_set_protocol(sr_options *o, const char *name); /* "json" (default) */
/* Adds an extra HTTP header (repeat for more). Every request of the
 * connection carries it; a "Cookie" header is sent joined with the
 * connection's cookie jar (what the server set, kept for the connection's
 * life) in one header. */
SR_API int sr_options_add_header(sr_options *o, const char *name, const char *value);
SR_API int sr_options_set_access_token(sr_options *o, const char *token); /* static bearer token */
/* Called on the host thread before every negotiate/connect; returns a
 * malloc'd token (freed by the core) or NULL. Overrides the static token. */
typedef char *(*sr_token_fn)(void *ud);
SR_API int sr_options_set_access_token_fn(sr_options *o, sr_token_fn fn, void *ud);
/* verify 0 turns certificate and host name verification off (the
 * connection logs a warning at every start); NULL files are left out. The
 * same settings reach every transport. */
SR_API int sr_options_set_tls(sr_options *o, int verify, const char *ca_file, const char *cert_file,
                              const char *key_file);
/* "http://[user:password@]host:port" for every request and the WebSocket
 * (a CONNECT tunnel); "" for none, whatever the environment says; unset:
 * http_proxy, https_proxy, all_proxy and no_proxy as libcurl reads them. */
SR_API int sr_options_set_proxy(sr_options *o, const char *proxy);
/* The X-SignalR-User-Agent header every request carries (as the official
 * clients': "name/version (version; OS; runtime; runtime version)"). NULL:
 * the core's own, "signalr-lua/<version> (<version>; <OS>; C; -)". A header
 * of that name set with the headers option wins over both. */
SR_API int sr_options_set_user_agent(sr_options *o, const char *user_agent);
/* Format a user agent in that shape for a runtime ("Lua", "5.4") into buf;
 * returns buf. */
SR_API const char *sr_user_agent(const char *runtime, const char *runtime_version, char *buf,
                                 size_t size);
/* Milliseconds; must be > 0. Defaults 30000, 15000, 15000. */
SR_API int sr_options_set_server_timeout(sr_options *o, double ms);
SR_API int sr_options_set_keepalive_interval(sr_options *o, double ms);
SR_API int sr_options_set_handshake_timeout(sr_options *o, double ms);
/* Largest message accepted from the server; default 16 MiB. */
SR_API int sr_options_set_max_message_size(sr_options *o, size_t bytes);
/* Log sink and level (default: no sink; level SR_LOG_INFORMATION). */
SR_API int sr_options_set_log(sr_options *o, sr_log_level level, sr_log_fn fn, void *ud);

/* Automatic reconnect. The retry policy runs on the host thread when a
 * connection is lost and after every failed attempt. */
typedef struct sr_retry_context {
    uint64_t previous_retry_count; /* 0 before the first attempt */
    double elapsed_ms;             /* time spent reconnecting so far */
    const sr_error *retry_reason;  /* the loss, then the last failed attempt */
} sr_retry_context;
/* Returns the delay in milliseconds before the next attempt, or a negative
 * number to stop reconnecting (the connection then closes). */
typedef double (*sr_retry_fn)(void *ud, const sr_retry_context *ctx);
/* Fixed delays in milliseconds, one per attempt; delays NULL (n 0) means
 * the official default 0, 2000, 10000, 30000. */
SR_API int sr_options_set_reconnect_delays(sr_options *o, const double *delays_ms, size_t n);
SR_API int sr_options_set_reconnect_policy(sr_options *o, sr_retry_fn fn, void *ud);

/* Stateful reconnect (ASP.NET Core 8+): after a transport loss, reattach to
 * the same server connection and replay what the server did not acknowledge.
 * buffer_size: bytes of unacknowledged messages kept (0 = 100000); when it
 * is full, sends return SR_EFULL (see sr_conn_wait_writable). */
SR_API int sr_options_set_stateful_reconnect(sr_options *o, int on, size_t buffer_size);

/* ---------------------------------------------------------- connection */

SR_API sr_conn *sr_conn_new(sr_loop *loop, const sr_options *opts, sr_error *err);
/* Frees at once if idle; a connection that is not disconnected is stopped
 * first (pending calls fail with SR_ECLOSED, callbacks are not called). Safe
 * to call from inside a callback of this connection: freeing is deferred
 * until the callback returns. */
SR_API void sr_conn_free(sr_conn *c);

SR_API sr_state sr_conn_state(const sr_conn *c);
/* NULL until negotiated, and with skip_negotiation. */
SR_API const char *sr_conn_connection_id(const sr_conn *c);
SR_API sr_loop *sr_conn_loop(const sr_conn *c);

/* Result of start/stop/invoke. err is NULL on success; result is the
 * invocation's result (NULL for void), borrowed. */
typedef void (*sr_done_fn)(void *ud, const sr_error *err, const sr_value *result);

/* Connect (negotiate, transport, handshake). done runs once. */
SR_API int sr_conn_start(sr_conn *c, sr_done_fn done, void *ud);
/* Close gracefully; done runs once the connection is disconnected. */
SR_API int sr_conn_stop(sr_conn *c, sr_done_fn done, void *ud);

/* Call a hub method. args is an SR_ARRAY (borrowed; NULL = no arguments).
 * done runs exactly once: with the result, the server's error, or
 * SR_ECLOSED when the connection ends first. *id_out (if given) receives an
 * id for sr_conn_cancel. Returns SR_ECLOSED at once when not connected (then
 * done is not called). */
SR_API int sr_conn_invoke(sr_conn *c, const char *target, const sr_value *args, sr_done_fn done,
                          void *ud, uint64_t *id_out);
/* Fire and forget: returns once the message is queued for the transport. */
SR_API int sr_conn_send(sr_conn *c, const char *target, const sr_value *args);
/* Give up on an invocation: its done runs with SR_ECANCELED (inside this
 * call) and the server is told with a CancelInvocation. */
SR_API int sr_conn_cancel(sr_conn *c, uint64_t id);

/* ------------------------------------------------------------- streams */

/* One item of a server-to-client stream, borrowed until the callback returns. */
typedef void (*sr_item_fn)(void *ud, const sr_value *item);

/* Start a server-to-client stream (a hub method returning IAsyncEnumerable
 * or ChannelReader). on_item runs for each item, in order; done runs once
 * at the end: err NULL when the server completed the stream, SR_EHUB with
 * the server's text, SR_ECANCELED after sr_conn_cancel (which tells the
 * server at once; items still in flight are dropped), SR_ECLOSED when the
 * connection ends first. A slow consumer calls sr_conn_pause. */
SR_API int sr_conn_stream(sr_conn *c, const char *target, const sr_value *args, sr_item_fn on_item,
                          sr_done_fn done, void *ud, uint64_t *id_out);

typedef enum sr_call_kind {
    SR_CALL_SEND,   /* no answer: on_item and done unused (may be NULL) */
    SR_CALL_INVOKE, /* done gets the result, as sr_conn_invoke */
    SR_CALL_STREAM  /* on_item per item, then done, as sr_conn_stream */
} sr_call_kind;

/* The general call, with client-to-server streams: nuploads streams are
 * opened with the call, their ids written to upload_ids[0..nuploads) and
 * sent as the invocation's streamIds (the hub method takes them as its
 * ChannelReader / IAsyncEnumerable parameters, after the plain arguments
 * in args). Write to them with sr_conn_upload_write and end each with
 * sr_conn_upload_close. *id_out receives the call's id (0 for a send). */
SR_API int sr_conn_call(sr_conn *c, sr_call_kind kind, const char *target, const sr_value *args,
                        size_t nuploads, uint64_t *upload_ids, sr_item_fn on_item, sr_done_fn done,
                        void *ud, uint64_t *id_out);
/* Send one item (borrowed) on an open client-to-server stream. SR_EFULL:
 * the send buffer is full (sr_conn_wait_writable, then retry); SR_EUSAGE:
 * no open stream has this id (never opened, or closed); SR_ECLOSED: the
 * connection is not connected. */
SR_API int sr_conn_upload_write(sr_conn *c, uint64_t upload_id, const sr_value *item);
/* End a client-to-server stream; error NULL completes it, otherwise the
 * hub method sees the stream fail with that text. Closing a stream the
 * connection already lost is SR_OK (nothing to tell). */
SR_API int sr_conn_upload_close(sr_conn *c, uint64_t upload_id, const char *error);

/* Flow control for a slow consumer: while paused (calls to sr_conn_pause
 * outnumber those to sr_conn_resume), received messages are held, in
 * order, and not delivered. Held messages count against the loop's bound
 * (SR_QUEUE_HIGH), so past it the I/O threads stop reading; nothing is
 * dropped. Held messages are delivered, still in order, after the last
 * resume (inside a later dispatch), and before the close of the transport
 * they came on is reported. */
SR_API void sr_conn_pause(sr_conn *c);
SR_API void sr_conn_resume(sr_conn *c);

/* ------------------------------------------------------ server's calls */

/* A call from the server. target is as sent (match it case-insensitively);
 * args is an SR_ARRAY. invocation_id is NULL for a plain call; otherwise
 * the server waits for a result (client results, ASP.NET Core 7+) and the
 * callback returns 1 when it answers with sr_conn_complete (now or later,
 * exactly once), or 0 to have the core answer "Client didn't provide a
 * result." at once. The return value of a plain call is ignored. */
typedef int (*sr_invocation_fn)(void *ud, sr_conn *c, const char *target, const sr_value *args,
                                const char *invocation_id);
SR_API void sr_conn_on_invocation(sr_conn *c, sr_invocation_fn fn, void *ud);

/* Inside the invocation callback of a plain call (no invocation_id), and
 * not from a callback nested in it: take the next call the server sent
 * when it would be delivered next anyway and is a plain call of the same
 * target (exactly as sent) with at most max_args arguments. Returns its
 * arguments (an SR_ARRAY, valid until the next take or the callback's
 * return); the core then delivers it to no one. NULL when there is none
 * ready (another message comes first, the connection paused, moved on, or
 * the batch ends): the core goes on delivering as usual. A flood of one
 * method then costs one callback, not one per call. */
SR_API const sr_value *sr_conn_next_call(sr_conn *c, const char *target, size_t max_args);
/* Answer a server's call that waits for a result: result (borrowed; NULL
 * sends null) when error is NULL, else the error text. SR_ECLOSED when the
 * connection is not connected any more (the server has failed its call). */
SR_API int sr_conn_complete(sr_conn *c, const char *invocation_id, const sr_value *result,
                            const char *error);

/* The connection closed for good; err is NULL after sr_conn_stop. */
typedef void (*sr_close_fn)(void *ud, sr_conn *c, const sr_error *err);
SR_API void sr_conn_on_close(sr_conn *c, sr_close_fn fn, void *ud);

/* Every state change (old -> new), after it happened. */
typedef void (*sr_state_fn)(void *ud, sr_conn *c, sr_state old_state, sr_state new_state);
SR_API void sr_conn_on_state(sr_conn *c, sr_state_fn fn, void *ud);

/* A connection loss started automatic reconnection (state is already
 * SR_STATE_RECONNECTING); err says why. Runs before the first attempt. */
typedef void (*sr_reconnecting_fn)(void *ud, sr_conn *c, const sr_error *err);
SR_API void sr_conn_on_reconnecting(sr_conn *c, sr_reconnecting_fn fn, void *ud);

/* Reconnected (state SR_STATE_CONNECTED); connection_id is the new id, NULL
 * with skip_negotiation. */
typedef void (*sr_reconnected_fn)(void *ud, sr_conn *c, const char *connection_id);
SR_API void sr_conn_on_reconnected(sr_conn *c, sr_reconnected_fn fn, void *ud);

/* After sr_conn_send/sr_conn_invoke returned SR_EFULL (the transport's send
 * queue or the stateful-reconnect buffer is full): fn runs once, inside
 * dispatch, when there is room again (err NULL), or with SR_ECLOSED when the
 * connection ends first. Retry the call then. */
SR_API int sr_conn_wait_writable(sr_conn *c, sr_done_fn fn, void *ud);

#ifdef __cplusplus
}
#endif
#endif
