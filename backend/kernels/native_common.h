/* What the native CPU kernels share (native.c, native_packed.c, native_int6.c include it; the
 * build keys each library by its source and the headers it includes): float vectors, the fixed
 * summation tree every product ends with, bfloat16 conversions, and the int8 activations of the
 * integer products (FP4 and INT6 weights).
 *
 * int8 activations (i8_quantize): each row quantized on its own, per group of 32 inputs (the
 * weights' scale groups): amax the group's largest magnitude, q = rint(x * (127 / amax)) (nearest,
 * ties to even), its scale amax / 127 (an all-zero group: q 0, scale 0), in float32. A row is laid
 * out in blocks of 128 inputs (I8_BLOCK): the 64 even inputs' codes, the 64 odd ones', then per
 * block 16 int32 corrections and 16 float scales, one per int32 lane of a ``vpdpbusd`` product
 * (lane l covers inputs 8l .. 8l + 7 of its block, all in group l / 4). The weights take the
 * unsigned side offset by ``offset`` (FP4: twice e2m1 plus 12; INT6: q + 32), so each lane's
 * sum starts at -offset times the sum of the codes it meets; ``factor`` scales the lane's
 * activation scale (FP4: 1/2, its integers being twice e2m1). K is padded to whole blocks with
 * zero codes and scales. */
#ifndef CODEAGENT_NATIVE_COMMON_H
#define CODEAGENT_NATIVE_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float f32x16 __attribute__((vector_size(64)));

static inline f32x16 load_f32(const float *p) {
    f32x16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
typedef int32_t i32x16 __attribute__((vector_size(64)));

/* exp of 16 arguments that are <= 0 (scores less their maximum): 2^n * p(r) with r in
 * [-ln2/2, ln2/2] and a degree-7 polynomial (Cephes' expf coefficients), about 1 ulp;
 * arguments below -86 give exp(-86), which no sum holding exp(0) can notice. */
static inline f32x16 exp_nonpositive(f32x16 x) {
    const f32x16 lo = (f32x16){0} - 86.0f;
    const i32x16 small = x < lo;
    x = (f32x16)(((i32x16)x & ~small) | ((i32x16)lo & small));
    const i32x16 n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, i32x16); /* round(x / ln2) */
    const f32x16 nf = __builtin_convertvector(n, f32x16);
    const f32x16 r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
    f32x16 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return (f32x16)((i32x16)p + (n << 23));
}

/* The sum of the 16 lanes, always as the same tree: lane i + lane i+8, then i + i+4, i + i+2,
 * i + i+1 (shuffles where the compiler has them: a scalar chain costs more than the products
 * of a short row). */
