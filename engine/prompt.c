/* prompt.c - a conversation -> token ids, as DeepseekVLV2Processor.format_messages_v2 makes them.
 *
 * The official processor does not tokenize the sft_format string it shows. It walks the
 * messages and, for the "deepseek" template:
 *   - starts with bos;
 *   - for a user turn, formats "<|User|>: " + content.strip() + "\n\n<|Assistant|>:" (or
 *     "<|User|>:<|Assistant|>:" when the stripped content is empty), splits that text at every
 *     "<image>" and encodes each piece separately, putting the image's token run between them;
 *   - for an assistant turn, encodes content.strip() and appends eos. There is no space after
 *     "<|Assistant|>:" in the ids, although sft_format shows one;
 *   - drops the final eos (inference mode), so a conversation that ends with an empty assistant
 *     turn ends with "<|Assistant|>:".
 * The template's system message is always empty here: the system_prompt argument reaches
 * sft_format only. This engine's own system prompt (vl2_conversation.system_prompt) is encoded
 * the way sft_format renders it: the text and a blank line right after bos. A user turn with
 * images but no "<image>" gets one "<image>\n" line per image in front of its text, as the
 * official demos write their questions, and is then encoded like that tagged text.
 *
 * Counting (vl2_prompt_count_tokens) runs the same builder with `ids_only`: an image's run of
 * <image> ids follows from its width and height through the tiling rule (image.c), so nothing
 * is resized and the pixels are never read.
 */
#include <stdlib.h>
#include <string.h>

#include "vl2-private.h"

static const char IMAGE_TAG[] = "<image>";

