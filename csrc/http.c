/*
 * http.c - the loop's HTTP thread: one libcurl multi handle driven by one
 * thread (curl_multi_poll, woken by curl_multi_wakeup), registered as a
 * loop service, and the one-shot and streaming requests of http.h on top
 * of it.
 *
 * The thread is general so SSE and Long Polling can run their long
 * transfers on it:
 *  - Work reaches the thread as jobs (a function run on the thread), queued
 *    under mu. Jobs run in FIFO order before every curl_multi_perform.
 *  - Every easy handle in the multi is an `xfer` (CURLOPT_PRIVATE) with its
 *    own completion function, called on the thread after the handle left the
 *    multi. A write callback that returns CURL_WRITEFUNC_PAUSE under
 *    backpressure marks its xfer paused; the service's resume (the host
 *    drained the queue) sets a flag and wakes the thread, which unpauses
 *    them before its next curl_multi_perform: curl_easy_pause must run on
 *    the thread that drives the multi.
 *  - Timers (sr_http_timer) fire on the thread after each pass's transfer
 *    progress; the earliest one bounds curl_multi_poll's wait, so a kind's
 *    keepalive and timeouts run while the host does not call in.
 *  - http_io.h exposes all of this, the option setup every request shares
 *    (sr__http_setup) and the host commands of a transport (sr_http_cmds:
 *    bits and one job) to the transport kinds.
 *
 * Request lifetime (refs, atomic): the host holds one from
 * sr__http_request until its done ran or it cancelled; the thread holds one
 * while the transfer is queued or in the multi and hands it to the done
 * event when the transfer ends; every headers or data event of a stream
 * holds one; a cancel job holds the host's while it is queued. The last one
 * frees the request (on either thread). The easy handle is created and configured on the host (so
 * bad options fail at once), then only touched by the HTTP thread.
 */
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "http.h"
#include "http_io.h"
#include "json_fast.h"
#include "liveness.h"
#include "loop.h"
#include "transport_kind.h"

#define DEFAULT_MAX_BODY (1u << 20)
#define MAX_REDIRECTS 10L

/* ------------------------------------------------------- the HTTP thread */

typedef sr_http_job job;
typedef sr_http_xfer xfer;

struct sr_http_io {
    sr_loop *loop;
    CURLM *multi;
    pthread_t thread;

    pthread_mutex_t mu;
    job *jobs, *jobs_tail; /* mu */
    int stop;              /* mu */
    int resume;            /* mu */

    xfer *active;          /* thread only: every xfer in the multi */
    sr_http_timer *timers; /* thread only: the armed timers, unsorted */
    char user_agent[80];
};

/* The loop service key: its address identifies the HTTP thread. */
static const char io_key;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
/* libcurl's version, read once: curl_version_info writes static buffers, so
 * loops created on several threads at once must not call it concurrently. */
static char curl_version_str[32] = "?";

/* Never paired with curl_global_cleanup: other libraries in the process may
 * use libcurl too, and cleanup is not safe while they do. */
static void curl_init(void)
{
    Dl_info info;
    curl_version_info_data *vi;
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    vi = curl_version_info(CURLVERSION_NOW);
    if (vi && vi->version) snprintf(curl_version_str, sizeof curl_version_str, "%s", vi->version);
    /* libcurl's threaded resolver detaches a lookup thread that is still
     * blocked in getaddrinfo when its request is cancelled, and that thread
     * outlives sr_loop_free. It runs only libcurl and libc code, so keep
     * libcurl mapped for the life of the process: a host that unloads our
     * Lua module (lua_close) must not unmap code such a thread still runs. */
    if (dladdr((void *)curl_version, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
}

int sr__http_curl_init(void)
{
    pthread_once(&curl_once, curl_init);
    return curl_init_rc == CURLE_OK ? 0 : -1;
}

void sr__http_io_submit(sr_http_io *io, job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&io->mu);
    if (io->jobs_tail)
        io->jobs_tail->next = j;
    else
        io->jobs = j;
    io->jobs_tail = j;
    pthread_mutex_unlock(&io->mu);
    curl_multi_wakeup(io->multi);
}

CURLMcode sr__http_xfer_add(sr_http_io *io, xfer *x)
{
    CURLMcode mc;
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (void *)x);
    mc = curl_multi_add_handle(io->multi, x->easy);
    if (mc != CURLM_OK) return mc;
    x->prev = NULL;
    x->next = io->active;
    if (io->active) io->active->prev = x;
    io->active = x;
    x->paused = 0;
    return CURLM_OK;
}

