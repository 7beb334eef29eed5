/* app-composer.c - the question box: text, pending images, send and stop.
 *
 * Enter sends and Shift+Enter starts a new line. Images arrive by the attach button, by drops
 * on the window (the window hands them here) and by pasting with Ctrl+V; each one is checked
 * with the engine's own decoder (size limits, truncated files) and copied into the chat store
 * in a worker thread, so a large photo never freezes the window and the chat keeps its own
 * copy. A pending image shows a spinner until its copy exists, and send waits for it.
 *
 * Each chat keeps its own unsent question: the window names the chat it shows (the draft key),
 * and the text, prompt kind and images of the chat it leaves are put aside, imports still
 * running, until that chat is shown again.
 *
 * What the box shows is held in properties ("generating", "can-send", "cannot-send-reason",
 * "prompt-kind", "text"), so the window can bind them; each notifies only when it changes.
 */
#define G_LOG_DOMAIN "sightline-composer"

#include "app-composer.h"

#include <glib/gi18n.h>

#include "app-context-bar.h"
#include "app-grounding.h"
#include "app-read.h"
#include "app-thumbnail.h"
#include "image-file.h"
#include "vl2-input.h"

/* Pending images: this high, as wide as their shape asks up to three times that, in a strip
 * that scrolls sideways: the box keeps its height whatever is attached. */
#define THUMB 72
#define THUMB_MAX_WIDTH (3 * THUMB)

typedef struct
{
  AppComposer *composer;         /* borrowed; NULL once the composer is gone */
  AppChatStore *store;           /* holds `id` in it: never deleted while attached here */
  GPtrArray *list;               /* the array holding it: the composer's, or a draft's */
  char *id;                      /* store id once imported */
  GtkWidget *tile;               /* owned; in the images box while its chat is shown */
  AppThumbnail *picture;
  GtkWidget *spinner;
  GCancellable *cancellable;
} Pending;

struct _AppComposer
{
  GtkWidget parent_instance;

  AppChatStore *store;
  GPtrArray *pending;            /* Pending*, in order */

  /* template */
  GtkWidget *box;
  GtkWidget *strip;
  GtkWidget *images;
  GtkTextView *text_view;
  GtkWidget *placeholder;
  GtkWidget *mode_label;         /* the helper in use, shown while its question is typed */
  GtkWidget *attach_button;
  GtkWidget *caption_button;
  GtkWidget *find_button;
  GtkWidget *send_button;
  AppContextBar *context_bar;

  AppPromptKind kind;
  gboolean generating;
  gboolean can_send;
  char *cannot_send_reason;      /* the send button's tooltip while it cannot send */

  char *draft_key;               /* the chat shown, NULL before there is one */
  GHashTable *drafts;            /* draft key -> Draft, the other chats' unsent questions */
};

/* A question put aside: what the composer held for a chat that is not shown. */
typedef struct
{
  char *text;
  AppPromptKind kind;
  GPtrArray *pending;            /* Pending*, tiles out of the box */
} Draft;

G_DEFINE_FINAL_TYPE (AppComposer, app_composer, GTK_TYPE_WIDGET)

