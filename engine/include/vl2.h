/* vl2.h - libvl2: DeepSeek-VL2 (Tiny, Small, full) running in-process on the CPU.
 *
 * The only public header of the engine. Plain C, no GLib types.
 *
 * A model is immutable once loaded and may be shared by several sessions and threads.
 * A session owns the KV cache, scratch buffers and sampler state; use one session from
 * one thread at a time. Nothing here prints, exits or aborts: every call that can fail
 * returns a vl2_status and, when given a vl2_error, fills it with a message that names
 * the file and the problem.
 *
 * Usage (error handling shortened):
 *
 *     vl2_error err;
 *     vl2_model *model;
 *     vl2_model_params mp = vl2_model_default_params();
 *     if (vl2_model_load("/models/deepseek-vl2-tiny", &mp, &model, &err) != VL2_OK) {
 *         fprintf(stderr, "%s\n", err.message);
 *         return 1;
 *     }
 *
 *     vl2_message msg[2] = {
 *         { VL2_ROLE_USER, "<image>\nWhat is written on the sign?", &image, 1 },
 *         { VL2_ROLE_ASSISTANT, "", NULL, 0 },   // the turn to generate
 *     };
 *     vl2_conversation conv = { msg, 2, NULL };
 *     vl2_prompt *prompt;
 *     vl2_prompt_new(model, &conv, &prompt, &err);
 *
 *     vl2_session *s;
 *     vl2_session_params sp = vl2_session_default_params();
 *     vl2_session_new(model, &sp, &s, &err);
 *
 *     vl2_generate_params gp = vl2_generate_default_params();
 *     vl2_session_prefill(s, prompt, &gp, &err);
 *     vl2_step step;
 *     do {
 *         if (vl2_session_step(s, &step, &err) != VL2_OK)
 *             break;
 *         fputs(step.text, stdout);
 *     } while (step.stop == VL2_STOP_NONE);
 *
 *     vl2_prompt_free(prompt);
 *     vl2_session_free(s);
 *     vl2_model_free(model);
 */
#ifndef VL2_H
#define VL2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Status and errors
 */

typedef enum {
    VL2_OK = 0,
    VL2_ERR_INVALID_ARGUMENT, /* a NULL, empty or out-of-range argument; a call out of order */
    VL2_ERR_IO,               /* a file could not be opened, read or mapped */
    VL2_ERR_FORMAT,           /* a file is malformed or disagrees with the config */
    VL2_ERR_UNSUPPORTED,      /* well-formed, but not something this engine runs */
    VL2_ERR_NO_MEMORY,        /* an allocation failed */
    VL2_ERR_CONTEXT_OVERFLOW, /* the prompt (plus generation) does not fit the context */
    VL2_ERR_CANCELLED,        /* a progress callback asked to stop */
    VL2_ERR_IMAGE,            /* an image is empty, too large or inconsistent with the prompt */
    VL2_ERR_MODEL_CHANGED,    /* the model's files changed on disk while it was loaded: the
                               * model cannot be used any more; load it again (see
                               * vl2_model_check_files) */
} vl2_status;

#define VL2_ERROR_MESSAGE_SIZE 1024

typedef struct vl2_error {
    vl2_status code;
    char message[VL2_ERROR_MESSAGE_SIZE]; /* one line, UTF-8, no trailing newline */
} vl2_error;

/* A short constant name for a status ("ok", "io error", ...). Never NULL. */
const char *vl2_status_name(vl2_status status);

/* The instruction-set level the kernels use, chosen at run time: "baseline", "x86-64-v3" or
 * "x86-64-v4" ("dotprod" on aarch64); the environment variable VL2_ISA, set to a level's name,
 * holds them to that level or below. Never NULL. */
const char *vl2_isa(void);

/* Called from the thread doing the work with the fraction done so far (0..1).
 * Return false to cancel: the call in progress then returns VL2_ERR_CANCELLED. */
