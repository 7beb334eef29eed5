/* test-config.c - config.json parsing, the official defaults, and the tensor table.
 *
 * The table built from a config must be exactly the checkpoint's tensors: for the published
 * deepseek-vl2 config against its model.safetensors.index.json (names and total bytes), and
 * for every golden model against its manifest (names and shapes).
 */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test-util.h"
#include "vl2-private.h"

static GHashTable *table_by_name(GPtrArray *table)
{
    GHashTable *h = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < table->len; i++) {
        vl2_tensor_spec *e = g_ptr_array_index(table, i);
        g_assert_false(g_hash_table_contains(h, e->name)); /* no duplicates */
        g_hash_table_insert(h, e->name, e);
    }
    return h;
}

static void load_config(const char *path, vl2_config *cfg)
{
    vl2_error err;
    vl2_status s = vl2_config_load(path, cfg, &err);
    if (s != VL2_OK)
        g_error("%s", err.message);
}

/* The published 27.5B config omits most keys; the defaults fill them in. */
static void test_real_config_defaults(void)
{
    g_autofree char *path = test_model_file("base/config.json");
    vl2_config cfg;
    load_config(path, &cfg);
    const vl2_lm_config *lm = &cfg.lm;
    g_assert_cmpint(lm->num_hidden_layers, ==, 30);
    g_assert_cmpint(lm->num_attention_heads, ==, 32);
    g_assert_cmpint(lm->num_key_value_heads, ==, 32);
    g_assert_true(lm->use_mla);
    g_assert_cmpint(lm->kv_lora_rank, ==, 512);
    g_assert_cmpint(lm->q_lora_rank, ==, 0); /* "q_lora_rank": null */
    g_assert_cmpint(lm->qk_nope_head_dim, ==, 128);
    g_assert_cmpint(lm->qk_rope_head_dim, ==, 64);
    g_assert_cmpint(lm->v_head_dim, ==, 128);
    g_assert_cmpint(lm->hidden_size, ==, 2560);
    g_assert_cmpint(lm->n_routed_experts, ==, 72);
    g_assert_cmpint(lm->num_experts_per_tok, ==, 6);
    g_assert_cmpint(lm->topk_method, ==, VL2_TOPK_NOAUX_TC);
    g_assert_cmpint(lm->scoring_func, ==, VL2_SCORING_SIGMOID);
    g_assert_true(lm->norm_topk_prob);
    g_assert_cmpfloat(lm->routed_scaling_factor, ==, 2.0);
    g_assert_cmpfloat(lm->rms_norm_eps, ==, 1e-6);
    g_assert_cmpfloat(lm->rope_theta, ==, 10000.0);
    g_assert_false(lm->has_rope_scaling);
    g_assert_cmpint(lm->max_position_embeddings, ==, 4096);
    g_assert_cmpint(cfg.vision.heads, ==, 16);
    g_assert_cmpint(cfg.vision.width, ==, 1152);
    g_assert_cmpint(cfg.vision.mlp_hidden, ==, 4304); /* int(1152 * 3.7362) */
    g_assert_cmpint(cfg.vision.image_size, ==, 384);
    g_assert_cmpint(cfg.projector.input_dim, ==, 1152);
    g_assert_cmpint(cfg.projector.n_embed, ==, 2560);
    g_assert_cmpint(cfg.n_candidate_resolutions, ==, 23);
    g_assert_true(cfg.global_view_head);
    vl2_config_clear(&cfg);
}

/* Done-when of the engine core: the table from the real config equals the real index. */
static void test_real_config_table_equals_index(void)
{
    g_autofree char *cpath = test_model_file("base/config.json");
    g_autofree char *ipath = test_model_file("base/model.safetensors.index.json");
    vl2_config cfg;
    load_config(cpath, &cfg);
    GPtrArray *table = vl2_tensor_table(&cfg, NULL);
    g_autoptr(GHashTable) names = table_by_name(table);

    JsonNode *root = test_load_json(ipath);
    JsonObject *index = json_node_get_object(root);
    JsonObject *map = json_object_get_object_member(index, "weight_map");
    gint64 total = json_object_get_int_member(json_object_get_object_member(index, "metadata"),
                                              "total_size");
    g_assert_cmpint(json_object_get_size(map), ==, table->len);
    g_autoptr(GList) members = json_object_get_members(map);
    for (GList *l = members; l; l = l->next)
        if (!g_hash_table_contains(names, l->data))
            g_error("the index has %s, the table does not", (char *)l->data);
    gint64 bytes = 0;
    for (guint i = 0; i < table->len; i++) {
        vl2_tensor_spec *e = g_ptr_array_index(table, i);
        g_assert_true(json_object_has_member(map, e->name));
        gint64 n = 1;
        for (int d = 0; d < e->ndim; d++)
            n *= e->shape[d];
        bytes += n * 2; /* bf16 */
    }
    g_test_message("%u tensors, %" G_GINT64_FORMAT " bytes of bf16", table->len, bytes);
    g_assert_cmpint(bytes, ==, total);
    g_assert_cmpint(bytes, ==, G_GINT64_CONSTANT(54960268496));
    json_node_unref(root);
    g_ptr_array_unref(table);
    vl2_config_clear(&cfg);
}

