/* decoder.h - the DeepSeekMoE language model over a KV cache (decoder.c). */
#ifndef VL2_DECODER_H
#define VL2_DECODER_H

#include "kernels.h"

/* Per layer, per position:
 *   MHA: key and value rows, num_key_value_heads * head_dim values each.
 *   MLA: the compressed latent after kv_a_layernorm (kv_lora_rank values) and the shared
 *        rotated rope key (qk_rope_head_dim values) - never per-head keys and values.
 * Values are stored as `type` (f16 by default, see vl2.h) and widened in registers when
 * attention reads them; an MHA layer keeps each KV head's rows together (see `seg`), so that
 * decoding streams through memory. */
typedef struct vl2_kv_cache {
    int n_ctx;
    int n_layers;
    int k_dim, v_dim;            /* values per position: MHA k/v; MLA latent/rope key */
    int seg;                     /* MHA: values are stored per KV head, [head][position][seg],
                                  * so that one head's keys follow each other; MLA: k_dim */
    vl2_kv_type type;
    size_t elem;                 /* bytes per value */
    void **k, **v;               /* [n_layers] -> [n_ctx][k_dim], [n_ctx][v_dim] */
} vl2_kv_cache;

vl2_status vl2_kv_cache_init(vl2_kv_cache *kv, const vl2_model *m, int n_ctx, vl2_kv_type type,
                             vl2_error *err);
void vl2_kv_cache_free(vl2_kv_cache *kv);
/* Values (not bytes) per position over all layers. */
size_t vl2_kv_cache_values_per_token(const vl2_model *m);
/* Where value `col` of position `pos` is; positions of one segment are row_stride values apart. */
void *vl2_kv_at(const vl2_kv_cache *kv, int which, int layer, int pos, int col);
size_t vl2_kv_row_stride(const vl2_kv_cache *kv, int which);
/* Copies positions [0, n) of every layer from src to dst, caches of the same shape. */
void vl2_kv_copy_prefix(vl2_kv_cache *dst, const vl2_kv_cache *src, int n);
/* Stores `n` floats at (layer, position, column) of the key (which 0) or value (1) rows. */
void vl2_kv_store(vl2_kv_cache *kv, int which, int layer, int pos, int col, const float *src,
                  int n);

/* Fills the model's rope tables and attention scale from the config (model.c calls it). */
vl2_status vl2_decoder_init(vl2_model *m, vl2_error *err);

/* What a forward pass may report besides logits. */
typedef struct vl2_forward_out {
    float *logits;               /* [n_vocab] at the last position, or NULL */
    float *hidden_per_layer;     /* [n_layers][hidden]: residual after each layer at the last
                                  * position, or NULL */
} vl2_forward_out;

/* The buffers of forward passes, kept from one to the next: sized for the most positions run
 * at once so far, so that decoding, one position a pass, allocates nothing. One per session;
 * the attention scores live in the pool's thread scratch (vl2_scratch_get). */
typedef struct vl2_decoder_ws vl2_decoder_ws;
vl2_decoder_ws *vl2_decoder_ws_new(void);
void vl2_decoder_ws_free(vl2_decoder_ws *ws);

/* Runs positions [n_past, n_past + T) given their input embeddings [T][hidden], writing
 * their keys and values into the cache. Requires n_past + T <= kv->n_ctx. ws may be NULL
 * (buffers for this pass only). */
vl2_status vl2_decoder_forward(const vl2_model *m, vl2_pool *pool, vl2_decoder_ws *ws,
                               vl2_kv_cache *kv, int n_past, const float *embeds, int T,
                               vl2_forward_out *out, vl2_error *err);

/* MoEGate.forward for one token: turns router logits [n_routed_experts] into scores (in place)
 * and picks num_experts_per_tok experts (idx) with their weights (w). `bias` is the
 * e_score_correction_bias, used by noaux_tc only. */
void vl2_decoder_route(const vl2_lm_config *lm, const vl2_tensor *bias, float *scores, int *idx,
                       float *w);

/* Input embedding of one token id. */
void vl2_decoder_embed(const vl2_model *m, int32_t id, float *out);

#endif /* VL2_DECODER_H */
