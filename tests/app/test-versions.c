/* test-versions.c - what a person made is kept: versions, interrupted and cut answers, in the
 * real application under Xvfb with the golden mini model.
 *
 * The app starts with a chat of the first file format whose last answer was saved while it
 * streamed (as a crash leaves it): it shows as interrupted, with Continue, and continuing
 * appends to it. Then a chat of two exchanges: editing its first question and cancelling
 * leaves the chat, its file and the draft that was in the composer as they were; editing and
 * sending gives the question a "2 / 2" switcher, and the old question with everything after it
 * is one click away; regenerating an answer gives it versions too; all of it is in the chat
 * file. An answer cut at the length limit says so and continues in place. An answer streaming
 * for a few seconds is in the chat file already, and quitting (Ctrl+Q) while it streams saves
 * its text as interrupted.
 */
#include <json-glib/json-glib.h>
#include <string.h>

#include "app-composer.h"
#include "app-message-row.h"
#include "ui-find.h"
#include "ui-harness.h"

#define TIMEOUT_S 120
#define INTERRUPTED_ID "5d0f3a52-9c1e-4b7a-8e26-0c4f1d9b7a13"
#define INTERRUPTED_TEXT "The sky turns"

static AppApplication *app;

static GtkWindow *
main_window (void)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (app));

  g_assert_nonnull (window);
  return window;
}

static AppComposer *
composer (void)
{
  GtkWidget *c = ui_harness_find_widget (GTK_WIDGET (main_window ()), APP_TYPE_COMPOSER, 0);

  g_assert_nonnull (c);
  return APP_COMPOSER (c);
}

static AppMessage *
message_at (guint position)
{
  g_autoptr(AppChat) chat = ui_harness_newest_chat (app);
  AppMessage *m = app_chat_get_message (chat, position);

  g_assert_nonnull (m);
  return m;
}

static gboolean
answer_done (gpointer data)
{
  g_autoptr(AppMessage) m = ui_harness_newest_message (app);

  return ui_harness_answer_settled (m);
}

/* At least `data` bytes streamed. */
static gboolean
answer_streaming (gpointer data)
{
  g_autoptr(AppMessage) m = ui_harness_newest_message (app);

  return ui_harness_answer_streaming (m, GPOINTER_TO_SIZE (data));
}

static void
send (const char *text)
{
  app_composer_set_text (composer (), text);
  g_signal_emit_by_name (composer (), "send");
}

static void
ask (const char *text)
{
  g_autoptr(AppMessage) answer = NULL;

  send (text);
  ui_harness_wait_for (answer_done, NULL, text);
  answer = ui_harness_newest_message (app);
  g_assert_cmpint (app_message_get_state (answer), ==, APP_MESSAGE_COMPLETE);
}

static void
set_max_tokens (int n)
{
  g_settings_set (app_application_get_settings (app), "max-new-tokens", "mi", TRUE, n);
}

static char *
composer_text (void)
{
  return app_composer_get_text (composer ());
}

/* The texts of the conversation shown, joined with " | ". */
static char *
shown_texts (void)
{
  g_autoptr(AppChat) chat = ui_harness_newest_chat (app);
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < app_chat_get_n_messages (chat); i++)
    {
      g_autoptr(AppMessage) m = app_chat_get_message (chat, i);

      g_string_append_printf (s, "%s%s", i > 0 ? " | " : "", app_message_get_text (m));
    }
  return g_string_free (s, FALSE);
}

static char *
chat_file (AppChat *chat)
{
  g_autofree char *name = g_strdup_printf ("%s.json", app_chat_get_id (chat));

  return g_build_filename (app_chat_store_get_data_dir (app_application_get_store (app)),
                           "chats", name, NULL);
}


static char *
read_chat_file (AppChat *chat)
{
  g_autofree char *path = chat_file (chat);
  g_autoptr(GError) error = NULL;
  char *contents = NULL;

  /* the files are written in the background: what the window asked for is there after this */
  app_chat_store_flush (app_application_get_store (app));
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  return contents;
}

