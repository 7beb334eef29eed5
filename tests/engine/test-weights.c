/* test-weights.c - loading checkpoints: single file, shards, and every kind of broken input.
 *
 * Each hostile case starts from a copy of the mini-tiny fixture with one thing broken and
 * checks that vl2_model_load() returns the right status with a one-line message naming the
 * file and the problem.
 */
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test-util.h"
#include "vl2-private.h"

/* ---------------------------------------------------------------------------------------------
 * Writing safetensors files
 */

typedef struct {
    char *name;
    char dtype[16];
    int ndim;
    int64_t shape[VL2_MAX_DIMS];
    const void *data;
    size_t n_bytes;
} entry;

/* Entries of a file, sorted by name so output is deterministic. */
static GArray *entries_of(const vl2_st_file *f)
{
    GArray *a = g_array_new(FALSE, TRUE, sizeof(entry));
    g_autoptr(GList) keys = g_hash_table_get_keys(f->tensors);
    keys = g_list_sort(keys, (GCompareFunc)strcmp);
    for (GList *l = keys; l; l = l->next) {
        const vl2_tensor *t = vl2_st_get(f, l->data);
        entry e = { .name = l->data, .ndim = t->ndim, .data = t->data, .n_bytes = t->n_bytes };
        g_strlcpy(e.dtype, vl2_dtype_name(t->dtype), sizeof e.dtype);
        memcpy(e.shape, t->shape, sizeof e.shape);
        g_array_append_val(a, e);
    }
    return a;
}

/* Writes entries; extra_bytes_lie adds to the last tensor's end offset (a corrupt header). */
static void write_safetensors(const char *path, GArray *entries, int64_t extra_bytes_lie)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    int64_t off = 0;
    for (guint i = 0; i < entries->len; i++) {
        entry *e = &g_array_index(entries, entry, i);
        json_builder_set_member_name(b, e->name);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "dtype");
        json_builder_add_string_value(b, e->dtype);
        json_builder_set_member_name(b, "shape");
        json_builder_begin_array(b);
        for (int d = 0; d < e->ndim; d++)
            json_builder_add_int_value(b, e->shape[d]);
        json_builder_end_array(b);
        json_builder_set_member_name(b, "data_offsets");
        json_builder_begin_array(b);
        json_builder_add_int_value(b, off);
        off += (int64_t)e->n_bytes;
        json_builder_add_int_value(b, off + (i + 1 == entries->len ? extra_bytes_lie : 0));
        json_builder_end_array(b);
        json_builder_end_object(b);
    }
    json_builder_end_object(b);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    JsonNode *root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    gsize hlen;
    g_autofree char *header = json_generator_to_data(gen, &hlen);
    json_node_unref(root);
    GString *s = g_string_new(NULL);
    size_t padded = (hlen + 7) / 8 * 8;
    for (int i = 0; i < 8; i++)
        g_string_append_c(s, (char)((padded >> (8 * i)) & 0xff));
    g_string_append_len(s, header, (gssize)hlen);
    while (s->len < 8 + padded)
        g_string_append_c(s, ' ');
    for (guint i = 0; i < entries->len; i++) {
        entry *e = &g_array_index(entries, entry, i);
        g_string_append_len(s, e->data, (gssize)e->n_bytes);
    }
    test_write_file(path, s->str, (gssize)s->len);
    g_string_free(s, TRUE);
}

/* ---------------------------------------------------------------------------------------------
 * A scratch copy of mini-tiny
 */

typedef struct {
    char *dir;
    vl2_st_file *src;            /* the fixture's weights */
} scratch_model;

static void copy_file(const char *from_dir, const char *to_dir, const char *name)
{
    g_autofree char *a = g_build_filename(from_dir, name, NULL);
    g_autofree char *b = g_build_filename(to_dir, name, NULL);
    g_autofree char *data = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(a, &data, &len, NULL));
    test_write_file(b, data, (gssize)len);
}

static void scratch_init(scratch_model *s, bool with_weights)
{
    g_autofree char *fixture = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    s->dir = test_make_tmpdir();
    copy_file(fixture, s->dir, "config.json");
    copy_file(fixture, s->dir, "tokenizer.json");
    copy_file(fixture, s->dir, "tokenizer_config.json");
    g_autofree char *w = g_build_filename(fixture, "model.safetensors", NULL);
    vl2_error err;
    if (vl2_st_open(w, &s->src, &err) != VL2_OK)
        g_error("%s", err.message);
    if (with_weights)
        copy_file(fixture, s->dir, "model.safetensors");
}

