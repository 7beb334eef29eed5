/* app-window.c - the main window: the chat list beside the conversation.
 *
 * The conversation is the current chat's GListModel of messages shown in a GtkListView: sending
 * appends the question and an empty answer, and the engine fills the answer in place, so the
 * list never rebuilds while text streams in. The chats can be read whatever the model is
 * doing: its state (none, loading, failed) is a banner above the conversation, and a welcome
 * page takes the conversation's place only on a first start, with no chat and no model. An
 * answer belongs to its chat: another chat shows no Stop for it, and the sidebar marks the chat
 * that is answering. Chats are saved after every question and every finished answer, and every
 * few seconds while an answer streams, so a crash keeps what it wrote; closing the window or
 * quitting while an answer is written stops it and saves it as interrupted, to be continued
 * later. Deleting a chat can be undone until its toast goes away (or the window closes). The
 * files are written in the background.
 *
 * Nothing sent is replaced: editing a question puts it in the composer (what was being written
 * there waits) and sending it adds a new version beside the old one, while cancelling leaves
 * the chat as it was; writing an answer again adds a version too. The rows switch versions.
 *
 * The question being written belongs to the chat shown: each change goes into the chat's
 * draft, saved (without moving the chat up the list) a moment after the typing stops, at once
 * when another chat is shown, and when the window closes. A chat whose draft was saved comes
 * back with it after a restart.
 */
#define G_LOG_DOMAIN "sightline-window"

#include "app-window.h"

#include <glib/gi18n.h>
#include <string.h>

#include "app-composer.h"
#include "app-config.h"
#include "app-drop-highlight.h"
#include "app-import-errors.h"
#include "app-export.h"
#include "app-message-row.h"
#include "app-model-banner.h"
#include "app-models-page.h"
#include "app-preferences.h"

/* How long a draft waits after a change before it is saved. */
#define DRAFT_SAVE_DELAY_MS 500

struct _AppWindow
{
  AdwApplicationWindow parent_instance;

  AppApplication *app;
  AppChatStore *store;
  AppEngine *engine;
  GSettings *settings;

  GtkFilterListModel *chat_filter;
  GtkCustomFilter *filter;
  GtkSingleSelection *chat_selection;
  AppChat *chat;                 /* current */
  GCancellable *generation;      /* while an answer is being written */
  AppMessage *reply;
  AppChat *reply_chat;           /* the chat of that answer, the "answering-chat" */
  GHashTable *edits;             /* AppChat -> the AppMessage being edited in it */
  gboolean stick_to_bottom;
  GdkFrameClock *scroll_clock;   /* while the view waits for a frame to go to the end */
  gulong scroll_handler;
  AppImportErrors *import_errors;
  AppDropHighlight *drop_highlight;
  guint draft_save_id;           /* a draft change waiting to be saved */
  AppChat *draft_chat;           /* the chat whose draft that is */
  gboolean restoring_draft;      /* the composer is being filled from a chat */
  GPtrArray *pending_deletes;    /* PendingDelete*, deletions that can still be undone */
  gpointer open_delete;          /* the PendingDelete whose toast is up: more chats join it */
  AppModelManager *models;
  GtkWidget *models_page;        /* the first screen, without a model and a chat */

  /* template */
  AdwToastOverlay *toast_overlay;
  AdwLeaflet *leaflet;
  GtkWidget *sidebar;
  GtkWidget *content;
  GtkToggleButton *search_button;
  GtkSearchBar *search_bar;
  GtkSearchEntry *search_entry;
  GtkStack *sidebar_stack;
  GtkListView *chat_list;
  AdwWindowTitle *chat_title;
  GtkStack *main_stack;
  AdwStatusPage *welcome_page;
  AppModelBanner *model_banner;
  GtkMenuButton *model_button;
  GtkLabel *model_label;
  GMenu *model_menu_models;
  GtkStack *chat_stack;
  GtkScrolledWindow *message_scroller;
  GtkListView *message_list;
  GtkRevealer *edit_bar;
  AppComposer *composer;
};

/* While an answer streams, what it wrote is saved this often. */
#define AUTOSAVE_SECONDS 2

G_DEFINE_FINAL_TYPE (AppWindow, app_window, ADW_TYPE_APPLICATION_WINDOW)

enum {
  PROP_0,
  PROP_ANSWERING_CHAT,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void set_chat (AppWindow *self, AppChat *chat);
static void update_actions (AppWindow *self);
static void set_draft_key (AppWindow *self, AppChat *chat);
static void update_send (AppWindow *self);

/* A toast's title is Pango markup: file names and chat titles are shown as they are. */
static void
toast (AppWindow  *self,
       const char *text)
{
  g_autofree char *markup = g_markup_escape_text (text, -1);
  AdwToast *t = adw_toast_new (markup);

  adw_toast_set_timeout (t, 5);
  adw_toast_overlay_add_toast (self->toast_overlay, t);
}

static void
save_done_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(AppWindow) self = user_data;
  g_autoptr(GError) error = NULL;

  /* the file is written in a thread; a window closed meanwhile has nowhere to say it */
  if (!app_chat_store_save_finish (APP_CHAT_STORE (source), result, &error) &&
      self->toast_overlay)
    {
      g_autofree char *msg = g_strdup_printf (_("The chat could not be saved: %s"),
                                              error->message);
      toast (self, msg);
    }
}

static void
save_chat_full (AppWindow             *self,
                AppChat               *chat,
                AppChatStoreSaveFlags  flags)
{
  app_chat_store_save_async (self->store, chat, flags, NULL, save_done_cb, g_object_ref (self));
}

static void
save_chat (AppWindow *self,
           AppChat   *chat)
{
  save_chat_full (self, chat, APP_CHAT_STORE_SAVE_DEFAULT);
}

/* ------------------------------------------------------------------------------------------
 * The model's state: a banner over the chats, or the welcome page on a first start
 */

/* The page in place of the conversation when there is no chat and the model failed to load:
 * what to do about the folder. (With no chat and no model, the Models page is shown.) */
static void
update_welcome (AppWindow *self)
{
  const char *advice = app_engine_get_error_advice (self->engine);
  g_autofree char *text = g_markup_printf_escaped ("%s\n\n<small>%s</small>",
                                                   advice ? advice : "",
                                                   app_engine_get_error (self->engine));

  adw_status_page_set_icon_name (self->welcome_page, "dialog-warning-symbolic");
  adw_status_page_set_title (self->welcome_page, _("The Model Could Not Be Loaded"));
  adw_status_page_set_description (self->welcome_page, text);
}

static gboolean
app_window_not (gpointer unused,
                gboolean value)
{
  return !value;
}

/* The header bar's model switcher: the installed models, the one in use checked (the
 * settings' "model-folder" as a stateful action), then "Manage Models…". */
static void
update_model_switcher (AppWindow *self)
{
  GListModel *installed = app_model_manager_get_installed (self->models);
  AppModelEntry *current = app_model_manager_get_current (self->models);
  guint n = g_list_model_get_n_items (installed);

  g_menu_remove_all (self->model_menu_models);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(AppModelEntry) entry = g_list_model_get_item (installed, i);
      g_autoptr(GMenuItem) item = g_menu_item_new (app_model_entry_get_name (entry), NULL);

      g_menu_item_set_action_and_target (item, "app.model-folder", "s",
                                         app_model_entry_get_path (entry));
      g_menu_append_item (self->model_menu_models, item);
    }
  gtk_label_set_text (self->model_label,
                      current ? app_model_entry_get_name (current) : _("No Model"));
}

/* A chat answered by another model, that is still here, switches to it while nothing is being
 * answered. */
static void
use_chat_model (AppWindow *self,
                AppChat   *chat)
{
  const char *model = chat ? app_chat_get_model (chat) : NULL;
  g_autofree char *current = g_settings_get_string (self->settings, "model-folder");

  if (!model || g_strcmp0 (model, current) == 0 || self->generation ||
      app_engine_get_state (self->engine) == APP_ENGINE_BUSY ||
      !app_model_manager_find (self->models, model))
    return;
  app_model_manager_use (self->models, model);
}

static void
update_page (AppWindow *self)
{
  AppEngineState state = app_engine_get_state (self->engine);
  const char *name = app_engine_get_model_name (self->engine);
  guint n_chats = g_list_model_get_n_items (app_chat_store_get_chats (self->store));

  if (n_chats == 0 && state == APP_ENGINE_EMPTY)
    {
      gtk_stack_set_visible_child_name (self->main_stack, "models");
    }
  else if (n_chats == 0 && state == APP_ENGINE_FAILED)
    {
      update_welcome (self);
      gtk_stack_set_visible_child_name (self->main_stack, "welcome");
    }
  else
    {
      gtk_stack_set_visible_child_name (self->main_stack, "chat");
    }
  adw_window_title_set_subtitle (self->chat_title, state == APP_ENGINE_READY ||
                                                       state == APP_ENGINE_BUSY ? name : NULL);
  update_send (self);
  update_actions (self);
}

