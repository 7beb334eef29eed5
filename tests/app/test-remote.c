/* test-remote.c - the app's remote backend (app-remote.c through AppEngine), without a display.
 *
 * Against the real vl2-server with the golden mini-tiny on a loopback port: connecting, and
 * answers equal to the in-process engine's, token for token, for a question with an image,
 * a follow-up and a continued answer. Against a scripted server on loopback: a recorded vLLM
 * stream of a grounded answer arrives as its text and boxes (and the request asked vLLM to
 * keep the special tokens); a server that stops answering, one that fails in the middle of an
 * answer, one that is busy, one that refuses the key, one that is not an OpenAI server, and
 * nothing listening at all: each ends with a message that says what happened, and the chat
 * keeps the question and whatever text had arrived.
 */
#include <gio/gio.h>
#include <libsoup/soup.h>
#include <string.h>

#include "app-engine.h"
#include "engine-wait.h"
#include "app-grounding.h"
#include "test-server-proc.h"

static GThread *main_thread;

/* ---------------------------------------------------------------------------------------------
 * The engine connected to a server (a real vl2-server: test-server-proc.h)
 */

static AppEngine *
connected_engine (const char *url,
                  const char *model,
                  const char *key,
                  guint       timeout)
{
  AppEngine *engine = app_engine_new ();
  EngineResult r = { 0 };

  app_engine_connect_async (engine, url, model, key, timeout, NULL, engine_connect_cb, &r);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_LOADING);
  engine_wait (&r.done, "the connection");
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_READY);
  g_assert_true (app_engine_is_remote (engine));
  g_assert_cmpstr (app_engine_get_model_name (engine), ==, model);
  g_assert_cmpstr (app_engine_get_model_dir (engine), ==, url);
  return engine;
}

static AppEngine *
local_engine (void)
{
  g_autofree char *model = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), "mini-tiny", NULL);
  AppEngine *engine = app_engine_new ();
  EngineResult r = { 0 };

  app_engine_load_async (engine, model, 1, NULL, engine_load_cb, &r);
  engine_wait (&r.done, "the model");
  g_assert_no_error (r.error);
  g_assert_false (app_engine_is_remote (engine));
  return engine;
}

static AppGenerateParams
greedy (int max_new_tokens)
{
  AppGenerateParams p;

  app_generate_params_init (&p);
  p.temperature = 0;
  p.repetition_penalty = 1;
  p.max_new_tokens = max_new_tokens;
  return p;
}

/* Answers `reply` in `chat`, waiting; returns whether it succeeded. */
static gboolean
answer (AppEngine       *engine,
        AppChat         *chat,
        AppMessage      *reply,
        const char      *image_dir,
        AppGenerateParams *p,
        GCancellable    *cancellable,
        GError         **error)
{
  EngineResult r = { 0 };

  app_engine_generate_async (engine, chat, reply, image_dir, p, cancellable, engine_generate_cb, &r);
  engine_wait (&r.done, "the answer");
  if (r.error)
    g_propagate_error (error, r.error);
  return r.ok;
}

static AppChat *
chat_with_image (AppMessage **reply)
{
  AppChat *chat = app_chat_new ();
  g_autoptr(AppMessage) q = app_message_new (APP_ROLE_USER, "What is written on the sign?");
  const char *images[] = { "vqa_1.jpg", NULL };

  app_message_set_images (q, images);
  app_chat_append (chat, q);
  *reply = app_message_new (APP_ROLE_ASSISTANT, "");
  app_chat_append (chat, *reply);
  return chat;
}

