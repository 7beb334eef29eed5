/* app-context-bar.c - the next question's cost in tokens, under the question box.
 *
 * The count is the engine's (app_engine_count_tokens_async): the prompt its own builder makes
 * for the chat and the question, images counted from their sizes, against the model's context
 * less the room kept for the answer. It runs a moment after the question changes, on the
 * engine's worker when it is idle; a newer count cancels an older one. The bar shows
 * "1,234 / 4,096 tokens" quietly. When the question does not fit it says so, the composer
 * disables Send, and, when leaving out what the model saw first would make it fit, it offers
 * that: the oldest images, or the earliest turns. The choice holds for the chat shown: the
 * window passes it to the engine with the question (AppGenerateParams.leave_out_images; the
 * engine leaves out earliest turns by itself), and the answer's note says what was left out.
 * With the count it asks the engine to read the question's images ahead (app_engine_prepare).
 */
#define G_LOG_DOMAIN "sightline-context-bar"

#include "app-context-bar.h"

#include <glib/gi18n.h>

#include "app-wrap-box.h"

/* How long the question must stay unchanged before it is counted. */
#define COUNT_DELAY_MS 300

typedef enum
{
  LEAVE_OUT_NOTHING,
  LEAVE_OUT_TURNS,
  LEAVE_OUT_IMAGES,
} LeaveOut;

struct _AppContextBar
{
  GtkWidget parent_instance;

  GtkWidget *box;
  GtkWidget *warning;
  GtkWidget *warning_label;
  GtkWidget *actions;
  GtkWidget *images_button;
  GtkWidget *turns_button;
  GtkWidget *count_label;

  AppEngine *engine;
  GSettings *settings;
  char *image_dir;
  AppChat *chat;
  AppMessage *replacing;
  char *prompt;
  char **images;

  guint timeout;
  GCancellable *cancellable;
  gboolean counted;
  AppTokenCount count;
  LeaveOut leave_out;
  int n_tokens;
  gboolean fits;
};

G_DEFINE_FINAL_TYPE (AppContextBar, app_context_bar, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_N_TOKENS,
  PROP_N_CTX,
  PROP_FITS,
  PROP_LEAVE_OUT_IMAGES,
  PROP_LEAVE_OUT_TURNS,
  PROP_ENGINE,
  PROP_CHAT,
  PROP_REPLACING,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void schedule_count (AppContextBar *self);

/* "1,234": grouped the way the locale groups digits. */
static char *
format_count (int n)
{
  return g_strdup_printf ("%'d", n);
}

static void
set_state (AppContextBar *self,
           int            n_tokens,
           gboolean       fits)
{
  if (self->n_tokens != n_tokens)
    {
      self->n_tokens = n_tokens;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_TOKENS]);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_CTX]);
    }
  if (self->fits != fits)
    {
      self->fits = fits;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FITS]);
    }
}

/* Shows the last count, with what the person chose to leave out. */
static void
update (AppContextBar *self)
{
  const AppTokenCount *c = &self->count;
  g_autofree char *ctx = NULL;
  g_autofree char *answer = NULL;
  g_autofree char *tokens = NULL;
  g_autofree char *label = NULL;
  g_autofree char *left_out = NULL;
  int n;
  gboolean over;

  if (!self->counted || !self->prompt)
    {
      gtk_widget_set_visible (self->box, FALSE);
      set_state (self, -1, TRUE);
      return;
    }
  n = c->n_tokens;
  over = c->n_tokens + c->n_answer > c->n_ctx;
  if (over && self->leave_out == LEAVE_OUT_IMAGES && c->images_left_out > 0)
    {
      n = c->images_tokens;
      over = FALSE;
      left_out = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "the oldest image left out",
                                               "the %d oldest images left out",
                                               c->images_left_out),
                                  c->images_left_out);
    }
  else if (over && self->leave_out == LEAVE_OUT_TURNS && c->turns_left_out > 0)
    {
      n = c->turns_tokens;
      over = FALSE;
      left_out = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "the earliest message left out",
                                               "the %d earliest messages left out",
                                               c->turns_left_out),
                                  c->turns_left_out);
    }

  ctx = format_count (c->n_ctx);
  answer = format_count (c->n_answer);
  tokens = format_count (n);
  /* TRANSLATORS: the tokens the next question needs of the model's context: "1,234 / 4,096
   * tokens" */
  label = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%s / %s token", "%s / %s tokens",
                                        c->n_ctx),
                           tokens, ctx);
  if (left_out)
    {
      char *with = g_strdup_printf (C_("context", "%s, %s"), label, left_out);

      g_free (label);
      label = with;
    }
  gtk_label_set_text (GTK_LABEL (self->count_label), label);
  gtk_widget_set_tooltip_text (self->count_label,
                               _("What the conversation and this question take of the "
                                 "model’s context; the rest is for the answer"));

  gtk_widget_set_visible (self->warning, over);
  gtk_widget_set_visible (self->images_button, over && c->images_left_out > 0);
  gtk_widget_set_visible (self->turns_button, over && c->turns_left_out > 0);
  gtk_widget_set_visible (self->actions, over && (c->images_left_out > 0 ||
                                                  c->turns_left_out > 0));
  if (over)
    {
      g_autofree char *text = NULL;

      if (c->images_left_out > 0 || c->turns_left_out > 0)
        text = g_strdup_printf (_("The conversation is too long for the model: it needs %s "
                                  "tokens, and the model reads %s with %s kept for the answer. "
                                  "Leave out what it saw first?"), tokens, ctx, answer);
      else
        text = g_strdup_printf (_("This question is too long for the model: it needs %s "
                                  "tokens, and the model reads %s with %s kept for the answer. "
                                  "Shorten it, or send fewer images."), tokens, ctx, answer);
      gtk_label_set_text (GTK_LABEL (self->warning_label), text);
    }
  gtk_widget_set_visible (self->box, TRUE);
  set_state (self, n, !over);
}

