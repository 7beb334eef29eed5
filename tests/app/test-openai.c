/* test-openai.c - OpenAI's chat-completions format (app/core/app-openai.c), without a network.
 *
 * Requests as clients write them (the official client's shapes, vLLM's extensions) parse into
 * what the engine needs, and every wrong one into the error OpenAI's server would give, with
 * the member it is about. The event-stream reader is fed a recorded vLLM stream of a grounded
 * answer split at every byte and with every line ending, and must give the same text and the
 * same boxes each time.
 */

#include "app-grounding.h"
#include "app-openai.h"

#include <math.h>
#include <string.h>

static const AppOpenAILimits limits = { 4, 100, 4096, FALSE };

static AppOpenAIRequest *
parse (const char *json,
       GError    **error)
{
  return app_openai_request_parse (json, strlen (json), &limits, error);
}

static void
test_parse_full (void)
{
  /* a PNG's signature as the image: parsing does not decode images */
  const char *json =
    "{\"model\": \"deepseek-vl2-tiny\", \"stream\": true,"
    " \"stream_options\": {\"include_usage\": true},"
    " \"messages\": ["
    "  {\"role\": \"system\", \"content\": \"Be brief.\"},"
    "  {\"role\": \"user\", \"content\": ["
    "    {\"type\": \"text\", \"text\": \"This is one: \"},"
    "    {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,iVBORw0KGgo=\","
    "     \"detail\": \"high\"}},"
    "    {\"type\": \"text\", \"text\": \"What is it?\"}]},"
    "  {\"role\": \"assistant\", \"content\": \"A cat.\"},"
    "  {\"role\": \"user\", \"content\": \"Sure?\"}],"
    " \"temperature\": 0, \"top_p\": 0.5, \"top_k\": 7, \"repetition_penalty\": 1.2,"
    " \"max_completion_tokens\": 99, \"stop\": [\"\\n\\n\", \"END\"], \"seed\": 42,"
    " \"logit_bias\": {\"100\": -100, \"7\": 2.5}, \"user\": \"someone\", \"n\": 1}";
  g_autoptr(GError) error = NULL;
  g_autoptr(AppOpenAIRequest) r = parse (json, &error);
  AppOpenAIMessage *m;
  AppOpenAIImage *im;

  g_assert_no_error (error);
  g_assert_cmpstr (r->model, ==, "deepseek-vl2-tiny");
  g_assert_true (r->stream && r->include_usage);
  g_assert_cmpuint (r->messages->len, ==, 4);
  m = g_ptr_array_index (r->messages, 0);
  g_assert_cmpint (m->role, ==, APP_OPENAI_ROLE_SYSTEM);
  g_assert_cmpstr (m->text, ==, "Be brief.");
  m = g_ptr_array_index (r->messages, 1);
  g_assert_cmpint (m->role, ==, APP_OPENAI_ROLE_USER);
  g_assert_cmpstr (m->text, ==, "This is one: <image>\nWhat is it?");
  g_assert_cmpuint (m->images->len, ==, 1);
  im = g_ptr_array_index (m->images, 0);
  g_assert_null (im->url);
  g_assert_cmpmem (g_bytes_get_data (im->data, NULL), g_bytes_get_size (im->data),
                   "\x89PNG\r\n\x1a\n", 8);
  m = g_ptr_array_index (r->messages, 2);
  g_assert_cmpint (m->role, ==, APP_OPENAI_ROLE_ASSISTANT);
  g_assert_cmpfloat (r->temperature, ==, 0);
  g_assert_cmpfloat (r->top_p, ==, 0.5);
  g_assert_cmpint (r->top_k, ==, 7);
  g_assert_cmpfloat_with_epsilon (r->repetition_penalty, 1.2, 1e-12);
  g_assert_cmpint (r->max_tokens, ==, 99);
  g_assert_cmpuint (g_strv_length (r->stop), ==, 2);
  g_assert_cmpstr (r->stop[1], ==, "END");
  g_assert_true (r->has_seed);
  g_assert_cmpuint (r->seed, ==, 42);
  g_assert_cmpuint (r->logit_bias->len, ==, 2);
  g_assert_false (r->skip_special_tokens);
}

