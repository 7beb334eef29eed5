/* quantize.c - the language model's matrices to Q8_0 or Q4_0 while loading (or copied as they
 * are: vl2_model_params.resident), and `vl2 quantize`'s single-file checkpoint.
 *
 * Which matrices: the ones a decoded token streams through the matrix-vector kernels -
 * attention's projections (MHA q/k/v/o; MLA q_a, q_b or q, kv_a and o), the dense MLP, the
 * shared and the routed experts - when their rows are a whole number of 32-value blocks. Q4
 * keeps lm_head at Q8: it is a fifth of a token's bytes and 4-bit logits are visibly worse (see
 * QUANT.md). Not quantized: the embedding (one row a token), norms, biases, the router (its
 * near-ties decide which experts run), MLA's kv_b (used row by row in the absorbed attention),
 * and the whole vision path, which is bound by arithmetic and runs in float32.
 *
 * Quantizing reads each bf16 matrix once (threads over rows) into one anonymous mapping (in
 * huge pages where the system allows it), then tells the kernel the mapped bf16 pages are no
 * longer needed, so the process holds the quantized copy and not both.
 */
#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "decoder.h"
#include "quant.h"

#define HUGE_PAGE ((size_t)2 << 20)

typedef struct {
    vl2_tensor *t;
    vl2_dtype to;
    size_t qs_bytes, scale_bytes;
    uint8_t *qs;
    uint16_t *scales;
} qjob_item;

static bool is_quantized(vl2_dtype t)
{
    return t == VL2_DTYPE_Q8_0 || t == VL2_DTYPE_Q4_0;
}

/* Quantizing needs float rows of whole blocks; copying (resident) takes any matrix, those of
 * a quantized checkpoint included. */
static bool eligible(const vl2_tensor *t, bool copy)
{
    return t->data && t->ndim == 2 && (copy || t->shape[1] % VL2_QBLOCK == 0) &&
           (t->dtype == VL2_DTYPE_BF16 || t->dtype == VL2_DTYPE_F16 ||
            t->dtype == VL2_DTYPE_F32 || (copy && is_quantized(t->dtype)));
}

/* The matrices to quantize and the format of each. */
static GArray *plan(vl2_model *m, vl2_weights_format format)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    vl2_dtype to = format == VL2_WEIGHTS_Q8 ? VL2_DTYPE_Q8_0 : VL2_DTYPE_Q4_0;
    const bool copy = format == VL2_WEIGHTS_STORED; /* resident: every matrix as it is */
    GArray *items = g_array_new(FALSE, TRUE, sizeof(qjob_item));
#define ADD(tensor, fmt)                                                                       \
    do {                                                                                       \
        if (eligible(tensor, copy)) {                                                          \
            qjob_item it = { (tensor), copy ? (tensor)->dtype : (fmt), 0, 0, NULL, NULL };    \
            g_array_append_val(items, it);                                                     \
        }                                                                                      \
    } while (0)
    for (int il = 0; il < lm->num_hidden_layers; il++) {
        vl2_layer *L = &m->layers[il];
        vl2_tensor *attn[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->q_a, &L->q_b, &L->kv_a };
        for (size_t i = 0; i < G_N_ELEMENTS(attn); i++)
            ADD(attn[i], to);
        vl2_ffn *ffns[] = { &L->dense, &L->shared };
        for (size_t i = 0; i < G_N_ELEMENTS(ffns); i++) {
            ADD(&ffns[i]->gate, to);
            ADD(&ffns[i]->up, to);
            ADD(&ffns[i]->down, to);
        }
        if (L->is_moe)
            for (int e = 0; e < lm->n_routed_experts; e++) {
                ADD(&L->experts[e].gate, to);
                ADD(&L->experts[e].up, to);
                ADD(&L->experts[e].down, to);
            }
    }
    if (!lm->tie_word_embeddings)
        ADD(&m->lm_head, VL2_DTYPE_Q8_0);
#undef ADD
    return items;
}

typedef struct {
    qjob_item *it;
    int rows_per_task;
} qjob;

