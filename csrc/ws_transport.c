/*
 * ws_transport.c - the WebSocket transport: one libwebsockets context per
 * sr_loop (a loop service), serviced by one thread (the "I/O thread"), and
 * the resolver threads that look host names up for it.
 *
 * Threads and ownership:
 *  - Every lws call except lws_cancel_service runs on the I/O thread. The
 *    host (and the resolver threads) talk to it through a command list
 *    under io->mu: each transport carries a bit set of pending commands
 *    and sits on the list at most once (the list holds a reference). A
 *    poster wakes the thread with lws_cancel_service only when the list
 *    goes non-empty; the thread drains it in LWS_CALLBACK_EVENT_WAIT_CANCELLED.
 *  - A transport's I/O-side reference is held from sr__ws_transport_new
 *    until detach(), which also unbinds the wsi (its opaque user data is
 *    cleared, so later lws callbacks for it find no transport) and kills it
 *    if it is still open. Fields marked "I/O" are touched only on the I/O
 *    thread; those marked "mu" under io->mu.
 *  - Host names are resolved off the I/O thread so a slow DNS server cannot
 *    stall the pings of every other connection; lws then gets a numeric
 *    address while the Host header, SNI and the certificate name check use
 *    the original name. Through an HTTP proxy the proxy's host is resolved
 *    instead and lws asks the proxy (CONNECT) for the original name, which
 *    only the proxy may know. The resolver is a few joinable threads owned by the
 *    io, fed by a job queue (io->rmu); a queued lookup holds a reference on
 *    its transport. A lookup for a released transport is dropped. Freeing
 *    the io drops the lookups not started, wakes the threads and joins them
 *    (waiting for a getaddrinfo in progress), so once sr_loop_free returns no
 *    thread of ours runs: the code may be unloaded (dlclose of the Lua
 *    module by lua_close).
 *  - Keepalive, server timeout and handshake timeout are liveness.c's; this
 *    file drives them from one lws_sul timer per transport.
 *  - Exactly one SR_EV_TP_CLOSED per transport (transport.c keeps the event
 *    ready), and SR_EV_TP_OPEN only before it.
 *  - "The I/O thread" above means whichever thread owns the service. A
 *    host blocked in sr_loop_dispatch asks for it (host_wants); the I/O
 *    thread hands it over after its current lws_service pass and sleeps,
 *    and the host then runs lws_service itself inside its waits (drive), so
 *    a round trip costs no thread hand-off. Between waits the host keeps
 *    ownership; once it has been out of a wait for HOST_GRACE_US the I/O
 *    thread takes it back, so a host busy for a long time still has its
 *    pings sent and its sockets read. Ownership changes only under io->mu
 *    and never while lws_service runs, so lws is never entered twice.
 *    Commands posted while the host owns but is not in a wait skip the wake
 *    pipe (deferred): the next drive or the take-back drains them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "error.h"
#include "framing.h"
#include "json_fast.h"
#include "liveness.h"
#include "proxy.h"
#include "transport_kind.h"

#define PROTO_NAME "signalr-ws"
/* lws reads each frame's payload into a per-connection buffer of this size
 * (allocated once a connection is up and kept until it closes), and it also
 * reads no more than this from the socket per pass, so in a flood each pass
 * (a poll, a recv, a posted batch, a host wake-up) carries this much. 16 KiB
 * instead of 2 cut the CPU per received message by a fifth; 32 did no
 * better. An idle connection only touches the buffer's first bytes, so its
 * RSS grows by about 2 KiB, not 14 (bench/peers idle). A longer payload
 * comes in pieces of this size, which the decoder joins. */
#define RX_BUFFER_SIZE (16 * 1024)
/* Bytes per send(): larger queued batches go out in few syscalls. lws
 * keeps what the kernel did not take and holds back WRITEABLE until sent. */
#define TX_PACKET_SIZE (256 * 1024)
/* Shared per-context service buffer (socket reads, the upgrade request). */
#define SERV_BUF_SIZE (32 * 1024)
/* lws 4.1.6 formats "GET <path> HTTP/1.1" into 2,048 bytes and truncates
 * longer ones (lws_generate_client_handshake). */
#define MAX_PATH_LEN 2032 /* 2,048 - "GET " - " HTTP/1.1\r\n" - the NUL */
/* Through a proxy, lws 4.1.6 formats "CONNECT host:port HTTP/1.1", "Host:
 * host:port" and its User-agent line into 256 bytes, and base64-encodes the
 * proxy's "user:password" into 128 (lws_set_proxy). */
#define MAX_CONNECT_HOST 96
#define MAX_PROXY_USERPASS 93
/* A vhost given no proxy reads http_proxy from the environment itself
 * (lws_create_vhost), ignoring no_proxy and https_proxy; proxy.c decides
 * instead, so direct vhosts get this, which lws_set_proxy takes as port 0:
 * no proxy. */
#define NO_PROXY_ADDRESS ":0"
/* Fragments of one WebSocket message are joined up to this many bytes
 * before they are posted together (sr__transport_post_data). */
#define RX_BATCH (64 * 1024)
/* Write and batch buffers larger than this are freed after use. */
#define BUF_KEEP (256 * 1024)
#define MAX_ADDRS 8
/* The server's close reason is kept up to this many bytes (a close frame
 * carries at most 123). */
#define MAX_PEER_REASON 123
/* After a graceful close is asked for, lws gets this long to flush the
 * queue and finish the close handshake before the socket is dropped. */
#define CLOSE_GRACE_SECS 5
#define CONNECT_TIMEOUT_SECS 20
/* Lookups run in parallel up to this many threads; more wait in the queue. */
#define RESOLVERS_MAX 4
/* A probe (see probe()) waits this long for its connect at most. */
#define PROBE_MS 3000
/* The I/O thread takes the sockets back from a host that has been out of
 * its waits this long: the most a busy host delays a ping or a read. */
#define HOST_GRACE_US 2000
/* While the host is inside a wait the I/O thread only looks this often
 * whether it has left (a host blocked for long made it wake 500 times a
 * second). A host that leaves and keeps calling poll(0) hands the sockets
 * back itself once its grace is over (io_drive); one that calls nothing is
 * found by this look, HOST_GRACE_US late at most plus this. */
#define HOST_LOOK_US 20000
/* Drive passes that receive this much within HOST_FLOOD_WINDOW_US mean a
 * flood, not replies: the I/O thread reads (and parses) it better, in
 * parallel with the host's dispatching, so the host hands the sockets back
 * and does not ask again for a while. One pass reads at most a buffer, so
 * the bytes are counted over a window, not per pass. */
#define HOST_FLOOD_BYTES (16 * 1024)
#define HOST_FLOOD_WINDOW_US 5000
/* The while starts at HOST_BACKOFF_US and doubles, up to HOST_BACKOFF_MAX_US,
 * each time the host meets the same flood on its first pass back: every
 * take-back during a long flood is a pass of reading on the host (5-7% of
 * its time at 50 ms). It starts over once a flood has not been seen for a
 * while twice as long. */
#define HOST_BACKOFF_US 50000
#define HOST_BACKOFF_MAX_US 800000

enum {
    CMD_OPEN = 1,
    CMD_RESOLVED = 2,
    CMD_WRITE = 4,
    CMD_CLOSE = 8,
    CMD_RELEASE = 16,
    CMD_PROBED = 32
};

enum {
    ST_IDLE,       /* created, CMD_OPEN not handled yet */
    ST_RESOLVING,  /* a lookup is queued or running */
    ST_CONNECTING, /* a wsi exists, not established */
    ST_PROBING,    /* the TCP connect failed; a probe is finding out why */
    ST_OPEN,       /* established, handshake written */
    ST_DONE        /* detached: the I/O side is finished with it */
};

typedef struct ws_header {
    char *name; /* with the trailing ':' lws wants */
    char *value;
} ws_header;

/* What only connecting reads: the addresses to try and the reasons a
 * failure is told with. Allocated when the I/O thread starts the
 * transport and freed once the upgrade is answered (drop_dial), so an open
 * connection does not carry these 800 bytes; a failed transport keeps it
 * until it is destroyed, since a resolver job may still write to it. */
typedef struct ws_dial {
    /* Filled by the resolver before it queues CMD_RESOLVED; read by the
     * I/O thread after it takes the command (both under io->mu). */
    char addrs[MAX_ADDRS][INET6_ADDRSTRLEN];
    int naddr;
    char resolve_err[160];
    /* Likewise for a probe (CMD_PROBED): the errno of one more connect to
     * the address that failed (0: it connected). */
    int probe_errno;
    /* I/O thread: why the upgrade failed, when lws does not say. */
    char err_hint[256];
} ws_dial;

