/* app-image-viewer.c - an attached image, shown large in its own window, with an answer's
 * boxes over it when it has some.
 *
 * The picture is decoded off the main thread like every image of the app, with EXIF orientation
 * applied, so it is the picture the model saw and the boxes land where the model meant. It
 * opens fitted to the window, never drawn larger than its own size; the zoom buttons,
 * Ctrl+scroll and Ctrl+plus/minus/0 zoom it in a scrolled view, the boxes following. Zooming
 * keeps the point under the pointer where it is (Ctrl+scroll), or the one in the middle of the
 * window (keys and buttons). The menu saves a copy of the image file or copies the picture,
 * and with boxes saves the picture with them or copies them. Escape closes the window.
 */
#define G_LOG_DOMAIN "sightline-image-viewer"

#include "app-image-viewer.h"

#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

#include "app-grounding-view.h"
#include "app-thumbnail.h"

#define ZOOM_MIN 0.05
#define ZOOM_MAX 16.0
#define ZOOM_STEP 1.25

struct _AppImageViewer
{
  AdwWindow parent_instance;

  AppGroundingView *view;
  GtkScrolledWindow *scroller;
  AdwWindowTitle *title;
  GtkStack *stack;
  AdwStatusPage *error_page;
  AdwToastOverlay *toasts;
  GtkWidget *menu_button;
  GtkWidget *zoom_label;
  char *path;
  char *answer;
  gboolean has_pointer;          /* over the picture, at (pointer_x, pointer_y) of the scroller */
  double pointer_x, pointer_y;
};

G_DEFINE_FINAL_TYPE (AppImageViewer, app_image_viewer, ADW_TYPE_WINDOW)

enum {
  PROP_0,
  PROP_PATH,
  PROP_ZOOM,
  PROP_ANSWER,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* The zoom in use: the fitted scale when fitting. */
static double
current_zoom (AppImageViewer *self)
{
  GdkTexture *texture = app_grounding_view_get_texture (self->view);
  graphene_rect_t image;

  if (app_grounding_view_get_zoom (self->view) > 0)
    return app_grounding_view_get_zoom (self->view);
  if (texture && app_grounding_view_get_image_bounds (self->view, &image))
    return image.size.width / gdk_texture_get_width (texture);
  return 1;
}

static void
update_zoom (AppImageViewer *self)
{
  gboolean fit = app_grounding_view_get_zoom (self->view) == 0;
  g_autofree char *label = NULL;

  /* fitted, the view takes the window's size; zoomed, it takes its own and scrolls */
  gtk_scrolled_window_set_policy (self->scroller, fit ? GTK_POLICY_NEVER : GTK_POLICY_AUTOMATIC,
                                  fit ? GTK_POLICY_NEVER : GTK_POLICY_AUTOMATIC);
  label = fit ? g_strdup (_("Fit")) : g_strdup_printf ("%.0f %%", current_zoom (self) * 100);
  gtk_label_set_text (GTK_LABEL (self->zoom_label), label);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.zoom-fit", !fit);
}

/* The scrolled area of one axis after zooming: the view takes the larger of the zoomed image
 * and the viewport, with the image centred in it (see the grounding view's image_rect), and
 * the point of the image at `image_pos` (its pixels) goes to `at` of the viewport. */
static void
place_axis (GtkAdjustment *adj,
            double         viewport,
            double         image_size,
            double         image_pos,
            double         at)
{
  double content = MAX (image_size, viewport);
  double origin = (content - image_size) / 2;

  gtk_adjustment_configure (adj, CLAMP (origin + image_pos - at, 0, content - viewport), 0,
                            content, viewport * 0.1, viewport * 0.9, viewport);
}

static void
zoom_at (AppImageViewer *self,
         double          zoom,
         double          x,
         double          y)
{
  GdkTexture *texture;
  graphene_rect_t image;
  graphene_point_t p;
  double scale, u, v, width, height;

  zoom = zoom > 0 ? CLAMP (zoom, ZOOM_MIN, ZOOM_MAX) : 0;
  texture = app_grounding_view_get_texture (self->view);
  width = gtk_widget_get_width (GTK_WIDGET (self->scroller));
  height = gtk_widget_get_height (GTK_WIDGET (self->scroller));
  /* the image's point there, in its own pixels, before the zoom changes */
  if (zoom == 0 || !texture || width <= 0 || height <= 0 ||
      !app_grounding_view_get_image_bounds (self->view, &image) ||
      !gtk_widget_compute_point (GTK_WIDGET (self->scroller), GTK_WIDGET (self->view),
                                 &GRAPHENE_POINT_INIT (x, y), &p))
    {
      app_grounding_view_set_zoom (self->view, zoom);
      update_zoom (self);
      return;
    }
  scale = image.size.width / gdk_texture_get_width (texture);
  u = CLAMP ((p.x - image.origin.x) / scale, 0, gdk_texture_get_width (texture));
  v = CLAMP ((p.y - image.origin.y) / scale, 0, gdk_texture_get_height (texture));

  app_grounding_view_set_zoom (self->view, zoom);
  update_zoom (self);
  /* The viewport keeps a value it is given when the bounds allow it: set the bounds the new
   * size will have, with the value that puts the point back under (x, y). The scroll bars
   * overlay the picture, so the viewport is the scroller's size. */
  place_axis (gtk_scrolled_window_get_hadjustment (self->scroller), width,
              ceil (gdk_texture_get_width (texture) * zoom), u * zoom, x);
  place_axis (gtk_scrolled_window_get_vadjustment (self->scroller), height,
              ceil (gdk_texture_get_height (texture) * zoom), v * zoom, y);
}

void
app_image_viewer_zoom_at (AppImageViewer *self,
                          double          zoom,
                          double          x,
                          double          y)
{
  double before;

  g_return_if_fail (APP_IS_IMAGE_VIEWER (self));

  before = app_grounding_view_get_zoom (self->view);
  zoom_at (self, zoom, x, y);
  /* once the scroll bars are in place: a handler sees the zoom as it is shown */
  if (app_grounding_view_get_zoom (self->view) != before)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ZOOM]);
}

