/* weights.c - safetensors files, memory-mapped, and the tensor table derived from the config.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
 * ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}), then the raw
 * tensor bytes, offsets relative to byte 8 + N. Checkpoints come as one model.safetensors or
 * as shards listed by model.safetensors.index.json ({"weight_map": {name: file}}).
 *
 * Every file is mapped read-only and shared, so weights cost page cache, not heap, and the
 * kernels read bf16 straight from the mapping. Nothing in a header is trusted: offsets,
 * sizes and shapes are checked against the file size and each other before a tensor exists.
 * The two ways a downloaded checkpoint is commonly broken get messages of their own that say
 * what to do: a Git LFS pointer in place of the file (a clone without git-lfs), and a file
 * shorter than its header says (an interrupted download). A file that changes while it is
 * mapped is guard.c's business: each file keeps its descriptor and a stamp of what it was.
 *
 * The table of expected tensors is built from the config alone (names, shapes) and binds each
 * entry to a field of the model. Load validates every entry; a test checks that the table
 * built from the published deepseek-vl2 config equals that checkpoint's index.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vl2-private.h"

/* The safetensors format caps its header at 100 MB. */
#define MAX_HEADER VL2_SAFETENSORS_HEADER_MAX_BYTES

static const struct {
    const char *name;
    vl2_dtype dtype;
    size_t size;
} dtypes[] = {
    { "F32", VL2_DTYPE_F32, 4 },   { "F16", VL2_DTYPE_F16, 2 },   { "BF16", VL2_DTYPE_BF16, 2 },
    { "F64", VL2_DTYPE_F64, 8 },   { "I64", VL2_DTYPE_I64, 8 },   { "I32", VL2_DTYPE_I32, 4 },
    { "I16", VL2_DTYPE_I16, 2 },   { "I8", VL2_DTYPE_I8, 1 },     { "U64", VL2_DTYPE_U64, 8 },
    { "U32", VL2_DTYPE_U32, 4 },   { "U16", VL2_DTYPE_U16, 2 },   { "U8", VL2_DTYPE_U8, 1 },
    { "BOOL", VL2_DTYPE_BOOL, 1 }, { "F8_E4M3", VL2_DTYPE_F8_E4M3, 1 },
    { "F8_E5M2", VL2_DTYPE_F8_E5M2, 1 },
    /* not safetensors dtypes: how bound tensors are held after quantization */
    { "q8", VL2_DTYPE_Q8_0, 1 },
    { "q4", VL2_DTYPE_Q4_0, 1 },
};

const char *vl2_dtype_name(vl2_dtype t)
{
    for (size_t i = 0; i < G_N_ELEMENTS(dtypes); i++)
        if (dtypes[i].dtype == t)
            return dtypes[i].name;
    return "?";
}

size_t vl2_dtype_size(vl2_dtype t)
{
    for (size_t i = 0; i < G_N_ELEMENTS(dtypes); i++)
        if (dtypes[i].dtype == t)
            return dtypes[i].size;
    return 0;
}

static bool dtype_from_name(const char *name, vl2_dtype *out)
{
    for (size_t i = 0; i < G_N_ELEMENTS(dtypes); i++)
        if (!strcmp(dtypes[i].name, name)) {
            *out = dtypes[i].dtype;
            return true;
        }
    return false;
}

