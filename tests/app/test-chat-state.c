/* test-chat-state.c - what the window shows of each chat, under Xvfb with the mini model.
 *
 * An answer belongs to its chat: while chat A answers, chat B shows a send button (that says
 * why it cannot send), not a Stop button, Escape there does not stop A, and the sidebar marks
 * A as answering; back in A, Stop stops it. While the model reads a question's images, the
 * answer shows a progress bar saying which image and tile it is on. In a narrow window,
 * choosing the chat already selected (click or Enter) goes back to the conversation. And a
 * chat exported from its menu as Markdown (its images copied beside it) and as JSON.
 */
#include <json-glib/json-glib.h>
#include <string.h>

#include "app-composer.h"
#include "ui-find.h"
#include "ui-harness.h"

#define TIMEOUT_S 120
#define FIXTURE_ID "a6032475-84ba-4cf4-9cb2-2b99a75b6b26"
#define GIRAFFES "e315513b79cbf2387da8a27f06ced62351c2f8f98823c49e2202b75a52c4b055.png"
#define CORN "59363d52805cc6e80f53ead82b6a3ee564f30bddcf891bc3ac60c5d8a2f54cc2.png"

static AppApplication *app;
static char *home;

static GtkWidget *
window (void)
{
  return GTK_WIDGET (gtk_application_get_active_window (GTK_APPLICATION (app)));
}

static AppComposer *
composer (void)
{
  return APP_COMPOSER (ui_find_any (window (), APP_TYPE_COMPOSER));
}

static AppChatStore *
store (void)
{
  return app_application_get_store (app);
}

static AppChat *
find_chat (const char *id)
{
  AppChat *chat = ui_harness_find_chat (app, id);

  if (!chat)
    g_error ("no chat %s", id);
  return chat;
}

static GtkSingleSelection *
chat_selection (void)
{
  GtkListView *list = ui_find_chat_list (window ());

  g_assert_nonnull (list);
  return GTK_SINGLE_SELECTION (gtk_list_view_get_model (list));
}

/* As a click in the sidebar does. */
static void
select_chat (AppChat *chat)
{
  gtk_single_selection_set_selected (chat_selection (), ui_find_chat_position (window (), chat));
}

static gboolean
streaming (gpointer data)
{
  g_autoptr(AppMessage) m = ui_harness_last_message (data);

  return app_message_get_state (m) == APP_MESSAGE_STREAMING && app_message_get_text (m)[0];
}

static gboolean
answered (gpointer data)
{
  g_autoptr(AppMessage) m = ui_harness_last_message (data);

  return ui_harness_answer_settled (m);
}

static gboolean
images_ready (gpointer data)
{
  g_auto(GStrv) ids = app_composer_get_images (composer ());

  return !app_composer_is_importing (composer ()) &&
         g_strv_length (ids) == GPOINTER_TO_UINT (data);
}

/* A new chat, shown, with `question` sent (and `images` attached first). */
static AppChat *
ask_in_new_chat (const char  *question,
                 const char **images)
{
  GSList *files = NULL;
  guint n = 0;
  AppChat *chat;

  g_assert_true (gtk_widget_activate_action (window (), "win.new-chat", NULL));
  for (; images && images[n]; n++)
    files = g_slist_append (files, g_file_new_for_path (images[n]));
  if (files)
    {
      app_composer_add_files (composer (), files);
      g_slist_free_full (files, g_object_unref);
      ui_harness_wait_for (images_ready, GUINT_TO_POINTER (n), "the images");
    }
  app_composer_set_text (composer (), question);
  g_signal_emit_by_name (composer (), "send");
  chat = g_list_model_get_item (app_chat_store_get_chats (store ()), 0);
  g_assert_cmpstr (app_chat_get_title (chat), ==, question);
  return chat;
}

static gboolean
row_shown (gpointer title)
{
  return ui_find_label (GTK_WIDGET (ui_find_chat_list (window ())), title) != NULL;
}

/* The spinner in the sidebar row of the chat titled `title`, if shown. */
static GtkWidget *
row_spinner (const char *title)
{
  GtkWidget *label;

  ui_harness_wait_for (row_shown, (gpointer) title, title);
  label = ui_find_label (GTK_WIDGET (ui_find_chat_list (window ())), title);
  return ui_find_type (gtk_widget_get_parent (label), GTK_TYPE_SPINNER);
}

static const char *
send_icon (void)
{
  return gtk_button_get_icon_name (GTK_BUTTON (ui_find_send_button (GTK_WIDGET (composer ()))));
}

