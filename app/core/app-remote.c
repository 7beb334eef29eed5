/* app-remote.c - see app-remote.h.
 *
 * libsoup's blocking API, on the engine adapter's worker thread: one SoupSession per call
 * (connections are not kept between answers, which are seconds to minutes apart), its
 * "timeout" the longest silence accepted while connecting or reading.
 */
#include "app-remote.h"
#include "app-json.h"

#include <glib/gi18n.h>
#include <libsoup/soup.h>
#include <string.h>
#include <unistd.h>

#include "vl2-input.h"

G_DEFINE_QUARK (app-remote-error-quark, app_remote_error)

#define DEFAULT_TIMEOUT 300
#define MAX_IMAGE_BYTES (64 * 1024 * 1024)
#define MAX_ERROR_BODY (64 * 1024)
#define MAX_MODELS_BODY (4 * 1024 * 1024)
#define MAX_SSE_LINE (16 * 1024 * 1024)

void
app_remote_server_clear (AppRemoteServer *server)
{
  g_clear_pointer (&server->base_url, g_free);
  g_clear_pointer (&server->model, g_free);
  if (server->api_key)
    memset (server->api_key, 0, strlen (server->api_key));
  g_clear_pointer (&server->api_key, g_free);
}

char *
app_remote_normalize_url (const char *url,
                          GError    **error)
{
  g_autofree char *trimmed = g_strstrip (g_strdup (url ? url : ""));
  g_autoptr(GUri) uri = NULL;
  const char *scheme, *path;
  g_autofree char *clean_path = NULL;

  /* "gpu-box:8000" as people type it */
  if (trimmed[0] && !strstr (trimmed, "://"))
    {
      char *with_scheme = g_strconcat ("http://", trimmed, NULL);

      g_free (trimmed);
      trimmed = with_scheme;
    }
  uri = strpbrk (trimmed, " \t\n\r") ? NULL : g_uri_parse (trimmed, G_URI_FLAGS_NONE, NULL);
  scheme = uri ? g_uri_get_scheme (uri) : NULL;
  if (!uri || !scheme || (g_ascii_strcasecmp (scheme, "http") != 0
                          && g_ascii_strcasecmp (scheme, "https") != 0)
      || !g_uri_get_host (uri) || !g_uri_get_host (uri)[0] || g_uri_get_query (uri)
      || g_uri_get_fragment (uri) || g_uri_get_userinfo (uri))
    {
      g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_URL,
                   _("“%s” is not a server address; it looks like "
                     "http://host:8000/v1."), url ? url : "");
      return NULL;
    }
  path = g_uri_get_path (uri);
  clean_path = g_strdup (path && path[0] && !g_str_equal (path, "/") ? path : "/v1");
  while (g_str_has_suffix (clean_path, "/") && strlen (clean_path) > 1)
    clean_path[strlen (clean_path) - 1] = '\0';
  {
    g_autoptr(GUri) out = g_uri_build (G_URI_FLAGS_NONE, g_uri_get_scheme (uri), NULL,
                                       g_uri_get_host (uri), g_uri_get_port (uri), clean_path,
                                       NULL, NULL);

    return g_uri_to_string (out);
  }
}

static SoupSession *
session_new (const AppRemoteServer *server)
{
  guint timeout = server->timeout ? server->timeout : DEFAULT_TIMEOUT;

  return soup_session_new_with_options ("timeout", timeout, "idle-timeout", 0,
                                        "user-agent", "Sightline ", NULL);
}

static SoupMessage *
message_new (const AppRemoteServer *server,
             const char            *method,
             const char            *endpoint,
             GError               **error)
{
  g_autofree char *url = g_strconcat (server->base_url, endpoint, NULL);
  SoupMessage *msg = soup_message_new (method, url);

  if (!msg)
    {
      g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_URL,
                   _("“%s” is not a server address; it looks like http://host:8000/v1."),
                   server->base_url);
      return NULL;
    }
  if (server->api_key && server->api_key[0])
    {
      g_autofree char *auth = g_strconcat ("Bearer ", server->api_key, NULL);

      soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                    auth);
    }
  return msg;
}

