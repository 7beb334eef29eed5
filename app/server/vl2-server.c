/* vl2-server.c - DeepSeek-VL2 over OpenAI's chat-completions API (libsoup's SoupServer).
 *
 *   vl2-server --model DIR [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--parallel N]
 *
 * Threads. The main thread runs the HTTP server and owns every SoupServerMessage; each of the
 * --parallel slots is a thread with its own vl2_session on the one loaded model (the model is
 * immutable and shared; a session's KV cache is its own). A slot gets the CPUs divided among
 * the slots (--threads overrides), so N answers at once each run at about 1/N of the speed of
 * one: parallel slots trade per-answer speed for not making anyone wait behind a long answer.
 *
 * A request goes through: headers (the early handler: size check, body streamed into a
 * bounded buffer) -> body (auth, parse, model name; http image URLs fetched when allowed) ->
 * a free slot, or the bounded queue, or 503 with Retry-After -> the slot decodes the images,
 * builds the prompt (errors so far are plain HTTP errors), then tells the main thread, which
 * sends the 200 headers (and, streaming, the role chunk) -> text, batched: the slot appends,
 * the main thread sends whatever has arrived each time it runs -> the end (finish reason,
 * usage, boxes). A client that goes away cancels its answer at the next token (or tile, or
 * prefill chunk) and frees its slot.
 *
 * KV reuse: a slot remembers the conversation it last answered (a digest per message, its
 * own answer included). A new request goes to the free slot whose conversation shares the
 * longest start with it; the engine's prefill then reuses the cached positions (reported as
 * usage.prompt_tokens_details.cached_tokens).
 */
#include <glib-unix.h>
#include <libsoup/soup.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "app-config.h"
#include "app-json.h"
#include "app-openai.h"
#include "app-read.h"
#include "image-file.h"
#include "vl2.h"

#define KIB 1024
#define MIB (1024 * 1024)

typedef struct
{
  char *model_dir;
  char *model_name;
  char *host;
  int port;
  char *api_key;
  int parallel;
  int queue;
  int threads;
  int n_ctx;
  gint64 max_body;
  int max_images;
  gint64 max_image_pixels;
  int max_tokens;
  gboolean allow_image_urls;
  int image_timeout;
  vl2_weights_format weights;
  gboolean resident;
  vl2_compute compute;
} Options;

typedef struct _Server Server;
typedef struct _Slot Slot;

typedef struct
{
  gatomicrefcount ref;
  Server *server;
  Slot *slot;                   /* main thread: the slot running it */
  SoupServerMessage *msg;       /* main thread only; NULL once the client is gone */
  AppOpenAIRequest *request;
  char *id;                     /* chatcmpl-..., one for the whole answer */
  gint64 created;
  GPtrArray *digests;           /* char*, one per request message */
  gint64 t_start;               /* monotonic, when it arrived */
  int images_fetching;          /* http image URLs still on their way */
  GError *fetch_error;

  gint cancelled;               /* atomic: the client is gone */

  /* worker -> main thread */
  GMutex lock;
  GString *outbox;              /* text not sent yet */
  gboolean flush_queued;
  GString *answer;              /* the whole answer (worker) */

  /* results, read on the main thread after `done` */
  gboolean started;             /* the prompt was built: 200 and the role chunk are out */
  GError *error;
  const char *finish_reason;
  AppOpenAIUsage usage;
} Job;

struct _Slot
{
  Server *server;
  int index;
  GThread *thread;
  GAsyncQueue *inbox;           /* Job*, or the server itself to quit */
  vl2_session *session;
  GPtrArray *history;           /* digests of the conversation it last answered */
  gboolean busy;                /* main thread */
  Job *job;                     /* main thread: what it runs */
  gint64 last_used;
};

struct _Server
{
  Options opt;
  vl2_model *model;
  vl2_tokenizer *tokenizer;     /* for skip_special_tokens */
  char *model_id;
  gint64 created;
  int n_ctx;
  Slot *slots;
  GQueue pending;               /* Job*, waiting for a slot */
  double mean_seconds;          /* of recent answers, for Retry-After */
  SoupServer *soup;
  SoupSession *fetcher;         /* http image URLs */
  GMainLoop *loop;
  GMainContext *context;
  gboolean stopping;            /* SIGTERM or SIGINT: no new answers; the loop ends once every
                                 * slot is idle */
};

/* ---------------------------------------------------------------------------------------------
 * Jobs
 */

static Job *
job_ref (Job *job)
{
  g_atomic_ref_count_inc (&job->ref);
  return job;
}

static void
job_unref (Job *job)
{
  if (!job)
    return;
  if (!g_atomic_ref_count_dec (&job->ref))
    return;
  g_clear_object (&job->msg);
  app_openai_request_free (job->request);
  g_free (job->id);
  g_ptr_array_unref (job->digests);
  g_clear_error (&job->fetch_error);
  g_clear_error (&job->error);
  g_mutex_clear (&job->lock);
  g_string_free (job->outbox, TRUE);
  g_string_free (job->answer, TRUE);
  g_free (job);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Job, job_unref)

static void
job_closure_unref (gpointer  data,
                   GClosure *closure)
{
  (void) closure;
  job_unref (data);
}

static gboolean
job_cancelled (Job *job)
{
  return g_atomic_int_get (&job->cancelled) != 0;
}

/* A digest of one message: role, text and the image bytes. */
static char *
message_digest (AppOpenAIRole role,
                const char   *text,
                GPtrArray    *images)
{
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  guint8 r = (guint8) role;

  g_checksum_update (sum, &r, 1);
  g_checksum_update (sum, (const guchar *) text, -1);
  for (guint i = 0; images && i < images->len; i++)
    {
      AppOpenAIImage *im = g_ptr_array_index (images, i);
      gsize n = 0;
      const guchar *d = im->data ? g_bytes_get_data (im->data, &n) : NULL;

      g_checksum_update (sum, (const guchar *) "\0img", 4);
      if (d)
        g_checksum_update (sum, d, n);
    }
  return g_strdup (g_checksum_get_string (sum));
}

/* ---------------------------------------------------------------------------------------------
 * HTTP replies (main thread)
 */

static void
reply_json (SoupServerMessage *msg,
            guint              status,
            const char        *json)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_COPY, json,
                                    strlen (json));
}

static void
reply_error (SoupServerMessage *msg,
             const GError      *error)
{
  guint status = 500;
  g_autofree char *json = app_openai_error_json (error, &status);

  reply_json (msg, status, json);
}

static void
reply_error_code (SoupServerMessage *msg,
                  AppOpenAIError     code,
                  const char        *message)
{
  g_autoptr(GError) error = g_error_new_literal (APP_OPENAI_ERROR, code, message);

  reply_error (msg, error);
}

