/* test-quant.c - Q8_0 / Q4_0 round trips and every decode kernel variant against the scalar
 * reference (quant.h).
 *
 * Tolerances. The reference takes the same exact int32 block dots and the same float32 block
 * factors d_w * d_x as the fast paths and sums in double; a fast path differs from it only by
 * float32 rounding of the lane products and sums. With S = sum over blocks of
 * |d_w d_x| * sum_j |q_w q_x| (for bf16: sum_i |w_i x_i|), any order of summing k terms keeps
 * the error within (k + 1) * 2^-24 * S; no variant has a lane summing more than n / 16 terms
 * and the final reductions add at most 8, so the bound is (n / 16 + 10) * 2^-24 * S. The
 * integer parts are checked exactly on their own: with power-of-two scales every float32 step
 * is exact and each variant must give the integer dot bit for bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels.h"
#include "quant.h"
#include "test-util.h"

static const char *const isas[] = { "avx512-vnni", "avx2", "neon-dotprod", "neon", "scalar" };
static const int lengths[] = { 32, 896, 1280, 6848, 10944 };

#define N_ROWS 11

/* ---- helpers --------------------------------------------------------------------------------- */

static double f16(uint16_t h)
{
    return vl2_f16_to_f32(h);
}

static uint16_t get_u16(const void *p, size_t i)
{
    uint16_t v;
    memcpy(&v, (const uint8_t *)p + 2 * i, 2);
    return v;
}

/* Random floats with a per-block magnitude spread over many octaves, so scales range from f16
 * subnormals to large values, and with some all-zero blocks. */
static void random_row(GRand *r, float *x, int n)
{
    for (int b = 0; b < n / 32; b++) {
        int kind = g_rand_int_range(r, 0, 12);
        double mag = ldexp(1.0, g_rand_int_range(r, -30, 12));
        for (int j = 0; j < 32; j++)
            x[b * 32 + j] = kind == 0 ? 0.0f : (float)(mag * g_rand_double_range(r, -1, 1));
    }
}

/* Buffers at a chosen misalignment: `off` bytes past a 64-byte boundary, exactly `len` bytes
 * long after that so that ASan sees any read past the end. */
typedef struct {
    uint8_t *base;
    void *p;
} buf;

static buf buf_new(size_t len, size_t off)
{
    buf b;
    void *p = NULL;
    g_assert_cmpint(posix_memalign(&p, 64, off + len), ==, 0);
    memset(p, 0, off + len);
    b.base = p;
    b.p = b.base + off;
    return b;
}

static void buf_free(buf *b)
{
    free(b->base);
    b->base = NULL;
}

static bool force(const char *isa)
{
    if (!vl2_kernels_force_isa(isa)) {
        g_test_message("variant %s not available here", isa);
        return false;
    }
    g_assert_cmpstr(vl2_kernels_isa(), ==, isa);
    return true;
}

/* ---- f16 ------------------------------------------------------------------------------------- */

static void test_f16(void)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
        double want = exp == 0 ? ldexp(mant, -24) : ldexp(1024 + mant, exp - 25);
        if (exp == 31)
            want = mant ? NAN : INFINITY;
        if (h & 0x8000)
            want = -want;
        float got = vl2_f16_to_f32((uint16_t)h);
        if (isnan(want)) {
            g_assert_true(isnan(got));
            g_assert_true(isnan(vl2_f16_to_f32(vl2_f32_to_f16(got))));
            continue;
        }
        g_assert_cmpfloat(got, ==, want);
        g_assert_cmpuint(vl2_f32_to_f16(got), ==, h == 0x8000 ? 0x8000 : h);
        /* halfway to the next magnitude: ties go to the even mantissa */
        if ((h & 0x7fff) < 0x7bff) {
            double next = f16((uint16_t)(h + 1));
            float mid = (float)((want + next) / 2);
            uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            g_assert_cmpuint(vl2_f32_to_f16(mid), ==, even);
            g_assert_cmpuint(vl2_f32_to_f16(nextafterf(mid, 2 * (float)next)), ==, h + 1);
        }
    }
    g_assert_cmpuint(vl2_f32_to_f16(65520.0f), ==, 0x7c00);
    g_assert_cmpuint(vl2_f32_to_f16(65519.0f), ==, 0x7bff);
    g_assert_cmpuint(vl2_f32_to_f16(-1e9f), ==, 0xfc00);
}

