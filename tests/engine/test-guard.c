/* test-guard.c - weights that change on disk under a loaded model (engine/guard.c).
 *
 * Each case loads a private copy of the mini-tiny fixture and changes its files while the
 * model is loaded: truncated between two decoding steps, before a prefill, between the image
 * tiles of a prefill, replaced by another file. The engine must never crash (a truncated
 * mapping raises SIGBUS on the next read), must return VL2_ERR_MODEL_CHANGED with a message
 * naming the file, and must keep working when the file it maps was left intact. The cases
 * that can die of SIGBUS run in a child process, so that the old behaviour fails the test
 * instead of killing the whole run.
 */
#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"
#include "vl2-private.h"

#define MIB (1 << 20)

static const char *const fixture_files[] = {
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "model.safetensors",
};

static void copy_file(const char *from, const char *to)
{
    g_autofree char *data = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(from, &data, &len, NULL));
    test_write_file(to, data, (gssize)len);
}

/* A fresh copy of mini-tiny in a temporary folder. */
static char *copy_fixture(void)
{
    g_autofree char *fixture = g_build_filename(test_fixture_dir(), "mini-tiny", NULL);
    char *dir = test_make_tmpdir();
    for (size_t i = 0; i < G_N_ELEMENTS(fixture_files); i++) {
        g_autofree char *a = g_build_filename(fixture, fixture_files[i], NULL);
        g_autofree char *b = g_build_filename(dir, fixture_files[i], NULL);
        copy_file(a, b);
    }
    return dir;
}

static vl2_model *load(const char *dir)
{
    vl2_model_params mp = vl2_model_default_params();
    mp.n_threads = 2;
    vl2_model *m = NULL;
    vl2_error err;
    if (vl2_model_load(dir, &mp, &m, &err) != VL2_OK)
        g_error("%s", err.message);
    return m;
}

static vl2_prompt *text_prompt(vl2_model *m, const char *text)
{
    vl2_message msgs[2] = {
        { VL2_ROLE_USER, text, NULL, 0 },
        { VL2_ROLE_ASSISTANT, "", NULL, 0 },
    };
    vl2_conversation conv = { msgs, 2, NULL };
    vl2_prompt *p = NULL;
    vl2_error err;
    if (vl2_prompt_new(m, &conv, &p, &err) != VL2_OK)
        g_error("%s", err.message);
    return p;
}

static vl2_generate_params greedy(int max_new_tokens)
{
    vl2_generate_params gp = vl2_generate_default_params();
    gp.temperature = 0;
    gp.max_new_tokens = max_new_tokens;
    gp.stop_at_eos = false;
    return gp;
}

/* The status is VL2_ERR_MODEL_CHANGED and the message names the file and what to do. */
static void assert_changed(vl2_status st, const vl2_error *err, const char *path)
{
    g_assert_cmpint(st, ==, VL2_ERR_MODEL_CHANGED);
    g_assert_cmpint(err->code, ==, VL2_ERR_MODEL_CHANGED);
    g_test_message("%s", err->message);
    if (!strstr(err->message, path) || !strstr(err->message, "load the model again"))
        g_error("the message \"%s\" does not name %s or say what to do", err->message, path);
}

static bool tripped(const vl2_model *m)
{
    const vl2_st_file *f = g_ptr_array_index(m->weights.files, 0);
    return vl2_guard_tripped(f->guard);
}

/* ---------------------------------------------------------------------------------------------
 * Truncated between two steps: the next step reads past the end of the file
 */

static void test_truncate_mid_generation(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
        return;
    }
    g_autofree char *dir = copy_fixture();
    g_autofree char *weights = g_build_filename(dir, "model.safetensors", NULL);
    vl2_model *m = load(dir);
    vl2_prompt *p = text_prompt(m, "Describe a sunny day at the beach.");
    vl2_session *s;
    vl2_error err;
    g_assert_cmpint(vl2_session_new(m, NULL, &s, &err), ==, VL2_OK);
    vl2_generate_params gp = greedy(64);
    g_assert_cmpint(vl2_session_prefill(s, p, &gp, &err), ==, VL2_OK);
    vl2_step step;
    for (int i = 0; i < 4; i++) {
        g_assert_cmpint(vl2_session_step(s, &step, &err), ==, VL2_OK);
        g_assert_cmpint(step.stop, ==, VL2_STOP_NONE);
    }
    g_assert_no_errno(truncate(weights, MIB));

    /* the next step reads the whole decoder: past the new end of the file */
    vl2_status st = vl2_session_step(s, &step, &err);
    assert_changed(st, &err, weights);
    g_assert_true(tripped(m)); /* the read faulted, and was caught */
    g_assert_nonnull(strstr(err.message, "1048576 bytes"));
    g_assert_cmpint(vl2_session_n_past(s), ==, 0); /* the cache computed from zeros is gone */
    g_assert_null(vl2_session_logits(s));

    /* the model stays unusable, and says why, until it is loaded again */
    g_assert_cmpint(vl2_session_step(s, &step, &err), ==, VL2_ERR_INVALID_ARGUMENT);
    assert_changed(vl2_session_prefill(s, p, &gp, &err), &err, weights);
    assert_changed(vl2_model_check_files(m, &err), &err, weights);
    vl2_session_free(s);
    vl2_prompt_free(p);
    vl2_model_free(m);

    /* loading again reports the file as what it now is */
    g_assert_cmpint(vl2_model_load(dir, NULL, &m, &err), ==, VL2_ERR_FORMAT);
    g_assert_nonnull(strstr(err.message, "incomplete"));
    test_rmtree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * Truncated while the model sat idle: the next prefill refuses before reading anything
 */

