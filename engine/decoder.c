/* decoder.c - the DeepSeekMoE language model (DeepseekV2ForCausalLM in modeling_deepseek.py).
 *
 * Data flow for T new positions starting at n_past, hidden size D:
 *
 *   embeds [T, D] -> for each layer:
 *       x = RMSNorm(h)                          input_layernorm
 *       h += Attention(x)                       MHA (Tiny) or MLA (Small, full), KV cache
 *       x = RMSNorm(h)                          post_attention_layernorm
 *       h += MLP(x)  or  MoE(x) + shared(x)     layer 0 dense, the rest MoE
 *   -> RMSNorm(h[T-1]) -> lm_head -> logits [n_vocab]
 *
 * Attention. MHA is transformers' LlamaAttention: q/k/v projections, RoPE rotate-half over the
 * whole head, softmax(q k^T / sqrt(head_dim)). MLA follows DeepseekV2Attention's eager path,
 * which is already the "absorbed" form: the cache holds the normalised latent c (kv_lora_rank)
 * and one rotated rope key shared by all heads; a query's nope part is multiplied into kv_b's
 * key rows (q_abs = q_nope W_kb, kv_lora_rank wide), scores are q_pe.k_pe + q_abs.c, the
 * probability-weighted latent goes through kv_b's value rows. MLA rotates q_pe/k_pe after
 * DeepSeek's interleave permutation (even elements first, then odd); MHA does not permute.
 *
 * MoE. The router scores every expert in float32 (softmax, or sigmoid plus a correction bias
 * for choosing only), picks num_experts_per_tok of them (greedy, group-limited, or noaux_tc),
 * and the chosen experts' SwiGLU outputs are summed with their weights; shared experts are one
 * wider SwiGLU added on top. Tokens are grouped by expert so each active expert runs once.
 *
 * Attention works through the cache a block of positions at a time, read in the cache's own
 * type (f16 by default): a 3000-token prompt never materialises more than a block of query rows
 * of scores per task.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "decoder.h"

/* ---------------------------------------------------------------------------------------------
 * RoPE tables (DeepseekV2RotaryEmbedding and its linear / dynamic / yarn variants)
 */

static double yarn_get_mscale(double scale, double mscale)
{
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double yarn_correction_dim(double n_rot, int dim, double base, int max_pos)
{
    return (dim * log(max_pos / (n_rot * 2 * M_PI))) / (2 * log(base));
}

vl2_status vl2_decoder_init(vl2_model *m, vl2_error *err)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const vl2_rope_scaling *rs = &lm->rope_scaling;
    int dim = lm->use_mla ? lm->qk_rope_head_dim : lm->head_dim;
    int half = dim / 2;

    if (!lm->use_mla && lm->has_rope_scaling && rs->type == VL2_ROPE_YARN)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s/config.json: yarn rope_scaling is only "
                             "defined for MLA models (use_mla true)", m->dir);
    m->rope_dim = dim;
    m->rope_inv_freq = malloc((size_t)half * sizeof(float));
    if (!m->rope_inv_freq)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory for rope tables");
    m->rope_pos_div = 1.0f;
    m->rope_mscale = 1.0f;

    /* The reference computes these in float32: base ** (arange(0, dim, 2) / dim). */
    const float base = (float)lm->rope_theta;
    for (int i = 0; i < half; i++)
        m->rope_inv_freq[i] = 1.0f / powf(base, (float)(2 * i) / (float)dim);

    if (lm->has_rope_scaling && rs->type == VL2_ROPE_LINEAR) {
        m->rope_pos_div = (float)rs->factor;
    } else if (lm->has_rope_scaling && rs->type == VL2_ROPE_YARN) {
        double lo = floor(yarn_correction_dim(rs->beta_fast, dim, lm->rope_theta,
                                              rs->original_max_position_embeddings));
        double hi = ceil(yarn_correction_dim(rs->beta_slow, dim, lm->rope_theta,
                                             rs->original_max_position_embeddings));
        if (lo < 0)
            lo = 0;
        if (hi > dim - 1)
            hi = dim - 1;
        if (lo == hi)
            hi += 0.001; /* as yarn_linear_ramp_mask avoids the singularity */
        for (int i = 0; i < half; i++) {
            float extra = m->rope_inv_freq[i];
            float inter = 1.0f / ((float)rs->factor * powf(base, (float)(2 * i) / (float)dim));
            float ramp = (float)((i - lo) / (hi - lo));
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float mask = 1.0f - ramp;
            m->rope_inv_freq[i] = inter * (1 - mask) + extra * mask;
        }
        m->rope_mscale = (float)(yarn_get_mscale(rs->factor, rs->mscale) /
                                 yarn_get_mscale(rs->factor, rs->mscale_all_dim));
    }
    /* DynamicNTK differs from plain RoPE only beyond max_position_embeddings, which the KV cache
     * never exceeds. */

    if (lm->use_mla) {
        double scale = pow(lm->qk_nope_head_dim + lm->qk_rope_head_dim, -0.5);
        if (lm->has_rope_scaling && rs->mscale_all_dim != 0) {
            double ms = yarn_get_mscale(rs->factor, rs->mscale_all_dim);
            scale *= ms * ms;
        }
        m->attn_scale = (float)scale;
    } else {
        m->attn_scale = (float)pow(lm->head_dim, -0.5);
    }
    return VL2_OK;
}

/* cos/sin of every rotary frequency at one position, scaled by yarn's mscale. */
static void rope_angles(const vl2_model *m, int pos, float *cs, float *sn)
{
    float p = (float)pos / m->rope_pos_div;
    for (int i = 0; i < m->rope_dim / 2; i++) {
        float f = p * m->rope_inv_freq[i];
        cs[i] = cosf(f) * m->rope_mscale;
        sn[i] = sinf(f) * m->rope_mscale;
    }
}

/* x*cos + rotate_half(x)*sin. With `interleaved`, x is first permuted to (x0, x2, ..., x1, x3,
 * ...) like apply_rotary_pos_emb in modeling_deepseek.py; the result stays permuted, which is
 * harmless because queries and keys get the same permutation. */
