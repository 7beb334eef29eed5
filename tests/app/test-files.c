/* test-files.c - what a person made is kept, and what they deleted is gone: the real
 * application under Xvfb, with a golden mini model.
 *
 * Before the application starts, the data folder gets chats made through the store: one whose
 * image file is missing, one with an image of its own, two sharing an image, one to delete and
 * bring back, two for drafts, and an image no chat refers to, left weeks ago. Then, through the
 * window: the forgotten image is swept at startup and the others stay; the missing image shows
 * as missing, a follow-up is answered without it, and Remove takes it out of the question;
 * deleting a chat deletes its own image once the undo toast has gone, not the one it shares;
 * an undone deletion keeps everything; an attachment removed before sending is deleted, unless a chat shows
 * it; and drafts (text, helper and images) stay with their chat when switching chats and come
 * back after the application is started again, a new chat holding only a draft included.
 */
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <utime.h>

#include "app-config.h"
#include "app-composer.h"
#include "ui-find.h"
#include "ui-harness.h"

#define TIMEOUT_S 120
#define MISSING_ID "abababababababababababababababababababababababababababababababab.png"

static AppApplication *app;
static const char *test_program;

/* The chats the fixture made, by role */
static char *missing_chat;
static char *own_chat;
static char *shared_chat_a;
static char *shared_chat_b;
static char *undo_chat;
static char *draft_chat_x;
static char *draft_chat_y;
/* and images */
static char *own_image;
static char *shared_image;
static char *undo_image;
static char *orphan_image;

static char *
data_path (const char *folder,
           const char *name)
{
  return g_build_filename (g_get_user_data_dir (), "sightline", folder, name, NULL);
}

static char *
image_path (const char *id)
{
  return data_path ("images", id);
}

static char *
chat_file (const char *id)
{
  g_autofree char *name = g_strconcat (id, ".json", NULL);

  return data_path ("chats", name);
}

static gboolean
file_exists (const char *path)
{
  return g_file_test (path, G_FILE_TEST_IS_REGULAR);
}

static gboolean
file_gone (gpointer path)
{
  return !g_file_test (path, G_FILE_TEST_EXISTS);
}

/* ------------------------------------------------------------------------------------------
 * The data folder, as an earlier session left it
 */

static char *
add_chat (AppChatStore *store,
          const char   *question,
          const char   *image_id)
{
  g_autoptr(AppChat) chat = app_chat_new ();
  g_autoptr(AppMessage) q = app_message_new (APP_ROLE_USER, question);
  g_autoptr(AppMessage) a = app_message_new (APP_ROLE_ASSISTANT, "An answer.");
  const char *images[] = { image_id, NULL };
  g_autoptr(GError) error = NULL;

  if (image_id)
    app_message_set_images (q, images);
  app_chat_append (chat, q);
  app_chat_append (chat, a);
  app_chat_store_add (store, chat);
  if (!app_chat_store_save (store, chat, &error))
    g_error ("%s", error->message);
  return g_strdup (app_chat_get_id (chat));
}

static char *
import (AppChatStore *store,
        const char   *name)
{
  g_autofree char *path = ui_harness_golden_image (name);
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GError) error = NULL;
  char *id = app_chat_store_import_image_file (store, file, &error);

  if (!id)
    g_error ("%s", error->message);
  return id;
}

static void
make_data_folder (void)
{
  g_autofree char *data = g_build_filename (g_get_user_data_dir (), "sightline", NULL);
  g_autoptr(AppChatStore) store = app_chat_store_new (data);
  g_autofree char *orphan = NULL;
  struct utimbuf old;

  app_chat_store_load (store);
  own_image = import (store, "multi_image_2.png");
  shared_image = import (store, "visual_grounding_1.png");
  undo_image = import (store, "vqa_1.jpg");
  orphan_image = import (store, "monday.png");

  missing_chat = add_chat (store, "What is in the picture?", MISSING_ID);
  own_chat = add_chat (store, "What grows here?", own_image);
  shared_chat_a = add_chat (store, "How many giraffes?", shared_image);
  shared_chat_b = add_chat (store, "How tall are they?", shared_image);
  undo_chat = add_chat (store, "What does the sign say?", undo_image);
  draft_chat_x = add_chat (store, "First question of X", NULL);
  draft_chat_y = add_chat (store, "First question of Y", NULL);

  /* an image a chat deleted long ago by a version that kept its images */
  orphan = image_path (orphan_image);
  old.actime = old.modtime = g_get_real_time () / G_USEC_PER_SEC - 30 * 24 * 3600;
  g_assert_no_errno (g_utime (orphan, &old));
}

