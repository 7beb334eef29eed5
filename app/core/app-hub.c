/* app-hub.c - a resumable, verified pull of a Hugging Face Hub repository (libsoup 3).
 *
 * Data flow of one pull:
 *
 *   listing   GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true  -> commit + files
 *   space     remaining bytes (sizes minus what .partial/ already holds) against the free
 *             space of the destination's file system
 *   per file  {dest}/{path} present with the listed size: done (it was verified before its
 *             rename). Otherwise {dest}/.partial/{path}: hash what it holds, then
 *             GET {endpoint}/{repo}/resolve/{commit}/{path} with "Range: bytes={held}-",
 *             append (206) or restart (200), hashing as the bytes arrive; compare size and
 *             digest; fsync; rename into place
 *   marker    {dest}/APP_HUB_MARKER, written (atomically) last
 *
 * The listing and the digests are what huggingface_hub uses: "lfs.sha256" for LFS files,
 * and for the others "blobId", the git object id (sha1 of "blob {size}\0" + content).
 *
 * The token goes to the endpoint's own host only: redirects are followed here, one hop at a
 * time, so the Authorization header is added per hop (LFS files redirect to a CDN host).
 * Content decoding is off: byte counts and Range offsets are the file's own.
 *
 * Everything the network sends is bounded: the listing's size, the number of files, path
 * shapes (no "..", no absolute paths), redirects, and the bytes of each file (never more
 * than the listing's size).
 */
#define G_LOG_DOMAIN "sightline-hub"

#include "app-hub.h"

#include "app-config.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "vl2-input.h"

G_DEFINE_QUARK (app-hub-error-quark, app_hub_error)

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define MAX_LISTING_BYTES (32u << 20)
#define MAX_FILES 100000
#define MAX_REDIRECTS 10
#define MAX_ERROR_BODY (64u << 10)
#define READ_CHUNK (256u << 10)
#define MAX_BACKOFF_MS 30000
#define DEFAULT_ATTEMPTS 5
#define DEFAULT_DELAY_MS 1000
#define DEFAULT_MARGIN (256ull << 20)

typedef struct {
  char *path;           /* relative, '/'-separated, checked */
  guint64 size;
  char *sha256;         /* LFS files; lowercase hex */
  char *blob_id;        /* git blob sha1; used when there is no sha256 */
} HubFile;

typedef struct {
  /* settings */
  char *repo;
  char *revision;
  char *dest;
  char *endpoint;       /* no trailing slash */
  GUri *endpoint_uri;
  char *token;          /* NULL: none */
  guint max_attempts;
  guint retry_delay_ms;
  const AppHubOptions *options;
  AppHubProgressFunc progress;
  gpointer user_data;
  GCancellable *cancellable;
  SoupSession *session;

  /* the listing */
  char *commit;
  GPtrArray *files;     /* HubFile */
  guint64 total;

  /* progress */
  guint64 done_before;  /* bytes of the files before the current one */
  guint file_index;
} Pull;

static void
hub_file_free (gpointer p)
{
  HubFile *f = p;

  g_free (f->path);
  g_free (f->sha256);
  g_free (f->blob_id);
  g_free (f);
}

static void
pull_clear (Pull *p)
{
  g_free (p->repo);
  g_free (p->revision);
  g_free (p->dest);
  g_free (p->endpoint);
  g_clear_pointer (&p->endpoint_uri, g_uri_unref);
  if (p->token)
    memset (p->token, 0, strlen (p->token));
  g_free (p->token);
  g_clear_object (&p->session);
  g_free (p->commit);
  g_clear_pointer (&p->files, g_ptr_array_unref);
}

/* ------------------------------------------------------------------------------------------
 * Names: repository ids, revisions, paths
 */

static gboolean
name_char_ok (char c)
{
  return g_ascii_isalnum (c) || c == '-' || c == '_' || c == '.';
}

/* The Hub's rule: owner/name, each of letters, digits, '-', '_', '.', not starting or ending
 * with '-' or '.', no "--" or "..", at most 96 characters. */
static gboolean
repo_id_valid (const char *repo)
{
  const char *slash = repo ? strchr (repo, '/') : NULL;

  if (!slash || strchr (slash + 1, '/') || strlen (repo) > 96)
    return FALSE;
  for (int part = 0; part < 2; part++)
    {
      const char *s = part == 0 ? repo : slash + 1;
      const char *e = part == 0 ? slash : repo + strlen (repo);

      if (e == s || s[0] == '-' || s[0] == '.' || e[-1] == '-' || e[-1] == '.')
        return FALSE;
      for (const char *c = s; c < e; c++)
        if (!name_char_ok (*c) || (c + 1 < e && (c[0] == '-' || c[0] == '.') && c[1] == c[0]))
          return FALSE;
    }
  return TRUE;
}

static gboolean
revision_valid (const char *rev)
{
  if (!rev || !*rev || strlen (rev) > 256 || strstr (rev, ".."))
    return FALSE;
  for (const char *c = rev; *c; c++)
    if (!name_char_ok (*c) && *c != '/')
      return FALSE;
  return TRUE;
}

/* A path from the listing, to be joined under the destination: relative, no empty, "." or
 * ".." components, no control characters or backslashes, not inside the partial folder. */