static void rope_apply(float *x, int dim, const float *cs, const float *sn, bool interleaved)
{
    int half = dim / 2;
    float tmp[1024];
    float *buf = dim <= 1024 ? tmp : malloc((size_t)dim * sizeof(float));
    if (!buf)
        return;
    memcpy(buf, x, (size_t)dim * sizeof(float));
    for (int i = 0; i < half; i++) {
        float a = interleaved ? buf[2 * i] : buf[i];
        float b = interleaved ? buf[2 * i + 1] : buf[i + half];
        x[i] = a * cs[i] - b * sn[i];
        x[i + half] = b * cs[i] + a * sn[i];
    }
    if (buf != tmp)
        free(buf);
}

/* ---------------------------------------------------------------------------------------------
 * KV cache
 */

size_t vl2_kv_cache_values_per_token(const vl2_model *m)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    size_t per_layer = lm->use_mla
                           ? (size_t)(lm->kv_lora_rank + lm->qk_rope_head_dim)
                           : 2 * (size_t)lm->num_key_value_heads * (size_t)lm->head_dim;
    return per_layer * (size_t)lm->num_hidden_layers;
}

vl2_status vl2_kv_cache_init(vl2_kv_cache *kv, const vl2_model *m, int n_ctx, vl2_kv_type type,
                             vl2_error *err)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    memset(kv, 0, sizeof *kv);
    kv->n_ctx = n_ctx;
    kv->n_layers = lm->num_hidden_layers;
    kv->type = type;
    kv->elem = type == VL2_KV_F32 ? sizeof(float) : sizeof(uint16_t);
    if (lm->use_mla) {
        kv->k_dim = lm->kv_lora_rank;
        kv->v_dim = lm->qk_rope_head_dim;
        kv->seg = 0; /* one segment each: the whole latent, the whole rope key */
    } else {
        kv->k_dim = kv->v_dim = lm->num_key_value_heads * lm->head_dim;
        kv->seg = lm->head_dim;
    }
    kv->k = calloc((size_t)kv->n_layers, sizeof *kv->k);
    kv->v = calloc((size_t)kv->n_layers, sizeof *kv->v);
    if (!kv->k || !kv->v)
        goto oom;
    /* untouched pages cost nothing: the cache grows in memory as the context fills */
    for (int l = 0; l < kv->n_layers; l++) {
        kv->k[l] = malloc((size_t)n_ctx * (size_t)kv->k_dim * kv->elem);
        kv->v[l] = malloc((size_t)n_ctx * (size_t)kv->v_dim * kv->elem);
        if (!kv->k[l] || !kv->v[l])
            goto oom;
    }
    return VL2_OK;
oom:
    vl2_kv_cache_free(kv);
    return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory for a KV cache of %d tokens "
                         "(%.1f MB)", n_ctx,
                         (double)n_ctx * (double)vl2_kv_cache_values_per_token(m) *
                             (type == VL2_KV_F32 ? 4 : 2) / 1e6);
}

