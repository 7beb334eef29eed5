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
 * float32 sum) a tile of the product is computed like this:
 *
 *   - the weights of NR = 64 outputs and KC k-values are packed into a panel whose vector kp
 *     holds, for each of 16 outputs, the pair (W[o][2kp], W[o][2kp + 1]): four vectors per
 *     pair cover the 64 outputs. The panel (32 KiB) stays in L1 while
 *   - the microkernel runs over the tile's tokens MR = 6 at a time, keeping 6 x 64 sums in 24
 *     zmm registers. Per pair of k it loads the panel's 4 vectors and, for each of the 6 tokens,
 *     broadcasts the token's pair (one 32-bit word of the bf16 row) into 4 vdpbf16ps: 24 dot
 *     products for 10 loads, so the arithmetic, not the loads, sets the pace.
 *   - KC blocks add into y (the first stores bias + sum), so the tile's rows of x (MB tokens x
 *     KC, 192 KiB at most) stay in L2 across the panels.
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

#define NR 64
#define MR 6
#define KC 256 /* k-values per block, even */

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

/* Packs outputs [o0, o0 + NR) (those below o_end; the rest zero) and k-values [k0, k0 + kc)
 * into panel[kp][n] (32-bit words, each the pair of k-values 2kp, 2kp + 1 of output n). */
static void pack_panel(const vl2_matrix *w, int o0, int o_end, int k0, int kc, uint32_t *panel,
                       float *seg)
{
    const int pairs = (kc + 1) / 2;
    int n_fast = 0;
    /* bf16 rows whose pairs are 32-bit words: 16 x 16 words at a time */
    if (w->dtype == VL2_DTYPE_BF16 && (w->first + (size_t)k0) % 2 == 0 && w->stride % 2 == 0 &&
        o_end - o0 >= 16) {
        n_fast = MIN(NR, o_end - o0) / 16 * 16;
        const int kp_fast = kc / 32 * 16;
        for (int n = 0; n < n_fast; n += 16) {
            const uint32_t *src =
                (const uint32_t *)((const uint16_t *)w->data + w->first +
                                   (size_t)(o0 + n) * w->stride + k0);
            for (int kp = 0; kp < kp_fast; kp += 16)
                transpose16(src + kp, w->stride / 2, panel + (size_t)kp * NR + n, NR);
            for (int kp = kp_fast; kp < pairs; kp++)
                for (int i = 0; i < 16; i++) {
                    const uint16_t *row = (const uint16_t *)(src + (size_t)i * (w->stride / 2));
                    panel[(size_t)kp * NR + n + i] =
                        row[2 * kp] | (2 * kp + 1 < kc ? (uint32_t)row[2 * kp + 1] << 16 : 0);
                }
        }
    }
    for (int n = n_fast; n < NR; n++) {
        int o = o0 + n;
        if (o >= o_end) {
            for (int kp = 0; kp < pairs; kp++)
                panel[(size_t)kp * NR + n] = 0;
            continue;
        }
        if (w->dtype == VL2_DTYPE_BF16) {
            const uint16_t *src = (const uint16_t *)w->data + w->first + (size_t)o * w->stride + k0;
            int kp = 0;
            for (; 2 * kp + 1 < kc; kp++) {
                uint32_t word;
                memcpy(&word, src + 2 * kp, sizeof word);
                panel[(size_t)kp * NR + n] = word;
            }
            if (kc & 1)
                panel[(size_t)kp * NR + n] = src[2 * kp];
        } else {
            vl2_weight_segment(w, o, k0, kc, seg);
            int kp = 0;
            for (; 2 * kp + 1 < kc; kp++)
                panel[(size_t)kp * NR + n] =
                    vl2_f32_to_bf16(seg[2 * kp]) | (uint32_t)vl2_f32_to_bf16(seg[2 * kp + 1]) << 16;
            if (kc & 1)
                panel[(size_t)kp * NR + n] = vl2_f32_to_bf16(seg[2 * kp]);
        }
    }
}

/* c[m][0 .. nc) (+)= the sums of tokens a[m] (m < mr) against the panel, over `pairs` pairs.
 * `first`: c = bias + sums; otherwise c += sums. */
