/* vl2 - the engine's command line, on the public API (vl2.h) only.
 *
 *   vl2 eval --model DIR --case CASE.json [--images DIR] [--max-new-tokens N]
 *            [--logits-out FILE] [--threads N]
 *       Builds the prompt of one golden-format case exactly as the official processor does,
 *       runs it, and prints one JSON object: input_ids, images_spatial_crop, tiles_sha256,
 *       greedy_ids (N argmax steps, not stopping at eos), greedy_top10_ids/_logits, text and
 *       timings. --logits-out writes the float32 little-endian logits at the last prompt
 *       position. This output is a contract the tests and benchmarks rely on.
 *
 *   vl2 run --model DIR [--image FILE]... --prompt TEXT [sampling options]
 *       Streams an answer for people.
 *
 *   vl2 mkrandom --preset tiny|small|base|CONFIG.json --dest DIR [--seed N] [--dry-run]
 *       Writes a random-weight checkpoint with the published shapes (mkrandom.c).
 *
 *   vl2 quantize --to q8|q4 MODEL_DIR OUT
 *       Writes the checkpoint with its language model quantized (engine/QUANT.md) into the new
 *       folder OUT, which loads without quantizing again.
 *
 *   vl2 pull REPO [--revision REV] [--dest DIR]
 *       Downloads a model from the Hugging Face Hub into the app's models folder, resuming
 *       and verifying (pull.c, on the app's downloader).
 *
 *   vl2 bench --model DIR [...]
 *       Speed against this machine's memory bandwidth and arithmetic peak (bench.c).
 *
 *   vl2 tokenize --model DIR [--json] TEXT
 *       The token ids of TEXT as the tokenizer encodes raw text: no chat template, no bos (the
 *       reference's encode(text, add_special_tokens=False)). TEXT - reads standard input, as it
 *       is, a final newline included. One line of ids; --json prints one object a token,
 *       {"id", "token": its string in tokenizer.json, "text": what it decodes to, or "bytes"
 *       when that is only part of a character, "special"}. Reads only DIR/tokenizer.json.
 *
 *   vl2 detokenize --model DIR [--json] [--skip-special] [ID...]
 *       The text of token ids (arguments, or standard input when there are none or -; separated
 *       by white space or commas) and a newline; --json prints {"text", "tokens"}, the tokens as
 *       tokenize --json prints them. An id the tokenizer has no token for is an error.
 *
 * Errors: exit status 1 (2 for usage) and one line on stderr.
 */
#include <glib.h>
#include <json-glib/json-glib.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "app-json.h"
#include "cli-util.h"
#include "image-file.h"
#include "mkrandom.h"
#include "pull.h"
#include "vl2-input.h"
#include "vl2.h"


/* ---------------------------------------------------------------------------------------------
 * Conversations from golden-format case files
 */

typedef struct {
    GPtrArray *strings;          /* owned contents */
    GArray *messages;            /* vl2_message */
    GArray *images;              /* vl2_image, all messages */
    char *system_prompt;
} conversation;

static void conversation_clear(conversation *c)
{
    if (c->strings)
        g_ptr_array_unref(c->strings);
    if (c->messages)
        g_array_unref(c->messages);
    if (c->images) {
        for (guint i = 0; i < c->images->len; i++)
            g_free((void *)g_array_index(c->images, vl2_image, i).rgb);
        g_array_unref(c->images);
    }
    g_free(c->system_prompt);
    memset(c, 0, sizeof *c);
}

static bool parse_role(const char *s, vl2_role *role)
{
    if (!strcmp(s, "<|User|>") || !strcmp(s, "user")) {
        *role = VL2_ROLE_USER;
        return true;
    }
    if (!strcmp(s, "<|Assistant|>") || !strcmp(s, "assistant")) {
        *role = VL2_ROLE_ASSISTANT;
        return true;
    }
    return false;
}

static bool add_image(conversation *c, const char *file, char **error)
{
    ImageRgb im;
    g_autoptr(GError) gerr = NULL;
    if (!image_file_load(file, &im, &gerr)) {
        *error = g_strdup(gerr->message);
        return false;
    }
    vl2_image v = { im.width, im.height, im.stride, im.rgb };
    g_array_append_val(c->images, v);
    return true;
}

/* A text argument as UTF-8: taken as it is when it is UTF-8 (the encoding of nearly every
 * terminal, and the only reading of non-ASCII bytes in the C locale), else converted from the
 * locale's encoding. False when it is neither. */
static bool text_argument(char **arg)
{
    if (g_utf8_validate(*arg, -1, NULL))
        return true;
    char *utf8 = g_locale_to_utf8(*arg, -1, NULL, NULL, NULL);
    if (!utf8 || !g_utf8_validate(utf8, -1, NULL)) {
        g_free(utf8);
        return false;
    }
    g_free(*arg);
    *arg = utf8;
    return true;
}

