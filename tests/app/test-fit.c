/* test-fit.c - images of any number and shape fit the window, under Xvfb.
 *
 * Three chats are written before the app starts, each a question with 1, 5 or 20 images
 * among which a 25:1 panorama and a 1:3 portrait, then an answer. For each chat the test asks
 * the real window what it needs: its minimum width stays within 360 pixels, so the sidebar
 * does not fold away at 1100 pixels; the thumbnails are one height and no wider than the
 * bound, the panorama included. Then the same images attached in the question box: it keeps
 * one bounded height with 1, 5 or 20 of them and never asks for more width than a narrow
 * window has. Last, the window at 360 pixels shows the chat with 20 images.
 *
 * Then the context, counted before Send: a short question fits and Send is on; an edit of the
 * first question counts only what comes before it; a 38 kB paste
 * is too long before it is sent, Send stays off and the paste stays in the box; a question
 * after twenty images does not fit, and "Leave Out Oldest Images" makes it fit and be
 * answered, with a note, the chat keeping every image.
 */
#include <dlfcn.h>
#include <json-glib/json-glib.h>
#include <string.h>
#ifdef HAVE_X11
#include <gdk/x11/gdkx.h>
#endif

#include "app-composer.h"
#include "app-grounding-view.h"
#include "app-message-row.h"
#include "app-thumbnail.h"
#include "ui-harness.h"

#define TIMEOUT_S 120
#define NARROW 360
/* the bounds of app-message-row.c and app-composer.c */
#define ROW_THUMB 160
#define ROW_THUMB_MAX (2 * ROW_THUMB)
#define COMPOSER_THUMB 72
#define COMPOSER_THUMB_MAX (3 * COMPOSER_THUMB)

static AppApplication *app;
static char *image_ids[20];           /* the store ids of the images, panorama first */
static const char *chat_ids[] = { "11111111-0000-4000-8000-000000000001",
                                  "11111111-0000-4000-8000-000000000005",
                                  "11111111-0000-4000-8000-000000000020" };
static const guint chat_sizes[] = { 1, 5, 20 };
#define KEYBOARD_CHAT "11111111-0000-4000-8000-000000000099"

/* ------------------------------------------------------------------------------------------
 * The fixture: images of several shapes, chats that show them
 */

static char *
write_image (const char *dir,
             int         index,
             int         width,
             int         height)
{
  g_autoptr(GdkPixbuf) pixbuf = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, width, height);
  g_autofree char *name = g_strdup_printf ("image-%02d.png", index);
  char *path = g_build_filename (dir, name, NULL);
  g_autoptr(GError) error = NULL;

  /* a colour of its own: every file has its own content, and so its own store id */
  gdk_pixbuf_fill (pixbuf, 0x203040ff + ((guint32) index << 24) + ((guint32) index << 8));
  if (!gdk_pixbuf_save (pixbuf, path, "png", &error, NULL))
    g_error ("%s", error->message);
  return path;
}

static void
write_chats (const char *dir)
{
  char *paths[21] = { NULL };

  for (int i = 0; i < 20; i++)
    {
      /* a 25:1 panorama, a 1:3 portrait, then 4:3 photos */
      int w = i == 0 ? 2500 : i == 1 ? 200 : 400;
      int h = i == 0 ? 100 : i == 1 ? 600 : 300;
      g_autofree char *contents = NULL;
      g_autofree char *sum = NULL;
      gsize len;

      paths[i] = write_image (dir, i, w, h);
      g_assert_true (g_file_get_contents (paths[i], &contents, &len, NULL));
      sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) contents, len);
      image_ids[i] = g_strconcat (sum, ".png", NULL);
    }
  for (guint c = 0; c < G_N_ELEMENTS (chat_ids); c++)
    {
      g_autoptr(JsonBuilder) b = json_builder_new ();
      g_autoptr(JsonGenerator) gen = json_generator_new ();
      g_autoptr(JsonNode) root = NULL;
      g_autofree char *text = NULL;
      g_autofree char *name = g_strdup_printf ("chat-%u.json", chat_sizes[c]);
      g_autofree char *file = g_build_filename (dir, name, NULL);
      g_autofree char *title = g_strdup_printf ("%u images", chat_sizes[c]);
      const char *files[21] = { NULL };

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "version");
      json_builder_add_int_value (b, 1);
      json_builder_set_member_name (b, "id");
      json_builder_add_string_value (b, chat_ids[c]);
      json_builder_set_member_name (b, "title");
      json_builder_add_string_value (b, title);
      json_builder_set_member_name (b, "custom_title");
      json_builder_add_boolean_value (b, TRUE);
      json_builder_set_member_name (b, "created");
      json_builder_add_int_value (b, 1795000000000000 + c);
      json_builder_set_member_name (b, "modified");
      json_builder_add_int_value (b, 1795000000000000 + c);
      json_builder_set_member_name (b, "messages");
      json_builder_begin_array (b);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "role");
      json_builder_add_string_value (b, "user");
      json_builder_set_member_name (b, "text");
      json_builder_add_string_value (b, "What do these show?");
      json_builder_set_member_name (b, "images");
      json_builder_begin_array (b);
      for (guint i = 0; i < chat_sizes[c]; i++)
        {
          json_builder_add_string_value (b, image_ids[i]);
          files[i] = paths[i];
        }
      json_builder_end_array (b);
      json_builder_set_member_name (b, "state");
      json_builder_add_string_value (b, "complete");
      json_builder_end_object (b);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "role");
      json_builder_add_string_value (b, "assistant");
      json_builder_set_member_name (b, "text");
      json_builder_add_string_value (b, "Coloured rectangles.");
      json_builder_set_member_name (b, "state");
      json_builder_add_string_value (b, "complete");
      json_builder_end_object (b);
      json_builder_end_array (b);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      json_generator_set_root (gen, root);
      text = json_generator_to_data (gen, NULL);
      g_assert_true (g_file_set_contents (file, text, -1, NULL));
      ui_harness_add_chat (file, files);
    }
  {
    g_autofree char *file = g_build_filename (dir, "chat-keyboard.json", NULL);
    g_autofree char *text =
      g_strdup_printf ("{\"version\": 1, \"id\": \"%s\", \"title\": \"Keyboard\", "
                       "\"custom_title\": true, \"created\": 1795000000000100, "
                       "\"modified\": 1795000000000100, \"messages\": ["
                       "{\"role\": \"user\", \"text\": \"Where is the square?\", "
                       "\"images\": [\"%s\", \"%s\"], \"state\": \"complete\"}, "
                       "{\"role\": \"assistant\", \"text\": \"%s\", "
                       "\"state\": \"complete\", \"n_tokens\": 40, "
                       "\"first_token_seconds\": 1.5, \"tokens_per_second\": 12.0}]}",
                       KEYBOARD_CHAT, image_ids[2], image_ids[3],
                       "<|ref|>The square<|/ref|><|det|>[[100, 100, 600, 600]]<|/det|> is on "
                       "the left; see [the notes](https://example.com/notes) and "
                       "<|ref|>the frame<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>.\\n\\n"
                       "```c\\nint side = 500;\\n```\\n\\nThat is all.");
    const char *files[] = { paths[2], paths[3], NULL };

    g_assert_true (g_file_set_contents (file, text, -1, NULL));
    ui_harness_add_chat (file, files);
  }
  for (int i = 0; i < 20; i++)
    g_free (paths[i]);
}