typedef struct ws_tp {
    sr_transport base; /* first: sr_transport* and ws_tp* convert */
    struct sr_ws_io *io;

    /* Configuration, constant after sr__ws_transport_new. */
    char *host;     /* as in the URL, brackets removed */
    char *host_hdr; /* Host header (host[:port]); also SNI and cert name */
    char *path;     /* path and query */
    char *where;    /* scheme://host:port/path for messages (no query) */
    int port, tls, binary, tls_no_verify;
    int text_only; /* refuse binary messages (JSON) */
    /* An IPv6 literal: lws 4.1.6 cuts the name it verifies at the first
     * colon, so its check is off and the certificate's IP addresses are
     * checked here (verify_cb). */
    int check_ip;
    char *ca_file, *cert_file, *key_file;
    /* Through an HTTP proxy (proxy.host set): lws connects to the proxy's
     * address (resolved here, like a direct target's) and asks it for a
     * tunnel to connect_host:port, which only the proxy need resolve. */
    sr_proxy proxy;
    char *connect_host; /* the CONNECT target: host, IPv6 in brackets */
    ws_header *headers;
    size_t nheaders;
    unsigned char *hs; /* LWS_PRE headroom, then the handshake bytes */
    int write_failed;  /* a write outside lws_service failed: end at the next pass */
    size_t hs_len;
    char *ping;
    size_t ping_len;

    ws_dial *dial; /* until the upgrade is answered (see ws_dial) */
    int probe;     /* set before it is queued: the resolver's job is a probe */

    /* I/O thread only. */
    int state;
    int linked; /* on io->all */
    struct ws_tp *prev, *next;
    struct lws *wsi;
    int iaddr;
    int request_sent;  /* the upgrade request was built: TCP and TLS were up */
    int attempt_ended; /* the current wsi already reported its end */
    int paused;        /* reading paused for backpressure */
    int closing;       /* graceful close under way */
    int peer_code;
    char *peer_reason; /* the server's close reason (malloc'd when one came) */
    sr_liveness live;
    lws_sorted_usec_list_t sul_live, sul_retry;
    lws_sorted_usec_list_t sul_connect; /* the handshake timeout, until the upgrade is answered */
    sr_buf wbuf;                        /* the batch being written; spare for the send queue */
    sr_buf rx;                          /* fragments being joined */

    /* io->mu */
    unsigned cmds;
    int queued;
    struct ws_tp *cmd_next;

    /* io->rmu: on the resolver's job queue. */
    struct ws_tp *rnext;
} ws_tp;

/* lws keeps TLS files and the proxy per vhost: one vhost per set in use. */
typedef struct ws_vhost {
    struct ws_vhost *next;
    char *ca_file, *cert_file, *key_file;
    char *proxy; /* lws_set_proxy's "[user:password@]address", or NULL */
    int proxy_port;
    struct lws_vhost *vh;
} ws_vhost;

struct sr_ws_io {
    sr_loop *loop;
    struct lws_context *ctx;
    pthread_t thread;

    pthread_mutex_t mu;
    int stop;                   /* mu */
    int dead;                   /* mu: the context is gone or going */
    int ready;                  /* mu: the I/O thread made the context (io_main) */
    char init_err[160];         /* why it could not, for the transports that wait */
    int woken;                  /* mu: lws_cancel_service issued, not drained */
    int resume;                 /* mu */
    ws_tp *cmd_head, *cmd_tail; /* mu */
    /* Who runs lws_service (see the header comment). */
    pthread_cond_t io_cv;             /* the I/O thread sleeps on it while the host owns */
    int host_owns;                    /* mu */
    int host_wants;                   /* mu */
    int host_in_wait;                 /* mu: inside lws_service in drive */
    int deferred;                     /* mu: woken without the pipe; drain before serving */
    uint64_t host_left;               /* mu: sr__liveness_clock when the last drive ended */
    uint64_t host_backoff;            /* mu: the host asks again only after this time */
    uint64_t backoff_us;              /* mu: the while host_backoff was set for, 0 before any */
    size_t rx_pass;                   /* owner: bytes received in the current pass */
    size_t rx_window;                 /* host: bytes its drive passes received ... */
    uint64_t rx_window_start;         /* host: ... since this time */
    lws_sorted_usec_list_t sul_drive; /* owner only: ends a drive at its timeout */

    /* I/O thread only. */
    ws_tp *all;
    ws_vhost *vhosts;
    struct lws_vhost *vh_default;
    int nvhosts;

    /* The resolver. Threads are started by the I/O thread as lookups queue
     * up and joined by sr_loop_free. */
    pthread_mutex_t rmu;
    pthread_cond_t rjob;  /* a lookup was queued, or rstop */
    pthread_cond_t rwake; /* rstop (ends the test delay early) */
    ws_tp *rhead, *rtail; /* rmu: lookups not started */
    int nqueued;          /* rmu */
    int nidle;            /* rmu: threads waiting for a lookup */
    int rstop;            /* rmu */
    int nthreads;         /* rmu */
    pthread_t rthreads[RESOLVERS_MAX];
    long delay_ms; /* SR_TEST_RESOLVE_DELAY_MS; constant */
};

/* The loop service key: its address identifies the WebSocket back end. */
static const char io_key;

/* Test-only fake of a slow DNS server: SR_TEST_RESOLVE_DELAY_MS=<ms> makes
 * every lookup wait that long before getaddrinfo (a wait that freeing the
 * loop cuts short). Read once per loop, when its WebSocket back end starts,
 * so a test can set it for one loop. For tests only; not a user option. */
#define RESOLVE_DELAY_ENV "SR_TEST_RESOLVE_DELAY_MS"

/* lws 4.1 allocates its OpenSSL ex-data indices (process globals) in every
 * context created with LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; a context that
 * is alive when another one re-allocates them can no longer find its
 * client SSL_CTX bookkeeping and leaks the SSL_CTX (with the CA store,
 * ~700 KB) when destroyed. So only a context created while none of ours is
 * alive does the global init; vhosts always ask for their client SSL_CTX. */
static pthread_mutex_t g_ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_live_ctx; /* g_ctx_mu */

static const sr_transport_ops ws_ops;
static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len);

static const struct lws_protocols ws_protocols[] = {
    {PROTO_NAME, ws_callback, 0, RX_BUFFER_SIZE, 0, NULL, TX_PACKET_SIZE},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* ------------------------------------------------------------ lws logging */

static void lws_log_drop(int level, const char *line)
{
    (void)level;
    (void)line;
}

static void lws_log_stderr(int level, const char *line)
{
    (void)level;
    fputs(line, stderr);
}

/* lws logs to stderr by default; a library must not. SR_LWS_LOG=<lws log
 * level bits> brings it back for debugging. */
static void log_setup(void)
{
    const char *env = getenv("SR_LWS_LOG");
    if (env && *env)
        lws_set_log_level(atoi(env), lws_log_stderr);
    else
        lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_drop);
}

/* --------------------------------------------------------------- commands */

/* Under io->mu: make sure whoever serves lws soon drains the commands. */
static void wake_locked(struct sr_ws_io *io)
{
    if (io->woken) return;
    io->woken = 1;
    if (!io->ready || (io->host_owns && !io->host_in_wait))
        io->deferred = 1; /* nobody is in lws_service: no pipe to write */
    else
        lws_cancel_service(io->ctx);
}

/* Under io->mu. 0, or -1 when the I/O thread is gone. */
static int cmd_locked(struct sr_ws_io *io, ws_tp *tp, unsigned bits)
{
    if (io->dead) return -1;
    tp->cmds |= bits;
    if (!tp->queued) {
        tp->queued = 1;
        sr__transport_ref(&tp->base);
        tp->cmd_next = NULL;
        if (io->cmd_tail)
            io->cmd_tail->cmd_next = tp;
        else
            io->cmd_head = tp;
        io->cmd_tail = tp;
    }
    wake_locked(io);
    return 0;
}

static int cmd(struct sr_ws_io *io, ws_tp *tp, unsigned bits)
{
    int r;
    pthread_mutex_lock(&io->mu);
    r = cmd_locked(io, tp, bits);
    pthread_mutex_unlock(&io->mu);
    return r;
}

/* ------------------------------------------------------ I/O-side lifetime */

static void link_tp(struct sr_ws_io *io, ws_tp *tp)
{
    tp->prev = NULL;
    tp->next = io->all;
    if (io->all) io->all->prev = tp;
    io->all = tp;
    tp->linked = 1;
}

static void unlink_tp(struct sr_ws_io *io, ws_tp *tp)
{
    if (!tp->linked) return;
    if (tp->prev)
        tp->prev->next = tp->next;
    else
        io->all = tp->next;
    if (tp->next) tp->next->prev = tp->prev;
    tp->prev = tp->next = NULL;
    tp->linked = 0;
}

static void cancel_timers(ws_tp *tp)
{
    lws_sul_cancel(&tp->sul_live);
    lws_sul_cancel(&tp->sul_retry);
    lws_sul_cancel(&tp->sul_connect);
}

/* The I/O side is done with tp: unbind and kill its wsi if any, drop the
 * I/O reference. tp may be freed on return. */
