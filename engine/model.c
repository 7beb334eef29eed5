/* model.c - the public API: loading a checkpoint folder, sessions, prefill and the decode loop.
 *
 * Loading reads config.json (config.c), tokenizer.json (tokenizer.c) and the safetensors files
 * (weights.c), then binds every tensor the config implies to a field of the model, checking
 * names, dtypes and shapes. The model is immutable afterwards.
 *
 * A session owns the KV cache, the worker pool and the sampler. vl2_session_prefill() runs a
 * prompt through the decoder in chunks (bounded scratch memory, progress and cancellation
 * between chunks), reusing the cached prefix it shares with what the session computed before,
 * so a chat pays only for its new turn. vl2_session_step() samples, decodes the token's bytes
 * into complete UTF-8 text, holds back text that may be the start of a stop string, and feeds
 * the token back unless the generation ends.
 */
#include <cblas.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "decoder.h"
#include "gemm-bf16.h"
#include "vision.h"

/* Positions run through the decoder at once during prefill. */
#define PREFILL_CHUNK 256

/* ---------------------------------------------------------------------------------------------
 * Defaults
 */

vl2_model_params vl2_model_default_params(void)
{
    return (vl2_model_params){ .n_threads = 0 };
}

vl2_session_params vl2_session_default_params(void)
{
    return (vl2_session_params){ .n_ctx = 0, .kv_type = VL2_KV_F16 };
}

bool vl2_compute_from_name(const char *name, vl2_compute *out)
{
    for (vl2_compute c = VL2_COMPUTE_F32; c <= VL2_COMPUTE_BF16; c++)
        if (name && !strcmp(name, vl2_compute_name(c))) {
            *out = c;
            return true;
        }
    return false;
}

const char *vl2_compute_name(vl2_compute compute)
{
    switch (compute) {
    case VL2_COMPUTE_F32:
        return "f32";
    case VL2_COMPUTE_BF16:
        return "bf16";
    }
    return NULL;
}

bool vl2_compute_bf16_native(void)
{
    return vl2_gemm_bf16_native();
}

vl2_generate_params vl2_generate_default_params(void)
{
    return (vl2_generate_params){
        .temperature = 0.4f,
        .top_p = 0.9f,
        .top_k = 50,
        .repetition_penalty = 1.1f,
        .seed = VL2_SEED_RANDOM,
        .max_new_tokens = 1024,
        .stop_at_eos = true,
    };
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 */

static double now_seconds(void)
{
    return (double)g_get_monotonic_time() / 1e6;
}

/* The special tokens the processor uses come from the tokenizer's own config (its bos_token,
 * eos_token, pad_token strings); config.json's ids are the fallback. */
static int32_t special_id(const vl2_tokenizer *tok, JsonObject *tc, const char *key, int32_t def)
{
    if (!tc || !json_object_has_member(tc, key))
        return def;
    JsonNode *n = json_object_get_member(tc, key);
    const char *content = NULL;
    if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING)
        content = json_node_get_string(n);
    else if (JSON_NODE_HOLDS_OBJECT(n) &&
             json_object_has_member(json_node_get_object(n), "content"))
        content = json_object_get_string_member(json_node_get_object(n), "content");
    int32_t id = content ? vl2_tokenizer_find(tok, content) : -1;
    return id >= 0 ? id : def;
}

static vl2_status bind_special_tokens(vl2_model *m, vl2_error *err)
{
    g_autofree char *path = g_build_filename(m->dir, "tokenizer_config.json", NULL);
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *tc = NULL;
    if (g_file_test(path, G_FILE_TEST_EXISTS)) {
        g_autoptr(GError) gerr = NULL;
        if (!json_parser_load_from_file(parser, path, &gerr))
            return vl2_set_error(err, VL2_ERR_FORMAT, "%s: %s", path, gerr->message);
        JsonNode *root = json_parser_get_root(parser);
        if (root && JSON_NODE_HOLDS_OBJECT(root))
            tc = json_node_get_object(root);
    }
    m->bos_id = special_id(m->tok, tc, "bos_token", m->cfg.lm.bos_token_id);
    m->eos_id = special_id(m->tok, tc, "eos_token", m->cfg.lm.eos_token_id);
    int32_t pad = vl2_tokenizer_find(m->tok, "<\xef\xbd\x9c\xe2\x96\x81pad"
                                             "\xe2\x96\x81\xef\xbd\x9c>"); /* <｜▁pad▁｜> */
    m->pad_id = special_id(m->tok, tc, "pad_token", pad >= 0 ? pad : m->eos_id);
    m->image_id = vl2_tokenizer_find(m->tok, "<image>");

    int32_t n_vocab = m->cfg.lm.vocab_size;
    if (vl2_tokenizer_n_vocab(m->tok) > n_vocab)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s/tokenizer.json: ids reach %d but the model "
                             "embeds only %d tokens", m->dir, vl2_tokenizer_n_vocab(m->tok) - 1,
                             n_vocab);
    if (m->bos_id < 0 || m->bos_id >= n_vocab || m->eos_id < 0 || m->eos_id >= n_vocab)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: bos/eos token ids are outside the "
                             "vocabulary", m->dir);
    return VL2_OK;
}

