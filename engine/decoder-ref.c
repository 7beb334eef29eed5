/* decoder-ref.c - DeepseekV2ForCausalLM as modeling_deepseek.py writes it, in plain scalar C:
 * the oracle that tests/engine/test-decoder.c holds the fast decoder (decoder.c) to.
 *
 * One formula per loop and nothing else: no threads, no SIMD, no blocking, no compressed KV
 * cache. Every dot product and sum runs in double and is stored as float32, the reference's
 * activation type. The order is the Python's, layer by layer over the T new positions:
 *
 *   h = embeds
 *   for each layer:  h = h + self_attn(input_layernorm(h))            MHA or MLA, KV cache
 *                    h = h + mlp(post_attention_layernorm(h))          dense, or MoE + shared
 *   logits = lm_head(norm(h[T - 1]))
 *
 * Where the fast decoder takes a shortcut, this file takes the textbook route, so that a
 * mistake in the shortcut shows up as a difference:
 *   - MLA expands the normalised latent through kv_b_proj into per-head keys and values and
 *     caches those, as DeepSeek-V2's DeepseekV2Attention does. The fast decoder caches the
 *     latent and absorbs kv_b_proj into the queries (MODEL.md, pitfall 7): the same products,
 *     associated differently.
 *   - The router is written out here from MoEGate.forward; it does not call
 *     vl2_decoder_route.
 *   - exp is libm's, in double (the fast decoder's is a polynomial).
 * Weights are read through vl2_weight_segment and vl2_to_f32, so any stored or quantized dtype
 * works. The rope frequencies, position divisor, yarn mscale and softmax scale are the ones
 * vl2_decoder_init put in the model (tested on their own); the rotations are applied here the
 * way the reference applies them.
 */
#include <math.h>
#include <string.h>

#include "decoder-ref.h"
#include "kernels.h"

/* ---------------------------------------------------------------------------------------------
 * Building blocks
 */

/* y = W x + b, torch.nn.Linear for one vector; b may be NULL or an unbound (bias-less) tensor. */
static void linear(const vl2_tensor *w, const vl2_tensor *b, const float *x, float *y)
{
    vl2_matrix W = vl2_matrix_of(w);
    float *row = g_new(float, W.n_in);
    for (int o = 0; o < W.n_out; o++) {
        vl2_weight_segment(&W, o, 0, W.n_in, row);
        double s = 0;
        for (int i = 0; i < W.n_in; i++)
            s += (double)row[i] * x[i];
        if (b && b->data) {
            float bo;
            vl2_to_f32(b->data, b->dtype, (size_t)o, 1, &bo);
            s += bo;
        }
        y[o] = (float)s;
    }
    g_free(row);
}

/* DeepseekV2RMSNorm: weight * x / sqrt(mean(x^2) + eps). out may be x. */
static void rmsnorm(const float *x, const vl2_tensor *w, int n, double eps, float *out)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    const double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) {
        float wi;
        vl2_to_f32(w->data, w->dtype, (size_t)i, 1, &wi);
        out[i] = (float)(wi * (x[i] * r));
    }
}

/* In place: softmax over n values. */
static void softmax(float *x, int n)
{
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++)
        sum += exp(x[i] - mx);
    for (int i = 0; i < n; i++)
        x[i] = (float)(exp(x[i] - mx) / sum);
}

static double sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

/* DeepseekV2MLP (also each expert and the shared experts): down(silu(gate(x)) * up(x)). */
static void mlp(const vl2_ffn *f, const float *x, float *out)
{
    const int inter = (int)f->gate.shape[0];
    float *gate = g_new(float, inter), *up = g_new(float, inter);
    linear(&f->gate, NULL, x, gate);
    linear(&f->up, NULL, x, up);
    for (int i = 0; i < inter; i++)
        gate[i] = (float)(gate[i] * sigmoid(gate[i]) * up[i]);
    linear(&f->down, NULL, gate, out);
    g_free(gate);
    g_free(up);
}

/* ---------------------------------------------------------------------------------------------
 * RoPE
 */

/* cos and sin over a whole rotary head at one position, built as the reference's rotary
 * embeddings build them, in float32: freqs = t * inv_freq, emb = cat(freqs, freqs), so
 * entries i and i + dim/2 share frequency i; yarn scales both by its mscale. Linear scaling
 * divides the position. */