/* ---- round trips ----------------------------------------------------------------------------- */

static void test_roundtrip_q8(void)
{
    GRand *r = g_rand_new_with_seed(1);
    for (int t = 0; t < 200; t++) {
        int n = 32 * g_rand_int_range(r, 1, 40);
        float *x = g_new(float, n), *y = g_new(float, n);
        random_row(r, x, n);
        if (t == 0) /* the extreme: a value at the largest scale that needs no clipping */
            x[3] = -65504.0f * 127;
        buf q = buf_new((size_t)n, (size_t)t % 7), s = buf_new((size_t)n / 16, (size_t)t % 3);
        vl2_quantize_row_q8(x, n, q.p, s.p);
        vl2_dequantize_row_q8(q.p, s.p, n, y);
        const int8_t *qs = q.p;
        for (int b = 0; b < n / 32; b++) {
            uint16_t h = get_u16(s.p, b);
            double d = f16(h), amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmax(amax, fabs(x[b * 32 + j]));
            g_assert_cmpuint(h & 0x8000, ==, 0);
            /* d is the smallest f16 at or above amax / 127 */
            g_assert_cmpfloat(d * 127, >=, amax);
            if (h > 0)
                g_assert_cmpfloat(f16((uint16_t)(h - 1)) * 127, <, amax);
            else
                g_assert_cmpfloat(amax, ==, 0);
            for (int j = 0; j < 32; j++) {
                int i = b * 32 + j;
                g_assert_cmpint(qs[i], >=, -127);
                g_assert_cmpint(qs[i], <=, 127);
                g_assert_cmpfloat(y[i], ==, d * qs[i]);
                g_assert_cmpfloat(fabs((double)x[i] - y[i]), <=, d / 2);
                if (amax == 0)
                    g_assert_cmpint(qs[i], ==, 0);
            }
        }
        buf_free(&q);
        buf_free(&s);
        g_free(x);
        g_free(y);
    }
    g_rand_free(r);
}

static void test_roundtrip_q4(void)
{
    GRand *r = g_rand_new_with_seed(2);
    int n_clipped = 0, n_neg = 0, n_pos = 0;
    for (int t = 0; t < 200; t++) {
        int n = 32 * g_rand_int_range(r, 1, 40);
        float *x = g_new(float, n), *y = g_new(float, n);
        random_row(r, x, n);
        if (t == 1) { /* both signs at the full magnitude: one is clipped to 7 * d */
            x[0] = 3.0f;
            x[1] = -3.0f;
        }
        buf q = buf_new((size_t)n / 2, (size_t)t % 5), s = buf_new((size_t)n / 16, 1);
        vl2_quantize_row_q4(x, n, q.p, s.p);
        vl2_dequantize_row_q4(q.p, s.p, n, y);
        const uint8_t *qs = q.p;
        for (int b = 0; b < n / 32; b++) {
            uint16_t h = get_u16(s.p, b);
            double d = f16(h), m = 0;
            int jm = 0;
            for (int j = 0; j < 32; j++)
                if (fabs(x[b * 32 + j]) > fabs(m)) {
                    m = x[b * 32 + j];
                    jm = j;
                }
            /* d = m / -8 rounded away from zero: opposite sign, |d| the smallest f16 >= |m| / 8 */
            if (m != 0) {
                g_assert_true((d < 0) == (m > 0));
                g_assert_cmpfloat(fabs(d) * 8, >=, fabs(m));
                g_assert_cmpfloat(f16((uint16_t)((h & 0x7fff) - 1)) * 8, <, fabs(m));
                n_neg += d < 0;
                n_pos += d > 0;
                /* m is stored as u = 0 unless d had to be rounded up to a subnormal */
                int u = jm < 16 ? qs[b * 16 + jm] & 0x0f : qs[b * 16 + jm - 16] >> 4;
                if (fabs(m) >= ldexp(1, -11))
                    g_assert_cmpint(u, ==, 0);
            } else {
                g_assert_cmpfloat(d, ==, 0);
            }
            for (int j = 0; j < 32; j++) {
                int i = b * 32 + j;
                int u = j < 16 ? qs[b * 16 + j] & 0x0f : qs[b * 16 + j - 16] >> 4;
                g_assert_cmpfloat(y[i], ==, d * (u - 8));
                double err = fabs((double)x[i] - y[i]);
                g_assert_cmpfloat(err, <=, fabs(d));
                if (d == 0 || x[i] / d <= 7.5)
                    g_assert_cmpfloat(err, <=, fabs(d) / 2);
                else
                    n_clipped++;
            }
        }
        buf_free(&q);
        buf_free(&s);
        g_free(x);
        g_free(y);
    }
    g_assert_cmpint(n_clipped, >, 0);
    g_assert_cmpint(n_neg, >, 0);
    g_assert_cmpint(n_pos, >, 0);
    g_rand_free(r);
}

