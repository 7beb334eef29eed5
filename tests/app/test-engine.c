/* test-engine.c - the engine adapter (app/core/app-engine.c) with the golden mini-tiny model.
 *
 * Loading with progress and failure; an answer going PENDING -> STREAMING -> COMPLETE with its
 * text arriving on the main thread; stopping within a step and answering again; refusing a
 * second request while busy; errors (a missing image, an empty question, a question longer
 * than the context) ending as FAILED replies; early turns left out with a note when a long
 * chat would overflow the context; why an answer ended, and an answer cut at the length limit
 * continued in place; the prompt made of the versions shown only; an answer the app marks
 * interrupted while it runs staying so. The model's files changing on disk between two
 * questions (truncated, or replaced by another model) and during an answer: the process
 * survives, the model is loaded again or the reply says why it cannot be, the chat keeps what
 * it had. Counting the next question's tokens, and leaving out the oldest images to fit. And
 * the sampling defaults: the engine's, with no numbers of the app's or of the settings
 * schema's own.
 */
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include <gdk-pixbuf/gdk-pixbuf.h>

#include "app-config.h"
#include "app-engine.h"
#include "engine-wait.h"
#include "image-file.h"
#include "vl2.h"

static char *model_dir;
static GThread *main_thread;

typedef struct
{
  GArray *progress;
  GArray *states;
} Watch;

static void
progress_cb (AppEngine  *engine,
             GParamSpec *pspec,
             Watch      *w)
{
  double p = app_engine_get_load_progress (engine);

  g_array_append_val (w->progress, p);
}

static void
state_cb (AppEngine  *engine,
          GParamSpec *pspec,
          Watch      *w)
{
  int s = app_engine_get_state (engine);

  g_array_append_val (w->states, s);
}

static AppEngine *
loaded_engine (void)
{
  AppEngine *engine = app_engine_new ();
  EngineResult r = { 0 };

  app_engine_load_async (engine, model_dir, 2, NULL, engine_load_cb, &r);
  engine_wait (&r.done, "the model");
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  return engine;
}

static void
test_load (void)
{
  g_autoptr(AppEngine) engine = app_engine_new ();
  Watch w = { g_array_new (FALSE, FALSE, sizeof (double)), g_array_new (FALSE, FALSE, sizeof (int)) };
  EngineResult bad = { 0 }, good = { 0 };

  g_signal_connect (engine, "notify::load-progress", G_CALLBACK (progress_cb), &w);
  g_signal_connect (engine, "notify::state", G_CALLBACK (state_cb), &w);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_EMPTY);

  /* a folder without a model fails with a message naming it */
  app_engine_load_async (engine, "/nonexistent/model", 1, NULL, engine_load_cb, &bad);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_LOADING);
  engine_wait (&bad.done, "the failed load");
  g_assert_false (bad.ok);
  g_assert_error (bad.error, APP_ENGINE_ERROR, APP_ENGINE_ERROR_MODEL);
  g_assert_nonnull (strstr (bad.error->message, "/nonexistent/model"));
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_FAILED);
  g_assert_nonnull (strstr (app_engine_get_error (engine), "/nonexistent/model"));
  g_clear_error (&bad.error);

  /* then a good one: progress grows to 1, the name and folder are known */
  g_array_set_size (w.progress, 0);
  app_engine_load_async (engine, model_dir, 2, NULL, engine_load_cb, &good);
  engine_wait (&good.done, "the model");
  g_assert_no_error (good.error);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_READY);
  g_assert_cmpstr (app_engine_get_model_name (engine), ==, "DeepSeek-VL2 Tiny");
  g_assert_cmpstr (app_engine_get_model_dir (engine), ==, model_dir);
  g_assert_null (app_engine_get_error (engine));
  g_assert_cmpuint (w.progress->len, >=, 2);
  for (guint i = 1; i < w.progress->len; i++)
    g_assert_cmpfloat (g_array_index (w.progress, double, i), >=,
                       g_array_index (w.progress, double, i - 1));
  g_assert_cmpfloat (g_array_index (w.progress, double, w.progress->len - 1), ==, 1.0);
  g_array_unref (w.progress);
  g_array_unref (w.states);
}

/* Cancelling a load leaves no model and no error: EMPTY, not FAILED. The engine is usable. */
static void
test_cancel_load (void)
{
  g_autoptr(AppEngine) engine = app_engine_new ();
  g_autoptr(GCancellable) cancel = g_cancellable_new ();
  EngineResult r = { 0 }, again = { 0 };

  app_engine_load_async (engine, model_dir, 2, cancel, engine_load_cb, &r);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_LOADING);
  g_cancellable_cancel (cancel);
  engine_wait (&r.done, "the cancelled load");
  g_assert_false (r.ok);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_EMPTY);
  g_assert_null (app_engine_get_error (engine));
  g_assert_null (app_engine_get_error_advice (engine));
  g_clear_error (&r.error);

  app_engine_load_async (engine, model_dir, 2, NULL, engine_load_cb, &again);
  engine_wait (&again.done, "the model");
  g_assert_no_error (again.error);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_READY);
}

/* A folder beside the fixture's: config.json and tokenizer.json linked to the model's when
 * asked, and `weights` (NULL: none) as model.safetensors. */
static char *
model_folder (gboolean    config,
              gboolean    tokenizer,
              const char *weights,
              gssize      weights_len)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp ("sightline-folder-XXXXXX", &error);
  const char *names[] = { config ? "config.json" : NULL, tokenizer ? "tokenizer.json" : NULL };

  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (names[i])
      {
        g_autofree char *from = g_build_filename (model_dir, names[i], NULL);
        g_autofree char *to = g_build_filename (dir, names[i], NULL);

        g_assert_cmpint (symlink (from, to), ==, 0);
      }
  if (weights)
    {
      g_autofree char *to = g_build_filename (dir, "model.safetensors", NULL);

      g_file_set_contents (to, weights, weights_len, &error);
      g_assert_no_error (error);
    }
  return dir;
}

static void
remove_folder (const char *dir)
{
  const char *names[] = { "config.json", "tokenizer.json", "model.safetensors", "notes.txt" };

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *p = g_build_filename (dir, names[i], NULL);

      g_unlink (p);
    }
  g_rmdir (dir);
}

/* The advice for `dir`: the load fails, and the advice holds `needle`. */
static void
expect_advice (AppEngine  *engine,
               const char *dir,
               const char *needle)
{
  EngineResult r = { 0 };
  const char *advice;

  app_engine_load_async (engine, dir, 1, NULL, engine_load_cb, &r);
  engine_wait (&r.done, "the failed load");
  g_assert_false (r.ok);
  g_clear_error (&r.error);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_FAILED);
  advice = app_engine_get_error_advice (engine);
  if (!advice || !strstr (advice, needle))
    g_error ("%s: the advice \"%s\" lacks \"%s\" (error: %s)", dir, advice, needle,
             app_engine_get_error (engine));
}

/* A failed load says what to do: the folder that holds the files, git lfs pull, download
 * again, the files that are missing. */
static void
test_load_advice (void)
{
  g_autoptr(AppEngine) engine = app_engine_new ();
  g_autofree char *weights = NULL;
  gsize len;
  const char *pointer = "version https://git-lfs.github.com/spec/v1\n"
                        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                        "size 6746589584\n";
  struct {
    gboolean config, tokenizer;
    const char *weights;
    gssize len;
    const char *needle;
  } cases[] = {
    { FALSE, FALSE, NULL, 0, "config.json and the .safetensors files" },
    { TRUE, TRUE, pointer, -1, "git lfs pull" },
    { TRUE, TRUE, NULL, 0, "the .safetensors weights" },
    { TRUE, FALSE, NULL, 0, "tokenizer.json" },
    { TRUE, TRUE, NULL, 0, "Download the model again" },     /* cut short, below */
  };
  g_autofree char *model = g_build_filename (model_dir, "model.safetensors", NULL);

  g_assert_true (g_file_get_contents (model, &weights, &len, NULL));
  cases[3].weights = weights;
  cases[3].len = (gssize) len;
  cases[4].weights = weights;
  cases[4].len = (gssize) len / 2;
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *dir = model_folder (cases[i].config, cases[i].tokenizer, cases[i].weights,
                                           cases[i].len);

      if (i == 0)
        {
          g_autofree char *notes = g_build_filename (dir, "notes.txt", NULL);

          g_assert_true (g_file_set_contents (notes, "not a model", -1, NULL));
        }
      expect_advice (engine, dir, cases[i].needle);
      remove_folder (dir);
    }
  expect_advice (engine, "/nonexistent/model", "not there any more");
}

