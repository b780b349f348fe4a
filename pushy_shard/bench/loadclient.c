/* loadclient.c: the compiled load generator of `python -m pushy_shard.bench`.
 *
 * The orchestrator compiles this file once with the system C compiler into
 * ~/.cache/pushy-shard-bench/ and runs it as several processes. One epoll loop per process,
 * no threads, no crypto (the orchestrator signs every trigger in advance), libc only.
 *
 *   loadclient sub HOST PORT PREFIX NCONN CONCURRENCY TIMEOUT_MS NAP_US
 *       Opens NCONN SockJS websocket sessions (<PREFIX>/<server>/<session>/websocket, client
 *       frames masked), at most CONCURRENCY handshakes in flight, and reports their socket ids.
 *       A PREFIX "pusher:<path>" speaks the Pusher protocol instead: a WebSocket to
 *       <path>?protocol=7, one Pusher message per text frame; a plan payload's messages are
 *       separated by \x1f, each sent as a frame of its own, and a churner's leave is its
 *       unsubscribe followed by a pusher:ping, done when the pong comes (Pusher answers an
 *       unsubscribe with nothing).
 *       NAP_US > 0: while counting deliveries with no latency measured, pause that long after
 *       each busy epoll_wait so the next one returns many sockets at once (fewer wakeups: less
 *       CPU taken from the server on a small box; delivery times are read up to NAP_US late).
 *       Then follows commands on stdin, one per line:
 *         plan          followed by NCONN lines, one per connection, either
 *                         "<nsubs>\t<payload>"   send the SockJS payload (a JSON array of
 *                                                messages), expect nsubs subscription-success
 *                         "C\t<sub>\t<unsub>"    a churner: subscribes and unsubscribes on `churn`
 *         expect T0_NS DEADLINE_MS N [N1 ...]    reset the counters; report `done` once every
 *                       connection has N deliveries (one N for all, or one per connection).
 *                       An event whose data carries "bt":US was meant to be sent at T0+US µs:
 *                       its one-way latency from that intended time goes into a histogram.
 *         churn CYCLES DEADLINE_MS               every churner joins and leaves CYCLES times
 *         check         counts now against the last `expect` (late or duplicate deliveries)
 *         quit
 *   loadclient pub HOST PORT FILE COUNT CONNS START_NS RATE DEPTH TIMEOUT_MS
 *       Sends COUNT HTTP requests taken in turn from FILE (records "<length>\n<bytes>") over
 *       CONNS keep-alive connections, at most DEPTH in flight on each, from START_NS on: as fast
 *       as the server answers (RATE 0), or request i at START_NS + i/RATE s (a fixed schedule:
 *       a request that cannot go out on time goes out late; its latency still counts from its
 *       intended time, so a slow server cannot hide behind a slow publisher).
 *
 * Output: one JSON object per line on stdout, each with a "type". Times are CLOCK_MONOTONIC
 * nanoseconds, the clock of Python's time.monotonic_ns().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "loadclient"
#include "shared.h"

#define TAG_STDIN 0xffffffffu
#define TAG_TIMER 0xfffffffeu
#define MAX_FRAME (64u * 1024 * 1024)
#define MAX_HEADER 16384

/* ---------------------------------------------------------------- utilities */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static void fatal(const char *what) {
    fprintf(stderr, "loadclient: %s: %s\n", what, strerror(errno));
    exit(2);
}


static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void json_string(FILE *out, const char *s, size_t n) {
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
        else if (ch < 0x20) fprintf(out, "\\u%04x", ch);
        else fputc(ch, out);
    }
    fputc('"', out);
}