static void detach(ws_tp *tp)
{
    if (tp->state == ST_DONE) return;
    tp->state = ST_DONE;
    cancel_timers(tp);
    if (tp->wsi) {
        lws_set_opaque_user_data(tp->wsi, NULL);
        lws_set_timeout(tp->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        tp->wsi = NULL;
    }
    unlink_tp(tp->io, tp);
    sr__buf_free(&tp->wbuf);
    sr__buf_free(&tp->rx);
    sr__transport_unref(&tp->base);
}

static int close_requested(ws_tp *tp)
{
    int r;
    pthread_mutex_lock(&tp->base.mu);
    r = tp->base.close_req;
    pthread_mutex_unlock(&tp->base.mu);
    return r;
}

/* Post the one SR_EV_TP_CLOSED. After the host asked to close, any end is
 * the clean end it asked for. */
static void finish(ws_tp *tp, int code, long status, const char *text)
{
    if (close_requested(tp)) {
        code = SR_OK;
        status = 0;
        text = NULL;
    }
    sr__transport_post_closed(&tp->base, code, status, text);
}

static void fail(ws_tp *tp, int code, long status, const char *text)
{
    finish(tp, code, status, text);
    detach(tp);
}

/* ----------------------------------------------------------- connecting */

static void vhost_free(ws_vhost *v)
{
    free(v->ca_file);
    free(v->cert_file);
    free(v->key_file);
    free(v->proxy);
    free(v);
}

/* Where lws connects: the proxy's port when proxied. */
static int dial_port(const ws_tp *tp)
{
    return tp->proxy.host ? tp->proxy.port : tp->port;
}

/* The vhost for tp's next attempt. Proxied, its proxy is the proxy's
 * address being tried, numeric: lws 4.1.6 would look a name up itself,
 * blocking its thread (it has no asynchronous resolver). */
static struct lws_vhost *vhost_for(struct sr_ws_io *io, ws_tp *tp)
{
    struct lws_context_creation_info info;
    ws_vhost *v;
    char name[32], *proxy = NULL;
    const char *ca = tp->tls ? tp->ca_file : NULL, *cert = tp->tls ? tp->cert_file : NULL,
               *key = tp->tls ? tp->key_file : NULL;
    if (tp->proxy.host) {
        const char *a = tp->dial->addrs[tp->iaddr], *up = tp->proxy.userpass;
        size_t n = strlen(a) + (up ? strlen(up) : 0) + 4;
        if (!(proxy = malloc(n))) return NULL;
        snprintf(proxy, n, strchr(a, ':') ? "%s%s[%s]" : "%s%s%s", up ? up : "", up ? "@" : "", a);
    }
    if (!ca && !cert && !key && !proxy) return io->vh_default;
    for (v = io->vhosts; v; v = v->next)
        if (same_str(v->ca_file, ca) && same_str(v->cert_file, cert) &&
            same_str(v->key_file, key) && same_str(v->proxy, proxy) &&
            (!proxy || v->proxy_port == tp->proxy.port)) {
            free(proxy);
            return v->vh;
        }
    v = calloc(1, sizeof *v);
    if (!v) {
        free(proxy);
        return NULL;
    }
    v->ca_file = dup_or_null(ca);
    v->cert_file = dup_or_null(cert);
    v->key_file = dup_or_null(key);
    v->proxy = proxy;
    v->proxy_port = proxy ? tp->proxy.port : 0;
    snprintf(name, sizeof name, "sr-vh-%d", ++io->nvhosts);
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = ws_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.vhost_name = name;
    info.timeout_secs = CONNECT_TIMEOUT_SECS;
    info.connect_timeout_secs = CONNECT_TIMEOUT_SECS;
    info.client_ssl_ca_filepath = v->ca_file;
    info.client_ssl_cert_filepath = v->cert_file;
    info.client_ssl_private_key_filepath = v->key_file;
    info.http_proxy_address = proxy ? proxy : NO_PROXY_ADDRESS;
    info.http_proxy_port = (unsigned)v->proxy_port;
    v->vh = lws_create_vhost(io->ctx, &info);
    if (!v->vh) {
        vhost_free(v);
        return NULL;
    }
    v->next = io->vhosts;
    io->vhosts = v;
    return v->vh;
}

static void connect_next(ws_tp *tp);
static int resolve_async(struct sr_ws_io *io, ws_tp *tp);

static void retry_cb(lws_sorted_usec_list_t *sul)
{
    ws_tp *tp = (ws_tp *)((char *)sul - offsetof(ws_tp, sul_retry));
    connect_next(tp);
}

/* The port lws connects to: the proxy's when there is one. */
static int peer_port(const ws_tp *tp)
{
    return tp->proxy.host ? tp->proxy.port : tp->port;
}

/* What the TCP connect went to, for messages. */
static void peer_text(const ws_tp *tp, char *out, size_t size)
{
    /* Connected, the addresses are gone: the name says where. */
    const char *a = tp->dial ? tp->dial->addrs[tp->iaddr] : tp->host;
    if (tp->proxy.host)
        snprintf(out, size, "the proxy %s (%s port %d)", tp->proxy.shown, a, tp->proxy.port);
    else
        snprintf(out, size, "%s port %d", a, tp->port);
}

/* The wsi of tp ended (error, close or destroy): unbind it, then either try
 * the next address or finish. tp may be freed on return. */
static void wsi_ended(ws_tp *tp, struct lws *wsi, int code, long status, const char *text)
{
    char msg[512];
    lws_set_opaque_user_data(wsi, NULL);
    if (tp->wsi == wsi) tp->wsi = NULL;
    tp->attempt_ended = 1;
    if (tp->state == ST_DONE) return;
    if (tp->state == ST_CONNECTING && !tp->request_sent && tp->dial &&
        tp->iaddr + 1 < tp->dial->naddr && !close_requested(tp) &&
        !sr__transport_released(&tp->base)) {
        tp->iaddr++;
        lws_sul_schedule(lws_get_context(wsi), 0, &tp->sul_retry, retry_cb, 1);
        return;
    }
    if (tp->state == ST_CONNECTING && !text && !close_requested(tp) &&
        !sr__transport_released(&tp->base)) {
        /* The TCP connect failed: say why (see probe()). */
        tp->state = ST_PROBING;
        tp->probe = 1;
        if (resolve_async(tp->io, tp) == 0) return;
        tp->state = ST_CONNECTING;
    }
    if (!text) {
        char what[300];
        peer_text(tp, what, sizeof what);
        snprintf(msg, sizeof msg, "WebSocket connection to %s failed: cannot connect to %s",
                 tp->where, what);
        text = msg;
    }
    fail(tp, code, status, text);
}

static void connect_next(ws_tp *tp)
{
    struct lws_client_connect_info ci;
    struct lws_vhost *vh;
    struct lws *wsi;
    char msg[512];

    vh = vhost_for(tp->io, tp);
    if (!vh && tp->proxy.host) {
        snprintf(msg, sizeof msg, "WebSocket connection to %s failed: cannot set up the proxy %s",
                 tp->where, tp->proxy.shown);
        fail(tp, SR_ETRANSPORT, 0, msg);
        return;
    }
    if (!vh) {
        snprintf(msg, sizeof msg,
                 "WebSocket connection to %s failed: TLS setup failed (ca_file %s, cert_file %s, "
                 "key_file %s)",
                 tp->where, tp->ca_file ? tp->ca_file : "-", tp->cert_file ? tp->cert_file : "-",
                 tp->key_file ? tp->key_file : "-");
        fail(tp, SR_ETRANSPORT, 0, msg);
        return;
    }
    memset(&ci, 0, sizeof ci);
    ci.context = tp->io->ctx;
    ci.vhost = vh;
    /* Proxied, lws connects to its vhost's proxy and asks for address:port. */
    ci.address = tp->proxy.host ? tp->connect_host : tp->dial->addrs[tp->iaddr];
    ci.port = tp->port;
    ci.path = tp->path;
    ci.host = tp->host_hdr;
    ci.origin = NULL;   /* non-browser clients send no Origin */
    ci.protocol = NULL; /* no subprotocol */
    ci.local_protocol_name = PROTO_NAME;
    ci.opaque_user_data = tp;
    if (tp->tls) {
        ci.ssl_connection = LCCSCF_USE_SSL;
        if (tp->tls_no_verify)
            ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                 LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
        else if (tp->check_ip)
            ci.ssl_connection |= LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    }
    tp->state = ST_CONNECTING;
    tp->request_sent = 0;
    tp->dial->err_hint[0] = '\0';
    /* A failure inside the call runs wsi_ended, which may drop the I/O
     * reference; keep tp alive until we have looked at the result. */
    sr__transport_ref(&tp->base);
    tp->attempt_ended = 0;
    wsi = lws_client_connect_via_info(&ci);
    if (wsi) {
        if (!tp->attempt_ended) tp->wsi = wsi;
    } else if (!tp->attempt_ended) {
        snprintf(msg, sizeof msg, "WebSocket connection to %s failed: could not start connecting",
                 tp->where);
        fail(tp, SR_ETRANSPORT, 0, msg);
    }
    sr__transport_unref(&tp->base);
}

/* -------------------------------------------------------------- resolving */

/* Resolver thread: the lookup of tp (queued with a reference), results
 * handed to the I/O thread as CMD_RESOLVED. */
static void lookup(struct sr_ws_io *io, ws_tp *tp)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[16], addrs[MAX_ADDRS][INET6_ADDRSTRLEN];
    int rc, n = 0;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    snprintf(port, sizeof port, "%d", dial_port(tp));
    /* Through a proxy, only the proxy need know the target's name. */
    rc = getaddrinfo(tp->proxy.host ? tp->proxy.host : tp->host, port, &hints, &res);
    for (ai = rc == 0 ? res : NULL; ai && n < MAX_ADDRS; ai = ai->ai_next) {
        const void *a;
        if (ai->ai_family == AF_INET)
            a = &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6)
            a = &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr;
        else
            continue;
        if (inet_ntop(ai->ai_family, a, addrs[n], sizeof addrs[n])) n++;
    }
    if (res) freeaddrinfo(res);
    if (sr__transport_released(&tp->base)) return; /* nobody waits for it */

    pthread_mutex_lock(&io->mu);
    memcpy(tp->dial->addrs, addrs, sizeof addrs);
    tp->dial->naddr = n;
    if (n == 0)
        snprintf(tp->dial->resolve_err, sizeof tp->dial->resolve_err, "%s",
                 rc ? gai_strerror(rc) : "no usable address");
    cmd_locked(io, tp, CMD_RESOLVED); /* dropped when the I/O thread is gone */
    pthread_mutex_unlock(&io->mu);
}

/* Resolver thread: why the connect to tp's address failed. lws 4.1.6 reads
 * the socket's error (SO_ERROR, which reading clears) before it reports
 * the failure, and passes on only "Unable to connect"; so one more
 * non-blocking connect to the same address tells: its errno (refused,
 * unreachable, timed out) goes to the I/O thread as CMD_PROBED. Waits in
 * short slices so freeing the loop is not held up. */