/* A reply's states and text as the main thread sees them. */
typedef struct
{
  GArray *states;
  GString *text;
  guint text_notifies;
  AppMessage *reply;
  GCancellable *cancel_on_text;
} ReplyWatch;

static void
reply_state_cb (AppMessage *m,
                GParamSpec *pspec,
                ReplyWatch *w)
{
  int s = app_message_get_state (m);

  g_assert_true (g_thread_self () == main_thread); /* never from the worker */
  g_array_append_val (w->states, s);
}

static void
reply_text_cb (AppMessage *m,
               GParamSpec *pspec,
               ReplyWatch *w)
{
  g_assert_true (g_thread_self () == main_thread);
  w->text_notifies++;
  if (w->cancel_on_text)
    g_cancellable_cancel (w->cancel_on_text);
}

static AppChat *
chat_with (const char *question)
{
  AppChat *chat = app_chat_new ();
  g_autoptr(AppMessage) q = app_message_new (APP_ROLE_USER, question);

  app_chat_append (chat, q);
  return chat;
}

static AppMessage *
add_reply (AppChat    *chat,
           ReplyWatch *w)
{
  AppMessage *reply = app_message_new (APP_ROLE_ASSISTANT, "");

  app_chat_append (chat, reply);
  w->states = g_array_new (FALSE, FALSE, sizeof (int));
  w->reply = reply;
  g_signal_connect (reply, "notify::state", G_CALLBACK (reply_state_cb), w);
  g_signal_connect (reply, "notify::text", G_CALLBACK (reply_text_cb), w);
  return reply;
}

static AppGenerateParams
params (int max_new_tokens)
{
  AppGenerateParams p;

  app_generate_params_init (&p);
  p.temperature = 0;
  p.max_new_tokens = max_new_tokens;
  return p;
}

typedef struct
{
  GPtrArray *texts;
  double last;
} ProgressWatch;

static void
reply_progress_cb (AppMessage    *m,
                   GParamSpec    *pspec,
                   ProgressWatch *w)
{
  const char *text = app_message_get_progress_text (m);

  g_assert_true (g_thread_self () == main_thread);
  g_assert_cmpint (app_message_get_state (m), ==, APP_MESSAGE_PENDING);
  g_assert_cmpfloat (app_message_get_progress (m), >=, w->last);
  w->last = app_message_get_progress (m);
  if (text && (w->texts->len == 0 ||
               g_strcmp0 (g_ptr_array_index (w->texts, w->texts->len - 1), text) != 0))
    g_ptr_array_add (w->texts, g_strdup (text));
}

/* While the question waits, the reply says what the model reads: the image tile by tile,
 * then the conversation, with a fraction that only grows. */
static void
test_reading_progress (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autoptr(AppChat) chat = app_chat_new ();
  g_autoptr(AppMessage) question = app_message_new (APP_ROLE_USER, "What is written here?");
  g_autoptr(AppMessage) reply = app_message_new (APP_ROLE_ASSISTANT, "");
  g_autofree char *image_dir = g_build_filename (g_getenv ("VL2_GOLDEN_DIR"), "images", NULL);
  const char *images[] = { "vqa_1.jpg", NULL };
  ProgressWatch w = { g_ptr_array_new_with_free_func (g_free), 0 };
  AppGenerateParams p = params (2);
  EngineResult r = { 0 };
  gboolean tiles = FALSE;

  app_message_set_images (question, images);
  app_chat_append (chat, question);
  app_chat_append (chat, reply);
  g_signal_connect (reply, "notify::progress-text", G_CALLBACK (reply_progress_cb), &w);
  g_signal_connect (reply, "notify::progress", G_CALLBACK (reply_progress_cb), &w);
  app_engine_generate_async (engine, chat, reply, image_dir, &p, NULL, engine_generate_cb, &r);
  engine_wait (&r.done, "the answer");
  g_assert_no_error (r.error);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
  for (guint i = 0; i < w.texts->len; i++)
    {
      const char *t = g_ptr_array_index (w.texts, i);

      g_test_message ("%s", t);
      tiles = tiles || (g_str_has_prefix (t, "Reading the image, tile ") && strstr (t, " of 9"));
    }
  g_assert_true (tiles); /* 5014 x 2004 pixels: a global view and 8 tiles */
  g_assert_cmpstr (g_ptr_array_index (w.texts, w.texts->len - 1), ==, "Reading the conversation");
  g_assert_cmpfloat (w.last, ==, 1.0);
  g_ptr_array_unref (w.texts);
  app_generate_params_clear (&p);
}

static void
test_stream (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autoptr(AppChat) chat = chat_with ("Hello! Who are you?");
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = add_reply (chat, &w);
  AppGenerateParams p = params (32);
  EngineResult r = { 0 };

  app_engine_generate_async (engine, chat, reply, "/nonexistent", &p, NULL, engine_generate_cb, &r);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_PENDING);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_BUSY);
  engine_wait (&r.done, "the answer");
  g_assert_no_error (r.error);
  g_assert_true (r.ok);

  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_READY);
  g_assert_cmpuint (app_message_get_n_tokens (reply), ==, 32);
  g_assert_cmpfloat (app_message_get_tokens_per_second (reply), >, 0);
  g_assert_cmpfloat (app_message_get_first_token_seconds (reply), >, 0);
  g_assert_cmpstr (app_message_get_text (reply), !=, "");
  /* PENDING, then STREAMING, then COMPLETE; text in at most one batch per token */
  g_assert_cmpuint (w.states->len, >=, 3);
  g_assert_cmpint (g_array_index (w.states, int, 0), ==, APP_MESSAGE_PENDING);
  g_assert_cmpint (g_array_index (w.states, int, 1), ==, APP_MESSAGE_STREAMING);
  g_assert_cmpint (g_array_index (w.states, int, w.states->len - 1), ==, APP_MESSAGE_COMPLETE);
  g_assert_cmpuint (w.text_notifies, >=, 1);
  g_assert_cmpuint (w.text_notifies, <=, 32);
  g_test_message ("32 tokens arrived in %u batches", w.text_notifies);

  /* the same question again, greedy: the same answer (the session was reused) */
  {
    g_autoptr(AppChat) again = chat_with ("Hello! Who are you?");
    ReplyWatch w2 = { 0 };
    g_autoptr(AppMessage) reply2 = add_reply (again, &w2);
    EngineResult r2 = { 0 };

    app_engine_generate_async (engine, again, reply2, "/nonexistent", &p, NULL, engine_generate_cb,
                               &r2);
    engine_wait (&r2.done, "the second answer");
    g_assert_cmpstr (app_message_get_text (reply2), ==, app_message_get_text (reply));
    g_array_unref (w2.states);
  }
  app_generate_params_clear (&p);
  g_array_unref (w.states);
}

/* Fast image reading (bf16 arithmetic) reaches the engine at the next answer, no reload: on
 * this random model the greedy answer to this question changes with it (a near-tie). Off by
 * default in the engine; the app turns it on from its setting. */
static char *
greedy_answer (AppEngine  *engine,
               const char *question)
{
  g_autoptr(AppChat) chat = chat_with (question);
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = add_reply (chat, &w);
  AppGenerateParams p = params (24);
  EngineResult r = { 0 };

  app_engine_generate_async (engine, chat, reply, "/nonexistent", &p, NULL, engine_generate_cb, &r);
  engine_wait (&r.done, "the answer");
  g_assert_no_error (r.error);
  app_generate_params_clear (&p);
  g_array_unref (w.states);
  return g_strdup (app_message_get_text (reply));
}