typedef bool (*vl2_progress_fn)(float fraction, void *user_data);

/* ---------------------------------------------------------------------------------------------
 * Model: config.json + tokenizer.json + safetensors (single file or sharded), memory-mapped.
 */

typedef struct vl2_model vl2_model;

/* How the language model's matrices are held. STORED keeps what the files hold (bf16 in the
 * published checkpoints, or what `vl2 quantize` wrote); Q8 and Q4 quantize float matrices
 * while loading (blocks of 32 weights with one scale, see engine/QUANT.md). */
typedef enum {
    VL2_WEIGHTS_STORED = 0,
    VL2_WEIGHTS_Q8,
    VL2_WEIGHTS_Q4,
} vl2_weights_format;

typedef struct vl2_model_params {
    int n_threads;               /* worker threads for the hot loops; 0 = number of CPUs */
    vl2_weights_format weights;  /* default VL2_WEIGHTS_STORED */
    /* STORED weights: copy the matrices a decoded token reads out of the mapped files into
     * memory of the process's own, in 2 MiB pages where the system gives them. Decoding
     * then runs up to a quarter faster (a token streams through every one of those pages,
     * and 4 KiB file pages cost a page walk each); loading takes seconds longer; the peak RSS
     * stays that of the mapped model. Quantized weights are always held this way. */
    bool resident;
    /* Optional: called while tensors are validated and bound, then while the weights are
     * copied or quantized into memory (resident, Q8/Q4 or a quantized checkpoint), with one
     * fraction for the whole load. Returning false cancels the load: vl2_model_load() frees
     * what it made and returns VL2_ERR_CANCELLED. */
    vl2_progress_fn progress;
    void *progress_user_data;
} vl2_model_params;

vl2_model_params vl2_model_default_params(void);

/* Loads the Hugging Face style checkpoint folder `dir`. On success *out_model owns the mapped
 * weights until vl2_model_free(). */
vl2_status vl2_model_load(const char *dir, const vl2_model_params *params, vl2_model **out_model,
                          vl2_error *err);
void vl2_model_free(vl2_model *model);

typedef struct vl2_model_info {
    const char *variant;       /* "tiny" (MHA), "small" (MLA) or "base" (MLA, sigmoid router) */
    int64_t n_params;          /* every parameter in the checkpoint */
    int64_t n_bytes;           /* bytes of mapped tensor data */
    int n_vocab;
    int n_ctx_max;             /* max_position_embeddings */
    int n_layers;
    int hidden_size;
    int n_threads;
    int32_t bos_id, eos_id, pad_id, image_id;
    double load_seconds;
    /* What the work costs, for benchmarks: weight bytes a decoded token reads (attention,
     * dense or shared and the routed experts it picks, router, lm_head), multiply-adds x 2 of
     * the language model's layers per token and of the output head (a prompt runs the head
     * once, for its last token), the attention's per (query, key) pair over all layers, and one
     * vision tile (ViT and projector). */
    const char *weights_format; /* "bf16", "q8", "q4", ... of the language model's experts */
    int64_t decode_bytes_per_token;
    double lm_flops_per_token;
    double lm_head_flops;
    double lm_flops_per_attention_pair;
    double vision_flops_per_tile;
    int64_t kv_values_per_token; /* cached keys and values (or MLA latents) of one position */
} vl2_model_info;

void vl2_model_get_info(const vl2_model *model, vl2_model_info *info);

