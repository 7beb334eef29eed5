/* quant.c - Q8_0 / Q4_0 block quantization and the decode matrix-vector kernels (quant.h).
 *
 * Data flow of one decode product: the activation x (float32, n) is quantized once per token
 * into a vl2_qx (int8 per block of 32 with a float32 scale, padded with zeros to VL2_QX_PAD);
 * every Q8_0 / Q4_0 matrix that multiplies that x then streams its rows once through
 * vl2_gemv_q8 / vl2_gemv_q4, which take int8 dot products per block (exact in int32) and sum
 * d_w * d_x * dot in float32. BF16 matrices need no quantized x: vl2_gemv_bf16 widens the
 * weights to float32 with a shift and multiplies by x in float32.
 *
 * All three products are bound by memory bandwidth, not arithmetic, so the kernels are built
 * to keep many loads in flight: each 64-byte load is paired with a software prefetch 8 KiB
 * ahead (the hardware prefetchers alone reach a fraction of the bandwidth here), everything
 * that depends only on x is computed once per x (vl2_qx), accumulators stay in registers for
 * a whole row, and the per-block work is a handful of instructions. The integer kernels take
 * four rows side by side, sharing each load of x; the BF16 kernel, with the least arithmetic
 * per byte, reads one row at a time, which keeps DRAM streaming in order and measured faster.
 * The choice of variant (AVX-512 VNNI, AVX2, NEON, plain C) is made once, at first use.
 *
 * The unsigned-times-signed byte dot products of x86 (vpdpbusd, vpmaddubsw) need one operand
 * unsigned. Q4_0 nibbles u = q + 8 already are, and Q8_0 weights become so by flipping the
 * sign bit (q + 128); the surplus, 8 (resp. 128) times the sums of x, depends only on x, so
 * vl2_qx carries it ready to start the accumulators from. AVX2 has no headroom for q + 128
 * (vpmaddubsw saturates at 16 bits), so there Q8_0 uses |q| times x with q's sign.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "quant.h"

#include "isa.h"
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86 1
#include <immintrin.h>
#endif

#if defined(__aarch64__) && defined(__GNUC__)
#define HAVE_NEON 1
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif
#endif

#define QB VL2_QBLOCK

/* Rows processed together: they share every load of x. */
#define ROWS 4

/* How far ahead the kernels prefetch, in bytes of the same matrix. Streaming a matrix from
 * DRAM on this class of machine needs many lines in flight, more than the out-of-order window
 * of a kernel that does arithmetic on every load can keep, and the hardware prefetchers add
 * little here; so each 64-byte load is paired with a prefetch of the line this many bytes
 * further on. 8 KiB measured best on Zen 5 (4 and 16 KiB lose 10-20 %, a second prefetch into
 * L2 further ahead loses too). The prefetches run on past the caller's last row: they never
 * fault, and stopping them short of the band's end cost up to half the speed of the small
 * bands (16 to 112 rows) that vl2_matmul hands out. */
#define PREFETCH_BYTES 8192

/* For R rows read side by side: the same column, whole rows ahead. */
static inline size_t prefetch_rows(size_t row_bytes)
{
    return (PREFETCH_BYTES + row_bytes - 1) / row_bytes;
}

/* ---------------------------------------------------------------------------------------------
 * f16 and unaligned loads
 */

