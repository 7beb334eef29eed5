/* test-cli.c - the `vl2` command line: `eval` is a contract the tests and benchmarks rely on.
 *
 * Runs the built binary ($VL2_CLI) on golden cases and checks its JSON against the reference
 * outputs with the golden README's tolerances, and checks that errors exit non-zero with one
 * line on stderr.
 */
#include <math.h>
#include <string.h>

#include "test-util.h"
#include "vl2-private.h"

/* Writes one case of cases.json into a temporary CASE.json. */
static char *write_case(const char *dir, const char *name)
{
    g_autofree char *cases_path = test_golden_path("cases.json");
    JsonNode *root = test_load_json(cases_path);
    JsonArray *cases = json_object_get_array_member(json_node_get_object(root), "cases");
    JsonNode *found = NULL;
    for (guint i = 0; i < json_array_get_length(cases); i++) {
        JsonNode *c = json_array_get_element(cases, i);
        if (!strcmp(json_object_get_string_member(json_node_get_object(c), "name"), name))
            found = c;
    }
    g_assert_nonnull(found);
    char *path = g_build_filename(dir, "case.json", NULL);
    g_autofree char *text = json_to_string(found, FALSE);
    test_write_file(path, text, -1);
    json_node_unref(root);
    return path;
}

static const vl2_tensor *golden_tensor(vl2_st_file *f, const char *key, GPtrArray *keep)
{
    const vl2_tensor *t = vl2_st_get(f, key);
    g_assert_nonnull(t);
    vl2_tensor *c = g_memdup2(t, sizeof *t);
    c->data = g_memdup2(t->data, t->n_bytes); /* aligned copy */
    g_ptr_array_add(keep, (void *)c->data);
    g_ptr_array_add(keep, c);
    return c;
}

typedef struct {
    const char *model, *name;
} cli_case;

