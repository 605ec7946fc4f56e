/* Native CPU kernels over rows, the small work a decode step does between its products:
 * RMSNorm (alone, and fused with the residual add before it), Qwen3's per-head norm with
 * rotary, and softmax top-k routing. Each row is computed on its own in a fixed order (batch
 * invariant); rows are split over the OpenMP threads only where a call has enough of them to
 * pay for waking the threads (decode calls have one to a few rows: serial, about a
 * microsecond each). In bfloat16 every step rounds where the torch references round.
 * Built by codeagent.backend.kernels.native_rows with the machine's C compiler (-O3
 * -march=native -fopenmp); the torch references (layers/norm.py, layers/rotary.py,
 * layers/moe.py) are the specification.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native_common.h"

#define MAX_EXPERTS 1024 /* experts a router row may score (the caller checks) */

/* 1 / sqrt(mean(x^2) + eps) over x[at .. at + d), in float32: 16 lanes of sums (hsum's tree),
 * then the elements past the last 16 in order. */
static float inverse_rms(const void *x, long at, int d, float eps, int bf16) {
    f32x16 lanes = {0};
    int i = 0;
    for (; i + 16 <= d; i += 16) {
        const f32x16 v = load16(x, at + i, bf16);
        lanes += v * v;
    }
    float sum = hsum(lanes);
    for (; i < d; i++) {
        const float v = load_one(x, at + i, bf16);
        sum += v * v;
    }
    return 1.0f / sqrtf(sum / (float)d + eps);
}

/* Element i of that row normalised and weighted (``weight`` may be NULL), rounded where the
 * references round in bfloat16: the normalised value, then its product with the weight. */
static inline float normalised(const void *x, long at, int i, float inv, const void *weight, int bf16) {
    if (!bf16) return load_one(x, at + i, 0) * inv * (weight ? ((const float *)weight)[i] : 1.0f);
    const float h = bf16_to_f32(f32_to_bf16(load_one(x, at + i, 1) * inv));
    return weight ? bf16_to_f32(f32_to_bf16(bf16_to_f32(((const uint16_t *)weight)[i]) * h)) : h;
}

/* Elements i .. i + 16 of that row as ``normalised`` gives each. */
static inline f32x16 normalised16(const void *x, long at, int i, float inv, const void *weight, int bf16) {
    const f32x16 v = load16(x, at + i, bf16) * inv;
    if (!bf16) return weight ? v * load_f32((const float *)weight + i) : v;
    const f32x16 h = round_bf16(v);
    return weight ? round_bf16(load16(weight, i, 1) * h) : h;
}

/* A row normalised into out[out_at ..], 16 elements at a time, the rest one by one. */
static void normalise_row(const void *x, long at, int d, float inv, const void *weight, void *out, long out_at,
                          int bf16) {
    int i = 0;
    for (; i + 16 <= d; i += 16) store16(out, out_at + i, normalised16(x, at, i, inv, weight, bf16), bf16);
    for (; i < d; i++) store(out, out_at + i, normalised(x, at, i, inv, weight, bf16), bf16);
}

/* RMSNorm over rows of ``dim``: out = round(x * rsqrt(mean(x^2) + eps)) * weight, the
 * normalising in float32; in bfloat16 the normalised row is rounded before the weight
 * multiplies it, and the product rounded again, as the references do. ``weight`` may be NULL. */
void ca_rms_norm(long rows, int dim, const void *x, const void *weight, void *out, float eps, int bf16, int threads) {
    const int parallel = rows * dim >= 65536;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (long r = 0; r < rows; r++) {
        const long base = r * dim;
        normalise_row(x, base, dim, inverse_rms(x, base, dim, eps, bf16), weight, out, base, bf16);
    }
}

/* Per-head RMSNorm then rotary ("rotate half"), as Qwen3's q_norm/k_norm and apply_rotary:
 * x [t, heads, d] rows ``stride`` elements apart (a column slice of the fused qkv output),
 * weight [d], cos/sin [t, d] float32; out [t, heads, d] contiguous. In bfloat16 every step
 * rounds where the references round: the normalised row, its product with the weight, cos
 * and sin, each of the two products, their sum. */