/* Files changed under a loaded model. The weights are read from the mapped files for as long
 * as the model is loaded, so the files must stay as they were; when they do not (a `git lfs
 * pull`, a new download or a copy into the folder, a truncation), the engine neither crashes
 * nor answers from a mix of old and new bytes:
 *
 * - a read of a mapped file that was cut short, which would raise SIGBUS, is caught by the
 *   engine's SIGBUS handler (installed by the first load, and passing every other SIGBUS on
 *   to the handler installed before it) and reads zeros instead;
 * - vl2_session_prefill(), vl2_session_step() and vl2_session_feed() check the mapped files
 *   (that no read faulted, and that no file was modified in place: same size and mtime) before
 *   a prefill and after running each position, and return VL2_ERR_MODEL_CHANGED with a
 *   message naming the file; text already returned by earlier steps was computed from the
 *   intact weights, nothing computed since the change is returned. The session is reset, and
 *   every later prefill on the model fails the same way: free it and load the folder again.
 *
 * A file replaced by another (renamed over it) or removed does not disturb the loaded model,
 * which keeps reading the old file's pages. This function reports those changes too: it
 * compares config.json, the tokenizer files, the weight index and every weights file with what
 * they were when the model was loaded (identity, size and modification time) and returns
 * VL2_ERR_MODEL_CHANGED, with a message naming the first file that differs and how, when any
 * did; VL2_OK otherwise. A few stat() calls: cheap enough before every generation, which is
 * where Sightline calls it to load the model again when it changed. */
vl2_status vl2_model_check_files(const vl2_model *model, vl2_error *err);

/* ---------------------------------------------------------------------------------------------
 * Tokenizer (byte-level BPE of tokenizer.json; added and special tokens are matched first)
 */

/* Encodes UTF-8 text without adding bos/eos. Writes up to `max_ids` ids and sets *n_ids to the
 * number the text needs (call with max_ids 0 to measure). */
vl2_status vl2_tokenize(const vl2_model *model, const char *text, size_t text_len, int32_t *ids,
                        size_t max_ids, size_t *n_ids, vl2_error *err);

/* Decodes ids to UTF-8 text like the reference tokenizer's decode: special tokens kept unless
 * skip_special, byte sequences that are not valid UTF-8 become U+FFFD, ids without a token
 * (the embedding has more rows than the tokenizer has ids) give nothing. Returns a malloc()ed
 * string (free() it) or NULL on allocation failure. */
char *vl2_detokenize(const vl2_model *model, const int32_t *ids, size_t n_ids, bool skip_special);

/* The tokenizer alone, for tools that only turn text into ids and back (`vl2 tokenize`): it
 * reads the folder's tokenizer.json and nothing else, no config and no weights, and encodes and
 * decodes exactly as a model loaded from the same folder does. Immutable once opened: one
 * tokenizer may be used from several threads at once. */
typedef struct vl2_tokenizer vl2_tokenizer;

/* Opens dir/tokenizer.json. On success *out_tok owns it until vl2_tokenizer_free(). */
vl2_status vl2_tokenizer_open(const char *dir, vl2_tokenizer **out_tok, vl2_error *err);
void vl2_tokenizer_free(vl2_tokenizer *tok);

/* vl2_tokenize() and vl2_detokenize() on the tokenizer alone, with the same contracts. A text
 * never needs more ids than it has bytes. */
vl2_status vl2_tokenizer_tokenize(const vl2_tokenizer *tok, const char *text, size_t text_len,
                                  int32_t *ids, size_t max_ids, size_t *n_ids, vl2_error *err);
char *vl2_tokenizer_detokenize(const vl2_tokenizer *tok, const int32_t *ids, size_t n_ids,
                               bool skip_special);

/* One more than the largest id the tokenizer knows (vocabulary and added tokens). An id below
 * it may still have no token, where the numbering has a gap. */
int32_t vl2_tokenizer_n_vocab(const vl2_tokenizer *tok);
/* The token of `id` as tokenizer.json spells it: a vocabulary entry in its byte-level form
 * ("\xc4\xa0world", i.e. "Ġworld", for " world") or an added token's content ("<image>"). NULL
 * for an id without a token. Owned by tok. */
const char *vl2_tokenizer_token(const vl2_tokenizer *tok, int32_t id);
/* The bytes `id` decodes to: *len bytes, not NUL-terminated, possibly only part of a UTF-8
 * character. NULL (and *len 0) for an id without a token. Owned by tok; len may be NULL. */