void sr__http_xfer_remove(sr_http_io *io, xfer *x)
{
    curl_multi_remove_handle(io->multi, x->easy);
    if (x->prev)
        x->prev->next = x->next;
    else
        io->active = x->next;
    if (x->next) x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

static void resume_paused(sr_http_io *io)
{
    xfer *x;
    for (x = io->active; x; x = x->next) {
        if (x->paused) {
            x->paused = 0;
            if (x->resumed) x->resumed(io, x);
            curl_easy_pause(x->easy, CURLPAUSE_CONT);
        }
    }
}

/* ------------------------------------------------------------- timers */

/* Timers are few (one per SSE or Long Polling transport) and fire rarely,
 * so an unsorted list scanned per pass is enough. */

void sr__http_timer_arm(sr_http_io *io, sr_http_timer *t, uint64_t due)
{
    t->due = due;
    if (t->armed) return;
    t->armed = 1;
    t->prev = NULL;
    t->next = io->timers;
    if (io->timers) io->timers->prev = t;
    io->timers = t;
}

void sr__http_timer_cancel(sr_http_io *io, sr_http_timer *t)
{
    if (!t->armed) return;
    if (t->prev)
        t->prev->next = t->next;
    else
        io->timers = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    t->armed = 0;
}

/* Fire what is due, one at a time (a timer may arm or cancel others), and
 * return the poll timeout until the earliest one left, at most max_ms. */
static int run_timers(sr_http_io *io, int max_ms)
{
    uint64_t now = sr__liveness_clock(), first = 0;
    sr_http_timer *t;
    for (;;) {
        sr_http_timer *due = NULL;
        for (t = io->timers; t; t = t->next)
            if (t->due <= now && (!due || t->due < due->due)) due = t;
        if (!due) break;
        sr__http_timer_cancel(io, due);
        due->fire(io, due);
        now = sr__liveness_clock();
    }
    for (t = io->timers; t; t = t->next)
        if (!first || t->due < first) first = t->due;
    if (first && first - now < (uint64_t)max_ms * 1000u)
        return (int)((first - now + 999u) / 1000u); /* round up: never wake early */
    return max_ms;
}

static void *io_main(void *arg)
{
    sr_http_io *io = arg;
    for (;;) {
        job *j;
        int stop, resume, running, wait_ms;
        CURLMsg *msg;
        pthread_mutex_lock(&io->mu);
        j = io->jobs;
        io->jobs = io->jobs_tail = NULL;
        stop = io->stop;
        resume = io->resume;
        io->resume = 0;
        pthread_mutex_unlock(&io->mu);
        while (j) {
            job *next = j->next;
            j->run(io, j); /* may free or resubmit j */
            j = next;
        }
        if (stop) break;
        if (resume) resume_paused(io);
        curl_multi_perform(io->multi, &running);
        while ((msg = curl_multi_info_read(io->multi, &running)) != NULL) {
            xfer *x = NULL;
            CURL *easy = msg->easy_handle;
            CURLcode rc = msg->data.result;
            if (msg->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
            sr__http_xfer_remove(io, x);
            x->complete(io, x, rc);
        }
        /* After the transfers' progress, so a timer armed from a write
         * callback (due now) runs in the same pass. */
        wait_ms = run_timers(io, 1000);
        /* Returns early for curl's own timeouts (a handle added by a timer
         * or a completion is due at once) and curl_multi_wakeup. */
        curl_multi_poll(io->multi, NULL, 0, wait_ms, NULL);
    }
    /* Stopping: the host is gone (sr_loop_free), so transfers still running
     * end as aborted. Their completion posts events the loop discards. */
    while (io->active) {
        xfer *x = io->active;
        sr__http_xfer_remove(io, x);
        x->complete(io, x, CURLE_ABORTED_BY_CALLBACK);
    }
    while (io->timers)
        sr__http_timer_cancel(io, io->timers);
    sr__json_fast_thread_done(); /* its JSON reader, if it parsed */
    return NULL;
}

static void io_free(void *self);
static void io_resume(void *self);

static int io_new(sr_loop *loop, sr_loop_service *svc, sr_error *err)
{
    sr_http_io *io;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        sr__error_set(err, SR_ETRANSPORT, "%s", curl_easy_strerror(curl_init_rc));
        return -1;
    }
    io = calloc(1, sizeof *io);
    if (!io) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        return -1;
    }
    io->loop = loop;
    /* With AsynchDNS (Debian's build: the threaded resolver) name lookups
     * never stall this thread; without it they would stall only this
     * thread, never the host. */
    snprintf(io->user_agent, sizeof io->user_agent, "signalr-lua/%s (libcurl/%s)", SR_VERSION,
             curl_version_str);
    io->multi = curl_multi_init();
    if (!io->multi) {
        free(io);
        sr__error_set(err, SR_ENOMEM, "%s", "curl_multi_init failed");
        return -1;
    }
    pthread_mutex_init(&io->mu, NULL);
    if (pthread_create(&io->thread, NULL, io_main, io) != 0) {
        pthread_mutex_destroy(&io->mu);
        curl_multi_cleanup(io->multi);
        free(io);
        sr__error_set(err, SR_ENOMEM, "%s", "cannot start the HTTP thread");
        return -1;
    }
    svc->self = io;
    svc->resume = io_resume;
    svc->free = io_free;
    return 0;
}

