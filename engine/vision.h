/* vision.h - the vision path: SigLIP (vit.c) and the projector with tile tags (projector.c). */
#ifndef VL2_VISION_H
#define VL2_VISION_H

#include "kernels.h"

/* Tiles (n_tiles x image_size^2 x 3 bytes) -> ViT features [n_tiles][n_patches][width] after
 * the final norm. */
vl2_status vl2_vit_encode(const vl2_model *m, vl2_pool *pool, const uint8_t *tiles, int n_tiles,
                          float *out, vl2_error *err);

/* Tiles encoded together: bigger batches widen each weight fewer times, smaller ones report
 * progress more often and need less memory (about 13 MB a tile). */
#define VL2_VIT_BATCH 4

/* Tokens per side after the downsampling: 14 for 27 x 27 patches and ratio 2. */
int vl2_projector_side(const vl2_config *cfg);

/* ViT features of one tile -> projected tokens [side * side][n_embed]. */
vl2_status vl2_projector_forward(const vl2_model *m, vl2_pool *pool, const float *vit, float *out,
                                 vl2_error *err);

/* Called after each tile; return false to cancel. */
typedef bool (*vl2_tile_done_fn)(void *user_data);

/* All tiles of one image (global view first) -> its token features, laid out with the 2D tile
 * tags exactly as the <image> run of the prompt: vl2_image_token_count() rows of n_embed. */
vl2_status vl2_vision_encode_image(const vl2_model *m, vl2_pool *pool, const uint8_t *tiles, int tw,
                                   int th, float *out, vl2_tile_done_fn done, void *user_data,
                                   vl2_error *err);

#endif /* VL2_VISION_H */
