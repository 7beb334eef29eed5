/* test-sampler.c - sampling follows transformers' generate(): penalty, temperature, top-k and
 * top-p. */
#include <math.h>
#include <string.h>

#include "test-util.h"
#include "vl2-private.h"

typedef struct {
    vl2_sampler_scratch s;
    vl2_rng rng;
} sampler;

static void sampler_init(sampler *sm, int n, uint64_t seed)
{
    sm->s.values = g_new(float, n);
    sm->s.index = g_new(int, n);
    sm->s.select = g_new(float, n);
    vl2_rng_seed(&sm->rng, seed);
}

static void sampler_clear(sampler *sm)
{
    g_free(sm->s.values);
    g_free(sm->s.index);
    g_free(sm->s.select);
}

static vl2_generate_params params(float temperature, float top_p, int top_k, float penalty)
{
    vl2_generate_params p = vl2_generate_default_params();
    p.temperature = temperature;
    p.top_p = top_p;
    p.top_k = top_k;
    p.repetition_penalty = penalty;
    return p;
}

static void test_greedy_and_penalty(void)
{
    sampler sm;
    sampler_init(&sm, 4, 1);
    float logits[4] = { 2.0f, 1.9f, -0.5f, -3.0f };
    uint8_t seen[4] = { 0 };
    vl2_generate_params p = params(0, 1, 0, 1);
    g_assert_cmpint(vl2_sample(logits, 4, &p, seen, &sm.rng, &sm.s), ==, 0);
    /* a positive logit is divided by the penalty: 2.0 / 1.1 < 1.9 */
    seen[0] = 1;
    p.repetition_penalty = 1.1f;
    g_assert_cmpint(vl2_sample(logits, 4, &p, seen, &sm.rng, &sm.s), ==, 1);
    /* a negative logit is multiplied: -0.5 * 10 falls below -3 */
    float neg[4] = { -0.5f, -1.0f, -4.0f, -6.0f };
    uint8_t seen2[4] = { 1, 0, 0, 0 };
    p.repetition_penalty = 10;
    g_assert_cmpint(vl2_sample(neg, 4, &p, seen2, &sm.rng, &sm.s), ==, 1);
    /* the logits themselves are untouched */
    g_assert_cmpfloat(logits[0], ==, 2.0f);
    sampler_clear(&sm);
}

/* Empirical frequencies follow softmax(logits / T) over the kept tokens. */
static void expect_distribution(const float *logits, int n, vl2_generate_params p,
                                const double *want)
{
    sampler sm;
    sampler_init(&sm, n, 12345);
    int counts[16] = { 0 };
    const int draws = 40000;
    for (int i = 0; i < draws; i++)
        counts[vl2_sample(logits, n, &p, NULL, &sm.rng, &sm.s)]++;
    for (int i = 0; i < n; i++) {
        double f = (double)counts[i] / draws;
        /* 5 standard deviations of a binomial proportion, plus a little */
        double tol = 5 * sqrt(want[i] * (1 - want[i]) / draws) + 1e-3;
        if (fabs(f - want[i]) > tol)
            g_error("token %d: frequency %.4f, want %.4f", i, f, want[i]);
    }
    sampler_clear(&sm);
}

static void test_temperature(void)
{
    float logits[4] = { 1.0f, 0.0f, -1.0f, 0.5f };
    double want[4], sum = 0;
    for (int i = 0; i < 4; i++)
        sum += exp(logits[i] / 0.7);
    for (int i = 0; i < 4; i++)
        want[i] = exp(logits[i] / 0.7) / sum;
    expect_distribution(logits, 4, params(0.7f, 1, 0, 1), want);
}

static void test_top_p(void)
{
    /* probabilities 0.5, 0.3, 0.14, 0.06 at temperature 1; ascending cumulative mass 0.06, 0.2,
     * 0.5, 1. A token goes when its cumulative mass is <= 1 - top_p (transformers'
     * TopPLogitsWarper); the most likely token always stays. */
    float logits[4] = { logf(0.5f), logf(0.3f), logf(0.14f), logf(0.06f) };
    double keep2[4] = { 0.5 / 0.8, 0.3 / 0.8, 0, 0 };
    expect_distribution(logits, 4, params(1, 0.75f, 0, 1), keep2);
    double keep3[4] = { 0.5 / 0.94, 0.3 / 0.94, 0.14 / 0.94, 0 };
    expect_distribution(logits, 4, params(1, 0.85f, 0, 1), keep3);
    double keep1[4] = { 1, 0, 0, 0 };
    expect_distribution(logits, 4, params(1, 0.01f, 0, 1), keep1);
}

