/* app-chat-store.c - every chat on disk, and the sorted list the sidebar shows.
 *
 * Each chat is one small JSON file, replaced atomically on every save, so a crash or a full
 * disk loses at most the last change of one chat and never another chat's history. A file
 * the store cannot read is the person's data all the same: it is reported and then left
 * exactly as it is. To make that hold, the store only ever replaces or deletes a file it
 * read successfully or wrote itself; any other file that happens to carry a chat's name is
 * refused rather than overwritten.
 *
 * The files are read and written in GTask threads, never on the main thread the window runs
 * on. A save turns the chat into JSON where it is asked for (the chat is a GObject the window
 * keeps changing; bytes are what cross to the thread), and every request, save or purge, takes
 * the next number of one counter. A thread touches a chat file under the I/O lock only, and
 * skips a request older than the last one done for that chat: whichever thread runs first, the
 * file ends as the newest request left it, and a purge is never undone by a late write. The
 * requests not done yet are counted under their own lock, so app_chat_store_flush() can wait
 * for them without a main loop, as the app does while it exits.
 *
 * Images are stored by the SHA-256 of their bytes: attaching the same picture twice costs
 * one file, and a chat keeps its pictures after the originals are moved or deleted. Several
 * chats, messages and drafts may share one, so an image is deleted only when nothing refers to
 * it: no message, boxes or draft of a chat in the list or the trash, no id written in a chat
 * file that could not be read, and no hold. The composer holds the images it shows, and an
 * import holds its image from before it looks for the file until the caller lets go, so a
 * picture being attached right now is never taken away. The checks are on the main thread,
 * where the chats are; the deletions happen in a thread under the holds' lock, which an import
 * takes too. An image becomes a candidate when its last hold goes, when a save drops it from a
 * chat (a draft's attachment removed, a question edited away) and when a chat is purged, the
 * last two once the file no longer names it (until then, or when the write failed, the file
 * still refers to it); the candidates are checked together in an idle, once the chats have
 * been loaded (before that, what the files refer to is not known). A sweep after loading removes what was left behind
 * before (a crash, an older version that never deleted images).
 */
#define G_LOG_DOMAIN "sightline-chat-store"

#include <glib/gi18n.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <string.h>

#include "app-chat-store.h"
#include "app-json.h"
#include "app-chat-private.h"
#include "image-file.h"
#include "vl2-input.h"

/* Image files changed this recently are left to a later sweep. */
#define SWEEP_GRACE_SECONDS (10 * 60)

struct _AppChatStore
{
  GObject     parent_instance;

  char       *data_dir;
  char       *chats_dir;
  char       *images_dir;
  GMainContext *context;      /* the thread that made the store: where image checks run */

  /* main thread */
  GListStore *chats;          /* visible chats, most recently modified first */
  GHashTable *trash;          /* id -> AppChat hidden until untrash or purge */
  GHashTable *saved_images;   /* id -> GPtrArray: the image ids the chat's file refers to */
  GHashTable *purged;         /* ids of purged chats, never to be written again */
  GHashTable *foreign_images; /* image ids named in chat files the store could not read */
  GPtrArray  *load_errors;
  gboolean    loaded;
  gboolean    sweep_blocked;  /* a chat file could not even be read: its images are unknown */
  guint64     last_request;

  /* the chat files, under io_lock */
  GMutex      io_lock;
  GHashTable *owned;          /* ids whose file this store read or wrote */
  GHashTable *done;           /* id -> guint64*: the newest request done for that chat */

  /* requests not done yet, under pending_lock */
  GMutex      pending_lock;
  GCond       pending_cond;
  guint       n_pending;

  /* images, under holds_lock */
  GMutex      holds_lock;
  GHashTable *holds;          /* image id -> count */
  GHashTable *candidates;     /* image ids to check */
  GHashTable *unwritten;      /* chat id -> GPtrArray of Unwritten: images its file may still
                               * name, as the save that drops them is not done or failed */
  GSource    *collect_source;
};

G_DEFINE_FINAL_TYPE (AppChatStore, app_chat_store, G_TYPE_OBJECT)

typedef struct
{
  char    *image;
  guint64  request;           /* the request that drops it */
} Unwritten;

static void
unwritten_free (gpointer p)
{
  Unwritten *u = p;

  g_free (u->image);
  g_free (u);
}

G_DEFINE_QUARK (app-chat-store-error-quark, app_chat_store_error)