static void test_eval(gconstpointer data)
{
    const cli_case *cc = data;
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *case_path = write_case(tmp, cc->name);
    g_autofree char *logits_path = g_build_filename(tmp, "logits.f32", NULL);
    g_autofree char *model = g_build_filename(test_fixture_dir(), cc->model, NULL);
    g_autofree char *images = test_golden_path("images");
    const char *args[] = { "eval", "--model", model, "--case", case_path, "--images", images,
                           "--logits-out", logits_path, NULL };
    test_run_result r = test_run_cli(args);
    if (r.status != 0)
        g_error("vl2 eval failed: %s", r.err);

    g_autoptr(JsonParser) parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(parser, r.out, -1, NULL));
    JsonObject *o = json_node_get_object(json_parser_get_root(parser));

    g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *cases_st_path = test_golden_path("cases.safetensors");
    g_autofree char *golden_rel = g_build_filename("models", cc->model, "golden.safetensors", NULL);
    g_autofree char *golden_path = test_golden_path(golden_rel);
    vl2_st_file *cases_st, *golden;
    vl2_error err;
    g_assert_cmpint(vl2_st_open(cases_st_path, &cases_st, &err), ==, VL2_OK);
    g_assert_cmpint(vl2_st_open(golden_path, &golden, &err), ==, VL2_OK);
    g_autofree char *k_ids = g_strdup_printf("%s.input_ids", cc->name);
    g_autofree char *k_crop = g_strdup_printf("%s.images_spatial_crop", cc->name);
    g_autofree char *k_logits = g_strdup_printf("%s.logits_last", cc->name);
    g_autofree char *k_greedy = g_strdup_printf("%s.greedy_ids", cc->name);
    g_autofree char *k_margin = g_strdup_printf("%s.greedy_margin", cc->name);
    g_autofree char *k_top = g_strdup_printf("%s.greedy_top10_logits", cc->name);
    const vl2_tensor *ids = golden_tensor(cases_st, k_ids, keep);
    const vl2_tensor *crop = golden_tensor(cases_st, k_crop, keep);
    const vl2_tensor *logits = golden_tensor(golden, k_logits, keep);
    const vl2_tensor *greedy = golden_tensor(golden, k_greedy, keep);
    const vl2_tensor *margin = golden_tensor(golden, k_margin, keep);
    const vl2_tensor *top = golden_tensor(golden, k_top, keep);

    /* input_ids: exact */
    JsonArray *a = json_object_get_array_member(o, "input_ids");
    g_assert_cmpint(json_array_get_length(a), ==, ids->n_elements);
    for (guint i = 0; i < json_array_get_length(a); i++)
        g_assert_cmpint(json_array_get_int_element(a, i), ==, ((const int64_t *)ids->data)[i]);

    /* images_spatial_crop: the reference pads a text-only prompt with one [0, 0] row; the CLI
     * lists the prompt's real images, so none */
    JsonArray *ca = json_object_get_array_member(o, "images_spatial_crop");
    bool text_only = true;
    for (int64_t i = 0; i < crop->n_elements; i++)
        text_only = text_only && ((const int64_t *)crop->data)[i] == 0;
    if (text_only) {
        g_assert_cmpint(json_array_get_length(ca), ==, 0);
        g_assert_true(json_object_get_null_member(o, "tiles_sha256"));
    } else {
        g_assert_cmpint(json_array_get_length(ca) * 2, ==, crop->n_elements);
        for (guint i = 0; i < json_array_get_length(ca); i++) {
            JsonArray *wh = json_array_get_array_element(ca, i);
            g_assert_cmpint(json_array_get_int_element(wh, 0), ==,
                            ((const int64_t *)crop->data)[2 * i]);
            g_assert_cmpint(json_array_get_int_element(wh, 1), ==,
                            ((const int64_t *)crop->data)[2 * i + 1]);
        }
        /* the sha256 of the processor's uint8 tile stack, from cases.json */
        g_autofree char *cases_path = test_golden_path("cases.json");
        JsonNode *cases = test_load_json(cases_path);
        JsonObject *pre = json_object_get_object_member(
            json_object_get_object_member(json_node_get_object(cases), "preprocess"), cc->name);
        g_assert_cmpstr(json_object_get_string_member(o, "tiles_sha256"), ==,
                        json_object_get_string_member(pre, "tiles_sha256"));
        json_node_unref(cases);
    }

    /* greedy ids up to the first near-tie, and the top-10 logits of those steps */
    JsonArray *g = json_object_get_array_member(o, "greedy_ids");
    JsonArray *tl = json_object_get_array_member(o, "greedy_top10_logits");
    g_assert_cmpint(json_array_get_length(g), ==, greedy->n_elements);
    for (int64_t i = 0; i < greedy->n_elements; i++) {
        g_assert_cmpint(json_array_get_int_element(g, (guint)i), ==,
                        ((const int64_t *)greedy->data)[i]);
        JsonArray *row = json_array_get_array_element(tl, (guint)i);
        for (guint k = 0; k < 10; k++)
            g_assert_cmpfloat(fabs(json_array_get_double_element(row, k) -
                                   ((const float *)top->data)[i * 10 + k]), <=, 2e-3);
        if (((const float *)margin->data)[i] < 1e-2)
            break;
    }

    /* --logits-out: float32 little-endian, within 2e-3 */
    g_autofree char *raw = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(logits_path, &raw, &len, NULL));
    g_assert_cmpuint(len, ==, (gsize)logits->n_elements * 4);
    double worst = 0;
    for (int64_t i = 0; i < logits->n_elements; i++) {
        float v;
        memcpy(&v, raw + i * 4, 4);
        double d = fabs(v - ((const float *)logits->data)[i]);
        worst = d > worst ? d : worst;
    }
    g_assert_cmpfloat(worst, <=, 2e-3);

    JsonObject *t = json_object_get_object_member(o, "timings");
    g_assert_true(json_object_has_member(t, "load_s"));
    g_assert_true(json_object_has_member(t, "prefill_s"));
    g_assert_true(json_object_has_member(t, "decode_s"));
    g_assert_cmpint(json_object_get_int_member(t, "prompt_tokens"), ==, ids->n_elements);
    int64_t tiles = 0;
    for (guint i = 0; !text_only && i < json_array_get_length(ca); i++) {
        JsonArray *wh = json_array_get_array_element(ca, i);
        tiles += 1 + json_array_get_int_element(wh, 0) * json_array_get_int_element(wh, 1);
    }
    g_assert_cmpint(json_object_get_int_member(t, "tiles"), ==, tiles);
    g_assert_nonnull(json_object_get_string_member(o, "text"));

    vl2_st_close(cases_st);
    vl2_st_close(golden);
    test_run_clear(&r);
    test_rmtree(tmp);
}

