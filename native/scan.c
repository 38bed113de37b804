/*
 * warehouse._scan: the fast lane of ingest, compiled (see warehouse/scan_native.py).
 *
 * scan() takes the JSON lines of one ingest chunk as raw Arrow buffers and, in
 * one pass per line, does the fast lane's job (once DuckDB SQL): parse the line as strict
 * JSON (RFC 8259), check it conservatively against the event contract
 * (events/schema.py FIELDS, the kinds of KIND_NAMES: stage.FAST_KINDS, and also
 * snapshot and package_install, staged with the common columns only) and, if
 * it passes, append its typed `staged` row to Arrow column buffers (for these
 * two, only the columns every kind has). Every other line goes to the slow
 * lane (events/validate.py), which is the source of truth and writes the
 * precise error. The one rule here: accept only lines the Python lane accepts,
 * with the same values; when in doubt, refuse.
 *
 * Accepting a line means all of:
 *  - it is one JSON object, '{' its first byte, valid RFC 8259 JSON throughout,
 *    nested at most MAX_DEPTH deep, valid UTF-8, trailing whitespace allowed;
 *  - orjson decodes it as is: no escaped surrogate (\uD800-\uDFFF) anywhere, no
 *    number it would make a float or refuse (integer part over 18 digits,
 *    exponent over 2 digits);
 *  - top-level keys are written without escapes and none repeats (nor in
 *    range, range.start, range.end: the contract reads them; orjson keeps a
 *    repeated key's last value);
 *  - kind is one of KIND_NAMES, written without escapes; each field of the
 *    kind's FIELDS entry has its type (absent or null where optional);
 *    integers the contract reads are plain digits with bounds (see checks);
 *  - ts is exactly YYYY-MM-DDTHH:MM:SS.ffffffZ, a real date, hours 00-23;
 *  - path (any kind, snapshot included) and dest (file move) are strings that
 *    validate.normalize_path returns unchanged;
 *  - snapshot.files: keys written without escapes, distinct, each a path
 *    normalize_path returns unchanged, values strings (see check_files);
 *    package_install.packages: strings only.
 *
 * Work: lines are cut into contiguous parts of about equal size (a few per
 * thread), scanned by up to `threads` threads with the GIL released; each part
 * becomes one record batch. Per part, each line is parsed and checked once;
 * an accepted line's row is appended to the column buffers (strings decoded
 * straight into them), then the part's rows are hashed, four at a time with
 * SSE2. Output memory comes from a small cache of freed blocks (see Memory).
 *
 * The Python side (scan_native.py) passes the Arrow buffers in and wraps the
 * ones that come out (Buffer objects) into a pyarrow Table.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h> /* x86-64 always has SSE2; elsewhere 8 bytes at a time in plain C */
#endif

#define MAX_DEPTH 64            /* nesting of arrays/objects, the line's own object included */
#define MAX_INT_DIGITS 18       /* longer integers: orjson may make them floats */
#define MAX_EXP_DIGITS 2        /* larger exponents: orjson may refuse (infinity) */
#define MAX_UNKNOWN_KEYS 32     /* per object checked for repeated keys; more: slow lane */
#define MAX_ESCAPED_PATH 4096   /* escaped paths are decoded on the stack to be checked */
#define MAX_SNAPSHOT_FILES 1024 /* snapshot.files checked for repeated keys on the stack; more: slow lane */
#define PART_MAX_BYTES (1 << 30)     /* string columns have int32 offsets */
#define MIN_THREADED_BYTES (256 << 10)  /* below this, one thread */
#define MAX_THREADS 16
#define PARTS_PER_THREAD 4
#define UINT32_MAX_VALUE 4294967295ULL

/* ------------------------------------------------------------------------- */
/* MD5 (RFC 1321). stage.content_hash is bytes 8..15 of the digest as a       */
/* little-endian uint64: state words c and d. Rows are hashed four at a time  */
/* with SSE2 (one line per 32-bit lane), which is what x86-64 always has.     */
/* ------------------------------------------------------------------------- */

static inline uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static const uint32_t MD5_IV[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};

/* The 64 steps: STEP(function, a, b, c, d, message word, constant, rotation). */
#define MD5_STEPS(STEP) \
    STEP(F, a, b, c, d, 0, 0xd76aa478, 7) \
    STEP(F, d, a, b, c, 1, 0xe8c7b756, 12) \
    STEP(F, c, d, a, b, 2, 0x242070db, 17) \
    STEP(F, b, c, d, a, 3, 0xc1bdceee, 22) \
    STEP(F, a, b, c, d, 4, 0xf57c0faf, 7) \
    STEP(F, d, a, b, c, 5, 0x4787c62a, 12) \
    STEP(F, c, d, a, b, 6, 0xa8304613, 17) \
    STEP(F, b, c, d, a, 7, 0xfd469501, 22) \
    STEP(F, a, b, c, d, 8, 0x698098d8, 7) \
    STEP(F, d, a, b, c, 9, 0x8b44f7af, 12) \
    STEP(F, c, d, a, b, 10, 0xffff5bb1, 17) \
    STEP(F, b, c, d, a, 11, 0x895cd7be, 22) \
    STEP(F, a, b, c, d, 12, 0x6b901122, 7) \
    STEP(F, d, a, b, c, 13, 0xfd987193, 12) \
    STEP(F, c, d, a, b, 14, 0xa679438e, 17) \
    STEP(F, b, c, d, a, 15, 0x49b40821, 22) \
    STEP(G, a, b, c, d, 1, 0xf61e2562, 5) \
    STEP(G, d, a, b, c, 6, 0xc040b340, 9) \
    STEP(G, c, d, a, b, 11, 0x265e5a51, 14) \
    STEP(G, b, c, d, a, 0, 0xe9b6c7aa, 20) \
    STEP(G, a, b, c, d, 5, 0xd62f105d, 5) \
    STEP(G, d, a, b, c, 10, 0x02441453, 9) \
    STEP(G, c, d, a, b, 15, 0xd8a1e681, 14) \
    STEP(G, b, c, d, a, 4, 0xe7d3fbc8, 20) \
    STEP(G, a, b, c, d, 9, 0x21e1cde6, 5) \
    STEP(G, d, a, b, c, 14, 0xc33707d6, 9) \
    STEP(G, c, d, a, b, 3, 0xf4d50d87, 14) \
    STEP(G, b, c, d, a, 8, 0x455a14ed, 20) \
    STEP(G, a, b, c, d, 13, 0xa9e3e905, 5) \
    STEP(G, d, a, b, c, 2, 0xfcefa3f8, 9) \
    STEP(G, c, d, a, b, 7, 0x676f02d9, 14) \
    STEP(G, b, c, d, a, 12, 0x8d2a4c8a, 20) \
    STEP(H, a, b, c, d, 5, 0xfffa3942, 4) \
    STEP(H, d, a, b, c, 8, 0x8771f681, 11) \
    STEP(H, c, d, a, b, 11, 0x6d9d6122, 16) \
    STEP(H, b, c, d, a, 14, 0xfde5380c, 23) \
    STEP(H, a, b, c, d, 1, 0xa4beea44, 4) \
    STEP(H, d, a, b, c, 4, 0x4bdecfa9, 11) \
    STEP(H, c, d, a, b, 7, 0xf6bb4b60, 16) \
    STEP(H, b, c, d, a, 10, 0xbebfbc70, 23) \
    STEP(H, a, b, c, d, 13, 0x289b7ec6, 4) \
    STEP(H, d, a, b, c, 0, 0xeaa127fa, 11) \
    STEP(H, c, d, a, b, 3, 0xd4ef3085, 16) \
    STEP(H, b, c, d, a, 6, 0x04881d05, 23) \
    STEP(H, a, b, c, d, 9, 0xd9d4d039, 4) \
    STEP(H, d, a, b, c, 12, 0xe6db99e5, 11) \
    STEP(H, c, d, a, b, 15, 0x1fa27cf8, 16) \
    STEP(H, b, c, d, a, 2, 0xc4ac5665, 23) \
    STEP(I, a, b, c, d, 0, 0xf4292244, 6) \
    STEP(I, d, a, b, c, 7, 0x432aff97, 10) \
    STEP(I, c, d, a, b, 14, 0xab9423a7, 15) \
    STEP(I, b, c, d, a, 5, 0xfc93a039, 21) \
    STEP(I, a, b, c, d, 12, 0x655b59c3, 6) \
    STEP(I, d, a, b, c, 3, 0x8f0ccc92, 10) \
    STEP(I, c, d, a, b, 10, 0xffeff47d, 15) \
    STEP(I, b, c, d, a, 1, 0x85845dd1, 21) \
    STEP(I, a, b, c, d, 8, 0x6fa87e4f, 6) \
    STEP(I, d, a, b, c, 15, 0xfe2ce6e0, 10) \
    STEP(I, c, d, a, b, 6, 0xa3014314, 15) \
    STEP(I, b, c, d, a, 13, 0x4e0811a1, 21) \
    STEP(I, a, b, c, d, 4, 0xf7537e82, 6) \
    STEP(I, d, a, b, c, 11, 0xbd3af235, 10) \
    STEP(I, c, d, a, b, 2, 0x2ad7d2bb, 15) \
    STEP(I, b, c, d, a, 9, 0xeb86d391, 21)

#define MD5_F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
/* (x & z) | (y & ~z): the two halves share no bit, so + is |, and a + b + c chains less */
#define MD5_G(x, y, z) (((x) & (z)) + ((y) & ~(z)))
#define MD5_H(x, y, z) ((x) ^ (y) ^ (z))
#define MD5_I(x, y, z) ((y) ^ ((x) | ~(z)))
#define MD5_STEP(f, a, b, c, d, i, t, s)                  \
    do {                                                  \
        (a) += MD5_##f((b), (c), (d)) + x[i] + (uint32_t)(t); \
        (a) = ((a) << (s)) | ((a) >> (32 - (s)));         \
        (a) += (b);                                       \
    } while (0);

static void md5_block(uint32_t st[4], const uint8_t *p)
{
    uint32_t x[16];
    for (int i = 0; i < 16; i++)
        x[i] = le32(p + 4 * i);
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    MD5_STEPS(MD5_STEP)
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
}