static gboolean
path_valid (const char *path)
{
  g_auto(GStrv) parts = NULL;

  if (!path || !*path || path[0] == '/' || strlen (path) > 1024 || !g_utf8_validate (path, -1, NULL))
    return FALSE;
  for (const char *c = path; *c; c++)
    if ((guchar) *c < 0x20 || *c == '\\' || *c == 0x7f)
      return FALSE;
  parts = g_strsplit (path, "/", -1);
  for (guint i = 0; parts[i]; i++)
    if (!parts[i][0] || !strcmp (parts[i], ".") || !strcmp (parts[i], ".."))
      return FALSE;
  return strcmp (parts[0], ".partial") != 0 && strcmp (path, APP_HUB_MARKER) != 0;
}

static gboolean
hex_valid (const char *s,
           gsize       len)
{
  if (!s || strlen (s) != len)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isxdigit (s[i]))
      return FALSE;
  return TRUE;
}

char *
app_hub_default_dest (const char  *models_dir,
                      const char  *repo,
                      GError     **error)
{
  g_autofree char *leaf = NULL;
  const char *slash;

  if (!repo_id_valid (repo))
    {
      g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                   "“%s” is not a model id: it is written owner/name, like "
                   "deepseek-ai/deepseek-vl2-tiny", repo ? repo : "");
      return NULL;
    }
  slash = strchr (repo, '/');
  leaf = g_strdup_printf ("%.*s--%s", (int) (slash - repo), repo, slash + 1);
  return g_build_filename (models_dir, leaf, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Messages: one line each, naming what failed and what to do
 */

static char *
human_size (guint64 bytes)
{
  return g_format_size_full (bytes, G_FORMAT_SIZE_DEFAULT);
}

gboolean
app_hub_check_space (guint64               needed,
                     guint64               free_bytes,
                     const AppHubOptions  *options,
                     const char           *dest,
                     GError              **error)
{
  guint64 margin = options && options->free_space_margin ? options->free_space_margin
                                                         : needed / 100 + DEFAULT_MARGIN;
  g_autofree char *n = NULL, *f = NULL;

  if (needed <= free_bytes && free_bytes - needed >= margin)
    return TRUE;
  n = human_size (needed + margin);
  f = human_size (free_bytes);
  g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NO_SPACE,
               "Not enough free space in %s: the download needs %s and %s are free; "
               "free some space or choose another folder", dest, n, f);
  return FALSE;
}

/* An HTTP status that ends the pull (after the retries, for the transient ones). */
static void
set_http_error (Pull         *p,
                SoupMessage  *msg,
                const char   *what,
                GError      **error)
{
  guint status = soup_message_get_status (msg);
  SoupMessageHeaders *h = soup_message_get_response_headers (msg);
  const char *code = soup_message_headers_get_one (h, "X-Error-Code");
  const char *reason = soup_message_get_reason_phrase (msg);
  g_autofree char *host = g_strdup (g_uri_get_host (soup_message_get_uri (msg)));

  if ((code && !strcmp (code, "RepoNotFound")) || (status == 401 && !p->token && !code))
    g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NOT_FOUND,
                 "%s: no such model on %s, or it is private (HTTP %u); check the name, or "
                 "set a Hugging Face token if it is yours", p->repo, host, status);
  else if (status == 401 || status == 403 || (code && !strcmp (code, "GatedRepo")))
    g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_UNAUTHORIZED,
                 "%s: %s refused access (HTTP %u %s); the model is gated or private: accept "
                 "its terms on its page and use a Hugging Face token that may read it",
                 p->repo, host, status, reason ? reason : "");
  else if ((code && !strcmp (code, "RevisionNotFound")) || (status == 404 && !strcmp (what, "list")))
    g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NOT_FOUND,
                 "%s: no revision “%s” on %s (HTTP %u)", p->repo, p->revision, host, status);
  else if (status == 404)
    g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NOT_FOUND,
                 "%s: %s is missing on %s (HTTP 404)", p->repo, what, host);
  else if (status >= 500 || status == 429)
    g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_SERVER,
                 "%s: %s answered HTTP %u %s %u times; try again later", p->repo, host, status,
                 reason ? reason : "", p->max_attempts);
  else
    g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_SERVER,
                 "%s: unexpected answer from %s for %s (HTTP %u %s)", p->repo, host, what,
                 status, reason ? reason : "");
}

static gboolean
status_transient (guint status)
{
  return status >= 500 || status == 429 || status == 408;
}