static void scratch_clear(scratch_model *s)
{
    vl2_st_close(s->src);
    test_rmtree(s->dir);
    g_free(s->dir);
}

static char *scratch_path(scratch_model *s, const char *name)
{
    return g_build_filename(s->dir, name, NULL);
}

/* Loads the scratch model and checks the outcome. */
static void expect_load(scratch_model *s, vl2_status want, const char *needle1, const char *needle2)
{
    vl2_model *m = NULL;
    vl2_error err = { 0 };
    vl2_status got = vl2_model_load(s->dir, NULL, &m, &err);
    if (got != want || (want != VL2_OK && (!strstr(err.message, needle1) ||
                                           (needle2 && !strstr(err.message, needle2)))))
        g_error("load gave %d \"%s\"; want %d with \"%s\" and \"%s\"", got,
                got ? err.message : "", want, needle1, needle2 ? needle2 : "");
    if (want != VL2_OK) {
        g_assert_null(m);
        g_assert_null(strchr(err.message, '\n'));
        g_test_message("%s", err.message);
    }
    vl2_model_free(m);
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 */

static void test_single_file_loads(void)
{
    scratch_model s;
    scratch_init(&s, true);
    vl2_model *m;
    vl2_error err;
    g_assert_cmpint(vl2_model_load(s.dir, NULL, &m, &err), ==, VL2_OK);
    vl2_model_info info;
    vl2_model_get_info(m, &info);
    g_assert_cmpstr(info.variant, ==, "tiny");
    g_assert_cmpint(info.bos_id, ==, 0);
    g_assert_cmpint(info.eos_id, ==, 1);
    g_assert_cmpint(info.pad_id, ==, 2);
    g_assert_cmpint(info.image_id, ==, 128815);
    g_assert_cmpint(info.n_vocab, ==, 129280);
    g_assert_cmpint(info.n_params * 2, ==, info.n_bytes);
    vl2_model_free(m);
    scratch_clear(&s);
}

static void expect_same_logits(const char *dir_a, const char *dir_b, double tol)
{
    g_autofree float *a = test_dir_logits(dir_a, NULL);
    g_autofree float *b = test_dir_logits(dir_b, NULL);
    double worst = 0;
    for (int i = 0; i < 129280; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    g_test_message("max abs logit difference %.2g", worst);
    g_assert_cmpfloat(worst, <=, tol);
}

/* Writes the fixture's weights as model-0000k-of-00003.safetensors, tensors dealt out in turn
 * by name, and the model.safetensors.index.json that lists them. */
static void write_sharded(scratch_model *s)
{
    GArray *all = entries_of(s->src);
    GArray *shards[3];
    for (int k = 0; k < 3; k++)
        shards[k] = g_array_new(FALSE, TRUE, sizeof(entry));
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "metadata");
    json_builder_begin_object(b);
    json_builder_end_object(b);
    json_builder_set_member_name(b, "weight_map");
    json_builder_begin_object(b);
    for (guint i = 0; i < all->len; i++) {
        entry *e = &g_array_index(all, entry, i);
        g_array_append_val(shards[i % 3], *e);
        json_builder_set_member_name(b, e->name);
        g_autofree char *f = g_strdup_printf("model-%05u-of-00003.safetensors", i % 3 + 1);
        json_builder_add_string_value(b, f);
    }
    json_builder_end_object(b);
    json_builder_end_object(b);
    for (int k = 0; k < 3; k++) {
        g_autofree char *name = g_strdup_printf("model-%05d-of-00003.safetensors", k + 1);
        g_autofree char *p = scratch_path(s, name);
        write_safetensors(p, shards[k], 0);
        g_array_unref(shards[k]);
    }
    g_autoptr(JsonGenerator) gen = json_generator_new();
    JsonNode *root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    g_autofree char *index = json_generator_to_data(gen, NULL);
    json_node_unref(root);
    g_autofree char *ipath = scratch_path(s, "model.safetensors.index.json");
    test_write_file(ipath, index, -1);
    g_array_unref(all);
}

/* The same weights split into three shards with an index load and compute the same. */
static void test_sharded(void)
{
    scratch_model s;
    scratch_init(&s, false);
    write_sharded(&s);
    g_autofree char *ipath = scratch_path(&s, "model.safetensors.index.json");

    g_autofree char *fixture = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    expect_same_logits(s.dir, fixture, 0);

    /* an index naming a shard that is not there */
    g_autofree char *shard2 = scratch_path(&s, "model-00002-of-00003.safetensors");
    g_autofree char *moved = scratch_path(&s, "moved.safetensors");
    g_assert_cmpint(g_rename(shard2, moved), ==, 0);
    expect_load(&s, VL2_ERR_IO, "model-00002-of-00003.safetensors", "cannot open");
    g_assert_cmpint(g_rename(moved, shard2), ==, 0);

    /* an index that reaches outside the folder */
    g_autofree char *evil = g_strdup("{\"weight_map\": {\"image_newline\": \"../../etc/passwd\"}}");
    test_write_file(ipath, evil, -1);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors.index.json", "not a plain file name");

    /* an index that puts a tensor in a shard that does not hold it */
    g_autofree char *wrong = g_strdup("{\"weight_map\": {\"image_newline\": "
                                      "\"model-00002-of-00003.safetensors\"}}");
    test_write_file(ipath, wrong, -1);
    expect_load(&s, VL2_ERR_FORMAT, "model-00002-of-00003.safetensors", "no such tensor");

    /* malformed index */
    test_write_file(ipath, "{\"weight_map\": [", -1);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors.index.json", NULL);
    scratch_clear(&s);
}

/* Widens every bf16 tensor to F32 or narrows it to F16 (alternating by name), as a checkpoint
 * saved in another dtype would be: it loads and computes the same within rounding. */
static void test_other_dtypes(void)
{
    scratch_model s;
    scratch_init(&s, false);
    GArray *all = entries_of(s.src);
    GPtrArray *buffers = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < all->len; i++) {
        entry *e = &g_array_index(all, entry, i);
        size_t n = e->n_bytes / 2;
        const uint16_t *src = e->data;
        if (i % 2 == 0) {
            float *f = g_new(float, n);
            for (size_t k = 0; k < n; k++) {
                uint32_t u = (uint32_t)src[k] << 16;
                memcpy(&f[k], &u, 4);
            }
            e->data = f;
            e->n_bytes = n * 4;
            g_strlcpy(e->dtype, "F32", sizeof e->dtype);
            g_ptr_array_add(buffers, f);
        } else {
            /* bf16 -> f16: exact for these magnitudes up to the 3 extra mantissa bits' rounding */
            uint16_t *h = g_new(uint16_t, n);
            for (size_t k = 0; k < n; k++) {
                uint32_t u = (uint32_t)src[k] << 16;
                float f;
                memcpy(&f, &u, 4);
                _Float16 x = (_Float16)f;
                memcpy(&h[k], &x, 2);
            }
            e->data = h;
            g_strlcpy(e->dtype, "F16", sizeof e->dtype);
            g_ptr_array_add(buffers, h);
        }
    }
    g_autofree char *p = scratch_path(&s, "model.safetensors");
    write_safetensors(p, all, 0);
    g_autofree char *fixture = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    expect_same_logits(s.dir, fixture, 1e-4);
    g_ptr_array_unref(buffers);
    g_array_unref(all);
    scratch_clear(&s);
}