static void
count_done_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(AppContextBar) self = user_data;
  g_autoptr(GError) error = NULL;
  AppTokenCount count;

  if (!app_engine_count_tokens_finish (APP_ENGINE (source), result, &count, &error))
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          /* a question the engine refuses is refused again on Send, with the reason */
          g_debug ("the question could not be counted: %s", error->message);
          self->counted = FALSE;
          update (self);
        }
      return;
    }
  self->count = count;
  self->counted = TRUE;
  update (self);
}

/* The system prompt and the answer length, as the window reads them for an answer. */
static void
read_params (AppContextBar     *self,
             AppGenerateParams *p)
{
  g_autoptr(GVariant) maybe = NULL;
  g_autoptr(GVariant) just = NULL;

  app_generate_params_init (p);
  if (!self->settings)
    return;
  maybe = g_settings_get_value (self->settings, "max-new-tokens");
  just = g_variant_get_maybe (maybe);
  if (just)
    p->max_new_tokens = g_variant_get_int32 (just);
  p->system_prompt = g_settings_get_string (self->settings, "system-prompt");
}

static gboolean
count_timeout_cb (gpointer data)
{
  AppContextBar *self = data;
  AppGenerateParams params;

  self->timeout = 0;
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  if (!self->prompt || !self->engine || app_engine_get_state (self->engine) != APP_ENGINE_READY)
    {
      /* counted again once the engine is ready */
      self->counted = FALSE;
      update (self);
      return G_SOURCE_REMOVE;
    }
  self->cancellable = g_cancellable_new ();
  read_params (self, &params);
  app_engine_count_tokens_async (self->engine, self->chat, self->replacing, self->prompt,
                                 (const char * const *) self->images, self->image_dir, &params,
                                 self->cancellable, count_done_cb, g_object_ref (self));
  /* the draft's images are read while the question is typed: on Send only the question is
   * left to read */
  app_engine_prepare (self->engine, self->chat, self->replacing, self->prompt,
                      (const char * const *) self->images, self->image_dir, &params);
  app_generate_params_clear (&params);
  return G_SOURCE_REMOVE;
}

static void
schedule_count (AppContextBar *self)
{
  g_clear_handle_id (&self->timeout, g_source_remove);
  self->timeout = g_timeout_add (COUNT_DELAY_MS, count_timeout_cb, self);
}

static void
leave_out_images_cb (AppContextBar *self)
{
  self->leave_out = LEAVE_OUT_IMAGES;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEAVE_OUT_IMAGES]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEAVE_OUT_TURNS]);
  update (self);
}

static void
leave_out_turns_cb (AppContextBar *self)
{
  self->leave_out = LEAVE_OUT_TURNS;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEAVE_OUT_IMAGES]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEAVE_OUT_TURNS]);
  update (self);
}

/* ------------------------------------------------------------------------------------------
 * API
 */

AppContextBar *
app_context_bar_new (void)
{
  return g_object_new (APP_TYPE_CONTEXT_BAR, NULL);
}

static void
engine_state_cb (AppContextBar *self)
{
  /* an answer done, a model loaded: the context may have changed */
  if (app_engine_get_state (self->engine) == APP_ENGINE_READY)
    schedule_count (self);
}