static void
test_parse_defaults (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(AppOpenAIRequest) r =
    parse ("{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}],"
           " \"stop\": \"x\", \"max_tokens\": 5.0, \"stream_options\": null}", &error);

  g_assert_no_error (error);
  g_assert_false (r->stream);
  g_assert_true (isnan (r->temperature) && isnan (r->top_p) && isnan (r->repetition_penalty));
  g_assert_cmpint (r->top_k, ==, -1);
  g_assert_false (r->has_seed);
  g_assert_cmpint (r->max_tokens, ==, 5);
  g_assert_cmpstr (r->stop[0], ==, "x");
  g_assert_null (r->stop[1]);
}

/* Each wrong request: its error code and the member named. */
static void
test_parse_errors (void)
{
  static const struct
  {
    const char *json;
    AppOpenAIError code;
    const char *param;
  } cases[] = {
    { "", APP_OPENAI_ERROR_INVALID_JSON, NULL },
    { "{\"model\": ", APP_OPENAI_ERROR_INVALID_JSON, NULL },
    { "[]", APP_OPENAI_ERROR_INVALID_REQUEST, NULL },
    { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
      APP_OPENAI_ERROR_INVALID_REQUEST, "model" },
    { "{\"model\": \"m\", \"messages\": []}", APP_OPENAI_ERROR_INVALID_REQUEST, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"content\": \"hi\"}]}",
      APP_OPENAI_ERROR_INVALID_REQUEST, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"tool\", \"content\": \"hi\"}]}",
      APP_OPENAI_ERROR_INVALID_REQUEST, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": 5}]}",
      APP_OPENAI_ERROR_INVALID_REQUEST, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": "
      "\"input_audio\"}]}]}", APP_OPENAI_ERROR_INVALID_REQUEST, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"assistant\", \"content\": [{\"type\": "
      "\"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,AAAA\"}}]}]}",
      APP_OPENAI_ERROR_INVALID_REQUEST, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": "
      "\"image_url\", \"image_url\": {\"url\": \"https://example.com/a.png\"}}]}]}",
      APP_OPENAI_ERROR_IMAGE_URL, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": "
      "\"image_url\", \"image_url\": {\"url\": \"file:///etc/passwd\"}}]}]}",
      APP_OPENAI_ERROR_INVALID_IMAGE, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": "
      "\"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,\"}}]}]}",
      APP_OPENAI_ERROR_INVALID_IMAGE, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": "
      "\"image_url\", \"image_url\": {\"url\": \"data:,a\"}}, {\"type\": \"image_url\", "
      "\"image_url\": {\"url\": \"data:,a\"}}, {\"type\": \"image_url\", \"image_url\": {\"url\":"
      " \"data:,a\"}}, {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:,a\"}}, "
      "{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:,a\"}}]}]}",
      APP_OPENAI_ERROR_TOO_MANY_IMAGES, "messages" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 2}",
      APP_OPENAI_ERROR_INVALID_REQUEST, "n" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"temperature\": \"hot\"}", APP_OPENAI_ERROR_INVALID_REQUEST, "temperature" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"top_p\": 1.5}", APP_OPENAI_ERROR_INVALID_REQUEST, "top_p" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"max_tokens\": 0}", APP_OPENAI_ERROR_INVALID_REQUEST, "max_tokens" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"max_tokens\": 1.5}", APP_OPENAI_ERROR_INVALID_REQUEST, "max_tokens" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"max_tokens\": 5000}", APP_OPENAI_ERROR_MAX_TOKENS, "max_tokens" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", APP_OPENAI_ERROR_INVALID_REQUEST, "stop" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"stop\": [\"\"]}", APP_OPENAI_ERROR_INVALID_REQUEST, "stop" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"logit_bias\": {\"x\": 1}}", APP_OPENAI_ERROR_INVALID_REQUEST, "logit_bias" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"logit_bias\": {\"5\": 101}}", APP_OPENAI_ERROR_INVALID_REQUEST, "logit_bias" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"tools\": []}", APP_OPENAI_ERROR_INVALID_REQUEST, "tools" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"logprobs\": true}", APP_OPENAI_ERROR_INVALID_REQUEST, "logprobs" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"response_format\": {\"type\": \"json_object\"}}", APP_OPENAI_ERROR_INVALID_REQUEST,
      "response_format" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"stream_options\": 3}", APP_OPENAI_ERROR_INVALID_REQUEST, "stream_options" },
    { "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
      "\"continue_final_message\": true}", APP_OPENAI_ERROR_INVALID_REQUEST,
      "continue_final_message" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(AppOpenAIRequest) r = parse (cases[i].json, &error);
      g_autofree char *json = NULL;
      g_autoptr(JsonParser) parser = json_parser_new ();
      JsonObject *err;
      guint status = 0;

      g_test_message ("%s", cases[i].json);
      g_assert_null (r);
      g_assert_error (error, APP_OPENAI_ERROR, (gint) cases[i].code);
      json = app_openai_error_json (error, &status);
      g_assert_cmpuint (status, ==, app_openai_error_status (cases[i].code));
      g_assert_true (json_parser_load_from_data (parser, json, -1, NULL));
      err = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                           "error");
      g_assert_cmpstr (json_object_get_string_member (err, "code"), ==,
                       app_openai_error_code (cases[i].code));
      g_assert_cmpstr (json_object_get_string_member (err, "type"), ==,
                       app_openai_error_type (cases[i].code));
      g_assert_cmpstr (json_object_get_string_member_with_default (err, "param", NULL), ==,
                       cases[i].param);
      /* the message is for people: no member name glued to it */
      g_assert_null (strchr (json_object_get_string_member (err, "message"), '\x1f'));
    }
}

