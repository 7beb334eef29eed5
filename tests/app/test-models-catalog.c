/* test-models-catalog.c - the published models and the scan for installed ones (app-models.c).
 *
 * The fit hint's thresholds; the models folder (a download with its marker, an app-made copy
 * named by its record and weights read from its header, a folder without a marker, a
 * download still under way and a folder that is no DeepSeek-VL2 checkpoint left out); added
 * folders, a missing one still listed; huggingface_hub's cache with refs/main choosing the
 * snapshot; a folder found twice listed once; copy names that never collide; deleting a tree
 * that holds symbolic links without following them.
 */
#include <glib/gstdio.h>
#include <unistd.h>

#include "app-hub.h"
#include "app-models.h"
#include "tree.h"

static char *tmp;

static void
write_file (const char *dir,
       const char *name,
       const char *text)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
}

static char *
checkpoint (const char *parent,
            const char *name)
{
  char *dir = g_build_filename (parent, name, NULL);

  write_file (dir, "config.json", "{\"model_type\": \"deepseek_vl_v2\"}");
  write_file (dir, "tokenizer.json", "{}");
  return dir;
}

/* A safetensors file whose header names `format` in __metadata__ (NULL: none). */
static void
write_weights (const char *dir,
               const char *format)
{
  g_autofree char *header = format
    ? g_strdup_printf ("{\"__metadata__\": {\"format\": \"%s\"}}", format)
    : g_strdup ("{\"w\": {\"dtype\": \"BF16\", \"shape\": [1], \"data_offsets\": [0, 2]}}");
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  GString *bytes = g_string_new (NULL);
  guint64 len = strlen (header);

  for (int i = 0; i < 8; i++)
    g_string_append_c (bytes, (char) ((len >> (8 * i)) & 0xff));
  g_string_append (bytes, header);
  g_string_append_len (bytes, "\0\0", 2);
  g_assert_true (g_file_set_contents (path, bytes->str, (gssize) bytes->len, NULL));
  g_string_free (bytes, TRUE);
}

static AppModelEntry *
find (GPtrArray  *entries,
      const char *path)
{
  for (guint i = 0; i < entries->len; i++)
    if (g_strcmp0 (app_model_entry_get_path (entries->pdata[i]), path) == 0)
      return entries->pdata[i];
  return NULL;
}

static void
test_published (void)
{
  guint n = 0;
  const AppPublishedModel *m = app_models_published (&n);

  g_assert_cmpuint (n, ==, 3);
  g_assert_cmpstr (m[0].repo, ==, "deepseek-ai/deepseek-vl2-tiny");
  g_assert_cmpstr (m[2].repo, ==, "deepseek-ai/deepseek-vl2");
  for (guint i = 0; i < n; i++)
    {
      /* smaller copies need less; bigger models more */
      const guint64 *ram = m[i].ram_bytes;

      g_assert_cmpuint (ram[APP_MODEL_WEIGHTS_Q8], <, ram[APP_MODEL_WEIGHTS_BF16]);
      g_assert_cmpuint (ram[APP_MODEL_WEIGHTS_Q4], <, ram[APP_MODEL_WEIGHTS_Q8]);
      if (i > 0)
        g_assert_cmpuint (m[i].download_bytes, >, m[i - 1].download_bytes);
      g_assert_true (app_models_find_published (m[i].repo) == &m[i]);
    }
  g_assert_true (app_models_find_published ("DeepSeek-AI/DeepSeek-VL2-Tiny") == &m[0]);
  g_assert_null (app_models_find_published ("someone/else"));
  g_assert_null (app_models_find_published (NULL));
}

static void
test_fit (void)
{
  g_assert_cmpint (app_models_fit (8, 10), ==, APP_MODEL_FITS);
  g_assert_cmpint (app_models_fit (9, 10), ==, APP_MODEL_SLOW);
  g_assert_cmpint (app_models_fit (12, 10), ==, APP_MODEL_SLOW);
  g_assert_cmpint (app_models_fit (13, 10), ==, APP_MODEL_TOO_BIG);
  g_assert_cmpint (app_models_fit (1, 0), ==, APP_MODEL_SLOW);   /* unknown memory */
  g_assert_cmpuint (app_models_machine_ram (), >, 0);
}

