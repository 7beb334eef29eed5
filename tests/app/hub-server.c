/* hub-server.c - a Hugging Face Hub on loopback (see hub-server.h). */
#include "hub-server.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <string.h>

typedef struct {
  char *path;
  GBytes *bytes;
  char *sha256;
  char *blob_id;
  gboolean lfs;
  /* counters and behaviours, under the server's lock */
  guint64 sent;
  guint requests;
  guint64 last_range;
  guint64 cut_after;
  guint cut_times;
  guint corrupt_times;
} ServedFile;

struct _HubServer
{
  GThread *thread;
  GMainContext *context;
  GMainLoop *loop;
  SoupServer *hub;
  SoupServer *cdn;
  char *endpoint;
  char *cdn_endpoint;
  GPtrArray *files;

  GMutex lock;
  GCond ready;
  gboolean started;
  gboolean ignore_range;
  guint fail_status;
  char *fail_code;
  guint fail_times;          /* 0: always */
  char *listing;
  char *token;
  gboolean cdn_saw_token;
};

static void
served_file_free (gpointer p)
{
  ServedFile *f = p;

  g_free (f->path);
  g_bytes_unref (f->bytes);
  g_free (f->sha256);
  g_free (f->blob_id);
  g_free (f);
}

static ServedFile *
find_file (HubServer  *s,
           const char *path)
{
  for (guint i = 0; i < s->files->len; i++)
    {
      ServedFile *f = s->files->pdata[i];
      if (!strcmp (f->path, path))
        return f;
    }
  return NULL;
}

static char *
real_listing (HubServer *s)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, HUB_TEST_REPO);
  json_builder_set_member_name (b, "sha");
  json_builder_add_string_value (b, HUB_TEST_COMMIT);
  json_builder_set_member_name (b, "siblings");
  json_builder_begin_array (b);
  for (guint i = 0; i < s->files->len; i++)
    {
      ServedFile *f = s->files->pdata[i];

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "rfilename");
      json_builder_add_string_value (b, f->path);
      json_builder_set_member_name (b, "size");
      json_builder_add_int_value (b, g_bytes_get_size (f->bytes));
      json_builder_set_member_name (b, "blobId");
      json_builder_add_string_value (b, f->blob_id);
      if (f->lfs)
        {
          json_builder_set_member_name (b, "lfs");
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "sha256");
          json_builder_add_string_value (b, f->sha256);
          json_builder_set_member_name (b, "size");
          json_builder_add_int_value (b, g_bytes_get_size (f->bytes));
          json_builder_set_member_name (b, "pointerSize");
          json_builder_add_int_value (b, 134);
          json_builder_end_object (b);
        }
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

/* Answers the configured failure, if any. Under the lock. */
static gboolean
maybe_fail (HubServer         *s,
            SoupServerMessage *msg)
{
  if (!s->fail_status)
    return FALSE;
  soup_server_message_set_status (msg, s->fail_status, NULL);
  if (s->fail_code)
    soup_message_headers_replace (soup_server_message_get_response_headers (msg), "X-Error-Code",
                                  s->fail_code);
  soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_COPY, "no", 2);
  if (s->fail_times && --s->fail_times == 0)
    s->fail_status = 0;
  return TRUE;
}

/* Writes a response by hand on the stolen connection and closes it after `cut` bytes of the
 * body, as a server whose connection drops does. */
static void
send_cut (SoupServerMessage *msg,
          GBytes            *body,
          guint64            from,
          guint64            cut)
{
  g_autoptr(GIOStream) io = soup_server_message_steal_connection (msg);
  GOutputStream *out = g_io_stream_get_output_stream (io);
  gsize total = g_bytes_get_size (body);
  g_autofree char *head = NULL;

  if (from > 0)
    head = g_strdup_printf ("HTTP/1.1 206 Partial Content\r\nContent-Length: %" G_GUINT64_FORMAT
                            "\r\nContent-Range: bytes %" G_GUINT64_FORMAT "-%" G_GSIZE_FORMAT
                            "/%" G_GSIZE_FORMAT "\r\n\r\n", total - from, from, total - 1, total);
  else
    head = g_strdup_printf ("HTTP/1.1 200 OK\r\nContent-Length: %" G_GSIZE_FORMAT "\r\n\r\n", total);
  g_output_stream_write_all (out, head, strlen (head), NULL, NULL, NULL);
  g_output_stream_write_all (out, (const guint8 *) g_bytes_get_data (body, NULL) + from, cut,
                             NULL, NULL, NULL);
  g_output_stream_flush (out, NULL, NULL);
  g_io_stream_close (io, NULL, NULL);
}