/* Sending needs the model, idle: the send button says why it cannot. */
static void
update_send (AppWindow *self)
{
  const char *reason = NULL;

  switch (app_engine_get_state (self->engine))
    {
    case APP_ENGINE_EMPTY:
      reason = _("No model is loaded: open a model folder to ask questions");
      break;
    case APP_ENGINE_LOADING:
      reason = _("The model is loading");
      break;
    case APP_ENGINE_FAILED:
      reason = _("The model could not be loaded: choose another folder");
      break;
    case APP_ENGINE_BUSY:
      if (self->reply_chat != self->chat)
        reason = _("Sightline is answering in another chat: wait for it, or stop it there");
      break;
    case APP_ENGINE_READY:
    default:
      break;
    }
  app_composer_set_cannot_send_reason (self->composer, reason);
  app_composer_set_can_send (self->composer, app_engine_get_state (self->engine) ==
                                               APP_ENGINE_READY);
}

/* ------------------------------------------------------------------------------------------
 * The conversation
 */

static void scroll_to_end (AppWindow *self);

static void
update_chat_view (AppWindow *self)
{
  gboolean empty = !self->chat || app_chat_get_n_messages (self->chat) == 0;

  scroll_to_end (self);
  gtk_stack_set_visible_child_name (self->chat_stack, empty ? "empty" : "messages");
  adw_window_title_set_title (self->chat_title, self->chat ? app_chat_get_title (self->chat)
                                                           : _("Sightline"));
  /* the window switcher and the taskbar name the chat, as editors name the document */
  gtk_window_set_title (GTK_WINDOW (self), self->chat ? app_chat_get_title (self->chat)
                                                      : _("Sightline"));
  update_actions (self);
}

/* Keep the newest text in view while it streams, unless the person scrolled up to read. The
 * list view moves its own adjustment as it measures rows, so only the person's own scrolling
 * (wheel, touchpad, keys) unsticks the view; reaching the bottom again sticks it. */
static void
scroll_value_changed_cb (GtkAdjustment *adj,
                         AppWindow     *self)
{
  if (gtk_adjustment_get_value (adj) >=
      gtk_adjustment_get_upper (adj) - gtk_adjustment_get_page_size (adj) - 24)
    self->stick_to_bottom = TRUE;
}

/* The list view knows the heights of the rows it has measured only, so its adjustment can
 * end before the last row does. Going to the end of what it knows has it measure the rows
 * there; their heights move the end, scroll_changed_cb brings the view there again, until the
 * last row is in. (GTK 4.8's "list.scroll-to-item" to a row not measured yet sends the view
 * to the top instead: a long chat opened at its first message.)
 *
 * Only after a frame has laid the list out: between a change of its rows and the next layout,
 * the adjustment still counts the old rows, and a value set then has the list look for a row
 * where none is ("GtkListView failed to scroll to given position"). */
static void
stop_scroll_wait (AppWindow *self)
{
  if (self->scroll_handler)
    g_clear_signal_handler (&self->scroll_handler, self->scroll_clock);
  g_clear_object (&self->scroll_clock);
}

static void
scroll_after_paint_cb (GdkFrameClock *clock,
                       AppWindow     *self)
{
  GtkAdjustment *adj = gtk_scrolled_window_get_vadjustment (self->message_scroller);
  guint n = self->chat ? app_chat_get_n_messages (self->chat) : 0;

  stop_scroll_wait (self);
  if (!self->stick_to_bottom || n == 0 || !gtk_widget_get_mapped (GTK_WIDGET (self->message_list)))
    return;
  gtk_adjustment_set_value (adj, gtk_adjustment_get_upper (adj) -
                                   gtk_adjustment_get_page_size (adj));
}

static void
scroll_to_end (AppWindow *self)
{
  GdkFrameClock *clock;

  if (!self->stick_to_bottom || self->scroll_handler)
    return;
  /* not shown yet: its first layout changes the adjustment, and scroll_changed_cb comes here */
  clock = gtk_widget_get_frame_clock (GTK_WIDGET (self->message_list));
  if (!clock)
    return;
  self->scroll_clock = g_object_ref (clock);
  self->scroll_handler = g_signal_connect (clock, "after-paint",
                                           G_CALLBACK (scroll_after_paint_cb), self);
  gdk_frame_clock_request_phase (clock, GDK_FRAME_CLOCK_PHASE_AFTER_PAINT);
}

/* Not at once: the list view changes its adjustment while it lays its rows out, deaf to the
 * value meanwhile, so a value set here would move the scroll bar and not the rows. */
static void
scroll_changed_cb (GtkAdjustment *adj,
                   AppWindow     *self)
{
  scroll_to_end (self);
}

static gboolean
user_scroll_cb (GtkEventControllerScroll *controller,
                double                    dx,
                double                    dy,
                AppWindow                *self)
{
  if (dy < 0)
    self->stick_to_bottom = FALSE;
  return FALSE;
}

static gboolean
user_key_cb (GtkEventControllerKey *controller,
             guint                  keyval,
             guint                  keycode,
             GdkModifierType        state,
             AppWindow             *self)
{
  if (keyval == GDK_KEY_Page_Up || keyval == GDK_KEY_Up || keyval == GDK_KEY_Home ||
      keyval == GDK_KEY_KP_Page_Up || keyval == GDK_KEY_KP_Up)
    self->stick_to_bottom = FALSE;
  return FALSE;
}

/* Mirrors the current chat in the sidebar's selection (saving moves a chat to the top). */
static void
select_current (AppWindow *self)
{
  GListModel *chats = G_LIST_MODEL (self->chat_selection);

  for (guint i = 0; self->chat && i < g_list_model_get_n_items (chats); i++)
    {
      g_autoptr(AppChat) c = g_list_model_get_item (chats, i);

      if (c == self->chat)
        {
          if (gtk_single_selection_get_selected (self->chat_selection) != i)
            gtk_single_selection_set_selected (self->chat_selection, i);
          return;
        }
    }
  gtk_single_selection_set_selected (self->chat_selection, GTK_INVALID_LIST_POSITION);
}

/* An answer's Stop is shown with its chat only. */
static void
update_generating (AppWindow *self)
{
  app_composer_set_generating (self->composer,
                               self->generation && self->reply_chat == self->chat);
  update_send (self);
  update_actions (self);
}

static void
set_answering (AppWindow *self,
               AppChat   *chat)
{
  if (g_set_object (&self->reply_chat, chat))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ANSWERING_CHAT]);
}

/* ------------------------------------------------------------------------------------------
 * Drafts: the composer's question is kept in the chat it was written for
 */

static gboolean
save_draft_cb (gpointer data)
{
  AppWindow *self = data;
  g_autoptr(AppChat) chat = g_steal_pointer (&self->draft_chat);

  self->draft_save_id = 0;
  if (chat)
    save_chat_full (self, chat, APP_CHAT_STORE_SAVE_KEEP_PLACE);
  return G_SOURCE_REMOVE;
}

static void
save_draft_now (AppWindow *self)
{
  if (!self->draft_save_id)
    return;
  g_clear_handle_id (&self->draft_save_id, g_source_remove);
  save_draft_cb (self);
}

/* Fills the composer with a chat's saved draft (after a restart: nothing was put aside). */
static void
restore_draft (AppWindow *self,
               AppChat   *chat)
{
  const char * const *images = app_chat_get_draft_images (chat);

  app_composer_set_text (self->composer, app_chat_get_draft_text (chat));
  app_composer_set_prompt_kind (self->composer, app_chat_get_draft_kind (chat));
  for (guint i = 0; images[i]; i++)
    app_composer_add_image_id (self->composer, images[i]);
}

static void
set_chat (AppWindow *self,
          AppChat   *chat)
{
  g_autoptr(GtkNoSelection) selection = NULL;

  if (self->chat == chat && chat)
    return;
  save_draft_now (self);
  if (self->chat)
    g_signal_handlers_disconnect_by_data (self->chat, self);
  g_set_object (&self->chat, chat);
  if (chat)
    {
      g_signal_connect_swapped (chat, "notify::title", G_CALLBACK (update_chat_view), self);
      g_signal_connect_swapped (app_chat_get_messages (chat), "items-changed",
                                G_CALLBACK (update_chat_view), self);
      selection = gtk_no_selection_new (g_object_ref (app_chat_get_messages (chat)));
    }
  gtk_list_view_set_model (self->message_list, GTK_SELECTION_MODEL (selection));
  app_context_bar_set_chat (app_composer_get_context_bar (self->composer), chat);
  set_draft_key (self, chat);
  self->stick_to_bottom = TRUE;

  select_current (self);
  update_chat_view (self);
  update_generating (self);
  use_chat_model (self, chat);
}

static AppChat *
ensure_chat (AppWindow *self)
{
  if (!self->chat)
    {
      g_autoptr(AppChat) chat = app_chat_new ();

      app_chat_store_add (self->store, chat);
      set_chat (self, chat);
    }
  return self->chat;
}

