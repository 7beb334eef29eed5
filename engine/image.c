/* image.c - DeepSeek-VL2's dynamic tiling, byte-exact with the official processor.
 *
 * For each image (raw RGB8 in):
 *   1. select_best_resolution picks a canvas from config.json's candidate_resolutions
 *      (with three or more images in the conversation: a single 384 x 384 view, no tiling);
 *   2. the global view is ImageOps.pad(image, (384, 384)) and the local canvas is
 *      ImageOps.pad(image, (best_w, best_h)): resize to fit with Pillow's BICUBIC, centre on a
 *      (127, 127, 127) background;
 *   3. the tiles are the global view, then the canvas cut into 384 x 384 crops row-major.
 * The prompt gets a run of <image> ids for it: 14 x 15 for the global view (a newline after
 * each row), 1 view separator, (rows * 14) x (cols * 14 + 1) for the local view.
 *
 * Pillow's resampling is reproduced exactly: separable passes (horizontal first, on only the
 * rows the vertical pass reads), filter support scaled by the downscale factor, coefficients
 * normalised in double and rounded to 22-bit fixed point, each pass rounded and clipped to
 * 8 bits. Python's round() (half to even) decides the padding offsets. The result is compared
 * byte for byte with the processor's tiles in the tests.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vl2-private.h"

/* The processor's fill colour: tuple(int(x * 255) for x in image_mean), mean 0.5. */
#define FILL 127

/* ---------------------------------------------------------------------------------------------
 * select_best_resolution
 */

void vl2_select_best_resolution(const vl2_config *cfg, int width, int height, int *best_w,
                                int *best_h)
{
    long long best_effective = 0;
    double best_wasted = INFINITY;
    *best_w = cfg->candidate_resolutions[0][0];
    *best_h = cfg->candidate_resolutions[0][1];
    for (int i = 0; i < cfg->n_candidate_resolutions; i++) {
        int cw = cfg->candidate_resolutions[i][0], ch = cfg->candidate_resolutions[i][1];
        double scale = fmin((double)cw / width, (double)ch / height);
        long long dw = (long long)(width * scale), dh = (long long)(height * scale);
        long long effective = dw * dh;
        if (effective > (long long)width * height)
            effective = (long long)width * height;
        double wasted = (double)cw * ch - (double)effective;
        if (effective > best_effective ||
            (effective == best_effective && wasted < best_wasted)) {
            best_effective = effective;
            best_wasted = wasted;
            *best_w = cw;
            *best_h = ch;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Pillow's resampling (libImaging/Resample.c), BICUBIC, 8 bits per channel
 */

#define PRECISION_BITS (32 - 8 - 2)

static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* One axis: for each output index, the first input index, the count, and ksize fixed-point
 * weights. */
typedef struct {
    int ksize;
    int *bounds;                 /* [out][2]: first, count */
    int32_t *k;                  /* [out][ksize] */
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->bounds);
    free(c->k);
}

static bool coeffs_make(int in_size, int out_size, coeffs *c)
{
    /* box = (0, in_size): scale is in/out, the filter widens when shrinking */
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = malloc((size_t)out_size * 2 * sizeof(int));
    c->k = malloc((size_t)out_size * (size_t)ksize * sizeof(int32_t));
    double *w = malloc((size_t)ksize * sizeof(double));
    if (!c->bounds || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return false;
    }
    double inv = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic((x + xmin - center + 0.5) * inv);
            ww += w[x];
        }
        int32_t *k = c->k + (size_t)xx * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            /* normalize_coeffs_8bpc: round half away from zero */
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[xx * 2] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    free(w);
    return true;
}

static inline uint8_t clip8(int32_t v)
{
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* rows [y0, y0 + n) of src (w x ?, stride) -> dst (out_w x n, packed) */
static void resample_rows(const uint8_t *src, size_t stride, int y0, int n, const coeffs *c,
                          int out_w, uint8_t *dst)
{
    for (int y = 0; y < n; y++) {
        const uint8_t *in = src + (size_t)(y0 + y) * stride;
        uint8_t *out = dst + (size_t)y * out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = c->bounds[xx * 2], xmax = c->bounds[xx * 2 + 1];
            const int32_t *k = c->k + (size_t)xx * c->ksize;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < xmax; x++) {
                const uint8_t *p = in + (size_t)(x + xmin) * 3;
                s0 += p[0] * k[x];
                s1 += p[1] * k[x];
                s2 += p[2] * k[x];
            }
            out[xx * 3] = clip8(s0);
            out[xx * 3 + 1] = clip8(s1);
            out[xx * 3 + 2] = clip8(s2);
        }
    }
}

