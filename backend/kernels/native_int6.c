/* Native CPU products over INT6 weights (backend/quant_int6.py has the format): out [t, n] =
 * x [t, k] @ W^T for decode-sized t, reading the 6-bit codes as they are stored, and W decoded
 * whole (the reference's values) for the products too large for it.
 *
 * The activations are quantized to int8 once per call, per row and 32 inputs (the weights' scale
 * groups), laid out in blocks of 128 inputs as the weights' decoding gives them: the 64 even
 * inputs' codes, the 64 odd ones', then per block 16 int32 corrections and 16 float scales, one
 * per int32 lane (native_common.h's i8_quantize, as the FP4 products' are).
 *
 * Products: the weight codes u = q + 32 in [0, 63] are the unsigned side of AVX512-VNNI's
 * ``vpdpbusd`` (64 byte products an instruction, summed in fours into int32 lanes), the
 * activations the signed side; sum(u x) = sum(q x) + 32 sum(x), so each lane starts from -32
 * times the sum of the activation codes it meets (computed with the codes: nothing in the
 * loop). Lane l of a block covers inputs 8l .. 8l + 7, all in group l / 4. Decoding a block of a
 * row: one 64-byte load (the nibbles) and one 32-byte load broadcast twice (the bit pairs), two
 * variable shifts, a shift, two masks and two ternary-logic merges give the even and the odd
 * codes. Each lane's exact int32 sum is converted to float32 and added times (weight scale x
 * activation scale) into a float32 lane sum (one FMA), the 16 lanes then summed as hsum does.
 * One weight row at a time (WROWS; its rows then stream as one sequential read) against up to
 * 8 activation rows (XROWS); OpenMP over output rows; each output element one dot product over
 * a fixed order whatever else is in the call, so a row's result does not depend on the batch.
 *
 * Without AVX512-VNNI (or with ``route`` INT8_PORTABLE, for tests) the portable route runs the
 * very same integer sums, float products and summation tree in plain C, so both give identical
 * bits. Against the reference (dequantize, then a float product) the result differs by the
 * activations' rounding (at most 1/254 of each group's largest magnitude an input) and float32
 * rounding.
 *
 * The float route (``route`` FLOAT: what CODEAGENT_FP4_INT8=off asks of every packed product)
 * keeps the activations in float32 and decodes the weights to float32 (exact), each lane of 8
 * inputs a block summed in order, the lanes as above: the reference's values within float32
 * rounding, for the paths that must agree with a prefill's decoded-weight products. Plain C,
 * several times slower than the integer route. Limits: K a multiple of 128, at most MAX_ROWS
 * rows (the caller checks both). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "native_common.h"

#define BLOCK 128       /* inputs a layout block covers */
#define BLOCK_BYTES 96  /* its codes */
#define GROUP 32        /* inputs that share a scale */
#ifndef XROWS
#define XROWS 8 /* activation rows a product takes at a time */
#endif
_Static_assert(XROWS == 4 || XROWS == 8, "dots_vector has cases for 4 or 8 activation rows at a time");
#ifndef WROWS
#define WROWS 1 /* weight rows a product streams together */
#endif
#define MAX_ROWS 64     /* activation rows of one call */
#define OFFSET 32       /* u = q + OFFSET */
#define AHEAD 2         /* calls ahead that a product prefetches its rows for */

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512F__)
#define HAVE_VNNI 1
#else
#define HAVE_VNNI 0
#endif

