/* test-cli.c - the `vl2` command line: `eval` is a contract the tests and benchmarks rely on.
 *
 * Runs the built binary ($VL2_CLI) on golden cases and checks its JSON against the reference
 * outputs with the golden README's tolerances, and checks that errors exit non-zero with one
 * line on stderr.
 */
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* Like expect_failure, with every string of the NULL-terminated `needles` on stderr. */
static void expect_failure_all(const char *const *args, int status, const char *const *needles)
{
    test_run_result r = test_run_cli(args);
    g_assert_cmpint(r.status, ==, status);
    g_assert_cmpstr(r.out, ==, "");
    for (const char *const *n = needles; *n; n++)
        if (!strstr(r.err, *n))
            g_error("stderr \"%s\" lacks \"%s\"", r.err, *n);
    const char *nl = strchr(r.err, '\n');
    g_assert_nonnull(nl);
    g_assert_cmpint(nl[1], ==, 0);
    test_run_clear(&r);
}

/* A fresh folder with the named files of the mini-tiny fixture linked in. */
static char *linked_model(const char *const *names)
{
    g_autofree char *fixture = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    char *dir = test_make_tmpdir();
    for (const char *const *n = names; *n; n++) {
        g_autofree char *from = g_build_filename(fixture, *n, NULL);
        g_autofree char *to = g_build_filename(dir, *n, NULL);
        g_assert_cmpint(symlink(from, to), ==, 0);
    }
    return dir;
}

/* `vl2 run` on a clone made without git-lfs, and on an interrupted download: the engine's message
 * on one line, naming the file, what is wrong and the fix. */
static void test_broken_checkpoint(void)
{
    g_autofree char *dir = linked_model((const char *[]){ "config.json", "tokenizer.json",
                                                          "tokenizer_config.json", NULL });
    g_autofree char *weights = g_build_filename(dir, "model.safetensors", NULL);
    const char *args[] = { "run", "--model", dir, "--prompt", "Hello", NULL };
    test_write_file(weights, "version https://git-lfs.github.com/spec/v1\n"
                             "oid sha256:4d7a2148a1a3b8c1f0f1f9c2a6fd1a5e8d2a1e5c9b7a3f6e0d4c8b2a1f9e7d3c\n"
                             "size 6746589584\n", -1);
    g_autofree char *in_dir = g_strdup_printf("\"git lfs pull\" in %s", dir);
    expect_failure_all(args, 1, (const char *[]){ weights, "is a Git LFS pointer",
                                                  "without git-lfs", in_dir, NULL });

    /* the real file, cut 1000 bytes short */
    g_autofree char *fixture = g_build_filename(test_fixture_dir(), "mini-tiny",
                                                "model.safetensors", NULL);
    g_autofree char *data = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(fixture, &data, &len, NULL));
    test_write_file(weights, data, (gssize)len - 1000);
    g_autofree char *have = g_strdup_printf("%zu bytes", (size_t)len - 1000);
    g_autofree char *want = g_strdup_printf("%zu bytes", (size_t)len);
    expect_failure_all(args, 1, (const char *[]){ weights, "is incomplete", have, want,
                                                  "download", NULL });
    test_rmtree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * tokenize, detokenize
 */

static void stdin_from(gpointer fd)
{
    dup2(GPOINTER_TO_INT(fd), 0);
}

/* Runs $VL2_CLI with args, `input` on its standard input and LC_ALL=C.UTF-8 (so that what it
 * makes of a command-line argument does not depend on the test's locale). */
static test_run_result run_cli_input(const char *const *args, const char *input, gssize len)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *in_path = g_build_filename(tmp, "stdin", NULL);
    test_write_file(in_path, input ? input : "", input ? len : 0);
    int fd = open(in_path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)g_getenv("VL2_CLI"));
    for (const char *const *a = args; *a; a++)
        g_ptr_array_add(argv, (char *)*a);
    g_ptr_array_add(argv, NULL);
    g_auto(GStrv) env = g_environ_setenv(g_get_environ(), "LC_ALL", "C.UTF-8", TRUE);
    test_run_result r = { 0 };
    g_autoptr(GError) error = NULL;
    int wait_status;
    /* dup2 clears the descriptor's close-on-exec flag on the copy it makes */
    if (!g_spawn_sync(NULL, (char **)argv->pdata, env, G_SPAWN_DEFAULT, stdin_from,
                      GINT_TO_POINTER(fd), &r.out, &r.err, &wait_status, &error))
        g_error("cannot run %s: %s", (const char *)argv->pdata[0], error->message);
    r.status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
    close(fd);
    g_ptr_array_unref(argv);
    test_rmtree(tmp);
    return r;
}

