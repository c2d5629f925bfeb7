/*
 * cutproxy: a loopback TCP proxy that the specs control, to cut, refuse or
 * freeze connections between a client and the test hub.
 *
 *   cutproxy [-p listen_port] [-f port_file] [-h target_host] target_port
 *
 * Listens on 127.0.0.1 (port 0 = any free port) and forwards every accepted
 * connection to target_host (default 127.0.0.1):target_port. One process,
 * one poll() loop, any number of connections; plain POSIX.
 *
 * It is also an HTTP proxy of the kind clients tunnel through: a connection
 * whose first request is "CONNECT host:port HTTP/1.x" is connected to
 * host:port instead (a numeric address, or a name given with "map"), gets
 * "HTTP/1.1 200 Connection established" once that connection is up (502
 * when it fails), and is then forwarded like any other. Other requests
 * (absolute-form "GET http://..." included) go to the target as they are.
 * With "auth", the first request of every connection must carry
 * "Proxy-Authorization: Basic" with those credentials, or it is answered
 * "407 Proxy Authentication Required" (with Proxy-Authenticate) and closed.
 *
 * At start it prints "ready <port>" on stdout (and writes "<port>\n" to
 * port_file, through a temporary file and rename, when -f is given).
 *
 * Commands, one per line on stdin. Each is answered on stdout with
 * "ok <n> <command>" once it has taken effect (n counts the commands from
 * 1), or "error <n> <text>":
 *
 *   cut            reset (RST) both sockets of every live connection at once
 *   close          close both sockets of every live connection gracefully (FIN)
 *   refuse on|off  on: close new connections at once (RST), without
 *                  connecting to the target; live ones are left alone
 *   noupgrade on|off  on: a connection whose first request asks for a
 *                  WebSocket upgrade gets "403 Forbidden" and is closed, as
 *                  behind a corporate proxy that refuses WebSockets; other
 *                  requests pass
 *   pause          freeze: forward no bytes in either direction and pass on
 *                  no FIN or reset (the sockets stay open, unread; new
 *                  connections are accepted, connected and held)
 *   resume         forward again, and pass on what happened meanwhile
 *   auth USER:PASS require these proxy credentials (the rest of the line,
 *                  as they are); "auth off" requires none again
 *   map NAME ADDR  CONNECT requests for host NAME go to the numeric ADDR (a
 *                  name only the proxy can resolve, as behind a real proxy)
 *   noconnect on|off  on: answer every CONNECT "403 Forbidden" and close
 *   stats          answers "stats accepted=A live=L cut=C refused=R
 *                  up=BYTES down=BYTES paused=0|1 refusing=0|1 upgrades=U
 *                  connects=T denied=D" before the ok (U: upgrades refused
 *                  by noupgrade; T: tunnels established by CONNECT; D:
 *                  requests answered 407, or CONNECTs answered 403 or 502)
 *   quit           exit (also on end of input, and when the parent process
 *                  is gone)
 *
 * "up" counts bytes client -> target, "down" target -> client.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define BUFSZ 65536

struct dir {            /* one direction: from -> to */
    char buf[BUFSZ];
    size_t len;         /* bytes waiting in buf */
    int eof;            /* the reading side sent FIN */
    int shut;           /* FIN forwarded (shutdown(to, SHUT_WR)) */
};

struct pair {
    int cfd, sfd;       /* client side, target side */
    int connecting;     /* non-blocking connect to the target in progress */
    struct dir up;      /* client -> target */
    struct dir down;    /* target -> client */
    int dead;
    int inspected;      /* the first request was looked at */
    int tunnel;         /* CONNECT: connecting to its target, 200 not sent yet */
};

static struct pair **pairs;
static size_t npairs, cap;
static int paused, refusing, noupgrade;
static unsigned long long n_upgrades, n_connects, n_denied;
static char auth_b64[512]; /* "" = no credentials required */
static int noconnect;
static struct { char name[256], addr[64]; } maps[32];
static size_t nmaps;
static unsigned long long n_accepted, n_cut, n_refused, bytes_up, bytes_down;
static struct sockaddr_in target;
static unsigned long cmd_no;

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static void die(const char *what)
{
    fprintf(stderr, "cutproxy: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl");
}

