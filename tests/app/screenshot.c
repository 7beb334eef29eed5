/* screenshot.c - renders the real application window to a PNG, for the README and AppStream.
 *
 *   screenshot chat|grounding|models|server OUTPUT.png
 *
 * Runs under Xvfb (data/screenshots/update.sh). A fresh data folder gets one chat. "chat":
 * made through the app's own store, a question with the golden test photo attached and an
 * answer, and a follow-up question being written, with what it takes of the context counted
 * under it. "grounding": the fixture chat of the grounding UI test, whose last answer has boxes
 * (tests/app/fixtures/grounding-chat.json), with one label pointed at. The answers' text is
 * written here or in the fixture, because the models that come with the repository have random
 * weights and would answer gibberish; everything else on screen is the app as it runs, with
 * the golden mini model loaded. "server": the Models window with the golden mini model on this
 * computer and, in use, the same model served by a real vl2-server on a loopback port (added
 * as Add Server… adds it).
 */
#include "ui-harness.h"

#include "app-composer.h"
#include "app-context-bar.h"
#include "app-markdown-view.h"
#include "app-models-page.h"
#include "app-models.h"
#include "test-server-proc.h"

static const char answer[] =
  "The figure shows the **three training stages** of DeepSeek-VL:\n"
  "\n"
  "1. **Training the VL adaptor** on image–text pairs. The hybrid vision encoder "
  "(SAM-B and SigLIP-L) and the DeepSeek LLM stay frozen; only the adaptor learns.\n"
  "2. **Joint VL pre-training** on interleaved vision–language data and plain text. "
  "The adaptor and the LLM are trained together.\n"
  "3. **Supervised fine-tuning** on chat data with and without images, with every part "
  "trainable.\n"
  "\n"
  "| Stage | Data | Trained |\n"
  "|---|---|---|\n"
  "| 1 | Image–text pairs | Adaptor |\n"
  "| 2 | Interleaved VL + text | Adaptor, LLM |\n"
  "| 3 | VL chat + text chat | Everything |\n";

static void
add_chat (AppChatStore *store)
{
  g_autofree char *photo = ui_harness_golden_image ("vqa_1.jpg");
  g_autoptr(GFile) file = g_file_new_for_path (photo);
  g_autoptr(GError) error = NULL;
  g_autofree char *id = app_chat_store_import_image_file (store, file, &error);
  g_autoptr(AppChat) chat = app_chat_new ();
  g_autoptr(AppMessage) question = app_message_new (APP_ROLE_USER, "Explain this figure.");
  g_autoptr(AppMessage) reply = app_message_new (APP_ROLE_ASSISTANT, answer);
  const char *images[] = { id, NULL };

  g_assert_no_error (error);
  app_message_set_images (question, images);
  app_message_set_stats (reply, 176, 9.4, 21.7);
  app_chat_append (chat, question);
  app_chat_append (chat, reply);
  app_chat_store_add (store, chat);
  g_assert_true (app_chat_store_save (store, chat, &error));
}

/* A label under `widget`, shown, whose text ends with `suffix`. */
static gboolean
shows_label_ending (GtkWidget  *widget,
                    const char *suffix)
{
  if (!gtk_widget_get_visible (widget))
    return FALSE;
  if (GTK_IS_LABEL (widget) && g_str_has_suffix (gtk_label_get_text (GTK_LABEL (widget)), suffix))
    return TRUE;
  for (GtkWidget *c = gtk_widget_get_first_child (widget); c; c = gtk_widget_get_next_sibling (c))
    if (shows_label_ending (c, suffix))
      return TRUE;
  return FALSE;
}

static gboolean
context_counted (gpointer data)
{
  return shows_label_ending (data, "tokens");
}

static void
server_added_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (app_model_manager_add_server_finish (APP_MODEL_MANAGER (source), result, NULL,
                                                      &error));
  g_assert_no_error (error);
  *(gboolean *) user_data = TRUE;
}

static gboolean
remote_ready (gpointer app)
{
  AppEngine *engine = app_application_get_engine (app);

  return app_engine_get_state (engine) == APP_ENGINE_READY && app_engine_is_remote (engine);
}

/* The window of the Models page opened from the menu (not the main window). */
static GtkWindow *
models_window (AppApplication *app,
               GtkWindow      *main_window)
{
  for (GList *l = gtk_application_get_windows (GTK_APPLICATION (app)); l; l = l->next)
    if (l->data != main_window && gtk_widget_get_mapped (l->data)
        && ui_harness_find_widget (l->data, APP_TYPE_MODELS_PAGE, 0))
      return l->data;
  return NULL;
}

