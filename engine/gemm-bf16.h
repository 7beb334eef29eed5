/* gemm-bf16.h - products with bf16 operands and float32 sums (gemm-bf16.c), the arithmetic of
 * the bf16 compute mode (VL2_COMPUTE_BF16) for the products of many rows: vision, the
 * projector, prefill. */
#ifndef VL2_GEMM_BF16_H
#define VL2_GEMM_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* True where the AVX-512 BF16 kernel runs (the CPU has it and the ISA level allows it). */
bool vl2_gemm_bf16_native(void);

/* xb[t][k] = bf16(x[t][k]) for k < K, rounded to nearest even, zero for K <= k < ldb; threaded
 * over rows on the pool. ldb is even. */
void vl2_bf16_round_rows(vl2_pool *pool, const float *x, int T, size_t ldx, int K, uint16_t *xb,
                         size_t ldb);

/* x for the AVX-512 BF16 kernel: rounded to bf16 and packed in groups of 16 tokens, group g
 * holding vl2_bf16_pairs(K) vectors of 16 words, word i of vector kp being the pair of k-values
 * (2kp, 2kp + 1) of token 16g + i (zero past T and K). xp holds ceil(T / 16) groups. Threaded
 * over groups on the pool. */
static inline int vl2_bf16_pairs(int K)
{
    return (K + 31) / 32 * 16;
}
void vl2_bf16_pack_x(vl2_pool *pool, const float *x, int T, size_t ldx, int K, uint32_t *xp);

/* One tile of y = bias + x W^T from packed x: tokens [t0, t1) (t0 a multiple of 16), outputs
 * [o0, o1), single-threaded, on the AVX-512 BF16 kernel. False if it cannot run (no such kernel
 * here, or out of memory), y untouched. */
bool vl2_gemm_bf16_tile(const vl2_matrix *w, const vl2_tensor *bias, const uint32_t *xp,
                        int t0, int t1, int o0, int o1, float *y, size_t ldy);

/* What the mode computes, in double: the reference the tests hold the kernel to. */
void vl2_gemm_bf16_ref(const vl2_matrix *w, const vl2_tensor *bias, const float *x, int T,
                       size_t ldx, float *y, size_t ldy);

#endif