enum { SEND, STOP, IMPORT_FAILED, CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

enum {
  PROP_0,
  PROP_STORE,
  PROP_TEXT,
  PROP_PROMPT_KIND,
  PROP_GENERATING,
  PROP_CAN_SEND,
  PROP_CANNOT_SEND_REASON,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void update_buttons (AppComposer *self);
static void update_context (AppComposer *self);

/* ------------------------------------------------------------------------------------------
 * Pending images
 */

static void
pending_free (gpointer p)
{
  Pending *pi = p;

  g_cancellable_cancel (pi->cancellable);
  g_clear_object (&pi->cancellable);
  g_clear_object (&pi->tile);
  /* no longer attached: deleted unless a message or a draft shows it */
  if (pi->id && pi->store)
    app_chat_store_release_image (pi->store, pi->id);
  g_clear_object (&pi->store);
  g_free (pi->id);
  g_free (pi);
}

static void
draft_free (gpointer p)
{
  Draft *d = p;

  g_free (d->text);
  g_clear_pointer (&d->pending, g_ptr_array_unref);
  g_free (d);
}

static void
remove_clicked_cb (GtkButton *button,
                   Pending   *pi)
{
  AppComposer *self = pi->composer;
  GtkWidget *parent = gtk_widget_get_parent (pi->tile);

  if (parent)
    gtk_box_remove (GTK_BOX (parent), pi->tile);
  g_ptr_array_remove (pi->list, pi);
  gtk_widget_set_visible (self->images, self->pending->len > 0);
  update_buttons (self);
  g_signal_emit (self, signals[CHANGED], 0);
}

static Pending *
pending_new (AppComposer *self)
{
  Pending *pi = g_new0 (Pending, 1);
  GtkWidget *overlay = gtk_overlay_new ();
  GtkWidget *remove = gtk_button_new_from_icon_name ("window-close-symbolic");

  pi->composer = self;
  pi->list = self->pending;
  pi->cancellable = g_cancellable_new ();
  pi->picture = APP_THUMBNAIL (app_thumbnail_new (NULL, THUMB, THUMB_MAX_WIDTH));
  gtk_widget_add_css_class (GTK_WIDGET (pi->picture), "attachment");
  gtk_overlay_set_child (GTK_OVERLAY (overlay), GTK_WIDGET (pi->picture));

  pi->spinner = gtk_spinner_new ();
  gtk_spinner_start (GTK_SPINNER (pi->spinner));
  gtk_widget_set_halign (pi->spinner, GTK_ALIGN_CENTER);
  gtk_widget_set_valign (pi->spinner, GTK_ALIGN_CENTER);
  gtk_overlay_add_overlay (GTK_OVERLAY (overlay), pi->spinner);

  gtk_widget_add_css_class (remove, "circular");
  gtk_widget_add_css_class (remove, "osd");
  gtk_widget_set_halign (remove, GTK_ALIGN_END);
  gtk_widget_set_valign (remove, GTK_ALIGN_START);
  gtk_widget_set_margin_top (remove, 4);
  gtk_widget_set_margin_end (remove, 4);
  gtk_widget_set_tooltip_text (remove, _("Remove Image"));
  gtk_accessible_update_property (GTK_ACCESSIBLE (remove), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _("Remove image"), -1);
  g_signal_connect (remove, "clicked", G_CALLBACK (remove_clicked_cb), pi);
  gtk_overlay_add_overlay (GTK_OVERLAY (overlay), remove);

  pi->tile = g_object_ref_sink (overlay);
  gtk_box_append (GTK_BOX (self->images), overlay);
  gtk_widget_set_visible (self->images, TRUE);
  g_ptr_array_add (self->pending, pi);
  update_buttons (self);
  return pi;
}

static void
pending_ready (Pending    *pi,
               const char *id)
{
  AppComposer *self = pi->composer;
  g_autofree char *path = app_chat_store_get_image_path (self->store, id);

  pi->id = g_strdup (id);
  pi->store = g_object_ref (self->store);
  app_chat_store_hold_image (pi->store, id);
  gtk_widget_set_visible (pi->spinner, FALSE);
  app_thumbnail_set_path (pi->picture, path);
  update_buttons (self);
  g_signal_emit (self, signals[CHANGED], 0);
}

/* The import thread: check the image as the engine will read it, then copy it in. */
typedef struct
{
  GFile *file;                   /* or bytes */
  GBytes *bytes;
  char *name;
  AppChatStore *store;
} ImportData;

static void
import_data_free (gpointer p)
{
  ImportData *d = p;

  g_clear_object (&d->file);
  g_clear_pointer (&d->bytes, g_bytes_unref);
  g_free (d->name);
  g_clear_object (&d->store);
  g_free (d);
}

/* An imported id, held by the import until the tile takes its own hold. */
typedef struct
{
  AppChatStore *store;
  char *id;
} Imported;

static void
imported_free (gpointer p)
{
  Imported *im = p;

  app_chat_store_release_image (im->store, im->id);
  g_object_unref (im->store);
  g_free (im->id);
  g_free (im);
}

static void
import_thread (GTask        *task,
               gpointer      source,
               gpointer      task_data,
               GCancellable *cancellable)
{
  ImportData *d = task_data;
  GError *error = NULL;
  ImageRgb im;
  Imported *imported;
  char *id;

  if (!d->bytes)
    {
      /* a regular file of bounded size only: a named pipe would wait forever */
      d->bytes = app_chat_store_read_image_file (d->file, cancellable, &error);
      if (!d->bytes)
        {
          g_task_return_error (task, error);
          return;
        }
    }
  if (!image_file_load_bytes (d->bytes, d->name, &im, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  image_rgb_clear (&im);
  id = app_chat_store_import_image (d->store, d->bytes, &error);
  if (!id)
    {
      g_task_return_error (task, error);
      return;
    }
  imported = g_new0 (Imported, 1);
  imported->store = g_object_ref (d->store);
  imported->id = id;
  g_task_return_pointer (task, imported, imported_free);
}

static void
import_done_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  Pending *pi = user_data;
  g_autoptr(GError) error = NULL;
  Imported *imported = g_task_propagate_pointer (G_TASK (result), &error);

  /* removed meanwhile, pi is gone: the task lets go of the image, and nothing shows it */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  if (!imported)
    {
      AppComposer *self = pi->composer;

      g_signal_emit (self, signals[IMPORT_FAILED], 0, error->message);
      remove_clicked_cb (NULL, pi);
      return;
    }
  pending_ready (pi, imported->id);
  imported_free (imported);
}

static void
import_async (AppComposer *self,
              GFile       *file,
              GBytes      *bytes,
              const char  *name)
{
  Pending *pi = pending_new (self);
  ImportData *d = g_new0 (ImportData, 1);
  GTask *task = g_task_new (NULL, pi->cancellable, import_done_cb, pi);

  d->file = file ? g_object_ref (file) : NULL;
  d->bytes = bytes ? g_bytes_ref (bytes) : NULL;
  d->name = g_strdup (name);
  d->store = g_object_ref (self->store);
  g_task_set_task_data (task, d, import_data_free);
  g_task_run_in_thread (task, import_thread);
  g_object_unref (task);
}

void
app_composer_add_files (AppComposer *self,
                        GSList      *files)
{
  g_return_if_fail (APP_IS_COMPOSER (self));

  for (GSList *l = files; l; l = l->next)
    {
      GFile *file = l->data;
      g_autofree char *name = g_file_get_basename (file);

      import_async (self, file, NULL, name);
    }
}

/* A pasted or dropped picture's bytes, read as they come (at most VL2_IMAGE_FILE_MAX_BYTES),
 * then imported like a file's: image-file decides by their content whether they are an image
 * the app reads. GTK is never asked to decode them (it would use any gdk-pixbuf loader, SVG
 * included). */
typedef struct
{
  AppComposer *self;
  char        *name;
} StreamRead;

static void
stream_read_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  StreamRead *r = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) bytes = app_read_all_finish (G_INPUT_STREAM (source), result, &error);

