/* floorserver.c: the reference floor of `python -m pushy_shard.bench --floor`.
 *
 * What the hardware charges for the bench's scenarios when a server does nothing but the
 * unavoidable: accept, one WebSocket handshake, subscription replies, and one write() per
 * member per event. The bench tool compiles it at first use (as it does loadclient.c) and
 * starts it on a free port; its figures are the denominator of the report's "/ floor" column.
 *
 *   floorserver PORT WRITERS
 *       WRITERS threads, each with its own SO_REUSEPORT listening socket on 127.0.0.1:PORT,
 *       its own epoll loop and its own connections (as pushy-shard's fronts are processes
 *       with their own). A trigger received by one writer is handed to every other (a
 *       mailbox and an eventfd each); each writes it to its own members. Prints
 *       "floor ready PORT WRITERS" once every socket listens.
 *
 * It speaks just enough for the load client, and both of its protocols:
 *   - any GET with `Upgrade: websocket` is answered 101 (Sec-WebSocket-Accept computed). A
 *     path with "/app/" is a Pusher connection (pusher:connection_established, one message per
 *     text frame); any other is a SockJS one (the `o` frame, pushy:connect, `a[...]` frames).
 *   - Pushy: subscribe / unsubscribe commands (subscription-success / -end); a private
 *     channel joined with `data` is a presence channel: the joiner's reply lists the members,
 *     the others get presence-add / presence-quit. Tokens are not checked.
 *   - Pusher: pusher:subscribe (subscription_succeeded, with ids and hash on presence-*),
 *     pusher:unsubscribe (no answer), pusher:ping (pong); member_added / member_removed go to
 *     the others, one per connection (no de-duplication per user: the bench's users are
 *     distinct). Auth is not checked.
 *   - POST .../channel/<name>/trigger?event=E (Pushy) and POST .../apps/<id>/events (Pusher):
 *     the signature is not checked; the event goes to every member; the answer is 200 `{}`.
 * Input is assumed to be what the load client sends (canonical JSON); this is a yardstick,
 * not a server.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "floorserver"
#include "shared.h"

#define MAX_WRITERS 64
#define MAX_HEAD 16384
#define BUCKETS 65536
#define TAG_LISTEN ((uint64_t)-1)
#define TAG_MAILBOX ((uint64_t)-2)

enum { K_HTTP, K_SOCKJS, K_PUSHER };

/* ---------------------------------------------------------------- buffers */

static void buf_str(buf_t *b, const char *s) { buf_append(b, s, strlen(s)); }

/* `s` as the body of a JSON string (quotes, backslashes and control characters escaped). */
static void buf_quote(buf_t *b, const char *s, size_t n) {
    buf_reserve(b, n + 8);
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = (unsigned char)s[k];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            buf_append(b, e, 2);
        } else if (ch < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", ch);
            buf_append(b, e, 6);
        } else {
            buf_append(b, &s[k], 1);
        }
    }
}

/* A server WebSocket text frame (unmasked) holding p[0..n). */
static void ws_frame(buf_t *b, const char *p, size_t n) {
    unsigned char h[10];
    size_t hl = 2;
    h[0] = 0x81;
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int k = 0; k < 8; k++) h[2 + k] = (unsigned char)((uint64_t)n >> (56 - 8 * k));
        hl = 10;
    }
    buf_append(b, h, hl);
    buf_append(b, p, n);
}

/* ---------------------------------------------------------------- SHA-1, base64 */

static uint32_t rol(uint32_t x, int k) { return x << k | x >> (32 - k); }