/* The chat as its file has it now, read back by the app's own reader. */
static AppChat *
load_chat_file (AppChat *chat)
{
  g_autofree char *contents = read_chat_file (chat);
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(GError) error = NULL;
  AppChat *loaded;

  node = json_from_string (contents, &error);
  g_assert_no_error (error);
  loaded = app_chat_new_from_json (node, &error);
  g_assert_no_error (error);
  return loaded;
}

/* ------------------------------------------------------------------------------------------
 * Widgets
 */

/* Lets the list view bind its rows after a change of the conversation. */
static void
settle (void)
{
  ui_harness_spin (0.3);
}

static AppMessageRow *
row_for (AppMessage *message)
{
  GtkWidget *row = ui_harness_message_row (GTK_WIDGET (main_window ()), message);

  if (row)
    return APP_MESSAGE_ROW (row);
  g_error ("no row shows \"%s\"", app_message_get_text (message));
}

static gboolean
has_css_class (GtkWidget     *w,
               gconstpointer  css_class)
{
  return gtk_widget_has_css_class (w, css_class);
}

static GtkWidget *
find_css (GtkWidget  *root,
          const char *css_class)
{
  return ui_find_visible (root, has_css_class, css_class);
}

static gboolean
is_label (GtkWidget     *w,
          gconstpointer  text)
{
  return GTK_IS_LABEL (w) && g_strcmp0 (gtk_label_get_text (GTK_LABEL (w)), text) == 0;
}

static GtkWidget *
find_label (GtkWidget  *root,
            const char *text)
{
  return ui_find_visible (root, is_label, text);
}

static gboolean
is_icon_button (GtkWidget     *w,
                gconstpointer  icon)
{
  return GTK_IS_BUTTON (w) && g_strcmp0 (gtk_button_get_icon_name (GTK_BUTTON (w)), icon) == 0;
}

static GtkWidget *
find_icon_button (GtkWidget  *root,
                  const char *icon)
{
  return ui_find_visible (root, is_icon_button, icon);
}

/* The "2 / 3" of a message's row, or NULL while the message has one version. */
static const char *
version_label (AppMessage *message)
{
  GtkWidget *switcher = find_css (GTK_WIDGET (row_for (message)), "version-switcher");
  GtkWidget *label;

  if (!switcher)
    return NULL;
  label = gtk_widget_get_next_sibling (gtk_widget_get_first_child (switcher));
  return gtk_label_get_text (GTK_LABEL (label));
}

/* Shows `chat` by choosing it in the sidebar, as a click does. */
static void
choose_chat (AppChat *chat)
{
  GtkSingleSelection *selection = NULL;
  GtkWidget *list;

  /* the sidebar's list is the one that selects */
  for (guint n = 0; !selection; n++)
    {
      list = ui_harness_find_widget (GTK_WIDGET (main_window ()), GTK_TYPE_LIST_VIEW, n);
      g_assert_nonnull (list);
      if (GTK_IS_SINGLE_SELECTION (gtk_list_view_get_model (GTK_LIST_VIEW (list))))
        selection = GTK_SINGLE_SELECTION (gtk_list_view_get_model (GTK_LIST_VIEW (list)));
    }

  for (guint i = 0; i < g_list_model_get_n_items (G_LIST_MODEL (selection)); i++)
    {
      g_autoptr(AppChat) c = g_list_model_get_item (G_LIST_MODEL (selection), i);

      if (c == chat)
        {
          gtk_single_selection_set_selected (selection, i);
          settle ();
          return;
        }
    }
  g_error ("the sidebar does not show the chat %s", app_chat_get_id (chat));
}

static void
click (GtkWidget *button)
{
  g_assert_nonnull (button);
  g_assert_true (gtk_widget_is_sensitive (button));
  g_signal_emit_by_name (button, "clicked");
}

static void
previous_version (AppMessage *message)
{
  click (find_icon_button (find_css (GTK_WIDGET (row_for (message)), "version-switcher"),
                           "go-previous-symbolic"));
  settle ();
}

/* ------------------------------------------------------------------------------------------
 * Tests
 */