  if (bytes != NULL)
    import_async (r->self, NULL, bytes, r->name);
  else
    {
      g_autofree char *message = NULL;

      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE))
        message = g_strdup_printf (_("%s: cannot read this image: it is larger than %u MiB"),
                                   r->name, (guint) (VL2_IMAGE_FILE_MAX_BYTES >> 20));
      else
        message = g_strdup_printf (_("%s: cannot read it: %s"), r->name, error->message);
      g_signal_emit (r->self, signals[IMPORT_FAILED], 0, message);
    }
  g_object_unref (r->self);
  g_free (r->name);
  g_free (r);
}

void
app_composer_add_image_stream (AppComposer  *self,
                               GInputStream *stream,
                               const char   *name)
{
  StreamRead *r;

  g_return_if_fail (APP_IS_COMPOSER (self));
  g_return_if_fail (G_IS_INPUT_STREAM (stream));

  r = g_new0 (StreamRead, 1);
  r->self = g_object_ref (self);
  r->name = g_strdup (name ? name : _("Pasted image"));
  app_read_all_async (stream, VL2_IMAGE_FILE_MAX_BYTES, NULL, stream_read_cb, r);
}

const char * const *
app_composer_image_mime_types (void)
{
  /* the formats image-file reads, then any other picture a program offers (which image-file
   * refuses by name, rather than it being silently ignored) */
  static const char *const types[] = {
    "image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff",
    "image/svg+xml", "image/x-xpixmap", "image/x-tga", "image/x-icon", "image/vnd.microsoft.icon",
    "image/avif", "image/heif", "image/jxl", NULL
  };

  return (const char * const *) types;
}

void
app_composer_add_image_id (AppComposer *self,
                           const char  *image_id)
{
  g_return_if_fail (APP_IS_COMPOSER (self));
  pending_ready (pending_new (self), image_id);
}

