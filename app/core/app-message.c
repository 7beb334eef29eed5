/* app-message.c - one message of a chat, as a GObject the conversation rows bind to.
 *
 * Every field is a property with notify, so a row shows a streamed answer, its stop or its
 * failure without the list being touched. The text lives in a GString: an answer grows by
 * a few bytes per batch of tokens, and appending must not copy what is already there.
 * Setters only notify when the value really changes, so bindings never loop and a row
 * never redraws for nothing.
 */
#define G_LOG_DOMAIN "sightline-message"

#include "app-message.h"

#include <math.h>
#include <string.h>

#include "app-enums.h"

struct _AppMessage
{
  GObject          parent_instance;

  AppRole          role;
  GString         *text;
  char           **images;
  AppMessageState  state;
  AppFinishReason  finish_reason;
  char            *error;
  char            *note;
  char            *boxes_image;
  guint            n_tokens;
  double           first_token_seconds;
  double           tokens_per_second;
  gint64           created;
  double           progress;       /* not saved: reading the question and its images */
  char            *progress_text;
};

G_DEFINE_FINAL_TYPE (AppMessage, app_message, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_ROLE,
  PROP_TEXT,
  PROP_IMAGES,
  PROP_STATE,
  PROP_FINISH_REASON,
  PROP_ERROR,
  PROP_NOTE,
  PROP_BOXES_IMAGE,
  PROP_N_TOKENS,
  PROP_FIRST_TOKEN_SECONDS,
  PROP_TOKENS_PER_SECOND,
  PROP_CREATED,
  PROP_PROGRESS,
  PROP_PROGRESS_TEXT,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* A statistic that is not a finite, non-negative number would be written to the chat file
 * as something JSON cannot hold ("nan"), and the file could not be read back. */
static double
sanitize_stat (double value)
{
  if (!isfinite (value) || value < 0)
    return 0;
  return value;
}

static gboolean
set_string (char       **field,
            const char  *value)
{
  if (g_strcmp0 (*field, value) == 0)
    return FALSE;

  g_free (*field);
  *field = g_strdup (value);
  return TRUE;
}

static void
app_message_finalize (GObject *object)
{
  AppMessage *self = (AppMessage *)object;

  g_string_free (self->text, TRUE);
  g_strfreev (self->images);
  g_free (self->error);
  g_free (self->note);
  g_free (self->boxes_image);
  g_free (self->progress_text);

  G_OBJECT_CLASS (app_message_parent_class)->finalize (object);
}

static void
app_message_get_property (GObject    *object,
                          guint       prop_id,
                          GValue     *value,
                          GParamSpec *pspec)
{
  AppMessage *self = APP_MESSAGE (object);

  switch (prop_id)
    {
    case PROP_ROLE:
      g_value_set_enum (value, self->role);
      break;

    case PROP_TEXT:
      g_value_set_string (value, self->text->str);
      break;

    case PROP_IMAGES:
      g_value_set_boxed (value, self->images);
      break;

    case PROP_STATE:
      g_value_set_enum (value, self->state);
      break;

    case PROP_FINISH_REASON:
      g_value_set_enum (value, self->finish_reason);
      break;

    case PROP_ERROR:
      g_value_set_string (value, self->error);
      break;

    case PROP_NOTE:
      g_value_set_string (value, self->note);
      break;

    case PROP_BOXES_IMAGE:
      g_value_set_string (value, self->boxes_image);
      break;

    case PROP_N_TOKENS:
      g_value_set_uint (value, self->n_tokens);
      break;

    case PROP_FIRST_TOKEN_SECONDS:
      g_value_set_double (value, self->first_token_seconds);
      break;

    case PROP_TOKENS_PER_SECOND:
      g_value_set_double (value, self->tokens_per_second);
      break;

    case PROP_CREATED:
      g_value_set_int64 (value, self->created);
      break;

    case PROP_PROGRESS:
      g_value_set_double (value, self->progress);
      break;

    case PROP_PROGRESS_TEXT:
      g_value_set_string (value, self->progress_text);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_message_set_property (GObject      *object,
                          guint         prop_id,
                          const GValue *value,
                          GParamSpec   *pspec)
{
  AppMessage *self = APP_MESSAGE (object);

  switch (prop_id)
    {
    case PROP_ROLE:
      self->role = g_value_get_enum (value);
      break;

    case PROP_TEXT:
      app_message_set_text (self, g_value_get_string (value));
      break;

    case PROP_IMAGES:
      app_message_set_images (self, g_value_get_boxed (value));
      break;

    case PROP_STATE:
      app_message_set_state (self, g_value_get_enum (value));
      break;

    case PROP_FINISH_REASON:
      app_message_set_finish_reason (self, g_value_get_enum (value));
      break;

    case PROP_ERROR:
      app_message_set_error (self, g_value_get_string (value));
      break;

    case PROP_NOTE:
      app_message_set_note (self, g_value_get_string (value));
      break;

    case PROP_BOXES_IMAGE:
      app_message_set_boxes_image (self, g_value_get_string (value));
      break;

    case PROP_N_TOKENS:
      app_message_set_stats (self,
                             g_value_get_uint (value),
                             self->first_token_seconds,
                             self->tokens_per_second);
      break;

    case PROP_FIRST_TOKEN_SECONDS:
      app_message_set_stats (self,
                             self->n_tokens,
                             g_value_get_double (value),
                             self->tokens_per_second);
      break;

    case PROP_TOKENS_PER_SECOND:
      app_message_set_stats (self,
                             self->n_tokens,
                             self->first_token_seconds,
                             g_value_get_double (value));
      break;

    case PROP_CREATED:
      app_message_set_created (self, g_value_get_int64 (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_message_class_init (AppMessageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = app_message_finalize;
  object_class->get_property = app_message_get_property;
  object_class->set_property = app_message_set_property;

  properties[PROP_ROLE] =
    g_param_spec_enum ("role", NULL, NULL,
                       APP_TYPE_ROLE,
                       APP_ROLE_USER,
                       (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  properties[PROP_TEXT] =
    g_param_spec_string ("text", NULL, NULL,
                         "",
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_IMAGES] =
    g_param_spec_boxed ("images", NULL, NULL,
                        G_TYPE_STRV,
                        (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_STATE] =
    g_param_spec_enum ("state", NULL, NULL,
                       APP_TYPE_MESSAGE_STATE,
                       APP_MESSAGE_COMPLETE,
                       (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_FINISH_REASON] =
    g_param_spec_enum ("finish-reason", NULL, NULL,
                       APP_TYPE_FINISH_REASON,
                       APP_FINISH_NONE,
                       (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_ERROR] =
    g_param_spec_string ("error", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_NOTE] =
    g_param_spec_string ("note", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_BOXES_IMAGE] =
    g_param_spec_string ("boxes-image", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_N_TOKENS] =
    g_param_spec_uint ("n-tokens", NULL, NULL,
                       0, G_MAXUINT, 0,
                       (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_FIRST_TOKEN_SECONDS] =
    g_param_spec_double ("first-token-seconds", NULL, NULL,
                         0, G_MAXDOUBLE, 0,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_TOKENS_PER_SECOND] =
    g_param_spec_double ("tokens-per-second", NULL, NULL,
                         0, G_MAXDOUBLE, 0,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_CREATED] =
    g_param_spec_int64 ("created", NULL, NULL,
                        G_MININT64, G_MAXINT64, 0,
                        (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_PROGRESS] =
    g_param_spec_double ("progress", NULL, NULL,
                         0, 1, 0,
                         (G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_PROGRESS_TEXT] =
    g_param_spec_string ("progress-text", NULL, NULL,
                         NULL,
                         (G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
app_message_init (AppMessage *self)
{
  self->role = APP_ROLE_USER;
  self->text = g_string_new (NULL);
  self->images = g_new0 (char *, 1);
  self->state = APP_MESSAGE_COMPLETE;
  self->created = g_get_real_time ();
}

AppMessage *
app_message_new (AppRole     role,
                 const char *text)
{
  return g_object_new (APP_TYPE_MESSAGE,
                       "role", role,
                       "text", text,
                       NULL);
}

AppRole
app_message_get_role (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), APP_ROLE_USER);

  return self->role;
}

const char *
app_message_get_text (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), NULL);

  return self->text->str;
}

void
app_message_set_text (AppMessage *self,
                      const char *text)
{
  g_return_if_fail (APP_IS_MESSAGE (self));

  if (text == NULL)
    text = "";

  if (strcmp (self->text->str, text) == 0)
    return;

  g_string_assign (self->text, text);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TEXT]);
}

void
app_message_append_text (AppMessage *self,
                         const char *delta)
{
  g_return_if_fail (APP_IS_MESSAGE (self));

  if (delta == NULL || delta[0] == '\0')
    return;

  g_string_append (self->text, delta);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TEXT]);
}

/* Never NULL: a message without pictures has an empty list, so callers can iterate. */
const char * const *
app_message_get_images (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), NULL);

  return (const char * const *)self->images;
}

void
app_message_set_images (AppMessage         *self,
                        const char * const *images)
{
  static const char * const none[] = { NULL };

  g_return_if_fail (APP_IS_MESSAGE (self));

  if (images == NULL)
    images = none;

  if (g_strv_equal ((const char * const *)self->images, images))
    return;

  g_strfreev (self->images);
  self->images = g_strdupv ((char **)images);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_IMAGES]);
}

AppMessageState
app_message_get_state (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), APP_MESSAGE_COMPLETE);

  return self->state;
}

void
app_message_set_state (AppMessage      *self,
                       AppMessageState  state)
{
  g_return_if_fail (APP_IS_MESSAGE (self));
  g_return_if_fail (state <= APP_MESSAGE_INTERRUPTED);

  if (self->state == state)
    return;

  self->state = state;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STATE]);
}

AppFinishReason
app_message_get_finish_reason (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), APP_FINISH_NONE);

  return self->finish_reason;
}

