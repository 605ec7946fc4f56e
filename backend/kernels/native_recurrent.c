/* Native CPU kernels for linear-attention layers (Qwen3-Next's gated DeltaNet): the decode step
 * of the gated delta rule, and the short depthwise causal convolution (SiLU) before it, as one
 * token's step and over a prompt.
 *
 * Gated delta step, per sequence and value head, with S [dk, dv] float32 in place:
 *     S = S * exp(g);  delta = beta * (v - S^T k);  S = S + k delta^T;  out = S^T q
 * done as two passes over S: the first reads it for kv = sum_i k_i S[i, :] (delta = beta * (v -
 * exp(g) kv), the decay applied once to the sum), the second writes S[i, :] = exp(g) S[i, :] +
 * k_i delta and sums out = sum_i q_i S[i, :] from the new rows. A head's state (64 KiB at 128 x 128)
 * stays in the cache between the passes: the step reads and writes each state once from memory.
 * OpenMP threads take (sequence, head) pairs.
 *
 * Causal convolution, per channel: out_t = silu(sum_j w[j] x_{t-K+1+j}) over the window of the K-1
 * inputs before t (the state, oldest first) and x_t; the state then drops its oldest input and
 * keeps x_t. The prompt form slides the same window over T tokens and leaves the last K-1 inputs
 * in the state; its outputs are the very bits the step would give token by token. Threads take
 * channels (and sequences).
 *
 * Numerics: activations float32 or bfloat16 (x, v, q, k; out in the same dtype), everything
 * computed in float32 and rounded once on output; the convolution rounds where its reference does
 * (inputs, sum and SiLU to the weight's dtype, window values through the state's). Every result is computed over
 * a fixed order (i = 0..dk-1; j = 0..K-1) with no lane reductions, and the file is built without
 * FMA contraction (-ffp-contract=off): each element's arithmetic is the C expression's, whatever
 * the vectorizer does, so a sequence's result is the same bits alone or in any batch. Limits:
 * head sizes up to MAX_DIM, windows up to MAX_WIDTH; value heads a multiple of query/key heads
 * (value head h reads query/key head h / (v_heads / k_heads)). Built by
 * codeagent.backend.kernels.native_recurrent through native.build; the torch references in
 * backend/layers/gated_delta.py are the specification.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#define MAX_DIM 256
#define MAX_WIDTH 16
#define PARALLEL_WORK 32768 /* multiply-adds below which a call stays on one thread */

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

static inline float load_one(const void *x, long i, int bf16) {
    return bf16 ? bf16_to_f32(((const uint16_t *)x)[i]) : ((const float *)x)[i];
}

static inline void store_one(void *x, long i, float v, int bf16) {
    if (bf16)
        ((uint16_t *)x)[i] = f32_to_bf16(v);
    else
        ((float *)x)[i] = v;
}

static inline float rounded(float v, int bf16) { return bf16 ? bf16_to_f32(f32_to_bf16(v)) : v; }

/* One (sequence, value head): its state row by row, as the header says. */
static void delta_step(int dk, int dv, const float *q, const float *k, const void *v, long v_at, float decay,
                       float beta, float *state, void *out, int bf16) {
    float kv[MAX_DIM], delta[MAX_DIM], acc[MAX_DIM];
    for (int j = 0; j < dv; j++) kv[j] = 0.0f, acc[j] = 0.0f;
    for (int i = 0; i < dk; i++) {
        const float ki = k[i], *row = state + (long)i * dv;
        for (int j = 0; j < dv; j++) kv[j] += ki * row[j];
    }
    for (int j = 0; j < dv; j++) delta[j] = beta * (load_one(v, v_at + j, bf16) - decay * kv[j]);
    for (int i = 0; i < dk; i++) {
        const float ki = k[i], qi = q[i];
        float *row = state + (long)i * dv;
        for (int j = 0; j < dv; j++) {
            row[j] = decay * row[j] + ki * delta[j];
            acc[j] += qi * row[j];
        }
    }
    for (int j = 0; j < dv; j++) store_one(out, v_at + j, acc[j], bf16);
}

/* b sequences, one token each: q, k [b, k_heads, dk]; v, out [b, v_heads, dv]; g, beta [b, v_heads]
 * float32; states [b, v_heads, dk, dv] float32, in place. 0, or -2 for sizes over the limits. */