/* The golden tokenizer cases: {text, ids} with the ids of the reference's
 * encode(text, add_special_tokens=False). Free with json_node_unref(). */
static JsonNode *tokenizer_cases(void)
{
    g_autofree char *path = test_golden_path("tokenizer_cases.json");
    JsonNode *root = test_load_json(path);
    g_assert_cmpuint(json_array_get_length(json_node_get_array(root)), >=, 8);
    return root;
}

/* `vl2 tokenize --model dir -- text` (plain output), parsed; aborts the test on failure. */
static GArray *cli_tokenize(const char *dir, const char *text)
{
    const char *args[] = { "tokenize", "--model", dir, "--", text, NULL };
    test_run_result r = run_cli_input(args, NULL, 0);
    if (r.status != 0)
        g_error("vl2 tokenize \"%s\": %s", text, r.err);
    g_assert_true(g_str_has_suffix(r.out, "\n"));
    g_assert_cmpstr(r.err, ==, "");
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(int64_t));
    g_auto(GStrv) words = g_strsplit(g_strchomp(r.out), " ", -1);
    for (char **w = words; *w; w++) {
        if (!**w)
            continue;
        int64_t id;
        g_assert_true(g_ascii_string_to_signed(*w, 10, 0, G_MAXINT32, &id, NULL));
        g_array_append_val(ids, id);
    }
    test_run_clear(&r);
    return ids;
}

static bool same_ids(GArray *got, JsonArray *want)
{
    if (got->len != json_array_get_length(want))
        return false;
    for (guint i = 0; i < got->len; i++)
        if (g_array_index(got, int64_t, i) != json_array_get_int_element(want, i))
            return false;
    return true;
}

/* A third of the golden cases, and every one with a 4-byte character (tokens that hold part of
 * one), through `vl2 tokenize` from a folder that holds only tokenizer.json (the engine's tests
 * run every case through the same calls): plain and --json output give the reference's ids,
 * each token's string is the tokenizer's, the tokens' texts and bytes joined give the text back,
 * and `vl2 detokenize --json` of the ids gives the text back. */
