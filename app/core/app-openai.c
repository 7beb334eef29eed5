/* app-openai.c - see app-openai.h.
 *
 * Requests are checked member by member against OpenAI's API reference: a wrong type or an out
 * of range value is an invalid_request_error naming the member (`param`), as OpenAI's own
 * server answers. Members this server does not implement but that change nothing for one
 * answer (user, metadata, store, parallel_tool_calls without tools) are ignored; those that
 * would change the answer in ways it cannot honour (n > 1, tools, response_format other than
 * text, logprobs) are refused rather than silently ignored.
 */
#include "app-openai.h"
#include "app-json.h"

#include <math.h>
#include <string.h>

#include "app-grounding.h"
#include "vl2-input.h"

G_DEFINE_QUARK (app-openai-error-quark, app_openai_error)

#define MAX_STOP_STRINGS 4
#define MAX_LOGIT_BIAS 300

static const struct
{
  guint status;
  const char *type;
  const char *code;
} error_kinds[] = {
  [APP_OPENAI_ERROR_INVALID_JSON] = { 400, "invalid_request_error", "invalid_json" },
  [APP_OPENAI_ERROR_INVALID_REQUEST] = { 400, "invalid_request_error", "invalid_request" },
  [APP_OPENAI_ERROR_INVALID_IMAGE] = { 400, "invalid_request_error", "invalid_image" },
  [APP_OPENAI_ERROR_IMAGE_URL] = { 400, "invalid_request_error", "image_url_not_allowed" },
  [APP_OPENAI_ERROR_TOO_MANY_IMAGES] = { 400, "invalid_request_error", "too_many_images" },
  [APP_OPENAI_ERROR_IMAGE_TOO_LARGE] = { 400, "invalid_request_error", "image_too_large" },
  [APP_OPENAI_ERROR_CONTEXT_LENGTH] = { 400, "invalid_request_error", "context_length_exceeded" },
  [APP_OPENAI_ERROR_MAX_TOKENS] = { 400, "invalid_request_error", "max_tokens_too_large" },
  [APP_OPENAI_ERROR_UNAUTHORIZED] = { 401, "authentication_error", "invalid_api_key" },
  [APP_OPENAI_ERROR_MODEL_NOT_FOUND] = { 404, "invalid_request_error", "model_not_found" },
  [APP_OPENAI_ERROR_NOT_FOUND] = { 404, "invalid_request_error", "not_found" },
  [APP_OPENAI_ERROR_METHOD] = { 405, "invalid_request_error", "method_not_allowed" },
  [APP_OPENAI_ERROR_BODY_TOO_LARGE] = { 413, "invalid_request_error", "request_too_large" },
  [APP_OPENAI_ERROR_OVERLOADED] = { 503, "server_error", "server_overloaded" },
  [APP_OPENAI_ERROR_SERVER] = { 500, "server_error", "server_error" },
  [APP_OPENAI_ERROR_SHUTTING_DOWN] = { 503, "server_error", "server_shutting_down" },
};

static gboolean
known_code (AppOpenAIError code)
{
  return (guint) code < G_N_ELEMENTS (error_kinds);
}

guint
app_openai_error_status (AppOpenAIError code)
{
  return known_code (code) ? error_kinds[code].status : 500;
}

const char *
app_openai_error_type (AppOpenAIError code)
{
  return known_code (code) ? error_kinds[code].type : "server_error";
}

const char *
app_openai_error_code (AppOpenAIError code)
{
  return known_code (code) ? error_kinds[code].code : "server_error";
}

/* The member an error is about, kept beside the GError's message as "param: message". */
#define PARAM_SEPARATOR "\x1f"

static void
set_error (GError        **error,
           AppOpenAIError  code,
           const char     *param,
           const char     *format,
           ...) G_GNUC_PRINTF (4, 5);

static void
set_error (GError        **error,
           AppOpenAIError  code,
           const char     *param,
           const char     *format,
           ...)
{
  va_list args;
  g_autofree char *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  if (param)
    g_set_error (error, APP_OPENAI_ERROR, code, "%s" PARAM_SEPARATOR "%s", param, message);
  else
    g_set_error_literal (error, APP_OPENAI_ERROR, code, message);
}

static char *
to_json (JsonNode *node)
{
  return app_json_to_data (node, FALSE, NULL);
}

char *
app_openai_error_json (const GError *error,
                       guint        *status)
{
  AppOpenAIError code = APP_OPENAI_ERROR_SERVER;
  const char *message = error ? error->message : "unknown error";
  const char *sep;
  g_autofree char *param = NULL;
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;

  if (error && error->domain == APP_OPENAI_ERROR && known_code (error->code))
    code = error->code;
  sep = strstr (message, PARAM_SEPARATOR);
  if (sep)
    {
      param = g_strndup (message, sep - message);
      message = sep + 1;
    }
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "error");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "message");
  json_builder_add_string_value (b, message);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, app_openai_error_type (code));
  json_builder_set_member_name (b, "param");
  if (param)
    json_builder_add_string_value (b, param);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "code");
  json_builder_add_string_value (b, app_openai_error_code (code));
  json_builder_end_object (b);
  json_builder_end_object (b);
  if (status)
    *status = app_openai_error_status (code);
  root = json_builder_get_root (b);
  return to_json (root);
}

