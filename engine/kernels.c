/* kernels.c - matrix products and the small row kernels of the decoder.
 *
 * vl2_matmul is the one hot spot: y = x W^T with W in the checkpoint's dtype. Two shapes of
 * work reach it. Decoding (a handful of rows of x) is bound by reading W once, so each task
 * owns a band of output rows and streams its weights through a widening dot product that the
 * compiler vectorises (built for AVX-512, AVX2 and baseline, chosen at run time: isa.h).
 * Prefill and vision (many rows of x) are bound by arithmetic, so each task widens a block of
 * W rows to float32 and hands the block to OpenBLAS's sgemm, single-threaded inside the task.
 * Every path sums in float32 like the reference; only the order of additions differs.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm-bf16.h"
#include "isa.h"
#include "kernels.h"
#include "quant.h"

/* The loops the compiler vectorises are built at each x86-64 level (isa.h): NAME_body is
 * inlined into NAME_v4 and NAME_v3, compiled for those levels, and NAME calls the one that
 * vl2_isa_level() allows. Elsewhere NAME is the body alone. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VL2_BODY static inline __attribute__((always_inline))
#define VL2_MULTI(storage, ret, name, params, args)                                         \
    __attribute__((target("arch=x86-64-v4"))) static ret name##_v4 params                \
    {                                                                                     \
        return name##_body args;                                                          \
    }                                                                                     \
    __attribute__((target("arch=x86-64-v3"))) static ret name##_v3 params                \
    {                                                                                     \
        return name##_body args;                                                          \
    }                                                                                     \
    storage ret name params                                                               \
    {                                                                                     \
        switch (vl2_isa_level()) {                                                        \
        case VL2_ISA_V4:                                                                  \
            return name##_v4 args;                                                        \
        case VL2_ISA_V3:                                                                  \
            return name##_v3 args;                                                        \
        default:                                                                          \
            return name##_body args;                                                      \
        }                                                                                 \
    }
#else
#define VL2_BODY static inline
#define VL2_MULTI(storage, ret, name, params, args)                                         \
    storage ret name params                                                               \
    {                                                                                     \
        return name##_body args;                                                          \
    }
#endif

/* Products with at most this many rows of x use the streaming dot-product path. */
#define SMALL_T 8
/* Rows of W widened per sgemm call: large blocks make fewer, bigger sgemm calls (each one
 * packs the whole of x again), small ones balance the threads; about four blocks a thread. */
#define GEMM_BLOCK_MIN 64
#define GEMM_BLOCK_MAX 256
/* With one thread (or a NULL pool, as prefill's experts use), the widened block's bytes. */
#define GEMM_SOLO_BYTES ((size_t)16 << 20)

/* ---------------------------------------------------------------------------------------------
 * Conversions
 */

float vl2_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        /* zero or subnormal: value = mant * 2^-24 */
        float f = (float)mant * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    if (exp == 31)
        v.u = sign | 0x7f800000u | (mant << 13);
    else
        v.u = sign | ((exp + 112) << 23) | (mant << 13);
    return v.f;
}

/* float32 -> IEEE half, round to nearest even; overflow gives infinity, tiny values
 * subnormals or zero. */
uint16_t vl2_f32_to_f16(float f)
{
    union { float f; uint32_t u; } v = { f };
    uint32_t sign = (v.u >> 16) & 0x8000, abs = v.u & 0x7fffffff;
    if (abs >= 0x7f800000) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0));
    if (abs >= 0x477ff000) /* rounds to beyond 65504 */
        return (uint16_t)(sign | 0x7c00);
    if (abs < 0x38800000) { /* below the smallest normal half: a subnormal */
        union { uint32_t u; float f; } a = { abs };
        float scaled = a.f * 16777216.0f; /* 2^24: subnormal units */
        return (uint16_t)(sign | (uint32_t)__builtin_rintf(scaled));
    }
    uint32_t mant = abs & 0x7fffff, exp = (abs >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx2,f16c"))) static void f32_to_f16_row_f16c(const float *src,
                                                                     uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        dst[i] = vl2_f32_to_f16(src[i]);
}

__attribute__((target("avx2,f16c"))) static void f16_to_f32_row_f16c(const uint16_t *src,
                                                                     float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = vl2_f16_to_f32(src[i]);
}

/* x86-64-v3 and up have F16C and AVX2 */
static bool have_f16c(void)
{
    return vl2_isa_level() >= VL2_ISA_V3;
}
#endif