static void probe(struct sr_ws_io *io, ws_tp *tp)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    struct sockaddr *sa;
    socklen_t salen;
    const char *addr = tp->dial->addrs[tp->iaddr];
    int fd, e = 0, waited = 0, stop = 0;

    memset(&a6, 0, sizeof a6);
    memset(&a4, 0, sizeof a4);
    if (inet_pton(AF_INET, addr, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((unsigned short)peer_port(tp));
        sa = (struct sockaddr *)&a4;
        salen = sizeof a4;
    } else {
        inet_pton(AF_INET6, addr, &a6.sin6_addr);
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((unsigned short)peer_port(tp));
        sa = (struct sockaddr *)&a6;
        salen = sizeof a6;
    }
    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        e = errno;
    } else if (connect(fd, sa, salen) != 0) {
        e = errno;
        while (e == EINPROGRESS && !stop) {
            struct pollfd p;
            int r;
            p.fd = fd;
            p.events = POLLOUT;
            p.revents = 0;
            r = poll(&p, 1, 100);
            if (r > 0) {
                socklen_t sl = sizeof e;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0) e = errno;
            } else if (r < 0 && errno != EINTR) {
                e = errno;
            } else if ((waited += 100) >= PROBE_MS) {
                e = ETIMEDOUT;
            }
            pthread_mutex_lock(&io->rmu);
            stop = io->rstop;
            pthread_mutex_unlock(&io->rmu);
        }
    }
    if (fd >= 0) close(fd);
    if (stop || sr__transport_released(&tp->base)) return;
    pthread_mutex_lock(&io->mu);
    tp->dial->probe_errno = e;
    cmd_locked(io, tp, CMD_PROBED); /* dropped when the I/O thread is gone */
    pthread_mutex_unlock(&io->mu);
}

/* Under io->rmu: the SR_TEST_RESOLVE_DELAY_MS wait. 0 when the io is being
 * freed meanwhile. */
static int test_delay(struct sr_ws_io *io)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += io->delay_ms / 1000;
    until.tv_nsec += (io->delay_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!io->rstop)
        if (pthread_cond_timedwait(&io->rwake, &io->rmu, &until) == ETIMEDOUT) break;
    return !io->rstop;
}

static void *resolver_main(void *arg)
{
    struct sr_ws_io *io = arg;
    pthread_mutex_lock(&io->rmu);
    for (;;) {
        ws_tp *tp;
        int go;
        while (!io->rstop && !io->rhead) {
            io->nidle++;
            pthread_cond_wait(&io->rjob, &io->rmu);
            io->nidle--;
        }
        if (io->rstop) break;
        tp = io->rhead;
        io->rhead = tp->rnext;
        if (!io->rhead) io->rtail = NULL;
        io->nqueued--;
        tp->rnext = NULL;
        go = io->delay_ms <= 0 || test_delay(io);
        pthread_mutex_unlock(&io->rmu);
        if (go && !sr__transport_released(&tp->base)) {
            if (tp->probe)
                probe(io, tp);
            else
                lookup(io, tp);
        }
        sr__transport_unref(&tp->base); /* the queue's */
        pthread_mutex_lock(&io->rmu);
    }
    pthread_mutex_unlock(&io->rmu);
    return NULL;
}

/* I/O thread: queue the lookup of tp, starting a thread when none is free.
 * 0, or -1 when no resolver thread can run it. */
static int resolve_async(struct sr_ws_io *io, ws_tp *tp)
{
    int rc = 0;
    pthread_mutex_lock(&io->rmu);
    if (io->rstop) {
        rc = -1;
    } else if (io->nqueued >= io->nidle && io->nthreads < RESOLVERS_MAX) {
        if (pthread_create(&io->rthreads[io->nthreads], NULL, resolver_main, io) == 0)
            io->nthreads++;
        else if (io->nthreads == 0)
            rc = -1; /* with one thread or more, the lookup waits its turn */
    }
    if (rc == 0) {
        sr__transport_ref(&tp->base);
        tp->rnext = NULL;
        if (io->rtail)
            io->rtail->rnext = tp;
        else
            io->rhead = tp;
        io->rtail = tp;
        io->nqueued++;
        pthread_cond_signal(&io->rjob);
    }
    pthread_mutex_unlock(&io->rmu);
    return rc;
}

/* sr_loop_free, after the I/O thread stopped: drop the lookups not started,
 * end the threads (a getaddrinfo in progress is waited for). */
static void resolver_stop(struct sr_ws_io *io)
{
    int i, n;
    pthread_mutex_lock(&io->rmu);
    io->rstop = 1;
    pthread_cond_broadcast(&io->rjob);
    pthread_cond_broadcast(&io->rwake);
    n = io->nthreads;
    pthread_mutex_unlock(&io->rmu);
    for (i = 0; i < n; i++)
        pthread_join(io->rthreads[i], NULL);
    while (io->rhead) {
        ws_tp *tp = io->rhead;
        io->rhead = tp->rnext;
        sr__transport_unref(&tp->base);
    }
    io->rtail = NULL;
}

/* lws 4.1 creates a client TLS context even when it cannot load these
 * files, and the connection then fails with an unhelpful TLS error. */
static int tls_files_ok(ws_tp *tp)
{
    const char *names[3] = {"ca_file", "cert_file", "key_file"};
    const char *files[3];
    char msg[600];
    int i;
    files[0] = tp->ca_file;
    files[1] = tp->cert_file;
    files[2] = tp->key_file;
    for (i = 0; i < 3; i++) {
        if (files[i] && access(files[i], R_OK) != 0) {
            snprintf(msg, sizeof msg, "WebSocket connection to %s failed: cannot read %s %s: %s",
                     tp->where, names[i], files[i], strerror(errno));
            fail(tp, SR_ETRANSPORT, 0, msg);
            return 0;
        }
    }
    return 1;
}

static int is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* The handshake timeout runs from the start: a lookup, a connect or an
 * upgrade that never finishes ends with it, naming the phase, rather than
 * with libwebsockets' own timeouts. */
static void connect_timeout_cb(lws_sorted_usec_list_t *sul)
{
    ws_tp *tp = (ws_tp *)((char *)sul - offsetof(ws_tp, sul_connect));
    char msg[512];
    const char *phase = tp->state == ST_RESOLVING ? "looking up the host name"
                        : tp->request_sent        ? "the server's answer to the WebSocket upgrade"
                                                  : "the TCP connection and the TLS handshake";
    if (tp->state != ST_RESOLVING && tp->state != ST_CONNECTING && tp->state != ST_PROBING) return;
    snprintf(msg, sizeof msg,
             "WebSocket connection to %s timed out after %.1f s waiting for %s (the handshake "
             "timeout)",
             tp->where, (double)tp->live.handshake_timeout / 1e6, phase);
    fail(tp, SR_ETIMEOUT, 0, msg);
}

static void start(ws_tp *tp)
{
    struct sr_ws_io *io = tp->io;
    char msg[512];

    if (tp->state != ST_IDLE) return;
    link_tp(io, tp);
    if (!(tp->dial = calloc(1, sizeof *tp->dial))) {
        fail(tp, SR_ENOMEM, 0, "out of memory");
        return;
    }
    if (tp->live.handshake_timeout)
        lws_sul_schedule(io->ctx, 0, &tp->sul_connect, connect_timeout_cb,
                         (lws_usec_t)tp->live.handshake_timeout);
    if (tp->tls && !tls_files_ok(tp)) return;
    if (is_numeric(tp->proxy.host ? tp->proxy.host : tp->host)) {
        snprintf(tp->dial->addrs[0], sizeof tp->dial->addrs[0], "%s",
                 tp->proxy.host ? tp->proxy.host : tp->host);
        tp->dial->naddr = 1;
        tp->iaddr = 0;
        connect_next(tp);
        return;
    }
    tp->state = ST_RESOLVING;
    if (resolve_async(io, tp) != 0) {
        snprintf(msg, sizeof msg, "WebSocket connection to %s failed: cannot start the resolver",
                 tp->where);
        fail(tp, SR_ETRANSPORT, 0, msg);
    }
}

static void resolved(ws_tp *tp)
{
    char msg[512];
    if (tp->state != ST_RESOLVING) return;
    if (tp->dial->naddr == 0 && tp->proxy.host) {
        snprintf(msg, sizeof msg,
                 "WebSocket connection to %s failed: cannot resolve the proxy's host %s: %s",
                 tp->where, tp->proxy.host, tp->dial->resolve_err);
        fail(tp, SR_ETRANSPORT, 0, msg);
        return;
    }
    if (tp->dial->naddr == 0) {
        snprintf(msg, sizeof msg, "WebSocket connection to %s failed: cannot resolve %s: %s",
                 tp->where, tp->host, tp->dial->resolve_err);
        fail(tp, SR_ETRANSPORT, 0, msg);
        return;
    }
    tp->iaddr = 0;
    connect_next(tp);
}

/* The probe's answer (probe()): the connect failure, with its reason. */
static void probed(ws_tp *tp)
{
    char msg[640], what[300];
    int e = tp->dial->probe_errno;
    if (tp->state != ST_PROBING) return;
    peer_text(tp, what, sizeof what);
    if (e)
        snprintf(msg, sizeof msg, "WebSocket connection to %s failed: cannot connect to %s: %s",
                 tp->where, what, strerror(e));
    else
        snprintf(msg, sizeof msg,
                 "WebSocket connection to %s failed: cannot connect to %s (a second attempt got "
                 "through: the server may have just started)",
                 tp->where, what);
    fail(tp, SR_ETRANSPORT, 0, msg);
}

/* ----------------------------------------------------------------- timers */

static void live_cb(lws_sorted_usec_list_t *sul);

/* Act on what liveness.c says is due and re-arm the one timer. tp may be
 * freed on return (a timeout fails it). */
