/* app-model-manager.c - the app's models: installed, downloading, being copied, in use. */
#define G_LOG_DOMAIN "sightline-models"

#include "app-model-manager.h"

#include <errno.h>
#include <glib/gi18n.h>
#include <libsecret/secret.h>

#include "app-hub.h"
#include "app-remote.h"

struct _AppModelManager
{
  GObject parent_instance;

  GSettings *settings;
  AppEngine *engine;
  GListStore *installed;
  GHashTable *downloads;        /* repo -> AppDownload */
  GHashTable *looking_up;       /* repos whose token is being looked up */
  GHashTable *session_keys;     /* base URL -> API key, where no keyring could keep it */

  GCancellable *copy;           /* the copy under way, or NULL */
  char *copy_source;
  char *copy_dest;
  char *copy_name;
  gboolean copy_q4;
  double copy_progress;
};

enum {
  PROP_0,
  PROP_COPYING,
  PROP_COPY_SOURCE,
  PROP_COPY_Q4,
  PROP_COPY_PROGRESS,
  N_PROPS
};

enum {
  DOWNLOADS_CHANGED,
  COPY_FINISHED,
  N_SIGNALS
};

static GParamSpec *props[N_PROPS];
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (AppModelManager, app_model_manager, G_TYPE_OBJECT)

/* The token is kept per Hub (a mirror has tokens of its own). */
static const SecretSchema token_schema = {
  "io.github.sightline.Sightline.HubToken", SECRET_SCHEMA_NONE,
  { { "endpoint", SECRET_SCHEMA_ATTRIBUTE_STRING }, { NULL, 0 } },
};

/* A server's API key, kept per base URL (its models share it). */
static const SecretSchema server_key_schema = {
  "io.github.sightline.Sightline.ServerKey", SECRET_SCHEMA_NONE,
  { { "server", SECRET_SCHEMA_ATTRIBUTE_STRING }, { NULL, 0 } },
};

static const char *
endpoint (void)
{
  const char *env = g_getenv ("HF_ENDPOINT");

  return env && env[0] ? env : "https://huggingface.co";
}

char *
app_model_manager_get_folder (AppModelManager *self)
{
  g_autofree char *folder = NULL;

  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), NULL);
  folder = g_settings_get_string (self->settings, "models-folder");
  return folder[0] ? g_steal_pointer (&folder) : app_models_default_folder ();
}

GListModel *
app_model_manager_get_installed (AppModelManager *self)
{
  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), NULL);
  return G_LIST_MODEL (self->installed);
}

void
app_model_manager_rescan (AppModelManager *self)
{
  g_autofree char *folder = NULL;
  g_autofree char *cache = app_models_hf_cache_folder ();
  g_auto(GStrv) added = NULL;
  g_auto(GStrv) servers = NULL;
  g_autoptr(GPtrArray) found = NULL;
  guint n;

  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  folder = app_model_manager_get_folder (self);
  added = g_settings_get_strv (self->settings, "added-models");
  found = app_models_scan (folder, (const char * const *) added, cache);
  servers = g_settings_get_strv (self->settings, "servers");
  for (guint i = 0; servers[i]; i++)
    {
      AppModelEntry *entry = app_models_server_entry (servers[i]);

      if (entry)
        g_ptr_array_add (found, entry);
    }
  n = g_list_model_get_n_items (G_LIST_MODEL (self->installed));

  g_list_store_splice (self->installed, 0, n, found->pdata, found->len);
}

AppModelEntry *
app_model_manager_find (AppModelManager *self,
                        const char      *path)
{
  GListModel *list = G_LIST_MODEL (self->installed);

  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), NULL);
  for (guint i = 0; path && i < g_list_model_get_n_items (list); i++)
    {
      g_autoptr(AppModelEntry) entry = g_list_model_get_item (list, i);
      if (g_strcmp0 (app_model_entry_get_path (entry), path) == 0)
        return entry;   /* the store keeps it */
    }
  return NULL;
}