/* The same chats answered by vl2-server and by the engine in-process: the same text. */
static void
test_answers_as_local (void)
{
  g_autofree char *images = g_build_filename (g_getenv ("VL2_GOLDEN_DIR"), "images", NULL);
  TestServer server = { 0 };
  g_autoptr(AppEngine) local = local_engine ();
  g_autoptr(AppEngine) remote = NULL;
  AppGenerateParams p = greedy (10);
  AppEngine *engines[2];
  char *texts[2][3] = { { 0 } };

  test_server_start (&server, NULL);
  remote = connected_engine (server.url, "mini-tiny", NULL, 60);
  engines[0] = local;
  engines[1] = remote;
  for (int e = 0; e < 2; e++)
    {
      AppMessage *reply = NULL;
      g_autoptr(AppChat) chat = chat_with_image (&reply);
      g_autoptr(AppMessage) follow = app_message_new (APP_ROLE_USER, "And the colour?");
      g_autoptr(AppMessage) reply2 = app_message_new (APP_ROLE_ASSISTANT, "");
      g_autoptr(GError) error = NULL;

      /* a question with an image */
      g_assert_true (answer (engines[e], chat, reply, images, &p, NULL, &error));
      g_assert_no_error (error);
      g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
      g_assert_cmpint (app_message_get_finish_reason (reply), ==, APP_FINISH_LENGTH);
      g_assert_cmpuint (app_message_get_n_tokens (reply), ==, 10);
      texts[e][0] = g_strdup (app_message_get_text (reply));
      /* a follow-up */
      app_chat_append (chat, follow);
      app_chat_append (chat, reply2);
      g_assert_true (answer (engines[e], chat, reply2, images, &p, NULL, &error));
      texts[e][1] = g_strdup (app_message_get_text (reply2));
      /* the follow-up's answer continued where it was cut */
      g_assert_true (answer (engines[e], chat, reply2, images, &p, NULL, &error));
      g_assert_cmpuint (app_message_get_n_tokens (reply2), ==, 20);
      texts[e][2] = g_strdup (app_message_get_text (reply2));
      g_object_unref (reply);
    }
  for (int i = 0; i < 3; i++)
    {
      g_test_message ("local:  %s\nremote: %s", texts[0][i], texts[1][i]);
      g_assert_cmpstr (texts[1][i], ==, texts[0][i]);
      g_free (texts[0][i]);
      g_free (texts[1][i]);
    }
  app_generate_params_clear (&p);
  g_clear_object (&remote);
  test_server_stop (&server);
}

typedef struct
{
  const char *url;
  const char *model;
  const char *key;
  const char *error;     /* in the error message */
  const char *advice;    /* in the advice */
} ConnectCase;

static void
expect_connect_error (const ConnectCase *c)
{
  g_autoptr(AppEngine) engine = app_engine_new ();
  EngineResult r = { 0 };

  g_test_message ("%s %s", c->url, c->model);
  app_engine_connect_async (engine, c->url, c->model, c->key, 10, NULL, engine_connect_cb, &r);
  engine_wait (&r.done, "the connection");
  g_assert_false (r.ok);
  g_assert_nonnull (r.error);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_FAILED);
  g_assert_false (app_engine_is_remote (engine));
  if (!strstr (app_engine_get_error (engine), c->error))
    g_error ("error \"%s\" lacks \"%s\"", app_engine_get_error (engine), c->error);
  if (!strstr (app_engine_get_error_advice (engine), c->advice))
    g_error ("advice \"%s\" lacks \"%s\"", app_engine_get_error_advice (engine), c->advice);
  g_clear_error (&r.error);
}

/* ---------------------------------------------------------------------------------------------
 * A scripted server
 */

typedef enum {
  SCRIPT_VLLM,           /* the recorded vLLM stream */
  SCRIPT_SILENT,         /* headers, then nothing */
  SCRIPT_FAIL_MIDWAY,    /* two deltas, then an error event */
  SCRIPT_BUSY,           /* 503 */
  SCRIPT_HANG_AFTER_ONE, /* one delta, then nothing */
} Script;

typedef struct
{
  SoupServer *soup;
  char *url;
  Script script;
  char *request;         /* the last request body */
  GPtrArray *paused;     /* messages left hanging */
} Fake;