void vl2_f32_to_f16_row(const float *src, uint16_t *dst, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_f16c()) {
        f32_to_f16_row_f16c(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = vl2_f32_to_f16(src[i]);
}

void vl2_f16_to_f32_row(const uint16_t *src, float *dst, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_f16c()) {
        f16_to_f32_row_f16c(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = vl2_f16_to_f32(src[i]);
}

VL2_BODY void vl2_f32_to_bf16_row_body(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = vl2_f32_to_bf16(src[i]);
}
VL2_MULTI(, void, vl2_f32_to_bf16_row, (const float *src, uint16_t *dst, size_t n), (src, dst, n))

VL2_BODY void vl2_to_f32_body(const void *src, vl2_dtype t, size_t offset, size_t n, float *dst)
{
    switch (t) {
    case VL2_DTYPE_F32:
        memcpy(dst, (const float *)src + offset, n * sizeof(float));
        break;
    case VL2_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)src + offset;
        for (size_t i = 0; i < n; i++)
            dst[i] = vl2_bf16_to_f32(s[i]);
        break;
    }
    case VL2_DTYPE_F16:
        vl2_f16_to_f32_row((const uint16_t *)src + offset, dst, n);
        break;
    default:
        /* weights.c admits only the three float dtypes */
        memset(dst, 0, n * sizeof(float));
        break;
    }
}
VL2_MULTI(, void, vl2_to_f32, (const void *src, vl2_dtype t, size_t offset, size_t n, float *dst),
          (src, t, offset, n, dst))

void vl2_tensor_row(const vl2_tensor *t, int64_t row, float *dst)
{
    size_t n = (size_t)(t->n_elements / t->shape[0]);
    vl2_to_f32(t->data, t->dtype, (size_t)row * n, n, dst);
}

vl2_matrix vl2_matrix_of(const vl2_tensor *t)
{
    int n_out = (int)t->shape[0], n_in = (int)(t->n_elements / t->shape[0]);
    vl2_matrix m = { t->data, t->dtype, n_out, n_in, 0, (size_t)n_in, t->scales };
    return m;
}

/* ---------------------------------------------------------------------------------------------
 * Dot products, widening on the fly
 */

VL2_BODY float dot_f32_body(const float *w, const float *x, int n)
{
    float acc[16] = { 0 };
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            acc[k] += w[i + k] * x[i + k];
    float s = 0;
    for (; i < n; i++)
        s += w[i] * x[i];
    for (int k = 0; k < 16; k++)
        s += acc[k];
    return s;
}
VL2_MULTI(static, float, dot_f32, (const float *w, const float *x, int n), (w, x, n))

VL2_BODY float dot_bf16_body(const uint16_t *w, const float *x, int n)
{
    float acc[16] = { 0 };
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            acc[k] += vl2_bf16_to_f32(w[i + k]) * x[i + k];
    float s = 0;
    for (; i < n; i++)
        s += vl2_bf16_to_f32(w[i]) * x[i];
    for (int k = 0; k < 16; k++)
        s += acc[k];
    return s;
}
VL2_MULTI(static, float, dot_bf16, (const uint16_t *w, const float *x, int n), (w, x, n))

float vl2_dot(const float *a, const float *b, int n)
{
    return dot_f32(a, b, n);
}

VL2_BODY void vl2_axpy_body(float a, const float *x, int n, float *y)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}
VL2_MULTI(, void, vl2_axpy, (float a, const float *x, int n, float *y), (a, x, n, y))

float vl2_dot_w(const void *w, vl2_dtype t, size_t offset, const float *x, int n)
{
    if (t == VL2_DTYPE_BF16)
        return dot_bf16((const uint16_t *)w + offset, x, n);
    if (t == VL2_DTYPE_F32)
        return dot_f32((const float *)w + offset, x, n);
    float s = 0;
    for (int i = 0; i < n; i++)
        s += vl2_f16_to_f32(((const uint16_t *)w)[offset + (size_t)i]) * x[i];
    return s;
}

VL2_BODY void vl2_axpy_w_body(float a, const void *w, vl2_dtype t, size_t offset, int n, float *y)
{
    if (t == VL2_DTYPE_BF16) {
        const uint16_t *p = (const uint16_t *)w + offset;
        for (int i = 0; i < n; i++)
            y[i] += a * vl2_bf16_to_f32(p[i]);
    } else if (t == VL2_DTYPE_F32) {
        const float *p = (const float *)w + offset;
        for (int i = 0; i < n; i++)
            y[i] += a * p[i];
    } else {
        const uint16_t *p = (const uint16_t *)w + offset;
        for (int i = 0; i < n; i++)
            y[i] += a * vl2_f16_to_f32(p[i]);
    }
}
VL2_MULTI(, void, vl2_axpy_w, (float a, const void *w, vl2_dtype t, size_t offset, int n, float *y),
          (a, w, t, offset, n, y))

/* ---------------------------------------------------------------------------------------------
 * vl2_matmul
 */

typedef struct {
    vl2_pool *pool;              /* whose thread scratch the tasks borrow */
    const vl2_matrix *w;
    const vl2_tensor *bias;
    const float *x;
    int T;
    size_t ldx;
    float *y;
    size_t ldy;
    int rows_per_task;
    const vl2_qx *qx;            /* quantized weights: x's T rows quantized, else NULL */
    bool bf16_w;                 /* the bf16 mode: W's values rounded to bf16 as widened */
} mm_job;

