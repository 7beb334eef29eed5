/* test-models.c - the Models page of the real application, under Xvfb.
 *
 * A Hugging Face Hub on loopback (hub-server.c, HF_ENDPOINT) serves the golden mini-tiny
 * model as deepseek-ai/deepseek-vl2-tiny (and nothing else: other repositories are 404). A
 * user with no model sees the Models page as the first screen, with the published models and
 * whether they fit (the memory injected). An earlier run left half of Tiny's weights: Tiny is
 * offered paused. Download shows the licence; Cancel starts nothing; Accept starts the
 * download, which here fails (404) with its reason and Retry. Resume finishes Tiny from where
 * the earlier run stopped (an HTTP Range, half the bytes sent); the app then uses the model
 * and answers a question with it. Then
 * an 8-bit copy with its progress row (and a cancelled 4-bit one), the header bar's switcher
 * choosing the copy, a chat answered by it, coming back to the first chat switching back to
 * its model, deleting the copy after a confirmation, a Hugging Face cache found and deleted
 * without touching what its links point to, and "Keep in memory" loading again.
 */
#include <glib/gstdio.h>
#include <signal.h>
#include <unistd.h>

#include "app-composer.h"
#include "app-hub.h"
#include "app-models-page.h"
#include "hub-server.h"
#include "test-server-proc.h"
#include "tree.h"
#include "ui-find.h"
#include "ui-harness.h"

static const char * const served[] = {
  "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
  "tokenizer_config.json", NULL,
};

static AppApplication *app;
static GtkWidget *main_window;
static HubServer *server;
static char *fixture_dir;
static char *home;

static GtkWidget *
window (void)
{
  return main_window;
}

static AppModelManager *
models (void)
{
  return app_application_get_models (app);
}

static AppEngine *
engine (void)
{
  return app_application_get_engine (app);
}

static char *
downloaded_dir (void)
{
  return g_build_filename (g_get_user_data_dir (), "sightline", "models",
                           "deepseek-ai--deepseek-vl2-tiny", NULL);
}

/* The mapped toplevel window `match` accepts, or NULL. */
static GtkWindow *
find_toplevel (gboolean (*match) (GtkWindow *window))
{
  GListModel *toplevels = gtk_window_get_toplevels ();

  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr(GtkWidget) w = g_list_model_get_item (toplevels, i);
      if (gtk_widget_get_mapped (w) && match (GTK_WINDOW (w)))
        return GTK_WINDOW (w);
    }
  return NULL;
}

static gboolean
is_message_dialog (GtkWindow *window)
{
  return ADW_IS_MESSAGE_DIALOG (window);
}

/* The message dialog on screen, or NULL. */
static AdwMessageDialog *
message_dialog (void)
{
  GtkWindow *w = find_toplevel (is_message_dialog);

  return w ? ADW_MESSAGE_DIALOG (w) : NULL;
}

static gboolean
dialog_shown (gpointer data)
{
  return message_dialog () != NULL;
}

static gboolean
dialog_gone (gpointer data)
{
  return message_dialog () == NULL;
}

static gboolean
is_button_label (GtkWidget     *w,
                 gconstpointer  text)
{
  return GTK_IS_LABEL (w) && g_strcmp0 (gtk_label_get_text (GTK_LABEL (w)), text) == 0 &&
         gtk_widget_get_ancestor (w, GTK_TYPE_BUTTON);
}

/* Clicks the button of `button_label` in the dialog whose heading holds `heading_part`. */
static void
answer_dialog (const char *heading_part,
               const char *button_label)
{
  AdwMessageDialog *dialog;
  GtkWidget *label;
  GtkWidget *button;

  ui_harness_wait_for (dialog_shown, NULL, "a dialog");
  dialog = message_dialog ();
  g_assert_nonnull (strstr (adw_message_dialog_get_heading (dialog), heading_part));
  label = ui_find_mapped (GTK_WIDGET (dialog), is_button_label, button_label);
  g_assert_nonnull (label);
  button = gtk_widget_get_ancestor (label, GTK_TYPE_BUTTON);
  g_assert_nonnull (button);
  g_signal_emit_by_name (button, "clicked");
  ui_harness_wait_for (dialog_gone, NULL, "the dialog to close");
}