/* src (w x h_src rows from its row 0, stride) -> dst (w x out_h, packed) */
static void resample_cols(const uint8_t *src, size_t stride, int w, const coeffs *c, int out_h,
                          uint8_t *dst)
{
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = c->bounds[yy * 2], ymax = c->bounds[yy * 2 + 1];
        const int32_t *k = c->k + (size_t)yy * c->ksize;
        uint8_t *out = dst + (size_t)yy * w * 3;
        for (int i = 0; i < w * 3; i++) {
            int32_t s = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++)
                s += src[(size_t)(y + ymin) * stride + i] * k[y];
            out[i] = clip8(s);
        }
    }
}

/* Image.resize(size, BICUBIC) of an RGB image into a packed out_w x out_h buffer. */
static bool pil_resize(const vl2_image *im, int out_w, int out_h, uint8_t *dst)
{
    const int w = im->width, h = im->height;
    const size_t stride = (size_t)im->stride;
    if (out_w == w && out_h == h) {
        for (int y = 0; y < h; y++)
            memcpy(dst + (size_t)y * w * 3, im->rgb + y * stride, (size_t)w * 3);
        return true;
    }
    coeffs cv = { 0 };
    if (!coeffs_make(h, out_h, &cv))
        return false;
    bool ok = true;
    if (out_w != w) {
        /* horizontal pass over only the rows the vertical pass reads */
        int first = cv.bounds[0], last = cv.bounds[out_h * 2 - 2] + cv.bounds[out_h * 2 - 1];
        coeffs ch = { 0 };
        uint8_t *tmp = malloc((size_t)out_w * 3 * (size_t)(last - first));
        if (tmp && coeffs_make(w, out_w, &ch)) {
            resample_rows(im->rgb, stride, first, last - first, &ch, out_w, tmp);
            if (out_h != h) {
                for (int i = 0; i < out_h; i++)
                    cv.bounds[i * 2] -= first;
                resample_cols(tmp, (size_t)out_w * 3, out_w, &cv, out_h, dst);
            } else {
                memcpy(dst, tmp, (size_t)out_w * 3 * (size_t)out_h);
            }
            coeffs_free(&ch);
        } else {
            ok = false;
        }
        free(tmp);
    } else {
        resample_cols(im->rgb, stride, w, &cv, out_h, dst);
    }
    coeffs_free(&cv);
    return ok;
}

/* Python's round() on a double: half to even. */
static int py_round(double v)
{
    return (int)nearbyint(v);
}

