/* app-models-page.c - the Models page.
 *
 * Everything it shows comes from AppModelManager (installed models, downloads, the copy under
 * way), AppEngine (the model loading) and the settings; its buttons are "models.*" actions on
 * the page, most of them with the model's folder as their target. The installed list is built
 * again when the manager's list changes; a published model's row is updated in place from its
 * AppDownload, so a progress bar does not flicker and a menu left open stays open.
 */
#define G_LOG_DOMAIN "sightline-models-page"

#include "app-models-page.h"
#include "app-server-dialog.h"

#include "app-config.h"

#include <glib/gi18n.h>

typedef struct
{
  const AppPublishedModel *model;
  AdwActionRow *row;
  GtkLabel *hint;
  GtkLabel *status;
  GtkProgressBar *bar;
  GtkButton *button;
  AppDownload *download;     /* watched, or NULL */
} PublishedRow;

struct _AppModelsPage
{
  GtkWidget parent_instance;

  AppModelManager *manager;
  AppEngine *engine;
  GSettings *settings;
  guint64 machine_ram;
  PublishedRow *published;
  guint n_published;
  GtkProgressBar *load_bar;   /* in the row of the model in use, while it loads */
  GtkWidget *copy_row;
  GtkProgressBar *copy_bar;

  /* template */
  AdwToastOverlay *toast_overlay;
  GtkImage *app_icon;
  AdwPreferencesGroup *welcome_group;
  GtkListBox *installed_list;
  GtkListBox *published_list;
  AdwActionRow *folder_row;
  GtkSwitch *resident_switch;
  AdwActionRow *fast_row;
  GtkSwitch *fast_switch;
  AdwPasswordEntryRow *token_row;
};

G_DEFINE_FINAL_TYPE (AppModelsPage, app_models_page, GTK_TYPE_WIDGET)

static void
toast (AppModelsPage *self,
       const char    *text)
{
  AdwToast *t = adw_toast_new (text);

  adw_toast_set_timeout (t, 6);
  adw_toast_overlay_add_toast (self->toast_overlay, t);
}

static char *
format_bytes (guint64 bytes)
{
  return g_format_size (bytes);
}

/* ---------------------------------------------------------------------------------------------
 * Installed models
 */

static const char *
source_text (AppModelEntry *entry)
{
  switch (app_model_entry_get_source (entry))
    {
    case APP_MODEL_SOURCE_DOWNLOAD:
      return _("Downloaded");
    case APP_MODEL_SOURCE_COPY:
      /* TRANSLATORS: where a model came from: an 8- or 4-bit copy made by the app */
      return C_("model source", "Copy");
    case APP_MODEL_SOURCE_HF_CACHE:
      return _("Hugging Face cache");
    case APP_MODEL_SOURCE_SERVER:
      /* TRANSLATORS: where a model came from: an OpenAI-compatible server */
      return C_("model source", "Server");
    case APP_MODEL_SOURCE_FOLDER:
    default:
      return _("Folder");
    }
}

static const char *
weights_text (AppModelWeights weights)
{
  switch (weights)
    {
    case APP_MODEL_WEIGHTS_Q8:
      return _("8-bit");
    case APP_MODEL_WEIGHTS_Q4:
      return _("4-bit");
    case APP_MODEL_WEIGHTS_BF16:
    default:
      return _("full precision");
    }
}

static GMenuModel *
entry_menu (AppModelEntry *entry)
{
  GMenu *menu = g_menu_new ();
  GMenu *copies = g_menu_new ();
  GMenu *end = g_menu_new ();
  const char *path = app_model_entry_get_path (entry);
  GMenuItem *item;

  gboolean server = app_model_entry_get_source (entry) == APP_MODEL_SOURCE_SERVER;

  if (!server)
    {
      item = g_menu_item_new (_("_Open Folder"), NULL);
      g_menu_item_set_action_and_target (item, "models.open-folder", "s", path);
      g_menu_append_item (menu, item);
      g_object_unref (item);
    }
  if (!server && app_model_entry_get_weights (entry) == APP_MODEL_WEIGHTS_BF16)
    {
      item = g_menu_item_new (_("Make an _8-bit Copy"), NULL);
      g_menu_item_set_action_and_target (item, "models.copy", "(sb)", path, FALSE);
      g_menu_append_item (copies, item);
      g_object_unref (item);
      item = g_menu_item_new (_("Make a _4-bit Copy"), NULL);
      g_menu_item_set_action_and_target (item, "models.copy", "(sb)", path, TRUE);
      g_menu_append_item (copies, item);
      g_object_unref (item);
      g_menu_append_section (menu, NULL, G_MENU_MODEL (copies));
    }
  if (app_model_entry_get_delete_path (entry))
    item = g_menu_item_new (_("_Delete…"), NULL);
  else
    item = g_menu_item_new (_("_Remove from List"), NULL);
  g_menu_item_set_action_and_target (item, "models.delete", "s", path);
  g_menu_append_item (end, item);
  g_object_unref (item);
  g_menu_append_section (menu, NULL, G_MENU_MODEL (end));
  g_object_unref (copies);
  g_object_unref (end);
  return G_MENU_MODEL (menu);
}