/* "q4" or "q8" when any language model matrix is quantized (Q4 keeps lm_head at Q8), else
 * the stored dtype of the experts (or the dense MLP). */
static const char *weights_format(const vl2_model *m)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    bool q8 = false;
    for (int il = 0; il < lm->num_hidden_layers; il++) {
        const vl2_layer *L = &m->layers[il];
        const vl2_tensor *ts[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->q_a, &L->q_b, &L->kv_a,
                                   &L->dense.gate, &L->dense.up, &L->dense.down,
                                   &L->shared.gate, &L->shared.up, &L->shared.down,
                                   L->experts ? &L->experts[0].gate : NULL,
                                   L->experts ? &L->experts[0].down : NULL };
        for (size_t i = 0; i < G_N_ELEMENTS(ts); i++) {
            if (ts[i] && ts[i]->data && ts[i]->dtype == VL2_DTYPE_Q4_0)
                return "q4";
            q8 = q8 || (ts[i] && ts[i]->data && ts[i]->dtype == VL2_DTYPE_Q8_0);
        }
    }
    if (q8)
        return "q8";
    const vl2_layer *last = &m->layers[lm->num_hidden_layers - 1];
    vl2_dtype t = last->is_moe ? last->experts[0].gate.dtype : last->dense.gate.dtype;
    return t == VL2_DTYPE_BF16 ? "bf16" : t == VL2_DTYPE_F16 ? "f16"
         : t == VL2_DTYPE_F32 ? "f32" : vl2_dtype_name(t);
}

/* Loading reports one fraction: binding the tensors, then (when the weights are copied into
 * memory or quantized) copying them, which takes the rest of the range. Either stage stops
 * at the callback's word. */
#define LOAD_BIND_SHARE 0.1f

typedef struct {
    vl2_progress_fn fn;
    void *user_data;
    float from, span;            /* this stage's part of the range */
} load_progress;

static bool load_progress_cb(float fraction, void *user_data)
{
    const load_progress *lp = user_data;
    return lp->fn(lp->from + lp->span * fraction, lp->user_data);
}

/* A checkpoint written by `vl2 quantize` stores a ".scales" tensor beside each matrix. */
static bool holds_quantized(const vl2_weights *w)
{
    GHashTableIter it;
    gpointer name;
    g_hash_table_iter_init(&it, w->index);
    while (g_hash_table_iter_next(&it, &name, NULL))
        if (g_str_has_suffix(name, ".scales"))
            return true;
    return false;
}

vl2_status vl2_model_load(const char *dir, const vl2_model_params *params, vl2_model **out_model,
                          vl2_error *err)
{
    if (!out_model)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "out_model is NULL");
    *out_model = NULL;
    if (!dir || !*dir)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "no model folder given");
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR))
        return vl2_set_error(err, VL2_ERR_IO, "%s: not a folder", dir);
    vl2_model_params defaults = vl2_model_default_params();
    if (!params)
        params = &defaults;

    double t0 = now_seconds();
    vl2_model *m = calloc(1, sizeof *m);
    if (!m)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory");
    m->dir = g_strdup(dir);
    m->quantized = g_hash_table_new(g_str_hash, g_str_equal);
    m->n_threads = params->n_threads > 0 ? params->n_threads : (int)g_get_num_processors();

    g_autofree char *config_path = g_build_filename(dir, "config.json", NULL);
    g_autofree char *tok_path = g_build_filename(dir, "tokenizer.json", NULL);
    GPtrArray *table = NULL;
    /* stamped before they are read: a change while loading is seen by vl2_model_check_files */
    static const char *const side_files[VL2_N_SIDE_FILES] = {
        "config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors.index.json",
    };
    for (int i = 0; i < VL2_N_SIDE_FILES; i++) {
        m->side_paths[i] = g_build_filename(dir, side_files[i], NULL);
        vl2_stamp_path(m->side_paths[i], &m->side_stamps[i]);
    }
    load_progress lp = { params->progress, params->progress_user_data, 0.0f, 1.0f };
    /* Cheap checks first: a broken weights file is reported before the tokenizer is parsed. */
    vl2_status s = vl2_config_load(config_path, &m->cfg, err);
    if (s == VL2_OK)
        s = vl2_weights_open(dir, &m->weights, err);
    if (s == VL2_OK) {
        /* Binding the mapped weights takes a second; copying them into memory takes many. */
        if (params->weights != VL2_WEIGHTS_STORED || params->resident ||
            holds_quantized(&m->weights))
            lp.span = LOAD_BIND_SHARE;
        table = vl2_tensor_table(&m->cfg, m);
        s = vl2_weights_bind(&m->weights, table, lp.fn ? load_progress_cb : NULL, &lp, err);
    }
    if (s == VL2_OK)
        s = vl2_tokenizer_load(tok_path, &m->tok, err);
    if (s == VL2_OK)
        s = bind_special_tokens(m, err);
    if (s == VL2_OK) {
        for (guint i = 0; i < table->len; i++) {
            const vl2_tensor_spec *e = g_ptr_array_index(table, i);
            int64_t n = 1;
            for (int d = 0; d < e->ndim; d++)
                n *= e->shape[d];
            m->n_params += n;
        }
        s = vl2_decoder_init(m, err);
    }
    /* a quantized checkpoint is held like weights quantized while loading: in memory */
    if (s == VL2_OK && (params->weights != VL2_WEIGHTS_STORED || params->resident ||
                        !strcmp(weights_format(m), "q8") || !strcmp(weights_format(m), "q4"))) {
        vl2_pool *qpool = vl2_pool_new(m->n_threads);
        lp.from = lp.span;
        lp.span = 1.0f - lp.from;
        s = qpool ? vl2_quantize_model(m, qpool, params->weights, lp.fn ? load_progress_cb : NULL,
                                       &lp, err)
                  : vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory");
        vl2_pool_free(qpool);
    }
    /* binding and quantizing read the weights: they must not have changed meanwhile */
    if (s == VL2_OK)
        s = vl2_weights_check(&m->weights, err);
    if (table)
        g_ptr_array_unref(table);
    if (s != VL2_OK) {
        vl2_model_free(m);
        return s;
    }
    /* The engine's own pool does the threading; OpenBLAS runs inside its tasks. */
    openblas_set_num_threads(1);
    m->load_seconds = now_seconds() - t0;
    *out_model = m;
    return VL2_OK;
}

