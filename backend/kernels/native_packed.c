/* Native CPU kernels over packed weights: decode-sized products and whole MoE layers that read
 * FP8 e4m3 and FP4 e2m1 weights as released (backend/quant.py) and decode them in registers,
 * never into a dequantized copy; and, for the products too large for them (prefill), a weight
 * decoded whole into a buffer (the values quant.py's dequantize gives).
 *
 * Formats (rows of N outputs by K inputs):
 * - FP8: one e4m3 byte an input; scales per row group and 128 inputs: a dense weight's
 *   128 x 128 block scales (rows_per_scale 128), or packed experts' per-row ones (1).
 * - FP4: two e2m1 codes a byte, the even input in the low nibble; one scale per row and 32
 *   inputs.
 * - Scales: UE8M0 exponent bytes (2^(e - 127); 255 gives inf, as quant.scale_values does)
 *   or float32.
 *
 * Decoding: an e4m3 byte becomes the float16 with the same sign, exponent and mantissa bits
 * (sign-extended, shifted, masked), which is the e4m3 value times 2^-8 for normal and
 * subnormal codes alike; F16C converts it, and the scale, taken times 2^8, restores it. The
 * NaN codes (0x7f, 0xff) decode as +-480, not NaN. An e2m1 code indexes a 16-entry table
 * (AVX-512: one permute for 16 codes; AVX2: two 8-entry permutes and a blend) already
 * multiplied by its group's scale. FP4 products take their activations with each group of 32
 * reordered, even inputs first, so the low and high nibbles of 16 bytes meet 16 contiguous
 * activations each. Elsewhere a portable decoding (tables) gives the same values, slower.
 *
 * Products: two weight rows at a time (FP8 in bf16 pairs: one up to 4 activation rows, then
 * four; rows_for) against up to GROUP activation rows (FP8: FP8_GROUP), a missing row
 * repeated; FP8 sums each block of 128 inputs unscaled and adds it times its scale (one product
 * a block, not one a weight); FP4 scales its 16-entry table once a group. Each call prefetches
 * the rows that the call AHEAD after it will read (one thread streams faster so): FP8 rows into
 * L2 (prefetcht1), FP4 rows into L1 (prefetchnta). As in native.c: activations float32 or
 * bfloat16, products in float32, each output element one dot product over a fixed order
 * whatever else is in the call, so results do not depend on the batch; OpenMP over output
 * rows. Scales times 2^8 must stay finite for FP8 (UE8M0 exponents up to 246, float scales
 * below 2^120). K must be a multiple of 16 (FP8) or 32 (FP4); the callers check.
 *
 * Where the CPU has AVX512-BF16 and the activations are bf16 (K a multiple of 32), the
 * products decode the weights to bf16 instead (both formats' values are exact in bf16) and
 * multiply bf16 by bf16 in pairs (``vdpbf16ps``), reading a copy of the activations laid out as
 * the decoding gives the weights (FP8 with AVX512-VBMI: each group of 64 as fp8x64_bf16's
 * lanes; FP4: each group's byte pairs, a byte's two codes being one lane's pair); a MoE layer's activations between its projections are then rounded to
 * bf16, as the torch reference's are. fp8_pairs / fp4_pairs say how; float32 activations, and
 * machines without AVX512-BF16, keep the float32 route.
 *
 * FP4 products may instead take int8 activations (``int8`` arguments; AVX512-VNNI and -VBMI):
 * activations quantized per 32 inputs, integer dot products (fp4_i8_dots, whose comment has the
 * design and its error).
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "native_common.h"


#define GROUP 8       /* activation rows against one pair of FP4 weight rows at a time */
#define FP8_GROUP 4   /* and of FP8 rows (each with a sum for its block) */
#define MAX_ROWS 64   /* activation rows of one linear call (the caller checks) */
#define MAX_PAIRS 512 /* token-expert pairs in one MoE call (the caller checks) */
#define FP8 0
#define FP4 1
#define FP8_BLOCK 128
#define FP4_GROUP 32
#define FP8_SHIFT 8 /* an e4m3 code decodes as its value times 2^-8 */
#define AHEAD 2     /* calls ahead that a dot product prefetches its rows for */
/* FP4 with int8 activations (fp4_i8_dots): activation rows against a set of weight rows at a
 * time, and weight rows at a time (rows_for). Measured (bench kernels --packed, 2 threads, the
 * host shared, fastest of each): 4 weight rows at 1-2 activation rows no faster than 2 (linear
 * 4096 x 4096 at one row 0.18 ms against 0.15-0.25, the MoE layer 0.41-0.46 against 0.43-0.45),
 * 8 activation rows at a time no faster than 4 at 8 rows (0.72-0.81 ms against 0.66-0.72). Both
 * are -D overridable for such measurements. */
#ifndef I8_GROUP
#define I8_GROUP 4
#endif
_Static_assert(I8_GROUP == 4 || I8_GROUP == 8, "pdots_i8 has cases for 4 or 8 activation rows at a time");
#ifndef I8_ROWS
#define I8_ROWS(n, moe) 2
#endif
/* how: FP8 rows into L2 (prefetcht1), FP4 rows into L1 (prefetchnta); see rows_for */
#define PREFETCH_FP8(p) __builtin_prefetch((p), 0, 2)
#define PREFETCH_FP4(p) __builtin_prefetch((p), 0, 0)

/* A packed weight: row r's codes at codes + r * row_bytes; its scales (one per group of
 * inputs) at scale + (r / rows_per_scale) * groups, float32 or UE8M0 bytes. */
typedef struct {
    const uint8_t *codes;
    long row_bytes;
    const void *scale;
    long groups;
    int rows_per_scale;
    int scale_u8;
    int format;
} packed_t;

static const float E2M1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                               -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/* Every e4m3 code's value times 2^-8, for the portable decoding: sign, then normal
 * (8 + m) 2^(e - 7 - 3) or subnormal m 2^-9, times 2^-FP8_SHIFT. */
#define E4M3_OF(b)                                                                                 \
    (((b) & 0x80 ? -1.0f : 1.0f) * (((b) >> 3 & 15) ? (float)(8 + ((b) & 7)) * (float)(1 << ((b) >> 3 & 15)) \
                                                     : (float)((b) & 7) * 2.0f) /                   \
     (float)(1 << (10 + FP8_SHIFT)))
#define E4M3_4(b) E4M3_OF(b), E4M3_OF(b + 1), E4M3_OF(b + 2), E4M3_OF(b + 3)
#define E4M3_16(b) E4M3_4(b), E4M3_4(b + 4), E4M3_4(b + 8), E4M3_4(b + 12)
#define E4M3_64(b) E4M3_16(b), E4M3_16(b + 16), E4M3_16(b + 32), E4M3_16(b + 48)
static const float E4M3[256] __attribute__((unused)) = {E4M3_64(0), E4M3_64(64), E4M3_64(128), E4M3_64(192)};






/* 2^(e - 127 + shift) for a UE8M0 byte: 2^-127 is subnormal, 255 (and overflow) inf. */
static inline float ue8m0(unsigned e, int shift) {
    const unsigned biased = e + (unsigned)shift;
    const uint32_t bits = biased >= 255u ? 0x7f800000u : biased ? biased << 23 : 0x00400000u;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Row r's scales, and scale g of them times 2^shift. */
static inline const void *scale_row(const packed_t *w, long r) {
    const long at = (r / w->rows_per_scale) * w->groups;
    return w->scale_u8 ? (const void *)((const uint8_t *)w->scale + at) : (const void *)((const float *)w->scale + at);
}

static inline float scale_of(const void *row, int u8, long g, int shift) {
    if (u8) return ue8m0(((const uint8_t *)row)[g], shift);
    return ((const float *)row)[g] * (shift ? (float)(1 << shift) : 1.0f);
}

/* 16 e4m3 codes -> their values times 2^-8. */
static inline f32x16 fp8x16(const uint8_t *p) {
#if defined(__AVX512F__)
    const __m256i h = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
    const __m256i half = _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16((short)0xbf80));
    return (f32x16)_mm512_cvtph_ps(half);
#elif defined(__AVX2__) && defined(__F16C__)
    const __m128i b = _mm_loadu_si128((const __m128i *)p), mask = _mm_set1_epi16((short)0xbf80);
    const __m128i lo = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(b), 7), mask);
    const __m128i hi = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(_mm_srli_si128(b, 8)), 7), mask);
    const __m256 a = _mm256_cvtph_ps(lo), c = _mm256_cvtph_ps(hi);
    f32x16 v;
    memcpy(&v, &a, 32);
    memcpy((char *)&v + 32, &c, 32);
    return v;
#else
    float out[16];
    for (int i = 0; i < 16; i++) out[i] = E4M3[p[i]];
    return load_f32(out);
#endif
}

/* 16 bytes of e2m1 pairs -> the 16 even inputs' and the 16 odd inputs' values in a table
 * already scaled (table[c] = e2m1 value of code c times the group's scale). */