static void
serve_file (HubServer         *s,
            SoupServerMessage *msg,
            ServedFile        *f)
{
  SoupMessageHeaders *req = soup_server_message_get_request_headers (msg);
  SoupMessageHeaders *resp = soup_server_message_get_response_headers (msg);
  gsize total = g_bytes_get_size (f->bytes);
  SoupRange *ranges = NULL;
  int n_ranges = 0;
  guint64 from = 0;
  g_autoptr(GBytes) body = NULL;

  if (soup_server_message_get_http_version (msg) == SOUP_HTTP_1_0)
    soup_message_headers_replace (resp, "Connection", "close");
  g_mutex_lock (&s->lock);
  f->requests++;
  f->last_range = G_MAXUINT64;
  if (soup_message_headers_get_ranges (req, total, &ranges, &n_ranges))
    {
      f->last_range = ranges[0].start;
      if (!s->ignore_range && n_ranges == 1)
        from = ranges[0].start;
      soup_message_headers_free_ranges (req, ranges);
    }
  if (maybe_fail (s, msg))
    {
      g_mutex_unlock (&s->lock);
      return;
    }
  if (f->cut_times > 0 && f->cut_after > 0)
    {
      guint64 cut = MIN (f->cut_after, total - from);

      f->cut_times--;
      f->sent += cut;
      g_mutex_unlock (&s->lock);
      send_cut (msg, f->bytes, from, cut);
      return;
    }
  f->sent += total - from;
  if (f->corrupt_times > 0)
    {
      guint8 *copy = g_memdup2 (g_bytes_get_data (f->bytes, NULL), total);

      f->corrupt_times--;
      copy[total / 2] ^= 0x5a;
      body = g_bytes_new_take (copy, total);
    }
  else
    body = g_bytes_ref (f->bytes);
  g_mutex_unlock (&s->lock);

  if (from > 0)
    {
      g_autoptr(GBytes) part = g_bytes_new_from_bytes (body, from, total - from);

      soup_server_message_set_status (msg, SOUP_STATUS_PARTIAL_CONTENT, NULL);
      soup_message_headers_set_content_range (resp, from, total - 1, total);
      soup_message_body_append_bytes (soup_server_message_get_response_body (msg), part);
    }
  else
    {
      soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
      soup_message_body_append_bytes (soup_server_message_get_response_body (msg), body);
    }
  soup_message_headers_set_content_type (resp, "application/octet-stream", NULL);
}

static void
hub_cb (SoupServer        *server,
        SoupServerMessage *msg,
        const char        *path,
        GHashTable        *query,
        gpointer           user_data)
{
  HubServer *s = user_data;
  const char *auth = soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
                                                   "Authorization");
  g_autofree char *listing_prefix = g_strdup_printf ("/api/models/%s/revision/", HUB_TEST_REPO);
  g_autofree char *resolve_prefix = g_strdup_printf ("/%s/resolve/%s/", HUB_TEST_REPO,
                                                     HUB_TEST_COMMIT);
  ServedFile *f;

  g_mutex_lock (&s->lock);
  if (s->token)
    {
      g_autofree char *want = g_strconcat ("Bearer ", s->token, NULL);

      if (g_strcmp0 (auth, want))
        {
          g_mutex_unlock (&s->lock);
          soup_server_message_set_status (msg, 401, NULL);
          return;
        }
    }
  if (g_str_has_prefix (path, "/api/") && maybe_fail (s, msg))
    {
      g_mutex_unlock (&s->lock);
      return;
    }
  g_mutex_unlock (&s->lock);

  if (g_str_has_prefix (path, listing_prefix))
    {
      char *json;

      if (!query || g_strcmp0 (g_hash_table_lookup (query, "blobs"), "true"))
        {
          soup_server_message_set_status (msg, 400, NULL);
          return;
        }
      if (strcmp (path + strlen (listing_prefix), "main") && strcmp (path + strlen (listing_prefix),
                                                                     HUB_TEST_COMMIT))
        {
          soup_server_message_set_status (msg, 404, NULL);
          soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                        "X-Error-Code", "RevisionNotFound");
          return;
        }
      g_mutex_lock (&s->lock);
      json = s->listing ? g_strdup (s->listing) : real_listing (s);
      g_mutex_unlock (&s->lock);
      soup_server_message_set_status (msg, 200, NULL);
      soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_TAKE, json, strlen (json));
      return;
    }
  if (g_str_has_prefix (path, resolve_prefix) && (f = find_file (s, path + strlen (resolve_prefix))))
    {
      g_autofree char *location = f->lfs ? g_strdup_printf ("%s/lfs/%s", s->cdn_endpoint, f->sha256)
                                         : g_strdup_printf ("/raw/%s", f->path);

      soup_server_message_set_redirect (msg, 302, location);
      return;
    }
  if (g_str_has_prefix (path, "/raw/") && (f = find_file (s, path + 5)) && !f->lfs)
    {
      serve_file (s, msg, f);
      return;
    }
  soup_server_message_set_status (msg, 404, NULL);
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "X-Error-Code",
                                g_str_has_prefix (path, "/api/") ? "RepoNotFound" : "EntryNotFound");
}