static void
composer_changed_cb (AppWindow *self)
{
  g_autofree char *text = NULL;
  g_auto(GStrv) images = NULL;

  /* a question being edited is not the chat's draft, which waits meanwhile */
  if (self->restoring_draft || (self->chat && g_hash_table_contains (self->edits, self->chat)))
    return;
  text = app_composer_get_text (self->composer);
  images = app_composer_get_images (self->composer);
  /* something written with no chat shown starts one, to be kept in */
  if (!self->chat)
    {
      g_autofree char *stripped = g_strstrip (g_strdup (text));

      if (!stripped[0] && !images[0])
        return;
      ensure_chat (self);
    }
  if (!app_chat_set_draft (self->chat, text, app_composer_get_prompt_kind (self->composer),
                           (const char * const *) images))
    return;
  if (self->draft_chat != self->chat)
    save_draft_now (self);
  g_set_object (&self->draft_chat, self->chat);
  if (!self->draft_save_id)
    self->draft_save_id = g_timeout_add (DRAFT_SAVE_DELAY_MS, save_draft_cb, self);
}

static void
notify_finished (AppWindow  *self,
                 AppMessage *reply)
{
  g_autoptr(GNotification) n = NULL;
  g_autofree char *body = NULL;
  const char *text = app_message_get_text (reply);

  if (gtk_window_is_active (GTK_WINDOW (self)))
    return;
  n = g_notification_new (_("Sightline answered"));
  body = g_utf8_substring (text, 0, MIN (g_utf8_strlen (text, -1), 120));
  g_notification_set_body (n, body);
  g_notification_set_default_action (n, "app.activate");
  g_application_send_notification (G_APPLICATION (self->app), "answer", n);
}

/* The answer's own state says when it is over: the window reacts to that, before anything
 * else can see the finished answer, so a new question is never refused as "still busy". */
static void
reply_state_cb (AppMessage *reply,
                GParamSpec *pspec,
                AppWindow  *self)
{
  AppMessageState state = app_message_get_state (reply);

  if (state == APP_MESSAGE_PENDING || state == APP_MESSAGE_STREAMING)
    return;
  g_signal_handlers_disconnect_by_func (reply, reply_state_cb, self);
  if (self->reply == reply)
    {
      g_clear_object (&self->generation);
      g_clear_object (&self->reply);
      set_answering (self, NULL);
      update_generating (self);
    }
  if (state == APP_MESSAGE_COMPLETE)
    notify_finished (self, reply);
}

typedef struct
{
  AppWindow *window;
  AppChat *chat;
  AppChatStore *store;           /* the window's, kept for after the window closes */
  AppMessage *reply;
  guint autosave;
  gsize saved_length;
} Generation;

static void
generation_saved_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!app_chat_store_save_finish (APP_CHAT_STORE (source), result, &error))
    g_warning ("The chat could not be saved: %s", error->message);
}

/* Saves the chat of an answer, whether its window is still open (which reports a failure) or
 * closed meanwhile. */
static void
save_generation (Generation *g)
{
  if (g->window->store)
    save_chat (g->window, g->chat);
  else
    app_chat_store_save_async (g->store, g->chat, APP_CHAT_STORE_SAVE_DEFAULT, NULL,
                               generation_saved_cb, NULL);
}

/* A crash, a power cut or a kill keeps what the answer wrote up to the last save; it comes back
 * as interrupted. */
static gboolean
autosave_cb (gpointer data)
{
  Generation *g = data;
  gsize length = strlen (app_message_get_text (g->reply));

  if (length != g->saved_length)
    {
      g->saved_length = length;
      save_generation (g);
    }
  return G_SOURCE_CONTINUE;
}

static void
generate_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Generation *g = user_data;
  g_autoptr(GError) error = NULL;

  /* the reply carries the outcome (state, error, statistics); the chat keeps it */
  if (!app_engine_generate_finish (APP_ENGINE (source), result, &error))
    g_debug ("answer failed: %s", error->message);
  g_clear_handle_id (&g->autosave, g_source_remove);
  save_generation (g);
  g_object_unref (g->reply);
  g_object_unref (g->store);
  g_object_unref (g->chat);
  g_object_unref (g->window);
  g_free (g);
}

/* The window closes or the app quits while an answer is written: it stops where it is and is
 * saved as interrupted, with its text, to be continued or written again later. */
static void
interrupt_answer (AppWindow *self)
{
  g_autoptr(GCancellable) generation = NULL;
  g_autoptr(AppMessage) reply = NULL;
  g_autoptr(AppChat) chat = NULL;

  if (!self->generation || !self->reply)
    return;
  generation = g_object_ref (self->generation);
  reply = g_object_ref (self->reply);
  chat = g_object_ref (self->reply_chat);
  g_cancellable_cancel (generation);
  app_message_set_state (reply, APP_MESSAGE_INTERRUPTED);
  save_chat (self, chat);
}

/* The sampling keys are maybe-typed ("md", "mi"): unset ("nothing") leaves the engine's
 * default in *value, set stores it there, as the type inside the maybe says (a double, an
 * int). */
static void
settings_maybe (GSettings  *settings,
                const char *key,
                gpointer    value)
{
  g_autoptr(GVariant) maybe = g_settings_get_value (settings, key);
  g_autoptr(GVariant) just = g_variant_get_maybe (maybe);

  if (just)
    g_variant_get (just, g_variant_get_type_string (just), value);
}

static void
settings_params (AppWindow         *self,
                 AppGenerateParams *p)
{
  app_generate_params_init (p);
  settings_maybe (self->settings, "temperature", &p->temperature);
  settings_maybe (self->settings, "top-p", &p->top_p);
  settings_maybe (self->settings, "max-new-tokens", &p->max_new_tokens);
  settings_maybe (self->settings, "repetition-penalty", &p->repetition_penalty);
  p->system_prompt = g_settings_get_string (self->settings, "system-prompt");
  /* what the person chose to leave out to fit the context (app-context-bar.c) */
  p->leave_out_images =
    app_context_bar_get_leave_out_images (app_composer_get_context_bar (self->composer));
}

/* Has the engine write `reply`, an answer on the current chat's shown path: a new one, or one
 * with text to continue. */
static void
run_answer (AppWindow  *self,
            AppMessage *reply)
{
  g_autofree char *image_dir = g_build_filename (app_chat_store_get_data_dir (self->store),
                                                 "images", NULL);
  g_autofree char *model_ref = app_models_engine_ref (self->engine);
  AppGenerateParams params;
  Generation *g = g_new0 (Generation, 1);

  self->generation = g_cancellable_new ();
  self->reply = g_object_ref (reply);
  set_answering (self, self->chat);
  self->stick_to_bottom = TRUE;
  update_generating (self);

  g->window = g_object_ref (self);
  g->chat = g_object_ref (self->chat);
  g->store = g_object_ref (self->store);
  g->reply = g_object_ref (reply);
  g->saved_length = strlen (app_message_get_text (reply));
  g->autosave = g_timeout_add_seconds (AUTOSAVE_SECONDS, autosave_cb, g);
  g_signal_connect (reply, "notify::state", G_CALLBACK (reply_state_cb), self);
  settings_params (self, &params);
  /* the chat remembers the model that answered it */
  app_chat_set_model (self->chat, model_ref);
  app_engine_generate_async (self->engine, self->chat, reply, image_dir, &params,
                             self->generation, generate_cb, g);
  app_generate_params_clear (&params);
  /* saved as pending: were the app to end before the answer, it would come back interrupted,
   * never as a complete empty answer */
  save_chat (self, self->chat);
}

/* Appends an empty answer to the current chat and has the engine write it. */
static void
start_answer (AppWindow *self)
{
  g_autoptr(AppMessage) reply = app_message_new (APP_ROLE_ASSISTANT, "");

  app_chat_append (self->chat, reply);
  run_answer (self, reply);
}

/* ------------------------------------------------------------------------------------------
 * Editing a question
 */

/* What the composer holds while a question of `chat` is edited, beside the chat's own draft. */
static char *
edit_key (AppChat *chat)
{
  return g_strconcat (app_chat_get_id (chat), "#edit", NULL);
}

static void
update_edit_bar (AppWindow *self)
{
  gtk_revealer_set_reveal_child (self->edit_bar,
                                 self->chat && g_hash_table_contains (self->edits, self->chat));
  /* an edit replaces its question: the context counts what comes before it */
  app_context_bar_set_replacing (app_composer_get_context_bar (self->composer),
                                 self->chat ? g_hash_table_lookup (self->edits, self->chat)
                                            : NULL);
}

/* The composer shows the chat's unsent question, or the question being edited in it. What the
 * composer put aside for the chat comes back, imports still running; when nothing was (after a
 * restart), the draft saved in the chat. What was written before there was any chat stays. */
static void
set_draft_key (AppWindow *self,
               AppChat   *chat)
{
  g_autofree char *key = NULL;
  g_autofree char *text = NULL;
  gboolean restore = FALSE;

  if (chat && g_hash_table_contains (self->edits, chat))
    key = edit_key (chat);
  else if (chat)
    {
      key = g_strdup (app_chat_get_id (chat));
      restore = !app_composer_has_draft (self->composer, key);
    }
  self->restoring_draft = TRUE;
  app_composer_set_draft_key (self->composer, key);
  text = app_composer_get_text (self->composer);
  if (restore && !text[0] && !app_composer_has_images (self->composer))
    restore_draft (self, chat);
  self->restoring_draft = FALSE;
  update_edit_bar (self);
}