static bool is_quantized(vl2_dtype t)
{
    return t == VL2_DTYPE_Q8_0 || t == VL2_DTYPE_Q4_0;
}

/* Weights of row r from element k0, n of them, as float32 (any dtype, quantized included). */
void vl2_weight_segment(const vl2_matrix *w, int r, int k0, int n, float *dst)
{
    size_t el = w->first + (size_t)r * w->stride + (size_t)k0;
    if (w->dtype == VL2_DTYPE_Q8_0)
        vl2_dequantize_row_q8((const int8_t *)w->data + el, w->scales + el / VL2_QBLOCK, n, dst);
    else if (w->dtype == VL2_DTYPE_Q4_0)
        vl2_dequantize_row_q4((const uint8_t *)w->data + el / 2, w->scales + el / VL2_QBLOCK, n,
                              dst);
    else
        vl2_to_f32(w->data, w->dtype, el, (size_t)n, dst);
}

/* Bytes that quantize_rows needs for T rows of n values. */
static size_t quantized_rows_bytes(int T, int n)
{
    return (size_t)T * (sizeof(vl2_qx) + vl2_qx_bytes(n));
}

/* x's rows quantized for the integer kernels, into mem (quantized_rows_bytes of it). */
static vl2_qx *quantize_rows(const float *x, int T, size_t ldx, int n, void *mem)
{
    size_t each = vl2_qx_bytes(n);
    vl2_qx *qx = mem;
    char *buf = (char *)(qx + T);
    for (int t = 0; t < T; t++) {
        vl2_qx_init(&qx[t], buf + (size_t)t * each, n);
        vl2_quantize_x(x + (size_t)t * ldx, &qx[t]);
    }
    return qx;
}

/* What a product that could not get memory leaves: NaN outputs, which the decoder reports as
 * non-finite logits rather than a plausible wrong answer. */
static void poison_rows(float *y, int T, size_t ldy, int n_out)
{
    for (int t = 0; t < T; t++)
        for (int o = 0; o < n_out; o++)
            y[(size_t)t * ldy + o] = NAN;
}

static const void *row_ptr(const vl2_matrix *w, int r)
{
    size_t el = w->first + (size_t)r * w->stride;
    return (const uint8_t *)w->data + el * vl2_dtype_size(w->dtype);
}

static float bias_at(const vl2_tensor *b, int o)
{
    if (!b)
        return 0.0f;
    float v;
    vl2_to_f32(b->data, b->dtype, (size_t)o, 1, &v);
    return v;
}

/* Few rows of x: stream each weight row once, through the matrix-vector kernels of quant.c
 * for bf16 and quantized weights. */
static void mm_small_task(void *ctx, int task, int thread)
{
    mm_job *j = ctx;
    const vl2_matrix *w = j->w;
    int r0 = task * j->rows_per_task;
    int r1 = r0 + j->rows_per_task < w->n_out ? r0 + j->rows_per_task : w->n_out;
    if (r0 >= r1)
        return;
    if (is_quantized(w->dtype) || w->dtype == VL2_DTYPE_BF16) {
        for (int t = 0; t < j->T; t++) {
            float *y = j->y + (size_t)t * j->ldy;
            if (w->dtype == VL2_DTYPE_Q8_0)
                vl2_gemv_q8((const int8_t *)w->data + w->first, w->scales + w->first / VL2_QBLOCK,
                            w->n_in, r0, r1, &j->qx[t], y);
            else if (w->dtype == VL2_DTYPE_Q4_0)
                vl2_gemv_q4((const uint8_t *)w->data + w->first / 2,
                            w->scales + w->first / VL2_QBLOCK, w->n_in, r0, r1, &j->qx[t], y);
            else
                vl2_gemv_bf16((const uint16_t *)w->data + w->first, w->stride, w->n_in, r0, r1,
                              j->x + (size_t)t * j->ldx, y);
            if (j->bias)
                for (int r = r0; r < r1; r++)
                    y[r] += bias_at(j->bias, r);
        }
        return;
    }
    vl2_scratch mem;
    float *tmp = vl2_scratch_get(j->pool, thread, (size_t)w->n_in * sizeof(float), &mem);
    if (!tmp) {
        for (int t = 0; t < j->T; t++)
            poison_rows(j->y + (size_t)t * j->ldy + r0, 1, 0, r1 - r0);
        return;
    }
    for (int r = r0; r < r1; r++) {
        float b = bias_at(j->bias, r);
        const float *wf;
        if (w->dtype == VL2_DTYPE_F32) {
            wf = row_ptr(w, r);
        } else {
            vl2_weight_segment(w, r, 0, w->n_in, tmp);
            wf = tmp;
        }
        for (int t = 0; t < j->T; t++)
            j->y[(size_t)t * j->ldy + r] = b + dot_f32(wf, j->x + (size_t)t * j->ldx, w->n_in);
    }
    vl2_scratch_release(&mem);
}