static void rope_cos_sin(const vl2_model *m, int pos, float *cos_emb, float *sin_emb)
{
    const int dim = m->rope_dim, half = dim / 2;
    const float t = (float)pos / m->rope_pos_div;
    for (int i = 0; i < dim; i++) {
        float freq = t * m->rope_inv_freq[i % half];
        cos_emb[i] = cosf(freq) * m->rope_mscale;
        sin_emb[i] = sinf(freq) * m->rope_mscale;
    }
}

/* x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x[half:], x[:half]): transformers'
 * apply_rotary_pos_emb, over the whole head of an MHA model (LlamaAttention). */
static void rope_rotate_half(float *x, int dim, const float *cos_emb, const float *sin_emb)
{
    const int half = dim / 2;
    float in[MAX_HEAD_DIM];
    memcpy(in, x, (size_t)dim * sizeof(float));
    for (int i = 0; i < dim; i++) {
        float rotated = i < half ? -in[i + half] : in[i - half];
        x[i] = in[i] * cos_emb[i] + rotated * sin_emb[i];
    }
}

/* apply_rotary_pos_emb of modeling_deepseek.py (MLA's q_pe and k_pe): x.view(d/2, 2)
 * .transpose(-1, -2) reorders x to (x0, x2, x4, ..., x1, x3, ...), then rotate-half as above.
 * The result stays in that order, as in the reference; queries and keys share it, so their dot
 * products are unchanged. */
static void rope_deepseek(float *x, int dim, const float *cos_emb, const float *sin_emb)
{
    const int half = dim / 2;
    float in[MAX_HEAD_DIM];
    memcpy(in, x, (size_t)dim * sizeof(float));
    for (int i = 0; i < half; i++) {
        x[i] = in[2 * i];
        x[half + i] = in[2 * i + 1];
    }
    rope_rotate_half(x, dim, cos_emb, sin_emb);
}

/* ---------------------------------------------------------------------------------------------
 * Attention
 */

/* The eager attention of one query of one head over the first n_keys cached positions:
 * p = softmax(scale * q.k_j), out = sum_j p_j v_j. Key j is k + j * k_stride (k_len values),
 * value j is v + j * v_stride (v_len values). */
static void attend(const float *q, const float *k, size_t k_stride, int k_len, const float *v,
                   size_t v_stride, int v_len, int n_keys, float scale, float *out)
{
    float *p = g_new(float, n_keys);
    for (int j = 0; j < n_keys; j++) {
        double s = 0;
        for (int d = 0; d < k_len; d++)
            s += (double)q[d] * k[(size_t)j * k_stride + d];
        p[j] = (float)(s * scale);
    }
    softmax(p, n_keys);
    for (int d = 0; d < v_len; d++) {
        double s = 0;
        for (int j = 0; j < n_keys; j++)
            s += (double)p[j] * v[(size_t)j * v_stride + d];
        out[d] = (float)s;
    }
    g_free(p);
}

/* LlamaAttention's projections (Tiny, use_mla false) for the position pos of x: its query
 * [H][head_dim] into q, its rotated key and its value [n_kv_heads][head_dim] into k and v. */
static void mha_project(const vl2_model *m, const vl2_layer *L, int pos, const float *x,
                        float *q, float *k, float *v)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const int hd = lm->head_dim;
    float cos_emb[MAX_HEAD_DIM], sin_emb[MAX_HEAD_DIM];
    linear(&L->wq, &L->bq, x, q);
    linear(&L->wk, &L->bk, x, k);
    linear(&L->wv, &L->bv, x, v);
    rope_cos_sin(m, pos, cos_emb, sin_emb);
    for (int h = 0; h < lm->num_attention_heads; h++)
        rope_rotate_half(q + (size_t)h * hd, hd, cos_emb, sin_emb);
    for (int h = 0; h < lm->num_key_value_heads; h++)
        rope_rotate_half(k + (size_t)h * hd, hd, cos_emb, sin_emb);
}

/* DeepseekV2Attention's projections (MLA) for the position pos of x: its query
 * [H][nope + rope] into q; per head its key cat(k_nope, k_pe) [H][nope + rope] into k, k_pe
 * being one rotated key shared by all heads, and its value [H][v_head_dim] into v. */