/* Leaves the edit of the current chat's question: the edited text goes, the draft comes back. */
static void
end_edit (AppWindow *self)
{
  g_autofree char *key = NULL;

  if (!self->chat || !g_hash_table_contains (self->edits, self->chat))
    return;
  key = edit_key (self->chat);
  app_composer_clear (self->composer);
  g_hash_table_remove (self->edits, self->chat);
  set_draft_key (self, self->chat);
  app_composer_forget_draft (self->composer, key);
}

static void
cancel_edit_action (GtkWidget  *widget,
                    const char *name,
                    GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);

  end_edit (self);
  app_composer_focus (self->composer);
}

static void
send_cb (AppWindow *self)
{
  g_autofree char *text = app_composer_get_prompt (self->composer);
  g_auto(GStrv) images = app_composer_get_images (self->composer);
  g_autoptr(AppMessage) question = NULL;
  AppMessage *edited;

  if (self->generation || app_engine_get_state (self->engine) != APP_ENGINE_READY || !text)
    return;
  ensure_chat (self);
  question = app_message_new (APP_ROLE_USER, text);
  app_message_set_images (question, (const char * const *) images);
  edited = g_hash_table_lookup (self->edits, self->chat);
  if (edited)
    {
      /* an edited question: a new version beside the old one */
      g_autoptr(AppMessage) old = g_object_ref (edited);

      end_edit (self);
      if (!app_chat_add_version (self->chat, old, question))
        app_chat_append (self->chat, question);
    }
  else
    {
      app_chat_append (self->chat, question);
      app_composer_clear (self->composer);
    }
  start_answer (self);
}

/* Stops the answer in view, never one of another chat. */
static void
stop_cb (AppWindow *self)
{
  if (self->generation && self->reply_chat == self->chat)
    g_cancellable_cancel (self->generation);
}

static void
import_failed_cb (AppWindow  *self,
                  const char *message)
{
  app_import_errors_add (self->import_errors, message);
}

/* ------------------------------------------------------------------------------------------
 * Chat list
 */

static gboolean
filter_chat (gpointer item,
             gpointer user_data)
{
  AppWindow *self = user_data;
  const char *query = gtk_editable_get_text (GTK_EDITABLE (self->search_entry));

  return app_chat_matches (APP_CHAT (item), query);
}

static void
search_changed_cb (AppWindow *self)
{
  gtk_filter_changed (GTK_FILTER (self->filter), GTK_FILTER_CHANGE_DIFFERENT);
  gtk_stack_set_visible_child_name (self->sidebar_stack,
                                    g_list_model_get_n_items (G_LIST_MODEL (self->chat_filter)) ||
                                      !*gtk_editable_get_text (GTK_EDITABLE (self->search_entry))
                                    ? "list" : "no-results");
}

static void
chat_selected_cb (AppWindow *self)
{
  AppChat *chat = gtk_single_selection_get_selected_item (self->chat_selection);

  if (chat && chat != self->chat)
    {
      set_chat (self, chat);
      adw_leaflet_navigate (self->leaflet, ADW_NAVIGATION_DIRECTION_FORWARD);
    }
}

/* Choosing a chat shows it, the one already selected too: in a narrow window the list and
 * the conversation take turns, and a selection that does not change says nothing. */
static void
open_chat (AppWindow *self,
           AppChat   *chat)
{
  if (!chat)
    return;
  set_chat (self, chat);
  adw_leaflet_navigate (self->leaflet, ADW_NAVIGATION_DIRECTION_FORWARD);
}

static void
chat_activated_cb (GtkListView *list,
                   guint        position,
                   AppWindow   *self)
{
  g_autoptr(AppChat) chat = g_list_model_get_item (G_LIST_MODEL (self->chat_selection),
                                                   position);

  open_chat (self, chat);
}

static void
chat_row_released_cb (GtkGestureClick *gesture,
                      int              n_press,
                      double           x,
                      double           y,
                      GtkListItem     *item)
{
  GtkWidget *row = gtk_event_controller_get_widget (GTK_EVENT_CONTROLLER (gesture));
  AppWindow *self = APP_WINDOW (gtk_widget_get_root (row));

  open_chat (self, gtk_list_item_get_item (item));
}

/* The spinner of the chat that is answering. */
static void
update_row_answering (GtkListItem *item,
                      GParamSpec  *pspec,
                      AppWindow   *self)
{
  GtkWidget *spinner = g_object_get_data (G_OBJECT (item), "answering");
  gboolean answering = self->reply_chat && gtk_list_item_get_item (item) == self->reply_chat;

  gtk_widget_set_visible (spinner, answering);
  gtk_spinner_set_spinning (GTK_SPINNER (spinner), answering);
}

static void
chat_row_setup_cb (GtkSignalListItemFactory *factory,
                   GtkListItem              *item,
                   AppWindow                *self)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  GtkWidget *label = gtk_label_new (NULL);
  GtkWidget *spinner = gtk_spinner_new ();
  GtkWidget *menu_button = gtk_menu_button_new ();
  GtkGesture *click = gtk_gesture_click_new ();

  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_END);
  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_widget_set_hexpand (label, TRUE);
  gtk_box_append (GTK_BOX (box), label);
  gtk_widget_set_visible (spinner, FALSE);
  gtk_widget_set_tooltip_text (spinner, _("Answering"));
  gtk_accessible_update_property (GTK_ACCESSIBLE (spinner), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _("Answering"), -1);
  gtk_box_append (GTK_BOX (box), spinner);
  g_object_set_data (G_OBJECT (item), "answering", spinner);
  g_signal_connect_object (click, "released", G_CALLBACK (chat_row_released_cb), item, 0);
  gtk_widget_add_controller (box, GTK_EVENT_CONTROLLER (click));
  gtk_menu_button_set_icon_name (GTK_MENU_BUTTON (menu_button), "view-more-symbolic");
  gtk_widget_add_css_class (menu_button, "flat");
  gtk_widget_set_tooltip_text (menu_button, _("Chat Menu"));
  gtk_accessible_update_property (GTK_ACCESSIBLE (menu_button), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _("Chat menu"), -1);
  gtk_box_append (GTK_BOX (box), menu_button);
  gtk_list_item_set_child (item, box);
}

static void
chat_row_bind_cb (GtkSignalListItemFactory *factory,
                  GtkListItem              *item,
                  AppWindow                *self)
{
  AppChat *chat = gtk_list_item_get_item (item);
  GtkWidget *box = gtk_list_item_get_child (item);
  GtkWidget *label = gtk_widget_get_first_child (box);
  GtkWidget *menu_button = gtk_widget_get_last_child (box);
  g_autoptr(GMenu) menu = g_menu_new ();
  g_autoptr(GMenuItem) rename = g_menu_item_new (_("_Rename…"), NULL);
  g_autoptr(GMenuItem) delete = g_menu_item_new (_("_Delete"), NULL);
  g_autoptr(GMenu) exports = g_menu_new ();
  g_autoptr(GMenuItem) markdown = g_menu_item_new (_("Export as _Markdown…"), NULL);
  g_autoptr(GMenuItem) json = g_menu_item_new (_("Export as _JSON…"), NULL);
  GBinding *binding;

  g_menu_item_set_action_and_target (rename, "win.rename-chat", "s", app_chat_get_id (chat));
  g_menu_item_set_action_and_target (delete, "win.delete-chat", "s", app_chat_get_id (chat));
  g_menu_append_item (menu, rename);
  g_menu_append_item (menu, delete);
  g_menu_item_set_action_and_target (markdown, "win.export-chat", "(ss)", app_chat_get_id (chat),
                                     "markdown");
  g_menu_item_set_action_and_target (json, "win.export-chat", "(ss)", app_chat_get_id (chat),
                                     "json");
  g_menu_append_item (exports, markdown);
  g_menu_append_item (exports, json);
  g_menu_append_section (menu, NULL, G_MENU_MODEL (exports));
  gtk_menu_button_set_menu_model (GTK_MENU_BUTTON (menu_button), G_MENU_MODEL (menu));
  binding = g_object_bind_property (chat, "title", label, "label", G_BINDING_SYNC_CREATE);
  g_object_set_data (G_OBJECT (item), "binding", binding);
  g_signal_connect_object (self, "notify::answering-chat", G_CALLBACK (update_row_answering),
                           item, G_CONNECT_SWAPPED);
  update_row_answering (item, NULL, self);
}

static void
chat_row_unbind_cb (GtkSignalListItemFactory *factory,
                    GtkListItem              *item,
                    AppWindow                *self)
{
  GBinding *binding = g_object_get_data (G_OBJECT (item), "binding");

  if (binding)
    g_binding_unbind (binding);
  g_object_set_data (G_OBJECT (item), "binding", NULL);
  g_signal_handlers_disconnect_by_func (self, update_row_answering, item);
}