enum {
  PROP_0,
  PROP_DATA_DIR,
  PROP_LOADED,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void collect_now (AppChatStore *self,
                         GHashTable   *candidates);

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
app_chat_store_dispose (GObject *object)
{
  AppChatStore *self = (AppChatStore *)object;

  /* Every request holds the store, so none is left; a check not run yet is the next sweep's. */
  g_mutex_lock (&self->holds_lock);
  if (self->collect_source != NULL)
    {
      g_source_destroy (self->collect_source);
      g_clear_pointer (&self->collect_source, g_source_unref);
    }
  g_mutex_unlock (&self->holds_lock);

  G_OBJECT_CLASS (app_chat_store_parent_class)->dispose (object);
}

static void
app_chat_store_finalize (GObject *object)
{
  AppChatStore *self = (AppChatStore *)object;

  g_clear_object (&self->chats);
  g_clear_pointer (&self->trash, g_hash_table_unref);
  g_clear_pointer (&self->saved_images, g_hash_table_unref);
  g_clear_pointer (&self->purged, g_hash_table_unref);
  g_clear_pointer (&self->foreign_images, g_hash_table_unref);
  g_clear_pointer (&self->load_errors, g_ptr_array_unref);
  g_clear_pointer (&self->owned, g_hash_table_unref);
  g_clear_pointer (&self->done, g_hash_table_unref);
  g_clear_pointer (&self->holds, g_hash_table_unref);
  g_clear_pointer (&self->candidates, g_hash_table_unref);
  g_clear_pointer (&self->unwritten, g_hash_table_unref);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_mutex_clear (&self->io_lock);
  g_mutex_clear (&self->pending_lock);
  g_cond_clear (&self->pending_cond);
  g_mutex_clear (&self->holds_lock);
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

    case PROP_LOADED:
      g_value_set_boolean (value, self->loaded);
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
  object_class->dispose = app_chat_store_dispose;
  object_class->finalize = app_chat_store_finalize;
  object_class->get_property = app_chat_store_get_property;
  object_class->set_property = app_chat_store_set_property;

  properties[PROP_DATA_DIR] =
    g_param_spec_string ("data-dir", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  properties[PROP_LOADED] =
    g_param_spec_boolean ("loaded", NULL, NULL,
                          FALSE,
                          (G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
app_chat_store_init (AppChatStore *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->chats = g_list_store_new (APP_TYPE_CHAT);
  self->trash = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->saved_images = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                              (GDestroyNotify)g_ptr_array_unref);
  self->purged = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->foreign_images = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->load_errors = g_ptr_array_new_with_free_func (g_free);
  g_mutex_init (&self->io_lock);
  self->owned = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->done = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_mutex_init (&self->pending_lock);
  g_cond_init (&self->pending_cond);
  g_mutex_init (&self->holds_lock);
  self->holds = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->candidates = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->unwritten = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify)g_ptr_array_unref);
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

gboolean
app_chat_store_get_loaded (AppChatStore *self)
{
  g_return_val_if_fail (APP_IS_CHAT_STORE (self), FALSE);

  return self->loaded;
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

static char *
chat_path (AppChatStore *self,
           const char   *id)
{
  g_autofree char *name = g_strconcat (id, ".json", NULL);

  return g_build_filename (self->chats_dir, name, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Requests to threads, and waiting for them
 */

static void
pending_begin (AppChatStore *self)
{
  g_mutex_lock (&self->pending_lock);
  self->n_pending++;
  g_mutex_unlock (&self->pending_lock);
}

static void
pending_end (AppChatStore *self)
{
  g_mutex_lock (&self->pending_lock);
  if (--self->n_pending == 0)
    g_cond_broadcast (&self->pending_cond);
  g_mutex_unlock (&self->pending_lock);
}

typedef struct
{
  char    *id;
  char    *path;
  GBytes  *data;              /* what to write; NULL removes the file */
  gboolean purge;             /* removing: the chat is gone, not blank */
  guint64  number;            /* the request's place in the order they were made */
  GPtrArray *dropped_images;  /* images the file refers to no more once this is done */
} FileRequest;

static void
file_request_free (gpointer p)
{
  FileRequest *request = p;

  g_free (request->id);
  g_free (request->path);
  g_clear_pointer (&request->data, g_bytes_unref);
  g_clear_pointer (&request->dropped_images, g_ptr_array_unref);
  g_free (request);
}

static void add_candidate_locked (AppChatStore *self,
                                  const char   *image_id);

static FileRequest *
file_request_new (AppChatStore *self,
                  const char   *id,
                  GBytes       *data)
{
  FileRequest *request = g_new0 (FileRequest, 1);

  request->id = g_strdup (id);
  request->path = chat_path (self, id);
  request->data = data;
  request->number = ++self->last_request;
  return request;
}

/* Any thread. Writes or removes one chat file, unless a newer request for it was done. */
static gboolean
file_request_run (AppChatStore  *self,
                  FileRequest   *request,
                  GError       **error)
{
  gboolean ok = TRUE;
  guint64 *done;
  GStatBuf buf;

  g_mutex_lock (&self->io_lock);

  done = g_hash_table_lookup (self->done, request->id);
  if (done != NULL && *done >= request->number)
    {
      /* What this request would write is out of date; the newer request's outcome says what
       * the file names. */
      g_mutex_unlock (&self->io_lock);
      return TRUE;
    }
  if (done == NULL)
    {
      done = g_new0 (guint64, 1);
      g_hash_table_insert (self->done, g_strdup (request->id), done);
    }
  *done = request->number;

  if (!g_hash_table_contains (self->owned, request->id) && g_lstat (request->path, &buf) == 0 &&
      !request->purge)
    {
      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("%s already exists and is not a chat this app loaded; it is left as it is"),
                   request->path);
      ok = FALSE;
      goto out;
    }

  if (request->data == NULL)
    {
      /* A chat never saved has no file; a file this store did not write is not this chat's. */
      if (!g_hash_table_contains (self->owned, request->id))
        goto out;

      if (g_unlink (request->path) != 0 && errno != ENOENT)
        {
          int saved_errno = errno;

          g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                       _("Cannot delete %s: %s"), request->path, g_strerror (saved_errno));
          ok = FALSE;
          goto out;
        }

      g_hash_table_remove (self->owned, request->id);
      goto out;
    }

  if (g_mkdir_with_parents (self->chats_dir, 0700) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("Cannot create %s: %s"), self->chats_dir, g_strerror (saved_errno));
      ok = FALSE;
      goto out;
    }

  if (!g_file_set_contents_full (request->path,
                                 g_bytes_get_data (request->data, NULL),
                                 g_bytes_get_size (request->data),
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                 error))
    {
      ok = FALSE;
      goto out;
    }

  g_hash_table_add (self->owned, g_strdup (request->id));

out:
  g_mutex_unlock (&self->io_lock);

  /* Only once the file no longer names them may they go: a failed write leaves a file that
   * still does, and they are kept until a write of that chat succeeds. */
  g_mutex_lock (&self->holds_lock);
  if (ok)
    {
      GPtrArray *unwritten = g_hash_table_lookup (self->unwritten, request->id);

      /* what this request or an earlier one dropped: the file on disk is newer than both */
      for (guint i = unwritten ? unwritten->len : 0; i > 0; i--)
        {
          Unwritten *u = g_ptr_array_index (unwritten, i - 1);

          if (u->request <= request->number)
            {
              add_candidate_locked (self, u->image);
              g_ptr_array_remove_index_fast (unwritten, i - 1);
            }
        }
      if (unwritten && unwritten->len == 0)
        g_hash_table_remove (self->unwritten, request->id);
    }
  g_mutex_unlock (&self->holds_lock);
  return ok;
}

static void
file_request_thread (GTask        *task,
                     gpointer      source_object,
                     gpointer      task_data,
                     GCancellable *cancellable)
{
  AppChatStore *self = source_object;
  GError *error = NULL;

  if (file_request_run (self, task_data, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);

  pending_end (self);
}

/* Starts `request` (or, when NULL, has nothing to do) and tells `callback` how it went. */
static void
file_request_start (AppChatStore        *self,
                    FileRequest         *request,
                    gpointer             source_tag,
                    GCancellable        *cancellable,
                    GAsyncReadyCallback  callback,
                    gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, source_tag);
  g_task_set_name (task, "[sightline] chat file");

  if (request == NULL)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }

  g_task_set_task_data (task, request, file_request_free);
  pending_begin (self);
  g_task_run_in_thread (task, file_request_thread);
}

void
app_chat_store_flush (AppChatStore *self)
{
  gboolean more;

  g_return_if_fail (APP_IS_CHAT_STORE (self));

  /* The checks waiting for an idle run now: the main loop may not run again. A write that
   * completes may make more images candidates, so this goes on until nothing is left. */
  do
    {
      GHashTable *candidates;

      g_mutex_lock (&self->holds_lock);
      if (self->collect_source != NULL)
        {
          g_source_destroy (self->collect_source);
          g_clear_pointer (&self->collect_source, g_source_unref);
        }
      candidates = g_steal_pointer (&self->candidates);
      self->candidates = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
      g_mutex_unlock (&self->holds_lock);

      collect_now (self, candidates);

      g_mutex_lock (&self->pending_lock);
      while (self->n_pending > 0)
        g_cond_wait (&self->pending_cond, &self->pending_lock);
      g_mutex_unlock (&self->pending_lock);

      g_mutex_lock (&self->holds_lock);
      more = self->loaded && g_hash_table_size (self->candidates) > 0;
      g_mutex_unlock (&self->holds_lock);
    }
  while (more);
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 */

typedef struct
{
  GPtrArray *chats;           /* AppChat, newest first */
  GPtrArray *errors;          /* "<path>: <why>" */
  GPtrArray *foreign_images;  /* image ids named in the files that were refused */
  gboolean   blocked;         /* a file could not be read at all */
} LoadResult;

static void
load_result_free (gpointer p)
{
  LoadResult *result = p;

  g_ptr_array_unref (result->chats);
  g_ptr_array_unref (result->errors);
  g_ptr_array_unref (result->foreign_images);
  g_free (result);
}

static void
report (LoadResult *result,
        const char *path,
        const char *why)
{
  char *line = g_strdup_printf ("%s: %s", path, why);

  g_ptr_array_add (result->errors, line);
  g_debug ("Cannot load chat %s", line);
}

/* A file the store refuses may still be a chat, cut short or from a newer version: every
 * image id written in it is kept as if a chat referred to it. */
static void
scan_image_ids (LoadResult *result,
                const char *contents,
                gsize       length)
{
  static gsize once;
  static GRegex *regex;
  g_autoptr(GMatchInfo) match = NULL;

  if (g_once_init_enter (&once))
    {
      regex = g_regex_new ("[0-9a-f]{64}\\.[0-9a-z]{1,8}", G_REGEX_RAW | G_REGEX_OPTIMIZE, 0,
                           NULL);
      g_once_init_leave (&once, 1);
    }

  g_regex_match_full (regex, contents, length, 0, 0, &match, NULL);
  while (g_match_info_matches (match))
    {
      g_ptr_array_add (result->foreign_images, g_match_info_fetch (match, 0));
      g_match_info_next (match, NULL);
    }
}

static void
keep_chat_images (LoadResult *result,
                  AppChat    *chat)
{
  g_autoptr(GPtrArray) images = app_chat_collect_images (chat);

  for (guint i = 0; i < images->len; i++)
    g_ptr_array_add (result->foreign_images, g_strdup (g_ptr_array_index (images, i)));
}

/* A refusal of vl2-input.h in words the app translates; other errors (the system's, json-glib's)
 * as they are. The line it ends up in already names the file. */
static void
input_error (GError **error,
             GError  *local)
{
  if (local->domain != VL2_INPUT_ERROR)
    {
      g_propagate_error (error, g_error_copy (local));
      return;
    }
  switch ((Vl2InputError) local->code)
    {
    case VL2_INPUT_ERROR_NOT_REGULAR:
      g_set_error_literal (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                           _("not a regular file"));
      return;
    case VL2_INPUT_ERROR_TOO_LARGE:
      {
        g_autofree char *limit = g_format_size_full (VL2_CHAT_MAX_BYTES,
                                                     G_FORMAT_SIZE_IEC_UNITS);

        g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                     _("larger than a chat file may be (%s)"), limit);
        return;
      }
    case VL2_INPUT_ERROR_TOO_DEEP:
      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
                   _("JSON nested more than %d levels deep"), VL2_JSON_MAX_DEPTH);
      return;
    default:
      g_set_error_literal (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO, local->message);
      return;
    }
}

/* *contents is set whenever the file could be read, even when it is no chat. */
static AppChat *
load_file (const char  *path,
           char       **contents,
           gsize       *length_out,
           GError     **error)
{
  g_autoptr(GError) local = NULL;
  AppChat *chat;
  gsize length;

  /* Never waits on a named pipe, and never reads more than a chat can be (a link to
   * /dev/zero would not end); a file refused here is not read at all. */
  if (!vl2_input_read (path, VL2_CHAT_MAX_BYTES, contents, &length, &local))
    {
      input_error (error, local);
      return NULL;
    }
  *length_out = length;

  if (length == 0)
    {
      g_set_error_literal (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
                           _("empty file"));
      return NULL;
    }

  /* json-glib reads up to the first NUL when given a length, and trusts the bytes to
   * be UTF-8; a file of random bytes must not get that far. */
  if (memchr (*contents, '\0', length) != NULL || !g_utf8_validate (*contents, length, NULL))
    {
      g_set_error_literal (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
                           _("not a text file"));
      return NULL;
    }

  chat = app_chat_new_from_text (*contents, length, &local);
  if (chat == NULL)
    input_error (error, local);
  return chat;
}

/* Any thread: reads every chat file, and makes the store the owner of those it read. */
static LoadResult *
load_files (AppChatStore *self)
{
  g_autoptr(GHashTable) seen = NULL;
  g_autoptr(GPtrArray) names = NULL;
  g_autoptr(GError) error = NULL;
  LoadResult *result = g_new0 (LoadResult, 1);
  GDir *dir;
  const char *name;

  result->chats = g_ptr_array_new_with_free_func (g_object_unref);
  result->errors = g_ptr_array_new_with_free_func (g_free);
  result->foreign_images = g_ptr_array_new_with_free_func (g_free);

  dir = g_dir_open (self->chats_dir, 0, &error);
  if (dir == NULL)
    {
      if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        {
          report (result, self->chats_dir, error->message);
          result->blocked = TRUE;
        }
      return result;
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

  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *path = NULL;
      g_autofree char *expected = NULL;
      g_autofree char *key = NULL;
      g_autofree char *contents = NULL;
      g_autoptr(GError) local_error = NULL;
      g_autoptr(AppChat) chat = NULL;
      const char *id;
      const char *other;
      gsize length = 0;

      name = g_ptr_array_index (names, i);
      path = g_build_filename (self->chats_dir, name, NULL);

      chat = load_file (path, &contents, &length, &local_error);
      if (chat == NULL)
        {
          report (result, path, local_error->message);
          if (contents != NULL)
            scan_image_ids (result, contents, length);
          else
            result->blocked = TRUE;
          continue;
        }

      id = app_chat_get_id (chat);
      expected = g_strconcat (id, ".json", NULL);
      if (strcmp (name, expected) != 0)
        {
          g_autofree char *why = g_strdup_printf (_("the chat inside has the id %s"), id);
          report (result, path, why);
          keep_chat_images (result, chat);
          continue;
        }

      key = g_ascii_strdown (id, -1);
      other = g_hash_table_lookup (seen, key);
      if (other != NULL)
        {
          g_autofree char *why = g_strdup_printf (_("the same chat as %s"), other);
          report (result, path, why);
          keep_chat_images (result, chat);
          continue;
        }

      g_hash_table_insert (seen, g_steal_pointer (&key), g_strdup (name));
      g_mutex_lock (&self->io_lock);
      g_hash_table_add (self->owned, g_strdup (id));
      g_mutex_unlock (&self->io_lock);
      g_ptr_array_add (result->chats, g_steal_pointer (&chat));
    }

  g_ptr_array_sort (result->chats, compare_chats_qsort);
  return result;
}

static void
set_saved_images (AppChatStore *self,
                  AppChat      *chat)
{
  GPtrArray *images = app_chat_collect_images (chat);

  if (images->len > 0)
    g_hash_table_insert (self->saved_images, g_strdup (app_chat_get_id (chat)), images);
  else
    {
      g_hash_table_remove (self->saved_images, app_chat_get_id (chat));
      g_ptr_array_unref (images);
    }
}

static gboolean
is_known (AppChatStore *self,
          AppChat      *chat)
{
  GListModel *chats = G_LIST_MODEL (self->chats);
  const char *id = app_chat_get_id (chat);

  if (g_hash_table_contains (self->trash, id) || g_hash_table_contains (self->purged, id))
    return TRUE;

  for (guint i = 0; i < g_list_model_get_n_items (chats); i++)
    {
      g_autoptr(AppChat) other = g_list_model_get_item (chats, i);

      if (g_str_equal (app_chat_get_id (other), id))
        return TRUE;
    }

  return FALSE;
}

static void schedule_collect_locked (AppChatStore *self);

/* Main thread. */
static void
apply_load (AppChatStore *self,
            LoadResult   *result)
{
  g_autoptr(GPtrArray) added = g_ptr_array_new_with_free_func (g_object_unref);

  g_ptr_array_set_size (self->load_errors, 0);
  for (guint i = 0; i < result->errors->len; i++)
    g_ptr_array_add (self->load_errors, g_strdup (g_ptr_array_index (result->errors, i)));

  g_hash_table_remove_all (self->foreign_images);
  for (guint i = 0; i < result->foreign_images->len; i++)
    g_hash_table_add (self->foreign_images,
                      g_strdup (g_ptr_array_index (result->foreign_images, i)));
  self->sweep_blocked = result->blocked;

  /* A chat already here was started or saved while the files were read: it is the newer. */
  for (guint i = 0; i < result->chats->len; i++)
    {
      AppChat *chat = g_ptr_array_index (result->chats, i);

      if (is_known (self, chat))
        continue;
      set_saved_images (self, chat);
      g_ptr_array_add (added, g_object_ref (chat));
    }

  if (g_list_model_get_n_items (G_LIST_MODEL (self->chats)) == 0)
    {
      g_list_store_splice (self->chats, 0, 0, added->pdata, added->len);
    }
  else
    {
      for (guint i = 0; i < added->len; i++)
        g_list_store_insert_sorted (self->chats, g_ptr_array_index (added, i), compare_chats,
                                    NULL);
    }

  if (!self->loaded)
    {
      self->loaded = TRUE;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LOADED]);
    }

  /* The image checks asked for before the chats were known can run now. */
  g_mutex_lock (&self->holds_lock);
  if (g_hash_table_size (self->candidates) > 0)
    schedule_collect_locked (self);
  g_mutex_unlock (&self->holds_lock);
}

