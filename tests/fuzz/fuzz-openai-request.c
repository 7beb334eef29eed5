/* fuzz-openai-request.c - vl2-server's request parser (app/core/app-openai.c): the input is a
 * POST /v1/chat/completions body, parsed with the server's default limits (and, when only an
 * image URL was refused, again with URLs allowed). A refusal must become a well-formed OpenAI
 * error body; a request that parses must hold what the parser promises. */
#include "fuzz.h"

#include <math.h>
#include <string.h>

#include "app-openai.h"

FUZZ_INITIALIZE_GLIB_ONLY

static void
check_error (const GError *error)
{
  guint status = 0;
  g_autofree char *body = app_openai_error_json (error, &status);
  g_autoptr(JsonNode) root = json_from_string (body, NULL);
  JsonObject *e;

  FUZZ_CHECK (status >= 400 && status < 600, "status %u", status);
  FUZZ_CHECK (root && JSON_NODE_HOLDS_OBJECT (root)
              && json_object_has_member (json_node_get_object (root), "error"),
              "error body %s", body);
  e = json_object_get_object_member (json_node_get_object (root), "error");
  FUZZ_CHECK (e && json_object_has_member (e, "message"), "error body %s", body);
  {
    /* the parser's errors carry the parameter they are about in front of the message */
    const char *sep = strchr (error->message, '\x1f');
    const char *expected = sep ? sep + 1 : error->message;
    g_autofree char *message = app_openai_error_message (body, strlen (body));

    FUZZ_CHECK (strcmp (message, expected) == 0, "message \"%s\" read back as \"%s\"",
                expected, message);
  }
}

static void
check_request (const AppOpenAIRequest  *req,
               const AppOpenAILimits   *limits)
{
  gsize n_images = 0;

  FUZZ_CHECK (req->model && g_utf8_validate (req->model, -1, NULL), "model");
  FUZZ_CHECK (req->messages->len >= 1 && req->messages->len <= limits->max_messages,
              "%u messages", req->messages->len);
  for (guint i = 0; i < req->messages->len; i++)
    {
      const AppOpenAIMessage *m = g_ptr_array_index (req->messages, i);

      FUZZ_CHECK (m->text && g_utf8_validate (m->text, -1, NULL), "message %u text", i);
      for (guint k = 0; m->images && k < m->images->len; k++)
        {
          const AppOpenAIImage *im = g_ptr_array_index (m->images, k);

          FUZZ_CHECK ((im->data != NULL) != (im->url != NULL), "image %u of message %u", k, i);
          FUZZ_CHECK (!im->url || limits->allow_image_urls, "an image URL let through");
          n_images++;
        }
    }
  FUZZ_CHECK (n_images <= limits->max_images, "%zu images", n_images);
  FUZZ_CHECK (!req->stop || g_strv_length (req->stop) <= 4, "stop strings");
  FUZZ_CHECK (req->max_tokens >= 0 && req->max_tokens <= limits->max_tokens, "max_tokens %d",
              req->max_tokens);
  FUZZ_CHECK (isnan (req->temperature) || (req->temperature >= 0 && isfinite (req->temperature)),
              "temperature %g", req->temperature);
  FUZZ_CHECK (isnan (req->top_p) || (req->top_p >= 0 && req->top_p <= 1), "top_p %g", req->top_p);
  FUZZ_CHECK (req->top_k >= -1, "top_k %d", req->top_k);
  FUZZ_CHECK (isnan (req->repetition_penalty)
              || (req->repetition_penalty > 0 && isfinite (req->repetition_penalty)),
              "repetition_penalty %g", req->repetition_penalty);
  for (guint i = 0; i < req->logit_bias->len; i++)
    {
      const AppOpenAILogitBias *b = &g_array_index (req->logit_bias, AppOpenAILogitBias, i);

      FUZZ_CHECK (b->id >= 0 && b->bias >= -100 && b->bias <= 100, "logit_bias %d %g", b->id,
                  b->bias);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  /* vl2-server's defaults: 16 images, 1000 messages, max_tokens up to the context */
  AppOpenAILimits limits = { 16, 1000, 4096, FALSE };
  g_autoptr(GError) error = NULL;
  g_autoptr(AppOpenAIRequest) req = NULL;

  req = app_openai_request_parse ((const char *) data, size, &limits, &error);
  if (!req && g_error_matches (error, APP_OPENAI_ERROR, APP_OPENAI_ERROR_IMAGE_URL))
    {
      check_error (error);
      g_clear_error (&error);
      limits.allow_image_urls = TRUE;
      req = app_openai_request_parse ((const char *) data, size, &limits, &error);
    }
  if (!req)
    {
      FUZZ_CHECK (error != NULL, "a refusal without an error");
      fuzz_note ("refused", error->message);
      check_error (error);
      return 0;
    }
  FUZZ_CHECK (error == NULL, "a request and an error");
  check_request (req, &limits);
  return 0;
}