static void sha1(const unsigned char *msg, size_t n, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((n + 8) / 64 + 1) * 64;
    unsigned char *m = calloc(total, 1);
    if (!m) exit(2);
    memcpy(m, msg, n);
    m[n] = 0x80;
    uint64_t bits = (uint64_t)n * 8;
    for (int k = 0; k < 8; k++) m[total - 1 - k] = (unsigned char)(bits >> (8 * k));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int t = 0; t < 16; t++)
            w[t] = (uint32_t)m[off + 4 * t] << 24 | (uint32_t)m[off + 4 * t + 1] << 16 |
                   (uint32_t)m[off + 4 * t + 2] << 8 | m[off + 4 * t + 3];
        for (int t = 16; t < 80; t++) w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int t = 0; t < 80; t++) {
            uint32_t f, k;
            if (t < 20) f = (b & c) | (~b & d), k = 0x5A827999;
            else if (t < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (t < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t tmp = rol(a, 5) + f + e + k + w[t];
            e = d, d = c, c = rol(b, 30), b = a, a = tmp;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    free(m);
    for (int k = 0; k < 20; k++) out[k] = (unsigned char)(h[k / 4] >> (24 - 8 * (k % 4)));
}

static void base64(const unsigned char *in, size_t n, char *out) {
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t k = 0; k < n; k += 3) {
        uint32_t v = (uint32_t)in[k] << 16 | (k + 1 < n ? (uint32_t)in[k + 1] << 8 : 0) |
                     (k + 2 < n ? in[k + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = k + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = k + 2 < n ? abc[v & 63] : '=';
    }
    out[o] = 0;
}

/* ---------------------------------------------------------------- flat JSON scanning */

/* The value of "key" in a flat JSON text (whitespace around the colon allowed): points at
 * its first character, `rest` bytes follow. */
static const char *json_value(const char *p, size_t n, const char *quoted_key, size_t *rest) {
    size_t k = strlen(quoted_key);
    const char *at = memmem(p, n, quoted_key, k);
    if (!at) return NULL;
    const char *v = at + k, *end = p + n;
    while (v < end && (*v == ' ' || *v == ':')) v++;
    *rest = (size_t)(end - v);
    return v;
}

/* The end of the JSON string literal starting at its opening quote `s` (points past the
 * closing quote), or NULL. */
static const char *string_end(const char *s, const char *end) {
    if (s >= end || *s != '"') return NULL;
    for (s++; s < end; s++) {
        if (*s == '\\') s++;
        else if (*s == '"') return s + 1;
    }
    return NULL;
}

/* The body of a string value of `key` (still escaped): *len bytes at the result. */
static const char *json_string(const char *p, size_t n, const char *quoted_key, size_t *len) {
    size_t rest;
    const char *v = json_value(p, n, quoted_key, &rest);
    const char *e = v ? string_end(v, v + rest) : NULL;
    if (!e) return NULL;
    *len = (size_t)(e - v) - 2;
    return v + 1;
}

/* Unescapes a JSON string body into `out` (ASCII escapes; \uXXXX below 0x80 only). */
static void unescape(buf_t *out, const char *s, size_t n) {
    out->len = 0;
    buf_reserve(out, n + 1);
    for (size_t k = 0; k < n; k++) {
        char ch = s[k];
        if (ch == '\\' && k + 1 < n) {
            char e = s[++k];
            if (e == 'n') ch = '\n';
            else if (e == 't') ch = '\t';
            else if (e == 'r') ch = '\r';
            else if (e == 'u' && k + 4 < n) {
                ch = (char)strtol((char[]){s[k + 1], s[k + 2], s[k + 3], s[k + 4], 0}, NULL, 16);
                k += 4;
            } else ch = e;
        }
        out->p[out->len++] = ch;
    }
    out->p[out->len] = 0;
}

/* ---------------------------------------------------------------- state */

typedef struct conn conn_t;

typedef struct {
    char *name;
    conn_t **members;
    int n, cap;
} chan_t;

typedef struct {
    chan_t *chan;
    int presence;
    char *user;  /* presence: Pusher's user_id, or Pushy's memberId */
} sub_t;

struct conn {
    int fd, kind, closing, writer, id;
    buf_t in, out;
    sub_t *subs;
    int nsubs, capsubs;
};

typedef struct item {
    struct item *next;
    int exclude; /* connection id that does not get it, or -1 */
    size_t clen, mlen;
    char data[]; /* channel, then message */
} item_t;

typedef struct {
    int index, listen_fd, epoll_fd, event_fd;
    pthread_mutex_t lock;
    item_t *head, *tail; /* the mailbox */
    chan_t *table[BUCKETS];
    unsigned next_id;
    buf_t scratch, frame_sockjs, frame_pusher, msg, text;
} writer_t;

static writer_t writers[MAX_WRITERS];
static int nwriters;

/* Presence members of every channel, across writers: the joiner's reply lists them. */
typedef struct pmember {
    struct pmember *next;
    int conn_id;
    char *user, *info; /* memberId / user_id, and the record or user_info (escaped) */
} pmember_t;

typedef struct pchan {
    struct pchan *next;
    char *name;
    pmember_t *members, *last;
} pchan_t;

static pthread_mutex_t presence_lock = PTHREAD_MUTEX_INITIALIZER;
static pchan_t *presence[BUCKETS];

static unsigned hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t k = 0; k < n; k++) h = (h ^ (unsigned char)s[k]) * 16777619u;
    return h % BUCKETS;
}

static chan_t *channel(writer_t *w, const char *name, size_t n, int create) {
    unsigned b = hash(name, n);
    chan_t *c = w->table[b];
    /* buckets hold one channel each, probing on: the bench's channel counts are small */
    for (unsigned k = 0; c; k++) {
        if (strlen(c->name) == n && memcmp(c->name, name, n) == 0) return c;
        b = (b + 1) % BUCKETS;
        c = w->table[b];
        if (k > BUCKETS) return NULL;
    }
    if (!create) return NULL;
    c = calloc(1, sizeof *c);
    c->name = strndup(name, n);
    w->table[b] = c;
    return c;
}

/* ---------------------------------------------------------------- writing */

static void conn_write(writer_t *w, conn_t *c, const char *p, size_t n) {
    if (c->closing) return;
    if (c->out.len == 0) {
        ssize_t sent = send(c->fd, p, n, MSG_NOSIGNAL);
        if (sent == (ssize_t)n) return;
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                c->closing = 1;
                return;
            }
            sent = 0;
        }
        buf_append(&c->out, p + sent, n - (size_t)sent);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    buf_append(&c->out, p, n);
}