void
app_chat_store_load (AppChatStore *self)
{
  LoadResult *result;

  g_return_if_fail (APP_IS_CHAT_STORE (self));

  /* Loading again starts over from what is on disk. */
  g_list_store_remove_all (self->chats);
  g_hash_table_remove_all (self->trash);
  g_hash_table_remove_all (self->saved_images);
  g_hash_table_remove_all (self->purged);
  g_mutex_lock (&self->io_lock);
  g_hash_table_remove_all (self->owned);
  g_mutex_unlock (&self->io_lock);

  result = load_files (self);
  apply_load (self, result);
  load_result_free (result);
}

static void
load_thread (GTask        *task,
             gpointer      source_object,
             gpointer      task_data,
             GCancellable *cancellable)
{
  AppChatStore *self = source_object;

  g_task_return_pointer (task, load_files (self), load_result_free);
  pending_end (self);
}

void
app_chat_store_load_async (AppChatStore        *self,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (APP_IS_CHAT_STORE (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, app_chat_store_load_async);
  g_task_set_name (task, "[sightline] load chats");
  pending_begin (self);
  g_task_run_in_thread (task, load_thread);
}

/* The chats come into the list here, on the caller's thread. */
gboolean
app_chat_store_load_finish (AppChatStore  *self,
                            GAsyncResult  *result,
                            GError       **error)
{
  LoadResult *loaded;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  loaded = g_task_propagate_pointer (G_TASK (result), error);
  if (loaded == NULL)
    return FALSE;

  apply_load (self, loaded);
  load_result_free (loaded);
  return TRUE;
}

/* Borrowed; one line per file that could not be loaded by the last load. */
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

/* ---------------------------------------------------------------------------------------------
 * Saving and deleting
 */

/* Until `request` is done, its file may still name the images it drops. */
static void
keep_unwritten (AppChatStore *self,
                FileRequest  *request)
{
  GPtrArray *unwritten;

  if (request->dropped_images->len == 0)
    return;

  g_mutex_lock (&self->holds_lock);
  unwritten = g_hash_table_lookup (self->unwritten, request->id);
  if (unwritten == NULL)
    {
      unwritten = g_ptr_array_new_with_free_func (unwritten_free);
      g_hash_table_insert (self->unwritten, g_strdup (request->id), unwritten);
    }
  for (guint i = 0; i < request->dropped_images->len; i++)
    {
      Unwritten *u = g_new0 (Unwritten, 1);

      u->image = g_strdup (g_ptr_array_index (request->dropped_images, i));
      u->request = request->number;
      g_ptr_array_add (unwritten, u);
    }
  g_mutex_unlock (&self->holds_lock);
}

/* The images the chat's file referred to and `chat` no longer does (NULL: the file goes), which
 * may have been the last references to them: once the request is done, they are candidates. */
static void
update_saved_images (AppChatStore *self,
                     FileRequest  *request,
                     AppChat      *chat)
{
  GPtrArray *before = g_hash_table_lookup (self->saved_images, request->id);
  g_autoptr(GPtrArray) now = chat != NULL ? app_chat_collect_images (chat) : NULL;

  request->dropped_images = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; before && i < before->len; i++)
    {
      const char *image = g_ptr_array_index (before, i);

      if (now == NULL || !g_ptr_array_find_with_equal_func (now, image, g_str_equal, NULL))
        g_ptr_array_add (request->dropped_images, g_strdup (image));
    }

  if (now != NULL && now->len > 0)
    g_hash_table_insert (self->saved_images, g_strdup (request->id), g_steal_pointer (&now));
  else
    g_hash_table_remove (self->saved_images, request->id);
}