static void io_free(void *self)
{
    sr_http_io *io = self;
    pthread_mutex_lock(&io->mu);
    io->stop = 1;
    pthread_mutex_unlock(&io->mu);
    curl_multi_wakeup(io->multi);
    pthread_join(io->thread, NULL);
    curl_multi_cleanup(io->multi);
    pthread_mutex_destroy(&io->mu);
    free(io);
}

sr_http_io *sr__http_io_get(sr_loop *loop, sr_error *err)
{
    if (!loop) {
        sr__error_set(err, SR_EUSAGE, "%s", "no loop");
        return NULL;
    }
    return sr__loop_service(loop, &io_key, io_new, err);
}

sr_loop *sr__http_io_loop(const sr_http_io *io)
{
    return io->loop;
}

static void io_resume(void *self)
{
    sr_http_io *io = self;
    pthread_mutex_lock(&io->mu);
    io->resume = 1;
    pthread_mutex_unlock(&io->mu);
    curl_multi_wakeup(io->multi);
}

/* --------------------------------------------------------------- requests */

/* Event types of a request, in the order they are posted. */
enum { EV_DONE, EV_HEADERS, EV_DATA };

struct sr_http_req {
    xfer x;        /* first: CURLOPT_PRIVATE points here */
    int refs;      /* atomic */
    int cancelled; /* atomic: set by the host, read by the thread */
    int finished;  /* host only: done is running or ran */
    sr_http_io *io;
    sr_http_done_fn done;
    sr_http_headers_fn on_headers; /* streams only */
    sr_http_data_fn on_data;       /* NULL: one-shot */
    void *ud;
    job add_job, cancel_job;
    struct curl_slist *headers;
    char *what;       /* "GET http://host/path" for messages (no query: it may hold a token) */
    sr_event *oom_ev; /* posted instead when the real event cannot be allocated */
    sr_buf body;      /* thread only */
    size_t max_body;
    int too_large;
    int saw_location;   /* thread only: the header block being read has one */
    int headers_posted; /* thread only */
    char errbuf[CURL_ERROR_SIZE];
};

static void req_dispatch(sr_event *ev);
static void req_discard(sr_event *ev);

#define REQ_OF(ptr, member) ((sr_http_req *)(void *)((char *)(ptr)-offsetof(sr_http_req, member)))

