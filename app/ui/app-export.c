/* app-export.c - a chat written out of Sightline, from the chat's menu.
 *
 * Markdown is for reading and sharing: the chat's title, each message under its author, the
 * questions' images copied into a folder beside the file ("<name> images/image-1.jpg", numbered
 * in order of appearance, each image once) and linked by relative paths, so the folder and the
 * file can move together. Answers are written as their text, grounding tags taken out. JSON
 * is the chat file itself, as the store keeps it (image ids, states, statistics).
 *
 * The text is made on the main thread, from the chat as it is; the files are written in a
 * worker thread (images can be large), the images first and the file last, replacing what the
 * person chose to overwrite.
 */
#define G_LOG_DOMAIN "sightline-export"

#include "app-export.h"
#include "app-json.h"

#include <glib/gi18n.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>

#include "app-grounding.h"

/* "image-3.png": the store's id ends with the file's extension. */
static char *
image_file_name (guint       n,
                 const char *image_id)
{
  const char *ext = strrchr (image_id, '.');

  return g_strdup_printf ("image-%u%s", n, ext ? ext : "");
}

char *
app_export_markdown (AppChat    *chat,
                     const char *images_dir,
                     GPtrArray  *image_ids)
{
  GString *md = g_string_new (NULL);
  g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);
  /* a relative link: spaces and the like escaped, the folder's own letters kept */
  g_autofree char *link_dir = g_uri_escape_string (images_dir, NULL, TRUE);
  guint n;

  g_return_val_if_fail (APP_IS_CHAT (chat), NULL);

  n = app_chat_get_n_messages (chat);
  g_string_append_printf (md, "# %s\n", app_chat_get_title (chat));
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(AppMessage) m = app_chat_get_message (chat, i);
      const char * const *images = app_message_get_images (m);
      g_autofree char *text = app_grounding_plain_text (app_message_get_text (m));
      AppMessageState state = app_message_get_state (m);
      const char *note = app_message_get_note (m);

      g_string_append_printf (md, "\n## %s\n\n", app_message_get_role (m) == APP_ROLE_USER
                                                   ? _("You") : _("Sightline"));
      for (guint k = 0; images && images[k]; k++)
        {
          g_autofree char *name = NULL;
          g_autofree char *alt = NULL;
          guint index;

          if (!g_ptr_array_find_with_equal_func (ids, images[k], g_str_equal, &index))
            {
              g_ptr_array_add (ids, g_strdup (images[k]));
              index = ids->len - 1;
            }
          name = image_file_name (index + 1, images[k]);
          alt = g_strdup_printf (_("Image %u"), index + 1);
          g_string_append_printf (md, "%s![%s](%s/%s)", k ? " " : "", alt, link_dir, name);
        }
      if (images && images[0])
        g_string_append (md, "\n\n");
      if (text[0])
        g_string_append_printf (md, "%s\n", text);
      if (state == APP_MESSAGE_FAILED)
        {
          const char *error = app_message_get_error (m);

          g_string_append (md, "\n*");
          g_string_append_printf (md, _("The answer failed: %s"),
                                  error ? error : _("unknown error"));
          g_string_append (md, "*\n");
        }
      else if (state == APP_MESSAGE_STOPPED)
        {
          g_string_append_printf (md, "\n*%s*\n", _("Stopped before the end."));
        }
      if (note)
        g_string_append_printf (md, "\n*%s*\n", note);
    }
  if (image_ids)
    for (guint i = 0; i < ids->len; i++)
      g_ptr_array_add (image_ids, g_strdup (g_ptr_array_index (ids, i)));
  return g_string_free (md, FALSE);
}

/* ------------------------------------------------------------------------------------------
 * Writing, in a worker thread
 */

typedef struct
{
  char *path;                    /* the file to write */
  char *contents;
  char *images_dir;              /* absolute; NULL without images */
  GPtrArray *sources;            /* image files in the store */
  GPtrArray *names;              /* their names in images_dir */
} ExportJob;

static void
export_job_free (gpointer p)
{
  ExportJob *job = p;

  g_free (job->path);
  g_free (job->contents);
  g_free (job->images_dir);
  g_clear_pointer (&job->sources, g_ptr_array_unref);
  g_clear_pointer (&job->names, g_ptr_array_unref);
  g_free (job);
}