static int resolve(const char *host, const char *port, struct sockaddr_storage *addr,
                   socklen_t *len) {
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "loadclient: cannot resolve %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* errno -> count, reported as {"ECONNREFUSED": 3} */
#define MAX_ERRKINDS 16
static struct { int err; int count; } errkinds[MAX_ERRKINDS];

static void count_errno(int err) {
    for (int i = 0; i < MAX_ERRKINDS; i++) {
        if (errkinds[i].count == 0 || errkinds[i].err == err) {
            errkinds[i].err = err;
            errkinds[i].count++;
            return;
        }
    }
}

static void print_errkinds(FILE *out) {
    fputc('{', out);
    for (int i = 0; i < MAX_ERRKINDS && errkinds[i].count; i++) {
        int e = errkinds[i].err;
        const char *text = e == 0               ? "EOF"
                           : e == -1            ? "BAD_HANDSHAKE"
                           : e == -2            ? "CLOSED_BY_SERVER"
                           : e == -3            ? "PROTOCOL"
                           : e == ECONNREFUSED  ? "ECONNREFUSED"
                           : e == ECONNRESET    ? "ECONNRESET"
                           : e == EMFILE        ? "EMFILE"
                           : e == ENFILE        ? "ENFILE"
                           : e == EADDRNOTAVAIL ? "EADDRNOTAVAIL"
                           : e == ETIMEDOUT     ? "ETIMEDOUT"
                           : e == EPIPE         ? "EPIPE"
                                                : NULL;
        if (text) fprintf(out, "%s\"%s\":%d", i ? "," : "", text, errkinds[i].count);
        else fprintf(out, "%s\"errno %d\":%d", i ? "," : "", e, errkinds[i].count);
    }
    fputc('}', out);
}

/* ---------------------------------------------------------------- latency histogram
 * 1 µs buckets below 100 ms, 100 µs buckets to 10 s, 1 ms buckets to 100 s; max kept exact. */

#define H_T1 100000
#define H_T2 (H_T1 + 99000)
#define H_N (H_T2 + 90000)

typedef struct {
    uint32_t *count;
    uint64_t n;
    int64_t max_us;
    double sum_us;
} hist_t;

static size_t hist_index(int64_t us) {
    if (us < 100000) return (size_t)us;
    if (us < 10000000) return H_T1 + (size_t)((us - 100000) / 100);
    if (us < 100000000) return H_T2 + (size_t)((us - 10000000) / 1000);
    return H_N - 1;
}

static int64_t hist_value(size_t i) {
    if (i < H_T1) return (int64_t)i;
    if (i < H_T2) return 100000 + (int64_t)(i - H_T1) * 100;
    return 10000000 + (int64_t)(i - H_T2) * 1000;
}

static void hist_add(hist_t *h, int64_t us) {
    if (us < 0) us = 0;
    if (!h->count) h->count = calloc(H_N, sizeof *h->count);
    if (!h->count) return;
    h->count[hist_index(us)]++;
    h->n++;
    h->sum_us += (double)us;
    if (us > h->max_us) h->max_us = us;
}

static void hist_reset(hist_t *h) {
    if (h->count && h->n) memset(h->count, 0, H_N * sizeof *h->count);
    h->n = 0;
    h->max_us = 0;
    h->sum_us = 0;
}

/* {"n":..,"max_us":..,"sum_us":..,"buckets":[[lower_us,count],...]} */
static void hist_print(FILE *out, const hist_t *h) {
    fprintf(out, "{\"n\":%llu,\"max_us\":%lld,\"sum_us\":%.0f,\"buckets\":[",
            (unsigned long long)h->n, (long long)h->max_us, h->sum_us);
    int first = 1;
    for (size_t i = 0; h->count && h->n && i < H_N; i++) {
        if (!h->count[i]) continue;
        fprintf(out, "%s[%lld,%u]", first ? "" : ",", (long long)hist_value(i), h->count[i]);
        first = 0;
    }
    fputs("]}", out);
}

/* ================================================================= sub mode */

enum { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_WAIT_OPEN, C_WAIT_CONNECT, C_READY, C_CLOSED };
enum { CH_NONE, CH_JOINING, CH_LEAVING, CH_DONE };

typedef struct {
    int fd;
    int state;
    int front;
    int want_out;
    buf_t in, out, frag;
    char sid[64];
    int subs_want, subs_ok, subs_failed, subs_done;
    int64_t delivered, target;
    int reached;
    /* churners: pre-encoded websocket frames */
    int churner, churn_state, cycles;
    buf_t csub, cunsub;
} conn_t;

static conn_t *conns;
static int nconn, concurrency, epfd;
static const char *prefix;
static int pusher; /* the Pusher protocol, not SockJS + Pushy */
static struct sockaddr_storage addr;
static socklen_t addrlen;
static char hostport[300];
static int64_t phase_timeout_ns;

static int next_connect, in_progress, n_ready, n_connect_failed;
static int connected_reported;
static int64_t connect_deadline;

static int planning, plan_lines, subscribing, n_subs_done;
static int64_t subscribe_start, subscribe_deadline;

static int expecting, n_reached;
static int64_t base_ns, expect_deadline, first_ns, last_ns, total_delivered;
static hist_t latency;

static int churning, n_churners, n_churn_done, churn_target, churn_failed;
static int64_t churn_start, churn_end, churn_deadline, churn_cycles;

static int n_failures, n_lost;
static char first_failure[400];
static unsigned char mask_key[4];
static buf_t scratch;

static void record_failure(const char *text, size_t n) {
    if (n_failures++ == 0) {
        if (n >= sizeof first_failure) n = sizeof first_failure - 1;
        memcpy(first_failure, text, n);
        first_failure[n] = 0;
    }
}

static void ws_encode(buf_t *b, int opcode, const char *p, size_t n) {
    unsigned char h[14];
    size_t hl = 0;
    h[hl++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        h[hl++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (unsigned char)(n >> 8);
        h[hl++] = (unsigned char)(n & 0xff);
    } else {
        h[hl++] = 0x80 | 127;
        for (int s = 56; s >= 0; s -= 8) h[hl++] = (unsigned char)((uint64_t)n >> s);
    }
    memcpy(h + hl, mask_key, 4);
    hl += 4;
    buf_append(b, h, hl);
    buf_reserve(b, n);
    for (size_t i = 0; i < n; i++) b->p[b->len + i] = (char)(p[i] ^ mask_key[i & 3]);
    b->len += n;
}

static void set_interest(int i) {
    conn_t *c = &conns[i];
    int want = c->out.len > 0 || c->state == C_CONNECTING;
    if (want == c->want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void check_progress(void);

/* A connection is gone: its fd closes; its counts stay for the report. */
static void conn_lost(int i, int err) {
    conn_t *c = &conns[i];
    if (c->state == C_CLOSED) return;
    int was = c->state;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = C_CLOSED;
    c->out.len = 0;
    count_errno(err);
    if (was < C_READY) {
        in_progress--;
        n_connect_failed++;
    } else {
        n_lost++;
    }
    if (subscribing && !c->subs_done) {
        c->subs_done = 1;
        n_subs_done++;
    }
    if (expecting && !c->reached) {
        c->reached = 1; /* cannot progress any more; the report shows it under */
        n_reached++;
    }
    if (c->churner && (c->churn_state == CH_JOINING || c->churn_state == CH_LEAVING)) {
        c->churn_state = CH_DONE;
        churn_failed++;
        n_churn_done++;
    }
}

static void conn_flush(int i) {
    conn_t *c = &conns[i];
    while (c->out.len && c->state != C_CLOSED) {
        ssize_t w = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            conn_lost(i, errno);
            return;
        }
        buf_consume(&c->out, (size_t)w);
    }
    if (c->state != C_CLOSED) set_interest(i);
}

static void conn_send_frame(int i, const char *payload, size_t n) {
    if (conns[i].state == C_CLOSED) return;
    ws_encode(&conns[i].out, 0x1, payload, n);
    conn_flush(i);
}

static void start_connect(int i) {
    conn_t *c = &conns[i];
    in_progress++;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->fd = -1;
        c->state = C_CONNECTING;
        conn_lost(i, errno);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = C_CONNECTING;
    if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) {
        conn_lost(i, errno);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
    c->want_out = 1;
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void send_handshake(int i) {
    conn_t *c = &conns[i];
    char req[1024];
    static const char *rest = "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";
    int n = pusher ? snprintf(req, sizeof req,
                              "GET %s?protocol=7&client=bench HTTP/1.1\r\nHost: %s\r\n%s",
                              prefix, hostport, rest)
                   : snprintf(req, sizeof req,
                              "GET %s/%03d/%x%xs%d/websocket HTTP/1.1\r\nHost: %s\r\n%s",
                              prefix, i % 1000, (unsigned)getpid(), (unsigned)rand(), i,
                              hostport, rest);
    c->state = C_HANDSHAKE;
    buf_append(&c->out, req, (size_t)n);
    conn_flush(i);
}

static const char *find(const char *p, size_t n, const char *needle, size_t *rest) {
    size_t k = strlen(needle);
    const char *at = memmem(p, n, needle, k);
    if (!at) return NULL;
    *rest = n - (size_t)(at - p) - k;
    return at + k;
}

/* The value of "key" in a flat JSON text: points at its first character (a string's opening
 * quote is skipped), `rest` bytes follow. Whitespace around the colon is allowed. */
static const char *json_value(const char *p, size_t n, const char *quoted_key, size_t *rest) {
    const char *v = find(p, n, quoted_key, rest);
    if (!v) return NULL;
    const char *end = v + *rest;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) v++;
    if (v >= end || *v != ':') return NULL;
    v++;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) v++;
    if (v < end && *v == '"') v++;
    *rest = (size_t)(end - v);
    return v;
}

static int is_event(const char *ev, size_t evlen, const char *name) {
    size_t k = strlen(name);
    return evlen == k && memcmp(ev, name, k) == 0;
}

static void sub_done_one(int i) {
    conn_t *c = &conns[i];
    if (subscribing && !c->subs_done && c->subs_ok + c->subs_failed >= c->subs_want) {
        c->subs_done = 1;
        n_subs_done++;
    }
}

static void deliver(int i, const char *m, size_t n, int64_t t) {
    conn_t *c = &conns[i];
    c->delivered++;
    total_delivered++;
    if (!first_ns) first_ns = t;
    last_ns = t;
    if (base_ns) {
        size_t rest; /* Pusher's data is a JSON string: its keys are escaped */
        const char *v = json_value(m, n, pusher ? "\\\"bt\\\"" : "\"bt\"", &rest);
        if (v && rest) {
            int64_t bt = strtoll(v, NULL, 10);
            hist_add(&latency, (t - base_ns) / 1000 - bt);
        }
    }
    if (expecting && !c->reached && c->delivered >= c->target) {
        c->reached = 1;
        n_reached++;
    }
}

static void churn_step(int i, int joined) {
    conn_t *c = &conns[i];
    if (joined && c->churn_state == CH_JOINING) {
        c->churn_state = CH_LEAVING;
        buf_append(&c->out, c->cunsub.p, c->cunsub.len);
        conn_flush(i);
    } else if (!joined && c->churn_state == CH_LEAVING) {
        c->cycles++;
        churn_cycles++;
        if (c->cycles >= churn_target) {
            c->churn_state = CH_DONE;
            n_churn_done++;
        } else {
            c->churn_state = CH_JOINING;
            buf_append(&c->out, c->csub.p, c->csub.len);
            conn_flush(i);
        }
    }
}

/* One Pushy message (plain JSON text, already unescaped from the SockJS frame). */
static void on_message(int i, const char *m, size_t n, int64_t t) {
    conn_t *c = &conns[i];
    size_t rest;
    const char *ev = json_value(m, n, "\"event\"", &rest);
    if (!ev) {
        record_failure(m, n);
        return;
    }
    const char *end = memchr(ev, '"', rest);
    size_t evlen = end ? (size_t)(end - ev) : rest;
    if (evlen < 6 || memcmp(ev, "pushy:", 6) != 0) {
        deliver(i, m, n, t);
    } else if (is_event(ev, evlen, "pushy:connect")) {
        const char *sid = json_value(m, n, "\"socketId\"", &rest);
        const char *q = sid ? memchr(sid, '"', rest) : NULL;
        if (q && (size_t)(q - sid) < sizeof c->sid) {
            memcpy(c->sid, sid, (size_t)(q - sid));
            c->sid[q - sid] = 0;
        }
        if (c->state == C_WAIT_CONNECT) {
            c->state = C_READY;
            in_progress--;
            n_ready++;
        }
    } else if (is_event(ev, evlen, "pushy:subscription-success")) {
        if (c->churner) churn_step(i, 1);
        else {
            c->subs_ok++;
            sub_done_one(i);
        }
    } else if (is_event(ev, evlen, "pushy:subscription-end")) {
        if (c->churner) churn_step(i, 0);
        else record_failure(m, n);
    } else if (is_event(ev, evlen, "pushy:presence-add") ||
               is_event(ev, evlen, "pushy:presence-quit")) {
        deliver(i, m, n, t);
    } else { /* subscription-failed, subscription-needauth, error */
        record_failure(m, n);
        if (c->churner && c->churn_state != CH_DONE && c->churn_state != CH_NONE) {
            c->churn_state = CH_DONE;
            churn_failed++;
            n_churn_done++;
        } else {
            c->subs_failed++;
            sub_done_one(i);
        }
    }
}

/* One Pusher message (a text frame of its own, PUSHER.md 2). */
static void on_pusher(int i, const char *m, size_t n, int64_t t) {
    conn_t *c = &conns[i];
    size_t rest;
    const char *ev = json_value(m, n, "\"event\"", &rest);
    if (!ev) {
        record_failure(m, n);
        return;
    }
    const char *end = memchr(ev, '"', rest);
    size_t evlen = end ? (size_t)(end - ev) : rest;
    int internal = evlen >= 7 && memcmp(ev, "pusher:", 7) == 0;
    internal |= evlen >= 16 && memcmp(ev, "pusher_internal:", 16) == 0;
    if (!internal) {
        deliver(i, m, n, t);
    } else if (is_event(ev, evlen, "pusher:connection_established")) {
        const char *sid = find(m, n, "socket_id\\\":\\\"", &rest);
        const char *q = sid ? memchr(sid, '\\', rest) : NULL;
        if (q && (size_t)(q - sid) < sizeof c->sid) {
            memcpy(c->sid, sid, (size_t)(q - sid));
            c->sid[q - sid] = 0;
        }
        if (c->state == C_WAIT_CONNECT) {
            c->state = C_READY;
            in_progress--;
            n_ready++;
        }
    } else if (is_event(ev, evlen, "pusher_internal:subscription_succeeded")) {
        if (c->churner) churn_step(i, 1);
        else {
            c->subs_ok++;
            sub_done_one(i);
        }
    } else if (is_event(ev, evlen, "pusher:pong")) {
        if (c->churner) churn_step(i, 0);
    } else if (is_event(ev, evlen, "pusher:ping")) {
        static const char pong[] = "{\"event\":\"pusher:pong\",\"data\":{}}";
        conn_send_frame(i, pong, sizeof pong - 1);
    } else if (is_event(ev, evlen, "pusher_internal:member_added") ||
               is_event(ev, evlen, "pusher_internal:member_removed")) {
        deliver(i, m, n, t);
    } else if (is_event(ev, evlen, "pusher_internal:subscription_count")) {
        /* not counted */
    } else { /* pusher:error, pusher:subscription_error */
        record_failure(m, n);
        if (c->churner && c->churn_state != CH_DONE && c->churn_state != CH_NONE) {
            c->churn_state = CH_DONE;
            churn_failed++;
            n_churn_done++;
        } else {
            c->subs_failed++;
            sub_done_one(i);
        }
    }
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return 0;
}

/* a["msg", "msg", ...]: each element a JSON string holding one Pushy message. */
static void on_array(int i, const char *p, size_t n, int64_t t) {
    size_t k = 1;
    while (k < n && p[k] == ' ') k++;
    if (k >= n || p[k] != '[') goto bad;
    k++;
    for (;;) {
        while (k < n && (p[k] == ' ' || p[k] == ',')) k++;
        if (k >= n) goto bad;
        if (p[k] == ']') return;
        if (p[k] != '"') goto bad;
        k++;
        scratch.len = 0;
        buf_reserve(&scratch, n - k + 4);
        char *d = scratch.p;
        while (k < n && p[k] != '"') {
            if (p[k] != '\\') {
                *d++ = p[k++];
                continue;
            }
            if (k + 1 >= n) goto bad;
            char e = p[k + 1];
            k += 2;
            switch (e) {
            case 'b': *d++ = '\b'; break;
            case 'f': *d++ = '\f'; break;
            case 'n': *d++ = '\n'; break;
            case 'r': *d++ = '\r'; break;
            case 't': *d++ = '\t'; break;
            case 'u': {
                if (k + 4 > n) goto bad;
                unsigned u = (unsigned)(hexval(p[k]) << 12 | hexval(p[k + 1]) << 8 |
                                        hexval(p[k + 2]) << 4 | hexval(p[k + 3]));
                k += 4;
                if (u < 0x80) *d++ = (char)u;
                else if (u < 0x800) {
                    *d++ = (char)(0xc0 | u >> 6);
                    *d++ = (char)(0x80 | (u & 0x3f));
                } else {
                    *d++ = (char)(0xe0 | u >> 12);
                    *d++ = (char)(0x80 | ((u >> 6) & 0x3f));
                    *d++ = (char)(0x80 | (u & 0x3f));
                }
                break;
            }
            default: *d++ = e;
            }
        }
        if (k >= n) goto bad;
        k++;
        on_message(i, scratch.p, (size_t)(d - scratch.p), t);
        if (conns[i].state == C_CLOSED) return;
    }
bad:
    record_failure(p, n);
    conn_lost(i, -3);
}

/* One SockJS frame: o, h, a[...], c[code,"reason"]. */
static void on_sockjs(int i, const char *p, size_t n, int64_t t) {
    conn_t *c = &conns[i];
    if (n == 0) return;
    switch (p[0]) {
    case 'o':
        if (c->state == C_WAIT_OPEN) c->state = C_WAIT_CONNECT;
        break;
    case 'h': break;
    case 'a': on_array(i, p, n, t); break;
    case 'c':
        record_failure(p, n);
        conn_lost(i, -2);
        break;
    default:
        record_failure(p, n);
        conn_lost(i, -3);
    }
}

/* Complete websocket frames in p[0..n) (server frames, normally unmasked); returns bytes used. */
static size_t on_frames(int i, char *p, size_t n, int64_t t) {
    conn_t *c = &conns[i];
    size_t used = 0;
    while (n - used >= 2 && c->state != C_CLOSED) {
        unsigned char *f = (unsigned char *)p + used;
        size_t avail = n - used, hl;
        int fin = f[0] & 0x80, op = f[0] & 0x0f, masked = f[1] & 0x80;
        uint64_t len;
        if (!ws_header(f, avail, &len, &hl)) break;
        if (len > MAX_FRAME) {
            record_failure("frame too large", 15);
            conn_lost(i, -3);
            break;
        }
        if (avail < hl + len) break;
        char *payload = (char *)f + hl;
        if (masked)
            for (uint64_t k = 0; k < len; k++) payload[k] ^= (char)f[hl - 4 + (k & 3)];
        used += hl + (size_t)len;
        if (op == 0x9) { /* ping -> pong */
            ws_encode(&c->out, 0xA, payload, (size_t)len);
            conn_flush(i);
        } else if (op == 0x8) {
            conn_lost(i, -2);
        } else if (op == 0x1 || op == 0x2 || op == 0x0) {
            void (*on_text)(int, const char *, size_t, int64_t) = pusher ? on_pusher
                                                                          : on_sockjs;
            if (op != 0 && fin) {
                on_text(i, payload, (size_t)len, t);
            } else {
                if (op != 0) c->frag.len = 0;
                buf_append(&c->frag, payload, (size_t)len);
                if (fin) {
                    on_text(i, c->frag.p, c->frag.len, t);
                    buf_consume(&c->frag, c->frag.len);
                }
            }
        }
    }
    return used;
}

/* Bytes from the socket: the HTTP 101 answer first, then websocket frames. */
static size_t on_bytes(int i, char *p, size_t n, int64_t t) {
    conn_t *c = &conns[i];
    size_t used = 0;
    if (c->state == C_HANDSHAKE) {
        size_t rest;
        const char *end = find(p, n, "\r\n\r\n", &rest);
        if (!end) {
            if (n > MAX_HEADER) conn_lost(i, -1);
            return 0;
        }
        if (n < 12 || memcmp(p + 9, "101", 3) != 0) {
            const char *eol = memchr(p, '\r', n);
            record_failure(p, eol ? (size_t)(eol - p) : 40);
            conn_lost(i, -1);
            return n;
        }
        size_t hl = (size_t)(end - p);
        const char *fh = find(p, hl, "\r\nX-Pushy-Front: ", &rest);
        if (!fh) fh = find(p, hl, "\r\nx-pushy-front: ", &rest);
        c->front = fh ? atoi(fh) : -1;
        c->state = pusher ? C_WAIT_CONNECT : C_WAIT_OPEN; /* Pusher: no SockJS `o` */
        used = hl;
    }
    return used + on_frames(i, p + used, n - used, t);
}

static char rbuf[1 << 18];
static int nap_us;

static int64_t n_reads;

static void conn_read(int i) {
    conn_t *c = &conns[i];
    ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
    n_reads++;
    if (r == 0) {
        conn_lost(i, 0);
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR) conn_lost(i, errno);
        return;
    }
    int64_t t = now_ns();
    if (c->in.len == 0) {
        size_t used = on_bytes(i, rbuf, (size_t)r, t);
        if (c->state != C_CLOSED && used < (size_t)r)
            buf_append(&c->in, rbuf + used, (size_t)r - used);
    } else {
        buf_append(&c->in, rbuf, (size_t)r);
        size_t used = on_bytes(i, c->in.p, c->in.len, t);
        if (c->state != C_CLOSED) buf_consume(&c->in, used);
    }
}

static void conn_event(int i, uint32_t events) {
    conn_t *c = &conns[i];
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_lost(i, err);
            return;
        }
        if (events & (EPOLLOUT | EPOLLIN)) send_handshake(i);
        return;
    }
    if (events & EPOLLOUT) conn_flush(i);
    if (c->state != C_CLOSED && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) conn_read(i);
}