double
app_image_viewer_get_zoom (AppImageViewer *self)
{
  g_return_val_if_fail (APP_IS_IMAGE_VIEWER (self), 0);

  return app_grounding_view_get_zoom (self->view);
}

void
app_image_viewer_set_zoom (AppImageViewer *self,
                           double          zoom)
{
  g_return_if_fail (APP_IS_IMAGE_VIEWER (self));

  app_image_viewer_zoom_at (self, zoom, gtk_widget_get_width (GTK_WIDGET (self->scroller)) / 2.0,
                            gtk_widget_get_height (GTK_WIDGET (self->scroller)) / 2.0);
}

static void
zoom_action (GtkWidget  *widget,
             const char *name,
             GVariant   *param)
{
  AppImageViewer *self = APP_IMAGE_VIEWER (widget);

  if (g_str_equal (name, "viewer.zoom-in"))
    app_image_viewer_set_zoom (self, current_zoom (self) * ZOOM_STEP);
  else if (g_str_equal (name, "viewer.zoom-out"))
    app_image_viewer_set_zoom (self, current_zoom (self) / ZOOM_STEP);
  else if (g_str_equal (name, "viewer.zoom-original"))
    app_image_viewer_set_zoom (self, 1);
  else
    app_image_viewer_set_zoom (self, 0);
}

static void
pointer_motion_cb (GtkEventControllerMotion *motion,
                   double                    x,
                   double                    y,
                   AppImageViewer           *self)
{
  self->has_pointer = TRUE;
  self->pointer_x = x;
  self->pointer_y = y;
}

static void
pointer_leave_cb (GtkEventControllerMotion *motion,
                  AppImageViewer           *self)
{
  self->has_pointer = FALSE;
}

static gboolean
scroll_cb (GtkEventControllerScroll *scroll,
           double                    dx,
           double                    dy,
           AppImageViewer           *self)
{
  GdkModifierType state =
    gtk_event_controller_get_current_event_state (GTK_EVENT_CONTROLLER (scroll));
  double zoom;

  if (!(state & GDK_CONTROL_MASK) || dy == 0)
    return FALSE;
  zoom = current_zoom (self) * (dy < 0 ? ZOOM_STEP : 1 / ZOOM_STEP);
  if (self->has_pointer)
    app_image_viewer_zoom_at (self, zoom, self->pointer_x, self->pointer_y);
  else
    app_image_viewer_set_zoom (self, zoom);
  return TRUE;
}