/* 1. An answer in chat A: chat B shows no Stop and cannot stop it; the sidebar marks A. */
static void
test_answer_per_chat (void)
{
  AppChat *b = find_chat (FIXTURE_ID);
  g_autoptr(AppChat) a = NULL;
  g_autoptr(AppMessage) answer = NULL;
  GtkWidget *spinner, *send;

  g_settings_set (app_application_get_settings (app), "max-new-tokens", "mi", TRUE, 4096);
  a = ask_in_new_chat ("Tell me a long story.", NULL);
  ui_harness_wait_for (streaming, a, "chat A's answer to stream");
  g_assert_cmpstr (send_icon (), ==, "media-playback-stop-symbolic");

  select_chat (b);
  g_assert_cmpstr (send_icon (), ==, "go-up-symbolic");
  send = ui_find_send_button (GTK_WIDGET (composer ()));
  app_composer_set_text (composer (), "And now?");
  g_assert_false (gtk_widget_get_sensitive (send));
  g_assert_nonnull (strstr (gtk_widget_get_tooltip_text (send), "answering in another chat"));
  spinner = row_spinner ("Tell me a long story.");
  g_assert_nonnull (spinner);
  g_assert_true (gtk_spinner_get_spinning (GTK_SPINNER (spinner)));
  g_assert_null (row_spinner (app_chat_get_title (b)));

  /* Escape in B: A goes on */
  gtk_widget_activate_action (window (), "win.stop", NULL);
  ui_harness_spin (0.3);
  answer = ui_harness_last_message (a);
  g_assert_cmpint (app_message_get_state (answer), ==, APP_MESSAGE_STREAMING);

  /* back in A: Stop, and it stops */
  select_chat (a);
  g_assert_cmpstr (send_icon (), ==, "media-playback-stop-symbolic");
  g_signal_emit_by_name (ui_find_send_button (GTK_WIDGET (composer ())), "clicked");
  ui_harness_wait_for (answered, a, "chat A's answer to stop");
  g_assert_cmpint (app_message_get_state (answer), ==, APP_MESSAGE_STOPPED);
  g_assert_null (row_spinner ("Tell me a long story."));
  g_assert_cmpstr (send_icon (), ==, "go-up-symbolic");
  app_composer_set_text (composer (), "");
}

static void
bar_text_cb (GtkProgressBar *bar,
             GParamSpec     *pspec,
             GPtrArray      *texts)
{
  if (gtk_widget_get_mapped (GTK_WIDGET (bar)) && gtk_progress_bar_get_text (bar))
    g_ptr_array_add (texts, g_strdup (gtk_progress_bar_get_text (bar)));
}

static gboolean
bar_shown (gpointer data)
{
  return ui_find_type (window (), GTK_TYPE_PROGRESS_BAR) != NULL;
}

/* 2. While the model reads two large images, the answer shows a progress bar: image i of 2,
 * tile t of n. */
static void
test_reading_progress (void)
{
  g_autofree char *sign = ui_harness_golden_image ("vqa_1.jpg");
  g_autofree char *giraffes = ui_harness_golden_image ("visual_grounding_1.png");
  const char *images[] = { sign, giraffes, NULL };
  g_autoptr(GPtrArray) texts = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(AppChat) chat = NULL;
  GtkWidget *bar;
  gboolean first = FALSE, second = FALSE;

  g_settings_set (app_application_get_settings (app), "max-new-tokens", "mi", TRUE, 2);
  chat = ask_in_new_chat ("What differs between these?", images);
  /* the answer's row, waiting: a progress bar, not a spinner */
  ui_harness_wait_for (bar_shown, NULL, "a progress bar in the answer");
  bar = ui_find_type (window (), GTK_TYPE_PROGRESS_BAR);
  g_signal_connect (bar, "notify::text", G_CALLBACK (bar_text_cb), texts);
  bar_text_cb (GTK_PROGRESS_BAR (bar), NULL, texts);
  ui_harness_wait_for (answered, chat, "the answer about two images");
  g_signal_handlers_disconnect_by_data (bar, texts);
  for (guint i = 0; i < texts->len; i++)
    {
      const char *t = g_ptr_array_index (texts, i);

      g_test_message ("%s", t);
      first = first || g_str_has_prefix (t, "Reading image 1 of 2, tile ");
      second = second || g_str_has_prefix (t, "Reading image 2 of 2, tile ");
    }
  g_assert_true (first);
  g_assert_true (second);
}

static AdwLeaflet *
leaflet (void)
{
  return ADW_LEAFLET (ui_find_any (window (), ADW_TYPE_LEAFLET));
}

