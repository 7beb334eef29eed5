/* app-message-row.c - one message in the conversation view.
 *
 * A row is recycled by the list view: bind() points it at a message and follows that message's
 * notifications, so a streamed answer updates only its own row. The text of an answer is
 * rendered as Markdown (app-markdown-view.c keeps the widgets of unchanged blocks while the
 * answer grows); a question is shown as the person typed it. Buttons act through window
 * actions with the message's position: copy, edit and resend (questions), regenerate (the last
 * answer only).
 */
#include "app-message-row.h"

#include <glib/gi18n.h>

#include "app-image-viewer.h"
#include "app-markdown-view.h"
#include "app-thumbnail.h"

#define THUMB 160

struct _AppMessageRow
{
  GtkWidget parent_instance;

  AppChatStore *store;
  AppChat *chat;
  AppMessage *message;
  GSignalGroup *message_signals;
  GSignalGroup *chat_signals;

  GtkWidget *box;
  GtkWidget *author;
  GtkWidget *copy_button;
  GtkWidget *edit_button;
  GtkWidget *regenerate_button;
  GtkWidget *images;
  GtkWidget *user_text;
  AppMarkdownView *answer;
  GtkWidget *status_box;
  GtkWidget *spinner;
  GtkWidget *status_label;
  GtkWidget *error_label;
  GtkWidget *note_label;
  GtkWidget *stats_label;
};

G_DEFINE_FINAL_TYPE (AppMessageRow, app_message_row, GTK_TYPE_WIDGET)

static int
message_position (AppMessageRow *self)
{
  guint n;

  if (!self->chat)
    return -1;
  n = app_chat_get_n_messages (self->chat);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(AppMessage) m = app_chat_get_message (self->chat, i);

      if (m == self->message)
        return (int) i;
    }
  return -1;
}

static void
update_text (AppMessageRow *self)
{
  const char *text = app_message_get_text (self->message);

  if (app_message_get_role (self->message) == APP_ROLE_USER)
    gtk_label_set_text (GTK_LABEL (self->user_text), text);
  else
    app_markdown_view_set_text (self->answer, text);
}

static void
update_state (AppMessageRow *self)
{
  AppMessageState state = app_message_get_state (self->message);
  const char *error = app_message_get_error (self->message);
  const char *note = app_message_get_note (self->message);
  gboolean assistant = app_message_get_role (self->message) == APP_ROLE_ASSISTANT;
  guint n_tokens = app_message_get_n_tokens (self->message);

  gtk_widget_set_visible (self->status_box, state == APP_MESSAGE_PENDING ||
                                              state == APP_MESSAGE_STOPPED);
  gtk_spinner_set_spinning (GTK_SPINNER (self->spinner), state == APP_MESSAGE_PENDING);
  gtk_widget_set_visible (self->spinner, state == APP_MESSAGE_PENDING);
  if (state == APP_MESSAGE_PENDING)
    {
      g_autoptr(AppMessage) question = NULL;
      int pos = message_position (self);
      gboolean images = FALSE;

      if (pos > 0)
        {
          question = app_chat_get_message (self->chat, (guint) pos - 1);
          images = app_message_get_images (question) && app_message_get_images (question)[0];
        }
      gtk_label_set_text (GTK_LABEL (self->status_label),
                          images ? _("Looking at the images…") : _("Reading…"));
    }
  else if (state == APP_MESSAGE_STOPPED)
    {
      gtk_label_set_text (GTK_LABEL (self->status_label), _("Stopped"));
    }

  gtk_widget_set_visible (self->error_label, state == APP_MESSAGE_FAILED && error);
  gtk_label_set_text (GTK_LABEL (self->error_label), error ? error : "");
  gtk_widget_set_visible (self->note_label, note != NULL);
  gtk_label_set_text (GTK_LABEL (self->note_label), note ? note : "");

  if (assistant && n_tokens > 0 && state != APP_MESSAGE_STREAMING &&
      state != APP_MESSAGE_PENDING)
    {
      g_autofree char *tokens = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u token",
                                                              "%u tokens", n_tokens),
                                                 n_tokens);
      g_autofree char *stats =
        g_strdup_printf (_("%s · first token after %.1f s · %.1f tokens/s"), tokens,
                         app_message_get_first_token_seconds (self->message),
                         app_message_get_tokens_per_second (self->message));

      gtk_label_set_text (GTK_LABEL (self->stats_label), stats);
      gtk_widget_set_visible (self->stats_label, TRUE);
    }
  else
    {
      gtk_widget_set_visible (self->stats_label, FALSE);
    }
  gtk_widget_set_visible (self->copy_button, state != APP_MESSAGE_PENDING &&
                                               state != APP_MESSAGE_STREAMING);
}