/* ------------------------------------------------------------------------------------------
 * The window
 */

static GtkWindow *
main_window (void)
{
  GList *windows = gtk_application_get_windows (GTK_APPLICATION (app));

  g_assert_nonnull (windows);
  return windows->data;
}

static AppComposer *
composer (void)
{
  return APP_COMPOSER (ui_harness_find_widget (GTK_WIDGET (main_window ()), APP_TYPE_COMPOSER,
                                               0));
}

static guint
n_chats (void)
{
  return g_list_model_get_n_items (app_chat_store_get_chats (app_application_get_store (app)));
}

/* Chooses a chat in the sidebar, as a click does. */
static void
select_chat (const char *id)
{
  GtkWidget *window = GTK_WIDGET (main_window ());
  GtkListView *list = ui_find_chat_list (window);

  g_assert_nonnull (list);
  gtk_single_selection_set_selected (GTK_SINGLE_SELECTION (gtk_list_view_get_model (list)),
                                     ui_find_chat_position (window,
                                                            ui_harness_find_chat (app, id)));
  ui_harness_spin (0.1);
}
/* The first shown widget under `root` with the CSS class. */
static gboolean
shows_css_class (GtkWidget     *w,
                 gconstpointer  css_class)
{
  return gtk_widget_has_css_class (w, css_class) && gtk_widget_get_mapped (w);
}

static GtkWidget *
find_class (GtkWidget  *root,
            const char *css_class)
{
  return ui_find_visible (root, shows_css_class, css_class);
}

/* The first shown button under `root` whose label or tooltip is `text`. */
static gboolean
is_button_for (GtkWidget     *w,
               gconstpointer  text)
{
  return GTK_IS_BUTTON (w) && (g_strcmp0 (gtk_button_get_label (GTK_BUTTON (w)), text) == 0 ||
                               g_strcmp0 (gtk_widget_get_tooltip_text (w), text) == 0);
}

static GtkWidget *
find_button (GtkWidget  *root,
             const char *text)
{
  return ui_find_visible (root, is_button_for, text);
}

static gboolean
missing_tile_shown (gpointer data)
{
  return find_class (GTK_WIDGET (main_window ()), "missing-image") != NULL;
}

static AppMessage *
last_message (const char *chat_id)
{
  AppChat *chat = ui_harness_find_chat (app, chat_id);

  g_assert_nonnull (chat);
  return ui_harness_last_message (chat);
}

static gboolean
answer_done (gpointer data)
{
  g_autoptr(AppMessage) m = last_message (data);

  return ui_harness_answer_ended (m);
}

static gboolean
images_ready (gpointer data)
{
  g_auto(GStrv) ids = app_composer_get_images (composer ());

  return !app_composer_is_importing (composer ()) &&
         g_strv_length (ids) == GPOINTER_TO_UINT (data);
}

static void
attach (const char *name)
{
  g_autofree char *path = ui_harness_golden_image (name);
  g_autoptr(GFile) file = g_file_new_for_path (path);
  GSList *files = g_slist_append (NULL, file);
  g_auto(GStrv) before = app_composer_get_images (composer ());

  app_composer_add_files (composer (), files);
  g_slist_free (files);
  ui_harness_wait_for (images_ready, GUINT_TO_POINTER (g_strv_length (before) + 1),
                       "the attachment");
}

/* The question's images in the chat's file on disk. */
static guint
images_on_disk (const char *chat_id,
                guint       message)
{
  g_autofree char *path = chat_file (chat_id);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) error = NULL;
  JsonArray *messages;

  if (!json_parser_load_from_file (parser, path, &error))
    g_error ("%s", error->message);
  messages = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                           "messages");
  return json_array_get_length (json_object_get_array_member (
    json_array_get_object_element (messages, message), "images"));
}

static gboolean
question_has_no_image_on_disk (gpointer data)
{
  return images_on_disk (data, 0) == 0;
}

static gboolean
chat_loaded (gpointer id)
{
  return ui_harness_find_chat (app, id) != NULL;
}

/* The window, the model ready and the chats read (the one named `id` among them). Each test
 * starts with it, so that each can run alone (-p). */
static GtkWindow *
start (const char *id)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (app));

  if (window)
    return window;
  g_application_activate (G_APPLICATION (app));
  window = gtk_application_get_active_window (GTK_APPLICATION (app));
  g_assert_nonnull (window);
  gtk_window_set_default_size (window, 1100, 760);
  ui_harness_wait_ready (app, TIMEOUT_S);
  ui_harness_wait_for (chat_loaded, (gpointer) id, "the chats");
  return window;
}