/* ------------------------------------------------------------------------------------------
 * The window
 */

static void
show_chat (GtkWindow  *window,
           const char *id)
{
  GtkSelectionModel *model = NULL;
  GtkWidget *list;

  /* the sidebar's list: the one of chats */
  for (guint i = 0; (list = ui_harness_find_widget (GTK_WIDGET (window), GTK_TYPE_LIST_VIEW, i));
       i++)
    {
      g_autoptr(GObject) first = NULL;

      model = gtk_list_view_get_model (GTK_LIST_VIEW (list));
      first = model ? g_list_model_get_item (G_LIST_MODEL (model), 0) : NULL;
      if (first && APP_IS_CHAT (first))
        break;
    }
  if (!list)
    g_error ("no list of chats; the store has %u",
             g_list_model_get_n_items (app_chat_store_get_chats (app_application_get_store (app))));

  for (guint i = 0; i < g_list_model_get_n_items (G_LIST_MODEL (model)); i++)
    {
      g_autoptr(AppChat) chat = g_list_model_get_item (G_LIST_MODEL (model), i);

      if (g_str_equal (app_chat_get_id (chat), id))
        {
          gtk_selection_model_select_item (model, i, TRUE);
          return;
        }
    }
  g_error ("no chat %s in the sidebar", id);
}

/* The visible thumbnails under `root` that show a picture. */
static GPtrArray *
thumbnails (GtkWidget *root)
{
  GPtrArray *found = g_ptr_array_new ();
  GtkWidget *t;

  for (guint i = 0; (t = ui_harness_find_widget (root, APP_TYPE_THUMBNAIL, i)); i++)
    g_ptr_array_add (found, t);
  return found;
}

typedef struct
{
  GtkWidget *root;
  guint n;
} Shown;

static gboolean
thumbnails_shown (gpointer data)
{
  Shown *s = data;
  g_autoptr(GPtrArray) all = thumbnails (s->root);
  guint n = 0;

  for (guint i = 0; i < all->len; i++)
    if (gtk_picture_get_paintable (app_thumbnail_get_picture (all->pdata[i])) &&
        gtk_widget_get_mapped (all->pdata[i]))
      n++;
  return n == s->n;
}

/* The window's content (inside the decorations) needs no more than the narrow width. */
static void
assert_window_fits (GtkWindow  *window,
                    const char *what)
{
  GtkWidget *content = ui_harness_find_widget (GTK_WIDGET (window), ADW_TYPE_LEAFLET, 0);
  int min, nat;

  gtk_widget_measure (content, GTK_ORIENTATION_HORIZONTAL, -1, &min, &nat, NULL, NULL);
  g_test_message ("%s: the window needs %d px (natural %d)", what, min, nat);
  if (min > NARROW)
    g_error ("%s: the window needs %d px, more than %d", what, min, NARROW);
}