static void
cdn_cb (SoupServer        *server,
        SoupServerMessage *msg,
        const char        *path,
        GHashTable        *query,
        gpointer           user_data)
{
  HubServer *s = user_data;

  g_mutex_lock (&s->lock);
  if (soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "Authorization"))
    s->cdn_saw_token = TRUE;
  g_mutex_unlock (&s->lock);
  for (guint i = 0; i < s->files->len; i++)
    {
      ServedFile *f = s->files->pdata[i];

      if (f->lfs && g_str_has_prefix (path, "/lfs/") && !strcmp (path + 5, f->sha256))
        {
          serve_file (s, msg, f);
          return;
        }
    }
  soup_server_message_set_status (msg, 404, NULL);
}

static char *
listen_loopback (SoupServer *server)
{
  g_autoptr(GError) error = NULL;
  GSList *uris;
  char *endpoint;
  g_autoptr(GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) addr = g_inet_socket_address_new (lo, 0);

  if (!soup_server_listen (server, addr, 0, &error))
    g_error ("cannot listen on loopback: %s", error->message);
  uris = soup_server_get_uris (server);
  endpoint = g_strdup_printf ("http://127.0.0.1:%d", g_uri_get_port (uris->data));
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  return endpoint;
}

static gpointer
server_thread (gpointer data)
{
  HubServer *s = data;

  g_main_context_push_thread_default (s->context);
  s->hub = soup_server_new ("server-header", "hub-test ", NULL);
  s->cdn = soup_server_new ("server-header", "cdn-test ", NULL);
  soup_server_add_handler (s->hub, NULL, hub_cb, s, NULL);
  soup_server_add_handler (s->cdn, NULL, cdn_cb, s, NULL);
  s->endpoint = listen_loopback (s->hub);
  s->cdn_endpoint = listen_loopback (s->cdn);
  g_mutex_lock (&s->lock);
  s->started = TRUE;
  g_cond_signal (&s->ready);
  g_mutex_unlock (&s->lock);

  g_main_loop_run (s->loop);

  soup_server_disconnect (s->hub);
  soup_server_disconnect (s->cdn);
  g_clear_object (&s->hub);
  g_clear_object (&s->cdn);
  g_main_context_pop_thread_default (s->context);
  return NULL;
}

HubServer *
hub_server_new (const char         *dir,
                const char * const *names)
{
  HubServer *s = g_new0 (HubServer, 1);

  s->files = g_ptr_array_new_with_free_func (served_file_free);
  for (guint i = 0; names[i]; i++)
    {
      ServedFile *f = g_new0 (ServedFile, 1);
      g_autofree char *path = g_build_filename (dir, names[i], NULL);
      g_autoptr(GError) error = NULL;
      g_autoptr(GChecksum) sha1 = g_checksum_new (G_CHECKSUM_SHA1);
      g_autofree char *head = NULL;
      char *data;
      gsize len;

      if (!g_file_get_contents (path, &data, &len, &error))
        g_error ("%s", error->message);
      f->path = g_strdup (names[i]);
      f->bytes = g_bytes_new_take (data, len);
      f->sha256 = g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, f->bytes);
      head = g_strdup_printf ("blob %" G_GSIZE_FORMAT, len);
      g_checksum_update (sha1, (const guchar *) head, strlen (head) + 1);
      g_checksum_update (sha1, (const guchar *) data, len);
      f->blob_id = g_strdup (g_checksum_get_string (sha1));
      f->lfs = len >= (1u << 20);
      f->last_range = G_MAXUINT64;
      g_ptr_array_add (s->files, f);
    }
  g_mutex_init (&s->lock);
  g_cond_init (&s->ready);
  s->context = g_main_context_new ();
  s->loop = g_main_loop_new (s->context, FALSE);
  s->thread = g_thread_new ("hub-server", server_thread, s);
  g_mutex_lock (&s->lock);
  while (!s->started)
    g_cond_wait (&s->ready, &s->lock);
  g_mutex_unlock (&s->lock);
  return s;
}

