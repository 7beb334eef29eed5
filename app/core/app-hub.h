/* app-hub.h - models from the Hugging Face Hub, over HTTP (libsoup 3), resumable and verified.
 *
 * A pull lists a repository at a revision through the Hub's public API
 * (GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true: the commit, and every file
 * with its size, its git blob id and, for files kept in LFS, their sha256), then fetches each
 * file from {endpoint}/{repo}/resolve/{commit}/{path}, pinned to that commit, following the
 * redirects LFS files answer with (to another host, which never sees the token).
 *
 * Files are written as {dest}/.partial/{path} and renamed into place only once their size and
 * digest match the listing (sha256 for LFS files, the git blob id for the others). A second
 * pull resumes a partial file with an HTTP Range request (a server that answers 200 instead
 * of 206 restarts that file), and the last thing written is the install marker
 * ({dest}/APP_HUB_MARKER): a folder without it is never a model. Transient failures (a
 * dropped connection, 5xx, 429) are retried a bounded number of times with exponential
 * backoff; the others end the pull with one line that says what happened and what to do.
 * One pull at a time writes a folder (a lock on the folder, shared with `vl2 pull`).
 *
 * This is GLib, GIO, json-glib and libsoup only: `vl2 pull` and the app share it. The pull
 * itself is synchronous and belongs on a worker thread; AppDownload (app-download.h) runs one
 * for the UI.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define APP_HUB_ERROR (app_hub_error_quark ())
GQuark app_hub_error_quark (void);

typedef enum {
  APP_HUB_ERROR_INVALID,       /* a malformed repository id, revision or listing */
  APP_HUB_ERROR_UNAUTHORIZED,  /* 401/403: gated or private, a token is needed (or wrong) */
  APP_HUB_ERROR_NOT_FOUND,     /* 404: no such repository, revision or file */
  APP_HUB_ERROR_SERVER,        /* 5xx or 429 still failing after the retries */
  APP_HUB_ERROR_NETWORK,       /* no connection, still failing after the retries */
  APP_HUB_ERROR_NO_SPACE,      /* not enough free space, or the disk filled up (resumable) */
  APP_HUB_ERROR_INTEGRITY,     /* a file's size or digest kept disagreeing with the listing */
  APP_HUB_ERROR_FILE,          /* the destination cannot be written */
  APP_HUB_ERROR_BUSY,          /* another pull (this process or another) writes the folder */
} AppHubError;

/* The file whose presence says a folder holds a complete, verified download: a JSON record of
 * the repository, commit and files. Written last. */
#define APP_HUB_MARKER ".sightline-download.json"

typedef enum {
  APP_DOWNLOAD_QUEUED,
  APP_DOWNLOAD_DOWNLOADING,
  APP_DOWNLOAD_VERIFYING,
  APP_DOWNLOAD_PAUSED,
  APP_DOWNLOAD_FAILED,
  APP_DOWNLOAD_INSTALLED,
} AppDownloadState;

typedef struct {
  const char *endpoint;      /* NULL: $HF_ENDPOINT, else https://huggingface.co */
  const char *token;         /* NULL: $HF_TOKEN (an empty string: no token at all) */
  guint max_attempts;        /* per file; 0: 5 */
  guint retry_delay_ms;      /* the first backoff, doubled each time; 0: 1000 */
  guint64 free_space_margin; /* kept free beyond the remaining bytes; 0: the default */
} AppHubOptions;

typedef struct {
  AppDownloadState state;    /* DOWNLOADING or VERIFYING */
  guint64 done_bytes;        /* of the whole repository, including files already present */
  guint64 total_bytes;
  const char *file;          /* the file in progress */
  guint file_index;          /* 0-based */
  guint n_files;
  const char *commit;        /* the commit the listing pinned, once known */
} AppHubProgress;

/* Called on the pulling thread after every chunk read or hashed (at most 256 KiB); keep it
 * cheap. */
typedef void (*AppHubProgressFunc) (const AppHubProgress *progress,
                                    gpointer              user_data);

/* Downloads `repo` ("owner/name") at `revision` (NULL: "main") into `dest`, creating it, and
 * returns once every file is verified and the marker written. An already complete `dest` at
 * the same commit returns at once. Cancelling leaves the partial files for the next pull. */
gboolean   app_hub_pull_sync       (const char           *repo,
                                    const char           *revision,
                                    const char           *dest,
                                    const AppHubOptions  *options,
                                    AppHubProgressFunc    progress,
                                    gpointer              user_data,
                                    GCancellable         *cancellable,
                                    GError              **error);

/* `models_dir`/owner--name, the folder a repository downloads to by default. NULL and an error
 * for a malformed id. */
char      *app_hub_default_dest    (const char           *models_dir,
                                    const char           *repo,
                                    GError              **error);

/* Whether `dir` holds a complete download (its marker). Fills `repo` and `commit` if asked. */
gboolean   app_hub_is_installed    (const char           *dir,
                                    char                **repo,
                                    char                **commit);

/* Whether a disk with `free_bytes` free can take `needed` more bytes and keep the margin
 * (options->free_space_margin, or 1 % of `needed` plus 256 MiB). */
gboolean   app_hub_check_space     (guint64               needed,
                                    guint64               free_bytes,
                                    const AppHubOptions  *options,
                                    const char           *dest,
                                    GError              **error);

G_END_DECLS
