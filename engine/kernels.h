/* kernels.h - the numeric building blocks and the worker pool (kernels.c, threads.c).
 *
 * All activations are float32, row-major. Weights stay in their checkpoint dtype (BF16, F16 or
 * F32) inside the mapping and are widened on the fly. Every kernel has a plain scalar reference
 * (the *_ref functions) that the tests compare the fast paths against.
 */
#ifndef VL2_KERNELS_H
#define VL2_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vl2-private.h"

/* ---- worker pool ---------------------------------------------------------------------------- */

typedef struct vl2_pool vl2_pool;
typedef void (*vl2_task_fn)(void *ctx, int task, int thread);

vl2_pool *vl2_pool_new(int n_threads);
void vl2_pool_free(vl2_pool *pool);
int vl2_pool_size(const vl2_pool *pool);
/* Runs fn(ctx, i, thread) for i in [0, n_tasks) on the pool; thread is in [0, size). */
void vl2_pool_run(vl2_pool *pool, int n_tasks, vl2_task_fn fn, void *ctx);
/* Runs fn(ctx, r0, r1) over [0, n_rows) in about four ranges a thread: the row-wise steps
 * between the products (norms, residual adds, activations), which serial would cap how far a
 * forward pass scales with threads. */
typedef void (*vl2_rows_fn)(void *ctx, int r0, int r1);
void vl2_pool_rows(vl2_pool *pool, int n_rows, vl2_rows_fn fn, void *ctx);
/* The arithmetic of the products of many rows run on the pool (vl2_matmul with T > 8): float32
 * (the default, and always for a NULL pool) or bf16 operands with float32 sums. */
void vl2_pool_set_compute(vl2_pool *pool, vl2_compute compute);
vl2_compute vl2_pool_compute(const vl2_pool *pool);

/* Memory borrowed for the duration of a task, from the buffer the pool keeps for thread
 * `thread` (a task's), or for the thread dispatching jobs (VL2_POOL_CALLER, around a
 * vl2_pool_run). The buffer only grows, so work of a steady shape (decoding) allocates
 * nothing. One borrower per buffer at a time: a task must release it before it returns, and a
 * caller before it borrows the caller's buffer again. With a NULL pool the memory is allocated
 * (and freed on release). 64-byte aligned; NULL when out of memory. */
#define VL2_POOL_CALLER (-1)
typedef struct vl2_scratch {
    void *p;
    bool owned;
} vl2_scratch;
void *vl2_scratch_get(vl2_pool *pool, int thread, size_t bytes, vl2_scratch *s);
void vl2_scratch_release(vl2_scratch *s);
/* Grows every thread's buffer (not the caller's) to at least `bytes` now, between jobs: which
 * thread runs which task varies from job to job, and a thread that first meets a large task
 * while decoding would otherwise allocate then. false when out of memory. */
bool vl2_pool_reserve(vl2_pool *pool, size_t bytes);

/* ---- conversions ----------------------------------------------------------------------------- */

static inline float vl2_bf16_to_f32(uint16_t b)
{
    union { uint32_t u; float f; } v = { (uint32_t)b << 16 };
    return v.f;
}

/* float32 -> bfloat16, round to nearest even; a nan stays a nan. */
static inline uint16_t vl2_f32_to_bf16(float f)
{
    union { float f; uint32_t u; } v = { f };
    return (v.u & 0x7fffffff) > 0x7f800000 ? (uint16_t)((v.u >> 16) | 0x40)
                                           : (uint16_t)((v.u + 0x7fff + ((v.u >> 16) & 1)) >> 16);
}

float vl2_f16_to_f32(uint16_t h);
/* float32 -> IEEE half, round to nearest even; overflow gives infinity. */
uint16_t vl2_f32_to_f16(float f);
/* Rows of float32 to and from IEEE half (F16C where the CPU has it) and to bfloat16, rounding to
 * nearest even: the KV cache's storage. */
void vl2_f32_to_f16_row(const float *src, uint16_t *dst, size_t n);
void vl2_f16_to_f32_row(const uint16_t *src, float *dst, size_t n);
void vl2_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n);

/* Widens n elements of `src` (dtype t) starting at element `offset` to float32. */
void vl2_to_f32(const void *src, vl2_dtype t, size_t offset, size_t n, float *dst);

/* Row `row` of a 2-D tensor as float32 (embedding lookup). */
void vl2_tensor_row(const vl2_tensor *t, int64_t row, float *dst);