/* Weights sit at arbitrary byte offsets of the mapping: read 16-bit values through memcpy. */
static inline uint16_t load_u16(const uint16_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The smallest f16 magnitude >= a (a >= 0, finite), saturating at 65504. */
static uint16_t f16_ceil(double a)
{
    if (a <= 0)
        return 0;
    if (a >= 65504.0)
        return 0x7bff;
    uint16_t h = vl2_f32_to_f16((float)a);
    while (h > 0 && vl2_f16_to_f32((uint16_t)(h - 1)) >= a)
        h--;
    while (vl2_f16_to_f32(h) < a)
        h++;
    return h;
}

/* ---------------------------------------------------------------------------------------------
 * Weights: quantize and dequantize (offline, and the widening for prefill)
 *
 * The scale is rounded to f16 away from zero, not to nearest, so that x / d never leaves the
 * representable range: that is what makes the error bounds of quant.h hold exactly. The
 * divisions are done in double so that a quotient a hair below a half cannot round up to it.
 */

void vl2_quantize_row_q8(const float *x, int n, int8_t *qs, uint16_t *scales)
{
    for (int b = 0; b < n / QB; b++) {
        const float *xb = x + (size_t)b * QB;
        float amax = 0;
        for (int j = 0; j < QB; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        uint16_t h = f16_ceil((double)amax / 127.0);
        double d = vl2_f16_to_f32(h);
        memcpy(&scales[b], &h, sizeof h);
        for (int j = 0; j < QB; j++) {
            double q = d > 0 ? round(xb[j] / d) : 0;
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            qs[(size_t)b * QB + j] = (int8_t)q;
        }
    }
}

void vl2_quantize_row_q4(const float *x, int n, uint8_t *qs, uint16_t *scales)
{
    for (int b = 0; b < n / QB; b++) {
        const float *xb = x + (size_t)b * QB;
        float amax = 0, m = 0;
        for (int j = 0; j < QB; j++)
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                m = xb[j];
            }
        /* d = m / -8: the magnitude rounded up, the sign opposite to m's */
        uint16_t h = f16_ceil((double)amax / 8.0);
        if (m > 0)
            h |= 0x8000;
        double d = vl2_f16_to_f32(h);
        memcpy(&scales[b], &h, sizeof h);
        uint8_t *qb = qs + (size_t)b * (QB / 2);
        for (int j = 0; j < QB / 2; j++) {
            int u[2];
            for (int k = 0; k < 2; k++) {
                double q = d != 0 ? round(xb[j + 16 * k] / d) + 8 : 8;
                u[k] = q < 0 ? 0 : q > 15 ? 15 : (int)q;
            }
            qb[j] = (uint8_t)(u[0] | u[1] << 4);
        }
    }
}

void vl2_dequantize_row_q8(const int8_t *qs, const uint16_t *scales, int n, float *out)
{
    for (int b = 0; b < n / QB; b++) {
        float d = vl2_f16_to_f32(load_u16(scales + b));
        for (int j = 0; j < QB; j++)
            out[b * QB + j] = d * (float)qs[(size_t)b * QB + j];
    }
}

void vl2_dequantize_row_q4(const uint8_t *qs, const uint16_t *scales, int n, float *out)
{
    for (int b = 0; b < n / QB; b++) {
        float d = vl2_f16_to_f32(load_u16(scales + b));
        const uint8_t *qb = qs + (size_t)b * (QB / 2);
        for (int j = 0; j < QB / 2; j++) {
            out[b * QB + j] = d * (float)((qb[j] & 0x0f) - 8);
            out[b * QB + j + 16] = d * (float)((qb[j] >> 4) - 8);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Quantized activations
 */

static int qx_pad(int n)
{
    return (n + VL2_QX_PAD - 1) / VL2_QX_PAD * VL2_QX_PAD;
}

size_t vl2_qx_bytes(int n)
{
    size_t p = (size_t)qx_pad(n);
    /* qs, d, c8, qs4, c4 */
    return p + p / QB * sizeof(float) + p + p + p / 8 * sizeof(int32_t) + 64;
}

void vl2_qx_init(vl2_qx *qx, void *buf, int n)
{
    /* n_pad is a multiple of 512, so every array below starts 64-byte aligned */
    uint8_t *a = (uint8_t *)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
    size_t p;
    qx->n = n;
    qx->n_pad = qx_pad(n);
    p = (size_t)qx->n_pad;
    qx->qs = (int8_t *)a;
    qx->d = (float *)(a + p);
    qx->c8 = (int32_t *)(a + p + p / QB * sizeof(float));
    qx->qs4 = (int8_t *)((uint8_t *)qx->c8 + p);
    qx->c4 = (int32_t *)(qx->qs4 + p);
}

static void qx_zero_padding(vl2_qx *qx)
{
    memset(qx->qs + qx->n, 0, (size_t)(qx->n_pad - qx->n));
    memset(qx->d + qx->n / QB, 0, (size_t)(qx->n_pad - qx->n) / QB * sizeof(float));
}

/* The same for every variant (plain loops; a few hundred nanoseconds at n = 10944). */
void vl2_qx_derive(vl2_qx *qx)
{
    for (int i = 0; i < qx->n_pad / 4; i++) {
        const int8_t *q = qx->qs + 4 * i;
        qx->c8[i] = -128 * (q[0] + q[1] + q[2] + q[3]);
    }
    for (int g = 0; g < qx->n_pad / 128; g++) {
        const int8_t *q = qx->qs + 128 * g;
        int8_t *o = qx->qs4 + 128 * g;
        for (int k = 0; k < 4; k++) {
            memcpy(o + 16 * k, q + 32 * k, 16);
            memcpy(o + 64 + 16 * k, q + 32 * k + 16, 16);
            /* int32 lane 4k + j of the kernel covers bytes 4j..4j+3 of both 16-byte halves */
            for (int j = 0; j < 4; j++) {
                const int8_t *lo = q + 32 * k + 4 * j, *hi = lo + 16;
                qx->c4[16 * g + 4 * k + j] =
                    -8 * (lo[0] + lo[1] + lo[2] + lo[3] + hi[0] + hi[1] + hi[2] + hi[3]);
            }
        }
    }
}

/* Every variant computes exactly this: amax, then 127 / amax once, x * that, rounded to
 * nearest even (the default rounding of lrintf and of cvtps2dq). */
void vl2_quantize_x_ref(const float *x, vl2_qx *qx)
{
    for (int b = 0; b < qx->n / QB; b++) {
        const float *xb = x + (size_t)b * QB;
        float amax = 0;
        for (int j = 0; j < QB; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        qx->d[b] = amax / 127.0f;
        for (int j = 0; j < QB; j++) {
            long q = lrintf(xb[j] * id);
            qx->qs[(size_t)b * QB + j] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
    }
    qx_zero_padding(qx);
    vl2_qx_derive(qx);
}

/* ---------------------------------------------------------------------------------------------
 * Scalar reference kernels (also the fallback variant)
 */

void vl2_gemv_q8_ref(const int8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                     const vl2_qx *x, float *y)
{
    int nb = n / QB;
    for (int r = r0; r < r1; r++) {
        const int8_t *q = qs + (size_t)r * n;
        const uint16_t *sc = scales + (size_t)r * nb;
        double s = 0;
        for (int b = 0; b < nb; b++) {
            int32_t dot = 0;
            for (int j = 0; j < QB; j++)
                dot += (int32_t)q[b * QB + j] * x->qs[b * QB + j];
            float d = vl2_f16_to_f32(load_u16(sc + b)) * x->d[b];
            s += (double)d * dot;
        }
        y[r] = (float)s;
    }
}

void vl2_gemv_q4_ref(const uint8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                     const vl2_qx *x, float *y)
{
    int nb = n / QB;
    for (int r = r0; r < r1; r++) {
        const uint8_t *q = qs + (size_t)r * (n / 2);
        const uint16_t *sc = scales + (size_t)r * nb;
        double s = 0;
        for (int b = 0; b < nb; b++) {
            const uint8_t *qb = q + b * (QB / 2);
            const int8_t *xb = x->qs + b * QB;
            int32_t dot = 0;
            for (int j = 0; j < QB / 2; j++)
                dot += ((qb[j] & 0x0f) - 8) * xb[j] + ((qb[j] >> 4) - 8) * xb[j + 16];
            float d = vl2_f16_to_f32(load_u16(sc + b)) * x->d[b];
            s += (double)d * dot;
        }
        y[r] = (float)s;
    }
}

void vl2_gemv_bf16_ref(const uint16_t *w, size_t ldw, int n, int r0, int r1, const float *x,
                       float *y)
{
    for (int r = r0; r < r1; r++) {
        const uint16_t *row = w + (size_t)r * ldw;
        double s = 0;
        for (int i = 0; i < n; i++) {
            union { uint32_t u; float f; } v = { (uint32_t)load_u16(row + i) << 16 };
            s += (double)v.f * x[i];
        }
        y[r] = (float)s;
    }
}

#ifdef HAVE_X86
/* ---------------------------------------------------------------------------------------------
 * AVX-512: VNNI byte dots over four rows, 16 blocks of scales per load; BF16 row by row
 *
 * A group is 16 blocks: one 256-bit load of f16 scales per row, times the 16 x scales, gives
 * the 16 per-block factors; vpermps spreads each block's factor over the lanes that hold that
 * block's partial sums. Only the last group of a row is partial; it uses masked loads, which
 * neither fault nor read past the row, and x's zero padding makes the masked-out lanes zero.
 */

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,fma,f16c")))
#define AVX512_INLINE AVX512 __attribute__((always_inline)) static inline

AVX512_INLINE __m512 scales16_avx512(const uint16_t *sc, __mmask16 km, const float *dx)
{
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(km, sc)), _mm512_load_ps(dx));
}

/* R rows of a Q8_0 matrix, one group of m <= 16 blocks from block b0; pf: prefetch distance
 * in bytes. The rows share each load of x and of its sums. */
AVX512_INLINE void q8_group_avx512(const int8_t *const *q, const uint16_t *const *sc, int R,
                                   int b0, int m, const vl2_qx *x, size_t pf, __m512 *acc)
{
    const __m512i flip = _mm512_set1_epi8((char)0x80), two = _mm512_set1_epi32(2);
    __mmask16 km = m == 16 ? 0xffff : (__mmask16)((1u << m) - 1);
    __m512 s[ROWS];
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        _mm_prefetch((const char *)(sc[k] + b0) + pf / 16, _MM_HINT_T0);
        s[k] = scales16_avx512(sc[k] + b0, km, x->d + b0);
    }
    /* lanes 0-7 hold block 2p's sums, lanes 8-15 block 2p + 1's */
    __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int p = 0; p < (m + 1) / 2; p++, idx = _mm512_add_epi32(idx, two)) {
        size_t off = (size_t)(b0 + 2 * p) * QB;
        __m512i xv = _mm512_load_si512(x->qs + off), c = _mm512_load_si512(x->c8 + off / 4);
        __mmask64 wm = 2 * p + 1 < m ? ~(__mmask64)0 : (__mmask64)0xffffffffu;
#pragma GCC unroll 4
        for (int k = 0; k < R; k++) {
            _mm_prefetch((const char *)(q[k] + off + pf), _MM_HINT_T0);
            __m512i w = m == 16 ? _mm512_loadu_si512(q[k] + off)
                                : _mm512_maskz_loadu_epi8(wm, q[k] + off);
            /* (q + 128) . x, started from -128 * sum(x): q . x */
            __m512i d = _mm512_dpbusd_epi32(c, _mm512_xor_si512(w, flip), xv);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(idx, s[k]),
                                     acc[k]);
        }
    }
}

AVX512_INLINE void q8_rows_avx512(const int8_t *qs, const uint16_t *scales, int n, int r, int R,
                                  const vl2_qx *x, float *y)
{
    int nb = n / QB;
    size_t pf = prefetch_rows((size_t)n) * (size_t)n;
    const int8_t *q[ROWS];
    const uint16_t *sc[ROWS];
    __m512 acc[ROWS];
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        q[k] = qs + (size_t)(r + k) * n;
        sc[k] = scales + (size_t)(r + k) * nb;
        acc[k] = _mm512_setzero_ps();
    }
    int b0 = 0;
    for (; b0 + 16 <= nb; b0 += 16)
        q8_group_avx512(q, sc, R, b0, 16, x, pf, acc);
    if (b0 < nb)
        q8_group_avx512(q, sc, R, b0, nb - b0, x, pf, acc);
#pragma GCC unroll 4
    for (int k = 0; k < R; k++)
        y[r + k] = _mm512_reduce_add_ps(acc[k]);
}