static void test_no_weights(void)
{
    scratch_model s;
    scratch_init(&s, false);
    expect_load(&s, VL2_ERR_IO, s.dir, "no model.safetensors");
    scratch_clear(&s);
}

/* Loads the scratch model, expecting failure with `want` and a one-line message holding every
 * string of the NULL-terminated `needles`. */
static void expect_load_all(scratch_model *s, vl2_status want, const char *const *needles)
{
    vl2_model *m = NULL;
    vl2_error err = { 0 };
    vl2_status got = vl2_model_load(s->dir, NULL, &m, &err);
    if (got != want)
        g_error("load gave %d \"%s\"; want %d", got, got ? err.message : "", want);
    for (const char *const *n = needles; *n; n++)
        if (!strstr(err.message, *n))
            g_error("\"%s\" lacks \"%s\"", err.message, *n);
    g_assert_null(m);
    g_assert_null(strchr(err.message, '\n'));
    g_test_message("%s", err.message);
}

/* What a clone without git-lfs holds instead of a large file. */
static void write_lfs_pointer(const char *path, uint64_t size)
{
    g_autofree char *text = g_strdup_printf(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a2148a1a3b8c1f0f1f9c2a6fd1a5e8d2a1e5c9b7a3f6e0d4c8b2a1f9e7d3c\n"
        "size %" G_GUINT64_FORMAT "\n", size);
    test_write_file(path, text, -1);
}