static void format_shape(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

/* ---------------------------------------------------------------------------------------------
 * Files that are not (all) there: Git LFS pointers and interrupted downloads
 */

/* A clone made without git-lfs holds, in place of each large file, a pointer: a text file of
 * fewer than 1024 bytes, "version https://git-lfs.github.com/spec/v1\noid sha256:...\nsize N\n",
 * N being the size of the real file. */
#define LFS_POINTER_MAX 1024
#define LFS_VERSION "version https://git-lfs.github.com/spec/"

vl2_status vl2_check_lfs_pointer(const char *path, const void *data, size_t len, const char *what,
                                 vl2_error *err)
{
    if (len >= LFS_POINTER_MAX || len < strlen(LFS_VERSION) ||
        memcmp(data, LFS_VERSION, strlen(LFS_VERSION)) != 0)
        return VL2_OK;
    g_autofree char *text = g_strndup(data, len);
    const char *line = strstr(text, "\nsize ");
    char *end = NULL;
    guint64 real = line ? g_ascii_strtoull(line + 6, &end, 10) : 0;
    bool known = line && g_ascii_isdigit(line[6]) && (*end == '\n' || *end == '\r' || !*end);
    g_autofree char *have = g_format_size(len);
    g_autofree char *want = known ? g_format_size(real) : NULL;
    g_autofree char *dir = g_path_get_dirname(path);
    return vl2_set_error(err, VL2_ERR_FORMAT, "%s is a Git LFS pointer (%s), not %s%s%s%s: the "
                         "model was cloned without git-lfs; run \"git lfs pull\" in %s, or "
                         "download it again", path, have, what, known ? " (" : "",
                         known ? want : "", known ? ")" : "", dir);
}

/* "6.7 GB (6746589584 bytes)", or "135 bytes". */
static char *describe_size(uint64_t n)
{
    if (n < 1000)
        return g_strdup_printf("%" G_GUINT64_FORMAT " bytes", n);
    g_autofree char *human = g_format_size(n);
    return g_strdup_printf("%s (%" G_GUINT64_FORMAT " bytes)", human, n);
}

/* A safetensors file shorter than its header says: `want` is the size the header implies, or
 * with `header_cut` the size of the header alone, which the file does not even hold. */
static vl2_status incomplete_error(const char *path, size_t have, uint64_t want, bool header_cut,
                                   vl2_error *err)
{
    g_autofree char *h = describe_size(have);
    g_autofree char *w = describe_size(want);
    return vl2_set_error(err, VL2_ERR_FORMAT, "%s is incomplete: it has %s but its header %s %s; "
                         "the download was interrupted: download the file again, or resume the "
                         "download", path, h, header_cut ? "alone takes" : "describes", w);
}

/* ---------------------------------------------------------------------------------------------
 * One file
 */

static void tensor_free(gpointer p)
{
    vl2_tensor *t = p;
    g_free((char *)t->name);
    g_free(t);
}

/* Reads a non-negative integer JSON value that fits int64. */
static bool json_uint(JsonNode *n, int64_t *out)
{
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
        return false;
    *out = json_node_get_int(n);
    return *out >= 0;
}

/* Adds one tensor of the header. One that ends past the data the file holds is left out and
 * only raises *max_end: the caller reports the file as incomplete once every entry has been
 * checked, so that a corrupt entry is reported as such rather than as a short file. */
static vl2_status parse_entry(vl2_st_file *f, const char *name, JsonNode *node, const uint8_t *base,
                              size_t data_size, int64_t *max_end, vl2_error *err)
{
    const char *p = f->path;
    if (!JSON_NODE_HOLDS_OBJECT(node))
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: header entry \"%s\" is not an object", p,
                             name);
    JsonObject *o = json_node_get_object(node);
    JsonNode *dt = json_object_get_member(o, "dtype");
    JsonNode *sh = json_object_get_member(o, "shape");
    JsonNode *off = json_object_get_member(o, "data_offsets");
    if (!dt || !JSON_NODE_HOLDS_VALUE(dt) || json_node_get_value_type(dt) != G_TYPE_STRING)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: tensor \"%s\" has no dtype string", p,
                             name);
    vl2_tensor t = { 0 };
    if (!dtype_from_name(json_node_get_string(dt), &t.dtype))
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: tensor \"%s\" has unknown dtype \"%s\"",
                             p, name, json_node_get_string(dt));
    if (!sh || !JSON_NODE_HOLDS_ARRAY(sh))
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: tensor \"%s\" has no shape list", p, name);
    JsonArray *sa = json_node_get_array(sh);
    guint ndim = json_array_get_length(sa);
    if (ndim > VL2_MAX_DIMS)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: tensor \"%s\" has %u dimensions (at "
                             "most %d supported)", p, name, ndim, VL2_MAX_DIMS);
    t.ndim = (int)ndim;
    t.n_elements = 1;
    for (guint i = 0; i < ndim; i++) {
        if (!json_uint(json_array_get_element(sa, i), &t.shape[i]) || t.shape[i] > (1LL << 40))
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: tensor \"%s\" has an invalid shape", p,
                                 name);
        if (t.shape[i] && t.n_elements > (INT64_MAX / 16) / t.shape[i])
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: tensor \"%s\" is impossibly large", p,
                                 name);
        t.n_elements *= t.shape[i];
    }
    int64_t begin, end;
    if (!off || !JSON_NODE_HOLDS_ARRAY(off) ||
        json_array_get_length(json_node_get_array(off)) != 2 ||
        !json_uint(json_array_get_element(json_node_get_array(off), 0), &begin) ||
        !json_uint(json_array_get_element(json_node_get_array(off), 1), &end) || end < begin)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: tensor \"%s\" has invalid data_offsets", p,
                             name);
    size_t es = vl2_dtype_size(t.dtype);
    if ((uint64_t)(end - begin) != (uint64_t)t.n_elements * es)
        return vl2_set_error(err, VL2_ERR_FORMAT,
                             "%s: tensor \"%s\" spans %" G_GINT64_FORMAT " bytes but its shape and "
                             "dtype need %" G_GINT64_FORMAT, p, name, end - begin,
                             t.n_elements * (int64_t)es);
    if (end > *max_end)
        *max_end = end;
    if ((uint64_t)end > data_size)
        return VL2_OK;
    t.data = base + begin;
    t.n_bytes = (size_t)(end - begin);
    t.name = g_strdup(name);
    g_hash_table_insert(f->tensors, (char *)t.name, g_memdup2(&t, sizeof t));
    return VL2_OK;
}

