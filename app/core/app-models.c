/* app-models.c - the published models, and the installed ones. */
#define G_LOG_DOMAIN "sightline-models"

#include "app-models.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app-hub.h"
#include "vl2-input.h"

#define GB(x) ((guint64) ((x) * 1e9))

/* Download sizes are the repositories' files. The memory is the peak RSS while answering one
 * image with a 4096-token context: measured for Tiny (engine/QUANT.md: 6.3, 3.2 and 1.9 GB);
 * for Small and the full model, their weights at 2, 1.06 and 0.56 bytes a parameter (the
 * vision encoder and projector stay bf16 in the copies) plus the same activations. */
static const AppPublishedModel published[] = {
  { "deepseek-ai/deepseek-vl2-tiny", "DeepSeek-VL2 Tiny",
    N_("3.4 billion parameters, 1.0 billion active for each word. Reads text, tables, charts "
       "and documents; finds things in pictures."),
    GB (6.74), { GB (6.3), GB (3.2), GB (1.9) } },
  { "deepseek-ai/deepseek-vl2-small", "DeepSeek-VL2 Small",
    N_("16.1 billion parameters, 2.8 billion active for each word. More accurate; needs a "
       "workstation's memory."),
    GB (32.1), { GB (33.0), GB (17.7), GB (9.7) } },
  { "deepseek-ai/deepseek-vl2", "DeepSeek-VL2",
    N_("27.5 billion parameters, 4.5 billion active for each word. The most accurate; made "
       "for servers."),
    54960268496, { GB (56.5), GB (30.0), GB (16.2) } },
};

const AppPublishedModel *
app_models_published (guint *n_models)
{
  if (n_models)
    *n_models = G_N_ELEMENTS (published);
  return published;
}

const AppPublishedModel *
app_models_find_published (const char *repo)
{
  for (guint i = 0; repo && i < G_N_ELEMENTS (published); i++)
    if (g_ascii_strcasecmp (published[i].repo, repo) == 0)
      return &published[i];
  return NULL;
}

guint64
app_models_machine_ram (void)
{
  long pages = sysconf (_SC_PHYS_PAGES);
  long page = sysconf (_SC_PAGESIZE);

  return pages > 0 && page > 0 ? (guint64) pages * (guint64) page : 0;
}

AppModelFit
app_models_fit (guint64 needed,
                guint64 machine_ram)
{
  if (machine_ram == 0)
    return APP_MODEL_SLOW;   /* unknown: neither a promise nor a refusal */
  if ((double) needed <= 0.8 * (double) machine_ram)
    return APP_MODEL_FITS;
  if ((double) needed <= 1.2 * (double) machine_ram)
    return APP_MODEL_SLOW;
  return APP_MODEL_TOO_BIG;
}

char *
app_models_default_folder (void)
{
  return g_build_filename (g_get_user_data_dir (), "sightline", "models", NULL);
}

char *
app_models_hf_cache_folder (void)
{
  const char *hub_cache = g_getenv ("HF_HUB_CACHE");
  const char *home = g_getenv ("HF_HOME");

  if (hub_cache && hub_cache[0])
    return g_strdup (hub_cache);
  if (home && home[0])
    return g_build_filename (home, "hub", NULL);
  return g_build_filename (g_get_user_cache_dir (), "huggingface", "hub", NULL);
}

/* ---------------------------------------------------------------------------------------------
 * AppModelEntry
 */

struct _AppModelEntry
{
  GObject parent_instance;

  char *path;
  char *name;
  char *repo;
  char *delete_path;
  AppModelSource source;
  AppModelWeights weights;
  guint64 disk_bytes;
};

G_DEFINE_FINAL_TYPE (AppModelEntry, app_model_entry, G_TYPE_OBJECT)

static void
app_model_entry_finalize (GObject *object)
{
  AppModelEntry *self = APP_MODEL_ENTRY (object);

  g_free (self->path);
  g_free (self->name);
  g_free (self->repo);
  g_free (self->delete_path);
  G_OBJECT_CLASS (app_model_entry_parent_class)->finalize (object);
}