/* ImageOps.pad(image, (W, H), BICUBIC, color=(127,127,127)) into a packed W x H buffer. */
static bool pil_pad(const vl2_image *im, int W, int H, uint8_t *dst)
{
    /* ImageOps.contain: fit inside, keeping the aspect ratio */
    double im_ratio = (double)im->width / im->height, dest_ratio = (double)W / H;
    int rw = W, rh = H;
    if (im_ratio != dest_ratio) {
        if (im_ratio > dest_ratio)
            rh = py_round((double)im->height / im->width * W);
        else
            rw = py_round((double)im->width / im->height * H);
    }
    if (rw < 1 || rh < 1)
        rw = rw < 1 ? 1 : rw, rh = rh < 1 ? 1 : rh; /* Pillow refuses 0 sizes; keep 1 px */
    uint8_t *resized = rw == W && rh == H ? dst : malloc((size_t)rw * rh * 3);
    if (!resized || !pil_resize(im, rw, rh, resized)) {
        if (resized != dst)
            free(resized);
        return false;
    }
    if (resized == dst)
        return true;
    memset(dst, FILL, (size_t)W * H * 3);
    int x = rw != W ? py_round((W - rw) * 0.5) : 0;
    int y = rw != W ? 0 : py_round((H - rh) * 0.5);
    for (int r = 0; r < rh; r++)
        memcpy(dst + ((size_t)(y + r) * W + x) * 3, resized + (size_t)r * rw * 3, (size_t)rw * 3);
    free(resized);
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Adding an image to a prompt
 */

vl2_status vl2_image_check_size(const vl2_image *im, int index, vl2_error *err)
{
    if (im->width <= 0 || im->height <= 0)
        return vl2_set_error(err, VL2_ERR_IMAGE, "image %d is empty (%d x %d)", index + 1,
                             im->width, im->height);
    if (im->width > VL2_MAX_IMAGE_SIDE || im->height > VL2_MAX_IMAGE_SIDE ||
        (long long)im->width * im->height > VL2_MAX_IMAGE_PIXELS)
        return vl2_set_error(err, VL2_ERR_IMAGE, "image %d is %d x %d pixels; the limit is %d "
                             "pixels a side and %d megapixels", index + 1, im->width, im->height,
                             VL2_MAX_IMAGE_SIDE, VL2_MAX_IMAGE_PIXELS / 1000000);
    return VL2_OK;
}

vl2_status vl2_image_check(const vl2_image *im, int index, vl2_error *err)
{
    if (!im->rgb)
        return vl2_set_error(err, VL2_ERR_IMAGE, "image %d is empty (%d x %d)", index + 1,
                             im->width, im->height);
    vl2_status s = vl2_image_check_size(im, index, err);
    if (s != VL2_OK)
        return s;
    if (im->stride < 3 * im->width)
        return vl2_set_error(err, VL2_ERR_IMAGE, "image %d has a stride of %d bytes for %d "
                             "pixels a row", index + 1, im->stride, im->width);
    return VL2_OK;
}

int64_t vl2_image_token_count(const vl2_config *cfg, int width_tiles, int height_tiles)
{
    /* h = w = ceil((image_size // patch_size) / downsample_ratio): 14 for 384 / 14 / 2. In 64
     * bits: the config's limits keep every factor below 2^24. */
    int64_t g = cfg->vision.image_size / cfg->vision.patch_size;
    int64_t r = cfg->projector.downsample_ratio;
    int64_t hw = (g + r - 1) / r;
    return hw * (hw + 1) + 1 + (int64_t)height_tiles * hw * ((int64_t)width_tiles * hw + 1);
}

/* The canvas the local view is cut from. The processor tiles only when the whole conversation
 * holds at most two images; otherwise the local view is one tile, like the global view. */
static void local_canvas(const vl2_config *cfg, const vl2_prompt *p, const vl2_image *image,
                         int *bw, int *bh)
{
    *bw = *bh = p->tile_size;
    if (p->n_images_total <= 2)
        vl2_select_best_resolution(cfg, image->width, image->height, bw, bh);
}

vl2_status vl2_prompt_add_image_ids(const vl2_model *model, vl2_prompt *p,
                                    const vl2_image *image, vl2_error *err)
{
    vl2_status s = vl2_image_check_size(image, p->n_images, err);
    if (s != VL2_OK)
        return s;
    if (model->image_id < 0)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s/tokenizer.json has no <image> token",
                             model->dir);
    int bw, bh;
    local_canvas(&model->cfg, p, image, &bw, &bh);
    p->n_ids_counted += (size_t)vl2_image_token_count(&model->cfg, bw / p->tile_size,
                                                      bh / p->tile_size);
    p->n_images++;
    return VL2_OK;
}