void vl2_model_free(vl2_model *m)
{
    if (!m)
        return;
    if (m->layers)
        for (int i = 0; i < m->cfg.lm.num_hidden_layers; i++)
            g_free(m->layers[i].experts);
    g_free(m->layers);
    g_free(m->vision.blocks);
    g_free(m->projector.w);
    g_free(m->projector.b);
    free(m->rope_inv_freq);
    if (m->quant_arena)
        munmap(m->quant_arena, m->quant_arena_len);
    if (m->quantized)
        g_hash_table_unref(m->quantized);
    vl2_weights_close(&m->weights);
    vl2_tokenizer_free(m->tok);
    vl2_config_clear(&m->cfg);
    for (int i = 0; i < VL2_N_SIDE_FILES; i++)
        g_free(m->side_paths[i]);
    g_free(m->dir);
    free(m);
}

vl2_status vl2_model_check_files(const vl2_model *m, vl2_error *err)
{
    if (!m)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "model is NULL");
    vl2_file_stamp now;
    for (int i = 0; i < VL2_N_SIDE_FILES; i++) {
        vl2_stamp_path(m->side_paths[i], &now);
        vl2_status s = vl2_stamp_error(m->side_paths[i], &m->side_stamps[i], &now, false, err);
        if (s != VL2_OK)
            return s;
    }
    for (guint i = 0; i < m->weights.files->len; i++) {
        const vl2_st_file *f = g_ptr_array_index(m->weights.files, i);
        vl2_status s = vl2_st_check(f, err);
        if (s != VL2_OK)
            return s;
        vl2_stamp_path(f->path, &now);
        s = vl2_stamp_error(f->path, &f->stamp, &now, false, err);
        if (s != VL2_OK)
            return s;
    }
    return VL2_OK;
}

/* ---------------------------------------------------------------------------------------------
 * What a token and a tile cost (for benchmarks)
 */

typedef struct {
    double bytes, elements;
} cost;

static void add_matrix(cost *c, const vl2_tensor *t, double times)
{
    if (t->data) {
        c->bytes += (double)t->n_bytes * times;
        c->elements += (double)t->n_elements * times;
    }
}

/* Weights one decoded token reads. The embedding contributes one row; norms and biases their
 * few bytes. */
static cost lm_token_cost(const vl2_model *m)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    cost c = { 0, 0 };
    for (int il = 0; il < lm->num_hidden_layers; il++) {
        const vl2_layer *L = &m->layers[il];
        const vl2_tensor *attn[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk, &L->bv,
                                     &L->bo, &L->q_a, &L->q_a_b, &L->q_a_norm, &L->q_b,
                                     &L->kv_a, &L->kv_a_b, &L->kv_a_norm, &L->kv_b,
                                     &L->attn_norm, &L->ffn_norm };
        for (size_t i = 0; i < G_N_ELEMENTS(attn); i++)
            add_matrix(&c, attn[i], 1);
        if (!L->is_moe) {
            add_matrix(&c, &L->dense.gate, 1);
            add_matrix(&c, &L->dense.up, 1);
            add_matrix(&c, &L->dense.down, 1);
            continue;
        }
        add_matrix(&c, &L->shared.gate, 1);
        add_matrix(&c, &L->shared.up, 1);
        add_matrix(&c, &L->shared.down, 1);
        add_matrix(&c, &L->router, 1);
        add_matrix(&c, &L->router_bias, 1);
        /* every routed expert has the same shape: k of them */
        double k = lm->num_experts_per_tok;
        add_matrix(&c, &L->experts[0].gate, k);
        add_matrix(&c, &L->experts[0].up, k);
        add_matrix(&c, &L->experts[0].down, k);
    }
    add_matrix(&c, &m->final_norm, 1);
    c.bytes += (double)m->embed.n_bytes / (double)lm->vocab_size;
    return c;
}

