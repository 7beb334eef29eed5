/* test-controls.c - every control does what it shows, in the real application under Xvfb.
 *
 * Two chats are put in the data folder before the app starts: the grounding fixture
 * (tests/app/fixtures/grounding-chat.json), the newest, and a long one (ten questions with
 * answers taller than the window). Each test can run alone (-p); they check that
 *  - a chat opens at its newest message, at startup and when chosen in the sidebar;
 *  - Copy says so in a toast and leaves the conversation where it was;
 *  - Edit on a question in the middle leaves it where it is, and sending it shows its answer
 *    at the end, not the first message;
 *  - pointing at each chip of a grounded caption highlights that chip's boxes, and pointing
 *    at the text between chips highlights none;
 *  - the viewer zooms about the pointer (or the middle, for the keys), fits a small image at
 *    its own size, and saves and copies an image without boxes;
 *  - the Find and Grounded Caption toggles are drawn in the accent colour when on, and the
 *    composer names the one that is on while the question is typed;
 *  - three files that cannot be added give one toast, whose Details list each file;
 *  - a drag over the window shows where to drop, and hides when it leaves or drops.
 * Pointer motion, clicks and drags are the controllers' own signals, emitted as GTK would.
 */
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#include "app-config.h"
#include "app-composer.h"
#include "app-grounding-view.h"
#include "app-image-viewer.h"
#include "app-markdown-view.h"
#include "app-message-row.h"
#include "ui-find.h"
#include "ui-harness.h"

#define TIMEOUT_S 120
#define LONG_CHAT_ID "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e"
#define GROUNDING_CHAT_ID "a6032475-84ba-4cf4-9cb2-2b99a75b6b26"
#define N_ROUNDS 10

static AppApplication *app;

/* ------------------------------------------------------------------------------------------
 * The long chat
 */

/* A complete message without images, as the chat file has it. */
static void
add_message (JsonBuilder *b,
             const char  *role,
             const char  *text,
             gint64       created)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "role");
  json_builder_add_string_value (b, role);
  json_builder_set_member_name (b, "text");
  json_builder_add_string_value (b, text);
  json_builder_set_member_name (b, "images");
  json_builder_begin_array (b);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "state");
  json_builder_add_string_value (b, "complete");
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, created);
  json_builder_end_object (b);
}

static char *
long_chat_file (const char *dir)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *json = NULL;
  char *path = g_build_filename (dir, "long-chat.json", NULL);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, LONG_CHAT_ID);
  json_builder_set_member_name (b, "title");
  json_builder_add_string_value (b, "A long chat");
  json_builder_set_member_name (b, "custom_title");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, 1794000000000000);
  json_builder_set_member_name (b, "modified");
  json_builder_add_int_value (b, 1794000900000000);
  json_builder_set_member_name (b, "messages");
  json_builder_begin_array (b);
  for (int i = 0; i < N_ROUNDS; i++)
    {
      g_autoptr(GString) answer = g_string_new (NULL);
      g_autofree char *question = g_strdup_printf ("Question %d", i + 1);

      for (int p = 0; p < 14; p++)
        g_string_append_printf (answer, "Paragraph %d of answer %d: the corn is yellow, the "
                                "husks are green, and the light comes from the left of the "
                                "picture, where a window must be.\n\n", p + 1, i + 1);
      add_message (b, "user", question, 1794000000000000 + i * 2000000);
      add_message (b, "assistant", answer->str, 1794000000000000 + i * 2000000 + 1000000);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json = json_generator_to_data (gen, NULL);
  if (!g_file_set_contents (path, json, -1, &error))
    g_error ("%s", error->message);
  return path;
}

/* ------------------------------------------------------------------------------------------
 * The window
 */

static GtkWindow *
main_window (void)
{
  GList *windows = gtk_application_get_windows (GTK_APPLICATION (app));

  for (GList *l = windows; l; l = l->next)
    if (!APP_IS_IMAGE_VIEWER (l->data) && !ADW_IS_MESSAGE_DIALOG (l->data))
      return l->data;
  g_error ("no main window");
}

/* The conversation's scrolled window: the one around the list view of messages. */
static GtkScrolledWindow *
conversation (void)
{
  GtkWidget *row = ui_harness_find_widget (GTK_WIDGET (main_window ()), APP_TYPE_MESSAGE_ROW, 0);
  GtkWidget *scroller;

  g_assert_nonnull (row);
  scroller = gtk_widget_get_ancestor (row, GTK_TYPE_SCROLLED_WINDOW);
  g_assert_nonnull (scroller);
  return GTK_SCROLLED_WINDOW (scroller);
}

static GtkAdjustment *
vadjustment (void)
{
  return gtk_scrolled_window_get_vadjustment (conversation ());
}

static AppChat *
current_chat (void)
{
  GtkWidget *row = ui_harness_find_widget (GTK_WIDGET (main_window ()), APP_TYPE_MESSAGE_ROW, 0);
  AppMessage *m = app_message_row_get_message (APP_MESSAGE_ROW (row));
  GListModel *chats = app_chat_store_get_chats (app_application_get_store (app));

  for (guint i = 0; i < g_list_model_get_n_items (chats); i++)
    {
      g_autoptr(AppChat) c = g_list_model_get_item (chats, i);

      for (guint k = 0; k < app_chat_get_n_messages (c); k++)
        {
          g_autoptr(AppMessage) cm = app_chat_get_message (c, k);

          if (cm == m)
            return c;
        }
    }
  g_error ("the row's message is in no chat");
}