static void quantize_task(void *ctx, int task, int thread)
{
    qjob *j = ctx;
    const vl2_tensor *t = j->it->t;
    const int n = (int)t->shape[1], rows = (int)t->shape[0];
    int r0 = task * j->rows_per_task;
    int r1 = r0 + j->rows_per_task < rows ? r0 + j->rows_per_task : rows;
    if (j->it->to == t->dtype) { /* resident: a copy, values and scales */
        size_t rb = j->it->qs_bytes / (size_t)rows, sb = j->it->scale_bytes / (size_t)rows;
        memcpy(j->it->qs + (size_t)r0 * rb, (const uint8_t *)t->data + (size_t)r0 * rb,
               (size_t)(r1 - r0) * rb);
        if (sb)
            memcpy((uint8_t *)j->it->scales + (size_t)r0 * sb,
                   (const uint8_t *)t->scales + (size_t)r0 * sb, (size_t)(r1 - r0) * sb);
        return;
    }
    float *row = malloc((size_t)n * sizeof(float));
    if (!row)
        return;
    for (int r = r0; r < r1; r++) {
        vl2_to_f32(t->data, t->dtype, (size_t)r * n, (size_t)n, row);
        uint16_t *sc = j->it->scales + (size_t)r * (n / VL2_QBLOCK);
        if (j->it->to == VL2_DTYPE_Q8_0)
            vl2_quantize_row_q8(row, n, (int8_t *)j->it->qs + (size_t)r * n, sc);
        else
            vl2_quantize_row_q4(row, n, j->it->qs + (size_t)r * (n / 2), sc);
    }
    free(row);
}

/* Gives the pages of [p, p + n) back to the kernel when they belong to a file mapping: the
 * quantized copy replaces them. Tensors the loader copied to the heap are left alone. */
static void release_pages(const vl2_weights *w, const void *p, size_t n)
{
    for (guint i = 0; i < w->copies->len; i++)
        if (g_ptr_array_index(w->copies, i) == p)
            return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

vl2_status vl2_quantize_model(vl2_model *m, vl2_pool *pool, vl2_weights_format format,
                              vl2_progress_fn progress, void *user_data, vl2_error *err)
{
    m->weights_format = format;
    if (format != VL2_WEIGHTS_STORED && format != VL2_WEIGHTS_Q8 && format != VL2_WEIGHTS_Q4)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "unknown weights format %d",
                             (int)format);
    g_autoptr(GArray) items = plan(m, format);
    size_t total = 0;
    for (guint i = 0; i < items->len; i++) {
        qjob_item *it = &g_array_index(items, qjob_item, i);
        size_t n = (size_t)it->t->n_elements;
        bool plain_copy = it->to == it->t->dtype && !is_quantized(it->to);
        it->qs_bytes = plain_copy ? it->t->n_bytes : it->to == VL2_DTYPE_Q8_0 ? n : n / 2;
        it->scale_bytes = plain_copy ? 0 : n / VL2_QBLOCK * sizeof(uint16_t);
        total += (it->qs_bytes + it->scale_bytes + 63) / 64 * 64;
    }
    /* huge pages where the system gives them on request: a decoded token streams through
     * the whole arena, and 2 MiB pages spare the page walks of 4 KiB ones */
    size_t len = (total + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    uint8_t *arena = mmap(NULL, len ? len : HUGE_PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (arena == MAP_FAILED)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory for %.1f GB of quantized "
                             "weights", total / 1e9);
#ifdef MADV_HUGEPAGE
    madvise(arena, len, MADV_HUGEPAGE);
#endif
    /* the model owns the arena from here: a cancelled load frees it with the model */
    m->quant_arena = arena;
    m->quant_arena_len = len ? len : HUGE_PAGE;
    size_t off = 0;
    int n_threads = vl2_pool_size(pool);
    for (guint i = 0; i < items->len; i++) {
        qjob_item *it = &g_array_index(items, qjob_item, i);
        it->qs = arena + off;
        it->scales = (uint16_t *)(arena + off + it->qs_bytes);
        off += (it->qs_bytes + it->scale_bytes + 63) / 64 * 64;
        int rows = (int)it->t->shape[0];
        qjob j = { it, (rows + 4 * n_threads - 1) / (4 * n_threads) };
        vl2_pool_run(pool, (rows + j.rows_per_task - 1) / j.rows_per_task, quantize_task, &j);
        bool copied = it->to == it->t->dtype;
        if (copied && it->scale_bytes) {
            release_pages(&m->weights, it->t->data, it->qs_bytes);
            release_pages(&m->weights, it->t->scales, it->scale_bytes);
        } else {
            release_pages(&m->weights, it->t->data, it->t->n_bytes);
        }
        if (!copied) /* what vl2_quantize_checkpoint writes as quantized */
            g_hash_table_insert(m->quantized, (gpointer)it->t->name, it->t);
        it->t->dtype = it->to;
        it->t->data = it->qs;
        it->t->scales = it->scale_bytes ? it->scales : NULL;
        it->t->n_bytes = it->qs_bytes + it->scale_bytes;
        if (progress && !progress((float)((double)off / (double)(total ? total : 1)), user_data))
            return vl2_set_error(err, VL2_ERR_CANCELLED, "loading was cancelled");
    }
    return VL2_OK;
}

/* ---------------------------------------------------------------------------------------------
 * vl2 quantize: the model as loaded with quantization, written as one safetensors file
 */

typedef struct {
    const char *name;            /* borrowed */
    char *owned_name;            /* the ".scales" entries */
    const char *dtype;
    int ndim;
    int64_t shape[VL2_MAX_DIMS];
    const void *data;
    size_t n_bytes;
} out_entry;

static void out_entry_clear(gpointer p)
{
    g_free(((out_entry *)p)->owned_name);
}

static bool write_all(FILE *f, const void *data, size_t n)
{
    return n == 0 || fwrite(data, 1, n, f) == n;
}

static const char *safetensors_dtype(vl2_dtype t)
{
    switch (t) {
    case VL2_DTYPE_F32:
        return "F32";
    case VL2_DTYPE_F16:
        return "F16";
    case VL2_DTYPE_BF16:
        return "BF16";
    case VL2_DTYPE_Q8_0:
        return "I8";
    case VL2_DTYPE_Q4_0:
        return "U8";
    default:
        return NULL;
    }
}

/* The tokenizer and processor files a checkpoint folder carries besides config.json. */
static const char *const side_files[] = {
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "processor_config.json", "preprocessor_config.json",
};

static vl2_status copy_file(const char *from, const char *to, vl2_error *err)
{
    g_autofree char *data = NULL;
    gsize len = 0;
    g_autoptr(GError) ge = NULL;
    /* side files no load has read (processor_config.json...): a named pipe or a link to a
     * device among them must not stall or exhaust the copy */
    if (!vl2_input_read(from, VL2_TOKENIZER_MAX_BYTES, &data, &len, &ge) ||
        !g_file_set_contents(to, data, (gssize)len, &ge))
        return vl2_set_error(err, VL2_ERR_IO, "%s", ge->message);
    return VL2_OK;
}

static void remove_tree(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(dir, name, NULL);
        g_unlink(p);
    }
    if (d)
        g_dir_close(d);
    g_rmdir(dir);
}