static void
fake_cb (SoupServer        *soup,
         SoupServerMessage *msg,
         const char        *path,
         GHashTable        *query,
         gpointer           user_data)
{
  Fake *f = user_data;
  SoupMessageHeaders *h = soup_server_message_get_response_headers (msg);
  SoupMessageBody *body = soup_server_message_get_response_body (msg);

  if (g_str_equal (path, "/v1/models"))
    {
      const char *list = "{\"object\": \"list\", \"data\": [{\"id\": "
                         "\"deepseek-ai/deepseek-vl2\", \"object\": \"model\"}]}";

      soup_server_message_set_status (msg, 200, NULL);
      soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_COPY, list,
                                        strlen (list));
      return;
    }
  if (g_str_equal (path, "/v2/models"))
    {
      soup_server_message_set_status (msg, 404, NULL);
      soup_server_message_set_response (msg, "text/html", SOUP_MEMORY_STATIC, "<html>", 6);
      return;
    }
  g_assert_cmpstr (path, ==, "/v1/chat/completions");
  g_free (f->request);
  f->request = g_strndup (soup_server_message_get_request_body (msg)->data,
                          soup_server_message_get_request_body (msg)->length);
  if (f->script == SCRIPT_BUSY)
    {
      const char *e = "{\"error\": {\"message\": \"queue full\", \"type\": \"server_error\"}}";

      soup_server_message_set_status (msg, 503, NULL);
      soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_STATIC, e,
                                        strlen (e));
      return;
    }
  soup_server_message_set_status (msg, 200, NULL);
  soup_message_headers_set_content_type (h, "text/event-stream", NULL);
  soup_message_headers_set_encoding (h, SOUP_ENCODING_CHUNKED);
  if (f->script == SCRIPT_VLLM)
    {
      g_autofree char *path_sse = g_build_filename (g_getenv ("VL2_APP_FIXTURES"),
                                                    "vllm-grounding.sse", NULL);
      char *sse = NULL;
      gsize len;

      g_assert_true (g_file_get_contents (path_sse, &sse, &len, NULL));
      soup_message_body_append (body, SOUP_MEMORY_TAKE, sse, len);
      soup_message_body_complete (body);
      return;
    }
  if (f->script == SCRIPT_FAIL_MIDWAY)
    {
      const char *events =
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"role\": \"assistant\", \"content\": "
        "\"\"}}]}\n\n"
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"The sign\"}}]}\n\n"
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \" says\"}}]}\n\n"
        "data: {\"error\": {\"message\": \"CUDA out of memory\", \"type\": "
        "\"server_error\", \"code\": 500}}\n\n"
        "data: [DONE]\n\n";

      soup_message_body_append (body, SOUP_MEMORY_STATIC, events, strlen (events));
      soup_message_body_complete (body);
      return;
    }
  if (f->script == SCRIPT_HANG_AFTER_ONE)
    {
      const char *one = "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": "
                        "\"Stop\"}}]}\n\n";

      soup_message_body_append (body, SOUP_MEMORY_STATIC, one, strlen (one));
    }
  /* SILENT and HANG_AFTER_ONE: nothing more, until the client gives up */
  g_ptr_array_add (f->paused, g_object_ref (msg));
}

static void
fake_start (Fake  *f,
            Script script)
{
  g_autoptr(GError) error = NULL;
  GSList *uris;
  g_autofree char *base = NULL;

  f->soup = soup_server_new (NULL, NULL);
  f->script = script;
  f->paused = g_ptr_array_new_with_free_func (g_object_unref);
  soup_server_add_handler (f->soup, NULL, fake_cb, f, NULL);
  g_assert_true (soup_server_listen_local (f->soup, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &error));
  g_assert_no_error (error);
  uris = soup_server_get_uris (f->soup);
  base = g_uri_to_string (uris->data);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  f->url = g_strconcat (base, "v1", NULL);
}

static void
fake_stop (Fake *f)
{
  soup_server_disconnect (f->soup);
  g_clear_object (&f->soup);
  g_clear_pointer (&f->paused, g_ptr_array_unref);
  g_clear_pointer (&f->url, g_free);
  g_clear_pointer (&f->request, g_free);
}

/* The recorded vLLM stream of a grounded answer, through the remote backend: the text in the
 * reply, the boxes from it, and a request that asked vLLM to keep special tokens. */