static void expect_failure(const char *const *args, int status, const char *needle)
{
    test_run_result r = test_run_cli(args);
    g_assert_cmpint(r.status, ==, status);
    g_assert_cmpstr(r.out, ==, "");
    if (!strstr(r.err, needle))
        g_error("stderr \"%s\" lacks \"%s\"", r.err, needle);
    if (status == 1) {
        /* exactly one line */
        const char *nl = strchr(r.err, '\n');
        g_assert_nonnull(nl);
        g_assert_cmpint(nl[1], ==, 0);
    }
    test_run_clear(&r);
}

static void test_errors(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *case_path = write_case(tmp, "text_only");
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    g_autofree char *bad_case = g_build_filename(tmp, "bad.json", NULL);
    test_write_file(bad_case, "{\"conversation\": [{\"role\": \"<|User|>\"}]}", -1);

    expect_failure((const char *[]){ "eval", "--model", "/nonexistent", "--case", case_path,
                                     NULL },
                   1, "/nonexistent");
    expect_failure((const char *[]){ "eval", "--model", model, "--case", "/nonexistent.json",
                                     NULL },
                   1, "/nonexistent.json");
    expect_failure((const char *[]){ "eval", "--model", model, "--case", bad_case, NULL }, 1,
                   "message 1 needs a role");
    expect_failure((const char *[]){ "eval", "--model", model, NULL }, 2, "--case");
    expect_failure((const char *[]){ "frobnicate", NULL }, 2, "unknown command");
    expect_failure((const char *[]){ "run", "--model", model, "--prompt", "   ", NULL }, 1,
                   "the prompt is empty");
    expect_failure((const char *[]){ "run", "--model", model, "--prompt", "hi", "--ctx", "5",
                                     NULL },
                   1, "context holds 5");

    /* bad images: named, refused, nothing else happens */
    const char *images = g_getenv("VL2_TEST_IMAGES");
    g_autofree char *img_case = g_build_filename(tmp, "img.json", NULL);
    test_write_file(img_case, "{\"conversation\": [{\"role\": \"<|User|>\", \"content\": "
                              "\"<image> what?\", \"images\": [\"truncated.png\"]}]}", -1);
    expect_failure((const char *[]){ "eval", "--model", model, "--case", img_case, "--images",
                                     images, NULL },
                   1, "truncated.png: the file is truncated");
    g_autofree char *bomb = g_build_filename(images, "bomb.png", NULL);
    expect_failure((const char *[]){ "run", "--model", model, "--image", bomb, "--prompt", "What?",
                                     NULL },
                   1, "60000 x 60000 pixels");
    g_autofree char *gray = g_build_filename(images, "gray8.png", NULL);
    expect_failure((const char *[]){ "run", "--model", model, "--image", gray, "--prompt",
                                     "<image> and <image>", NULL },
                   1, "2 <image> placeholders but 1 image");
    test_rmtree(tmp);
}

/* Reads the JSON header of a safetensors file (aborts the test on failure). */
static JsonNode *safetensors_header(const char *path)
{
    g_autofree char *data = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    g_assert_cmpuint(len, >=, 8);
    uint64_t hlen;
    memcpy(&hlen, data, 8);
    g_assert_cmpuint(8 + hlen, <=, len);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(parser, data + 8, (gssize)hlen, NULL));
    return json_node_ref(json_parser_get_root(parser));
}

/* No hidden work folder of `vl2 quantize` is left in dir. */
static void expect_no_leftovers(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    const char *name;
    while ((name = g_dir_read_name(d)))
        if (g_str_has_prefix(name, ".vl2-quantize-"))
            g_error("%s/%s was left behind", dir, name);
    g_dir_close(d);
}

/* `vl2 quantize` writes one documented file that loads and computes exactly what quantizing
 * at load time computes; it refuses to overwrite and leaves nothing behind on errors. */
