/* random.c - random-weight checkpoints with the published shapes, for measuring speed.
 *
 * config.json text -> vl2_config (config.c) -> the tensor table (weights.c: the very table a
 * load validates against, so what is written always loads) -> a plan: tensors in table order
 * cut into shards of at most max_shard_bytes (4 GiB by default) between tensors, with every
 * shard's safetensors header and every tensor's byte offset fixed before a byte is written.
 * The data is then cut into 8 MiB chunks of the shard files; each worker of a vl2_pool fills
 * a chunk in its own buffer and pwrite()s it to its place, so threads never wait for each
 * other and memory stays at one buffer per thread, whatever the model's size.
 *
 * Values are a pure function of (seed, tensor name, element index): splitmix64 over a stream
 * derived from the seed and the name gives 64 bits per 4 elements, and each 16 bits index a
 * table of 65536 bf16 values evenly spread over [-0.02 sqrt 3, 0.02 sqrt 3] (uniform, std
 * 0.02: the initializer_range these models were initialised with). Norm weights are 1, biases
 * and the router's e_score_correction_bias 0, so activations stay O(1), nothing overflows and
 * the router's scores spread over the experts. The bytes do not depend on the number of
 * threads or on the chunking.
 *
 * Everything goes into a hidden temporary folder inside dest and is renamed into place at the
 * end, model.safetensors.index.json last: loaders look for the index first, so a half-written
 * checkpoint never looks complete. Nothing is fsynced: a benchmark fixture is cheap to write
 * again after a power failure, and waiting for the disk would double the time.
 */
#define _GNU_SOURCE /* fallocate */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "kernels.h"

#define DEFAULT_MAX_SHARD (G_GINT64_CONSTANT(4) << 30)
#define CHUNK_BYTES ((uint64_t)8 << 20)
#define INDEX_NAME "model.safetensors.index.json"
#define HEADER_START "{\"__metadata__\":{\"format\":\"pt\"}"
#define WEIGHT_STD 0.02
#define BF16_ONE 0x3F80
#define GOLDEN 0x9E3779B97F4A7C15ull

vl2_random_params vl2_random_default_params(void)
{
    return (vl2_random_params){ .seed = 0 };
}

/* ---------------------------------------------------------------------------------------------
 * Values
 */

typedef enum { FILL_RANDOM, FILL_ONE, FILL_ZERO } fill_kind;

/* The table's names: 1-D "*.weight" are the gains of RMSNorm and LayerNorm (input_layernorm,
 * kv_a_layernorm, the ViT's norm1/norm2/norm, ...); image_newline and view_seperator are 1-D
 * embeddings without the suffix and stay random. */
static fill_kind kind_of(const vl2_tensor_spec *e)
{
    if (g_str_has_suffix(e->name, ".bias") || g_str_has_suffix(e->name, "e_score_correction_bias"))
        return FILL_ZERO;
    if (e->ndim == 1 && g_str_has_suffix(e->name, ".weight"))
        return FILL_ONE;
    return FILL_RANDOM;
}

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t stream_of(uint64_t seed, const char *name)
{
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001B3ull;
    return mix64(h ^ mix64(seed + GOLDEN));
}

/* The w-th output of splitmix64 started at `stream`: any word without the ones before it. */
static inline uint64_t word_at(uint64_t stream, uint64_t w)
{
    return mix64(stream + (w + 1) * GOLDEN);
}

static uint16_t f32_to_bf16(float f)
{
    union { float f; uint32_t u; } v = { f };
    return (uint16_t)((v.u + 0x7FFF + ((v.u >> 16) & 1)) >> 16); /* round to nearest even */
}

/* 16 random bits -> bf16 (little-endian, as safetensors stores it), symmetric around 0. */
static void build_value_table(uint16_t *table)
{
    const double half = WEIGHT_STD * sqrt(3.0);
    for (int u = 0; u < 65536; u++)
        table[u] = GUINT16_TO_LE(f32_to_bf16((float)(((u + 0.5) / 32768.0 - 1.0) * half)));
}

typedef struct {
    const char *name;            /* owned by the tensor table */
    uint64_t n_bytes;
    uint64_t offset;             /* in its shard file */
    uint64_t stream;
    fill_kind kind;
} planned_tensor;