static inline void fp4x32(const uint8_t *p, f32x16 table, f32x16 *even, f32x16 *odd) {
#if defined(__AVX512F__)
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    *even = (f32x16)_mm512_permutexvar_ps(b, (__m512)table); /* the index's low 4 bits */
    *odd = (f32x16)_mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), (__m512)table);
#elif defined(__AVX2__)
    __m256 lo, hi, halves[4];
    memcpy(&lo, &table, 32);
    memcpy(&hi, (const char *)&table + 32, 32);
    const __m128i raw = _mm_loadu_si128((const __m128i *)p);
    for (int part = 0; part < 2; part++) {
        const __m256i b = _mm256_cvtepu8_epi32(part ? _mm_srli_si128(raw, 8) : raw);
        for (int nibble = 0; nibble < 2; nibble++) {
            const __m256i c = nibble ? _mm256_srli_epi32(b, 4) : b;
            const __m256 high = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)); /* code bit 3: sign-bit blend */
            halves[2 * nibble + part] =
                _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c), _mm256_permutevar8x32_ps(hi, c), high);
        }
    }
    memcpy(even, halves, 64);
    memcpy(odd, halves + 2, 64);
#else
    float t[16], e[16], o[16];
    memcpy(t, &table, sizeof t);
    for (int i = 0; i < 16; i++) {
        e[i] = t[p[i] & 15u];
        o[i] = t[p[i] >> 4];
    }
    *even = load_f32(e);
    *odd = load_f32(o);
#endif
}

/* Weight rows a product streams together. Unlike native.c's bf16 products (memory-bound, faster
 * with up to 8 rows in flight), decoding FP8/FP4 keeps these compute-bound on two cores, and more
 * rows at once only add register pressure: measured on a Qwen3-30B-A3B-shaped MoE layer at one
 * token, 2 rows 1.68 ms (FP8) / 1.28 ms (FP4) against 2.14 / 1.43 with up to 8, and no gain on an
 * 8192 x 4096 linear. In bf16 pairs (decoding 2-4 times faster) a linear layer at 1-2 rows
 * streams 4 (FP8 8192 x 4096 at one row: 2.21 / 1.25 ms against 2.50 / 1.47 with 2, two runs),
 * while the MoE layers stayed at 2 (FP8 at one token 2.40 / 2.26 ms with 4 against 1.95 / 1.95).
 * That was with every prefetch a prefetchnta, which on Zen 4 fills L1 only (4 rows AHEAD calls
 * ahead, a 151,936 x 2048 head's 4 x 16 KB, overrun its 32 KB; the float32 route, 2 rows, gained
 * as much though: the non-temporal fill itself costs). FP8 rows now go to L2 (prefetcht1: the
 * FP8 products from memory take 7-29% less time, the head 15.6 -> 12.1 ms at one row), and with
 * that an FP8 MoE layer also streams 4 rows at 1-2 tokens (5-8% less); FP4, compute-bound,
 * stays with prefetchnta (prefetcht1 was 5-10% slower there) and 2 rows in its MoE layers (4
 * slower). docs/bench/cpu-choices.md has the figures. The products take any
 * count (MAX_WROWS) should a machine want more. */
#define MAX_WROWS 8
/* FP8 in pairs: one row (two blocks at a time, fp8_pairs) up to 4 activation rows, then four
 * rows against 2 activation rows at a time. Measured (2 threads, a 151,936 x 2048 FP8 head,
 * variants in turns, 7 rounds, medians, the host streaming 70 GB/s) against the 4 / 2 rows
 * before: 5.68 / 6.39 / 7.44 / 16.94 ms at 1 / 2 / 4 / 8 rows against 6.68 / 7.75 / 9.83 /
 * 18.39; a Qwen3-30B-A3B FP8 MoE layer at one token 0.73-0.89 ms against 0.87-1.21
 * (docs/bench/cpu-choices.md). -D overridable for such measurements. */
#ifndef FP8_PAIRS_ROWS
#define FP8_PAIRS_ROWS(n, moe) ((n) <= 4 ? 1 : 4)
#endif
static inline int rows_for(int format, int n, int pairs, int moe) {
    if (pairs == 2) return I8_ROWS(n, moe); /* FP4 with int8 activations */
    if (pairs == 1 && format == FP8) return FP8_PAIRS_ROWS(n, moe);
    return pairs && n <= 2 && !(moe && format == FP4) ? 4 : 2;
}

/* res[j][s] = dot(FP8 row rows[j], xs[s]) for j < nr, s < n (n <= FP8_GROUP; nr, n constants
 * after inlining): each 128 inputs summed unscaled, then added times their scale, so a scale
 * costs one product a block. Each (row, activation) sum takes the same steps whatever nr and n. */
static inline __attribute__((always_inline)) void fp8_dots(const packed_t *w, const long *rows, const int nr,
                                                           long ahead, int k, const float *const *xs, const int n,
                                                           float *const *res) {
    f32x16 acc[MAX_WROWS][FP8_GROUP], block[MAX_WROWS][FP8_GROUP];
    const uint8_t *p[MAX_WROWS];
    const void *sc[MAX_WROWS];
    for (int j = 0; j < nr; j++) {
        p[j] = w->codes + rows[j] * w->row_bytes;
        sc[j] = scale_row(w, rows[j]);
        for (int s = 0; s < n; s++) acc[j][s] = (f32x16){0};
    }
    for (int c0 = 0, g = 0; c0 < k; c0 += FP8_BLOCK, g++) {
        const int c1 = c0 + FP8_BLOCK < k ? c0 + FP8_BLOCK : k;
        for (int j = 0; j < nr; j++)
            for (int s = 0; s < n; s++) block[j][s] = (f32x16){0};
        for (int c = c0; c < c1; c += 16) {
            f32x16 wv[MAX_WROWS];
            for (int j = 0; j < nr; j++) {
                if (ahead && !(c & 63)) PREFETCH_FP8(p[j] + ahead + c);
                wv[j] = fp8x16(p[j] + c);
            }
            for (int s = 0; s < n; s++) {
                const f32x16 x = load_f32(xs[s] + c);
                for (int j = 0; j < nr; j++) block[j][s] += wv[j] * x;
            }
        }
        for (int j = 0; j < nr; j++) {
            const float f = scale_of(sc[j], w->scale_u8, g, FP8_SHIFT);
            for (int s = 0; s < n; s++) acc[j][s] += block[j][s] * f;
        }
    }
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) res[j][s] = hsum(acc[j][s]);
}

/* res[j][s] = dot(FP4 row rows[j], xs[s]) for j < nr, s < n (n <= GROUP; constants after
 * inlining): each decoded group of 32 serves every activation row. */
static inline __attribute__((always_inline)) void fp4_dots(const packed_t *w, const long *rows, const int nr,
                                                           long ahead, int k, const float *const *xs, const int n,
                                                           float *const *res) {
    f32x16 acc[MAX_WROWS][GROUP];
    const uint8_t *p[MAX_WROWS];
    const void *sc[MAX_WROWS];
    for (int j = 0; j < nr; j++) {
        p[j] = w->codes + rows[j] * w->row_bytes;
        sc[j] = scale_row(w, rows[j]);
        for (int s = 0; s < n; s++) acc[j][s] = (f32x16){0};
    }
    const f32x16 table = load_f32(E2M1);
    for (int g = 0; g < k / FP4_GROUP; g++) {
        f32x16 ev[MAX_WROWS], od[MAX_WROWS];
        for (int j = 0; j < nr; j++) {
            if (ahead && !(g & 3)) PREFETCH_FP4(p[j] + ahead + g * (FP4_GROUP / 2));
            fp4x32(p[j] + g * (FP4_GROUP / 2), table * scale_of(sc[j], w->scale_u8, g, 0), &ev[j], &od[j]);
        }
        for (int s = 0; s < n; s++) {
            const f32x16 xe = load_f32(xs[s] + g * FP4_GROUP), xo = load_f32(xs[s] + g * FP4_GROUP + 16);
            for (int j = 0; j < nr; j++) {
                acc[j][s] += ev[j] * xe;
                acc[j][s] += od[j] * xo;
            }
        }
    }
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) res[j][s] = hsum(acc[j][s]);
}

