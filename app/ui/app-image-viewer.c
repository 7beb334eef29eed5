/* app-image-viewer.c - an attached image, shown large in its own window, with an answer's
 * boxes over it when it has some.
 *
 * The picture is decoded off the main thread like every image of the app, with EXIF orientation
 * applied, so it is the picture the model saw and the boxes land where the model meant. It
 * opens fitted to the window; the zoom buttons, Ctrl+scroll and Ctrl+plus/minus/0 zoom it in
 * a scrolled view, the boxes following. Escape closes the window.
 */
#include "app-image-viewer.h"

#include <glib/gi18n.h>

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
  GtkWidget *boxes_menu;
  GtkWidget *zoom_label;
  char *path;
  char *answer;
};

G_DEFINE_FINAL_TYPE (AppImageViewer, app_image_viewer, ADW_TYPE_WINDOW)

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

void
app_image_viewer_set_zoom (AppImageViewer *self,
                           double          zoom)
{
  g_return_if_fail (APP_IS_IMAGE_VIEWER (self));

  app_grounding_view_set_zoom (self->view, zoom > 0 ? CLAMP (zoom, ZOOM_MIN, ZOOM_MAX) : 0);
  update_zoom (self);
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

static gboolean
scroll_cb (GtkEventControllerScroll *scroll,
           double                    dx,
           double                    dy,
           AppImageViewer           *self)
{
  GdkModifierType state =
    gtk_event_controller_get_current_event_state (GTK_EVENT_CONTROLLER (scroll));

  if (!(state & GDK_CONTROL_MASK) || dy == 0)
    return FALSE;
  app_image_viewer_set_zoom (self, current_zoom (self) * (dy < 0 ? ZOOM_STEP : 1 / ZOOM_STEP));
  return TRUE;
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

  if (!texture)
    {
      adw_status_page_set_description (self->error_page, error->message);
      gtk_stack_set_visible_child_name (self->stack, "error");
      return;
    }
  app_grounding_view_set_texture (self->view, texture);
  size = g_strdup_printf (_("%d × %d pixels"), gdk_texture_get_width (texture),
                          gdk_texture_get_height (texture));
  adw_window_title_set_subtitle (self->title, size);
  gtk_stack_set_visible_child_name (self->stack, "picture");
}

AppImageViewer *
app_image_viewer_new (GtkWindow  *parent,
                      const char *path)
{
  AppImageViewer *self = g_object_new (APP_TYPE_IMAGE_VIEWER, "transient-for", parent,
                                       "application",
                                       parent ? gtk_window_get_application (parent) : NULL,
                                       NULL);

  self->path = g_strdup (path);
  app_thumbnail_load_async (path, 0, NULL, loaded_cb, g_object_ref (self));
  return self;
}

void
app_image_viewer_set_answer (AppImageViewer *self,
                             const char     *answer,
                             int             highlight)
{
  const AppGrounding *grounding;
  gboolean boxes;

  g_return_if_fail (APP_IS_IMAGE_VIEWER (self));

  g_free (self->answer);
  self->answer = g_strdup (answer);
  app_grounding_view_set_answer (self->view, answer, FALSE);
  app_grounding_view_set_highlight (self->view, highlight);
  grounding = app_grounding_view_get_grounding (self->view);
  boxes = grounding && grounding->n_boxes > 0;
  gtk_widget_set_visible (self->boxes_menu, boxes);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.copy-boxes", boxes);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.save-boxes", boxes);
}

AppGroundingView *
app_image_viewer_get_view (AppImageViewer *self)
{
  g_return_val_if_fail (APP_IS_IMAGE_VIEWER (self), NULL);

  return self->view;
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
    { GDK_KEY_1, "viewer.zoom-original" }, { GDK_KEY_s, "viewer.save-boxes" },
  };
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->finalize = app_image_viewer_finalize;
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "window.close", NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (actions); i++)
    gtk_widget_class_install_action (widget_class, actions[i].name, NULL,
                                     g_str_has_suffix (actions[i].name, "-boxes")
                                       ? export_action : zoom_action);
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    gtk_widget_class_add_binding_action (widget_class, keys[i].key, GDK_CONTROL_MASK,
                                         keys[i].action, NULL);
}

static GtkWidget *
header_button (const char *icon,
               const char *action,
               const char *tooltip)
{
  GtkWidget *b = gtk_button_new_from_icon_name (icon);

  gtk_actionable_set_action_name (GTK_ACTIONABLE (b), action);
  gtk_widget_set_tooltip_text (b, tooltip);
  gtk_accessible_update_property (GTK_ACCESSIBLE (b), GTK_ACCESSIBLE_PROPERTY_LABEL, tooltip, -1);
  return b;
}