static inline float f16_to_f32(uint16_t h) { /* exact, subnormals and infinities included */
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f)
        bits = sign | 0x7f800000u | (man << 13);
    else if (exp)
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    else {
        const float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* hsum (native_common.h) of 16 float lane sums. */
static inline float lanes_sum(const float *s) {
    f32x16 v;
    memcpy(&v, s, sizeof v);
    return hsum(v);
}

/* A block's 128 codes (u, natural order within the even and the odd halves): even[m] is input
 * 2m's, odd[m] input 2m + 1's. */
static inline void codes_of(const uint8_t *p, uint8_t even[64], uint8_t odd[64]) {
    for (int m = 0; m < 64; m++) {
        const uint8_t pair = p[64 + m % 32];
        const int half = m / 32;
        even[m] = (uint8_t)((p[m] & 15) | (((pair >> (2 * half)) & 3) << 4));
        odd[m] = (uint8_t)((p[m] >> 4) | (((pair >> (4 + 2 * half)) & 3) << 4));
    }
}

/* res[j][s] = dot(row j, quantized xs[s]) in plain C, the vector route's sums exactly. */
static void dots_portable(const uint8_t *const *p, const uint16_t *const *sc, int nr, int k, const uint8_t *const *xs,
                          int n, float res[WROWS][XROWS]) {
    const long blocks = k / BLOCK;
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) {
            const uint8_t *x = xs[s];
            float acc[16] = {0};
            for (long b = 0; b < blocks; b++) {
                uint8_t even[64], odd[64];
                codes_of(p[j] + BLOCK_BYTES * b, even, odd);
                const int8_t *xe = (const int8_t *)x + BLOCK * b, *xo = xe + 64;
                const int32_t *corr = (const int32_t *)(x + k) + 16 * b;
                const float *xscale = (const float *)(x + k) + 16 * blocks + 16 * b;
                for (int l = 0; l < 16; l++) {
                    int32_t sum = corr[l];
                    for (int m = 4 * l; m < 4 * l + 4; m++) sum += even[m] * xe[m] + odd[m] * xo[m];
                    const float ws = f16_to_f32(sc[j][4 * b + l / 4]);
                    acc[l] = fmaf((float)sum, ws * xscale[l], acc[l]);
                }
            }
            res[j][s] = lanes_sum(acc);
        }
}

#if HAVE_VNNI
static const int32_t LANE_GROUP[16] __attribute__((aligned(64))) = {0, 0, 0, 0, 1, 1, 1, 1,
                                                                     2, 2, 2, 2, 3, 3, 3, 3};
/* per 16-bit lane: the even codes' bit pairs shifted up to bits 4-5 (bytes 0-31: pair 0, by 4;
 * bytes 32-63: pair 1, by 2), and the odd codes' shifted down (pair 2: by 0; pair 3: by 2) */
static const int16_t SHIFT_EVEN[32] __attribute__((aligned(64))) = {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
                                                                    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
static const int16_t SHIFT_ODD[32] __attribute__((aligned(64))) = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                                   2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};

/* res[j][s] = dot(row j, quantized xs[s]) for j < NR, s < N (constants after inlining). */
static inline __attribute__((always_inline)) void dots_vnni(const uint8_t *const *p, const uint16_t *const *sc,
                                                            const int nr, long ahead, int k,
                                                            const uint8_t *const *xs, const int n,
                                                            float res[WROWS][XROWS]) {
    const long blocks = k / BLOCK;
    const __m512i low = _mm512_set1_epi8(0x0f), pairs_mask = _mm512_set1_epi8(0x30);
    const __m512i shift_even = _mm512_load_si512(SHIFT_EVEN), shift_odd = _mm512_load_si512(SHIFT_ODD);
    const __m512i lane_group = _mm512_load_si512(LANE_GROUP);
    __m512 acc[WROWS][XROWS];
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) acc[j][s] = _mm512_setzero_ps();
    for (long b = 0; b < blocks; b++) {
        __m512i even[WROWS], odd[WROWS];
        __m512 ws[WROWS];
        for (int j = 0; j < nr; j++) {
            const uint8_t *q = p[j] + BLOCK_BYTES * b;
            if (ahead) __builtin_prefetch(q + ahead, 0, 0);
            const __m512i nib = _mm512_loadu_si512(q);
            const __m512i bits = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q + 64)));
            const __m512i hi_even = _mm512_and_si512(_mm512_sllv_epi16(bits, shift_even), pairs_mask);
            const __m512i hi_odd = _mm512_and_si512(_mm512_srlv_epi16(bits, shift_odd), pairs_mask);
            even[j] = _mm512_ternarylogic_epi32(nib, low, hi_even, 0xEA); /* (nib & low) | hi */
            odd[j] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(nib, 4), low, hi_odd, 0xEA);
            const __m128 four = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(sc[j] + 4 * b)));
            ws[j] = _mm512_permutexvar_ps(lane_group, _mm512_castps128_ps512(four));
        }
        for (int s = 0; s < n; s++) {
            const uint8_t *x = xs[s];
            const __m512i xe = _mm512_load_si512(x + BLOCK * b), xo = _mm512_load_si512(x + BLOCK * b + 64);
            const __m512i corr = _mm512_load_si512(x + k + 64 * b);
            const __m512 xscale = _mm512_load_ps((const float *)(x + k) + 16 * blocks + 16 * b);
            for (int j = 0; j < nr; j++) {
                const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, even[j], xe), odd[j], xo);
                acc[j][s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(ws[j], xscale), acc[j][s]);
            }
        }
    }
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) res[j][s] = hsum512(acc[j][s]);
}

