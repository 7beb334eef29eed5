/* test-mkrandom.c - random-weight checkpoints: vl2_write_random_checkpoint() and `vl2 mkrandom`.
 *
 * Dry runs of the three presets against the published sizes (Tiny 3.37B parameters, the
 * 27.5B model's index total, Small near 16.1B); a real write of the mini-tiny config that
 * loads and generates finite logits, is byte-identical for a seed whatever the thread count
 * and different for another seed, with an index naming every tensor of the table; sharding
 * that changes nothing the model computes; and hostile inputs (missing or invalid config,
 * unwritable or occupied dest, a write that fails midway, cancellation) that end in a clean
 * error with nothing left behind.
 */
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "kernels.h"
#include "test-util.h"
#include "vl2-private.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

static char *read_text(const char *path)
{
    char *text;
    g_autoptr(GError) error = NULL;
    g_file_get_contents(path, &text, NULL, &error);
    g_assert_no_error(error);
    return text;
}

static char *golden_model_file(const char *model, const char *name)
{
    g_autofree char *rel = g_build_filename("models", model, name, NULL);
    return test_golden_path(rel);
}

/* The mini-tiny config and its tokenizer files as extra files. */
typedef struct {
    char *config;
    char *tok, *tok_config;
    gsize tok_len, tok_config_len;
    vl2_extra_file extra[2];
} mini;

static void mini_init(mini *m)
{
    g_autofree char *cpath = golden_model_file("mini-tiny", "config.json");
    g_autofree char *tpath = test_model_file("tokenizer.json");
    g_autofree char *tcpath = test_model_file("tokenizer_config.json");
    m->config = read_text(cpath);
    g_assert_true(g_file_get_contents(tpath, &m->tok, &m->tok_len, NULL));
    g_assert_true(g_file_get_contents(tcpath, &m->tok_config, &m->tok_config_len, NULL));
    m->extra[0] = (vl2_extra_file){ "tokenizer.json", m->tok, m->tok_len };
    m->extra[1] = (vl2_extra_file){ "tokenizer_config.json", m->tok_config, m->tok_config_len };
}

static void mini_clear(mini *m)
{
    g_free(m->config);
    g_free(m->tok);
    g_free(m->tok_config);
}

static vl2_random_params mini_params(mini *m, uint64_t seed, int n_threads)
{
    vl2_random_params p = vl2_random_default_params();
    p.seed = seed;
    p.n_threads = n_threads;
    p.extra_files = m->extra;
    p.n_extra_files = 2;
    return p;
}

static int by_name(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in a folder, hidden ones included. */
static GPtrArray *list_dir(const char *dir)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GDir *d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    const char *n;
    while ((n = g_dir_read_name(d)))
        g_ptr_array_add(names, g_strdup(n));
    g_dir_close(d);
    g_ptr_array_sort(names, by_name);
    return names;
}

static char *joined(GPtrArray *names)
{
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < names->len; i++)
        g_string_append_printf(s, "%s%s", i ? " " : "", (char *)g_ptr_array_index(names, i));
    return g_string_free(s, FALSE);
}

static void assert_dir_holds(const char *dir, const char *expected)
{
    g_autoptr(GPtrArray) names = list_dir(dir);
    g_autofree char *have = joined(names);
    g_assert_cmpstr(have, ==, expected);
}

static bool same_file(const char *a, const char *b)
{
    g_autofree char *x = NULL, *y = NULL;
    gsize nx, ny;
    g_assert_true(g_file_get_contents(a, &x, &nx, NULL));
    g_assert_true(g_file_get_contents(b, &y, &ny, NULL));
    return nx == ny && memcmp(x, y, nx) == 0;
}

/* Greedy generation of n tokens after "Hello"; every logit finite; returns the first logits
 * (g_free them) and the ids in ids[n]. */