/* ---- reports */

static void print_connected(int timeout) {
    int fronts[64] = {0}, other = 0;
    for (int i = 0; i < nconn; i++) {
        if (conns[i].state != C_READY) continue;
        if (conns[i].front >= 0 && conns[i].front < 64) fronts[conns[i].front]++;
        else other++;
    }
    printf("{\"type\":\"connected\",\"timeout\":%s,\"ready\":%d,\"failed\":%d,\"errors\":",
           timeout ? "true" : "false", n_ready, nconn - n_ready);
    print_errkinds(stdout);
    printf(",\"fronts\":{");
    int first = 1;
    for (int f = 0; f < 64; f++)
        if (fronts[f]) {
            printf("%s\"%d\":%d", first ? "" : ",", f, fronts[f]);
            first = 0;
        }
    if (other) printf("%s\"?\":%d", first ? "" : ",", other);
    printf("},\"first_failure\":");
    json_string(stdout, first_failure, strlen(first_failure));
    printf(",\"sids\":[");
    for (int i = 0; i < nconn; i++) {
        printf("%s", i ? "," : "");
        json_string(stdout, conns[i].sid, strlen(conns[i].sid));
    }
    printf("]}\n");
    fflush(stdout);
}

static void print_subscribed(int timeout) {
    int ok = 0, failed = 0, pending = 0;
    for (int i = 0; i < nconn; i++) {
        conn_t *c = &conns[i];
        if (c->churner) continue;
        if (c->subs_ok >= c->subs_want && c->state != C_CLOSED) ok++;
        else if (c->subs_failed || c->state == C_CLOSED) failed++;
        else pending++;
    }
    printf("{\"type\":\"subscribed\",\"timeout\":%s,\"ok\":%d,\"failed\":%d,\"pending\":%d,"
           "\"ms\":%.1f,\"failures\":%d,\"first_failure\":",
           timeout ? "true" : "false", ok, failed, pending,
           (double)(now_ns() - subscribe_start) / 1e6, n_failures);
    json_string(stdout, first_failure, strlen(first_failure));
    printf("}\n");
    fflush(stdout);
}

