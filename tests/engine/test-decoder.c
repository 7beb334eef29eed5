/* test-decoder.c - decoder pieces the golden models do not exercise: RoPE scaling (linear, YaRN)
 * and the group-limited routers, checked against values computed independently from the
 * formulas of modeling_deepseek.py (numpy, float32 where the reference uses float32); and the
 * fast decoder against the plain reference decoder (decoder-ref.c) on the golden mini models,
 * through prefill, decoding and chunked prefill. */
#include <math.h>
#include <string.h>

#include "decoder-ref.h"
#include "decoder.h"
#include "test-util.h"

static void parse(const char *lm_json, vl2_config *cfg)
{
    g_autofree char *json = g_strdup_printf(
        "{\"model_type\": \"deepseek_vl_v2\", \"language_config\": %s, \"vision_config\": "
        "{\"width\": 48, \"layers\": 1, \"heads\": 3, \"patch_size\": 14}, "
        "\"projector_config\": {\"input_dim\": 48, \"n_embed\": 32}}",
        lm_json);
    vl2_error err;
    if (vl2_config_parse(json, strlen(json), "test.json", cfg, &err) != VL2_OK)
        g_error("%s", err.message);
}

/* DeepSeek-V2's yarn settings on a 64-dim rope: values from the reference's formulas. */
static void test_yarn(void)
{
    vl2_model m = { .dir = "test" };
    parse("{\"hidden_size\": 32, \"use_mla\": true, \"kv_lora_rank\": 16, \"qk_rope_head_dim\": "
          "64, \"qk_nope_head_dim\": 128, \"v_head_dim\": 16, \"num_attention_heads\": 2, "
          "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
          "\"original_max_position_embeddings\": 4096, \"beta_fast\": 32, \"beta_slow\": 1, "
          "\"mscale\": 0.707, \"mscale_all_dim\": 0.707}}",
          &m.cfg);
    vl2_error err;
    g_assert_cmpint(vl2_decoder_init(&m, &err), ==, VL2_OK);
    /* correction range [10, 23]: below it extrapolated, above it interpolated by 1/40 */
    const int at[] = { 0, 5, 10, 16, 20, 25, 31 };
    const double want[] = { 1.0, 0.23713739216327667, 0.05623412877321243, 0.005500000435858965,
                            0.0007905694073997438, 1.8747354260995053e-05,
                            3.3338035336782923e-06 };
    for (size_t i = 0; i < G_N_ELEMENTS(at); i++)
        g_assert_cmpfloat(fabs(m.rope_inv_freq[at[i]] - want[i]) / want[i], <=, 1e-6);
    g_assert_cmpfloat(m.rope_mscale, ==, 1.0f); /* mscale == mscale_all_dim */
    /* softmax scale (128 + 64)^-0.5 * (0.1 * 0.707 * ln 40 + 1)^2 */
    g_assert_cmpfloat(fabs(m.attn_scale - 0.11472138679292611), <=, 1e-7);
    free(m.rope_inv_freq);
    vl2_config_clear(&m.cfg);

    /* mscale without mscale_all_dim scales cos/sin, not the softmax */
    vl2_model m2 = { .dir = "test" };
    parse("{\"hidden_size\": 32, \"use_mla\": true, \"kv_lora_rank\": 16, \"qk_rope_head_dim\": "
          "64, \"qk_nope_head_dim\": 128, \"v_head_dim\": 16, \"num_attention_heads\": 2, "
          "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"mscale\": 1.0}}",
          &m2.cfg);
    g_assert_cmpint(vl2_decoder_init(&m2, &err), ==, VL2_OK);
    g_assert_cmpfloat(fabs(m2.rope_mscale - 1.36888794541139), <=, 1e-6);
    g_assert_cmpfloat(fabs(m2.attn_scale - pow(192, -0.5)), <=, 1e-7);
    free(m2.rope_inv_freq);
    vl2_config_clear(&m2.cfg);
}

