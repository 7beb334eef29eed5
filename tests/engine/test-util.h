/* test-util.h - helpers shared by the engine tests: where the golden data and fixtures are. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "vl2.h"

/* $VL2_GOLDEN_DIR (set by meson): tests/golden, or the extended set for the 'model' suite. */
const char *test_golden_dir(void);
/* $VL2_MODEL_FILES_DIR: engine/deepseek-vl2, the published configs, tokenizer and weight index. */
const char *test_model_files_dir(void);
/* g_build_filename(test_model_files_dir(), rel, NULL), e.g. "tiny/config.json" */
char *test_model_file(const char *rel);
/* $VL2_FIXTURE_DIR: generated checkpoints (golden mini models with weights) in the build tree. */
const char *test_fixture_dir(void);
/* g_build_filename(test_golden_dir(), rel, NULL) */
char *test_golden_path(const char *rel);
/* Parses a JSON file; aborts the test on failure. Free with json_node_unref(). */
JsonNode *test_load_json(const char *path);
/* A fresh temporary directory (removed by test_rmtree). */
char *test_make_tmpdir(void);
void test_rmtree(const char *dir);
/* Writes a file (aborts the test on failure). */
void test_write_file(const char *path, const void *data, gssize len);

/* The output and exit status of one run of the vl2 command line tool ($VL2_CLI). */
typedef struct {
    int status; /* exit status, -1 when killed by a signal */
    char *out, *err;
} test_run_result;

/* Runs $VL2_CLI with args (NULL-terminated), collecting its output; aborts the test if it
 * cannot start. Free with test_run_clear(). */
test_run_result test_run_cli(const char *const *args);
void test_run_clear(test_run_result *r);

/* The logits (info.n_vocab floats, g_free them) after a one-message user prompt with text,
 * read by a fresh session of m. */
float *test_prompt_logits(vl2_model *m, const char *text);
/* The same for the checkpoint in dir, loaded with params (NULL: the defaults). */
float *test_dir_logits(const char *dir, const vl2_model_params *params);