static void print_counts(const char *type, int timeout) {
    int64_t under = 0, over = 0, closed = 0, expected = 0, sampled = 0;
    for (int i = 0; i < nconn; i++) {
        if (conns[i].state == C_CLOSED) closed++;
        expected += conns[i].target;
        if (conns[i].delivered < conns[i].target) under++;
        if (conns[i].delivered > conns[i].target) over++;
    }
    printf("{\"type\":\"%s\",\"timeout\":%s,\"total\":%lld,\"expected\":%lld,\"under\":%lld,"
           "\"over\":%lld,\"closed\":%lld,\"lost_connections\":%d,\"first_ns\":%lld,"
           "\"last_ns\":%lld,\"cpu_ns\":%lld,\"reads\":%lld,\"failures\":%d,\"first_failure\":",
           type, timeout ? "true" : "false", (long long)total_delivered, (long long)expected,
           (long long)under, (long long)over, (long long)closed, n_lost, (long long)first_ns,
           (long long)last_ns, (long long)cpu_ns(), (long long)n_reads, n_failures);
    json_string(stdout, first_failure, strlen(first_failure));
    printf(",\"errors\":");
    print_errkinds(stdout);
    printf(",\"mismatch\":[");
    for (int i = 0; i < nconn && sampled < 10; i++) {
        if (conns[i].delivered == conns[i].target) continue;
        printf("%s[%d,%lld,%lld]", sampled ? "," : "", i, (long long)conns[i].delivered,
               (long long)conns[i].target);
        sampled++;
    }
    printf("],\"latency\":");
    hist_print(stdout, &latency);
    printf("}\n");
    fflush(stdout);
}