/* Each thumbnail is one height, no wider than its bound, the panorama at the bound. */
static void
assert_thumbnails (GPtrArray *all,
                   int        height,
                   int        max_width)
{
  for (guint i = 0; i < all->len; i++)
    {
      GtkWidget *t = all->pdata[i];
      GdkPaintable *p = gtk_picture_get_paintable (app_thumbnail_get_picture (APP_THUMBNAIL (t)));
      double aspect = gdk_paintable_get_intrinsic_aspect_ratio (p);

      g_assert_cmpint (gtk_widget_get_height (t), ==, height);
      g_assert_cmpint (gtk_widget_get_width (t), <=, max_width);
      g_assert_cmpint (gtk_widget_get_width (t), >=, height / 2);
      if (aspect >= 20)
        g_assert_cmpint (gtk_widget_get_width (t), ==, max_width);
      else if (aspect > 1.3 && aspect < 1.4)
        g_assert_cmpint (gtk_widget_get_width (t), ==, (int) (height * aspect + 0.5));
    }
}

static void
test_fit (void)
{
  GtkWindow *window;
  AdwLeaflet *leaflet;
  AppComposer *composer;
  int heights[G_N_ELEMENTS (chat_sizes)];

  g_application_activate (G_APPLICATION (app));
  window = gtk_application_get_active_window (GTK_APPLICATION (app));
  gtk_window_set_default_size (window, 1100, 800);
  ui_harness_wait_ready (app, TIMEOUT_S);
  leaflet = ADW_LEAFLET (ui_harness_find_widget (GTK_WIDGET (window), ADW_TYPE_LEAFLET, 0));
  composer = APP_COMPOSER (ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_COMPOSER, 0));

  /* 1. a question with 1, 5 and 20 images */
  for (guint c = 0; c < G_N_ELEMENTS (chat_ids); c++)
    {
      g_autofree char *what = g_strdup_printf ("a message with %u images", chat_sizes[c]);
      GtkWidget *row;
      Shown shown;
      g_autoptr(GPtrArray) all = NULL;
      int min, nat;

      show_chat (window, chat_ids[c]);
      row = NULL;
      for (guint i = 0; (row = ui_harness_find_widget (GTK_WIDGET (window),
                                                      APP_TYPE_MESSAGE_ROW, i)); i++)
        if (app_message_row_get_message (APP_MESSAGE_ROW (row)) &&
            app_message_get_images (app_message_row_get_message (APP_MESSAGE_ROW (row))) &&
            app_message_get_images (app_message_row_get_message (APP_MESSAGE_ROW (row)))[0])
          break;
      g_assert_nonnull (row);
      shown = (Shown) { row, chat_sizes[c] };
      ui_harness_wait (thumbnails_shown, &shown, what, TIMEOUT_S);
      ui_harness_spin (0.2);
      assert_window_fits (window, what);
      g_assert_false (adw_leaflet_get_folded (leaflet));
      gtk_widget_measure (row, GTK_ORIENTATION_HORIZONTAL, -1, &min, &nat, NULL, NULL);
      g_assert_cmpint (min, <=, NARROW);
      all = thumbnails (row);
      assert_thumbnails (all, ROW_THUMB, ROW_THUMB_MAX);
    }

  /* 2. the same images attached to the next question: one height whatever their number */
  for (guint c = 0; c < G_N_ELEMENTS (chat_sizes); c++)
    {
      g_autofree char *what = g_strdup_printf ("%u images in the question box", chat_sizes[c]);
      Shown shown = { GTK_WIDGET (composer), chat_sizes[c] };
      g_autoptr(GPtrArray) all = NULL;
      int min, nat, min_w, bar_min, bar_nat;

      app_composer_clear (composer);
      for (guint i = 0; i < chat_sizes[c]; i++)
        app_composer_add_image_id (composer, image_ids[i]);
      ui_harness_wait (thumbnails_shown, &shown, what, TIMEOUT_S);
      ui_harness_spin (0.2);
      assert_window_fits (window, what);
      g_assert_false (adw_leaflet_get_folded (leaflet));
      gtk_widget_measure (GTK_WIDGET (composer), GTK_ORIENTATION_HORIZONTAL, -1, &min_w, NULL,
                          NULL, NULL);
      g_assert_cmpint (min_w, <=, NARROW);
      /* the box with its context bar (which may warn: 20 images do not fit the context)
       * left out: the question and the strip of images */
      gtk_widget_measure (GTK_WIDGET (composer), GTK_ORIENTATION_VERTICAL, NARROW, &min, &nat,
                          NULL, NULL);
      gtk_widget_measure (GTK_WIDGET (app_composer_get_context_bar (composer)),
                          GTK_ORIENTATION_VERTICAL, NARROW - 24, &bar_min, &bar_nat, NULL, NULL);
      g_test_message ("%s: %d px high (natural %d, of which the context bar %d) at %d px wide",
                      what, min, nat, bar_nat, NARROW);
      g_assert_cmpint (nat - bar_nat, <=, 3 * COMPOSER_THUMB);
      heights[c] = nat - bar_nat;
      all = thumbnails (GTK_WIDGET (composer));
      assert_thumbnails (all, COMPOSER_THUMB, COMPOSER_THUMB_MAX);
    }
  g_assert_cmpint (heights[0], ==, heights[1]);
  g_assert_cmpint (heights[1], ==, heights[2]);

  /* 3. a narrow window: the 20 images wrap, the attachments scroll */
  gtk_window_set_default_size (window, NARROW, 700);
  ui_harness_spin (0.5);
  g_assert_true (adw_leaflet_get_folded (leaflet));
  {
    GtkWidget *row = NULL;

    for (guint i = 0; (row = ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_MESSAGE_ROW,
                                                    i)); i++)
      if (gtk_widget_get_mapped (row) && app_message_get_images (
            app_message_row_get_message (APP_MESSAGE_ROW (row)))[0])
        break;
    g_assert_nonnull (row);
    g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (window)), <=, NARROW);
    g_assert_cmpint (gtk_widget_get_width (row), <=, NARROW);
    g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (composer)), <=, NARROW);
  }
  app_composer_clear (composer);
}