static void
test_vllm_replay (void)
{
  g_autofree char *images = g_build_filename (g_getenv ("VL2_GOLDEN_DIR"), "images", NULL);
  Fake f = { 0 };
  g_autoptr(AppEngine) engine = NULL;
  AppMessage *reply = NULL;
  g_autoptr(AppChat) chat = NULL;
  AppGenerateParams p = greedy (64);
  g_autoptr(GError) error = NULL;
  g_autoptr(AppGrounding) g = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  JsonObject *req, *part;
  AppGroundingRef *ref;

  fake_start (&f, SCRIPT_VLLM);
  engine = connected_engine (f.url, "deepseek-ai/deepseek-vl2", "sk-test", 30);
  chat = chat_with_image (&reply);
  g_assert_true (answer (engine, chat, reply, images, &p, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
  g_assert_cmpint (app_message_get_finish_reason (reply), ==, APP_FINISH_END);
  g_assert_cmpuint (app_message_get_n_tokens (reply), ==, 63); /* the usage chunk's count */
  g_assert_cmpstr (app_message_get_text (reply), ==,
                   "<|ref|>The giraffe at the back<|/ref|><|det|>[[580, 21, 834, 996]]<|/det|> "
                   "and <|ref|>the fence<|/ref|><|det|>[[0, 610, 999, 750], [31, 12, 40, 50]]"
                   "<|/det|>.");
  g = app_grounding_parse (app_message_get_text (reply), FALSE);
  g_assert_cmpuint (g->refs->len, ==, 2);
  g_assert_cmpuint (g->n_boxes, ==, 3);
  ref = g_ptr_array_index (g->refs, 1);
  g_assert_cmpstr (ref->label, ==, "the fence");

  /* what was asked: the model, the image as a data: URL, special tokens kept */
  g_assert_true (json_parser_load_from_data (parser, f.request, -1, NULL));
  req = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (req, "model"), ==, "deepseek-ai/deepseek-vl2");
  g_assert_false (json_object_get_boolean_member (req, "skip_special_tokens"));
  g_assert_true (json_object_get_boolean_member (req, "stream"));
  g_assert_cmpfloat (json_object_get_double_member (req, "temperature"), ==, 0);
  g_assert_cmpint (json_object_get_int_member (req, "max_tokens"), ==, 64);
  part = json_array_get_object_element (
    json_object_get_array_member (json_array_get_object_element (
                                    json_object_get_array_member (req, "messages"), 0),
                                  "content"), 0);
  g_assert_cmpstr (json_object_get_string_member (part, "type"), ==, "image_url");
  g_assert_true (g_str_has_prefix (json_object_get_string_member (
                                     json_object_get_object_member (part, "image_url"), "url"),
                                   "data:image/jpeg;base64,/9j/"));

  g_object_unref (reply);
  app_generate_params_clear (&p);
  g_clear_object (&engine);
  fake_stop (&f);
}

typedef struct
{
  Script script;
  guint timeout;
  const char *error;     /* in the reply's error */
  const char *text;      /* what the reply keeps */
} FailCase;

/* A server that fails while answering: the reply says what happened and keeps its text, the
 * question is untouched, and the engine is ready for the next question. */
static void
test_answer_errors (void)
{
  static const FailCase cases[] = {
    { SCRIPT_SILENT, 1, "stopped answering", "" },
    { SCRIPT_FAIL_MIDWAY, 10, "CUDA out of memory", "The sign says" },
    { SCRIPT_BUSY, 10, "busy", "" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      Fake f = { 0 };
      g_autoptr(AppEngine) engine = NULL;
      AppMessage *reply = NULL;
      g_autoptr(AppChat) chat = NULL;
      AppGenerateParams p = greedy (16);
      g_autoptr(GError) error = NULL;
      g_autoptr(AppMessage) q = NULL;

      fake_start (&f, cases[i].script);
      engine = connected_engine (f.url, "deepseek-ai/deepseek-vl2", NULL, cases[i].timeout);
      chat = chat_with_image (&reply);
      g_assert_false (answer (engine, chat, reply, "/nonexistent", &p, NULL, &error));
      g_assert_nonnull (error);
      g_test_message ("%s", error->message);
      g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_FAILED);
      if (!strstr (app_message_get_error (reply), cases[i].error))
        g_error ("error \"%s\" lacks \"%s\"", app_message_get_error (reply), cases[i].error);
      g_assert_cmpstr (app_message_get_text (reply), ==, cases[i].text);
      q = app_chat_get_message (chat, 0);
      g_assert_cmpstr (app_message_get_text (q), ==, "What is written on the sign?");
      g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 2);
      g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_READY);
      g_object_unref (reply);
      app_generate_params_clear (&p);
      g_clear_object (&engine);
      fake_stop (&f);
    }
}