static gboolean
folded (gpointer data)
{
  return adw_leaflet_get_folded (leaflet ());
}

static gboolean
unfolded (gpointer data)
{
  return !folded (data);
}

/* The conversation is what the narrow window shows. */
static gboolean
content_shown (void)
{
  return gtk_widget_is_ancestor (GTK_WIDGET (composer ()),
                                 adw_leaflet_get_visible_child (leaflet ()));
}

static void
back_to_chats (void)
{
  g_assert_true (gtk_widget_activate_action (window (), "win.show-chats", NULL));
  g_assert_false (content_shown ());
}

/* 3. A narrow window: choosing the selected chat again shows it, by Enter and by a click. */
static void
test_narrow (void)
{
  AppChat *chat = find_chat (FIXTURE_ID);
  GtkWidget *label, *row;
  g_autoptr(GListModel) controllers = NULL;
  gboolean clicked = FALSE;

  select_chat (chat);
  gtk_window_set_default_size (GTK_WINDOW (window ()), 360, 700);
  ui_harness_wait_for (folded, NULL, "the window to fold");

  /* Enter on the row */
  back_to_chats ();
  g_assert_true (gtk_single_selection_get_selected_item (chat_selection ()) == chat);
  g_signal_emit_by_name (ui_find_chat_list (window ()), "activate",
                         ui_find_chat_position (window (), chat));
  g_assert_true (content_shown ());

  /* a click on the row: its gestures, from the row's contents up to the list's row */
  back_to_chats ();
  ui_harness_spin (0.5);
  label = ui_find_label (GTK_WIDGET (ui_find_chat_list (window ())), app_chat_get_title (chat));
  g_assert_nonnull (label);
  for (row = gtk_widget_get_parent (label); row && !GTK_IS_LIST_VIEW (row);
       row = gtk_widget_get_parent (row))
    {
      controllers = gtk_widget_observe_controllers (row);
      for (guint i = 0; i < g_list_model_get_n_items (controllers) && !clicked; i++)
        {
          g_autoptr(GObject) c = g_list_model_get_item (controllers, i);

          if (GTK_IS_GESTURE_CLICK (c))
            {
              g_signal_emit_by_name (c, "released", 1, 10.0, 10.0);
              clicked = TRUE;
            }
        }
      g_clear_object (&controllers);
      if (clicked)
        break;
    }
  g_assert_true (clicked);
  g_assert_true (content_shown ());
  gtk_window_set_default_size (GTK_WINDOW (window ()), 1100, 760);
  ui_harness_wait_for (unfolded, NULL, "the window to unfold");
}

static GtkFileChooser *
save_dialog (void)
{
  GListModel *toplevels = gtk_window_get_toplevels ();

  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr(GObject) w = g_list_model_get_item (toplevels, i);

      if (GTK_IS_FILE_CHOOSER_DIALOG (w) && gtk_widget_get_visible (GTK_WIDGET (w)))
        return GTK_FILE_CHOOSER (w);
    }
  return NULL;
}

static gboolean
dialog_shown (gpointer data)
{
  return save_dialog () != NULL;
}

static gboolean
file_written (gpointer path)
{
  return g_file_test (path, G_FILE_TEST_IS_REGULAR);
}

static gboolean
in_folder (GtkFileChooser *dialog,
           GFile          *folder)
{
  g_autoptr(GFile) current = gtk_file_chooser_get_current_folder (dialog);

  return current && g_file_equal (current, folder);
}

/* Answers the save dialog: `name` in the test's folder. */
static char *
save_as (const char *name)
{
  g_autoptr(GFile) folder = g_file_new_for_path (home);
  g_autoptr(GtkWidget) held = NULL;
  GtkFileChooser *dialog;

  ui_harness_wait_for (dialog_shown, NULL, "the save dialog");
  /* held: the dialog goes with its GtkFileChooserNative once it has answered */
  dialog = save_dialog ();
  held = g_object_ref (GTK_WIDGET (dialog));
  g_assert_cmpint (gtk_file_chooser_get_action (dialog), ==, GTK_FILE_CHOOSER_ACTION_SAVE);
  /* The dialog goes to its folder as it opens, and answers once it has read the folder (it
   * checks the name against it): choose the folder and Export until it does, as a person
   * would. */
  for (int i = 0; i < 10 && gtk_widget_get_visible (GTK_WIDGET (dialog)); i++)
    {
      ui_harness_spin (0.5);
      if (!in_folder (dialog, folder))
        {
          g_autoptr(GError) error = NULL;

          g_assert_true (gtk_file_chooser_set_current_folder (dialog, folder, &error));
          g_assert_no_error (error);
          gtk_file_chooser_set_current_name (dialog, name);
          continue;
        }
      gtk_dialog_response (GTK_DIALOG (dialog), GTK_RESPONSE_ACCEPT);
      for (int k = 0; k < 50 && gtk_widget_get_visible (GTK_WIDGET (dialog)); k++)
        ui_harness_spin (0.1);
    }
  g_assert_false (gtk_widget_get_visible (GTK_WIDGET (dialog)));
  return g_build_filename (home, name, NULL);
}