static void test_tokenize_golden(void)
{
    g_autofree char *dir = linked_model((const char *[]){ "tokenizer.json", NULL });
    g_autofree char *tok_path = g_build_filename(dir, "tokenizer.json", NULL);
    vl2_tokenizer *tok;
    vl2_error err;
    g_assert_cmpint(vl2_tokenizer_load(tok_path, &tok, &err), ==, VL2_OK);
    JsonNode *root = tokenizer_cases();
    JsonArray *cases = json_node_get_array(root);
    int n_tested = 0, n_bytes = 0, n_special = 0, n_non_ascii = 0;
    /* `vl2 detokenize --model DIR --json -- ID...` of every id, and the texts they come from */
    GPtrArray *id_args = g_ptr_array_new_with_free_func(g_free);
    const char *head[] = { "detokenize", "--model", dir, "--json", "--" };
    for (size_t h = 0; h < G_N_ELEMENTS(head); h++)
        g_ptr_array_add(id_args, g_strdup(head[h]));
    GString *all_text = g_string_new(NULL);
    for (guint i = 0; i < json_array_get_length(cases); i++) {
        JsonObject *c = json_array_get_object_element(cases, i);
        const char *text = json_object_get_string_member(c, "text");
        JsonArray *want = json_object_get_array_member(c, "ids");
        if (i % 3 != 0 && !strstr(text, "\xf0"))
            continue;
        n_tested++;
        for (const char *p = text; *p; p++)
            if ((unsigned char)*p >= 0x80) {
                n_non_ascii++;
                break;
            }
        g_autoptr(GArray) plain = cli_tokenize(dir, text);
        if (!same_ids(plain, want)) {
            g_autofree char *escaped = g_strescape(text, NULL);
            g_error("case %u \"%s\": vl2 tokenize gives %u ids, the reference %u", i, escaped,
                    plain->len, json_array_get_length(want));
        }

        const char *args[] = { "tokenize", "--model", dir, "--json", "--", text, NULL };
        test_run_result r = run_cli_input(args, NULL, 0);
        if (r.status != 0)
            g_error("vl2 tokenize --json: %s", r.err);
        g_autoptr(JsonParser) parser = json_parser_new();
        g_assert_true(json_parser_load_from_data(parser, r.out, -1, NULL));
        JsonArray *tokens = json_node_get_array(json_parser_get_root(parser));
        g_assert_cmpuint(json_array_get_length(tokens), ==, json_array_get_length(want));
        GString *joined = g_string_new(NULL);
        for (guint k = 0; k < json_array_get_length(tokens); k++) {
            JsonObject *t = json_array_get_object_element(tokens, k);
            int64_t id = json_object_get_int_member(t, "id");
            g_assert_cmpint(id, ==, json_array_get_int_element(want, k));
            g_assert_cmpstr(json_object_get_string_member(t, "token"), ==,
                            vl2_tokenizer_token(tok, (int32_t)id));
            gboolean special = json_object_get_boolean_member(t, "special");
            g_assert_cmpint(special, ==, vl2_tokenizer_is_special(tok, (int32_t)id));
            n_special += special;
            if (json_object_has_member(t, "text")) {
                g_assert_false(json_object_has_member(t, "bytes"));
                g_string_append(joined, json_object_get_string_member(t, "text"));
            } else {
                JsonArray *bytes = json_object_get_array_member(t, "bytes");
                g_assert_cmpuint(json_array_get_length(bytes), >, 0);
                for (guint b = 0; b < json_array_get_length(bytes); b++)
                    g_string_append_c(joined, (char)json_array_get_int_element(bytes, b));
                n_bytes++;
            }
            g_ptr_array_add(id_args, g_strdup_printf("%" G_GINT64_FORMAT, id));
        }
        g_assert_cmpstr(joined->str, ==, text);
        g_string_free(joined, TRUE);
        test_run_clear(&r);

        g_string_append(all_text, text);
    }

    /* detokenize(tokenize(text)) == text, for all the texts at once: decoding concatenates */
    g_ptr_array_add(id_args, NULL);
    test_run_result r = run_cli_input((const char *const *)id_args->pdata, NULL, 0);
    if (r.status != 0)
        g_error("vl2 detokenize --json: %s", r.err);
    g_autoptr(JsonParser) dparser = json_parser_new();
    g_assert_true(json_parser_load_from_data(dparser, r.out, -1, NULL));
    JsonObject *o = json_node_get_object(json_parser_get_root(dparser));
    g_assert_cmpstr(json_object_get_string_member(o, "text"), ==, all_text->str);
    JsonArray *dtokens = json_object_get_array_member(o, "tokens");
    g_assert_cmpuint(json_array_get_length(dtokens), ==, id_args->len - 1 - G_N_ELEMENTS(head));
    for (guint k = 0; k < json_array_get_length(dtokens); k++) {
        g_autofree char *id = g_strdup_printf(
            "%" G_GINT64_FORMAT,
            json_object_get_int_member(json_array_get_object_element(dtokens, k), "id"));
        g_assert_cmpstr(id, ==, g_ptr_array_index(id_args, G_N_ELEMENTS(head) + k));
    }
    test_run_clear(&r);
    g_ptr_array_unref(id_args);
    g_string_free(all_text, TRUE);

    /* the cases reach every kind of token */
    g_assert_cmpint(n_tested, >=, 8);
    g_assert_cmpint(n_bytes, >, 0);
    g_assert_cmpint(n_special, >, 0);
    g_assert_cmpint(n_non_ascii, >=, 3);
    vl2_tokenizer_free(tok);
    json_node_unref(root);
    test_rmtree(dir);
}

/* Text from standard input; plain detokenize from standard input, fed what plain tokenize
 * printed, with special tokens kept or skipped. */
static void test_detokenize_stdin(void)
{
    g_autofree char *dir = linked_model((const char *[]){ "tokenizer.json", NULL });
    const char *text = "<image>\nDescribe caf\xc3\xa9 \xe6\xb7\xb1\xe5\xba\xa6 \xf0\x9f\x91\x8d!";
    test_run_result t = run_cli_input((const char *[]){ "tokenize", "--model", dir, "-", NULL },
                                      text, -1);
    g_assert_cmpint(t.status, ==, 0);
    g_autoptr(GArray) ids = cli_tokenize(dir, text);
    g_autofree char *want_line = NULL;
    GString *line = g_string_new(NULL);
    for (guint i = 0; i < ids->len; i++)
        g_string_append_printf(line, "%s%" G_GINT64_FORMAT, i ? " " : "",
                               g_array_index(ids, int64_t, i));
    g_string_append_c(line, '\n');
    want_line = g_string_free(line, FALSE);
    g_assert_cmpstr(t.out, ==, want_line);

    test_run_result d = run_cli_input((const char *[]){ "detokenize", "--model", dir, NULL },
                                      t.out, -1);
    g_assert_cmpint(d.status, ==, 0);
    g_autofree char *with_newline = g_strconcat(text, "\n", NULL);
    g_assert_cmpstr(d.out, ==, with_newline);
    test_run_clear(&d);

    /* commas and "-" work too; --skip-special drops <image> */
    g_autofree char *commas = g_strdelimit(g_strdup(t.out), " ", ',');
    d = run_cli_input((const char *[]){ "detokenize", "--model", dir, "--skip-special", "-", NULL },
                      commas, -1);
    g_assert_cmpint(d.status, ==, 0);
    g_assert_cmpstr(d.out, ==, with_newline + strlen("<image>"));
    test_run_clear(&d);
    test_run_clear(&t);

    /* standard input is read as it is, its final newline ("\n" is 201) included */
    t = run_cli_input((const char *[]){ "tokenize", "--model", dir, "-", NULL }, "Hello\n", -1);
    g_assert_cmpint(t.status, ==, 0);
    g_assert_cmpstr(t.out, ==, "19923 201\n");
    test_run_clear(&t);
    test_rmtree(dir);
}

