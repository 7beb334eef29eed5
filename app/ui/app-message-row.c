/* app-message-row.c - one message in the conversation view.
 *
 * A row is recycled by the list view: bind() points it at a message and follows that message's
 * notifications, so a streamed answer updates only its own row. The text of an answer is
 * rendered as Markdown (app-markdown-view.c keeps the widgets of unchanged blocks while the
 * answer grows); a question is shown as the person typed it. Buttons act through window
 * actions with the message's position: copy, edit and resend (questions), regenerate
 * (answers), continue (the last answer, when it was stopped, interrupted or cut at the length
 * limit), and the version switcher ("‹ 2 / 3 ›") where an edit or a regeneration left several
 * versions of the message.
 *
 * A grounded answer (with `<|ref|>`/`<|det|>` spans, see app-grounding.h) shows its labels as
 * coloured chips and, below the text, the image its boxes belong to with the boxes drawn:
 * the latest image of the conversation up to the answer, as the official demo does, or the one
 * the person moved them to ("Show Boxes On" in the row's menu, kept in the chat file). Pointing
 * at a chip highlights its boxes; pointing at a box highlights its chip. The menu also shows
 * the raw output and saves or copies the boxes.
 */
#define G_LOG_DOMAIN "sightline-message-row"

#include "app-message-row.h"

#include <adwaita.h>
#include <glib/gi18n.h>

#include "app-grounding.h"
#include "app-grounding-view.h"
#include "app-image-tile.h"
#include "app-image-viewer.h"
#include "app-markdown-view.h"
#include "app-thumbnail.h"
#include "app-wrap-box.h"

/* A question's images: this high, as wide as their shape asks up to twice that, in rows */
#define THUMB 160
/* The image under an answer's boxes: its height in the conversation, the size it is decoded at */
#define BOXES_HEIGHT 360
#define BOXES_DECODE 1600

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
  GtkWidget *versions;
  GtkWidget *previous_version;
  GtkWidget *version_label;
  GtkWidget *next_version;
  GtkWidget *menu_button;
  GtkWidget *images;
  GtkWidget *badge;
  GtkWidget *badge_label;
  GtkWidget *badge_icon;
  GtkWidget *user_text;
  AppMarkdownView *answer;
  GtkWidget *raw_text;
  AppGroundingView *boxes;
  GSimpleActionGroup *actions;
  GMenu *boxes_images_menu;
  char *boxes_image;     /* the image id the boxes are drawn on, or NULL */
  char *boxes_path;      /* its file */
  int active_chip;       /* the chip whose boxes are under the pointer, -1 for none */
  gboolean has_boxes;
  gboolean has_tags;
  GtkWidget *status_box;
  GtkWidget *progress;
  GtkWidget *status_label;
  GtkWidget *continue_button;
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

static void update_boxes (AppMessageRow *self);

static gboolean
is_streaming (AppMessageRow *self)
{
  AppMessageState state = app_message_get_state (self->message);

  return state == APP_MESSAGE_STREAMING || state == APP_MESSAGE_PENDING;
}

static gboolean
showing_raw (AppMessageRow *self)
{
  g_autoptr(GVariant) state = g_action_group_get_action_state (G_ACTION_GROUP (self->actions),
                                                               "show-raw");

  return g_variant_get_boolean (state);
}

/* A question made with the composer's grounding helpers shows as its text with a badge. */
static void
update_question (AppMessageRow *self,
                 const char    *text)
{
  g_autoptr(AppGrounding) g = app_grounding_parse (text, FALSE);
  g_autofree char *plain = app_grounding_plain_text (text);

  gtk_label_set_text (GTK_LABEL (self->user_text), plain);
  gtk_widget_set_visible (self->badge, g->grounding || g->refs->len > 0);
  gtk_label_set_text (GTK_LABEL (self->badge_label),
                      g->grounding ? _("Grounded Caption") : _("Find in Image"));
  gtk_image_set_from_icon_name (GTK_IMAGE (self->badge_icon),
                                g->grounding ? "media-view-subtitles-symbolic"
                                             : "find-location-symbolic");
}

static void
update_answer (AppMessageRow *self,
               const char    *text)
{
  gboolean streaming = is_streaming (self);
  g_autoptr(AppGrounding) g = app_grounding_parse (text, streaming);
  g_autofree char *markdown = NULL;

  if (self->active_chip >= (int) g->refs->len)
    self->active_chip = -1;
  markdown = app_grounding_markdown (g, self->active_chip);
  app_markdown_view_set_text (self->answer, markdown);
  gtk_label_set_text (GTK_LABEL (self->raw_text), text);
  app_grounding_view_set_answer (self->boxes, text, streaming);
  self->has_boxes = g->n_boxes > 0;
  self->has_tags = g->refs->len > 0 || g->grounding || app_grounding_has_tags (text);
  update_boxes (self);
}