/* Elements [first, first + n) of tensor t into dst. */
static void fill_values(const planned_tensor *t, const uint16_t *table, uint64_t first,
                        uint64_t n, uint16_t *dst)
{
    if (t->kind == FILL_ZERO) {
        memset(dst, 0, n * sizeof *dst);
        return;
    }
    if (t->kind == FILL_ONE) {
        for (uint64_t i = 0; i < n; i++)
            dst[i] = GUINT16_TO_LE(BF16_ONE);
        return;
    }
    uint64_t k = first, end = first + n;
    for (; k < end && (k & 3); k++)
        *dst++ = table[(word_at(t->stream, k >> 2) >> (16 * (k & 3))) & 0xFFFF];
    for (; k + 4 <= end; k += 4, dst += 4) {
        uint64_t z = word_at(t->stream, k >> 2);
        dst[0] = table[z & 0xFFFF];
        dst[1] = table[(z >> 16) & 0xFFFF];
        dst[2] = table[(z >> 32) & 0xFFFF];
        dst[3] = table[z >> 48];
    }
    for (; k < end; k++)
        *dst++ = table[(word_at(t->stream, k >> 2) >> (16 * (k & 3))) & 0xFFFF];
}

/* ---------------------------------------------------------------------------------------------
 * The plan: shards, headers, offsets
 */

typedef struct {
    char *name;                  /* model-0000i-of-0000N.safetensors */
    GString *header;             /* the 8-byte length and the space-padded JSON */
    uint64_t size;               /* of the whole file */
    uint64_t data_start;
    int first, count;            /* its tensors in the plan */
    int fd;
} planned_shard;

typedef struct {
    GPtrArray *table;            /* vl2_tensor_spec*, owns the names */
    planned_tensor *tensors;
    int n_tensors;
    GArray *shards;              /* planned_shard */
    int64_t n_params, n_bytes;
    uint64_t file_bytes;         /* shard files, headers included */
} plan;

static void plan_clear(plan *p)
{
    if (p->shards) {
        for (guint i = 0; i < p->shards->len; i++) {
            planned_shard *s = &g_array_index(p->shards, planned_shard, i);
            g_free(s->name);
            if (s->header)
                g_string_free(s->header, TRUE);
        }
        g_array_unref(p->shards);
    }
    free(p->tensors);
    if (p->table)
        g_ptr_array_unref(p->table);
    memset(p, 0, sizeof *p);
}

static uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* Size of a shard file whose header holds `entries` bytes of entries and `data` bytes after. */
static uint64_t shard_file_size(size_t entries, uint64_t data)
{
    return 8 + pad8(strlen(HEADER_START) + entries + 1) + data;
}

