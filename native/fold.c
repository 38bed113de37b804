/*
 * ot_replay._fold: the compiled stream fold of otlake ingest.
 *
 * It does what warehouse.projector.Projector does for a batch of `ot` and
 * `file` rows (sorted by repl_id, seq): replay each packet onto its file,
 * check versions and CRC-32s, track file lineages across create/move/remove,
 * and emit the rows of ot_ops, path_events, file_breaks and checkpoints plus
 * the list of refused rows -- with exactly the Projector's results, which
 * the tests check row for row. warehouse/fold_native.py is the wrapper that
 * turns Arrow tables into the raw buffers read here and back.
 *
 * Design
 *   - The loop runs with the GIL released and creates no Python object for
 *     a packet that is accepted. Python is entered only for rare work: a
 *     repl with stored state to resume, an op list this reader does not
 *     fully understand (handed to events.validate.parse_ops, so every
 *     oddity of JSON and of the op contract is decided by the reference
 *     code), and the BadEvent of a refused row.
 *   - A file's text is a list of UTF-8 chunks of at most CHUNK_BYTES bytes,
 *     addressed by code point through a cursor (the chunk edited last), so
 *     an edit costs O(chunk), not O(file).
 *   - The CRC-32 after a packet costs about one chunk, not the file: every
 *     chunk keeps the CRC of the document up to its end (valid below
 *     pre_valid) and its own CRC, and the text caches the CRC of the
 *     unchanged chunks after the one edited last (the "suffix"); zlib's
 *     crc32_combine_op joins CRCs, so a jump elsewhere in the file costs a
 *     combine per chunk passed, not a pass over their bytes. Bytes are read
 *     with carry-less multiplication (PCLMULQDQ) where the CPU has it.
 *
 * Errors: a function returning int gives 0 on success and -1 on failure,
 * with the failure's kind in Ctx.err (no memory, invalid input, or a Python
 * exception already set). fold() then frees everything and raises.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FOLD_CLMUL 1
#include <immintrin.h>
#endif

/* Chunk size in bytes (fold's chunk_bytes argument, this by default): a chunk never holds
 * more; an overfull one is cut into pieces of about half as much, and one shrunk below an
 * eighth merges with a neighbour when both fit in one chunk. */
#define CHUNK_BYTES 1024
#define CHUNK_BYTES_MIN 16
#define CHUNK_BYTES_MAX (1 << 16)  /* keeps the per-call table of combine operators small */
/* Counts at or above this (2**53) are left to Python: C sums of them cannot overflow. */
#define SAFE_COUNT ((int64_t)1 << 53)

/* ======================================================================== */
/* Allocation (with a test hook to fail one chosen allocation)               */
/* ======================================================================== */

/* Test hook (_fold._fail_after): when > 0, the allocation that brings it to 0 fails. Only
 * the tests set it, from one thread; in production it stays 0. */
static long fail_countdown;

static inline int fail_now(void)
{
    return fail_countdown > 0 && --fail_countdown == 0;
}

static void *xmalloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

static void *xcalloc(size_t n, size_t size)
{
    return fail_now() ? NULL : calloc(n, size);
}

static void *xrealloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

/* ======================================================================== */
/* CRC-32                                                                    */
/* ======================================================================== */

#ifdef FOLD_CLMUL
/* CRC-32 by folding with carry-less multiplication (Intel's "Fast CRC Computation for
 * Generic Polynomials Using PCLMULQDQ"; the constants are those of zlib's and Linux's
 * x86 versions for the bit-reflected IEEE polynomial). Works on the raw CRC register
 * (not inverted); len >= 64 and a multiple of 16. */
__attribute__((target("sse4.1,pclmul"))) static uint32_t crc32_clmul(uint32_t crc, const unsigned char *buf,
                                                                    size_t len)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124);
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
    const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i x1, x2, x3, x4, x5, x6, x7, x8;

    x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    buf += 64;
    len -= 64;
    /* fold 4 x 128 bits at a time */
    while (len >= 64) {
        x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
        x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
        x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
        x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
        x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
        x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
        x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(buf + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(buf + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(buf + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(buf + 0x30)));
        buf += 64;
        len -= 64;
    }
    /* fold the four into one */
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x2), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x3), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x4), x5);
    /* then 128 bits at a time */
    while (len >= 16) {
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, _mm_loadu_si128((const __m128i *)buf)), x5);
        buf += 16;
        len -= 16;
    }
    /* 128 -> 64 bits */
    x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, low32);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, k5k0, 0x00), x2);
    /* Barrett reduction to 32 bits */
    x2 = _mm_and_si128(x1, low32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x10);
    x2 = _mm_and_si128(x2, low32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

static int have_clmul;  /* set at import: the CPU has PCLMULQDQ and SSE4.1 */
#endif

/* zlib's crc32(crc, buf, len), with carry-less multiplication where the CPU has it. */
static uint32_t crc32_buf(uint32_t crc, const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;
#ifdef FOLD_CLMUL
    if (have_clmul && len >= 64) {
        size_t n = len & ~(size_t)15;
        crc = ~crc32_clmul(~crc, p, n);
        p += n;
        len -= n;
    }
#endif
    return (uint32_t)crc32_z(crc, p, len);
}

/* ======================================================================== */
/* Growable byte buffer                                                      */
/* ======================================================================== */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

/* Make room for `extra` more bytes; -1 when out of memory. */
static int buf_grow(Buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > (SIZE_MAX >> 2) - b->len)
        return -1;
    size_t need = b->len + extra, cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = xrealloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const void *src, size_t n)
{
    if (n > b->cap - b->len && buf_grow(b, n))
        return -1;
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static inline int buf_byte(Buf *b, char c)
{
    if (b->len == b->cap && buf_grow(b, 1))
        return -1;
    b->p[b->len++] = c;
    return 0;
}

static void buf_free(Buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Decimal digits of v into out (at least 21 bytes); returns the length. */
static size_t fmt_i64(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}

/* ======================================================================== */
/* UTF-8 helpers                                                             */
/* ======================================================================== */

/* Length of the well-formed UTF-8 sequence at p (n bytes available), 0 if ill-formed.
 * Refuses overlong forms, encoded surrogates and code points past U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Continuation bytes (10xxxxxx: bit 7 set, bit 6 clear) among the 8 bytes of w. */
static inline size_t count_cont(uint64_t w)
{
    uint64_t cont = (w & ~(w << 1) & HIGHS) >> 7;  /* 0 or 1 per byte */
    return (size_t)((cont * ONES) >> 56);          /* their sum, in the top byte */
}

/* Does w hold a byte that ends or escapes a JSON string: ", \ or below 0x20?
 * (Exact as to presence: the borrows of these tests only spread above a hit.) */
static inline int json_special8(uint64_t w)
{
    uint64_t q = w ^ (ONES * '"'), bs = w ^ (ONES * '\\');
    return (((q - ONES) & ~q) | ((bs - ONES) & ~bs) | ((w - ONES * 0x20) & ~w)) & HIGHS ? 1 : 0;
}

/* Number of code points in valid UTF-8 (bytes that are not continuation bytes). */
static size_t utf8_count(const char *p, size_t len)
{
    size_t n = len, i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        n -= count_cont(w);
    }
    for (; i < len; i++)
        n -= ((unsigned char)p[i] & 0xC0) == 0x80;
    return n;
}

/* Byte offset of code point k in valid UTF-8 p[0..len); len when k is the code point count. */
static size_t utf8_offset(const char *p, size_t len, size_t k)
{
    size_t i = 0;
    /* whole 8-byte words while the k-th code point lies past them */
    while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        size_t starts = 8 - count_cont(w);
        if (starts > k)
            break;
        k -= starts;
        i += 8;
    }
    for (; i < len; i++) {
        if (((unsigned char)p[i] & 0xC0) != 0x80) {
            if (k == 0)
                return i;
            k--;
        }
    }
    return len;
}

/* ======================================================================== */
/* Text: a file's content as a list of UTF-8 chunks                          */
/* ======================================================================== */

typedef struct {
    char *data;    /* never NULL */
    uint32_t len;  /* bytes, at most Text.max */
    uint32_t cap;
    uint32_t ncp;  /* code points */
    uint32_t pre;  /* CRC-32 of the document from its start through this chunk */
    uint32_t own;  /* CRC-32 of this chunk alone, valid when own_ok */
    int own_ok;
} Chunk;

typedef struct {
    Chunk *c;
    size_t n, cap;     /* chunks; n >= 1, and only a lone chunk may be empty */
    size_t ncp;        /* code points of the document */
    size_t cur, cur_cp;  /* cursor: a chunk and the code point it starts at */
    size_t pre_valid;  /* c[i].pre is valid for i < pre_valid */
    size_t max;        /* chunk size in bytes */
    /* CRC cache of the chunks suf_from..n-1 (standalone CRC, byte length and the
     * crc32_combine_op operator for that length); valid while none of them changed. */
    int suf_ok;
    size_t suf_from, suf_len;
    uLong suf_crc, suf_op;
} Text;

/* Room for `need` <= max bytes in chunk c. */
static int chunk_fit(Chunk *c, size_t need, size_t max)
{
    if (need <= c->cap)
        return 0;
    size_t cap = (size_t)c->cap * 2;
    if (cap < need)
        cap = need;
    if (cap > max)
        cap = max;
    char *p = xrealloc(c->data, cap);
    if (p == NULL)
        return -1;
    c->data = p;
    c->cap = (uint32_t)cap;
    return 0;
}

/* Room for `n` chunks in the chunk array. */
static int text_reserve(Text *t, size_t n)
{
    if (n <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 4;
    while (cap < n)
        cap *= 2;
    Chunk *c = xrealloc(t->c, cap * sizeof *c);
    if (c == NULL)
        return -1;
    t->c = c;
    t->cap = cap;
    return 0;
}

/* An empty text with chunks of `max` bytes. */
static int text_init(Text *t, size_t max)
{
    memset(t, 0, sizeof *t);
    t->max = max;
    if (text_reserve(t, 1))
        return -1;
    t->c[0].data = xmalloc(64);
    if (t->c[0].data == NULL)
        return -1;
    t->c[0].len = t->c[0].ncp = 0;
    t->c[0].cap = 64;
    t->c[0].own_ok = 0;
    t->n = 1;
    return 0;
}

static void text_free(Text *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->c[i].data);
    free(t->c);
    t->c = NULL;
    t->n = t->cap = 0;
}

/* Bookkeeping of the CRC caches when chunk i changed content ... */
static void on_change(Text *t, size_t i)
{
    t->c[i].own_ok = 0;
    if (i < t->pre_valid)
        t->pre_valid = i;
    if (t->suf_ok && i >= t->suf_from)
        t->suf_ok = 0;
}

/* ... when a new chunk was inserted at index i (the chunks from i on moved up by one) ... */
static void on_insert(Text *t, size_t i)
{
    if (i < t->pre_valid)
        t->pre_valid = i;
    if (t->suf_ok) {
        if (i <= t->suf_from)
            t->suf_from++;
        else
            t->suf_ok = 0;
    }
}

/* ... and when chunk i was removed (the chunks after it moved down by one). */
static void on_remove(Text *t, size_t i)
{
    if (i < t->pre_valid)
        t->pre_valid = i;
    if (t->suf_ok) {
        if (i < t->suf_from)
            t->suf_from--;
        else
            t->suf_ok = 0;
    }
}

/* The end of the piece of data[0..len) that starts at `start`: about `target` bytes on, at the
 * start of a code point (whole code points are at most 4 bytes, pieces many more). */
static size_t next_cut(const char *data, size_t len, size_t start, size_t target)
{
    if (len - start <= target)
        return len;
    size_t e = start + target, b = e;
    while (b > start && ((unsigned char)data[b] & 0xC0) == 0x80)
        b--;
    if (b == start)
        for (b = e; b < len && ((unsigned char)data[b] & 0xC0) == 0x80; b++)
            ;
    return b;
}

/* Replace chunk ci's content by data[0..len) (valid UTF-8); content of more than one chunk
 * is cut into pieces of at most half a chunk, so typing into them does not split them
 * again at once. The text's totals are the caller's. Changes nothing when out of memory. */
