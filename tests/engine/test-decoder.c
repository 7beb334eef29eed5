/* test-decoder.c - decoder pieces the golden models do not exercise: RoPE scaling (linear, YaRN)
 * and the group-limited routers, checked against values computed independently from the
 * formulas of modeling_deepseek.py (numpy, float32 where the reference uses float32). */
#include <math.h>
#include <string.h>

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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/decoder/yarn", test_yarn);
    g_test_add_func("/engine/decoder/linear-and-mha-yarn", test_linear_and_mha_yarn);
    g_test_add_func("/engine/decoder/router-greedy", test_greedy_router);
    g_test_add_func("/engine/decoder/router-group-limited", test_group_limited_router);
    g_test_add_func("/engine/decoder/router-noaux-tc", test_noaux_tc_router);
    return g_test_run();
}