static void test_linear_and_mha_yarn(void)
{
    vl2_model m = { .dir = "test" };
    parse("{\"hidden_size\": 32, \"use_mla\": false, \"num_attention_heads\": 4, "
          "\"num_key_value_heads\": 4, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4}}",
          &m.cfg);
    vl2_error err;
    g_assert_cmpint(vl2_decoder_init(&m, &err), ==, VL2_OK);
    g_assert_cmpfloat(m.rope_pos_div, ==, 4.0f);
    g_assert_cmpint(m.rope_dim, ==, 8);
    g_assert_cmpfloat(fabs(m.rope_inv_freq[1] - 1.0 / pow(10000, 2.0 / 8)), <=, 1e-6);
    g_assert_cmpfloat(fabs(m.attn_scale - pow(8, -0.5)), <=, 1e-7);
    free(m.rope_inv_freq);
    vl2_config_clear(&m.cfg);

    vl2_model y = { .dir = "test" };
    parse("{\"hidden_size\": 32, \"use_mla\": false, \"num_attention_heads\": 4, "
          "\"num_key_value_heads\": 4, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}}",
          &y.cfg);
    g_assert_cmpint(vl2_decoder_init(&y, &err), ==, VL2_ERR_UNSUPPORTED);
    g_assert_nonnull(strstr(err.message, "yarn"));
    vl2_config_clear(&y.cfg);
}

/* ---------------------------------------------------------------------------------------------
 * Routers
 */

static vl2_lm_config router(const char *json)
{
    vl2_config cfg;
    parse(json, &cfg);
    vl2_lm_config lm = cfg.lm;
    vl2_config_clear(&cfg);
    return lm;
}

static bool has(const int *idx, int k, int e)
{
    for (int i = 0; i < k; i++)
        if (idx[i] == e)
            return true;
    return false;
}

static void test_greedy_router(void)
{
    /* "gready", the reference's misspelt default, reads as greedy */
    vl2_lm_config lm = router("{\"hidden_size\": 32, \"use_mla\": false, "
                              "\"num_attention_heads\": 4, "
                              "\"num_key_value_heads\": 4, "
                              "\"n_routed_experts\": 6, \"num_experts_per_tok\": 2, "
                              "\"routed_scaling_factor\": 1.5}");
    g_assert_cmpint(lm.topk_method, ==, VL2_TOPK_GREEDY);
    float s[6] = { 0.1f, 2.0f, -1.0f, 1.5f, 0.0f, 1.9f };
    float copy[6];
    memcpy(copy, s, sizeof s);
    int idx[2];
    float w[2];
    vl2_decoder_route(&lm, NULL, s, idx, w);
    g_assert_true(has(idx, 2, 1) && has(idx, 2, 5));
    double z = 0;
    for (int i = 0; i < 6; i++)
        z += exp(copy[i]);
    for (int k = 0; k < 2; k++) /* softmax score times the scaling factor, no normalisation */
        g_assert_cmpfloat(fabs(w[k] - 1.5 * exp(copy[idx[k]]) / z), <=, 1e-6);
}

static void test_group_limited_router(void)
{
    vl2_lm_config lm = router("{\"hidden_size\": 32, \"use_mla\": false, "
                              "\"num_attention_heads\": 4, "
                              "\"num_key_value_heads\": 4, "
                              "\"n_routed_experts\": 8, \"num_experts_per_tok\": 3, "
                              "\"topk_method\": \"group_limited_greedy\", \"n_group\": 4, "
                              "\"topk_group\": 2, \"norm_topk_prob\": true}");
    /* groups {0,1} {2,3} {4,5} {6,7}; best expert per group: 1.0, 3.0, 2.9, 2.5. Groups 1 and 2
     * win; the third pick comes from them (expert 4 at 2.8) even though expert 7 (2.5) of a
     * losing group scores more than expert 5 (0.5). */
    float s[8] = { 1.0f, 0.0f, 3.0f, 0.2f, 2.8f, 2.9f, 0.0f, 2.5f };
    int idx[3];
    float w[3];
    vl2_decoder_route(&lm, NULL, s, idx, w);
    g_assert_true(has(idx, 3, 2) && has(idx, 3, 5) && has(idx, 3, 4));
    g_assert_cmpfloat(fabs(w[0] + w[1] + w[2] - 1.0), <=, 1e-6); /* normalised, factor 1 */
}