static int split_replace(Text *t, size_t ci, const char *data, size_t len)
{
    size_t half = t->max / 2, target = len, pieces = 1;
    if (len > t->max) {
        pieces = (len + half - 1) / half;
        target = (len + pieces - 1) / pieces;
        pieces = 0;
        for (size_t at = 0; at < len; at = next_cut(data, len, at, target))
            pieces++;
    }
    size_t *cut = xmalloc((pieces + 1) * sizeof *cut);
    char **mem = xcalloc(pieces, sizeof *mem);
    if (cut == NULL || mem == NULL || text_reserve(t, t->n + pieces - 1))
        goto nomem;
    cut[0] = 0;
    for (size_t k = 1; k <= pieces; k++)
        cut[k] = next_cut(data, len, cut[k - 1], target);
    for (size_t k = 0; k < pieces; k++) {
        size_t n = cut[k + 1] - cut[k];
        mem[k] = xmalloc(n > 64 ? n : 64);
        if (mem[k] == NULL)
            goto nomem;
        memcpy(mem[k], data + cut[k], n);
    }
    /* commit: nothing can fail from here on */
    if (pieces > 1)
        memmove(&t->c[ci + pieces], &t->c[ci + 1], (t->n - ci - 1) * sizeof(Chunk));
    free(t->c[ci].data);
    for (size_t k = 0; k < pieces; k++) {
        Chunk *c = &t->c[ci + k];
        size_t n = cut[k + 1] - cut[k];
        c->data = mem[k];
        c->len = (uint32_t)n;
        c->cap = (uint32_t)(n > 64 ? n : 64);
        c->ncp = (uint32_t)utf8_count(mem[k], n);
        c->pre = 0;
        c->own_ok = 0;
    }
    t->n += pieces - 1;
    on_change(t, ci);
    for (size_t k = 1; k < pieces; k++)
        on_insert(t, ci + k);
    if (t->cur > ci)
        t->cur += pieces - 1;
    free(cut);
    free(mem);
    return 0;
nomem:
    if (mem != NULL)
        for (size_t k = 0; k < pieces; k++)
            free(mem[k]);
    free(cut);
    free(mem);
    return -1;
}

/* A text holding data[0..len) (valid UTF-8 of ncp code points). */
static int text_set(Text *t, size_t max, const char *data, size_t len, size_t ncp)
{
    if (text_init(t, max))
        return -1;
    if (len && split_replace(t, 0, data, len))
        return -1;
    t->ncp = ncp;
    return 0;
}

/* Move the cursor to the chunk holding code point pos and return pos's offset in it.
 * inclusive: pos may be the chunk's end (an insert there appends to the chunk);
 * otherwise pos must be inside the chunk (a delete), which needs pos < t->ncp. */
static size_t text_seek(Text *t, size_t pos, int inclusive)
{
    size_t ci = t->cur, start = t->cur_cp;
    while (pos < start) {
        ci--;
        start -= t->c[ci].ncp;
    }
    while (ci + 1 < t->n && (inclusive ? pos > start + t->c[ci].ncp : pos >= start + t->c[ci].ncp)) {
        start += t->c[ci].ncp;
        ci++;
    }
    t->cur = ci;
    t->cur_cp = start;
    return pos - start;
}

/* Byte offset of code point k in chunk c (ASCII chunks are indexed directly). */
static inline size_t chunk_offset(const Chunk *c, size_t k)
{
    return c->len == c->ncp ? k : utf8_offset(c->data, c->len, k);
}

/* Insert s (nb bytes of valid UTF-8, ncp code points) at code point pos <= t->ncp. */
static int text_insert(Text *t, size_t pos, const char *s, size_t nb, size_t ncp)
{
    size_t off = text_seek(t, pos, 1);
    size_t ci = t->cur;
    Chunk *c = &t->c[ci];
    size_t b = chunk_offset(c, off);
    if (c->len + nb <= t->max) {
        if (chunk_fit(c, c->len + nb, t->max))
            return -1;
        memmove(c->data + b + nb, c->data + b, c->len - b);
        memcpy(c->data + b, s, nb);
        c->len += (uint32_t)nb;
        c->ncp += (uint32_t)ncp;
        on_change(t, ci);
    } else {
        size_t total = c->len + nb;
        char *tmp = xmalloc(total);
        if (tmp == NULL)
            return -1;
        memcpy(tmp, c->data, b);
        memcpy(tmp + b, s, nb);
        memcpy(tmp + b + nb, c->data + b, c->len - b);
        int r = split_replace(t, ci, tmp, total);
        free(tmp);
        if (r)
            return -1;
    }
    t->ncp += ncp;
    return 0;
}

/* Append chunk i+1 to chunk i (the caller checked they fit in one chunk). */
static int merge_next(Text *t, size_t i)
{
    Chunk *a = &t->c[i], *b = &t->c[i + 1];
    size_t a_ncp = a->ncp;
    if (chunk_fit(a, (size_t)a->len + b->len, t->max))
        return -1;
    memcpy(a->data + a->len, b->data, b->len);
    a->len += b->len;
    a->ncp += b->ncp;
    free(b->data);
    memmove(&t->c[i + 1], &t->c[i + 2], (t->n - i - 2) * sizeof(Chunk));
    t->n--;
    on_change(t, i);
    on_remove(t, i + 1);
    if (t->cur == i + 1) {
        t->cur = i;
        t->cur_cp -= a_ncp;
    } else if (t->cur > i + 1) {
        t->cur--;
    }
    return 0;
}

/* Merge a small chunk i into a neighbour when both fit in one chunk. */
static int maybe_merge(Text *t, size_t i)
{
    if (t->n < 2 || t->c[i].len >= t->max / 8)
        return 0;
    if (i + 1 < t->n && (size_t)t->c[i].len + t->c[i + 1].len <= t->max)
        return merge_next(t, i);
    if (i > 0 && (size_t)t->c[i - 1].len + t->c[i].len <= t->max)
        return merge_next(t, i - 1);
    return 0;
}

/* Delete n code points at pos (pos + n <= t->ncp, n > 0). */
static int text_delete(Text *t, size_t pos, size_t n)
{
    t->ncp -= n;
    while (n) {
        size_t off = text_seek(t, pos, 0);
        size_t ci = t->cur;
        Chunk *c = &t->c[ci];
        size_t take = c->ncp - off < n ? c->ncp - off : n;
        size_t b0, b1;
        if (c->len == c->ncp) {
            b0 = off;
            b1 = off + take;
        } else {
            b0 = utf8_offset(c->data, c->len, off);
            b1 = b0 + utf8_offset(c->data + b0, c->len - b0, take);
        }
        memmove(c->data + b0, c->data + b1, c->len - b1);
        c->len -= (uint32_t)(b1 - b0);
        c->ncp -= (uint32_t)take;
        n -= take;
        on_change(t, ci);
        if (c->len == 0 && t->n > 1) {  /* drop the emptied chunk; its neighbours meet */
            free(c->data);
            memmove(&t->c[ci], &t->c[ci + 1], (t->n - ci - 1) * sizeof(Chunk));
            t->n--;
            on_remove(t, ci);
            if (ci == t->n) {  /* it was the last: the cursor steps back onto the new last */
                t->cur = ci - 1;
                t->cur_cp -= t->c[ci - 1].ncp;
            }
        }
    }
    return maybe_merge(t, t->cur);
}

/* CRC-32 (zlib/IEEE) of the UTF-8 of the whole document. len_op[k] is zlib's
 * crc32_combine_op operator for k bytes, for every k up to the chunk size. */
static uint32_t text_crc(Text *t, const uint32_t *len_op)
{
    Chunk *c = t->c;
    size_t n = t->n, s = t->suf_ok ? t->suf_from : n;
    /* Prefix CRCs up to the cached suffix: usually just the chunk edited last, read
     * through. Further chunks (after a jump) cost a combine each when their own CRC is
     * known; their own CRC is taken when the prefix passes them, so a chunk typed into
     * again and again is read once per packet, and others once after each edit. */
    uint32_t crc = t->pre_valid ? c[t->pre_valid - 1].pre : 0;
    for (size_t i = t->pre_valid; i < s; i++) {
        if (c[i].own_ok) {
            crc = (uint32_t)crc32_combine_op(crc, c[i].own, len_op[c[i].len]);
        } else if (i == t->cur) {
            crc = crc32_buf(crc, c[i].data, c[i].len);
        } else {
            c[i].own = crc32_buf(0, c[i].data, c[i].len);
            c[i].own_ok = 1;
            crc = (uint32_t)crc32_combine_op(crc, c[i].own, len_op[c[i].len]);
        }
        c[i].pre = crc;
    }
    if (s > t->pre_valid)
        t->pre_valid = s;
    uLong prefix = s ? c[s - 1].pre : 0;
    size_t slen = t->suf_ok ? t->suf_len : 0;
    uLong total = slen ? crc32_combine_op(prefix, t->suf_crc, t->suf_op) : prefix;

    /* Let the cached suffix start right after the cursor's chunk, so the next packet,
     * likely typed there too, needs only that chunk. The CRC of the chunks between
     * follows from crc(AB) = crc(A) * x^(8|B|) + crc(B) with the prefix CRCs at hand. */
    size_t target = t->cur + 1;
    if (target < s) {
        size_t mid = 0;
        for (size_t i = target; i < s; i++)
            mid += c[i].len;
        uLong crc_mid = prefix ^ crc32_combine_op(c[target - 1].pre, 0, crc32_combine_gen((z_off_t)mid));
        uLong suffix = slen ? crc32_combine_op(crc_mid, t->suf_crc, t->suf_op) : crc_mid;
        slen += mid;
        t->suf_crc = suffix;
        t->suf_len = slen;
        t->suf_op = crc32_combine_gen((z_off_t)slen);
        t->suf_from = target;
        t->suf_ok = 1;
    } else if (!t->suf_ok) {
        t->suf_ok = 1;  /* the empty suffix past the last chunk */
        t->suf_from = n;
        t->suf_len = 0;
        t->suf_crc = 0;
    }
    return (uint32_t)total;
}

/* ======================================================================== */
/* Files of one repl                                                         */
/* ======================================================================== */

typedef struct {
    char *path;  /* UTF-8, owned */
    size_t plen;
    int64_t file_id, version;
    int broken;       /* the content is unknown since a bad packet */
    char *bkind;      /* that packet's error kind (owned) and seq */
    size_t bkind_len;
    int64_t bseq;
    Text text;
} File;

static void file_free(File *f)
{
    if (f == NULL)
        return;
    text_free(&f->text);
    free(f->path);
    free(f->bkind);
    free(f);
}

/* A new lineage at path, empty; NULL when out of memory. */
static File *file_new(const char *path, size_t plen, int64_t file_id, size_t chunk)
{
    File *f = xcalloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    f->path = xmalloc(plen ? plen : 1);
    if (f->path == NULL || text_init(&f->text, chunk)) {
        file_free(f);
        return NULL;
    }
    memcpy(f->path, path, plen);
    f->plen = plen;
    f->file_id = file_id;
    return f;
}

/* Mark f broken by the packet at seq with this error kind. */
static int file_break(File *f, const char *kind, size_t klen, int64_t seq)
{
    char *k = xmalloc(klen ? klen : 1);
    if (k == NULL)
        return -1;
    memcpy(k, kind, klen);
    free(f->bkind);
    f->bkind = k;
    f->bkind_len = klen;
    f->bseq = seq;
    f->broken = 1;
    return 0;
}

/* path -> File, open addressing with linear probing; TOMB marks a removed entry. */
#define TOMB ((File *)&tomb_marker)
static char tomb_marker;

typedef struct {
    File **slot;
    size_t cap;   /* a power of two, or 0 */
    size_t live, used;  /* used counts tombstones too */
} FileMap;

static uint64_t hash_path(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;  /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* The slot holding path, or NULL. */
static File **map_slot(const FileMap *m, const char *p, size_t n)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)hash_path(p, n) & mask;; i = (i + 1) & mask) {
        File *f = m->slot[i];
        if (f == NULL)
            return NULL;
        if (f != TOMB && f->plen == n && memcmp(f->path, p, n) == 0)
            return &m->slot[i];
    }
}