AVX512 static void gemv_q8_avx512(const int8_t *qs, const uint16_t *scales, int n, int r0,
                                  int r1, const vl2_qx *x, float *y)
{
    int r = r0;
    for (; r + ROWS <= r1; r += ROWS)
        q8_rows_avx512(qs, scales, n, r, ROWS, x, y);
    switch (r1 - r) {
    case 3: q8_rows_avx512(qs, scales, n, r, 3, x, y); break;
    case 2: q8_rows_avx512(qs, scales, n, r, 2, x, y); break;
    case 1: q8_rows_avx512(qs, scales, n, r, 1, x, y); break;
    default: break;
    }
}

/* Q4_0: 64 bytes of a row are 4 blocks, one per 128-bit lane; the low nibbles pair with the
 * first 16 x of each block and the high nibbles with the last 16, which is how qs4 holds x. */
AVX512_INLINE void q4_group_avx512(const uint8_t *const *q, const uint16_t *const *sc, int R,
                                   int b0, int m, const vl2_qx *x, size_t pf, __m512 *acc)
{
    const __m512i low = _mm512_set1_epi8(0x0f), four = _mm512_set1_epi32(4);
    __mmask16 km = m == 16 ? 0xffff : (__mmask16)((1u << m) - 1);
    __m512 s[ROWS];
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        _mm_prefetch((const char *)(sc[k] + b0) + pf / 8, _MM_HINT_T0);
        s[k] = scales16_avx512(sc[k] + b0, km, x->d + b0);
    }
    __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    for (int g = 0; g < (m + 3) / 4; g++, idx = _mm512_add_epi32(idx, four)) {
        int b = b0 + 4 * g, left = m - 4 * g;
        const int8_t *xs = x->qs4 + (size_t)b * QB;
        __m512i xlo = _mm512_load_si512(xs), xhi = _mm512_load_si512(xs + 64);
        __m512i c = _mm512_load_si512(x->c4 + (size_t)b * 4);
        __mmask64 wm = left >= 4 ? ~(__mmask64)0 : ((__mmask64)1 << (16 * left)) - 1;
#pragma GCC unroll 4
        for (int k = 0; k < R; k++) {
            const uint8_t *p = q[k] + (size_t)b * (QB / 2);
            _mm_prefetch((const char *)(p + pf), _MM_HINT_T0);
            __m512i v = m == 16 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(wm, p);
            __m512i lo = _mm512_and_si512(v, low);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            /* (q + 8) . x, started from -8 * sum(x): q . x */
            __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c, lo, xlo), hi, xhi);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(idx, s[k]),
                                     acc[k]);
        }
    }
}