/* Appends to a streaming response and lets libsoup send it. */
static void
stream_write (SoupServerMessage *msg,
              const char        *text)
{
  soup_message_body_append (soup_server_message_get_response_body (msg), SOUP_MEMORY_COPY,
                            text, strlen (text));
  soup_server_message_unpause (msg);
}

static void
stream_event (SoupServerMessage *msg,
              const char        *json)
{
  g_autofree char *event = g_strdup_printf ("data: %s\n\n", json);

  stream_write (msg, event);
}

static void
log_request (SoupServerMessage *msg,
             guint              status,
             const char        *detail)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *when = g_date_time_format (now, "%H:%M:%S");

  g_printerr ("%s %s %s %u%s%s\n", when, soup_server_message_get_method (msg),
              g_uri_get_path (soup_server_message_get_uri (msg)), status, detail ? " " : "",
              detail ? detail : "");
}

/* ---------------------------------------------------------------------------------------------
 * The slots' side (worker threads)
 */

static void flush_main_schedule (Job *job);

static bool
prefill_progress_cb (float  fraction,
                     void  *user_data)
{
  (void) fraction;
  return !job_cancelled (user_data);
}

static AppOpenAIError
error_code_from_status (vl2_status status)
{
  switch (status)
    {
    case VL2_ERR_CONTEXT_OVERFLOW:
      return APP_OPENAI_ERROR_CONTEXT_LENGTH;
    case VL2_ERR_IMAGE:
      return APP_OPENAI_ERROR_INVALID_IMAGE;
    case VL2_ERR_INVALID_ARGUMENT:
      return APP_OPENAI_ERROR_INVALID_REQUEST;
    default:
      return APP_OPENAI_ERROR_SERVER;
    }
}

static gboolean started_main (gpointer data);
static gboolean done_main (gpointer data);
static void stop_when_idle (Server *server);

/* Runs `func` on the main thread, after what is already posted. Always through the main loop:
 * g_main_context_invoke() would run it in this thread whenever the main thread is not iterating
 * (while it stops the server, say), where the main thread's objects are not to be touched. */
static void
post_main (Server     *server,
           GSourceFunc func,
           Job        *job)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, func, job_ref (job), (GDestroyNotify) job_unref);
  g_source_attach (source, server->context);
  g_source_unref (source);
}

/* The text of a step, less a special token's when the request skips them. */
static const char *
step_text (Slot            *slot,
           Job             *job,
           const vl2_step  *step)
{
  const char *tok;

  if (!job->request->skip_special_tokens || !slot->server->tokenizer
      || !vl2_tokenizer_is_special (slot->server->tokenizer, step->id)
      || !(tok = vl2_tokenizer_token (slot->server->tokenizer, step->id))
      || !g_str_has_suffix (step->text, tok))
    return step->text;
  /* the special token ends the step's text; what comes before it (bytes the UTF-8 stream held
   * back) stays */
  return NULL;
}

static void
append_text (Job        *job,
             const char *text,
             gsize       len)
{
  g_string_append_len (job->answer, text, len);
  if (!job->request->stream)
    return;
  g_mutex_lock (&job->lock);
  g_string_append_len (job->outbox, text, len);
  if (!job->flush_queued)
    {
      job->flush_queued = TRUE;
      flush_main_schedule (job);
    }
  g_mutex_unlock (&job->lock);
}