const char *vl2_tokenizer_bytes(const vl2_tokenizer *tok, int32_t id, size_t *len);
/* Is `id` a special token (an added token marked special, which decoding can skip)? */
bool vl2_tokenizer_is_special(const vl2_tokenizer *tok, int32_t id);

/* ---------------------------------------------------------------------------------------------
 * Conversations and prompts
 */

typedef enum { VL2_ROLE_USER, VL2_ROLE_ASSISTANT } vl2_role;

/* Raw 8-bit RGB pixels, row-major; stride in bytes (>= 3 * width). Decoding files is the
 * caller's job (the CLI and the app use GdkPixbuf): apply EXIF orientation and drop alpha
 * there. Larger images are refused with VL2_ERR_IMAGE; decoders should check these limits
 * against the file's header before decoding (decompression bombs). */
#define VL2_MAX_IMAGE_SIDE 32768
#define VL2_MAX_IMAGE_PIXELS 100000000
typedef struct vl2_image {
    int width, height, stride;
    const uint8_t *rgb;
} vl2_image;

/* One turn. User content places its images with "<image>" placeholders, one per entry of
 * `images` (another count is refused with VL2_ERR_IMAGE). Content with images but no
 * placeholder gets one "<image>\n" line per image in front of its text, as the official demos
 * write their questions: "What is this?" with two images is read as
 * "<image>\n<image>\nWhat is this?". An assistant turn with empty content marks where
 * generation starts and must come last. */
typedef struct vl2_message {
    vl2_role role;
    const char *content;      /* UTF-8 */
    const vl2_image *images;  /* user turns only */
    int n_images;
} vl2_message;

typedef struct vl2_conversation {
    const vl2_message *messages;
    int n_messages;
    /* Optional system prompt, a feature of this engine: rendered as the reference's sft_format
     * shows it (text, a blank line, then the first turn). NULL or "" reproduces the official
     * processor's token ids exactly, which never contain a system prompt. */
    const char *system_prompt;
} vl2_conversation;

/* The processor's output: token ids (image positions hold the <image> id) and the tiles. */
typedef struct vl2_prompt vl2_prompt;

vl2_status vl2_prompt_new(const vl2_model *model, const vl2_conversation *conv,
                          vl2_prompt **out_prompt, vl2_error *err);
void vl2_prompt_free(vl2_prompt *prompt);
/* The number of token ids vl2_prompt_new() makes for `conv`, without making them: images are
 * read for their width and height only (rgb may be NULL), which decide their tile grid and so
 * their run of <image> ids; nothing is tiled. The checks and errors are vl2_prompt_new()'s,
 * less those on pixels. Cheap enough to run as a person types: the text is tokenized, once. */
vl2_status vl2_prompt_count_tokens(const vl2_model *model, const vl2_conversation *conv,
                                   size_t *n_tokens, vl2_error *err);
size_t vl2_prompt_n_tokens(const vl2_prompt *prompt);
const int32_t *vl2_prompt_ids(const vl2_prompt *prompt);
int vl2_prompt_n_images(const vl2_prompt *prompt);
/* Tile grid of image i: [width_tiles, height_tiles] like the reference's images_spatial_crop. */
void vl2_prompt_image_grid(const vl2_prompt *prompt, int i, int *width_tiles, int *height_tiles);
/* Tiles in processor order (per image: global view, then local tiles row-major), each
 * tile_size x tile_size x 3 bytes. */
int vl2_prompt_n_tiles(const vl2_prompt *prompt);
int vl2_prompt_tile_size(const vl2_prompt *prompt);
const uint8_t *vl2_prompt_tile(const vl2_prompt *prompt, int i);

/* ---------------------------------------------------------------------------------------------
 * Sessions: KV cache, prefill and the caller-driven decode loop
 */