/* The string value of o[key]; NULL when it is missing or of another type. */
static const char *string_member(JsonObject *o, const char *key)
{
    JsonNode *n = json_object_get_member(o, key);
    return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
               ? json_node_get_string(n)
               : NULL;
}

/* Reads CASE.json: {conversation: [{role, content, images?}], system_prompt?}. */
static bool load_case(const char *path, const char *images_dir, conversation *c, char **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) gerr = NULL;
    if (!vl2_json_load_file(parser, path, VL2_EVAL_CASE_MAX_BYTES, &gerr)) {
        *error = g_strdup(gerr->message);
        return false;
    }
    JsonNode *root = json_parser_get_root(parser);
    JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    JsonNode *conv = o ? json_object_get_member(o, "conversation") : NULL;
    if (!conv || !JSON_NODE_HOLDS_ARRAY(conv)) {
        *error = g_strdup_printf("%s: no \"conversation\" list", path);
        return false;
    }
    c->strings = g_ptr_array_new_with_free_func(g_free);
    c->messages = g_array_new(FALSE, TRUE, sizeof(vl2_message));
    c->images = g_array_new(FALSE, TRUE, sizeof(vl2_image));
    if (o && json_object_has_member(o, "system_prompt") &&
        !JSON_NODE_HOLDS_NULL(json_object_get_member(o, "system_prompt"))) {
        const char *system = string_member(o, "system_prompt");
        if (!system) {
            *error = g_strdup_printf("%s: \"system_prompt\" is not a string", path);
            return false;
        }
        c->system_prompt = g_strdup(system);
    }

    JsonArray *a = json_node_get_array(conv);
    GArray *counts = g_array_new(FALSE, TRUE, sizeof(int));
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *mn = json_array_get_element(a, i);
        JsonObject *mo = JSON_NODE_HOLDS_OBJECT(mn) ? json_node_get_object(mn) : NULL;
        const char *role = mo ? string_member(mo, "role") : NULL;
        const char *content = mo ? string_member(mo, "content") : NULL;
        vl2_message msg = { 0 };
        if (!role || !content || !parse_role(role, &msg.role)) {
            *error = g_strdup_printf("%s: message %u needs a role (<|User|> or <|Assistant|>) "
                                     "and a content string", path, i + 1);
            g_array_unref(counts);
            return false;
        }
        char *text = g_strdup(content);
        g_ptr_array_add(c->strings, text);
        msg.content = text;
        int n_images = 0;
        JsonNode *imgs = json_object_get_member(mo, "images");
        if (imgs && JSON_NODE_HOLDS_ARRAY(imgs)) {
            JsonArray *ia = json_node_get_array(imgs);
            for (guint k = 0; k < json_array_get_length(ia); k++) {
                JsonNode *in = json_array_get_element(ia, k);
                if (!JSON_NODE_HOLDS_VALUE(in) || json_node_get_value_type(in) != G_TYPE_STRING) {
                    *error = g_strdup_printf("%s: message %u: images must be file names", path,
                                             i + 1);
                    g_array_unref(counts);
                    return false;
                }
                g_autofree char *file = g_build_filename(images_dir, json_node_get_string(in),
                                                         NULL);
                if (!add_image(c, file, error)) {
                    g_array_unref(counts);
                    return false;
                }
                n_images++;
            }
        }
        g_array_append_val(counts, n_images);
        g_array_append_val(c->messages, msg);
    }
    /* Point each message at its slice of the image array (stable now). */
    guint next = 0;
    for (guint i = 0; i < c->messages->len; i++) {
        vl2_message *m = &g_array_index(c->messages, vl2_message, i);
        m->n_images = g_array_index(counts, int, i);
        m->images = m->n_images ? &g_array_index(c->images, vl2_image, next) : NULL;
        next += (guint)m->n_images;
    }
    g_array_unref(counts);
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * eval
 */

typedef struct {
    int32_t id;
    float logit;
} scored;

static int by_logit_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

/* The 10 largest logits, in descending order (ties: lower id first, like a stable argmax). */
static void top10(const float *logits, int n, scored *out)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (k < 10) {
            out[k++] = (scored){ i, logits[i] };
            qsort(out, (size_t)k, sizeof *out, by_logit_desc);
        } else if (logits[i] > out[9].logit) {
            out[9] = (scored){ i, logits[i] };
            qsort(out, 10, sizeof *out, by_logit_desc);
        }
    }
}

static char *tiles_sha256(const vl2_prompt *p)
{
    int n = vl2_prompt_n_tiles(p);
    if (n == 0)
        return NULL;
    size_t size = (size_t)vl2_prompt_tile_size(p) * (size_t)vl2_prompt_tile_size(p) * 3;
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    for (int i = 0; i < n; i++)
        g_checksum_update(sum, vl2_prompt_tile(p, i), (gssize)size);
    char *hex = g_strdup(g_checksum_get_string(sum));
    g_checksum_free(sum);
    return hex;
}