/* A GIO/libsoup error worth retrying: the connection, not the request. */
static gboolean
error_transient (const GError *e)
{
  if (g_error_matches (e, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return FALSE;
  return e->domain == G_IO_ERROR || e->domain == G_RESOLVER_ERROR || e->domain == SOUP_SESSION_ERROR ||
         e->domain == G_TLS_ERROR;
}

static void
set_network_error (Pull         *p,
                   const GError *e,
                   GError      **error)
{
  g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NETWORK,
               "%s: cannot download from %s: %s (after %u attempts); check the connection and "
               "try again, the download resumes", p->repo, g_uri_get_host (p->endpoint_uri),
               e->message, p->max_attempts);
}

/* Sleeps the backoff of attempt `n` (1-based), waking early when cancelled. */
static gboolean
backoff (Pull    *p,
         guint    n,
         GError **error)
{
  guint64 ms = p->retry_delay_ms;

  for (guint i = 1; i < n && ms < MAX_BACKOFF_MS; i++)
    ms *= 2;
  ms = MIN (ms, MAX_BACKOFF_MS);
  for (guint64 slept = 0; slept < ms; slept += 20)
    {
      if (g_cancellable_set_error_if_cancelled (p->cancellable, error))
        return FALSE;
      g_usleep (MIN (20, ms - slept) * 1000);
    }
  return !g_cancellable_set_error_if_cancelled (p->cancellable, error);
}

/* ------------------------------------------------------------------------------------------
 * HTTP: one request, redirects followed by hand
 */

static gboolean
same_origin (GUri *a,
             GUri *b)
{
  return !g_strcmp0 (g_uri_get_scheme (a), g_uri_get_scheme (b)) &&
         !g_ascii_strcasecmp (g_uri_get_host (a) ? g_uri_get_host (a) : "",
                              g_uri_get_host (b) ? g_uri_get_host (b) : "") &&
         g_uri_get_port (a) == g_uri_get_port (b);
}

/* Sends GET `url` (with "Range: bytes=range_from-" when range_from > 0) and follows
 * redirects. Returns the body stream of the final answer, whatever its status, with *out_msg
 * set; NULL with `error` for a failure to connect. */
static GInputStream *
send_get (Pull          *p,
          const char    *url,
          guint64        range_from,
          SoupMessage  **out_msg,
          GError       **error)
{
  g_autoptr(GUri) uri = g_uri_parse (url, SOUP_HTTP_URI_FLAGS, error);

  if (!uri)
    return NULL;
  for (guint hop = 0; hop <= MAX_REDIRECTS; hop++)
    {
      g_autoptr(SoupMessage) msg = soup_message_new_from_uri ("GET", uri);
      SoupMessageHeaders *h = soup_message_get_request_headers (msg);
      g_autoptr(GInputStream) in = NULL;
      const char *location;
      guint status;

      soup_message_add_flags (msg, SOUP_MESSAGE_NO_REDIRECT);
      soup_message_headers_replace (h, "Accept-Encoding", "identity");
      if (p->token && same_origin (uri, p->endpoint_uri))
        {
          g_autofree char *auth = g_strconcat ("Bearer ", p->token, NULL);
          soup_message_headers_replace (h, "Authorization", auth);
        }
      if (range_from > 0)
        soup_message_headers_set_range (h, range_from, -1);

      in = soup_session_send (p->session, msg, p->cancellable, error);
      if (!in)
        return NULL;
      status = soup_message_get_status (msg);
      location = soup_message_headers_get_one (soup_message_get_response_headers (msg), "Location");
      if (SOUP_STATUS_IS_REDIRECTION (status) && status != 304 && location)
        {
          GUri *next = g_uri_parse_relative (uri, location, SOUP_HTTP_URI_FLAGS, error);

          if (!next)
            return NULL;
          if (g_strcmp0 (g_uri_get_scheme (next), "https") && g_strcmp0 (g_uri_get_scheme (next), "http"))
            {
              g_uri_unref (next);
              g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                           "%s: the server redirected to a non-HTTP address", p->repo);
              return NULL;
            }
          g_input_stream_close (in, NULL, NULL);
          g_uri_unref (uri);
          uri = next;
          continue;
        }
      *out_msg = g_steal_pointer (&msg);
      return g_steal_pointer (&in);
    }
  g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
               "%s: more than %d redirects for %s", p->repo, MAX_REDIRECTS, url);
  return NULL;
}

/* Reads a whole body of at most `max` bytes. */
static GBytes *
read_bounded (GInputStream  *in,
              gsize          max,
              GCancellable  *cancellable,
              GError       **error)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  guint8 chunk[16384];

  for (;;)
    {
      gssize n = g_input_stream_read (in, chunk, sizeof chunk, cancellable, error);

      if (n < 0)
        return NULL;
      if (n == 0)
        break;
      if (buf->len + (gsize) n > max)
        {
          g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                       "the server's answer is larger than %" G_GSIZE_FORMAT " bytes", max);
          return NULL;
        }
      g_byte_array_append (buf, chunk, n);
    }
  return g_byte_array_free_to_bytes (g_steal_pointer (&buf));
}

/* ------------------------------------------------------------------------------------------
 * The listing
 */