void vl2_kv_cache_free(vl2_kv_cache *kv)
{
    for (int l = 0; l < kv->n_layers; l++) {
        if (kv->k)
            free(kv->k[l]);
        if (kv->v)
            free(kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

size_t vl2_kv_row_stride(const vl2_kv_cache *kv, int which)
{
    return kv->seg ? (size_t)kv->seg : (size_t)(which ? kv->v_dim : kv->k_dim);
}

void *vl2_kv_at(const vl2_kv_cache *kv, int which, int layer, int pos, int col)
{
    size_t w = vl2_kv_row_stride(kv, which);
    size_t seg = (size_t)col / w, c = (size_t)col % w;
    char *base = which ? kv->v[layer] : kv->k[layer];
    return base + ((seg * (size_t)kv->n_ctx + (size_t)pos) * w + c) * kv->elem;
}

void vl2_kv_copy_prefix(vl2_kv_cache *dst, const vl2_kv_cache *src, int n)
{
    for (int which = 0; which < 2; which++) {
        const int dim = which ? src->v_dim : src->k_dim, w = (int)vl2_kv_row_stride(src, which);
        for (int l = 0; l < src->n_layers; l++)
            for (int col = 0; col < dim; col += w)
                memcpy(vl2_kv_at(dst, which, l, 0, col), vl2_kv_at(src, which, l, 0, col),
                       (size_t)n * (size_t)w * src->elem);
    }
}

static char *kv_at(const vl2_kv_cache *kv, int which, int layer, int pos, int col)
{
    return vl2_kv_at(kv, which, layer, pos, col);
}

void vl2_kv_store(vl2_kv_cache *kv, int which, int layer, int pos, int col, const float *src,
                  int n)
{
    size_t w = vl2_kv_row_stride(kv, which);
    while (n > 0) {
        /* up to the end of this segment */
        int len = (int)(w - (size_t)col % w);
        len = len < n ? len : n;
        void *dst = kv_at(kv, which, layer, pos, col);
        switch (kv->type) {
        case VL2_KV_F32:
            memcpy(dst, src, (size_t)len * sizeof(float));
            break;
        case VL2_KV_F16:
            vl2_f32_to_f16_row(src, dst, (size_t)len);
            break;
        case VL2_KV_BF16:
            vl2_f32_to_bf16_row(src, dst, (size_t)len);
            break;
        }
        src += len;
        col += len;
        n -= len;
    }
}

void vl2_decoder_embed(const vl2_model *m, int32_t id, float *out)
{
    vl2_tensor_row(&m->embed, id, out);
}

/* ---------------------------------------------------------------------------------------------
 * Attention
 */

/* Attention reads the cache a block of KV_CHUNK positions at a time for all the queries (and,
 * for MLA, all the heads) of a task, converting from the cache's type inside each dot product:
 * the block comes from memory once and from the CPU's cache for the task's other queries.
 * Tasks are (head or group of heads) x (block of queries), H x T / Q_BLOCK of them (10 x 64 for
 * Tiny's 1024-position prefill chunk), enough for any thread count. A task holds the scores of its
 * queries over the visible context: Q_BLOCK rows (MLA: MLA_Q_BLOCK x MLA_HEADS) of n_ctx floats
 * at most, never the whole T x n matrix. */
#define KV_CHUNK 64
#define Q_BLOCK 16
#define MLA_Q_BLOCK 8
#define MLA_HEADS 4

typedef struct {
    const vl2_model *m;
    vl2_pool *pool;              /* whose threads' scratch holds the scores */
    const vl2_layer *L;
    const vl2_kv_cache *kv;
    int layer, n_past, T;
    const float *q;              /* [T][ldq] */
    size_t ldq;
    float *out;                  /* [T][ldo] */
    size_t ldo;
    bool failed;
} attn_job;

/* What a task of a forward pass borrows from its thread's scratch (vl2_scratch_get), at most:
 * an attention block's scores over the whole context (and MLA's absorbed queries and attended
 * latents), or a weight row widened by vl2_matmul. Always this size, so that the buffers are
 * reserved once (vl2_pool_reserve) and decoding never grows them. */
static size_t task_scratch_bytes(const vl2_lm_config *lm, int n_ctx)
{
    size_t attn = lm->use_mla ? (size_t)MLA_Q_BLOCK * MLA_HEADS *
                                    ((size_t)n_ctx + 2 * (size_t)lm->kv_lora_rank)
                              : (size_t)Q_BLOCK * (size_t)n_ctx;
    int widest = MAX(lm->hidden_size, lm->intermediate_size);
    widest = MAX(widest, lm->moe_intermediate_size * MAX(lm->n_shared_experts, 1));
    widest = MAX(widest, lm->num_attention_heads * MAX(lm->head_dim, lm->v_head_dim));
    widest = MAX(widest, MAX(lm->q_lora_rank, lm->kv_lora_rank));
    return MAX(attn, (size_t)widest) * sizeof(float);
}

/* Task = (head, block of queries). The cache rows are read where they are, a chunk of
 * KV_CHUNK positions at a time for all the block's queries, so a chunk comes from memory once
 * and from the cache for the other queries. */
static void mha_task(void *ctx, int task, int thread)
{
    attn_job *j = ctx;
    const vl2_kv_cache *kv = j->kv;
    const vl2_lm_config *lm = &j->m->cfg.lm;
    const int H = lm->num_attention_heads, hd = lm->head_dim;
    const int group = H / lm->num_key_value_heads;
    const int h = task % H, t0 = (task / H) * Q_BLOCK;
    const int t1 = t0 + Q_BLOCK < j->T ? t0 + Q_BLOCK : j->T;
    const int kvo = (h / group) * hd;
    const int n_max = j->n_past + t1; /* keys the last query of the block sees */

    /* scores [nq][n_max] */
    vl2_scratch mem;
    float *s = vl2_scratch_get(j->pool, thread, task_scratch_bytes(lm, kv->n_ctx), &mem);
    if (!s) {
        j->failed = true;
        return;
    }
    for (int c0 = 0; c0 < n_max; c0 += KV_CHUNK) {
        int len = n_max - c0 < KV_CHUNK ? n_max - c0 : KV_CHUNK;
        const void *K = kv_at(kv, 0, j->layer, c0, kvo);
        for (int t = t0; t < t1; t++) {
            int n = j->n_past + t + 1 - c0; /* causal: keys up to and including this position */
            if (n > 0)
                vl2_dot_rows(j->q + (size_t)t * j->ldq + (size_t)h * hd, K, kv->type,
                             vl2_kv_row_stride(kv, 0), n < len ? n : len, hd,
                             s + (size_t)(t - t0) * n_max + c0, false);
        }
    }
    for (int t = t0; t < t1; t++) {
        float *st = s + (size_t)(t - t0) * n_max;
        int n = j->n_past + t + 1;
        for (int i = 0; i < n; i++)
            st[i] *= j->m->attn_scale;
        vl2_softmax(st, n);
        memset(j->out + (size_t)t * j->ldo + (size_t)h * hd, 0, (size_t)hd * sizeof(float));
    }
    for (int c0 = 0; c0 < n_max; c0 += KV_CHUNK) {
        int len = n_max - c0 < KV_CHUNK ? n_max - c0 : KV_CHUNK;
        const void *V = kv_at(kv, 1, j->layer, c0, kvo);
        for (int t = t0; t < t1; t++) {
            int n = j->n_past + t + 1 - c0;
            if (n > 0)
                vl2_attend_rows(s + (size_t)(t - t0) * n_max + c0, V, kv->type,
                                vl2_kv_row_stride(kv, 1), n < len ? n : len, hd,
                                j->out + (size_t)t * j->ldo + (size_t)h * hd);
        }
    }
    vl2_scratch_release(&mem);
}

/* Task = (group of MLA_HEADS heads, block of MLA_Q_BLOCK queries): a chunk of latents is read
 * from memory once for all of them. */
static void mla_task(void *ctx, int task, int thread)
{
    attn_job *j = ctx;
    const vl2_kv_cache *kv = j->kv;
    const vl2_lm_config *lm = &j->m->cfg.lm;
    const int H = lm->num_attention_heads, nope = lm->qk_nope_head_dim;
    const int rope = lm->qk_rope_head_dim, r = lm->kv_lora_rank, vd = lm->v_head_dim;
    const int n_groups = (H + MLA_HEADS - 1) / MLA_HEADS;
    const int h0 = (task % n_groups) * MLA_HEADS, h1 = h0 + MLA_HEADS < H ? h0 + MLA_HEADS : H;
    const int t0 = (task / n_groups) * MLA_Q_BLOCK;
    const int t1 = t0 + MLA_Q_BLOCK < j->T ? t0 + MLA_Q_BLOCK : j->T;
    const int nh = h1 - h0, nq = t1 - t0, nqh = nq * nh;
    const int n_max = j->n_past + t1;
    /* kv_b_proj.weight viewed [H, nope + v, r]: rows [0, nope) absorb into queries, rows
     * [nope, nope + v) map the attended latent to values. */
    const vl2_tensor *kvb = &j->L->kv_b;

    /* scores [nqh][n_max], then qa and lat */
    vl2_scratch mem;
    float *s = vl2_scratch_get(j->pool, thread, task_scratch_bytes(lm, kv->n_ctx), &mem);
    if (!s) {
        j->failed = true;
        return;
    }
    float *qa = s + (size_t)nqh * (size_t)n_max;   /* absorbed queries [nqh][r] */
    float *lat = qa + (size_t)nqh * (size_t)r;      /* attended latents [nqh][r] */
    memset(lat, 0, (size_t)nqh * (size_t)r * sizeof(float));
    for (int t = t0; t < t1; t++)
        for (int h = h0; h < h1; h++) {
            const float *qh = j->q + (size_t)t * j->ldq + (size_t)h * (nope + rope);
            float *a = qa + (size_t)((t - t0) * nh + (h - h0)) * r;
            memset(a, 0, (size_t)r * sizeof(float));
            for (int d = 0; d < nope; d++)
                vl2_axpy_w(qh[d], kvb->data, kvb->dtype,
                           ((size_t)h * (nope + vd) + (size_t)d) * (size_t)r, r, a);
        }
    for (int c0 = 0; c0 < n_max; c0 += KV_CHUNK) {
        int len = n_max - c0 < KV_CHUNK ? n_max - c0 : KV_CHUNK;
        const void *C = kv_at(kv, 0, j->layer, c0, 0), *PE = kv_at(kv, 1, j->layer, c0, 0);
        for (int k = 0; k < nqh; k++) {
            int t = t0 + k / nh, h = h0 + k % nh;
            int n = j->n_past + t + 1 - c0;
            if (n <= 0)
                continue;
            n = n < len ? n : len;
            float *st = s + (size_t)k * n_max + c0;
            vl2_dot_rows(qa + (size_t)k * r, C, kv->type, (size_t)r, n, r, st, false);
            vl2_dot_rows(j->q + (size_t)t * j->ldq + (size_t)h * (nope + rope) + nope, PE,
                         kv->type, (size_t)rope, n, rope, st, true);
        }
    }
    for (int k = 0; k < nqh; k++) {
        int n = j->n_past + t0 + k / nh + 1;
        float *st = s + (size_t)k * n_max;
        for (int i = 0; i < n; i++)
            st[i] *= j->m->attn_scale;
        vl2_softmax(st, n);
    }
    for (int c0 = 0; c0 < n_max; c0 += KV_CHUNK) {
        int len = n_max - c0 < KV_CHUNK ? n_max - c0 : KV_CHUNK;
        const void *C = kv_at(kv, 0, j->layer, c0, 0);
        for (int k = 0; k < nqh; k++) {
            int n = j->n_past + t0 + k / nh + 1 - c0;
            if (n > 0)
                vl2_attend_rows(s + (size_t)k * n_max + c0, C, kv->type, (size_t)r,
                                n < len ? n : len, r, lat + (size_t)k * r);
        }
    }
    for (int k = 0; k < nqh; k++) {
        int t = t0 + k / nh, h = h0 + k % nh;
        float *o = j->out + (size_t)t * j->ldo + (size_t)h * vd;
        for (int v = 0; v < vd; v++)
            o[v] = vl2_dot_w(kvb->data, kvb->dtype,
                             ((size_t)h * (nope + vd) + (size_t)(nope + v)) * (size_t)r,
                             lat + (size_t)k * r, r);
    }
    vl2_scratch_release(&mem);
}

/* Up to this many positions at once are "decoding": the products go through
 * vl2_matmul_multi, several in one dispatch, and each routed expert runs per token. */
#define DECODE_T 8
/* Decoding's chosen experts per position on the stack; more take the prefill path. */
#define MAX_EXPERTS_PER_TOK 16

static vl2_mm_item mm_item(const vl2_tensor *w, const vl2_tensor *bias, const float *x, int T,
                           float *y)
{
    vl2_matrix m = vl2_matrix_of(w);
    return (vl2_mm_item){ m, bias && bias->data ? bias : NULL, x, T, (size_t)m.n_in, y,
                          (size_t)m.n_out };
}

/* Buffers of a forward pass of up to cap_T positions; kept in a vl2_decoder_ws between passes. */
typedef struct {
    int cap_T;
    float *h, *x, *q, *k, *v, *ckv, *att, *tmp;
    float *gate, *up, *act, *ffn_out;
    float *router, *route_w, *slot_out, *gather;
    float *egate, *eup;          /* decoding: [DECODE_T * K][moe_inter] of the chosen experts */
    int *route_idx, *expert_tokens, *expert_count, *expert_fill, *expert_order;
} scratch;

struct vl2_decoder_ws {
    scratch s;
};

static void scratch_free(scratch *s)
{
    float **fs[] = { &s->h, &s->x, &s->q, &s->k, &s->v, &s->ckv, &s->att, &s->tmp, &s->gate,
                     &s->up, &s->act, &s->ffn_out, &s->router, &s->route_w, &s->slot_out,
                     &s->gather, &s->egate, &s->eup };
    for (size_t i = 0; i < G_N_ELEMENTS(fs); i++)
        free(*fs[i]);
    int **is[] = { &s->route_idx, &s->expert_tokens, &s->expert_count, &s->expert_fill,
                   &s->expert_order };
    for (size_t i = 0; i < G_N_ELEMENTS(is); i++)
        free(*is[i]);
    memset(s, 0, sizeof *s);
}

/* Makes s hold a pass of T positions: kept as it is when it already does (decoding reuses
 * prefill's buffers), otherwise allocated anew for T. */
static bool scratch_reserve(scratch *s, const vl2_lm_config *lm, int T)
{
    if (s->cap_T >= T)
        return true;
    scratch_free(s);
    const size_t D = (size_t)lm->hidden_size, H = (size_t)lm->num_attention_heads;
    size_t qdim, kdim = 0, odim;
    if (lm->use_mla) {
        qdim = H * (size_t)(lm->qk_nope_head_dim + lm->qk_rope_head_dim);
        odim = H * (size_t)lm->v_head_dim;
    } else {
        qdim = H * (size_t)lm->head_dim;
        kdim = (size_t)lm->num_key_value_heads * (size_t)lm->head_dim;
        odim = qdim;
    }
    size_t inter = (size_t)lm->intermediate_size;
    size_t moe_inter = (size_t)lm->moe_intermediate_size * (size_t)(lm->n_shared_experts > 1
                                                                         ? lm->n_shared_experts
                                                                         : 1);
    if (moe_inter > inter)
        inter = moe_inter;
    const size_t E = (size_t)lm->n_routed_experts, K = (size_t)lm->num_experts_per_tok;
    const size_t t = (size_t)T;
    size_t lora = (size_t)(lm->q_lora_rank > 0 ? lm->q_lora_rank : 0);
    size_t ckv = lm->use_mla ? (size_t)(lm->kv_lora_rank + lm->qk_rope_head_dim) : 0;

    s->h = malloc(t * D * sizeof(float));
    s->x = malloc(t * D * sizeof(float));
    s->q = malloc(t * qdim * sizeof(float));
    s->att = malloc(t * odim * sizeof(float));
    s->ffn_out = malloc(t * D * sizeof(float));
    s->gate = malloc(t * inter * sizeof(float));
    s->up = malloc(t * inter * sizeof(float));
    bool ok = s->h && s->x && s->q && s->att && s->ffn_out && s->gate && s->up;
    if (kdim) {
        s->k = malloc(t * kdim * sizeof(float));
        s->v = malloc(t * kdim * sizeof(float));
        ok = ok && s->k && s->v;
    }
    if (ckv) {
        s->ckv = malloc(t * ckv * sizeof(float));
        ok = ok && s->ckv;
    }
    if (lora) {
        s->tmp = malloc(t * lora * sizeof(float));
        ok = ok && s->tmp;
    }
    if (E) {
        const size_t td = t < DECODE_T ? t : DECODE_T;
        s->router = malloc(t * E * sizeof(float));
        s->route_w = malloc(t * K * sizeof(float));
        s->slot_out = malloc(t * K * D * sizeof(float));
        s->gather = malloc(t * D * sizeof(float));
        s->route_idx = malloc(t * K * sizeof(int));
        s->expert_tokens = malloc(t * K * sizeof(int));
        s->expert_count = malloc((E + 1) * sizeof(int));
        s->expert_fill = malloc(E * sizeof(int));
        s->expert_order = malloc(E * sizeof(int));
        s->egate = malloc(td * K * (size_t)lm->moe_intermediate_size * sizeof(float));
        s->eup = malloc(td * K * (size_t)lm->moe_intermediate_size * sizeof(float));
        ok = ok && s->router && s->route_w && s->slot_out && s->gather && s->route_idx &&
             s->expert_tokens && s->expert_count && s->expert_fill && s->expert_order &&
             s->egate && s->eup;
    }
    if (!ok) {
        scratch_free(s);
        return false;
    }
    s->cap_T = T;
    return true;
}

vl2_decoder_ws *vl2_decoder_ws_new(void)
{
    return calloc(1, sizeof(vl2_decoder_ws));
}

void vl2_decoder_ws_free(vl2_decoder_ws *ws)
{
    if (!ws)
        return;
    scratch_free(&ws->s);
    free(ws);
}

/* Row-wise steps of the forward pass on the pool (vl2_pool_rows). */
typedef struct {
    const float *h;
    float *x;
    const vl2_tensor *w;
    int D;
    float eps;
} norm_rows_job;

static void norm_rows(void *ctx, int r0, int r1)
{
    norm_rows_job *j = ctx;
    for (int t = r0; t < r1; t++)
        vl2_rmsnorm(j->h + (size_t)t * j->D, j->w, j->D, j->eps, j->x + (size_t)t * j->D);
}

/* x = RMSNorm(h) row by row */
static void rmsnorm_rows(vl2_pool *pool, const float *h, const vl2_tensor *w, int T, int D,
                         float eps, float *x)
{
    norm_rows_job j = { h, x, w, D, eps };
    vl2_pool_rows(pool, T, norm_rows, &j);
}

typedef struct {
    float *h;
    const float *add;
    int D;
} add_rows_job;

static void add_rows(void *ctx, int r0, int r1)
{
    add_rows_job *j = ctx;
    for (size_t i = (size_t)r0 * j->D; i < (size_t)r1 * j->D; i++)
        j->h[i] += j->add[i];
}

/* h += add, T rows of D */
static void residual_rows(vl2_pool *pool, float *h, const float *add, int T, int D)
{
    add_rows_job j = { h, add, D };
    vl2_pool_rows(pool, T, add_rows, &j);
}

static bool attention(const vl2_model *m, vl2_pool *pool, vl2_kv_cache *kv, int il, int n_past,
                      int T, scratch *s)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const vl2_layer *L = &m->layers[il];
    const int H = lm->num_attention_heads, D = lm->hidden_size;
    float cs[512], sn[512];

    attn_job j = { m, pool, L, kv, il, n_past, T, s->q, 0, s->att, 0, false };
    if (!lm->use_mla) {
        const int hd = lm->head_dim, kd = kv->k_dim;
        vl2_mm_item qkv[] = { mm_item(&L->wq, &L->bq, s->x, T, s->q),
                              mm_item(&L->wk, &L->bk, s->x, T, s->k),
                              mm_item(&L->wv, &L->bv, s->x, T, s->v) };
        vl2_matmul_multi(pool, qkv, 3);
        for (int t = 0; t < T; t++) {
            rope_angles(m, n_past + t, cs, sn);
            for (int h = 0; h < H; h++)
                rope_apply(s->q + (size_t)t * H * hd + (size_t)h * hd, hd, cs, sn, false);
            for (int h = 0; h < lm->num_key_value_heads; h++)
                rope_apply(s->k + (size_t)t * kd + (size_t)h * hd, hd, cs, sn, false);
            vl2_kv_store(kv, 0, il, n_past + t, 0, s->k + (size_t)t * kd, kd);
            vl2_kv_store(kv, 1, il, n_past + t, 0, s->v + (size_t)t * kd, kd);
        }
        j.ldq = (size_t)H * hd;
        j.ldo = (size_t)H * hd;
        vl2_pool_run(pool, H * ((T + Q_BLOCK - 1) / Q_BLOCK), mha_task, &j);
    } else {
        const int nope = lm->qk_nope_head_dim, rope = lm->qk_rope_head_dim;
        const int r = lm->kv_lora_rank, qhd = nope + rope;
        /* the query's first product and the latent's read the same x: one dispatch */
        vl2_mm_item first[] = {
            lm->q_lora_rank == 0 ? mm_item(&L->wq, NULL, s->x, T, s->q)
                                 : mm_item(&L->q_a, &L->q_a_b, s->x, T, s->tmp),
            mm_item(&L->kv_a, &L->kv_a_b, s->x, T, s->ckv),
        };
        vl2_matmul_multi(pool, first, 2);
        if (lm->q_lora_rank > 0) {
            const int qr = lm->q_lora_rank;
            /* q_a_layernorm and kv_a_layernorm are built with the RMSNorm default eps (1e-6),
             * not config.rms_norm_eps. */
            for (int t = 0; t < T; t++)
                vl2_rmsnorm(s->tmp + (size_t)t * qr, &L->q_a_norm, qr, 1e-6f,
                            s->tmp + (size_t)t * qr);
            vl2_linear(pool, &L->q_b, NULL, s->tmp, T, s->q);
        }
        for (int t = 0; t < T; t++) {
            float *c = s->ckv + (size_t)t * (r + rope);
            rope_angles(m, n_past + t, cs, sn);
            for (int h = 0; h < H; h++)
                rope_apply(s->q + (size_t)t * H * qhd + (size_t)h * qhd + nope, rope, cs, sn,
                           true);
            rope_apply(c + r, rope, cs, sn, true);
            vl2_rmsnorm(c, &L->kv_a_norm, r, 1e-6f, c);
            vl2_kv_store(kv, 0, il, n_past + t, 0, c, r);
            vl2_kv_store(kv, 1, il, n_past + t, 0, c + r, rope);
        }
        j.ldq = (size_t)H * qhd;
        j.ldo = (size_t)H * lm->v_head_dim;
        vl2_pool_run(pool, ((H + MLA_HEADS - 1) / MLA_HEADS) * ((T + MLA_Q_BLOCK - 1) / MLA_Q_BLOCK),
                     mla_task, &j);
    }
    if (j.failed)
        return false;
    /* o_proj, then the residual */
    vl2_linear(pool, &L->wo, L->bo.data ? &L->bo : NULL, s->att, T, s->ffn_out);
    residual_rows(pool, s->h, s->ffn_out, T, D);
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Feed-forward: dense SwiGLU and the MoE
 */

static void swiglu_ffn(vl2_pool *pool, const vl2_ffn *f, const float *x, int T, scratch *s,
                       float *out)
{
    const int inter = (int)f->gate.shape[0];
    vl2_mm_item gu[] = { mm_item(&f->gate, NULL, x, T, s->gate), mm_item(&f->up, NULL, x, T, s->up) };
    vl2_matmul_multi(pool, gu, 2);
    vl2_swiglu(s->gate, s->up, T * inter, s->gate);
    vl2_linear(pool, &f->down, NULL, s->gate, T, out);
}

/* Index of the largest of n values not yet taken; ties go to the lower index. */
static int argmax_free(const float *v, int n, const bool *taken)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best]))
            best = i;
    return best;
}