static void live_run(ws_tp *tp)
{
    uint64_t now = sr__liveness_clock(), next;
    if (tp->state != ST_OPEN || !tp->wsi) return;
    switch (sr__liveness_check(&tp->live, now, &next)) {
    case SR_LIVENESS_PING:
        if (sr__transport_queue_if_idle(&tp->base, tp->ping, tp->ping_len))
            lws_callback_on_writable(tp->wsi);
        break;
    case SR_LIVENESS_SERVER_TIMEOUT:
        fail(tp, SR_ETIMEOUT, 0, SR_LIVENESS_SERVER_TIMEOUT_TEXT);
        return;
    case SR_LIVENESS_HANDSHAKE_TIMEOUT:
        fail(tp, SR_ETIMEOUT, 0, SR_LIVENESS_HANDSHAKE_TIMEOUT_TEXT);
        return;
    case SR_LIVENESS_NONE:
        break;
    }
    lws_sul_cancel(&tp->sul_live);
    if (next)
        lws_sul_schedule(tp->io->ctx, 0, &tp->sul_live, live_cb,
                         next > now ? (lws_usec_t)(next - now) : 0);
}

static void live_cb(lws_sorted_usec_list_t *sul)
{
    live_run((ws_tp *)((char *)sul - offsetof(ws_tp, sul_live)));
}

/* ------------------------------------------------------- host commands */

static void do_close(ws_tp *tp)
{
    switch (tp->state) {
    case ST_IDLE:
    case ST_RESOLVING:
    case ST_CONNECTING:
    case ST_PROBING:
        /* Nothing to say goodbye to yet. */
        fail(tp, SR_OK, 0, NULL);
        break;
    case ST_OPEN:
        if (!tp->closing) {
            tp->closing = 1;
            lws_set_timeout(tp->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_SECS);
            lws_callback_on_writable(tp->wsi);
        }
        break;
    default:
        break;
    }
}

static void resume_all(struct sr_ws_io *io)
{
    ws_tp *tp, *next;
    for (tp = io->all; tp; tp = next) {
        next = tp->next; /* live_run may fail and unlink tp */
        if (!tp->paused || !tp->wsi || sr__transport_backpressure(&tp->base)) continue;
        tp->paused = 0;
        sr__liveness_resume(&tp->live, sr__liveness_clock());
        lws_rx_flow_control(tp->wsi, 1);
        live_run(tp); /* the server timeout runs again, from now */
    }
}

static int on_writeable(ws_tp *tp, struct lws *wsi);

/* Outside lws_service, on the owner: write what the host queued now rather
 * than on the POLLOUT of the next pass, which saves that pass and its poll
 * per round trip. Only between whole messages (nothing of an earlier one
 * left in lws) and while the socket is plainly open; a short write is kept
 * and finished by lws itself. A failed write is left for the next pass to
 * end from inside a callback, as if it had failed there: lws closes a wsi
 * for a failed write only when a callback returns -1, and ending the
 * transport here, before the server could see the loss, made a stateful
 * reattach arrive first and be refused (404). */
static void write_now(ws_tp *tp)
{
    if (tp->closing || tp->peer_code || tp->write_failed || lws_partial_buffered(tp->wsi)) {
        lws_callback_on_writable(tp->wsi);
        return;
    }
    if (on_writeable(tp, tp->wsi) >= 0) return;
    tp->write_failed = 1;
    lws_callback_on_writable(tp->wsi);
}

/* direct: the owner runs this outside lws_service, so it may write. */
static void handle_cmds(ws_tp *tp, unsigned bits, int direct)
{
    if (bits & CMD_RELEASE) {
        /* No upcall runs after release; just make sure the socket goes. */
        detach(tp);
        return;
    }
    if (bits & CMD_OPEN) start(tp);
    if ((bits & CMD_RESOLVED) && tp->state != ST_DONE) resolved(tp);
    if ((bits & CMD_PROBED) && tp->state != ST_DONE) probed(tp);
    if ((bits & CMD_CLOSE) && tp->state != ST_DONE) do_close(tp);
    if ((bits & CMD_WRITE) && tp->state == ST_OPEN && tp->wsi) {
        if (direct)
            write_now(tp);
        else
            lws_callback_on_writable(tp->wsi);
    }
}

static void drain_cmds(struct sr_ws_io *io, int direct)
{
    int resume;
    pthread_mutex_lock(&io->mu);
    io->woken = 0;
    resume = io->resume;
    io->resume = 0;
    pthread_mutex_unlock(&io->mu);
    for (;;) {
        ws_tp *tp;
        unsigned bits;
        pthread_mutex_lock(&io->mu);
        tp = io->cmd_head;
        if (tp) {
            io->cmd_head = tp->cmd_next;
            if (!io->cmd_head) io->cmd_tail = NULL;
            bits = tp->cmds;
            tp->cmds = 0;
            tp->queued = 0;
            tp->cmd_next = NULL;
        }
        pthread_mutex_unlock(&io->mu);
        if (!tp) break;
        handle_cmds(tp, bits, direct);
        sr__transport_unref(&tp->base); /* the list's */
    }
    if (resume) resume_all(io);
}

/* --------------------------------------------------------- lws callback */

/* The text of a failed connection attempt; 1 (no text) when its TCP
 * connect failed, which the probe explains (wsi_ended). */
static int conn_error_text(ws_tp *tp, struct lws *wsi, const char *in, char *msg, size_t size,
                           long *status)
{
    long st = lws_http_client_http_response(wsi);

    if (tp->proxy.host && !tp->request_sent && in && strcmp(in, "proxy not h1") == 0) {
        /* lws 4.1.6 keeps the proxy's status to itself. */
        snprintf(msg, size,
                 "WebSocket connection to %s failed: the proxy %s refused the tunnel to %s:%d (its "
                 "answer to CONNECT was not 200: wrong or missing proxy credentials give 407, a "
                 "target it will not reach 403 or 502)",
                 tp->where, tp->proxy.shown, tp->connect_host, tp->port);
    } else if (tp->proxy.host && !tp->request_sent && in && strncmp(in, "proxy ", 6) == 0) {
        snprintf(msg, size,
                 "WebSocket connection to %s failed: the proxy %s closed the connection before "
                 "answering CONNECT (%s)",
                 tp->where, tp->proxy.shown, in);
    } else if (st >= 200 && st != 101) {
        *status = st;
        snprintf(msg, size, "WebSocket connection to %s failed: HTTP %ld from the server%s%s",
                 tp->where, st, in ? " (" : "", in ? in : "");
        if (in) strncat(msg, ")", size - strlen(msg) - 1);
    } else if (tp->dial && tp->dial->err_hint[0]) {
        snprintf(msg, size, "WebSocket connection to %s failed: %s", tp->where, tp->dial->err_hint);
    } else if (!tp->request_sent && in && strcmp(in, "Unable to connect") == 0) {
        return 1;
    } else {
        snprintf(msg, size, "WebSocket connection to %s failed: %s", tp->where,
                 in ? in : "unknown error");
    }
    return 0;
}

/* Connected: what only connecting reads goes (no resolver job can be out
 * for tp now; lws keeps its own copies of the request's path and Host). */
static void drop_dial(ws_tp *tp)
{
    free(tp->dial);
    tp->dial = NULL;
    free(tp->path);
    tp->path = NULL;
    free(tp->host_hdr);
    tp->host_hdr = NULL;
}

static int on_established(ws_tp *tp, struct lws *wsi)
{
    lws_sul_cancel(&tp->sul_connect); /* the hub handshake's own timeout takes over */
    tp->state = ST_OPEN;
    drop_dial(tp);
    tp->wsi = wsi;
    sr__liveness_opened(&tp->live, sr__liveness_clock());
    /* The handshake goes first, from here rather than from WRITEABLE, so
     * SR_EV_TP_OPEN is posted before any received data can be. */
    if (tp->hs_len) {
        int n = lws_write(wsi, tp->hs + LWS_PRE, tp->hs_len, LWS_WRITE_TEXT);
        if (n < 0) return -1;
    }
    free(tp->hs); /* masked in place by lws_write: good for one use */
    tp->hs = NULL;
    if (sr__transport_post(&tp->base, SR_EV_TP_OPEN, NULL, 0) != 0) return -1;
    if (close_requested(tp)) {
        do_close(tp);
    } else if (sr__transport_pending(&tp->base))
        lws_callback_on_writable(wsi);
    live_run(tp); /* last: arms the timer, or fails tp when a timeout is due at once */
    return 0;
}

static int on_receive(ws_tp *tp, struct lws *wsi, const char *in, size_t len)
{
    int final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
    if (tp->text_only && lws_frame_is_binary(wsi)) {
        /* The transfer format decides the message type, the handshake
         * reply included. */
        fail(tp, SR_EPROTOCOL, 0,
             "the server sent a binary WebSocket message, but the JSON protocol uses text "
             "messages");
        return -1;
    }
    tp->io->rx_pass += len;
    /* The timer finds out lazily when its deadlines moved later. */
    sr__liveness_rx(&tp->live, sr__liveness_clock(),
                    len && sr__liveness_awaiting_handshake(&tp->live) &&
                        memchr(in, SR_RECORD_SEPARATOR, len) != NULL);
    if (tp->rx.len == 0 && (final || tp->base.rx_proto)) {
        /* Whole, or parsed where it is: the decoder keeps a message cut
         * between fragments, so they need not be joined first. */
        if (len && sr__transport_post_data(&tp->base, in, len) != 0) goto nomem;
    } else {
        if (sr__buf_append(&tp->rx, in, len) != 0) goto nomem;
        if (final || tp->rx.len >= RX_BATCH) {
            if (sr__transport_post_data(&tp->base, tp->rx.data, tp->rx.len) != 0) goto nomem;
            tp->rx.len = 0;
            if (tp->rx.cap > BUF_KEEP) sr__buf_free(&tp->rx);
        }
    }
    if (!tp->paused && sr__transport_backpressure(&tp->base)) {
        /* The host is behind: stop reading (never drop) until it drains
         * the queue; the server timeout does not run meanwhile. */
        tp->paused = 1;
        sr__liveness_pause(&tp->live, sr__liveness_clock());
        lws_rx_flow_control(wsi, 0);
    }
    return 0;
nomem:
    fail(tp, SR_ENOMEM, 0, "out of memory receiving a WebSocket message");
    return -1;
}