static gboolean
parse_listing (Pull    *p,
               GBytes  *body,
               GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  JsonObject *root;
  JsonArray *siblings;
  const char *sha;
  gsize len;
  const char *data = g_bytes_get_data (body, &len);

  if (!vl2_json_load_data (parser, data, len, NULL, NULL) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    goto bad;
  root = json_node_get_object (json_parser_get_root (parser));
  sha = json_object_get_string_member_with_default (root, "sha", NULL);
  if (!hex_valid (sha, 40) || !json_object_has_member (root, "siblings") ||
      !JSON_NODE_HOLDS_ARRAY (json_object_get_member (root, "siblings")))
    goto bad;
  p->commit = g_ascii_strdown (sha, -1);
  siblings = json_object_get_array_member (root, "siblings");
  if (json_array_get_length (siblings) > MAX_FILES)
    goto bad;
  p->files = g_ptr_array_new_with_free_func (hub_file_free);
  for (guint i = 0; i < json_array_get_length (siblings); i++)
    {
      JsonNode *node = json_array_get_element (siblings, i);
      JsonObject *o, *lfs = NULL;
      const char *name, *blob;
      JsonNode *size;
      HubFile *f;

      if (!JSON_NODE_HOLDS_OBJECT (node))
        goto bad;
      o = json_node_get_object (node);
      name = json_object_get_string_member_with_default (o, "rfilename", NULL);
      size = json_object_get_member (o, "size");
      if (json_object_has_member (o, "lfs") && JSON_NODE_HOLDS_OBJECT (json_object_get_member (o, "lfs")))
        lfs = json_object_get_object_member (o, "lfs");
      if (!path_valid (name) || g_hash_table_contains (seen, name))
        {
          g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                       "%s: the listing names a file Sightline will not write: “%s”",
                       p->repo, name ? name : "(none)");
          return FALSE;
        }
      if (!size || json_node_get_value_type (size) != G_TYPE_INT64 || json_node_get_int (size) < 0)
        {
          g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                       "%s: the server's file list has no sizes (it does not support "
                       "?blobs=true); use the Hugging Face Hub or a full mirror", p->repo);
          return FALSE;
        }
      f = g_new0 (HubFile, 1);
      f->path = g_strdup (name);
      f->size = json_node_get_int (size);
      blob = json_object_get_string_member_with_default (o, "blobId", NULL);
      if (lfs)
        {
          const char *sha256 = json_object_get_string_member_with_default (lfs, "sha256", NULL);

          if (!hex_valid (sha256, 64))
            {
              hub_file_free (f);
              goto bad;
            }
          f->sha256 = g_ascii_strdown (sha256, -1);
        }
      else if (hex_valid (blob, 40))
        f->blob_id = g_ascii_strdown (blob, -1);
      g_ptr_array_add (p->files, f);
      g_hash_table_add (seen, f->path);
      if (G_MAXUINT64 - p->total < f->size)
        goto bad;
      p->total += f->size;
    }
  if (p->files->len == 0)
    {
      g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                   "%s: the repository has no files at %s", p->repo, p->revision);
      return FALSE;
    }
  return TRUE;

bad:
  g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
               "%s: the server's file list is not the Hub's (no commit, or files without "
               "names, sizes or digests)", p->repo);
  return FALSE;
}

static gboolean
fetch_listing (Pull    *p,
               GError **error)
{
  g_autofree char *rev = g_uri_escape_string (p->revision, NULL, FALSE);
  g_autofree char *url = g_strdup_printf ("%s/api/models/%s/revision/%s?blobs=true",
                                          p->endpoint, p->repo, rev);

  for (guint attempt = 1;; attempt++)
    {
      g_autoptr(GError) local = NULL;
      g_autoptr(SoupMessage) msg = NULL;
      g_autoptr(GInputStream) in = send_get (p, url, 0, &msg, &local);
      g_autoptr(GBytes) body = NULL;

      if (in && soup_message_get_status (msg) == 200)
        body = read_bounded (in, MAX_LISTING_BYTES, p->cancellable, &local);
      if (body)
        return parse_listing (p, body, error);
      if (local && local->domain == APP_HUB_ERROR)
        {
          g_propagate_error (error, g_steal_pointer (&local));
          return FALSE;
        }
      if (local && !error_transient (local))
        {
          g_propagate_error (error, g_steal_pointer (&local));
          return FALSE;
        }
      if (!local && !status_transient (soup_message_get_status (msg)))
        {
          set_http_error (p, msg, "list", error);
          return FALSE;
        }
      if (attempt >= p->max_attempts)
        {
          if (local)
            set_network_error (p, local, error);
          else
            set_http_error (p, msg, "list", error);
          return FALSE;
        }
      g_debug ("listing attempt %u failed: %s", attempt,
               local ? local->message : soup_message_get_reason_phrase (msg));
      if (!backoff (p, attempt, error))
        return FALSE;
    }
}

/* ------------------------------------------------------------------------------------------
 * Files
 */

typedef struct {
  GChecksum *sha256;
  GChecksum *sha1;      /* git blob id: "blob {size}\0" then the content */
} Digest;

static void
digest_init (Digest        *d,
             const HubFile *f)
{
  d->sha256 = f->sha256 ? g_checksum_new (G_CHECKSUM_SHA256) : NULL;
  d->sha1 = !f->sha256 && f->blob_id ? g_checksum_new (G_CHECKSUM_SHA1) : NULL;
  if (d->sha1)
    {
      g_autofree char *head = g_strdup_printf ("blob %" G_GUINT64_FORMAT, f->size);
      g_checksum_update (d->sha1, (const guchar *) head, strlen (head) + 1);
    }
}

static void
digest_update (Digest       *d,
               const guchar *data,
               gsize         len)
{
  if (d->sha256)
    g_checksum_update (d->sha256, data, len);
  if (d->sha1)
    g_checksum_update (d->sha1, data, len);
}