typedef struct vl2_session vl2_session;

typedef enum {
    VL2_KV_F16 = 0,           /* the default: half the memory of F32, well within the tolerances */
    VL2_KV_BF16,
    VL2_KV_F32,
} vl2_kv_type;

/* The arithmetic of the compute-bound stages: encoding images (SigLIP, the projector) and reading
 * prompts (the decoder's products over many tokens). Decoding a token is bound by memory and
 * runs in float32 either way. */
typedef enum {
    VL2_COMPUTE_F32 = 0,      /* float32 throughout: the reference's float32 results (the golden
                               * tests' tolerances) */
    VL2_COMPUTE_BF16,         /* the products' operands rounded to bf16, sums in float32: about
                               * twice as fast where the CPU has bf16 dot products (AVX-512 BF16);
                               * as close to float32 as the official bf16 inference, or closer
                               * (engine/BENCHMARKS.md) */
} vl2_compute;

/* "f32" or "bf16" to the mode, false for anything else; and back (NULL for no mode). */
bool vl2_compute_from_name(const char *name, vl2_compute *out);
const char *vl2_compute_name(vl2_compute compute);
/* True where the bf16 mode runs on bf16 dot-product instructions (x86-64 AVX-512 BF16) and so
 * is faster; elsewhere it computes the same values through float32 kernels, no faster. */
bool vl2_compute_bf16_native(void);

typedef struct vl2_session_params {
    int n_ctx;                /* KV cache capacity in tokens; 0 = max_position_embeddings */
    vl2_kv_type kv_type;      /* how cached keys and values are stored */
    vl2_compute compute;      /* default VL2_COMPUTE_F32 */
    /* Bytes of KV cache the session may keep for conversations it has put aside, so that
     * coming back to one does not read it again (its images above all). When a prompt leaves
     * the cached conversation (another chat), that conversation is kept, and a later prompt
     * starting like it takes it back; the least recently used go first when the budget is
     * exceeded. 0 (the default): only the conversation in the cache is kept. */
    size_t cache_budget;
} vl2_session_params;

vl2_session_params vl2_session_default_params(void);

vl2_status vl2_session_new(const vl2_model *model, const vl2_session_params *params,
                           vl2_session **out_session, vl2_error *err);
/* Changes the arithmetic of the session's next prefills (what is cached stays). */
vl2_status vl2_session_set_compute(vl2_session *session, vl2_compute compute, vl2_error *err);
void vl2_session_free(vl2_session *session);

/* Added to one token's logit before sampling (OpenAI's logit_bias; -INFINITY bans a token). */
typedef struct vl2_logit_bias {
    int32_t id;
    float bias;
} vl2_logit_bias;

/* A seed that asks for a fresh random seed on every prefill. */
#define VL2_SEED_RANDOM UINT64_MAX

/* Sampling and stopping for one generation. */
typedef struct vl2_generate_params {
    float temperature;         /* <= 0 = greedy (argmax) */
    float top_p;               /* 1 = off */
    int top_k;                 /* 0 = off */
    float repetition_penalty;  /* 1 = off; applies to prompt and generated ids, like transformers */
    uint64_t seed;             /* same seed, same prompt, same answer; default VL2_SEED_RANDOM */
    int max_new_tokens;        /* 0 = until eos or the context is full */
    bool stop_at_eos;
    const char *const *stop_strings; /* generation ends before the first occurrence of any */
    int n_stop_strings;
    const vl2_logit_bias *logit_bias;
    int n_logit_bias;
    /* Optional, called during vision encoding (when an image starts and after each tile) and
     * prefill (after each chunk of positions); vl2_session_get_prefill_progress() says what
     * the fraction stands for. */
    vl2_progress_fn progress;
    void *progress_user_data;
} vl2_generate_params;