static void
app_model_entry_class_init (AppModelEntryClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = app_model_entry_finalize;
}

static void
app_model_entry_init (AppModelEntry *self)
{
}

const char *
app_model_entry_get_path (AppModelEntry *self)
{
  g_return_val_if_fail (APP_IS_MODEL_ENTRY (self), NULL);
  return self->path;
}

const char *
app_model_entry_get_name (AppModelEntry *self)
{
  g_return_val_if_fail (APP_IS_MODEL_ENTRY (self), NULL);
  return self->name;
}

const char *
app_model_entry_get_repo (AppModelEntry *self)
{
  g_return_val_if_fail (APP_IS_MODEL_ENTRY (self), NULL);
  return self->repo;
}

AppModelSource
app_model_entry_get_source (AppModelEntry *self)
{
  g_return_val_if_fail (APP_IS_MODEL_ENTRY (self), APP_MODEL_SOURCE_FOLDER);
  return self->source;
}

AppModelWeights
app_model_entry_get_weights (AppModelEntry *self)
{
  g_return_val_if_fail (APP_IS_MODEL_ENTRY (self), APP_MODEL_WEIGHTS_BF16);
  return self->weights;
}

guint64
app_model_entry_get_disk_bytes (AppModelEntry *self)
{
  g_return_val_if_fail (APP_IS_MODEL_ENTRY (self), 0);
  return self->disk_bytes;
}

const char *
app_model_entry_get_delete_path (AppModelEntry *self)
{
  g_return_val_if_fail (APP_IS_MODEL_ENTRY (self), NULL);
  return self->delete_path;
}

/* ---------------------------------------------------------------------------------------------
 * Reading folders
 */

/* A small JSON object from a regular file, or NULL. A config.json or marker is small; a named
 * pipe in its place must not stall the scan, which runs before the Models page shows. */
static JsonObject *
read_json_object (const char *path)
{
  g_autoptr(JsonParser) parser = json_parser_new ();

  if (!vl2_json_load_file (parser, path, VL2_SMALL_FILE_MAX_BYTES, NULL) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    return NULL;
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

/* Whether `dir` holds a DeepSeek-VL2 config. */
static gboolean
is_checkpoint (const char *dir)
{
  g_autofree char *config = g_build_filename (dir, "config.json", NULL);
  g_autoptr(JsonObject) obj = read_json_object (config);

  return obj != NULL &&
         g_strcmp0 (json_object_get_string_member_with_default (obj, "model_type", ""),
                    "deepseek_vl_v2") == 0;
}

/* The weights a folder holds: a copy's single model.safetensors names its format in the
 * header's __metadata__ (engine/QUANT.md). */
static AppModelWeights
read_weights (const char *dir)
{
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autofree char *header = NULL;
  guint8 len_bytes[8];
  guint64 len = 0;
  AppModelWeights weights = APP_MODEL_WEIGHTS_BF16;
  JsonNode *root;
  goffset size;
  int fd;

  fd = vl2_input_open (path, &size, NULL);
  if (fd < 0)
    return weights;
  if (read (fd, len_bytes, 8) != 8)
    goto out;
  for (int i = 7; i >= 0; i--)
    len = (len << 8) | len_bytes[i];
  if (len < 2 || len > VL2_SAFETENSORS_HEADER_MAX_BYTES || len > (guint64) size - 8)
    goto out;
  header = g_malloc (len);
  if (read (fd, header, len) != (ssize_t) len ||
      !vl2_json_load_data (parser, header, len, NULL, NULL))
    goto out;
  root = json_parser_get_root (parser);
  if (JSON_NODE_HOLDS_OBJECT (root))
    {
      JsonNode *meta_node = json_object_get_member (json_node_get_object (root),
                                                    "__metadata__");
      JsonObject *meta = meta_node && JSON_NODE_HOLDS_OBJECT (meta_node)
                         ? json_node_get_object (meta_node) : NULL;
      const char *format = meta && json_object_has_member (meta, "format") &&
                           JSON_NODE_HOLDS_VALUE (json_object_get_member (meta, "format"))
                           ? json_object_get_string_member (meta, "format") : NULL;

      if (g_strcmp0 (format, "vl2-q8_0") == 0)
        weights = APP_MODEL_WEIGHTS_Q8;
      else if (g_strcmp0 (format, "vl2-q4_0") == 0)
        weights = APP_MODEL_WEIGHTS_Q4;
    }
out:
  close (fd);
  return weights;
}

/* Bytes the files under `path` take on disk; symbolic links are followed when `follow` (the
 * cache's snapshots link to its blobs). */
static guint64
disk_usage (const char *path,
            gboolean    follow,
            int         depth)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;
  guint64 total = 0;
  GStatBuf st;

  if ((follow ? g_stat (path, &st) : g_lstat (path, &st)) != 0)
    return 0;
  if (!S_ISDIR (st.st_mode))
    return (guint64) st.st_blocks * 512;
  if (depth > 16 || !(dir = g_dir_open (path, 0, NULL)))
    return 0;
  while ((name = g_dir_read_name (dir)))
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      total += disk_usage (child, follow, depth + 1);
    }
  return total;
}

