/* app-chat-store.c - every chat on disk, and the sorted list the sidebar shows.
 *
 * Each chat is one small JSON file, replaced atomically on every save, so a crash or a full
 * disk loses at most the last change of one chat and never another chat's history. A file
 * the store cannot read is the person's data all the same: it is reported and then left
 * exactly as it is. To make that hold, the store only ever replaces or deletes a file it
 * read successfully or wrote itself; any other file that happens to carry a chat's name is
 * refused rather than overwritten.
 *
 * Images are stored by the SHA-256 of their bytes: attaching the same picture twice costs
 * one file, and a chat keeps its pictures after the originals are moved or deleted. Nothing
 * here deletes an image, since several chats may share one.
 */
#include <glib/gi18n.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <string.h>

#include "app-chat-store.h"
#include "app-chat-private.h"

struct _AppChatStore
{
  GObject     parent_instance;

  char       *data_dir;
  char       *chats_dir;
  char       *images_dir;

  GListStore *chats;          /* visible chats, most recently modified first */
  GHashTable *trash;          /* id -> AppChat hidden until untrash or purge */
  GHashTable *owned;          /* ids whose file this store read or wrote */
  GPtrArray  *load_errors;
};

G_DEFINE_FINAL_TYPE (AppChatStore, app_chat_store, G_TYPE_OBJECT)

G_DEFINE_QUARK (app-chat-store-error-quark, app_chat_store_error)

enum {
  PROP_0,
  PROP_DATA_DIR,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
app_chat_store_constructed (GObject *object)
{
  AppChatStore *self = (AppChatStore *)object;

  G_OBJECT_CLASS (app_chat_store_parent_class)->constructed (object);

  g_assert (self->data_dir != NULL);

  self->chats_dir = g_build_filename (self->data_dir, "chats", NULL);
  self->images_dir = g_build_filename (self->data_dir, "images", NULL);

  /* A failure here shows up, with its reason, as the error of the first save or import. */
  g_mkdir_with_parents (self->chats_dir, 0700);
  g_mkdir_with_parents (self->images_dir, 0700);
}

static void
app_chat_store_finalize (GObject *object)
{
  AppChatStore *self = (AppChatStore *)object;

  g_clear_object (&self->chats);
  g_clear_pointer (&self->trash, g_hash_table_unref);
  g_clear_pointer (&self->owned, g_hash_table_unref);
  g_clear_pointer (&self->load_errors, g_ptr_array_unref);
  g_free (self->data_dir);
  g_free (self->chats_dir);
  g_free (self->images_dir);

  G_OBJECT_CLASS (app_chat_store_parent_class)->finalize (object);
}

static void
app_chat_store_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  AppChatStore *self = APP_CHAT_STORE (object);