static void
test_fast_arithmetic (void)
{
  g_autoptr(AppEngine) exact = loaded_engine ();
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autofree char *f32 = NULL, *bf16 = NULL;

  g_assert_false (app_engine_get_fast_arithmetic (engine));
  f32 = greedy_answer (exact, "Hello! Who are you?");
  /* after the load: the next answer reads its prompt in bf16 */
  app_engine_set_fast_arithmetic (engine, TRUE);
  g_assert_true (app_engine_get_fast_arithmetic (engine));
  bf16 = greedy_answer (engine, "Hello! Who are you?");
  if (app_engine_fast_arithmetic_available ())
    g_assert_cmpstr (bf16, !=, f32);
  else
    g_assert_cmpstr (bf16, ==, f32); /* float32 where the processor lacks bf16 dot products */
}

/* Reading ahead and coming back: a 7-tile photo attached to a draft is read before Send, so
 * the answer reads only the question (0 tiles encoded, the image's positions reused); the
 * follow-up reads nothing of it again; another chat with another photo, then back: the first
 * chat's cache was put aside, and its next question still reads no tile. */
static void
count_done_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      data)
{
  gboolean *done = data;

  app_engine_count_tokens_finish (APP_ENGINE (source), result, NULL, NULL);
  *done = TRUE;
}

static void
ask_in (AppEngine  *engine,
        AppChat    *chat,
        const char *question,
        const char *image,
        const char *dir,
        int        *tiles_read,
        int        *tokens_reused)
{
  g_autoptr(AppMessage) q = app_message_new (APP_ROLE_USER, question);
  const char *ids[] = { image, NULL };
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = NULL;
  AppGenerateParams p = params (6);
  EngineResult r = { 0 };

  if (image)
    app_message_set_images (q, ids);
  app_chat_append (chat, q);
  reply = add_reply (chat, &w);
  app_engine_generate_async (engine, chat, reply, dir, &p, NULL, engine_generate_cb, &r);
  engine_wait (&r.done, "the answer");
  g_assert_no_error (r.error);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
  app_engine_get_last_read (engine, tiles_read, tokens_reused);
  app_generate_params_clear (&p);
  g_array_unref (w.states);
}

static void
test_read_ahead (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autofree char *dir = g_dir_make_tmp ("sightline-ahead-XXXXXX", NULL);
  const char *names[] = { "tall.png", "wide.png" };
  const char *draft_images[] = { "tall.png", NULL };
  g_autoptr(AppChat) a = app_chat_new ();
  g_autoptr(AppChat) b = app_chat_new ();
  AppGenerateParams p = params (6);
  gboolean counted = FALSE;
  int tiles, reused, reused_before;

  for (int i = 0; i < 2; i++)
    {
      /* 768 x 1152 and 1152 x 768: 2 x 3 and 3 x 2 tiles and a global view */
      g_autoptr(GdkPixbuf) pixbuf = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8,
                                                    i ? 1152 : 768, i ? 768 : 1152);
      g_autofree char *path = g_build_filename (dir, names[i], NULL);

      gdk_pixbuf_fill (pixbuf, i ? 0x3060a0ffu : 0xa06030ffu);
      g_assert_true (gdk_pixbuf_save (pixbuf, path, "png", NULL, NULL));
    }

  /* the photo attached, the question half typed; a count queued behind the reading says when
   * it is done */
  app_engine_prepare (engine, a, NULL, "What is wri", draft_images, dir, &p);
  app_engine_count_tokens_async (engine, a, NULL, "What is wri", draft_images, dir, &p, NULL,
                                 count_done_cb, &counted);
  engine_wait (&counted, "the reading ahead");
  ask_in (engine, a, "What is written on it?", "tall.png", dir, &tiles, &reused);
  g_assert_cmpint (tiles, ==, 0);
  g_assert_cmpint (reused, >, 7 * 100);
  g_test_message ("the question sent: %d positions from the cache, %d tiles read", reused, tiles);

  ask_in (engine, a, "And which colour is it?", NULL, dir, &tiles, &reused_before);
  g_assert_cmpint (tiles, ==, 0);
  g_assert_cmpint (reused_before, >, reused);

  /* another chat, another photo, then back */
  ask_in (engine, b, "What is this?", "wide.png", dir, &tiles, &reused);
  g_assert_cmpint (tiles, ==, 7);
  ask_in (engine, a, "Is it dark?", NULL, dir, &tiles, &reused);
  g_assert_cmpint (tiles, ==, 0);
  g_assert_cmpint (reused, >, reused_before);

  for (int i = 0; i < 2; i++)
    {
      g_autofree char *path = g_build_filename (dir, names[i], NULL);
      g_unlink (path);
    }
  g_rmdir (dir);
  app_generate_params_clear (&p);
}

/* A busy main thread gets fewer, larger batches, and no text is lost. The first batch keeps
 * the main thread away for three times as long as a whole unhurried answer took, so the worker
 * writes most of the answer meanwhile, however loaded the machine is. */
typedef struct
{
  gint64 stall_us;
  gboolean stalled;
} Stall;

static void
slow_text_cb (AppMessage *m,
              GParamSpec *pspec,
              gpointer    data)
{
  Stall *stall = data;

  if (!stall->stalled)
    g_usleep (stall->stall_us);
  stall->stalled = TRUE;
}

static void
test_batches (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autoptr(AppChat) calm_chat = chat_with ("Hello! Who are you?");
  g_autoptr(AppChat) chat = chat_with ("Hello! Who are you?");
  ReplyWatch calm_w = { 0 }, w = { 0 };
  g_autoptr(AppMessage) calm = add_reply (calm_chat, &calm_w);
  g_autoptr(AppMessage) reply = add_reply (chat, &w);
  AppGenerateParams p = params (64);
  EngineResult calm_r = { 0 }, r = { 0 };
  gint64 t0 = g_get_monotonic_time ();
  Stall stall = { 0 };

  app_engine_generate_async (engine, calm_chat, calm, "/x", &p, NULL, engine_generate_cb, &calm_r);
  engine_wait (&calm_r.done, "the unhurried answer");
  stall.stall_us = MAX (G_USEC_PER_SEC, 3 * (g_get_monotonic_time () - t0));

  g_signal_connect (reply, "notify::text", G_CALLBACK (slow_text_cb), &stall);
  app_engine_generate_async (engine, chat, reply, "/x", &p, NULL, engine_generate_cb, &r);
  engine_wait (&r.done, "the hurried answer");
  g_test_message ("%u tokens arrived in %u batches unhurried, in %u around a %.1f s stall",
                  app_message_get_n_tokens (calm), calm_w.text_notifies, w.text_notifies,
                  stall.stall_us / 1e6);
  g_assert_cmpuint (app_message_get_n_tokens (calm), >, 16);
  g_assert_cmpuint (w.text_notifies, <, app_message_get_n_tokens (calm) / 2);
  g_assert_cmpstr (app_message_get_text (reply), ==, app_message_get_text (calm));

  app_generate_params_clear (&p);
  g_array_unref (calm_w.states);
  g_array_unref (w.states);
}

