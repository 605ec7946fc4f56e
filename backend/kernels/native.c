/* Native CPU kernels for decode: decode-sized products (a few token rows against large
 * weights: linear layers, whole MoE layers) and paged decode attention (the row-wise kernels a
 * step runs between them, norms, rotary and the router, are native_rows.c's).
 *
 * At decode, a linear layer or an expert multiplies 1 to 64 rows by a weight matrix that is
 * read once from memory; the step is bound by how fast the weights stream, and on two cores
 * the per-call cost of many small BLAS products (the experts: 0.5-2 MB each) keeps them far
 * below the memory's speed. These kernels read each weight row once for all the rows that use
 * it, split the rows over the OpenMP threads of PyTorch's own runtime (libgomp, shared by
 * soname), and run a whole MoE layer (both projections of every routed expert, SiLU gate,
 * weighted sum over the top-k) in one call.
 *
 * Weights and activations are float32 or bfloat16 (one dtype per call); products and the
 * gate are computed in float32 and rounded to bfloat16 only on output. Where the CPU has
 * AVX512-BF16, bfloat16 products whose inner dimension is a multiple of 32 multiply in pairs
 * (``vdpbf16ps``: bf16 x bf16 into float32 sums), and a MoE layer's activations are rounded to
 * bfloat16 before its down projection, as the torch reference's are. Every output element
 * is one dot product over the same lane order whatever else is in the call, so a token's
 * result does not depend on the batch it is in. The inner dimension must be a multiple of 16
 * (the callers check). Built by codeagent.backend.kernels.native with the machine's C
 * compiler (-O3 -march=native -fopenmp); the torch reference is the specification.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native_common.h"
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif


#define GROUP 8       /* rows of activations against one weight row at a time */
#define MAX_ROWS 64   /* activation rows of one ca_linear call (the caller checks) */
#define MAX_PAIRS 512 /* token-expert pairs in one MoE call (the caller checks) */
#define PAIRS_GROUP 4 /* activation rows a product in pairs takes at once against one weight row */
#define PAIRS_WROWS 4 /* weight rows a product in pairs streams together, at most */


/* Lane i of the result is the sum of v[i]'s 16 lanes, by the same tree as ``hsum`` (so the
 * same bits): 16 lane sums for 45 vector operations instead of 16 separate reductions. */