static void test_tokenize_errors(void)
{
    g_autofree char *dir = linked_model((const char *[]){ "tokenizer.json", NULL });
    /* invalid UTF-8, as an argument and on standard input */
    test_run_result r = run_cli_input((const char *[]){ "tokenize", "--model", dir, "caf\xe9!",
                                                        NULL }, NULL, 0);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpstr(r.out, ==, "");
    g_assert_nonnull(strstr(r.err, "not valid UTF-8 (byte 4 of 5"));
    test_run_clear(&r);
    r = run_cli_input((const char *[]){ "tokenize", "--model", dir, "-", NULL }, "ok\xff", 3);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_nonnull(strstr(r.err, "standard input is not valid UTF-8 (byte 3 of 3"));
    test_run_clear(&r);

    /* ids the tokenizer has no token for, and words that are no ids */
    expect_failure((const char *[]){ "detokenize", "--model", dir, "19923", "128823", NULL }, 1,
                   "token id 128823 is out of range");
    expect_failure((const char *[]){ "detokenize", "--model", dir, "--", "-1", NULL }, 1,
                   "token id -1 is out of range");
    expect_failure((const char *[]){ "detokenize", "--model", dir, "99999999999999999999999",
                                     NULL }, 1, "is out of range");
    expect_failure((const char *[]){ "detokenize", "--model", dir, "12abc", NULL }, 1,
                   "\"12abc\" is not a token id");

    /* model folders without a usable tokenizer.json */
    expect_failure((const char *[]){ "tokenize", "--model", "/nonexistent", "hi", NULL }, 1,
                   "/nonexistent: not a folder");
    expect_failure((const char *[]){ "detokenize", "--model", "/nonexistent", "1", NULL }, 1,
                   "/nonexistent: not a folder");
    g_autofree char *empty = test_make_tmpdir();
    expect_failure((const char *[]){ "tokenize", "--model", empty, "hi", NULL }, 1,
                   "tokenizer.json");
    g_autofree char *pointer = g_build_filename(empty, "tokenizer.json", NULL);
    test_write_file(pointer, "version https://git-lfs.github.com/spec/v1\n"
                             "oid sha256:4d7a2148a1a3b8c1f0f1f9c2a6fd1a5e8d2a1e5c9b7a3f6e0d4c8b2a1f9e7d3c\n"
                             "size 7520431\n", -1);
    expect_failure((const char *[]){ "tokenize", "--model", empty, "hi", NULL }, 1,
                   "tokenizer.json is a Git LFS pointer");
    test_write_file(pointer, "{\"model\": ", -1);
    expect_failure((const char *[]){ "detokenize", "--model", empty, "1", NULL }, 1,
                   "tokenizer.json");

    /* usage */
    expect_failure((const char *[]){ "tokenize", "--model", dir, NULL }, 2, "one TEXT");
    expect_failure((const char *[]){ "tokenize", "--model", dir, "two", "texts", NULL }, 2,
                   "one TEXT");
    expect_failure((const char *[]){ "tokenize", "hi", NULL }, 2, "--model");
    expect_failure((const char *[]){ "detokenize", "1", NULL }, 2, "--model");
    expect_failure((const char *[]){ "detokenize", "--model", dir, "--jsn", "1", NULL }, 2,
                   "unknown option --jsn");
    test_rmtree(empty);
    test_rmtree(dir);
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

/* Destinations: "out/" failed after all the work ("cannot create a folder beside out/"); a
 * destination that cannot be written was found only after the model was loaded and
 * quantized (here the missing source is never looked at: the destination is checked first);
 * quantizing a quantized checkpoint said a tensor "cannot be written". */
static void test_quantize_destinations(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    g_autofree char *slash = g_strconcat(tmp, "/q8/", NULL);
    g_autofree char *q8 = g_build_filename(tmp, "q8", NULL);
    g_assert_true(g_str_has_suffix(slash, "/"));
    test_run_result r = test_run_cli((const char *[]){ "quantize", "--to", "q8", model, slash,
                                                       NULL });
    if (r.status != 0)
        g_error("vl2 quantize to %s: %s", slash, r.err);
    test_run_clear(&r);
    g_autofree char *weights = g_build_filename(q8, "model.safetensors", NULL);
    g_assert_true(g_file_test(weights, G_FILE_TEST_IS_REGULAR));

    g_autofree char *file = g_build_filename(tmp, "file", NULL);
    test_write_file(file, "x", 1);
    g_autofree char *under_file = g_build_filename(file, "out", NULL);
    expect_failure((const char *[]){ "quantize", "--to", "q4", "/nonexistent", under_file, NULL },
                   1, "cannot create a folder beside");

    g_autofree char *q4 = g_build_filename(tmp, "q4", NULL);
    expect_failure((const char *[]){ "quantize", "--to", "q4", q8, q4, NULL }, 1,
                   "is already quantized");
    g_assert_false(g_file_test(q4, G_FILE_TEST_EXISTS));
    unlink(file);
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
                               "prefill_fraction_f32", "peak_rss_mb", "rss_bound_mb",
                               "ttft_cold_seconds", "ttft_warm_seconds" };
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
    g_assert_cmpstr(json_object_get_string_member(o, "compute"), ==, "f32");
    /* with the image read ahead, the first token waits for the question alone */
    g_assert_cmpint(json_object_get_int_member(o, "ttft_tiles"), ==, 10);
    g_assert_cmpint(json_object_get_int_member(o, "ttft_warm_prompt_tokens"), <, 40);
    test_run_clear(&r);

    /* the bf16 mode, judged against the bf16 dot peak sampled in the same run (a true peak:
     * nothing the engine does reaches it) */
    const char *bf16_args[] = { "bench", "--model", model, "--threads", "2", "--repeats", "1",
                                "--tiles", "2", "--prompt-tokens", "64", "--gen-tokens", "8",
                                "--compute", "bf16", "--json", NULL };
    r = test_run_cli(bf16_args);
    if (r.status != 0)
        g_error("vl2 bench --compute bf16: %s", r.err);
    g_autoptr(JsonParser) bf16_parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(bf16_parser, r.out, -1, NULL));
    o = json_node_get_object(json_parser_get_root(bf16_parser));
    g_assert_cmpstr(json_object_get_string_member(o, "compute"), ==, "bf16");
    if (vl2_compute_bf16_native()) {
        g_assert_cmpint(json_object_get_int_member(o, "bf16_dot_samples"), >=, 4);
        const char *fractions[] = { "vision_fraction_bf16", "prefill_fraction_bf16" };
        for (size_t i = 0; i < G_N_ELEMENTS(fractions); i++) {
            double v = json_object_get_double_member(o, fractions[i]);
            if (!(v > 0 && v < 1))
                g_error("bench --compute bf16: %s = %g", fractions[i], v);
        }
    }
    test_run_clear(&r);

    expect_failure((const char *[]){ "bench", "--model", model, "--weights", "q5", NULL }, 2,
                   "bf16, q8 or q4");
    expect_failure((const char *[]){ "bench", "--model", model, "--compute", "f16", NULL }, 2,
                   "--compute is f32 or bf16");
    expect_failure((const char *[]){ "bench", "--model", "/nonexistent", NULL }, 1,
                   "/nonexistent");
    /* unbounded counts: a --tiles overflowing the test image's size (int) and its unchecked
     * malloc, a --prompt-tokens far past the context built quadratically before the context
     * refused it, absurd thread counts */
    expect_failure((const char *[]){ "bench", "--model", model, "--tiles", "2000000000", NULL },
                   2, "--tiles at most");
    expect_failure((const char *[]){ "bench", "--model", model, "--threads", "100000", NULL }, 2,
                   "--threads is 0");
    expect_failure((const char *[]){ "bench", "--model", model, "--threads", "2",
                                     "--prompt-tokens", "100000", NULL },
                   1, "do not fit the model's context of 4096 tokens");
}

