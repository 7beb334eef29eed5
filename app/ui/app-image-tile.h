/* app-image-tile.h - one image of a message: a thumbnail that opens it or, when its file is
 * gone, a tile that says so and offers Remove and Replace…. */
#pragma once

#include <gtk/gtk.h>

#include "app-chat-store.h"

G_BEGIN_DECLS

#define APP_TYPE_IMAGE_TILE (app_image_tile_get_type ())
G_DECLARE_FINAL_TYPE (AppImageTile, app_image_tile, APP, IMAGE_TILE, GtkWidget)

/* Signals: "open" when the thumbnail is clicked, "remove" and "replace" from the missing
 * tile's buttons. Property "missing": the file is not there (known once it was looked for). */
AppImageTile    *app_image_tile_new            (const char      *path,
                                                int              size);
const char      *app_image_tile_get_path       (AppImageTile    *self);
gboolean         app_image_tile_get_missing    (AppImageTile    *self);
void             app_image_tile_set_label      (AppImageTile    *self,
                                                const char      *label);
const char      *app_image_tile_get_label      (AppImageTile    *self);

/* Copies an image file into the store once it decodes as the engine will read it, in a worker
 * thread; finishes with its id, held for the caller (app_chat_store_release_image()). */
void             app_image_import_async        (AppChatStore    *store,
                                                GFile           *file,
                                                GCancellable    *cancellable,
                                                GAsyncReadyCallback callback,
                                                gpointer         user_data);
char            *app_image_import_finish       (GAsyncResult    *result,
                                                GError         **error);

G_END_DECLS