/* JSON nested deeper than the parser's stack allows is refused before it is parsed. */
static void
test_parse_deep (void)
{
  gsize n = 200000;
  g_autofree char *json = g_malloc (2 * n + 1);
  g_autoptr(GError) error = NULL;
  g_autoptr(AppOpenAIRequest) r = NULL;

  memset (json, '[', n);
  memset (json + n, ']', n);
  json[2 * n] = '\0';
  r = parse (json, &error);
  g_assert_null (r);
  g_assert_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_JSON);
  /* brackets inside strings do not count */
  g_clear_error (&error);
  g_clear_pointer (&json, g_free);
  {
    g_autofree char *brackets = g_strnfill (1000, '[');
    g_autofree char *text = g_strdup_printf ("{\"model\": \"m\", \"messages\": [{\"role\": "
                                             "\"user\", \"content\": \"%s\"}]}", brackets);
    g_autoptr(AppOpenAIRequest) ok = parse (text, &error);

    g_assert_no_error (error);
    g_assert_nonnull (ok);
  }
}

/* Deep nesting hidden from a scanner that only knows JSON's own strings: json-glib also takes
 * comments and single-quoted strings, and reads on past a lone surrogate escape (closing quote
 * included). Each of these overflowed json-glib's stack; each is refused instead. A body that
 * is strict JSON with escaped emoji (a surrogate pair) and many objects is still taken. */
/* json-glib's parse error quotes the text around the error cut at a byte count, which split
 * the two-byte character here: the 400 body carried invalid UTF-8 (invalid JSON). */
static void
test_parse_error_utf8 (void)
{
  static const char body[] = "{\"odel\": \"m\", \"mges\": [{\"role\": \"user\", \"co\": \"unt\"}, "
                             "'{\"e\"\x1b: \"asss\": [{\"role\", \"content\": \xde\x83" "ent\"}, 'ti";
  g_autoptr(GError) error = NULL;
  g_autoptr(AppOpenAIRequest) r = parse (body, &error);
  g_autofree char *json = NULL;
  g_autoptr(JsonNode) root = NULL;
  guint status = 0;

  g_assert_true (g_utf8_validate (body, -1, NULL));
  g_assert_null (r);
  g_assert_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_JSON);
  g_assert_true (g_utf8_validate (error->message, -1, NULL));
  json = app_openai_error_json (error, &status);
  g_assert_cmpuint (status, ==, 400);
  g_assert_true (g_utf8_validate (json, -1, NULL));
  root = json_from_string (json, NULL);
  g_assert_nonnull (root);
}

/* json-glib turns a lone surrogate escape ("\ude1 ", "\udc00") into bytes that are not UTF-8:
 * such a request is refused as JSON, and the refusal (which once quoted the broken value) is a
 * well-formed error body. */