void vl2_decoder_route(const vl2_lm_config *lm, const vl2_tensor *bias, float *scores, int *idx,
                       float *w)
{
    const int E = lm->n_routed_experts, K = lm->num_experts_per_tok;
    bool taken[MAX_ROUTED_EXPERTS];
    float choice[MAX_ROUTED_EXPERTS];

    if (lm->scoring_func == VL2_SCORING_SOFTMAX)
        vl2_softmax(scores, E);
    else
        for (int e = 0; e < E; e++)
            scores[e] = vl2_sigmoid(scores[e]);

    /* What experts are chosen by: the scores, plus the correction bias for noaux_tc. */
    for (int e = 0; e < E; e++)
        choice[e] = scores[e];
    if (lm->topk_method == VL2_TOPK_NOAUX_TC)
        for (int e = 0; e < E; e++) {
            float b;
            vl2_to_f32(bias->data, bias->dtype, (size_t)e, 1, &b);
            choice[e] += b;
        }

    if (lm->topk_method != VL2_TOPK_GREEDY && lm->n_group > 1) {
        /* Group score: the best expert (group_limited_greedy) or the sum of the best two
         * (noaux_tc). Experts outside the topk_group best groups are set to 0.0, not -inf,
         * exactly as the reference's masked_fill does; they can still win against negative
         * scores. */
        const int G = lm->n_group, per = E / G;
        float gs[MAX_ROUTED_EXPERTS];
        bool gtaken[MAX_ROUTED_EXPERTS] = { false };
        for (int g = 0; g < G; g++) {
            const float *c = choice + g * per;
            if (lm->topk_method == VL2_TOPK_GROUP_LIMITED_GREEDY) {
                float mx = c[0];
                for (int i = 1; i < per; i++)
                    mx = c[i] > mx ? c[i] : mx;
                gs[g] = mx;
            } else {
                float a = -INFINITY, b = -INFINITY;
                for (int i = 0; i < per; i++) {
                    if (c[i] > a) {
                        b = a;
                        a = c[i];
                    } else if (c[i] > b) {
                        b = c[i];
                    }
                }
                gs[g] = a + b;
            }
        }
        for (int k = 0; k < lm->topk_group; k++)
            gtaken[argmax_free(gs, G, gtaken)] = true;
        for (int g = 0; g < G; g++)
            if (!gtaken[g])
                for (int i = 0; i < per; i++)
                    choice[g * per + i] = 0.0f;
    }

    memset(taken, 0, (size_t)E * sizeof(bool));
    float sum = 0;
    for (int k = 0; k < K; k++) {
        int e = argmax_free(choice, E, taken);
        taken[e] = true;
        idx[k] = e;
        /* noaux_tc weighs by the unbiased score; the others by the (masked) choice score,
         * which equals the score for every expert that can be chosen. */
        w[k] = lm->topk_method == VL2_TOPK_NOAUX_TC ? scores[e] : choice[e];
        sum += w[k];
    }
    float scale = (float)lm->routed_scaling_factor;
    if (K > 1 && lm->norm_topk_prob) {
        float denom = sum + 1e-20f;
        for (int k = 0; k < K; k++)
            w[k] = w[k] / denom * scale;
    } else {
        for (int k = 0; k < K; k++)
            w[k] *= scale;
    }
}