  switch (prop_id)
    {
    case PROP_DATA_DIR:
      g_value_set_string (value, self->data_dir);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_chat_store_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  AppChatStore *self = APP_CHAT_STORE (object);

  switch (prop_id)
    {
    case PROP_DATA_DIR:
      self->data_dir = g_value_dup_string (value);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_chat_store_class_init (AppChatStoreClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = app_chat_store_constructed;
  object_class->finalize = app_chat_store_finalize;
  object_class->get_property = app_chat_store_get_property;
  object_class->set_property = app_chat_store_set_property;

  properties[PROP_DATA_DIR] =
    g_param_spec_string ("data-dir", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
app_chat_store_init (AppChatStore *self)
{
  self->chats = g_list_store_new (APP_TYPE_CHAT);
  self->trash = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->owned = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->load_errors = g_ptr_array_new_with_free_func (g_free);
}

AppChatStore *
app_chat_store_new (const char *data_dir)
{
  g_return_val_if_fail (data_dir != NULL, NULL);

  return g_object_new (APP_TYPE_CHAT_STORE,
                       "data-dir", data_dir,
                       NULL);
}

const char *
app_chat_store_get_data_dir (AppChatStore *self)
{
  g_return_val_if_fail (APP_IS_CHAT_STORE (self), NULL);

  return self->data_dir;
}

/* Newest first; the id breaks ties so the order does not depend on the directory's. */
static int
compare_chats (gconstpointer a,
               gconstpointer b,
               gpointer      user_data)
{
  AppChat *chat_a = (AppChat *)a;
  AppChat *chat_b = (AppChat *)b;
  gint64 modified_a = app_chat_get_modified (chat_a);
  gint64 modified_b = app_chat_get_modified (chat_b);

  if (modified_a != modified_b)
    return modified_a > modified_b ? -1 : 1;

  return strcmp (app_chat_get_id (chat_a), app_chat_get_id (chat_b));
}

static int
compare_chats_qsort (gconstpointer a,
                     gconstpointer b)
{
  return compare_chats (*(AppChat **)a, *(AppChat **)b, NULL);
}

static int
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (*(const char **)a, *(const char **)b);
}

static void
report (AppChatStore *self,
        const char   *path,
        const char   *why)
{
  char *line = g_strdup_printf ("%s: %s", path, why);

  g_ptr_array_add (self->load_errors, line);
  g_debug ("Cannot load chat %s", line);
}

static AppChat *
load_file (const char  *path,
           GError     **error)
{
  g_autoptr(JsonParser) parser = NULL;
  g_autofree char *contents = NULL;
  gsize length;

  if (!g_file_get_contents (path, &contents, &length, error))
    return NULL;

  if (length == 0)
    {
      g_set_error_literal (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
                           _("empty file"));
      return NULL;
    }

  /* json-glib reads up to the first NUL when given a length, and trusts the bytes to
   * be UTF-8; a file of random bytes must not get that far. */
  if (memchr (contents, '\0', length) != NULL || !g_utf8_validate (contents, length, NULL))
    {
      g_set_error_literal (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
                           _("not a text file"));
      return NULL;
    }

  parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, contents, length, error))
    return NULL;

  return app_chat_new_from_json (json_parser_get_root (parser), error);
}

void
app_chat_store_load (AppChatStore *self)
{
  g_autoptr(GHashTable) seen = NULL;
  g_autoptr(GPtrArray) names = NULL;
  g_autoptr(GPtrArray) chats = NULL;
  g_autoptr(GError) error = NULL;
  GDir *dir;
  const char *name;

  g_return_if_fail (APP_IS_CHAT_STORE (self));

  /* Loading again starts over from what is on disk. */
  g_list_store_remove_all (self->chats);
  g_hash_table_remove_all (self->trash);
  g_hash_table_remove_all (self->owned);
  g_ptr_array_set_size (self->load_errors, 0);

  dir = g_dir_open (self->chats_dir, 0, &error);
  if (dir == NULL)
    {
      if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        report (self, self->chats_dir, error->message);
      return;
    }

  names = g_ptr_array_new_with_free_func (g_free);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      /* Everything else, such as the temporary file of a save cut short, is not a chat. */
      if (g_str_has_suffix (name, ".json") && name[0] != '.')
        g_ptr_array_add (names, g_strdup (name));
    }
  g_dir_close (dir);

  g_ptr_array_sort (names, compare_names);

  /* Ids are UUIDs, which ignore case; two files differing only in case are one chat twice. */
  seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  chats = g_ptr_array_new_with_free_func (g_object_unref);

  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *path = NULL;
      g_autofree char *expected = NULL;
      g_autofree char *key = NULL;
      g_autoptr(GError) local_error = NULL;
      g_autoptr(AppChat) chat = NULL;
      const char *id;
      const char *other;

      name = g_ptr_array_index (names, i);
      path = g_build_filename (self->chats_dir, name, NULL);

      chat = load_file (path, &local_error);
      if (chat == NULL)
        {
          report (self, path, local_error->message);
          continue;
        }

      id = app_chat_get_id (chat);
      expected = g_strconcat (id, ".json", NULL);
      if (strcmp (name, expected) != 0)
        {
          g_autofree char *why = g_strdup_printf (_("the chat inside has the id %s"), id);
          report (self, path, why);
          continue;
        }

      key = g_ascii_strdown (id, -1);
      other = g_hash_table_lookup (seen, key);
      if (other != NULL)
        {
          g_autofree char *why = g_strdup_printf (_("the same chat as %s"), other);
          report (self, path, why);
          continue;
        }

      g_hash_table_insert (seen, g_steal_pointer (&key), g_strdup (name));
      g_hash_table_add (self->owned, g_strdup (id));
      g_ptr_array_add (chats, g_steal_pointer (&chat));
    }

  g_ptr_array_sort (chats, compare_chats_qsort);
  g_list_store_splice (self->chats, 0, 0, chats->pdata, chats->len);
}