static void print_churned(int timeout) {
    printf("{\"type\":\"churned\",\"timeout\":%s,\"churners\":%d,\"cycles\":%lld,\"failed\":%d,"
           "\"start_ns\":%lld,\"end_ns\":%lld,\"cpu_ns\":%lld,\"first_failure\":",
           timeout ? "true" : "false", n_churners, (long long)churn_cycles, churn_failed,
           (long long)churn_start, (long long)churn_end, (long long)cpu_ns());
    json_string(stdout, first_failure, strlen(first_failure));
    printf("}\n");
    fflush(stdout);
}

/* After every batch of events: start connects, finish phases. */
static void check_progress(void) {
    int64_t t = now_ns();
    while (!connected_reported && in_progress < concurrency && next_connect < nconn)
        start_connect(next_connect++);
    if (!connected_reported) {
        int all = next_connect >= nconn && n_ready + n_connect_failed >= nconn;
        if (all || t > connect_deadline) {
            connected_reported = 1;
            print_connected(!all);
        }
    }
    if (subscribing && !planning) {
        if (n_subs_done >= nconn || t > subscribe_deadline) {
            subscribing = 0;
            print_subscribed(n_subs_done < nconn);
        }
    }
    if (expecting && (n_reached >= nconn || t > expect_deadline)) {
        expecting = 0;
        print_counts("done", n_reached < nconn);
    }
    if (churning && (n_churn_done >= n_churners || t > churn_deadline)) {
        churning = 0;
        churn_end = t;
        print_churned(n_churn_done < n_churners);
    }
}

