/* quant.h - block-quantized weights (Q8_0, Q4_0) and the decode matrix-vector kernels.
 *
 * Decoding one token reads every activated weight once, so the products here are matrix times
 * one vector and run at memory bandwidth: y[r] = sum_i W[r][i] * x[i] for a band of rows
 * r0 <= r < r1, the caller splitting rows over threads. Three weight formats:
 *
 *   BF16   W[r][i] at w[r * ldw + i], x in float32, products and sums in float32.
 *   Q8_0   8-bit blocks, weights only; x is quantized to 8 bits per block first (vl2_qx).
 *   Q4_0   4-bit blocks, weights only; x likewise.
 *
 * ---- Q8_0 -------------------------------------------------------------------------------------
 * A row of n weights (n % 32 == 0) is n / 32 blocks of 32. Block b of row r holds 32 int8 values
 * q and one scale d, an IEEE binary16 (f16) stored as its bits. Weight = d * q. A matrix of
 * `rows` rows is two arrays, each row after row with no padding:
 *
 *     int8_t   qs[rows][n]          qs[r][32 * b + j] = q_j of block b
 *     uint16_t scales[rows][n / 32] f16 bits of d, native byte order
 *
 * Quantization (vl2_quantize_row_q8) of block values x_0..x_31 (finite):
 *     amax = max |x_j|;  d = amax / 127 rounded to f16 away from zero (the smallest f16 >= the
 *     exact quotient, so that no |x_j| / d exceeds 127);  q_j = round(x_j / d), halves away from
 *     zero, in [-127, 127];  amax == 0 gives d = 0 and all q_j = 0.
 *     Then |x_j - d * q_j| <= d / 2 for every element (d >= 2^-24, the smallest f16, whenever
 *     amax > 0; amax > 65504 * 127 saturates d at 65504 and clips).
 * The kernels accept any int8 q, -128 included.
 *
 * ---- Q4_0 -------------------------------------------------------------------------------------
 * The same blocks of 32 with one f16 scale d each; 4-bit values u in [0, 15], weight =
 * d * (u - 8). Block b of a row is 16 bytes: byte j (0 <= j < 16) holds element j in its low
 * nibble and element j + 16 in its high nibble (llama.cpp's Q4_0 nibble order).
 *
 *     uint8_t  qs[rows][n / 2]      qs[r][16 * b + j] = u_j | u_(j+16) << 4
 *     uint16_t scales[rows][n / 32] f16 bits of d
 *
 * Quantization (vl2_quantize_row_q4): m = the x_j of largest magnitude, sign kept (the first
 * one on ties); d = m / -8 rounded to f16 away from zero (so d has the opposite sign of m and
 * every x_j / d lies in [-8, 8]); u_j = clamp(round(x_j / d) + 8, 0, 15), halves away from zero.
 * Whenever d is a normal f16 (|m| >= 2^-11), m itself gets u = 0.
 *     Then |x_j - d * (u_j - 8)| <= |d|: at most |d| / 2 where x_j / d <= 7.5, and up to |d| for
 *     the values of sign opposite to m and magnitude near |m| (x_j / d in (7.5, 8]), which the
 *     asymmetric range [-8, 7] clips to 7.
 *
 * ---- Quantized activations (vl2_qx) -------------------------------------------------------------
 * The integer kernels take x quantized per block of 32 to int8 with a float32 scale:
 *     dx = amax / 127 (float32), q = round_to_nearest_even(x * (127 / amax)), in [-127, 127];
 * so sum_i W[r][i] x[i] ~ sum_b d_w[b] * dx[b] * sum_j q_w[j] q_x[j], the inner sum exact in
 * int32 and the outer in float32. One vl2_qx serves every matrix that multiplies the same x,
 * in both formats. Its buffer (vl2_qx_bytes, about 3.6 bytes per value) holds n rounded up to
 * VL2_QX_PAD values, zero-filled, the scales, and x rearranged for the SIMD kernels (sums of
 * x for their unsigned byte products, and Q4_0's nibble order), every array 64-byte aligned;
 * all of it is computed once per x, so that the work per weight row stays minimal. The
 * activation values must lie in [-127, 127] (vl2_quantize_x ensures it).
 *
 * ---- Kernels ------------------------------------------------------------------------------------
 * Chosen once at first use from the CPU (AVX-512 VNNI, AVX2+FMA+F16C, NEON with or without the
 * dot-product extension, or plain C); vl2_kernels_isa() names the choice. Weight pointers may
 * have any alignment (mmapped safetensors at arbitrary offsets) and are only read inside their
 * rows; the kernels also prefetch up to 8 KiB past the last row, which never faults. Row r of a Q8_0 matrix starts at qs + r * n and scales + r * (n / 32); of Q4_0 at
 * qs + r * (n / 2); pass a sub-matrix (an expert of a stacked tensor) by offsetting the
 * pointers. y is indexed by absolute row: the kernels write y[r0] .. y[r1 - 1] and nothing else.
 * Each *_ref function is the plain scalar definition the tests compare against: per block the
 * same int32 dot and float32 scale product, summed in double.
 */
