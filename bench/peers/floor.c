/*
 * bench/peers/floor.c - the "floor" column of the peer benchmark
 * (bench/peers.lua). A MEASURING INSTRUMENT, NOT A CLIENT: it shows what the
 * test hub and this machine allow at best, so that the other clients' figures
 * can be judged against it in the same run.
 *
 *   peer_floor HUB_URL WORKLOAD [key=value ...]
 *
 * Same command line, workloads, parameters, defaults and output as
 * bench/peers/lua.lua (read its header): "RESULT client=floor workload=...
 * key=value ...", or "... error=<text>" and exit 1.
 *
 * It does the least work a SignalR exchange can take, and bypasses every
 * library on purpose (our client uses libwebsockets, the official ones their
 * runtimes' WebSockets):
 *  - one blocking TCP socket on the one thread; no event loop, no queue;
 *  - no negotiate: an HTTP upgrade straight to the hub's path (the hub accepts
 *    a WebSocket without a negotiate), the JSON handshake, then frames built by
 *    hand; the mask is all zeros, so a payload goes out as it is (RFC 6455
 *    wants an unpredictable mask only against intermediaries misreading the
 *    bytes; on loopback to a test hub nothing cares, and the hub does not);
 *  - no JSON parser and no values: a record is recognised by the substrings
 *    the hub is known to write ("type":3, "invocationId":"7", "target":"Tick"),
 *    numbers are read with strtoll;
 *  - no TLS, no reconnect, no close handshake (it just exits).
 * What it does handle, because the hub may send it: the 126/127 extended
 * payload lengths, records split across frames and reads, several records in
 * one frame, WebSocket pings (answered) and SignalR pings (ignored).
 *
 * Workloads: invoke, send, receive as in lua.lua, with these specifics:
 *  - send: the Count invocation record (no invocationId: fire and forget) is
 *    built once; `per_frame` [1] records go in each WebSocket frame and the
 *    frames are written about 64 KiB per write(). "Sent" means what it means
 *    for the other clients: the SERVER has processed all n (CountDone answers
 *    n); the time runs from the first write to CountDone's answer.
 *  - receive: every record holding "target":"Tick" counts; the time runs from
 *    StartPush's write to the n-th Tick.
 * stream, upload, idle and warm are not measured: "skipped=1".
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static const char *workload = "?";

static void fail(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    size_t i;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "peer_floor: %s\n", msg);
    for (i = 0; msg[i] && i < 200; i++)
        if (msg[i] == ' ' || msg[i] == '\t' || msg[i] == '\n') msg[i] = '_';
    msg[i] = '\0';
    printf("RESULT client=floor workload=%s error=%s\n", workload, msg);
    fflush(stdout);
    exit(1);
}

/* ---- parameters, clocks, CPU counters (as lua.lua reads them) ----------- */

static int nparams;
static char **params;