/* Q4_0's nibble order, spelled out: byte j holds elements j (low) and j + 16 (high). */
static void test_q4_layout(void)
{
    float x[32];
    /* m = -8 at element 0, so d = 1 and u_j = x_j + 8 */
    for (int j = 0; j < 32; j++)
        x[j] = (float)((j * 5) % 16 - 8);
    x[0] = -8;
    uint8_t q[16];
    uint16_t s;
    vl2_quantize_row_q4(x, 32, q, &s);
    g_assert_cmpuint(s, ==, 0x3c00);
    for (int j = 0; j < 16; j++) {
        g_assert_cmpint(q[j] & 0x0f, ==, (int)x[j] + 8);
        g_assert_cmpint(q[j] >> 4, ==, (int)x[j + 16] + 8);
    }
    /* and the same for Q8_0: amax 127 gives d = 1 */
    x[5] = 127;
    int8_t q8[32];
    vl2_quantize_row_q8(x, 32, q8, &s);
    g_assert_cmpuint(s, ==, 0x3c00);
    for (int j = 0; j < 32; j++)
        g_assert_cmpint(q8[j], ==, (int)x[j]);
}

/* ---- quantized activations ------------------------------------------------------------------- */

static void test_quantize_x(void)
{
    GRand *r = g_rand_new_with_seed(3);
    for (size_t v = 0; v < G_N_ELEMENTS(isas); v++) {
        if (!force(isas[v]))
            continue;
        for (size_t li = 0; li < G_N_ELEMENTS(lengths); li++) {
            int n = lengths[li];
            float *x = g_new(float, n);
            random_row(r, x, n);
            size_t bytes = vl2_qx_bytes(n);
            buf b1 = buf_new(bytes, 3), b2 = buf_new(bytes, 0);
            memset(b1.p, 0x55, bytes); /* the padding must be cleared */
            vl2_qx a, ref;
            vl2_qx_init(&a, b1.p, n);
            vl2_qx_init(&ref, b2.p, n);
            g_assert_cmpint(a.n_pad % VL2_QX_PAD, ==, 0);
            g_assert_cmpuint((uintptr_t)a.qs % 64, ==, 0);
            g_assert_cmpuint((uintptr_t)a.d % 64, ==, 0);
            g_assert_cmpuint((uintptr_t)(a.c4 + a.n_pad / 8), <=, (uintptr_t)b1.p + bytes);
            vl2_quantize_x(x, &a);
            vl2_quantize_x_ref(x, &ref);
            size_t np = (size_t)a.n_pad;
            g_assert_cmpmem(a.qs, np, ref.qs, np);
            g_assert_cmpmem(a.d, np / 32 * sizeof(float), ref.d, np / 32 * sizeof(float));
            g_assert_cmpmem(a.c8, np, ref.c8, np);
            g_assert_cmpmem(a.qs4, np, ref.qs4, np);
            g_assert_cmpmem(a.c4, np / 2, ref.c4, np / 2);
            /* the derived layouts, spelled out */
            for (int i = 0; i < a.n_pad; i += 4)
                g_assert_cmpint(a.c8[i / 4], ==,
                                -128 * (a.qs[i] + a.qs[i + 1] + a.qs[i + 2] + a.qs[i + 3]));
            for (int i = 0; i < a.n_pad; i++) {
                int g = i / 128, k = i % 128 % 64 / 16, j = i % 16, half = i % 128 / 64;
                g_assert_cmpint(a.qs4[i], ==, a.qs[128 * g + 32 * k + 16 * half + j]);
            }
            for (int i = 0; i < a.n_pad / 8; i++) {
                int g = i / 16, lane = i % 16, s4 = 0;
                for (int t = 0; t < 4; t++)
                    s4 += a.qs4[128 * g + 4 * lane + t] + a.qs4[128 * g + 64 + 4 * lane + t];
                g_assert_cmpint(a.c4[i], ==, -8 * s4);
            }
            for (int i = n; i < a.n_pad; i++)
                g_assert_cmpint(a.qs[i], ==, 0);
            for (int i = 0; i < n; i++) {
                float d = a.d[i / 32];
                g_assert_cmpint(a.qs[i], >=, -127);
                g_assert_cmpint(a.qs[i], <=, 127);
                /* (x * (127 / amax)) rounds twice: allow a few ulps past half a step */
                g_assert_cmpfloat(fabs(x[i] - (double)d * a.qs[i]), <=, d * (0.5 + 1e-6));
            }
            buf_free(&b1);
            buf_free(&b2);
            g_free(x);
        }
    }
    vl2_kernels_force_isa(NULL);
    g_rand_free(r);
}