/* Names are the table's, built from fixed formats: nothing in them needs JSON escaping. */
static void append_entry(GString *h, const vl2_tensor_spec *e, uint64_t begin, uint64_t end)
{
    g_string_append_printf(h, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[", e->name);
    for (int d = 0; d < e->ndim; d++)
        g_string_append_printf(h, "%s%" G_GINT64_FORMAT, d ? "," : "", e->shape[d]);
    g_string_append_printf(h, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}",
                           begin, end);
}

/* Closes the shard of tensors [first, end) whose header entries are `entries`. */
static void close_shard(plan *p, const GString *entries, int first, int end, uint64_t data)
{
    planned_shard s = { .first = first, .count = end - first, .fd = -1 };
    GString *json = g_string_new(HEADER_START);
    g_string_append_len(json, entries->str, (gssize)entries->len);
    g_string_append_c(json, '}');
    while (json->len % 8)
        g_string_append_c(json, ' '); /* the data starts 8-aligned, as safetensors pads it */
    s.header = g_string_sized_new(8 + json->len);
    uint64_t n = json->len;
    for (int i = 0; i < 8; i++)
        g_string_append_c(s.header, (char)((n >> (8 * i)) & 0xFF));
    g_string_append_len(s.header, json->str, (gssize)json->len);
    g_string_free(json, TRUE);
    s.data_start = s.header->len;
    s.size = s.data_start + data;
    for (int i = first; i < end; i++)
        p->tensors[i].offset += s.data_start;
    p->file_bytes += s.size;
    g_array_append_val(p->shards, s);
}

static vl2_status make_plan(const vl2_config *cfg, uint64_t seed, uint64_t max_shard, plan *p,
                            vl2_error *err)
{
    memset(p, 0, sizeof *p);
    p->table = vl2_tensor_table(cfg, NULL);
    p->n_tensors = (int)p->table->len;
    p->shards = g_array_new(FALSE, TRUE, sizeof(planned_shard));
    if (p->n_tensors == 0)
        return vl2_set_error(err, VL2_ERR_FORMAT, "the config implies no tensors");
    p->tensors = calloc((size_t)p->n_tensors, sizeof *p->tensors);
    if (!p->tensors)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory");

    GString *entries = g_string_new(NULL), *entry = g_string_new(NULL);
    uint64_t data = 0;
    int first = 0;
    vl2_status s = VL2_OK;
    for (int i = 0; i < p->n_tensors; i++) {
        const vl2_tensor_spec *e = g_ptr_array_index(p->table, i);
        int64_t n = 1;
        for (int d = 0; d < e->ndim; d++)
            n *= e->shape[d]; /* config.c bounds every dimension: no overflow */
        if (p->n_params > INT64_MAX / 4 - n) {
            s = vl2_set_error(err, VL2_ERR_UNSUPPORTED, "the config implies an impossibly large "
                              "model");
            break;
        }
        p->n_params += n;
        uint64_t bytes = (uint64_t)n * 2;
        g_string_truncate(entry, 0);
        append_entry(entry, e, data, data + bytes);
        if (i > first && shard_file_size(entries->len + entry->len, data + bytes) > max_shard) {
            close_shard(p, entries, first, i, data);
            g_string_truncate(entries, 0);
            data = 0;
            first = i;
            g_string_truncate(entry, 0);
            append_entry(entry, e, 0, bytes);
        }
        g_string_append_len(entries, entry->str, (gssize)entry->len);
        p->tensors[i] = (planned_tensor){ e->name, bytes, data, stream_of(seed, e->name),
                                          kind_of(e) };
        data += bytes;
    }
    if (s == VL2_OK) {
        close_shard(p, entries, first, p->n_tensors, data);
        p->n_bytes = p->n_params * 2;
        int n = (int)p->shards->len;
        for (int i = 0; i < n; i++)
            g_array_index(p->shards, planned_shard, i).name =
                g_strdup_printf("model-%05d-of-%05d.safetensors", i + 1, n);
    }
    g_string_free(entries, TRUE);
    g_string_free(entry, TRUE);
    return s;
}

/* Hugging Face's layout: {"metadata": {"total_size": N}, "weight_map": {name: file}}, in table
 * order like the published deepseek-vl2 index. */
static char *index_json(const plan *p)
{
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "{\n  \"metadata\": {\n    \"total_size\": %" G_GINT64_FORMAT
                           "\n  },\n  \"weight_map\": {\n", p->n_bytes);
    for (guint k = 0; k < p->shards->len; k++) {
        const planned_shard *sh = &g_array_index(p->shards, planned_shard, k);
        for (int i = sh->first; i < sh->first + sh->count; i++)
            g_string_append_printf(s, "    \"%s\": \"%s\"%s\n", p->tensors[i].name, sh->name,
                                   i + 1 < p->n_tensors ? "," : "");
    }
    g_string_append(s, "  }\n}\n");
    return g_string_free(s, FALSE);
}

/* ---------------------------------------------------------------------------------------------
 * Filling the shards in parallel
 */

typedef struct {
    int shard;
    uint64_t begin, end;         /* file offsets */
} chunk;

typedef struct {
    plan *p;
    uint16_t *values;            /* [65536] */
    chunk *chunks;
    uint8_t **buffers;           /* one CHUNK_BYTES buffer per thread */
    uint64_t total;
    atomic_uint_least64_t done;
    atomic_bool stop;
    bool cancelled;              /* written by thread 0, the caller */
    vl2_progress_fn progress;
    void *progress_user_data;
    GMutex lock;
    int error;                   /* the first errno, and where */
    int error_shard;
} fill_job;

/* Writes all of buf at offset; 0 or an errno. */
static int pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t offset)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return ENOSPC;
        buf += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