/* Close with RST (SO_LINGER 0) or FIN. */
static void close_fd(int fd, int rst)
{
    if (fd < 0) return;
    if (rst) {
        struct linger l = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(fd);
}

static void kill_pair(struct pair *p, int rst)
{
    if (p->dead) return;
    close_fd(p->cfd, rst);
    close_fd(p->sfd, rst);
    p->cfd = p->sfd = -1;
    p->dead = 1;
}

static void add_pair(struct pair *p)
{
    if (npairs == cap) {
        cap = cap ? cap * 2 : 16;
        pairs = realloc(pairs, cap * sizeof *pairs);
        if (!pairs) die("realloc");
    }
    pairs[npairs++] = p;
}

static void reap(void)
{
    size_t j = 0;
    for (size_t i = 0; i < npairs; i++) {
        if (pairs[i]->dead) free(pairs[i]);
        else pairs[j++] = pairs[i];
    }
    npairs = j;
}

static size_t live_count(void)
{
    size_t n = 0;
    for (size_t i = 0; i < npairs; i++) n += !pairs[i]->dead;
    return n;
}

static void do_accept(int lfd)
{
    for (;;) {
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno == EINTR) continue;
            return; /* EAGAIN or a transient error */
        }
        n_accepted++;
        if (refusing) {
            n_refused++;
            close_fd(cfd, 1);
            continue;
        }
        nonblock(cfd);
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int sfd = socket(AF_INET, SOCK_STREAM, 0);
        if (sfd < 0) { close_fd(cfd, 1); continue; }
        nonblock(sfd);
        setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct pair *p = calloc(1, sizeof *p);
        if (!p) die("calloc");
        p->cfd = cfd;
        p->sfd = sfd;
        if (connect(sfd, (struct sockaddr *)&target, sizeof target) < 0) {
            if (errno != EINPROGRESS) { close_fd(cfd, 1); close(sfd); free(p); continue; }
            p->connecting = 1;
        }
        add_pair(p);
    }
}

/* Read what fits from `from` into d. Returns -1 on a socket error. */
static int pump_in(int from, struct dir *d, unsigned long long *count)
{
    while (!d->eof && d->len < BUFSZ) {
        ssize_t n = read(from, d->buf + d->len, BUFSZ - d->len);
        if (n > 0) { d->len += (size_t)n; *count += (unsigned long long)n; continue; }
        if (n == 0) { d->eof = 1; break; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return -1;
    }
    return 0;
}

/* Write what is buffered in d to `to`; forward FIN once drained. */
static int pump_out(int to, struct dir *d)
{
    while (d->len > 0) {
        ssize_t n = write(to, d->buf, d->len);
        if (n > 0) {
            memmove(d->buf, d->buf + n, d->len - (size_t)n);
            d->len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        return -1;
    }
    if (d->len == 0 && d->eof && !d->shut) {
        shutdown(to, SHUT_WR);
        d->shut = 1;
    }
    return 0;
}

static void b64(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (; n >= 3; n -= 3, in += 3) {
        *out++ = a[in[0] >> 2];
        *out++ = a[((in[0] & 3) << 4) | (in[1] >> 4)];
        *out++ = a[((in[1] & 15) << 2) | (in[2] >> 6)];
        *out++ = a[in[2] & 63];
    }
    if (n) {
        *out++ = a[in[0] >> 2];
        *out++ = a[((in[0] & 3) << 4) | (n == 2 ? in[1] >> 4 : 0)];
        *out++ = n == 2 ? a[(in[1] & 15) << 2] : '=';
        *out++ = '=';
    }
    *out = 0;
}

/* Answer the pair's first request with status (and extra header lines),
 * then close it gracefully. */
static void answer(struct pair *p, const char *status, const char *extra)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n", status,
                     extra);
    ssize_t w = write(p->cfd, msg, (size_t)n);
    (void)w;
    kill_pair(p, 0);
}

