/* app-read.c - see app-read.h. */
#include "app-read.h"

#define CHUNK (64 * 1024)

typedef struct
{
  GByteArray *data;
  gsize       max_bytes;
} ReadAll;

static void
read_all_free (gpointer p)
{
  ReadAll *r = p;

  g_clear_pointer (&r->data, g_byte_array_unref);
  g_free (r);
}

static void read_chunk_cb (GObject *source, GAsyncResult *result, gpointer user_data);

static void
read_chunk (GTask *task)
{
  g_input_stream_read_bytes_async (g_task_get_source_object (task), CHUNK,
                                   g_task_get_priority (task), g_task_get_cancellable (task),
                                   read_chunk_cb, task);
}

static void
read_chunk_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  ReadAll *r = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr(GBytes) chunk = g_input_stream_read_bytes_finish (G_INPUT_STREAM (source), result,
                                                              &error);
  gsize n;

  if (chunk == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  n = g_bytes_get_size (chunk);
  if (n == 0)
    {
      g_task_return_pointer (task, g_byte_array_free_to_bytes (g_steal_pointer (&r->data)),
                             (GDestroyNotify) g_bytes_unref);
      return;
    }
  if (n > r->max_bytes - r->data->len)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                               "more than %" G_GSIZE_FORMAT " bytes", r->max_bytes);
      return;
    }
  g_byte_array_append (r->data, g_bytes_get_data (chunk, NULL), (guint) n);
  read_chunk (g_steal_pointer (&task));
}

void
app_read_all_async (GInputStream        *stream,
                    gsize                max_bytes,
                    GCancellable        *cancellable,
                    GAsyncReadyCallback  callback,
                    gpointer             user_data)
{
  GTask *task;
  ReadAll *r;

  g_return_if_fail (G_IS_INPUT_STREAM (stream));

  task = g_task_new (stream, cancellable, callback, user_data);
  g_task_set_source_tag (task, app_read_all_async);
  r = g_new0 (ReadAll, 1);
  r->data = g_byte_array_new ();
  r->max_bytes = MIN (max_bytes, G_MAXUINT); /* a GByteArray's length */
  g_task_set_task_data (task, r, read_all_free);
  read_chunk (task);
}

GBytes *
app_read_all_finish (GInputStream  *stream,
                     GAsyncResult  *result,
                     GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, stream), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}