static void
test_stop_and_reuse (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autoptr(AppChat) chat = chat_with ("Write a very long story.");
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = add_reply (chat, &w);
  g_autoptr(GCancellable) cancel = g_cancellable_new ();
  AppGenerateParams p = params (4000);
  EngineResult r = { 0 };

  w.cancel_on_text = cancel; /* stop as soon as the first text shows */
  app_engine_generate_async (engine, chat, reply, "/nonexistent", &p, cancel, engine_generate_cb, &r);
  engine_wait (&r.done, "the stop");
  g_assert_true (r.ok);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_STOPPED);
  g_assert_cmpuint (app_message_get_n_tokens (reply), <, 100);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_READY);

  /* busy: a second request while one runs is refused and leaves its reply alone */
  {
    g_autoptr(AppChat) c1 = chat_with ("One");
    g_autoptr(AppChat) c2 = chat_with ("Two");
    ReplyWatch w1 = { 0 }, w2 = { 0 };
    g_autoptr(AppMessage) r1m = add_reply (c1, &w1);
    g_autoptr(AppMessage) r2m = add_reply (c2, &w2);
    EngineResult a = { 0 }, b = { 0 };
    AppGenerateParams small = params (8);

    app_engine_generate_async (engine, c1, r1m, "/nonexistent", &small, NULL, engine_generate_cb, &a);
    app_engine_generate_async (engine, c2, r2m, "/nonexistent", &small, NULL, engine_generate_cb, &b);
    engine_wait (&b.done, "the refusal");
    g_assert_error (b.error, APP_ENGINE_ERROR, APP_ENGINE_ERROR_BUSY);
    g_assert_cmpint (app_message_get_state (r2m), ==, APP_MESSAGE_COMPLETE); /* untouched */
    engine_wait (&a.done, "the first");
    g_assert_cmpint (app_message_get_state (r1m), ==, APP_MESSAGE_COMPLETE);
    g_clear_error (&b.error);
    g_array_unref (w1.states);
    g_array_unref (w2.states);
    app_generate_params_clear (&small);
  }

  /* and the stopped session answers again */
  {
    ReplyWatch w3 = { 0 };
    g_autoptr(AppChat) c3 = chat_with ("Again?");
    g_autoptr(AppMessage) r3 = add_reply (c3, &w3);
    EngineResult c = { 0 };
    AppGenerateParams small = params (8);

    app_engine_generate_async (engine, c3, r3, "/nonexistent", &small, NULL, engine_generate_cb, &c);
    engine_wait (&c.done, "the answer after the stop");
    g_assert_cmpint (app_message_get_state (r3), ==, APP_MESSAGE_COMPLETE);
    g_assert_cmpuint (app_message_get_n_tokens (r3), ==, 8);
    g_array_unref (w3.states);
    app_generate_params_clear (&small);
  }
  app_generate_params_clear (&p);
  g_array_unref (w.states);
}

/* Why an answer ended, and an answer cut at the length limit continued: the new text follows
 * the old, in the same message. Then the prompt comes from the versions shown only. */
static void
test_finish_and_continue (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autoptr(AppChat) chat = chat_with ("Hello! Who are you?");
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = add_reply (chat, &w);
  AppGenerateParams p = params (8);
  g_autofree char *first = NULL;
  EngineResult r = { 0 }, again = { 0 };

  app_engine_generate_async (engine, chat, reply, "/nonexistent", &p, NULL, engine_generate_cb, &r);
  engine_wait (&r.done, "the short answer");
  g_assert_true (r.ok);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
  g_assert_cmpuint (app_message_get_n_tokens (reply), ==, 8);
  g_assert_cmpint (app_message_get_finish_reason (reply), ==, APP_FINISH_LENGTH);
  first = g_strchomp (g_strdup (app_message_get_text (reply)));
  g_assert_cmpstr (first, !=, "");

  app_engine_generate_async (engine, chat, reply, "/nonexistent", &p, NULL, engine_generate_cb, &again);
  g_assert_cmpint (app_message_get_finish_reason (reply), ==, APP_FINISH_NONE);
  engine_wait (&again.done, "the continuation");
  g_assert_true (again.ok);
  g_test_message ("\"%s\" went on as \"%s\"", first, app_message_get_text (reply));
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
  g_assert_true (g_str_has_prefix (app_message_get_text (reply), first));
  g_assert_cmpuint (strlen (app_message_get_text (reply)), >, strlen (first));
  g_assert_cmpuint (app_message_get_n_tokens (reply), ==, 16);
  g_assert_cmpint (app_message_get_finish_reason (reply), ==, APP_FINISH_LENGTH);
  g_assert_cmpuint (app_chat_get_n_messages (chat), ==, 2);

  /* A version not shown is not part of the conversation: the answer to an edited first
   * question is the answer to that question alone. */
  {
    g_autoptr(AppChat) fresh = chat_with ("What is two plus two?");
    g_autoptr(AppMessage) edited = app_message_new (APP_ROLE_USER, "What is two plus two?");
    g_autoptr(AppMessage) q = app_chat_get_message (chat, 0);
    ReplyWatch fw = { 0 }, ew = { 0 };
    g_autoptr(AppMessage) fresh_reply = add_reply (fresh, &fw);
    g_autoptr(AppMessage) edited_reply = NULL;
    EngineResult fr = { 0 }, er = { 0 };

    app_engine_generate_async (engine, fresh, fresh_reply, "/x", &p, NULL, engine_generate_cb, &fr);
    engine_wait (&fr.done, "the answer in a fresh chat");
    g_assert_true (app_chat_add_version (chat, q, edited));
    edited_reply = add_reply (chat, &ew);
    app_engine_generate_async (engine, chat, edited_reply, "/x", &p, NULL, engine_generate_cb, &er);
    engine_wait (&er.done, "the answer to the edited question");
    g_assert_cmpstr (app_message_get_text (edited_reply), ==, app_message_get_text (fresh_reply));
    g_array_unref (fw.states);
    g_array_unref (ew.states);
  }

  app_generate_params_clear (&p);
  g_array_unref (w.states);
}

/* The app closing marks the answer interrupted and stops it: the end of the generation does
 * not turn it into a stopped answer, and the text that was still on its way is kept. */
static void
interrupt_on_text_cb (AppMessage   *m,
                      GParamSpec   *pspec,
                      GCancellable *cancellable)
{
  if (app_message_get_state (m) == APP_MESSAGE_INTERRUPTED)
    return;
  app_message_set_state (m, APP_MESSAGE_INTERRUPTED);
  g_cancellable_cancel (cancellable);
}

static void
test_interrupted (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autoptr(AppChat) chat = chat_with ("Write a very long story.");
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = add_reply (chat, &w);
  g_autoptr(GCancellable) cancel = g_cancellable_new ();
  AppGenerateParams p = params (4000);
  EngineResult r = { 0 };

  g_signal_connect (reply, "notify::text", G_CALLBACK (interrupt_on_text_cb), cancel);
  app_engine_generate_async (engine, chat, reply, "/nonexistent", &p, cancel, engine_generate_cb, &r);
  engine_wait (&r.done, "the end of the interrupted answer");
  g_assert_true (r.ok);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_INTERRUPTED);
  g_assert_cmpstr (app_message_get_text (reply), !=, "");
  g_assert_cmpint (app_message_get_finish_reason (reply), ==, APP_FINISH_NONE);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_READY);
  app_generate_params_clear (&p);
  g_array_unref (w.states);
}

static void
expect_failed (AppEngine   *engine,
               AppChat     *chat,
               int          code,
               const char  *needle)
{
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = add_reply (chat, &w);
  AppGenerateParams p = params (8);
  EngineResult r = { 0 };

  app_engine_generate_async (engine, chat, reply, g_getenv ("VL2_TEST_IMAGES"), &p, NULL,
                             engine_generate_cb, &r);
  engine_wait (&r.done, "the failure");
  g_assert_false (r.ok);
  g_assert_error (r.error, APP_ENGINE_ERROR, code);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_FAILED);
  if (!strstr (app_message_get_error (reply), needle))
    g_error ("error \"%s\" lacks \"%s\"", app_message_get_error (reply), needle);
  g_assert_cmpint (app_engine_get_state (engine), ==, APP_ENGINE_READY);
  g_clear_error (&r.error);
  app_generate_params_clear (&p);
  g_array_unref (w.states);
}

