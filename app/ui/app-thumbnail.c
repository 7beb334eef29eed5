/* app-thumbnail.c - image files to textures without blocking the main thread.
 *
 * Decoding a 20-megapixel photo takes a noticeable fraction of a second, so it runs in a GTask
 * thread through the same decoder the engine uses (imagefile/image-file.c): what the person
 * sees is exactly what the model sees, rotated by EXIF and all. Textures are cached by path
 * and size: the conversation list recycles its rows while scrolling and must not decode the
 * same pictures again. The cache is bounded by count and by pixel memory, since the viewer and
 * the box export load photos at their full size.
 */
#include "app-thumbnail.h"

#include "image-file.h"

#define CACHE_SIZE 96
#define CACHE_BYTES (256 * 1024 * 1024)

typedef struct
{
  char *path;
  int size;
} Request;

static void
request_free (gpointer p)
{
  Request *r = p;

  g_free (r->path);
  g_free (r);
}

static GHashTable *cache;  /* "size:path" -> GdkTexture */
static GQueue cache_order; /* keys, most recent first */
static gsize cache_bytes;  /* 4 bytes a pixel of every cached texture */

static gsize
texture_bytes (GdkTexture *texture)
{
  return (gsize) gdk_texture_get_width (texture) * gdk_texture_get_height (texture) * 4;
}

static void
cache_evict_oldest (void)
{
  char *key = g_queue_pop_tail (&cache_order);

  cache_bytes -= texture_bytes (g_hash_table_lookup (cache, key));
  g_hash_table_remove (cache, key);
}

static char *
cache_key (const char *path,
           int         size)
{
  return g_strdup_printf ("%d:%s", size, path);
}

static GdkTexture *
cache_lookup (const char *key)
{
  GdkTexture *t;

  if (!cache)
    return NULL;
  t = g_hash_table_lookup (cache, key);
  if (t)
    {
      GList *l = g_queue_find_custom (&cache_order, key, (GCompareFunc) g_strcmp0);

      g_queue_unlink (&cache_order, l);
      g_queue_push_head_link (&cache_order, l);
    }
  return t;
}

static void
cache_insert (char       *key,
              GdkTexture *texture)
{
  if (!cache)
    cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  if (g_hash_table_contains (cache, key))
    {
      g_free (key);
      return;
    }
  g_hash_table_insert (cache, key, g_object_ref (texture));
  g_queue_push_head (&cache_order, key);
  cache_bytes += texture_bytes (texture);
  /* the newest stays, however large */
  while (g_queue_get_length (&cache_order) > 1 &&
         (g_queue_get_length (&cache_order) > CACHE_SIZE || cache_bytes > CACHE_BYTES))
    cache_evict_oldest ();
}

static void
free_pixels (guchar  *pixels,
             gpointer data)
{
  g_free (pixels);
}

static void
decode_thread (GTask        *task,
               gpointer      source,
               gpointer      task_data,
               GCancellable *cancellable)
{
  Request *r = task_data;
  ImageRgb im;
  GError *error = NULL;
  GdkPixbuf *pixbuf;

  if (!image_file_load (r->path, &im, &error))
    {
      g_task_return_error (task, error); /* IMAGE_FILE_ERROR: missing, damaged, too large... */
      return;
    }
  pixbuf = gdk_pixbuf_new_from_data (im.rgb, GDK_COLORSPACE_RGB, FALSE, 8, im.width, im.height,
                                     im.stride, free_pixels, NULL);
  if (r->size > 0 && (im.width > r->size || im.height > r->size))
    {
      double s = (double) r->size / MAX (im.width, im.height);
      GdkPixbuf *scaled = gdk_pixbuf_scale_simple (pixbuf, MAX (1, (int) (im.width * s)),
                                                   MAX (1, (int) (im.height * s)),
                                                   GDK_INTERP_BILINEAR);

      g_object_unref (pixbuf);
      pixbuf = scaled;
    }
  g_task_return_pointer (task, pixbuf, g_object_unref);
}

void
app_thumbnail_load_async (const char          *path,
                          int                  size,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Request *r = g_new0 (Request, 1);
  g_autofree char *key = cache_key (path, size);
  GdkTexture *cached = cache_lookup (key);

  g_task_set_source_tag (task, app_thumbnail_load_async);
  r->path = g_strdup (path);
  r->size = size;
  g_task_set_task_data (task, r, request_free);
  if (cached)
    {
      g_task_return_pointer (task, g_object_ref (cached), g_object_unref);
      g_object_set_data (G_OBJECT (task), "texture", GINT_TO_POINTER (1));
    }
  else
    {
      g_task_run_in_thread (task, decode_thread);
    }
  g_object_unref (task);
}

GdkTexture *
app_thumbnail_load_finish (GAsyncResult  *result,
                           GError       **error)
{
  GTask *task = G_TASK (result);
  Request *r = g_task_get_task_data (task);
  gpointer p = g_task_propagate_pointer (task, error);
  GdkTexture *texture;

  if (!p)
    return NULL;
  if (g_object_get_data (G_OBJECT (task), "texture"))
    return p;
  texture = gdk_texture_new_for_pixbuf (p);
  g_object_unref (p);
  cache_insert (cache_key (r->path, r->size), texture);
  return texture;
}

static void
picture_loaded_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(GtkPicture) picture = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) texture = app_thumbnail_load_finish (result, &error);
  Request *r = g_task_get_task_data (G_TASK (result));

  /* the row may have been rebound to another image meanwhile */
  if (g_strcmp0 (g_object_get_data (G_OBJECT (picture), "thumbnail-path"), r->path) != 0)
    return;
  if (texture)
    gtk_picture_set_paintable (picture, GDK_PAINTABLE (texture));
  else
    gtk_widget_set_tooltip_text (GTK_WIDGET (picture), error->message);
}

void
app_thumbnail_set_picture (GtkPicture *picture,
                           const char *path,
                           int         size)
{
  g_autofree char *key = cache_key (path, size);
  GdkTexture *cached = cache_lookup (key);

  g_object_set_data_full (G_OBJECT (picture), "thumbnail-path", g_strdup (path), g_free);
  gtk_picture_set_paintable (picture, cached ? GDK_PAINTABLE (cached) : NULL);
  if (!cached)
    app_thumbnail_load_async (path, size, NULL, picture_loaded_cb, g_object_ref (picture));
}