/* Python's str.isspace(): Unicode White_Space plus the bidi B/S/WS controls 0x1c..0x1f. */
static bool py_isspace(gunichar c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* str.strip(): the [*start, *end) byte range of s without surrounding whitespace. */
static void py_strip(const char *s, const char **start, const char **end)
{
    const char *b = s, *e = s + strlen(s);
    while (b < e && py_isspace(g_utf8_get_char(b)))
        b = g_utf8_next_char(b);
    while (e > b) {
        const char *p = g_utf8_find_prev_char(b, e);
        if (!p || !py_isspace(g_utf8_get_char(p)))
            break;
        e = p;
    }
    *start = b;
    *end = e;
}

static int count_tags(const char *s, size_t len)
{
    int n = 0;
    const char *end = s + len;
    for (const char *p = s; (p = g_strstr_len(p, end - p, IMAGE_TAG)); p += sizeof IMAGE_TAG - 1)
        n++;
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Building
 */

typedef struct {
    const vl2_model *model;
    vl2_prompt *p;
    vl2_error *err;
    bool ids_only;               /* counting: images give their ids, no tiles */
} builder;

static vl2_status encode(builder *b, const char *text, size_t len)
{
    if (!len)
        return VL2_OK;
    return vl2_tokenizer_encode(b->model->tok, text, len, &b->p->ids, b->err);
}

/* Text with <image> placeholders: encoded piece by piece around each image's run of tokens. */
static vl2_status encode_with_images(builder *b, const char *text, size_t len,
                                     const vl2_image *images, int n_images)
{
    const char *p = text, *end = text + len;
    for (int i = 0; i <= n_images; i++) {
        const char *tag = i < n_images ? g_strstr_len(p, end - p, IMAGE_TAG) : end;
        vl2_status s = encode(b, p, (size_t)(tag - p));
        if (s != VL2_OK)
            return s;
        if (i == n_images)
            break;
        s = b->ids_only ? vl2_prompt_add_image_ids(b->model, b->p, &images[i], b->err)
                        : vl2_prompt_add_image(b->model, b->p, &images[i], b->err);
        if (s != VL2_OK)
            return s;
        p = tag + sizeof IMAGE_TAG - 1;
    }
    return VL2_OK;
}

/* A user turn with images but no placeholder, the way people ask ("What is this?" and a
 * picture), is written the way the official demos write theirs: one "<image>\n" line per image,
 * then the text. Returns a new string, or NULL when the content is used as it stands. */
static char *place_image_tags(const vl2_message *msg)
{
    if (msg->n_images == 0 || strstr(msg->content, IMAGE_TAG))
        return NULL;
    GString *text = g_string_sized_new((sizeof IMAGE_TAG) * (size_t)msg->n_images +
                                       strlen(msg->content));
    for (int i = 0; i < msg->n_images; i++) {
        g_string_append(text, IMAGE_TAG);
        g_string_append_c(text, '\n');
    }
    g_string_append(text, msg->content);
    return g_string_free(text, FALSE);
}

static vl2_status user_turn(builder *b, const vl2_message *msg, int index)
{
    char *tagged = place_image_tags(msg);
    const char *s, *e;
    py_strip(tagged ? tagged : msg->content, &s, &e);
    int tags = count_tags(s, (size_t)(e - s));
    if (tags != msg->n_images) {
        g_free(tagged);
        return vl2_set_error(b->err, VL2_ERR_IMAGE, "message %d has %d <image> placeholder%s but "
                             "%d image%s", index + 1, tags, tags == 1 ? "" : "s", msg->n_images,
                             msg->n_images == 1 ? "" : "s");
    }
    GString *text = g_string_new("<|User|>:");
    if (e > s) {
        g_string_append_c(text, ' ');
        g_string_append_len(text, s, e - s);
        g_string_append(text, "\n\n");
    }
    g_string_append(text, "<|Assistant|>:");
    g_free(tagged);
    vl2_status st = encode_with_images(b, text->str, text->len, msg->images, msg->n_images);
    g_string_free(text, TRUE);
    return st;
}

static vl2_status assistant_turn(builder *b, const vl2_message *msg, int index)
{
    const char *s, *e;
    py_strip(msg->content, &s, &e);
    if (count_tags(s, (size_t)(e - s)) || msg->n_images)
        return vl2_set_error(b->err, VL2_ERR_INVALID_ARGUMENT, "message %d: an assistant turn "
                             "cannot hold images", index + 1);
    vl2_status st = encode(b, s, (size_t)(e - s));
    if (st == VL2_OK && !vl2_ids_push(&b->p->ids, b->model->eos_id))
        st = vl2_set_error(b->err, VL2_ERR_NO_MEMORY, "out of memory building the prompt");
    return st;
}

static vl2_status check_conversation(const vl2_conversation *c, vl2_error *err)
{
    if (!c || !c->messages || c->n_messages <= 0)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "the conversation has no messages");
    int last_user = -1;
    for (int i = 0; i < c->n_messages; i++) {
        const vl2_message *m = &c->messages[i];
        if (m->role != VL2_ROLE_USER && m->role != VL2_ROLE_ASSISTANT)
            return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "message %d has an unknown role",
                                 i + 1);
        if (!m->content || !g_utf8_validate(m->content, -1, NULL))
            return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "message %d is not UTF-8 text",
                                 i + 1);
        if (m->n_images < 0 || (m->n_images > 0 && !m->images))
            return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "message %d has an invalid image "
                                 "list", i + 1);
        if (m->role == VL2_ROLE_USER)
            last_user = i;
    }
    if (c->system_prompt && !g_utf8_validate(c->system_prompt, -1, NULL))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "the system prompt is not UTF-8 text");
    if (c->system_prompt && strstr(c->system_prompt, IMAGE_TAG))
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "the system prompt cannot hold "
                             "<image>; images belong to user messages");
    if (last_user < 0)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "the conversation has no user message");
    /* An empty question is a mistake, not something to send to the model. */
    const vl2_message *q = &c->messages[last_user];
    const char *s, *e;
    py_strip(q->content, &s, &e);
    if (s == e && q->n_images == 0)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "the prompt is empty");
    return VL2_OK;
}