static void
test_errors (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autoptr(AppChat) folder = chat_with ("What is this?");
  g_autoptr(AppMessage) q = app_chat_get_message (folder, 0);
  const char *not_a_file[] = { ".", NULL };
  const char *truncated[] = { "truncated.png", NULL };
  g_autoptr(AppChat) broken = chat_with ("And this?");
  g_autoptr(AppMessage) q2 = app_chat_get_message (broken, 0);
  g_autoptr(AppChat) empty = chat_with ("   ");
  GString *huge = g_string_new (NULL);
  g_autoptr(AppChat) too_long = NULL;

  /* an image that is there but cannot be read is an error (a missing one is not: below) */
  app_message_set_images (q, not_a_file);
  expect_failed (engine, folder, APP_ENGINE_ERROR_IMAGE, "this is a folder");
  app_message_set_images (q2, truncated);
  expect_failed (engine, broken, APP_ENGINE_ERROR_IMAGE, "truncated");
  expect_failed (engine, empty, APP_ENGINE_ERROR_INPUT, "empty");
  for (int i = 0; i < 5000; i++)
    g_string_append (huge, "token ");
  too_long = chat_with (huge->str);
  expect_failed (engine, too_long, APP_ENGINE_ERROR_INPUT, "too long");
  g_string_free (huge, TRUE);

  /* no model */
  {
    g_autoptr(AppEngine) none = app_engine_new ();
    g_autoptr(AppChat) c = chat_with ("Hi");
    ReplyWatch w = { 0 };
    g_autoptr(AppMessage) reply = add_reply (c, &w);
    AppGenerateParams p = params (8);
    EngineResult r = { 0 };

    app_engine_generate_async (none, c, reply, "/x", &p, NULL, engine_generate_cb, &r);
    engine_wait (&r.done, "the refusal");
    g_assert_error (r.error, APP_ENGINE_ERROR, APP_ENGINE_ERROR_NO_MODEL);
    g_clear_error (&r.error);
    g_array_unref (w.states);
    app_generate_params_clear (&p);
  }
}

/* Images whose files are gone are left out of the prompt, with a note: the conversation goes
 * on. Placeholders of the missing images go with them. */