static int on_writeable(ws_tp *tp, struct lws *wsi)
{
    size_t n;
    if (tp->write_failed) return -1; /* a direct write failed (write_now) */
    n = sr__transport_take(&tp->base, &tp->wbuf);
    if (n) {
        /* Everything queued goes as one message: SignalR records delimit
         * themselves, so one write carries any number of them. */
        int w = lws_write(wsi, (unsigned char *)tp->wbuf.data + LWS_PRE, n,
                          tp->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (w < 0) return -1;
        sr__liveness_tx(&tp->live, sr__liveness_clock());
        tp->wbuf.len = 0;
        if (tp->wbuf.cap > BUF_KEEP) sr__buf_free(&tp->wbuf);
        if (sr__transport_pending(&tp->base) || tp->closing) lws_callback_on_writable(wsi);
        return 0;
    }
    if (tp->closing) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    }
    return 0;
}

static int add_headers(ws_tp *tp, struct lws *wsi, void *in, size_t len)
{
    unsigned char **p = (unsigned char **)in, *end = *p + len;
    size_t i;
    tp->request_sent = 1;
    for (i = 0; i < tp->nheaders; i++) {
        const ws_header *h = &tp->headers[i];
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)h->name,
                                        (const unsigned char *)h->value, (int)strlen(h->value), p,
                                        end)) {
            if (tp->dial)
                snprintf(tp->dial->err_hint, sizeof tp->dial->err_hint,
                         "request headers too large (at %.40s)", h->name);
            return -1;
        }
    }
    return 0;
}

/* OpenSSL's verdict on one certificate of the chain (x509 is the
 * X509_STORE_CTX, ok its preverify_ok); 0 keeps it, 1 fails the handshake
 * (lws's convention). Keeps OpenSSL's reason for the error message. */
static int verify_cb(ws_tp *tp, void *x509, int ok)
{
    X509_STORE_CTX *ctx = x509;
    int err = X509_STORE_CTX_get_error(ctx);
    if (tp->tls_no_verify) return 0; /* lws's ALLOW_* flags decide */
    if (ok && tp->check_ip && X509_STORE_CTX_get_error_depth(ctx) == 0 &&
        X509_check_ip_asc(X509_STORE_CTX_get_current_cert(ctx), tp->host, 0) != 1) {
        X509_STORE_CTX_set_error(ctx, X509_V_ERR_IP_ADDRESS_MISMATCH);
        err = X509_V_ERR_IP_ADDRESS_MISMATCH;
        ok = 0;
    }
    /* No dial once connected (a renegotiation): the failure is then a
     * lost connection, told as such. */
    if (!ok && tp->dial && !tp->dial->err_hint[0]) {
        const char *why = X509_verify_cert_error_string(err);
        if (err == X509_V_ERR_HOSTNAME_MISMATCH || err == X509_V_ERR_IP_ADDRESS_MISMATCH)
            snprintf(tp->dial->err_hint, sizeof tp->dial->err_hint,
                     "TLS certificate verification failed: %s (the certificate is not issued for "
                     "%s)",
                     why, tp->host);
        else
            snprintf(tp->dial->err_hint, sizeof tp->dial->err_hint,
                     "TLS certificate verification failed: %s (%s)", why,
                     tp->ca_file ? "not trusted by ca_file" : "not trusted by the system's CAs");
    }
    return ok ? 0 : 1;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    ws_tp *tp;
    char msg[600];
    const char *reason_text;
    (void)user;

    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
        struct sr_ws_io *io = lws_context_user(lws_get_context(wsi));
        if (io) drain_cmds(io, 0);
        return 0;
    }
    tp = lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return tp ? add_headers(tp, wsi, in, len) : -1;

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!tp || tp->state != ST_CONNECTING) return -1; /* orphan: released meanwhile */
        return on_established(tp, wsi);

    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!tp || tp->state != ST_OPEN) return -1;
        return on_receive(tp, wsi, in, len);

    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!tp || tp->state != ST_OPEN) return -1;
        return on_writeable(tp, wsi);

    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        return tp ? verify_cb(tp, user, (int)len) : 0;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (tp && len >= 2) {
            const unsigned char *b = in;
            size_t r = len - 2;
            tp->peer_code = (b[0] << 8) | b[1];
            if (r > MAX_PEER_REASON) r = MAX_PEER_REASON;
            /* Out of memory, the close is told without its reason. */
            free(tp->peer_reason);
            if ((tp->peer_reason = malloc(r + 1)) != NULL) {
                memcpy(tp->peer_reason, b + 2, r);
                tp->peer_reason[r] = '\0';
            }
        } else if (tp) {
            tp->peer_code = 1005; /* no status received */
        }
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        long status = 0;
        if (!tp) return 0;
        if (conn_error_text(tp, wsi, in, msg, sizeof msg, &status))
            wsi_ended(tp, wsi, SR_ETRANSPORT, 0, NULL); /* probe() says why */
        else
            wsi_ended(tp, wsi, SR_ETRANSPORT, status, msg);
        return 0;
    }

    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (!tp) return 0;
        reason_text = tp->peer_reason ? tp->peer_reason : "";
        if (tp->peer_code == 1002)
            /* lws 4.1 writes 1002 over a close code that is not valid on
             * the wire before we see it: either way the server broke the
             * protocol. */
            snprintf(msg, sizeof msg,
                     "WebSocket closed by the server (%s): status 1002 (protocol error), or a "
                     "close status that is not valid on the wire%s%s",
                     tp->where, reason_text[0] ? "; reason: " : "", reason_text);
        else if (tp->peer_code)
            snprintf(msg, sizeof msg, "WebSocket closed by the server (%s): status %d%s%s",
                     tp->where, tp->peer_code, reason_text[0] ? ", " : "", reason_text);
        else if (tp->state == ST_OPEN)
            snprintf(msg, sizeof msg, "WebSocket connection to %s lost", tp->where);
        else
            snprintf(msg, sizeof msg, "WebSocket connection to %s failed", tp->where);
        /* A normal closure (1000) is the server ending the connection on
         * purpose; anything else is a transport failure. */
        wsi_ended(tp, wsi, tp->peer_code == 1000 ? SR_ECLOSED : SR_ETRANSPORT, 0, msg);
        return 0;

    default:
        return 0;
    }
}

/* ------------------------------------------------------------- I/O thread */

/* Under io->mu, I/O thread: wait while the host owns the service. Returns
 * with the I/O thread the owner, or io->stop set. */
static void io_wait_turn(struct sr_ws_io *io)
{
    for (;;) {
        uint64_t now, until;
        struct timespec ts;
        if (io->stop) return;
        if (io->host_wants) {
            /* Hand over, and wake the host's wait so it starts driving. */
            io->host_wants = 0;
            io->host_owns = 1;
            io->host_left = sr__liveness_clock(); /* its grace starts now */
            io->deferred = io->woken;             /* a pipe write, if any, is the host's now */
            /* Not under io->mu: the loop's lock comes first, and a host
             * already in its drive gets this wake through io_wake, which
             * takes io->mu (that inversion hung a receive benchmark). */
            pthread_mutex_unlock(&io->mu);
            sr__loop_wake(io->loop);
            pthread_mutex_lock(&io->mu);
            continue; /* anything may have changed meanwhile */
        }
        if (!io->host_owns) return;
        now = sr__liveness_clock();
        if (!io->host_in_wait && now >= io->host_left + HOST_GRACE_US) {
            io->host_owns = 0; /* the host is busy elsewhere: take it back */
            return;
        }
        /* Both on CLOCK_MONOTONIC (io_cv is initialised with it). */
        until = io->host_in_wait ? now + HOST_LOOK_US : io->host_left + HOST_GRACE_US;
        ts.tv_sec = (time_t)(until / 1000000u);
        ts.tv_nsec = (long)(until % 1000000u) * 1000;
        pthread_cond_timedwait(&io->io_cv, &io->mu, &ts);
    }
}

static int io_make_context(struct sr_ws_io *io);

static void *io_main(void *arg)
{
    struct sr_ws_io *io = arg;
    ws_tp *tp;
    /* The context, and with it the client TLS context (OpenSSL loading
     * the CA bundle: tens of ms), is made here, not on the host thread. */
    int made = io_make_context(io);
    pthread_mutex_lock(&io->mu);
    io->ready = made;
    if (!made) io->stop = 1;
    pthread_mutex_unlock(&io->mu);
    for (;;) {
        int stop, deferred;
        pthread_mutex_lock(&io->mu);
        io_wait_turn(io);
        stop = io->stop;
        deferred = io->deferred;
        io->deferred = 0;
        pthread_mutex_unlock(&io->mu);
        if (stop) break;
        if (deferred) drain_cmds(io, 1);
        if (lws_service(io->ctx, 0) < 0) break;
    }

    /* Shut down: nobody may queue or wake us any more, then let go of
     * every transport and close every socket. */
    pthread_mutex_lock(&io->mu);
    io->dead = 1;
    pthread_mutex_unlock(&io->mu);
    for (;;) {
        pthread_mutex_lock(&io->mu);
        tp = io->cmd_head;
        if (tp) {
            io->cmd_head = tp->cmd_next;
            tp->queued = 0;
            tp->cmds = 0;
        }
        if (!io->cmd_head) io->cmd_tail = NULL;
        pthread_mutex_unlock(&io->mu);
        if (!tp) break;
        if (tp->state == ST_IDLE) {
            /* never started: its CMD_OPEN held the I/O ref; when the
             * context could not be made, it says why */
            if (!made && !(tp->cmds & CMD_RELEASE)) {
                char msg[512];
                snprintf(msg, sizeof msg, "WebSocket connection to %s failed: %s", tp->where,
                         io->init_err);
                fail(tp, SR_ETRANSPORT, 0, msg);
            } else {
                detach(tp);
            }
        }
        sr__transport_unref(&tp->base);
    }
    while (io->all)
        detach(io->all);
    if (io->ctx) {
        pthread_mutex_lock(&g_ctx_mu);
        lws_context_destroy(io->ctx);
        g_live_ctx--;
        pthread_mutex_unlock(&g_ctx_mu);
    }
    io->ctx = NULL;
    while (io->vhosts) {
        ws_vhost *v = io->vhosts;
        io->vhosts = v->next;
        vhost_free(v);
    }
    sr__json_fast_thread_done(); /* its JSON reader, if it parsed */
    return NULL;
}