/* Every golden model: table == manifest, names and shapes. */
static void test_golden_tables(gconstpointer data)
{
    const char *model = data;
    /* real-tiny's config is the Tiny preset's (engine/deepseek-vl2/tiny); only its manifest
     * is among the golden files here */
    g_autofree char *cpath = !strcmp(model, "real-tiny")
                                 ? test_model_file("tiny/config.json")
                                 : g_build_filename(test_golden_dir(), "models", model,
                                                    "config.json", NULL);
    g_autofree char *mpath = g_build_filename(test_golden_dir(), "models", model, "manifest.json",
                                              NULL);
    vl2_config cfg;
    load_config(cpath, &cfg);
    GPtrArray *table = vl2_tensor_table(&cfg, NULL);
    g_autoptr(GHashTable) names = table_by_name(table);
    JsonNode *root = test_load_json(mpath);
    JsonArray *tensors = json_object_get_array_member(json_node_get_object(root), "tensors");
    g_assert_cmpint(json_array_get_length(tensors), ==, table->len);
    for (guint i = 0; i < json_array_get_length(tensors); i++) {
        JsonObject *t = json_array_get_object_element(tensors, i);
        const char *name = json_object_get_string_member(t, "name");
        vl2_tensor_spec *e = g_hash_table_lookup(names, name);
        if (!e)
            g_error("%s: manifest has %s, the table does not", model, name);
        JsonArray *shape = json_object_get_array_member(t, "shape");
        g_assert_cmpint(json_array_get_length(shape), ==, e->ndim);
        for (int d = 0; d < e->ndim; d++)
            g_assert_cmpint(json_array_get_int_element(shape, (guint)d), ==, e->shape[d]);
    }
    json_node_unref(root);
    g_ptr_array_unref(table);
    vl2_config_clear(&cfg);
}