static void
test_missing_images (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  const char *gone[] = { "0000000000000000000000000000000000000000000000000000000000000000.png",
                         NULL };
  const char *one_gone[] = { "rgba.png",
                             "1111111111111111111111111111111111111111111111111111111111111111.png",
                             NULL };
  struct {
    const char *question;
    const char **images;
    const char *note;
  } cases[] = {
    { "What is this?", gone, "An image of this chat is missing" },
    { "<image>\nand <image>\nWhich is brighter?", one_gone, "An image of this chat is missing" },
    { "Compare them.", one_gone, "An image of this chat is missing" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(AppChat) chat = chat_with (cases[i].question);
      g_autoptr(AppMessage) q = app_chat_get_message (chat, 0);
      ReplyWatch w = { 0 };
      g_autoptr(AppMessage) reply = NULL;
      AppGenerateParams p = params (4);
      EngineResult r = { 0 };

      g_test_message ("%s", cases[i].question);
      app_message_set_images (q, cases[i].images);
      reply = add_reply (chat, &w);
      app_engine_generate_async (engine, chat, reply, g_getenv ("VL2_TEST_IMAGES"), &p, NULL,
                                 engine_generate_cb, &r);
      engine_wait (&r.done, "the answer");
      g_assert_no_error (r.error);
      g_assert_true (r.ok);
      g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
      g_assert_nonnull (app_message_get_note (reply));
      if (!strstr (app_message_get_note (reply), cases[i].note))
        g_error ("note \"%s\" lacks \"%s\"", app_message_get_note (reply), cases[i].note);
      app_generate_params_clear (&p);
      g_array_unref (w.states);
    }

  /* Images alone, all gone: nothing to ask, and the answer says why. */
  {
    g_autoptr(AppChat) chat = chat_with ("");
    g_autoptr(AppMessage) q = app_chat_get_message (chat, 0);

    app_message_set_images (q, gone);
    expect_failed (engine, chat, APP_ENGINE_ERROR_INPUT, "nothing left to ask about");
  }

  /* A follow-up in a chat whose earlier image is gone, asked about in words or alone:
   * answered, and said so again. */
  for (guint i = 0; i < 2; i++)
    {
      g_autoptr(AppChat) chat = chat_with (i == 0 ? "What is this?" : "");
      g_autoptr(AppMessage) q = app_chat_get_message (chat, 0);
      g_autoptr(AppMessage) a = app_message_new (APP_ROLE_ASSISTANT, "A picture.");
      g_autoptr(AppMessage) q2 = app_message_new (APP_ROLE_USER, "And what colour is it?");
      ReplyWatch w = { 0 };
      g_autoptr(AppMessage) reply = NULL;
      AppGenerateParams p = params (4);
      EngineResult r = { 0 };

      app_message_set_images (q, gone);
      app_chat_append (chat, a);
      app_chat_append (chat, q2);
      reply = add_reply (chat, &w);
      app_engine_generate_async (engine, chat, reply, g_getenv ("VL2_TEST_IMAGES"), &p, NULL,
                                 engine_generate_cb, &r);
      engine_wait (&r.done, "the follow-up");
      g_assert_no_error (r.error);
      g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
      g_assert_nonnull (strstr (app_message_get_note (reply), "missing"));
      app_generate_params_clear (&p);
      g_array_unref (w.states);
    }
}

/* A chat longer than the context: the earliest exchanges are left out, with a note. */
static void
test_context_overflow (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autoptr(AppChat) chat = app_chat_new ();
  GString *long_text = g_string_new (NULL);
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = NULL;
  AppGenerateParams p = params (8);
  EngineResult r = { 0 };

  /* about 900 tokens per turn: "word 123 " is 3 tokens */
  for (int i = 0; i < 300; i++)
    g_string_append_printf (long_text, "word %d ", i);
  for (int turn = 0; turn < 6; turn++)
    {
      g_autoptr(AppMessage) q = app_message_new (APP_ROLE_USER, long_text->str);
      g_autoptr(AppMessage) a = app_message_new (APP_ROLE_ASSISTANT, "Noted.");

      app_chat_append (chat, q);
      app_chat_append (chat, a);
    }
  {
    g_autoptr(AppMessage) last = app_message_new (APP_ROLE_USER, "Summarise.");

    app_chat_append (chat, last);
  }
  reply = add_reply (chat, &w);
  app_engine_generate_async (engine, chat, reply, "/x", &p, NULL, engine_generate_cb, &r);
  engine_wait (&r.done, "the answer");
  g_assert_no_error (r.error);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
  g_assert_nonnull (app_message_get_note (reply));
  g_assert_nonnull (strstr (app_message_get_note (reply), "left out"));
  g_test_message ("%s", app_message_get_note (reply));
  g_string_free (long_text, TRUE);
  app_generate_params_clear (&p);
  g_array_unref (w.states);
}

typedef struct
{
  gboolean done;
  gboolean ok;
  AppTokenCount count;
  GError *error;
} CountResult;

static void
count_cb (GObject      *source,
          GAsyncResult *res,
          gpointer      data)
{
  CountResult *r = data;

  r->ok = app_engine_count_tokens_finish (APP_ENGINE (source), res, &r->count, &r->error);
  r->done = TRUE;
}

static AppTokenCount
count_tokens (AppEngine          *engine,
              AppChat            *chat,
              AppMessage         *replacing,
              const char         *question,
              const char * const *images,
              const char         *system_prompt)
{
  AppGenerateParams p = params (8);
  CountResult r = { 0 };

  p.system_prompt = g_strdup (system_prompt);
  app_engine_count_tokens_async (engine, chat, replacing, question, images,
                                 g_getenv ("VL2_TEST_IMAGES"), &p, NULL, count_cb, &r);
  engine_wait (&r.done, "the count");
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  app_generate_params_clear (&p);
  return r.count;
}

/* The engine's own count of a conversation, from decoded images. */
static int
direct_count (const vl2_message *msgs,
              int                n,
              const char        *system_prompt)
{
  vl2_model *model;
  vl2_model_params mp = vl2_model_default_params ();
  vl2_conversation conv = { msgs, n, system_prompt };
  vl2_prompt *prompt;
  vl2_error err;
  int count;

  mp.n_threads = 1;
  g_assert_cmpint (vl2_model_load (model_dir, &mp, &model, &err), ==, VL2_OK);
  g_assert_cmpint (vl2_prompt_new (model, &conv, &prompt, &err), ==, VL2_OK);
  count = (int) vl2_prompt_n_tokens (prompt);
  vl2_prompt_free (prompt);
  vl2_model_free (model);
  return count;
}

/* Counting the next question: the prompt vl2_prompt_new() makes for the chat and the
 * question, images and system prompt included; what to leave out when it does not fit; and an
 * answer asked to leave out the oldest images doing so, with a note. */
static void
test_count_tokens (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autoptr(AppChat) chat = chat_with ("What is in this picture?");
  g_autoptr(AppMessage) q = app_chat_get_message (chat, 0);
  g_autoptr(AppMessage) a = app_message_new (APP_ROLE_ASSISTANT, "A red square.");
  const char *first[] = { "rgba.png", NULL };
  const char *second[] = { "palette.png", NULL };
  g_autofree char *rgba_path = g_build_filename (g_getenv ("VL2_TEST_IMAGES"), "rgba.png", NULL);
  g_autofree char *palette_path = g_build_filename (g_getenv ("VL2_TEST_IMAGES"), "palette.png",
                                                    NULL);
  g_auto(ImageRgb) rgba = { 0 };
  g_auto(ImageRgb) palette = { 0 };
  AppTokenCount c;
  GString *huge = g_string_new (NULL);

  app_message_set_images (q, first);
  app_chat_append (chat, a);
  g_assert_true (image_file_load (rgba_path, &rgba, NULL));
  g_assert_true (image_file_load (palette_path, &palette, NULL));
  {
    vl2_image i1 = { rgba.width, rgba.height, rgba.stride, rgba.rgb };
    vl2_image i2 = { palette.width, palette.height, palette.stride, palette.rgb };
    vl2_message msgs[] = {
      { VL2_ROLE_USER, "What is in this picture?", &i1, 1 },
      { VL2_ROLE_ASSISTANT, "A red square.", NULL, 0 },
      { VL2_ROLE_USER, "And in this one?", &i2, 1 },
    };

    c = count_tokens (engine, chat, NULL, "And in this one?", second, NULL);
    g_assert_cmpint (c.n_tokens, ==, direct_count (msgs, 3, NULL));
    g_assert_cmpint (c.n_ctx, ==, 4096);
    g_assert_cmpint (c.n_answer, ==, 256);
    g_assert_cmpint (c.turns_left_out, ==, 0);
    g_assert_cmpint (c.images_left_out, ==, 0);
    c = count_tokens (engine, chat, NULL, "And in this one?", second, "Be brief.");
    g_assert_cmpint (c.n_tokens, ==, direct_count (msgs, 3, "Be brief."));
    /* a new chat: the question alone; an edit of the first question: that one alone too */
    c = count_tokens (engine, NULL, NULL, "And in this one?", second, NULL);
    g_assert_cmpint (c.n_tokens, ==, direct_count (msgs + 2, 1, NULL));
    c = count_tokens (engine, chat, q, "And in this one?", second, NULL);
    g_assert_cmpint (c.n_tokens, ==, direct_count (msgs + 2, 1, NULL));
  }

  /* a count cancelled meanwhile (a newer one replaces it) finishes as cancelled */
  {
    AppGenerateParams p = params (8);
    g_autoptr(GCancellable) cancellable = g_cancellable_new ();
    CountResult r = { 0 };

    app_engine_count_tokens_async (engine, chat, NULL, "Stale?", NULL,
                                   g_getenv ("VL2_TEST_IMAGES"), &p, cancellable, count_cb, &r);
    g_cancellable_cancel (cancellable);
    engine_wait (&r.done, "the cancelled count");
    g_assert_false (r.ok);
    g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&r.error);
    app_generate_params_clear (&p);
  }

  /* a 38 kB paste: nothing can be left out to make it fit */
  for (int i = 0; i < 6000; i++)
    g_string_append_printf (huge, "w%d ", i % 97);
  g_assert_cmpuint (huge->len, >, 20000);
  c = count_tokens (engine, chat, NULL, huge->str, NULL, NULL);
  g_assert_cmpint (c.n_tokens, >, c.n_ctx);
  g_assert_cmpint (c.turns_left_out, ==, -1);
  g_assert_cmpint (c.images_left_out, ==, -1);
  g_string_free (huge, TRUE);

  /* eleven questions with an image each: 421 tokens an image (three or more are not tiled) */
  {
    g_autoptr(AppChat) album = app_chat_new ();
    const char *images[] = { "rgba.png", "palette.png", "gray8.png" };
    ReplyWatch w = { 0 };
    g_autoptr(AppMessage) reply = NULL;
    AppGenerateParams p = params (8);
    EngineResult r = { 0 };

    for (int i = 0; i < 10; i++)
      {
        g_autoptr(AppMessage) uq = app_message_new (APP_ROLE_USER, "What is this?");
        g_autoptr(AppMessage) ua = app_message_new (APP_ROLE_ASSISTANT, "A test image.");
        const char *ids[] = { images[i % 3], NULL };

        app_message_set_images (uq, ids);
        app_chat_append (album, uq);
        app_chat_append (album, ua);
      }
    c = count_tokens (engine, album, NULL, "Which was the first?", second, NULL);
    g_test_message ("album: %d tokens; %d images (%d tokens) or %d messages (%d tokens) out",
                    c.n_tokens, c.images_left_out, c.images_tokens, c.turns_left_out,
                    c.turns_tokens);
    g_assert_cmpint (c.n_tokens + c.n_answer, >, c.n_ctx);
    g_assert_cmpint (c.images_left_out, >, 0);
    g_assert_cmpint (c.images_left_out, <, 10);
    g_assert_cmpint (c.images_tokens + c.n_answer, <=, c.n_ctx);
    g_assert_cmpint (c.images_tokens, <, c.n_tokens);
    g_assert_cmpint (c.turns_left_out, >, 0);
    g_assert_cmpint (c.turns_left_out % 2, ==, 0); /* whole exchanges */
    g_assert_cmpint (c.turns_tokens + c.n_answer, <=, c.n_ctx);

    /* the answer leaves out the same images, and says so */
    {
      g_autoptr(AppMessage) last = app_message_new (APP_ROLE_USER, "Which was the first?");

      app_message_set_images (last, second);
      app_chat_append (album, last);
    }
    reply = add_reply (album, &w);
    p.leave_out_images = TRUE;
    app_engine_generate_async (engine, album, reply, g_getenv ("VL2_TEST_IMAGES"), &p, NULL,
                               engine_generate_cb, &r);
    engine_wait (&r.done, "the answer");
    g_assert_no_error (r.error);
    g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
    g_assert_nonnull (app_message_get_note (reply));
    g_test_message ("%s", app_message_get_note (reply));
    g_assert_nonnull (strstr (app_message_get_note (reply), "oldest images"));
    g_assert_null (strstr (app_message_get_note (reply), "earliest"));
    app_generate_params_clear (&p);
    g_array_unref (w.states);
  }
}

/* A question with more images than the worker keeps decoded (8): every one stays readable
 * while the prompt is built (under AddressSanitizer, a freed one is caught). */