static void
run_job (Slot *slot,
         Job  *job)
{
  Server *server = slot->server;
  AppOpenAIRequest *req = job->request;
  g_autoptr(GArray) msgs = g_array_new (FALSE, TRUE, sizeof (vl2_message));
  g_autoptr(GPtrArray) images = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GArray) pixels = g_array_new (FALSE, TRUE, sizeof (ImageRgb));
  g_autoptr(GString) system = g_string_new (NULL);
  g_autofree vl2_logit_bias *bias = NULL;
  vl2_generate_params gp = vl2_generate_default_params ();
  vl2_conversation conv = { 0 };
  vl2_prompt *prompt = NULL;
  vl2_timings timings;
  vl2_error err;
  gboolean last_is_assistant = FALSE;
  int n_image = 0, n_generated = 0;

  g_array_set_clear_func (pixels, (GDestroyNotify) image_rgb_clear);

  /* 1. images and messages */
  for (guint i = 0; i < req->messages->len; i++)
    {
      AppOpenAIMessage *m = g_ptr_array_index (req->messages, i);
      vl2_message vm = { m->role == APP_OPENAI_ROLE_ASSISTANT ? VL2_ROLE_ASSISTANT
                                                                : VL2_ROLE_USER,
                         m->text, NULL, 0 };

      if (m->role == APP_OPENAI_ROLE_SYSTEM)
        {
          if (system->len)
            g_string_append (system, "\n\n");
          g_string_append (system, m->text);
          continue;
        }
      if (m->images->len)
        {
          vl2_image *vi = g_new0 (vl2_image, m->images->len);

          g_ptr_array_add (images, vi);
          for (guint k = 0; k < m->images->len; k++)
            {
              AppOpenAIImage *im = g_ptr_array_index (m->images, k);
              g_autofree char *name = g_strdup_printf ("image %d", ++n_image);
              g_autoptr(GError) local = NULL;
              ImageRgb rgb = { 0 };

              if (!image_file_load_bytes_max (im->data, name, server->opt.max_image_pixels, &rgb,
                                              &local))
                {
                  job->error = g_error_new (APP_OPENAI_ERROR,
                                            g_error_matches (local, IMAGE_FILE_ERROR,
                                                             IMAGE_FILE_ERROR_TOO_LARGE)
                                              ? APP_OPENAI_ERROR_IMAGE_TOO_LARGE
                                              : APP_OPENAI_ERROR_INVALID_IMAGE,
                                            "messages\x1f%s", local->message);
                  goto done;
                }
              g_array_append_val (pixels, rgb);
              vi[k] = (vl2_image) { rgb.width, rgb.height, rgb.stride, rgb.rgb };
            }
          vm.images = vi;
          vm.n_images = (int) m->images->len;
        }
      g_array_append_val (msgs, vm);
      last_is_assistant = m->role == APP_OPENAI_ROLE_ASSISTANT;
    }
  if (msgs->len == 0)
    {
      job->error = g_error_new_literal (APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_REQUEST,
                                        "messages\x1fThe request has no user message.");
      goto done;
    }
  if (req->continue_final_message)
    {
      /* the answer goes on from the assistant message's end, as the app continues one */
      vl2_message *last = &g_array_index (msgs, vl2_message, msgs->len - 1);
      char *trimmed = g_strchomp (g_strdup (last->content));

      g_ptr_array_add (images, trimmed);
      last->content = trimmed;
    }
  else
    {
      vl2_message answer = { VL2_ROLE_ASSISTANT, "", NULL, 0 };

      (void) last_is_assistant;
      g_array_append_val (msgs, answer);
    }
  conv.messages = (const vl2_message *) msgs->data;
  conv.n_messages = (int) msgs->len;
  conv.system_prompt = system->len ? system->str : NULL;

  /* 2. the prompt */
  if (vl2_prompt_new (server->model, &conv, &prompt, &err) != VL2_OK)
    {
      job->error = g_error_new (APP_OPENAI_ERROR, error_code_from_status (err.code),
                                "messages\x1f%s", err.message);
      goto done;
    }
  if ((int) vl2_prompt_n_tokens (prompt) >= server->n_ctx)
    {
      job->error = g_error_new (APP_OPENAI_ERROR, APP_OPENAI_ERROR_CONTEXT_LENGTH,
                                "messages\x1fThe conversation needs %zu tokens; this model's "
                                "context holds %d.", vl2_prompt_n_tokens (prompt),
                                server->n_ctx);
      goto done;
    }
  job->usage.prompt_tokens = (int) vl2_prompt_n_tokens (prompt);
  post_main (server, started_main, job);

  /* 3. the answer */
  if (!isnan (req->temperature))
    gp.temperature = (float) req->temperature;
  if (!isnan (req->top_p))
    gp.top_p = (float) req->top_p;
  if (req->top_k >= 0)
    gp.top_k = req->top_k;
  /* OpenAI's API has no repetition penalty: off unless asked for */
  gp.repetition_penalty = isnan (req->repetition_penalty) ? 1.0f
                                                          : (float) req->repetition_penalty;
  gp.seed = req->has_seed ? req->seed : VL2_SEED_RANDOM;
  if (gp.seed == VL2_SEED_RANDOM && req->has_seed)
    gp.seed = 0; /* the one seed value the engine reserves */
  gp.max_new_tokens = req->max_tokens > 0 ? req->max_tokens : gp.max_new_tokens;
  gp.stop_strings = (const char *const *) req->stop;
  gp.n_stop_strings = req->stop ? (int) g_strv_length (req->stop) : 0;
  if (req->logit_bias->len)
    {
      bias = g_new (vl2_logit_bias, req->logit_bias->len);
      for (guint i = 0; i < req->logit_bias->len; i++)
        {
          AppOpenAILogitBias *b = &g_array_index (req->logit_bias, AppOpenAILogitBias, i);

          bias[i].id = b->id;
          bias[i].bias = b->bias <= -100 ? -INFINITY : b->bias;
        }
      gp.logit_bias = bias;
      gp.n_logit_bias = (int) req->logit_bias->len;
    }
  gp.progress = prefill_progress_cb;
  gp.progress_user_data = job;
  if (vl2_session_prefill (slot->session, prompt, &gp, &err) != VL2_OK)
    {
      if (err.code != VL2_ERR_CANCELLED)
        job->error = g_error_new (APP_OPENAI_ERROR, error_code_from_status (err.code), "%s",
                                  err.message);
      goto done;
    }
  vl2_session_get_timings (slot->session, &timings);
  job->usage.cached_tokens = timings.n_reused_tokens;
  for (;;)
    {
      vl2_step step;
      const char *text;

      if (job_cancelled (job))
        break;
      if (vl2_session_step (slot->session, &step, &err) != VL2_OK)
        {
          job->error = g_error_new (APP_OPENAI_ERROR, error_code_from_status (err.code), "%s",
                                    err.message);
          break;
        }
      n_generated++;
      text = step_text (slot, job, &step);
      if (text)
        append_text (job, text, strlen (text));
      else
        append_text (job, step.text,
                     strlen (step.text) - strlen (vl2_tokenizer_token (server->tokenizer,
                                                                        step.id)));
      if (step.stop != VL2_STOP_NONE)
        {
          job->finish_reason = step.stop == VL2_STOP_EOS || step.stop == VL2_STOP_STRING
                                 ? "stop"
                                 : "length";
          break;
        }
    }
  job->usage.completion_tokens = n_generated;

done:
  /* the conversation this slot's cache now holds, for the next request's choice of slot */
  g_ptr_array_set_size (slot->history, 0);
  if (!job->error && !job_cancelled (job) && job->finish_reason)
    {
      for (guint i = 0; i < job->digests->len; i++)
        g_ptr_array_add (slot->history, g_strdup (g_ptr_array_index (job->digests, i)));
      g_ptr_array_add (slot->history,
                       message_digest (APP_OPENAI_ROLE_ASSISTANT, job->answer->str, NULL));
    }
  vl2_prompt_free (prompt);
  post_main (server, done_main, job);
}