/* The padded end of a message of `len` bytes (its last len % 64 bytes, 0x80, zeros, the length in
 * bits) into tail; returns its number of blocks, 1 or 2. */
static int md5_tail(uint8_t tail[128], const uint8_t *data, size_t len)
{
    size_t rest = len % 64;
    int blocks = rest < 56 ? 1 : 2;
    memset(tail, 0, 128);
    if (rest)
        memcpy(tail, data + len - rest, rest);
    tail[rest] = 0x80;
    uint64_t bits = (uint64_t)len << 3;
    for (int i = 0; i < 8; i++)
        tail[blocks * 64 - 8 + i] = (uint8_t)(bits >> (8 * i));
    return blocks;
}

/* The MD5 state words after hashing `data`; the digest is st[0..3], each little-endian. */
static void md5(const uint8_t *data, size_t len, uint32_t st[4])
{
    uint8_t tail[128];
    memcpy(st, MD5_IV, sizeof MD5_IV);
    for (size_t i = 0; i + 64 <= len; i += 64)
        md5_block(st, data + i);
    int blocks = md5_tail(tail, data, len);
    for (int i = 0; i < blocks; i++)
        md5_block(st, tail + 64 * i);
}

#if defined(__SSE2__)
#define V_ROTL(x, s) _mm_or_si128(_mm_slli_epi32((x), (s)), _mm_srli_epi32((x), 32 - (s)))
#define V_F(x, y, z) _mm_xor_si128((z), _mm_and_si128((x), _mm_xor_si128((y), (z))))
#define V_G(x, y, z) _mm_or_si128(_mm_and_si128((x), (z)), _mm_andnot_si128((z), (y)))
#define V_H(x, y, z) _mm_xor_si128(_mm_xor_si128((x), (y)), (z))
#define V_I(x, y, z) _mm_xor_si128((y), _mm_or_si128((x), _mm_xor_si128((z), ones)))
#define V_STEP(f, a, b, c, d, i, t, s)                                                                  \
    (a) = _mm_add_epi32((a), _mm_add_epi32(V_##f((b), (c), (d)),                                       \
                                           _mm_add_epi32(x[i], _mm_set1_epi32((int)(uint32_t)(t))))); \
    (a) = _mm_add_epi32(V_ROTL((a), (s)), (b));

/* Four block transforms at once: lane l hashes block p[l] into state st[0..3][l]. */
static void md5_block4(uint32_t st[4][4], const uint8_t *const p[4])
{
    const __m128i ones = _mm_set1_epi32(-1);
    __m128i x[16];
    for (int i = 0; i < 16; i += 4) {
        /* words i..i+3 of the four blocks, transposed: x[i + j] holds word i + j of every lane */
        __m128i r0 = _mm_loadu_si128((const __m128i *)(const void *)(p[0] + 4 * i));
        __m128i r1 = _mm_loadu_si128((const __m128i *)(const void *)(p[1] + 4 * i));
        __m128i r2 = _mm_loadu_si128((const __m128i *)(const void *)(p[2] + 4 * i));
        __m128i r3 = _mm_loadu_si128((const __m128i *)(const void *)(p[3] + 4 * i));
        __m128i t0 = _mm_unpacklo_epi32(r0, r1), t1 = _mm_unpacklo_epi32(r2, r3);
        __m128i t2 = _mm_unpackhi_epi32(r0, r1), t3 = _mm_unpackhi_epi32(r2, r3);
        x[i] = _mm_unpacklo_epi64(t0, t1);
        x[i + 1] = _mm_unpackhi_epi64(t0, t1);
        x[i + 2] = _mm_unpacklo_epi64(t2, t3);
        x[i + 3] = _mm_unpackhi_epi64(t2, t3);
    }
    __m128i a0 = _mm_loadu_si128((const __m128i *)(const void *)st[0]);
    __m128i b0 = _mm_loadu_si128((const __m128i *)(const void *)st[1]);
    __m128i c0 = _mm_loadu_si128((const __m128i *)(const void *)st[2]);
    __m128i d0 = _mm_loadu_si128((const __m128i *)(const void *)st[3]);
    __m128i a = a0, b = b0, c = c0, d = d0;
    MD5_STEPS(V_STEP)
    _mm_storeu_si128((__m128i *)(void *)st[0], _mm_add_epi32(a, a0));
    _mm_storeu_si128((__m128i *)(void *)st[1], _mm_add_epi32(b, b0));
    _mm_storeu_si128((__m128i *)(void *)st[2], _mm_add_epi32(c, c0));
    _mm_storeu_si128((__m128i *)(void *)st[3], _mm_add_epi32(d, d0));
}

#endif

/* The rows to hash: the raw column's bytes and offsets; `next` is the first row no lane took yet. */
typedef struct {
    const uint8_t *text;
    const int32_t *offsets;
    int64_t rows, next;
} rows_t;

static inline void store_hash(uint8_t *h, int64_t row, uint32_t c, uint32_t d)
{
    uint64_t v = (uint64_t)c | (uint64_t)d << 32;
    memcpy(h + 8 * row, &v, 8);
}

#if defined(__SSE2__)
/* One row being hashed in a lane of md5_block4. */
typedef struct {
    int64_t row;         /* -1: the lane is idle */
    const uint8_t *data; /* the row's whole blocks not hashed yet */
    size_t blocks;
    int tail_blocks, tail_next;
    uint8_t tail[128];
} lane_t;

/* Start lane l on the next row, if any is left; 1 if the lane is busy. */
static int lane_take(lane_t *lane, uint32_t st[4][4], int l, rows_t *r)
{
    if (r->next == r->rows) {
        lane->row = -1;
        return 0;
    }
    lane->row = r->next++;
    const uint8_t *text = r->text + r->offsets[lane->row];
    size_t len = (size_t)(r->offsets[lane->row + 1] - r->offsets[lane->row]);
    lane->data = text;
    lane->blocks = len / 64;
    lane->tail_blocks = md5_tail(lane->tail, text, len);
    lane->tail_next = 0;
    for (int i = 0; i < 4; i++)
        st[i][l] = MD5_IV[i];
    return 1;
}

static const uint8_t *lane_next_block(lane_t *lane)
{
    if (lane->blocks) {
        lane->blocks--;
        lane->data += 64;
        return lane->data - 64;
    }
    return lane->tail + 64 * lane->tail_next++;
}

static int lane_done(const lane_t *lane) { return lane->blocks == 0 && lane->tail_next == lane->tail_blocks; }
#endif

/* The h column: content_hash of every row's raw text. */
static void hash_rows(uint8_t *h, rows_t r)
{
#if defined(__SSE2__)
    static const uint8_t idle_block[64];
    lane_t lane[4];
    uint32_t st[4][4];
    int busy = 0;
    for (int l = 0; l < 4; l++)
        busy += lane_take(&lane[l], st, l, &r);
    while (busy > 1) {
        const uint8_t *p[4];
        for (int l = 0; l < 4; l++)
            p[l] = lane[l].row < 0 ? idle_block : lane_next_block(&lane[l]);
        md5_block4(st, p);
        for (int l = 0; l < 4; l++) {
            if (lane[l].row >= 0 && lane_done(&lane[l])) {
                store_hash(h, lane[l].row, st[2][l], st[3][l]);
                busy += lane_take(&lane[l], st, l, &r) - 1;
            }
        }
    }
    /* no rows are left to take: the last busy lane (a long line, maybe) goes on alone */
    for (int l = 0; l < 4; l++) {
        if (lane[l].row < 0)
            continue;
        uint32_t s[4] = {st[0][l], st[1][l], st[2][l], st[3][l]};
        while (!lane_done(&lane[l]))
            md5_block(s, lane_next_block(&lane[l]));
        store_hash(h, lane[l].row, s[2], s[3]);
    }
#endif
    for (; r.next < r.rows; r.next++) {
        uint32_t s[4];
        md5(r.text + r.offsets[r.next], (size_t)(r.offsets[r.next + 1] - r.offsets[r.next]), s);
        store_hash(h, r.next, s[2], s[3]);
    }
}

/* ------------------------------------------------------------------------- */
/* Memory. The first write to fresh memory costs a page fault per 4 KB, and  */
/* in a VM that costs about as much as scanning the text (~1 ms per MB here). */
/* So freed blocks of 16 KB and more are kept for the next scans to write     */
/* into (ingest scans chunk after chunk), by size class: such blocks are      */
/* 2^k bytes. The cache holds at most CACHE_BYTES; a block no scan took for   */
/* CACHE_SCANS scans is released when a scan starts.                          */
/* ------------------------------------------------------------------------- */

#define CACHE_MIN_CLASS 14 /* 16 KB */
#define CACHE_CLASSES 48
#define CACHE_BYTES ((size_t)256 << 20)
#define CACHE_SCANS 2

/* A cached block's first bytes, while it is in the cache. */
typedef struct cached {
    struct cached *next;
    uint64_t freed_at; /* scan_count when it was freed */
} cached_t;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cached_t *cache[CACHE_CLASSES]; /* class k: blocks of 2^k bytes, last freed first */
static size_t cache_total;
static uint64_t scan_count;

/* Testing hook (_set_alloc_limit): while limited, allocations fail once `alloc_left` runs out. */
static atomic_int alloc_limited;
static atomic_long alloc_left;

static int alloc_fails(void)
{
    return atomic_load(&alloc_limited) && atomic_fetch_sub(&alloc_left, 1) <= 0;
}

/* The size class of a block for `size` bytes (2^k >= size), or -1 for small or huge sizes. */
static int size_class(size_t size)
{
    if (size <= (size_t)1 << (CACHE_MIN_CLASS - 1) || size > (size_t)1 << (CACHE_CLASSES - 1))
        return -1;
    int k = CACHE_MIN_CLASS;
    while (((size_t)1 << k) < size)
        k++;
    return k;
}