void
app_message_set_finish_reason (AppMessage      *self,
                               AppFinishReason  reason)
{
  g_return_if_fail (APP_IS_MESSAGE (self));
  g_return_if_fail (reason <= APP_FINISH_CONTEXT);

  if (self->finish_reason == reason)
    return;

  self->finish_reason = reason;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FINISH_REASON]);
}

const char *
app_message_get_error (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), NULL);

  return self->error;
}

void
app_message_set_error (AppMessage *self,
                       const char *error)
{
  g_return_if_fail (APP_IS_MESSAGE (self));

  if (set_string (&self->error, error))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ERROR]);
}

const char *
app_message_get_note (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), NULL);

  return self->note;
}

void
app_message_set_note (AppMessage *self,
                      const char *note)
{
  g_return_if_fail (APP_IS_MESSAGE (self));

  if (set_string (&self->note, note))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_NOTE]);
}

const char *
app_message_get_boxes_image (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), NULL);

  return self->boxes_image;
}

void
app_message_set_boxes_image (AppMessage *self,
                             const char *image_id)
{
  g_return_if_fail (APP_IS_MESSAGE (self));

  if (set_string (&self->boxes_image, image_id))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BOXES_IMAGE]);
}

guint
app_message_get_n_tokens (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), 0);

  return self->n_tokens;
}