/* Many rows of x: widen a block of W and let sgemm do the arithmetic. */
static void mm_gemm_task(void *ctx, int task, int thread)
{
    mm_job *j = ctx;
    const vl2_matrix *w = j->w;
    int r0 = task * j->rows_per_task;
    int nb = r0 + j->rows_per_task < w->n_out ? j->rows_per_task : w->n_out - r0;
    const float *wb = NULL;
    vl2_scratch mem = { 0 };
    if (w->dtype == VL2_DTYPE_F32 && w->stride == (size_t)w->n_in && !j->bf16_w) {
        wb = row_ptr(w, r0);
    } else {
        float *tmp = vl2_scratch_get(j->pool, thread,
                                     (size_t)nb * (size_t)w->n_in * sizeof(float), &mem);
        if (!tmp) {
            poison_rows(j->y + r0, j->T, j->ldy, nb);
            return;
        }
        for (int r = 0; r < nb; r++)
            vl2_weight_segment(w, r0 + r, 0, w->n_in, tmp + (size_t)r * (size_t)w->n_in);
        if (j->bf16_w && w->dtype != VL2_DTYPE_BF16)
            for (size_t i = 0; i < (size_t)nb * (size_t)w->n_in; i++)
                tmp[i] = vl2_bf16_to_f32(vl2_f32_to_bf16(tmp[i]));
        wb = tmp;
    }
    /* gcc cannot see through the dispatch that vl2_to_f32 filled tmp */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, nb, w->n_in, 1.0f, j->x,
                (int)j->ldx, wb, w->n_in, 0.0f, j->y + r0, (int)j->ldy);
#pragma GCC diagnostic pop
    if (j->bias)
        for (int r = 0; r < nb; r++) {
            float b = bias_at(j->bias, r0 + r);
            for (int t = 0; t < j->T; t++)
                j->y[(size_t)t * j->ldy + r0 + r] += b;
        }
    vl2_scratch_release(&mem);
}

/* The bf16 mode's products on AVX-512 BF16 (gemm-bf16.c): x is packed once, then tiles of
 * tokens x outputs run on the pool. A tile keeps its tokens' packed x in L2 (at most
 * BF16_X_BYTES) while each group of 12 weight rows, read once from memory into L1, meets all of
 * them. Tiles split the outputs first (W is then read once in all), in groups of 12, into at
 * least four tiles a thread, and the tokens only when L2 asks for it: 16 threads on a
 * 1152-output product of 729 tokens (K = 1152, 1.6 MiB of packed x) make 3 token blocks x 22
 * output blocks of 60 outputs. */
#define BF16_X_BYTES (384 * 1024)

typedef struct {
    const vl2_matrix *w;
    const vl2_tensor *bias;
    const uint32_t *xp;
    int T, mb, nb, n_m;
    float *y;
    size_t ldy;
    atomic_bool failed;
} bf16_job;

static void bf16_task(void *ctx, int task, int thread)
{
    bf16_job *j = ctx;
    int t0 = (task % j->n_m) * j->mb, o0 = (task / j->n_m) * j->nb;
    if (!vl2_gemm_bf16_tile(j->w, j->bias, j->xp, t0, MIN(j->T, t0 + j->mb), o0,
                            MIN(j->w->n_out, o0 + j->nb), j->y, j->ldy))
        atomic_store(&j->failed, true);
}

static void matmul_f32(vl2_pool *pool, const vl2_matrix *w, const vl2_tensor *bias,
                       const float *x, int T, size_t ldx, float *y, size_t ldy, bool bf16_w);

/* bf16 operands, float32 sums: the AVX-512 BF16 tiles on x packed once; elsewhere the float32
 * kernels on x rounded to bf16, which is the same arithmetic (gemm-bf16.c). */