/* ---- gemv against the reference -------------------------------------------------------------- */

typedef enum { FMT_Q8, FMT_Q4, FMT_BF16 } fmt;

typedef struct {
    fmt f;
    int n, rows;
    buf qs, sc;     /* q8 / q4 */
    buf w;          /* bf16, row stride ldw */
    size_t ldw;
    float *x;
    buf xbuf, xf;   /* the vl2_qx storage; float x at a 4-byte misalignment for bf16 */
    vl2_qx qx;
} problem;

static uint16_t bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static void problem_init(problem *p, fmt f, int n, int rows, GRand *r, size_t off)
{
    memset(p, 0, sizeof *p);
    p->f = f;
    p->n = n;
    p->rows = rows;
    float *row = g_new(float, n);
    if (f == FMT_BF16) {
        p->ldw = (size_t)n + (size_t)g_rand_int_range(r, 0, 3);
        p->w = buf_new((size_t)rows * p->ldw * 2, off);
        for (int k = 0; k < rows; k++)
            for (int i = 0; i < n; i++) {
                uint16_t b = bf16_of((float)g_rand_double_range(r, -1, 1));
                memcpy((uint8_t *)p->w.p + 2 * ((size_t)k * p->ldw + i), &b, 2);
            }
    } else {
        size_t row_bytes = f == FMT_Q8 ? (size_t)n : (size_t)n / 2;
        p->qs = buf_new(row_bytes * rows, off);
        p->sc = buf_new((size_t)rows * n / 32 * 2, off % 2 ? 1 : 2);
        for (int k = 0; k < rows; k++) {
            random_row(r, row, n);
            uint8_t *q = (uint8_t *)p->qs.p + row_bytes * k;
            uint16_t tmp[10944 / 32];
            if (f == FMT_Q8)
                vl2_quantize_row_q8(row, n, (int8_t *)q, tmp);
            else
                vl2_quantize_row_q4(row, n, q, tmp);
            memcpy((uint8_t *)p->sc.p + (size_t)k * n / 32 * 2, tmp, (size_t)n / 32 * 2);
        }
    }
    /* x: random, with some all-zero blocks; float copy at a 4-byte (not 64) alignment */
    p->xf = buf_new((size_t)n * sizeof(float), 4 * (off % 4 + 1));
    p->x = p->xf.p;
    for (int i = 0; i < n; i++)
        p->x[i] = (float)g_rand_double_range(r, -2, 2);
    if (n >= 64)
        memset(p->x + 32, 0, 32 * sizeof(float));
    p->xbuf = buf_new(vl2_qx_bytes(n), off);
    vl2_qx_init(&p->qx, p->xbuf.p, n);
    vl2_quantize_x_ref(p->x, &p->qx);
    g_free(row);
}

static void problem_free(problem *p)
{
    buf_free(&p->qs);
    buf_free(&p->sc);
    buf_free(&p->w);
    buf_free(&p->xbuf);
    buf_free(&p->xf);
}

static void run(const problem *p, bool ref, int r0, int r1, float *y)
{
    switch (p->f) {
    case FMT_Q8:
        (ref ? vl2_gemv_q8_ref : vl2_gemv_q8)(p->qs.p, p->sc.p, p->n, r0, r1, &p->qx, y);
        break;
    case FMT_Q4:
        (ref ? vl2_gemv_q4_ref : vl2_gemv_q4)(p->qs.p, p->sc.p, p->n, r0, r1, &p->qx, y);
        break;
    case FMT_BF16:
        (ref ? vl2_gemv_bf16_ref : vl2_gemv_bf16)(p->w.p, p->ldw, p->n, r0, r1, p->x, y);
        break;
    }
}

