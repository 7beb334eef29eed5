/* vit.c - SigLIP-SO400M (timm VisionTransformer as siglip_vit.py builds it), for a batch of tiles.
 *
 *   tile [384, 384, 3] uint8 -> (v / 255 - 0.5) / 0.5, float32 like ToTensor + Normalize
 *   -> patches [729, 3 * 14 * 14]: the stride-14 conv as one matrix product (channel-major
 *      inside a patch, as the conv weight [width, 3, 14, 14] is laid out); the last 6 pixel
 *      rows and columns fall outside the 27 x 27 grid and are never read
 *   -> + bias + pos_embed -> blocks: x += proj(attn(LN1(x))); x += fc2(gelu_tanh(fc1(LN2(x))))
 *      (LayerNorm eps 1e-6, qkv with bias, softmax(q k^T / sqrt(head_dim)))
 *   -> final LayerNorm -> [729, width]
 * The attention-pool head is stored in the checkpoints but ignore_head means it never runs.
 * The tiles of a batch go through every matrix product together (rows of one [tiles * 729, C]
 * matrix), so each weight is widened from bf16 once per batch and the products are large;
 * attention stays within a tile, one (tile, head, block of 64 queries) per task with two sgemm
 * calls, so no task holds more than 64 rows of scores.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision.h"

/* Queries per attention task: the scores of one task are Q_BLOCK x 729 floats (190 KB), never
 * a whole tile's n x n per head. */
#define Q_BLOCK 64

typedef struct {
    const float *qkv;            /* [tiles][n][3 * width] */
    float *out;                  /* [tiles][n][width] */
    int n, width, heads, head_dim, q_blocks;
    float scale;
    bool failed;
} vit_attn_job;

/* Task = (tile, head, block of queries): scores by sgemm, a row softmax, then sgemm with V. */
static void vit_attn_task(void *ctx, int task, int thread)
{
    vit_attn_job *j = ctx;
    const int n = j->n, C = j->width, hd = j->head_dim;
    const int qb = task % j->q_blocks, h = (task / j->q_blocks) % j->heads;
    const int tile = task / (j->q_blocks * j->heads);
    const int q0 = qb * Q_BLOCK, rows = n - q0 < Q_BLOCK ? n - q0 : Q_BLOCK;
    float *s = malloc((size_t)rows * (size_t)n * sizeof(float));
    if (!s) {
        j->failed = true;
        return;
    }
    const float *base = j->qkv + (size_t)tile * n * 3 * C;
    const float *q = base + (size_t)q0 * 3 * C + (size_t)h * hd;
    const float *k = base + C + (size_t)h * hd, *v = base + 2 * C + (size_t)h * hd;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, hd, j->scale, q, 3 * C, k,
                3 * C, 0.0f, s, n);
    for (int i = 0; i < rows; i++)
        vl2_softmax(s + (size_t)i * n, n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n, 1.0f, s, n, v, 3 * C,
                0.0f, j->out + ((size_t)tile * n + q0) * C + (size_t)h * hd, C);
    free(s);
}

/* The row-wise steps between the products, on the pool (vl2_pool_rows): x += add (the
 * residual; add may be NULL), then xn = LayerNorm(x) (w NULL: none); or GELU in place. */
typedef struct {
    float *x, *xn;
    const float *add;
    const vl2_tensor *w, *b;
    int width;
} rows_job;

static void add_norm_rows(void *ctx, int r0, int r1)
{
    rows_job *j = ctx;
    const size_t C = (size_t)j->width;
    for (int i = r0; i < r1; i++) {
        float *x = j->x + (size_t)i * C;
        if (j->add)
            for (size_t c = 0; c < C; c++)
                x[c] += j->add[(size_t)i * C + c];
        if (j->w)
            vl2_layernorm(x, j->w, j->b, j->width, 1e-6f, j->xn + (size_t)i * C);
    }
}

static void gelu_rows(void *ctx, int r0, int r1)
{
    rows_job *j = ctx;
    vl2_gelu_tanh(j->x + (size_t)r0 * j->width, (size_t)(r1 - r0) * (size_t)j->width);
}

static void run_rows(vl2_pool *pool, vl2_rows_fn fn, float *x, const float *add, float *xn,
                     const vl2_tensor *w, const vl2_tensor *b, int width, int n)
{
    rows_job j = { x, xn, add, w, b, width };
    vl2_pool_rows(pool, n, fn, &j);
}