static const vl2_tensor *output_head(const vl2_model *m)
{
    return m->cfg.lm.tie_word_embeddings ? &m->embed : &m->lm_head;
}

/* Multiply-adds x 2 of one tile: the ViT's matrices over its patches, its attention, the
 * projector's matrices over the downsampled tokens. */
static double vision_tile_flops(const vl2_model *m)
{
    const vl2_vision_config *vc = &m->cfg.vision;
    double n = (double)(vc->image_size / vc->patch_size) * (vc->image_size / vc->patch_size);
    cost vit = { 0, 0 };
    add_matrix(&vit, &m->vision.patch_w, 1);
    for (int l = 0; l < vc->layers; l++) {
        const vl2_vit_block *b = &m->vision.blocks[l];
        add_matrix(&vit, &b->qkv_w, 1);
        add_matrix(&vit, &b->proj_w, 1);
        add_matrix(&vit, &b->fc1_w, 1);
        add_matrix(&vit, &b->fc2_w, 1);
    }
    cost proj = { 0, 0 };
    for (int i = 0; i < m->projector.n_linear; i++)
        add_matrix(&proj, &m->projector.w[i], 1);
    int side = vl2_projector_side(&m->cfg);
    return 2 * vit.elements * n + 4.0 * n * n * vc->width * vc->layers +
           2 * proj.elements * side * side;
}

void vl2_model_get_info(const vl2_model *m, vl2_model_info *info)
{
    memset(info, 0, sizeof *info);
    if (!m)
        return;
    const vl2_lm_config *lm = &m->cfg.lm;
    info->variant = !lm->use_mla ? "tiny" : lm->scoring_func == VL2_SCORING_SIGMOID ? "base"
                                                                                   : "small";
    info->n_params = m->n_params;
    info->n_bytes = m->weights.n_bytes;
    info->n_vocab = lm->vocab_size;
    info->n_ctx_max = lm->max_position_embeddings;
    info->n_layers = lm->num_hidden_layers;
    info->hidden_size = lm->hidden_size;
    info->n_threads = m->n_threads;
    info->bos_id = m->bos_id;
    info->eos_id = m->eos_id;
    info->pad_id = m->pad_id;
    info->image_id = m->image_id;
    info->load_seconds = m->load_seconds;

    cost c = lm_token_cost(m), head = { 0, 0 };
    add_matrix(&head, output_head(m), 1);
    info->weights_format = weights_format(m);
    info->decode_bytes_per_token = (int64_t)(c.bytes + head.bytes);
    info->lm_flops_per_token = 2 * c.elements;
    info->lm_head_flops = 2 * head.elements;
    info->lm_flops_per_attention_pair =
        lm->use_mla ? (double)lm->num_hidden_layers * lm->num_attention_heads *
                          (2.0 * (lm->kv_lora_rank + lm->qk_rope_head_dim) + 2.0 * lm->kv_lora_rank)
                    : 4.0 * lm->num_hidden_layers * lm->num_attention_heads * lm->head_dim;
    info->vision_flops_per_tile = vision_tile_flops(m);
    info->kv_values_per_token = (int64_t)vl2_kv_cache_values_per_token(m);
}

/* ---------------------------------------------------------------------------------------------
 * Tokenizer wrappers
 */

vl2_status vl2_tokenize(const vl2_model *m, const char *text, size_t text_len, int32_t *ids,
                        size_t max_ids, size_t *n_ids, vl2_error *err)
{
    if (!m)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "model is NULL");
    return vl2_tokenizer_tokenize(m->tok, text, text_len, ids, max_ids, n_ids, err);
}

char *vl2_detokenize(const vl2_model *m, const int32_t *ids, size_t n_ids, bool skip_special)
{
    if (!m || (!ids && n_ids))
        return NULL;
    return vl2_tokenizer_detokenize(m->tok, ids, n_ids, skip_special);
}

/* ---------------------------------------------------------------------------------------------
 * Sessions
 */

struct vl2_session {
    const vl2_model *m;
    vl2_pool *pool;
    vl2_kv_cache kv;
    int n_past;                  /* positions in the KV cache */
    uint64_t *keys;              /* [n_ctx]: what each cached position holds (position_key) */
    float *logits;               /* [vocab] at the last position run */
    bool have_logits;
    float *embeds;               /* [PREFILL_CHUNK][hidden] */

    /* the generation in progress */
    bool generating;
    vl2_generate_params gen;
    char **stop;                 /* copies of gen.stop_strings */
    vl2_logit_bias *bias;        /* copy of gen.logit_bias */
    int n_generated;
    uint8_t *seen;               /* [vocab]: ids in the prompt or generated, for the penalty */
    vl2_rng rng;
    vl2_sampler_scratch sampler;
    vl2_utf8_stream utf8;
    GString *held;               /* decoded text not returned yet: it may begin a stop string */
    GString *text;               /* what the last step returns */