static GBytes *
chat_to_bytes (AppChat *chat)
{
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) node = app_chat_to_json (chat);
  char *data;
  gsize length;

  data = app_json_to_data (node, TRUE, &length);
  return g_bytes_new_take (data, length);
}

/* The main thread's part of a save. FALSE with `error` set when the chat cannot be saved;
 * TRUE with *request NULL when there is nothing to write. */
static gboolean
prepare_save (AppChatStore           *self,
              AppChat                *chat,
              AppChatStoreSaveFlags   flags,
              FileRequest           **request,
              GError                **error)
{
  const char *id = app_chat_get_id (chat);
  gboolean blank;
  guint position;

  *request = NULL;

  if (!g_uuid_string_is_valid (id))
    {
      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("“%s” is not a valid chat id"), id);
      return FALSE;
    }

  /* An answer finishing after its chat was deleted for good must not bring the file back. */
  if (g_hash_table_contains (self->purged, id))
    return TRUE;

  if (!(flags & APP_CHAT_STORE_SAVE_KEEP_PLACE))
    app_chat_touch (chat);

  /* A trashed chat may still be saved (an answer finishing after the person deleted it);
   * it stays hidden. */
  if (!g_hash_table_contains (self->trash, id))
    {
      if (g_list_store_find (self->chats, chat, &position))
        {
          if (position != 0 && !(flags & APP_CHAT_STORE_SAVE_KEEP_PLACE))
            {
              g_object_ref (chat);
              g_list_store_remove (self->chats, position);
              g_list_store_insert (self->chats, 0, chat);
              g_object_unref (chat);
            }
        }
      else if (flags & APP_CHAT_STORE_SAVE_KEEP_PLACE)
        {
          g_list_store_insert_sorted (self->chats, chat, compare_chats, NULL);
        }
      else
        {
          g_list_store_insert (self->chats, 0, chat);
        }
    }

  /* Nothing in it worth a file; a file it had goes (if this store wrote it). */
  blank = app_chat_is_blank (chat);
  *request = file_request_new (self, id, blank ? NULL : chat_to_bytes (chat));
  update_saved_images (self, *request, blank ? NULL : chat);
  keep_unwritten (self, *request);
  return TRUE;
}