static GtkWidget *
installed_row (AppModelsPage *self,
               AppModelEntry *entry,
               gboolean       current)
{
  GtkWidget *row = adw_action_row_new ();
  GtkWidget *menu_button = gtk_menu_button_new ();
  g_autoptr(GMenuModel) menu = entry_menu (entry);
  g_autofree char *size = format_bytes (app_model_entry_get_disk_bytes (entry));
  g_autofree char *base = NULL;
  g_autofree char *subtitle = NULL;

  if (app_models_parse_server_ref (app_model_entry_get_path (entry), &base, NULL))
    /* TRANSLATORS: "Server", then its address */
    subtitle = g_strdup_printf (_("%s · %s"), source_text (entry), base);
  else
    /* TRANSLATORS: where a model came from, how its weights are held, its size on disk */
    subtitle = g_strdup_printf (_("%s · %s · %s"), source_text (entry),
                                weights_text (app_model_entry_get_weights (entry)), size);
  AppEngineState state = app_engine_get_state (self->engine);

  adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), app_model_entry_get_name (entry));
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
  gtk_widget_set_tooltip_text (row, app_model_entry_get_path (entry));
  if (current)
    {
      GtkWidget *icon = gtk_image_new_from_icon_name ("object-select-symbolic");
      GtkWidget *label = gtk_label_new (state == APP_ENGINE_LOADING ? _("Loading…")
                                        : state == APP_ENGINE_FAILED ? _("Failed to load")
                                        : _("In use"));

      gtk_widget_add_css_class (label, "dim-label");
      adw_action_row_add_prefix (ADW_ACTION_ROW (row), icon);
      if (state == APP_ENGINE_LOADING)
        {
          GtkWidget *bar = gtk_progress_bar_new ();

          gtk_widget_set_valign (bar, GTK_ALIGN_CENTER);
          gtk_widget_set_size_request (bar, 100, -1);
          gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (bar),
                                         app_engine_get_load_progress (self->engine));
          adw_action_row_add_suffix (ADW_ACTION_ROW (row), bar);
          self->load_bar = GTK_PROGRESS_BAR (bar);
        }
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), label);
    }
  else
    {
      GtkWidget *use = gtk_button_new_with_mnemonic (_("_Use"));

      gtk_widget_set_valign (use, GTK_ALIGN_CENTER);
      gtk_actionable_set_action_name (GTK_ACTIONABLE (use), "models.use");
      gtk_actionable_set_action_target (GTK_ACTIONABLE (use), "s",
                                        app_model_entry_get_path (entry));
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), use);
    }
  gtk_menu_button_set_icon_name (GTK_MENU_BUTTON (menu_button), "view-more-symbolic");
  gtk_menu_button_set_menu_model (GTK_MENU_BUTTON (menu_button), menu);
  gtk_widget_set_valign (menu_button, GTK_ALIGN_CENTER);
  gtk_widget_add_css_class (menu_button, "flat");
  gtk_widget_set_tooltip_text (menu_button, _("More"));
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), menu_button);
  return row;
}

static void
update_copy_row (AppModelsPage *self)
{
  gboolean copying = app_model_manager_get_copying (self->manager);

  gtk_widget_set_visible (self->copy_row, copying);
  if (copying)
    {
      const char *path = app_model_manager_get_copy_source (self->manager);
      AppModelEntry *source = app_model_manager_find (self->manager, path);
      g_autofree char *title = g_strdup_printf (
        app_model_manager_get_copy_q4 (self->manager) ? _("Making a 4-bit copy of “%s”")
                                                      : _("Making an 8-bit copy of “%s”"),
        source ? app_model_entry_get_name (source) : "");

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->copy_row), title);
      gtk_progress_bar_set_fraction (self->copy_bar,
                                     app_model_manager_get_copy_progress (self->manager));
    }
}

static void
rebuild_installed (AppModelsPage *self)
{
  GListModel *list = app_model_manager_get_installed (self->manager);
  AppModelEntry *current = app_model_manager_get_current (self->manager);
  GtkWidget *child;
  guint n = g_list_model_get_n_items (list);

  self->load_bar = NULL;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->installed_list))))
    if (child == self->copy_row)
      {
        g_object_ref (child);
        gtk_list_box_remove (self->installed_list, child);
      }
    else
      gtk_list_box_remove (self->installed_list, child);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(AppModelEntry) entry = g_list_model_get_item (list, i);
      gtk_list_box_append (self->installed_list, installed_row (self, entry, entry == current));
    }
  if (n == 0)
    {
      GtkWidget *row = adw_action_row_new ();

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), _("No models yet"));
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row),
                                   _("Download one below, add a folder that holds one, or add a server."));
      gtk_widget_add_css_class (row, "dim-label");
      gtk_list_box_append (self->installed_list, row);
    }
  gtk_list_box_append (self->installed_list, self->copy_row);
  g_object_unref (self->copy_row);
  update_copy_row (self);
}

