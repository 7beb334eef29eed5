/* screenshot.c - renders the real application window to a PNG, for the README and AppStream.
 *
 *   screenshot OUTPUT.png
 *
 * Runs under Xvfb (data/screenshots/update.sh). A fresh data folder gets one chat, made through
 * the app's own store: a question with the golden test photo attached and an answer. The
 * answer's text is written here, because the models that come with the repository have random
 * weights and would answer gibberish; everything else on screen is the app as it runs, with
 * the golden mini model loaded.
 */
#include <glib/gstdio.h>
#include <gtk/gtk.h>

#include "app-application.h"

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

static AppApplication *app;

static gboolean
ready (void)
{
  AppEngineState s = app_engine_get_state (app_application_get_engine (app));

  if (s == APP_ENGINE_FAILED)
    g_error ("%s", app_engine_get_error (app_application_get_engine (app)));
  return s == APP_ENGINE_READY;
}

static void
spin (double seconds)
{
  gint64 end = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);

  while (g_get_monotonic_time () < end)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (2000);
    }
}

static void
add_chat (AppChatStore *store)
{
  g_autofree char *photo = g_build_filename (g_getenv ("VL2_GOLDEN_DIR"), "images", "vqa_1.jpg",
                                             NULL);
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

static void
render (GtkWidget  *window,
        const char *path)
{
  int w = gtk_widget_get_width (window), h = gtk_widget_get_height (window);
  g_autoptr(GdkPaintable) paintable = gtk_widget_paintable_new (window);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  g_autoptr(GskRenderNode) node = NULL;
  g_autoptr(GdkTexture) texture = NULL;

  gdk_paintable_snapshot (paintable, GDK_SNAPSHOT (snapshot), w, h);
  node = gtk_snapshot_free_to_node (snapshot);
  texture = gsk_renderer_render_texture (gtk_native_get_renderer (GTK_NATIVE (window)), node,
                                         &GRAPHENE_RECT_INIT (0, 0, w, h));
  if (!gdk_texture_save_to_png (texture, path))
    g_error ("cannot write %s", path);
  g_print ("%s: %d x %d\n", path, w, h);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = g_dir_make_tmp ("sightline-shot-XXXXXX", NULL);
  g_autofree char *model = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), "mini-tiny", NULL);
  g_autoptr(GSettings) settings = NULL;
  GtkWindow *window;

  if (argc != 2)
    {
      g_printerr ("usage: screenshot OUTPUT.png\n");
      return 2;
    }
  g_setenv ("XDG_DATA_HOME", home, TRUE);
  g_setenv ("XDG_CONFIG_HOME", home, TRUE);
  g_setenv ("XDG_CACHE_HOME", home, TRUE);
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  g_setenv ("GSK_RENDERER", "cairo", FALSE);
  gtk_init ();

  settings = g_settings_new ("io.github.sightline.Sightline");
  g_settings_set_string (settings, "model-folder", model);
  app = app_application_new ();
  g_application_set_flags (G_APPLICATION (app), G_APPLICATION_NON_UNIQUE);
  g_application_register (G_APPLICATION (app), NULL, NULL);
  add_chat (app_application_get_store (app));
  g_application_activate (G_APPLICATION (app));
  window = gtk_application_get_active_window (GTK_APPLICATION (app));
  gtk_window_set_default_size (window, 1180, 800);
  while (!ready ())
    spin (0.05);
  spin (3); /* the photo is decoded off the main thread */
  render (GTK_WIDGET (window), argv[1]);
  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  return 0;
}