char **
app_composer_get_images (AppComposer *self)
{
  GPtrArray *ids = g_ptr_array_new ();

  for (guint i = 0; i < self->pending->len; i++)
    {
      Pending *pi = g_ptr_array_index (self->pending, i);

      if (pi->id)
        g_ptr_array_add (ids, g_strdup (pi->id));
    }
  g_ptr_array_add (ids, NULL);
  return (char **) g_ptr_array_free (ids, FALSE);
}

gboolean
app_composer_has_images (AppComposer *self)
{
  return self->pending->len > 0;
}

gboolean
app_composer_is_importing (AppComposer *self)
{
  for (guint i = 0; i < self->pending->len; i++)
    if (!((Pending *) g_ptr_array_index (self->pending, i))->id)
      return TRUE;
  return FALSE;
}

/* ------------------------------------------------------------------------------------------
 * Text
 */

char *
app_composer_get_text (AppComposer *self)
{
  GtkTextBuffer *buffer = gtk_text_view_get_buffer (self->text_view);
  GtkTextIter start, end;

  gtk_text_buffer_get_bounds (buffer, &start, &end);
  return gtk_text_buffer_get_text (buffer, &start, &end, FALSE);
}

void
app_composer_set_text (AppComposer *self,
                       const char  *text)
{
  gtk_text_buffer_set_text (gtk_text_view_get_buffer (self->text_view), text ? text : "", -1);
}

void
app_composer_clear (AppComposer *self)
{
  app_composer_set_text (self, "");
  while (self->pending->len)
    remove_clicked_cb (NULL, g_ptr_array_index (self->pending, 0));
}

/* ------------------------------------------------------------------------------------------
 * Drafts: one unsent question per chat
 */

static void
show_pending (AppComposer *self)
{
  gtk_widget_set_visible (self->images, self->pending->len > 0);
  update_buttons (self);
  g_signal_emit (self, signals[CHANGED], 0);
}

void
app_composer_set_draft_key (AppComposer *self,
                            const char  *key)
{
  g_autofree char *text = NULL;
  Draft *draft = NULL;
  g_autofree char *stored_key = NULL;

  g_return_if_fail (APP_IS_COMPOSER (self));

  if (g_strcmp0 (self->draft_key, key) == 0)
    return;
  /* Before there is a chat, what was written goes to the first one; after, it stays with its
   * chat. */
  if (!self->draft_key)
    {
      self->draft_key = g_strdup (key);
      return;
    }
  text = app_composer_get_text (self);
  if (text[0] || self->pending->len > 0)
    {
      draft = g_new0 (Draft, 1);
      draft->text = g_steal_pointer (&text);
      draft->kind = self->kind;
      draft->pending = g_steal_pointer (&self->pending);
      for (guint i = 0; i < draft->pending->len; i++)
        {
          Pending *pi = g_ptr_array_index (draft->pending, i);

          gtk_box_remove (GTK_BOX (self->images), pi->tile);
        }
      g_hash_table_replace (self->drafts, g_strdup (self->draft_key), draft);
      self->pending = g_ptr_array_new_with_free_func (pending_free);
    }
  app_composer_clear (self);

  g_free (self->draft_key);
  self->draft_key = g_strdup (key);
  if (key && g_hash_table_steal_extended (self->drafts, key, (gpointer *) &stored_key,
                                          (gpointer *) &draft))
    {
      g_ptr_array_unref (self->pending);
      self->pending = g_steal_pointer (&draft->pending);
      for (guint i = 0; i < self->pending->len; i++)
        {
          Pending *pi = g_ptr_array_index (self->pending, i);

          gtk_box_append (GTK_BOX (self->images), pi->tile);
        }
      app_composer_set_text (self, draft->text);
      app_composer_set_prompt_kind (self, draft->kind);
      draft_free (draft);
    }
  else
    {
      app_composer_set_prompt_kind (self, APP_PROMPT_PLAIN);
    }
  show_pending (self);
}

gboolean
app_composer_has_draft (AppComposer *self,
                        const char  *key)
{
  g_return_val_if_fail (APP_IS_COMPOSER (self), FALSE);

  return key && g_hash_table_contains (self->drafts, key);
}

void
app_composer_forget_draft (AppComposer *self,
                           const char  *key)
{
  g_return_if_fail (APP_IS_COMPOSER (self));

  g_hash_table_remove (self->drafts, key);
}

static gboolean
has_content (AppComposer *self)
{
  g_autofree char *text = app_composer_get_text (self);

  /* Find needs the phrase to find; the others can ask about images alone */
  if (self->kind == APP_PROMPT_FIND)
    return g_strstrip (text)[0] != '\0';
  return g_strstrip (text)[0] != '\0' || self->pending->len > 0;
}