static gpointer
slot_main (gpointer data)
{
  Slot *slot = data;

  for (;;)
    {
      gpointer item = g_async_queue_pop (slot->inbox);

      if (item == slot->server)
        break;
      run_job (slot, item);
      job_unref (item);
    }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Scheduling (main thread)
 */

static guint
shared_start (GPtrArray *a,
              GPtrArray *b)
{
  guint n = 0;

  while (n < a->len && n < b->len
         && g_str_equal (g_ptr_array_index (a, n), g_ptr_array_index (b, n)))
    n++;
  return n;
}

/* The free slot whose cached conversation shares the longest start with the job's, the least
 * recently used among equals; NULL when every slot is busy. */
static Slot *
choose_slot (Server *server,
             Job    *job)
{
  Slot *best = NULL;
  guint best_shared = 0;

  for (int i = 0; i < server->opt.parallel; i++)
    {
      Slot *s = &server->slots[i];
      guint shared;

      if (s->busy)
        continue;
      shared = shared_start (s->history, job->digests);
      if (!best || shared > best_shared
          || (shared == best_shared && s->last_used < best->last_used))
        {
          best = s;
          best_shared = shared;
        }
    }
  return best;
}

static void
dispatch (Server *server)
{
  while (!g_queue_is_empty (&server->pending))
    {
      Job *job = g_queue_peek_head (&server->pending);
      Slot *slot = choose_slot (server, job);

      if (!slot)
        return;
      g_queue_pop_head (&server->pending);
      slot->busy = TRUE;
      slot->job = job;
      job->slot = slot;
      g_async_queue_push (slot->inbox, job); /* the queue's reference moves to the slot */
    }
}

static void
flush_text (Job *job)
{
  g_autofree char *text = NULL;

  g_mutex_lock (&job->lock);
  job->flush_queued = FALSE;
  if (job->outbox->len)
    {
      text = g_strdup (job->outbox->str);
      g_string_truncate (job->outbox, 0);
    }
  g_mutex_unlock (&job->lock);
  if (text && job->msg && job->started)
    {
      g_autofree char *chunk = app_openai_chunk_json (job->id, job->created,
                                                      job->server->model_id, NULL, text, NULL,
                                                      NULL, NULL);

      stream_event (job->msg, chunk);
    }
}

static gboolean
flush_main (gpointer data)
{
  flush_text (data);
  return G_SOURCE_REMOVE;
}

static void
flush_main_schedule (Job *job)
{
  /* after the text that is already queued, never before `started` (same context, in order) */
  post_main (job->server, flush_main, job);
}

static gboolean
started_main (gpointer data)
{
  Job *job = data;
  SoupServerMessage *msg = job->msg;

  job->started = TRUE;
  if (!msg || !job->request->stream)
    return G_SOURCE_REMOVE;
  {
    SoupMessageHeaders *h = soup_server_message_get_response_headers (msg);
    g_autofree char *chunk = app_openai_chunk_json (job->id, job->created,
                                                    job->server->model_id, "assistant", "",
                                                    NULL, NULL, NULL);

    soup_server_message_set_status (msg, 200, NULL);
    soup_message_headers_set_content_type (h, "text/event-stream", NULL);
    soup_message_headers_replace (h, "Cache-Control", "no-cache");
    soup_message_headers_set_encoding (h, SOUP_ENCODING_CHUNKED);
    stream_event (msg, chunk);
  }
  return G_SOURCE_REMOVE;
}

static gboolean
done_main (gpointer data)
{
  Job *job = data;
  Server *server = job->server;
  SoupServerMessage *msg = job->msg;
  double seconds = (double) (g_get_monotonic_time () - job->t_start) / G_USEC_PER_SEC;
  g_autofree char *detail = NULL;

  if (server->stopping && job_cancelled (job) && msg && !job->error)
    job->error = g_error_new_literal (APP_OPENAI_ERROR, APP_OPENAI_ERROR_SHUTTING_DOWN,
                                      "The server is shutting down: the answer was stopped.");
  flush_text (job);
  if (job->slot)
    {
      job->slot->busy = FALSE;
      job->slot->job = NULL;
      job->slot->last_used = g_get_monotonic_time ();
      job->slot = NULL;
    }
  if (!job->error && job->finish_reason)
    server->mean_seconds = server->mean_seconds > 0 ? 0.8 * server->mean_seconds + 0.2 * seconds
                                                    : seconds;
  detail = g_strdup_printf ("%.2fs prompt %d (cached %d) completion %d%s", seconds,
                            job->usage.prompt_tokens, job->usage.cached_tokens,
                            job->usage.completion_tokens,
                            !msg && job_cancelled (job) ? " cancelled: the client went away"
                            : server->stopping && job_cancelled (job)
                              ? " stopped: the server is shutting down"
                              : "");
  if (msg)
    {
      if (job->error && !(job->started && job->request->stream))
        {
          reply_error (msg, job->error);
          soup_server_message_unpause (msg);
        }
      else if (job->request->stream)
        {
          if (job->error)
            {
              /* the stream is open: the error goes as an event, then the stream ends */
              g_autofree char *json = app_openai_error_json (job->error, NULL);

              stream_event (msg, json);
            }
          else
            {
              g_autoptr(JsonNode) grounding = app_openai_grounding_json (job->answer->str);
              g_autofree char *last = app_openai_chunk_json (job->id, job->created,
                                                             server->model_id, NULL, NULL,
                                                             job->finish_reason, grounding,
                                                             NULL);

              stream_event (msg, last);
              if (job->request->include_usage)
                {
                  g_autofree char *usage = app_openai_chunk_json (job->id, job->created,
                                                                  server->model_id, NULL, NULL,
                                                                  NULL, NULL, &job->usage);

                  stream_event (msg, usage);
                }
            }
          stream_write (msg, "data: [DONE]\n\n");
          soup_message_body_complete (soup_server_message_get_response_body (msg));
          soup_server_message_unpause (msg);
        }
      else
        {
          g_autofree char *json = app_openai_completion_json (job->id, job->created,
                                                              server->model_id,
                                                              job->answer->str,
                                                              job->finish_reason,
                                                              &job->usage);

          reply_json (msg, 200, json);
          soup_server_message_unpause (msg);
        }
      log_request (msg, soup_server_message_get_status (msg), detail);
    }
  else
    g_printerr ("POST /v1/chat/completions %s\n", detail);
  dispatch (server);
  stop_when_idle (server);
  return G_SOURCE_REMOVE;
}

/* ---------------------------------------------------------------------------------------------
 * Requests (main thread)
 */

/* The request body, read as it arrives into a buffer of at most --max-body bytes (libsoup
 * would otherwise accumulate any size). */
typedef struct
{
  GByteArray *data;
  gboolean too_large;
  gint64 max;
} Body;

static void
body_free (gpointer p)
{
  Body *body = p;

  g_clear_pointer (&body->data, g_byte_array_unref);
  g_free (body);
}

static void
got_chunk_cb (SoupServerMessage *msg,
              GBytes            *chunk,
              gpointer           user_data)
{
  Body *body = user_data;
  gsize n = g_bytes_get_size (chunk);

  (void) msg;
  if (body->too_large)
    return;
  if ((gint64) (body->data->len + n) > body->max)
    {
      body->too_large = TRUE;
      g_byte_array_set_size (body->data, 0);
      return;
    }
  g_byte_array_append (body->data, g_bytes_get_data (chunk, NULL), (guint) n);
}

static void
early_cb (SoupServer        *soup,
          SoupServerMessage *msg,
          const char        *path,
          GHashTable        *query,
          gpointer           user_data)
{
  Server *server = user_data;
  SoupMessageHeaders *h = soup_server_message_get_request_headers (msg);
  Body *body = g_new0 (Body, 1);

  (void) soup;
  (void) path;
  (void) query;
  body->data = g_byte_array_new ();
  body->max = server->opt.max_body;
  if (soup_message_headers_get_encoding (h) == SOUP_ENCODING_CONTENT_LENGTH
      && soup_message_headers_get_content_length (h) > body->max)
    body->too_large = TRUE; /* what arrives is read and dropped */
  soup_message_body_set_accumulate (soup_server_message_get_request_body (msg), FALSE);
  g_object_set_data_full (G_OBJECT (msg), "vl2-body", body, body_free);
  g_signal_connect (msg, "got-chunk", G_CALLBACK (got_chunk_cb), body);
}

static gboolean
authorized (Server            *server,
            SoupServerMessage *msg)
{
  const char *auth, *key = server->opt.api_key;
  gsize n;
  guint diff = 0;

  if (!key)
    return TRUE;
  auth = soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
                                       "Authorization");
  if (!auth || g_ascii_strncasecmp (auth, "Bearer ", 7) != 0)
    return FALSE;
  auth += 7;
  n = strlen (key);
  if (strlen (auth) != n)
    return FALSE;
  /* the same time whatever matches */
  for (gsize i = 0; i < n; i++)
    diff |= (guint) (auth[i] ^ key[i]);
  return diff == 0;
}