/* The chat left by a crash while its answer streamed: interrupted, shown so, and continued. */
static void
test_interrupted_continue (void)
{
  g_autoptr(AppChat) chat = ui_harness_newest_chat (app);
  g_autoptr(AppMessage) answer = NULL;
  GtkWidget *row;

  g_assert_cmpstr (app_chat_get_id (chat), ==, INTERRUPTED_ID);
  answer = message_at (1);
  g_assert_cmpint (app_message_get_state (answer), ==, APP_MESSAGE_INTERRUPTED);
  g_assert_cmpstr (app_message_get_text (answer), ==, INTERRUPTED_TEXT);
  settle ();
  row = GTK_WIDGET (row_for (answer));
  g_assert_nonnull (find_label (row, "Interrupted"));

  set_max_tokens (6);
  click (find_css (row, "continue"));
  ui_harness_wait_for (answer_done, NULL, "the continued answer");
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 2);
  g_test_message ("continued: \"%s\"", app_message_get_text (answer));
  g_assert_true (g_str_has_prefix (app_message_get_text (answer), INTERRUPTED_TEXT));
  g_assert_cmpuint (strlen (app_message_get_text (answer)), >, strlen (INTERRUPTED_TEXT));
  g_assert_cmpuint (app_message_get_n_tokens (answer), ==, 3 + 6);
  g_assert_cmpint (app_message_get_state (answer), ==, APP_MESSAGE_COMPLETE);
  settle ();
  g_assert_null (find_label (row, "Interrupted"));
}

/* A new chat of two exchanges, and a draft in the composer; returns the conversation. */
static char *
two_exchanges (void)
{
  g_autoptr(AppChat) chat = NULL;

  gtk_widget_activate_action (GTK_WIDGET (main_window ()), "win.new-chat", NULL);
  ask ("First question");
  ask ("Second question");
  chat = ui_harness_newest_chat (app);
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 4);
  app_composer_set_text (composer (), "A draft of mine");
  /* kept in the chat, and saved with it half a second after the typing stops */
  ui_harness_spin (0.6);
  return shown_texts ();
}

/* Editing a question and cancelling changes nothing: not the chat, not its file, not the
 * draft that was in the composer. */
static void
test_edit_cancel (void)
{
  g_autofree char *first_branch = two_exchanges ();
  g_autoptr(AppChat) chat = ui_harness_newest_chat (app);
  g_autofree char *file_before = read_chat_file (chat);
  g_autofree char *file_after = NULL;
  g_autofree char *text = NULL;
  GtkWidget *edit_bar;
  GtkRevealer *revealer;

  gtk_widget_activate_action (GTK_WIDGET (main_window ()), "win.edit-message", "u", 0);
  text = composer_text ();
  g_assert_cmpstr (text, ==, "First question");
  /* nothing has left the chat, nor its file */
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 4);
  {
    g_autofree char *shown = shown_texts ();
    g_autofree char *on_disk = read_chat_file (chat);

    g_assert_cmpstr (shown, ==, first_branch);
    g_assert_cmpstr (on_disk, ==, file_before);
  }
  /* the bar above the composer says what sending does, and offers to cancel */
  edit_bar = find_css (GTK_WIDGET (main_window ()), "edit-bar");
  g_assert_nonnull (edit_bar);
  revealer = GTK_REVEALER (gtk_widget_get_ancestor (edit_bar, GTK_TYPE_REVEALER));
  g_assert_true (gtk_revealer_get_reveal_child (revealer));

  /* another chat meanwhile: the edit waits with its chat, and nothing of either is lost */
  app_composer_set_text (composer (), "First question, changed but not sent");
  {
    GListModel *chats = app_chat_store_get_chats (app_application_get_store (app));
    g_autoptr(AppChat) other = g_list_model_get_item (chats, 1);
    g_autofree char *other_text = NULL;

    choose_chat (other);
    other_text = composer_text ();
    g_assert_cmpstr (other_text, ==, "");
    g_assert_false (gtk_revealer_get_reveal_child (revealer));
    choose_chat (chat);
    g_clear_pointer (&text, g_free);
    text = composer_text ();
    g_assert_cmpstr (text, ==, "First question, changed but not sent");
    g_assert_true (gtk_revealer_get_reveal_child (revealer));
    g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 4);
  }
  click (gtk_widget_get_last_child (edit_bar));
  g_clear_pointer (&text, g_free);
  text = composer_text ();
  g_assert_cmpstr (text, ==, "A draft of mine");
  g_assert_false (gtk_revealer_get_reveal_child (revealer));
  file_after = read_chat_file (chat);
  g_assert_cmpstr (file_after, ==, file_before);
  {
    g_autofree char *shown = shown_texts ();

    g_assert_cmpstr (shown, ==, first_branch);
  }
  g_assert_cmpuint (app_chat_get_n_versions (chat, 0), ==, 1);
}