static void
update_text (AppMessageRow *self)
{
  const char *text = app_message_get_text (self->message);

  if (app_message_get_role (self->message) == APP_ROLE_USER)
    update_question (self, text);
  else
    update_answer (self, text);
}

/* Continue is offered where the answer can go on: after a stop, an interruption or the length
 * limit, on the last message of the conversation (the rest was asked after it). */
static void
update_continue (AppMessageRow *self)
{
  AppMessageState state = app_message_get_state (self->message);
  int pos = message_position (self);
  gboolean last = pos >= 0 && (guint) pos + 1 == app_chat_get_n_messages (self->chat);
  gboolean cut = state == APP_MESSAGE_STOPPED || state == APP_MESSAGE_INTERRUPTED ||
                 (state == APP_MESSAGE_COMPLETE &&
                  app_message_get_finish_reason (self->message) == APP_FINISH_LENGTH);

  gtk_widget_set_visible (self->continue_button,
                          app_message_get_role (self->message) == APP_ROLE_ASSISTANT && cut &&
                            last);
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->continue_button), "u",
                                    (guint32) MAX (pos, 0));
}

/* While the model reads the question: how far, and what (the engine's "Reading image 2 of 3,
 * tile 4 of 7"), until it starts to answer. */
static void
update_progress (AppMessageRow *self)
{
  const char *text = app_message_get_progress_text (self->message);

  if (!text)
    {
      g_autoptr(AppMessage) question = NULL;
      int pos = message_position (self);
      gboolean images = FALSE;

      if (pos > 0)
        {
          question = app_chat_get_message (self->chat, (guint) pos - 1);
          images = app_message_get_images (question) && app_message_get_images (question)[0];
        }
      text = images ? _("Looking at the images…") : _("Reading…");
    }
  gtk_progress_bar_set_text (GTK_PROGRESS_BAR (self->progress), text);
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->progress),
                                 app_message_get_progress (self->message));
}

static void
update_state (AppMessageRow *self)
{
  AppMessageState state = app_message_get_state (self->message);
  const char *error = app_message_get_error (self->message);
  const char *note = app_message_get_note (self->message);
  gboolean assistant = app_message_get_role (self->message) == APP_ROLE_ASSISTANT;
  guint n_tokens = app_message_get_n_tokens (self->message);
  AppFinishReason finish = app_message_get_finish_reason (self->message);
  const char *status = NULL;

  gtk_widget_set_visible (self->progress, state == APP_MESSAGE_PENDING);
  if (state == APP_MESSAGE_PENDING)
    {
      update_progress (self);
    }
  else if (state == APP_MESSAGE_STOPPED)
    {
      status = _("Stopped");
    }
  else if (state == APP_MESSAGE_INTERRUPTED)
    {
      /* the app closed, quit or crashed while it wrote this */
      status = _("Interrupted");
    }
  else if (state == APP_MESSAGE_COMPLETE && finish == APP_FINISH_LENGTH)
    {
      status = _("Stopped at the length limit");
    }
  else if (state == APP_MESSAGE_COMPLETE && finish == APP_FINISH_CONTEXT)
    {
      status = _("Stopped: the conversation fills the model’s context");
    }
  gtk_widget_set_visible (self->status_box, state == APP_MESSAGE_PENDING || status != NULL);
  gtk_widget_set_visible (self->status_label, status != NULL);
  gtk_label_set_text (GTK_LABEL (self->status_label), status ? status : "");
  update_continue (self);

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
  /* a finished answer is parsed as finished: no tail hidden as a tag in the making */
  if (assistant)
    update_text (self);
}

/* "‹ 2 / 3 ›": which version of its place the message is, and the way to the others. */
static void
update_versions (AppMessageRow *self,
                 guint          pos,
                 guint          version,
                 guint          n_versions)
{
  g_autofree char *label = g_strdup_printf (_("%u / %u"), version + 1, n_versions);
  g_autofree char *description = g_strdup_printf (_("Version %u of %u"), version + 1,
                                                  n_versions);

  gtk_widget_set_visible (self->versions, n_versions > 1);
  gtk_label_set_text (GTK_LABEL (self->version_label), label);
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->version_label),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, description, -1);
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->previous_version), "(uu)", pos,
                                    version > 0 ? version - 1 : 0);
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->next_version), "(uu)", pos,
                                    MIN (version + 1, n_versions > 0 ? n_versions - 1 : 0));
  gtk_widget_set_sensitive (self->previous_version, version > 0);
  gtk_widget_set_sensitive (self->next_version, version + 1 < n_versions);
}

