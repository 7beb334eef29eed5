/* test-kernels.c - every fast kernel against its scalar reference on random inputs. */
#include <math.h>
#include <string.h>

#include "gemm-bf16.h"
#include "isa.h"
#include "kernels.h"
#include "quant.h"
#include "test-util.h"

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* IEEE half from float, round to nearest even (normal range only; tests stay within it). */
static uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int exp = (int)((u >> 23) & 0xff) - 127 + 15;
    uint32_t mant = u & 0x7fffff;
    if (exp <= 0)
        return (uint16_t)sign;
    uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)h;
}

static void test_f16_all_values(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
        double want;
        if (exp == 0)
            want = ldexp(mant, -24);
        else if (exp == 31)
            want = mant ? NAN : INFINITY;
        else
            want = ldexp(1024 + mant, exp - 25);
        if (h & 0x8000)
            want = -want;
        float got = vl2_f16_to_f32((uint16_t)h);
        if (isnan(want))
            g_assert_true(isnan(got));
        else
            g_assert_cmpfloat(got, ==, want);
    }
}

typedef struct {
    vl2_dtype dtype;
    void *data;
    vl2_tensor bias;
    float *bias_data;
} weights;

static void make_weights(weights *w, vl2_dtype dtype, int n_out, int n_in, bool bias, GRand *r)
{
    size_t n = (size_t)n_out * (size_t)n_in;
    w->dtype = dtype;
    w->data = g_malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        float v = (float)g_rand_double_range(r, -1, 1);
        if (dtype == VL2_DTYPE_F32)
            ((float *)w->data)[i] = v;
        else if (dtype == VL2_DTYPE_BF16)
            ((uint16_t *)w->data)[i] = f32_to_bf16(v);
        else
            ((uint16_t *)w->data)[i] = f32_to_f16(v);
    }
    memset(&w->bias, 0, sizeof w->bias);
    w->bias_data = NULL;
    if (bias) {
        w->bias_data = g_new(float, n_out);
        for (int i = 0; i < n_out; i++)
            w->bias_data[i] = (float)g_rand_double_range(r, -1, 1);
        w->bias.dtype = VL2_DTYPE_F32;
        w->bias.ndim = 1;
        w->bias.shape[0] = n_out;
        w->bias.n_elements = n_out;
        w->bias.data = w->bias_data;
        w->bias.n_bytes = (size_t)n_out * 4;
    }
}

/* want and got (T rows ldy apart, columns [0, n_cols)) agree as float32 sums of n_in terms in
 * another order do: the error grows like sqrt(n_in). Returns the worst relative error over
 * sqrt(n_in). */
static double check_sums(const float *want, const float *got, int T, size_t ldy, int n_cols,
                         int n_in, const char *what, vl2_dtype dtype, int bias)
{
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < n_cols; o++) {
            double a = want[(size_t)t * ldy + o], b = got[(size_t)t * ldy + o];
            double e = fabs(a - b) / (1 + fabs(a)) / sqrt(n_in);
            worst = e > worst ? e : worst;
            if (e > 4e-6)
                g_error("%s %s T=%d in=%d bias=%d: [%d][%d] %g vs %g", what,
                        vl2_dtype_name(dtype), T, n_in, bias, t, o, b, a);
        }
    return worst;
}

static void test_matmul(void)
{
    GRand *r = g_rand_new_with_seed(42);
    const vl2_dtype dtypes[] = { VL2_DTYPE_F32, VL2_DTYPE_BF16, VL2_DTYPE_F16 };
    const int Ts[] = { 1, 2, 8, 9, 37 };
    const int outs[] = { 1, 17, 130 };
    const int ins[] = { 1, 15, 16, 33, 300 };
    vl2_pool *pools[] = { NULL, vl2_pool_new(1), vl2_pool_new(3) };
    double worst = 0;
    for (size_t d = 0; d < G_N_ELEMENTS(dtypes); d++)
        for (size_t ti = 0; ti < G_N_ELEMENTS(Ts); ti++)
            for (size_t oi = 0; oi < G_N_ELEMENTS(outs); oi++)
                for (size_t ii = 0; ii < G_N_ELEMENTS(ins); ii++)
                    for (int bias = 0; bias < 2; bias++) {
                        int T = Ts[ti], n_out = outs[oi], n_in = ins[ii];
                        weights w;
                        make_weights(&w, dtypes[d], n_out, n_in, bias, r);
                        /* x rows padded (ldx > n_in) and y rows padded (ldy > n_out) */
                        size_t ldx = (size_t)n_in + 3, ldy = (size_t)n_out + 5;
                        float *x = g_new(float, (size_t)T * ldx);
                        for (size_t i = 0; i < (size_t)T * ldx; i++)
                            x[i] = (float)g_rand_double_range(r, -2, 2);
                        float *want = g_new0(float, (size_t)T * ldy);
                        float *got = g_new0(float, (size_t)T * ldy);
                        vl2_matrix m = { w.data, w.dtype, n_out, n_in, 0, (size_t)n_in };
                        vl2_matmul_ref(&m, bias ? &w.bias : NULL, x, T, ldx, want, ldy);
                        vl2_pool *pool = pools[(d + ti + oi) % 3];
                        vl2_matmul(pool, &m, bias ? &w.bias : NULL, x, T, ldx, got, ldy);
                        worst = MAX(worst, check_sums(want, got, T, ldy, n_out, n_in, "matmul",
                                                      dtypes[d], bias));
                        g_free(x);
                        g_free(want);
                        g_free(got);
                        g_free(w.data);
                        g_free(w.bias_data);
                    }
    g_test_message("matmul: worst relative error / sqrt(n_in) %.2g", worst);
    for (size_t i = 0; i < G_N_ELEMENTS(pools); i++)
        vl2_pool_free(pools[i]);
    g_rand_free(r);
}

