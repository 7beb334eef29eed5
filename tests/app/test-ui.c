/* test-ui.c - the real application, under Xvfb, with a golden mini model.
 *
 * It starts AppApplication as `sightline` does (fresh XDG directories, in-memory settings),
 * waits for the model to load, drops an image onto the window through the window's own drop
 * target, sends a question, waits for the streamed answer, starts a second answer and stops
 * it, checks that the session still answers afterwards, that the chat and its image were saved,
 * and writes a screenshot of the window ($VL2_SCREENSHOT_DIR or the build folder). Then the
 * preferences' sampling rows: the engine's defaults while unset, a value of one's own, reset.
 */
#include "app-config.h"
#include "app-composer.h"
#include "app-engine.h"
#include "app-preferences.h"
#include "ui-find.h"
#include "ui-harness.h"

#define TIMEOUT_S 120

static AppApplication *app;

static gboolean
images_ready (gpointer data)
{
  AppComposer *composer = data;

  return app_composer_has_images (composer) && !app_composer_is_importing (composer);
}

static gboolean
window_drawn (gpointer data)
{
  GtkWidget *w = data;

  return gtk_widget_get_mapped (w) && gtk_widget_get_width (w) > 0;
}

static void
send (AppComposer *composer,
      const char  *text)
{
  app_composer_set_text (composer, text);
  g_signal_emit_by_name (composer, "send");
}

/* A screenshot is a picture, not a blank: many distinct colours. */
static void
check_png (const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) t = gdk_texture_new_from_filename (path, &error);
  g_autofree guchar *px = NULL;
  g_autoptr(GHashTable) colours = g_hash_table_new (g_direct_hash, g_direct_equal);
  int w, h;

  g_assert_no_error (error);
  w = gdk_texture_get_width (t);
  h = gdk_texture_get_height (t);
  g_assert_cmpint (w, >=, 600);
  g_assert_cmpint (h, >=, 400);
  px = g_malloc ((gsize) w * h * 4);
  gdk_texture_download (t, px, (gsize) w * 4);
  for (int i = 0; i < w * h; i += 7)
    g_hash_table_add (colours, GUINT_TO_POINTER (((guint32 *) px)[i]));
  g_assert_cmpuint (g_hash_table_size (colours), >, 50);
}