    vl2_timings timings;
    vl2_prefill_progress prefill_progress;
};

vl2_status vl2_session_new(const vl2_model *m, const vl2_session_params *params,
                           vl2_session **out, vl2_error *err)
{
    if (!out)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "out_session is NULL");
    *out = NULL;
    if (!m)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "model is NULL");
    vl2_session_params defaults = vl2_session_default_params();
    if (!params)
        params = &defaults;
    int max = m->cfg.lm.max_position_embeddings;
    int n_ctx = params->n_ctx > 0 ? params->n_ctx : max;
    if (params->n_ctx < 0 || n_ctx > max)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "n_ctx %d is outside 1..%d "
                             "(max_position_embeddings)", params->n_ctx, max);

    vl2_session *s = calloc(1, sizeof *s);
    if (!s)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory");
    s->m = m;
    const size_t V = (size_t)m->cfg.lm.vocab_size;
    if (params->compute < VL2_COMPUTE_F32 || params->compute > VL2_COMPUTE_BF16) {
        free(s);
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "unknown compute mode %d",
                             (int)params->compute);
    }
    if (params->kv_type < VL2_KV_F16 || params->kv_type > VL2_KV_F32)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "unknown KV cache type %d",
                             (int)params->kv_type);
    vl2_status st = vl2_kv_cache_init(&s->kv, m, n_ctx, params->kv_type, err);
    if (st != VL2_OK) {
        free(s);
        return st;
    }
    s->pool = vl2_pool_new(m->n_threads);
    if (s->pool)
        vl2_pool_set_compute(s->pool, params->compute);
    s->keys = malloc((size_t)n_ctx * sizeof *s->keys);
    s->logits = malloc(V * sizeof(float));
    s->embeds = malloc((size_t)PREFILL_CHUNK * (size_t)m->cfg.lm.hidden_size * sizeof(float));
    s->seen = calloc(V, 1);
    s->sampler.values = malloc(V * sizeof(float));
    s->sampler.index = malloc(V * sizeof(int));
    s->held = g_string_new(NULL);
    s->text = g_string_new(NULL);
    if (!s->pool || !s->keys || !s->logits || !s->embeds || !s->seen || !s->sampler.values ||
        !s->sampler.index) {
        vl2_session_free(s);
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory for a session");
    }
    *out = s;
    return VL2_OK;
}

vl2_status vl2_session_set_compute(vl2_session *s, vl2_compute compute, vl2_error *err)
{
    if (!s || !vl2_compute_name(compute))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "no session, or an unknown compute "
                             "mode %d", (int)compute);
    vl2_pool_set_compute(s->pool, compute);
    return VL2_OK;
}

static void clear_generation(vl2_session *s)
{
    if (s->stop)
        for (int i = 0; i < s->gen.n_stop_strings; i++)
            g_free(s->stop[i]);
    g_free(s->stop);
    s->stop = NULL;
    s->gen.n_stop_strings = 0;
    s->gen.stop_strings = NULL;
    g_free(s->bias);
    s->bias = NULL;
    s->gen.n_logit_bias = 0;
    s->gen.logit_bias = NULL;
}

void vl2_session_free(vl2_session *s)
{
    if (!s)
        return;
    clear_generation(s);
    vl2_kv_cache_free(&s->kv);
    vl2_pool_free(s->pool);
    free(s->keys);
    free(s->logits);
    free(s->embeds);
    free(s->seen);
    free(s->sampler.values);
    free(s->sampler.index);
    g_string_free(s->held, TRUE);
    g_string_free(s->text, TRUE);
    free(s);
}

void vl2_session_reset(vl2_session *s)
{
    if (!s)
        return;
    s->n_past = 0;
    s->have_logits = false;
    s->generating = false;
}

int vl2_session_n_past(const vl2_session *s)
{
    return s ? s->n_past : 0;
}

const float *vl2_session_logits(const vl2_session *s)
{
    return s && s->have_logits ? s->logits : NULL;
}

void vl2_session_get_timings(const vl2_session *s, vl2_timings *t)
{
    if (s)
        *t = s->timings;
    else
        memset(t, 0, sizeof *t);
}

/* What a cached position holds: a text token's id, or for an image position the image's tile
 * hash mixed with the offset inside its run, so that another image at the same place (whose
 * ids are all <image>) does not reuse the cache. */
static uint64_t position_key(const vl2_prompt *p, const int *image_tokens, int pos,
                             int *image_index)
{
    while (*image_index < p->n_images &&
           pos >= p->image_offset[*image_index] + image_tokens[*image_index])
        (*image_index)++;
    int i = *image_index;
    if (i < p->n_images && pos >= p->image_offset[i]) {
        uint64_t k = p->image_hash[i] ^
                     ((uint64_t)(pos - p->image_offset[i]) * 0x9E3779B97F4A7C15ull);
        return k | (1ull << 63);
    }
    return (uint64_t)(uint32_t)p->ids.data[pos];
}

/* Where the input embeddings of the positions being run come from: the prompt (text ids and
 * image features) or a single fed token. */