static void
test_parse_broken_escape (void)
{
  static const char *const bodies[] = {
    /* the fuzzer's input: the content part's type quoted in the refusal */
    "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\":\"li mag\\ude1 \"image_url\", \"image_url\": \"}https://example.com/a.png\"}]}]}",
    "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\\udc00b\"}]}]}",
    "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\\ud800 \"}]}",
    "{\"model\": \"m\", \"messages\": [{\"role\": \"\\udfff\", \"content\": \"hi\"}]}",
    "{\"model\": \"\\ude12x\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
    "{\"model\": \"m\", \"logit_bias\": {\"\\udc01\": 1}, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(AppOpenAIRequest) r = parse (bodies[i], &error);
      g_autofree char *json = NULL;
      g_autoptr(JsonNode) root = NULL;
      guint status = 0;

      g_test_message ("body %u: %s", i, bodies[i]);
      g_assert_null (r);
      g_assert_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_JSON);
      g_assert_true (g_utf8_validate (error->message, -1, NULL));
      json = app_openai_error_json (error, &status);
      g_assert_cmpuint (status, ==, 400);
      root = json_from_string (json, NULL);
      g_assert_nonnull (root);
    }
}

static void
test_parse_deep_disguised (void)
{
  static const char *const prefixes[] = {
    "/*\"*/",
    "['\"', ",
    "[\"\\uD800\"x\", ",
    "[\"\\uDC00\"x\", ",
    "[\"\\u12\"x\", ",
  };
  g_autofree char *brackets = g_strnfill (200000, '[');

  for (guint i = 0; i < G_N_ELEMENTS (prefixes); i++)
    {
      g_autofree char *json = g_strconcat (prefixes[i], brackets, "\"", NULL);
      g_autoptr(GError) error = NULL;
      g_autoptr(AppOpenAIRequest) r = parse (json, &error);

      g_assert_null (r);
      g_assert_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_JSON);
    }

  {
    GString *text = g_string_new ("{\"model\": \"m\", \"messages\": [");
    g_autoptr(GError) error = NULL;
    g_autoptr(AppOpenAIRequest) ok = NULL;

    /* more objects after the first escape than the depth limit */
    for (guint i = 0; i < 80; i++)
      g_string_append_printf (text, "%s{\"role\": \"user\", \"content\": "
                              "\"\\ud83d\\ude00 %u\"}", i ? ", " : "", i);
    g_string_append (text, "]}");
    ok = parse (text->str, &error);
    g_string_free (text, TRUE);
    g_assert_no_error (error);
    g_assert_nonnull (ok);
  }
}

static void
test_data_url (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) a = app_openai_decode_data_url ("data:image/png;base64,aGVs\nbG8=", &error);
  g_autoptr(GBytes) b = NULL;

  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (a, NULL), g_bytes_get_size (a), "hello", 5);
  b = app_openai_decode_data_url ("data:text/plain,h%65llo", &error);
  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (b, NULL), g_bytes_get_size (b), "hello", 5);
  g_assert_null (app_openai_decode_data_url ("data:image/png;base64,a$b", &error));
  g_assert_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_IMAGE);
  g_clear_error (&error);
  g_assert_null (app_openai_decode_data_url ("image/png;base64,aGVsbG8=", &error));
  g_assert_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_IMAGE);
}

static JsonNode *
parse_node (const char *json)
{
  g_autoptr(JsonParser) parser = json_parser_new ();

  g_assert_true (json_parser_load_from_data (parser, json, -1, NULL));
  return json_node_ref (json_parser_get_root (parser));
}

