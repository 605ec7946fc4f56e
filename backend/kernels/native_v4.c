/* Native CPU kernels for DeepSeek-V4's decode glue: the manifold-constrained hyper-connections
 * (mHC), the interleaved rotary and DeepSeek-V4's RMSNorms (the attention with a sink is in
 * ``native_v4_attention.c``).
 *
 * Around each sublayer the residual's n streams X [T, n, D] are mixed by three small sets of
 * weights made from the sublayer's mixing logits [T, (2 + n) n]:
 *     pre_j  = sigmoid(l_j s0 + b_j) + eps                       (how the streams collapse)
 *     post_k = 2 sigmoid(l_{n+k} s1 + b_{n+k})                   (how much output a stream takes)
 *     comb   = Sinkhorn(row softmax(l_{2n..} s2 + b_{2n..}) + eps) [n, n]
 * then u = sum_j pre_j X_j (the sublayer's input) and X'_k = post_k F(u) + sum_j comb[j, k] X_j.
 * At batch 1 and n = 4 each of these is a handful of numbers or one pass over 4 x D values, but
 * as torch operators they are ~100 calls a layer (Sinkhorn's 20 iterations alone are 80), a few
 * microseconds each: on two cores, a tenth of a V4-Flash layer's decode. Here they are three
 * calls:
 *
 * - ``ca_hc_weights``: pre, post and comb of every token, scalar float32 in the reference's
 *   order of operations (the softmax subtracts the row's maximum, as torch's does);
 * - ``ca_hc_collapse``: u = sum_j pre_j X_j, j in order, rounded once to the streams' dtype;
 * - ``ca_hc_expand``: X'_k = post_k y + sum_j comb[j, k] X_j, j in order, rounded once;
 * - ``ca_interleaved_rope`` and ``ca_v4_rms_norm``: the rotary and the norms, one call each.
 *
 * Numerics: float32 throughout, built without FMA contraction (-ffp-contract=off) so each
 * element's arithmetic is the C expression's whatever the vectorizer does, and a token's result is
 * the same bits alone or in any batch. Against the torch references (``models/deepseek_v4/mhc.py``,
 * ``rope.py``, ``norm.py``: the specification) they differ by the exponential (``expf``), the
 * order of the einsum's sums and of a norm's sum of squares: a few float32 roundings (the tests'
 * tolerance); the rotary gives the reference's bits. Limits: n up to MAX_STREAMS; activations
 * float32 or bfloat16.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "native_common.h"
#define MAX_STREAMS 16
#define PARALLEL_VALUES 65536 /* values below which a collapse or an expansion stays on one thread */

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* logits [t, (2 + n) n], scale [3], base [(2 + n) n] float32 -> pre [t, n], post [t, n],
 * comb [t, n, n]. Returns 0, -2 for n out of range. */
int ca_hc_weights(int t, int n, const float *logits, const float *scale, const float *base, int iters, float eps,
                  float *pre, float *post, float *comb) {
    if (n < 1 || n > MAX_STREAMS) return -2;
    const int width = (2 + n) * n;
    for (int r = 0; r < t; r++) {
        const float *l = logits + (long)r * width;
        for (int j = 0; j < n; j++) {
            pre[r * n + j] = sigmoid(l[j] * scale[0] + base[j]) + eps;
            post[r * n + j] = 2.0f * sigmoid(l[n + j] * scale[1] + base[n + j]);
        }
        float *c = comb + (long)r * n * n;
        for (int i = 0; i < n; i++) { /* row softmax, then + eps */
            float most = -INFINITY, sum = 0.0f;
            for (int j = 0; j < n; j++) {
                c[i * n + j] = l[2 * n + i * n + j] * scale[2] + base[2 * n + i * n + j];
                most = c[i * n + j] > most ? c[i * n + j] : most;
            }
            for (int j = 0; j < n; j++) {
                c[i * n + j] = expf(c[i * n + j] - most);
                sum += c[i * n + j];
            }
            for (int j = 0; j < n; j++) c[i * n + j] = c[i * n + j] / sum + eps;
        }
        for (int it = 0; it < iters; it++) {
            if (it > 0) /* rows (the first iteration normalises the columns only) */
                for (int i = 0; i < n; i++) {
                    float sum = 0.0f;
                    for (int j = 0; j < n; j++) sum += c[i * n + j];
                    for (int j = 0; j < n; j++) c[i * n + j] = c[i * n + j] / (sum + eps);
                }
            for (int j = 0; j < n; j++) { /* columns */
                float sum = 0.0f;
                for (int i = 0; i < n; i++) sum += c[i * n + j];
                for (int i = 0; i < n; i++) c[i * n + j] = c[i * n + j] / (sum + eps);
            }
        }
    }
    return 0;
}

/* x [t, n, d], pre [t, n] -> out [t, d] = sum_j pre[j] x[j] (x's dtype). Tasks of 16 channels
 * (d a multiple of 16) or of one; every element's sum in order j = 0..n-1 either way. */