/* A message as a connection of `kind` frames it (SockJS: in an `a["..."]` frame). */
static void frame_into(writer_t *w, buf_t *f, int kind, const char *m, size_t n) {
    f->len = 0;
    if (kind == K_PUSHER) {
        ws_frame(f, m, n);
        return;
    }
    buf_t *t = &w->text;
    t->len = 0;
    buf_str(t, "a[\"");
    buf_quote(t, m, n);
    buf_str(t, "\"]");
    ws_frame(f, t->p, t->len);
}

/* One message to one connection in its protocol's framing. */
static void conn_send(writer_t *w, conn_t *c, const char *m, size_t n) {
    frame_into(w, &w->scratch, c->kind, m, n);
    conn_write(w, c, w->scratch.p, w->scratch.len);
}

/* Every local member of the channel but `exclude` gets the message: one write each, the
 * frames built once per protocol. */
static void fan_out(writer_t *w, const char *chan, size_t clen, const char *m, size_t mlen,
                    int exclude) {
    chan_t *ch = channel(w, chan, clen, 0);
    if (!ch || ch->n == 0) return;
    w->frame_sockjs.len = w->frame_pusher.len = 0;
    for (int k = 0; k < ch->n; k++) {
        conn_t *c = ch->members[k];
        if (c->id == exclude) continue;
        buf_t *f = c->kind == K_PUSHER ? &w->frame_pusher : &w->frame_sockjs;
        if (f->len == 0) frame_into(w, f, c->kind, m, mlen); /* once per protocol */
        conn_write(w, c, f->p, f->len);
    }
}

/* To the channel's members on every writer: the others through their mailboxes. */
static void broadcast(writer_t *w, const char *chan, size_t clen, const char *m, size_t mlen,
                      int exclude) {
    for (int k = 0; k < nwriters; k++) {
        if (k == w->index) continue;
        writer_t *o = &writers[k];
        item_t *it = malloc(sizeof *it + clen + mlen);
        it->next = NULL;
        it->exclude = exclude;
        it->clen = clen;
        it->mlen = mlen;
        memcpy(it->data, chan, clen);
        memcpy(it->data + clen, m, mlen);
        pthread_mutex_lock(&o->lock);
        if (o->tail) o->tail->next = it;
        else o->head = it;
        o->tail = it;
        pthread_mutex_unlock(&o->lock);
        uint64_t one = 1;
        if (write(o->event_fd, &one, sizeof one) < 0) { /* full counter: it wakes anyway */
        }
    }
    fan_out(w, chan, clen, m, mlen, exclude);
}

static void drain_mailbox(writer_t *w) {
    uint64_t count;
    if (read(w->event_fd, &count, sizeof count) < 0) { /* nothing to read */
    }
    pthread_mutex_lock(&w->lock);
    item_t *it = w->head;
    w->head = w->tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (it) {
        item_t *next = it->next;
        fan_out(w, it->data, it->clen, it->data + it->clen, it->mlen, it->exclude);
        free(it);
        it = next;
    }
}

/* ---------------------------------------------------------------- presence */

