/* gemm-bf16.c - the products of the bf16 compute mode: bf16 operands, float32 sums.
 *
 *     y[t][o] = bias[o] + sum_k bf16(x[t][k]) * bf16(W[o][k])
 *
 * x is rounded to bf16 once per product (vl2_bf16_round_rows, to nearest even); W is read in
 * its own dtype (the checkpoint's bf16 as it is, anything else rounded while packing). Every
 * product of two bf16 values is exact in float32, so the mode's only rounding is that of the
 * operands; the sums are float32 like the f32 mode's.
 *
 * With AVX-512 BF16 (vdpbf16ps: 16 lanes, each adding the products of one pair of k-values to a
 * float32 sum) the tokens, not the outputs, fill the lanes, so that W is read where it is:
 *
 *   - x is rounded and packed once per product (vl2_bf16_pack_x): groups of 16 tokens, vector
 *     kp of a group holding the pair (2kp, 2kp + 1) of each of its tokens. That is T x K work;
 *     packing W instead (the previous design) cost N x K for every block of tokens, 15-25 % of
 *     a prefill whose experts see some 24 tokens each.
 *   - a bf16 weight row's pairs are 32-bit words in the mapped checkpoint (read unaligned: a
 *     checkpoint's tensors are only 2-byte aligned): the microkernel
 *     broadcasts one and multiplies it into 16 tokens at once. It keeps MV groups of tokens x
 *     NO outputs of sums in registers (4 x 6 or 2 x 12: 24 zmm) over the whole of K, and per
 *     pair loads MV vectors of x and NO words of W for MV x NO vdpbf16ps.
 *   - a tile runs groups of 12 outputs (their rows, 12 x K x 2 bytes, stay in L1) over all of
 *     its tokens (their packed x, 384 KiB at most, stays in L2); the sums of 64 tokens x 12
 *     outputs go to y through a small buffer, once per tile and group, not per block of K.
 *   - weights stored otherwise (float32, quantized, or rows that do not start at an even
 *     element) are rounded to bf16 into a buffer, 12 rows at a time.
 *
 * Without AVX-512 BF16, vl2_matmul runs the mode through the float32 kernels on the rounded x
 * (products of bf16 values are exact in float32, so it is the same arithmetic).
 */
#include <stdlib.h>
#include <string.h>

#include "gemm-bf16.h"
#include "isa.h"
#include "quant.h"

static bool cpu_has_bf16(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

bool vl2_gemm_bf16_native(void)
{
    static int has = -1;
    if (has < 0)
        has = cpu_has_bf16();
    return has && vl2_isa_level() >= VL2_ISA_V4;
}

void vl2_gemm_bf16_ref(const vl2_matrix *w, const vl2_tensor *bias, const float *x, int T,
                       size_t ldx, float *y, size_t ldy)
{
    float *row = malloc((size_t)w->n_in * sizeof(float));
    if (!row)
        return;
    for (int o = 0; o < w->n_out; o++) {
        vl2_weight_segment(w, o, 0, w->n_in, row);
        float b = 0;
        if (bias)
            vl2_to_f32(bias->data, bias->dtype, (size_t)o, 1, &b);
        for (int t = 0; t < T; t++) {
            double s = b;
            for (int i = 0; i < w->n_in; i++)
                s += (double)vl2_bf16_to_f32(vl2_f32_to_bf16(row[i])) *
                     vl2_bf16_to_f32(vl2_f32_to_bf16(x[(size_t)t * ldx + i]));
            y[(size_t)t * ldy + o] = (float)s;
        }
    }
    free(row);
}

/* ---------------------------------------------------------------------------------------------
 * Rounding the activations
 */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

BF16_TARGET static void round_row_native(const float *src, uint16_t *dst, int n)
{
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512(dst + i, (__m512i)v);
    }
    for (; i < n; i++)
        dst[i] = vl2_f32_to_bf16(src[i]);
}
#endif

typedef struct {
    const float *x;
    size_t ldx, ldb;
    int K, rows_per_task, T;
    uint16_t *xb;
} round_job;

static void round_task(void *ctx, int task, int thread)
{
    round_job *j = ctx;
    int t0 = task * j->rows_per_task, t1 = MIN(j->T, t0 + j->rows_per_task);
    for (int t = t0; t < t1; t++) {
        const float *src = j->x + (size_t)t * j->ldx;
        uint16_t *dst = j->xb + (size_t)t * j->ldb;
#if defined(__x86_64__) && defined(__GNUC__)
        if (vl2_gemm_bf16_native()) {
            round_row_native(src, dst, j->K);
        } else
#endif
        {
            for (int k = 0; k < j->K; k++)
                dst[k] = vl2_f32_to_bf16(src[k]);
        }
        for (size_t k = (size_t)j->K; k < j->ldb; k++)
            dst[k] = 0;
    }
}