static void fill_fail(fill_job *j, int error, int shard)
{
    g_mutex_lock(&j->lock);
    if (!j->error) {
        j->error = error;
        j->error_shard = shard;
    }
    g_mutex_unlock(&j->lock);
    atomic_store(&j->stop, true);
}

static void fill_chunk(const fill_job *j, const chunk *c, uint8_t *buf)
{
    const planned_shard *s = &g_array_index(j->p->shards, planned_shard, c->shard);
    const planned_tensor *t = j->p->tensors;
    /* the first tensor that ends after c->begin */
    int lo = s->first, hi = s->first + s->count;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (t[mid].offset + t[mid].n_bytes <= c->begin)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Offsets and chunk bounds are even: every piece starts on a whole bf16. */
    for (uint64_t pos = c->begin; pos < c->end; lo++) {
        uint64_t a = pos - t[lo].offset;
        uint64_t b = MIN(c->end, t[lo].offset + t[lo].n_bytes) - t[lo].offset;
        fill_values(&t[lo], j->values, a / 2, (b - a) / 2, (uint16_t *)(buf + (pos - c->begin)));
        pos = t[lo].offset + b;
    }
}

static void fill_task(void *ctx, int task, int thread)
{
    fill_job *j = ctx;
    if (atomic_load_explicit(&j->stop, memory_order_relaxed))
        return;
    const chunk *c = &j->chunks[task];
    uint8_t *buf = j->buffers[thread];
    fill_chunk(j, c, buf);
    const planned_shard *s = &g_array_index(j->p->shards, planned_shard, c->shard);
    int e = pwrite_all(s->fd, buf, (size_t)(c->end - c->begin), c->begin);
    if (e) {
        fill_fail(j, e, c->shard);
        return;
    }
    uint64_t done = atomic_fetch_add(&j->done, c->end - c->begin) + (c->end - c->begin);
    if (thread == 0 && j->progress &&
        !j->progress((float)((double)done / (double)j->total), j->progress_user_data)) {
        j->cancelled = true;
        atomic_store(&j->stop, true);
    }
}

static vl2_status write_error(const char *dest, const char *file, int e, vl2_error *err)
{
    if (e == ENOSPC || e == EDQUOT || e == EFBIG)
        return vl2_set_error(err, VL2_ERR_IO, "%s/%s: cannot write: %s (the disk or a size "
                             "limit is full)", dest, file, g_strerror(e));
    return vl2_set_error(err, VL2_ERR_IO, "%s/%s: cannot write: %s", dest, file, g_strerror(e));
}

static vl2_status fill_shards(plan *p, const char *dest, const vl2_random_params *params,
                              vl2_error *err)
{
    GArray *chunks = g_array_new(FALSE, FALSE, sizeof(chunk));
    for (guint k = 0; k < p->shards->len; k++) {
        const planned_shard *s = &g_array_index(p->shards, planned_shard, k);
        for (uint64_t b = s->data_start; b < s->size; b += CHUNK_BYTES) {
            chunk c = { (int)k, b, MIN(s->size, b + CHUNK_BYTES) };
            g_array_append_val(chunks, c);
        }
    }
    if (chunks->len > INT_MAX) {
        g_array_unref(chunks);
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "the checkpoint is impossibly large");
    }
    int n_threads = params->n_threads > 0 ? params->n_threads : (int)g_get_num_processors();
    if ((guint)n_threads > chunks->len)
        n_threads = chunks->len ? (int)chunks->len : 1;

    fill_job j = {
        .p = p,
        .chunks = (chunk *)chunks->data,
        .total = p->file_bytes,
        .progress = params->progress,
        .progress_user_data = params->progress_user_data,
    };
    g_mutex_init(&j.lock);
    for (guint k = 0; k < p->shards->len; k++)
        j.total -= g_array_index(p->shards, planned_shard, k).data_start;
    vl2_status st = VL2_OK;
    vl2_pool *pool = vl2_pool_new(n_threads);
    j.values = malloc(65536 * sizeof *j.values);
    j.buffers = calloc((size_t)n_threads, sizeof *j.buffers);
    bool ok = pool && j.values && j.buffers;
    for (int i = 0; ok && i < n_threads; i++)
        ok = (j.buffers[i] = malloc(CHUNK_BYTES)) != NULL;
    if (!ok) {
        st = vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    build_value_table(j.values);
    vl2_pool_run(pool, (int)chunks->len, fill_task, &j);
    if (j.error)
        st = write_error(dest, g_array_index(p->shards, planned_shard, j.error_shard).name,
                         j.error, err);
    else if (j.cancelled)
        st = vl2_set_error(err, VL2_ERR_CANCELLED, "writing the checkpoint was cancelled");
out:
    vl2_pool_free(pool);
    if (j.buffers)
        for (int i = 0; i < n_threads; i++)
            free(j.buffers[i]);
    free(j.buffers);
    free(j.values);
    g_mutex_clear(&j.lock);
    g_array_unref(chunks);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Files and folders
 */

static vl2_status write_small_file(const char *dir, const char *dest, const char *name,
                                   const void *data, size_t len, vl2_error *err)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return vl2_set_error(err, VL2_ERR_IO, "%s/%s: cannot create: %s", dest, name,
                             g_strerror(errno));
    int e = pwrite_all(fd, data, len, 0);
    if (close(fd) != 0 && !e)
        e = errno;
    return e ? write_error(dest, name, e, err) : VL2_OK;
}