static gboolean
digest_matches (Digest        *d,
                const HubFile *f)
{
  if (d->sha256)
    return !strcmp (g_checksum_get_string (d->sha256), f->sha256);
  if (d->sha1)
    return !strcmp (g_checksum_get_string (d->sha1), f->blob_id);
  return TRUE;
}

static void
digest_clear (Digest *d)
{
  g_clear_pointer (&d->sha256, g_checksum_free);
  g_clear_pointer (&d->sha1, g_checksum_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Digest, digest_clear)

/* After every chunk: the callers coalesce (AppDownload keeps the latest, vl2 pull redraws
 * ten times a second). */
static void
report (Pull             *p,
        AppDownloadState  state,
        guint64           file_done)
{
  AppHubProgress pr;

  if (!p->progress)
    return;
  pr.state = state;
  pr.done_bytes = p->done_before + file_done;
  pr.total_bytes = p->total;
  pr.file = p->files && p->file_index < p->files->len
              ? ((HubFile *) p->files->pdata[p->file_index])->path : NULL;
  pr.file_index = p->file_index;
  pr.n_files = p->files ? p->files->len : 0;
  pr.commit = p->commit;
  p->progress (&pr, p->user_data);
}

static void
set_write_error (Pull        *p,
                 int          err,
                 const char  *file,
                 GError     **error)
{
  if (err == ENOSPC || err == EFBIG || err == EDQUOT)
    g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_NO_SPACE,
                 "%s: the disk is full (%s, writing %s); free some space and resume, what was "
                 "downloaded is kept", p->repo, g_strerror (err), file);
  else
    g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_FILE,
                 "%s: cannot write %s: %s", p->repo, file, g_strerror (err));
}

static gboolean
write_all (int           fd,
           const guchar *data,
           gsize         len,
           int          *err)
{
  while (len > 0)
    {
      ssize_t n = write (fd, data, len);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          *err = n < 0 ? errno : ENOSPC;
          return FALSE;
        }
      data += n;
      len -= n;
    }
  return TRUE;
}

/* Hashes the first `len` bytes of the partial file (a resumed download). */
static gboolean
hash_partial (Pull          *p,
              const char    *partial,
              guint64        len,
              Digest        *d,
              GError       **error)
{
  g_autofree guchar *buf = g_malloc (READ_CHUNK);
  /* O_NONBLOCK: a named pipe put in its place fails the read instead of waiting forever */
  int fd = g_open (partial, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
  guint64 done = 0;

  if (fd < 0)
    {
      set_write_error (p, errno, partial, error);
      return FALSE;
    }
  while (done < len)
    {
      ssize_t n = read (fd, buf, MIN (READ_CHUNK, len - done));

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int err = n < 0 ? errno : EIO;
          close (fd);
          set_write_error (p, err, partial, error);
          return FALSE;
        }
      digest_update (d, buf, n);
      done += n;
      report (p, APP_DOWNLOAD_VERIFYING, done);
      if (g_cancellable_set_error_if_cancelled (p->cancellable, error))
        {
          close (fd);
          return FALSE;
        }
    }
  close (fd);
  return TRUE;
}

static guint64
file_size_or_zero (const char *path)
{
  GStatBuf st;

  return g_stat (path, &st) == 0 && S_ISREG (st.st_mode) ? (guint64) st.st_size : 0;
}

static gboolean
file_exists_regular (const char *path,
                     guint64    *size)
{
  GStatBuf st;

  if (g_lstat (path, &st) != 0 || !S_ISREG (st.st_mode))
    return FALSE;
  *size = st.st_size;
  return TRUE;
}

typedef enum { TRY_DONE, TRY_RETRY, TRY_FAIL } TryResult;

/* One attempt at one file: resume or restart the partial file, stream the rest into it,
 * verify. `progressed` says whether any new byte arrived (the retry budget restarts then). */