static void req_unref(sr_http_req *req)
{
    if (__atomic_sub_fetch(&req->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    sr__http_xfer_cleanup(&req->x);
    curl_slist_free_all(req->headers);
    sr__event_free(req->oom_ev);
    sr__buf_free(&req->body);
    free(req->what);
    free(req);
}

static size_t req_write(char *p, size_t size, size_t n, void *ud)
{
    sr_http_req *req = ud;
    size_t len = size * n;
    if (len > req->max_body - req->body.len) {
        req->too_large = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (sr__buf_append(&req->body, p, len) != 0) return 0;
    return len;
}

/* Thread: post one event of a stream; it holds a reference of its own.
 * -1 when it cannot be allocated. */
static int stream_post(sr_http_req *req, int type, const char *p, size_t len)
{
    long status = 0;
    sr_event *ev = sr__event_new(req_dispatch, req_discard, req, type, p, len);
    if (!ev) return -1;
    curl_easy_getinfo(req->x.easy, CURLINFO_RESPONSE_CODE, &status);
    ev->status = status;
    __atomic_add_fetch(&req->refs, 1, __ATOMIC_ACQ_REL);
    sr__loop_post(req->io->loop, ev);
    return 0;
}

/* Thread: one piece of a stream's body. Congestion is checked before
 * posting, so a paused piece (libcurl hands it over again on unpause) was
 * never posted: nothing is lost or doubled, and the queue goes over its
 * high mark by one piece at most. */
static size_t stream_write(char *p, size_t size, size_t n, void *ud)
{
    sr_http_req *req = ud;
    size_t len = size * n;
    if (len == 0) return 0;
    if (sr__loop_congested(req->io->loop)) {
        req->x.paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    return stream_post(req, EV_DATA, p, len) == 0 ? len : 0; /* 0: CURLE_WRITE_ERROR */
}

long sr__http_final_status(xfer *x, const char *p, size_t len, int *saw_location)
{
    long status = 0;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        *saw_location = 0;
    } else if (len >= 9 && strncasecmp(p, "Location:", 9) == 0) {
        *saw_location = 1;
    } else if ((len == 2 && p[0] == '\r') || (len == 1 && p[0] == '\n')) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || (status / 100 == 3 && *saw_location)) status = 0;
    }
    return status;
}

/* Thread: one header line of a stream. The blank line ends a block; only
 * the final response's block is reported (sr__http_final_status). */
static size_t stream_header(char *p, size_t size, size_t n, void *ud)
{
    sr_http_req *req = ud;
    size_t len = size * n;
    if (!sr__http_final_status(&req->x, p, len, &req->saw_location) || req->headers_posted)
        return len;
    req->headers_posted = 1;
    if (req->on_headers && stream_post(req, EV_HEADERS, NULL, 0) != 0) return 0;
    return len;
}

/* Thread: the transfer ended; hand the thread's reference to the event. */
static void req_complete(sr_http_io *io, xfer *x, CURLcode rc)
{
    sr_http_req *req = (sr_http_req *)x;
    long status = 0;
    int code = SR_OK;
    char msg[CURL_ERROR_SIZE + 600];
    sr_event *ev;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    msg[0] = '\0';
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        code = SR_ECANCELED;
        snprintf(msg, sizeof msg, "%s: aborted (event loop freed)", req->what);
    } else if (req->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        code = SR_EPROTOCOL;
        snprintf(msg, sizeof msg, "%s: response too large (over %zu bytes)", req->what,
                 req->max_body);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        code = SR_ETIMEOUT;
        snprintf(msg, sizeof msg, "%s: %s", req->what,
                 req->errbuf[0] ? req->errbuf : curl_easy_strerror(rc));
    } else if (rc == CURLE_WRITE_ERROR) {
        code = SR_ENOMEM;
        snprintf(msg, sizeof msg, "%s: out of memory reading the response", req->what);
    } else if (rc != CURLE_OK) {
        char why[CURL_ERROR_SIZE + 160];
        code = SR_ETRANSPORT;
        sr__http_strerror(x->easy, rc, req->errbuf, why, sizeof why);
        snprintf(msg, sizeof msg, "%s: %s", req->what, why);
    }
    /* The easy handle is done; free it here, on the thread that used it. */
    sr__http_xfer_cleanup(x);

    ev = code == SR_OK
             ? sr__event_new(req_dispatch, req_discard, req, EV_DONE, req->body.data, req->body.len)
             : sr__event_new(req_dispatch, req_discard, req, EV_DONE, NULL, 0);
    if (ev && msg[0] && !(ev->text = strdup(msg))) {
        sr__event_free(ev);
        ev = NULL;
    }
    sr__buf_free(&req->body);
    if (!ev) {
        ev = req->oom_ev;
        req->oom_ev = NULL;
        code = SR_ENOMEM;
    }
    ev->code = code;
    ev->status = status;
    sr__loop_post(io->loop, ev);
}