AppModelEntry *
app_model_manager_get_current (AppModelManager *self)
{
  g_autofree char *current = NULL;

  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), NULL);
  current = g_settings_get_string (self->settings, "model-folder");
  return app_model_manager_find (self, current);
}

void
app_model_manager_use (AppModelManager *self,
                       const char      *path)
{
  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  g_settings_set_string (self->settings, "model-folder", path ? path : "");
}

/* Adds `path` to the folders listed by hand, unless it is listed already (the models folder's
 * own checkpoints and the Hugging Face cache's are found anyway). */
static void
list_folder (AppModelManager *self,
             const char      *path)
{
  g_auto(GStrv) added = g_settings_get_strv (self->settings, "added-models");
  g_autoptr(GStrvBuilder) b = NULL;
  g_auto(GStrv) next = NULL;

  if (g_strv_contains ((const char * const *) added, path) || app_model_manager_find (self, path))
    return;
  b = g_strv_builder_new ();
  g_strv_builder_addv (b, (const char **) added);
  g_strv_builder_add (b, path);
  next = g_strv_builder_end (b);
  g_settings_set_strv (self->settings, "added-models", (const char * const *) next);
}

/* The folder in use is always among the listed models: one set by other means (the settings
 * of a version before the Models page, gsettings, a test) is listed as if it had been chosen
 * by hand, so that the header bar's switcher and the Models page name it. A server's model
 * and a folder that is gone are left alone. */
static void
list_current_folder (AppModelManager *self)
{
  g_autofree char *current = g_settings_get_string (self->settings, "model-folder");

  if (g_path_is_absolute (current) && g_file_test (current, G_FILE_TEST_IS_DIR))
    list_folder (self, current);
}

void
app_model_manager_add_folder (AppModelManager *self,
                              const char      *path)
{
  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  g_return_if_fail (path != NULL);

  list_folder (self, path);
  app_model_manager_rescan (self);
  app_model_manager_use (self, path);
}

/* `list` without `item`. */
static GStrv
strv_without (GStrv       list,
              const char *item)
{
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();

  for (guint i = 0; list[i]; i++)
    if (g_strcmp0 (list[i], item) != 0)
      g_strv_builder_add (b, list[i]);
  return g_strv_builder_end (b);
}

void
app_model_manager_forget (AppModelManager *self,
                          AppModelEntry   *entry)
{
  const char *path = app_model_entry_get_path (entry);
  gboolean server = app_model_entry_get_source (entry) == APP_MODEL_SOURCE_SERVER;
  const char *key = server ? "servers" : "added-models";
  g_auto(GStrv) list = NULL;
  g_auto(GStrv) next = NULL;

  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  list = g_settings_get_strv (self->settings, key);
  next = strv_without (list, path);
  g_settings_set_strv (self->settings, key, (const char * const *) next);
  if (server)
    {
      g_autofree char *base = NULL;
      gboolean shared = FALSE;

      app_models_parse_server_ref (path, &base, NULL);
      for (guint i = 0; next[i]; i++)
        {
          g_autofree char *other = NULL;

          shared |= app_models_parse_server_ref (next[i], &other, NULL)
                    && g_str_equal (other, base);
        }
      /* the key goes with the server's last model */
      if (!shared)
        {
          g_hash_table_remove (self->session_keys, base);
          secret_password_clear (&server_key_schema, NULL, NULL, NULL, "server", base, NULL);
        }
    }
  app_model_manager_rescan (self);
}

/* ---------------------------------------------------------------------------------------------
 * Deleting
 */