void ca_norm_rope(int t, int heads, int d, const void *x, long stride, const void *weight, const float *cosines,
                  const float *sines, void *out, float eps, int bf16, int threads) {
    const int half = d / 2;
    const int parallel = (long)t * heads * d >= 65536;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (long row = 0; row < t; row++) {
        float h[1024];
        for (int head = 0; head < heads; head++) {
            const long in = row * stride + (long)head * d, at = (row * heads + head) * d;
            const float inv = inverse_rms(x, in, d, eps, bf16);
            const float *c = cosines + row * d, *s = sines + row * d;
            if (half % 16 == 0) { /* 16 at a time: the same roundings, element for element */
                for (int i = 0; i < d; i += 16) {
                    const f32x16 v = normalised16(x, in, i, inv, weight, bf16);
                    memcpy(h + i, &v, sizeof v);
                }
                for (int i = 0; i < d; i += 16) {
                    const f32x16 hv = load_f32(h + i);
                    const f32x16 rotated = i < half ? -load_f32(h + i + half) : load_f32(h + i - half);
                    const f32x16 cv = load_f32(c + i), sv = load_f32(s + i);
                    if (bf16) {
                        const f32x16 a = round_bf16(hv * round_bf16(cv)), b = round_bf16(rotated * round_bf16(sv));
                        store16(out, at + i, a + b, 1);
                    } else {
                        const f32x16 a = hv * cv, b = rotated * sv;
                        store16(out, at + i, a + b, 0);
                    }
                }
                continue;
            }
            for (int i = 0; i < d; i++) h[i] = normalised(x, in, i, inv, weight, bf16);
            for (int i = 0; i < d; i++) {
                const float rotated = i < half ? -h[i + half] : h[i - half];
                if (bf16) {
                    const float a = bf16_to_f32(f32_to_bf16(h[i] * bf16_to_f32(f32_to_bf16(c[i]))));
                    const float b = bf16_to_f32(f32_to_bf16(rotated * bf16_to_f32(f32_to_bf16(s[i]))));
                    ((uint16_t *)out)[at + i] = f32_to_bf16(a + b);
                } else {
                    const float a = h[i] * c[i], b = rotated * s[i];
                    ((float *)out)[at + i] = a + b;
                }
            }
        }
    }
}

/* The residual add, then RMSNorm of the sum: sum = round(residual + x) (``sum`` may be
 * ``residual``: each element is read before it is written), out = the norm of that sum as
 * ca_rms_norm computes it; a layer's ``residual + x`` followed by the next norm, in one pass. */
void ca_add_rms_norm(long rows, int dim, const void *x, const void *residual, const void *weight, void *sum,
                     void *out, float eps, int bf16, int threads) {
    const int parallel = rows * dim >= 65536;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (long r = 0; r < rows; r++) {
        const long base = r * dim;
        int i = 0;
        for (; i + 16 <= dim; i += 16)
            store16(sum, base + i, load16(residual, base + i, bf16) + load16(x, base + i, bf16), bf16);
        for (; i < dim; i++)
            store(sum, base + i, load_one(residual, base + i, bf16) + load_one(x, base + i, bf16), bf16);
        normalise_row(sum, base, dim, inverse_rms(sum, base, dim, eps, bf16), weight, out, base, bf16);
    }
}

/* Softmax top-k routing, as Qwen3-MoE's router: each row's probabilities softmax(logits) in
 * float32 (exp(l - max) / their sum, summed in expert order), the k largest in descending
 * order (equal ones: the lower id first), divided by their sum (in that order) when
 * ``normalize``, then rounded to the logits' dtype. weights [rows, k] float32 (holding those
 * rounded values), ids [rows, k] int64. Returns -2 for a k or an expert count it does not take. */
int ca_softmax_topk(long rows, int experts, int k, const void *logits, int normalize, float *weights, int64_t *ids,
                    int bf16, int threads) {
    if (k < 1 || k > experts || experts > MAX_EXPERTS) return -2;
    const int parallel = rows * experts >= 65536;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (long r = 0; r < rows; r++) {
        float p[MAX_EXPERTS];
        unsigned char taken[MAX_EXPERTS];
        const long at = r * experts;
        float top = -INFINITY, total = 0.0f;
        for (int e = 0; e < experts; e++) {
            p[e] = load_one(logits, at + e, bf16);
            top = p[e] > top ? p[e] : top;
            taken[e] = 0;
        }
        for (int e = 0; e < experts; e++) {
            p[e] = expf(p[e] - top);
            total += p[e];
        }
        for (int e = 0; e < experts; e++) p[e] /= total;
        float *w = weights + r * k;
        int64_t *id = ids + r * k;
        float picked = 0.0f;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < experts; e++)
                if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
            taken[best] = 1;
            id[j] = best;
            w[j] = p[best];
            picked += p[best];
        }
        for (int j = 0; j < k; j++) {
            const float v = normalize ? w[j] / picked : w[j];
            w[j] = bf16 ? bf16_to_f32(f32_to_bf16(v)) : v;
        }
    }
    return 0;
}