/* ------------------------------------------------------------------------------------------
 * Grounding helpers: a grounded caption, or Find (the phrase wrapped in a ref)
 */

/* The placeholder says which helper is on until the person types; then this label does. */
static void
update_mode_label (AppComposer *self)
{
  GtkTextBuffer *buffer = gtk_text_view_get_buffer (self->text_view);

  gtk_label_set_text (GTK_LABEL (self->mode_label),
                      self->kind == APP_PROMPT_FIND ? _("Find in Image")
                      : self->kind == APP_PROMPT_GROUNDED_CAPTION ? _("Grounded Caption") : "");
  gtk_widget_set_visible (self->mode_label, self->kind != APP_PROMPT_PLAIN &&
                                              gtk_text_buffer_get_char_count (buffer) > 0);
}

static void
update_kind (AppComposer *self)
{
  const char *placeholder;

  gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (self->caption_button),
                                self->kind == APP_PROMPT_GROUNDED_CAPTION);
  gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (self->find_button),
                                self->kind == APP_PROMPT_FIND);
  switch (self->kind)
    {
    case APP_PROMPT_GROUNDED_CAPTION:
      placeholder = _("Describe the image, marking what the caption names…");
      break;
    case APP_PROMPT_FIND:
      placeholder = _("What to find in the image…");
      break;
    case APP_PROMPT_PLAIN:
    default:
      placeholder = _("Ask about an image…");
      break;
    }
  gtk_label_set_text (GTK_LABEL (self->placeholder), placeholder);
  update_mode_label (self);
  update_buttons (self);
  update_context (self);
}

void
app_composer_set_prompt_kind (AppComposer   *self,
                              AppPromptKind  kind)
{
  g_return_if_fail (APP_IS_COMPOSER (self));

  if (self->kind == kind)
    return;
  self->kind = kind;
  update_kind (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PROMPT_KIND]);
  g_signal_emit (self, signals[CHANGED], 0);
}

AppPromptKind
app_composer_get_prompt_kind (AppComposer *self)
{
  g_return_val_if_fail (APP_IS_COMPOSER (self), APP_PROMPT_PLAIN);

  return self->kind;
}

static void
kind_toggled_cb (GtkToggleButton *button,
                 AppComposer     *self)
{
  AppPromptKind kind = button == GTK_TOGGLE_BUTTON (self->find_button)
                         ? APP_PROMPT_FIND : APP_PROMPT_GROUNDED_CAPTION;

  if (gtk_toggle_button_get_active (button))
    app_composer_set_prompt_kind (self, kind);
  else if (self->kind == kind)
    app_composer_set_prompt_kind (self, APP_PROMPT_PLAIN);
}

char *
app_composer_get_prompt (AppComposer *self)
{
  g_autofree char *text = app_composer_get_text (self);

  /* images alone are a question too: the engine puts them before an empty text */
  if (self->kind == APP_PROMPT_PLAIN)
    return g_strdup (g_strstrip (text));
  return app_grounding_wrap_prompt (self->kind, text);
}

void
app_composer_set_prompt (AppComposer *self,
                         const char  *prompt)
{
  AppPromptKind kind = APP_PROMPT_PLAIN;
  g_autofree char *text = app_grounding_unwrap_prompt (prompt, &kind);

  app_composer_set_text (self, text);
  app_composer_set_prompt_kind (self, kind);
}

static void
update_buttons (AppComposer *self)
{
  GtkWidget *b = self->send_button;

  if (self->generating)
    {
      gtk_button_set_icon_name (GTK_BUTTON (b), "media-playback-stop-symbolic");
      gtk_widget_set_tooltip_text (b, _("Stop"));
      gtk_accessible_update_property (GTK_ACCESSIBLE (b), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                      _("Stop the answer"), -1);
      gtk_widget_remove_css_class (b, "suggested-action");
      gtk_widget_add_css_class (b, "destructive-action");
      gtk_widget_set_sensitive (b, TRUE);
    }
  else
    {
      gtk_button_set_icon_name (GTK_BUTTON (b), "go-up-symbolic");
      gtk_widget_set_tooltip_text (b, !self->can_send && self->cannot_send_reason
                                        ? self->cannot_send_reason : _("Send"));
      gtk_accessible_update_property (GTK_ACCESSIBLE (b), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                      _("Send the question"), -1);
      gtk_widget_remove_css_class (b, "destructive-action");
      gtk_widget_add_css_class (b, "suggested-action");
      gtk_widget_set_sensitive (b, self->can_send && has_content (self) &&
                                     !app_composer_is_importing (self) &&
                                     app_context_bar_get_fits (self->context_bar));
    }
}