gboolean
app_chat_store_save (AppChatStore  *self,
                     AppChat       *chat,
                     GError       **error)
{
  FileRequest *request;
  gboolean ok;

  g_return_val_if_fail (APP_IS_CHAT_STORE (self), FALSE);
  g_return_val_if_fail (APP_IS_CHAT (chat), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!prepare_save (self, chat, APP_CHAT_STORE_SAVE_DEFAULT, &request, error))
    return FALSE;
  if (request == NULL)
    return TRUE;

  ok = file_request_run (self, request, error);
  file_request_free (request);
  return ok;
}

void
app_chat_store_save_async (AppChatStore          *self,
                           AppChat               *chat,
                           AppChatStoreSaveFlags  flags,
                           GCancellable          *cancellable,
                           GAsyncReadyCallback    callback,
                           gpointer               user_data)
{
  FileRequest *request = NULL;
  GError *error = NULL;

  g_return_if_fail (APP_IS_CHAT_STORE (self));
  g_return_if_fail (APP_IS_CHAT (chat));

  if (!prepare_save (self, chat, flags, &request, &error))
    {
      g_task_report_error (self, callback, user_data, app_chat_store_save_async, error);
      return;
    }

  file_request_start (self, request, app_chat_store_save_async, cancellable, callback,
                      user_data);
}