/* ---------------------------------------------------------------------------------------------
 * Parsing helpers
 */

/* Parses JSON text with nesting bounded (json-glib's parser recurses). */
static JsonNode *
parse_json (const char *text,
            gsize       length,
            GError    **error)
{
  g_autoptr(JsonParser) parser = NULL;
  g_autoptr(GError) local = NULL;

  /* refused before json-glib (a recursive parser) sees it */
  if (vl2_json_depth (text, length, VL2_JSON_MAX_DEPTH) > VL2_JSON_MAX_DEPTH)
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_JSON, NULL,
                 "The request body nests JSON more than %d levels deep.", VL2_JSON_MAX_DEPTH);
      return NULL;
    }
  if (!g_utf8_validate_len (text, length, NULL))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_JSON, NULL,
                 "The request body is not valid UTF-8.");
      return NULL;
    }
  parser = json_parser_new_immutable ();
  if (!vl2_json_load_data (parser, text, length, NULL, &local))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_JSON, NULL,
                 "The request body is not valid JSON: %s", local->message);
      return NULL;
    }
  if (!json_parser_get_root (parser))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_JSON, NULL, "The request body is empty.");
      return NULL;
    }
  return json_node_ref (json_parser_get_root (parser));
}

static gboolean
is_type (JsonNode *node,
         GType     type)
{
  return node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == type;
}

static gboolean
is_number (JsonNode *node)
{
  return is_type (node, G_TYPE_INT64) || is_type (node, G_TYPE_DOUBLE);
}

static gboolean
is_null (JsonNode *node)
{
  return node && JSON_NODE_HOLDS_NULL (node);
}

/* A number member in [lo, hi] into *out (left alone when absent or null). */
static gboolean
get_number (JsonObject *obj,
            const char *name,
            double      lo,
            double      hi,
            double     *out,
            GError    **error)
{
  JsonNode *node = json_object_get_member (obj, name);
  double v;

  if (!node || is_null (node))
    return TRUE;
  if (!is_number (node))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, name, "'%s' must be a number.", name);
      return FALSE;
    }
  v = json_node_get_double (node);
  if (!(v >= lo && v <= hi))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, name,
                 "'%s' is %g; it must be between %g and %g.", name, v, lo, hi);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

/* An integer member in [lo, hi] (absent or null: left alone). */
static gboolean
get_int (JsonObject *obj,
         const char *name,
         gint64      lo,
         gint64      hi,
         gint64     *out,
         GError    **error)
{
  JsonNode *node = json_object_get_member (obj, name);
  double d;

  if (!node || is_null (node))
    return TRUE;
  if (is_type (node, G_TYPE_INT64))
    {
      gint64 v = json_node_get_int (node);

      if (v < lo || v > hi)
        {
          set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, name,
                     "'%s' is %" G_GINT64_FORMAT "; it must be between %" G_GINT64_FORMAT
                     " and %" G_GINT64_FORMAT ".", name, v, lo, hi);
          return FALSE;
        }
      *out = v;
      return TRUE;
    }
  /* 1.0 is an integer too, as JSON Schema has it */
  if (is_type (node, G_TYPE_DOUBLE))
    {
      d = json_node_get_double (node);
      if (d == floor (d) && d >= (double) lo && d <= (double) hi)
        {
          *out = (gint64) d;
          return TRUE;
        }
    }
  set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, name,
             "'%s' must be an integer between %" G_GINT64_FORMAT " and %" G_GINT64_FORMAT ".",
             name, lo, hi);
  return FALSE;
}

static gboolean
get_bool (JsonObject *obj,
          const char *name,
          gboolean   *out,
          GError    **error)
{
  JsonNode *node = json_object_get_member (obj, name);

  if (!node || is_null (node))
    return TRUE;
  if (!is_type (node, G_TYPE_BOOLEAN))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, name, "'%s' must be true or false.",
                 name);
      return FALSE;
    }
  *out = json_node_get_boolean (node);
  return TRUE;
}

static void
image_free (gpointer p)
{
  AppOpenAIImage *image = p;

  g_clear_pointer (&image->data, g_bytes_unref);
  g_free (image->url);
  g_free (image);
}

static void
message_free (gpointer p)
{
  AppOpenAIMessage *msg = p;

  g_free (msg->text);
  g_ptr_array_unref (msg->images);
  g_free (msg);
}