static void test_mini_variants(void)
{
    struct {
        const char *name;
        bool mla;
        int q_lora;
        vl2_topk_method topk;
        vl2_scoring_func scoring;
    } want[] = {
        { "mini-tiny", false, 0, VL2_TOPK_GREEDY, VL2_SCORING_SOFTMAX },
        { "mini-small", true, 0, VL2_TOPK_GREEDY, VL2_SCORING_SOFTMAX },
        { "mini-base", true, 40, VL2_TOPK_NOAUX_TC, VL2_SCORING_SIGMOID },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
        g_autofree char *p = g_build_filename(test_golden_dir(), "models", want[i].name,
                                              "config.json", NULL);
        vl2_config cfg;
        load_config(p, &cfg);
        g_assert_cmpint(cfg.lm.use_mla, ==, want[i].mla);
        g_assert_cmpint(cfg.lm.q_lora_rank, ==, want[i].q_lora);
        g_assert_cmpint(cfg.lm.topk_method, ==, want[i].topk);
        g_assert_cmpint(cfg.lm.scoring_func, ==, want[i].scoring);
        g_assert_true(vl2_config_layer_is_moe(&cfg.lm, 1));
        g_assert_false(vl2_config_layer_is_moe(&cfg.lm, 0));
        vl2_config_clear(&cfg);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Hostile configs: a clear error that names the file and the key, never a crash
 */

#define VALID_LM "\"language_config\": {\"hidden_size\": 32, \"num_hidden_layers\": 2, " \
                 "\"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"use_mla\": false, " \
                 "\"vocab_size\": 1000}"
#define VALID_VISION "\"vision_config\": {\"width\": 48, \"layers\": 1, \"heads\": 3, " \
                     "\"patch_size\": 14}, " \
                     "\"projector_config\": {\"input_dim\": 48, \"n_embed\": 32}"

static void expect_error(const char *json, vl2_status code, const char *needle)
{
    vl2_config cfg;
    vl2_error err;
    vl2_status s = vl2_config_parse(json, strlen(json), "/models/x/config.json", &cfg, &err);
    if (s != code || !strstr(err.message, needle))
        g_error("config %s\n  gave status %d (%s), want %d with \"%s\"", json, s,
                s ? err.message : "ok", code, needle);
    g_assert_nonnull(strstr(err.message, "/models/x/config.json"));
    g_assert_null(strchr(err.message, '\n'));
}

static void test_valid_minimal(void)
{
    const char *json = "{\"model_type\": \"deepseek_vl_v2\", " VALID_LM ", " VALID_VISION "}";
    vl2_config cfg;
    vl2_error err;
    g_assert_cmpint(vl2_config_parse(json, strlen(json), "c.json", &cfg, &err), ==, VL2_OK);
    g_assert_cmpint(cfg.lm.head_dim, ==, 8);
    g_assert_cmpint(cfg.lm.n_routed_experts, ==, 0); /* dense model */
    vl2_config_clear(&cfg);
}

static void test_hostile(void)
{
    expect_error("", VL2_ERR_FORMAT, "empty");
    expect_error("{\"model_type\": ", VL2_ERR_FORMAT, "not valid JSON");
    expect_error("[1, 2]", VL2_ERR_FORMAT, "not a JSON object");
    expect_error("{}", VL2_ERR_UNSUPPORTED, "model_type is missing");
    expect_error("{\"model_type\": \"llama\"}", VL2_ERR_UNSUPPORTED, "\"llama\"");
    expect_error("{\"model_type\": \"deepseek_vl_v2\"}", VL2_ERR_FORMAT,
                 "language_config is missing");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": 3}", VL2_ERR_FORMAT,
                 "language_config must be an object");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"hidden_size\": \"big\"}}",
                 VL2_ERR_FORMAT, "language_config.hidden_size must be an integer");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"hidden_size\": 12.5}}",
                 VL2_ERR_FORMAT, "hidden_size must be an integer");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"hidden_size\": -4}}",
                 VL2_ERR_FORMAT, "hidden_size is -4");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"num_hidden_layers\": 1e12}}",
                 VL2_ERR_FORMAT, "num_hidden_layers");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"use_mla\": false, \"hidden_size\": 30, \"num_attention_heads\": 4}}",
                 VL2_ERR_FORMAT, "not a multiple of num_attention_heads");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"n_routed_experts\": 4, \"num_experts_per_tok\": 6}}",
                 VL2_ERR_FORMAT, "num_experts_per_tok");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"topk_method\": \"best\"}}",
                 VL2_ERR_UNSUPPORTED, "topk_method");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"scoring_func\": \"relu\"}}",
                 VL2_ERR_UNSUPPORTED, "scoring_func");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"hidden_act\": \"gelu\"}}",
                 VL2_ERR_UNSUPPORTED, "hidden_act");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"rope_scaling\": {\"type\": \"yarn\"}}}",
                 VL2_ERR_FORMAT, "rope_scaling.factor");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"rope_scaling\": {\"type\": \"ntk\", \"factor\": 2}}}",
                 VL2_ERR_UNSUPPORTED, "rope_scaling.type");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                 "{\"use_mla\": true, \"kv_lora_rank\": 0}}",
                 VL2_ERR_FORMAT, "kv_lora_rank");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", " VALID_LM ", " VALID_VISION
                 ", \"candidate_resolutions\": [[384]]}",
                 VL2_ERR_FORMAT, "candidate_resolutions");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", " VALID_LM ", " VALID_VISION
                 ", \"candidate_resolutions\": [[384, 500]]}",
                 VL2_ERR_FORMAT, "not a multiple");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"tile_tag\": \"1D\", " VALID_LM "}",
                 VL2_ERR_UNSUPPORTED, "tile_tag");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", " VALID_LM ", \"vision_config\": "
                 "{\"width\": 50, \"heads\": 3}}",
                 VL2_ERR_FORMAT, "vision_config.width");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", " VALID_LM ", " VALID_VISION
                 ", \"projector_config\": {\"projector_type\": \"mlp_gelu\"}}",
                 VL2_ERR_UNSUPPORTED, "projector_type");
}