static pchan_t *pchannel(const char *name, size_t n) {
    unsigned b = hash(name, n);
    for (pchan_t *p = presence[b]; p; p = p->next)
        if (strlen(p->name) == n && memcmp(p->name, name, n) == 0) return p;
    pchan_t *p = calloc(1, sizeof *p);
    p->name = strndup(name, n);
    p->next = presence[b];
    presence[b] = p;
    return p;
}

/* Adds a member; `list` gets the members' records, comma-separated, as the protocol lists
 * them (Pushy: records; Pusher: ids, then `hash` entries in `list2`). */
static int presence_join(const char *chan, size_t clen, int conn_id, const char *user,
                         const char *info, int pusher, buf_t *list, buf_t *list2) {
    pthread_mutex_lock(&presence_lock);
    pchan_t *p = pchannel(chan, clen);
    pmember_t *m = calloc(1, sizeof *m);
    m->conn_id = conn_id;
    m->user = strdup(user);
    m->info = strdup(info);
    if (p->last) p->last->next = m;
    else p->members = m;
    p->last = m;
    list->len = list2->len = 0;
    int count = 0;
    for (pmember_t *q = p->members; q; q = q->next, count++) {
        if (list->len) buf_str(list, ",");
        if (pusher) {
            if (list2->len) buf_str(list2, ",");
            buf_str(list, "\\\"");
            buf_str(list, q->user);
            buf_str(list, "\\\"");
            buf_str(list2, "\\\"");
            buf_str(list2, q->user);
            buf_str(list2, "\\\":");
            buf_str(list2, q->info);
        } else {
            buf_str(list, q->info);
        }
    }
    pthread_mutex_unlock(&presence_lock);
    return count;
}

static void presence_leave(const char *chan, size_t clen, int conn_id) {
    pthread_mutex_lock(&presence_lock);
    pchan_t *p = pchannel(chan, clen);
    pmember_t **at = &p->members, *prev = NULL;
    while (*at && (*at)->conn_id != conn_id) {
        prev = *at;
        at = &(*at)->next;
    }
    if (*at) {
        pmember_t *gone = *at;
        *at = gone->next;
        if (p->last == gone) p->last = prev;
        free(gone->user);
        free(gone->info);
        free(gone);
    }
    pthread_mutex_unlock(&presence_lock);
}

/* ---------------------------------------------------------------- subscriptions */

static void join(writer_t *w, conn_t *c, const char *name, size_t n, int is_presence,
                 const char *user) {
    chan_t *ch = channel(w, name, n, 1);
    if (!ch) return;
    if (ch->n == ch->cap) {
        ch->cap = ch->cap ? ch->cap * 2 : 4;
        ch->members = xrealloc(ch->members, sizeof *ch->members * (size_t)ch->cap);
    }
    ch->members[ch->n++] = c;
    if (c->nsubs == c->capsubs) {
        c->capsubs = c->capsubs ? c->capsubs * 2 : 2;
        c->subs = xrealloc(c->subs, sizeof *c->subs * (size_t)c->capsubs);
    }
    c->subs[c->nsubs++] = (sub_t){ch, is_presence, user ? strdup(user) : NULL};
}

/* Leaves subscription k of `c`: out of the channel, the others told on a presence channel. */
static void leave(writer_t *w, conn_t *c, int k) {
    sub_t s = c->subs[k];
    c->subs[k] = c->subs[--c->nsubs];
    chan_t *ch = s.chan;
    for (int j = 0; j < ch->n; j++)
        if (ch->members[j] == c) {
            ch->members[j] = ch->members[--ch->n];
            break;
        }
    size_t clen = strlen(ch->name);
    if (s.presence) {
        presence_leave(ch->name, clen, c->id);
        buf_t *m = &w->msg;
        m->len = 0;
        if (c->kind == K_PUSHER) {
            buf_str(m, "{\"event\":\"pusher_internal:member_removed\",\"channel\":\"");
            buf_append(m, ch->name, clen);
            buf_str(m, "\",\"data\":\"{\\\"user_id\\\":\\\"");
            buf_str(m, s.user);
            buf_str(m, "\\\"}\"}");
        } else {
            buf_str(m, "{\"event\":\"pushy:presence-quit\",\"channel\":\"");
            buf_append(m, ch->name, clen);
            buf_str(m, "\",\"data\":{\"member\":{\"memberId\":\"");
            buf_str(m, s.user);
            buf_str(m, "\"}}}");
        }
        broadcast(w, ch->name, clen, m->p, m->len, c->id); /* w->msg: fan_out leaves it be */
    }
    free(s.user);
}