static void
model_object (JsonBuilder *b,
              Server      *server)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, server->model_id);
  json_builder_set_member_name (b, "object");
  json_builder_add_string_value (b, "model");
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, server->created);
  json_builder_set_member_name (b, "owned_by");
  json_builder_add_string_value (b, "vl2-server");
  json_builder_set_member_name (b, "max_model_len");
  json_builder_add_int_value (b, server->n_ctx);
  json_builder_end_object (b);
}

static void
reply_builder (SoupServerMessage *msg,
               JsonBuilder       *b)
{
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  g_autofree char *json = app_json_to_data (root, FALSE, NULL);

  reply_json (msg, 200, json);
}

static void
handle_models (Server            *server,
               SoupServerMessage *msg,
               const char        *path)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  const char *id = path + strlen ("/v1/models");

  if (*id == '/')
    {
      if (!g_str_equal (id + 1, server->model_id))
        {
          reply_error_code (msg, APP_OPENAI_ERROR_MODEL_NOT_FOUND,
                            "model\x1fThis server serves one model; GET /v1/models names it.");
          return;
        }
      model_object (b, server);
    }
  else
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "object");
      json_builder_add_string_value (b, "list");
      json_builder_set_member_name (b, "data");
      json_builder_begin_array (b);
      model_object (b, server);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  reply_builder (msg, b);
}

static void
handle_health (Server            *server,
               SoupServerMessage *msg)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  int busy = 0;

  for (int i = 0; i < server->opt.parallel; i++)
    busy += server->slots[i].busy;
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "status");
  json_builder_add_string_value (b, "ok");
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, server->model_id);
  json_builder_set_member_name (b, "slots");
  json_builder_add_int_value (b, server->opt.parallel);
  json_builder_set_member_name (b, "slots_busy");
  json_builder_add_int_value (b, busy);
  json_builder_set_member_name (b, "queued");
  json_builder_add_int_value (b, g_queue_get_length (&server->pending));
  json_builder_end_object (b);
  reply_builder (msg, b);
}

/* The client went away: its answer stops at the next token, or it leaves the queue. */
static void
disconnected_cb (SoupServerMessage *msg,
                 gpointer           user_data)
{
  Job *job = user_data;
  Server *server = job->server;

  (void) msg;
  g_atomic_int_set (&job->cancelled, 1);
  g_clear_object (&job->msg);
  if (g_queue_remove (&server->pending, job))
    {
      g_printerr ("POST /v1/chat/completions: the client went away while queued\n");
      job_unref (job);
    }
}

/* The response is sent: nothing more is written to this message. */
static void
finished_cb (SoupServerMessage *msg,
             gpointer           user_data)
{
  Job *job = user_data;

  (void) msg;
  g_clear_object (&job->msg);
}

static void
enqueue (Job *job)
{
  Server *server = job->server;
  guint busy = 0;

  if (!job->msg)
    return;
  if (server->stopping)
    {
      reply_error_code (job->msg, APP_OPENAI_ERROR_SHUTTING_DOWN, "The server is shutting down.");
      log_request (job->msg, 503, "shutting down");
      soup_server_message_unpause (job->msg);
      return;
    }
  if (job->fetch_error)
    {
      reply_error (job->msg, job->fetch_error);
      soup_server_message_unpause (job->msg);
      return;
    }
  for (int i = 0; i < server->opt.parallel; i++)
    busy += server->slots[i].busy;
  if (busy == (guint) server->opt.parallel
      && g_queue_get_length (&server->pending) >= (guint) server->opt.queue)
    {
      double wait = server->mean_seconds > 0 ? server->mean_seconds : 10.0;
      guint retry = (guint) CLAMP (ceil (wait * (g_queue_get_length (&server->pending) + 1)
                                         / server->opt.parallel), 1, 600);
      g_autofree char *value = g_strdup_printf ("%u", retry);

      soup_message_headers_replace (soup_server_message_get_response_headers (job->msg),
                                    "Retry-After", value);
      reply_error_code (job->msg, APP_OPENAI_ERROR_OVERLOADED,
                        "The server is busy: every slot is answering and the queue is full. "
                        "Try again later.");
      log_request (job->msg, 503, "queue full");
      soup_server_message_unpause (job->msg);
      return;
    }
  g_queue_push_tail (&server->pending, job_ref (job));
  dispatch (server);
}

/* http(s) image URLs, when allowed: fetched with a size and time limit before the job queues. */
typedef struct
{
  Job *job;
  AppOpenAIImage *image;
  SoupMessage *msg;
} Fetch;

static void
fetch_finish (Fetch  *f,
              GBytes *data,
              GError *error)
{
  Job *job = f->job;

  if (error && !job->fetch_error)
    job->fetch_error = g_error_new (APP_OPENAI_ERROR, APP_OPENAI_ERROR_INVALID_IMAGE,
                                    "messages\x1f%s", error->message);
  else if (!error)
    f->image->data = g_bytes_ref (data);
  g_clear_object (&f->msg);
  g_free (f);
  if (--job->images_fetching == 0)
    enqueue (job);
  job_unref (job);
}

static void
fetch_read_cb (GObject      *source,
               GAsyncResult *res,
               gpointer      user_data)
{
  Fetch *f = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) data = app_read_all_finish (G_INPUT_STREAM (source), res, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE))
    {
      g_autoptr(GError) e = g_error_new (G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                                         "An image URL's image is larger than this server "
                                         "takes (%" G_GINT64_FORMAT " bytes).",
                                         f->job->server->opt.max_body);
      fetch_finish (f, NULL, e);
      return;
    }
  fetch_finish (f, data, error);
}

static void
fetch_sent_cb (GObject      *source,
               GAsyncResult *res,
               gpointer      user_data)
{
  Fetch *f = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GInputStream) stream = NULL;
  guint status;

  stream = soup_session_send_finish (SOUP_SESSION (source), res, &error);
  if (!stream)
    {
      fetch_finish (f, NULL, error);
      return;
    }
  status = soup_message_get_status (f->msg);
  if (!SOUP_STATUS_IS_SUCCESSFUL (status))
    {
      g_autoptr(GError) e = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED,
                                         "An image URL gave HTTP %u.", status);
      fetch_finish (f, NULL, e);
      return;
    }
  app_read_all_async (stream, (gsize) f->job->server->opt.max_body, NULL, fetch_read_cb, f);
}

