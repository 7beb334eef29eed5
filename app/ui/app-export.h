/* app-export.h - a chat written out of Sightline: as Markdown with its images, or as JSON. */
#pragma once

#include <gtk/gtk.h>

#include "app-chat-store.h"

G_BEGIN_DECLS

typedef enum {
  APP_EXPORT_MARKDOWN,   /* <name>.md, its images in "<name> images/" beside it */
  APP_EXPORT_JSON,       /* the chat file's content */
} AppExportFormat;

/* The Markdown of `chat`: its title, then each message under its author, images linked as
 * `images_dir`/image-N.<ext> (numbered in order of appearance). `image_ids` (may be NULL)
 * receives the image ids in that order. */
char            *app_export_markdown           (AppChat         *chat,
                                                const char      *images_dir,
                                                GPtrArray       *image_ids);

/* Writes `chat` to `file` in a worker thread (the images copied from `store` beside it, for
 * Markdown). Finishes with the file's name as the person knows it. */
void             app_export_async              (AppChatStore    *store,
                                                AppChat         *chat,
                                                AppExportFormat  format,
                                                GFile           *file,
                                                GCancellable    *cancellable,
                                                GAsyncReadyCallback callback,
                                                gpointer         user_data);
char            *app_export_finish             (GAsyncResult    *result,
                                                GError         **error);

/* Asks where to write (a save dialog on `parent`), then app_export_async(). Closing the dialog
 * finishes with G_IO_ERROR_CANCELLED. */
void             app_export_run                (GtkWindow       *parent,
                                                AppChatStore    *store,
                                                AppChat         *chat,
                                                AppExportFormat  format,
                                                GAsyncReadyCallback callback,
                                                gpointer         user_data);

G_END_DECLS