static void
cancel_on_text_cb (AppMessage   *m,
                   GParamSpec   *pspec,
                   GCancellable *cancellable)
{
  if (app_message_get_text (m)[0])
    g_cancellable_cancel (cancellable);
}

/* Stop while the server is sending: at once, the text so far kept. */
static void
test_stop (void)
{
  Fake f = { 0 };
  g_autoptr(AppEngine) engine = NULL;
  AppMessage *reply = NULL;
  g_autoptr(AppChat) chat = NULL;
  AppGenerateParams p = greedy (16);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  gint64 t0;

  fake_start (&f, SCRIPT_HANG_AFTER_ONE);
  engine = connected_engine (f.url, "deepseek-ai/deepseek-vl2", NULL, 60);
  chat = chat_with_image (&reply);
  g_signal_connect (reply, "notify::text", G_CALLBACK (cancel_on_text_cb), cancellable);
  t0 = g_get_monotonic_time ();
  g_assert_true (answer (engine, chat, reply, "/nonexistent", &p, cancellable, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 30 * G_USEC_PER_SEC);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_STOPPED);
  g_assert_cmpstr (app_message_get_text (reply), ==, "Stop");
  g_object_unref (reply);
  app_generate_params_clear (&p);
  g_clear_object (&engine);
  fake_stop (&f);
}

static void
test_connect_errors (void)
{
  TestServer keyed = { 0 };
  Fake f = { 0 };
  g_autoptr(GSocketListener) closed = g_socket_listener_new ();
  guint16 port;
  g_autofree char *nothing = NULL, *not_openai = NULL;

  test_server_start (&keyed, "s3cret");
  fake_start (&f, SCRIPT_VLLM);
  /* a port nobody listens on: bound, then closed */
  port = g_socket_listener_add_any_inet_port (closed, NULL, NULL);
  g_socket_listener_close (closed);
  nothing = g_strdup_printf ("http://127.0.0.1:%u/v1", port);
  not_openai = g_strconcat (f.url, NULL);
  not_openai[strlen (not_openai) - 1] = '2'; /* .../v2: answers 404 */
  {
    const ConnectCase cases[] = {
      { keyed.url, "mini-tiny", NULL, "refused the API key", "API key" },
      { keyed.url, "mini-tiny", "wrong", "refused the API key", "API key" },
      { keyed.url, "deepseek-vl2", "s3cret", "does not serve", "mini-tiny" },
      { nothing, "m", NULL, "Cannot reach the server", "running" },
      { not_openai, "m", NULL, "not look like an OpenAI-compatible server", "/v1" },
    };

    for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
      expect_connect_error (&cases[i]);
  }
  {
    /* and the right key works */
    g_autoptr(AppEngine) engine = connected_engine (keyed.url, "mini-tiny", "s3cret", 10);
  }
  test_server_stop (&keyed);
  fake_stop (&f);
}

int
main (int    argc,
      char **argv)
{
  main_thread = g_thread_self ();
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/app/remote/answers-as-local", test_answers_as_local);
  g_test_add_func ("/app/remote/vllm-replay", test_vllm_replay);
  g_test_add_func ("/app/remote/answer-errors", test_answer_errors);
  g_test_add_func ("/app/remote/stop", test_stop);
  g_test_add_func ("/app/remote/connect-errors", test_connect_errors);
  return g_test_run ();
}