/* ---- commands on stdin */

/* A plan payload as client frames: one frame (SockJS: a JSON array of messages), or with
 * Pusher one frame per message, the messages separated by \x1f. */
static void encode_messages(buf_t *b, char *payload) {
    if (!pusher) {
        ws_encode(b, 0x1, payload, strlen(payload));
        return;
    }
    for (char *p = payload;;) {
        char *sep = strchr(p, '\x1f');
        ws_encode(b, 0x1, p, sep ? (size_t)(sep - p) : strlen(p));
        if (!sep) break;
        p = sep + 1;
    }
}

static void plan_line(char *line) {
    int i = plan_lines++;
    if (i >= nconn) return;
    conn_t *c = &conns[i];
    char *tab = strchr(line, '\t');
    if (line[0] == 'C' && tab) {
        char *tab2 = strchr(tab + 1, '\t');
        if (!tab2) return;
        *tab2 = 0;
        c->churner = 1;
        n_churners++;
        encode_messages(&c->csub, tab + 1);
        encode_messages(&c->cunsub, tab2 + 1);
        c->subs_done = 1;
        n_subs_done++;
        return;
    }
    c->subs_want = atoi(line);
    if (c->state == C_CLOSED || c->subs_want == 0 || !tab) {
        c->subs_done = 1;
        n_subs_done++;
        return;
    }
    encode_messages(&c->out, tab + 1);
    conn_flush(i);
}

static void command(char *line) {
    if (planning) {
        plan_line(line);
        if (plan_lines >= nconn) planning = 0;
        return;
    }
    if (strncmp(line, "plan", 4) == 0) {
        planning = 1;
        subscribing = 1;
        plan_lines = 0;
        n_subs_done = 0;
        subscribe_start = now_ns();
        subscribe_deadline = subscribe_start + phase_timeout_ns;
        if (nconn == 0) planning = 0;
    } else if (strncmp(line, "expect ", 7) == 0) {
        char *s = line + 7, *e;
        base_ns = strtoll(s, &e, 10);
        int64_t ms = strtoll(e, &e, 10);
        int64_t all = strtoll(e, &e, 10);
        total_delivered = first_ns = last_ns = 0;
        hist_reset(&latency);
        n_reached = 0;
        for (int i = 0; i < nconn; i++) {
            conn_t *c = &conns[i];
            c->delivered = 0;
            c->target = i == 0 ? all : (*e ? strtoll(e, &e, 10) : all);
            c->reached = c->target <= 0 || c->state == C_CLOSED;
            n_reached += c->reached;
        }
        expecting = 1;
        expect_deadline = now_ns() + ms * 1000000LL;
        printf("{\"type\":\"armed\",\"cpu_ns\":%lld,\"reads\":%lld}\n", (long long)cpu_ns(),
               (long long)n_reads);
        fflush(stdout);
    } else if (strncmp(line, "churn ", 6) == 0) {
        char *e;
        churn_target = (int)strtol(line + 6, &e, 10);
        int64_t ms = strtoll(e, &e, 10);
        churn_cycles = churn_failed = n_churn_done = 0;
        churn_start = now_ns();
        churn_deadline = churn_start + ms * 1000000LL;
        churning = 1;
        for (int i = 0; i < nconn; i++) {
            conn_t *c = &conns[i];
            if (!c->churner) continue;
            c->cycles = 0;
            if (c->state == C_CLOSED || churn_target <= 0) {
                c->churn_state = CH_DONE;
                churn_failed += c->state == C_CLOSED;
                n_churn_done++;
                continue;
            }
            c->churn_state = CH_JOINING;
            buf_append(&c->out, c->csub.p, c->csub.len);
            conn_flush(i);
        }
    } else if (strncmp(line, "check", 5) == 0) {
        print_counts("check", 0);
    } else if (strncmp(line, "quit", 4) == 0) {
        exit(0);
    } else {
        fprintf(stderr, "loadclient: unknown command: %s\n", line);
    }
}

static buf_t stdin_buf;

static void read_stdin(void) {
    char tmp[65536];
    ssize_t r = read(0, tmp, sizeof tmp);
    if (r == 0) exit(0); /* the orchestrator went away */
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        fatal("stdin");
    }
    buf_append(&stdin_buf, tmp, (size_t)r);
    size_t start = 0;
    for (;;) {
        char *nl = memchr(stdin_buf.p + start, '\n', stdin_buf.len - start);
        if (!nl) break;
        *nl = 0;
        command(stdin_buf.p + start);
        start = (size_t)(nl - stdin_buf.p) + 1;
    }
    buf_consume(&stdin_buf, start);
}