/* Regenerate is offered on the last message only, and only if it is an answer. */
static void
update_position (AppMessageRow *self)
{
  int pos = message_position (self);
  gboolean assistant = app_message_get_role (self->message) == APP_ROLE_ASSISTANT;
  gboolean last = pos >= 0 && (guint) pos + 1 == app_chat_get_n_messages (self->chat);

  gtk_widget_set_visible (self->regenerate_button, assistant && last);
  gtk_widget_set_visible (self->edit_button, !assistant);
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->edit_button), "u", (guint32) MAX (pos, 0));
}

static void
image_clicked_cb (GtkButton     *button,
                  AppMessageRow *self)
{
  const char *path = g_object_get_data (G_OBJECT (button), "path");
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));

  gtk_window_present (GTK_WINDOW (app_image_viewer_new (GTK_WINDOW (root), path)));
}

static void
update_images (AppMessageRow *self)
{
  const char * const *images = app_message_get_images (self->message);
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (self->images)))
    gtk_box_remove (GTK_BOX (self->images), child);
  for (guint i = 0; images && images[i]; i++)
    {
      g_autofree char *path = app_chat_store_get_image_path (self->store, images[i]);
      GtkWidget *button = gtk_button_new ();
      GtkWidget *picture = gtk_picture_new ();
      g_autofree char *label = g_strdup_printf (_("Open image %u"), i + 1);

      if (!path)
        continue;
      gtk_picture_set_content_fit (GTK_PICTURE (picture), GTK_CONTENT_FIT_COVER);
      gtk_widget_set_size_request (picture, THUMB, THUMB);
      app_thumbnail_set_picture (GTK_PICTURE (picture), path, 2 * THUMB);
      gtk_button_set_child (GTK_BUTTON (button), picture);
      gtk_widget_add_css_class (button, "image-button");
      gtk_widget_add_css_class (button, "attachment");
      gtk_widget_set_tooltip_text (button, _("Open Image"));
      gtk_accessible_update_property (GTK_ACCESSIBLE (button), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                      label, -1);
      g_object_set_data_full (G_OBJECT (button), "path", g_steal_pointer (&path), g_free);
      g_signal_connect (button, "clicked", G_CALLBACK (image_clicked_cb), self);
      gtk_box_append (GTK_BOX (self->images), button);
    }
  gtk_widget_set_visible (self->images, images && images[0]);
}

static void
copy_clicked_cb (AppMessageRow *self)
{
  if (self->message)
    gdk_clipboard_set_text (gtk_widget_get_clipboard (GTK_WIDGET (self)),
                            app_message_get_text (self->message));
}

AppMessage *
app_message_row_get_message (AppMessageRow *self)
{
  return self->message;
}

void
app_message_row_bind (AppMessageRow *self,
                      AppChat       *chat,
                      AppMessage    *message,
                      const char    *assistant_name)
{
  gboolean assistant;

  g_set_object (&self->chat, chat);
  g_set_object (&self->message, message);
  g_signal_group_set_target (self->message_signals, message);
  g_signal_group_set_target (self->chat_signals, chat ? app_chat_get_messages (chat) : NULL);
  if (!message)
    return;

  assistant = app_message_get_role (message) == APP_ROLE_ASSISTANT;
  gtk_label_set_text (GTK_LABEL (self->author),
                      assistant ? (assistant_name ? assistant_name : _("Sightline")) : _("You"));
  gtk_widget_set_visible (self->user_text, !assistant);
  gtk_widget_set_visible (GTK_WIDGET (self->answer), assistant);
  gtk_widget_remove_css_class (self->box, assistant ? "user" : "assistant");
  gtk_widget_add_css_class (self->box, assistant ? "assistant" : "user");
  update_images (self);
  update_text (self);
  update_state (self);
  update_position (self);
}

/* ------------------------------------------------------------------------------------------
 * GObject
 */

AppMessageRow *
app_message_row_new (AppChatStore *store)
{
  AppMessageRow *self = g_object_new (APP_TYPE_MESSAGE_ROW, NULL);

  self->store = g_object_ref (store);
  return self;
}

static void
app_message_row_dispose (GObject *object)
{
  AppMessageRow *self = APP_MESSAGE_ROW (object);

  if (self->message_signals)
    g_signal_group_set_target (self->message_signals, NULL);
  if (self->chat_signals)
    g_signal_group_set_target (self->chat_signals, NULL);
  g_clear_object (&self->message_signals);
  g_clear_object (&self->chat_signals);
  g_clear_object (&self->message);
  g_clear_object (&self->chat);
  g_clear_object (&self->store);
  g_clear_pointer (&self->box, gtk_widget_unparent);
  G_OBJECT_CLASS (app_message_row_parent_class)->dispose (object);
}