static File *map_get(const FileMap *m, const char *p, size_t n)
{
    File **s = map_slot(m, p, n);
    return s ? *s : NULL;
}

static int map_rehash(FileMap *m, size_t cap)
{
    File **slot = xcalloc(cap, sizeof *slot);
    if (slot == NULL)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        File *f = m->slot[i];
        if (f == NULL || f == TOMB)
            continue;
        size_t j = (size_t)hash_path(f->path, f->plen) & (cap - 1);
        while (slot[j] != NULL)
            j = (j + 1) & (cap - 1);
        slot[j] = f;
    }
    free(m->slot);
    m->slot = slot;
    m->cap = cap;
    m->used = m->live;
    return 0;
}

/* Bind f at its path; a file already there is freed (as a dict assignment drops it). */
static int map_put(FileMap *m, File *f)
{
    File **s = map_slot(m, f->path, f->plen);
    if (s != NULL) {
        file_free(*s);
        *s = f;
        return 0;
    }
    if ((m->used + 1) * 4 > m->cap * 3) {
        size_t cap = 16;
        while (cap * 3 < (m->live + 1) * 8)
            cap *= 2;
        if (map_rehash(m, cap))
            return -1;
    }
    size_t mask = m->cap - 1, i = (size_t)hash_path(f->path, f->plen) & mask;
    while (m->slot[i] != NULL && m->slot[i] != TOMB)
        i = (i + 1) & mask;
    if (m->slot[i] == NULL)
        m->used++;
    m->slot[i] = f;
    m->live++;
    return 0;
}

/* Unbind the file at path and hand it to the caller. */
static File *map_take(FileMap *m, const char *p, size_t n)
{
    File **s = map_slot(m, p, n);
    if (s == NULL)
        return NULL;
    File *f = *s;
    *s = TOMB;
    m->live--;
    return f;
}

static void map_clear(FileMap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slot[i] != NULL && m->slot[i] != TOMB)
            file_free(m->slot[i]);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* Does p lie under the folder dir (p starts with dir + "/")? */
static inline int under(const char *p, size_t pn, const char *dir, size_t dn)
{
    return pn > dn && p[dn] == '/' && memcmp(p, dir, dn) == 0;
}

/* Byte order of UTF-8 is code point order, so this sorts as Python sorts str. */
static int cmp_path(const char *a, size_t an, const char *b, size_t bn)
{
    int r = memcmp(a, b, an < bn ? an : bn);
    return r ? r : (an > bn) - (an < bn);
}

static int cmp_files(const void *a, const void *b)
{
    const File *x = *(File *const *)a, *y = *(File *const *)b;
    return cmp_path(x->path, x->plen, y->path, y->plen);
}

/* ======================================================================== */
/* Arrow input columns                                                       */
/* ======================================================================== */

typedef struct {
    const char *name;
    Py_buffer valid, offs, data;
    int has_valid, has_offs, has_data;
    int width;          /* bytes per offset (strings: 4 or 8) or per value (8) */
    Py_ssize_t off;     /* the Arrow array's offset */
} InCol;

static inline int in_null(const InCol *c, Py_ssize_t i)
{
    if (!c->has_valid)
        return 0;
    Py_ssize_t b = c->off + i;
    return !((((const unsigned char *)c->valid.buf)[b >> 3] >> (b & 7)) & 1);
}

static inline int64_t in_i64(const InCol *c, Py_ssize_t i)
{
    int64_t v;
    memcpy(&v, (const char *)c->data.buf + (c->off + i) * 8, 8);
    return v;
}

/* ======================================================================== */
/* Output columns (Arrow layout: validity bitmap, int64 offsets, data)       */
/* ======================================================================== */

typedef enum { C_STR, C_I64, C_U64 } ColType;

typedef struct {
    const char *name;
    ColType type;
    int nullable;
} ColSpec;

typedef struct {
    const ColSpec *spec;
    Buf data, offsets, valid;
    size_t n, nulls;
} Col;

/* Columns as in warehouse.projector.COLUMNS; the wrapper checks the names match. */
static const ColSpec OT_OPS[] = {
    {"repl_id", C_STR, 0}, {"file_id", C_I64, 0}, {"version", C_I64, 0}, {"path", C_STR, 0},
    {"seq", C_I64, 0},     {"ts", C_I64, 0},      {"ops", C_STR, 0},     {"crc32", C_U64, 1},
    {"author", C_STR, 1},
};
static const ColSpec PATH_EVENTS[] = {
    {"repl_id", C_STR, 0}, {"seq", C_I64, 0}, {"path", C_STR, 0}, {"ts", C_I64, 0}, {"file_id", C_I64, 1},
};
static const ColSpec FILE_BREAKS[] = {
    {"repl_id", C_STR, 0}, {"file_id", C_I64, 0}, {"seq", C_I64, 0},
    {"path", C_STR, 0},    {"ts", C_I64, 0},      {"error_kind", C_STR, 0},
};
static const ColSpec CHECKPOINTS[] = {
    {"repl_id", C_STR, 0}, {"file_id", C_I64, 0}, {"version", C_I64, 0}, {"path", C_STR, 0}, {"content", C_STR, 0},
};

enum { T_OT_OPS, T_PATH_EVENTS, T_FILE_BREAKS, T_CHECKPOINTS, N_TABLES };
static const struct {
    const char *name;
    const ColSpec *spec;
    size_t ncols;
} TABLES[N_TABLES] = {
    {"ot_ops", OT_OPS, sizeof OT_OPS / sizeof *OT_OPS},
    {"path_events", PATH_EVENTS, sizeof PATH_EVENTS / sizeof *PATH_EVENTS},
    {"file_breaks", FILE_BREAKS, sizeof FILE_BREAKS / sizeof *FILE_BREAKS},
    {"checkpoints", CHECKPOINTS, sizeof CHECKPOINTS / sizeof *CHECKPOINTS},
};
#define MAX_COLS 9

/* Record the next value's validity bit (nullable columns only). */
static inline int col_bit(Col *c, int present)
{
    if (!c->spec->nullable)
        return 0;
    if ((c->n & 7) == 0 && buf_byte(&c->valid, 0))
        return -1;
    if (present)
        c->valid.p[c->n >> 3] |= (char)(1u << (c->n & 7));
    else
        c->nulls++;
    return 0;
}

/* Close a string value whose bytes were appended to c->data. */
static inline int col_end_str(Col *c, int present)
{
    int64_t end = (int64_t)c->data.len;
    if (col_bit(c, present) || buf_put(&c->offsets, &end, 8))
        return -1;
    c->n++;
    return 0;
}

static inline int col_str(Col *c, const char *s, size_t n)
{
    return buf_put(&c->data, s, n) || col_end_str(c, 1) ? -1 : 0;
}

static inline int col_int(Col *c, int64_t v)
{
    if (buf_put(&c->data, &v, 8) || col_bit(c, 1))
        return -1;
    c->n++;
    return 0;
}

static int col_null(Col *c)
{
    if (c->spec->type == C_STR)
        return col_end_str(c, 0);
    int64_t zero = 0;
    if (buf_put(&c->data, &zero, 8) || col_bit(c, 0))
        return -1;
    c->n++;
    return 0;
}

/* ======================================================================== */
/* The fold's context                                                        */
/* ======================================================================== */

/* One op of a packet, compact as in parse_ops: n > 0 skips n, n < 0 deletes -n, n == 0
 * inserts len bytes (ncp code points) at off in the packet's JSON text when the string
 * had no escapes (in_text), else at off in Ctx.ins where it was decoded. */
typedef struct {
    int64_t n;
    size_t off, len, ncp;
    int in_text;
    /* canonical: the string as written (raw, raw_len bytes at raw in the text, quotes
     * excluded) is exactly how orjson writes it, so ot_ops.ops can copy it */
    int canonical;
    size_t raw, raw_len;
} Op;

typedef enum { E_NONE, E_NOMEM, E_PYTHON, E_VALUE } ErrKind;

enum {
    IN_REPL_ID, IN_SEQ, IN_US, IN_KIND, IN_PATH, IN_VERSION, IN_OPS, IN_CRC32, IN_AUTHOR, IN_OP, IN_DEST, N_IN
};
static const struct {
    const char *name;
    int is_str;
} INPUTS[N_IN] = {
    {"repl_id", 1}, {"seq", 0}, {"us", 0}, {"kind", 1}, {"path", 1}, {"version", 0},
    {"ops", 1},     {"crc32", 0}, {"author", 1}, {"op", 1}, {"dest", 1},
};

typedef struct {
    InCol in[N_IN];
    Py_ssize_t nrows;
    int64_t every;
    size_t chunk;      /* chunk size of the texts */
    uint32_t *len_op;  /* crc32_combine_op operators for 0..chunk bytes */
    PyObject *resume, *parse_cb, *past_end_cb, *bad_event;  /* borrowed */
    int has_resume;
    PyObject *refused;        /* list of (row, BadEvent) */
    PyThreadState *released;  /* non-NULL while the GIL is released */
    ErrKind err;
    char errmsg[160];

    /* the current repl */
    const char *rid;
    size_t rid_len;
    int have_repl;
    FileMap files;

    /* the current packet's op list */
    const char *text;  /* its JSON text */
    Op *ops;
    size_t nops, ops_cap;
    Buf ins;           /* inserted text, decoded */
    Buf dumped;        /* ot_ops.ops of an op list read by Python */
    int from_python;   /* the op list came from Python: its JSON is in dumped */
    PyObject *py_ops;  /* that list, kept when it holds counts too big for C */

    Col out[N_TABLES][MAX_COLS];
} Ctx;

static int nomem(Ctx *x)
{
    if (x->err == E_NONE)
        x->err = E_NOMEM;
    return -1;
}

static int pyerr(Ctx *x)
{
    x->err = E_PYTHON;
    return -1;
}

static int bad_input(Ctx *x, Py_ssize_t row, const char *what)
{
    x->err = E_VALUE;
    snprintf(x->errmsg, sizeof x->errmsg, "fold_rows: row %zd: %s", row, what);
    return -1;
}

static inline void gil_hold(Ctx *x)
{
    if (x->released) {
        PyEval_RestoreThread(x->released);
        x->released = NULL;
    }
}

static inline void gil_drop(Ctx *x)
{
    if (!x->released)
        x->released = PyEval_SaveThread();
}

/* A string value of column k at row i (not null); -1 on corrupt offsets. */
static inline int in_str(Ctx *x, int k, Py_ssize_t i, const char **s, size_t *n)
{
    const InCol *c = &x->in[k];
    int64_t a, b;
    const char *o = (const char *)c->offs.buf;
    Py_ssize_t j = c->off + i;
    if (c->width == 4) {
        int32_t a32, b32;
        memcpy(&a32, o + j * 4, 4);
        memcpy(&b32, o + (j + 1) * 4, 4);
        a = a32;
        b = b32;
    } else {
        memcpy(&a, o + j * 8, 8);
        memcpy(&b, o + (j + 1) * 8, 8);
    }
    if (a < 0 || b < a || b > (int64_t)(c->has_data ? c->data.len : 0))
        return bad_input(x, i, "string offsets out of bounds");
    *s = (const char *)c->data.buf + a;
    *n = (size_t)(b - a);
    return 0;
}

/* A non-null string of column k at row i. */
static inline int req_str(Ctx *x, int k, Py_ssize_t i, const char **s, size_t *n)
{
    if (in_null(&x->in[k], i)) {
        char what[64];
        snprintf(what, sizeof what, "%s is null", INPUTS[k].name);
        return bad_input(x, i, what);
    }
    return in_str(x, k, i, s, n);
}

static inline int req_i64(Ctx *x, int k, Py_ssize_t i, int64_t *v)
{
    if (in_null(&x->in[k], i)) {
        char what[64];
        snprintf(what, sizeof what, "%s is null", INPUTS[k].name);
        return bad_input(x, i, what);
    }
    *v = in_i64(&x->in[k], i);
    return 0;
}

static PyObject *str_of(const char *p, size_t n)
{
    return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "surrogateescape");
}

/* ---- output rows, in the order and with the values Projector adds them ---- */