gboolean
app_chat_store_save_finish (AppChatStore  *self,
                            GAsyncResult  *result,
                            GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
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

/* The main thread's part of a purge: the chat leaves for good, its images may go with it. */
static FileRequest *
prepare_purge (AppChatStore *self,
               AppChat      *chat)
{
  g_autoptr(GPtrArray) images = app_chat_collect_images (chat);
  const char *id = app_chat_get_id (chat);
  FileRequest *request;
  guint position;

  if (g_list_store_find (self->chats, chat, &position))
    g_list_store_remove (self->chats, position);
  if (g_hash_table_lookup (self->trash, id) == chat)
    g_hash_table_remove (self->trash, id);
  g_hash_table_add (self->purged, g_strdup (id));

  request = file_request_new (self, id, NULL);
  request->purge = TRUE;
  update_saved_images (self, request, NULL);
  /* what the chat had beside its file (an unsaved draft's attachments) goes as well */
  for (guint i = 0; i < images->len; i++)
    {
      const char *image = g_ptr_array_index (images, i);

      if (!g_ptr_array_find_with_equal_func (request->dropped_images, image, g_str_equal, NULL))
        g_ptr_array_add (request->dropped_images, g_strdup (image));
    }
  keep_unwritten (self, request);
  return request;
}

gboolean
app_chat_store_purge (AppChatStore  *self,
                      AppChat       *chat,
                      GError       **error)
{
  FileRequest *request;
  gboolean ok;

  g_return_val_if_fail (APP_IS_CHAT_STORE (self), FALSE);
  g_return_val_if_fail (APP_IS_CHAT (chat), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  request = prepare_purge (self, chat);
  ok = file_request_run (self, request, error);
  file_request_free (request);
  return ok;
}

void
app_chat_store_purge_async (AppChatStore        *self,
                            AppChat             *chat,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  g_return_if_fail (APP_IS_CHAT_STORE (self));
  g_return_if_fail (APP_IS_CHAT (chat));

  file_request_start (self, prepare_purge (self, chat), app_chat_store_purge_async,
                      cancellable, callback, user_data);
}

gboolean
app_chat_store_purge_finish (AppChatStore  *self,
                             GAsyncResult  *result,
                             GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
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

  /* Held before looking: an image found here cannot be cleaned away before the caller has it. */
  app_chat_store_hold_image (self, id);

  /* The name is the content: a file of the right size is this image already. One of
   * another size was cut short by something else and is safe to replace. */
  if (g_stat (path, &buf) == 0 && S_ISREG (buf.st_mode) && (gsize)buf.st_size == size)
    return g_steal_pointer (&id);

  if (g_mkdir_with_parents (self->images_dir, 0700) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("Cannot create %s: %s"), self->images_dir, g_strerror (saved_errno));
      app_chat_store_release_image (self, id);
      return NULL;
    }

  if (!g_file_set_contents_full (path, (const char *)data, size,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                 error))
    {
      app_chat_store_release_image (self, id);
      return NULL;
    }

  return g_steal_pointer (&id);
}

static void
image_too_large (GError    **error,
                 const char *name)
{
  g_autofree char *limit = g_format_size_full (VL2_IMAGE_FILE_MAX_BYTES, G_FORMAT_SIZE_IEC_UNITS);

  g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
               _("%s is larger than an image file may be (%s)"), name, limit);
}

