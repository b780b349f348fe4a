/* shared.h: what both of the bench's C programs use (loadclient.c, floorserver.c): a
 * growable byte buffer and the WebSocket frame header. PROGRAM names the program in the
 * out-of-memory message. */
#ifndef PUSHY_BENCH_SHARED_H
#define PUSHY_BENCH_SHARED_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, PROGRAM ": out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return q;
}

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static inline void buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static inline void buf_append(buf_t *b, const void *data, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

/* Drops the first n bytes; an emptied buffer gives back what a large frame took. */
static inline void buf_consume(buf_t *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        if (b->cap > 65536) {
            free(b->p);
            b->p = NULL;
            b->cap = 0;
        }
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static inline void buf_free(buf_t *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* The header of the WebSocket frame at f (avail bytes there): its payload length in *len
 * and the header's own length (mask included) in *hl; 0 while the header is incomplete. */
static inline int ws_header(const unsigned char *f, size_t avail, uint64_t *len, size_t *hl) {
    if (avail < 2) return 0;
    *hl = 2;
    *len = f[1] & 0x7f;
    if (*len == 126) {
        if (avail < 4) return 0;
        *len = (uint64_t)f[2] << 8 | f[3];
        *hl = 4;
    } else if (*len == 127) {
        if (avail < 10) return 0;
        *len = 0;
        for (int k = 0; k < 8; k++) *len = *len << 8 | f[2 + k];
        *hl = 10;
    }
    if (f[1] & 0x80) *hl += 4;
    return 1;
}

#endif