static gboolean
main_window_active (gpointer data)
{
  return gtk_window_is_active (GTK_WINDOW (main_window));
}

static void
ask (const char *question)
{
  AppComposer *composer = APP_COMPOSER (ui_find_any (window (), APP_TYPE_COMPOSER));

  /* in front, as for a person typing (an answer to a window in the back is a notification) */
  gtk_window_present (GTK_WINDOW (main_window));
  ui_harness_wait_for (main_window_active, NULL, "the window to be active");

  app_composer_set_text (composer, question);
  g_signal_emit_by_name (composer, "send");
  ui_harness_wait_for (ui_harness_newest_answer_ended, app, "the answer");
  {
    g_autoptr(AppMessage) answer = ui_harness_newest_message (app);

    if (app_message_get_state (answer) != APP_MESSAGE_COMPLETE)
      g_error ("the answer ended in state %d: %s", app_message_get_state (answer),
               app_message_get_error (answer));
    g_assert_cmpstr (app_message_get_text (answer), !=, "");
    g_assert_cmpuint (app_message_get_n_tokens (answer), >, 0);
  }
}

static gboolean
ready_with (gpointer dir)
{
  return app_engine_get_state (engine ()) == APP_ENGINE_READY &&
         g_strcmp0 (app_engine_get_model_dir (engine ()), dir) == 0;
}

static gboolean
label_shown (gpointer text)
{
  return ui_find_label (window (), text) != NULL;
}

/* The installed entry whose source is `source`, or NULL. */
static AppModelEntry *
entry_of (AppModelSource source)
{
  GListModel *list = app_model_manager_get_installed (models ());

  for (guint i = 0; i < g_list_model_get_n_items (list); i++)
    {
      g_autoptr(AppModelEntry) e = g_list_model_get_item (list, i);
      if (app_model_entry_get_source (e) == source)
        return e;
    }
  return NULL;
}

static gboolean
has_copy (gpointer data)
{
  return !app_model_manager_get_copying (models ()) && entry_of (APP_MODEL_SOURCE_COPY);
}

static gboolean
not_copying (gpointer data)
{
  return !app_model_manager_get_copying (models ());
}

static gboolean
copy_gone (gpointer data)
{
  return entry_of (APP_MODEL_SOURCE_COPY) == NULL;
}

static gboolean
cache_gone (gpointer data)
{
  return entry_of (APP_MODEL_SOURCE_HF_CACHE) == NULL;
}

static gboolean
models_page_shown (gpointer data)
{
  return ui_find_type (window (), APP_TYPE_MODELS_PAGE) != NULL;
}

static gboolean
is_download_button (GtkWidget     *w,
                    gconstpointer  repo)
{
  GVariant *target;

  if (!GTK_IS_BUTTON (w) ||
      g_strcmp0 (gtk_actionable_get_action_name (GTK_ACTIONABLE (w)), "models.download") != 0)
    return FALSE;
  target = gtk_actionable_get_action_target_value (GTK_ACTIONABLE (w));
  return target && g_strcmp0 (g_variant_get_string (target, NULL), repo) == 0;
}

/* The shown button of `repo`'s row that downloads, resumes or retries. */
static GtkButton *
download_button (GtkWidget  *page,
                 const char *repo)
{
  GtkWidget *button = ui_find_mapped (page, is_download_button, repo);

  g_assert_nonnull (button);
  return GTK_BUTTON (button);
}