static void
test_scan (void)
{
  g_autofree char *models = g_build_filename (tmp, "scan", "models", NULL);
  g_autofree char *download = checkpoint (models, "deepseek-ai--deepseek-vl2-tiny");
  g_autofree char *copy = checkpoint (models, "deepseek-ai--deepseek-vl2-tiny-q8");
  g_autofree char *plain = checkpoint (models, "my-model");
  g_autofree char *underway = checkpoint (models, "deepseek-ai--deepseek-vl2-small");
  g_autofree char *partial = g_build_filename (underway, ".partial", NULL);
  g_autofree char *other = g_build_filename (models, "not-vl2", NULL);
  g_autofree char *added = checkpoint (tmp, "elsewhere");
  g_autofree char *missing = g_build_filename (tmp, "gone", NULL);
  g_autofree char *cache = g_build_filename (tmp, "scan", "hub", NULL);
  g_autofree char *repo_dir = g_build_filename (cache, "models--deepseek-ai--deepseek-vl2", NULL);
  g_autofree char *snapshots = g_build_filename (repo_dir, "snapshots", NULL);
  g_autofree char *old_snap = checkpoint (snapshots, "1111111111111111111111111111111111111111");
  g_autofree char *main_snap = checkpoint (snapshots, "2222222222222222222222222222222222222222");
  g_autofree char *refs = g_build_filename (repo_dir, "refs", NULL);
  g_autofree char *not_models = g_build_filename (cache, "datasets--x--y", NULL);
  g_autoptr(GPtrArray) entries = NULL;
  const char *added_list[] = { added, missing, download, NULL };
  AppModelEntry *e;

  write_file (download, APP_HUB_MARKER,
         "{\"repo\": \"deepseek-ai/deepseek-vl2-tiny\", \"commit\": \"abc\", \"files\": []}");
  write_weights (download, NULL);
  write_file (copy, APP_MODELS_COPY_MARKER, "{\"name\": \"Tiny, 8-bit\", \"source\": \"x\"}");
  write_weights (copy, "vl2-q8_0");
  write_weights (plain, "vl2-q4_0");
  g_assert_cmpint (g_mkdir_with_parents (partial, 0755), ==, 0);
  write_file (other, "config.json", "{\"model_type\": \"llama\"}");
  write_file (refs, "main", "2222222222222222222222222222222222222222\n");
  write_file (not_models, "README", "");

  entries = app_models_scan (models, added_list, cache);
  /* the download, the copy, my-model, the added folder and the missing one, the cache */
  g_assert_cmpuint (entries->len, ==, 6);

  e = find (entries, download);
  g_assert_nonnull (e);
  g_assert_cmpint (app_model_entry_get_source (e), ==, APP_MODEL_SOURCE_DOWNLOAD);
  g_assert_cmpstr (app_model_entry_get_repo (e), ==, "deepseek-ai/deepseek-vl2-tiny");
  g_assert_cmpstr (app_model_entry_get_name (e), ==, "DeepSeek-VL2 Tiny");
  g_assert_cmpint (app_model_entry_get_weights (e), ==, APP_MODEL_WEIGHTS_BF16);
  g_assert_cmpstr (app_model_entry_get_delete_path (e), ==, download);
  g_assert_cmpuint (app_model_entry_get_disk_bytes (e), >, 0);
  g_assert_true (entries->pdata[0] == e);   /* the models folder first, by name */

  e = find (entries, copy);
  g_assert_cmpint (app_model_entry_get_source (e), ==, APP_MODEL_SOURCE_COPY);
  g_assert_cmpstr (app_model_entry_get_name (e), ==, "Tiny, 8-bit");
  g_assert_cmpint (app_model_entry_get_weights (e), ==, APP_MODEL_WEIGHTS_Q8);

  e = find (entries, plain);
  g_assert_cmpint (app_model_entry_get_source (e), ==, APP_MODEL_SOURCE_FOLDER);
  g_assert_cmpstr (app_model_entry_get_name (e), ==, "my-model");
  g_assert_cmpint (app_model_entry_get_weights (e), ==, APP_MODEL_WEIGHTS_Q4);

  g_assert_null (find (entries, underway));
  g_assert_null (find (entries, other));

  e = find (entries, added);
  g_assert_cmpint (app_model_entry_get_source (e), ==, APP_MODEL_SOURCE_FOLDER);
  g_assert_null (app_model_entry_get_delete_path (e));   /* only forgotten, never deleted */
  e = find (entries, missing);
  g_assert_nonnull (e);
  g_assert_cmpuint (app_model_entry_get_disk_bytes (e), ==, 0);

  /* refs/main names the snapshot, whatever the others' times */
  g_assert_null (find (entries, old_snap));
  e = find (entries, main_snap);
  g_assert_nonnull (e);
  g_assert_cmpint (app_model_entry_get_source (e), ==, APP_MODEL_SOURCE_HF_CACHE);
  g_assert_cmpstr (app_model_entry_get_repo (e), ==, "deepseek-ai/deepseek-vl2");
  g_assert_cmpstr (app_model_entry_get_name (e), ==, "DeepSeek-VL2");
  g_assert_cmpstr (app_model_entry_get_delete_path (e), ==, repo_dir);

  /* a copy's name never collides; a cache snapshot's copy is named by its repository */
  {
    g_autofree char *next = app_models_copy_path (models, download, APP_MODEL_WEIGHTS_Q8);
    g_autofree char *want = g_strconcat (download, "-q8-2", NULL);
    g_autofree char *q4 = app_models_copy_path (models, download, APP_MODEL_WEIGHTS_Q4);
    g_autofree char *want_q4 = g_strconcat (download, "-q4", NULL);
    g_autofree char *from_cache = app_models_copy_path (models, main_snap, APP_MODEL_WEIGHTS_Q8);
    g_autofree char *want_cache = g_build_filename (models, "deepseek-ai--deepseek-vl2-q8", NULL);

    g_assert_cmpstr (next, ==, want);
    g_assert_cmpstr (q4, ==, want_q4);
    g_assert_cmpstr (from_cache, ==, want_cache);
  }
}