/* A block of at least `size` bytes, *cap its real size; NULL when out of memory. */
static uint8_t *mem_alloc(size_t size, size_t *cap)
{
    if (alloc_fails())
        return NULL;
    int k = size_class(size);
    if (k < 0) {
        *cap = size ? size : 1;
        return malloc(*cap);
    }
    *cap = (size_t)1 << k;
    pthread_mutex_lock(&cache_lock);
    cached_t *block = cache[k];
    if (block) {
        cache[k] = block->next;
        cache_total -= *cap;
    }
    pthread_mutex_unlock(&cache_lock);
    return block ? (uint8_t *)block : malloc(*cap);
}

static void mem_free(uint8_t *data, size_t cap)
{
    int k = size_class(cap);
    if (data && k >= 0 && cap == (size_t)1 << k) {
        pthread_mutex_lock(&cache_lock);
        if (cache_total + cap <= CACHE_BYTES) {
            cached_t *block = (cached_t *)(void *)data;
            block->next = cache[k];
            block->freed_at = scan_count;
            cache[k] = block;
            cache_total += cap;
            data = NULL;
        }
        pthread_mutex_unlock(&cache_lock);
    }
    free(data);
}

/* A scan starts: release the blocks the last CACHE_SCANS scans left in the cache. */
static void cache_new_scan(void)
{
    cached_t *stale = NULL;
    pthread_mutex_lock(&cache_lock);
    scan_count++;
    for (int k = 0; k < CACHE_CLASSES; k++) {
        for (cached_t **link = &cache[k]; *link;) {
            cached_t *block = *link;
            if (block->freed_at + CACHE_SCANS < scan_count) {
                *link = block->next;
                cache_total -= (size_t)1 << k;
                block->next = stale;
                stale = block;
            } else {
                link = &block->next;
            }
        }
    }
    pthread_mutex_unlock(&cache_lock);
    while (stale) {
        cached_t *next = stale->next;
        free(stale);
        stale = next;
    }
}

/* Growable byte buffers. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} buf_t;

/* Room for `extra` more bytes; -1 when out of memory. */
static int buf_reserve(buf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    uint8_t *data = mem_alloc(cap, &cap);
    if (!data)
        return -1;
    if (b->len)
        memcpy(data, b->data, b->len);
    mem_free(b->data, b->cap);
    b->data = data;
    b->cap = cap;
    return 0;
}

/* A zero-filled buffer of `size` bytes (len = size); -1 when out of memory. */
static int buf_zeros(buf_t *b, size_t size)
{
    b->data = mem_alloc(size, &b->cap);
    if (!b->data)
        return -1;
    memset(b->data, 0, size);
    b->len = size;
    return 0;
}

static void buf_free(buf_t *b)
{
    mem_free(b->data, b->cap);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------------- */
/* JSON scanning. Functions return the position after what they read, or     */
/* NULL when the text is not (acceptable) JSON: the line takes the slow lane. */
/* ------------------------------------------------------------------------- */

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    return x;
}

/* High bit set in each byte of x below 0x`n`..; n <= 0x80. A borrow only runs toward higher bytes,
 * so the lowest flagged byte is always a true one (that is all we use). */
static inline uint64_t bytes_below(uint64_t x, uint64_t n) { return (x - ONES * n) & ~x & HIGHS; }

/* Bytes that end a run of plain string text: '"', '\\', control characters, non-ASCII. */
static inline uint64_t string_stops(uint64_t x)
{
    return bytes_below(x ^ (ONES * '"'), 1) | bytes_below(x ^ (ONES * '\\'), 1) | bytes_below(x, 0x20) |
           (x & HIGHS);
}

static uint8_t STRING_STOP[256]; /* the same test byte by byte; filled at module init */

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The code point of 4 hex digits, or -1. */
static long hex4(const uint8_t *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0: no overlongs, no surrogates,
 * nothing above U+10FFFF. Arrow has checked the text already; this keeps us safe if not. */
static int utf8_sequence(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p[0];
    ptrdiff_t left = end - p;
    if (c >= 0xC2 && c <= 0xDF)
        return left >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
            return 0;
        return 4;
    }
    return 0;
}

/* The first byte at or after p that ends a run of plain string text (see string_stops), or end. */
static inline const uint8_t *skip_plain(const uint8_t *p, const uint8_t *end)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* signed compare: below 0x20 is a control character or (negative) a non-ASCII byte */
        __m128i stops = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
                                     _mm_cmplt_epi8(x, space));
        int mask = _mm_movemask_epi8(stops);
        if (mask)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    while (end - p >= 8) {
        uint64_t stops = string_stops(load64(p));
        if (stops)
            return p + (__builtin_ctzll(stops) >> 3);
        p += 8;
    }
    while (p < end && !STRING_STOP[*p])
        p++;
    return p;
}

/* A string's text from just after its opening quote; returns its closing quote. Refuses raw control
 * characters, bad escapes, bad UTF-8 and escaped surrogates (orjson refuses lone ones; pairs are
 * rare enough to leave to the slow lane too). Sets *escaped if the text holds a backslash. */
static const uint8_t *scan_string(const uint8_t *p, const uint8_t *end, int *escaped)
{
    for (;;) {
        p = skip_plain(p, end);
        if (p >= end)
            return NULL;
        uint8_t c = *p;
        if (c == '"')
            return p;
        if (c == '\\') {
            if (end - p < 2)
                return NULL;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u': {
                if (end - p < 6)
                    return NULL;
                long cp = hex4(p + 2);
                if (cp < 0 || (cp >= 0xD800 && cp <= 0xDFFF))
                    return NULL;
                p += 6;
                break;
            }
            default:
                return NULL;
            }
            *escaped = 1;
        } else if (c < 0x20) {
            return NULL;
        } else { /* c >= 0x80 */
            int n = utf8_sequence(p, end);
            if (!n)
                return NULL;
            p += n;
        }
    }
}

/* The decoded text of a valid string body (as scan_string passed it) into out, which has room for
 * n bytes (decoding never grows text); returns the decoded length. */
static size_t decode_string(uint8_t *out, const uint8_t *s, size_t n)
{
    const uint8_t *end = s + n;
    uint8_t *o = out;
    for (;;) {
        const uint8_t *bs = memchr(s, '\\', (size_t)(end - s));
        size_t plain = (size_t)((bs ? bs : end) - s);
        memcpy(o, s, plain);
        o += plain;
        if (!bs)
            return (size_t)(o - out);
        s = bs + 2;
        switch (bs[1]) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            long cp = hex4(bs + 2); /* 0..0xFFFF, not a surrogate: checked by scan_string */
            s = bs + 6;
            if (cp < 0x80) {
                *o++ = (uint8_t)cp;
            } else if (cp < 0x800) {
                *o++ = (uint8_t)(0xC0 | cp >> 6);
                *o++ = (uint8_t)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (uint8_t)(0xE0 | cp >> 12);
                *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (uint8_t)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: *o++ = bs[1]; break; /* '"', '\\', '/' */
        }
    }
}

static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* A number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, within the limits orjson decodes exactly
 * (integer part <= MAX_INT_DIGITS digits, exponent <= MAX_EXP_DIGITS digits). */
static const uint8_t *scan_number(const uint8_t *p, const uint8_t *end)
{
    if (p < end && *p == '-')
        p++;
    const uint8_t *digits = p;
    if (p >= end || !is_digit(*p))
        return NULL;
    if (*p == '0')
        p++;
    else
        while (p < end && is_digit(*p))
            p++;
    if (p - digits > MAX_INT_DIGITS)
        return NULL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const uint8_t *exp = p;
        while (p < end && is_digit(*p))
            p++;
        if (p == exp || p - exp > MAX_EXP_DIGITS)
            return NULL;
    }
    return p;
}

static const uint8_t *scan_literal(const uint8_t *p, const uint8_t *end, const char *word, size_t n)
{
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/* JSON value types, as Python types of orjson's result. T_NUMBER is a number that is not plain digits
 * (negative, fraction, exponent): an int or a float, so it only passes where both are allowed. */
enum { T_STR = 1, T_INT = 2, T_BOOL = 4, T_LIST = 8, T_DICT = 16, T_NULL = 32, T_FLOAT = 64, T_NUMBER = 128 };

/* One member of an object: the key's text between its quotes (as written) and the value's text. */
typedef struct {
    const uint8_t *key;
    size_t key_len;
    int key_escaped;
    const uint8_t *value, *value_end;
    uint8_t type;    /* T_* */
    uint8_t escaped; /* a string value with a backslash in it */
} member_t;

/* Walks the members of an object; `depth` is the nesting depth of its values. */
typedef struct {
    const uint8_t *p, *end;
    int depth;
    int started;
} cursor_t;

static const uint8_t *scan_value(const uint8_t *p, const uint8_t *end, int depth);

/* The type (T_*) of a valid value other than a string, from its text. */
static unsigned value_type(const uint8_t *p, const uint8_t *end)
{
    switch (*p) {
    case '{': return T_DICT;
    case '[': return T_LIST;
    case 't': case 'f': return T_BOOL;
    case 'n': return T_NULL;
    default:
        for (; p < end; p++)
            if (!is_digit(*p))
                return T_NUMBER;
        return T_INT;
    }
}

/* The next member: 1 (and *m), 0 after the object's '}' (c->p then points past it), -1 on bad JSON. */
static int next_member(cursor_t *c, member_t *m)
{
    const uint8_t *end = c->end;
    const uint8_t *p = skip_ws(c->p, end);
    if (p >= end)
        return -1;
    if (*p == '}') {
        c->p = p + 1;
        return 0;
    }
    if (c->started) {
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1, end);
        if (p >= end)
            return -1;
    }
    if (*p != '"')
        return -1;
    m->key = p + 1;
    m->key_escaped = 0;
    const uint8_t *q = scan_string(p + 1, end, &m->key_escaped);
    if (!q)
        return -1;
    m->key_len = (size_t)(q - m->key);
    p = skip_ws(q + 1, end);
    if (p >= end || *p != ':')
        return -1;
    p = skip_ws(p + 1, end);
    m->value = p;
    if (*p == '"') {
        int escaped = 0;
        const uint8_t *close = scan_string(p + 1, end, &escaped);
        if (!close)
            return -1;
        p = close + 1;
        m->type = T_STR;
        m->escaped = (uint8_t)escaped;
    } else {
        p = scan_value(p, end, c->depth);
        if (!p)
            return -1;
        m->type = (uint8_t)value_type(m->value, p);
        m->escaped = 0;
    }
    m->value_end = p;
    c->p = p;
    c->started = 1;
    return 1;
}