static gboolean
small_failed (gpointer data)
{
  AppDownload *d = app_model_manager_get_download (models (), "deepseek-ai/deepseek-vl2-small");

  return d && app_download_get_state (d) == APP_DOWNLOAD_FAILED;
}

/* What an earlier run left: the first half of Tiny's weights, in the partial folder. */
static guint64
plant_partial_download (void)
{
  g_autofree char *dest = downloaded_dir ();
  g_autofree char *partial = g_build_filename (dest, ".partial", NULL);
  g_autofree char *from = g_build_filename (fixture_dir, "model.safetensors", NULL);
  g_autofree char *to = g_build_filename (partial, "model.safetensors", NULL);
  g_autofree char *bytes = NULL;
  gsize len = 0;

  g_assert_true (g_file_get_contents (from, &bytes, &len, NULL));
  g_assert_cmpint (g_mkdir_with_parents (partial, 0755), ==, 0);
  g_assert_true (g_file_set_contents (to, bytes, (gssize) (len / 2), NULL));
  return len / 2;
}

static guint64 planted;

/* 1. The first screen: the Models page, what each model costs, the licence, the download. */
static void
test_download (void)
{
  g_autofree char *dest = downloaded_dir ();
  AppModelsPage *page;
  GtkButton *button;
  g_autoptr(AppChat) chat = NULL;
  guint64 size = hub_server_file_size (server, "model.safetensors");

  g_application_activate (G_APPLICATION (app));
  main_window = GTK_WIDGET (gtk_application_get_active_window (GTK_APPLICATION (app)));
  gtk_window_set_default_size (GTK_WINDOW (main_window), 1000, 900);
  ui_harness_wait_for (ui_harness_window_mapped, app, "the window");
  ui_harness_wait_for (models_page_shown, NULL, "the Models page");
  page = APP_MODELS_PAGE (ui_find_type (window (), APP_TYPE_MODELS_PAGE));
  g_assert_nonnull (page);
  g_assert_nonnull (ui_find_label (window (), "Welcome to Sightline"));
  g_assert_nonnull (ui_find_label (window (), "No models yet"));
  g_assert_nonnull (ui_find_label (window (), "No Model"));   /* the header bar's switcher */

  /* the hints, for a computer with 16 GB */
  app_models_page_set_machine_ram (page, 16000000000ull);
  g_assert_nonnull (ui_find_label (window (), "Fits this computer"));
  g_assert_nonnull (ui_find_label (window (), "Fits this computer as a 4-bit copy"));
  g_assert_nonnull (ui_find_label (window (), "Will be slow on this computer"));
  app_models_page_set_machine_ram (page, 4000000000ull);
  g_assert_nonnull (ui_find_label (window (), "Fits this computer as an 8-bit copy"));
  g_assert_nonnull (ui_find_label (window (), "Will not fit this computer"));
  g_assert_nonnull (ui_find_label (window (), "6.7\u00a0GB to download"));

  /* the download an earlier run left is offered, paused */
  g_assert_nonnull (app_model_manager_get_download (models (), HUB_TEST_REPO));
  g_assert_nonnull (ui_find_label (GTK_WIDGET (page), "Paused"));
  g_assert_cmpstr (gtk_button_get_label (download_button (GTK_WIDGET (page), HUB_TEST_REPO)),
                   ==, "_Resume");

  /* Download…: the licence first; Cancel downloads nothing */
  button = download_button (GTK_WIDGET (page), "deepseek-ai/deepseek-vl2");
  g_assert_cmpstr (gtk_button_get_label (button), ==, "_Download…");
  g_signal_emit_by_name (button, "clicked");
  answer_dialog ("DeepSeek Model License", "Cancel");
  ui_harness_spin (0.2);
  g_assert_null (app_model_manager_get_download (models (), "deepseek-ai/deepseek-vl2"));

  /* Accept and Download: this Hub has no Small; the row says so, and offers Retry */
  g_signal_emit_by_name (download_button (GTK_WIDGET (page), "deepseek-ai/deepseek-vl2-small"),
                         "clicked");
  answer_dialog ("DeepSeek Model License", "Accept and Download");
  ui_harness_wait_for (small_failed, NULL, "Small's download to fail");
  g_assert_nonnull (ui_find_label (GTK_WIDGET (page),
                                   "deepseek-ai/deepseek-vl2-small: no such model on"));
  g_assert_cmpstr (gtk_button_get_label (download_button (GTK_WIDGET (page),
                                                          "deepseek-ai/deepseek-vl2-small")),
                   ==, "_Retry");
  g_assert_cmpuint (hub_server_requests (server, "model.safetensors"), ==, 0);

  /* Resume: Tiny goes on from the half the earlier run wrote; once verified and installed,
   * the app uses the model, and loads it */
  g_signal_emit_by_name (download_button (GTK_WIDGET (page), HUB_TEST_REPO), "clicked");
  ui_harness_wait_for (ready_with, dest, "the downloaded model, loaded");
  g_assert_null (message_dialog ());
  g_assert_true (app_hub_is_installed (dest, NULL, NULL));
  g_assert_cmpuint (hub_server_last_range (server, "model.safetensors"), ==, planted);
  g_assert_cmpuint (hub_server_bytes_sent (server, "model.safetensors"), ==, size - planted);
  g_assert_cmpint (app_download_get_state (app_model_manager_get_download (models (),
                                                                            HUB_TEST_REPO)),
                   ==, APP_DOWNLOAD_INSTALLED);
  g_assert_nonnull (entry_of (APP_MODEL_SOURCE_DOWNLOAD));
  ui_harness_wait_for (label_shown, (gpointer) "DeepSeek-VL2 Tiny", "the switcher to name it");

  /* and answers with it; the chat remembers the model */
  ask ("What can you do?");
  chat = ui_harness_newest_chat (app);
  g_assert_cmpstr (app_chat_get_model (chat), ==, dest);
}