static double num(const char *key, double def)
{
    size_t k = strlen(key);
    int i;

    for (i = 0; i < nparams; i++)
        if (strncmp(params[i], key, k) == 0 && params[i][k] == '=') return atof(params[i] + k + 1);
    return def;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double clk_tck = 100;

/* utime + stime of the whole process, fields 14 and 15 of /proc/self/stat, in seconds */
static double process_cpu(void)
{
    char s[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f = fopen("/proc/self/stat", "r");

    if (!f || !fgets(s, sizeof s, f)) fail("cannot read /proc/self/stat");
    fclose(f);
    p = strrchr(s, ')');
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        fail("cannot parse /proc/self/stat");
    return (double)(ut + st) / clk_tck;
}

/* CPU time of this thread (the only one), from /proc/thread-self/schedstat, in seconds */
static double thread_cpu(void)
{
    unsigned long long ns = 0;
    FILE *f = fopen("/proc/thread-self/schedstat", "r");

    if (!f || fscanf(f, "%llu", &ns) != 1) fail("cannot read /proc/thread-self/schedstat");
    fclose(f);
    return (double)ns * 1e-9;
}

struct mark {
    double wall, cpu, host;
};

static struct mark mark(void)
{
    struct mark m;
    m.wall = now();
    m.cpu = process_cpu();
    m.host = thread_cpu();
    return m;
}

/* ---- the socket --------------------------------------------------------- */

/*
 * One buffer holds what was read, in three regions:
 *   [ppos, plen)  payload of data frames, not yet handed out as records
 *   [plen, rpos)  a gap (frame headers taken out)
 *   [rpos, len)   bytes read, not yet deframed
 * Deframing moves each data frame's payload down to plen, so the records of a
 * connection are one byte stream, whatever the frames and reads cut them into.
 */
struct conn {
    int fd;
    unsigned char *buf;
    size_t cap, ppos, plen, rpos, len;
    unsigned long long left; /* payload bytes of the current data frame still to come */
    unsigned id;             /* the last invocationId */
};

static void write_all(int fd, const struct iovec *iov0, int cnt)
{
    struct iovec iov[2];
    ssize_t k;

    memcpy(iov, iov0, sizeof *iov * (size_t)cnt);
    while (cnt > 0) {
        k = writev(fd, iov, cnt);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) fail("write: %s", strerror(errno));
        while (cnt > 0 && (size_t)k >= iov[0].iov_len) {
            k -= (ssize_t)iov[0].iov_len;
            iov[0] = iov[1];
            cnt--;
        }
        if (cnt > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + k;
            iov[0].iov_len -= (size_t)k;
        }
    }
}

/* A client frame's header for n payload bytes: FIN, opcode, MASK, the all-zero key. */
static size_t frame_header(unsigned char *h, int opcode, size_t n)
{
    size_t k = 2;
    int i;

    h[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        h[1] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        k = 4;
    } else {
        h[1] = 0x80 | 127;
        for (i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((unsigned long long)n >> (56 - 8 * i));
        k = 10;
    }
    memset(h + k, 0, 4);
    return k + 4;
}

static void send_frame(struct conn *c, int opcode, const void *p, size_t n)
{
    unsigned char h[14];
    struct iovec iov[2];

    iov[0].iov_base = h;
    iov[0].iov_len = frame_header(h, opcode, n);
    iov[1].iov_base = (void *)p;
    iov[1].iov_len = n;
    write_all(c->fd, iov, n ? 2 : 1);
}

/* Reads more bytes after rpos..len, making room first. */
static void fill(struct conn *c)
{
    ssize_t k;

    if (c->ppos == c->plen) c->ppos = c->plen = 0;
    if (c->plen == 0 && c->rpos == c->len) c->rpos = c->len = 0;
    if (c->cap - c->len < 16384) {
        size_t p = c->plen - c->ppos, r = c->len - c->rpos;
        memmove(c->buf, c->buf + c->ppos, p);
        memmove(c->buf + p, c->buf + c->rpos, r);
        c->ppos = 0;
        c->plen = c->rpos = p;
        c->len = p + r;
        if (c->cap - c->len < 16384) { /* a record or frame larger than the buffer */
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf) fail("out of memory");
        }
    }
    for (;;) {
        k = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (k > 0) break;
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) fail("the hub closed the connection");
        fail("read: %s", strerror(errno));
    }
    c->len += (size_t)k;
}

static void deframe(struct conn *c)
{
    while (c->rpos < c->len) {
        size_t avail = c->len - c->rpos, hl = 2;
        unsigned char *h = c->buf + c->rpos;
        unsigned long long n;
        int op, i;

        if (c->left) {
            size_t k = avail < c->left ? avail : (size_t)c->left;
            if (c->plen != c->rpos) memmove(c->buf + c->plen, h, k);
            c->plen += k;
            c->rpos += k;
            c->left -= k;
            continue;
        }
        if (avail < 2) return;
        op = h[0] & 0x0f;
        n = h[1] & 0x7f;
        if (h[1] & 0x80) fail("a masked frame from the hub");
        if (n == 126) {
            if (avail < 4) return;
            n = (unsigned long long)h[2] << 8 | h[3];
            hl = 4;
        } else if (n == 127) {
            if (avail < 10) return;
            for (n = 0, i = 2; i < 10; i++)
                n = n << 8 | h[i];
            hl = 10;
        }
        if (op >= 8) { /* control frames: payload <= 125 bytes, taken whole */
            if (avail < hl + n) return;
            if (op == 8) fail("the hub closed the WebSocket");
            if (op == 9) send_frame(c, 0xA, h + hl, (size_t)n);
            c->rpos += hl + (size_t)n;
            continue;
        }
        if (op == 2) fail("a binary frame (the JSON protocol sends text)");
        c->rpos += hl; /* text, or a continuation: its payload joins the stream */
        c->left = n;
    }
}