AVX512_INLINE void q4_rows_avx512(const uint8_t *qs, const uint16_t *scales, int n, int r, int R,
                                  const vl2_qx *x, float *y)
{
    int nb = n / QB;
    size_t pf = prefetch_rows((size_t)n / 2) * (size_t)n / 2;
    const uint8_t *q[ROWS];
    const uint16_t *sc[ROWS];
    __m512 acc[ROWS];
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        q[k] = qs + (size_t)(r + k) * (n / 2);
        sc[k] = scales + (size_t)(r + k) * nb;
        acc[k] = _mm512_setzero_ps();
    }
    int b0 = 0;
    for (; b0 + 16 <= nb; b0 += 16)
        q4_group_avx512(q, sc, R, b0, 16, x, pf, acc);
    if (b0 < nb)
        q4_group_avx512(q, sc, R, b0, nb - b0, x, pf, acc);
#pragma GCC unroll 4
    for (int k = 0; k < R; k++)
        y[r + k] = _mm512_reduce_add_ps(acc[k]);
}

AVX512 static void gemv_q4_avx512(const uint8_t *qs, const uint16_t *scales, int n, int r0,
                                  int r1, const vl2_qx *x, float *y)
{
    int r = r0;
    for (; r + ROWS <= r1; r += ROWS)
        q4_rows_avx512(qs, scales, n, r, ROWS, x, y);
    switch (r1 - r) {
    case 3: q4_rows_avx512(qs, scales, n, r, 3, x, y); break;
    case 2: q4_rows_avx512(qs, scales, n, r, 2, x, y); break;
    case 1: q4_rows_avx512(qs, scales, n, r, 1, x, y); break;
    default: break;
    }
}

/* BF16: 16 weights widened to float32 by a zero extension and a shift, 64 per iteration. */
AVX512_INLINE __m512 bf16x16_avx512(__m256i v)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

AVX512 static void gemv_bf16_avx512(const uint16_t *w, size_t ldw, int n, int r0, int r1,
                                    const float *x, float *y)
{
    for (int r = r0; r < r1; r++) {
        const uint16_t *row = w + (size_t)r * ldw;
        size_t pf = PREFETCH_BYTES / 2;
        __m512 acc[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                          _mm512_setzero_ps() };
        int i = 0;
        for (; i + 64 <= n; i += 64) {
            _mm_prefetch((const char *)(row + i + pf), _MM_HINT_T0);
            _mm_prefetch((const char *)(row + i + 32 + pf), _MM_HINT_T0);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(row + i + 16 * k));
                acc[k] = _mm512_fmadd_ps(bf16x16_avx512(v), _mm512_loadu_ps(x + i + 16 * k),
                                         acc[k]);
            }
        }
        for (; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
            __m256i v = _mm256_maskz_loadu_epi16(m, row + i);
            acc[0] = _mm512_fmadd_ps(bf16x16_avx512(v), _mm512_maskz_loadu_ps(m, x + i), acc[0]);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]),
                                                  _mm512_add_ps(acc[2], acc[3])));
    }
}

