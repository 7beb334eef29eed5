/* session.c - sessions: the KV cache, prefill and the decode loop.
 *
 * A session owns the KV cache, the worker pool and the sampler. vl2_session_prefill() runs a
 * prompt through the decoder in chunks (bounded scratch memory, progress and cancellation
 * between chunks), reusing the cached prefix it shares with what the session computed before,
 * so a chat pays only for its new turn. vl2_session_step() samples, decodes the token's bytes
 * into complete UTF-8 text, holds back text that may be the start of a stop string, and feeds
 * the token back unless the generation ends.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decoder.h"
#include "gemm-bf16.h"
#include "vision.h"

/* Positions run through the decoder at once during prefill. */
#define PREFILL_CHUNK 256

/* ---------------------------------------------------------------------------------------------
 * Defaults
 */

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
 * Sessions
 */

struct vl2_session {
    const vl2_model *m;
    vl2_pool *pool;
    vl2_decoder_ws *ws;          /* the forward passes' buffers */
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

    /* conversations put aside (cache_budget), most recently used first */
    GQueue stored;               /* stored_cache* */
    size_t cache_budget, bytes_per_token;
};

/* A conversation's cache put aside: its KV cache and position keys. */
typedef struct {
    vl2_kv_cache kv;
    uint64_t *keys;
    int n_past;
} stored_cache;

/* A conversation is put aside when a prompt leaves it with at least this many positions
 * behind (fewer are cheaper to read again than to keep). */
