/* app-image-viewer.h - an attached image, shown large in its own window, with an answer's
 * boxes over it when it has some. */
#pragma once

#include <adwaita.h>

#include "app-grounding-view.h"

G_BEGIN_DECLS

#define APP_TYPE_IMAGE_VIEWER (app_image_viewer_get_type ())
G_DECLARE_FINAL_TYPE (AppImageViewer, app_image_viewer, APP, IMAGE_VIEWER, AdwWindow)

AppImageViewer  *app_image_viewer_new          (GtkWindow       *parent,
                                                const char      *path);
/* Draws the boxes of `answer` (a finished model answer, the "answer" property) over the image,
 * refs[highlight] standing out (-1: none), and offers to save or copy them. */
void             app_image_viewer_set_answer   (AppImageViewer  *self,
                                                const char      *answer,
                                                int              highlight);
const char      *app_image_viewer_get_answer   (AppImageViewer  *self);
/* 0 fits the image to the window; otherwise logical pixels per image pixel (the "zoom"
 * property). The point in the middle of the window stays where it is. */
void             app_image_viewer_set_zoom     (AppImageViewer  *self,
                                                double           zoom);
double           app_image_viewer_get_zoom     (AppImageViewer  *self);
/* The same, keeping the picture's point at (x, y) of the picture's area (under the pointer, for
 * Ctrl+scroll) where it is, as far as the picture's edges allow. */
void             app_image_viewer_zoom_at      (AppImageViewer  *self,
                                                double           zoom,
                                                double           x,
                                                double           y);
/* Writes a copy of the image file, as it was attached, to `destination` (what Save Image As…
 * does once the person chose it), and says in a toast how it went. */
void             app_image_viewer_save_to      (AppImageViewer  *self,
                                                GFile           *destination);
AppGroundingView *app_image_viewer_get_view    (AppImageViewer  *self);

G_END_DECLS