/* Borrowed; one line per file that could not be loaded by the last app_chat_store_load(). */
GPtrArray *
app_chat_store_get_load_errors (AppChatStore *self)
{
  g_return_val_if_fail (APP_IS_CHAT_STORE (self), NULL);

  return self->load_errors;
}

GListModel *
app_chat_store_get_chats (AppChatStore *self)
{
  g_return_val_if_fail (APP_IS_CHAT_STORE (self), NULL);

  return G_LIST_MODEL (self->chats);
}

void
app_chat_store_add (AppChatStore *self,
                    AppChat      *chat)
{
  g_return_if_fail (APP_IS_CHAT_STORE (self));
  g_return_if_fail (APP_IS_CHAT (chat));

  if (g_list_store_find (self->chats, chat, NULL))
    return;

  g_hash_table_remove (self->trash, app_chat_get_id (chat));
  g_list_store_insert (self->chats, 0, chat);
}

gboolean
app_chat_store_save (AppChatStore  *self,
                     AppChat       *chat,
                     GError       **error)
{
  g_autoptr(JsonGenerator) generator = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *name = NULL;
  g_autofree char *path = NULL;
  g_autofree char *data = NULL;
  const char *id;
  GStatBuf buf;
  gsize length;
  guint position;

  g_return_val_if_fail (APP_IS_CHAT_STORE (self), FALSE);
  g_return_val_if_fail (APP_IS_CHAT (chat), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  id = app_chat_get_id (chat);
  if (!g_uuid_string_is_valid (id))
    {
      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("“%s” is not a valid chat id"), id);
      return FALSE;
    }

  name = g_strconcat (id, ".json", NULL);
  path = g_build_filename (self->chats_dir, name, NULL);

  if (!g_hash_table_contains (self->owned, id) && g_lstat (path, &buf) == 0)
    {
      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("%s already exists and is not a chat this app loaded; it is left as it is"),
                   path);
      return FALSE;
    }

  if (g_mkdir_with_parents (self->chats_dir, 0700) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("Cannot create %s: %s"), self->chats_dir, g_strerror (saved_errno));
      return FALSE;
    }

  app_chat_touch (chat);

  /* A trashed chat may still be saved (an answer finishing after the person deleted it);
   * it stays hidden. */
  if (!g_hash_table_contains (self->trash, id))
    {
      if (g_list_store_find (self->chats, chat, &position))
        {
          if (position != 0)
            {
              g_object_ref (chat);
              g_list_store_remove (self->chats, position);
              g_list_store_insert (self->chats, 0, chat);
              g_object_unref (chat);
            }
        }
      else
        {
          g_list_store_insert (self->chats, 0, chat);
        }
    }

  node = app_chat_to_json (chat);
  generator = json_generator_new ();
  json_generator_set_pretty (generator, TRUE);
  json_generator_set_indent (generator, 2);
  json_generator_set_root (generator, node);
  data = json_generator_to_data (generator, &length);

  if (!g_file_set_contents_full (path, data, length,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                 error))
    return FALSE;

  g_hash_table_add (self->owned, g_strdup (id));
  return TRUE;
}

void
app_chat_store_trash (AppChatStore *self,
                      AppChat      *chat)
{
  guint position;

  g_return_if_fail (APP_IS_CHAT_STORE (self));
  g_return_if_fail (APP_IS_CHAT (chat));

  g_hash_table_insert (self->trash, g_strdup (app_chat_get_id (chat)), g_object_ref (chat));

  if (g_list_store_find (self->chats, chat, &position))
    g_list_store_remove (self->chats, position);
}

void
app_chat_store_untrash (AppChatStore *self,
                        AppChat      *chat)
{
  g_return_if_fail (APP_IS_CHAT_STORE (self));
  g_return_if_fail (APP_IS_CHAT (chat));

  if (g_hash_table_lookup (self->trash, app_chat_get_id (chat)) != chat)
    return;

  /* Back where its last change puts it, not at the top: undo restores, it does not bump. */
  g_list_store_insert_sorted (self->chats, chat, compare_chats, NULL);
  g_hash_table_remove (self->trash, app_chat_get_id (chat));
}