static void req_add_run(sr_http_io *io, job *j)
{
    sr_http_req *req = REQ_OF(j, add_job);
    /* Cancelled before it started: the cancel job (queued after this one)
     * finds it inactive. Drop the thread's reference here. */
    if (__atomic_load_n(&req->cancelled, __ATOMIC_ACQUIRE)) {
        req_unref(req);
        return;
    }
    if (sr__http_xfer_add(io, &req->x) != CURLM_OK) {
        snprintf(req->errbuf, sizeof req->errbuf, "curl_multi_add_handle failed");
        req_complete(io, &req->x, CURLE_FAILED_INIT);
    }
}

static void req_cancel_run(sr_http_io *io, job *j)
{
    sr_http_req *req = REQ_OF(j, cancel_job);
    if (req->x.easy) {
        xfer *x;
        for (x = io->active; x && x != &req->x; x = x->next)
            ;
        if (x) {
            /* Still running: no event will come; drop the thread's ref. */
            sr__http_xfer_remove(io, x);
            sr__http_xfer_cleanup(x);
            req_unref(req);
        }
    }
    req_unref(req); /* the host's, carried by this job */
}

static char *describe(const char *method, const char *url)
{
    size_t n = strcspn(url, "?#");
    size_t m = strlen(method);
    char *s = malloc(m + 1 + n + 1);
    if (!s) return NULL;
    memcpy(s, method, m);
    s[m] = ' ';
    memcpy(s + m + 1, url, n);
    s[m + 1 + n] = '\0';
    return s;
}

void sr__http_xfer_cleanup(xfer *x)
{
    if (x->easy) curl_easy_cleanup(x->easy);
    x->easy = NULL;
    /* After the handle: libcurl cannot free a share a handle still uses. */
    if (x->jar) sr__cookie_jar_unref(x->jar);
    x->jar = NULL;
}

const char *sr__http_setup(sr_http_io *io, xfer *x, const char *url, const sr_http_conf *c,
                           const char *const *extra, size_t nextra, char *errbuf,
                           struct curl_slist **list)
{
    CURL *e = x->easy;
    struct curl_slist *hl;
    size_t i;
    int ok = 1;
#define SET(opt, val) (ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK)
    *list = NULL;
    SET(CURLOPT_URL, url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_USERAGENT, io->user_agent);
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    if (!ok) return "cannot configure the request (bad URL or out of memory)";
    if (c->tls && c->tls->insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (c->tls && c->tls->ca_file) SET(CURLOPT_CAINFO, c->tls->ca_file);
    if (c->tls && c->tls->cert_file) SET(CURLOPT_SSLCERT, c->tls->cert_file);
    if (c->tls && c->tls->key_file) SET(CURLOPT_SSLKEY, c->tls->key_file);
    /* The proxy option replaces the environment entirely, as for the
     * WebSocket (proxy.c): "" is no proxy, and no_proxy does not apply to
     * an explicit one. Unset, libcurl reads the environment itself, by the
     * rules proxy.c follows for the WebSocket. */
    if (c->proxy) {
        SET(CURLOPT_PROXY, c->proxy);
        SET(CURLOPT_NOPROXY, "");
    }
    if (!ok) return "TLS or proxy option not supported by this libcurl";
    if (c->cookies && !x->jar) {
        /* The reference first: even a failed attach may have set the share. */
        sr__cookie_jar_ref(c->cookies);
        x->jar = c->cookies;
        if (sr__cookie_jar_attach(c->cookies, e) != 0) return "cannot use the cookie jar";
    }
    /* No "Expect: 100-continue" round trip for small bodies. */
    if (!(*list = curl_slist_append(NULL, "Expect:"))) return "out of memory";
    for (i = 0; i < nextra; i++) {
        if (!(hl = curl_slist_append(*list, extra[i]))) return "out of memory";
        *list = hl;
    }
    for (i = 0; i < c->nheaders; i++) {
        const sr_header *h = &c->headers[i];
        size_t nl = strlen(h->name), vl = strlen(h->value ? h->value : "");
        char *line;
        if (strpbrk(h->name, "\r\n:") || (h->value && strpbrk(h->value, "\r\n")))
            return "invalid header (CR, LF or ':' in a name)";
        if (x->jar && vl && strcasecmp(h->name, "Cookie") == 0) {
            /* libcurl would send the jar's cookies in a second Cookie
             * header; given here, they share one. */
            SET(CURLOPT_COOKIE, h->value);
            continue;
        }
        if (!(line = malloc(nl + vl + 3))) return "out of memory";
        memcpy(line, h->name, nl);
        /* "Name;" is curl's way to send a header with an empty value. */
        if (vl) {
            line[nl] = ':';
            line[nl + 1] = ' ';
            memcpy(line + nl + 2, h->value, vl + 1);
        } else {
            line[nl] = ';';
            line[nl + 1] = '\0';
        }
        hl = curl_slist_append(*list, line);
        free(line);
        if (!hl) return "out of memory";
        *list = hl;
    }
    SET(CURLOPT_HTTPHEADER, *list);
#undef SET
    return ok ? NULL : "cannot configure the request";
}

void sr__http_strerror(CURL *e, CURLcode rc, const char *errbuf, char *out, size_t size)
{
    long os_errno = 0;
    char ebuf[128];
    const char *os = "";
    /* libcurl 7.88 says "Couldn't connect to server"; the errno says why
     * ("Connection refused", "No route to host"). */
    curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);
    if (os_errno) os = strerror_r((int)os_errno, ebuf, sizeof ebuf);
    snprintf(out, size, "%s%s%s%s", errbuf && errbuf[0] ? errbuf : curl_easy_strerror(rc),
             os[0] ? " (" : "", os, os[0] ? ")" : "");
}