/* Any JSON value at nesting depth `depth` (a container there is that deep). */
static const uint8_t *scan_value(const uint8_t *p, const uint8_t *end, int depth)
{
    if (p >= end)
        return NULL;
    switch (*p) {
    case '"': {
        int escaped = 0;
        const uint8_t *q = scan_string(p + 1, end, &escaped);
        return q ? q + 1 : NULL;
    }
    case '{': {
        if (depth > MAX_DEPTH)
            return NULL;
        cursor_t c = {p + 1, end, depth + 1, 0};
        member_t m;
        int r;
        while ((r = next_member(&c, &m)) == 1) {
        }
        return r == 0 ? c.p : NULL;
    }
    case '[':
        if (depth > MAX_DEPTH)
            return NULL;
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']')
            return p + 1;
        for (;;) {
            p = scan_value(p, end, depth + 1);
            if (!p)
                return NULL;
            p = skip_ws(p, end);
            if (p >= end)
                return NULL;
            if (*p == ']')
                return p + 1;
            if (*p != ',')
                return NULL;
            p = skip_ws(p + 1, end);
        }
    case 't':
        return scan_literal(p, end, "true", 4);
    case 'f':
        return scan_literal(p, end, "false", 5);
    case 'n':
        return scan_literal(p, end, "null", 4);
    default:
        return scan_number(p, end);
    }
}

/* Keys of one object other than the contract's, to catch repeats. */
typedef struct {
    const uint8_t *key[MAX_UNKNOWN_KEYS];
    size_t len[MAX_UNKNOWN_KEYS];
    int count;
} keyset_t;

/* 0 if the key repeats one already seen (or there are too many to check). */
static int keyset_add(keyset_t *s, const uint8_t *key, size_t len)
{
    for (int i = 0; i < s->count; i++)
        if (s->len[i] == len && memcmp(s->key[i], key, len) == 0)
            return 0;
    if (s->count == MAX_UNKNOWN_KEYS)
        return 0;
    s->key[s->count] = key;
    s->len[s->count] = len;
    s->count++;
    return 1;
}

/* ------------------------------------------------------------------------- */
/* The contract: the fields of the fast kinds (events/schema.py FIELDS).      */
/* ------------------------------------------------------------------------- */

enum {
    F_REPL_ID, F_SEQ, F_TS, F_KIND, F_SESSION_ID, F_USER_ID, F_PATH, F_VERSION, F_OPS, F_SPOOKY_VERSION,
    F_CRC32, F_AUTHOR, F_NONCE, F_OP, F_DEST, F_RANGE, F_SEVERITY, F_CODE, F_MESSAGE, F_HAS_CODE_ACTION,
    F_ACTION, F_DETAIL, F_COMMAND, F_EXIT_CODE, F_OUTPUT_TAIL, F_LANGUAGE, F_IS_PRIVATE, F_OWNER, F_TITLE,
    F_FILES, F_PACKAGES, F_MANAGER, F_STATUS,
    NFIELD /* at most 64: event_t.present has a bit per field */
};

static const char *const FIELD_NAMES[NFIELD] = {
    "repl_id", "seq", "ts", "kind", "session_id", "user_id", "path", "version", "ops", "spooky_version",
    "crc32", "author", "nonce", "op", "dest", "range", "severity", "code", "message", "has_code_action",
    "action", "detail", "command", "exit_code", "output_tail", "language", "is_private", "owner", "title",
    "files", "packages", "manager", "status",
};

/* The field a top-level key names, or -1. */
static int field_id(const uint8_t *k, size_t n)
{
#define IS(name, id)                                               \
    if (memcmp(k, name, sizeof(name) - 1) == 0)                    \
        return id;
    switch (n) {
    case 2: IS("ts", F_TS) IS("op", F_OP) break;
    case 3: IS("seq", F_SEQ) IS("ops", F_OPS) break;
    case 4: IS("kind", F_KIND) IS("path", F_PATH) IS("dest", F_DEST) IS("code", F_CODE) break;
    case 5: IS("range", F_RANGE) IS("nonce", F_NONCE) IS("crc32", F_CRC32) IS("owner", F_OWNER)
            IS("title", F_TITLE) IS("files", F_FILES) break;
    case 6: IS("author", F_AUTHOR) IS("action", F_ACTION) IS("detail", F_DETAIL) IS("status", F_STATUS) break;
    case 7: IS("repl_id", F_REPL_ID) IS("user_id", F_USER_ID) IS("version", F_VERSION)
            IS("message", F_MESSAGE) IS("command", F_COMMAND) IS("manager", F_MANAGER) break;
    case 8: IS("severity", F_SEVERITY) IS("language", F_LANGUAGE) IS("packages", F_PACKAGES) break;
    case 9: IS("exit_code", F_EXIT_CODE) break;
    case 10: IS("session_id", F_SESSION_ID) IS("is_private", F_IS_PRIVATE) break;
    case 11: IS("output_tail", F_OUTPUT_TAIL) break;
    case 14: IS("spooky_version", F_SPOOKY_VERSION) break;
    case 15: IS("has_code_action", F_HAS_CODE_ACTION) break;
    default: break;
    }
#undef IS
    return -1;
}

static const char *const TYPE_NAMES[] = {"str", "int", "bool", "list", "dict", "NoneType", "float"};
#define T_ANY (T_STR | T_INT | T_BOOL | T_LIST | T_DICT | T_NULL | T_FLOAT)

typedef struct {
    int field; /* -1 ends a list */
    unsigned types;
    int required;
} spec_t;

/* stage.FAST_KINDS: the contract's kinds; snapshot and package_install last (staged with the common columns only) */
enum { K_OT, K_FILE, K_LSP, K_REPL, K_RUN, K_SHELL, K_EDITOR, K_SNAPSHOT, K_PACKAGE_INSTALL, NKIND };
static const char *const KIND_NAMES[NKIND] = {"ot", "file", "lsp_diagnostic", "repl", "run", "shell", "editor",
                                              "snapshot", "package_install"};

static const spec_t SPEC_OT[] = {
    {F_PATH, T_STR, 1}, {F_VERSION, T_INT, 1}, {F_OPS, T_LIST, 1}, {F_SPOOKY_VERSION, T_INT | T_NULL, 0},
    {F_CRC32, T_INT | T_NULL, 0}, {F_AUTHOR, T_STR | T_NULL, 0}, {F_NONCE, T_INT | T_STR | T_NULL, 0},
    {-1, 0, 0}};
static const spec_t SPEC_FILE[] = {
    {F_OP, T_STR, 1}, {F_PATH, T_STR, 1}, {F_DEST, T_STR | T_NULL, 0}, {-1, 0, 0}};
static const spec_t SPEC_LSP[] = {
    {F_PATH, T_STR, 1}, {F_RANGE, T_DICT, 1}, {F_SEVERITY, T_INT, 1}, {F_CODE, T_STR | T_NULL, 0},
    {F_MESSAGE, T_STR, 1}, {F_HAS_CODE_ACTION, T_BOOL, 0}, {-1, 0, 0}};
static const spec_t SPEC_REPL[] = {
    {F_LANGUAGE, T_STR | T_NULL, 0}, {F_IS_PRIVATE, T_BOOL, 1}, {F_OWNER, T_STR | T_NULL, 0},
    {F_TITLE, T_STR | T_NULL, 0}, {-1, 0, 0}};
static const spec_t SPEC_RUN[] = {
    {F_COMMAND, T_STR, 1}, {F_EXIT_CODE, T_INT | T_NULL, 0}, {F_OUTPUT_TAIL, T_STR | T_NULL, 0}, {-1, 0, 0}};
static const spec_t SPEC_SHELL[] = {{F_COMMAND, T_STR, 1}, {-1, 0, 0}};
static const spec_t SPEC_EDITOR[] = {
    {F_ACTION, T_STR, 1}, {F_PATH, T_STR | T_NULL, 0}, {F_DETAIL, T_ANY, 0}, {-1, 0, 0}};
static const spec_t SPEC_SNAPSHOT[] = {{F_FILES, T_DICT, 1}, {-1, 0, 0}};
static const spec_t SPEC_PACKAGE_INSTALL[] = {
    {F_PACKAGES, T_LIST, 1}, {F_MANAGER, T_STR | T_NULL, 0}, {F_STATUS, T_STR | T_NULL, 0}, {-1, 0, 0}};
static const spec_t *const SPECS[NKIND] = {SPEC_OT, SPEC_FILE, SPEC_LSP, SPEC_REPL, SPEC_RUN, SPEC_SHELL,
                                           SPEC_EDITOR, SPEC_SNAPSHOT, SPEC_PACKAGE_INSTALL};

/* ------------------------------------------------------------------------- */
/* One line: parse, check, and the values of its row.                         */
/* ------------------------------------------------------------------------- */

typedef struct {
    uint64_t present; /* bit per field id */
    int kind;         /* index in KIND_NAMES */
    member_t f[NFIELD];
    keyset_t unknown;
} event_t;

typedef struct {
    int kind;
    int64_t seq, us, user_id, version, crc32;
    int32_t range[4]; /* start.line, start.character, end.line, end.character */
    int8_t severity;
    int op; /* file: index in FILE_OPS */
    int has_code_action, is_private;
} row_t;

static const char *const FILE_OPS[] = {"create", "remove", "move"};
enum { OP_CREATE, OP_REMOVE, OP_MOVE };

static inline int has(const event_t *e, int f) { return (e->present >> f) & 1; }

/* Present and not null. */
static inline int given(const event_t *e, int f) { return has(e, f) && e->f[f].value[0] != 'n'; }

/* A string value's text between its quotes, as written. */
static inline const uint8_t *str_text(const member_t *m, size_t *n)
{
    *n = (size_t)(m->value_end - m->value) - 2;
    return m->value + 1;
}