/* 1 when the request head (len bytes) carries the required credentials. */
static int auth_ok(const char *h, size_t len)
{
    static const char name[] = "\r\nproxy-authorization:";
    size_t i, nl = sizeof name - 1;
    for (i = 0; i + nl <= len; i++) {
        const char *v, *e;
        if (strncasecmp(h + i, name, nl) != 0) continue;
        v = h + i + nl;
        while (*v == ' ' || *v == '\t') v++;
        if (strncasecmp(v, "basic ", 6) != 0) return 0;
        v += 6;
        while (*v == ' ') v++;
        e = v;
        while (e < h + len && *e != '\r' && *e != ' ') e++;
        return (size_t)(e - v) == strlen(auth_b64) && memcmp(v, auth_b64, (size_t)(e - v)) == 0;
    }
    return 0;
}

static void tunnel_up(struct pair *p)
{
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    /* Nothing came from the first target: it was never sent a byte. */
    memcpy(p->down.buf, ok, sizeof ok - 1);
    p->down.len = sizeof ok - 1;
    p->tunnel = 0;
    n_connects++;
}

/* The first request is "CONNECT host:port ..." (head: hlen bytes): swap
 * the target side for a connection to host:port. */
static void do_connect(struct pair *p, size_t hlen)
{
    char target[300], *host, *port, *sp;
    const char *addr;
    struct addrinfo hints, *ai = NULL;
    size_t i, n = hlen - 8 < sizeof target - 1 ? hlen - 8 : sizeof target - 1;
    int one = 1, fd;
    memcpy(target, p->up.buf + 8, n);
    target[n] = 0;
    if ((sp = strpbrk(target, " \r\n")) != NULL) *sp = 0;
    host = target;
    if (*host == '[') {
        host++;
        port = strchr(host, ']');
        if (port) *port++ = 0;
    } else {
        port = strrchr(host, ':');
    }
    if (!port || *port != ':') { n_denied++; answer(p, "400 Bad Request", ""); return; }
    *port++ = 0;
    if (noconnect) { n_denied++; answer(p, "403 Forbidden", ""); return; }
    addr = host;
    for (i = 0; i < nmaps; i++)
        if (strcasecmp(maps[i].name, host) == 0) addr = maps[i].addr;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(addr, port, &hints, &ai) != 0) { n_denied++; answer(p, "502 Bad Gateway", ""); return; }
    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0) { freeaddrinfo(ai); n_denied++; answer(p, "502 Bad Gateway", ""); return; }
    nonblock(fd);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    close_fd(p->sfd, 0);
    p->sfd = fd;
    /* The CONNECT head is for us; what follows it is the tunnel's. */
    memmove(p->up.buf, p->up.buf + hlen, p->up.len - hlen);
    p->up.len -= hlen;
    p->tunnel = 1;
    p->connecting = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) { freeaddrinfo(ai); n_denied++; answer(p, "502 Bad Gateway", ""); return; }
        p->connecting = 1;
    }
    freeaddrinfo(ai);
    if (!p->connecting) tunnel_up(p);
}

/* Look at the pair's first request once it is complete: 1 to forward it,
 * 0 to wait for more of it, -1 when it was answered here (the pair is then
 * closed, or connecting to a CONNECT's target). */
static int inspect(struct pair *p)
{
    const char *end;
    size_t k, i, hlen;
    int is_connect;
    if (p->up.len == 0) return 0;
    k = p->up.len < 8 ? p->up.len : 8;
    is_connect = strncasecmp(p->up.buf, "CONNECT ", k) == 0;
    if (!is_connect && !noupgrade && !auth_b64[0]) { p->inspected = 1; return 1; }
    end = memmem(p->up.buf, p->up.len, "\r\n\r\n", 4);
    if (!end) {
        if (p->up.len < BUFSZ) return 0; /* the head is not complete yet */
        p->inspected = 1;
        return 1;
    }
    p->inspected = 1;
    hlen = (size_t)(end + 4 - p->up.buf);
    if (auth_b64[0] && !auth_ok(p->up.buf, hlen)) {
        n_denied++;
        answer(p, "407 Proxy Authentication Required",
               "Proxy-Authenticate: Basic realm=\"cutproxy\"\r\n");
        return -1;
    }
    if (is_connect) { do_connect(p, hlen); return -1; }
    if (noupgrade)
        for (i = 0; i + 18 <= hlen; i++)
            if (strncasecmp(p->up.buf + i, "upgrade: websocket", 18) == 0) {
                /* as behind a corporate proxy that refuses WebSockets */
                n_upgrades++;
                answer(p, "403 Forbidden", "");
                return -1;
            }
    return 1;
}