double
app_message_get_first_token_seconds (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), 0);

  return self->first_token_seconds;
}

double
app_message_get_tokens_per_second (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), 0);

  return self->tokens_per_second;
}

void
app_message_set_stats (AppMessage *self,
                       guint       n_tokens,
                       double      first_token_seconds,
                       double      tokens_per_second)
{
  g_return_if_fail (APP_IS_MESSAGE (self));

  first_token_seconds = sanitize_stat (first_token_seconds);
  tokens_per_second = sanitize_stat (tokens_per_second);

  /* The three change together at the end of an answer; the row redraws once. */
  g_object_freeze_notify (G_OBJECT (self));

  if (self->n_tokens != n_tokens)
    {
      self->n_tokens = n_tokens;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_TOKENS]);
    }

  if (self->first_token_seconds != first_token_seconds)
    {
      self->first_token_seconds = first_token_seconds;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FIRST_TOKEN_SECONDS]);
    }

  if (self->tokens_per_second != tokens_per_second)
    {
      self->tokens_per_second = tokens_per_second;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TOKENS_PER_SECOND]);
    }

  g_object_thaw_notify (G_OBJECT (self));
}

gint64
app_message_get_created (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), 0);

  return self->created;
}

void
app_message_set_created (AppMessage *self,
                         gint64      created)
{
  g_return_if_fail (APP_IS_MESSAGE (self));

  if (self->created == created)
    return;

  self->created = created;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CREATED]);
}

double
app_message_get_progress (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), 0);

  return self->progress;
}

const char *
app_message_get_progress_text (AppMessage *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE (self), NULL);

  return self->progress_text;
}

void
app_message_set_progress (AppMessage *self,
                          double      fraction,
                          const char *text)
{
  g_return_if_fail (APP_IS_MESSAGE (self));

  fraction = isfinite (fraction) ? CLAMP (fraction, 0, 1) : 0;
  g_object_freeze_notify (G_OBJECT (self));
  if (self->progress != fraction)
    {
      self->progress = fraction;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PROGRESS]);
    }
  if (set_string (&self->progress_text, text))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PROGRESS_TEXT]);
  g_object_thaw_notify (G_OBJECT (self));
}