static int add_path_event(Ctx *x, int64_t seq, const char *path, size_t plen, int64_t us, int has_id, int64_t file_id)
{
    Col *c = x->out[T_PATH_EVENTS];
    if (col_str(&c[0], x->rid, x->rid_len) || col_int(&c[1], seq) || col_str(&c[2], path, plen) ||
        col_int(&c[3], us) || (has_id ? col_int(&c[4], file_id) : col_null(&c[4])))
        return nomem(x);
    return 0;
}

static int add_file_break(Ctx *x, const File *f, int64_t seq, const char *path, size_t plen, int64_t us)
{
    Col *c = x->out[T_FILE_BREAKS];
    if (col_str(&c[0], x->rid, x->rid_len) || col_int(&c[1], f->file_id) || col_int(&c[2], seq) ||
        col_str(&c[3], path, plen) || col_int(&c[4], us) || col_str(&c[5], f->bkind, f->bkind_len))
        return nomem(x);
    return 0;
}

static int add_checkpoint(Ctx *x, const File *f, int64_t version, const char *path, size_t plen)
{
    Col *c = x->out[T_CHECKPOINTS];
    if (col_str(&c[0], x->rid, x->rid_len) || col_int(&c[1], f->file_id) || col_int(&c[2], version) ||
        col_str(&c[3], path, plen))
        return nomem(x);
    const Text *t = &f->text;
    for (size_t i = 0; i < t->n; i++)
        if (buf_put(&c[4].data, t->c[i].data, t->c[i].len))
            return nomem(x);
    return col_end_str(&c[4], 1) ? nomem(x) : 0;
}

/* A JSON string as orjson writes it: ", \ and control characters escaped, all else raw UTF-8. */
static int put_json_string(Buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (buf_grow(b, n + 2))
        return -1;
    b->p[b->len++] = '"';
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        for (uint64_t w; i + 8 <= n && (memcpy(&w, s + i, 8), !json_special8(w));)
            i += 8;
        while (i < n && (unsigned char)s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
            i++;
        if (buf_put(b, s + run, i - run))
            return -1;
        if (i == n)
            break;
        unsigned char ch = (unsigned char)s[i++];
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t len = 2;
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\t': esc[1] = 't'; break;
        case '\n': esc[1] = 'n'; break;
        case '\f': esc[1] = 'f'; break;
        case '\r': esc[1] = 'r'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            len = 6;
        }
        if (buf_put(b, esc, len))
            return -1;
    }
    return buf_byte(b, '"');
}

/* The inserted text of an insert op. */
static inline const char *op_bytes(const Ctx *x, const Op *op)
{
    return (op->in_text ? x->text : x->ins.p) + op->off;
}

/* The compact op list as orjson.dumps writes it: [2,"x",-1]. */
static int put_ops_json(Ctx *x, Buf *b)
{
    if (buf_byte(b, '['))
        return -1;
    for (size_t i = 0; i < x->nops; i++) {
        const Op *op = &x->ops[i];
        if (i && buf_byte(b, ','))
            return -1;
        if (op->n == 0) {
            if (op->canonical) {
                if (buf_byte(b, '"') || buf_put(b, x->text + op->raw, op->raw_len) || buf_byte(b, '"'))
                    return -1;
            } else if (put_json_string(b, op_bytes(x, op), op->len)) {
                return -1;
            }
        } else {
            char num[24];
            if (buf_put(b, num, fmt_i64(num, op->n)))
                return -1;
        }
    }
    return buf_byte(b, ']');
}

static int add_ot_op(Ctx *x, const File *f, int64_t version, const char *path, size_t plen, int64_t seq,
                     int64_t us, int has_crc, uint64_t crc, int has_author, const char *author, size_t alen)
{
    Col *c = x->out[T_OT_OPS];
    if (col_str(&c[0], x->rid, x->rid_len) || col_int(&c[1], f->file_id) || col_int(&c[2], version) ||
        col_str(&c[3], path, plen) || col_int(&c[4], seq) || col_int(&c[5], us))
        return nomem(x);
    if (x->from_python ? buf_put(&c[6].data, x->dumped.p, x->dumped.len) : put_ops_json(x, &c[6].data))
        return nomem(x);
    if (col_end_str(&c[6], 1) || (has_crc ? col_int(&c[7], (int64_t)crc) : col_null(&c[7])) ||
        (has_author ? col_str(&c[8], author, alen) : col_null(&c[8])))
        return nomem(x);
    return 0;
}

/* ======================================================================== */
/* Reading an op list                                                        */
/* ======================================================================== */

enum { READ_OK = 0, READ_PYTHON = 1 };  /* READ_PYTHON: leave this text to Python */

static int push_op(Ctx *x, Op op)
{
    if (x->nops == x->ops_cap) {
        size_t cap = x->ops_cap ? x->ops_cap * 2 : 16;
        Op *ops = xrealloc(x->ops, cap * sizeof *ops);
        if (ops == NULL)
            return -1;
        x->ops = ops;
        x->ops_cap = cap;
    }
    x->ops[x->nops++] = op;
    return 0;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

/* A JSON string's body after its opening quote into op (an insert): in place when it has
 * no escapes, else decoded onto x->ins. Sets *pp past the closing quote. READ_PYTHON for
 * anything unusual: a raw control character, an unknown escape, a \\u escape of a
 * surrogate, ill-formed UTF-8. */
static int read_string(Ctx *x, const unsigned char **pp, const unsigned char *end, Op *op)
{
    const unsigned char *text = (const unsigned char *)x->text;
    const unsigned char *p = *pp, *body = p, *flushed = p;
    size_t count = 0, start = x->ins.len;
    int escaped = 0, canonical = 1;
    for (;;) {
        const unsigned char *run = p;
        for (uint64_t w; end - p >= 8 && (memcpy(&w, p, 8), !json_special8(w) && !(w & HIGHS));)
            p += 8;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        count += (size_t)(p - run);
        if (p == end)
            return READ_PYTHON;
        if (*p == '"')
            break;
        if (*p == '\\') {
            /* decode from here on: what came before goes to x->ins as it is */
            escaped = 1;
            if (buf_put(&x->ins, flushed, (size_t)(p - flushed)))
                return -1;
            if (end - p < 2)
                return READ_PYTHON;
            char c;
            switch (p[1]) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; canonical = 0; break;  /* orjson writes a plain / */
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                unsigned cp;
                if (end - p < 6 || hex4(p + 2, &cp) || (cp >= 0xD800 && cp <= 0xDFFF))
                    return READ_PYTHON;
                /* orjson writes \\u00xx (lower-case hex) only for controls without a short form */
                if (cp >= 0x20 || cp == '\b' || cp == '\t' || cp == '\n' || cp == '\f' || cp == '\r' ||
                    (p[5] >= 'A' && p[5] <= 'F'))
                    canonical = 0;
                char u[3];
                size_t n;
                if (cp < 0x80) {
                    u[0] = (char)cp;
                    n = 1;
                } else if (cp < 0x800) {
                    u[0] = (char)(0xC0 | (cp >> 6));
                    u[1] = (char)(0x80 | (cp & 0x3F));
                    n = 2;
                } else {
                    u[0] = (char)(0xE0 | (cp >> 12));
                    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    u[2] = (char)(0x80 | (cp & 0x3F));
                    n = 3;
                }
                if (buf_put(&x->ins, u, n))
                    return -1;
                count++;
                p += 6;
                flushed = p;
                continue;
            }
            default:
                return READ_PYTHON;
            }
            if (buf_byte(&x->ins, c))
                return -1;
            count++;
            p += 2;
            flushed = p;
            continue;
        }
        if (*p < 0x20)
            return READ_PYTHON;
        size_t k = utf8_seq(p, (size_t)(end - p));
        if (k == 0)
            return READ_PYTHON;
        count++;
        p += k;
    }
    op->n = 0;
    op->ncp = count;
    op->raw = (size_t)(body - text);
    op->raw_len = (size_t)(p - body);
    op->canonical = canonical;
    if (escaped) {
        if (buf_put(&x->ins, flushed, (size_t)(p - flushed)))
            return -1;
        op->in_text = 0;
        op->off = start;
        op->len = x->ins.len - start;
    } else {
        op->in_text = 1;
        op->off = op->raw;
        op->len = op->raw_len;
    }
    *pp = p + 1;
    return READ_OK;
}

/* An insert op from the JSON string after *pp (past its opening quote), unless empty (parse_ops drops
 * those); READ_PYTHON or -1 as read_string. */
static int read_insert(Ctx *x, const unsigned char **pp, const unsigned char *end)
{
    Op op;
    int r = read_string(x, pp, end, &op);
    if (r)
        return r;
    return op.ncp && push_op(x, op) ? -1 : READ_OK;
}

/* Read a contract op list, [{"skip":2},{"insert":"x"},{"delete":1}], into the compact ops
 * (zero counts and empty inserts dropped, as parse_ops drops them). Only the plain form
 * is read here: one key per object, counts 0 <= n < 10**15 without sign, fraction or
 * exponent. READ_PYTHON for everything else, -1 when out of memory. */
static int read_ops(Ctx *x, const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text, *end = p + len;
    x->text = text;
    x->nops = 0;
    x->ins.len = 0;
#define SKIP_WS() while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++
#define EXPECT(ch) do { SKIP_WS(); if (p == end || *p != (ch)) return READ_PYTHON; p++; } while (0)
    EXPECT('[');
    SKIP_WS();
    if (p < end && *p == ']') {
        p++;
    } else {
        for (;;) {
            EXPECT('{');
            EXPECT('"');
            const unsigned char *key = p;
            while (p < end && *p != '"' && *p != '\\' && *p >= 0x20)
                p++;
            if (p == end || *p != '"')
                return READ_PYTHON;
            size_t klen = (size_t)(p - key);
            p++;
            EXPECT(':');
            SKIP_WS();
            if (klen == 6 && memcmp(key, "insert", 6) == 0) {
                if (p == end || *p != '"')
                    return READ_PYTHON;
                p++;
                int r = read_insert(x, &p, end);
                if (r)
                    return r;
            } else {
                int sign;
                if (klen == 4 && memcmp(key, "skip", 4) == 0)
                    sign = 1;
                else if (klen == 6 && memcmp(key, "delete", 6) == 0)
                    sign = -1;
                else
                    return READ_PYTHON;
                if (p == end || *p < '0' || *p > '9')
                    return READ_PYTHON;
                int64_t v = 0;
                if (*p == '0') {
                    p++;
                } else {
                    int digits = 0;
                    while (p < end && *p >= '0' && *p <= '9') {
                        if (++digits > 15)
                            return READ_PYTHON;
                        v = v * 10 + (*p++ - '0');
                    }
                }
                if (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E'))
                    return READ_PYTHON;
                if (v && push_op(x, (Op){.n = sign * v}))
                    return -1;
            }
            EXPECT('}');
            SKIP_WS();
            if (p == end)
                return READ_PYTHON;
            if (*p == ']') {
                p++;
                break;
            }
            if (*p != ',')
                return READ_PYTHON;
            p++;
        }
    }
    SKIP_WS();
    return p == end ? READ_OK : READ_PYTHON;
#undef EXPECT
#undef SKIP_WS
}

/* The compact ops of a Python list of int and str (parse_ops' output) into x->ops and x->ins;
 * *big is set when a count is past what C sums safely (2**53). GIL held. */
static int ops_from_list(Ctx *x, PyObject *list, int *big)
{
    x->nops = 0;
    x->ins.len = 0;
    *big = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (PyUnicode_Check(item)) {
            Py_ssize_t n;
            const char *s = PyUnicode_AsUTF8AndSize(item, &n);
            if (s == NULL)
                return pyerr(x);
            size_t off = x->ins.len;
            Op op = {.off = off, .len = (size_t)n, .ncp = (size_t)PyUnicode_GET_LENGTH(item)};
            if (buf_put(&x->ins, s, (size_t)n) || push_op(x, op))
                return nomem(x);
        } else if (PyLong_Check(item)) {
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(item, &overflow);
            if (v == -1 && PyErr_Occurred())
                return pyerr(x);
            if (overflow || v >= SAFE_COUNT || v <= -SAFE_COUNT)
                *big = 1;
            else if (v != 0 && push_op(x, (Op){.n = (int64_t)v}))
                return nomem(x);
        } else {
            PyErr_SetString(PyExc_TypeError, "parse_ops gave an op that is neither int nor str");
            return pyerr(x);
        }
    }
    return 0;
}