static float *generate(const char *dir, int n, int32_t *ids)
{
    vl2_model *m;
    vl2_session *ses;
    vl2_prompt *p;
    vl2_error err;
    if (vl2_model_load(dir, NULL, &m, &err) != VL2_OK)
        g_error("%s", err.message);
    vl2_model_info info;
    vl2_model_get_info(m, &info);
    vl2_message msg = { VL2_ROLE_USER, "Hello", NULL, 0 };
    vl2_conversation conv = { &msg, 1, NULL };
    g_assert_cmpint(vl2_prompt_new(m, &conv, &p, &err), ==, VL2_OK);
    g_assert_cmpint(vl2_session_new(m, NULL, &ses, &err), ==, VL2_OK);
    vl2_generate_params gp = vl2_generate_default_params();
    gp.temperature = 0;
    g_assert_cmpint(vl2_session_prefill(ses, p, &gp, &err), ==, VL2_OK);
    float *first = g_memdup2(vl2_session_logits(ses), (gsize)info.n_vocab * sizeof(float));
    for (int step = 0; step < n; step++) {
        const float *l = vl2_session_logits(ses);
        int best = 0;
        double sum = 0, sum2 = 0;
        for (int i = 0; i < info.n_vocab; i++) {
            g_assert_true(isfinite(l[i]));
            best = l[i] > l[best] ? i : best;
            sum += l[i];
            sum2 += (double)l[i] * l[i];
        }
        /* not a constant: the random weights reach the logits */
        double var = sum2 / info.n_vocab - (sum / info.n_vocab) * (sum / info.n_vocab);
        g_assert_cmpfloat(var, >, 1e-6);
        ids[step] = best;
        g_assert_cmpint(vl2_session_feed(ses, best, &err), ==, VL2_OK);
    }
    vl2_prompt_free(p);
    vl2_session_free(ses);
    vl2_model_free(m);
    return first;
}

/* "key: value" from the CLI's stdout. */
static gint64 counted(const char *out, const char *key)
{
    g_autofree char *needle = g_strconcat("\n", key, ": ", NULL);
    g_autofree char *text = g_strconcat("\n", out, NULL);
    const char *p = strstr(text, needle);
    if (!p)
        g_error("no \"%s\" in:\n%s", key, out);
    return g_ascii_strtoll(p + strlen(needle), NULL, 10);
}

/* Exit status `status`, nothing on stdout, one line on stderr holding `needle`. */
static void expect_failure(const char *const *args, int status, const char *needle)
{
    test_run_result r = test_run_cli(args);
    if (r.status != status || !strstr(r.err, needle))
        g_error("exit %d (expected %d), stderr \"%s\" (expected \"%s\")", r.status, status, r.err,
                needle);
    g_assert_cmpstr(r.out, ==, "");
    if (status == 1) {
        const char *nl = strchr(r.err, '\n');
        g_assert_nonnull(nl);
        g_assert_cmpint(nl[1], ==, 0);
    }
    test_run_clear(&r);
}

/* ---------------------------------------------------------------------------------------------
 * Dry runs: the published sizes
 */

static vl2_random_info dry_run(const char *config_path)
{
    g_autofree char *text = read_text(config_path);
    vl2_random_params p = vl2_random_default_params();
    p.dry_run = true;
    vl2_random_info info;
    vl2_error err;
    if (vl2_write_random_checkpoint(text, NULL, &p, &info, &err) != VL2_OK)
        g_error("%s", err.message);
    g_assert_cmpint(info.n_bytes, ==, info.n_params * 2);
    return info;
}

