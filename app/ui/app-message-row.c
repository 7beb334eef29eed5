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
 *
 * The widgets are in app-message-row.ui; the images, the menu's "Show Boxes On" entries and
 * everything that depends on the message are made or set here. The row's "message", "chat" and
 * "assistant-name" properties are set together by bind(), its "store" once at construction.
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

  /* template */
  GtkWidget *box;
  GtkWidget *author;
  GtkWidget *versions;
  GtkWidget *previous_version;
  GtkWidget *version_label;
  GtkWidget *next_version;
  GtkWidget *edit_button;
  GtkWidget *regenerate_button;
  GtkWidget *copy_button;
  GtkWidget *menu_button;
  GMenu *boxes_images_menu;
  GtkWidget *images;
  GtkWidget *badge;
  GtkWidget *badge_icon;
  GtkWidget *badge_label;
  GtkWidget *user_text;
  AppMarkdownView *answer;
  GtkWidget *raw_text;
  AppGroundingView *boxes;
  GtkWidget *status_box;
  GtkWidget *progress;
  GtkWidget *status_label;
  GtkWidget *continue_button;
  GtkWidget *error_label;
  GtkWidget *note_label;
  GtkWidget *stats_label;

  /* properties */
  AppChatStore *store;
  AppChat *chat;
  AppMessage *message;
  char *assistant_name;

  GSignalGroup *message_signals;
  GSignalGroup *chat_signals;
  GSimpleActionGroup *actions;
  char *boxes_image;     /* the image id the boxes are drawn on, or NULL */
  char *boxes_path;      /* its file */
  int active_chip;       /* the chip whose boxes are under the pointer, -1 for none */
  gboolean has_boxes;
  gboolean has_tags;
};

G_DEFINE_FINAL_TYPE (AppMessageRow, app_message_row, GTK_TYPE_WIDGET)

enum
{
  PROP_0,
  PROP_STORE,
  PROP_CHAT,
  PROP_MESSAGE,
  PROP_ASSISTANT_NAME,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

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

/* ------------------------------------------------------------------------------------------
 * Properties
 */

/* Everything the row shows comes from its message: set again from scratch, as the list view
 * hands the row from one message to another. */
static void
show_message (AppMessageRow *self)
{
  AppMessage *message = self->message;
  gboolean assistant;

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
  g_signal_group_set_target (self->chat_signals,
                             self->chat ? app_chat_get_messages (self->chat) : NULL);
  if (!message)
    return;

  assistant = app_message_get_role (message) == APP_ROLE_ASSISTANT;
  gtk_label_set_text (GTK_LABEL (self->author),
                      assistant ? (self->assistant_name ? self->assistant_name : _("Sightline"))
                                : _("You"));
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

AppChatStore *
app_message_row_get_store (AppMessageRow *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE_ROW (self), NULL);

  return self->store;
}

AppChat *
app_message_row_get_chat (AppMessageRow *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE_ROW (self), NULL);

  return self->chat;
}

AppMessage *
app_message_row_get_message (AppMessageRow *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE_ROW (self), NULL);

  return self->message;
}

const char *
app_message_row_get_assistant_name (AppMessageRow *self)
{
  g_return_val_if_fail (APP_IS_MESSAGE_ROW (self), NULL);

  return self->assistant_name;
}

/* The setter of "chat", "message" and "assistant-name" at once: they only make sense together.
 * The row is shown again even when nothing changed, as it was when the list view bound it. */
void
app_message_row_bind (AppMessageRow *self,
                      AppChat       *chat,
                      AppMessage    *message,
                      const char    *assistant_name)
{
  g_return_if_fail (APP_IS_MESSAGE_ROW (self));
  g_return_if_fail (!chat || APP_IS_CHAT (chat));
  g_return_if_fail (!message || APP_IS_MESSAGE (message));

  g_object_freeze_notify (G_OBJECT (self));
  if (g_set_object (&self->chat, chat))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CHAT]);
  if (g_set_object (&self->message, message))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MESSAGE]);
  if (g_strcmp0 (self->assistant_name, assistant_name) != 0)
    {
      g_free (self->assistant_name);
      self->assistant_name = g_strdup (assistant_name);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ASSISTANT_NAME]);
    }
  show_message (self);
  g_object_thaw_notify (G_OBJECT (self));
}

/* ------------------------------------------------------------------------------------------
 * GObject
 */