/* A sub-matrix view (rows of a larger tensor with an element offset), as MLA's kv_b uses. */
static void test_matrix_view(void)
{
    GRand *r = g_rand_new_with_seed(7);
    weights w;
    make_weights(&w, VL2_DTYPE_BF16, 20, 12, false, r);
    float x[12], y[5], ref[5];
    for (int i = 0; i < 12; i++)
        x[i] = (float)g_rand_double_range(r, -1, 1);
    vl2_matrix view = { w.data, VL2_DTYPE_BF16, 5, 8, 3 * 12 + 2, 24 }; /* every other row */
    vl2_matmul(NULL, &view, NULL, x, 1, 8, y, 5);
    for (int o = 0; o < 5; o++) {
        double s = 0;
        for (int i = 0; i < 8; i++)
            s += vl2_bf16_to_f32(((uint16_t *)w.data)[3 * 12 + 2 + o * 24 + i]) * x[i];
        ref[o] = (float)s;
        g_assert_cmpfloat(fabs(y[o] - ref[o]), <=, 1e-5);
    }
    g_free(w.data);
    g_rand_free(r);
}

static void test_dot_axpy_w(void)
{
    GRand *r = g_rand_new_with_seed(9);
    const vl2_dtype dtypes[] = { VL2_DTYPE_F32, VL2_DTYPE_BF16, VL2_DTYPE_F16 };
    for (size_t d = 0; d < G_N_ELEMENTS(dtypes); d++)
        for (int n = 1; n < 70; n += 7) {
            weights w;
            make_weights(&w, dtypes[d], 1, n + 4, false, r);
            float *x = g_new(float, n), *wf = g_new(float, n + 4);
            float *y = g_new0(float, n), *y2 = g_new0(float, n);
            vl2_to_f32(w.data, dtypes[d], 0, (size_t)n + 4, wf);
            double ref = 0;
            for (int i = 0; i < n; i++) {
                x[i] = (float)g_rand_double_range(r, -1, 1);
                ref += (double)wf[i + 4] * x[i];
                y2[i] = 0.5f * wf[i + 4];
            }
            g_assert_cmpfloat(fabs(vl2_dot_w(w.data, dtypes[d], 4, x, n) - ref), <=, 1e-5);
            vl2_axpy_w(0.5f, w.data, dtypes[d], 4, n, y);
            for (int i = 0; i < n; i++)
                g_assert_cmpfloat(fabs(y[i] - y2[i]), <=, 1e-6);
            g_free(x);
            g_free(wf);
            g_free(y);
            g_free(y2);
            g_free(w.data);
        }
    g_rand_free(r);
}