static void expect_failure_bounded(const char *const *args, const char *needle);

/* A copy of mini-tiny whose tokenizer has no token for any English word or letter (its
 * vocabulary without them, renumbered; no merges): English text encodes to nothing. */
static char *model_without_english(void)
{
    g_autofree char *src = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    char *dst = test_make_tmpdir();
    static const char *const kept[] = { "config.json", "model.safetensors",
                                        "tokenizer_config.json" };
    for (size_t i = 0; i < G_N_ELEMENTS(kept); i++) {
        g_autofree char *from = g_build_filename(src, kept[i], NULL);
        g_autofree char *to = g_build_filename(dst, kept[i], NULL);
        g_assert_cmpint(symlink(from, to), ==, 0);
    }
    g_autofree char *tok_path = g_build_filename(src, "tokenizer.json", NULL);
    JsonNode *root = test_load_json(tok_path);
    JsonObject *model = json_object_get_object_member(json_node_get_object(root), "model");
    JsonObject *vocab = json_object_get_object_member(model, "vocab");
    g_autoptr(GRegex) english = g_regex_new("^[A-Za-z\u0120.,;:'\\-]+$", 0, 0, NULL);
    /* ids in order, the English ones left out */
    guint n = json_object_get_size(vocab);
    const char **by_id = g_new0(const char *, n);
    JsonObjectIter it;
    const char *key;
    JsonNode *value;
    json_object_iter_init(&it, vocab);
    while (json_object_iter_next(&it, &key, &value)) {
        gint64 id = json_node_get_int(value);
        g_assert_true(id >= 0 && id < n);
        by_id[id] = key;
    }
    JsonObject *kept_vocab = json_object_new();
    gint64 next = 0;
    for (guint i = 0; i < n; i++)
        if (by_id[i] && !g_regex_match(english, by_id[i], 0, NULL))
            json_object_set_int_member(kept_vocab, by_id[i], next++);
    g_free(by_id);
    JsonArray *added = json_object_get_array_member(json_node_get_object(root), "added_tokens");
    for (guint i = 0; i < json_array_get_length(added); i++) {
        JsonObject *a = json_array_get_object_element(added, i);
        const char *content = json_object_get_string_member(a, "content");
        json_object_set_int_member(a, "id", json_object_has_member(kept_vocab, content)
                                                ? json_object_get_int_member(kept_vocab, content)
                                                : next++);
    }
    json_object_set_object_member(model, "vocab", kept_vocab);
    json_object_set_array_member(model, "merges", json_array_new());
    g_autofree char *text = json_to_string(root, FALSE);
    g_autofree char *out = g_build_filename(dst, "tokenizer.json", NULL);
    test_write_file(out, text, -1);
    json_node_unref(root);
    return dst;
}