/* Any question can be edited and any answer written again: each adds a version. */
static void
update_position (AppMessageRow *self)
{
  int pos = message_position (self);
  gboolean assistant = app_message_get_role (self->message) == APP_ROLE_ASSISTANT;
  guint n_versions = pos >= 0 ? app_chat_get_n_versions (self->chat, (guint) pos) : 0;
  guint version = pos >= 0 ? app_chat_get_version (self->chat, (guint) pos) : 0;

  gtk_widget_set_visible (self->regenerate_button, assistant && pos >= 0);
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->regenerate_button), "u",
                                    (guint32) MAX (pos, 0));
  gtk_widget_set_visible (self->edit_button, !assistant);
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->edit_button), "u", (guint32) MAX (pos, 0));
  update_versions (self, MAX (pos, 0), version, n_versions);
  update_continue (self);
  if (assistant)
    update_boxes (self);
}

/* ------------------------------------------------------------------------------------------
 * Boxes
 */

/* Every image of the chat, in order, without repeats. */
static GPtrArray *
chat_images (AppMessageRow *self,
             guint          until)
{
  GPtrArray *ids = g_ptr_array_new_with_free_func (g_free);
  guint n = self->chat ? MIN (until, app_chat_get_n_messages (self->chat)) : 0;

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(AppMessage) m = app_chat_get_message (self->chat, i);
      const char * const *images = app_message_get_images (m);

      for (guint k = 0; images && images[k]; k++)
        if (!g_ptr_array_find_with_equal_func (ids, images[k], g_str_equal, NULL))
          g_ptr_array_add (ids, g_strdup (images[k]));
    }
  return ids;
}

/* The image the boxes go on: the one the person chose, if it is still in the chat, else the
 * latest image before the answer. */
static char *
boxes_target (AppMessageRow *self)
{
  const char *chosen = app_message_get_boxes_image (self->message);
  int pos = message_position (self);
  g_autoptr(GPtrArray) all = NULL;

  if (pos < 0)
    return NULL;
  if (chosen)
    {
      all = chat_images (self, G_MAXUINT);
      if (g_ptr_array_find_with_equal_func (all, chosen, g_str_equal, NULL))
        return g_strdup (chosen);
    }
  for (int i = pos - 1; i >= 0; i--)
    {
      g_autoptr(AppMessage) m = app_chat_get_message (self->chat, (guint) i);
      const char * const *images = app_message_get_images (m);
      guint n = images ? g_strv_length ((char **) images) : 0;

      if (n > 0)
        return g_strdup (images[n - 1]);
    }
  return NULL;
}

typedef struct
{
  AppMessageRow *row;
  char *path;
} BoxesLoad;

static void
boxes_loaded_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  BoxesLoad *load = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) texture = app_thumbnail_load_finish (result, &error);

  /* the row may have moved on to another image, or another message, meanwhile */
  if (g_strcmp0 (load->row->boxes_path, load->path) == 0)
    {
      app_grounding_view_set_texture (load->row->boxes, texture);
      if (!texture)
        gtk_widget_set_tooltip_text (GTK_WIDGET (load->row->boxes), error->message);
      update_boxes (load->row);
    }
  g_object_unref (load->row);
  g_free (load->path);
  g_free (load);
}

/* The "Show Boxes On" submenu: one entry per image of the chat. */
static void
update_boxes_menu (AppMessageRow *self)
{
  g_autoptr(GPtrArray) all = chat_images (self, G_MAXUINT);

  g_menu_remove_all (self->boxes_images_menu);
  for (guint i = 0; i < all->len; i++)
    {
      g_autofree char *label = g_strdup_printf (_("Image %u"), i + 1);
      g_autoptr(GMenuItem) item = g_menu_item_new (label, NULL);

      g_menu_item_set_action_and_target_value (item, "row.boxes-image",
                                               g_variant_new_string (g_ptr_array_index (all, i)));
      g_menu_append_item (self->boxes_images_menu, item);
    }
}