static int find_sub(conn_t *c, const char *name, size_t n) {
    for (int k = 0; k < c->nsubs; k++)
        if (strlen(c->subs[k].chan->name) == n && memcmp(c->subs[k].chan->name, name, n) == 0)
            return k;
    return -1;
}

/* ---------------------------------------------------------------- the two protocols */

/* One Pushy message (already unescaped from its SockJS array). */
static void on_pushy(writer_t *w, conn_t *c, const char *m, size_t n) {
    size_t cl, chl, rest;
    const char *cmd = json_string(m, n, "\"command\"", &cl);
    const char *args = json_value(m, n, "\"data\"", &rest); /* the command's own data */
    const char *chan = args ? json_string(args, rest, "\"channel\"", &chl) : NULL;
    if (!cmd || !chan) return;
    char name[512];
    if (chl >= sizeof name) return;
    memcpy(name, chan, chl);
    name[chl] = 0;
    for (char *p = name; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    buf_t *r = &w->msg;
    if (cl == 9 && strncasecmp(cmd, "subscribe", 9) == 0) {
        if (find_sub(c, name, chl) >= 0) return;
        size_t dl;
        const char *data = json_string(args + 1, rest - 1, "\"data\"", &dl);
        int is_presence = data && strncasecmp(name, "private-", 8) == 0;
        char member[16];
        snprintf(member, sizeof member, "%08x", (unsigned)c->id);
        buf_t list = {0};
        if (is_presence) {
            buf_t record = {0}, unused = {0};
            buf_str(&record, "{\"memberId\":\"");
            buf_str(&record, member);
            buf_str(&record, "\",\"data\":\"");
            buf_append(&record, data, dl);
            buf_str(&record, "\"}");
            buf_append(&record, "", 1);
            presence_join(name, chl, c->id, member, record.p, 0, &list, &unused);
            r->len = 0;
            buf_str(r, "{\"event\":\"pushy:presence-add\",\"channel\":\"");
            buf_str(r, name);
            buf_str(r, "\",\"data\":{\"member\":");
            buf_str(r, record.p);
            buf_str(r, "}}");
            broadcast(w, name, chl, r->p, r->len, c->id);
            buf_free(&record);
            buf_free(&unused);
        }
        r->len = 0;
        buf_str(r, "{\"event\":\"pushy:subscription-success\",\"channel\":\"");
        buf_str(r, name);
        buf_str(r, "\",\"data\":{\"channel\":\"");
        buf_str(r, name);
        buf_str(r, "\",\"memberId\":\"");
        buf_str(r, member);
        if (is_presence) {
            buf_str(r, "\",\"presence\":[");
            buf_append(r, list.p, list.len);
            buf_str(r, "]}}");
        } else {
            buf_str(r, "\"}}");
        }
        buf_free(&list);
        join(w, c, name, chl, is_presence, member);
        conn_send(w, c, r->p, r->len);
    } else if (cl == 11 && strncasecmp(cmd, "unsubscribe", 11) == 0) {
        int k = find_sub(c, name, chl);
        if (k < 0) return;
        leave(w, c, k);
        r->len = 0;
        buf_str(r, "{\"event\":\"pushy:subscription-end\",\"channel\":\"");
        buf_str(r, name);
        buf_str(r, "\",\"data\":{\"channel\":\"");
        buf_str(r, name);
        buf_str(r, "\"}}");
        conn_send(w, c, r->p, r->len);
    }
}

/* A SockJS client frame: a JSON array of strings, each one Pushy message. */
static void on_sockjs(writer_t *w, conn_t *c, const char *p, size_t n) {
    const char *end = p + n, *s = memchr(p, '[', n);
    if (!s) return;
    buf_t one = {0};
    for (s++; s < end; s++) {
        if (*s != '"') continue;
        const char *e = string_end(s, end);
        if (!e) break;
        unescape(&one, s + 1, (size_t)(e - s) - 2);
        on_pushy(w, c, one.p, one.len);
        s = e - 1;
    }
    buf_free(&one);
}

/* One Pusher message (a text frame of its own). */
static void on_pusher(writer_t *w, conn_t *c, const char *m, size_t n) {
    size_t el, chl;
    const char *ev = json_string(m, n, "\"event\"", &el);
    if (!ev) return;
    buf_t *r = &w->msg;
    if (el == 11 && memcmp(ev, "pusher:ping", 11) == 0) {
        static const char pong[] = "{\"event\":\"pusher:pong\",\"data\":\"{}\"}";
        conn_send(w, c, pong, sizeof pong - 1);
        return;
    }
    const char *chan = json_string(m, n, "\"channel\"", &chl);
    if (!chan || chl >= 512) return;
    char name[512];
    memcpy(name, chan, chl);
    name[chl] = 0;
    if (el == 16 && memcmp(ev, "pusher:subscribe", 16) == 0) {
        if (find_sub(c, name, chl) >= 0) return;
        int is_presence = strncmp(name, "presence-", 9) == 0;
        size_t dl = 0;
        const char *data = is_presence ? json_string(m, n, "\"channel_data\"", &dl) : NULL;
        char user[256] = "";
        r->len = 0;
        buf_str(r, "{\"event\":\"pusher_internal:subscription_succeeded\",\"channel\":\"");
        buf_str(r, name);
        if (data) {
            /* channel_data (escaped): {\"user_id\":\"U\",\"user_info\":INFO} */
            size_t ul, rest;
            const char *u = json_value(data, dl, "user_id\\\"", &rest);
            const char *ue = u ? memmem(u + 2, rest > 2 ? rest - 2 : 0, "\\\"", 2) : NULL;
            if (u && ue && u[0] == '\\' && (ul = (size_t)(ue - u - 2)) < sizeof user) {
                memcpy(user, u + 2, ul);
                user[ul] = 0;
            }
            const char *info = json_value(data, dl, "user_info\\\"", &rest);
            buf_t infos = {0}, ids = {0}, hashes = {0};
            if (info && rest > 0) buf_append(&infos, info, rest - 1); /* less the object's } */
            else buf_str(&infos, "{}");
            buf_append(&infos, "", 1);
            int count = presence_join(name, chl, c->id, user, infos.p, 1, &ids, &hashes);
            char tail[48];
            snprintf(tail, sizeof tail, "},\\\"count\\\":%d}}\"}", count);
            buf_str(r, "\",\"data\":\"{\\\"presence\\\":{\\\"ids\\\":[");
            buf_append(r, ids.p, ids.len);
            buf_str(r, "],\\\"hash\\\":{");
            buf_append(r, hashes.p, hashes.len);
            buf_str(r, tail);
            buf_free(&infos);
            buf_free(&ids);
            buf_free(&hashes);
            buf_t add = {0};
            buf_str(&add, "{\"event\":\"pusher_internal:member_added\",\"channel\":\"");
            buf_str(&add, name);
            buf_str(&add, "\",\"data\":\"");
            buf_append(&add, data, dl);
            buf_str(&add, "\"}");
            broadcast(w, name, chl, add.p, add.len, c->id);
            buf_free(&add);
        } else {
            buf_str(r, "\",\"data\":\"{}\"}");
        }
        join(w, c, name, chl, data != NULL, data ? user : NULL);
        conn_send(w, c, r->p, r->len);
    } else if (el == 18 && memcmp(ev, "pusher:unsubscribe", 18) == 0) {
        int k = find_sub(c, name, chl);
        if (k >= 0) leave(w, c, k);
    }
}

/* ---------------------------------------------------------------- HTTP */

static void percent_decode(char *s) {
    char *d = s;
    for (; *s; s++) {
        if (*s == '%' && s[1] && s[2]) {
            *d++ = (char)strtol((char[]){s[1], s[2], 0}, NULL, 16);
            s += 2;
        } else *d++ = *s;
    }
    *d = 0;
}

/* The answers pushy-shard gives: Pushy's 201 with its status body, Pusher's 200 `{}`. */
static const char CREATED[] = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                              "Content-Length: 38\r\n\r\n"
                              "{\"status\":{\"code\":201,\"message\":\"Ok\"}}";
static const char OK[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         "Content-Length: 2\r\n\r\n{}";

static void trigger_pushy(writer_t *w, const char *path, const char *body, size_t blen) {
    const char *at = strstr(path, "/channel/");
    if (!at) return;
    at += 9;
    const char *slash = strchr(at, '/');
    if (!slash) return;
    char chan[512], event[256] = "";
    size_t n = (size_t)(slash - at);
    if (n >= sizeof chan) return;
    memcpy(chan, at, n);
    chan[n] = 0;
    percent_decode(chan);
    const char *ev = strstr(slash, "event=");
    if (ev) {
        size_t k = strcspn(ev + 6, "& ");
        if (k >= sizeof event) return;
        memcpy(event, ev + 6, k);
        event[k] = 0;
        percent_decode(event);
    }
    for (char *p = chan; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    buf_t *m = &w->msg;
    m->len = 0;
    buf_str(m, "{\"event\":\"");
    buf_str(m, event);
    buf_str(m, "\",\"channel\":\"");
    buf_str(m, chan);
    buf_str(m, "\",\"data\":");
    buf_append(m, body, blen ? blen : 2);
    if (!blen) m->p[m->len - 2] = '{', m->p[m->len - 1] = '}';
    buf_str(m, "}");
    broadcast(w, chan, strlen(chan), m->p, m->len, -1);
}

static void trigger_pusher(writer_t *w, const char *body, size_t blen) {
    size_t nl, dl, rest;
    const char *name = json_string(body, blen, "\"name\"", &nl);
    const char *data = json_string(body, blen, "\"data\"", &dl);
    const char *list = json_value(body, blen, "\"channels\"", &rest);
    if (!name || !data || !list || *list != '[') return;
    const char *end = list + rest;
    for (const char *s = list + 1; s < end && *s != ']'; s++) {
        if (*s != '"') continue;
        const char *e = string_end(s, end);
        if (!e) break;
        size_t cl = (size_t)(e - s) - 2;
        buf_t m = {0};
        buf_str(&m, "{\"event\":\"");
        buf_append(&m, name, nl);
        buf_str(&m, "\",\"channel\":\"");
        buf_append(&m, s + 1, cl);
        buf_str(&m, "\",\"data\":\"");
        buf_append(&m, data, dl);
        buf_str(&m, "\"}");
        broadcast(w, s + 1, cl, m.p, m.len, -1);
        buf_free(&m);
        s = e - 1;
    }
}

static const char *header(const char *head, const char *name, size_t *len) {
    size_t k = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, name, k) == 0 && line[2 + k] == ':') {
            const char *v = line + 3 + k;
            while (*v == ' ') v++;
            *len = strcspn(v, "\r");
            return v;
        }
    }
    return NULL;
}