static void
test_delete_tree (void)
{
  g_autofree char *keep = checkpoint (tmp, "keep");
  g_autofree char *keep_file = g_build_filename (keep, "config.json", NULL);
  g_autofree char *doomed = g_build_filename (tmp, "doomed", NULL);
  g_autofree char *deep = g_build_filename (doomed, "a", "b", NULL);
  g_autofree char *link_file = g_build_filename (doomed, "config.json", NULL);
  g_autofree char *link_dir = g_build_filename (deep, "keep", NULL);
  g_autoptr(GError) error = NULL;

  write_file (deep, "file", "bytes");
  g_assert_cmpint (symlink (keep_file, link_file), ==, 0);
  g_assert_cmpint (symlink (keep, link_dir), ==, 0);
  g_assert_true (app_models_delete_tree (doomed, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (doomed, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (keep_file, G_FILE_TEST_IS_REGULAR));
  /* gone already: nothing to do */
  g_assert_true (app_models_delete_tree (doomed, NULL, &error));

  /* a folder that cannot be emptied says which file */
  if (geteuid () != 0)
    {
      g_autofree char *locked = g_build_filename (tmp, "locked", NULL);
      g_autofree char *inner = g_build_filename (locked, "inner", NULL);

      write_file (inner, "f", "x");
      g_assert_cmpint (g_chmod (inner, 0555), ==, 0);
      g_assert_false (app_models_delete_tree (locked, NULL, &error));
      g_assert_nonnull (strstr (error->message, "inner"));
      g_chmod (inner, 0755);
    }
}

int
main (int   argc,
      char *argv[])
{
  int status;

  g_test_init (&argc, &argv, NULL);
  tmp = g_dir_make_tmp ("models-catalog-XXXXXX", NULL);
  g_test_add_func ("/app/models-catalog/published", test_published);
  g_test_add_func ("/app/models-catalog/fit", test_fit);
  g_test_add_func ("/app/models-catalog/scan", test_scan);
  g_test_add_func ("/app/models-catalog/delete-tree", test_delete_tree);
  status = g_test_run ();
  tree_remove (tmp);
  g_free (tmp);
  return status;
}