GBytes *
app_chat_store_read_image_file (GFile         *file,
                                GCancellable  *cancellable,
                                GError       **error)
{
  g_autofree char *path = NULL;
  g_autofree char *name = NULL;
  g_autoptr(GFileInfo) info = NULL;
  char *contents = NULL;
  gsize length;

  g_return_val_if_fail (G_IS_FILE (file), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  name = g_file_get_parse_name (file);
  path = g_file_get_path (file);
  if (path != NULL)
    {
      /* image-file's reading, with its refusals in the words this file's callers expect */
      g_autoptr(GError) local = NULL;
      GBytes *bytes = image_file_read (path, &local);

      if (bytes != NULL)
        return bytes;
      if (g_error_matches (local, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_NOT_REGULAR))
        g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                     _("%s is not a regular file"), name);
      else if (g_error_matches (local, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_TOO_LARGE))
        image_too_large (error, name);
      else if (g_error_matches (local, IMAGE_FILE_ERROR, IMAGE_FILE_ERROR_NOT_FOUND))
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, local->message);
      else
        g_propagate_error (error, g_steal_pointer (&local));
      return NULL;
    }

  /* elsewhere than on this computer (GIO's other locations): the same checks, asked first */
  info = g_file_query_info (file, G_FILE_ATTRIBUTE_STANDARD_TYPE "," G_FILE_ATTRIBUTE_STANDARD_SIZE,
                            G_FILE_QUERY_INFO_NONE, cancellable, error);
  if (info == NULL)
    return NULL;
  if (g_file_info_get_file_type (info) != G_FILE_TYPE_REGULAR)
    {
      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_IO,
                   _("%s is not a regular file"), name);
      return NULL;
    }
  if ((guint64) g_file_info_get_size (info) > VL2_IMAGE_FILE_MAX_BYTES)
    {
      image_too_large (error, name);
      return NULL;
    }
  if (!g_file_load_contents (file, cancellable, &contents, &length, NULL, error))
    return NULL;
  if (length > VL2_IMAGE_FILE_MAX_BYTES)
    {
      g_free (contents);
      image_too_large (error, name);
      return NULL;
    }
  return g_bytes_new_take (contents, length);
}

char *
app_chat_store_import_image_file (AppChatStore  *self,
                                  GFile         *file,
                                  GError       **error)
{
  g_autoptr(GBytes) bytes = NULL;

  g_return_val_if_fail (APP_IS_CHAT_STORE (self), NULL);
  g_return_val_if_fail (G_IS_FILE (file), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  bytes = app_chat_store_read_image_file (file, NULL, error);
  if (bytes == NULL)
    return NULL;
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

/* ---------------------------------------------------------------------------------------------
 * Deleting the images nothing refers to
 */

void
app_chat_store_hold_image (AppChatStore *self,
                           const char   *image_id)
{
  guint count;

  g_return_if_fail (APP_IS_CHAT_STORE (self));
  g_return_if_fail (image_id != NULL);

  g_mutex_lock (&self->holds_lock);
  count = GPOINTER_TO_UINT (g_hash_table_lookup (self->holds, image_id));
  g_hash_table_insert (self->holds, g_strdup (image_id), GUINT_TO_POINTER (count + 1));
  g_mutex_unlock (&self->holds_lock);
}

void
app_chat_store_release_image (AppChatStore *self,
                              const char   *image_id)
{
  guint count;

  g_return_if_fail (APP_IS_CHAT_STORE (self));
  g_return_if_fail (image_id != NULL);

  g_mutex_lock (&self->holds_lock);
  count = GPOINTER_TO_UINT (g_hash_table_lookup (self->holds, image_id));
  if (count == 0)
    g_critical ("Image %s released more often than it was held", image_id);
  else if (count == 1)
    {
      g_hash_table_remove (self->holds, image_id);
      add_candidate_locked (self, image_id);
    }
  else
    g_hash_table_insert (self->holds, g_strdup (image_id), GUINT_TO_POINTER (count - 1));
  g_mutex_unlock (&self->holds_lock);
}

static gboolean
collect_cb (gpointer data)
{
  AppChatStore *self = data;
  GHashTable *candidates;

  g_mutex_lock (&self->holds_lock);
  g_clear_pointer (&self->collect_source, g_source_unref);
  candidates = g_steal_pointer (&self->candidates);
  self->candidates = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_mutex_unlock (&self->holds_lock);

  collect_now (self, candidates);
  return G_SOURCE_REMOVE;
}

/* holds_lock held; any thread. */
static void
schedule_collect_locked (AppChatStore *self)
{
  if (self->collect_source != NULL)
    return;

  self->collect_source = g_idle_source_new ();
  g_source_set_priority (self->collect_source, G_PRIORITY_LOW);
  g_source_set_callback (self->collect_source, collect_cb, self, NULL);
  g_source_set_static_name (self->collect_source, "[sightline] unused images");
  g_source_attach (self->collect_source, self->context);
}

static void
add_candidate_locked (AppChatStore *self,
                      const char   *image_id)
{
  if (!app_chat_image_id_is_valid (image_id))
    return;

  g_hash_table_add (self->candidates, g_strdup (image_id));
  schedule_collect_locked (self);
}

/* Main thread: every image id something the store knows of refers to. */
static GHashTable *
referenced_images (AppChatStore *self)
{
  GHashTable *images = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GListModel *chats = G_LIST_MODEL (self->chats);
  g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func (g_object_unref);
  GHashTableIter iter;
  gpointer key, value;

  for (guint i = 0; i < g_list_model_get_n_items (chats); i++)
    g_ptr_array_add (all, g_list_model_get_item (chats, i));
  g_hash_table_iter_init (&iter, self->trash);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (all, g_object_ref (value));

  for (guint i = 0; i < all->len; i++)
    {
      g_autoptr(GPtrArray) ids = app_chat_collect_images (g_ptr_array_index (all, i));

      for (guint k = 0; k < ids->len; k++)
        g_hash_table_add (images, g_strdup (g_ptr_array_index (ids, k)));
    }

  g_hash_table_iter_init (&iter, self->foreign_images);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_hash_table_add (images, g_strdup (key));

  /* what a file still names because the save that would drop it failed */
  g_mutex_lock (&self->holds_lock);
  g_hash_table_iter_init (&iter, self->unwritten);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      GPtrArray *kept = value;

      for (guint i = 0; i < kept->len; i++)
        g_hash_table_add (images, g_strdup (((Unwritten *)g_ptr_array_index (kept, i))->image));
    }
  g_mutex_unlock (&self->holds_lock);

  return images;
}

typedef struct
{
  GPtrArray  *ids;            /* images to delete unless held */
  GHashTable *referenced;     /* for a sweep: what to keep */
} DeleteImages;

static void
delete_images_free (gpointer p)
{
  DeleteImages *d = p;

  g_clear_pointer (&d->ids, g_ptr_array_unref);
  g_clear_pointer (&d->referenced, g_hash_table_unref);
  g_free (d);
}

/* Any thread. The holds' lock is kept across the check and the unlink, so an import that
 * holds the image first finds it, or finds it gone and writes it again. */
static gboolean
delete_image (AppChatStore *self,
              const char   *image_id)
{
  g_autofree char *path = g_build_filename (self->images_dir, image_id, NULL);
  gboolean deleted = FALSE;

  g_mutex_lock (&self->holds_lock);
  if (!g_hash_table_contains (self->holds, image_id))
    {
      if (g_unlink (path) == 0)
        deleted = TRUE;
      else if (errno != ENOENT)
        g_debug ("Cannot delete %s: %s", path, g_strerror (errno));
    }
  g_mutex_unlock (&self->holds_lock);

  if (deleted)
    g_debug ("Deleted %s: nothing refers to it", path);
  return deleted;
}

static void
delete_images_thread (GTask        *task,
                      gpointer      source_object,
                      gpointer      task_data,
                      GCancellable *cancellable)
{
  AppChatStore *self = source_object;
  DeleteImages *d = task_data;
  guint deleted = 0;

  for (guint i = 0; i < d->ids->len; i++)
    deleted += delete_image (self, g_ptr_array_index (d->ids, i));

  g_task_return_int (task, deleted);
  pending_end (self);
}

/* Main thread: deletes, in a thread, those of `candidates` (taken) nothing refers to. Before
 * the chats are loaded nothing is known, and the candidates wait. */
static void
collect_now (AppChatStore *self,
             GHashTable   *candidates)
{
  g_autoptr(GHashTable) referenced = NULL;
  g_autoptr(GTask) task = NULL;
  DeleteImages *d;
  GHashTableIter iter;
  gpointer key;

  if (g_hash_table_size (candidates) == 0)
    {
      g_hash_table_unref (candidates);
      return;
    }

  if (!self->loaded)
    {
      g_mutex_lock (&self->holds_lock);
      g_hash_table_iter_init (&iter, candidates);
      while (g_hash_table_iter_next (&iter, &key, NULL))
        g_hash_table_add (self->candidates, g_strdup (key));
      g_mutex_unlock (&self->holds_lock);
      g_hash_table_unref (candidates);
      return;
    }

  referenced = referenced_images (self);
  d = g_new0 (DeleteImages, 1);
  d->ids = g_ptr_array_new_with_free_func (g_free);
  g_hash_table_iter_init (&iter, candidates);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      if (!g_hash_table_contains (referenced, key))
        g_ptr_array_add (d->ids, g_strdup (key));
    }
  g_hash_table_unref (candidates);

  if (d->ids->len == 0)
    {
      delete_images_free (d);
      return;
    }

  task = g_task_new (self, NULL, NULL, NULL);
  g_task_set_source_tag (task, collect_now);
  g_task_set_name (task, "[sightline] delete images");
  g_task_set_task_data (task, d, delete_images_free);
  pending_begin (self);
  g_task_run_in_thread (task, delete_images_thread);
}

