/* test-read.c - app_read_all_async() (app/core/app-read.h): a stream read to its end, refused
 * as soon as it passes its limit, and its errors passed on. */
#include <string.h>

#include "app-read.h"

typedef struct
{
  GBytes *bytes;
  GError *error;
  gboolean done;
} Result;

static void
read_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Result *r = user_data;

  r->bytes = app_read_all_finish (G_INPUT_STREAM (source), result, &r->error);
  r->done = TRUE;
}

static void
read_all (GInputStream *stream,
          gsize         max_bytes,
          GCancellable *cancellable,
          Result       *r)
{
  memset (r, 0, sizeof *r);
  app_read_all_async (stream, max_bytes, cancellable, read_cb, r);
  while (!r->done)
    g_main_context_iteration (NULL, TRUE);
}

/* data of n bytes, each its offset's low byte */
static GBytes *
counting_bytes (gsize n)
{
  guint8 *data = g_malloc (n);

  for (gsize i = 0; i < n; i++)
    data[i] = (guint8) i;
  return g_bytes_new_take (data, n);
}

static void
test_whole (void)
{
  const gsize sizes[] = { 0, 1, 65536, 65537, 300001 };

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      g_autoptr(GBytes) data = counting_bytes (sizes[i]);
      g_autoptr(GInputStream) stream = g_memory_input_stream_new_from_bytes (data);
      Result r;

      /* exactly at the limit is within it */
      read_all (stream, sizes[i], NULL, &r);
      g_assert_no_error (r.error);
      g_assert_true (g_bytes_equal (r.bytes, data));
      g_bytes_unref (r.bytes);
    }
}

static void
test_limit (void)
{
  g_autoptr(GBytes) data = counting_bytes (1 << 20);
  g_autoptr(GInputStream) stream = g_memory_input_stream_new_from_bytes (data);
  Result r;

  read_all (stream, 100000, NULL, &r);
  g_assert_null (r.bytes);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE);
  /* refused at the chunk that passed the limit: the rest was never read */
  g_assert_cmpint (g_seekable_tell (G_SEEKABLE (stream)), <, 200000);
  g_clear_error (&r.error);
}

static void
test_errors (void)
{
  g_autoptr(GBytes) data = counting_bytes (1000);
  g_autoptr(GInputStream) closed = g_memory_input_stream_new_from_bytes (data);
  g_autoptr(GInputStream) stream = g_memory_input_stream_new_from_bytes (data);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Result r;

  g_assert_true (g_input_stream_close (closed, NULL, NULL));
  read_all (closed, 1 << 20, NULL, &r);
  g_assert_null (r.bytes);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CLOSED);
  g_clear_error (&r.error);

  g_cancellable_cancel (cancellable);
  read_all (stream, 1 << 20, cancellable, &r);
  g_assert_null (r.bytes);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&r.error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/app/read/whole", test_whole);
  g_test_add_func ("/app/read/limit", test_limit);
  g_test_add_func ("/app/read/errors", test_errors);
  return g_test_run ();
}