static GtkWidget *
models_window_page (void)
{
  GList *windows = gtk_application_get_windows (GTK_APPLICATION (app));

  for (GList *l = windows; l; l = l->next)
    if (l->data != main_window && gtk_widget_get_mapped (l->data))
      {
        GtkWidget *page = ui_find_type (l->data, APP_TYPE_MODELS_PAGE);
        if (page)
          return page;
      }
  return NULL;
}

static gboolean
models_window_shown (gpointer data)
{
  return models_window_page () != NULL;
}

static void
cancel_at_first_progress (AppModelManager *manager)
{
  if (app_model_manager_get_copy_progress (manager) > 0)
    app_model_manager_cancel_copy (manager);
}

/* 2. Copies, the switcher, the chat's own model, Delete. */
static void
test_copy_switch_delete (void)
{
  g_autofree char *dest = downloaded_dir ();
  g_autofree char *copy = NULL;
  g_autofree char *q4_dir = NULL;
  g_autofree char *q8_dir = NULL;
  g_autoptr(AppChat) first = ui_harness_newest_chat (app);
  g_autoptr(AppChat) second = NULL;
  GtkWidget *page;
  gulong handler;

  /* the Models window, from the switcher's "Manage Models…" */
  g_action_group_activate_action (G_ACTION_GROUP (app), "models", NULL);
  ui_harness_wait_for (models_window_shown, NULL, "the Models window");
  page = models_window_page ();
  g_assert_nonnull (ui_find_label (page, "In use"));

  /* a 4-bit copy, cancelled: nothing is left */
  handler = g_signal_connect (models (), "notify::copy-progress",
                              G_CALLBACK (cancel_at_first_progress), NULL);
  g_assert_true (gtk_widget_activate_action (page, "models.copy", "(sb)", dest, TRUE));
  g_assert_nonnull (ui_find_label (page, "Making a 4-bit copy of “DeepSeek-VL2 Tiny”"));
  ui_harness_wait_for (not_copying, NULL, "the cancelled copy");
  g_signal_handler_disconnect (models (), handler);
  g_assert_null (entry_of (APP_MODEL_SOURCE_COPY));
  q4_dir = g_strconcat (dest, "-q4", NULL);
  g_assert_false (g_file_test (q4_dir, G_FILE_TEST_EXISTS));

  /* an 8-bit copy: its own entry */
  g_assert_true (gtk_widget_activate_action (page, "models.copy", "(sb)", dest, FALSE));
  g_assert_nonnull (ui_find_label (page, "Making an 8-bit copy of “DeepSeek-VL2 Tiny”"));
  ui_harness_wait_for (has_copy, NULL, "the 8-bit copy");
  copy = g_strdup (app_model_entry_get_path (entry_of (APP_MODEL_SOURCE_COPY)));
  q8_dir = g_strconcat (dest, "-q8", NULL);
  g_assert_cmpstr (copy, ==, q8_dir);
  g_assert_cmpint (app_model_entry_get_weights (entry_of (APP_MODEL_SOURCE_COPY)), ==,
                   APP_MODEL_WEIGHTS_Q8);
  g_assert_cmpstr (app_model_entry_get_name (entry_of (APP_MODEL_SOURCE_COPY)), ==,
                   "DeepSeek-VL2 Tiny, 8-bit");
  g_assert_nonnull (ui_find_label (page, "DeepSeek-VL2 Tiny, 8-bit"));
  gtk_window_close (GTK_WINDOW (gtk_widget_get_root (page)));

  /* the header bar's switcher chooses it; a new chat is answered by it */
  g_assert_true (gtk_widget_activate_action (window (), "app.model-folder", "s", copy));
  ui_harness_wait_for (ready_with, copy, "the copy, loaded");
  ui_harness_wait_for (label_shown, (gpointer) "DeepSeek-VL2 Tiny, 8-bit", "the switcher");
  g_assert_true (gtk_widget_activate_action (window (), "win.new-chat", NULL));
  ask ("And now?");
  second = ui_harness_newest_chat (app);
  g_assert_true (second != first);
  g_assert_cmpstr (app_chat_get_model (second), ==, copy);

  /* back to the first chat: back to its model */
  gtk_single_selection_set_selected (
    GTK_SINGLE_SELECTION (gtk_list_view_get_model (ui_find_chat_list (window ()))),
    ui_find_chat_position (window (), first));
  ui_harness_wait_for (ready_with, dest, "the first chat's model, loaded");

  /* Delete… the copy, confirmed */
  g_action_group_activate_action (G_ACTION_GROUP (app), "models", NULL);
  ui_harness_wait_for (models_window_shown, NULL, "the Models window");
  page = models_window_page ();
  g_assert_true (gtk_widget_activate_action (page, "models.delete", "s", copy));
  answer_dialog ("Delete “DeepSeek-VL2 Tiny, 8-bit”?", "Cancel");
  g_assert_true (g_file_test (copy, G_FILE_TEST_IS_DIR));
  g_assert_true (gtk_widget_activate_action (page, "models.delete", "s", copy));
  answer_dialog ("Delete “DeepSeek-VL2 Tiny, 8-bit”?", "Delete");
  ui_harness_wait_for (copy_gone, NULL, "the copy to go");
  g_assert_false (g_file_test (copy, G_FILE_TEST_EXISTS));
  /* the model in use is not deleted */
  g_assert_true (gtk_widget_activate_action (page, "models.delete", "s", dest));
  answer_dialog ("Delete “DeepSeek-VL2 Tiny”?", "Delete");
  ui_harness_spin (0.5);
  g_assert_true (app_hub_is_installed (dest, NULL, NULL));
  g_assert_true (ui_find_shows_text (page, "is in use"));
  gtk_window_close (GTK_WINDOW (gtk_widget_get_root (page)));
}