void
app_openai_request_free (AppOpenAIRequest *request)
{
  if (!request)
    return;
  g_free (request->model);
  g_clear_pointer (&request->messages, g_ptr_array_unref);
  g_strfreev (request->stop);
  g_clear_pointer (&request->logit_bias, g_array_unref);
  g_free (request);
}

GBytes *
app_openai_decode_data_url (const char *url,
                            GError    **error)
{
  const char *comma;
  gboolean base64;
  g_autofree char *header = NULL;

  if (!g_str_has_prefix (url, "data:") || !(comma = strchr (url, ',')))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_IMAGE, NULL,
                 "An image URL must be a data: URL ('data:image/png;base64,...').");
      return NULL;
    }
  header = g_strndup (url + 5, comma - (url + 5));
  base64 = g_str_has_suffix (header, ";base64");
  if (base64)
    {
      const char *p = comma + 1;
      gsize n = strlen (p), len = 0;
      guchar *data;

      for (gsize i = 0; i < n; i++)
        if (!g_ascii_isalnum (p[i]) && p[i] != '+' && p[i] != '/' && p[i] != '='
            && !g_ascii_isspace (p[i]))
          {
            set_error (error, APP_OPENAI_ERROR_INVALID_IMAGE, NULL,
                       "An image's data: URL is not valid base64 (byte %zu).", i);
            return NULL;
          }
      data = g_base64_decode (p, &len);
      if (!len)
        {
          g_free (data);
          set_error (error, APP_OPENAI_ERROR_INVALID_IMAGE, NULL,
                     "An image's data: URL holds no data.");
          return NULL;
        }
      return g_bytes_new_take (data, len);
    }
  else
    {
      g_autoptr(GBytes) bytes = g_uri_unescape_bytes (comma + 1, -1, NULL, NULL);

      if (!bytes || !g_bytes_get_size (bytes))
        {
          set_error (error, APP_OPENAI_ERROR_INVALID_IMAGE, NULL,
                     "An image's data: URL holds no data.");
          return NULL;
        }
      return g_steal_pointer (&bytes);
    }
}

/* One content part into msg. */
static gboolean
parse_part (JsonNode         *node,
            AppOpenAIMessage *msg,
            GString          *text,
            const AppOpenAILimits *limits,
            gsize            *n_images,
            GError          **error)
{
  JsonObject *part;
  const char *type;

  if (!JSON_NODE_HOLDS_OBJECT (node)
      || !is_type (json_object_get_member (part = json_node_get_object (node), "type"),
                   G_TYPE_STRING))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                 "Each content part must be an object with a 'type'.");
      return FALSE;
    }
  type = json_object_get_string_member (part, "type");
  if (g_str_equal (type, "text"))
    {
      JsonNode *t = json_object_get_member (part, "text");

      if (!is_type (t, G_TYPE_STRING))
        {
          set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                     "A text part needs a string 'text'.");
          return FALSE;
        }
      g_string_append (text, json_node_get_string (t));
      return TRUE;
    }
  if (g_str_equal (type, "image_url"))
    {
      JsonNode *iu = json_object_get_member (part, "image_url");
      const char *url = NULL;
      AppOpenAIImage *image;

      if (msg->role != APP_OPENAI_ROLE_USER)
        {
          set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                     "Only user messages can hold images.");
          return FALSE;
        }
      /* {"url": ...} as OpenAI has it; a bare string as some clients send */
      if (iu && JSON_NODE_HOLDS_OBJECT (iu)
          && is_type (json_object_get_member (json_node_get_object (iu), "url"), G_TYPE_STRING))
        url = json_object_get_string_member (json_node_get_object (iu), "url");
      else if (is_type (iu, G_TYPE_STRING))
        url = json_node_get_string (iu);
      if (!url)
        {
          set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                     "An image_url part needs 'image_url': {'url': ...}.");
          return FALSE;
        }
      if (++*n_images > limits->max_images)
        {
          set_error (error, APP_OPENAI_ERROR_TOO_MANY_IMAGES, "messages",
                     "The request holds more than %zu images, this server's limit.",
                     limits->max_images);
          return FALSE;
        }
      image = g_new0 (AppOpenAIImage, 1);
      g_ptr_array_add (msg->images, image);
      if (g_ascii_strncasecmp (url, "http://", 7) == 0
          || g_ascii_strncasecmp (url, "https://", 8) == 0)
        {
          if (!limits->allow_image_urls)
            {
              set_error (error, APP_OPENAI_ERROR_IMAGE_URL, "messages",
                         "This server reads images from data: URLs only; it was started "
                         "without --allow-image-urls.");
              return FALSE;
            }
          image->url = g_strdup (url);
        }
      else
        {
          g_autoptr(GError) local = NULL;

          if (!(image->data = app_openai_decode_data_url (url, &local)))
            {
              set_error (error, local->code, "messages", "%s", local->message);
              return FALSE;
            }
        }
      g_string_append (text, "<image>\n");
      return TRUE;
    }
  set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
             "Content parts of type '%s' are not supported; use 'text' and 'image_url'.", type);
  return FALSE;
}