typedef struct {
    const vl2_model *m;
    const vl2_prompt *prompt;
    const int *image_tokens;     /* [n_images]: length of each image's run */
    float **image_features;      /* [n_images]: token features, NULL for images fully cached */
    int32_t fed;                 /* the token when prompt is NULL */
} embed_source;

static void embed_position(const embed_source *src, int pos, float *out)
{
    const vl2_prompt *p = src->prompt;
    const int D = src->m->cfg.lm.hidden_size;
    if (!p) {
        vl2_decoder_embed(src->m, src->fed, out);
        return;
    }
    for (int i = 0; i < p->n_images; i++) {
        int off = p->image_offset[i];
        if (pos >= off && pos < off + src->image_tokens[i]) {
            memcpy(out, src->image_features[i] + (size_t)(pos - off) * D,
                   (size_t)D * sizeof(float));
            return;
        }
    }
    vl2_decoder_embed(src->m, p->ids.data[pos], out);
}

typedef struct {
    vl2_progress_fn fn;
    void *user_data;
    int done, total;             /* units: an image tile, or a prefill chunk */
    vl2_prefill_progress *what;  /* the session's account of the units */
} progress;

static bool progress_report(const progress *pr)
{
    return !pr->fn || pr->fn((float)pr->done / (float)pr->total, pr->user_data);
}

static bool progress_step(void *user_data)
{
    progress *pr = user_data;
    pr->done++;
    return progress_report(pr);
}

static bool tile_done(void *user_data)
{
    progress *pr = user_data;
    pr->what->tiles_done++;
    return progress_step(pr);
}

/* Whether the mapped weights still hold what the model was loaded from (guard.c). When they do
 * not, the cache may hold values computed from the wrong bytes: it is dropped, and the
 * generation ends. */
static vl2_status check_weights(vl2_session *s, vl2_error *err)
{
    vl2_status st = vl2_weights_check(&s->m->weights, err);
    if (st != VL2_OK)
        vl2_session_reset(s);
    return st;
}

/* Runs positions [n_past, to) through the decoder in chunks; keys[0..] describe them in order.
 * The logits of the last position are kept. */
static vl2_status run_positions(vl2_session *s, const embed_source *src, const uint64_t *keys,
                                int to, progress *pr, vl2_error *err)
{
    const int D = s->m->cfg.lm.hidden_size, from = s->n_past;
    while (s->n_past < to) {
        int c = s->n_past, T = to - c < PREFILL_CHUNK ? to - c : PREFILL_CHUNK;
        for (int t = 0; t < T; t++)
            embed_position(src, c + t, s->embeds + (size_t)t * D);
        bool last = c + T == to;
        vl2_forward_out out = { last ? s->logits : NULL, NULL };
        vl2_status st = vl2_decoder_forward(s->m, s->pool, &s->kv, c, s->embeds, T, &out, err);
        if (st != VL2_OK)
            return st;
        memcpy(s->keys + c, keys + (c - from), (size_t)T * sizeof *keys);
        s->n_past = c + T;
        s->have_logits = last;
        if (pr)
            pr->what->tokens_done += T;
        if (pr && !progress_step(pr))
            return vl2_set_error(err, VL2_ERR_CANCELLED, "prefill was cancelled");
    }
    return VL2_OK;
}

static vl2_status check_generate_params(const vl2_generate_params *p, int n_vocab, vl2_error *err)
{
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "temperature must be >= 0");
    if (!(p->top_p > 0 && p->top_p <= 1))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "top_p must be in (0, 1]");
    if (p->top_k < 0)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "top_k must be >= 0");
    if (!(p->repetition_penalty > 0) || !isfinite(p->repetition_penalty))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "repetition_penalty must be > 0");
    if (p->max_new_tokens < 0)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "max_new_tokens must be >= 0");
    if (p->n_stop_strings < 0 || (p->n_stop_strings > 0 && !p->stop_strings))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "invalid stop string list");
    for (int i = 0; i < p->n_stop_strings; i++)
        if (!p->stop_strings[i] || !*p->stop_strings[i] ||
            !g_utf8_validate(p->stop_strings[i], -1, NULL))
            return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "stop string %d is empty or not "
                                 "UTF-8", i + 1);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "invalid logit bias list");
    for (int i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].id < 0 || p->logit_bias[i].id >= n_vocab ||
            isnan(p->logit_bias[i].bias))
            return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "logit bias %d: id %d is outside "
                                 "the vocabulary or the bias is NaN", i + 1,
                                 p->logit_bias[i].id);
    return VL2_OK;
}