#define VNNI_CASE(NR, N)                            \
    case N:                                         \
        dots_vnni(p, sc, NR, ahead, k, xs, N, res); \
        break;
#define VNNI_CASE1(N)                                           \
    case N:                                                     \
        dots_vnni(p + j, sc + j, 1, ahead, k, xs, N, one);      \
        break;

static void dots_vector(const uint8_t *const *p, const uint16_t *const *sc, int nr, long ahead, int k,
                        const uint8_t *const *xs, int n, float res[WROWS][XROWS]) {
    if (nr == WROWS)
        switch (n) {
            VNNI_CASE(WROWS, 1) VNNI_CASE(WROWS, 2) VNNI_CASE(WROWS, 3) VNNI_CASE(WROWS, 4)
#if XROWS > 4
            VNNI_CASE(WROWS, 5) VNNI_CASE(WROWS, 6) VNNI_CASE(WROWS, 7) VNNI_CASE(WROWS, 8)
#endif
        }
    else
        for (int j = 0; j < nr; j++) { /* the last rows of a thread's share, one at a time */
            float one[WROWS][XROWS];
            switch (n) {
                VNNI_CASE1(1) VNNI_CASE1(2) VNNI_CASE1(3) VNNI_CASE1(4)
#if XROWS > 4
                VNNI_CASE1(5) VNNI_CASE1(6) VNNI_CASE1(7) VNNI_CASE1(8)
#endif
            }
            for (int s = 0; s < n; s++) res[j][s] = one[0][s];
        }
}
#endif

/* res[j][s] = dot(row j, float32 xs[s]) on the float route. */
static void dots_float(const uint8_t *const *p, const uint16_t *const *sc, int nr, int k, const float *const *xs,
                       int n, float res[WROWS][XROWS]) {
    const long blocks = k / BLOCK;
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) {
            float acc[16] = {0};
            for (long b = 0; b < blocks; b++) {
                uint8_t even[64], odd[64];
                codes_of(p[j] + BLOCK_BYTES * b, even, odd);
                const float *x = xs[s] + BLOCK * b;
                for (int l = 0; l < 16; l++) {
                    const float ws = f16_to_f32(sc[j][4 * b + l / 4]);
                    float sum = 0.0f;
                    for (int m = 4 * l; m < 4 * l + 4; m++) {
                        sum = fmaf((float)(even[m] - OFFSET) * ws, x[2 * m], sum);
                        sum = fmaf((float)(odd[m] - OFFSET) * ws, x[2 * m + 1], sum);
                    }
                    acc[l] += sum;
                }
            }
            res[j][s] = lanes_sum(acc);
        }
}