AVX512 static void quantize_x_avx512(const float *x, vl2_qx *qx)
{
    for (int b = 0; b < qx->n / QB; b++) {
        __m512 a = _mm512_loadu_ps(x + (size_t)b * QB);
        __m512 c = _mm512_loadu_ps(x + (size_t)b * QB + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(c)));
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        qx->d[b] = amax / 127.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, vid));
        __m512i qc = _mm512_cvtps_epi32(_mm512_mul_ps(c, vid));
        _mm_store_si128((__m128i *)(qx->qs + (size_t)b * QB), _mm512_cvtsepi32_epi8(qa));
        _mm_store_si128((__m128i *)(qx->qs + (size_t)b * QB + 16), _mm512_cvtsepi32_epi8(qc));
    }
    qx_zero_padding(qx);
    vl2_qx_derive(qx);
}

/* ---------------------------------------------------------------------------------------------
 * AVX2: vpmaddubsw + vpmaddwd byte dots, 8 blocks of scales per load
 */

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE AVX2 __attribute__((always_inline)) static inline

/* The 8 factors d_w * d_x of blocks b0 .. b0 + m - 1 (m <= 8); never reads past the row. */
AVX2_INLINE __m256 scales8_avx2(const uint16_t *sc, int m, __m256 dx)
{
    __m128i h;
    if (m == 8) {
        h = _mm_loadu_si128((const __m128i *)sc);
    } else {
        uint16_t tmp[8] = { 0 };
        memcpy(tmp, sc, (size_t)m * sizeof(uint16_t));
        h = _mm_loadu_si128((const __m128i *)tmp);
    }
    return _mm256_mul_ps(_mm256_cvtph_ps(h), dx);
}

AVX2_INLINE void q8_group_avx2(const int8_t *const *q, const uint16_t *const *sc, int R, int b0,
                               int m, const vl2_qx *x, size_t pfq, size_t pfs, __m256 *acc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 dx = _mm256_load_ps(x->d + b0);
    __m256 s[ROWS];
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        _mm_prefetch((const char *)(sc[k] + b0 + pfs), _MM_HINT_T0);
        s[k] = scales8_avx2(sc[k] + b0, m, dx);
    }
    for (int j = 0; j < m; j++) {
        size_t off = (size_t)(b0 + j) * QB;
        __m256i xv = _mm256_load_si256((const __m256i *)(x->qs + off));
        __m256i idx = _mm256_set1_epi32(j);
#pragma GCC unroll 4
        for (int k = 0; k < R; k++) {
            if (j % 2 == 0)
                _mm_prefetch((const char *)(q[k] + off + pfq), _MM_HINT_T0);
            __m256i w = _mm256_loadu_si256((const __m256i *)(q[k] + off));
            /* |q| <= 128 times x with q's sign: pairs stay within int16 */
            __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(xv, w));
            __m256i d = _mm256_madd_epi16(p, ones);
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_permutevar8x32_ps(s[k], idx),
                                     acc[k]);
        }
    }
}

/* Q4_0: two blocks per register (32 bytes), one per 128-bit lane; the low nibbles pair with
 * the first 16 x of each block and the high ones with the last 16, which is how qs4 holds x.
 * The two products are added in 16 bits (at most 2 * 2 * 15 * 127) before widening. */
AVX2_INLINE void q4_group_avx2(const uint8_t *const *q, const uint16_t *const *sc, int R, int b0,
                               int m, const vl2_qx *x, size_t pfq, size_t pfs, __m256 *acc)
{
    const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0f);
    __m256 dx = _mm256_load_ps(x->d + b0);
    __m256 s[ROWS];
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        _mm_prefetch((const char *)(sc[k] + b0 + pfs), _MM_HINT_T0);
        s[k] = scales8_avx2(sc[k] + b0, m, dx);
    }
    for (int i = 0; i < (m + 1) / 2; i++) {
        int b = b0 + 2 * i; /* even: the first or second half of a group of 4 in qs4 */
        const int8_t *xs = x->qs4 + (size_t)(b / 4) * 128 + (size_t)(b % 4) * 16;
        __m256i xlo = _mm256_load_si256((const __m256i *)xs);
        __m256i xhi = _mm256_load_si256((const __m256i *)(xs + 64));
        __m256i c = _mm256_load_si256((const __m256i *)(x->c4 + (size_t)b * 4));
        /* lanes 0-3 hold block 2i's sums, lanes 4-7 block 2i + 1's */
        __m256i idx = _mm256_set_epi32(2 * i + 1, 2 * i + 1, 2 * i + 1, 2 * i + 1, 2 * i, 2 * i,
                                       2 * i, 2 * i);
#pragma GCC unroll 4
        for (int k = 0; k < R; k++) {
            const uint8_t *p = q[k] + (size_t)b * (QB / 2);
            if (i % 2 == 0)
                _mm_prefetch((const char *)(p + pfq), _MM_HINT_T0);
            /* an odd last block alone: never read past the row */
            __m256i v = 2 * i + 1 < m ? _mm256_loadu_si256((const __m256i *)p)
                                      : _mm256_inserti128_si256(
                                            _mm256_setzero_si256(),
                                            _mm_loadu_si128((const __m128i *)p), 0);
            __m256i lo = _mm256_and_si256(v, low);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo),
                                           _mm256_maddubs_epi16(hi, xhi));
            /* (q + 8) . x plus -8 * sum(x): q . x */
            __m256i d = _mm256_add_epi32(_mm256_madd_epi16(p16, ones), c);
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_permutevar8x32_ps(s[k], idx),
                                     acc[k]);
        }
    }
}