static void
delete_thread (GTask        *task,
               gpointer      source,
               gpointer      data,
               GCancellable *cancellable)
{
  GError *error = NULL;

  if (app_models_delete_tree (data, cancellable, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static void
delete_done (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  g_autoptr(GTask) outer = user_data;
  GError *error = NULL;

  app_model_manager_rescan (APP_MODEL_MANAGER (source));
  if (g_task_propagate_boolean (G_TASK (result), &error))
    g_task_return_boolean (outer, TRUE);
  else
    g_task_return_error (outer, error);
}

void
app_model_manager_delete_async (AppModelManager     *self,
                                AppModelEntry       *entry,
                                GCancellable        *cancellable,
                                GAsyncReadyCallback  callback,
                                gpointer             user_data)
{
  g_autoptr(GTask) outer = NULL;
  g_autoptr(GTask) task = NULL;
  g_autofree char *current = NULL;
  const char *path;

  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  g_return_if_fail (APP_IS_MODEL_ENTRY (entry));

  outer = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (outer, app_model_manager_delete_async);
  path = app_model_entry_get_delete_path (entry);
  current = g_settings_get_string (self->settings, "model-folder");
  if (!path)
    {
      g_task_return_new_error (outer, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                               _("An added folder is only taken off the list."));
      return;
    }
  if (g_strcmp0 (current, app_model_entry_get_path (entry)) == 0 ||
      (self->copy && g_strcmp0 (self->copy_source, app_model_entry_get_path (entry)) == 0))
    {
      g_task_return_new_error (outer, G_IO_ERROR, G_IO_ERROR_BUSY,
                               _("“%s” is in use. Choose another model first."),
                               app_model_entry_get_name (entry));
      return;
    }
  task = g_task_new (self, cancellable, delete_done, g_steal_pointer (&outer));
  g_task_set_task_data (task, g_strdup (path), g_free);
  g_task_run_in_thread (task, delete_thread);
}

gboolean
app_model_manager_delete_finish (AppModelManager  *self,
                                 GAsyncResult     *result,
                                 GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---------------------------------------------------------------------------------------------
 * Downloads
 */

AppDownload *
app_model_manager_get_download (AppModelManager *self,
                                const char      *repo)
{
  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), NULL);
  return repo ? g_hash_table_lookup (self->downloads, repo) : NULL;
}

static void
download_state_cb (AppDownload     *download,
                   GParamSpec      *pspec,
                   AppModelManager *self)
{
  g_autofree char *current = NULL;

  if (app_download_get_state (download) != APP_DOWNLOAD_INSTALLED)
    return;
  app_model_manager_rescan (self);
  /* the first model someone gets is the one they use */
  current = g_settings_get_string (self->settings, "model-folder");
  if (current[0] == '\0' || !app_model_manager_find (self, current))
    app_model_manager_use (self, app_download_get_dest (download));
}

static AppDownload *
add_download (AppModelManager *self,
              const char      *repo,
              const char      *dest)
{
  AppDownload *download = app_download_new (repo, NULL, dest, NULL, NULL);

  g_signal_connect_object (download, "notify::state", G_CALLBACK (download_state_cb), self, 0);
  g_hash_table_insert (self->downloads, g_strdup (repo), download);
  g_signal_emit (self, signals[DOWNLOADS_CHANGED], 0);
  return download;
}

typedef struct
{
  AppModelManager *self;
  char *repo;
} Lookup;

static void
token_found_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  Lookup *lookup = user_data;
  AppModelManager *self = lookup->self;
  g_autoptr(GError) error = NULL;
  g_autofree char *token = secret_password_lookup_finish (result, &error);
  AppDownload *download;

  /* no keyring: $HF_TOKEN or huggingface_hub's token file still apply */
  if (error)
    g_debug ("no token from the keyring: %s", error->message);
  g_hash_table_remove (self->looking_up, lookup->repo);
  download = g_hash_table_lookup (self->downloads, lookup->repo);
  if (!download)
    {
      g_autofree char *folder = app_model_manager_get_folder (self);
      g_autoptr(GError) dest_error = NULL;
      g_autofree char *dest = app_hub_default_dest (folder, lookup->repo, &dest_error);

      if (!dest)
        g_warning ("%s", dest_error->message);
      else
        download = add_download (self, lookup->repo, dest);
    }
  if (download)
    {
      app_download_set_token (download, token);
      app_download_start (download);
    }
  g_object_unref (self);
  g_free (lookup->repo);
  g_free (lookup);
}

void
app_model_manager_download (AppModelManager *self,
                            const char      *repo)
{
  Lookup *lookup;

  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  g_return_if_fail (repo != NULL);

  if (g_hash_table_contains (self->looking_up, repo))
    return;
  g_hash_table_add (self->looking_up, g_strdup (repo));
  lookup = g_new0 (Lookup, 1);
  lookup->self = g_object_ref (self);
  lookup->repo = g_strdup (repo);
  secret_password_lookup (&token_schema, NULL, token_found_cb, lookup,
                          "endpoint", endpoint (), NULL);
}

/* Downloads an earlier run left unfinished: models-folder/OWNER--NAME with partial files and
 * no marker. They are offered paused; Resume continues where they stopped. */
static void
find_unfinished (AppModelManager *self)
{
  g_autofree char *folder = app_model_manager_get_folder (self);
  g_autoptr(GDir) dir = g_dir_open (folder, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)))
    {
      g_autofree char *path = g_build_filename (folder, name, NULL);
      g_autofree char *partial = g_build_filename (path, ".partial", NULL);
      g_auto(GStrv) parts = g_strsplit (name, "--", 2);
      g_autofree char *repo = NULL;

      if (g_strv_length (parts) != 2 || !g_file_test (partial, G_FILE_TEST_IS_DIR) ||
          app_hub_is_installed (path, NULL, NULL))
        continue;
      repo = g_strconcat (parts[0], "/", parts[1], NULL);
      if (app_models_find_published (repo) && !g_hash_table_contains (self->downloads, repo))
        add_download (self, app_models_find_published (repo)->repo, path);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Copies
 */

static void
copy_progress_cb (double   fraction,
                  gpointer user_data)
{
  AppModelManager *self = user_data;

  if (!self->copy)
    return;
  self->copy_progress = fraction;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_COPY_PROGRESS]);
}

