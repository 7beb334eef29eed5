/* app-thumbnail.h - images decoded off the main thread into textures, with a small cache, and
 * the bounded thumbnail that shows them in the conversation and the question box. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

/* Decodes `path` in a worker thread the way the engine does (EXIF orientation applied, the same
 * size limits), scaled to fit `size` x `size` pixels, or full size when size is 0. A file that
 * cannot be decoded fails with an IMAGE_FILE_ERROR (image-file.h), whose code tells a missing
 * image from a damaged or oversized one. */
void             app_thumbnail_load_async      (const char      *path,
                                                int              size,
                                                GCancellable    *cancellable,
                                                GAsyncReadyCallback callback,
                                                gpointer         user_data);
GdkTexture      *app_thumbnail_load_finish     (GAsyncResult    *result,
                                                GError         **error);

/* Shows the image at `path` in `picture` once it is decoded (a cached texture at once). */
void             app_thumbnail_set_picture     (GtkPicture      *picture,
                                                const char      *path,
                                                int              size);

/* A thumbnail of bounded size: `height` pixels high and as wide as the image's aspect ratio
 * makes it, from half its height to `max_width`, the picture cropped to fill it. It may be
 * given less width, down to its height (a square crop), so a row of thumbnails can shrink to
 * a narrow window. Until the image is decoded it is a square. */
#define APP_TYPE_THUMBNAIL (app_thumbnail_get_type ())
G_DECLARE_FINAL_TYPE (AppThumbnail, app_thumbnail, APP, THUMBNAIL, GtkWidget)

GtkWidget       *app_thumbnail_new             (const char      *path,
                                                int              height,
                                                int              max_width);
/* The image to show; NULL for none yet (an import still running). */
void             app_thumbnail_set_path        (AppThumbnail    *self,
                                                const char      *path);
const char      *app_thumbnail_get_path        (AppThumbnail    *self);
GtkPicture      *app_thumbnail_get_picture     (AppThumbnail    *self);

G_END_DECLS