static void
engine_progress_cb (AppModelsPage *self)
{
  if (self->load_bar)
    gtk_progress_bar_set_fraction (self->load_bar, app_engine_get_load_progress (self->engine));
}

/* ---------------------------------------------------------------------------------------------
 * Published models
 */

static char *
time_left_text (gint64 seconds)
{
  if (seconds < 0)
    return g_strdup ("");
  if (seconds < 60)
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d second left", "%d seconds left", seconds),
                            (int) seconds);
  if (seconds < 3600)
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d minute left", "%d minutes left",
                                         (seconds + 30) / 60), (int) ((seconds + 30) / 60));
  return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d hour left", "%d hours left",
                                       (seconds + 1800) / 3600), (int) ((seconds + 1800) / 3600));
}

/* Whether a download of `repo` is among the installed models. */
static gboolean
repo_installed (AppModelsPage *self,
                const char    *repo)
{
  GListModel *list = app_model_manager_get_installed (self->manager);

  for (guint i = 0; i < g_list_model_get_n_items (list); i++)
    {
      g_autoptr(AppModelEntry) entry = g_list_model_get_item (list, i);
      if (app_model_entry_get_source (entry) != APP_MODEL_SOURCE_COPY &&
          g_strcmp0 (app_model_entry_get_repo (entry), repo) == 0)
        return TRUE;
    }
  return FALSE;
}

static void
set_button (PublishedRow *r,
            const char   *label,
            const char   *action,
            gboolean      suggested)
{
  gtk_widget_set_visible (GTK_WIDGET (r->button), label != NULL);
  if (!label)
    return;
  gtk_button_set_label (r->button, label);
  gtk_actionable_set_action_name (GTK_ACTIONABLE (r->button), action);
  gtk_actionable_set_action_target (GTK_ACTIONABLE (r->button), "s", r->model->repo);
  if (suggested)
    gtk_widget_add_css_class (GTK_WIDGET (r->button), "suggested-action");
  else
    gtk_widget_remove_css_class (GTK_WIDGET (r->button), "suggested-action");
}

static void
update_published_row (AppModelsPage *self,
                      PublishedRow  *r)
{
  AppDownload *d = r->download;
  AppDownloadState state = d ? app_download_get_state (d) : APP_DOWNLOAD_PAUSED;
  guint64 done = d ? app_download_get_done_bytes (d) : 0;
  guint64 total = d ? app_download_get_total_bytes (d) : 0;
  g_autofree char *done_text = format_bytes (done);
  g_autofree char *total_text = format_bytes (total ? total : r->model->download_bytes);
  g_autofree char *status = NULL;
  gboolean bar = FALSE;

  if (!d || (state == APP_DOWNLOAD_INSTALLED && !repo_installed (self, r->model->repo)))
    {
      gboolean installed = repo_installed (self, r->model->repo);

      status = g_strdup (installed ? _("Installed") : "");
      set_button (r, installed ? NULL : _("_Download…"), "models.download", TRUE);
    }
  else
    switch (state)
      {
      case APP_DOWNLOAD_QUEUED:
        status = g_strdup (_("Waiting for the other download"));
        set_button (r, _("_Pause"), "models.pause", FALSE);
        break;
      case APP_DOWNLOAD_DOWNLOADING:
        {
          g_autofree char *speed = format_bytes ((guint64) app_download_get_speed (d));
          g_autofree char *left = time_left_text (app_download_get_seconds_left (d));

          /* TRANSLATORS: bytes done, of the whole, speed, time left ("5 minutes left") */
          status = total ? g_strdup_printf (_("%s of %s · %s/s · %s"), done_text, total_text,
                                            speed, left)
                         : g_strdup (_("Starting…"));
          set_button (r, _("_Pause"), "models.pause", FALSE);
          bar = TRUE;
          break;
        }
      case APP_DOWNLOAD_VERIFYING:
        status = g_strdup (_("Checking the files…"));
        set_button (r, NULL, NULL, FALSE);
        bar = TRUE;
        break;
      case APP_DOWNLOAD_PAUSED:
        status = total ? g_strdup_printf (_("Paused at %s of %s"), done_text, total_text)
                       : g_strdup (_("Paused"));
        set_button (r, _("_Resume"), "models.download", FALSE);
        bar = total > 0;
        break;
      case APP_DOWNLOAD_FAILED:
        status = g_strdup (app_download_get_error (d));
        set_button (r, _("_Retry"), "models.download", FALSE);
        break;
      case APP_DOWNLOAD_INSTALLED:
      default:
        status = g_strdup (_("Installed"));
        set_button (r, NULL, NULL, FALSE);
        break;
      }
  gtk_label_set_text (r->status, status);
  gtk_widget_set_visible (GTK_WIDGET (r->status), status[0] != '\0');
  if (state == APP_DOWNLOAD_FAILED && d)
    gtk_widget_add_css_class (GTK_WIDGET (r->status), "error");
  else
    gtk_widget_remove_css_class (GTK_WIDGET (r->status), "error");
  gtk_widget_set_visible (GTK_WIDGET (r->bar), bar);
  gtk_progress_bar_set_fraction (r->bar, total ? (double) done / (double) total : 0);
}