/* Send waits until the question fits in the model's context. */
static void
context_fits_cb (AppComposer *self)
{
  update_buttons (self);
}

static void
request_send (AppComposer *self)
{
  if (self->generating || !self->can_send || !has_content (self) ||
      app_composer_is_importing (self) || !app_context_bar_get_fits (self->context_bar))
    return;
  g_signal_emit (self, signals[SEND], 0);
}

static void
send_clicked_cb (AppComposer *self)
{
  if (self->generating)
    g_signal_emit (self, signals[STOP], 0);
  else
    request_send (self);
}

static gboolean
key_pressed_cb (GtkEventControllerKey *controller,
                guint                  keyval,
                guint                  keycode,
                GdkModifierType        state,
                AppComposer           *self)
{
  if ((keyval == GDK_KEY_Return || keyval == GDK_KEY_KP_Enter || keyval == GDK_KEY_ISO_Enter) &&
      !(state & (GDK_SHIFT_MASK | GDK_CONTROL_MASK | GDK_ALT_MASK)))
    {
      request_send (self);
      return TRUE;
    }
  return FALSE;
}

static void
buffer_changed_cb (AppComposer *self)
{
  GtkTextBuffer *buffer = gtk_text_view_get_buffer (self->text_view);

  gtk_widget_set_visible (self->placeholder, gtk_text_buffer_get_char_count (buffer) == 0);
  update_mode_label (self);
  update_buttons (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TEXT]);
  g_signal_emit (self, signals[CHANGED], 0);
}

/* Ctrl+V with a picture (or image files) on the clipboard attaches it; text pastes as text. */
static void
paste_image_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(AppComposer) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GInputStream) stream = gdk_clipboard_read_finish (GDK_CLIPBOARD (source), result,
                                                              NULL, &error);

  if (stream)
    app_composer_add_image_stream (self, stream, _("Pasted image"));
  else
    g_signal_emit (self, signals[IMPORT_FAILED], 0, error->message);
}

static gboolean
offers_image (GdkContentFormats *formats)
{
  for (const char * const *t = app_composer_image_mime_types (); *t; t++)
    if (gdk_content_formats_contain_mime_type (formats, *t))
      return TRUE;
  return FALSE;
}

static void
paste_files_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(AppComposer) self = user_data;
  g_autoptr(GError) error = NULL;
  const GValue *value = gdk_clipboard_read_value_finish (GDK_CLIPBOARD (source), result, &error);

  if (value)
    app_composer_add_files (self, g_value_get_boxed (value));
  else
    g_signal_emit (self, signals[IMPORT_FAILED], 0, error->message);
}

static void
paste_clipboard_cb (GtkTextView *view,
                    AppComposer *self)
{
  GdkClipboard *clipboard = gtk_widget_get_clipboard (GTK_WIDGET (view));
  GdkContentFormats *formats = gdk_clipboard_get_formats (clipboard);

  if (gdk_content_formats_contain_gtype (formats, GDK_TYPE_FILE_LIST))
    {
      gdk_clipboard_read_value_async (clipboard, GDK_TYPE_FILE_LIST, G_PRIORITY_DEFAULT, NULL,
                                      paste_files_cb, g_object_ref (self));
      g_signal_stop_emission_by_name (view, "paste-clipboard");
    }
  else if (offers_image (formats) || gdk_content_formats_contain_gtype (formats, GDK_TYPE_TEXTURE))
    {
      /* the bytes, not a texture: GTK would decode them (a picture put on the clipboard by
       * this app is a texture, offered as PNG bytes too) */
      gdk_clipboard_read_async (clipboard, (const char **) app_composer_image_mime_types (),
                                G_PRIORITY_DEFAULT, NULL, paste_image_cb, g_object_ref (self));
      g_signal_stop_emission_by_name (view, "paste-clipboard");
    }
}

/* What the question would send, for the context bar to count. */
static void
update_context (AppComposer *self)
{
  g_autofree char *prompt = has_content (self) ? app_composer_get_prompt (self) : NULL;
  g_auto(GStrv) images = app_composer_get_images (self);

  app_context_bar_set_question (self->context_bar, prompt, (const char * const *) images);
}