/* Numbers that make the forward pass NaN or infinite (rope_theta <= 0, a negative
 * rms_norm_eps, absurd scaling factors) loaded, and the sampler then read out of bounds. */
#define LM_WITH(x) "\"language_config\": {\"hidden_size\": 32, \"num_hidden_layers\": 2, " \
                   "\"num_attention_heads\": 4, \"num_key_value_heads\": 4, " \
                   "\"use_mla\": false, \"vocab_size\": 1000, " x "}"
static void test_non_finite_numbers(void)
{
    static const struct {
        const char *member, *needle;
    } cases[] = {
        { "\"rope_theta\": 0", "rope_theta" },
        { "\"rope_theta\": -10000", "rope_theta" },
        { "\"rope_theta\": 1e300", "rope_theta" },
        { "\"rms_norm_eps\": -1e-6", "rms_norm_eps" },
        { "\"rms_norm_eps\": 1e30", "rms_norm_eps" },
        { "\"routed_scaling_factor\": 1e300", "routed_scaling_factor" },
        { "\"routed_scaling_factor\": -1", "routed_scaling_factor" },
        { "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 1e300}", "rope_scaling.factor" },
        { "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"mscale\": 1e300}",
          "rope_scaling.mscale" },
        { "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"beta_fast\": -1e300}",
          "rope_scaling.beta_fast" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *json = g_strdup_printf("{\"model_type\": \"deepseek_vl_v2\", "
                                                LM_WITH("%s") ", " VALID_VISION "}",
                                                cases[i].member);
        expect_error(json, VL2_ERR_FORMAT, cases[i].needle);
    }
    /* the published values load */
    const char *ok = "{\"model_type\": \"deepseek_vl_v2\", " LM_WITH(
        "\"rope_theta\": 10000, \"rms_norm_eps\": 1e-6, \"routed_scaling_factor\": 2.0, "
        "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"mscale\": 0.707, "
        "\"mscale_all_dim\": 0.707, \"beta_fast\": 32, \"beta_slow\": 1}") ", " VALID_VISION "}";
    vl2_config cfg;
    vl2_error err;
    g_assert_cmpint(vl2_config_parse(ok, strlen(ok), "c.json", &cfg, &err), ==, VL2_OK);
    vl2_config_clear(&cfg);
}

/* A candidate resolution of 65536 x 65536 with image_size 1 overflowed the tile count (int) in
 * image.c: a 3-byte buffer, then 2^32 tiles written; [[23040, 23040]] with 384 allocated
 * 3.2 GB before the context was checked. A candidate whose image tokens cannot fit the
 * context, or of more tiles than the engine cuts, is refused at load. */
static void test_huge_candidates(void)
{
    expect_error("{\"model_type\": \"deepseek_vl_v2\", " VALID_LM ", " VALID_VISION
                 ", \"candidate_resolutions\": [[384, 384], [23040, 23040]]}",
                 VL2_ERR_FORMAT, "candidate_resolutions");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", " VALID_LM ", \"vision_config\": "
                 "{\"width\": 48, \"layers\": 1, \"heads\": 3, \"patch_size\": 1, "
                 "\"image_size\": 1}, \"projector_config\": {\"input_dim\": 48, \"n_embed\": 32}, "
                 "\"candidate_resolutions\": [[65536, 65536]]}",
                 VL2_ERR_FORMAT, "candidate_resolutions");
    /* image tokens of one tile (the global view) beyond the context */
    expect_error("{\"model_type\": \"deepseek_vl_v2\", " LM_WITH("\"max_position_embeddings\": 16")
                 ", " VALID_VISION "}",
                 VL2_ERR_FORMAT, "max_position_embeddings");
}

static void test_missing_file(void)
{
    vl2_config cfg;
    vl2_error err;
    g_assert_cmpint(vl2_config_load("/nonexistent/dir/config.json", &cfg, &err), ==, VL2_ERR_IO);
    g_assert_nonnull(strstr(err.message, "/nonexistent/dir/config.json"));
}

/* 100,000 opening brackets (a 100 KB file) overflowed the stack of json-glib's recursive
 * parser; so did as many nested objects. */