static void test_dry_run_tiny(void)
{
    g_autofree char *path = test_model_file("tiny/config.json");
    vl2_random_info info = dry_run(path);
    g_test_message("tiny: %" G_GINT64_FORMAT " parameters, %d tensors, %d shards", info.n_params,
                   info.n_tensors, info.n_shards);
    /* the golden README's count for the published Tiny shapes */
    g_assert_cmpint(info.n_params, ==, G_GINT64_CONSTANT(3370501440));
    g_assert_cmpfloat(fabs((double)info.n_params / 3.37e9 - 1), <, 0.01);
    g_assert_cmpint(info.n_shards, ==, 2);   /* 6.7 GB in shards of at most 4 GiB */

    test_run_result r = test_run_cli((const char *[]){ "mkrandom", "--preset", "tiny", "--dry-run", NULL });
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpint(counted(r.out, "parameters"), ==, info.n_params);
    g_assert_cmpint(counted(r.out, "bytes"), ==, info.n_bytes);
    g_assert_cmpint(counted(r.out, "tensors"), ==, info.n_tensors);
    g_assert_cmpint(counted(r.out, "shards"), ==, info.n_shards);
    g_assert_cmpstr(r.err, ==, "");
    test_run_clear(&r);
}

static void test_dry_run_base(void)
{
    g_autofree char *path = test_model_file("base/config.json");
    vl2_random_info info = dry_run(path);
    g_test_message("base: %" G_GINT64_FORMAT " parameters, %d tensors, %d shards", info.n_params,
                   info.n_tensors, info.n_shards);
    /* model.safetensors.index.json of the published checkpoint: 6973 names, total_size */
    g_assert_cmpint(info.n_bytes, ==, G_GINT64_CONSTANT(54960268496));
    g_assert_cmpint(info.n_tensors, ==, 6973);
    g_assert_cmpint(info.n_shards, ==, 13);  /* 55 GB in shards of at most 4 GiB */

    test_run_result r = test_run_cli((const char *[]){ "mkrandom", "--preset", "base", "--dry-run", NULL });
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpint(counted(r.out, "bytes"), ==, G_GINT64_CONSTANT(54960268496));
    g_assert_cmpint(counted(r.out, "tensors"), ==, 6973);
    test_run_clear(&r);
}

static void test_dry_run_small(void)
{
    test_run_result r = test_run_cli((const char *[]){ "mkrandom", "--preset", "small", "--dry-run", NULL });
    g_assert_cmpint(r.status, ==, 0);
    gint64 n = counted(r.out, "parameters");
    g_test_message("small: %" G_GINT64_FORMAT " parameters, %" G_GINT64_FORMAT " tensors",
                   n, counted(r.out, "tensors"));
    /* DeepSeek-VL2-Small is published as 16.1B total. The preset keeps the VL2 tokenizer's
     * 129280-row vocabulary (see mkrandom.c); with V2-Lite's 102400 rows it would be 110M less,
     * 16.15B. */
    g_assert_cmpint(n, ==, G_GINT64_CONSTANT(16258449984));
    g_assert_cmpfloat(fabs((double)n / 16.1e9 - 1), <, 0.01);
    g_assert_cmpint(counted(r.out, "bytes"), ==, 2 * n);
    test_run_clear(&r);
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 */

static vl2_random_info write_mini(mini *m, const char *dest, const vl2_random_params *p)
{
    vl2_random_info info;
    vl2_error err;
    if (vl2_write_random_checkpoint(m->config, dest, p, &info, &err) != VL2_OK)
        g_error("%s", err.message);
    return info;
}

/* The index names every tensor of the table, in one of the listed shards, and the shards'
 * headers agree. */
static void check_index(const char *dir, const vl2_random_info *info)
{
    g_autofree char *cpath = g_build_filename(dir, "config.json", NULL);
    vl2_config cfg;
    vl2_error err;
    g_assert_cmpint(vl2_config_load(cpath, &cfg, &err), ==, VL2_OK);
    GPtrArray *table = vl2_tensor_table(&cfg, NULL);
    g_assert_cmpint(table->len, ==, info->n_tensors);

    g_autofree char *ipath = g_build_filename(dir, "model.safetensors.index.json", NULL);
    JsonNode *root = test_load_json(ipath);
    JsonObject *o = json_node_get_object(root);
    g_assert_cmpint(json_object_get_int_member(json_object_get_object_member(o, "metadata"),
                                               "total_size"), ==, info->n_bytes);
    JsonObject *map = json_object_get_object_member(o, "weight_map");
    g_assert_cmpint(json_object_get_size(map), ==, table->len);
    GHashTable *files = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                              (GDestroyNotify)vl2_st_close);
    for (guint i = 0; i < table->len; i++) {
        const vl2_tensor_spec *e = g_ptr_array_index(table, i);
        const char *file = json_object_get_string_member_with_default(map, e->name, NULL);
        if (!file)
            g_error("the index lacks %s", e->name);
        g_assert_true(g_str_has_prefix(file, "model-") && g_str_has_suffix(file, ".safetensors"));
        vl2_st_file *f = g_hash_table_lookup(files, file);
        if (!f) {
            g_autofree char *path = g_build_filename(dir, file, NULL);
            g_assert_cmpint(vl2_st_open(path, &f, &err), ==, VL2_OK);
            g_hash_table_insert(files, (char *)json_object_get_string_member(map, e->name), f);
        }
        const vl2_tensor *t = vl2_st_get(f, e->name);
        g_assert_nonnull(t);
        g_assert_cmpint(t->dtype, ==, VL2_DTYPE_BF16);
        g_assert_cmpint(t->ndim, ==, e->ndim);
        for (int d = 0; d < e->ndim; d++)
            g_assert_cmpint(t->shape[d], ==, e->shape[d]);
        g_assert_cmpuint((uintptr_t)t->data % 2, ==, 0); /* no aligned copies at load */
    }
    g_assert_cmpint(g_hash_table_size(files), ==, info->n_shards);
    g_hash_table_unref(files);
    json_node_unref(root);
    g_ptr_array_unref(table);
    vl2_config_clear(&cfg);
}