vl2_status vl2_session_prefill(vl2_session *s, const vl2_prompt *prompt,
                               const vl2_generate_params *params, vl2_error *err)
{
    if (!s || !prompt)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "session or prompt is NULL");
    vl2_generate_params defaults = vl2_generate_default_params();
    if (!params)
        params = &defaults;
    vl2_status st = check_generate_params(params, s->m->cfg.lm.vocab_size, err);
    if (st != VL2_OK)
        return st;
    const int n = (int)prompt->ids.len;
    const int32_t *ids = prompt->ids.data;
    if (n == 0)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "the prompt is empty");
    if (n > s->kv.n_ctx)
        return vl2_set_error(err, VL2_ERR_CONTEXT_OVERFLOW, "the prompt has %d tokens but the "
                             "context holds %d; shorten the conversation", n, s->kv.n_ctx);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->m->cfg.lm.vocab_size)
            return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "prompt id %d at position %d is "
                                 "outside the vocabulary", ids[i], i);
    if (prompt->n_images > 0 && !s->m->vision.blocks)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "this model has no vision weights");
    st = check_weights(s, err);
    if (st != VL2_OK)
        return st;

    s->generating = false;
    s->have_logits = false;
    memset(&s->timings, 0, sizeof s->timings);
    const int n_img = prompt->n_images;
    uint64_t *keys = malloc((size_t)n * sizeof *keys);
    float **features = calloc((size_t)n_img + 1, sizeof *features);
    int *image_tokens = calloc((size_t)n_img + 1, sizeof *image_tokens);
    if (!keys || !features || !image_tokens) {
        free(keys);
        free(features);
        free(image_tokens);
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory");
    }
    for (int i = 0; i < n_img; i++)
        image_tokens[i] = vl2_image_token_count(&s->m->cfg, prompt->grid[i][0],
                                                prompt->grid[i][1]);
    int image_index = 0;
    for (int i = 0; i < n; i++)
        keys[i] = position_key(prompt, image_tokens, i, &image_index);

    /* Reuse the cached prefix; the last position always runs again for its logits. */
    int keep = 0;
    while (keep < s->n_past && keep < n - 1 && s->keys[keep] == keys[keep])
        keep++;
    s->n_past = keep;
    s->timings.n_reused_tokens = keep;
    s->timings.n_prompt_tokens = n - keep;

    /* Encode, tile by tile, the images not entirely inside the reused prefix. */
    vl2_prefill_progress *what = &s->prefill_progress;
    memset(what, 0, sizeof *what);
    what->n_tokens = n - keep;
    progress pr = { params->progress, params->progress_user_data, 0,
                    (n - keep + PREFILL_CHUNK - 1) / PREFILL_CHUNK, what };
    for (int i = 0; i < n_img; i++)
        if (prompt->image_offset[i] + image_tokens[i] > keep) {
            pr.total += 1 + prompt->grid[i][0] * prompt->grid[i][1];
            what->n_images++;
        }
    const int D = s->m->cfg.lm.hidden_size;
    const size_t tile_bytes = (size_t)prompt->tile_size * prompt->tile_size * 3;
    double t0 = now_seconds();
    for (int i = 0, first_tile = 0; i < n_img && st == VL2_OK; i++) {
        int tw = prompt->grid[i][0], th = prompt->grid[i][1];
        if (prompt->image_offset[i] + image_tokens[i] > keep) {
            /* said before the first tile: with a full-size model it takes seconds */
            what->image++;
            what->tiles_done = 0;
            what->n_tiles = 1 + tw * th;
            features[i] = malloc((size_t)image_tokens[i] * (size_t)D * sizeof(float));
            if (!features[i])
                st = vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory for image %d", i + 1);
            else if (!progress_report(&pr))
                st = vl2_set_error(err, VL2_ERR_CANCELLED, "image encoding was cancelled");
            else
                st = vl2_vision_encode_image(s->m, s->pool,
                                             prompt->tiles + (size_t)first_tile * tile_bytes, tw,
                                             th, features[i], tile_done, &pr, err);
            s->timings.n_tiles += 1 + tw * th;
        }
        first_tile += 1 + tw * th;
    }
    what->image = 0;
    s->timings.vision_seconds = now_seconds() - t0;

    if (st == VL2_OK) {
        embed_source src = { s->m, prompt, image_tokens, features, 0 };
        t0 = now_seconds();
        st = run_positions(s, &src, keys + keep, n, &pr, err);
        s->timings.prefill_seconds = now_seconds() - t0;
    }
    for (int i = 0; i < n_img; i++)
        free(features[i]);
    free(features);
    free(image_tokens);
    free(keys);
    /* a file cut short reads as zeros: nothing computed from them is kept */
    vl2_status changed = check_weights(s, err);
    if (changed != VL2_OK)
        return changed;
    if (st != VL2_OK)
        return st;

    clear_generation(s);
    s->gen = *params;
    if (params->n_logit_bias > 0) {
        s->bias = g_memdup2(params->logit_bias, (gsize)params->n_logit_bias * sizeof *s->bias);
        s->gen.logit_bias = s->bias;
    }
    if (params->n_stop_strings > 0) {
        s->stop = g_new0(char *, params->n_stop_strings);
        for (int i = 0; i < params->n_stop_strings; i++)
            s->stop[i] = g_strdup(params->stop_strings[i]);
        s->gen.stop_strings = (const char *const *)s->stop;
    }
    memset(s->seen, 0, (size_t)s->m->cfg.lm.vocab_size);
    for (int i = 0; i < n; i++)
        s->seen[ids[i]] = 1;
    vl2_rng_seed(&s->rng, params->seed == VL2_SEED_RANDOM
                              ? (uint64_t)g_get_real_time() ^ ((uint64_t)g_random_int() << 32)
                              : params->seed);
    memset(&s->utf8, 0, sizeof s->utf8);
    g_string_truncate(s->held, 0);
    g_string_truncate(s->text, 0);
    s->n_generated = 0;
    s->generating = true;
    return VL2_OK;
}

