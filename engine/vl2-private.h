/* vl2-private.h - declarations shared by the engine's files and its tests; not installed.
 *
 * The pipeline, one file per stage (see engine/MODEL.md for the model itself):
 *   config.c     config.json -> vl2_config, with the official defaults for omitted keys
 *   weights.c    safetensors headers, mmap, the tensor table built from the config
 *   guard.c      weights files changed on disk under a loaded model: SIGBUS, size, mtime
 *   tokenizer.c  tokenizer.json -> byte-level BPE encode / decode
 *   prompt.c     conversation -> token ids, exactly like the official processor
 *   decoder.c    DeepSeekMoE language model: attention (MHA, MLA), MoE, KV cache
 *   sampler.c    logits -> next token
 *   kernels.c    matmul, norms, activations, rope; threads.c: the worker pool
 *   model.c      vl2_model / vl2_session: the public API glued together
 */
#ifndef VL2_PRIVATE_H
#define VL2_PRIVATE_H

#include <glib.h>
#include <stdarg.h>

#include "vl2.h"
#include "vl2-input.h"

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

/* Fills err (when non-NULL) and returns code. */
vl2_status vl2_set_error(vl2_error *err, vl2_status code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* Seconds on the monotonic clock. */
double vl2_now_seconds(void);

/* Reads a whole regular file (at most max_size bytes: the limits are in vl2-input.h) into a
 * NUL-terminated buffer to g_free(); a named pipe or device is refused without waiting. */
vl2_status vl2_read_file(const char *path, size_t max_size, char **data, size_t *len,
                         vl2_error *err);
/* The status for an error of vl2-input.h (or json-glib's parser). */
vl2_status vl2_input_status(const GError *error);

/* ---------------------------------------------------------------------------------------------
 * Growable id array (malloc-based, as large engine buffers are)
 */

typedef struct vl2_ids {
    int32_t *data;
    size_t len, cap;
} vl2_ids;

bool vl2_ids_reserve(vl2_ids *ids, size_t cap);
bool vl2_ids_push(vl2_ids *ids, int32_t id);
bool vl2_ids_append(vl2_ids *ids, const int32_t *src, size_t n);
void vl2_ids_clear(vl2_ids *ids);

/* ---------------------------------------------------------------------------------------------
 * Config (config.c)
 */

typedef enum { VL2_TOPK_GREEDY, VL2_TOPK_GROUP_LIMITED_GREEDY, VL2_TOPK_NOAUX_TC } vl2_topk_method;
typedef enum { VL2_SCORING_SOFTMAX, VL2_SCORING_SIGMOID } vl2_scoring_func;
typedef enum { VL2_ROPE_DEFAULT, VL2_ROPE_LINEAR, VL2_ROPE_DYNAMIC, VL2_ROPE_YARN } vl2_rope_type;

typedef struct vl2_rope_scaling {
    vl2_rope_type type;
    double factor;
    int original_max_position_embeddings;
    double beta_fast, beta_slow, mscale, mscale_all_dim;
} vl2_rope_scaling;

/* Hard limits that keep fixed-size scratch arrays safe; config.c rejects configs beyond them. */
#define MAX_ROUTED_EXPERTS 4096
#define MAX_HEAD_DIM 1024

typedef struct vl2_lm_config {
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int moe_intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;
    int n_shared_experts;        /* 0 when null */
    int n_routed_experts;        /* 0 when null: every layer dense */
    int num_experts_per_tok;
    int moe_layer_freq;
    int first_k_dense_replace;
    int n_group, topk_group;     /* 1 when null */
    int max_position_embeddings;
    bool use_mla;
    int kv_lora_rank;
    int q_lora_rank;             /* 0 when null: q_proj */
    int qk_rope_head_dim, qk_nope_head_dim, v_head_dim;
    int head_dim;                /* MHA: hidden_size / num_attention_heads */
    vl2_topk_method topk_method;
    vl2_scoring_func scoring_func;
    bool norm_topk_prob;
    double routed_scaling_factor;
    double rms_norm_eps;
    double rope_theta;
    vl2_rope_scaling rope_scaling;
    bool has_rope_scaling;
    bool attention_bias;
    bool tie_word_embeddings;
    int32_t bos_token_id, eos_token_id;
} vl2_lm_config;

typedef struct vl2_vision_config {
    int image_size, patch_size, width, layers, heads;
    double mlp_ratio;
    int mlp_hidden;              /* int(width * mlp_ratio), as timm's Block computes it */
    bool class_token;
    bool has_attn_pool;          /* global_pool == "map": stored, never used */
} vl2_vision_config;

typedef struct vl2_projector_config {
    int input_dim, n_embed, depth, mlp_ratio, downsample_ratio;
} vl2_projector_config;

typedef struct vl2_config {
    vl2_lm_config lm;
    vl2_vision_config vision;
    vl2_projector_config projector;
    int (*candidate_resolutions)[2]; /* [n][width, height] */
    int n_candidate_resolutions;
    bool global_view_head;       /* global_view_pos == "head" */
} vl2_config;

/* Parses `path` (the checkpoint's config.json). On failure the message names the file. */
vl2_status vl2_config_load(const char *path, vl2_config *cfg, vl2_error *err);
vl2_status vl2_config_parse(const char *json, size_t len, const char *name, vl2_config *cfg,
                            vl2_error *err);
void vl2_config_clear(vl2_config *cfg);
/* Is decoder layer `il` a MoE layer? */
bool vl2_config_layer_is_moe(const vl2_lm_config *lm, int il);

/* ---------------------------------------------------------------------------------------------
 * Tensors and safetensors files (weights.c)
 */

typedef enum {
    VL2_DTYPE_F32, VL2_DTYPE_F16, VL2_DTYPE_BF16, VL2_DTYPE_F64,
    VL2_DTYPE_I64, VL2_DTYPE_I32, VL2_DTYPE_I16, VL2_DTYPE_I8,
    VL2_DTYPE_U64, VL2_DTYPE_U32, VL2_DTYPE_U16, VL2_DTYPE_U8, VL2_DTYPE_BOOL,
    VL2_DTYPE_F8_E4M3, VL2_DTYPE_F8_E5M2,
    /* block-quantized matrices (quant.h): int8 or packed 4-bit values plus f16 scales */
    VL2_DTYPE_Q8_0, VL2_DTYPE_Q4_0,
} vl2_dtype;

const char *vl2_dtype_name(vl2_dtype t);
size_t vl2_dtype_size(vl2_dtype t);

#define VL2_MAX_DIMS 4

typedef struct vl2_tensor {
    const char *name;            /* owned by the file that holds it */
    vl2_dtype dtype;
    int ndim;
    int64_t shape[VL2_MAX_DIMS];
    int64_t n_elements;
    const void *data;            /* inside the mapping; not necessarily aligned to the dtype */
    size_t n_bytes;              /* quantized: values and scales together */
    const uint16_t *scales;      /* Q8_0 / Q4_0: f16 scale of each block of 32, row after row */
} vl2_tensor;

/* ---------------------------------------------------------------------------------------------
 * Files changed under a loaded model (guard.c, which explains the design)
 */

/* What a file was when the engine read it: its identity, size and modification time. */
typedef struct vl2_file_stamp {
    bool exists;
    uint64_t dev, ino;
    int64_t size;
    int64_t mtime_ns;
} vl2_file_stamp;

typedef enum {
    VL2_STAMP_SAME,
    VL2_STAMP_MODIFIED,          /* the same file, another size or mtime: its bytes changed */
    VL2_STAMP_REPLACED,          /* another file at the path, or none (or one where none was) */
} vl2_stamp_change;

void vl2_stamp_path(const char *path, vl2_file_stamp *out);
void vl2_stamp_fd(int fd, vl2_file_stamp *out);
vl2_stamp_change vl2_stamp_compare(const vl2_file_stamp *then, const vl2_file_stamp *now);
/* VL2_ERR_MODEL_CHANGED with a message saying how `path` changed from `then` to `now` (or that
 * its mapping faulted, with `tripped`); VL2_OK when it did not. */
vl2_status vl2_stamp_error(const char *path, const vl2_file_stamp *then,
                           const vl2_file_stamp *now, bool tripped, vl2_error *err);

/* Guards reads of the mapping [start, start + len): a SIGBUS there maps zero pages over it and
 * trips the slot instead of killing the process. Returns the slot, or -1 when unguarded. */
int vl2_guard_add(const void *start, size_t len);
/* Before the mapping is unmapped. */
void vl2_guard_remove(int slot);
bool vl2_guard_tripped(int slot);

/* One mapped .safetensors file with its parsed header. */
typedef struct vl2_st_file {
    char *path;
    void *map;
    size_t map_size;
    GHashTable *tensors;         /* name -> vl2_tensor* */
    int fd;                      /* the file mapped, open until the file is closed */
    vl2_file_stamp stamp;        /* what it was when it was opened */
    int guard;                   /* its guard slot, or -1 */
} vl2_st_file;

/* VL2_ERR_MODEL_CHANGED when reading the mapping faulted or the file mapped was modified since
 * it was opened (not when its path now names another file: the mapping is intact). One
 * fstat(). */
vl2_status vl2_st_check(const vl2_st_file *f, vl2_error *err);

/* VL2_OK unless data (the len bytes of the file at path) is a Git LFS pointer, a placeholder
 * left by a clone without git-lfs; then an error that says so, with the size of the real file
 * (`what`, e.g. "the weights") and the command that fetches it. */
vl2_status vl2_check_lfs_pointer(const char *path, const void *data, size_t len, const char *what,
                                 vl2_error *err);

vl2_status vl2_st_open(const char *path, vl2_st_file **out, vl2_error *err);
void vl2_st_close(vl2_st_file *f);
const vl2_tensor *vl2_st_get(const vl2_st_file *f, const char *name);

/* The expected tensors of a checkpoint, derived from its config. */
typedef struct vl2_tensor_spec {
    char *name;
    int ndim;
    int64_t shape[VL2_MAX_DIMS];
    vl2_tensor *dest;            /* where to bind it; NULL when only the table is wanted */
} vl2_tensor_spec;

/* Builds the table (GPtrArray of vl2_tensor_spec*, owning them). With model NULL, no dest;
 * otherwise model's layer/expert arrays are allocated and every dest points into the model. */
GPtrArray *vl2_tensor_table(const vl2_config *cfg, vl2_model *model);

/* All .safetensors files of a checkpoint folder, and the name -> tensor index over them. */
typedef struct vl2_weights {
    GPtrArray *files;            /* vl2_st_file* */
    GHashTable *index;           /* name -> const vl2_tensor* (owned by files) */
    GPtrArray *copies;           /* aligned copies of tensors the files store unaligned */
    int64_t n_bytes;
} vl2_weights;

vl2_status vl2_weights_open(const char *dir, vl2_weights *w, vl2_error *err);
void vl2_weights_close(vl2_weights *w);
/* vl2_st_check() on every file: VL2_ERR_MODEL_CHANGED when the mapped bytes cannot be trusted. */
vl2_status vl2_weights_check(const vl2_weights *w, vl2_error *err);
/* Binds every table entry, validating dtype and shape. progress may be NULL. */
vl2_status vl2_weights_bind(vl2_weights *w, GPtrArray *table, vl2_progress_fn progress,
                            void *user_data, vl2_error *err);

/* ---------------------------------------------------------------------------------------------
 * Tokenizer (tokenizer.c)
 */

/* vl2_tokenizer and its lookups (vl2_tokenizer_n_vocab, _token, _bytes, _is_special) are
 * public, in vl2.h. */

vl2_status vl2_tokenizer_load(const char *path, vl2_tokenizer **out, vl2_error *err);
vl2_status vl2_tokenizer_parse(const char *json, size_t len, const char *name, vl2_tokenizer **out,
                               vl2_error *err);
/* Appends the ids of `text` (no bos/eos added) to out. */
vl2_status vl2_tokenizer_encode(const vl2_tokenizer *tok, const char *text, size_t len,
                                vl2_ids *out, vl2_error *err);
/* Id of an exact token string (vocab entry in its byte-level form, or added token), or -1. */
int32_t vl2_tokenizer_find(const vl2_tokenizer *tok, const char *token);
/* Whole-sequence decode as the reference does it: bytes concatenated, then lossy UTF-8; ids
 * the tokenizer does not know decode to nothing. Returns a malloc()ed string, or NULL on
 * allocation failure. */
char *vl2_tokenizer_decode(const vl2_tokenizer *tok, const int32_t *ids, size_t n,
                           bool skip_special);

/* Streaming UTF-8: bytes in, complete text out. Replaces invalid sequences with U+FFFD
 * exactly where a lossy decode of the whole stream would, and never emits half a character. */
typedef struct vl2_utf8_stream {
    unsigned char pending[4];
    int n_pending;
} vl2_utf8_stream;

void vl2_utf8_stream_push(vl2_utf8_stream *st, const char *bytes, size_t n, GString *out);
void vl2_utf8_stream_finish(vl2_utf8_stream *st, GString *out);
/* Lossy decode of a complete buffer (appended to out). */
void vl2_utf8_lossy_append(GString *out, const char *bytes, size_t n);

/* ---------------------------------------------------------------------------------------------
 * The model: tensors bound by name once at load (weights.c builds the table from the config)
 */

typedef struct vl2_vit_block {
    vl2_tensor norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b;
    vl2_tensor norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} vl2_vit_block;

typedef struct vl2_vision_weights {
    vl2_tensor pos_embed;        /* [1, n_patches, width] */
    vl2_tensor patch_w, patch_b; /* conv [width, 3, p, p] */
    vl2_vit_block *blocks;
    vl2_tensor norm_w, norm_b;
    /* attn_pool.*: stored in every checkpoint, never used by DeepSeek-VL2 */
    vl2_tensor pool[13];
} vl2_vision_weights;

typedef struct vl2_projector_weights {
    int n_linear;
    vl2_tensor *w, *b;           /* layers.0, layers.2, ... */
    vl2_tensor image_newline, view_separator;
} vl2_projector_weights;

typedef struct vl2_ffn {
    vl2_tensor gate, up, down;   /* [inter, hidden], [inter, hidden], [hidden, inter] */
} vl2_ffn;

typedef struct vl2_layer {
    vl2_tensor attn_norm, ffn_norm;
    /* MHA (use_mla false): transformers' LlamaAttention */
    vl2_tensor wq, wk, wv, wo, bq, bk, bv, bo;
    /* MLA: wq is q_proj when q_lora_rank is null */
    vl2_tensor q_a, q_a_b, q_a_norm, q_b;
    vl2_tensor kv_a, kv_a_b, kv_a_norm, kv_b;
    /* feed-forward */
    bool is_moe;
    vl2_ffn dense;               /* dense layers */
    vl2_ffn *experts;            /* [n_routed_experts] */
    vl2_ffn shared;              /* n_shared_experts merged into one MLP, as stored */
    vl2_tensor router, router_bias;
} vl2_layer;

/* config.json, tokenizer.json, tokenizer_config.json, model.safetensors.index.json */
#define VL2_N_SIDE_FILES 4

struct vl2_model {
    char *dir;
    vl2_config cfg;
    vl2_weights weights;
    vl2_tokenizer *tok;
    int n_threads;
    struct vl2_pool *pool;
    double load_seconds;
    int64_t n_params;

    vl2_tensor embed, final_norm, lm_head;
    vl2_layer *layers;
    vl2_vision_weights vision;
    vl2_projector_weights projector;

    int32_t bos_id, eos_id, pad_id, image_id; /* image_id is -1 without an <image> token */
    int rope_dim;                /* MHA: head_dim; MLA: qk_rope_head_dim */
    float *rope_inv_freq;        /* [rope_dim / 2] */
    float rope_pos_div;          /* linear scaling divides positions by its factor */
    float rope_mscale;           /* yarn: scale on cos/sin */
    float attn_scale;            /* softmax scale, including yarn's mscale */
    void *quant_arena;           /* matrices quantized while loading (quantize.c), or NULL */
    size_t quant_arena_len;      /* its mapping's length */
    GHashTable *quantized;       /* tensor name -> the quantized vl2_tensor in this model */
    vl2_weights_format weights_format;
    /* The folder's other files as they were when loading began (vl2_model_check_files). */
    char *side_paths[VL2_N_SIDE_FILES];
    vl2_file_stamp side_stamps[VL2_N_SIDE_FILES];
};

/* Quantizes the language model's matrices to `format` (quantize.c); STORED copies them as
 * they are (resident weights). progress (may be NULL) gets the fraction copied after each
 * matrix; false stops with VL2_ERR_CANCELLED, and vl2_model_free() then frees what was made. */
struct vl2_pool;
vl2_status vl2_quantize_model(vl2_model *m, struct vl2_pool *pool, vl2_weights_format format,
                              vl2_progress_fn progress, void *user_data, vl2_error *err);

/* ---------------------------------------------------------------------------------------------
 * Prompts (prompt.c)
 */

struct vl2_prompt {
    vl2_ids ids;
    size_t n_ids_counted;        /* counting only: <image> ids counted, not stored in ids */
    int n_images_total;          /* in the whole conversation: 3 or more disables tiling */
    int n_images;                /* added so far */
    int (*grid)[2];              /* [n_images][width_tiles, height_tiles] */
    int *image_offset;           /* [n_images]: position of each image's first <image> id */
    uint64_t *image_hash;        /* [n_images]: identity of the tiles, for cache reuse */
    int n_tiles, tile_size;
    uint8_t *tiles;              /* [n_tiles][tile_size][tile_size][3] */
};

/* ---------------------------------------------------------------------------------------------
 * Images (image.c): tiling exactly like the processor
 */

/* The most tiles of an image's local view (a candidate resolution of more is refused at
 * load): the published checkpoints' largest candidates are 9 tiles. */
#define VL2_MAX_LOCAL_TILES 256

/* Appends one image: its tiles to the prompt and its run of <image> ids to the ids. An image
 * whose ids would take the prompt past max_position_embeddings is VL2_ERR_CONTEXT_OVERFLOW,
 * before any tile is made. */
vl2_status vl2_prompt_add_image(const vl2_model *model, vl2_prompt *p, const vl2_image *image,
                                vl2_error *err);
/* Counts only its run of <image> ids (in n_ids_counted), for counting: the image's width and
 * height are read, its pixels are not (rgb may be NULL), and no tiles are made. */
vl2_status vl2_prompt_add_image_ids(const vl2_model *model, vl2_prompt *p,
                                    const vl2_image *image, vl2_error *err);
vl2_status vl2_image_check(const vl2_image *im, int index, vl2_error *err);
/* The size limits alone (vl2_image_check also needs the pixels). */
vl2_status vl2_image_check_size(const vl2_image *im, int index, vl2_error *err);
void vl2_select_best_resolution(const vl2_config *cfg, int width, int height, int *best_w,
                                int *best_h);
/* <image> ids of one image with a width_tiles x height_tiles local view. */
int64_t vl2_image_token_count(const vl2_config *cfg, int width_tiles, int height_tiles);

/* ---------------------------------------------------------------------------------------------
 * Sampling (sampler.c)
 */

typedef struct vl2_rng {
    uint64_t s[4];
} vl2_rng;

void vl2_rng_seed(vl2_rng *rng, uint64_t seed);
/* Uniform in [0, 1). */
double vl2_rng_uniform(vl2_rng *rng);

typedef struct vl2_sampler_scratch {
    float *values;               /* [n_vocab] */
    int *index;                  /* [n_vocab] */
    float *select;               /* [n_vocab]: top-k's selection */
} vl2_sampler_scratch;

/* Picks the next token the way transformers' generate() does with the same settings:
 * repetition penalty over every id marked in `seen`, then greedy (temperature <= 0) or
 * temperature, top-k, top-p and a draw from the remaining distribution. Returns -1 when a
 * logit (after biases and penalty) is NaN or +inf, or all are -inf: a broken model. */
int32_t vl2_sample(const float *logits, int n_vocab, const vl2_generate_params *p,
                   const uint8_t *seen, vl2_rng *rng, vl2_sampler_scratch *scratch);

#endif /* VL2_PRIVATE_H */