/* S of the header comment for row k. */
static double abs_sum(const problem *p, int k)
{
    double s = 0;
    int n = p->n;
    if (p->f == FMT_BF16) {
        for (int i = 0; i < n; i++) {
            union { uint32_t u; float f; } v = { (uint32_t)get_u16(p->w.p, (size_t)k * p->ldw + i) << 16 };
            s += fabs((double)v.f * p->x[i]);
        }
        return s;
    }
    for (int b = 0; b < n / 32; b++) {
        double d = fabs((float)(f16(get_u16(p->sc.p, (size_t)k * n / 32 + b)) * p->qx.d[b]));
        double t = 0;
        for (int j = 0; j < 32; j++) {
            int i = b * 32 + j, w;
            if (p->f == FMT_Q8) {
                w = ((const int8_t *)p->qs.p)[(size_t)k * n + i];
            } else {
                uint8_t byte = ((const uint8_t *)p->qs.p)[(size_t)k * n / 2 + b * 16 + j % 16];
                w = (j < 16 ? byte & 0x0f : byte >> 4) - 8;
            }
            t += fabs((double)w * p->qx.qs[i]);
        }
        s += d * t;
    }
    return s;
}

static void check_problem(const problem *p, const char *isa, double *worst)
{
    static const int ranges[][2] = { { 0, N_ROWS }, { 1, N_ROWS - 2 }, { 3, 4 }, { 5, 5 },
                                     { 2, 8 } };
    float *want = g_new(float, p->rows), *got = g_new(float, p->rows);
    run(p, true, 0, p->rows, want);
    for (size_t ri = 0; ri < G_N_ELEMENTS(ranges); ri++) {
        int r0 = ranges[ri][0], r1 = ranges[ri][1];
        for (int k = 0; k < p->rows; k++)
            got[k] = NAN;
        run(p, false, r0, r1, got);
        for (int k = 0; k < p->rows; k++) {
            if (k < r0 || k >= r1) {
                g_assert_true(isnan(got[k])); /* untouched */
                continue;
            }
            double S = abs_sum(p, k);
            double tol = (p->n / 16 + 10) * ldexp(1, -24) * S;
            double err = fabs((double)got[k] - want[k]);
            if (err > tol)
                g_error("%s fmt %d n %d rows [%d,%d) row %d: %.9g vs %.9g, |err| %.3g > %.3g",
                        isa, p->f, p->n, r0, r1, k, got[k], want[k], err, tol);
            if (S > 0 && err / S > *worst)
                *worst = err / S;
        }
    }
    g_free(want);
    g_free(got);
}

static void test_gemv(gconstpointer data)
{
    fmt f = GPOINTER_TO_INT(data);
    GRand *r = g_rand_new_with_seed(10 + f);
    for (size_t v = 0; v < G_N_ELEMENTS(isas); v++) {
        if (!force(isas[v]))
            continue;
        double worst = 0;
        for (size_t li = 0; li < G_N_ELEMENTS(lengths); li++)
            for (size_t off = 0; off < 3; off++) {
                problem p;
                problem_init(&p, f, lengths[li], N_ROWS, r, off * 7);
                check_problem(&p, isas[v], &worst);
                problem_free(&p);
            }
        /* bf16 rows of any length, the tails of every width */
        if (f == FMT_BF16)
            for (int n = 1; n <= 80; n++) {
                problem p;
                problem_init(&p, f, n, N_ROWS, r, (size_t)n % 5);
                check_problem(&p, isas[v], &worst);
                problem_free(&p);
            }
        g_test_message("%s: largest |y - ref| / S = %.3g", isas[v], worst);
    }
    vl2_kernels_force_isa(NULL);
    g_rand_free(r);
}

/* ---- exact integer paths ----------------------------------------------------------------------- */

/* Scales of +-1 (and x scales of 1) make every float32 step exact, so each variant must
 * return the integer dot itself: this pins the byte-dot tricks (q + 128, |q| with sign, u - 8)
 * including the extreme values -128 / 127 for Q8_0 weights, 0 / 15 nibbles, -127 / 127 for x,
 * all-zero blocks and negative scales. n stays <= 896 so that sums fit in 24 bits. */