static void
update_boxes (AppMessageRow *self)
{
  g_autofree char *target = NULL;
  gboolean raw;

  if (!self->message || app_message_get_role (self->message) != APP_ROLE_ASSISTANT)
    return;
  target = self->has_boxes ? boxes_target (self) : NULL;
  if (g_strcmp0 (target, self->boxes_image) != 0)
    {
      g_free (self->boxes_image);
      g_free (self->boxes_path);
      self->boxes_image = g_strdup (target);
      self->boxes_path = target ? app_chat_store_get_image_path (self->store, target) : NULL;
      app_grounding_view_set_texture (self->boxes, NULL);
      gtk_widget_set_tooltip_text (GTK_WIDGET (self->boxes), NULL);
      if (self->boxes_path)
        {
          BoxesLoad *load = g_new0 (BoxesLoad, 1);

          load->row = g_object_ref (self);
          load->path = g_strdup (self->boxes_path);
          app_thumbnail_load_async (self->boxes_path, BOXES_DECODE, NULL, boxes_loaded_cb, load);
        }
      update_boxes_menu (self);
      g_simple_action_set_state (G_SIMPLE_ACTION (g_action_map_lookup_action (
                                   G_ACTION_MAP (self->actions), "boxes-image")),
                                 g_variant_new_string (target ? target : ""));
    }

  raw = showing_raw (self);
  gtk_widget_set_visible (GTK_WIDGET (self->answer), !raw);
  gtk_widget_set_visible (self->raw_text, raw);
  gtk_widget_set_visible (GTK_WIDGET (self->boxes), self->has_boxes && self->boxes_path &&
                                                      app_grounding_view_get_texture (self->boxes));
  gtk_widget_set_visible (self->menu_button, self->has_tags);
  g_simple_action_set_enabled (G_SIMPLE_ACTION (g_action_map_lookup_action (
                                 G_ACTION_MAP (self->actions), "save-boxes")),
                               self->has_boxes && self->boxes_path && !is_streaming (self));
  g_simple_action_set_enabled (G_SIMPLE_ACTION (g_action_map_lookup_action (
                                 G_ACTION_MAP (self->actions), "copy-boxes")),
                               self->has_boxes && self->boxes_path && !is_streaming (self));
}

static void
open_boxes (AppMessageRow *self,
            int            highlight)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  AppImageViewer *viewer;

  if (!self->boxes_path)
    return;
  viewer = app_image_viewer_new (GTK_WINDOW (root), self->boxes_path);
  app_image_viewer_set_answer (viewer, app_message_get_text (self->message), highlight);
  gtk_window_present (GTK_WINDOW (viewer));
}

static void
boxes_pressed_cb (GtkGestureClick *gesture,
                  int              n_press,
                  double           x,
                  double           y,
                  AppMessageRow   *self)
{
  open_boxes (self, -1);
}

/* The image with the boxes opens large from the keyboard too. */
static gboolean
boxes_key_cb (GtkEventControllerKey *keys,
              guint                  keyval,
              guint                  keycode,
              GdkModifierType        state,
              AppMessageRow         *self)
{
  if (keyval != GDK_KEY_Return && keyval != GDK_KEY_KP_Enter && keyval != GDK_KEY_ISO_Enter &&
      keyval != GDK_KEY_space && keyval != GDK_KEY_KP_Space)
    return FALSE;
  open_boxes (self, -1);
  return TRUE;
}

static void
chip_hovered_cb (AppMessageRow *self,
                 int            chip)
{
  app_grounding_view_set_highlight (self->boxes, chip);
}

static void
chip_activated_cb (AppMessageRow *self,
                   int            chip)
{
  open_boxes (self, chip);
}

/* Pointing at a box: its chip in the text stands out. */
static void
box_hovered_cb (AppMessageRow *self,
                int            ref)
{
  if (self->active_chip == ref)
    return;
  self->active_chip = ref;
  update_text (self);
}

static void
show_raw_cb (GSimpleAction *action,
             GVariant      *state,
             gpointer       user_data)
{
  AppMessageRow *self = user_data;

  g_simple_action_set_state (action, state);
  update_boxes (self);
}

static void
boxes_image_cb (GSimpleAction *action,
                GVariant      *target,
                gpointer       user_data)
{
  AppMessageRow *self = user_data;

  if (!self->message)
    return;
  app_message_set_boxes_image (self->message, g_variant_get_string (target, NULL));
  /* the choice is kept in the chat file */
  gtk_widget_activate_action (GTK_WIDGET (self), "win.save-current", NULL);
}

static void
export_cb (GSimpleAction *action,
           GVariant      *param,
           gpointer       user_data)
{
  AppMessageRow *self = user_data;

  if (!self->message || !self->boxes_path)
    return;
  if (g_str_equal (g_action_get_name (G_ACTION (action)), "copy-boxes"))
    app_grounding_copy_boxes (GTK_WIDGET (self), self->boxes_path,
                              app_message_get_text (self->message));
  else
    app_grounding_save_image (GTK_WIDGET (self), self->boxes_path,
                              app_message_get_text (self->message));
}