static void
copy_done_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(AppModelManager) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *message = NULL;

  if (app_engine_quantize_finish (APP_ENGINE (source), result, &error))
    {
      if (!app_models_mark_copy (self->copy_dest, self->copy_name, self->copy_source, &error))
        message = g_strdup (error->message);
    }
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    message = g_strdup (error->message);
  g_clear_object (&self->copy);
  g_clear_pointer (&self->copy_dest, g_free);
  g_clear_pointer (&self->copy_name, g_free);
  app_model_manager_rescan (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_COPYING]);
  g_signal_emit (self, signals[COPY_FINISHED], 0, message);
}

gboolean
app_model_manager_start_copy (AppModelManager *self,
                              AppModelEntry   *entry,
                              gboolean         q4)
{
  g_autofree char *folder = NULL;
  g_autoptr(GError) error = NULL;

  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), FALSE);
  g_return_val_if_fail (APP_IS_MODEL_ENTRY (entry), FALSE);

  if (self->copy)
    return FALSE;
  folder = app_model_manager_get_folder (self);
  if (g_mkdir_with_parents (folder, 0755) != 0)
    {
      int saved = errno;
      g_autofree char *message = g_strdup_printf (_("Could not create “%s”: %s"), folder,
                                                  g_strerror (saved));
      g_signal_emit (self, signals[COPY_FINISHED], 0, message);
      return FALSE;
    }
  self->copy = g_cancellable_new ();
  g_free (self->copy_source);
  self->copy_source = g_strdup (app_model_entry_get_path (entry));
  self->copy_dest = app_models_copy_path (folder, self->copy_source,
                                          q4 ? APP_MODEL_WEIGHTS_Q4 : APP_MODEL_WEIGHTS_Q8);
  /* TRANSLATORS: a model's name and how many bits its copy keeps of each weight */
  self->copy_name = g_strdup_printf (q4 ? _("%s, 4-bit") : _("%s, 8-bit"),
                                     app_model_entry_get_name (entry));
  self->copy_q4 = q4;
  self->copy_progress = 0;
  app_engine_quantize_async (self->engine, self->copy_source, self->copy_dest, q4,
                             copy_progress_cb, self, self->copy, copy_done_cb,
                             g_object_ref (self));
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_COPY_SOURCE]);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_COPY_Q4]);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_COPY_PROGRESS]);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_COPYING]);
  return TRUE;
}

