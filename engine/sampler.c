/* sampler.c - logits -> the next token id.
 *
 * Optional logit biases (OpenAI's logit_bias) are added to the logits first. The official
 * inference example calls transformers' generate(do_sample=True, temperature=0.4,
 * top_p=0.9, repetition_penalty=1.1) and inherits top_k=50 from GenerationConfig. generate()
 * applies, in this order: the repetition penalty (to every id already in input_ids, prompt
 * included: a positive logit is divided by the penalty, a negative one multiplied), the
 * temperature, top-k (ties with the k-th value survive), top-p (drop the lowest-probability
 * tokens whose cumulative mass stays within 1 - top_p, always keeping the most likely), then a
 * draw from the softmax of what is left. This file follows that order. Random numbers come
 * from xoshiro256** seeded through splitmix64, so a seed reproduces a generation exactly.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vl2-private.h"

/* ---------------------------------------------------------------------------------------------
 * Random numbers
 */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void vl2_rng_seed(vl2_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(vl2_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double vl2_rng_uniform(vl2_rng *rng)
{
    return (double)(next_u64(rng) >> 11) * 0x1.0p-53;
}

/* ---------------------------------------------------------------------------------------------
 * Sampling
 */

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* Orders candidate indices by descending value; ties keep the lower id first. */
static int by_value_desc(gconstpointer a, gconstpointer b, gpointer values)
{
    int i = *(const int *)a, j = *(const int *)b;
    float x = ((const float *)values)[i], y = ((const float *)values)[j];
    if (x != y)
        return x > y ? -1 : 1;
    return i - j;
}

/* Moves the indices of the k largest values (with ties at the k-th value) to the front of idx
 * and returns how many were kept. O(n) average with a threshold found by quickselect. */
static int keep_top_k(const float *v, int *idx, int n, int k, float *tmp)
{
    if (k >= n)
        return n;
    /* quickselect the k-th largest value on a copy of the candidates' values */
    for (int i = 0; i < n; i++)
        tmp[i] = v[idx[i]];
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = tmp[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (tmp[i] > pivot)
                i++;
            while (tmp[j] < pivot)
                j--;
            if (i <= j) {
                float t = tmp[i];
                tmp[i] = tmp[j];
                tmp[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
    float threshold = tmp[want];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (v[idx[i]] >= threshold)
            idx[m++] = idx[i];
    return m;
}

int32_t vl2_sample(const float *logits, int n_vocab, const vl2_generate_params *p,
                   const uint8_t *seen, vl2_rng *rng, vl2_sampler_scratch *scratch)
{
    float *v = scratch->values;
    int *idx = scratch->index;
    memcpy(v, logits, (size_t)n_vocab * sizeof(float));
    for (int i = 0; i < p->n_logit_bias; i++)
        v[p->logit_bias[i].id] += p->logit_bias[i].bias;

    if (p->repetition_penalty > 0 && p->repetition_penalty != 1.0f && seen)
        for (int i = 0; i < n_vocab; i++)
            if (seen[i])
                v[i] = v[i] < 0 ? v[i] * p->repetition_penalty : v[i] / p->repetition_penalty;

    /* NaN or +inf is a broken model, not a choice; -inf is a banned token, but not all of them */
    bool any = false;
    for (int i = 0; i < n_vocab; i++) {
        if (isnan(v[i]) || v[i] == INFINITY)
            return -1;
        any |= v[i] != -INFINITY;
    }
    if (!any)
        return -1;

    if (!(p->temperature > 0))
        return argmax(v, n_vocab);

    int n = n_vocab;
    for (int i = 0; i < n; i++)
        idx[i] = i;
    if (p->top_k > 0)
        n = keep_top_k(v, idx, n, p->top_k, scratch->select);

    /* Candidates in descending order; probabilities over the candidates only, since top-k's
     * removed tokens are -inf to transformers' TopPLogitsWarper. The temperature divides the
     * distance to the best logit (the order does not change): a small one cannot overflow. */
    g_qsort_with_data(idx, n, sizeof *idx, by_value_desc, v);
    const double mx = v[idx[0]], inv_t = 1.0 / p->temperature;
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += exp(((double)v[idx[i]] - mx) * inv_t);

    if (p->top_p > 0 && p->top_p < 1) {
        /* Keep the prefix (in descending order) until the mass of what is dropped would exceed
         * 1 - top_p: a token is dropped when the cumulative mass up to and including it, in
         * ascending order, is <= 1 - top_p. */
        double below = 0;
        int keep = n;
        for (int i = n - 1; i > 0; i--) {
            double pr = exp(((double)v[idx[i]] - mx) * inv_t) / sum;
            if (below + pr <= 1.0 - p->top_p) {
                below += pr;
                keep = i;
            } else {
                break;
            }
        }
        n = keep;
        sum = 0;
        for (int i = 0; i < n; i++)
            sum += exp(((double)v[idx[i]] - mx) * inv_t);
    }

    /* the best candidate has weight 1, so sum >= 1; rounding can leave u past the last sum:
     * then the last candidate with a weight (never a banned one) */
    double u = vl2_rng_uniform(rng) * sum, acc = 0;
    int last = idx[0];
    for (int i = 0; i < n; i++) {
        double w = exp(((double)v[idx[i]] - mx) * inv_t);
        if (w > 0)
            last = idx[i];
        acc += w;
        if (u < acc)
            return idx[i];
    }
    return last;
}