static bool matmul_bf16(vl2_pool *pool, const vl2_matrix *w, const vl2_tensor *bias,
                        const float *x, int T, size_t ldx, float *y, size_t ldy)
{
    const int K = w->n_in, n_threads = vl2_pool_size(pool);
    if (vl2_gemm_bf16_native()) {
        const size_t group_bytes = (size_t)vl2_bf16_pairs(K) * 16 * sizeof(uint32_t);
        uint32_t *xp = aligned_alloc(64, (size_t)((T + 15) / 16) * group_bytes);
        if (!xp)
            return false;
        vl2_bf16_pack_x(pool, x, T, ldx, K, xp);
        /* token blocks of whole 64-token steps of the kernel (4 groups), as many as fit */
        const int groups = (T + 15) / 16;
        const int fit = MAX(4, (int)(BF16_X_BYTES / group_bytes) / 4 * 4);
        int n_m = (groups + fit - 1) / fit;
        const int mb = ((groups + n_m - 1) / n_m + 3) / 4 * 64;
        n_m = (T + mb - 1) / mb;
        const int want = 4 * n_threads, n_groups = (w->n_out + 11) / 12;
        const int n_n = MIN(n_groups, MAX(1, (want + n_m - 1) / n_m));
        const int nb = (n_groups + n_n - 1) / n_n * 12;
        bf16_job j = { w, bias, xp, T, mb, nb, n_m, y, ldy, false };
        vl2_pool_run(pool, n_m * ((w->n_out + nb - 1) / nb), bf16_task, &j);
        free(xp);
        if (!atomic_load(&j.failed))
            return true;
    }
    const size_t ldb = ((size_t)K + 31) / 32 * 32;
    uint16_t *xb = aligned_alloc(64, (size_t)T * ldb * sizeof(uint16_t));
    float *xr = malloc((size_t)T * (size_t)K * sizeof(float));
    if (!xb || !xr) {
        free(xb);
        free(xr);
        return false;
    }
    vl2_bf16_round_rows(pool, x, T, ldx, K, xb, ldb);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++)
            xr[(size_t)t * K + k] = vl2_bf16_to_f32(xb[(size_t)t * ldb + k]);
    matmul_f32(pool, w, bias, xr, T, (size_t)K, y, ldy, true);
    free(xr);
    free(xb);
    return true;
}

static void matmul_as(vl2_pool *pool, vl2_compute compute, const vl2_matrix *w,
                      const vl2_tensor *bias, const float *x, int T, size_t ldx, float *y,
                      size_t ldy)
{
    if (T <= 0 || w->n_out <= 0)
        return;
    if (T > SMALL_T && compute == VL2_COMPUTE_BF16 && matmul_bf16(pool, w, bias, x, T, ldx, y, ldy))
        return;
    matmul_f32(pool, w, bias, x, T, ldx, y, ldy, false);
}

void vl2_matmul(vl2_pool *pool, const vl2_matrix *w, const vl2_tensor *bias, const float *x,
                int T, size_t ldx, float *y, size_t ldy)
{
    matmul_as(pool, vl2_pool_compute(pool), w, bias, x, T, ldx, y, ldy);
}

void vl2_linear_as(vl2_pool *pool, vl2_compute compute, const vl2_tensor *w,
                   const vl2_tensor *bias, const float *x, int T, float *y)
{
    vl2_matrix m = vl2_matrix_of(w);
    matmul_as(pool, compute, &m, bias, x, T, (size_t)m.n_in, y, (size_t)m.n_out);
}

/* float32 arithmetic; with bf16_w (the bf16 mode's fallback, T > SMALL_T) W's values are rounded
 * to bf16 as they are widened. */
static void matmul_f32(vl2_pool *pool, const vl2_matrix *w, const vl2_tensor *bias,
                       const float *x, int T, size_t ldx, float *y, size_t ldy, bool bf16_w)
{
    mm_job j = { pool, w, bias, x, T, ldx, y, ldy, 0, NULL, bf16_w };
    int n_threads = vl2_pool_size(pool);
    if (T > SMALL_T) {
        int block = (w->n_out / (4 * n_threads) + 15) / 16 * 16;
        block = block < GEMM_BLOCK_MIN ? GEMM_BLOCK_MIN : block > GEMM_BLOCK_MAX ? GEMM_BLOCK_MAX
                                                                                 : block;
        if (n_threads == 1) {
            /* nothing to balance: as few sgemm calls as the widened block's memory allows */
            size_t fit = GEMM_SOLO_BYTES / ((size_t)w->n_in * sizeof(float));
            block = fit >= (size_t)w->n_out ? w->n_out : fit < GEMM_BLOCK_MIN ? GEMM_BLOCK_MIN
                                                                                : (int)fit;
        }
        j.rows_per_task = block;
        vl2_pool_run(pool, (w->n_out + block - 1) / block, mm_gemm_task, &j);
        return;
    }
    /* About four bands per thread so that uneven progress evens out. */
    int rows = (w->n_out + 4 * n_threads - 1) / (4 * n_threads);
    if (rows < 16)
        rows = 16;
    j.rows_per_task = rows;
    vl2_scratch mem = { 0 };
    if (is_quantized(w->dtype)) {
        void *buf = vl2_scratch_get(pool, VL2_POOL_CALLER, quantized_rows_bytes(T, w->n_in), &mem);
        if (!buf) {
            poison_rows(y, T, ldy, w->n_out);
            return;
        }
        j.qx = quantize_rows(x, T, ldx, w->n_in, buf);
    }
    vl2_pool_run(pool, (w->n_out + rows - 1) / rows, mm_small_task, &j);
    vl2_scratch_release(&mem);
}

/* Several small products in one dispatch: decoding runs a dozen per layer (q, k, v; the
 * experts' gate and up; their down), and waking the workers for each would cost more than the
 * arithmetic of the smaller ones. Tasks are bands of rows of any of the products, about four a
 * thread over all of them. */
#define MULTI_MAX 128