/* The row showing message `pos` of the chat shown, if the list has made one. */
static AppMessageRow *
row_of (guint pos)
{
  g_autoptr(AppMessage) m = app_chat_get_message (current_chat (), pos);

  return APP_MESSAGE_ROW (ui_harness_message_row (GTK_WIDGET (main_window ()), m));
}

/* The row of message `pos` is wholly or partly in view; its top and bottom in the scroller. */
static gboolean
row_in_view (guint   pos,
             double *top,
             double *bottom)
{
  AppMessageRow *row = row_of (pos);
  graphene_rect_t bounds;
  GtkScrolledWindow *scroller = conversation ();

  if (!row || !gtk_widget_get_mapped (GTK_WIDGET (row)) ||
      !gtk_widget_compute_bounds (GTK_WIDGET (row), GTK_WIDGET (scroller), &bounds))
    return FALSE;
  *top = bounds.origin.y;
  *bottom = bounds.origin.y + bounds.size.height;
  return *bottom > 0 && *top < gtk_widget_get_height (GTK_WIDGET (scroller));
}

/* The conversation shows its end: the last row's bottom at the bottom of the view. */
static gboolean
at_newest (gpointer data)
{
  guint n = app_chat_get_n_messages (current_chat ());
  double top, bottom;

  return row_in_view (n - 1, &top, &bottom) &&
         fabs (bottom - gtk_widget_get_height (GTK_WIDGET (conversation ()))) < 2;
}

static gboolean
window_mapped (gpointer data)
{
  return ui_harness_find_widget (GTK_WIDGET (main_window ()), APP_TYPE_MESSAGE_ROW, 0) &&
         gtk_widget_get_mapped (GTK_WIDGET (conversation ()));
}

static AppComposer *
composer (void)
{
  return APP_COMPOSER (ui_harness_find_widget (GTK_WIDGET (main_window ()), APP_TYPE_COMPOSER,
                                               0));
}

/* The sidebar's list: the list view whose model is a single selection. */
static GtkSingleSelection *
chat_selection (void)
{
  GtkListView *list = NULL;

  for (guint i = 0;
       (list = GTK_LIST_VIEW (ui_harness_find_widget (GTK_WIDGET (main_window ()),
                                                      GTK_TYPE_LIST_VIEW, i)));
       i++)
    if (GTK_IS_SINGLE_SELECTION (gtk_list_view_get_model (list)))
      return GTK_SINGLE_SELECTION (gtk_list_view_get_model (list));
  g_error ("no chat list");
}

static void
select_chat (const char *id)
{
  GListModel *chats = G_LIST_MODEL (chat_selection ());

  for (guint i = 0; i < g_list_model_get_n_items (chats); i++)
    {
      g_autoptr(AppChat) c = g_list_model_get_item (chats, i);

      if (g_str_equal (app_chat_get_id (c), id))
        {
          gtk_single_selection_set_selected (chat_selection (), i);
          return;
        }
    }
  g_error ("no chat %s in the sidebar", id);
}

/* What a person's wheel does: every scroll controller of the conversation hears it, the
 * scrolled window's own (which scrolls) and the window's (which stops following the end). */
static void
wheel (double dy)
{
  g_autoptr(GListModel) controllers =
    gtk_widget_observe_controllers (GTK_WIDGET (conversation ()));

  for (guint i = 0; i < g_list_model_get_n_items (controllers); i++)
    {
      g_autoptr(GObject) c = g_list_model_get_item (controllers, i);
      gboolean handled = FALSE;

      if (GTK_IS_EVENT_CONTROLLER_SCROLL (c))
        g_signal_emit_by_name (c, "scroll", 0.0, dy, &handled);
    }
}

/* What a click on a button does before "clicked": GtkButton takes the focus on a press when
 * it takes focus on click. */
static void
click (GtkWidget *button)
{
  if (gtk_widget_get_focus_on_click (button) && gtk_widget_get_focusable (button))
    gtk_widget_grab_focus (button);
  g_signal_emit_by_name (button, "clicked");
}

/* The first button under `root` with this icon, shown or not. */
static GtkWidget *
find_button (GtkWidget  *root,
             const char *icon)
{
  if (GTK_IS_BUTTON (root) && g_strcmp0 (gtk_button_get_icon_name (GTK_BUTTON (root)), icon) == 0)
    return root;
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_button (c, icon);

      if (found)
        return found;
    }
  return NULL;
}

static gboolean
toast_shown (gpointer data)
{
  return ui_find_toast (GTK_WIDGET (main_window ()), data);
}

/* ------------------------------------------------------------------------------------------
 * A chat opens at its newest message
 */

/* The window, its model loaded: each test can run alone. */
static GtkWindow *
window_ready (void)
{
  GtkWindow *window;

  g_application_activate (G_APPLICATION (app));
  window = main_window ();
  gtk_window_set_default_size (window, 1000, 760);
  ui_harness_wait_ready (app, TIMEOUT_S);
  ui_harness_wait (window_mapped, NULL, "the conversation", TIMEOUT_S);
  return window;
}