static void test_rmsnorm_softmax(void)
{
    GRand *r = g_rand_new_with_seed(3);
    for (int n = 1; n < 200; n += 13) {
        float *x = g_new(float, n), *wv = g_new(float, n), *out = g_new(float, n);
        for (int i = 0; i < n; i++) {
            x[i] = (float)g_rand_double_range(r, -3, 3);
            wv[i] = (float)g_rand_double_range(r, 0.5, 1.5);
        }
        vl2_tensor w = { .dtype = VL2_DTYPE_F32, .ndim = 1, .shape = { n }, .n_elements = n,
                         .data = wv };
        vl2_rmsnorm(x, &w, n, 1e-6f, out);
        double ss = 0;
        for (int i = 0; i < n; i++)
            ss += (double)x[i] * x[i];
        double inv = 1.0 / sqrt(ss / n + 1e-6);
        for (int i = 0; i < n; i++)
            g_assert_cmpfloat(fabs(out[i] - wv[i] * x[i] * inv), <=, 1e-5);

        vl2_softmax(x, n);
        double sum = 0;
        for (int i = 0; i < n; i++) {
            g_assert_cmpfloat(x[i], >=, 0);
            sum += x[i];
        }
        g_assert_cmpfloat(fabs(sum - 1), <=, 1e-5);
        g_free(x);
        g_free(wv);
        g_free(out);
    }
    /* softmax of huge values does not overflow */
    float big[3] = { 1e30f, 1e30f, -1e30f };
    vl2_softmax(big, 3);
    g_assert_cmpfloat(fabs(big[0] - 0.5), <=, 1e-6);
    g_assert_cmpfloat(big[2], ==, 0);
    g_rand_free(r);
}

/* The polynomial exp against libm's double exp over the whole float range it serves, and the
 * activations built on it. */
static void test_exp_activations(void)
{
    enum { N = 200001 };
    float *x = g_new(float, N);
    for (int i = 0; i < N; i++)
        x[i] = -87.0f + 175.3f * (float)i / (N - 1); /* -87 .. 88.3 */
    float *e = g_memdup2(x, N * sizeof(float));
    vl2_exp_inplace(e, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double want = exp((double)x[i]);
        double rel = fabs(e[i] - want) / want;
        worst = rel > worst ? rel : worst;
    }
    g_test_message("exp: max relative error %.3g over [-87, 88.3]", worst);
    g_assert_cmpfloat(worst, <, 3e-7);
    /* underflow to 0 (softmax's masked -inf), overflow to +inf */
    float edge[5] = { -INFINITY, -1000.0f, -88.0f, 0.0f, 1000.0f };
    vl2_exp_inplace(edge, 5);
    g_assert_cmpfloat(edge[0], ==, 0);
    g_assert_cmpfloat(edge[1], ==, 0);
    g_assert_cmpfloat(edge[2], ==, 0);
    g_assert_cmpfloat(edge[3], ==, 1);
    g_assert_true(isinf(edge[4]) && edge[4] > 0);

    /* GELU (tanh form) and SwiGLU against double formulas */
    GRand *r = g_rand_new_with_seed(7);
    const int n = 4099;
    float *g = g_new(float, n), *u = g_new(float, n), *out = g_new(float, n);
    for (int i = 0; i < n; i++) {
        g[i] = (float)g_rand_double_range(r, -30, 30);
        u[i] = (float)g_rand_double_range(r, -3, 3);
    }
    float *gl = g_memdup2(g, (gsize)n * sizeof(float));
    vl2_gelu_tanh(gl, (size_t)n);
    vl2_swiglu(g, u, n, out);
    for (int i = 0; i < n; i++) {
        double v = g[i];
        double want = 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        g_assert_cmpfloat(fabs(gl[i] - want), <=, 1e-6 * (1 + fabs(want)));
        double sw = v / (1 + exp(-v)) * u[i];
        g_assert_cmpfloat(fabs(out[i] - sw), <=, 1e-6 * (1 + fabs(sw)));
    }
    g_free(gl);
    g_free(g);
    g_free(u);
    g_free(out);
    g_free(e);
    g_free(x);
    g_rand_free(r);
}

/* The KV cache's converters: every row path (F16C or scalar, any length and tail) rounds like
 * the scalar definition, and f16 round-trips. */
static void test_row_converters(void)
{
    GRand *r = g_rand_new_with_seed(11);
    const size_t lens[] = { 1, 7, 8, 15, 16, 17, 100, 1029 };
    for (size_t li = 0; li < G_N_ELEMENTS(lens); li++) {
        size_t n = lens[li];
        float *x = g_new(float, n), *back = g_new(float, n);
        uint16_t *h = g_new(uint16_t, n), *b = g_new(uint16_t, n);
        for (size_t i = 0; i < n; i++)
            x[i] = (float)(g_rand_double_range(r, -1, 1) * pow(10, g_rand_int_range(r, -6, 5)));
        vl2_f32_to_f16_row(x, h, n);
        vl2_f32_to_bf16_row(x, b, n);
        vl2_f16_to_f32_row(h, back, n);
        for (size_t i = 0; i < n; i++) {
            g_assert_cmpuint(h[i], ==, vl2_f32_to_f16(x[i]));
            g_assert_cmpuint(b[i], ==, f32_to_bf16(x[i]));
            g_assert_cmpfloat(back[i], ==, vl2_f16_to_f32(h[i]));
        }
        g_free(x);
        g_free(back);
        g_free(h);
        g_free(b);
    }
    g_rand_free(r);
}