/* The value of a number written as plain digits, 1 to max_digits of them (not "-", ".", "e"). */
static int plain_uint(const member_t *m, size_t max_digits, uint64_t *out)
{
    size_t n = (size_t)(m->value_end - m->value);
    if (n == 0 || n > max_digits)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(m->value[i]))
            return 0;
        v = v * 10 + (uint64_t)(m->value[i] - '0');
    }
    *out = v;
    return 1;
}

/* A string value written without escapes equal to `word`. */
static int str_is(const member_t *m, const char *word)
{
    size_t n, wn = strlen(word);
    const uint8_t *s = str_text(m, &n);
    return n == wn && memcmp(s, word, n) == 0;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits_at(const uint8_t *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* YYYY-MM-DDTHH:MM:SS.ffffffZ (validate._TS with a date.fromisoformat date) -> µs since the epoch. */
static int parse_ts(const uint8_t *s, size_t n, int64_t *us)
{
    static const int DAYS_IN_MONTH[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, month, day, hour, minute, second, micros;
    if (n != 27 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != '.' || s[26] != 'Z')
        return 0;
    if (!digits_at(s, 4, &year) || !digits_at(s + 5, 2, &month) || !digits_at(s + 8, 2, &day) ||
        !digits_at(s + 11, 2, &hour) || !digits_at(s + 14, 2, &minute) || !digits_at(s + 17, 2, &second) ||
        !digits_at(s + 20, 6, &micros))
        return 0;
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59)
        return 0;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > DAYS_IN_MONTH[month] + (month == 2 && leap))
        return 0;
    int64_t days = days_from_civil(year, month, day);
    *us = (((days * 24 + hour) * 60 + minute) * 60 + second) * 1000000 + micros;
    return 1;
}

/* A path that validate.normalize_path keeps as it is (decoded text): not empty, no NUL, relative
 * (no leading '/' or '\', no drive-like 'X:' start, where X is any one character: Python's isalpha
 * takes more than ASCII letters), and no empty, '.' or '..' component (what posixpath.normpath
 * would change or refuse). */
static int clean_path(const uint8_t *s, size_t n)
{
    if (n == 0 || s[0] == '/' || s[0] == '\\' || memchr(s, 0, n))
        return 0;
    size_t first = s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    if (first < n && s[first] == ':')
        return 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '/')
            continue;
        size_t len = i - start;
        if (len == 0 || (len == 1 && s[start] == '.') || (len == 2 && s[start] == '.' && s[start + 1] == '.'))
            return 0;
        start = i + 1;
    }
    return 1;
}

/* A string member holding a clean path (see clean_path), escapes decoded first. */
static int path_member_ok(const member_t *m)
{
    size_t n;
    const uint8_t *s = str_text(m, &n);
    if (m->escaped) {
        uint8_t decoded[MAX_ESCAPED_PATH];
        if (n > sizeof decoded)
            return 0;
        return clean_path(decoded, decode_string(decoded, s, n));
    }
    return clean_path(s, n);
}

/* range.start or range.end: an object with line and character, plain digits (at most 9: int32). */
static int parse_position(const member_t *v, int depth, int32_t out[2])
{
    if (v->value[0] != '{')
        return 0;
    cursor_t c = {v->value + 1, v->value_end, depth + 1, 0};
    keyset_t others = {.count = 0};
    member_t m;
    int r, seen = 0;
    while ((r = next_member(&c, &m)) == 1) {
        int which = -1;
        if (m.key_escaped)
            return 0;
        if (m.key_len == 4 && memcmp(m.key, "line", 4) == 0)
            which = 0;
        else if (m.key_len == 9 && memcmp(m.key, "character", 9) == 0)
            which = 1;
        if (which < 0) {
            if (!keyset_add(&others, m.key, m.key_len))
                return 0;
            continue;
        }
        uint64_t value;
        if (seen & (1 << which) || !plain_uint(&m, 9, &value))
            return 0;
        seen |= 1 << which;
        out[which] = (int32_t)value;
    }
    return r == 0 && seen == 3;
}

/* lsp_diagnostic.range: start and end positions, no repeated key at any of the three levels. */
static int parse_range(const member_t *v, int32_t out[4])
{
    cursor_t c = {v->value + 1, v->value_end, 3, 0};
    keyset_t others = {.count = 0};
    member_t m;
    int r, seen = 0;
    while ((r = next_member(&c, &m)) == 1) {
        int which = -1;
        if (m.key_escaped)
            return 0;
        if (m.key_len == 5 && memcmp(m.key, "start", 5) == 0)
            which = 0;
        else if (m.key_len == 3 && memcmp(m.key, "end", 3) == 0)
            which = 1;
        if (which < 0) {
            if (!keyset_add(&others, m.key, m.key_len))
                return 0;
            continue;
        }
        if (seen & (1 << which) || !parse_position(&m, 3, out + 2 * which))
            return 0;
        seen |= 1 << which;
    }
    return r == 0 && seen == 3;
}

/* snapshot.files (an object, as check_fields saw): every key a path validate.normalize_path keeps as it
 * is, written without escapes (an escaped key could spell another's text), none repeated (orjson keeps
 * the last value), every value a string. At most MAX_SNAPSHOT_FILES of them. The contents are not
 * stored (staged_row keeps only the common columns of a snapshot): they only have to be strings. */
static int check_files(const member_t *v)
{
    /* open addressing over the keys: 1 + the key's offset from the object's start, 0 for a free slot */
    enum { SLOTS = 2 * MAX_SNAPSHOT_FILES };
    uint32_t slot_key[SLOTS];
    memset(slot_key, 0, sizeof slot_key);
    const uint8_t *base = v->value;
    cursor_t c = {v->value + 1, v->value_end, 3, 0};
    member_t m;
    int r, count = 0;
    while ((r = next_member(&c, &m)) == 1) {
        if (m.key_escaped || m.type != T_STR || !clean_path(m.key, m.key_len) || ++count > MAX_SNAPSHOT_FILES)
            return 0;
        uint32_t h = 2166136261u; /* FNV-1a */
        for (size_t i = 0; i < m.key_len; i++)
            h = (h ^ m.key[i]) * 16777619u;
        for (uint32_t i = h % SLOTS;; i = (i + 1) % SLOTS) {
            if (!slot_key[i]) {
                slot_key[i] = (uint32_t)(m.key - base) + 1;
                break;
            }
            const uint8_t *other = base + slot_key[i] - 1;
            /* the same text up to a closing quote: the same key (keys are written without escapes) */
            if (memcmp(other, m.key, m.key_len) == 0 && other[m.key_len] == '"')
                return 0;
        }
    }
    return r == 0;
}

/* package_install.packages (a list, as check_fields saw): every item a string. */
static int check_packages(const member_t *v)
{
    const uint8_t *p = skip_ws(v->value + 1, v->value_end), *end = v->value_end;
    if (p < end && *p == ']')
        return 1;
    for (;;) {
        int escaped = 0;
        if (p >= end || *p != '"' || !(p = scan_string(p + 1, end, &escaped)))
            return 0;
        p = skip_ws(p + 1, end);
        if (p >= end)
            return 0;
        if (*p == ']')
            return 1;
        if (*p != ',')
            return 0;
        p = skip_ws(p + 1, end);
    }
}

/* The kind a member's value names (KIND_NAMES), written without escapes; -1 if none. */
static int kind_index(const member_t *m)
{
    if (m->value[0] != '"')
        return -1;
    for (int k = 0; k < NKIND; k++)
        if (str_is(m, KIND_NAMES[k]))
            return k;
    return -1;
}

/* The line's top-level members into e; 0 unless it is one valid JSON object with distinct keys. */
static int parse_event(const uint8_t *s, size_t n, event_t *e)
{
    const uint8_t *end = s + n;
    if (n == 0 || s[0] != '{')
        return 0;
    e->present = 0;
    e->unknown.count = 0;
    cursor_t c = {s + 1, end, 2, 0};
    member_t m;
    int r;
    while ((r = next_member(&c, &m)) == 1) {
        if (m.key_escaped) /* an escaped key may spell a field name: leave it to the Python lane */
            return 0;
        int f = field_id(m.key, m.key_len);
        if (f < 0) {
            if (!keyset_add(&e->unknown, m.key, m.key_len))
                return 0;
        } else {
            if (has(e, f))
                return 0;
            e->present |= (uint64_t)1 << f;
            e->f[f] = m;
            /* not a kind of KIND_NAMES (written plainly): slow lane, whatever follows */
            if (f == F_KIND && (e->kind = kind_index(&m)) < 0)
                return 0;
        }
    }
    return r == 0 && skip_ws(c.p, end) == end;
}

/* The kind's fields have their types; absent or null is fine where optional (as in _validate). */
static int check_fields(const event_t *e, const spec_t *spec)
{
    for (; spec->field >= 0; spec++) {
        if (!has(e, spec->field)) {
            if (spec->required)
                return 0;
            continue;
        }
        unsigned t = e->f[spec->field].type;
        if (t == T_NULL && !(spec->types & T_NULL)) {
            if (spec->required)
                return 0;
            continue;
        }
        if (t == T_NUMBER ? (spec->types & (T_INT | T_FLOAT)) != (T_INT | T_FLOAT) : !(t & spec->types))
            return 0;
    }
    return 1;
}

/* An optional integer field: absent, null, or plain digits up to max_value. */
static int optional_uint(const event_t *e, int f, size_t max_digits, uint64_t max_value, int64_t *out)
{
    uint64_t v;
    if (!given(e, f))
        return 1;
    if (!plain_uint(&e->f[f], max_digits, &v) || v > max_value)
        return 0;
    *out = (int64_t)v;
    return 1;
}