static gboolean press_key (GtkWindow *window,
                           guint      keysym);

/* Each test runs alone too (-p): the window, and the model loaded. */
static GtkWindow *
ready_window (void)
{
  g_application_activate (G_APPLICATION (app));
  ui_harness_wait_ready (app, TIMEOUT_S);
  return gtk_application_get_active_window (GTK_APPLICATION (app));
}

/* ------------------------------------------------------------------------------------------
 * The context: counted before Send
 */

static gboolean
counted (gpointer data)
{
  return app_context_bar_get_n_tokens (data) > 0;
}

typedef struct
{
  AppContextBar *bar;
  int before;
} EditCount;

static gboolean
count_changed (gpointer data)
{
  EditCount *e = data;
  int n = app_context_bar_get_n_tokens (e->bar);

  return n > 0 && n != e->before;
}

static gboolean
over (gpointer data)
{
  return !app_context_bar_get_fits (data);
}

static GtkWidget *
button_labelled (GtkWidget  *root,
                 const char *label)
{
  GtkWidget *b;

  for (guint i = 0; (b = ui_harness_find_widget (root, GTK_TYPE_BUTTON, i)); i++)
    if (g_strcmp0 (gtk_button_get_label (GTK_BUTTON (b)), label) == 0)
      return b;
  return NULL;
}

static GtkWidget *
send_button (AppComposer *composer)
{
  GtkWidget *b;

  for (guint i = 0; (b = ui_harness_find_widget (GTK_WIDGET (composer), GTK_TYPE_BUTTON, i));
       i++)
    if (gtk_widget_has_css_class (b, "suggested-action"))
      return b;
  g_error ("no send button");
}

static AppChat *
chat_by_id (const char *id)
{
  GListModel *chats = app_chat_store_get_chats (app_application_get_store (app));

  for (guint i = 0; i < g_list_model_get_n_items (chats); i++)
    {
      AppChat *chat = g_list_model_get_item (chats, i);

      if (g_str_equal (app_chat_get_id (chat), id))
        return chat;
      g_object_unref (chat);
    }
  g_error ("no chat %s", id);
}

static gboolean
answered (gpointer data)
{
  AppChat *chat = data;
  guint n = app_chat_get_n_messages (chat);
  g_autoptr(AppMessage) last = n ? app_chat_get_message (chat, n - 1) : NULL;
  AppMessageState s = last ? app_message_get_state (last) : APP_MESSAGE_PENDING;

  return last && app_message_get_role (last) == APP_ROLE_ASSISTANT && n > 2 &&
         (s == APP_MESSAGE_COMPLETE || s == APP_MESSAGE_FAILED || s == APP_MESSAGE_STOPPED);
}

