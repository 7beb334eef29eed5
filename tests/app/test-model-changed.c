/* test-model-changed.c - the real application, under Xvfb, when the model's files change on disk.
 *
 * The application runs a copy of the golden mini-tiny model in a folder of the test's own. A
 * first question is answered; the weights file is cut short while the second answer streams
 * (a download restarted over the folder): the answer stops with the reason shown under the
 * text it had, and the app keeps running. Another model is then written into the folder file by
 * file, renamed into place as a download leaves it: the next question loads it and is answered
 * by it, the answer saying so and the window naming the new model. Cut short again between two
 * questions, the model cannot be loaded any more: the window says why. Through all of it the
 * chat keeps every question and answer, on screen and on disk.
 */
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "app-config.h"
#include "app-composer.h"
#include "app-engine.h"
#include "ui-find.h"
#include "ui-harness.h"
#include "tree.h"

#define TIMEOUT_S 120

static AppApplication *app;
static char *model_dir;
static char *weights;

static const char *const model_files[] = {
  "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
  "model.safetensors",
};

/* Writes the files of fixture `name` into model_dir, each renamed into place. */
static void
put_model (const char *name)
{
  g_autofree char *fixture = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), name, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (model_files); i++)
    {
      g_autofree char *from = g_build_filename (fixture, model_files[i], NULL);
      g_autofree char *to = g_build_filename (model_dir, model_files[i], NULL);
      g_autofree char *data = NULL;
      gsize len;

      g_assert_true (g_file_get_contents (from, &data, &len, NULL));
      g_assert_true (g_file_set_contents (to, data, (gssize) len, NULL));
    }
}

typedef struct
{
  GtkWidget *window;
  const char *needle;
} LabelWait;

static gboolean
label_shown (gpointer data)
{
  LabelWait *w = data;

  return ui_find_label (w->window, w->needle) != NULL;
}

static void
wait_for_label (GtkWidget  *window,
                const char *needle)
{
  LabelWait w = { window, needle };
  g_autofree char *what = g_strdup_printf ("a label saying \"%s\"", needle);

  ui_harness_wait (label_shown, &w, what, TIMEOUT_S);
}

static void
send (AppComposer *composer,
      const char  *text)
{
  app_composer_set_text (composer, text);
  g_signal_emit_by_name (composer, "send");
}

static void
set_length (int n)
{
  g_settings_set (app_application_get_settings (app), "max-new-tokens", "mi", TRUE, n);
}

static void
expect_in (const char *text,
           const char *needle)
{
  if (!text || !strstr (text, needle))
    g_error ("\"%s\" lacks \"%s\"", text, needle);
}