static inline float hsum(f32x16 v) {
#if defined(__clang__) || __GNUC__ >= 12
    typedef float f32x8 __attribute__((vector_size(32)));
    typedef float f32x4 __attribute__((vector_size(16)));
    const f32x8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                    __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    const f32x4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    const f32x4 c = b + __builtin_shufflevector(b, b, 2, 3, 2, 3);
    return c[0] + c[1];
#else
    float s[16];
    memcpy(s, &v, sizeof s);
    for (int width = 8; width > 0; width >>= 1)
        for (int i = 0; i < width; i++) s[i] += s[i + width];
    return s[0];
#endif
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* hsum of a 512-bit vector of floats */
static inline float hsum512(__m512 v) {
    f32x16 lanes;
    memcpy(&lanes, &v, sizeof lanes);
    return hsum(lanes);
}
#endif
static inline float bf16_to_f32(uint16_t h) {
    uint32_t w = (uint32_t)h << 16;
    float f;
    memcpy(&f, &w, sizeof f);
    return f;
}
static inline uint16_t f32_to_bf16(float f) { /* round to nearest even, NaN kept NaN */
    uint32_t w;
    memcpy(&w, &f, sizeof w);
    if ((w & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((w >> 16) | 0x40u);
    w += 0x7fffu + ((w >> 16) & 1u);
    return (uint16_t)(w >> 16);
}
static inline void store(void *out, long index, float value, int bf16) {
    if (bf16)
        ((uint16_t *)out)[index] = f32_to_bf16(value);
    else
        ((float *)out)[index] = value;
}

/* x[index] as float32, x bf16 or float32 */
static inline float load_one(const void *x, long index, int bf16) {
    return bf16 ? bf16_to_f32(((const uint16_t *)x)[index]) : ((const float *)x)[index];
}

typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));

/* 16 bfloat16 values at p as float32 */
static inline f32x16 load_bf16(const uint16_t *p) {
    u16x16 h;
    memcpy(&h, p, sizeof h);
    const u32x16 w = __builtin_convertvector(h, u32x16) << 16;
    f32x16 v;
    memcpy(&v, &w, sizeof v);
    return v;
}

/* 16 values of x from index i (bf16 or float32) as float32 */
static inline f32x16 load16(const void *x, long i, int bf16) {
    return bf16 ? load_bf16((const uint16_t *)x + i) : load_f32((const float *)x + i);
}

/* v rounded to bfloat16 as f32_to_bf16 rounds (nearest even, NaN kept NaN), held in float32 */
static inline f32x16 round_bf16(f32x16 v) {
    u32x16 w;
    memcpy(&w, &v, sizeof w);
    const u32x16 nan = (u32x16)((w & 0x7fffffffu) > 0x7f800000u); /* all ones where NaN */
    const u32x16 r = (((w + 0x7fffu + ((w >> 16) & 1u)) & 0xffff0000u) & ~nan) | ((w | 0x400000u) & 0xffff0000u & nan);
    memcpy(&v, &r, sizeof v);
    return v;
}

/* 16 values stored at out + at, as float32 or rounded to bfloat16 as f32_to_bf16 does. */
static inline void store16(void *out, long at, f32x16 v, int bf16) {
    if (!bf16) {
        memcpy((float *)out + at, &v, sizeof v);
        return;
    }
    u32x16 w;
    const f32x16 r = round_bf16(v);
    memcpy(&w, &r, sizeof w);
    const u16x16 h = __builtin_convertvector(w >> 16, u16x16);
    memcpy((uint16_t *)out + at, &h, sizeof h);
}

#define I8_BLOCK 128
#define I8_INPUTS 32 /* inputs an activation scale covers (the weights' scale groups) */

static inline long i8_padded(int k) { return ((long)k + I8_BLOCK - 1) / I8_BLOCK * I8_BLOCK; }
/* bytes of one quantized row: codes, then per block 16 int32 corrections and 16 float scales */
static inline long i8_row_bytes(int k) { return 2 * i8_padded(k); }

/* One row of k values (float32, natural order) quantized into dst (i8_row_bytes(k) bytes,
 * 64-byte aligned) as described above: each lane's correction -offset times the sum of its
 * codes, each lane's scale its group's times ``factor``. */
static void i8_quantize(const float *v, int k, uint8_t *dst, int offset, float factor) {
    const long kp = i8_padded(k), blocks = kp / I8_BLOCK;
    int8_t *q = (int8_t *)dst;
    int32_t *corr = (int32_t *)(dst + kp);
    float *scale = (float *)(dst + kp) + 16 * blocks;
    memset(dst, 0, (size_t)i8_row_bytes(k));
    float group_scale[I8_BLOCK / I8_INPUTS];
    for (long b = 0; b < blocks; b++) {
        for (int g = 0; g < I8_BLOCK / I8_INPUTS; g++) {
            const long c0 = b * I8_BLOCK + g * I8_INPUTS;
            group_scale[g] = 0.0f;
            if (c0 >= k) continue;
            float amax = 0.0f;
            for (int i = 0; i < I8_INPUTS; i++) amax = fmaxf(amax, fabsf(v[c0 + i]));
            if (amax == 0.0f) continue;
            const float inv = 127.0f / amax;
            group_scale[g] = amax / 127.0f;
            for (int i = 0; i < I8_INPUTS; i++) {
                const float r = rintf(v[c0 + i] * inv);
                const long within = g * I8_INPUTS + i; /* even inputs first, then odd */
                q[b * I8_BLOCK + (within & 1) * (I8_BLOCK / 2) + within / 2] =
                    (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r);
            }
        }
        for (int l = 0; l < 16; l++) {
            int32_t sum = 0;
            for (int m = 0; m < 4; m++)
                sum += q[b * I8_BLOCK + 4 * l + m] + q[b * I8_BLOCK + I8_BLOCK / 2 + 4 * l + m];
            corr[16 * b + l] = -offset * sum;
            scale[16 * b + l] = group_scale[l / 4] * factor;
        }
    }
}

/* x [rows, k] (bf16 or float32) quantized row by row; NULL when memory ran out. */
static uint8_t *i8_activations(const void *x, long rows, int k, int bf16, int offset, float factor) {
    const long bytes = i8_row_bytes(k);
    uint8_t *out = aligned_alloc(64, (size_t)(rows * bytes));
    float *row = malloc(sizeof(float) * (size_t)k);
    if (!out || !row) {
        free(out);
        free(row);
        return NULL;
    }
    for (long r = 0; r < rows; r++) {
        for (long i = 0; i < k; i++)
            row[i] = bf16 ? bf16_to_f32(((const uint16_t *)x)[r * k + i]) : ((const float *)x)[r * k + i];
        i8_quantize(row, k, out + r * bytes, offset, factor);
    }
    free(row);
    return out;
}

#endif