static void test_gemv_exact(void)
{
    GRand *r = g_rand_new_with_seed(20);
    const int ns[] = { 32, 64, 96, 480, 512, 544, 896 };
    for (size_t v = 0; v < G_N_ELEMENTS(isas); v++) {
        if (!force(isas[v]))
            continue;
        for (size_t ni = 0; ni < G_N_ELEMENTS(ns); ni++)
            for (int pattern = 0; pattern < 4; pattern++) {
                int n = ns[ni], nb = n / 32, rows = 7;
                buf q8 = buf_new((size_t)rows * n, 1), q4 = buf_new((size_t)rows * n / 2, 3);
                buf sc = buf_new((size_t)rows * nb * 2, 1);
                buf xb = buf_new(vl2_qx_bytes(n), 5);
                vl2_qx x;
                vl2_qx_init(&x, xb.p, n);
                memset(x.qs, 0, x.n_pad);
                memset(x.d, 0, x.n_pad / 32 * sizeof(float));
                int8_t *w8 = q8.p;
                uint8_t *w4 = q4.p;
                for (int i = 0; i < n; i++)
                    x.qs[i] = pattern == 0 ? -127 : pattern == 1 ? 127
                                                  : (int8_t)g_rand_int_range(r, -127, 128);
                for (int b = 0; b < nb; b++)
                    x.d[b] = 1.0f;
                vl2_qx_derive(&x);
                for (int k = 0; k < rows; k++)
                    for (int b = 0; b < nb; b++) {
                        bool zero = pattern == 3 && (b + k) % 3 == 0;
                        uint16_t h = zero ? 0 : (k + b) % 2 ? 0xbc00 : 0x3c00; /* -1, +1 */
                        memcpy((uint8_t *)sc.p + 2 * ((size_t)k * nb + b), &h, 2);
                        for (int j = 0; j < 32; j++) {
                            size_t i = (size_t)k * n + (size_t)b * 32 + j;
                            if (zero)
                                w8[i] = 0;
                            else if (pattern < 2)
                                w8[i] = k % 2 ? -128 : 127;
                            else
                                w8[i] = (int8_t)g_rand_int_range(r, -128, 128);
                        }
                        for (int j = 0; j < 16; j++) {
                            size_t i = (size_t)k * n / 2 + (size_t)b * 16 + j;
                            if (zero)
                                w4[i] = 0x88;
                            else if (pattern < 2)
                                w4[i] = k % 2 ? 0x00 : 0xff;
                            else
                                w4[i] = (uint8_t)g_rand_int_range(r, 0, 256);
                        }
                    }
                float y8[7], y4[7];
                vl2_gemv_q8(q8.p, sc.p, n, 0, rows, &x, y8);
                vl2_gemv_q4(q4.p, sc.p, n, 0, rows, &x, y4);
                for (int k = 0; k < rows; k++) {
                    int64_t s8 = 0, s4 = 0;
                    for (int b = 0; b < nb; b++) {
                        int sign = (int)f16(get_u16(sc.p, (size_t)k * nb + b));
                        int64_t d8 = 0, d4 = 0;
                        for (int j = 0; j < 32; j++) {
                            int i = b * 32 + j;
                            uint8_t byte = w4[(size_t)k * n / 2 + b * 16 + j % 16];
                            d8 += (int64_t)w8[(size_t)k * n + i] * x.qs[i];
                            d4 += (int64_t)((j < 16 ? byte & 0x0f : byte >> 4) - 8) * x.qs[i];
                        }
                        s8 += sign * d8;
                        s4 += sign * d4;
                    }
                    g_assert_cmpfloat(y8[k], ==, (double)s8);
                    g_assert_cmpfloat(y4[k], ==, (double)s4);
                }
                buf_free(&q8);
                buf_free(&q4);
                buf_free(&sc);
                buf_free(&xb);
            }
    }
    vl2_kernels_force_isa(NULL);
    g_rand_free(r);
}

/* ---- no reads outside the rows ----------------------------------------------------------------- */

/* Weights placed against an inaccessible page, ending at it or starting right after it: a
 * kernel that reads a byte outside its rows (masked loads included, which ASan does not see)
 * takes a segfault. */
typedef struct {
    uint8_t *map;
    size_t map_len;
    void *p;
} guarded;