static void
download_notify_cb (AppDownload   *download,
                    GParamSpec    *pspec,
                    AppModelsPage *self)
{
  for (guint i = 0; i < self->n_published; i++)
    if (self->published[i].download == download)
      update_published_row (self, &self->published[i]);
}

static void
watch_downloads (AppModelsPage *self)
{
  for (guint i = 0; i < self->n_published; i++)
    {
      PublishedRow *r = &self->published[i];
      AppDownload *d = app_model_manager_get_download (self->manager, r->model->repo);

      if (d != r->download)
        {
          if (r->download)
            g_signal_handlers_disconnect_by_data (r->download, self);
          g_set_object (&r->download, d);
          if (d)
            g_signal_connect_object (d, "notify", G_CALLBACK (download_notify_cb), self, 0);
        }
      update_published_row (self, r);
    }
}

/* The hint: does it fit this computer, at full precision or as a copy? */
static void
update_hint (AppModelsPage *self,
             PublishedRow  *r)
{
  const guint64 *ram = r->model->ram_bytes;
  g_autofree char *has = format_bytes (self->machine_ram);
  g_autofree char *needs = format_bytes (ram[APP_MODEL_WEIGHTS_BF16]);
  g_autofree char *tooltip = NULL;
  const char *text;
  const char *css;

  if (app_models_fit (ram[APP_MODEL_WEIGHTS_BF16], self->machine_ram) == APP_MODEL_FITS)
    text = _("Fits this computer"), css = "success";
  else if (app_models_fit (ram[APP_MODEL_WEIGHTS_Q8], self->machine_ram) == APP_MODEL_FITS)
    text = _("Fits this computer as an 8-bit copy"), css = "warning";
  else if (app_models_fit (ram[APP_MODEL_WEIGHTS_Q4], self->machine_ram) == APP_MODEL_FITS)
    text = _("Fits this computer as a 4-bit copy"), css = "warning";
  else if (app_models_fit (ram[APP_MODEL_WEIGHTS_Q4], self->machine_ram) == APP_MODEL_SLOW)
    text = _("Will be slow on this computer"), css = "warning";
  else
    text = _("Will not fit this computer"), css = "error";
  gtk_label_set_text (r->hint, text);
  gtk_widget_remove_css_class (GTK_WIDGET (r->hint), "success");
  gtk_widget_remove_css_class (GTK_WIDGET (r->hint), "warning");
  gtk_widget_remove_css_class (GTK_WIDGET (r->hint), "error");
  gtk_widget_add_css_class (GTK_WIDGET (r->hint), css);
  if (self->machine_ram)
    /* TRANSLATORS: memory the model needs at full precision; memory this computer has */
    tooltip = g_strdup_printf (_("Needs %s of memory at full precision; this computer has %s."),
                               needs, has);
  gtk_widget_set_tooltip_text (GTK_WIDGET (r->hint), tooltip);
}