/* The chat shown comes to its newest message, and stays there. */
static void
assert_opens_at_newest (void)
{
  gint64 start = g_get_monotonic_time ();

  ui_harness_wait (at_newest, NULL, "the newest message", 20);
  g_test_message ("at the newest message after %.2f s",
                  (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC);
  ui_harness_spin (0.5);
  g_assert_true (at_newest (NULL));
}

static void
test_open_at_newest (void)
{
  window_ready ();
  /* the newest chat, shown at startup */
  g_assert_cmpstr (app_chat_get_id (current_chat ()), ==, GROUNDING_CHAT_ID);
  assert_opens_at_newest ();

  /* a long chat chosen in the sidebar, and back */
  select_chat (LONG_CHAT_ID);
  assert_opens_at_newest ();
  select_chat (GROUNDING_CHAT_ID);
  assert_opens_at_newest ();
  select_chat (LONG_CHAT_ID);
  assert_opens_at_newest ();
}

/* ------------------------------------------------------------------------------------------
 * Copy and Edit leave the conversation where it is
 */

/* The long chat, scrolled up a little from its end, as by a person reading the answer before
 * the last question, its header near the top of the view. */
static GtkAdjustment *
reading_previous_answer (void)
{
  GtkAdjustment *adj;
  guint pos = 2 * N_ROUNDS - 3;
  double top, bottom;

  window_ready ();
  select_chat (LONG_CHAT_ID);
  adj = vadjustment ();
  /* at the end, whether the chat opened there or not */
  for (int i = 0; i < 20 && !at_newest (NULL); i++)
    {
      gtk_adjustment_set_value (adj, gtk_adjustment_get_upper (adj) -
                                       gtk_adjustment_get_page_size (adj));
      ui_harness_spin (0.2);
    }
  /* up a little, as a person reading the previous answer would */
  wheel (-3);
  ui_harness_spin (0.5);
  g_assert_true (row_in_view (pos, &top, &bottom));
  /* the answer's header near the top of the view, its end below the view */
  gtk_adjustment_set_value (adj, gtk_adjustment_get_value (adj) + top - 60);
  ui_harness_spin (0.5);
  g_assert_true (row_in_view (pos, &top, &bottom));
  g_assert_cmpfloat (bottom, >, gtk_adjustment_get_page_size (adj));
  return adj;
}

/* Copy says so, and leaves the conversation where it was. */
static void
test_copy (void)
{
  GtkAdjustment *adj = reading_previous_answer ();
  double before = gtk_adjustment_get_value (adj);
  guint pos = 2 * N_ROUNDS - 3;
  AppMessageRow *row;
  GtkWidget *copy;

  row = row_of (pos);
  copy = find_button (GTK_WIDGET (row), "edit-copy-symbolic");
  g_assert_nonnull (copy);
  gdk_clipboard_set_text (gtk_widget_get_clipboard (copy), "");
  click (copy);
  ui_harness_spin (0.5);
  g_assert_cmpfloat (fabs (gtk_adjustment_get_value (adj) - before), <, 1);
  ui_harness_wait (toast_shown, (gpointer) "Message copied", "the toast of Copy", TIMEOUT_S);
  {
    g_autofree char *text = ui_harness_clipboard_text (gtk_widget_get_clipboard (copy),
                                                       TIMEOUT_S);
    g_autoptr(AppMessage) m = app_chat_get_message (current_chat (), pos);

    g_assert_cmpstr (text, ==, app_message_get_text (m));
  }
}

static gboolean
answer_done (gpointer data)
{
  g_autoptr(AppMessage) m = ui_harness_last_message (current_chat ());

  return ui_harness_answer_ended (m);
}

/* Edit on a question in the middle of the chat, its header in view: the question goes to the
 * composer, and the conversation does not jump, neither then nor when it is sent. */
static void
test_edit (void)
{
  GtkAdjustment *adj;
  guint pos = N_ROUNDS;          /* a question */
  double top = 0, bottom = 0, value, page;
  g_autofree char *text = NULL;

  window_ready ();
  select_chat (GROUNDING_CHAT_ID);
  ui_harness_spin (0.5);
  select_chat (LONG_CHAT_ID);
  ui_harness_spin (0.5);
  adj = vadjustment ();
  /* straight to the question with the scroll bar, and on until it is at the top of the view */
  gtk_adjustment_set_value (adj, gtk_adjustment_get_upper (adj) * pos / (2 * N_ROUNDS));
  ui_harness_spin (0.3);
  for (int i = 0; i < 100 && !row_in_view (pos, &top, &bottom); i++)
    {
      gtk_adjustment_set_value (adj, gtk_adjustment_get_value (adj) + (bottom > 0 ? 200 : -200));
      ui_harness_spin (0.1);
    }
  /* the last bit with the wheel, the question's header at the bottom of the view and the rest
   * of it below */
  g_assert_true (row_in_view (pos, &top, &bottom));
  gtk_adjustment_set_value (adj, gtk_adjustment_get_value (adj) + top + 40);
  ui_harness_spin (0.3);
  wheel (-0.5);
  ui_harness_spin (0.3);
  g_assert_true (row_in_view (pos, &top, &bottom));
  gtk_adjustment_set_value (adj, gtk_adjustment_get_value (adj) + top -
                                   gtk_adjustment_get_page_size (adj) + 60);
  ui_harness_spin (0.5);
  g_assert_true (row_in_view (pos, &top, &bottom));
  g_assert_cmpfloat (bottom, >, gtk_adjustment_get_page_size (adj));
  value = gtk_adjustment_get_value (adj);
  page = gtk_adjustment_get_page_size (adj);
  click (find_button (GTK_WIDGET (row_of (pos)), "document-edit-symbolic"));
  ui_harness_spin (1);
  text = app_composer_get_text (composer ());
  g_assert_cmpstr (text, ==, "Question 6");
  /* the chat is as it was until the question is sent, and the question stays in view: the
   * conversation moves no more than the edit bar below it takes from its height */
  g_assert_cmpuint (app_chat_get_n_messages (current_chat ()), ==, 2 * N_ROUNDS);
  g_assert_true (row_in_view (pos, &top, &bottom));
  g_test_message ("Edit: value %.0f -> %.0f, page %.0f -> %.0f", value,
                  gtk_adjustment_get_value (adj), page, gtk_adjustment_get_page_size (adj));
  g_assert_cmpfloat (fabs (gtk_adjustment_get_value (adj) - value), <=,
                     page - gtk_adjustment_get_page_size (adj) + 1);

  /* sent: the question's new version, and the conversation follows its answer at the end */
  app_composer_set_text (composer (), "Question 6, again");
  g_signal_emit_by_name (composer (), "send");
  ui_harness_wait (answer_done, NULL, "the answer", TIMEOUT_S);
  ui_harness_spin (0.5);
  g_assert_cmpuint (app_chat_get_n_messages (current_chat ()), ==, pos + 2);
  g_assert_true (at_newest (NULL));
}

/* ------------------------------------------------------------------------------------------
 * Grounding: pointing at a chip highlights that chip's boxes
 */

static gboolean
boxes_ready (gpointer data)
{
  GtkWidget *view = ui_harness_find_widget (GTK_WIDGET (main_window ()),
                                            APP_TYPE_GROUNDING_VIEW, 0);

  return view && gtk_widget_get_mapped (view) &&
         app_grounding_view_get_texture (APP_GROUNDING_VIEW (view));
}

/* The answer's label that holds `text`. */
static GtkLabel *
label_with (GtkWidget  *root,
            const char *text)
{
  GtkWidget *label;

  for (guint i = 0; (label = ui_harness_find_widget (root, GTK_TYPE_LABEL, i)); i++)
    if (strstr (gtk_label_get_text (GTK_LABEL (label)), text))
      return GTK_LABEL (label);
  g_error ("no label shows “%s”", text);
}

/* The pointer moves to the middle of `text` in the label: every motion controller of the
 * label hears it, GtkLabel's own first, as from a real pointer. */
static void
point_at (GtkLabel   *label,
          const char *text)
{
  const char *all = gtk_label_get_text (label);
  int index = (int) (strstr (all, text) - all) + (int) strlen (text) / 2;
  PangoRectangle pos;
  int lx, ly;
  double x, y;
  g_autoptr(GListModel) controllers = gtk_widget_observe_controllers (GTK_WIDGET (label));

  pango_layout_index_to_pos (gtk_label_get_layout (label), index, &pos);
  gtk_label_get_layout_offsets (label, &lx, &ly);
  x = lx + (pos.x + pos.width / 2.0) / PANGO_SCALE;
  y = ly + (pos.y + pos.height / 2.0) / PANGO_SCALE;
  for (guint i = 0; i < g_list_model_get_n_items (controllers); i++)
    {
      g_autoptr(GObject) c = g_list_model_get_item (controllers, i);

      if (GTK_IS_EVENT_CONTROLLER_MOTION (c))
        g_signal_emit_by_name (c, "motion", x, y);
    }
}

static void
test_chips (void)
{
  static const struct { const char *text; int ref; } places[] = {
    { "Two giraffes", 0 },
    { "stand on a sunny savanna", -1 },
    { "zebras", 1 },
    { "graze near the trees", -1 },
    { "a safari vehicle", 2 },
    { "waits at the left edge", -1 },
    { "giraffes", 0 },           /* the end of a chip */
    { "Far behind them", -1 },
  };
  AppGroundingView *view;
  GtkLabel *label;

  window_ready ();
  select_chat (GROUNDING_CHAT_ID);
  ui_harness_wait (boxes_ready, NULL, "the boxes", TIMEOUT_S);
  ui_harness_spin (0.5);
  view = APP_GROUNDING_VIEW (ui_harness_find_widget (GTK_WIDGET (main_window ()),
                                                     APP_TYPE_GROUNDING_VIEW, 0));
  label = label_with (gtk_widget_get_ancestor (GTK_WIDGET (view), APP_TYPE_MESSAGE_ROW),
                      "Two giraffes");
  g_assert_cmpint (app_grounding_view_get_highlight (view), ==, -1);
  for (guint i = 0; i < G_N_ELEMENTS (places); i++)
    {
      point_at (label, places[i].text);
      if (app_grounding_view_get_highlight (view) != places[i].ref)
        g_error ("pointing at “%s” highlights the boxes of ref %d, expected %d", places[i].text,
                 app_grounding_view_get_highlight (view), places[i].ref);
    }
}

/* ------------------------------------------------------------------------------------------
 * The image viewer
 */

static gboolean
viewer_loaded (gpointer data)
{
  AppImageViewer *viewer = data;
  AppGroundingView *view = app_image_viewer_get_view (viewer);

  return app_grounding_view_get_texture (view) && gtk_widget_get_mapped (GTK_WIDGET (view)) &&
         gtk_widget_get_width (GTK_WIDGET (view)) > 0;
}

static AppImageViewer *
open_viewer (const char *path)
{
  AppImageViewer *viewer = app_image_viewer_new (main_window (), path);

  gtk_window_present (GTK_WINDOW (viewer));
  ui_harness_wait (viewer_loaded, viewer, "the viewer", TIMEOUT_S);
  ui_harness_spin (0.3);
  return viewer;
}

/* The picture's pixel under (x, y) of the viewer's scrolled area. */
static graphene_point_t
pixel_under (AppImageViewer *viewer,
             double          x,
             double          y)
{
  AppGroundingView *view = app_image_viewer_get_view (viewer);
  GtkWidget *scroller = gtk_widget_get_ancestor (GTK_WIDGET (view), GTK_TYPE_SCROLLED_WINDOW);
  GdkTexture *texture = app_grounding_view_get_texture (view);
  graphene_rect_t image;
  graphene_point_t p;
  double scale;

  g_assert_true (app_grounding_view_get_image_bounds (view, &image));
  g_assert_true (gtk_widget_compute_point (scroller, GTK_WIDGET (view),
                                           &GRAPHENE_POINT_INIT (x, y), &p));
  scale = image.size.width / gdk_texture_get_width (texture);
  return GRAPHENE_POINT_INIT ((p.x - image.origin.x) / scale, (p.y - image.origin.y) / scale);
}

static void
assert_same_pixel (graphene_point_t a,
                   graphene_point_t b,
                   const char      *what)
{
  if (fabs (a.x - b.x) > 1 || fabs (a.y - b.y) > 1)
    g_error ("%s: the picture's pixel (%.1f, %.1f) moved to (%.1f, %.1f)", what, a.x, a.y,
             b.x, b.y);
}

/* Zooming keeps the picture's point under the pointer, or the middle for the keys. */
static void
test_viewer_zoom (void)
{
  g_autofree char *path = NULL;
  AppImageViewer *viewer;
  GtkWidget *scroller;
  graphene_point_t before;
  double w, h;

  window_ready ();
  path = app_chat_store_get_image_path (app_application_get_store (app),
                                        "e315513b79cbf2387da8a27f06ced62351c2f8f98823c49e2202b75a52c4b055.png");
  viewer = open_viewer (path);
  scroller = gtk_widget_get_ancestor (GTK_WIDGET (app_image_viewer_get_view (viewer)),
                                      GTK_TYPE_SCROLLED_WINDOW);
  w = gtk_widget_get_width (scroller);
  h = gtk_widget_get_height (scroller);

  /* from fitted to 100 % with the keys: the middle stays */
  before = pixel_under (viewer, w / 2, h / 2);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (viewer), "viewer.zoom-original", NULL));
  ui_harness_spin (0.3);
  assert_same_pixel (before, pixel_under (viewer, w / 2, h / 2), "fitted to 100 %");

  /* to 200 %, and on with the pointer near the top left corner (Ctrl+scroll) */
  before = pixel_under (viewer, w / 2, h / 2);
  app_image_viewer_set_zoom (viewer, 2);
  ui_harness_spin (0.3);
  assert_same_pixel (before, pixel_under (viewer, w / 2, h / 2), "zoomed to 200 %");
  for (int i = 0; i < 2; i++)
    {
      before = pixel_under (viewer, w / 4, h / 5);
      app_image_viewer_zoom_at (viewer, 2 * (i + 2) * 0.75, w / 4, h / 5);
      ui_harness_spin (0.3);
      assert_same_pixel (before, pixel_under (viewer, w / 4, h / 5), "zoomed at the pointer");
    }

  /* Ctrl+minus: the middle stays */
  before = pixel_under (viewer, w / 2, h / 2);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (viewer), "viewer.zoom-out", NULL));
  ui_harness_spin (0.3);
  assert_same_pixel (before, pixel_under (viewer, w / 2, h / 2), "zoomed out with the keys");
  gtk_window_destroy (GTK_WINDOW (viewer));
}