/* A folder cloned without git-lfs: the message says so, with the size the pointer promises and
 * the command that fetches the weights, instead of a nonsense header length. */
static void test_lfs_pointer(void)
{
    scratch_model s;
    scratch_init(&s, false);
    g_autofree char *p = scratch_path(&s, "model.safetensors");
    write_lfs_pointer(p, 6746589584ull);
    g_autofree char *pointer = NULL;
    gsize pointer_len;
    g_assert_true(g_file_get_contents(p, &pointer, &pointer_len, NULL));
    g_autofree char *have = g_strdup_printf("(%zu bytes)", pointer_len);
    g_autofree char *want = g_format_size(6746589584ull);
    g_autofree char *in_dir = g_strdup_printf("\"git lfs pull\" in %s", s.dir);
    expect_load_all(&s, VL2_ERR_FORMAT,
                    (const char *[]){ "model.safetensors is a Git LFS pointer", have, want,
                                      "without git-lfs", in_dir, NULL });

    /* a pointer without its size line still says what it is */
    test_write_file(p, "version https://git-lfs.github.com/spec/v1\noid sha256:00\n", -1);
    expect_load_all(&s, VL2_ERR_FORMAT,
                    (const char *[]){ "model.safetensors is a Git LFS pointer", "git lfs pull",
                                      NULL });

    /* other short text files are not taken for pointers */
    test_write_file(p, "version 1\nthis is not a safetensors file at all\n", -1);
    expect_load_all(&s, VL2_ERR_FORMAT,
                    (const char *[]){ "model.safetensors", "not a safetensors file", NULL });
    scratch_clear(&s);
}

/* The same in a sharded checkpoint: the message names the shard that is a pointer. */
static void test_lfs_pointer_shard(void)
{
    scratch_model s;
    scratch_init(&s, false);
    write_sharded(&s);
    g_autofree char *p = scratch_path(&s, "model-00002-of-00003.safetensors");
    write_lfs_pointer(p, 4998012345ull);
    g_autofree char *want = g_format_size(4998012345ull);
    expect_load_all(&s, VL2_ERR_FORMAT,
                    (const char *[]){ "model-00002-of-00003.safetensors is a Git LFS pointer",
                                      want, "git lfs pull", NULL });

    /* the index itself as a pointer */
    g_autofree char *index = scratch_path(&s, "model.safetensors.index.json");
    write_lfs_pointer(index, 93467ull);
    expect_load_all(&s, VL2_ERR_FORMAT,
                    (const char *[]){ "model.safetensors.index.json is a Git LFS pointer",
                                      "git lfs pull", NULL });
    scratch_clear(&s);
}

/* An interrupted download: the file is shorter than its header says. The message calls it
 * incomplete, with the size the file has, the size its header implies, and the fix. */
static void test_truncated(void)
{
    scratch_model s;
    scratch_init(&s, true);
    g_autofree char *p = scratch_path(&s, "model.safetensors");
    size_t full = s.src->map_size;
    g_assert_cmpint(truncate(p, (off_t)full - 1000), ==, 0);
    g_autofree char *have = g_strdup_printf("%zu bytes", full - 1000);
    g_autofree char *want = g_strdup_printf("%zu bytes", full);
    expect_load_all(&s, VL2_ERR_FORMAT,
                    (const char *[]){ "model.safetensors is incomplete", have, want,
                                      "download", NULL });
    /* cut inside the header itself */
    g_assert_cmpint(truncate(p, 100), ==, 0);
    expect_load_all(&s, VL2_ERR_FORMAT,
                    (const char *[]){ "model.safetensors is incomplete", "100 bytes", "header",
                                      "download", NULL });
    g_assert_cmpint(truncate(p, 5), ==, 0);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors", "too short");
    g_assert_cmpint(truncate(p, 0), ==, 0);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors", "too short");
    scratch_clear(&s);
}