static void
build_published (AppModelsPage *self)
{
  const AppPublishedModel *models = app_models_published (&self->n_published);

  self->published = g_new0 (PublishedRow, self->n_published);
  for (guint i = 0; i < self->n_published; i++)
    {
      PublishedRow *r = &self->published[i];
      const AppPublishedModel *m = &models[i];
      GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
      g_autofree char *download = format_bytes (m->download_bytes);
      g_autofree char *ram = format_bytes (m->ram_bytes[APP_MODEL_WEIGHTS_BF16]);
      g_autofree char *ram8 = format_bytes (m->ram_bytes[APP_MODEL_WEIGHTS_Q8]);
      g_autofree char *ram4 = format_bytes (m->ram_bytes[APP_MODEL_WEIGHTS_Q4]);
      g_autofree char *subtitle = NULL;

      r->model = m;
      r->row = ADW_ACTION_ROW (adw_action_row_new ());
      adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (r->row), FALSE);
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (r->row), m->name);
      /* TRANSLATORS: a model's description, then its download size and the memory it needs
       * to run at full precision, as an 8-bit and as a 4-bit copy */
      subtitle = g_strdup_printf (_("%s\n%s to download · memory to run: %s, or %s as an 8-bit "
                                    "copy, %s as 4-bit"),
                                  _(m->summary), download, ram, ram8, ram4);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (r->row), subtitle);
      adw_action_row_set_subtitle_lines (ADW_ACTION_ROW (r->row), 0);

      r->hint = GTK_LABEL (gtk_label_new (NULL));
      gtk_label_set_xalign (r->hint, 1);
      gtk_label_set_justify (r->hint, GTK_JUSTIFY_RIGHT);
      gtk_label_set_wrap (r->hint, TRUE);
      gtk_label_set_width_chars (r->hint, 20);
      gtk_label_set_max_width_chars (r->hint, 24);
      gtk_widget_add_css_class (GTK_WIDGET (r->hint), "caption-heading");
      r->status = GTK_LABEL (gtk_label_new (NULL));
      gtk_label_set_xalign (r->status, 1);
      gtk_label_set_wrap (r->status, TRUE);
      gtk_label_set_max_width_chars (r->status, 28);
      gtk_label_set_selectable (r->status, TRUE);
      gtk_widget_add_css_class (GTK_WIDGET (r->status), "caption");
      r->bar = GTK_PROGRESS_BAR (gtk_progress_bar_new ());
      gtk_widget_set_size_request (GTK_WIDGET (r->bar), 120, -1);
      gtk_widget_set_valign (box, GTK_ALIGN_CENTER);
      gtk_box_append (GTK_BOX (box), GTK_WIDGET (r->hint));
      gtk_box_append (GTK_BOX (box), GTK_WIDGET (r->bar));
      gtk_box_append (GTK_BOX (box), GTK_WIDGET (r->status));
      adw_action_row_add_suffix (r->row, box);

      r->button = GTK_BUTTON (gtk_button_new ());
      gtk_button_set_use_underline (r->button, TRUE);
      gtk_widget_set_valign (GTK_WIDGET (r->button), GTK_ALIGN_CENTER);
      adw_action_row_add_suffix (r->row, GTK_WIDGET (r->button));
      gtk_list_box_append (self->published_list, GTK_WIDGET (r->row));
      update_hint (self, r);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Actions
 */

static AppModelEntry *
entry_for (AppModelsPage *self,
           GVariant      *param)
{
  return app_model_manager_find (self->manager, g_variant_get_string (param, NULL));
}

static void
use_action (GtkWidget  *widget,
            const char *name,
            GVariant   *param)
{
  AppModelsPage *self = APP_MODELS_PAGE (widget);

  app_model_manager_use (self->manager, g_variant_get_string (param, NULL));
}

static void
open_folder_action (GtkWidget  *widget,
                    const char *name,
                    GVariant   *param)
{
  g_autoptr(GFile) file = g_file_new_for_path (g_variant_get_string (param, NULL));
  g_autofree char *uri = g_file_get_uri (file);
  GtkRoot *root = gtk_widget_get_root (widget);

  gtk_show_uri (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL, uri, GDK_CURRENT_TIME);
}

static void
copy_action (GtkWidget  *widget,
             const char *name,
             GVariant   *param)
{
  AppModelsPage *self = APP_MODELS_PAGE (widget);
  const char *path;
  gboolean q4;
  AppModelEntry *entry;

  g_variant_get (param, "(&sb)", &path, &q4);
  entry = app_model_manager_find (self->manager, path);
  if (!entry)
    return;
  if (!app_model_manager_start_copy (self->manager, entry, q4) &&
      app_model_manager_get_copying (self->manager))
    toast (self, _("One copy at a time: wait for the one under way, or cancel it."));
}

static void
cancel_copy_action (GtkWidget  *widget,
                    const char *name,
                    GVariant   *param)
{
  app_model_manager_cancel_copy (APP_MODELS_PAGE (widget)->manager);
}

static void
copy_finished_cb (AppModelsPage *self,
                  const char    *error)
{
  if (error)
    toast (self, error);
  update_copy_row (self);
}

static void
deleted_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(AppModelsPage) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!app_model_manager_delete_finish (APP_MODEL_MANAGER (source), result, &error))
    toast (self, error->message);
}

static void
delete_response_cb (AdwMessageDialog *dialog,
                    const char       *response,
                    AppModelsPage    *self)
{
  AppModelEntry *entry = g_object_get_data (G_OBJECT (dialog), "entry");

  if (g_strcmp0 (response, "delete") == 0 && entry)
    app_model_manager_delete_async (self->manager, entry, NULL, deleted_cb, g_object_ref (self));
}