/* ------------------------------------------------------------------------------------------
 * API
 */

AppComposer *
app_composer_new (void)
{
  return g_object_new (APP_TYPE_COMPOSER, NULL);
}

void
app_composer_set_store (AppComposer  *self,
                        AppChatStore *store)
{
  g_return_if_fail (APP_IS_COMPOSER (self));
  g_return_if_fail (!store || APP_IS_CHAT_STORE (store));

  if (g_set_object (&self->store, store))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STORE]);
}

AppChatStore *
app_composer_get_store (AppComposer *self)
{
  g_return_val_if_fail (APP_IS_COMPOSER (self), NULL);

  return self->store;
}

void
app_composer_set_generating (AppComposer *self,
                             gboolean     generating)
{
  g_return_if_fail (APP_IS_COMPOSER (self));

  generating = !!generating;
  if (self->generating == generating)
    return;
  self->generating = generating;
  update_buttons (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_GENERATING]);
}

gboolean
app_composer_get_generating (AppComposer *self)
{
  g_return_val_if_fail (APP_IS_COMPOSER (self), FALSE);

  return self->generating;
}

void
app_composer_set_can_send (AppComposer *self,
                           gboolean     can_send)
{
  g_return_if_fail (APP_IS_COMPOSER (self));

  can_send = !!can_send;
  if (self->can_send == can_send)
    return;
  self->can_send = can_send;
  update_buttons (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CAN_SEND]);
}

gboolean
app_composer_get_can_send (AppComposer *self)
{
  g_return_val_if_fail (APP_IS_COMPOSER (self), FALSE);

  return self->can_send;
}

AppContextBar *
app_composer_get_context_bar (AppComposer *self)
{
  g_return_val_if_fail (APP_IS_COMPOSER (self), NULL);

  return self->context_bar;
}

void
app_composer_set_cannot_send_reason (AppComposer *self,
                                     const char  *reason)
{
  g_return_if_fail (APP_IS_COMPOSER (self));

  if (g_strcmp0 (self->cannot_send_reason, reason) == 0)
    return;
  g_free (self->cannot_send_reason);
  self->cannot_send_reason = g_strdup (reason);
  update_buttons (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CANNOT_SEND_REASON]);
}

const char *
app_composer_get_cannot_send_reason (AppComposer *self)
{
  g_return_val_if_fail (APP_IS_COMPOSER (self), NULL);

  return self->cannot_send_reason;
}

void
app_composer_focus (AppComposer *self)
{
  gtk_widget_grab_focus (GTK_WIDGET (self->text_view));
}

/* ------------------------------------------------------------------------------------------
 * GObject
 */

static void
app_composer_dispose (GObject *object)
{
  AppComposer *self = APP_COMPOSER (object);

  if (self->pending)
    {
      /* outstanding imports must not call back into a dead composer */
      for (guint i = 0; i < self->pending->len; i++)
        ((Pending *) g_ptr_array_index (self->pending, i))->composer = NULL;
      g_clear_pointer (&self->pending, g_ptr_array_unref);
    }
  /* the drafts' imports are cancelled as they go */
  g_clear_pointer (&self->drafts, g_hash_table_unref);
  g_clear_pointer (&self->draft_key, g_free);
  g_clear_pointer (&self->cannot_send_reason, g_free);
  gtk_widget_dispose_template (GTK_WIDGET (self), APP_TYPE_COMPOSER);
  g_clear_object (&self->store);
  G_OBJECT_CLASS (app_composer_parent_class)->dispose (object);
}

static void
app_composer_constructed (GObject *object)
{
  AppComposer *self = APP_COMPOSER (object);

  G_OBJECT_CLASS (app_composer_parent_class)->constructed (object);

  /* every change of the question is counted against the context */
  g_signal_connect (self, "changed", G_CALLBACK (update_context), NULL);
  /* the send button as the construct properties left it */
  update_buttons (self);
}

