/* app-image-tile.c - one image of a message, or the place of one whose file is gone.
 *
 * The picture is a bounded thumbnail (AppThumbnail: one height, the width by the image's shape),
 * decoded off the main thread by app-thumbnail.c. When the decoder says the file
 * is not there (IMAGE_FILE_ERROR_NOT_FOUND: deleted by hand, a data folder restored without its
 * images), the tile turns into a card that says so and offers to remove the image from the
 * message or to replace it with another file; the message row does either and saves the chat.
 * The conversation itself goes on without the image (app-engine.c leaves it out of the prompt).
 * Any other failure (a damaged file) keeps the picture's place and says why in its tooltip.
 */
#define G_LOG_DOMAIN "sightline-image-tile"

#include "app-image-tile.h"

#include <glib/gi18n.h>

#include "app-thumbnail.h"
#include "image-file.h"

struct _AppImageTile
{
  GtkWidget parent_instance;

  char *path;
  char *label;
  int size;
  gboolean missing;
  GCancellable *cancellable;

  GtkWidget *stack;
  GtkWidget *button;             /* the thumbnail, which opens the image */
  GtkWidget *thumbnail;          /* AppThumbnail */
  GtkWidget *missing_box;
};

G_DEFINE_FINAL_TYPE (AppImageTile, app_image_tile, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_PATH,
  PROP_SIZE,
  PROP_MISSING,
  PROP_LABEL,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum { OPEN, REMOVE, REPLACE, N_SIGNALS };
static guint signals[N_SIGNALS];

static void
set_missing (AppImageTile *self,
             gboolean      missing)
{
  if (self->missing == missing)
    return;
  self->missing = missing;
  gtk_stack_set_visible_child (GTK_STACK (self->stack),
                               missing ? self->missing_box : self->button);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MISSING]);
}

static void
loaded_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  g_autoptr(AppImageTile) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) texture = app_thumbnail_load_finish (result, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || !self->thumbnail)
    return;
  if (texture)
    gtk_picture_set_paintable (app_thumbnail_get_picture (APP_THUMBNAIL (self->thumbnail)),
                               GDK_PAINTABLE (texture));
  else if (g_error_matches (error, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_NOT_FOUND))
    set_missing (self, TRUE);
  else
    gtk_widget_set_tooltip_text (self->button, error->message);
}

static void
open_clicked_cb (AppImageTile *self)
{
  g_signal_emit (self, signals[OPEN], 0);
}

static void
remove_clicked_cb (AppImageTile *self)
{
  g_signal_emit (self, signals[REMOVE], 0);
}

static void
replace_clicked_cb (AppImageTile *self)
{
  g_signal_emit (self, signals[REPLACE], 0);
}

static void
app_image_tile_constructed (GObject *object)
{
  AppImageTile *self = APP_IMAGE_TILE (object);
  g_autofree char *gone = g_strdup_printf (_("The image file %s is gone"), self->path);

  G_OBJECT_CLASS (app_image_tile_parent_class)->constructed (object);

  /* as wide as the image's shape makes it, up to twice its height */
  self->thumbnail = app_thumbnail_new (NULL, self->size, 2 * self->size);
  gtk_button_set_child (GTK_BUTTON (self->button), self->thumbnail);
  gtk_widget_set_size_request (self->missing_box, self->size, self->size);
  gtk_widget_set_tooltip_text (self->missing_box, gone);

  /* the size AppThumbnail asks for: one cached texture for the tile and the viewer's list */
  app_thumbnail_load_async (self->path, 4 * self->size, self->cancellable, loaded_cb,
                            g_object_ref (self));
}

static void
app_image_tile_dispose (GObject *object)
{
  AppImageTile *self = APP_IMAGE_TILE (object);

  g_cancellable_cancel (self->cancellable);
  self->thumbnail = NULL;
  gtk_widget_dispose_template (GTK_WIDGET (self), APP_TYPE_IMAGE_TILE);
  G_OBJECT_CLASS (app_image_tile_parent_class)->dispose (object);
}

static void
app_image_tile_finalize (GObject *object)
{
  AppImageTile *self = APP_IMAGE_TILE (object);

  g_clear_object (&self->cancellable);
  g_free (self->path);
  g_free (self->label);
  G_OBJECT_CLASS (app_image_tile_parent_class)->finalize (object);
}