vl2_status vl2_quantize_checkpoint(const char *src_dir, const char *dst_dir,
                                   vl2_weights_format format, vl2_progress_fn progress,
                                   void *progress_user_data, vl2_error *err)
{
    if (!src_dir || !dst_dir)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "source or destination is NULL");
    if (format != VL2_WEIGHTS_Q8 && format != VL2_WEIGHTS_Q4)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "quantize to q8 or q4");
    /* "out/" names the folder out: its parent is where the work folder goes */
    g_autofree char *dst = g_strdup(dst_dir);
    for (size_t n = strlen(dst); n > 1 && dst[n - 1] == '/'; n--)
        dst[n - 1] = 0;
    dst_dir = dst;
    if (g_file_test(dst_dir, G_FILE_TEST_EXISTS))
        return vl2_set_error(err, VL2_ERR_IO, "%s already exists; choose a new folder", dst_dir);

    /* Written into a hidden sibling and renamed: a failure never leaves a folder that loads.
     * Made first, so that a destination that cannot be written is said before the work. */
    g_autofree char *parent = g_path_get_dirname(dst_dir);
    g_autofree char *tmpl = g_build_filename(parent, ".vl2-quantize-XXXXXX", NULL);
    char *tmp = g_mkdtemp(tmpl);
    if (!tmp)
        return vl2_set_error(err, VL2_ERR_IO, "cannot create a folder beside %s: %s", dst_dir,
                             g_strerror(errno));
    g_chmod(tmp, 0755); /* a model folder like any other, not mkdtemp's private one */

    vl2_model_params mp = vl2_model_default_params();
    mp.weights = format;
    vl2_model *m = NULL;
    vl2_status st = vl2_model_load(src_dir, &mp, &m, err);
    if (st != VL2_OK) {
        remove_tree(tmp);
        return st;
    }
    /* the checkpoint's own tensors (not what loading made of them): a quantized matrix is
     * stored with its "<name>.scales" (QUANT.md) */
    GHashTableIter it;
    gpointer stored_name;
    g_hash_table_iter_init(&it, m->weights.index);
    while (st == VL2_OK && g_hash_table_iter_next(&it, &stored_name, NULL))
        if (g_str_has_suffix(stored_name, ".scales"))
            st = vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s is already quantized; quantize the "
                               "bf16 checkpoint it was made from", src_dir);
    if (st != VL2_OK) {
        vl2_model_free(m);
        remove_tree(tmp);
        return st;
    }

    /* every tensor of the table, in its order: the quantized ones as values + scales */
    GPtrArray *table = vl2_tensor_table(&m->cfg, NULL);
    GArray *entries = g_array_new(FALSE, TRUE, sizeof(out_entry));
    g_array_set_clear_func(entries, out_entry_clear);
    for (guint i = 0; i < table->len && st == VL2_OK; i++) {
        const vl2_tensor_spec *e = g_ptr_array_index(table, i);
        const vl2_tensor *q = g_hash_table_lookup(m->quantized, e->name);
        const vl2_tensor *t = q ? q : g_hash_table_lookup(m->weights.index, e->name);
        const char *dt = t ? safetensors_dtype(t->dtype) : NULL;
        if (!t || !dt) {
            st = vl2_set_error(err, VL2_ERR_FORMAT, "%s: tensor \"%s\" cannot be written",
                               src_dir, e->name);
            break;
        }
        out_entry o = { e->name, NULL, dt, e->ndim, { 0 }, t->data, t->n_bytes };
        memcpy(o.shape, e->shape, sizeof o.shape);
        if (q) {
            size_t scale_bytes = (size_t)q->n_elements / VL2_QBLOCK * sizeof(uint16_t);
            o.n_bytes = q->n_bytes - scale_bytes;
            if (q->dtype == VL2_DTYPE_Q4_0)
                o.shape[1] /= 2;
            g_array_append_val(entries, o);
            out_entry sc = { NULL, g_strconcat(e->name, ".scales", NULL), "F16", 2,
                             { e->shape[0], e->shape[1] / VL2_QBLOCK }, q->scales, scale_bytes };
            sc.name = sc.owned_name;
            g_array_append_val(entries, sc);
        } else {
            g_array_append_val(entries, o);
        }
    }

    /* the header, then the data in the same order */
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "__metadata__");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "format");
    json_builder_add_string_value(b, format == VL2_WEIGHTS_Q8 ? "vl2-q8_0" : "vl2-q4_0");
    json_builder_set_member_name(b, "source");
    json_builder_add_string_value(b, src_dir);
    json_builder_end_object(b);
    uint64_t offset = 0, total = 0;
    for (guint i = 0; i < entries->len; i++) {
        const out_entry *o = &g_array_index(entries, out_entry, i);
        json_builder_set_member_name(b, o->name);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "dtype");
        json_builder_add_string_value(b, o->dtype);
        json_builder_set_member_name(b, "shape");
        json_builder_begin_array(b);
        for (int d = 0; d < o->ndim; d++)
            json_builder_add_int_value(b, o->shape[d]);
        json_builder_end_array(b);
        json_builder_set_member_name(b, "data_offsets");
        json_builder_begin_array(b);
        json_builder_add_int_value(b, (gint64)offset);
        json_builder_add_int_value(b, (gint64)(offset + o->n_bytes));
        json_builder_end_array(b);
        json_builder_end_object(b);
        offset += o->n_bytes;
    }
    total = offset;
    json_builder_end_object(b);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    gsize hlen = 0;
    g_autofree char *header = json_generator_to_data(gen, &hlen);
    size_t padded = (hlen + 7) / 8 * 8;

    if (st == VL2_OK) {
        g_autofree char *path = g_build_filename(tmp, "model.safetensors", NULL);
        FILE *f = fopen(path, "wb");
        uint64_t len = padded;
        bool ok = f && write_all(f, &len, 8) && write_all(f, header, hlen) &&
                  write_all(f, "        ", padded - hlen);
        uint64_t done = 0;
        for (guint i = 0; ok && i < entries->len; i++) {
            const out_entry *o = &g_array_index(entries, out_entry, i);
            ok = write_all(f, o->data, o->n_bytes);
            done += o->n_bytes;
            if (ok && progress && !progress((float)done / (float)(total ? total : 1),
                                            progress_user_data)) {
                st = vl2_set_error(err, VL2_ERR_CANCELLED, "quantizing was cancelled");
                ok = false;
            }
        }
        if (f && fclose(f) != 0)
            ok = false;
        if (!ok && st == VL2_OK)
            st = vl2_set_error(err, VL2_ERR_IO, "%s: cannot write: %s", path, g_strerror(errno));
        for (size_t i = 0; st == VL2_OK && i < G_N_ELEMENTS(side_files); i++) {
            g_autofree char *from = g_build_filename(src_dir, side_files[i], NULL);
            g_autofree char *to = g_build_filename(tmp, side_files[i], NULL);
            if (g_file_test(from, G_FILE_TEST_IS_REGULAR))
                st = copy_file(from, to, err);
        }
        /* the source's mapped weights were read: they must not have changed meanwhile */
        if (st == VL2_OK)
            st = vl2_weights_check(&m->weights, err);
        if (st == VL2_OK && g_rename(tmp, dst_dir) != 0)
            st = vl2_set_error(err, VL2_ERR_IO, "cannot rename %s to %s: %s", tmp, dst_dir,
                               g_strerror(errno));
    }
    if (st != VL2_OK)
        remove_tree(tmp);
    g_array_unref(entries);
    g_ptr_array_unref(table);
    vl2_model_free(m);
    return st;
}