static void test_top_k(void)
{
    float logits[5] = { 3, 1, 3, 3, 2 };
    /* k = 2, but the k-th value (3) is tied three ways: all three threes survive */
    double want[5] = { 1.0 / 3, 0, 1.0 / 3, 1.0 / 3, 0 };
    expect_distribution(logits, 5, params(1, 1, 2, 1), want);
    /* top_k 1 is greedy */
    float l2[5] = { 0, 4, 1, 3.9f, 2 };
    double w2[5] = { 0, 1, 0, 0, 0 };
    expect_distribution(l2, 5, params(1.5f, 1, 1, 1), w2);
    /* top-k then top-p: probabilities among the kept two are renormalised first */
    float l3[4] = { logf(0.4f), logf(0.35f), logf(0.2f), logf(0.05f) };
    double w3[4] = { 0.4 / 0.75, 0.35 / 0.75, 0, 0 };
    expect_distribution(l3, 4, params(1, 0.99f, 2, 1), w3);
}

static void test_seed_reproducible(void)
{
    float logits[64];
    for (int i = 0; i < 64; i++)
        logits[i] = (float)sin(i * 1.3) * 2;
    vl2_generate_params p = params(1, 0.95f, 0, 1);
    int a[50], b[50], c[50];
    for (int run = 0; run < 3; run++) {
        sampler sm;
        sampler_init(&sm, 64, run < 2 ? 99 : 100);
        int *out = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < 50; i++)
            out[i] = vl2_sample(logits, 64, &p, NULL, &sm.rng, &sm.s);
        sampler_clear(&sm);
    }
    g_assert_cmpmem(a, sizeof a, b, sizeof b);
    g_assert_true(memcmp(a, c, sizeof a) != 0);
}

/* NaN or infinite logits (broken weights, a broken config) made top-k keep no candidate and
 * the draw read idx[-1]; a greedy pick returned token 0. They are an error (-1) in every mode,
 * and tokens at -inf (banned) are never drawn. */
static void test_non_finite(void)
{
    sampler sm;
    sampler_init(&sm, 4, 7);
    const vl2_generate_params modes[] = {
        params(0, 1, 0, 1), params(0.7f, 1, 0, 1), params(0.7f, 0.9f, 2, 1.1f),
        params(1, 0.5f, 1, 1),
    };
    const float bad[][4] = {
        { NAN, NAN, NAN, NAN }, { 1, NAN, 2, 3 }, { 1, 2, INFINITY, 0 },
        { -INFINITY, -INFINITY, -INFINITY, -INFINITY }, { NAN, -INFINITY, INFINITY, 1 },
    };
    uint8_t seen[4] = { 1, 1, 0, 0 };
    for (size_t m = 0; m < G_N_ELEMENTS(modes); m++)
        for (size_t b = 0; b < G_N_ELEMENTS(bad); b++)
            g_assert_cmpint(vl2_sample(bad[b], 4, &modes[m], seen, &sm.rng, &sm.s), ==, -1);
    /* a finite logit beside banned ones: always it */
    const float banned[4] = { -INFINITY, 0.5f, -INFINITY, -INFINITY };
    for (size_t m = 0; m < G_N_ELEMENTS(modes); m++)
        for (int i = 0; i < 50; i++)
            g_assert_cmpint(vl2_sample(banned, 4, &modes[m], seen, &sm.rng, &sm.s), ==, 1);
    /* a tiny temperature scales finite logits past the float range: still a draw, the best */
    const float big[4] = { 3e38f, -3e38f, 1e38f, 0 };
    vl2_generate_params cold = params(1e-30f, 1, 0, 1);
    g_assert_cmpint(vl2_sample(big, 4, &cold, NULL, &sm.rng, &sm.s), ==, 0);
    sampler_clear(&sm);
}

static void test_rng_uniform(void)
{
    vl2_rng r;
    vl2_rng_seed(&r, 5);
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        double u = vl2_rng_uniform(&r);
        g_assert_cmpfloat(u, >=, 0);
        g_assert_cmpfloat(u, <, 1);
        sum += u;
    }
    g_assert_cmpfloat(fabs(sum / 100000 - 0.5), <, 0.005);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/sampler/greedy-and-penalty", test_greedy_and_penalty);
    g_test_add_func("/engine/sampler/temperature", test_temperature);
    g_test_add_func("/engine/sampler/top-p", test_top_p);
    g_test_add_func("/engine/sampler/top-k", test_top_k);
    g_test_add_func("/engine/sampler/seed", test_seed_reproducible);
    g_test_add_func("/engine/sampler/rng", test_rng_uniform);
    g_test_add_func("/engine/sampler/non-finite", test_non_finite);
    return g_test_run();
}