/* ------------------------------------------------------------------------------------------
 * Tests
 */

/* At startup, an image no chat refers to is deleted; the chats' images stay. */
static void
test_startup_sweep (void)
{
  g_autofree char *orphan = image_path (orphan_image);
  g_autofree char *own = image_path (own_image);
  g_autofree char *shared = image_path (shared_image);
  g_autofree char *undo = image_path (undo_image);

  start (draft_chat_y);
  g_assert_cmpuint (n_chats (), ==, 7);
  ui_harness_wait_for (file_gone, orphan, "the forgotten image to be swept");
  g_assert_true (file_exists (own));
  g_assert_true (file_exists (shared));
  g_assert_true (file_exists (undo));
}

/* A chat whose image file is gone: shown as missing, and the conversation goes on. */
static void
test_missing_image (void)
{
  AppComposer *c;
  GtkWidget *tile, *remove;
  g_autoptr(AppMessage) answer = NULL;

  start (missing_chat);
  select_chat (missing_chat);
  c = composer ();
  ui_harness_wait_for (missing_tile_shown, NULL, "the missing image's tile");
  tile = find_class (GTK_WIDGET (main_window ()), "missing-image");
  g_assert_nonnull (find_button (tile, "_Remove"));
  g_assert_nonnull (find_button (tile, "Re_place…"));

  app_composer_set_text (c, "And what colour is it?");
  g_signal_emit_by_name (c, "send");
  ui_harness_wait_for (answer_done, missing_chat, "the follow-up's answer");
  answer = last_message (missing_chat);
  if (app_message_get_state (answer) != APP_MESSAGE_COMPLETE)
    g_error ("the follow-up ended in state %d: %s", app_message_get_state (answer),
             app_message_get_error (answer));
  g_assert_nonnull (app_message_get_note (answer));
  g_assert_nonnull (strstr (app_message_get_note (answer), "missing"));

  /* Remove takes it out of the question, in the chat file too */
  tile = find_class (GTK_WIDGET (main_window ()), "missing-image");
  remove = find_button (tile, "_Remove");
  g_signal_emit_by_name (remove, "clicked");
  ui_harness_wait_for (question_has_no_image_on_disk, missing_chat,
                       "the chat saved without the image");
  g_assert_false (missing_tile_shown (NULL));
}

static gboolean
undo_shown (gpointer data)
{
  return find_button (GTK_WIDGET (main_window ()), "_Undo") != NULL;
}

/* Deleting a chat deletes its own image once undo is no longer offered; a shared one stays,
 * and so does everything of a deletion undone. */
static void
test_delete_chat (void)
{
  g_autofree char *own = image_path (own_image);
  g_autofree char *shared = image_path (shared_image);
  g_autofree char *undo = image_path (undo_image);
  g_autofree char *own_file = chat_file (own_chat);
  g_autofree char *shared_file = chat_file (shared_chat_a);
  g_autofree char *undo_file = chat_file (undo_chat);
  GtkWindow *window = start (undo_chat);

  /* deleted, and brought back with Undo */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.delete-chat", "s",
                                             undo_chat));
  g_assert_null (ui_harness_find_chat (app, undo_chat));
  ui_harness_wait_for (undo_shown, NULL, "the Undo button");
  g_signal_emit_by_name (find_button (GTK_WIDGET (window), "_Undo"), "clicked");
  g_assert_nonnull (ui_harness_find_chat (app, undo_chat));

  /* deleted for good */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.delete-chat", "s",
                                             own_chat));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.delete-chat", "s",
                                             shared_chat_a));

  /* undo is still possible for the others: everything is there */
  g_assert_true (file_exists (own));
  g_assert_true (file_exists (own_file));
  /* their toasts time out one after the other */
  ui_harness_wait_for (file_gone, own_file, "the deleted chat's file to go");
  ui_harness_wait_for (file_gone, own, "the deleted chat's image to go");
  ui_harness_wait_for (file_gone, shared_file, "the second deleted chat's file to go");
  ui_harness_spin (1);
  g_assert_true (file_exists (shared));
  g_assert_null (ui_harness_find_chat (app, own_chat));
  g_assert_null (ui_harness_find_chat (app, shared_chat_a));
  g_assert_true (file_exists (undo_file));
  g_assert_true (file_exists (undo));
  g_assert_nonnull (ui_harness_find_chat (app, undo_chat));
}

static gboolean
toast_gone (gpointer data)
{
  return !find_button (GTK_WIDGET (main_window ()), "_Undo");
}