/* bf16 activations against weights decoded to bf16, in pairs (AVX512-BF16 ``vdpbf16ps``: each
 * float32 lane adds the products of an even and an odd input, 32 products an instruction against
 * the float32 route's 16). Every e4m3 and e2m1 value is a bf16 value and a product of two bf16
 * values is exact in float32, so only the order of the float32 additions differs from the
 * float32 route (and vdpbf16ps reads subnormal bf16 inputs as zero and flushes subnormal
 * products and sums: activations below 2^-126 count as zero). Taken where the activations are
 * bf16 and K a multiple of 32 (mode_for); float32 activations keep the float32 route. The
 * decodings (fp8x32_bf16, fp4x32_bf16) take 4 and 2 instructions for 32 weights with
 * AVX512-VBMI (byte permutes; Zen 4, Sapphire Rapids), 8 and 4 without (Cooper Lake); with VBMI
 * FP8 decodes 64 at a time in 5 (fp8x64_bf16), its lanes not in input order: the activations
 * are laid out to match (fp8_pair_slot), and where K is not a multiple of 64 the last 32
 * inputs take fp8x32_bf16 in place.
 * - FP8: each block of 128 summed unscaled, then added times its scale, as the float32 route.
 *   The NaN codes decode as +-480, as there.
 * - FP4: byte b holds inputs 2b and 2b+1, exactly one lane's pair; the lanes come out in the
 *   order fp4x32_bf16 gives and the activations are laid out to match (fp4_pair_slot: a copy
 *   of x, and the MoE's activations written so). The 16-entry table is taken times the
 *   group's scale (the scale's exponent added to the nonzero entries' bf16 exponents: exact,
 *   e2m1 values have two significant bits) for a row whose scales all are powers of two in
 *   [2^-125, 2^125], so that every scaled entry is a bf16 normal (fp4_row_scaled); another
 *   row sums each group unscaled and adds it times its scale. Two sums a (row, activation),
 *   groups alternating, so that one row does not wait on vdpbf16ps's latency; FP4_DP_GROUP
 *   activation rows at a time.
 * Batch invariance as above: a row's steps depend on the row alone. */
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#define HAVE_DPBF16 1
#define FP4_DP_GROUP 4

static inline f32x16 from_m512(__m512 v) {
    f32x16 f;
    memcpy(&f, &v, sizeof f);
    return f;
}

/* The bf16 bits of each e4m3 magnitude (code & 0x7f): normal ((c << 4) + (120 << 7)), subnormal
 * c 2^-9; as two byte tables for the VBMI decoding (low bytes, high bytes). */
#define FP8_SUB(c) ((c) == 0 ? 0 : (c) == 1 ? 0x3b00 : (c) == 2 ? 0x3b80 : (c) == 3 ? 0x3bc0 : 0x3c00 + ((c) - 4) * 0x20)
#define FP8_MAG(c) ((c) >= 8 ? ((c) << 4) + (120 << 7) : FP8_SUB(c))
#define FP8_LO4(c) FP8_MAG(c) & 255, FP8_MAG(c + 1) & 255, FP8_MAG(c + 2) & 255, FP8_MAG(c + 3) & 255
#define FP8_HI4(c) FP8_MAG(c) >> 8, FP8_MAG(c + 1) >> 8, FP8_MAG(c + 2) >> 8, FP8_MAG(c + 3) >> 8
#define FP8_LO16(c) FP8_LO4(c), FP8_LO4(c + 4), FP8_LO4(c + 8), FP8_LO4(c + 12)
#define FP8_HI16(c) FP8_HI4(c), FP8_HI4(c + 4), FP8_HI4(c + 8), FP8_HI4(c + 12)
static const uint8_t FP8_BF16_LO[128] __attribute__((aligned(64), unused)) = {
    FP8_LO16(0), FP8_LO16(16), FP8_LO16(32), FP8_LO16(48), FP8_LO16(64), FP8_LO16(80), FP8_LO16(96), FP8_LO16(112)};
static const uint8_t FP8_BF16_HI[128] __attribute__((aligned(64), unused)) = {
    FP8_HI16(0), FP8_HI16(16), FP8_HI16(32), FP8_HI16(48), FP8_HI16(64), FP8_HI16(80), FP8_HI16(96), FP8_HI16(112)};

/* 32 e4m3 codes -> their values in bf16. With AVX512-VBMI: each code copied to both bytes of its
 * word (one byte permute), the high bytes looked up in a 128-entry byte table (the permute
 * reads 7 index bits: the sign is ignored), then the low bytes in another, then the sign bit
 * ORed in: four instructions. Without: ((code & 0x7f) << 4) + (120 << 7), the bf16 bits of a
 * normal code, the sign, and a 32-entry table for the subnormal codes (m 2^-9, bf16
 * normals), eight. */
static inline __m512i fp8x32_bf16(const uint8_t *p) {
#if defined(__AVX512VBMI__)
    static const uint8_t twice[64] __attribute__((aligned(64))) = {
        0,  0,  1,  1,  2,  2,  3,  3,  4,  4,  5,  5,  6,  6,  7,  7,  8,  8,  9,  9,  10, 10,
        11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 16, 16, 17, 17, 18, 18, 19, 19, 20, 20, 21, 21,
        22, 22, 23, 23, 24, 24, 25, 25, 26, 26, 27, 27, 28, 28, 29, 29, 30, 30, 31, 31};
    const __m512i codes = _mm512_permutexvar_epi8(_mm512_load_si512(twice),
                                                  _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)));
    const __mmask64 high = 0xaaaaaaaaaaaaaaaaull;
    const __m512i h = _mm512_mask2_permutex2var_epi8(_mm512_load_si512(FP8_BF16_HI), codes, high,
                                                     _mm512_load_si512(FP8_BF16_HI + 64));
    const __m512i hl = _mm512_mask2_permutex2var_epi8(_mm512_load_si512(FP8_BF16_LO), h, ~high,
                                                      _mm512_load_si512(FP8_BF16_LO + 64));
    /* hl | (codes & 0x8000): the code's sign bit (its copy in the high byte) to bit 15 */
    return _mm512_ternarylogic_epi32(hl, codes, _mm512_set1_epi16((short)0x8000), 0xf8);
#else
    static const uint16_t subnormal[32] = {0x0000, 0x3b00, 0x3b80, 0x3bc0, 0x3c00, 0x3c20, 0x3c40, 0x3c60};
    const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));
    const __m512i normal = _mm512_add_epi16(_mm512_and_si512(_mm512_slli_epi16(b, 4), _mm512_set1_epi16(0x07f0)),
                                            _mm512_set1_epi16(120 << 7));
    const __mmask32 small = _mm512_testn_epi16_mask(b, _mm512_set1_epi16(0x78)); /* exponent 0 */
    const __m512i magnitude = _mm512_mask_permutexvar_epi16(normal, small, b, _mm512_loadu_si512(subnormal));
    /* magnitude | (b << 8 & 0x8000): the code's sign bit to bit 15 */
    return _mm512_ternarylogic_epi32(magnitude, _mm512_slli_epi16(b, 8), _mm512_set1_epi16((short)0x8000), 0xf8);
#endif
}

#if defined(__AVX512VBMI__)
#define FP8_WIDE 1
/* 64 e4m3 codes -> their values in bf16 as two vectors: one 128-entry byte lookup for the high
 * bytes of all 64 and one for the low bytes (vpermi2b reads 7 index bits), the sign ORed into
 * the high bytes, then the two interleaved within each 128-bit lane: lane L of *lo holds codes
 * 16L .. 16L+7, of *hi codes 16L+8 .. 16L+15 (fp8_pair_slot lays the activations out to match).
 * Five instructions for 64 codes against fp8x32_bf16's eight. */
static inline void fp8x64_bf16(const uint8_t *p, __m512i *lo, __m512i *hi) {
    const __m512i codes = _mm512_loadu_si512(p);
    const __m512i h = _mm512_permutex2var_epi8(_mm512_load_si512(FP8_BF16_HI), codes,
                                               _mm512_load_si512(FP8_BF16_HI + 64));
    const __m512i l = _mm512_permutex2var_epi8(_mm512_load_si512(FP8_BF16_LO), codes,
                                               _mm512_load_si512(FP8_BF16_LO + 64));
    /* h | (codes & 0x80): each code's sign to its high byte's top bit */
    const __m512i hs = _mm512_ternarylogic_epi32(h, codes, _mm512_set1_epi8((char)0x80), 0xf8);
    *lo = _mm512_unpacklo_epi8(l, hs);
    *hi = _mm512_unpackhi_epi8(l, hs);
}
#else
#define FP8_WIDE 0
#endif

/* Where input i (of k) lands in an FP8 product's bf16 activations in pairs: in each whole group
 * of 64 (FP8_WIDE), input 16L + w at 8L + w (w < 8) or 32 + 8L + w - 8, as fp8x64_bf16 gives
 * the weights; the rest (a last 32, or every input without VBMI) in place. */
static inline long fp8_pair_slot(long i, long k) {
    if (!FP8_WIDE || i >= k - k % 64) return i;
    const long within = i % 64, w = within % 16;
    return i - within + (w >= 8) * 32 + 8 * (within / 16) + w % 8;
}