static void test_noaux_tc_router(void)
{
    vl2_lm_config lm = router("{\"hidden_size\": 32, \"use_mla\": false, "
                              "\"num_attention_heads\": 4, "
                              "\"num_key_value_heads\": 4, "
                              "\"n_routed_experts\": 8, \"num_experts_per_tok\": 2, "
                              "\"topk_method\": \"noaux_tc\", \"scoring_func\": \"sigmoid\", "
                              "\"n_group\": 2, \"topk_group\": 1, \"norm_topk_prob\": true, "
                              "\"routed_scaling_factor\": 2.0}");
    /* The bias decides the choice, the unbiased sigmoid the weight. Group 0 = experts 0..3,
     * group 1 = 4..7; group score = sum of the best two biased scores. */
    float logits[8] = { 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f, 1.0f };
    float bias_v[8] = { 0.9f, 0.8f, 0.0f, 0.0f, 0.0f, 0.0f, 0.05f, 0.0f };
    vl2_tensor bias = { .dtype = VL2_DTYPE_F32, .ndim = 1, .shape = { 8 }, .n_elements = 8,
                        .data = bias_v, .n_bytes = sizeof bias_v };
    float s[8];
    memcpy(s, logits, sizeof s);
    int idx[2];
    float w[2];
    vl2_decoder_route(&lm, &bias, s, idx, w);
    /* group 0: 0.5+0.9 + 0.5+0.8 = 2.7 beats group 1: 0.731+0.05 + 0.731 = 1.51 */
    g_assert_true(has(idx, 2, 0) && has(idx, 2, 1));
    /* weights: sigmoid(0) = 0.5 each, normalised then x2 */
    g_assert_cmpfloat(fabs(w[0] - 1.0), <=, 1e-6);
    g_assert_cmpfloat(fabs(w[1] - 1.0), <=, 1e-6);

    /* The masked experts are 0.0, not -inf: when the winning group's biased scores are
     * negative, a masked expert is chosen over them, as in the reference. */
    float neg_bias[8] = { -0.1f, -0.9f, -0.9f, -0.9f, -5, -5, -5, -5 };
    bias.data = neg_bias;
    float l2[8] = { 0.0f, -8.0f, -8.0f, -8.0f, -8.0f, -8.0f, -8.0f, -8.0f };
    memcpy(s, l2, sizeof s);
    vl2_decoder_route(&lm, &bias, s, idx, w);
    /* group 0 wins (0.4 - 0.9 + ...); expert 0 (0.4) first, then a masked expert of group 1
     * (0.0 beats every other expert of group 0, all below -0.89) */
    g_assert_true(has(idx, 2, 0));
    int other = idx[0] == 0 ? idx[1] : idx[0];
    g_assert_cmpint(other, >=, 4);
}

/* ---------------------------------------------------------------------------------------------
 * The fast decoder against the reference decoder
 */

/* Largest error, relative to the reference's largest magnitude, of the fast decoder (f32 KV
 * cache, so only the order of float32 sums differs) over every step of the schedule. Measured
 * with no pool, 1 and 2 threads, at every VL2_ISA level of an AVX-512 machine: mini-tiny
 * logits 5.0e-7, hidden states 4.1e-7; mini-small 5.5e-7, 5.1e-7; mini-base 5.7e-7, 5.6e-7.
 * (The reference itself meets the official outputs of the golden cases to 2.1e-6 absolute.) */
#define REF_TOL 2e-6

/* Positions run per call: a prefill, single-token decode steps after it, then chunked prefill
 * after that prefix, once above and once within the decoder's few-positions limit (DECODE_T,
 * where it runs each expert per token). */
static const int schedule[] = { 20, 1, 1, 1, 1, 11, 3 };
#define N_STEPS G_N_ELEMENTS(schedule)

/* What every step of the schedule reports: logits [n_vocab], hidden states [n_layers][D]. */
typedef struct {
    float *logits[N_STEPS], *hidden[N_STEPS];
} run_outputs;

static int schedule_positions(void)
{
    int n = 0;
    for (size_t i = 0; i < N_STEPS; i++)
        n += schedule[i];
    return n;
}

static void run_outputs_alloc(run_outputs *r, const vl2_model *m)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    for (size_t i = 0; i < N_STEPS; i++) {
        r->logits[i] = g_new(float, lm->vocab_size);
        r->hidden[i] = g_new(float, (size_t)lm->num_hidden_layers * lm->hidden_size);
    }
}

static void run_outputs_clear(run_outputs *r)
{
    for (size_t i = 0; i < N_STEPS; i++) {
        g_free(r->logits[i]);
        g_free(r->hidden[i]);
    }
}