static void io_free(void *self);
static void io_resume(void *self);

static void drive_timeout_cb(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* its only job was to end the poll */
}

/* Host thread (loop.h): serve lws here for one pass, up to timeout_ms. */
static int io_drive(void *self, int timeout_ms)
{
    struct sr_ws_io *io = self;
    int deferred, r;
    uint64_t now;
    pthread_mutex_lock(&io->mu);
    if (io->dead || io->stop || !io->host_owns) {
        /* handed over after the I/O thread's pass */
        if (!io->dead && !io->stop && timeout_ms != 0 && !io->host_wants &&
            sr__liveness_clock() >= io->host_backoff)
            io->host_wants = 1;
        pthread_mutex_unlock(&io->mu);
        return 0;
    }
    if (timeout_ms == 0 && !io->deferred) {
        /* A host polling without waiting past its grace gives the sockets
         * back now, rather than when the I/O thread next looks. */
        if (sr__liveness_clock() >= io->host_left + HOST_GRACE_US) {
            io->host_owns = 0;
            pthread_cond_signal(&io->io_cv);
        }
        pthread_mutex_unlock(&io->mu);
        return 0; /* nothing to flush */
    }
    io->host_in_wait = 1;
    deferred = io->deferred;
    io->deferred = 0;
    pthread_mutex_unlock(&io->mu);
    if (deferred) drain_cmds(io, 1);
    if (timeout_ms > 0)
        lws_sul_schedule(io->ctx, 0, &io->sul_drive, drive_timeout_cb,
                         (lws_usec_t)timeout_ms * LWS_US_PER_MS);
    io->rx_pass = 0;
    /* A negative timeout makes lws poll without waiting. */
    r = lws_service(io->ctx, timeout_ms == 0 ? -1 : 0);
    lws_sul_cancel(&io->sul_drive);
    now = sr__liveness_clock();
    pthread_mutex_lock(&io->mu);
    io->host_in_wait = 0;
    io->host_left = now;
    if (now - io->rx_window_start > HOST_FLOOD_WINDOW_US) {
        io->rx_window_start = now;
        io->rx_window = 0;
    }
    io->rx_window += io->rx_pass;
    if (io->rx_window >= HOST_FLOOD_BYTES) {
        /* The same flood when it comes back within the last while again. */
        int again = io->backoff_us && now < io->host_backoff + io->backoff_us;
        io->backoff_us = !again                                     ? HOST_BACKOFF_US
                         : io->backoff_us * 2 > HOST_BACKOFF_MAX_US ? HOST_BACKOFF_MAX_US
                                                                    : io->backoff_us * 2;
        io->rx_window = 0;
        io->host_owns = 0;
        io->host_backoff = now + io->backoff_us;
        pthread_cond_signal(&io->io_cv);
    }
    pthread_mutex_unlock(&io->mu);
    (void)r; /* < 0 only while the context is destroyed, which needs io_free */
    return 1;
}

static void io_wake(void *self)
{
    struct sr_ws_io *io = self;
    pthread_mutex_lock(&io->mu);
    if (io->ready && !io->dead) lws_cancel_service(io->ctx);
    pthread_mutex_unlock(&io->mu);
}

/* The resolver's locks. 0, or -1 with nothing left initialised. */
/* A condition variable whose timed waits run on CLOCK_MONOTONIC. 0 or -1. */
static int cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int ok;
    if (pthread_condattr_init(&ca) != 0) return -1;
    ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 && pthread_cond_init(cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    return ok ? 0 : -1;
}

static int resolver_init(struct sr_ws_io *io)
{
    int ok = 0;
    if (pthread_mutex_init(&io->rmu, NULL) != 0) return -1;
    if (pthread_cond_init(&io->rjob, NULL) == 0) {
        /* The test delay waits on the monotonic clock. */
        if (cond_init_monotonic(&io->rwake) == 0)
            ok = 1;
        else
            pthread_cond_destroy(&io->rjob);
    }
    if (!ok) pthread_mutex_destroy(&io->rmu);
    return ok ? 0 : -1;
}

static void resolver_destroy(struct sr_ws_io *io)
{
    pthread_cond_destroy(&io->rjob);
    pthread_cond_destroy(&io->rwake);
    pthread_mutex_destroy(&io->rmu);
}

/* I/O thread, first thing: the context and its default client vhost. 1,
 * or 0 with io->init_err set. */
static int io_make_context(struct sr_ws_io *io)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.gid = -1;
    info.uid = -1;
    info.user = io;
    info.pt_serv_buf_size = SERV_BUF_SIZE;
    pthread_mutex_lock(&g_ctx_mu);
    if (g_live_ctx == 0) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    io->ctx = lws_create_context(&info);
    if (io->ctx) g_live_ctx++;
    pthread_mutex_unlock(&g_ctx_mu);
    if (!io->ctx) {
        snprintf(io->init_err, sizeof io->init_err, "cannot create the libwebsockets context");
        return 0;
    }
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = ws_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.vhost_name = "sr-default";
    info.timeout_secs = CONNECT_TIMEOUT_SECS;
    info.connect_timeout_secs = CONNECT_TIMEOUT_SECS;
    info.http_proxy_address = NO_PROXY_ADDRESS;
    io->vh_default = lws_create_vhost(io->ctx, &info);
    if (!io->vh_default) {
        snprintf(io->init_err, sizeof io->init_err, "cannot create the libwebsockets client vhost");
        return 0;
    }
    return 1;
}

static int io_new(sr_loop *loop, sr_loop_service *svc, sr_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct sr_ws_io *io = calloc(1, sizeof *io);

    if (!io) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        return -1;
    }
    io->loop = loop;
    if (pthread_mutex_init(&io->mu, NULL) != 0) {
        free(io);
        sr__error_set(err, SR_ENOMEM, "%s", "pthread_mutex_init failed");
        return -1;
    }
    if (resolver_init(io) != 0) {
        pthread_mutex_destroy(&io->mu);
        free(io);
        sr__error_set(err, SR_ENOMEM, "%s", "pthread_cond_init failed");
        return -1;
    }
    if (cond_init_monotonic(&io->io_cv) != 0) {
        resolver_destroy(io);
        pthread_mutex_destroy(&io->mu);
        free(io);
        sr__error_set(err, SR_ENOMEM, "%s", "pthread_cond_init failed");
        return -1;
    }
    pthread_once(&once, log_setup);
    {
        const char *delay = getenv(RESOLVE_DELAY_ENV);
        io->delay_ms = delay && *delay ? atol(delay) : 0;
    }

    if (pthread_create(&io->thread, NULL, io_main, io) != 0) {
        sr__error_set(err, SR_ETRANSPORT, "%s", "cannot start the WebSocket thread");
        goto fail;
    }
    svc->self = io;
    svc->resume = io_resume;
    svc->free = io_free;
    svc->drive = io_drive;
    svc->wake = io_wake;
    return 0;
fail:
    resolver_destroy(io);
    pthread_cond_destroy(&io->io_cv);
    pthread_mutex_destroy(&io->mu);
    free(io);
    return -1;
}

static void io_free(void *self)
{
    struct sr_ws_io *io = self;
    pthread_mutex_lock(&io->mu);
    io->stop = 1;
    if (!io->dead && io->ready) lws_cancel_service(io->ctx);
    pthread_cond_signal(&io->io_cv);
    pthread_mutex_unlock(&io->mu);
    /* The I/O thread first: it starts resolver threads, and it lets go of
     * every transport. Lookups finishing meanwhile find it dead. */
    pthread_join(io->thread, NULL);
    resolver_stop(io);
    resolver_destroy(io);
    pthread_cond_destroy(&io->io_cv);
    pthread_mutex_destroy(&io->mu);
    free(io);
}

static void io_resume(void *self)
{
    struct sr_ws_io *io = self;
    pthread_mutex_lock(&io->mu);
    io->resume = 1;
    if (!io->dead) wake_locked(io);
    pthread_mutex_unlock(&io->mu);
}

/* ------------------------------------------------------- the kind's hooks */

static void ws_kick(sr_transport *tp)
{
    cmd(((ws_tp *)tp)->io, (ws_tp *)tp, CMD_WRITE);
}

static void ws_close(sr_transport *tp)
{
    cmd(((ws_tp *)tp)->io, (ws_tp *)tp, CMD_CLOSE);
}

static void ws_release(sr_transport *tp)
{
    cmd(((ws_tp *)tp)->io, (ws_tp *)tp, CMD_RELEASE);
}