/* Creates the shard files with their headers; `created` collects their names. */
static vl2_status open_shards(plan *p, const char *tmp, const char *dest, GPtrArray *created,
                              vl2_error *err)
{
    for (guint k = 0; k < p->shards->len; k++) {
        planned_shard *s = &g_array_index(p->shards, planned_shard, k);
        g_autofree char *path = g_build_filename(tmp, s->name, NULL);
        s->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (s->fd < 0)
            return vl2_set_error(err, VL2_ERR_IO, "%s/%s: cannot create: %s", dest, s->name,
                                 g_strerror(errno));
        g_ptr_array_add(created, g_strdup(s->name));
        /* Reserving the space finds a full disk now rather than gigabytes later, and keeps the
         * file in few extents. Filesystems without fallocate just write. */
        if (fallocate(s->fd, 0, 0, (off_t)s->size) != 0 && errno != EOPNOTSUPP &&
            errno != ENOSYS && errno != EINVAL)
            return write_error(dest, s->name, errno, err);
        int e = pwrite_all(s->fd, (const uint8_t *)s->header->str, s->header->len, 0);
        if (e)
            return write_error(dest, s->name, e, err);
    }
    return VL2_OK;
}

static vl2_status close_shards(plan *p, const char *dest, vl2_error *err)
{
    vl2_status st = VL2_OK;
    for (guint k = 0; k < p->shards->len; k++) {
        planned_shard *s = &g_array_index(p->shards, planned_shard, k);
        if (s->fd >= 0 && close(s->fd) != 0 && st == VL2_OK)
            st = write_error(dest, s->name, errno, err);
        s->fd = -1;
    }
    return st;
}

static bool is_checkpoint_file(const char *name)
{
    return !strcmp(name, "config.json") || !strcmp(name, INDEX_NAME) ||
           g_str_has_suffix(name, ".safetensors");
}

/* dest exists (created here if needed) and is a folder, with no checkpoint unless overwrite. */
static vl2_status prepare_dest(const char *dest, bool overwrite, bool *created, vl2_error *err)
{
    *created = false;
    struct stat st;
    if (stat(dest, &st) != 0) {
        if (g_mkdir_with_parents(dest, 0755) != 0)
            return vl2_set_error(err, VL2_ERR_IO, "%s: cannot create the folder: %s", dest,
                                 g_strerror(errno));
        *created = true;
        return VL2_OK;
    }
    if (!S_ISDIR(st.st_mode))
        return vl2_set_error(err, VL2_ERR_IO, "%s: exists and is not a folder", dest);
    if (overwrite)
        return VL2_OK;
    GError *gerr = NULL;
    GDir *d = g_dir_open(dest, 0, &gerr);
    if (!d) {
        vl2_status s = vl2_set_error(err, VL2_ERR_IO, "%s: %s", dest, gerr->message);
        g_error_free(gerr);
        return s;
    }
    const char *name;
    vl2_status s = VL2_OK;
    while (s == VL2_OK && (name = g_dir_read_name(d)))
        if (is_checkpoint_file(name))
            s = vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "%s already holds a checkpoint (%s); "
                              "refusing to replace it", dest, name);
    g_dir_close(d);
    return s;
}