/* R rows of either format side by side (q4 is a constant where this is inlined). */
AVX2_INLINE void qrows_avx2(const uint8_t *qs, const uint16_t *scales, int n, int r, int R,
                            bool q4, const vl2_qx *x, float *y)
{
    int nb = n / QB;
    size_t row_bytes = q4 ? (size_t)n / 2 : (size_t)n;
    size_t ahead = prefetch_rows(row_bytes);
    size_t pfq = ahead * row_bytes, pfs = ahead * (size_t)nb;
    const uint8_t *q[ROWS];
    const uint16_t *sc[ROWS];
    __m256 acc[ROWS];
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        q[k] = qs + (size_t)(r + k) * row_bytes;
        sc[k] = scales + (size_t)(r + k) * nb;
        acc[k] = _mm256_setzero_ps();
    }
    for (int b0 = 0; b0 < nb; b0 += 8) {
        int m = nb - b0 < 8 ? nb - b0 : 8;
        if (q4)
            q4_group_avx2(q, sc, R, b0, m, x, pfq, pfs, acc);
        else
            q8_group_avx2((const int8_t *const *)q, sc, R, b0, m, x, pfq, pfs, acc);
    }
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[k]), _mm256_extractf128_ps(acc[k], 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        y[r + k] = _mm_cvtss_f32(h);
    }
}

AVX2_INLINE void gemv_q_avx2(const uint8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                             bool q4, const vl2_qx *x, float *y)
{
    int r = r0;
    for (; r + ROWS <= r1; r += ROWS)
        qrows_avx2(qs, scales, n, r, ROWS, q4, x, y);
    switch (r1 - r) {
    case 3: qrows_avx2(qs, scales, n, r, 3, q4, x, y); break;
    case 2: qrows_avx2(qs, scales, n, r, 2, q4, x, y); break;
    case 1: qrows_avx2(qs, scales, n, r, 1, q4, x, y); break;
    default: break;
    }
}

AVX2 static void gemv_q8_avx2(const int8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                              const vl2_qx *x, float *y)
{
    gemv_q_avx2((const uint8_t *)qs, scales, n, r0, r1, false, x, y);
}

AVX2 static void gemv_q4_avx2(const uint8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                              const vl2_qx *x, float *y)
{
    gemv_q_avx2(qs, scales, n, r0, r1, true, x, y);
}

AVX2_INLINE void bf16_rows_avx2(const uint16_t *w, size_t ldw, int n, int r, int R,
                                const float *x, float *y)
{
    size_t pf = prefetch_rows(ldw * 2) * ldw;
    const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
    const uint16_t *row[ROWS];
    __m256 ae[ROWS], ao[ROWS];
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        row[k] = w + (size_t)(r + k) * ldw;
        ae[k] = _mm256_setzero_ps();
        ao[k] = _mm256_setzero_ps();
    }
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        /* even elements 0, 2, .. 14 and odd 1, 3, .. 15, in order */
        __m256 xe = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(x0, x1, 0x88)), 0xd8));
        __m256 xo = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(x0, x1, 0xdd)), 0xd8));
#pragma GCC unroll 4
        for (int k = 0; k < R; k++) {
            if (i % 32 == 0)
                _mm_prefetch((const char *)(row[k] + i + pf), _MM_HINT_T0);
            __m256i v = _mm256_loadu_si256((const __m256i *)(row[k] + i));
            ae[k] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, ae[k]);
            ao[k] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi_mask)), xo,
                                    ao[k]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < R; k++) {
        __m256 a = _mm256_add_ps(ae[k], ao[k]);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        float s = _mm_cvtss_f32(h);
        for (int t = i; t < n; t++) {
            union { uint32_t u; float f; } v = { (uint32_t)load_u16(row[k] + t) << 16 };
            s += v.f * x[t];
        }
        y[r + k] = s;
    }
}

AVX2 static void gemv_bf16_avx2(const uint16_t *w, size_t ldw, int n, int r0, int r1,
                                const float *x, float *y)
{
    int r = r0;
    for (; r + ROWS <= r1; r += ROWS)
        bf16_rows_avx2(w, ldw, n, r, ROWS, x, y);
    switch (r1 - r) {
    case 3: bf16_rows_avx2(w, ldw, n, r, 3, x, y); break;
    case 2: bf16_rows_avx2(w, ldw, n, r, 2, x, y); break;
    case 1: bf16_rows_avx2(w, ldw, n, r, 1, x, y); break;
    default: break;
    }
}

AVX2 static void quantize_x_avx2(const float *x, vl2_qx *qx)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i order = _mm256_set_epi32(7, 3, 6, 2, 5, 1, 4, 0);
    for (int b = 0; b < qx->n / QB; b++) {
        const float *xb = x + (size_t)b * QB;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(m, _mm256_and_ps(v[k], abs_mask));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        qx->d[b] = amax / 127.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
        /* the packs work per 128-bit lane: 0-3 8-11 16-19 24-27 | 4-7 .. ; reorder dwords */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
                                       _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, order);
        _mm256_store_si256((__m256i *)(qx->qs + (size_t)b * QB), p);
    }
    qx_zero_padding(qx);
    vl2_qx_derive(qx);
}
#endif /* HAVE_X86 */