void vl2_session_get_prefill_progress(const vl2_session *s, vl2_prefill_progress *progress)
{
    if (!progress)
        return;
    if (!s) {
        memset(progress, 0, sizeof *progress);
        return;
    }
    *progress = s->prefill_progress;
}

vl2_status vl2_session_feed(vl2_session *s, int32_t id, vl2_error *err)
{
    if (!s)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "session is NULL");
    if (id < 0 || id >= s->m->cfg.lm.vocab_size)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "token id %d is outside the "
                             "vocabulary", id);
    if (s->n_past >= s->kv.n_ctx)
        return vl2_set_error(err, VL2_ERR_CONTEXT_OVERFLOW, "the context of %d tokens is full",
                             s->kv.n_ctx);
    double t0 = now_seconds();
    uint64_t key = (uint64_t)(uint32_t)id;
    embed_source src = { s->m, NULL, NULL, NULL, id };
    vl2_status st = run_positions(s, &src, &key, s->n_past + 1, NULL, err);
    s->seen[id] = 1;
    s->timings.decode_seconds += now_seconds() - t0;
    s->timings.n_decoded++;
    vl2_status changed = check_weights(s, err);
    return changed != VL2_OK ? changed : st;
}

/* ---------------------------------------------------------------------------------------------
 * The decode loop
 */

/* Longest suffix of `text` that is a proper prefix of some stop string: it must wait. */
static size_t held_suffix(const vl2_session *s, const GString *text)
{
    size_t best = 0;
    for (int i = 0; i < s->gen.n_stop_strings; i++) {
        size_t L = strlen(s->stop[i]);
        for (size_t k = L - 1; k > best; k--)
            if (k <= text->len && !memcmp(text->str + text->len - k, s->stop[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

/* Moves decoded text to the step's output, stopping at a stop string. Returns true when one
 * was found. With `all`, nothing is held back (the generation is ending). */
static bool release_text(vl2_session *s, bool all)
{
    size_t cut = SIZE_MAX;
    for (int i = 0; i < s->gen.n_stop_strings; i++) {
        const char *hit = g_strstr_len(s->held->str, (gssize)s->held->len, s->stop[i]);
        if (hit && (size_t)(hit - s->held->str) < cut)
            cut = (size_t)(hit - s->held->str);
    }
    if (cut != SIZE_MAX) {
        g_string_append_len(s->text, s->held->str, (gssize)cut);
        g_string_truncate(s->held, 0);
        return true;
    }
    size_t keep = all ? 0 : held_suffix(s, s->held);
    /* never split a character: the held suffix is a prefix of valid UTF-8 stop text */
    size_t emit = s->held->len - keep;
    g_string_append_len(s->text, s->held->str, (gssize)emit);
    g_string_erase(s->held, 0, (gssize)emit);
    return false;
}

vl2_status vl2_session_step(vl2_session *s, vl2_step *out, vl2_error *err)
{
    if (!s || !out)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "session or out is NULL");
    memset(out, 0, sizeof *out);
    g_string_truncate(s->text, 0);
    out->text = s->text->str;
    if (!s->generating || !s->have_logits)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "no generation in progress: call "
                             "vl2_session_prefill() first");

    const vl2_model *m = s->m;
    int32_t id = vl2_sample(s->logits, m->cfg.lm.vocab_size, &s->gen, s->seen, &s->rng,
                            &s->sampler);
    out->id = id;
    s->n_generated++;

    vl2_stop_reason stop = VL2_STOP_NONE;
    if (id == m->eos_id && s->gen.stop_at_eos) {
        stop = VL2_STOP_EOS;
    } else {
        size_t len = 0;
        const char *bytes = vl2_tokenizer_bytes(m->tok, id, &len);
        if (bytes)
            vl2_utf8_stream_push(&s->utf8, bytes, len, s->held);
        if (release_text(s, false))
            stop = VL2_STOP_STRING;
        else if (s->gen.max_new_tokens > 0 && s->n_generated >= s->gen.max_new_tokens)
            stop = VL2_STOP_LENGTH;
        else if (s->n_past >= s->kv.n_ctx)
            stop = VL2_STOP_CONTEXT;
    }
    if (stop == VL2_STOP_NONE) {
        vl2_status st = vl2_session_feed(s, id, err);
        if (st != VL2_OK) {
            s->generating = false;
            return st;
        }
    } else {
        if (stop != VL2_STOP_STRING) {
            vl2_utf8_stream_finish(&s->utf8, s->held);
            if (release_text(s, true))
                stop = VL2_STOP_STRING;
        }
        s->generating = false;
    }
    out->stop = stop;
    out->text = s->text->str;
    return VL2_OK;
}