/* The defaults. The CLI's help, the app and the app's settings read them from this function
 * and write no numbers of their own. temperature 0.4, top_p 0.9 and repetition_penalty 1.1 are the
 * official inference example's, top_k 50 the transformers default that example inherits; a
 * random seed; stop at eos. max_new_tokens is 1024: the official example's 512 cuts off the
 * long answers the model is made for (a page of OCR, a document or a table in Markdown, a
 * grounded caption of a busy scene), its chat demo allows 2048, and 1024 is a quarter of the
 * models' 4096-token context, leaving the rest to the conversation. */
vl2_generate_params vl2_generate_default_params(void);

/* Starts a generation: encodes the prompt's images, then runs the prompt through the decoder.
 * Cached positions shared with the previous prompt (same ids and the same images) are reused.
 * The prompt is copied; it may be freed afterwards. */
vl2_status vl2_session_prefill(vl2_session *session, const vl2_prompt *prompt,
                               const vl2_generate_params *params, vl2_error *err);

/* Reads ahead: encodes the prompt's images and runs its positions up to the end of its last
 * image into the cache, without starting a generation (vl2_session_step() is then an error
 * until the next prefill). Those positions do not depend on the text after the last image
 * (the prompt builder tokenizes the text between images on its own), so a prompt built while
 * a question is still being typed, with any text after its images, prepares the one that is
 * sent: its prefill then finds the images in the cache and reads only the question. A prompt
 * without images prepares nothing. Progress and cancellation as for vl2_session_prefill()
 * (params may be NULL; only its progress fields are read). */
vl2_status vl2_session_prepare(vl2_session *session, const vl2_prompt *prompt,
                               const vl2_generate_params *params, vl2_error *err);

/* What the prefill in progress is doing, for its progress callback to put into words
 * ("reading image 2 of 3, tile 4 of 7"). Images inside the reused cache are not encoded again
 * and not counted. */
typedef struct vl2_prefill_progress {
    int image;         /* the image being encoded, 1..n_images; 0 once the text runs */
    int n_images;      /* images this prefill encodes */
    int tiles_done;    /* tiles of that image encoded so far (its global view is one) */
    int n_tiles;       /* its tiles: 1 + width_tiles x height_tiles */
    int tokens_done;   /* prompt positions run through the decoder so far */
    int n_tokens;      /* positions this prefill runs (the reused prefix excluded) */
} vl2_prefill_progress;

/* Fills *progress from inside a vl2_generate_params.progress callback, on the thread running
 * the prefill. Outside a prefill it describes the last one. */
void vl2_session_get_prefill_progress(const vl2_session *session, vl2_prefill_progress *progress);

typedef enum {
    VL2_STOP_NONE = 0,   /* more to come: call vl2_session_step() again */
    VL2_STOP_EOS,        /* the model ended its answer */
    VL2_STOP_STRING,     /* a stop string appeared (it is not part of the text) */
    VL2_STOP_LENGTH,     /* max_new_tokens reached */
    VL2_STOP_CONTEXT,    /* the KV cache is full */
} vl2_stop_reason;

typedef struct vl2_step {
    int32_t id;          /* the token sampled by this step */
    const char *text;    /* UTF-8 text completed by this step, possibly ""; never a broken
                          * character; valid until the next call on the session */
    vl2_stop_reason stop;
} vl2_step;

/* Samples one token from the current logits, appends it, and (unless the generation stops)
 * runs the decoder one position to produce the next logits. */
vl2_status vl2_session_step(vl2_session *session, vl2_step *out, vl2_error *err);

/* Lower level, for evaluation tools. The logits (n_vocab floats) at the last position run
 * through the decoder; valid until the next call that runs the decoder. */
const float *vl2_session_logits(const vl2_session *session);
/* Appends one token without sampling and runs the decoder one position. */
vl2_status vl2_session_feed(vl2_session *session, int32_t id, vl2_error *err);
/* Number of positions in the KV cache. */
int vl2_session_n_past(const vl2_session *session);
/* Forget everything cached. */
void vl2_session_reset(vl2_session *session);