/* Chats deleted one after the other while the first one's toast is still up: one toast says how
 * many, and its Undo brings them all back. (libadwaita 1.2 crashed now and then when a toast
 * of high priority pushed another one aside while it was still sliding in, as a second
 * deletion's toast did.) */
static void
test_delete_several (void)
{
  AppChatStore *store;
  GtkWindow *window = start (undo_chat);
  char *ids[3] = { NULL };

  store = app_application_get_store (app);
  for (int round = 0; round < 4; round++)
    {
      for (int i = 0; i < 3; i++)
        {
          g_autoptr(AppChat) chat = app_chat_new ();
          g_autoptr(AppMessage) question = app_message_new (APP_ROLE_USER, "To be deleted");

          app_chat_append (chat, question);
          app_chat_store_add (store, chat);
          g_free (ids[i]);
          ids[i] = g_strdup (app_chat_get_id (chat));
        }
      ui_harness_wait_for (toast_gone, NULL, "no toast");
      for (int i = 0; i < 3; i++)
        {
          g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.delete-chat", "s",
                                                     ids[i]));
          /* the next one at once, or while the toast slides in, or once it is there */
          ui_harness_spin (0.05 * round * i);
        }
      ui_harness_wait_for (undo_shown, NULL, "the Undo button");
      g_assert_true (ui_find_toast (GTK_WIDGET (window), "3 chats deleted"));
      for (int i = 0; i < 3; i++)
        g_assert_null (ui_harness_find_chat (app, ids[i]));
      if (round % 2 == 0)
        {
          g_signal_emit_by_name (find_button (GTK_WIDGET (window), "_Undo"), "clicked");
          for (int i = 0; i < 3; i++)
            g_assert_nonnull (ui_harness_find_chat (app, ids[i]));
        }
    }
  ui_harness_wait_for (toast_gone, NULL, "no toast");
  for (int i = 0; i < 3; i++)
    g_free (ids[i]);
}

/* An attachment removed before sending is deleted, unless a chat shows it. */
static void
test_remove_attachment (void)
{
  g_auto(GStrv) ids = NULL;
  g_autofree char *path = NULL;

  start (draft_chat_x);
  select_chat (draft_chat_x);
  attach ("tiny_gray.png");
  ids = app_composer_get_images (composer ());
  path = image_path (ids[0]);
  g_assert_true (file_exists (path));
  g_signal_emit_by_name (find_button (GTK_WIDGET (composer ()), "Remove Image"), "clicked");
  g_assert_false (app_composer_has_images (composer ()));
  ui_harness_wait_for (file_gone, path, "the removed attachment to be deleted");

  /* the same picture as a chat's: removing it from the composer leaves the chat's */
  attach ("visual_grounding_1.png");
  g_clear_pointer (&ids, g_strfreev);
  ids = app_composer_get_images (composer ());
  g_assert_cmpstr (ids[0], ==, shared_image);
  g_signal_emit_by_name (find_button (GTK_WIDGET (composer ()), "Remove Image"), "clicked");
  ui_harness_spin (2);
  g_clear_pointer (&path, g_free);
  path = image_path (shared_image);
  g_assert_true (file_exists (path));
}

static char *
composer_text (void)
{
  return app_composer_get_text (composer ());
}

static gboolean
window_gone (gpointer data)
{
  return gtk_application_get_windows (GTK_APPLICATION (app)) == NULL;
}