static void
app_composer_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  AppComposer *self = APP_COMPOSER (object);

  switch (prop_id)
    {
    case PROP_STORE:
      g_value_set_object (value, self->store);
      break;
    case PROP_TEXT:
      g_value_take_string (value, app_composer_get_text (self));
      break;
    case PROP_PROMPT_KIND:
      g_value_set_enum (value, self->kind);
      break;
    case PROP_GENERATING:
      g_value_set_boolean (value, self->generating);
      break;
    case PROP_CAN_SEND:
      g_value_set_boolean (value, self->can_send);
      break;
    case PROP_CANNOT_SEND_REASON:
      g_value_set_string (value, self->cannot_send_reason);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_composer_set_property (GObject      *object,
                           guint         prop_id,
                           const GValue *value,
                           GParamSpec   *pspec)
{
  AppComposer *self = APP_COMPOSER (object);

  switch (prop_id)
    {
    case PROP_STORE:
      app_composer_set_store (self, g_value_get_object (value));
      break;
    case PROP_TEXT:
      app_composer_set_text (self, g_value_get_string (value));
      break;
    case PROP_PROMPT_KIND:
      app_composer_set_prompt_kind (self, g_value_get_enum (value));
      break;
    case PROP_GENERATING:
      app_composer_set_generating (self, g_value_get_boolean (value));
      break;
    case PROP_CAN_SEND:
      app_composer_set_can_send (self, g_value_get_boolean (value));
      break;
    case PROP_CANNOT_SEND_REASON:
      app_composer_set_cannot_send_reason (self, g_value_get_string (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_composer_class_init (AppComposerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = app_composer_dispose;
  object_class->constructed = app_composer_constructed;
  object_class->get_property = app_composer_get_property;
  object_class->set_property = app_composer_set_property;
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "composer");

  /* where attached images are copied; the window gives it before anything is attached */
  properties[PROP_STORE] =
    g_param_spec_object ("store", NULL, NULL, APP_TYPE_CHAT_STORE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /* what is typed, without the grounding helper's wrapping */
  properties[PROP_TEXT] =
    g_param_spec_string ("text", NULL, NULL, "",
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_PROMPT_KIND] =
    g_param_spec_enum ("prompt-kind", NULL, NULL, APP_TYPE_PROMPT_KIND, APP_PROMPT_PLAIN,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /* while it is, the send button is a stop button */
  properties[PROP_GENERATING] =
    g_param_spec_boolean ("generating", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_CAN_SEND] =
    g_param_spec_boolean ("can-send", NULL, NULL, TRUE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /* shown on the send button while "can-send" is FALSE */
  properties[PROP_CANNOT_SEND_REASON] =
    g_param_spec_string ("cannot-send-reason", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[SEND] = g_signal_new ("send", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                NULL, NULL, G_TYPE_NONE, 0);
  signals[STOP] = g_signal_new ("stop", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                NULL, NULL, G_TYPE_NONE, 0);
  signals[IMPORT_FAILED] = g_signal_new ("import-failed", G_TYPE_FROM_CLASS (klass),
                                         G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 1,
                                         G_TYPE_STRING);
  signals[CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                   NULL, NULL, NULL, G_TYPE_NONE, 0);

  g_type_ensure (APP_TYPE_CONTEXT_BAR);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/sightline/Sightline/app-composer.ui");
  gtk_widget_class_bind_template_child (widget_class, AppComposer, box);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, strip);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, images);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, text_view);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, placeholder);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, mode_label);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, attach_button);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, caption_button);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, find_button);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, send_button);
  gtk_widget_class_bind_template_child (widget_class, AppComposer, context_bar);
  gtk_widget_class_bind_template_callback (widget_class, kind_toggled_cb);
  gtk_widget_class_bind_template_callback (widget_class, buffer_changed_cb);
  gtk_widget_class_bind_template_callback (widget_class, paste_clipboard_cb);
  gtk_widget_class_bind_template_callback (widget_class, key_pressed_cb);
  gtk_widget_class_bind_template_callback (widget_class, send_clicked_cb);
  gtk_widget_class_bind_template_callback (widget_class, context_fits_cb);
}

static void
app_composer_init (AppComposer *self)
{
  self->pending = g_ptr_array_new_with_free_func (pending_free);
  self->drafts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, draft_free);
  self->can_send = TRUE;

  gtk_widget_init_template (GTK_WIDGET (self));

  /* each thumbnail keeps its natural width; the strip scrolls (the viewport GtkScrolledWindow
   * puts around the images is not in the template) */
  gtk_scrollable_set_hscroll_policy (GTK_SCROLLABLE (gtk_scrolled_window_get_child (
                                       GTK_SCROLLED_WINDOW (self->strip))), GTK_SCROLL_NATURAL);
}
