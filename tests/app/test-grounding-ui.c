/* test-grounding-ui.c - an answer's boxes in the real application, under Xvfb.
 *
 * The golden mini models answer gibberish, so the chat comes from a fixture file
 * (tests/app/fixtures/grounding-chat.json): a question about a photo of corn, then a grounded
 * caption of the golden giraffe photo with four boxes under three labels. The test opens the
 * app on it and checks, on rendered pixels, that every box is outlined in its label's colour
 * where the coordinate mapping says; that pointing at a chip highlights its boxes and pointing
 * at a box its chip; the raw output toggle; copying the boxes as JSON and the exported PNG in
 * the photo's own pixels; the viewer at several zooms; and that moving the boxes to the other
 * image is kept in the chat file and survives reopening it.
 */
#include <json-glib/json-glib.h>
#include <math.h>

#include "app-composer.h"
#include "app-grounding-view.h"
#include "app-image-viewer.h"
#include "app-markdown-view.h"
#include "app-message-row.h"
#include "app-thumbnail.h"
#include "ui-harness.h"

#define TIMEOUT_S 120
#define CHAT_ID "a6032475-84ba-4cf4-9cb2-2b99a75b6b26"
#define GIRAFFES "e315513b79cbf2387da8a27f06ced62351c2f8f98823c49e2202b75a52c4b055.png"
#define CORN "59363d52805cc6e80f53ead82b6a3ee564f30bddcf891bc3ac60c5d8a2f54cc2.png"

static AppApplication *app;

/* ------------------------------------------------------------------------------------------
 * Pixels
 */

typedef struct
{
  GdkTexture *texture;
  int width, height;
  guchar *data;        /* cairo ARGB32: B, G, R, A in memory */
} Pixels;

static void
pixels_clear (Pixels *p)
{
  g_clear_object (&p->texture);
  g_clear_pointer (&p->data, g_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Pixels, pixels_clear)

static void
pixels_init (Pixels     *p,
             GdkTexture *texture)
{
  p->texture = g_object_ref (texture);
  p->width = gdk_texture_get_width (texture);
  p->height = gdk_texture_get_height (texture);
  p->data = g_malloc ((gsize) p->width * p->height * 4);
  gdk_texture_download (texture, p->data, (gsize) p->width * 4);
}

static guint32
pixel (const Pixels *p,
       int           x,
       int           y)
{
  const guchar *px;

  g_assert_cmpint (x, >=, 0);
  g_assert_cmpint (y, >=, 0);
  g_assert_cmpint (x, <, p->width);
  g_assert_cmpint (y, <, p->height);
  px = p->data + ((gsize) y * p->width + x) * 4;
  return ((guint32) px[2] << 16) | ((guint32) px[1] << 8) | px[0];
}

static int
color_distance (guint32 a,
                guint32 b)
{
  int d = 0;

  for (int shift = 0; shift <= 16; shift += 8)
    d = MAX (d, abs ((int) ((a >> shift) & 0xff) - (int) ((b >> shift) & 0xff)));
  return d;
}

static void
assert_color (const Pixels *p,
              int           x,
              int           y,
              guint32       expected,
              const char   *what)
{
  guint32 got = pixel (p, x, y);

  if (color_distance (got, expected) > 12)
    g_error ("%s at (%d, %d): #%06x, expected #%06x", what, x, y, got, expected);
}

/* What a window shows (without its frame and shadow, so that one pixel of the picture is at
 * the coordinates of content()), as it is drawn now. */
static GtkWidget *
content (GtkWindow *window)
{
  return gtk_widget_get_first_child (GTK_WIDGET (window));
}

static void
render_window (GtkWindow  *window,
               const char *name,
               Pixels     *out)
{
  g_autofree char *path = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), name, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) texture = NULL;

  ui_harness_spin (0.3);
  if (!ui_harness_render_png (content (window), path, &error))
    g_error ("%s", error->message);
  texture = gdk_texture_new_from_filename (path, &error);
  g_assert_no_error (error);
  pixels_init (out, texture);
  g_assert_cmpint (out->width, ==, gtk_widget_get_width (content (window)));
  g_assert_cmpint (out->height, ==, gtk_widget_get_height (content (window)));
  g_test_message ("screenshot: %s", path);
}