/* 3. A model in huggingface_hub's cache is found, and deleting it removes the cache's folder,
 * never what its links point to. */
static void
test_hf_cache (void)
{
  g_autofree char *cache = g_build_filename (g_get_user_cache_dir (), "huggingface", "hub",
                                             NULL);
  g_autofree char *repo_dir = g_build_filename (cache, "models--deepseek-ai--deepseek-vl2-tiny",
                                                NULL);
  g_autofree char *snap = g_build_filename (repo_dir, "snapshots", HUB_TEST_COMMIT, NULL);
  g_autofree char *refs = g_build_filename (repo_dir, "refs", NULL);
  g_autofree char *ref = g_build_filename (refs, "main", NULL);
  g_autofree char *fixture_weights = g_build_filename (fixture_dir, "model.safetensors", NULL);
  AppModelEntry *entry;
  GtkWidget *page;

  g_assert_cmpint (g_mkdir_with_parents (snap, 0755), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (refs, 0755), ==, 0);
  g_assert_true (g_file_set_contents (ref, HUB_TEST_COMMIT, -1, NULL));
  for (guint i = 0; served[i]; i++)
    {
      g_autofree char *from = g_build_filename (fixture_dir, served[i], NULL);
      g_autofree char *link = g_build_filename (snap, served[i], NULL);
      g_assert_cmpint (symlink (from, link), ==, 0);
    }
  app_model_manager_rescan (models ());
  entry = entry_of (APP_MODEL_SOURCE_HF_CACHE);
  g_assert_nonnull (entry);
  g_assert_cmpstr (app_model_entry_get_path (entry), ==, snap);
  g_assert_cmpstr (app_model_entry_get_name (entry), ==, "DeepSeek-VL2 Tiny");
  g_assert_cmpuint (app_model_entry_get_disk_bytes (entry), >, 1 << 20);   /* links followed */

  g_action_group_activate_action (G_ACTION_GROUP (app), "models", NULL);
  ui_harness_wait_for (models_window_shown, NULL, "the Models window");
  page = models_window_page ();
  g_assert_true (ui_find_shows_text (page, "Hugging Face cache"));
  g_assert_true (gtk_widget_activate_action (page, "models.delete", "s", snap));
  answer_dialog ("Delete “DeepSeek-VL2 Tiny”?", "Delete");
  ui_harness_wait_for (cache_gone, NULL, "the cache's model to go");
  g_assert_false (g_file_test (repo_dir, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (fixture_weights, G_FILE_TEST_IS_REGULAR));
  gtk_window_close (GTK_WINDOW (gtk_widget_get_root (page)));
}

static gboolean
loading_seen (gpointer data)
{
  gboolean *seen = data;

  if (app_engine_get_state (engine ()) == APP_ENGINE_LOADING)
    *seen = TRUE;
  return *seen;
}

/* 4. Keep in memory: the model loads again, resident, and still answers. */
static void
test_resident (void)
{
  g_autofree char *dest = downloaded_dir ();
  gboolean seen = FALSE;

  g_assert_false (app_engine_get_resident (engine ()));
  g_settings_set_boolean (app_application_get_settings (app), "resident", TRUE);
  g_assert_true (app_engine_get_resident (engine ()));
  ui_harness_wait_for (loading_seen, &seen, "the model to load again");
  ui_harness_wait_for (ready_with, dest, "the resident model");
  ask ("Once more?");
}

static gboolean
is_server_dialog (GtkWindow *window)
{
  return g_strcmp0 (gtk_window_get_title (window), "Add a Server") == 0;
}

/* The "Add a Server" window on screen, or NULL. */
static GtkWindow *
server_dialog (void)
{
  return find_toplevel (is_server_dialog);
}

static gboolean
server_dialog_shown (gpointer data)
{
  return server_dialog () != NULL;
}

static gboolean
server_dialog_gone (gpointer data)
{
  return server_dialog () == NULL;
}

static gboolean
dialog_says (gpointer text)
{
  return server_dialog () && ui_find_label (GTK_WIDGET (server_dialog ()), text) != NULL;
}

/* The label with `text` is whole inside the dialog, not scrolled or cut away. */
static void
assert_dialog_shows (const char *text)
{
  GtkWidget *dialog = GTK_WIDGET (server_dialog ());
  GtkWidget *label;
  graphene_rect_t bounds;

  ui_harness_wait_for (dialog_says, (gpointer) text, text);
  ui_harness_spin (0.5); /* the window takes its new size */
  label = ui_find_label (dialog, text);
  g_assert_true (gtk_widget_compute_bounds (label, dialog, &bounds));
  g_assert_cmpfloat (bounds.origin.y, >=, 0);
  g_assert_cmpfloat (bounds.origin.y + bounds.size.height, <=, gtk_widget_get_height (dialog));
}

static gboolean
is_labelled_button (GtkWidget     *w,
                    gconstpointer  text)
{
  return GTK_IS_BUTTON (w) && g_strcmp0 (gtk_button_get_label (GTK_BUTTON (w)), text) == 0;
}

/* Types the address and key into the dialog and presses Connect. */
static void
connect_to (const char *address,
            const char *key)
{
  GtkWidget *dialog = GTK_WIDGET (server_dialog ());
  GtkWidget *button = ui_find_mapped (dialog, is_labelled_button, "C_onnect");

  g_assert_nonnull (button);
  gtk_editable_set_text (GTK_EDITABLE (ui_find_type (dialog, ADW_TYPE_ENTRY_ROW)), address);
  gtk_editable_set_text (GTK_EDITABLE (ui_find_type (dialog, ADW_TYPE_PASSWORD_ENTRY_ROW)), key);
  g_signal_emit_by_name (button, "clicked");
}

static gboolean
remote_ready (gpointer data)
{
  return app_engine_get_state (engine ()) == APP_ENGINE_READY &&
         app_engine_is_remote (engine ());
}

/* The server's model in use, or the engine stopped with an error. */
static gboolean
remote_ready_or_failed (gpointer data)
{
  return remote_ready (NULL) || (app_engine_get_state (engine ()) != APP_ENGINE_LOADING &&
                                 app_engine_get_error (engine ()) != NULL);
}

/* 5. A model on a server: Add Server…, the errors a person can make, then answers from it. */
static void
test_server (void)
{
  TestServer server_proc = { 0 };
  g_autofree char *ref = NULL, *name = NULL;
  const char *url;
  g_auto(GStrv) servers = NULL;
  g_autoptr(AppChat) chat = NULL;
  GSettings *settings = app_application_get_settings (app);
  AppModelEntry *entry;
  GtkWidget *page;

  test_server_start (&server_proc, "key-1234");
  url = server_proc.url;
  ref = g_strconcat (url, "#mini-tiny", NULL);

  g_action_group_activate_action (G_ACTION_GROUP (app), "models", NULL);
  ui_harness_wait_for (models_window_shown, NULL, "the Models window");
  page = models_window_page ();
  g_assert_true (gtk_widget_activate_action (page, "models.add-server", NULL));
  ui_harness_wait_for (server_dialog_shown, NULL, "the Add a Server window");

  /* what goes wrong says so, and the window stays */
  connect_to ("not a url", "");
  assert_dialog_shows ("is not a server address");
  connect_to ("127.0.0.1:1", "");
  assert_dialog_shows ("Cannot reach the server");
  connect_to (url, "wrong");
  assert_dialog_shows ("refused the API key");
  /* the right key: one model, added and used */
  connect_to (url, "key-1234");
  ui_harness_wait_for (server_dialog_gone, NULL, "the model added");
  servers = g_settings_get_strv (settings, "servers");
  g_assert_cmpuint (g_strv_length (servers), ==, 1);
  g_assert_cmpstr (servers[0], ==, ref);
  ui_harness_wait_for (remote_ready, NULL, "the server's model in use");
  g_assert_cmpstr (app_engine_get_model_name (engine ()), ==, "mini-tiny");
  entry = app_model_manager_get_current (models ());
  g_assert_nonnull (entry);
  g_assert_cmpint (app_model_entry_get_source (entry), ==, APP_MODEL_SOURCE_SERVER);
  name = g_strdup (app_model_entry_get_name (entry));
  g_assert_true (g_str_has_prefix (name, "mini-tiny on 127.0.0.1:"));
  ui_harness_wait_for (label_shown, name, "the switcher naming it");
  g_assert_nonnull (ui_find_label (page, name));
  g_assert_nonnull (ui_find_label (page, url));
  gtk_window_close (GTK_WINDOW (gtk_widget_get_root (page)));

  /* a chat answered by the server */
  g_assert_true (gtk_widget_activate_action (window (), "win.new-chat", NULL));
  ask ("Who answers?");
  chat = ui_harness_newest_chat (app);
  g_assert_cmpstr (app_chat_get_model (chat), ==, ref);

  /* back to a folder, then the server asked for twice while its key is being looked up:
   * one connection, not a cancelled one */
  g_settings_set_string (settings, "model-folder", fixture_dir);
  ui_harness_wait_for (ready_with, fixture_dir, "the folder's model");
  g_settings_set_string (settings, "model-folder", ref);
  app_application_load_model (app);
  ui_harness_wait_for (remote_ready_or_failed, NULL, "the server's model again");
  g_assert_null (app_engine_get_error (engine ()));
  g_assert_true (remote_ready (NULL));

  /* Remove from List: gone from the models and the settings */
  g_action_group_activate_action (G_ACTION_GROUP (app), "models", NULL);
  ui_harness_wait_for (models_window_shown, NULL, "the Models window");
  page = models_window_page ();
  g_assert_true (gtk_widget_activate_action (page, "models.delete", "s", ref));
  g_clear_pointer (&servers, g_strfreev);
  servers = g_settings_get_strv (settings, "servers");
  g_assert_cmpuint (g_strv_length (servers), ==, 0);
  g_assert_null (app_model_manager_find (models (), ref));
  gtk_window_close (GTK_WINDOW (gtk_widget_get_root (page)));

  test_server_stop (&server_proc);
}

int
main (int   argc,
      char *argv[])
{
  int status;

  g_setenv ("no_proxy", "127.0.0.1,localhost", TRUE);
  g_setenv ("NO_PROXY", "127.0.0.1,localhost", TRUE);
  home = ui_harness_isolate ("models");
  gtk_test_init (&argc, &argv, NULL);
  fixture_dir = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), "mini-tiny", NULL);
  server = hub_server_new (fixture_dir, served);
  g_setenv ("HF_ENDPOINT", hub_server_endpoint (server), TRUE);
  g_unsetenv ("HF_TOKEN");
  planted = plant_partial_download ();

  ui_harness_set_model (NULL);   /* a new user: no model */
  app = app_application_new ();
  g_application_set_flags (G_APPLICATION (app),
                           g_application_get_flags (G_APPLICATION (app)) |
                             G_APPLICATION_NON_UNIQUE);
  g_assert_true (g_application_register (G_APPLICATION (app), NULL, NULL));

  g_test_add_func ("/app/models/download", test_download);
  g_test_add_func ("/app/models/copy-switch-delete", test_copy_switch_delete);
  g_test_add_func ("/app/models/hf-cache", test_hf_cache);
  g_test_add_func ("/app/models/resident", test_resident);
  g_test_add_func ("/app/models/server", test_server);
  status = g_test_run ();

  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  hub_server_free (server);
  tree_remove (home);
  g_free (home);
  g_free (fixture_dir);
  return status;
}