static void ws_destroy(sr_transport *base)
{
    ws_tp *tp = (ws_tp *)base;
    size_t i;
    free(tp->host);
    free(tp->host_hdr);
    free(tp->path);
    free(tp->where);
    free(tp->ca_file);
    free(tp->cert_file);
    free(tp->key_file);
    sr__proxy_free(&tp->proxy);
    free(tp->connect_host);
    for (i = 0; i < tp->nheaders; i++) {
        free(tp->headers[i].name);
        free(tp->headers[i].value);
    }
    free(tp->headers);
    free(tp->hs);
    free(tp->ping);
    free(tp->dial);
    free(tp->peer_reason);
    sr__buf_free(&tp->wbuf);
    sr__buf_free(&tp->rx);
}

static const sr_transport_ops ws_ops = {"WebSockets", ws_kick, ws_close, ws_release, ws_destroy};

/* --------------------------------------------------------- construction */

/* ws://host[:port][/path][?query][#fragment]; also http(s), mapped. */
static int parse_url(ws_tp *tp, const char *url, sr_error *err)
{
    const char *p, *hs, *he, *pe;
    size_t n;
    int defport;

    if (strncasecmp(url, "ws://", 5) == 0 || strncasecmp(url, "http://", 7) == 0)
        tp->tls = 0;
    else if (strncasecmp(url, "wss://", 6) == 0 || strncasecmp(url, "https://", 8) == 0)
        tp->tls = 1;
    else
        goto bad;
    p = strstr(url, "://") + 3;
    defport = tp->tls ? 443 : 80;
    tp->port = defport;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he) goto bad;
        p = he + 1;
    } else {
        hs = p;
        he = p + strcspn(p, ":/?#");
        p = he;
    }
    if (he == hs || memchr(hs, '@', (size_t)(he - hs)))
        goto bad; /* empty host, or user@host (not supported) */
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port <= 0 || port > 65535 || (*end && !strchr("/?#", *end))) goto bad;
        tp->port = (int)port;
        p = end;
    }
    n = (size_t)(he - hs);
    tp->host = malloc(n + 1);
    if (!tp->host) goto nomem;
    memcpy(tp->host, hs, n);
    tp->host[n] = '\0';

    pe = p + strcspn(p, "#");
    n = (size_t)(pe - p);
    tp->path = malloc(n + 2);
    if (!tp->path) goto nomem;
    if (*p != '/')
        tp->path[0] = '/', memcpy(tp->path + 1, p, n), tp->path[n + 1] = '\0';
    else
        memcpy(tp->path, p, n), tp->path[n] = '\0';

    n = strlen(tp->host) + 16;
    tp->host_hdr = malloc(n);
    tp->where = malloc(n + strlen(tp->path) + 16);
    if (!tp->host_hdr || !tp->where) goto nomem;
    {
        int v6 = strchr(tp->host, ':') != NULL;
        tp->check_ip = v6;
        if (tp->port == defport)
            snprintf(tp->host_hdr, n, v6 ? "[%s]" : "%s", tp->host);
        else
            snprintf(tp->host_hdr, n, v6 ? "[%s]:%d" : "%s:%d", tp->host, tp->port);
        sprintf(tp->where, v6 ? "%s://[%s]:%d%.*s" : "%s://%s:%d%.*s", tp->tls ? "wss" : "ws",
                tp->host, tp->port, (int)strcspn(tp->path, "?"), tp->path);
    }
    return 0;
bad:
    sr__error_set(err, SR_EUSAGE, "invalid WebSocket URL: %s", url);
    return -1;
nomem:
    sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
    return -1;
}

/* The proxy for this connection (proxy.c: the option, else the
 * environment as libcurl reads it for the HTTP requests). 0, or -1 with
 * err set; nothing in err ever holds the proxy's credentials. */
static int pick_proxy(ws_tp *tp, const sr_transport_cfg *cfg, sr_error *err)
{
    char *url = NULL, why[300];
    int rc;
    size_t n;
    if (sr__proxy_pick(cfg->url, cfg->proxy, &url) != 0) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        return -1;
    }
    if (!url) return 0;
    rc = sr__proxy_parse(url, &tp->proxy, why, sizeof why);
    free(url);
    if (rc == 0 && tp->proxy.userpass && strlen(tp->proxy.userpass) > MAX_PROXY_USERPASS) {
        snprintf(why, sizeof why,
                 "the credentials for the proxy %s are %zu bytes (user:password); libwebsockets "
                 "4.1 sends at most %d",
                 tp->proxy.shown, strlen(tp->proxy.userpass), MAX_PROXY_USERPASS);
        rc = -1;
    } else if (rc == 0 && strlen(tp->host) > MAX_CONNECT_HOST) {
        snprintf(why, sizeof why,
                 "the host name is %zu bytes; libwebsockets 4.1 asks the proxy %s for at most %d",
                 strlen(tp->host), tp->proxy.shown, MAX_CONNECT_HOST);
        rc = -1;
    }
    if (rc != 0) {
        if (err) {
            sr__error_set(err, SR_ETRANSPORT, "%s", "");
            snprintf(err->message, sizeof err->message, "WebSocket connection to %s failed: %s",
                     tp->where, why);
        }
        return -1;
    }
    n = strlen(tp->host) + 3;
    if (!(tp->connect_host = malloc(n))) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        return -1;
    }
    snprintf(tp->connect_host, n, strchr(tp->host, ':') ? "[%s]" : "%s", tp->host);
    return 0;
}

static int copy_cfg(ws_tp *tp, const sr_transport_cfg *cfg)
{
    size_t i;
    tp->binary = cfg->binary;
    tp->text_only = cfg->text_only;
    tp->tls_no_verify = cfg->tls && cfg->tls->insecure;
    /* No ping bytes, no pings. */
    sr__liveness_init(&tp->live, cfg->ping && cfg->ping_len ? cfg->keepalive_ms : 0,
                      cfg->server_timeout_ms, cfg->handshake_timeout_ms);
    if (cfg->tls && ((cfg->tls->ca_file && !(tp->ca_file = strdup(cfg->tls->ca_file))) ||
                     (cfg->tls->cert_file && !(tp->cert_file = strdup(cfg->tls->cert_file))) ||
                     (cfg->tls->key_file && !(tp->key_file = strdup(cfg->tls->key_file)))))
        return -1;
    if (cfg->nheaders) {
        tp->headers = calloc(cfg->nheaders, sizeof *tp->headers);
        if (!tp->headers) return -1;
        tp->nheaders = cfg->nheaders;
        for (i = 0; i < cfg->nheaders; i++) {
            const char *name = cfg->headers[i].name ? cfg->headers[i].name : "";
            const char *value = cfg->headers[i].value ? cfg->headers[i].value : "";
            size_t n = strlen(name);
            tp->headers[i].name = malloc(n + 2);
            tp->headers[i].value = strdup(value);
            if (!tp->headers[i].name || !tp->headers[i].value) return -1;
            memcpy(tp->headers[i].name, name, n);
            tp->headers[i].name[n] = '\0';
            if (n == 0 || name[n - 1] != ':') strcat(tp->headers[i].name, ":");
        }
    }
    tp->hs_len = cfg->handshake ? cfg->handshake_len : 0;
    tp->hs = malloc(LWS_PRE + tp->hs_len + 1);
    if (!tp->hs) return -1;
    if (tp->hs_len) memcpy(tp->hs + LWS_PRE, cfg->handshake, tp->hs_len);
    tp->ping_len = cfg->ping ? cfg->ping_len : 0;
    if (tp->ping_len) {
        if (!(tp->ping = malloc(tp->ping_len))) return -1;
        memcpy(tp->ping, cfg->ping, tp->ping_len);
    }
    return 0;
}

sr_transport *sr__ws_transport_new(sr_loop *loop, const sr_transport_cfg *cfg,
                                   const sr_transport_upcalls *up, void *ud, sr_error *err)
{
    struct sr_ws_io *io;
    ws_tp *tp;

    if (!loop || !cfg || !cfg->url) {
        sr__error_set(err, SR_EUSAGE, "%s", "WebSocket transport: loop and url are required");
        return NULL;
    }
    tp = calloc(1, sizeof *tp);
    if (!tp) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        return NULL;
    }
    if (sr__transport_init(&tp->base, &ws_ops, loop, up, ud, LWS_PRE) != 0) {
        free(tp);
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        return NULL;
    }
    tp->state = ST_IDLE;
    sr__transport_set_decoder(&tp->base, cfg);
    if (parse_url(tp, cfg->url, err) != 0) goto fail;
    if (strlen(tp->path) > MAX_PATH_LEN) {
        /* lws 4.1 writes the request line into 2,048 bytes and cuts the
         * rest, which the server then refuses; say so instead (the URL holds
         * the connection token, so it is not shown). */
        char why[200];
        snprintf(why, sizeof why,
                 "%zu bytes (a long connection token); libwebsockets 4.1 sends at "
                 "most %d",
                 strlen(tp->path), MAX_PATH_LEN);
        sr__error_set(err, SR_ETRANSPORT,
                      "the WebSocket URL's path and query are %s, so this server needs Server-Sent "
                      "Events or Long Polling",
                      why);
        goto fail;
    }
    if (pick_proxy(tp, cfg, err) != 0) goto fail;
    if (copy_cfg(tp, cfg) != 0) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        goto fail;
    }
    io = sr__loop_service(loop, &io_key, io_new, err);
    if (!io) goto fail;
    tp->io = io;
    sr__transport_ref(&tp->base); /* the I/O side's */
    if (cmd(io, tp, CMD_OPEN) != 0) {
        sr__transport_unref(&tp->base);
        sr__error_set(err, SR_ETRANSPORT, "%s", "the WebSocket thread has stopped");
        goto fail;
    }
    return &tp->base;
fail:
    sr__transport_unref(&tp->base);
    return NULL;
}