#define SET_ASIDE_MIN 64

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

    if (params->compute < VL2_COMPUTE_F32 || params->compute > VL2_COMPUTE_BF16)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "unknown compute mode %d",
                             (int)params->compute);
    if (params->kv_type < VL2_KV_F16 || params->kv_type > VL2_KV_F32)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "unknown KV cache type %d",
                             (int)params->kv_type);

    vl2_session *s = calloc(1, sizeof *s);
    if (!s)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory");
    s->m = m;
    const size_t V = (size_t)m->cfg.lm.vocab_size;
    vl2_status st = vl2_kv_cache_init(&s->kv, m, n_ctx, params->kv_type, err);
    if (st != VL2_OK) {
        free(s);
        return st;
    }
    s->cache_budget = params->cache_budget;
    s->bytes_per_token = vl2_kv_cache_values_per_token(m) * s->kv.elem;
    s->pool = vl2_pool_new(m->n_threads);
    if (s->pool)
        vl2_pool_set_compute(s->pool, params->compute);
    s->keys = malloc((size_t)n_ctx * sizeof *s->keys);
    s->logits = malloc(V * sizeof(float));
    s->embeds = malloc((size_t)PREFILL_CHUNK * (size_t)m->cfg.lm.hidden_size * sizeof(float));
    s->seen = calloc(V, 1);
    s->sampler.values = malloc(V * sizeof(float));
    s->sampler.index = malloc(V * sizeof(int));
    s->sampler.select = malloc(V * sizeof(float));
    s->ws = vl2_decoder_ws_new();
    s->held = g_string_new(NULL);
    s->text = g_string_new(NULL);
    if (!s->pool || !s->keys || !s->logits || !s->embeds || !s->seen || !s->sampler.values ||
        !s->sampler.index || !s->sampler.select || !s->ws) {
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

static void stored_free(stored_cache *c)
{
    vl2_kv_cache_free(&c->kv);
    free(c->keys);
    free(c);
}

static void drop_stored(vl2_session *s)
{
    stored_cache *c;
    while ((c = g_queue_pop_head(&s->stored)))
        stored_free(c);
}

void vl2_session_free(vl2_session *s)
{
    if (!s)
        return;
    drop_stored(s);
    clear_generation(s);
    vl2_kv_cache_free(&s->kv);
    vl2_pool_free(s->pool);
    free(s->keys);
    free(s->logits);
    free(s->embeds);
    free(s->seen);
    free(s->sampler.values);
    free(s->sampler.index);
    free(s->sampler.select);
    vl2_decoder_ws_free(s->ws);
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
    drop_stored(s);
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

static bool logits_finite(const float *logits, int n)
{
    /* one sum is enough: a NaN or infinity anywhere makes it NaN or infinite */
    float acc = 0;
    for (int i = 0; i < n; i++)
        acc += logits[i] * 0.0f;
    return acc == 0;
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
        vl2_status st = vl2_decoder_forward(s->m, s->pool, s->ws, &s->kv, c, s->embeds, T, &out,
                                            err);
        if (st != VL2_OK)
            return st;
        if (last && !logits_finite(s->logits, s->m->cfg.lm.vocab_size)) {
            /* what the cache holds from this chunk is as broken: none of it is kept */
            vl2_session_reset(s);
            return vl2_set_error(err, VL2_ERR_FORMAT, "the model computed logits that are not "
                                 "numbers (NaN or infinite): its weights or config.json are "
                                 "broken");
        }
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

/* ---------------------------------------------------------------------------------------------
 * Conversations put aside
 */

static int common_prefix(const uint64_t *a, int na, const uint64_t *b, int nb)
{
    int n = 0;
    while (n < na && n < nb && a[n] == b[n])
        n++;
    return n;
}

/* Drops the least recently used conversations until the rest fit the budget. */
static void evict(vl2_session *s)
{
    size_t total = 0;
    for (GList *l = s->stored.head; l; l = l->next)
        total += (size_t)((stored_cache *)l->data)->n_past * s->bytes_per_token;
    while (total > s->cache_budget) {
        stored_cache *c = g_queue_pop_tail(&s->stored);
        total -= (size_t)c->n_past * s->bytes_per_token;
        stored_free(c);
    }
}

/* Before a prompt whose first n positions are `keys` runs (at most `limit` of them may come from
 * a cache): takes back the conversation put aside that starts most like it, if it does so
 * better than the one in the cache, or puts the one in the cache aside if the prompt leaves it.
 * Out of memory, it just keeps the cache it has. */
static void choose_cache(vl2_session *s, const uint64_t *keys, int limit)
{
    if (!s->cache_budget)
        return;
    const int current = common_prefix(s->keys, s->n_past, keys, limit);
    GList *best = NULL;
    int best_len = current;
    for (GList *l = s->stored.head; l; l = l->next) {
        stored_cache *c = l->data;
        int len = common_prefix(c->keys, c->n_past, keys, limit);
        if (len > best_len) {
            best = l;
            best_len = len;
        }
    }
    if (best) {
        stored_cache *c = best->data;
        g_queue_delete_link(&s->stored, best);
        stored_cache mine = { s->kv, s->keys, s->n_past };
        s->kv = c->kv;
        s->keys = c->keys;
        s->n_past = c->n_past;
        s->have_logits = false;
        if (mine.n_past > 0) {
            *c = mine;
            g_queue_push_head(&s->stored, c);
        } else {
            vl2_kv_cache_free(&mine.kv);
            free(mine.keys);
            free(c);
        }
    } else if (s->n_past - current >= SET_ASIDE_MIN) {
        stored_cache *c = calloc(1, sizeof *c);
        uint64_t *keys_new = malloc((size_t)s->kv.n_ctx * sizeof *keys_new);
        vl2_kv_cache kv_new;
        if (!c || !keys_new ||
            vl2_kv_cache_init(&kv_new, s->m, s->kv.n_ctx, s->kv.type, NULL) != VL2_OK) {
            free(c);
            free(keys_new);
            return;
        }
        vl2_kv_copy_prefix(&kv_new, &s->kv, current);
        memcpy(keys_new, s->keys, (size_t)current * sizeof *keys_new);
        *c = (stored_cache){ s->kv, s->keys, s->n_past };
        g_queue_push_head(&s->stored, c);
        s->kv = kv_new;
        s->keys = keys_new;
        s->n_past = current;
        s->have_logits = false;
    }
    evict(s);
}

/* ---------------------------------------------------------------------------------------------
 * Reading a prompt
 */

/* The positions of `prompt` before `upto` into the cache: the cached prefix reused (at most
 * `limit` positions of it), the images after it encoded, the rest run through the decoder. */
static vl2_status read_prompt(vl2_session *s, const vl2_prompt *prompt, int upto, int limit,
                              const vl2_generate_params *params, vl2_error *err)
{
    const int n_img = prompt->n_images;
    uint64_t *keys = malloc((size_t)upto * sizeof *keys);
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
    for (int i = 0; i < upto; i++)
        keys[i] = position_key(prompt, image_tokens, i, &image_index);

    choose_cache(s, keys, limit);
    const int keep = common_prefix(s->keys, s->n_past, keys, limit);
    s->n_past = keep;
    s->timings.n_reused_tokens = keep;
    s->timings.n_prompt_tokens = upto - keep;

    /* Encode, tile by tile, the images not entirely inside the reused prefix. */
    vl2_prefill_progress *what = &s->prefill_progress;
    memset(what, 0, sizeof *what);
    what->n_tokens = upto - keep;
    progress pr = { params->progress, params->progress_user_data, 0,
                    (upto - keep + PREFILL_CHUNK - 1) / PREFILL_CHUNK, what };
    for (int i = 0; i < n_img; i++)
        if (prompt->image_offset[i] < upto && prompt->image_offset[i] + image_tokens[i] > keep) {
            pr.total += 1 + prompt->grid[i][0] * prompt->grid[i][1];
            what->n_images++;
        }
    const int D = s->m->cfg.lm.hidden_size;
    const size_t tile_bytes = (size_t)prompt->tile_size * prompt->tile_size * 3;
    vl2_status st = VL2_OK;
    double t0 = vl2_now_seconds();
    for (int i = 0, first_tile = 0; i < n_img && st == VL2_OK; i++) {
        int tw = prompt->grid[i][0], th = prompt->grid[i][1];
        if (prompt->image_offset[i] < upto && prompt->image_offset[i] + image_tokens[i] > keep) {
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
    s->timings.vision_seconds = vl2_now_seconds() - t0;

    if (st == VL2_OK) {
        embed_source src = { s->m, prompt, image_tokens, features, 0 };
        t0 = vl2_now_seconds();
        st = run_positions(s, &src, keys + keep, upto, &pr, err);
        s->timings.prefill_seconds = vl2_now_seconds() - t0;
    }
    for (int i = 0; i < n_img; i++)
        free(features[i]);
    free(features);
    free(image_tokens);
    free(keys);
    /* a file cut short reads as zeros: nothing computed from them is kept */
    vl2_status changed = check_weights(s, err);
    return changed != VL2_OK ? changed : st;
}

/* What is checked of a prompt before it is read. */
static vl2_status check_prompt(vl2_session *s, const vl2_prompt *prompt, vl2_error *err)
{
    if (!s || !prompt)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "session or prompt is NULL");
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
    return check_weights(s, err);
}

/* The start of vl2_session_prefill() and vl2_session_prepare(): *params made the defaults if
 * NULL, the arguments checked, the generation in progress (if any) ended. */
static vl2_status begin_read(vl2_session *s, const vl2_prompt *prompt,
                             const vl2_generate_params **params, vl2_generate_params *defaults,
                             vl2_error *err)
{
    *defaults = vl2_generate_default_params();
    if (!*params)
        *params = defaults;
    vl2_status st = check_prompt(s, prompt, err);
    if (st == VL2_OK)
        st = check_generate_params(*params, s->m->cfg.lm.vocab_size, err);
    if (st != VL2_OK)
        return st;
    s->generating = false;
    s->have_logits = false;
    memset(&s->timings, 0, sizeof s->timings);
    return VL2_OK;
}

vl2_status vl2_session_prepare(vl2_session *s, const vl2_prompt *prompt,
                               const vl2_generate_params *params, vl2_error *err)
{
    vl2_generate_params defaults;
    vl2_status st = begin_read(s, prompt, &params, &defaults, err);
    if (st != VL2_OK)
        return st;
    const int last = prompt->n_images - 1;
    if (last < 0)
        return VL2_OK;
    const int upto = prompt->image_offset[last] +
                     vl2_image_token_count(&s->m->cfg, prompt->grid[last][0],
                                           prompt->grid[last][1]);
    return read_prompt(s, prompt, upto, upto, params, err);
}

vl2_status vl2_session_prefill(vl2_session *s, const vl2_prompt *prompt,
                               const vl2_generate_params *params, vl2_error *err)
{
    vl2_generate_params defaults;
    vl2_status st = begin_read(s, prompt, &params, &defaults, err);
    if (st != VL2_OK)
        return st;
    const int n = (int)prompt->ids.len;
    const int32_t *ids = prompt->ids.data;
    /* the last position always runs again, for its logits */
    st = read_prompt(s, prompt, n, n - 1, params, err);
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
    double t0 = vl2_now_seconds();
    uint64_t key = (uint64_t)(uint32_t)id;
    embed_source src = { s->m, NULL, NULL, NULL, id };
    vl2_status st = run_positions(s, &src, &key, s->n_past + 1, NULL, err);
    s->seen[id] = 1;
    s->timings.decode_seconds += vl2_now_seconds() - t0;
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
    if (id < 0) {
        /* the logits are finite (run_positions checks): the biases or the penalty made them not */
        s->generating = false;
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "no token can be chosen: with the "
                             "logit biases and repetition penalty given, a token is at +infinity "
                             "or every one at -infinity");
    }
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