static void greet(writer_t *w, conn_t *c) {
    char text[160];
    if (c->kind == K_PUSHER) {
        int n = snprintf(text, sizeof text,
                         "{\"event\":\"pusher:connection_established\",\"data\":\"{\\\"socket_id"
                         "\\\":\\\"%d.%d\\\",\\\"activity_timeout\\\":120}\"}",
                         w->index + 1, c->id);
        conn_send(w, c, text, (size_t)n);
    } else {
        buf_t *f = &w->scratch;
        f->len = 0;
        ws_frame(f, "o", 1);
        conn_write(w, c, f->p, f->len);
        int n = snprintf(text, sizeof text,
                         "{\"event\":\"pushy:connect\",\"data\":{\"socketId\":\"f%d-%d\","
                         "\"protocol\":\"websocket\"}}",
                         w->index, c->id);
        conn_send(w, c, text, (size_t)n);
    }
}

/* Complete requests in c->in; returns 0 once the connection became a WebSocket. */
static int on_http(writer_t *w, conn_t *c) {
    while (c->in.len) {
        char *end = memmem(c->in.p, c->in.len, "\r\n\r\n", 4);
        if (!end) {
            if (c->in.len > MAX_HEAD) c->closing = 1;
            return 1;
        }
        size_t hl = (size_t)(end - c->in.p) + 4, vl = 0;
        char *head = strndup(c->in.p, hl);
        const char *cl = header(head, "Content-Length", &vl);
        size_t blen = cl ? strtoul(cl, NULL, 10) : 0;
        if (c->in.len < hl + blen) {
            free(head);
            return 1;
        }
        char path[2048] = "";
        sscanf(head, "%*s %2047s", path);
        const char *key = header(head, "Sec-WebSocket-Key", &vl);
        if (strncmp(head, "GET ", 4) == 0 && key && vl < 64) {
            char text[256];
            unsigned char digest[20];
            char accept[32];
            int n = snprintf(text, sizeof text, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
                             (int)vl, key);
            sha1((unsigned char *)text, (size_t)n, digest);
            base64(digest, 20, accept);
            n = snprintf(text, sizeof text,
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
            conn_write(w, c, text, (size_t)n);
            c->kind = strstr(path, "/app/") ? K_PUSHER : K_SOCKJS;
            free(head);
            buf_consume(&c->in, hl);
            greet(w, c);
            return 0;
        }
        const char *body = c->in.p + hl;
        int post = strncmp(head, "POST ", 5) == 0;
        if (post && strstr(path, "/trigger")) {
            trigger_pushy(w, path, body, blen);
            conn_write(w, c, CREATED, sizeof CREATED - 1);
        } else {
            if (post && strstr(path, "/apps/") && strstr(path, "/events"))
                trigger_pusher(w, body, blen);
            conn_write(w, c, OK, sizeof OK - 1);
        }
        free(head);
        buf_consume(&c->in, hl + blen);
    }
    return 1;
}

/* Complete client frames in c->in (masked). */
static void on_ws(writer_t *w, conn_t *c) {
    size_t used = 0;
    while (c->in.len - used >= 2 && !c->closing) {
        unsigned char *f = (unsigned char *)c->in.p + used;
        size_t avail = c->in.len - used, hl;
        int op = f[0] & 0x0f;
        uint64_t len;
        if (!ws_header(f, avail, &len, &hl) || avail < hl + len) break;
        char *payload = (char *)f + hl;
        if (f[1] & 0x80)
            for (uint64_t k = 0; k < len; k++) payload[k] ^= (char)f[hl - 4 + (k & 3)];
        used += hl + (size_t)len;
        if (op == 0x8) {
            c->closing = 1;
        } else if (op == 0x9) {
            unsigned char pong[2] = {0x8A, 0};
            conn_write(w, c, (char *)pong, 2);
        } else if (op == 0x1) {
            if (c->kind == K_PUSHER) on_pusher(w, c, payload, (size_t)len);
            else on_sockjs(w, c, payload, (size_t)len);
        }
    }
    buf_consume(&c->in, used);
}

/* ---------------------------------------------------------------- the loop */

static void conn_close(writer_t *w, conn_t *c) {
    while (c->nsubs) leave(w, c, c->nsubs - 1);
    epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c->subs);
    free(c);
}