static inline f32x16 hsum16(const f32x16 *v) {
#if defined(__clang__) || __GNUC__ >= 12
    f32x16 u[8], w[4], x[2];
    for (int j = 0; j < 8; j++)
        u[j] = __builtin_shufflevector(v[2 * j], v[2 * j + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               __builtin_shufflevector(v[2 * j], v[2 * j + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30,
                                       31);
    for (int j = 0; j < 4; j++)
        w[j] = __builtin_shufflevector(u[2 * j], u[2 * j + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
               __builtin_shufflevector(u[2 * j], u[2 * j + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    for (int j = 0; j < 2; j++)
        x[j] = __builtin_shufflevector(w[2 * j], w[2 * j + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
               __builtin_shufflevector(w[2 * j], w[2 * j + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    return __builtin_shufflevector(x[0], x[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
           __builtin_shufflevector(x[0], x[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
#else
    float sums[16];
    for (int i = 0; i < 16; i++) sums[i] = hsum(v[i]);
    f32x16 out;
    memcpy(&out, sums, sizeof out);
    return out;
#endif
}



/* Several weight rows at once: res[j][s] = dot(rows[j], xs[s]) for j < nr, s < n (nr <= MAX_WROWS,
 * n <= GROUP, both constants after inlining); each activation vector loaded once serves every row,
 * and nr rows stream at once (more reads in flight: at one activation row, two rows at a time
 * read the weights at ~75% of the machine's streaming speed, eight at ~95%). Each (row,
 * activation) sum takes the same lane-wise additions and the same final tree whatever nr and n
 * are, so the bits do not depend on how the rows were grouped. A missing row is passed as a
 * repeat of another (the same bits either way). */
#define MAX_WROWS 8
static inline __attribute__((always_inline)) void dots(const void *const *rows, const int nr, const int bf16,
                                                       const int k, const float *const *xs, const int n,
                                                       float *const *res) {
    f32x16 acc[MAX_WROWS][GROUP];
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) acc[j][s] = (f32x16){0};
    for (int c = 0; c < k; c += 16) {
        f32x16 w[MAX_WROWS];
        for (int j = 0; j < nr; j++)
            w[j] = bf16 ? load_bf16((const uint16_t *)rows[j] + c) : load_f32((const float *)rows[j] + c);
        for (int s = 0; s < n; s++) {
            const f32x16 x = load_f32(xs[s] + c);
            for (int j = 0; j < nr; j++) acc[j][s] += w[j] * x;
        }
    }
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) res[j][s] = hsum(acc[j][s]);
}

/* The weight rows a product in pairs reads next, for it to prefetch while it multiplies the
 * current ones: with five or more activation rows, a block of four weight rows is read from
 * memory by the first pass over it and from L1 by the others, and without a software prefetch
 * nothing is in flight during those (the hardware prefetchers follow demand misses): memory and
 * arithmetic then take turns instead of overlapping. Each pass over a block prefetches its
 * share (``first``, ``lines``: 64-byte lines of the next rows, row after row) of the next
 * block. A prefetch changes no result. */
typedef struct {
    const void *rows[PAIRS_WROWS];
    int first, lines;
} Ahead;

/* bf16 weights against bf16 activations with AVX512-BF16 (``vdpbf16ps``): 32 products a
 * instruction, each lane adding the products of one even and one odd input to its float32 sum,
 * against 16 for the float32 route (which converts every weight first). Twice the arithmetic
 * a cycle is what decode batches above one row and the MoE layers need on two cores. Each
 * (row, activation) sum runs in two accumulators, the even chunks of 32 inputs into one and the
 * odd ones into the other (a last odd-numbered chunk into the first), added before the final
 * tree: two independent chains per product, so even one weight row streamed alone keeps the
 * multiplier busy. The same steps whatever nr and n (batch-invariant as ``dots``); a different
 * order of additions from the float32 route, so a machine with and one without AVX512-BF16
 * differ in the last bits (the cache key of the build includes the CPU's flags). */
#if defined(__AVX512BF16__)
#define HAVE_PAIRS 1
static inline __attribute__((always_inline)) void dots_pairs(const void *const *rows, const int nr, const int k,
                                                             const uint16_t *const *xs, const int n,
                                                             float *const *res, const Ahead *ahead) {
    __m512 acc[PAIRS_WROWS][PAIRS_GROUP][2];
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) acc[j][s][0] = acc[j][s][1] = _mm512_setzero_ps();
    const int row_lines = k / 32; /* 64-byte lines of one bf16 row */
    int line = ahead ? ahead->first : 0;
    const int last = ahead ? ahead->first + ahead->lines : 0;
    const int each = ahead && k >= 64 ? (ahead->lines + k / 64 - 1) / (k / 64) : 0;
    int c = 0;
    for (; c + 64 <= k; c += 64) {
        for (int q = 0; q < each && line < last; q++, line++)
            _mm_prefetch((const char *)ahead->rows[line / row_lines] + 64L * (line % row_lines), _MM_HINT_T0);
        for (int u = 0; u < 2; u++) {
            __m512bh w[PAIRS_WROWS];
            for (int j = 0; j < nr; j++) w[j] = (__m512bh)_mm512_loadu_si512((const uint16_t *)rows[j] + c + 32 * u);
            for (int s = 0; s < n; s++) {
                const __m512bh x = (__m512bh)_mm512_loadu_si512(xs[s] + c + 32 * u);
                for (int j = 0; j < nr; j++) acc[j][s][u] = _mm512_dpbf16_ps(acc[j][s][u], w[j], x);
            }
        }
    }
    if (c < k) /* a last chunk of 32 */
        for (int s = 0; s < n; s++) {
            const __m512bh x = (__m512bh)_mm512_loadu_si512(xs[s] + c);
            for (int j = 0; j < nr; j++)
                acc[j][s][0] = _mm512_dpbf16_ps(acc[j][s][0], (__m512bh)_mm512_loadu_si512((const uint16_t *)rows[j] + c), x);
        }
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) {
            f32x16 v;
            const __m512 sum = _mm512_add_ps(acc[j][s][0], acc[j][s][1]);
            memcpy(&v, &sum, sizeof v);
            res[j][s] = hsum(v);
        }
}
#else
#define HAVE_PAIRS 0
#endif

/* 1 where bf16 products multiply in pairs (AVX512-BF16), for the callers choosing between these
 * kernels and the BLAS. */
int ca_has_pairs(void) { return HAVE_PAIRS; }

/* How a product reads its operands: float32 weights and activations, bf16 weights against float32
 * activations, or bf16 against bf16 in pairs (AVX512-BF16, inner dimension a multiple of 32). */
enum { F32 = 0, BF16 = 1, PAIRS = 2 };
static inline int mode_for(int bf16, int k) { return bf16 ? (HAVE_PAIRS && k % 32 == 0 ? PAIRS : BF16) : F32; }

/* Weight rows streamed together for n activation rows. The float32 route: as many as keep
 * nr * n accumulators within 16 of the 32 vector registers. In pairs: one row (a thread's rows
 * then stream as one sequential read, which the hardware prefetchers follow best) for up to 4
 * activation rows, all taken at once; from 5, four rows against 2 activation rows at a time (the
 * rows stay in L1 for the next 2). Measured on a 151,936 x 2048 bf16 head, 2 threads, the host
 * streaming 69-72 GB/s, medians of 7 interleaved rounds: 8.6 / 8.8 / 10.0 / 17.2 ms at 1 / 2 /
 * 4 / 8 rows against 12.1 / 11.9 / 15.9 / 26.4 with 8 / 8 / 4 / 2 rows streamed together
 * (docs/bench/cpu-choices.md). */
static inline int rows_for(int n, int mode) {
    if (mode == PAIRS) return n <= PAIRS_GROUP ? 1 : 4;
    return n <= 2 ? 8 : n <= 4 ? 4 : 2;
}
/* activation rows a product in pairs takes at a time against nr weight rows */
static inline int pairs_group(int nr) { return nr >= 4 ? 2 : PAIRS_GROUP; }

#if HAVE_PAIRS
#define PAIRS_CASE(NR, N, AHEAD)                                           \
    case N:                                                                \
        dots_pairs(rows, NR, k, (const uint16_t *const *)xs, N, out, AHEAD); \
        break;
#endif
#define DOTS_CASE(NR, N)                      \
    case N:                                   \
        if (mode == BF16)                     \
            dots(rows, NR, 1, k, xs, N, out); \
        else                                  \
            dots(rows, NR, 0, k, xs, N, out); \
        break;

/* res[j][s] = dot(rows[j], xs[s]) for j < nr (rows_for(n, mode), or 2 for a MoE layer's gate and
 * up rows) and every s < n, GROUP activation rows at a time (in pairs: pairs_group(nr)); with
 * mode PAIRS, xs point at bf16 rows. */
static void dots_any(const void *const *rows, int nr, int mode, int k, const float *const *xs, int n,
                     float *const *res, const void *const *next) {
    float *out[MAX_WROWS];
    for (int j = 0; j < nr; j++) out[j] = res[j];
    const int most = mode == PAIRS ? pairs_group(nr) : GROUP;
    /* several passes over these rows (bf16 pairs, four rows): each prefetches its share of next */
    Ahead ahead;
    const Ahead *aheadp = NULL;
    int passes = 0, ahead_lines = 0;
    if (next && mode == PAIRS && n > most) {
        passes = (n + most - 1) / most;
        ahead_lines = nr * (k / 32);
        for (int j = 0; j < nr; j++) ahead.rows[j] = next[j];
        aheadp = &ahead;
    }
    for (int pass = 0; n > 0; pass++) {
        const int m = n > most ? most : n;
        if (aheadp) {
            ahead.first = ahead_lines * pass / passes;
            ahead.lines = ahead_lines * (pass + 1) / passes - ahead.first;
        }
#if HAVE_PAIRS
        if (mode == PAIRS) {
            /* one or two weight rows take every activation row in one pass: nothing to prefetch (a
             * constant NULL, so their loops carry no prefetch code) */
            if (nr == 1)
                switch (m) { PAIRS_CASE(1, 1, NULL) PAIRS_CASE(1, 2, NULL) PAIRS_CASE(1, 3, NULL) PAIRS_CASE(1, 4, NULL) }
            else if (nr == 2)
                switch (m) { PAIRS_CASE(2, 1, NULL) PAIRS_CASE(2, 2, NULL) PAIRS_CASE(2, 3, NULL) PAIRS_CASE(2, 4, NULL) }
            else
                switch (m) { PAIRS_CASE(4, 1, aheadp) PAIRS_CASE(4, 2, aheadp) }
        } else
#endif
        if (nr == 8) {
            switch (m) { DOTS_CASE(8, 1) DOTS_CASE(8, 2) }
        } else if (nr == 4) {
            switch (m) { DOTS_CASE(4, 3) DOTS_CASE(4, 4) }
        } else {
            switch (m) {
                DOTS_CASE(2, 1)
                DOTS_CASE(2, 2)
                DOTS_CASE(2, 3)
                DOTS_CASE(2, 4)
                DOTS_CASE(2, 5)
                DOTS_CASE(2, 6)
                DOTS_CASE(2, 7)
                DOTS_CASE(2, 8)
            }
        }
        xs += m;
        for (int j = 0; j < nr; j++) out[j] += m;
        n -= m;
    }
}

static const void *weight_row(const void *w, int bf16, long index, int k) {
    return bf16 ? (const void *)((const uint16_t *)w + index * k) : (const void *)((const float *)w + index * k);
}

/* A float32 view of x [n]: x itself, or a converted copy the caller frees. */
static float *as_f32(const void *x, long n, int bf16) {
    if (!bf16) return (float *)x;
    float *out = malloc(sizeof(float) * (size_t)n);
    if (!out) return NULL;
    for (long i = 0; i < n; i++) out[i] = bf16_to_f32(((const uint16_t *)x)[i]);
    return out;
}


/* out [t, n] = x [t, k] @ w [n, k]^T. Returns 0, -1 when memory ran out, -3 for more than
 * MAX_ROWS rows. */
int ca_linear(int t, int k, int n, const void *x, const void *w, void *out, int bf16, int threads) {
    if (t > MAX_ROWS) return -3;
    const int mode = mode_for(bf16, k);
    float *xf = mode == PAIRS ? NULL : as_f32(x, (long)t * k, bf16);
    if (mode != PAIRS && !xf) return -1;
    const float **xs = malloc(sizeof(float *) * (size_t)t);
    if (!xs) {
        if (bf16) free(xf);
        return -1;
    }
    for (int s = 0; s < t; s++)
        xs[s] = mode == PAIRS ? (const float *)((const uint16_t *)x + (long)s * k) : xf + (long)s * k;
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        const long r0 = (long)n * tid / nt, r1 = (long)n * (tid + 1) / nt;
        const int nr = rows_for(t, mode);
        float buf[MAX_WROWS][MAX_ROWS];
        float *res[MAX_WROWS];
        const void *rows[MAX_WROWS];
        for (int j = 0; j < MAX_WROWS; j++) res[j] = buf[j];
        const void *next[MAX_WROWS];
        for (long r = r0; r < r1; r += nr) {
            for (int j = 0; j < nr; j++) {
                rows[j] = weight_row(w, bf16, r + j < r1 ? r + j : r1 - 1, k);
                next[j] = weight_row(w, bf16, r + nr + j < r1 ? r + nr + j : r1 - 1, k);
            }
            dots_any(rows, nr, mode, k, xs, t, res, next);
            for (int j = 0; j < nr && r + j < r1; j++)
                for (int s = 0; s < t; s++) store(out, (long)s * n + r + j, buf[j][s], bf16);
        }
    }
    free(xs);
    if (bf16) free(xf);
    return 0;
}

/* One sparse MoE layer: out [t, h] = sum_j weights[t, j] * expert_{ids[t, j]}(x[t]), where
 * expert_e(v) = w2[e] @ (silu(gate) * up) and [gate; up] = w13[e] @ v; w13 [E, 2i, h], w2 [E, h, i].
 * ids [t, k] int64 in [0, E); weights [t, k] float32. Returns 0, -1 when memory ran out, -2 for
 * an expert id out of range, -3 for more than MAX_PAIRS pairs. */
int ca_moe(int t, int h, int inter, int experts, int topk, const void *x, const void *w13, const void *w2,
           const int64_t *ids, const float *weights, void *out, int bf16, int threads) {
    const int pairs = t * topk;
    if (pairs > MAX_PAIRS) return -3;
    for (int p = 0; p < pairs; p++)
        if (ids[p] < 0 || ids[p] >= experts) return -2;
    int *count = calloc((size_t)experts, sizeof(int));
    int *order = malloc(sizeof(int) * (size_t)pairs);
    int *active = malloc(sizeof(int) * (size_t)experts);
    int *first = malloc(sizeof(int) * (size_t)experts);
    float *act = malloc(sizeof(float) * (size_t)pairs * inter);
    float *part = malloc(sizeof(float) * (size_t)pairs * h);
    /* with AVX512-BF16, bf16 products read x as it is and the activations rounded to bf16 (as the
     * torch reference's bf16 activations are) */
    const int mode_up = mode_for(bf16, h), mode_down = mode_for(bf16, inter);
    float *xf = mode_up == PAIRS ? NULL : as_f32(x, (long)t * h, bf16);
    uint16_t *act16 = (uint16_t *)act;
    int status = 0;
    if (!count || !order || !active || !first || !act || !part || (mode_up != PAIRS && !xf)) {
        status = -1;
        goto done;
    }
    /* pairs grouped by expert, in pair order within an expert */
    for (int p = 0; p < pairs; p++) count[ids[p]]++;
    int nactive = 0, start = 0;
    for (int e = 0; e < experts; e++) {
        if (!count[e]) continue;
        active[nactive] = e;
        first[nactive++] = start;
        start += count[e];
        count[e] = first[nactive - 1];
    }
    for (int p = 0; p < pairs; p++) order[count[ids[p]]++] = p;
    for (int a = 0; a < nactive; a++) count[a] = (a + 1 < nactive ? first[a + 1] : pairs) - first[a];
    /* count[a] now holds the number of pairs of the a-th active expert */

#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        const float *xs[MAX_PAIRS];
        float *res[MAX_WROWS];
        const void *rows[MAX_WROWS], *next[MAX_WROWS];
        float results[MAX_WROWS][MAX_PAIRS];
        for (int j = 0; j < MAX_WROWS; j++) res[j] = results[j];
        /* gate and up rows of every active expert, split evenly over the threads */
        long units = (long)nactive * inter, u = units * tid / nt, u1 = units * (tid + 1) / nt;
        while (u < u1) {
            const int a = (int)(u / inter), e = active[a], n = count[a];
            const int *mine = order + first[a];
            const long i0 = u % inter, i1 = (u1 - u < inter - i0) ? i0 + (u1 - u) : inter;
            for (int s = 0; s < n; s++)
                xs[s] = mode_up == PAIRS ? (const float *)((const uint16_t *)x + (long)(mine[s] / topk) * h)
                                         : xf + (long)(mine[s] / topk) * h;
            const int wanted = rows_for(n, mode_up), half = wanted >= 2 ? wanted / 2 : 1;
            for (long i = i0; i < i1; i += half) {
                for (int j = 0; j < half; j++) {
                    const long row = i + j < i1 ? i + j : i1 - 1, after = i + half + j < i1 ? i + half + j : i1 - 1;
                    rows[j] = weight_row(w13, bf16, (long)e * 2 * inter + row, h);
                    rows[half + j] = weight_row(w13, bf16, (long)e * 2 * inter + inter + row, h);
                    next[j] = weight_row(w13, bf16, (long)e * 2 * inter + after, h);
                    next[half + j] = weight_row(w13, bf16, (long)e * 2 * inter + inter + after, h);
                }
                dots_any(rows, 2 * half, mode_up, h, xs, n, res, next);
                for (int j = 0; j < half && i + j < i1; j++)
                    for (int s = 0; s < n; s++) {
                        const float g = res[j][s], v = res[half + j][s], a = g / (1.0f + expf(-g)) * v;
                        const long at = (long)mine[s] * inter + i + j;
                        if (mode_down == PAIRS)
                            act16[at] = f32_to_bf16(a);
                        else
                            act[at] = a;
                    }
            }
            u += i1 - i0;
        }
#pragma omp barrier
        /* down projection rows of every active expert */
        units = (long)nactive * h;
        u = units * tid / nt;
        u1 = units * (tid + 1) / nt;
        while (u < u1) {
            const int a = (int)(u / h), e = active[a], n = count[a];
            const int *mine = order + first[a];
            const long r0 = u % h, r1 = (u1 - u < h - r0) ? r0 + (u1 - u) : h;
            for (int s = 0; s < n; s++)
                xs[s] = mode_down == PAIRS ? (const float *)(act16 + (long)mine[s] * inter) : act + (long)mine[s] * inter;
            const int nr = rows_for(n, mode_down);
            for (long r = r0; r < r1; r += nr) {
                for (int j = 0; j < nr; j++) {
                    rows[j] = weight_row(w2, bf16, (long)e * h + (r + j < r1 ? r + j : r1 - 1), inter);
                    next[j] = weight_row(w2, bf16, (long)e * h + (r + nr + j < r1 ? r + nr + j : r1 - 1), inter);
                }
                dots_any(rows, nr, mode_down, inter, xs, n, res, next);
                for (int j = 0; j < nr && r + j < r1; j++)
                    for (int s = 0; s < n; s++) part[(long)mine[s] * h + r + j] = res[j][s];
            }
            u += r1 - r0;
        }
#pragma omp barrier
        /* the weighted sum over each token's experts, in slot order */
        const long cells = (long)t * h, c0 = cells * tid / nt, c1 = cells * (tid + 1) / nt;
        for (long c = c0; c < c1; c++) {
            const long row = c / h, col = c % h;
            float sum = 0.0f;
            for (int j = 0; j < topk; j++) sum += weights[row * topk + j] * part[(row * topk + j) * h + col];
            store(out, c, sum, bf16);
        }
    }
done:
    free(count);
    free(order);
    free(active);
    free(first);
    free(act);
    free(part);
    if (bf16 && xf) free(xf);
    return status;
}

#define CHUNK 256 /* context rows of one work item; a sequence's chunks are merged in order */
#define TILE 16   /* rows scored, exponentiated and accumulated together */
#define MAX_GROUP 16

/* Decode attention over a paged KV pool: every sequence brings one new token. Its key and
 * value rows (k_new, v_new [b, kv_heads, d], each row's kv_heads * d contiguous, rows k_stride / v_stride
 * elements apart: a column slice of a fused projection serves) are written to their slots (row lengths[s] - 1 of
 * sequence s; row r lives at pool row tables[s, r / per_block] * per_block + r % per_block of
 * k_pool / v_pool [rows, kv_heads, d]), then each query head q [b, heads, d] attends over the
 * sequence's rows 0..lengths[s]-1; out [b, heads, d]. Work items are (sequence, chunk of CHUNK
 * rows), spread over the threads, so one long sequence keeps every thread busy; an item reads
 * each row's keys and values for all KV heads as one contiguous run and keeps, per query head,
 * a running maximum, sum and weighted sum (online softmax; the query heads of a KV head share
 * every row as it is read). A sequence's chunks are then merged in order, so its result
 * depends on its own length only. Softmax in float32. Returns 0, -1 when memory ran out, -2 for more than
 * MAX_GROUP query heads a KV head. */
int ca_decode_attention(int b, int heads, int kv_heads, int d, const void *q, const void *k_new, long k_stride,
                        const void *v_new, long v_stride, void *k_pool, void *v_pool, const int64_t *tables,
                        int max_blocks, int per_block, const int64_t *lengths, void *out, float scale, int bf16,
                        int threads) {
    const size_t elt = bf16 ? 2 : 4, row_bytes = (size_t)kv_heads * d * elt;
    const int group = heads / kv_heads;
    if (group > MAX_GROUP) return -2;
    long *first = malloc(sizeof(long) * ((size_t)b + 1));
    if (!first) return -1;
    first[0] = 0;
    for (int s = 0; s < b; s++) {
        const long pos = lengths[s] - 1;
        const long slot = tables[(long)s * max_blocks + pos / per_block] * per_block + pos % per_block;
        memcpy((char *)k_pool + slot * row_bytes, (const char *)k_new + s * k_stride * elt, row_bytes);
        memcpy((char *)v_pool + slot * row_bytes, (const char *)v_new + s * v_stride * elt, row_bytes);
        first[s + 1] = first[s] + (lengths[s] + CHUNK - 1) / CHUNK; /* chunks of sequence s */
    }
    const long per_item = 2L * group + (long)group * d; /* max, sum, weighted sum per query head */
    const int aligned = per_block % TILE == 0;           /* tiles (from multiples of TILE) never cross a block */
    const long chunks = first[b];
    float *partial = malloc(sizeof(float) * (size_t)(chunks * kv_heads * per_item));
    if (!partial) {
        free(first);
        return -1;
    }
    int status = 0;
#pragma omp parallel num_threads(threads)
    {
        float *qf = malloc(sizeof(float) * (size_t)heads * d), scores[MAX_GROUP][TILE];
        if (!qf) {
#pragma omp atomic write
            status = -1;
        }
        int s = 0;
        /* a work item is one chunk of one sequence, every KV head: each row's keys (and values)
         * for all heads are one contiguous read */
#pragma omp for schedule(dynamic, 1)
        for (long chunk = 0; chunk < chunks; chunk++) {
            if (!qf) continue;
            while (first[s + 1] <= chunk) s++;
            while (first[s] > chunk) s--;
            const long r0 = (chunk - first[s]) * CHUNK;
            const long r1 = r0 + CHUNK < lengths[s] ? r0 + CHUNK : lengths[s];
            const long qbase = (long)s * heads * d;
            for (long i = 0; i < (long)heads * d; i++)
                qf[i] = scale * (bf16 ? bf16_to_f32(((const uint16_t *)q)[qbase + i]) : ((const float *)q)[qbase + i]);
            for (int kvh = 0; kvh < kv_heads; kvh++) {
                float *mine = partial + (chunk * kv_heads + kvh) * per_item;
                for (int g = 0; g < group; g++) {
                    mine[g] = -INFINITY;
                    mine[group + g] = 0.0f;
                }
                for (long i = 0; i < (long)group * d; i++) mine[2 * group + i] = 0.0f;
            }
            for (long r = r0; r < r1; r += TILE) {
                const int n = r1 - r < TILE ? (int)(r1 - r) : TILE;
                long base[TILE];
                if (aligned) { /* the tile lies in one block: its rows are consecutive */
                    const long slot = tables[(long)s * max_blocks + r / per_block] * per_block + r % per_block;
                    for (int i = 0; i < n; i++) base[i] = (slot + i) * kv_heads * d;
                } else {
                    for (int i = 0; i < n; i++) {
                        const long row = r + i;
                        base[i] = (tables[(long)s * max_blocks + row / per_block] * per_block + row % per_block) *
                                  kv_heads * d;
                    }
                }
                /* the tile after next on its way into the cache while this one computes (rows come
                 * from memory at long contexts; docs/bench/cpu-choices.md) */
                if (aligned && r + 2 * TILE < r1) {
                    const long ahead = r + 2 * TILE;
                    const long slot = tables[(long)s * max_blocks + ahead / per_block] * per_block + ahead % per_block;
                    const char *kp = (const char *)k_pool + slot * row_bytes, *vp = (const char *)v_pool + slot * row_bytes;
                    for (size_t off = 0; off < TILE * row_bytes; off += 64) {
                        __builtin_prefetch(kp + off, 0, 3);
                        __builtin_prefetch(vp + off, 0, 3);
                    }
                }
                for (int kvh = 0; kvh < kv_heads; kvh++) {
                    float *mine = partial + (chunk * kv_heads + kvh) * per_item;
                    float *top = mine, *total = mine + group, *acc = mine + 2 * group;
                    const float *qh = qf + (long)kvh * group * d;
                    for (int g = 0; g < group; g++) {
                        f32x16 rows[TILE];
                        for (int i = 0; i < n; i++) {
                            const long at = base[i] + (long)kvh * d;
                            f32x16 sum = (f32x16){0};
                            for (int c = 0; c < d; c += 16) sum += load16(k_pool, at + c, bf16) * load_f32(qh + g * d + c);
                            rows[i] = sum;
                        }
                        for (int i = n; i < TILE; i++) rows[i] = (f32x16){0};
                        const f32x16 tile = hsum16(rows);
                        memcpy(scores[g], &tile, sizeof tile);
                    }
                    for (int g = 0; g < group; g++) {
                        float tile_top = scores[g][0];
                        for (int i = 1; i < n; i++) tile_top = scores[g][i] > tile_top ? scores[g][i] : tile_top;
                        if (tile_top > top[g]) {
                            const float factor = expf(top[g] - tile_top); /* 0 for the first tile */
                            total[g] *= factor;
                            for (int c = 0; c < d; c++) acc[g * d + c] *= factor;
                            top[g] = tile_top;
                        }
                        for (int i = n; i < TILE; i++) scores[g][i] = top[g];
                        f32x16 p = exp_nonpositive(load_f32(scores[g]) - top[g]);
                        memcpy(scores[g], &p, sizeof p);
                        for (int i = n; i < TILE; i++) scores[g][i] = 0.0f; /* rows past the end weigh nothing */
                        memcpy(&p, scores[g], sizeof p);
                        total[g] += hsum(p);
                    }
                    for (int c = 0; c < d; c += 16) {
                        f32x16 v[TILE];
                        for (int i = 0; i < n; i++) v[i] = load16(v_pool, base[i] + (long)kvh * d + c, bf16);
                        for (int g = 0; g < group; g++) {
                            f32x16 a = load_f32(acc + g * d + c);
                            for (int i = 0; i < n; i++) a += v[i] * scores[g][i];
                            memcpy(acc + g * d + c, &a, sizeof a);
                        }
                    }
                }
            }
        }
        free(qf);
        /* merge each sequence's chunks, in order */
#pragma omp for schedule(static)
        for (long pair = 0; pair < (long)b * kv_heads; pair++) {
            const long seq = pair / kv_heads, kvh = pair % kv_heads, count = first[seq + 1] - first[seq];
            for (int g = 0; g < group; g++) {
                float best = -INFINITY, weight = 0.0f;
                for (long c = 0; c < count; c++) {
                    const float *mine = partial + ((first[seq] + c) * kv_heads + kvh) * per_item;
                    best = mine[g] > best ? mine[g] : best;
                }
                float merged[256];
                for (int i = 0; i < d; i++) merged[i] = 0.0f;
                for (long c = 0; c < count; c++) {
                    const float *mine = partial + ((first[seq] + c) * kv_heads + kvh) * per_item;
                    const float factor = expf(mine[g] - best);
                    weight += mine[group + g] * factor;
                    for (int i = 0; i < d; i++) merged[i] += mine[2 * group + g * d + i] * factor;
                }
                const long at = (seq * heads + kvh * group + g) * d;
                for (int i = 0; i < d; i++) store(out, at + i, merged[i] / weight, bf16);
            }
        }
    }
    free(partial);
    free(first);
    return status;
}