vl2_status vl2_st_open(const char *path, vl2_st_file **out, vl2_error *err)
{
    *out = NULL;
    /* never waits on a named pipe put in the checkpoint's folder */
    g_autoptr(GError) open_error = NULL;
    goffset file_size;
    int fd = vl2_input_open(path, &file_size, &open_error);
    if (fd < 0)
        return vl2_set_error(err, vl2_input_status(open_error), "%s", open_error->message);
    size_t size = (size_t)file_size;
    vl2_file_stamp stamp;
    vl2_stamp_fd(fd, &stamp);
    if (size < 8) {
        close(fd);
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: %zu bytes, too short for a safetensors "
                             "header", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int map_errno = errno;
    if (map == MAP_FAILED) {
        close(fd);
        return vl2_set_error(err, VL2_ERR_IO, "%s: cannot map: %s", path, g_strerror(map_errno));
    }

    vl2_st_file *f = g_new0(vl2_st_file, 1);
    f->path = g_strdup(path);
    f->map = map;
    f->map_size = size;
    f->tensors = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, tensor_free);
    f->stamp = stamp;
    f->fd = fd; /* kept to see the file mapped change, whatever its path names later */
    /* guarded from the first read: the file may be cut short while its header is parsed */
    f->guard = vl2_guard_add(map, size);

    const uint8_t *bytes = map;
    JsonParser *parser = NULL;
    GError *gerr = NULL;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | bytes[i];
    vl2_status s = vl2_check_lfs_pointer(path, bytes, size, "the weights", err);
    if (s == VL2_OK)
        s = vl2_st_check(f, err); /* a header of zeros from a file cut short meanwhile */
    if (s != VL2_OK)
        goto fail;
    if (hlen <= MAX_HEADER && hlen > size - 8 && size > 8 && bytes[8] == '{') {
        /* a plausible header that the file holds only the start of */
        s = incomplete_error(path, size, 8 + hlen, true, err);
        goto fail;
    }
    if (hlen > MAX_HEADER || hlen > size - 8) {
        s = vl2_set_error(err, VL2_ERR_FORMAT, "%s: header length %" G_GUINT64_FORMAT " exceeds "
                          "the file (%zu bytes); not a safetensors file", path, hlen, size);
        goto fail;
    }
    /* Member by member: json-glib's tree of a whole header is about ten times its text, and a
     * model may list a hundred thousand tensors. */
    Vl2JsonWalk walk;
    if (!vl2_json_walk_begin(&walk, (const char *)bytes + 8, (gsize)hlen, '{', &gerr)) {
        s = vl2_set_error(err, VL2_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto fail;
    }
    parser = json_parser_new_immutable();
    int64_t max_end = 0;
    for (;;) {
        g_autofree char *name = NULL;
        const char *value;
        gsize value_len;
        int r = vl2_json_walk_next(&walk, &name, &value, &value_len, &gerr);
        if (r == 0)
            break;
        if (r < 0 || !vl2_json_load_data(parser, value, value_len, name, &gerr)) {
            s = vl2_set_error(err, VL2_ERR_FORMAT, "%s: header is not valid JSON: %s", path,
                              gerr->message);
            goto fail;
        }
        if (!strcmp(name, "__metadata__"))
            continue;
        if (g_hash_table_contains(f->tensors, name)) {
            s = vl2_set_error(err, VL2_ERR_FORMAT, "%s: header lists tensor \"%s\" twice", path,
                              name);
            goto fail;
        }
        s = parse_entry(f, name, json_parser_get_root(parser), bytes + 8 + hlen, size - 8 - hlen,
                        &max_end, err);
        if (s != VL2_OK)
            goto fail;
    }
    /* Every entry is consistent with its shape, so the header is believed: the file is short. */
    if ((uint64_t)max_end > size - 8 - hlen) {
        s = incomplete_error(path, size, 8 + hlen + (uint64_t)max_end, false, err);
        goto fail;
    }
    s = vl2_st_check(f, err);
    if (s != VL2_OK)
        goto fail;
    g_object_unref(parser);
    *out = f;
    return VL2_OK;
fail:
    g_clear_error(&gerr);
    g_clear_object(&parser);
    vl2_st_close(f);
    return s;
}

void vl2_st_close(vl2_st_file *f)
{
    if (!f)
        return;
    vl2_guard_remove(f->guard);
    if (f->map)
        munmap(f->map, f->map_size);
    if (f->fd >= 0)
        close(f->fd);
    g_hash_table_unref(f->tensors);
    g_free(f->path);
    g_free(f);
}

const vl2_tensor *vl2_st_get(const vl2_st_file *f, const char *name)
{
    return g_hash_table_lookup(f->tensors, name);
}

vl2_status vl2_st_check(const vl2_st_file *f, vl2_error *err)
{
    /* the file mapped, wherever it is now: another file at its path leaves the mapping as it
     * was */
    vl2_file_stamp now;
    vl2_stamp_fd(f->fd, &now);
    return vl2_stamp_error(f->path, &f->stamp, &now, vl2_guard_tripped(f->guard), err);
}

/* ---------------------------------------------------------------------------------------------
 * A checkpoint folder: model.safetensors, or the shards of model.safetensors.index.json
 */

static vl2_status add_file(vl2_weights *w, const char *path, vl2_st_file **out, vl2_error *err)
{
    vl2_st_file *f;
    vl2_status s = vl2_st_open(path, &f, err);
    if (s != VL2_OK)
        return s;
    g_ptr_array_add(w->files, f);
    *out = f;
    return VL2_OK;
}

static vl2_status open_sharded(vl2_weights *w, const char *dir, const char *index_path,
                               vl2_error *err)
{
    char *text;
    size_t len;
    vl2_status st = vl2_read_file(index_path, VL2_WEIGHT_INDEX_MAX_BYTES, &text, &len, err);
    if (st != VL2_OK)
        return st;
    st = vl2_check_lfs_pointer(index_path, text, len, "the weight index", err);
    if (st != VL2_OK) {
        g_free(text);
        return st;
    }
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) gerr = NULL;
    bool parsed = vl2_json_load_data(parser, text, len, NULL, &gerr);
    g_free(text);
    if (!parsed)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: not valid JSON: %s", index_path,
                             gerr->message);
    JsonNode *root = json_parser_get_root(parser);
    JsonNode *map = root && JSON_NODE_HOLDS_OBJECT(root)
                        ? json_object_get_member(json_node_get_object(root), "weight_map")
                        : NULL;
    if (!map || !JSON_NODE_HOLDS_OBJECT(map))
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);

    g_autoptr(GHashTable) shards = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    JsonObjectIter it;
    const char *name;
    JsonNode *node;
    json_object_iter_init(&it, json_node_get_object(map));
    while (json_object_iter_next(&it, &name, &node)) {
        if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING)
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: weight_map[\"%s\"] is not a file name",
                                 index_path, name);
        const char *file = json_node_get_string(node);
        /* Shards live beside the index; a path could reach anywhere on the disk. */
        if (!*file || strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, "."))
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: weight_map[\"%s\"] = \"%s\" is not a "
                                 "plain file name", index_path, name, file);
        vl2_st_file *f = g_hash_table_lookup(shards, file);
        if (!f) {
            g_autofree char *path = g_build_filename(dir, file, NULL);
            vl2_status s = add_file(w, path, &f, err);
            if (s != VL2_OK)
                return s;
            g_hash_table_insert(shards, g_strdup(file), f);
        }
        const vl2_tensor *t = vl2_st_get(f, name);
        if (!t)
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: the index puts tensor \"%s\" in this "
                                 "file, but its header has no such tensor", f->path, name);
        g_hash_table_insert(w->index, (char *)t->name, (gpointer)t);
    }
    return VL2_OK;
}