static void
test_model_changed (void)
{
  GtkWindow *window;
  AppComposer *composer;
  AppEngine *engine = app_application_get_engine (app);
  g_autoptr(AppChat) chat = NULL;
  g_autoptr(AppMessage) first = NULL;
  g_autoptr(AppMessage) cut = NULL;
  g_autoptr(AppMessage) reloaded = NULL;
  g_autoptr(AppMessage) failed = NULL;
  g_autofree char *first_text = NULL;
  g_autofree char *cut_text = NULL;

  g_application_activate (G_APPLICATION (app));
  window = gtk_application_get_active_window (GTK_APPLICATION (app));
  g_assert_nonnull (window);
  gtk_window_set_default_size (window, 1100, 760);
  ui_harness_wait_ready (app, TIMEOUT_S);
  composer = APP_COMPOSER (ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_COMPOSER, 0));
  g_assert_nonnull (composer);
  g_assert_cmpstr (app_engine_get_model_name (engine), ==, "DeepSeek-VL2 Tiny");

  /* 1. a first answer */
  set_length (8);
  send (composer, "Hello! Who are you?");
  ui_harness_wait (ui_harness_newest_answer_ended, app, "the first answer", TIMEOUT_S);
  first = ui_harness_newest_message (app);
  g_assert_cmpint (app_message_get_state (first), ==, APP_MESSAGE_COMPLETE);
  first_text = g_strdup (app_message_get_text (first));

  /* 2. the weights cut short while the second answer streams: it stops, keeping its text, and
   * the row says why */
  set_length (4000);
  send (composer, "Write a very long story.");
  ui_harness_wait (ui_harness_newest_answer_streaming, app, "the second answer to stream",
                   TIMEOUT_S);
  g_assert_no_errno (truncate (weights, 1 << 20));
  ui_harness_wait (ui_harness_newest_answer_ended, app, "the end of the second answer", TIMEOUT_S);
  cut = ui_harness_newest_message (app);
  g_assert_cmpint (app_message_get_state (cut), ==, APP_MESSAGE_FAILED);
  g_assert_cmpstr (app_message_get_text (cut), !=, "");
  cut_text = g_strdup (app_message_get_text (cut));
  expect_in (app_message_get_error (cut), "changed on disk");
  g_test_message ("after %u tokens: %s", app_message_get_n_tokens (cut),
                  app_message_get_error (cut));
  wait_for_label (GTK_WIDGET (window), "files changed on disk");
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_READY);

  /* 3. another model written into the folder: the next question loads it */
  put_model ("mini-small");
  set_length (8);
  send (composer, "Are you still there?");
  ui_harness_wait (ui_harness_newest_answer_ended, app, "the third answer", TIMEOUT_S);
  reloaded = ui_harness_newest_message (app);
  if (app_message_get_state (reloaded) != APP_MESSAGE_COMPLETE)
    g_error ("the third answer ended in state %d: %s", app_message_get_state (reloaded),
             app_message_get_error (reloaded));
  expect_in (app_message_get_note (reloaded), "loaded again");
  wait_for_label (GTK_WIDGET (window), "loaded again for this answer");
  g_assert_cmpstr (app_engine_get_model_name (engine), ==, "DeepSeek-VL2 Small");
  wait_for_label (GTK_WIDGET (window), "DeepSeek-VL2 Small"); /* the window's subtitle */

  /* 4. cut short between two questions: the model cannot be loaded, the window says why */
  g_assert_no_errno (truncate (weights, 1 << 20));
  send (composer, "And now?");
  ui_harness_wait (ui_harness_newest_answer_ended, app, "the fourth answer", TIMEOUT_S);
  failed = ui_harness_newest_message (app);
  g_assert_cmpint (app_message_get_state (failed), ==, APP_MESSAGE_FAILED);
  expect_in (app_message_get_error (failed), "incomplete");
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_FAILED);
  /* the banner above the chat: what to do, and the engine's words */
  wait_for_label (GTK_WIDGET (window), "The model could not be loaded");
  wait_for_label (GTK_WIDGET (window), "Download the model again");
  wait_for_label (GTK_WIDGET (window), "the download was interrupted");

  /* 5. the chat kept everything, in memory and on disk (once the writes asked for, made in the
   * background, are done) */
  app_chat_store_flush (app_application_get_store (app));
  chat = ui_harness_newest_chat (app);
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 8);
  {
    g_autoptr(AppChatStore) store =
      app_chat_store_new (app_chat_store_get_data_dir (app_application_get_store (app)));
    GListModel *chats;
    g_autoptr(AppChat) saved = NULL;
    const AppMessageState states[] = {
      APP_MESSAGE_COMPLETE, APP_MESSAGE_COMPLETE, APP_MESSAGE_COMPLETE, APP_MESSAGE_FAILED,
      APP_MESSAGE_COMPLETE, APP_MESSAGE_COMPLETE, APP_MESSAGE_COMPLETE, APP_MESSAGE_FAILED,
    };

    app_chat_store_load (store);
    chats = app_chat_store_get_chats (store);
    g_assert_cmpuint (g_list_model_get_n_items (chats), ==, 1);
    saved = g_list_model_get_item (chats, 0);
    g_assert_cmpuint (app_chat_get_n_messages (saved), ==, 8);
    for (guint i = 0; i < 8; i++)
      {
        g_autoptr(AppMessage) m = app_chat_get_message (saved, i);
        g_autoptr(AppMessage) shown = app_chat_get_message (chat, i);

        g_assert_cmpstr (app_message_get_text (m), ==, app_message_get_text (shown));
        if (app_message_get_role (m) == APP_ROLE_ASSISTANT)
          g_assert_cmpint (app_message_get_state (m), ==, states[i]);
      }
    {
      g_autoptr(AppMessage) a1 = app_chat_get_message (saved, 1);
      g_autoptr(AppMessage) a2 = app_chat_get_message (saved, 3);
      g_autoptr(AppMessage) a3 = app_chat_get_message (saved, 5);

      g_assert_cmpstr (app_message_get_text (a1), ==, first_text);
      g_assert_cmpstr (app_message_get_text (a2), ==, cut_text);
      expect_in (app_message_get_error (a2), "changed on disk");
      expect_in (app_message_get_note (a3), "loaded again");
    }
  }
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = ui_harness_isolate ("model-changed");
  g_autoptr(GSettings) settings = NULL;
  int rc;

  gtk_test_init (&argc, &argv, NULL);
  /* the app's model: a copy of mini-tiny of the test's own, changed as the test goes */
  model_dir = g_build_filename (home, "model", NULL);
  weights = g_build_filename (model_dir, "model.safetensors", NULL);
  g_assert_cmpint (g_mkdir_with_parents (model_dir, 0700), ==, 0);
  put_model ("mini-tiny");
  settings = g_settings_new (APP_ID);
  g_settings_set_string (settings, "model-folder", model_dir);
  g_settings_set_int (settings, "threads", 2);
  app = app_application_new ();
  g_application_set_flags (G_APPLICATION (app),
                           g_application_get_flags (G_APPLICATION (app)) |
                             G_APPLICATION_NON_UNIQUE);
  g_assert_true (g_application_register (G_APPLICATION (app), NULL, NULL));
  g_test_add_func ("/app/model-changed/while-answering-and-between-questions",
                   test_model_changed);
  rc = g_test_run ();
  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  if (rc == 0)
    tree_remove (home); /* kept to look at when the test failed */
  g_free (model_dir);
  g_free (weights);
  return rc;
}