/* Every check of the module comment; fills r. */
static int check_event(const event_t *e, row_t *r)
{
    size_t n;
    const uint8_t *s;
    uint64_t v;

    if (!has(e, F_KIND)) /* if present, parse_event has checked it */
        return 0;
    r->kind = e->kind;

    /* the fields every kind has: repl_id a non-empty string, seq plain digits, ts exactly the
     * contract's spelling (escapes fail its character checks), optional session_id and user_id */
    if (!has(e, F_REPL_ID) || e->f[F_REPL_ID].type != T_STR || e->f[F_REPL_ID].value_end - e->f[F_REPL_ID].value == 2)
        return 0;
    if (!has(e, F_SEQ) || !plain_uint(&e->f[F_SEQ], MAX_INT_DIGITS, &v))
        return 0;
    r->seq = (int64_t)v;
    if (!has(e, F_TS) || e->f[F_TS].type != T_STR)
        return 0;
    s = str_text(&e->f[F_TS], &n);
    if (!parse_ts(s, n, &r->us))
        return 0;
    if (given(e, F_SESSION_ID) && e->f[F_SESSION_ID].type != T_STR)
        return 0;
    if (!optional_uint(e, F_USER_ID, MAX_INT_DIGITS, UINT64_MAX, &r->user_id))
        return 0;

    if (!check_fields(e, SPECS[r->kind]))
        return 0;
    /* any kind may carry a path; then it must be one (validate._check_kind). A snapshot's path is not
     * checked there at all, and staged_row stores whatever it is: taking only clean string paths here
     * stores the same value (normalize_path keeps them) and leaves the rest to the slow lane */
    if (given(e, F_PATH) && (e->f[F_PATH].type != T_STR || !path_member_ok(&e->f[F_PATH])))
        return 0;

    /* what _check_kind checks; required fields are present, as check_fields saw */
    switch (r->kind) {
    case K_OT:
        if (!optional_uint(e, F_VERSION, 10, UINT32_MAX_VALUE, &r->version) ||
            !optional_uint(e, F_CRC32, 10, UINT32_MAX_VALUE, &r->crc32))
            return 0;
        break;
    case K_FILE:
        for (r->op = 0; r->op < 3 && !str_is(&e->f[F_OP], FILE_OPS[r->op]); r->op++) {
        }
        if (r->op == 3)
            return 0;
        if (r->op == OP_MOVE && !(given(e, F_DEST) && path_member_ok(&e->f[F_DEST])))
            return 0;
        break;
    case K_LSP:
        if (!parse_range(&e->f[F_RANGE], r->range) || !plain_uint(&e->f[F_SEVERITY], 1, &v) || v < 1 || v > 4)
            return 0;
        r->severity = (int8_t)v;
        r->has_code_action = given(e, F_HAS_CODE_ACTION) && e->f[F_HAS_CODE_ACTION].value[0] == 't';
        break;
    case K_REPL:
        r->is_private = e->f[F_IS_PRIVATE].value[0] == 't';
        break;
    case K_RUN: {
        int64_t exit_code;
        if (!optional_uint(e, F_EXIT_CODE, 9, UINT64_MAX, &exit_code))
            return 0;
        break;
    }
    case K_SNAPSHOT:
        if (!check_files(&e->f[F_FILES]))
            return 0;
        break;
    case K_PACKAGE_INSTALL:
        if (!check_packages(&e->f[F_PACKAGES]))
            return 0;
        break;
    default:
        break;
    }
    return 1;
}

/* ------------------------------------------------------------------------- */
/* Output: Arrow column buffers of the staged rows (stage.STAGED, no origin). */
/* ------------------------------------------------------------------------- */

typedef enum { C_I64, C_U64, C_I32, C_I8, C_BOOL, C_STR } ctype_t;

enum {
    C_LINE_NO, C_RAW, C_H, C_REPL_ID, C_SEQ, C_US, C_KIND, C_SESSION_ID, C_USER_ID, C_PATH, C_VERSION, C_OPS,
    C_CRC32, C_AUTHOR, C_OP, C_DEST, C_START_LINE, C_START_CHARACTER, C_END_LINE, C_END_CHARACTER, C_SEVERITY,
    C_CODE, C_MESSAGE, C_HAS_CODE_ACTION, C_LANGUAGE, C_IS_PRIVATE, C_OWNER, C_TITLE, NCOL
};

static const struct {
    const char *name;
    ctype_t type;
} COLUMNS[NCOL] = {
    {"line_no", C_I64}, {"raw", C_STR}, {"h", C_U64}, {"repl_id", C_STR}, {"seq", C_I64}, {"us", C_I64},
    {"kind", C_STR}, {"session_id", C_STR}, {"user_id", C_I64}, {"path", C_STR}, {"version", C_I64},
    {"ops", C_STR}, {"crc32", C_U64}, {"author", C_STR}, {"op", C_STR}, {"dest", C_STR},
    {"start_line", C_I32}, {"start_character", C_I32}, {"end_line", C_I32}, {"end_character", C_I32},
    {"severity", C_I8}, {"code", C_STR}, {"message", C_STR}, {"has_code_action", C_BOOL},
    {"language", C_STR}, {"is_private", C_BOOL}, {"owner", C_STR}, {"title", C_STR},
};

static size_t type_width(ctype_t t)
{
    switch (t) {
    case C_I64: case C_U64: return 8;
    case C_I32: return 4;
    case C_I8: return 1;
    default: return 0;
    }
}

typedef struct {
    buf_t values;   /* fixed-width values, bool bits, or string bytes */
    buf_t offsets;  /* strings: int32 offsets, rows + 1 of them */
    buf_t validity; /* bit i set: row i is not null */
    int64_t nulls;
} column_t;

/* One contiguous run of input lines and the record batch it makes. */
typedef struct {
    const struct line *lines;
    size_t first, count;   /* the part's lines */
    size_t bytes;          /* their total length */
    column_t col[NCOL];
    int64_t rows;
    uint32_t filled;       /* columns given a value in the row being written */
    buf_t slow;            /* int64 line numbers for the slow lane */
    int failed;            /* out of memory */
} part_t;

struct line {
    const uint8_t *text;
    int64_t len; /* < 0: a null line */
    int64_t no;
};

/* Buffers sized for every line of the part (only string bytes grow later). */
static int part_init(part_t *t)
{
    size_t n = t->count;
    for (int c = 0; c < NCOL; c++) {
        column_t *col = &t->col[c];
        ctype_t type = COLUMNS[c].type;
        if (buf_zeros(&col->validity, (n + 7) / 8) < 0)
            return -1;
        if (type == C_STR) {
            if (buf_zeros(&col->offsets, (n + 1) * 4) < 0)
                return -1;
            size_t guess = c == C_RAW ? t->bytes : c == C_OPS ? t->bytes / 4 : n * 16;
            if (buf_reserve(&col->values, guess + 64) < 0)
                return -1;
        } else if (buf_zeros(&col->values, type == C_BOOL ? (n + 7) / 8 : n * type_width(type)) < 0) {
            return -1;
        }
    }
    return 0;
}

static void part_free(part_t *t)
{
    for (int c = 0; c < NCOL; c++) {
        buf_free(&t->col[c].values);
        buf_free(&t->col[c].offsets);
        buf_free(&t->col[c].validity);
    }
    buf_free(&t->slow);
}

static inline void set_bit(buf_t *b, int64_t i) { b->data[i >> 3] |= (uint8_t)(1u << (i & 7)); }

static inline void put_fixed(part_t *t, int c, const void *value, size_t width)
{
    memcpy(t->col[c].values.data + (size_t)t->rows * width, value, width);
    set_bit(&t->col[c].validity, t->rows);
    t->filled |= 1u << c;
}

static inline void put_i64(part_t *t, int c, int64_t v) { put_fixed(t, c, &v, 8); }
static inline void put_u64(part_t *t, int c, uint64_t v) { put_fixed(t, c, &v, 8); }
static inline void put_i32(part_t *t, int c, int32_t v) { put_fixed(t, c, &v, 4); }
static inline void put_i8(part_t *t, int c, int8_t v) { put_fixed(t, c, &v, 1); }

static inline void put_bool(part_t *t, int c, int v)
{
    if (v)
        set_bit(&t->col[c].values, t->rows);
    set_bit(&t->col[c].validity, t->rows);
    t->filled |= 1u << c;
}

static inline void end_string(column_t *col, int64_t row)
{
    int32_t end = (int32_t)col->values.len;
    memcpy(col->offsets.data + (size_t)(row + 1) * 4, &end, 4);
}

/* Bytes as they are, or (escaped) a JSON string body with escapes, decoded. -1 when out of memory. */
static int put_str(part_t *t, int c, const uint8_t *s, size_t n, int escaped)
{
    column_t *col = &t->col[c];
    if (buf_reserve(&col->values, n) < 0)
        return -1;
    uint8_t *out = col->values.data + col->values.len;
    if (escaped)
        n = decode_string(out, s, n);
    else
        memcpy(out, s, n);
    col->values.len += n;
    end_string(col, t->rows);
    set_bit(&col->validity, t->rows);
    t->filled |= 1u << c;
    return 0;
}

/* A string field's decoded text, or null when absent or null. */
static int put_json_str(part_t *t, int c, const event_t *e, int f)
{
    size_t n;
    if (!given(e, f))
        return 0;
    const uint8_t *s = str_text(&e->f[f], &n);
    return put_str(t, c, s, n, e->f[f].escaped);
}