static void
assert_same_file (const char *a,
                  const char *b)
{
  g_autofree char *x = NULL, *y = NULL;
  gsize nx, ny;

  g_assert_true (g_file_get_contents (a, &x, &nx, NULL));
  g_assert_true (g_file_get_contents (b, &y, &ny, NULL));
  g_assert_cmpmem (x, nx, y, ny);
}

/* 4. Export from the chat's menu: Markdown with the images beside it, and JSON. */
static void
test_export (void)
{
  AppChat *chat = find_chat (FIXTURE_ID);
  g_autofree char *md_path = NULL;
  g_autofree char *json_path = NULL;
  g_autofree char *md = NULL;
  g_autofree char *corn = NULL, *giraffes = NULL;
  g_autofree char *store_corn = app_chat_store_get_image_path (store (), CORN);
  g_autofree char *store_giraffes = app_chat_store_get_image_path (store (), GIRAFFES);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) error = NULL;
  JsonObject *root;

  /* the sidebar row's menu: Markdown */
  g_assert_true (gtk_widget_activate_action (window (), "win.export-chat", "(ss)", FIXTURE_ID,
                                             "markdown"));
  md_path = save_as ("Corn and giraffes.md");
  ui_harness_wait_for (file_written, md_path, "the Markdown file");
  g_assert_true (g_file_get_contents (md_path, &md, NULL, NULL));
  g_test_message ("%s", md);
  g_assert_true (g_str_has_prefix (md, "# What is this?\n"));
  g_assert_nonnull (strstr (md, "\n## You\n\n![Image 1](Corn%20and%20giraffes%20images/image-1.png)"
                                "\n\nWhat is this?\n"));
  g_assert_nonnull (strstr (md, "\n## Sightline\n\nThree ears of sweet corn, one of them husked.\n"));
  g_assert_nonnull (strstr (md, "![Image 2](Corn%20and%20giraffes%20images/image-2.png)"));
  g_assert_nonnull (strstr (md, "Two giraffes stand on a sunny savanna lawn."));
  g_assert_null (strstr (md, "<|"));
  corn = g_build_filename (home, "Corn and giraffes images", "image-1.png", NULL);
  giraffes = g_build_filename (home, "Corn and giraffes images", "image-2.png", NULL);
  assert_same_file (corn, store_corn);
  assert_same_file (giraffes, store_giraffes);

  /* the main menu, for the chat shown: JSON, the chat file's content */
  select_chat (chat);
  g_assert_true (gtk_widget_activate_action (window (), "win.export-current", "s", "json"));
  json_path = save_as ("chat.json");
  ui_harness_wait_for (file_written, json_path, "the JSON file");
  json_parser_load_from_file (parser, json_path, &error);
  g_assert_no_error (error);
  root = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (root, "id"), ==, FIXTURE_ID);
  g_assert_cmpstr (json_object_get_string_member (root, "title"), ==, app_chat_get_title (chat));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (root, "messages")), ==,
                    4);
}

int
main (int   argc,
      char *argv[])
{
  int rc;

  home = ui_harness_isolate ("chat-state");
  gtk_test_init (&argc, &argv, NULL);
  ui_harness_add_grounding_chat ();
  app = ui_harness_app_new ();
  g_application_activate (G_APPLICATION (app));
  gtk_window_set_default_size (GTK_WINDOW (window ()), 1100, 760);
  ui_harness_wait_ready (app, TIMEOUT_S);
  ui_harness_wait_for (ui_harness_window_mapped, app, "the window");
  g_test_add_func ("/app/chat-state/answer-per-chat", test_answer_per_chat);
  g_test_add_func ("/app/chat-state/reading-progress", test_reading_progress);
  g_test_add_func ("/app/chat-state/narrow", test_narrow);
  g_test_add_func ("/app/chat-state/export", test_export);
  rc = g_test_run ();
  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  g_free (home);
  return rc;
}