typedef struct vl2_timings {
    double vision_seconds;     /* tiling done by the prompt is not included */
    double prefill_seconds;
    double decode_seconds;
    int n_tiles;               /* tiles encoded by the last prefill */
    int n_prompt_tokens;       /* positions computed by the last prefill (cache reuse excluded) */
    int n_reused_tokens;       /* positions the last prefill took from the cache */
    int n_decoded;             /* positions decoded one at a time since the last prefill */
} vl2_timings;

void vl2_session_get_timings(const vl2_session *session, vl2_timings *timings);

/* ---------------------------------------------------------------------------------------------
 * Tools: random-weight checkpoints, to measure speed without downloading the real weights
 */

/* A file written beside the weights, e.g. tokenizer.json: a plain file name and its bytes. */
typedef struct vl2_extra_file {
    const char *name;
    const void *data;
    size_t size;
} vl2_extra_file;

typedef struct vl2_random_params {
    uint64_t seed;               /* same seed, same bytes, whatever n_threads; default 0 */
    int n_threads;               /* 0 = number of CPUs */
    bool dry_run;                /* only count (dest may be NULL): nothing is touched */
    bool overwrite;              /* replace a checkpoint already in dest; default false */
    int64_t max_shard_bytes;     /* 0 = 4 GiB; a tensor larger than this gets a shard alone */
    const char *config_name;     /* names the config in error messages; default "config.json" */
    const vl2_extra_file *extra_files; /* copied into dest too (the tokenizer files) */
    int n_extra_files;
    vl2_progress_fn progress;    /* optional: fraction of the bytes written; false cancels */
    void *progress_user_data;
} vl2_random_params;

vl2_random_params vl2_random_default_params(void);

typedef struct vl2_random_info {
    int64_t n_params;
    int64_t n_bytes;             /* tensor data in bf16: the index's total_size */
    int n_tensors;
    int n_shards;
} vl2_random_info;

/* Writes a checkpoint folder with the tensor names, shapes and sharded safetensors layout that
 * `config_json` (the text of a DeepSeek-VL2 config.json) implies, filled with seeded random
 * bf16 values: matrices and embeddings uniform with std 0.02, norm weights 1, biases 0. Into
 * `dest` (created if missing) go config.json (the text as given), the extra files,
 * model-0000i-of-0000N.safetensors shards of at most max_shard_bytes (split between tensors,
 * in the order of the tensor table) and model.safetensors.index.json, also for one shard.
 * The result loads with vl2_model_load() once the extra files include tokenizer.json.
 *
 * Files are written into a hidden temporary folder inside dest and renamed into place at the
 * end, the index last, so an interrupted or failed run never leaves a folder that looks
 * complete; on failure or cancellation what was written is removed. They are not fsynced.
 * A dest that already holds config.json or weights is refused unless params->overwrite;
 * nothing outside dest is written. params may be NULL (the defaults); info (may be NULL)
 * receives the counts, also for a dry run. */
vl2_status vl2_write_random_checkpoint(const char *config_json, const char *dest,
                                       const vl2_random_params *params, vl2_random_info *info,
                                       vl2_error *err);

/* Writes the checkpoint in src_dir with its language model quantized to `format` (Q8 or Q4,
 * as vl2_model_params.weights would while loading) into the new folder dst_dir: one
 * model.safetensors (engine/QUANT.md describes the quantized tensors) plus config.json and
 * the tokenizer files, written beside dst_dir under a hidden name and renamed at the end.
 * dst_dir must not exist. vl2_model_load() reads the result as it is, without quantizing. */
vl2_status vl2_quantize_checkpoint(const char *src_dir, const char *dst_dir,
                                   vl2_weights_format format, vl2_progress_fn progress,
                                   void *progress_user_data, vl2_error *err);

#ifdef __cplusplus
}
#endif

#endif /* VL2_H */