static void
test_chat_with_image (void)
{
  GtkWindow *window;
  AppComposer *composer;
  GtkDropTarget *drop = NULL;
  g_autofree char *image = ui_harness_golden_image ("multi_image_2.png");
  g_autoptr(GFile) file = g_file_new_for_path (image);
  GSList *files = g_slist_append (NULL, file);
  g_auto(GValue) value = G_VALUE_INIT;
  gboolean accepted = FALSE;
  g_autoptr(AppChat) chat = NULL;
  g_autoptr(AppMessage) question = NULL;
  g_autoptr(AppMessage) answer = NULL;
  g_autofree char *shot_dir = NULL;
  g_autofree char *shot = NULL;
  g_autoptr(GError) error = NULL;

  g_application_activate (G_APPLICATION (app));
  window = gtk_application_get_active_window (GTK_APPLICATION (app));
  g_assert_nonnull (window);
  gtk_window_set_default_size (window, 1100, 760);
  ui_harness_wait_ready (app, TIMEOUT_S);
  composer = APP_COMPOSER (ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_COMPOSER, 0));
  g_assert_nonnull (composer);

  /* 1. drop an image file on the window, through its drop target */
  drop = GTK_DROP_TARGET (ui_find_controller (GTK_WIDGET (window), GTK_TYPE_DROP_TARGET));
  g_assert_nonnull (drop);
  g_value_init (&value, GDK_TYPE_FILE_LIST);
  g_value_take_boxed (&value, gdk_file_list_new_from_list (files));
  g_slist_free (files);
  g_signal_emit_by_name (drop, "drop", &value, 400.0, 300.0, &accepted);
  g_assert_true (accepted);
  ui_harness_wait_for (images_ready, composer, "the dropped image");

  /* 2. ask, and wait for the streamed answer */
  send (composer, "What is in this picture?");
  g_assert_false (app_composer_has_images (composer)); /* sent with the question */
  ui_harness_wait_for (ui_harness_newest_answer_ended, app, "the first answer");
  chat = ui_harness_newest_chat (app);
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 2);
  question = app_chat_get_message (chat, 0);
  answer = app_chat_get_message (chat, 1);
  g_assert_cmpstr (app_message_get_text (question), ==, "What is in this picture?");
  g_assert_nonnull (app_message_get_images (question));
  g_assert_nonnull (app_message_get_images (question)[0]);
  if (app_message_get_state (answer) != APP_MESSAGE_COMPLETE)
    g_error ("the answer ended in state %d: %s", app_message_get_state (answer),
             app_message_get_error (answer));
  g_assert_cmpstr (app_message_get_text (answer), !=, "");
  g_assert_cmpuint (app_message_get_n_tokens (answer), >, 0);
  g_assert_cmpfloat (app_message_get_tokens_per_second (answer), >, 0);
  g_test_message ("first answer: %u tokens, %.2f s to the first, %.1f tokens/s",
                  app_message_get_n_tokens (answer),
                  app_message_get_first_token_seconds (answer),
                  app_message_get_tokens_per_second (answer));

  /* 3. a second, long answer: stop it while it streams */
  g_settings_set (app_application_get_settings (app), "max-new-tokens", "mi", TRUE, 4096);
  send (composer, "Tell me much more.");
  ui_harness_wait_for (ui_harness_newest_answer_streaming, app, "the second answer to stream");
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.stop", NULL));
  ui_harness_wait_for (ui_harness_newest_answer_ended, app, "the stop");
  {
    g_autoptr(AppMessage) stopped = ui_harness_newest_message (app);

    g_assert_cmpint (app_message_get_state (stopped), ==, APP_MESSAGE_STOPPED);
    g_assert_cmpuint (app_message_get_n_tokens (stopped), <, 4096);
  }

  /* 4. the session is still usable: a third answer completes */
  g_settings_set (app_application_get_settings (app), "max-new-tokens", "mi", TRUE, 16);
  send (composer, "Thanks!");
  ui_harness_wait_for (ui_harness_newest_answer_ended, app, "the third answer");
  {
    g_autoptr(AppMessage) third = ui_harness_newest_message (app);

    g_assert_cmpint (app_message_get_state (third), ==, APP_MESSAGE_COMPLETE);
  }

  /* 5. the chat and its image are on disk */
  {
    const char *data = app_chat_store_get_data_dir (app_application_get_store (app));
    g_autofree char *name = g_strdup_printf ("%s.json", app_chat_get_id (chat));
    g_autofree char *chat_file = g_build_filename (data, "chats", name, NULL);
    g_autofree char *image_file =
      app_chat_store_get_image_path (app_application_get_store (app),
                                     app_message_get_images (question)[0]);

    app_chat_store_flush (app_application_get_store (app));   /* written in the background */
    g_assert_true (g_file_test (chat_file, G_FILE_TEST_IS_REGULAR));
    g_assert_true (g_file_test (image_file, G_FILE_TEST_IS_REGULAR));
  }

  /* 6. a screenshot of the window, once it has been drawn */
  ui_harness_wait_for (window_drawn, window, "the window to be drawn");
  ui_harness_spin (0.2);
  shot_dir = g_strdup (g_getenv ("VL2_SCREENSHOT_DIR"));
  if (!shot_dir)
    shot_dir = g_strdup (g_getenv ("VL2_FIXTURE_DIR"));
  shot = g_build_filename (shot_dir, "ui-test.png", NULL);
  if (!ui_harness_render_png (GTK_WIDGET (window), shot, &error))
    g_error ("%s", error->message);
  g_test_message ("screenshot: %s", shot);
  check_png (shot);
}

/* The preferences row titled `title`. */
static GtkWidget *
find_row (GtkWidget  *root,
          const char *title)
{
  if (ADW_IS_ACTION_ROW (root) &&
      g_strcmp0 (adw_preferences_row_get_title (ADW_PREFERENCES_ROW (root)), title) == 0)
    return root;
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_row (c, title);

      if (found)
        return found;
    }
  return NULL;
}

