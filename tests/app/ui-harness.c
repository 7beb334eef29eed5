/* ui-harness.c - see ui-harness.h. */
#include "app-config.h"
#include "ui-harness.h"

#include "app-message-row.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>

#define TIMEOUT_S 120

/* GTK 4.8 warns "GtkListView failed to scroll to given position. Ignoring..." when the list's
 * adjustment moves while its rows are replaced and not laid out yet (a chat shown while the
 * focus moves, on a slow machine); later GTK versions return there without a word. The warning
 * is GTK's own and changes nothing on screen: it is printed, not fatal. Any other warning is. */
static gboolean
fatal_log_cb (const char     *domain,
              GLogLevelFlags  level,
              const char     *message,
              gpointer        data)
{
  return !(g_strcmp0 (domain, "Gtk") == 0 && (level & G_LOG_LEVEL_WARNING) &&
           g_str_has_suffix (message, "failed to scroll to given position. Ignoring..."));
}

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
  g_test_log_set_fatal_handler (fatal_log_cb, NULL);
  return home;
}

void
ui_harness_add_chat (const char         *chat_file,
                     const char * const *image_files)
{
  g_autofree char *data = g_build_filename (g_get_user_data_dir (), "sightline", NULL);
  g_autofree char *chats = g_build_filename (data, "chats", NULL);
  g_autofree char *images = g_build_filename (data, "images", NULL);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autofree char *name = NULL;
  g_autofree char *chat_copy = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  gsize len;

  g_assert_cmpint (g_mkdir_with_parents (chats, 0700), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (images, 0700), ==, 0);
  /* the store reads <id>.json only */
  if (!g_file_get_contents (chat_file, &contents, &len, &error) ||
      !json_parser_load_from_data (parser, contents, (gssize) len, &error))
    g_error ("%s", error->message);
  name = g_strconcat (json_object_get_string_member (json_node_get_object (
                        json_parser_get_root (parser)), "id"), ".json", NULL);
  chat_copy = g_build_filename (chats, name, NULL);
  if (!g_file_set_contents (chat_copy, contents, (gssize) len, &error))
    g_error ("%s", error->message);
  for (guint i = 0; image_files && image_files[i]; i++)
    {
      g_autofree char *bytes = NULL;
      g_autofree char *sum = NULL;
      g_autofree char *id = NULL;
      g_autofree char *copy = NULL;
      const char *ext = strrchr (image_files[i], '.');

      if (!g_file_get_contents (image_files[i], &bytes, &len, &error))
        g_error ("%s", error->message);
      sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) bytes, len);
      id = g_strconcat (sum, ext ? ext : "", NULL);
      copy = g_build_filename (images, id, NULL);
      if (!g_file_set_contents (copy, bytes, (gssize) len, &error))
        g_error ("%s", error->message);
    }
}

char *
ui_harness_golden_image (const char *name)
{
  return g_build_filename (g_getenv ("VL2_GOLDEN_DIR"), "images", name, NULL);
}

void
ui_harness_add_grounding_chat (void)
{
  g_autofree char *chat = g_build_filename (g_getenv ("VL2_APP_FIXTURES"), "grounding-chat.json",
                                            NULL);
  g_autofree char *corn = ui_harness_golden_image ("multi_image_2.png");
  g_autofree char *giraffes = ui_harness_golden_image ("visual_grounding_1.png");
  const char *images[] = { corn, giraffes, NULL };

  ui_harness_add_chat (chat, images);
}

static GtkWidget *
find_widget (GtkWidget *root,
             GType      type,
             guint     *n)
{
  if (!gtk_widget_get_visible (root))
    return NULL;
  if (G_TYPE_CHECK_INSTANCE_TYPE (root, type) && (*n)-- == 0)
    return root;
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_widget (c, type, n);

      if (found)
        return found;
    }
  return NULL;
}

GtkWidget *
ui_harness_find_widget (GtkWidget *root,
                        GType      type,
                        guint      n)
{
  return find_widget (root, type, &n);
}

GtkWidget *
ui_harness_message_row (GtkWidget  *root,
                        AppMessage *message)
{
  GtkWidget *row;

  for (guint i = 0; (row = ui_harness_find_widget (root, APP_TYPE_MESSAGE_ROW, i)); i++)
    if (app_message_row_get_message (APP_MESSAGE_ROW (row)) == message)
      return row;
  return NULL;
}

void
ui_harness_set_model (const char *name)
{
  g_autofree char *model = name ? g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), name, NULL)
                                : g_strdup ("");
  g_autoptr(GSettings) settings = g_settings_new (APP_ID);

  /* the memory backend is shared within the process: the app sees these values */
  g_settings_set_string (settings, "model-folder", model);
  g_settings_set_int (settings, "threads", 2);
}