/* Attention's row kernels for each cache type, with strides wider than the rows, lengths with
 * and without SIMD tails, and the accumulate flag. */
static void test_attention_rows(void)
{
    GRand *r = g_rand_new_with_seed(5);
    const vl2_kv_type types[] = { VL2_KV_F16, VL2_KV_BF16, VL2_KV_F32 };
    const int ns[] = { 16, 64, 128, 192, 576, 24, 7 };
    const int rows_n[] = { 1, 3, 64, 100 };
    for (size_t ti = 0; ti < G_N_ELEMENTS(types); ti++)
        for (size_t ni = 0; ni < G_N_ELEMENTS(ns); ni++)
            for (size_t ri = 0; ri < G_N_ELEMENTS(rows_n); ri++) {
                vl2_kv_type t = types[ti];
                int n = ns[ni], n_rows = rows_n[ri];
                size_t stride = (size_t)n + 32, elem = t == VL2_KV_F32 ? 4 : 2;
                /* 8 spare rows: the kernels prefetch ahead, which may not fault */
                char *rows = g_malloc0(stride * (size_t)(n_rows + 8) * elem);
                double *val = g_new(double, (size_t)n_rows * n);
                for (int i = 0; i < n_rows; i++)
                    for (int d = 0; d < n; d++) {
                        float v = (float)g_rand_double_range(r, -2, 2);
                        size_t at = (size_t)i * stride + d;
                        if (t == VL2_KV_F32)
                            ((float *)rows)[at] = v;
                        else
                            ((uint16_t *)rows)[at] = t == VL2_KV_F16 ? vl2_f32_to_f16(v)
                                                                     : f32_to_bf16(v);
                        val[(size_t)i * n + d] = t == VL2_KV_F32 ? v
                                                 : t == VL2_KV_F16
                                                     ? vl2_f16_to_f32(((uint16_t *)rows)[at])
                                                     : vl2_bf16_to_f32(((uint16_t *)rows)[at]);
                    }
                float *q = g_new(float, n), *w = g_new(float, n_rows);
                for (int d = 0; d < n; d++)
                    q[d] = (float)g_rand_double_range(r, -1, 1);
                for (int i = 0; i < n_rows; i++)
                    w[i] = (float)g_rand_double_range(r, 0, 1);
                float *out = g_new(float, n_rows), *o = g_new(float, n);
                for (int i = 0; i < n_rows; i++)
                    out[i] = 0.5f;
                for (int d = 0; d < n; d++)
                    o[d] = -0.25f;
                vl2_dot_rows(q, rows, t, stride, n_rows, n, out, TRUE);
                vl2_attend_rows(w, rows, t, stride, n_rows, n, o);
                for (int i = 0; i < n_rows; i++) {
                    double want = 0.5;
                    for (int d = 0; d < n; d++)
                        want += q[d] * val[(size_t)i * n + d];
                    g_assert_cmpfloat(fabs(out[i] - want), <=, 1e-5 * sqrt(n));
                }
                for (int d = 0; d < n; d++) {
                    double want = -0.25;
                    for (int i = 0; i < n_rows; i++)
                        want += w[i] * val[(size_t)i * n + d];
                    g_assert_cmpfloat(fabs(o[d] - want), <=, 1e-5 * sqrt(n_rows));
                }
                /* without add, out is overwritten */
                vl2_dot_rows(q, rows, t, stride, n_rows, n, out, FALSE);
                double want0 = 0;
                for (int d = 0; d < n; d++)
                    want0 += q[d] * val[d];
                g_assert_cmpfloat(fabs(out[0] - want0), <=, 1e-5 * sqrt(n));
                g_free(rows);
                g_free(val);
                g_free(q);
                g_free(w);
                g_free(out);
                g_free(o);
            }
    g_rand_free(r);
}

/* vl2_matmul_multi runs many products in one dispatch, sharing a quantized x between products
 * of the same x: every result must equal the product run alone. */
/* The bf16 compute mode: bf16(x) times bf16(W) summed in float32, against the same arithmetic in
 * double. Shapes cross the kernel's edges: every width of token groups (1 to 4 groups of 16, and
 * partial groups), outputs by 12 and past a tile, k-values odd and past 32; weights stored as
 * bf16 (every other case 2 bytes off a 4-byte boundary, as a checkpoint's tensors can be), and as
 * float32 and half (rounded to bf16 by the tile); x rows and y rows padded. */