/* Read the op list in Python: parse_cb(text) returns (compact ops, orjson bytes) or raises
 * BadEvent, which is handed back in *bad. GIL held. text NULL stands for a null value. */
static int read_ops_python(Ctx *x, const char *text, size_t len, PyObject **bad)
{
    PyObject *arg = text ? str_of(text, len) : Py_NewRef(Py_None);
    if (arg == NULL)
        return pyerr(x);
    PyObject *res = PyObject_CallOneArg(x->parse_cb, arg);
    Py_DECREF(arg);
    if (res == NULL) {
        if (!PyErr_ExceptionMatches(x->bad_event))
            return pyerr(x);
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
        if (value == NULL)
            return pyerr(x);
        *bad = value;
        return 0;
    }
    int rc = -1;
    PyObject *list, *dumped;
    if (!PyArg_ParseTuple(res, "O!O", &PyList_Type, &list, &dumped)) {
        pyerr(x);
        goto done;
    }
    x->nops = 0;
    x->ins.len = 0;
    x->dumped.len = 0;
    x->from_python = 1;
    if (PyBytes_Check(dumped)) {
        if (buf_put(&x->dumped, PyBytes_AS_STRING(dumped), (size_t)PyBytes_GET_SIZE(dumped))) {
            nomem(x);
            goto done;
        }
    } else if (dumped != Py_None) {
        PyErr_SetString(PyExc_TypeError, "parse must give the op list's JSON as bytes or None");
        pyerr(x);
        goto done;
    }
    int big;
    if (ops_from_list(x, list, &big))
        goto done;
    if (big) {  /* its bounds are checked in Python, and they fail: no C op is needed */
        x->py_ops = Py_NewRef(list);
    } else if (dumped == Py_None) {
        PyErr_SetString(PyExc_SystemError, "no JSON for an op list C can apply");
        pyerr(x);
        goto done;
    }
    rc = 0;
done:
    Py_DECREF(res);
    return rc;
}

/* ======================================================================== */
/* Refusing a row                                                            */
/* ======================================================================== */

/* BadEvent(kind, message, repl_id=, seq=, path=, version=); steals message. GIL held. */
static PyObject *new_error(Ctx *x, PyObject *kind, PyObject *message, int64_t seq, const char *path,
                           size_t plen, int has_version, int64_t version)
{
    PyObject *args = NULL, *kw = NULL, *res = NULL;
    if (message == NULL || kind == NULL)
        goto done;
    args = PyTuple_Pack(2, kind, message);
    kw = Py_BuildValue("{s:N,s:L,s:N,s:N}", "repl_id", str_of(x->rid, x->rid_len), "seq", (long long)seq,
                       "path", str_of(path, plen), "version",
                       has_version ? PyLong_FromLongLong(version) : Py_NewRef(Py_None));
    if (args && kw)
        res = PyObject_Call(x->bad_event, args, kw);
done:
    Py_XDECREF(message);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    return res;
}

/* Append (row, error) to the refused list; steals error. GIL held. */
static int refuse(Ctx *x, Py_ssize_t row, PyObject *error)
{
    if (error == NULL)
        return pyerr(x);
    PyObject *item = Py_BuildValue("(nN)", row, error);
    if (item == NULL)
        return pyerr(x);
    int r = PyList_Append(x->refused, item);
    Py_DECREF(item);
    return r ? pyerr(x) : 0;
}

/* Projector._record_break: when the packet at seq broke the file at path, its rows. */
static int record_break(Ctx *x, int64_t seq, const char *path, size_t plen, int64_t us)
{
    const File *f = map_get(&x->files, path, plen);
    if (f == NULL || !f->broken || f->bseq != seq)
        return 0;
    if (f->file_id == seq && add_path_event(x, seq, path, plen, us, 1, f->file_id))
        return -1;
    return add_file_break(x, f, seq, path, plen, us);
}

/* ReplFiles.after_break: the error of a packet for a file whose content is unknown. */
static PyObject *after_break(Ctx *x, const File *f, int64_t seq, const char *path, size_t plen, int64_t version)
{
    PyObject *kind = str_of(f->bkind, f->bkind_len);
    if (kind == NULL)
        return NULL;
    PyObject *msg = PyUnicode_FromFormat("file state unknown since an earlier bad packet (%U at seq %lld)", kind,
                                         (long long)f->bseq);
    Py_DECREF(kind);
    PyObject *k = PyUnicode_FromString("after_broken_packet");
    PyObject *e = new_error(x, k, msg, seq, path, plen, 1, version);
    Py_XDECREF(k);
    return e;
}

/* Refuse an ot packet whose file is already broken (no rows unless its break was this seq). */
static int refuse_after_break(Ctx *x, Py_ssize_t row, const File *f, int64_t seq, int64_t us, const char *path,
                              size_t plen, int64_t version)
{
    gil_hold(x);
    if (refuse(x, row, after_break(x, f, seq, path, plen, version)))
        return -1;
    return record_break(x, seq, path, plen, us);
}

/* Break f (bound at path) by the packet at seq with a C-made error, and refuse the packet. */
static int break_and_refuse(Ctx *x, Py_ssize_t row, File *f, int64_t seq, int64_t us, const char *path,
                            size_t plen, int64_t version, const char *kind, const char *msg)
{
    if (file_break(f, kind, strlen(kind), seq))
        return nomem(x);
    gil_hold(x);
    PyObject *k = PyUnicode_FromString(kind);
    PyObject *e = new_error(x, k, PyUnicode_FromString(msg), seq, path, plen, 1, version);
    Py_XDECREF(k);
    if (refuse(x, row, e))
        return -1;
    return record_break(x, seq, path, plen, us);
}

/* A packet whose op list Python refused (bad: the BadEvent, stolen): as Projector.ot,
 * it breaks its file (starting a lineage at an unbound path) unless already broken. */
static int refuse_unreadable(Ctx *x, Py_ssize_t row, PyObject *bad, int64_t seq, int64_t us, const char *path,
                             size_t plen, int64_t version)
{
    File *f = map_get(&x->files, path, plen);
    PyObject *error;
    if (f != NULL && f->broken) {
        Py_DECREF(bad);
        error = after_break(x, f, seq, path, plen, version);
    } else {
        /* e.located(repl_id=, seq=, path=, version=), as Projector.ot */
        PyObject *located = PyObject_GetAttrString(bad, "located");
        Py_DECREF(bad);
        if (located == NULL)
            return pyerr(x);
        PyObject *args = PyTuple_New(0);
        PyObject *kw = Py_BuildValue("{s:N,s:L,s:N,s:L}", "repl_id", str_of(x->rid, x->rid_len), "seq",
                                     (long long)seq, "path", str_of(path, plen), "version", (long long)version);
        error = args && kw ? PyObject_Call(located, args, kw) : NULL;
        Py_DECREF(located);
        Py_XDECREF(args);
        Py_XDECREF(kw);
        if (error == NULL)
            return pyerr(x);
        /* ReplFiles.break_file: the file is broken by this error (its kind and seq) */
        PyObject *kind = PyObject_GetAttrString(error, "kind");
        PyObject *eseq = PyObject_GetAttrString(error, "seq");
        Py_ssize_t klen;
        const char *k = kind && PyUnicode_Check(kind) ? PyUnicode_AsUTF8AndSize(kind, &klen) : NULL;
        long long bseq = eseq && PyLong_Check(eseq) ? PyLong_AsLongLong(eseq) : -1;
        int ok = k != NULL && !(bseq == -1 && PyErr_Occurred());
        if (ok && f == NULL) {
            f = file_new(path, plen, seq, x->chunk);
            if (f == NULL || map_put(&x->files, f)) {
                file_free(f);
                f = NULL;
                PyErr_NoMemory();
                ok = 0;
            }
        }
        if (ok && file_break(f, k, (size_t)klen, bseq)) {
            PyErr_NoMemory();
            ok = 0;
        }
        Py_XDECREF(kind);
        Py_XDECREF(eseq);
        if (!ok) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "BadEvent.kind must be str and BadEvent.seq int");
            Py_DECREF(error);
            return pyerr(x);
        }
    }
    if (refuse(x, row, error))
        return -1;
    return record_break(x, seq, path, plen, us);
}

/* ======================================================================== */
/* ot packets: Projector.ot / ReplFiles.apply_ot / TextBuffer.apply          */
/* ======================================================================== */

/* The first op of x->ops that runs past the end of a text of `size` code points, or NULL: *pos is where
 * it starts and *size_at the text's size there (TextBuffer's past_end, checked before anything changes). */
static const Op *op_past_end(const Ctx *x, int64_t size, int64_t *pos, int64_t *size_at)
{
    int64_t at = 0;
    for (size_t i = 0; i < x->nops; i++) {
        const Op *op = &x->ops[i];
        if (op->n == 0) {
            size += (int64_t)op->ncp;
            at += (int64_t)op->ncp;
        } else if (op->n > 0 ? at + op->n > size : at - op->n > size) {
            *pos = at;
            *size_at = size;
            return op;
        } else if (op->n > 0) {
            at += op->n;
        } else {
            size += op->n;
        }
    }
    return NULL;
}

/* Apply x->ops, whose bounds were checked, to t; -1 when out of memory. */
static int apply_ops(const Ctx *x, Text *t)
{
    int64_t pos = 0;
    for (size_t i = 0; i < x->nops; i++) {
        const Op *op = &x->ops[i];
        if (op->n == 0) {
            if (text_insert(t, (size_t)pos, op_bytes(x, op), op->len, op->ncp))
                return -1;
            pos += (int64_t)op->ncp;
        } else if (op->n > 0) {
            pos += op->n;
        } else if (text_delete(t, (size_t)pos, (size_t)-op->n)) {
            return -1;
        }
    }
    return 0;
}