typedef struct {
    vl2_pool *pool;
    const vl2_mm_item *items;
    int n_items;
    const int *first_task;       /* [n_items + 1]: tasks of item i are [first[i], first[i + 1]) */
    const int *band;             /* rows per task of each item */
    vl2_qx **qx;                 /* quantized x of each item, or NULL */
} multi_job;

static void multi_task(void *ctx, int task, int thread)
{
    multi_job *mj = ctx;
    int i = 0;
    while (task >= mj->first_task[i + 1])
        i++;
    const vl2_mm_item *it = &mj->items[i];
    mm_job j = { mj->pool, &it->w, it->bias, it->x, it->T, it->ldx, it->y, it->ldy, mj->band[i],
                 mj->qx[i] };
    mm_small_task(&j, task - mj->first_task[i], thread);
}

void vl2_matmul_multi(vl2_pool *pool, const vl2_mm_item *items, int n_items)
{
    int small[MULTI_MAX], n_small = 0, rows = 0;
    for (int i = 0; i < n_items; i++) {
        if (items[i].T > SMALL_T || n_small == (int)G_N_ELEMENTS(small)) {
            vl2_matmul(pool, &items[i].w, items[i].bias, items[i].x, items[i].T, items[i].ldx,
                       items[i].y, items[i].ldy);
            continue;
        }
        small[n_small++] = i;
        rows += items[i].w.n_out;
    }
    if (!n_small)
        return;
    vl2_mm_item it[MULTI_MAX];
    int first[MULTI_MAX + 1], band[MULTI_MAX];
    int per_task = rows / (4 * vl2_pool_size(pool));
    per_task = per_task < 16 ? 16 : per_task;
    first[0] = 0;
    for (int k = 0; k < n_small; k++) {
        it[k] = items[small[k]];
        band[k] = per_task;
        first[k + 1] = first[k] + (it[k].w.n_out + per_task - 1) / per_task;
    }
    /* quantized weights take x quantized; products of the same x share it. Each item's rows
     * go at an offset of one buffer: sizes first, then the quantization. */
    vl2_qx *qx[MULTI_MAX] = { NULL };
    int same[MULTI_MAX];         /* the item whose quantized x item k shares, or -1 */
    size_t at[MULTI_MAX], bytes = 0;
    for (int k = 0; k < n_small; k++) {
        same[k] = -1;
        if (!is_quantized(it[k].w.dtype))
            continue;
        for (int p = 0; p < k && same[k] < 0; p++)
            if (is_quantized(it[p].w.dtype) && same[p] < 0 && it[p].x == it[k].x &&
                it[p].T == it[k].T && it[p].ldx == it[k].ldx && it[p].w.n_in == it[k].w.n_in)
                same[k] = p;
        if (same[k] < 0) {
            at[k] = bytes;
            bytes += (quantized_rows_bytes(it[k].T, it[k].w.n_in) + 63) / 64 * 64;
        }
    }
    vl2_scratch mem = { 0 };
    char *buf = bytes ? vl2_scratch_get(pool, VL2_POOL_CALLER, bytes, &mem) : NULL;
    if (bytes && !buf) {
        for (int k = 0; k < n_small; k++)
            poison_rows(it[k].y, it[k].T, it[k].ldy, it[k].w.n_out);
        return;
    }
    for (int k = 0; k < n_small; k++)
        if (is_quantized(it[k].w.dtype))
            qx[k] = same[k] >= 0 ? qx[same[k]]
                                 : quantize_rows(it[k].x, it[k].T, it[k].ldx, it[k].w.n_in,
                                                 buf + at[k]);
    multi_job mj = { pool, it, n_small, first, band, qx };
    vl2_pool_run(pool, first[n_small], multi_task, &mj);
    vl2_scratch_release(&mem);
}

void vl2_linear(vl2_pool *pool, const vl2_tensor *w, const vl2_tensor *bias, const float *x, int T,
                float *y)
{
    vl2_matrix m = vl2_matrix_of(w);
    vl2_matmul(pool, &m, bias, x, T, (size_t)m.n_in, y, (size_t)m.n_out);
}

void vl2_matmul_ref(const vl2_matrix *w, const vl2_tensor *bias, const float *x, int T, size_t ldx,
                    float *y, size_t ldy)
{
    float *row = malloc((size_t)w->n_in * sizeof(float));
    if (!row)
        return;
    for (int o = 0; o < w->n_out; o++) {
        vl2_to_f32(row_ptr(w, o), w->dtype, 0, (size_t)w->n_in, row);
        for (int t = 0; t < T; t++) {
            double s = bias_at(bias, o);
            for (int i = 0; i < w->n_in; i++)
                s += (double)row[i] * x[(size_t)t * ldx + i];
            y[(size_t)t * ldy + o] = (float)s;
        }
    }
    free(row);
}

