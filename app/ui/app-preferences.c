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

#include "app-application.h"

#include <glib/gi18n.h>
#include <math.h>

#include "app-engine.h"

struct _AppPreferences
{
  AdwPreferencesWindow parent_instance;

  GSettings *settings;
  GtkTextBuffer *system_prompt;

  /* template */
  AdwActionRow *folder_row;
  GtkSpinButton *threads_spin;
  GtkSpinButton *temperature_spin;
  GtkWidget *temperature_reset;
  GtkSpinButton *top_p_spin;
  GtkWidget *top_p_reset;
  GtkSpinButton *max_new_tokens_spin;
  GtkWidget *max_new_tokens_reset;
  GtkSpinButton *repetition_penalty_spin;
  GtkWidget *repetition_penalty_reset;
  GtkTextView *system_prompt_view;
};

G_DEFINE_FINAL_TYPE (AppPreferences, app_preferences, ADW_TYPE_PREFERENCES_WINDOW)

enum {
  PROP_0,
  PROP_SETTINGS,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

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

      GApplication *app = g_application_get_default ();

      /* listed among the installed models, and used */
      if (path && APP_IS_APPLICATION (app))
        app_model_manager_add_folder (app_application_get_models (APP_APPLICATION (app)), path);
      else if (path)
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

/* Binds the spin button of a sampling key whose unset value is `fallback`, the engine's
 * default, and the reset button beside it. */
static void
bind_sampling (AppPreferences *self,
               const char     *key,
               double          fallback,
               GtkSpinButton  *spin,
               GtkWidget      *reset)
{
  g_autofree char *shown = g_strdup_printf ("%.*f", (int) gtk_spin_button_get_digits (spin),
                                            fallback);
  /* Translators: %s is the default value, such as 0.40 */
  g_autofree char *tooltip = g_strdup_printf (_("Reset to the Default (%s)"), shown);
  g_autofree char *changed = g_strconcat ("changed::", key, NULL);

  gtk_widget_set_tooltip_text (reset, tooltip);
  gtk_accessible_update_property (GTK_ACCESSIBLE (reset), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  tooltip, -1);
  g_object_set_data_full (G_OBJECT (reset), "key", g_strdup (key), g_free);

  gtk_spin_button_set_value (spin, fallback);
  g_settings_bind_with_mapping (self->settings, key, gtk_spin_button_get_adjustment (spin),
                                "value", G_SETTINGS_BIND_DEFAULT,
                                sampling_get_mapping, sampling_set_mapping,
                                g_memdup2 (&fallback, sizeof fallback), g_free);
  g_signal_connect_object (self->settings, changed, G_CALLBACK (sampling_changed_cb), reset, 0);
  sampling_changed_cb (self->settings, key, reset);
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
  g_return_val_if_fail (G_IS_SETTINGS (settings), NULL);

  return g_object_new (APP_TYPE_PREFERENCES, "settings", settings, NULL);
}

static void
app_preferences_constructed (GObject *object)
{
  AppPreferences *self = APP_PREFERENCES (object);
  GSettings *settings = self->settings;
  g_autofree char *prompt = NULL;
  AppGenerateParams defaults;

  G_OBJECT_CLASS (app_preferences_parent_class)->constructed (object);

  app_generate_params_init (&defaults);

  g_settings_bind (settings, "threads", gtk_spin_button_get_adjustment (self->threads_spin),
                   "value", G_SETTINGS_BIND_DEFAULT);
  bind_sampling (self, "temperature", defaults.temperature, self->temperature_spin,
                 self->temperature_reset);
  bind_sampling (self, "top-p", defaults.top_p, self->top_p_spin, self->top_p_reset);
  bind_sampling (self, "max-new-tokens", defaults.max_new_tokens, self->max_new_tokens_spin,
                 self->max_new_tokens_reset);
  bind_sampling (self, "repetition-penalty", defaults.repetition_penalty,
                 self->repetition_penalty_spin, self->repetition_penalty_reset);

  self->system_prompt = gtk_text_view_get_buffer (self->system_prompt_view);
  prompt = g_settings_get_string (settings, "system-prompt");
  gtk_text_buffer_set_text (self->system_prompt, prompt, -1);
  g_signal_connect_swapped (self->system_prompt, "changed",
                            G_CALLBACK (system_prompt_changed_cb), self);

  g_signal_connect_object (settings, "changed::model-folder", G_CALLBACK (folder_changed_cb),
                           self, G_CONNECT_SWAPPED);
  folder_changed_cb (self);
}

static void
app_preferences_dispose (GObject *object)
{
  AppPreferences *self = APP_PREFERENCES (object);

  g_clear_object (&self->settings);
  gtk_widget_dispose_template (GTK_WIDGET (self), APP_TYPE_PREFERENCES);
  G_OBJECT_CLASS (app_preferences_parent_class)->dispose (object);
}

static void
app_preferences_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  AppPreferences *self = APP_PREFERENCES (object);

  switch (prop_id)
    {
    case PROP_SETTINGS:
      g_value_set_object (value, self->settings);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_preferences_set_property (GObject      *object,
                              guint         prop_id,
                              const GValue *value,
                              GParamSpec   *pspec)
{
  AppPreferences *self = APP_PREFERENCES (object);

  switch (prop_id)
    {
    case PROP_SETTINGS:
      self->settings = g_value_dup_object (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_preferences_class_init (AppPreferencesClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->constructed = app_preferences_constructed;
  object_class->dispose = app_preferences_dispose;
  object_class->get_property = app_preferences_get_property;
  object_class->set_property = app_preferences_set_property;

  /* the application's settings, which every row is bound to */
  properties[PROP_SETTINGS] =
    g_param_spec_object ("settings", NULL, NULL, G_TYPE_SETTINGS,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/sightline/Sightline/app-preferences.ui");
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, folder_row);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, threads_spin);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, temperature_spin);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, temperature_reset);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, top_p_spin);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, top_p_reset);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, max_new_tokens_spin);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, max_new_tokens_reset);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, repetition_penalty_spin);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, repetition_penalty_reset);
  gtk_widget_class_bind_template_child (widget_class, AppPreferences, system_prompt_view);
  gtk_widget_class_bind_template_callback (widget_class, choose_clicked_cb);
  gtk_widget_class_bind_template_callback (widget_class, reset_clicked_cb);
}

static void
app_preferences_init (AppPreferences *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}