static void
app_message_row_class_init (AppMessageRowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = app_message_row_dispose;
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "messagerow");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_GROUP);
}

static GtkWidget *
icon_button (const char *icon,
             const char *tooltip,
             const char *label)
{
  GtkWidget *b = gtk_button_new_from_icon_name (icon);

  gtk_widget_add_css_class (b, "flat");
  gtk_widget_add_css_class (b, "circular");
  gtk_widget_add_css_class (b, "message-action");
  gtk_widget_set_tooltip_text (b, tooltip);
  gtk_accessible_update_property (GTK_ACCESSIBLE (b), GTK_ACCESSIBLE_PROPERTY_LABEL, label, -1);
  return b;
}

static GtkWidget *
dim_label (const char *css)
{
  GtkWidget *l = gtk_label_new (NULL);

  gtk_label_set_wrap (GTK_LABEL (l), TRUE);
  gtk_label_set_xalign (GTK_LABEL (l), 0);
  gtk_label_set_selectable (GTK_LABEL (l), TRUE);
  gtk_widget_add_css_class (l, css);
  return l;
}

static void
app_message_row_init (AppMessageRow *self)
{
  GtkWidget *header;

  self->box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_add_css_class (self->box, "message");
  gtk_widget_set_parent (self->box, GTK_WIDGET (self));

  header = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 2);
  self->author = gtk_label_new (NULL);
  gtk_widget_add_css_class (self->author, "heading");
  gtk_widget_add_css_class (self->author, "author");
  gtk_widget_set_hexpand (self->author, TRUE);
  gtk_label_set_xalign (GTK_LABEL (self->author), 0);
  gtk_box_append (GTK_BOX (header), self->author);

  self->edit_button = icon_button ("document-edit-symbolic", _("Edit and Resend"),
                                   _("Edit this question and send it again"));
  gtk_actionable_set_action_name (GTK_ACTIONABLE (self->edit_button), "win.edit-message");
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->edit_button), "u", 0);
  gtk_box_append (GTK_BOX (header), self->edit_button);
  self->regenerate_button = icon_button ("view-refresh-symbolic", _("Regenerate"),
                                         _("Write this answer again"));
  gtk_actionable_set_action_name (GTK_ACTIONABLE (self->regenerate_button), "win.regenerate");
  gtk_box_append (GTK_BOX (header), self->regenerate_button);
  self->copy_button = icon_button ("edit-copy-symbolic", _("Copy"), _("Copy this message"));
  g_signal_connect_swapped (self->copy_button, "clicked", G_CALLBACK (copy_clicked_cb), self);
  gtk_box_append (GTK_BOX (header), self->copy_button);
  gtk_box_append (GTK_BOX (self->box), header);

  self->images = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  gtk_box_append (GTK_BOX (self->box), self->images);

  self->user_text = dim_label ("user-text");
  gtk_widget_remove_css_class (self->user_text, "dim-label");
  gtk_label_set_wrap_mode (GTK_LABEL (self->user_text), PANGO_WRAP_WORD_CHAR);
  gtk_box_append (GTK_BOX (self->box), self->user_text);

  self->answer = app_markdown_view_new ();
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->answer));

  self->status_box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  self->spinner = gtk_spinner_new ();
  gtk_box_append (GTK_BOX (self->status_box), self->spinner);
  self->status_label = gtk_label_new (NULL);
  gtk_widget_add_css_class (self->status_label, "dim-label");
  gtk_box_append (GTK_BOX (self->status_box), self->status_label);
  gtk_box_append (GTK_BOX (self->box), self->status_box);

  self->error_label = dim_label ("error");
  gtk_box_append (GTK_BOX (self->box), self->error_label);
  self->note_label = dim_label ("dim-label");
  gtk_widget_add_css_class (self->note_label, "caption");
  gtk_box_append (GTK_BOX (self->box), self->note_label);
  self->stats_label = dim_label ("dim-label");
  gtk_widget_add_css_class (self->stats_label, "caption");
  gtk_box_append (GTK_BOX (self->box), self->stats_label);

  self->message_signals = g_signal_group_new (APP_TYPE_MESSAGE);
  g_signal_group_connect_swapped (self->message_signals, "notify::text",
                                  G_CALLBACK (update_text), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::state",
                                  G_CALLBACK (update_state), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::error",
                                  G_CALLBACK (update_state), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::note",
                                  G_CALLBACK (update_state), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::n-tokens",
                                  G_CALLBACK (update_state), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::images",
                                  G_CALLBACK (update_images), self);
  self->chat_signals = g_signal_group_new (G_TYPE_LIST_MODEL);
  g_signal_group_connect_swapped (self->chat_signals, "items-changed",
                                  G_CALLBACK (update_position), self);
}
