/* projector.c - the vision-language adaptor and the 2D tile tags (modeling_deepseek_vl_v2.py).
 *
 * Per tile: ViT features [27 * 27, 1152] -> reshape [27, 27, C] -> zero-pad to [28, 28, C] ->
 * F.unfold(kernel 2, stride 2), whose channel order is (c, ky, kx): token (i, j) gets
 * x[2i + ky][2j + kx][c] at index c * 4 + ky * 2 + kx -> [14 * 14, 4C] -> Linear, GELU (the
 * exact erf form, unlike the ViT's tanh), Linear -> [196, D].
 *
 * Per image, with tiles (global, then th x tw local tiles row-major) and global_view_pos
 * "head": the global view's 14 rows of 14 tokens each followed by image_newline (210), then
 * view_seperator, then the local view as one (th * 14) x (tw * 14) grid of tokens with an
 * image_newline after each of its rows. "tail" puts the local view first. The layout is built
 * tile by tile straight into the image's slot of the prompt embeddings, so a 9-tile image
 * needs the scratch of one tile, not nine.
 */
#include <stdlib.h>
#include <string.h>

#include "vision.h"

static int grid_of(const vl2_config *cfg)
{
    return cfg->vision.image_size / cfg->vision.patch_size;
}

int vl2_projector_side(const vl2_config *cfg)
{
    int r = cfg->projector.downsample_ratio, g = grid_of(cfg);
    return (g + r - 1) / r;
}

vl2_status vl2_projector_forward(const vl2_model *m, vl2_pool *pool, const float *vit, float *out,
                                 vl2_error *err)
{
    const vl2_projector_config *pc = &m->cfg.projector;
    const vl2_projector_weights *pw = &m->projector;
    const int C = m->cfg.vision.width, g = grid_of(&m->cfg), r = pc->downsample_ratio;
    const int side = vl2_projector_side(&m->cfg), n = side * side, in = C * r * r;
    const int mid = pc->n_embed * pc->mlp_ratio;

    float *x = calloc((size_t)n * (size_t)in, sizeof(float)); /* zero: the padding */
    float *a = malloc((size_t)n * (size_t)mid * sizeof(float));
    float *b = malloc((size_t)n * (size_t)mid * sizeof(float));
    if (!x || !a || !b) {
        free(x);
        free(a);
        free(b);
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory in the projector");
    }
    for (int i = 0; i < side; i++)
        for (int j = 0; j < side; j++)
            for (int ky = 0; ky < r; ky++)
                for (int kx = 0; kx < r; kx++) {
                    int y = i * r + ky, xx = j * r + kx;
                    if (y >= g || xx >= g)
                        continue;
                    const float *src = vit + (size_t)(y * g + xx) * C;
                    float *dst = x + (size_t)(i * side + j) * in + ky * r + kx;
                    for (int c = 0; c < C; c++)
                        dst[(size_t)c * r * r] = src[c];
                }
    /* Linear, then (GELU, Linear) for each further layer; the last one writes out. */
    const float *cur = x;
    for (int l = 0; l < pw->n_linear; l++) {
        float *dst = l == pw->n_linear - 1 ? out : (cur == a ? b : a);
        vl2_linear(pool, &pw->w[l], &pw->b[l], cur, n, dst);
        if (l < pw->n_linear - 1)
            vl2_gelu_erf(dst, (size_t)n * (size_t)mid);
        cur = dst;
    }
    free(x);
    free(a);
    free(b);
    return VL2_OK;
}

/* ---------------------------------------------------------------------------------------------
 * An image's token features
 */

static void newline(const vl2_model *m, float *dst)
{
    const vl2_tensor *t = &m->projector.image_newline;
    vl2_to_f32(t->data, t->dtype, 0, (size_t)t->n_elements, dst);
}

vl2_status vl2_vision_encode_image(const vl2_model *m, vl2_pool *pool, const uint8_t *tiles, int tw,
                                   int th, float *out, vl2_tile_done_fn done, void *user_data,
                                   vl2_error *err)
{
    const vl2_config *cfg = &m->cfg;
    const int D = cfg->projector.n_embed, side = vl2_projector_side(cfg);
    const int S = cfg->vision.image_size, g = grid_of(cfg);
    const size_t tile_bytes = (size_t)S * S * 3, row = (size_t)D * sizeof(float);
    const int n_global = side * (side + 1);
    const int local_cols = tw * side + 1, n_local = th * side * local_cols;
    /* where the global view, the separator and the local view start */
    float *global = out, *sep = out + (size_t)n_global * D, *local = sep + D;
    if (!cfg->global_view_head) {
        local = out;
        sep = out + (size_t)n_local * D;
        global = sep + D;
    }

    const size_t vit_tile = (size_t)g * g * (size_t)cfg->vision.width;
    float *vit = malloc(VL2_VIT_BATCH * vit_tile * sizeof(float));
    float *proj = malloc((size_t)side * side * row);
    if (!vit || !proj) {
        free(vit);
        free(proj);
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory encoding an image");
    }
    vl2_status st = VL2_OK;
    const int n_tiles = 1 + tw * th;
    for (int t = 0; t < n_tiles && st == VL2_OK; t++) {
        /* the ViT runs a batch of tiles at a time, the projector one tile at a time */
        if (t % VL2_VIT_BATCH == 0) {
            int batch = n_tiles - t < VL2_VIT_BATCH ? n_tiles - t : VL2_VIT_BATCH;
            st = vl2_vit_encode(m, pool, tiles + (size_t)t * tile_bytes, batch, vit, err);
        }
        if (st == VL2_OK)
            st = vl2_projector_forward(m, pool, vit + (size_t)(t % VL2_VIT_BATCH) * vit_tile, proj,
                                       err);
        if (st != VL2_OK)
            break;
        if (t == 0) {
            for (int i = 0; i < side; i++) {
                memcpy(global + (size_t)i * (side + 1) * D, proj + (size_t)i * side * D,
                       (size_t)side * row);
                newline(m, global + ((size_t)i * (side + 1) + side) * D);
            }
        } else {
            int tr = (t - 1) / tw, tc = (t - 1) % tw;
            for (int i = 0; i < side; i++) {
                float *dst = local + ((size_t)(tr * side + i) * local_cols + (size_t)tc * side) * D;
                memcpy(dst, proj + (size_t)i * side * D, (size_t)side * row);
            }
        }
        if (done && !done(user_data)) {
            st = vl2_set_error(err, VL2_ERR_CANCELLED, "image encoding was cancelled");
            break;
        }
    }
    if (st == VL2_OK) {
        for (int rr = 0; rr < th * side; rr++)
            newline(m, local + ((size_t)rr * local_cols + (size_t)tw * side) * D);
        const vl2_tensor *vs = &m->projector.view_separator;
        vl2_to_f32(vs->data, vs->dtype, 0, (size_t)D, sep);
    }
    free(vit);
    free(proj);
    return st;
}