/* A few positions: every chosen expert of every position, and the shared experts, run their
 * gate and up products in one dispatch and their down products in a second. */
static void moe_decode(const vl2_model *m, vl2_pool *pool, const vl2_layer *L, int T, scratch *s)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const int K = lm->num_experts_per_tok, D = lm->hidden_size, I = lm->moe_intermediate_size;
    const bool shared = lm->n_shared_experts > 0;
    const int si = shared ? (int)L->shared.gate.shape[0] : 0;
    vl2_mm_item items[2 * DECODE_T * MAX_EXPERTS_PER_TOK + 2];
    int n = 0;

    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            const vl2_ffn *e = &L->experts[s->route_idx[t * K + k]];
            float *g = s->egate + (size_t)(t * K + k) * I, *u = s->eup + (size_t)(t * K + k) * I;
            items[n++] = mm_item(&e->gate, NULL, s->x + (size_t)t * D, 1, g);
            items[n++] = mm_item(&e->up, NULL, s->x + (size_t)t * D, 1, u);
        }
    if (shared) {
        items[n++] = mm_item(&L->shared.gate, NULL, s->x, T, s->gate);
        items[n++] = mm_item(&L->shared.up, NULL, s->x, T, s->up);
    }
    vl2_matmul_multi(pool, items, n);

    vl2_swiglu(s->egate, s->eup, T * K * I, s->egate);
    if (shared)
        vl2_swiglu(s->gate, s->up, T * si, s->gate);
    n = 0;
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            const vl2_ffn *e = &L->experts[s->route_idx[t * K + k]];
            items[n++] = mm_item(&e->down, NULL, s->egate + (size_t)(t * K + k) * I, 1,
                                 s->slot_out + ((size_t)t * K + k) * D);
        }
    if (shared)
        items[n++] = mm_item(&L->shared.down, NULL, s->gate, T, s->ffn_out);
    vl2_matmul_multi(pool, items, n);

    /* y = sum_k w_k expert_k(x), then + shared(x), then the residual: the reference's order */
    for (int t = 0; t < T; t++) {
        float *yt = s->gather + (size_t)t * D;
        memset(yt, 0, (size_t)D * sizeof(float));
        for (int k = 0; k < K; k++)
            vl2_axpy(s->route_w[t * K + k], s->slot_out + ((size_t)t * K + k) * D, D, yt);
        if (shared)
            for (int i = 0; i < D; i++)
                yt[i] += s->ffn_out[(size_t)t * D + i];
        for (int i = 0; i < D; i++)
            s->h[(size_t)t * D + i] += yt[i];
    }
}