/* x [rows, k] (bf16 or float32) as float32; NULL when memory ran out. */
static float *float_rows(const void *x, long rows, int k, int bf16) {
    float *out = malloc(sizeof(float) * (size_t)(rows * k));
    if (!out) return NULL;
    for (long i = 0; i < rows * k; i++) out[i] = bf16 ? bf16_to_f32(((const uint16_t *)x)[i]) : ((const float *)x)[i];
    return out;
}

/* 1 where the integer products run vectorised (AVX512-VNNI), 0 where only the portable route. */
int ca_int6_vector(void) { return HAVE_VNNI; }

/* out [t, n] = x [t, k] @ W^T for INT6 W: codes [n, k / 128 * 96], float16 scales [n, k / 32].
 * Returns 0, -1 when memory ran out, -3 for more than MAX_ROWS rows, -4 for k not a multiple of
 * 128. */
#define FLOAT 0
#define INT8_PORTABLE 1
#define INT8 2 /* vectorised where built, else the portable route */
int ca_linear_int6(int t, int k, int n, const void *x, const uint8_t *codes, const uint16_t *scale, void *out,
                   int x_bf16, int out_bf16, int route, int threads) {
    if (t > MAX_ROWS) return -3;
    if (k % BLOCK || k <= 0) return -4;
    void *copy = route == FLOAT ? (void *)float_rows(x, t, k, x_bf16) : (void *)i8_activations(x, t, k, x_bf16, OFFSET, 1.0f);
    if (!copy) return -1;
    const long stride = route == FLOAT ? (long)sizeof(float) * k : i8_row_bytes(k);
    const long row_bytes = (long)k / BLOCK * BLOCK_BYTES, groups = k / GROUP;
    const int vec = route == INT8 && HAVE_VNNI;
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        const long r0 = (long)n * tid / nt, r1 = (long)n * (tid + 1) / nt;
        for (long r = r0; r < r1; r += WROWS) {
            const int nr = r + WROWS <= r1 ? WROWS : (int)(r1 - r);
            const uint8_t *p[WROWS];
            const uint16_t *sc[WROWS];
            for (int j = 0; j < nr; j++) {
                p[j] = codes + (r + j) * row_bytes;
                sc[j] = scale + (r + j) * groups;
            }
            for (int s0 = 0; s0 < t; s0 += XROWS) {
                const int m = t - s0 < XROWS ? t - s0 : XROWS;
                const uint8_t *xs[XROWS];
                for (int s = 0; s < m; s++) xs[s] = (const uint8_t *)copy + (s0 + s) * stride;
                float res[WROWS][XROWS];
                if (route == FLOAT)
                    dots_float(p, sc, nr, k, (const float *const *)xs, m, res);
#if HAVE_VNNI
                else if (vec)
                    dots_vector(p, sc, nr, s0 == 0 ? AHEAD * WROWS * row_bytes : 0, k, xs, m, res);
#endif
                else
                    dots_portable(p, sc, nr, k, xs, m, res);
                for (int j = 0; j < nr; j++)
                    for (int s = 0; s < m; s++) store(out, (long)(s0 + s) * n + r + j, res[j][s], out_bf16);
            }
        }
    }
    (void)vec; /* read only where the build has AVX512-VNNI */
    free(copy);
    return 0;
}

/* W [n, k] decoded into out [n, k] (bf16 or float32): quant_int6.dequantize_int6's values. */
void ca_dequantize_int6(int n, int k, const uint8_t *codes, const uint16_t *scale, void *out, int out_bf16,
                        int threads) {
    const long row_bytes = (long)k / BLOCK * BLOCK_BYTES, groups = k / GROUP;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < n; r++)
        for (long b = 0; b < k / BLOCK; b++) {
            uint8_t even[64], odd[64];
            codes_of(codes + r * row_bytes + BLOCK_BYTES * b, even, odd);
            for (int i = 0; i < BLOCK; i++) {
                const long c = b * BLOCK + i;
                const float v = (float)((i & 1 ? odd : even)[i / 2] - OFFSET) * f16_to_f32(scale[r * groups + c / GROUP]);
                store(out, r * k + c, v, out_bf16);
            }
        }
}
