/* Native CPU kernel for DeepSeek-V4's attention with a sink at decode sizes (one latent shared by
 * every head as both key and value; ``models/deepseek_v4/attention.py``'s ``attend`` is the
 * specification), tested in ``tests/backend/test_native_v4.py``.
 *
 * Built like ``native_v4.c`` (the same flags: no FMA contraction; the fused multiply-adds here are
 * explicit intrinsics, so each element's arithmetic is still fixed by this source). Needs
 * AVX512-BF16; elsewhere ``ca_has_sink_attention`` says 0 and the model runs the reference.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "native_common.h"
#if defined(__AVX512BF16__)
#define HAVE_DPBF16 1
#else
#define HAVE_DPBF16 0
#endif

#define PARALLEL_VALUES 65536 /* key values times tasks below which a call stays on one thread */

/* Attention with a sink at decode sizes (``models/deepseek_v4/attention.py``'s ``attend``): q
 * [t, heads, d], keys (= values, one latent shared by every head) [l, d], visible [t, l] (0 / 1),
 * sinks [heads] float32 -> out [t, heads, d], all bf16 but the sinks:
 *     out[r, h] = sum_j p_j keys[j],  p = softmax over (scale q[r, h] . keys[j] for visible j; sinks[h])
 * the sink taking its share of the softmax and adding nothing. Every head reads the same keys, so
 * a task takes GROUP heads of a row and reads each key once for all of them: the logits in pairs
 * (vdpbf16ps: exact products, pairs summed into float32 lanes, one 16-lane accumulator and hsum's
 * tree a logit), two keys at a time against the group's queries; the weights with this file's
 * exponential; the weighted sum with fused multiply-adds over float32 keys (read into float32
 * once a call), 32 channels of every head of the group at a time, each channel summed over the
 * keys in order. A logit's and a channel's steps do not depend on the group, so a row's result
 * is the same alone or in a batch. Needs AVX512-BF16 and d a multiple of 32 (the caller checks;
 * -2 otherwise), d at most MAX_DIM. Returns 0, -1 when memory ran out, -2 for what it does not take. */
#define MAX_DIM 1024
#define GROUP 4 /* heads of a row a task takes */
#if HAVE_DPBF16
/* logits [g][b] = q_g . keys[seen[b]] for the group's g < GROUP queries (unscaled) */
static void group_logits(const uint16_t *q, int d, const uint16_t *keys, const int *seen, int count, float *logits,
                         int stride) {
    int b = 0;
    for (; b + 2 <= count; b += 2) {
        const uint16_t *k0 = keys + (long)seen[b] * d, *k1 = keys + (long)seen[b + 1] * d;
        __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        for (int i = 0; i < d; i += 32) {
            const __m512bh x0 = (__m512bh)_mm512_loadu_si512(k0 + i), x1 = (__m512bh)_mm512_loadu_si512(k1 + i);
            __m512bh qg = (__m512bh)_mm512_loadu_si512(q + i);
            a00 = _mm512_dpbf16_ps(a00, qg, x0), a01 = _mm512_dpbf16_ps(a01, qg, x1);
            qg = (__m512bh)_mm512_loadu_si512(q + d + i);
            a10 = _mm512_dpbf16_ps(a10, qg, x0), a11 = _mm512_dpbf16_ps(a11, qg, x1);
            qg = (__m512bh)_mm512_loadu_si512(q + 2 * d + i);
            a20 = _mm512_dpbf16_ps(a20, qg, x0), a21 = _mm512_dpbf16_ps(a21, qg, x1);
            qg = (__m512bh)_mm512_loadu_si512(q + 3 * d + i);
            a30 = _mm512_dpbf16_ps(a30, qg, x0), a31 = _mm512_dpbf16_ps(a31, qg, x1);
        }
        logits[b] = hsum512(a00), logits[b + 1] = hsum512(a01);
        logits[stride + b] = hsum512(a10), logits[stride + b + 1] = hsum512(a11);
        logits[2 * stride + b] = hsum512(a20), logits[2 * stride + b + 1] = hsum512(a21);
        logits[3 * stride + b] = hsum512(a30), logits[3 * stride + b + 1] = hsum512(a31);
    }
    for (; b < count; b++) {
        const uint16_t *k0 = keys + (long)seen[b] * d;
        for (int g = 0; g < GROUP; g++) {
            __m512 a = _mm512_setzero_ps();
            for (int i = 0; i < d; i += 32)
                a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_loadu_si512(q + (long)g * d + i), (__m512bh)_mm512_loadu_si512(k0 + i));
            logits[g * stride + b] = hsum512(a);
        }
    }
}