static void
image_clicked_cb (AppImageTile  *tile,
                  AppMessageRow *self)
{
  const char *path = app_image_tile_get_path (tile);
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));

  gtk_window_present (GTK_WINDOW (app_image_viewer_new (GTK_WINDOW (root), path)));
}

/* ------------------------------------------------------------------------------------------
 * An image whose file is gone: removed from the question, or replaced by another file
 */

static void
image_saved_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!app_chat_store_save_finish (APP_CHAT_STORE (source), result, &error))
    g_warning ("the chat could not be saved: %s", error->message);
}

/* The message's images with the one at `index` (still `old_id`) replaced, or removed when
 * `new_id` is NULL; FALSE when the message changed meanwhile. */
static gboolean
change_image (AppChatStore *store,
              AppChat      *chat,
              AppMessage   *message,
              guint         index,
              const char   *old_id,
              const char   *new_id)
{
  const char * const *images = app_message_get_images (message);
  g_autoptr(GPtrArray) changed = g_ptr_array_new ();

  if (index >= g_strv_length ((char **) images) || g_strcmp0 (images[index], old_id) != 0)
    return FALSE;
  for (guint i = 0; images[i]; i++)
    {
      if (i != index)
        g_ptr_array_add (changed, (gpointer) images[i]);
      else if (new_id)
        g_ptr_array_add (changed, (gpointer) new_id);
    }
  g_ptr_array_add (changed, NULL);
  app_message_set_images (message, (const char * const *) changed->pdata);
  app_chat_store_save_async (store, chat, APP_CHAT_STORE_SAVE_DEFAULT, NULL, image_saved_cb,
                             NULL);
  return TRUE;
}

static void
image_remove_cb (AppImageTile  *tile,
                 AppMessageRow *self)
{
  guint index = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (tile), "index"));
  const char *id = g_object_get_data (G_OBJECT (tile), "image-id");

  if (self->message && self->chat)
    change_image (self->store, self->chat, self->message, index, id, NULL);
}

typedef struct
{
  AppChatStore *store;
  AppChat *chat;
  AppMessage *message;
  GtkWindow *parent;
  guint index;
  char *old_id;
} Replacement;

static void
replacement_free (Replacement *r)
{
  g_object_unref (r->store);
  g_object_unref (r->chat);
  g_object_unref (r->message);
  g_clear_object (&r->parent);
  g_free (r->old_id);
  g_free (r);
}

static void
replacement_imported_cb (GObject      *source,
                         GAsyncResult *result,
                         gpointer      user_data)
{
  Replacement *r = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *id = app_image_import_finish (result, &error);

  if (id)
    {
      change_image (r->store, r->chat, r->message, r->index, r->old_id, id);
      app_chat_store_release_image (r->store, id);
    }
  else
    {
      AdwMessageDialog *dialog =
        ADW_MESSAGE_DIALOG (adw_message_dialog_new (r->parent, _("The Image Cannot Be Used"),
                                                    error->message));

      adw_message_dialog_add_response (dialog, "close", _("_Close"));
      gtk_window_present (GTK_WINDOW (dialog));
    }
  replacement_free (r);
}

static void
replacement_chosen_cb (GtkNativeDialog *chooser,
                       int              response,
                       Replacement     *r)
{
  g_autoptr(GFile) file = NULL;

  if (response == GTK_RESPONSE_ACCEPT)
    file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (chooser));
  g_object_unref (chooser);
  if (!file)
    {
      replacement_free (r);
      return;
    }
  app_image_import_async (r->store, file, NULL, replacement_imported_cb, r);
}

static void
image_replace_cb (AppImageTile  *tile,
                  AppMessageRow *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  g_autoptr(GtkFileFilter) filter = gtk_file_filter_new ();
  GtkFileChooserNative *chooser;
  Replacement *r;

  if (!self->message || !self->chat)
    return;
  r = g_new0 (Replacement, 1);
  r->store = g_object_ref (self->store);
  r->chat = g_object_ref (self->chat);
  r->message = g_object_ref (self->message);
  r->parent = GTK_IS_WINDOW (root) ? g_object_ref (GTK_WINDOW (root)) : NULL;
  r->index = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (tile), "index"));
  r->old_id = g_strdup (g_object_get_data (G_OBJECT (tile), "image-id"));

  chooser = gtk_file_chooser_native_new (_("Replace the Missing Image"), r->parent,
                                         GTK_FILE_CHOOSER_ACTION_OPEN, _("_Replace"),
                                         _("_Cancel"));
  gtk_file_filter_set_name (filter, _("Images"));
  gtk_file_filter_add_pixbuf_formats (filter);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), filter);
  g_signal_connect (chooser, "response", G_CALLBACK (replacement_chosen_cb), r);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