static void
app_image_tile_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  AppImageTile *self = APP_IMAGE_TILE (object);

  switch (prop_id)
    {
    case PROP_PATH:
      g_value_set_string (value, self->path);
      break;
    case PROP_SIZE:
      g_value_set_int (value, self->size);
      break;
    case PROP_MISSING:
      g_value_set_boolean (value, self->missing);
      break;
    case PROP_LABEL:
      g_value_set_string (value, self->label);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_image_tile_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  AppImageTile *self = APP_IMAGE_TILE (object);

  switch (prop_id)
    {
    case PROP_PATH:
      self->path = g_value_dup_string (value);
      break;
    case PROP_SIZE:
      self->size = g_value_get_int (value);
      break;
    case PROP_LABEL:
      app_image_tile_set_label (self, g_value_get_string (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_image_tile_class_init (AppImageTileClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->constructed = app_image_tile_constructed;
  object_class->dispose = app_image_tile_dispose;
  object_class->finalize = app_image_tile_finalize;
  object_class->get_property = app_image_tile_get_property;
  object_class->set_property = app_image_tile_set_property;
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "imagetile");

  properties[PROP_PATH] =
    g_param_spec_string ("path", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  properties[PROP_SIZE] =
    g_param_spec_int ("size", NULL, NULL, 1, G_MAXINT, 160,
                      G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  properties[PROP_MISSING] =
    g_param_spec_boolean ("missing", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /* the name a screen reader gives the image ("Image 2 of 3") */
  properties[PROP_LABEL] =
    g_param_spec_string ("label", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[OPEN] = g_signal_new ("open", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                NULL, NULL, G_TYPE_NONE, 0);
  signals[REMOVE] = g_signal_new ("remove", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                  NULL, NULL, NULL, G_TYPE_NONE, 0);
  signals[REPLACE] = g_signal_new ("replace", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                   NULL, NULL, NULL, G_TYPE_NONE, 0);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/sightline/Sightline/app-image-tile.ui");
  gtk_widget_class_bind_template_child (widget_class, AppImageTile, stack);
  gtk_widget_class_bind_template_child (widget_class, AppImageTile, button);
  gtk_widget_class_bind_template_child (widget_class, AppImageTile, missing_box);
  gtk_widget_class_bind_template_callback (widget_class, open_clicked_cb);
  gtk_widget_class_bind_template_callback (widget_class, remove_clicked_cb);
  gtk_widget_class_bind_template_callback (widget_class, replace_clicked_cb);
}

static void
app_image_tile_init (AppImageTile *self)
{
  self->cancellable = g_cancellable_new ();
  self->size = 160;

  gtk_widget_init_template (GTK_WIDGET (self));
}

AppImageTile *
app_image_tile_new (const char *path,
                    int         size)
{
  g_return_val_if_fail (path != NULL, NULL);

  return g_object_new (APP_TYPE_IMAGE_TILE, "path", path, "size", size, NULL);
}

const char *
app_image_tile_get_path (AppImageTile *self)
{
  g_return_val_if_fail (APP_IS_IMAGE_TILE (self), NULL);

  return self->path;
}

/* The name a screen reader gives the image ("Image 2 of 3"), on the thumbnail that takes the
 * focus. */
void
app_image_tile_set_label (AppImageTile *self,
                          const char   *label)
{
  g_return_if_fail (APP_IS_IMAGE_TILE (self));

  gtk_accessible_update_property (GTK_ACCESSIBLE (self->button), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  label, -1);
  if (g_strcmp0 (self->label, label) == 0)
    return;
  g_free (self->label);
  self->label = g_strdup (label);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LABEL]);
}

const char *
app_image_tile_get_label (AppImageTile *self)
{
  g_return_val_if_fail (APP_IS_IMAGE_TILE (self), NULL);

  return self->label;
}

gboolean
app_image_tile_get_missing (AppImageTile *self)
{
  g_return_val_if_fail (APP_IS_IMAGE_TILE (self), FALSE);

  return self->missing;
}

/* ------------------------------------------------------------------------------------------
 * Importing a replacement
 */

typedef struct
{
  AppChatStore *store;
  GFile *file;
} ImportData;

static void
import_data_free (gpointer p)
{
  ImportData *d = p;

  g_object_unref (d->store);
  g_object_unref (d->file);
  g_free (d);
}

static void
import_thread (GTask        *task,
               gpointer      source,
               gpointer      task_data,
               GCancellable *cancellable)
{
  ImportData *d = task_data;
  g_autoptr(GBytes) bytes = NULL;
  g_autofree char *name = g_file_get_basename (d->file);
  g_auto(ImageRgb) im = { 0 };
  GError *error = NULL;
  char *id;

  /* a regular file of bounded size only: a named pipe would wait forever */
  bytes = app_chat_store_read_image_file (d->file, cancellable, &error);
  if (!bytes)
    {
      g_task_return_error (task, error);
      return;
    }
  if (!image_file_load_bytes (bytes, name, &im, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  id = app_chat_store_import_image (d->store, bytes, &error);
  if (!id)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, id, g_free);
}

void
app_image_import_async (AppChatStore        *store,
                        GFile               *file,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  ImportData *d = g_new0 (ImportData, 1);

  d->store = g_object_ref (store);
  d->file = g_object_ref (file);
  g_task_set_source_tag (task, app_image_import_async);
  g_task_set_task_data (task, d, import_data_free);
  /* not cancelled halfway: the id comes back held, and the caller lets go of it */
  g_task_set_check_cancellable (task, FALSE);
  g_task_run_in_thread (task, import_thread);
}

char *
app_image_import_finish (GAsyncResult  *result,
                         GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}