static gboolean
models_window_shown (gpointer app)
{
  return models_window (app, gtk_application_get_active_window (app)) != NULL;
}

/* Adds the server's model and has the app use it, then opens the Models window; returns it. */
static GtkWindow *
show_server (AppApplication *app,
             GtkWindow      *main_window,
             const char     *base_url)
{
  g_autofree char *ref = app_models_server_ref (base_url, "mini-tiny");
  g_autofree char *local = g_settings_get_string (app_application_get_settings (app),
                                                  "model-folder");
  const char *folders[] = { local, NULL };
  gboolean added = FALSE;

  /* the local model stays listed beside the server's */
  g_settings_set_strv (app_application_get_settings (app), "added-models", folders);

  app_model_manager_add_server_async (app_application_get_models (app), base_url, "mini-tiny",
                                      NULL, NULL, server_added_cb, &added);
  ui_harness_wait_for (ui_harness_flag_set, &added, "the server added");
  g_settings_set_string (app_application_get_settings (app), "model-folder", ref);
  ui_harness_wait (remote_ready, app, "the server's model in use", 60);
  g_action_group_activate_action (G_ACTION_GROUP (app), "models", NULL);
  ui_harness_wait_for (models_window_shown, app, "the Models window");
  return models_window (app, main_window);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = ui_harness_isolate ("shot");
  g_autoptr(GError) error = NULL;
  AppApplication *app;
  GtkWindow *window;

  gboolean grounding = argc == 3 && g_str_equal (argv[1], "grounding");
  gboolean models = argc == 3 && g_str_equal (argv[1], "models");
  gboolean server = argc == 3 && g_str_equal (argv[1], "server");
  TestServer server_proc = { 0 };
  GtkWidget *shot;

  if (argc != 3 || (!grounding && !models && !server && !g_str_equal (argv[1], "chat")))
    {
      g_printerr ("usage: screenshot chat|grounding|models|server OUTPUT.png\n");
      return 2;
    }
  gtk_init ();
  if (grounding)
    ui_harness_add_grounding_chat ();
  if (models)
    {
      /* no model from the start */
      ui_harness_set_model (NULL);
      app = app_application_new ();
      g_application_set_flags (G_APPLICATION (app), G_APPLICATION_NON_UNIQUE |
                                                      g_application_get_flags (G_APPLICATION (app)));
      g_assert_true (g_application_register (G_APPLICATION (app), NULL, NULL));
    }
  else
    app = ui_harness_app_new ();
  if (!grounding && !models)
    add_chat (app_application_get_store (app));
  if (server)
    test_server_start (&server_proc, NULL);
  g_application_activate (G_APPLICATION (app));
  window = gtk_application_get_active_window (GTK_APPLICATION (app));
  gtk_window_set_default_size (window, 1180, 800);
  shot = GTK_WIDGET (window);
  if (models)
    {
      GtkWidget *page;

      ui_harness_wait_for (ui_harness_window_mapped, app, "the window");
      ui_harness_spin (1);
      page = ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_MODELS_PAGE, 0);
      g_assert_nonnull (page);
      app_models_page_set_machine_ram (APP_MODELS_PAGE (page), 16000000000ull);
      ui_harness_spin (0.5);
    }
  else
    {
      ui_harness_wait_ready (app, 120);
      ui_harness_spin (3); /* the photos are decoded off the main thread */
    }
  if (grounding)
    {
      GtkWidget *view = ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_MARKDOWN_VIEW, 1);

      g_assert_nonnull (view);

      /* the pointer on the "Two giraffes" chip */
      g_signal_emit_by_name (view, "chip-hovered", 0);
      ui_harness_spin (0.5);
    }
  else if (server)
    {
      GtkWindow *models_win = show_server (app, window, server_proc.url);

      gtk_window_set_default_size (models_win, 900, 640);
      ui_harness_spin (1);
      shot = GTK_WIDGET (models_win);
    }
  else if (!models)
    {
      AppComposer *composer = APP_COMPOSER (ui_harness_find_widget (GTK_WIDGET (window),
                                                                    APP_TYPE_COMPOSER, 0));

      app_composer_set_text (composer, "Which parts learn in stage 2?");
      ui_harness_wait (context_counted, app_composer_get_context_bar (composer),
                       "the context counted", 60);
      ui_harness_spin (0.5);
    }
  if (!ui_harness_render_png (shot, argv[2], &error))
    g_error ("%s", error->message);
  g_print ("wrote %s\n", argv[2]);
  g_application_quit (G_APPLICATION (app));
  g_object_unref (app);
  if (server)
    test_server_stop (&server_proc);
  return 0;
}