/* A shard cut short in a sharded checkpoint is named, with both sizes. */
static void test_truncated_shard(void)
{
    scratch_model s;
    scratch_init(&s, false);
    write_sharded(&s);
    g_autofree char *p = scratch_path(&s, "model-00003-of-00003.safetensors");
    GStatBuf st;
    g_assert_cmpint(g_stat(p, &st), ==, 0);
    size_t full = (size_t)st.st_size, cut = full / 2;
    g_assert_cmpint(truncate(p, (off_t)cut), ==, 0);
    g_autofree char *have = g_strdup_printf("%zu bytes", cut);
    g_autofree char *want = g_strdup_printf("%zu bytes", full);
    expect_load_all(&s, VL2_ERR_FORMAT,
                    (const char *[]){ "model-00003-of-00003.safetensors is incomplete", have,
                                      want, "download", NULL });
    scratch_clear(&s);
}

/* A header whose last tensor claims more bytes than its shape needs is a corrupt header, not an
 * interrupted download: that tensor is named. */
static void test_offsets_past_end(void)
{
    scratch_model s;
    scratch_init(&s, false);
    GArray *all = entries_of(s.src);
    g_autofree char *p = scratch_path(&s, "model.safetensors");
    write_safetensors(p, all, 4096);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors", "shape and dtype need");
    g_array_unref(all);
    scratch_clear(&s);
}

static void test_bad_header_json(void)
{
    scratch_model s;
    scratch_init(&s, false);
    g_autofree char *p = scratch_path(&s, "model.safetensors");
    const char bad[] = "\x10\0\0\0\0\0\0\0{\"a\": {\"dtype\": ";
    test_write_file(p, bad, sizeof bad - 1);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors", "not valid JSON");
    const char notobj[] = "\x08\0\0\0\0\0\0\0[1,2,3]     ";
    test_write_file(p, notobj, sizeof notobj - 1);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors", "not a JSON object");
    /* one name twice: which of the two is meant cannot be told */
    const char twice[] = "\x7a\0\0\0\0\0\0\0{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                         "\"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                         "\"data_offsets\": [4, 8]}}\0\0\0\0\0\0\0\0";
    test_write_file(p, twice, sizeof twice - 1);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors", "lists tensor \"a\" twice");
    /* a string json-glib would read into bytes that are not UTF-8 */
    const char lone[] = "\x2b\0\0\0\0\0\0\0{\"a\\udc00 \": {\"dtype\": \"F32\", \"shape\": []}}";
    test_write_file(p, lone, sizeof lone - 1);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors", "not valid JSON");
    scratch_clear(&s);
}

/* Rewrites the weights with one entry changed by `edit`. */
static void rewrite(scratch_model *s, const char *name, void (*edit)(GArray *, guint))
{
    GArray *all = entries_of(s->src);
    for (guint i = 0; i < all->len; i++)
        if (!strcmp(g_array_index(all, entry, i).name, name)) {
            edit(all, i);
            break;
        }
    g_autofree char *p = scratch_path(s, "model.safetensors");
    write_safetensors(p, all, 0);
    g_array_unref(all);
}

static void edit_unknown_dtype(GArray *a, guint i)
{
    g_strlcpy(g_array_index(a, entry, i).dtype, "Q9_K", 16);
}

static void edit_int_dtype(GArray *a, guint i)
{
    /* same byte size, integer dtype */
    g_strlcpy(g_array_index(a, entry, i).dtype, "I16", 16);
}

static void edit_drop(GArray *a, guint i)
{
    g_array_remove_index(a, i);
}

static void edit_transpose(GArray *a, guint i)
{
    entry *e = &g_array_index(a, entry, i);
    int64_t t = e->shape[0];
    e->shape[0] = e->shape[1];
    e->shape[1] = t;
}

static void edit_size_mismatch(GArray *a, guint i)
{
    /* header claims one more row than the bytes hold */
    g_array_index(a, entry, i).shape[0] += 1;
}

static void test_unknown_dtype(void)
{
    scratch_model s;
    scratch_init(&s, false);
    rewrite(&s, "language.model.norm.weight", edit_unknown_dtype);
    expect_load(&s, VL2_ERR_UNSUPPORTED, "model.safetensors", "unknown dtype \"Q9_K\"");
    rewrite(&s, "language.model.norm.weight", edit_int_dtype);
    expect_load(&s, VL2_ERR_UNSUPPORTED, "language.model.norm.weight", "dtype I16");
    scratch_clear(&s);
}

static void test_missing_tensor(void)
{
    scratch_model s;
    scratch_init(&s, false);
    rewrite(&s, "language.model.layers.1.mlp.experts.5.up_proj.weight", edit_drop);
    expect_load(&s, VL2_ERR_FORMAT, "language.model.layers.1.mlp.experts.5.up_proj.weight",
                "is missing");
    scratch_clear(&s);
}