static AppChat *
find_chat (AppWindow  *self,
           const char *id)
{
  GListModel *chats = app_chat_store_get_chats (self->store);

  for (guint i = 0; i < g_list_model_get_n_items (chats); i++)
    {
      g_autoptr(AppChat) c = g_list_model_get_item (chats, i);

      if (g_strcmp0 (app_chat_get_id (c), id) == 0)
        return c;
    }
  return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Messages list
 */

static void
message_setup_cb (GtkSignalListItemFactory *factory,
                  GtkListItem              *item,
                  AppWindow                *self)
{
  gtk_list_item_set_activatable (item, FALSE);
  gtk_list_item_set_selectable (item, FALSE);
  gtk_list_item_set_child (item, GTK_WIDGET (app_message_row_new (self->store)));
}

static void
message_bind_cb (GtkSignalListItemFactory *factory,
                 GtkListItem              *item,
                 AppWindow                *self)
{
  /* answers are signed "Sightline": a chat outlives the model that wrote its answers, and
   * the header shows the model loaded now */
  app_message_row_bind (APP_MESSAGE_ROW (gtk_list_item_get_child (item)), self->chat,
                        gtk_list_item_get_item (item), NULL);
}

static void
message_unbind_cb (GtkSignalListItemFactory *factory,
                   GtkListItem              *item,
                   AppWindow                *self)
{
  app_message_row_bind (APP_MESSAGE_ROW (gtk_list_item_get_child (item)), NULL, NULL, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Actions
 */

static void
update_actions (AppWindow *self)
{
  gboolean generating = self->generation != NULL;
  gboolean ready = app_engine_get_state (self->engine) == APP_ENGINE_READY;
  guint n = self->chat ? app_chat_get_n_messages (self->chat) : 0;
  gboolean last_is_answer = FALSE;

  if (n > 0)
    {
      g_autoptr(AppMessage) last = app_chat_get_message (self->chat, n - 1);

      last_is_answer = app_message_get_role (last) == APP_ROLE_ASSISTANT;
    }
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.stop",
                                 generating && self->reply_chat == self->chat);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.regenerate", ready && !generating);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.continue",
                                 ready && !generating && last_is_answer);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.edit-message", !generating);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.show-version", !generating);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.delete-current", self->chat != NULL);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.rename-current", n > 0);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.export-current", n > 0);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.cancel-load",
                                 app_engine_get_state (self->engine) == APP_ENGINE_LOADING);
}

static void
new_chat_action (GtkWidget  *widget,
                 const char *name,
                 GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);

  if (!self->chat || app_chat_get_n_messages (self->chat) > 0)
    {
      g_autoptr(AppChat) chat = app_chat_new ();

      app_chat_store_add (self->store, chat);
      set_chat (self, chat);
    }
  adw_leaflet_navigate (self->leaflet, ADW_NAVIGATION_DIRECTION_FORWARD);
  app_composer_focus (self->composer);
}

static void
search_action (GtkWidget  *widget,
               const char *name,
               GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);

  adw_leaflet_navigate (self->leaflet, ADW_NAVIGATION_DIRECTION_BACK);
  gtk_toggle_button_set_active (self->search_button, TRUE);
  gtk_widget_grab_focus (GTK_WIDGET (self->search_entry));
}

static void
show_chats_action (GtkWidget  *widget,
                   const char *name,
                   GVariant   *param)
{
  adw_leaflet_navigate (APP_WINDOW (widget)->leaflet, ADW_NAVIGATION_DIRECTION_BACK);
}

static void
stop_action (GtkWidget  *widget,
             const char *name,
             GVariant   *param)
{
  stop_cb (APP_WINDOW (widget));
}

static void
attach_response_cb (GtkNativeDialog *dialog,
                    int              response,
                    AppWindow       *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GListModel) files = gtk_file_chooser_get_files (GTK_FILE_CHOOSER (dialog));
      GSList *list = NULL;

      for (guint i = g_list_model_get_n_items (files); i > 0; i--)
        list = g_slist_prepend (list, g_list_model_get_item (files, i - 1));
      app_composer_add_files (self->composer, list);
      g_slist_free_full (list, g_object_unref);
    }
  g_object_unref (dialog);
}

/* The composer's grounding helpers, from the keyboard: on, or back to a plain question. */
static void
prompt_kind_action (GtkWidget  *widget,
                    const char *name,
                    GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);
  AppPromptKind kind = g_str_equal (name, "win.find-in-image") ? APP_PROMPT_FIND
                                                               : APP_PROMPT_GROUNDED_CAPTION;

  if (app_composer_get_prompt_kind (self->composer) == kind)
    kind = APP_PROMPT_PLAIN;
  app_composer_set_prompt_kind (self->composer, kind);
  app_composer_focus (self->composer);
}

static void
attach_action (GtkWidget  *widget,
               const char *name,
               GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);
  GtkFileChooserNative *chooser;
  g_autoptr(GtkFileFilter) images = gtk_file_filter_new ();

  chooser = gtk_file_chooser_native_new (_("Attach Images"), GTK_WINDOW (self),
                                         GTK_FILE_CHOOSER_ACTION_OPEN, _("_Attach"),
                                         _("_Cancel"));
  gtk_file_chooser_set_select_multiple (GTK_FILE_CHOOSER (chooser), TRUE);
  gtk_file_filter_set_name (images, _("Images"));
  gtk_file_filter_add_pixbuf_formats (images);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), images);
  g_signal_connect (chooser, "response", G_CALLBACK (attach_response_cb), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

static void
open_model_action (GtkWidget  *widget,
                   const char *name,
                   GVariant   *param)
{
  gtk_widget_activate_action (widget, "app.models", NULL);
}

static void
cancel_load_action (GtkWidget  *widget,
                    const char *name,
                    GVariant   *param)
{
  app_application_cancel_load (APP_WINDOW (widget)->app);
}

static void
reload_model_action (GtkWidget  *widget,
                     const char *name,
                     GVariant   *param)
{
  app_application_load_model (APP_WINDOW (widget)->app);
}

/* Export */

static void
export_done_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(AppWindow) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *where = app_export_finish (result, &error);

  if (where)
    {
      g_autofree char *msg = g_strdup_printf (_("Chat exported to “%s”"), where);

      toast (self, msg);
    }
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_autofree char *msg = g_strdup_printf (_("The chat could not be exported: %s"),
                                              error->message);

      toast (self, msg);
    }
}

static void
export_chat (AppWindow  *self,
             AppChat    *chat,
             const char *format)
{
  if (!chat)
    return;
  app_export_run (GTK_WINDOW (self), self->store, chat,
                  g_str_equal (format, "json") ? APP_EXPORT_JSON : APP_EXPORT_MARKDOWN,
                  export_done_cb, g_object_ref (self));
}

static void
export_chat_action (GtkWidget  *widget,
                    const char *name,
                    GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);
  const char *id, *format;

  g_variant_get (param, "(&s&s)", &id, &format);
  export_chat (self, find_chat (self, id), format);
}

static void
export_current_action (GtkWidget  *widget,
                       const char *name,
                       GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);

  export_chat (self, self->chat, g_variant_get_string (param, NULL));
}

/* Writes the answer at the position again, as a new version beside the old one. */
static void
regenerate_action (GtkWidget  *widget,
                   const char *name,
                   GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);
  guint pos = g_variant_get_uint32 (param);
  g_autoptr(AppMessage) old = NULL;
  g_autoptr(AppMessage) reply = NULL;

  if (self->generation || !self->chat)
    return;
  old = app_chat_get_message (self->chat, pos);
  if (!old || app_message_get_role (old) != APP_ROLE_ASSISTANT)
    return;
  reply = app_message_new (APP_ROLE_ASSISTANT, "");
  app_chat_add_version (self->chat, old, reply);
  run_answer (self, reply);
}

/* Goes on writing the last answer (stopped, interrupted, or cut at the length limit). */
static void
continue_action (GtkWidget  *widget,
                 const char *name,
                 GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);
  guint pos = g_variant_get_uint32 (param);
  g_autoptr(AppMessage) reply = NULL;

  if (self->generation || !self->chat || pos + 1 != app_chat_get_n_messages (self->chat))
    return;
  reply = app_chat_get_message (self->chat, pos);
  if (app_message_get_role (reply) != APP_ROLE_ASSISTANT)
    return;
  run_answer (self, reply);
}

/* Shows another version of the message at the position, with what followed it; the choice is
 * kept. */
static void
show_version_action (GtkWidget  *widget,
                     const char *name,
                     GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);
  guint pos, version;

  g_variant_get (param, "(uu)", &pos, &version);
  if (self->generation || !self->chat || version == app_chat_get_version (self->chat, pos))
    return;
  app_chat_select_version (self->chat, pos, version);
  save_chat (self, self->chat);
}

static void
edit_message_action (GtkWidget  *widget,
                     const char *name,
                     GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);
  guint pos = g_variant_get_uint32 (param);
  g_autoptr(AppMessage) question = NULL;
  const char * const *images;
  gboolean editing;

  if (self->generation || !self->chat || pos >= app_chat_get_n_messages (self->chat))
    return;
  question = app_chat_get_message (self->chat, pos);
  if (app_message_get_role (question) != APP_ROLE_USER)
    return;
  /* The question goes to the composer to be changed; the chat stays as it is until it is sent.
   * What the composer held waits under the chat's own key until the edit ends. */
  editing = g_hash_table_contains (self->edits, self->chat);
  g_hash_table_insert (self->edits, g_object_ref (self->chat), g_object_ref (question));
  if (!editing)
    set_draft_key (self, self->chat);
  app_context_bar_set_replacing (app_composer_get_context_bar (self->composer), question);
  app_composer_clear (self->composer);
  app_composer_set_prompt (self->composer, app_message_get_text (question));
  images = app_message_get_images (question);
  for (guint i = 0; images && images[i]; i++)
    app_composer_add_image_id (self->composer, images[i]);
  app_composer_focus (self->composer);
}