static gboolean
parse_message (JsonNode         *node,
               const AppOpenAILimits *limits,
               gsize            *n_images,
               AppOpenAIMessage **out,
               GError          **error)
{
  JsonObject *obj;
  JsonNode *role, *content;
  const char *r;
  g_autoptr(GString) text = g_string_new (NULL);
  AppOpenAIMessage *msg;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                 "Each message must be an object.");
      return FALSE;
    }
  obj = json_node_get_object (node);
  role = json_object_get_member (obj, "role");
  if (!is_type (role, G_TYPE_STRING))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                 "Each message needs a 'role'.");
      return FALSE;
    }
  r = json_node_get_string (role);
  msg = g_new0 (AppOpenAIMessage, 1);
  msg->images = g_ptr_array_new_with_free_func (image_free);
  *out = msg;
  if (g_str_equal (r, "system") || g_str_equal (r, "developer"))
    msg->role = APP_OPENAI_ROLE_SYSTEM;
  else if (g_str_equal (r, "user"))
    msg->role = APP_OPENAI_ROLE_USER;
  else if (g_str_equal (r, "assistant"))
    msg->role = APP_OPENAI_ROLE_ASSISTANT;
  else
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                 "Messages of role '%s' are not supported (system, user, assistant).", r);
      return FALSE;
    }
  content = json_object_get_member (obj, "content");
  if (is_type (content, G_TYPE_STRING))
    g_string_append (text, json_node_get_string (content));
  else if (content && JSON_NODE_HOLDS_ARRAY (content))
    {
      JsonArray *parts = json_node_get_array (content);

      for (guint i = 0; i < json_array_get_length (parts); i++)
        if (!parse_part (json_array_get_element (parts, i), msg, text, limits, n_images, error))
          return FALSE;
    }
  else if (!(msg->role == APP_OPENAI_ROLE_ASSISTANT && (!content || is_null (content))))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                 "A message's 'content' must be a string or an array of parts.");
      return FALSE;
    }
  if (json_object_has_member (obj, "tool_calls") || g_str_equal (r, "tool"))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                 "Tool calls are not supported.");
      return FALSE;
    }
  msg->text = g_string_free (g_steal_pointer (&text), FALSE);
  return TRUE;
}

static gboolean
parse_stop (JsonObject       *obj,
            AppOpenAIRequest *req,
            GError          **error)
{
  JsonNode *node = json_object_get_member (obj, "stop");
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();

  if (!node || is_null (node))
    return TRUE;
  if (is_type (node, G_TYPE_STRING))
    g_strv_builder_add (b, json_node_get_string (node));
  else if (JSON_NODE_HOLDS_ARRAY (node)
           && json_array_get_length (json_node_get_array (node)) <= MAX_STOP_STRINGS)
    {
      JsonArray *a = json_node_get_array (node);

      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          JsonNode *s = json_array_get_element (a, i);

          if (!is_type (s, G_TYPE_STRING))
            goto bad;
          g_strv_builder_add (b, json_node_get_string (s));
        }
    }
  else
    goto bad;
  req->stop = g_strv_builder_end (b);
  for (char **s = req->stop; *s; s++)
    if (!**s)
      {
        set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "stop",
                   "A stop string must not be empty.");
        return FALSE;
      }
  return TRUE;
bad:
  set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "stop",
             "'stop' must be a string or an array of up to %d strings.", MAX_STOP_STRINGS);
  return FALSE;
}

static gboolean
parse_logit_bias (JsonObject       *obj,
                  AppOpenAIRequest *req,
                  GError          **error)
{
  JsonNode *node = json_object_get_member (obj, "logit_bias");
  g_autoptr(GList) members = NULL;

  if (!node || is_null (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node)
      || json_object_get_size (json_node_get_object (node)) > MAX_LOGIT_BIAS)
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "logit_bias",
                 "'logit_bias' must be an object of at most %d token ids and biases.",
                 MAX_LOGIT_BIAS);
      return FALSE;
    }
  members = json_object_get_members (json_node_get_object (node));
  for (GList *l = members; l; l = l->next)
    {
      const char *key = l->data;
      JsonNode *v = json_object_get_member (json_node_get_object (node), key);
      guint64 id;
      double bias;
      AppOpenAILogitBias lb;

      if (!g_ascii_string_to_unsigned (key, 10, 0, G_MAXINT32, &id, NULL) || !is_number (v)
          || !((bias = json_node_get_double (v)) >= -100 && bias <= 100))
        {
          set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "logit_bias",
                     "'logit_bias' maps token ids to numbers between -100 and 100; '%s' does "
                     "not.", key);
          return FALSE;
        }
      lb.id = (gint32) id;
      lb.bias = (float) bias;
      g_array_append_val (req->logit_bias, lb);
    }
  return TRUE;
}