static void
test_context (void)
{
  GtkWindow *window = ready_window ();
  AppComposer *composer;
  AppContextBar *bar;
  GString *paste = g_string_new (NULL);
  AppChat *one, *twenty;
  g_autofree char *text = NULL;
  GtkWidget *images_button, *turns_button;

  gtk_window_set_default_size (window, 1100, 800);
  ui_harness_spin (0.3);
  composer = APP_COMPOSER (ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_COMPOSER, 0));
  bar = app_composer_get_context_bar (composer);
  g_settings_set (app_application_get_settings (app), "max-new-tokens", "mi", TRUE, 8);

  /* 1. a short question after one image: counted, and it fits */
  one = chat_by_id (chat_ids[0]);
  show_chat (window, chat_ids[0]);
  app_composer_clear (composer);
  app_composer_set_text (composer, "What colour is it?");
  ui_harness_wait (counted, bar, "the count", TIMEOUT_S);
  g_test_message ("a question after one image: %d tokens", app_context_bar_get_n_tokens (bar));
  g_assert_true (app_context_bar_get_fits (bar));
  g_assert_cmpint (app_context_bar_get_n_tokens (bar), >, 421);
  g_assert_cmpint (app_context_bar_get_n_tokens (bar), <, 4096);
  g_assert_true (gtk_widget_get_mapped (GTK_WIDGET (bar)));
  g_assert_true (gtk_widget_get_sensitive (send_button (composer)));

  /* editing the first question: what comes after it is not part of the prompt */
  {
    int after_all = app_context_bar_get_n_tokens (bar);
    EditCount e = { bar, after_all };

    g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.edit-message", "u", 0));
    ui_harness_wait (count_changed, &e, "the edit to be counted", TIMEOUT_S);
    g_test_message ("editing the first question: %d tokens", app_context_bar_get_n_tokens (bar));
    g_assert_cmpint (app_context_bar_get_n_tokens (bar), <, after_all);
    g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.cancel-edit", NULL));
    ui_harness_spin (0.2);
  }

  /* 2. a 38 kB paste: too long before Send, which stays off; nothing to leave out helps */
  for (int i = 0; paste->len < 38000; i++)
    g_string_append_printf (paste, "line %d of a long log\n", i);
  app_composer_set_text (composer, paste->str);
  ui_harness_wait (over, bar, "the long paste to be counted", TIMEOUT_S);
  g_test_message ("a 38 kB paste: %d tokens", app_context_bar_get_n_tokens (bar));
  g_assert_cmpint (app_context_bar_get_n_tokens (bar), >, 4096);
  g_assert_false (gtk_widget_get_sensitive (send_button (composer)));
  /* Enter does not send it either */
  app_composer_focus (composer);
  if (press_key (window, GDK_KEY_Return))
    g_assert_cmpuint (app_chat_get_n_messages (one), ==, 2);
  images_button = button_labelled (GTK_WIDGET (bar), "Leave Out Oldest _Images");
  turns_button = button_labelled (GTK_WIDGET (bar), "Leave Out Oldest _Turns");
  g_assert_null (images_button);
  g_assert_null (turns_button);
  text = app_composer_get_text (composer);
  g_assert_cmpstr (text, ==, paste->str); /* the paste is still there to shorten */
  g_string_free (paste, TRUE);

  /* 3. a question after twenty images: 20 x 421 tokens are too many; leave out the oldest
   * images, and the answer comes, saying so */
  twenty = chat_by_id (chat_ids[2]);
  show_chat (window, chat_ids[2]);
  app_composer_clear (composer);
  app_composer_set_text (composer, "Which one was the widest?");
  ui_harness_wait (over, bar, "the count after twenty images", TIMEOUT_S);
  g_test_message ("after twenty images: %d tokens", app_context_bar_get_n_tokens (bar));
  g_assert_false (gtk_widget_get_sensitive (send_button (composer)));
  images_button = button_labelled (GTK_WIDGET (bar), "Leave Out Oldest _Images");
  turns_button = button_labelled (GTK_WIDGET (bar), "Leave Out Oldest _Turns");
  g_assert_nonnull (images_button);
  g_assert_nonnull (turns_button);
  g_assert_true (gtk_widget_get_mapped (images_button));
  g_assert_true (gtk_widget_get_mapped (turns_button));
  g_signal_emit_by_name (images_button, "clicked");
  g_assert_true (app_context_bar_get_fits (bar));
  g_assert_cmpint (app_context_bar_get_n_tokens (bar), <=, 4096 - 256);
  g_assert_true (gtk_widget_get_sensitive (send_button (composer)));
  g_signal_emit_by_name (send_button (composer), "clicked");
  ui_harness_wait (answered, twenty, "the answer without the oldest images", TIMEOUT_S);
  {
    g_autoptr(AppMessage) reply = app_chat_get_message (twenty,
                                                        app_chat_get_n_messages (twenty) - 1);
    g_autoptr(AppMessage) question = app_chat_get_message (twenty, 0);

    g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
    g_test_message ("%s", app_message_get_note (reply));
    g_assert_nonnull (strstr (app_message_get_note (reply), "oldest images"));
    /* left out of the prompt, not of the chat */
    g_assert_cmpuint (g_strv_length ((char **) app_message_get_images (question)), ==, 20);
  }
  g_object_unref (one);
  g_object_unref (twenty);
}

/* ------------------------------------------------------------------------------------------
 * The keyboard: every control of a message is a Tab stop with a name, and nothing else is
 */

/* The name a screen reader reads: the accessible label set on it, or its own text. GTK 4.8
 * has no getter for accessible properties; the test API compares, and tells the value it
 * found when it differs. */
static char *
accessible_name (GtkWidget *w)
{
  if (gtk_test_accessible_has_property (GTK_ACCESSIBLE (w), GTK_ACCESSIBLE_PROPERTY_LABEL))
    return gtk_test_accessible_check_property (GTK_ACCESSIBLE (w), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                               "\001");
  if (GTK_IS_LABEL (w))
    return g_strdup (gtk_label_get_text (GTK_LABEL (w)));
  if (GTK_IS_BUTTON (w) && gtk_button_get_label (GTK_BUTTON (w)))
    return g_strdup (gtk_button_get_label (GTK_BUTTON (w)));
  /* the button inside a menu button is named by it */
  if (gtk_widget_get_parent (w) && GTK_IS_MENU_BUTTON (gtk_widget_get_parent (w)))
    return accessible_name (gtk_widget_get_parent (w));
  return NULL;
}

typedef struct
{
  GtkWidget *widget;
  char *name;
  char *uri;                     /* a label's focused link */
} Stop;

static void
stop_clear (gpointer p)
{
  g_free (((Stop *) p)->name);
  g_free (((Stop *) p)->uri);
}