static void mla_project(const vl2_model *m, const vl2_layer *L, int pos, const float *x,
                        float *q, float *k, float *v)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const int H = lm->num_attention_heads;
    const int nope = lm->qk_nope_head_dim, rope = lm->qk_rope_head_dim;
    const int r = lm->kv_lora_rank, vd = lm->v_head_dim, qhd = nope + rope;
    float *ckv = g_new(float, r + rope), *kv = g_new(float, (size_t)H * (nope + vd));
    float cos_emb[MAX_HEAD_DIM], sin_emb[MAX_HEAD_DIM];

    /* q = q_proj(x), or q_b_proj(q_a_layernorm(q_a_proj(x))). The a-layernorms use RMSNorm's
     * default eps, not rms_norm_eps (MODEL.md, pitfall 8). */
    if (lm->q_lora_rank > 0) {
        float *q_lat = g_new(float, lm->q_lora_rank);
        linear(&L->q_a, &L->q_a_b, x, q_lat);
        rmsnorm(q_lat, &L->q_a_norm, lm->q_lora_rank, 1e-6, q_lat);
        linear(&L->q_b, NULL, q_lat, q);
        g_free(q_lat);
    } else {
        linear(&L->wq, NULL, x, q);
    }
    /* compressed_kv, k_pe = split(kv_a_proj_with_mqa(x), [kv_lora_rank, rope]) */
    linear(&L->kv_a, &L->kv_a_b, x, ckv);
    float *k_pe = ckv + r;
    rmsnorm(ckv, &L->kv_a_norm, r, 1e-6, ckv);
    /* k_nope, value_states = split(kv_b_proj(compressed_kv).view(H, nope + v), [nope, v]) */
    linear(&L->kv_b, NULL, ckv, kv);
    /* q_pe, k_pe = apply_rotary_pos_emb(q_pe, k_pe) */
    rope_cos_sin(m, pos, cos_emb, sin_emb);
    for (int h = 0; h < H; h++)
        rope_deepseek(q + (size_t)h * qhd + nope, rope, cos_emb, sin_emb);
    rope_deepseek(k_pe, rope, cos_emb, sin_emb);
    /* key_states = cat(k_nope, k_pe) per head */
    for (int h = 0; h < H; h++) {
        const float *kv_h = kv + (size_t)h * (nope + vd);
        memcpy(k + (size_t)h * qhd, kv_h, (size_t)nope * sizeof(float));
        memcpy(k + (size_t)h * qhd + nope, k_pe, (size_t)rope * sizeof(float));
        memcpy(v + (size_t)h * vd, kv_h + nope, (size_t)vd * sizeof(float));
    }
    g_free(ckv);
    g_free(kv);
}

/* self_attn, MHA or MLA: out [T][D] from x [T][D]. Each new position's projections append its
 * keys and values to the cache; then each of its query heads attends over the positions up to
 * and including its own (the causal mask); o_proj. */
static void self_attn(const vl2_model *m, const vl2_layer *L, vl2_ref_cache *c, int il,
                      int n_past, int T, const float *x, float *out)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const int D = lm->hidden_size, H = lm->num_attention_heads;
    /* repeat_kv: query head h reads KV head h / n_rep (MLA caches every head's own) */
    const int n_kv = lm->use_mla ? H : lm->num_key_value_heads, n_rep = H / n_kv;
    const int kw = c->k_dim / n_kv, vw = c->v_dim / n_kv; /* per head: query/key, value */
    float *q = g_new(float, (size_t)T * H * kw), *att = g_new(float, (size_t)T * H * vw);

    for (int t = 0; t < T; t++) {
        const int pos = n_past + t;
        float *k = c->k[il] + (size_t)pos * c->k_dim, *v = c->v[il] + (size_t)pos * c->v_dim;
        if (lm->use_mla)
            mla_project(m, L, pos, x + (size_t)t * D, q + (size_t)t * H * kw, k, v);
        else
            mha_project(m, L, pos, x + (size_t)t * D, q + (size_t)t * H * kw, k, v);
    }
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            attend(q + ((size_t)t * H + h) * kw, c->k[il] + (size_t)(h / n_rep) * kw,
                   (size_t)c->k_dim, kw, c->v[il] + (size_t)(h / n_rep) * vw, (size_t)c->v_dim,
                   vw, n_past + t + 1, m->attn_scale, att + ((size_t)t * H + h) * vw);
    for (int t = 0; t < T; t++)
        linear(&L->wo, &L->bo, att + (size_t)t * H * vw, out + (size_t)t * D);
    g_free(q);
    g_free(att);
}