static vl2_status check_space(const char *dest, uint64_t need, vl2_error *err)
{
    struct statvfs sv;
    if (statvfs(dest, &sv) != 0)
        return VL2_OK; /* unknown: the writes will tell */
    uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    if (avail < need)
        return vl2_set_error(err, VL2_ERR_IO, "%s: the checkpoint needs %.2f GB but only %.2f GB "
                             "are free", dest, (double)need / 1e9, (double)avail / 1e9);
    return VL2_OK;
}

/* Old shards the new index does not name (overwrite): model-*-of-*.safetensors only. */
static void remove_stale_shards(const plan *p, const char *dest)
{
    GDir *d = g_dir_open(dest, 0, NULL);
    if (!d)
        return;
    const char *old;
    while ((old = g_dir_read_name(d))) {
        bool ours = false;
        for (guint k = 0; k < p->shards->len && !ours; k++)
            ours = !strcmp(old, g_array_index(p->shards, planned_shard, k).name);
        if (!ours && g_pattern_match_simple("model-*-of-*.safetensors", old)) {
            g_autofree char *path = g_build_filename(dest, old, NULL);
            unlink(path);
        }
    }
    g_dir_close(d);
}

/* Moves the files from tmp into dest, the index last; `moved` collects what arrived. With
 * overwrite, the old index goes first (the folder stops looking complete) and old shards the
 * new index does not name go just before the new index arrives. */
static vl2_status move_into_place(const plan *p, const char *tmp, const char *dest,
                                  GPtrArray *names, bool overwrite, GPtrArray *moved,
                                  vl2_error *err)
{
    if (overwrite) {
        g_autofree char *old_index = g_build_filename(dest, INDEX_NAME, NULL);
        g_autofree char *old_single = g_build_filename(dest, "model.safetensors", NULL);
        unlink(old_index);
        unlink(old_single);
    }
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && overwrite)
            remove_stale_shards(p, dest);
        for (guint i = 0; i < names->len; i++) {
            const char *name = g_ptr_array_index(names, i);
            if ((pass == 1) != !strcmp(name, INDEX_NAME))
                continue;
            g_autofree char *from = g_build_filename(tmp, name, NULL);
            g_autofree char *to = g_build_filename(dest, name, NULL);
            if (rename(from, to) != 0)
                return vl2_set_error(err, VL2_ERR_IO, "%s: cannot move into place: %s", to,
                                     g_strerror(errno));
            g_ptr_array_add(moved, g_strdup(name));
        }
    }
    return VL2_OK;
}

/* Removes what this call created: files in tmp, files already moved into dest, tmp, and dest
 * itself when this call made it (only if empty). */
static void cleanup(const char *tmp, const char *dest, GPtrArray *names, GPtrArray *moved,
                    bool created_dest)
{
    for (guint i = 0; tmp && i < names->len; i++) {
        g_autofree char *path = g_build_filename(tmp, g_ptr_array_index(names, i), NULL);
        unlink(path);
    }
    for (guint i = 0; i < moved->len; i++) {
        g_autofree char *path = g_build_filename(dest, g_ptr_array_index(moved, i), NULL);
        unlink(path);
    }
    if (tmp)
        rmdir(tmp);
    if (created_dest)
        rmdir(dest);
}

static bool plain_file_name(const char *name)
{
    return name && *name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

static vl2_status check_extra_files(const vl2_random_params *params, vl2_error *err)
{
    if (params->n_extra_files < 0 || (params->n_extra_files > 0 && !params->extra_files))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "extra_files is NULL");
    for (int i = 0; i < params->n_extra_files; i++) {
        const vl2_extra_file *f = &params->extra_files[i];
        if (!plain_file_name(f->name) || is_checkpoint_file(f->name))
            return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "extra file \"%s\" is not a plain "
                                 "file name beside the weights", f->name ? f->name : "(null)");
        if (!f->data && f->size)
            return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "extra file %s has no data",
                                 f->name);
        for (int k = 0; k < i; k++)
            if (!strcmp(params->extra_files[k].name, f->name))
                return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "extra file %s is given "
                                     "twice", f->name);
    }
    return VL2_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The public call
 */