AppApplication *
ui_harness_app_new (void)
{
  AppApplication *app;

  ui_harness_set_model ("mini-tiny");
  app = app_application_new ();
  g_application_set_flags (G_APPLICATION (app),
                           g_application_get_flags (G_APPLICATION (app)) |
                             G_APPLICATION_NON_UNIQUE);
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

/* When the waits end: `timeout_s` from now, scaled by VL2_TEST_TIMEOUT_SCALE (the sanitizer
 * test setup sets it: the same work takes several times longer there). */
static gint64
deadline (int timeout_s)
{
  const char *scale = g_getenv ("VL2_TEST_TIMEOUT_SCALE");
  double k = scale ? g_ascii_strtod (scale, NULL) : 1.0;

  return g_get_monotonic_time () + (gint64) (timeout_s * MAX (k, 1.0) * G_USEC_PER_SEC);
}

void
ui_harness_wait (gboolean  (*done) (gpointer),
                 gpointer    data,
                 const char *what,
                 int         timeout_s)
{
  gint64 end = deadline (timeout_s);

  while (!done (data))
    {
      if (g_get_monotonic_time () > end)
        g_error ("timed out waiting for %s", what);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
}

void
ui_harness_wait_for (gboolean  (*done) (gpointer),
                     gpointer    data,
                     const char *what)
{
  ui_harness_wait (done, data, what, TIMEOUT_S);
}

gboolean
ui_harness_window_mapped (gpointer app)
{
  return gtk_widget_get_mapped (GTK_WIDGET (gtk_application_get_active_window (app)));
}

void
ui_harness_wait_ready (AppApplication *app,
                       int             timeout_s)
{
  AppEngine *engine = app_application_get_engine (app);
  gint64 end = deadline (timeout_s);

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

AppChat *
ui_harness_newest_chat (AppApplication *app)
{
  GListModel *chats = app_chat_store_get_chats (app_application_get_store (app));

  g_assert_cmpuint (g_list_model_get_n_items (chats), >, 0);
  return g_list_model_get_item (chats, 0);
}

AppChat *
ui_harness_find_chat (AppApplication *app,
                      const char     *id)
{
  GListModel *chats = app_chat_store_get_chats (app_application_get_store (app));

  for (guint i = 0; i < g_list_model_get_n_items (chats); i++)
    {
      g_autoptr(AppChat) chat = g_list_model_get_item (chats, i);

      if (g_str_equal (app_chat_get_id (chat), id))
        return chat;
    }
  return NULL;
}

AppMessage *
ui_harness_last_message (AppChat *chat)
{
  guint n = app_chat_get_n_messages (chat);

  return n ? app_chat_get_message (chat, n - 1) : NULL;
}

AppMessage *
ui_harness_newest_message (AppApplication *app)
{
  g_autoptr(AppChat) chat = ui_harness_newest_chat (app);

  return ui_harness_last_message (chat);
}

gboolean
ui_harness_answer_ended (AppMessage *m)
{
  AppMessageState s = app_message_get_state (m);

  return app_message_get_role (m) == APP_ROLE_ASSISTANT &&
         (s == APP_MESSAGE_COMPLETE || s == APP_MESSAGE_STOPPED || s == APP_MESSAGE_FAILED);
}

gboolean
ui_harness_answer_settled (AppMessage *m)
{
  AppMessageState s = app_message_get_state (m);

  return app_message_get_role (m) == APP_ROLE_ASSISTANT && s != APP_MESSAGE_PENDING &&
         s != APP_MESSAGE_STREAMING;
}

gboolean
ui_harness_answer_streaming (AppMessage *m,
                             gsize       min_bytes)
{
  return app_message_get_role (m) == APP_ROLE_ASSISTANT &&
         app_message_get_state (m) == APP_MESSAGE_STREAMING &&
         strlen (app_message_get_text (m)) >= min_bytes;
}

gboolean
ui_harness_newest_answer_ended (gpointer app)
{
  g_autoptr(AppMessage) m = ui_harness_newest_message (app);

  return ui_harness_answer_ended (m);
}

gboolean
ui_harness_newest_answer_streaming (gpointer app)
{
  g_autoptr(AppMessage) m = ui_harness_newest_message (app);

  return ui_harness_answer_streaming (m, 1);
}

gboolean
ui_harness_flag_set (gpointer data)
{
  return *(gboolean *) data;
}

typedef struct
{
  char *text;
  gboolean done;
} ClipboardRead;

static void
clipboard_read_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  ClipboardRead *r = user_data;
  g_autoptr(GError) error = NULL;

  r->text = gdk_clipboard_read_text_finish (GDK_CLIPBOARD (source), result, &error);
  g_assert_no_error (error);
  r->done = TRUE;
}

char *
ui_harness_clipboard_text (GdkClipboard *clipboard,
                           int           timeout_s)
{
  ClipboardRead read = { 0 };

  gdk_clipboard_read_text_async (clipboard, NULL, clipboard_read_cb, &read);
  ui_harness_wait (ui_harness_flag_set, &read.done, "the clipboard's text", timeout_s);
  return read.text;
}

gboolean
ui_harness_render_png (GtkWidget  *widget,
                       const char *path,
                       GError    **error)
{
  g_autoptr(GdkPaintable) paintable = gtk_widget_paintable_new (widget);
  /* the paintable covers what the widget draws, a window's shadow included: drawn at that
   * size, one widget pixel is one image pixel */
  int w = gdk_paintable_get_intrinsic_width (paintable);
  int h = gdk_paintable_get_intrinsic_height (paintable);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  g_autoptr(GskRenderNode) node = NULL;
  g_autoptr(GdkTexture) texture = NULL;

  /* a widget mapped since the last frame has nothing to draw until the frame clock has run:
   * on a loaded machine that can take a while, so frames are given up to 10 s */
  gint64 give_up = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  for (;;)
    {
      gdk_paintable_snapshot (paintable, GDK_SNAPSHOT (snapshot), w, h);
      node = gtk_snapshot_free_to_node (snapshot);
      if (node || g_get_monotonic_time () > give_up)
        break;
      gtk_widget_queue_draw (widget);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (10000);
      snapshot = gtk_snapshot_new ();
    }
  if (!node)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "nothing to draw: the widget is %d x %d, mapped %d", w, h,
                   gtk_widget_get_mapped (widget));
      return FALSE;
    }
  texture = gsk_renderer_render_texture (gtk_native_get_renderer (gtk_widget_get_native (widget)),
                                         node, &GRAPHENE_RECT_INIT (0, 0, w, h));
  if (!gdk_texture_save_to_png (texture, path))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot write %s", path);
      return FALSE;
    }
  return TRUE;
}