/* ------------------------------------------------------------------------------------------
 * The widgets
 */

/* The answer's boxes are drawn, and the conversation has scrolled them into view. */
static gboolean
view_ready (gpointer data)
{
  GtkWindow *window = data;
  GtkWidget *view = ui_harness_find_widget (GTK_WIDGET (window), APP_TYPE_GROUNDING_VIEW, 0);
  GtkWidget *content = gtk_widget_get_first_child (GTK_WIDGET (window));
  graphene_rect_t bounds;

  return view && gtk_widget_get_mapped (view) && gtk_widget_get_height (view) > 100 &&
         app_grounding_view_get_texture (APP_GROUNDING_VIEW (view)) &&
         gtk_widget_compute_bounds (view, content, &bounds) && bounds.origin.y >= 0 &&
         bounds.origin.y + bounds.size.height <= gtk_widget_get_height (content);
}

static AppGroundingView *
boxes_view (GtkWindow *window)
{
  ui_harness_wait (view_ready, window, "the boxes", TIMEOUT_S);
  return APP_GROUNDING_VIEW (ui_harness_find_widget (GTK_WIDGET (window),
                                                     APP_TYPE_GROUNDING_VIEW, 0));
}

/* The box's rectangle in window coordinates. */
static graphene_rect_t
box_in (GtkWidget        *window,
        AppGroundingView *view,
        guint             ref,
        guint             box)
{
  graphene_rect_t r;
  graphene_point_t origin;

  g_assert_true (app_grounding_view_get_box_bounds (view, ref, box, &r));
  g_assert_true (gtk_widget_compute_point (GTK_WIDGET (view), window,
                                           &GRAPHENE_POINT_INIT (r.origin.x, r.origin.y),
                                           &origin));
  r.origin = origin;
  return r;
}

/* How close to `color` the pixels of row y come at x and one pixel either side: a 2-pixel
 * line at a fractional position covers one pixel fully, which one depends on rounding. */
static int
edge_distance (const Pixels *p,
               double        x,
               int           y,
               guint32       color)
{
  int best = 255;

  for (int i = (int) floor (x) - 1; i <= (int) ceil (x) + 1; i++)
    best = MIN (best, color_distance (pixel (p, i, y), color));
  return best;
}

/* A box's outline is in its colour on its left and right edges: at a quarter, half and three
 * quarters of its height, of which a label drawn over it may hide one. */
static void
assert_outline (const Pixels          *p,
                const graphene_rect_t *r,
                guint32                color,
                const char            *what)
{
  double left = r->origin.x + 1, right = r->origin.x + r->size.width - 1;
  int seen = 0;

  for (int i = 1; i <= 3; i++)
    {
      int y = (int) (r->origin.y + r->size.height * i / 4);

      seen += edge_distance (p, left, y, color) <= 12;
      seen += edge_distance (p, right, y, color) <= 12;
    }
  if (seen < 5)
    g_error ("%s: #%06x on only %d of 6 places on the edges x = %.1f and %.1f", what, color,
             seen, left, right);
}

static AppMarkdownView *
answer_view (AppGroundingView *view)
{
  GtkWidget *row = gtk_widget_get_ancestor (GTK_WIDGET (view), APP_TYPE_MESSAGE_ROW);

  g_assert_nonnull (row);
  return APP_MARKDOWN_VIEW (ui_harness_find_widget (row, APP_TYPE_MARKDOWN_VIEW, 0));
}