/* ------------------------------------------ host commands of a transport */

static void cmds_run(sr_http_io *io, job *j)
{
    sr_http_cmds *c = (sr_http_cmds *)(void *)j;
    sr_transport *tp = c->tp;
    unsigned bits;
    (void)io;
    __atomic_store_n(&c->queued, 0, __ATOMIC_SEQ_CST);
    bits = __atomic_exchange_n(&c->bits, 0u, __ATOMIC_SEQ_CST);
    if (bits & SR_HTTP_CMD_RELEASE) {
        c->ops->release(tp); /* no upcall runs after release */
    } else {
        if (bits & SR_HTTP_CMD_OPEN) c->ops->open(tp);
        if (bits & SR_HTTP_CMD_CLOSE) c->ops->close(tp);
        if (bits & SR_HTTP_CMD_WRITE) c->ops->write(tp);
    }
    sr__transport_unref(tp); /* the queued job's; c may be freed */
}

void sr__http_cmds_init(sr_http_cmds *c, sr_transport *tp, const sr_http_cmd_ops *ops)
{
    c->job.run = cmds_run;
    c->tp = tp;
    c->ops = ops;
}

void sr__http_cmds_post(sr_http_io *io, sr_http_cmds *c, unsigned bits)
{
    __atomic_fetch_or(&c->bits, bits, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&c->queued, 1, __ATOMIC_SEQ_CST)) return;
    sr__transport_ref(c->tp);
    sr__http_io_submit(io, &c->job);
}

/* Configure the easy handle; returns a static message on failure. */
static const char *req_setup(sr_http_req *req, const sr_http_opts *o, const char *method)
{
    CURL *e = req->x.easy;
    sr_http_conf conf;
    const char *msg;
    int ok = 1;
#define SET(opt, val) (ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK)
    conf.headers = o->headers;
    conf.nheaders = o->nheaders;
    conf.tls = o->tls;
    conf.proxy = o->proxy;
    conf.cookies = o->cookies;
    msg = sr__http_setup(req->io, &req->x, o->url, &conf, NULL, 0, req->errbuf, &req->headers);
    if (msg) return msg;
    SET(CURLOPT_WRITEFUNCTION, req->on_data ? stream_write : req_write);
    SET(CURLOPT_WRITEDATA, (void *)req);
    if (req->on_data) {
        SET(CURLOPT_HEADERFUNCTION, stream_header);
        SET(CURLOPT_HEADERDATA, (void *)req);
    }
    if (!req->on_data) SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_body);
    if (o->timeout_ms > 0) {
        double t = o->timeout_ms < 1 ? 1 : o->timeout_ms;
        long ms = t > 2e9 ? 2000000000L : (long)(t + 0.999);
        /* A stream lasts for hours: only connecting is bounded. */
        SET(req->on_data ? CURLOPT_CONNECTTIMEOUT_MS : CURLOPT_TIMEOUT_MS, ms);
    }
    if (strcmp(method, "GET") == 0 && !o->body) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, method);
        if (o->body || strcmp(method, "POST") == 0) {
            /* Size first, so COPYPOSTFIELDS copies exactly body_len bytes. */
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(o->body ? o->body_len : 0));
            SET(CURLOPT_COPYPOSTFIELDS, o->body ? o->body : "");
        }
    }