static double bf16_at(const vl2_tensor *t, int64_t i)
{
    uint16_t b;
    memcpy(&b, (const uint8_t *)t->data + 2 * i, 2);
    return vl2_bf16_to_f32(b);
}

/* Norms 1, biases 0, the rest uniform with std 0.02 around 0. */
static void check_values(const char *dir)
{
    g_autofree char *path = g_build_filename(dir, "model-00001-of-00001.safetensors", NULL);
    vl2_st_file *f;
    vl2_error err;
    g_assert_cmpint(vl2_st_open(path, &f, &err), ==, VL2_OK);
    static const char *ones[] = { "language.model.norm.weight",
                                  "language.model.layers.1.input_layernorm.weight",
                                  "vision.blocks.0.norm1.weight", "vision.norm.weight" };
    static const char *zeros[] = { "vision.blocks.1.attn.qkv.bias", "projector.layers.0.bias" };
    for (size_t k = 0; k < G_N_ELEMENTS(ones); k++) {
        const vl2_tensor *t = vl2_st_get(f, ones[k]);
        for (int64_t i = 0; i < t->n_elements; i++)
            g_assert_cmpfloat(bf16_at(t, i), ==, 1.0);
    }
    for (size_t k = 0; k < G_N_ELEMENTS(zeros); k++) {
        const vl2_tensor *t = vl2_st_get(f, zeros[k]);
        for (int64_t i = 0; i < t->n_elements; i++)
            g_assert_cmpfloat(bf16_at(t, i), ==, 0.0);
    }
    const vl2_tensor *t = vl2_st_get(f, "language.model.embed_tokens.weight");
    double sum = 0, sum2 = 0, worst = 0;
    for (int64_t i = 0; i < t->n_elements; i++) {
        double v = bf16_at(t, i);
        sum += v;
        sum2 += v * v;
        worst = fmax(worst, fabs(v));
    }
    double mean = sum / t->n_elements, sd = sqrt(sum2 / t->n_elements - mean * mean);
    g_test_message("embed_tokens: mean %.2g, std %.4f, max |v| %.4f", mean, sd, worst);
    g_assert_cmpfloat(fabs(mean), <, 1e-4);
    g_assert_cmpfloat(fabs(sd - 0.02), <, 2e-4);
    g_assert_cmpfloat(worst, <=, 0.02 * sqrt(3.0) * 1.004);
    vl2_st_close(f);
}