static void test_matmul_bf16(void)
{
    GRand *r = g_rand_new_with_seed(7);
    const vl2_dtype dtypes[] = { VL2_DTYPE_BF16, VL2_DTYPE_F32, VL2_DTYPE_F16 };
    const int Ts[] = { 9, 13, 20, 300 };
    const int outs[] = { 1, 17, 130, 600 };
    const int ins[] = { 1, 15, 33, 300, 600 };
    vl2_pool *pools[] = { vl2_pool_new(1), vl2_pool_new(3) };
    for (size_t i = 0; i < G_N_ELEMENTS(pools); i++)
        vl2_pool_set_compute(pools[i], VL2_COMPUTE_BF16);
    double worst = 0;
    int n_case = 0;
    for (size_t d = 0; d < G_N_ELEMENTS(dtypes); d++)
        for (size_t ti = 0; ti < G_N_ELEMENTS(Ts); ti++)
            for (size_t oi = 0; oi < G_N_ELEMENTS(outs); oi++)
                for (size_t ii = 0; ii < G_N_ELEMENTS(ins); ii++, n_case++) {
                    int T = Ts[ti], n_out = outs[oi], n_in = ins[ii], bias = n_case % 2;
                    if (d > 0 && (T == 300 || n_out == 600)) /* dtypes: smaller shapes suffice */
                        continue;
                    weights w;
                    make_weights(&w, dtypes[d], n_out, n_in, bias, r);
                    size_t ldx = (size_t)n_in + 3, ldy = (size_t)n_out + 5;
                    float *x = g_new(float, (size_t)T * ldx);
                    for (size_t i = 0; i < (size_t)T * ldx; i++)
                        x[i] = (float)g_rand_double_range(r, -2, 2);
                    float *want = g_new0(float, (size_t)T * ldy);
                    float *got = g_new0(float, (size_t)T * ldy);
                    /* outside the product's columns y is left alone */
                    for (size_t i = 0; i < (size_t)T * ldy; i++)
                        got[i] = want[i] = -7.0f;
                    vl2_matrix m = { w.data, w.dtype, n_out, n_in, 0, (size_t)n_in };
                    char *shifted = NULL;
                    if (dtypes[d] == VL2_DTYPE_BF16 && n_case % 2) {
                        size_t bytes = (size_t)n_out * n_in * sizeof(uint16_t);
                        shifted = g_malloc(bytes + 2);
                        memcpy(shifted + 2, w.data, bytes);
                        m.data = shifted + 2;
                    }
                    vl2_gemm_bf16_ref(&m, bias ? &w.bias : NULL, x, T, ldx, want, ldy);
                    vl2_matmul(pools[n_case % 2], &m, bias ? &w.bias : NULL, x, T, ldx, got, ldy);
                    /* the same products; every column of y, the padding included */
                    worst = MAX(worst, check_sums(want, got, T, ldy, (int)ldy, n_in, "bf16 matmul",
                                                  dtypes[d], bias));
                    g_free(x);
                    g_free(want);
                    g_free(got);
                    g_free(shifted);
                    g_free(w.data);
                    g_free(w.bias_data);
                }
    g_test_message("bf16 matmul (%s kernel): worst relative error / sqrt(n_in) %.2g",
                   vl2_gemm_bf16_native() ? "AVX-512 BF16" : "float32", worst);
    /* and the mode differs from float32 by the operands' rounding: on the order of 2^-9 */
    vl2_pool_set_compute(pools[0], VL2_COMPUTE_F32);
    g_assert_cmpint(vl2_pool_compute(pools[0]), ==, VL2_COMPUTE_F32);
    g_assert_cmpint(vl2_pool_compute(NULL), ==, VL2_COMPUTE_F32);
    for (size_t i = 0; i < G_N_ELEMENTS(pools); i++)
        vl2_pool_free(pools[i]);
    g_rand_free(r);
}