static void
export_thread (GTask        *task,
               gpointer      source,
               gpointer      data,
               GCancellable *cancellable)
{
  ExportJob *job = data;
  GError *error = NULL;

  if (job->images_dir && g_mkdir_with_parents (job->images_dir, 0755) != 0)
    {
      int saved = errno;

      g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (saved), "%s: %s",
                               job->images_dir, g_strerror (saved));
      return;
    }
  for (guint i = 0; job->sources && i < job->sources->len; i++)
    {
      g_autoptr(GFile) from = g_file_new_for_path (g_ptr_array_index (job->sources, i));
      g_autofree char *to_path = g_build_filename (job->images_dir,
                                                   g_ptr_array_index (job->names, i), NULL);
      g_autoptr(GFile) to = g_file_new_for_path (to_path);
      g_autoptr(GError) copy_error = NULL;

      if (g_file_copy (from, to, G_FILE_COPY_OVERWRITE, cancellable, NULL, NULL, &copy_error))
        continue;
      /* an image someone deleted from the store: the text is still worth having */
      if (g_error_matches (copy_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
        {
          g_warning ("exporting: %s", copy_error->message);
          continue;
        }
      g_task_return_error (task, g_steal_pointer (&copy_error));
      return;
    }
  if (!g_file_set_contents (job->path, job->contents, -1, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  g_task_return_pointer (task, g_filename_display_basename (job->path), g_free);
}

void
app_export_async (AppChatStore        *store,
                  AppChat             *chat,
                  AppExportFormat      format,
                  GFile               *file,
                  GCancellable        *cancellable,
                  GAsyncReadyCallback  callback,
                  gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  ExportJob *job;

  g_return_if_fail (APP_IS_CHAT_STORE (store));
  g_return_if_fail (APP_IS_CHAT (chat));
  g_return_if_fail (G_IS_FILE (file));

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, app_export_async);
  job = g_new0 (ExportJob, 1);
  job->path = g_file_get_path (file);
  if (!job->path)
    {
      export_job_free (job);
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                               _("Chats are exported to files on this computer only"));
      return;
    }
  if (format == APP_EXPORT_JSON)
    {
      g_autoptr(JsonNode) node = app_chat_to_json (chat);

      job->contents = app_json_to_data (node, TRUE, NULL);
    }
  else
    {
      g_autofree char *base = g_path_get_basename (job->path);
      g_autofree char *dir = g_path_get_dirname (job->path);
      g_autofree char *stem = g_str_has_suffix (base, ".md")
                                ? g_strndup (base, strlen (base) - 3) : g_strdup (base);
      /* TRANSLATORS: the folder beside an exported chat that holds its images; %s is the
       * file's name without ".md" */
      g_autofree char *images = g_strdup_printf (_("%s images"), stem);
      g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);

      job->contents = app_export_markdown (chat, images, ids);
      if (ids->len)
        {
          job->images_dir = g_build_filename (dir, images, NULL);
          job->sources = g_ptr_array_new_with_free_func (g_free);
          job->names = g_ptr_array_new_with_free_func (g_free);
          for (guint i = 0; i < ids->len; i++)
            {
              const char *id = g_ptr_array_index (ids, i);

              g_ptr_array_add (job->sources, app_chat_store_get_image_path (store, id));
              g_ptr_array_add (job->names, image_file_name (i + 1, id));
            }
        }
    }
  g_task_set_task_data (task, job, export_job_free);
  g_task_run_in_thread (task, export_thread);
}

char *
app_export_finish (GAsyncResult  *result,
                   GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ------------------------------------------------------------------------------------------
 * The save dialog
 */

typedef struct
{
  AppChatStore *store;
  AppChat *chat;
  AppExportFormat format;
  GAsyncReadyCallback callback;
  gpointer user_data;
} Request;

static void
request_free (Request *r)
{
  g_object_unref (r->store);
  g_object_unref (r->chat);
  g_free (r);
}

static void
report_cancelled (GAsyncReadyCallback callback,
                  gpointer            user_data)
{
  g_autoptr(GTask) task = g_task_new (NULL, NULL, callback, user_data);

  g_task_set_source_tag (task, app_export_async);
  g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "%s",
                           _("The export was cancelled"));
}

static void
save_response_cb (GtkNativeDialog *dialog,
                  int              response,
                  Request         *r)
{
  g_autoptr(GFile) file = NULL;

  if (response == GTK_RESPONSE_ACCEPT)
    file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
  if (file)
    app_export_async (r->store, r->chat, r->format, file, NULL, r->callback, r->user_data);
  else
    report_cancelled (r->callback, r->user_data);
  request_free (r);
  g_object_unref (dialog);
}

void
app_export_run (GtkWindow           *parent,
                AppChatStore        *store,
                AppChat             *chat,
                AppExportFormat      format,
                GAsyncReadyCallback  callback,
                gpointer             user_data)
{
  gboolean json = format == APP_EXPORT_JSON;
  GtkFileChooserNative *chooser =
    gtk_file_chooser_native_new (json ? _("Export Chat as JSON") : _("Export Chat as Markdown"),
                                 parent, GTK_FILE_CHOOSER_ACTION_SAVE, _("_Export"),
                                 _("_Cancel"));
  g_autoptr(GtkFileFilter) filter = gtk_file_filter_new ();
  g_autofree char *title = g_strdup (app_chat_get_title (chat));
  g_autofree char *name = NULL;
  Request *r = g_new0 (Request, 1);

  r->store = g_object_ref (store);
  r->chat = g_object_ref (chat);
  r->format = format;
  r->callback = callback;
  r->user_data = user_data;
  gtk_file_filter_set_name (filter, json ? _("JSON") : _("Markdown"));
  gtk_file_filter_add_suffix (filter, json ? "json" : "md");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), filter);
  /* a title can hold what a file name cannot */
  g_strdelimit (title, G_DIR_SEPARATOR_S, '-');
  name = g_strconcat (title[0] == '.' ? "_" : "", title, json ? ".json" : ".md", NULL);
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (chooser), name);
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (chooser), TRUE);
  g_signal_connect (chooser, "response", G_CALLBACK (save_response_cb), r);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}