/* ---------------------------------------------------------------------------------------------
 * Attention over cache rows: scores and weighted sums read the cache's f16 (or bf16, f32)
 * rows directly, widening in registers, and keep their accumulators in registers across rows.
 */

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static inline float hsum512(__m512 v)
{
    return _mm512_reduce_add_ps(v);
}

/* out[i] (+)= dot(q, row i) for f16 rows, n % 16 == 0. */
__attribute__((target("avx512f"))) static void dot_rows_f16_avx512(const float *q,
                                                                 const uint16_t *rows,
                                                                 size_t stride, int n_rows, int n,
                                                                 float *out, bool add)
{
    for (int i = 0; i < n_rows; i++) {
        const uint16_t *r = rows + (size_t)i * stride;
        /* the hardware prefetchers do little on some machines: ask for rows ahead */
        for (int d = 0; d < n; d += 32)
            _mm_prefetch((const char *)(r + 8 * stride + d), _MM_HINT_T0);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int d = 0;
        for (; d + 32 <= n; d += 32) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d),
                                 _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + d))), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + 16),
                                 _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + d + 16))),
                                 a1);
        }
        for (; d < n; d += 16)
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d),
                                 _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + d))), a0);
        float v = hsum512(_mm512_add_ps(a0, a1));
        out[i] = add ? out[i] + v : v;
    }
}

/* o += sum_i w[i] * row i for f16 rows, n % 16 == 0: 128 columns at a time in 8 registers. */
__attribute__((target("avx512f"))) static void attend_rows_f16_avx512(const float *w,
                                                                    const uint16_t *rows,
                                                                    size_t stride, int n_rows,
                                                                    int n, float *o)
{
    for (int d0 = 0; d0 < n; d0 += 128) {
        int nv = (n - d0 < 128 ? n - d0 : 128) / 16;
        __m512 acc[8];
        for (int k = 0; k < nv; k++)
            acc[k] = _mm512_loadu_ps(o + d0 + 16 * k);
        for (int i = 0; i < n_rows; i++) {
            const uint16_t *r = rows + (size_t)i * stride + d0;
            for (int k = 0; k < nv; k += 2)
                _mm_prefetch((const char *)(r + 8 * stride + 16 * k), _MM_HINT_T0);
            __m512 wi = _mm512_set1_ps(w[i]);
            for (int k = 0; k < nv; k++)
                acc[k] = _mm512_fmadd_ps(
                    wi, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 16 * k))), acc[k]);
        }
        for (int k = 0; k < nv; k++)
            _mm512_storeu_ps(o + d0 + 16 * k, acc[k]);
    }
}

static bool have_avx512(void)
{
    return vl2_isa_level() >= VL2_ISA_V4;
}
#endif

static float kv_value(const void *row, vl2_kv_type t, int d)
{
    switch (t) {
    case VL2_KV_F32:
        return ((const float *)row)[d];
    case VL2_KV_F16:
        return vl2_f16_to_f32(((const uint16_t *)row)[d]);
    default:
        return vl2_bf16_to_f32(((const uint16_t *)row)[d]);
    }
}

void vl2_dot_rows(const float *q, const void *rows, vl2_kv_type t, size_t stride, int n_rows,
                  int n, float *out, bool add)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (t == VL2_KV_F16 && n % 16 == 0 && have_avx512()) {
        dot_rows_f16_avx512(q, rows, stride, n_rows, n, out, add);
        return;
    }
#endif
    size_t elem = t == VL2_KV_F32 ? 4 : 2;
    for (int i = 0; i < n_rows; i++) {
        const char *r = (const char *)rows + (size_t)i * stride * elem;
        float v;
        if (t == VL2_KV_F32) {
            v = dot_f32((const float *)r, q, n);
        } else {
            float acc = 0;
            for (int d = 0; d < n; d++)
                acc += q[d] * kv_value(r, t, d);
            v = acc;
        }
        out[i] = add ? out[i] + v : v;
    }
}

void vl2_attend_rows(const float *w, const void *rows, vl2_kv_type t, size_t stride, int n_rows,
                     int n, float *o)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (t == VL2_KV_F16 && n % 16 == 0 && have_avx512()) {
        attend_rows_f16_avx512(w, rows, stride, n_rows, n, o);
        return;
    }