static int fold_ot(Ctx *x, Py_ssize_t row, int64_t seq, int64_t us)
{
    const char *path, *text = NULL, *author = NULL;
    size_t plen, tlen = 0, alen = 0;
    int64_t version;
    if (req_str(x, IN_PATH, row, &path, &plen) || req_i64(x, IN_VERSION, row, &version))
        return -1;
    int has_text = !in_null(&x->in[IN_OPS], row);
    if (has_text && in_str(x, IN_OPS, row, &text, &tlen))
        return -1;
    int has_crc = !in_null(&x->in[IN_CRC32], row);
    uint64_t crc = has_crc ? (uint64_t)in_i64(&x->in[IN_CRC32], row) : 0;
    int has_author = !in_null(&x->in[IN_AUTHOR], row);
    if (has_author && in_str(x, IN_AUTHOR, row, &author, &alen))
        return -1;

    /* 1. the op list */
    x->from_python = 0;
    int r = has_text ? read_ops(x, text, tlen) : READ_PYTHON;
    if (r < 0)
        return nomem(x);
    if (r == READ_PYTHON) {
        PyObject *bad = NULL;
        gil_hold(x);
        if (read_ops_python(x, has_text ? text : NULL, tlen, &bad))
            return -1;
        if (bad != NULL)
            return refuse_unreadable(x, row, bad, seq, us, path, plen, version);
    }

    /* 2. the file: an unbound path starts a lineage, bound whatever the outcome */
    File *f = map_get(&x->files, path, plen);
    if (f != NULL && f->broken)
        return refuse_after_break(x, row, f, seq, us, path, plen, version);
    if (f == NULL) {
        f = file_new(path, plen, seq, x->chunk);
        if (f == NULL || map_put(&x->files, f)) {
            file_free(f);
            return nomem(x);
        }
    }
    char msg[256];
    if (f->version == INT64_MAX || version != f->version + 1) {
        char expected[24];
        if (f->version == INT64_MAX)
            snprintf(expected, sizeof expected, "%llu", (unsigned long long)INT64_MAX + 1);
        else
            expected[fmt_i64(expected, f->version + 1)] = 0;
        snprintf(msg, sizeof msg, "expected version %s, got %lld", expected, (long long)version);
        return break_and_refuse(x, row, f, seq, us, path, plen, version,
                                version <= f->version ? "version_repeat" : "version_gap", msg);
    }

    /* 3. bounds, checked before anything changes (TextBuffer.apply) */
    Text *t = &f->text;
    if (x->py_ops != NULL) {
        gil_hold(x);
        PyObject *m = PyObject_CallFunction(x->past_end_cb, "On", x->py_ops, (Py_ssize_t)t->ncp);
        if (m == NULL)
            return pyerr(x);
        if (!PyUnicode_Check(m)) {
            Py_DECREF(m);
            PyErr_SetString(PyExc_SystemError, "an op count past 2**53 did not pass the end");
            return pyerr(x);
        }
        if (file_break(f, "op_past_end", 11, seq)) {
            Py_DECREF(m);
            return nomem(x);
        }
        PyObject *k = PyUnicode_FromString("op_past_end");
        int rc = refuse(x, row, new_error(x, k, m, seq, path, plen, 1, version));
        Py_XDECREF(k);
        return rc ? rc : record_break(x, seq, path, plen, us);
    }
    int64_t pos, size;
    const Op *bad = op_past_end(x, (int64_t)t->ncp, &pos, &size);
    if (bad != NULL) {
        if (bad->n > 0)
            snprintf(msg, sizeof msg, "skip %lld ends at %lld, past the end (%lld code points)", (long long)bad->n,
                     (long long)(pos + bad->n), (long long)size);
        else
            snprintf(msg, sizeof msg, "delete %lld at %lld ends at %lld, past the end (%lld code points)",
                     (long long)-bad->n, (long long)pos, (long long)(pos - bad->n), (long long)size);
        return break_and_refuse(x, row, f, seq, us, path, plen, version, "op_past_end", msg);
    }

    /* 4. apply */
    if (apply_ops(x, t))
        return nomem(x);

    /* 5. the CRC-32 the packet carries (a mismatch breaks the file after the edit) */
    if (has_crc) {
        uint32_t actual = text_crc(t, x->len_op);
        if (actual != crc) {
            snprintf(msg, sizeof msg, "CRC-32 after the packet is %lu, the packet says %llu", (unsigned long)actual,
                     (unsigned long long)crc);
            return break_and_refuse(x, row, f, seq, us, path, plen, version, "crc_mismatch", msg);
        }
    }
    f->version = version;

    /* 6. rows */
    if (f->file_id == seq && add_path_event(x, seq, path, plen, us, 1, seq))
        return -1;
    if (add_ot_op(x, f, version, path, plen, seq, us, has_crc, crc, has_author, author, alen))
        return -1;
    if (version % x->every == 0 && add_checkpoint(x, f, version, path, plen))
        return -1;
    return 0;
}

/* ======================================================================== */
/* file events: Projector.file / ReplFiles.create, move, remove              */
/* ======================================================================== */

/* Refuse a file event with BadEvent(kind, message, repl_id, seq, path); steals message. */
static int refuse_file(Ctx *x, Py_ssize_t row, const char *kind, PyObject *message, int64_t seq, const char *path,
                       size_t plen)
{
    PyObject *k = PyUnicode_FromString(kind);
    PyObject *e = new_error(x, k, message, seq, path, plen, 0, 0);
    Py_XDECREF(k);
    return refuse(x, row, e);
}

/* ReplFiles._matching: the file at path, or every file under it as a folder, sorted. */
static int matching(Ctx *x, const char *path, size_t plen, File ***out, size_t *n)
{
    *n = 0;
    *out = NULL;
    File *f = map_get(&x->files, path, plen);
    size_t count = f ? 1 : 0;
    if (f == NULL)
        for (size_t i = 0; i < x->files.cap; i++) {
            File *g = x->files.slot[i];
            count += g != NULL && g != TOMB && under(g->path, g->plen, path, plen);
        }
    if (count == 0)
        return 0;
    File **list = xmalloc(count * sizeof *list);
    if (list == NULL)
        return nomem(x);
    if (f != NULL) {
        list[0] = f;
    } else {
        size_t k = 0;
        for (size_t i = 0; i < x->files.cap; i++) {
            File *g = x->files.slot[i];
            if (g != NULL && g != TOMB && under(g->path, g->plen, path, plen))
                list[k++] = g;
        }
        qsort(list, count, sizeof *list, cmp_files);
    }
    *out = list;
    *n = count;
    return 0;
}

static int file_create(Ctx *x, Py_ssize_t row, int64_t seq, int64_t us, const char *path, size_t plen)
{
    const char *why = NULL;
    if (map_get(&x->files, path, plen) != NULL) {
        why = "create of a path that already holds a file";
    } else {
        for (size_t i = 0; i < x->files.cap && why == NULL; i++) {
            File *g = x->files.slot[i];
            if (g != NULL && g != TOMB && under(g->path, g->plen, path, plen))
                why = "create of a path that is a folder of existing files";
        }
    }
    if (why != NULL) {
        gil_hold(x);
        return refuse_file(x, row, "file_exists", PyUnicode_FromString(why), seq, path, plen);
    }
    File *f = file_new(path, plen, seq, x->chunk);
    if (f == NULL || map_put(&x->files, f)) {
        file_free(f);
        return nomem(x);
    }
    return add_path_event(x, seq, path, plen, us, 1, seq);
}

static int file_remove(Ctx *x, Py_ssize_t row, int64_t seq, int64_t us, const char *path, size_t plen)
{
    File **list;
    size_t n;
    if (matching(x, path, plen, &list, &n))
        return -1;
    if (n == 0) {
        gil_hold(x);
        return refuse_file(x, row, "file_not_found", PyUnicode_FromString("remove of a path with no file or folder"),
                           seq, path, plen);
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        File *f = map_take(&x->files, list[i]->path, list[i]->plen);
        if (rc == 0)
            rc = add_path_event(x, seq, f->path, f->plen, us, 0, 0);
        file_free(f);
    }
    free(list);
    return rc;
}

/* One entry of Projector.file's `changes` dict. */
typedef struct {
    const char *path;
    size_t plen;
    int has_id;
    int64_t file_id;
} Change;

static int file_move(Ctx *x, Py_ssize_t row, int64_t seq, int64_t us, const char *path, size_t plen)
{
    const char *dest = NULL;
    size_t dlen = 0;
    int has_dest = !in_null(&x->in[IN_DEST], row);
    if (has_dest && in_str(x, IN_DEST, row, &dest, &dlen))
        return -1;
    File **list;
    size_t n;
    if (matching(x, path, plen, &list, &n))
        return -1;
    if (n == 0) {
        gil_hold(x);
        PyObject *d = has_dest ? str_of(dest, dlen) : Py_NewRef(Py_None);
        PyObject *msg = d ? PyUnicode_FromFormat("move of a path with no file or folder (to %R)", d) : NULL;
        Py_XDECREF(d);
        return refuse_file(x, row, "file_not_found", msg, seq, path, plen);
    }
    if (!has_dest) {
        free(list);
        return bad_input(x, row, "dest is null in a file move");
    }
    if ((dlen == plen && memcmp(dest, path, plen) == 0) || under(dest, dlen, path, plen)) {
        free(list);
        gil_hold(x);
        PyObject *p = str_of(path, plen), *d = str_of(dest, dlen);
        PyObject *msg = p && d ? PyUnicode_FromFormat("move of %R into itself (%R)", p, d) : NULL;
        Py_XDECREF(p);
        Py_XDECREF(d);
        return refuse_file(x, row, "bad_path", msg, seq, path, plen);
    }
    /* New paths first, so nothing can fail once the sources are unbound; then unbind
     * every source, give it its new path and rebind it (replacing a file already at the
     * new path, as the dict assignment in ReplFiles.move does). */
    int rc = -1;
    char **old = xcalloc(n, sizeof *old);  /* new paths, then (after the swap) old paths */
    size_t *old_len = xcalloc(n, sizeof *old_len);
    Change *changes = xcalloc(2 * n, sizeof *changes);
    size_t nch = 0, bound = 0;
    if (old == NULL || old_len == NULL || changes == NULL) {
        nomem(x);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        size_t rest = list[i]->plen - plen, len = dlen + rest;
        if ((old[i] = xmalloc(len ? len : 1)) == NULL) {
            nomem(x);
            goto done;
        }
        memcpy(old[i], dest, dlen);
        memcpy(old[i] + dlen, list[i]->path + plen, rest);
        old_len[i] = len;
    }
    for (size_t i = 0; i < n; i++) {
        File *f = map_take(&x->files, list[i]->path, list[i]->plen);
        char *p = f->path;
        size_t len = f->plen;
        f->path = old[i];
        f->plen = old_len[i];
        old[i] = p;
        old_len[i] = len;
    }
    for (; bound < n; bound++)
        if (map_put(&x->files, list[bound])) {
            for (size_t j = bound; j < n; j++)  /* unbound sources would leak: free them */
                file_free(list[j]);
            nomem(x);
            goto done;
        }
    /* Projector.file's changes: every old path -> None, then every new path -> its lineage;
     * a new path equal to an old one keeps that entry's place (a dict keeps a key's first
     * position). Old paths are sorted (a single source needs no order), so search them. */
    for (size_t i = 0; i < n; i++)
        changes[nch++] = (Change){old[i], old_len[i], 0, 0};
    for (size_t i = 0; i < n; i++) {
        File *f = list[i];
        size_t lo = 0, hi = n;
        int found = 0;
        while (lo < hi && !found) {
            size_t mid = lo + (hi - lo) / 2;
            int c = cmp_path(old[mid], old_len[mid], f->path, f->plen);
            if (c == 0) {
                changes[mid] = (Change){f->path, f->plen, 1, f->file_id};
                found = 1;
            } else if (c < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (!found)
            changes[nch++] = (Change){f->path, f->plen, 1, f->file_id};
    }
    rc = 0;
    for (size_t i = 0; i < nch && rc == 0; i++)
        rc = add_path_event(x, seq, changes[i].path, changes[i].plen, us, changes[i].has_id, changes[i].file_id);
done:
    if (old != NULL)
        for (size_t i = 0; i < n; i++)
            free(old[i]);
    free(old);
    free(old_len);
    free(changes);
    free(list);
    return rc;
}

static int fold_file(Ctx *x, Py_ssize_t row, int64_t seq, int64_t us)
{
    const char *path, *op = "";
    size_t plen, olen = 0;
    if (req_str(x, IN_PATH, row, &path, &plen))
        return -1;
    if (!in_null(&x->in[IN_OP], row) && in_str(x, IN_OP, row, &op, &olen))
        return -1;
    if (olen == 6 && memcmp(op, "create", 6) == 0)
        return file_create(x, row, seq, us, path, plen);
    if (olen == 4 && memcmp(op, "move", 4) == 0)
        return file_move(x, row, seq, us, path, plen);
    return file_remove(x, row, seq, us, path, plen);  /* Projector.file: anything else removes */
}

/* ======================================================================== */
/* Repls and resumed state                                                   */
/* ======================================================================== */

/* One ResumeFile (path, file_id, version, content, broken) into the repl's files. GIL held. */
static int resume_file(Ctx *x, PyObject *item)
{
    PyObject *path = PyObject_GetAttrString(item, "path");
    PyObject *file_id = PyObject_GetAttrString(item, "file_id");
    PyObject *version = PyObject_GetAttrString(item, "version");
    PyObject *content = PyObject_GetAttrString(item, "content");
    PyObject *broken = PyObject_GetAttrString(item, "broken");
    File *f = NULL;
    int rc = -1;
    if (!path || !file_id || !version || !content || !broken)
        goto done;
    if (!PyUnicode_Check(path) || !PyUnicode_Check(content) || !PyLong_Check(file_id) || !PyLong_Check(version)) {
        PyErr_SetString(PyExc_TypeError, "ResumeFile needs path: str, file_id: int, version: int, content: str");
        goto done;
    }
    Py_ssize_t plen, clen;
    const char *p = PyUnicode_AsUTF8AndSize(path, &plen);
    const char *c = p ? PyUnicode_AsUTF8AndSize(content, &clen) : NULL;
    long long fid = c ? PyLong_AsLongLong(file_id) : -1;
    long long ver = c ? PyLong_AsLongLong(version) : -1;
    if (c == NULL || PyErr_Occurred())
        goto done;
    f = xcalloc(1, sizeof *f);
    if (f == NULL || (f->path = xmalloc(plen ? (size_t)plen : 1)) == NULL ||
        text_set(&f->text, x->chunk, c, (size_t)clen, (size_t)PyUnicode_GET_LENGTH(content))) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(f->path, p, (size_t)plen);
    f->plen = (size_t)plen;
    f->file_id = fid;
    f->version = ver;
    if (broken != Py_None) {
        PyObject *kind, *bseq;
        if (!PyArg_ParseTuple(broken, "UO!", &kind, &PyLong_Type, &bseq))
            goto done;
        Py_ssize_t klen;
        const char *k = PyUnicode_AsUTF8AndSize(kind, &klen);
        long long s = k ? PyLong_AsLongLong(bseq) : -1;
        if (k == NULL || (s == -1 && PyErr_Occurred()))
            goto done;
        if (file_break(f, k, (size_t)klen, s)) {
            PyErr_NoMemory();
            goto done;
        }
    }
    if (map_put(&x->files, f)) {
        PyErr_NoMemory();
        goto done;
    }
    f = NULL;
    rc = 0;
done:
    file_free(f);
    Py_XDECREF(path);
    Py_XDECREF(file_id);
    Py_XDECREF(version);
    Py_XDECREF(content);
    Py_XDECREF(broken);
    return rc ? pyerr(x) : 0;
}

/* A new repl starts: as ingest makes a new Projector, from its resumed files if any. */
static int start_repl(Ctx *x, const char *rid, size_t len)
{
    map_clear(&x->files);
    x->rid = rid;
    x->rid_len = len;
    x->have_repl = 1;
    if (!x->has_resume)
        return 0;
    gil_hold(x);
    PyObject *key = str_of(rid, len);
    if (key == NULL)
        return pyerr(x);
    PyObject *files = PyDict_GetItemWithError(x->resume, key);
    Py_DECREF(key);
    if (files == NULL)
        return PyErr_Occurred() ? pyerr(x) : 0;
    PyObject *seq = PySequence_Fast(files, "resume values must be lists of ResumeFile");
    if (seq == NULL)
        return pyerr(x);
    int rc = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && rc == 0; i++)
        rc = resume_file(x, PySequence_Fast_GET_ITEM(seq, i));
    Py_DECREF(seq);
    return rc;
}

/* ======================================================================== */
/* Memory handed to Python: a read-only buffer that frees its block           */
/* ======================================================================== */

typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t len;
} MemObject;