/* A small PNG of its own: w x h pixels of a gradient. */
static char *
small_png (int w,
           int h)
{
  g_autofree guchar *px = g_malloc ((gsize) w * h * 4);
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  char *path = g_build_filename (g_get_user_data_dir (), "small.png", NULL);

  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        guchar *p = px + ((gsize) y * w + x) * 4;

        p[0] = (guchar) (255 * x / w);
        p[1] = (guchar) (255 * y / h);
        p[2] = 128;
        p[3] = 255;
      }
  bytes = g_bytes_new_take (g_steal_pointer (&px), (gsize) w * h * 4);
  texture = gdk_memory_texture_new (w, h, GDK_MEMORY_R8G8B8A8, bytes, (gsize) w * 4);
  g_assert_true (gdk_texture_save_to_png (texture, path));
  return path;
}

typedef struct
{
  GdkTexture *texture;
  gboolean done;
} TextureRead;

static void
texture_read_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  TextureRead *r = user_data;
  g_autoptr(GError) error = NULL;

  r->texture = gdk_clipboard_read_texture_finish (GDK_CLIPBOARD (source), result, &error);
  g_assert_no_error (error);
  r->done = TRUE;
}

/* Whether the menu (or one of its sections) has an entry for `action`. */
static gboolean
menu_has (GMenuModel *menu,
          const char *action)
{
  for (int i = 0; i < g_menu_model_get_n_items (menu); i++)
    {
      g_autofree char *name = NULL;
      g_autoptr(GMenuModel) section = g_menu_model_get_item_link (menu, i, G_MENU_LINK_SECTION);

      if ((g_menu_model_get_item_attribute (menu, i, G_MENU_ATTRIBUTE_ACTION, "s", &name) &&
           g_str_equal (name, action)) || (section && menu_has (section, action)))
        return TRUE;
    }
  return FALSE;
}