static void
app_image_viewer_init (AppImageViewer *self)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  GtkWidget *header = adw_header_bar_new ();
  GtkWidget *zoom = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 2);
  GtkWidget *overlay = adw_toast_overlay_new ();
  GtkEventController *scroll;
  g_autoptr(GMenu) menu = g_menu_new ();

  gtk_window_set_title (GTK_WINDOW (self), _("Image"));
  gtk_window_set_default_size (GTK_WINDOW (self), 900, 700);
  gtk_window_set_modal (GTK_WINDOW (self), FALSE);

  self->title = ADW_WINDOW_TITLE (adw_window_title_new (_("Image"), NULL));
  adw_header_bar_set_title_widget (ADW_HEADER_BAR (header), GTK_WIDGET (self->title));

  gtk_box_append (GTK_BOX (zoom), header_button ("zoom-out-symbolic", "viewer.zoom-out",
                                                 _("Zoom Out")));
  self->zoom_label = gtk_label_new (NULL);
  gtk_label_set_width_chars (GTK_LABEL (self->zoom_label), 5);
  gtk_widget_add_css_class (self->zoom_label, "numeric");
  gtk_box_append (GTK_BOX (zoom), self->zoom_label);
  gtk_box_append (GTK_BOX (zoom), header_button ("zoom-in-symbolic", "viewer.zoom-in",
                                                 _("Zoom In")));
  gtk_box_append (GTK_BOX (zoom), header_button ("zoom-fit-best-symbolic", "viewer.zoom-fit",
                                                 _("Best Fit")));
  adw_header_bar_pack_start (ADW_HEADER_BAR (header), zoom);

  g_menu_append (menu, _("_Save Image with Boxes…"), "viewer.save-boxes");
  g_menu_append (menu, _("_Copy Boxes as JSON"), "viewer.copy-boxes");
  self->boxes_menu = gtk_menu_button_new ();
  gtk_menu_button_set_icon_name (GTK_MENU_BUTTON (self->boxes_menu), "view-more-symbolic");
  gtk_menu_button_set_menu_model (GTK_MENU_BUTTON (self->boxes_menu), G_MENU_MODEL (menu));
  gtk_widget_set_tooltip_text (self->boxes_menu, _("Boxes"));
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->boxes_menu),
                                  GTK_ACCESSIBLE_PROPERTY_LABEL, _("Boxes"), -1);
  gtk_widget_set_visible (self->boxes_menu, FALSE);
  adw_header_bar_pack_end (ADW_HEADER_BAR (header), self->boxes_menu);
  gtk_box_append (GTK_BOX (box), header);

  self->stack = GTK_STACK (gtk_stack_new ());
  gtk_widget_set_vexpand (GTK_WIDGET (self->stack), TRUE);
  gtk_stack_add_named (self->stack, gtk_spinner_new (), "loading");
  gtk_spinner_start (GTK_SPINNER (gtk_stack_get_child_by_name (self->stack, "loading")));

  self->view = app_grounding_view_new ();
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->view), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _("Image"), -1);
  self->scroller = GTK_SCROLLED_WINDOW (gtk_scrolled_window_new ());
  gtk_scrolled_window_set_child (self->scroller, GTK_WIDGET (self->view));
  scroll = gtk_event_controller_scroll_new (GTK_EVENT_CONTROLLER_SCROLL_VERTICAL);
  gtk_event_controller_set_propagation_phase (scroll, GTK_PHASE_CAPTURE);
  g_signal_connect (scroll, "scroll", G_CALLBACK (scroll_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self->scroller), scroll);
  gtk_stack_add_named (self->stack, GTK_WIDGET (self->scroller), "picture");

  self->error_page = ADW_STATUS_PAGE (adw_status_page_new ());
  adw_status_page_set_icon_name (self->error_page, "image-missing-symbolic");
  adw_status_page_set_title (self->error_page, _("Cannot Show This Image"));
  gtk_stack_add_named (self->stack, GTK_WIDGET (self->error_page), "error");

  gtk_box_append (GTK_BOX (box), GTK_WIDGET (self->stack));
  adw_toast_overlay_set_child (ADW_TOAST_OVERLAY (overlay), box);
  adw_window_set_content (ADW_WINDOW (self), overlay);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.copy-boxes", FALSE);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "viewer.save-boxes", FALSE);
  update_zoom (self);
}