/* Prefill's routed experts: each task runs one expert over all of its tokens on one thread
 * (gather, gate and up, SwiGLU, down, scatter), so its sgemm calls see the whole weight
 * matrices and pack the tokens once each; the pool balances experts of uneven sizes. */
typedef struct {
    const vl2_layer *L;
    const float *x;              /* [T][D] */
    const int *count;            /* tokens of expert e: slots[count[e] .. count[e + 1]) */
    const int *slots;            /* token * K + k */
    const int *order;            /* task -> expert */
    float *slot_out;             /* [T * K][D] */
    int K, D;
    vl2_compute compute;         /* the pool's */
    atomic_bool failed;
} expert_job;

static void expert_task(void *ctx, int task, int thread)
{
    expert_job *j = ctx;
    const int e = j->order[task], D = j->D;
    const int n = j->count[e + 1] - j->count[e];
    const int *slots = j->slots + j->count[e];
    const vl2_ffn *f = &j->L->experts[e];
    const int I = (int)f->gate.shape[0];
    if (n <= 0)
        return;
    float *xin = malloc(((size_t)n * D * 2 + (size_t)n * I * 2) * sizeof(float));
    if (!xin) {
        atomic_store(&j->failed, true);
        return;
    }
    float *out = xin + (size_t)n * D, *g = out + (size_t)n * D, *u = g + (size_t)n * I;
    for (int i = 0; i < n; i++)
        memcpy(xin + (size_t)i * D, j->x + (size_t)(slots[i] / j->K) * D,
               (size_t)D * sizeof(float));
    vl2_linear_as(NULL, j->compute, &f->gate, NULL, xin, n, g);
    vl2_linear_as(NULL, j->compute, &f->up, NULL, xin, n, u);
    vl2_swiglu(g, u, n * I, g);
    vl2_linear_as(NULL, j->compute, &f->down, NULL, g, n, out);
    for (int i = 0; i < n; i++)
        memcpy(j->slot_out + (size_t)slots[i] * D, out + (size_t)i * D,
               (size_t)D * sizeof(float));
    free(xin);
}