static bool write_logits(const char *path, const float *logits, int n, char **error)
{
    /* float32 little-endian, as the machines this runs on store it */
    g_autoptr(GError) gerr = NULL;
    if (!g_file_set_contents(path, (const char *)logits, (gssize)n * (gssize)sizeof(float),
                             &gerr)) {
        *error = g_strdup_printf("%s: %s", path, gerr->message);
        return false;
    }
    return true;
}

static void add_ids(JsonBuilder *b, const char *name, const int32_t *ids, size_t n)
{
    json_builder_set_member_name(b, name);
    json_builder_begin_array(b);
    for (size_t i = 0; i < n; i++)
        json_builder_add_int_value(b, ids[i]);
    json_builder_end_array(b);
}

/* [steps][10] of the top-10 ids or their logits. */
static void add_top10(JsonBuilder *b, const char *name, const scored *top, int steps, bool logits)
{
    json_builder_set_member_name(b, name);
    json_builder_begin_array(b);
    for (int i = 0; i < steps; i++) {
        json_builder_begin_array(b);
        for (int k = 0; k < 10; k++) {
            const scored *e = &top[(size_t)i * 10 + k];
            if (logits)
                json_builder_add_double_value(b, e->logit);
            else
                json_builder_add_int_value(b, e->id);
        }
        json_builder_end_array(b);
    }
    json_builder_end_array(b);
}

/* Runs the greedy steps after a prefill and prints the eval JSON. Returns the exit status. */
static int eval_report(vl2_model *model, const vl2_prompt *prompt, vl2_session *s, int max_new,
                       const char *logits_out)
{
    vl2_error err;
    char *error = NULL;
    vl2_model_info info;
    vl2_model_get_info(model, &info);
    if (logits_out && !write_logits(logits_out, vl2_session_logits(s), info.n_vocab, &error)) {
        vl2_cli_fail("%s", error);
        g_free(error);
        return 1;
    }

    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    add_ids(b, "input_ids", vl2_prompt_ids(prompt), vl2_prompt_n_tokens(prompt));
    json_builder_set_member_name(b, "images_spatial_crop");
    json_builder_begin_array(b);
    for (int i = 0; i < vl2_prompt_n_images(prompt); i++) {
        int w, h;
        vl2_prompt_image_grid(prompt, i, &w, &h);
        json_builder_begin_array(b);
        json_builder_add_int_value(b, w);
        json_builder_add_int_value(b, h);
        json_builder_end_array(b);
    }
    json_builder_end_array(b);
    g_autofree char *sha = tiles_sha256(prompt);
    json_builder_set_member_name(b, "tiles_sha256");
    if (sha)
        json_builder_add_string_value(b, sha);
    else
        json_builder_add_null_value(b);

    /* Greedy steps straight from the logits: argmax, fed back, eos included. */
    int32_t *greedy = g_new0(int32_t, max_new > 0 ? max_new : 1);
    scored *top = g_new0(scored, (size_t)(max_new > 0 ? max_new : 1) * 10);
    for (int step = 0; step < max_new; step++) {
        top10(vl2_session_logits(s), info.n_vocab, top + (size_t)step * 10);
        greedy[step] = top[(size_t)step * 10].id;
        if (step + 1 < max_new && vl2_session_feed(s, greedy[step], &err) != VL2_OK) {
            vl2_cli_fail("%s", err.message);
            g_free(greedy);
            g_free(top);
            return 1;
        }
    }
    add_ids(b, "greedy_ids", greedy, (size_t)max_new);
    add_top10(b, "greedy_top10_ids", top, max_new, false);
    add_top10(b, "greedy_top10_logits", top, max_new, true);
    char *text = vl2_detokenize(model, greedy, (size_t)max_new, false);
    json_builder_set_member_name(b, "text");
    json_builder_add_string_value(b, text ? text : "");
    free(text);
    g_free(greedy);
    g_free(top);

    vl2_timings t;
    vl2_session_get_timings(s, &t);
    json_builder_set_member_name(b, "timings");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "load_s");
    json_builder_add_double_value(b, info.load_seconds);
    json_builder_set_member_name(b, "vision_s");
    json_builder_add_double_value(b, t.vision_seconds);
    json_builder_set_member_name(b, "prefill_s");
    json_builder_add_double_value(b, t.prefill_seconds);
    json_builder_set_member_name(b, "decode_s");
    json_builder_add_double_value(b, t.decode_seconds);
    json_builder_set_member_name(b, "tiles");
    json_builder_add_int_value(b, t.n_tiles);
    json_builder_set_member_name(b, "prompt_tokens");
    json_builder_add_int_value(b, t.n_prompt_tokens);
    json_builder_set_member_name(b, "decoded_tokens");
    json_builder_add_int_value(b, t.n_decoded);
    json_builder_set_member_name(b, "threads");
    json_builder_add_int_value(b, info.n_threads);
    json_builder_end_object(b);
    json_builder_end_object(b);

    JsonNode *root = json_builder_get_root(b);
    g_autofree char *json = app_json_to_data(root, FALSE, NULL);
    json_node_unref(root);
    puts(json);
    return 0;
}