/* Editing and sending: a second version of the question with its own answer; the first, with
 * everything that followed it, is one click away, here and in the chat file. */
static void
test_edit_send (void)
{
  g_autofree char *first_branch = two_exchanges ();
  g_autoptr(AppChat) chat = ui_harness_newest_chat (app);
  g_autoptr(AppMessage) edited = NULL;
  g_autoptr(AppMessage) original = NULL;
  g_autoptr(AppChat) on_disk = NULL;
  g_autofree char *text = NULL;
  g_autofree char *shown = NULL;

  gtk_widget_activate_action (GTK_WIDGET (main_window ()), "win.edit-message", "u", 0);
  send ("First question, edited");
  ui_harness_wait_for (answer_done, NULL, "the answer to the edited question");
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 2);
  edited = message_at (0);
  g_assert_cmpstr (app_message_get_text (edited), ==, "First question, edited");
  /* the draft waited through the edit */
  text = composer_text ();
  g_assert_cmpstr (text, ==, "A draft of mine");
  settle ();
  g_assert_cmpstr (version_label (edited), ==, "2 / 2");

  previous_version (edited);
  shown = shown_texts ();
  g_assert_cmpstr (shown, ==, first_branch);
  original = message_at (0);
  g_assert_cmpstr (version_label (original), ==, "1 / 2");

  /* the file has both versions, and the one shown */
  on_disk = load_chat_file (chat);
  g_assert_cmpuint (app_chat_get_n_messages (on_disk), ==, 4);
  g_assert_cmpuint (app_chat_get_n_versions (on_disk, 0), ==, 2);
  g_assert_cmpuint (app_chat_get_version (on_disk, 0), ==, 0);
  app_chat_select_version (on_disk, 0, 1);
  g_assert_cmpuint (app_chat_get_n_messages (on_disk), ==, 2);
}

/* Regenerate keeps the answer it writes again as a version: the last one, and one in the middle
 * of the conversation, whose old version keeps what followed it. */
static void
test_regenerate (void)
{
  g_autofree char *first_branch = two_exchanges ();
  g_autoptr(AppChat) chat = ui_harness_newest_chat (app);
  g_autoptr(AppMessage) old = message_at (3);
  g_autoptr(AppMessage) first_answer = message_at (1);
  g_autoptr(AppMessage) new = NULL;
  g_autoptr(AppChat) on_disk = NULL;
  g_autofree char *shown = NULL;

  settle ();
  g_assert_null (version_label (old));
  click (find_icon_button (GTK_WIDGET (row_for (old)), "view-refresh-symbolic"));
  ui_harness_wait_for (answer_done, NULL, "the regenerated answer");
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 4);
  new = message_at (3);
  g_assert_true (new != old);
  settle ();
  g_assert_cmpstr (version_label (new), ==, "2 / 2");
  previous_version (new);
  shown = shown_texts ();
  g_assert_cmpstr (shown, ==, first_branch);
  g_assert_cmpstr (version_label (old), ==, "1 / 2");

  /* the first answer, written again: the conversation goes on from the new one */
  g_clear_object (&new);
  click (find_icon_button (GTK_WIDGET (row_for (first_answer)), "view-refresh-symbolic"));
  ui_harness_wait_for (answer_done, NULL, "the first answer written again");
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 2);
  new = message_at (1);
  g_assert_true (new != first_answer);
  settle ();
  g_assert_cmpstr (version_label (new), ==, "2 / 2");
  previous_version (new);
  g_clear_pointer (&shown, g_free);
  shown = shown_texts ();
  g_assert_cmpstr (shown, ==, first_branch);

  on_disk = load_chat_file (chat);
  g_assert_cmpuint (app_chat_get_n_versions (on_disk, 1), ==, 2);
  g_assert_cmpuint (app_chat_get_n_versions (on_disk, 3), ==, 2);
  g_assert_cmpuint (app_chat_get_n_messages (on_disk), ==, 4);
}