vl2_status vl2_weights_open(const char *dir, vl2_weights *w, vl2_error *err)
{
    memset(w, 0, sizeof *w);
    w->files = g_ptr_array_new_with_free_func((GDestroyNotify)vl2_st_close);
    w->copies = g_ptr_array_new_with_free_func(g_free);
    w->index = g_hash_table_new(g_str_hash, g_str_equal);

    g_autofree char *index_path = g_build_filename(dir, "model.safetensors.index.json", NULL);
    g_autofree char *single = g_build_filename(dir, "model.safetensors", NULL);
    vl2_status s;
    if (g_file_test(index_path, G_FILE_TEST_EXISTS)) {
        s = open_sharded(w, dir, index_path, err);
    } else if (g_file_test(single, G_FILE_TEST_EXISTS)) {
        vl2_st_file *f;
        s = add_file(w, single, &f, err);
        if (s == VL2_OK) {
            GHashTableIter it;
            gpointer k, v;
            g_hash_table_iter_init(&it, f->tensors);
            while (g_hash_table_iter_next(&it, &k, &v))
                g_hash_table_insert(w->index, k, v);
        }
    } else {
        s = vl2_set_error(err, VL2_ERR_IO, "%s: no model.safetensors or "
                          "model.safetensors.index.json; download the weights into this folder",
                          dir);
    }
    if (s != VL2_OK) {
        vl2_weights_close(w);
        return s;
    }
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, w->index);
    while (g_hash_table_iter_next(&it, &k, &v))
        w->n_bytes += (int64_t)((const vl2_tensor *)v)->n_bytes;
    return VL2_OK;
}