vl2_status vl2_vit_encode(const vl2_model *m, vl2_pool *pool, const uint8_t *tiles, int n_tiles,
                          float *out, vl2_error *err)
{
    const vl2_vision_config *vc = &m->cfg.vision;
    const vl2_vision_weights *vw = &m->vision;
    const int S = vc->image_size, P = vc->patch_size, g = S / P, n1 = g * g, n = n1 * n_tiles;
    const int C = vc->width, H = vc->heads, hd = C / H, hid = vc->mlp_hidden;
    const int pdim = 3 * P * P;
    const size_t N = (size_t)n;

    float *patches = calloc(N * (size_t)pdim, sizeof(float)); /* calloc: gcc cannot prove the loop fills it */
    float *xn = malloc(N * (size_t)C * sizeof(float));
    float *qkv = malloc(N * 3 * (size_t)C * sizeof(float));
    float *att = malloc(N * (size_t)C * sizeof(float));
    float *mlp = malloc(N * (size_t)hid * sizeof(float));
    float *pos = malloc((size_t)C * sizeof(float));
    vl2_status st = VL2_OK;
    if (!patches || !xn || !qkv || !att || !mlp || !pos) {
        st = vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory encoding an image tile");
        goto out;
    }

    /* Normalise and gather patches: element (c, ky, kx) of patch (py, px). */
    for (int t = 0; t < n_tiles; t++) {
        const uint8_t *tile = tiles + (size_t)t * S * S * 3;
        for (int py = 0; py < g; py++)
            for (int px = 0; px < g; px++) {
                float *dst = patches + ((size_t)t * n1 + (size_t)(py * g + px)) * pdim;
                for (int c = 0; c < 3; c++)
                    for (int ky = 0; ky < P; ky++) {
                        const uint8_t *row = tile + ((size_t)(py * P + ky) * S +
                                                     (size_t)px * P) * 3;
                        for (int kx = 0; kx < P; kx++)
                            dst[(c * P + ky) * P + kx] =
                                ((float)row[kx * 3 + c] / 255.0f - 0.5f) / 0.5f;
                    }
            }
    }
    vl2_linear(pool, &vw->patch_w, &vw->patch_b, patches, n, out); /* [C, 3, P, P] as [C, pdim] */
    for (int i = 0; i < n; i++) {
        vl2_to_f32(vw->pos_embed.data, vw->pos_embed.dtype, (size_t)(i % n1) * C, (size_t)C, pos);
        for (int c = 0; c < C; c++)
            out[(size_t)i * C + c] += pos[c];
    }

    for (int l = 0; l < vc->layers; l++) {
        const vl2_vit_block *b = &vw->blocks[l];
        /* x += the previous block's MLP (none before the first), then LN1 */
        run_rows(pool, add_norm_rows, out, l > 0 ? att : NULL, xn, &b->norm1_w, &b->norm1_b, C,
                 n);
        vl2_linear(pool, &b->qkv_w, &b->qkv_b, xn, n, qkv);
        vit_attn_job j = { qkv, att, n1, C, H, hd, (n1 + Q_BLOCK - 1) / Q_BLOCK,
                           1.0f / sqrtf((float)hd), false };
        vl2_pool_run(pool, n_tiles * H * j.q_blocks, vit_attn_task, &j);
        if (j.failed) {
            st = vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory in vision attention");
            goto out;
        }
        vl2_linear(pool, &b->proj_w, &b->proj_b, att, n, xn);
        /* x += attention, then LN2 (into att, free until fc2 writes it) */
        run_rows(pool, add_norm_rows, out, xn, att, &b->norm2_w, &b->norm2_b, C, n);
        vl2_linear(pool, &b->fc1_w, &b->fc1_b, att, n, mlp);
        run_rows(pool, gelu_rows, mlp, NULL, NULL, NULL, NULL, hid, n);
        vl2_linear(pool, &b->fc2_w, &b->fc2_b, mlp, n, att);
    }
    /* the last block's MLP, then the final LayerNorm (in place) */
    run_rows(pool, add_norm_rows, out, vc->layers > 0 ? att : NULL, out, &vw->norm_w, &vw->norm_b,
             C, n);
out:
    free(patches);
    free(xn);
    free(qkv);
    free(att);
    free(mlp);
    free(pos);
    return st;
}