static void test_shape_disagrees(void)
{
    scratch_model s;
    scratch_init(&s, false);
    rewrite(&s, "language.model.layers.0.mlp.gate_proj.weight", edit_transpose);
    expect_load(&s, VL2_ERR_FORMAT, "has shape [32, 80] but config.json implies [80, 32]",
                "language.model.layers.0.mlp.gate_proj.weight");
    rewrite(&s, "language.model.layers.0.mlp.gate_proj.weight", edit_size_mismatch);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors", "shape and dtype need");

    /* the config disagrees with correct weights */
    scratch_clear(&s);
    scratch_init(&s, true);
    g_autofree char *cfg = scratch_path(&s, "config.json");
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(cfg, &text, NULL, NULL));
    g_autoptr(GRegex) re = g_regex_new("\"intermediate_size\": 80", 0, 0, NULL);
    g_autofree char *edited = g_regex_replace_literal(re, text, -1, 0,
                                                      "\"intermediate_size\": 81", 0, NULL);
    g_assert_cmpstr(edited, !=, text);
    test_write_file(cfg, edited, -1);
    expect_load(&s, VL2_ERR_FORMAT, "language.model.layers.0.mlp.gate_proj.weight",
                "implies [81, 32]");
    scratch_clear(&s);
}

static void test_config_and_tokenizer_files(void)
{
    scratch_model s;
    scratch_init(&s, true);
    g_autofree char *cfg = scratch_path(&s, "config.json");
    g_autofree char *tok = scratch_path(&s, "tokenizer.json");

    g_unlink(cfg);
    expect_load(&s, VL2_ERR_IO, "config.json", "cannot read");
    test_write_file(cfg, "{\"model_type\": \"deepseek_vl_v2\", \"language_config\": {", -1);
    expect_load(&s, VL2_ERR_FORMAT, "config.json", "not valid JSON");
    g_autofree char *fixture = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    copy_file(fixture, s.dir, "config.json");

    g_unlink(tok);
    expect_load(&s, VL2_ERR_IO, "tokenizer.json", NULL);
    test_write_file(tok, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": ", -1);
    expect_load(&s, VL2_ERR_FORMAT, "tokenizer.json", NULL);
    scratch_clear(&s);
}

/* tokenizer_config.json's special tokens of the wrong JSON type ("bos_token": {"content": {}})
 * reached json-glib's string getter: a GLib CRITICAL (fatal in the tests). They are ignored,
 * and config.json's ids used, like a token the tokenizer does not know. */
static void test_special_tokens_wrong_types(void)
{
    scratch_model s;
    scratch_init(&s, true);
    g_autofree char *tc = scratch_path(&s, "tokenizer_config.json");
    test_write_file(tc, "{\"bos_token\": {\"content\": {}}, \"eos_token\": {\"content\": 5}, "
                        "\"pad_token\": [\"<pad>\"]}", -1);
    expect_load(&s, VL2_OK, NULL, NULL);
    scratch_clear(&s);
}