void vl2_weights_close(vl2_weights *w)
{
    if (w->index)
        g_hash_table_unref(w->index);
    if (w->files)
        g_ptr_array_unref(w->files);
    if (w->copies)
        g_ptr_array_unref(w->copies);
    memset(w, 0, sizeof *w);
}

vl2_status vl2_weights_check(const vl2_weights *w, vl2_error *err)
{
    for (guint i = 0; w->files && i < w->files->len; i++) {
        vl2_status s = vl2_st_check(g_ptr_array_index(w->files, i), err);
        if (s != VL2_OK)
            return s;
    }
    return VL2_OK;
}

static const char *file_of(const vl2_weights *w, const vl2_tensor *t)
{
    for (guint i = 0; i < w->files->len; i++) {
        const vl2_st_file *f = g_ptr_array_index(w->files, i);
        if ((const uint8_t *)t->data >= (const uint8_t *)f->map &&
            (const uint8_t *)t->data <= (const uint8_t *)f->map + f->map_size)
            return f->path;
    }
    return "?";
}

vl2_status vl2_weights_bind(vl2_weights *w, GPtrArray *table, vl2_progress_fn progress,
                            void *user_data, vl2_error *err)
{
    for (guint i = 0; i < table->len; i++) {
        const vl2_tensor_spec *e = g_ptr_array_index(table, i);
        const vl2_tensor *t = g_hash_table_lookup(w->index, e->name);
        char want[96], have[96];
        format_shape(want, sizeof want, e->ndim, e->shape);
        if (!t) {
            const char *where = w->files->len == 1
                                    ? ((vl2_st_file *)g_ptr_array_index(w->files, 0))->path
                                    : "the checkpoint's index";
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: tensor \"%s\" %s is missing; the "
                                 "weights do not match config.json", where, e->name, want);
        }
        /* A quantized matrix (`vl2 quantize`, QUANT.md): I8 (Q8_0) or U8 (Q4_0, two values a
         * byte) values with an F16 "<name>.scales" tensor of one scale per 32 values. */
        g_autofree char *scales_name = g_strconcat(e->name, ".scales", NULL);
        const vl2_tensor *sc = g_hash_table_lookup(w->index, scales_name);
        vl2_dtype dtype = t->dtype;
        if (sc && e->ndim == 2 && (t->dtype == VL2_DTYPE_I8 || t->dtype == VL2_DTYPE_U8)) {
            dtype = t->dtype == VL2_DTYPE_I8 ? VL2_DTYPE_Q8_0 : VL2_DTYPE_Q4_0;
            if (e->shape[1] % 32 || sc->dtype != VL2_DTYPE_F16 || sc->ndim != 2 ||
                sc->shape[0] != e->shape[0] || sc->shape[1] != e->shape[1] / 32)
                return vl2_set_error(err, VL2_ERR_FORMAT, "%s: the scales of quantized tensor "
                                     "\"%s\" do not fit its shape", file_of(w, sc), e->name);
        } else if (t->dtype != VL2_DTYPE_BF16 && t->dtype != VL2_DTYPE_F16 &&
                   t->dtype != VL2_DTYPE_F32) {
            return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s: tensor \"%s\" has dtype %s; "
                                 "weights must be BF16, F16, F32 or quantized by vl2 quantize",
                                 file_of(w, t), e->name, vl2_dtype_name(t->dtype));
        }
        bool same = t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++)
            same = t->shape[d] == (dtype == VL2_DTYPE_Q4_0 && d == 1 ? e->shape[d] / 2
                                                                     : e->shape[d]);
        if (!same) {
            format_shape(have, sizeof have, t->ndim, t->shape);
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: tensor \"%s\" has shape %s but "
                                 "config.json implies %s", file_of(w, t), e->name, have, want);
        }
        if (e->dest) {
            *e->dest = *t;
            /* Kernels load elements with typed loads; the format does not promise alignment. */
            if ((uintptr_t)t->data % vl2_dtype_size(t->dtype)) {
                void *copy = g_memdup2(t->data, t->n_bytes);
                g_ptr_array_add(w->copies, copy);
                e->dest->data = copy;
            }
            if (dtype != t->dtype) {
                e->dest->dtype = dtype;
                e->dest->ndim = e->ndim;
                e->dest->shape[1] = e->shape[1];
                e->dest->n_elements = e->shape[0] * e->shape[1];
                e->dest->n_bytes = t->n_bytes + sc->n_bytes;
                e->dest->scales = sc->data;
                if ((uintptr_t)sc->data % 2) {
                    void *copy = g_memdup2(sc->data, sc->n_bytes);
                    g_ptr_array_add(w->copies, copy);
                    e->dest->scales = copy;
                }
            }
        }
        if (progress && (i % 64 == 0 || i + 1 == table->len) &&
            !progress((float)(i + 1) / (float)table->len, user_data))
            return vl2_set_error(err, VL2_ERR_CANCELLED, "loading was cancelled");
    }
    return VL2_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The tensor table
 */