/* The markup of the answer's labels, joined. */
static char *
answer_markup (AppGroundingView *view)
{
  GtkWidget *row = gtk_widget_get_ancestor (GTK_WIDGET (view), APP_TYPE_MESSAGE_ROW);
  GString *all = g_string_new (NULL);
  GtkWidget *label;

  for (guint i = 0; (label = ui_harness_find_widget (row, GTK_TYPE_LABEL, i)); i++)
    g_string_append (all, gtk_label_get_label (GTK_LABEL (label)));
  return g_string_free (all, FALSE);
}

/* ------------------------------------------------------------------------------------------
 * The test
 */

static gboolean
clipboard_has_json (gpointer data)
{
  GdkClipboard *clipboard = data;
  const GdkContentFormats *formats = gdk_clipboard_get_formats (clipboard);

  return gdk_content_formats_contain_gtype (formats, G_TYPE_STRING);
}

static void
loaded_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  GdkTexture **out = user_data;
  g_autoptr(GError) error = NULL;

  *out = app_thumbnail_load_finish (result, &error);
  g_assert_no_error (error);
}

static gboolean
texture_set (gpointer data)
{
  return *(GdkTexture **) data != NULL;
}

static gboolean
shows_corn (gpointer data)
{
  GdkTexture *t = app_grounding_view_get_texture (data);

  return t && gdk_texture_get_width (t) == 450 && gdk_texture_get_height (t) == 308;
}

static gboolean
viewer_ready (gpointer data)
{
  AppImageViewer **viewer = data;
  GList *windows = gtk_application_get_windows (GTK_APPLICATION (app));

  for (GList *l = windows; l; l = l->next)
    if (APP_IS_IMAGE_VIEWER (l->data))
      *viewer = l->data;
  return *viewer && app_grounding_view_get_texture (app_image_viewer_get_view (*viewer)) &&
         gtk_widget_get_mapped (GTK_WIDGET (app_image_viewer_get_view (*viewer)));
}