/* With a tokenizer that gives English no tokens, the long prompt was built forever. */
static void test_bench_no_tokens(void)
{
    g_autofree char *model = model_without_english();
    test_run_result t = test_run_cli((const char *[]){ "tokenize", "--model", model,
                                                       "The engine reads the prompt.", NULL });
    g_assert_cmpint(t.status, ==, 0);
    g_assert_cmpstr(g_strstrip(t.out), ==, "");
    test_run_clear(&t);
    expect_failure_bounded((const char *[]){ "bench", "--model", model, "--threads", "2",
                                             "--repeats", "1", "--tiles", "0", "--gen-tokens",
                                             "1", "--prompt-tokens", "64", NULL },
                           "the tokenizer gives no tokens for English text");
    test_rmtree(model);
}

/* More than 64 threads (the default on a machine with more than 64 CPUs) wrote past a 64-entry
 * array of the bandwidth probe. */
static void test_bench_many_threads(void)
{
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    const char *args[] = { "bench", "--model", model, "--threads", "65", "--repeats", "1",
                           "--tiles", "0", "--prompt-tokens", "32", "--gen-tokens", "2",
                           "--json", NULL };
    test_run_result r = test_run_cli(args);
    if (r.status != 0)
        g_error("vl2 bench --threads 65: status %d: %s", r.status, r.err);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(parser, r.out, -1, NULL));
    JsonObject *o = json_node_get_object(json_parser_get_root(parser));
    g_assert_cmpint(json_object_get_int_member(o, "threads"), ==, 65);
    g_assert_cmpfloat(json_object_get_double_member(o, "bandwidth_gbs"), >, 0);
    test_run_clear(&r);
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

/* A question and system prompt that are not ASCII were refused in every locale ("Invalid byte
 * sequence in conversion input"): setlocale() was never called, and GOption converts from the
 * locale's encoding. They are read as UTF-8 in a UTF-8 locale and in the C locale (where
 * scripts and services often run); the prompt counts the same tokens either way. */
static void test_run_non_ascii(void)
{
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    const char *args[] = { "run", "--model", model, "--prompt", "Qu'est-ce que c'est ? 这是什么？",
                           "--system", "Réponds en français.", "--max-new-tokens", "2",
                           "--temperature", "0", NULL };
    const char *locales[] = { "C.UTF-8", "C" };
    char *first = NULL;
    for (size_t i = 0; i < G_N_ELEMENTS(locales); i++) {
        g_setenv("LC_ALL", locales[i], TRUE);
        test_run_result r = test_run_cli(args);
        g_unsetenv("LC_ALL");
        if (r.status != 0)
            g_error("vl2 run in the %s locale: %s", locales[i], r.err);
        const char *count = strstr(r.err, "prompt tokens");
        g_assert_nonnull(count);
        if (!first)
            first = g_strndup(r.err, (gsize)(count - r.err));
        else
            g_assert_true(g_str_has_prefix(r.err, first)); /* "[N prompt tokens" */
        test_run_clear(&r);
    }
    g_free(first);
    /* bytes that are not UTF-8 in a UTF-8 locale: refused, named */
    g_setenv("LC_ALL", "C.UTF-8", TRUE);
    const char *bad[] = { "run", "--model", model, "--prompt", "caf\xe9", NULL };
    test_run_result r = test_run_cli(bad);
    g_unsetenv("LC_ALL");
    g_assert_cmpint(r.status, ==, 2);
    g_assert_nonnull(strstr(r.err, "--prompt"));
    test_run_clear(&r);
}