static vl2_status write_checkpoint(plan *p, const char *config_json, const char *dest,
                                   const vl2_random_params *params, vl2_error *err)
{
    bool created_dest = false;
    char *tmp = NULL, *index = NULL;
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free); /* created in tmp */
    GPtrArray *moved = g_ptr_array_new_with_free_func(g_free); /* then moved into dest */
    vl2_status st = prepare_dest(dest, params->overwrite, &created_dest, err);
    if (st != VL2_OK)
        goto out;
    index = index_json(p);
    uint64_t need = p->file_bytes + strlen(config_json) + strlen(index);
    for (int i = 0; i < params->n_extra_files; i++)
        need += params->extra_files[i].size;
    st = check_space(dest, need, err);
    if (st != VL2_OK)
        goto out;
    tmp = g_build_filename(dest, ".vl2-random-XXXXXX", NULL);
    if (!g_mkdtemp_full(tmp, 0755)) {
        st = vl2_set_error(err, VL2_ERR_IO, "%s: cannot write into the folder: %s", dest,
                           g_strerror(errno));
        g_clear_pointer(&tmp, g_free);
        goto out;
    }

    /* the small files first: a problem shows before gigabytes are written */
    st = write_small_file(tmp, dest, "config.json", config_json, strlen(config_json), err);
    if (st == VL2_OK)
        g_ptr_array_add(names, g_strdup("config.json"));
    for (int i = 0; st == VL2_OK && i < params->n_extra_files; i++) {
        const vl2_extra_file *f = &params->extra_files[i];
        st = write_small_file(tmp, dest, f->name, f->data, f->size, err);
        if (st == VL2_OK)
            g_ptr_array_add(names, g_strdup(f->name));
    }
    if (st == VL2_OK)
        st = open_shards(p, tmp, dest, names, err);
    if (st == VL2_OK)
        st = fill_shards(p, dest, params, err);
    vl2_status closed = close_shards(p, dest, st == VL2_OK ? err : NULL);
    if (st == VL2_OK)
        st = closed;
    if (st == VL2_OK) {
        st = write_small_file(tmp, dest, INDEX_NAME, index, strlen(index), err);
        if (st == VL2_OK)
            g_ptr_array_add(names, g_strdup(INDEX_NAME));
    }
    if (st == VL2_OK)
        st = move_into_place(p, tmp, dest, names, params->overwrite, moved, err);
    if (st == VL2_OK) {
        rmdir(tmp);
        if (params->progress)
            params->progress(1.0f, params->progress_user_data);
    }
out:
    if (st != VL2_OK)
        cleanup(tmp, dest, names, moved, created_dest);
    g_ptr_array_unref(names);
    g_ptr_array_unref(moved);
    g_free(index);
    g_free(tmp);
    return st;
}

vl2_status vl2_write_random_checkpoint(const char *config_json, const char *dest,
                                       const vl2_random_params *params, vl2_random_info *info,
                                       vl2_error *err)
{
    vl2_random_params defaults = vl2_random_default_params();
    if (!params)
        params = &defaults;
    if (info)
        memset(info, 0, sizeof *info);
    if (!config_json)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "no config given");
    if (!params->dry_run && (!dest || !*dest))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "no destination folder given");
    if (params->max_shard_bytes < 0 || params->n_threads < 0)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "max_shard_bytes and n_threads must "
                             "not be negative");
    vl2_status st = check_extra_files(params, err);
    if (st != VL2_OK)
        return st;

    vl2_config cfg;
    st = vl2_config_parse(config_json, strlen(config_json),
                          params->config_name ? params->config_name : "config.json", &cfg, err);
    if (st != VL2_OK)
        return st;
    plan p;
    uint64_t max_shard = params->max_shard_bytes ? (uint64_t)params->max_shard_bytes
                                                 : (uint64_t)DEFAULT_MAX_SHARD;
    st = make_plan(&cfg, params->seed, max_shard, &p, err);
    vl2_config_clear(&cfg);
    if (st == VL2_OK && info) {
        info->n_params = p.n_params;
        info->n_bytes = p.n_bytes;
        info->n_tensors = p.n_tensors;
        info->n_shards = (int)p.shards->len;
    }
    if (st == VL2_OK && !params->dry_run)
        st = write_checkpoint(&p, config_json, dest, params, err);
    plan_clear(&p);
    return st;
}