static void service(struct pair *p, short crev, short srev)
{
    (void)crev; /* the client side is simply read and written until EAGAIN */
    if (p->dead) return;
    if (p->connecting) {
        if (!(srev & (POLLOUT | POLLERR | POLLHUP))) return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(p->sfd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err && p->tunnel) { n_denied++; answer(p, "502 Bad Gateway", ""); return; }
        if (err) { kill_pair(p, 1); return; }
        p->connecting = 0;
        if (p->tunnel) tunnel_up(p);
    }
    if (paused) return;
    if (pump_in(p->cfd, &p->up, &bytes_up) < 0) { kill_pair(p, 1); return; }
    /* hold the first request until it is complete and looked at */
    if (!p->inspected && inspect(p) <= 0) return;
    if (pump_in(p->sfd, &p->down, &bytes_down) < 0
        || pump_out(p->sfd, &p->up) < 0 || pump_out(p->cfd, &p->down) < 0) {
        /* a reset or error on one side: reset the other one too */
        kill_pair(p, 1);
        return;
    }
    if (p->up.shut && p->down.shut) kill_pair(p, 0);
}

static short want(const struct pair *p, int client_side)
{
    const struct dir *in = client_side ? &p->up : &p->down;    /* read from this side */
    const struct dir *out = client_side ? &p->down : &p->up;   /* write to this side */
    short ev = 0;
    if (!paused && !in->eof && in->len < BUFSZ) ev |= POLLIN;
    if (!paused && out->len > 0) ev |= POLLOUT;
    return ev;
}

static void command(char *line, int *quit)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = 0;
    while (*line == ' ' || *line == '\t') line++;
    if (*line == 0) return;
    cmd_no++;
    if (strcmp(line, "cut") == 0 || strcmp(line, "close") == 0) {
        int rst = line[0] == 'c' && line[1] == 'u';
        for (size_t i = 0; i < npairs; i++) {
            if (!pairs[i]->dead) { kill_pair(pairs[i], rst); n_cut++; }
        }
        reap();
    } else if (strcmp(line, "refuse on") == 0 || strcmp(line, "refuse") == 0) {
        refusing = 1;
    } else if (strcmp(line, "refuse off") == 0) {
        refusing = 0;
    } else if (strcmp(line, "noupgrade on") == 0) {
        noupgrade = 1;
    } else if (strcmp(line, "noupgrade off") == 0) {
        noupgrade = 0;
    } else if (strcmp(line, "noconnect on") == 0) {
        noconnect = 1;
    } else if (strcmp(line, "noconnect off") == 0) {
        noconnect = 0;
    } else if (strcmp(line, "auth off") == 0) {
        auth_b64[0] = 0;
    } else if (strncmp(line, "auth ", 5) == 0 && strlen(line + 5) < 300) {
        b64((const unsigned char *)line + 5, strlen(line + 5), auth_b64);
    } else if (strncmp(line, "map ", 4) == 0 && nmaps < sizeof maps / sizeof maps[0]) {
        char name[256], addr[64];
        if (sscanf(line + 4, "%255s %63s", name, addr) != 2) {
            say("error %lu usage: map NAME ADDR", cmd_no);
            return;
        }
        strcpy(maps[nmaps].name, name);
        strcpy(maps[nmaps].addr, addr);
        nmaps++;
    } else if (strcmp(line, "pause") == 0) {
        paused = 1;
    } else if (strcmp(line, "resume") == 0) {
        paused = 0;
    } else if (strcmp(line, "stats") == 0) {
        say("stats accepted=%llu live=%zu cut=%llu refused=%llu up=%llu down=%llu paused=%d refusing=%d "
            "upgrades=%llu connects=%llu denied=%llu",
            n_accepted, live_count(), n_cut, n_refused, bytes_up, bytes_down, paused, refusing,
            n_upgrades, n_connects, n_denied);
    } else if (strcmp(line, "quit") == 0) {
        *quit = 1;
    } else {
        say("error %lu unknown command: %s", cmd_no, line);
        return;
    }
    say("ok %lu %s", cmd_no, line);
}