#ifndef VL2_QUANT_H
#define VL2_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VL2_QBLOCK 32   /* elements per Q8_0 / Q4_0 block */
#define VL2_QX_PAD 512  /* vl2_qx pads its values to a multiple of this */

/* ---- weights --------------------------------------------------------------------------------- */

/* One row of n floats (n % 32 == 0) into n int8 + n/32 f16 scales. */
void vl2_quantize_row_q8(const float *x, int n, int8_t *qs, uint16_t *scales);
/* One row of n floats into n/2 bytes of nibbles + n/32 f16 scales. */
void vl2_quantize_row_q4(const float *x, int n, uint8_t *qs, uint16_t *scales);
void vl2_dequantize_row_q8(const int8_t *qs, const uint16_t *scales, int n, float *out);
void vl2_dequantize_row_q4(const uint8_t *qs, const uint16_t *scales, int n, float *out);

/* ---- quantized activations ------------------------------------------------------------------- */

typedef struct {
    int n;        /* values, a multiple of 32 */
    int n_pad;    /* n rounded up to VL2_QX_PAD; qs[n .. n_pad) and d[n/32 .. n_pad/32) are 0 */
    int8_t *qs;   /* n_pad int8: the quantized values */
    float *d;     /* n_pad / 32 float32 scales */
    /* Derived from qs (vl2_qx_derive), laid out for the x86 kernels:
     *   c8[i]  = -128 * (qs[4i] + .. + qs[4i + 3]), n_pad / 4 values;
     *   qs4    = qs regrouped per 4 blocks: the first 16 values of blocks 0..3, then their last
     *            16, matching Q4_0's low and high nibbles (n_pad values);
     *   c4[i]  = -8 times the sum of the 4 + 4 values of qs4 that pair with int32 lane i of
     *            the Q4_0 kernel (n_pad / 8 values). */
    int32_t *c8;
    int8_t *qs4;
    int32_t *c4;
} vl2_qx;

/* Bytes of the caller-owned buffer for an x of n values (any alignment; includes 64 bytes of
 * slack for aligning): 29 * n_pad / 8 + 64, e.g. 1280 -> 5632, 10944 -> 40896. */
size_t vl2_qx_bytes(int n);
/* Points qx into buf (vl2_qx_bytes(n) bytes); it stays valid as long as buf. */
void vl2_qx_init(vl2_qx *qx, void *buf, int n);
/* Quantizes x (qx->n floats) into qx, zeroing the padding, and derives the kernel layouts.
 * Every variant gives the same bytes. */
void vl2_quantize_x(const float *x, vl2_qx *qx);
void vl2_quantize_x_ref(const float *x, vl2_qx *qx);
/* Recomputes c8, qs4 and c4 from qs, for callers that fill qs and d themselves (tests). */
void vl2_qx_derive(vl2_qx *qx);

/* ---- matrix times vector: y[r] = sum_i W[r][i] * x[i] for r0 <= r < r1 ----------------------- */

void vl2_gemv_q8(const int8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                 const vl2_qx *x, float *y);
void vl2_gemv_q4(const uint8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                 const vl2_qx *x, float *y);
/* BF16 weights, row r at w + r * ldw (elements); any n >= 0. */
void vl2_gemv_bf16(const uint16_t *w, size_t ldw, int n, int r0, int r1, const float *x,
                   float *y);

void vl2_gemv_q8_ref(const int8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                     const vl2_qx *x, float *y);
void vl2_gemv_q4_ref(const uint8_t *qs, const uint16_t *scales, int n, int r0, int r1,
                     const vl2_qx *x, float *y);
void vl2_gemv_bf16_ref(const uint16_t *w, size_t ldw, int n, int r0, int r1, const float *x,
                       float *y);

/* ---- dispatch -------------------------------------------------------------------------------- */

/* The variant in use: "avx512-vnni", "avx2", "neon-dotprod", "neon" or "scalar". */
const char *vl2_kernels_isa(void);
/* Test hook: use the named variant from now on (NULL: the automatic choice). Returns false,
 * changing nothing, if this build or CPU lacks it. Not safe while kernels run elsewhere. */
bool vl2_kernels_force_isa(const char *name);

#endif /* VL2_QUANT_H */