static void spec_free(gpointer p)
{
    vl2_tensor_spec *e = p;
    g_free(e->name);
    g_free(e);
}

static void add(GPtrArray *t, vl2_tensor *dest, int ndim, const int64_t *shape, const char *fmt,
                ...) G_GNUC_PRINTF(5, 6);

static void add(GPtrArray *t, vl2_tensor *dest, int ndim, const int64_t *shape, const char *fmt,
                ...)
{
    vl2_tensor_spec *e = g_new0(vl2_tensor_spec, 1);
    va_list ap;
    va_start(ap, fmt);
    e->name = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    e->ndim = ndim;
    memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    e->dest = dest;
    g_ptr_array_add(t, e);
}

/* dest is NULL when only the table is wanted (no model). */
#define D(m, field) ((m) ? &(m)->field : NULL)
#define ADD1(t, dest, a, ...) add(t, dest, 1, (int64_t[]){ a }, __VA_ARGS__)
#define ADD2(t, dest, a, b, ...) add(t, dest, 2, (int64_t[]){ a, b }, __VA_ARGS__)
#define ADD3(t, dest, a, b, c, ...) add(t, dest, 3, (int64_t[]){ a, b, c }, __VA_ARGS__)
#define ADD4(t, dest, a, b, c, d, ...) add(t, dest, 4, (int64_t[]){ a, b, c, d }, __VA_ARGS__)

static void add_vision(GPtrArray *t, const vl2_config *cfg, vl2_model *m)
{
    const vl2_vision_config *v = &cfg->vision;
    const int64_t w = v->width, hid = v->mlp_hidden, g = v->image_size / v->patch_size;
    vl2_vision_weights *vw = m ? &m->vision : NULL;
    if (vw)
        vw->blocks = g_new0(vl2_vit_block, v->layers);

    ADD3(t, D(vw, pos_embed), 1, g * g, w, "vision.pos_embed");
    ADD4(t, D(vw, patch_w), w, 3, v->patch_size, v->patch_size, "vision.patch_embed.proj.weight");
    ADD1(t, D(vw, patch_b), w, "vision.patch_embed.proj.bias");
    for (int i = 0; i < v->layers; i++) {
        vl2_vit_block *b = vw ? &vw->blocks[i] : NULL;
        ADD1(t, D(b, norm1_w), w, "vision.blocks.%d.norm1.weight", i);
        ADD1(t, D(b, norm1_b), w, "vision.blocks.%d.norm1.bias", i);
        ADD2(t, D(b, qkv_w), 3 * w, w, "vision.blocks.%d.attn.qkv.weight", i);
        ADD1(t, D(b, qkv_b), 3 * w, "vision.blocks.%d.attn.qkv.bias", i);
        ADD2(t, D(b, proj_w), w, w, "vision.blocks.%d.attn.proj.weight", i);
        ADD1(t, D(b, proj_b), w, "vision.blocks.%d.attn.proj.bias", i);
        ADD1(t, D(b, norm2_w), w, "vision.blocks.%d.norm2.weight", i);
        ADD1(t, D(b, norm2_b), w, "vision.blocks.%d.norm2.bias", i);
        ADD2(t, D(b, fc1_w), hid, w, "vision.blocks.%d.mlp.fc1.weight", i);
        ADD1(t, D(b, fc1_b), hid, "vision.blocks.%d.mlp.fc1.bias", i);
        ADD2(t, D(b, fc2_w), w, hid, "vision.blocks.%d.mlp.fc2.weight", i);
        ADD1(t, D(b, fc2_b), w, "vision.blocks.%d.mlp.fc2.bias", i);
    }
    ADD1(t, D(vw, norm_w), w, "vision.norm.weight");
    ADD1(t, D(vw, norm_b), w, "vision.norm.bias");
    if (v->has_attn_pool) {
        /* timm's AttentionPoolLatent (latent_len 1, mlp hidden int(w * mlp_ratio)). It is in
         * every checkpoint and validated like the rest, but ignore_head means it never runs. */
        vl2_tensor *p = vw ? vw->pool : NULL;
        ADD3(t, p ? p + 0 : NULL, 1, 1, w, "vision.attn_pool.latent");
        ADD2(t, p ? p + 1 : NULL, w, w, "vision.attn_pool.q.weight");
        ADD1(t, p ? p + 2 : NULL, w, "vision.attn_pool.q.bias");
        ADD2(t, p ? p + 3 : NULL, 2 * w, w, "vision.attn_pool.kv.weight");
        ADD1(t, p ? p + 4 : NULL, 2 * w, "vision.attn_pool.kv.bias");
        ADD2(t, p ? p + 5 : NULL, w, w, "vision.attn_pool.proj.weight");
        ADD1(t, p ? p + 6 : NULL, w, "vision.attn_pool.proj.bias");
        ADD1(t, p ? p + 7 : NULL, w, "vision.attn_pool.norm.weight");
        ADD1(t, p ? p + 8 : NULL, w, "vision.attn_pool.norm.bias");
        ADD2(t, p ? p + 9 : NULL, hid, w, "vision.attn_pool.mlp.fc1.weight");
        ADD1(t, p ? p + 10 : NULL, hid, "vision.attn_pool.mlp.fc1.bias");
        ADD2(t, p ? p + 11 : NULL, w, hid, "vision.attn_pool.mlp.fc2.weight");
        ADD1(t, p ? p + 12 : NULL, w, "vision.attn_pool.mlp.fc2.bias");
    }
}