static void test_write(void)
{
    mini m;
    mini_init(&m);
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *a = g_build_filename(tmp, "a", NULL);
    g_autofree char *b = g_build_filename(tmp, "b", NULL);
    g_autofree char *c = g_build_filename(tmp, "nested", "c", NULL);
    vl2_random_params pa = mini_params(&m, 42, 1), pb = mini_params(&m, 42, 3),
                      pc = mini_params(&m, 43, 0);
    vl2_random_info info = write_mini(&m, a, &pa);
    write_mini(&m, b, &pb);
    write_mini(&m, c, &pc);   /* a missing parent folder is created */
    g_assert_cmpint(info.n_shards, ==, 1);

    /* the folder holds exactly the checkpoint: no temporary left */
    assert_dir_holds(a, "config.json model-00001-of-00001.safetensors "
                        "model.safetensors.index.json tokenizer.json tokenizer_config.json");
    g_autofree char *cfg_a = g_build_filename(a, "config.json", NULL);
    g_autofree char *cfg_text = read_text(cfg_a);
    g_assert_cmpstr(cfg_text, ==, m.config);

    /* same seed, any thread count: the same bytes; another seed: other weights */
    g_autoptr(GPtrArray) names = list_dir(a);
    for (guint i = 0; i < names->len; i++) {
        const char *n = g_ptr_array_index(names, i);
        g_autofree char *fa = g_build_filename(a, n, NULL);
        g_autofree char *fb = g_build_filename(b, n, NULL);
        g_autofree char *fc = g_build_filename(c, n, NULL);
        g_assert_true(same_file(fa, fb));
        g_assert_true(same_file(fa, fc) == !g_str_has_suffix(n, ".safetensors"));
    }

    check_index(a, &info);
    check_values(a);

    int32_t ids_a[8], ids_c[8];
    g_autofree float *la = generate(a, 8, ids_a);
    g_autofree float *lc = generate(c, 8, ids_c);
    g_assert_true(memcmp(la, lc, 129280 * sizeof(float)) != 0);

    vl2_model *model;
    vl2_error err;
    g_assert_cmpint(vl2_model_load(a, NULL, &model, &err), ==, VL2_OK);
    vl2_model_info mi;
    vl2_model_get_info(model, &mi);
    g_assert_cmpint(mi.n_params, ==, info.n_params);
    g_assert_cmpint(mi.n_bytes, ==, info.n_bytes);
    vl2_model_free(model);

    mini_clear(&m);
    test_rmtree(tmp);
}

/* Small shards: split between tensors, each within the limit unless one tensor is larger, and
 * the model computes exactly what the one-shard checkpoint does. */
static void test_sharded(void)
{
    mini m;
    mini_init(&m);
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *one = g_build_filename(tmp, "one", NULL);
    g_autofree char *many = g_build_filename(tmp, "many", NULL);
    vl2_random_params p = mini_params(&m, 7, 0);
    write_mini(&m, one, &p);
    p.max_shard_bytes = 128 << 10; /* the embedding and lm_head (8.3 MB each) get one each */
    vl2_random_info info = write_mini(&m, many, &p);
    g_test_message("%d shards", info.n_shards);
    g_assert_cmpint(info.n_shards, >=, 5);
    check_index(many, &info);
    for (int i = 1; i <= info.n_shards; i++) {
        g_autofree char *name = g_strdup_printf("model-%05d-of-%05d.safetensors", i,
                                                info.n_shards);
        g_autofree char *path = g_build_filename(many, name, NULL);
        vl2_st_file *f;
        vl2_error err;
        g_assert_cmpint(vl2_st_open(path, &f, &err), ==, VL2_OK);
        if (g_hash_table_size(f->tensors) > 1)
            g_assert_cmpuint(f->map_size, <=, 128 << 10);
        vl2_st_close(f);
    }
    int32_t ids1[4], ids2[4];
    g_autofree float *l1 = generate(one, 4, ids1);
    g_autofree float *l2 = generate(many, 4, ids2);
    g_assert_true(memcmp(l1, l2, 129280 * sizeof(float)) == 0);
    g_assert_true(memcmp(ids1, ids2, sizeof ids1) == 0);
    mini_clear(&m);
    test_rmtree(tmp);
}