void
app_model_manager_cancel_copy (AppModelManager *self)
{
  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  if (self->copy)
    g_cancellable_cancel (self->copy);
}

gboolean
app_model_manager_get_copying (AppModelManager *self)
{
  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), FALSE);
  return self->copy != NULL;
}

const char *
app_model_manager_get_copy_source (AppModelManager *self)
{
  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), NULL);
  return self->copy_source;
}

gboolean
app_model_manager_get_copy_q4 (AppModelManager *self)
{
  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), FALSE);
  return self->copy_q4;
}

double
app_model_manager_get_copy_progress (AppModelManager *self)
{
  g_return_val_if_fail (APP_IS_MODEL_MANAGER (self), 0);
  return self->copy_progress;
}

/* ---------------------------------------------------------------------------------------------
 * The token
 */

static void
token_stored_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GError *error = NULL;
  gboolean clearing = GPOINTER_TO_INT (g_task_get_task_data (task));

  if (clearing)
    {
      secret_password_clear_finish (result, &error);
    }
  else
    secret_password_store_finish (result, &error);
  if (error)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

void
app_model_manager_store_token_async (AppModelManager     *self,
                                     const char          *token,
                                     GCancellable        *cancellable,
                                     GAsyncReadyCallback  callback,
                                     gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (APP_IS_MODEL_MANAGER (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, app_model_manager_store_token_async);
  if (!token || !token[0])
    {
      g_task_set_task_data (task, GINT_TO_POINTER (TRUE), NULL);
      secret_password_clear (&token_schema, cancellable, token_stored_cb, task,
                             "endpoint", endpoint (), NULL);
      return;
    }
  secret_password_store (&token_schema, SECRET_COLLECTION_DEFAULT, _("Hugging Face access token"),
                         token, cancellable, token_stored_cb, task,
                         "endpoint", endpoint (), NULL);
}

gboolean
app_model_manager_store_token_finish (AppModelManager  *self,
                                      GAsyncResult     *result,
                                      GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---------------------------------------------------------------------------------------------
 * Servers
 */

static void
probe_thread (GTask        *task,
              gpointer      source,
              gpointer      data,
              GCancellable *cancellable)
{
  AppRemoteServer *server = data;
  GError *error = NULL;
  GStrv models = app_remote_list_models (server, cancellable, &error);

  if (models)
    g_task_return_pointer (task, models, (GDestroyNotify) g_strfreev);
  else
    g_task_return_error (task, error);
}

static void
server_free (gpointer p)
{
  app_remote_server_clear (p);
  g_free (p);
}

void
app_model_manager_probe_server_async (AppModelManager     *self,
                                      const char          *base_url,
                                      const char          *api_key,
                                      GCancellable        *cancellable,
                                      GAsyncReadyCallback  callback,
                                      gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  AppRemoteServer *server = g_new0 (AppRemoteServer, 1);

  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, app_model_manager_probe_server_async);
  server->base_url = g_strdup (base_url);
  server->api_key = g_strdup (api_key);
  server->timeout = APP_REMOTE_PROBE_TIMEOUT;
  g_task_set_task_data (task, server, server_free);
  g_task_run_in_thread (task, probe_thread);
}

GStrv
app_model_manager_probe_server_finish (AppModelManager  *self,
                                       GAsyncResult     *result,
                                       GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

typedef struct
{
  char *ref;
  char *base_url;
  char *api_key;
} AddServer;

static void
add_server_free (gpointer p)
{
  AddServer *a = p;

  g_free (a->ref);
  g_free (a->base_url);
  g_free (a->api_key);
  g_free (a);
}

static void
add_server_finish_in_list (AppModelManager *self,
                           const char      *ref)
{
  g_auto(GStrv) servers = g_settings_get_strv (self->settings, "servers");

  if (!g_strv_contains ((const char * const *) servers, ref))
    {
      g_autoptr(GStrvBuilder) b = g_strv_builder_new ();
      g_auto(GStrv) next = NULL;

      g_strv_builder_addv (b, (const char **) servers);
      g_strv_builder_add (b, ref);
      next = g_strv_builder_end (b);
      g_settings_set_strv (self->settings, "servers", (const char * const *) next);
    }
  app_model_manager_rescan (self);
  app_model_manager_use (self, ref);
}

static void
key_stored_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  AppModelManager *self = g_task_get_source_object (task);
  AddServer *a = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  char *warning = NULL;

  if (!secret_password_store_finish (result, &error))
    {
      g_debug ("no keyring for the server's key: %s", error->message);
      g_hash_table_replace (self->session_keys, g_strdup (a->base_url), g_strdup (a->api_key));
      /* a toast: one short line */
      warning = g_strdup (_("No keyring: the API key is forgotten when Sightline closes"));
    }
  add_server_finish_in_list (self, a->ref);
  g_task_return_pointer (task, warning ? warning : g_strdup (""), g_free);
}

void
app_model_manager_add_server_async (AppModelManager     *self,
                                    const char          *base_url,
                                    const char          *model,
                                    const char          *api_key,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data)
{
  GTask *task;
  AddServer *a = g_new0 (AddServer, 1);
  g_autofree char *label = NULL;

  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  g_return_if_fail (base_url != NULL && model != NULL);
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, app_model_manager_add_server_async);
  a->ref = app_models_server_ref (base_url, model);
  a->base_url = g_strdup (base_url);
  a->api_key = g_strdup (api_key);
  g_task_set_task_data (task, a, add_server_free);
  if (!api_key || !api_key[0])
    {
      add_server_finish_in_list (self, a->ref);
      g_task_return_pointer (task, g_strdup (""), g_free);
      g_object_unref (task);
      return;
    }
  /* TRANSLATORS: the name of an API key in the keyring; %s is the server's address */
  label = g_strdup_printf (_("Sightline: API key for %s"), base_url);
  secret_password_store (&server_key_schema, SECRET_COLLECTION_DEFAULT, label, api_key,
                         cancellable, key_stored_cb, task, "server", base_url, NULL);
}

