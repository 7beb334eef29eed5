/* test-session.c - the public API end to end on mini-tiny: prompts, the decode loop, stop
 * conditions, cache reuse between turns, cancellation, and every misuse returning an error. */
#include <math.h>
#include <string.h>

#include "test-util.h"
#include "vl2.h"

static vl2_model *model;

static vl2_prompt *make_prompt(const vl2_message *msgs, int n, const char *system)
{
    vl2_conversation conv = { msgs, n, system };
    vl2_prompt *p = NULL;
    vl2_error err;
    if (vl2_prompt_new(model, &conv, &p, &err) != VL2_OK)
        g_error("%s", err.message);
    return p;
}

static vl2_session *make_session(int n_ctx)
{
    vl2_session_params sp = vl2_session_default_params();
    sp.n_ctx = n_ctx;
    vl2_session *s;
    vl2_error err;
    g_assert_cmpint(vl2_session_new(model, &sp, &s, &err), ==, VL2_OK);
    return s;
}

static vl2_generate_params greedy(int max_new)
{
    vl2_generate_params gp = vl2_generate_default_params();
    gp.temperature = 0;
    gp.repetition_penalty = 1;
    gp.max_new_tokens = max_new;
    gp.stop_at_eos = false;
    return gp;
}

/* Runs a generation to its end; returns the text, fills ids and the stop reason. */
static char *generate(vl2_session *s, const vl2_prompt *p, const vl2_generate_params *gp,
                      GArray *ids, vl2_stop_reason *why)
{
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(s, p, gp, &err), ==, VL2_OK);
    GString *text = g_string_new(NULL);
    vl2_step st;
    do {
        g_assert_cmpint(vl2_session_step(s, &st, &err), ==, VL2_OK);
        g_assert_true(g_utf8_validate(st.text, -1, NULL));
        g_string_append(text, st.text);
        if (ids)
            g_array_append_val(ids, st.id);
    } while (st.stop == VL2_STOP_NONE);
    if (why)
        *why = st.stop;
    return g_string_free(text, FALSE);
}

static const vl2_message hello[] = {
    { VL2_ROLE_USER, "Hello! Who are you?\nAnswer in one sentence.", NULL, 0 },
    { VL2_ROLE_ASSISTANT, "", NULL, 0 },
};

/* ---------------------------------------------------------------------------------------------
 */

