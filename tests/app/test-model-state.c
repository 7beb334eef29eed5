/* test-model-state.c - the chats stay readable whatever the model does, under Xvfb.
 *
 * The real application starts with a chat (the grounding fixture) and no model: the chat is
 * shown, with a banner above it saying there is no model and offering to open a folder, and
 * the send button says why it cannot send. Then folders that fail to load - not a model, a
 * clone without git-lfs - keep the chat on screen with the banner saying what to do, under a
 * warning icon. With no chat at all the welcome page takes the conversation's place and says
 * the same. Then a model loading: the banner shows the folder, the percentage, a progress bar
 * and Cancel; Cancel leaves no model and no error. Last, the model loads: the banner counts to
 * 100 % and goes, and the header bar's switcher names the folder.
 */
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "app-composer.h"
#include "app-message-row.h"
#include "app-model-banner.h"
#include "ui-find.h"
#include "ui-harness.h"

#define TIMEOUT_S 120

static AppApplication *app;
static char *home;

static GtkWidget *
window (void)
{
  return GTK_WIDGET (gtk_application_get_active_window (GTK_APPLICATION (app)));
}

static AppEngine *
engine (void)
{
  return app_application_get_engine (app);
}

static gboolean
state_is (gpointer data)
{
  return app_engine_get_state (engine ()) == (AppEngineState) GPOINTER_TO_INT (data);
}

static void
wait_state (AppEngineState state,
            const char    *what)
{
  ui_harness_wait_for (state_is, GINT_TO_POINTER (state), what);
}

/* The conversation is on screen: its messages are drawn. */
static gboolean
chat_shown (gpointer data)
{
  return ui_find_type (window (), APP_TYPE_MESSAGE_ROW) != NULL;
}

static gboolean
chat_hidden (gpointer data)
{
  return !chat_shown (data);
}

static gboolean
label_shown (gpointer needle)
{
  return ui_find_label (window (), needle) != NULL;
}

static void
wait_label (const char *needle)
{
  g_autofree char *what = g_strdup_printf ("a label saying \"%s\"", needle);

  ui_harness_wait_for (label_shown, (gpointer) needle, what);
}

static GtkWidget *
send_button (void)
{
  GtkWidget *composer = ui_find_any (window (), APP_TYPE_COMPOSER);

  g_assert_nonnull (composer);
  return ui_find_send_button (composer);
}

static void
set_folder (const char *path)
{
  g_settings_set_string (app_application_get_settings (app), "model-folder", path);
}

/* A folder holding links to the fixture's files named in `linked`, and `files` (name,
 * contents pairs). */
static char *
make_folder (const char         *name,
             const char * const *linked,
             const char * const *files)
{
  char *dir = g_build_filename (home, name, NULL);
  g_autofree char *model = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), "mini-tiny", NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  for (guint i = 0; linked && linked[i]; i++)
    {
      g_autofree char *from = g_build_filename (model, linked[i], NULL);
      g_autofree char *to = g_build_filename (dir, linked[i], NULL);

      g_assert_cmpint (symlink (from, to), ==, 0);
    }
  for (guint i = 0; files && files[i]; i += 2)
    {
      g_autofree char *to = g_build_filename (dir, files[i], NULL);

      g_assert_true (g_file_set_contents (to, files[i + 1], -1, NULL));
    }
  return dir;
}

/* 1. No model: the chat, a banner offering a folder, and a send button that says why. */
static void
test_no_model (void)
{
  GtkWidget *button;
  const char *tooltip;

  g_assert_cmpint (app_engine_get_state (engine ()), ==, APP_ENGINE_EMPTY);
  ui_harness_wait_for (chat_shown, NULL, "the chat without a model");
  wait_label ("No model is loaded");
  g_assert_nonnull (ui_find_action_button (window (), "win.open-model"));

  button = send_button ();
  g_assert_nonnull (button);
  g_assert_false (gtk_widget_get_sensitive (button));
  tooltip = gtk_widget_get_tooltip_text (button);
  g_assert_nonnull (tooltip);
  g_assert_nonnull (strstr (tooltip, "No model"));
}