#ifdef HAVE_NEON
/* ---------------------------------------------------------------------------------------------
 * NEON: sdot where the CPU has it, widening multiplies otherwise; bf16 by shifts and fma
 *
 * Compiled only for aarch64 and not run by the x86 test machines. One block at a time per row,
 * four rows sharing each x load; the f16 scale converts with one fcvt.
 */

#define NEON_DOT __attribute__((target("arch=armv8.2-a+dotprod")))

static inline float f16_neon(const uint16_t *p)
{
    __fp16 h;
    memcpy(&h, p, sizeof h);
    return (float)h;
}

static inline int32x4_t dot32_mull(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1)
{
    int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
    p0 = vmlal_s8(p0, vget_high_s8(w0), vget_high_s8(x0));
    int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
    p1 = vmlal_s8(p1, vget_high_s8(w1), vget_high_s8(x1));
    return vpadalq_s16(vpaddlq_s16(p0), p1);
}

#define NEON_GEMV(NAME, ATTR, DOT)                                                             \
    ATTR static void gemv_q8_##NAME(const int8_t *qs, const uint16_t *scales, int n, int r0,   \
                                    int r1, const vl2_qx *x, float *y)                         \
    {                                                                                          \
        int nb = n / QB;                                                                       \
        for (int r = r0; r < r1; r += ROWS) {                                                  \
            int R = r1 - r < ROWS ? r1 - r : ROWS;                                             \
            size_t pf = prefetch_rows((size_t)n) * (size_t)n;                                  \
            float32x4_t acc[ROWS];                                                             \
            for (int k = 0; k < ROWS; k++)                                                     \
                acc[k] = vdupq_n_f32(0);                                                       \
            for (int b = 0; b < nb; b++) {                                                     \
                int8x16_t x0 = vld1q_s8(x->qs + b * QB), x1 = vld1q_s8(x->qs + b * QB + 16);   \
                for (int k = 0; k < R; k++) {                                                  \
                    const int8_t *q = qs + (size_t)(r + k) * n + (size_t)b * QB;               \
                    if (b % 2 == 0)                                                            \
                        __builtin_prefetch(q + pf);                                            \
                    int32x4_t d = DOT(vld1q_s8(q), vld1q_s8(q + 16), x0, x1);                  \
                    float s = f16_neon(scales + (size_t)(r + k) * nb + b) * x->d[b];           \
                    acc[k] = vfmaq_n_f32(acc[k], vcvtq_f32_s32(d), s);                         \
                }                                                                              \
            }                                                                                  \
            for (int k = 0; k < R; k++)                                                        \
                y[r + k] = vaddvq_f32(acc[k]);                                                 \
        }                                                                                      \
    }                                                                                          \
    ATTR static void gemv_q4_##NAME(const uint8_t *qs, const uint16_t *scales, int n, int r0,  \
                                    int r1, const vl2_qx *x, float *y)                         \
    {                                                                                          \
        int nb = n / QB;                                                                       \
        const uint8x16_t low = vdupq_n_u8(0x0f);                                               \
        const int8x16_t eight = vdupq_n_s8(8);                                                 \
        for (int r = r0; r < r1; r += ROWS) {                                                  \
            int R = r1 - r < ROWS ? r1 - r : ROWS;                                             \
            size_t pf = prefetch_rows((size_t)n / 2) * (size_t)n / 2;                          \
            float32x4_t acc[ROWS];                                                             \
            for (int k = 0; k < ROWS; k++)                                                     \
                acc[k] = vdupq_n_f32(0);                                                       \
            for (int b = 0; b < nb; b++) {                                                     \
                int8x16_t x0 = vld1q_s8(x->qs + b * QB), x1 = vld1q_s8(x->qs + b * QB + 16);   \
                for (int k = 0; k < R; k++) {                                                  \
                    const uint8_t *q = qs + (size_t)(r + k) * (n / 2) + (size_t)b * 16;        \
                    if (b % 4 == 0)                                                            \
                        __builtin_prefetch(q + pf);                                            \
                    uint8x16_t v = vld1q_u8(q);                                                \
                    int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, low)), eight);     \
                    int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);     \
                    int32x4_t d = DOT(lo, hi, x0, x1);                                         \
                    float s = f16_neon(scales + (size_t)(r + k) * nb + b) * x->d[b];           \
                    acc[k] = vfmaq_n_f32(acc[k], vcvtq_f32_s32(d), s);                         \
                }                                                                              \
            }                                                                                  \
            for (int k = 0; k < R; k++)                                                        \
                y[r + k] = vaddvq_f32(acc[k]);                                                 \
        }                                                                                      \
    }

NEON_GEMV(neon, , dot32_mull)

NEON_DOT static inline int32x4_t dot32_sdot(int8x16_t w0, int8x16_t w1, int8x16_t x0,
                                            int8x16_t x1)
{
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);
}

NEON_GEMV(neon_dot, NEON_DOT, dot32_sdot)

