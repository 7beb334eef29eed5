/* app-preferences.c - model folder, threads, sampling and the system prompt.
 *
 * Every control is bound to a GSettings key, so changes apply at once and persist: the
 * application reloads the model when the folder or the thread count changes, and the next
 * answer uses the sampling values. A sampling key left unset follows the engine's default,
 * which its row shows; a reset button returns a changed one to it. libadwaita 1.2 has no spin
 * row, so numbers are spin buttons at the end of action rows.
 */
#define G_LOG_DOMAIN "sightline-preferences"

#include "app-preferences.h"

#include <glib/gi18n.h>
#include <math.h>

#include "app-engine.h"

struct _AppPreferences
{
  AdwPreferencesWindow parent_instance;

  GSettings *settings;
  AdwActionRow *folder_row;
  GtkTextBuffer *system_prompt;
};

G_DEFINE_FINAL_TYPE (AppPreferences, app_preferences, ADW_TYPE_PREFERENCES_WINDOW)

static void
folder_changed_cb (AppPreferences *self)
{
  g_autofree char *folder = g_settings_get_string (self->settings, "model-folder");

  adw_action_row_set_subtitle (self->folder_row, folder[0] ? folder : _("None chosen"));
}

static void
choose_response_cb (GtkNativeDialog *dialog,
                    int              response,
                    GSettings       *settings)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) folder = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = g_file_get_path (folder);

      if (path)
        g_settings_set_string (settings, "model-folder", path);
    }
  g_object_unref (dialog);
}

void
app_choose_model_folder (GtkWindow *parent,
                         GSettings *settings)
{
  GtkFileChooserNative *chooser =
    gtk_file_chooser_native_new (_("Open Model Folder"), parent,
                                 GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, _("_Open"), _("_Cancel"));

  g_signal_connect_object (chooser, "response", G_CALLBACK (choose_response_cb), settings, 0);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

static void
choose_clicked_cb (AppPreferences *self)
{
  app_choose_model_folder (GTK_WINDOW (self), self->settings);
}

/* A row with a spin button bound to a settings key. */
static GtkWidget *
spin_row (AppPreferences *self,
          const char     *key,
          const char     *title,
          const char     *subtitle,
          double          lower,
          double          upper,
          double          step,
          guint           digits)
{
  GtkWidget *row = adw_action_row_new ();
  GtkAdjustment *adj = gtk_adjustment_new (0, lower, upper, step, step * 10, 0);
  GtkWidget *spin = gtk_spin_button_new (adj, step, digits);

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
  gtk_widget_set_valign (spin, GTK_ALIGN_CENTER);
  gtk_accessible_update_property (GTK_ACCESSIBLE (spin), GTK_ACCESSIBLE_PROPERTY_LABEL, title,
                                  -1);
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), spin);
  adw_action_row_set_activatable_widget (ADW_ACTION_ROW (row), spin);
  g_settings_bind (self->settings, key, adj, "value", G_SETTINGS_BIND_DEFAULT);
  return row;
}

/* ------------------------------------------------------------------------------------------
 * Sampling rows. Their keys are maybe-typed: unset ("nothing") means the engine's default,
 * which the spin button then shows; a value the user picks is stored as it is, and the row's
 * reset button (shown only then) unsets the key again.
 */

static gboolean
sampling_get_mapping (GValue   *value,
                      GVariant *variant,
                      gpointer  user_data)
{
  const double *fallback = user_data;
  g_autoptr(GVariant) just = g_variant_get_maybe (variant);

  if (!just)
    g_value_set_double (value, *fallback);
  else if (g_variant_is_of_type (just, G_VARIANT_TYPE_INT32))
    g_value_set_double (value, g_variant_get_int32 (just));
  else
    g_value_set_double (value, g_variant_get_double (just));
  return TRUE;
}

static GVariant *
sampling_set_mapping (const GValue       *value,
                      const GVariantType *expected_type,
                      gpointer            user_data)
{
  const GVariantType *type = g_variant_type_element (expected_type);
  double v = g_value_get_double (value);

  if (g_variant_type_equal (type, G_VARIANT_TYPE_INT32))
    return g_variant_new_maybe (type, g_variant_new_int32 ((gint32) round (v)));
  return g_variant_new_maybe (type, g_variant_new_double (v));
}