/* Rename */

static void
rename_response_cb (AdwMessageDialog *dialog,
                    const char       *response,
                    AppWindow        *self)
{
  AppChat *chat = g_object_get_data (G_OBJECT (dialog), "chat");
  GtkEditable *entry = g_object_get_data (G_OBJECT (dialog), "entry");
  g_autofree char *title = g_strstrip (g_strdup (gtk_editable_get_text (entry)));

  if (g_strcmp0 (response, "rename") == 0 && title[0])
    {
      app_chat_set_title (chat, title);
      save_chat (self, chat);
    }
}

static void
rename_chat (AppWindow *self,
             AppChat   *chat)
{
  GtkWidget *dialog, *entry;

  if (!chat)
    return;
  dialog = adw_message_dialog_new (GTK_WINDOW (self), _("Rename Chat"), NULL);
  entry = gtk_entry_new ();
  gtk_editable_set_text (GTK_EDITABLE (entry), app_chat_get_title (chat));
  gtk_entry_set_activates_default (GTK_ENTRY (entry), TRUE);
  gtk_accessible_update_property (GTK_ACCESSIBLE (entry), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _("Chat title"), -1);
  adw_message_dialog_set_extra_child (ADW_MESSAGE_DIALOG (dialog), entry);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", _("_Cancel"),
                                    "rename", _("_Rename"), NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "rename",
                                              ADW_RESPONSE_SUGGESTED);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "rename");
  g_object_set_data_full (G_OBJECT (dialog), "chat", g_object_ref (chat), g_object_unref);
  g_object_set_data (G_OBJECT (dialog), "entry", entry);
  g_signal_connect (dialog, "response", G_CALLBACK (rename_response_cb), self);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
rename_chat_action (GtkWidget  *widget,
                    const char *name,
                    GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);

  rename_chat (self, find_chat (self, g_variant_get_string (param, NULL)));
}

static void
rename_current_action (GtkWidget  *widget,
                       const char *name,
                       GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);

  rename_chat (self, self->chat);
}

/* A message row changed something of the chat that is kept (where an answer's boxes go). */
static void
save_current_action (GtkWidget  *widget,
                     const char *name,
                     GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);

  if (self->chat)
    save_chat (self, self->chat);
}

/* Delete, with undo until the toast is gone or the window closes. Chats deleted while a
 * deletion's toast is up join it: one toast says how many ("3 chats deleted") and its Undo
 * brings them all back. One toast, not one each, is also what keeps libadwaita 1.2 standing:
 * a toast of high priority pushing aside one still sliding in crashes it now and then. */

typedef struct
{
  AppWindow *window;
  AppChatStore *store;
  GPtrArray *chats;              /* AppChat*, in the order they were deleted */
  AdwToast *toast;               /* not owned: the overlay's, until it is dismissed */
  gboolean undone;
  gboolean finished;
} PendingDelete;

static void
pending_delete_free (gpointer data,
                     GClosure *closure)
{
  PendingDelete *d = data;

  if (d->window->pending_deletes)
    g_ptr_array_remove (d->window->pending_deletes, d);
  if (d->window->open_delete == d)
    d->window->open_delete = NULL;
  g_ptr_array_unref (d->chats);
  g_object_unref (d->store);
  g_object_unref (d->window);
  g_free (d);
}

static void
purge_done_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!app_chat_store_purge_finish (APP_CHAT_STORE (source), result, &error))
    g_warning ("cannot delete the chat file: %s", error->message);
}

/* A deletion no longer open to more chats: its toast is going, or it was undone. */
static void
close_delete (PendingDelete *d)
{
  if (d->window->open_delete == d)
    d->window->open_delete = NULL;
  if (d->window->pending_deletes)
    g_ptr_array_remove (d->window->pending_deletes, d);
}

/* No undo any more: the chats' files go, and with them the images nothing else shows. */
static void
finish_delete (PendingDelete *d)
{
  if (d->undone || d->finished)
    return;
  d->finished = TRUE;
  for (guint i = 0; i < d->chats->len; i++)
    {
      AppChat *chat = g_ptr_array_index (d->chats, i);

      app_chat_store_purge_async (d->store, chat, NULL, purge_done_cb, NULL);
      if (d->window->composer)
        app_composer_forget_draft (d->window->composer, app_chat_get_id (chat));
    }
  close_delete (d);
}

static void
undo_delete_cb (AdwToast      *t,
                PendingDelete *d)
{
  if (d->finished)
    return;
  d->undone = TRUE;
  close_delete (d);
  for (guint i = 0; i < d->chats->len; i++)
    app_chat_store_untrash (d->store, g_ptr_array_index (d->chats, i));
  /* the chat deleted last, as it was shown when it went */
  set_chat (d->window, g_ptr_array_index (d->chats, d->chats->len - 1));
}

static void
delete_dismissed_cb (AdwToast      *t,
                     PendingDelete *d)
{
  finish_delete (d);
}

static void
delete_chat (AppWindow *self,
             AppChat   *chat)
{
  PendingDelete *d = self->open_delete;
  g_autofree char *title = NULL;

  if (!chat)
    return;
  if (chat == self->reply_chat && self->generation)
    g_cancellable_cancel (self->generation);
  if (!d)
    {
      d = g_new0 (PendingDelete, 1);
      d->window = g_object_ref (self);
      d->store = g_object_ref (self->store);
      d->chats = g_ptr_array_new_with_free_func (g_object_unref);
      g_ptr_array_add (self->pending_deletes, d);
    }
  g_ptr_array_add (d->chats, g_object_ref (chat));
  app_chat_store_trash (self->store, chat);
  if (chat == self->chat)
    {
      GListModel *chats = app_chat_store_get_chats (self->store);
      g_autoptr(AppChat) next = g_list_model_get_n_items (chats) ? g_list_model_get_item (chats, 0)
                                                                 : NULL;

      set_chat (self, next);
    }

  if (d->chats->len == 1)
    title = g_markup_printf_escaped (_("“%s” deleted"), app_chat_get_title (chat));
  else
    title = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u chat deleted",
                                          "%u chats deleted", d->chats->len),
                             d->chats->len);
  if (d->toast)
    {
      adw_toast_set_title (d->toast, title);
      return;
    }
  d->toast = adw_toast_new (title);
  adw_toast_set_button_label (d->toast, _("_Undo"));
  adw_toast_set_priority (d->toast, ADW_TOAST_PRIORITY_HIGH);
  g_signal_connect (d->toast, "button-clicked", G_CALLBACK (undo_delete_cb), d);
  /* the toast owns the pending delete: it goes when the toast does */
  g_signal_connect_data (d->toast, "dismissed", G_CALLBACK (delete_dismissed_cb), d,
                         pending_delete_free, 0);
  self->open_delete = d;
  adw_toast_overlay_add_toast (self->toast_overlay, d->toast);
}

static void
delete_chat_action (GtkWidget  *widget,
                    const char *name,
                    GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);

  delete_chat (self, find_chat (self, g_variant_get_string (param, NULL)));
}

static void
delete_current_action (GtkWidget  *widget,
                       const char *name,
                       GVariant   *param)
{
  AppWindow *self = APP_WINDOW (widget);

  delete_chat (self, self->chat);
}

/* ------------------------------------------------------------------------------------------
 * Drops anywhere on the window
 */

static gboolean
drop_cb (GtkDropTarget *target,
         const GValue  *value,
         double         x,
         double         y,
         AppWindow     *self)
{
  app_drop_highlight_set_active (self->drop_highlight, FALSE);
  if (g_strcmp0 (gtk_stack_get_visible_child_name (self->main_stack), "chat") != 0)
    {
      toast (self, _("Open a model folder first, then drop images."));
      return FALSE;
    }
  if (!G_VALUE_HOLDS (value, GDK_TYPE_FILE_LIST))
    return FALSE;
  app_composer_add_files (self->composer, g_value_get_boxed (value));
  app_composer_focus (self->composer);
  return TRUE;
}

/* A picture dropped without a file (from a browser, say): its bytes, read without GTK
 * decoding them (it would use any gdk-pixbuf loader, SVG included); the composer's import
 * decides by their content whether the app reads them. */
typedef struct
{
  AppWindow *self;
  GdkDrop   *drop;
} DropRead;

static void
drop_read_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  DropRead *d = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GInputStream) stream = gdk_drop_read_finish (GDK_DROP (source), result, NULL,
                                                         &error);

  gdk_drop_finish (d->drop, stream ? GDK_ACTION_COPY : 0);
  if (stream)
    {
      app_composer_add_image_stream (d->self->composer, stream, _("Dropped image"));
      app_composer_focus (d->self->composer);
    }
  else
    toast (d->self, error->message);
  g_object_unref (d->self);
  g_object_unref (d->drop);
  g_free (d);
}