/* Members that would change the answer in ways this server cannot honour. */
static gboolean
refuse_unsupported (JsonObject *obj,
                    GError    **error)
{
  static const char *const refused[] = { "tools", "functions", "tool_choice", "function_call",
                                         "audio", "prediction" };
  JsonNode *node;
  gint64 n = 1;
  gboolean logprobs = FALSE;

  for (gsize i = 0; i < G_N_ELEMENTS (refused); i++)
    if ((node = json_object_get_member (obj, refused[i])) && !is_null (node))
      {
        set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, refused[i],
                   "'%s' is not supported by this server.", refused[i]);
        return FALSE;
      }
  if (!get_int (obj, "n", 1, 1, &n, error) || !get_bool (obj, "logprobs", &logprobs, error))
    return FALSE;
  if (logprobs)
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "logprobs",
                 "'logprobs' is not supported by this server.");
      return FALSE;
    }
  node = json_object_get_member (obj, "response_format");
  if (node && !is_null (node))
    {
      JsonObject *rf = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
      JsonNode *type = rf ? json_object_get_member (rf, "type") : NULL;

      if (!is_type (type, G_TYPE_STRING) || !g_str_equal (json_node_get_string (type), "text"))
        {
          set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "response_format",
                     "Only {'type': 'text'} is supported as 'response_format'.");
          return FALSE;
        }
    }
  return TRUE;
}

AppOpenAIRequest *
app_openai_request_parse (const char            *body,
                          gsize                  length,
                          const AppOpenAILimits *limits,
                          GError               **error)
{
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(AppOpenAIRequest) req = NULL;
  JsonObject *obj;
  JsonNode *node;
  JsonArray *messages;
  gsize n_images = 0;
  gint64 max_tokens = 0, top_k = -1, seed = 0;

  g_return_val_if_fail (body != NULL || length == 0, NULL);
  g_return_val_if_fail (limits != NULL, NULL);

  if (!(root = parse_json (body, length, error)))
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, NULL,
                 "The request body must be a JSON object.");
      return NULL;
    }
  obj = json_node_get_object (root);
  req = g_new0 (AppOpenAIRequest, 1);
  req->messages = g_ptr_array_new_with_free_func (message_free);
  req->logit_bias = g_array_new (FALSE, FALSE, sizeof (AppOpenAILogitBias));
  req->temperature = req->top_p = req->repetition_penalty = NAN;
  req->top_k = -1;

  node = json_object_get_member (obj, "model");
  if (!is_type (node, G_TYPE_STRING))
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "model",
                 "The request needs a 'model' (GET /v1/models lists it).");
      return NULL;
    }
  req->model = g_strdup (json_node_get_string (node));

  node = json_object_get_member (obj, "messages");
  if (!node || !JSON_NODE_HOLDS_ARRAY (node)
      || json_array_get_length (messages = json_node_get_array (node)) == 0)
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                 "The request needs 'messages', a non-empty array.");
      return NULL;
    }
  if (json_array_get_length (messages) > limits->max_messages)
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "messages",
                 "The request holds %u messages; this server takes at most %zu.",
                 json_array_get_length (messages), limits->max_messages);
      return NULL;
    }
  for (guint i = 0; i < json_array_get_length (messages); i++)
    {
      AppOpenAIMessage *msg = NULL;
      gboolean ok = parse_message (json_array_get_element (messages, i), limits, &n_images,
                                   &msg, error);

      if (msg)
        g_ptr_array_add (req->messages, msg);
      if (!ok)
        return NULL;
    }

  if (!refuse_unsupported (obj, error)
      || !get_bool (obj, "stream", &req->stream, error)
      || !get_number (obj, "temperature", 0, 2, &req->temperature, error)
      || !get_number (obj, "top_p", 0, 1, &req->top_p, error)
      || !get_number (obj, "repetition_penalty", 0.01, 10, &req->repetition_penalty, error)
      || !get_int (obj, "top_k", -1, G_MAXINT32, &top_k, error)
      || !get_int (obj, "seed", G_MININT64, G_MAXINT64, &seed, error)
      || !get_bool (obj, "skip_special_tokens", &req->skip_special_tokens, error)
      || !get_bool (obj, "continue_final_message", &req->continue_final_message, error)
      || !parse_stop (obj, req, error)
      || !parse_logit_bias (obj, req, error))
    return NULL;
  req->top_k = (int) top_k;
  if ((node = json_object_get_member (obj, "seed")) && !is_null (node))
    {
      req->has_seed = TRUE;
      req->seed = (guint64) seed;
    }
  /* max_completion_tokens replaces the deprecated max_tokens; either is read */
  for (const char *const *name = (const char *const[]) { "max_tokens", "max_completion_tokens",
                                                          NULL };
       *name; name++)
    {
      if (!get_int (obj, *name, 1, G_MAXINT32, &max_tokens, error))
        return NULL;
      if (max_tokens > limits->max_tokens)
        {
          set_error (error, APP_OPENAI_ERROR_MAX_TOKENS, *name,
                     "'%s' is %" G_GINT64_FORMAT "; this server answers with at most %d "
                     "tokens.", *name, max_tokens, limits->max_tokens);
          return NULL;
        }
    }
  req->max_tokens = (int) max_tokens;

  node = json_object_get_member (obj, "stream_options");
  if (node && !is_null (node))
    {
      if (!JSON_NODE_HOLDS_OBJECT (node)
          || !get_bool (json_node_get_object (node), "include_usage", &req->include_usage,
                        error))
        {
          g_clear_error (error);
          set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "stream_options",
                     "'stream_options' must be an object like {'include_usage': true}.");
          return NULL;
        }
    }
  if (req->continue_final_message
      && ((AppOpenAIMessage *) g_ptr_array_index (req->messages, req->messages->len - 1))->role
             != APP_OPENAI_ROLE_ASSISTANT)
    {
      set_error (error, APP_OPENAI_ERROR_INVALID_REQUEST, "continue_final_message",
                 "'continue_final_message' needs an assistant message last.");
      return NULL;
    }
  return g_steal_pointer (&req);
}