static void add_projector(GPtrArray *t, const vl2_config *cfg, vl2_model *m)
{
    const vl2_projector_config *p = &cfg->projector;
    /* MlpProjector builds Linear, then depth-2 x (GELU, Linear), then GELU, Linear: depth 1
     * still makes two Linears. Sequential indices skip the GELUs: 0, 2, 4, ... */
    int n = p->depth < 2 ? 2 : p->depth;
    int64_t in = (int64_t)p->input_dim * p->downsample_ratio * p->downsample_ratio;
    int64_t mid = (int64_t)p->n_embed * p->mlp_ratio;
    vl2_projector_weights *pw = m ? &m->projector : NULL;
    if (pw) {
        pw->n_linear = n;
        pw->w = g_new0(vl2_tensor, n);
        pw->b = g_new0(vl2_tensor, n);
    }
    for (int i = 0; i < n; i++) {
        int64_t rows = i == n - 1 ? p->n_embed : mid, cols = i == 0 ? in : mid;
        ADD2(t, pw ? &pw->w[i] : NULL, rows, cols, "projector.layers.%d.weight", 2 * i);
        ADD1(t, pw ? &pw->b[i] : NULL, rows, "projector.layers.%d.bias", 2 * i);
    }
    ADD1(t, D(pw, image_newline), p->n_embed, "image_newline");
    ADD1(t, D(pw, view_separator), p->n_embed, "view_seperator"); /* sic, as stored */
}

static void add_ffn(GPtrArray *t, vl2_ffn *f, int64_t hidden, int64_t inter, const char *prefix)
{
    ADD2(t, D(f, gate), inter, hidden, "%s.gate_proj.weight", prefix);
    ADD2(t, D(f, up), inter, hidden, "%s.up_proj.weight", prefix);
    ADD2(t, D(f, down), hidden, inter, "%s.down_proj.weight", prefix);
}