static int sub_main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: loadclient sub HOST PORT PREFIX NCONN CONCURRENCY TIMEOUT_MS "
                        "NAP_US\n");
        return 2;
    }
    const char *host = argv[2], *port = argv[3];
    prefix = argv[4];
    if (strncmp(prefix, "pusher:", 7) == 0) {
        pusher = 1;
        prefix += 7;
    }
    nconn = atoi(argv[5]);
    concurrency = atoi(argv[6]);
    if (concurrency < 1) concurrency = 1;
    phase_timeout_ns = strtoll(argv[7], NULL, 10) * 1000000LL;
    nap_us = atoi(argv[8]);
    snprintf(hostport, sizeof hostport, "%s:%s", host, port);
    if (resolve(host, port, &addr, &addrlen) < 0) return 2;
    srand((unsigned)(now_ns() ^ getpid()));
    for (int k = 0; k < 4; k++) mask_key[k] = (unsigned char)(rand() & 0xff);
    conns = calloc((size_t)nconn + 1, sizeof *conns);
    if (!conns) fatal("calloc");
    for (int i = 0; i < nconn; i++) conns[i].fd = -1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) fatal("epoll_create1");
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = TAG_STDIN};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
    connect_deadline = now_ns() + phase_timeout_ns;
    struct epoll_event evs[1024];
    for (;;) {
        check_progress();
        int n = epoll_wait(epfd, evs, 1024, 50);
        if (n < 0) {
            if (errno == EINTR) continue;
            fatal("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u32 == TAG_STDIN) read_stdin();
            else conn_event((int)evs[k].data.u32, evs[k].events);
        }
        if (nap_us && n > 0 && expecting && !base_ns && !churning)
            usleep((useconds_t)nap_us);
    }
}

/* ================================================================= pub mode */

typedef struct {
    int fd;
    int want_out;
    buf_t in;
    const char *wp; /* the part of the current request not yet written */
    size_t wleft;
    int inflight;
    int64_t sent[64]; /* per request in flight: the time its latency counts from */
    int qhead;
} pconn_t;

static pconn_t *pconns;
static int npconn, depth;
static char **rec_p;
static size_t *rec_n;
static size_t nrec;
static int64_t count, next_req, completed, failed_reqs, reconnects, status_counts[600];
static int64_t start_ns, interval_ns, max_lag_ns, sum_lag_ns, first_send_ns, last_resp_ns;
static int timerfd_, timer_armed;
static hist_t resp_latency;

static void load_records(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fatal(path);
    struct stat st;
    fstat(fileno(f), &st);
    char *data = malloc((size_t)st.st_size + 1);
    if (!data || fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) fatal("read");
    fclose(f);
    size_t cap = 16, off = 0;
    rec_p = malloc(cap * sizeof *rec_p);
    rec_n = malloc(cap * sizeof *rec_n);
    while (off < (size_t)st.st_size) {
        char *e;
        size_t len = strtoull(data + off, &e, 10);
        if (*e != '\n' || (size_t)(e + 1 - data) + len > (size_t)st.st_size) {
            fprintf(stderr, "loadclient: bad record file %s at %zu\n", path, off);
            exit(2);
        }
        if (nrec == cap) {
            cap *= 2;
            rec_p = xrealloc(rec_p, cap * sizeof *rec_p);
            rec_n = xrealloc(rec_n, cap * sizeof *rec_n);
        }
        rec_p[nrec] = e + 1;
        rec_n[nrec++] = len;
        off = (size_t)(e + 1 - data) + len;
    }
    if (!nrec) {
        fprintf(stderr, "loadclient: no records in %s\n", path);
        exit(2);
    }
}

static void pconn_open(int i) {
    pconn_t *c = &pconns[i];
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fatal("socket");
    if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0) fatal("connect (publisher)");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    c->fd = fd;
    c->want_out = 0;
    c->in.len = 0;
    c->wleft = 0;
    c->inflight = 0;
    c->qhead = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* The server closed a keep-alive connection: what was in flight is lost, count it. */
static void pconn_reset(int i) {
    pconn_t *c = &pconns[i];
    failed_reqs += c->inflight;
    if (c->inflight) count_errno(0);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    reconnects++;
    if (completed + failed_reqs < count) pconn_open(i);
}

static void pconn_interest(int i) {
    pconn_t *c = &pconns[i];
    int want = c->wleft > 0;
    if (want == c->want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void pconn_write(int i) {
    pconn_t *c = &pconns[i];
    while (c->wleft) {
        ssize_t w = send(c->fd, c->wp, c->wleft, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            pconn_reset(i);
            return;
        }
        c->wp += w;
        c->wleft -= (size_t)w;
    }
    pconn_interest(i);
}

static int64_t intended(int64_t k) { return start_ns + (interval_ns ? k * interval_ns : 0); }

/* Hand due requests to connections with room. */
static void pump(void) {
    int64_t t = now_ns();
    for (int round = 0; next_req < count; round++) {
        int progressed = 0;
        for (int i = 0; i < npconn && next_req < count; i++) {
            pconn_t *c = &pconns[i];
            if (c->wleft || c->inflight >= depth) continue;
            int64_t due = intended(next_req);
            if (interval_ns && due > t) {
                t = now_ns();
                if (due > t) goto arm;
            }
            const size_t r = (size_t)(next_req % (int64_t)nrec);
            if (interval_ns) { /* how late the schedule went out (0 when on time) */
                int64_t lag = t - due;
                if (lag > max_lag_ns) max_lag_ns = lag;
                sum_lag_ns += lag;
            }
            if (!first_send_ns) first_send_ns = t;
            c->sent[(c->qhead + c->inflight) % 64] = interval_ns ? due : t;
            c->inflight++;
            c->wp = rec_p[r];
            c->wleft = rec_n[r];
            next_req++;
            progressed = 1;
            pconn_write(i);
        }
        if (!progressed) return;
    }
    return;
arm:
    if (!timer_armed) {
        int64_t due = intended(next_req);
        struct itimerspec its = {0};
        its.it_value.tv_sec = due / 1000000000LL;
        its.it_value.tv_nsec = due % 1000000000LL;
        timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &its, NULL);
        timer_armed = 1;
    }
}

/* One whole HTTP response at the start of c->in? Returns its length, 0 if incomplete. */
static size_t http_response(pconn_t *c, int *status, int *close_after) {
    char *p = c->in.p;
    size_t n = c->in.len, rest;
    const char *end = find(p, n, "\r\n\r\n", &rest);
    if (!end) return 0;
    size_t hl = (size_t)(end - p);
    *status = n > 12 ? atoi(p + 9) : 0;
    *close_after = memcmp(p, "HTTP/1.0", 8) == 0;
    int64_t clen = -1;
    int chunked = 0;
    const char *line = memchr(p, '\n', hl);
    for (; line && line < end; line = memchr(line, '\n', (size_t)(end - line))) {
        line++;
        if (strncasecmp(line, "content-length:", 15) == 0) clen = strtoll(line + 15, NULL, 10);
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0)
            chunked = memmem(line, (size_t)(end - line) < 40 ? (size_t)(end - line) : 40,
                             "chunked", 7) != NULL;
        else if (strncasecmp(line, "connection:", 11) == 0) {
            const char *v = line + 11;
            while (*v == ' ') v++;
            if (strncasecmp(v, "close", 5) == 0) *close_after = 1;
        }
    }
    size_t body = hl;
    if (chunked) {
        size_t k = body;
        for (;;) {
            char *e;
            if (k >= n) return 0;
            unsigned long long sz = strtoull(p + k, &e, 16);
            const char *crlf = find(p + k, n - k, "\r\n", &rest);
            if (!crlf) return 0;
            k = (size_t)(crlf - p);
            if (sz == 0) {
                /* trailers end with an empty line */
                const char *fin = find(p + k - 2, n - k + 2, "\r\n\r\n", &rest);
                return fin ? (size_t)(fin - p) : 0;
            }
            if (k + sz + 2 > n) return 0;
            k += sz + 2;
        }
    }
    if (clen < 0) clen = 0;
    return hl + (size_t)clen <= n ? hl + (size_t)clen : 0;
}