/* The row of an accepted line; columns nothing was put into are null. -1 when out of memory. */
static int emit_row(part_t *t, const struct line *ln, const event_t *e, const row_t *r)
{
    const uint8_t *text = ln->text;
    size_t len = (size_t)ln->len;
    const char *name = KIND_NAMES[r->kind];

    t->filled = 0;
    put_i64(t, C_LINE_NO, ln->no);
    put_u64(t, C_H, 0); /* hash_rows fills it in */
    put_i64(t, C_SEQ, r->seq);
    put_i64(t, C_US, r->us);
    if (given(e, F_USER_ID))
        put_i64(t, C_USER_ID, r->user_id);
    if (put_str(t, C_RAW, text, len, 0) < 0 || put_json_str(t, C_REPL_ID, e, F_REPL_ID) < 0 ||
        put_str(t, C_KIND, (const uint8_t *)name, strlen(name), 0) < 0 ||
        put_json_str(t, C_SESSION_ID, e, F_SESSION_ID) < 0 || put_json_str(t, C_PATH, e, F_PATH) < 0)
        return -1;

    switch (r->kind) {
    case K_OT: {
        const member_t *ops = &e->f[F_OPS];
        put_i64(t, C_VERSION, r->version);
        if (given(e, F_CRC32))
            put_u64(t, C_CRC32, (uint64_t)r->crc32);
        if (put_str(t, C_OPS, ops->value, (size_t)(ops->value_end - ops->value), 0) < 0 ||
            put_json_str(t, C_AUTHOR, e, F_AUTHOR) < 0)
            return -1;
        break;
    }
    case K_FILE: {
        const char *op = FILE_OPS[r->op];
        if (put_str(t, C_OP, (const uint8_t *)op, strlen(op), 0) < 0 || put_json_str(t, C_DEST, e, F_DEST) < 0)
            return -1;
        break;
    }
    case K_LSP:
        put_i32(t, C_START_LINE, r->range[0]);
        put_i32(t, C_START_CHARACTER, r->range[1]);
        put_i32(t, C_END_LINE, r->range[2]);
        put_i32(t, C_END_CHARACTER, r->range[3]);
        put_i8(t, C_SEVERITY, r->severity);
        put_bool(t, C_HAS_CODE_ACTION, r->has_code_action);
        if (put_json_str(t, C_CODE, e, F_CODE) < 0 || put_json_str(t, C_MESSAGE, e, F_MESSAGE) < 0)
            return -1;
        break;
    case K_REPL:
        put_bool(t, C_IS_PRIVATE, r->is_private);
        if (put_json_str(t, C_LANGUAGE, e, F_LANGUAGE) < 0 || put_json_str(t, C_OWNER, e, F_OWNER) < 0 ||
            put_json_str(t, C_TITLE, e, F_TITLE) < 0)
            return -1;
        break;
    default:
        break;
    }

    /* the other columns are null (validity bit left 0); a null string ends where it starts */
    for (uint32_t rest = ~t->filled & ((1u << NCOL) - 1); rest; rest &= rest - 1) {
        int c = __builtin_ctz(rest);
        t->col[c].nulls++;
        if (COLUMNS[c].type == C_STR)
            end_string(&t->col[c], t->rows);
    }
    t->rows++;
    return 0;
}

static int add_slow(part_t *t, int64_t no)
{
    if (buf_reserve(&t->slow, 8) < 0)
        return -1;
    memcpy(t->slow.data + t->slow.len, &no, 8);
    t->slow.len += 8;
    return 0;
}

/* Scan the part's lines (no Python API here: runs without the GIL). */
static void scan_part(part_t *t)
{
    event_t e;
    row_t r;
    if (part_init(t) < 0) {
        t->failed = 1;
        return;
    }
    for (size_t i = t->first; i < t->first + t->count; i++) {
        const struct line *ln = &t->lines[i];
        /* string columns have int32 offsets; raw is the longest of them, so it decides */
        int fits = ln->len >= 0 && (uint64_t)ln->len <= (uint64_t)INT32_MAX - t->col[C_RAW].values.len;
        int ok = fits && parse_event(ln->text, (size_t)ln->len, &e) && check_event(&e, &r);
        if (ok ? emit_row(t, ln, &e, &r) < 0 : add_slow(t, ln->no) < 0) {
            t->failed = 1;
            return;
        }
    }
    hash_rows(t->col[C_H].values.data,
              (rows_t){t->col[C_RAW].values.data, (const int32_t *)(const void *)t->col[C_RAW].offsets.data,
                       t->rows, 0});
}

/* The parts to scan; each thread takes the next one not taken until none is left. */
typedef struct {
    part_t *parts;
    size_t nparts;
    atomic_size_t next;
} queue_t;

static void *work(void *arg)
{
    queue_t *q = arg;
    for (size_t i; (i = atomic_fetch_add(&q->next, 1)) < q->nparts;)
        scan_part(&q->parts[i]);
    return NULL;
}

/* ------------------------------------------------------------------------- */
/* Python: a buffer type owning a block of memory, and the module functions.  */
/* ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    uint8_t *data;
    Py_ssize_t len;
    size_t cap; /* the block's size, for mem_free */
} BufferObject;

static int Buffer_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    BufferObject *b = (BufferObject *)self;
    return PyBuffer_FillInfo(view, self, b->data, b->len, 1, flags);
}

static void Buffer_dealloc(PyObject *self)
{
    BufferObject *b = (BufferObject *)self;
    mem_free(b->data, b->cap);
    Py_TYPE(self)->tp_free(self);
}

static PyBufferProcs Buffer_as_buffer = {Buffer_getbuffer, NULL};

static PyTypeObject BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "warehouse._scan.Buffer",
    .tp_basicsize = sizeof(BufferObject),
    .tp_dealloc = Buffer_dealloc,
    .tp_as_buffer = &Buffer_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Read-only bytes of one Arrow buffer made by scan().",
};

/* A Buffer that takes over b's memory (b is left empty). */
static PyObject *take_buffer(buf_t *b)
{
    BufferObject *obj = PyObject_New(BufferObject, &BufferType);
    if (!obj)
        return NULL;
    obj->data = b->data;
    obj->len = (Py_ssize_t)b->len;
    obj->cap = b->cap;
    b->data = NULL;
    b->len = b->cap = 0;
    return (PyObject *)obj;
}

/* (rows, [per column: (validity, values) or (validity, offsets, data)]); validity None if no nulls. */
static PyObject *part_result(part_t *t)
{
    PyObject *cols = PyList_New(NCOL);
    if (!cols)
        return NULL;
    for (int c = 0; c < NCOL; c++) {
        column_t *col = &t->col[c];
        int is_str = COLUMNS[c].type == C_STR;
        PyObject *item = PyTuple_New(is_str ? 3 : 2);
        if (!item) {
            Py_DECREF(cols);
            return NULL;
        }
        PyList_SET_ITEM(cols, c, item);
        PyObject *validity = col->nulls ? take_buffer(&col->validity) : Py_NewRef(Py_None);
        PyTuple_SET_ITEM(item, 0, validity);
        PyObject *first = is_str ? take_buffer(&col->offsets) : take_buffer(&col->values);
        PyTuple_SET_ITEM(item, 1, first);
        PyObject *second = is_str ? take_buffer(&col->values) : NULL;
        if (is_str)
            PyTuple_SET_ITEM(item, 2, second);
        if (!validity || !first || (is_str && !second)) {
            Py_DECREF(cols);
            return NULL;
        }
    }
    return Py_BuildValue("(LN)", (long long)t->rows, cols);
}

/* The input: per chunk (length, offset, validity, offsets, data, nos_offset, nos) as scan() documents. */
typedef struct {
    Py_buffer views[4]; /* validity (optional), offsets, data, line numbers */
    int held[4];
} chunk_views_t;

static void release_views(chunk_views_t *cv, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            if (cv[i].held[k])
                PyBuffer_Release(&cv[i].views[k]);
}

/* Fills lines[] from one chunk's buffers after checking their sizes; -1 with ValueError. */
static int read_chunk(PyObject *item, chunk_views_t *cv, struct line *lines, size_t *count, size_t *bytes)
{
    Py_ssize_t length, offset, nos_offset;
    PyObject *objs[4];
    if (!PyArg_ParseTuple(item, "nnOOOnO;chunk must be (length, offset, validity, offsets, data, nos_offset, nos)",
                          &length, &offset, &objs[0], &objs[1], &objs[2], &nos_offset, &objs[3]))
        return -1;
    if (length < 0 || offset < 0 || nos_offset < 0) {
        PyErr_SetString(PyExc_ValueError, "negative length or offset");
        return -1;
    }
    for (int k = 0; k < 4; k++) {
        if (objs[k] == Py_None && k == 0)
            continue;
        if (PyObject_GetBuffer(objs[k], &cv->views[k], PyBUF_SIMPLE) < 0)
            return -1;
        cv->held[k] = 1;
    }
    size_t n = (size_t)length, off = (size_t)offset;
    if ((size_t)cv->views[1].len / 8 < off + n + 1 || (size_t)cv->views[3].len / 8 < (size_t)nos_offset + n ||
        (cv->held[0] && (size_t)cv->views[0].len < (off + n + 7) / 8)) {
        PyErr_SetString(PyExc_ValueError, "an Arrow buffer is shorter than the array");
        return -1;
    }
    const uint8_t *validity = cv->held[0] ? cv->views[0].buf : NULL;
    const uint8_t *data = cv->views[2].buf;
    size_t data_len = (size_t)cv->views[2].len;
    for (size_t i = 0; i < n; i++) {
        int64_t start, stop, no;
        memcpy(&start, (const uint8_t *)cv->views[1].buf + (off + i) * 8, 8);
        memcpy(&stop, (const uint8_t *)cv->views[1].buf + (off + i + 1) * 8, 8);
        memcpy(&no, (const uint8_t *)cv->views[3].buf + ((size_t)nos_offset + i) * 8, 8);
        if (start < 0 || stop < start || (uint64_t)stop > data_len) {
            PyErr_SetString(PyExc_ValueError, "Arrow offsets out of range");
            return -1;
        }
        struct line *ln = &lines[*count + i];
        ln->text = data + start;
        ln->len = stop - start;
        ln->no = no;
        if (validity && !(validity[(off + i) >> 3] >> ((off + i) & 7) & 1))
            ln->len = -1;
        else
            *bytes += (size_t)ln->len;
    }
    *count += n;
    return 0;
}

/* Cut lines into parts of about bytes/nparts each (a part may be 0 lines long at the end). */
static void cut_parts(part_t *parts, size_t nparts, const struct line *lines, size_t count, size_t bytes)
{
    size_t target = bytes / nparts + 1, i = 0;
    for (size_t p = 0; p < nparts; p++) {
        size_t first = i, size = 0;
        while (i < count && (p == nparts - 1 || size < target)) {
            size += lines[i].len > 0 ? (size_t)lines[i].len : 0;
            i++;
        }
        parts[p].lines = lines;
        parts[p].first = first;
        parts[p].count = i - first;
        parts[p].bytes = size;
    }
}