static void
fetch_images (Job *job)
{
  Server *server = job->server;

  job->images_fetching = 1; /* held until every fetch has started */
  for (guint i = 0; i < job->request->messages->len; i++)
    {
      AppOpenAIMessage *m = g_ptr_array_index (job->request->messages, i);

      for (guint k = 0; k < m->images->len; k++)
        {
          AppOpenAIImage *im = g_ptr_array_index (m->images, k);
          Fetch *f;

          if (!im->url)
            continue;
          f = g_new0 (Fetch, 1);
          f->job = job_ref (job);
          f->image = im;
          f->msg = soup_message_new ("GET", im->url);
          if (!f->msg)
            {
              g_autoptr(GError) e = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                                 "An image URL is not a valid URL.");

              job->images_fetching++;
              fetch_finish (f, NULL, e);
              continue;
            }
          job->images_fetching++;
          soup_session_send_async (server->fetcher, f->msg, G_PRIORITY_DEFAULT, NULL,
                                   fetch_sent_cb, f);
        }
    }
  if (--job->images_fetching == 0)
    enqueue (job);
}

static void
handle_chat (Server            *server,
             SoupServerMessage *msg)
{
  Body *body = g_object_get_data (G_OBJECT (msg), "vl2-body");
  AppOpenAILimits limits = { (gsize) server->opt.max_images, 1000, server->opt.max_tokens,
                             server->opt.allow_image_urls };
  g_autoptr(GError) error = NULL;
  g_autoptr(AppOpenAIRequest) req = NULL;
  g_autoptr(Job) job = NULL;
  g_autofree char *uuid = NULL;
  gboolean has_urls = FALSE;

  if (!body || body->too_large)
    {
      g_autofree char *text = g_strdup_printf ("The request body is larger than this server "
                                               "takes (%" G_GINT64_FORMAT " bytes).",
                                               server->opt.max_body);

      soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                    "Connection", "close");
      reply_error_code (msg, APP_OPENAI_ERROR_BODY_TOO_LARGE, text);
      return;
    }
  req = app_openai_request_parse ((const char *) body->data->data, body->data->len, &limits,
                                  &error);
  if (!req)
    {
      reply_error (msg, error);
      return;
    }
  if (!g_str_equal (req->model, server->model_id))
    {
      g_autofree char *text = g_strdup_printf ("model\x1fThe model '%s' does not exist here; "
                                               "this server serves '%s'.", req->model,
                                               server->model_id);

      reply_error_code (msg, APP_OPENAI_ERROR_MODEL_NOT_FOUND, text);
      return;
    }

  job = g_new0 (Job, 1);
  g_atomic_ref_count_init (&job->ref);
  job->server = server;
  job->msg = g_object_ref (msg);
  job->request = g_steal_pointer (&req);
  uuid = g_uuid_string_random ();
  g_strdelimit (uuid, "-", 'x');
  job->id = g_strconcat ("chatcmpl-", uuid, NULL);
  job->created = g_get_real_time () / G_USEC_PER_SEC;
  job->t_start = g_get_monotonic_time ();
  job->digests = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < job->request->messages->len; i++)
    {
      AppOpenAIMessage *m = g_ptr_array_index (job->request->messages, i);

      g_ptr_array_add (job->digests, message_digest (m->role, m->text, m->images));
      for (guint k = 0; k < m->images->len; k++)
        has_urls |= ((AppOpenAIImage *) g_ptr_array_index (m->images, k))->url != NULL;
    }
  g_mutex_init (&job->lock);
  job->outbox = g_string_new (NULL);
  job->answer = g_string_new (NULL);
  g_signal_connect_data (msg, "disconnected", G_CALLBACK (disconnected_cb), job_ref (job),
                         job_closure_unref, 0);
  g_signal_connect_data (msg, "finished", G_CALLBACK (finished_cb), job_ref (job),
                         job_closure_unref, 0);
  soup_server_message_pause (msg);
  if (has_urls)
    fetch_images (job);
  else
    enqueue (job);
}