void
app_context_bar_set_engine (AppContextBar *self,
                            AppEngine     *engine,
                            GSettings     *settings,
                            const char    *image_dir)
{
  g_return_if_fail (APP_IS_CONTEXT_BAR (self));

  if (self->engine)
    g_signal_handlers_disconnect_by_data (self->engine, self);
  if (self->settings)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  if (g_set_object (&self->engine, engine))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ENGINE]);
  g_set_object (&self->settings, settings);
  g_free (self->image_dir);
  self->image_dir = g_strdup (image_dir);
  if (engine)
    g_signal_connect_object (engine, "notify::state", G_CALLBACK (engine_state_cb), self,
                             G_CONNECT_SWAPPED);
  if (settings)
    {
      g_signal_connect_object (settings, "changed::system-prompt", G_CALLBACK (schedule_count),
                               self, G_CONNECT_SWAPPED);
      g_signal_connect_object (settings, "changed::max-new-tokens", G_CALLBACK (schedule_count),
                               self, G_CONNECT_SWAPPED);
    }
  schedule_count (self);
}

AppEngine *
app_context_bar_get_engine (AppContextBar *self)
{
  g_return_val_if_fail (APP_IS_CONTEXT_BAR (self), NULL);

  return self->engine;
}

void
app_context_bar_set_chat (AppContextBar *self,
                          AppChat       *chat)
{
  g_return_if_fail (APP_IS_CONTEXT_BAR (self));

  if (self->chat == chat)
    return;
  if (self->chat)
    g_signal_handlers_disconnect_by_data (app_chat_get_messages (self->chat), self);
  g_object_freeze_notify (G_OBJECT (self));
  g_set_object (&self->chat, chat);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CHAT]);
  if (self->replacing)
    {
      g_clear_object (&self->replacing);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_REPLACING]);
    }
  if (chat)
    g_signal_connect_object (app_chat_get_messages (chat), "items-changed",
                             G_CALLBACK (schedule_count), self, G_CONNECT_SWAPPED);
  self->leave_out = LEAVE_OUT_NOTHING;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEAVE_OUT_IMAGES]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEAVE_OUT_TURNS]);
  self->counted = FALSE;
  update (self);
  schedule_count (self);
  g_object_thaw_notify (G_OBJECT (self));
}

AppChat *
app_context_bar_get_chat (AppContextBar *self)
{
  g_return_val_if_fail (APP_IS_CONTEXT_BAR (self), NULL);

  return self->chat;
}

void
app_context_bar_set_replacing (AppContextBar *self,
                               AppMessage    *question)
{
  g_return_if_fail (APP_IS_CONTEXT_BAR (self));

  if (!g_set_object (&self->replacing, question))
    return;
  schedule_count (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_REPLACING]);
}

AppMessage *
app_context_bar_get_replacing (AppContextBar *self)
{
  g_return_val_if_fail (APP_IS_CONTEXT_BAR (self), NULL);

  return self->replacing;
}

void
app_context_bar_set_question (AppContextBar      *self,
                              const char         *prompt,
                              const char * const *images)
{
  g_return_if_fail (APP_IS_CONTEXT_BAR (self));

  if (g_strcmp0 (self->prompt, prompt) == 0 &&
      ((!self->images && !images) ||
       (self->images && images &&
        g_strv_equal ((const char * const *) self->images, images))))
    return;
  g_free (self->prompt);
  self->prompt = g_strdup (prompt);
  g_strfreev (self->images);
  self->images = g_strdupv ((char **) images);
  if (!prompt)
    {
      g_clear_handle_id (&self->timeout, g_source_remove);
      g_cancellable_cancel (self->cancellable);
      self->counted = FALSE;
      update (self);
      return;
    }
  schedule_count (self);
}

int
app_context_bar_get_n_tokens (AppContextBar *self)
{
  g_return_val_if_fail (APP_IS_CONTEXT_BAR (self), -1);

  return self->n_tokens;
}

gboolean
app_context_bar_get_fits (AppContextBar *self)
{
  g_return_val_if_fail (APP_IS_CONTEXT_BAR (self), TRUE);

  return self->fits;
}

gboolean
app_context_bar_get_leave_out_images (AppContextBar *self)
{
  g_return_val_if_fail (APP_IS_CONTEXT_BAR (self), FALSE);

  return self->leave_out == LEAVE_OUT_IMAGES;
}

/* ------------------------------------------------------------------------------------------
 * GObject
 */