static void
update_images (AppMessageRow *self)
{
  const char * const *images = app_message_get_images (self->message);

  app_wrap_box_remove_all (APP_WRAP_BOX (self->images));
  for (guint i = 0; images && images[i]; i++)
    {
      g_autofree char *path = app_chat_store_get_image_path (self->store, images[i]);
      g_autofree char *label = g_strdup_printf (_("Open image %u"), i + 1);
      AppImageTile *tile;

      if (!path)
        continue;
      tile = app_image_tile_new (path, THUMB);
      app_image_tile_set_label (tile, label);
      g_object_set_data (G_OBJECT (tile), "index", GUINT_TO_POINTER (i));
      g_object_set_data_full (G_OBJECT (tile), "image-id", g_strdup (images[i]), g_free);
      g_signal_connect (tile, "open", G_CALLBACK (image_clicked_cb), self);
      g_signal_connect (tile, "remove", G_CALLBACK (image_remove_cb), self);
      g_signal_connect (tile, "replace", G_CALLBACK (image_replace_cb), self);
      app_wrap_box_append (APP_WRAP_BOX (self->images), GTK_WIDGET (tile));
    }
  gtk_widget_set_visible (self->images, images && images[0]);
}

#define DATA_COPIED_TOAST "app-copied-toast"

static void
copied_dismissed_cb (AdwToast  *toast,
                     GtkWidget *overlay)
{
  if (g_object_get_data (G_OBJECT (overlay), DATA_COPIED_TOAST) == toast)
    g_object_set_data (G_OBJECT (overlay), DATA_COPIED_TOAST, NULL);
}

/* Copying says so in a toast, one at a time: a second copy replaces the first toast instead of
 * queueing behind it. */
static void
copy_clicked_cb (AppMessageRow *self)
{
  GtkWidget *overlay = gtk_widget_get_ancestor (GTK_WIDGET (self), ADW_TYPE_TOAST_OVERLAY);
  AdwToast *previous, *toast;

  if (!self->message)
    return;
  gdk_clipboard_set_text (gtk_widget_get_clipboard (GTK_WIDGET (self)),
                          app_message_get_text (self->message));
  if (!overlay)
    return;
  previous = g_object_get_data (G_OBJECT (overlay), DATA_COPIED_TOAST);
  if (previous)
    adw_toast_dismiss (previous);
  toast = adw_toast_new (_("Message copied"));
  adw_toast_set_timeout (toast, 2);
  g_object_set_data (G_OBJECT (overlay), DATA_COPIED_TOAST, toast);
  g_signal_connect (toast, "dismissed", G_CALLBACK (copied_dismissed_cb), overlay);
  adw_toast_overlay_add_toast (ADW_TOAST_OVERLAY (overlay), toast);
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
  self->active_chip = -1;
  self->has_boxes = self->has_tags = FALSE;
  g_clear_pointer (&self->boxes_image, g_free);
  g_clear_pointer (&self->boxes_path, g_free);
  app_grounding_view_set_texture (self->boxes, NULL);
  app_grounding_view_set_highlight (self->boxes, -1);
  g_simple_action_set_state (G_SIMPLE_ACTION (g_action_map_lookup_action (
                               G_ACTION_MAP (self->actions), "show-raw")),
                             g_variant_new_boolean (FALSE));
  g_signal_group_set_target (self->message_signals, message);
  g_signal_group_set_target (self->chat_signals, chat ? app_chat_get_messages (chat) : NULL);
  if (!message)
    return;

  assistant = app_message_get_role (message) == APP_ROLE_ASSISTANT;
  gtk_label_set_text (GTK_LABEL (self->author),
                      assistant ? (assistant_name ? assistant_name : _("Sightline")) : _("You"));
  gtk_widget_set_visible (self->user_text, !assistant);
  gtk_widget_set_visible (GTK_WIDGET (self->answer), assistant);
  gtk_widget_set_visible (self->raw_text, FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self->boxes), FALSE);
  gtk_widget_set_visible (self->menu_button, FALSE);
  gtk_widget_set_visible (self->badge, FALSE);
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
  g_clear_object (&self->actions);
  g_clear_object (&self->boxes_images_menu);
  g_clear_pointer (&self->boxes_image, g_free);
  g_clear_pointer (&self->boxes_path, g_free);
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
  /* a button that took the focus would have the list scroll its row into view */
  gtk_widget_set_focus_on_click (b, FALSE);
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