static int cmd_eval(int argc, char **argv)
{
    g_autofree char *model_dir = NULL, *case_path = NULL, *images_dir = NULL, *logits_out = NULL,
                    *compute = NULL;
    int max_new = 12, threads = 0;
    GOptionEntry entries[] = {
        { "model", 0, 0, G_OPTION_ARG_FILENAME, &model_dir, "Checkpoint folder", "DIR" },
        { "case", 0, 0, G_OPTION_ARG_FILENAME, &case_path, "Case file (golden cases.json entry)",
          "CASE.json" },
        { "images", 0, 0, G_OPTION_ARG_FILENAME, &images_dir,
          "Folder the case's image names resolve against (default: the case's folder)", "DIR" },
        { "max-new-tokens", 0, 0, G_OPTION_ARG_INT, &max_new, "Greedy steps (default 12)", "N" },
        { "logits-out", 0, 0, G_OPTION_ARG_FILENAME, &logits_out,
          "Write float32 logits at the last prompt position", "FILE" },
        { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "Worker threads (default: all CPUs)", "N" },
        { "compute", 0, 0, G_OPTION_ARG_STRING, &compute, "Arithmetic of vision and prompt "
          "reading: f32 (default) or bf16", "MODE" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- evaluate one case");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr))
        return vl2_cli_usage(ctx, gerr->message);
    if (!model_dir || !case_path)
        return vl2_cli_usage(ctx, "eval needs --model and --case");
    if (max_new < 0)
        return vl2_cli_usage(ctx, "--max-new-tokens must be >= 0");
    vl2_session_params sp = vl2_session_default_params();
    if (compute && !vl2_compute_from_name(compute, &sp.compute))
        return vl2_cli_usage(ctx, "--compute is f32 or bf16");
    if (!images_dir)
        images_dir = g_path_get_dirname(case_path);

    conversation c = { 0 };
    char *error = NULL;
    if (!load_case(case_path, images_dir, &c, &error)) {
        int r = vl2_cli_fail("%s", error);
        g_free(error);
        conversation_clear(&c);
        return r;
    }

    vl2_error err;
    vl2_model *model = NULL;
    vl2_session *s = NULL;
    vl2_prompt *prompt = NULL;
    int rc = 1;
    vl2_model_params mp = vl2_model_default_params();
    mp.n_threads = threads;
    if (vl2_model_load(model_dir, &mp, &model, &err) != VL2_OK) {
        vl2_cli_fail("%s", err.message);
        goto out;
    }
    /* eval reproduces the official processor, whose token ids never carry system_prompt */
    vl2_conversation conv = { (const vl2_message *)c.messages->data, (int)c.messages->len, NULL };
    if (vl2_prompt_new(model, &conv, &prompt, &err) != VL2_OK ||
        vl2_session_new(model, &sp, &s, &err) != VL2_OK) {
        vl2_cli_fail("%s", err.message);
        goto out;
    }
    /* the greedy steps' records are allocated up front: bounded by what the context holds */
    vl2_model_info info;
    vl2_model_get_info(model, &info);
    const int64_t room = (int64_t)info.n_ctx_max - (int64_t)vl2_prompt_n_tokens(prompt);
    if (max_new > room) {
        vl2_cli_fail("--max-new-tokens %d does not fit: the prompt takes %zu of the model's %d "
                     "tokens of context", max_new, vl2_prompt_n_tokens(prompt), info.n_ctx_max);
        goto out;
    }
    vl2_generate_params gp = vl2_generate_default_params();
    gp.temperature = 0;
    gp.repetition_penalty = 1;
    if (vl2_session_prefill(s, prompt, &gp, &err) != VL2_OK) {
        vl2_cli_fail("%s", err.message);
        goto out;
    }
    rc = eval_report(model, prompt, s, max_new, logits_out);
out:
    vl2_prompt_free(prompt);
    vl2_session_free(s);
    vl2_model_free(model);
    conversation_clear(&c);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * run
 */

static bool show_progress(float fraction, void *user_data)
{
    if (isatty(fileno(stderr))) {
        fprintf(stderr, "\r%s %3.0f%%", (const char *)user_data, fraction * 100);
        if (fraction >= 1)
            fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    return true;
}

static bool parse_weights(const char *s, vl2_weights_format *out)
{
    if (!s || !strcmp(s, "stored") || !strcmp(s, "bf16"))
        *out = VL2_WEIGHTS_STORED;
    else if (!strcmp(s, "q8"))
        *out = VL2_WEIGHTS_Q8;
    else if (!strcmp(s, "q4"))
        *out = VL2_WEIGHTS_Q4;
    else
        return false;
    return true;
}

static int cmd_run(int argc, char **argv)
{
    g_autofree char *model_dir = NULL, *prompt_text = NULL, *system = NULL, *weights = NULL,
                    *compute = NULL;
    g_auto(GStrv) images = NULL;
    vl2_generate_params gp = vl2_generate_default_params();
    double temperature = gp.temperature, top_p = gp.top_p, penalty = gp.repetition_penalty;
    int top_k = gp.top_k, max_new = gp.max_new_tokens, threads = 0, n_ctx = 0;
    gint64 seed = -1;
    gboolean resident = FALSE;
    /* The help shows the engine's defaults, which are written in one place only. */
    g_autofree char *temperature_help =
        g_strdup_printf("Sampling temperature (default %g; 0 = greedy)", temperature);
    g_autofree char *top_p_help = g_strdup_printf("Nucleus sampling mass (default %g)", top_p);
    g_autofree char *top_k_help = g_strdup_printf("Keep the K most likely (default %d)", top_k);
    g_autofree char *penalty_help = g_strdup_printf("Repetition penalty (default %g)", penalty);
    g_autofree char *max_new_help =
        g_strdup_printf("Answer length limit (default %d; 0 = no limit)", max_new);
    GOptionEntry entries[] = {
        { "model", 0, 0, G_OPTION_ARG_FILENAME, &model_dir, "Checkpoint folder", "DIR" },
        { "image", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &images, "Image to ask about (repeatable)",
          "FILE" },
        /* as bytes (GOption would convert from the locale's encoding, which fails for any
         * non-ASCII text in the C locale): text_argument() makes them UTF-8 */
        { "prompt", 0, 0, G_OPTION_ARG_FILENAME, &prompt_text, "The question", "TEXT" },
        { "system", 0, 0, G_OPTION_ARG_FILENAME, &system, "System prompt", "TEXT" },
        { "temperature", 0, 0, G_OPTION_ARG_DOUBLE, &temperature, temperature_help, "T" },
        { "top-p", 0, 0, G_OPTION_ARG_DOUBLE, &top_p, top_p_help, "P" },
        { "top-k", 0, 0, G_OPTION_ARG_INT, &top_k, top_k_help, "K" },
        { "repetition-penalty", 0, 0, G_OPTION_ARG_DOUBLE, &penalty, penalty_help, "R" },
        { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Random seed (default: random)", "N" },
        { "max-new-tokens", 0, 0, G_OPTION_ARG_INT, &max_new, max_new_help, "N" },
        { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "Worker threads (default: all CPUs)", "N" },
        { "ctx", 0, 0, G_OPTION_ARG_INT, &n_ctx, "Context size (default: the model's)", "N" },
        { "weights", 0, 0, G_OPTION_ARG_STRING, &weights, "Language model weights: as stored "
          "(default), or q8 / q4 quantized while loading", "FORMAT" },
        { "resident", 0, 0, G_OPTION_ARG_NONE, &resident, "Copy the stored weights into memory "
          "while loading: slower to load, faster to decode", NULL },
        { "compute", 0, 0, G_OPTION_ARG_STRING, &compute, "Arithmetic of vision and prompt "
          "reading: f32 (default) or bf16", "MODE" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- answer a question about images");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr))
        return vl2_cli_usage(ctx, gerr->message);
    if (!model_dir || !prompt_text)
        return vl2_cli_usage(ctx, "run needs --model and --prompt");
    if (!text_argument(&prompt_text))
        return vl2_cli_usage(ctx, "--prompt is not text in UTF-8 or this locale's encoding");
    if (system && !text_argument(&system))
        return vl2_cli_usage(ctx, "--system is not text in UTF-8 or this locale's encoding");
    vl2_weights_format wformat;
    if (!parse_weights(weights, &wformat))
        return vl2_cli_usage(ctx, "--weights is q8 or q4");
    vl2_session_params sp = vl2_session_default_params();
    if (compute && !vl2_compute_from_name(compute, &sp.compute))
        return vl2_cli_usage(ctx, "--compute is f32 or bf16");
    conversation c = { 0 };
    c.images = g_array_new(FALSE, TRUE, sizeof(vl2_image));
    int n_images = images ? (int)g_strv_length(images) : 0;
    for (int i = 0; i < n_images; i++) {
        char *error = NULL;
        if (!add_image(&c, images[i], &error)) {
            int r = vl2_cli_fail("%s", error);
            g_free(error);
            conversation_clear(&c);
            return r;
        }
    }

    vl2_error err;
    vl2_model *model = NULL;
    vl2_session *s = NULL;
    vl2_prompt *prompt = NULL;
    int rc = 1;
    vl2_model_params mp = vl2_model_default_params();
    mp.n_threads = threads;
    mp.weights = wformat;
    mp.resident = resident;
    mp.progress = show_progress;
    mp.progress_user_data = "loading";
    if (vl2_model_load(model_dir, &mp, &model, &err) != VL2_OK) {
        vl2_cli_fail("%s", err.message);
        goto out;
    }
    /* a prompt without <image> tags gets them from the prompt builder (see vl2_message) */
    vl2_message msg = { VL2_ROLE_USER, prompt_text, (const vl2_image *)c.images->data, n_images };
    vl2_conversation conv = { &msg, 1, system };
    sp.n_ctx = n_ctx;
    if (vl2_prompt_new(model, &conv, &prompt, &err) != VL2_OK ||
        vl2_session_new(model, &sp, &s, &err) != VL2_OK) {
        vl2_cli_fail("%s", err.message);
        goto out;
    }
    gp.temperature = (float)temperature;
    gp.top_p = (float)top_p;
    gp.top_k = top_k;
    gp.repetition_penalty = (float)penalty;
    gp.max_new_tokens = max_new;
    if (seed >= 0)
        gp.seed = (uint64_t)seed;
    gp.progress = show_progress;
    gp.progress_user_data = n_images ? "looking" : "reading";
    if (vl2_session_prefill(s, prompt, &gp, &err) != VL2_OK) {
        vl2_cli_fail("%s", err.message);
        goto out;
    }
    vl2_step step;
    do {
        if (vl2_session_step(s, &step, &err) != VL2_OK) {
            vl2_cli_fail("%s", err.message);
            goto out;
        }
        fputs(step.text, stdout);
        fflush(stdout);
    } while (step.stop == VL2_STOP_NONE);
    fputc('\n', stdout);

    vl2_timings t;
    vl2_session_get_timings(s, &t);
    static const char *why[] = { "", "end of answer", "stop string", "length limit",
                                 "context full" };
    if (t.n_tiles)
        fprintf(stderr, "[%d image tiles in %.2f s] ", t.n_tiles, t.vision_seconds);
    fprintf(stderr, "[%d prompt tokens in %.2f s; %d tokens at %.1f tokens/s; %s]\n",
            t.n_prompt_tokens, t.prefill_seconds, t.n_decoded + 1,
            t.decode_seconds > 0 ? t.n_decoded / t.decode_seconds : 0.0, why[step.stop]);
    rc = 0;
out:
    vl2_prompt_free(prompt);
    vl2_session_free(s);
    vl2_model_free(model);
    conversation_clear(&c);
    return rc;
}

static int cmd_quantize(int argc, char **argv)
{
    g_autofree char *to = NULL;
    GOptionEntry entries[] = {
        { "to", 0, 0, G_OPTION_ARG_STRING, &to, "q8 or q4", "FORMAT" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("MODEL_DIR OUT - quantize a checkpoint");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr))
        return vl2_cli_usage(ctx, gerr->message);
    vl2_weights_format format;
    if (argc != 3 || !to || !parse_weights(to, &format) || format == VL2_WEIGHTS_STORED)
        return vl2_cli_usage(ctx, "quantize needs --to q8|q4, a model folder and a new folder");
    vl2_error err;
    if (vl2_quantize_checkpoint(argv[1], argv[2], format, show_progress, "writing", &err) !=
        VL2_OK)
        return vl2_cli_fail("%s", err.message);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * tokenize, detokenize
 */

/* Offset of the first byte of s[0..len) that is not valid UTF-8, or len. NUL is valid text. */
static size_t utf8_invalid_at(const char *s, size_t len)
{
    const char *end;
    size_t from = 0;
    while (!g_utf8_validate(s + from, (gssize)(len - from), &end)) {
        if (*end != '\0')
            return (size_t)(end - s);
        from = (size_t)(end - s) + 1;
    }
    return len;
}

/* TEXT from the command line in UTF-8: as given when it is valid UTF-8, else converted from the
 * locale's encoding when that is another one. NULL (with *error) when neither works. */
static char *arg_text(const char *arg, char **error)
{
    size_t len = strlen(arg), bad = utf8_invalid_at(arg, len);
    if (bad == len)
        return g_strdup(arg);
    const char *charset;
    if (!g_get_charset(&charset)) {
        char *converted = g_locale_to_utf8(arg, (gssize)len, NULL, NULL, NULL);
        if (converted)
            return converted;
    }
    *error = g_strdup_printf("the text is not valid UTF-8 (byte %zu of %zu is 0x%02x)", bad + 1,
                             len, (unsigned char)arg[bad]);
    return NULL;
}

/* One token for --json: its id; "token", its string in tokenizer.json; "text", the text it
 * decodes to on its own, or "bytes", the byte values, when those are not valid UTF-8 by
 * themselves (a piece of a character); "special". The texts and bytes of a text's tokens, joined
 * in order, give back the text exactly. */
static void add_token(JsonBuilder *b, const vl2_tokenizer *tok, int32_t id)
{
    size_t len;
    const char *bytes = vl2_tokenizer_bytes(tok, id, &len);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "id");
    json_builder_add_int_value(b, id);
    json_builder_set_member_name(b, "token");
    json_builder_add_string_value(b, vl2_tokenizer_token(tok, id));
    if (utf8_invalid_at(bytes, len) == len && !memchr(bytes, '\0', len)) {
        g_autofree char *text = g_strndup(bytes, len);
        json_builder_set_member_name(b, "text");
        json_builder_add_string_value(b, text);
    } else {
        json_builder_set_member_name(b, "bytes");
        json_builder_begin_array(b);
        for (size_t i = 0; i < len; i++)
            json_builder_add_int_value(b, (unsigned char)bytes[i]);
        json_builder_end_array(b);
    }
    json_builder_set_member_name(b, "special");
    json_builder_add_boolean_value(b, vl2_tokenizer_is_special(tok, id));
    json_builder_end_object(b);
}

static void add_tokens(JsonBuilder *b, const vl2_tokenizer *tok, const int32_t *ids, size_t n)
{
    json_builder_begin_array(b);
    for (size_t i = 0; i < n; i++)
        add_token(b, tok, ids[i]);
    json_builder_end_array(b);
}

static void print_json(JsonBuilder *b)
{
    JsonNode *root = json_builder_get_root(b);
    g_autofree char *json = app_json_to_data(root, FALSE, NULL);
    json_node_unref(root);
    puts(json);
}

/* Drops the "--" that GOption leaves in front of the arguments after it (`vl2 tokenize --model
 * DIR -- "-5 degrees"`). */
static void skip_separator(int *argc, char ***argv)
{
    if (*argc >= 2 && !strcmp((*argv)[1], "--")) {
        (*argv)[1] = (*argv)[0];
        (*argc)--;
        (*argv)++;
    }
}

static int cmd_tokenize(int argc, char **argv)
{
    g_autofree char *model_dir = NULL;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        { "model", 0, 0, G_OPTION_ARG_FILENAME, &model_dir,
          "Checkpoint folder (only its tokenizer.json is read)", "DIR" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json,
          "Print [{\"id\", \"token\", \"text\" or \"bytes\", \"special\"}, ...]", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new(
        "TEXT - print the token ids of TEXT (- reads standard input), without the chat template");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr))
        return vl2_cli_usage(ctx, gerr->message);
    skip_separator(&argc, &argv);
    if (!model_dir || argc != 2)
        return vl2_cli_usage(ctx, "tokenize needs --model and one TEXT (quoted), or - to read "
                                  "standard input");

    char *error = NULL;
    g_autofree char *text = NULL;
    size_t len;
    if (!strcmp(argv[1], "-")) {
        GString *in = vl2_cli_read_stdin(&error);
        if (!in)
            goto fail;
        len = in->len;
        text = g_string_free(in, FALSE);
        size_t bad = utf8_invalid_at(text, len);
        if (bad < len) {
            error = g_strdup_printf("standard input is not valid UTF-8 (byte %zu of %zu is "
                                    "0x%02x)", bad + 1, len, (unsigned char)text[bad]);
            goto fail;
        }
    } else {
        if (!(text = arg_text(argv[1], &error)))
            goto fail;
        len = strlen(text);
    }

    vl2_error err;
    vl2_tokenizer *tok;
    if (vl2_tokenizer_open(model_dir, &tok, &err) != VL2_OK)
        return vl2_cli_fail("%s", err.message);
    /* never more ids than bytes */
    int32_t *ids = g_new(int32_t, len + 1);
    size_t n = 0;
    if (vl2_tokenizer_tokenize(tok, text, len, ids, len + 1, &n, &err) != VL2_OK) {
        vl2_tokenizer_free(tok);
        g_free(ids);
        return vl2_cli_fail("%s", err.message);
    }
    if (json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        add_tokens(b, tok, ids, n);
        print_json(b);
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", ids[i]);
        putchar('\n');
    }
    vl2_tokenizer_free(tok);
    g_free(ids);
    return 0;
fail:;
    int r = vl2_cli_fail("%s", error);
    g_free(error);
    return r;
}

/* Appends the ids written in `s`, separated by white space or commas, checking each against the
 * tokenizer. */
static bool parse_ids(const char *s, const vl2_tokenizer *tok, const char *model_dir, GArray *ids,
                      char **error)
{
    g_auto(GStrv) words = g_regex_split_simple("[\\s,]+", s, 0, 0);
    for (char **w = words; *w; w++) {
        if (!**w)
            continue;
        const char *digits = **w == '-' ? *w + 1 : *w;
        bool number = *digits != '\0';
        for (const char *c = digits; *c && number; c++)
            number = g_ascii_isdigit(*c);
        if (!number) {
            *error = g_strdup_printf("\"%s\" is not a token id", *w);
            return false;
        }
        gint64 id = g_ascii_strtoll(*w, NULL, 10); /* saturates: still out of range */
        int32_t n_vocab = vl2_tokenizer_n_vocab(tok);
        if (id < 0 || id >= n_vocab) {
            *error = g_strdup_printf("token id %s is out of range: the tokenizer of %s has ids 0 "
                                     "to %d", *w, model_dir, n_vocab - 1);
            return false;
        }
        if (!vl2_tokenizer_token(tok, (int32_t)id)) {
            *error = g_strdup_printf("token id %s has no token in the tokenizer of %s", *w,
                                     model_dir);
            return false;
        }
        int32_t v = (int32_t)id;
        g_array_append_val(ids, v);
    }
    return true;
}

static int cmd_detokenize(int argc, char **argv)
{
    g_autofree char *model_dir = NULL;
    gboolean json = FALSE, skip_special = FALSE;
    GOptionEntry entries[] = {
        { "model", 0, 0, G_OPTION_ARG_FILENAME, &model_dir,
          "Checkpoint folder (only its tokenizer.json is read)", "DIR" },
        { "skip-special", 0, 0, G_OPTION_ARG_NONE, &skip_special, "Leave special tokens out",
          NULL },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json,
          "Print {\"text\", \"tokens\": [...]}, the tokens as tokenize --json prints them", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new(
        "[ID...] - print the text of token ids (none or - reads them from standard input)");
    g_option_context_add_main_entries(ctx, entries, NULL);
    /* so that a negative id reaches the range check instead of being taken for an option */
    g_option_context_set_ignore_unknown_options(ctx, TRUE);
    g_autoptr(GError) gerr = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr))
        return vl2_cli_usage(ctx, gerr->message);
    skip_separator(&argc, &argv);
    if (!model_dir)
        return vl2_cli_usage(ctx, "detokenize needs --model");
    for (int i = 1; i < argc; i++)
        if (g_str_has_prefix(argv[i], "--")) {
            g_autofree char *msg = g_strdup_printf("unknown option %s", argv[i]);
            return vl2_cli_usage(ctx, msg);
        }

    vl2_error err;
    vl2_tokenizer *tok;
    if (vl2_tokenizer_open(model_dir, &tok, &err) != VL2_OK)
        return vl2_cli_fail("%s", err.message);
    char *error = NULL;
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
    bool ok = true;
    if (argc == 1 || (argc == 2 && !strcmp(argv[1], "-"))) {
        GString *in = vl2_cli_read_stdin(&error);
        ok = in && parse_ids(in->str, tok, model_dir, ids, &error);
        if (in)
            g_string_free(in, TRUE);
    } else {
        for (int i = 1; ok && i < argc; i++)
            ok = parse_ids(argv[i], tok, model_dir, ids, &error);
    }
    int rc = 0;
    char *text = ok ? vl2_tokenizer_detokenize(tok, (const int32_t *)ids->data, ids->len,
                                               skip_special)
                    : NULL;
    if (!ok) {
        rc = vl2_cli_fail("%s", error);
    } else if (!text) {
        rc = vl2_cli_fail("out of memory");
    } else if (json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "text");
        json_builder_add_string_value(b, text);
        json_builder_set_member_name(b, "tokens");
        add_tokens(b, tok, (const int32_t *)ids->data, ids->len);
        json_builder_end_object(b);
        print_json(b);
    } else {
        puts(text);
    }
    free(text);
    g_free(error);
    g_array_unref(ids);
    vl2_tokenizer_free(tok);
    return rc;
}

int main(int argc, char **argv)
{
    static const char help[] =
        "usage: vl2 COMMAND [OPTIONS]\n"
        "\n"
        "Commands:\n"
        "  run    answer a question (about images) with a DeepSeek-VL2 checkpoint\n"
        "  eval   evaluate one golden-format case and print JSON\n"
        "  bench  measure speed against this machine's memory bandwidth and arithmetic peak\n"
        "  mkrandom  write a random-weight checkpoint with the published shapes (for speed)\n"
        "  quantize  write a checkpoint with 8- or 4-bit language model weights\n"
        "  pull   download a model from the Hugging Face Hub (resumable, verified)\n"
        "  tokenize    print the token ids of a text, without the chat template\n"
        "  detokenize  print the text of token ids\n"
        "\n"
        "Run 'vl2 COMMAND --help' for a command's options.\n";
    /* Text arguments and messages in the user's encoding (UTF-8 nearly everywhere). */
    setlocale(LC_ALL, "");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "eval"))
        return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "bench"))
        return vl2_cmd_bench(argc - 1, argv + 1);
    if (!strcmp(argv[1], "mkrandom"))
        return vl2_cmd_mkrandom(argc - 1, argv + 1);
    if (!strcmp(argv[1], "quantize"))
        return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "pull"))
        return vl2_cmd_pull(argc - 1, argv + 1);
    if (!strcmp(argv[1], "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "tokenize"))
        return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "detokenize"))
        return cmd_detokenize(argc - 1, argv + 1);
    fprintf(stderr, "vl2: unknown command '%s'\n\n%s", argv[1], help);
    return 2;
}