static guarded guarded_new(const void *data, size_t len, bool at_end)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + page - 1) / page * page;
    guarded g;
    g.map_len = body + 2 * page;
    g.map = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(g.map != MAP_FAILED);
    g_assert_cmpint(mprotect(g.map, page, PROT_NONE), ==, 0);
    g_assert_cmpint(mprotect(g.map + page + body, page, PROT_NONE), ==, 0);
    g.p = at_end ? g.map + page + body - len : g.map + page;
    memcpy(g.p, data, len);
    return g;
}

static void guarded_free(guarded *g)
{
    munmap(g->map, g->map_len);
}

static void test_guard_pages(void)
{
    GRand *r = g_rand_new_with_seed(30);
    /* block counts that leave every tail of a 16-block group; for bf16 also odd lengths */
    const int ns[] = { 32, 64, 96, 160, 544, 896, 6848, 1, 17, 45, 1281 };
    for (size_t v = 0; v < G_N_ELEMENTS(isas); v++) {
        if (!force(isas[v]))
            continue;
        for (size_t ni = 0; ni < G_N_ELEMENTS(ns); ni++)
            for (int f = FMT_Q8; f <= FMT_BF16; f++)
                for (int at_end = 0; at_end < 2; at_end++) {
                    int n = ns[ni], rows = 5;
                    if (n % 32 && f != FMT_BF16)
                        continue;
                    problem p;
                    problem_init(&p, f, n, rows, r, 0);
                    float want[5], got[5];
                    run(&p, true, 0, rows, want);
                    /* the same problem with its weights moved against the guard pages */
                    problem g = p;
                    guarded a, b = { 0 };
                    if (f == FMT_BF16) {
                        /* the last row ends at column n even when ldw > n */
                        size_t len = ((size_t)(rows - 1) * p.ldw + (size_t)n) * 2;
                        a = guarded_new(p.w.p, len, at_end);
                        g.w.p = a.p;
                    } else {
                        size_t len = (size_t)rows * (f == FMT_Q8 ? n : n / 2);
                        a = guarded_new(p.qs.p, len, at_end);
                        b = guarded_new(p.sc.p, (size_t)rows * n / 32 * 2, at_end);
                        g.qs.p = a.p;
                        g.sc.p = b.p;
                    }
                    run(&g, false, 0, rows, got);
                    for (int k = 0; k < rows; k++)
                        g_assert_cmpfloat(fabs(got[k] - want[k]), <=,
                                          (n / 16 + 10) * ldexp(1, -24) * abs_sum(&p, k));
                    guarded_free(&a);
                    if (b.map)
                        guarded_free(&b);
                    problem_free(&p);
                }
    }
    vl2_kernels_force_isa(NULL);
    g_rand_free(r);
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static void test_dispatch(void)
{
    const char *isa = vl2_kernels_isa();
    g_test_message("kernels: %s", isa);
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        g_assert_cmpstr(isa, ==, "avx512-vnni");
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        g_assert_cmpstr(isa, ==, "avx2");
#endif
    g_assert_true(vl2_kernels_force_isa("scalar"));
    g_assert_cmpstr(vl2_kernels_isa(), ==, "scalar");
    g_assert_false(vl2_kernels_force_isa("no-such-isa"));
    g_assert_cmpstr(vl2_kernels_isa(), ==, "scalar");
    g_assert_true(vl2_kernels_force_isa(NULL));
    g_assert_cmpstr(vl2_kernels_isa(), ==, isa);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/quant/f16", test_f16);
    g_test_add_func("/engine/quant/dispatch", test_dispatch);
    g_test_add_func("/engine/quant/roundtrip-q8", test_roundtrip_q8);
    g_test_add_func("/engine/quant/roundtrip-q4", test_roundtrip_q4);
    g_test_add_func("/engine/quant/q4-layout", test_q4_layout);
    g_test_add_func("/engine/quant/quantize-x", test_quantize_x);
    g_test_add_data_func("/engine/quant/gemv-q8", GINT_TO_POINTER(FMT_Q8), test_gemv);
    g_test_add_data_func("/engine/quant/gemv-q4", GINT_TO_POINTER(FMT_Q4), test_gemv);
    g_test_add_data_func("/engine/quant/gemv-bf16", GINT_TO_POINTER(FMT_BF16), test_gemv);
    g_test_add_func("/engine/quant/gemv-exact", test_gemv_exact);
    g_test_add_func("/engine/quant/guard-pages", test_guard_pages);
    return g_test_run();
}