#endif
    size_t elem = t == VL2_KV_F32 ? 4 : 2;
    for (int i = 0; i < n_rows; i++) {
        const char *r = (const char *)rows + (size_t)i * stride * elem;
        if (t == VL2_KV_F32)
            vl2_axpy(w[i], (const float *)r, n, o);
        else
            for (int d = 0; d < n; d++)
                o[d] += w[i] * kv_value(r, t, d);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Row kernels
 */

void vl2_rmsnorm(const float *x, const vl2_tensor *w, int n, float eps, float *out)
{
    float acc[8] = { 0 };
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += x[i + k] * x[i + k];
    float ss = 0;
    for (; i < n; i++)
        ss += x[i] * x[i];
    for (int k = 0; k < 8; k++)
        ss += acc[k];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    const uint16_t *wb = w->data;
    const float *wf = w->data;
    for (i = 0; i < n; i++) {
        float wi = w->dtype == VL2_DTYPE_BF16 ? vl2_bf16_to_f32(wb[i])
                 : w->dtype == VL2_DTYPE_F32 ? wf[i]
                                             : vl2_f16_to_f32(wb[i]);
        out[i] = wi * (x[i] * r);
    }
}

void vl2_layernorm(const float *x, const vl2_tensor *w, const vl2_tensor *b, int n, float eps,
                   float *out)
{
    /* two passes in float32, as torch does on the CPU up to summation order */
    float mean = 0, var = 0;
    for (int i = 0; i < n; i++)
        mean += x[i];
    mean /= (float)n;
    for (int i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= (float)n;
    float r = 1.0f / sqrtf(var + eps);
    float wv[256], bv[256];
    for (int i0 = 0; i0 < n; i0 += 256) {
        int len = n - i0 < 256 ? n - i0 : 256;
        vl2_to_f32(w->data, w->dtype, (size_t)i0, (size_t)len, wv);
        vl2_to_f32(b->data, b->dtype, (size_t)i0, (size_t)len, bv);
        for (int i = 0; i < len; i++)
            out[i0 + i] = (x[i0 + i] - mean) * r * wv[i] + bv[i];
    }
}

/* e^x for float32 without a libm call, so that loops over arrays vectorise: x = n ln2 + r
 * with |r| <= ln2 / 2, e^r by a degree-6 polynomial (relative error below 2.5e-7 on the whole
 * range), 2^n put into the exponent bits. Below -87.3 the result is 0 (expf's subnormals
 * are flushed; -INFINITY gives 0); from about 88.4 on it is +INFINITY (expf overflows at 88.72).
 * Every caller takes the limits as they come: softmax never exceeds 0, and GELU and SiLU
 * divide by 1 + e^x, which gives their exact limits for an infinite e^x. */
static inline float exp_fast(float x)
{
    float in = x;
    x = x < -87.3f ? -87.3f : x > 88.7f ? 88.7f : x;
    float n = __builtin_rintf(x * 1.44269504088896341f) /* to nearest, ties to even */;
    float r = x - n * 0.693359375f;        /* ln2 in two parts for an exact product */
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { uint32_t u; float f; } scale = { (uint32_t)((int32_t)n + 127) << 23 };
    return in < -87.3f ? 0.0f : p * scale.f;
}

VL2_BODY void vl2_exp_inplace_body(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = exp_fast(x[i]);
}
VL2_MULTI(, void, vl2_exp_inplace, (float *x, size_t n), (x, n))

VL2_BODY void vl2_gelu_tanh_body(float *x, size_t n)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        /* tanh(y) = 1 - 2 / (e^(2y) + 1), so 0.5 v (1 + tanh y) = v - v / (e^(2y) + 1) */
        float y = k * (v + 0.044715f * v * v * v);
        x[i] = v - v / (exp_fast(2.0f * y) + 1.0f);
    }
}
VL2_MULTI(, void, vl2_gelu_tanh, (float *x, size_t n), (x, n))

void vl2_gelu_erf(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.7071067811865476f));
}

VL2_BODY void vl2_softmax_body(float *x, int n)
{
    /* the max and the sum in 16 lanes, so that the loops vectorize without reassociating */
    float mv[16], sv[16];
    for (int k = 0; k < 16; k++) {
        mv[k] = -INFINITY;
        sv[k] = 0;
    }
    int n16 = n / 16 * 16;
    for (int i = 0; i < n16; i += 16)
        for (int k = 0; k < 16; k++)
            mv[k] = x[i + k] > mv[k] ? x[i + k] : mv[k];
    float m = -INFINITY;
    for (int i = n16; i < n; i++)
        m = x[i] > m ? x[i] : m;
    for (int k = 0; k < 16; k++)
        m = mv[k] > m ? mv[k] : m;
    for (int i = 0; i < n; i++)
        x[i] = exp_fast(x[i] - m);
    for (int i = 0; i < n16; i += 16)
        for (int k = 0; k < 16; k++)
            sv[k] += x[i + k];
    float s = 0;
    for (int i = n16; i < n; i++)
        s += x[i];
    for (int k = 0; k < 16; k++)
        s += sv[k];
    float inv = 1.0f / s;
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}
VL2_MULTI(, void, vl2_softmax, (float *x, int n), (x, n))

float vl2_sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

float vl2_silu(float x)
{
    return x / (1.0f + expf(-x));
}

VL2_BODY void vl2_swiglu_body(const float *gate, const float *up, int n, float *out)
{
    for (int i = 0; i < n; i++)
        out[i] = gate[i] / (1.0f + exp_fast(-gate[i])) * up[i];
}
VL2_MULTI(, void, vl2_swiglu, (const float *gate, const float *up, int n, float *out),
          (gate, up, n, out))