BF16_TARGET static inline __attribute__((always_inline)) void
kernel(const int mr, int pairs, const uint32_t *a, size_t lda, const uint32_t *panel, float *c,
       size_t ldc, int nc, bool first, const float *bias)
{
    __m512 acc[MR][4];
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[m][v] = _mm512_setzero_ps();
    for (int kp = 0; kp < pairs; kp++) {
        const uint32_t *p = panel + (size_t)kp * NR;
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(p), b1 = (__m512bh)_mm512_loadu_si512(p + 16),
                 b2 = (__m512bh)_mm512_loadu_si512(p + 32), b3 = (__m512bh)_mm512_loadu_si512(p + 48);
#pragma GCC unroll 6
        for (int m = 0; m < MR; m++) {
            if (m >= mr)
                break;
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)m * lda + kp]);
            acc[m][0] = _mm512_dpbf16_ps(acc[m][0], av, b0);
            acc[m][1] = _mm512_dpbf16_ps(acc[m][1], av, b1);
            acc[m][2] = _mm512_dpbf16_ps(acc[m][2], av, b2);
            acc[m][3] = _mm512_dpbf16_ps(acc[m][3], av, b3);
        }
    }
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++) {
        if (m >= mr)
            break;
        float *cm = c + (size_t)m * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            int left = nc - 16 * v;
            if (left <= 0)
                break;
            __mmask16 mask = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            __m512 old = first ? _mm512_loadu_ps(bias + 16 * v)
                               : _mm512_maskz_loadu_ps(mask, cm + 16 * v);
            _mm512_mask_storeu_ps(cm + 16 * v, mask, _mm512_add_ps(old, acc[m][v]));
        }
    }
}

#define KERNEL(n)                                                                              \
    BF16_TARGET static void kernel_##n(int pairs, const uint32_t *a, size_t lda,                \
                                       const uint32_t *panel, float *c, size_t ldc, int nc,    \
                                       bool first, const float *bias)                          \
    {                                                                                          \
        kernel(n, pairs, a, lda, panel, c, ldc, nc, first, bias);                              \
    }
KERNEL(1)
KERNEL(2)
KERNEL(3)
KERNEL(4)
KERNEL(5)
KERNEL(6)

typedef void (*kernel_fn)(int, const uint32_t *, size_t, const uint32_t *, float *, size_t, int,
                          bool, const float *);
static const kernel_fn kernels[MR + 1] = { NULL,     kernel_1, kernel_2, kernel_3,
                                           kernel_4, kernel_5, kernel_6 };

bool vl2_gemm_bf16_tile(const vl2_matrix *w, const vl2_tensor *bias, const uint16_t *xb,
                        size_t ldb, int t0, int t1, int o0, int o1, float *y, size_t ldy)
{
    const int K = w->n_in;
    /* the panel and, for weights not stored as bf16, one row segment as float32 */
    uint32_t *panel = aligned_alloc(64, (size_t)(KC / 2) * NR * sizeof(uint32_t) +
                                            (KC + NR) * sizeof(float));
    if (!panel)
        return false;
    float *seg = (float *)(panel + (size_t)(KC / 2) * NR), *bias_f = seg + KC;
    for (int p0 = o0; p0 < o1; p0 += NR) {
        const int nc = MIN(NR, o1 - p0);
        for (int n = 0; n < NR; n++) {
            bias_f[n] = 0;
            if (bias && n < nc)
                vl2_to_f32(bias->data, bias->dtype, (size_t)(p0 + n), 1, &bias_f[n]);
        }
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int kc = MIN(KC, K - k0);
            pack_panel(w, p0, o1, k0, kc, panel, seg);
            const uint32_t *a = (const uint32_t *)(xb + (size_t)t0 * ldb + k0);
            for (int t = t0; t < t1; t += MR) {
                const int mr = MIN(MR, t1 - t);
                kernels[mr]((kc + 1) / 2, a + (size_t)(t - t0) * (ldb / 2), ldb / 2, panel,
                            y + (size_t)t * ldy + p0, ldy, nc, k0 == 0, bias_f);
            }
        }
    }
    free(panel);
    return true;
}

#else

bool vl2_gemm_bf16_tile(const vl2_matrix *w, const vl2_tensor *bias, const uint16_t *xb,
                        size_t ldb, int t0, int t1, int o0, int o1, float *y, size_t ldy)
{
    return false;
}

#endif