static AppModelEntry *
entry_new (const char     *path,
           AppModelSource  source,
           const char     *repo,
           const char     *name,
           const char     *delete_path)
{
  AppModelEntry *self = g_object_new (APP_TYPE_MODEL_ENTRY, NULL);
  const AppPublishedModel *known = app_models_find_published (repo);

  self->path = g_strdup (path);
  self->source = source;
  self->repo = g_strdup (repo);
  self->delete_path = g_strdup (delete_path);
  self->weights = read_weights (path);
  self->disk_bytes = disk_usage (path, source == APP_MODEL_SOURCE_HF_CACHE, 0);
  if (name && name[0])
    self->name = g_strdup (name);
  else if (known)
    self->name = g_strdup (known->name);
  else if (repo)
    self->name = g_strdup (repo);
  else
    self->name = g_path_get_basename (path);
  return self;
}

static char *
canonical (const char *path)
{
  char *real = realpath (path, NULL);
  char *copy = g_strdup (real ? real : path);

  free (real);
  return copy;
}

static void
add_entry (GPtrArray     *entries,
           GHashTable    *seen,
           AppModelEntry *entry)
{
  char *key = canonical (entry->path);

  if (g_hash_table_contains (seen, key))
    {
      g_free (key);
      g_object_unref (entry);
      return;
    }
  g_hash_table_add (seen, key);
  g_ptr_array_add (entries, entry);
}

static gint
compare_names (gconstpointer a,
               gconstpointer b)
{
  return g_strcmp0 (*(const char * const *) a, *(const char * const *) b);
}

/* The visible subfolders of `path`, sorted. */
static GPtrArray *
sorted_children (const char *path)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)))
    if (name[0] != '.')
      g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  return names;
}

static void
scan_models_folder (const char *folder,
                    GPtrArray  *entries,
                    GHashTable *seen)
{
  g_autoptr(GPtrArray) names = sorted_children (folder);

  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *path = g_build_filename (folder, names->pdata[i], NULL);
      g_autofree char *partial = g_build_filename (path, ".partial", NULL);
      g_autofree char *copy_marker = g_build_filename (path, APP_MODELS_COPY_MARKER, NULL);
      g_autofree char *repo = NULL;
      g_autoptr(JsonObject) copy = NULL;

      if (!g_file_test (path, G_FILE_TEST_IS_DIR))
        continue;
      if (app_hub_is_installed (path, &repo, NULL))
        {
          add_entry (entries, seen,
                     entry_new (path, APP_MODEL_SOURCE_DOWNLOAD, repo, NULL, path));
          continue;
        }
      /* a download under way, or stopped, is not a model yet */
      if (g_file_test (partial, G_FILE_TEST_EXISTS) || !is_checkpoint (path))
        continue;
      copy = read_json_object (copy_marker);
      if (copy)
        add_entry (entries, seen,
                   entry_new (path, APP_MODEL_SOURCE_COPY, NULL,
                              json_object_get_string_member_with_default (copy, "name", NULL),
                              path));
      else
        add_entry (entries, seen, entry_new (path, APP_MODEL_SOURCE_FOLDER, NULL, NULL, path));
    }
}