static void test_matmul_multi(void)
{
    GRand *r = g_rand_new_with_seed(9);
    vl2_pool *pool = vl2_pool_new(3);
    enum { K = 9 };
    const int n_in = 256;
    const int outs[K] = { 1, 64, 130, 7, 256, 33, 512, 96, 5 };
    const int Ts[K] = { 1, 1, 2, 1, 1, 8, 1, 1, 3 };
    float *xs[2];
    for (int k = 0; k < 2; k++) {
        xs[k] = g_new(float, 8 * n_in);
        for (int i = 0; i < 8 * n_in; i++)
            xs[k][i] = (float)g_rand_double_range(r, -2, 2);
    }
    vl2_mm_item items[K];
    void *wdata[K];
    uint16_t *scales[K];
    float *want[K];
    for (int k = 0; k < K; k++) {
        int n_out = outs[k];
        vl2_dtype dt = k % 3 == 0 ? VL2_DTYPE_BF16 : k % 3 == 1 ? VL2_DTYPE_Q8_0 : VL2_DTYPE_Q4_0;
        float *f = g_new(float, (size_t)n_out * n_in);
        for (size_t i = 0; i < (size_t)n_out * n_in; i++)
            f[i] = (float)g_rand_double_range(r, -1, 1);
        scales[k] = NULL;
        if (dt == VL2_DTYPE_BF16) {
            uint16_t *b = g_new(uint16_t, (size_t)n_out * n_in);
            for (size_t i = 0; i < (size_t)n_out * n_in; i++)
                b[i] = f32_to_bf16(f[i]);
            wdata[k] = b;
        } else {
            scales[k] = g_new(uint16_t, (size_t)n_out * n_in / VL2_QBLOCK);
            wdata[k] = g_malloc((size_t)n_out * n_in);
            for (int o = 0; o < n_out; o++) {
                uint16_t *sc = scales[k] + (size_t)o * n_in / VL2_QBLOCK;
                if (dt == VL2_DTYPE_Q8_0)
                    vl2_quantize_row_q8(f + (size_t)o * n_in, n_in,
                                        (int8_t *)wdata[k] + (size_t)o * n_in, sc);
                else
                    vl2_quantize_row_q4(f + (size_t)o * n_in, n_in,
                                        (uint8_t *)wdata[k] + (size_t)o * n_in / 2, sc);
            }
        }
        g_free(f);
        vl2_matrix m = { wdata[k], dt, n_out, n_in, 0, (size_t)n_in, scales[k] };
        /* products 1, 2, 4 and 7 share x[0]; the others use x[1] */
        const float *x = xs[k == 1 || k == 2 || k == 4 || k == 7 ? 0 : 1];
        items[k] = (vl2_mm_item){ m, NULL, x, Ts[k], (size_t)n_in,
                                  g_new0(float, (size_t)Ts[k] * n_out), (size_t)n_out };
        want[k] = g_new0(float, (size_t)Ts[k] * n_out);
        vl2_matmul(pool, &m, NULL, x, Ts[k], (size_t)n_in, want[k], (size_t)n_out);
    }
    vl2_matmul_multi(pool, items, K);
    for (int k = 0; k < K; k++) {
        for (int i = 0; i < Ts[k] * outs[k]; i++)
            g_assert_cmpfloat(fabs(items[k].y[i] - want[k][i]), <=, 1e-4 * (1 + fabs(want[k][i])));
        g_free(items[k].y);
        g_free(want[k]);
        g_free(wdata[k]);
        g_free(scales[k]);
    }
    g_free(xs[0]);
    g_free(xs[1]);
    vl2_pool_free(pool);
    g_rand_free(r);
}

typedef struct {
    gint counts[1000];
    gint threads_seen[8];
} pool_ctx;

static void count_task(void *ctx, int task, int thread)
{
    pool_ctx *c = ctx;
    g_atomic_int_inc(&c->counts[task]);
    g_atomic_int_inc(&c->threads_seen[thread]);
}

static void test_pool(void)
{
    for (int n = 1; n <= 4; n++) {
        vl2_pool *p = vl2_pool_new(n);
        g_assert_cmpint(vl2_pool_size(p), ==, n);
        for (int round = 0; round < 200; round++) {
            pool_ctx c = { 0 };
            int tasks = 1 + round * 5 % 1000;
            vl2_pool_run(p, tasks, count_task, &c);
            for (int i = 0; i < tasks; i++)
                g_assert_cmpint(c.counts[i], ==, 1);
            for (int i = tasks; i < 1000; i++)
                g_assert_cmpint(c.counts[i], ==, 0);
            for (int t = n; t < 8; t++)
                g_assert_cmpint(c.threads_seen[t], ==, 0);
        }
        vl2_pool_free(p);
    }
}

/* ------------------------------------------------------------------------------------------
 * Each instruction-set level this CPU has (isa.h): every case above runs at each, against the
 * same references, and the levels agree with one another.
 */

typedef struct {
    int level;
    GTestFunc fn;
} at_level;

static void run_at_level(gconstpointer data)
{
    const at_level *a = data;
    g_assert_true(vl2_isa_limit(vl2_isa_name(a->level)));
    g_assert_cmpint(vl2_isa_level(), ==, a->level);
    a->fn();
    g_assert_true(vl2_isa_limit(NULL));
}