static int mem_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    MemObject *m = (MemObject *)self;
    return PyBuffer_FillInfo(view, self, m->data, m->len, 1, flags);
}

static void mem_dealloc(PyObject *self)
{
    free(((MemObject *)self)->data);
    Py_TYPE(self)->tp_free(self);
}

static PyBufferProcs mem_as_buffer = {mem_getbuffer, NULL};

static PyTypeObject MemType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ot_replay._fold.Mem",
    .tp_basicsize = sizeof(MemObject),
    .tp_dealloc = mem_dealloc,
    .tp_as_buffer = &mem_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A block of fold output, read through the buffer protocol.",
};

/* A Mem owning b's block (b is left empty); never a NULL data pointer. */
static PyObject *mem_from(Buf *b)
{
    if (b->p == NULL && (b->p = xmalloc(1)) == NULL)
        return PyErr_NoMemory();
    MemObject *m = PyObject_New(MemObject, &MemType);
    if (m == NULL)
        return NULL;
    m->data = b->p;
    m->len = (Py_ssize_t)b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return (PyObject *)m;
}

/* (name, length, null_count, validity, offsets, data, large) of one output column.
 * String offsets are narrowed in place to int32 (Arrow string) when they fit. */
static PyObject *export_col(Col *c)
{
    int large = 0;
    if (c->spec->type == C_STR) {
        if (c->data.len <= INT32_MAX) {
            size_t n = c->offsets.len / 8;
            for (size_t i = 0; i < n; i++) {  /* writes at 4i never pass the reads at 8i */
                int64_t v;
                memcpy(&v, c->offsets.p + 8 * i, 8);
                int32_t w = (int32_t)v;
                memcpy(c->offsets.p + 4 * i, &w, 4);
            }
            c->offsets.len = 4 * n;
        } else {
            large = 1;
        }
    }
    PyObject *valid = c->nulls ? mem_from(&c->valid) : Py_NewRef(Py_None);
    PyObject *offs = c->spec->type == C_STR ? mem_from(&c->offsets) : Py_NewRef(Py_None);
    PyObject *data = mem_from(&c->data);
    if (!valid || !offs || !data) {
        Py_XDECREF(valid);
        Py_XDECREF(offs);
        Py_XDECREF(data);
        return NULL;
    }
    const char *type = c->spec->type == C_STR ? "str" : c->spec->type == C_I64 ? "int64" : "uint64";
    return Py_BuildValue("(ssnnNNNi)", c->spec->name, type, (Py_ssize_t)c->n, (Py_ssize_t)c->nulls, valid, offs,
                         data, large);
}

/* ======================================================================== */
/* fold()                                                                    */
/* ======================================================================== */

/* Buffers of one input column from (length, offset, validity, offsets, data, width). */
static int take_column(Ctx *x, int k, PyObject *spec)
{
    InCol *c = &x->in[k];
    c->name = INPUTS[k].name;
    Py_ssize_t length, off;
    PyObject *valid, *offs, *data;
    int width;
    if (!PyArg_ParseTuple(spec, "nnOOOi", &length, &off, &valid, &offs, &data, &width))
        return -1;
    if (length != x->nrows || off < 0 || off > PY_SSIZE_T_MAX / 16 - length ||
        (INPUTS[k].is_str ? (width != 4 && width != 8) : width != 8)) {
        PyErr_Format(PyExc_ValueError, "fold: column %s has a bad length, offset or width", c->name);
        return -1;
    }
    c->width = width;
    c->off = off;
    Py_ssize_t end = off + length;
    if (valid != Py_None) {
        if (PyObject_GetBuffer(valid, &c->valid, PyBUF_SIMPLE))
            return -1;
        c->has_valid = 1;
        if (c->valid.len < (end + 7) / 8)
            goto short_buffer;
    }
    if (INPUTS[k].is_str) {
        if (offs == Py_None) {
            if (length)
                goto short_buffer;
        } else {
            if (PyObject_GetBuffer(offs, &c->offs, PyBUF_SIMPLE))
                return -1;
            c->has_offs = 1;
            if (length && c->offs.len < (end + 1) * width)
                goto short_buffer;
        }
    }
    if (data != Py_None) {
        if (PyObject_GetBuffer(data, &c->data, PyBUF_SIMPLE))
            return -1;
        c->has_data = 1;
    }
    if (!INPUTS[k].is_str && length && (!c->has_data || c->data.len < end * 8))
        goto short_buffer;
    return 0;
short_buffer:
    PyErr_Format(PyExc_ValueError, "fold: a buffer of column %s is too short", c->name);
    return -1;
}

/* Bytes of string data of input column k over all rows (0 if the offsets look wrong). */
static size_t in_span(const Ctx *x, int k)
{
    const InCol *c = &x->in[k];
    if (x->nrows == 0 || !c->has_offs)
        return 0;
    int64_t a, b;
    const char *o = (const char *)c->offs.buf;
    if (c->width == 4) {
        int32_t a32, b32;
        memcpy(&a32, o + c->off * 4, 4);
        memcpy(&b32, o + (c->off + x->nrows) * 4, 4);
        a = a32;
        b = b32;
    } else {
        memcpy(&a, o + c->off * 8, 8);
        memcpy(&b, o + (c->off + x->nrows) * 8, 8);
    }
    return a >= 0 && b >= a ? (size_t)(b - a) : 0;
}

/* Size the ot_ops buffers for every row being accepted: growing them by doubling would
 * copy them about once more. (Pages never written cost nothing.) */
static int reserve_ot_ops(Ctx *x)
{
    size_t n = (size_t)x->nrows;
    Col *c = x->out[T_OT_OPS];
    size_t text[MAX_COLS] = {0};
    text[0] = in_span(x, IN_REPL_ID);
    text[3] = in_span(x, IN_PATH);
    text[6] = in_span(x, IN_OPS);
    text[8] = in_span(x, IN_AUTHOR);
    for (size_t i = 0; i < TABLES[T_OT_OPS].ncols; i++) {
        Col *col = &c[i];
        int fail = col->spec->type == C_STR ? buf_grow(&col->data, text[i]) || buf_grow(&col->offsets, 8 * n)
                                            : buf_grow(&col->data, 8 * n);
        if (fail || (col->spec->nullable && buf_grow(&col->valid, n / 8 + 1)))
            return -1;
    }
    return 0;
}

static void ctx_free(Ctx *x)
{
    for (int k = 0; k < N_IN; k++) {
        if (x->in[k].has_valid)
            PyBuffer_Release(&x->in[k].valid);
        if (x->in[k].has_offs)
            PyBuffer_Release(&x->in[k].offs);
        if (x->in[k].has_data)
            PyBuffer_Release(&x->in[k].data);
    }
    map_clear(&x->files);
    free(x->len_op);
    free(x->ops);
    buf_free(&x->ins);
    buf_free(&x->dumped);
    Py_CLEAR(x->py_ops);
    Py_CLEAR(x->refused);
    for (int t = 0; t < N_TABLES; t++)
        for (size_t i = 0; i < TABLES[t].ncols; i++) {
            buf_free(&x->out[t][i].data);
            buf_free(&x->out[t][i].offsets);
            buf_free(&x->out[t][i].valid);
        }
}

/* The loop over the rows; runs with the GIL released, taking it only when needed. */
static int fold_loop(Ctx *x)
{
    for (Py_ssize_t i = 0; i < x->nrows; i++) {
        const char *rid, *kind = "";
        size_t rlen, klen = 0;
        int64_t seq, us;
        if (req_str(x, IN_REPL_ID, i, &rid, &rlen) || req_i64(x, IN_SEQ, i, &seq) || req_i64(x, IN_US, i, &us))
            return -1;
        if (!in_null(&x->in[IN_KIND], i) && in_str(x, IN_KIND, i, &kind, &klen))
            return -1;
        if (!x->have_repl || rlen != x->rid_len || memcmp(rid, x->rid, rlen) != 0)
            if (start_repl(x, rid, rlen))
                return -1;
        int r = klen == 2 && kind[0] == 'o' && kind[1] == 't' ? fold_ot(x, i, seq, us) : fold_file(x, i, seq, us);
        if (r)
            return -1;
        if (!x->released) {  /* Python was needed for this row: let go of it again */
            Py_CLEAR(x->py_ops);
            gil_drop(x);
        }
    }
    return 0;
}

PyDoc_STRVAR(fold_doc,
"fold(columns, nrows, every, resume, parse, past_end, BadEvent, chunk_bytes=1024) -> (tables, refused)\n\n"
"Fold ot/file rows as warehouse.projector.Projector does. columns: one\n"
"(length, offset, validity, offsets, data, width) tuple per input column in the\n"
"order repl_id, seq, us, kind, path, version, ops, crc32, author, op, dest.\n"
"tables: {name: [(column, type, length, null_count, validity, offsets, data, large)]};\n"
"refused: [(row, BadEvent)]. Use warehouse.fold_native.fold_rows.");