/* 16 bytes of e2m1 pairs -> 32 bf16 values from table (16 entries held twice: the 16-bit permute
 * reads 5 index bits, the fifth a neighbouring code's). With AVX512-VBMI: the 16 bytes in every
 * 128-bit lane (a broadcasting load), then one multishift picks each word's nibble (the word's
 * low byte: 8 bits from the nibble's offset) and the permute looks it up; 32-bit lane l then
 * holds byte FP4_BYTE_OF(l)'s pair, and the activations are laid out to match (fp4_pair_slot).
 * Without: each byte widened to 32 bits and ORed with itself shifted left 12 (low nibble in the
 * low half, high nibble in the high half), lanes in natural order. */
#if defined(__AVX512VBMI__)
/* qword m of the output reads qword m % 2 of the 16 bytes, its bytes 2 (m / 2) and 2 (m / 2) + 1 */
#define FP4_BYTE_OF(l) (8 * ((l) / 2 % 2) + 2 * ((l) / 4) + (l) % 2)
#define FP4_CTRL(m) 16 * (m / 2), 0, 16 * (m / 2) + 4, 0, 16 * (m / 2) + 8, 0, 16 * (m / 2) + 12, 0
static inline __m512i fp4x32_bf16(const uint8_t *p, __m512i table) {
    static const uint8_t ctrl[64] __attribute__((aligned(64))) = {FP4_CTRL(0), FP4_CTRL(1), FP4_CTRL(2), FP4_CTRL(3),
                                                                  FP4_CTRL(4), FP4_CTRL(5), FP4_CTRL(6), FP4_CTRL(7)};
    const __m512i bytes = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p));
    return _mm512_permutexvar_epi16(_mm512_multishift_epi64_epi8(_mm512_load_si512(ctrl), bytes), table);
}
#else
#define FP4_BYTE_OF(l) (l)
static inline __m512i fp4x32_bf16(const uint8_t *p, __m512i table) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm512_permutexvar_epi16(_mm512_or_si512(b, _mm512_slli_epi32(b, 12)), table);
}
#endif

/* Where input i of a row lands in an FP4 product's bf16 activations in pairs: input 2b + h of
 * each group of 32 (byte b's low or high nibble) in the half h of the lane that holds byte b. */
static inline long fp4_pair_slot(long i) {
    static const uint8_t lane_of_byte[16] = { /* the inverse of FP4_BYTE_OF */
#define L(l) [FP4_BYTE_OF(l)] = l
        L(0), L(1), L(2), L(3), L(4), L(5), L(6), L(7), L(8), L(9), L(10), L(11), L(12), L(13), L(14), L(15)
#undef L
    };
    const long within = i % FP4_GROUP;
    return i - within + 2 * lane_of_byte[within / 2] + within % 2;
}

/* Every e2m1 value in bf16 (the table fp4x32_bf16 reads), and the same times 2^(e - 127) for a
 * scale exponent e in [2, 252]: the exponent added to the nonzero entries' (exact; no entry
 * leaves the normals). */
#define E2M1_BF16 0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0, \
                  0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0
static const uint16_t E2M1_TABLE[32] __attribute__((aligned(64))) = {E2M1_BF16, E2M1_BF16};
static inline __m512i scaled_table(__m512i table, int e) {
    const __mmask32 nonzero = 0xfefefefeu; /* all but entries 0, 8, 16, 24 (zeros) */
    return _mm512_mask_add_epi16(table, nonzero, table, _mm512_set1_epi16((short)((e - 127) * 128)));
}

/* The exponent field of row r's scale g: the UE8M0 byte, or the float's bits 23-30. */
static inline int table_exponent(const void *row, int u8, long g) {
    if (u8) return ((const uint8_t *)row)[g];
    uint32_t bits;
    memcpy(&bits, (const float *)row + g, sizeof bits);
    return (int)(bits >> 23 & 0xffu);
}

/* Whether every scale of row r may be taken into the table exactly: positive powers of two in
 * [2^-125, 2^125] (exponent fields 2 to 252). Loops without exits, so that they vectorize: run
 * once per call for each row, they would otherwise cost about what a short row's products do. */
static int fp4_row_scaled(const packed_t *w, long r) {
    const void *row = scale_row(w, r);
    const long n = w->groups;
    if (w->scale_u8) {
        const uint8_t *e = row;
        uint8_t lo = 255, hi = 0;
        for (long g = 0; g < n; g++) {
            lo = e[g] < lo ? e[g] : lo;
            hi = e[g] > hi ? e[g] : hi;
        }
        return lo >= 2 && hi <= 252;
    }
    const uint32_t *bits = row;
    uint32_t bad = 0;
    for (long g = 0; g < n; g++) {
        const uint32_t e = bits[g] >> 23 & 0xffu;
        bad |= (bits[g] & 0x807fffffu) | (e < 2u) | (e > 252u);
    }
    return !bad;
}

/* One row's two whole blocks c0 .. c0 + 256 of FP8 against bf16 xs, unscaled, interleaved:
 * block[b][s] is what fp8_pairs's loop gives block b alone (the same operations in the same
 * order), two independent chains for a row streamed alone. */
static inline __attribute__((always_inline)) void fp8_two_blocks(const uint8_t *p, long ahead, int c0,
                                                                 const uint16_t *const *xs, const int n,
                                                                 __m512 block[2][FP8_GROUP]) {
    for (int b = 0; b < 2; b++)
        for (int s = 0; s < n; s++) block[b][s] = _mm512_setzero_ps();
#if FP8_WIDE
    for (int c = c0; c < c0 + FP8_BLOCK; c += 64) {
        __m512i lo[2], hi[2];
        for (int b = 0; b < 2; b++) {
            if (ahead) PREFETCH_FP8(p + ahead + c + b * FP8_BLOCK);
            fp8x64_bf16(p + c + b * FP8_BLOCK, &lo[b], &hi[b]);
        }
        for (int s = 0; s < n; s++)
            for (int b = 0; b < 2; b++) {
                const __m512bh xl = (__m512bh)_mm512_loadu_si512(xs[s] + c + b * FP8_BLOCK);
                const __m512bh xh = (__m512bh)_mm512_loadu_si512(xs[s] + c + b * FP8_BLOCK + 32);
                block[b][s] =
                    _mm512_dpbf16_ps(_mm512_dpbf16_ps(block[b][s], (__m512bh)lo[b], xl), (__m512bh)hi[b], xh);
            }
    }
#else
    for (int c = c0; c < c0 + FP8_BLOCK; c += 32) {
        __m512bh wv[2];
        for (int b = 0; b < 2; b++) {
            if (ahead && !(c & 63)) PREFETCH_FP8(p + ahead + c + b * FP8_BLOCK);
            wv[b] = (__m512bh)fp8x32_bf16(p + c + b * FP8_BLOCK);
        }
        for (int s = 0; s < n; s++)
            for (int b = 0; b < 2; b++)
                block[b][s] = _mm512_dpbf16_ps(block[b][s], wv[b], (__m512bh)_mm512_loadu_si512(xs[s] + c + b * FP8_BLOCK));
    }
#endif
}

/* res[j][s] = dot(FP8 row rows[j], xs[s]) for bf16 xs, as fp8_dots: each block of 128 inputs
 * summed unscaled, then added times its scale, block after block; one row streamed alone (nr 1)
 * takes its whole blocks two at a time (fp8_two_blocks), the same bits as any other grouping. */
static inline __attribute__((always_inline)) void fp8_pairs(const packed_t *w, const long *rows, const int nr,
                                                            long ahead, int k, const uint16_t *const *xs,
                                                            const int n, float *const *res) {
    f32x16 acc[MAX_WROWS][FP8_GROUP];
    const uint8_t *p[MAX_WROWS];
    const void *sc[MAX_WROWS];
    for (int j = 0; j < nr; j++) {
        p[j] = w->codes + rows[j] * w->row_bytes;
        sc[j] = scale_row(w, rows[j]);
        for (int s = 0; s < n; s++) acc[j][s] = (f32x16){0};
    }
    int c0 = 0, g = 0;
    if (nr == 1)
        for (; c0 + 2 * FP8_BLOCK <= k; c0 += 2 * FP8_BLOCK, g += 2) {
            __m512 two[2][FP8_GROUP];
            fp8_two_blocks(p[0], ahead, c0, xs, n, two);
            for (int b = 0; b < 2; b++) {
                const float f = scale_of(sc[0], w->scale_u8, g + b, 0);
                for (int s = 0; s < n; s++) acc[0][s] += from_m512(two[b][s]) * f;
            }
        }
    for (; c0 < k; c0 += FP8_BLOCK, g++) {
        const int c1 = c0 + FP8_BLOCK < k ? c0 + FP8_BLOCK : k;
        __m512 block[MAX_WROWS][FP8_GROUP];
        for (int j = 0; j < nr; j++)
            for (int s = 0; s < n; s++) block[j][s] = _mm512_setzero_ps();
        int c = c0;
#if FP8_WIDE
        for (; c + 64 <= c1; c += 64) { /* 64 inputs a step, activations laid out by fp8_pair_slot */
            __m512i lo[MAX_WROWS], hi[MAX_WROWS];
            for (int j = 0; j < nr; j++) {
                if (ahead) PREFETCH_FP8(p[j] + ahead + c);
                fp8x64_bf16(p[j] + c, &lo[j], &hi[j]);
            }
            for (int s = 0; s < n; s++) {
                const __m512bh xl = (__m512bh)_mm512_loadu_si512(xs[s] + c);
                const __m512bh xh = (__m512bh)_mm512_loadu_si512(xs[s] + c + 32);
                for (int j = 0; j < nr; j++)
                    block[j][s] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(block[j][s], (__m512bh)lo[j], xl),
                                                   (__m512bh)hi[j], xh);
            }
        }
#endif
        for (; c < c1; c += 32) {
            __m512bh wv[MAX_WROWS];
            for (int j = 0; j < nr; j++) {
                if (ahead && !(c & 63)) PREFETCH_FP8(p[j] + ahead + c);
                wv[j] = (__m512bh)fp8x32_bf16(p[j] + c);
            }
            for (int s = 0; s < n; s++) {
                const __m512bh x = (__m512bh)_mm512_loadu_si512(xs[s] + c);
                for (int j = 0; j < nr; j++) block[j][s] = _mm512_dpbf16_ps(block[j][s], wv[j], x);
            }
        }
        for (int j = 0; j < nr; j++) {
            const float f = scale_of(sc[j], w->scale_u8, g, 0);
            for (int s = 0; s < n; s++) acc[j][s] += from_m512(block[j][s]) * f;
        }
    }
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) res[j][s] = hsum(acc[j][s]);
}