static TryResult
try_file (Pull          *p,
          const HubFile *f,
          const char    *partial,
          const char    *final,
          gboolean      *progressed,
          GError       **error)
{
  g_autofree char *escaped = g_uri_escape_string (f->path, "/", FALSE);
  g_autofree char *url = g_strdup_printf ("%s/%s/resolve/%s/%s", p->endpoint, p->repo,
                                          p->commit, escaped);
  g_autoptr(SoupMessage) msg = NULL;
  g_autoptr(GInputStream) in = NULL;
  g_autofree guchar *buf = NULL;
  g_auto(Digest) digest = { 0 };
  guint64 have = file_size_or_zero (partial);
  guint status;
  int fd = -1, err = 0;
  TryResult result = TRY_RETRY;

  *progressed = FALSE;
  if (have > f->size)
    have = 0;               /* longer than the file: not this file's bytes */
  digest_init (&digest, f);
  if (have > 0 && !hash_partial (p, partial, have, &digest, error))
    return TRY_FAIL;

  if (have < f->size)
    {
      g_autoptr(GError) local = NULL;

      report (p, APP_DOWNLOAD_DOWNLOADING, have);
      in = send_get (p, url, have, &msg, &local);
      if (!in)
        {
          if (local->domain == APP_HUB_ERROR || !error_transient (local))
            {
              g_propagate_error (error, g_steal_pointer (&local));
              return TRY_FAIL;
            }
          g_debug ("%s: %s", f->path, local->message);
          g_propagate_error (error, g_steal_pointer (&local));
          return TRY_RETRY;
        }
      status = soup_message_get_status (msg);
      if (status == 206 && have > 0)
        {
          goffset start = -1, end = -1, total = -1;

          if (!soup_message_headers_get_content_range (soup_message_get_response_headers (msg),
                                                       &start, &end, &total) ||
              (guint64) start != have)
            status = 0;     /* a range we did not ask for: start over below */
        }
      if (status == 200 || status == 416 || status == 0)
        {
          /* The server sends the whole file (it ignores Range, or the range was refused):
           * the partial file starts over. */
          if (have > 0)
            g_debug ("%s: the server answered %u to a Range request; restarting the file",
                     f->path, status);
          if (status != 200)
            {
              g_input_stream_close (in, NULL, NULL);
              g_unlink (partial);
              g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_SERVER,
                           "%s: %s: the server answered a resumed download with HTTP %u",
                           p->repo, f->path, soup_message_get_status (msg));
              return TRY_RETRY;
            }
          have = 0;
          digest_clear (&digest);
          digest_init (&digest, f);
        }
      else if (status != 206)
        {
          if (status_transient (status))
            {
              set_http_error (p, msg, f->path, error);
              return TRY_RETRY;
            }
          set_http_error (p, msg, f->path, error);
          return TRY_FAIL;
        }

      /* O_NONBLOCK: a named pipe in its place is an error (ENXIO), not a wait for a reader */
      fd = g_open (partial, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK |
                   (have > 0 ? O_APPEND : O_TRUNC), 0644);
      if (fd < 0)
        {
          set_write_error (p, errno, partial, error);
          return TRY_FAIL;
        }
      buf = g_malloc (READ_CHUNK);
      while (have < f->size)
        {
          g_autoptr(GError) local2 = NULL;
          gssize n;

          /* a stream with buffered bytes does not look at the cancellable */
          if (g_cancellable_set_error_if_cancelled (p->cancellable, error))
            {
              result = TRY_FAIL;
              goto out;
            }
          n = g_input_stream_read (in, buf, MIN (READ_CHUNK, f->size - have), p->cancellable,
                                   &local2);

          if (n < 0)
            {
              if (g_error_matches (local2, G_IO_ERROR, G_IO_ERROR_CANCELLED) || !error_transient (local2))
                result = TRY_FAIL;
              g_propagate_error (error, g_steal_pointer (&local2));
              goto out;
            }
          if (n == 0)
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_PARTIAL_INPUT,
                           "the connection closed after %" G_GUINT64_FORMAT " of %"
                           G_GUINT64_FORMAT " bytes of %s", have, f->size, f->path);
              goto out;
            }
          if (!write_all (fd, buf, n, &err))
            {
              set_write_error (p, err, f->path, error);
              result = TRY_FAIL;
              goto out;
            }
          digest_update (&digest, buf, n);
          have += n;
          *progressed = TRUE;
          report (p, APP_DOWNLOAD_DOWNLOADING, have);
        }
      if (fsync (fd) != 0)
        {
          set_write_error (p, errno, f->path, error);
          result = TRY_FAIL;
          goto out;
        }
      close (fd);
      fd = -1;
    }

  report (p, APP_DOWNLOAD_VERIFYING, have);
  if (file_size_or_zero (partial) != f->size || !digest_matches (&digest, f))
    {
      g_unlink (partial);
      g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INTEGRITY,
                   "%s: %s kept arriving with other bytes than the Hub lists (%s mismatch); "
                   "try again later", p->repo, f->path,
                   f->sha256 ? "sha256" : f->blob_id ? "git blob id" : "size");
      *progressed = FALSE;
      return TRY_RETRY;
    }
  if (g_rename (partial, final) != 0)
    {
      set_write_error (p, errno, final, error);
      return TRY_FAIL;
    }
  result = TRY_DONE;

out:
  if (fd >= 0)
    close (fd);
  if (in)
    g_input_stream_close (in, NULL, NULL);
  return result;
}