static void gemv_bf16_neon(const uint16_t *w, size_t ldw, int n, int r0, int r1, const float *x,
                           float *y)
{
    for (int r = r0; r < r1; r += ROWS) {
        int R = r1 - r < ROWS ? r1 - r : ROWS;
        size_t pf = prefetch_rows(ldw * 2) * ldw;
        float32x4_t ae[ROWS], ao[ROWS];
#pragma GCC unroll 4
        for (int k = 0; k < ROWS; k++) {
            ae[k] = vdupq_n_f32(0);
            ao[k] = vdupq_n_f32(0);
        }
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            float32x4_t x0 = vld1q_f32(x + i), x1 = vld1q_f32(x + i + 4);
#pragma GCC unroll 4
            for (int k = 0; k < R; k++) {
                const uint16_t *p = w + (size_t)(r + k) * ldw + i;
                if (i % 32 == 0)
                    __builtin_prefetch(p + pf);
                /* through bytes: rows need not be 2-byte aligned */
                uint16x8_t v = vreinterpretq_u16_u8(vld1q_u8((const uint8_t *)p));
                ae[k] = vfmaq_f32(ae[k], vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)),
                                  x0);
                ao[k] = vfmaq_f32(ao[k], vreinterpretq_f32_u32(vshll_high_n_u16(v, 16)), x1);
            }
        }
#pragma GCC unroll 4
        for (int k = 0; k < R; k++) {
            float s = vaddvq_f32(vaddq_f32(ae[k], ao[k]));
            const uint16_t *row = w + (size_t)(r + k) * ldw;
            for (int t = i; t < n; t++) {
                union { uint32_t u; float f; } v = { (uint32_t)load_u16(row + t) << 16 };
                s += v.f * x[t];
            }
            y[r + k] = s;
        }
    }
}
#endif /* HAVE_NEON */

/* ---------------------------------------------------------------------------------------------
 * Dispatch
 */

typedef struct {
    const char *name;
    void (*quantize_x)(const float *x, vl2_qx *qx);
    void (*q8)(const int8_t *, const uint16_t *, int, int, int, const vl2_qx *, float *);
    void (*q4)(const uint8_t *, const uint16_t *, int, int, int, const vl2_qx *, float *);
    void (*bf16)(const uint16_t *, size_t, int, int, int, const float *, float *);
} kernel_table;

/* Best first. */
static const kernel_table tables[] = {
#ifdef HAVE_X86
    { "avx512-vnni", quantize_x_avx512, gemv_q8_avx512, gemv_q4_avx512, gemv_bf16_avx512 },
    { "avx2", quantize_x_avx2, gemv_q8_avx2, gemv_q4_avx2, gemv_bf16_avx2 },
#endif
#ifdef HAVE_NEON
    { "neon-dotprod", vl2_quantize_x_ref, gemv_q8_neon_dot, gemv_q4_neon_dot, gemv_bf16_neon },
    { "neon", vl2_quantize_x_ref, gemv_q8_neon, gemv_q4_neon, gemv_bf16_neon },
#endif
    { "scalar", vl2_quantize_x_ref, vl2_gemv_q8_ref, vl2_gemv_q4_ref, vl2_gemv_bf16_ref },
};

/* Within the level isa.c allows (the CPU's best, or the cap of VL2_ISA / vl2_isa_limit). */
static bool table_supported(const kernel_table *t)
{
    int level = vl2_isa_level();
#ifdef HAVE_X86
    __builtin_cpu_init();
    if (strcmp(t->name, "avx512-vnni") == 0)
        return level >= VL2_ISA_V4 && __builtin_cpu_supports("avx512vnni");
    if (strcmp(t->name, "avx2") == 0)
        return level >= VL2_ISA_V3;
#endif
#ifdef HAVE_NEON
    if (strcmp(t->name, "neon-dotprod") == 0)
        return level >= 1;
#endif
    (void)level;
    return true;
}

static pthread_once_t choose_once = PTHREAD_ONCE_INIT;
static _Atomic(const kernel_table *) chosen;

static void choose(void)
{
    const kernel_table *t = &tables[sizeof tables / sizeof tables[0] - 1];
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (table_supported(&tables[i])) {
            t = &tables[i];
            break;
        }
    atomic_store(&chosen, t);
}

static const kernel_table *kernels(void)
{
    pthread_once(&choose_once, choose);
    return atomic_load_explicit(&chosen, memory_order_relaxed);
}

const char *vl2_kernels_isa(void)
{
    return kernels()->name;
}

bool vl2_kernels_force_isa(const char *name)
{
    pthread_once(&choose_once, choose);
    if (!name) {
        choose();
        return true;
    }
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (strcmp(tables[i].name, name) == 0 && table_supported(&tables[i])) {
            atomic_store(&chosen, &tables[i]);
            return true;
        }
    return false;
}

void vl2_quantize_x(const float *x, vl2_qx *qx)
{
    kernels()->quantize_x(x, qx);
}

void vl2_gemv_q8(const int8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                 const vl2_qx *x, float *y)
{
    kernels()->q8(qs, scales, n, r0, r1, x, y);
}

void vl2_gemv_q4(const uint8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                 const vl2_qx *x, float *y)
{
    kernels()->q4(qs, scales, n, r0, r1, x, y);
}

void vl2_gemv_bf16(const uint16_t *w, size_t ldw, int n, int r0, int r1, const float *x,
                   float *y)
{
    kernels()->bf16(w, ldw, n, r0, r1, x, y);
}
