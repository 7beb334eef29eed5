/* test-util.c - see test-util.h. */
#include "test-util.h"

#include <glib/gstdio.h>
#include <sys/wait.h>

static const char *env_or_skip(const char *var)
{
    const char *v = g_getenv(var);
    if (!v || !*v)
        g_error("%s is not set; run the tests through meson test", var);
    return v;
}

const char *test_golden_dir(void) { return env_or_skip("VL2_GOLDEN_DIR"); }
const char *test_model_files_dir(void) { return env_or_skip("VL2_MODEL_FILES_DIR"); }
const char *test_fixture_dir(void) { return env_or_skip("VL2_FIXTURE_DIR"); }

char *test_golden_path(const char *rel)
{
    return g_build_filename(test_golden_dir(), rel, NULL);
}

char *test_model_file(const char *rel)
{
    return g_build_filename(test_model_files_dir(), rel, NULL);
}

JsonNode *test_load_json(const char *path)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    if (!json_parser_load_from_file(parser, path, &error))
        g_error("cannot parse %s: %s", path, error->message);
    return json_node_ref(json_parser_get_root(parser));
}

char *test_make_tmpdir(void)
{
    g_autoptr(GError) error = NULL;
    char *dir = g_dir_make_tmp("vl2-test-XXXXXX", &error);
    g_assert_no_error(error);
    return dir;
}

void test_rmtree(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    if (d) {
        const char *name;
        while ((name = g_dir_read_name(d))) {
            g_autofree char *p = g_build_filename(dir, name, NULL);
            if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
                test_rmtree(p);
            else
                g_unlink(p);
        }
        g_dir_close(d);
    }
    g_rmdir(dir);
}

void test_write_file(const char *path, const void *data, gssize len)
{
    g_autoptr(GError) error = NULL;
    g_file_set_contents(path, data, len, &error);
    g_assert_no_error(error);
}

test_run_result test_run_cli(const char *const *args)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)env_or_skip("VL2_CLI"));
    for (const char *const *a = args; *a; a++)
        g_ptr_array_add(argv, (char *)*a);
    g_ptr_array_add(argv, NULL);
    test_run_result r = { 0 };
    g_autoptr(GError) error = NULL;
    int wait_status;
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &r.out,
                      &r.err, &wait_status, &error))
        g_error("cannot run %s: %s", (const char *)argv->pdata[0], error->message);
    r.status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
    g_ptr_array_unref(argv);
    return r;
}

void test_run_clear(test_run_result *r)
{
    g_free(r->out);
    g_free(r->err);
}

float *test_prompt_logits(vl2_model *m, const char *text)
{
    vl2_session *ses;
    vl2_prompt *p;
    vl2_error err;
    vl2_message msg = { VL2_ROLE_USER, text, NULL, 0 };
    vl2_conversation conv = { &msg, 1, NULL };
    if (vl2_prompt_new(m, &conv, &p, &err) != VL2_OK ||
        vl2_session_new(m, NULL, &ses, &err) != VL2_OK)
        g_error("%s", err.message);
    vl2_generate_params gp = vl2_generate_default_params();
    gp.temperature = 0;
    if (vl2_session_prefill(ses, p, &gp, &err) != VL2_OK)
        g_error("%s", err.message);
    vl2_model_info info;
    vl2_model_get_info(m, &info);
    float *logits = g_memdup2(vl2_session_logits(ses), (gsize)info.n_vocab * sizeof(float));
    vl2_prompt_free(p);
    vl2_session_free(ses);
    return logits;
}

float *test_dir_logits(const char *dir, const vl2_model_params *params)
{
    vl2_model *m;
    vl2_error err;
    if (vl2_model_load(dir, params, &m, &err) != VL2_OK)
        g_error("cannot load %s: %s", dir, err.message);
    float *logits = test_prompt_logits(m, "Hello");
    vl2_model_free(m);
    return logits;
}