void ca_hc_collapse(int t, int n, int d, const void *x, const float *pre, void *out, int bf16, int threads) {
    const int width = d % 16 ? 1 : 16;
    const long tasks = (long)t * (d / width);
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)t * n * d >= PARALLEL_VALUES)
    for (long task = 0; task < tasks; task++) {
        const long r = task / (d / width), i = task % (d / width) * width;
        if (width == 16) {
            f32x16 sum = {0};
            for (int j = 0; j < n; j++) sum += pre[r * n + j] * load16(x, (r * n + j) * d + i, bf16);
            store16(out, r * d + i, sum, bf16);
        } else {
            float sum = 0.0f;
            for (int j = 0; j < n; j++) sum += pre[r * n + j] * load_one(x, (r * n + j) * d + i, bf16);
            store(out, r * d + i, sum, bf16);
        }
    }
}

/* y [t, d] (the sublayer's output), x [t, n, d], post [t, n], comb [t, n, n] ->
 * out [t, n, d] = post[k] y + sum_j comb[j, k] x[j] (x's dtype; y may be float32 or x's). Tasks
 * of 16 channels of one output stream (d a multiple of 16) or of one, the same arithmetic. */
void ca_hc_expand(int t, int n, int d, const void *y, int y_bf16, const void *x, const float *post,
                  const float *comb, void *out, int bf16, int threads) {
    const int width = d % 16 ? 1 : 16;
    const long per_row = (long)n * (d / width), tasks = (long)t * per_row;
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)t * n * d >= PARALLEL_VALUES)
    for (long task = 0; task < tasks; task++) {
        const long r = task / per_row, k = task % per_row / (d / width), i = task % (d / width) * width;
        if (width == 16) {
            f32x16 mixed = {0};
            for (int j = 0; j < n; j++) mixed += comb[(r * n + j) * n + k] * load16(x, (r * n + j) * d + i, bf16);
            store16(out, (r * n + k) * d + i, post[r * n + k] * load16(y, r * d + i, y_bf16) + mixed, bf16);
        } else {
            float mixed = 0.0f;
            for (int j = 0; j < n; j++) mixed += comb[(r * n + j) * n + k] * load_one(x, (r * n + j) * d + i, bf16);
            store(out, (r * n + k) * d + i, post[r * n + k] * load_one(y, r * d + i, y_bf16) + mixed, bf16);
        }
    }
}

/* The interleaved rotary of ``models/deepseek_v4/rope.py``: x [t, m, d] (m rows of each token,
 * the heads), the last r channels rotated pairwise by cos, sin [t, r] (each pair's value repeated
 * for both channels; pass -sin to rotate back), the first d - r copied -> out [t, m, d] in x's
 * dtype. The pair (a, b) becomes (a cos - b sin, b cos + a sin), each product rounded before the
 * sum as the reference's are. */
void ca_interleaved_rope(int t, int m, int d, int r, const void *x, const float *cos, const float *sin, void *out,
                         int bf16, int threads) {
    const long rows = (long)t * m;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * d >= PARALLEL_VALUES)
    for (long row = 0; row < rows; row++) {
        const long at = row * d, token = row / m;
        const float *c = cos + token * r, *s = sin + token * r;
        if (bf16)
            memcpy((uint16_t *)out + at, (const uint16_t *)x + at, sizeof(uint16_t) * (size_t)(d - r));
        else
            memcpy((float *)out + at, (const float *)x + at, sizeof(float) * (size_t)(d - r));
        for (int i = 0; i < r; i += 2) {
            const long ia = at + d - r + i;
            const float a = load_one(x, ia, bf16), b = load_one(x, ia + 1, bf16);
            store(out, ia, a * c[i] + (-b) * s[i], bf16);
            store(out, ia + 1, b * c[i + 1] + a * s[i + 1], bf16);
        }
    }
}

/* DeepSeek-V4's RMSNorms (``models/deepseek_v4/norm.py``) over rows of d: with a float32 weight,
 * out = (weight * (x * rsqrt(mean(x^2) + eps))) rounded once to x's dtype; without one (the
 * per-head query norm, mHC's input norm), out = x * rsqrt(...) with the rsqrt first rounded to
 * x's dtype, as the reference multiplies in x's dtype. The mean's sum is this file's, 16 lanes
 * then ``hsum``'s tree (d a multiple of 16) or in order. */
void ca_v4_rms_norm(long rows, int d, const void *x, const float *weight, void *out, float eps, int bf16,
                    int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * d >= PARALLEL_VALUES)
    for (long r = 0; r < rows; r++) {
        const long at = r * d;
        float sum = 0.0f;
        if (d % 16 == 0) {
            f32x16 lanes = {0};
            for (int i = 0; i < d; i += 16) {
                const f32x16 v = load16(x, at + i, bf16);
                lanes += v * v;
            }
            sum = hsum(lanes);
        } else
            for (int i = 0; i < d; i++) {
                const float v = load_one(x, at + i, bf16);
                sum += v * v;
            }
        const float inv = 1.0f / sqrtf(sum / (float)d + eps);
        const float scale = weight || !bf16 ? inv : bf16_to_f32(f32_to_bf16(inv));
        for (int i = 0; i < d; i++) {
            const float v = load_one(x, at + i, bf16);
            store(out, at + i, weight ? weight[i] * (v * scale) : v * scale, bf16);
        }
    }
}
