/* test-memory.c - large but legal inputs cost memory in proportion to what is kept of them, not
 * to a parser's tree of their whole text (the heap followed by heap-peak.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../heap/heap-peak.h"
#include "test-util.h"
#include "vl2-private.h"

/* A safetensors file of n one-element float tensors; the header's length in *header_len. */
static char *write_many_tensors(const char *dir, int n, size_t *header_len)
{
    GString *h = g_string_new("{\"__metadata__\": {\"format\": \"pt\"}");
    for (int i = 0; i < n; i++)
        g_string_append_printf(h, ", \"model.layers.%d.mlp.experts.%d.weight\": {\"dtype\": "
                               "\"F32\", \"shape\": [1], \"data_offsets\": [%d, %d]}",
                               i / 64, i % 64, 4 * i, 4 * i + 4);
    g_string_append_c(h, '}');
    char *path = g_build_filename(dir, "many.safetensors", NULL);
    FILE *f = fopen(path, "wb");
    g_assert_nonnull(f);
    uint64_t len = h->len;
    for (int b = 0; b < 8; b++)
        fputc((int)(len >> (8 * b) & 0xff), f);
    fwrite(h->str, 1, h->len, f);
    float zero[1024] = { 0 };
    for (int i = 0; i < n; i += 1024)
        fwrite(zero, sizeof(float), (size_t)MIN(1024, n - i), f);
    g_assert_cmpint(fclose(f), ==, 0);
    *header_len = h->len;
    g_string_free(h, TRUE);
    return path;
}

/* A 100,000-tensor header (10.8 MB): json-glib's tree of it was about nine times its text. Kept
 * are the tensors' table (about 180 bytes a tensor); the header is read in place. */
static void test_safetensors_header(void)
{
    g_autofree char *dir = test_make_tmpdir();
    const int n = 100000;
    size_t header_len;
    g_autofree char *path = write_many_tensors(dir, n, &header_len);
    long base = heap_peak_begin();
    vl2_st_file *f;
    vl2_error err;
    if (vl2_st_open(path, &f, &err) != VL2_OK)
        g_error("%s", err.message);
    long kept = heap_live() - base;
    long extra = heap_peak() - base;
    g_assert_nonnull(vl2_st_get(f, "model.layers.1562.mlp.experts.31.weight"));
    vl2_st_close(f);
    g_test_message("header %zu bytes; heap kept %ld, peak %ld above the start", header_len, kept,
                   extra);
    g_assert_cmpint(kept, <, 250L * n);
    /* the table, and working space of a few MB at most */
    g_assert_cmpint(extra, <, kept + (8L << 20));
    test_rmtree(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/memory/safetensors-header", test_safetensors_header);
    return g_test_run();
}