static void test_quantize(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    const char *names[] = { "q8", "q4" };
    for (int f = 0; f < 2; f++) {
        g_autofree char *out = g_build_filename(tmp, names[f], NULL);
        const char *args[] = { "quantize", "--to", names[f], model, out, NULL };
        test_run_result r = test_run_cli(args);
        if (r.status != 0)
            g_error("vl2 quantize --to %s: %s", names[f], r.err);
        test_run_clear(&r);

        /* the layout of QUANT.md: values as I8/U8, scales as F16 [rows, n / 32] */
        g_autofree char *st = g_build_filename(out, "model.safetensors", NULL);
        JsonNode *root = safetensors_header(st);
        JsonObject *h = json_node_get_object(root);
        JsonObject *meta = json_object_get_object_member(h, "__metadata__");
        g_assert_cmpstr(json_object_get_string_member(meta, "format"), ==,
                        f == 0 ? "vl2-q8_0" : "vl2-q4_0");
        const char *w = "language.model.layers.1.mlp.experts.0.up_proj.weight";
        g_autofree char *ws = g_strconcat(w, ".scales", NULL);
        JsonObject *wq = json_object_get_object_member(h, w);
        JsonObject *wsc = json_object_get_object_member(h, ws);
        g_assert_nonnull(wq);
        g_assert_nonnull(wsc);
        g_assert_cmpstr(json_object_get_string_member(wq, "dtype"), ==, f == 0 ? "I8" : "U8");
        g_assert_cmpstr(json_object_get_string_member(wsc, "dtype"), ==, "F16");
        JsonArray *shape = json_object_get_array_member(wq, "shape");
        JsonArray *sshape = json_object_get_array_member(wsc, "shape");
        int64_t cols = json_array_get_int_element(shape, 1) * (f == 0 ? 1 : 2);
        g_assert_cmpint(json_array_get_int_element(sshape, 0), ==,
                        json_array_get_int_element(shape, 0));
        g_assert_cmpint(json_array_get_int_element(sshape, 1) * 32, ==, cols);
        /* the embedding and the vision tower stay as stored */
        g_assert_cmpstr(json_object_get_string_member(
                            json_object_get_object_member(h, "language.model.embed_tokens.weight"),
                            "dtype"), ==, "BF16");
        g_assert_false(json_object_has_member(h, "vision.blocks.0.attn.qkv.weight.scales"));
        json_node_unref(root);
        for (const char *const *side = (const char *const[]){ "config.json", "tokenizer.json",
                                                              NULL };
             *side; side++) {
            g_autofree char *path = g_build_filename(out, *side, NULL);
            g_assert_true(g_file_test(path, G_FILE_TEST_IS_REGULAR));
        }

        /* loads as quantized and gives the logits of quantizing while loading, bit for bit */
        vl2_model *m;
        vl2_error err;
        g_assert_cmpint(vl2_model_load(out, NULL, &m, &err), ==, VL2_OK);
        vl2_model_info info;
        vl2_model_get_info(m, &info);
        g_assert_cmpstr(info.weights_format, ==, names[f]);
        g_autofree float *from_file = test_prompt_logits(m, "Hello");
        vl2_model_free(m);
        vl2_model_params mp = vl2_model_default_params();
        mp.weights = f == 0 ? VL2_WEIGHTS_Q8 : VL2_WEIGHTS_Q4;
        g_autofree float *at_load = test_dir_logits(model, &mp);
        g_assert_cmpmem(from_file, info.n_vocab * sizeof(float), at_load,
                        info.n_vocab * sizeof(float));

        /* an existing folder is never overwritten */
        g_autofree char *before = NULL;
        gsize before_len = 0;
        g_assert_true(g_file_get_contents(st, &before, &before_len, NULL));
        expect_failure(args, 1, "already exists");
        g_autofree char *after = NULL;
        gsize after_len = 0;
        g_assert_true(g_file_get_contents(st, &after, &after_len, NULL));
        g_assert_cmpmem(before, before_len, after, after_len);
    }
    g_autofree char *none = g_build_filename(tmp, "none", NULL);
    expect_failure((const char *[]){ "quantize", "--to", "q4", "/nonexistent", none, NULL }, 1,
                   "/nonexistent");
    g_assert_false(g_file_test(none, G_FILE_TEST_EXISTS));
    expect_failure((const char *[]){ "quantize", "--to", "q5", model, none, NULL }, 2, "q8|q4");
    expect_failure((const char *[]){ "quantize", model, NULL }, 2, "q8|q4");
    g_assert_false(g_file_test(none, G_FILE_TEST_EXISTS));
    expect_no_leftovers(tmp);
    test_rmtree(tmp);
}