static void
test_boxes (void)
{
  GtkWindow *window;
  AppGroundingView *view;
  const AppGrounding *g;
  GtkWidget *row;
  AppMarkdownView *md;
  g_auto(Pixels) plain = { 0 };
  g_auto(Pixels) lit = { 0 };
  graphene_rect_t giraffe;
  g_autofree char *markup = NULL;

  g_application_activate (G_APPLICATION (app));
  window = gtk_application_get_active_window (GTK_APPLICATION (app));
  gtk_window_set_default_size (window, 1100, 860);
  ui_harness_wait_ready (app, TIMEOUT_S);
  view = boxes_view (window);
  row = gtk_widget_get_ancestor (GTK_WIDGET (view), APP_TYPE_MESSAGE_ROW);
  md = answer_view (view);

  /* 1. the answer's boxes: 3 labels, 4 boxes, on the giraffes (the latest image) */
  g = app_grounding_view_get_grounding (view);
  g_assert_nonnull (g);
  g_assert_cmpuint (g->refs->len, ==, 3);
  g_assert_cmpuint (g->n_boxes, ==, 4);
  g_assert_cmpint (gdk_texture_get_width (app_grounding_view_get_texture (view)), ==, 724);
  g_assert_cmpint (gdk_texture_get_height (app_grounding_view_get_texture (view)), ==, 1086);

  /* every box outlined in its label's colour, where the mapping puts it */
  render_window (window, "grounding-test.png", &plain);
  for (guint r = 0; r < g->refs->len; r++)
    {
      const AppGroundingRef *ref = g_ptr_array_index (g->refs, r);

      for (guint b = 0; b < ref->boxes->len; b++)
        {
          graphene_rect_t rect = box_in (content (window), view, r, b);
          const AppGroundingBox *box = &g_array_index (ref->boxes, AppGroundingBox, b);
          graphene_rect_t image;
          double scale;
          int x, y, w, h;

          /* grid -> the photo's pixels -> the widget, with one scale */
          g_assert_true (app_grounding_view_get_image_bounds (view, &image));
          scale = image.size.width / 724;
          app_grounding_box_to_pixels (box, 724, 1086, &x, &y, &w, &h);
          g_assert_cmpfloat_with_epsilon (rect.size.width, w * scale, 1e-3);
          g_assert_cmpfloat_with_epsilon (rect.size.height, h * scale, 1e-3);
          assert_outline (&plain, &rect, app_grounding_color (ref->color), ref->label);
        }
    }
  /* the chips are there, the coordinates are not */
  markup = answer_markup (view);
  g_assert_nonnull (strstr (markup, "sightline-ref:0"));
  g_assert_nonnull (strstr (markup, "Two giraffes"));
  g_assert_null (strstr (markup, "<|det|>"));
  g_assert_null (strstr (markup, "999"));

  /* 2. pointing at the "Two giraffes" chip: its boxes are filled, the others fade */
  g_signal_emit_by_name (md, "chip-hovered", 0);
  g_assert_cmpint (app_grounding_view_get_highlight (view), ==, 0);
  render_window (window, "grounding-test-chip.png", &lit);
  giraffe = box_in (content (window), view, 0, 0);
  assert_outline (&lit, &giraffe, app_grounding_color (0), "the highlighted giraffes");
  {
    graphene_rect_t zebras = box_in (content (window), view, 1, 0);
    int y = (int) (zebras.origin.y + zebras.size.height / 2);
    int inside_x = (int) (giraffe.origin.x + giraffe.size.width / 2);
    int inside_y = (int) (giraffe.origin.y + giraffe.size.height / 2);

    g_assert_cmpint (edge_distance (&plain, zebras.origin.x + 1, y, app_grounding_color (1)),
                     <=, 12);
    g_assert_cmpint (edge_distance (&lit, zebras.origin.x + 1, y, app_grounding_color (1)), >,
                     40);
    g_assert_cmpint (color_distance (pixel (&lit, inside_x, inside_y),
                                     pixel (&plain, inside_x, inside_y)), >, 10);
  }
  g_signal_emit_by_name (md, "chip-hovered", -1);
  g_assert_cmpint (app_grounding_view_get_highlight (view), ==, -1);

  /* 3. pointing at a box: its chip stands out in the text */
  g_signal_emit_by_name (view, "ref-hovered", 1);
  g_clear_pointer (&markup, g_free);
  markup = answer_markup (view);
  g_assert_nonnull (strstr (markup, "overline=\"single\""));
  g_assert_cmpint (strstr (markup, "overline") - markup, >, strstr (markup, "sightline-ref:1") - markup);
  g_signal_emit_by_name (view, "ref-hovered", -1);
  g_clear_pointer (&markup, g_free);
  markup = answer_markup (view);
  g_assert_null (strstr (markup, "overline"));

  /* 4. the raw output, on demand */
  g_assert_true (gtk_widget_activate_action (row, "row.show-raw", NULL));
  g_clear_pointer (&markup, g_free);
  markup = answer_markup (view);
  g_assert_nonnull (strstr (markup, "<|det|>[[72, 69, 632, 999], [582, 271, 942, 888]]<|/det|>"));
  g_assert_false (gtk_widget_get_visible (GTK_WIDGET (md)));
  g_assert_true (gtk_widget_activate_action (row, "row.show-raw", NULL));
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (md)));

  /* 5. Copy Boxes as JSON: pixels of the photo */
  {
    GdkClipboard *clipboard = gtk_widget_get_clipboard (row);
    g_autofree char *text = NULL;
    g_autoptr(JsonParser) parser = json_parser_new ();
    g_autoptr(GError) error = NULL;
    JsonArray *boxes, *first;

    gdk_clipboard_set_text (clipboard, "");
    g_assert_true (gtk_widget_activate_action (row, "row.copy-boxes", NULL));
    ui_harness_spin (0.5);
    ui_harness_wait (clipboard_has_json, clipboard, "the clipboard", TIMEOUT_S);
    text = ui_harness_clipboard_text (clipboard, TIMEOUT_S);
    g_assert_true (json_parser_load_from_data (parser, text, -1, &error));
    g_assert_no_error (error);
    boxes = json_node_get_array (json_parser_get_root (parser));
    g_assert_cmpuint (json_array_get_length (boxes), ==, 4);
    g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (boxes, 0),
                                                    "label"), ==, "Two giraffes");
    first = json_object_get_array_member (json_array_get_object_element (boxes, 0), "box");
    /* (int) (72 / 999 * 724), (int) (69 / 999 * 1086), (int) (632 / 999 * 724), 1086 */
    g_assert_cmpint (json_array_get_int_element (first, 0), ==, 52);
    g_assert_cmpint (json_array_get_int_element (first, 1), ==, 75);
    g_assert_cmpint (json_array_get_int_element (first, 2), ==, 458);
    g_assert_cmpint (json_array_get_int_element (first, 3), ==, 1086);
    g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (boxes, 3),
                                                    "label"), ==, "a safari vehicle");
  }

  /* 6. the exported image: the photo's own size, the outlines on its pixels */
  {
    g_autofree char *path = app_chat_store_get_image_path (app_application_get_store (app),
                                                           GIRAFFES);
    GdkTexture *photo = NULL;
    g_autoptr(GdkTexture) drawn = NULL;
    g_auto(Pixels) p = { 0 };

    g = app_grounding_view_get_grounding (view);
    app_thumbnail_load_async (path, 0, NULL, loaded_cb, &photo);
    ui_harness_wait (texture_set, &photo, "the photo", TIMEOUT_S);
    drawn = app_grounding_render (GTK_WIDGET (view), photo, g);
    g_assert_nonnull (drawn);
    pixels_init (&p, drawn);
    g_assert_cmpint (p.width, ==, 724);
    g_assert_cmpint (p.height, ==, 1086);
    /* lines scale with the photo: 2 * 724 / 400 pixels wide from x = 52 */
    assert_color (&p, 53, 600, app_grounding_color (0), "the exported giraffes, left");
    assert_color (&p, 456, 600, app_grounding_color (0), "the exported giraffes, right");
    assert_color (&p, 422, 700, app_grounding_color (0), "the exported second giraffe");
    g_object_unref (photo);
  }

  /* 7. the viewer: fitted, then at 100 % and 200 %, the boxes on the same pixels */
  {
    AppImageViewer *viewer = NULL;
    AppGroundingView *big;
    graphene_rect_t r;
    g_auto(Pixels) p = { 0 };

    g_signal_emit_by_name (md, "chip-activated", 0);
    ui_harness_wait (viewer_ready, &viewer, "the viewer", TIMEOUT_S);
    big = app_image_viewer_get_view (viewer);
    g_assert_cmpint (app_grounding_view_get_highlight (big), ==, 0);
    ui_harness_spin (0.3);
    render_window (GTK_WINDOW (viewer), "grounding-test-viewer.png", &p);
    r = box_in (content (GTK_WINDOW (viewer)), big, 0, 1);
    assert_outline (&p, &r, app_grounding_color (0), "the second giraffe in the viewer");

    app_image_viewer_set_zoom (viewer, 1);
    ui_harness_spin (0.2);
    g_assert_true (app_grounding_view_get_box_bounds (big, 0, 0, &r));
    g_assert_cmpfloat_with_epsilon (r.size.width, 458 - 52, 1e-3);
    g_assert_cmpfloat_with_epsilon (r.size.height, 1086 - 75, 1e-3);
    app_image_viewer_set_zoom (viewer, 2);
    ui_harness_spin (0.2);
    g_assert_true (app_grounding_view_get_box_bounds (big, 0, 0, &r));
    g_assert_cmpfloat_with_epsilon (r.size.width, 2 * (458 - 52), 1e-3);
    g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (big)), ==, 2 * 724);
    gtk_window_destroy (GTK_WINDOW (viewer));
  }

  /* 8. the composer's helpers: Find wraps the phrase, a grounded caption prefixes the tag,
   * and editing a sent question gives back the phrase and the helper */
  {
    AppComposer *composer = APP_COMPOSER (ui_harness_find_widget (GTK_WIDGET (window),
                                                                  APP_TYPE_COMPOSER, 0));
    g_autofree char *find = NULL;
    g_autofree char *caption = NULL;

    g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.find-in-image", NULL));
    g_assert_cmpint (app_composer_get_prompt_kind (composer), ==, APP_PROMPT_FIND);
    app_composer_set_text (composer, "  the giraffe at the back ");
    find = app_composer_get_prompt (composer);
    g_assert_cmpstr (find, ==, "<|ref|>the giraffe at the back<|/ref|>");
    g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.grounded-caption",
                                               NULL));
    g_assert_cmpint (app_composer_get_prompt_kind (composer), ==, APP_PROMPT_GROUNDED_CAPTION);
    caption = app_composer_get_prompt (composer);
    g_assert_cmpstr (caption, ==, "<|grounding|>the giraffe at the back");
    g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.grounded-caption",
                                               NULL));
    g_assert_cmpint (app_composer_get_prompt_kind (composer), ==, APP_PROMPT_PLAIN);
    app_composer_set_prompt (composer, find);
    g_assert_cmpint (app_composer_get_prompt_kind (composer), ==, APP_PROMPT_FIND);
    g_free (caption);
    caption = app_composer_get_text (composer);
    g_assert_cmpstr (caption, ==, "the giraffe at the back");
    app_composer_set_prompt (composer, "");
    g_assert_cmpint (app_composer_get_prompt_kind (composer), ==, APP_PROMPT_PLAIN);
  }

  /* 9. the boxes moved to the corn: drawn there, kept in the chat file, there on reopening */
  {
    AppChatStore *store = app_application_get_store (app);
    g_autofree char *file = g_build_filename (app_chat_store_get_data_dir (store), "chats",
                                              CHAT_ID ".json", NULL);
    g_autofree char *contents = NULL;
    g_autoptr(AppChatStore) reopened = NULL;
    g_autoptr(AppChat) chat = NULL;
    g_autoptr(AppMessage) answer = NULL;
    g_autoptr(GError) error = NULL;

    g_assert_true (gtk_widget_activate_action (row, "row.boxes-image", "s", CORN));
    ui_harness_wait (shows_corn, view, "the boxes on the corn", TIMEOUT_S);
    app_chat_store_flush (store);   /* the chat is written in the background */
    g_assert_true (g_file_get_contents (file, &contents, NULL, &error));
    g_assert_nonnull (strstr (contents, "\"boxes_image\" : \"" CORN "\""));

    reopened = app_chat_store_new (app_chat_store_get_data_dir (store));
    app_chat_store_load (reopened);
    g_assert_cmpuint (app_chat_store_get_load_errors (reopened)->len, ==, 0);
    chat = g_list_model_get_item (app_chat_store_get_chats (reopened), 0);
    answer = app_chat_get_message (chat, 3);
    g_assert_cmpstr (app_message_get_boxes_image (answer), ==, CORN);
    g_assert_nonnull (strstr (app_message_get_text (answer), "<|det|>"));
  }
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *home = ui_harness_isolate ("grounding");
  int rc;

  ui_harness_add_grounding_chat ();
  gtk_test_init (&argc, &argv, NULL);
  app = ui_harness_app_new ();
  g_test_add_func ("/app/ui/grounding", test_boxes);
  rc = g_test_run ();
  g_application_quit (G_APPLICATION (app));
  g_clear_object (&app);
  return rc;
}