/* A sampling row's reset button, shown or not. */
static GtkWidget *
find_reset (GtkWidget *root)
{
  if (GTK_IS_BUTTON (root) &&
      g_strcmp0 (gtk_button_get_icon_name (GTK_BUTTON (root)), "edit-undo-symbolic") == 0)
    return root;
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_reset (c);

      if (found)
        return found;
    }
  return NULL;
}

/* An unset sampling key shows the engine's default; a value set is stored and can be reset. */
static void
test_preferences_defaults (void)
{
  GSettings *settings = app_application_get_settings (app);
  g_autoptr(GVariant) saved_length = g_settings_get_value (settings, "max-new-tokens");
  AppGenerateParams defaults;
  AppPreferences *prefs;
  GtkWidget *row;
  GtkSpinButton *spin;
  GtkWidget *reset;
  GVariant *value;

  app_generate_params_init (&defaults);
  g_settings_reset (settings, "temperature");
  g_settings_set (settings, "max-new-tokens", "mi", TRUE, 24);
  prefs = app_preferences_new (settings);

  row = find_row (GTK_WIDGET (prefs), "Temperature");
  g_assert_nonnull (row);
  spin = GTK_SPIN_BUTTON (ui_harness_find_widget (row, GTK_TYPE_SPIN_BUTTON, 0));
  reset = find_reset (row);
  g_assert_nonnull (reset);
  g_assert_cmpfloat (gtk_spin_button_get_value (spin), ==, defaults.temperature);
  g_assert_false (gtk_widget_get_visible (reset));

  gtk_spin_button_set_value (spin, 0.7);
  value = g_settings_get_value (settings, "temperature");
  g_assert_cmpstr (g_variant_get_type_string (value), ==, "md");
  g_assert_cmpuint (g_variant_n_children (value), ==, 1);
  g_variant_unref (value);
  g_assert_true (gtk_widget_get_visible (reset));

  g_signal_emit_by_name (reset, "clicked");
  value = g_settings_get_value (settings, "temperature");
  g_assert_cmpuint (g_variant_n_children (value), ==, 0);
  g_variant_unref (value);
  g_assert_cmpfloat (gtk_spin_button_get_value (spin), ==, defaults.temperature);
  g_assert_false (gtk_widget_get_visible (reset));

  /* an integer key, set before the window opened */
  row = find_row (GTK_WIDGET (prefs), "Maximum Answer Length");
  g_assert_nonnull (row);
  spin = GTK_SPIN_BUTTON (ui_harness_find_widget (row, GTK_TYPE_SPIN_BUTTON, 0));
  reset = find_reset (row);
  g_assert_cmpint (gtk_spin_button_get_value_as_int (spin), ==, 24);
  g_assert_true (gtk_widget_get_visible (reset));
  g_signal_emit_by_name (reset, "clicked");
  g_assert_cmpint (gtk_spin_button_get_value_as_int (spin), ==, defaults.max_new_tokens);
  g_assert_false (gtk_widget_get_visible (reset));
  gtk_spin_button_set_value (spin, 32);
  g_assert_true (gtk_widget_get_visible (reset));
  {
    gboolean set = FALSE;
    gint32 length = 0;

    g_settings_get (settings, "max-new-tokens", "mi", &set, &length);
    g_assert_true (set);
    g_assert_cmpint (length, ==, 32);
  }

  gtk_window_destroy (GTK_WINDOW (prefs));
  g_settings_set_value (settings, "max-new-tokens", saved_length);
  app_generate_params_clear (&defaults);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = ui_harness_isolate ("ui");
  g_autoptr(GSettings) settings = NULL;
  int rc;

  gtk_test_init (&argc, &argv, NULL);
  settings = g_settings_new (APP_ID);
  g_settings_set (settings, "max-new-tokens", "mi", TRUE, 24);
  app = ui_harness_app_new ();
  g_test_add_func ("/app/ui/chat-with-image", test_chat_with_image);
  g_test_add_func ("/app/ui/preferences-defaults", test_preferences_defaults);
  rc = g_test_run ();
  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  return rc;
}