typedef struct {
    float bf16_back[300], f16_back[300], soft[300], gelu[300], ex[300], swi[300], axpy[300];
    float mm_f32[4 * 24], mm_bf16[4 * 24], mm_q8[24];
    uint16_t bf16[300], f16[300];
} level_outputs;

/* The row kernels and the decode products at the level in force, on fixed inputs. */
static void compute_at_level(level_outputs *o)
{
    GRand *r = g_rand_new_with_seed(77);
    const int n = 300, n_in = 64, n_out = 24, T = 4;
    float x[300], g[300], u[300], xin[4 * 64];
    for (int i = 0; i < n; i++) {
        x[i] = (float)g_rand_double_range(r, -12, 12);
        g[i] = (float)g_rand_double_range(r, -4, 4);
        u[i] = (float)g_rand_double_range(r, -4, 4);
    }
    for (int i = 0; i < T * n_in; i++)
        xin[i] = (float)g_rand_double_range(r, -1, 1);
    vl2_f32_to_bf16_row(x, o->bf16, (size_t)n);
    vl2_to_f32(o->bf16, VL2_DTYPE_BF16, 0, (size_t)n, o->bf16_back);
    vl2_f32_to_f16_row(x, o->f16, (size_t)n);
    vl2_f16_to_f32_row(o->f16, o->f16_back, (size_t)n);
    memcpy(o->soft, x, sizeof o->soft);
    vl2_softmax(o->soft, n);
    memcpy(o->gelu, x, sizeof o->gelu);
    vl2_gelu_tanh(o->gelu, (size_t)n);
    for (int i = 0; i < n; i++)
        o->ex[i] = x[i] / 4;
    vl2_exp_inplace(o->ex, (size_t)n);
    vl2_swiglu(g, u, n, o->swi);
    memcpy(o->axpy, u, sizeof o->axpy);
    vl2_axpy(0.75f, g, n, o->axpy);

    /* decode shapes: the streaming dot products (f32, bf16) and the hand-written q8 table */
    GRand *wr = g_rand_new_with_seed(5);
    float *f = g_new(float, (size_t)n_out * n_in);
    for (size_t i = 0; i < (size_t)n_out * n_in; i++)
        f[i] = (float)g_rand_double_range(wr, -1, 1);
    uint16_t *b = g_new(uint16_t, (size_t)n_out * n_in);
    for (size_t i = 0; i < (size_t)n_out * n_in; i++)
        b[i] = f32_to_bf16(f[i]);
    int8_t *q = g_new(int8_t, (size_t)n_out * n_in);
    uint16_t *sc = g_new(uint16_t, (size_t)n_out * n_in / VL2_QBLOCK);
    for (int r8 = 0; r8 < n_out; r8++)
        vl2_quantize_row_q8(f + (size_t)r8 * n_in, n_in, q + (size_t)r8 * n_in,
                            sc + (size_t)r8 * n_in / VL2_QBLOCK);
    vl2_matrix m32 = { f, VL2_DTYPE_F32, n_out, n_in, 0, (size_t)n_in, NULL };
    vl2_matrix m16 = { b, VL2_DTYPE_BF16, n_out, n_in, 0, (size_t)n_in, NULL };
    vl2_matrix m8 = { q, VL2_DTYPE_Q8_0, n_out, n_in, 0, (size_t)n_in, sc };
    vl2_matmul(NULL, &m32, NULL, xin, T, (size_t)n_in, o->mm_f32, (size_t)n_out);
    vl2_matmul(NULL, &m16, NULL, xin, T, (size_t)n_in, o->mm_bf16, (size_t)n_out);
    vl2_matmul(NULL, &m8, NULL, xin, 1, (size_t)n_in, o->mm_q8, (size_t)n_out);
    g_free(f);
    g_free(b);
    g_free(q);
    g_free(sc);
    g_rand_free(wr);
    g_rand_free(r);
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1e-6);
        worst = d > worst ? d : worst;
    }
    return worst;
}