/* ---------------------------------------------------------------------------------------------
 * Responses
 */

JsonNode *
app_openai_grounding_json (const char *text)
{
  g_autoptr(AppGrounding) g = NULL;
  g_autoptr(JsonBuilder) b = NULL;

  if (!text || !app_grounding_has_tags (text))
    return NULL;
  g = app_grounding_parse (text, FALSE);
  if (g->refs->len == 0)
    return NULL;
  b = json_builder_new ();
  json_builder_begin_array (b);
  for (guint i = 0; i < g->refs->len; i++)
    {
      AppGroundingRef *ref = g_ptr_array_index (g->refs, i);

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "label");
      if (ref->label)
        json_builder_add_string_value (b, ref->label);
      else
        json_builder_add_null_value (b);
      json_builder_set_member_name (b, "boxes");
      json_builder_begin_array (b);
      for (guint j = 0; j < ref->boxes->len; j++)
        {
          AppGroundingBox *box = &g_array_index (ref->boxes, AppGroundingBox, j);
          double v[4] = { box->x1, box->y1, box->x2, box->y2 };

          json_builder_begin_array (b);
          for (int k = 0; k < 4; k++)
            if (v[k] == floor (v[k]))
              json_builder_add_int_value (b, (gint64) v[k]);
            else
              json_builder_add_double_value (b, v[k]);
          json_builder_end_array (b);
        }
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  return json_builder_get_root (b);
}

static void
add_usage (JsonBuilder          *b,
           const AppOpenAIUsage *usage)
{
  json_builder_set_member_name (b, "usage");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "prompt_tokens");
  json_builder_add_int_value (b, usage->prompt_tokens);
  json_builder_set_member_name (b, "completion_tokens");
  json_builder_add_int_value (b, usage->completion_tokens);
  json_builder_set_member_name (b, "total_tokens");
  json_builder_add_int_value (b, usage->prompt_tokens + usage->completion_tokens);
  json_builder_set_member_name (b, "prompt_tokens_details");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "cached_tokens");
  json_builder_add_int_value (b, usage->cached_tokens);
  json_builder_end_object (b);
  json_builder_end_object (b);
}

static void
begin_response (JsonBuilder *b,
                const char  *id,
                const char  *object,
                gint64       created,
                const char  *model)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, id);
  json_builder_set_member_name (b, "object");
  json_builder_add_string_value (b, object);
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, created);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, model);
  json_builder_set_member_name (b, "system_fingerprint");
  json_builder_add_null_value (b);
}

char *
app_openai_completion_json (const char           *id,
                            gint64                created,
                            const char           *model,
                            const char           *content,
                            const char           *finish_reason,
                            const AppOpenAIUsage *usage)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  JsonNode *grounding = app_openai_grounding_json (content);

  begin_response (b, id, "chat.completion", created, model);
  json_builder_set_member_name (b, "choices");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "index");
  json_builder_add_int_value (b, 0);
  json_builder_set_member_name (b, "message");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "role");
  json_builder_add_string_value (b, "assistant");
  json_builder_set_member_name (b, "content");
  json_builder_add_string_value (b, content);
  json_builder_set_member_name (b, "refusal");
  json_builder_add_null_value (b);
  if (grounding)
    {
      json_builder_set_member_name (b, "grounding");
      json_builder_add_value (b, grounding);
    }
  json_builder_end_object (b);
  json_builder_set_member_name (b, "logprobs");
  json_builder_add_null_value (b);
  json_builder_set_member_name (b, "finish_reason");
  json_builder_add_string_value (b, finish_reason);
  json_builder_end_object (b);
  json_builder_end_array (b);
  add_usage (b, usage);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return to_json (root);
}