/* Tabs through `row` from its start, as far as it goes; every stop is checked as it comes. */
static GArray *
walk (GtkWidget *row)
{
  GtkRoot *root = gtk_widget_get_root (row);
  GArray *stops = g_array_new (FALSE, TRUE, sizeof (Stop));

  g_array_set_clear_func (stops, stop_clear);
  gtk_root_set_focus (root, NULL);
  for (int i = 0; i < 200 && gtk_widget_child_focus (row, GTK_DIR_TAB_FORWARD); i++)
    {
      GtkWidget *focus = gtk_root_get_focus (root);
      Stop stop = { focus, focus ? accessible_name (focus) : NULL, NULL };
      graphene_rect_t bounds;

      g_assert_nonnull (focus);
      g_assert_true (gtk_widget_is_ancestor (focus, row));
      g_test_message ("  Tab %d: %s \"%s\"", i, G_OBJECT_TYPE_NAME (focus),
                      stop.name ? stop.name : "(no name)");
      if (!gtk_widget_is_visible (focus) || !gtk_widget_get_mapped (focus))
        g_error ("Tab stop %d, a %s, is not shown", i, G_OBJECT_TYPE_NAME (focus));
      g_assert_true (gtk_widget_compute_bounds (focus, GTK_WIDGET (root), &bounds));
      if (bounds.size.width < 4 || bounds.size.height < 4)
        g_error ("Tab stop %d, a %s, is %g x %g", i, G_OBJECT_TYPE_NAME (focus),
                 bounds.size.width, bounds.size.height);
      if (!stop.name || !g_strstrip (stop.name)[0])
        g_error ("Tab stop %d, a %s, has no name", i, G_OBJECT_TYPE_NAME (focus));
      if (GTK_IS_LABEL (focus))
        stop.uri = g_strdup (gtk_label_get_current_uri (GTK_LABEL (focus)));
      g_array_append_val (stops, stop);
    }
  g_assert_cmpuint (stops->len, <, 200);
  return stops;
}

static gboolean
reached (GArray    *stops,
         GtkWidget *widget)
{
  for (guint i = 0; i < stops->len; i++)
    if (g_array_index (stops, Stop, i).widget == widget)
      return TRUE;
  return FALSE;
}

static guint
times_reached (GArray    *stops,
               GtkWidget *widget)
{
  guint n = 0;

  for (guint i = 0; i < stops->len; i++)
    n += g_array_index (stops, Stop, i).widget == widget;
  return n;
}

/* The widget of `type` under `root` whose accessible name or tooltip is `name`. */
static GtkWidget *
named (GtkWidget  *root,
       GType       type,
       const char *name)
{
  GtkWidget *w;

  for (guint i = 0; (w = ui_harness_find_widget (root, type, i)); i++)
    {
      g_autofree char *n = accessible_name (w);

      if (g_strcmp0 (n, name) == 0 || g_strcmp0 (gtk_widget_get_tooltip_text (w), name) == 0)
        return w;
    }
  return NULL;
}

static GtkWidget *
row_of (GtkWindow   *window,
        AppRole        role)
{
  GtkWidget *row;

  for (guint i = 0; (row = ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_MESSAGE_ROW, i));
       i++)
    {
      AppMessage *m = app_message_row_get_message (APP_MESSAGE_ROW (row));

      if (m && app_message_get_role (m) == role && gtk_widget_get_mapped (row))
        return row;
    }
  g_error ("no row of a %s", role == APP_ROLE_USER ? "question" : "answer");
}

