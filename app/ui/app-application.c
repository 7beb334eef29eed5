/* app-application.c - the Sightline application.
 *
 * Owns what outlives a window: the settings, the chat store (read in a thread at startup, then
 * rid of the images nothing refers to; the app waits for its writes before it exits) and the
 * engine with its worker thread. The model folder in the settings is loaded at startup and
 * again whenever the setting changes, so choosing a folder in the welcome page or in the
 * preferences takes effect at once.
 *
 * Files on the command line (`sightline FILE…`, or Open With, which passes URIs) open a new
 * chat with them attached. A second `sightline FILE` while Sightline runs hands its files to
 * the running instance over D-Bus (GApplication does that), which opens another chat.
 */
#define G_LOG_DOMAIN "sightline-application"

#include "app-application.h"

#include <glib/gi18n.h>

#include "app-config.h"
#include "app-models-page.h"
#include "app-preferences.h"
#include "app-resources.h"
#include "app-window.h"

struct _AppApplication
{
  AdwApplication parent_instance;

  GSettings *settings;
  AppChatStore *store;
  AppEngine *engine;
  AppModelManager *models;
  GtkWindow *models_window;      /* the Models window while it is open (weak) */
  GCancellable *load;            /* the last load asked for, for Cancel */
  gboolean load_wanted;          /* asked while the engine was busy: load when it is free */
  gboolean load_forced;
};

G_DEFINE_FINAL_TYPE (AppApplication, app_application, ADW_TYPE_APPLICATION)

AppApplication *
app_application_new (void)
{
  static gsize registered;

  if (g_once_init_enter (&registered))
    g_once_init_leave (&registered, (app_register_resource (), 1));
  return g_object_new (APP_TYPE_APPLICATION,
                       "application-id", APP_ID,
                       "flags", G_APPLICATION_DEFAULT_FLAGS | G_APPLICATION_HANDLES_OPEN,
                       "resource-base-path", "/io/github/sightline/Sightline",
                       NULL);
}

AppChatStore *
app_application_get_store (AppApplication *self)
{
  g_return_val_if_fail (APP_IS_APPLICATION (self), NULL);
  return self->store;
}

AppEngine *
app_application_get_engine (AppApplication *self)
{
  g_return_val_if_fail (APP_IS_APPLICATION (self), NULL);
  return self->engine;
}

AppModelManager *
app_application_get_models (AppApplication *self)
{
  g_return_val_if_fail (APP_IS_APPLICATION (self), NULL);
  return self->models;
}

GSettings *
app_application_get_settings (AppApplication *self)
{
  g_return_val_if_fail (APP_IS_APPLICATION (self), NULL);
  return self->settings;
}

static void
load_model_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  /* The engine keeps the error for the window to show; nothing else to do here. */
  if (!app_engine_load_finish (APP_ENGINE (source), result, &error))
    g_debug ("model not loaded: %s", error->message);
}

static void
connect_model_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!app_engine_connect_finish (APP_ENGINE (source), result, &error))
    g_debug ("server not connected: %s", error->message);
}

static void
server_key_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  AppApplication *self = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *key = app_model_manager_lookup_key_finish (APP_MODEL_MANAGER (source),
                                                              result, &error);
  g_autofree char *ref = g_settings_get_string (self->settings, "model-folder");
  g_autofree char *base = NULL, *model = NULL;

  /* a lookup for a load that was replaced: the key may be another server's */
  if (error || !app_models_parse_server_ref (ref, &base, &model))
    return;
  app_engine_connect_async (self->engine, base, model, key, 0, self->load, connect_model_cb,
                            self);
}

static void
load_model (AppApplication *self,
            gboolean        force)
{
  g_autofree char *dir = g_settings_get_string (self->settings, "model-folder");
  g_autofree char *base = NULL;

  if (dir[0] == '\0')
    return;
  if (!force && app_engine_get_state (self->engine) == APP_ENGINE_READY)
    {
      g_autofree char *loaded = app_models_engine_ref (self->engine);

      if (g_strcmp0 (loaded, dir) == 0)
        return;
    }
  if (app_engine_get_state (self->engine) == APP_ENGINE_LOADING ||
      app_engine_get_state (self->engine) == APP_ENGINE_BUSY)
    {
      /* The engine takes one request at a time: this one waits until it is free
       * (engine_state_cb), and a load under way, of what is no longer wanted, stops. */
      self->load_wanted = TRUE;
      self->load_forced = self->load_forced || force;
      if (app_engine_get_state (self->engine) == APP_ENGINE_LOADING && self->load)
        g_cancellable_cancel (self->load);
      return;
    }
  /* a key lookup still under way is for what is no longer wanted */
  if (self->load)
    g_cancellable_cancel (self->load);
  g_clear_object (&self->load);
  self->load = g_cancellable_new ();
  if (app_models_parse_server_ref (dir, &base, NULL))
    {
      /* a model on a server: its key from the keyring first */
      app_model_manager_lookup_key_async (self->models, base, self->load, server_key_cb, self);
      return;
    }
  app_engine_load_async (self->engine, dir, g_settings_get_int (self->settings, "threads"),
                         self->load, load_model_cb, self);
}