static gint by_tokens_desc(gconstpointer a, gconstpointer b, gpointer count_p)
{
    const int *count = count_p;
    int ea = *(const int *)a, eb = *(const int *)b;
    int na = count[ea + 1] - count[ea], nb = count[eb + 1] - count[eb];
    return na != nb ? (na < nb ? 1 : -1) : (ea > eb) - (ea < eb);
}

/* y = sum_k w_k expert_k(x), then + shared(x), then the residual: the reference's order, token
 * by token on the pool. */
typedef struct {
    scratch *s;
    int K, D;
    bool shared;
} combine_job;

static void combine_rows(void *ctx, int r0, int r1)
{
    combine_job *j = ctx;
    scratch *s = j->s;
    const int K = j->K, D = j->D;
    for (int t = r0; t < r1; t++) {
        float *yt = s->gather + (size_t)t * D, *ht = s->h + (size_t)t * D;
        memset(yt, 0, (size_t)D * sizeof(float));
        for (int k = 0; k < K; k++)
            vl2_axpy(s->route_w[t * K + k], s->slot_out + ((size_t)t * K + k) * D, D, yt);
        if (j->shared)
            for (int i = 0; i < D; i++)
                yt[i] += s->ffn_out[(size_t)t * D + i];
        for (int i = 0; i < D; i++)
            ht[i] += yt[i];
    }
}