static void
test_keyboard (void)
{
  GtkWindow *window = ready_window ();
  GtkWidget *question, *answer, *label;
  Shown shown;
  g_autoptr(GArray) q_stops = NULL;
  g_autoptr(GArray) a_stops = NULL;
  guint links = 0;

  gtk_window_set_default_size (window, 1100, 900);
  show_chat (window, KEYBOARD_CHAT);
  ui_harness_spin (0.5);
  question = row_of (window, APP_ROLE_USER);
  shown = (Shown) { question, 2 };
  ui_harness_wait (thumbnails_shown, &shown, "the question's images", TIMEOUT_S);
  ui_harness_spin (0.5);

  /* the question: its text, its two images, edit and copy */
  g_test_message ("the question:");
  q_stops = walk (question);
  g_assert_true (reached (q_stops, named (question, GTK_TYPE_BUTTON, "Open image 1")));
  g_assert_true (reached (q_stops, named (question, GTK_TYPE_BUTTON, "Open image 2")));
  g_assert_true (reached (q_stops, named (question, GTK_TYPE_BUTTON,
                                          "Edit this question and send it again")));
  g_assert_true (reached (q_stops, named (question, GTK_TYPE_BUTTON, "Copy this message")));

  /* a second version of the answer: the switcher shows "2 / 2" */
  {
    g_autoptr(AppChat) chat = chat_by_id (KEYBOARD_CHAT);
    g_autoptr(AppMessage) first = app_chat_get_message (chat, 1);
    g_autoptr(AppMessage) second = app_message_new (APP_ROLE_ASSISTANT,
                                                    app_message_get_text (first));

    g_assert_true (app_chat_add_version (chat, first, second));
    ui_harness_spin (0.5);
  }

  /* the answer: copy, regenerate, the menu, the version switcher, each chip and the link,
   * the code's copy button */
  answer = row_of (window, APP_ROLE_ASSISTANT);
  g_test_message ("the answer:");
  a_stops = walk (answer);
  g_assert_true (reached (a_stops, named (answer, GTK_TYPE_BUTTON, "Copy this message")));
  g_assert_true (reached (a_stops, named (answer, GTK_TYPE_BUTTON, "Write this answer again")));
  g_assert_true (reached (a_stops, gtk_widget_get_first_child (
                                     named (answer, GTK_TYPE_MENU_BUTTON, "Boxes and raw output"))));
  g_assert_true (reached (a_stops, named (answer, GTK_TYPE_BUTTON, "Copy code")));
  g_assert_true (reached (a_stops, named (answer, GTK_TYPE_BUTTON, "Show the previous version")));
  /* the label with the chips and the link: one stop for each of its three links */
  for (guint i = 0; (label = ui_harness_find_widget (answer, GTK_TYPE_LABEL, i)); i++)
    if (strstr (gtk_label_get_text (GTK_LABEL (label)), "The square"))
      break;
  g_assert_nonnull (label);
  links = times_reached (a_stops, label);
  g_test_message ("the label with two chips and a link: %u stops", links);
  g_assert_cmpuint (links, ==, 3);
  {
    g_autoptr(GHashTable) uris = g_hash_table_new (g_str_hash, g_str_equal);

    for (guint i = 0; i < a_stops->len; i++)
      {
        Stop *stop = &g_array_index (a_stops, Stop, i);

        if (stop->widget == label)
          {
            g_test_message ("  link %s", stop->uri);
            g_assert_nonnull (stop->uri);
            g_hash_table_add (uris, stop->uri);
          }
      }
    g_assert_cmpuint (g_hash_table_size (uris), ==, 3);
    g_assert_true (g_hash_table_contains (uris, "https://example.com/notes"));
  }
  /* the image with the boxes opens large: a stop too */
  g_assert_true (reached (a_stops, ui_harness_find_widget (answer, APP_TYPE_GROUNDING_VIEW, 0)));
}

/* ------------------------------------------------------------------------------------------
 * Escape: what has focus takes it first
 */

/* Presses and releases a key on the X server, as a person would (XTest, loaded at run time);
 * FALSE where that cannot be done. */
static gboolean
press_key (GtkWindow *window,
           guint      keysym)
{
#ifdef HAVE_X11
  typedef int (*FakeKeyEvent) (Display *, unsigned int, Bool, unsigned long);
  static FakeKeyEvent fake_key;
  GdkDisplay *display = gtk_widget_get_display (GTK_WIDGET (window));
  Display *dpy;
  KeyCode code;

  if (!GDK_IS_X11_DISPLAY (display))
    return FALSE;
  if (!fake_key)
    {
      void *xtst = dlopen ("libXtst.so.6", RTLD_NOW | RTLD_LOCAL);

      if (!xtst || !(fake_key = (FakeKeyEvent) dlsym (xtst, "XTestFakeKeyEvent")))
        return FALSE;
    }
  dpy = gdk_x11_display_get_xdisplay (display);
  XSetInputFocus (dpy, gdk_x11_surface_get_xid (gtk_native_get_surface (GTK_NATIVE (window))),
                  RevertToParent, CurrentTime);
  ui_harness_spin (0.2);
  code = XKeysymToKeycode (dpy, keysym);
  fake_key (dpy, code, True, CurrentTime);
  fake_key (dpy, code, False, CurrentTime);
  XFlush (dpy);
  ui_harness_spin (0.5);
  return TRUE;
#else
  return FALSE;
#endif
}

static gboolean
streaming (gpointer data)
{
  g_autoptr(AppMessage) m = ui_harness_newest_message (app);

  return m && app_message_get_state (m) == APP_MESSAGE_STREAMING &&
         app_message_get_text (m)[0] != '\0';
}

static gboolean
stopped (gpointer data)
{
  g_autoptr(AppMessage) m = ui_harness_newest_message (app);

  return m && app_message_get_state (m) != APP_MESSAGE_STREAMING &&
         app_message_get_state (m) != APP_MESSAGE_PENDING;
}