/* huggingface_hub: models--OWNER--NAME/{refs/main, snapshots/COMMIT/...}. The snapshot
 * refs/main names, else the newest that is a checkpoint. */
static void
scan_hf_cache (const char *cache,
               GPtrArray  *entries,
               GHashTable *seen)
{
  g_autoptr(GPtrArray) names = sorted_children (cache);

  for (guint i = 0; i < names->len; i++)
    {
      const char *name = names->pdata[i];
      g_autofree char *repo_dir = g_build_filename (cache, name, NULL);
      g_autofree char *snapshots = g_build_filename (repo_dir, "snapshots", NULL);
      g_autofree char *ref_path = g_build_filename (repo_dir, "refs", "main", NULL);
      g_autofree char *ref = NULL;
      g_autofree char *best = NULL;
      g_auto(GStrv) parts = NULL;
      g_autofree char *repo = NULL;
      gint64 best_time = G_MININT64;

      if (!g_str_has_prefix (name, "models--"))
        continue;
      parts = g_strsplit (name + strlen ("models--"), "--", 2);
      if (g_strv_length (parts) != 2)
        continue;
      repo = g_strconcat (parts[0], "/", parts[1], NULL);
      if (vl2_input_read (ref_path, VL2_SMALL_FILE_MAX_BYTES, &ref, NULL, NULL))
        {
          g_autofree char *snap = g_build_filename (snapshots, g_strstrip (ref), NULL);
          if (!strchr (ref, '/') && is_checkpoint (snap))
            best = g_steal_pointer (&snap);
        }
      if (!best)
        {
          g_autoptr(GPtrArray) commits = sorted_children (snapshots);
          for (guint j = 0; j < commits->len; j++)
            {
              g_autofree char *snap = g_build_filename (snapshots, commits->pdata[j], NULL);
              GStatBuf st;

              if (is_checkpoint (snap) && g_stat (snap, &st) == 0 && st.st_mtime > best_time)
                {
                  best_time = st.st_mtime;
                  g_free (best);
                  best = g_steal_pointer (&snap);
                }
            }
        }
      if (best)
        add_entry (entries, seen,
                   entry_new (best, APP_MODEL_SOURCE_HF_CACHE, repo, NULL, repo_dir));
    }
}

GPtrArray *
app_models_scan (const char         *models_folder,
                 const char * const *added,
                 const char         *hf_cache)
{
  GPtrArray *entries = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  if (models_folder && models_folder[0])
    scan_models_folder (models_folder, entries, seen);
  for (guint i = 0; added && added[i]; i++)
    if (added[i][0])
      {
        g_autofree char *repo = NULL;
        gboolean downloaded = app_hub_is_installed (added[i], &repo, NULL);

        add_entry (entries, seen,
                   entry_new (added[i], APP_MODEL_SOURCE_FOLDER, downloaded ? repo : NULL,
                              NULL, NULL));
      }
  if (hf_cache && hf_cache[0])
    scan_hf_cache (hf_cache, entries, seen);
  return entries;
}

gboolean
app_models_mark_copy (const char  *copy_dir,
                      const char  *name,
                      const char  *source_dir,
                      GError     **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *path = g_build_filename (copy_dir, APP_MODELS_COPY_MARKER, NULL);
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, name);
  json_builder_set_member_name (b, "source");
  json_builder_add_string_value (b, source_dir);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  text = json_generator_to_data (gen, NULL);
  return g_file_set_contents (path, text, -1, error);
}