static const GActionEntry row_actions[] = {
  { "show-raw", NULL, NULL, "false", show_raw_cb },
  { "boxes-image", boxes_image_cb, "s", "''", NULL },
  { "save-boxes", export_cb, NULL, NULL, NULL },
  { "copy-boxes", export_cb, NULL, NULL, NULL },
};

static void
app_message_row_init (AppMessageRow *self)
{
  GtkWidget *header;
  GtkGesture *click;
  GtkEventController *keys;
  g_autoptr(GMenu) menu = g_menu_new ();
  g_autoptr(GMenu) exports = g_menu_new ();

  self->active_chip = -1;
  self->actions = g_simple_action_group_new ();
  g_action_map_add_action_entries (G_ACTION_MAP (self->actions), row_actions,
                                   G_N_ELEMENTS (row_actions), self);
  gtk_widget_insert_action_group (GTK_WIDGET (self), "row", G_ACTION_GROUP (self->actions));
  self->boxes_images_menu = g_menu_new ();
  g_menu_append (menu, _("Show _Raw Output"), "row.show-raw");
  g_menu_append_submenu (menu, _("Show Boxes _On"), G_MENU_MODEL (self->boxes_images_menu));
  g_menu_append (exports, _("_Save Image with Boxes…"), "row.save-boxes");
  g_menu_append (exports, _("_Copy Boxes as JSON"), "row.copy-boxes");
  g_menu_append_section (menu, NULL, G_MENU_MODEL (exports));

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

  self->versions = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 0);
  gtk_widget_add_css_class (self->versions, "version-switcher");
  self->previous_version = icon_button ("go-previous-symbolic", _("Previous Version"),
                                        _("Show the previous version"));
  gtk_actionable_set_action_name (GTK_ACTIONABLE (self->previous_version), "win.show-version");
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->previous_version), "(uu)", 0, 0);
  gtk_box_append (GTK_BOX (self->versions), self->previous_version);
  self->version_label = gtk_label_new (NULL);
  gtk_widget_add_css_class (self->version_label, "caption");
  gtk_widget_add_css_class (self->version_label, "numeric");
  gtk_box_append (GTK_BOX (self->versions), self->version_label);
  self->next_version = icon_button ("go-next-symbolic", _("Next Version"),
                                    _("Show the next version"));
  gtk_actionable_set_action_name (GTK_ACTIONABLE (self->next_version), "win.show-version");
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->next_version), "(uu)", 0, 0);
  gtk_box_append (GTK_BOX (self->versions), self->next_version);
  gtk_widget_set_visible (self->versions, FALSE);
  gtk_box_append (GTK_BOX (header), self->versions);

  self->edit_button = icon_button ("document-edit-symbolic", _("Edit and Resend"),
                                   _("Edit this question and send it again"));
  gtk_actionable_set_action_name (GTK_ACTIONABLE (self->edit_button), "win.edit-message");
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->edit_button), "u", 0);
  gtk_box_append (GTK_BOX (header), self->edit_button);
  self->regenerate_button = icon_button ("view-refresh-symbolic", _("Regenerate"),
                                         _("Write this answer again"));
  gtk_actionable_set_action_name (GTK_ACTIONABLE (self->regenerate_button), "win.regenerate");
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->regenerate_button), "u", 0);
  gtk_box_append (GTK_BOX (header), self->regenerate_button);
  self->copy_button = icon_button ("edit-copy-symbolic", _("Copy"), _("Copy this message"));
  g_signal_connect_swapped (self->copy_button, "clicked", G_CALLBACK (copy_clicked_cb), self);
  gtk_box_append (GTK_BOX (header), self->copy_button);
  self->menu_button = gtk_menu_button_new ();
  gtk_menu_button_set_icon_name (GTK_MENU_BUTTON (self->menu_button), "view-more-symbolic");
  gtk_menu_button_set_menu_model (GTK_MENU_BUTTON (self->menu_button), G_MENU_MODEL (menu));
  gtk_widget_add_css_class (self->menu_button, "flat");
  gtk_widget_add_css_class (self->menu_button, "circular");
  gtk_widget_add_css_class (self->menu_button, "message-action");
  gtk_widget_set_tooltip_text (self->menu_button, _("Boxes and Raw Output"));
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->menu_button),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, _("Boxes and raw output"), -1);
  gtk_box_append (GTK_BOX (header), self->menu_button);
  gtk_box_append (GTK_BOX (self->box), header);

  self->images = app_wrap_box_new (6);
  gtk_box_append (GTK_BOX (self->box), self->images);

  self->badge = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 4);
  gtk_widget_add_css_class (self->badge, "grounding-badge");
  gtk_widget_set_halign (self->badge, GTK_ALIGN_START);
  self->badge_icon = gtk_image_new ();
  gtk_box_append (GTK_BOX (self->badge), self->badge_icon);
  self->badge_label = gtk_label_new (NULL);
  gtk_box_append (GTK_BOX (self->badge), self->badge_label);
  gtk_box_append (GTK_BOX (self->box), self->badge);

  self->user_text = dim_label ("user-text");
  gtk_widget_remove_css_class (self->user_text, "dim-label");
  gtk_label_set_wrap_mode (GTK_LABEL (self->user_text), PANGO_WRAP_WORD_CHAR);
  gtk_box_append (GTK_BOX (self->box), self->user_text);

  self->answer = app_markdown_view_new ();
  g_signal_connect_swapped (self->answer, "chip-hovered", G_CALLBACK (chip_hovered_cb), self);
  g_signal_connect_swapped (self->answer, "chip-activated", G_CALLBACK (chip_activated_cb), self);
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->answer));

  self->raw_text = dim_label ("raw-output");
  gtk_widget_remove_css_class (self->raw_text, "dim-label");
  gtk_label_set_wrap_mode (GTK_LABEL (self->raw_text), PANGO_WRAP_WORD_CHAR);
  gtk_widget_add_css_class (self->raw_text, "monospace");
  gtk_box_append (GTK_BOX (self->box), self->raw_text);

  self->boxes = app_grounding_view_new ();
  app_grounding_view_set_natural_height (self->boxes, BOXES_HEIGHT);
  gtk_widget_set_halign (GTK_WIDGET (self->boxes), GTK_ALIGN_START);
  gtk_widget_add_css_class (GTK_WIDGET (self->boxes), "boxes");
  gtk_widget_set_cursor_from_name (GTK_WIDGET (self->boxes), "zoom-in");
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->boxes), NULL);
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->boxes), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _("The image with the answer’s boxes"), -1);
  g_signal_connect_swapped (self->boxes, "ref-hovered", G_CALLBACK (box_hovered_cb), self);
  click = gtk_gesture_click_new ();
  g_signal_connect (click, "released", G_CALLBACK (boxes_pressed_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self->boxes), GTK_EVENT_CONTROLLER (click));
  keys = gtk_event_controller_key_new ();
  g_signal_connect (keys, "key-pressed", G_CALLBACK (boxes_key_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self->boxes), keys);
  gtk_widget_set_focusable (GTK_WIDGET (self->boxes), TRUE);
  gtk_box_append (GTK_BOX (self->box), GTK_WIDGET (self->boxes));

  self->status_box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  self->progress = gtk_progress_bar_new ();
  gtk_progress_bar_set_show_text (GTK_PROGRESS_BAR (self->progress), TRUE);
  gtk_widget_set_hexpand (self->progress, TRUE);
  gtk_widget_add_css_class (self->progress, "reading");
  gtk_box_append (GTK_BOX (self->status_box), self->progress);
  self->status_label = gtk_label_new (NULL);
  gtk_widget_add_css_class (self->status_label, "dim-label");
  gtk_box_append (GTK_BOX (self->status_box), self->status_label);
  self->continue_button = gtk_button_new_with_mnemonic (_("_Continue"));
  gtk_widget_add_css_class (self->continue_button, "continue");
  gtk_widget_set_tooltip_text (self->continue_button, _("Go on writing this answer"));
  gtk_actionable_set_action_name (GTK_ACTIONABLE (self->continue_button), "win.continue");
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->continue_button), "u", 0);
  gtk_box_append (GTK_BOX (self->status_box), self->continue_button);
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
  g_signal_group_connect_swapped (self->message_signals, "notify::finish-reason",
                                  G_CALLBACK (update_state), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::note",
                                  G_CALLBACK (update_state), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::n-tokens",
                                  G_CALLBACK (update_state), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::images",
                                  G_CALLBACK (update_images), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::boxes-image",
                                  G_CALLBACK (update_boxes), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::progress",
                                  G_CALLBACK (update_progress), self);
  g_signal_group_connect_swapped (self->message_signals, "notify::progress-text",
                                  G_CALLBACK (update_progress), self);
  self->chat_signals = g_signal_group_new (G_TYPE_LIST_MODEL);
  g_signal_group_connect_swapped (self->chat_signals, "items-changed",
                                  G_CALLBACK (update_position), self);
  gtk_widget_set_visible (self->raw_text, FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self->boxes), FALSE);
  gtk_widget_set_visible (self->menu_button, FALSE);
  gtk_widget_set_visible (self->badge, FALSE);
}