static void
app_context_bar_dispose (GObject *object)
{
  AppContextBar *self = APP_CONTEXT_BAR (object);

  g_clear_handle_id (&self->timeout, g_source_remove);
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  if (self->chat)
    g_signal_handlers_disconnect_by_data (app_chat_get_messages (self->chat), self);
  g_clear_object (&self->chat);
  g_clear_object (&self->replacing);
  g_clear_object (&self->engine);
  g_clear_object (&self->settings);
  gtk_widget_dispose_template (GTK_WIDGET (self), APP_TYPE_CONTEXT_BAR);
  G_OBJECT_CLASS (app_context_bar_parent_class)->dispose (object);
}

static void
app_context_bar_finalize (GObject *object)
{
  AppContextBar *self = APP_CONTEXT_BAR (object);

  g_free (self->image_dir);
  g_free (self->prompt);
  g_strfreev (self->images);
  G_OBJECT_CLASS (app_context_bar_parent_class)->finalize (object);
}

static void
app_context_bar_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  AppContextBar *self = APP_CONTEXT_BAR (object);

  switch (prop_id)
    {
    case PROP_N_TOKENS:
      g_value_set_int (value, self->n_tokens);
      break;
    case PROP_N_CTX:
      g_value_set_int (value, self->counted ? self->count.n_ctx : 0);
      break;
    case PROP_FITS:
      g_value_set_boolean (value, self->fits);
      break;
    case PROP_LEAVE_OUT_IMAGES:
      g_value_set_boolean (value, self->leave_out == LEAVE_OUT_IMAGES);
      break;
    case PROP_LEAVE_OUT_TURNS:
      g_value_set_boolean (value, self->leave_out == LEAVE_OUT_TURNS);
      break;
    case PROP_ENGINE:
      g_value_set_object (value, self->engine);
      break;
    case PROP_CHAT:
      g_value_set_object (value, self->chat);
      break;
    case PROP_REPLACING:
      g_value_set_object (value, self->replacing);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_context_bar_set_property (GObject      *object,
                              guint         prop_id,
                              const GValue *value,
                              GParamSpec   *pspec)
{
  AppContextBar *self = APP_CONTEXT_BAR (object);

  switch (prop_id)
    {
    case PROP_ENGINE:
      /* the settings and image folder stay those given with the last engine */
      app_context_bar_set_engine (self, g_value_get_object (value), self->settings,
                                  self->image_dir);
      break;
    case PROP_CHAT:
      app_context_bar_set_chat (self, g_value_get_object (value));
      break;
    case PROP_REPLACING:
      app_context_bar_set_replacing (self, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_context_bar_class_init (AppContextBarClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = app_context_bar_dispose;
  object_class->finalize = app_context_bar_finalize;
  object_class->get_property = app_context_bar_get_property;
  object_class->set_property = app_context_bar_set_property;

  properties[PROP_N_TOKENS] =
    g_param_spec_int ("n-tokens", NULL, NULL, -1, G_MAXINT, -1,
                      G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_N_CTX] =
    g_param_spec_int ("n-ctx", NULL, NULL, 0, G_MAXINT, 0,
                      G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_FITS] =
    g_param_spec_boolean ("fits", NULL, NULL, TRUE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_LEAVE_OUT_IMAGES] =
    g_param_spec_boolean ("leave-out-images", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_LEAVE_OUT_TURNS] =
    g_param_spec_boolean ("leave-out-turns", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /* what the count is made with: the model, the conversation it continues, and the question
   * being edited (whose answer and what follows it are left out) */
  properties[PROP_ENGINE] =
    g_param_spec_object ("engine", NULL, NULL, APP_TYPE_ENGINE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_CHAT] =
    g_param_spec_object ("chat", NULL, NULL, APP_TYPE_CHAT,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_REPLACING] =
    g_param_spec_object ("replacing", NULL, NULL, APP_TYPE_MESSAGE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  g_type_ensure (APP_TYPE_WRAP_BOX);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/sightline/Sightline/app-context-bar.ui");
  gtk_widget_class_bind_template_child (widget_class, AppContextBar, box);
  gtk_widget_class_bind_template_child (widget_class, AppContextBar, warning);
  gtk_widget_class_bind_template_child (widget_class, AppContextBar, warning_label);
  gtk_widget_class_bind_template_child (widget_class, AppContextBar, actions);
  gtk_widget_class_bind_template_child (widget_class, AppContextBar, images_button);
  gtk_widget_class_bind_template_child (widget_class, AppContextBar, turns_button);
  gtk_widget_class_bind_template_child (widget_class, AppContextBar, count_label);
  gtk_widget_class_bind_template_callback (widget_class, leave_out_images_cb);
  gtk_widget_class_bind_template_callback (widget_class, leave_out_turns_cb);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "contextbar");
}

static void
app_context_bar_init (AppContextBar *self)
{
  self->n_tokens = -1;
  self->fits = TRUE;
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_widget_set_visible (self->box, FALSE);
}