/* ---------------------------------------------------------------------------------------------
 * Mixture of experts
 */

/* torch.topk: the indices of the k largest of v[0..n), largest first. Ties go to the lower
 * index (torch leaves their order open; the fast decoder does the same). */
static void topk(const float *v, int n, int k, int *idx)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            bool taken = false;
            for (int p = 0; p < j; p++)
                taken = taken || idx[p] == i;
            if (!taken && (best < 0 || v[i] > v[best]))
                best = i;
        }
        idx[j] = best;
    }
}

/* MoEGate.forward for one token: the chosen experts (idx) and their weights (w), K each. */
static void route(const vl2_lm_config *lm, const vl2_layer *L, const float *x, int *idx,
                  float *w)
{
    const int E = lm->n_routed_experts, K = lm->num_experts_per_tok;
    const bool noaux = lm->topk_method == VL2_TOPK_NOAUX_TC;
    float *scores = g_new(float, E), *choice = g_new(float, E);

    /* logits = F.linear(x.float(), weight.float()); scores = softmax or sigmoid (float32) */
    linear(&L->router, NULL, x, scores);
    if (lm->scoring_func == VL2_SCORING_SOFTMAX)
        softmax(scores, E);
    else
        for (int e = 0; e < E; e++)
            scores[e] = (float)sigmoid(scores[e]);

    /* scores_for_choice: noaux_tc adds e_score_correction_bias, only to choose */
    for (int e = 0; e < E; e++) {
        float bias = 0;
        if (noaux)
            vl2_to_f32(L->router_bias.data, L->router_bias.dtype, (size_t)e, 1, &bias);
        choice[e] = scores[e] + bias;
    }

    if (lm->topk_method != VL2_TOPK_GREEDY) {
        /* group_scores: a group's best expert (group_limited_greedy) or the sum of its best
         * two (noaux_tc); experts outside the topk_group best groups are masked_fill'ed with
         * 0.0 (not -inf) */
        const int G = lm->n_group, per = E / G;
        float *group_scores = g_new(float, G);
        int *best_groups = g_new(int, lm->topk_group);
        for (int g = 0; g < G; g++) {
            int top[2];
            const int n_top = noaux && per >= 2 ? 2 : 1;
            topk(choice + (size_t)g * per, per, n_top, top);
            group_scores[g] = 0;
            for (int i = 0; i < n_top; i++)
                group_scores[g] += choice[g * per + top[i]];
        }
        topk(group_scores, G, lm->topk_group, best_groups);
        for (int e = 0; e < E; e++) {
            bool kept = false;
            for (int i = 0; i < lm->topk_group; i++)
                kept = kept || best_groups[i] == e / per;
            if (!kept)
                choice[e] = 0.0f;
        }
        g_free(group_scores);
        g_free(best_groups);
    }
    topk(choice, E, K, idx);

    /* topk_weight: noaux_tc gathers the unbiased scores, the others the (masked) scores they
     * chose by; then normalised (sum + 1e-20) and scaled, or only scaled */
    double sum = 0;
    for (int k = 0; k < K; k++) {
        w[k] = noaux ? scores[idx[k]] : choice[idx[k]];
        sum += w[k];
    }
    const double scale = lm->routed_scaling_factor;
    for (int k = 0; k < K; k++)
        w[k] = (float)(K > 1 && lm->norm_topk_prob ? w[k] / (sum + 1e-20) * scale
                                                   : w[k] * scale);
    g_free(scores);
    g_free(choice);
}