/* A transport error as something a person can act on. */
static void
transport_error (const AppRemoteServer *server,
                 GError                *local,
                 GError               **error)
{
  if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_propagate_error (error, g_error_copy (local));
  else if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    {
      guint seconds = server->timeout ? server->timeout : DEFAULT_TIMEOUT;

      g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_TIMEOUT,
                   g_dngettext (GETTEXT_PACKAGE,
                                "The server at %s stopped answering (nothing for %u second).",
                                "The server at %s stopped answering (nothing for %u seconds).",
                                seconds),
                   server->base_url, seconds);
    }
  else
    g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_CONNECT,
                 _("Cannot reach the server at %s: %s"), server->base_url, local->message);
}

/* Reads at most `max` bytes of a response body (the rest is not read). */
static GBytes *
read_body (GInputStream *stream,
           gsize         max,
           GCancellable *cancellable,
           GError      **error)
{
  g_autoptr(GByteArray) data = g_byte_array_new ();
  guint8 buf[16384];

  while (data->len < max)
    {
      gssize n = g_input_stream_read (stream, buf, MIN (sizeof buf, max - data->len),
                                      cancellable, error);

      if (n < 0)
        return NULL;
      if (n == 0)
        break;
      g_byte_array_append (data, buf, (guint) n);
    }
  return g_byte_array_free_to_bytes (g_steal_pointer (&data));
}

/* An HTTP error status as an AppRemoteError, with the server's own message. */
static void
status_error (const AppRemoteServer *server,
              SoupMessage           *msg,
              GInputStream          *stream,
              GCancellable          *cancellable,
              GError               **error)
{
  guint status = soup_message_get_status (msg);
  g_autoptr(GBytes) body = read_body (stream, MAX_ERROR_BODY, cancellable, NULL);
  gsize len = 0;
  const char *data = body ? g_bytes_get_data (body, &len) : NULL;
  g_autofree char *message = len ? app_openai_error_message (data, len)
                                 : g_strdup (soup_message_get_reason_phrase (msg));

  if (status == 401 || status == 403)
    g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_AUTH,
                 _("The server at %s refused the API key (HTTP %u: %s)."), server->base_url,
                 status, message);
  else if (status == 404 && data && g_strstr_len (data, (gssize) len, "model_not_found"))
    g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_NO_MODEL,
                 _("The server at %s does not serve “%s”: %s"), server->base_url,
                 server->model, message);
  else if (status == 404)
    g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_REFUSED,
                 _("%s does not look like an OpenAI-compatible server: %s answers “not "
                   "found” (HTTP 404)."), server->base_url,
                 g_uri_get_path (soup_message_get_uri (msg)));
  else if (status == 503)
    g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_SERVER,
                 _("The server at %s is busy; try again in a moment (HTTP 503: %s)."),
                 server->base_url, message);
  else if (status >= 500)
    g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_SERVER,
                 _("The server at %s failed (HTTP %u: %s)."), server->base_url, status, message);
  else
    g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_REFUSED,
                 _("The server at %s refused the request (HTTP %u: %s)."), server->base_url,
                 status, message);
}

/* Sends `msg`; the body stream of a 2xx response, or NULL and the error. */
static GInputStream *
send (const AppRemoteServer *server,
      SoupSession           *session,
      SoupMessage           *msg,
      GCancellable          *cancellable,
      GError               **error)
{
  g_autoptr(GError) local = NULL;
  g_autoptr(GInputStream) stream = soup_session_send (session, msg, cancellable, &local);

  if (!stream)
    {
      transport_error (server, local, error);
      return NULL;
    }
  if (!SOUP_STATUS_IS_SUCCESSFUL (soup_message_get_status (msg)))
    {
      status_error (server, msg, stream, cancellable, error);
      return NULL;
    }
  return g_steal_pointer (&stream);
}

GStrv
app_remote_list_models (const AppRemoteServer *server,
                        GCancellable          *cancellable,
                        GError               **error)
{
  g_autoptr(SoupSession) session = session_new (server);
  g_autoptr(SoupMessage) msg = message_new (server, "GET", "/models", error);
  g_autoptr(GInputStream) stream = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) local = NULL;
  GStrv ids;

  if (!msg || !(stream = send (server, session, msg, cancellable, error)))
    return NULL;
  if (!(body = read_body (stream, MAX_MODELS_BODY, cancellable, &local)))
    {
      transport_error (server, local, error);
      return NULL;
    }
  ids = app_openai_parse_models (g_bytes_get_data (body, NULL), g_bytes_get_size (body), &local);
  if (!ids)
    g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_PROTOCOL,
                 _("%s does not look like an OpenAI-compatible server: %s"), server->base_url,
                 local->message);
  return ids;
}