/* run's help shows the engine's defaults, with no numbers of its own. */
static void test_run_help(void)
{
    vl2_generate_params gp = vl2_generate_default_params();
    const char *args[] = { "run", "--help", NULL };
    test_run_result r = test_run_cli(args);
    g_assert_cmpint(r.status, ==, 0);
    char *expected[] = {
        g_strdup_printf("Sampling temperature (default %g;", (double)gp.temperature),
        g_strdup_printf("Nucleus sampling mass (default %g)", (double)gp.top_p),
        g_strdup_printf("Keep the K most likely (default %d)", gp.top_k),
        g_strdup_printf("Repetition penalty (default %g)", (double)gp.repetition_penalty),
        g_strdup_printf("Answer length limit (default %d;", gp.max_new_tokens),
    };
    for (size_t i = 0; i < G_N_ELEMENTS(expected); i++) {
        if (!strstr(r.out, expected[i]))
            g_error("vl2 run --help lacks \"%s\":\n%s", expected[i], r.out);
        g_free(expected[i]);
    }
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

/* `vl2 eval --compute bf16`: the bf16 mode's greedy answer to an image question equals the
 * float32 one on a case without near-ties (the golden bf16 test bounds its logits); an unknown
 * mode is a usage error. */
static void test_eval_bf16(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *case_path = write_case(tmp, "ground_one");
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    g_autofree char *images = test_golden_path("images");
    JsonArray *ids[2];
    JsonParser *parsers[2];
    for (int i = 0; i < 2; i++) {
        const char *args[] = { "eval", "--model", model, "--case", case_path, "--images", images,
                               "--compute", i ? "bf16" : "f32", NULL };
        test_run_result r = test_run_cli(args);
        if (r.status != 0)
            g_error("vl2 eval --compute %s: %s", args[8], r.err);
        parsers[i] = json_parser_new();
        g_assert_true(json_parser_load_from_data(parsers[i], r.out, -1, NULL));
        ids[i] = json_object_get_array_member(
            json_node_get_object(json_parser_get_root(parsers[i])), "greedy_ids");
        test_run_clear(&r);
    }
    g_assert_cmpint(json_array_get_length(ids[1]), ==, json_array_get_length(ids[0]));
    g_assert_cmpint(json_array_get_length(ids[0]), >, 0);
    for (guint i = 0; i < json_array_get_length(ids[0]); i++)
        g_assert_cmpint(json_array_get_int_element(ids[1], i), ==,
                        json_array_get_int_element(ids[0], i));
    g_object_unref(parsers[0]);
    g_object_unref(parsers[1]);
    expect_failure((const char *[]){ "eval", "--model", model, "--case", case_path, "--compute",
                                     "fp8", NULL },
                   2, "--compute is f32 or bf16");
    expect_failure((const char *[]){ "run", "--model", model, "--prompt", "Hi", "--compute",
                                     "fp8", NULL },
                   2, "--compute is f32 or bf16");
    test_rmtree(tmp);
}

/* Like expect_failure with status 1, but `vl2` is killed after 60 seconds: a wait that never
 * ends fails the test instead of hanging it. */
static void expect_failure_bounded(const char *const *args, const char *needle)
{
    const char *cli = g_getenv("VL2_CLI");
    g_assert_nonnull(cli);
    GPtrArray *argv = g_ptr_array_new();
    const char *prefix[] = { "timeout", "-s", "KILL", "60", cli };
    for (size_t i = 0; i < G_N_ELEMENTS(prefix); i++)
        g_ptr_array_add(argv, (char *)prefix[i]);
    for (const char *const *a = args; *a; a++)
        g_ptr_array_add(argv, (char *)*a);
    g_ptr_array_add(argv, NULL);
    g_autofree char *out = NULL, *err = NULL;
    g_autoptr(GError) error = NULL;
    int wait_status;
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                      &err, &wait_status, &error))
        g_error("cannot run %s: %s", cli, error->message);
    g_ptr_array_unref(argv);
    if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 1 || !strstr(err, needle))
        g_error("vl2 %s: wait status %d, stderr \"%s\"; want exit status 1 and \"%s\"",
                args[0], wait_status, err, needle);
    g_assert_cmpstr(out, ==, "");
    const char *nl = strchr(err, '\n');
    g_assert_nonnull(nl);
    g_assert_cmpint(nl[1], ==, 0);
}