static void pconn_read(int i) {
    pconn_t *c = &pconns[i];
    ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (r == 0) {
        pconn_reset(i);
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR) pconn_reset(i);
        return;
    }
    int64_t t = now_ns();
    buf_append(&c->in, rbuf, (size_t)r);
    for (;;) {
        int status = 0, close_after = 0;
        size_t used = http_response(c, &status, &close_after);
        if (!used) break;
        buf_consume(&c->in, used);
        if (c->inflight > 0) {
            hist_add(&resp_latency, (t - c->sent[c->qhead]) / 1000);
            c->qhead = (c->qhead + 1) % 64;
            c->inflight--;
        }
        completed++;
        last_resp_ns = t;
        status_counts[status > 0 && status < 600 ? status : 0]++;
        if (close_after) {
            pconn_reset(i);
            return;
        }
    }
}

static int64_t hist_percentile(const hist_t *h, double q) {
    if (!h->n || !h->count) return 0;
    uint64_t want = (uint64_t)(q * (double)h->n);
    if (want >= h->n) want = h->n - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < H_N; i++) {
        seen += h->count[i];
        if (seen > want) return hist_value(i);
    }
    return h->max_us;
}

static int pub_main(int argc, char **argv) {
    if (argc != 11) {
        fprintf(stderr, "usage: loadclient pub HOST PORT FILE COUNT CONNS START_NS RATE DEPTH "
                        "TIMEOUT_MS\n");
        return 2;
    }
    if (resolve(argv[2], argv[3], &addr, &addrlen) < 0) return 2;
    load_records(argv[4]);
    count = strtoll(argv[5], NULL, 10);
    npconn = atoi(argv[6]);
    start_ns = strtoll(argv[7], NULL, 10);
    double rate = atof(argv[8]);
    depth = atoi(argv[9]);
    int64_t timeout_ns = strtoll(argv[10], NULL, 10) * 1000000LL;
    if (npconn < 1) npconn = 1;
    if (depth < 1) depth = 1;
    if (depth > 64) depth = 64;
    interval_ns = rate > 0 ? (int64_t)(1e9 / rate) : 0;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    timerfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd < 0 || timerfd_ < 0) fatal("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = TAG_TIMER};
    epoll_ctl(epfd, EPOLL_CTL_ADD, timerfd_, &tev);
    pconns = calloc((size_t)npconn, sizeof *pconns);
    for (int i = 0; i < npconn; i++) pconn_open(i);
    int64_t t = now_ns();
    if (start_ns > t) {
        struct timespec ts = {start_ns / 1000000000LL, start_ns % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
    } else if (start_ns == 0) {
        start_ns = t;
    }
    int64_t deadline = now_ns() + timeout_ns;
    struct epoll_event evs[256];
    int timeout = 0;
    while (completed + failed_reqs < count) {
        pump();
        if (now_ns() > deadline) {
            timeout = 1;
            break;
        }
        int n = epoll_wait(epfd, evs, 256, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            fatal("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            uint32_t tag = evs[k].data.u32;
            if (tag == TAG_TIMER) {
                uint64_t ticks;
                if (read(timerfd_, &ticks, sizeof ticks) < 0) {}
                timer_armed = 0;
                continue;
            }
            if (evs[k].events & EPOLLOUT) pconn_write((int)tag);
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) pconn_read((int)tag);
        }
    }
    printf("{\"type\":\"published\",\"timeout\":%s,\"count\":%lld,\"sent\":%lld,"
           "\"completed\":%lld,\"failed\":%lld,\"reconnects\":%lld,\"start_ns\":%lld,"
           "\"first_send_ns\":%lld,\"last_resp_ns\":%lld,\"max_lag_us\":%lld,"
           "\"mean_lag_us\":%.1f,\"cpu_ns\":%lld,\"status\":{",
           timeout ? "true" : "false", (long long)count, (long long)next_req,
           (long long)completed, (long long)failed_reqs, (long long)reconnects,
           (long long)start_ns, (long long)first_send_ns, (long long)last_resp_ns,
           (long long)(max_lag_ns / 1000),
           next_req ? (double)sum_lag_ns / 1000.0 / (double)next_req : 0.0,
           (long long)cpu_ns());
    int first = 1;
    for (int s = 0; s < 600; s++)
        if (status_counts[s]) {
            printf("%s\"%d\":%lld", first ? "" : ",", s, (long long)status_counts[s]);
            first = 0;
        }
    printf("},\"response_us\":{\"p50\":%lld,\"p99\":%lld,\"max\":%lld}}\n",
           (long long)hist_percentile(&resp_latency, 0.5),
           (long long)hist_percentile(&resp_latency, 0.99), (long long)resp_latency.max_us);
    fflush(stdout);
    return timeout ? 1 : 0;
}

int main(int argc, char **argv) {
    raise_nofile();
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    if (argc >= 2 && strcmp(argv[1], "sub") == 0) return sub_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "pub") == 0) return pub_main(argc, argv);
    fprintf(stderr, "usage: loadclient sub|pub ... (see the comment at the top of loadclient.c)\n");
    return 2;
}