static bool moe_ffn(const vl2_model *m, vl2_pool *pool, const vl2_layer *L, int T, scratch *s)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const int E = lm->n_routed_experts, K = lm->num_experts_per_tok, D = lm->hidden_size;

    /* The router runs in float32 on float32 activations (F.linear(x.float(), w.float())), in
     * the bf16 mode too, like the official model run in bf16. */
    vl2_linear_as(pool, VL2_COMPUTE_F32, &L->router, NULL, s->x, T, s->router);
    for (int t = 0; t < T; t++)
        vl2_decoder_route(lm, &L->router_bias, s->router + (size_t)t * E,
                          s->route_idx + (size_t)t * K, s->route_w + (size_t)t * K);

    if (T <= DECODE_T && K <= MAX_EXPERTS_PER_TOK) {
        moe_decode(m, pool, L, T, s);
        return true;
    }

    /* Group (token, slot) pairs by expert: a counting sort. */
    int *count = s->expert_count;
    memset(count, 0, (size_t)(E + 1) * sizeof(int));
    for (int i = 0; i < T * K; i++)
        count[s->route_idx[i] + 1]++;
    for (int e = 0; e < E; e++)
        count[e + 1] += count[e];
    int *fill = s->expert_fill;
    memcpy(fill, count, (size_t)E * sizeof(int));
    for (int i = 0; i < T * K; i++)
        s->expert_tokens[fill[s->route_idx[i]]++] = i;

    /* one task per active expert, the busiest first so that the threads finish together */
    int *order = s->expert_order;
    int n_active = 0;
    for (int e = 0; e < E; e++)
        if (count[e + 1] > count[e])
            order[n_active++] = e;
    g_qsort_with_data(order, n_active, sizeof(int), by_tokens_desc, count);
    expert_job ej = { L,    s->x, count, s->expert_tokens, order, s->slot_out,
                      K,    D,    vl2_pool_compute(pool), false };
    vl2_pool_run(pool, n_active, expert_task, &ej);
    if (atomic_load(&ej.failed))
        return false;

    if (lm->n_shared_experts > 0)
        swiglu_ffn(pool, &L->shared, s->x, T, s, s->ffn_out);
    combine_job cj = { s, K, D, lm->n_shared_experts > 0 };
    vl2_pool_rows(pool, T, combine_rows, &cj);
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * The forward pass
 */

vl2_status vl2_decoder_forward(const vl2_model *m, vl2_pool *pool, vl2_decoder_ws *ws,
                               vl2_kv_cache *kv, int n_past, const float *embeds, int T,
                               vl2_forward_out *out, vl2_error *err)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const int D = lm->hidden_size;
    if (T <= 0 || n_past < 0 || n_past + T > kv->n_ctx)
        return vl2_set_error(err, VL2_ERR_CONTEXT_OVERFLOW, "%d positions after %d do not fit the "
                             "context of %d tokens", T, n_past, kv->n_ctx);
    vl2_decoder_ws own = { 0 };
    scratch *s = ws ? &ws->s : &own.s;
    if (!scratch_reserve(s, lm, T) || !vl2_pool_reserve(pool, task_scratch_bytes(lm, kv->n_ctx)))
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory for a forward pass of %d "
                             "positions", T);
    vl2_status st = VL2_OK;
    memcpy(s->h, embeds, (size_t)T * D * sizeof(float));
    const float eps = (float)lm->rms_norm_eps;

    for (int il = 0; il < lm->num_hidden_layers; il++) {
        const vl2_layer *L = &m->layers[il];
        rmsnorm_rows(pool, s->h, &L->attn_norm, T, D, eps, s->x);
        if (!attention(m, pool, kv, il, n_past, T, s)) {
            st = vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory in attention");
            goto done;
        }
        rmsnorm_rows(pool, s->h, &L->ffn_norm, T, D, eps, s->x);
        if (L->is_moe) {
            if (!moe_ffn(m, pool, L, T, s)) {
                st = vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory in the experts");
                goto done;
            }
        } else {
            swiglu_ffn(pool, &L->dense, s->x, T, s, s->ffn_out);
            residual_rows(pool, s->h, s->ffn_out, T, D);
        }
        if (out && out->hidden_per_layer)
            memcpy(out->hidden_per_layer + (size_t)il * D, s->h + (size_t)(T - 1) * D,
                   (size_t)D * sizeof(float));
    }
    if (out && out->logits) {
        float *last = s->x;
        vl2_rmsnorm(s->h + (size_t)(T - 1) * D, &m->final_norm, D, eps, last);
        const vl2_tensor *head = lm->tie_word_embeddings ? &m->embed : &m->lm_head;
        vl2_linear(pool, head, NULL, last, 1, out->logits);
    }
done:
    scratch_free(&own.s);
    return st;
}