static void
test_responses (void)
{
  AppOpenAIUsage usage = { 10, 3, 4 };
  const char *answer = "<|ref|>cat<|/ref|><|det|>[[1, 2, 300, 400], [5, 6, 7, 8]]<|/det|> ok";
  g_autofree char *completion = app_openai_completion_json ("chatcmpl-1", 7, "m", answer, "stop",
                                                            &usage);
  g_autoptr(JsonNode) c = parse_node (completion);
  g_autoptr(JsonNode) g = app_openai_grounding_json (answer);
  g_autofree char *chunk = app_openai_chunk_json ("chatcmpl-1", 7, "m", NULL, NULL, "stop", g,
                                                  NULL);
  g_autofree char *usage_chunk = app_openai_chunk_json ("chatcmpl-1", 7, "m", NULL, NULL, NULL,
                                                        NULL, &usage);
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autofree char *boxes = NULL;
  AppOpenAIDelta delta = { 0 };
  g_autoptr(GError) error = NULL;
  JsonObject *o = json_node_get_object (c), *msg;

  g_assert_cmpstr (json_object_get_string_member (o, "object"), ==, "chat.completion");
  msg = json_object_get_object_member (
    json_array_get_object_element (json_object_get_array_member (o, "choices"), 0), "message");
  g_assert_cmpstr (json_object_get_string_member (msg, "content"), ==, answer);
  json_generator_set_root (gen, json_object_get_member (msg, "grounding"));
  boxes = json_generator_to_data (gen, NULL);
  g_assert_cmpstr (boxes, ==, "[{\"label\":\"cat\",\"boxes\":[[1,2,300,400],[5,6,7,8]]}]");
  g_assert_cmpint (json_object_get_int_member (json_object_get_object_member (o, "usage"),
                                               "total_tokens"), ==, 13);
  g_assert_null (app_openai_grounding_json ("no boxes here"));

  /* and read back, as the remote backend reads them */
  g_assert_true (app_openai_parse_chunk (completion, &delta, &error));
  g_assert_cmpstr (delta.content, ==, answer);
  g_assert_cmpstr (delta.finish_reason, ==, "stop");
  g_assert_true (delta.has_usage);
  g_assert_cmpint (delta.usage.cached_tokens, ==, 4);
  app_openai_delta_clear (&delta);
  g_assert_true (app_openai_parse_chunk (chunk, &delta, &error));
  g_assert_null (delta.content);
  g_assert_cmpstr (delta.finish_reason, ==, "stop");
  app_openai_delta_clear (&delta);
  g_assert_true (app_openai_parse_chunk (usage_chunk, &delta, &error));
  g_assert_true (delta.has_usage && delta.usage.prompt_tokens == 10);
  app_openai_delta_clear (&delta);
  g_assert_no_error (error);
  /* an error event in a stream */
  g_assert_false (app_openai_parse_chunk ("{\"error\": {\"message\": \"out of memory\", "
                                          "\"type\": \"server_error\"}}", &delta, &error));
  g_assert_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_SERVER);
  g_assert_cmpstr (error->message, ==, "out of memory");
}

typedef struct
{
  GString *text;
  int events;
  gboolean done;
  gboolean usage;
  char *finish;
} Replay;

static void
replay_event (const char *data,
              gpointer    user_data)
{
  Replay *r = user_data;
  AppOpenAIDelta delta = { 0 };
  g_autoptr(GError) error = NULL;

  r->events++;
  if (g_str_equal (data, "[DONE]"))
    {
      r->done = TRUE;
      return;
    }
  g_assert_false (r->done);
  g_assert_true (app_openai_parse_chunk (data, &delta, &error));
  g_assert_no_error (error);
  if (delta.content)
    g_string_append (r->text, delta.content);
  if (delta.finish_reason)
    r->finish = g_strdup (delta.finish_reason);
  if (delta.has_usage)
    {
      r->usage = TRUE;
      g_assert_cmpint (delta.usage.prompt_tokens, ==, 1043);
      g_assert_cmpint (delta.usage.completion_tokens, ==, 63);
    }
  app_openai_delta_clear (&delta);
}

/* The recorded vLLM stream of a grounded answer: split at every byte, with "\n", "\r\n" and
 * "\r" line ends, it gives the same text, and the text gives the two labels with their boxes. */
static void
test_vllm_replay (void)
{
  g_autofree char *path = g_build_filename (g_getenv ("VL2_APP_FIXTURES"), "vllm-grounding.sse",
                                            NULL);
  g_autofree char *lf = NULL;
  gsize len;
  const char *const endings[] = { "\n", "\r\n", "\r" };

  g_assert_true (g_file_get_contents (path, &lf, &len, NULL));
  for (gsize e = 0; e < G_N_ELEMENTS (endings); e++)
    {
      g_auto(GStrv) lines = g_strsplit (lf, "\n", -1);
      g_autofree char *stream = g_strjoinv (endings[e], lines);
      gsize n = strlen (stream);

      for (gsize split = 0; split <= n; split += (n / 97) + 1)
        {
          Replay r = { g_string_new (NULL), 0, FALSE, FALSE, NULL };
          g_autoptr(AppOpenAISse) sse = app_openai_sse_new (replay_event, &r);
          g_autoptr(AppGrounding) g = NULL;
          AppGroundingRef *ref;
          AppGroundingBox *box;

          /* in three pieces: before the split, one byte, the rest */
          g_assert_true (app_openai_sse_feed (sse, stream, split, 65536));
          g_assert_true (app_openai_sse_feed (sse, stream + split, MIN (1, n - split), 65536));
          g_assert_true (app_openai_sse_feed (sse, stream + split + MIN (1, n - split),
                                              n - split - MIN (1, n - split), 65536));
          g_assert_true (r.done && r.usage);
          g_assert_cmpstr (r.finish, ==, "stop");
          g_assert_cmpstr (r.text->str, ==,
                           "<|ref|>The giraffe at the back<|/ref|><|det|>[[580, 21, 834, 996]]"
                           "<|/det|> and <|ref|>the fence<|/ref|><|det|>[[0, 610, 999, 750], "
                           "[31, 12, 40, 50]]<|/det|>.");
          g = app_grounding_parse (r.text->str, FALSE);
          g_assert_cmpuint (g->refs->len, ==, 2);
          g_assert_cmpuint (g->n_boxes, ==, 3);
          ref = g_ptr_array_index (g->refs, 0);
          g_assert_cmpstr (ref->label, ==, "The giraffe at the back");
          box = &g_array_index (ref->boxes, AppGroundingBox, 0);
          g_assert_true (box->x1 == 580 && box->y1 == 21 && box->x2 == 834 && box->y2 == 996);
          ref = g_ptr_array_index (g->refs, 1);
          g_assert_cmpstr (ref->label, ==, "the fence");
          g_assert_cmpuint (ref->boxes->len, ==, 2);
          g_string_free (r.text, TRUE);
          g_free (r.finish);
        }
    }
}