/* An answer cut at the length limit says so, and Continue goes on in the same answer. */
static void
test_length_continue (void)
{
  g_autoptr(AppMessage) answer = NULL;
  g_autofree char *first = NULL;
  g_autoptr(AppChat) on_disk = NULL;
  g_autoptr(AppChat) chat = NULL;
  GtkWidget *row;

  set_max_tokens (5);
  gtk_widget_activate_action (GTK_WIDGET (main_window ()), "win.new-chat", NULL);
  ask ("Tell me a long story.");
  chat = ui_harness_newest_chat (app);
  answer = ui_harness_newest_message (app);
  g_assert_cmpint (app_message_get_finish_reason (answer), ==, APP_FINISH_LENGTH);
  on_disk = load_chat_file (chat);
  {
    g_autoptr(AppMessage) saved = app_chat_get_message (on_disk, 1);

    g_assert_cmpint (app_message_get_finish_reason (saved), ==, APP_FINISH_LENGTH);
  }
  settle ();
  row = GTK_WIDGET (row_for (answer));
  g_assert_nonnull (find_label (row, "Stopped at the length limit"));
  first = g_strchomp (g_strdup (app_message_get_text (answer)));

  click (find_css (row, "continue"));
  ui_harness_wait_for (answer_done, NULL, "the continuation");
  g_test_message ("\"%s\" went on as \"%s\"", first, app_message_get_text (answer));
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 2);
  g_assert_true (g_str_has_prefix (app_message_get_text (answer), first));
  g_assert_cmpuint (strlen (app_message_get_text (answer)), >, strlen (first));
  g_assert_cmpuint (app_message_get_n_tokens (answer), ==, 10);
}

/* A streaming answer is saved as it goes: a crash now would keep what it wrote. The file has
 * text marked interrupted only from a save made while the answer streamed (its last save
 * marks it complete), whenever the test gets to read it. */
static gboolean
streaming_saved (gpointer data)
{
  AppChat *chat = data;
  g_autoptr(AppChat) on_disk = load_chat_file (chat);
  g_autoptr(AppMessage) m = app_chat_get_message (on_disk, 1);

  return m && app_message_get_text (m)[0] != '\0' &&
         app_message_get_state (m) == APP_MESSAGE_INTERRUPTED;
}

static void
test_saved_while_streaming (void)
{
  g_autoptr(AppChat) chat = NULL;
  g_autoptr(AppChat) on_disk = NULL;
  g_autoptr(AppMessage) saved = NULL;
  g_autoptr(AppMessage) streaming = NULL;

  set_max_tokens (4000);
  gtk_widget_activate_action (GTK_WIDGET (main_window ()), "win.new-chat", NULL);
  send ("Tell me a very long story.");
  chat = ui_harness_newest_chat (app);
  /* from the start, the file never has the answer as a complete empty one */
  on_disk = load_chat_file (chat);
  saved = app_chat_get_message (on_disk, 1);
  g_assert_cmpint (app_message_get_state (saved), ==, APP_MESSAGE_INTERRUPTED);
  g_assert_cmpstr (app_message_get_text (saved), ==, "");
  g_clear_object (&saved);
  g_clear_object (&on_disk);

  ui_harness_wait_for (answer_streaming, GSIZE_TO_POINTER (1), "the answer to stream");
  ui_harness_wait (streaming_saved, chat, "the streaming answer in the chat file", 10);
  on_disk = load_chat_file (chat);
  saved = app_chat_get_message (on_disk, 1);
  /* the answer may have ended meanwhile (4,000 tokens take about five seconds here): what the
   * file has is the beginning of what it wrote */
  streaming = ui_harness_last_message (chat);
  g_test_message ("saved %zu bytes while streaming; %zu in memory",
                  strlen (app_message_get_text (saved)), strlen (app_message_get_text (streaming)));
  g_assert_true (g_str_has_prefix (app_message_get_text (streaming),
                                   app_message_get_text (saved)));
  gtk_widget_activate_action (GTK_WIDGET (main_window ()), "win.stop", NULL);
  ui_harness_wait_for (answer_done, NULL, "the stop");
}