static void
delete_action (GtkWidget  *widget,
               const char *name,
               GVariant   *param)
{
  AppModelsPage *self = APP_MODELS_PAGE (widget);
  AppModelEntry *entry = entry_for (self, param);
  g_autofree char *size = NULL;
  g_autofree char *body = NULL;
  GtkRoot *root = gtk_widget_get_root (widget);
  GtkWidget *dialog;

  if (!entry)
    return;
  if (!app_model_entry_get_delete_path (entry))
    {
      app_model_manager_forget (self->manager, entry);
      return;
    }
  size = format_bytes (app_model_entry_get_disk_bytes (entry));
  if (app_model_entry_get_source (entry) == APP_MODEL_SOURCE_HF_CACHE)
    body = g_strdup_printf (_("Its %s of files are removed from the Hugging Face cache, which "
                              "other programs share: %s"),
                            size, app_model_entry_get_delete_path (entry));
  else
    body = g_strdup_printf (_("Its %s of files are removed from this computer: %s"),
                            size, app_model_entry_get_delete_path (entry));
  dialog = adw_message_dialog_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL, NULL, body);
  adw_message_dialog_format_heading (ADW_MESSAGE_DIALOG (dialog), _("Delete “%s”?"),
                                     app_model_entry_get_name (entry));
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog),
                                    "cancel", _("_Cancel"), "delete", _("_Delete"), NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "delete",
                                              ADW_RESPONSE_DESTRUCTIVE);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  g_object_set_data_full (G_OBJECT (dialog), "entry", g_object_ref (entry), g_object_unref);
  g_signal_connect_object (dialog, "response", G_CALLBACK (delete_response_cb), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
licence_response_cb (AdwMessageDialog *dialog,
                     const char       *response,
                     AppModelsPage    *self)
{
  if (g_strcmp0 (response, "download") == 0)
    app_model_manager_download (self->manager, g_object_get_data (G_OBJECT (dialog), "repo"));
}

/* Download: the licence first; Resume and Retry go straight on. */
static void
download_action (GtkWidget  *widget,
                 const char *name,
                 GVariant   *param)
{
  AppModelsPage *self = APP_MODELS_PAGE (widget);
  const char *repo = g_variant_get_string (param, NULL);
  const AppPublishedModel *model = app_models_find_published (repo);
  GtkRoot *root = gtk_widget_get_root (widget);
  g_autofree char *body = NULL;
  GtkWidget *dialog;

  if (!model)
    return;
  if (app_model_manager_get_download (self->manager, repo))
    {
      app_model_manager_download (self->manager, repo);
      return;
    }
  body = g_markup_printf_escaped (
    _("%s is published by DeepSeek under the %s. It may be used, also commercially, shared "
      "and changed, as long as it is not used for what the licence forbids, among them: "
      "military uses; breaking the law; exploiting or harming minors; creating or spreading "
      "false information to harm others; discriminating against people; fully automated "
      "decisions that harm people's legal rights. Downloading it means accepting the "
      "licence.\n\n<a href=\"%s\">Read the licence</a>"),
    model->name, APP_MODELS_LICENCE_NAME, APP_MODELS_LICENCE_URL);
  dialog = adw_message_dialog_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                   APP_MODELS_LICENCE_NAME, NULL);
  adw_message_dialog_set_body_use_markup (ADW_MESSAGE_DIALOG (dialog), TRUE);
  adw_message_dialog_set_body (ADW_MESSAGE_DIALOG (dialog), body);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", _("_Cancel"),
                                    "download", _("_Accept and Download"), NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "download",
                                              ADW_RESPONSE_SUGGESTED);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "download");
  adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  g_object_set_data_full (G_OBJECT (dialog), "repo", g_strdup (repo), g_free);
  g_signal_connect_object (dialog, "response", G_CALLBACK (licence_response_cb), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
pause_action (GtkWidget  *widget,
              const char *name,
              GVariant   *param)
{
  AppModelsPage *self = APP_MODELS_PAGE (widget);
  AppDownload *d = app_model_manager_get_download (self->manager,
                                                   g_variant_get_string (param, NULL));

  if (d)
    app_download_pause (d);
}

static void
add_folder_response_cb (GtkNativeDialog *dialog,
                        int              response,
                        AppModelsPage   *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) folder = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = g_file_get_path (folder);

      if (path && g_object_get_data (G_OBJECT (dialog), "models-folder"))
        g_settings_set_string (self->settings, "models-folder", path);
      else if (path)
        app_model_manager_add_folder (self->manager, path);
    }
  g_object_unref (dialog);
}

static void
choose_folder (AppModelsPage *self,
               gboolean       models_folder)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkFileChooserNative *chooser =
    gtk_file_chooser_native_new (models_folder ? _("Choose the Models Folder")
                                               : _("Add a Model Folder"),
                                 GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                 GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER,
                                 models_folder ? _("_Choose") : _("_Add"), _("_Cancel"));

  if (models_folder)
    g_object_set_data (G_OBJECT (chooser), "models-folder", GINT_TO_POINTER (TRUE));
  g_signal_connect_object (chooser, "response", G_CALLBACK (add_folder_response_cb), self, 0);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

static void
add_folder_action (GtkWidget  *widget,
                   const char *name,
                   GVariant   *param)
{
  choose_folder (APP_MODELS_PAGE (widget), FALSE);
}