static void
test_many_images (void)
{
  g_autoptr(AppEngine) engine = loaded_engine ();
  g_autofree char *dir = g_dir_make_tmp ("sightline-many-XXXXXX", NULL);
  g_autoptr(AppChat) chat = chat_with ("Which of these is the darkest?");
  g_autoptr(AppMessage) q = app_chat_get_message (chat, 0);
  const char *ids[10] = { NULL };
  char *names[9];
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = NULL;
  AppGenerateParams p = params (4);
  EngineResult r = { 0 };

  for (int i = 0; i < 9; i++)
    {
      g_autoptr(GdkPixbuf) pixbuf = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, 64 + i, 48);
      g_autofree char *path = NULL;

      names[i] = g_strdup_printf ("image-%d.png", i);
      path = g_build_filename (dir, names[i], NULL);
      gdk_pixbuf_fill (pixbuf, 0x10101000u * (guint32) (i + 1) | 0xff);
      g_assert_true (gdk_pixbuf_save (pixbuf, path, "png", NULL, NULL));
      ids[i] = names[i];
    }
  app_message_set_images (q, ids);
  reply = add_reply (chat, &w);
  app_engine_generate_async (engine, chat, reply, dir, &p, NULL, engine_generate_cb, &r);
  engine_wait (&r.done, "the answer about nine images");
  g_assert_no_error (r.error);
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_COMPLETE);
  for (int i = 0; i < 9; i++)
    {
      g_autofree char *path = g_build_filename (dir, names[i], NULL);

      g_unlink (path);
      g_free (names[i]);
    }
  g_rmdir (dir);
  app_generate_params_clear (&p);
  g_array_unref (w.states);
}

/* Dropping the engine while it writes an answer stops the worker cleanly. */
static void
test_dispose_while_busy (void)
{
  AppEngine *engine = loaded_engine ();
  g_autoptr(AppChat) chat = chat_with ("Go on and on.");
  ReplyWatch w = { 0 };
  g_autoptr(AppMessage) reply = add_reply (chat, &w);
  g_autoptr(GCancellable) cancel = g_cancellable_new ();
  AppGenerateParams p = params (4000);
  EngineResult r = { 0 };

  app_engine_generate_async (engine, chat, reply, "/x", &p, cancel, engine_generate_cb, &r);
  g_cancellable_cancel (cancel);
  g_object_unref (engine); /* the task keeps it alive until it returns */
  engine_wait (&r.done, "the cancelled answer");
  g_assert_cmpint (app_message_get_state (reply), ==, APP_MESSAGE_STOPPED);
  app_generate_params_clear (&p);
  g_array_unref (w.states);
}

/* ------------------------------------------------------------------------------------------
 * The model's files change on disk while it is loaded
 */

static const char *const model_files[] = {
  "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
  "model.safetensors",
};

/* Writes the files of fixture `name` into `dir`, each renamed into place as a download or
 * `git lfs pull` leaves it. */
static void
put_fixture (const char *name,
             const char *dir)
{
  g_autofree char *fixture = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), name, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (model_files); i++)
    {
      g_autofree char *from = g_build_filename (fixture, model_files[i], NULL);
      g_autofree char *to = g_build_filename (dir, model_files[i], NULL);
      g_autofree char *data = NULL;
      gsize len;

      g_assert_true (g_file_get_contents (from, &data, &len, NULL));
      g_assert_true (g_file_set_contents (to, data, (gssize) len, NULL));
    }
}

static void
remove_model_copy (const char *dir)
{
  for (guint i = 0; i < G_N_ELEMENTS (model_files); i++)
    {
      g_autofree char *path = g_build_filename (dir, model_files[i], NULL);

      g_unlink (path);
    }
  g_rmdir (dir);
}

/* An engine with its own copy of mini-tiny, and a chat it answered once. */
typedef struct
{
  char *dir;
  char *weights;
  AppEngine *engine;
  AppChat *chat;
  char *first_answer;
} ChangedModel;

static void
ask (ChangedModel *c,
     const char   *question,
     int           max_new_tokens,
     ReplyWatch   *w,
     EngineResult       *r)
{
  g_autoptr(AppMessage) q = app_message_new (APP_ROLE_USER, question);
  g_autoptr(AppMessage) reply = NULL;
  AppGenerateParams p = params (max_new_tokens);

  app_chat_append (c->chat, q);
  reply = add_reply (c->chat, w);
  app_engine_generate_async (c->engine, c->chat, reply, "/x", &p, NULL, engine_generate_cb, r);
  app_generate_params_clear (&p);
}

static void
changed_model_init (ChangedModel *c)
{
  ReplyWatch w = { 0 };
  EngineResult r = { 0 };
  EngineResult loaded = { 0 };

  c->dir = g_dir_make_tmp ("sightline-model-XXXXXX", NULL);
  g_assert_nonnull (c->dir);
  c->weights = g_build_filename (c->dir, "model.safetensors", NULL);
  put_fixture ("mini-tiny", c->dir);
  c->engine = app_engine_new ();
  app_engine_load_async (c->engine, c->dir, 2, NULL, engine_load_cb, &loaded);
  engine_wait (&loaded.done, "the model");
  g_assert_no_error (loaded.error);

  c->chat = app_chat_new ();
  ask (c, "Hello! Who are you?", 8, &w, &r);
  engine_wait (&r.done, "the first answer");
  g_assert_no_error (r.error);
  g_assert_cmpint (app_message_get_state (w.reply), ==, APP_MESSAGE_COMPLETE);
  c->first_answer = g_strdup (app_message_get_text (w.reply));
  g_array_unref (w.states);
}

/* What the chat had before the files changed is still there, as it was. */
static void
assert_first_exchange (ChangedModel *c)
{
  g_autoptr(AppMessage) q = app_chat_get_message (c->chat, 0);
  g_autoptr(AppMessage) a = app_chat_get_message (c->chat, 1);

  g_assert_cmpuint (app_chat_get_n_messages (c->chat), ==, 4);
  g_assert_cmpstr (app_message_get_text (q), ==, "Hello! Who are you?");
  g_assert_cmpint (app_message_get_state (a), ==, APP_MESSAGE_COMPLETE);
  g_assert_cmpstr (app_message_get_text (a), ==, c->first_answer);
  g_assert_cmpuint (app_message_get_n_tokens (a), ==, 8);
}

static void
changed_model_clear (ChangedModel *c)
{
  g_object_unref (c->engine);
  g_object_unref (c->chat);
  remove_model_copy (c->dir);
  g_free (c->dir);
  g_free (c->weights);
  g_free (c->first_answer);
}

static void
expect_in (const char *text,
           const char *needle)
{
  if (!text || !strstr (text, needle))
    g_error ("\"%s\" lacks \"%s\"", text, needle);
}

/* Truncated between two questions (a download restarted over the folder): the second
 * question tries to load the model again, fails, and says why. */
static void
test_model_truncated (void)
{
  ChangedModel c = { 0 };
  ReplyWatch w = { 0 };
  EngineResult r = { 0 };

  changed_model_init (&c);
  g_assert_no_errno (truncate (c.weights, 1 << 20));
  ask (&c, "And now?", 8, &w, &r);
  engine_wait (&r.done, "the second answer");
  g_assert_false (r.ok);
  g_assert_error (r.error, APP_ENGINE_ERROR, APP_ENGINE_ERROR_MODEL);
  g_test_message ("%s", r.error->message);
  g_assert_cmpint (app_message_get_state (w.reply), ==, APP_MESSAGE_FAILED);
  expect_in (app_message_get_error (w.reply), "changed on disk");
  expect_in (app_message_get_error (w.reply), "incomplete");
  expect_in (app_message_get_error (w.reply), c.weights);
  /* no model now: the engine says why, as after any failed load */
  g_assert_cmpint (app_engine_get_state (c.engine), ==, APP_ENGINE_FAILED);
  expect_in (app_engine_get_error (c.engine), "incomplete");
  assert_first_exchange (&c);

  g_clear_error (&r.error);
  g_array_unref (w.states);
  changed_model_clear (&c);
}

/* Replaced by another model, file by file (a `git lfs pull` of another checkpoint into the
 * folder): the second question loads it and is answered by it. */