/* One group g of FP4 rows against bf16 xs into acc (fp4_pairs). */
static inline __attribute__((always_inline)) void fp4_group(const packed_t *w, const uint8_t *const *p,
                                                            const void *const *sc, const int nr, long ahead, int g,
                                                            const uint16_t *const *xs, const int n,
                                                            __m512 acc[MAX_WROWS][FP4_DP_GROUP], __m512i table,
                                                            const int scaled) {
    __m512bh wv[MAX_WROWS];
    float f[MAX_WROWS];
    for (int j = 0; j < nr; j++) {
        if (ahead && !(g & 3)) PREFETCH_FP4(p[j] + ahead + g * (FP4_GROUP / 2));
        if (!scaled) f[j] = scale_of(sc[j], w->scale_u8, g, 0);
        wv[j] = (__m512bh)fp4x32_bf16(p[j] + g * (FP4_GROUP / 2),
                                      scaled ? scaled_table(table, table_exponent(sc[j], w->scale_u8, g)) : table);
    }
    for (int s = 0; s < n; s++) {
        const __m512bh x = (__m512bh)_mm512_loadu_si512(xs[s] + g * FP4_GROUP);
        for (int j = 0; j < nr; j++)
            acc[j][s] = scaled ? _mm512_dpbf16_ps(acc[j][s], wv[j], x)
                               : _mm512_fmadd_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), wv[j], x),
                                                 _mm512_set1_ps(f[j]), acc[j][s]);
    }
}

/* res[j][s] = dot(FP4 row rows[j], xs[s]) for bf16 xs laid out by fp4_pair_slot; scaled: every
 * row's table taken times its scales (fp4_row_scaled), else each group's sum times its scale.
 * Even groups into one sum, odd into another. */
static inline __attribute__((always_inline)) void fp4_pairs(const packed_t *w, const long *rows, const int nr,
                                                            long ahead, int k, const uint16_t *const *xs,
                                                            const int n, float *const *res, const int scaled) {
    __m512 even[MAX_WROWS][FP4_DP_GROUP], odd[MAX_WROWS][FP4_DP_GROUP];
    const uint8_t *p[MAX_WROWS];
    const void *sc[MAX_WROWS];
    for (int j = 0; j < nr; j++) {
        p[j] = w->codes + rows[j] * w->row_bytes;
        sc[j] = scale_row(w, rows[j]);
        for (int s = 0; s < n; s++) even[j][s] = odd[j][s] = _mm512_setzero_ps();
    }
    const __m512i table = _mm512_load_si512(E2M1_TABLE);
    const int groups = k / FP4_GROUP;
    int g = 0;
    for (; g + 1 < groups; g += 2) {
        fp4_group(w, p, sc, nr, ahead, g, xs, n, even, table, scaled);
        fp4_group(w, p, sc, nr, ahead, g + 1, xs, n, odd, table, scaled);
    }
    if (g < groups) fp4_group(w, p, sc, nr, ahead, g, xs, n, even, table, scaled);
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) res[j][s] = hsum(from_m512(even[j][s]) + from_m512(odd[j][s]));
}
#else
#define HAVE_DPBF16 0
static inline long fp4_pair_slot(long i) { return i; }
static inline long fp8_pair_slot(long i, long k) { (void)k; return i; }
#endif

/* FP4 weights against int8 activations (AVX512-VNNI with AVX512-VBMI and BW; ``int8`` set by
 * the caller): twice an e2m1 value is an integer in [-12, 12] ({0, 1, 2, 3, 4, 6, 8, 12} and
 * their negatives), so each code maps exactly to a byte, and the products are integer dot
 * products (``vpdpbusd``: 64 byte products an instruction, summed in fours into int32 lanes).
 * - Activations: each row quantized once per call, per group of 32 inputs (the weights'
 *   scale groups): amax the group's largest magnitude, q = rint(x * (127 / amax)) (nearest,
 *   ties to even), its scale amax / 127 (an all-zero group: q 0, scale 0), all in float32.
 *   Per row, so a row's codes never depend on the batch. i8_quantize lays each row out in
 *   blocks of 128 inputs (I8_BLOCK): the 64 even inputs' codes, the 64 odd ones', then per
 *   block 16 int32 corrections and 16 float scales (one per int32 lane; see below). K is
 *   padded to whole blocks with zero codes and scales.
 * - Signs: vpdpbusd multiplies unsigned by signed bytes. The weights take the unsigned side,
 *   offset by 12 (2 e2m1 + 12, in [0, 24]: one byte lookup, vpermb, of 64 codes), the
 *   activations the signed side; sum((w + 12) q) = sum(w q) + 12 sum(q), so each lane's
 *   int32 sum starts at -12 times the sum of the codes it will meet (computed with the codes,
 *   once per row: no instruction in the loop). Chosen over the other offsets because it costs
 *   nothing per weight row: |w| on the unsigned side with the sign moved onto q costs an
 *   instruction per (weight, activation) pair; q + 128 unsigned needs each weight group's sum.
 * - Decoding: 64 code bytes (4 groups) a row a step; the low nibbles index the 16-entry table
 *   held four times (vpermb reads 6 index bits, so the high nibble's bits need no mask) and
 *   give the even inputs, the bytes shifted right by 4 in 16-bit lanes the odd ones: 3
 *   instructions for 128 weights. Lane l of a product then covers inputs of group l / 4.
 * - Scales: each lane's int32 sum (exact) converted to float32, times (weight scale times
 *   activation scale / 2) and added into a float32 sum per lane (one FMA), the 16 lanes summed
 *   as hsum does. UE8M0 scale bytes read as 2^(e - 127) with 0 read as 0 (not 2^-127) and
 *   255 as inf; float scales as they are.
 * The result differs from the float32 route by the activations' rounding (a relative error
 * of at most 1/254 of each group's largest magnitude an input) and from an exact evaluation of
 * the same integer sums and scales by float32 rounding only (each lane's products and sums).
 * Batch invariance as above. Taken only for FP4 weights; FP8 keeps its routes. */
#if defined(__AVX512VNNI__) && defined(__AVX512VBMI__) && defined(__AVX512BW__)
#define HAVE_I8 1
#else
#define HAVE_I8 0
#endif
#define FP4_I8_OFFSET 12 /* the weights' integers: twice e2m1 plus 12, in [0, 24] */


#if HAVE_I8
/* twice each e2m1 value plus 12, for codes 0-15, held four times */
#define I8_CODES 12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0
static const uint8_t I8_TABLE[64] __attribute__((aligned(64))) = {I8_CODES, I8_CODES, I8_CODES, I8_CODES};
static const int32_t I8_LANE_GROUP[16] __attribute__((aligned(64))) = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
static const uint8_t I8_LANE_BYTE[64] __attribute__((aligned(64))) = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
    2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0};