int main(int argc, char **argv)
{
    int listen_port = 0, opt;
    const char *port_file = NULL, *host = "127.0.0.1";
    while ((opt = getopt(argc, argv, "p:f:h:")) != -1) {
        switch (opt) {
        case 'p': listen_port = atoi(optarg); break;
        case 'f': port_file = optarg; break;
        case 'h': host = optarg; break;
        default: goto usage;
        }
    }
    if (optind + 1 != argc) {
    usage:
        fprintf(stderr, "usage: cutproxy [-p listen_port] [-f port_file] [-h target_host] target_port\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((unsigned short)atoi(argv[optind]));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1) {
        fprintf(stderr, "cutproxy: bad target host %s (numeric IPv4 only)\n", host);
        return 2;
    }

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in la;
    memset(&la, 0, sizeof la);
    la.sin_family = AF_INET;
    la.sin_port = htons((unsigned short)listen_port);
    la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&la, sizeof la) < 0) die("bind");
    if (listen(lfd, 128) < 0) die("listen");
    nonblock(lfd);
    socklen_t lalen = sizeof la;
    if (getsockname(lfd, (struct sockaddr *)&la, &lalen) < 0) die("getsockname");
    int port = ntohs(la.sin_port);

    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp%ld", port_file, (long)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f) die("port file");
        fprintf(f, "%d\n", port);
        if (fclose(f) != 0 || rename(tmp, port_file) != 0) die("port file");
    }
    say("ready %d", port);

    pid_t parent = getppid();
    nonblock(0);
    char line[1024];
    size_t linelen = 0;
    int quit = 0;
    struct pollfd *pfd = NULL;
    size_t pfdcap = 0;

    while (!quit) {
        size_t need = 2 + 2 * npairs;
        if (need > pfdcap) {
            pfdcap = need * 2;
            pfd = realloc(pfd, pfdcap * sizeof *pfd);
            if (!pfd) die("realloc");
        }
        pfd[0] = (struct pollfd){ .fd = 0, .events = POLLIN };
        pfd[1] = (struct pollfd){ .fd = lfd, .events = POLLIN };
        size_t np = npairs;
        for (size_t i = 0; i < np; i++) {
            struct pair *p = pairs[i];
            /* paused: the sockets are not polled at all, so a reset or FIN
             * from either side is noticed (and passed on) only at resume */
            int frozen = paused && !p->connecting;
            pfd[2 + 2 * i] = (struct pollfd){ .fd = frozen || p->connecting ? -1 : p->cfd,
                                              .events = want(p, 1) };
            pfd[3 + 2 * i] = (struct pollfd){ .fd = frozen ? -1 : p->sfd,
                                              .events = p->connecting ? POLLOUT : want(p, 0) };
        }
        int r = poll(pfd, 2 + 2 * np, 500);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (getppid() != parent) break; /* the process that started us is gone */
        if (pfd[1].revents & POLLIN) do_accept(lfd);
        for (size_t i = 0; i < np; i++) {
            short cr = pfd[2 + 2 * i].revents, sr = pfd[3 + 2 * i].revents;
            if (cr || sr) service(pairs[i], cr, sr);
        }
        reap();
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            for (;;) {
                ssize_t n = read(0, line + linelen, sizeof line - 1 - linelen);
                if (n == 0) { quit = 1; break; }
                if (n < 0) {
                    if (errno == EINTR) continue;
                    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                    quit = 1;
                    break;
                }
                linelen += (size_t)n;
                line[linelen] = 0;
                char *nl;
                while ((nl = strchr(line, '\n')) != NULL) {
                    *nl = 0;
                    command(line, &quit);
                    size_t used = (size_t)(nl + 1 - line);
                    memmove(line, nl + 1, linelen - used + 1);
                    linelen -= used;
                }
                if (linelen == sizeof line - 1) linelen = 0; /* overlong line: drop it */
            }
        }
    }
    for (size_t i = 0; i < npairs; i++) kill_pair(pairs[i], 1);
    return 0;
}