/* ---- attention over KV cache rows (n values each, `stride` values apart) ------------------- */

/* out[i] = dot(q, row i), or out[i] += it with `add`. */
void vl2_dot_rows(const float *q, const void *rows, vl2_kv_type t, size_t stride, int n_rows,
                  int n, float *out, bool add);
/* o += sum_i w[i] * row i. */
void vl2_attend_rows(const float *w, const void *rows, vl2_kv_type t, size_t stride, int n_rows,
                     int n, float *o);

/* ---- matrix products ------------------------------------------------------------------------- */

/* A weight matrix view: n_out rows of n_in elements, row r at element (first + r * stride). */
typedef struct vl2_matrix {
    const void *data;
    vl2_dtype dtype;
    int n_out, n_in;
    size_t first, stride;        /* in elements (quantized: values, a multiple of 32) */
    const uint16_t *scales;      /* Q8_0 / Q4_0: block scales of the whole tensor */
} vl2_matrix;

/* n weights of W's row r from element k0 as float32 (any dtype, quantized included). */
void vl2_weight_segment(const vl2_matrix *w, int r, int k0, int n, float *dst);

vl2_matrix vl2_matrix_of(const vl2_tensor *t);

/* y[t][o] = bias[o] + sum_i x[t][i] * W[o][i] for t < T; x rows ldx apart, y rows ldy apart.
 * bias may be NULL. Threads over output rows (and tokens for large T). */
void vl2_matmul(vl2_pool *pool, const vl2_matrix *w, const vl2_tensor *bias, const float *x,
                int T, size_t ldx, float *y, size_t ldy);
/* One product of a batch for vl2_matmul_multi. */
typedef struct vl2_mm_item {
    vl2_matrix w;
    const vl2_tensor *bias;      /* or NULL */
    const float *x;
    int T;
    size_t ldx;
    float *y;
    size_t ldy;
} vl2_mm_item;

/* Runs independent products in one dispatch of the pool (the ones with many rows of x each on
 * its own). For decoding, where a product is small and waking the threads is not. */
void vl2_matmul_multi(vl2_pool *pool, const vl2_mm_item *items, int n_items);

/* Shorthand for a whole tensor with dense x and y. */
void vl2_linear(vl2_pool *pool, const vl2_tensor *w, const vl2_tensor *bias, const float *x, int T,
                float *y);
/* vl2_linear in the given arithmetic rather than the pool's (pool NULL: on the calling thread,
 * e.g. inside a pool's task). */
void vl2_linear_as(vl2_pool *pool, vl2_compute compute, const vl2_tensor *w,
                   const vl2_tensor *bias, const float *x, int T, float *y);
void vl2_matmul_ref(const vl2_matrix *w, const vl2_tensor *bias, const float *x, int T, size_t ldx,
                    float *y, size_t ldy);

/* ---- elementwise and row kernels ------------------------------------------------------------- */

/* out = w * x / sqrt(mean(x^2) + eps), DeepseekV2RMSNorm */
void vl2_rmsnorm(const float *x, const vl2_tensor *w, int n, float eps, float *out);
void vl2_softmax(float *x, int n);
float vl2_silu(float x);
float vl2_sigmoid(float x);
/* out = (x - mean) / sqrt(var + eps) * w + b, torch.nn.LayerNorm; out may be x */
void vl2_layernorm(const float *x, const vl2_tensor *w, const vl2_tensor *b, int n, float eps,
                   float *out);
/* In place: GELU with the tanh approximation (the ViT) and the exact erf form (projector). */
void vl2_gelu_tanh(float *x, size_t n);
/* x[i] = e^x[i], relative error below 2.5e-7 (a polynomial, vectorised) */
void vl2_exp_inplace(float *x, size_t n);
void vl2_gelu_erf(float *x, size_t n);
/* out[i] = silu(gate[i]) * up[i] */
void vl2_swiglu(const float *gate, const float *up, int n, float *out);
float vl2_dot(const float *a, const float *b, int n);
/* y += a * x */
void vl2_axpy(float a, const float *x, int n, float *y);
/* Rows of weights in their own dtype, element `offset` onwards:
 * vl2_dot_w = sum_i w[i] * x[i];  vl2_axpy_w: y[i] += a * w[i]. */
float vl2_dot_w(const void *w, vl2_dtype t, size_t offset, const float *x, int n);
void vl2_axpy_w(float a, const void *w, vl2_dtype t, size_t offset, int n, float *y);

#endif /* VL2_KERNELS_H */
