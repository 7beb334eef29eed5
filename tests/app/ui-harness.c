/* ui-harness.c - see ui-harness.h. */
#include "ui-harness.h"

char *
ui_harness_isolate (const char *name)
{
  g_autofree char *tmpl = g_strdup_printf ("sightline-%s-XXXXXX", name);
  char *home = g_dir_make_tmp (tmpl, NULL);

  g_assert_nonnull (home);
  g_setenv ("XDG_DATA_HOME", home, TRUE);
  g_setenv ("XDG_CONFIG_HOME", home, TRUE);
  g_setenv ("XDG_CACHE_HOME", home, TRUE);
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  g_setenv ("GSK_RENDERER", "cairo", FALSE);
  g_setenv ("GTK_A11Y", "none", TRUE); /* no accessibility bus to start */
  return home;
}

AppApplication *
ui_harness_app_new (void)
{
  g_autofree char *model = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), "mini-tiny", NULL);
  g_autoptr(GSettings) settings = g_settings_new ("io.github.sightline.Sightline");
  AppApplication *app;

  /* the memory backend is shared within the process: the app sees these values */
  g_settings_set_string (settings, "model-folder", model);
  g_settings_set_int (settings, "threads", 2);
  app = app_application_new ();
  g_application_set_flags (G_APPLICATION (app), G_APPLICATION_NON_UNIQUE);
  g_assert_true (g_application_register (G_APPLICATION (app), NULL, NULL));
  return app;
}

void
ui_harness_spin (double seconds)
{
  gint64 end = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);

  while (g_get_monotonic_time () < end)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
}

void
ui_harness_wait_ready (AppApplication *app,
                       int             timeout_s)
{
  AppEngine *engine = app_application_get_engine (app);
  gint64 end = g_get_monotonic_time () + (gint64) timeout_s * G_USEC_PER_SEC;

  while (app_engine_get_state (engine) != APP_ENGINE_READY)
    {
      if (app_engine_get_state (engine) == APP_ENGINE_FAILED)
        g_error ("the model failed to load: %s", app_engine_get_error (engine));
      if (g_get_monotonic_time () > end)
        g_error ("timed out loading the model (state %d, %.0f%%)", app_engine_get_state (engine),
                 100 * app_engine_get_load_progress (engine));
      ui_harness_spin (0.01);
    }
}

gboolean
ui_harness_render_png (GtkWidget  *window,
                       const char *path,
                       GError    **error)
{
  int w = gtk_widget_get_width (window), h = gtk_widget_get_height (window);
  g_autoptr(GdkPaintable) paintable = gtk_widget_paintable_new (window);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  g_autoptr(GskRenderNode) node = NULL;
  g_autoptr(GdkTexture) texture = NULL;

  gdk_paintable_snapshot (paintable, GDK_SNAPSHOT (snapshot), w, h);
  node = gtk_snapshot_free_to_node (snapshot);
  if (!node)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "nothing to draw: the window is %d x %d, mapped %d", w, h,
                   gtk_widget_get_mapped (window));
      return FALSE;
    }
  texture = gsk_renderer_render_texture (gtk_native_get_renderer (GTK_NATIVE (window)), node,
                                         &GRAPHENE_RECT_INIT (0, 0, w, h));
  if (!gdk_texture_save_to_png (texture, path))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot write %s", path);
      return FALSE;
    }
  return TRUE;
}