/* The test's one call of the fast decoder, so that a change of its signature is one line. */
static void fast_forward(const vl2_model *m, vl2_pool *pool, vl2_decoder_ws *ws, vl2_kv_cache *kv,
                         int n_past, const float *embeds, int T, float *logits, float *hidden)
{
    vl2_forward_out out = { logits, hidden };
    vl2_error err;
    if (vl2_decoder_forward(m, pool, ws, kv, n_past, embeds, T, &out, &err) != VL2_OK)
        g_error("vl2_decoder_forward: %s", err.message);
}

/* The schedule through the fast decoder on `pool` (NULL: the calling thread), with one
 * workspace kept across the steps (a session's way: buffers sized by the prefill serve the
 * steps after it) or none (ws NULL: buffers per pass). */
static void run_fast(const vl2_model *m, vl2_pool *pool, vl2_decoder_ws *ws, const float *embeds,
                     run_outputs *r)
{
    vl2_kv_cache kv;
    vl2_error err;
    g_assert_cmpint(vl2_kv_cache_init(&kv, m, schedule_positions(), VL2_KV_F32, &err), ==,
                    VL2_OK);
    run_outputs_alloc(r, m);
    for (size_t i = 0, pos = 0; i < N_STEPS; pos += schedule[i++])
        fast_forward(m, pool, ws, &kv, (int)pos, embeds + pos * m->cfg.lm.hidden_size,
                     schedule[i], r->logits[i], r->hidden[i]);
    vl2_kv_cache_free(&kv);
}

static void run_reference(const vl2_model *m, const float *embeds, run_outputs *r)
{
    vl2_ref_cache c;
    vl2_ref_cache_init(&c, m, schedule_positions());
    run_outputs_alloc(r, m);
    for (size_t i = 0, pos = 0; i < N_STEPS; pos += schedule[i++])
        vl2_ref_forward(m, &c, (int)pos, embeds + pos * m->cfg.lm.hidden_size, schedule[i],
                        r->logits[i], r->hidden[i]);
    vl2_ref_cache_free(&c);
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, size_t n)
{
    double diff = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    return diff / mag;
}

/* The largest rel_err of a run against the reference's, over every step. */
static void compare_runs(const vl2_model *m, const run_outputs *got, const run_outputs *want,
                         double *e_logits, double *e_hidden)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    *e_logits = *e_hidden = 0;
    for (size_t i = 0; i < N_STEPS; i++) {
        *e_logits = fmax(*e_logits, rel_err(got->logits[i], want->logits[i],
                                            (size_t)lm->vocab_size));
        *e_hidden = fmax(*e_hidden, rel_err(got->hidden[i], want->hidden[i],
                                            (size_t)lm->num_hidden_layers * lm->hidden_size));
    }
}

/* Input embeddings for n positions, deterministic: rows of the embedding table for
 * pseudo-random token ids, and at every fifth position a random vector of the same RMS (as an
 * image feature would be: no row of the table). */
static float *make_embeds(const vl2_model *m, int n)
{
    const int D = m->cfg.lm.hidden_size;
    float *e = g_new(float, (size_t)n * D);
    g_autoptr(GRand) rng = g_rand_new_with_seed(20240613);
    double ss = 0;
    int n_rows = 0;
    for (int p = 0; p < n; p++)
        if (p % 5 != 4) {
            vl2_decoder_embed(m, g_rand_int_range(rng, 0, m->cfg.lm.vocab_size), e + p * D);
            for (int i = 0; i < D; i++)
                ss += (double)e[p * D + i] * e[p * D + i];
            n_rows++;
        }
    const double amp = sqrt(3 * ss / ((double)n_rows * D)); /* uniform(-a, a) has RMS a/sqrt 3 */
    for (int p = 4; p < n; p += 5)
        for (int i = 0; i < D; i++)
            e[p * D + i] = (float)g_rand_double_range(rng, -amp, amp);
    return e;
}

/* A shallow copy of m whose layer `il` o_proj is a float32 copy with element 0 moved by
 * `delta` times the matrix's largest magnitude. Free with perturbed_free(). */