static void
request_cb (SoupServer        *soup,
            SoupServerMessage *msg,
            const char        *path,
            GHashTable        *query,
            gpointer           user_data)
{
  Server *server = user_data;
  const char *method = soup_server_message_get_method (msg);
  gboolean get = g_str_equal (method, "GET");
  gboolean post = g_str_equal (method, "POST");

  (void) soup;
  (void) query;
  if (g_str_equal (path, "/health"))
    {
      if (get)
        handle_health (server, msg);
      else
        reply_error_code (msg, APP_OPENAI_ERROR_METHOD, "Use GET for /health.");
      return;
    }
  if (!g_str_has_prefix (path, "/v1/"))
    {
      reply_error_code (msg, APP_OPENAI_ERROR_NOT_FOUND,
                        "Not found: this server answers /v1/chat/completions, /v1/models and "
                        "/health.");
      log_request (msg, 404, NULL);
      return;
    }
  if (!authorized (server, msg))
    {
      soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                    "WWW-Authenticate", "Bearer");
      reply_error_code (msg, APP_OPENAI_ERROR_UNAUTHORIZED,
                        "Incorrect or missing API key: send 'Authorization: Bearer KEY' with "
                        "the key this server was started with.");
      log_request (msg, 401, NULL);
      return;
    }
  if (g_str_equal (path, "/v1/models") || g_str_has_prefix (path, "/v1/models/"))
    {
      if (get)
        handle_models (server, msg, path);
      else
        reply_error_code (msg, APP_OPENAI_ERROR_METHOD, "Use GET for /v1/models.");
    }
  else if (g_str_equal (path, "/v1/chat/completions"))
    {
      if (post)
        handle_chat (server, msg);
      else
        reply_error_code (msg, APP_OPENAI_ERROR_METHOD, "Use POST for /v1/chat/completions.");
    }
  else
    reply_error_code (msg, APP_OPENAI_ERROR_NOT_FOUND,
                      "Not found: this server answers /v1/chat/completions, /v1/models and "
                      "/health.");
  if (soup_server_message_get_status (msg) >= 400)
    log_request (msg, soup_server_message_get_status (msg), NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Start and stop
 */

/* Ends the main loop once the server is stopping and no slot is answering. */
static void
stop_when_idle (Server *server)
{
  if (!server->stopping)
    return;
  for (int i = 0; i < server->opt.parallel; i++)
    if (server->slots[i].busy)
      return;
  g_main_loop_quit (server->loop);
}

/* No new answers: the queue is answered 503, answers in progress stop at their next token (or
 * tile) and end with an error event. */
static void
begin_stopping (Server *server)
{
  Job *job;

  server->stopping = TRUE;
  while ((job = g_queue_pop_head (&server->pending)))
    {
      if (job->msg)
        {
          reply_error_code (job->msg, APP_OPENAI_ERROR_SHUTTING_DOWN,
                            "The server is shutting down.");
          log_request (job->msg, 503, "shutting down");
          soup_server_message_unpause (job->msg);
        }
      job_unref (job);
    }
  for (int i = 0; server->slots && i < server->opt.parallel; i++)
    if (server->slots[i].job)
      g_atomic_int_set (&server->slots[i].job->cancelled, 1);
}

/* SIGTERM or SIGINT: stop, and end the loop once the slots are idle. A second signal ends it
 * at once. */
static gboolean
quit_cb (gpointer data)
{
  Server *server = data;

  if (server->stopping)
    {
      g_main_loop_quit (server->loop);
      return G_SOURCE_CONTINUE;
    }
  g_printerr ("vl2-server: stopping\n");
  begin_stopping (server);
  stop_when_idle (server);
  return G_SOURCE_CONTINUE;
}

static gboolean
load_model (Server  *server,
            GError **error)
{
  vl2_model_params mp = vl2_model_default_params ();
  vl2_session_params sp = vl2_session_default_params ();
  vl2_model_info info;
  sp.compute = server->opt.compute;
  vl2_error err;
  int cpus = (int) g_get_num_processors ();

  mp.n_threads = server->opt.threads > 0 ? server->opt.threads
                                         : MAX (1, cpus / server->opt.parallel);
  mp.weights = server->opt.weights;
  mp.resident = server->opt.resident;
  if (vl2_model_load (server->opt.model_dir, &mp, &server->model, &err) != VL2_OK)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", err.message);
      return FALSE;
    }
  vl2_model_get_info (server->model, &info);
  if (vl2_tokenizer_open (server->opt.model_dir, &server->tokenizer, &err) != VL2_OK)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", err.message);
      return FALSE;
    }
  server->n_ctx = server->opt.n_ctx > 0 ? MIN (server->opt.n_ctx, info.n_ctx_max)
                                        : info.n_ctx_max;
  sp.n_ctx = server->n_ctx;
  server->slots = g_new0 (Slot, server->opt.parallel);
  for (int i = 0; i < server->opt.parallel; i++)
    {
      Slot *slot = &server->slots[i];

      slot->server = server;
      slot->index = i;
      slot->inbox = g_async_queue_new ();
      slot->history = g_ptr_array_new_with_free_func (g_free);
      if (vl2_session_new (server->model, &sp, &slot->session, &err) != VL2_OK)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", err.message);
          return FALSE;
        }
      slot->thread = g_thread_new ("vl2-slot", slot_main, slot);
    }
  g_printerr ("vl2-server: %s (%s, %s weights, %s compute) from %s, %d slot%s of %d thread%s, "
              "context %d, kernels %s\n", server->model_id, info.variant, info.weights_format,
              vl2_compute_name (sp.compute),
              server->opt.model_dir, server->opt.parallel, server->opt.parallel == 1 ? "" : "s",
              mp.n_threads, mp.n_threads == 1 ? "" : "s", server->n_ctx, vl2_isa ());
  return TRUE;
}

static gboolean
listen_on (Server  *server,
           GError **error)
{
  g_autoptr(GInetAddress) address = NULL;
  g_autoptr(GSocketAddress) sa = NULL;
  GSList *uris;

  if (g_str_equal (server->opt.host, "localhost"))
    address = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  else
    address = g_inet_address_new_from_string (server->opt.host);
  if (!address)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "--host %s: give an IP address (127.0.0.1, ::1, 0.0.0.0) or localhost",
                   server->opt.host);
      return FALSE;
    }
  if (!g_inet_address_get_is_loopback (address))
    g_printerr ("vl2-server: listening on %s, beyond this computer%s\n", server->opt.host,
                server->opt.api_key ? "" : ", without an API key: anyone who reaches it can use "
                                           "it");
  sa = g_inet_socket_address_new (address, (guint16) server->opt.port);
  if (!soup_server_listen (server->soup, sa, 0, error))
    return FALSE;
  uris = soup_server_get_uris (server->soup);
  for (GSList *l = uris; l; l = l->next)
    {
      g_autofree char *uri = g_uri_to_string (l->data);

      /* on standard output, one line: scripts and tests read the port from it */
      printf ("vl2-server: listening on %s\n", uri);
    }
  fflush (stdout);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  return TRUE;
}

static void
server_stop (Server *server)
{
  begin_stopping (server);
  for (int i = 0; server->slots && i < server->opt.parallel; i++)
    {
      Slot *slot = &server->slots[i];

      if (!slot->thread)
        continue;
      g_async_queue_push (slot->inbox, server);
    }
  for (int i = 0; server->slots && i < server->opt.parallel; i++)
    {
      Slot *slot = &server->slots[i];

      if (slot->thread)
        g_thread_join (slot->thread);
    }
  /* what the slots posted last (their answers' ends) reaches the clients before they go */
  while (server->context && g_main_context_iteration (server->context, FALSE))
    ;
  for (int i = 0; server->slots && i < server->opt.parallel; i++)
    {
      Slot *slot = &server->slots[i];

      vl2_session_free (slot->session);
      g_clear_pointer (&slot->inbox, g_async_queue_unref);
      g_clear_pointer (&slot->history, g_ptr_array_unref);
    }
  g_clear_pointer (&server->slots, g_free);
  g_clear_object (&server->soup);
  g_clear_object (&server->fetcher);
  vl2_tokenizer_free (server->tokenizer);
  vl2_model_free (server->model);
  g_clear_pointer (&server->loop, g_main_loop_unref);
  g_clear_pointer (&server->model_id, g_free);
  g_clear_pointer (&server->opt.model_dir, g_free);
  g_clear_pointer (&server->opt.model_name, g_free);
  g_clear_pointer (&server->opt.host, g_free);
  g_clear_pointer (&server->opt.api_key, g_free);
}