static void
test_escape (void)
{
  GtkWindow *window = ready_window ();
  AppComposer *composer;
  GtkSearchBar *search;
  GtkWidget *entry, *focus;

  gtk_window_set_default_size (window, 1100, 800);
  ui_harness_spin (0.3);
  if (!press_key (window, GDK_KEY_Shift_L))
    {
      g_test_skip ("no X server with XTest to press keys on");
      return;
    }
  composer = APP_COMPOSER (ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_COMPOSER, 0));
  search = GTK_SEARCH_BAR (ui_harness_find_widget (GTK_WIDGET (window), GTK_TYPE_SEARCH_BAR, 0));
  entry = ui_harness_find_widget (GTK_WIDGET (window), GTK_TYPE_SEARCH_ENTRY, 0);

  /* a long answer in a new chat */
  g_settings_set (app_application_get_settings (app), "max-new-tokens", "mi", TRUE, 4096);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.new-chat", NULL));
  app_composer_set_text (composer, "Tell me a very long story.");
  g_signal_emit_by_name (composer, "send");
  ui_harness_wait (streaming, NULL, "the answer to stream", TIMEOUT_S);

  /* Escape in the search entry closes the search, and the answer goes on */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.search", NULL));
  ui_harness_spin (0.3);
  g_assert_true (gtk_search_bar_get_search_mode (search));
  focus = gtk_root_get_focus (GTK_ROOT (window));
  g_assert_true (focus == entry || gtk_widget_is_ancestor (focus, entry));
  g_assert_true (press_key (window, GDK_KEY_Escape));
  g_assert_false (gtk_search_bar_get_search_mode (search));
  {
    g_autoptr(AppMessage) m = ui_harness_newest_message (app);

    g_assert_cmpint (app_message_get_state (m), ==, APP_MESSAGE_STREAMING);
  }

  /* Escape again, in the question box: the answer stops */
  app_composer_focus (composer);
  g_assert_true (press_key (window, GDK_KEY_Escape));
  ui_harness_wait (stopped, NULL, "Escape to stop the answer", TIMEOUT_S);
  {
    g_autoptr(AppMessage) m = ui_harness_newest_message (app);

    g_assert_cmpint (app_message_get_state (m), ==, APP_MESSAGE_STOPPED);
  }
}

/* ------------------------------------------------------------------------------------------
 * Following the end: a row that changes just after a frame
 */

typedef struct
{
  AppChat *chat;
  GtkAdjustment *adj;
  gboolean changed;
} Change;

/* Right after a frame is painted, the view a few pixels above the end (where the list leaves
 * it as it measures rows), the answer gets a short new version: the list loses height that
 * its scroll range still counts until the next frame lays it out. */
static void
change_after_paint (GdkFrameClock *clock,
                    Change        *change)
{
  g_autoptr(AppMessage) first = app_chat_get_message (change->chat, 1);
  g_autoptr(AppMessage) second = app_message_new (APP_ROLE_ASSISTANT, "Short.");
  GtkAdjustment *adj = change->adj;

  g_signal_handlers_disconnect_by_func (clock, change_after_paint, change);
  gtk_adjustment_set_value (adj, gtk_adjustment_get_upper (adj) -
                                   gtk_adjustment_get_page_size (adj) - 8);
  g_assert_true (app_chat_add_version (change->chat, first, second));
  change->changed = TRUE;
}

static gboolean
at_end (gpointer data)
{
  GtkAdjustment *adj = data;

  return gtk_adjustment_get_value (adj) >=
         gtk_adjustment_get_upper (adj) - gtk_adjustment_get_page_size (adj) - 1;
}

static void
test_follow (void)
{
  GtkWindow *window = ready_window ();
  g_autoptr(AppChat) chat = chat_by_id (KEYBOARD_CHAT);
  Change change = { chat, NULL, FALSE };
  GtkScrolledWindow *scroller;
  GtkWidget *w;
  GdkFrameClock *clock;

  /* a window too short for the chat: the view scrolls, and sits at the end */
  gtk_window_set_default_size (window, 1100, 420);
  show_chat (window, KEYBOARD_CHAT);
  w = gtk_widget_get_ancestor (row_of (window, APP_ROLE_ASSISTANT), GTK_TYPE_SCROLLED_WINDOW);
  g_assert_nonnull (w);
  scroller = GTK_SCROLLED_WINDOW (w);
  ui_harness_wait (at_end, gtk_scrolled_window_get_vadjustment (scroller), "the end of the chat",
                   TIMEOUT_S);
  ui_harness_spin (0.5);
  g_assert_cmpfloat (gtk_adjustment_get_upper (gtk_scrolled_window_get_vadjustment (scroller)), >,
                     gtk_adjustment_get_page_size (gtk_scrolled_window_get_vadjustment (scroller)));

  /* changed between two frames: the view follows to the new end, with no warning from GTK */
  change.adj = gtk_scrolled_window_get_vadjustment (scroller);
  clock = gtk_widget_get_frame_clock (GTK_WIDGET (window));
  g_signal_connect (clock, "after-paint", G_CALLBACK (change_after_paint), &change);
  gtk_widget_queue_draw (GTK_WIDGET (window));
  ui_harness_wait (ui_harness_flag_set, &change.changed, "the change after a frame", TIMEOUT_S);
  ui_harness_spin (0.5);
  ui_harness_wait (at_end, gtk_scrolled_window_get_vadjustment (scroller), "the new end",
                   TIMEOUT_S);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = ui_harness_isolate ("fit");
  g_autofree char *dir = g_build_filename (home, "fixture", NULL);
  int rc;

  /* accessible properties kept where the test can read them, with no bus to talk to */
  g_setenv ("GTK_A11Y", "test", TRUE);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  write_chats (dir);
  gtk_test_init (&argc, &argv, NULL);
  app = ui_harness_app_new ();
  g_test_add_func ("/app/ui/fit", test_fit);
  g_test_add_func ("/app/ui/context", test_context);
  g_test_add_func ("/app/ui/keyboard", test_keyboard);
  g_test_add_func ("/app/ui/follow", test_follow);
  g_test_add_func ("/app/ui/escape", test_escape);
  rc = g_test_run ();
  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  for (int i = 0; i < 20; i++)
    g_free (image_ids[i]);
  return rc;
}