static void
count_event (const char *data,
             gpointer    user_data)
{
  GPtrArray *events = user_data;

  g_ptr_array_add (events, g_strdup (data));
}

/* The event-stream rules: comments, fields without a space, multi-line data, other fields,
 * and a line longer than allowed. */
static void
test_sse_rules (void)
{
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(AppOpenAISse) sse = app_openai_sse_new (count_event, events);
  const char *stream = ": keep-alive\n\ndata:a\ndata: b\n\nevent: x\nid: 3\ndata: c\n\n"
                       "data: not dispatched";
  g_autofree char *longline = g_strnfill (100, 'x');

  g_assert_true (app_openai_sse_feed (sse, stream, strlen (stream), 64));
  g_assert_cmpuint (events->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (events, 0), ==, "a\nb");
  g_assert_cmpstr (g_ptr_array_index (events, 1), ==, "c");
  g_assert_false (app_openai_sse_feed (sse, longline, 100, 64));
}

static void
test_models_and_messages (void)
{
  g_autoptr(GError) error = NULL;
  const char *list = "{\"object\": \"list\", \"data\": [{\"id\": \"deepseek-ai/deepseek-vl2\", "
                     "\"object\": \"model\"}, {\"id\": \"other\"}]}";
  g_auto(GStrv) ids = app_openai_parse_models (list, strlen (list), &error);
  g_autofree char *m1 = NULL, *m2 = NULL;

  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (ids), ==, 2);
  g_assert_cmpstr (ids[0], ==, "deepseek-ai/deepseek-vl2");
  g_assert_null (app_openai_parse_models ("<html>", 6, &error));
  g_assert_error (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_JSON);
  m1 = app_openai_error_message ("{\"error\": {\"message\": \"bad key\"}}", 33);
  g_assert_cmpstr (m1, ==, "bad key");
  m2 = app_openai_error_message ("<html>\r\n502 Bad Gateway\xff</html>", 31);
  g_assert_true (g_utf8_validate (m2, -1, NULL));
  g_assert_null (strchr (m2, '\n'));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/app/openai/parse-full", test_parse_full);
  g_test_add_func ("/app/openai/parse-defaults", test_parse_defaults);
  g_test_add_func ("/app/openai/parse-errors", test_parse_errors);
  g_test_add_func ("/app/openai/parse-deep", test_parse_deep);
  g_test_add_func ("/app/openai/parse-deep-disguised", test_parse_deep_disguised);
  g_test_add_func ("/app/openai/parse-error-utf8", test_parse_error_utf8);
  g_test_add_func ("/app/openai/parse-broken-escape", test_parse_broken_escape);
  g_test_add_func ("/app/openai/data-url", test_data_url);
  g_test_add_func ("/app/openai/responses", test_responses);
  g_test_add_func ("/app/openai/vllm-replay", test_vllm_replay);
  g_test_add_func ("/app/openai/sse-rules", test_sse_rules);
  g_test_add_func ("/app/openai/models-and-messages", test_models_and_messages);
  return g_test_run ();
}