static void test_prompt_errors(void)
{
    vl2_prompt *p = (vl2_prompt *)0x1;
    vl2_error err;
    vl2_conversation none = { NULL, 0, NULL };
    g_assert_cmpint(vl2_prompt_new(model, &none, &p, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_assert_null(p);

    const char *empties[] = { "", "   ", "\n\t \u3000" };
    for (size_t i = 0; i < G_N_ELEMENTS(empties); i++) {
        vl2_message m = { VL2_ROLE_USER, empties[i], NULL, 0 };
        vl2_conversation c = { &m, 1, NULL };
        g_assert_cmpint(vl2_prompt_new(model, &c, &p, &err), ==, VL2_ERR_INVALID_ARGUMENT);
        g_assert_cmpstr(err.message, ==, "the prompt is empty");
    }
    vl2_message bad_utf8 = { VL2_ROLE_USER, "caf\xc3", NULL, 0 };
    vl2_conversation c1 = { &bad_utf8, 1, NULL };
    g_assert_cmpint(vl2_prompt_new(model, &c1, &p, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    vl2_message only_assistant = { VL2_ROLE_ASSISTANT, "hi", NULL, 0 };
    vl2_conversation c2 = { &only_assistant, 1, NULL };
    g_assert_cmpint(vl2_prompt_new(model, &c2, &p, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    vl2_message null_content = { VL2_ROLE_USER, NULL, NULL, 0 };
    vl2_conversation c3 = { &null_content, 1, NULL };
    g_assert_cmpint(vl2_prompt_new(model, &c3, &p, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    /* placeholders and images must agree */
    vl2_message tags = { VL2_ROLE_USER, "<image> and <image>", NULL, 0 };
    vl2_conversation c4 = { &tags, 1, NULL };
    g_assert_cmpint(vl2_prompt_new(model, &c4, &p, &err), ==, VL2_ERR_IMAGE);
    g_assert_nonnull(strstr(err.message, "2 <image> placeholders but 0 images"));
    g_assert_cmpint(vl2_prompt_new(NULL, c4.messages ? &c4 : NULL, &p, &err), ==,
                    VL2_ERR_INVALID_ARGUMENT);
}

/* The product's system prompt: rendered as sft_format shows it, text and a blank line. */
static void test_system_prompt(void)
{
    vl2_prompt *plain = make_prompt(hello, 2, NULL);
    vl2_prompt *empty = make_prompt(hello, 2, "");
    vl2_prompt *sys = make_prompt(hello, 2, "You are a helpful assistant.");
    g_assert_cmpuint(vl2_prompt_n_tokens(plain), ==, vl2_prompt_n_tokens(empty));

    const char text[] = "You are a helpful assistant.\n\n";
    size_t n_sys;
    int32_t sys_ids[32];
    vl2_error err;
    g_assert_cmpint(vl2_tokenize(model, text, strlen(text), sys_ids, 32, &n_sys, &err), ==,
                    VL2_OK);
    size_t n = vl2_prompt_n_tokens(plain);
    g_assert_cmpuint(vl2_prompt_n_tokens(sys), ==, n + n_sys);
    const int32_t *a = vl2_prompt_ids(plain), *b = vl2_prompt_ids(sys);
    g_assert_cmpint(b[0], ==, a[0]); /* bos */
    g_assert_cmpmem(b + 1, n_sys * 4, sys_ids, n_sys * 4);
    g_assert_cmpmem(b + 1 + n_sys, (n - 1) * 4, a + 1, (n - 1) * 4);
    vl2_prompt_free(plain);
    vl2_prompt_free(empty);
    vl2_prompt_free(sys);
}

static void test_step_before_prefill(void)
{
    vl2_session *s = make_session(0);
    vl2_step st;
    vl2_error err;
    g_assert_cmpint(vl2_session_step(s, &st, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_assert_nonnull(strstr(err.message, "prefill"));
    g_assert_null(vl2_session_logits(s));
    g_assert_cmpint(vl2_session_feed(s, -1, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(vl2_session_feed(s, 1 << 30, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(vl2_session_prefill(s, NULL, NULL, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    vl2_session_free(s);
}

static void test_bad_generate_params(void)
{
    vl2_session *s = make_session(64);
    vl2_prompt *p = make_prompt(hello, 2, NULL);
    vl2_error err;
    vl2_generate_params gp = vl2_generate_default_params();
    gp.top_p = 0;
    g_assert_cmpint(vl2_session_prefill(s, p, &gp, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    gp = vl2_generate_default_params();
    gp.temperature = -1;
    g_assert_cmpint(vl2_session_prefill(s, p, &gp, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    gp = vl2_generate_default_params();
    const char *stops[] = { "" };
    gp.stop_strings = stops;
    gp.n_stop_strings = 1;
    g_assert_cmpint(vl2_session_prefill(s, p, &gp, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    vl2_session_params sp = { .n_ctx = 1 << 20 };
    vl2_session *big;
    g_assert_cmpint(vl2_session_new(model, &sp, &big, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    /* an unknown KV type or compute mode leaked the session allocated before the check
     * (LeakSanitizer, under the asan setup) */
    vl2_session_params bad_kv = vl2_session_default_params();
    bad_kv.kv_type = (vl2_kv_type)99;
    g_assert_cmpint(vl2_session_new(model, &bad_kv, &big, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_assert_null(big);
    g_assert_nonnull(strstr(err.message, "KV cache type"));
    vl2_session_params bad_compute = vl2_session_default_params();
    bad_compute.compute = (vl2_compute)99;
    g_assert_cmpint(vl2_session_new(model, &bad_compute, &big, &err), ==,
                    VL2_ERR_INVALID_ARGUMENT);
    g_assert_null(big);
    vl2_prompt_free(p);
    vl2_session_free(s);
}

static void test_context_overflow(void)
{
    vl2_prompt *p = make_prompt(hello, 2, NULL);
    const int n = (int)vl2_prompt_n_tokens(p); /* 16 */
    vl2_error err;
    vl2_session *small = make_session(n - 1);
    g_assert_cmpint(vl2_session_prefill(small, p, NULL, &err), ==, VL2_ERR_CONTEXT_OVERFLOW);
    g_autofree char *want = g_strdup_printf("the prompt has %d tokens but the context holds %d",
                                            n, n - 1);
    g_assert_nonnull(strstr(err.message, want));
    vl2_session_free(small);

    /* a generation that fills the cache stops cleanly, never overflows */
    vl2_session *s = make_session(n + 5);
    vl2_generate_params gp = greedy(0);
    vl2_stop_reason why;
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
    g_free(generate(s, p, &gp, ids, &why));
    g_assert_cmpint(why, ==, VL2_STOP_CONTEXT);
    g_assert_cmpint(vl2_session_n_past(s), ==, n + 5);
    g_assert_cmpint(ids->len, ==, 6); /* 5 fed, the sixth sampled when the cache was full */
    g_assert_cmpint(vl2_session_feed(s, 5, &err), ==, VL2_ERR_CONTEXT_OVERFLOW);
    g_array_unref(ids);
    vl2_session_free(s);
    vl2_prompt_free(p);
}

/* Greedy steps through the public loop equal argmax over vl2_session_logits + feed. */
static void test_greedy_loop(void)
{
    vl2_prompt *p = make_prompt(hello, 2, NULL);
    vl2_session *s = make_session(0);
    vl2_generate_params gp = greedy(12);
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
    vl2_stop_reason why;
    char *text = generate(s, p, &gp, ids, &why);
    g_assert_cmpint(why, ==, VL2_STOP_LENGTH);
    g_assert_cmpint(ids->len, ==, 12);

    /* the streamed text is the lossy decode of the ids */
    char *decoded = vl2_detokenize(model, (int32_t *)ids->data, ids->len, false);
    g_assert_cmpstr(text, ==, decoded);
    free(decoded);

    /* the same by hand */
    vl2_session *s2 = make_session(0);
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(s2, p, &gp, &err), ==, VL2_OK);
    vl2_model_info info;
    vl2_model_get_info(model, &info);
    for (guint i = 0; i < ids->len; i++) {
        const float *l = vl2_session_logits(s2);
        int best = 0;
        for (int k = 1; k < info.n_vocab; k++)
            if (l[k] > l[best])
                best = k;
        g_assert_cmpint(best, ==, g_array_index(ids, int32_t, i));
        g_assert_cmpint(vl2_session_feed(s2, best, &err), ==, VL2_OK);
    }
    vl2_timings t;
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_prompt_tokens, ==, (int)vl2_prompt_n_tokens(p));
    g_assert_cmpint(t.n_decoded, ==, 11);
    g_free(text);
    g_array_unref(ids);
    vl2_session_free(s);
    vl2_session_free(s2);
    vl2_prompt_free(p);
}

static void test_stop_strings(void)
{
    vl2_prompt *p = make_prompt(hello, 2, NULL);
    vl2_session *s = make_session(0);
    vl2_generate_params gp = greedy(12);
    char *full = generate(s, p, &gp, NULL, NULL);
    g_assert_cmpuint(strlen(full), >, 12);
    /* stop at a string that begins in the middle of the text: the answer is what precedes it */
    const char *mid = g_utf8_offset_to_pointer(full, g_utf8_strlen(full, -1) / 2);
    char stop[8] = { 0 };
    memcpy(stop, mid, g_utf8_next_char(g_utf8_next_char(mid)) - mid);
    const char *first = strstr(full, stop);
    const char *stops[] = { "never-appears-xyz", stop };
    gp.stop_strings = stops;
    gp.n_stop_strings = 2;
    vl2_stop_reason why;
    char *cut = generate(s, p, &gp, NULL, &why);
    g_assert_cmpint(why, ==, VL2_STOP_STRING);
    g_assert_cmpuint(strlen(cut), ==, (size_t)(first - full));
    g_assert_true(strncmp(cut, full, strlen(cut)) == 0);
    g_free(full);
    g_free(cut);
    vl2_session_free(s);
    vl2_prompt_free(p);
}

static void test_seeded_sampling(void)
{
    vl2_prompt *p = make_prompt(hello, 2, NULL);
    vl2_session *s = make_session(0);
    vl2_generate_params gp = vl2_generate_default_params();
    gp.temperature = 1.0f;
    gp.max_new_tokens = 16;
    gp.seed = 1234;
    GArray *a = g_array_new(FALSE, FALSE, sizeof(int32_t));
    GArray *b = g_array_new(FALSE, FALSE, sizeof(int32_t));
    g_free(generate(s, p, &gp, a, NULL));
    g_free(generate(s, p, &gp, b, NULL)); /* same session, cache reused: same answer */
    g_assert_cmpuint(a->len, ==, b->len);
    g_assert_cmpmem(a->data, a->len * 4, b->data, b->len * 4);
    g_array_unref(a);
    g_array_unref(b);
    vl2_session_free(s);
    vl2_prompt_free(p);
}

/* The second turn of a chat reuses the cached first turn and computes the same logits. */
static void test_prefix_reuse(void)
{
    vl2_session *s = make_session(0);
    vl2_prompt *p1 = make_prompt(hello, 2, NULL);
    vl2_generate_params gp = greedy(8);
    char *answer = generate(s, p1, &gp, NULL, NULL);

    vl2_message turn2[] = {
        hello[0],
        { VL2_ROLE_ASSISTANT, answer, NULL, 0 },
        { VL2_ROLE_USER, "And in two sentences?", NULL, 0 },
        { VL2_ROLE_ASSISTANT, "", NULL, 0 },
    };
    vl2_prompt *p2 = make_prompt(turn2, 4, NULL);
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(s, p2, &gp, &err), ==, VL2_OK);
    vl2_timings t;
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_reused_tokens, >=, (int)vl2_prompt_n_tokens(p1));
    g_assert_cmpint(t.n_reused_tokens + t.n_prompt_tokens, ==, (int)vl2_prompt_n_tokens(p2));

    vl2_session *fresh = make_session(0);
    g_assert_cmpint(vl2_session_prefill(fresh, p2, &gp, &err), ==, VL2_OK);
    vl2_model_info info;
    vl2_model_get_info(model, &info);
    const float *a = vl2_session_logits(s), *b = vl2_session_logits(fresh);
    for (int i = 0; i < info.n_vocab; i++)
        g_assert_cmpfloat(fabsf(a[i] - b[i]), <=, 1e-4);

    /* the identical prompt again recomputes only its last position */
    g_assert_cmpint(vl2_session_prefill(s, p2, &gp, &err), ==, VL2_OK);
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_prompt_tokens, ==, 1);
    g_free(answer);
    vl2_prompt_free(p1);
    vl2_prompt_free(p2);
    vl2_session_free(s);
    vl2_session_free(fresh);
}

/* After a cancelled prefill the session still generates. */
static void expect_usable(vl2_session *s, const vl2_prompt *p, vl2_generate_params *gp)
{
    gp->progress = NULL;
    vl2_stop_reason why;
    g_free(generate(s, p, gp, NULL, &why));
    g_assert_cmpint(why, ==, VL2_STOP_LENGTH);
}

static bool cancel_now(float fraction, void *user_data)
{
    return false;
}

static void test_cancel_prefill(void)
{
    vl2_session *s = make_session(0);
    vl2_prompt *p = make_prompt(hello, 2, NULL);
    vl2_generate_params gp = greedy(4);
    gp.progress = cancel_now;
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(s, p, &gp, &err), ==, VL2_ERR_CANCELLED);
    vl2_step st;
    g_assert_cmpint(vl2_session_step(s, &st, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    expect_usable(s, p, &gp);
    vl2_prompt_free(p);
    vl2_session_free(s);
}

/* A conversation whose last assistant turn has text continues that text (no eos after it). */
static void test_continue_answer(void)
{
    vl2_message msgs[] = {
        { VL2_ROLE_USER, "Say hi.", NULL, 0 },
        { VL2_ROLE_ASSISTANT, "Hi", NULL, 0 },
    };
    vl2_prompt *p = make_prompt(msgs, 2, NULL);
    vl2_model_info info;
    vl2_model_get_info(model, &info);
    size_t n = vl2_prompt_n_tokens(p);
    size_t n_hi;
    int32_t hi;
    vl2_error err;
    g_assert_cmpint(vl2_tokenize(model, "Hi", 2, &hi, 1, &n_hi, &err), ==, VL2_OK);
    g_assert_cmpuint(n_hi, ==, 1);
    g_assert_cmpint(vl2_prompt_ids(p)[n - 1], ==, hi);
    g_assert_cmpint(vl2_prompt_ids(p)[n - 2], ==, 28); /* ':' after <|Assistant|> */
    vl2_prompt_free(p);
}

static void test_eos_and_logit_bias(void)
{
    vl2_prompt *p = make_prompt(hello, 2, NULL);
    vl2_session *s = make_session(0);
    vl2_model_info info;
    vl2_model_get_info(model, &info);
    vl2_generate_params gp = greedy(10);
    gp.stop_at_eos = true;
    vl2_logit_bias eos = { info.eos_id, 1e4f };
    gp.logit_bias = &eos;
    gp.n_logit_bias = 1;
    vl2_stop_reason why;
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
    char *text = generate(s, p, &gp, ids, &why);
    g_assert_cmpint(why, ==, VL2_STOP_EOS);
    g_assert_cmpstr(text, ==, "");
    g_assert_cmpint(ids->len, ==, 1);
    g_assert_cmpint(g_array_index(ids, int32_t, 0), ==, info.eos_id);
    g_free(text);

    /* without stop_at_eos the same bias just produces eos tokens until the length limit */
    gp.stop_at_eos = false;
    g_array_set_size(ids, 0);
    g_free(generate(s, p, &gp, ids, &why));
    g_assert_cmpint(why, ==, VL2_STOP_LENGTH);
    g_assert_cmpint(ids->len, ==, 10);

    /* banning the greedy choice changes it */
    vl2_generate_params plain = greedy(1);
    g_array_set_size(ids, 0);
    g_free(generate(s, p, &plain, ids, NULL));
    vl2_logit_bias ban = { g_array_index(ids, int32_t, 0), -INFINITY };
    plain.logit_bias = &ban;
    plain.n_logit_bias = 1;
    GArray *ids2 = g_array_new(FALSE, FALSE, sizeof(int32_t));
    g_free(generate(s, p, &plain, ids2, NULL));
    g_assert_cmpint(g_array_index(ids2, int32_t, 0), !=, ban.id);

    /* grounding tags are special tokens, streamed as their text for the app to parse */
    int32_t ref_id = -1;
    size_t n_ref = 0;
    g_assert_cmpint(vl2_tokenize(model, "<|ref|>", 7, &ref_id, 1, &n_ref, NULL), ==, VL2_OK);
    g_assert_cmpuint(n_ref, ==, 1);
    vl2_logit_bias ref = { ref_id, 1e4f };
    vl2_generate_params forced = greedy(3);
    forced.logit_bias = &ref;
    forced.n_logit_bias = 1;
    char *tags = generate(s, p, &forced, NULL, NULL);
    g_assert_cmpstr(tags, ==, "<|ref|><|ref|><|ref|>");
    g_free(tags);

    vl2_logit_bias bad = { -5, 1 };
    plain.logit_bias = &bad;
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(s, p, &plain, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_array_unref(ids);
    g_array_unref(ids2);
    vl2_prompt_free(p);
    vl2_session_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Images through the public API
 */

typedef struct {
    vl2_image img;
    uint8_t *pixels;
} synth_image;

static synth_image make_image(int w, int h, int seed)
{
    synth_image s = { { w, h, w * 3, NULL }, g_malloc((size_t)w * h * 3) };
    for (int i = 0; i < w * h * 3; i++)
        s.pixels[i] = (uint8_t)(i * 7 + seed * 31 + i / (w * 3));
    s.img.rgb = s.pixels;
    return s;
}

static void expect_image_error(vl2_image img, const char *needle)
{
    vl2_message m = { VL2_ROLE_USER, "<image>\nWhat is it?", &img, 1 };
    vl2_conversation c = { &m, 1, NULL };
    vl2_prompt *p = NULL;
    vl2_error err;
    g_assert_cmpint(vl2_prompt_new(model, &c, &p, &err), ==, VL2_ERR_IMAGE);
    g_assert_null(p);
    if (!strstr(err.message, needle))
        g_error("\"%s\" lacks \"%s\"", err.message, needle);
}

static void test_image_errors(void)
{
    synth_image ok = make_image(40, 30, 1);
    expect_image_error((vl2_image){ 0, 30, 0, ok.pixels }, "image 1 is empty");
    expect_image_error((vl2_image){ 40, 0, 120, ok.pixels }, "image 1 is empty");
    expect_image_error((vl2_image){ 40, 30, 120, NULL }, "image 1 is empty");
    expect_image_error((vl2_image){ 40, 30, 100, ok.pixels }, "stride");
    /* the limits are checked before anything is read, so these need no pixel memory */
    expect_image_error((vl2_image){ 40000, 10, 120000, ok.pixels }, "40000 x 10 pixels");
    expect_image_error((vl2_image){ 20000, 6000, 60000, ok.pixels }, "100 megapixels");

    vl2_error err;
    vl2_prompt *p = NULL;
    vl2_message no_tag = { VL2_ROLE_USER, "What is it?", &ok.img, 1 };
    vl2_message two_tags = { VL2_ROLE_USER, "<image> vs <image>", &ok.img, 1 };
    vl2_conversation c2 = { &two_tags, 1, NULL };
    g_assert_cmpint(vl2_prompt_new(model, &c2, &p, &err), ==, VL2_ERR_IMAGE);
    g_assert_nonnull(strstr(err.message, "2 <image> placeholders but 1 image"));
    vl2_message turns[] = { { VL2_ROLE_USER, "Hi", NULL, 0 },
                            { VL2_ROLE_ASSISTANT, "<image>", &ok.img, 1 } };
    vl2_conversation c3 = { turns, 2, NULL };
    g_assert_cmpint(vl2_prompt_new(model, &c3, &p, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    vl2_conversation c4 = { &no_tag, 1, "see <image>" };
    no_tag.content = "<image>";
    g_assert_cmpint(vl2_prompt_new(model, &c4, &p, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_assert_null(p);
    g_free(ok.pixels);
}

/* Images whose tokens cannot fit the context were tiled first (3.2 GB for one huge candidate):
 * the prompt is refused from the images' sizes, before any tile is made; counting still
 * counts. Two 1 x 9-tile images take 2 x 2101 tokens of mini-tiny's 4096. */
static void test_images_past_context(void)
{
    synth_image tall = make_image(400, 3600, 3);
    vl2_image two[2] = { tall.img, tall.img };
    vl2_message q = { VL2_ROLE_USER, "Compare.", two, 2 };
    vl2_conversation c = { &q, 1, NULL };
    vl2_prompt *p = NULL;
    vl2_error err;
    g_assert_cmpint(vl2_prompt_new(model, &c, &p, &err), ==, VL2_ERR_CONTEXT_OVERFLOW);
    g_assert_null(p);
    g_assert_nonnull(strstr(err.message, "image 2 takes 2101 tokens"));
    size_t n = 0;
    g_assert_cmpint(vl2_prompt_count_tokens(model, &c, &n, &err), ==, VL2_OK);
    g_assert_cmpuint(n, >, 4096);
    /* one of them fits */
    q.n_images = 1;
    g_assert_cmpint(vl2_prompt_new(model, &c, &p, &err), ==, VL2_OK);
    g_assert_cmpint(vl2_prompt_n_tiles(p), ==, 10);
    vl2_prompt_free(p);
    g_free(tall.pixels);
}

static bool same_ids(const vl2_prompt *a, const vl2_prompt *b)
{
    return vl2_prompt_n_tokens(a) == vl2_prompt_n_tokens(b) &&
           !memcmp(vl2_prompt_ids(a), vl2_prompt_ids(b), vl2_prompt_n_tokens(a) * sizeof(int32_t));
}

static size_t first_image_position(const vl2_prompt *p)
{
    vl2_model_info info;
    vl2_model_get_info(model, &info);
    for (size_t i = 0; i < vl2_prompt_n_tokens(p); i++)
        if (vl2_prompt_ids(p)[i] == info.image_id)
            return i;
    g_error("the prompt has no image token");
}

/* Where the images go: a question without <image> gets one "<image>\n" line per image in front
 * of its text, as the official demos write theirs; a question that places its tags is used as
 * written; any other count of tags is refused. */
static void test_image_tags(void)
{
    synth_image a = make_image(40, 30, 1), b = make_image(30, 40, 2);
    vl2_image ab[2] = { a.img, b.img };

    vl2_message untagged[] = { { VL2_ROLE_USER, "What differs?", ab, 2 } };
    vl2_message in_front[] = { { VL2_ROLE_USER, "<image>\n<image>\nWhat differs?", ab, 2 } };
    vl2_prompt *p_untagged = make_prompt(untagged, 1, NULL);
    vl2_prompt *p_in_front = make_prompt(in_front, 1, NULL);
    g_assert_true(same_ids(p_untagged, p_in_front));
    g_assert_cmpint(vl2_prompt_n_images(p_untagged), ==, 2);

    /* an image without a question: the tag alone */
    vl2_message bare[] = { { VL2_ROLE_USER, "", ab, 1 } };
    vl2_message bare_tag[] = { { VL2_ROLE_USER, "<image>", ab, 1 } };
    vl2_prompt *p_bare = make_prompt(bare, 1, NULL), *p_bare_tag = make_prompt(bare_tag, 1, NULL);
    g_assert_true(same_ids(p_bare, p_bare_tag));

    /* tags in the text stay where they are: the first image comes after "Compare" */
    vl2_message placed[] = { { VL2_ROLE_USER, "Compare <image> with <image>", ab, 2 } };
    vl2_prompt *p_placed = make_prompt(placed, 1, NULL);
    g_assert_false(same_ids(p_placed, p_untagged));
    g_assert_cmpuint(first_image_position(p_placed), >, first_image_position(p_untagged));
    g_assert_cmpint(vl2_prompt_n_images(p_placed), ==, 2);

    /* a count that disagrees with the images is an error, never a guess */
    const struct {
        const char *content;
        int n_images;
        const char *message;
    } wrong[] = {
        { "<image> and <image>", 1, "message 1 has 2 <image> placeholders but 1 image" },
        { "<image>\nWhat differs?", 2, "message 1 has 1 <image> placeholder but 2 images" },
        { "<image> and <image>", 0, "message 1 has 2 <image> placeholders but 0 images" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(wrong); i++) {
        vl2_message m = { VL2_ROLE_USER, wrong[i].content, ab, wrong[i].n_images };
        vl2_conversation c = { &m, 1, NULL };
        vl2_prompt *p = NULL;
        vl2_error err;
        g_assert_cmpint(vl2_prompt_new(model, &c, &p, &err), ==, VL2_ERR_IMAGE);
        g_assert_null(p);
        g_assert_cmpstr(err.message, ==, wrong[i].message);
    }

    vl2_prompt_free(p_untagged);
    vl2_prompt_free(p_in_front);
    vl2_prompt_free(p_bare);
    vl2_prompt_free(p_bare_tag);
    vl2_prompt_free(p_placed);
    g_free(a.pixels);
    g_free(b.pixels);
}

/* With three or more images in the whole conversation, none is tiled. */
static void test_three_images_untiled(void)
{
    synth_image a = make_image(900, 300, 1), b = make_image(300, 900, 2), c = make_image(64, 64, 3);
    vl2_image ab[2] = { a.img, b.img };
    vl2_message msgs[] = {
        { VL2_ROLE_USER, "<image> and <image>", ab, 2 },
        { VL2_ROLE_ASSISTANT, "Two pictures.", NULL, 0 },
        { VL2_ROLE_USER, "<image>\nAnd this?", &c.img, 1 },
    };
    vl2_prompt *p2 = make_prompt(msgs, 1, NULL), *p3 = make_prompt(msgs, 3, NULL);
    int w, h;
    vl2_prompt_image_grid(p2, 0, &w, &h);
    g_assert_cmpint(w * h, >, 1); /* two images: tiled */
    g_assert_cmpint(vl2_prompt_n_images(p3), ==, 3);
    g_assert_cmpint(vl2_prompt_n_tiles(p3), ==, 6);
    for (int i = 0; i < 3; i++) {
        vl2_prompt_image_grid(p3, i, &w, &h);
        g_assert_cmpint(w, ==, 1);
        g_assert_cmpint(h, ==, 1);
    }
    vl2_prompt_free(p2);
    vl2_prompt_free(p3);
    g_free(a.pixels);
    g_free(b.pixels);
    g_free(c.pixels);
}

/* A follow-up question reuses the cached image; another image in the same place does not. */
static void test_image_cache_reuse(void)
{
    synth_image a = make_image(500, 300, 1), b = make_image(500, 300, 9);
    vl2_message first[] = { { VL2_ROLE_USER, "<image>\nDescribe it.", &a.img, 1 } };
    vl2_session *s = make_session(0);
    vl2_prompt *p1 = make_prompt(first, 1, NULL);
    vl2_generate_params gp = greedy(4);
    char *answer = generate(s, p1, &gp, NULL, NULL);
    vl2_timings t;
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_tiles, ==, vl2_prompt_n_tiles(p1));

    vl2_message follow[] = { first[0], { VL2_ROLE_ASSISTANT, answer, NULL, 0 },
                             { VL2_ROLE_USER, "What colour is it?", NULL, 0 } };
    vl2_prompt *p2 = make_prompt(follow, 3, NULL);
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(s, p2, &gp, &err), ==, VL2_OK);
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_tiles, ==, 0); /* the image was not encoded again */
    g_assert_cmpint(t.n_reused_tokens, >=, (int)vl2_prompt_n_tokens(p1) - 1);

    vl2_session *fresh = make_session(0);
    g_assert_cmpint(vl2_session_prefill(fresh, p2, &gp, &err), ==, VL2_OK);
    vl2_model_info info;
    vl2_model_get_info(model, &info);
    for (int i = 0; i < info.n_vocab; i++)
        g_assert_cmpfloat(fabsf(vl2_session_logits(s)[i] - vl2_session_logits(fresh)[i]), <=,
                          1e-4);

    /* the same words about another image: the <image> ids match, the cache must not */
    follow[0].images = &b.img;
    vl2_prompt *p3 = make_prompt(follow, 3, NULL);
    g_assert_cmpint(vl2_session_prefill(s, p3, &gp, &err), ==, VL2_OK);
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_tiles, ==, vl2_prompt_n_tiles(p3));
    int image_start = 0;
    while (vl2_prompt_ids(p3)[image_start] != info.image_id)
        image_start++;
    g_assert_cmpint(image_start, ==, 4); /* bos, <|User|>, ':', ' ' precede the image */
    g_assert_cmpint(t.n_reused_tokens, ==, image_start);
    g_assert_cmpint(vl2_session_prefill(fresh, p3, &gp, &err), ==, VL2_OK);
    for (int i = 0; i < info.n_vocab; i++)
        g_assert_cmpfloat(fabsf(vl2_session_logits(s)[i] - vl2_session_logits(fresh)[i]), <=,
                          1e-4);
    g_free(answer);
    vl2_prompt_free(p1);
    vl2_prompt_free(p2);
    vl2_prompt_free(p3);
    vl2_session_free(s);
    vl2_session_free(fresh);
    g_free(a.pixels);
    g_free(b.pixels);
}

/* The logits of s and a fresh session's after the same prefill agree (the cache's positions
 * were computed in other chunks: the same sums in another order). */
static void expect_logits_of_fresh(vl2_session *s, const vl2_prompt *p)
{
    vl2_session *fresh = make_session(0);
    vl2_generate_params gp = greedy(4);
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(fresh, p, &gp, &err), ==, VL2_OK);
    vl2_model_info info;
    vl2_model_get_info(model, &info);
    for (int i = 0; i < info.n_vocab; i++)
        g_assert_cmpfloat(fabsf(vl2_session_logits(s)[i] - vl2_session_logits(fresh)[i]), <=,
                          1e-4);
    vl2_session_free(fresh);
}

/* Reading ahead: the image is read while the question is typed (a prompt with a half-typed
 * question); the question sent is then all the prefill reads. */
static void test_prepare(void)
{
    synth_image a = make_image(700, 400, 3);
    vl2_message typing[] = { { VL2_ROLE_USER, "<image>\nWhat is wri", &a.img, 1 } };
    vl2_message sent[] = { { VL2_ROLE_USER, "<image>\nWhat is written on the sign in the "
                                            "picture?", &a.img, 1 } };
    vl2_session *s = make_session(0);
    vl2_prompt *p1 = make_prompt(typing, 1, "Be brief.");
    vl2_prompt *p2 = make_prompt(sent, 1, "Be brief.");
    vl2_error err;
    vl2_timings t;
    g_assert_cmpint(vl2_session_prepare(s, p1, NULL, &err), ==, VL2_OK);
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_tiles, ==, vl2_prompt_n_tiles(p1));
    const int image_end = vl2_session_n_past(s);
    g_assert_cmpint(image_end, >, 0);
    g_assert_cmpint(image_end, <, (int)vl2_prompt_n_tokens(p1));
    /* nothing to step until a prefill */
    vl2_step step;
    g_assert_cmpint(vl2_session_step(s, &step, &err), ==, VL2_ERR_INVALID_ARGUMENT);

    vl2_generate_params gp = greedy(4);
    g_assert_cmpint(vl2_session_prefill(s, p2, &gp, &err), ==, VL2_OK);
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_tiles, ==, 0);
    g_assert_cmpint(t.n_reused_tokens, ==, image_end);
    g_assert_cmpint(t.n_prompt_tokens, ==, (int)vl2_prompt_n_tokens(p2) - image_end);
    expect_logits_of_fresh(s, p2);

    /* preparing what is cached reads nothing; a prompt without images prepares nothing */
    g_assert_cmpint(vl2_session_prepare(s, p1, NULL, &err), ==, VL2_OK);
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_tiles + t.n_prompt_tokens, ==, 0);
    vl2_prompt *text = make_prompt(hello, 1, NULL);
    int before = vl2_session_n_past(s);
    g_assert_cmpint(vl2_session_prepare(s, text, NULL, &err), ==, VL2_OK);
    g_assert_cmpint(vl2_session_n_past(s), ==, before);
    g_assert_cmpint(vl2_session_prepare(s, NULL, NULL, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    vl2_prompt_free(text);
    vl2_prompt_free(p1);
    vl2_prompt_free(p2);
    vl2_session_free(s);
    g_free(a.pixels);
}

/* Conversations put aside (cache_budget): chat A, then chat B, then A's follow-up finds A's
 * image still read; with no budget, or one too small for A, it is read again. */
static int follow_up_tiles(size_t budget)
{
    synth_image a = make_image(640, 480, 5), b = make_image(480, 640, 6);
    vl2_session_params sp = vl2_session_default_params();
    sp.cache_budget = budget;
    vl2_session *s;
    vl2_error err;
    g_assert_cmpint(vl2_session_new(model, &sp, &s, &err), ==, VL2_OK);
    vl2_generate_params gp = greedy(4);
    vl2_message chat_a[] = { { VL2_ROLE_USER, "<image>\nDescribe it.", &a.img, 1 },
                             { VL2_ROLE_ASSISTANT, NULL, NULL, 0 },
                             { VL2_ROLE_USER, "And the colours?", NULL, 0 } };
    vl2_message chat_b[] = { { VL2_ROLE_USER, "<image>\nWhat is this?", &b.img, 1 } };
    vl2_prompt *pa = make_prompt(chat_a, 1, NULL);
    char *answer = generate(s, pa, &gp, NULL, NULL);
    vl2_prompt *pb = make_prompt(chat_b, 1, NULL);
    g_free(generate(s, pb, &gp, NULL, NULL));
    vl2_timings t;
    vl2_session_get_timings(s, &t);
    g_assert_cmpint(t.n_tiles, ==, vl2_prompt_n_tiles(pb));
    chat_a[1].content = answer;
    vl2_prompt *pa2 = make_prompt(chat_a, 3, NULL);
    g_assert_cmpint(vl2_session_prefill(s, pa2, &gp, &err), ==, VL2_OK);
    vl2_session_get_timings(s, &t);
    if (t.n_tiles == 0)
        g_assert_cmpint(t.n_reused_tokens, >=, (int)vl2_prompt_n_tokens(pa) - 1);
    expect_logits_of_fresh(s, pa2);
    /* and B comes back too, with A put aside again */
    g_assert_cmpint(vl2_session_prefill(s, pb, &gp, &err), ==, VL2_OK);
    expect_logits_of_fresh(s, pb);
    vl2_prompt_free(pa);
    vl2_prompt_free(pa2);
    vl2_prompt_free(pb);
    g_free(answer);
    vl2_session_free(s);
    g_free(a.pixels);
    g_free(b.pixels);
    return t.n_tiles;
}

static void test_put_aside(void)
{
    g_assert_cmpint(follow_up_tiles((size_t)1 << 30), ==, 0);
    g_assert_cmpint(follow_up_tiles(0), >, 0);
    g_assert_cmpint(follow_up_tiles(1000), >, 0); /* A does not fit: dropped */
}

typedef struct {
    vl2_session *s;
    int calls;
} tile_counter;

static bool cancel_second_tile(float fraction, void *user_data)
{
    tile_counter *c = user_data;
    vl2_prefill_progress pp;
    vl2_session_get_prefill_progress(c->s, &pp);
    c->calls++;
    return pp.tiles_done < 2;
}

static void test_cancel_vision(void)
{
    synth_image a = make_image(800, 400, 4);
    vl2_message m = { VL2_ROLE_USER, "<image>\nWhat is it?", &a.img, 1 };
    vl2_prompt *p = make_prompt(&m, 1, NULL);
    vl2_session *s = make_session(0);
    vl2_generate_params gp = greedy(2);
    tile_counter calls = { s, 0 };
    gp.progress = cancel_second_tile;
    gp.progress_user_data = &calls;
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(s, p, &gp, &err), ==, VL2_ERR_CANCELLED);
    /* the image's start, then two tiles: stopped after the second, not after all of them */
    g_assert_cmpint(calls.calls, ==, 3);
    g_assert_cmpint(vl2_prompt_n_tiles(p), >, 2);
    g_assert_cmpint(vl2_session_n_past(s), ==, 0);
    expect_usable(s, p, &gp);
    vl2_prompt_free(p);
    vl2_session_free(s);
    g_free(a.pixels);
}

/* Every progress call, with what the session said it stood for. */
typedef struct {
    vl2_session *s;
    GArray *calls;               /* progress_call */
} progress_log;

typedef struct {
    float fraction;
    vl2_prefill_progress what;
} progress_call;

static bool log_progress(float fraction, void *user_data)
{
    progress_log *log = user_data;
    progress_call c = { fraction, { 0 } };
    vl2_session_get_prefill_progress(log->s, &c.what);
    g_array_append_val(log->calls, c);
    return true;
}

/* The fraction rises to 1; each image is announced before its first tile with its tile
 * count, its tiles counted one by one, then the text runs in chunks to the last position. */
static void test_prefill_progress(void)
{
    synth_image a = make_image(800, 400, 4), b = make_image(300, 500, 5);
    vl2_image both[] = { a.img, b.img };
    vl2_message m = { VL2_ROLE_USER, "<image>\n<image>\nWhat differs?", both, 2 };
    vl2_prompt *p = make_prompt(&m, 1, NULL);
    vl2_session *s = make_session(0);
    vl2_generate_params gp = greedy(2);
    progress_log log = { s, g_array_new(FALSE, TRUE, sizeof(progress_call)) };
    gp.progress = log_progress;
    gp.progress_user_data = &log;
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(s, p, &gp, &err), ==, VL2_OK);

    int tiles[2];
    for (int i = 0; i < 2; i++) {
        int w, h;
        vl2_prompt_image_grid(p, i, &w, &h);
        tiles[i] = 1 + w * h;
    }
    g_assert_cmpint(tiles[0] + tiles[1], ==, vl2_prompt_n_tiles(p));
    int chunks = ((int)vl2_prompt_n_tokens(p) + 255) / 256;
    /* two announcements, one call a tile, one a chunk */
    g_assert_cmpuint(log.calls->len, ==, 2 + tiles[0] + tiles[1] + chunks);
    float last = 0;
    guint k = 0;
    for (int i = 0; i < 2; i++)
        for (int t = 0; t <= tiles[i]; t++, k++) {
            const progress_call *c = &g_array_index(log.calls, progress_call, k);
            g_assert_cmpint(c->what.image, ==, i + 1);
            g_assert_cmpint(c->what.n_images, ==, 2);
            g_assert_cmpint(c->what.n_tiles, ==, tiles[i]);
            g_assert_cmpint(c->what.tiles_done, ==, t);
            g_assert_cmpint(c->what.tokens_done, ==, 0);
            g_assert_cmpfloat(c->fraction, >=, last);
            last = c->fraction;
        }
    for (; k < log.calls->len; k++) {
        const progress_call *c = &g_array_index(log.calls, progress_call, k);
        g_assert_cmpint(c->what.image, ==, 0);
        g_assert_cmpint(c->what.tokens_done, >, 0);
        g_assert_cmpfloat(c->fraction, >, last);
        last = c->fraction;
    }
    const progress_call *end = &g_array_index(log.calls, progress_call, log.calls->len - 1);
    g_assert_cmpfloat(end->fraction, ==, 1.0f);
    g_assert_cmpint(end->what.tokens_done, ==, end->what.n_tokens);
    g_assert_cmpint(end->what.n_tokens, ==, (int)vl2_prompt_n_tokens(p));

    /* the same conversation and a follow-up: the images come from the cache, uncounted */
    vl2_message follow[] = { m, { VL2_ROLE_ASSISTANT, "Colours.", NULL, 0 },
                             { VL2_ROLE_USER, "And the shapes?", NULL, 0 } };
    vl2_prompt *p2 = make_prompt(follow, 3, NULL);
    g_array_set_size(log.calls, 0);
    g_assert_cmpint(vl2_session_prefill(s, p2, &gp, &err), ==, VL2_OK);
    g_assert_cmpuint(log.calls->len, >, 0);
    for (k = 0; k < log.calls->len; k++) {
        const progress_call *c = &g_array_index(log.calls, progress_call, k);
        g_assert_cmpint(c->what.n_images, ==, 0);
        g_assert_cmpint(c->what.image, ==, 0);
        g_assert_cmpint(c->what.n_tokens, <, (int)vl2_prompt_n_tokens(p2));
    }
    g_array_unref(log.calls);
    vl2_prompt_free(p);
    vl2_prompt_free(p2);
    vl2_session_free(s);
    g_free(a.pixels);
    g_free(b.pixels);
}

/* A copy of mini-tiny whose final norm weights are NaN: the logits are all NaN. */
static char *copy_with_nan_norm(void)
{
    g_autofree char *src = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    char *dst = test_make_tmpdir();
    GDir *d = g_dir_open(src, 0, NULL);
    g_assert_nonnull(d);
    for (const char *name; (name = g_dir_read_name(d));) {
        g_autofree char *from = g_build_filename(src, name, NULL), *to = NULL, *data = NULL;
        gsize len;
        g_assert_true(g_file_get_contents(from, &data, &len, NULL));
        if (g_str_equal(name, "model.safetensors")) {
            guint64 n;
            memcpy(&n, data, 8);
            g_autofree char *header = g_strndup(data + 8, n);
            g_autoptr(JsonNode) h = json_from_string(header, NULL);
            JsonObject *t = json_object_get_object_member(json_node_get_object(h),
                                                          "language.model.norm.weight");
            g_assert_cmpstr(json_object_get_string_member(t, "dtype"), ==, "BF16");
            JsonArray *off = json_object_get_array_member(t, "data_offsets");
            for (gint64 o = json_array_get_int_element(off, 0);
                 o < json_array_get_int_element(off, 1); o += 2)
                memcpy(data + 8 + n + o, "\xc0\x7f", 2); /* bf16 quiet NaN */
        }
        to = g_build_filename(dst, name, NULL);
        test_write_file(to, data, (gssize)len);
    }
    g_dir_close(d);
    return dst;
}

/* Non-finite weights made NaN logits, from which the sampler read out of bounds (or, greedy,
 * silently chose token 0): the prefill is an error, the session usable after it. */
static void test_non_finite_logits(void)
{
    g_autofree char *dir = copy_with_nan_norm();
    vl2_model_params mp = vl2_model_default_params();
    mp.n_threads = 2;
    vl2_model *m;
    vl2_error err;
    g_assert_cmpint(vl2_model_load(dir, &mp, &m, &err), ==, VL2_OK);
    vl2_session_params sp = vl2_session_default_params();
    sp.n_ctx = 256;
    vl2_session *s;
    g_assert_cmpint(vl2_session_new(m, &sp, &s, &err), ==, VL2_OK);
    vl2_conversation conv = { hello, 2, NULL };
    vl2_prompt *p;
    g_assert_cmpint(vl2_prompt_new(m, &conv, &p, &err), ==, VL2_OK);
    vl2_generate_params gps[2] = { greedy(4), vl2_generate_default_params() };
    for (int i = 0; i < 2; i++) {
        g_assert_cmpint(vl2_session_prefill(s, p, &gps[i], &err), ==, VL2_ERR_FORMAT);
        g_assert_nonnull(strstr(err.message, "not numbers"));
        vl2_step st;
        g_assert_cmpint(vl2_session_step(s, &st, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    }
    vl2_prompt_free(p);
    vl2_session_free(s);
    vl2_model_free(m);
    test_rmtree(dir);
}

/* Biases that put a token at +inf, or every token at -inf, leave nothing to choose. */
static void test_infinite_bias(void)
{
    vl2_session *s = make_session(256);
    vl2_prompt *p = make_prompt(hello, 2, NULL);
    vl2_logit_bias up = { 5, INFINITY };
    vl2_generate_params gp = greedy(4);
    gp.logit_bias = &up;
    gp.n_logit_bias = 1;
    vl2_error err;
    g_assert_cmpint(vl2_session_prefill(s, p, &gp, &err), ==, VL2_OK);
    vl2_step st;
    g_assert_cmpint(vl2_session_step(s, &st, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    g_assert_nonnull(strstr(err.message, "no token can be chosen"));
    vl2_prompt_free(p);
    vl2_session_free(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autofree char *dir = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    vl2_error err;
    vl2_model_params mp = vl2_model_default_params();
    mp.n_threads = 2;
    if (vl2_model_load(dir, &mp, &model, &err) != VL2_OK)
        g_error("%s", err.message);
    g_test_add_func("/engine/session/prompt-errors", test_prompt_errors);
    g_test_add_func("/engine/session/system-prompt", test_system_prompt);
    g_test_add_func("/engine/session/step-before-prefill", test_step_before_prefill);
    g_test_add_func("/engine/session/bad-generate-params", test_bad_generate_params);
    g_test_add_func("/engine/session/context-overflow", test_context_overflow);
    g_test_add_func("/engine/session/greedy-loop", test_greedy_loop);
    g_test_add_func("/engine/session/stop-strings", test_stop_strings);
    g_test_add_func("/engine/session/seeded-sampling", test_seeded_sampling);
    g_test_add_func("/engine/session/prefix-reuse", test_prefix_reuse);
    g_test_add_func("/engine/session/cancel-prefill", test_cancel_prefill);
    g_test_add_func("/engine/session/continue-answer", test_continue_answer);
    g_test_add_func("/engine/session/eos-and-logit-bias", test_eos_and_logit_bias);
    g_test_add_func("/engine/session/image-errors", test_image_errors);
    g_test_add_func("/engine/session/image-tags", test_image_tags);
    g_test_add_func("/engine/session/three-images-untiled", test_three_images_untiled);
    g_test_add_func("/engine/session/image-cache-reuse", test_image_cache_reuse);
    g_test_add_func("/engine/session/prepare", test_prepare);
    g_test_add_func("/engine/session/put-aside", test_put_aside);
    g_test_add_func("/engine/session/cancel-vision", test_cancel_vision);
    g_test_add_func("/engine/session/prefill-progress", test_prefill_progress);
    g_test_add_func("/engine/session/non-finite-logits", test_non_finite_logits);
    g_test_add_func("/engine/session/infinite-bias", test_infinite_bias);
    g_test_add_func("/engine/session/images-past-context", test_images_past_context);
    int rc = g_test_run();
    vl2_model_free(model);
    return rc;
}