static void
sampling_changed_cb (GSettings  *settings,
                     const char *key,
                     GtkWidget  *reset)
{
  g_autoptr(GVariant) value = g_settings_get_value (settings, key);

  gtk_widget_set_visible (reset, g_variant_n_children (value) > 0);
}

static void
reset_clicked_cb (GtkWidget      *reset,
                  AppPreferences *self)
{
  g_settings_reset (self->settings, g_object_get_data (G_OBJECT (reset), "key"));
}

/* A spin row for a sampling key whose unset value is `fallback`, the engine's default. */
static GtkWidget *
sampling_row (AppPreferences *self,
              const char     *key,
              double          fallback,
              const char     *title,
              const char     *subtitle,
              double          lower,
              double          upper,
              double          step,
              guint           digits)
{
  GtkWidget *row = adw_action_row_new ();
  GtkAdjustment *adj = gtk_adjustment_new (fallback, lower, upper, step, step * 10, 0);
  GtkWidget *spin = gtk_spin_button_new (adj, step, digits);
  GtkWidget *reset = gtk_button_new_from_icon_name ("edit-undo-symbolic");
  g_autofree char *shown = g_strdup_printf ("%.*f", (int) digits, fallback);
  /* Translators: %s is the default value, such as 0.40 */
  g_autofree char *tooltip = g_strdup_printf (_("Reset to the Default (%s)"), shown);
  g_autofree char *changed = g_strconcat ("changed::", key, NULL);

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);

  gtk_widget_set_valign (reset, GTK_ALIGN_CENTER);
  gtk_widget_add_css_class (reset, "flat");
  gtk_widget_set_tooltip_text (reset, tooltip);
  gtk_accessible_update_property (GTK_ACCESSIBLE (reset), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  tooltip, -1);
  g_object_set_data_full (G_OBJECT (reset), "key", g_strdup (key), g_free);
  g_signal_connect (reset, "clicked", G_CALLBACK (reset_clicked_cb), self);
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), reset);

  gtk_widget_set_valign (spin, GTK_ALIGN_CENTER);
  gtk_accessible_update_property (GTK_ACCESSIBLE (spin), GTK_ACCESSIBLE_PROPERTY_LABEL, title,
                                  -1);
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), spin);
  adw_action_row_set_activatable_widget (ADW_ACTION_ROW (row), spin);

  g_settings_bind_with_mapping (self->settings, key, adj, "value", G_SETTINGS_BIND_DEFAULT,
                                sampling_get_mapping, sampling_set_mapping,
                                g_memdup2 (&fallback, sizeof fallback), g_free);
  g_signal_connect_object (self->settings, changed, G_CALLBACK (sampling_changed_cb), reset, 0);
  sampling_changed_cb (self->settings, key, reset);
  return row;
}

static void
system_prompt_changed_cb (AppPreferences *self)
{
  GtkTextIter start, end;
  g_autofree char *text = NULL;

  gtk_text_buffer_get_bounds (self->system_prompt, &start, &end);
  text = gtk_text_buffer_get_text (self->system_prompt, &start, &end, FALSE);
  g_settings_set_string (self->settings, "system-prompt", text);
}