/* The next record (without its 0x1e; the byte after it is the 0x1e), valid until the next call. */
static const char *next_record(struct conn *c, size_t *len)
{
    for (;;) {
        unsigned char *s = c->buf + c->ppos, *e = memchr(s, 0x1e, c->plen - c->ppos);
        if (e) {
            *len = (size_t)(e - s);
            c->ppos += *len + 1;
            return (const char *)s;
        }
        fill(c);
        deframe(c);
    }
}

static int has(const char *rec, size_t len, const char *s)
{
    return memmem(rec, len, s, strlen(s)) != NULL;
}

static void check_close(const char *rec, size_t len)
{
    if (has(rec, len, "\"type\":7"))
        fail("the hub closed: %.*s", (int)(len > 150 ? 150 : len), rec);
}

static void connect_hub(struct conn *c, const char *url)
{
    char host[256], port[16] = "80", req[1024];
    const char *p, *path, *e;
    struct addrinfo hints, *ai, *a;
    struct iovec iov;
    size_t hlen, len;
    const char *rec;
    int one = 1, r;

    if (strncmp(url, "http://", 7) != 0) fail("HUB_URL must be http://host[:port]/path");
    p = url + 7;
    path = strchr(p, '/');
    if (!path) path = p + strlen(p);
    hlen = (size_t)(path - p);
    if (*p == '[') { /* [v6]:port */
        e = memchr(p, ']', hlen);
        if (!e) fail("bad host in %s", url);
        memcpy(host, p + 1, (size_t)(e - p - 1));
        host[e - p - 1] = '\0';
        e++;
    } else {
        e = memchr(p, ':', hlen);
        if (!e) e = path;
        if ((size_t)(e - p) >= sizeof host) fail("host too long");
        memcpy(host, p, (size_t)(e - p));
        host[e - p] = '\0';
    }
    if (*e == ':') snprintf(port, sizeof port, "%.*s", (int)(path - e - 1), e + 1);

    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if ((r = getaddrinfo(host, port, &hints, &ai)) != 0) fail("%s: %s", host, gai_strerror(r));
    c->fd = -1;
    for (a = ai; a && c->fd < 0; a = a->ai_next) {
        c->fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (c->fd >= 0 && connect(c->fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (c->fd < 0) fail("connect %s:%s: %s", host, port, strerror(errno));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    c->cap = 256 * 1024;
    c->buf = malloc(c->cap);
    if (!c->buf) fail("out of memory");
    c->ppos = c->plen = c->rpos = c->len = 0;
    c->left = 0;
    c->id = 0;

    /* the key is fixed: the hub answers with its hash, which nothing checks here */
    len = (size_t)snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: %.*s\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n",
                           *path ? path : "/", (int)(path - p), p);
    iov.iov_base = req;
    iov.iov_len = len;
    write_all(c->fd, &iov, 1);
    while (!(e = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        if (c->len > 16384) fail("no end of the HTTP response");
        fill(c);
    }
    if (c->len < 12 || memcmp(c->buf + 9, "101", 3) != 0)
        fail("upgrade refused: %.*s", (int)strcspn((const char *)c->buf, "\r\n"), c->buf);
    c->rpos = c->plen = c->ppos = (size_t)((const unsigned char *)e + 4 - c->buf);
    deframe(c);

    send_frame(c, 1, "{\"protocol\":\"json\",\"version\":1}\x1e", 32);
    rec = next_record(c, &len);
    if (has(rec, len, "\"error\"")) fail("handshake: %.*s", (int)len, rec);
}

/* ---- invocations -------------------------------------------------------- */

/* Sends target(args) with a new invocationId; returns its completion record. */
static const char *invoke(struct conn *c, const char *target, const char *args, size_t *len)
{
    char msg[512], id[40];
    int n, k;
    const char *rec;

    c->id++;
    n = snprintf(msg, sizeof msg,
                 "{\"type\":1,\"invocationId\":\"%u\",\"target\":\"%s\",\"arguments\":[%s]}\x1e",
                 c->id, target, args);
    send_frame(c, 1, msg, (size_t)n);
    k = snprintf(id, sizeof id, "\"invocationId\":\"%u\"", c->id);
    for (;;) {
        rec = next_record(c, len);
        if (has(rec, *len, "\"type\":3") && memmem(rec, *len, id, (size_t)k)) break;
        check_close(rec, *len);
    }
    if (has(rec, *len, "\"error\":")) fail("%s: %.*s", target, (int)(*len > 150 ? 150 : *len), rec);
    return rec;
}

/* The integer result of a completion record. */
static long long result_int(const char *rec, size_t len)
{
    const char *r = memmem(rec, len, "\"result\":", 9);
    char *end;
    long long v;

    if (!r) fail("no result in %.*s", (int)len, rec);
    v = strtoll(r + 9, &end, 10); /* stops at '}' or at the 0x1e after the record */
    if (end == r + 9) fail("not an integer result: %.*s", (int)len, rec);
    return v;
}

static long long invoke_int(struct conn *c, const char *target, const char *args)
{
    size_t len;
    const char *rec = invoke(c, target, args, &len);
    return result_int(rec, len);
}

/* ---- workloads ---------------------------------------------------------- */

static void result(const char *fields)
{
    printf("RESULT client=floor workload=%s %s\n", workload, fields);
    fflush(stdout);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long long add(struct conn *c, long long i)
{
    char args[64];
    long long r;

    snprintf(args, sizeof args, "%lld,1", i);
    r = invoke_int(c, "Add", args);
    if (r != i + 1) fail("Add(%lld, 1) returned %lld", i, r);
    return r;
}

static void w_invoke(struct conn *c)
{
    long n = (long)num("n", 20000), i;
    double until = now() + num("warmup", 1.5), *lat, s, p50, p99;
    struct mark a, b;
    char out[512];

    if (n < 1) fail("n must be >= 1");
    lat = malloc(sizeof *lat * (size_t)n);
    if (!lat) fail("out of memory");
    i = 0;
    do
        add(c, ++i);
    while (now() < until);
    a = mark();
    for (i = 1; i <= n; i++) {
        s = now();
        add(c, i);
        lat[i - 1] = now() - s;
    }
    b = mark();
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    p50 = lat[(n * 50 + 99) / 100 - 1] * 1e6; /* lat[ceil(n * p)], 1-based, as lua.lua */
    p99 = lat[(n * 99 + 99) / 100 - 1] * 1e6;
    snprintf(out, sizeof out,
             "n=%ld elapsed_s=%.3f rate=%.3f p50_us=%.3f p99_us=%.3f cpu_us=%.3f host_cpu_us=%.3f",
             n, b.wall - a.wall, (double)n / (b.wall - a.wall), p50, p99,
             (b.cpu - a.cpu) * 1e6 / (double)n, (b.host - a.host) * 1e6 / (double)n);
    free(lat);
    result(out);
}

static const char count_rec[] = "{\"type\":1,\"target\":\"Count\",\"arguments\":[]}\x1e";

/* m Count records, per_frame to a frame, the frames about 64 KiB to a write(). */
static void send_counts(struct conn *c, long m, long per_frame)
{
    static unsigned char *block;
    static size_t frame_len, frames_per_block;
    const size_t rec_len = sizeof count_rec - 1;
    struct iovec iov;
    unsigned char h[14];
    size_t i, hl;
    long full, rest;

    if (!block) { /* built once: frames are all alike (same records, same zero mask) */
        hl = frame_header(h, 1, rec_len * (size_t)per_frame);
        frame_len = hl + rec_len * (size_t)per_frame;
        frames_per_block = frame_len >= 65536 ? 1 : 65536 / frame_len;
        block = malloc(frame_len * frames_per_block);
        if (!block) fail("out of memory");
        for (i = 0; i < frames_per_block; i++) {
            unsigned char *f = block + i * frame_len;
            long r;
            memcpy(f, h, hl);
            for (r = 0; r < per_frame; r++)
                memcpy(f + hl + (size_t)r * rec_len, count_rec, rec_len);
        }
    }
    full = m / per_frame;
    rest = m % per_frame;
    iov.iov_base = block;
    while (full > 0) {
        size_t k = (size_t)full < frames_per_block ? (size_t)full : frames_per_block;
        iov.iov_len = k * frame_len;
        write_all(c->fd, &iov, 1);
        full -= (long)k;
    }
    if (rest > 0) {
        unsigned char *f = malloc(rec_len * (size_t)rest);
        long r;
        if (!f) fail("out of memory");
        for (r = 0; r < rest; r++)
            memcpy(f + (size_t)r * rec_len, count_rec, rec_len);
        send_frame(c, 1, f, rec_len * (size_t)rest);
        free(f);
    }
}

static void w_send(struct conn *c)
{
    long n = (long)num("n", 200000), per_frame = (long)num("per_frame", 1);
    long chunk = n / 10 > 1 ? n / 10 : 1;
    double until = now() + num("warmup", 1.5);
    long long got;
    struct mark a, b;
    char out[512];

    if (n < 1 || per_frame < 1) fail("n and per_frame must be >= 1");
    do {
        invoke_int(c, "ResetCount", "");
        send_counts(c, chunk, per_frame);
        got = invoke_int(c, "CountDone", "");
        if (got != chunk) fail("warm-up: CountDone %lld, expected %ld", got, chunk);
    } while (now() < until);
    invoke_int(c, "ResetCount", "");
    a = mark();
    send_counts(c, n, per_frame);
    got = invoke_int(c, "CountDone", "");
    b = mark();
    if (got != n) fail("CountDone returned %lld, expected %ld", got, n);
    snprintf(out, sizeof out,
             "n=%ld confirmed=%lld per_frame=%ld elapsed_s=%.3f rate=%.3f cpu_us=%.3f "
             "host_cpu_us=%.3f",
             n, got, per_frame, b.wall - a.wall, (double)n / (b.wall - a.wall),
             (b.cpu - a.cpu) * 1e6 / (double)n, (b.host - a.host) * 1e6 / (double)n);
    result(out);
}

/* StartPush("Tick", m, 0), then reads until its completion and m Ticks; returns the time of the
 * m-th. */
static double push(struct conn *c, long m)
{
    char msg[256], id[40];
    int n, k;
    long count = 0;
    int completed = 0;
    double done_at = 0;
    const char *rec;
    size_t len;

    c->id++;
    n = snprintf(msg, sizeof msg,
                 "{\"type\":1,\"invocationId\":\"%u\",\"target\":\"StartPush\","
                 "\"arguments\":[\"Tick\",%ld,0]}\x1e",
                 c->id, m);
    k = snprintf(id, sizeof id, "\"invocationId\":\"%u\"", c->id);
    send_frame(c, 1, msg, (size_t)n);
    while (count < m || !completed) {
        rec = next_record(c, &len);
        if (has(rec, len, "\"target\":\"Tick\"")) {
            if (++count == m) done_at = now();
        } else if (memmem(rec, len, id, (size_t)k)) {
            if (!has(rec, len, "\"result\":\"started\""))
                fail("StartPush: %.*s", (int)(len > 150 ? 150 : len), rec);
            completed = 1;
        } else {
            check_close(rec, len); /* else a ping (type 6): nothing to do */
        }
    }
    return done_at;
}

static void w_receive(struct conn *c)
{
    long n = (long)num("n", 200000);
    double until = now() + num("warmup", 1.5);
    struct mark a, b;
    char out[512];

    if (n < 1) fail("n must be >= 1");
    do
        push(c, n / 10 > 1 ? n / 10 : 1);
    while (now() < until);
    a = mark();
    b.wall = push(c, n);
    b.cpu = process_cpu();
    b.host = thread_cpu();
    snprintf(out, sizeof out, "n=%ld elapsed_s=%.3f rate=%.3f cpu_us=%.3f host_cpu_us=%.3f", n,
             b.wall - a.wall, (double)n / (b.wall - a.wall), (b.cpu - a.cpu) * 1e6 / (double)n,
             (b.host - a.host) * 1e6 / (double)n);
    result(out);
}

int main(int argc, char **argv)
{
    struct conn c;
    int i;

    if (argc < 3) {
        fprintf(stderr, "usage: peer_floor HUB_URL WORKLOAD [key=value ...]\n");
        return 2;
    }
    workload = argv[2];
    params = argv + 3;
    nparams = argc - 3;
    for (i = 0; i < nparams; i++)
        if (!strchr(params[i], '=')) fail("bad parameter %s", params[i]);
    clk_tck = num("clk_tck", 100);
    if (strcmp(workload, "stream") == 0 || strcmp(workload, "upload") == 0 ||
        strcmp(workload, "idle") == 0 || strcmp(workload, "warm") == 0) {
        result("skipped=1");
        return 0;
    }
    if (strcmp(workload, "invoke") != 0 && strcmp(workload, "send") != 0 &&
        strcmp(workload, "receive") != 0) {
        fprintf(stderr, "unknown workload %s\n", workload);
        return 2;
    }
    connect_hub(&c, argv[1]);
    if (strcmp(workload, "invoke") == 0)
        w_invoke(&c);
    else if (strcmp(workload, "send") == 0)
        w_send(&c);
    else
        w_receive(&c);
    close(c.fd);
    free(c.buf);
    return 0;
}
