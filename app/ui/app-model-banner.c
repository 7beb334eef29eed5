/* app-model-banner.c - the model's state above the conversation.
 *
 * The chats stay readable whatever the model is doing: instead of a page in place of the
 * conversation, a bar slides in above it while there is no model ("Choose a Model…"), while
 * one loads (the folder, the percentage, a progress bar and Cancel) and when loading failed
 * (what to do about it, the engine's message under it, "Choose Another Model…" and "Try
 * Again"). It hides once the model is ready. Everything it shows comes from AppEngine's
 * properties; its buttons are window actions, so the window decides what they do.
 */
#define G_LOG_DOMAIN "sightline-model-banner"

#include "app-model-banner.h"

#include <glib/gi18n.h>
#include <string.h>

struct _AppModelBanner
{
  GtkWidget parent_instance;

  AppEngine *engine;
  GSettings *settings;

  /* template */
  GtkRevealer *revealer;
  GtkWidget *bar;
  GtkImage *icon;
  GtkLabel *title;
  GtkLabel *detail;
  GtkProgressBar *progress;
  GtkButton *retry_button;
  GtkButton *button;
};

G_DEFINE_FINAL_TYPE (AppModelBanner, app_model_banner, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_REVEALED,
  PROP_ENGINE,
  PROP_SETTINGS,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* The folder as the person knows it: its name, not its path. */
static char *
folder_name (AppModelBanner *self)
{
  g_autofree char *folder = g_settings_get_string (self->settings, "model-folder");
  g_autofree char *trimmed = g_strdup (folder);
  gsize len = strlen (trimmed);

  while (len > 1 && trimmed[len - 1] == G_DIR_SEPARATOR)
    trimmed[--len] = '\0';
  return len ? g_path_get_basename (trimmed) : NULL;
}

static void
set_button (GtkButton  *button,
            const char *label,
            const char *action)
{
  gtk_button_set_label (button, label);
  gtk_actionable_set_action_name (GTK_ACTIONABLE (button), action);
  gtk_widget_set_visible (GTK_WIDGET (button), label != NULL);
}

static void
update (AppModelBanner *self)
{
  AppEngineState state = app_engine_get_state (self->engine);
  g_autofree char *name = folder_name (self);
  g_autofree char *title = NULL;
  const char *detail = NULL;
  gboolean failed = state == APP_ENGINE_FAILED;
  gboolean revealed = state == APP_ENGINE_EMPTY || state == APP_ENGINE_LOADING || failed;

  switch (state)
    {
    case APP_ENGINE_LOADING:
      {
        int percent = (int) (100 * app_engine_get_load_progress (self->engine));

        /* TRANSLATORS: the model folder's name and how much of it is loaded */
        title = name ? g_strdup_printf (_("Loading “%s”… %d %%"), name, percent)
                     : g_strdup_printf (_("Loading the model… %d %%"), percent);
        gtk_progress_bar_set_fraction (self->progress,
                                       app_engine_get_load_progress (self->engine));
        set_button (self->button, _("_Cancel"), "win.cancel-load");
        set_button (self->retry_button, NULL, NULL);
      }
      break;
    case APP_ENGINE_FAILED:
      title = g_strdup_printf ("%s %s", _("The model could not be loaded."),
                               app_engine_get_error_advice (self->engine)
                                 ? app_engine_get_error_advice (self->engine) : "");
      detail = app_engine_get_error (self->engine);
      set_button (self->button, _("_Choose Another Model…"), "win.open-model");
      set_button (self->retry_button, _("_Try Again"), "win.reload-model");
      break;
    case APP_ENGINE_EMPTY:
      /* with a folder chosen, a load was cancelled */
      title = g_strdup (name ? _("Loading was cancelled: no model is loaded. The chats can be "
                                 "read; answering needs the model.")
                             : _("No model is loaded. The chats can be read; answering needs a "
                                 "model."));
      set_button (self->button, _("_Choose a Model…"), "win.open-model");
      set_button (self->retry_button, name ? _("_Load Model") : NULL, "win.reload-model");
      break;
    case APP_ENGINE_READY:
    case APP_ENGINE_BUSY:
    default:
      break;
    }
  if (title)
    gtk_label_set_text (self->title, title);
  gtk_label_set_text (self->detail, detail ? detail : "");
  gtk_widget_set_visible (GTK_WIDGET (self->detail), detail != NULL);
  gtk_widget_set_visible (GTK_WIDGET (self->progress), state == APP_ENGINE_LOADING);
  gtk_image_set_from_icon_name (self->icon, failed ? "dialog-warning-symbolic"
                                                   : "dialog-information-symbolic");
  if (failed)
    gtk_widget_add_css_class (self->bar, "failed");
  else
    gtk_widget_remove_css_class (self->bar, "failed");

  if (gtk_revealer_get_reveal_child (self->revealer) != revealed)
    {
      /* it slides in, and goes at once: the conversation under it moves once, instead of
       * for a quarter of a second just as the model is ready to be asked. A slide that takes
       * no time, not the NONE transition: a revealer without a transition keeps its child's
       * height when hidden, a blank band above the conversation. */
      gtk_revealer_set_transition_duration (self->revealer, revealed ? 250 : 0);
      gtk_revealer_set_reveal_child (self->revealer, revealed);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_REVEALED]);
    }
}

