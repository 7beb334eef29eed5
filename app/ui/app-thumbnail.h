/* app-thumbnail.h - images decoded off the main thread into textures, with a small cache. */
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

G_END_DECLS
