/* fuzz-openai-writer.c - what vl2-server writes (app/core/app-openai.c): a stream chunk, a
 * whole completion and an error, with arbitrary text as the content (and as the model name
 * and the message), framed as the server frames Server-Sent Events ("data: JSON\n\n"). A
 * client reading them back (the app's SSE reader and chunk parser, split at any point) must
 * get exactly the text that was written. */
#include "fuzz.h"

#include <string.h>

#include "app-openai.h"

FUZZ_INITIALIZE_GLIB_ONLY

static void
on_event (const char *data,
          gpointer    user_data)
{
  g_ptr_array_add (user_data, g_strdup (data));
}

/* Reads `json` back the way the app's remote backend does and returns the content. */
static char *
read_back (const char *json,
           size_t      split)
{
  g_autofree char *event = g_strdup_printf ("data: %s\n\n", json);
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(AppOpenAISse) sse = app_openai_sse_new (on_event, events);
  g_autoptr(GError) error = NULL;
  AppOpenAIDelta delta;
  size_t len = strlen (event);
  char *content;

  split = len ? split % len : 0;
  FUZZ_CHECK (app_openai_sse_feed (sse, event, split, 1u << 30)
              && app_openai_sse_feed (sse, event + split, len - split, 1u << 30), "feed");
  FUZZ_CHECK (events->len == 1, "%u events from one", events->len);
  FUZZ_CHECK (strcmp (g_ptr_array_index (events, 0), json) == 0, "the event's data changed");
  FUZZ_CHECK (app_openai_parse_chunk (g_ptr_array_index (events, 0), &delta, &error),
              "the chunk does not parse: %s", error->message);
  content = g_steal_pointer (&delta.content);
  app_openai_delta_clear (&delta);
  return content;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  FuzzReader r = { data, size, 0 };
  size_t split = fuzz_u16 (&r);
  gint64 created = (gint64) fuzz_u64 (&r);
  /* counts of tokens: at most a context's 2^22 positions (config.c's limit) */
  AppOpenAIUsage usage = { (int) (fuzz_u32 (&r) % (1u << 22)), (int) (fuzz_u32 (&r) % (1u << 22)),
                           (int) (fuzz_u32 (&r) % (1u << 22)) };
  g_autofree char *text = fuzz_rest_as_utf8 (&r);
  const char *model = "deepseek-vl2-tiny", *content = text;
  g_autofree char *model_copy = NULL;
  g_autoptr(JsonNode) grounding = app_openai_grounding_json (text);
  const char *sep = strchr (text, '\x01');

  if (sep)
    {
      model = model_copy = g_strndup (text, (gsize) (sep - text));
      content = sep + 1;
    }

  {
    g_autofree char *json = app_openai_chunk_json ("chatcmpl-fuzz", created, model, "assistant",
                                                   content, NULL, NULL, NULL);
    g_autofree char *back = read_back (json, split);
    FUZZ_CHECK (back && strcmp (back, content) == 0, "chunk content \"%s\" read as \"%s\"",
                content, back ? back : "(none)");
  }
  {
    g_autofree char *json = app_openai_chunk_json ("chatcmpl-fuzz", created, model, NULL, NULL,
                                                   "stop", grounding, NULL);
    g_autofree char *back = read_back (json, split);
    FUZZ_CHECK (back == NULL, "a finishing chunk with content");
  }
  {
    g_autofree char *json = app_openai_chunk_json ("chatcmpl-fuzz", created, model, NULL, NULL,
                                                   NULL, NULL, &usage);
    g_autofree char *back = read_back (json, split);
    FUZZ_CHECK (back == NULL, "a usage chunk with content");
  }
  {
    g_autofree char *json = app_openai_completion_json ("chatcmpl-fuzz", created, model,
                                                        content, "length", &usage);
    g_autofree char *back = read_back (json, split);
    FUZZ_CHECK (back && strcmp (back, content) == 0, "completion content \"%s\" read as \"%s\"",
                content, back ? back : "(none)");
  }
  {
    g_autoptr(GError) error = g_error_new_literal (APP_OPENAI_ERROR, APP_OPENAI_ERROR_SERVER,
                                                   content);
    g_autofree char *json = app_openai_error_json (error, NULL);
    g_autofree char *message = app_openai_error_message (json, strlen (json));
    g_autoptr(GError) parsed = NULL;
    AppOpenAIDelta delta;
    /* an APP_OPENAI_ERROR message may start with the parameter it is about, up to a U+001F */
    const char *sep = strchr (content, '\x1f');
    const char *expected = sep ? sep + 1 : content;

    FUZZ_CHECK (strcmp (message, expected) == 0, "error \"%s\" read as \"%s\"", expected,
                message);
    FUZZ_CHECK (!app_openai_parse_chunk (json, &delta, &parsed), "an error read as a chunk");
    FUZZ_CHECK (strcmp (parsed->message, expected) == 0, "error \"%s\" read as \"%s\"", expected,
                parsed->message);
  }
  return 0;
}