static gboolean
quit_cb (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

void
hub_server_free (HubServer *s)
{
  g_main_context_invoke (s->context, quit_cb, s->loop);
  g_thread_join (s->thread);
  g_main_loop_unref (s->loop);
  g_main_context_unref (s->context);
  g_ptr_array_unref (s->files);
  g_free (s->endpoint);
  g_free (s->cdn_endpoint);
  g_free (s->fail_code);
  g_free (s->listing);
  g_free (s->token);
  g_mutex_clear (&s->lock);
  g_cond_clear (&s->ready);
  g_free (s);
}

const char *
hub_server_endpoint (HubServer *s)
{
  return s->endpoint;
}

void
hub_server_cut_after (HubServer  *s,
                      const char *path,
                      guint64     bytes,
                      guint       times)
{
  ServedFile *f = find_file (s, path);

  g_assert_nonnull (f);
  g_mutex_lock (&s->lock);
  f->cut_after = bytes;
  f->cut_times = times;
  g_mutex_unlock (&s->lock);
}

void
hub_server_ignore_range (HubServer *s,
                         gboolean   ignore)
{
  g_mutex_lock (&s->lock);
  s->ignore_range = ignore;
  g_mutex_unlock (&s->lock);
}

void
hub_server_corrupt (HubServer  *s,
                    const char *path,
                    guint       times)
{
  ServedFile *f = find_file (s, path);

  g_assert_nonnull (f);
  g_mutex_lock (&s->lock);
  f->corrupt_times = times;
  g_mutex_unlock (&s->lock);
}

void
hub_server_fail (HubServer  *s,
                 guint       status,
                 const char *code,
                 guint       times)
{
  g_mutex_lock (&s->lock);
  s->fail_status = status;
  g_free (s->fail_code);
  s->fail_code = g_strdup (code);
  s->fail_times = times;
  g_mutex_unlock (&s->lock);
}

void
hub_server_set_listing (HubServer  *s,
                        const char *json)
{
  g_mutex_lock (&s->lock);
  g_free (s->listing);
  s->listing = g_strdup (json);
  g_mutex_unlock (&s->lock);
}

void
hub_server_require_token (HubServer  *s,
                          const char *token)
{
  g_mutex_lock (&s->lock);
  g_free (s->token);
  s->token = g_strdup (token);
  g_mutex_unlock (&s->lock);
}

void
hub_server_reset_counts (HubServer *s)
{
  g_mutex_lock (&s->lock);
  for (guint i = 0; i < s->files->len; i++)
    {
      ServedFile *f = s->files->pdata[i];
      f->sent = 0;
      f->requests = 0;
      f->last_range = G_MAXUINT64;
    }
  s->cdn_saw_token = FALSE;
  g_mutex_unlock (&s->lock);
}

guint64
hub_server_bytes_sent (HubServer  *s,
                       const char *path)
{
  ServedFile *f = find_file (s, path);
  guint64 n;

  g_assert_nonnull (f);
  g_mutex_lock (&s->lock);
  n = f->sent;
  g_mutex_unlock (&s->lock);
  return n;
}

guint
hub_server_requests (HubServer  *s,
                     const char *path)
{
  ServedFile *f = find_file (s, path);
  guint n;

  g_assert_nonnull (f);
  g_mutex_lock (&s->lock);
  n = f->requests;
  g_mutex_unlock (&s->lock);
  return n;
}

guint64
hub_server_last_range (HubServer  *s,
                       const char *path)
{
  ServedFile *f = find_file (s, path);
  guint64 n;

  g_assert_nonnull (f);
  g_mutex_lock (&s->lock);
  n = f->last_range;
  g_mutex_unlock (&s->lock);
  return n;
}

gboolean
hub_server_cdn_saw_token (HubServer *s)
{
  gboolean saw;

  g_mutex_lock (&s->lock);
  saw = s->cdn_saw_token;
  g_mutex_unlock (&s->lock);
  return saw;
}

guint64
hub_server_file_size (HubServer  *s,
                      const char *path)
{
  ServedFile *f = find_file (s, path);

  g_assert_nonnull (f);
  return g_bytes_get_size (f->bytes);
}