static void test_deep_json(void)
{
    const size_t n = 100000;
    g_autofree char *arrays = g_malloc(n + 1);
    memset(arrays, '[', n);
    arrays[n] = 0;
    expect_error(arrays, VL2_ERR_FORMAT, "nested more than");
    GString *objects = g_string_new(NULL);
    for (size_t i = 0; i < n; i++)
        g_string_append(objects, "{\"a\":");
    expect_error(objects->str, VL2_ERR_FORMAT, "nested more than");
    g_string_free(objects, TRUE);
    /* hidden from a scanner that stops at a quote: json-glib skips comments */
    g_autofree char *commented = g_strconcat("/*\"*/", arrays, NULL);
    expect_error(commented, VL2_ERR_FORMAT, "nested more than");
}

/* json-glib reads a lone surrogate escape as bytes that are not UTF-8; a config with one is
 * refused (its strings would reach messages and names). */
static void test_broken_escape(void)
{
    expect_error("{\"model_type\": \"deepseek\\udc00 \", " VALID_LM ", " VALID_VISION "}",
                 VL2_ERR_FORMAT, "not valid UTF-8");
    expect_error("{\"model_type\": \"deepseek_vl_v2\", \"\\ud800 \": 1, " VALID_LM ", " VALID_VISION
                 "}",
                 VL2_ERR_FORMAT, "not valid UTF-8");
}

/* Error messages promise UTF-8 (vl2.h): a parse error quoting invalid bytes of the file, or a
 * message cut at its 1024 bytes inside a character, broke the promise. */
static void test_error_utf8(void)
{
    vl2_config cfg;
    vl2_error err;
    static const char invalid[] = "{\"model_type\": \xff\xfe\"x\"}";
    g_assert_cmpint(vl2_config_parse(invalid, sizeof invalid - 1, "config.json", &cfg, &err), ==,
                    VL2_ERR_FORMAT);
    g_assert_true(g_utf8_validate(err.message, -1, NULL));
    g_assert_nonnull(strstr(err.message, "config.json"));
    for (size_t pad = 0; pad < 4; pad++) {
        /* a name of 2-byte characters that runs past the message's end at every alignment */
        GString *name = g_string_new(NULL);
        g_string_append_len(name, "xxx", (gssize)pad);
        for (int i = 0; i < 600; i++)
            g_string_append(name, "\xc3\xa9");
        g_assert_cmpint(vl2_config_parse("[", 1, name->str, &cfg, &err), ==, VL2_ERR_FORMAT);
        g_assert_true(g_utf8_validate(err.message, -1, NULL));
        g_assert_cmpuint(strlen(err.message), >=, sizeof err.message - 4);
        g_string_free(name, TRUE);
    }
}

/* A named pipe in place of config.json: open() waited for a writer forever. */
static void test_fifo(void)
{
    g_autofree char *dir = test_make_tmpdir();
    g_autofree char *path = g_build_filename(dir, "config.json", NULL);
    g_assert_cmpint(mkfifo(path, 0600), ==, 0);
    vl2_config cfg;
    vl2_error err;
    alarm(60); /* a hang ends the test program */
    g_assert_cmpint(vl2_config_load(path, &cfg, &err), ==, VL2_ERR_IO);
    alarm(0);
    g_assert_nonnull(strstr(err.message, path));
    g_assert_nonnull(strstr(err.message, "not a regular file"));
    test_rmtree(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/config/real-defaults", test_real_config_defaults);
    g_test_add_func("/engine/config/real-table-equals-index", test_real_config_table_equals_index);
    static const char *models[] = { "mini-tiny", "mini-small", "mini-base", "real-tiny" };
    for (size_t i = 0; i < G_N_ELEMENTS(models); i++) {
        g_autofree char *p = g_strdup_printf("/engine/config/table-equals-manifest/%s", models[i]);
        g_test_add_data_func(p, models[i], test_golden_tables);
    }
    g_test_add_func("/engine/config/mini-variants", test_mini_variants);
    g_test_add_func("/engine/config/valid-minimal", test_valid_minimal);
    g_test_add_func("/engine/config/hostile", test_hostile);
    g_test_add_func("/engine/config/missing-file", test_missing_file);
    g_test_add_func("/engine/config/deep-json", test_deep_json);
    g_test_add_func("/engine/config/fifo", test_fifo);
    g_test_add_func("/engine/config/error-utf8", test_error_utf8);
    g_test_add_func("/engine/config/broken-escape", test_broken_escape);
    g_test_add_func("/engine/config/non-finite-numbers", test_non_finite_numbers);
    g_test_add_func("/engine/config/huge-candidates", test_huge_candidates);
    return g_test_run();
}