static void test_levels_agree(void)
{
    level_outputs *base = g_new0(level_outputs, 1), *o = g_new0(level_outputs, 1);
    g_assert_true(vl2_isa_limit("baseline"));
    compute_at_level(base);
    g_test_message("this CPU's best level: %s; hand-written kernels at it: %s",
                   vl2_isa_name(vl2_isa_detected()), (vl2_isa_limit(NULL), vl2_kernels_isa()));
    for (int level = 1; level <= vl2_isa_detected(); level++) {
        g_assert_true(vl2_isa_limit(vl2_isa_name(level)));
        compute_at_level(o);
        /* conversions are exact at every level */
        g_assert_cmpmem(o->bf16, sizeof o->bf16, base->bf16, sizeof base->bf16);
        g_assert_cmpmem(o->f16, sizeof o->f16, base->f16, sizeof base->f16);
        g_assert_cmpmem(o->bf16_back, sizeof o->bf16_back, base->bf16_back, sizeof base->bf16_back);
        g_assert_cmpmem(o->f16_back, sizeof o->f16_back, base->f16_back, sizeof base->f16_back);
        /* arithmetic: the same up to the rounding of fused multiply-adds */
        double e_rows = 0, e_mm;
        const float *pairs[][2] = { { o->soft, base->soft }, { o->gelu, base->gelu },
                                    { o->ex, base->ex }, { o->swi, base->swi },
                                    { o->axpy, base->axpy } };
        for (size_t k = 0; k < G_N_ELEMENTS(pairs); k++) {
            double e = max_rel(pairs[k][0], pairs[k][1], 300);
            e_rows = e > e_rows ? e : e_rows;
        }
        e_mm = max_rel(o->mm_f32, base->mm_f32, G_N_ELEMENTS(o->mm_f32));
        double e = max_rel(o->mm_bf16, base->mm_bf16, G_N_ELEMENTS(o->mm_bf16));
        e_mm = e > e_mm ? e : e_mm;
        double e_q8 = max_rel(o->mm_q8, base->mm_q8, G_N_ELEMENTS(o->mm_q8));
        g_test_message("%s (hand-written: %s) against baseline: conversions identical; "
                       "max relative difference: row kernels %.2g, f32/bf16 products %.2g, "
                       "q8 product %.2g", vl2_isa_name(level), vl2_kernels_isa(), e_rows, e_mm,
                       e_q8);
        g_assert_cmpfloat(e_rows, <=, 1e-5);
        g_assert_cmpfloat(e_mm, <=, 1e-4);
        g_assert_cmpfloat(e_q8, <=, 1e-3);
    }
    g_assert_true(vl2_isa_limit(NULL));
    g_free(base);
    g_free(o);
}

/* A cap names a level; one this CPU lacks, or an unknown name, changes nothing. */
static void test_limit(void)
{
    int best = vl2_isa_detected();
    g_assert_true(vl2_isa_limit(NULL));
    g_assert_true(vl2_isa_limit("baseline"));
    g_assert_cmpint(vl2_isa_level(), ==, VL2_ISA_BASELINE);
    g_assert_cmpstr(vl2_isa(), ==, "baseline");
    g_assert_cmpstr(vl2_kernels_isa(), ==, "scalar");
    g_assert_false(vl2_isa_limit("no-such-level"));
    g_assert_cmpint(vl2_isa_level(), ==, VL2_ISA_BASELINE);
    if (best + 1 < vl2_isa_count())
        g_assert_false(vl2_isa_limit(vl2_isa_name(best + 1)));
    g_assert_null(vl2_isa_name(vl2_isa_count()));
    g_assert_true(vl2_isa_limit(NULL));
    g_assert_cmpint(vl2_isa_level(), ==, best);
    g_assert_cmpstr(vl2_isa(), ==, vl2_isa_name(best));
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        GTestFunc fn;
    } cases[] = {
        { "f16-all-values", test_f16_all_values }, { "matmul", test_matmul },
        { "matrix-view", test_matrix_view },       { "dot-axpy-w", test_dot_axpy_w },
        { "rmsnorm-softmax", test_rmsnorm_softmax }, { "exp-activations", test_exp_activations },
        { "row-converters", test_row_converters }, { "attention-rows", test_attention_rows },
        { "matmul-multi", test_matmul_multi }, { "matmul-bf16", test_matmul_bf16 },
    };
    g_test_init(&argc, &argv, NULL);
    /* with VL2_ISA unset, the cases run at every level up to this CPU's best; a cap set in
     * the environment limits them as it limits the engine */
    for (int level = 0; level <= vl2_isa_level(); level++)
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
            at_level *a = g_new(at_level, 1);
            *a = (at_level){ level, cases[i].fn };
            char *path = g_strdup_printf("/engine/kernels/%s/%s", vl2_isa_name(level),
                                         cases[i].name);
            g_test_add_data_func_full(path, a, run_at_level, g_free);
            g_free(path);
        }
    g_test_add_func("/engine/kernels/pool", test_pool);
    g_test_add_func("/engine/kernels/levels-agree", test_levels_agree);
    g_test_add_func("/engine/kernels/limit", test_limit);
    return g_test_run();
}