/* Ctrl+Q while an answer streams: its text is in the file, marked interrupted. */
static void
test_quit_while_answering (void)
{
  g_auto(GStrv) accels = gtk_application_get_accels_for_action (GTK_APPLICATION (app),
                                                                  "app.quit");
  g_autoptr(AppChat) chat = NULL;
  g_autoptr(AppMessage) answer = NULL;
  g_autofree char *text = NULL;
  g_autofree char *path = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  JsonArray *messages;
  JsonObject *last;

  g_assert_true (g_strv_contains ((const char * const *) accels, "<Control>q"));
  set_max_tokens (4000);
  gtk_widget_activate_action (GTK_WIDGET (main_window ()), "win.new-chat", NULL);
  send ("Tell me another very long story.");
  ui_harness_wait_for (answer_streaming, GSIZE_TO_POINTER (4), "the answer to stream");
  chat = ui_harness_newest_chat (app);
  answer = ui_harness_newest_message (app);

  g_action_group_activate_action (G_ACTION_GROUP (app), "quit", NULL);
  text = g_strdup (app_message_get_text (answer));
  g_assert_cmpstr (text, !=, "");

  contents = read_chat_file (chat);
  node = json_from_string (contents, &error);
  g_assert_no_error (error);
  messages = json_object_get_array_member (json_node_get_object (node), "messages");
  g_assert_cmpuint (json_array_get_length (messages), ==, 2);
  last = json_array_get_object_element (messages, 1);
  g_assert_cmpstr (json_object_get_string_member (last, "state"), ==, "interrupted");
  g_assert_cmpstr (json_object_get_string_member (last, "text"), ==, text);

  /* the engine's end of the answer comes after: still interrupted, nothing lost */
  ui_harness_spin (2);
  {
    g_autoptr(AppChat) later = load_chat_file (chat);
    g_autoptr(AppMessage) m = app_chat_get_message (later, 1);

    g_assert_cmpint (app_message_get_state (m), ==, APP_MESSAGE_INTERRUPTED);
    g_assert_true (g_str_has_prefix (app_message_get_text (m), text));
  }
}

/* A chat of the first file format, saved while its answer streamed. */
static void
add_interrupted_chat (const char *home)
{
  g_autofree char *path = g_build_filename (home, "interrupted-chat.json", NULL);
  g_autofree char *json = g_strdup_printf (
    "{\"version\": 1, \"id\": \"" INTERRUPTED_ID "\", \"title\": \"Describe a sunset.\", "
    "\"custom_title\": false, \"created\": %" G_GINT64_FORMAT ", \"modified\": %" G_GINT64_FORMAT
    ", \"messages\": ["
    "{\"role\": \"user\", \"text\": \"Describe a sunset.\", \"images\": [], "
    "\"state\": \"complete\"}, "
    "{\"role\": \"assistant\", \"text\": \"" INTERRUPTED_TEXT "\", \"images\": [], "
    "\"state\": \"streaming\", \"n_tokens\": 3}]}",
    g_get_real_time (), g_get_real_time ());
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, json, -1, &error);
  g_assert_no_error (error);
  ui_harness_add_chat (path, NULL);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = ui_harness_isolate ("versions");
  GtkWindow *window;
  int rc;

  add_interrupted_chat (home);
  gtk_test_init (&argc, &argv, NULL);
  app = ui_harness_app_new ();
  g_application_activate (G_APPLICATION (app));
  window = gtk_application_get_active_window (GTK_APPLICATION (app));
  g_assert_nonnull (window);
  gtk_window_set_default_size (window, 1000, 900);
  ui_harness_wait_ready (app, TIMEOUT_S);
  set_max_tokens (8);

  g_test_add_func ("/app/versions/interrupted-continue", test_interrupted_continue);
  g_test_add_func ("/app/versions/edit-cancel", test_edit_cancel);
  g_test_add_func ("/app/versions/edit-send", test_edit_send);
  g_test_add_func ("/app/versions/regenerate", test_regenerate);
  g_test_add_func ("/app/versions/length-continue", test_length_continue);
  g_test_add_func ("/app/versions/saved-while-streaming", test_saved_while_streaming);
  g_test_add_func ("/app/versions/quit-while-answering", test_quit_while_answering);
  rc = g_test_run ();
  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  return rc;
}