static void
server_added (const char *name,
              const char *warning,
              gpointer    user_data)
{
  g_autoptr(AppModelsPage) self = g_weak_ref_get (user_data);
  g_autofree char *text = g_strdup_printf (_("“%s” added"), name);

  if (self)
    toast (self, warning ? warning : text);
}

static void
weak_ref_free (gpointer p)
{
  g_weak_ref_clear (p);
  g_free (p);
}

static void
add_server_action (GtkWidget  *widget,
                   const char *name,
                   GVariant   *param)
{
  AppModelsPage *self = APP_MODELS_PAGE (widget);
  GtkRoot *root = gtk_widget_get_root (widget);
  GWeakRef *page = g_new0 (GWeakRef, 1);

  g_weak_ref_init (page, self);
  gtk_window_present (app_server_dialog_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                             self->manager, server_added, page,
                                             weak_ref_free));
}

static void
change_folder_action (GtkWidget  *widget,
                      const char *name,
                      GVariant   *param)
{
  choose_folder (APP_MODELS_PAGE (widget), TRUE);
}

static void
token_stored_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(AppModelsPage) self = user_data;
  g_autoptr(GError) error = NULL;

  if (app_model_manager_store_token_finish (APP_MODEL_MANAGER (source), result, &error))
    toast (self, _("The token is kept in your keyring."));
  else
    {
      g_autofree char *text =
        g_strdup_printf (_("The token could not be kept in the keyring (%s). Set HF_TOKEN "
                           "instead."), error->message);
      toast (self, text);
    }
}

static void
token_apply_cb (AppModelsPage *self)
{
  const char *token = gtk_editable_get_text (GTK_EDITABLE (self->token_row));

  app_model_manager_store_token_async (self->manager, token, NULL, token_stored_cb,
                                       g_object_ref (self));
  gtk_editable_set_text (GTK_EDITABLE (self->token_row), "");
}

static void
folder_changed_cb (AppModelsPage *self)
{
  g_autofree char *folder = app_model_manager_get_folder (self->manager);

  adw_action_row_set_subtitle (self->folder_row, folder);
}

/* ---------------------------------------------------------------------------------------------
 * GObject
 */

void
app_models_page_set_welcome (AppModelsPage *self,
                             gboolean       welcome)
{
  g_return_if_fail (APP_IS_MODELS_PAGE (self));
  gtk_widget_set_visible (GTK_WIDGET (self->welcome_group), welcome);
}

void
app_models_page_set_machine_ram (AppModelsPage *self,
                                 guint64        bytes)
{
  g_return_if_fail (APP_IS_MODELS_PAGE (self));
  self->machine_ram = bytes;
  for (guint i = 0; i < self->n_published; i++)
    update_hint (self, &self->published[i]);
}

guint64
app_models_page_get_machine_ram (AppModelsPage *self)
{
  g_return_val_if_fail (APP_IS_MODELS_PAGE (self), 0);
  return self->machine_ram;
}

static void
installed_changed_cb (AppModelsPage *self)
{
  rebuild_installed (self);
  watch_downloads (self);
}