static gboolean
toast_in (gpointer data)
{
  return ui_find_shows_text (GTK_WIDGET (data), "Image saved");
}

static gboolean
file_exists (gpointer data)
{
  return g_file_test (data, G_FILE_TEST_IS_REGULAR);
}

/* A small image is shown at its own size when fitted; a plain image (no boxes) can be saved
 * and copied. */
static void
test_viewer_plain (void)
{
  g_autofree char *path = small_png (120, 90);
  g_autofree char *saved = g_build_filename (g_get_user_data_dir (), "saved copy.png", NULL);
  AppImageViewer *viewer;
  AppGroundingView *view;
  graphene_rect_t image;

  window_ready ();
  viewer = open_viewer (path);
  view = app_image_viewer_get_view (viewer);

  /* fitted, it is not blown up past 100 % */
  g_assert_true (app_grounding_view_get_image_bounds (view, &image));
  g_assert_cmpfloat (gtk_widget_get_width (GTK_WIDGET (view)), >, 300);
  g_assert_cmpfloat_with_epsilon (image.size.width, 120, 1e-3);
  g_assert_cmpfloat_with_epsilon (image.size.height, 90, 1e-3);

  /* its menu has Save and Copy */
  {
    GtkWidget *button = ui_harness_find_widget (GTK_WIDGET (viewer), GTK_TYPE_MENU_BUTTON, 0);

    g_assert_nonnull (button);
    g_assert_true (menu_has (gtk_menu_button_get_menu_model (GTK_MENU_BUTTON (button)),
                             "viewer.save-image"));
    g_assert_true (menu_has (gtk_menu_button_get_menu_model (GTK_MENU_BUTTON (button)),
                             "viewer.copy-image"));
  }

  /* Copy Image: the picture, at its own size */
  {
    GdkClipboard *clipboard = gtk_widget_get_clipboard (GTK_WIDGET (viewer));
    TextureRead read = { 0 };

    gdk_clipboard_set_text (clipboard, "");
    g_assert_true (gtk_widget_activate_action (GTK_WIDGET (viewer), "viewer.copy-image", NULL));
    gdk_clipboard_read_texture_async (clipboard, NULL, texture_read_cb, &read);
    ui_harness_wait (ui_harness_flag_set, &read.done, "the copied image", TIMEOUT_S);
    g_assert_cmpint (gdk_texture_get_width (read.texture), ==, 120);
    g_assert_cmpint (gdk_texture_get_height (read.texture), ==, 90);
    g_object_unref (read.texture);
  }

  /* Save Image As… (past its file chooser, which stays out of the test: it starts
   * libcloudproviders, whose leak LeakSanitizer would report): the file as it is */
  {
    g_autoptr(GFile) destination = g_file_new_for_path (saved);
    g_autofree char *original = NULL;
    g_autofree char *copy = NULL;
    gsize original_len, copy_len;

    app_image_viewer_save_to (viewer, destination);
    ui_harness_wait (file_exists, saved, "the saved image", TIMEOUT_S);
    ui_harness_wait (toast_in, viewer, "the toast of Save", TIMEOUT_S);
    g_assert_true (g_file_get_contents (path, &original, &original_len, NULL));
    g_assert_true (g_file_get_contents (saved, &copy, &copy_len, NULL));
    g_assert_cmpmem (original, original_len, copy, copy_len);
  }
  gtk_window_destroy (GTK_WINDOW (viewer));
}