static gboolean
pull_file (Pull          *p,
           const HubFile *f,
           GError       **error)
{
  g_autofree char *final = g_build_filename (p->dest, f->path, NULL);
  g_autofree char *partial = g_build_filename (p->dest, ".partial", f->path, NULL);
  g_autofree char *final_dir = g_path_get_dirname (final);
  g_autofree char *partial_dir = g_path_get_dirname (partial);
  guint64 size;
  guint failures = 0;

  /* A file in place with its size was verified before its rename. */
  if (file_exists_regular (final, &size) && size == f->size)
    return TRUE;
  if (g_mkdir_with_parents (final_dir, 0755) != 0 || g_mkdir_with_parents (partial_dir, 0755) != 0)
    {
      set_write_error (p, errno, final_dir, error);
      return FALSE;
    }
  for (;;)
    {
      g_autoptr(GError) local = NULL;
      gboolean progressed = FALSE;

      switch (try_file (p, f, partial, final, &progressed, &local))
        {
        case TRY_DONE:
          return TRUE;
        case TRY_FAIL:
          g_propagate_error (error, g_steal_pointer (&local));
          return FALSE;
        case TRY_RETRY:
          failures = progressed ? 1 : failures + 1;
          if (failures >= p->max_attempts)
            {
              if (local->domain == APP_HUB_ERROR)
                g_propagate_error (error, g_steal_pointer (&local));
              else
                set_network_error (p, local, error);
              return FALSE;
            }
          g_debug ("%s: attempt %u: %s", f->path, failures, local->message);
          if (!backoff (p, failures, error))
            return FALSE;
          break;
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * The marker
 */

gboolean
app_hub_is_installed (const char  *dir,
                      char       **repo,
                      char       **commit)
{
  g_autofree char *path = g_build_filename (dir, APP_HUB_MARKER, NULL);
  g_autoptr(JsonParser) parser = json_parser_new ();
  JsonObject *o;

  if (!vl2_json_load_file (parser, path, VL2_SMALL_FILE_MAX_BYTES, NULL) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    return FALSE;
  o = json_node_get_object (json_parser_get_root (parser));
  if (!json_object_get_string_member_with_default (o, "commit", NULL))
    return FALSE;
  if (repo)
    *repo = g_strdup (json_object_get_string_member_with_default (o, "repo", NULL));
  if (commit)
    *commit = g_strdup (json_object_get_string_member (o, "commit"));
  return TRUE;
}

static gboolean
write_marker (Pull    *p,
              GError **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *when = g_date_time_format_iso8601 (now);
  g_autofree char *text = NULL;
  g_autofree char *path = g_build_filename (p->dest, APP_HUB_MARKER, NULL);
  g_autoptr(GError) local = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "repo");
  json_builder_add_string_value (b, p->repo);
  json_builder_set_member_name (b, "revision");
  json_builder_add_string_value (b, p->revision);
  json_builder_set_member_name (b, "commit");
  json_builder_add_string_value (b, p->commit);
  json_builder_set_member_name (b, "endpoint");
  json_builder_add_string_value (b, p->endpoint);
  json_builder_set_member_name (b, "completed");
  json_builder_add_string_value (b, when);
  json_builder_set_member_name (b, "files");
  json_builder_begin_array (b);
  for (guint i = 0; i < p->files->len; i++)
    {
      HubFile *f = p->files->pdata[i];

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "path");
      json_builder_add_string_value (b, f->path);
      json_builder_set_member_name (b, "size");
      json_builder_add_int_value (b, f->size);
      if (f->sha256)
        {
          json_builder_set_member_name (b, "sha256");
          json_builder_add_string_value (b, f->sha256);
        }
      if (f->blob_id)
        {
          json_builder_set_member_name (b, "blob_id");
          json_builder_add_string_value (b, f->blob_id);
        }
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  text = json_generator_to_data (gen, NULL);
  if (!g_file_set_contents (path, text, -1, &local))
    {
      set_write_error (p, g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOSPC) ? ENOSPC : EIO,
                       path, error);
      return FALSE;
    }
  return TRUE;
}

/* Removes the now empty folders of .partial/. */
static void
remove_partial_dir (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *child = g_build_filename (dir, name, NULL);

      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        remove_partial_dir (child);
    }
  g_rmdir (dir);
}

/* ------------------------------------------------------------------------------------------
 * The pull
 */

static char *
default_token (void)
{
  const char *env = g_getenv ("HF_TOKEN");
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;

  if (env)
    return g_strdup (env);
  if (g_getenv ("HF_TOKEN_PATH"))
    path = g_strdup (g_getenv ("HF_TOKEN_PATH"));
  else if (g_getenv ("HF_HOME"))
    path = g_build_filename (g_getenv ("HF_HOME"), "token", NULL);
  else
    path = g_build_filename (g_get_home_dir (), ".cache", "huggingface", "token", NULL);
  if (!vl2_input_read (path, VL2_SMALL_FILE_MAX_BYTES, &text, NULL, NULL))
    return NULL;
  return g_strdup (g_strstrip (text));
}

static guint64
remaining_bytes (Pull *p)
{
  guint64 need = 0;

  for (guint i = 0; i < p->files->len; i++)
    {
      HubFile *f = p->files->pdata[i];
      g_autofree char *final = g_build_filename (p->dest, f->path, NULL);
      g_autofree char *partial = g_build_filename (p->dest, ".partial", f->path, NULL);
      guint64 size, have;

      if (file_exists_regular (final, &size) && size == f->size)
        continue;
      have = file_size_or_zero (partial);
      need += f->size - (have <= f->size ? have : 0);
    }
  return need;
}

static gboolean
check_free_space (Pull    *p,
                  GError **error)
{
  g_autoptr(GFile) dir = g_file_new_for_path (p->dest);
  g_autoptr(GFileInfo) info = g_file_query_filesystem_info (dir, G_FILE_ATTRIBUTE_FILESYSTEM_FREE,
                                                            p->cancellable, NULL);
  guint64 need = remaining_bytes (p);

  if (!info || !g_file_info_has_attribute (info, G_FILE_ATTRIBUTE_FILESYSTEM_FREE) || need == 0)
    return TRUE;      /* unknown: the writes will tell */
  return app_hub_check_space (need,
                              g_file_info_get_attribute_uint64 (info, G_FILE_ATTRIBUTE_FILESYSTEM_FREE),
                              p->options, p->dest, error);
}

gboolean
app_hub_pull_sync (const char           *repo,
                   const char           *revision,
                   const char           *dest,
                   const AppHubOptions  *options,
                   AppHubProgressFunc    progress,
                   gpointer              user_data,
                   GCancellable         *cancellable,
                   GError              **error)
{
  Pull p = { 0 };
  const char *endpoint = options && options->endpoint ? options->endpoint : g_getenv ("HF_ENDPOINT");
  g_autofree char *installed_commit = NULL;
  g_autofree char *marker = NULL;
  gboolean ok = FALSE;
  int lock_fd = -1;

  g_return_val_if_fail (dest != NULL, FALSE);

  if (!revision)
    revision = "main";
  if (!repo_id_valid (repo))
    {
      g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                   "“%s” is not a model id: it is written owner/name, like "
                   "deepseek-ai/deepseek-vl2-tiny", repo ? repo : "");
      return FALSE;
    }
  if (!revision_valid (revision))
    {
      g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                   "“%s” is not a revision: a branch, tag or commit", revision);
      return FALSE;
    }
  p.repo = g_strdup (repo);
  p.revision = g_strdup (revision);
  p.dest = g_strdup (dest);
  p.endpoint = g_strdup (endpoint && *endpoint ? endpoint : DEFAULT_ENDPOINT);
  while (g_str_has_suffix (p.endpoint, "/"))
    p.endpoint[strlen (p.endpoint) - 1] = '\0';
  p.endpoint_uri = g_uri_parse (p.endpoint, SOUP_HTTP_URI_FLAGS, NULL);
  if (!p.endpoint_uri || !g_uri_get_host (p.endpoint_uri) ||
      (g_strcmp0 (g_uri_get_scheme (p.endpoint_uri), "https") &&
       g_strcmp0 (g_uri_get_scheme (p.endpoint_uri), "http")))
    {
      g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                   "“%s” is not an HTTP address for the Hub (HF_ENDPOINT)", p.endpoint);
      goto out;
    }
  p.token = options && options->token ? g_strdup (options->token) : default_token ();
  if (p.token && !*p.token)
    g_clear_pointer (&p.token, g_free);
  if (p.token && strpbrk (p.token, "\r\n"))
    {
      g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_INVALID,
                   "The Hugging Face token has a line break in it");
      goto out;
    }
  p.max_attempts = options && options->max_attempts ? options->max_attempts : DEFAULT_ATTEMPTS;
  p.retry_delay_ms = options && options->retry_delay_ms ? options->retry_delay_ms : DEFAULT_DELAY_MS;
  p.options = options;
  p.progress = progress;
  p.user_data = user_data;
  p.cancellable = cancellable;
  p.session = soup_session_new_with_options ("user-agent", "Sightline/" APP_VERSION,
                                             "timeout", 60, "idle-timeout", 60, NULL);
  soup_session_remove_feature_by_type (p.session, SOUP_TYPE_CONTENT_DECODER);

  if (!fetch_listing (&p, error))
    goto out;

  marker = g_build_filename (dest, APP_HUB_MARKER, NULL);
  if (app_hub_is_installed (dest, NULL, &installed_commit))
    {
      if (!g_strcmp0 (installed_commit, p.commit))
        {
          p.done_before = p.total;
          p.file_index = p.files->len;
          report (&p, APP_DOWNLOAD_VERIFYING, 0);
          ok = TRUE;
          goto out;
        }
      /* another commit: the folder is not a complete model while it is brought up to date */
      g_unlink (marker);
    }
  if (g_mkdir_with_parents (dest, 0755) != 0)
    {
      set_write_error (&p, errno, dest, error);
      goto out;
    }
  /* one pull per folder: the app and `vl2 pull` could otherwise append to the same partial
   * file. The lock is on the folder itself, so it leaves no file behind. */
  lock_fd = g_open (dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (lock_fd < 0)
    {
      set_write_error (&p, errno, dest, error);
      goto out;
    }
  if (flock (lock_fd, LOCK_EX | LOCK_NB) != 0)
    {
      g_set_error (error, APP_HUB_ERROR, APP_HUB_ERROR_BUSY,
                   "%s: another download into %s is running; wait for it, or stop it first",
                   repo, dest);
      goto out;
    }
  if (!check_free_space (&p, error))
    goto out;

  for (p.file_index = 0; p.file_index < p.files->len; p.file_index++)
    {
      HubFile *f = p.files->pdata[p.file_index];

      if (!pull_file (&p, f, error))
        goto out;
      p.done_before += f->size;
    }
  report (&p, APP_DOWNLOAD_VERIFYING, 0);
  if (!write_marker (&p, error))
    goto out;
  {
    g_autofree char *partial_dir = g_build_filename (dest, ".partial", NULL);
    remove_partial_dir (partial_dir);
  }
  ok = TRUE;

out:
  if (lock_fd >= 0)
    close (lock_fd);
  pull_clear (&p);
  return ok;
}