gboolean
app_model_manager_add_server_finish (AppModelManager  *self,
                                     GAsyncResult     *result,
                                     char            **warning,
                                     GError          **error)
{
  g_autofree char *w = NULL;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  w = g_task_propagate_pointer (G_TASK (result), error);
  if (!w)
    return FALSE;
  if (warning)
    *warning = w[0] ? g_steal_pointer (&w) : NULL;
  return TRUE;
}

static void
key_found_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;
  char *key = secret_password_lookup_finish (result, &error);

  if (error)
    g_debug ("no server key from the keyring: %s", error->message);
  g_task_return_pointer (task, key, g_free);
}

void
app_model_manager_lookup_key_async (AppModelManager     *self,
                                    const char          *base_url,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data)
{
  GTask *task;
  const char *kept;

  g_return_if_fail (APP_IS_MODEL_MANAGER (self));
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, app_model_manager_lookup_key_async);
  if ((kept = g_hash_table_lookup (self->session_keys, base_url)))
    {
      g_task_return_pointer (task, g_strdup (kept), g_free);
      g_object_unref (task);
      return;
    }
  secret_password_lookup (&server_key_schema, cancellable, key_found_cb, task, "server",
                          base_url, NULL);
}

char *
app_model_manager_lookup_key_finish (AppModelManager  *self,
                                     GAsyncResult     *result,
                                     GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---------------------------------------------------------------------------------------------
 * GObject
 */

static void
folder_changed_cb (AppModelManager *self)
{
  app_model_manager_rescan (self);
  find_unfinished (self);
}

static void
app_model_manager_dispose (GObject *object)
{
  AppModelManager *self = APP_MODEL_MANAGER (object);
  GHashTableIter iter;
  gpointer download;

  if (self->copy)
    g_cancellable_cancel (self->copy);
  /* a download stopping keeps its partial files: the next run resumes them */
  if (self->downloads)
    {
      g_hash_table_iter_init (&iter, self->downloads);
      while (g_hash_table_iter_next (&iter, NULL, &download))
        app_download_pause (download);
    }
  g_clear_pointer (&self->downloads, g_hash_table_unref);
  g_clear_pointer (&self->looking_up, g_hash_table_unref);
  g_clear_pointer (&self->session_keys, g_hash_table_unref);
  g_clear_object (&self->installed);
  g_clear_object (&self->settings);
  g_clear_object (&self->engine);
  G_OBJECT_CLASS (app_model_manager_parent_class)->dispose (object);
}

static void
app_model_manager_finalize (GObject *object)
{
  AppModelManager *self = APP_MODEL_MANAGER (object);

  g_free (self->copy_source);
  g_free (self->copy_dest);
  g_free (self->copy_name);
  G_OBJECT_CLASS (app_model_manager_parent_class)->finalize (object);
}

static void
app_model_manager_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  AppModelManager *self = APP_MODEL_MANAGER (object);

  switch (prop_id)
    {
    case PROP_COPYING:
      g_value_set_boolean (value, self->copy != NULL);
      break;
    case PROP_COPY_SOURCE:
      g_value_set_string (value, self->copy_source);
      break;
    case PROP_COPY_Q4:
      g_value_set_boolean (value, self->copy_q4);
      break;
    case PROP_COPY_PROGRESS:
      g_value_set_double (value, self->copy_progress);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_model_manager_class_init (AppModelManagerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = app_model_manager_dispose;
  object_class->finalize = app_model_manager_finalize;
  object_class->get_property = app_model_manager_get_property;

  props[PROP_COPYING] =
    g_param_spec_boolean ("copying", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);
  props[PROP_COPY_SOURCE] =
    g_param_spec_string ("copy-source", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);
  props[PROP_COPY_Q4] =
    g_param_spec_boolean ("copy-q4", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);
  props[PROP_COPY_PROGRESS] =
    g_param_spec_double ("copy-progress", NULL, NULL, 0, 1, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);
  g_object_class_install_properties (object_class, N_PROPS, props);

  signals[DOWNLOADS_CHANGED] =
    g_signal_new ("downloads-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 0);
  signals[COPY_FINISHED] =
    g_signal_new ("copy-finished", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
}

static void
app_model_manager_init (AppModelManager *self)
{
  self->installed = g_list_store_new (APP_TYPE_MODEL_ENTRY);
  self->downloads = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->looking_up = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->session_keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

AppModelManager *
app_model_manager_new (GSettings *settings,
                       AppEngine *engine)
{
  AppModelManager *self;

  g_return_val_if_fail (G_IS_SETTINGS (settings), NULL);

  self = g_object_new (APP_TYPE_MODEL_MANAGER, NULL);
  self->settings = g_object_ref (settings);
  self->engine = g_object_ref (engine);
  g_signal_connect_object (settings, "changed::models-folder", G_CALLBACK (folder_changed_cb),
                           self, G_CONNECT_SWAPPED);
  g_signal_connect_object (settings, "changed::added-models",
                           G_CALLBACK (app_model_manager_rescan), self, G_CONNECT_SWAPPED);
  folder_changed_cb (self);
  g_signal_connect_object (settings, "changed::model-folder", G_CALLBACK (list_current_folder),
                           self, G_CONNECT_SWAPPED);
  list_current_folder (self);
  return self;
}