int
main (int    argc,
      char **argv)
{
  Server server = { 0 };
  Options *o = &server.opt;
  int max_body_mib = 20, max_image_mp = 40;
  g_autofree char *weights = NULL, *compute = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GOptionContext) ctx = NULL;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &o->model_dir, "The model folder", "DIR" },
    { "model-name", 0, 0, G_OPTION_ARG_STRING, &o->model_name,
      "The model's id in the API (default: the folder's name)", "NAME" },
    { "host", 0, 0, G_OPTION_ARG_STRING, &o->host,
      "The address to listen on (default 127.0.0.1: this computer only)", "ADDRESS" },
    { "port", 'p', 0, G_OPTION_ARG_INT, &o->port, "The port (default 8080; 0: any free one)",
      "PORT" },
    { "api-key", 0, 0, G_OPTION_ARG_STRING, &o->api_key,
      "Require 'Authorization: Bearer KEY' (default: the VL2_SERVER_API_KEY environment "
      "variable, or none)", "KEY" },
    { "parallel", 0, 0, G_OPTION_ARG_INT, &o->parallel,
      "Answers generated at once, each with its own KV cache (default 1)", "N" },
    { "queue", 0, 0, G_OPTION_ARG_INT, &o->queue,
      "Requests that wait for a slot before the server answers 503 (default 8)", "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &o->threads,
      "Threads per slot (default: the CPUs divided among the slots)", "N" },
    { "ctx", 'c', 0, G_OPTION_ARG_INT, &o->n_ctx,
      "Context per slot in tokens (default: the model's)", "N" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &weights,
      "Language model weights: as stored (default), or q8 / q4 quantized while loading",
      "FORMAT" },
    { "compute", 0, 0, G_OPTION_ARG_STRING, &compute,
      "Arithmetic of image and prompt reading: f32 (default; the reference's results) or bf16 "
      "(about twice as fast where the CPU has bf16 dot products)", "MODE" },
    { "resident", 0, 0, G_OPTION_ARG_NONE, &o->resident,
      "Copy the stored weights into memory instead of mapping them (faster decoding)", NULL },
    { "max-body-mib", 0, 0, G_OPTION_ARG_INT, &max_body_mib,
      "The largest request body, in MiB (default 20)", "N" },
    { "max-images", 0, 0, G_OPTION_ARG_INT, &o->max_images,
      "Images in one request (default 16)", "N" },
    { "max-image-megapixels", 0, 0, G_OPTION_ARG_INT, &max_image_mp,
      "The largest image, in megapixels (default 40)", "N" },
    { "max-tokens", 0, 0, G_OPTION_ARG_INT, &o->max_tokens,
      "The largest max_tokens a request may ask for (default: the context)", "N" },
    { "allow-image-urls", 0, 0, G_OPTION_ARG_NONE, &o->allow_image_urls,
      "Fetch http(s) image URLs (default: data: URLs only)", NULL },
    { "image-timeout", 0, 0, G_OPTION_ARG_INT, &o->image_timeout,
      "Seconds to fetch an image URL (default 15)", "S" },
    { NULL },
  };

  o->host = g_strdup ("127.0.0.1");
  o->port = 8080;
  o->parallel = 1;
  o->queue = 8;
  o->max_images = 16;
  o->image_timeout = 15;
  ctx = g_option_context_new ("- DeepSeek-VL2 on OpenAI's chat-completions API");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx,
    "Endpoints: POST /v1/chat/completions, GET /v1/models, GET /health.\n"
    "The first line on standard output names the address it listens on.\n");
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("vl2-server: %s\n", error->message);
      server_stop (&server);
      return 2;
    }
  if (!o->model_dir)
    {
      g_printerr ("vl2-server: --model DIR is required (see --help)\n");
      server_stop (&server);
      return 2;
    }
  if (o->parallel < 1 || o->parallel > 64 || o->queue < 0 || o->queue > 10000
      || o->port < 0 || o->port > 65535 || o->threads < 0 || o->threads > 1024
      || max_body_mib < 1 || max_body_mib > 4096 || o->max_images < 0 || o->max_images > 256
      || max_image_mp < 1 || max_image_mp > 100 || o->max_tokens < 0 || o->n_ctx < 0
      || o->image_timeout < 1)
    {
      g_printerr ("vl2-server: an option is out of range (see --help)\n");
      server_stop (&server);
      return 2;
    }
  if (!weights || g_str_equal (weights, "stored") || g_str_equal (weights, "bf16"))
    o->weights = VL2_WEIGHTS_STORED;
  else if (g_str_equal (weights, "q8"))
    o->weights = VL2_WEIGHTS_Q8;
  else if (g_str_equal (weights, "q4"))
    o->weights = VL2_WEIGHTS_Q4;
  else
    {
      g_printerr ("vl2-server: --weights is q8 or q4\n");
      server_stop (&server);
      return 2;
    }
  o->compute = VL2_COMPUTE_F32;
  if (compute && !vl2_compute_from_name (compute, &o->compute))
    {
      g_printerr ("vl2-server: --compute is f32 or bf16\n");
      server_stop (&server);
      return 2;
    }
  if (!o->api_key && g_getenv ("VL2_SERVER_API_KEY") && *g_getenv ("VL2_SERVER_API_KEY"))
    o->api_key = g_strdup (g_getenv ("VL2_SERVER_API_KEY"));
  if (o->api_key && !*o->api_key)
    g_clear_pointer (&o->api_key, g_free);
  o->max_body = (gint64) max_body_mib * MIB;
  o->max_image_pixels = (gint64) max_image_mp * 1000000;
  server.model_id = o->model_name ? g_strdup (o->model_name)
                                  : g_path_get_basename (o->model_dir);
  server.created = g_get_real_time () / G_USEC_PER_SEC;
  server.context = g_main_context_default ();
  server.loop = g_main_loop_new (NULL, FALSE);

  if (!load_model (&server, &error))
    {
      g_printerr ("vl2-server: %s\n", error->message);
      server_stop (&server);
      return 1;
    }
  if (o->max_tokens == 0 || o->max_tokens > server.n_ctx)
    o->max_tokens = server.n_ctx;
  server.soup = soup_server_new ("server-header", "vl2-server/" APP_VERSION " ", NULL);
  soup_server_add_early_handler (server.soup, NULL, early_cb, &server, NULL);
  soup_server_add_handler (server.soup, NULL, request_cb, &server, NULL);
  server.fetcher = soup_session_new_with_options ("timeout", o->image_timeout,
                                                  "user-agent", "vl2-server/" APP_VERSION " ", NULL);
  if (!listen_on (&server, &error))
    {
      g_printerr ("vl2-server: cannot listen on %s port %d: %s\n", o->host, o->port,
                  error->message);
      server_stop (&server);
      return 1;
    }
  g_unix_signal_add (SIGINT, quit_cb, &server);
  g_unix_signal_add (SIGTERM, quit_cb, &server);
  g_main_loop_run (server.loop);
  server_stop (&server);
  return 0;
}