AppModelBanner *
app_model_banner_new (void)
{
  return g_object_new (APP_TYPE_MODEL_BANNER, NULL);
}

/* Both are needed to say anything: the banner follows them once it has both. */
static void
set_engine (AppModelBanner *self,
            AppEngine      *engine)
{
  static const char * const signals[] = {
    "notify::state", "notify::load-progress", "notify::error", "notify::error-advice",
  };

  if (self->engine == engine)
    return;
  if (self->engine)
    g_signal_handlers_disconnect_by_data (self->engine, self);
  g_set_object (&self->engine, engine);
  for (gsize i = 0; engine && i < G_N_ELEMENTS (signals); i++)
    g_signal_connect_object (engine, signals[i], G_CALLBACK (update), self, G_CONNECT_SWAPPED);
  if (self->engine && self->settings)
    update (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ENGINE]);
}

static void
set_settings (AppModelBanner *self,
              GSettings      *settings)
{
  if (self->settings == settings)
    return;
  if (self->settings)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_set_object (&self->settings, settings);
  if (settings)
    g_signal_connect_object (settings, "changed::model-folder", G_CALLBACK (update), self,
                             G_CONNECT_SWAPPED);
  if (self->engine && self->settings)
    update (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SETTINGS]);
}

void
app_model_banner_set_engine (AppModelBanner *self,
                             AppEngine      *engine,
                             GSettings      *settings)
{
  g_return_if_fail (APP_IS_MODEL_BANNER (self));
  g_return_if_fail (APP_IS_ENGINE (engine));
  g_return_if_fail (G_IS_SETTINGS (settings));

  g_object_freeze_notify (G_OBJECT (self));
  /* the settings first: the engine's state is shown with the folder it names */
  set_settings (self, settings);
  set_engine (self, engine);
  g_object_thaw_notify (G_OBJECT (self));
}

AppEngine *
app_model_banner_get_engine (AppModelBanner *self)
{
  g_return_val_if_fail (APP_IS_MODEL_BANNER (self), NULL);

  return self->engine;
}

GSettings *
app_model_banner_get_settings (AppModelBanner *self)
{
  g_return_val_if_fail (APP_IS_MODEL_BANNER (self), NULL);

  return self->settings;
}

gboolean
app_model_banner_get_revealed (AppModelBanner *self)
{
  g_return_val_if_fail (APP_IS_MODEL_BANNER (self), FALSE);

  return gtk_revealer_get_reveal_child (self->revealer);
}

static void
app_model_banner_dispose (GObject *object)
{
  AppModelBanner *self = APP_MODEL_BANNER (object);

  gtk_widget_dispose_template (GTK_WIDGET (self), APP_TYPE_MODEL_BANNER);
  g_clear_object (&self->engine);
  g_clear_object (&self->settings);
  G_OBJECT_CLASS (app_model_banner_parent_class)->dispose (object);
}

static void
app_model_banner_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  AppModelBanner *self = APP_MODEL_BANNER (object);

  switch (prop_id)
    {
    case PROP_REVEALED:
      g_value_set_boolean (value, app_model_banner_get_revealed (self));
      break;
    case PROP_ENGINE:
      g_value_set_object (value, self->engine);
      break;
    case PROP_SETTINGS:
      g_value_set_object (value, self->settings);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_model_banner_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  AppModelBanner *self = APP_MODEL_BANNER (object);

  switch (prop_id)
    {
    case PROP_ENGINE:
      set_engine (self, g_value_get_object (value));
      break;
    case PROP_SETTINGS:
      set_settings (self, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_model_banner_class_init (AppModelBannerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = app_model_banner_dispose;
  object_class->get_property = app_model_banner_get_property;
  object_class->set_property = app_model_banner_set_property;

  properties[PROP_REVEALED] =
    g_param_spec_boolean ("revealed", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_ENGINE] =
    g_param_spec_object ("engine", NULL, NULL, APP_TYPE_ENGINE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /* for the "model-folder" key: the folder the banner names */
  properties[PROP_SETTINGS] =
    g_param_spec_object ("settings", NULL, NULL, G_TYPE_SETTINGS,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/sightline/Sightline/"
                                               "app-model-banner.ui");
  gtk_widget_class_bind_template_child (widget_class, AppModelBanner, revealer);
  gtk_widget_class_bind_template_child (widget_class, AppModelBanner, bar);
  gtk_widget_class_bind_template_child (widget_class, AppModelBanner, icon);
  gtk_widget_class_bind_template_child (widget_class, AppModelBanner, title);
  gtk_widget_class_bind_template_child (widget_class, AppModelBanner, detail);
  gtk_widget_class_bind_template_child (widget_class, AppModelBanner, progress);
  gtk_widget_class_bind_template_child (widget_class, AppModelBanner, retry_button);
  gtk_widget_class_bind_template_child (widget_class, AppModelBanner, button);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "modelbanner");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_GROUP);
}

static void
app_model_banner_init (AppModelBanner *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}