static PyObject *fold(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *columns, *result = NULL, *tables = NULL;
    Ctx *x = xcalloc(1, sizeof *x);
    if (x == NULL)
        return PyErr_NoMemory();
    long long every;
    Py_ssize_t chunk = CHUNK_BYTES;
    if (!PyArg_ParseTuple(args, "O!nLO!OOO|n", &PyTuple_Type, &columns, &x->nrows, &every, &PyDict_Type, &x->resume,
                          &x->parse_cb, &x->past_end_cb, &x->bad_event, &chunk))
        goto done;
    if (every < 1) {
        PyErr_SetString(PyExc_ValueError, "fold: every must be >= 1");
        goto done;
    }
    if (chunk < CHUNK_BYTES_MIN || chunk > CHUNK_BYTES_MAX) {
        PyErr_Format(PyExc_ValueError, "fold: chunk_bytes must be %d..%d", CHUNK_BYTES_MIN, CHUNK_BYTES_MAX);
        goto done;
    }
    x->chunk = (size_t)chunk;
    if ((x->len_op = xmalloc(((size_t)chunk + 1) * sizeof *x->len_op)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    x->len_op[0] = (uint32_t)crc32_combine_gen(0);  /* x^0 */
    x->len_op[1] = (uint32_t)crc32_combine_gen(1);  /* x^8 */
    for (Py_ssize_t k = 2; k <= chunk; k++)         /* x^8k = x^8(k-1) * x^8 */
        x->len_op[k] = (uint32_t)crc32_combine_op(x->len_op[k - 1], 0, x->len_op[1]);
    if (x->nrows < 0 || PyTuple_GET_SIZE(columns) != N_IN) {
        PyErr_Format(PyExc_ValueError, "fold: expected %d columns", N_IN);
        goto done;
    }
    x->every = every;
    x->has_resume = PyDict_GET_SIZE(x->resume) > 0;
    for (int k = 0; k < N_IN; k++)
        if (take_column(x, k, PyTuple_GET_ITEM(columns, k)))
            goto done;
    for (int t = 0; t < N_TABLES; t++)
        for (size_t i = 0; i < TABLES[t].ncols; i++) {
            Col *c = &x->out[t][i];
            c->spec = &TABLES[t].spec[i];
            if (c->spec->type == C_STR && buf_put(&c->offsets, &(int64_t){0}, 8)) {
                PyErr_NoMemory();
                goto done;
            }
        }
    if ((x->refused = PyList_New(0)) == NULL)
        goto done;
    if (reserve_ot_ops(x)) {
        PyErr_NoMemory();
        goto done;
    }

    x->released = PyEval_SaveThread();
    int rc = fold_loop(x);
    gil_hold(x);
    if (rc) {
        if (x->err == E_NOMEM)
            PyErr_NoMemory();
        else if (x->err == E_VALUE)
            PyErr_SetString(PyExc_ValueError, x->errmsg);
        else if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "fold failed without an error");
        goto done;
    }
    map_clear(&x->files);  /* the state is no longer needed: free it before the output is exported */

    if ((tables = PyDict_New()) == NULL)
        goto done;
    for (int t = 0; t < N_TABLES; t++) {
        PyObject *cols = PyList_New((Py_ssize_t)TABLES[t].ncols);
        if (cols == NULL || PyDict_SetItemString(tables, TABLES[t].name, cols)) {
            Py_XDECREF(cols);
            goto done;
        }
        Py_DECREF(cols);
        for (size_t i = 0; i < TABLES[t].ncols; i++) {
            PyObject *c = export_col(&x->out[t][i]);
            if (c == NULL)
                goto done;
            PyList_SET_ITEM(cols, (Py_ssize_t)i, c);
        }
    }
    result = PyTuple_Pack(2, tables, x->refused);
done:
    Py_XDECREF(tables);
    ctx_free(x);
    free(x);
    return result;
}

/* ======================================================================== */
/* texts(): one lineage's stored packets replayed to many versions           */
/* ======================================================================== */

/* Read a compact op list as ot_ops.ops stores it (orjson's JSON of parse_ops' output,
 * [2,"x",-1]) into x->ops. READ_PYTHON for anything else (whitespace, escapes read_string
 * leaves to Python, counts of 16 digits or more), -1 when out of memory. */
static int read_compact(Ctx *x, const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text, *end = p + len;
    x->text = text;
    x->nops = 0;
    x->ins.len = 0;
    if (p == end || *p++ != '[')
        return READ_PYTHON;
    if (p < end && *p == ']')
        return p + 1 == end ? READ_OK : READ_PYTHON;
    for (;;) {
        if (p == end)
            return READ_PYTHON;
        if (*p == '"') {
            p++;
            int r = read_insert(x, &p, end);
            if (r)
                return r;
        } else {
            int neg = *p == '-';
            p += neg;
            if (p == end || *p < '1' || *p > '9')
                return READ_PYTHON;
            int64_t v = 0;
            for (int digits = 0; p < end && *p >= '0' && *p <= '9'; p++) {
                if (++digits > 15)
                    return READ_PYTHON;
                v = v * 10 + (*p - '0');
            }
            if (push_op(x, (Op){.n = neg ? -v : v}))
                return -1;
        }
        if (p == end)
            return READ_PYTHON;
        if (*p == ']')
            return p + 1 == end ? READ_OK : READ_PYTHON;
        if (*p++ != ',')
            return READ_PYTHON;
    }
}

/* Packet i of the column (IN_OPS) into x->ops, in C or through x->parse_cb; its bounds
 * checked against t. GIL released on entry and on return. */
static int lineage_packet(Ctx *x, Py_ssize_t i, const Text *t)
{
    const char *text;
    size_t len;
    if (in_null(&x->in[IN_OPS], i)) {
        x->err = E_VALUE;
        snprintf(x->errmsg, sizeof x->errmsg, "packet %zd has no ops (null)", i);
        return -1;
    }
    if (in_str(x, IN_OPS, i, &text, &len))
        return -1;
    int r = read_compact(x, text, len);
    if (r < 0)
        return nomem(x);
    if (r == READ_PYTHON) {
        gil_hold(x);
        PyObject *arg = str_of(text, len);
        PyObject *list = arg ? PyObject_CallFunction(x->parse_cb, "On", arg, i) : NULL;
        Py_XDECREF(arg);
        int big = 0;
        if (list == NULL || !PyList_Check(list)) {
            if (list != NULL)
                PyErr_SetString(PyExc_TypeError, "parse must give a list");
            Py_XDECREF(list);
            return pyerr(x);
        }
        r = ops_from_list(x, list, &big);
        Py_DECREF(list);
        if (r)
            return -1;
        gil_drop(x);
        if (big) {
            x->err = E_VALUE;
            snprintf(x->errmsg, sizeof x->errmsg, "packet %zd has a count past 2**53", i);
            return -1;
        }
    }
    int64_t pos, size;
    if (op_past_end(x, (int64_t)t->ncp, &pos, &size) != NULL) {
        x->err = E_VALUE;
        snprintf(x->errmsg, sizeof x->errmsg, "packet %zd: an op at %lld runs past the end (%lld code points)", i,
                 (long long)pos, (long long)size);
        return -1;
    }
    return 0;
}

/* The whole text as a str (its chunks joined into out first). GIL held. */
static PyObject *text_str(const Text *t, Buf *out)
{
    out->len = 0;
    for (size_t i = 0; i < t->n; i++)
        if (buf_put(out, t->c[i].data, t->c[i].len))
            return PyErr_NoMemory();
    return PyUnicode_DecodeUTF8(out->p ? out->p : "", (Py_ssize_t)out->len, "strict");
}

PyDoc_STRVAR(texts_doc,
"texts(base, packets, wanted, parse, chunk_bytes=1024) -> list[str]\n\n"
"One lineage's text after each count in `wanted` (non-decreasing, each 0..len(packets))\n"
"of its stored packets, applied in order to `base`, in one pass. packets: the\n"
"(length, offset, validity, offsets, data, width) tuple of an Arrow string column of\n"
"compact op lists (ot_ops.ops); parse(text, index) -> list reads one this reader leaves\n"
"to Python. A packet that runs past the text raises ValueError(\"packet N: ...\").\n"
"Use ot_replay.lineage.texts.");

static PyObject *texts(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *base, *spec, *wanted, *parse, *seq = NULL, *result = NULL, *last = NULL;
    Py_ssize_t chunk = CHUNK_BYTES, *counts = NULL;
    Buf out = {0};
    Text t = {0};
    if (!PyArg_ParseTuple(args, "UO!OO|n", &base, &PyTuple_Type, &spec, &wanted, &parse, &chunk))
        return NULL;
    if (chunk < CHUNK_BYTES_MIN || chunk > CHUNK_BYTES_MAX)
        return PyErr_Format(PyExc_ValueError, "texts: chunk_bytes must be %d..%d", CHUNK_BYTES_MIN, CHUNK_BYTES_MAX);
    Ctx *x = xcalloc(1, sizeof *x);
    if (x == NULL)
        return PyErr_NoMemory();
    x->parse_cb = parse;
    x->chunk = (size_t)chunk;
    if (PyTuple_GET_SIZE(spec) < 1 || (x->nrows = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 0))) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "texts: packets must be a column tuple");
        goto done;
    }
    if (take_column(x, IN_OPS, spec) || (seq = PySequence_Fast(wanted, "texts: wanted must be a sequence")) == NULL)
        goto done;
    Py_ssize_t nw = PySequence_Fast_GET_SIZE(seq);
    if ((counts = xmalloc(((size_t)nw + 1) * sizeof *counts)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < nw; k++) {
        counts[k] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, k));
        if (counts[k] == -1 && PyErr_Occurred())
            goto done;
        if (counts[k] < (k ? counts[k - 1] : 0) || counts[k] > x->nrows) {
            PyErr_Format(PyExc_ValueError, "texts: wanted must be non-decreasing counts 0..%zd", x->nrows);
            goto done;
        }
    }
    Py_ssize_t blen;
    const char *b = PyUnicode_AsUTF8AndSize(base, &blen);
    if (b == NULL)
        goto done;
    if (text_set(&t, x->chunk, b, (size_t)blen, (size_t)PyUnicode_GET_LENGTH(base))) {
        PyErr_NoMemory();
        goto done;
    }
    if ((result = PyList_New(nw)) == NULL)
        goto done;
    Py_ssize_t applied = 0;
    for (Py_ssize_t k = 0; k < nw; k++) {
        if (counts[k] > applied) {
            gil_drop(x);
            for (; applied < counts[k]; applied++) {
                if (lineage_packet(x, applied, &t))
                    break;
                if (apply_ops(x, &t)) {
                    nomem(x);
                    break;
                }
            }
            gil_hold(x);
            if (x->err != E_NONE) {
                if (x->err == E_NOMEM)
                    PyErr_NoMemory();
                else if (x->err == E_VALUE)
                    PyErr_SetString(PyExc_ValueError, x->errmsg);
                Py_CLEAR(result);
                goto done;
            }
            Py_CLEAR(last);
        }
        if (last == NULL && (last = text_str(&t, &out)) == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, k, Py_NewRef(last));
    }
done:
    gil_hold(x);
    Py_XDECREF(last);
    Py_XDECREF(seq);
    if (t.c != NULL)
        text_free(&t);
    buf_free(&out);
    free(counts);
    ctx_free(x);
    free(x);
    return result;
}

static PyObject *fail_after(PyObject *module, PyObject *arg)
{
    (void)module;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    fail_countdown = n > 0 ? n : 0;
    return PyLong_FromLong(0);
}

static PyObject *crc32_hook(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer b;
    unsigned long crc = 0;
    if (!PyArg_ParseTuple(args, "y*|k", &b, &crc))
        return NULL;
    uint32_t r = crc32_buf((uint32_t)crc, b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(r);
}

static PyObject *fail_pending(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromLong(fail_countdown);
}

static PyMethodDef methods[] = {
    {"fold", fold, METH_VARARGS, fold_doc},
    {"texts", texts, METH_VARARGS, texts_doc},
    {"_crc32", crc32_hook, METH_VARARGS, "Test hook: the CRC-32 the fold computes, crc32(data, crc=0)."},
    {"_fail_after", fail_after, METH_O,
     "Test hook: make the n-th C allocation from now fail (0: none). Not thread-safe."},
    {"_fail_pending", fail_pending, METH_NOARGS,
     "Test hook: allocations left before the planned failure (0: it happened, or none planned)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ot_replay._fold",
    "The compiled ot/file fold of ingest; see warehouse.fold_native.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fold(void)
{
    if (PyType_Ready(&MemType) < 0)
        return NULL;
#ifdef FOLD_CLMUL
    __builtin_cpu_init();
    have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "CHUNK_BYTES", CHUNK_BYTES)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
