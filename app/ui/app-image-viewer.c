/* app-image-viewer.c - an attached image, shown large in its own window.
 *
 * The picture is decoded off the main thread like every image of the app, with EXIF orientation
 * applied, so it is the picture the model saw. Escape closes the window.
 */
#include "app-image-viewer.h"

#include <glib/gi18n.h>

#include "app-thumbnail.h"

struct _AppImageViewer
{
  AdwWindow parent_instance;

  GtkPicture *picture;
  AdwWindowTitle *title;
  GtkStack *stack;
  AdwStatusPage *error_page;
  char *path;
};

G_DEFINE_FINAL_TYPE (AppImageViewer, app_image_viewer, ADW_TYPE_WINDOW)

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
  gtk_picture_set_paintable (self->picture, GDK_PAINTABLE (texture));
  size = g_strdup_printf (_("%d × %d pixels"), gdk_texture_get_width (texture),
                          gdk_texture_get_height (texture));
  adw_window_title_set_subtitle (self->title, size);
  gtk_stack_set_visible_child_name (self->stack, "picture");
}

AppImageViewer *
app_image_viewer_new (GtkWindow  *parent,
                      const char *path)
{
  AppImageViewer *self = g_object_new (APP_TYPE_IMAGE_VIEWER, "transient-for", parent, NULL);

  self->path = g_strdup (path);
  app_thumbnail_load_async (path, 0, NULL, loaded_cb, g_object_ref (self));
  return self;
}

static void
app_image_viewer_finalize (GObject *object)
{
  AppImageViewer *self = APP_IMAGE_VIEWER (object);

  g_free (self->path);
  G_OBJECT_CLASS (app_image_viewer_parent_class)->finalize (object);
}

static void
app_image_viewer_class_init (AppImageViewerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->finalize = app_image_viewer_finalize;
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "window.close", NULL);
}

static void
app_image_viewer_init (AppImageViewer *self)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  GtkWidget *header = adw_header_bar_new ();

  gtk_window_set_title (GTK_WINDOW (self), _("Image"));
  gtk_window_set_default_size (GTK_WINDOW (self), 900, 700);
  gtk_window_set_modal (GTK_WINDOW (self), FALSE);

  self->title = ADW_WINDOW_TITLE (adw_window_title_new (_("Image"), NULL));
  adw_header_bar_set_title_widget (ADW_HEADER_BAR (header), GTK_WIDGET (self->title));
  gtk_box_append (GTK_BOX (box), header);

  self->stack = GTK_STACK (gtk_stack_new ());
  gtk_widget_set_vexpand (GTK_WIDGET (self->stack), TRUE);
  gtk_stack_add_named (self->stack, gtk_spinner_new (), "loading");
  gtk_spinner_start (GTK_SPINNER (gtk_stack_get_child_by_name (self->stack, "loading")));

  self->picture = GTK_PICTURE (gtk_picture_new ());
  gtk_picture_set_can_shrink (self->picture, TRUE);
  gtk_picture_set_content_fit (self->picture, GTK_CONTENT_FIT_CONTAIN);
  gtk_widget_set_margin_start (GTK_WIDGET (self->picture), 12);
  gtk_widget_set_margin_end (GTK_WIDGET (self->picture), 12);
  gtk_widget_set_margin_bottom (GTK_WIDGET (self->picture), 12);
  gtk_stack_add_named (self->stack, GTK_WIDGET (self->picture), "picture");

  self->error_page = ADW_STATUS_PAGE (adw_status_page_new ());
  adw_status_page_set_icon_name (self->error_page, "image-missing-symbolic");
  adw_status_page_set_title (self->error_page, _("Cannot Show This Image"));
  gtk_stack_add_named (self->stack, GTK_WIDGET (self->error_page), "error");

  gtk_box_append (GTK_BOX (box), GTK_WIDGET (self->stack));
  adw_window_set_content (ADW_WINDOW (self), box);
}