int ca_gated_delta_step(int b, int k_heads, int v_heads, int dk, int dv, const void *q, const void *k, const void *v,
                        const float *g, const float *beta, float *states, void *out, int bf16, int threads) {
    if (dk > MAX_DIM || dv > MAX_DIM || k_heads <= 0 || v_heads % k_heads) return -2;
    const int group = v_heads / k_heads;
    const long pairs = (long)b * v_heads;
    const int parallel = threads > 1 && pairs > 1 && pairs * dk * dv > PARALLEL_WORK;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (long p = 0; p < pairs; p++) {
        const long seq = p / v_heads, qk_at = (seq * k_heads + (p % v_heads) / group) * dk;
        float qf[MAX_DIM], kf[MAX_DIM];
        for (int i = 0; i < dk; i++) {
            qf[i] = load_one(q, qk_at + i, bf16);
            kf[i] = load_one(k, qk_at + i, bf16);
        }
        delta_step(dk, dv, qf, kf, v, p * dv, expf(g[p]), beta[p], states + p * dk * dv, out, bf16);
    }
    return 0;
}

/* One channel's output at one token: the window (K-1 earlier inputs, then x) against its weights,
 * rounded where the reference rounds: the inputs, the sum and the SiLU to the weight's dtype. */
static inline float conv_out(const float *window, const float *w, int width, int w_bf16) {
    float acc = 0.0f;
    for (int j = 0; j < width; j++) acc += w[j] * rounded(window[j], w_bf16);
    acc = rounded(acc, w_bf16);
    return rounded(acc / (1.0f + expf(-acc)), w_bf16);
}

/* An input as the window holds it after a pass through the state: rounded to the state's dtype,
 * then to the inputs' (the reference reads the state back in the inputs' dtype). */
static inline float kept(float v, int s_bf16, int bf16) { return rounded(rounded(v, s_bf16), bf16); }

/* b sequences, one token each: x [b, c] (rows ``x_stride`` apart), weight [c, width], states
 * [b, c, width - 1] (in place), out [b, c] contiguous. Dtypes: x/out ``bf16``, weight ``w_bf16``,
 * states ``s_bf16`` (a value kept in a bfloat16 state is rounded to it). 0, or -2 for a window
 * over MAX_WIDTH. */
int ca_conv_step(int b, int c, int width, const void *x, long x_stride, const void *weight, void *states, void *out,
                 int bf16, int w_bf16, int s_bf16, int threads) {
    if (width < 1 || width > MAX_WIDTH) return -2;
    const long pairs = (long)b * c;
    const int keep = width - 1, parallel = threads > 1 && pairs * width > PARALLEL_WORK;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (long p = 0; p < pairs; p++) {
        const long seq = p / c, ch = p % c;
        float window[MAX_WIDTH], w[MAX_WIDTH];
        for (int j = 0; j < width; j++) w[j] = load_one(weight, ch * width + j, w_bf16);
        for (int j = 0; j < keep; j++) window[j] = rounded(load_one(states, p * keep + j, s_bf16), bf16);
        window[keep] = load_one(x, seq * x_stride + ch, bf16);
        store_one(out, p, conv_out(window, w, width, w_bf16), bf16);
        for (int j = 0; j < keep; j++) store_one(states, p * keep + j, window[j + 1], s_bf16);
    }
    return 0;
}

/* One sequence's prompt: x [t, c] (rows ``x_stride`` apart), weight [c, width], state [c, width - 1]
 * (in place: the last width - 1 inputs after the call), out [t, c] contiguous; dtypes as
 * ca_conv_step. 0, or -2 for a window over MAX_WIDTH. */
int ca_conv(int t, int c, int width, const void *x, long x_stride, const void *weight, void *state, void *out,
            int bf16, int w_bf16, int s_bf16, int threads) {
    if (width < 1 || width > MAX_WIDTH) return -2;
    const int keep = width - 1, parallel = threads > 1 && (long)t * c * width > PARALLEL_WORK;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (long ch = 0; ch < c; ch++) {
        float window[MAX_WIDTH], w[MAX_WIDTH];
        for (int j = 0; j < width; j++) w[j] = load_one(weight, ch * width + j, w_bf16);
        for (int j = 0; j < keep; j++) window[j] = rounded(load_one(state, ch * keep + j, s_bf16), bf16);
        for (long s = 0; s < t; s++) {
            window[keep] = load_one(x, s * x_stride + ch, bf16);
            store_one(out, s * c + ch, conv_out(window, w, width, w_bf16), bf16);
            for (int j = 0; j < keep; j++) window[j] = kept(window[j + 1], s_bf16, bf16);
        }
        for (int j = 0; j < keep; j++) store_one(state, ch * keep + j, window[j], s_bf16);
    }
    return 0;
}
