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
 * blocks of BLOCK channels (of each sequence), a channel a vector lane; the SiLU's exponential is
 * computed here (exp_clamped), in plain arithmetic that vectorizes.
 *
 * Numerics: activations float32 or bfloat16 (x, v, q, k; out in the same dtype), everything
 * computed in float32 and rounded once on output; the convolution rounds where its reference does
 * (inputs, sum and SiLU to the weight's dtype, window values through the state's). Every result
 * is computed over a fixed order (i = 0..dk-1; j = 0..K-1) with no lane reductions, and the file
 * is built without FMA contraction (-ffp-contract=off): each element's arithmetic is the C
 * expression's, whatever the vectorizer does, so a sequence's result is the same bits alone or in
 * any batch. Limits:
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
#define BLOCK 64            /* channels one convolution task takes, a channel a vector lane */

static inline float bf16_to_f32(uint16_t h) {
    uint32_t w = (uint32_t)h << 16;
    float f;
    memcpy(&f, &w, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) { /* round to nearest even, NaN kept NaN; no branch: it vectorizes */
    uint32_t w;
    memcpy(&w, &f, sizeof w);
    const uint32_t nan = (w & 0x7fffffffu) > 0x7f800000u;
    return (uint16_t)((nan ? (w | 0x00400000u) : w + 0x7fffu + ((w >> 16) & 1u)) >> 16);
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

/* Rows of channel values as float32 (``stride`` elements apart), each dtype in its own loop so that
 * both vectorize. */
static void load_floats(const void *src, long at, long stride, int n, int bf16, float *dst) {
    if (bf16) {
        const uint16_t *s = (const uint16_t *)src + at;
        for (int i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i * stride]);
    } else {
        const float *s = (const float *)src + at;
        for (int i = 0; i < n; i++) dst[i] = s[i * stride];
    }
}

static void store_floats(void *dst, long at, long stride, int n, int bf16, const float *src) {
    if (bf16) {
        uint16_t *d = (uint16_t *)dst + at;
        for (int i = 0; i < n; i++) d[i * stride] = f32_to_bf16(src[i]);
    } else {
        float *d = (float *)dst + at;
        for (int i = 0; i < n; i++) d[i * stride] = src[i];
    }
}

static void round_floats(float *x, int n, int bf16) {
    if (bf16)
        for (int i = 0; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

/* x limited to [lo, hi] (NaN kept), by bit masks: a conditional here stops the loop vectorizing. */
static inline float clamp(float x, float lo, float hi) {
    int32_t xb, lb, hb;
    memcpy(&xb, &x, sizeof xb);
    memcpy(&lb, &lo, sizeof lb);
    memcpy(&hb, &hi, sizeof hb);
    const int32_t below = -(int32_t)(x < lo), above = -(int32_t)(x > hi);
    xb = (xb & ~below) | (lb & below);
    xb = (xb & ~above) | (hb & above);
    memcpy(&x, &xb, sizeof x);
    return x;
}

/* e^x for x in [-87, 88] (clamped there: the SiLU's result is then exact to float32 anyway), by
 * x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, n ln2_hi exact), e^r to degree 7 (relative
 * error under 1e-8) and 2^n from the exponent bits. Plain arithmetic, so it vectorizes, and a value
 * gets the same bits in any lane. */
static inline float exp_clamped(float x) {
    x = clamp(x, -87.0f, 88.0f);
    const float y = x * 1.44269504f;
    const int32_t whole = (int32_t)(y + copysignf(0.5f, y)); /* nearest: a truncating conversion vectorizes */
    const float n = (float)whole;
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const uint32_t bits = (uint32_t)(whole + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Channels [c0, c0 + n) (n <= BLOCK) of one sequence over t tokens, one lane a channel: x rows
 * ``x_stride`` apart from x_at; weights from w_at; the window state [n, width - 1] at s_at, in
 * place; out rows ``out_stride`` apart from out_at. Rounded where the reference rounds: the
 * window's values through the state's dtype to the inputs' (it keeps them so), the inputs, the sum
 * and the SiLU to the weight's dtype. */
static void conv_block(long t, int n, int width, const void *x, long x_at, long x_stride, const void *weight,
                       long w_at, void *state, long s_at, void *out, long out_at, long out_stride, int bf16, int w_bf16,
                       int s_bf16) {
    const int keep = width - 1;
    float w[MAX_WIDTH][BLOCK], win[MAX_WIDTH][BLOCK], tap[BLOCK], acc[BLOCK];
    for (int j = 0; j < width; j++) load_floats(weight, w_at + j, width, n, w_bf16, w[j]);
    /* a rounding is skipped where the values already fit the narrower dtype (the same bits) */
    const int state_to_x = bf16 && !s_bf16, x_to_w = w_bf16 && !bf16, x_to_state = s_bf16 && !bf16;
    for (int j = 0; j < keep; j++) {
        load_floats(state, s_at + j, keep, n, s_bf16, win[j]);
        round_floats(win[j], n, state_to_x);
    }
    for (long s = 0; s < t; s++) {
        load_floats(x, x_at + s * x_stride, 1, n, bf16, win[keep]);
        for (int i = 0; i < n; i++) acc[i] = 0.0f;
        for (int j = 0; j < width; j++) {
            memcpy(tap, win[j], n * sizeof(float));
            round_floats(tap, n, x_to_w);
            for (int i = 0; i < n; i++) acc[i] += w[j][i] * tap[i];
        }
        round_floats(acc, n, w_bf16);
        for (int i = 0; i < n; i++) acc[i] = acc[i] / (1.0f + exp_clamped(-acc[i]));
        round_floats(acc, n, w_bf16);
        store_floats(out, out_at + s * out_stride, 1, n, bf16, acc);
        for (int j = 0; j < keep; j++) {
            memcpy(win[j], win[j + 1], n * sizeof(float));
            round_floats(win[j], n, x_to_state);
        }
    }
    for (int j = 0; j < keep; j++) store_floats(state, s_at + j, keep, n, s_bf16, win[j]);
}

/* b sequences, one token each: x [b, c] (rows ``x_stride`` apart), weight [c, width], states
 * [b, c, width - 1] (in place), out [b, c] contiguous. Dtypes: x/out ``bf16``, weight ``w_bf16``,
 * states ``s_bf16``. 0, or -2 for a window over MAX_WIDTH. */
int ca_conv_step(int b, int c, int width, const void *x, long x_stride, const void *weight, void *states, void *out,
                 int bf16, int w_bf16, int s_bf16, int threads) {
    if (width < 1 || width > MAX_WIDTH) return -2;
    const int keep = width - 1, blocks = (c + BLOCK - 1) / BLOCK;
    const long tasks = (long)b * blocks;
    const int parallel = threads > 1 && tasks > 1 && (long)b * c * width > PARALLEL_WORK;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (long p = 0; p < tasks; p++) {
        const long seq = p / blocks, c0 = (p % blocks) * BLOCK;
        const int n = c - c0 < BLOCK ? (int)(c - c0) : BLOCK;
        conv_block(1, n, width, x, seq * x_stride + c0, 0, weight, c0 * width, states, (seq * c + c0) * keep, out,
                   seq * c + c0, 0, bf16, w_bf16, s_bf16);
    }
    return 0;
}

/* One sequence's prompt: x [t, c] (rows ``x_stride`` apart), weight [c, width], state [c, width - 1]
 * (in place: the last width - 1 inputs after the call), out [t, c] contiguous; dtypes as
 * ca_conv_step. 0, or -2 for a window over MAX_WIDTH. */
int ca_conv(int t, int c, int width, const void *x, long x_stride, const void *weight, void *state, void *out,
            int bf16, int w_bf16, int s_bf16, int threads) {
    if (width < 1 || width > MAX_WIDTH) return -2;
    const int keep = width - 1, blocks = (c + BLOCK - 1) / BLOCK;
    const int parallel = threads > 1 && blocks > 1 && (long)t * c * width > PARALLEL_WORK;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (long p = 0; p < blocks; p++) {
        const long c0 = p * BLOCK;
        const int n = c - c0 < BLOCK ? (int)(c - c0) : BLOCK;
        conv_block(t, n, width, x, c0, x_stride, weight, c0 * width, state, c0 * keep, out, c0, c, bf16, w_bf16,
                   s_bf16);
    }
    return 0;
}
