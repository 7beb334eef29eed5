/* app-thumbnail.c - image files to textures without blocking the main thread.
 *
 * Decoding a 20-megapixel photo takes a noticeable fraction of a second, so it runs in a GTask
 * thread through the same decoder the engine uses (imagefile/image-file.c): what the person
 * sees is exactly what the model sees, rotated by EXIF and all. Textures are cached by path
 * and size: the conversation list recycles its rows while scrolling and must not decode the
 * same pictures again. The cache is bounded by count and by pixel memory, since the viewer and
 * the box export load photos at their full size.
 *
 * AppThumbnail shows one of them at a bounded size: a fixed height and a width that follows
 * the picture's aspect ratio within limits. A panorama cannot fill the question box, and a
 * row of thumbnails cannot ask a window for more width than it has: their minimum width is at
 * most their height.
 */
#define G_LOG_DOMAIN "sightline-thumbnail"

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

/* ------------------------------------------------------------------------------------------
 * AppThumbnail
 */

struct _AppThumbnail
{
  GtkWidget parent_instance;

  GtkWidget *picture;
  char *path;
  int height;
  int max_width;
};

G_DEFINE_FINAL_TYPE (AppThumbnail, app_thumbnail, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_PATH,
  PROP_HEIGHT,
  PROP_MAX_WIDTH,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* The width the picture's aspect ratio asks for, within the bounds. */
static int
natural_width (AppThumbnail *self)
{
  GdkPaintable *paintable = gtk_picture_get_paintable (GTK_PICTURE (self->picture));
  double aspect = paintable ? gdk_paintable_get_intrinsic_aspect_ratio (paintable) : 0;
  int width = aspect > 0 ? (int) (self->height * aspect + 0.5) : self->height;

  return CLAMP (width, MAX (1, self->height / 2), MAX (self->height, self->max_width));
}

static void
app_thumbnail_measure (GtkWidget      *widget,
                       GtkOrientation  orientation,
                       int             for_size,
                       int            *minimum,
                       int            *natural,
                       int            *minimum_baseline,
                       int            *natural_baseline)
{
  AppThumbnail *self = APP_THUMBNAIL (widget);

  if (orientation == GTK_ORIENTATION_VERTICAL)
    {
      *minimum = *natural = self->height;
    }
  else
    {
      *natural = natural_width (self);
      *minimum = MIN (*natural, self->height);
    }
}

static GtkSizeRequestMode
app_thumbnail_get_request_mode (GtkWidget *widget)
{
  return GTK_SIZE_REQUEST_CONSTANT_SIZE;
}

static void
app_thumbnail_size_allocate (GtkWidget *widget,
                             int        width,
                             int        height,
                             int        baseline)
{
  gtk_widget_allocate (APP_THUMBNAIL (widget)->picture, width, height, baseline, NULL);
}

static void
paintable_changed_cb (AppThumbnail *self)
{
  gtk_widget_queue_resize (GTK_WIDGET (self));
}

static void
app_thumbnail_constructed (GObject *object)
{
  AppThumbnail *self = APP_THUMBNAIL (object);

  G_OBJECT_CLASS (app_thumbnail_parent_class)->constructed (object);

  /* never narrower than it is high, whatever the image's shape */
  self->max_width = MAX (self->max_width, self->height);
}

static void
app_thumbnail_dispose (GObject *object)
{
  AppThumbnail *self = APP_THUMBNAIL (object);

  g_clear_pointer (&self->picture, gtk_widget_unparent);
  G_OBJECT_CLASS (app_thumbnail_parent_class)->dispose (object);
}

static void
app_thumbnail_finalize (GObject *object)
{
  AppThumbnail *self = APP_THUMBNAIL (object);

  g_free (self->path);
  G_OBJECT_CLASS (app_thumbnail_parent_class)->finalize (object);
}

static void
app_thumbnail_get_property (GObject    *object,
                            guint       prop_id,
                            GValue     *value,
                            GParamSpec *pspec)
{
  AppThumbnail *self = APP_THUMBNAIL (object);

  switch (prop_id)
    {
    case PROP_PATH:
      g_value_set_string (value, self->path);
      break;
    case PROP_HEIGHT:
      g_value_set_int (value, self->height);
      break;
    case PROP_MAX_WIDTH:
      g_value_set_int (value, self->max_width);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_thumbnail_set_property (GObject      *object,
                            guint         prop_id,
                            const GValue *value,
                            GParamSpec   *pspec)
{
  AppThumbnail *self = APP_THUMBNAIL (object);

  switch (prop_id)
    {
    case PROP_PATH:
      app_thumbnail_set_path (self, g_value_get_string (value));
      break;
    case PROP_HEIGHT:
      self->height = g_value_get_int (value);
      break;
    case PROP_MAX_WIDTH:
      self->max_width = g_value_get_int (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_thumbnail_class_init (AppThumbnailClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->constructed = app_thumbnail_constructed;
  object_class->dispose = app_thumbnail_dispose;
  object_class->finalize = app_thumbnail_finalize;
  object_class->get_property = app_thumbnail_get_property;
  object_class->set_property = app_thumbnail_set_property;
  widget_class->measure = app_thumbnail_measure;
  widget_class->get_request_mode = app_thumbnail_get_request_mode;
  widget_class->size_allocate = app_thumbnail_size_allocate;
  gtk_widget_class_set_css_name (widget_class, "thumbnail");

  /* the image file shown; NULL for none. Not a construct property: it is loaded at the size
   * the two below give, which it must come after. */
  properties[PROP_PATH] =
    g_param_spec_string ("path", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_HEIGHT] =
    g_param_spec_int ("height", NULL, NULL, 1, G_MAXINT, 1,
                      G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /* the widest it grows for a wide image; at least its height */
  properties[PROP_MAX_WIDTH] =
    g_param_spec_int ("max-width", NULL, NULL, 1, G_MAXINT, 1,
                      G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
app_thumbnail_init (AppThumbnail *self)
{
  self->picture = gtk_picture_new ();
  gtk_picture_set_content_fit (GTK_PICTURE (self->picture), GTK_CONTENT_FIT_COVER);
  gtk_widget_set_parent (self->picture, GTK_WIDGET (self));
  gtk_widget_set_overflow (GTK_WIDGET (self), GTK_OVERFLOW_HIDDEN);
  g_signal_connect_object (self->picture, "notify::paintable", G_CALLBACK (paintable_changed_cb),
                           self, G_CONNECT_SWAPPED);
}

GtkWidget *
app_thumbnail_new (const char *path,
                   int         height,
                   int         max_width)
{
  return g_object_new (APP_TYPE_THUMBNAIL, "height", MAX (height, 1), "max-width",
                       MAX (max_width, 1), "path", path, NULL);
}

void
app_thumbnail_set_path (AppThumbnail *self,
                        const char   *path)
{
  g_return_if_fail (APP_IS_THUMBNAIL (self));

  if (path)
    /* twice the size shown, for a sharp picture on a scaled display */
    app_thumbnail_set_picture (GTK_PICTURE (self->picture), path, 2 * self->max_width);
  else
    gtk_picture_set_paintable (GTK_PICTURE (self->picture), NULL);
  if (g_strcmp0 (self->path, path) == 0)
    return;
  g_free (self->path);
  self->path = g_strdup (path);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PATH]);
}

const char *
app_thumbnail_get_path (AppThumbnail *self)
{
  g_return_val_if_fail (APP_IS_THUMBNAIL (self), NULL);

  return self->path;
}

GtkPicture *
app_thumbnail_get_picture (AppThumbnail *self)
{
  g_return_val_if_fail (APP_IS_THUMBNAIL (self), NULL);

  return GTK_PICTURE (self->picture);
}