static void add_language(GPtrArray *t, const vl2_config *cfg, vl2_model *m)
{
    const vl2_lm_config *lm = &cfg->lm;
    const int64_t h = lm->hidden_size, nh = lm->num_attention_heads;
    if (m)
        m->layers = g_new0(vl2_layer, lm->num_hidden_layers);

    ADD2(t, D(m, embed), lm->vocab_size, h, "language.model.embed_tokens.weight");
    for (int il = 0; il < lm->num_hidden_layers; il++) {
        vl2_layer *L = m ? &m->layers[il] : NULL;
        char pre[96];
        snprintf(pre, sizeof pre, "language.model.layers.%d", il);
        if (!lm->use_mla) {
            /* transformers' LlamaAttention: head_dim = hidden / heads, GQA via kv heads */
            const int64_t hd = lm->head_dim, nkv = lm->num_key_value_heads;
            ADD2(t, D(L, wq), nh * hd, h, "%s.self_attn.q_proj.weight", pre);
            ADD2(t, D(L, wk), nkv * hd, h, "%s.self_attn.k_proj.weight", pre);
            ADD2(t, D(L, wv), nkv * hd, h, "%s.self_attn.v_proj.weight", pre);
            ADD2(t, D(L, wo), h, nh * hd, "%s.self_attn.o_proj.weight", pre);
            if (lm->attention_bias) {
                ADD1(t, D(L, bq), nh * hd, "%s.self_attn.q_proj.bias", pre);
                ADD1(t, D(L, bk), nkv * hd, "%s.self_attn.k_proj.bias", pre);
                ADD1(t, D(L, bv), nkv * hd, "%s.self_attn.v_proj.bias", pre);
                ADD1(t, D(L, bo), h, "%s.self_attn.o_proj.bias", pre);
            }
        } else {
            const int64_t qhd = lm->qk_nope_head_dim + lm->qk_rope_head_dim;
            if (lm->q_lora_rank == 0) {
                ADD2(t, D(L, wq), nh * qhd, h, "%s.self_attn.q_proj.weight", pre);
            } else {
                ADD2(t, D(L, q_a), lm->q_lora_rank, h, "%s.self_attn.q_a_proj.weight", pre);
                if (lm->attention_bias)
                    ADD1(t, D(L, q_a_b), lm->q_lora_rank, "%s.self_attn.q_a_proj.bias", pre);
                ADD1(t, D(L, q_a_norm), lm->q_lora_rank, "%s.self_attn.q_a_layernorm.weight", pre);
                ADD2(t, D(L, q_b), nh * qhd, lm->q_lora_rank, "%s.self_attn.q_b_proj.weight", pre);
            }
            ADD2(t, D(L, kv_a), lm->kv_lora_rank + lm->qk_rope_head_dim, h,
                 "%s.self_attn.kv_a_proj_with_mqa.weight", pre);
            if (lm->attention_bias)
                ADD1(t, D(L, kv_a_b), lm->kv_lora_rank + lm->qk_rope_head_dim,
                     "%s.self_attn.kv_a_proj_with_mqa.bias", pre);
            ADD1(t, D(L, kv_a_norm), lm->kv_lora_rank, "%s.self_attn.kv_a_layernorm.weight", pre);
            ADD2(t, D(L, kv_b), nh * (lm->qk_nope_head_dim + lm->v_head_dim), lm->kv_lora_rank,
                 "%s.self_attn.kv_b_proj.weight", pre);
            ADD2(t, D(L, wo), h, nh * lm->v_head_dim, "%s.self_attn.o_proj.weight", pre);
            if (lm->attention_bias)
                ADD1(t, D(L, bo), h, "%s.self_attn.o_proj.bias", pre);
        }

        char sub[128];
        if (vl2_config_layer_is_moe(lm, il)) {
            if (L) {
                L->is_moe = true;
                L->experts = g_new0(vl2_ffn, lm->n_routed_experts);
            }
            for (int e = 0; e < lm->n_routed_experts; e++) {
                snprintf(sub, sizeof sub, "%s.mlp.experts.%d", pre, e);
                add_ffn(t, L ? &L->experts[e] : NULL, h, lm->moe_intermediate_size, sub);
            }
            ADD2(t, D(L, router), lm->n_routed_experts, h, "%s.mlp.gate.weight", pre);
            if (lm->topk_method == VL2_TOPK_NOAUX_TC)
                ADD1(t, D(L, router_bias), lm->n_routed_experts,
                     "%s.mlp.gate.e_score_correction_bias", pre);
            if (lm->n_shared_experts > 0) {
                snprintf(sub, sizeof sub, "%s.mlp.shared_experts", pre);
                add_ffn(t, D(L, shared), h,
                        (int64_t)lm->moe_intermediate_size * lm->n_shared_experts, sub);
            }
        } else {
            snprintf(sub, sizeof sub, "%s.mlp", pre);
            add_ffn(t, D(L, dense), h, lm->intermediate_size, sub);
        }
        ADD1(t, D(L, attn_norm), h, "%s.input_layernorm.weight", pre);
        ADD1(t, D(L, ffn_norm), h, "%s.post_attention_layernorm.weight", pre);
    }
    ADD1(t, D(m, final_norm), h, "language.model.norm.weight");
    if (!lm->tie_word_embeddings)
        ADD2(t, D(m, lm_head), lm->vocab_size, h, "language.lm_head.weight");
}

GPtrArray *vl2_tensor_table(const vl2_config *cfg, vl2_model *m)
{
    GPtrArray *t = g_ptr_array_new_with_free_func(spec_free);
    add_projector(t, cfg, m);
    add_vision(t, cfg, m);
    add_language(t, cfg, m);
    return t;
}