#undef SET
    return ok ? NULL : "cannot configure the request";
}

sr_http_req *sr__http_request(sr_loop *loop, const sr_http_opts *opts, sr_http_done_fn done,
                              void *ud, sr_error *err)
{
    sr_http_io *io;
    sr_http_req *req;
    const char *method, *msg;
    if (!loop || !opts || !opts->url || !done) {
        sr__error_set(err, SR_EUSAGE, "%s", "http request: missing loop, URL or callback");
        return NULL;
    }
    io = sr__http_io_get(loop, err);
    if (!io) return NULL;
    method = opts->method && opts->method[0] ? opts->method : "GET";
    req = calloc(1, sizeof *req);
    if (!req) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        return NULL;
    }
    req->refs = 2; /* host + thread */
    req->io = io;
    req->done = done;
    req->on_data = opts->on_data;
    req->on_headers = opts->on_data ? opts->on_headers : NULL;
    req->ud = ud;
    req->max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
    req->x.complete = req_complete;
    req->add_job.run = req_add_run;
    req->cancel_job.run = req_cancel_run;
    req->what = describe(method, opts->url);
    req->oom_ev = sr__event_new(req_dispatch, req_discard, req, EV_DONE, NULL, 0);
    req->x.easy = curl_easy_init();
    if (!req->what || !req->oom_ev || !req->x.easy) {
        sr__error_set(err, SR_ENOMEM, "%s", "out of memory");
        goto fail;
    }
    msg = req_setup(req, opts, method);
    if (msg) {
        sr__error_set(err, strcmp(msg, "out of memory") == 0 ? SR_ENOMEM : SR_EUSAGE, "%s", msg);
        goto fail;
    }
    sr__http_io_submit(io, &req->add_job);
    return req;
fail:
    req->refs = 1;
    req_unref(req);
    return NULL;
}

void sr__http_cancel(sr_http_req *req)
{
    if (!req || req->finished) return; /* from inside its own done: it is freed when done returns */
    req->finished = 1;
    __atomic_store_n(&req->cancelled, 1, __ATOMIC_RELEASE);
    sr__http_io_submit(req->io, &req->cancel_job); /* carries the host's reference */
}

/* Host thread: a stream's headers or data. The event's reference keeps req
 * alive while the callback cancels it. */
static void stream_dispatch(sr_http_req *req, sr_event *ev)
{
    if (ev->type == EV_HEADERS)
        req->on_headers(req->ud, ev->status);
    else
        req->on_data(req->ud, ev->status, ev->data, ev->len);
}

/* Host thread: one event of the request (EV_DONE: its transfer ended). */
static void req_dispatch(sr_event *ev)
{
    sr_http_req *req = ev->target;
    if (__atomic_load_n(&req->cancelled, __ATOMIC_ACQUIRE)) {
        /* Cancelled: dropped, no callback. */
    } else if (ev->type != EV_DONE) {
        stream_dispatch(req, ev);
    } else {
        req->finished = 1;
        if (ev->code == SR_OK) {
            /* A stream's body went out as data events. */
            req->done(req->ud, ev->status, req->on_data ? NULL : ev->data, ev->len, NULL);
        } else {
            sr_error e;
            e.code = ev->code;
            e.status = 0;
            snprintf(e.message, sizeof e.message, "%s", ev->text ? ev->text : "");
            req->done(req->ud, ev->status, NULL, 0, &e);
        }
        req_unref(req); /* the host's */
    }
    req_unref(req); /* the event's */
}

static void req_discard(sr_event *ev)
{
    sr_http_req *req = ev->target;
    req_unref(req);
}