/* An eval case nested 100,000 deep overflowed the stack of json-glib's recursive parser. */
static void test_eval_case_deep(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    g_autofree char *deep = g_build_filename(tmp, "deep.json", NULL);
    GString *json = g_string_new("{\"conversation\": ");
    for (int i = 0; i < 100000; i++)
        g_string_append_c(json, '[');
    test_write_file(deep, json->str, (gssize)json->len);
    g_string_free(json, TRUE);
    expect_failure_bounded((const char *[]){ "eval", "--model", model, "--case", deep, NULL },
                           "nested more than");
    test_rmtree(tmp);
}

/* --max-new-tokens 2000000000 asked GLib for 160 GB of step records up front and aborted:
 * steps past the context are refused, with the numbers. */
static void test_eval_max_new_tokens(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *c = write_case(tmp, "text_only");
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    expect_failure_bounded((const char *[]){ "eval", "--model", model, "--case", c,
                                             "--max-new-tokens", "2000000000", NULL },
                           "--max-new-tokens 2000000000 does not fit");
    test_rmtree(tmp);
}

/* Members of the wrong JSON type (a role or content that is an object, a system prompt that
 * is a list) reached json-glib's string getters: GLib CRITICALs (fatal in the tests). Each is
 * the eval case's one-line error. */
static void test_eval_case_wrong_types(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    g_autofree char *path = g_build_filename(tmp, "case.json", NULL);
    static const char *const cases[] = {
        "{\"conversation\": [{\"role\": {}, \"content\": \"Hi\"}]}",
        "{\"conversation\": [{\"role\": \"<|User|>\", \"content\": [1]}]}",
        "{\"system_prompt\": [\"x\"], \"conversation\": [{\"role\": \"<|User|>\", "
        "\"content\": 5}]}",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        test_write_file(path, cases[i], -1);
        expect_failure_bounded((const char *[]){ "eval", "--model", model, "--case", path, NULL },
                               "case.json");
    }
    test_rmtree(tmp);
}

/* An eval case that is a named pipe waited forever in open(); one of 3 GB (sparse) was read
 * whole. Both are refused before reading, with the file named. */
static void test_eval_case_not_a_file(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *model = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    g_autofree char *fifo = g_build_filename(tmp, "fifo.json", NULL);
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    expect_failure_bounded((const char *[]){ "eval", "--model", model, "--case", fifo, NULL },
                           "fifo.json: cannot read: this is a named pipe");
    g_autofree char *sparse = g_build_filename(tmp, "sparse.json", NULL);
    int fd = open(sparse, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)3 << 30), ==, 0);
    close(fd);
    expect_failure_bounded((const char *[]){ "eval", "--model", model, "--case", sparse, NULL },
                           "sparse.json: the file is 3221225472 bytes, more than");
    test_rmtree(tmp);
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
    g_test_add_func("/engine/cli/eval-bf16", test_eval_bf16);
    g_test_add_func("/engine/cli/errors", test_errors);
    g_test_add_func("/engine/cli/broken-checkpoint", test_broken_checkpoint);
    g_test_add_func("/engine/cli/tokenize/golden", test_tokenize_golden);
    g_test_add_func("/engine/cli/tokenize/stdin", test_detokenize_stdin);
    g_test_add_func("/engine/cli/tokenize/errors", test_tokenize_errors);
    g_test_add_func("/engine/cli/run", test_run);
    g_test_add_func("/engine/cli/run-help", test_run_help);
    g_test_add_func("/engine/cli/run-with-image", test_run_with_image);
    g_test_add_func("/engine/cli/quantize", test_quantize);
    g_test_add_func("/engine/cli/bench", test_bench);
    g_test_add_func("/engine/cli/eval-case-deep", test_eval_case_deep);
    g_test_add_func("/engine/cli/eval-case-not-a-file", test_eval_case_not_a_file);
    g_test_add_func("/engine/cli/eval-case-wrong-types", test_eval_case_wrong_types);
    g_test_add_func("/engine/cli/run-non-ascii", test_run_non_ascii);
    g_test_add_func("/engine/cli/quantize-destinations", test_quantize_destinations);
    g_test_add_func("/engine/cli/eval-max-new-tokens", test_eval_max_new_tokens);
    g_test_add_func("/engine/cli/bench-many-threads", test_bench_many_threads);
    g_test_add_func("/engine/cli/bench-no-tokens", test_bench_no_tokens);
    return g_test_run();
}