/* Block b's weight scales (groups 4b .. 4b + 3, `have` of them present) as one float per lane. */
static inline __attribute__((always_inline)) __m512 i8_weight_scales(const void *row, int u8, long b,
                                                                      const int have) {
    if (u8) {
        int32_t four = 0;
        if (have == 4)
            memcpy(&four, (const uint8_t *)row + 4 * b, 4);
        else
            memcpy(&four, (const uint8_t *)row + 4 * b, (size_t)have);
        const __m512i e = _mm512_maskz_permutexvar_epi8(0x1111111111111111ull, _mm512_load_si512(I8_LANE_BYTE),
                                                        _mm512_castsi128_si512(_mm_cvtsi32_si128(four)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
    }
    const __m128 f = have == 4 ? _mm_loadu_ps((const float *)row + 4 * b)
                               : _mm_maskz_loadu_ps((__mmask8)((1u << have) - 1), (const float *)row + 4 * b);
    return _mm512_permutexvar_ps(_mm512_load_si512(I8_LANE_GROUP), _mm512_castps128_ps512(f));
}

/* One block b of 128 inputs (``have`` of its 4 groups present; a constant after inlining) of FP4
 * rows against quantized xs into acc (fp4_i8_dots). */
static inline __attribute__((always_inline)) void i8_block(const packed_t *w, const uint8_t *const *p,
                                                           const void *const *sc, const int nr, long ahead, long b,
                                                           const int have, long kp, long blocks,
                                                           const uint8_t *const *xs, const int n,
                                                           __m512 acc[MAX_WROWS][I8_GROUP], __m512i table) {
    __m512i lo[MAX_WROWS], hi[MAX_WROWS];
    __m512 ws[MAX_WROWS];
    for (int j = 0; j < nr; j++) {
        if (ahead) PREFETCH_FP4(p[j] + ahead + 64 * b);
        const __m512i raw = have == 4 ? _mm512_loadu_si512(p[j] + 64 * b)
                                      : _mm512_maskz_loadu_epi8((1ull << (16 * have)) - 1, p[j] + 64 * b);
        lo[j] = _mm512_permutexvar_epi8(raw, table);
        hi[j] = _mm512_permutexvar_epi8(_mm512_srli_epi16(raw, 4), table);
        ws[j] = i8_weight_scales(sc[j], w->scale_u8, b, have);
    }
    for (int s = 0; s < n; s++) {
        const uint8_t *x = xs[s];
        const __m512i xe = _mm512_load_si512(x + I8_BLOCK * b), xo = _mm512_load_si512(x + I8_BLOCK * b + 64);
        const __m512i corr = _mm512_load_si512(x + kp + 64 * b);
        const __m512 xscale = _mm512_load_ps((const float *)(x + kp) + 16 * blocks + 16 * b);
        for (int j = 0; j < nr; j++) {
            const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo[j], xe), hi[j], xo);
            acc[j][s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(ws[j], xscale), acc[j][s]);
        }
    }
}

/* res[j][s] = dot(FP4 row rows[j], quantized xs[s]) for j < nr, s < n (constants after inlining):
 * the whole blocks, then a last one of 1-3 groups. */
static inline __attribute__((always_inline)) void fp4_i8_dots(const packed_t *w, const long *rows, const int nr,
                                                              long ahead, int k, const uint8_t *const *xs,
                                                              const int n, float *const *res) {
    __m512 acc[MAX_WROWS][I8_GROUP];
    const uint8_t *p[MAX_WROWS];
    const void *sc[MAX_WROWS];
    for (int j = 0; j < nr; j++) {
        p[j] = w->codes + rows[j] * w->row_bytes;
        sc[j] = scale_row(w, rows[j]);
        for (int s = 0; s < n; s++) acc[j][s] = _mm512_setzero_ps();
    }
    const __m512i table = _mm512_load_si512(I8_TABLE);
    const long kp = i8_padded(k), blocks = kp / I8_BLOCK, whole = k / I8_BLOCK;
    for (long b = 0; b < whole; b++) i8_block(w, p, sc, nr, ahead, b, 4, kp, blocks, xs, n, acc, table);
    switch (k / FP4_GROUP % 4) {
    case 1: i8_block(w, p, sc, nr, ahead, whole, 1, kp, blocks, xs, n, acc, table); break;
    case 2: i8_block(w, p, sc, nr, ahead, whole, 2, kp, blocks, xs, n, acc, table); break;
    case 3: i8_block(w, p, sc, nr, ahead, whole, 3, kp, blocks, xs, n, acc, table); break;
    }
    for (int j = 0; j < nr; j++)
        for (int s = 0; s < n; s++) {
            f32x16 v;
            memcpy(&v, &acc[j][s], sizeof v);
            res[j][s] = hsum(v);
        }
}

#define I8_CASE(NR, N)                                                          \
    case N:                                                                     \
        fp4_i8_dots(w, rows, NR, ahead, k, (const uint8_t *const *)xs, N, out); \
        break;

/* pdots_any's int8 products, I8_GROUP activation rows at a time. */
static void pdots_i8(const packed_t *w, const long *rows, const int nr, long ahead, int k, const void *const *xs,
                     int n, float *const *res) {
    float *out[MAX_WROWS];
    for (int j = 0; j < nr; j++) out[j] = res[j];
    while (n > 0) {
        const int m = n > I8_GROUP ? I8_GROUP : n;
        if (nr == 4)
            switch (m) { I8_CASE(4, 1) I8_CASE(4, 2) I8_CASE(4, 3) I8_CASE(4, 4) }
        else if (nr == 1)
            switch (m) { I8_CASE(1, 1) I8_CASE(1, 2) I8_CASE(1, 3) I8_CASE(1, 4)
#if I8_GROUP > 4
                         I8_CASE(1, 5) I8_CASE(1, 6) I8_CASE(1, 7) I8_CASE(1, 8)
#endif
            }
        else
            switch (m) { I8_CASE(2, 1) I8_CASE(2, 2) I8_CASE(2, 3) I8_CASE(2, 4)
#if I8_GROUP > 4
                         I8_CASE(2, 5) I8_CASE(2, 6) I8_CASE(2, 7) I8_CASE(2, 8)
#endif
            }
        xs += m;
        for (int j = 0; j < nr; j++) out[j] += m;
        n -= m;
    }
}
#endif

/* 1 where FP4 products can take int8 activations (the ``int8`` arguments below). */
int ca_packed_int8(void) { return HAVE_I8; }

/* x [rows, k] (bf16) laid out as the format's products in pairs read it (fp4_pair_slot,
 * fp8_pair_slot); NULL when memory ran out. */
static uint16_t *pair_activations(const void *x, long rows, int k, int format) {
    uint16_t *out = malloc(sizeof(uint16_t) * (size_t)(rows * k));
    if (!out) return NULL;
    for (long r = 0; r < rows; r++)
        for (long i = 0; i < k; i++)
            out[r * k + (format == FP4 ? fp4_pair_slot(i) : fp8_pair_slot(i, k))] = ((const uint16_t *)x)[r * k + i];
    return out;
}

/* 1 where packed products with bf16 activations multiply in pairs (AVX512-BF16). */
int ca_packed_pairs(void) { return HAVE_DPBF16; }

/* Whether a product over K inputs reads bf16 activations (laid out by pair_activations), in pairs. */
static inline int mode_for(int x_bf16, int k) { return HAVE_DPBF16 && x_bf16 && k % 32 == 0; }


#define FP4_CASE(NR, N)                                     \
    case N:                                                 \
        fp4_dots(w, rows, NR, ahead, k, xs, N, out);        \
        break;
#define FP8_CASE(NR, N)                                     \
    case N:                                                 \
        fp8_dots(w, rows, NR, ahead, k, xs, N, out);        \
        break;

#if HAVE_DPBF16
#define FP8_DP_CASE(NR, N)                                                   \
    case N:                                                                  \
        fp8_pairs(w, rows, NR, ahead, k, (const uint16_t *const *)xs, N, out); \
        break;
#define FP4_DP_CASE(NR, N, SCALED)                                                     \
    case N:                                                                            \
        fp4_pairs(w, rows, NR, ahead, k, (const uint16_t *const *)xs, N, out, SCALED); \
        break;