/* ------------------------------------------------------------------------------------------
 * Save and copy
 */

static void
toast (AppImageViewer *self,
       const char     *text)
{
  g_autofree char *markup = NULL;

  /* a copy saved after the window was closed says nothing */
  if (!self->toasts)
    return;
  markup = g_markup_escape_text (text, -1);
  adw_toast_overlay_add_toast (self->toasts, adw_toast_new (markup));
}

static void
copy_image_action (GtkWidget  *widget,
                   const char *name,
                   GVariant   *param)
{
  AppImageViewer *self = APP_IMAGE_VIEWER (widget);
  GdkTexture *texture = app_grounding_view_get_texture (self->view);

  if (!texture)
    return;
  gdk_clipboard_set_texture (gtk_widget_get_clipboard (widget), texture);
  toast (self, _("Image copied"));
}

static void
saved_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  g_autoptr(AppImageViewer) self = user_data;
  g_autoptr(GError) error = NULL;

  if (g_file_copy_finish (G_FILE (source), result, &error))
    {
      toast (self, _("Image saved"));
    }
  else
    {
      g_autofree char *message = g_strdup_printf (_("The image could not be saved: %s"),
                                                  error->message);

      toast (self, message);
    }
}

void
app_image_viewer_save_to (AppImageViewer *self,
                          GFile          *destination)
{
  g_autoptr(GFile) source = NULL;

  g_return_if_fail (APP_IS_IMAGE_VIEWER (self));
  g_return_if_fail (G_IS_FILE (destination));

  /* the file as it was attached, byte for byte; the chooser asked before replacing */
  source = g_file_new_for_path (self->path);
  g_file_copy_async (source, destination, G_FILE_COPY_OVERWRITE, G_PRIORITY_DEFAULT, NULL,
                     NULL, NULL, saved_cb, g_object_ref (self));
}

static void
save_response_cb (GtkNativeDialog *dialog,
                  int              response,
                  AppImageViewer  *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) destination = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));

      if (destination)
        app_image_viewer_save_to (self, destination);
    }
  g_object_unref (dialog);
  g_object_unref (self);
}

static void
save_image_action (GtkWidget  *widget,
                   const char *name,
                   GVariant   *param)
{
  AppImageViewer *self = APP_IMAGE_VIEWER (widget);
  GtkFileChooserNative *chooser =
    gtk_file_chooser_native_new (_("Save Image"), GTK_WINDOW (self),
                                 GTK_FILE_CHOOSER_ACTION_SAVE, _("_Save"), _("_Cancel"));
  const char *ext = strrchr (self->path, '.');
  /* TRANSLATORS: the suggested file name of a saved image, before its extension */
  g_autofree char *suggested = g_strconcat (_("Image"), ext && !strchr (ext, '/') ? ext : "",
                                            NULL);

  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (chooser), suggested);
  g_signal_connect (chooser, "response", G_CALLBACK (save_response_cb), g_object_ref (self));
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

/* Ctrl+S: the picture with its boxes when there are some, else the image. */
static gboolean
save_shortcut_cb (GtkWidget *widget,
                  GVariant  *args,
                  gpointer   user_data)
{
  if (APP_IMAGE_VIEWER (widget)->answer &&
      gtk_widget_activate_action (widget, "viewer.save-boxes", NULL))
    return TRUE;
  return gtk_widget_activate_action (widget, "viewer.save-image", NULL);
}

static void
export_action (GtkWidget  *widget,
               const char *name,
               GVariant   *param)
{
  AppImageViewer *self = APP_IMAGE_VIEWER (widget);

  if (!self->answer)
    return;
  if (g_str_equal (name, "viewer.copy-boxes"))
    app_grounding_copy_boxes (GTK_WIDGET (self->view), self->path, self->answer);
  else
    app_grounding_save_image (GTK_WIDGET (self->view), self->path, self->answer);
}