/* ------------------------------------------------------------------------------------------
 * The composer's helpers show when they are on
 */

/* The composer's toggle button with this icon. */
static GtkWidget *
mode_button (const char *icon)
{
  GtkWidget *b = find_button (GTK_WIDGET (composer ()), icon);

  g_assert_nonnull (b);
  g_assert_true (GTK_IS_TOGGLE_BUTTON (b));
  return b;
}

/* How far the button's background, away from its icon, is from the accent colour: the mean
 * colour of its left and right edges' middle. */
static int
accent_distance (GtkWidget *button)
{
  g_autofree char *path = g_build_filename (g_get_user_data_dir (), "button.png", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  g_autofree guchar *px = NULL;
  GdkRGBA accent;
  int w, h, sum[3] = { 0 }, n = 0, d = 0;

  g_assert_true (ui_harness_render_png (button, path, &error));
  texture = gdk_texture_new_from_filename (path, &error);
  g_assert_no_error (error);
  w = gdk_texture_get_width (texture);
  h = gdk_texture_get_height (texture);
  px = g_malloc ((gsize) w * h * 4);
  gdk_texture_download (texture, px, (gsize) w * 4);
  for (int y = h / 2 - 2; y <= h / 2 + 2; y++)
    for (int x = 0; x < w; x++)
      if (x > w / 8 && x < w / 4)
        {
          const guchar *p = px + ((gsize) y * w + x) * 4;  /* B, G, R, A */

          sum[0] += p[2];
          sum[1] += p[1];
          sum[2] += p[0];
          n++;
        }
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  g_assert_true (gtk_style_context_lookup_color (gtk_widget_get_style_context (button),
                                                 "accent_bg_color", &accent));
  G_GNUC_END_IGNORE_DEPRECATIONS
  d = MAX (d, abs (sum[0] / n - (int) (accent.red * 255)));
  d = MAX (d, abs (sum[1] / n - (int) (accent.green * 255)));
  d = MAX (d, abs (sum[2] / n - (int) (accent.blue * 255)));
  g_test_message ("%s: mean #%02x%02x%02x, accent distance %d",
                  gtk_widget_get_tooltip_text (button), sum[0] / n, sum[1] / n, sum[2] / n, d);
  return d;
}

typedef struct
{
  GtkWidget *button;
  gboolean on;
} AccentWait;

static gboolean
accent_settled (gpointer data)
{
  AccentWait *w = data;
  int d;

  ui_harness_spin (0.1);
  d = accent_distance (w->button);
  return w->on ? d < 16 : d > 60;
}

/* The button in the accent colour (on), or far from it (off), once GTK's transition between
 * the two is over: it lasts a fraction of a second, more on a slow or busy machine. */
static void
assert_accent (GtkWidget *button,
               gboolean   on)
{
  AccentWait w = { button, on };

  ui_harness_wait (accent_settled, &w, on ? "the accent colour" : "no accent colour",
                   TIMEOUT_S);
}

static void
test_helper_toggles (void)
{
  GtkWidget *find, *caption;

  window_ready ();
  find = mode_button ("find-location-symbolic");
  caption = mode_button ("media-view-subtitles-symbolic");
  /* GTK 4 draws a toggle button as a button node, :checked when on */
  g_assert_cmpstr (gtk_widget_get_css_name (find), ==, "button");
  app_composer_set_prompt_kind (composer (), APP_PROMPT_PLAIN);
  app_composer_set_text (composer (), "");
  assert_accent (find, FALSE);

  /* Find on: its button in the accent colour, the other not */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (main_window ()), "win.find-in-image",
                                             NULL));
  g_assert_true (gtk_widget_get_state_flags (find) & GTK_STATE_FLAG_CHECKED);
  assert_accent (find, TRUE);
  assert_accent (caption, FALSE);
  g_assert_true (ui_find_shows_text (GTK_WIDGET (composer ()), "What to find in the image"));

  /* typing hides the placeholder: the helper is still named */
  app_composer_set_text (composer (), "the giraffe at the back");
  ui_harness_spin (0.2);
  g_assert_false (ui_find_shows_text (GTK_WIDGET (composer ()), "What to find in the image"));
  g_assert_true (ui_find_shows_text (GTK_WIDGET (composer ()), "Find in Image"));

  /* the other helper: its name */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (main_window ()),
                                             "win.grounded-caption", NULL));
  assert_accent (caption, TRUE);
  assert_accent (find, FALSE);
  g_assert_true (ui_find_shows_text (GTK_WIDGET (composer ()), "Grounded Caption"));
  g_assert_false (ui_find_shows_text (GTK_WIDGET (composer ()), "Find in Image"));

  /* off: nothing named */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (main_window ()),
                                             "win.grounded-caption", NULL));
  ui_harness_spin (0.2);
  g_assert_false (ui_find_shows_text (GTK_WIDGET (composer ()), "Grounded Caption"));
  app_composer_set_text (composer (), "");
}