static gboolean
drop_bytes_cb (GtkDropTargetAsync *target,
               GdkDrop            *drop,
               double              x,
               double              y,
               AppWindow          *self)
{
  DropRead *d;

  app_drop_highlight_set_active (self->drop_highlight, FALSE);
  /* files are the other target's */
  if (gdk_content_formats_contain_gtype (gdk_drop_get_formats (drop), GDK_TYPE_FILE_LIST))
    return FALSE;
  if (g_strcmp0 (gtk_stack_get_visible_child_name (self->main_stack), "chat") != 0)
    {
      toast (self, _("Open a model folder first, then drop images."));
      return FALSE;
    }
  d = g_new0 (DropRead, 1);
  d->self = g_object_ref (self);
  d->drop = g_object_ref (drop);
  gdk_drop_read_async (drop, (const char **) app_composer_image_mime_types (), G_PRIORITY_DEFAULT,
                       NULL, drop_read_cb, d);
  return TRUE;
}

/* ------------------------------------------------------------------------------------------
 * Files given to the application: `sightline FILE…`, Open With
 */

void
app_window_open_files (AppWindow  *self,
                       GFile     **files,
                       int         n_files)
{
  g_autoslist(GFile) local = NULL;
  g_autofree char *text = NULL;
  AppEngineState state;
  guint n = 0;

  g_return_if_fail (APP_IS_WINDOW (self));

  /* Attached images are read whole and copied into the chat store: files on this computer
   * only, not what a URI can name elsewhere. */
  for (int i = 0; i < n_files; i++)
    {
      if (g_file_is_native (files[i]))
        {
          local = g_slist_append (local, g_object_ref (files[i]));
          n++;
        }
      else
        {
          g_autofree char *uri = g_file_get_uri (files[i]);
          g_autofree char *msg =
            g_strdup_printf (_("“%s” is not on this computer: Sightline opens local files only"),
                             uri);

          toast (self, msg);
        }
    }
  if (!local)
    return;

  /* A new chat, unless the one shown is new and untouched. A search in the sidebar would
   * hide it. */
  gtk_editable_set_text (GTK_EDITABLE (self->search_entry), "");
  text = app_composer_get_text (self->composer);
  if (!self->chat || app_chat_get_n_messages (self->chat) > 0 ||
      app_composer_has_images (self->composer) || g_strstrip (text)[0])
    {
      g_autoptr(AppChat) chat = app_chat_new ();

      app_chat_store_add (self->store, chat);
      set_chat (self, chat);
    }
  app_composer_add_files (self->composer, local);
  adw_leaflet_navigate (self->leaflet, ADW_NAVIGATION_DIRECTION_FORWARD);
  app_composer_focus (self->composer);

  /* Without a model the images wait in the chat's composer; the banner says what to do. */
  state = app_engine_get_state (self->engine);
  if (state == APP_ENGINE_EMPTY || state == APP_ENGINE_FAILED)
    toast (self, g_dngettext (GETTEXT_PACKAGE,
                              "The image waits in a new chat: open a model folder to ask "
                              "about it",
                              "The images wait in a new chat: open a model folder to ask "
                              "about them",
                              n));
}

/* ------------------------------------------------------------------------------------------
 * GObject
 */

static void
show_load_errors (AppWindow *self)
{
  GPtrArray *errors = app_chat_store_get_load_errors (self->store);
  g_autofree char *text = NULL;

  if (!errors || errors->len == 0)
    return;
  text = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE,
                                       "%u chat file could not be read; it was left untouched",
                                       "%u chat files could not be read; they were left "
                                       "untouched",
                                       errors->len),
                          errors->len);
  for (guint i = 0; i < errors->len; i++)
    g_warning ("%s", (const char *) g_ptr_array_index (errors, i));
  toast (self, text);
}

static void
store_loaded_cb (AppWindow *self)
{
  GListModel *chats = app_chat_store_get_chats (self->store);

  if (!self->chat && g_list_model_get_n_items (chats) > 0)
    {
      g_autoptr(AppChat) first = g_list_model_get_item (chats, 0);

      set_chat (self, first);
    }
  show_load_errors (self);
}

static gboolean
app_window_close_request (GtkWindow *window)
{
  AppWindow *self = APP_WINDOW (window);
  int width, height;

  gtk_window_get_default_size (window, &width, &height);
  g_settings_set_int (self->settings, "window-width", width);
  g_settings_set_int (self->settings, "window-height", height);
  g_settings_set_boolean (self->settings, "window-maximized", gtk_window_is_maximized (window));
  interrupt_answer (self);
  /* the draft goes out now, deletions can no longer be undone; the application waits for
   * the files before it exits */
  save_draft_now (self);
  while (self->pending_deletes->len)
    finish_delete (g_ptr_array_index (self->pending_deletes, 0));
  return GTK_WINDOW_CLASS (app_window_parent_class)->close_request (window);
}