static vl2_model *perturbed_copy(const vl2_model *m, int il, double delta)
{
    vl2_model *p = g_memdup2(m, sizeof *m);
    p->layers = g_memdup2(m->layers, (size_t)m->cfg.lm.num_hidden_layers * sizeof *p->layers);
    vl2_tensor *wo = &p->layers[il].wo;
    float *w = g_new(float, wo->n_elements);
    vl2_to_f32(wo->data, wo->dtype, 0, (size_t)wo->n_elements, w);
    double mag = 0;
    for (int64_t i = 0; i < wo->n_elements; i++)
        mag = fmax(mag, fabs(w[i]));
    w[0] += (float)(delta * mag);
    wo->data = w;
    wo->dtype = VL2_DTYPE_F32;
    wo->n_bytes = (size_t)wo->n_elements * sizeof(float);
    return p;
}

static void perturbed_free(vl2_model *p, int il)
{
    g_free((void *)p->layers[il].wo.data);
    g_free(p->layers);
    g_free(p);
}

static void test_reference(gconstpointer data)
{
    const char *name = data;
    g_autofree char *dir = g_build_filename(test_fixture_dir(), name, NULL);
    vl2_model_params mp = vl2_model_default_params();
    vl2_model *m;
    vl2_error err;
    if (vl2_model_load(dir, &mp, &m, &err) != VL2_OK)
        g_error("cannot load %s: %s", dir, err.message);
    float *embeds = make_embeds(m, schedule_positions());

    run_outputs ref;
    run_reference(m, embeds, &ref);

    /* the calling thread alone without a workspace, pools of 1 and 2 threads with one */
    const int threads[] = { 0, 1, 2 };
    for (size_t i = 0; i < G_N_ELEMENTS(threads); i++) {
        vl2_pool *pool = threads[i] ? vl2_pool_new(threads[i]) : NULL;
        vl2_decoder_ws *ws = threads[i] ? vl2_decoder_ws_new() : NULL;
        run_outputs fast;
        double e_logits, e_hidden;
        run_fast(m, pool, ws, embeds, &fast);
        compare_runs(m, &fast, &ref, &e_logits, &e_hidden);
        g_test_message("%s, %s: max relative error logits %.2g, hidden states %.2g", name,
                       !pool ? "no pool" : threads[i] == 1 ? "1 thread" : "2 threads", e_logits,
                       e_hidden);
        g_assert_cmpfloat(e_logits, <=, REF_TOL);
        g_assert_cmpfloat(e_hidden, <=, REF_TOL);
        run_outputs_clear(&fast);
        vl2_decoder_ws_free(ws);
        vl2_pool_free(pool);
    }

    /* The comparison can fail: moving one weight of the middle layer's o_proj by 1% of the
     * matrix's largest weight takes the reference far beyond the tolerance. The same copy
     * unmoved (float32 where the checkpoint has bf16) changes nothing. */
    const int il = m->cfg.lm.num_hidden_layers / 2;
    for (int moved = 0; moved < 2; moved++) {
        vl2_model *pm = perturbed_copy(m, il, moved ? 0.01 : 0.0);
        run_outputs other;
        double e_logits, e_hidden;
        run_reference(pm, embeds, &other);
        compare_runs(m, &other, &ref, &e_logits, &e_hidden);
        if (moved) {
            g_test_message("%s, one o_proj weight moved: logits %.2g, hidden states %.2g", name,
                           e_logits, e_hidden);
            g_assert_cmpfloat(e_logits, >, 10 * REF_TOL);
            g_assert_cmpfloat(e_hidden, >, 10 * REF_TOL);
        } else {
            g_assert_cmpfloat(e_logits, ==, 0);
            g_assert_cmpfloat(e_hidden, ==, 0);
        }
        run_outputs_clear(&other);
        perturbed_free(pm, il);
    }

    run_outputs_clear(&ref);
    g_free(embeds);
    vl2_model_free(m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/decoder/yarn", test_yarn);
    g_test_add_func("/engine/decoder/linear-and-mha-yarn", test_linear_and_mha_yarn);
    g_test_add_func("/engine/decoder/router-greedy", test_greedy_router);
    g_test_add_func("/engine/decoder/router-group-limited", test_group_limited_router);
    g_test_add_func("/engine/decoder/router-noaux-tc", test_noaux_tc_router);
    static const char *const models[] = { "mini-tiny", "mini-small", "mini-base" };
    for (size_t i = 0; i < G_N_ELEMENTS(models); i++) {
        g_autofree char *path = g_strconcat("/engine/decoder/reference/", models[i], NULL);
        g_test_add_data_func(path, models[i], test_reference);
    }
    return g_test_run();
}