char *
app_openai_chunk_json (const char           *id,
                       gint64                created,
                       const char           *model,
                       const char           *role,
                       const char           *content,
                       const char           *finish_reason,
                       JsonNode             *grounding,
                       const AppOpenAIUsage *usage)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;

  begin_response (b, id, "chat.completion.chunk", created, model);
  json_builder_set_member_name (b, "choices");
  json_builder_begin_array (b);
  if (!usage)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "index");
      json_builder_add_int_value (b, 0);
      json_builder_set_member_name (b, "delta");
      json_builder_begin_object (b);
      if (role)
        {
          json_builder_set_member_name (b, "role");
          json_builder_add_string_value (b, role);
        }
      if (content)
        {
          json_builder_set_member_name (b, "content");
          json_builder_add_string_value (b, content);
        }
      if (grounding)
        {
          json_builder_set_member_name (b, "grounding");
          json_builder_add_value (b, json_node_copy (grounding));
        }
      json_builder_end_object (b);
      json_builder_set_member_name (b, "logprobs");
      json_builder_add_null_value (b);
      json_builder_set_member_name (b, "finish_reason");
      if (finish_reason)
        json_builder_add_string_value (b, finish_reason);
      else
        json_builder_add_null_value (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  if (usage)
    add_usage (b, usage);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return to_json (root);
}

/* ---------------------------------------------------------------------------------------------
 * Server-Sent Events
 */

struct _AppOpenAISse
{
  AppOpenAISseFunc func;
  gpointer user_data;
  GString *line;
  GString *data;       /* the event's data lines so far */
  gboolean has_data;
  gboolean after_cr;   /* the last byte was "\r": a "\n" right after it ends nothing more */
};

AppOpenAISse *
app_openai_sse_new (AppOpenAISseFunc func,
                    gpointer         user_data)
{
  AppOpenAISse *sse = g_new0 (AppOpenAISse, 1);

  sse->func = func;
  sse->user_data = user_data;
  sse->line = g_string_new (NULL);
  sse->data = g_string_new (NULL);
  return sse;
}

void
app_openai_sse_free (AppOpenAISse *sse)
{
  if (!sse)
    return;
  g_string_free (sse->line, TRUE);
  g_string_free (sse->data, TRUE);
  g_free (sse);
}

/* One complete line, as the HTML standard's event stream interpretation has it. */
static void
sse_line (AppOpenAISse *sse)
{
  const char *line = sse->line->str, *colon, *value;
  gsize field_len;

  if (sse->line->len == 0)
    {
      /* a blank line dispatches the event */
      if (sse->has_data)
        sse->func (sse->data->str, sse->user_data);
      g_string_truncate (sse->data, 0);
      sse->has_data = FALSE;
      return;
    }
  if (line[0] == ':')
    return; /* a comment (keep-alive) */
  colon = strchr (line, ':');
  field_len = colon ? (gsize) (colon - line) : sse->line->len;
  value = colon ? colon + 1 : "";
  if (*value == ' ')
    value++;
  if (field_len == 4 && strncmp (line, "data", 4) == 0)
    {
      if (sse->has_data)
        g_string_append_c (sse->data, '\n');
      g_string_append (sse->data, value);
      sse->has_data = TRUE;
    }
  /* event, id and retry carry nothing an OpenAI stream uses */
}

gboolean
app_openai_sse_feed (AppOpenAISse *sse,
                     const char   *data,
                     gsize         length,
                     gsize         max_line)
{
  for (gsize i = 0; i < length; i++)
    {
      char c = data[i];

      if (c == '\n' && sse->after_cr)
        {
          sse->after_cr = FALSE;
          continue;
        }
      sse->after_cr = c == '\r';
      if (c == '\r' || c == '\n')
        {
          sse_line (sse);
          g_string_truncate (sse->line, 0);
          continue;
        }
      if (sse->line->len >= max_line)
        return FALSE;
      g_string_append_c (sse->line, c);
    }
  return TRUE;
}

void
app_openai_delta_clear (AppOpenAIDelta *delta)
{
  g_clear_pointer (&delta->content, g_free);
  g_clear_pointer (&delta->finish_reason, g_free);
  delta->has_usage = FALSE;
  memset (&delta->usage, 0, sizeof delta->usage);
}

static int
int_member (JsonObject *obj,
            const char *name)
{
  JsonNode *node = obj ? json_object_get_member (obj, name) : NULL;

  return is_number (node) ? (int) CLAMP (json_node_get_double (node), 0, G_MAXINT) : 0;
}