vl2_status vl2_prompt_add_image(const vl2_model *model, vl2_prompt *p, const vl2_image *image,
                                vl2_error *err)
{
    vl2_status s = vl2_image_check(image, p->n_images, err);
    if (s != VL2_OK)
        return s;
    if (model->image_id < 0)
        return vl2_set_error(err, VL2_ERR_UNSUPPORTED, "%s/tokenizer.json has no <image> token",
                             model->dir);
    const vl2_config *cfg = &model->cfg;
    const int S = p->tile_size;
    int bw, bh;
    local_canvas(cfg, p, image, &bw, &bh);
    const int tw = bw / S, th = bh / S, n_tiles = 1 + tw * th; /* <= 1 + VL2_MAX_LOCAL_TILES */
    const size_t tile_bytes = (size_t)S * S * 3;
    /* known from the image's size alone: a prompt that cannot fit is refused before tiling */
    const int64_t n_tokens = vl2_image_token_count(cfg, tw, th);
    if ((int64_t)p->ids.len + n_tokens > cfg->lm.max_position_embeddings)
        return vl2_set_error(err, VL2_ERR_CONTEXT_OVERFLOW, "image %d takes %lld tokens, which "
                             "take the prompt to %lld, past the model's context of %d",
                             p->n_images + 1, (long long)n_tokens,
                             (long long)p->ids.len + n_tokens, cfg->lm.max_position_embeddings);

    uint8_t *tiles = realloc(p->tiles, ((size_t)p->n_tiles + (size_t)n_tiles) * tile_bytes);
    int (*grid)[2] = realloc(p->grid, ((size_t)p->n_images + 1) * sizeof *grid);
    int *offset = realloc(p->image_offset, ((size_t)p->n_images + 1) * sizeof *offset);
    uint64_t *hash = realloc(p->image_hash, ((size_t)p->n_images + 1) * sizeof *hash);
    if (tiles)
        p->tiles = tiles;
    if (grid)
        p->grid = grid;
    if (offset)
        p->image_offset = offset;
    if (hash)
        p->image_hash = hash;
    uint8_t *canvas = malloc((size_t)bw * bh * 3);
    if (!tiles || !grid || !offset || !hash || !canvas) {
        free(canvas);
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory tiling image %d",
                             p->n_images + 1);
    }
    uint8_t *out = p->tiles + (size_t)p->n_tiles * tile_bytes;
    bool ok = pil_pad(image, S, S, out);
    if (ok && (bw != S || bh != S))
        ok = pil_pad(image, bw, bh, canvas);
    else if (ok)
        memcpy(canvas, out, tile_bytes);
    if (!ok) {
        free(canvas);
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory resizing image %d",
                             p->n_images + 1);
    }
    for (int r = 0; r < th; r++)
        for (int c = 0; c < tw; c++) {
            uint8_t *t = out + (size_t)(1 + r * tw + c) * tile_bytes;
            for (int y = 0; y < S; y++)
                memcpy(t + (size_t)y * S * 3, canvas + (((size_t)(r * S + y) * bw) + c * S) * 3,
                       (size_t)S * 3);
        }
    free(canvas);

    /* The image's identity for the session's cache: a hash of its tiles. */
    uint64_t hv = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < (size_t)n_tiles * tile_bytes; i++)
        hv = (hv ^ out[i]) * 0x100000001b3ull;

    p->grid[p->n_images][0] = tw;
    p->grid[p->n_images][1] = th;
    p->image_offset[p->n_images] = (int)p->ids.len;
    p->image_hash[p->n_images] = hv;
    if (!vl2_ids_reserve(&p->ids, p->ids.len + (size_t)n_tokens))
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory building the prompt");
    for (int64_t i = 0; i < n_tokens; i++)
        p->ids.data[p->ids.len++] = model->image_id;
    p->n_tiles += n_tiles;
    p->n_images++;
    return VL2_OK;
}
