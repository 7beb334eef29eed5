/* kernels.c - matrix products and the small row kernels of the decoder.
 *
 * vl2_matmul is the one hot spot: y = x W^T with W in the checkpoint's dtype. Two shapes of
 * work reach it. Decoding (a handful of rows of x) is bound by reading W once, so each task
 * owns a band of output rows and streams its weights through a widening dot product that the
 * compiler vectorises (target_clones picks AVX-512, AVX2 or baseline at run time). Prefill
 * and vision (many rows of x) are bound by arithmetic, so each task widens a block of W rows
 * to float32 and hands the block to OpenBLAS's sgemm, single-threaded inside the task.
 * Every path sums in float32 like the reference; only the order of additions differs.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define VL2_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VL2_CLONES
#endif

/* Products with at most this many rows of x use the streaming dot-product path. */
#define SMALL_T 8
/* Rows of W widened per sgemm call. */
#define GEMM_BLOCK 64

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

VL2_CLONES
void vl2_to_f32(const void *src, vl2_dtype t, size_t offset, size_t n, float *dst)
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
    case VL2_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)src + offset;
        for (size_t i = 0; i < n; i++)
            dst[i] = vl2_f16_to_f32(s[i]);
        break;
    }
    default:
        /* weights.c admits only the three float dtypes */
        memset(dst, 0, n * sizeof(float));
        break;
    }
}

void vl2_tensor_row(const vl2_tensor *t, int64_t row, float *dst)
{
    size_t n = (size_t)(t->n_elements / t->shape[0]);
    vl2_to_f32(t->data, t->dtype, (size_t)row * n, n, dst);
}

vl2_matrix vl2_matrix_of(const vl2_tensor *t)
{
    int n_out = (int)t->shape[0], n_in = (int)(t->n_elements / t->shape[0]);
    vl2_matrix m = { t->data, t->dtype, n_out, n_in, 0, (size_t)n_in };
    return m;
}

/* ---------------------------------------------------------------------------------------------
 * Dot products, widening on the fly
 */

VL2_CLONES
static float dot_f32(const float *w, const float *x, int n)
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

VL2_CLONES
static float dot_bf16(const uint16_t *w, const float *x, int n)
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

float vl2_dot(const float *a, const float *b, int n)
{
    return dot_f32(a, b, n);
}

VL2_CLONES
void vl2_axpy(float a, const float *x, int n, float *y)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

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

VL2_CLONES
void vl2_axpy_w(float a, const void *w, vl2_dtype t, size_t offset, int n, float *y)
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

/* ---------------------------------------------------------------------------------------------
 * vl2_matmul
 */

typedef struct {
    const vl2_matrix *w;
    const vl2_tensor *bias;
    const float *x;
    int T;
    size_t ldx;
    float *y;
    size_t ldy;
    int rows_per_task;
} mm_job;

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

/* Few rows of x: stream each weight row once. */
static void mm_small_task(void *ctx, int task, int thread)
{
    mm_job *j = ctx;
    const vl2_matrix *w = j->w;
    int r0 = task * j->rows_per_task;
    int r1 = r0 + j->rows_per_task < w->n_out ? r0 + j->rows_per_task : w->n_out;
    float *tmp = NULL;
    if (w->dtype != VL2_DTYPE_BF16 || j->T > 1)
        tmp = malloc((size_t)w->n_in * sizeof(float));
    for (int r = r0; r < r1; r++) {
        const void *row = row_ptr(w, r);
        float b = bias_at(j->bias, r);
        if (w->dtype == VL2_DTYPE_BF16 && j->T == 1) {
            j->y[r] = b + dot_bf16(row, j->x, w->n_in);
            continue;
        }
        const float *wf;
        if (w->dtype == VL2_DTYPE_F32) {
            wf = row;
        } else {
            if (!tmp)
                return; /* cannot happen in practice; leaves y as it was */
            vl2_to_f32(row, w->dtype, 0, (size_t)w->n_in, tmp);
            wf = tmp;
        }
        for (int t = 0; t < j->T; t++)
            j->y[(size_t)t * j->ldy + r] = b + dot_f32(wf, j->x + (size_t)t * j->ldx, w->n_in);
    }
    free(tmp);
}

/* Many rows of x: widen a block of W and let sgemm do the arithmetic. */
static void mm_gemm_task(void *ctx, int task, int thread)
{
    mm_job *j = ctx;
    const vl2_matrix *w = j->w;
    int r0 = task * GEMM_BLOCK;
    int nb = r0 + GEMM_BLOCK < w->n_out ? GEMM_BLOCK : w->n_out - r0;
    const float *wb = NULL;
    float *tmp = NULL;
    if (w->dtype == VL2_DTYPE_F32 && w->stride == (size_t)w->n_in) {
        wb = row_ptr(w, r0);
    } else {
        tmp = malloc((size_t)nb * (size_t)w->n_in * sizeof(float));
        if (!tmp)
            return;
        for (int r = 0; r < nb; r++)
            vl2_to_f32(row_ptr(w, r0 + r), w->dtype, 0, (size_t)w->n_in,
                       tmp + (size_t)r * (size_t)w->n_in);
        wb = tmp;
    }
    /* gcc cannot see through the target_clones resolver that vl2_to_f32 filled tmp */
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
    free(tmp);
}

void vl2_matmul(vl2_pool *pool, const vl2_matrix *w, const vl2_tensor *bias, const float *x,
                int T, size_t ldx, float *y, size_t ldy)
{
    if (T <= 0 || w->n_out <= 0)
        return;
    mm_job j = { w, bias, x, T, ldx, y, ldy, 0 };
    if (T > SMALL_T) {
        vl2_pool_run(pool, (w->n_out + GEMM_BLOCK - 1) / GEMM_BLOCK, mm_gemm_task, &j);
        return;
    }
    /* About four bands per thread so that uneven progress evens out. */
    int n_threads = vl2_pool_size(pool);
    int rows = (w->n_out + 4 * n_threads - 1) / (4 * n_threads);
    if (rows < 16)
        rows = 16;
    j.rows_per_task = rows;
    vl2_pool_run(pool, (w->n_out + rows - 1) / rows, mm_small_task, &j);
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

void vl2_gelu_tanh(float *x, size_t n)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

void vl2_gelu_erf(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.7071067811865476f));
}

void vl2_softmax(float *x, int n)
{
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > m)
            m = x[i];
    float s = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = 1.0f / s;
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

float vl2_sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

float vl2_silu(float x)
{
    return x / (1.0f + expf(-x));
}

void vl2_swiglu(const float *gate, const float *up, int n, float *out)
{
    for (int i = 0; i < n; i++)
        out[i] = vl2_silu(gate[i]) * up[i];
}