static vl2_status build(const vl2_model *model, const vl2_conversation *conv, bool ids_only,
                        vl2_prompt **out_prompt, vl2_error *err)
{
    if (!model)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "model is NULL");
    vl2_status s = check_conversation(conv, err);
    if (s != VL2_OK)
        return s;

    vl2_prompt *p = calloc(1, sizeof *p);
    if (!p)
        return vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory building the prompt");
    p->tile_size = model->cfg.vision.image_size;
    int total_images = 0;
    for (int i = 0; i < conv->n_messages; i++)
        total_images += conv->messages[i].n_images;
    p->n_images_total = total_images;

    builder b = { model, p, err, ids_only };
    if (!vl2_ids_push(&p->ids, model->bos_id)) {
        s = vl2_set_error(err, VL2_ERR_NO_MEMORY, "out of memory building the prompt");
        goto fail;
    }
    if (conv->system_prompt && *conv->system_prompt) {
        GString *sys = g_string_new(conv->system_prompt);
        g_string_append(sys, "\n\n");
        s = encode(&b, sys->str, sys->len);
        g_string_free(sys, TRUE);
        if (s != VL2_OK)
            goto fail;
    }
    for (int i = 0; i < conv->n_messages; i++) {
        const vl2_message *m = &conv->messages[i];
        s = m->role == VL2_ROLE_USER ? user_turn(&b, m, i) : assistant_turn(&b, m, i);
        if (s != VL2_OK)
            goto fail;
    }
    /* A conversation that ends with the user's turn gets the empty assistant turn implied. The
     * processor then removes the trailing eos: the model continues after "<|Assistant|>:" or,
     * when the last assistant turn has text, after that text. */
    if (conv->messages[conv->n_messages - 1].role == VL2_ROLE_ASSISTANT)
        p->ids.len--;
    *out_prompt = p;
    return VL2_OK;
fail:
    vl2_prompt_free(p);
    return s;
}

vl2_status vl2_prompt_new(const vl2_model *model, const vl2_conversation *conv,
                          vl2_prompt **out_prompt, vl2_error *err)
{
    if (!out_prompt)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "out_prompt is NULL");
    *out_prompt = NULL;
    return build(model, conv, false, out_prompt, err);
}

vl2_status vl2_prompt_count_tokens(const vl2_model *model, const vl2_conversation *conv,
                                   size_t *n_tokens, vl2_error *err)
{
    if (!n_tokens)
        return vl2_set_error(err, VL2_ERR_INVALID_ARGUMENT, "n_tokens is NULL");
    *n_tokens = 0;
    vl2_prompt *p = NULL;
    vl2_status s = build(model, conv, true, &p, err);
    if (s == VL2_OK)
        *n_tokens = p->ids.len + p->n_ids_counted;
    vl2_prompt_free(p);
    return s;
}

void vl2_prompt_free(vl2_prompt *p)
{
    if (!p)
        return;
    vl2_ids_clear(&p->ids);
    free(p->grid);
    free(p->image_offset);
    free(p->image_hash);
    free(p->tiles);
    free(p);
}

size_t vl2_prompt_n_tokens(const vl2_prompt *p)
{
    return p ? p->ids.len : 0;
}

const int32_t *vl2_prompt_ids(const vl2_prompt *p)
{
    return p ? p->ids.data : NULL;
}

int vl2_prompt_n_images(const vl2_prompt *p)
{
    return p ? p->n_images : 0;
}

void vl2_prompt_image_grid(const vl2_prompt *p, int i, int *width_tiles, int *height_tiles)
{
    bool ok = p && i >= 0 && i < p->n_images;
    if (width_tiles)
        *width_tiles = ok ? p->grid[i][0] : 0;
    if (height_tiles)
        *height_tiles = ok ? p->grid[i][1] : 0;
}

int vl2_prompt_n_tiles(const vl2_prompt *p)
{
    return p ? p->n_tiles : 0;
}

int vl2_prompt_tile_size(const vl2_prompt *p)
{
    return p ? p->tile_size : 0;
}

const uint8_t *vl2_prompt_tile(const vl2_prompt *p, int i)
{
    if (!p || i < 0 || i >= p->n_tiles)
        return NULL;
    return p->tiles + (size_t)i * (size_t)p->tile_size * (size_t)p->tile_size * 3;
}