/* An occupied dest is refused; overwrite replaces the checkpoint and drops stale shards. */
static void test_overwrite(void)
{
    mini m;
    mini_init(&m);
    g_autofree char *tmp = test_make_tmpdir();
    vl2_random_params p = mini_params(&m, 1, 0);
    p.max_shard_bytes = 4 << 20;
    vl2_random_info info = write_mini(&m, tmp, &p);
    g_assert_cmpint(info.n_shards, >, 1);
    g_autofree char *keep = g_build_filename(tmp, "notes.txt", NULL);
    test_write_file(keep, "mine", -1);

    p.max_shard_bytes = 0;
    vl2_error err;
    g_assert_cmpint(vl2_write_random_checkpoint(m.config, tmp, &p, NULL, &err), ==,
                    VL2_ERR_INVALID_ARGUMENT);
    g_assert_nonnull(strstr(err.message, "already holds a checkpoint"));

    p.overwrite = true;
    info = write_mini(&m, tmp, &p);
    g_assert_cmpint(info.n_shards, ==, 1);
    assert_dir_holds(tmp, "config.json model-00001-of-00001.safetensors "
                          "model.safetensors.index.json notes.txt tokenizer.json "
                          "tokenizer_config.json");
    check_index(tmp, &info);
    int32_t ids[2];
    g_free(generate(tmp, 2, ids));
    mini_clear(&m);
    test_rmtree(tmp);
}

static bool cancel_at_once(float fraction, void *user_data)
{
    (*(int *)user_data)++;
    return false;
}

static void test_cancel(void)
{
    mini m;
    mini_init(&m);
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *fresh = g_build_filename(tmp, "fresh", NULL);
    int calls = 0;
    vl2_random_params p = mini_params(&m, 0, 2);
    p.progress = cancel_at_once;
    p.progress_user_data = &calls;
    vl2_error err;
    /* a folder made by the call goes again; one that existed stays, empty */
    g_assert_cmpint(vl2_write_random_checkpoint(m.config, fresh, &p, NULL, &err), ==,
                    VL2_ERR_CANCELLED);
    g_assert_cmpint(calls, ==, 1);
    g_assert_false(g_file_test(fresh, G_FILE_TEST_EXISTS));
    g_assert_cmpint(vl2_write_random_checkpoint(m.config, tmp, &p, NULL, &err), ==,
                    VL2_ERR_CANCELLED);
    assert_dir_holds(tmp, "");
    mini_clear(&m);
    test_rmtree(tmp);
}

/* A write that fails midway (a file size limit stands in for a full disk): an i/o error that
 * names the file, and nothing left behind. */
static void test_write_fails(void)
{
    mini m;
    mini_init(&m);
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *dest = g_build_filename(tmp, "d", NULL);
    struct rlimit old, lim;
    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &old), ==, 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 8 << 20; /* the tokenizer (6.3 MB) fits, the 17 MB shard does not */
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &lim), ==, 0);
    vl2_random_params p = mini_params(&m, 0, 2);
    vl2_error err;
    vl2_status st = vl2_write_random_checkpoint(m.config, dest, &p, NULL, &err);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &old), ==, 0);
    signal(SIGXFSZ, old_handler);
    g_test_message("%s", err.message);
    g_assert_cmpint(st, ==, VL2_ERR_IO);
    g_assert_nonnull(strstr(err.message, "model-00001-of-00001.safetensors: cannot write"));
    g_assert_false(g_file_test(dest, G_FILE_TEST_EXISTS));
    assert_dir_holds(tmp, "");
    mini_clear(&m);
    test_rmtree(tmp);
}