static void
engine_state_cb (AppApplication *self)
{
  AppEngineState state = app_engine_get_state (self->engine);
  gboolean force = self->load_forced;

  if (!self->load_wanted || state == APP_ENGINE_LOADING || state == APP_ENGINE_BUSY)
    return;
  self->load_wanted = self->load_forced = FALSE;
  load_model (self, force);
}

void
app_application_load_model (AppApplication *self)
{
  g_return_if_fail (APP_IS_APPLICATION (self));
  load_model (self, FALSE);
}

void
app_application_cancel_load (AppApplication *self)
{
  g_return_if_fail (APP_IS_APPLICATION (self));
  self->load_wanted = self->load_forced = FALSE;
  if (self->load)
    g_cancellable_cancel (self->load);
}

static void
model_folder_changed_cb (AppApplication *self)
{
  load_model (self, FALSE);
}

static void
resident_changed_cb (AppApplication *self)
{
  app_engine_set_resident (self->engine, g_settings_get_boolean (self->settings, "resident"));
  load_model (self, TRUE);
}

static void
fast_arithmetic_changed_cb (AppApplication *self)
{
  app_engine_set_fast_arithmetic (self->engine,
                                  g_settings_get_boolean (self->settings, "fast-arithmetic"));
}

static void
threads_changed_cb (AppApplication *self)
{
  /* the worker pool is sized when the model loads */
  load_model (self, TRUE);
}

static void
swept_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  guint deleted = app_chat_store_sweep_images_finish (APP_CHAT_STORE (source), result, &error);

  if (error)
    g_debug ("images not swept: %s", error->message);
  else if (deleted > 0)
    g_debug ("%u images no chat refers to were deleted", deleted);
}