/* Cut lines into parts of part_lines lines each, a part ending early where it would pass
 * PART_MAX_BYTES; returns the number of parts (at most count). */
static size_t cut_parts_by_lines(part_t *parts, const struct line *lines, size_t count, size_t part_lines)
{
    size_t nparts = 0, i = 0;
    while (i < count) {
        size_t first = i, size = 0;
        while (i < count && i - first < part_lines) {
            size_t len = lines[i].len > 0 ? (size_t)lines[i].len : 0;
            if (i > first && size + len > PART_MAX_BYTES)
                break;
            size += len;
            i++;
        }
        parts[nparts].lines = lines;
        parts[nparts].first = first;
        parts[nparts].count = i - first;
        parts[nparts].bytes = size;
        nparts++;
    }
    return nparts;
}

PyDoc_STRVAR(scan_doc,
"scan(chunks, threads, part_lines=0) -> (parts, slow)\n\n"
"chunks: per Arrow chunk of the lines, (length, offset, validity, offsets, data, nos_offset, nos):\n"
"a large_string array's length, offset and buffers (validity may be None) and its line numbers'\n"
"int64 values buffer and offset. parts: per record batch, (rows, columns), each column the\n"
"Arrow buffers of a staged column (COLUMNS, in order): (validity, values) or (validity, offsets,\n"
"data), validity None if no nulls. slow: the line numbers of the lines not accepted, int64 bytes.\n"
"part_lines > 0: parts (record batches) of that many lines, else a few parts per thread.");

/* Scan the parts in `threads` threads (this one included), without the GIL. */
static void run_parts(part_t *parts, size_t nparts, int threads)
{
    queue_t queue = {parts, nparts, 0};
    Py_BEGIN_ALLOW_THREADS
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int w = 1; w < threads; w++) /* if a thread cannot start, the others do its share */
        started[w] = pthread_create(&tids[w], NULL, work, &queue) == 0;
    work(&queue);
    for (int w = 1; w < threads; w++)
        if (started[w])
            pthread_join(tids[w], NULL);
    Py_END_ALLOW_THREADS
}

/* scan()'s result: ([(rows, columns) per part], slow line numbers as int64 bytes). */
static PyObject *scan_result(part_t *parts, size_t nparts)
{
    size_t slow_bytes = 0;
    for (size_t p = 0; p < nparts; p++) {
        if (parts[p].failed)
            return PyErr_NoMemory();
        slow_bytes += parts[p].slow.len;
    }
    PyObject *batches = PyList_New((Py_ssize_t)nparts);
    PyObject *slow = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)slow_bytes);
    if (!batches || !slow)
        goto fail;
    char *out = PyBytes_AS_STRING(slow);
    for (size_t p = 0; p < nparts; p++) {
        if (parts[p].slow.len)
            memcpy(out, parts[p].slow.data, parts[p].slow.len);
        out += parts[p].slow.len;
        PyObject *batch = part_result(&parts[p]);
        if (!batch)
            goto fail;
        PyList_SET_ITEM(batches, (Py_ssize_t)p, batch);
    }
    return Py_BuildValue("(NN)", batches, slow);
fail:
    Py_XDECREF(batches);
    Py_XDECREF(slow);
    return NULL;
}

static PyObject *scan(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *chunks_obj, *result = NULL;
    int threads;
    Py_ssize_t part_lines = 0;
    if (!PyArg_ParseTuple(args, "Oi|n:scan", &chunks_obj, &threads, &part_lines))
        return NULL;
    if (part_lines < 0) {
        PyErr_SetString(PyExc_ValueError, "part_lines must be >= 0");
        return NULL;
    }
    PyObject *chunks = PySequence_Fast(chunks_obj, "chunks must be a sequence");
    if (!chunks)
        return NULL;
    Py_ssize_t nchunks = PySequence_Fast_GET_SIZE(chunks);
    chunk_views_t *views = PyMem_Calloc((size_t)nchunks + 1, sizeof *views);
    struct line *lines = NULL;
    part_t *parts = NULL;
    size_t nparts = 0, count = 0, bytes = 0, total = 0, lines_cap = 0;
    if (!views) {
        PyErr_NoMemory();
        goto done;
    }

    /* the lines of every chunk, in order */
    for (Py_ssize_t i = 0; i < nchunks; i++) {
        Py_ssize_t length;
        PyObject *item = PySequence_Fast_GET_ITEM(chunks, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 1 ||
            (length = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 0))) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "chunk must be a tuple starting with a length >= 0");
            goto done;
        }
        total += (size_t)length;
    }
    cache_new_scan();
    lines = (struct line *)mem_alloc((total + 1) * sizeof *lines, &lines_cap);
    if (!lines) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nchunks; i++)
        if (read_chunk(PySequence_Fast_GET_ITEM(chunks, i), &views[i], lines, &count, &bytes) < 0)
            goto done;

    /* a few parts per thread even out parts that take longer (another process on a core, slow
     * lines); each part is a record batch of at most about PART_MAX_BYTES of input */
    threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    if (bytes < MIN_THREADED_BYTES)
        threads = 1;
    if (part_lines > 0 && count > 0) {
        /* parts of part_lines lines (the caller's record batch size), fewer where they would pass
         * PART_MAX_BYTES: at most count parts */
        parts = PyMem_Calloc(count + 1, sizeof *parts);
        if (!parts) {
            PyErr_NoMemory();
            goto done;
        }
        nparts = cut_parts_by_lines(parts, lines, count, (size_t)part_lines);
    } else {
        nparts = count == 0 ? 0 : threads == 1 ? 1 : (size_t)threads * PARTS_PER_THREAD;
        if (nparts && bytes / PART_MAX_BYTES + 1 > nparts)
            nparts = bytes / PART_MAX_BYTES + 1;
        parts = PyMem_Calloc(nparts + 1, sizeof *parts);
        if (!parts) {
            PyErr_NoMemory();
            goto done;
        }
        if (nparts)
            cut_parts(parts, nparts, lines, count, bytes);
    }
    run_parts(parts, nparts, threads);
    result = scan_result(parts, nparts);

done:
    if (parts)
        for (size_t p = 0; p < nparts; p++)
            part_free(&parts[p]);
    PyMem_Free(parts);
    mem_free((uint8_t *)lines, lines_cap);
    if (views)
        release_views(views, nchunks);
    PyMem_Free(views);
    Py_DECREF(chunks);
    return result;
}

PyDoc_STRVAR(md5_doc, "md5(data) -> bytes: the MD5 digest of a bytes-like object (this module's own MD5).");

static PyObject *md5_digest(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    uint32_t st[4];
    uint8_t digest[16];
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    md5(view.buf, (size_t)view.len, st);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    for (int i = 0; i < 16; i++)
        digest[i] = (uint8_t)(st[i / 4] >> (8 * (i % 4)));
    return PyBytes_FromStringAndSize((const char *)digest, 16);
}

PyDoc_STRVAR(fields_doc,
"fields() -> {kind: {field: (type names, required)}}: the contract as compiled in, to compare\n"
"with events.schema.FIELDS.");

static PyObject *fields(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyObject *out = PyDict_New();
    for (int k = 0; out && k < NKIND; k++) {
        PyObject *kind = PyDict_New();
        if (!kind || PyDict_SetItemString(out, KIND_NAMES[k], kind) < 0) {
            Py_XDECREF(kind);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(kind);
        for (const spec_t *s = SPECS[k]; s->field >= 0; s++) {
            PyObject *names = PyList_New(0), *entry = NULL;
            for (int bit = 0; names && bit < 7; bit++) {
                PyObject *name = s->types & (1u << bit) ? PyUnicode_FromString(TYPE_NAMES[bit]) : NULL;
                if ((s->types & (1u << bit)) && (!name || PyList_Append(names, name) < 0))
                    Py_CLEAR(names);
                Py_XDECREF(name);
            }
            if (names)
                entry = Py_BuildValue("(NO)", PyList_AsTuple(names), s->required ? Py_True : Py_False);
            Py_XDECREF(names);
            if (!entry || PyDict_SetItemString(kind, FIELD_NAMES[s->field], entry) < 0) {
                Py_XDECREF(entry);
                Py_CLEAR(out);
                break;
            }
            Py_DECREF(entry);
        }
    }
    return out;
}

PyDoc_STRVAR(set_alloc_limit_doc,
"_set_alloc_limit(n): testing hook; the next n buffer allocations succeed, the later ones fail\n"
"(scan raises MemoryError). n < 0 lifts the limit.");

static PyObject *set_alloc_limit(PyObject *self, PyObject *arg)
{
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    atomic_store(&alloc_left, n);
    atomic_store(&alloc_limited, n >= 0);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"md5", md5_digest, METH_O, md5_doc},
    {"fields", fields, METH_NOARGS, fields_doc},
    {"_set_alloc_limit", set_alloc_limit, METH_O, set_alloc_limit_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "warehouse._scan",
    .m_doc = "The fast lane of ingest: JSON lines to staged rows in one compiled pass (see scan_native.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__scan(void)
{
    for (int c = 0; c < 256; c++)
        STRING_STOP[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80;
    if (PyType_Ready(&BufferType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    PyObject *columns = PyTuple_New(NCOL), *kinds = PyTuple_New(NKIND);
    int ok = columns && kinds;
    for (int c = 0; ok && c < NCOL; c++) {
        PyObject *name = PyUnicode_FromString(COLUMNS[c].name);
        ok = name != NULL;
        if (ok)
            PyTuple_SET_ITEM(columns, c, name);
    }
    for (int k = 0; ok && k < NKIND; k++) {
        PyObject *name = PyUnicode_FromString(KIND_NAMES[k]);
        ok = name != NULL;
        if (ok)
            PyTuple_SET_ITEM(kinds, k, name);
    }
    ok = ok && PyModule_AddObjectRef(m, "COLUMNS", columns) == 0 && PyModule_AddObjectRef(m, "KINDS", kinds) == 0 &&
         PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) == 0 &&
         PyModule_AddObjectRef(m, "Buffer", (PyObject *)&BufferType) == 0;
    Py_XDECREF(columns);
    Py_XDECREF(kinds);
    if (!ok) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