/* Drafts stay with their chat when switching, and come back after a restart. */
static void
test_drafts (void)
{
  g_autofree char *x_image = NULL;
  g_autofree char *new_chat = NULL;

  /* X: a question being written, with a picture, as a Find */
  start (draft_chat_x);
  select_chat (draft_chat_x);
  app_composer_set_text (composer (), "Where is the red one?");
  app_composer_set_prompt_kind (composer (), APP_PROMPT_FIND);
  attach ("tall_palette.png");
  {
    g_auto(GStrv) ids = app_composer_get_images (composer ());

    x_image = g_strdup (ids[0]);
  }

  /* Y shows none of it, and gets its own */
  select_chat (draft_chat_y);
  {
    g_autofree char *text = composer_text ();

    g_assert_cmpstr (text, ==, "");
    g_assert_false (app_composer_has_images (composer ()));
    g_assert_cmpint (app_composer_get_prompt_kind (composer ()), ==, APP_PROMPT_PLAIN);
  }
  app_composer_set_text (composer (), "Y's own question");

  /* back to X: its draft, whole */
  select_chat (draft_chat_x);
  {
    g_autofree char *text = composer_text ();
    g_auto(GStrv) ids = app_composer_get_images (composer ());

    g_assert_cmpstr (text, ==, "Where is the red one?");
    g_assert_cmpint (app_composer_get_prompt_kind (composer ()), ==, APP_PROMPT_FIND);
    g_assert_cmpuint (g_strv_length (ids), ==, 1);
    g_assert_cmpstr (ids[0], ==, x_image);
  }

  /* a new chat with only a draft */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (main_window ()), "win.new-chat", NULL));
  app_composer_set_text (composer (), "Only a draft so far");
  {
    g_autoptr(AppChat) newest = g_list_model_get_item (
      app_chat_store_get_chats (app_application_get_store (app)), 0);

    new_chat = g_strdup (app_chat_get_id (newest));
  }
  g_assert_cmpstr (new_chat, !=, draft_chat_x);

  /* the application quits, as Ctrl+Q does (its main loop would end there, and
   * g_application_run() would shut it down), and another process starts it again */
  g_action_group_activate_action (G_ACTION_GROUP (app), "quit", NULL);
  ui_harness_wait_for (window_gone, NULL, "the window to close");
  g_signal_emit_by_name (app, "shutdown");
  {
    const char *child_argv[] = { test_program, "--after-restart", new_chat, draft_chat_x,
                                 draft_chat_y, x_image, NULL };
    g_autoptr(GError) error = NULL;
    int status;

    if (!g_spawn_sync (NULL, (char **) child_argv, NULL, G_SPAWN_CHILD_INHERITS_STDIN, NULL,
                       NULL, NULL, NULL, &status, &error))
      g_error ("cannot start the application again: %s", error->message);
    if (!g_spawn_check_wait_status (status, &error))
      g_error ("after the restart: %s", error->message);
  }
}

/* The second process: the same data folder, a new start. */
static int
check_after_restart (char **ids)
{
  const char *new_chat = ids[0], *x = ids[1], *y = ids[2], *x_image = ids[3];

  gtk_init ();
  app = ui_harness_app_new ();
  start (new_chat);

  /* the new chat that held only a draft is there, with it */
  select_chat (new_chat);
  {
    g_autofree char *text = composer_text ();
    AppChat *chat = ui_harness_find_chat (app, new_chat);

    g_assert_cmpstr (text, ==, "Only a draft so far");
    g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 0);
  }
  select_chat (x);
  {
    g_autofree char *text = composer_text ();
    g_auto(GStrv) ids_now = NULL;
    g_autofree char *path = image_path (x_image);

    ui_harness_wait_for (images_ready, GUINT_TO_POINTER (1), "X's image");
    ids_now = app_composer_get_images (composer ());
    g_assert_cmpstr (text, ==, "Where is the red one?");
    g_assert_cmpint (app_composer_get_prompt_kind (composer ()), ==, APP_PROMPT_FIND);
    g_assert_cmpstr (ids_now[0], ==, x_image);
    g_assert_true (file_exists (path));
  }
  select_chat (y);
  {
    g_autofree char *text = composer_text ();

    g_assert_cmpstr (text, ==, "Y's own question");
    g_assert_false (app_composer_has_images (composer ()));
  }
  g_printerr ("the drafts came back after the restart\n");
  return 0;
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = NULL;
  g_autoptr(GSettings) settings = NULL;
  int rc;

  if (argc == 6 && g_str_equal (argv[1], "--after-restart"))
    return check_after_restart (argv + 2);
  home = ui_harness_isolate ("files");
  test_program = argv[0];
  gtk_test_init (&argc, &argv, NULL);
  settings = g_settings_new (APP_ID);
  g_settings_set (settings, "max-new-tokens", "mi", TRUE, 8);
  make_data_folder ();
  app = ui_harness_app_new ();
  g_test_add_func ("/app/files/startup-sweep", test_startup_sweep);
  g_test_add_func ("/app/files/missing-image", test_missing_image);
  g_test_add_func ("/app/files/delete-chat", test_delete_chat);
  g_test_add_func ("/app/files/delete-several", test_delete_several);
  g_test_add_func ("/app/files/remove-attachment", test_remove_attachment);
  g_test_add_func ("/app/files/drafts", test_drafts);
  rc = g_test_run ();
  /* the application has quit (drafts); it stays until the process ends */
  g_free (missing_chat);
  g_free (own_chat);
  g_free (shared_chat_a);
  g_free (shared_chat_b);
  g_free (undo_chat);
  g_free (draft_chat_x);
  g_free (draft_chat_y);
  g_free (own_image);
  g_free (shared_image);
  g_free (undo_image);
  g_free (orphan_image);
  return rc;
}