/* ---------------------------------------------------------------------------------------------
 * The request
 */

static gboolean
add_image_part (JsonBuilder *b,
                const char  *path,
                GError     **error)
{
  g_autoptr(GError) local = NULL;
  g_autoptr(GMappedFile) file = NULL;
  const char *data;
  gsize len;
  g_autofree char *type = NULL, *mime = NULL, *b64 = NULL, *url = NULL;
  /* a regular file only: opening a named pipe would wait for a writer forever */
  int fd = vl2_input_open (path, NULL, &local);

  if (fd >= 0)
    {
      file = g_mapped_file_new_from_fd (fd, FALSE, &local);
      close (fd);
    }
  if (!file)
    {
      g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_IMAGE, "%s", local->message);
      return FALSE;
    }
  data = g_mapped_file_get_contents (file);
  len = g_mapped_file_get_length (file);
  if (len == 0 || len > MAX_IMAGE_BYTES)
    {
      g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_IMAGE,
                   _("%s: an image of %zu bytes cannot be sent to a server."), path, len);
      return FALSE;
    }
  type = g_content_type_guess (path, (const guchar *) data, len, NULL);
  mime = g_content_type_get_mime_type (type);
  b64 = g_base64_encode ((const guchar *) data, len);
  url = g_strdup_printf ("data:%s;base64,%s",
                         mime && g_str_has_prefix (mime, "image/") ? mime : "image/png", b64);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "image_url");
  json_builder_set_member_name (b, "image_url");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "url");
  json_builder_add_string_value (b, url);
  json_builder_end_object (b);
  json_builder_end_object (b);
  return TRUE;
}

