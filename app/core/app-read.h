/* app-read.h - a stream read to its end, with a limit: pasted and dropped pictures in the app,
 * image URLs in vl2-server. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Reads `stream` to its end in the background, in chunks. More than `max_bytes` fails with
 * G_IO_ERROR_MESSAGE_TOO_LARGE as soon as the chunk that passes the limit arrives; the rest is
 * never read. The limit is at most G_MAXUINT (4 GiB - 1). */
void    app_read_all_async  (GInputStream        *stream,
                             gsize                max_bytes,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data);
GBytes *app_read_all_finish (GInputStream        *stream,
                             GAsyncResult        *result,
                             GError             **error);

G_END_DECLS