static void
loaded_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  g_autoptr(AppImageViewer) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) texture = app_thumbnail_load_finish (result, &error);
  g_autofree char *size = NULL;

  /* closed while it loaded */
  if (!self->view)
    return;
  if (!texture)
    {
      adw_status_page_set_description (self->error_page, error->message);
      gtk_stack_set_visible_child_name (self->stack, "error");
      return;
    }
  app_grounding_view_set_texture (self->view, texture);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.copy-image", TRUE);
  size = g_strdup_printf (_("%d × %d pixels"), gdk_texture_get_width (texture),
                          gdk_texture_get_height (texture));
  adw_window_title_set_subtitle (self->title, size);
  gtk_stack_set_visible_child_name (self->stack, "picture");
}

/* The image's own entries, then those of its boxes when it has some. */
static void
update_menu (AppImageViewer *self,
             gboolean        boxes)
{
  g_autoptr(GMenu) menu = g_menu_new ();
  g_autoptr(GMenu) image = g_menu_new ();

  g_menu_append (image, _("_Save Image As…"), "viewer.save-image");
  g_menu_append (image, _("_Copy Image"), "viewer.copy-image");
  g_menu_append_section (menu, NULL, G_MENU_MODEL (image));
  if (boxes)
    {
      g_autoptr(GMenu) with_boxes = g_menu_new ();

      g_menu_append (with_boxes, _("_Save Image with Boxes…"), "viewer.save-boxes");
      g_menu_append (with_boxes, _("_Copy Boxes as JSON"), "viewer.copy-boxes");
      g_menu_append_section (menu, NULL, G_MENU_MODEL (with_boxes));
    }
  gtk_menu_button_set_menu_model (GTK_MENU_BUTTON (self->menu_button), G_MENU_MODEL (menu));
}

AppImageViewer *
app_image_viewer_new (GtkWindow  *parent,
                      const char *path)
{
  return g_object_new (APP_TYPE_IMAGE_VIEWER, "transient-for", parent, "application",
                       parent ? gtk_window_get_application (parent) : NULL, "path", path, NULL);
}

void
app_image_viewer_set_answer (AppImageViewer *self,
                             const char     *answer,
                             int             highlight)
{
  const AppGrounding *grounding;
  gboolean boxes;

  g_return_if_fail (APP_IS_IMAGE_VIEWER (self));

  if (g_strcmp0 (self->answer, answer) != 0)
    {
      g_free (self->answer);
      self->answer = g_strdup (answer);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ANSWER]);
    }
  app_grounding_view_set_answer (self->view, answer, FALSE);
  app_grounding_view_set_highlight (self->view, highlight);
  grounding = app_grounding_view_get_grounding (self->view);
  boxes = grounding && grounding->n_boxes > 0;
  update_menu (self, boxes);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.copy-boxes", boxes);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.save-boxes", boxes);
}

const char *
app_image_viewer_get_answer (AppImageViewer *self)
{
  g_return_val_if_fail (APP_IS_IMAGE_VIEWER (self), NULL);

  return self->answer;
}

AppGroundingView *
app_image_viewer_get_view (AppImageViewer *self)
{
  g_return_val_if_fail (APP_IS_IMAGE_VIEWER (self), NULL);

  return self->view;
}

static void
app_image_viewer_constructed (GObject *object)
{
  AppImageViewer *self = APP_IMAGE_VIEWER (object);

  G_OBJECT_CLASS (app_image_viewer_parent_class)->constructed (object);

  /* at its own size: the viewer zooms up to 100 % and beyond */
  app_thumbnail_load_async (self->path, 0, NULL, loaded_cb, g_object_ref (self));
}

static void
app_image_viewer_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), APP_TYPE_IMAGE_VIEWER);
  G_OBJECT_CLASS (app_image_viewer_parent_class)->dispose (object);
}

static void
app_image_viewer_finalize (GObject *object)
{
  AppImageViewer *self = APP_IMAGE_VIEWER (object);

  g_free (self->path);
  g_free (self->answer);
  G_OBJECT_CLASS (app_image_viewer_parent_class)->finalize (object);
}