static void
chats_loaded_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  /* unreadable files are the store's load errors, which the window shows */
  if (!app_chat_store_load_finish (APP_CHAT_STORE (source), result, &error))
    g_warning ("the chats could not be read: %s", error->message);
  else
    app_chat_store_sweep_images_async (APP_CHAT_STORE (source), NULL, swept_cb, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Actions
 */

static void
quit_activated (GSimpleAction *action,
                GVariant      *parameter,
                gpointer       user_data)
{
  AppApplication *self = user_data;

  /* Closing each window lets it save its size and finish a pending delete. */
  for (GList *l = gtk_application_get_windows (GTK_APPLICATION (self)); l;)
    {
      GtkWindow *w = l->data;

      l = l->next;
      gtk_window_close (w);
    }
  g_application_quit (G_APPLICATION (self));
}

static void
preferences_activated (GSimpleAction *action,
                       GVariant      *parameter,
                       gpointer       user_data)
{
  AppApplication *self = user_data;
  GtkWindow *parent = gtk_application_get_active_window (GTK_APPLICATION (self));
  AppPreferences *prefs = app_preferences_new (self->settings);

  gtk_window_set_transient_for (GTK_WINDOW (prefs), parent);
  gtk_window_present (GTK_WINDOW (prefs));
}

static void
models_activated (GSimpleAction *action,
                  GVariant      *parameter,
                  gpointer       user_data)
{
  AppApplication *self = user_data;
  GtkWindow *parent = gtk_application_get_active_window (GTK_APPLICATION (self));

  if (!self->models_window)
    {
      self->models_window = app_models_window_new (parent == self->models_window ? NULL : parent,
                                                   self->models, self->engine, self->settings);
      g_object_add_weak_pointer (G_OBJECT (self->models_window),
                                 (gpointer *) &self->models_window);
    }
  gtk_window_present (self->models_window);
}

static void
about_activated (GSimpleAction *action,
                 GVariant      *parameter,
                 gpointer       user_data)
{
  AppApplication *self = user_data;
  GtkWindow *parent = gtk_application_get_active_window (GTK_APPLICATION (self));
  const char *developers[] = { "The Sightline developers", NULL };
  GtkWidget *about;

  about = g_object_new (ADW_TYPE_ABOUT_WINDOW,
                        "transient-for", parent,
                        "application-name", _("Sightline"),
                        "application-icon", APP_ID,
                        "version", APP_VERSION,
                        "developer-name", _("The Sightline developers"),
                        "developers", developers,
                        "comments", _("Ask questions about images with DeepSeek-VL2, running on "
                                      "this computer. Sightline reads text, tables and charts, "
                                      "and shows where things are."),
                        "website", "https://github.com/sightline/sightline",
                        "issue-url", "https://github.com/sightline/sightline/issues",
                        "license-type", GTK_LICENSE_GPL_3_0,
                        "copyright", "© 2026 The Sightline developers",
                        "translator-credits", _("translator-credits"),
                        NULL);
  adw_about_window_add_credit_section (ADW_ABOUT_WINDOW (about), _("Model"),
                                       (const char *[]) {
                                         "DeepSeek-VL2 by DeepSeek-AI "
                                         "https://github.com/deepseek-ai/DeepSeek-VL2",
                                         NULL });
  gtk_window_present (GTK_WINDOW (about));
}

static const GActionEntry app_actions[] = {
  { "quit", quit_activated },
  { "preferences", preferences_activated },
  { "models", models_activated },
  { "about", about_activated },
};

/* ------------------------------------------------------------------------------------------
 * GApplication
 */

static void
app_application_startup (GApplication *app)
{
  AppApplication *self = APP_APPLICATION (app);
  g_autofree char *data_dir = NULL;
  static const struct {
    const char *action;
    const char *accels[3];
  } accels[] = {
    { "app.quit", { "<Control>q", NULL } },
    { "app.preferences", { "<Control>comma", NULL } },
    { "win.new-chat", { "<Control>n", NULL } },
    { "win.search", { "<Control>f", NULL } },
    { "win.attach", { "<Control>o", NULL } },
    { "win.grounded-caption", { "<Control><Shift>g", NULL } },
    { "win.find-in-image", { "<Control><Shift>f", NULL } },
    { "win.show-help-overlay", { "<Control>question", NULL } },
  };

  G_APPLICATION_CLASS (app_application_parent_class)->startup (app);

  g_action_map_add_action_entries (G_ACTION_MAP (self), app_actions,
                                   G_N_ELEMENTS (app_actions), self);
  for (gsize i = 0; i < G_N_ELEMENTS (accels); i++)
    gtk_application_set_accels_for_action (GTK_APPLICATION (self), accels[i].action,
                                           accels[i].accels);

  self->settings = g_settings_new (APP_ID);
  data_dir = g_build_filename (g_get_user_data_dir (), "sightline", NULL);
  self->store = app_chat_store_new (data_dir);
  app_chat_store_load_async (self->store, NULL, chats_loaded_cb, NULL);
  self->engine = app_engine_new ();
  app_engine_set_resident (self->engine, g_settings_get_boolean (self->settings, "resident"));
  fast_arithmetic_changed_cb (self);
  self->models = app_model_manager_new (self->settings, self->engine);
  {
    /* the header bar's model switcher: a radio item per installed model */
    g_autoptr(GAction) model_action = g_settings_create_action (self->settings, "model-folder");
    g_action_map_add_action (G_ACTION_MAP (self), model_action);
  }
  g_signal_connect_object (self->settings, "changed::fast-arithmetic",
                           G_CALLBACK (fast_arithmetic_changed_cb), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (self->settings, "changed::resident",
                           G_CALLBACK (resident_changed_cb), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (self->settings, "changed::model-folder",
                           G_CALLBACK (model_folder_changed_cb), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (self->settings, "changed::threads",
                           G_CALLBACK (threads_changed_cb), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (self->engine, "notify::state", G_CALLBACK (engine_state_cb), self,
                           G_CONNECT_SWAPPED);
  app_application_load_model (self);
}

static void
app_application_activate (GApplication *app)
{
  AppApplication *self = APP_APPLICATION (app);
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (app));

  if (!window)
    window = GTK_WINDOW (app_window_new (self));
  gtk_window_present (window);
}

static void
app_application_open (GApplication  *app,
                      GFile        **files,
                      int            n_files,
                      const char    *hint)
{
  AppApplication *self = APP_APPLICATION (app);
  AppWindow *window = NULL;

  /* the main window, not a preferences or about window that may be in front of it */
  for (GList *l = gtk_application_get_windows (GTK_APPLICATION (app)); l && !window; l = l->next)
    if (APP_IS_WINDOW (l->data))
      window = l->data;
  if (!window)
    window = app_window_new (self);
  app_window_open_files (window, files, n_files);
  gtk_window_present (GTK_WINDOW (window));
}

/* Nothing a person made is lost on quit: every save asked for is written before the end. */
static void
app_application_shutdown (GApplication *app)
{
  AppApplication *self = APP_APPLICATION (app);

  G_APPLICATION_CLASS (app_application_parent_class)->shutdown (app);
  if (self->store)
    app_chat_store_flush (self->store);
}

static void
app_application_dispose (GObject *object)
{
  AppApplication *self = APP_APPLICATION (object);

  if (self->load)
    g_cancellable_cancel (self->load);
  g_clear_object (&self->load);
  if (self->store)
    app_chat_store_flush (self->store);
  g_clear_object (&self->models);
  g_clear_object (&self->engine);
  g_clear_object (&self->store);
  g_clear_object (&self->settings);
  G_OBJECT_CLASS (app_application_parent_class)->dispose (object);
}

static void
app_application_class_init (AppApplicationClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);

  object_class->dispose = app_application_dispose;
  app_class->startup = app_application_startup;
  app_class->shutdown = app_application_shutdown;
  app_class->activate = app_application_activate;
  app_class->open = app_application_open;
}

static void
app_application_init (AppApplication *self)
{
  /* `sightline --help`: image files may follow the options */
  g_application_set_option_context_parameter_string (G_APPLICATION (self), _("[FILE…]"));
}
