/* test-kernels.c - every fast kernel against its scalar reference on random inputs. */
#include <math.h>
#include <string.h>

#include "kernels.h"
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
                        for (int t = 0; t < T; t++)
                            for (int o = 0; o < n_out; o++) {
                                double a = want[(size_t)t * ldy + o], b = got[(size_t)t * ldy + o];
                                /* float32 sums in another order: error grows like sqrt(n) */
                                double e = fabs(a - b) / (1 + fabs(a)) / sqrt(n_in);
                                worst = e > worst ? e : worst;
                                if (e > 4e-6)
                                    g_error("matmul %s T=%d out=%d in=%d bias=%d: [%d][%d] %g vs "
                                            "%g", vl2_dtype_name(dtypes[d]), T, n_out, n_in, bias,
                                            t, o, b, a);
                            }
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/kernels/f16-all-values", test_f16_all_values);
    g_test_add_func("/engine/kernels/matmul", test_matmul);
    g_test_add_func("/engine/kernels/matrix-view", test_matrix_view);
    g_test_add_func("/engine/kernels/dot-axpy-w", test_dot_axpy_w);
    g_test_add_func("/engine/kernels/rmsnorm-softmax", test_rmsnorm_softmax);
    g_test_add_func("/engine/kernels/pool", test_pool);
    return g_test_run();
}