AppMessageRow *
app_message_row_new (AppChatStore *store)
{
  g_return_val_if_fail (APP_IS_CHAT_STORE (store), NULL);

  return g_object_new (APP_TYPE_MESSAGE_ROW, "store", store, NULL);
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
  g_clear_pointer (&self->assistant_name, g_free);
  g_clear_pointer (&self->boxes_image, g_free);
  g_clear_pointer (&self->boxes_path, g_free);
  gtk_widget_dispose_template (GTK_WIDGET (self), APP_TYPE_MESSAGE_ROW);
  G_OBJECT_CLASS (app_message_row_parent_class)->dispose (object);
}

static void
app_message_row_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  AppMessageRow *self = APP_MESSAGE_ROW (object);

  switch (prop_id)
    {
    case PROP_STORE:
      g_value_set_object (value, self->store);
      break;
    case PROP_CHAT:
      g_value_set_object (value, self->chat);
      break;
    case PROP_MESSAGE:
      g_value_set_object (value, self->message);
      break;
    case PROP_ASSISTANT_NAME:
      g_value_set_string (value, self->assistant_name);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_message_row_set_property (GObject      *object,
                              guint         prop_id,
                              const GValue *value,
                              GParamSpec   *pspec)
{
  AppMessageRow *self = APP_MESSAGE_ROW (object);

  switch (prop_id)
    {
    case PROP_STORE:
      self->store = g_value_dup_object (value);
      break;
    case PROP_CHAT:
      app_message_row_bind (self, g_value_get_object (value), self->message,
                            self->assistant_name);
      break;
    case PROP_MESSAGE:
      app_message_row_bind (self, self->chat, g_value_get_object (value), self->assistant_name);
      break;
    case PROP_ASSISTANT_NAME:
      app_message_row_bind (self, self->chat, self->message, g_value_get_string (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_message_row_class_init (AppMessageRowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = app_message_row_dispose;
  object_class->get_property = app_message_row_get_property;
  object_class->set_property = app_message_row_set_property;

  /* where the images of the messages are */
  properties[PROP_STORE] =
    g_param_spec_object ("store", NULL, NULL, APP_TYPE_CHAT_STORE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /* the conversation the message is part of: its position, versions and earlier images */
  properties[PROP_CHAT] =
    g_param_spec_object ("chat", NULL, NULL, APP_TYPE_CHAT,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_MESSAGE] =
    g_param_spec_object ("message", NULL, NULL, APP_TYPE_MESSAGE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /* the name over answers, NULL for the app's own */
  properties[PROP_ASSISTANT_NAME] =
    g_param_spec_string ("assistant-name", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  g_type_ensure (APP_TYPE_GROUNDING_VIEW);
  g_type_ensure (APP_TYPE_MARKDOWN_VIEW);
  g_type_ensure (APP_TYPE_WRAP_BOX);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/sightline/Sightline/app-message-row.ui");
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, box);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, author);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, versions);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, previous_version);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, version_label);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, next_version);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, edit_button);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, regenerate_button);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, copy_button);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, menu_button);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, boxes_images_menu);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, images);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, badge);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, badge_icon);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, badge_label);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, user_text);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, answer);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, raw_text);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, boxes);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, status_box);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, progress);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, status_label);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, continue_button);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, error_label);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, note_label);
  gtk_widget_class_bind_template_child (widget_class, AppMessageRow, stats_label);
  gtk_widget_class_bind_template_callback (widget_class, copy_clicked_cb);
  gtk_widget_class_bind_template_callback (widget_class, chip_hovered_cb);
  gtk_widget_class_bind_template_callback (widget_class, chip_activated_cb);
  gtk_widget_class_bind_template_callback (widget_class, box_hovered_cb);
  gtk_widget_class_bind_template_callback (widget_class, boxes_pressed_cb);
  gtk_widget_class_bind_template_callback (widget_class, boxes_key_cb);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "messagerow");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_GROUP);
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
  self->active_chip = -1;
  self->actions = g_simple_action_group_new ();
  g_action_map_add_action_entries (G_ACTION_MAP (self->actions), row_actions,
                                   G_N_ELEMENTS (row_actions), self);
  gtk_widget_insert_action_group (GTK_WIDGET (self), "row", G_ACTION_GROUP (self->actions));

  gtk_widget_init_template (GTK_WIDGET (self));
  /* neither is a property the template could set */
  app_grounding_view_set_natural_height (self->boxes, BOXES_HEIGHT);
  gtk_widget_set_cursor_from_name (GTK_WIDGET (self->boxes), "zoom-in");

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
}