/* pdots_any's bf16 pairs, FP4_DP_GROUP (FP8: FP8_GROUP) activation rows at a time. */
static void pdots_pairs(const packed_t *w, const long *rows, const int nr, long ahead, int k,
                        const void *const *xs, int n, float *const *res) {
    const int most = w->format == FP4 ? FP4_DP_GROUP : nr == 4 ? 2 : FP8_GROUP;
    int scaled = 1, row_scaled[MAX_WROWS];
    if (w->format == FP4)
        for (int j = 0; j < nr; j++) scaled &= row_scaled[j] = fp4_row_scaled(w, rows[j]);
    float *out[MAX_WROWS];
    for (int j = 0; j < nr; j++) out[j] = res[j];
    while (n > 0) {
        const int m = n > most ? most : n;
        if (w->format == FP8) {
            if (nr == 4)
                switch (m) { FP8_DP_CASE(4, 1) FP8_DP_CASE(4, 2) }
            else if (nr == 1)
                switch (m) { FP8_DP_CASE(1, 1) FP8_DP_CASE(1, 2) FP8_DP_CASE(1, 3) FP8_DP_CASE(1, 4) }
            else
                switch (m) { FP8_DP_CASE(2, 1) FP8_DP_CASE(2, 2) FP8_DP_CASE(2, 3) FP8_DP_CASE(2, 4) }
        } else if (scaled) {
            if (nr == 4)
                switch (m) { FP4_DP_CASE(4, 1, 1) FP4_DP_CASE(4, 2, 1) }
            else
                switch (m) { FP4_DP_CASE(2, 1, 1) FP4_DP_CASE(2, 2, 1) FP4_DP_CASE(2, 3, 1) FP4_DP_CASE(2, 4, 1) }
        } else { /* a row that cannot take its scales into the table: each row alone, its own way */
            for (int j = 0; j < nr; j++)
                for (int s = 0; s < m; s++) {
                    float *one[1] = {out[j] + s};
                    const void *x1[1] = {xs[s]};
                    if (row_scaled[j])
                        fp4_pairs(w, rows + j, 1, ahead, k, (const uint16_t *const *)x1, 1, one, 1);
                    else
                        fp4_pairs(w, rows + j, 1, ahead, k, (const uint16_t *const *)x1, 1, one, 0);
                }
        }
        xs += m;
        for (int j = 0; j < nr; j++) out[j] += m;
        n -= m;
    }
}
#endif

/* res[j][s] = dot(row rows[j], xs[s]) for j < nr (rows_for) and every s < n, GROUP (FP8:
 * FP8_GROUP) activation rows at a time; ``ahead``: bytes past each row's current read to
 * prefetch (0: none). With dp (mode_for), xs point at bf16 rows laid out by pair_activations. */
static void pdots_any(const packed_t *w, const long *rows, const int nr, long ahead, int k,
                      const void *const *xv, int n, float *const *res, int dp) {
#if HAVE_I8
    if (dp == 2) {
        pdots_i8(w, rows, nr, ahead, k, xv, n, res);
        return;
    }
#endif
#if HAVE_DPBF16
    if (dp == 1) {
        pdots_pairs(w, rows, nr, ahead, k, xv, n, res);
        return;
    }
#endif
    (void)dp;
    const float *const *xs = (const float *const *)xv;
    const int most = w->format == FP4 ? GROUP : FP8_GROUP;
    float *out[MAX_WROWS];
    for (int j = 0; j < nr; j++) out[j] = res[j];
    while (n > 0) {
        const int m = n > most ? most : n;
        if (w->format == FP4) {
            switch (m) {
                FP4_CASE(2, 1)
                FP4_CASE(2, 2)
                FP4_CASE(2, 3)
                FP4_CASE(2, 4)
                FP4_CASE(2, 5)
                FP4_CASE(2, 6)
                FP4_CASE(2, 7)
                FP4_CASE(2, 8)
            }
        } else {
            switch (m) {
                FP8_CASE(2, 1)
                FP8_CASE(2, 2)
                FP8_CASE(2, 3)
                FP8_CASE(2, 4)
            }
        }
        xs += m;
        for (int j = 0; j < nr; j++) out[j] += m;
        n -= m;
    }
}

/* Where input i of a row lands in an FP4 product's activations: each group of 32 holds its
 * even inputs, then its odd ones. */
static inline long fp4_slot(long i) {
    const long within = i % FP4_GROUP;
    return i - within + (within & 1) * (FP4_GROUP / 2) + within / 2;
}

/* x [rows, k] (bf16 or float32) as float32, in the layout the format's products read;
 * NULL when memory ran out. */
static float *activations(const void *x, long rows, int k, int bf16, int format) {
    float *out = malloc(sizeof(float) * (size_t)(rows * k));
    if (!out) return NULL;
    for (long r = 0; r < rows; r++)
        for (long i = 0; i < k; i++) {
            const long at = r * k + i;
            const float v = bf16 ? bf16_to_f32(((const uint16_t *)x)[at]) : ((const float *)x)[at];
            out[r * k + (format == FP4 ? fp4_slot(i) : i)] = v;
        }
    return out;
}

/* How a product over K inputs reads its activations: 2 quantized to int8 (FP4 weights, int8
 * asked for and built), 1 bf16 in pairs (mode_for), 0 float32. */
static inline int route_for(int format, int int8, int x_bf16, int k) {
    return format == FP4 && int8 && HAVE_I8 ? 2 : mode_for(x_bf16, k);
}

/* The activations of a product in the layout its route reads (NULL when memory ran out), and
 * the bytes from one row to the next. */
static void *route_activations(int route, const void *x, long rows, int k, int bf16, int format, long *stride) {
    *stride = route == 2 ? i8_row_bytes(k) : (long)k * (long)(route ? sizeof(uint16_t) : sizeof(float));
    if (route == 2) return i8_activations(x, rows, k, bf16, FP4_I8_OFFSET, 0.5f);
    return route ? (void *)pair_activations(x, rows, k, format) : (void *)activations(x, rows, k, bf16, format);
}

/* out [t, n] = x [t, k] @ W^T for a packed W [n, k]: codes, scales (float32 or UE8M0 bytes,
 * one row of them per rows_per_scale weight rows). Returns 0, -1 when memory ran out, -3 for
 * more than MAX_ROWS rows. */
int ca_linear_packed(int t, int k, int n, const void *x, const uint8_t *codes, const void *scale, int format,
                     int scale_u8, int rows_per_scale, void *out, int x_bf16, int out_bf16, int int8, int threads) {
    if (t > MAX_ROWS) return -3;
    const int group = format == FP8 ? FP8_BLOCK : FP4_GROUP;
    const packed_t w = {codes, format == FP8 ? k : k / 2, scale, (k + group - 1) / group, rows_per_scale, scale_u8,
                        format};
    /* int8 (FP4, asked for), bf16 in pairs laid out for the decoding, or float32 */
    const int dp = route_for(format, int8, x_bf16, k);
    long stride;
    void *copy = route_activations(dp, x, t, k, x_bf16, format, &stride);
    if (!copy) return -1;
    const void *xs[MAX_ROWS];
    for (int s = 0; s < t; s++) xs[s] = (const char *)copy + (size_t)s * stride;
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        const long r0 = (long)n * tid / nt, r1 = (long)n * (tid + 1) / nt;
        const int nr = rows_for(format, t, dp, 0);
        float buf[MAX_WROWS][MAX_ROWS];
        float *res[MAX_WROWS];
        long rows[MAX_WROWS];
        for (int j = 0; j < MAX_WROWS; j++) res[j] = buf[j];
        for (long r = r0; r < r1; r += nr) {
            for (int j = 0; j < nr; j++) rows[j] = r + j < r1 ? r + j : r1 - 1;
            pdots_any(&w, rows, nr, AHEAD * nr * w.row_bytes, k, xs, t, res, dp);
            for (int j = 0; j < nr && r + j < r1; j++)
                for (int s = 0; s < t; s++) store(out, (long)s * n + r + j, buf[j][s], out_bf16);
        }
    }
    free(copy);
    return 0;
}

/* v rounded to bf16 (and back) where round is set. */
static inline float rounded(float v, int round) { return round ? bf16_to_f32(f32_to_bf16(v)) : v; }

/* Pairs grouped by expert: order [pairs] lists them expert by expert (pair order within one),
 * active [nactive] the experts with pairs, first / count [nactive] where each one's run starts
 * and how long it is. Returns nactive, -1 when memory ran out. */
static int group_pairs(int pairs, int experts, const int64_t *ids, int *order, int *active, int *first, int *count) {
    int *next = calloc((size_t)experts, sizeof(int));
    if (!next) return -1;
    for (int p = 0; p < pairs; p++) next[ids[p]]++;
    int nactive = 0, start = 0;
    for (int e = 0; e < experts; e++) {
        if (!next[e]) continue;
        active[nactive] = e;
        first[nactive] = start;
        count[nactive++] = next[e];
        start += next[e];
        next[e] = start - next[e];
    }
    for (int p = 0; p < pairs; p++) order[next[ids[p]]++] = p;
    free(next);
    return nactive;
}

/* One sparse MoE layer over packed experts: out [t, h] = sum_j weights[t, j] * expert_{ids[t, j]}(x[t]),
 * expert_e(v) = w2[e] @ (silu(min(gate, limit)) * clamp(up, -limit, limit)), [gate; up] = w13[e] @ v
 * (limit = inf: plain SiLU gating). w13 [E, 2i, h] and w2 [E, h, i] packed in one format with per-row
 * scales [E, rows, groups] (float32 or UE8M0 bytes, each its own). ids [t, k] int64 in [0, E);
 * weights [t, k] float32; out in bf16 or float32. weight_first (DeepSeek-V4's reference expert):
 * each routing weight multiplies its pair's activation in float32 before the down projection and
 * the parts are summed unweighted, and with bf16 activations gate, up, the weighted activation and
 * each part are rounded to bf16 where that reference rounds them; else the weight multiplies the
 * expert's output and nothing is rounded before the sum. Returns 0, -1 when memory ran out, -2 for an expert id out of
 * range, -3 for more than MAX_PAIRS pairs. */