/* `vl2 bench --json` on a small model: every figure present and plausible. */
static void test_bench(void)
{
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    const char *args[] = { "bench", "--model", model, "--threads", "2", "--repeats", "1",
                           "--tiles", "2", "--prompt-tokens", "64", "--gen-tokens", "8",
                           "--weights", "q8", "--json", NULL };
    test_run_result r = test_run_cli(args);
    if (r.status != 0)
        g_error("vl2 bench: %s", r.err);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(parser, r.out, -1, NULL));
    JsonObject *o = json_node_get_object(json_parser_get_root(parser));
    g_assert_cmpstr(json_object_get_string_member(o, "variant"), ==, "tiny");
    g_assert_cmpstr(json_object_get_string_member(o, "weights"), ==, "q8");
    g_assert_cmpint(json_object_get_int_member(o, "threads"), ==, 2);
    g_assert_cmpint(json_object_get_int_member(o, "tiles"), ==, 2);
    g_assert_cmpuint(strlen(json_object_get_string_member(o, "cpu")), >, 0);
    const char *positive[] = { "bandwidth_gbs", "f32_gemm_peak_gflops", "vision_seconds_per_tile",
                               "prefill_tokens_per_second", "decode_tokens_per_second_short",
                               "decode_tokens_per_second_long", "decode_fraction_short",
                               "decode_fraction_long", "vision_fraction_f32",
                               "prefill_fraction_f32", "peak_rss_mb", "rss_bound_mb" };
    for (size_t i = 0; i < G_N_ELEMENTS(positive); i++) {
        double v = json_object_get_double_member(o, positive[i]);
        if (!(v > 0 && isfinite(v)))
            g_error("bench: %s = %g", positive[i], v);
    }
    /* the engine's own memory: the bandwidth probe's buffer is not counted (AddressSanitizer's
     * shadow memory and quarantine would be) */
#ifndef __SANITIZE_ADDRESS__
    g_assert_cmpfloat(json_object_get_double_member(o, "peak_rss_mb"), <,
                      json_object_get_double_member(o, "rss_bound_mb"));
#endif
    g_assert_cmpint(json_object_get_int_member(o, "prompt_tokens"), >=, 48);
    g_assert_cmpint(json_object_get_int_member(o, "decode_bytes_per_token"), >, 0);
    test_run_clear(&r);

    expect_failure((const char *[]){ "bench", "--model", model, "--weights", "q5", NULL }, 2,
                   "bf16, q8 or q4");
    expect_failure((const char *[]){ "bench", "--model", "/nonexistent", NULL }, 1,
                   "/nonexistent");
}

static void test_run_with_image(void)
{
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    g_autofree char *gif = g_build_filename(g_getenv("VL2_TEST_IMAGES"), "animated.gif", NULL);
    const char *args[] = { "run", "--model", model, "--image", gif, "--prompt", "What is this?",
                           "--max-new-tokens", "3", "--temperature", "0", NULL };
    test_run_result r = test_run_cli(args);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.err, "2 image tiles"));
    test_run_clear(&r);
}

static void test_run(void)
{
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    const char *args[] = { "run", "--model", model, "--prompt", "Hello there",
                           "--max-new-tokens", "6", "--seed", "7", NULL };
    test_run_result a = test_run_cli(args), b = test_run_cli(args);
    g_assert_cmpint(a.status, ==, 0);
    g_assert_cmpstr(a.out, ==, b.out);
    g_assert_cmpuint(strlen(a.out), >, 1);
    g_assert_nonnull(strstr(a.err, "tokens/s"));
    test_run_clear(&a);
    test_run_clear(&b);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    static const char *models[] = { "mini-tiny", "mini-small", "mini-base" };
    static const char *cases[] = { "text_only", "system_multiturn", "ground_one",
                                   "two_images_multiturn", "three_images", "banner_rgba",
                                   "tiny_gray", "tall_palette", "vqa_jpeg" };
    static cli_case all[G_N_ELEMENTS(models) * G_N_ELEMENTS(cases)];
    int n = 0;
    for (size_t m = 0; m < G_N_ELEMENTS(models); m++)
        for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
            all[n] = (cli_case){ models[m], cases[c] };
            g_autofree char *path = g_strdup_printf("/engine/cli/eval/%s/%s", models[m], cases[c]);
            g_test_add_data_func(path, &all[n], test_eval);
            n++;
        }
    g_test_add_func("/engine/cli/errors", test_errors);
    g_test_add_func("/engine/cli/run", test_run);
    g_test_add_func("/engine/cli/run-with-image", test_run_with_image);
    g_test_add_func("/engine/cli/quantize", test_quantize);
    g_test_add_func("/engine/cli/bench", test_bench);
    return g_test_run();
}