/* ------------------------------------------------------------------------------------------
 * Import errors: one toast for the lot
 */

static gboolean
composer_idle (gpointer data)
{
  return !app_composer_is_importing (composer ());
}

static gboolean
images_attached (gpointer data)
{
  g_auto(GStrv) ids = app_composer_get_images (composer ());

  return !app_composer_is_importing (composer ()) &&
         g_strv_length (ids) == GPOINTER_TO_UINT (data);
}

/* The shown button under `root` labelled `label`. */
static gboolean
is_labelled_button (GtkWidget     *w,
                    gconstpointer  label)
{
  return GTK_IS_BUTTON (w) && g_strcmp0 (gtk_button_get_label (GTK_BUTTON (w)), label) == 0;
}

static GtkWidget *
find_labelled_button (GtkWidget  *root,
                      const char *label)
{
  return ui_find_visible (root, is_labelled_button, label);
}

static gboolean
details_shown (gpointer data)
{
  GtkWidget **out = data;
  GListModel *toplevels = gtk_window_get_toplevels ();

  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr(GObject) w = g_list_model_get_item (toplevels, i);

      if (ADW_IS_MESSAGE_DIALOG (w) && gtk_widget_get_visible (GTK_WIDGET (w)))
        *out = GTK_WIDGET (w);
    }
  return *out != NULL;
}

static void
test_import_errors (void)
{
  static const char *names[] = { "notes.txt", "empty.png", "gone.jpg" };
  GSList *files = NULL;
  GtkWidget *overlay, *details, *dialog = NULL;

  window_ready ();
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *path = g_build_filename (g_get_user_data_dir (), names[i], NULL);

      if (i == 0)
        g_assert_true (g_file_set_contents (path, "Not an image, a shopping list.\n", -1, NULL));
      else if (i == 1)
        g_assert_true (g_file_set_contents (path, "", 0, NULL));
      files = g_slist_append (files, g_file_new_for_path (path));
    }
  app_composer_add_files (composer (), files);
  g_slist_free_full (files, g_object_unref);
  ui_harness_wait (composer_idle, NULL, "the imports", TIMEOUT_S);
  ui_harness_spin (0.5);

  /* one toast says how many, with a button for the details */
  overlay = ui_harness_find_widget (GTK_WIDGET (main_window ()), ADW_TYPE_TOAST_OVERLAY, 0);
  g_assert_true (ui_find_shows_text (overlay, "3 files could not be added"));
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    g_assert_false (ui_find_shows_text (overlay, names[i]));
  details = find_labelled_button (overlay, "_Details");
  g_assert_nonnull (details);

  /* Details: each file, and why */
  g_signal_emit_by_name (details, "clicked");
  ui_harness_wait (details_shown, &dialog, "the details", TIMEOUT_S);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    g_assert_true (ui_find_shows_text (dialog, names[i]));
  gtk_window_destroy (GTK_WINDOW (dialog));

  /* and no other toast waits behind it */
  ui_harness_spin (1);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    g_assert_false (ui_find_shows_text (overlay, names[i]));
}

/* A picture pasted was decoded by GTK with whatever gdk-pixbuf loader its type named, SVG
 * included (a 265-byte SVG ran for over a minute at 2.2 GB); and a picture another program
 * offered only as image/png bytes was not taken. The composer reads the bytes of the formats
 * the app accepts and nothing else: an SVG is refused, not decoded; PNG bytes are attached. */
static void
on_import_failed (AppComposer *composer,
                  const char  *message,
                  char       **out)
{
  g_free (*out);
  *out = g_strdup (message);
}

static gboolean
string_set (gpointer data)
{
  return *(char **) data != NULL;
}

static void
paste (GdkContentProvider *provider)
{
  GtkWidget *view = ui_harness_find_widget (GTK_WIDGET (composer ()), GTK_TYPE_TEXT_VIEW, 0);

  g_assert_true (gdk_clipboard_set_content (gtk_widget_get_clipboard (view), provider));
  g_signal_emit_by_name (view, "paste-clipboard");
}