static void test_bad_arguments(void)
{
    vl2_model *m = (vl2_model *)0x1;
    vl2_error err;
    g_assert_cmpint(vl2_model_load(NULL, NULL, &m, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_assert_null(m);
    g_assert_cmpint(vl2_model_load("", NULL, &m, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(vl2_model_load("/nonexistent/model", NULL, &m, &err), ==, VL2_ERR_IO);
    g_assert_nonnull(strstr(err.message, "/nonexistent/model"));
    g_assert_cmpint(vl2_model_load("/tmp", NULL, NULL, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    vl2_model_free(NULL);
}

static bool cancel_at_half(float fraction, void *user_data)
{
    (*(int *)user_data)++;
    return fraction < 0.5f;
}

static void test_cancel_load(void)
{
    g_autofree char *dir = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    int calls = 0;
    vl2_model_params p = vl2_model_default_params();
    p.progress = cancel_at_half;
    p.progress_user_data = &calls;
    vl2_model *m;
    vl2_error err;
    g_assert_cmpint(vl2_model_load(dir, &p, &m, &err), ==, VL2_ERR_CANCELLED);
    g_assert_null(m);
    g_assert_cmpint(calls, >, 0);
}

typedef struct {
    float last;
    int calls;
    int binding_calls;           /* calls in the first tenth */
    float cancel_above;          /* > 1: never */
} load_log;

static bool log_load(float fraction, void *user_data)
{
    load_log *log = user_data;
    g_assert_cmpfloat(fraction, >=, log->last);
    g_assert_cmpfloat(fraction, <=, 1.0f);
    log->last = fraction;
    log->calls++;
    log->binding_calls += fraction <= 0.1f;
    return fraction <= log->cancel_above;
}

/* Copying the weights into memory is most of a resident (or quantized) load: its progress
 * goes on past binding to 1, and a cancel while copying frees what was made. */
static void test_cancel_load_copying(void)
{
    g_autofree char *dir = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    vl2_weights_format formats[] = { VL2_WEIGHTS_STORED, VL2_WEIGHTS_Q8 };
    vl2_model_params p = vl2_model_default_params();
    load_log log = { 0, 0, 0, 2.0f };
    vl2_model *m;
    vl2_error err;

    /* mapped: binding is the whole load */
    p.progress = log_load;
    p.progress_user_data = &log;
    g_assert_cmpint(vl2_model_load(dir, &p, &m, &err), ==, VL2_OK);
    g_assert_cmpfloat(log.last, ==, 1.0f);
    int bind_calls = log.calls;
    vl2_model_free(m);

    for (size_t i = 0; i < G_N_ELEMENTS(formats); i++) {
        log = (load_log){ 0, 0, 0, 2.0f };
        p.resident = formats[i] == VL2_WEIGHTS_STORED;
        p.weights = formats[i];
        g_assert_cmpint(vl2_model_load(dir, &p, &m, &err), ==, VL2_OK);
        g_assert_cmpfloat(log.last, ==, 1.0f);
        /* binding in the first tenth, then the copy reports matrix by matrix */
        g_assert_cmpint(log.binding_calls, ==, bind_calls);
        g_assert_cmpint(log.calls, >, bind_calls + 1);
        int calls = log.calls;
        vl2_model_free(m);

        /* stop at the first matrix copied */
        log = (load_log){ 0, 0, 0, 0.1f };
        g_assert_cmpint(vl2_model_load(dir, &p, &m, &err), ==, VL2_ERR_CANCELLED);
        g_assert_null(m);
        g_assert_cmpfloat(log.last, >, 0.1f);
        g_assert_cmpint(log.calls, <, calls);
        g_assert_nonnull(strstr(err.message, "cancelled"));
    }
}

/* Resident weights are a copy of the mapped ones: the same logits, bit for bit, in the same
 * format; the model still works after its file pages are given back. */
static void test_resident(void)
{
    const char *models[] = { "mini-tiny", "mini-base" };
    for (size_t i = 0; i < G_N_ELEMENTS(models); i++) {
        g_autofree char *dir = g_build_filename(test_fixture_dir(), models[i], NULL);
        vl2_model_params mp = vl2_model_default_params();
        mp.resident = true;
        vl2_model *m;
        vl2_error err;
        g_assert_cmpint(vl2_model_load(dir, &mp, &m, &err), ==, VL2_OK);
        vl2_model_info info;
        vl2_model_get_info(m, &info);
        g_assert_cmpstr(info.weights_format, ==, "bf16");
        g_autofree float *resident = test_prompt_logits(m, "Hello");
        vl2_model_free(m);
        g_autofree float *mapped = test_dir_logits(dir, NULL);
        g_assert_cmpmem(resident, info.n_vocab * sizeof(float), mapped,
                        info.n_vocab * sizeof(float));
    }
}

/* ---------------------------------------------------------------------------------------------
 * JSON nested too deep, named pipes
 */

/* `n` opening brackets after `prefix`. */
static char *deep_json(const char *prefix, size_t n)
{
    size_t p = strlen(prefix);
    char *s = g_malloc(p + n + 1);
    memcpy(s, prefix, p);
    memset(s + p, '[', n);
    s[p + n] = 0;
    return s;
}

/* Every JSON file of a checkpoint nested 100,000 deep: json-glib's recursive parser overflowed
 * the stack on each. Each is refused with a message naming it. */
static void test_deep_json(void)
{
    scratch_model s;
    scratch_init(&s, true);
    const size_t n = 100000;
    static const char *const names[] = { "config.json", "tokenizer.json",
                                         "tokenizer_config.json" };
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autofree char *path = scratch_path(&s, names[i]);
        g_autofree char *keep = NULL;
        gsize keep_len;
        g_assert_true(g_file_get_contents(path, &keep, &keep_len, NULL));
        g_autofree char *deep = deep_json("{\"a\": ", n);
        test_write_file(path, deep, -1);
        expect_load(&s, VL2_ERR_FORMAT, names[i], "nested more than");
        test_write_file(path, keep, (gssize)keep_len);
    }

    /* a safetensors header */
    g_autofree char *single = scratch_path(&s, "model.safetensors");
    g_autofree char *header = deep_json("{\"a\": ", n);
    size_t hlen = strlen(header);
    GByteArray *file = g_byte_array_new();
    for (int k = 0; k < 8; k++) {
        guint8 b = (guint8)(hlen >> (8 * k));
        g_byte_array_append(file, &b, 1);
    }
    g_byte_array_append(file, (const guint8 *)header, (guint)hlen);
    test_write_file(single, file->data, file->len);
    g_byte_array_unref(file);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors", "nested more than");
    g_unlink(single);

    /* the shards' index */
    write_sharded(&s);
    g_autofree char *index = scratch_path(&s, "model.safetensors.index.json");
    g_autofree char *deep_index = deep_json("{\"weight_map\": ", n);
    test_write_file(index, deep_index, -1);
    expect_load(&s, VL2_ERR_FORMAT, "model.safetensors.index.json", "nested more than");
    scratch_clear(&s);
}

/* A named pipe in place of any file of a checkpoint: open() waited for a writer forever. */
static void test_fifo(void)
{
    scratch_model s;
    scratch_init(&s, false);
    write_sharded(&s);
    alarm(60); /* a hang ends the test program */
    static const char *const names[] = { "config.json", "tokenizer.json",
                                         "tokenizer_config.json", "model.safetensors.index.json",
                                         "model-00002-of-00003.safetensors" };
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autofree char *path = scratch_path(&s, names[i]);
        g_autofree char *aside = g_strconcat(path, ".aside", NULL);
        g_assert_cmpint(g_rename(path, aside), ==, 0);
        g_assert_cmpint(mkfifo(path, 0600), ==, 0);
        expect_load(&s, VL2_ERR_IO, names[i], "not a regular file");
        g_unlink(path);
        g_assert_cmpint(g_rename(aside, path), ==, 0);
    }
    /* a single-file checkpoint's weights */
    g_autofree char *index = scratch_path(&s, "model.safetensors.index.json");
    g_unlink(index);
    g_autofree char *single = scratch_path(&s, "model.safetensors");
    g_assert_cmpint(mkfifo(single, 0600), ==, 0);
    expect_load(&s, VL2_ERR_IO, "model.safetensors", "not a regular file");
    alarm(0);
    scratch_clear(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/weights/single-file", test_single_file_loads);
    g_test_add_func("/engine/weights/sharded", test_sharded);
    g_test_add_func("/engine/weights/f32-and-f16", test_other_dtypes);
    g_test_add_func("/engine/weights/no-weights", test_no_weights);
    g_test_add_func("/engine/weights/truncated", test_truncated);
    g_test_add_func("/engine/weights/truncated-shard", test_truncated_shard);
    g_test_add_func("/engine/weights/lfs-pointer", test_lfs_pointer);
    g_test_add_func("/engine/weights/lfs-pointer-shard", test_lfs_pointer_shard);
    g_test_add_func("/engine/weights/offsets-past-end", test_offsets_past_end);
    g_test_add_func("/engine/weights/bad-header-json", test_bad_header_json);
    g_test_add_func("/engine/weights/unknown-dtype", test_unknown_dtype);
    g_test_add_func("/engine/weights/missing-tensor", test_missing_tensor);
    g_test_add_func("/engine/weights/shape-disagrees", test_shape_disagrees);
    g_test_add_func("/engine/weights/config-and-tokenizer-files", test_config_and_tokenizer_files);
    g_test_add_func("/engine/weights/bad-arguments", test_bad_arguments);
    g_test_add_func("/engine/weights/cancel", test_cancel_load);
    g_test_add_func("/engine/weights/cancel-while-copying", test_cancel_load_copying);
    g_test_add_func("/engine/weights/resident", test_resident);
    g_test_add_func("/engine/weights/deep-json", test_deep_json);
    g_test_add_func("/engine/weights/fifo", test_fifo);
    g_test_add_func("/engine/weights/special-tokens-wrong-types", test_special_tokens_wrong_types);
    return g_test_run();
}