AppPreferences *
app_preferences_new (GSettings *settings)
{
  AppPreferences *self = g_object_new (APP_TYPE_PREFERENCES, NULL);
  AdwPreferencesPage *page = ADW_PREFERENCES_PAGE (adw_preferences_page_new ());
  AdwPreferencesGroup *model = ADW_PREFERENCES_GROUP (adw_preferences_group_new ());
  AdwPreferencesGroup *answers = ADW_PREFERENCES_GROUP (adw_preferences_group_new ());
  AdwPreferencesGroup *system = ADW_PREFERENCES_GROUP (adw_preferences_group_new ());
  GtkWidget *choose, *frame, *view;
  g_autofree char *prompt = NULL;
  AppGenerateParams defaults;

  app_generate_params_init (&defaults);
  self->settings = g_object_ref (settings);
  gtk_window_set_title (GTK_WINDOW (self), _("Preferences"));

  adw_preferences_group_set_title (model, _("Model"));
  self->folder_row = ADW_ACTION_ROW (adw_action_row_new ());
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->folder_row), _("Model Folder"));
  choose = gtk_button_new_with_mnemonic (_("_Choose…"));
  gtk_widget_set_valign (choose, GTK_ALIGN_CENTER);
  g_signal_connect_swapped (choose, "clicked", G_CALLBACK (choose_clicked_cb), self);
  adw_action_row_add_suffix (self->folder_row, choose);
  adw_preferences_group_add (model, GTK_WIDGET (self->folder_row));
  adw_preferences_group_add (model, spin_row (self, "threads", _("Threads"),
                                              _("Processor threads for the model; 0 uses all"),
                                              0, 256, 1, 0));
  adw_preferences_page_add (page, model);

  adw_preferences_group_set_title (answers, _("Answers"));
  adw_preferences_group_add (answers, sampling_row (self, "temperature", defaults.temperature,
                                                    _("Temperature"),
                                                    _("Higher is more varied; 0 always picks "
                                                      "the likeliest word; at most 0.7 is "
                                                      "advised"),
                                                    0, 2, 0.05, 2));
  adw_preferences_group_add (answers, sampling_row (self, "top-p", defaults.top_p, _("Top-p"),
                                                    _("Sample only from the likeliest words "
                                                      "that make up this probability"),
                                                    0.05, 1, 0.05, 2));
  adw_preferences_group_add (answers, sampling_row (self, "max-new-tokens",
                                                    defaults.max_new_tokens,
                                                    _("Maximum Answer Length"),
                                                    _("In tokens (about three quarters of a "
                                                      "word)"),
                                                    16, 4096, 16, 0));
  adw_preferences_group_add (answers, sampling_row (self, "repetition-penalty",
                                                    defaults.repetition_penalty,
                                                    _("Repetition Penalty"),
                                                    _("Makes words already used less likely; "
                                                      "1 turns it off"),
                                                    1, 2, 0.05, 2));
  adw_preferences_page_add (page, answers);

  adw_preferences_group_set_title (system, _("System Prompt"));
  adw_preferences_group_set_description (system, _("Instructions placed before every "
                                                   "conversation, such as the language or "
                                                   "style of the answers."));
  frame = gtk_frame_new (NULL);
  view = gtk_text_view_new ();
  gtk_text_view_set_wrap_mode (GTK_TEXT_VIEW (view), GTK_WRAP_WORD_CHAR);
  gtk_text_view_set_top_margin (GTK_TEXT_VIEW (view), 8);
  gtk_text_view_set_bottom_margin (GTK_TEXT_VIEW (view), 8);
  gtk_text_view_set_left_margin (GTK_TEXT_VIEW (view), 8);
  gtk_text_view_set_right_margin (GTK_TEXT_VIEW (view), 8);
  gtk_widget_set_size_request (view, -1, 100);
  gtk_accessible_update_property (GTK_ACCESSIBLE (view), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _("System prompt"), -1);
  self->system_prompt = gtk_text_view_get_buffer (GTK_TEXT_VIEW (view));
  prompt = g_settings_get_string (settings, "system-prompt");
  gtk_text_buffer_set_text (self->system_prompt, prompt, -1);
  g_signal_connect_swapped (self->system_prompt, "changed",
                            G_CALLBACK (system_prompt_changed_cb), self);
  gtk_frame_set_child (GTK_FRAME (frame), view);
  adw_preferences_group_add (system, frame);
  adw_preferences_page_add (page, system);

  adw_preferences_window_add (ADW_PREFERENCES_WINDOW (self), page);
  g_signal_connect_object (settings, "changed::model-folder", G_CALLBACK (folder_changed_cb),
                           self, G_CONNECT_SWAPPED);
  folder_changed_cb (self);
  return self;
}

static void
app_preferences_dispose (GObject *object)
{
  AppPreferences *self = APP_PREFERENCES (object);

  g_clear_object (&self->settings);
  G_OBJECT_CLASS (app_preferences_parent_class)->dispose (object);
}

static void
app_preferences_class_init (AppPreferencesClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = app_preferences_dispose;
}

static void
app_preferences_init (AppPreferences *self)
{
  gtk_window_set_default_size (GTK_WINDOW (self), 600, 680);
}