char *
app_remote_request_json (const AppRemoteServer *server,
                         const AppRemoteTurn   *turns,
                         guint                  n_turns,
                         const AppRemoteParams *params,
                         GError               **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  gboolean continued = n_turns > 0 && turns[n_turns - 1].assistant;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, server->model);
  json_builder_set_member_name (b, "messages");
  json_builder_begin_array (b);
  if (params->system_prompt && params->system_prompt[0])
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "role");
      json_builder_add_string_value (b, "system");
      json_builder_set_member_name (b, "content");
      json_builder_add_string_value (b, params->system_prompt);
      json_builder_end_object (b);
    }
  for (guint i = 0; i < n_turns; i++)
    {
      const AppRemoteTurn *t = &turns[i];

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "role");
      json_builder_add_string_value (b, t->assistant ? "assistant" : "user");
      json_builder_set_member_name (b, "content");
      if (t->image_paths && t->image_paths[0])
        {
          /* the images first, as the local engine reads a question without <image> tags */
          json_builder_begin_array (b);
          for (guint k = 0; t->image_paths[k]; k++)
            if (!add_image_part (b, t->image_paths[k], error))
              return NULL;
          if (t->text[0])
            {
              json_builder_begin_object (b);
              json_builder_set_member_name (b, "type");
              json_builder_add_string_value (b, "text");
              json_builder_set_member_name (b, "text");
              json_builder_add_string_value (b, t->text);
              json_builder_end_object (b);
            }
          json_builder_end_array (b);
        }
      else
        json_builder_add_string_value (b, t->text);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "stream");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_set_member_name (b, "stream_options");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "include_usage");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "temperature");
  json_builder_add_double_value (b, params->temperature);
  json_builder_set_member_name (b, "top_p");
  json_builder_add_double_value (b, params->top_p);
  /* vLLM's and SGLang's sampling extensions, sent only when they do something */
  if (params->top_k > 0)
    {
      json_builder_set_member_name (b, "top_k");
      json_builder_add_int_value (b, params->top_k);
    }
  if (params->repetition_penalty != 1.0)
    {
      json_builder_set_member_name (b, "repetition_penalty");
      json_builder_add_double_value (b, params->repetition_penalty);
    }
  if (params->max_tokens > 0)
    {
      json_builder_set_member_name (b, "max_tokens");
      json_builder_add_int_value (b, params->max_tokens);
    }
  if (params->has_seed)
    {
      json_builder_set_member_name (b, "seed");
      json_builder_add_int_value (b, (gint64) (params->seed & G_MAXINT64));
    }
  /* DeepSeek-VL2's <|ref|>, <|det|> and <|grounding|> are special tokens: vLLM and SGLang
   * drop them from the text unless asked to keep them, and the boxes would be lost */
  json_builder_set_member_name (b, "skip_special_tokens");
  json_builder_add_boolean_value (b, FALSE);
  if (continued)
    {
      json_builder_set_member_name (b, "continue_final_message");
      json_builder_add_boolean_value (b, TRUE);
      json_builder_set_member_name (b, "add_generation_prompt");
      json_builder_add_boolean_value (b, FALSE);
    }
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return app_json_to_data (root, FALSE, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * The answer
 */

typedef struct
{
  AppRemoteTextFunc text_func;
  gpointer user_data;
  AppOpenAIDelta *result;
  GError *error;
  gboolean done;
} Stream;

static void
event_cb (const char *data,
          gpointer    user_data)
{
  Stream *s = user_data;
  AppOpenAIDelta delta = { 0 };

  if (s->error || s->done)
    return;
  if (g_str_equal (data, "[DONE]"))
    {
      s->done = TRUE;
      return;
    }
  if (!app_openai_parse_chunk (data, &delta, &s->error))
    return;
  if (delta.content && delta.content[0])
    s->text_func (delta.content, s->user_data);
  if (delta.finish_reason)
    {
      g_free (s->result->finish_reason);
      s->result->finish_reason = g_steal_pointer (&delta.finish_reason);
    }
  if (delta.has_usage)
    {
      s->result->has_usage = TRUE;
      s->result->usage = delta.usage;
    }
  app_openai_delta_clear (&delta);
}

gboolean
app_remote_chat (const AppRemoteServer *server,
                 const char            *body,
                 AppRemoteTextFunc      text_func,
                 gpointer               user_data,
                 AppOpenAIDelta        *result,
                 GCancellable          *cancellable,
                 GError               **error)
{
  g_autoptr(SoupSession) session = session_new (server);
  g_autoptr(SoupMessage) msg = message_new (server, "POST", "/chat/completions", error);
  g_autoptr(GInputStream) stream = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(AppOpenAISse) sse = NULL;
  const char *type;
  Stream s = { text_func, user_data, result, NULL, FALSE };
  char buf[16384];

  memset (result, 0, sizeof *result);
  if (!msg)
    return FALSE;
  bytes = g_bytes_new_static (body, strlen (body));
  soup_message_set_request_body_from_bytes (msg, "application/json", bytes);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Accept",
                                "text/event-stream");
  if (!(stream = send (server, session, msg, cancellable, error)))
    return FALSE;

  type = soup_message_headers_get_content_type (soup_message_get_response_headers (msg), NULL);
  if (type && g_str_equal (type, "application/json"))
    {
      /* a server that ignores "stream": the whole completion at once */
      g_autoptr(GBytes) whole = read_body (stream, MAX_SSE_LINE, cancellable, NULL);
      g_autofree char *text = whole ? g_strndup (g_bytes_get_data (whole, NULL),
                                                 g_bytes_get_size (whole))
                                    : NULL;

      if (text)
        event_cb (text, &s);
      s.done = text != NULL && !s.error;
    }
  else
    {
      sse = app_openai_sse_new (event_cb, &s);
      while (!s.done && !s.error)
        {
          g_autoptr(GError) local = NULL;
          gssize n = g_input_stream_read (stream, buf, sizeof buf, cancellable, &local);

          if (n < 0)
            {
              transport_error (server, local, error);
              return FALSE;
            }
          if (n == 0)
            break;
          if (!app_openai_sse_feed (sse, buf, (gsize) n, MAX_SSE_LINE))
            {
              g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_PROTOCOL,
                           _("The server at %s sent a line of more than %d MB."),
                           server->base_url, MAX_SSE_LINE / (1024 * 1024));
              return FALSE;
            }
        }
    }
  if (s.error)
    {
      g_set_error (error, APP_REMOTE_ERROR,
                   g_error_matches (s.error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_SERVER)
                     ? APP_REMOTE_ERROR_SERVER : APP_REMOTE_ERROR_PROTOCOL,
                   _("The server at %s: %s"), server->base_url, s.error->message);
      g_clear_error (&s.error);
      return FALSE;
    }
  if (!s.done && !result->finish_reason)
    {
      g_set_error (error, APP_REMOTE_ERROR, APP_REMOTE_ERROR_CONNECT,
                   _("The server at %s closed the connection before the answer was complete."),
                   server->base_url);
      return FALSE;
    }
  return TRUE;
}