static void test_bad_arguments(void)
{
    mini m;
    mini_init(&m);
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *dest = g_build_filename(tmp, "d", NULL);
    vl2_error err;
    vl2_random_params p = vl2_random_default_params();
    g_assert_cmpint(vl2_write_random_checkpoint(NULL, dest, &p, NULL, &err), ==,
                    VL2_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(vl2_write_random_checkpoint(m.config, NULL, &p, NULL, &err), ==,
                    VL2_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(vl2_write_random_checkpoint("{", dest, NULL, NULL, &err), ==,
                    VL2_ERR_FORMAT);
    g_assert_nonnull(strstr(err.message, "config.json: not valid JSON"));
    p.config_name = "my.json";
    g_assert_cmpint(vl2_write_random_checkpoint("{\"model_type\": \"llama\"}", dest, &p, NULL,
                                                &err), ==, VL2_ERR_UNSUPPORTED);
    g_assert_nonnull(strstr(err.message, "my.json"));
    static const char *bad_names[] = { "../escape", "a/b", "", "..", "config.json",
                                       "model.safetensors.index.json", "x.safetensors" };
    for (size_t i = 0; i < G_N_ELEMENTS(bad_names); i++) {
        vl2_extra_file f = { bad_names[i], "x", 1 };
        p.extra_files = &f;
        p.n_extra_files = 1;
        g_assert_cmpint(vl2_write_random_checkpoint(m.config, dest, &p, NULL, &err), ==,
                        VL2_ERR_INVALID_ARGUMENT);
    }
    vl2_extra_file twice[2] = { { "a.json", "1", 1 }, { "a.json", "2", 1 } };
    p.extra_files = twice;
    p.n_extra_files = 2;
    g_assert_cmpint(vl2_write_random_checkpoint(m.config, dest, &p, NULL, &err), ==,
                    VL2_ERR_INVALID_ARGUMENT);
    /* a dest that is a file */
    g_autofree char *file = g_build_filename(tmp, "file", NULL);
    test_write_file(file, "x", -1);
    g_assert_cmpint(vl2_write_random_checkpoint(m.config, file, NULL, NULL, &err), ==,
                    VL2_ERR_IO);
    g_assert_nonnull(strstr(err.message, "not a folder"));
    g_assert_false(g_file_test(dest, G_FILE_TEST_EXISTS));
    mini_clear(&m);
    test_rmtree(tmp);
}

/* ---------------------------------------------------------------------------------------------
 * The command line
 */

static void test_cli_write(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *dest = g_build_filename(tmp, "ckpt", NULL);
    g_autofree char *config = golden_model_file("mini-tiny", "config.json");
    test_run_result r = test_run_cli((const char *[]){ "mkrandom", "--preset", config, "--dest", dest,
                                             "--seed", "5", NULL });
    if (r.status != 0)
        g_error("vl2 mkrandom failed: %s", r.err);
    g_assert_cmpint(counted(r.out, "shards"), ==, 1);
    g_assert_true(strstr(r.out, "seconds: ") != NULL);
    g_assert_true(strstr(r.err, "writing 100%") != NULL);
    test_run_clear(&r);
    /* the compiled-in files: the real tokenizer, identical to the published ones */
    assert_dir_holds(dest, "config.json model-00001-of-00001.safetensors "
                           "model.safetensors.index.json processor_config.json "
                           "special_tokens_map.json tokenizer.json tokenizer_config.json");
    static const char *files[] = { "tokenizer.json", "tokenizer_config.json",
                                   "special_tokens_map.json", "processor_config.json" };
    for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autofree char *mine = g_build_filename(dest, files[i], NULL);
        g_autofree char *theirs = test_model_file(files[i]);
        g_assert_true(same_file(mine, theirs));
    }
    g_autofree char *cfg = g_build_filename(dest, "config.json", NULL);
    g_assert_true(same_file(cfg, config));

    r = test_run_cli((const char *[]){ "run", "--model", dest, "--prompt", "hi", "--max-new-tokens",
                                  "4", "--temperature", "0", NULL });
    if (r.status != 0)
        g_error("vl2 run failed: %s", r.err);
    g_assert_nonnull(strstr(r.err, "tokens/s"));
    test_run_clear(&r);

    /* the same folder again: refused, then replaced with --force */
    expect_failure((const char *[]){ "mkrandom", "--preset", config, "--dest", dest, NULL }, 1,
                   "--force");
    r = test_run_cli((const char *[]){ "mkrandom", "--preset", config, "--dest", dest, "--force",
                                  "--threads", "1", NULL });
    g_assert_cmpint(r.status, ==, 0);
    test_run_clear(&r);
    test_rmtree(tmp);
}

static void test_cli_errors(void)
{
    g_autofree char *tmp = test_make_tmpdir();
    g_autofree char *dest = g_build_filename(tmp, "d", NULL);
    g_autofree char *bad = g_build_filename(tmp, "bad.json", NULL);
    test_write_file(bad, "{\"model_type\": \"deepseek_vl_v2\", ", -1);
    g_autofree char *wrong = g_build_filename(tmp, "wrong.json", NULL);
    test_write_file(wrong, "{\"model_type\": \"deepseek_vl_v2\", \"language_config\": "
                           "{\"hidden_size\": -4}}", -1);
    g_autofree char *file = g_build_filename(tmp, "file", NULL);
    test_write_file(file, "x", -1);
    g_autofree char *under_file = g_build_filename(file, "sub", NULL);

    expect_failure((const char *[]){ "mkrandom", "--preset", "/nonexistent/config.json",
                                     "--dest", dest, NULL },
                   1, "/nonexistent/config.json: No such file");
    expect_failure((const char *[]){ "mkrandom", "--preset", bad, "--dest", dest, NULL }, 1,
                   "bad.json: not valid JSON");
    expect_failure((const char *[]){ "mkrandom", "--preset", wrong, "--dest", dest, NULL }, 1,
                   "language_config.hidden_size");
    expect_failure((const char *[]){ "mkrandom", "--preset", tmp, "--dest", dest, NULL }, 1,
                   "not a regular file");
    expect_failure((const char *[]){ "mkrandom", "--preset", "huge", "--dest", dest, NULL }, 1,
                   "unknown preset 'huge'");
    expect_failure((const char *[]){ "mkrandom", "--preset", "tiny", "--dest", under_file, NULL },
                   1, "cannot create the folder");
    expect_failure((const char *[]){ "mkrandom", "--preset", "tiny", "--dest",
                                     "/proc/vl2-mkrandom-test", NULL },
                   1, "/proc/vl2-mkrandom-test");
    expect_failure((const char *[]){ "mkrandom", "--preset", "tiny", NULL }, 2, "--dest");
    expect_failure((const char *[]){ "mkrandom", "--dest", dest, NULL }, 2, "--preset");
    expect_failure((const char *[]){ "mkrandom", "--preset", "tiny", "--dry-run", "--seed", "-1",
                                     NULL },
                   2, "--seed");
    /* nothing was written anywhere */
    assert_dir_holds(tmp, "bad.json file wrong.json");
    test_rmtree(tmp);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/mkrandom/dry-run/tiny", test_dry_run_tiny);
    g_test_add_func("/engine/mkrandom/dry-run/small", test_dry_run_small);
    g_test_add_func("/engine/mkrandom/dry-run/base", test_dry_run_base);
    g_test_add_func("/engine/mkrandom/write", test_write);
    g_test_add_func("/engine/mkrandom/sharded", test_sharded);
    g_test_add_func("/engine/mkrandom/overwrite", test_overwrite);
    g_test_add_func("/engine/mkrandom/cancel", test_cancel);
    g_test_add_func("/engine/mkrandom/write-fails", test_write_fails);
    g_test_add_func("/engine/mkrandom/bad-arguments", test_bad_arguments);
    g_test_add_func("/engine/mkrandom/cli/write", test_cli_write);
    g_test_add_func("/engine/mkrandom/cli/errors", test_cli_errors);
    return g_test_run();
}
