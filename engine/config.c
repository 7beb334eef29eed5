/* config.c - config.json of a DeepSeek-VL2 checkpoint -> vl2_config.
 *
 * The published configs are sparse: deepseek-vl2 (27.5B) omits num_hidden_layers, the head
 * counts and every MLA dimension, relying on the defaults of the official Python classes
 * (DeepseekV2Config, VisionEncoderConfig, MlpProjectorConfig in deepseek_vl2/models). Those
 * defaults are reproduced here key by key, so a config means exactly what it means to the
 * reference. Everything is validated before any tensor is touched: a value that would make
 * a shape nonsensical is an error naming the file and the key, not a crash later.
 */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vl2-private.h"

/* Upper bounds that no real checkpoint approaches; they keep a hostile config from asking
 * for absurd allocations before the weights are even looked at. */
#define MAX_DIM (1 << 18)
#define MAX_LAYERS 1024
#define MAX_VOCAB (1 << 24)
#define MAX_EXPERTS MAX_ROUTED_EXPERTS
#define MAX_POSITIONS (1 << 22)

typedef struct {
    const char *file;    /* for messages */
    const char *section; /* "language_config", ... or "" for the top level */
    vl2_error *err;
    vl2_status status;
} ctx;

static bool fail(ctx *c, vl2_status code, const char *key, const char *what)
{
    if (c->status == VL2_OK)
        c->status = vl2_set_error(c->err, code, "%s: %s%s%s %s", c->file, c->section,
                                  *c->section ? "." : "", key, what);
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Typed getters: absent or null keys take the default; present keys must have the right type.
 */

static JsonNode *member(JsonObject *o, const char *key)
{
    if (!o || !json_object_has_member(o, key))
        return NULL;
    JsonNode *n = json_object_get_member(o, key);
    return JSON_NODE_HOLDS_NULL(n) ? NULL : n;
}

static bool is_number(JsonNode *n)
{
    if (!JSON_NODE_HOLDS_VALUE(n))
        return false;
    GType t = json_node_get_value_type(n);
    return t == G_TYPE_INT64 || t == G_TYPE_DOUBLE;
}

static bool get_int(ctx *c, JsonObject *o, const char *key, int def, int lo, int hi, int *out)
{
    JsonNode *n = member(o, key);
    if (!n) {
        *out = def;
        return true;
    }
    if (!is_number(n))
        return fail(c, VL2_ERR_FORMAT, key, "must be an integer");
    double v = json_node_get_value_type(n) == G_TYPE_INT64 ? (double)json_node_get_int(n)
                                                           : json_node_get_double(n);
    if (v != floor(v))
        return fail(c, VL2_ERR_FORMAT, key, "must be an integer");
    if (v < lo || v > hi) {
        char what[96];
        snprintf(what, sizeof what, "is %.0f, outside %d..%d", v, lo, hi);
        return fail(c, VL2_ERR_FORMAT, key, what);
    }
    *out = (int)v;
    return true;
}

static bool get_double(ctx *c, JsonObject *o, const char *key, double def, double *out)
{
    JsonNode *n = member(o, key);
    if (!n) {
        *out = def;
        return true;
    }
    if (!is_number(n))
        return fail(c, VL2_ERR_FORMAT, key, "must be a number");
    *out = json_node_get_value_type(n) == G_TYPE_INT64 ? (double)json_node_get_int(n)
                                                       : json_node_get_double(n);
    if (!isfinite(*out))
        return fail(c, VL2_ERR_FORMAT, key, "must be finite");
    return true;
}

/* get_double() within [lo, hi] (above lo only, when lo_open): numbers outside make the forward
 * pass overflow to infinity or NaN. */
static bool get_double_in(ctx *c, JsonObject *o, const char *key, double def, double lo,
                          bool lo_open, double hi, double *out)
{
    if (!get_double(c, o, key, def, out))
        return false;
    if (*out < lo || (lo_open && *out == lo) || *out > hi) {
        char what[96];
        snprintf(what, sizeof what, "is %g, outside %s%g, %g]", *out, lo_open ? "(" : "[", lo,
                 hi);
        return fail(c, VL2_ERR_FORMAT, key, what);
    }
    return true;
}

static bool get_bool(ctx *c, JsonObject *o, const char *key, bool def, bool *out)
{
    JsonNode *n = member(o, key);
    if (!n) {
        *out = def;
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN)
        return fail(c, VL2_ERR_FORMAT, key, "must be true or false");
    *out = json_node_get_boolean(n);
    return true;
}

static bool get_string(ctx *c, JsonObject *o, const char *key, const char *def, const char **out)
{
    JsonNode *n = member(o, key);
    if (!n) {
        *out = def;
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
        return fail(c, VL2_ERR_FORMAT, key, "must be a string");
    *out = json_node_get_string(n);
    return true;
}

static JsonObject *get_object(ctx *c, JsonObject *o, const char *key)
{
    JsonNode *n = member(o, key);
    if (!n)
        return NULL;
    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        fail(c, VL2_ERR_FORMAT, key, "must be an object");
        return NULL;
    }
    return json_node_get_object(n);
}

/* ---------------------------------------------------------------------------------------------
 * language_config: DeepseekV2Config
 */

static bool parse_rope_scaling(ctx *c, JsonObject *o, vl2_lm_config *lm)
{
    JsonNode *n = member(o, "rope_scaling");
    lm->has_rope_scaling = false;
    if (!n)
        return true;
    if (!JSON_NODE_HOLDS_OBJECT(n))
        return fail(c, VL2_ERR_FORMAT, "rope_scaling", "must be an object or null");
    JsonObject *rs = json_node_get_object(n);
    const char *type = NULL;
    if (!get_string(c, rs, "type", NULL, &type))
        return false;
    if (!type)
        return fail(c, VL2_ERR_FORMAT, "rope_scaling.type", "is missing");
    vl2_rope_scaling *s = &lm->rope_scaling;
    if (!strcmp(type, "linear"))
        s->type = VL2_ROPE_LINEAR;
    else if (!strcmp(type, "dynamic"))
        s->type = VL2_ROPE_DYNAMIC;
    else if (!strcmp(type, "yarn"))
        s->type = VL2_ROPE_YARN;
    else
        return fail(c, VL2_ERR_UNSUPPORTED, "rope_scaling.type",
                    "is not linear, dynamic or yarn");
    /* "factor" is required by the reference (rope_scaling["factor"]); the yarn keys take the
     * defaults of DeepseekV2YarnRotaryEmbedding. */
    if (!member(rs, "factor"))
        return fail(c, VL2_ERR_FORMAT, "rope_scaling.factor", "is missing");
    c->section = "language_config.rope_scaling";
    if (!get_double_in(c, rs, "factor", 1.0, 0, true, 1e4, &s->factor) ||
        !get_int(c, rs, "original_max_position_embeddings", 4096, 1, MAX_POSITIONS,
                 &s->original_max_position_embeddings) ||
        !get_double_in(c, rs, "beta_fast", 32.0, -1e4, false, 1e4, &s->beta_fast) ||
        !get_double_in(c, rs, "beta_slow", 1.0, -1e4, false, 1e4, &s->beta_slow) ||
        !get_double_in(c, rs, "mscale", 1.0, -1e3, false, 1e3, &s->mscale) ||
        !get_double_in(c, rs, "mscale_all_dim", 0.0, -1e3, false, 1e3, &s->mscale_all_dim))
        return false;
    c->section = "language_config";
    lm->has_rope_scaling = true;
    return true;
}

static bool parse_language(ctx *c, JsonObject *o, vl2_lm_config *lm)
{
    c->section = "language_config";
    const char *topk = NULL, *scoring = NULL, *act = NULL;
    int n_kv = 0;
    bool kv_given = member(o, "num_key_value_heads") != NULL;

    if (!get_int(c, o, "vocab_size", 102400, 1, MAX_VOCAB, &lm->vocab_size) ||
        !get_int(c, o, "hidden_size", 4096, 1, MAX_DIM, &lm->hidden_size) ||
        !get_int(c, o, "intermediate_size", 11008, 1, MAX_DIM, &lm->intermediate_size) ||
        !get_int(c, o, "moe_intermediate_size", 1407, 1, MAX_DIM, &lm->moe_intermediate_size) ||
        !get_int(c, o, "num_hidden_layers", 30, 1, MAX_LAYERS, &lm->num_hidden_layers) ||
        !get_int(c, o, "num_attention_heads", 32, 1, 4096, &lm->num_attention_heads) ||
        !get_int(c, o, "num_key_value_heads", 32, 1, 4096, &n_kv) ||
        !get_int(c, o, "n_shared_experts", 0, 0, MAX_EXPERTS, &lm->n_shared_experts) ||
        !get_int(c, o, "n_routed_experts", 0, 0, MAX_EXPERTS, &lm->n_routed_experts) ||
        !get_int(c, o, "num_experts_per_tok", 0, 0, MAX_EXPERTS, &lm->num_experts_per_tok) ||
        !get_int(c, o, "moe_layer_freq", 1, 1, MAX_LAYERS, &lm->moe_layer_freq) ||
        !get_int(c, o, "first_k_dense_replace", 0, 0, MAX_LAYERS, &lm->first_k_dense_replace) ||
        !get_int(c, o, "n_group", 1, 1, MAX_EXPERTS, &lm->n_group) ||
        !get_int(c, o, "topk_group", 1, 1, MAX_EXPERTS, &lm->topk_group) ||
        !get_int(c, o, "max_position_embeddings", 2048, 1, MAX_POSITIONS,
                 &lm->max_position_embeddings) ||
        !get_bool(c, o, "use_mla", true, &lm->use_mla) ||
        !get_int(c, o, "kv_lora_rank", 512, 0, MAX_DIM, &lm->kv_lora_rank) ||
        !get_int(c, o, "q_lora_rank", 1536, 0, MAX_DIM, &lm->q_lora_rank) ||
        !get_int(c, o, "qk_rope_head_dim", 64, 0, MAX_DIM, &lm->qk_rope_head_dim) ||
        !get_int(c, o, "v_head_dim", 128, 0, MAX_DIM, &lm->v_head_dim) ||
        !get_int(c, o, "qk_nope_head_dim", 128, 0, MAX_DIM, &lm->qk_nope_head_dim) ||
        !get_string(c, o, "topk_method", "gready", &topk) ||
        !get_string(c, o, "scoring_func", "softmax", &scoring) ||
        !get_string(c, o, "hidden_act", "silu", &act) ||
        !get_bool(c, o, "norm_topk_prob", false, &lm->norm_topk_prob) ||
        !get_double_in(c, o, "routed_scaling_factor", 1.0, 0, true, 1e3,
                       &lm->routed_scaling_factor) ||
        !get_double_in(c, o, "rms_norm_eps", 1e-6, 0, false, 1, &lm->rms_norm_eps) ||
        !get_double_in(c, o, "rope_theta", 10000.0, 0, true, 1e9, &lm->rope_theta) ||
        !get_bool(c, o, "attention_bias", false, &lm->attention_bias) ||
        !get_bool(c, o, "tie_word_embeddings", false, &lm->tie_word_embeddings) ||
        !parse_rope_scaling(c, o, lm))
        return false;

    /* Explicit nulls: "q_lora_rank": null means a plain q_proj; a null num_key_value_heads
     * falls back to num_attention_heads (the reference's "backward compatibility"). */
    if (json_object_has_member(o, "q_lora_rank") && !member(o, "q_lora_rank"))
        lm->q_lora_rank = 0;
    if (!kv_given && json_object_has_member(o, "num_key_value_heads"))
        n_kv = lm->num_attention_heads;
    lm->num_key_value_heads = n_kv;

    int bos = 100000, eos = 100001;
    if (!get_int(c, o, "bos_token_id", 100000, 0, MAX_VOCAB, &bos) ||
        !get_int(c, o, "eos_token_id", 100001, 0, MAX_VOCAB, &eos))
        return false;
    lm->bos_token_id = bos;
    lm->eos_token_id = eos;

    /* The reference's default is the misspelt "gready", which none of MoEGate's branches
     * handles; it is read as greedy (see MODEL.md). */
    if (!strcmp(topk, "greedy") || !strcmp(topk, "gready"))
        lm->topk_method = VL2_TOPK_GREEDY;
    else if (!strcmp(topk, "group_limited_greedy"))
        lm->topk_method = VL2_TOPK_GROUP_LIMITED_GREEDY;
    else if (!strcmp(topk, "noaux_tc"))
        lm->topk_method = VL2_TOPK_NOAUX_TC;
    else
        return fail(c, VL2_ERR_UNSUPPORTED, "topk_method",
                    "is not greedy, group_limited_greedy or noaux_tc");
    if (!strcmp(scoring, "softmax"))
        lm->scoring_func = VL2_SCORING_SOFTMAX;
    else if (!strcmp(scoring, "sigmoid"))
        lm->scoring_func = VL2_SCORING_SIGMOID;
    else
        return fail(c, VL2_ERR_UNSUPPORTED, "scoring_func", "is not softmax or sigmoid");
    if (strcmp(act, "silu") != 0)
        return fail(c, VL2_ERR_UNSUPPORTED, "hidden_act", "is not silu");

    /* Shapes must make sense before any tensor is looked up. */
    if (lm->use_mla) {
        if (lm->kv_lora_rank < 1)
            return fail(c, VL2_ERR_FORMAT, "kv_lora_rank", "must be positive with use_mla");
        if (lm->qk_rope_head_dim < 2 || lm->qk_rope_head_dim % 2)
            return fail(c, VL2_ERR_FORMAT, "qk_rope_head_dim", "must be positive and even");
        if (lm->v_head_dim < 1)
            return fail(c, VL2_ERR_FORMAT, "v_head_dim", "must be positive with use_mla");
        lm->head_dim = lm->qk_nope_head_dim + lm->qk_rope_head_dim;
        if (lm->qk_rope_head_dim > MAX_HEAD_DIM)
            return fail(c, VL2_ERR_UNSUPPORTED, "qk_rope_head_dim", "exceeds 1024");
    } else {
        if (lm->hidden_size % lm->num_attention_heads)
            return fail(c, VL2_ERR_FORMAT, "hidden_size",
                        "is not a multiple of num_attention_heads");
        if (lm->num_attention_heads % lm->num_key_value_heads)
            return fail(c, VL2_ERR_FORMAT, "num_key_value_heads",
                        "does not divide num_attention_heads");
        lm->head_dim = lm->hidden_size / lm->num_attention_heads;
        if (lm->head_dim % 2)
            return fail(c, VL2_ERR_FORMAT, "hidden_size",
                        "gives an odd head dimension, which RoPE cannot rotate");
        if (lm->head_dim > MAX_HEAD_DIM)
            return fail(c, VL2_ERR_UNSUPPORTED, "hidden_size",
                        "gives a head dimension above 1024");
    }
    if (lm->n_routed_experts > 0) {
        if (lm->num_experts_per_tok < 1 || lm->num_experts_per_tok > lm->n_routed_experts)
            return fail(c, VL2_ERR_FORMAT, "num_experts_per_tok",
                        "must be between 1 and n_routed_experts");
        if (lm->topk_method != VL2_TOPK_GREEDY) {
            if (lm->n_routed_experts % lm->n_group)
                return fail(c, VL2_ERR_FORMAT, "n_group", "does not divide n_routed_experts");
            if (lm->topk_group > lm->n_group)
                return fail(c, VL2_ERR_FORMAT, "topk_group", "exceeds n_group");
            if (lm->topk_method == VL2_TOPK_NOAUX_TC && lm->n_routed_experts / lm->n_group < 2)
                return fail(c, VL2_ERR_FORMAT, "n_group",
                            "leaves fewer than 2 experts per group (noaux_tc sums the top 2)");
            if (lm->num_experts_per_tok > lm->topk_group * (lm->n_routed_experts / lm->n_group))
                return fail(c, VL2_ERR_FORMAT, "num_experts_per_tok",
                            "exceeds the experts of the selected groups");
        }
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * vision_config (VisionEncoderConfig) and projector_config (MlpProjectorConfig)
 */

static bool parse_vision(ctx *c, JsonObject *o, vl2_vision_config *v)
{
    c->section = "vision_config";
    const char *pool = NULL;
    if (!get_int(c, o, "image_size", 384, 1, 16384, &v->image_size) ||
        !get_int(c, o, "patch_size", 16, 1, 1024, &v->patch_size) ||
        !get_int(c, o, "width", 1024, 1, MAX_DIM, &v->width) ||
        !get_int(c, o, "layers", 24, 1, MAX_LAYERS, &v->layers) ||
        !get_int(c, o, "heads", 16, 1, 4096, &v->heads) ||
        !get_double(c, o, "mlp_ratio", 4.0, &v->mlp_ratio) ||
        !get_bool(c, o, "class_token", false, &v->class_token) ||
        !get_string(c, o, "global_pool", "map", &pool))
        return false;
    if (v->class_token)
        return fail(c, VL2_ERR_UNSUPPORTED, "class_token", "must be false");
    if (v->width % v->heads)
        return fail(c, VL2_ERR_FORMAT, "width", "is not a multiple of heads");
    /* 384 is not a multiple of 14: the patch conv (stride 14) sees 27 x 27 patches and the
     * last 6 rows and columns of pixels never reach the model. */
    if (v->image_size < v->patch_size)
        return fail(c, VL2_ERR_FORMAT, "image_size", "is smaller than patch_size");
    if (v->mlp_ratio <= 0 || v->mlp_ratio > 64)
        return fail(c, VL2_ERR_FORMAT, "mlp_ratio", "is out of range");
    /* timm's Block: hidden_features=int(dim * mlp_ratio), a truncation in double. */
    v->mlp_hidden = (int)(v->width * v->mlp_ratio);
    if (v->mlp_hidden < 1)
        return fail(c, VL2_ERR_FORMAT, "mlp_ratio", "gives an empty MLP");
    v->has_attn_pool = !strcmp(pool, "map");
    return true;
}

static bool parse_projector(ctx *c, JsonObject *o, vl2_projector_config *p)
{
    c->section = "projector_config";
    const char *type = NULL;
    bool token_pooling = false;
    if (!get_string(c, o, "projector_type", "downsample_mlp_gelu", &type) ||
        !get_int(c, o, "input_dim", 1152, 1, MAX_DIM, &p->input_dim) ||
        !get_int(c, o, "n_embed", 2048, 1, MAX_DIM, &p->n_embed) ||
        !get_int(c, o, "depth", 2, 1, 64, &p->depth) ||
        !get_int(c, o, "mlp_ratio", 1, 1, 64, &p->mlp_ratio) ||
        !get_int(c, o, "downsample_ratio", 2, 1, 16, &p->downsample_ratio) ||
        !get_bool(c, o, "token_pooling", false, &token_pooling))
        return false;
    if (strcmp(type, "downsample_mlp_gelu") != 0)
        return fail(c, VL2_ERR_UNSUPPORTED, "projector_type", "is not downsample_mlp_gelu");
    if (token_pooling)
        return fail(c, VL2_ERR_UNSUPPORTED, "token_pooling", "must be false");
    return true;
}

static bool parse_candidates(ctx *c, JsonObject *o, vl2_config *cfg)
{
    c->section = "";
    JsonNode *n = member(o, "candidate_resolutions");
    if (!n) {
        /* DeepseekVLV2Config's default: a single 384x384 view. */
        cfg->candidate_resolutions = g_malloc_n(1, sizeof(int[2]));
        cfg->candidate_resolutions[0][0] = cfg->candidate_resolutions[0][1] = 384;
        cfg->n_candidate_resolutions = 1;
        return true;
    }
    if (!JSON_NODE_HOLDS_ARRAY(n))
        return fail(c, VL2_ERR_FORMAT, "candidate_resolutions", "must be a list of [w, h]");
    JsonArray *a = json_node_get_array(n);
    guint len = json_array_get_length(a);
    if (len == 0 || len > 4096)
        return fail(c, VL2_ERR_FORMAT, "candidate_resolutions", "must hold 1 to 4096 entries");
    cfg->candidate_resolutions = g_malloc0_n(len, sizeof(int[2]));
    cfg->n_candidate_resolutions = (int)len;
    for (guint i = 0; i < len; i++) {
        JsonNode *e = json_array_get_element(a, i);
        if (!JSON_NODE_HOLDS_ARRAY(e) || json_array_get_length(json_node_get_array(e)) != 2)
            return fail(c, VL2_ERR_FORMAT, "candidate_resolutions", "must be a list of [w, h]");
        for (int k = 0; k < 2; k++) {
            JsonNode *v = json_array_get_element(json_node_get_array(e), k);
            if (!is_number(v) || json_node_get_value_type(v) != G_TYPE_INT64 ||
                json_node_get_int(v) < 1 || json_node_get_int(v) > 65536)
                return fail(c, VL2_ERR_FORMAT, "candidate_resolutions",
                            "must hold positive integers");
            cfg->candidate_resolutions[i][k] = (int)json_node_get_int(v);
        }
    }
    return true;
}

/* Each candidate is whole tiles, at most VL2_MAX_LOCAL_TILES of them, and its image tokens fit
 * the context: nothing the tiling rule can choose then needs more than that. */
static void check_candidates(ctx *c, const vl2_config *cfg)
{
    const int S = cfg->vision.image_size;
    for (int i = 0; i < cfg->n_candidate_resolutions; i++) {
        const int w = cfg->candidate_resolutions[i][0], h = cfg->candidate_resolutions[i][1];
        char what[160];
        if (w % S || h % S) {
            fail(c, VL2_ERR_FORMAT, "candidate_resolutions",
                 "holds a size that is not a multiple of the vision image_size");
            return;
        }
        const int64_t tiles = (int64_t)(w / S) * (h / S);
        if (tiles > VL2_MAX_LOCAL_TILES) {
            snprintf(what, sizeof what, "holds %d x %d: %lld tiles, more than the %d the "
                     "engine cuts an image into", w, h, (long long)tiles, VL2_MAX_LOCAL_TILES);
            fail(c, VL2_ERR_FORMAT, "candidate_resolutions", what);
            return;
        }
        if ((int64_t)w * h > VL2_MAX_IMAGE_PIXELS) {
            snprintf(what, sizeof what, "holds %d x %d, more than the %d pixels an image may "
                     "have", w, h, VL2_MAX_IMAGE_PIXELS);
            fail(c, VL2_ERR_FORMAT, "candidate_resolutions", what);
            return;
        }
        const int64_t tokens = vl2_image_token_count(cfg, w / S, h / S);
        if (tokens > cfg->lm.max_position_embeddings) {
            snprintf(what, sizeof what, "holds %d x %d, whose image takes %lld tokens, more than "
                     "language_config.max_position_embeddings (%d)", w, h, (long long)tokens,
                     cfg->lm.max_position_embeddings);
            fail(c, VL2_ERR_FORMAT, "candidate_resolutions", what);
            return;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Entry points
 */

vl2_status vl2_config_parse(const char *json, size_t len, const char *name, vl2_config *cfg,
                            vl2_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    ctx c = { name, "", err, VL2_OK };
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) gerr = NULL;
    if (!vl2_json_load_data(parser, json, len, NULL, &gerr))
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: not valid JSON: %s", name, gerr->message);
    JsonNode *root = json_parser_get_root(parser);
    if (!root)
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: the file is empty", name);
    if (!JSON_NODE_HOLDS_OBJECT(root))
        return vl2_set_error(err, VL2_ERR_FORMAT, "%s: the top level is not a JSON object", name);
    JsonObject *top = json_node_get_object(root);

    const char *model_type = NULL, *tile_tag = NULL, *view_pos = NULL;
    if (!get_string(&c, top, "model_type", NULL, &model_type) ||
        !get_string(&c, top, "tile_tag", "2D", &tile_tag) ||
        !get_string(&c, top, "global_view_pos", "head", &view_pos))
        goto out;
    if (!model_type || strcmp(model_type, "deepseek_vl_v2") != 0) {
        c.status = vl2_set_error(err, VL2_ERR_UNSUPPORTED,
                                 "%s: model_type is %s%s%s, not \"deepseek_vl_v2\"", name,
                                 model_type ? "\"" : "", model_type ? model_type : "missing",
                                 model_type ? "\"" : "");
        goto out;
    }
    if (strcmp(tile_tag, "2D") != 0) {
        fail(&c, VL2_ERR_UNSUPPORTED, "tile_tag", "is not \"2D\"");
        goto out;
    }
    if (strcmp(view_pos, "head") && strcmp(view_pos, "tail")) {
        fail(&c, VL2_ERR_FORMAT, "global_view_pos", "is not \"head\" or \"tail\"");
        goto out;
    }
    cfg->global_view_head = !strcmp(view_pos, "head");

    JsonObject *lang = get_object(&c, top, "language_config");
    JsonObject *vis = c.status == VL2_OK ? get_object(&c, top, "vision_config") : NULL;
    JsonObject *proj = c.status == VL2_OK ? get_object(&c, top, "projector_config") : NULL;
    if (c.status != VL2_OK)
        goto out;
    if (!lang) {
        fail(&c, VL2_ERR_FORMAT, "language_config", "is missing");
        goto out;
    }
    if (!parse_language(&c, lang, &cfg->lm) || !parse_vision(&c, vis, &cfg->vision) ||
        !parse_projector(&c, proj, &cfg->projector) || !parse_candidates(&c, top, cfg))
        goto out;

    c.section = "";
    if (cfg->projector.input_dim != cfg->vision.width)
        fail(&c, VL2_ERR_FORMAT, "projector_config.input_dim", "differs from vision width");
    else if (cfg->projector.n_embed != cfg->lm.hidden_size)
        fail(&c, VL2_ERR_FORMAT, "projector_config.n_embed",
             "differs from language_config.hidden_size");
    else
        check_candidates(&c, cfg);
out:
    if (c.status != VL2_OK)
        vl2_config_clear(cfg);
    return c.status;
}

vl2_status vl2_config_load(const char *path, vl2_config *cfg, vl2_error *err)
{
    char *data;
    size_t len;
    memset(cfg, 0, sizeof *cfg);
    vl2_status s = vl2_read_file(path, VL2_CONFIG_MAX_BYTES, &data, &len, err);
    if (s != VL2_OK)
        return s;
    s = vl2_config_parse(data, len, path, cfg, err);
    g_free(data);
    return s;
}

void vl2_config_clear(vl2_config *cfg)
{
    g_free(cfg->candidate_resolutions);
    memset(cfg, 0, sizeof *cfg);
}

bool vl2_config_layer_is_moe(const vl2_lm_config *lm, int il)
{
    return lm->n_routed_experts > 0 && il >= lm->first_k_dense_replace &&
           il % lm->moe_layer_freq == 0;
}