void vl2_bf16_round_rows(vl2_pool *pool, const float *x, int T, size_t ldx, int K, uint16_t *xb,
                         size_t ldb)
{
    int per = MAX(1, T / (4 * vl2_pool_size(pool)));
    round_job j = { x, ldx, ldb, K, per, T, xb };
    vl2_pool_run(pool, (T + per - 1) / per, round_task, &j);
}

/* ---------------------------------------------------------------------------------------------
 * The AVX-512 BF16 product
 */

#if defined(__x86_64__) && defined(__GNUC__)

/* 16 rows of 16 words -> 16 vectors, vector i holding word i of every row. */
BF16_TARGET static void transpose16(const uint32_t *src, size_t ld, uint32_t *dst, size_t ldd)
{
    __m512i r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_si512(src + (size_t)i * ld);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* r[4q + j] now holds, in 128-bit lane l, words (4l + j') of rows 4q .. 4q + 3 */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
    for (int i = 0; i < 16; i++)
        _mm512_storeu_si512(dst + (size_t)i * ldd, r[i]);
}

typedef struct {
    const float *x;
    size_t ldx;
    int T, K, pairs;
    uint32_t *xp;
} pack_job;

/* Task g: tokens [16g, 16g + 16), rounded to bf16 and transposed 16 pairs at a time. */
BF16_TARGET static void pack_task(void *ctx, int g, int thread)
{
    pack_job *j = ctx;
    uint32_t block[16][16] __attribute__((aligned(64)));
    uint32_t *dst = j->xp + (size_t)g * j->pairs * 16;
    for (int kp0 = 0; kp0 < j->pairs; kp0 += 16) {
        const int k0 = 2 * kp0, kn = MIN(32, j->K - k0);
        for (int i = 0; i < 16; i++) {
            const int t = 16 * g + i;
            uint16_t *row = (uint16_t *)block[i];
            if (t >= j->T || kn <= 0) {
                memset(row, 0, 64);
                continue;
            }
            const float *src = j->x + (size_t)t * j->ldx + k0;
            if (kn == 32) {
                round_row_native(src, row, 32);
            } else {
                for (int k = 0; k < 32; k++)
                    row[k] = k < kn ? vl2_f32_to_bf16(src[k]) : 0;
            }
        }
        transpose16(&block[0][0], 16, dst + (size_t)kp0 * 16, 16);
    }
}

void vl2_bf16_pack_x(vl2_pool *pool, const float *x, int T, size_t ldx, int K, uint32_t *xp)
{
    pack_job j = { x, ldx, T, K, vl2_bf16_pairs(K), xp };
    vl2_pool_run(pool, (T + 15) / 16, pack_task, &j);
}

/* MV groups of 16 tokens x NO outputs: acc[v][n] holds output n's sums for the 16 tokens of
 * group v. Per pair of k: MV loads of x, NO broadcasts of W's pair, MV * NO vdpbf16ps. */
BF16_TARGET static inline __attribute__((always_inline)) void
kernel(const int MV, const int NO, int pairs, size_t gstride, const uint32_t *xg,
       const uint16_t *const *wr, float *out)
{
    __m512 acc[4][12];
#pragma GCC unroll 4
    for (int v = 0; v < MV; v++)
#pragma GCC unroll 12
        for (int n = 0; n < NO; n++)
            acc[v][n] = _mm512_setzero_ps();
    for (int kp = 0; kp < pairs; kp++) {
        if ((kp & 15) == 0)
#pragma GCC unroll 12
            for (int n = 0; n < NO; n++)
                _mm_prefetch((const char *)(wr[n] + 2 * kp + 512), _MM_HINT_T0);
        __m512bh xv[4];
#pragma GCC unroll 4
        for (int v = 0; v < MV; v++)
            xv[v] = (__m512bh)_mm512_loadu_si512(xg + (size_t)v * gstride + (size_t)kp * 16);
#pragma GCC unroll 12
        for (int n = 0; n < NO; n++) {
            /* a checkpoint's tensors are only 2-byte aligned: the pair is read unaligned */
            uint32_t pair;
            memcpy(&pair, wr[n] + 2 * kp, sizeof pair);
            __m512bh b = (__m512bh)_mm512_set1_epi32((int)pair);
#pragma GCC unroll 4
            for (int v = 0; v < MV; v++)
                acc[v][n] = _mm512_dpbf16_ps(acc[v][n], xv[v], b);
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < MV; v++)
#pragma GCC unroll 12
        for (int n = 0; n < NO; n++)
            _mm512_store_ps(out + (size_t)n * 64 + 16 * v, acc[v][n]);
}

#define KERNEL(mv, no)                                                                         \
    BF16_TARGET static void kernel_##mv##_##no(int pairs, size_t gstride, const uint32_t *xg,  \
                                               const uint16_t *const *wr, float *out)          \
    {                                                                                          \
        kernel(mv, no, pairs, gstride, xg, wr, out);                                           \
    }
KERNEL(4, 6)
KERNEL(3, 6)
KERNEL(2, 12)
KERNEL(1, 12)

/* Outputs a tile handles together: their weight rows (at most 12 x K bf16) stay in L1 while the
 * tile's tokens pass. */
#define NG 12

bool vl2_gemm_bf16_tile(const vl2_matrix *w, const vl2_tensor *bias, const uint32_t *xp,
                        int t0, int t1, int o0, int o1, float *y, size_t ldy)
{
    /* pairs of a packed row; the kernel runs over the first n_pairs (W's rows end there) */
    const int K = w->n_in, pairs = vl2_bf16_pairs(K), n_pairs = (K + 1) / 2;
    const size_t gs = (size_t)pairs * 16;
    /* bf16 rows whose pairs are aligned 32-bit words are read where they are; other weights
     * are rounded into wbuf, NG rows at a time */
    const bool direct = w->dtype == VL2_DTYPE_BF16 && K % 2 == 0 && w->first % 2 == 0 &&
                        w->stride % 2 == 0;
    size_t bytes = 64 * NG * sizeof(float) + NG * sizeof(float);
    if (!direct)
        bytes += (size_t)NG * pairs * sizeof(uint32_t) + (size_t)K * sizeof(float);
    float *out = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!out)
        return false;
    float *bias_f = out + 64 * NG;
    uint32_t *wbuf = (uint32_t *)(bias_f + NG);
    float *seg = (float *)(wbuf + (size_t)NG * pairs);

    for (int og = o0; og < o1; og += NG) {
        const int no = MIN(NG, o1 - og);
        const uint16_t *wr[NG];
        for (int n = 0; n < NG; n++) {
            /* rows past the tile repeat its last one; their sums are not stored */
            const int o = og + MIN(n, no - 1);
            if (direct) {
                wr[n] = (const uint16_t *)w->data + w->first + (size_t)o * w->stride;
            } else {
                uint32_t *dst = wbuf + (size_t)n * pairs;
                if (n < no) {
                    vl2_weight_segment(w, o, 0, K, seg);
                    for (int kp = 0; kp < pairs; kp++) {
                        uint32_t lo = 2 * kp < K ? vl2_f32_to_bf16(seg[2 * kp]) : 0;
                        uint32_t hi = 2 * kp + 1 < K ? vl2_f32_to_bf16(seg[2 * kp + 1]) : 0;
                        dst[kp] = lo | hi << 16;
                    }
                }
                wr[n] = (const uint16_t *)(wbuf + (size_t)MIN(n, no - 1) * pairs);
            }
            bias_f[n] = 0;
            if (bias && n < no)
                vl2_to_f32(bias->data, bias->dtype, (size_t)(og + n), 1, &bias_f[n]);
        }
        for (int t = t0; t < t1; t += 64) {
            const int nt = MIN(64, t1 - t), mv = (nt + 15) / 16;
            const uint32_t *xg = xp + (size_t)(t / 16) * gs;
            if (mv == 4 || mv == 3) {
                for (int h = 0; h < NG; h += 6) {
                    if (mv == 4)
                        kernel_4_6(n_pairs, gs, xg, wr + h, out + (size_t)h * 64);
                    else
                        kernel_3_6(n_pairs, gs, xg, wr + h, out + (size_t)h * 64);
                }
            } else if (mv == 2) {
                kernel_2_12(n_pairs, gs, xg, wr, out);
            } else {
                kernel_1_12(n_pairs, gs, xg, wr, out);
            }
            for (int i = 0; i < nt; i++) {
                float *yt = y + (size_t)(t + i) * ldy + og;
                for (int n = 0; n < no; n++)
                    yt[n] = bias_f[n] + out[(size_t)n * 64 + i];
            }
        }
    }
    free(out);
    return true;
}

#else

void vl2_bf16_pack_x(vl2_pool *pool, const float *x, int T, size_t ldx, int K, uint32_t *xp)
{
}

bool vl2_gemm_bf16_tile(const vl2_matrix *w, const vl2_tensor *bias, const uint32_t *xp,
                        int t0, int t1, int o0, int o1, float *y, size_t ldy)
{
    return false;
}

#endif