/* DeepseekV2MoE for one token: y = sum_k w_k expert_k(x) (moe_infer), + shared_experts(x). */
static void moe(const vl2_model *m, const vl2_layer *L, const float *x, float *out)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const int D = lm->hidden_size, K = lm->num_experts_per_tok;
    int *idx = g_new(int, K);
    float *w = g_new(float, K), *expert_out = g_new(float, D);
    double *y = g_new0(double, D);

    route(lm, L, x, idx, w);
    for (int k = 0; k < K; k++) {
        mlp(&L->experts[idx[k]], x, expert_out);
        for (int i = 0; i < D; i++)
            y[i] += (double)w[k] * expert_out[i];
    }
    if (lm->n_shared_experts > 0) {
        mlp(&L->shared, x, expert_out);
        for (int i = 0; i < D; i++)
            y[i] += expert_out[i];
    }
    for (int i = 0; i < D; i++)
        out[i] = (float)y[i];
    g_free(idx);
    g_free(w);
    g_free(expert_out);
    g_free(y);
}

/* ---------------------------------------------------------------------------------------------
 * Cache and forward pass
 */

void vl2_ref_cache_init(vl2_ref_cache *c, const vl2_model *m, int n_ctx)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const int H = lm->num_attention_heads;
    memset(c, 0, sizeof *c);
    c->n_ctx = n_ctx;
    c->n_layers = lm->num_hidden_layers;
    if (lm->use_mla) {
        c->k_dim = H * (lm->qk_nope_head_dim + lm->qk_rope_head_dim);
        c->v_dim = H * lm->v_head_dim;
    } else {
        c->k_dim = c->v_dim = lm->num_key_value_heads * lm->head_dim;
    }
    c->k = g_new(float *, c->n_layers);
    c->v = g_new(float *, c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        c->k[l] = g_new0(float, (size_t)n_ctx * c->k_dim);
        c->v[l] = g_new0(float, (size_t)n_ctx * c->v_dim);
    }
}

void vl2_ref_cache_free(vl2_ref_cache *c)
{
    for (int l = 0; l < c->n_layers; l++) {
        g_free(c->k[l]);
        g_free(c->v[l]);
    }
    g_free(c->k);
    g_free(c->v);
    memset(c, 0, sizeof *c);
}

void vl2_ref_forward(const vl2_model *m, vl2_ref_cache *c, int n_past, const float *embeds, int T,
                     float *logits, float *hidden_per_layer)
{
    const vl2_lm_config *lm = &m->cfg.lm;
    const int D = lm->hidden_size;
    const double eps = lm->rms_norm_eps;
    if (T <= 0 || n_past < 0 || n_past + T > c->n_ctx)
        g_error("vl2_ref_forward: %d positions after %d do not fit %d", T, n_past, c->n_ctx);
    const size_t n = (size_t)T * D;
    float *h = g_memdup2(embeds, n * sizeof(float));
    float *x = g_new(float, n), *y = g_new(float, n);

    for (int il = 0; il < lm->num_hidden_layers; il++) {
        const vl2_layer *L = &m->layers[il];
        /* h = h + self_attn(input_layernorm(h)) */
        for (int t = 0; t < T; t++)
            rmsnorm(h + (size_t)t * D, &L->attn_norm, D, eps, x + (size_t)t * D);
        self_attn(m, L, c, il, n_past, T, x, y);
        for (size_t i = 0; i < n; i++)
            h[i] += y[i];
        /* h = h + mlp(post_attention_layernorm(h)) */
        for (int t = 0; t < T; t++) {
            rmsnorm(h + (size_t)t * D, &L->ffn_norm, D, eps, x + (size_t)t * D);
            if (L->is_moe)
                moe(m, L, x + (size_t)t * D, y + (size_t)t * D);
            else
                mlp(&L->dense, x + (size_t)t * D, y + (size_t)t * D);
        }
        for (size_t i = 0; i < n; i++)
            h[i] += y[i];
        if (hidden_per_layer)
            memcpy(hidden_per_layer + (size_t)il * D, h + (size_t)(T - 1) * D,
                   (size_t)D * sizeof(float));
    }
    if (logits) {
        rmsnorm(h + (size_t)(T - 1) * D, &m->final_norm, D, eps, x);
        linear(lm->tie_word_embeddings ? &m->embed : &m->lm_head, NULL, x, logits);
    }
    g_free(h);
    g_free(x);
    g_free(y);
}