static void test_truncate_before_prefill(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
        return;
    }
    g_autofree char *dir = copy_fixture();
    g_autofree char *weights = g_build_filename(dir, "model.safetensors", NULL);
    vl2_model *m = load(dir);
    vl2_prompt *p = text_prompt(m, "Hello!");
    vl2_session *s;
    vl2_error err;
    g_assert_cmpint(vl2_session_new(m, NULL, &s, &err), ==, VL2_OK);
    vl2_generate_params gp = greedy(8);
    g_assert_cmpint(vl2_model_check_files(m, &err), ==, VL2_OK);

    g_assert_no_errno(truncate(weights, MIB));
    assert_changed(vl2_model_check_files(m, &err), &err, weights);
    assert_changed(vl2_session_prefill(s, p, &gp, &err), &err, weights);
    g_assert_false(tripped(m)); /* refused on the file's size, before a read could fault */
    vl2_session_free(s);
    vl2_prompt_free(p);
    vl2_model_free(m);
    test_rmtree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * Truncated between the image tiles of a prefill (from its progress callback)
 */

typedef struct {
    const char *path;
    int calls;
} truncate_on_progress;

static bool truncate_progress_cb(float fraction, void *user_data)
{
    (void)fraction;
    truncate_on_progress *t = user_data;
    if (t->calls++ == 0)
        g_assert_no_errno(truncate(t->path, MIB));
    return true;
}

static void test_truncate_during_prefill(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
        return;
    }
    g_autofree char *dir = copy_fixture();
    g_autofree char *weights = g_build_filename(dir, "model.safetensors", NULL);
    vl2_model *m = load(dir);
    /* a 500 x 300 gradient: a global view and two local tiles */
    const int w = 500, h = 300;
    g_autofree uint8_t *rgb = g_malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++)
        rgb[i] = (uint8_t)(i * 7);
    vl2_image image = { w, h, w * 3, rgb };
    vl2_message msgs[2] = {
        { VL2_ROLE_USER, "What is in this picture?", &image, 1 },
        { VL2_ROLE_ASSISTANT, "", NULL, 0 },
    };
    vl2_conversation conv = { msgs, 2, NULL };
    vl2_prompt *p = NULL;
    vl2_session *s;
    vl2_error err;
    g_assert_cmpint(vl2_prompt_new(m, &conv, &p, &err), ==, VL2_OK);
    g_assert_cmpint(vl2_prompt_n_tiles(p), >=, 2);
    g_assert_cmpint(vl2_session_new(m, NULL, &s, &err), ==, VL2_OK);
    truncate_on_progress t = { weights, 0 };
    vl2_generate_params gp = greedy(8);
    gp.progress = truncate_progress_cb;
    gp.progress_user_data = &t;

    assert_changed(vl2_session_prefill(s, p, &gp, &err), &err, weights);
    g_assert_cmpint(t.calls, >=, 1);
    g_assert_cmpint(vl2_session_n_past(s), ==, 0);
    vl2_session_free(s);
    vl2_prompt_free(p);
    vl2_model_free(m);
    test_rmtree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * Replaced by another file (renamed over it): the mapping is intact, the change is reported
 */

static char *answer(vl2_model *m, const char *question, vl2_status *status)
{
    vl2_prompt *p = text_prompt(m, question);
    vl2_session *s;
    vl2_error err;
    GString *text = g_string_new(NULL);
    g_assert_cmpint(vl2_session_new(m, NULL, &s, &err), ==, VL2_OK);
    vl2_generate_params gp = greedy(12);
    *status = vl2_session_prefill(s, p, &gp, &err);
    vl2_step step = { 0 };
    while (*status == VL2_OK && step.stop == VL2_STOP_NONE) {
        *status = vl2_session_step(s, &step, &err);
        if (*status == VL2_OK)
            g_string_append(text, step.text);
    }
    vl2_session_free(s);
    vl2_prompt_free(p);
    return g_string_free(text, FALSE);
}