static void
test_paste_images (void)
{
  static const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" "
                            "height=\"64\"><rect width=\"64\" height=\"64\"/></svg>";
  g_autofree char *failed = NULL;
  g_autofree char *png_path = small_png (40, 30);
  g_autofree char *png = NULL;
  g_autoptr(GBytes) svg_bytes = g_bytes_new_static (svg, sizeof svg - 1);
  g_autoptr(GBytes) png_bytes = NULL;
  g_autoptr(GdkContentProvider) svg_provider = NULL;
  g_autoptr(GdkContentProvider) png_provider = NULL;
  g_auto(GStrv) before = NULL;
  gsize png_len;
  gulong handler;
  guint n_before;

  window_ready ();
  before = app_composer_get_images (composer ());
  n_before = g_strv_length (before);
  handler = g_signal_connect (composer (), "import-failed", G_CALLBACK (on_import_failed),
                              &failed);

  svg_provider = gdk_content_provider_new_for_bytes ("image/svg+xml", svg_bytes);
  paste (svg_provider);
  ui_harness_wait (string_set, &failed, "the pasted SVG refused", TIMEOUT_S);
  g_assert_nonnull (strstr (failed, "PNG, JPEG, WebP, GIF, BMP or TIFF"));
  ui_harness_wait (composer_idle, NULL, "the imports", TIMEOUT_S);
  {
    g_auto(GStrv) ids = app_composer_get_images (composer ());

    g_assert_cmpuint (g_strv_length (ids), ==, n_before);
  }

  g_clear_pointer (&failed, g_free);
  g_assert_true (g_file_get_contents (png_path, &png, &png_len, NULL));
  png_bytes = g_bytes_new (png, png_len);
  png_provider = gdk_content_provider_new_for_bytes ("image/png", png_bytes);
  paste (png_provider);
  ui_harness_wait (images_attached, GUINT_TO_POINTER (n_before + 1), "the pasted PNG",
                   TIMEOUT_S);
  g_assert_null (failed);
  g_signal_handler_disconnect (composer (), handler);
  app_composer_clear (composer ());
}

/* ------------------------------------------------------------------------------------------
 * Drag and drop: the window says where images can go
 */

static gboolean
drop_hint_shown (void)
{
  return ui_find_shows_text (GTK_WIDGET (main_window ()), "Drop images to ask about them");
}

static void
test_drop_highlight (void)
{
  GtkEventController *motion, *drop;
  g_autofree char *image = ui_harness_golden_image ("multi_image_2.png");
  g_autoptr(GFile) file = g_file_new_for_path (image);
  GSList *files = g_slist_append (NULL, file);
  g_auto(GValue) value = G_VALUE_INIT;
  gboolean accepted = FALSE;

  window_ready ();
  app_composer_clear (composer ());
  motion = ui_find_controller (GTK_WIDGET (main_window ()), GTK_TYPE_DROP_CONTROLLER_MOTION);
  drop = ui_find_controller (GTK_WIDGET (main_window ()), GTK_TYPE_DROP_TARGET);
  g_assert_nonnull (motion);
  g_assert_nonnull (drop);
  g_assert_false (drop_hint_shown ());

  /* a drag comes over the window, and goes */
  g_signal_emit_by_name (motion, "enter", 300.0, 200.0);
  ui_harness_spin (0.2);
  g_assert_true (drop_hint_shown ());
  g_signal_emit_by_name (motion, "leave");
  ui_harness_spin (0.2);
  g_assert_false (drop_hint_shown ());

  /* it comes again, and drops: the image is attached, the highlight gone */
  g_signal_emit_by_name (motion, "enter", 300.0, 200.0);
  ui_harness_spin (0.2);
  g_assert_true (drop_hint_shown ());
  g_value_init (&value, GDK_TYPE_FILE_LIST);
  g_value_take_boxed (&value, gdk_file_list_new_from_list (files));
  g_slist_free (files);
  g_signal_emit_by_name (drop, "drop", &value, 300.0, 200.0, &accepted);
  g_assert_true (accepted);
  ui_harness_spin (0.2);
  g_assert_false (drop_hint_shown ());
  ui_harness_wait (composer_idle, NULL, "the dropped image", TIMEOUT_S);
  g_assert_true (app_composer_has_images (composer ()));
  app_composer_clear (composer ());
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = ui_harness_isolate ("controls");
  g_autofree char *long_chat = long_chat_file (home);
  g_autoptr(GSettings) settings = NULL;
  int rc;

  ui_harness_add_grounding_chat ();
  ui_harness_add_chat (long_chat, NULL);
  gtk_test_init (&argc, &argv, NULL);
  settings = g_settings_new (APP_ID);
  g_settings_set (settings, "max-new-tokens", "mi", TRUE, 8);
  app = ui_harness_app_new ();
  g_test_add_func ("/app/controls/open-at-newest", test_open_at_newest);
  g_test_add_func ("/app/controls/copy", test_copy);
  g_test_add_func ("/app/controls/edit", test_edit);
  g_test_add_func ("/app/controls/chips", test_chips);
  g_test_add_func ("/app/controls/viewer-zoom", test_viewer_zoom);
  g_test_add_func ("/app/controls/viewer-plain", test_viewer_plain);
  g_test_add_func ("/app/controls/helper-toggles", test_helper_toggles);
  g_test_add_func ("/app/controls/import-errors", test_import_errors);
  g_test_add_func ("/app/controls/paste-images", test_paste_images);
  g_test_add_func ("/app/controls/drop-highlight", test_drop_highlight);
  rc = g_test_run ();
  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  return rc;
}
