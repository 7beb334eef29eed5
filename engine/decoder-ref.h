/* decoder-ref.h - a plain scalar DeepSeekMoE decoder (decoder-ref.c): the oracle the tests
 * hold the fast decoder (decoder.h) to. Built into the tests only, never into libvl2. */
#ifndef VL2_DECODER_REF_H
#define VL2_DECODER_REF_H

#include "vl2-private.h"

/* The reference's own float32 KV cache, the reference's past_key_value: per layer and
 * position, the keys and values of every head as attention reads them.
 *   MHA: num_key_value_heads * head_dim values each (rotated keys, values).
 *   MLA: num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim) key values (the
 *        kv_b-expanded nope part, then the shared rotated rope key) and
 *        num_attention_heads * v_head_dim values - not the compressed latent. */
typedef struct vl2_ref_cache {
    int n_ctx;
    int n_layers;
    int k_dim, v_dim;            /* floats per position and layer */
    float **k, **v;              /* [n_layers] -> [n_ctx][k_dim], [n_ctx][v_dim] */
} vl2_ref_cache;

/* Allocation failure aborts (g_new): this is test code. */
void vl2_ref_cache_init(vl2_ref_cache *c, const vl2_model *m, int n_ctx);
void vl2_ref_cache_free(vl2_ref_cache *c);

/* Runs positions [n_past, n_past + T) from their input embeddings [T][hidden], writing their
 * keys and values into c, like vl2_decoder_forward. logits: [n_vocab] at the last position;
 * hidden_per_layer: [n_layers][hidden], the residual stream after each layer at the last
 * position; either may be NULL. Requires n_past + T <= c->n_ctx. */
void vl2_ref_forward(const vl2_model *m, vl2_ref_cache *c, int n_past, const float *embeds, int T,
                     float *logits, float *hidden_per_layer);

#endif /* VL2_DECODER_REF_H */