static void
test_model_replaced (void)
{
  ChangedModel c = { 0 };
  ReplyWatch w = { 0 };
  EngineResult r = { 0 };

  changed_model_init (&c);
  g_assert_cmpstr (app_engine_get_model_name (c.engine), ==, "DeepSeek-VL2 Tiny");
  put_fixture ("mini-small", c.dir);
  ask (&c, "And now?", 8, &w, &r);
  engine_wait (&r.done, "the second answer");
  g_assert_no_error (r.error);
  g_assert_cmpint (app_message_get_state (w.reply), ==, APP_MESSAGE_COMPLETE);
  g_assert_cmpuint (app_message_get_n_tokens (w.reply), ==, 8);
  expect_in (app_message_get_note (w.reply), "loaded again");
  g_assert_cmpstr (app_engine_get_model_name (c.engine), ==, "DeepSeek-VL2 Small");
  g_assert_cmpint (app_engine_get_state (c.engine), ==, APP_ENGINE_READY);
  assert_first_exchange (&c);

  /* nothing changed since: the third answer needs no loading */
  {
    ReplyWatch w3 = { 0 };
    EngineResult r3 = { 0 };

    ask (&c, "Once more.", 4, &w3, &r3);
    engine_wait (&r3.done, "the third answer");
    g_assert_no_error (r3.error);
    g_assert_cmpint (app_message_get_state (w3.reply), ==, APP_MESSAGE_COMPLETE);
    g_assert_null (app_message_get_note (w3.reply));
    g_array_unref (w3.states);
  }
  g_array_unref (w.states);
  changed_model_clear (&c);
}

/* Truncated while an answer is being written: the answer stops with the reason and keeps its
 * text; the next question tries to load the model again. */
typedef struct
{
  const char *path;
  gboolean done;
} TruncateOnText;

static void
truncate_on_text_cb (AppMessage     *m,
                     GParamSpec     *pspec,
                     TruncateOnText *t)
{
  if (t->done)
    return;
  t->done = TRUE;
  g_assert_no_errno (truncate (t->path, 1 << 20));
}

static void
test_model_truncated_while_answering (void)
{
  ChangedModel c = { 0 };
  ReplyWatch w = { 0 };
  EngineResult r = { 0 };
  TruncateOnText t = { 0 };

  changed_model_init (&c);
  t.path = c.weights;
  ask (&c, "Write a very long story.", 4000, &w, &r);
  g_signal_connect (w.reply, "notify::text", G_CALLBACK (truncate_on_text_cb), &t);
  engine_wait (&r.done, "the interrupted answer");
  g_assert_true (t.done);
  g_assert_false (r.ok);
  g_assert_error (r.error, APP_ENGINE_ERROR, APP_ENGINE_ERROR_MODEL);
  g_test_message ("after %u tokens: %s", app_message_get_n_tokens (w.reply), r.error->message);
  g_assert_cmpint (app_message_get_state (w.reply), ==, APP_MESSAGE_FAILED);
  expect_in (app_message_get_error (w.reply), "changed on disk");
  expect_in (app_message_get_error (w.reply), c.weights);
  /* the text written before the change is kept */
  g_assert_cmpstr (app_message_get_text (w.reply), !=, "");
  g_assert_cmpuint (app_message_get_n_tokens (w.reply), >, 0);
  g_assert_cmpuint (app_message_get_n_tokens (w.reply), <, 4000);
  g_assert_cmpint (app_engine_get_state (c.engine), ==, APP_ENGINE_READY);
  assert_first_exchange (&c);
  g_clear_error (&r.error);
  g_array_unref (w.states);

  /* the next question finds the file still cut short */
  {
    ReplyWatch w2 = { 0 };
    EngineResult r2 = { 0 };

    ask (&c, "Are you there?", 8, &w2, &r2);
    engine_wait (&r2.done, "the next answer");
    g_assert_cmpint (app_message_get_state (w2.reply), ==, APP_MESSAGE_FAILED);
    expect_in (app_message_get_error (w2.reply), "incomplete");
    g_assert_cmpint (app_engine_get_state (c.engine), ==, APP_ENGINE_FAILED);
    g_clear_error (&r2.error);
    g_array_unref (w2.states);
  }
  changed_model_clear (&c);
}

/* The app writes no sampling defaults of its own: they are the engine's. */
static void
test_default_params (void)
{
  vl2_generate_params engine = vl2_generate_default_params ();
  AppGenerateParams p;

  app_generate_params_init (&p);
  /* the engine takes floats: the app's doubles must narrow to the same values */
  g_assert_cmpfloat ((float) p.temperature, ==, engine.temperature);
  g_assert_cmpfloat ((float) p.top_p, ==, engine.top_p);
  g_assert_cmpint (p.top_k, ==, engine.top_k);
  g_assert_cmpfloat ((float) p.repetition_penalty, ==, engine.repetition_penalty);
  g_assert_cmpint (p.max_new_tokens, ==, engine.max_new_tokens);
  g_assert_cmpuint (p.seed, ==, engine.seed == VL2_SEED_RANDOM ? G_MAXUINT64 : engine.seed);
  g_assert_null (p.system_prompt);
  app_generate_params_clear (&p);
}

/* Nor do the settings: a sampling key holds nothing (the engine's default) until it is set. */
static void
test_settings_defaults (void)
{
  const char *keys[] = { "temperature", "top-p", "top-k", "repetition-penalty",
                         "max-new-tokens" };
  GSettingsSchemaSource *source = g_settings_schema_source_get_default ();
  g_autoptr(GSettingsSchema) schema = NULL;
  guint n_found = 0;

  g_assert_nonnull (source);
  schema = g_settings_schema_source_lookup (source, APP_ID, FALSE);
  g_assert_nonnull (schema);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_autoptr(GSettingsSchemaKey) key = NULL;
      g_autoptr(GVariant) value = NULL;

      if (!g_settings_schema_has_key (schema, keys[i]))
        continue;
      n_found++;
      key = g_settings_schema_get_key (schema, keys[i]);
      value = g_settings_schema_key_get_default_value (key);
      if (!g_variant_is_of_type (value, G_VARIANT_TYPE_MAYBE) || g_variant_n_children (value))
        {
          g_autofree char *shown = g_variant_print (value, TRUE);

          g_error ("the \"%s\" key defaults to %s, not nothing (the engine's default)",
                   keys[i], shown);
        }
    }
  g_assert_cmpuint (n_found, >=, 4);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  main_thread = g_thread_self ();
  model_dir = g_build_filename (g_getenv ("VL2_FIXTURE_DIR"), "mini-tiny", NULL);
  g_test_add_func ("/app/engine/default-params", test_default_params);
  g_test_add_func ("/app/engine/settings-defaults", test_settings_defaults);
  g_test_add_func ("/app/engine/load", test_load);
  g_test_add_func ("/app/engine/cancel-load", test_cancel_load);
  g_test_add_func ("/app/engine/load-advice", test_load_advice);
  g_test_add_func ("/app/engine/reading-progress", test_reading_progress);
  g_test_add_func ("/app/engine/stream", test_stream);
  g_test_add_func ("/app/engine/batches", test_batches);
  g_test_add_func ("/app/engine/fast-arithmetic", test_fast_arithmetic);
  g_test_add_func ("/app/engine/read-ahead", test_read_ahead);
  g_test_add_func ("/app/engine/stop-and-reuse", test_stop_and_reuse);
  g_test_add_func ("/app/engine/finish-and-continue", test_finish_and_continue);
  g_test_add_func ("/app/engine/interrupted", test_interrupted);
  g_test_add_func ("/app/engine/errors", test_errors);
  g_test_add_func ("/app/engine/missing-images", test_missing_images);
  g_test_add_func ("/app/engine/context-overflow", test_context_overflow);
  g_test_add_func ("/app/engine/count-tokens", test_count_tokens);
  g_test_add_func ("/app/engine/many-images", test_many_images);
  g_test_add_func ("/app/engine/dispose-while-busy", test_dispose_while_busy);
  g_test_add_func ("/app/engine/model-changed/truncated", test_model_truncated);
  g_test_add_func ("/app/engine/model-changed/replaced", test_model_replaced);
  g_test_add_func ("/app/engine/model-changed/truncated-while-answering",
                   test_model_truncated_while_answering);
  return g_test_run ();
}