AppWindow *
app_window_new (AppApplication *app)
{
  AppWindow *self = g_object_new (APP_TYPE_WINDOW, "application", app, NULL);
  GListModel *chats;
  GtkListItemFactory *factory;
  GtkAdjustment *adj;

  self->app = app;
  self->store = g_object_ref (app_application_get_store (app));
  self->engine = g_object_ref (app_application_get_engine (app));
  self->settings = g_object_ref (app_application_get_settings (app));
  self->models = g_object_ref (app_application_get_models (app));
  self->models_page = app_models_page_new (self->models, self->engine, self->settings);
  app_models_page_set_welcome (APP_MODELS_PAGE (self->models_page), TRUE);
  gtk_stack_add_named (self->main_stack, self->models_page, "models");
  g_signal_connect_object (app_model_manager_get_installed (self->models), "items-changed",
                           G_CALLBACK (update_model_switcher), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (self->settings, "changed::model-folder",
                           G_CALLBACK (update_model_switcher), self, G_CONNECT_SWAPPED);
  update_model_switcher (self);
  app_composer_set_store (self->composer, self->store);
  {
    g_autofree char *image_dir = g_build_filename (app_chat_store_get_data_dir (self->store),
                                                   "images", NULL);

    app_context_bar_set_engine (app_composer_get_context_bar (self->composer), self->engine,
                                self->settings, image_dir);
  }

  gtk_window_set_default_size (GTK_WINDOW (self),
                               g_settings_get_int (self->settings, "window-width"),
                               g_settings_get_int (self->settings, "window-height"));
  if (g_settings_get_boolean (self->settings, "window-maximized"))
    gtk_window_maximize (GTK_WINDOW (self));

  /* the chat list: the store's chats, filtered by the search */
  self->filter = gtk_custom_filter_new (filter_chat, self, NULL);
  self->chat_filter = gtk_filter_list_model_new (
    g_object_ref (app_chat_store_get_chats (self->store)), g_object_ref (GTK_FILTER (self->filter)));
  self->chat_selection = gtk_single_selection_new (g_object_ref (G_LIST_MODEL (self->chat_filter)));
  gtk_single_selection_set_autoselect (self->chat_selection, FALSE);
  gtk_single_selection_set_can_unselect (self->chat_selection, TRUE);
  gtk_list_view_set_model (self->chat_list, GTK_SELECTION_MODEL (self->chat_selection));
  factory = gtk_signal_list_item_factory_new ();
  g_signal_connect (factory, "setup", G_CALLBACK (chat_row_setup_cb), self);
  g_signal_connect (factory, "bind", G_CALLBACK (chat_row_bind_cb), self);
  g_signal_connect (factory, "unbind", G_CALLBACK (chat_row_unbind_cb), self);
  gtk_list_view_set_factory (self->chat_list, factory);
  g_object_unref (factory);
  g_signal_connect_swapped (self->chat_selection, "notify::selected-item",
                            G_CALLBACK (chat_selected_cb), self);
  g_signal_connect_swapped (self->chat_filter, "items-changed", G_CALLBACK (select_current),
                            self);
  g_signal_connect (self->chat_list, "activate", G_CALLBACK (chat_activated_cb), self);
  /* the welcome page is for when there is no chat */
  g_signal_connect_object (app_chat_store_get_chats (self->store), "items-changed",
                           G_CALLBACK (update_page), self, G_CONNECT_SWAPPED);
  g_signal_connect_swapped (self->search_entry, "search-changed",
                            G_CALLBACK (search_changed_cb), self);
  gtk_search_bar_set_key_capture_widget (self->search_bar, GTK_WIDGET (self->sidebar));

  /* the conversation */
  factory = gtk_signal_list_item_factory_new ();
  g_signal_connect (factory, "setup", G_CALLBACK (message_setup_cb), self);
  g_signal_connect (factory, "bind", G_CALLBACK (message_bind_cb), self);
  g_signal_connect (factory, "unbind", G_CALLBACK (message_unbind_cb), self);
  gtk_list_view_set_factory (self->message_list, factory);
  g_object_unref (factory);
  adj = gtk_scrolled_window_get_vadjustment (self->message_scroller);
  g_signal_connect (adj, "value-changed", G_CALLBACK (scroll_value_changed_cb), self);
  g_signal_connect (adj, "changed", G_CALLBACK (scroll_changed_cb), self);
  {
    GtkEventController *scroll =
      gtk_event_controller_scroll_new (GTK_EVENT_CONTROLLER_SCROLL_VERTICAL);
    GtkEventController *keys = gtk_event_controller_key_new ();

    gtk_event_controller_set_propagation_phase (scroll, GTK_PHASE_CAPTURE);
    g_signal_connect (scroll, "scroll", G_CALLBACK (user_scroll_cb), self);
    gtk_widget_add_controller (GTK_WIDGET (self->message_scroller), scroll);
    gtk_event_controller_set_propagation_phase (keys, GTK_PHASE_CAPTURE);
    g_signal_connect (keys, "key-pressed", G_CALLBACK (user_key_cb), self);
    gtk_widget_add_controller (GTK_WIDGET (self->message_scroller), keys);
  }

  g_signal_connect_swapped (self->composer, "send", G_CALLBACK (send_cb), self);
  g_signal_connect_swapped (self->composer, "stop", G_CALLBACK (stop_cb), self);
  g_signal_connect_swapped (self->composer, "import-failed", G_CALLBACK (import_failed_cb), self);

  g_signal_connect_object (self->engine, "notify::state", G_CALLBACK (update_page), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (self->engine, "notify::error-advice", G_CALLBACK (update_page), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (self->settings, "changed::model-folder", G_CALLBACK (update_page),
                           self, G_CONNECT_SWAPPED);
  app_model_banner_set_engine (self->model_banner, self->engine, self->settings);

  g_signal_connect_swapped (self->composer, "changed", G_CALLBACK (composer_changed_cb), self);

  chats = app_chat_store_get_chats (self->store);
  if (g_list_model_get_n_items (chats) > 0)
    {
      g_autoptr(AppChat) first = g_list_model_get_item (chats, 0);

      set_chat (self, first);
    }
  else
    {
      update_chat_view (self);
    }
  update_page (self);
  /* the chats are read in a thread as the application starts */
  if (app_chat_store_get_loaded (self->store))
    show_load_errors (self);
  else
    g_signal_connect_object (self->store, "notify::loaded", G_CALLBACK (store_loaded_cb), self,
                             G_CONNECT_SWAPPED);
  return self;
}

static void
app_window_dispose (GObject *object)
{
  AppWindow *self = APP_WINDOW (object);

  if (self->store)
    interrupt_answer (self);
  if (self->generation)
    g_cancellable_cancel (self->generation);
  if (self->chat)
    g_signal_handlers_disconnect_by_data (self->chat, self);
  stop_scroll_wait (self);
  g_clear_object (&self->import_errors);
  save_draft_now (self);
  g_clear_pointer (&self->pending_deletes, g_ptr_array_unref);
  g_clear_object (&self->generation);
  g_clear_object (&self->reply);
  g_clear_object (&self->reply_chat);
  g_clear_pointer (&self->edits, g_hash_table_unref);
  g_clear_object (&self->chat);
  g_clear_object (&self->chat_selection);
  g_clear_object (&self->chat_filter);
  g_clear_object (&self->filter);
  g_clear_object (&self->store);
  g_clear_object (&self->engine);
  g_clear_object (&self->settings);
  g_clear_object (&self->models);
  gtk_widget_dispose_template (GTK_WIDGET (self), APP_TYPE_WINDOW);
  G_OBJECT_CLASS (app_window_parent_class)->dispose (object);
}

static void
app_window_get_property (GObject    *object,
                         guint       prop_id,
                         GValue     *value,
                         GParamSpec *pspec)
{
  AppWindow *self = APP_WINDOW (object);

  switch (prop_id)
    {
    case PROP_ANSWERING_CHAT:
      g_value_set_object (value, self->reply_chat);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_window_class_init (AppWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  GtkWindowClass *window_class = GTK_WINDOW_CLASS (klass);

  object_class->dispose = app_window_dispose;
  object_class->get_property = app_window_get_property;
  window_class->close_request = app_window_close_request;

  /* the chat whose answer is being written, NULL when none is */
  properties[PROP_ANSWERING_CHAT] =
    g_param_spec_object ("answering-chat", NULL, NULL, APP_TYPE_CHAT,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  g_type_ensure (APP_TYPE_COMPOSER);
  g_type_ensure (APP_TYPE_MODEL_BANNER);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/sightline/Sightline/app-window.ui");
  gtk_widget_class_bind_template_child (widget_class, AppWindow, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, leaflet);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, sidebar);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, content);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, search_button);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, search_bar);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, search_entry);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, sidebar_stack);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, chat_list);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, chat_title);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, main_stack);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, welcome_page);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, model_banner);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, model_button);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, model_label);
  gtk_widget_class_bind_template_callback (widget_class, app_window_not);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, model_menu_models);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, chat_stack);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, message_scroller);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, message_list);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, edit_bar);
  gtk_widget_class_bind_template_child (widget_class, AppWindow, composer);

  gtk_widget_class_install_action (widget_class, "win.new-chat", NULL, new_chat_action);
  gtk_widget_class_install_action (widget_class, "win.search", NULL, search_action);
  gtk_widget_class_install_action (widget_class, "win.show-chats", NULL, show_chats_action);
  gtk_widget_class_install_action (widget_class, "win.stop", NULL, stop_action);
  /* Escape stops the answer only when what has focus does not take it first (the search
   * entry closes the search): a window binding, not an application accelerator, which would
   * run before the focused widget */
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "win.stop", NULL);
  gtk_widget_class_install_action (widget_class, "win.attach", NULL, attach_action);
  gtk_widget_class_install_action (widget_class, "win.grounded-caption", NULL,
                                   prompt_kind_action);
  gtk_widget_class_install_action (widget_class, "win.find-in-image", NULL, prompt_kind_action);
  gtk_widget_class_install_action (widget_class, "win.open-model", NULL, open_model_action);
  gtk_widget_class_install_action (widget_class, "win.regenerate", "u", regenerate_action);
  gtk_widget_class_install_action (widget_class, "win.continue", "u", continue_action);
  gtk_widget_class_install_action (widget_class, "win.show-version", "(uu)",
                                   show_version_action);
  gtk_widget_class_install_action (widget_class, "win.cancel-load", NULL, cancel_load_action);
  gtk_widget_class_install_action (widget_class, "win.reload-model", NULL, reload_model_action);
  gtk_widget_class_install_action (widget_class, "win.export-chat", "(ss)", export_chat_action);
  gtk_widget_class_install_action (widget_class, "win.export-current", "s",
                                   export_current_action);
  gtk_widget_class_install_action (widget_class, "win.edit-message", "u", edit_message_action);
  gtk_widget_class_install_action (widget_class, "win.cancel-edit", NULL, cancel_edit_action);
  gtk_widget_class_install_action (widget_class, "win.rename-chat", "s", rename_chat_action);
  gtk_widget_class_install_action (widget_class, "win.delete-chat", "s", delete_chat_action);
  gtk_widget_class_install_action (widget_class, "win.rename-current", NULL,
                                   rename_current_action);
  gtk_widget_class_install_action (widget_class, "win.save-current", NULL, save_current_action);
  gtk_widget_class_install_action (widget_class, "win.delete-current", NULL,
                                   delete_current_action);
}

static void
app_window_init (AppWindow *self)
{
  GtkDropTarget *drop;
  GtkDropTargetAsync *drop_bytes;
  GdkContentFormats *image_formats, *all_formats;
  GType types[] = { GDK_TYPE_FILE_LIST };
  GtkWidget *overlay, *content;

  gtk_widget_init_template (GTK_WIDGET (self));
  /* the nightly build says so: libadwaita stripes its header bars */
  if (g_str_equal (APP_PROFILE, "development"))
    gtk_widget_add_css_class (GTK_WIDGET (self), "devel");
  self->stick_to_bottom = TRUE;
  self->edits = g_hash_table_new_full (g_direct_hash, g_direct_equal, g_object_unref,
                                       g_object_unref);
  self->import_errors = app_import_errors_new (self->toast_overlay);
  self->pending_deletes = g_ptr_array_new ();

  drop = gtk_drop_target_new (G_TYPE_INVALID, GDK_ACTION_COPY);
  gtk_drop_target_set_gtypes (drop, types, G_N_ELEMENTS (types));
  g_signal_connect (drop, "drop", G_CALLBACK (drop_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (drop));
  image_formats = gdk_content_formats_new ((const char **) app_composer_image_mime_types (),
                                           g_strv_length ((char **) app_composer_image_mime_types ()));
  drop_bytes = gtk_drop_target_async_new (gdk_content_formats_ref (image_formats),
                                          GDK_ACTION_COPY);
  g_signal_connect (drop_bytes, "drop", G_CALLBACK (drop_bytes_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (drop_bytes));

  /* while images are dragged over the window, over everything it shows, what a drop does */
  self->drop_highlight = app_drop_highlight_new ();
  all_formats = gdk_content_formats_union (gdk_content_formats_ref (
                                             gtk_drop_target_get_formats (drop)),
                                           image_formats);
  app_drop_highlight_track (self->drop_highlight, GTK_WIDGET (self), all_formats);
  gdk_content_formats_unref (all_formats);
  gdk_content_formats_unref (image_formats);
  overlay = gtk_overlay_new ();
  content = g_object_ref (adw_application_window_get_content (ADW_APPLICATION_WINDOW (self)));
  adw_application_window_set_content (ADW_APPLICATION_WINDOW (self), overlay);
  gtk_overlay_set_child (GTK_OVERLAY (overlay), content);
  gtk_overlay_add_overlay (GTK_OVERLAY (overlay), GTK_WIDGET (self->drop_highlight));
  g_object_unref (content);
}
