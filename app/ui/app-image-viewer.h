/* app-image-viewer.h - an attached image, shown large in its own window. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define APP_TYPE_IMAGE_VIEWER (app_image_viewer_get_type ())
G_DECLARE_FINAL_TYPE (AppImageViewer, app_image_viewer, APP, IMAGE_VIEWER, AdwWindow)

AppImageViewer  *app_image_viewer_new          (GtkWindow       *parent,
                                                const char      *path);

G_END_DECLS