char *
app_models_copy_path (const char      *models_folder,
                      const char      *source_dir,
                      AppModelWeights  weights)
{
  g_autofree char *base = g_path_get_basename (source_dir);
  const char *suffix = weights == APP_MODEL_WEIGHTS_Q4 ? "q4" : "q8";

  /* the source's own snapshot folder in the cache is a commit: name the copy by the repo */
  if (strlen (base) == 40 && strspn (base, "0123456789abcdef") == 40)
    {
      g_autofree char *snapshots = g_path_get_dirname (source_dir);
      g_autofree char *repo_dir = g_path_get_dirname (snapshots);
      g_autofree char *repo_name = g_path_get_basename (repo_dir);

      if (g_str_has_prefix (repo_name, "models--"))
        {
          g_free (base);
          base = g_strdup (repo_name + strlen ("models--"));
        }
    }
  for (guint n = 1; ; n++)
    {
      g_autofree char *name = n == 1 ? g_strdup_printf ("%s-%s", base, suffix)
                                     : g_strdup_printf ("%s-%s-%u", base, suffix, n);
      char *path = g_build_filename (models_folder, name, NULL);

      if (!g_file_test (path, G_FILE_TEST_EXISTS))
        return path;
      g_free (path);
    }
}

gboolean
app_models_delete_tree (const char    *path,
                        GCancellable  *cancellable,
                        GError       **error)
{
  GStatBuf st;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return FALSE;
  if (g_lstat (path, &st) != 0)
    {
      if (errno == ENOENT)
        return TRUE;
      goto fail;
    }
  if (S_ISDIR (st.st_mode))
    {
      g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
      const char *name;

      while (dir && (name = g_dir_read_name (dir)))
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          if (!app_models_delete_tree (child, cancellable, error))
            return FALSE;
        }
      if (g_rmdir (path) != 0)
        goto fail;
      return TRUE;
    }
  if (g_unlink (path) != 0)
    goto fail;
  return TRUE;

fail:
  {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                 _("Could not remove “%s”: %s"), path, g_strerror (saved));
    return FALSE;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Servers
 */

char *
app_models_server_ref (const char *base_url,
                       const char *model)
{
  g_return_val_if_fail (base_url != NULL && model != NULL, NULL);
  return g_strconcat (base_url, "#", model, NULL);
}

char *
app_models_engine_ref (AppEngine *engine)
{
  const char *dir;

  g_return_val_if_fail (APP_IS_ENGINE (engine), NULL);
  dir = app_engine_get_model_dir (engine);
  if (!dir)
    return NULL;
  if (app_engine_is_remote (engine))
    return app_models_server_ref (dir, app_engine_get_model_name (engine));
  return g_strdup (dir);
}

gboolean
app_models_parse_server_ref (const char  *ref,
                             char       **base_url,
                             char       **model)
{
  const char *hash;

  if (!ref || !(g_str_has_prefix (ref, "http://") || g_str_has_prefix (ref, "https://"))
      || !(hash = strchr (ref, '#')) || !hash[1])
    return FALSE;
  if (base_url)
    *base_url = g_strndup (ref, hash - ref);
  if (model)
    *model = g_strdup (hash + 1);
  return TRUE;
}

AppModelEntry *
app_models_server_entry (const char *ref)
{
  g_autofree char *base = NULL, *model = NULL;
  g_autoptr(GUri) uri = NULL;
  AppModelEntry *self;
  const AppPublishedModel *known;

  if (!app_models_parse_server_ref (ref, &base, &model)
      || !(uri = g_uri_parse (base, G_URI_FLAGS_NONE, NULL)))
    return NULL;
  self = g_object_new (APP_TYPE_MODEL_ENTRY, NULL);
  known = app_models_find_published (model);
  self->path = g_strdup (ref);
  self->source = APP_MODEL_SOURCE_SERVER;
  self->repo = known ? g_strdup (model) : NULL;
  self->weights = APP_MODEL_WEIGHTS_BF16;
  /* "DeepSeek-VL2 on gpu-box", or the server's own name for it */
  if (g_uri_get_port (uri) > 0)
    self->name = g_strdup_printf (_("%s on %s:%d"), known ? known->name : model,
                                  g_uri_get_host (uri), g_uri_get_port (uri));
  else
    self->name = g_strdup_printf (_("%s on %s"), known ? known->name : model,
                                  g_uri_get_host (uri));
  return self;
}