static void test_replaced(void)
{
    g_autofree char *dir = copy_fixture();
    g_autofree char *weights = g_build_filename(dir, "model.safetensors", NULL);
    g_autofree char *fresh = g_build_filename(dir, "model.safetensors.part", NULL);
    g_autofree char *config = g_build_filename(dir, "config.json", NULL);
    vl2_model *m = load(dir);
    vl2_status st;
    vl2_error err;
    g_autofree char *before = answer(m, "Hello!", &st);
    g_assert_cmpint(st, ==, VL2_OK);

    /* a download finishing: the new file renamed over the old one */
    copy_file(weights, fresh);
    g_assert_no_errno(g_rename(fresh, weights));
    assert_changed(vl2_model_check_files(m, &err), &err, weights);
    g_assert_nonnull(strstr(err.message, "replaced"));
    /* the model still reads the file it mapped, which nothing changed */
    g_autofree char *after = answer(m, "Hello!", &st);
    g_assert_cmpint(st, ==, VL2_OK);
    g_assert_cmpstr(after, ==, before);
    g_assert_false(tripped(m));
    vl2_model_free(m);

    /* the other files of the folder count too */
    m = load(dir);
    g_assert_cmpint(vl2_model_check_files(m, &err), ==, VL2_OK);
    g_autofree char *text = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(config, &text, &len, NULL));
    g_assert_no_errno(g_unlink(config));
    assert_changed(vl2_model_check_files(m, &err), &err, config);
    g_assert_nonnull(strstr(err.message, "removed"));
    test_write_file(config, text, (gssize)len);
    assert_changed(vl2_model_check_files(m, &err), &err, config);
    vl2_model_free(m);
    test_rmtree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * The guard itself: a read past the end of a truncated mapping reads zeros and trips it; a
 * SIGBUS anywhere else still ends the process
 */

static void test_mapped_read(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed();
        return;
    }
    g_autofree char *dir = copy_fixture();
    g_autofree char *weights = g_build_filename(dir, "model.safetensors", NULL);
    vl2_st_file *f;
    vl2_error err;
    g_assert_cmpint(vl2_st_open(weights, &f, &err), ==, VL2_OK);
    g_assert_cmpint(f->guard, >=, 0);
    g_assert_cmpuint(f->map_size, >, 2 * MIB);
    g_assert_cmpint(vl2_st_check(f, &err), ==, VL2_OK);
    const volatile uint8_t *bytes = f->map;
    uint8_t header = bytes[8];
    g_assert_cmpint(header, ==, '{');

    g_assert_no_errno(truncate(weights, MIB));
    g_assert_cmpint(bytes[f->map_size - 1], ==, 0); /* past the end: SIGBUS, caught */
    g_assert_true(vl2_guard_tripped(f->guard));
    g_assert_cmpint(bytes[8], ==, 0); /* the whole mapping now reads zeros */
    assert_changed(vl2_st_check(f, &err), &err, weights);
    vl2_st_close(f);
    test_rmtree(dir);
}

static void test_foreign_sigbus(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
        g_test_trap_assert_failed();
        g_test_trap_assert_stderr_unmatched("*swallowed*");
        return;
    }
    g_autofree char *dir = copy_fixture();
    g_autofree char *weights = g_build_filename(dir, "model.safetensors", NULL);
    g_autofree char *other = g_build_filename(dir, "other", NULL);
    vl2_st_file *f;
    vl2_error err;
    /* the engine's handler is installed */
    g_assert_cmpint(vl2_st_open(weights, &f, &err), ==, VL2_OK);
    g_assert_cmpint(f->guard, >=, 0);

    /* a mapping of the program's own, cut short and read: the program dies of it */
    copy_file(weights, other);
    int fd = open(other, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    const volatile uint8_t *bytes = mmap(NULL, f->map_size, PROT_READ, MAP_SHARED, fd, 0);
    g_assert_true(bytes != MAP_FAILED);
    g_assert_no_errno(truncate(other, MIB));
    test_rmtree(dir);
    g_test_message("read %d", bytes[f->map_size - 1]);
    g_error("a SIGBUS outside the engine's mappings was swallowed");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/guard/truncate-mid-generation", test_truncate_mid_generation);
    g_test_add_func("/engine/guard/truncate-before-prefill", test_truncate_before_prefill);
    g_test_add_func("/engine/guard/truncate-during-prefill", test_truncate_during_prefill);
    g_test_add_func("/engine/guard/replaced", test_replaced);
    g_test_add_func("/engine/guard/mapped-read", test_mapped_read);
    g_test_add_func("/engine/guard/foreign-sigbus", test_foreign_sigbus);
    return g_test_run();
}