/* out_g [d] = sum over b of w[g][b] keys[seen[b]] for the group's heads, bf16 */
static void group_sum(const float *w, int stride, const float *kf, const int *seen, int count, int d, uint16_t *out) {
    for (int i = 0; i < d; i += 32) {
        __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        for (int b = 0; b < count; b++) {
            const float *kj = kf + (long)seen[b] * d + i;
            const __m512 x0 = _mm512_loadu_ps(kj), x1 = _mm512_loadu_ps(kj + 16);
            __m512 wg = _mm512_set1_ps(w[b]);
            a00 = _mm512_fmadd_ps(wg, x0, a00), a01 = _mm512_fmadd_ps(wg, x1, a01);
            wg = _mm512_set1_ps(w[stride + b]);
            a10 = _mm512_fmadd_ps(wg, x0, a10), a11 = _mm512_fmadd_ps(wg, x1, a11);
            wg = _mm512_set1_ps(w[2 * stride + b]);
            a20 = _mm512_fmadd_ps(wg, x0, a20), a21 = _mm512_fmadd_ps(wg, x1, a21);
            wg = _mm512_set1_ps(w[3 * stride + b]);
            a30 = _mm512_fmadd_ps(wg, x0, a30), a31 = _mm512_fmadd_ps(wg, x1, a31);
        }
        store16(out, i, (f32x16)a00, 1), store16(out, i + 16, (f32x16)a01, 1);
        store16(out, (long)d + i, (f32x16)a10, 1), store16(out, (long)d + i + 16, (f32x16)a11, 1);
        store16(out, 2L * d + i, (f32x16)a20, 1), store16(out, 2L * d + i + 16, (f32x16)a21, 1);
        store16(out, 3L * d + i, (f32x16)a30, 1), store16(out, 3L * d + i + 16, (f32x16)a31, 1);
    }
}
#endif

int ca_sink_attention(int t, int heads, int d, int l, const uint16_t *q, const uint16_t *keys, const uint8_t *visible,
                      const float *sinks, float scale, uint16_t *out, int threads) {
#if HAVE_DPBF16
    if (d % 32 || d > MAX_DIM || heads % GROUP) return -2;
    const long values = (long)l * d;
    float *kf = malloc(sizeof(float) * (size_t)(values > 0 ? values : 1));
    if (!kf) return -1;
#pragma omp parallel for num_threads(threads) schedule(static) if (values >= PARALLEL_VALUES)
    for (long i = 0; i < values; i++) kf[i] = bf16_to_f32(keys[i]);
    int failed = 0;
    const long tasks = (long)t * (heads / GROUP);
#pragma omp parallel num_threads(threads) if (tasks * values >= PARALLEL_VALUES)
    {
        /* a row's visible keys (seen); the group's logits, then weights, a row of stride each */
        const int stride = (l + 15) / 16 * 16;
        int *seen = malloc(sizeof(int) * (size_t)(l > 0 ? l : 1));
        float *p = aligned_alloc(64, sizeof(float) * (size_t)(GROUP * (stride > 0 ? stride : 16)));
        if (!p || !seen) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (long task = 0; task < tasks; task++) {
            if (!p || !seen) continue;
            const long r = task / (heads / GROUP), h0 = task % (heads / GROUP) * GROUP, at = (r * heads + h0) * d;
            int count = 0;
            for (int j = 0; j < l; j++)
                if (visible[r * l + j]) seen[count++] = j;
            group_logits(q + at, d, keys, seen, count, p, stride);
            for (int g = 0; g < GROUP; g++) {
                float *pg = p + g * stride, most = sinks[h0 + g];
                for (int b = 0; b < count; b++) {
                    pg[b] *= scale;
                    most = pg[b] > most ? pg[b] : most;
                }
                for (int b = count; b < (count + 15) / 16 * 16; b++) pg[b] = most; /* padding, not summed */
                for (int b = 0; b < count; b += 16) store16(pg, b, exp_nonpositive(load_f32(pg + b) - most), 0);
                float total = expf(sinks[h0 + g] - most);
                for (int b = 0; b < count; b++) total += pg[b];
                for (int b = 0; b < count; b++) pg[b] = pg[b] / total;
            }
            group_sum(p, stride, kf, seen, count, d, out + at);
        }
        free(p);
        free(seen);
    }
    free(kf);
    return failed ? -1 : 0;
#else
    (void)t, (void)heads, (void)d, (void)l, (void)q, (void)keys, (void)visible, (void)sinks, (void)scale, (void)out;
    (void)threads;
    return -2;
#endif
}

/* 1 where ``ca_sink_attention`` runs here (AVX512-BF16) */
int ca_has_sink_attention(void) { return HAVE_DPBF16; }