static void
sweep_thread (GTask        *task,
              gpointer      source_object,
              gpointer      task_data,
              GCancellable *cancellable)
{
  AppChatStore *self = source_object;
  DeleteImages *d = task_data;
  g_autoptr(GError) error = NULL;
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  guint deleted = 0;
  const char *name;
  GDir *dir;

  dir = g_dir_open (self->images_dir, 0, &error);
  if (dir == NULL)
    {
      if (g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_task_return_int (task, 0);
      else
        g_task_return_error (task, g_steal_pointer (&error));
      pending_end (self);
      return;
    }

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;
      GStatBuf buf;

      /* Only what the store itself names: not a save's temporary file, nothing else. */
      if (!app_chat_image_id_is_valid (name) || g_hash_table_contains (d->referenced, name))
        continue;

      path = g_build_filename (self->images_dir, name, NULL);
      if (g_lstat (path, &buf) != 0 || !S_ISREG (buf.st_mode) ||
          now - (gint64)buf.st_mtime < SWEEP_GRACE_SECONDS)
        continue;

      deleted += delete_image (self, name);
    }
  g_dir_close (dir);

  g_task_return_int (task, deleted);
  pending_end (self);
}

void
app_chat_store_sweep_images_async (AppChatStore        *self,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  DeleteImages *d;

  g_return_if_fail (APP_IS_CHAT_STORE (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, app_chat_store_sweep_images_async);
  g_task_set_name (task, "[sightline] sweep images");

  if (!self->loaded || self->sweep_blocked)
    {
      g_task_return_int (task, 0);
      return;
    }

  d = g_new0 (DeleteImages, 1);
  d->referenced = referenced_images (self);
  g_task_set_task_data (task, d, delete_images_free);
  pending_begin (self);
  g_task_run_in_thread (task, sweep_thread);
}

guint
app_chat_store_sweep_images_finish (AppChatStore  *self,
                                    GAsyncResult  *result,
                                    GError       **error)
{
  gssize deleted;

  g_return_val_if_fail (g_task_is_valid (result, self), 0);

  deleted = g_task_propagate_int (G_TASK (result), error);
  return deleted < 0 ? 0 : (guint)deleted;
}