gboolean
app_chat_store_purge (AppChatStore  *self,
                      AppChat       *chat,
                      GError       **error)
{
  g_autofree char *path = NULL;
  g_autofree char *name = NULL;
  const char *id;
  guint position;

  g_return_val_if_fail (APP_IS_CHAT_STORE (self), FALSE);
  g_return_val_if_fail (APP_IS_CHAT (chat), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  id = app_chat_get_id (chat);

  if (g_list_store_find (self->chats, chat, &position))
    g_list_store_remove (self->chats, position);
  if (g_hash_table_lookup (self->trash, id) == chat)
    g_hash_table_remove (self->trash, id);

  /* A chat never saved has no file; a file this store did not write is not this chat's. */
  if (!g_hash_table_contains (self->owned, id))
    return TRUE;

  name = g_strconcat (id, ".json", NULL);
  path = g_build_filename (self->chats_dir, name, NULL);

  if (g_unlink (path) != 0 && errno != ENOENT)
    {
      int saved_errno = errno;

      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("Cannot delete %s: %s"), path, g_strerror (saved_errno));
      return FALSE;
    }

  g_hash_table_remove (self->owned, id);
  return TRUE;
}

/* ---------------------------------------------------------------------------------------------
 * Images
 */

static const char *
guess_extension (const guchar *data,
                 gsize         size)
{
  static const struct {
    const char *content_type;
    const char *extension;
  } types[] = {
    { "image/png", "png" },
    { "image/jpeg", "jpg" },
    { "image/gif", "gif" },
    { "image/webp", "webp" },
    { "image/bmp", "bmp" },
    { "image/tiff", "tiff" },
  };
  g_autofree char *content_type = g_content_type_guess (NULL, data, size, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (types); i++)
    {
      if (g_content_type_is_a (content_type, types[i].content_type))
        return types[i].extension;
    }

  return "img";
}

char *
app_chat_store_import_image (AppChatStore  *self,
                             GBytes        *bytes,
                             GError       **error)
{
  g_autofree char *checksum = NULL;
  g_autofree char *id = NULL;
  g_autofree char *path = NULL;
  const guchar *data;
  GStatBuf buf;
  gsize size;

  g_return_val_if_fail (APP_IS_CHAT_STORE (self), NULL);
  g_return_val_if_fail (bytes != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  data = g_bytes_get_data (bytes, &size);
  if (size == 0)
    {
      g_set_error_literal (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
                           _("The image is empty"));
      return NULL;
    }

  checksum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, data, size);
  id = g_strdup_printf ("%s.%s", checksum, guess_extension (data, size));
  path = g_build_filename (self->images_dir, id, NULL);

  /* The name is the content: a file of the right size is this image already. One of
   * another size was cut short by something else and is safe to replace. */
  if (g_stat (path, &buf) == 0 && S_ISREG (buf.st_mode) && (gsize)buf.st_size == size)
    return g_steal_pointer (&id);

  if (g_mkdir_with_parents (self->images_dir, 0700) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("Cannot create %s: %s"), self->images_dir, g_strerror (saved_errno));
      return NULL;
    }

  if (!g_file_set_contents_full (path, (const char *)data, size,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                 error))
    return NULL;

  return g_steal_pointer (&id);
}

char *
app_chat_store_import_image_file (AppChatStore  *self,
                                  GFile         *file,
                                  GError       **error)
{
  g_autoptr(GBytes) bytes = NULL;
  char *contents = NULL;
  gsize length;

  g_return_val_if_fail (APP_IS_CHAT_STORE (self), NULL);
  g_return_val_if_fail (G_IS_FILE (file), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!g_file_load_contents (file, NULL, &contents, &length, NULL, error))
    return NULL;

  bytes = g_bytes_new_take (contents, length);
  return app_chat_store_import_image (self, bytes, error);
}

/* NULL for an id that could reach outside the images folder. */
char *
app_chat_store_get_image_path (AppChatStore *self,
                               const char   *image_id)
{
  g_return_val_if_fail (APP_IS_CHAT_STORE (self), NULL);

  if (image_id == NULL ||
      image_id[0] == '\0' ||
      strcmp (image_id, ".") == 0 ||
      strchr (image_id, '/') != NULL ||
      strchr (image_id, G_DIR_SEPARATOR) != NULL ||
      strstr (image_id, "..") != NULL)
    return NULL;

  return g_build_filename (self->images_dir, image_id, NULL);
}