static void
app_image_viewer_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  AppImageViewer *self = APP_IMAGE_VIEWER (object);

  switch (prop_id)
    {
    case PROP_PATH:
      g_value_set_string (value, self->path);
      break;
    case PROP_ZOOM:
      g_value_set_double (value, app_image_viewer_get_zoom (self));
      break;
    case PROP_ANSWER:
      g_value_set_string (value, self->answer);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_image_viewer_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  AppImageViewer *self = APP_IMAGE_VIEWER (object);

  switch (prop_id)
    {
    case PROP_PATH:
      self->path = g_value_dup_string (value);
      break;
    case PROP_ZOOM:
      app_image_viewer_set_zoom (self, g_value_get_double (value));
      break;
    case PROP_ANSWER:
      app_image_viewer_set_answer (self, g_value_get_string (value),
                                   app_grounding_view_get_highlight (self->view));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_image_viewer_class_init (AppImageViewerClass *klass)
{
  static const struct { const char *name; } actions[] = {
    { "viewer.zoom-in" }, { "viewer.zoom-out" }, { "viewer.zoom-original" },
    { "viewer.zoom-fit" }, { "viewer.copy-boxes" }, { "viewer.save-boxes" },
  };
  static const struct { guint key; const char *action; } keys[] = {
    { GDK_KEY_plus, "viewer.zoom-in" }, { GDK_KEY_equal, "viewer.zoom-in" },
    { GDK_KEY_KP_Add, "viewer.zoom-in" }, { GDK_KEY_minus, "viewer.zoom-out" },
    { GDK_KEY_KP_Subtract, "viewer.zoom-out" }, { GDK_KEY_0, "viewer.zoom-fit" },
    { GDK_KEY_1, "viewer.zoom-original" }, { GDK_KEY_c, "viewer.copy-image" },
  };
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->constructed = app_image_viewer_constructed;
  object_class->dispose = app_image_viewer_dispose;
  object_class->finalize = app_image_viewer_finalize;
  object_class->get_property = app_image_viewer_get_property;
  object_class->set_property = app_image_viewer_set_property;

  /* the image file shown, and saved by Save Image As… */
  properties[PROP_PATH] =
    g_param_spec_string ("path", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /* 0: fitted to the window */
  properties[PROP_ZOOM] =
    g_param_spec_double ("zoom", NULL, NULL, 0, ZOOM_MAX, 0,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /* the finished answer whose boxes are drawn over the image */
  properties[PROP_ANSWER] =
    g_param_spec_string ("answer", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "window.close", NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (actions); i++)
    gtk_widget_class_install_action (widget_class, actions[i].name, NULL,
                                     g_str_has_suffix (actions[i].name, "-boxes")
                                       ? export_action : zoom_action);
  gtk_widget_class_install_action (widget_class, "viewer.save-image", NULL, save_image_action);
  gtk_widget_class_install_action (widget_class, "viewer.copy-image", NULL, copy_image_action);
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    gtk_widget_class_add_binding_action (widget_class, keys[i].key, GDK_CONTROL_MASK,
                                         keys[i].action, NULL);
  gtk_widget_class_add_binding (widget_class, GDK_KEY_s, GDK_CONTROL_MASK, save_shortcut_cb,
                                NULL);

  g_type_ensure (APP_TYPE_GROUNDING_VIEW);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/sightline/Sightline/app-image-viewer.ui");
  gtk_widget_class_bind_template_child (widget_class, AppImageViewer, view);
  gtk_widget_class_bind_template_child (widget_class, AppImageViewer, scroller);
  gtk_widget_class_bind_template_child (widget_class, AppImageViewer, title);
  gtk_widget_class_bind_template_child (widget_class, AppImageViewer, stack);
  gtk_widget_class_bind_template_child (widget_class, AppImageViewer, error_page);
  gtk_widget_class_bind_template_child (widget_class, AppImageViewer, toasts);
  gtk_widget_class_bind_template_child (widget_class, AppImageViewer, menu_button);
  gtk_widget_class_bind_template_child (widget_class, AppImageViewer, zoom_label);
  gtk_widget_class_bind_template_callback (widget_class, scroll_cb);
  gtk_widget_class_bind_template_callback (widget_class, pointer_motion_cb);
  gtk_widget_class_bind_template_callback (widget_class, pointer_leave_cb);
}

static void
app_image_viewer_init (AppImageViewer *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  update_menu (self, FALSE);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.copy-image", FALSE);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.copy-boxes", FALSE);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.save-boxes", FALSE);
  update_zoom (self);
}