/* 2. Folders that do not load: the chat stays, the banner says what to do. */
static void
test_failed (void)
{
  const char *notes[] = { "notes.txt", "Not a model.", NULL };
  const char *pointer[] = { "model.safetensors",
                            "version https://git-lfs.github.com/spec/v1\n"
                            "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                            "size 6746589584\n", NULL };
  const char *config[] = { "config.json", "tokenizer.json", NULL };
  g_autofree char *not_a_model = make_folder ("photos", NULL, notes);
  g_autofree char *lfs = make_folder ("deepseek-vl2-tiny", config, pointer);
  GtkWidget *retry;

  set_folder (not_a_model);
  wait_state (APP_ENGINE_FAILED, "the folder without a model to fail");
  wait_label ("config.json and the .safetensors files");
  g_assert_true (chat_shown (NULL));
  g_assert_nonnull (ui_find_label (window (), "could not be loaded"));
  g_assert_nonnull (ui_find_icon (window (), "dialog-warning-symbolic"));
  g_assert_nonnull (ui_find_action_button (window (), "win.open-model"));

  set_folder (lfs);
  wait_label ("git lfs pull");
  g_assert_cmpint (app_engine_get_state (engine ()), ==, APP_ENGINE_FAILED);
  g_assert_true (chat_shown (NULL));
  /* the engine's own words under the advice */
  g_assert_nonnull (ui_find_label (window (), "is a Git LFS pointer"));
  retry = ui_find_action_button (window (), "win.reload-model");
  g_assert_nonnull (retry);
  g_assert_false (gtk_widget_get_sensitive (send_button ()));
}

static gboolean
welcome_shown (gpointer data)
{
  GtkWidget *page = ui_find_type (window (), ADW_TYPE_STATUS_PAGE);

  return page && ui_find_action_button (page, "win.open-model");
}

/* 3. No chat at all: the welcome page, saying what to do about the failed folder. */
static void
test_welcome (void)
{
  const char *notes[] = { "notes.txt", "Not a model either.", NULL };
  g_autofree char *not_a_model = make_folder ("documents", NULL, notes);
  AppChatStore *store = app_application_get_store (app);
  g_autoptr(AppChat) chat = g_list_model_get_item (app_chat_store_get_chats (store), 0);
  AdwStatusPage *page;

  set_folder (not_a_model);
  wait_state (APP_ENGINE_FAILED, "the folder without a model to fail");
  app_chat_store_trash (store, chat);
  ui_harness_wait_for (welcome_shown, NULL, "the welcome page");
  page = ADW_STATUS_PAGE (ui_find_type (window (), ADW_TYPE_STATUS_PAGE));
  g_assert_cmpstr (adw_status_page_get_icon_name (page), ==, "dialog-warning-symbolic");
  g_assert_nonnull (strstr (adw_status_page_get_description (page),
                            "config.json and the .safetensors files"));
  ui_harness_wait_for (chat_hidden, NULL, "the conversation to go");

  /* a chat again: the conversation comes back */
  app_chat_store_untrash (store, chat);
  ui_harness_wait_for (chat_shown, NULL, "the chat back");
}

/* The banner's buttons are gone, and so is its place above the conversation. */
static gboolean
banner_gone (gpointer data)
{
  return !ui_find_action_button (window (), "win.open-model") &&
         !ui_find_action_button (window (), "win.cancel-load") &&
         gtk_widget_get_height (ui_find_any (window (), APP_TYPE_MODEL_BANNER)) == 0;
}

static void
record_text_cb (GtkLabel   *label,
                GParamSpec *pspec,
                GPtrArray  *texts)
{
  g_ptr_array_add (texts, g_strdup (gtk_label_get_text (label)));
}

static void
record_fraction_cb (GtkProgressBar *bar,
                    GParamSpec     *pspec,
                    double         *last)
{
  g_assert_cmpfloat (gtk_progress_bar_get_fraction (bar), >=, *last);
  *last = gtk_progress_bar_get_fraction (bar);
}

/* 4. A model loading: the chat, and the banner with the folder, the percentage, a progress
 * bar and Cancel; Cancel leaves no model and no error. Loading again, the banner counts to
 * 100 % and goes; sending works. The load starts as the folder is chosen, and the window
 * follows at once: everything below until the first wait runs before the engine can finish. */
static void
test_loading_cancel (void)
{
  const char *linked[] = { "config.json", "tokenizer.json", "model.safetensors", NULL };
  g_autofree char *folder = make_folder ("deepseek-vl2-tiny-copy", linked, NULL);
  g_autoptr(GPtrArray) texts = g_ptr_array_new_with_free_func (g_free);
  GtkWidget *cancel, *label, *bar;
  double fraction = 0;
  gboolean counted = FALSE;
  AppModelEntry *current;

  ui_harness_wait_for (chat_shown, NULL, "the chat");
  set_folder (folder);
  g_assert_cmpint (app_engine_get_state (engine ()), ==, APP_ENGINE_LOADING);
  label = ui_find_label (window (), "Loading “deepseek-vl2-tiny-copy”… 0 %");
  g_assert_nonnull (label);
  g_assert_nonnull (ui_find_type (window (), GTK_TYPE_PROGRESS_BAR));
  g_assert_true (chat_shown (NULL));
  g_assert_false (gtk_widget_get_sensitive (send_button ()));
  cancel = ui_find_action_button (window (), "win.cancel-load");
  g_assert_nonnull (cancel);
  g_assert_true (gtk_widget_is_sensitive (cancel));
  g_signal_emit_by_name (cancel, "clicked");
  wait_state (APP_ENGINE_EMPTY, "the cancelled load");
  g_assert_null (app_engine_get_error (engine ()));
  wait_label ("Loading was cancelled");
  g_assert_true (chat_shown (NULL));
  g_assert_nonnull (ui_find_action_button (window (), "win.open-model"));

  /* again, to the end: the banner counts, then goes */
  g_assert_true (gtk_widget_activate_action (window (), "win.reload-model", NULL));
  g_assert_cmpint (app_engine_get_state (engine ()), ==, APP_ENGINE_LOADING);
  label = ui_find_label (window (), "Loading “deepseek-vl2-tiny-copy”…");
  bar = ui_find_type (window (), GTK_TYPE_PROGRESS_BAR);
  g_assert_nonnull (label);
  g_assert_nonnull (bar);
  g_signal_connect (label, "notify::label", G_CALLBACK (record_text_cb), texts);
  g_signal_connect (bar, "notify::fraction", G_CALLBACK (record_fraction_cb), &fraction);
  ui_harness_wait_ready (app, TIMEOUT_S);
  g_signal_handlers_disconnect_by_data (label, texts);
  g_signal_handlers_disconnect_by_data (bar, &fraction);
  g_assert_cmpfloat (fraction, ==, 1.0);
  for (guint i = 0; i < texts->len; i++)
    counted = counted || g_str_equal (g_ptr_array_index (texts, i),
                                      "Loading “deepseek-vl2-tiny-copy”… 100 %");
  g_assert_true (counted);
  ui_harness_wait_for (banner_gone, NULL, "the banner to go");
  app_composer_set_text (APP_COMPOSER (ui_find_any (window (), APP_TYPE_COMPOSER)), "Hello?");
  g_assert_true (gtk_widget_get_sensitive (send_button ()));

  /* a folder set as the model in use, by whatever means, is listed with the models and named
   * by the header bar's switcher (it said "No Model" over the model answering) */
  current = app_model_manager_get_current (app_application_get_models (app));
  g_assert_nonnull (current);
  g_assert_cmpstr (app_model_entry_get_path (current), ==, folder);
  g_assert_nonnull (ui_find_label (window (), app_model_entry_get_name (current)));
  g_assert_null (ui_find_label (window (), "No Model"));
}

int
main (int   argc,
      char *argv[])
{
  int rc;

  home = ui_harness_isolate ("model-state");
  gtk_test_init (&argc, &argv, NULL);
  ui_harness_add_grounding_chat ();
  ui_harness_set_model (NULL);
  app = app_application_new ();
  g_application_set_flags (G_APPLICATION (app),
                           g_application_get_flags (G_APPLICATION (app)) |
                             G_APPLICATION_NON_UNIQUE);
  g_assert_true (g_application_register (G_APPLICATION (app), NULL, NULL));
  g_application_activate (G_APPLICATION (app));
  gtk_window_set_default_size (GTK_WINDOW (window ()), 1100, 760);
  ui_harness_wait_for (ui_harness_window_mapped, app, "the window");
  g_test_add_func ("/app/model-state/no-model", test_no_model);
  g_test_add_func ("/app/model-state/failed", test_failed);
  g_test_add_func ("/app/model-state/welcome", test_welcome);
  g_test_add_func ("/app/model-state/loading-cancel", test_loading_cancel);
  rc = g_test_run ();
  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  g_free (home);
  return rc;
}