GtkWidget *
app_models_page_new (AppModelManager *manager,
                     AppEngine       *engine,
                     GSettings       *settings)
{
  AppModelsPage *self = g_object_new (APP_TYPE_MODELS_PAGE, NULL);

  self->manager = g_object_ref (manager);
  self->engine = g_object_ref (engine);
  self->settings = g_object_ref (settings);
  build_published (self);
  g_signal_connect_object (app_model_manager_get_installed (manager), "items-changed",
                           G_CALLBACK (installed_changed_cb), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (manager, "downloads-changed", G_CALLBACK (watch_downloads), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (manager, "notify::copying", G_CALLBACK (update_copy_row), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (manager, "notify::copy-progress", G_CALLBACK (update_copy_row), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (manager, "copy-finished", G_CALLBACK (copy_finished_cb), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (engine, "notify::state", G_CALLBACK (rebuild_installed), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (engine, "notify::load-progress", G_CALLBACK (engine_progress_cb),
                           self, G_CONNECT_SWAPPED);
  g_signal_connect_object (settings, "changed::model-folder", G_CALLBACK (rebuild_installed),
                           self, G_CONNECT_SWAPPED);
  g_signal_connect_object (settings, "changed::models-folder", G_CALLBACK (folder_changed_cb),
                           self, G_CONNECT_SWAPPED);
  g_settings_bind (settings, "resident", self->resident_switch, "active",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (settings, "fast-arithmetic", self->fast_switch, "active",
                   G_SETTINGS_BIND_DEFAULT);
  if (!app_engine_fast_arithmetic_available ())
    {
      gtk_widget_set_sensitive (GTK_WIDGET (self->fast_row), FALSE);
      adw_action_row_set_subtitle (self->fast_row,
                                   _("Needs a processor with bf16 dot products (AVX-512 BF16); "
                                     "this one reads images in float32."));
    }
  folder_changed_cb (self);
  rebuild_installed (self);
  watch_downloads (self);
  return GTK_WIDGET (self);
}

static void
app_models_page_dispose (GObject *object)
{
  AppModelsPage *self = APP_MODELS_PAGE (object);

  for (guint i = 0; i < self->n_published; i++)
    if (self->published[i].download)
      {
        g_signal_handlers_disconnect_by_data (self->published[i].download, self);
        g_clear_object (&self->published[i].download);
      }
  g_clear_pointer (&self->published, g_free);
  self->n_published = 0;
  gtk_widget_dispose_template (GTK_WIDGET (self), APP_TYPE_MODELS_PAGE);
  g_clear_object (&self->manager);
  g_clear_object (&self->engine);
  g_clear_object (&self->settings);
  G_OBJECT_CLASS (app_models_page_parent_class)->dispose (object);
}

static void
app_models_page_class_init (AppModelsPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = app_models_page_dispose;

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/sightline/Sightline/"
                                               "app-models-page.ui");
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, app_icon);
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, welcome_group);
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, installed_list);
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, published_list);
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, folder_row);
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, resident_switch);
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, fast_row);
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, fast_switch);
  gtk_widget_class_bind_template_child (widget_class, AppModelsPage, token_row);
  gtk_widget_class_bind_template_callback (widget_class, token_apply_cb);

  gtk_widget_class_install_action (widget_class, "models.use", "s", use_action);
  gtk_widget_class_install_action (widget_class, "models.open-folder", "s", open_folder_action);
  gtk_widget_class_install_action (widget_class, "models.copy", "(sb)", copy_action);
  gtk_widget_class_install_action (widget_class, "models.cancel-copy", NULL, cancel_copy_action);
  gtk_widget_class_install_action (widget_class, "models.delete", "s", delete_action);
  gtk_widget_class_install_action (widget_class, "models.download", "s", download_action);
  gtk_widget_class_install_action (widget_class, "models.pause", "s", pause_action);
  gtk_widget_class_install_action (widget_class, "models.add-folder", NULL, add_folder_action);
  gtk_widget_class_install_action (widget_class, "models.add-server", NULL, add_server_action);
  gtk_widget_class_install_action (widget_class, "models.change-folder", NULL,
                                   change_folder_action);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
}

static void
app_models_page_init (AppModelsPage *self)
{
  GtkWidget *cancel = gtk_button_new_with_mnemonic (_("_Cancel"));
  GtkWidget *bar = gtk_progress_bar_new ();

  gtk_widget_init_template (GTK_WIDGET (self));
  /* the release's icon, or the nightly build's */
  gtk_image_set_from_icon_name (self->app_icon, APP_ID);
  self->machine_ram = app_models_machine_ram ();

  /* the copy under way: a row of the installed list, kept while the list is rebuilt */
  self->copy_row = adw_action_row_new ();
  g_object_ref_sink (self->copy_row);
  adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (self->copy_row), FALSE);
  gtk_widget_set_valign (bar, GTK_ALIGN_CENTER);
  gtk_widget_set_size_request (bar, 140, -1);
  self->copy_bar = GTK_PROGRESS_BAR (bar);
  gtk_widget_set_valign (cancel, GTK_ALIGN_CENTER);
  gtk_actionable_set_action_name (GTK_ACTIONABLE (cancel), "models.cancel-copy");
  adw_action_row_add_suffix (ADW_ACTION_ROW (self->copy_row), bar);
  adw_action_row_add_suffix (ADW_ACTION_ROW (self->copy_row), cancel);
  gtk_widget_set_visible (self->copy_row, FALSE);
  gtk_list_box_append (self->installed_list, self->copy_row);
  g_object_unref (self->copy_row);
}

/* ---------------------------------------------------------------------------------------------
 * The Models window
 */

GtkWindow *
app_models_window_new (GtkWindow       *parent,
                       AppModelManager *manager,
                       AppEngine       *engine,
                       GSettings       *settings)
{
  GtkWidget *window = adw_window_new ();
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  GtkWidget *header = adw_header_bar_new ();
  GtkWidget *page = app_models_page_new (manager, engine, settings);

  gtk_window_set_title (GTK_WINDOW (window), _("Models"));
  gtk_window_set_default_size (GTK_WINDOW (window), 720, 760);
  gtk_window_set_transient_for (GTK_WINDOW (window), parent);
  gtk_window_set_destroy_with_parent (GTK_WINDOW (window), TRUE);
  if (parent)
    gtk_window_set_application (GTK_WINDOW (window), gtk_window_get_application (parent));
  gtk_widget_set_vexpand (page, TRUE);
  gtk_box_append (GTK_BOX (box), header);
  gtk_box_append (GTK_BOX (box), page);
  adw_window_set_content (ADW_WINDOW (window), box);
  return GTK_WINDOW (window);
}