/* The `message` of an `{"error": ...}` object, or NULL. */
static const char *
error_object_message (JsonNode *root)
{
  JsonObject *obj = JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonNode *err = obj ? json_object_get_member (obj, "error") : NULL;
  JsonNode *msg;

  if (!err)
    return NULL;
  if (is_type (err, G_TYPE_STRING))
    return json_node_get_string (err);
  if (JSON_NODE_HOLDS_OBJECT (err)
      && is_type (msg = json_object_get_member (json_node_get_object (err), "message"),
                  G_TYPE_STRING))
    return json_node_get_string (msg);
  return "the server reported an error";
}

gboolean
app_openai_parse_chunk (const char     *json,
                        AppOpenAIDelta *delta,
                        GError        **error)
{
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GError) local = NULL;
  JsonObject *obj;
  JsonNode *choices, *usage;
  const char *err;

  memset (delta, 0, sizeof *delta);
  if (!(root = parse_json (json, strlen (json), &local)))
    {
      g_set_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_JSON,
                   "The server sent something that is not JSON: %s", local->message);
      return FALSE;
    }
  if ((err = error_object_message (root)))
    {
      g_set_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_SERVER, "%s", err);
      return FALSE;
    }
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error_literal (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_JSON,
                           "The server sent a chunk that is not a JSON object.");
      return FALSE;
    }
  obj = json_node_get_object (root);
  choices = json_object_get_member (obj, "choices");
  if (choices && JSON_NODE_HOLDS_ARRAY (choices)
      && json_array_get_length (json_node_get_array (choices)) > 0)
    {
      JsonNode *choice = json_array_get_element (json_node_get_array (choices), 0);
      JsonObject *c = JSON_NODE_HOLDS_OBJECT (choice) ? json_node_get_object (choice) : NULL;
      JsonNode *d = c ? json_object_get_member (c, "delta") : NULL;
      JsonNode *reason = c ? json_object_get_member (c, "finish_reason") : NULL;
      JsonNode *content;

      if (!d && c)
        d = json_object_get_member (c, "message"); /* a whole completion */
      if (d && JSON_NODE_HOLDS_OBJECT (d)
          && is_type (content = json_object_get_member (json_node_get_object (d), "content"),
                      G_TYPE_STRING))
        delta->content = g_strdup (json_node_get_string (content));
      if (is_type (reason, G_TYPE_STRING))
        delta->finish_reason = g_strdup (json_node_get_string (reason));
    }
  usage = json_object_get_member (obj, "usage");
  if (usage && JSON_NODE_HOLDS_OBJECT (usage))
    {
      JsonObject *u = json_node_get_object (usage);
      JsonNode *details = json_object_get_member (u, "prompt_tokens_details");

      delta->has_usage = TRUE;
      delta->usage.prompt_tokens = int_member (u, "prompt_tokens");
      delta->usage.completion_tokens = int_member (u, "completion_tokens");
      if (details && JSON_NODE_HOLDS_OBJECT (details))
        delta->usage.cached_tokens = int_member (json_node_get_object (details),
                                                 "cached_tokens");
    }
  return TRUE;
}

char *
app_openai_error_message (const char *body,
                          gsize       length)
{
  g_autoptr(JsonNode) root = parse_json (body, length, NULL);
  const char *msg = root ? error_object_message (root) : NULL;
  g_autofree char *text = NULL;

  if (msg)
    return g_strdup (msg);
  /* not an OpenAI error: the start of the body, one line, valid UTF-8 */
  text = g_utf8_make_valid (body, MIN (length, 200));
  g_strdelimit (text, "\r\n\t", ' ');
  return g_strstrip (g_steal_pointer (&text));
}

GStrv
app_openai_parse_models (const char *json,
                         gsize       length,
                         GError    **error)
{
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();
  g_autoptr(GError) local = NULL;
  JsonNode *data;

  if (!(root = parse_json (json, length, &local)))
    {
      g_set_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_JSON,
                   "The server's model list is not JSON: %s", local->message);
      return NULL;
    }
  if (!JSON_NODE_HOLDS_OBJECT (root)
      || !(data = json_object_get_member (json_node_get_object (root), "data"))
      || !JSON_NODE_HOLDS_ARRAY (data))
    {
      g_set_error_literal (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_JSON,
                           "The server's answer to /v1/models is not a model list.");
      return NULL;
    }
  for (guint i = 0; i < json_array_get_length (json_node_get_array (data)); i++)
    {
      JsonNode *m = json_array_get_element (json_node_get_array (data), i);
      JsonNode *id = JSON_NODE_HOLDS_OBJECT (m)
                         ? json_object_get_member (json_node_get_object (m), "id")
                         : NULL;

      if (is_type (id, G_TYPE_STRING))
        g_strv_builder_add (b, json_node_get_string (id));
    }
  return g_strv_builder_end (b);
}