int ca_moe_packed(int t, int h, int inter, int experts, int topk, const void *x, const uint8_t *w13,
                  const void *scale13, int scale13_u8, const uint8_t *w2, const void *scale2, int scale2_u8, int format,
                  const int64_t *ids, const float *weights, float limit, int weight_first, void *out, int x_bf16,
                  int out_bf16, int int8, int threads) {
    const int pairs = t * topk, group = format == FP8 ? FP8_BLOCK : FP4_GROUP, rounds = weight_first && x_bf16;
    if (pairs > MAX_PAIRS) return -3;
    for (int p = 0; p < pairs; p++)
        if (ids[p] < 0 || ids[p] >= experts) return -2;
    const packed_t up_gate = {w13, format == FP8 ? h : h / 2, scale13, (h + group - 1) / group, 1, scale13_u8, format};
    const packed_t down = {w2, format == FP8 ? inter : inter / 2, scale2, (inter + group - 1) / group, 1, scale2_u8,
                           format};
    int *order = malloc(sizeof(int) * (size_t)pairs), *active = malloc(sizeof(int) * (size_t)pairs);
    int *first = malloc(sizeof(int) * (size_t)pairs), *count = malloc(sizeof(int) * (size_t)pairs);
    float *act = malloc(sizeof(float) * (size_t)pairs * inter), *part = malloc(sizeof(float) * (size_t)pairs * h);
    /* with AVX512-BF16 and bf16 x, the products read x laid out for the decoding and the
     * activations between the projections rounded to bf16 (as the torch reference's bf16
     * activations are) and written so laid out, in pairs; with int8 (FP4), x quantized once and
     * the activations between the projections (rounded to bf16 for bf16 x) quantized once per
     * pair, after all are written */
    const int dp_up = route_for(format, int8, x_bf16, h), dp_down = route_for(format, int8, x_bf16, inter);
    uint16_t *act16 = (uint16_t *)act;
    long xstride;
    void *copy = route_activations(dp_up, x, t, h, x_bf16, format, &xstride);
    const char *xbase = (const char *)copy;
    const long act8_bytes = i8_row_bytes(inter);
    uint8_t *act8 = dp_down == 2 ? aligned_alloc(64, (size_t)(pairs * act8_bytes)) : NULL;
    int status = 0, nactive = 0;
    if (!order || !active || !first || !count || !act || !part || !copy || (dp_down == 2 && !act8) ||
        (nactive = group_pairs(pairs, experts, ids, order, active, first, count)) < 0) {
        status = -1;
        goto done;
    }
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        const void *xs[MAX_PAIRS];
        float results[MAX_WROWS][MAX_PAIRS];
        float *res[MAX_WROWS];
        long rows[MAX_WROWS];
        for (int j = 0; j < MAX_WROWS; j++) res[j] = results[j];
        /* gate and up rows of every active expert, split evenly over the threads */
        long units = (long)nactive * inter, u = units * tid / nt, u1 = units * (tid + 1) / nt;
        while (u < u1) {
            const int a = (int)(u / inter), e = active[a], n = count[a];
            const int *mine = order + first[a];
            const long i0 = u % inter, i1 = (u1 - u < inter - i0) ? i0 + (u1 - u) : inter;
            for (int s = 0; s < n; s++) {
                const long token = mine[s] / topk;
                xs[s] = xbase + (size_t)token * xstride;
            }
            const int wanted = rows_for(format, n, dp_up, 1), half = wanted >= 2 ? wanted / 2 : 1;
            for (long at = i0; at < i1; at += half) {
                for (int j = 0; j < half; j++) { /* gate rows, then the up rows inter rows on */
                    rows[j] = (long)e * 2 * inter + (at + j < i1 ? at + j : i1 - 1);
                    rows[half + j] = rows[j] + inter;
                }
                pdots_any(&up_gate, rows, 2 * half, AHEAD * half * up_gate.row_bytes, h, xs, n, res, dp_up);
                for (int j = 0; j < half && at + j < i1; j++) {
                    const long i = at + j, slot = dp_down == 2 ? i
                                                  : format == FP8 ? (dp_down ? fp8_pair_slot(i, inter) : i)
                                                  : dp_down ? fp4_pair_slot(i) : fp4_slot(i);
                    for (int s = 0; s < n; s++) {
                        const float gs = rounded(res[j][s], rounds), us = rounded(res[half + j][s], rounds);
                        const float g = gs > limit ? limit : gs;
                        const float v = us > limit ? limit : (us < -limit ? -limit : us);
                        const float a = g / (1.0f + expf(-g)) * v;
                        const float value = weight_first ? rounded(a * weights[mine[s]], rounds) : a;
                        if (dp_down == 2)
                            act[(long)mine[s] * inter + slot] = rounded(value, x_bf16);
                        else if (dp_down)
                            act16[(long)mine[s] * inter + slot] = f32_to_bf16(value);
                        else
                            act[(long)mine[s] * inter + slot] = value;
                    }
                }
            }
            u += i1 - i0;
        }
#pragma omp barrier
        if (dp_down == 2) { /* each pair's activations quantized, the pairs split over the threads */
            for (long q = (long)pairs * tid / nt; q < (long)pairs * (tid + 1) / nt; q++)
                i8_quantize(act + q * inter, inter, act8 + q * act8_bytes, FP4_I8_OFFSET, 0.5f);
#pragma omp barrier
        }
        /* down projection rows of every active expert */
        units = (long)nactive * h;
        u = units * tid / nt;
        u1 = units * (tid + 1) / nt;
        while (u < u1) {
            const int a = (int)(u / h), e = active[a], n = count[a];
            const int *mine = order + first[a];
            const long r0 = u % h, r1 = (u1 - u < h - r0) ? r0 + (u1 - u) : h;
            for (int s = 0; s < n; s++)
                xs[s] = dp_down == 2 ? (const void *)(act8 + (long)mine[s] * act8_bytes)
                        : dp_down    ? (const void *)(act16 + (long)mine[s] * inter)
                                     : act + (long)mine[s] * inter;
            const int nr = rows_for(format, n, dp_down, 1);
            for (long r = r0; r < r1; r += nr) {
                for (int j = 0; j < nr; j++) rows[j] = (long)e * h + (r + j < r1 ? r + j : r1 - 1);
                pdots_any(&down, rows, nr, AHEAD * nr * down.row_bytes, inter, xs, n, res, dp_down);
                for (int j = 0; j < nr && r + j < r1; j++)
                    for (int s = 0; s < n; s++) part[(long)mine[s] * h + r + j] = rounded(res[j][s], rounds);
            }
            u += r1 - r0;
        }
#pragma omp barrier
        /* the weighted sum over each token's experts, in slot order */
        const long cells = (long)t * h, c0 = cells * tid / nt, c1 = cells * (tid + 1) / nt;
        for (long c = c0; c < c1; c++) {
            const long row = c / h, col = c % h;
            float sum = 0.0f;
            for (int j = 0; j < topk; j++) {
                const float p = part[(row * topk + j) * h + col];
                sum += weight_first ? p : weights[row * topk + j] * p;
            }
            store(out, c, sum, out_bf16);
        }
    }
done:
    free(order);
    free(active);
    free(first);
    free(count);
    free(act);
    free(part);
    free(copy);
    free(act8);
    return status;
}

/* W [n, k] decoded into out [n, k] (bf16 or float32): the values quant.dequantize gives, for the
 * products too large for the kernels above (prefill), one layer at a time. */
void ca_dequantize_packed(int n, int k, const uint8_t *codes, const void *scale, int format, int scale_u8,
                          int rows_per_scale, void *out, int out_bf16, int threads) {
    const int group = format == FP8 ? FP8_BLOCK : FP4_GROUP;
    const packed_t w = {codes, format == FP8 ? k : k / 2, scale, (k + group - 1) / group, rows_per_scale, scale_u8,
                        format};
    const f32x16 table = load_f32(E2M1);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < n; r++) {
        const uint8_t *p = w.codes + r * w.row_bytes;
        const void *scales = scale_row(&w, r);
        if (format == FP8) {
            for (int c = 0; c < k; c += 16)
                store16(out, r * k + c, fp8x16(p + c) * scale_of(scales, scale_u8, c / FP8_BLOCK, FP8_SHIFT), out_bf16);
            continue;
        }
        for (int c = 0; c < k; c += FP4_GROUP) {
            f32x16 even, odd;
            fp4x32(p + c / 2, table * scale_of(scales, scale_u8, c / FP4_GROUP, 0), &even, &odd);
            store16(out, r * k + c,
                    __builtin_shufflevector(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), out_bf16);
            store16(out, r * k + c + 16,
                    __builtin_shufflevector(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
                    out_bf16);
        }
    }
}