static void on_readable(writer_t *w, conn_t *c) {
    static __thread char chunk[65536];
    for (;;) {
        ssize_t n = recv(c->fd, chunk, sizeof chunk, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            c->closing = 1;
            return;
        }
        if (n < 0) return;
        buf_append(&c->in, chunk, (size_t)n);
        if (c->kind != K_HTTP || !on_http(w, c)) on_ws(w, c);
        if (c->in.len == 0) buf_free(&c->in); /* an idle connection keeps no buffer */
        if (c->closing || (size_t)n < sizeof chunk) return;
    }
}

static void on_writable(writer_t *w, conn_t *c) {
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) c->closing = 1;
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void *run(void *arg) {
    writer_t *w = arg;
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(w->epoll_fd, events, 256, -1);
        for (int k = 0; k < n; k++) {
            uint64_t tag = events[k].data.u64;
            if (tag == TAG_LISTEN) {
                int fd;
                while ((fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->writer = w->index;
                    c->id = (int)(w->next_id++ * (unsigned)nwriters + (unsigned)w->index);
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
                }
            } else if (tag == TAG_MAILBOX) {
                drain_mailbox(w);
            } else {
                conn_t *c = events[k].data.ptr;
                if (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(w, c);
                if (!c->closing && (events[k].events & EPOLLOUT)) on_writable(w, c);
                if (c->closing) conn_close(w, c);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floorserver PORT WRITERS\n");
        return 2;
    }
    int port = atoi(argv[1]);
    nwriters = atoi(argv[2]);
    if (nwriters < 1 || nwriters > MAX_WRITERS) {
        fprintf(stderr, "floorserver: WRITERS must be 1..%d\n", MAX_WRITERS);
        return 2;
    }
    for (int k = 0; k < nwriters; k++) {
        writer_t *w = &writers[k];
        w->index = k;
        pthread_mutex_init(&w->lock, NULL);
        w->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(w->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(w->listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (bind(w->listen_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
            listen(w->listen_fd, 4096) < 0) {
            fprintf(stderr, "floorserver: port %d: %s\n", port, strerror(errno));
            return 3;
        }
        w->epoll_fd = epoll_create1(0);
        w->event_fd = eventfd(0, EFD_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
        epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev);
        ev.data.u64 = TAG_MAILBOX;
        epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->event_fd, &ev);
    }
    printf("floor ready %d %d\n", port, nwriters);
    fflush(stdout);
    pthread_t threads[MAX_WRITERS];
    for (int k = 1; k < nwriters; k++) pthread_create(&threads[k], NULL, run, &writers[k]);
    run(&writers[0]);
    return 0;
}
