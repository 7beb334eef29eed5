/* model.c - the public API of models: loading a checkpoint folder, its description, the
 * tokenizer. Sessions, prefill and decoding are in session.c.
 *
 * Loading reads config.json (config.c), tokenizer.json (tokenizer.c) and the safetensors files
 * (weights.c), then binds every tensor the config implies to a field of the model, checking
 * names, dtypes and shapes. The model is immutable afterwards.
 */
#include <cblas.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "decoder.h"
#include "vision.h"

/* ---------------------------------------------------------------------------------------------
 * Defaults
 */

vl2_model_params vl2_model_default_params(void)
{
    return (vl2_model_params){ .n_threads = 0 };
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 */

/* The special tokens the processor uses come from the tokenizer's own config (its bos_token,
 * eos_token, pad_token strings); config.json's ids are the fallback. */
static int32_t special_id(const vl2_tokenizer *tok, JsonObject *tc, const char *key, int32_t def)
{
    if (!tc || !json_object_has_member(tc, key))
        return def;
    JsonNode *n = json_object_get_member(tc, key);
    /* "bos_token": "<｜begin▁of▁sentence｜>" or {"content": "<｜begin▁of▁sentence｜>", ...};
     * anything else (a wrong type) is ignored like a token the tokenizer does not know */
    if (JSON_NODE_HOLDS_OBJECT(n))
        n = json_object_get_member(json_node_get_object(n), "content");
    const char *content = NULL;
    if (n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING)
        content = json_node_get_string(n);
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
        if (!vl2_json_load_file(parser, path, VL2_TOKENIZER_CONFIG_MAX_BYTES, &gerr))
            return vl2_set_error(err, vl2_input_status(gerr), "%s", gerr->message);
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

    double t0 = vl2_now_seconds();
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
    m->load_seconds = vl2_now_seconds() - t0;
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

